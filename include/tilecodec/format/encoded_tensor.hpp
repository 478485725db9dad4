// tilecodec/format/encoded_tensor.hpp: the bytes of one encoded tensor (spec: docs/format.md),
// and the validating parser that turns them into a view the decoders trust.
//
// Layout: a 256-byte header, then five sections, each starting 16-byte aligned:
//   scales   int8_rowwise: rows x f32; int4_group: rows x ceil(cols/G) x f16
//   raw      lossless only: the raw plane (sign + low mantissa bits), in tile order
//   table    u16 first symbol, u16 count, count x u16 frequencies (absent when stored uncoded)
//   index    (tile_count + 1) x u64 tile offsets into the payload; any tile decodes alone
//   payload  the tiles' coded (or stored) symbol streams, each 16-byte aligned
// The sections whose sizes do not depend on the coding come first, so the encoder writes the
// raw plane straight into its final place.
// parse() checks every field and every size before anything uses it as an offset or a count
// (zstd's discipline): a view that parsed never sends a decoder outside its buffer.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../dtype.hpp"
#include "../policy/codec.hpp"
#include "../coder/fixed.hpp"
#include "../coder/fixed_marked.hpp"
#include "../coder/frequency_table.hpp"
#include "../status.hpp"
#include "planes.hpp"
#include "tile_layout.hpp"

namespace tilecodec {

inline constexpr char encoded_tensor_magic[4] = {'T', 'C', 'E', 'T'};
inline constexpr std::uint16_t encoded_tensor_version = 1;
inline constexpr std::uint32_t encoded_header_bytes = 256;
inline constexpr std::uint32_t section_alignment = 16;

// How the coded plane is stored. Values are stored in files: append only.
enum class plane_coding : std::uint8_t {
  stored = 0,  // symbols as bytes (alphabet 256) or low-nibble-first pairs (alphabet 16)
  rans = 1,    // interleaved rANS with the tensor's frequency table
  fixed = 2,   // fixed-length codes with escapes (coder/fixed.hpp)
  rans_lanes = 3,  // interleaved rANS, one word stream per lane (coder/rans_lanes.hpp)
  fixed_marked = 4,  // fixed-length codes, code 0 marks an escape (coder/fixed_marked.hpp)
};

// Codings whose tensor has a rANS frequency table (section 3.1 of docs/format.md).
TILECODEC_HD constexpr bool has_rans_table(plane_coding c) { return c == plane_coding::rans || c == plane_coding::rans_lanes; }
// Codings of fixed-length codes: a code width k in header byte 13 and a 4-byte table (u16 first, u16 count).
TILECODEC_HD constexpr bool is_fixed_coding(plane_coding c) { return c == plane_coding::fixed || c == plane_coding::fixed_marked; }

struct tensor_header {
  dtype source = dtype::f32;  // dtype of the values that were encoded
  format_params params{};
  plane_coding coding = plane_coding::stored;
  std::uint32_t alphabet = 256;
  int rank = 0;
  std::uint64_t dims[max_rank] = {};
  std::uint64_t tile_count = 0;
  std::uint64_t table_offset = 0, table_bytes = 0;
  std::uint64_t scales_offset = 0, scales_bytes = 0;
  std::uint64_t index_offset = 0, index_bytes = 0;
  std::uint64_t payload_offset = 0, payload_bytes = 0;
  std::uint64_t raw_offset = 0, raw_bytes = 0;
  std::uint64_t total_bytes = 0;
};

namespace detail {
inline void put_u16(std::uint8_t* p, std::uint16_t v) { std::memcpy(p, &v, 2); }
inline void put_u32(std::uint8_t* p, std::uint32_t v) { std::memcpy(p, &v, 4); }
inline void put_u64(std::uint8_t* p, std::uint64_t v) { std::memcpy(p, &v, 8); }
inline std::uint16_t get_u16(const std::uint8_t* p) { std::uint16_t v; std::memcpy(&v, p, 2); return v; }
inline std::uint32_t get_u32(const std::uint8_t* p) { std::uint32_t v; std::memcpy(&v, p, 4); return v; }
inline std::uint64_t get_u64(const std::uint8_t* p) { std::uint64_t v; std::memcpy(&v, p, 8); return v; }
inline std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }
}  // namespace detail

