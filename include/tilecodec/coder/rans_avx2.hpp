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
#include <cstring>
#include <type_traits>
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

namespace detail {

// One tile's AVX2 decode in progress: the states of its 32 lanes and where its stream stands.
// Split into begin / step / finish so that two tiles can be decoded side by side: a step is a
// chain of dependent latencies (gather, multiply, the word reads of the lanes below), so one
// tile leaves the core mostly idle; two independent tiles fill it.
struct avx2_decode_cursor {
  const std::uint8_t* words;
  std::size_t word_count;
  std::size_t next;
  std::uint16_t* symbols;
  std::uint32_t n;
  std::uint32_t i;
  __m256i x[4];
};

template <std::uint32_t ProbBits, std::uint32_t SymBits>
[[nodiscard]] __attribute__((target("avx2,popcnt"))) inline status avx2_decode_begin(
    const std::uint8_t* tile, std::size_t tile_bytes, std::uint16_t* symbols, std::uint32_t n, avx2_decode_cursor& c) {
  constexpr std::uint32_t Lanes = 32;
  const __m256i zero = _mm256_setzero_si256();
  c.words = tile;
  c.word_count = c.next = 0;
  c.symbols = symbols;
  c.n = n;
  c.i = 0;
  for (int g = 0; g < 4; ++g) c.x[g] = zero;
  if (tile_bytes < Lanes * 4u) return status::corrupt_payload;
  c.words = tile + Lanes * 4u;
  c.word_count = (tile_bytes - Lanes * 4u) / 2u;
  __m256i low = zero;  // any initial state below L is corrupt
  for (int g = 0; g < 4; ++g) {
    c.x[g] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile) + g);
    low = _mm256_or_si256(low, _mm256_cmpeq_epi32(_mm256_srli_epi32(c.x[g], 16), zero));
  }
  return _mm256_testz_si256(low, low) ? status::success : status::corrupt_payload;
}

// A whole step reads at most 32 words, so bounds are checked once per step.
inline bool avx2_decode_can_step(const avx2_decode_cursor& c) {
  return c.i + 32u <= c.n && c.next + 32u <= c.word_count;
}

// Decodes 32 symbols (four groups of eight lanes): gather the table entries, update the states,
// and give the next words of the stream to the lanes that fell below L, in lane order.
template <std::uint32_t ProbBits, std::uint32_t SymBits>
__attribute__((target("avx2,popcnt"), always_inline)) inline void avx2_decode_step(const rans_decode_entry* table,
                                                                                  avx2_decode_cursor& c) {
  const auto& perms = expand_table();
  const __m256i mask = _mm256_set1_epi32(int((1u << ProbBits) - 1u));
  const __m256i zero = _mm256_setzero_si256();
  const __m256i sym_mask = _mm256_set1_epi32(int((1u << SymBits) - 1u));
  __m256i sym[4];
  for (int g = 0; g < 4; ++g) {
    const __m256i e = _mm256_i32gather_epi32(reinterpret_cast<const int*>(table), _mm256_and_si256(c.x[g], mask), 4);
    const __m256i freq = _mm256_and_si256(_mm256_srli_epi32(e, SymBits), mask);
    const __m256i bias = _mm256_srli_epi32(e, SymBits + ProbBits);
    __m256i s = _mm256_add_epi32(_mm256_mullo_epi32(freq, _mm256_srli_epi32(c.x[g], ProbBits)), bias);
    sym[g] = _mm256_and_si256(e, sym_mask);
    const __m256i take = _mm256_cmpeq_epi32(_mm256_srli_epi32(s, 16), zero);
    const unsigned m = unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(take)));
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c.words + 2 * c.next)));
    const __m256i spread = _mm256_permutevar8x32_epi32(
        w, _mm256_load_si256(reinterpret_cast<const __m256i*>(perms.index[m])));
    const __m256i pushed = _mm256_or_si256(_mm256_slli_epi32(s, 16), spread);
    c.x[g] = _mm256_blendv_epi8(s, pushed, take);
    c.next += unsigned(__builtin_popcount(m));
  }
  // 32-bit symbols to 16-bit: packus interleaves 128-bit halves, permute4x64 restores order.
  const __m256i p01 = _mm256_permute4x64_epi64(_mm256_packus_epi32(sym[0], sym[1]), 0xd8);
  const __m256i p23 = _mm256_permute4x64_epi64(_mm256_packus_epi32(sym[2], sym[3]), 0xd8);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c.symbols + c.i), p01);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c.symbols + c.i + 16), p23);
  c.i += 32;
}

