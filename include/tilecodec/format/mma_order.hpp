// tilecodec/format/mma_order.hpp: symbol order 1 (symbol_order::mma), the order in which a warp
// feeds a tile to mma.sync.m16n8k16 as its A operand, so fused matrix kernels decode symbols
// straight into registers (docs/format.md, section 1).
//
// Read me first
// - It applies to tiles whose height is a multiple of 64 and whose width is a multiple of 16.
//   Every other tile of a tensor with this order (edge tiles, rank 0/1 tensors) is row-major.
// - A tile is cut into quads of 64 rows x 16 columns: quad q = rq * (w / 16) + kc covers rows
//   [64 rq, 64 rq + 64) and columns [16 kc, 16 kc + 16). A quad holds the A fragments of four
//   16 x 16 matrices (r4 = 0..3, rows 64 rq + 16 r4 + ...), one per mma row block.
// - Symbol i = 1024 q + 32 L + 8 r4 + e is element e (0..7) of warp lane L's fragment r4: the
//   eight halves of lane L's four A registers, low half first. With g = L / 4, t = L % 4:
//     row = 64 rq + 16 r4 + g + 8 * ((e >> 1) & 1),  col = 16 kc + 2 t + (e & 1) + 8 * (e >> 2)
//   so a lane's 32 symbols of a quad are consecutive: the fixed coder gives them to one lane
//   (coder/fixed.hpp) and a 7-bit raw plane keeps them in 4 consecutive groups of 7 bytes.
#pragma once

#include <cstdint>
#include <vector>

#include "../config.hpp"
#include "../policy/tile.hpp"

namespace tilecodec {

inline constexpr std::uint32_t mma_quad_rows = 64;
inline constexpr std::uint32_t mma_quad_cols = 16;
inline constexpr std::uint32_t mma_quad_symbols = mma_quad_rows * mma_quad_cols;  // 1024

// Does the mma order apply to a tile of h x w elements?
[[nodiscard]] TILECODEC_HD bool mma_order_applies(std::uint32_t h, std::uint32_t w) {
  return h != 0 && w != 0 && h % mma_quad_rows == 0 && w % mma_quad_cols == 0;
}

// Tile element (r, c) of symbol i in a tile of width w (the mma order applies).
TILECODEC_HD void mma_symbol_position(std::uint32_t i, std::uint32_t w, std::uint32_t& r, std::uint32_t& c) {
  const std::uint32_t q = i >> 10, lane = (i >> 5) & 31u, r4 = (i >> 3) & 3u, e = i & 7u;
  const std::uint32_t kcs = w / mma_quad_cols;
  const std::uint32_t rq = q / kcs, kc = q - rq * kcs;
  r = rq * 64u + r4 * 16u + (lane >> 2) + 8u * ((e >> 1) & 1u);
  c = kc * 16u + 2u * (lane & 3u) + (e & 1u) + 8u * (e >> 2);
}

// Symbol index of tile element (r, c) (the inverse of mma_symbol_position).
[[nodiscard]] TILECODEC_HD std::uint32_t mma_symbol_index(std::uint32_t r, std::uint32_t c, std::uint32_t w) {
  const std::uint32_t rq = r >> 6, rr = r & 63u, r4 = rr >> 4, g = rr & 7u, hi = (rr >> 3) & 1u;
  const std::uint32_t kc = c >> 4, cc = c & 15u, t = (cc & 7u) >> 1;
  const std::uint32_t e = 4u * (cc >> 3) + 2u * hi + (cc & 1u);
  const std::uint32_t q = rq * (w / mma_quad_cols) + kc;
  return (q << 10) | ((4u * g + t) << 5) | (r4 << 3) | e;
}

// Is tile (h x w) of a tensor with order `o` stored in the mma order?
[[nodiscard]] TILECODEC_HD bool tile_uses_mma_order(symbol_order o, std::uint32_t h, std::uint32_t w) {
  return o == symbol_order::mma && mma_order_applies(h, w);
}

// Symbol index of tile element (r, c), for either order.
[[nodiscard]] TILECODEC_HD std::uint32_t tile_symbol_index(symbol_order o, std::uint32_t h, std::uint32_t w,
                                                           std::uint32_t r, std::uint32_t c) {
  return tile_uses_mma_order(o, h, w) ? mma_symbol_index(r, c, w) : r * w + c;
}

// Tile element of symbol i, for either order.
TILECODEC_HD void tile_symbol_position(symbol_order o, std::uint32_t h, std::uint32_t w, std::uint32_t i,
                                       std::uint32_t& r, std::uint32_t& c) {
  if (tile_uses_mma_order(o, h, w)) {
    mma_symbol_position(i, w, r, c);
  } else {
    r = i / w;
    c = i - r * w;
  }
}

// Reorders a tile's per-element records (`size` bytes each) from row-major into symbol order
// (to_symbols) or back. `from` and `to` must not overlap. A row-major tile is copied.
inline void reorder_tile(symbol_order o, std::uint32_t h, std::uint32_t w, const void* from, void* to,
                         std::uint32_t size, bool to_symbols) {
  const auto* src = static_cast<const std::uint8_t*>(from);
  auto* dst = static_cast<std::uint8_t*>(to);
  const std::uint32_t n = h * w;
  const bool mma = tile_uses_mma_order(o, h, w);
  for (std::uint32_t i = 0; i < n; ++i) {
    std::uint32_t r = 0, c = 0;
    if (mma) mma_symbol_position(i, w, r, c); else r = i / w, c = i - (i / w) * w;
    const std::uint32_t e = r * w + c;  // row-major index of symbol i
    const std::uint8_t* s = src + std::uint64_t(to_symbols ? e : i) * size;
    std::uint8_t* d = dst + std::uint64_t(to_symbols ? i : e) * size;
    for (std::uint32_t b = 0; b < size; ++b) d[b] = s[b];
  }
}

// The same in place (a thread-local scratch holds a copy), for the encoder and the host decoder.
inline void reorder_tile_in_place(symbol_order o, std::uint32_t h, std::uint32_t w, void* data, std::uint32_t size,
                                  bool to_symbols) {
  if (!tile_uses_mma_order(o, h, w)) return;
  thread_local std::vector<std::uint8_t> scratch;
  const std::size_t bytes = std::size_t(h) * w * size;
  scratch.assign(static_cast<const std::uint8_t*>(data), static_cast<const std::uint8_t*>(data) + bytes);
  reorder_tile(o, h, w, scratch.data(), data, size, to_symbols);
}

}  // namespace tilecodec
