// tilecodec/host/decoder.hpp: the host reference decoder. Bit-exact with the device decoders
// (they share coder/rans.hpp and format/planes.hpp), plain C++ (no CUDA needed).
//
//   tilecodec::host::tensor_decoder dec(encoded.view());          // checks the table once
//   dec.decode(out.data(), dtype::bf16, out.size() * 2);           // whole tensor, row-major
//   dec.decode_tile(t, tile_out, dtype::f32, ld, bytes);           // any single tile
//
// Output dtypes: lossless tensors decode to their source dtype, bit for bit. Quantized tensors
// decode to f32, f16 or bf16 (code * scale in fp32, then rounded to nearest even), or to i8
// (the integer codes themselves).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

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
#include "../status.hpp"

namespace tilecodec {
namespace host {

// Is `out` a dtype this tensor can decode to?
[[nodiscard]] inline bool can_decode_to(const tensor_header& h, dtype out) {
  if (h.params.quant == quant::kind::lossless) return out == h.source;
  return out == dtype::f32 || out == dtype::f16 || out == dtype::bf16 || out == dtype::i8;
}

class tensor_decoder {
 public:
  // Builds the decode table; check status() before decoding (a corrupt table is reported here).
  explicit tensor_decoder(const encoded_tensor_view& view) : view_(view) {
    const tensor_header& h = view_.header();
    if (!has_rans_table(h.coding)) return;
    std::vector<std::uint16_t> freq(h.alphabet);
    for (std::uint32_t s = 0; s < h.alphabet; ++s) freq[s] = view_.frequency(s);
    table_.resize(std::size_t(1) << h.params.prob_bits);
    status_ = build_decode_table(freq.data(), h.alphabet, h.params.prob_bits, table_.data());
  }

  [[nodiscard]] status state() const { return status_; }

  // The AVX2 tile decoder is used when the CPU has it; tests turn it off to check the scalar
  // reference against it.
  void use_simd(bool on) { use_simd_ = on; }
  [[nodiscard]] const encoded_tensor_view& view() const { return view_; }

  // Decodes tile t into out, whose element (0, 0) is the tile's top-left and whose rows are
  // `ld` elements apart; out_bytes bounds what may be written.
  [[nodiscard]] status decode_tile(std::uint64_t t, void* out, dtype out_type, std::uint64_t ld,
                                   std::uint64_t out_bytes) const noexcept {
    if (status_ != status::success) return status_;
    if (t >= view_.header().tile_count || out == nullptr || !can_decode_to(view_.header(), out_type))
      return out == nullptr || t >= view_.header().tile_count ? status::invalid_argument : status::unsupported;
    const tile_box b = view_.layout().box(t);
    if (ld < b.width) return status::invalid_argument;
    const std::uint64_t need = ((std::uint64_t(b.height) - 1) * ld + b.width) * dtype_size(out_type);
    if (out_bytes < need) return status::invalid_argument;
    try {
      std::vector<std::uint16_t> symbols(b.size());
      return decode_tile_into(t, b, symbols.data(), out, out_type, ld, 0, 0);
    } catch (...) {
      return status::out_of_memory;
    }
  }

  // Decodes the whole tensor, row-major, into out (out_bytes >= elements * dtype_size(out_type)).
  // Tiles are decoded on `threads` threads (0: all hardware threads).
  [[nodiscard]] status decode(void* out, dtype out_type, std::uint64_t out_bytes, unsigned threads = 1) const noexcept {
    if (status_ != status::success) return status_;
    const tile_layout& l = view_.layout();
    if (!can_decode_to(view_.header(), out_type)) return status::unsupported;
    if (l.elements() == 0) return status::success;
    if (out == nullptr || out_bytes / dtype_size(out_type) < l.elements()) return status::invalid_argument;
    try {
      const std::uint64_t count = view_.header().tile_count;
      std::vector<status> results(count, status::success);
      // Where the AVX2 decoder runs, tiles go in pairs: it decodes two side by side (rans_avx2.hpp).
      const bool pairs = simd_pairs();
      ::tilecodec::detail::parallel_for(pairs ? (count + 1) / 2 : count, threads, [&](std::uint64_t k, unsigned) {
        thread_local std::vector<std::uint16_t> symbols;
        const std::uint64_t t0 = pairs ? 2 * k : k;
        const tile_box b0 = l.box(t0);
        if (!pairs || t0 + 1 == count) {
          symbols.resize(b0.size());
          results[t0] = decode_tile_into(t0, b0, symbols.data(), out, out_type, l.cols, b0.row0, b0.col0);
          return;
        }
#if TILECODEC_HAS_AVX2_DECODER
        const std::uint64_t t1 = t0 + 1;
        const tile_box b1 = l.box(t1);
        symbols.resize(std::size_t(b0.size()) + b1.size());
        std::uint16_t* const s0 = symbols.data();
        std::uint16_t* const s1 = s0 + b0.size();
        const tensor_header& h = view_.header();
        rans_decode_tile_pair_avx2(table_.data(), h.params.prob_bits, symbol_bits(h.alphabet), view_.tile_data(t0),
                                   view_.tile_bytes(t0), s0, b0.size(), results[t0], view_.tile_data(t1),
                                   view_.tile_bytes(t1), s1, b1.size(), results[t1]);
        if (results[t0] == status::success) write_tile(t0, b0, s0, out, out_type, l.cols, b0.row0, b0.col0);
        if (results[t1] == status::success) write_tile(t1, b1, s1, out, out_type, l.cols, b1.row0, b1.col0);
#endif
      });
      for (status s : results)
        if (s != status::success) return s;
      return status::success;
    } catch (...) {
      return status::out_of_memory;
    }
  }