// Tail: hands the states to the scalar loop, which checks every read and the final states.
template <std::uint32_t ProbBits, std::uint32_t SymBits>
[[nodiscard]] __attribute__((target("avx2,popcnt"))) inline status avx2_decode_finish(const rans_decode_entry* table,
                                                                                     avx2_decode_cursor& c) {
  constexpr std::uint32_t Lanes = 32;
  std::uint32_t xs[Lanes];
  for (int g = 0; g < 4; ++g) _mm256_storeu_si256(reinterpret_cast<__m256i*>(xs) + g, c.x[g]);
  for (; c.i < c.n; ++c.i) {
    const std::uint32_t l = c.i % Lanes;
    c.symbols[c.i] = static_cast<std::uint16_t>(rans_decode_symbol(xs[l], table, ProbBits, SymBits));
    if (rans_needs_word(xs[l])) {
      if (c.next >= c.word_count) return status::corrupt_payload;
      xs[l] = rans_push_word(xs[l], load_le16(c.words + 2u * c.next++));
    }
  }
  if (c.word_count - c.next > (tile_alignment - 2u) / 2u) return status::corrupt_payload;
  for (std::uint32_t l = 0; l < Lanes; ++l)
    if (xs[l] != rans_state_lower) return status::corrupt_payload;
  return status::success;
}

}  // namespace detail

template <std::uint32_t ProbBits, std::uint32_t SymBits>
[[nodiscard]] __attribute__((target("avx2,popcnt"))) status rans_decode_tile_avx2(
    const rans_decode_entry* table, const std::uint8_t* tile, std::size_t tile_bytes, std::uint16_t* symbols,
    std::uint32_t n) {
  detail::avx2_decode_cursor c;
  const status s = detail::avx2_decode_begin<ProbBits, SymBits>(tile, tile_bytes, symbols, n, c);
  if (s != status::success) return s;
  while (detail::avx2_decode_can_step(c)) detail::avx2_decode_step<ProbBits, SymBits>(table, c);
  return detail::avx2_decode_finish<ProbBits, SymBits>(table, c);
}

// Two tiles side by side (same results as decoding each alone): their steps alternate while both
// have whole steps left, so the core overlaps the two dependency chains.
template <std::uint32_t ProbBits, std::uint32_t SymBits>
__attribute__((target("avx2,popcnt"))) void rans_decode_tile_pair_avx2(
    const rans_decode_entry* table, const std::uint8_t* tile0, std::size_t bytes0, std::uint16_t* symbols0,
    std::uint32_t n0, status& result0, const std::uint8_t* tile1, std::size_t bytes1, std::uint16_t* symbols1,
    std::uint32_t n1, status& result1) {
  detail::avx2_decode_cursor a, b;
  result0 = detail::avx2_decode_begin<ProbBits, SymBits>(tile0, bytes0, symbols0, n0, a);
  result1 = detail::avx2_decode_begin<ProbBits, SymBits>(tile1, bytes1, symbols1, n1, b);
  if (result0 == status::success && result1 == status::success)
    while (detail::avx2_decode_can_step(a) && detail::avx2_decode_can_step(b)) {
      detail::avx2_decode_step<ProbBits, SymBits>(table, a);
      detail::avx2_decode_step<ProbBits, SymBits>(table, b);
    }
  if (result0 == status::success) {
    while (detail::avx2_decode_can_step(a)) detail::avx2_decode_step<ProbBits, SymBits>(table, a);
    result0 = detail::avx2_decode_finish<ProbBits, SymBits>(table, a);
  }
  if (result1 == status::success) {
    while (detail::avx2_decode_can_step(b)) detail::avx2_decode_step<ProbBits, SymBits>(table, b);
    result1 = detail::avx2_decode_finish<ProbBits, SymBits>(table, b);
  }
}

