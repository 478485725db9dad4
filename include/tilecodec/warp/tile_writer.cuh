// tilecodec/warp/tile_writer.cuh: turns a tile's decoded symbols into output values (join with the
// raw plane, integer codes, or dequantized floats) and writes them, 16 consecutive symbols per
// lane, with 16-byte stores where the tile's shape and the destination's alignment allow.
// Used by the warp and block tile decoders and by device::decode_async; bit-exact with the host
// decoder because both follow format/planes.hpp and use dtype.hpp's conversions.
#pragma once

#include <cstdint>

#include "../device/tensor_ref.hpp"
#include "../dtype.hpp"
#include "../format/planes.hpp"
#include "warp_intrinsics.cuh"

namespace tilecodec {
namespace detail {

// What one output value is made of. Chosen once per tensor and output dtype.
enum class emit_kind : std::uint8_t {
  lossless16,    // bf16/fp16: 9-bit symbol joined with a packed 7-bit raw value
  lossless16_bytes,  // bf16/fp16, the byte split: 8-bit symbol joined with a raw byte
  lossless32,    // fp32: 8-bit symbol joined with three raw bytes
  int8_codes,    // int8_rowwise -> i8: symbol - 128
  int4_codes,    // int4_group  -> i8: symbol - 8
  int8_dequant,  // int8_rowwise -> f32/f16/bf16: code * row scale
  int4_dequant,  // int4_group  -> f32/f16/bf16: code * group scale (fp16)
};

TILECODEC_DEV emit_kind choose_emit(const device::tensor_ref& t, dtype out) {
  if (t.quant == quant::kind::lossless) {
    if (t.source == dtype::f32) return emit_kind::lossless32;
    return lossless16_bytes(t.alphabet) ? emit_kind::lossless16_bytes : emit_kind::lossless16;
  }
  const bool int8 = t.quant == quant::kind::int8_rowwise;
  if (out == dtype::i8) return int8 ? emit_kind::int8_codes : emit_kind::int4_codes;
  return int8 ? emit_kind::int8_dequant : emit_kind::int4_dequant;
}

// Sixteen symbols of one lane: bytes (alphabets of 16 and 256 symbols) or 16-bit halves (512).
struct sym16 {
  u32x4 a;  // bytes 0..15, or 16-bit symbols 0..7
  u32x4 b;  // 16-bit symbols 8..15 (512-symbol alphabets only)
};

// Writes a tile's values, window by window (a window: up to 512 consecutive symbols of the tile,
// lane t taking symbols [16t, 16t + 16) of it). Destination element (r, c) of the tile is
// out[r * ld + c], where `out` is any generic pointer (global or shared memory).
class tile_writer {
 public:
  static constexpr std::uint32_t window = 512;
  static constexpr std::uint32_t per_lane = 16;

  // Per tensor.
  TILECODEC_DEV void set_tensor(const device::tensor_ref& t, dtype out_type) {
    kind_ = choose_emit(t, out_type);
    out_type_ = out_type;
    osize_ = static_cast<std::uint32_t>(dtype_size(out_type));
    raw_ = t.raw_plane();
    scales_ = t.scales();
    group_ = t.group_size;
    groups_per_row_ = t.quant == quant::kind::int4_group ? (t.layout.cols + t.group_size - 1) / t.group_size : 0;
  }

  // Per tile: `out` is where the tile's element (0, 0) goes, rows `ld` elements apart. This warp
  // will emit windows first_window, first_window + window_stride, ... in that order.
  TILECODEC_DEV void begin_tile(const device::tile_ref& tile, void* out, std::uint64_t ld,
                                std::uint32_t first_window = 0, std::uint32_t window_stride = 1) {
    begin_tile_at(tile, out, ld, first_window * window + per_lane * lane_id(), window_stride * window);
  }