// Alphabet of the coded plane: 16 symbols for int4, 256 for 8-bit symbols, and for 16-bit
// lossless 512 (the 9-bit symbol and 7-bit raw plane) or, with fixed-length codes, 256 (the byte
// split, format/planes.hpp).
[[nodiscard]] inline std::uint32_t alphabet_size(quant::kind q, dtype source, coder::kind c) {
  if (q == quant::kind::int4_group) return 16u;
  if (q == quant::kind::lossless && source != dtype::f32) return c == coder::kind::fixed ? 256u : 512u;
  return 256u;
}

// Raw-plane bytes: 16-bit lossless packs 8 elements' 7 bits into 7 bytes per group (each
// tile's last group padded) or, split in bytes, stores one byte per element; fp32 lossless
// stores 3 bytes per element; quantized, none.
[[nodiscard]] inline std::uint64_t raw_plane_bytes(const tensor_header& h, const tile_layout& l) {
  if (h.params.quant != quant::kind::lossless) return 0;
  return lossless_raw_start(h.source, h.alphabet, l.elements(), l.groups8_before(l.tile_count()));
}
[[nodiscard]] inline std::uint64_t scale_count(const tensor_header& h, const tile_layout& l) {
  if (l.elements() == 0) return 0;
  switch (h.params.quant) {
    case quant::kind::int8_rowwise: return l.rows;
    case quant::kind::int4_group: return l.rows * ((l.cols + h.params.group_size - 1) / h.params.group_size);
    default: return 0;
  }
}
[[nodiscard]] inline std::uint64_t scale_bytes_per_entry(const tensor_header& h) {
  return h.params.quant == quant::kind::int4_group ? 2u : 4u;
}

// Checks that a format_params value names a policy this version can encode and decode.
[[nodiscard]] inline status validate_params(const format_params& p, std::string* why = nullptr) {
  auto fail = [&](const char* msg) {
    if (why) *why = msg;
    return status::unsupported;
  };
  if (p.quant != quant::kind::lossless && p.quant != quant::kind::int8_rowwise && p.quant != quant::kind::int4_group)
    return fail("unknown quantization policy id");
  if (p.coder != coder::kind::raw && p.coder != coder::kind::rans && p.coder != coder::kind::fixed &&
      p.coder != coder::kind::rans_lanes && p.coder != coder::kind::fixed_marked)
    return fail("unknown coder policy id");
  if (p.order != symbol_order::row_major && p.order != symbol_order::mma) return fail("unknown symbol order");
  if (p.tile_rows < 1 || p.tile_cols < 1 || p.tile_rows > 4096 || p.tile_cols > 4096 ||
      std::uint64_t(p.tile_rows) * p.tile_cols > (1u << 24))
    return fail("tile shape out of range (1..4096 per side, 2^24 elements)");
  if (p.quant == quant::kind::int4_group) {
    if (p.group_size != 32 && p.group_size != 64 && p.group_size != 128) return fail("int4 group size must be 32, 64 or 128");
  } else if (p.group_size != 0) {
    return fail("group size is only for int4_group");
  }
  if (p.coder == coder::kind::rans) {
    if (p.prob_bits < 8 || p.prob_bits > 12) return fail("rANS probability bits must be 8..12");
    if (p.lanes < 1 || p.lanes > 128 || (p.lanes & (p.lanes - 1)) != 0) return fail("rANS lanes must be a power of two in 1..128");
  }
  if (p.coder == coder::kind::rans_lanes) {
    if (p.prob_bits < 8 || p.prob_bits > 12) return fail("rANS probability bits must be 8..12");
    if (p.lanes != 32 && p.lanes != 64 && p.lanes != 128) return fail("rans_lanes: 32, 64 or 128 lanes");
    // A lane's word count is a u16 and a lane takes at most one word per symbol.
    if (std::uint64_t(p.tile_rows) * p.tile_cols > 65535ull * p.lanes)
      return fail("rans_lanes: a tile may hold at most 65535 symbols per lane");
  }
  if (p.coder == coder::kind::fixed && p.lanes != fixed_lanes) return fail("fixed coder: 32 lanes");
  if (p.coder == coder::kind::fixed_marked && p.lanes != fixed_lanes) return fail("fixed_marked coder: 32 lanes");
  if (p.coder == coder::kind::fixed_marked && p.prob_bits > 9) return fail("fixed_marked code bits: 0 (chosen) or 1..9");
  return status::success;
}

