// tilecodec/fused/fragment.cuh: device building blocks for kernels that multiply by compressed
// weights without ever writing them out: decode a quad (64 rows x 16 columns) of a tile straight
// into the A fragments of mma.sync.m16n8k16, apply the quantization, load activations as B
// fragments, multiply-accumulate in fp32.
//
//   // one warp, one quad q of a fixed-coded tile in the mma order (format/mma_order.hpp)
//   std::uint32_t words[K];                               // the lane's K code words of the quad
//   tilecodec::fused::load_fixed_quad<K>(tile, q, words);
//   std::uint32_t pairs[4][4], a[4][4];
//   tilecodec::fused::fixed_quad_pairs<K>(words, pairs);  // code pairs, fragment by fragment
//   tilecodec::fused::int_fragments<quant::kind::int8_rowwise, /*BF16=*/false, /*Wide=*/false>(pairs, first, a);
//   std::uint32_t b0, b1;
//   tilecodec::fused::load_b_fragment(x, ldx, batch, col0, aligned, b0, b1);
//   for (int r4 = 0; r4 < 4; ++r4) tilecodec::fused::mma_16816<false>(acc[r4], a[r4], b0, b1);
//
// 4-bit codes (int4, lossless exponents at k = 4) decode cheaper in an interleaved k order: the
// A registers from int4_interleaved_fragments / lossless_interleaved_fragments, and the B
// fragment passed through interleave_b_fragment before the mma (same product, see below).
//
// Fragment layout (PTX ISA, mma.m16n8k16 .f16/.bf16): with g = lane / 4 and t = lane % 4, A
// register j holds rows g (j = 0, 2) or g + 8 (j = 1, 3) and columns 2t, 2t+1 (+8 for j >= 2),
// low half first; B register j holds k rows 2t, 2t+1 (+8 for j = 1) of column n = g; the fp32
// accumulator holds D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1]. Here D's rows are weight
// rows (outputs) and its columns are batch entries.
//
// Quantized weights enter the tensor cores as exact integers (int8 and int4 codes are exact in
// fp16 and bf16) and the scales are applied in fp32 afterwards; lossless weights enter as their
// own bit patterns. So the only rounding is the tensor cores' fp32 accumulation.
#pragma once

#include <cstdint>

#include "../config.hpp"
#include "../dtype.hpp"
#include "../policy/quant.hpp"
#include "../warp/warp_intrinsics.cuh"