  // The same for any layout of a window's symbols over the lanes: this lane's first 16 symbols are
  // tile symbols [first, first + 16) (first a multiple of 16), and each emit moves it `stride`
  // symbols on.
  TILECODEC_DEV void begin_tile_at(const device::tile_ref& tile, void* out, std::uint64_t ld, std::uint32_t first,
                                   std::uint32_t stride) {
    out_ = static_cast<std::uint8_t*>(out);
    ld_ = ld;
    w_ = tile.box.width;
    n_ = tile.box.size();
    row0_ = tile.box.row0;
    col0_ = tile.box.col0;
    raw_tile_ = raw_ + tile.raw_start;
    const std::uintptr_t oa = reinterpret_cast<std::uintptr_t>(out);
    // 16 whole symbols of one row per lane, 16-byte aligned stores, int4 groups never split.
    fast_ = w_ % per_lane == 0 && col0_ % per_lane == 0 && (ld * osize_) % 16 == 0 && oa % 16 == 0;
    // The two outputs that need no scale and no conversion: one test per window instead of the
    // switch on the kind (PERFORMANCE.md 3.9).
    direct_narrow_ = fast_ && kind_ == emit_kind::int8_codes;
    direct_wide_ = fast_ && kind_ == emit_kind::lossless16;
    i_ = first;
    stride_ = stride;
    r_ = first / w_;
    c_ = first % w_;
    step_r_ = stride_ / w_;
    step_c_ = stride_ % w_;
    // A stride of whole rows (every team window of 128- to 512-wide tiles) moves the destination
    // by a constant: one 64-bit add per window instead of a row/column wrap and a multiply.
    whole_rows_ = step_c_ == 0;
    p_ = dst(r_, c_);
    dp_ = std::uint64_t(step_r_) * ld_ * osize_;
    if (kind_ == emit_kind::lossless16) prefetch_raw(first);
  }

  // The next window, of which the first m symbols are valid (lane t holding its symbols
  // [16 t, 16 t + 16) in `sym`, see sym16; the layout of begin_tile()). `Wide`: 16-bit symbols
  // (the 512-symbol alphabet of 16-bit lossless tensors, and only theirs), whose bits 9..15 may
  // hold garbage and are ignored. A compile-time width keeps the other kinds' code out of the loop.
  template <bool Wide>
  TILECODEC_DEV void emit(std::uint32_t m, const sym16& sym) {
    const std::uint32_t first = per_lane * lane_id();
    emit_lane<Wide>(first < m ? (m - first < per_lane ? m - first : per_lane) : 0u, sym);
  }

  // A whole window (all 512 symbols the tile's): emit(window, sym) without the per-lane count.
  template <bool Wide>
  TILECODEC_DEV void emit_full(const sym16& sym) {
    emit_lane<Wide>(per_lane, sym);
  }

  // Where a staged loop may copy this tile's raw plane from, a window (448 bytes: 512 packed 7-bit
  // values) at a time, 16 bytes per copy: the tile's raw bytes when the values are 16-bit lossless
  // written on the one-test path and the bytes are 16-byte aligned (every tile whose tiles before
  // it hold a multiple of 128 elements); else nullptr (emit_full reads them itself).
  TILECODEC_DEV const std::uint8_t* staged_raw_source() const {
    return direct_wide_ && reinterpret_cast<std::uintptr_t>(raw_tile_) % 16u == 0 ? raw_tile_ : nullptr;
  }
  static constexpr std::uint32_t raw_window_bytes = window / raw7_group * raw7_group_bytes;

  // emit_full<true> of a tile that staged_raw_source() took: this window's raw bytes were copied
  // to `raw` in shared memory (16-byte aligned). Lane t's 14 bytes start at raw + 14 t, 0 or 2
  // bytes into a word, so four aligned words hold them.
  TILECODEC_DEV void emit_full_staged_raw(const sym16& sym, saddr raw) {
    const saddr a = raw + 14u * lane_id();
    const saddr w = a & ~saddr(3);
    const std::uint32_t sh = 8u * static_cast<std::uint32_t>(a & 3u);
    const std::uint32_t w0 = lds_u32(w), w1 = lds_u32(w + 4), w2 = lds_u32(w + 8), w3 = lds_u32(w + 12);
    store_lossless16(p_, funnel(w0, w1, sh), funnel(w1, w2, sh), funnel(w2, w3, sh), funnel(w3, 0u, sh), sym);
    advance();
  }

