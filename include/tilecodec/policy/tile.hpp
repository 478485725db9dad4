// tilecodec/policy/tile.hpp: tile shape and the order of symbols inside a tile.
//
// A tensor is seen as a 2-D matrix (rows = product of the leading dimensions, cols = the last
// dimension) and cut into Rows x Cols tiles; tiles on the right and bottom edges are smaller.
// A tensor of rank 0 or 1 is seen as one row, cut into tiles of Rows*Cols elements, so a bias
// vector gets tiles as large as a matrix does.
//
// The order of symbols inside a tile is part of the format: the encoder writes symbols in the
// order their consumer reads them, so decoders never shuffle.
#pragma once

#include <cstdint>

namespace tilecodec {

// Values are stored in files: append only.
enum class symbol_order : std::uint8_t {
  row_major = 0,  // symbol i of a tile of width w sits at (i / w, i % w)
  mma = 1,        // mma.m16n8k16 A fragments, lane by lane (format/mma_order.hpp); row-major where it does not apply
};

template <int Rows, int Cols, symbol_order Order = symbol_order::row_major>
struct tile {
  static_assert(Rows >= 1 && Cols >= 1, "tile dimensions must be positive");
  static_assert(Rows <= 4096 && Cols <= 4096, "tile dimensions are limited to 4096");
  // 2^24 elements at most: a tile's symbol count fits comfortably in 32 bits and its coded
  // stream in one device block's reach.
  static_assert(static_cast<long long>(Rows) * Cols <= (1 << 24), "tile holds at most 2^24 elements");
  static constexpr std::uint32_t rows = Rows;
  static constexpr std::uint32_t cols = Cols;
  static constexpr symbol_order order = Order;
};

using tile128 = tile<128, 128>;
using tile256 = tile<256, 256>;  // the default: 64 Ki symbols keeps per-tile overhead near 0.2%
using tile512 = tile<512, 512>;
using tile256_mma = tile<256, 256, symbol_order::mma>;  // for the fused matrix kernels (fused/)

}  // namespace tilecodec