namespace tilecodec {
namespace fused {

// The bit manipulation below is __host__ __device__ (tests run it on the host, lane by lane);
// loads and the tensor-core instruction are device only.
#if defined(__CUDA_ARCH__)
#define TILECODEC_FUSED_DEVICE_CODE 1
#define TILECODEC_FUSED_UNROLL _Pragma("unroll")
#else
#define TILECODEC_FUSED_DEVICE_CODE 0
#define TILECODEC_FUSED_UNROLL
#endif

namespace detail {
using ::tilecodec::detail::byte_perm;  // warp/warp_intrinsics.cuh: host and device
using ::tilecodec::detail::byte_perm_msb;
using ::tilecodec::detail::funnel;
}  // namespace detail

// ---- tensor cores ------------------------------------------------------------------------------

template <bool BF16>
__device__ __forceinline__ void mma_16816(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  if constexpr (BF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// ---- loads -------------------------------------------------------------------------------------

// Read-only, L1-allocating 32-bit load (activations, scales, raw plane: reused by neighbours).
__device__ __forceinline__ std::uint32_t ldg_u32(const void* p) {
  return __ldg(static_cast<const unsigned int*>(p));
}
__device__ __forceinline__ std::uint32_t ldg_u16(const void* p) {
  return __ldg(static_cast<const unsigned short*>(p));
}
// Streamed once: code words bypass L1.
__device__ __forceinline__ std::uint32_t ldg_stream_u32(const void* p) {
  std::uint32_t v;
  asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

// B fragment of activations x (16-bit values, row b of x at x + b * ldx): columns
// [col0, col0 + 16) of batch entry n = 8 * group + lane / 4; zero for n >= nvalid.
// `aligned`: x and ldx allow 32-bit loads of element pairs.
__device__ __forceinline__ void load_b_fragment(const std::uint16_t* x, std::uint64_t ldx, std::uint32_t n,
                                                std::uint32_t nvalid, std::uint64_t col0, bool aligned,
                                                std::uint32_t& b0, std::uint32_t& b1) {
  b0 = b1 = 0;
  if (n >= nvalid) return;
  const std::uint32_t t = threadIdx.x & 3u;
  const std::uint16_t* p = x + n * ldx + col0 + 2u * t;
  if (aligned) {
    b0 = ldg_u32(p);
    b1 = ldg_u32(p + 8);
  } else {
    b0 = ldg_u16(p) | (ldg_u16(p + 1) << 16);
    b1 = ldg_u16(p + 8) | (ldg_u16(p + 9) << 16);
  }
}

// ---- fixed-coded quads ---------------------------------------------------------------------------

// The lane's K code words of quad q: word j at u32 index 32 (q K + j) + lane (coder/fixed.hpp).
template <int K>
__device__ __forceinline__ void load_fixed_quad(const std::uint32_t* tile_words, std::uint32_t q, std::uint32_t (&w)[K]) {
  const std::uint32_t* p = tile_words + 32u * (q * std::uint32_t(K)) + (threadIdx.x & 31u);
#pragma unroll
  for (int j = 0; j < K; ++j) w[j] = ldg_stream_u32(p + 32 * j);
}

// Code m (0..31, a compile-time constant after unrolling) of the lane's K words.
template <int K>
__host__ __device__ __forceinline__ std::uint32_t fixed_code_of(const std::uint32_t (&w)[K], int m) {
  const int bit = m * K, j = bit >> 5, sh = bit & 31;
  const std::uint32_t mask = (1u << K) - 1u;
  if (sh + K <= 32 || j + 1 >= K) return (w[j] >> sh) & mask;
  return detail::funnel(w[j], w[j + 1], std::uint32_t(sh)) & mask;
}

// Codes m and m + 1 (m even, a compile-time constant after unrolling) as one 2K-bit field, low
// code first, other bits above it: one shift or funnel shift (none when the field starts a word).
template <int K>
__host__ __device__ __forceinline__ std::uint32_t fixed_code_field(const std::uint32_t (&w)[K], int m) {
  const int bit = m * K, j = bit >> 5, sh = bit & 31;
  if (sh == 0) return w[j];
  if (sh + 2 * K <= 32 || j + 1 >= K) return w[j] >> sh;
  return detail::funnel(w[j], w[j + 1], std::uint32_t(sh));
}

namespace detail {
// (x & Mask) | c in one LOP3 (written in C++ it compiles to two: an instruction takes one 32-bit
// immediate, so c must come in a register).
template <std::uint32_t Mask>
__host__ __device__ __forceinline__ std::uint32_t and_or(std::uint32_t x, std::uint32_t c) {
#if TILECODEC_FUSED_DEVICE_CODE
  std::uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(d) : "r"(x), "n"(Mask), "r"(c));
  return d;
#else
  return (x & Mask) | c;
#endif
}

// (x & Mask) * Mul + add in two instructions (LOP3, IMAD); written in C++ the compiler moves the
// multiply in front of the mask and folds a shift of `add` into the sum (three).
template <std::uint32_t Mask, std::uint32_t Mul>
__host__ __device__ __forceinline__ std::uint32_t masked_mad(std::uint32_t x, std::uint32_t add) {
#if TILECODEC_FUSED_DEVICE_CODE
  std::uint32_t d;
  asm("{\n\t.reg .b32 t;\n\tand.b32 t, %1, %2;\n\tmad.lo.u32 %0, t, %3, %4;\n\t}" : "=r"(d) : "r"(x), "n"(Mask), "n"(Mul), "r"(add));
  return d;
#else
  return (x & Mask) * Mul + add;
#endif
}
}  // namespace detail

// code m | code m+1 << 16 | base, from the field f of fixed_code_field: (f & low) | base, plus
// the second code moved up by a multiply-add (base must leave bits 0..K-1 and 16..15+K clear).
// On the device the three instructions are spelled out in PTX: written in C++, the compiler turns
// the multiply-add into a bit-field insert that ptxas expands to a shift, two masks and an OR
// (5 instead of 3 instructions per pair).
template <int K>
__host__ __device__ __forceinline__ std::uint32_t fixed_pair_from_field(std::uint32_t f, std::uint32_t base) {
  constexpr std::uint32_t low = (1u << K) - 1u;
#if TILECODEC_FUSED_DEVICE_CODE
  const std::uint32_t lo = detail::and_or<low>(f, base);
  std::uint32_t hi, d;
  asm("lop3.b32 %0, %1, %2, 0, 0xc0;" : "=r"(hi) : "r"(f), "n"(low << K));  // f & (low << K)
  asm("mad.lo.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(hi), "n"(1u << (16 - K)), "r"(lo));
  return d;
#else
  return ((f & low) | base) + (f & (low << K)) * (1u << (16 - K));
#endif
}

// Code pairs of a quad: pairs[r4][j] = code(8 r4 + 2j) | code(8 r4 + 2j + 1) << 16, i.e. the
// lane's A registers of fragment r4 before conversion.
template <int K>
__host__ __device__ __forceinline__ void fixed_quad_pairs(const std::uint32_t (&w)[K], std::uint32_t (&pairs)[4][4]) {
TILECODEC_FUSED_UNROLL
  for (int r4 = 0; r4 < 4; ++r4)
TILECODEC_FUSED_UNROLL
    for (int j = 0; j < 4; ++j)
      pairs[r4][j] = fixed_code_of<K>(w, 8 * r4 + 2 * j) | (fixed_code_of<K>(w, 8 * r4 + 2 * j + 1) << 16);
}

// ---- conversion to A fragments ----------------------------------------------------------------------

// Integer codes: value = code + first - zero (zero = 128 for int8, 8 for int4), exact in fp16/bf16.
// A pair register holds two values of at most 9 bits (Wide: up to 255, else below 128).
// fp16: (0x6400 | v) is 1024 + v; bf16: (0x4300 | v) is 128 + v for v < 128, and an 8-bit v is
// split into 128 + (v & 127) minus 256 or 128 (its top bit), all exact.
namespace detail {
// Two exact additions of 16-bit floats (the results are small integers): host model of the
// sub.rn.f16x2 / fma.rn.bf16x2 below.
__host__ __device__ inline std::uint32_t add_pair_host(std::uint32_t a, std::uint32_t b, bool bf16, bool negate_b) {
  std::uint32_t r = 0;
  for (int k = 0; k < 2; ++k) {
    const std::uint16_t x = static_cast<std::uint16_t>(a >> (16 * k)), y = static_cast<std::uint16_t>(b >> (16 * k));
    const float fx = bf16 ? bf16_to_float(x) : f16_to_float(x), fy = bf16 ? bf16_to_float(y) : f16_to_float(y);
    const float v = negate_b ? fx - fy : fx + fy;
    r |= std::uint32_t(bf16 ? float_to_bf16(v) : float_to_f16(v)) << (16 * k);
  }
  return r;
}
// Two exact fp16 multiply-adds a * m + b (host model of fma.rn.f16x2 on small integers).
__host__ __device__ inline std::uint32_t fma_pair_host_f16(std::uint32_t a, float m, std::uint32_t b) {
  std::uint32_t r = 0;
  for (int k = 0; k < 2; ++k) {
    const float v = f16_to_float(static_cast<std::uint16_t>(a >> (16 * k))) * m + f16_to_float(static_cast<std::uint16_t>(b >> (16 * k)));
    r |= std::uint32_t(float_to_f16(v)) << (16 * k);
  }
  return r;
}
}  // namespace detail

template <bool BF16, bool Wide>
__host__ __device__ __forceinline__ std::uint32_t int_pair_to_half2(std::uint32_t pair, std::uint32_t sub) {
  std::uint32_t d;
  if constexpr (!BF16) {
    const std::uint32_t h = pair | 0x64006400u;
#if TILECODEC_FUSED_DEVICE_CODE
    asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(h), "r"(sub));
#else
    d = detail::add_pair_host(h, sub, false, true);
#endif
  } else if constexpr (!Wide) {
    const std::uint32_t h = pair | 0x43004300u;
#if TILECODEC_FUSED_DEVICE_CODE
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(h), "r"(0x3f803f80u), "r"(sub));  // h * 1 + (-sub)
#else
    d = detail::add_pair_host(h, sub, true, false);
#endif
  } else {
    const std::uint32_t h = (pair & 0x007f007fu) | 0x43004300u;
    const std::uint32_t s = 0xc380c380u ^ (pair & 0x00800080u);  // -(256 or 128): sign bit set
#if TILECODEC_FUSED_DEVICE_CODE
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(h), "r"(0x3f803f80u), "r"(s));
#else
    d = detail::add_pair_host(h, s, true, false);
#endif
  }
  return d;
}

namespace detail {
// fp16 (or bf16) bits of the positive integer v (< 2048), built from the bit pattern: exact when v
// is (fp16: always; bf16: v <= 256 or a multiple of a power of two that fits 8 significant bits).
__host__ __device__ inline std::uint32_t small_int_half_bits(bool bf16, std::uint32_t v) {
  std::uint32_t e = 0;  // 2^e <= v
  while (e < 11 && (2u << e) <= v) ++e;
  return bf16 ? ((e + 127u) << 7) | (((v << 7) >> e) & 0x7fu) : ((e + 15u) << 10) | (((v << 10) >> e) & 0x3ffu);
}
}  // namespace detail

// The constant `sub` of int_pair_to_half2 for a tensor: fp16 (1024 + zero - first) as a pair;
// bf16 narrow: -(128 + zero - first); bf16 wide: unused (first must be 0).
template <bool BF16>
__host__ __device__ inline std::uint32_t int_pair_sub(std::uint32_t zero, std::uint32_t first) {
  // fp16: 1024 + zero - first; bf16: -(128 + zero - first). Small integers, exact in both.
  const std::uint32_t bits = BF16 ? 0x8000u | detail::small_int_half_bits(true, 128u + zero - first)
                                  : detail::small_int_half_bits(false, 1024u + zero - first);
  return bits | (bits << 16);
}

template <bool BF16, bool Wide>
__host__ __device__ __forceinline__ void int_fragments(const std::uint32_t (&pairs)[4][4], std::uint32_t sub, std::uint32_t (&a)[4][4]) {
TILECODEC_FUSED_UNROLL
  for (int r4 = 0; r4 < 4; ++r4)
TILECODEC_FUSED_UNROLL
    for (int j = 0; j < 4; ++j) a[r4][j] = int_pair_to_half2<BF16, Wide>(pairs[r4][j], sub);
}

// fixed_quad_pairs + int_fragments in one, the same values: the exponent bits that int_pair_to_half2
// ORs in ride along with the first code, so a pair costs a shift, two LOP3, an IMAD and the
// subtraction (5 instructions; fp16 with k = 8: a byte permutation and the subtraction; bf16 with
// k = 8, the wide split: a byte permutation, two LOP3 and a fused multiply-add; k = 9 keeps the
// two-step path).
template <int K, bool BF16>
__host__ __device__ __forceinline__ void int_quad_fragments(const std::uint32_t (&w)[K], std::uint32_t sub, std::uint32_t (&a)[4][4]) {
  if constexpr (BF16 && K == 8) {
    // The wide bf16 split of int_pair_to_half2 (first is 0) on byte-aligned codes: a byte
    // permutation puts the two codes under the exponent byte 0x43, a LOP3 clears their top bits
    // (128 + low 7 bits), another turns the top bits into the constant to add (-256 or -128), one
    // fused multiply-add: 4 instructions per pair.
TILECODEC_FUSED_UNROLL
    for (int r4 = 0; r4 < 4; ++r4)
TILECODEC_FUSED_UNROLL
      for (int j = 0; j < 4; ++j) {
        const int m = 8 * r4 + 2 * j;
        const std::uint32_t p = detail::byte_perm(w[m >> 2], 0x43004300u, (m & 2) ? 0x5352u : 0x5150u);  // c | 0x43 << 8 | c' << 16 | 0x43 << 24
#if TILECODEC_FUSED_DEVICE_CODE
        std::uint32_t h, s, d;
        asm("lop3.b32 %0, %1, %2, 0, 0xc0;" : "=r"(h) : "r"(p), "n"(0xff7fff7fu));                            // p & ~top bits
        asm("lop3.b32 %0, %1, %2, %3, 0x6a;" : "=r"(s) : "r"(p), "n"(0x00800080u), "r"(0xc380c380u));        // (p & top) ^ -256
        asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(h), "r"(0x3f803f80u), "r"(s));
        a[r4][j] = d;
#else
        a[r4][j] = detail::add_pair_host(p & 0xff7fff7fu, (p & 0x00800080u) ^ 0xc380c380u, true, false);
#endif
      }
    (void)sub;
  } else if constexpr (BF16 && K > 7) {
    std::uint32_t pairs[4][4];
    fixed_quad_pairs<K>(w, pairs);
    int_fragments<true, true>(pairs, sub, a);
  } else {
    constexpr std::uint32_t magic = BF16 ? 0x43004300u : 0x64006400u;
TILECODEC_FUSED_UNROLL
    for (int r4 = 0; r4 < 4; ++r4)
TILECODEC_FUSED_UNROLL
      for (int j = 0; j < 4; ++j) {
        std::uint32_t h;
        if constexpr (K == 8) {  // (fp16) byte-aligned codes: one byte permutation per pair
          const int m = 8 * r4 + 2 * j;
          h = detail::byte_perm(w[m >> 2], magic, (m & 2) ? 0x5352u : 0x5150u);
        } else {
          h = fixed_pair_from_field<K>(fixed_code_field<K>(w, 8 * r4 + 2 * j), magic);
        }
        std::uint32_t d;
        if constexpr (!BF16) {
#if TILECODEC_FUSED_DEVICE_CODE
          asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(h), "r"(sub));
#else
          d = detail::add_pair_host(h, sub, false, true);
#endif
        } else {
#if TILECODEC_FUSED_DEVICE_CODE
          asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(h), "r"(0x3f803f80u), "r"(sub));
#else
          d = detail::add_pair_host(h, sub, true, false);
#endif
        }
        a[r4][j] = d;
      }
  }
}

