// tilecodec/device/tensor_ref.hpp: trivially copyable views of an encoded tensor whose bytes live
// in device memory, for kernels (cuCollections' *_ref idea). Plain C++: a host-only engine can
// build them without nvcc.
//
//   // host: parse once, copy the bytes to the GPU, hand kernels the ref
//   cudaMemcpyAsync(d_bytes, enc.bytes().data(), enc.size(), cudaMemcpyHostToDevice, stream);
//   tilecodec::device::tensor_ref ref = tilecodec::device::make_tensor_ref(enc.view(), d_bytes);
//   // device: find tile t and check its index entries
//   tilecodec::device::tile_ref tile;
//   if (ref.tile(t, tile) != tilecodec::status::success) ...
//
// What is trusted and what is not: the header fields copied into tensor_ref come from the host
// parse() and are trusted. Everything read through `data` on the device (tile index, frequency
// table, payload, raw plane, scales) is not: tile() checks the two index entries it reads, the
// table loader checks the frequencies, and the decoders bound every read to the tile's bytes.
#pragma once

#include <cstdint>
#include <cstring>

#include "../config.hpp"
#include "../dtype.hpp"
#include "../coder/fixed.hpp"
#include "../coder/fixed_marked.hpp"
#include "../coder/frequency_table.hpp"
#include "../format/encoded_tensor.hpp"
#include "../format/planes.hpp"
#include "../format/tile_layout.hpp"
#include "../policy/codec.hpp"
#include "../status.hpp"

namespace tilecodec {
namespace device {

// One tile of an encoded tensor, found and checked by tensor_ref::tile().
struct tile_ref {
  const std::uint8_t* bytes = nullptr;  // the tile's coded or stored symbols, 16-byte aligned
  std::uint32_t byte_count = 0;         // multiple of 16
  tile_box box{};                       // where the tile sits in the tensor's 2-D view
  std::uint64_t element_start = 0;      // elements in all tiles before it
  std::uint64_t raw_start = 0;          // its first raw-plane byte (lossless), from the plane's start
  [[nodiscard]] TILECODEC_HD std::uint32_t size() const { return box.size(); }
};

namespace detail {
// Little-endian 64-bit load from an 8-byte aligned address.
TILECODEC_HD std::uint64_t load_u64(const std::uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const std::uint64_t*>(p);
#else
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
#endif
}
}  // namespace detail

struct tensor_ref {
  const std::uint8_t* data = nullptr;  // the encoded bytes (device memory, 16-byte aligned)
  std::uint64_t total_bytes = 0;
  tile_layout layout{};
  std::uint64_t tile_count = 0;
  std::uint64_t table_offset = 0;
  std::uint64_t table_bytes = 0;
  std::uint64_t scales_offset = 0;
  std::uint64_t index_offset = 0;
  std::uint64_t payload_offset = 0;
  std::uint64_t payload_bytes = 0;
  std::uint64_t raw_offset = 0;
  dtype source = dtype::f32;
  quant::kind quant = quant::kind::lossless;
  plane_coding coding = plane_coding::stored;
  symbol_order order = symbol_order::row_major;
  std::uint32_t prob_bits = 0;  // rANS: probability bits; fixed: code bits k
  std::uint32_t lanes = 1;      // rANS only
  std::uint32_t alphabet = 256;  // 16 (int4), 512 (16-bit lossless) or 256
  std::uint32_t group_size = 0;  // int4_group only
  std::uint32_t fixed_first = 0;  // fixed only: symbol of code 0 (from the host-parsed table section)

  // Code width and window of a fixed-coded tensor.
  [[nodiscard]] TILECODEC_HD fixed_code fixed() const { return fixed_code{prob_bits, fixed_first, alphabet}; }

  [[nodiscard]] TILECODEC_HD const std::uint8_t* table() const { return data + table_offset; }
  [[nodiscard]] TILECODEC_HD const std::uint8_t* scales() const { return data + scales_offset; }
  [[nodiscard]] TILECODEC_HD const std::uint8_t* raw_plane() const { return data + raw_offset; }
  [[nodiscard]] TILECODEC_HD std::uint64_t elements() const { return layout.elements(); }

