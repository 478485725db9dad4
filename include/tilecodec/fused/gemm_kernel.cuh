// tilecodec/fused/gemm_kernel.cuh: the fused kernel behind fused::gemm_async (fused/gemm.cuh).
// Y[b][n] = sum_k W[n][k] X[b][k] with W read compressed; users normally call gemm_async.
//
// Work split. A block (8 warps) owns a strip of 64 output rows (one mma row quad) and a range of
// the columns: blockIdx.y of `splits` ranges; blockIdx.z selects a chunk of up to 8 * NG batch
// entries. Its warps split that range again, in units of 16 columns (one k chunk; whole tiles
// for rANS). A warp walks its units tile by tile:
// A warp works in chunks of at most 256 columns of one tile. Per chunk it stages the activations
// (x, its batch rows, those columns) into its shared memory with cp.async, loads the chunk's
// escape row table, then:
//   - fast path (fixed coder, code width K known at compile time, tile in the mma order): per
//     quad (64 rows x 16 columns) K coalesced code words per lane (+8 raw words for lossless),
//     prefetched D quads ahead; decode into A fragments; B fragments from the staged x;
//     4 x NG mma.sync into fp32 accumulators (int4: each quad's products are scaled by their
//     group scale in fp32, the next group's scales prefetched);
//   - rANS path: one warp decodes the whole 64-row tile (fused/rans_quad.cuh), same consumer;
//   - per-element path (edge tiles in row-major order, stored planes, unusual code widths): lanes
//     decode columns at random, fp32 FMAs, a warp reduction per row;
//   - escapes of fixed-coded tiles: the chunk's entries are prefetched into registers while the
//     quads run, then each lane corrects the accumulators it owns (rows g, g + 8 of each 16-row
//     block, batch columns 2t, 2t + 1): (true - coded value) * x in fp32, entries in order.
// Stream path (int8 and int4 at any batch, lossless at batch <= 8; every tile of the warp's range
// whole-width, fixed coder, mma order, x rows 4-byte aligned, 16-byte aligned at batch 9-16;
// warp_gemm::stream): no chunks and no staging of whole chunks. The quads run as one stream across
// tiles with the code-word ring refilled across tile boundaries (each slot decoded before it is
// refilled), B fragments from L1 one quad ahead (batch 9-16: from a per-warp shared-memory ring
// filled with cp.async two groups of quads ahead, one ldmatrix per quad), and each tile's escape
// pass run between two groups of quads (one site outside the unrolled body) from entries and
// row-table words copied a tile ahead: each lane walks the entries of its own two rows (row
// table, no search, no shuffles). int8 at batch 9-16 instead patches escapes into the A
// fragments before the mma (each quad's fragments pass through shared memory, the lanes write
// the escaped weights of their own rows there; escape data copied two and three tiles ahead), so
// an escape costs nothing per batch entry. Other cases take the chunk path above.
// Per-warp results meet in shared memory in a fixed order; with splits > 1 each block writes its
// partial to the workspace and the last block of the strip (an atomic counter, reset after use)
// sums the partials in split order. Every sum has a fixed order: results are deterministic.
#pragma once

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../coder/fixed.hpp"
#include "../device/dependent_launch.cuh"
#include "../dtype.hpp"
#include "../format/mma_order.hpp"
#include "../format/planes.hpp"
#include "../status.hpp"
#include "fragment.cuh"
#include "matrix_ref.cuh"
#include "rans_quad.cuh"

// Tuning (never changes results beyond fp32 summation order of the same terms): the stream path
// for whole-width fixed-coded tiles, per quantization (bit 1: int8, 2: lossless, 4: int4; the
// others take the chunk path for every tile; int4 with its interleaved decode: PERFORMANCE.md
// 6.14), and extra quads of prefetch depth on it.
#ifndef TILECODEC_FUSED_STREAM
#define TILECODEC_FUSED_STREAM 7
#endif
#ifndef TILECODEC_FUSED_STREAM_NG2  // batch 9-16 on the stream path too (bits as for TILECODEC_FUSED_STREAM)
#define TILECODEC_FUSED_STREAM_NG2 7
#endif
#ifndef TILECODEC_FUSED_STREAM_LI_SHALLOWER  // lossless and int4: quads less than the chunk path's depth
#define TILECODEC_FUSED_STREAM_LI_SHALLOWER 1
#endif
#ifndef TILECODEC_FUSED_STREAM_EXTRA_DEPTH
#define TILECODEC_FUSED_STREAM_EXTRA_DEPTH 0
#endif
#ifndef TILECODEC_FUSED_STREAM_NG2_DEPTH  // batch 9-16, stream path: quads in flight (0: the chunk path's D; 3 was slower)
#define TILECODEC_FUSED_STREAM_NG2_DEPTH 0
#endif
// int8 escapes on the stream path at batch 9-16 (B fragments from the shared ring): 1 = patched
// into the A fragments before the mma (each quad's fragments pass through shared memory, where
// the lanes write the escaped values of their own rows), so they cost no work per batch entry;
// 0 = each tile's correction pass after its last quad, 16 activation loads and FMAs per escape
// (PERFORMANCE.md 6.12).
#ifndef TILECODEC_FUSED_STREAM_PATCH_ESCAPES
#define TILECODEC_FUSED_STREAM_PATCH_ESCAPES 1
#endif
#ifndef TILECODEC_FUSED_STREAM_ESC_LOADS  // x loads in flight per escape entry, stream path, batch 9-16
#define TILECODEC_FUSED_STREAM_ESC_LOADS 4
#endif
// B fragments on the stream path from a per-warp shared-memory ring filled with cp.async (one
// ldmatrix per quad) instead of L1 loads: bit 1 for batch <= 8, bit 2 for batch 9-16 (x rows
// then 16-byte aligned, else the chunk path).
#ifndef TILECODEC_FUSED_STREAM_SMEM_B
#define TILECODEC_FUSED_STREAM_SMEM_B 2
#endif
// Stream path, batch <= 8 (bit 1: int8, 2: lossless, 4: int4): a quad's code words (int8 k = 7: 896 bytes)
// copied into a per-warp shared ring with 16-byte cp.async and read from there, instead of K
// 4-byte loads per lane into registers: wide loads stream better (PERFORMANCE.md 6.7-6.8; H100:
// int8 batch 1 and 4 2-13% faster from 14336x4096 up, 0.5-1.9% slower at 4096x4096; H200, int4:
// faster only at 28672x8192, 3-18% slower elsewhere, 6.14; lossless with its raw plane staged:
// -2..+3%, deeper rings slower, 6.17). 0: the register ring. Only these
// kernels take the ring's shared memory (DS quads per warp, after the warp storage).
#ifndef TILECODEC_FUSED_STREAM_STAGE_WORDS
#define TILECODEC_FUSED_STREAM_STAGE_WORDS 1
#endif
// Stream path, lossless, batch <= 8: a quad's raw plane (1024 bytes: 8 words a lane, at a 32-byte
// lane stride, so eight 4-byte loads each touch all 1024 bytes) copied into a per-warp shared ring,
// coalesced, and read from there (H200: 12-15% less time at batch 1 and 4, PERFORMANCE.md 6.17).
// 1: 16-byte copies (raw plane 16-byte aligned, else the 4-byte form); 2: always 4-byte copies
// (word 32 j + lane); 0: eight 4-byte loads into registers.
#ifndef TILECODEC_FUSED_STREAM_STAGE_RAW
#define TILECODEC_FUSED_STREAM_STAGE_RAW 1
#endif
// Stream path without SMEM_B (bit per kind as above): B fragments loaded two quads ahead (DS
// even) or DS quads ahead, instead of one: the copy into the MMA's registers was the top stall
// (ncu, lossless), waiting for x from L2. H200 (PERFORMANCE.md 6.17): int4 4-18% less time at
// batch 1 and 4, lossless 0-3%; int8 mixed (-7..+5%), left at one quad ahead.
#ifndef TILECODEC_FUSED_STREAM_X_AHEAD
#define TILECODEC_FUSED_STREAM_X_AHEAD 6
#endif
// Batch 9-16 (B from the shared ring) with codes that never escape: the code words copied with
// the B ring's groups, two groups ahead, into slots of the escape buffers those tensors leave
// idle, instead of DS quads ahead into registers. Bits as for TILECODEC_FUSED_STREAM (1 = int8 at 8
// bits, 4 = int4 at 4 bits); int4 measured slower on four of five shapes (PERFORMANCE.md 6.18).
#ifndef TILECODEC_FUSED_STREAM_RING_WORDS
#define TILECODEC_FUSED_STREAM_RING_WORDS 1
#endif
// Stream path: the first quads start before the first tile's escape entries are asked for (they
// need its row table, one more round trip); 0: after (the first tile's escape data waited for).
#ifndef TILECODEC_FUSED_STREAM_EARLY_QUADS
#define TILECODEC_FUSED_STREAM_EARLY_QUADS 1
#endif
// Escapes on the stream path: 1 = each lane corrects its own two rows entry by entry (no
// shuffles, no search; the row's corrections summed in entry order), 0 = the chunk path's shuffle
// pass over all of the strip's entries (one entry per lane, segmented scan per row). Both are
// deterministic; they add a row's corrections in different fp32 orders.
#ifndef TILECODEC_FUSED_STREAM_ROW_ESCAPES
#define TILECODEC_FUSED_STREAM_ROW_ESCAPES 1
#endif