// ---- 4-bit codes in the interleaved k order --------------------------------------------------------
// A word of 4-bit codes holds eight elements of one fragment, e = 0..7 at bits 4e (mma order).
// The pairs that mask out of a word in one instruction are (e, e + 4): bits 4e and 16 + 4e. They
// are the same row, columns 2t + c and 2t + c + 8, where an A register wants columns 2t + c and
// 2t + c + 1. A product sums over k in any order, so these fragments permute k instead of the
// codes: k slot 2t + 1 carries column 2t + 8 and slot 2t + 8 carries column 2t + 1 (slots 2t and
// 2t + 9 stay). Register j, half h holds column 2t + (j >> 1) + 8h of row g + 8 (j & 1); the B
// fragments take the same permutation (interleave_b_fragment). fp16: per word a shift, four
// LOP3, two subtractions and two fused multiply-adds for eight codes (the odd nibbles enter as
// 1024 + 16 v and are scaled by 1/16); bf16 has no room for 16 v below its exponent: three shifts,
// four LOP3 and four fused multiply-adds.

// sub_hi of int4_interleaved_fragments: fp16 -(64 + zero - first) as a pair; bf16: unused (0).
template <bool BF16>
__host__ __device__ inline std::uint32_t int_pair_sub_high(std::uint32_t zero, std::uint32_t first) {
  if constexpr (BF16) {
    return 0u;
  } else {
    const std::uint32_t bits = 0x8000u | detail::small_int_half_bits(false, 64u + zero - first);
    return bits | (bits << 16);
  }
}