 private:
  // Decodes tile t's symbols, then writes values at out[(row_off + r) * ld + col_off + c].
  status decode_tile_into(std::uint64_t t, const tile_box& b, std::uint16_t* symbols, void* out, dtype out_type,
                          std::uint64_t ld, std::uint64_t row_off, std::uint64_t col_off) const {
    const tensor_header& h = view_.header();
    const std::uint32_t n = b.size();
    const std::uint8_t* tile = view_.tile_data(t);
    if (h.coding == plane_coding::rans) {
      const status s = decode_symbols(tile, view_.tile_bytes(t), symbols, n);
      if (s != status::success) return s;
    } else if (h.coding == plane_coding::rans_lanes) {  // coder/rans_lanes.hpp
      const status s = rans_lanes_decode_tile(h.params.lanes, table_.data(), h.params.prob_bits, symbol_bits(h.alphabet),
                                              tile, view_.tile_bytes(t), symbols, n);
      if (s != status::success) return s;
    } else if (h.coding == plane_coding::fixed) {  // coder/fixed.hpp
      const fixed_code code{h.params.prob_bits, ::tilecodec::detail::get_u16(view_.table()), h.alphabet};
      const std::uint8_t* raw = h.alphabet == 512 ? view_.raw_tile(t) : nullptr;  // escape values are checked against it
      const status s = fixed_decode_tile(code, h.params.order, b.height, b.width, tile, view_.tile_bytes(t), symbols, raw);
      if (s != status::success) return s;
    } else if (h.coding == plane_coding::fixed_marked) {  // coder/fixed_marked.hpp
      const fixed_code code{h.params.prob_bits, ::tilecodec::detail::get_u16(view_.table()), h.alphabet};
      const status s = fixed_marked_decode_tile(code, n, tile, view_.tile_bytes(t), symbols);
      if (s != status::success) return s;
    } else {
      for (std::uint32_t i = 0; i < n; ++i) symbols[i] = static_cast<std::uint16_t>(stored_symbol(tile, h.alphabet, i));
    }
    write_tile(t, b, symbols, out, out_type, ld, row_off, col_off);
    return status::success;
  }

  // Writes tile t's values from its decoded symbols (in symbol order; the buffer is reordered).
  void write_tile(std::uint64_t t, const tile_box& b, std::uint16_t* symbols, void* out, dtype out_type,
                  std::uint64_t ld, std::uint64_t row_off, std::uint64_t col_off) const {
    reorder_tile_in_place(view_.header().params.order, b.height, b.width, symbols, 2, false);  // mma order: back to row-major
    write_values(t, b, symbols, out, out_type, ld, row_off, col_off);
  }

  // Does decode() hand tiles to the AVX2 pair decoder?
  [[nodiscard]] bool simd_pairs() const {
#if TILECODEC_HAS_AVX2_DECODER
    return view_.header().coding == plane_coding::rans && view_.header().params.lanes == 32 && use_simd_ &&
           ::tilecodec::detail::cpu_has_avx2();
#else
    return false;
#endif
  }