namespace tilecodec {
namespace fused {
namespace detail {

inline constexpr int cta_warps = 8;
inline constexpr int cta_threads = 32 * cta_warps;
inline constexpr std::uint32_t strip_rows = 64;
inline constexpr std::uint32_t chunk_kcs = 16;                  // k chunks (16 columns) per staged chunk
inline constexpr std::uint32_t x_stride = 16 * chunk_kcs + 8;  // halves per staged x row (+8: no bank conflicts)
inline constexpr std::uint32_t escape_slots = 8;               // escape entries prefetched per lane per chunk
inline constexpr std::uint32_t stream_tiles = 32;              // tiles per piece of the stream path (one lane each)
// Splits reduced in one thread-block cluster (gemm.cuh). Only pairs: on an H200, 2-block clusters
// made 8192x8192 1-10% faster, 4-block ones made 4096x4096 and 4096x14336 40-80% slower
// (why was not measured; PERFORMANCE.md 6.11).
inline constexpr std::uint32_t max_cluster_splits = 2;
// Escape entries of one strip of one tile the stream path keeps in shared memory (4-byte words
// per buffer, two buffers): 2 KB, 1024 two-byte entries, 6.25% of a 64 x 256 strip's weights
// (synthetic Llama-like int8: about 290 on average, up to 660). Entries past the copy are read
// from global memory one at a time, which made the warps of such strips the call's slowest.
inline constexpr std::uint32_t stream_entry_words = 512;

// The bit of a quantization in the per-kind tuning switches (TILECODEC_FUSED_STREAM and the others
// that say "bits as for").
constexpr int quant_bit(quant::kind q) { return q == quant::kind::int8_rowwise ? 1 : q == quant::kind::lossless ? 2 : 4; }

// Whether codes of this quantization and width go through the batch 9-16 stream path's word ring
// (TILECODEC_FUSED_STREAM_RING_WORDS: codes that never escape); plan_gemm gives those kernels
// longer pieces.
constexpr bool ring_words_codes(quant::kind q, std::uint32_t code_bits) {
  const bool never_escape = (q == quant::kind::int8_rowwise && code_bits == 8) || (q == quant::kind::int4_group && code_bits == 4);
  return never_escape && (TILECODEC_FUSED_STREAM_RING_WORDS & quant_bit(q)) != 0;
}

enum class path : int { fixed_fast = 0, element = 1, rans = 2 };

struct gemm_args {
  matrix_ref w;
  const std::uint16_t* x = nullptr;  // [batch][ldx] fp16 or bf16 bits
  std::uint64_t ldx = 0;
  void* y = nullptr;                 // [batch][ldy]
  std::uint64_t ldy = 0;
  dtype y_type = dtype::f32;
  std::uint32_t batch = 0;
  std::uint32_t splits = 1;
  std::uint32_t strips = 0;
  float* partials = nullptr;          // splits > 1: [chunks][strips][splits][BC][64]
  std::uint32_t* counters = nullptr;  // splits > 1: [chunks][strips], zero between calls
  std::uint32_t* status = nullptr;    // optional: raised to the largest error seen (atomicMax)
  std::uint32_t int_sub = 0;          // fragment.cuh int_pair_sub() for this tensor
  std::uint32_t int_sub_hi = 0;       // fragment.cuh int_pair_sub_high() (int4, 4-bit codes)
  bool x_aligned = false;             // x and ldx allow 32-bit loads of pairs
  bool x_aligned16 = false;           // x and ldx allow 16-byte copies of 8 columns
  bool cluster_splits = false;        // splits > 1 launched as clusters of `splits` blocks along y:
                                      // the partials meet in distributed shared memory, not the workspace
};

// Per-warp shared memory of the fixed / per-element paths. At the end of the warp's work its
// first 4 * 8 * NG * 64 bytes take the warp's partial sums [8 NG][64] (fp32).
// The stream path (warp_gemm::stream) does not stage activations; its second escape buffers and
// its tile table take the place of the staged x.
struct stream_storage {
  std::uint32_t entries[2][stream_entry_words];  // escape entries of tiles i & 1 (bytes from a 4-byte boundary)
  std::uint32_t rows[2][34];                 // row-table words of two tiles: raw row starts ro .. ro + 65
  std::uint32_t total[2];                    // the word holding each tile's entry count (row h), low half
  struct meta_t {
    std::uint64_t base;  // tile byte where the copied entries start
    std::uint32_t e_begin, n_ent, cached, total;
  } meta[2];
  std::uint64_t toff[stream_tiles];  // payload offsets of the piece's tiles (~0: corrupt, skipped)
  std::uint64_t tend[stream_tiles];
};

// What the stream path's patched escapes (TILECODEC_FUSED_STREAM_PATCH_ESCAPES) keep beside
// stream_storage, in the chunk path's entry buffer: a third row-table buffer (the tables are asked
// three tiles ahead) and each lane's cursors in the entries of its two rows.
struct stream_cursors {
  std::uint32_t rows[34];
  std::uint32_t total;
  std::uint32_t cur[2][32];  // [row lane / lane + 32][lane]: next entry | end << 16 (strip entry numbers)
  std::uint32_t tag[32];     // piece tile + 1 the lane's cursors are in (0: none yet)
};

template <int NG>
struct warp_storage {
  union {
    alignas(16) std::uint16_t x[8 * NG][x_stride];  // staged activations of the chunk
    stream_storage s;
  };
  union {
    std::uint32_t entries[32 * escape_slots];     // bytes of the strip's escape entries (from a 4-byte boundary)
    stream_cursors sc;
  };
  std::uint16_t rows[68];                          // escape row table of the strip, from its first entry
  alignas(16) float corr[8 * NG][64];              // escape corrections, [batch][row] (patched escapes: scratch)
};

static_assert(sizeof(stream_cursors) <= sizeof(std::uint32_t) * 32 * escape_slots, "stream_cursors too large");

template <int NG, path P>
constexpr std::size_t warp_storage_bytes() {
  const std::size_t a = sizeof(warp_storage<NG>), b = P == path::rans ? sizeof(rans_warp_storage) : 0;
  const std::size_t c = sizeof(float) * 8 * NG * 64;
  const std::size_t m = a > b ? (a > c ? a : c) : (b > c ? b : c);
  return (m + 15) / 16 * 16;
}

template <int NG, path P>
constexpr std::size_t gemm_smem_bytes() {
  return (P == path::rans ? sizeof(rans_table_storage) : 0) + cta_warps * warp_storage_bytes<NG, P>();
}

__device__ __forceinline__ void report(std::uint32_t* s, status code) {
  if (s != nullptr) atomicMax(s, static_cast<std::uint32_t>(code));
}

template <bool BF16>
__device__ __forceinline__ float half_bits_to_float(std::uint32_t h) {
  if constexpr (BF16) {
    return __uint_as_float(h << 16);
  } else {  // the hardware conversion (exact, like f16_to_float)
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(static_cast<unsigned short>(h)));
    return f;
  }
}

__device__ __forceinline__ std::uint64_t shfl64(std::uint64_t v, std::uint32_t src) {
  const std::uint32_t lo = __shfl_sync(0xffffffffu, static_cast<std::uint32_t>(v), src);
  const std::uint32_t hi = __shfl_sync(0xffffffffu, static_cast<std::uint32_t>(v >> 32), src);
  return (std::uint64_t(hi) << 32) | lo;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  return v;
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const std::uint32_t s = static_cast<std::uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
  const std::uint32_t s = static_cast<std::uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(gmem) : "memory");
}
// Copies 16 or 4 bytes to a shared address, or (copy false) zero-fills them without reading the
// source (src-size 0).
__device__ __forceinline__ void cp_async16_or_zero(std::uint32_t smem, const void* gmem, bool copy) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(gmem), "r"(copy ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async4_or_zero_to(std::uint32_t smem, const void* gmem, bool copy) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem), "l"(gmem), "r"(copy ? 4 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Programmatic dependent launch (device/dependent_launch.cuh): every thread that reads the
// activations or writes anything global waits for the previous kernel first; the trigger lets the
// next kernel (if it was launched to overlap this one) start its own prologue.
using ::tilecodec::detail::allow_next_grid;
using ::tilecodec::detail::wait_for_previous_grid;

template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

// One escape entry (2 or 4 bytes; 8-byte entries come as two words, low first).
__device__ __forceinline__ std::uint64_t load_entry(const std::uint8_t* tile, const fixed_tile_shape& sh, std::uint32_t e) {
  const std::uint8_t* p = tile + sh.escapes_offset + std::uint64_t(e) * sh.entry_bytes;
  if (sh.entry_bytes == 2) return ldg_u16(p);
  if (sh.entry_bytes == 4) return ldg_u32(p);
  return std::uint64_t(ldg_u32(p)) | (std::uint64_t(ldg_u32(p + 4)) << 32);
}

template <quant::kind Q, int NG, bool XBF16, path P, int K>
struct warp_gemm {
  static constexpr int BC = 8 * NG;
  static constexpr bool INT4 = Q == quant::kind::int4_group;
  static constexpr bool LOSSLESS = Q == quant::kind::lossless;
  // Fast-path codes as wide as the symbols (int8 k = 8, int4 k = 4; K is the tensor's k): no
  // escapes can exist, so their passes are compiled out.
  static constexpr bool FULL_WIDTH = P == path::fixed_fast && ((Q == quant::kind::int8_rowwise && K >= 8) || (INT4 && K >= 4));
  // 4-bit codes (int4, lossless exponents): A and B fragments in the interleaved k order
  // (fragment.cuh int4_interleaved_fragments, lossless_bytes_interleaved_fragments: a third to a half of
  // the instructions of the code-pair decode).
  static constexpr bool INTERLEAVED = P == path::fixed_fast && (INT4 || LOSSLESS) && K == 4;
  // Quads in flight per warp on the chunk path (registers).
  static constexpr int D = LOSSLESS ? (NG == 1 ? 3 : 2) : K <= 5 ? (NG == 1 ? 4 : (INT4 ? 2 : 3)) : (NG == 1 ? 3 : 2);
  // Lossless raw plane per lane and quad: the fixed path reads the byte split (8 words; the format
  // allows fixed codes no other), the rANS path the 7-bit plane (7 words), format/planes.hpp.
  static constexpr bool RAW8 = LOSSLESS && P == path::fixed_fast;
  static constexpr int RW = LOSSLESS ? (RAW8 ? 8 : 7) : 1;
  static constexpr std::uint32_t raw_lane_bytes = 4u * RW, raw_quad_bytes = 32u * raw_lane_bytes;

  const gemm_args& a;
  const matrix_ref& W;
  const std::uint16_t* x;  // this chunk's first batch row
  warp_storage<NG>* st;    // this warp's shared memory (fixed / element paths)
  std::uint32_t nb;        // batch entries in this pass
  std::uint64_t row0;      // first output row of the strip
  std::uint64_t gr;        // grid row of the strip
  std::uint32_t ro;        // strip's first row inside its tiles
  std::uint32_t lane, g, t;
  float acc[4][NG][4];
  float gscale[INT4 ? 8 : 1];  // int4: the current group's scales of the lane's 8 rows
  std::uint64_t group = ~0ull;
  std::uint32_t gshift = 0;  // int4: log2 of the group size (32, 64 or 128)
  std::uint64_t gpr = 0;     // int4: groups per row

  __device__ warp_gemm(const gemm_args& args, const std::uint16_t* xc, void* storage, std::uint32_t valid, std::uint64_t strip)
      : a(args), W(args.w), x(xc), st(static_cast<warp_storage<NG>*>(storage)), nb(valid) {
    row0 = strip * strip_rows;
    gr = row0 / W.layout.tile_rows;
    ro = static_cast<std::uint32_t>(row0 - gr * W.layout.tile_rows);
    lane = threadIdx.x & 31u;
    g = lane >> 2;
    t = lane & 3u;
    if constexpr (INT4) {
      gshift = W.group_size == 32 ? 5u : (W.group_size == 64 ? 6u : 7u);
      gpr = (W.layout.cols + W.group_size - 1) >> gshift;
    }
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int n = 0; n < NG; ++n)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[r][n][c] = 0.0f;
    if constexpr (P != path::rans) {
      for (std::uint32_t i = lane; i < 8u * NG * 64u; i += 32) (&st->corr[0][0])[i] = 0.0f;
    }
  }

  // Staged activation of batch entry b at chunk column c.
  __device__ float xs(std::uint32_t b, std::uint32_t c) const { return half_bits_to_float<XBF16>(st->x[b][c]); }

  __device__ float int4_scale(std::uint64_t row, std::uint64_t col) const {
    return half_bits_to_float<false>(
        ldg_u16(reinterpret_cast<const std::uint16_t*>(W.data + W.scales_offset) + row * gpr + (col >> gshift)));
  }

  // Value of a symbol in accumulator units: int8 codes (scaled at the end), int4 code * group
  // scale, lossless the weight itself (raw: its raw-plane bits, either split).
  __device__ float value(std::uint32_t symbol, std::uint64_t row, std::uint64_t col, std::uint32_t raw) const {
    if constexpr (Q == quant::kind::int8_rowwise) return float(int(symbol) - int(int8_symbol_offset));
    else if constexpr (INT4) return float(int(symbol) - int(int4_symbol_offset)) * int4_scale(row, col);
    else return half_bits_to_float<XBF16>(lossless16_join(symbol, raw, W.alphabet));
  }

  // Raw bits of element i of a lossless tile's raw plane, either split.
  __device__ std::uint32_t raw_at(const std::uint8_t* raw, std::uint32_t i) const {
    return lossless16_bytes(W.alphabet) ? raw[i] : raw7_unpack(raw + 7u * (i >> 3), i & 7u);
  }
  // Where tile t's raw plane starts (lossless: 16-bit, make_matrix_ref refuses fp32 lossless).
  __device__ const std::uint8_t* raw_tile_of(std::uint64_t t) const {
    return W.data + W.raw_offset +
           lossless_raw_start(dtype::bf16, W.alphabet, W.layout.element_start(t), W.layout.groups8_before(t));
  }

  // ---- int4 groups: each quad's products (exact codes times x, fp32) take their group's scale ----
  // The lane's rows are row0 + g + 8 i (i = 2 r + h): one base address, a stride of 8 rows.
  __device__ void load_group(std::uint64_t grp, float (&s)[INT4 ? 8 : 1]) const {
    if constexpr (INT4) {
      const std::uint16_t* p = reinterpret_cast<const std::uint16_t*>(W.data + W.scales_offset) + (row0 + g) * gpr + grp;
#pragma unroll
      for (int i = 0; i < 8; ++i) s[i] = half_bits_to_float<false>(ldg_u16(p + std::uint64_t(i) * 8u * gpr));
    }
  }
  // Before the MMAs of global column col0 (16 aligned): switches to its group and asks L1 for the
  // next group's scales.
  __device__ void enter_group(std::uint64_t col0) {
    if constexpr (INT4) {
      const std::uint64_t grp = col0 >> gshift;
      if (grp == group) return;
      load_group(grp, gscale);
      group = grp;
      if (((grp + 1) << gshift) < W.layout.cols) {
        const std::uint16_t* p = reinterpret_cast<const std::uint16_t*>(W.data + W.scales_offset) + (row0 + g) * gpr + grp + 1;
#pragma unroll
        for (int i = 0; i < 8; ++i) asm volatile("prefetch.global.L1 [%0];" ::"l"(p + std::uint64_t(i) * 8u * gpr));
      }
    }
  }

  // B fragments xb in the usual k order (interleaved here when the A fragments are).
  __device__ void mma_quad(const std::uint32_t (&af)[4][4], const std::uint32_t (&xb)[NG][2]) {
#pragma unroll
    for (int n = 0; n < NG; ++n) {
      if (8u * n >= nb) continue;  // warp-uniform: no batch entries in this group
      std::uint32_t b0 = xb[n][0], b1 = xb[n][1];
      if constexpr (INTERLEAVED) interleave_b_fragment(b0, b1);
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        if constexpr (INT4) {
          float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
          mma_16816<XBF16>(d, af[r], b0, b1);
#pragma unroll
          for (int c = 0; c < 4; ++c) acc[r][n][c] = fmaf(gscale[2 * r + (c >> 1)], d[c], acc[r][n][c]);
        } else {
          mma_16816<XBF16>(acc[r][n], af[r], b0, b1);
        }
      }
    }
  }

