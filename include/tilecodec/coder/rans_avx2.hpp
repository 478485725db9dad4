// tilecodec/coder/rans_avx2.hpp: the host rANS tile decoder for 32 lanes, eight lanes per AVX2
// vector. Same stream, same checks, same output as rans_decode_tile; chosen at run time when
// the CPU has AVX2 (the library itself is compiled for the baseline ISA).
//
// One step decodes 32 symbols as four groups of eight lanes: gather the table entries, update
// the states, and give the next words of the stream to the lanes that fell below L, in lane
// order: a byte mask of those lanes selects a permutation that spreads consecutive words onto
// them (one 256-entry table of permutations).
#pragma once

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define TILECODEC_HAS_AVX2_DECODER 1

#include <immintrin.h>

#include <cstdint>
#include <vector>

#include "rans.hpp"

namespace tilecodec {
namespace detail {

// For each 8-bit mask of lanes taking a word: lane j (bit set) reads word popcount(mask & ((1<<j)-1)).
struct expand_permutations {
  alignas(32) std::uint32_t index[256][8];
  expand_permutations() {
    for (std::uint32_t m = 0; m < 256; ++m) {
      std::uint32_t k = 0;
      for (std::uint32_t j = 0; j < 8; ++j) index[m][j] = (m >> j) & 1u ? k++ : 0u;
    }
  }
};

inline const expand_permutations& expand_table() {
  static const expand_permutations table;
  return table;
}

inline bool cpu_has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
  return yes;
}

}  // namespace detail

template <std::uint32_t ProbBits, std::uint32_t SymBits>
[[nodiscard]] __attribute__((target("avx2,popcnt"))) status rans_decode_tile_avx2(
    const rans_decode_entry* table, const std::uint8_t* tile, std::size_t tile_bytes, std::uint16_t* symbols,
    std::uint32_t n) {
  constexpr std::uint32_t Lanes = 32;
  if (tile_bytes < Lanes * 4u) return status::corrupt_payload;
  const std::uint8_t* words = tile + Lanes * 4u;
  const std::size_t word_count = (tile_bytes - Lanes * 4u) / 2u;
  const auto& perms = detail::expand_table();
  const __m256i mask = _mm256_set1_epi32(int((1u << ProbBits) - 1u));
  const __m256i zero = _mm256_setzero_si256();
  const __m256i sym_mask = _mm256_set1_epi32(int((1u << SymBits) - 1u));
  __m256i x[4];
  for (int g = 0; g < 4; ++g) x[g] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile) + g);
  {
    __m256i low = zero;  // any initial state below L is corrupt
    for (int g = 0; g < 4; ++g) low = _mm256_or_si256(low, _mm256_cmpeq_epi32(_mm256_srli_epi32(x[g], 16), zero));
    if (!_mm256_testz_si256(low, low)) return status::corrupt_payload;
  }
  std::size_t next = 0;
  std::uint32_t i = 0;
  for (; i + Lanes <= n && next + Lanes <= word_count; i += Lanes) {
    __m256i sym[4];
    for (int g = 0; g < 4; ++g) {
      const __m256i e = _mm256_i32gather_epi32(reinterpret_cast<const int*>(table), _mm256_and_si256(x[g], mask), 4);
      const __m256i freq = _mm256_and_si256(_mm256_srli_epi32(e, SymBits), mask);
      const __m256i bias = _mm256_srli_epi32(e, SymBits + ProbBits);
      __m256i s = _mm256_add_epi32(_mm256_mullo_epi32(freq, _mm256_srli_epi32(x[g], ProbBits)), bias);
      sym[g] = _mm256_and_si256(e, sym_mask);
      const __m256i take = _mm256_cmpeq_epi32(_mm256_srli_epi32(s, 16), zero);
      const unsigned m = unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(take)));
      const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(words + 2 * next)));
      const __m256i spread = _mm256_permutevar8x32_epi32(
          w, _mm256_load_si256(reinterpret_cast<const __m256i*>(perms.index[m])));
      const __m256i pushed = _mm256_or_si256(_mm256_slli_epi32(s, 16), spread);
      x[g] = _mm256_blendv_epi8(s, pushed, take);
      next += unsigned(__builtin_popcount(m));
    }
    // 32-bit symbols to 16-bit: packus interleaves 128-bit halves, permute4x64 restores order.
    const __m256i p01 = _mm256_permute4x64_epi64(_mm256_packus_epi32(sym[0], sym[1]), 0xd8);
    const __m256i p23 = _mm256_permute4x64_epi64(_mm256_packus_epi32(sym[2], sym[3]), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(symbols + i), p01);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(symbols + i + 16), p23);
  }
  // Tail: hand the states to the scalar loop, which checks every read and the final states.
  std::uint32_t xs[Lanes];
  for (int g = 0; g < 4; ++g) _mm256_storeu_si256(reinterpret_cast<__m256i*>(xs) + g, x[g]);
  for (; i < n; ++i) {
    const std::uint32_t l = i % Lanes;
    symbols[i] = static_cast<std::uint16_t>(rans_decode_symbol(xs[l], table, ProbBits, SymBits));
    if (rans_needs_word(xs[l])) {
      if (next >= word_count) return status::corrupt_payload;
      xs[l] = rans_push_word(xs[l], load_le16(words + 2u * next++));
    }
  }
  if (word_count - next > (tile_alignment - 2u) / 2u) return status::corrupt_payload;
  for (std::uint32_t l = 0; l < Lanes; ++l)
    if (xs[l] != rans_state_lower) return status::corrupt_payload;
  return status::success;
}

