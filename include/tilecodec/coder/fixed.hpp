// tilecodec/coder/fixed.hpp: the fixed-length coder with escapes (coder id 2, coding 2), made to
// be decoded inside matrix kernels at a few integer operations per weight. Shared by the host
// encoder, the host reference decoder and the fused kernels (fused/), so they agree bit for bit.
//
// Read me first
// - Per tensor: a code width k (1..symbol bits; header byte 13) and a window of 2^k symbols
//   [first, first + 2^k) (table section: u16 first, u16 count = 2^k). A symbol in the window is
//   coded as symbol - first; any other symbol is an escape: its code is 0 and the tile's escape
//   list holds the symbol. k equal to the symbol width (first = 0) codes everything and has no
//   escape list at all.
// - Lanes: 32. Symbol i of a tile belongs to lane (i / 32) % 32 and is that lane's code number
//   m = 32 * (i / 1024) + i % 32: each lane owns one run of 32 consecutive symbols in every
//   block of 1024. With the mma symbol order (format/mma_order.hpp) a run is exactly the lane's
//   four A fragments of one quad.
// - Bits: code m of a lane occupies bits [m k, m k + k) of the lane's bit string, least
//   significant bit first; bit b is bit b % 32 of the lane's word b / 32, and word w of lane l
//   is the tile's u32 number 32 w + l, so a warp reading word w of all lanes reads 128
//   consecutive bytes. A block is exactly k words per lane: any block decodes alone, with
//   shifts that are compile-time constants once k is.
// - Tile bytes (n = h * w elements, W = k * ceil(n / 1024) words per lane):
//     u32 words[32 W]                 the codes (tail codes past n are 0)
//     u16 row_start[h + 1]            only when k < symbol bits: row r's escapes are entries
//                                     [row_start[r], row_start[r + 1]); row_start[0] = 0
//     zero padding to 4 bytes
//     entries[E]                      E = row_start[h] <= 65535; entry = column << vb | value,
//                                     little-endian in 2, 4 or 8 bytes (the fewest holding
//                                     bits(w - 1) + vb bits); tile coordinates, sorted by row,
//                                     columns increasing. value: the symbol (vb = 4 for int4, 8
//                                     for int8 and fp32 exponents), or for 16-bit lossless the
//                                     element's whole 16-bit pattern (vb = 16: symbol = bits 6..14,
//                                     the rest equal to its raw-plane value), so a consumer corrects
//                                     an escape without reading the raw plane
//     zero padding to 16 bytes
//   Escapes are addressed by element (row, column) of the tile, whatever the symbol order, so a
//   consumer that owns rows (one lane per output row) finds its escapes directly.
// - A valid tile has exactly this size, a non-decreasing row_start, columns below w and strictly
//   increasing in each row, code 0 at every escaped position, and (16-bit lossless) escape values
//   whose raw bits match the raw plane.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../config.hpp"
#include "../format/mma_order.hpp"
#include "../format/planes.hpp"
#include "../policy/tile.hpp"
#include "../status.hpp"