  // Finds tile t and checks the two index entries it reads: ordered, 16-byte aligned, inside the
  // payload, large enough for the tile's states (rANS), code words and row or window table
  // (fixed, fixed_marked) or symbols (stored). A rANS tile with more words than its symbols can
  // consume, and a fixed tile too small for its codes, are reported here as corrupt_payload, the
  // status the host decoder gives them after decoding.
  [[nodiscard]] TILECODEC_HD status tile(std::uint64_t t, tile_ref& out) const {
    if (t >= tile_count) return status::invalid_argument;
    const std::uint8_t* index = data + index_offset;
    const std::uint64_t a = detail::load_u64(index + 8 * t);
    const std::uint64_t b = detail::load_u64(index + 8 * (t + 1));
    if (b < a || b > payload_bytes || ((a | b) & (tile_alignment - 1)) != 0) return status::corrupt_header;
    const tile_box box = layout.box(t);
    const std::uint64_t n = box.size();
    const std::uint64_t bytes = b - a;
    if (coding == plane_coding::rans || coding == plane_coding::rans_lanes) {
      // States (and, with lane streams, the u16 word counts), then at most one word per symbol.
      const std::uint64_t head = (coding == plane_coding::rans ? 4ull : 6ull) * lanes;
      if (bytes < head) return status::corrupt_header;
      if (bytes >= head + 2 * n + tile_alignment) return status::corrupt_payload;
    } else if (coding == plane_coding::fixed) {
      // Code words and row_start; the escape entries are checked against the tile's own count.
      if (bytes < fixed_tile_bytes(fixed_shape(fixed(), box.height, box.width), 0) || bytes > 0xffffffffull)
        return status::corrupt_payload;
    } else if (coding == plane_coding::fixed_marked) {
      // Code words and window_start; the values are checked against the tile's own count.
      if (bytes < fixed_marked_tile_bytes(fixed_marked_shape_of(fixed(), n), 0) || bytes > 0xffffffffull)
        return status::corrupt_payload;
    } else {
      const std::uint64_t need = stored_tile_bytes(alphabet, n);
      if (bytes < need) return status::corrupt_header;
    }
    out.bytes = data + payload_offset + a;
    // Stored tiles never read past their symbols; keep the count small enough for 32 bits.
    out.byte_count = static_cast<std::uint32_t>(
        has_rans_table(coding) || is_fixed_coding(coding)
            ? bytes
            : (stored_tile_bytes(alphabet, n) + tile_alignment - 1) / tile_alignment * tile_alignment);
    out.box = box;
    out.element_start = layout.element_start(t);
    out.raw_start = quant != quant::kind::lossless ? 0 : lossless_raw_start(source, alphabet, out.element_start, layout.groups8_before(t));
    return status::success;
  }

  // tile(t, out) for a decode of the tile into `dst`, rows `ld` elements apart: a null dst or an
  // ld below the tile's width is invalid_argument (what every tile decoder checks first).
  [[nodiscard]] TILECODEC_HD status output_tile(std::uint64_t t, const void* dst, std::uint64_t ld, tile_ref& out) const {
    const status s = tile(t, out);
    if (s != status::success) return s;
    return dst == nullptr || ld < out.box.width ? status::invalid_argument : status::success;
  }
};

// Builds the device view of a parsed tensor whose bytes were copied, unchanged, to device_bytes.
[[nodiscard]] inline tensor_ref make_tensor_ref(const encoded_tensor_view& view, const void* device_bytes) {
  const tensor_header& h = view.header();
  tensor_ref r;
  r.data = static_cast<const std::uint8_t*>(device_bytes);
  r.total_bytes = h.total_bytes;
  r.layout = view.layout();
  r.tile_count = h.tile_count;
  r.table_offset = h.table_offset;
  r.table_bytes = h.table_bytes;
  r.scales_offset = h.scales_offset;
  r.index_offset = h.index_offset;
  r.payload_offset = h.payload_offset;
  r.payload_bytes = h.payload_bytes;
  r.raw_offset = h.raw_offset;
  r.source = h.source;
  r.quant = h.params.quant;
  r.coding = h.coding;
  r.order = h.params.order;
  r.prob_bits = h.params.prob_bits;
  r.lanes = h.params.lanes;
  r.alphabet = h.alphabet;
  r.group_size = h.params.group_size;
  if (is_fixed_coding(h.coding)) r.fixed_first = ::tilecodec::detail::get_u16(view.table());
  return r;
}

// Does this build's device decoder handle the tensor's coding and symbol order? (every coding in
// row-major tile order; the mma order belongs to the fused kernels, fused/dequantize.cuh.)
[[nodiscard]] TILECODEC_HD bool device_decodable(const tensor_ref& t) {
  return t.order == symbol_order::row_major &&
         (t.coding == plane_coding::stored || t.coding == plane_coding::rans || t.coding == plane_coding::rans_lanes ||
          (t.coding == plane_coding::fixed && t.prob_bits >= 1 && t.prob_bits <= fixed_symbol_bits(t.alphabet) &&
           t.fixed_first + (1u << t.prob_bits) <= t.alphabet) ||
          (t.coding == plane_coding::fixed_marked && t.prob_bits >= 1 && t.prob_bits <= fixed_symbol_bits(t.alphabet) &&
           t.fixed_first + fixed_marked_count(t.fixed()) <= t.alphabet &&
           (fixed_marked_escapes(t.fixed()) || t.fixed_first == 0)));
}

// Can a tensor of this kind decode to `out`? Lossless: only its source dtype, bit for bit.
// Quantized: f32, f16, bf16 (dequantized) or i8 (the integer codes).
[[nodiscard]] TILECODEC_HD bool can_decode_to(const tensor_ref& t, dtype out) {
  if (t.quant == quant::kind::lossless) return out == t.source;
  return out == dtype::f32 || out == dtype::f16 || out == dtype::bf16 || out == dtype::i8;
}

}  // namespace device
}  // namespace tilecodec