// ---- encoder -----------------------------------------------------------------------------------

// Per-symbol encoder constants for the vector encoder, one u64 per symbol: freq | cum << 16 |
// m << 32 with m = floor((2^32 - 1) / freq). For s < 2^32, mulhi(s, m) = floor(s * m / 2^32)
// is floor(s / freq) or one less (m is short of 2^32 / freq by less than 1, so the product is
// short of s / freq by less than s / 2^32 < 1); the remainder says which, so the quotient is
// exact and the states equal the scalar encoder's.
struct rans_encode_tables {
  std::vector<std::uint64_t> entry;
  explicit rans_encode_tables(const std::vector<rans_encode_symbol>& symbols) : entry(symbols.size()) {
    for (std::size_t s = 0; s < symbols.size(); ++s) {
      const std::uint32_t f = symbols[s].freq;
      const std::uint64_t m = f ? 0xffffffffu / f : 0u;
      entry[s] = f | (std::uint64_t(symbols[s].cum) << 16) | (m << 32);
    }
  }
};

namespace detail {
// For each 8-bit mask of lanes shedding a word: the set lanes in ascending order, placed in the
// top slots of the 8, because the encoder writes words downward (slots 0..7-k are don't-care).
struct compress_permutations {
  alignas(32) std::uint32_t index[256][8];
  compress_permutations() {
    for (std::uint32_t m = 0; m < 256; ++m) {
      std::uint32_t k = 8u - std::uint32_t(__builtin_popcount(m));
      for (std::uint32_t j = 0; j < 8; ++j) index[m][j] = 0;
      for (std::uint32_t j = 0; j < 8; ++j)
        if ((m >> j) & 1u) index[m][k++] = j;
    }
  }
};
inline const compress_permutations& compress_table() {
  static const compress_permutations table;
  return table;
}
}  // namespace detail

namespace detail {
// Copies the table entries of `count` symbols (a multiple of 8) into `staged`, lane j of each
// group of 8 to slot {0,1,4,5,2,3,6,7}[j]: shuffle_ps of the two 4-entry halves then yields
// lanes 0..7 in order. Plain scalar loads and stores; kept out of line and out of the AVX2
// target because GCC otherwise "vectorises" it into inserts and extracts, twice as slow.
__attribute__((noinline)) inline void stage_entries(const std::uint64_t* entry, const std::uint16_t* sym,
                                                    std::uint32_t count, std::uint64_t* staged) {
  for (const std::uint16_t* end = sym + count; sym != end; sym += 8, staged += 8) {
    std::uint64_t a, b;
    std::memcpy(&a, sym, 8);
    std::memcpy(&b, sym + 4, 8);
    staged[0] = entry[a & 0xffffu];
    staged[1] = entry[(a >> 16) & 0xffffu];
    staged[4] = entry[(a >> 32) & 0xffffu];
    staged[5] = entry[a >> 48];
    staged[2] = entry[b & 0xffffu];
    staged[3] = entry[(b >> 16) & 0xffffu];
    staged[6] = entry[(b >> 32) & 0xffffu];
    staged[7] = entry[b >> 48];
  }
}
}  // namespace detail