// ---- encoder -----------------------------------------------------------------------------------

// Per-symbol encoder constants in the layout the vector encoder gathers: freq | cum << 16, and
// the double reciprocal. x_max is freq << (32 - P), so it needs no table.
struct rans_encode_tables {
  std::vector<std::uint32_t> freq_cum;
  std::vector<double> rcp;
  explicit rans_encode_tables(const std::vector<rans_encode_symbol>& symbols)
      : freq_cum(symbols.size()), rcp(symbols.size()) {
    for (std::size_t s = 0; s < symbols.size(); ++s) {
      freq_cum[s] = symbols[s].freq | (symbols[s].cum << 16);
      rcp[s] = symbols[s].rcp;
    }
  }
};

namespace detail {
// For each 8-bit mask of lanes shedding a word: the set lanes from the highest down, because
// the encoder walks lanes downward and the words must land in that order.
struct compress_permutations {
  alignas(32) std::uint32_t index[256][8];
  compress_permutations() {
    for (std::uint32_t m = 0; m < 256; ++m) {
      std::uint32_t k = 0;
      for (std::uint32_t j = 8; j-- > 0;)
        if ((m >> j) & 1u) index[m][k++] = j;
      for (; k < 8; ++k) index[m][k] = 0;
    }
  }
};
inline const compress_permutations& compress_table() {
  static const compress_permutations table;
  return table;
}
}  // namespace detail