  // B fragments of chunk columns [c, c + 16) from the staged activations.
  __device__ void staged_b(std::uint32_t c, std::uint32_t (&xb)[NG][2]) const {
#pragma unroll
    for (int n = 0; n < NG; ++n) {
      const std::uint32_t b = 8u * n + g;
      xb[n][0] = b < nb ? *reinterpret_cast<const std::uint32_t*>(&st->x[b][c + 2 * t]) : 0u;
      xb[n][1] = b < nb ? *reinterpret_cast<const std::uint32_t*>(&st->x[b][c + 8 + 2 * t]) : 0u;
    }
  }

  // B fragments straight from global memory (the rANS path does not stage).
  __device__ void load_x(std::uint64_t col0, std::uint32_t (&xb)[NG][2]) const {
#pragma unroll
    for (int n = 0; n < NG; ++n) load_b_fragment(x, a.ldx, 8u * n + g, nb, col0, a.x_aligned, xb[n][0], xb[n][1]);
  }

  // Copies x[b][col0, col0 + ncols) of the pass's batch rows into st->x (cp.async when aligned).
  __device__ void stage_x(std::uint64_t col0, std::uint32_t ncols) {
    for (std::uint32_t b = 0; b < nb; ++b) {
      const std::uint16_t* src = x + b * a.ldx + col0;
      std::uint16_t* dst = st->x[b];
      for (std::uint32_t c = 8 * lane; c < ncols; c += 256) {
        if (a.x_aligned16 && c + 8 <= ncols) {
          cp_async16(dst + c, src + c);
        } else {
          for (std::uint32_t k = c; k < c + 8 && k < ncols; ++k) dst[k] = static_cast<std::uint16_t>(ldg_u16(src + k));
        }
      }
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  }

  // ---- fast path: fixed coder, mma order ------------------------------------------------------
  // A registers of one quad from the lane's K code words (and, lossless, its 8 raw words);
  // first2 = first | first << 16. The chunk and stream paths both decode through here.
  __device__ void quad_fragments(const std::uint32_t (&w)[K > 0 ? K : 1], const std::uint32_t (&rc)[RW],
                                 std::uint32_t first2, std::uint32_t (&af)[4][4]) const {
    if constexpr (P == path::fixed_fast) {
      if constexpr (Q == quant::kind::int8_rowwise) {
        int_quad_fragments<K, XBF16>(w, a.int_sub, af);  // one step, 5 instructions per pair
      } else if constexpr (INTERLEAVED && INT4) {
        int4_interleaved_fragments<XBF16>(w, a.int_sub, a.int_sub_hi, af);
      } else if constexpr (INTERLEAVED) {
        lossless_bytes_interleaved_fragments(w, first2 << 7, rc, af);
      } else {
        std::uint32_t pairs[4][4];
        fixed_quad_pairs<K>(w, pairs);
        if constexpr (LOSSLESS) lossless_bytes_fragments(pairs, first2 << 7, rc, af);
        else int_fragments<XBF16, (K > 7)>(pairs, a.int_sub, af);
      }
    }
  }

  // Quads q0 .. q0 + nq - 1 of a tile (one row quad, consecutive k chunks, nq <= 16); col0: global
  // column of the first; raw: the tile's raw plane (lossless).
  __device__ void fixed_quads(const std::uint8_t* tile, std::uint32_t q0, std::uint32_t nq, std::uint64_t col0,
                              const std::uint8_t* raw, std::uint32_t (&wb)[D][K > 0 ? K : 1],
                              std::uint32_t (&rb)[D][RW]) {
    if constexpr (P == path::fixed_fast) {
      const std::uint32_t* words = reinterpret_cast<const std::uint32_t*>(tile);
      const std::uint32_t first2 = W.first | (W.first << 16);
      auto prefetch = [&](int d, std::uint32_t idx) {
        load_fixed_quad<K>(words, q0 + idx, wb[d]);
        if constexpr (LOSSLESS) load_raw_quad(raw + raw_quad_bytes * (q0 + idx) + raw_lane_bytes * lane, rb[d]);
      };
      for (std::uint32_t base = 0; base < nq; base += D) {
#pragma unroll
        for (int d = 0; d < D; ++d) {
          const std::uint32_t idx = base + d;
          if (idx < nq) {
            std::uint32_t w[K], rc[RW];
#pragma unroll
            for (int j = 0; j < K; ++j) w[j] = wb[d][j];
            if constexpr (LOSSLESS) {
#pragma unroll
              for (int j = 0; j < RW; ++j) rc[j] = rb[d][j];
            }
            if (idx + D < nq) prefetch(d, idx + D);
            std::uint32_t af[4][4], xb[NG][2];
            quad_fragments(w, rc, first2, af);
            staged_b(16u * idx, xb);
            enter_group(col0 + 16u * idx);
            mma_quad(af, xb);
          }
        }
      }
    }
  }

  // ---- rANS path: a whole 64-row tile in the mma order ------------------------------------------
  __device__ void rans_tile(rans_warp_storage& rs, const rans_table_storage& table, const std::uint8_t* tile,
                            std::uint64_t bytes, std::uint32_t w, std::uint64_t tcol0, const std::uint8_t* raw) {
    if constexpr (P == path::rans) {
      rans_quad_decoder dec;
      status s = dec.begin(rs, table, W.prob_bits, W.alphabet, tile, bytes);
      if (s == status::success) {
        const std::uint32_t quads = w / 16u;
        for (std::uint32_t q = 0; q < quads; ++q) {
          std::uint32_t xb[NG][2];
          load_x(tcol0 + 16u * q, xb);
          std::uint32_t rc[RW];
          if constexpr (LOSSLESS) load_raw_quad(raw + raw_quad_bytes * q + raw_lane_bytes * lane, rc);
          std::uint32_t pairs[4][4], af[4][4];
          if (!dec.quad(pairs)) break;
          if constexpr (LOSSLESS) lossless_fragments<XBF16>(pairs, 0u, rc, af);
          else int_fragments<XBF16, !INT4>(pairs, a.int_sub, af);
          enter_group(tcol0 + 16u * q);
          mma_quad(af, xb);
        }
      }
      s = dec.finish();
      if (s != status::success && lane == 0) report(a.status, s);
    }
  }

  // ---- per-element path ---------------------------------------------------------------------------
  // Rows [ro, ro + hr) and chunk columns [ca, cb) of tile t (h x w), fixed-coded (code words
  // checked present) or stored (bytes checked present), any order. Each row's sums land in the
  // accumulators of the lanes that own them in the mma layout.
  __device__ void element_rows(const std::uint8_t* tile, std::uint32_t h, std::uint32_t w, std::uint32_t hr,
                               std::uint32_t ca, std::uint32_t cb, std::uint64_t tcol0, const std::uint8_t* raw) {
    const bool fixed = W.coding == plane_coding::fixed;
#pragma unroll
    for (int r4 = 0; r4 < 4; ++r4)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh)
        for (std::uint32_t gp = 0; gp < 8; ++gp) {
          const std::uint32_t rr = 16u * r4 + 8u * hh + gp;
          if (rr >= hr) continue;
          float part[BC];
#pragma unroll
          for (int b = 0; b < BC; ++b) part[b] = 0.0f;
          for (std::uint32_t c = ca + lane; c < cb; c += 32) {
            const std::uint32_t i = tile_symbol_index(W.order, h, w, ro + rr, c);
            const std::uint32_t sym = fixed ? W.first + fixed_code_at(tile, W.code_bits, i) : stored_symbol(tile, W.alphabet, i);
            const float v = value(sym, row0 + rr, tcol0 + c, LOSSLESS ? raw_at(raw, i) : 0u);
#pragma unroll
            for (int b = 0; b < BC; ++b)
              if (std::uint32_t(b) < nb) part[b] = fmaf(v, xs(b, c - ca), part[b]);
          }
#pragma unroll
          for (int b = 0; b < BC; ++b)
            if (std::uint32_t(b) < nb) part[b] = warp_sum(part[b]);
          if (g == gp) {
#pragma unroll
            for (int n = 0; n < NG; ++n)
#pragma unroll
              for (int c2 = 0; c2 < 2; ++c2) {
                const float v = t == 0 ? part[8 * n + c2] : t == 1 ? part[8 * n + 2 + c2] : t == 2 ? part[8 * n + 4 + c2] : part[8 * n + 6 + c2];
                acc[r4][n][2 * hh + c2] += v;
              }
          }
        }
  }

  // ---- escapes of a fixed-coded tile, chunk columns [ca, cb) -----------------------------------
  // The strip's entries are [e_begin, e_begin + n_ent) (sorted by row, then column); st->rows[r]
  // is row r's first entry relative to e_begin (r <= hr), st->entries holds the entry bytes from
  // byte `base` of the tile on (`cached` of them, copied while the quads ran). Lane l takes entry
  // p = r0 + l of each round: a row's entries sit in consecutive lanes, a segmented warp scan sums
  // their corrections (true - coded value) * x in a fixed order, and the row's last lane adds the
  // sum to st->corr. Deterministic; x comes from the staged chunk.
  __device__ void escapes(const std::uint8_t* tile, const fixed_tile_shape& sh, std::uint32_t hr, std::uint32_t ca,
                          std::uint32_t cb, std::uint64_t tcol0, std::uint32_t e_begin, std::uint32_t n_ent,
                          std::uint32_t total, std::uint64_t base, std::uint32_t cached, const std::uint16_t* rows,
                          std::uint32_t rbase, const std::uint32_t* ent, bool staged) {
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncwarp();
    const std::uint32_t vmask = (1u << sh.value_bits) - 1u;
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(ent);
    for (std::uint32_t r0 = 0; r0 < n_ent; r0 += 32) {
      const std::uint32_t p = r0 + lane;
      const bool valid = p < n_ent && e_begin + p < total;
      std::uint64_t v = 0;
      if (valid) {
        const std::uint64_t at = sh.escapes_offset + std::uint64_t(e_begin + p) * sh.entry_bytes - base;
        if (at + sh.entry_bytes <= cached)
          v = sh.entry_bytes == 2 ? std::uint64_t(*reinterpret_cast<const std::uint16_t*>(bytes + at))
                                  : std::uint64_t(*reinterpret_cast<const std::uint32_t*>(bytes + at));
        else
          v = load_entry(tile, sh, e_begin + p);
      }
      const std::uint32_t col = static_cast<std::uint32_t>(v >> sh.value_bits);
      const std::uint32_t val = static_cast<std::uint32_t>(v) & vmask;
      const bool inr = valid && col >= ca && col < cb;
      std::uint32_t row = 0;  // the last r < hr with rows[r] <= p
#pragma unroll
      for (std::uint32_t step = 32; step > 0; step >>= 1)
        if (row + step < hr && std::uint32_t(rows[row + step]) - rbase <= p) row += step;
      const float delta = inr ? escape_delta(row, col, val, int(W.first), tcol0) : 0.0f;
      const std::uint32_t key = valid ? row : 64u;  // rows never decrease across lanes
      bool same[5];
#pragma unroll
      for (int k = 0; k < 5; ++k) {
        const std::uint32_t other = __shfl_up_sync(0xffffffffu, key, 1u << k);
        same[k] = lane >= (1u << k) && other == key;
      }
      const std::uint32_t next = __shfl_down_sync(0xffffffffu, key, 1);
      const bool leader = key < 64u && (lane == 31 || next != key);
      for (std::uint32_t b = 0; b < nb; ++b) {
        float c = 0.0f;
        if (inr) c = delta * (staged ? xs(b, col - ca) : half_bits_to_float<XBF16>(ldg_u16(x + b * a.ldx + tcol0 + col)));
#pragma unroll
        for (int k = 0; k < 5; ++k) {
          const float o = __shfl_up_sync(0xffffffffu, c, 1u << k);
          if (same[k]) c += o;
        }
        if (leader) st->corr[b][key] += c;
      }
      __syncwarp();  // a row may continue in the next round, on another lane
    }
  }