// A validated, non-owning view of an encoded tensor's bytes.
class encoded_tensor_view {
 public:
  encoded_tensor_view() = default;

  // Validates the header, every section and the tile index. On failure returns the status and,
  // if `why` is given, the name of the offending field.
  [[nodiscard]] static status parse(const std::uint8_t* data, std::uint64_t size, encoded_tensor_view& out,
                                    std::string* why = nullptr);

  [[nodiscard]] const tensor_header& header() const { return header_; }
  [[nodiscard]] const tile_layout& layout() const { return layout_; }
  [[nodiscard]] const std::uint8_t* data() const { return data_; }
  [[nodiscard]] std::uint64_t size() const { return header_.total_bytes; }
  [[nodiscard]] std::uint64_t elements() const { return layout_.elements(); }
  [[nodiscard]] const std::uint8_t* table() const { return data_ + header_.table_offset; }
  [[nodiscard]] const std::uint8_t* scales() const { return data_ + header_.scales_offset; }
  [[nodiscard]] const std::uint8_t* raw_plane() const { return data_ + header_.raw_offset; }
  [[nodiscard]] std::uint64_t tile_offset(std::uint64_t t) const {
    return detail::get_u64(data_ + header_.index_offset + 8 * t);
  }
  [[nodiscard]] const std::uint8_t* tile_data(std::uint64_t t) const {
    return data_ + header_.payload_offset + tile_offset(t);
  }
  [[nodiscard]] std::uint64_t tile_bytes(std::uint64_t t) const { return tile_offset(t + 1) - tile_offset(t); }
  // Raw-plane bytes of tile t (16-bit lossless: packed 7-bit groups or a byte each; fp32: 3 bytes each).
  [[nodiscard]] const std::uint8_t* raw_tile(std::uint64_t t) const {
    return raw_plane() + lossless_raw_start(header_.source, header_.alphabet, layout_.element_start(t),
                                            layout_.groups8_before(t));
  }
  // Frequency of a symbol (0 for symbols outside the stored range, or when nothing is coded).
  [[nodiscard]] std::uint16_t frequency(std::uint32_t symbol) const {
    if (header_.table_bytes == 0) return 0;
    const std::uint32_t first = detail::get_u16(table()), count = detail::get_u16(table() + 2);
    if (symbol < first || symbol - first >= count) return 0;
    return detail::get_u16(table() + 4 + 2 * (symbol - first));
  }

 private:
  const std::uint8_t* data_ = nullptr;
  tensor_header header_{};
  tile_layout layout_{};
};

// Owning encoded tensor: the bytes plus a view over them.
class encoded_tensor {
 public:
  encoded_tensor() = default;
  explicit encoded_tensor(std::vector<std::uint8_t> bytes) : bytes_(std::move(bytes)) {
    std::string why;
    const status s = encoded_tensor_view::parse(bytes_.data(), bytes_.size(), view_, &why);
    if (s != status::success) throw error(s, "encoded tensor: " + why);
  }
  encoded_tensor(const encoded_tensor& o) : encoded_tensor(o.bytes_) {}
  encoded_tensor& operator=(const encoded_tensor& o) {
    if (this != &o) *this = encoded_tensor(o.bytes_);
    return *this;
  }
  encoded_tensor(encoded_tensor&&) noexcept = default;  // vector move keeps the data pointer
  encoded_tensor& operator=(encoded_tensor&&) noexcept = default;