  // This lane's 16 symbols at its position (begin_tile_at), as many as the tile has left.
  template <bool Wide>
  TILECODEC_DEV void emit_next(const sym16& sym) {
    emit_lane<Wide>(i_ < n_ ? (n_ - i_ < per_lane ? n_ - i_ : per_lane) : 0u, sym);
  }

 private:
  // Packed 7-bit raw values of 16 elements starting at element i0 (a multiple of 16) are 14 bytes
  // at raw_tile + 14 * (i0 / 16); they are read as five aligned words (the bytes around them lie
  // inside the tensor's raw plane or the sections after it). One window ahead their lines are
  // prefetched into L1: a prefetch holds no register, so nothing can spill and wait on it.
  TILECODEC_DEV void prefetch_raw(std::uint32_t i0) {
    if (!fast_ || i0 + per_lane > n_) return;
    const std::uintptr_t a = (reinterpret_cast<std::uintptr_t>(raw_tile_) + 14u * (i0 / per_lane)) & ~std::uintptr_t(3);
    prefetch_l1(reinterpret_cast<const void*>(a));
    prefetch_l1(reinterpret_cast<const void*>(a + 16));
  }

  TILECODEC_DEV std::uint8_t* dst(std::uint32_t r, std::uint32_t c) const {
    return out_ + (std::uint64_t(r) * ld_ + c) * osize_;
  }
  TILECODEC_DEV float row_scale(std::uint32_t r) const {
    return bits_float(*reinterpret_cast<const std::uint32_t*>(scales_ + 4u * (row0_ + r)));
  }
  TILECODEC_DEV float group_scale(std::uint32_t r, std::uint32_t c) const {
    const std::uint64_t g = (row0_ + r) * groups_per_row_ + (col0_ + c) / group_;
    return f16_to_float(*reinterpret_cast<const std::uint16_t*>(scales_ + 2u * g));
  }

  // Raw values 0..3 and 4..7 (one per byte) of a packed group: lo4 = bytes 0..3, hi3 = bytes 4..6.
  static TILECODEC_DEV void unpack7(std::uint32_t lo4, std::uint32_t hi3, std::uint32_t& v03, std::uint32_t& v47) {
    // Value 7 gathers the top bits of the 7 bytes: bits spaced 8 apart are moved next to each
    // other by one multiply (no two partial products meet, so no carries).
    const std::uint32_t t03 = (((lo4 >> 7) & 0x01010101u) * 0x01020408u) >> 24;
    const std::uint32_t t46 = (((hi3 >> 7) & 0x00010101u) * 0x01020408u) >> 24;
    v03 = lo4 & 0x7f7f7f7fu;
    v47 = (hi3 & 0x007f7f7fu) | (((t03 & 0xfu) | ((t46 & 0x7u) << 4)) << 24);
  }

  // Two 16-bit lossless values from two raw bytes (bytes sel of r) and a pair of 9-bit symbols.
  static TILECODEC_DEV std::uint32_t join2(std::uint32_t r, std::uint32_t sel, std::uint32_t sym_pair) {
    const std::uint32_t r16 = byte_perm(r, 0u, sel);  // raw values in bits 0..6 of each half
    // sign: bit 6 -> bit 15 (adding 0x7fc0 = 0x8000 - 0x40 moves it), then the symbol above bit 6
    const std::uint32_t raw_part = (r16 & 0x00400040u) * 0x1ffu + r16;
    return (sym_pair & 0x01ff01ffu) * 64u + raw_part;
  }