  status decode_symbols(const std::uint8_t* tile, std::uint64_t bytes, std::uint16_t* symbols, std::uint32_t n) const {
    const std::uint32_t p = view_.header().params.prob_bits, sb = symbol_bits(view_.header().alphabet);
    const rans_decode_entry* tab = table_.data();
#if TILECODEC_HAS_AVX2_DECODER
    if (view_.header().params.lanes == 32 && use_simd_ && ::tilecodec::detail::cpu_has_avx2())
      return rans_decode_tile_avx2(tab, p, sb, tile, bytes, symbols, n);
#endif
    switch (view_.header().params.lanes) {
      case 1: return rans_decode_tile<1>(tab, p, sb, tile, bytes, symbols, n);
      case 2: return rans_decode_tile<2>(tab, p, sb, tile, bytes, symbols, n);
      case 4: return rans_decode_tile<4>(tab, p, sb, tile, bytes, symbols, n);
      case 8: return rans_decode_tile<8>(tab, p, sb, tile, bytes, symbols, n);
      case 16: return rans_decode_tile<16>(tab, p, sb, tile, bytes, symbols, n);
      case 32: return rans_decode_tile<32>(tab, p, sb, tile, bytes, symbols, n);
      case 128: return rans_decode_tile<128>(tab, p, sb, tile, bytes, symbols, n);
      default: return rans_decode_tile<64>(tab, p, sb, tile, bytes, symbols, n);
    }
  }

  void write_values(std::uint64_t t, const tile_box& b, const std::uint16_t* symbols, void* out, dtype out_type,
                    std::uint64_t ld, std::uint64_t row_off, std::uint64_t col_off) const {
    const tensor_header& h = view_.header();
    const tile_layout& l = view_.layout();
    const std::uint32_t w = b.width;
    if (h.params.quant == quant::kind::lossless) {
      const std::uint8_t* raw = view_.raw_tile(t);
      // fp32 (3 raw bytes an element) and the byte split (one) read the plane as it is, after an
      // out-of-place reorder in the mma order; the 7-bit plane is unpacked into a scratch below.
      const bool split_bytes = h.source != dtype::f32 && lossless16_bytes(h.alphabet);
      thread_local std::vector<std::uint8_t> raw_rows;
      if ((h.source == dtype::f32 || split_bytes) && tile_uses_mma_order(h.params.order, b.height, b.width)) {
        const std::uint32_t step = h.source == dtype::f32 ? 3u : 1u;
        raw_rows.resize(std::size_t(b.size()) * step);
        reorder_tile(h.params.order, b.height, b.width, raw, raw_rows.data(), step, false);
        raw = raw_rows.data();
      }
      if (h.source == dtype::f32) {
        for (std::uint32_t r = 0; r < b.height; ++r) {
          const std::uint16_t* sym = symbols + std::uint64_t(r) * w;
          const std::uint8_t* rr = raw + std::uint64_t(r) * w * 3;
          std::uint32_t* o = static_cast<std::uint32_t*>(out) + (row_off + r) * ld + col_off;
          for (std::uint32_t c = 0; c < w; ++c) {
            const std::uint32_t bits = rr[3 * c] | (std::uint32_t(rr[3 * c + 1]) << 8) | (std::uint32_t(rr[3 * c + 2]) << 16);
            o[c] = lossless32_join(sym[c], bits);
          }
        }
        return;
      }
      // 16-bit: the raw bytes (byte split) or the unpacked 7-bit raw values, then join row by row.
      const std::uint8_t* values = raw;
      if (!split_bytes) {
        thread_local std::vector<std::uint8_t> raw7;
        const std::uint32_t n = b.size();
        raw7.resize(n + raw7_group);
        const std::uint32_t groups = (n + raw7_group - 1) / raw7_group;
        // All but the plane's very last group read 8 bytes at once (the 8th belongs to the next
        // group or section): the low 7 bits of each byte are values 0..6, and one multiply
        // gathers the 7 top bits into value 7 (bit j of the product's top byte = top bit of byte j).
        const bool last_tile = t + 1 == h.tile_count;
        const std::uint32_t wide = last_tile ? groups - 1 : groups;
        std::uint8_t* const unpacked7 = raw7.data();  // hoisted: the thread_local is not reread per group
        for (std::uint32_t g = 0; g < wide; ++g) {
          std::uint64_t v;
          std::memcpy(&v, raw + std::uint64_t(g) * raw7_group_bytes, 8);
          const std::uint64_t flags = (v >> 7) & 0x0001010101010101ull;
          const std::uint64_t top = (flags * 0x0102040810204080ull) >> 56;
          const std::uint64_t unpacked = (v & 0x007f7f7f7f7f7f7full) | (top << 56);
          std::memcpy(unpacked7 + std::uint64_t(g) * raw7_group, &unpacked, 8);
        }
        for (std::uint32_t g = wide; g < groups; ++g)
          for (std::uint32_t j = 0; j < raw7_group; ++j)
            raw7[g * raw7_group + j] = static_cast<std::uint8_t>(raw7_unpack(raw + std::uint64_t(g) * raw7_group_bytes, j));
        reorder_tile_in_place(h.params.order, b.height, b.width, unpacked7, 1, false);
        values = unpacked7;
      }
      // A tile row is a short piece of a long output row: its cache lines are requested for
      // writing a few rows ahead, which the hardware prefetcher would not do.
      constexpr std::uint32_t ahead = 4;
      std::uint16_t* const o0 = static_cast<std::uint16_t*>(out) + row_off * ld + col_off;
      for (std::uint32_t r = 0; r < b.height; ++r) {
#if defined(__GNUC__)
        if (r + ahead < b.height)
          for (std::uint32_t c = 0; c < w; c += 32) __builtin_prefetch(o0 + (r + ahead) * ld + c, 1);
#endif
        const std::uint16_t* sym = symbols + std::uint64_t(r) * w;
        const std::uint8_t* rr = values + std::uint64_t(r) * w;
        std::uint16_t* o = o0 + r * ld;
        if (split_bytes)
          for (std::uint32_t c = 0; c < w; ++c) o[c] = lossless16_byte_join(sym[c], rr[c]);
        else
          for (std::uint32_t c = 0; c < w; ++c) o[c] = lossless16_join(sym[c], rr[c]);
      }
      return;
    }
    const bool int8 = h.params.quant == quant::kind::int8_rowwise;
    const std::uint64_t gpr = int8 ? 1 : (l.cols + h.params.group_size - 1) / h.params.group_size;
    for (std::uint32_t r = 0; r < b.height; ++r) {
      const std::uint16_t* sym = symbols + std::uint64_t(r) * w;
      const std::uint64_t row = b.row0 + r;
      const std::uint64_t dst = (row_off + r) * ld + col_off;
      if (out_type == dtype::i8) {
        std::int8_t* o = static_cast<std::int8_t*>(out) + dst;
        for (std::uint32_t c = 0; c < w; ++c)
          o[c] = static_cast<std::int8_t>(int8 ? int8_code(sym[c]) : int4_code(sym[c]));
        continue;
      }
      // One scale per run of columns: the row (int8) or a group of columns (int4).
      const int offset = int(int8 ? int8_symbol_offset : int4_symbol_offset);
      for (std::uint32_t c = 0; c < w;) {
        std::uint32_t run = w - c;
        float scale;
        if (int8) {
          scale = bits_float(::tilecodec::detail::get_u32(view_.scales() + 4 * row));
        } else {
          const std::uint64_t col = b.col0 + c, g = col / h.params.group_size;
          run = static_cast<std::uint32_t>(std::min<std::uint64_t>(run, (g + 1) * h.params.group_size - col));
          scale = f16_to_float(::tilecodec::detail::get_u16(view_.scales() + 2 * (row * gpr + g)));
        }
        dequantize_run(sym + c, run, offset, scale, out_type, out, dst + c);
        c += run;
      }
    }
  }