namespace tilecodec {

inline constexpr std::uint32_t fixed_lanes = 32;
inline constexpr std::uint32_t fixed_block_symbols = 1024;  // 32 codes per lane
inline constexpr std::uint32_t fixed_max_escapes = 65535;   // per tile: row_start is u16

// Bits of one symbol of an alphabet of 16, 256 or 512 symbols.
[[nodiscard]] TILECODEC_HD constexpr std::uint32_t fixed_symbol_bits(std::uint32_t alphabet) {
  return alphabet <= 16 ? 4u : (alphabet <= 256 ? 8u : 9u);
}

[[nodiscard]] TILECODEC_HD constexpr std::uint32_t bits_to_hold(std::uint64_t v) {
  std::uint32_t n = 0;
  while (v != 0) ++n, v >>= 1;
  return n;
}

// Per-tensor parameters.
struct fixed_code {
  std::uint32_t bits = 8;       // k
  std::uint32_t first = 0;      // symbol of code 0
  std::uint32_t alphabet = 256;
  [[nodiscard]] TILECODEC_HD bool has_escapes() const { return bits < fixed_symbol_bits(alphabet); }
};

// Where the parts of a fixed-coded tile of h x w elements sit.
struct fixed_tile_shape {
  std::uint32_t words_per_lane = 0;   // W
  std::uint64_t code_bytes = 0;       // 128 W
  std::uint64_t escapes_offset = 0;   // after the code words and row_start, 4-byte aligned
  std::uint32_t entry_bytes = 0;      // 0 when the code has no escapes
  std::uint32_t value_bits = 8;       // vb of an entry
};

// Bits of an escape entry's value: the symbol, or the whole 16-bit pattern for 16-bit lossless.
[[nodiscard]] TILECODEC_HD constexpr std::uint32_t fixed_value_bits(std::uint32_t alphabet) {
  return alphabet == 512 ? 16u : fixed_symbol_bits(alphabet);
}

[[nodiscard]] TILECODEC_HD fixed_tile_shape fixed_shape(const fixed_code& code, std::uint32_t h, std::uint32_t w) {
  fixed_tile_shape s;
  const std::uint64_t n = std::uint64_t(h) * w;
  const std::uint64_t blocks = (n + fixed_block_symbols - 1) / fixed_block_symbols;
  s.words_per_lane = static_cast<std::uint32_t>(code.bits * blocks);
  s.code_bytes = 4ull * fixed_lanes * s.words_per_lane;
  s.value_bits = fixed_value_bits(code.alphabet);
  if (code.has_escapes()) {
    s.escapes_offset = (s.code_bytes + 2ull * (h + 1) + 3) / 4 * 4;
    const std::uint32_t bits = bits_to_hold(w > 0 ? w - 1 : 0) + s.value_bits;
    s.entry_bytes = bits <= 16 ? 2u : (bits <= 32 ? 4u : 8u);
  } else {
    s.escapes_offset = s.code_bytes;
  }
  return s;
}

// Byte size of a tile with E escapes (16-byte aligned, as every tile of the format).
[[nodiscard]] TILECODEC_HD std::uint64_t fixed_tile_bytes(const fixed_tile_shape& s, std::uint64_t escapes) {
  return (s.escapes_offset + escapes * s.entry_bytes + 15) / 16 * 16;
}

// Lane and code number of symbol i.
[[nodiscard]] TILECODEC_HD std::uint32_t fixed_lane_of(std::uint32_t i) { return (i >> 5) & 31u; }
[[nodiscard]] TILECODEC_HD std::uint32_t fixed_code_number(std::uint32_t i) { return ((i >> 10) << 5) | (i & 31u); }

namespace detail {
TILECODEC_HD std::uint32_t load_u32_le(const std::uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const std::uint32_t*>(p);
#else
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
#endif
}
TILECODEC_HD std::uint32_t load_u16_le(const std::uint8_t* p) { return std::uint32_t(p[0]) | (std::uint32_t(p[1]) << 8); }
}  // namespace detail

// Code of symbol i, read at random from a tile's code words (4-byte aligned). The caller has
// checked that the tile holds its code words (code_bytes).
[[nodiscard]] TILECODEC_HD std::uint32_t fixed_code_at(const std::uint8_t* tile, std::uint32_t k, std::uint32_t i) {
  const std::uint32_t lane = fixed_lane_of(i);
  const std::uint32_t bit = fixed_code_number(i) * k;  // < 2^24 * 9
  const std::uint32_t word = bit >> 5, sh = bit & 31u;
  std::uint32_t v = detail::load_u32_le(tile + 4u * (32u * word + lane)) >> sh;
  if (sh + k > 32u) v |= detail::load_u32_le(tile + 4u * (32u * (word + 1u) + lane)) << (32u - sh);
  return v & ((1u << k) - 1u);
}

// Escape entry number e of a tile: column and value (the symbol, or a 16-bit lossless pattern).
TILECODEC_HD void fixed_escape_at(const std::uint8_t* tile, const fixed_tile_shape& s, std::uint32_t e,
                                  std::uint32_t& col, std::uint32_t& value) {
  const std::uint8_t* p = tile + s.escapes_offset + std::uint64_t(e) * s.entry_bytes;
  std::uint64_t v = 0;
  for (std::uint32_t b = 0; b < s.entry_bytes; ++b) v |= std::uint64_t(p[b]) << (8 * b);
  col = static_cast<std::uint32_t>(v >> s.value_bits);
  value = static_cast<std::uint32_t>(v & ((1u << s.value_bits) - 1u));
}

// The symbol an escape value stands for.
[[nodiscard]] TILECODEC_HD std::uint32_t fixed_escape_symbol(std::uint32_t value, std::uint32_t alphabet) {
  return alphabet == 512 ? (value >> 6) & 0x1ffu : value;
}

// ---- host encode ----------------------------------------------------------------------------

namespace detail {
// The first symbol of the run of `width` symbols that holds the most of a histogram (sliding
// sum); `in` gets that count. Shared by the code choosers of codings 2 and 4.
inline std::uint32_t fixed_best_window(const std::uint64_t* counts, std::uint32_t alphabet, std::uint32_t width,
                                       std::uint64_t& in_best) {
  std::uint64_t in = 0;
  std::uint32_t best_first = 0;
  in_best = 0;
  for (std::uint32_t s = 0; s < alphabet; ++s) {
    in += counts[s];
    if (s >= width) in -= counts[s - width];
    if (s + 1 >= width && in > in_best) in_best = in, best_first = s + 1 - width;
  }
  return best_first;
}
}  // namespace detail

// The code of width k (1..symbol bits; 0 or wider: the symbol width, no escapes) whose window
// holds the most of a histogram; `in` gets that count.
[[nodiscard]] inline fixed_code fixed_code_of_width(const std::uint64_t* counts, std::uint32_t alphabet,
                                                    std::uint32_t k, std::uint64_t& in) {
  const std::uint32_t sb = fixed_symbol_bits(alphabet);
  if (k == 0 || k >= sb) {
    in = 0;
    for (std::uint32_t s = 0; s < alphabet; ++s) in += counts[s];
    return fixed_code{sb, 0, alphabet};
  }
  return fixed_code{k, detail::fixed_best_window(counts, alphabet, 1u << k, in), alphabet};
}

// Chooses k and the window for a tensor's histogram: the smallest payload, counting each escape
// at its entry size and each tile's row_start table. Never worse than k = symbol bits. A caller
// that wants no escapes (the fused kernels run faster without them) pins k at the symbol width
// (format_params::prob_bits). min_bits: the narrowest width considered.
[[nodiscard]] inline fixed_code choose_fixed_code(const std::uint64_t* counts, std::uint32_t alphabet,
                                                  std::uint64_t tile_count, std::uint32_t tile_rows,
                                                  std::uint32_t tile_cols, std::uint32_t min_bits = 1) {
  const std::uint32_t sb = fixed_symbol_bits(alphabet);
  std::uint64_t total = 0;
  for (std::uint32_t s = 0; s < alphabet; ++s) total += counts[s];
  fixed_code best{sb, 0, alphabet};
  double best_bits = double(total) * sb;
  for (std::uint32_t k = min_bits > 0 ? min_bits : 1; k < sb; ++k) {
    std::uint64_t in = 0;
    const fixed_code c = fixed_code_of_width(counts, alphabet, k, in);
    const fixed_tile_shape shape = fixed_shape(c, tile_rows, tile_cols);
    const double bits = double(total) * k + double(total - in) * 8.0 * shape.entry_bytes +
                        double(tile_count) * 16.0 * (tile_rows + 1);
    if (bits < best_bits) best_bits = bits, best = c;
  }
  return best;
}

// Encodes one tile: n = h * w symbols in the tile's symbol order `o`; appends the tile's bytes to
// out. raw: the tile's packed 7-bit raw plane (16-bit lossless, symbol order), else nullptr.
// Returns false (out unchanged) when the tile has more than 65535 escapes.
[[nodiscard]] inline bool fixed_encode_tile(const fixed_code& code, symbol_order o, std::uint32_t h, std::uint32_t w,
                                            const std::uint16_t* symbols, const std::uint8_t* raw,
                                            std::vector<std::uint8_t>& out) {
  struct escape { std::uint32_t row, col, symbol; };
  thread_local std::vector<std::uint32_t> words;
  thread_local std::vector<escape> escapes;
  const std::uint32_t n = h * w, k = code.bits;
  const fixed_tile_shape shape = fixed_shape(code, h, w);
  words.assign(std::size_t(32) * shape.words_per_lane, 0u);
  escapes.clear();
  for (std::uint32_t i = 0; i < n; ++i) {
    std::uint32_t c = symbols[i] - code.first;  // unsigned: below the window wraps high
    if (c >= (1u << k)) {
      std::uint32_t r, col;
      tile_symbol_position(o, h, w, i, r, col);
      const std::uint32_t v = code.alphabet == 512 && raw ? lossless16_join(symbols[i], raw7_unpack(raw + 7u * (i / 8), i % 8))
                                                          : symbols[i];
      escapes.push_back({r, col, v});
      c = 0;
    }
    const std::uint32_t lane = fixed_lane_of(i), bit = fixed_code_number(i) * k;
    const std::uint32_t word = bit >> 5, sh = bit & 31u;
    words[32u * word + lane] |= c << sh;
    if (sh + k > 32u) words[32u * (word + 1) + lane] |= c >> (32u - sh);
  }
  if (!code.has_escapes()) escapes.clear();  // cannot happen: the window is the alphabet
  if (escapes.size() > fixed_max_escapes) return false;
  std::sort(escapes.begin(), escapes.end(),
            [](const escape& a, const escape& b) { return a.row != b.row ? a.row < b.row : a.col < b.col; });
  const std::size_t begin = out.size();
  out.resize(begin + fixed_tile_bytes(shape, escapes.size()), 0);
  std::uint8_t* p = out.data() + begin;
  std::memcpy(p, words.data(), shape.code_bytes);  // little-endian host
  if (code.has_escapes()) {
    std::uint8_t* rs = p + shape.code_bytes;
    std::size_t e = 0;
    for (std::uint32_t r = 0; r <= h; ++r) {
      while (e < escapes.size() && escapes[e].row < r) ++e;
      rs[2 * r] = static_cast<std::uint8_t>(e);
      rs[2 * r + 1] = static_cast<std::uint8_t>(e >> 8);
    }
    for (std::size_t j = 0; j < escapes.size(); ++j) {
      const std::uint64_t v = (std::uint64_t(escapes[j].col) << shape.value_bits) | escapes[j].symbol;
      for (std::uint32_t b = 0; b < shape.entry_bytes; ++b)
        p[shape.escapes_offset + j * shape.entry_bytes + b] = static_cast<std::uint8_t>(v >> (8 * b));
    }
  }
  return true;
}

// ---- host decode ----------------------------------------------------------------------------

namespace detail {
// Every code of a tile's lanes (k bits each, words_per_lane words per lane) as symbols[i] = offset
// + code for symbol i < n; the caller has checked that the tile holds its code words. Lane by
// lane, code by code: one running bit buffer per lane. Shared by codings 2 and 4.
inline void fixed_unpack_codes(const std::uint8_t* tile, std::uint32_t k, std::uint32_t words_per_lane, std::uint32_t n,
                               std::uint32_t offset, std::uint16_t* symbols) {
  const std::uint32_t blocks = words_per_lane / (k ? k : 1);
  for (std::uint32_t lane = 0; lane < fixed_lanes; ++lane) {
    std::uint64_t buffer = 0;
    std::uint32_t have = 0, next_word = 0;
    for (std::uint32_t m = 0; m < 32u * blocks; ++m) {
      if (have < k) {
        buffer |= std::uint64_t(load_u32_le(tile + 4u * (32u * next_word + lane))) << have;
        ++next_word;
        have += 32;
      }
      const std::uint32_t c = static_cast<std::uint32_t>(buffer) & ((1u << k) - 1u);
      buffer >>= k;
      have -= k;
      const std::uint32_t i = ((m >> 5) << 10) | (lane << 5) | (m & 31u);
      if (i < n) symbols[i] = static_cast<std::uint16_t>(offset + c);
    }
  }
}
}  // namespace detail

// Decodes one tile into its n = h * w symbols, in symbol order. Never reads past
// tile[0, bytes) nor writes past symbols[0, n). Returns corrupt_payload for a tile that is not
// exactly as described in the read-me above. raw: the tile's packed raw plane (16-bit lossless,
// to check escape values against), or nullptr.
[[nodiscard]] inline status fixed_decode_tile(const fixed_code& code, symbol_order o, std::uint32_t h, std::uint32_t w,
                                              const std::uint8_t* tile, std::uint64_t bytes, std::uint16_t* symbols,
                                              const std::uint8_t* raw = nullptr) {
  const fixed_tile_shape shape = fixed_shape(code, h, w);
  const std::uint32_t n = h * w;
  if (bytes < fixed_tile_bytes(shape, 0)) return status::corrupt_payload;
  detail::fixed_unpack_codes(tile, code.bits, shape.words_per_lane, n, code.first, symbols);
  if (!code.has_escapes()) return bytes == fixed_tile_bytes(shape, 0) ? status::success : status::corrupt_payload;
  const std::uint8_t* rs = tile + shape.code_bytes;
  if (detail::load_u16_le(rs) != 0) return status::corrupt_payload;
  const std::uint32_t escapes = detail::load_u16_le(rs + 2ull * h);
  if (bytes != fixed_tile_bytes(shape, escapes)) return status::corrupt_payload;
  for (std::uint32_t r = 0; r < h; ++r) {
    const std::uint32_t e0 = detail::load_u16_le(rs + 2ull * r), e1 = detail::load_u16_le(rs + 2ull * r + 2);
    if (e1 < e0 || e1 > escapes) return status::corrupt_payload;
    std::uint32_t previous = 0;
    for (std::uint32_t e = e0; e < e1; ++e) {
      std::uint32_t col, value;
      fixed_escape_at(tile, shape, e, col, value);
      const std::uint32_t symbol = fixed_escape_symbol(value, code.alphabet);
      if (col >= w || (e > e0 && col <= previous) || symbol >= code.alphabet) return status::corrupt_payload;
      previous = col;
      const std::uint32_t i = tile_symbol_index(o, h, w, r, col);
      if (symbols[i] != code.first) return status::corrupt_payload;  // an escaped position holds code 0
      if (code.alphabet == 512 && raw && lossless16_raw(value) != raw7_unpack(raw + 7u * (i / 8), i % 8))
        return status::corrupt_payload;  // the value's raw bits are the raw plane's
      symbols[i] = static_cast<std::uint16_t>(symbol);
    }
  }
  return status::success;
}

}  // namespace tilecodec
