// tilecodec/fused/dequantize.cuh: decode a fused-kernel matrix (fused/matrix_ref.cuh) into a dense
// row-major fp16 / bf16 array on the GPU, bit for bit what the host decoder writes: quantized
// weights as code * scale in fp32 rounded to nearest even, lossless weights as their own bits.
// For batches too large for the fused kernels to stay ahead: decode once, then a dense GEMM.
//
//   tilecodec::status s = tilecodec::fused::dequantize_async(W, d_dense, dtype::bf16, K, d_status, stream);
//
// Fixed-coded tiles in the mma order decode quad by quad (fused/fragment.cuh), staged through
// shared memory so rows leave in 32-byte pieces; other tiles (edges, stored planes, other code
// widths) decode element by element. rANS-coded matrices are not served here (device/decode.cuh).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gemm_kernel.cuh"
#include "matrix_ref.cuh"

namespace tilecodec {
namespace fused {
namespace detail {

struct dequantize_args {
  matrix_ref w;
  std::uint16_t* out = nullptr;
  std::uint64_t ld = 0;
  std::uint32_t* status = nullptr;
  std::uint32_t int_sub = 0;  // unused by the scalar conversion; kept for symmetry with gemm_args
};

// Round to nearest even with the hardware conversion (the same result as float_to_f16 /
// float_to_bf16 of dtype.hpp for the finite values met here).
template <bool OBF16>
__device__ __forceinline__ std::uint16_t to_half_bits(float v) {
  unsigned short h;
  if constexpr (OBF16) asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(v));
  else asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
  return h;
}

template <quant::kind Q, bool OBF16>
__device__ __forceinline__ std::uint16_t dequantized_bits(const matrix_ref& W, std::uint32_t symbol, std::uint64_t row,
                                                          std::uint64_t col, std::uint32_t raw) {
  if constexpr (Q == quant::kind::lossless) {
    return lossless16_join(symbol, raw, W.alphabet);  // either split (format/planes.hpp)
  } else {
    float scale;
    int code;
    if constexpr (Q == quant::kind::int8_rowwise) {
      scale = __ldg(reinterpret_cast<const float*>(W.data + W.scales_offset) + row);
      code = int8_code(symbol);
    } else {
      const std::uint64_t gpr = (W.layout.cols + W.group_size - 1) / W.group_size;
      scale = f16_to_float(static_cast<std::uint16_t>(
          __ldg(reinterpret_cast<const unsigned short*>(W.data + W.scales_offset) + row * gpr + col / W.group_size)));
      code = int4_code(symbol);
    }
    return to_half_bits<OBF16>(dequantize(code, scale));
  }
}

template <quant::kind Q, bool OBF16, int K>
__global__ void __launch_bounds__(cta_threads, 2) dequantize_kernel(const dequantize_args args) {
  constexpr bool LOSSLESS = Q == quant::kind::lossless;
  __shared__ __align__(16) std::uint16_t stage[cta_warps][64 * 16];
  const matrix_ref& W = args.w;
  const tile_layout& L = W.layout;
  const std::uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31u;
  const std::uint64_t row0 = std::uint64_t(blockIdx.x) * strip_rows;
  const std::uint64_t gr = row0 / L.tile_rows;
  const std::uint32_t ro = static_cast<std::uint32_t>(row0 - gr * L.tile_rows);
  const std::uint64_t kt = L.tile_cols / 16u, units = (L.cols + 15u) / 16u;
  const std::uint64_t parts = std::uint64_t(gridDim.y) * cta_warps, part = std::uint64_t(blockIdx.y) * cta_warps + warp;
  const std::uint64_t u0 = units * part / parts, u1 = units * (part + 1) / parts;
  const fixed_code code = W.fixed();
  for (std::uint64_t u = u0; u < u1;) {
    const std::uint64_t tc = u / kt;
    const std::uint64_t end = u1 < (tc + 1) * kt ? u1 : (tc + 1) * kt;
    const std::uint32_t ka = static_cast<std::uint32_t>(u - tc * kt);
    std::uint32_t kb = static_cast<std::uint32_t>(end - tc * kt);
    u = end;
    const std::uint64_t t = gr * L.grid_cols + tc;
    const tile_box box = L.box(t);
    const std::uint32_t h = box.height, w = box.width;
    if (kb > (w + 15u) / 16u) kb = (w + 15u) / 16u;
    const std::uint64_t* index = reinterpret_cast<const std::uint64_t*>(W.data + W.index_offset);
    const std::uint64_t ta = index[t], tb = index[t + 1];
    if (tb < ta || tb > W.payload_bytes || ((ta | tb) & 15u) != 0) {
      if (lane == 0) report(args.status, status::corrupt_header);
      continue;
    }
    const std::uint8_t* tile = W.data + W.payload_offset + ta;
    const std::uint64_t bytes = tb - ta;
    const bool fixed = W.coding == plane_coding::fixed;
    if (fixed ? bytes < fixed_tile_bytes(fixed_shape(code, h, w), 0) : bytes < stored_tile_bytes(W.alphabet, std::uint64_t(h) * w)) {
      if (lane == 0) report(args.status, status::corrupt_payload);
      continue;
    }
    const std::uint32_t hr = h - ro < strip_rows ? h - ro : strip_rows;
    const std::uint32_t ca = 16u * ka, cb = 16u * kb < w ? 16u * kb : w;
    const std::uint64_t tcol0 = tc * L.tile_cols;
    const std::uint8_t* raw =  // lossless: 16-bit (make_matrix_ref refuses fp32 lossless)
        LOSSLESS ? W.data + W.raw_offset + lossless_raw_start(dtype::bf16, W.alphabet, L.element_start(t), L.groups8_before(t))
                 : nullptr;
    const bool raw_bytes = lossless16_bytes(W.alphabet);
    bool done = false;
    if constexpr (K > 0) {
      // Fixed codes of lossless tensors are always split in bytes (the format allows no other).
      if (fixed && tile_uses_mma_order(W.order, h, w) && (!LOSSLESS || (reinterpret_cast<std::uintptr_t>(raw) & 3u) == 0) &&
          args.ld % 16 == 0 && (reinterpret_cast<std::uintptr_t>(args.out) & 15u) == 0) {
        const std::uint32_t g = lane >> 2, tq = lane & 3u;
        const std::uint32_t* words_base = reinterpret_cast<const std::uint32_t*>(tile);
        float row_scale[8];  // int8: the lane's 8 rows
        if constexpr (Q == quant::kind::int8_rowwise) {
#pragma unroll
          for (int i = 0; i < 8; ++i)
            row_scale[i] = __ldg(reinterpret_cast<const float*>(W.data + W.scales_offset) + row0 + 16 * (i >> 1) + g + 8 * (i & 1));
        }
        // Two quads in flight: the next one's words (and raw bytes) load while this one is written.
        std::uint32_t cur[K], nxt[K], rcur[LOSSLESS ? 8 : 1], rnxt[LOSSLESS ? 8 : 1];
        const std::uint32_t qbase = (ro / 64u) * (w / 16u);
        load_fixed_quad<K>(words_base, qbase + ka, cur);
        if constexpr (LOSSLESS) load_raw_quad(raw + 1024u * (qbase + ka) + 32u * lane, rcur);
        for (std::uint32_t kc = ka; kc < kb; ++kc) {
          const std::uint32_t q = qbase + kc;
          if (kc + 1 < kb) {
            load_fixed_quad<K>(words_base, q + 1, nxt);
            if constexpr (LOSSLESS) load_raw_quad(raw + 1024u * (q + 1) + 32u * lane, rnxt);
          }
          std::uint32_t pairs[4][4], lossless_a[4][4];
          fixed_quad_pairs<K>(cur, pairs);
          if constexpr (LOSSLESS) lossless_bytes_fragments(pairs, (code.first | (code.first << 16)) << 7, rcur, lossless_a);
#pragma unroll
          for (int r4 = 0; r4 < 4; ++r4) {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              const std::uint32_t row = 16u * r4 + g + 8u * (j & 1), col = 2u * tq + 8u * (j >> 1);
              std::uint32_t v;
              if constexpr (LOSSLESS) {
                v = lossless_a[r4][j];
              } else {
                const std::uint64_t grow = row0 + row, gcol = tcol0 + 16u * kc + col;
                std::uint32_t out2[2];
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                  const std::uint32_t sym = code.first + ((pairs[r4][j] >> (16 * e)) & 0xffffu);
                  if constexpr (Q == quant::kind::int8_rowwise) {
                    out2[e] = to_half_bits<OBF16>(dequantize(int8_code(sym), row_scale[2 * r4 + (j & 1)]));
                  } else {
                    out2[e] = dequantized_bits<Q, OBF16>(W, sym, grow, gcol + e, 0);
                  }
                }
                v = out2[0] | (out2[1] << 16);
              }
              *reinterpret_cast<std::uint32_t*>(&stage[warp][row * 16 + col]) = v;
            }
          }
          __syncwarp();
          // 64 rows x 32 bytes: lane writes rows lane and lane + 32, two 16-byte halves each.
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            const std::uint32_t row = lane + 32u * (k >> 1), half = k & 1;
            const uint4 v = *reinterpret_cast<const uint4*>(&stage[warp][row * 16 + 8 * half]);
            *reinterpret_cast<uint4*>(args.out + (row0 + row) * args.ld + tcol0 + 16u * kc + 8 * half) = v;
          }
          __syncwarp();
#pragma unroll
          for (int j = 0; j < K; ++j) cur[j] = nxt[j];
          if constexpr (LOSSLESS) {
#pragma unroll
            for (int j = 0; j < 8; ++j) rcur[j] = rnxt[j];
          }
        }
        done = true;
      }
    }
    if (!done) {
      for (std::uint32_t r = 0; r < hr; ++r)
        for (std::uint32_t c = ca + lane; c < cb; c += 32) {
          const std::uint32_t i = tile_symbol_index(W.order, h, w, ro + r, c);
          const std::uint32_t sym = fixed ? code.first + fixed_code_at(tile, code.bits, i) : stored_symbol(tile, W.alphabet, i);
          const std::uint32_t rv = !LOSSLESS ? 0u : raw_bytes ? raw[i] : raw7_unpack(raw + 7u * (i >> 3), i & 7u);
          args.out[(row0 + r) * args.ld + tcol0 + c] = dequantized_bits<Q, OBF16>(W, sym, row0 + r, tcol0 + c, rv);
        }
    }
    if (fixed && code.has_escapes()) {
      __syncwarp();  // the placeholders written above come first
      const fixed_tile_shape sh = fixed_shape(code, h, w);
      const std::uint16_t* rs = reinterpret_cast<const std::uint16_t*>(tile + sh.code_bytes);
      const std::uint32_t total = rs[h];
      if (sh.escapes_offset + std::uint64_t(total) * sh.entry_bytes > bytes) {
        if (lane == 0) report(args.status, status::corrupt_payload);
        continue;
      }
      for (std::uint32_t rr = lane; rr < hr; rr += 32) {
        const std::uint32_t tr = ro + rr, e0 = rs[tr], e1 = rs[tr + 1];
        if (e0 > e1 || e1 > total) {
          report(args.status, status::corrupt_payload);
          continue;
        }
        for (std::uint32_t e = e0; e < e1; ++e) {
          std::uint32_t col, val;
          fixed_escape_at(tile, sh, e, col, val);  // the symbol (lossless: split in bytes, the raw byte apart)
          if (col < ca) continue;
          if (col >= cb) break;
          const std::uint32_t rv = LOSSLESS ? raw[tile_symbol_index(W.order, h, w, tr, col)] : 0u;
          args.out[(row0 + rr) * args.ld + tcol0 + col] = dequantized_bits<Q, OBF16>(W, val, row0 + rr, tcol0 + col, rv);
        }
      }
    }
  }
}

