// tilecodec/coder/rans_lanes.hpp: interleaved rANS with one word stream per lane (plane coding 3),
// the host encoder and the reference decoder. Made for GPU decode: no lane waits for another.
//
// Read me first
// - States, table and interleaving are those of coder/rans.hpp: 32-bit states in [L, 2^32),
//   L = 2^16, 16-bit renormalisation words, symbol i of a tile belongs to lane i % Lanes.
// - Streams: coding 1 (rans.hpp) keeps one word stream shared by all lanes in lane order, so a
//   decoder must know how many words the lower lanes took before it can read its own (on a GPU:
//   a ballot, a prefix popcount and a dependent load per step). Here every lane has its own
//   stream, stored contiguously, so a lane's next word is known one step ahead and each lane
//   (each thread of a warp) decodes without looking at the others.
// - Tile bytes: Lanes little-endian u32 initial states, Lanes little-endian u16 word counts, the
//   words of lane 0, then lane 1, ..., each lane's in the order its decoder reads them, then zero
//   padding to a multiple of 16 bytes. A lane decodes ceil((n - l) / Lanes) symbols and takes at
//   most one word per symbol, so a u16 count holds any lane of a tile with at most 65535 * Lanes
//   symbols (validate_params enforces it).
// - A correct tile is exactly align16(6 * Lanes + 2 * sum(count)) bytes, every lane takes exactly
//   its count of words and ends at L; the decoders check all three.
// - Lanes: 32, 64 or 128 (one, two or four states per thread of a warp).
// - Stream direction: the encoder walks i downward and pushes each lane's words on that lane's
//   stack; the tile stores every stack reversed, so decoders read forward.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../config.hpp"
#include "../format/tile_layout.hpp"
#include "../status.hpp"
#include "frequency_table.hpp"
#include "rans.hpp"