// The A registers of a quad of 4-bit codes (the lane's 4 words) in the interleaved k order;
// sub = int_pair_sub<BF16>(zero, first), sub_hi = int_pair_sub_high<BF16>(zero, first).
template <bool BF16>
__host__ __device__ __forceinline__ void int4_interleaved_fragments(const std::uint32_t (&w)[4], std::uint32_t sub,
                                                                    std::uint32_t sub_hi, std::uint32_t (&a)[4][4]) {
TILECODEC_FUSED_UNROLL
  for (int r4 = 0; r4 < 4; ++r4) {
    const std::uint32_t v = w[r4], v8 = v >> 8;
    if constexpr (!BF16) {
      // (e, e + 4) for e = 0, 2: 1024 + v; for e = 1, 3: 1024 + 16 v.
      const std::uint32_t h0 = detail::and_or<0x000f000fu>(v, 0x64006400u), h2 = detail::and_or<0x000f000fu>(v8, 0x64006400u);
      const std::uint32_t h1 = detail::and_or<0x00f000f0u>(v, 0x64006400u), h3 = detail::and_or<0x00f000f0u>(v8, 0x64006400u);
#if TILECODEC_FUSED_DEVICE_CODE
      asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(a[r4][0]) : "r"(h0), "r"(sub));
      asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(a[r4][1]) : "r"(h2), "r"(sub));
      asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(a[r4][2]) : "r"(h1), "r"(0x2c002c00u), "r"(sub_hi));  // h / 16 - (64 + zero - first)
      asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(a[r4][3]) : "r"(h3), "r"(0x2c002c00u), "r"(sub_hi));
