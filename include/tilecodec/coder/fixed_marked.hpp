// tilecodec/coder/fixed_marked.hpp: fixed-length codes whose code 0 marks an escape (coder id 4,
// coding 4), made for device-wide decode: a decoder finds every escape from the codes themselves,
// with no search. Shared by the host encoder, the host reference decoder and the device decoders.
//
// Read me first
// - Lanes, code numbers and bits are those of coder/fixed.hpp (coding 2): symbol i of a tile is
//   code number 32 (i / 1024) + i % 32 of lane (i / 32) % 32, k bits each, and any block of 1024
//   symbols decodes alone.
// - Per tensor: a code width k (1..symbol bits; header byte 13) and a window of symbols
//   (table section: u16 first, u16 count). With k below the symbol width, count = 2^k - 1: code
//   c >= 1 stands for symbol first + c - 1 and code 0 marks an escape. With k equal to the symbol
//   width, count = 2^k, first = 0 and code c is symbol c (no escapes: the layout of coding 2).
// - Windows: 512 consecutive symbols of the tile in symbol order (window v: [512 v, 512 v + 512)).
// - Tile bytes (n = h * w elements, W = k * ceil(n / 1024) words per lane, V = ceil(n / 512)):
//     u32 words[32 W]              the codes (tail codes past n are 0)
//     u16 window_start[V + 1]      only when k < symbol bits: window v's escapes are values
//                                  [window_start[v], window_start[v + 1]); window_start[0] = 0
//     zero padding to 4 bytes
//     value[E]                     E = window_start[V] <= 65535: the escaped symbols in symbol
//                                  order, u8 (alphabets of 16 and 256) or u16 little-endian (512)
//     zero padding to 16 bytes
//   So a thread that decodes symbols [i0, i0 + 16) of window v and sees code 0 at j of them takes
//   values window_start[v] + (code-0 positions of the window before i0) onwards.
// - A valid tile has exactly this size, window_start[0] = 0, in every window exactly
//   window_start[v + 1] - window_start[v] code-0 positions among its symbols below n (so
//   window_start never decreases), and values below the alphabet.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "../config.hpp"
#include "../status.hpp"
#include "fixed.hpp"