// Same bytes as rans_encode_tile<32>, eight lanes per AVX2 vector. The division is the same
// exact double-reciprocal floor (see rans_encode_symbol), so both produce identical states.
__attribute__((target("avx2,popcnt"))) inline void rans_encode_tile_avx2(
    const rans_encode_tables& tables, std::uint32_t prob_bits, const std::uint16_t* symbols, std::uint32_t n,
    std::vector<std::uint16_t>& words, std::vector<std::uint8_t>& out) {
  constexpr std::uint32_t Lanes = 32;
  std::uint32_t x[Lanes];
  for (std::uint32_t l = 0; l < Lanes; ++l) x[l] = rans_state_lower;
  words.resize(std::size_t(n) + 8);  // one word per symbol at most, plus an 8-word store's slack
  std::uint16_t* wp = words.data();
  const std::uint32_t* fc_table = tables.freq_cum.data();
  const double* rcp_table = tables.rcp.data();
  // The partial last step first (the encoder runs backwards), one lane at a time.
  const std::uint32_t full = n / Lanes;
  for (std::uint32_t i = n; i-- > full * Lanes;) {
    const std::uint32_t l = i % Lanes, fc = fc_table[symbols[i]];
    const std::uint32_t freq = fc & 0xffffu, cum = fc >> 16;
    std::uint32_t s = x[l];
    const bool shed = s >= (freq << (32 - prob_bits));
    *wp = static_cast<std::uint16_t>(s);
    wp += shed;
    s = shed ? s >> rans_word_bits : s;
    const auto q = static_cast<std::uint32_t>(double(s) * rcp_table[symbols[i]] + rans_rcp_bias);
    x[l] = (q << prob_bits) + (s - q * freq) + cum;
  }
  const auto& perms = detail::compress_table();
  const __m128i prob_shift = _mm_cvtsi32_si128(int(prob_bits));
  const __m128i xmax_shift = _mm_cvtsi32_si128(int(32 - prob_bits));
  const __m256i sign = _mm256_set1_epi32(int(0x80000000u));
  const __m256i low16 = _mm256_set1_epi32(0xffff);
  const __m256d two31 = _mm256_set1_pd(2147483648.0), bias = _mm256_set1_pd(rans_rcp_bias);
  const __m256d zero_pd = _mm256_setzero_pd(), all_pd = _mm256_castsi256_pd(_mm256_set1_epi32(-1));
  // Low two bytes of each 32-bit element, gathered into the low 8 bytes of each 128-bit half.
  const __m256i words_of = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                            0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
  __m256i xv[4];
  for (int g = 0; g < 4; ++g) xv[g] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x) + g);
  for (std::uint32_t k = full; k-- > 0;) {
    const std::uint16_t* step = symbols + std::size_t(k) * Lanes;
    for (int g = 4; g-- > 0;) {
      const __m256i sym = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(step + 8 * g)));
      const __m256i fc = _mm256_i32gather_epi32(reinterpret_cast<const int*>(fc_table), sym, 4);
      const __m256i freq = _mm256_and_si256(fc, low16), cum = _mm256_srli_epi32(fc, 16);
      const __m256i x_max = _mm256_sll_epi32(freq, xmax_shift);
      __m256i s = xv[g];
      const __m256i keep = _mm256_cmpgt_epi32(_mm256_xor_si256(x_max, sign), _mm256_xor_si256(s, sign));  // s < x_max
      const unsigned m = ~unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(keep))) & 0xffu;
      // Emit the low words of the shedding lanes, highest lane first.
      const __m256i shed_words = _mm256_permutevar8x32_epi32(
          s, _mm256_load_si256(reinterpret_cast<const __m256i*>(perms.index[m])));
      const __m256i packed = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(shed_words, words_of), 0x08);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(wp), _mm256_castsi256_si128(packed));
      wp += __builtin_popcount(m);
      s = _mm256_blendv_epi8(_mm256_srli_epi32(s, 16), s, keep);
      // q = floor(s / freq) through the exact double reciprocal (s is unsigned: bias by 2^31).
      const __m256i s_signed = _mm256_xor_si256(s, sign);
      const __m256d d_lo = _mm256_add_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(s_signed)), two31);
      const __m256d d_hi = _mm256_add_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(s_signed, 1)), two31);
      // Masked gathers with a zero source: same loads, and GCC 12 does not warn about the
      // unmaskeds' undefined source register.
      const __m256d r_lo = _mm256_mask_i32gather_pd(zero_pd, rcp_table, _mm256_castsi256_si128(sym), all_pd, 8);
      const __m256d r_hi = _mm256_mask_i32gather_pd(zero_pd, rcp_table, _mm256_extracti128_si256(sym, 1), all_pd, 8);
      const __m128i q_lo = _mm256_cvttpd_epi32(_mm256_add_pd(_mm256_mul_pd(d_lo, r_lo), bias));
      const __m128i q_hi = _mm256_cvttpd_epi32(_mm256_add_pd(_mm256_mul_pd(d_hi, r_hi), bias));
      const __m256i q = _mm256_set_m128i(q_hi, q_lo);
      const __m256i rem = _mm256_sub_epi32(s, _mm256_mullo_epi32(q, freq));
      xv[g] = _mm256_add_epi32(_mm256_add_epi32(_mm256_sll_epi32(q, prob_shift), rem), cum);
    }
  }
  for (int g = 0; g < 4; ++g) _mm256_storeu_si256(reinterpret_cast<__m256i*>(x) + g, xv[g]);
  rans_finish_tile(x, Lanes, words.data(), std::size_t(wp - words.data()), out);
}

// Run-time dispatch over precision and symbol width.
[[nodiscard]] inline status rans_decode_tile_avx2(const rans_decode_entry* table, std::uint32_t prob_bits,
                                                  std::uint32_t sym_bits, const std::uint8_t* tile,
                                                  std::size_t tile_bytes, std::uint16_t* symbols, std::uint32_t n) {
#define TILECODEC_AVX2_CASE(P)                                                                 \
  case P:                                                                                      \
    return sym_bits == 9 ? rans_decode_tile_avx2<P, 9>(table, tile, tile_bytes, symbols, n)    \
                         : rans_decode_tile_avx2<P, 8>(table, tile, tile_bytes, symbols, n);
  switch (prob_bits) {
    TILECODEC_AVX2_CASE(8)
    TILECODEC_AVX2_CASE(9)
    TILECODEC_AVX2_CASE(10)
    TILECODEC_AVX2_CASE(11)
    TILECODEC_AVX2_CASE(12)
    default: return status::corrupt_header;
  }
#undef TILECODEC_AVX2_CASE
}

}  // namespace tilecodec

#else
#define TILECODEC_HAS_AVX2_DECODER 0
#endif