#else
      a[r4][0] = detail::add_pair_host(h0, sub, false, true);
      a[r4][1] = detail::add_pair_host(h2, sub, false, true);
      a[r4][2] = detail::fma_pair_host_f16(h1, 0.0625f, sub_hi);
      a[r4][3] = detail::fma_pair_host_f16(h3, 0.0625f, sub_hi);
#endif
    } else {
      const std::uint32_t src[4] = {v, v8, v >> 4, v >> 12};  // registers 0..3: (e, e + 4) for e = 0, 2, 1, 3
      std::uint32_t hs[4];
TILECODEC_FUSED_UNROLL
      for (int j = 0; j < 4; ++j) hs[j] = detail::and_or<0x000f000fu>(src[j], 0x43004300u);
TILECODEC_FUSED_UNROLL
      for (int j = 0; j < 4; ++j) {
#if TILECODEC_FUSED_DEVICE_CODE
        asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(a[r4][j]) : "r"(hs[j]), "r"(0x3f803f80u), "r"(sub));  // h * 1 + (-sub)
#else
        a[r4][j] = detail::add_pair_host(hs[j], sub, true, false);
#endif
      }
      (void)sub_hi;
    }
  }
}

// The B fragment (b0, b1 as load_b_fragment gives them: columns 2t, 2t + 1 and 2t + 8, 2t + 9)
// in the interleaved k order: b0 = columns 2t, 2t + 8; b1 = columns 2t + 1, 2t + 9.
__host__ __device__ __forceinline__ void interleave_b_fragment(std::uint32_t& b0, std::uint32_t& b1) {
  const std::uint32_t lo = detail::byte_perm(b0, b1, 0x5410u), hi = detail::byte_perm(b0, b1, 0x7632u);
  b0 = lo;
  b1 = hi;
}