  // Writes the first `count` of this lane's symbols at its position, then moves it on.
  template <bool Wide>
  TILECODEC_DEV void emit_lane(std::uint32_t count, const sym16& sym) {
    if (count == per_lane && (Wide ? direct_wide_ : direct_narrow_)) {
      if constexpr (Wide) {
        emit_lossless16(i_, sym);
      } else {
        store_int8_codes(p_, sym.a);
      }
    } else if (count > 0) {
      if (fast_ && count == per_lane) emit_fast<Wide>(i_, sym); else emit_slow(i_, count, sym, Wide);
    }
    advance();
    if (Wide && kind_ == emit_kind::lossless16) prefetch_raw(i_);
  }

  // Moves this lane's position one emit on.
  TILECODEC_DEV void advance() {
    i_ += stride_;
    r_ += step_r_;
    if (whole_rows_) {
      p_ += dp_;
    } else {
      c_ += step_c_;
      if (c_ >= w_) {
        c_ -= w_;
        ++r_;
      }
      p_ = dst(r_, c_);
    }
  }

  template <bool Wide>
  TILECODEC_DEV void emit_fast(std::uint32_t i0, const sym16& sym) {
    if constexpr (Wide) {
      if (kind_ == emit_kind::lossless16) emit_lossless16(i0, sym); else emit_slow(i0, per_lane, sym, true);
    } else {
      emit_narrow(i0, sym);
    }
  }

  // The 16 bytes at raw-plane address a (any alignment) as four words, read as five aligned ones:
  // the bytes around them lie inside the tensor's raw plane or the sections after it.
  static TILECODEC_DEV void load_raw16(std::uintptr_t a, std::uint32_t (&r)[4]) {
    const std::uint32_t* p = reinterpret_cast<const std::uint32_t*>(a & ~std::uintptr_t(3));
    const std::uint32_t sh = 8u * static_cast<std::uint32_t>(a & 3u);
    const std::uint32_t w0 = p[0], w1 = p[1], w2 = p[2], w3 = p[3], w4 = p[4];
    r[0] = funnel(w0, w1, sh), r[1] = funnel(w1, w2, sh), r[2] = funnel(w2, w3, sh), r[3] = funnel(w3, w4, sh);
  }

  TILECODEC_DEV void emit_lossless16(std::uint32_t i0, const sym16& sym) {
    std::uint32_t r[4];
    load_raw16(reinterpret_cast<std::uintptr_t>(raw_tile_) + 14u * (i0 / per_lane), r);
    store_lossless16(p_, r[0], r[1], r[2], r[3], sym);
  }

  // 16 values from the 14 packed raw bytes b0..b3[0..1] (b3's upper bytes ignored) and the symbols.
  static TILECODEC_DEV void store_lossless16(std::uint8_t* d, std::uint32_t b0, std::uint32_t b1, std::uint32_t b2,
                                             std::uint32_t b3, const sym16& sym) {
    // group 0: bytes 0..6 = b0, b1[0..2]; group 1: bytes 7..13 = b1[3], b2, b3[0..1]
    std::uint32_t r0, r1, r2, r3;
    unpack7(b0, b1 & 0xffffffu, r0, r1);
    unpack7(byte_perm(b1, b2, 0x6543), byte_perm(b2, b3, 0x0543) & 0xffffffu, r2, r3);
    const std::uint32_t sp[8] = {sym.a.x, sym.a.y, sym.a.z, sym.a.w, sym.b.x, sym.b.y, sym.b.z, sym.b.w};
    const std::uint32_t rv[4] = {r0, r1, r2, r3};
    std::uint32_t o[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) o[k] = join2(rv[k / 2], (k & 1) ? 0x4342u /* raw bytes 2, 3 */ : 0x4140u /* raw bytes 0, 1 */, sp[k]);
    st16(d, u32x4{o[0], o[1], o[2], o[3]});
    st16(d + 16, u32x4{o[4], o[5], o[6], o[7]});
  }