namespace tilecodec {

inline constexpr std::uint32_t fixed_marked_window = 512;       // symbols per escape window
inline constexpr std::uint32_t fixed_marked_max_escapes = 65535;  // per tile: window_start is u16

// True when code 0 marks escapes (k below the symbol width); else every code is its symbol.
[[nodiscard]] TILECODEC_HD constexpr bool fixed_marked_escapes(const fixed_code& code) {
  return code.bits < fixed_symbol_bits(code.alphabet);
}

// Symbols the code window holds: 2^k - 1 with escapes, 2^k without.
[[nodiscard]] TILECODEC_HD constexpr std::uint32_t fixed_marked_count(const fixed_code& code) {
  return fixed_marked_escapes(code) ? (1u << code.bits) - 1u : (1u << code.bits);
}

// Where the parts of a marked tile of n elements sit.
struct fixed_marked_shape {
  std::uint32_t words_per_lane = 0;  // W
  std::uint32_t windows = 0;         // V
  std::uint64_t code_bytes = 0;      // 128 W
  std::uint64_t values_offset = 0;   // after the code words and window_start, 4-byte aligned
  std::uint32_t value_bytes = 0;     // 1 or 2; 0 when the code has no escapes
};

[[nodiscard]] TILECODEC_HD fixed_marked_shape fixed_marked_shape_of(const fixed_code& code, std::uint64_t n) {
  fixed_marked_shape s;
  const std::uint64_t blocks = (n + fixed_block_symbols - 1) / fixed_block_symbols;
  s.words_per_lane = static_cast<std::uint32_t>(code.bits * blocks);
  s.windows = static_cast<std::uint32_t>((n + fixed_marked_window - 1) / fixed_marked_window);
  s.code_bytes = 4ull * fixed_lanes * s.words_per_lane;
  if (fixed_marked_escapes(code)) {
    s.values_offset = (s.code_bytes + 2ull * (s.windows + 1) + 3) / 4 * 4;
    s.value_bytes = code.alphabet == 512 ? 2u : 1u;
  } else {
    s.values_offset = s.code_bytes;
  }
  return s;
}

// Byte size of a tile with E escapes (16-byte aligned, as every tile of the format).
[[nodiscard]] TILECODEC_HD std::uint64_t fixed_marked_tile_bytes(const fixed_marked_shape& s, std::uint64_t escapes) {
  return (s.values_offset + escapes * s.value_bytes + 15) / 16 * 16;
}

// Symbol of a code that is not an escape mark.
[[nodiscard]] TILECODEC_HD constexpr std::uint32_t fixed_marked_symbol(const fixed_code& code, std::uint32_t c) {
  return fixed_marked_escapes(code) ? code.first + c - 1u : c;
}

// ---- host encode ----------------------------------------------------------------------------

// The code of width k (clamped to 1..symbol bits) whose window holds the most symbols of a
// tensor's histogram; at the symbol width, every symbol (no escapes).
[[nodiscard]] inline fixed_code fixed_marked_code_of_width(const std::uint64_t* counts, std::uint32_t alphabet,
                                                           std::uint32_t k) {
  const std::uint32_t sb = fixed_symbol_bits(alphabet);
  if (k == 0 || k >= sb) return fixed_code{sb, 0, alphabet};
  std::uint64_t in = 0;
  return fixed_code{k, detail::fixed_best_window(counts, alphabet, (1u << k) - 1u, in), alphabet};  // code 0: the mark
}

// Decode work of one escape, in symbols: the lane that holds it takes its value and patches it in
// (about 15 instructions against about half an instruction per symbol; H100, PERFORMANCE.md 3.8:
// 5.3 symbols' time for int8, 6.0 for 16-bit lossless). Tuning only: the chooser's price.
inline constexpr double fixed_marked_escape_work = 6.0;

// Chooses k and the window for a tensor's histogram, for a coder whose point is decode speed: the
// smallest product of the tensor's bits (codes, escape values, each tile's window_start table,
// and raw_bits per symbol stored beside the plane: 7 for 16-bit lossless, 24 for fp32) and its
// decode work (one per symbol plus fixed_marked_escape_work per escape). Size alone would take
// 6-bit codes for int8 Llama-like weights (9.4% escaped, 48 a window: 1.5x the decode time of
// 7-bit codes for 4% fewer bits). Never worse than k = symbol bits, which has no escapes. A
// caller that wants the smallest size pins k (format_params::prob_bits).
[[nodiscard]] inline fixed_code fixed_marked_choose_code(const std::uint64_t* counts, std::uint32_t alphabet,
                                                         std::uint64_t tile_count, std::uint64_t tile_elements,
                                                         double raw_bits = 0.0) {
  const std::uint32_t sb = fixed_symbol_bits(alphabet);
  std::uint64_t total = 0;
  for (std::uint32_t s = 0; s < alphabet; ++s) total += counts[s];
  const double symbols = double(total);
  fixed_code best{sb, 0, alphabet};
  double best_cost = symbols * (sb + raw_bits) * symbols;
  const double value_bits = alphabet == 512 ? 16.0 : 8.0;
  const double windows = double((tile_elements + fixed_marked_window - 1) / fixed_marked_window);
  const double table_bits = double(tile_count) * 16.0 * (windows + 1.0);
  for (std::uint32_t k = 1; k < sb; ++k) {
    const fixed_code c = fixed_marked_code_of_width(counts, alphabet, k);
    std::uint64_t in = 0;
    for (std::uint32_t s = c.first; s < c.first + fixed_marked_count(c); ++s) in += counts[s];
    const double escapes = double(total - in);
    const double bits = symbols * (k + raw_bits) + escapes * value_bits + table_bits;
    const double cost = bits * (symbols + fixed_marked_escape_work * escapes);
    if (cost < best_cost) best_cost = cost, best = c;
  }
  return best;
}

// Encodes one tile: n symbols in the tile's symbol order (any: escapes follow symbol order, not
// positions); appends the tile's bytes to out. Returns false (out unchanged) when the tile has
// more than 65535 escapes.
[[nodiscard]] inline bool fixed_marked_encode_tile(const fixed_code& code, std::uint32_t n, const std::uint16_t* symbols,
                                                   std::vector<std::uint8_t>& out) {
  thread_local std::vector<std::uint32_t> words;
  thread_local std::vector<std::uint16_t> values, window_start;
  const std::uint32_t k = code.bits, count = fixed_marked_count(code);
  const bool marked = fixed_marked_escapes(code);
  const fixed_marked_shape shape = fixed_marked_shape_of(code, n);
  words.assign(std::size_t(32) * shape.words_per_lane, 0u);
  values.clear();
  window_start.assign(std::size_t(shape.windows) + 1, 0);
  for (std::uint32_t i = 0; i < n; ++i) {
    if (i % fixed_marked_window == 0) window_start[i / fixed_marked_window] = static_cast<std::uint16_t>(values.size());
    std::uint32_t c = symbols[i];
    if (marked) {
      const std::uint32_t offset = symbols[i] - code.first;  // unsigned: below the window wraps high
      if (offset < count) {
        c = offset + 1u;
      } else {
        if (values.size() == fixed_marked_max_escapes) return false;
        values.push_back(symbols[i]);
        c = 0;
      }
    }
    const std::uint32_t lane = fixed_lane_of(i), bit = fixed_code_number(i) * k;
    const std::uint32_t word = bit >> 5, sh = bit & 31u;
    words[32u * word + lane] |= c << sh;
    if (sh + k > 32u) words[32u * (word + 1) + lane] |= c >> (32u - sh);
  }
  window_start[shape.windows] = static_cast<std::uint16_t>(values.size());
  const std::size_t begin = out.size();
  out.resize(begin + fixed_marked_tile_bytes(shape, values.size()), 0);
  std::uint8_t* p = out.data() + begin;
  std::memcpy(p, words.data(), shape.code_bytes);  // little-endian host
  if (marked) {
    std::uint8_t* ws = p + shape.code_bytes;
    for (std::uint32_t v = 0; v <= shape.windows; ++v) {
      ws[2 * v] = static_cast<std::uint8_t>(window_start[v]);
      ws[2 * v + 1] = static_cast<std::uint8_t>(window_start[v] >> 8);
    }
    std::uint8_t* vp = p + shape.values_offset;
    for (std::size_t e = 0; e < values.size(); ++e) {
      if (shape.value_bytes == 2) {
        vp[2 * e] = static_cast<std::uint8_t>(values[e]);
        vp[2 * e + 1] = static_cast<std::uint8_t>(values[e] >> 8);
      } else {
        vp[e] = static_cast<std::uint8_t>(values[e]);
      }
    }
  }
  return true;
}

// ---- host decode ----------------------------------------------------------------------------

// Decodes one tile into its n symbols, in symbol order. Never reads past tile[0, bytes) nor
// writes past symbols[0, n). Returns corrupt_payload for a tile that is not exactly as the
// read-me above describes.
[[nodiscard]] inline status fixed_marked_decode_tile(const fixed_code& code, std::uint32_t n, const std::uint8_t* tile,
                                                     std::uint64_t bytes, std::uint16_t* symbols) {
  const fixed_marked_shape shape = fixed_marked_shape_of(code, n);
  if (code.bits == 0 || bytes < fixed_marked_tile_bytes(shape, 0)) return status::corrupt_payload;  // codes and window_start
  detail::fixed_unpack_codes(tile, code.bits, shape.words_per_lane, n, 0, symbols);  // codes first, symbols after
  if (!fixed_marked_escapes(code))  // every code is its symbol, and 2^k is the alphabet
    return bytes == fixed_marked_tile_bytes(shape, 0) ? status::success : status::corrupt_payload;
  const std::uint8_t* ws = tile + shape.code_bytes;
  const std::uint32_t escapes = detail::load_u16_le(ws + 2ull * shape.windows);
  if (detail::load_u16_le(ws) != 0 || bytes != fixed_marked_tile_bytes(shape, escapes)) return status::corrupt_payload;
  const std::uint8_t* values = tile + shape.values_offset;
  std::uint32_t e = 0;  // = window_start[v] at the start of window v, checked window by window
  for (std::uint32_t v = 0; v < shape.windows; ++v) {
    const std::uint32_t end = detail::load_u16_le(ws + 2ull * (v + 1));
    if (end > escapes) return status::corrupt_payload;  // so values[e] below stays in the tile
    const std::uint32_t i1 = v + 1 == shape.windows ? n : (v + 1) * fixed_marked_window;
    for (std::uint32_t i = v * fixed_marked_window; i < i1; ++i) {
      if (symbols[i] != 0) {
        symbols[i] = static_cast<std::uint16_t>(fixed_marked_symbol(code, symbols[i]));
        continue;
      }
      if (e >= end) return status::corrupt_payload;  // more marks than the window's escapes
      const std::uint32_t value = shape.value_bytes == 2 ? detail::load_u16_le(values + 2ull * e) : values[e];
      if (value >= code.alphabet) return status::corrupt_payload;
      symbols[i] = static_cast<std::uint16_t>(value);
      ++e;
    }
    if (e != end) return status::corrupt_payload;  // fewer marks than the window's escapes
  }
  return status::success;
}

}  // namespace tilecodec
