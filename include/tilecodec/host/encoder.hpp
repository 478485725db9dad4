// tilecodec/host/encoder.hpp: the host encoder. Tensor in (pointer, dtype, shape), encoded
// tensor out (docs/format.md). Uses all cores by default: quantization and the histogram run
// per row range, tiles are encoded independently.
//
//   auto enc = tilecodec::host::encode<tilecodec::int8_codec>(w.data(), dtype::bf16, {4096, 14336});
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>  // madvise
#endif

#include "../coder/fixed.hpp"
#include "../coder/fixed_marked.hpp"
#include "../coder/frequency_table.hpp"
#include "../coder/rans.hpp"
#include "../coder/rans_avx2.hpp"
#include "../coder/rans_lanes.hpp"
#include "../detail/parallel.hpp"
#include "../dtype.hpp"
#include "../format/encoded_tensor.hpp"
#include "../format/mma_order.hpp"
#include "../format/planes.hpp"
#include "../policy/codec.hpp"
#include "../status.hpp"

namespace tilecodec {
namespace host {

struct encode_options {
  unsigned threads = 0;         // 0: all hardware threads
  std::string name = "tensor";  // used in error messages
  bool simd = true;             // AVX2 rANS encoder when the CPU has it (same bytes as the scalar one)
};

// What the encoder measured; not stored in the encoded bytes.
struct encode_stats {
  std::uint64_t elements = 0;
  double entropy_bits = 0.0;          // order-0 entropy of the coded symbols, bits per symbol
  std::uint64_t payload_bytes = 0;    // coded symbol streams: lane states, words, tile padding
  std::uint64_t raw_bytes = 0;        // raw plane (lossless)
  std::uint64_t scale_bytes = 0;      // quantization scales
  std::uint64_t metadata_bytes = 0;   // header, frequency table, tile index, section padding
  std::uint64_t total_bytes = 0;
  plane_coding coding = plane_coding::stored;
  // Coded bits over the entropy bound for the coded plane: payload*8 / (entropy*elements) - 1.
  [[nodiscard]] double coding_overhead() const {
    const double ideal = entropy_bits * double(elements);
    return ideal > 0 ? double(payload_bytes) * 8.0 / ideal - 1.0 : 0.0;
  }
  [[nodiscard]] double bits_per_weight() const {
    return elements ? double(total_bytes) * 8.0 / double(elements) : 0.0;
  }
};

namespace detail {

// Where the encoder reads values and writes raw-plane bytes.
struct source {
  const void* data;
  dtype type;
  std::uint64_t cols;
  quant::kind quant;
  const float* row_scales;        // int8_rowwise
  const std::uint16_t* group_scales;  // int4_group, f16 bits
  std::uint32_t group_size;
  std::uint64_t groups_per_row;
  std::uint32_t alphabet;  // 16-bit lossless: 512 (9-bit symbol, 7-bit raw) or 256 (the byte split)
};

inline float load_as_float(const void* data, dtype type, std::uint64_t i) {
  switch (type) {
    case dtype::f32: return static_cast<const float*>(data)[i];
    case dtype::f16: return f16_to_float(static_cast<const std::uint16_t*>(data)[i]);
    default: return bf16_to_float(static_cast<const std::uint16_t*>(data)[i]);
  }
}

// The output buffer is fresh memory that the encoder touches first. On Linux, ask for
// transparent huge pages for it: a 100 MB tensor then takes about 50 page faults instead of
// 25,000 (a hint; nothing changes where THP is off or this is not Linux).
inline void advise_huge_pages(void* data, std::size_t size) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t huge = std::uintptr_t(1) << 21;
  if (size < 4 * huge) return;
  const std::uintptr_t begin = (reinterpret_cast<std::uintptr_t>(data) + huge - 1) & ~(huge - 1);
  const std::uintptr_t end = (reinterpret_cast<std::uintptr_t>(data) + size) & ~(huge - 1);
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data, (void)size;
#endif
}

// Round half to even for |y| <= 2^22 with the FPU's own rounding: once 1.5 * 2^23 is added no
// fraction bits are left. Same result as std::lrint in the default rounding mode, and it vectorises.
inline float round_half_even(float y) {
#if defined(__FAST_MATH__)
  return float(std::lrint(y));  // -ffast-math may fold (y + magic) - magic into y
#else
  constexpr float magic = 12582912.0f;  // 1.5 * 2^23
  return (y + magic) - magic;
#endif
}

// Symbol of x / scale (scale > 0), clamped to [-qmax, qmax]. |x / scale| <= 255 here: the
// scale is at least half of absmax / qmax even where it rounds to a subnormal (and a zero scale
// never gets here), so the rounding trick is in range. Integer clamps vectorise; float ones do not.
inline std::uint16_t quantize(float x, float scale, int qmax, std::uint32_t offset) {
  int q = int(round_half_even(x / scale));
  q = q < -qmax ? -qmax : q;
  q = q > qmax ? qmax : q;
  return static_cast<std::uint16_t>(q + int(offset));
}

// Symbols of w consecutive values sharing one scale (a row for int8, a group for int4). The
// dtype switch sits outside the loops so that they vectorise.
inline void quantize_values(const source& s, std::uint64_t base, std::uint32_t w, float scale, int qmax,
                            std::uint32_t offset, std::uint16_t* sym) {
  if (!(scale > 0.0f)) {  // an all-zero row or group
    for (std::uint32_t c = 0; c < w; ++c) sym[c] = static_cast<std::uint16_t>(offset);
    return;
  }
  if (s.type == dtype::f32) {
    const float* v = static_cast<const float*>(s.data) + base;
    for (std::uint32_t c = 0; c < w; ++c) sym[c] = quantize(v[c], scale, qmax, offset);
  } else if (s.type == dtype::f16) {
    const std::uint16_t* v = static_cast<const std::uint16_t*>(s.data) + base;
    for (std::uint32_t c = 0; c < w; ++c) sym[c] = quantize(f16_to_float(v[c]), scale, qmax, offset);
  } else {
    const std::uint16_t* v = static_cast<const std::uint16_t*>(s.data) + base;
    for (std::uint32_t c = 0; c < w; ++c) sym[c] = quantize(bf16_to_float(v[c]), scale, qmax, offset);
  }
}

// The largest |value| of n values as the source dtype's bit pattern without its sign: for IEEE
// formats that order is the order of |value|, and Inf and NaN sort above every finite value.
// An integer max vectorises; a float max with an isfinite test per value does not.
inline std::uint32_t max_abs_bits(const void* data, dtype type, std::uint64_t base, std::uint64_t n) {
  if (type == dtype::f32) {
    const std::uint32_t* v = static_cast<const std::uint32_t*>(data) + base;
    std::uint32_t m = 0;
    for (std::uint64_t i = 0; i < n; ++i) m = std::max(m, v[i] & 0x7fffffffu);
    return m;
  }
  const std::uint16_t* v = static_cast<const std::uint16_t*>(data) + base;
  std::uint16_t m = 0;
  for (std::uint64_t i = 0; i < n; ++i) m = std::max(m, static_cast<std::uint16_t>(v[i] & 0x7fffu));
  return m;
}
inline std::uint32_t infinity_bits(dtype type) {
  return type == dtype::f32 ? 0x7f800000u : (type == dtype::f16 ? 0x7c00u : 0x7f80u);
}
inline float abs_bits_to_float(std::uint32_t bits, dtype type) {
  if (type == dtype::f32) return bits_float(bits);
  return type == dtype::f16 ? f16_to_float(static_cast<std::uint16_t>(bits)) : bf16_to_float(static_cast<std::uint16_t>(bits));
}

// Symbols (and raw bytes) of row r, columns [c0, c0 + w).
inline void symbolize_row(const source& s, std::uint64_t r, std::uint64_t c0, std::uint32_t w, std::uint16_t* sym,
                          std::uint8_t* raw) {
  const std::uint64_t base = r * s.cols + c0;
  switch (s.quant) {
    case quant::kind::lossless:
      if (s.type == dtype::f32) {
        const std::uint32_t* v = static_cast<const std::uint32_t*>(s.data) + base;
        for (std::uint32_t c = 0; c < w; ++c) sym[c] = static_cast<std::uint16_t>(lossless32_symbol(v[c]));
        if (raw)
          for (std::uint32_t c = 0; c < w; ++c) {
            const std::uint32_t bits = lossless32_raw(v[c]);
            raw[3 * c] = static_cast<std::uint8_t>(bits);
            raw[3 * c + 1] = static_cast<std::uint8_t>(bits >> 8);
            raw[3 * c + 2] = static_cast<std::uint8_t>(bits >> 16);
          }
      } else {
        const std::uint16_t* v = static_cast<const std::uint16_t*>(s.data) + base;
        if (lossless16_bytes(s.alphabet)) {  // one loop per split: no test per element
          for (std::uint32_t c = 0; c < w; ++c) sym[c] = static_cast<std::uint16_t>(lossless16_byte_symbol(v[c]));
          if (raw)
            for (std::uint32_t c = 0; c < w; ++c) raw[c] = static_cast<std::uint8_t>(lossless16_byte_raw(v[c]));
        } else {
          for (std::uint32_t c = 0; c < w; ++c) sym[c] = static_cast<std::uint16_t>(lossless16_symbol(v[c]));
          if (raw)
            for (std::uint32_t c = 0; c < w; ++c) raw[c] = static_cast<std::uint8_t>(lossless16_raw(v[c]));
        }
      }
      return;
    case quant::kind::int8_rowwise:
      quantize_values(s, base, w, s.row_scales[r], int8_qmax, int8_symbol_offset, sym);
      return;
    case quant::kind::int4_group:
      for (std::uint32_t c = 0; c < w;) {  // one run per group of columns
        const std::uint64_t col = c0 + c, g = col / s.group_size;
        const auto run = static_cast<std::uint32_t>(std::min<std::uint64_t>(w - c, (g + 1) * s.group_size - col));
        const float scale = f16_to_float(s.group_scales[r * s.groups_per_row + g]);
        quantize_values(s, base + c, run, scale, int4_qmax, int4_symbol_offset, sym + c);
        c += run;
      }
      return;
  }
}

// Symbols of tile b in symbol order, and its raw values (raw_step bytes each) when raw is set.
// A tile row is a short piece of a long input row (512 bytes of a 256-wide bf16 tile), too
// short for the hardware prefetcher to follow, so rows a few ahead are prefetched by hand.
inline void symbolize_tile(const source& s, const tile_box& b, symbol_order order, std::uint16_t* sym,
                           std::uint8_t* raw, std::uint32_t raw_step) {
  constexpr std::uint32_t ahead = 8;  // rows
  const std::uint64_t value_bytes = dtype_size(s.type), row_bytes = b.width * value_bytes;
  const auto* base = static_cast<const std::uint8_t*>(s.data) + (b.row0 * s.cols + b.col0) * value_bytes;
  for (std::uint32_t r = 0; r < b.height; ++r) {
#if defined(__GNUC__)
    if (r + ahead < b.height)
      for (std::uint64_t i = 0; i < row_bytes; i += 64) __builtin_prefetch(base + (r + ahead) * s.cols * value_bytes + i);
#endif
    symbolize_row(s, b.row0 + r, b.col0, b.width, sym + std::uint64_t(r) * b.width,
                  raw ? raw + std::uint64_t(r) * b.width * raw_step : nullptr);
  }
  if (tile_uses_mma_order(order, b.height, b.width)) {  // symbol order (format/mma_order.hpp)
    reorder_tile_in_place(order, b.height, b.width, sym, 2, true);
    if (raw) reorder_tile_in_place(order, b.height, b.width, raw, raw_step, true);
  }
}

// 16-bit lossless, the histogram pass: adds tile b's symbols to `hist` (4 x bins counters, as
// count_symbols) straight from the input, four values per u64 load, and writes its raw values
// (7-bit, or bytes for the byte split) in symbol order, one a byte. The histogram does not
// depend on the order, so no symbol is stored.
inline void count_and_split_tile16(const source& s, const tile_box& b, symbol_order order, std::uint8_t* raw,
                                   std::uint32_t bins, std::uint32_t* hist) {
  constexpr std::uint32_t ahead = 8;  // rows, as symbolize_tile
  std::uint32_t* const h0 = hist;
  std::uint32_t* const h1 = hist + bins;
  std::uint32_t* const h2 = hist + 2 * bins;
  std::uint32_t* const h3 = hist + 3 * bins;
  const std::uint16_t* base = static_cast<const std::uint16_t*>(s.data) + b.row0 * s.cols + b.col0;
  const bool split_bytes = lossless16_bytes(s.alphabet);
  const std::uint32_t shift = split_bytes ? 7u : 6u, mask = split_bytes ? 0xffu : 0x1ffu;
  for (std::uint32_t r = 0; r < b.height; ++r) {
    const std::uint16_t* v = base + r * s.cols;
#if defined(__GNUC__)
    if (r + ahead < b.height)
      for (std::uint32_t c = 0; c < b.width; c += 32) __builtin_prefetch(v + ahead * s.cols + c);
#endif
    std::uint32_t c = 0;
    for (; c + 4 <= b.width; c += 4) {
      std::uint64_t x;
      std::memcpy(&x, v + c, 8);
      ++h0[(x >> shift) & mask];
      ++h1[(x >> (16 + shift)) & mask];
      ++h2[(x >> (32 + shift)) & mask];
      ++h3[(x >> (48 + shift)) & mask];
    }
    for (; c < b.width; ++c) ++h0[(v[c] >> shift) & mask];
    std::uint8_t* rr = raw + std::uint64_t(r) * b.width;
    if (split_bytes)
      for (c = 0; c < b.width; ++c) rr[c] = static_cast<std::uint8_t>(lossless16_byte_raw(v[c]));
    else
      for (c = 0; c < b.width; ++c) rr[c] = static_cast<std::uint8_t>(lossless16_raw(v[c]));
  }
  reorder_tile_in_place(order, b.height, b.width, raw, 1, true);  // no-op unless mma order applies
}

// Adds n symbols to a histogram of 4 x bins counters. Four copies break the store-to-load chain
// on runs of equal symbols (bf16 exponents repeat a lot); one u64 load gives four symbols.
inline void count_symbols(const std::uint16_t* sym, std::uint32_t n, std::uint32_t bins, std::uint32_t* hist) {
  std::uint32_t* const h0 = hist;
  std::uint32_t* const h1 = hist + bins;
  std::uint32_t* const h2 = hist + 2 * bins;
  std::uint32_t* const h3 = hist + 3 * bins;
  std::uint32_t i = 0;
  for (; i + 4 <= n; i += 4) {
    std::uint64_t v;
    std::memcpy(&v, sym + i, 8);
    ++h0[v & 0xffffu];
    ++h1[(v >> 16) & 0xffffu];
    ++h2[(v >> 32) & 0xffffu];
    ++h3[v >> 48];
  }
  for (; i < n; ++i) ++h0[sym[i]];
}

// Stores symbols uncoded, in the layout stored_symbol() reads (format/planes.hpp).
inline void store_tile(std::uint32_t alphabet, const std::uint16_t* symbols, std::uint32_t n,
                       std::vector<std::uint8_t>& out) {
  const std::uint64_t bytes = stored_tile_bytes(alphabet, n);
  const std::size_t begin = out.size();
  out.resize(begin + ::tilecodec::detail::align_up(bytes, tile_alignment), 0);
  std::uint8_t* p = out.data() + begin;
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::uint32_t v = symbols[i];
    if (alphabet <= 16) {
      p[i / 2] = static_cast<std::uint8_t>(p[i / 2] | (v << (4 * (i & 1))));
    } else if (alphabet <= 256) {
      p[i] = static_cast<std::uint8_t>(v);
    } else {
      std::uint8_t* g = p + (i / 8) * 9;
      g[i & 7] = static_cast<std::uint8_t>(v);
      g[8] = static_cast<std::uint8_t>(g[8] | ((v >> 8) << (i & 7)));
    }
  }
}

// Packs a tile's 7-bit raw values (one per byte) into groups of 8 in 7 bytes. Full groups
// work on one u64: a multiply spreads value 7's bits j to bit 7 of byte j (the shifted copies
// never overlap, so no carries). All but the tile's last group are stored as 8 bytes, the 8th
// being the next group's first byte, which that group then writes.
inline void pack_raw7(const std::uint8_t* raw7, std::uint32_t n, std::uint8_t* out) {
  auto pack = [](const std::uint8_t* v8) {
    std::uint64_t v;
    std::memcpy(&v, v8, 8);
    const std::uint64_t spread = ((v >> 56) * 0x0002040810204080ull) & 0x0080808080808080ull;
    return (v & 0x007f7f7f7f7f7f7full) | spread;
  };
  std::uint32_t i = 0;
  for (; i + 2 * raw7_group <= n; i += raw7_group, out += raw7_group_bytes) {
    const std::uint64_t packed = pack(raw7 + i);
    std::memcpy(out, &packed, 8);
  }
  if (i + raw7_group <= n) {
    const std::uint64_t packed = pack(raw7 + i);
    std::memcpy(out, &packed, raw7_group_bytes);
    i += raw7_group, out += raw7_group_bytes;
  }
  if (i < n) raw7_pack(raw7 + i, n - i, out);
}

}  // namespace detail