// Same bytes as rans_encode_tile<32>, eight lanes per AVX2 vector, no gathers (they are slow on
// many CPUs): table entries are first copied, a block of steps at a time, into a staging buffer
// that stays in L1, in an order from which two shuffles give freq|cum and m in lane order.
// ProbBits is a template argument so that the shifts take immediates (one uop, not two).
template <std::uint32_t ProbBits>
__attribute__((target("avx2,popcnt"))) void rans_encode_tile_avx2(const rans_encode_tables& tables,
                                                                  const std::uint16_t* symbols, std::uint32_t n,
                                                                  std::vector<std::uint16_t>& words,
                                                                  std::vector<std::uint8_t>& out) {
  constexpr std::uint32_t prob_bits = ProbBits;
  constexpr std::uint32_t Lanes = 32;
  constexpr std::uint32_t block_steps = 32;  // 1024 symbols: 8 KB of staged entries
  std::uint32_t x[Lanes];
  for (std::uint32_t l = 0; l < Lanes; ++l) x[l] = rans_state_lower;
  words.resize(std::size_t(n) + 8);  // one word per symbol at most, plus an 8-word store's slack below
  std::uint16_t* const top = words.data() + words.size();
  std::uint16_t* wp = top;  // written downward: the words end up in the decoder's order
  const std::uint64_t* entry = tables.entry.data();
  // The partial last step first (the encoder runs backwards), one lane at a time.
  const std::uint32_t full = n / Lanes;
  for (std::uint32_t i = n; i-- > full * Lanes;) {
    const std::uint32_t l = i % Lanes;
    const std::uint64_t e = entry[symbols[i]];
    const std::uint32_t freq = std::uint32_t(e) & 0xffffu, cum = (std::uint32_t(e) >> 16) & 0xffffu;
    std::uint32_t s = x[l];
    const bool shed = s >= (freq << (32 - prob_bits));
    wp[-1] = static_cast<std::uint16_t>(s);
    wp -= shed;
    s = shed ? s >> rans_word_bits : s;
    x[l] = ((s / freq) << prob_bits) + s % freq + cum;
  }
  const auto& perms = detail::compress_table();
  const __m256i low16 = _mm256_set1_epi32(0xffff);
  const __m256i slots = _mm256_set1_epi32(int(1u << prob_bits));
  const __m256i sixteen = _mm256_set1_epi32(16);
  // Low two bytes of each 32-bit element, gathered into the low 8 bytes of each 128-bit half.
  const __m256i words_of = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                            0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
  __m256i xv[4];
  for (int g = 0; g < 4; ++g) xv[g] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x) + g);
  alignas(32) std::uint64_t staged[block_steps * Lanes];
  for (std::uint32_t k1 = full; k1 > 0;) {
    const std::uint32_t k0 = k1 > block_steps ? k1 - block_steps : 0;
    detail::stage_entries(entry, symbols + std::size_t(k0) * Lanes, (k1 - k0) * Lanes, staged);
    for (std::uint32_t k = k1; k-- > k0;) {
      const std::uint64_t* step = staged + std::size_t(k - k0) * Lanes;
      for (int g = 4; g-- > 0;) {
        const __m256 lo = _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(step + 8 * g)));
        const __m256 hi = _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(step + 8 * g + 4)));
        const __m256i fc = _mm256_castps_si256(_mm256_shuffle_ps(lo, hi, 0x88));
        const __m256i m = _mm256_castps_si256(_mm256_shuffle_ps(lo, hi, 0xdd));
        const __m256i freq = _mm256_and_si256(fc, low16), cum = _mm256_srli_epi32(fc, 16);
        __m256i s = xv[g];
        const __m256i shed = _mm256_cmpeq_epi32(_mm256_max_epu32(s, _mm256_slli_epi32(freq, 32 - prob_bits)), s);
        const unsigned mask = unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(shed)));
        // Emit the low words of the shedding lanes (8-word store, the valid ones on top).
        const __m256i shed_words = _mm256_permutevar8x32_epi32(
            s, _mm256_load_si256(reinterpret_cast<const __m256i*>(perms.index[mask])));
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(shed_words, words_of), 0x08);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(wp - 8), _mm256_castsi256_si128(packed));
        wp -= __builtin_popcount(mask);
        s = _mm256_srlv_epi32(s, _mm256_and_si256(shed, sixteen));  // shed lanes drop their low word
        // q = mulhi(s, m): floor(s / freq) or one less.
        const __m256i p_even = _mm256_mul_epu32(s, m);
        const __m256i p_odd = _mm256_mul_epu32(_mm256_srli_epi64(s, 32), _mm256_srli_epi64(m, 32));
        const __m256i q = _mm256_blend_epi32(_mm256_srli_epi64(p_even, 32), p_odd, 0xaa);
        const __m256i r = _mm256_sub_epi32(s, _mm256_mullo_epi32(q, freq));  // in [0, 2 freq)
        const __m256i exact = _mm256_cmpgt_epi32(freq, r);
        // x = (q << P) + r + cum; where q was one short, r holds an extra freq: add 2^P - freq.
        const __m256i fix = _mm256_andnot_si256(exact, _mm256_sub_epi32(slots, freq));
        xv[g] = _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(q, prob_bits), _mm256_add_epi32(r, cum)), fix);
      }
    }
    k1 = k0;
  }
  for (int g = 0; g < 4; ++g) _mm256_storeu_si256(reinterpret_cast<__m256i*>(x) + g, xv[g]);
  rans_append_tile(x, Lanes, wp, std::size_t(top - wp), out);
}

