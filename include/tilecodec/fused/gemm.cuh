// tilecodec/fused/gemm.cuh: Y = X W^T with W read compressed: a GEMV for batch 1 and a small-batch
// GEMM (any batch; one pass per 16 batch rows), stream-ordered, allocating nothing.
//
//   tilecodec::fused::matrix_ref W;                                  // fused/matrix_ref.cuh
//   std::size_t ws = tilecodec::fused::gemm_workspace_bytes(W, 16);   // optional; zero it once
//   cudaMalloc(&d_ws, ws); cudaMemset(d_ws, 0, ws);
//   tilecodec::status s = tilecodec::fused::gemm_async(W, d_x, tilecodec::dtype::bf16, K, batch,
//                                                      d_y, tilecodec::dtype::bf16, N, d_ws, ws, d_status, stream);
//
// Shapes: W is N x K (out x in, PyTorch's Linear weight); X is batch x K (row b at x + b * ldx);
// Y is batch x N (row b at y + b * ldy): y_b = W x_b, like torch.nn.functional.linear.
// Types: X fp16 or bf16 (lossless weights: the weights' own type); Y fp32, fp16 or bf16.
// Accuracy: quantized weights enter the tensor cores as exact integer codes and lossless ones as
// their exact bits; products are exact and summed in fp32 (tensor-core accumulation, then fp32
// adds in a fixed order); scales multiply in fp32; Y is rounded once to its type. Bound per
// output: |y - y_exact| <= (K + 64) * 2^-22 * sum_k |w_k x_k| + ulp(y)/2, with w the dequantized
// weights (tests/fused/test_fused.cu checks it on fresh random data and on real weights).
// Results are deterministic: every sum has a fixed order, whatever the timing.
// Workspace: with it the columns are also split across blocks for small N (more of the GPU
// busy); without it (nullptr, 0) every block covers all columns. It holds counters that the
// kernel returns to zero: zero it once after allocating, and give each stream its own. A strip
// split in two adds its halves in a thread-block cluster instead (gemm_launch::cluster_reduce).
// Corrupt weights never make the kernel read outside the tensor's bytes; the tiles concerned
// give wrong values and *status_word (optional, device memory) is raised to the error code.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "../device/dependent_launch.cuh"
#include "../device/kernel_setup.cuh"
#include "gemm_kernel.cuh"
#include "matrix_ref.cuh"

// Tuning of the launch shape (never changes the bits of a result's terms, only how columns are
// split): blocks per multiprocessor that splits aim for, and the least 16-column units per warp.
#ifndef TILECODEC_FUSED_BLOCKS_PER_SM
#define TILECODEC_FUSED_BLOCKS_PER_SM 2
#endif
// Batch 9-16 with the code-word ring (detail::ring_words_codes): its two groups of prologue are
// paid back by longer pieces (PERFORMANCE.md 6.18).
#ifndef TILECODEC_FUSED_BLOCKS_PER_SM_RING_WORDS
#define TILECODEC_FUSED_BLOCKS_PER_SM_RING_WORDS 1
#endif
#ifndef TILECODEC_FUSED_MIN_UNITS
#define TILECODEC_FUSED_MIN_UNITS 2
#endif
// A strip split in two launched as one thread-block cluster whose partial sums meet in
// distributed shared memory, instead of the workspace, a fence and an atomic counter (sm_90;
// detail::max_cluster_splits).
#ifndef TILECODEC_FUSED_CLUSTER_SPLITS
#define TILECODEC_FUSED_CLUSTER_SPLITS 1
#endif

