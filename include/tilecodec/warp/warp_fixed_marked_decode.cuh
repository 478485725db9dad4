// tilecodec/warp/warp_fixed_marked_decode.cuh: one warp decodes windows of a tile coded with
// marked escapes (coding 4, coder/fixed_marked.hpp) in the row-major symbol order into a
// tile_writer. Used by the warp and block tile decoders and by device::decode_async.
//
// A 512-symbol window decodes alone, as for coding 2: lane t takes the 16 codes of window symbols
// [16 t, 16 t + 16) from its coder lane's k words. Code 0 marks an escape, so a lane knows its
// escaped positions from its codes, and where their values are from one warp scan of the lanes'
// counts: window_start[v] + the code-0 positions of the lanes below it. No search, no row table,
// no column compare: the per-window cost of escapes is a scan and one load per escape, where
// coding 2 pays a binary search over its row's entries on every lane (PERFORMANCE.md 3.8).
// Checks: window_start[0] = 0 and the tile's size against window_start[V] once per tile; in
// every window, the warp's count of code-0 positions equals window_start[v + 1] -
// window_start[v] (so window_start never decreases and every value is taken exactly once); every
// value below the alphabet; a value index is never read at or past the tile's escape count.
// device::decode_async takes the staged path (code words and the escape section copied into
// shared memory ahead, as for coding 2, and for 16-bit lossless values the raw plane too); the
// warp and block tile decoders take the window path.
#pragma once

#include <cstdint>
#include <type_traits>

#include "../coder/fixed_marked.hpp"
#include "../device/tensor_ref.hpp"
#include "../status.hpp"
#include "tile_writer.cuh"
#include "warp_fixed_decode.cuh"
#include "warp_intrinsics.cuh"

