// tilecodec/fused/matrix_ref.cuh: the trivially copyable view of an encoded weight matrix in device
// memory that the fused kernels read (cuCollections' *_ref idea), and the codecs made for them.
//
//   // host, once per weight matrix (at load time): parse, copy the bytes, build the ref
//   tilecodec::encoded_tensor enc = tilecodec::host::encode<tilecodec::fused::int8_codec>(w, dtype::bf16, {N, K});
//   cudaMemcpy(d_bytes, enc.bytes().data(), enc.size(), cudaMemcpyHostToDevice);
//   tilecodec::fused::matrix_ref W;
//   if (tilecodec::fused::make_matrix_ref(enc.view(), d_bytes, W) != tilecodec::status::success) ...
//
// A matrix is any encoded tensor of rank >= 2 seen as N = rows (outputs) x K = cols (inputs),
// PyTorch's Linear weight layout. What the fused kernels serve:
//   - quantization: int8_rowwise, int4_group (G = 32, 64, 128), lossless bf16 / fp16;
//   - tile rows a multiple of 64, tile columns a multiple of 16 (256 x 256 is the default);
//   - coder fixed (fast path with the mma order; any other order or width decodes through the
//     per-element path), raw / stored planes (per-element path), rANS (lanes 32, mma order,
//     tile rows 64, and every tile in the mma order: N % 64 == 0, K % 16 == 0).
// What is trusted: the header fields copied here come from the host parse(). Everything read
// through `data` on the device (tile index, payload, row tables, escapes, raw plane, scales,
// frequency table) is checked before it is used as an offset.
#pragma once

#include <cstdint>
#include <string>

#include "../coder/fixed.hpp"
#include "../coder/frequency_table.hpp"
#include "../dtype.hpp"
#include "../format/encoded_tensor.hpp"
#include "../format/tile_layout.hpp"
#include "../policy/codec.hpp"
#include "../status.hpp"

namespace tilecodec {
namespace fused {

// The fused kernels' codecs (fused::int8_codec, ...) are in policy/codec.hpp: the mode-1 presets
// name them too.

struct matrix_ref {
  const std::uint8_t* data = nullptr;  // the encoded tensor's bytes, device memory, 16-byte aligned
  tile_layout layout{};                // rows = N, cols = K
  std::uint64_t tile_count = 0;
  std::uint64_t index_offset = 0, payload_offset = 0, payload_bytes = 0;
  std::uint64_t scales_offset = 0, raw_offset = 0, table_offset = 0;
  dtype source = dtype::bf16;
  quant::kind quant = quant::kind::int8_rowwise;
  plane_coding coding = plane_coding::stored;
  symbol_order order = symbol_order::row_major;
  std::uint32_t alphabet = 256;
  std::uint32_t group_size = 0;   // int4
  std::uint32_t code_bits = 0;    // fixed: k
  std::uint32_t first = 0;        // fixed: symbol of code 0
  std::uint32_t prob_bits = 0;    // rANS
  std::uint32_t table_first = 0;  // rANS: frequency table range
  std::uint32_t table_count = 0;

  [[nodiscard]] TILECODEC_HD std::uint64_t rows() const { return layout.rows; }
  [[nodiscard]] TILECODEC_HD std::uint64_t cols() const { return layout.cols; }
  [[nodiscard]] TILECODEC_HD fixed_code fixed() const { return fixed_code{code_bits, first, alphabet}; }
};

// Builds the device view of a parsed tensor whose bytes were copied, unchanged, to device_bytes.
// Returns unsupported (with the reason in `why`) for tensors the fused kernels do not serve.
[[nodiscard]] inline status make_matrix_ref(const encoded_tensor_view& view, const void* device_bytes, matrix_ref& out,
                                            std::string* why = nullptr) {
  auto fail = [&](status s, const char* msg) {
    if (why) *why = msg;
    return s;
  };
  const tensor_header& h = view.header();
  const tile_layout& l = view.layout();
  if (device_bytes == nullptr) return fail(status::invalid_argument, "null device bytes");
  if (reinterpret_cast<std::uintptr_t>(device_bytes) % 16 != 0) return fail(status::invalid_argument, "device bytes not 16-byte aligned");
  if (h.rank < 2) return fail(status::unsupported, "a matrix needs rank 2 or more");
  if (l.elements() == 0) return fail(status::unsupported, "empty matrix");
  if (l.tile_rows % 64 != 0 || l.tile_cols % 16 != 0)
    return fail(status::unsupported, "tile rows must be a multiple of 64 and tile columns of 16");
  if (h.coding != plane_coding::stored && h.coding != plane_coding::rans && h.coding != plane_coding::fixed)
    return fail(status::unsupported, "unknown plane coding");
  if (h.params.quant == quant::kind::lossless && h.source == dtype::f32)
    return fail(status::unsupported, "lossless fp32 weights (bf16 and fp16 only)");
  matrix_ref r;
  r.data = static_cast<const std::uint8_t*>(device_bytes);
  r.layout = l;
  r.tile_count = h.tile_count;
  r.index_offset = h.index_offset;
  r.payload_offset = h.payload_offset;
  r.payload_bytes = h.payload_bytes;
  r.scales_offset = h.scales_offset;
  r.raw_offset = h.raw_offset;
  r.table_offset = h.table_offset;
  r.source = h.source;
  r.quant = h.params.quant;
  r.coding = h.coding;
  r.order = h.params.order;
  r.alphabet = h.alphabet;
  r.group_size = h.params.group_size;
  if (h.coding == plane_coding::fixed) {
    r.code_bits = h.params.prob_bits;
    r.first = ::tilecodec::detail::get_u16(view.table());
  }
  if (h.coding == plane_coding::rans) {
    if (h.params.lanes != 32) return fail(status::unsupported, "rANS: 32 lanes only");
    if (h.params.order != symbol_order::mma || l.tile_rows != 64)
      return fail(status::unsupported, "rANS: mma order and 64-row tiles only");
    if (l.rows % 64 != 0 || l.cols % 16 != 0) return fail(status::unsupported, "rANS: N % 64 and K % 16 must be 0");
    r.prob_bits = h.params.prob_bits;
    r.table_first = ::tilecodec::detail::get_u16(view.table());
    r.table_count = ::tilecodec::detail::get_u16(view.table() + 2);
  }
  out = r;
  return status::success;
}

}  // namespace fused
}  // namespace tilecodec