// Lossless 16-bit: value bits = sign << 15 | (first + code) << 6 | low 6 bits (format/planes.hpp),
// for a pair of codes and a pair of 7-bit raw values (bits 0..6 of each half; bit 7 ignored).
__host__ __device__ __forceinline__ std::uint32_t lossless_pair(std::uint32_t pair, std::uint32_t first2, std::uint32_t raw2) {
  const std::uint32_t sym = (pair + first2) << 6;
  return sym | (raw2 & 0x003f003fu) | ((raw2 << 9) & 0x80008000u);
}

// The lane's raw bytes of a quad, N words: 28 bytes (4 groups of 8 values in 7 bytes) or, split
// in bytes, 32 (format/planes.hpp). Group r4 holds the raw values of fragment r4.
template <int N>
__device__ __forceinline__ void load_raw_quad(const std::uint8_t* lane_raw /* 4-byte aligned */, std::uint32_t (&w)[N]) {
#pragma unroll
  for (int j = 0; j < N; ++j) w[j] = ldg_u32(lane_raw + 4 * j);
}

// Byte b (compile-time) of the 28 bytes, in the low byte of the result (other bytes: garbage).
__host__ __device__ __forceinline__ std::uint32_t raw_byte_pair(const std::uint32_t (&w)[7], int b0, int b1) {
  // Bytes b0 and b1 into bytes 0 and 2 of the result.
  const int w0 = b0 >> 2, w1 = b1 >> 2;
  if (w0 == w1) return detail::byte_perm(w[w0], 0u, std::uint32_t((b0 & 3) | ((b1 & 3) << 8)));
  return detail::byte_perm(w[w0], w[w1], std::uint32_t((b0 & 3) | ((4 + (b1 & 3)) << 8)));
}