  // out[dst + c] = (sym[c] - offset) * scale as out_type, for c < n. The dtype switch sits
  // outside the loops so that they vectorise (f16's rounding stays scalar).
  static void dequantize_run(const std::uint16_t* sym, std::uint32_t n, int offset, float scale, dtype out_type,
                             void* out, std::uint64_t dst) {
    if (out_type == dtype::f32) {
      float* o = static_cast<float*>(out) + dst;
      for (std::uint32_t c = 0; c < n; ++c) o[c] = dequantize(int(sym[c]) - offset, scale);
    } else if (out_type == dtype::bf16) {
      std::uint16_t* o = static_cast<std::uint16_t*>(out) + dst;
      for (std::uint32_t c = 0; c < n; ++c) o[c] = float_to_bf16(dequantize(int(sym[c]) - offset, scale));
    } else {
      std::uint16_t* o = static_cast<std::uint16_t*>(out) + dst;
      for (std::uint32_t c = 0; c < n; ++c) o[c] = float_to_f16(dequantize(int(sym[c]) - offset, scale));
    }
  }

  encoded_tensor_view view_;
  std::vector<rans_decode_entry> table_;
  status status_ = status::success;
  bool use_simd_ = true;
};

// One-call forms.
[[nodiscard]] inline status decode(const encoded_tensor_view& view, void* out, dtype out_type, std::uint64_t out_bytes,
                                   unsigned threads = 1) noexcept {
  try {
    return tensor_decoder(view).decode(out, out_type, out_bytes, threads);
  } catch (...) {
    return status::out_of_memory;
  }
}

[[nodiscard]] inline status decode_tile(const encoded_tensor_view& view, std::uint64_t tile, void* out, dtype out_type,
                                        std::uint64_t ld, std::uint64_t out_bytes) noexcept {
  try {
    return tensor_decoder(view).decode_tile(tile, out, out_type, ld, out_bytes);
  } catch (...) {
    return status::out_of_memory;
  }
}

}  // namespace host
}  // namespace tilecodec