// Encodes a tensor with the run-time policy `params`. Throws tilecodec::error on invalid input
// (null data, unsupported dtype, bad policy, overflowing shape, non-finite values under a
// quantizing policy). Values are read row-major (C order).
inline encoded_tensor encode(const void* data, dtype type, const std::vector<std::uint64_t>& shape,
                             const format_params& params, const encode_options& options = {},
                             encode_stats* stats = nullptr) {
  using ::tilecodec::detail::align_up;
  const std::string& name = options.name;
  std::string why;
  if (validate_params(params, &why) != status::success) throw error(status::unsupported, name + ": policy: " + why);
  if (type != dtype::f32 && type != dtype::f16 && type != dtype::bf16)
    throw error(status::unsupported, name + ": dtype " + dtype_name(type) + " cannot be encoded (f32, f16 or bf16)");
  if (shape.size() > std::size_t(max_rank)) throw error(status::unsupported, name + ": rank above 8");

  tensor_header h;
  h.source = type;
  h.params = params;
  if (params.coder == coder::kind::raw) h.params.prob_bits = 0, h.params.lanes = 1;
  const bool fixed_coder = params.coder == coder::kind::fixed || params.coder == coder::kind::fixed_marked;
  if (fixed_coder) h.params.prob_bits = 0;  // the code width, once chosen
  h.alphabet = alphabet_size(params.quant, type, params.coder);
  h.rank = static_cast<int>(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) h.dims[i] = shape[i];
  tile_layout layout;
  if (!make_tile_layout(h.rank, h.dims, params.tile_rows, params.tile_cols, layout))
    throw error(status::overflow, name + ": shape has more than 2^56 elements");
  const std::uint64_t elements = layout.elements();
  if (elements > 0 && data == nullptr) throw error(status::invalid_argument, name + ": null data");
  h.tile_count = layout.tile_count();
  const unsigned threads = ::tilecodec::detail::resolve_threads(options.threads);

  // 1. Quantization scales (one pass over the rows).
  detail::source src{data, type, layout.cols, params.quant, nullptr, nullptr, params.group_size, 0, h.alphabet};
  std::vector<float> row_scales;
  std::vector<std::uint16_t> group_scales;
  if (params.quant != quant::kind::lossless && elements > 0) {
    const bool int8 = params.quant == quant::kind::int8_rowwise;
    const std::uint64_t gpr = int8 ? 1 : (layout.cols + params.group_size - 1) / params.group_size;
    src.groups_per_row = gpr;
    if (int8) row_scales.resize(layout.rows); else group_scales.resize(layout.rows * gpr);
    ::tilecodec::detail::parallel_for(layout.rows, threads, [&](std::uint64_t r, unsigned) {
      for (std::uint64_t g = 0; g < gpr; ++g) {
        const std::uint64_t c0 = int8 ? 0 : g * params.group_size;
        const std::uint64_t c1 = int8 ? layout.cols : std::min<std::uint64_t>(layout.cols, c0 + params.group_size);
        const std::uint32_t max_bits = detail::max_abs_bits(data, type, r * layout.cols + c0, c1 - c0);
        if (max_bits >= detail::infinity_bits(type)) {  // name the first non-finite value
          std::uint64_t c = c0;
          while (std::isfinite(detail::load_as_float(data, type, r * layout.cols + c))) ++c;
          throw error(status::invalid_argument, name + ": non-finite value at row " + std::to_string(r) + ", column " +
                                                    std::to_string(c) + " cannot be quantized");
        }
        const float absmax = detail::abs_bits_to_float(max_bits, type);
        if (int8) {
          row_scales[r] = absmax / float(int8_qmax);
        } else {
          std::uint16_t bits = float_to_f16(absmax / float(int4_qmax));
          if ((bits & 0x7c00u) == 0x7c00u)
            throw error(status::invalid_argument, name + ": int4 group scale at row " + std::to_string(r) +
                                                      " overflows fp16 (|value| > 458000)");
          if (bits == 0 && absmax > 0.0f) {
            bits = 1;  // keep tiny groups representable
          } else if (absmax > 7.5f * f16_to_float(bits)) {
            // A subnormal scale can round down so far that the group's largest value would clamp
            // by more than half a step; the next fp16 up cannot (absmax <= 7 s + 3.5 steps).
            ++bits;
          }
          group_scales[r * gpr + g] = bits;
        }
      }
    });
    src.row_scales = row_scales.data();
    src.group_scales = group_scales.data();
  }

  // 2. Histogram and raw plane, in one pass over the input, tile by tile. Symbols are made in
  //    a per-thread tile buffer that stays in cache and are not kept: step 4 makes them again,
  //    which costs less than writing and re-reading a 2-byte-per-element plane.
  //    The sections whose sizes are known now (scales, raw plane) come first in the format, so
  //    the raw plane is written once, in the output buffer, which is reserved for the largest
  //    payload the encoder may keep (the stored size) and never reallocates.
  const bool raw16 = params.quant == quant::kind::lossless && type != dtype::f32;
  const bool raw7 = raw16 && !lossless16_bytes(h.alphabet);  // else one byte an element, written in place
  const bool raw24 = params.quant == quant::kind::lossless && type == dtype::f32;
  std::uint64_t stored_payload = 0;
  for (std::uint64_t t = 0; t < h.tile_count; ++t)
    stored_payload += align_up(stored_tile_bytes(h.alphabet, layout.box(t).size()), tile_alignment);
  h.scales_bytes = params.quant == quant::kind::int8_rowwise ? row_scales.size() * 4 : group_scales.size() * 2;
  h.raw_bytes = raw_plane_bytes(h, layout);
  h.index_bytes = (h.tile_count + 1) * 8;
  h.scales_offset = encoded_header_bytes;
  h.raw_offset = align_up(h.scales_offset + h.scales_bytes, section_alignment);
  std::vector<std::uint8_t> bytes;
  bytes.reserve(align_up(h.raw_offset + h.raw_bytes, section_alignment) + 4 + 2 * h.alphabet + section_alignment +
                h.index_bytes + section_alignment + stored_payload);
  detail::advise_huge_pages(bytes.data(), bytes.capacity());
  bytes.resize(h.raw_offset + h.raw_bytes);
  std::uint8_t* const raw_plane = bytes.data() + h.raw_offset;
  std::vector<std::uint64_t> counts(h.alphabet, 0);
  {
    const std::uint32_t bins = h.alphabet;
    std::vector<std::vector<std::uint32_t>> local(threads, std::vector<std::uint32_t>(4 * bins, 0));
    std::vector<std::vector<std::uint64_t>> wide(threads, std::vector<std::uint64_t>(bins, 0));
    ::tilecodec::detail::parallel_for(h.tile_count, threads, [&](std::uint64_t t, unsigned worker) {
      thread_local std::vector<std::uint16_t> sym_scratch;
      thread_local std::vector<std::uint8_t> raw_scratch;  // 7-bit raw values before packing
      const tile_box b = layout.box(t);
      const std::uint32_t n = b.size();
      std::uint8_t* raw = nullptr;
      if (raw7) raw_scratch.resize(n), raw = raw_scratch.data();
      if (raw16 && !raw7) raw = raw_plane + layout.element_start(t);
      if (raw24) raw = raw_plane + 3 * layout.element_start(t);
      std::uint32_t* hist = local[worker].data();  // a tile has < 2^32 symbols: no overflow
      if (raw16) {  // 16-bit lossless: symbols counted straight from the input, none written
        detail::count_and_split_tile16(src, b, params.order, raw, bins, hist);
        if (raw7) detail::pack_raw7(raw, n, raw_plane + raw7_group_bytes * layout.groups8_before(t));
      } else {
        sym_scratch.resize(n);
        detail::symbolize_tile(src, b, params.order, sym_scratch.data(), raw, raw24 ? 3u : 1u);
        detail::count_symbols(sym_scratch.data(), n, bins, hist);
      }
      for (std::uint32_t s = 0; s < bins; ++s) {
        wide[worker][s] += std::uint64_t(hist[s]) + hist[bins + s] + hist[2 * bins + s] + hist[3 * bins + s];
        hist[s] = hist[bins + s] = hist[2 * bins + s] = hist[3 * bins + s] = 0;
      }
    });
    for (const auto& w : wide)
      for (std::uint32_t s = 0; s < h.alphabet; ++s) counts[s] += w[s];
  }

  // 3. Table, and the choice between rANS and storing (the raw fallback: never expand).
  std::vector<std::uint16_t> freq;
  std::vector<rans_encode_symbol> enc_table;
#if TILECODEC_HAS_AVX2_DECODER
  std::unique_ptr<rans_encode_tables> simd_tables;  // for the AVX2 encoder (32 lanes)
#endif
  h.coding = plane_coding::stored;
  const bool lane_streams = params.coder == coder::kind::rans_lanes;  // coder/rans_lanes.hpp
  if ((params.coder == coder::kind::rans || lane_streams) && elements > 0) {
    // prob_bits is the highest precision asked for: one bit less can cost less when the
    // frequency cap of a 9-bit alphabet binds (a symbol with p > 1/2), so both are priced.
    // A precision with fewer slots than distinct symbols cannot code the plane (9-bit symbols
    // at 8 bits, say): it prices as infinite, and if both do, the plane is stored.
    std::uint32_t distinct = 0;
    for (std::uint32_t s = 0; s < h.alphabet; ++s) distinct += counts[s] != 0;
    auto price = [&](std::uint32_t bits, std::vector<std::uint16_t>& f) {
      if (distinct > (1u << bits)) return std::numeric_limits<double>::infinity();
      f = normalize_frequencies(counts.data(), h.alphabet, bits);
      double total = 0.0;
      for (std::uint32_t s = 0; s < h.alphabet; ++s)
        if (counts[s]) total += double(counts[s]) * (double(bits) - std::log2(double(f[s])));
      return total;
    };
    double estimate_bits = price(params.prob_bits, freq);
    if (params.prob_bits > 8) {
      std::vector<std::uint16_t> lower;
      const double lower_bits = price(params.prob_bits - 1, lower);
      if (lower_bits < estimate_bits) {
        estimate_bits = lower_bits;
        freq.swap(lower);
        h.params.prob_bits = params.prob_bits - 1;
      }
    }
    const double estimate = estimate_bits / 8.0 + double(h.tile_count) * ((lane_streams ? 6.0 : 4.0) * params.lanes + 8.0);
    if (estimate < double(stored_payload)) {  // false for an infinite estimate
      h.coding = lane_streams ? plane_coding::rans_lanes : plane_coding::rans;
      enc_table = make_encode_symbols(freq.data(), h.alphabet, h.params.prob_bits);
#if TILECODEC_HAS_AVX2_DECODER
      if (params.lanes == 32 && options.simd && ::tilecodec::detail::cpu_has_avx2())
        simd_tables = std::make_unique<rans_encode_tables>(enc_table);
#endif
    }
  }

  // The fixed coders (coder/fixed.hpp, coder/fixed_marked.hpp): code width and window from the histogram.
  fixed_code fixed{};
  // prob_bits 1..9 pins the fixed coder's width (the window is still the histogram's best): the
  // caller's choice of decode speed over size (the fused kernels run int8 pinned at 8, no escapes,
  // faster than the smallest width at every batch size: docs/PERFORMANCE.md 6.13). 0, or above 9
  // (the rANS default of hand-written params), leaves it to the encoder.
  const std::uint32_t pinned_bits =
      params.coder == coder::kind::fixed && params.prob_bits >= 1 && params.prob_bits <= 9 ? params.prob_bits : 0;
  if (params.coder == coder::kind::fixed && elements > 0) {
    std::uint64_t in = 0;
    // 16-bit lossless (the byte split) takes 4-bit codes at least: bf16 at 3 bits is 6% smaller but
    // escapes 1.6% of its weights (0.013% at 4) and runs the fused GEMV 1.9-2.1x slower, without
    // the interleaved decode (H200, docs/PERFORMANCE.md 6.19). A pin still gets any width.
    const std::uint32_t min_bits = raw16 ? 4u : 1u;
    fixed = pinned_bits != 0
                ? fixed_code_of_width(counts.data(), h.alphabet, pinned_bits, in)
                : choose_fixed_code(counts.data(), h.alphabet, h.tile_count, layout.tile_rows, layout.tile_cols, min_bits);
    h.coding = plane_coding::fixed;
    h.params.prob_bits = fixed.bits;
  }
  if (params.coder == coder::kind::fixed_marked && elements > 0) {
    // prob_bits, when set, pins the code width (the window is still the histogram's best).
    fixed = params.prob_bits != 0 ? fixed_marked_code_of_width(counts.data(), h.alphabet, params.prob_bits)
                                  : fixed_marked_choose_code(counts.data(), h.alphabet, h.tile_count,
                                                             std::uint64_t(layout.tile_rows) * layout.tile_cols,
                                                             8.0 * double(h.raw_bytes) / double(elements));
    h.coding = plane_coding::fixed_marked;
    h.params.prob_bits = fixed.bits;
  }

  // Where the sections after the raw plane go, for the coding chosen. The table keeps only the
  // range of symbols that occur.
  std::uint32_t first = 0, count = 0;
  auto place_sections = [&] {
    first = count = 0;
    if (has_rans_table(h.coding)) {
      std::uint32_t last = 0;
      first = h.alphabet;
      for (std::uint32_t s = 0; s < h.alphabet; ++s)
        if (freq[s]) first = std::min(first, s), last = s;
      count = last - first + 1;
    }
    h.table_bytes = has_rans_table(h.coding) ? 4ull + 2ull * count : (is_fixed_coding(h.coding) ? 4ull : 0);
    h.table_offset = align_up(h.raw_offset + h.raw_bytes, section_alignment);
    h.index_offset = align_up(h.table_offset + h.table_bytes, section_alignment);
    h.payload_offset = align_up(h.index_offset + h.index_bytes, section_alignment);
  };

  // 4. Tiles, in parallel, in contiguous runs of tiles. With one thread the tiles are appended
  //    straight to the output (no copy, no per-tile allocation); with more, each run fills its
  //    own buffer and the buffers are copied in after. The fixed coder reads the raw plane in
  //    `bytes` while it writes, so it always writes to run buffers (`bytes` may grow).
  std::vector<std::uint64_t> tile_bytes(h.tile_count);
  std::atomic<bool> too_many_escapes{false};
  std::vector<std::vector<std::uint8_t>> run_bytes;
  auto encode_tiles = [&](plane_coding coding) {  // returns the payload size
    const bool direct = threads <= 1 && coding != plane_coding::fixed;
    const std::uint64_t runs = direct ? 1 : std::min<std::uint64_t>(h.tile_count, std::uint64_t(threads) * 4);
    auto run_begin = [&](std::uint64_t r) { return h.tile_count / runs * r + std::min(r, h.tile_count % runs); };
    run_bytes.resize(direct ? 0 : runs);
    place_sections();
    bytes.resize(h.payload_offset, 0);  // header, table and index are written last
    ::tilecodec::detail::parallel_for(runs, threads, [&](std::uint64_t r, unsigned) {
      thread_local std::vector<std::uint16_t> words, sym_scratch;
      std::vector<std::uint8_t>& out = direct ? bytes : run_bytes[r];
      if (!direct) out.clear();
      for (std::uint64_t t = run_begin(r); t < run_begin(r + 1); ++t) {
        const tile_box b = layout.box(t);
        const std::uint32_t n = b.size();
        sym_scratch.resize(n);
        const std::uint16_t* sym = sym_scratch.data();
        detail::symbolize_tile(src, b, params.order, sym_scratch.data(), nullptr, 0);
        const std::size_t before = out.size();
#if TILECODEC_HAS_AVX2_DECODER
        if (coding == plane_coding::rans && simd_tables)
          rans_encode_tile_avx2(*simd_tables, h.params.prob_bits, sym, n, words, out);
        else
#endif
        if (coding == plane_coding::fixed) {
          const std::uint8_t* raw_tile =  // escape entries of the 9-bit split hold the whole value
              raw7 ? bytes.data() + h.raw_offset + raw7_group_bytes * layout.groups8_before(t) : nullptr;
          if (!fixed_encode_tile(fixed, params.order, b.height, b.width, sym, raw_tile, out)) too_many_escapes = true;
        } else if (coding == plane_coding::fixed_marked) {
          if (!fixed_marked_encode_tile(fixed, n, sym, out)) too_many_escapes = true;
        } else if (coding == plane_coding::rans) {
          rans_encode_tile(params.lanes, enc_table.data(), h.params.prob_bits, sym, n, words, out);
        } else if (coding == plane_coding::rans_lanes) {
          rans_lanes_encode_tile(params.lanes, enc_table.data(), h.params.prob_bits, sym, n, words, out);
        } else {
          detail::store_tile(h.alphabet, sym, n, out);
        }
        tile_bytes[t] = out.size() - before;
      }
    });
    std::uint64_t size = bytes.size() - h.payload_offset;
    for (auto& run : run_bytes) {
      bytes.insert(bytes.end(), run.begin(), run.end());
      size += run.size();
      std::vector<std::uint8_t>().swap(run);
    }
    return size;
  };
  std::uint64_t payload = encode_tiles(h.coding);
  if (too_many_escapes) {  // a tile with more than 65535 escapes: code every symbol in full
    fixed = fixed_code{fixed_symbol_bits(h.alphabet), 0, h.alphabet};
    h.params.prob_bits = fixed.bits;
    payload = encode_tiles(h.coding);
  }
  // A pinned fixed width is the caller's choice of decode speed over size: never stored instead
  // (a tile with more than 65535 escapes still takes full-width codes, above).
  if ((has_rans_table(h.coding) && payload >= stored_payload) ||
      (is_fixed_coding(h.coding) && payload > stored_payload && pinned_bits == 0)) {
    h.coding = plane_coding::stored;  // the estimate was optimistic: store instead of expanding
    if (fixed_coder) h.params.prob_bits = 0;
    payload = encode_tiles(h.coding);
  }

  // 5. The remaining sections: header, table, scales, index (the payload is in place).
  h.payload_bytes = payload;
  h.total_bytes = h.payload_offset + h.payload_bytes;
  write_header(h, bytes.data());
  if (has_rans_table(h.coding)) {
    ::tilecodec::detail::put_u16(bytes.data() + h.table_offset, static_cast<std::uint16_t>(first));
    ::tilecodec::detail::put_u16(bytes.data() + h.table_offset + 2, static_cast<std::uint16_t>(count));
    for (std::uint32_t s = 0; s < count; ++s)
      ::tilecodec::detail::put_u16(bytes.data() + h.table_offset + 4 + 2 * s, freq[first + s]);
  }
  if (is_fixed_coding(h.coding)) {
    const std::uint32_t window = h.coding == plane_coding::fixed ? 1u << fixed.bits : fixed_marked_count(fixed);
    ::tilecodec::detail::put_u16(bytes.data() + h.table_offset, static_cast<std::uint16_t>(fixed.first));
    ::tilecodec::detail::put_u16(bytes.data() + h.table_offset + 2, static_cast<std::uint16_t>(window));
  }
  if (!row_scales.empty()) std::memcpy(bytes.data() + h.scales_offset, row_scales.data(), h.scales_bytes);
  if (!group_scales.empty()) std::memcpy(bytes.data() + h.scales_offset, group_scales.data(), h.scales_bytes);
  std::uint64_t offset = 0;
  for (std::uint64_t t = 0; t <= h.tile_count; ++t) {
    ::tilecodec::detail::put_u64(bytes.data() + h.index_offset + 8 * t, offset);
    if (t < h.tile_count) offset += tile_bytes[t];
  }

  if (stats) {
    stats->elements = elements;
    stats->entropy_bits = order0_entropy(counts.data(), h.alphabet);
    stats->payload_bytes = h.payload_bytes;
    stats->raw_bytes = h.raw_bytes;
    stats->scale_bytes = h.scales_bytes;
    stats->total_bytes = h.total_bytes;
    stats->metadata_bytes = h.total_bytes - h.payload_bytes - h.raw_bytes - h.scales_bytes;
    stats->coding = h.coding;
  }
  return encoded_tensor(std::move(bytes));
}

// Encodes with a compile-time codec: encode<int8_codec>(data, dtype::bf16, {rows, cols}).
template <class Codec>
encoded_tensor encode(const void* data, dtype type, const std::vector<std::uint64_t>& shape,
                      const encode_options& options = {}, encode_stats* stats = nullptr) {
  return encode(data, type, shape, Codec::params(), options, stats);
}

}  // namespace host
}  // namespace tilecodec
