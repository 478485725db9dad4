// tilecodec/coder/rans.hpp: interleaved rANS, the core shared by the host and device decoders.
//
// Read me first
// - State: 32 bits per lane, kept in [L, 2^32) with L = 2^16. Renormalisation moves whole 16-bit
//   words, and one word per decoded symbol is always enough because prob_bits <= 16.
// - Interleaving: symbol i of a tile belongs to lane i % Lanes. The decoder walks i upward: each
//   lane decodes its symbol, and lanes whose state fell below L then take the next stream words
//   in lane order. On a GPU this is one warp step: ballot, popc, and coalesced reads.
// - Stream direction: the encoder walks i downward and pushes words; the tile stores them
//   reversed, so the decoder reads forward.
// - Tile bytes: Lanes little-endian u32 initial states, then the u16 words, then zero padding to
//   a multiple of 16 bytes. A correct stream is consumed exactly and leaves every lane at L,
//   which the decoders check to catch corrupt tiles.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../config.hpp"
#include "../status.hpp"
#include "../format/tile_layout.hpp"
#include "frequency_table.hpp"

namespace tilecodec {

inline constexpr std::uint32_t rans_state_lower = 1u << 16;  // L: states live in [L, 2^32)
inline constexpr std::uint32_t rans_word_bits = 16;          // renormalisation unit

// Decodes one symbol from state x without renormalising (entry layout: frequency_table.hpp).
TILECODEC_HD std::uint32_t rans_decode_symbol(std::uint32_t& x, const rans_decode_entry* table,
                                              std::uint32_t prob_bits, std::uint32_t sym_bits) {
  const std::uint32_t mask = (1u << prob_bits) - 1u;
  const rans_decode_entry e = table[x & mask];
  const std::uint32_t freq = (e >> sym_bits) & mask;
  const std::uint32_t bias = e >> (sym_bits + prob_bits);
  x = freq * (x >> prob_bits) + bias;
  return e & ((1u << sym_bits) - 1u);
}

TILECODEC_HD bool rans_needs_word(std::uint32_t x) { return x < rans_state_lower; }
TILECODEC_HD std::uint32_t rans_push_word(std::uint32_t x, std::uint32_t word) { return (x << rans_word_bits) | word; }

// Host-side little-endian loads (the format is little-endian; memcpy keeps them alignment-safe).
inline std::uint32_t load_le32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline std::uint16_t load_le16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// ---- host decode ----------------------------------------------------------------------------

// Decodes the n symbols of one tile. Never reads past tile[0, tile_bytes) nor writes past
// symbols[0, n). Returns corrupt_payload if the stream overruns, is not fully consumed, or does
// not end in the encoder's initial state. ProbBits is a template argument so the shifts and
// masks of the hot loop are immediates.
template <std::uint32_t Lanes, std::uint32_t ProbBits>
[[nodiscard]] status rans_decode_tile(const rans_decode_entry* table, std::uint32_t sym_bits, const std::uint8_t* tile,
                                      std::size_t tile_bytes, std::uint16_t* symbols, std::uint32_t n) {
  if (tile_bytes < Lanes * 4u) return status::corrupt_payload;
  std::uint32_t x[Lanes];
  for (std::uint32_t l = 0; l < Lanes; ++l) x[l] = load_le32(tile + 4u * l);
  for (std::uint32_t l = 0; l < Lanes; ++l)
    if (x[l] < rans_state_lower) return status::corrupt_payload;
  const std::uint8_t* words = tile + Lanes * 4u;
  const std::size_t word_count = (tile_bytes - Lanes * 4u) / 2u;
  std::size_t next = 0;
  std::uint32_t i = 0;
  // Fast path: a whole step reads at most Lanes words, so bounds are checked once per step, and
  // the renormalisation is branch-free (the next word is loaded whether or not it is taken).
  for (; i + Lanes <= n && next + Lanes <= word_count; i += Lanes) {
    for (std::uint32_t l = 0; l < Lanes; ++l) {
      std::uint32_t s = x[l];
      symbols[i + l] = static_cast<std::uint16_t>(rans_decode_symbol(s, table, ProbBits, sym_bits));
      const std::uint32_t word = load_le16(words + 2u * next);
      const bool take = rans_needs_word(s);
      x[l] = take ? rans_push_word(s, word) : s;
      next += take;
    }
  }
  // Tail: last partial step, or the stream's last words; every read is checked.
  for (; i < n; ++i) {
    const std::uint32_t l = i % Lanes;
    symbols[i] = static_cast<std::uint16_t>(rans_decode_symbol(x[l], table, ProbBits, sym_bits));
    if (rans_needs_word(x[l])) {
      if (next >= word_count) return status::corrupt_payload;
      x[l] = rans_push_word(x[l], load_le16(words + 2u * next++));
    }
  }
  // Padding is at most 14 bytes: a whole unread word beyond it means a lying tile index.
  if (word_count - next > (tile_alignment - 2u) / 2u) return status::corrupt_payload;
  for (std::uint32_t l = 0; l < Lanes; ++l)
    if (x[l] != rans_state_lower) return status::corrupt_payload;
  return status::success;
}

// Run-time dispatch over the supported precisions.
template <std::uint32_t Lanes>
[[nodiscard]] status rans_decode_tile(const rans_decode_entry* table, std::uint32_t prob_bits, std::uint32_t sym_bits,
                                      const std::uint8_t* tile, std::size_t tile_bytes, std::uint16_t* symbols,
                                      std::uint32_t n) {
  switch (prob_bits) {
    case 8: return rans_decode_tile<Lanes, 8>(table, sym_bits, tile, tile_bytes, symbols, n);
    case 9: return rans_decode_tile<Lanes, 9>(table, sym_bits, tile, tile_bytes, symbols, n);
    case 10: return rans_decode_tile<Lanes, 10>(table, sym_bits, tile, tile_bytes, symbols, n);
    case 11: return rans_decode_tile<Lanes, 11>(table, sym_bits, tile, tile_bytes, symbols, n);
    case 12: return rans_decode_tile<Lanes, 12>(table, sym_bits, tile, tile_bytes, symbols, n);
    default: return status::corrupt_header;
  }
}

// ---- host encode ----------------------------------------------------------------------------

// Per-symbol encoder constants. Division by the frequency is a multiply by a double-precision
// reciprocal: for s < 2^32 and f >= 2 the product's error is below 2^-21, and s/f is either an
// integer or at least 1/f >= 2^-12 below the next one, so adding 2^-20 before truncating gives
// floor(s / f) exactly (f = 1 has the exact reciprocal 1.0).
struct rans_encode_symbol {
  std::uint32_t x_max;  // states at or above this must shed a word before encoding
  std::uint32_t freq;
  std::uint32_t cum;
  double rcp;           // 1 / freq
};
inline constexpr double rans_rcp_bias = 1.0 / 1048576.0;  // 2^-20

inline std::vector<rans_encode_symbol> make_encode_symbols(const std::uint16_t* freq, std::uint32_t alphabet,
                                                           std::uint32_t prob_bits) {
  std::vector<rans_encode_symbol> out(alphabet);
  std::uint32_t cum = 0;
  for (std::uint32_t s = 0; s < alphabet; ++s) {
    const std::uint32_t f = freq[s];
    rans_encode_symbol& e = out[s];
    e.freq = f;
    e.cum = cum;
    cum += f;
    if (f == 0) continue;
    // ((L >> prob_bits) << 16) * f < 2^32 because f < 2^prob_bits.
    e.x_max = ((rans_state_lower >> prob_bits) << rans_word_bits) * f;
    e.rcp = 1.0 / double(f);
  }
  return out;
}

// One encoder step of state x for symbol e: when x is too large, its low word is shed, then x
// encodes the symbol. The word is always written to `slot` and the caller moves its write
// position only when this returns true, so the step has no branch.
inline bool rans_encode_put(std::uint32_t& x, const rans_encode_symbol& e, std::uint32_t prob_bits, std::uint16_t& slot) {
  std::uint32_t s = x;
  const bool shed = s >= e.x_max;
  slot = static_cast<std::uint16_t>(s);
  s = shed ? s >> rans_word_bits : s;
  const auto q = static_cast<std::uint32_t>(double(s) * e.rcp + rans_rcp_bias);
  x = (q << prob_bits) + (s - q * e.freq) + e.cum;
  return shed;
}

// Appends a finished tile: the final states (the decoder's initial ones), the words in the
// order the decoder reads them, zero padding to tile_alignment. Appends by insert, so an output
// with enough capacity is written once (no zero fill first).
inline void rans_append_tile(const std::uint32_t* x, std::uint32_t lanes, const std::uint16_t* words,
                             std::size_t word_count, std::vector<std::uint8_t>& out) {
  const auto* states = reinterpret_cast<const std::uint8_t*>(x);  // little-endian host
  const auto* stream = reinterpret_cast<const std::uint8_t*>(words);
  out.insert(out.end(), states, states + lanes * 4u);
  out.insert(out.end(), stream, stream + word_count * 2u);
  const std::size_t body = lanes * 4u + word_count * 2u;
  const std::size_t padded = (body + tile_alignment - 1) / tile_alignment * tile_alignment;
  out.resize(out.size() + (padded - body), 0);
}

// Encodes one tile's n symbols; appends the tile bytes (states, words, padding) to out.
// `words` is scratch reused between tiles. The encoder emits words in the reverse of the
// decoder's order, so it writes them downward from the end of the scratch. Renormalisation is
// branch-free: the low word is always written and the write pointer moves only when it is shed.
template <std::uint32_t Lanes>
void rans_encode_tile(const rans_encode_symbol* table, std::uint32_t prob_bits, const std::uint16_t* symbols,
                      std::uint32_t n, std::vector<std::uint16_t>& words, std::vector<std::uint8_t>& out) {
  std::uint32_t x[Lanes];
  for (std::uint32_t l = 0; l < Lanes; ++l) x[l] = rans_state_lower;
  words.resize(std::size_t(n) + 1);  // at most one word per symbol, plus the always-written slot
  std::uint16_t* const top = words.data() + words.size();
  std::uint16_t* wp = top;
  auto put = [&](std::uint32_t lane, std::uint32_t symbol) {
    wp -= rans_encode_put(x[lane], table[symbol], prob_bits, wp[-1]);
  };
  const std::uint32_t full = n / Lanes;
  for (std::uint32_t i = n; i-- > full * Lanes;) put(i % Lanes, symbols[i]);  // partial last step
  for (std::uint32_t k = full; k-- > 0;) {
    const std::uint16_t* step = symbols + std::size_t(k) * Lanes;
    for (std::uint32_t l = Lanes; l-- > 0;) put(l, step[l]);
  }
  rans_append_tile(x, Lanes, wp, std::size_t(top - wp), out);
}

// The same for a run-time lane count (1..128, a power of two; anything else: 64).
inline void rans_encode_tile(std::uint32_t lanes, const rans_encode_symbol* table, std::uint32_t prob_bits,
                             const std::uint16_t* symbols, std::uint32_t n, std::vector<std::uint16_t>& words,
                             std::vector<std::uint8_t>& out) {
  switch (lanes) {
    case 1: return rans_encode_tile<1>(table, prob_bits, symbols, n, words, out);
    case 2: return rans_encode_tile<2>(table, prob_bits, symbols, n, words, out);
    case 4: return rans_encode_tile<4>(table, prob_bits, symbols, n, words, out);
    case 8: return rans_encode_tile<8>(table, prob_bits, symbols, n, words, out);
    case 16: return rans_encode_tile<16>(table, prob_bits, symbols, n, words, out);
    case 32: return rans_encode_tile<32>(table, prob_bits, symbols, n, words, out);
    case 128: return rans_encode_tile<128>(table, prob_bits, symbols, n, words, out);
    default: return rans_encode_tile<64>(table, prob_bits, symbols, n, words, out);
  }
}

}  // namespace tilecodec