namespace tilecodec {

// Lane counts of coding 3.
TILECODEC_HD constexpr bool rans_lanes_supported(std::uint32_t lanes) { return lanes == 32 || lanes == 64 || lanes == 128; }
// Largest word count of one lane (u16 field).
inline constexpr std::uint32_t rans_lanes_max_lane_words = 65535;
// Bytes before the words: states and counts.
TILECODEC_HD constexpr std::uint32_t rans_lanes_head_bytes(std::uint32_t lanes) { return 6u * lanes; }
// Exact byte count of a tile whose lanes hold `words` words in all.
TILECODEC_HD constexpr std::uint64_t rans_lanes_tile_bytes(std::uint32_t lanes, std::uint64_t words) {
  return (rans_lanes_head_bytes(lanes) + 2u * words + tile_alignment - 1) / tile_alignment * tile_alignment;
}

// ---- host decode ----------------------------------------------------------------------------

// Decodes the n symbols of one tile. Never reads past tile[0, tile_bytes) nor writes past
// symbols[0, n). Returns corrupt_payload if the counts do not match the tile's size, a lane's
// stream overruns or is left unconsumed, or a lane does not end in the encoder's initial state.
template <std::uint32_t Lanes, std::uint32_t ProbBits>
[[nodiscard]] status rans_lanes_decode_tile(const rans_decode_entry* table, std::uint32_t sym_bits, const std::uint8_t* tile,
                                            std::size_t tile_bytes, std::uint16_t* symbols, std::uint32_t n) {
  static_assert(rans_lanes_supported(Lanes), "coding 3 has 32, 64 or 128 lanes");
  if (tile_bytes < rans_lanes_head_bytes(Lanes)) return status::corrupt_payload;
  std::uint32_t x[Lanes];
  const std::uint8_t* next[Lanes];  // each lane's next word
  const std::uint8_t* end[Lanes];   // and the end of its stream
  const std::uint8_t* p = tile + rans_lanes_head_bytes(Lanes);
  std::uint64_t words = 0;
  for (std::uint32_t l = 0; l < Lanes; ++l) {
    x[l] = load_le32(tile + 4u * l);
    if (x[l] < rans_state_lower) return status::corrupt_payload;
    const std::uint32_t c = load_le16(tile + 4u * Lanes + 2u * l);
    words += c;
    next[l] = p;
    p += 2u * c;
    end[l] = p;
  }
  // Checked before any word is read: every stream lies inside the tile.
  if (rans_lanes_tile_bytes(Lanes, words) != tile_bytes) return status::corrupt_payload;
  std::uint32_t i = 0;
  for (; i + Lanes <= n; i += Lanes) {
    for (std::uint32_t l = 0; l < Lanes; ++l) {
      symbols[i + l] = static_cast<std::uint16_t>(rans_decode_symbol(x[l], table, ProbBits, sym_bits));
      if (rans_needs_word(x[l])) {
        if (next[l] == end[l]) return status::corrupt_payload;
        x[l] = rans_push_word(x[l], load_le16(next[l]));
        next[l] += 2;
      }
    }
  }
  for (std::uint32_t l = 0; i + l < n; ++l) {
    symbols[i + l] = static_cast<std::uint16_t>(rans_decode_symbol(x[l], table, ProbBits, sym_bits));
    if (rans_needs_word(x[l])) {
      if (next[l] == end[l]) return status::corrupt_payload;
      x[l] = rans_push_word(x[l], load_le16(next[l]));
      next[l] += 2;
    }
  }
  for (std::uint32_t l = 0; l < Lanes; ++l)
    if (next[l] != end[l] || x[l] != rans_state_lower) return status::corrupt_payload;
  return status::success;
}

// Run-time dispatch over lanes and precisions.
[[nodiscard]] inline status rans_lanes_decode_tile(std::uint32_t lanes, const rans_decode_entry* table,
                                                   std::uint32_t prob_bits, std::uint32_t sym_bits,
                                                   const std::uint8_t* tile, std::size_t tile_bytes,
                                                   std::uint16_t* symbols, std::uint32_t n) {
#define TILECODEC_RANS_LANES_CASE(L)                                                                      \
  case L:                                                                                                 \
    switch (prob_bits) {                                                                                  \
      case 8: return rans_lanes_decode_tile<L, 8>(table, sym_bits, tile, tile_bytes, symbols, n);         \
      case 9: return rans_lanes_decode_tile<L, 9>(table, sym_bits, tile, tile_bytes, symbols, n);         \
      case 10: return rans_lanes_decode_tile<L, 10>(table, sym_bits, tile, tile_bytes, symbols, n);       \
      case 11: return rans_lanes_decode_tile<L, 11>(table, sym_bits, tile, tile_bytes, symbols, n);       \
      case 12: return rans_lanes_decode_tile<L, 12>(table, sym_bits, tile, tile_bytes, symbols, n);       \
      default: return status::corrupt_header;                                                             \
    }
  switch (lanes) {
    TILECODEC_RANS_LANES_CASE(32)
    TILECODEC_RANS_LANES_CASE(64)
    TILECODEC_RANS_LANES_CASE(128)
    default: return status::corrupt_header;
  }
#undef TILECODEC_RANS_LANES_CASE
}

// ---- host encode ----------------------------------------------------------------------------

// Encodes one tile's n symbols (n <= 65535 * Lanes); appends the tile bytes (states, counts,
// words, padding) to out. `words` is scratch reused between tiles.
template <std::uint32_t Lanes>
void rans_lanes_encode_tile(const rans_encode_symbol* table, std::uint32_t prob_bits, const std::uint16_t* symbols,
                            std::uint32_t n, std::vector<std::uint16_t>& words, std::vector<std::uint8_t>& out) {
  static_assert(rans_lanes_supported(Lanes), "coding 3 has 32, 64 or 128 lanes");
  // Lane l's stack holds at most one word per symbol of the lane, plus the always-written slot.
  const std::uint32_t per_lane = (n + Lanes - 1) / Lanes + 1;
  words.resize(std::size_t(per_lane) * Lanes);
  std::uint32_t x[Lanes];
  std::uint16_t* wp[Lanes];
  for (std::uint32_t l = 0; l < Lanes; ++l) {
    x[l] = rans_state_lower;
    wp[l] = words.data() + std::size_t(l) * per_lane;
  }
  auto put = [&](std::uint32_t lane, std::uint32_t symbol) {
    wp[lane] += rans_encode_put(x[lane], table[symbol], prob_bits, *wp[lane]);
  };
  const std::uint32_t full = n / Lanes;
  for (std::uint32_t i = n; i-- > full * Lanes;) put(i % Lanes, symbols[i]);  // partial last step
  for (std::uint32_t k = full; k-- > 0;) {
    const std::uint16_t* step = symbols + std::size_t(k) * Lanes;
    for (std::uint32_t l = Lanes; l-- > 0;) put(l, step[l]);
  }
  std::uint64_t total = 0;
  for (std::uint32_t l = 0; l < Lanes; ++l) total += std::uint64_t(wp[l] - (words.data() + std::size_t(l) * per_lane));
  const std::size_t begin = out.size();
  out.resize(begin + rans_lanes_tile_bytes(Lanes, total), 0);
  std::uint8_t* p = out.data() + begin;
  std::memcpy(p, x, 4u * Lanes);  // little-endian host
  for (std::uint32_t l = 0; l < Lanes; ++l) {
    const auto c = static_cast<std::uint16_t>(wp[l] - (words.data() + std::size_t(l) * per_lane));
    std::memcpy(p + 4u * Lanes + 2u * l, &c, 2);
  }
  p += rans_lanes_head_bytes(Lanes);
  for (std::uint32_t l = 0; l < Lanes; ++l) {
    const std::uint16_t* base = words.data() + std::size_t(l) * per_lane;
    for (const std::uint16_t* w = wp[l]; w-- != base; p += 2) std::memcpy(p, w, 2);
  }
}

inline void rans_lanes_encode_tile(std::uint32_t lanes, const rans_encode_symbol* table, std::uint32_t prob_bits,
                                   const std::uint16_t* symbols, std::uint32_t n, std::vector<std::uint16_t>& words,
                                   std::vector<std::uint8_t>& out) {
  switch (lanes) {
    case 32: return rans_lanes_encode_tile<32>(table, prob_bits, symbols, n, words, out);
    case 64: return rans_lanes_encode_tile<64>(table, prob_bits, symbols, n, words, out);
    default: return rans_lanes_encode_tile<128>(table, prob_bits, symbols, n, words, out);
  }
}

}  // namespace tilecodec