// Calls f(std::integral_constant<std::uint32_t, P>{}) for the run-time precision P = prob_bits
// (8..12); false, without calling it, for any other.
template <class F>
inline bool with_prob_bits(std::uint32_t prob_bits, F&& f) {
  switch (prob_bits) {
    case 8: f(std::integral_constant<std::uint32_t, 8>{}); return true;
    case 9: f(std::integral_constant<std::uint32_t, 9>{}); return true;
    case 10: f(std::integral_constant<std::uint32_t, 10>{}); return true;
    case 11: f(std::integral_constant<std::uint32_t, 11>{}); return true;
    case 12: f(std::integral_constant<std::uint32_t, 12>{}); return true;
    default: return false;
  }
}

// Run-time dispatch over precision (anything but 8..11: 12).
inline void rans_encode_tile_avx2(const rans_encode_tables& tables, std::uint32_t prob_bits,
                                  const std::uint16_t* symbols, std::uint32_t n, std::vector<std::uint16_t>& words,
                                  std::vector<std::uint8_t>& out) {
  const auto encode = [&](auto p) { rans_encode_tile_avx2<decltype(p)::value>(tables, symbols, n, words, out); };
  if (!with_prob_bits(prob_bits, encode)) encode(std::integral_constant<std::uint32_t, 12>{});
}

// Run-time dispatch over precision and symbol width.
[[nodiscard]] inline status rans_decode_tile_avx2(const rans_decode_entry* table, std::uint32_t prob_bits,
                                                  std::uint32_t sym_bits, const std::uint8_t* tile,
                                                  std::size_t tile_bytes, std::uint16_t* symbols, std::uint32_t n) {
  status s = status::corrupt_header;
  with_prob_bits(prob_bits, [&](auto p) {
    constexpr std::uint32_t P = decltype(p)::value;
    s = sym_bits == 9 ? rans_decode_tile_avx2<P, 9>(table, tile, tile_bytes, symbols, n)
                      : rans_decode_tile_avx2<P, 8>(table, tile, tile_bytes, symbols, n);
  });
  return s;
}

// Run-time dispatch of the pair decoder; an unsupported precision fails both tiles.
inline void rans_decode_tile_pair_avx2(const rans_decode_entry* table, std::uint32_t prob_bits, std::uint32_t sym_bits,
                                       const std::uint8_t* tile0, std::size_t bytes0, std::uint16_t* symbols0,
                                       std::uint32_t n0, status& result0, const std::uint8_t* tile1,
                                       std::size_t bytes1, std::uint16_t* symbols1, std::uint32_t n1,
                                       status& result1) {
  const bool known = with_prob_bits(prob_bits, [&](auto p) {
    constexpr std::uint32_t P = decltype(p)::value;
    if (sym_bits == 9)
      rans_decode_tile_pair_avx2<P, 9>(table, tile0, bytes0, symbols0, n0, result0, tile1, bytes1, symbols1, n1, result1);
    else
      rans_decode_tile_pair_avx2<P, 8>(table, tile0, bytes0, symbols0, n0, result0, tile1, bytes1, symbols1, n1, result1);
  });
  if (!known) result0 = result1 = status::corrupt_header;
}

}  // namespace tilecodec

#else
#define TILECODEC_HAS_AVX2_DECODER 0
#endif