  // ---- one chunk (<= 256 columns) of one tile ------------------------------------------------------
  __device__ void chunk(const std::uint8_t* tile, std::uint64_t bytes, std::uint32_t h, std::uint32_t w, std::uint32_t hr,
                        std::uint32_t k0, std::uint32_t k1, std::uint64_t tcol0, const std::uint8_t* raw, bool fast,
                        const fixed_tile_shape& sh, bool esc) {
    const std::uint32_t ca = 16u * k0, cb = 16u * k1 < w ? 16u * k1 : w;
    const std::uint32_t nq = k1 - k0;
    const std::uint32_t q0 = (ro / 64u) * (w / 16u) + k0;
    // 1. code words of the first quads (fast path), in flight while the rest is set up.
    std::uint32_t wb[D][K > 0 ? K : 1], rb[D][RW];
    if constexpr (P == path::fixed_fast) {
      if (fast) {
#pragma unroll
        for (int d = 0; d < D; ++d) {
          if (std::uint32_t(d) < nq) {
            load_fixed_quad<K>(reinterpret_cast<const std::uint32_t*>(tile), q0 + d, wb[d]);
            if constexpr (LOSSLESS) load_raw_quad(raw + raw_quad_bytes * (q0 + d) + raw_lane_bytes * lane, rb[d]);
          }
        }
      }
    }
    // 2. activations; 3. the escape row table of the strip (rows ro .. ro + hr) and the entry count.
    stage_x(tcol0 + ca, cb - ca);
    std::uint32_t ra = 0, rb2 = 0, e_end = 0, total = 0;
    if (esc) {
      const std::uint16_t* rs = reinterpret_cast<const std::uint16_t*>(tile + sh.code_bytes);
      if (lane <= hr) ra = ldg_u16(rs + ro + lane);
      if (32u + lane <= hr) rb2 = ldg_u16(rs + ro + 32u + lane);
      e_end = ldg_u16(rs + ro + hr);
      total = ldg_u16(rs + h);
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    // 4. the strip's escape entries: copied while the quads run.
    std::uint32_t e_begin = 0, cached = 0;
    std::uint64_t base = 0;
    if (esc) {
      e_begin = __shfl_sync(0xffffffffu, ra, 0);
      if (e_begin > e_end || e_end > total || sh.escapes_offset + std::uint64_t(total) * sh.entry_bytes > bytes) {
        if (lane == 0) report(a.status, status::corrupt_payload);
        esc = false;
      } else {
        if (lane <= hr) st->rows[lane] = static_cast<std::uint16_t>(ra - e_begin);
        if (32u + lane <= hr) st->rows[32u + lane] = static_cast<std::uint16_t>(rb2 - e_begin);
        if (lane == 0 && hr == 64) st->rows[64] = static_cast<std::uint16_t>(e_end - e_begin);  // others: lane hr or hr - 32
        base = (sh.escapes_offset + std::uint64_t(e_begin) * sh.entry_bytes) & ~std::uint64_t(3);
        const std::uint64_t end = sh.escapes_offset + std::uint64_t(e_end) * sh.entry_bytes;
        const std::uint64_t words = (end - base + 3) / 4 < 32u * escape_slots ? (end - base + 3) / 4 : 32u * escape_slots;
        cached = static_cast<std::uint32_t>(4 * words);
        for (std::uint32_t i = lane; i < words; i += 32) cp_async4(&st->entries[i], tile + base + 4 * i);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
      }
    }
    __syncwarp();
    // 5. the products.
    if (fast) fixed_quads(tile, q0, nq, tcol0 + ca, raw, wb, rb);
    else element_rows(tile, h, w, hr, ca, cb, tcol0, raw);
    // 6. corrections.
    if (esc) escapes(tile, sh, hr, ca, cb, tcol0, e_begin, e_end - e_begin, total, base, cached, st->rows, 0u, st->entries, true);
    __syncwarp();  // the staged chunk is done with before the next one overwrites it
  }

  // ---- one tile column of the warp's range (fixed / stored) --------------------------------------
  __device__ void segment(std::uint64_t tc, std::uint32_t ka, std::uint32_t kb, std::uint64_t ta, std::uint64_t tb) {
    const tile_layout& L = W.layout;
    const std::uint64_t tile_id = gr * L.grid_cols + tc;
    const tile_box box = L.box(tile_id);
    const std::uint32_t h = box.height, w = box.width;
    const std::uint32_t kcs = (w + 15u) / 16u;
    if (kb > kcs) kb = kcs;
    if (ka >= kb) return;
    if (tb < ta || tb > W.payload_bytes || ((ta | tb) & 15u) != 0) {
      if (lane == 0) report(a.status, status::corrupt_header);
      return;
    }
    const std::uint8_t* tile = W.data + W.payload_offset + ta;
    const std::uint64_t bytes = tb - ta;
    const std::uint32_t hr = h - ro < strip_rows ? h - ro : strip_rows;
    const std::uint64_t tcol0 = tc * L.tile_cols;
    const std::uint8_t* raw = LOSSLESS ? raw_tile_of(tile_id) : nullptr;
    const bool fixed = W.coding == plane_coding::fixed;
    fixed_tile_shape sh{};
    if (fixed) {
      sh = fixed_shape(W.fixed(), h, w);
      if (bytes < fixed_tile_bytes(sh, 0)) {
        if (lane == 0) report(a.status, status::corrupt_payload);
        return;
      }
    } else if (bytes < stored_tile_bytes(W.alphabet, std::uint64_t(h) * w)) {
      if (lane == 0) report(a.status, status::corrupt_payload);
      return;
    }
    const bool fast = P == path::fixed_fast && fixed && tile_uses_mma_order(W.order, h, w) &&
                      (!LOSSLESS || (reinterpret_cast<std::uintptr_t>(raw) & 3u) == 0);
    const bool esc = !FULL_WIDTH && fixed && W.fixed().has_escapes();
    for (std::uint32_t k0 = ka; k0 < kb; k0 += chunk_kcs)
      chunk(tile, bytes, h, w, hr, k0, k0 + chunk_kcs < kb ? k0 + chunk_kcs : kb, tcol0, raw, fast, sh, esc);
  }

  // ---- stream path: fixed coder, mma order, whole-width tiles -----------------------------------
  // The warp's quads run as one stream across its tiles (pieces of up to stream_tiles tiles): a
  // ring of DS quads of code words in registers, refilled DS quads ahead whatever tile they are in
  // (a tile switch on the prefetch side is a pointer from the piece's tile table); B fragments
  // straight from x (L1), one quad ahead. Escapes are handled between groups of DS quads, at one
  // site outside the unrolled body: when the consumer has left a tile, its escape pass runs (x
  // from L1) while the ring holds the next tile's quads. Escape data is copied a tile ahead:
  // row-table words of tile i + 1 and entries of tile i are in flight while tile i is multiplied.
  static constexpr int DS = NG == 2 && TILECODEC_FUSED_STREAM_NG2_DEPTH > 0
                                ? TILECODEC_FUSED_STREAM_NG2_DEPTH
                                : (Q == quant::kind::int8_rowwise || (INT4 && NG == 2) ? D : D - TILECODEC_FUSED_STREAM_LI_SHALLOWER) +
                                      TILECODEC_FUSED_STREAM_EXTRA_DEPTH;
  // Activation loads in flight per escape entry (stream_escapes_rows, batch 9-16; 8 batch rows a walk).
  static constexpr int ESC_LOADS = TILECODEC_FUSED_STREAM_ESC_LOADS;
  static_assert(8 % ESC_LOADS == 0, "TILECODEC_FUSED_STREAM_ESC_LOADS: 1, 2, 4 or 8");
  static constexpr int QBIT = quant_bit(Q);
  // B fragments straight from x (!SMEM_B): loaded XA quads ahead, in slot (quad mod XA), which is
  // static in the body unrolled DS quads deep because XA divides DS.
  static constexpr int XA = (TILECODEC_FUSED_STREAM_X_AHEAD & QBIT) != 0 ? (DS % 2 == 0 ? 2 : DS) : 1;
  static_assert(DS % XA == 0, "x ring slots must be static in the unrolled body");
  static constexpr bool STREAMED = P == path::fixed_fast && (TILECODEC_FUSED_STREAM & QBIT) != 0 &&
                                   (NG == 1 || (TILECODEC_FUSED_STREAM_NG2 & QBIT) != 0);
  // B fragments from shared memory: quad q's activations (8 NG batch rows x 16 columns, 32 bytes a
  // row, the two 16-byte halves of rows 4..7 mod 8 swapped: ldmatrix without bank conflicts) in
  // ring slot q mod RS, behind the staged x's place in the union (after the stream buffers).
  // Quads of group G (DS quads) are copied at the start of group G - 2.
  static constexpr bool SMEM_B = STREAMED && (TILECODEC_FUSED_STREAM_SMEM_B & NG) != 0;
  static constexpr int RS = 3 * DS;
  static constexpr bool PATCH = SMEM_B && Q == quant::kind::int8_rowwise && TILECODEC_FUSED_STREAM_PATCH_ESCAPES != 0;
  // Row-table buffer of piece tile i: two (i & 1), or three (i % 3) with patched escapes.
  __device__ std::uint32_t* rows_buf(std::uint32_t i) const {
    if constexpr (PATCH) {
      const std::uint32_t k = i % 3u;
      return k < 2u ? st->s.rows[k] : st->sc.rows;
    } else {
      return st->s.rows[i & 1u];
    }
  }
  __device__ std::uint32_t* total_buf(std::uint32_t i) const {
    if constexpr (PATCH) {
      const std::uint32_t k = i % 3u;
      return k < 2u ? &st->s.total[k] : &st->sc.total;
    } else {
      return &st->s.total[i & 1u];
    }
  }
  static constexpr std::uint32_t ring_slot = 8u * NG * 32u;
  static constexpr std::uint32_t ring_offset = (sizeof(stream_storage) + 15u) / 16u * 16u;
  static_assert(!SMEM_B || ring_offset + RS * ring_slot <= sizeof(std::uint16_t) * 8u * NG * x_stride,
                "the B ring does not fit in the staged-x area");
  // Code words through a shared ring (batch <= 8, TILECODEC_FUSED_STREAM_STAGE_WORDS): DS quads per
  // warp, after the block's warp storage (only these kernels ask for the extra shared memory).
  static constexpr bool STAGE_WORDS = (TILECODEC_FUSED_STREAM_STAGE_WORDS & QBIT) != 0 && STREAMED && NG == 1 && !SMEM_B && K > 0;
  static constexpr bool STAGE_RAW = TILECODEC_FUSED_STREAM_STAGE_RAW != 0 && LOSSLESS && STREAMED && NG == 1 && !SMEM_B;
  static constexpr std::uint32_t words_stage_bytes = STAGE_WORDS ? DS * 128u * std::uint32_t(K) : 0u;
  static constexpr std::uint32_t stage_bytes = words_stage_bytes + (STAGE_RAW ? DS * raw_quad_bytes : 0u);
  // Where byte b of a quad's raw plane sits in its ring slot: lane l's 32 bytes at 32 l, their two
  // 16-byte halves swapped for lanes with bit 2 set, so that eight lanes reading the same half with
  // 16-byte loads touch all 32 banks once (unswizzled, a 32-byte lane stride is a 2-way conflict;
  // 4-byte reads of it were 8-way).
  static __device__ __forceinline__ std::uint32_t raw_ring_pos(std::uint32_t b) {
    return b ^ (((b >> 7) & 1u) << 4);
  }
  unsigned char* words_smem = nullptr;  // this warp's rings (STAGE_WORDS, then STAGE_RAW), set by the kernel
  // RING_WORDS: RS slots of one quad's code words, in stream_storage's escape-entry buffers and
  // then in corr (returned to zero after each piece).
  static constexpr bool RING_WORDS = SMEM_B && ring_words_codes(Q, std::uint32_t(K));
  static constexpr std::uint32_t word_slot = 128u * std::uint32_t(K > 0 ? K : 1);
  static constexpr std::uint32_t entry_slots = sizeof(stream_storage::entries) / word_slot;
  static constexpr bool WORDS_IN_CORR = RING_WORDS && RS > int(entry_slots);
  static_assert(!RING_WORDS || RS <= int(entry_slots + sizeof(warp_storage<NG>::corr) / word_slot),
                "the code-word ring does not fit in the escape buffers");
  __device__ std::uint32_t word_slot_addr(std::uint32_t s) const {
    return s < entry_slots
               ? static_cast<std::uint32_t>(__cvta_generic_to_shared(&st->s.entries[0][0])) + s * word_slot
               : static_cast<std::uint32_t>(__cvta_generic_to_shared(&st->corr[0][0])) + (s - entry_slots) * word_slot;
  }

  __device__ bool stream_applies(std::uint64_t u0, std::uint64_t u1) const {
    if constexpr (P != path::fixed_fast) {
      return false;
    } else {
      const tile_layout& L = W.layout;
      if (!STREAMED || W.coding != plane_coding::fixed || u0 >= u1 || !a.x_aligned) return false;
      if (SMEM_B && !a.x_aligned16) return false;
      if (RING_WORDS && W.fixed().has_escapes()) return false;  // a header that lies about the width
      if (!tile_uses_mma_order(W.order, L.height_of_grid_row(gr), L.tile_cols)) return false;
      const std::uint64_t kt = L.tile_cols / 16u;
      if ((u1 - 1) / kt + 1 >= L.grid_cols && L.width_of_grid_col(L.grid_cols - 1) != L.tile_cols) return false;
      // A tile whose index entries are corrupt is read from the payload's start instead (wrong
      // values, status raised, no predicated loads): the payload must hold one tile's codes.
      if (W.payload_bytes < fixed_shape(W.fixed(), L.height_of_grid_row(gr), L.tile_cols).code_bytes) return false;
      if constexpr (LOSSLESS) {
        const std::uint8_t* raw = raw_tile_of(gr * L.grid_cols);
        if ((reinterpret_cast<std::uintptr_t>(raw) & 3u) != 0) return false;
      }
      return true;
    }
  }

  // Copies the row-table words of piece tile i (rows ro .. ro + 65, and row h) into buffer i & 1;
  // commit false: the copies join the next copy group the caller commits.
  __device__ void stream_rows_copy(std::uint32_t i, const fixed_tile_shape& sh, std::uint32_t h, bool commit) {
    const std::uint64_t off = st->s.toff[i];
    if (off == ~std::uint64_t(0)) return;
    const std::uint8_t* rs = W.data + W.payload_offset + off + sh.code_bytes;  // 4-byte aligned: ro, h even
    std::uint32_t* rows = rows_buf(i);
    cp_async4(&rows[lane], rs + 2u * ro + 4u * lane);  // rows ro .. ro + 63
    if (lane == 0) cp_async4(&rows[32], rs + 2u * ro + 128u);  // rows ro + 64, ro + 65
    if (lane == 1) cp_async4(total_buf(i), rs + 2u * h);
    if (commit) cp_async_commit();
  }

  // Row table of piece tile i landed: checks it and copies the strip's entries into buffer i & 1.
  __device__ void stream_entries_copy(std::uint32_t i, const fixed_tile_shape& sh, bool commit) {
    const std::uint64_t off = st->s.toff[i];
    std::uint32_t n_ent = 0, e_begin = 0, cached = 0, total = 0;
    std::uint64_t base = 0;
    if (off != ~std::uint64_t(0)) {
      const std::uint16_t* rows = reinterpret_cast<const std::uint16_t*>(rows_buf(i));
      e_begin = rows[0];
      const std::uint32_t e_end = rows[64];
      total = *total_buf(i) & 0xffffu;
      const std::uint64_t bytes = st->s.tend[i] - off;
      if (e_begin > e_end || e_end > total || sh.escapes_offset + std::uint64_t(total) * sh.entry_bytes > bytes) {
        if (lane == 0) report(a.status, status::corrupt_payload);
      } else {
        n_ent = e_end - e_begin;
        const std::uint8_t* tile = W.data + W.payload_offset + off;
        base = (sh.escapes_offset + std::uint64_t(e_begin) * sh.entry_bytes) & ~std::uint64_t(3);
        const std::uint64_t end = sh.escapes_offset + std::uint64_t(e_end) * sh.entry_bytes;
        const std::uint64_t words = (end - base + 3) / 4 < stream_entry_words ? (end - base + 3) / 4 : stream_entry_words;
        cached = static_cast<std::uint32_t>(4 * words);
        std::uint32_t* ent = st->s.entries[i & 1u];
        for (std::uint32_t k = lane; k < words; k += 32) cp_async4(&ent[k], tile + base + 4 * k);
        if (commit) cp_async_commit();
      }
    }
    if (lane == 0) {
      st->s.meta[i & 1u].base = base;
      st->s.meta[i & 1u].e_begin = e_begin;
      st->s.meta[i & 1u].n_ent = n_ent;
      st->s.meta[i & 1u].cached = cached;
      st->s.meta[i & 1u].total = total;
    }
  }

  // Escape pass of piece tile i, chunk columns [ca, cb) of it.
  __device__ void stream_escapes(std::uint32_t i, const fixed_tile_shape& sh, std::uint32_t ca, std::uint32_t cb,
                                 std::uint64_t tcol0) {
    const auto m = st->s.meta[i & 1u];
    if (m.n_ent != 0) {
      const std::uint8_t* tile = W.data + W.payload_offset + st->s.toff[i];
      escapes(tile, sh, 64u, ca, cb, tcol0, m.e_begin, m.n_ent, m.total, m.base, m.cached,
              reinterpret_cast<const std::uint16_t*>(rows_buf(i)), m.e_begin, st->s.entries[i & 1u],
              false);
    }
    __syncwarp();
  }

  // What an escape adds per unit of activation: its value minus what its code 0 decoded to.
  __device__ __forceinline__ float escape_delta(std::uint32_t r, std::uint32_t col, std::uint32_t val, int first,
                                                std::uint64_t tcol0) const {
    if constexpr (LOSSLESS) {
      if (lossless16_bytes(W.alphabet)) {  // val: the symbol; sign and low bits in the raw plane
        const std::uint64_t t = gr * W.layout.grid_cols + tcol0 / W.layout.tile_cols;
        const tile_box b = W.layout.box(t);
        const std::uint32_t raw = raw_tile_of(t)[tile_symbol_index(W.order, b.height, b.width, ro + r, col)];
        return half_bits_to_float<XBF16>(lossless16_byte_join(val, raw)) -
               half_bits_to_float<XBF16>(lossless16_byte_join(W.first, raw));
      }
      // The 9-bit split's escapes hold the whole value. Fixed codes of 16-bit lossless tensors are
      // split in bytes (the format allows no other), so this serves a hand-made matrix_ref only;
      // kept because without it ptxas spilled 60% more in the batch <= 8 kernels (so did a
      // noinline call for the byte above: PERFORMANCE.md 6.19).
      return half_bits_to_float<XBF16>(val) - half_bits_to_float<XBF16>(lossless16_join(W.first, lossless16_raw(val)));
    } else {
      float delta = float(int(val) - first);
      if constexpr (INT4) delta *= int4_scale(row0 + r, tcol0 + col);
      return delta;
    }
  }

  // Where the escaped weight at strip row r, tile column col goes in the fragment scratch (lane
  // (r % 8) * 4 + (c % 8) / 2 of the m16n8k16 A layout, register (r / 16) * 4 + (r / 8 % 2) +
  // 2 (c / 8), half c % 2, with c = col % 16) and its 16 bits there.
  __device__ __forceinline__ void patch_target(std::uint32_t r, std::uint32_t col, std::uint32_t val, float c0,
                                               std::uint64_t tcol0, std::uint32_t& addr, std::uint32_t& bits) const {
    const std::uint32_t scratch = static_cast<std::uint32_t>(__cvta_generic_to_shared(&st->corr[0][0]));
    const std::uint32_t c = col & 15u, owner = ((r & 7u) << 2) | ((c & 7u) >> 1);
    addr = scratch + 64u * owner + (((((r >> 4) & 3u) ^ ((owner >> 1) & 3u))) << 4) +
           4u * (((r >> 3) & 1u) | ((c >> 3) << 1)) + 2u * (c & 1u);
    const float w = c0 + escape_delta(r, col, val, static_cast<int>(W.first), tcol0);
    bits = XBF16 ? float_to_bf16(w) : float_to_f16(w);  // integers: exact
  }

  // Patched escapes (PATCH): the escaped weights of quad idx (piece quad; its tile ti, whose
  // columns start at piece quad tq0 - ka) written into the A fragments af. Each lane stores its
  // fragments in its 64 bytes of scratch (corr's place; 16-byte chunks rotated against bank
  // conflicts), lanes with an escape in this quad (next_q == idx) walk their two rows and write the
  // escaped values into the owners' scratch, and every lane reloads its fragments. The mma then
  // multiplies the true weights: no correction pass, nothing per batch entry.
  __device__ __forceinline__ void patch_quad(std::uint32_t (&af)[4][4], std::uint32_t idx, std::uint32_t ti,
                                             std::uint32_t tq0, std::uint32_t ka, std::uint32_t tile_end,
                                             std::uint64_t tcol0, const fixed_tile_shape& sh, float c0,
                                             std::uint32_t& next_q) {
    const std::uint32_t scratch = static_cast<std::uint32_t>(__cvta_generic_to_shared(&st->corr[0][0]));
    const std::uint32_t mine = scratch + 64u * lane, rot = (lane >> 1) & 3u;
#pragma unroll
    for (int r4 = 0; r4 < 4; ++r4)
      asm volatile("st.shared.v4.u32 [%0], {%1,%2,%3,%4};\n" ::"r"(mine + ((std::uint32_t(r4) ^ rot) << 4)),
                   "r"(af[r4][0]), "r"(af[r4][1]), "r"(af[r4][2]), "r"(af[r4][3])
                   : "memory");
    __syncwarp();
    const std::uint32_t vb = sh.value_bits, vmask = (1u << vb) - 1u;
    auto patch = [&](std::uint32_t r, std::uint32_t col, std::uint32_t val) {
      std::uint32_t addr, bits;
      patch_target(r, col, val, c0, tcol0, addr, bits);
      asm volatile("st.shared.u16 [%0], %1;\n" ::"r"(addr), "h"(static_cast<std::uint16_t>(bits)) : "memory");
    };
    if (next_q == idx) {
      const auto m = st->s.meta[ti & 1u];
      if (st->sc.tag[lane] != ti + 1u) {  // first escape of this lane in tile ti: its cursors
        const std::uint16_t* rows = reinterpret_cast<const std::uint16_t*>(rows_buf(ti));
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
          std::uint32_t p = 0, e = 0;
          if (m.n_ent != 0) {
            const std::uint32_t r = lane + 32u * rr;
            p = std::uint32_t(rows[r]) - m.e_begin;
            e = std::uint32_t(rows[r + 1]) - m.e_begin;
            if (e > m.n_ent) e = m.n_ent;  // corrupt tables: never past the strip's checked entries
            if (p > e) p = e;
          }
          st->sc.cur[rr][lane] = p | (e << 16);
        }
        st->sc.tag[lane] = ti + 1u;
      }
      const std::uint8_t* tile = W.data + W.payload_offset + st->s.toff[ti];
      const unsigned char* bytes = reinterpret_cast<const unsigned char*>(st->s.entries[ti & 1u]);
      const std::uint32_t eb = sh.entry_bytes;
      const std::uint32_t a0 = static_cast<std::uint32_t>((sh.escapes_offset + std::uint64_t(m.e_begin) * eb) & 3u);
      const std::uint32_t clo = 16u * (idx - tq0 + ka), chi = clo + 16u;  // the quad's tile columns
      std::uint32_t next_col = ~0u;
#pragma unroll 1
      for (std::uint32_t rr = 0; rr < 2u; ++rr) {
        const std::uint32_t r = lane + 32u * rr;
        const std::uint32_t cur = st->sc.cur[rr][lane];
        std::uint32_t p = cur & 0xffffu;
        const std::uint32_t e = cur >> 16;
#pragma unroll 1
        for (; p < e; ++p) {
          const std::uint32_t at = a0 + p * eb;
          const std::uint64_t v = eb == 2u && at + 2u <= m.cached
                                      ? std::uint64_t(*reinterpret_cast<const std::uint16_t*>(bytes + at))
                                      : load_entry(tile, sh, m.e_begin + p);
          const std::uint32_t col = static_cast<std::uint32_t>(v >> vb);
          if (col >= chi) {  // columns increase along a row
            next_col = col < next_col ? col : next_col;
            break;
          }
          if (col < clo) continue;  // before the piece's first column (or out of order: corrupt)
          patch(r, col, static_cast<std::uint32_t>(v) & vmask);
        }
        st->sc.cur[rr][lane] = p | (e << 16);
      }
      // The lane's next quad with an escape: in this tile, else the next tile's first quad.
      const std::uint32_t q = next_col == ~0u ? tile_end : next_col / 16u - ka + tq0;
      next_q = q < tile_end ? q : tile_end;
    }
    __syncwarp();
#pragma unroll
    for (int r4 = 0; r4 < 4; ++r4)
      asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(af[r4][0]), "=r"(af[r4][1]), "=r"(af[r4][2]), "=r"(af[r4][3])
                   : "r"(mine + ((std::uint32_t(r4) ^ rot) << 4))
                   : "memory");
  }

  // Escape pass of piece tile i on the lanes' own rows: lane l corrects rows l and l + 32 of the
  // strip, walking each row's entries (row table words, no search, no shuffles) in column order,
  // and adds one sum per row and batch entry to st->corr (a fixed order: deterministic). Entries
  // of columns outside [ca, cb) are skipped; x comes from L1.
  __device__ void stream_escapes_rows(std::uint32_t i, const fixed_tile_shape& sh, std::uint32_t ca, std::uint32_t cb,
                                      std::uint64_t tcol0) {
    const auto m = st->s.meta[i & 1u];
    if (m.n_ent != 0) {
      const std::uint8_t* tile = W.data + W.payload_offset + st->s.toff[i];
      const std::uint16_t* rows = reinterpret_cast<const std::uint16_t*>(rows_buf(i));
      const unsigned char* bytes = reinterpret_cast<const unsigned char*>(st->s.entries[i & 1u]);
      const std::uint32_t eb = sh.entry_bytes, vb = sh.value_bits, vmask = (1u << vb) - 1u;
      // Byte of entry e_begin in the copy (the copy starts at its 4-byte boundary).
      const std::uint32_t a0 = static_cast<std::uint32_t>((sh.escapes_offset + std::uint64_t(m.e_begin) * eb) & 3u);
      const std::uint16_t* xc = x + tcol0;
      asm("" : "+l"(xc));  // kept in registers, not rebuilt from the kernel arguments per entry
      const int first = static_cast<int>(W.first);
      // 2-byte entries all in the copy (int8 tiles up to 256 columns, < 512 entries per strip):
      // entry p is u16 number p of the copy from byte a0.
      const bool fast = eb == 2u && a0 + 2u * m.n_ent <= m.cached;
      const std::uint16_t* e16 = reinterpret_cast<const std::uint16_t*>(bytes + a0);
      const bool fast4 = eb == 4u && a0 == 0u && 4u * m.n_ent <= m.cached;  // the same for 4-byte entries
      const std::uint32_t* e32 = reinterpret_cast<const std::uint32_t*>(bytes);
      const std::uint64_t ldx = a.ldx;
      // Batch 9-16: eight batch entries at a time (two walks of a row's entries: fewer live
      // registers beside the accumulators and the code-word ring); batch rows past nb read row 0
      // (their sums are never stored), so an entry's loads are unconditional and ESC_LOADS of
      // them are in flight together. Batch <= 8: one walk, a load per batch row behind a branch
      // on nb (one L1 round trip after another, but no spills in the quad loop; parallel loads
      // spilled there and ran up to 14% slower on lossless, PERFORMANCE.md 6.5).
      auto delta_of = [&](std::uint32_t r, std::uint32_t col, std::uint32_t val) {
        return escape_delta(r, col, val, first, tcol0);
      };
      auto correct = [&](std::uint32_t r, std::uint32_t col, std::uint32_t val, std::uint32_t b0, float (&sum)[8]) {
        const float delta = delta_of(r, col, val);  // one entry in [ca, cb)
        const std::uint16_t* xp = xc + col;
        if constexpr (NG == 1) {
#pragma unroll
          for (int b = 0; b < 8; ++b) {
            if (b > 0 && std::uint32_t(b) >= nb) break;  // nb >= 1
            sum[b] = fmaf(delta, half_bits_to_float<XBF16>(ldg_u16(xp)), sum[b]);
            xp += ldx;
          }
        } else {
#pragma unroll
          for (int h = 0; h < 8; h += ESC_LOADS) {
            std::uint32_t xv[ESC_LOADS];
#pragma unroll
            for (int b = 0; b < ESC_LOADS; ++b) xv[b] = ldg_u16(xp + (b0 + h + b < nb ? std::uint64_t(b0 + h + b) * ldx : 0u));
#pragma unroll
            for (int b = 0; b < ESC_LOADS; ++b) sum[h + b] = fmaf(delta, half_bits_to_float<XBF16>(xv[b]), sum[h + b]);
          }
        }
      };
      auto walk = [&](std::uint32_t r, std::uint32_t p, std::uint32_t e, std::uint32_t b0, float (&sum)[8]) {
        // Batch <= 8, the strip's entries all in the copy (int8: 2 bytes each, lossless: 4): four
        // entries a step, their activation loads issued together (one round trip per step instead
        // of one per entry). The sums take the entries in the same order as one at a time, and an
        // entry at or past cb ends the row as it would there. (A version that also read entries
        // past the copy from global memory made the lossless kernel 14% slower: PERFORMANCE.md 6.10.)
        if (NG == 1 && (LOSSLESS ? fast4 : fast)) {
#pragma unroll 1
          for (; p < e; p += 4) {
            std::uint32_t col[4];
            float delta[4];
            bool in[4], live = true;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              const std::uint32_t v = p + k < e ? (LOSSLESS ? e32[p + k] : std::uint32_t(e16[p + k])) : cb << vb;
              col[k] = v >> vb;
              live = live && col[k] < cb;  // columns increase along a row
              in[k] = live && col[k] >= ca;
              delta[k] = in[k] ? delta_of(r, col[k], v & vmask) : 0.0f;
            }
            const std::uint16_t* xp = xc;
#pragma unroll
            for (int b = 0; b < 8; ++b) {
              if (b > 0 && std::uint32_t(b) >= nb) break;  // nb >= 1
              std::uint32_t xv[4];
#pragma unroll
              for (int k = 0; k < 4; ++k) xv[k] = in[k] ? ldg_u16(xp + col[k]) : 0u;
#pragma unroll
              for (int k = 0; k < 4; ++k)
                if (in[k]) sum[b] = fmaf(delta[k], half_bits_to_float<XBF16>(xv[k]), sum[b]);
              xp += ldx;
            }
            if (!live) break;
          }
        } else if (fast) {
#pragma unroll 1
          for (; p < e; ++p) {
            const std::uint32_t v = e16[p];
            if ((v >> vb) >= cb) break;  // columns increase along a row
            if ((v >> vb) >= ca) correct(r, v >> vb, v & vmask, b0, sum);
          }
        } else {
#pragma unroll 1
          for (; p < e; ++p) {
            const std::uint32_t at = a0 + p * eb;
            std::uint64_t v;
            if (eb <= 4u && at + eb <= m.cached)
              v = eb == 2u ? std::uint64_t(*reinterpret_cast<const std::uint16_t*>(bytes + at))
                           : std::uint64_t(*reinterpret_cast<const std::uint32_t*>(bytes + at));
            else
              v = load_entry(tile, sh, m.e_begin + p);
            const std::uint64_t col = v >> vb;
            if (col >= cb) break;
            if (col >= ca) correct(r, static_cast<std::uint32_t>(col), static_cast<std::uint32_t>(v) & vmask, b0, sum);
          }
        }
      };
#pragma unroll 1
      for (std::uint32_t r = lane; r < 64u; r += 32u) {
        const std::uint32_t p0 = std::uint32_t(rows[r]) - m.e_begin;
        std::uint32_t e = std::uint32_t(rows[r + 1]) - m.e_begin;
        if (e > m.n_ent) e = m.n_ent;  // corrupt tables: never past the strip's checked entries
        if constexpr (NG == 1) {
          float sum[8];
#pragma unroll
          for (int b = 0; b < 8; ++b) sum[b] = 0.0f;
          walk(r, p0, e, 0u, sum);
#pragma unroll
          for (int b = 0; b < 8; ++b) {
            if (std::uint32_t(b) >= nb) break;
            st->corr[b][r] += sum[b];
          }
        } else {
#pragma unroll 1
          for (std::uint32_t b0 = 0; b0 < nb; b0 += 8) {
            float sum[8];
#pragma unroll
            for (int b = 0; b < 8; ++b) sum[b] = 0.0f;
            walk(r, p0, e, b0, sum);
#pragma unroll
            for (int b = 0; b < 8; ++b) {
              if (b0 + b >= nb) break;
              st->corr[b0 + b][r] += sum[b];
            }
          }
        }
      }
    }
    __syncwarp();
  }

  // B fragments of quad q of the warp's stream (x rows from xr, stream column 16 q). Lanes of
  // batch columns past nb read row 0 instead: their accumulator columns are never stored.
  __device__ __forceinline__ void stream_b(const std::uint16_t* const (&xr)[NG], std::uint32_t q, std::uint32_t (&xb)[NG][2]) const {
#pragma unroll
    for (int n = 0; n < NG; ++n) {
      const std::uint16_t* p = xr[n] + 16u * q;  // 4-byte aligned (stream_applies)
      xb[n][0] = ldg_u32(p);
      xb[n][1] = ldg_u32(p + 8);
    }
  }

  // B fragments of one quad from its ring slot (SMEM_B): lane l gives the address of row l % 8 of
  // matrix l / 8 (matrices: batch rows 0-7 / 8-15 times columns 0-7 / 8-15).
  __device__ __forceinline__ void ring_b(std::uint32_t addr, std::uint32_t (&xb)[NG][2]) const {
    if constexpr (NG == 2) {
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(xb[0][0]), "=r"(xb[0][1]), "=r"(xb[1][0]), "=r"(xb[1][1])
                   : "r"(addr));
    } else {
      asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(xb[0][0]), "=r"(xb[0][1]) : "r"(addr));
    }
  }

  // Units [pa, pb) of the strip, all in tiles tc0 .. tc0 + nt - 1 (nt <= stream_tiles).
  __device__ void stream_piece(std::uint64_t pa, std::uint64_t pb, std::uint64_t tc0, std::uint32_t nt, std::uint32_t kt,
                               const fixed_tile_shape& sh, std::uint32_t h, bool esc) {
    if constexpr (P == path::fixed_fast) {
      const tile_layout& L = W.layout;
      const std::uint64_t* index = reinterpret_cast<const std::uint64_t*>(W.data + W.index_offset);
      // 1. the tile table: lane i checks tile tc0 + i.
      __syncwarp();
      if (lane < nt) {
        const std::uint64_t tt = gr * L.grid_cols + tc0 + lane;
        const std::uint64_t ta = index[tt], tb = index[tt + 1];
        std::uint64_t off = ~std::uint64_t(0);
        if (tb < ta || tb > W.payload_bytes || ((ta | tb) & 15u) != 0) report(a.status, status::corrupt_header);
        else if (tb - ta < fixed_tile_bytes(sh, 0)) report(a.status, status::corrupt_payload);
        else off = ta;
        st->s.toff[lane] = off;
        st->s.tend[lane] = tb;
      }
      __syncwarp();
      const std::uint32_t nq = static_cast<std::uint32_t>(pb - pa);
      const std::uint32_t k0 = static_cast<std::uint32_t>(pa - tc0 * kt);  // first unit's k chunk in its tile
      const std::uint32_t qs0 = (ro / 64u) * kt;                             // the strip's first quad in a tile
      const std::uint8_t* raw_row = LOSSLESS ? raw_tile_of(gr * L.grid_cols) : nullptr;
      const std::uint64_t raw_tile = std::uint64_t(h) * L.tile_cols;  // the byte split: a byte a weight
      // 2. the prefetch cursor and the first DS quads.
      const std::uint32_t* pw = nullptr;
      const std::uint8_t* pr = nullptr;
      std::uint32_t pt = 0, pleft = 0;
      bool pvalid = false;
      auto seek = [&](std::uint32_t k) {
        const std::uint64_t off = st->s.toff[pt];
        pvalid = off != ~std::uint64_t(0);
        // A corrupt tile (status raised) reads the payload's first tile: in bounds (stream_applies).
        pw = reinterpret_cast<const std::uint32_t*>(W.data + W.payload_offset + (pvalid ? off : 0)) +
             32u * std::uint32_t(K) * (qs0 + k) + lane;
        if constexpr (LOSSLESS) pr = raw_row + raw_tile * (tc0 + pt) + raw_quad_bytes * (qs0 + k) + raw_lane_bytes * lane;
        pleft = kt - k;
      };
      std::uint32_t wb[DS][K > 0 ? K : 1], rb[DS][RW];
      // STAGE: slot d of the shared ring takes the quad prefetch(d) asks for (one commit group).
      constexpr bool STAGE = STAGE_WORDS || STAGE_RAW;
      constexpr bool EARLY = TILECODEC_FUSED_STREAM_EARLY_QUADS != 0 && !SMEM_B;
      const std::uint32_t words_ring = STAGE ? static_cast<std::uint32_t>(__cvta_generic_to_shared(words_smem)) : 0u;
      const std::uint32_t raw_ring = words_ring + words_stage_bytes;
      // STAGE_RAW: 16-byte copies when every quad's raw bytes start 16-byte aligned (warp-uniform).
      const bool raw16 = STAGE_RAW && TILECODEC_FUSED_STREAM_STAGE_RAW == 1 &&
                         ((reinterpret_cast<std::uintptr_t>(raw_row) | raw_tile) & 15u) == 0;
      auto prefetch = [&](int d) {  // RING_WORDS: nothing to ask (the B ring's groups carry the words)
        if constexpr (RING_WORDS) return;
        if constexpr (STAGE_WORDS) {
          const unsigned char* quad = reinterpret_cast<const unsigned char*>(pw - lane);
          const std::uint32_t slot = words_ring + std::uint32_t(d) * (128u * K);
#pragma unroll
          for (std::uint32_t c = lane; c < 8u * K; c += 32)
            ::tilecodec::detail::cp_async16_to(slot + 16u * c, quad + 16u * c);
        } else {
#pragma unroll
          for (int j = 0; j < K; ++j) wb[d][j] = ldg_stream_u32(pw + 32 * j);
        }
        if constexpr (STAGE_RAW) {
          // A corrupt tile's raw words read as zeros, as on the register path.
          const unsigned char* quad = pr - raw_lane_bytes * lane;
          const std::uint32_t slot = raw_ring + std::uint32_t(d) * raw_quad_bytes;
          if (raw16) {
#pragma unroll
            for (std::uint32_t c = lane; c < raw_quad_bytes / 16u; c += 32)
              cp_async16_or_zero(slot + raw_ring_pos(16u * c), quad + 16u * c, pvalid);
          } else {
#pragma unroll
            for (std::uint32_t c = lane; c < raw_quad_bytes / 4u; c += 32)
              cp_async4_or_zero_to(slot + raw_ring_pos(4u * c), quad + 4u * c, pvalid);
          }
          pr += raw_quad_bytes;
        } else if constexpr (LOSSLESS) {
#pragma unroll
          for (int j = 0; j < RW; ++j) rb[d][j] = pvalid ? ldg_u32(pr + 4 * j) : 0u;
          pr += raw_quad_bytes;
        }
        if constexpr (STAGE) cp_async_commit();
        pw += 32u * K;
        if (--pleft == 0 && ++pt < nt) seek(0);
      };
      seek(k0);
#pragma unroll
      for (int d = 0; d < DS; ++d) {
        if (std::uint32_t(d) < nq) prefetch(d);
        else if constexpr (STAGE) cp_async_commit();  // DS groups: quad q's is always DS - 1 behind the newest
      }
      // RING_WORDS: the code words of quads q .. q + DS - 1 into word slots third * DS + d, every
      // lane (committed with the B ring's group that follows).
      std::uint32_t wtile = 0, wk = k0;  // tile and k chunk of the next quad to copy
      auto words_copy = [&](std::uint32_t q, std::uint32_t third) {
#pragma unroll
        for (int d = 0; d < DS; ++d) {
          if (q + d < nq) {
            const std::uint64_t off = st->s.toff[wtile];  // a corrupt tile reads the payload's first (as seek)
            const unsigned char* src = W.data + W.payload_offset + (off != ~std::uint64_t(0) ? off : 0) +
                                       std::uint64_t(word_slot) * (qs0 + wk);
            const std::uint32_t slot = word_slot_addr(third * DS + std::uint32_t(d));
#pragma unroll
            for (std::uint32_t c = lane; c < word_slot / 16u; c += 32) ::tilecodec::detail::cp_async16_to(slot + 16u * c, src + 16u * c);
            if (++wk == kt) wk = 0, ++wtile;
          }
        }
      };
      if constexpr (RING_WORDS) {  // the first two groups' words before the wait: weights never depend on the previous kernel
        words_copy(0, 0);
        words_copy(DS, 1);
      }
      // The weights' prologue (tile table, first code words) may overlap the previous kernel; the
      // activations may be its output.
      wait_for_previous_grid();
      std::uint32_t xn[XA][NG][2];  // x of quads idx + 1 .. idx + XA, slot (quad mod XA)
      const std::uint64_t col0 = 16u * pa;
      const std::uint16_t* xr[NG];  // the lane's x row of each batch group (row 0 past nb), from column col0 + 2t
      // SMEM_B: lane l copies 16 bytes of batch row l / 2 (half l & 1 of the quad's columns) per
      // quad; rows past nb hold zeros (written once). ring_g: the ring third of the consumer's group.
      std::uint32_t ring = 0, ld_off = 0, cp_off = 0, ring_g = 0;
      const std::uint16_t* xcp = nullptr;
      bool copier = false;
      auto ring_copy = [&](std::uint32_t q, std::uint32_t third, bool words) {  // quads q .. q + DS - 1 into ring third `third`
#pragma unroll
        for (int d = 0; d < DS; ++d) {
          if (copier && q + d < nq) {
            const std::uint32_t dst = ring + cp_off + (third * DS + d) * ring_slot;
            asm volatile("cp.async.ca.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(xcp + 16u * (q + d)) : "memory");
          }
        }
        if (RING_WORDS && words) words_copy(q, third);
        cp_async_commit();
      };
      if constexpr (SMEM_B) {
        unsigned char* ring_p = reinterpret_cast<unsigned char*>(st) + ring_offset;
        ring = static_cast<std::uint32_t>(__cvta_generic_to_shared(ring_p));
        const std::uint32_t crow = lane >> 1;
        cp_off = crow * 32u + (((lane & 1u) ^ ((crow >> 2) & 1u)) << 4);
        const std::uint32_t lrow = (lane & 7u) + 8u * ((lane >> 4) & std::uint32_t(NG - 1));
        ld_off = lrow * 32u + ((((lane >> 3) & 1u) ^ ((lrow >> 2) & 1u)) << 4);
        copier = crow < nb && crow < 8u * NG;
        xcp = x + (copier ? crow * a.ldx : 0u) + col0 + 8u * (lane & 1u);
        if (!copier && crow < 8u * NG) {
#pragma unroll
          for (int r = 0; r < RS; ++r) *reinterpret_cast<uint4*>(ring_p + cp_off + r * ring_slot) = make_uint4(0u, 0u, 0u, 0u);
        }
        ring_copy(0, 0, false);  // their words are on their way
        ring_copy(DS, 1, false);
      } else {
#pragma unroll
        for (int n = 0; n < NG; ++n) xr[n] = x + (8u * n + g < nb ? (8u * n + g) * a.ldx : 0u) + col0 + 2u * t;
#pragma unroll
        for (int d = 0; d < XA; ++d)
          if (std::uint32_t(d) < nq) stream_b(xr, d, xn[d]);
      }
      // 3. escape data: the row tables of the first two tiles now; the first tile's entries (which
      // need its row table) after the first group of quads, when that table has landed.
      // Waits for escape data (`since`: quads consumed since the data was asked). On the staged
      // path the escape copies join the next quad's copy group (one group per quad, so the
      // quads' own waits stay exact): data asked DS or more quads ago has landed once all but
      // the newest DS - 1 groups have, and the code words in flight stay in flight.
      constexpr bool JOIN = STAGE && EARLY;
      auto wait_escape_data = [&](std::uint32_t since) {
        if constexpr (JOIN) {
          if (since >= std::uint32_t(DS)) cp_async_wait<DS - 1>();
          else asm volatile("cp.async.wait_all;\n" ::: "memory");
        } else {
          asm volatile("cp.async.wait_all;\n" ::: "memory");
        }
        __syncwarp();
      };
      bool entries_pending = false;  // the first tile's entries are still to be asked for
      std::uint32_t asked = 0;       // quads consumed when the next escape pass's data was asked
      std::uint32_t next_q = ~0u;    // PATCH: the lane's next quad with an escape (piece quad)
      float c0 = 0.0f;               // PATCH: the A value that code 0 decodes to
      if (esc && PATCH) {
        // Row tables three tiles ahead, entries two: the first three tables, then the first two
        // tiles' entries, landed before the first quad.
        for (std::uint32_t i = 0; i < 3u && i < nt; ++i) stream_rows_copy(i, sh, h, false);
        cp_async_commit();
        asm volatile("cp.async.wait_all;\n" ::: "memory");
        __syncwarp();
        stream_entries_copy(0, sh, false);
        if (nt > 1) stream_entries_copy(1, sh, false);
        cp_async_commit();
        asm volatile("cp.async.wait_all;\n" ::: "memory");
        st->sc.tag[lane] = 0;
        __syncwarp();
        next_q = 0;
        const std::uint32_t zero[K > 0 ? K : 1] = {};
        std::uint32_t a00[4][4];
        int_quad_fragments<K, XBF16>(zero, a.int_sub, a00);
        c0 = half_bits_to_float<XBF16>(a00[0][0] & 0xffffu);
      } else if (esc) {
        stream_rows_copy(0, sh, h, !JOIN);
        if (nt > 1) stream_rows_copy(1, sh, h, !JOIN);
        if constexpr (EARLY) {
          entries_pending = true;
        } else {
          wait_escape_data(0);
          stream_entries_copy(0, sh, true);
        }
      }
      // 4. the quads; tile ends between groups.
      const std::uint32_t first2 = W.first | (W.first << 16);
      std::uint32_t ct = 0;                   // the consumer's tile (piece index)
      std::uint32_t cend = kt - k0 < nq ? kt - k0 : nq;  // its end (piece quad index)
      for (std::uint32_t j = 0; j < nq; j += DS) {
        if constexpr (SMEM_B) {
          // This group's activations have landed (a later copy may still be in flight); every lane
          // is done with the previous group's slots, which now take the group after next.
          cp_async_wait<1>();
          __syncwarp();
          if constexpr (RING_WORDS) {  // the group's code words, landed with its B fragments
#pragma unroll
            for (int d = 0; d < DS; ++d) {
              const std::uint32_t slot = word_slot_addr(ring_g * DS + std::uint32_t(d));
#pragma unroll
              for (int jw = 0; jw < K; ++jw) wb[d][jw] = ::tilecodec::detail::lds_u32(slot + 4u * (32u * jw + lane));
            }
          }
          ring_copy(j + 2u * DS, ring_g == 0 ? 2u : ring_g - 1u, true);
        }
#pragma unroll
        for (int d = 0; d < DS; ++d) {
          const std::uint32_t idx = j + d;
          if (idx < nq) {
            // Decoded before the slot is refilled: no register copies of the ring.
            std::uint32_t xb[NG][2];
            if constexpr (SMEM_B) {
              ring_b(ring + ld_off + (ring_g * DS + d) * ring_slot, xb);
            } else {
#pragma unroll
              for (int n = 0; n < NG; ++n) xb[n][0] = xn[d % XA][n][0], xb[n][1] = xn[d % XA][n][1];
              // Unconditional, the last quad's x again past the end: a predicated load keeps the
              // slot's old value, and the register copies that merge the two wait for the load.
              stream_b(xr, idx + XA < nq ? idx + XA : nq - 1u, xn[d % XA]);
            }
            std::uint32_t af[4][4];
            if constexpr (STAGE) {  // quad idx's group and those before it have landed
              cp_async_wait<DS - 1>();
              __syncwarp();
              if constexpr (STAGE_WORDS)
#pragma unroll
                for (int jw = 0; jw < K; ++jw)
                  wb[d][jw] = ::tilecodec::detail::lds_u32(words_ring + std::uint32_t(d) * (128u * K) + 4u * (32u * jw + lane));
              if constexpr (STAGE_RAW) {  // two 16-byte loads, conflict-free (raw_ring_pos)
                const std::uint32_t at = raw_ring + std::uint32_t(d) * raw_quad_bytes + raw_lane_bytes * lane;
#pragma unroll
                for (std::uint32_t hh = 0; hh < 2; ++hh)
                  asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                               : "=r"(rb[d][4 * hh]), "=r"(rb[d][4 * hh + 1]), "=r"(rb[d][4 * hh + 2]), "=r"(rb[d][4 * hh + 3])
                               : "r"(at + raw_ring_pos(raw_lane_bytes * lane + 16u * hh) - raw_lane_bytes * lane));
              }
            }
            quad_fragments(wb[d], rb[d], first2, af);
            if constexpr (STAGE) __syncwarp();  // every lane has read slot d before it is refilled
            if (idx + DS < nq) prefetch(d);
            else if constexpr (STAGE) cp_async_commit();  // an empty group keeps the count of groups in flight
            if constexpr (PATCH) {  // after the refill is issued: its copies overlap the patch
              if (esc) {  // quad idx is in tile ct, or (a group across a tile end) in ct + 1
                const bool later = idx >= cend;
                const std::uint32_t ti = later ? ct + 1u : ct;
                const std::uint32_t tend = later ? (cend + kt < nq ? cend + kt : nq) : cend;
                patch_quad(af, idx, ti, ti == 0 ? 0u : ti * kt - k0, ti == 0 ? k0 : 0u, tend,
                           (tc0 + ti) * L.tile_cols, sh, c0, next_q);
              }
            }
            enter_group(col0 + 16u * idx);
            mma_quad(af, xb);
          }
        }
        if constexpr (PATCH) {
          // Tiles the consumer has left: the escape data of two and three tiles on.
          const std::uint32_t jend = j + DS < nq ? j + DS : nq;
          while (ct < nt && jend >= cend) {
            if (esc && ct + 1 < nt) {
              // Data asked here is used three groups later at the earliest (a tile of >= 4 groups):
              // by then the ring's waits have seen its copy group land. Shorter tiles wait here.
              __syncwarp();  // tile ct's entries and row table are free
              if (kt < 4u * DS) {  // (warp-uniform) each lane waits for its own copies, then all of them have landed
                asm volatile("cp.async.wait_all;\n" ::: "memory");
                __syncwarp();
              }
              if (ct + 2 < nt) stream_entries_copy(ct + 2, sh, false);
              if (ct + 3 < nt) stream_rows_copy(ct + 3, sh, h, false);
              __syncwarp();
            }
            ++ct;
            cend = cend + kt < nq ? cend + kt : nq;
          }
        }
        if constexpr (SMEM_B) ring_g = ring_g == 2 ? 0u : ring_g + 1u;
        if constexpr (PATCH) continue;
        const std::uint32_t done = j + DS < nq ? j + DS : nq;  // quads consumed
        if (entries_pending) {  // the row tables were asked before any quad was consumed
          wait_escape_data(done);
          stream_entries_copy(0, sh, !JOIN);
          entries_pending = false;
          asked = done;
        }
        // Tiles the consumer has left: their escape passes (one site, outside the unrolled body).
        while (ct < nt && j + DS >= cend) {
          if (esc) {
            wait_escape_data(done - asked);
            const std::uint32_t ka = ct == 0 ? k0 : 0u;            // the tile's k chunks [ka, ka + cend - tq0)
            const std::uint32_t tq0 = ct == 0 ? 0u : ct * kt - k0;  // its first piece quad
            if constexpr (TILECODEC_FUSED_STREAM_ROW_ESCAPES != 0)
              stream_escapes_rows(ct, sh, 16u * ka, 16u * (ka + cend - tq0), (tc0 + ct) * L.tile_cols);
            else
              stream_escapes(ct, sh, 16u * ka, 16u * (ka + cend - tq0), (tc0 + ct) * L.tile_cols);
            if (ct + 1 < nt) {
              stream_entries_copy(ct + 1, sh, !JOIN);
              asked = done;
              if (ct + 2 < nt) stream_rows_copy(ct + 2, sh, h, !JOIN);
            }
          }
          ++ct;
          cend = cend + kt < nq ? cend + kt : nq;
        }
      }
      if constexpr (PATCH || RING_WORDS) {
        // No copy may still land in the storage that the next piece or the partial sums take, and
        // what corr lent returns to zero (the epilogue adds corr): the patched fragments' scratch
        // (esc) or the word ring's slots past the escape entries (never both: stream_applies
        // refuses the ring to tensors with escapes).
        asm volatile("cp.async.wait_all;\n" ::: "memory");
        __syncwarp();
        constexpr std::uint32_t ring_in_corr = WORDS_IN_CORR ? (RS - entry_slots) * word_slot : 0u;
        const std::uint32_t lent = PATCH && esc ? 2048u : ring_in_corr;
        if (lent != 0) {
          float4* z = reinterpret_cast<float4*>(&st->corr[0][0]);
          for (std::uint32_t k = lane; k < lent / 16u; k += 32) z[k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
          __syncwarp();
        }
      }
    }
  }

  __device__ void stream(std::uint64_t u0, std::uint64_t u1) {
    if constexpr (P == path::fixed_fast) {
      const tile_layout& L = W.layout;
      const std::uint32_t kt = L.tile_cols / 16u;
      const std::uint32_t h = L.height_of_grid_row(gr);
      const fixed_tile_shape sh = fixed_shape(W.fixed(), h, L.tile_cols);
      const bool esc = !FULL_WIDTH && W.fixed().has_escapes();
      for (std::uint64_t pa = u0; pa < u1;) {
        const std::uint64_t tc0 = pa / kt;
        const std::uint64_t pb = u1 < (tc0 + stream_tiles) * kt ? u1 : (tc0 + stream_tiles) * kt;
        stream_piece(pa, pb, tc0, static_cast<std::uint32_t>((pb - 1) / kt - tc0 + 1), kt, sh, h, esc);
        pa = pb;
      }
    }
  }

  // The warp's whole range of units [u0, u1): k chunks (fixed / stored) or tiles (rANS).
  __device__ void run(std::uint64_t u0, std::uint64_t u1, rans_warp_storage* rst, const rans_table_storage* table) {
    const tile_layout& L = W.layout;
    const std::uint64_t* index = reinterpret_cast<const std::uint64_t*>(W.data + W.index_offset);
    const std::uint64_t kt = L.tile_cols / 16u;
    if constexpr (P == path::rans) {
      wait_for_previous_grid();  // rans_tile reads the activations
      for (std::uint64_t u = u0; u < u1; ++u) {
        const std::uint64_t tt = gr * L.grid_cols + u;
        const std::uint64_t ta = index[tt], tb = index[tt + 1];
        if (tb < ta || tb > W.payload_bytes || ((ta | tb) & 15u) != 0) {
          if (lane == 0) report(a.status, status::corrupt_header);
          continue;
        }
        const std::uint32_t w = L.width_of_grid_col(u);
        const std::uint8_t* raw = LOSSLESS ? raw_tile_of(tt) : nullptr;
        rans_tile(*rst, *table, W.data + W.payload_offset + ta, tb - ta, w, u * L.tile_cols, raw);
      }
    } else if (STREAMED && stream_applies(u0, u1)) {
      if constexpr (STREAMED) stream(u0, u1);
    } else {
      wait_for_previous_grid();  // the chunks stage the activations
      // The next tile's index entries load while the current tile is worked on.
      std::uint64_t tc = u0 / kt;
      std::uint64_t ta = 0, tb = 0;
      if (u0 < u1) ta = index[gr * L.grid_cols + tc], tb = index[gr * L.grid_cols + tc + 1];
      for (std::uint64_t u = u0; u < u1;) {
        const std::uint64_t end = u1 < (tc + 1) * kt ? u1 : (tc + 1) * kt;
        std::uint64_t na = 0, nbytes = 0;
        if (end < u1) na = index[gr * L.grid_cols + tc + 1], nbytes = index[gr * L.grid_cols + tc + 2];
        segment(tc, static_cast<std::uint32_t>(u - tc * kt), static_cast<std::uint32_t>(end - tc * kt), ta, tb);
        u = end;
        ++tc;
        ta = na;
        tb = nbytes;
      }
    }
  }

  // Adds the accumulators into the warp's partial sums [BC][64] at the start of its storage.
  __device__ void store_accumulators(float* red) {
    __syncwarp();  // every lane is done with the storage the partial sums now take
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int n = 0; n < NG; ++n)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const std::uint32_t row = 16u * r + g + 8u * (c >> 1), b = 8u * n + 2u * t + (c & 1u);
          if constexpr (P == path::rans) red[b * 64 + row] = acc[r][n][c];
          else red[b * 64 + row] = acc[r][n][c] + st->corr[b][row];
        }
  }
};

