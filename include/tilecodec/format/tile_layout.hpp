// tilecodec/format/tile_layout.hpp: where each tile of a tensor sits, computed in O(1) on host
// and device from the 2-D view and the tile shape.
//
// Tiles are numbered row-major over the tile grid. Every tile in grid row r has the same height,
// so the elements that come before tile (r, c) in tile order are r*tile_rows*cols + h(r)*c*tile_cols:
// a tile's raw-plane bytes and scales are found without an index.
#pragma once

#include <cstdint>

#include "../config.hpp"

namespace tilecodec {

struct tile_box {
  std::uint64_t row0;  // first row of the tile in the 2-D view
  std::uint64_t col0;  // first column
  std::uint32_t height;
  std::uint32_t width;
  [[nodiscard]] TILECODEC_HD std::uint32_t size() const { return height * width; }
};

struct tile_layout {
  std::uint64_t rows = 0;  // 2-D view
  std::uint64_t cols = 0;
  std::uint32_t tile_rows = 1;  // effective tile shape (rank <= 1 tensors: 1 x (R*C))
  std::uint32_t tile_cols = 1;
  std::uint64_t grid_rows = 0;
  std::uint64_t grid_cols = 0;

  [[nodiscard]] TILECODEC_HD std::uint64_t elements() const { return rows * cols; }
  [[nodiscard]] TILECODEC_HD std::uint64_t tile_count() const { return grid_rows * grid_cols; }
  [[nodiscard]] TILECODEC_HD std::uint32_t height_of_grid_row(std::uint64_t gr) const {
    const std::uint64_t left = rows - gr * tile_rows;
    return static_cast<std::uint32_t>(left < tile_rows ? left : tile_rows);
  }
  [[nodiscard]] TILECODEC_HD std::uint32_t width_of_grid_col(std::uint64_t gc) const {
    const std::uint64_t left = cols - gc * tile_cols;
    return static_cast<std::uint32_t>(left < tile_cols ? left : tile_cols);
  }
  [[nodiscard]] TILECODEC_HD tile_box box(std::uint64_t t) const {
    const std::uint64_t gr = t / grid_cols;
    const std::uint64_t gc = t - gr * grid_cols;
    return tile_box{gr * tile_rows, gc * tile_cols, height_of_grid_row(gr), width_of_grid_col(gc)};
  }
  // Groups of 8 elements (a tile's last group may be partial) in all tiles before tile t,
  // t <= tile_count: where a tile's packed 7-bit raw plane starts, in units of 7 bytes.
  [[nodiscard]] TILECODEC_HD std::uint64_t groups8_before(std::uint64_t t) const {
    if (grid_cols == 0) return 0;
    const std::uint64_t gr = t / grid_cols;
    const std::uint64_t gc = t - gr * grid_cols;
    const std::uint32_t w_last = width_of_grid_col(grid_cols - 1);
    const std::uint64_t full_row = (grid_cols - 1) * groups8(tile_rows, tile_cols) + groups8(tile_rows, w_last);
    if (gr == grid_rows) {  // t == tile_count: every row, the last one possibly short
      const std::uint32_t h = height_of_grid_row(grid_rows - 1);
      return (grid_rows - 1) * full_row + (grid_cols - 1) * groups8(h, tile_cols) + groups8(h, w_last);
    }
    return gr * full_row + gc * groups8(height_of_grid_row(gr), tile_cols);
  }
  [[nodiscard]] TILECODEC_HD static std::uint64_t groups8(std::uint64_t h, std::uint64_t w) { return (h * w + 7) / 8; }

  // Elements in all tiles before tile t (tile order).
  [[nodiscard]] TILECODEC_HD std::uint64_t element_start(std::uint64_t t) const {
    const std::uint64_t gr = t / grid_cols;
    const std::uint64_t gc = t - gr * grid_cols;
    return gr * tile_rows * cols + std::uint64_t(height_of_grid_row(gr)) * gc * tile_cols;
  }
};

// Largest element count a tensor may have: keeps every byte count of the format inside 64 bits
// with room for the raw plane (3 bytes per fp32 element) and sums of section sizes.
inline constexpr std::uint64_t max_tensor_elements = std::uint64_t(1) << 56;
inline constexpr int max_rank = 8;
// Every tile's bytes start 16-byte aligned in the payload, so device code can use vector loads.
inline constexpr std::uint32_t tile_alignment = 16;

// Builds the layout for a tensor of the given rank and dimensions. Returns false when the
// element count overflows or exceeds max_tensor_elements. Zero-sized tensors have no tiles.
[[nodiscard]] inline bool make_tile_layout(int rank, const std::uint64_t* dims, std::uint32_t tile_rows,
                                           std::uint32_t tile_cols, tile_layout& out) {
  if (rank < 0 || rank > max_rank || tile_rows == 0 || tile_cols == 0) return false;
  std::uint64_t leading = 1;
  for (int i = 0; i + 1 < rank; ++i) {
    if (dims[i] != 0 && leading > max_tensor_elements / dims[i]) return false;
    leading *= dims[i];
  }
  const std::uint64_t last = rank == 0 ? 1 : dims[rank - 1];
  if (last != 0 && leading > max_tensor_elements / last) return false;
  tile_layout l;
  if (rank <= 1) {
    l.rows = 1;
    l.cols = last;
    l.tile_rows = 1;
    l.tile_cols = tile_rows * tile_cols;
  } else {
    l.rows = leading;
    l.cols = last;
    l.tile_rows = tile_rows;
    l.tile_cols = tile_cols;
  }
  if (l.rows == 0 || l.cols == 0) {
    l.grid_rows = l.grid_cols = 0;
  } else {
    l.grid_rows = (l.rows + l.tile_rows - 1) / l.tile_rows;
    l.grid_cols = (l.cols + l.tile_cols - 1) / l.tile_cols;
  }
  out = l;
  return true;
}

}  // namespace tilecodec