template <quant::kind Q, bool OBF16, int K>
status launch_dequantize(const dequantize_args& args, dim3 grid, cudaStream_t stream) {
  dequantize_kernel<Q, OBF16, K><<<grid, cta_threads, 0, stream>>>(args);
  return cudaGetLastError() == cudaSuccess ? status::success : status::cuda_error;
}

template <quant::kind Q, bool OBF16>
status select_dequantize(const dequantize_args& args, dim3 grid, cudaStream_t stream) {
  const matrix_ref& w = args.w;
  if (w.coding == plane_coding::fixed && w.order == symbol_order::mma) {
    if constexpr (Q == quant::kind::int8_rowwise) {
      if (w.code_bits == 6) return launch_dequantize<Q, OBF16, 6>(args, grid, stream);
      if (w.code_bits == 7) return launch_dequantize<Q, OBF16, 7>(args, grid, stream);
      if (w.code_bits == 8) return launch_dequantize<Q, OBF16, 8>(args, grid, stream);
    } else if constexpr (Q == quant::kind::int4_group) {
      if (w.code_bits == 4) return launch_dequantize<Q, OBF16, 4>(args, grid, stream);
    } else {
      if (w.code_bits == 3) return launch_dequantize<Q, OBF16, 3>(args, grid, stream);
      if (w.code_bits == 4) return launch_dequantize<Q, OBF16, 4>(args, grid, stream);
      if (w.code_bits == 5) return launch_dequantize<Q, OBF16, 5>(args, grid, stream);
      if (w.code_bits == 6) return launch_dequantize<Q, OBF16, 6>(args, grid, stream);
    }
  }
  return launch_dequantize<Q, OBF16, 0>(args, grid, stream);
}

}  // namespace detail