  // 16 values of the byte split from this lane's 16 byte symbols and the 16 raw bytes at
  // raw_tile + i0. Per pair of values: the symbols' bytes into the two halves, the raw bytes with
  // their sign copied into the byte above, one shift and one LOP3.
  TILECODEC_DEV void emit_lossless16_bytes(std::uint32_t i0, const u32x4& s) {
    std::uint32_t raw[4];
    load_raw16(reinterpret_cast<std::uintptr_t>(raw_tile_) + i0, raw);
    const std::uint32_t sym[4] = {s.x, s.y, s.z, s.w};
    std::uint32_t o[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const std::uint32_t lo_sel = (k & 1) ? 0x4342u : 0x4140u;          // bytes 0, 1 or 2, 3 into the halves
      const std::uint32_t r = byte_perm_msb(raw[k / 2], 0u, (k & 1) ? 0xb3a2u : 0x9180u);  // byte, its sign
      o[k] = (r & 0x807f807fu) | (byte_perm(sym[k / 2], 0u, lo_sel) << 7);
    }
    st16(p_, u32x4{o[0], o[1], o[2], o[3]});
    st16(p_ + 16, u32x4{o[4], o[5], o[6], o[7]});
  }

  // 16 int8 symbols as codes (symbol - 128: the top bit flipped).
  static TILECODEC_DEV void store_int8_codes(std::uint8_t* d, const u32x4& s) {
    st16(d, u32x4{s.x ^ 0x80808080u, s.y ^ 0x80808080u, s.z ^ 0x80808080u, s.w ^ 0x80808080u});
  }

  // Byte symbols: codes, dequantized values, or (element by element) fp32 lossless.
  TILECODEC_DEV void emit_narrow(std::uint32_t i0, const sym16& sym) {
    std::uint8_t* d = p_;
    const u32x4& s = sym.a;
    switch (kind_) {
      case emit_kind::int8_codes:
        store_int8_codes(d, s);
        return;
      case emit_kind::int4_codes:
        st16(d, u32x4{vsub4(s.x, 0x08080808u), vsub4(s.y, 0x08080808u), vsub4(s.z, 0x08080808u), vsub4(s.w, 0x08080808u)});
        return;
      case emit_kind::int8_dequant:
      case emit_kind::int4_dequant: {
        const bool int8 = kind_ == emit_kind::int8_dequant;
        const float scale = int8 ? row_scale(r_) : group_scale(r_, c_);  // a group holds 32+ aligned columns
        const int offset = int8 ? int(int8_symbol_offset) : int(int4_symbol_offset);
        const std::uint32_t w4[4] = {s.x, s.y, s.z, s.w};
        float v[16];
#pragma unroll
        for (int k = 0; k < 16; ++k) v[k] = dequantize(int((w4[k / 4] >> (8 * (k % 4))) & 0xffu) - offset, scale);
        if (out_type_ == dtype::f32) {
#pragma unroll
          for (int q = 0; q < 4; ++q)
            st16(d + 16 * q, u32x4{float_bits(v[4 * q]), float_bits(v[4 * q + 1]), float_bits(v[4 * q + 2]),
                                   float_bits(v[4 * q + 3])});
        } else {
          std::uint32_t h[8];
          const bool bf = out_type_ == dtype::bf16;
#pragma unroll
          for (int k = 0; k < 8; ++k) {
            const std::uint32_t a = bf ? float_to_bf16(v[2 * k]) : float_to_f16(v[2 * k]);
            const std::uint32_t b = bf ? float_to_bf16(v[2 * k + 1]) : float_to_f16(v[2 * k + 1]);
            h[k] = a | (b << 16);
          }
          st16(d, u32x4{h[0], h[1], h[2], h[3]});
          st16(d + 16, u32x4{h[4], h[5], h[6], h[7]});
        }
        return;
      }
      case emit_kind::lossless16_bytes:
        emit_lossless16_bytes(i0, s);
        return;
      default:  // lossless32 (lossless16 never has byte symbols)
        emit_slow(i0, per_lane, sym, false);
        return;
    }
  }