  [[nodiscard]] const encoded_tensor_view& view() const { return view_; }
  [[nodiscard]] const std::vector<std::uint8_t>& bytes() const { return bytes_; }
  [[nodiscard]] std::uint64_t size() const { return bytes_.size(); }
  [[nodiscard]] const tensor_header& header() const { return view_.header(); }

 private:
  std::vector<std::uint8_t> bytes_;
  encoded_tensor_view view_;
};

// ---- header serialisation ----------------------------------------------------------------------

inline void write_header(const tensor_header& h, std::uint8_t* dst /* encoded_header_bytes */) {
  std::uint8_t out[encoded_header_bytes] = {};
  std::memcpy(out, encoded_tensor_magic, 4);
  detail::put_u16(out + 4, encoded_tensor_version);
  detail::put_u16(out + 6, static_cast<std::uint16_t>(encoded_header_bytes));
  out[8] = static_cast<std::uint8_t>(h.source);
  out[9] = static_cast<std::uint8_t>(h.params.quant);
  out[10] = static_cast<std::uint8_t>(h.params.coder);
  out[11] = static_cast<std::uint8_t>(h.params.order);
  out[12] = static_cast<std::uint8_t>(h.coding);
  out[13] = static_cast<std::uint8_t>(h.params.prob_bits);
  out[14] = static_cast<std::uint8_t>(h.params.lanes);
  out[15] = static_cast<std::uint8_t>(h.rank);
  detail::put_u32(out + 16, h.params.tile_rows);
  detail::put_u32(out + 20, h.params.tile_cols);
  detail::put_u32(out + 24, h.params.group_size);
  detail::put_u32(out + 28, h.alphabet);
  for (int i = 0; i < max_rank; ++i) detail::put_u64(out + 32 + 8 * i, h.dims[i]);
  const std::uint64_t fields[] = {h.tile_count,    h.table_offset,   h.table_bytes, h.scales_offset,
                                  h.scales_bytes,  h.index_offset,   h.index_bytes, h.payload_offset,
                                  h.payload_bytes, h.raw_offset,     h.raw_bytes,   h.total_bytes};
  for (int i = 0; i < 12; ++i) detail::put_u64(out + 96 + 8 * i, fields[i]);
  std::memcpy(dst, out, encoded_header_bytes);
}