// Decodes W into out (row n at out + n * ld, out_type fp16 or bf16; lossless: the source type).
[[nodiscard]] inline status dequantize_async(const matrix_ref& w, void* out, dtype out_type, std::uint64_t ld,
                                             std::uint32_t* status_word, cudaStream_t stream) {
  if (w.data == nullptr || out == nullptr) return status::invalid_argument;
  if (w.coding != plane_coding::stored && w.coding != plane_coding::fixed) return status::unsupported;  // rANS, unknown
  if (out_type != dtype::f16 && out_type != dtype::bf16) return status::unsupported;
  if (w.quant == quant::kind::lossless && out_type != w.source) return status::unsupported;
  if (ld < w.cols() || reinterpret_cast<std::uintptr_t>(out) % 2 != 0) return status::invalid_argument;
  detail::dequantize_args args;
  args.w = w;
  args.out = static_cast<std::uint16_t*>(out);
  args.ld = ld;
  args.status = status_word;
  const std::uint32_t strips = static_cast<std::uint32_t>((w.rows() + detail::strip_rows - 1) / detail::strip_rows);
  const std::uint64_t units = (w.cols() + 15) / 16;
  std::uint32_t splits = static_cast<std::uint32_t>(std::min<std::uint64_t>(65535, std::max<std::uint64_t>(1, units / 32)));
  const dim3 grid(strips, splits, 1);
  const bool bf16 = out_type == dtype::bf16;
  switch (w.quant) {
    case quant::kind::int8_rowwise:
      return bf16 ? detail::select_dequantize<quant::kind::int8_rowwise, true>(args, grid, stream)
                  : detail::select_dequantize<quant::kind::int8_rowwise, false>(args, grid, stream);
    case quant::kind::int4_group:
      return bf16 ? detail::select_dequantize<quant::kind::int4_group, true>(args, grid, stream)
                  : detail::select_dequantize<quant::kind::int4_group, false>(args, grid, stream);
    default:
      return bf16 ? detail::select_dequantize<quant::kind::lossless, true>(args, grid, stream)
                  : detail::select_dequantize<quant::kind::lossless, false>(args, grid, stream);
  }
}

}  // namespace fused
}  // namespace tilecodec