// Bytes b..b+3 (lo) and b+4..b+7 (hi) of the 28, b = 7 r4 (byte 7 of the last group: 0).
__host__ __device__ __forceinline__ void raw_group_words(const std::uint32_t (&w)[7], int r4, std::uint32_t& lo, std::uint32_t& hi) {
  const int b = 7 * r4, wl = b >> 2, sl = b & 3;
  lo = sl == 0 ? w[wl] : detail::byte_perm(w[wl], w[wl + 1], std::uint32_t(0x3210 + 0x1111 * sl));
  hi = detail::byte_perm(w[(b + 4) >> 2], (b + 4) / 4 + 1 < 7 ? w[(b + 4) / 4 + 1] : 0u, std::uint32_t(0x3210 + 0x1111 * ((b + 4) & 3)));
}

// Raw value 7 of a group (bits 0..6 of the result): the top bits of its bytes 0..6, gathered by
// two multiplications (bits 7, 15, 23, 31 of a word land in bits 28..31 of the product).
__host__ __device__ __forceinline__ std::uint32_t raw_value7(std::uint32_t lo, std::uint32_t hi) {
  const std::uint32_t top_lo = ((lo & 0x80808080u) * 0x00204081u) >> 28;
  const std::uint32_t top_hi = ((hi & 0x00808080u) * 0x00204081u) >> 28;
  return top_lo | (top_hi << 4);
}

// Raw pairs of fragment r4 in A-register order: pairs (0,1), (2,3), (4,5), (6,7).
__host__ __device__ __forceinline__ void raw_group_pairs(const std::uint32_t (&w)[7], int r4, std::uint32_t (&raw)[4]) {
  const int b = 7 * r4;
  raw[0] = raw_byte_pair(w, b + 0, b + 1);
  raw[1] = raw_byte_pair(w, b + 2, b + 3);
  raw[2] = raw_byte_pair(w, b + 4, b + 5);
  std::uint32_t lo, hi;
  raw_group_words(w, r4, lo, hi);
  raw[3] = detail::byte_perm(hi, raw_value7(lo, hi), 0x0402u);  // byte b+6 (byte 2 of hi) in byte 0, value 7 in byte 2
}

// ---- lossless 16-bit, the byte split (format/planes.hpp; the fixed-coded tensors) ----------------
// value bits = sign << 15 | (first + code) << 7 | raw bits 6..0. The lane's 32 raw bytes of a quad
// (4 groups of 8 values, a byte each, in symbol order): 8 words, group r4 in words 2 r4 and 2 r4 + 1.