  // Any shape and alignment: element by element, following rows. The symbols leave from the low
  // end of a register copy of `sym`, shifted down one symbol a step: symbol_at() with a run-time
  // index made the compiler keep every window's sym16 in local memory (two STL.128 a window on the
  // fast paths too, and an LDL per symbol here).
  TILECODEC_DEV void emit_slow(std::uint32_t i0, std::uint32_t cnt, const sym16& sym, bool wide) {
    std::uint32_t r = r_, c = c_;
    u32x4 a = sym.a, b = sym.b;
    const std::uint32_t bits = wide ? 16u : 8u;
    for (std::uint32_t k = 0; k < cnt; ++k) {
      const std::uint32_t symbol = wide ? a.x & 0x1ffu : a.x & 0xffu;
      a.x = funnel(a.x, a.y, bits);
      a.y = funnel(a.y, a.z, bits);
      a.z = funnel(a.z, a.w, bits);
      a.w = funnel(a.w, b.x, bits);
      b.x = funnel(b.x, b.y, bits);
      b.y = funnel(b.y, b.z, bits);
      b.z = funnel(b.z, b.w, bits);
      b.w >>= bits;
      const std::uint32_t i = i0 + k;
      std::uint8_t* d = dst(r, c);
      switch (kind_) {
        case emit_kind::lossless16:
          *reinterpret_cast<std::uint16_t*>(d) =
              lossless16_join(symbol, raw7_unpack(raw_tile_ + raw7_group_bytes * (i / raw7_group), i % raw7_group));
          break;
        case emit_kind::lossless16_bytes:
          *reinterpret_cast<std::uint16_t*>(d) = lossless16_byte_join(symbol, raw_tile_[i]);
          break;
        case emit_kind::lossless32: {
          const std::uint8_t* p = raw_tile_ + 3u * std::uint64_t(i);
          const std::uint32_t bits = p[0] | (std::uint32_t(p[1]) << 8) | (std::uint32_t(p[2]) << 16);
          *reinterpret_cast<std::uint32_t*>(d) = lossless32_join(symbol, bits);
          break;
        }
        case emit_kind::int8_codes:
          *reinterpret_cast<std::int8_t*>(d) = static_cast<std::int8_t>(int8_code(symbol));
          break;
        case emit_kind::int4_codes:
          *reinterpret_cast<std::int8_t*>(d) = static_cast<std::int8_t>(int4_code(symbol));
          break;
        default: {
          const bool int8 = kind_ == emit_kind::int8_dequant;
          const float v = int8 ? dequantize(int8_code(symbol), row_scale(r)) : dequantize(int4_code(symbol), group_scale(r, c));
          store_float_as(v, out_type_, d, 0);
          break;
        }
      }
      if (++c == w_) {
        c = 0;
        ++r;
      }
    }
  }

  emit_kind kind_;
  dtype out_type_;
  std::uint32_t osize_;
  const std::uint8_t* raw_;
  const std::uint8_t* scales_;
  const std::uint8_t* raw_tile_;
  std::uint32_t group_;
  std::uint64_t groups_per_row_;
  std::uint8_t* out_;
  std::uint64_t ld_;
  std::uint64_t row0_, col0_;
  std::uint32_t w_, n_;
  std::uint32_t i_, r_, c_, step_r_, step_c_, stride_;  // this lane's next symbol, its row and column
  std::uint8_t* p_;                                      // where symbol i_ goes: dst(r_, c_)
  std::uint64_t dp_;                                     // p_'s step when whole_rows_
  bool fast_, whole_rows_, direct_narrow_, direct_wide_;
};

}  // namespace detail
}  // namespace tilecodec