namespace tilecodec {
namespace fused {

struct gemm_plan {
  std::uint32_t ngroups = 1;  // batch entries per pass / 8 (1 or 2)
  std::uint32_t chunks = 1;   // passes over the batch (blockIdx.z)
  std::uint32_t strips = 0;   // 64-row strips (blockIdx.x)
  std::uint32_t splits = 1;   // column ranges per strip (blockIdx.y)
  std::size_t workspace_bytes = 0;
};

// How gemm_async launches its kernel.
struct gemm_launch {
  // Programmatic dependent launch (sm_90): the kernel may start while the previous kernel in the
  // stream still runs, and read its weights meanwhile (tile index, first code words, rANS table);
  // each thread waits for that kernel to finish before it reads the activations or writes y or
  // the workspace. So layer after layer, one call's start overlaps the end of the one before. The
  // previous kernel must not write this call's weights, and the status word may be raised before
  // it has finished. Off: an ordinary launch.
  bool overlap_previous = false;
  // A strip split in two reduces its halves in a thread-block cluster (distributed shared
  // memory) when the device allows it; off: through the workspace, as larger splits do. Both give
  // the same bits.
  bool cluster_reduce = true;
};

namespace detail {

inline int current_sm_count() {
  int device = 0, count = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 132;
  if (cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || count <= 0) return 132;
  return count;
}

inline std::size_t align256(std::size_t v) { return (v + 255) / 256 * 256; }

}  // namespace detail

// The launch shape gemm_async uses for this matrix and batch: splits fill about two blocks per
// multiprocessor (one for the word-ring kernels) when the strips alone do not, keeping at least
// 32 columns (one tile for rANS) per warp.
[[nodiscard]] inline gemm_plan plan_gemm(const matrix_ref& w, std::uint32_t batch, int sm_count = 0) {
  gemm_plan p;
  if (batch == 0) return p;
  if (sm_count <= 0) sm_count = detail::current_sm_count();
  p.ngroups = batch <= 8 ? 1u : 2u;
  const std::uint32_t per_pass = 8u * p.ngroups;
  p.chunks = (batch + per_pass - 1) / per_pass;
  p.strips = static_cast<std::uint32_t>((w.rows() + detail::strip_rows - 1) / detail::strip_rows);
  const std::uint64_t units = w.coding == plane_coding::rans ? w.layout.grid_cols : (w.cols() + 15) / 16;
  const std::uint64_t min_units = w.coding == plane_coding::rans ? 1 : TILECODEC_FUSED_MIN_UNITS;
  const std::uint64_t max_splits = std::max<std::uint64_t>(1, units / (detail::cta_warps * min_units));
  const bool ring_words = p.ngroups == 2 && w.coding == plane_coding::fixed && w.order == symbol_order::mma &&
                          detail::ring_words_codes(w.quant, w.code_bits);
  const std::uint64_t per_sm = ring_words ? TILECODEC_FUSED_BLOCKS_PER_SM_RING_WORDS : TILECODEC_FUSED_BLOCKS_PER_SM;
  const std::uint64_t base = std::uint64_t(p.strips) * p.chunks, target = per_sm * std::uint64_t(sm_count);
  std::uint64_t s = base >= target ? 1 : target / base;
  s = std::min<std::uint64_t>(std::min<std::uint64_t>(s, max_splits), 65535);
  p.splits = static_cast<std::uint32_t>(std::max<std::uint64_t>(s, 1));
  if (p.splits > 1)
    p.workspace_bytes = detail::align256(4 * base) + 4 * base * p.splits * 64 * per_pass;
  return p;
}

// Workspace that lets every batch up to max_batch use its planned splits.
[[nodiscard]] inline std::size_t gemm_workspace_bytes(const matrix_ref& w, std::uint32_t max_batch, int sm_count = 0) {
  if (sm_count <= 0) sm_count = detail::current_sm_count();
  std::size_t most = 0;
  for (std::uint32_t b = 1; b <= max_batch; ++b) most = std::max(most, plan_gemm(w, b, sm_count).workspace_bytes);
  return most;
}

namespace detail {

// Whether `kernel` can run clusters of max_cluster_splits blocks (asked of the driver once per
// kernel and device).
inline bool cluster_splits_supported(const void* kernel, std::size_t smem) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  return ::tilecodec::detail::once_per_kernel(kernel, device, [&]() -> std::uint32_t {
           cudaLaunchAttribute attr;
           attr.id = cudaLaunchAttributeClusterDimension;
           attr.val.clusterDim.x = 1;
           attr.val.clusterDim.y = max_cluster_splits;
           attr.val.clusterDim.z = 1;
           cudaLaunchConfig_t config{};
           config.gridDim = dim3(1, max_cluster_splits, 1);
           config.blockDim = dim3(cta_threads);
           config.dynamicSmemBytes = smem;
           config.attrs = &attr;
           config.numAttrs = 1;
           int clusters = 0;
           if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess) {
             (void)cudaGetLastError();
             return 2u;
           }
           return clusters > 0 ? 1u : 2u;
         }) == 1u;
}

template <quant::kind Q, int NG, bool XBF16, path P, int K>
status launch_gemm(const gemm_args& args, dim3 grid, cudaStream_t stream, const gemm_launch& launch) {
  constexpr std::size_t smem = gemm_smem_bytes<NG, P>() + cta_warps * warp_gemm<Q, NG, XBF16, P, K>::stage_bytes;
  const auto kernel = gemm_kernel<Q, NG, XBF16, P, K>;
  if constexpr (smem > 48 * 1024) {  // once per device and per unit's copy of the kernel (device/kernel_setup.cuh)
    if (::tilecodec::detail::opt_in_dynamic_smem(reinterpret_cast<const void*>(kernel), static_cast<int>(smem)) != cudaSuccess)
      return status::cuda_error;
  }
  if (args.cluster_splits && cluster_splits_supported(reinterpret_cast<const void*>(kernel), smem)) {
    cudaLaunchAttribute attrs[2];
    attrs[0].id = cudaLaunchAttributeClusterDimension;
    attrs[0].val.clusterDim.x = 1;
    attrs[0].val.clusterDim.y = grid.y;  // the strip's splits
    attrs[0].val.clusterDim.z = 1;
    attrs[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[1].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = dim3(cta_threads);
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    config.attrs = attrs;
    config.numAttrs = launch.overlap_previous ? 2 : 1;
    return cudaLaunchKernelEx(&config, kernel, args) == cudaSuccess ? status::success : status::cuda_error;
  }
  gemm_args plain = args;
  plain.cluster_splits = false;
  if (!launch.overlap_previous) {
    kernel<<<grid, cta_threads, smem, stream>>>(plain);
    return cudaGetLastError() == cudaSuccess ? status::success : status::cuda_error;
  }
  return ::tilecodec::detail::launch_after_previous(kernel, grid, dim3(cta_threads), smem, stream, plain) == cudaSuccess
             ? status::success
             : status::cuda_error;
}

// Fast code widths compiled per quantization (the encoder's usual choices); other widths take
// the per-element path.
template <quant::kind Q, int NG, bool XBF16>
status select_path(const gemm_args& args, dim3 grid, cudaStream_t stream, const gemm_launch& launch) {
  const matrix_ref& w = args.w;
  if (w.coding == plane_coding::rans) return launch_gemm<Q, NG, XBF16, path::rans, 0>(args, grid, stream, launch);
  if (w.coding == plane_coding::fixed && w.order == symbol_order::mma) {
    if constexpr (Q == quant::kind::int8_rowwise) {
      switch (w.code_bits) {
        case 6: return launch_gemm<Q, NG, XBF16, path::fixed_fast, 6>(args, grid, stream, launch);
        case 7: return launch_gemm<Q, NG, XBF16, path::fixed_fast, 7>(args, grid, stream, launch);
        case 8: return launch_gemm<Q, NG, XBF16, path::fixed_fast, 8>(args, grid, stream, launch);
        default: break;
      }
    } else if constexpr (Q == quant::kind::int4_group) {
      if (w.code_bits == 4) return launch_gemm<Q, NG, XBF16, path::fixed_fast, 4>(args, grid, stream, launch);
    } else {
      switch (w.code_bits) {
        // The byte split's exponent codes: bf16 3 or 4 bits, fp16 (exponent and 3 mantissa bits) 5 or 6.
        case 3: return launch_gemm<Q, NG, XBF16, path::fixed_fast, 3>(args, grid, stream, launch);
        case 4: return launch_gemm<Q, NG, XBF16, path::fixed_fast, 4>(args, grid, stream, launch);
        case 5: return launch_gemm<Q, NG, XBF16, path::fixed_fast, 5>(args, grid, stream, launch);
        case 6: return launch_gemm<Q, NG, XBF16, path::fixed_fast, 6>(args, grid, stream, launch);
        default: break;
      }
    }
  }
  return launch_gemm<Q, NG, XBF16, path::element, 0>(args, grid, stream, launch);
}

template <int NG, bool XBF16>
status select_quant(const gemm_args& args, dim3 grid, cudaStream_t stream, const gemm_launch& launch) {
  switch (args.w.quant) {
    case quant::kind::int8_rowwise: return select_path<quant::kind::int8_rowwise, NG, XBF16>(args, grid, stream, launch);
    case quant::kind::int4_group: return select_path<quant::kind::int4_group, NG, XBF16>(args, grid, stream, launch);
    default: return select_path<quant::kind::lossless, NG, XBF16>(args, grid, stream, launch);
  }
}

}  // namespace detail

[[nodiscard]] inline status gemm_async(const matrix_ref& w, const void* x, dtype x_type, std::uint64_t ldx,
                                       std::uint32_t batch, void* y, dtype y_type, std::uint64_t ldy, void* workspace,
                                       std::size_t workspace_bytes, std::uint32_t* status_word, cudaStream_t stream,
                                       const gemm_launch& launch = {}) {
  if (batch == 0) return status::success;
  if (w.data == nullptr || x == nullptr || y == nullptr) return status::invalid_argument;
  if (w.coding != plane_coding::stored && w.coding != plane_coding::rans && w.coding != plane_coding::fixed)
    return status::unsupported;  // a coding these kernels do not know (never decoded as stored)
  if (x_type != dtype::f16 && x_type != dtype::bf16) return status::unsupported;
  if (y_type != dtype::f32 && y_type != dtype::f16 && y_type != dtype::bf16) return status::unsupported;
  if (w.quant == quant::kind::lossless && x_type != w.source) return status::unsupported;
  if (ldx < w.cols() || ldy < w.rows()) return status::invalid_argument;
  if (reinterpret_cast<std::uintptr_t>(x) % 2 != 0 || reinterpret_cast<std::uintptr_t>(y) % dtype_size(y_type) != 0)
    return status::invalid_argument;
  gemm_plan plan = plan_gemm(w, batch);
  if (plan.splits > 1 && (workspace == nullptr || workspace_bytes < plan.workspace_bytes ||
                          reinterpret_cast<std::uintptr_t>(workspace) % 256 != 0)) {
    plan.splits = 1;
    plan.workspace_bytes = 0;
  }
  if (plan.chunks > 65535) return status::unsupported;
  detail::gemm_args args;
  args.w = w;
  args.x = static_cast<const std::uint16_t*>(x);
  args.ldx = ldx;
  args.y = y;
  args.ldy = ldy;
  args.y_type = y_type;
  args.batch = batch;
  args.splits = plan.splits;
  args.strips = plan.strips;
  if (plan.splits > 1) {
    const std::size_t counters = detail::align256(4ull * plan.strips * plan.chunks);
    args.counters = static_cast<std::uint32_t*>(workspace);
    args.partials = reinterpret_cast<float*>(static_cast<unsigned char*>(workspace) + counters);
  }
  args.status = status_word;
  args.x_aligned = reinterpret_cast<std::uintptr_t>(x) % 4 == 0 && ldx % 2 == 0;
  args.x_aligned16 = reinterpret_cast<std::uintptr_t>(x) % 16 == 0 && ldx % 8 == 0;
  args.cluster_splits = TILECODEC_FUSED_CLUSTER_SPLITS != 0 && launch.cluster_reduce && plan.splits > 1 &&
                        plan.splits <= detail::max_cluster_splits;
  const bool bf16 = x_type == dtype::bf16;
  const std::uint32_t zero = w.quant == quant::kind::int4_group ? 8u : 128u;
  const std::uint32_t first = w.coding == plane_coding::fixed ? w.first : 0u;
  args.int_sub = bf16 ? int_pair_sub<true>(zero, first) : int_pair_sub<false>(zero, first);
  if (w.quant == quant::kind::int4_group) args.int_sub_hi = bf16 ? int_pair_sub_high<true>(zero, first) : int_pair_sub_high<false>(zero, first);
  const dim3 grid(plan.strips, plan.splits, plan.chunks);
  if (plan.ngroups == 1)
    return bf16 ? detail::select_quant<1, true>(args, grid, stream, launch)
                : detail::select_quant<1, false>(args, grid, stream, launch);
  return bf16 ? detail::select_quant<2, true>(args, grid, stream, launch)
              : detail::select_quant<2, false>(args, grid, stream, launch);
}

}  // namespace fused
}  // namespace tilecodec