// A pair of weights from their raw bytes (bytes 0 and 2 of raw2, each with its sign copied into
// the byte above: byte_perm_msb) and sym7 = (first + code) << 7 in both halves: one LOP3.
__host__ __device__ __forceinline__ std::uint32_t lossless_bytes_pair(std::uint32_t raw2, std::uint32_t sym7) {
  return detail::and_or<0x807f807fu>(raw2, sym7);
}

// In the mma order of fixed_quad_pairs: register j of fragment r4 holds elements 2j, 2j + 1 of
// its group. first7 = (first | first << 16) << 7.
__host__ __device__ __forceinline__ void lossless_bytes_fragments(const std::uint32_t (&pairs)[4][4], std::uint32_t first7,
                                                                  const std::uint32_t (&raw_words)[8], std::uint32_t (&a)[4][4]) {
TILECODEC_FUSED_UNROLL
  for (int r4 = 0; r4 < 4; ++r4)
TILECODEC_FUSED_UNROLL
    for (int j = 0; j < 4; ++j) {
      const std::uint32_t raw2 = detail::byte_perm_msb(raw_words[2 * r4 + (j >> 1)], 0u, (j & 1) ? 0xb3a2u : 0x9180u);
      a[r4][j] = lossless_bytes_pair(raw2, pairs[r4][j] * 128u + first7);
    }
}

// 4-bit codes in the interleaved k order of int4_interleaved_fragments (same registers, same
// permutation of the B fragments): register j holds elements (0, 4), (2, 6), (1, 5), (3, 7) of its
// fragment. Per pair of weights four instructions: a byte permutation for the raw bytes and their
// signs, a LOP3 and an IMAD for the codes (detail::masked_mad: (first + code) << 7), a LOP3 that
// joins them (PERFORMANCE.md 6.19: 7.5 per pair with the 7-bit raw plane).
__host__ __device__ __forceinline__ void lossless_bytes_interleaved_fragments(const std::uint32_t (&w)[4], std::uint32_t first7,
                                                                              const std::uint32_t (&raw_words)[8],
                                                                              std::uint32_t (&a)[4][4]) {
TILECODEC_FUSED_UNROLL
  for (int r4 = 0; r4 < 4; ++r4) {
    const std::uint32_t v = w[r4], v8 = v >> 8;
    const std::uint32_t lo = raw_words[2 * r4], hi = raw_words[2 * r4 + 1];
    a[r4][0] = lossless_bytes_pair(detail::byte_perm_msb(lo, hi, 0xc480u), detail::masked_mad<0x000f000fu, 128u>(v, first7));
    a[r4][1] = lossless_bytes_pair(detail::byte_perm_msb(lo, hi, 0xe6a2u), detail::masked_mad<0x000f000fu, 128u>(v8, first7));
    a[r4][2] = lossless_bytes_pair(detail::byte_perm_msb(lo, hi, 0xd591u), detail::masked_mad<0x00f000f0u, 8u>(v, first7));
    a[r4][3] = lossless_bytes_pair(detail::byte_perm_msb(lo, hi, 0xf7b3u), detail::masked_mad<0x00f000f0u, 8u>(v8, first7));
  }
}

// ---- lossless 16-bit, the 9-bit symbol and 7-bit raw plane (the rANS-coded tensors) ----------------
template <bool BF16>
__host__ __device__ __forceinline__ void lossless_fragments(const std::uint32_t (&pairs)[4][4], std::uint32_t first2,
                                                   const std::uint32_t (&raw_words)[7], std::uint32_t (&a)[4][4]) {
TILECODEC_FUSED_UNROLL
  for (int r4 = 0; r4 < 4; ++r4) {
    std::uint32_t raw[4];
    raw_group_pairs(raw_words, r4, raw);
TILECODEC_FUSED_UNROLL
    for (int j = 0; j < 4; ++j) a[r4][j] = lossless_pair(pairs[r4][j], first2, raw[j]);
  }
}

}  // namespace fused
}  // namespace tilecodec