namespace tilecodec {
namespace detail {

// Where a lane's 16 codes lie in its coder lane's 32-code run of K words: lane t takes half
// t & 1 of the run, marked_half_words<K> words from word marked_half_first<K>(upper), shifted down
// marked_half_shift<K>(upper) bits. A lane loads only those (4 words instead of 7 for k = 7), and
// the two halves differ in their address and shift, not in the code: no selects.
template <int K>
inline constexpr int marked_half_words = (16 * K + 31) / 32;
template <int K>
TILECODEC_DEV std::uint32_t marked_half_first(bool upper) { return upper ? std::uint32_t(16 * K / 32) : 0u; }
template <int K>
TILECODEC_DEV std::uint32_t marked_half_shift(bool upper) { return upper ? std::uint32_t(16 * K % 32) : 0u; }

// The 16 codes (k < 9 bits, so each fits a byte) of one half of a coder lane's 32-code run from
// the half's words w (see marked_half_words) and its shift, as bytes: code j in byte j % 4 of
// b[j / 4]. Four codes (4K bits) at a time: split into two 2K-bit halves 16 bits apart, then each
// half into two codes 8 bits apart, a shift and a mask per step (about 6 instructions per 4
// codes, against a shift, a mask and an insert per code).
template <int K>
TILECODEC_DEV void marked_code_bytes(const std::uint32_t (&w)[marked_half_words<K>], std::uint32_t shift,
                                     std::uint32_t (&b)[4]) {
  static_assert(K >= 1 && K <= 8, "marked escapes need codes narrower than a byte-wide symbol plus one bit");
  constexpr int words = marked_half_words<K>;
  std::uint32_t v[words + 1];
#pragma unroll
  for (int q = 0; q < words; ++q) {
    // Bits past the half's 16 K are never read below, so the last word needs no successor.
    if (16 * K % 32 == 0) v[q] = w[q];  // both halves start at bit 0 of a word
    else v[q] = funnel(w[q], q + 1 < words ? w[q + 1] : 0u, shift);
  }
  v[words] = 0;
  constexpr std::uint32_t half = (1u << (2 * K)) - 1u, code = ((1u << K) - 1u) * 0x00010001u;
#pragma unroll
  for (int m = 0; m < 4; ++m) {
    const int bit = 4 * K * m, q = bit >> 5, off = bit & 31;
    const std::uint32_t x = off + 4 * K <= 32 ? v[q] >> off : funnel(v[q], v[q + 1], std::uint32_t(off));
    if (K == 8) {
      b[m] = x;
    } else {
      const std::uint32_t y = (x & half) | ((x << (16 - 2 * K)) & (half << 16));
      b[m] = (y & code) | ((y << (8 - K)) & (code << 8));
    }
  }
}

// What a code's byte is added to for its symbol: first - 1 in every byte (or every 16-bit half
// when `wide`). Code-0 bytes are set to 1 first, so with first = 0 the add is a subtraction of 1
// per field that never borrows.
TILECODEC_DEV std::uint32_t marked_symbol_add(const fixed_code& code, bool wide) {
  const std::uint32_t ones = wide ? 0x00010001u : 0x01010101u;
  return code.first >= 1 ? (code.first - 1u) * ones : 0u - ones;
}

// This lane's 16 symbols from their code bytes b (the first `valid` of them the tile's), packed
// as the writer takes them; code-0 positions hold a placeholder. zero[q]: 0x80 in byte j where
// code 4 q + j is 0 and valid. Returns the count of those.
template <bool Wide>
TILECODEC_DEV std::uint32_t marked_lane_symbols(std::uint32_t (&b)[4], std::uint32_t valid, std::uint32_t add, sym16& out,
                                                std::uint32_t (&zero)[4]) {
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    // 0x80 in each zero byte: the low seven bits plus 0x7f carry into bit 7 unless all are 0.
    zero[q] = ~(((b[q] & 0x7f7f7f7fu) + 0x7f7f7f7fu) | b[q]) & 0x80808080u;
    b[q] |= zero[q] >> 7;
  }
  if (valid < 16) {  // the tile's last symbols: positions past n are not the tile's (a branch, not
#pragma unroll       // selects in every window)
    for (int q = 0; q < 4; ++q) {
      const int left = int(valid) - 4 * q;  // valid codes in this word
      if (left < 4) zero[q] = left <= 0 ? 0u : zero[q] & ((1u << (8 * left)) - 1u);
    }
  }
  std::uint32_t count = 0;
#pragma unroll
  for (int q = 0; q < 4; ++q) count += popc(zero[q]);
  if constexpr (Wide) {
    out = sym16{u32x4{byte_perm(b[0], 0u, 0x4140u) + add, byte_perm(b[0], 0u, 0x4342u) + add,
                      byte_perm(b[1], 0u, 0x4140u) + add, byte_perm(b[1], 0u, 0x4342u) + add},
                u32x4{byte_perm(b[2], 0u, 0x4140u) + add, byte_perm(b[2], 0u, 0x4342u) + add,
                      byte_perm(b[3], 0u, 0x4140u) + add, byte_perm(b[3], 0u, 0x4342u) + add}};
  } else {
    out = sym16{u32x4{b[0] + add, b[1] + add, b[2] + add, b[3] + add}, u32x4{0u, 0u, 0u, 0u}};
  }
  return count;
}

// Window v's escapes patched into every lane's symbols. `Escapes` reads the tile's escape section:
// start(v) = window_start[v], value(e), and count (E). All lanes call it and get the same answer;
// false: the window's code-0 count disagrees with window_start, or a value is bad.
template <bool Wide, class Escapes>
TILECODEC_DEV bool marked_window_escapes(const Escapes& esc, std::uint32_t v, std::uint32_t count,
                                         const std::uint32_t (&zero)[4], std::uint32_t alphabet, sym16& out) {
  const std::uint32_t e0 = esc.start(v), e1 = esc.start(v + 1);
  std::uint32_t before = 0;
  if (__any_sync(full_warp_mask, count != 0)) {
    // The counts of the lanes below, one ballot per bit of the count (0..16): five independent
    // votes instead of a five-step chain of shuffles (PERFORMANCE.md 3.9).
    const std::uint32_t below = lanemask_lt();
#pragma unroll
    for (int bit = 0; bit < 5; ++bit) before += popc(__ballot_sync(full_warp_mask, (count >> bit) & 1u) & below) << bit;
  }
  // The last lane's before + count is the warp's total (unsigned: a decreasing window_start never
  // matches); __all_sync below spreads its answer.
  bool ok = lane_id() != 31 || before + count == e1 - e0;
  if (count != 0 && ok) {
    std::uint32_t h[8] = {out.a.x, out.a.y, out.a.z, out.a.w, out.b.x, out.b.y, out.b.z, out.b.w};
    std::uint32_t e = e0 + before;
    // One loop over the lane's escaped positions (bit j: symbol j), not one per 4-symbol word: the
    // warp runs it as often as its busiest lane has escapes (usually once), where four loops ran
    // once per word that any lane had an escape in. Bits 7, 15, 23, 31 of zero[q] go to bits
    // 4q..4q+3 with one multiply (no two partial products meet).
    std::uint32_t pos = 0;
#pragma unroll
    for (int q = 0; q < 4; ++q) pos |= ((((zero[q] >> 7) * 0x10204080u) >> 28) << (4 * q));
    constexpr std::uint32_t bits = Wide ? 16u : 8u, per_word = 32u / bits;
    for (; pos != 0; pos &= pos - 1u, ++e) {
      const std::uint32_t j = std::uint32_t(__ffs(pos) - 1);  // 0..15, in symbol order
      std::uint32_t value = 0;
      if (e < esc.count) value = esc.template value<Wide>(e);
      else ok = false;
      ok &= value < alphabet;
      const std::uint32_t word = j / per_word, shift = bits * (j % per_word);
      const std::uint32_t keep = ~(((1u << bits) - 1u) << shift), put = value << shift;
#pragma unroll
      for (std::uint32_t w = 0; w < 4u * (Wide ? 2u : 1u); ++w)
        if (word == w) h[w] = (h[w] & keep) | put;  // selects: no local-memory array
    }
    out = sym16{u32x4{h[0], h[1], h[2], h[3]}, u32x4{h[4], h[5], h[6], h[7]}};
  }
  return __all_sync(full_warp_mask, ok);
}

// The escape section read from the tile in global memory.
struct marked_global_escapes {
  const std::uint8_t* starts;  // window_start
  const std::uint8_t* values;
  std::uint32_t count;
  TILECODEC_DEV std::uint32_t start(std::uint32_t v) const { return reinterpret_cast<const std::uint16_t*>(starts)[v]; }
  template <bool Wide>  // u16 values (512-symbol alphabets), else u8
  TILECODEC_DEV std::uint32_t value(std::uint32_t e) const {
    return Wide ? reinterpret_cast<const std::uint16_t*>(values)[e] : values[e];
  }
};

// The same staged in shared memory: window_start and the first `staged` values (the rest read
// from the tile).
struct marked_staged_escapes {
  saddr starts, values;
  std::uint32_t staged;
  const std::uint8_t* tile_values;
  std::uint32_t count;
  TILECODEC_DEV std::uint32_t start(std::uint32_t v) const { return lds_u16(starts + 2u * v); }
  template <bool Wide>  // u16 values (512-symbol alphabets), else u8
  TILECODEC_DEV std::uint32_t value(std::uint32_t e) const {
    if (e >= staged) return Wide ? reinterpret_cast<const std::uint16_t*>(tile_values)[e] : tile_values[e];
    return Wide ? lds_u16(values + 2u * e) : lds_u8(values + e);
  }
};

// The window path: windows first_window, first_window + window_stride, ... of a tile whose code
// has escapes, read straight from global memory (code-word lines prefetched into L1 a window
// ahead).
template <int K, bool Wide>
TILECODEC_DEV status marked_windows(const fixed_code& code, const device::tile_ref& tile, tile_writer& writer,
                                    std::uint32_t first_window, std::uint32_t window_stride) {
  const std::uint32_t n = tile.size();
  const fixed_marked_shape s = fixed_marked_shape_of(code, n);
  // tensor_ref::tile() checked that the tile holds its code words and window_start table.
  const marked_global_escapes esc{tile.bytes + s.code_bytes, tile.bytes + s.values_offset,
                                  static_cast<std::uint32_t>(reinterpret_cast<const std::uint16_t*>(tile.bytes + s.code_bytes)[s.windows])};
  if (esc.start(0) != 0 || tile.byte_count != fixed_marked_tile_bytes(s, esc.count)) return status::corrupt_payload;
  const std::uint32_t add = marked_symbol_add(code, Wide), t = lane_id();
  const std::uint32_t step = window_stride * tile_writer::window;
  bool bad = false;
  for (std::uint32_t ws = first_window * tile_writer::window; ws < n; ws += step) {
    if (ws + step < n && t < std::uint32_t(K))
      prefetch_l1(tile.bytes + 128u * (K * ((ws + step) >> 10) + t) + 64u * (((ws + step) >> 9) & 1u));
    const std::uint32_t i0 = ws + tile_writer::per_lane * t;
    const std::uint32_t valid = i0 < n ? (n - i0 < 16u ? n - i0 : 16u) : 0u;
    std::uint32_t b[4] = {0u, 0u, 0u, 0u};
    if (valid > 0) {
      const bool upper = (i0 & 16u) != 0;
      const std::uint32_t* block = reinterpret_cast<const std::uint32_t*>(tile.bytes) + 32u * K * (i0 >> 10) +
                                   fixed_lane_of(i0) + 32u * marked_half_first<K>(upper);
      std::uint32_t w[marked_half_words<K>];
#pragma unroll
      for (int q = 0; q < marked_half_words<K>; ++q) w[q] = __ldg(block + 32 * q);
      marked_code_bytes<K>(w, marked_half_shift<K>(upper), b);
    }
    sym16 out;
    std::uint32_t zero[4];
    const std::uint32_t count = marked_lane_symbols<Wide>(b, valid, add, out, zero);
    bad |= !marked_window_escapes<Wide>(esc, ws / fixed_marked_window, count, zero, code.alphabet, out);
    const std::uint32_t m = n - ws < tile_writer::window ? n - ws : tile_writer::window;
    writer.emit<Wide>(m, out);
  }
  return bad ? status::corrupt_payload : status::success;
}

// A code without escapes (k = the symbol bits: 4, 8 or 9) has coding 2's layout: its window and
// staged paths, compiled for those three widths only.
template <class F>
TILECODEC_DEV status with_plain_width(std::uint32_t bits, F&& f) {
  switch (bits) {
    case 4: return f(std::integral_constant<int, 4>{});
    case 8: return f(std::integral_constant<int, 8>{});
    case 9: return f(std::integral_constant<int, 9>{});
    default: return status::unsupported;
  }
}
TILECODEC_DEV status fixed_plain_tile_to_writer(const device::tensor_ref& tensor, const fixed_code& code,
                                                const device::tile_ref& tile, tile_writer& writer,
                                                std::uint32_t first_window, std::uint32_t window_stride) {
  const fixed_code plain{code.bits, 0, code.alphabet};
  return with_plain_width(code.bits, [&](auto k) {
    return fixed_windows<decltype(k)::value>(tensor, plain, tile, writer, first_window, window_stride);
  });
}
TILECODEC_DEV status fixed_plain_tile_to_writer_staged(const device::tensor_ref& tensor, const fixed_code& code,
                                                       const device::tile_ref& tile, tile_writer& writer,
                                                       fixed_warp_storage& storage, std::uint32_t first_window,
                                                       std::uint32_t window_stride) {
  const fixed_code plain{code.bits, 0, code.alphabet};
  return with_plain_width(code.bits, [&](auto k) {
    return fixed_windows_staged<decltype(k)::value>(tensor, plain, tile, writer, storage, first_window, window_stride);
  });
}

// Calls f(integral_constant K, bool_constant Wide) for the code's width and symbol width (codes
// with escapes only: 1 <= K < symbol bits).
template <class F>
TILECODEC_DEV status with_marked_width(const fixed_code& code, F&& f) {
  using narrow = std::false_type;
  using wide = std::true_type;
  switch (code.bits) {
#define TILECODEC_MARKED_CASE(K)                                                            \
  case K:                                                                                   \
    return code.alphabet == 512 ? f(std::integral_constant<int, K>{}, wide{})                \
                                : f(std::integral_constant<int, K>{}, narrow{});
    TILECODEC_MARKED_CASE(1)
    TILECODEC_MARKED_CASE(2)
    TILECODEC_MARKED_CASE(3)
    TILECODEC_MARKED_CASE(4)
    TILECODEC_MARKED_CASE(5)
    TILECODEC_MARKED_CASE(6)
    TILECODEC_MARKED_CASE(7)
#undef TILECODEC_MARKED_CASE
    case 8:  // only the 512-symbol alphabet has 8-bit codes below its symbol width
      return code.alphabet == 512 ? f(std::integral_constant<int, 8>{}, wide{}) : status::unsupported;
    default: return status::unsupported;
  }
}

// Escape-section bytes staged when the ring carries the raw plane too (16-bit lossless): the rest
// of the warp's storage holds ring slots of code words and raw bytes. 3 KB holds a 256 x 256 tile's
// window_start table and about 1400 escapes (2.1% of its symbols); more are read from the tile.
inline constexpr std::uint32_t marked_raw_escape_bytes = 3072;

// Copies the raw bytes of the window starting at tile symbol ws (448: the window's packed 7-bit
// values, 16-byte aligned: tile_writer::staged_raw_source) to `slot`. All lanes call it.
TILECODEC_DEV void marked_stage_raw_window(saddr slot, const std::uint8_t* raw, std::uint32_t ws) {
  constexpr std::uint32_t pieces = tile_writer::raw_window_bytes / 16u;  // 28
  const std::uint32_t t = lane_id();
  if (t < pieces) cp_async16_to(slot + 16u * t, raw + tile_writer::raw_window_bytes * (ws / tile_writer::window) + 16u * t);
}

// The staged path: the ring of code-word windows and the escape section of coding 2's staged path
// (warp_fixed_decode.cuh, fixed_windows_staged), the escapes found as in the window path. For
// 16-bit lossless values (Wide) each ring slot carries the window's raw-plane bytes beside its code
// words, so the writer reads them from shared memory: read from global memory one window ahead
// they held the loop (39-45% of its stall samples waited on them, PERFORMANCE.md 3.10).
template <int K, bool Wide>
TILECODEC_DEV status marked_windows_staged(const fixed_code& code, const device::tile_ref& tile, tile_writer& writer,
                                           fixed_warp_storage& storage, std::uint32_t first_window,
                                           std::uint32_t window_stride) {
  constexpr bool raw_staged = Wide;
  constexpr std::uint32_t code_slot_bytes = 64u * K;
  constexpr std::uint32_t slot_bytes = code_slot_bytes + (raw_staged ? tile_writer::raw_window_bytes : 0u);
  constexpr std::uint32_t escape_cap = raw_staged ? marked_raw_escape_bytes : fixed_warp_storage::escape_bytes;
  constexpr int raw_slots = int((sizeof(fixed_warp_storage) - marked_raw_escape_bytes) / slot_bytes);
  constexpr int D = !raw_staged ? fixed_ring_slots<K> : raw_slots < TILECODEC_FIXED_MAX_SLOTS ? raw_slots : TILECODEC_FIXED_MAX_SLOTS;
  static_assert(D >= 2, "the ring holds at least two windows");
  static_assert(sizeof(fixed_warp_storage) == fixed_warp_storage::ring_bytes + fixed_warp_storage::escape_bytes,
                "with the raw plane staged, the ring and escape buffer are one region");
  const std::uint32_t n = tile.size();
  const fixed_marked_shape s = fixed_marked_shape_of(code, n);
  const std::uint8_t* raw = writer.staged_raw_source();
  // tensor_ref::tile() checked code_bytes + window_start <= byte_count (both multiples of 16).
  const std::uint32_t section = tile.byte_count - static_cast<std::uint32_t>(s.code_bytes);
  const std::uint32_t values_at = static_cast<std::uint32_t>(s.values_offset - s.code_bytes);  // window_start, padding
  if (values_at > escape_cap || (raw_staged && raw == nullptr)) return status::unsupported;  // marked_staged_fits
  const std::uint32_t copied = section < escape_cap ? section : escape_cap;
  const std::uint32_t t = lane_id();
  const saddr sec = raw_staged ? to_saddr(&storage) : to_saddr(storage.escapes);
  const saddr ring = raw_staged ? to_saddr(&storage) + escape_cap : to_saddr(storage.ring);
  const std::uint32_t step = window_stride * tile_writer::window;
  // Prologue: the escape section and the first D - 1 windows, one commit group per window (the
  // section rides in the first).
  for (std::uint32_t c = t; c < copied / 16u; c += 32) cp_async16_to(sec + 16u * c, tile.bytes + s.code_bytes + 16u * c);
  std::uint32_t fetch = first_window * tile_writer::window;
#pragma unroll
  for (int j = 0; j < D - 1; ++j) {
    if (fetch + tile_writer::window <= n) {
      fixed_stage_window<K>(ring + slot_bytes * j, tile.bytes, fetch);
      if constexpr (raw_staged) marked_stage_raw_window(ring + slot_bytes * j + code_slot_bytes, raw, fetch);
    }
    cp_async_commit();
    fetch += step;
  }
  cp_async_wait<D - 2>();  // the first group: the section and window 0
  __syncwarp();
  const marked_staged_escapes esc{sec, sec + values_at, (copied - values_at) / s.value_bytes, tile.bytes + s.values_offset,
                                  lds_u16(sec + 2u * s.windows)};
  if (esc.start(0) != 0 || tile.byte_count != fixed_marked_tile_bytes(s, esc.count)) {
    cp_async_wait<0>();
    __syncwarp();
    return status::corrupt_payload;
  }
  const std::uint32_t add = marked_symbol_add(code, Wide);
  // This lane's words in a slot (piece q of 64 bytes holds word q of the window's 16 coder lanes).
  const std::uint32_t lane_word = 4u * (t >> 1) + 64u * marked_half_first<K>(t & 1u), half_shift = marked_half_shift<K>(t & 1u);
  bool bad = false;
  std::uint32_t slot = 0, fslot = D - 1;
  // Whole windows only: a partial last window (a tile size not a multiple of 512) is left to the
  // caller (device::detail::decode_fixed_task_tile: the window path), so the loop never asks which
  // of its symbols are the tile's (PERFORMANCE.md 3.9), and never stages one.
  for (std::uint32_t ws = first_window * tile_writer::window; ws + tile_writer::window <= n; ws += step) {
    __syncwarp();  // every lane is done with the slot decoded last (fslot)
    if (fetch + tile_writer::window <= n) {
      fixed_stage_window<K>(ring + slot_bytes * fslot, tile.bytes, fetch);
      if constexpr (raw_staged) marked_stage_raw_window(ring + slot_bytes * fslot + code_slot_bytes, raw, fetch);
    }
    cp_async_commit();
    fetch += step;
    fslot = fslot + 1 == D ? 0 : fslot + 1;
    cp_async_wait<D - 1>();  // this window's group
    __syncwarp();
    std::uint32_t b[4], w[marked_half_words<K>];
    const saddr slot_at = ring + slot_bytes * slot;
#pragma unroll
    for (int q = 0; q < marked_half_words<K>; ++q) w[q] = lds_u32(slot_at + lane_word + 64u * q);
    marked_code_bytes<K>(w, half_shift, b);
    sym16 out;
    std::uint32_t zero[4];
    const std::uint32_t count = marked_lane_symbols<Wide>(b, 16u, add, out, zero);  // a whole window
    bad |= !marked_window_escapes<Wide>(esc, ws / fixed_marked_window, count, zero, code.alphabet, out);
    slot = slot + 1 == D ? 0 : slot + 1;
    if constexpr (raw_staged) writer.emit_full_staged_raw(out, slot_at + code_slot_bytes);
    else writer.emit_full<Wide>(out);
  }
  cp_async_wait<0>();  // nothing is left in flight into the storage
  __syncwarp();
  return bad ? status::corrupt_payload : status::success;
}

// Decodes windows first_window, first_window + window_stride, ... of a tile with marked escapes
// into the writer, started there by the caller (tile_writer::begin_tile with the same first_window
// and window_stride), through the window path. Every lane of the warp returns the same status. A
// code without escapes (k = symbol bits) has coding 2's layout and takes its path.
TILECODEC_DEV status fixed_marked_tile_to_writer(const fixed_code& code, const device::tensor_ref& tensor,
                                                 const device::tile_ref& tile, tile_writer& writer,
                                                 std::uint32_t first_window = 0, std::uint32_t window_stride = 1) {
  if (!fixed_marked_escapes(code))
    return fixed_plain_tile_to_writer(tensor, code, tile, writer, first_window, window_stride);
  return with_marked_width(code, [&](auto k, auto wide) {
    return marked_windows<decltype(k)::value, decltype(wide)::value>(code, tile, writer, first_window, window_stride);
  });
}

// Whether the staged path takes a tile of coding 4 into `writer` (begun on the tile): its
// window_start table inside the escape buffer and, for 16-bit lossless values, the raw plane
// stageable (tile_writer::staged_raw_source); without escapes, coding 2's rule. Others take the
// window path (window_tile_decode).
TILECODEC_DEV bool marked_staged_fits(const fixed_code& code, const device::tile_ref& tile, const tile_writer& writer) {
  if (!fixed_marked_escapes(code)) return fixed_staged_fits(fixed_code{code.bits, 0, code.alphabet}, tile);
  const fixed_marked_shape s = fixed_marked_shape_of(code, tile.size());
  if (code.alphabet == 512) return writer.staged_raw_source() != nullptr && s.values_offset - s.code_bytes <= marked_raw_escape_bytes;
  return s.values_offset - s.code_bytes <= fixed_warp_storage::escape_bytes;
}

// The same through the staged path (`storage`: this warp's staging in shared memory), whole
// windows only when the code has escapes: a partial last window is the caller's (window path).
// Tiles that marked_staged_fits() refuses return status::unsupported.
TILECODEC_DEV status fixed_marked_tile_to_writer_staged(const fixed_code& code, const device::tensor_ref& tensor,
                                                        const device::tile_ref& tile, tile_writer& writer,
                                                        fixed_warp_storage& storage, std::uint32_t first_window = 0,
                                                        std::uint32_t window_stride = 1) {
  if (!fixed_marked_escapes(code))
    return fixed_plain_tile_to_writer_staged(tensor, code, tile, writer, storage, first_window, window_stride);
  return with_marked_width(code, [&](auto k, auto wide) {
    return marked_windows_staged<decltype(k)::value, decltype(wide)::value>(code, tile, writer, storage, first_window,
                                                                           window_stride);
  });
}

}  // namespace detail
}  // namespace tilecodec