__device__ __forceinline__ void store_output(void* y, dtype type, std::uint64_t index, float v) {
  if (type == dtype::f32) static_cast<float*>(y)[index] = v;
  else if (type == dtype::f16) static_cast<std::uint16_t*>(y)[index] = float_to_f16(v);
  else static_cast<std::uint16_t*>(y)[index] = float_to_bf16(v);
}

template <quant::kind Q, int NG, bool XBF16, path P, int K>
__global__ void __launch_bounds__(cta_threads, 2) gemm_kernel(const gemm_args args) {
  constexpr int BC = 8 * NG;
  constexpr std::size_t table_bytes = P == path::rans ? sizeof(rans_table_storage) : 0;
  constexpr std::size_t stride = warp_storage_bytes<NG, P>();
  extern __shared__ __align__(16) unsigned char smem[];
  const std::uint32_t warp = threadIdx.x >> 5, tid = threadIdx.x;
  const std::uint64_t strip = blockIdx.x;
  const std::uint32_t split = blockIdx.y, chunk = blockIdx.z;
  const std::uint32_t b0 = chunk * BC;
  const std::uint32_t nb = args.batch - b0 < std::uint32_t(BC) ? args.batch - b0 : std::uint32_t(BC);
  unsigned char* mine = smem + table_bytes + warp * stride;
  allow_next_grid();

  rans_table_storage* table = nullptr;
  if constexpr (P == path::rans) {
    table = reinterpret_cast<rans_table_storage*>(smem);
    const status s = build_rans_table<cta_threads>(*table, args.w.data + args.w.table_offset, args.w.table_first,
                                                   args.w.table_count, args.w.prob_bits, args.w.alphabet);
    if (s != status::success && tid == 0) report(args.status, s);
  }

  warp_gemm<Q, NG, XBF16, P, K> wg(args, args.x + std::uint64_t(b0) * args.ldx, mine, nb, strip);
  using gemm_t = warp_gemm<Q, NG, XBF16, P, K>;
  if constexpr (gemm_t::stage_bytes > 0) wg.words_smem = smem + table_bytes + cta_warps * stride + warp * gemm_t::stage_bytes;
  const tile_layout& L = args.w.layout;
  const std::uint64_t units = P == path::rans ? L.grid_cols : (L.cols + 15u) / 16u;
  const std::uint64_t parts = std::uint64_t(args.splits) * cta_warps, part = std::uint64_t(split) * cta_warps + warp;
  wg.run(units * part / parts, units * (part + 1) / parts, reinterpret_cast<rans_warp_storage*>(mine), table);
  wait_for_previous_grid();  // warps without work too: the epilogue writes y, partials, counters
  wg.store_accumulators(reinterpret_cast<float*>(mine));
  __syncthreads();

  // Epilogue: sum the warps in order; int8 rows take their scale at the very end.
  const std::uint64_t rows = L.rows, row0 = strip * strip_rows;
  const float* scales = reinterpret_cast<const float*>(args.w.data + args.w.scales_offset);
  auto red = [&](int w, std::uint32_t idx) { return reinterpret_cast<const float*>(smem + table_bytes + w * stride)[idx]; };
  auto finish = [&](std::uint32_t idx, float v) {
    const std::uint32_t r = idx & 63u, b = idx >> 6;
    const std::uint64_t n = row0 + r;
    if (n >= rows || b >= nb) return;
    if constexpr (Q == quant::kind::int8_rowwise) v *= __ldg(scales + n);
    store_output(args.y, args.y_type, std::uint64_t(b0 + b) * args.ldy + n, v);
  };
  if (args.splits == 1) {
    for (std::uint32_t idx = tid; idx < BC * 64u; idx += cta_threads) {
      float v = 0.0f;
#pragma unroll
      for (int w = 0; w < cta_warps; ++w) v += red(w, idx);
      finish(idx, v);
    }
    return;
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (args.cluster_splits) {
    // The strip's splits are one cluster (rank = split): each block's sum of its warps goes to
    // the start of its shared memory, and split 0 adds the blocks' sums in split order, the same
    // order as the workspace path below (bit-identical results), then stores the outputs.
    namespace cg = cooperative_groups;
    const cg::cluster_group cluster = cg::this_cluster();
    constexpr std::uint32_t per_thread = (BC * 64u + cta_threads - 1) / cta_threads;
    float v[per_thread];
#pragma unroll
    for (std::uint32_t k = 0; k < per_thread; ++k) {
      const std::uint32_t idx = tid + k * cta_threads;
      v[k] = 0.0f;
      if (idx < BC * 64u)
#pragma unroll
        for (int w = 0; w < cta_warps; ++w) v[k] += red(w, idx);
    }
    __syncthreads();  // every warp's sums read before warp 0's storage takes the block's
    float* block_sum = reinterpret_cast<float*>(smem + table_bytes);
#pragma unroll
    for (std::uint32_t k = 0; k < per_thread; ++k)
      if (tid + k * cta_threads < BC * 64u) block_sum[tid + k * cta_threads] = v[k];
    cluster.sync();  // the blocks' sums are visible across the cluster
    if (split == 0) {
#pragma unroll
      for (std::uint32_t k = 0; k < per_thread; ++k) {
        const std::uint32_t idx = tid + k * cta_threads;
        v[k] = 0.0f;
        if (idx < BC * 64u)
          for (std::uint32_t s = 0; s < args.splits; ++s) v[k] += cluster.map_shared_rank(block_sum, s)[idx];
      }
    }
    cluster.sync();  // no block leaves while split 0 still reads its shared memory
    if (split == 0)
#pragma unroll
      for (std::uint32_t k = 0; k < per_thread; ++k)
        if (tid + k * cta_threads < BC * 64u) finish(tid + k * cta_threads, v[k]);
    return;
  }
#endif
  __shared__ std::uint32_t last;
  const std::uint64_t group = std::uint64_t(chunk) * args.strips + strip;
  float* partial = args.partials + (group * args.splits) * (BC * 64u);
  for (std::uint32_t idx = tid; idx < BC * 64u; idx += cta_threads) {
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < cta_warps; ++w) v += red(w, idx);
    partial[std::uint64_t(split) * BC * 64u + idx] = v;
  }
  __threadfence();
  __syncthreads();
  if (tid == 0) last = atomicAdd(args.counters + group, 1u) == args.splits - 1 ? 1u : 0u;
  __syncthreads();
  if (last == 0) return;
  __threadfence();
  for (std::uint32_t idx = tid; idx < BC * 64u; idx += cta_threads) {
    float v = 0.0f;
    for (std::uint32_t s = 0; s < args.splits; ++s) v += __ldcg(partial + std::uint64_t(s) * BC * 64u + idx);
    finish(idx, v);
  }
  if (tid == 0) args.counters[group] = 0;  // ready for the next call
}

}  // namespace detail
}  // namespace fused
}  // namespace tilecodec