inline status encoded_tensor_view::parse(const std::uint8_t* data, std::uint64_t size, encoded_tensor_view& out,
                                         std::string* why) {
  auto fail = [&](status s, const std::string& field) {
    if (why) *why = field;
    return s;
  };
  if (data == nullptr) return fail(status::invalid_argument, "null buffer");
  if (size < encoded_header_bytes) return fail(status::truncated, "header (buffer shorter than 256 bytes)");
  if (std::memcmp(data, encoded_tensor_magic, 4) != 0) return fail(status::corrupt_header, "magic");
  if (detail::get_u16(data + 4) != encoded_tensor_version) return fail(status::unsupported, "format version");
  if (detail::get_u16(data + 6) != encoded_header_bytes) return fail(status::corrupt_header, "header_bytes");
  for (std::uint32_t i = 192; i < encoded_header_bytes; ++i)
    if (data[i] != 0) return fail(status::corrupt_header, "reserved header bytes");

  tensor_header h;
  if (data[8] >= dtype_count) return fail(status::corrupt_header, "source dtype");
  h.source = static_cast<dtype>(data[8]);
  if (h.source != dtype::f32 && h.source != dtype::f16 && h.source != dtype::bf16)
    return fail(status::unsupported, "source dtype (f32, f16 or bf16)");
  h.params.quant = static_cast<quant::kind>(data[9]);
  h.params.coder = static_cast<coder::kind>(data[10]);
  h.params.order = static_cast<symbol_order>(data[11]);
  if (data[12] > 4) return fail(status::corrupt_header, "plane coding");
  h.coding = static_cast<plane_coding>(data[12]);
  h.params.prob_bits = data[13];
  h.params.lanes = data[14];
  h.rank = data[15];
  h.params.tile_rows = detail::get_u32(data + 16);
  h.params.tile_cols = detail::get_u32(data + 20);
  h.params.group_size = detail::get_u32(data + 24);
  h.alphabet = detail::get_u32(data + 28);
  if (h.params.coder == coder::kind::raw && (h.params.prob_bits != 0 || h.params.lanes != 1))
    return fail(status::corrupt_header, "raw coder with rANS parameters");
  {
    std::string reason;
    format_params check = h.params;
    if (check.coder == coder::kind::raw) check.prob_bits = 12, check.lanes = 32;  // not used by raw
    if (validate_params(check, &reason) != status::success) return fail(status::corrupt_header, reason);
  }
  if (h.alphabet == 512 && h.params.coder == coder::kind::fixed &&
      (h.coding == plane_coding::fixed || h.coding == plane_coding::stored) && h.params.quant == quant::kind::lossless &&
      h.source != dtype::f32)  // coder 2 splits them in bytes (format/planes.hpp)
    return fail(status::unsupported, "16-bit lossless fixed codes of 9-bit symbols (written before the byte split: re-encode)");
  if (h.alphabet != alphabet_size(h.params.quant, h.source, h.params.coder)) return fail(status::corrupt_header, "alphabet");
  if (h.params.coder == coder::kind::raw && h.coding != plane_coding::stored)
    return fail(status::corrupt_header, "plane coding (raw coder must store)");
  if ((h.coding == plane_coding::rans && h.params.coder != coder::kind::rans) ||
      (h.coding == plane_coding::rans_lanes && h.params.coder != coder::kind::rans_lanes) ||
      (h.coding == plane_coding::fixed && h.params.coder != coder::kind::fixed) ||
      (h.coding == plane_coding::fixed_marked && h.params.coder != coder::kind::fixed_marked))
    return fail(status::corrupt_header, "plane coding (not the coder's)");
  if ((h.params.coder == coder::kind::fixed || h.params.coder == coder::kind::fixed_marked) &&
      (is_fixed_coding(h.coding) ? h.params.prob_bits < 1 || h.params.prob_bits > fixed_symbol_bits(h.alphabet)
                                 : h.params.prob_bits != 0))
    return fail(status::corrupt_header, "fixed code bits");
  if (h.rank > max_rank) return fail(status::corrupt_header, "rank");
  for (int i = 0; i < max_rank; ++i) {
    h.dims[i] = detail::get_u64(data + 32 + 8 * i);
    if (i >= h.rank && h.dims[i] != 0) return fail(status::corrupt_header, "dims beyond rank");
  }
  std::uint64_t* fields[] = {&h.tile_count,    &h.table_offset,  &h.table_bytes, &h.scales_offset,
                             &h.scales_bytes,  &h.index_offset,  &h.index_bytes, &h.payload_offset,
                             &h.payload_bytes, &h.raw_offset,    &h.raw_bytes,   &h.total_bytes};
  for (int i = 0; i < 12; ++i) *fields[i] = detail::get_u64(data + 96 + 8 * i);

  tile_layout l;
  if (!make_tile_layout(h.rank, h.dims, h.params.tile_rows, h.params.tile_cols, l))
    return fail(status::overflow, "dims (element count too large)");
  if (h.tile_count != l.tile_count()) return fail(status::corrupt_header, "tile_count");
  if (l.elements() == 0 && h.coding != plane_coding::stored) return fail(status::corrupt_header, "plane coding of empty tensor");

  // Sections: exact sizes, in order, aligned, inside the buffer.
  if (h.total_bytes != size) return fail(status::truncated, "total_bytes (does not match the buffer size)");
  if (h.coding == plane_coding::stored   ? h.table_bytes != 0
      : is_fixed_coding(h.coding)        ? h.table_bytes != 4
                                         : (h.table_bytes < 8 || h.table_bytes > 4 + 2ull * h.alphabet))
    return fail(status::corrupt_header, "table_bytes");
  if (h.scales_bytes != scale_count(h, l) * scale_bytes_per_entry(h)) return fail(status::corrupt_header, "scales_bytes");
  if (h.index_bytes != (h.tile_count + 1) * 8) return fail(status::corrupt_header, "index_bytes");
  if (h.raw_bytes != raw_plane_bytes(h, l)) return fail(status::corrupt_header, "raw_bytes");
  struct section { std::uint64_t offset, bytes; const char* name; };
  const section sections[] = {{h.scales_offset, h.scales_bytes, "scales"},
                              {h.raw_offset, h.raw_bytes, "raw plane"},
                              {h.table_offset, h.table_bytes, "table"},
                              {h.index_offset, h.index_bytes, "index"},
                              {h.payload_offset, h.payload_bytes, "payload"}};
  std::uint64_t cursor = encoded_header_bytes;
  for (const section& s : sections) {
    if (s.offset % section_alignment != 0) return fail(status::corrupt_header, std::string(s.name) + " offset alignment");
    if (s.offset < cursor) return fail(status::corrupt_header, std::string(s.name) + " offset (overlaps)");
    if (s.offset > size || s.bytes > size - s.offset) return fail(status::truncated, std::string(s.name) + " (past end)");
    cursor = s.offset + s.bytes;
  }

  // Table: first symbol and count must describe exactly the stored frequencies.
  if (has_rans_table(h.coding)) {
    const std::uint32_t first = detail::get_u16(data + h.table_offset), count = detail::get_u16(data + h.table_offset + 2);
    if (h.table_bytes != 4 + 2ull * count || std::uint64_t(first) + count > h.alphabet)
      return fail(status::corrupt_table, "table (first symbol / count)");
  }
  fixed_code fixed{h.params.prob_bits, 0, h.alphabet};
  if (h.coding == plane_coding::fixed) {
    fixed.first = detail::get_u16(data + h.table_offset);
    if (detail::get_u16(data + h.table_offset + 2) != (1u << fixed.bits) || fixed.first + (1u << fixed.bits) > h.alphabet)
      return fail(status::corrupt_table, "table (fixed code window)");
  }
  if (h.coding == plane_coding::fixed_marked) {
    // count is 2^k - 1 below the symbol width, else 2^k, which is the alphabet: first is then 0.
    fixed.first = detail::get_u16(data + h.table_offset);
    const std::uint32_t count = detail::get_u16(data + h.table_offset + 2);
    if (count != fixed_marked_count(fixed) || fixed.first + count > h.alphabet)
      return fail(status::corrupt_table, "table (fixed_marked code window)");
  }

  // Tile index: starts at 0, aligned, non-decreasing, ends at payload_bytes, each tile large enough.
  const std::uint8_t* index = data + h.index_offset;
  if (detail::get_u64(index) != 0) return fail(status::corrupt_header, "tile index[0]");
  for (std::uint64_t t = 0; t < h.tile_count; ++t) {
    const std::uint64_t a = detail::get_u64(index + 8 * t), b = detail::get_u64(index + 8 * (t + 1));
    if (b < a || b % tile_alignment != 0 || b > h.payload_bytes)
      return fail(status::corrupt_header, "tile index[" + std::to_string(t + 1) + "]");
    const tile_box box = l.box(t);
    const std::uint64_t n = box.size();
    const std::uint64_t need = h.coding == plane_coding::rans           ? 4ull * h.params.lanes
                               : h.coding == plane_coding::rans_lanes   ? 6ull * h.params.lanes
                               : h.coding == plane_coding::fixed        ? fixed_tile_bytes(fixed_shape(fixed, box.height, box.width), 0)
                               : h.coding == plane_coding::fixed_marked ? fixed_marked_tile_bytes(fixed_marked_shape_of(fixed, n), 0)
                                                                        : stored_tile_bytes(h.alphabet, n);
    if (b - a < need) return fail(status::corrupt_header, "tile index[" + std::to_string(t) + "] (tile too small)");
  }
  if (detail::get_u64(index + 8 * h.tile_count) != h.payload_bytes) return fail(status::corrupt_header, "tile index end");

  out.data_ = data;
  out.header_ = h;
  out.layout_ = l;
  return status::success;
}

}  // namespace tilecodec
