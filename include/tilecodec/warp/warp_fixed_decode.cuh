// tilecodec/warp/warp_fixed_decode.cuh: one warp decodes windows of a fixed-coded tile (coding 2,
// coder/fixed.hpp) in the row-major symbol order into a tile_writer. Used by the warp and block
// tile decoders and by device::decode_async.
//
// Every 512-symbol window decodes alone: lane t takes the 16 codes of window symbols
// [16 t, 16 t + 16) (half of one coder lane's 32-code run; it loads the run's k words at once, and
// the code width is a template parameter, so every code sits at a compile-time bit position),
// adds the code window's first symbol, and replaces escaped positions with its row's escape
// entries, found by binary search. So any number of warps can share a tile (window w to warp w
// mod warps), and no shared memory is needed; code-word and row_start lines are prefetched (L2
// some windows ahead, L1 one window ahead). The lanes check what they read the way the host
// decoder does, each entry once (row_start ordered and inside the tile, columns increasing and
// inside the row, code 0 at every escaped position, 16-bit lossless escape values equal to the raw
// plane's bits; the tile's size against its escape count). A corrupt tile gives corrupt_payload
// and never makes a lane read outside the tile, whose bytes tensor_ref::tile() bounds.
// device::decode_async takes the staged path at the end of this file (fixed_tile_to_writer_staged:
// code words and escapes copied into shared memory several windows ahead); the warp and block
// tile decoders, which give fixed codes no TempStorage, keep the window path.
#pragma once

#include <cstdint>
#include <type_traits>

#include "../coder/fixed.hpp"
#include "../device/tensor_ref.hpp"
#include "../format/planes.hpp"
#include "../status.hpp"
#include "tile_writer.cuh"
#include "warp_intrinsics.cuh"

namespace tilecodec {
namespace detail {

// f(std::integral_constant<int, K>{}) for code width K = bits (1..9; compile-time widths put every
// code at a fixed bit position); unsupported for other widths (device_decodable() admits 1..symbol
// bits).
template <class F>
TILECODEC_DEV status with_code_width(std::uint32_t bits, F&& f) {
  switch (bits) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    case 8: return f(std::integral_constant<int, 8>{});
    case 9: return f(std::integral_constant<int, 9>{});
    default: return status::unsupported;
  }
}

// The 16 codes of tile symbols [i0, i0 + 16) (i0 a multiple of 16, inside the tile's code blocks)
// for a compile-time code width K: the K words of the coder lane's block are loaded at once (all
// in flight together, none past the block), then every code sits at a compile-time bit position.
// The 16 codes of one half of a coder lane's 32-code run from the run's K words wv[0, K) (wv[K]
// = 0): the first half, or the second (`upper`).
template <int K>
TILECODEC_DEV void fixed_codes16_of_words(const std::uint32_t (&wv)[K + 1], bool upper, std::uint32_t (&c)[16]) {
  // The run's second 16 codes start at bit 16 K: word K / 2, bit 16 (K odd) or 0. Align them to bit 0.
  constexpr int words = (16 * K + 31) / 32;  // words holding 16 codes
  constexpr int skip = 16 * K / 32, shift = 16 * K % 32;
  std::uint32_t v[words + 1];
#pragma unroll
  for (int q = 0; q < words; ++q)
    v[q] = upper ? (shift == 0 ? wv[skip + q] : funnel(wv[skip + q], wv[skip + q + 1], shift)) : wv[q];
  v[words] = 0;
  constexpr std::uint32_t mask = (1u << K) - 1u;
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const int bit = j * K, q = bit >> 5, off = bit & 31;
    c[j] = (off + K <= 32 ? v[q] >> off : funnel(v[q], v[q + 1], std::uint32_t(off))) & mask;
  }
}

template <int K>
TILECODEC_DEV void fixed_codes16(const std::uint8_t* tile, std::uint32_t i0, std::uint32_t (&c)[16]) {
  static_assert(K >= 1 && K <= 9, "code widths 1..9");
  // Word q of the block of coder lane l: u32 number 32 (K b + q) + l of the tile.
  const std::uint32_t* block = reinterpret_cast<const std::uint32_t*>(tile) + 32u * K * (i0 >> 10) + fixed_lane_of(i0);
  std::uint32_t wv[K + 1];
#pragma unroll
  for (int q = 0; q < K; ++q) wv[q] = __ldg(block + 32 * q);
  wv[K] = 0;
  fixed_codes16_of_words<K>(wv, (i0 & 16u) != 0, c);
}

// Escape entry e: column and value (little-endian, entry_bytes 2, 4 or 8 at a 2-, 4- or 4-byte
// aligned address: escapes_offset is a multiple of 4).
TILECODEC_DEV void fixed_entry(const std::uint8_t* tile, const fixed_tile_shape& s, std::uint32_t e, std::uint32_t& col,
                               std::uint32_t& value) {
  const std::uint8_t* p = tile + s.escapes_offset + std::uint64_t(e) * s.entry_bytes;
  std::uint64_t v;
  if (s.entry_bytes == 2) v = *reinterpret_cast<const std::uint16_t*>(p);
  else if (s.entry_bytes == 4) v = *reinterpret_cast<const std::uint32_t*>(p);
  else v = *reinterpret_cast<const std::uint32_t*>(p) | (std::uint64_t(*reinterpret_cast<const std::uint32_t*>(p + 4)) << 32);
  col = static_cast<std::uint32_t>(v >> s.value_bits);
  value = static_cast<std::uint32_t>(v & ((1u << s.value_bits) - 1u));
}

// Applies row r's escapes to this lane's symbols [i0, i0 + cnt) of the tile (sym[j] = symbol
// i0 + j, codes c[j]) and checks all of the row's entries. false: corrupt. For tiles whose width
// is not a multiple of 16 (a lane's symbols may then span rows); see fixed_row_share.
TILECODEC_DEV bool fixed_row_escapes(const std::uint8_t* tile, const fixed_tile_shape& s, const fixed_code& code,
                                     std::uint32_t w, std::uint32_t r, std::uint32_t escapes, std::uint32_t i0,
                                     std::uint32_t cnt, const std::uint32_t (&c)[16], std::uint32_t (&sym)[16],
                                     const std::uint8_t* raw_tile) {
  const std::uint16_t* row_start = reinterpret_cast<const std::uint16_t*>(tile + s.code_bytes);
  const std::uint32_t e0 = row_start[r], e1 = row_start[r + 1];
  if (e1 < e0 || e1 > escapes) return false;
  std::uint32_t previous = 0;
  for (std::uint32_t e = e0; e < e1; ++e) {
    std::uint32_t col, value;
    fixed_entry(tile, s, e, col, value);
    const std::uint32_t symbol = fixed_escape_symbol(value, code.alphabet);
    if (col >= w || (e > e0 && col <= previous) || symbol >= code.alphabet) return false;
    previous = col;
    const std::uint32_t j = r * w + col - i0;  // unsigned: outside this lane's symbols wraps high
    if (j >= cnt) continue;
    if (code.alphabet == 512 && lossless16_raw(value) != raw7_unpack(raw_tile + raw7_group_bytes * ((i0 + j) / raw7_group), (i0 + j) % raw7_group))
      return false;  // the value's raw bits are the raw plane's
    bool zero = false;
#pragma unroll
    for (std::uint32_t q = 0; q < 16; ++q) {  // registers cannot be indexed at run time
      if (q == j) {
        zero = c[q] == 0;
        sym[q] = symbol;
      }
    }
    if (!zero) return false;  // an escaped position holds code 0
  }
  return true;
}

// The same when the lane's 16 symbols are columns [c0, c0 + 16) of one row r (w a multiple of
// 16), in O(log) per lane instead of a walk over the row: the row's entries are checked in shares,
// entry e0 + j by the lane whose columns start at 16 (j mod (w / 16)) (in bounds, above the
// previous entry's column, a valid symbol, code 0 at its position, raw bits), so every entry of
// the row is checked once and a row that passes is sorted; then the lane finds its own entries by
// binary search (at most 16 of them). false: corrupt.
TILECODEC_DEV bool fixed_row_share(const std::uint8_t* tile, const fixed_tile_shape& s, const fixed_code& code,
                                   std::uint32_t w, std::uint32_t r, std::uint32_t c0, std::uint32_t escapes,
                                   std::uint32_t (&sym)[16], const std::uint8_t* raw_tile) {
  const std::uint16_t* row_start = reinterpret_cast<const std::uint16_t*>(tile + s.code_bytes);
  const std::uint32_t e0 = row_start[r], e1 = row_start[r + 1];
  if (e1 < e0 || e1 > escapes) return false;
  const std::uint32_t slots = w / 16u;
  for (std::uint32_t e = e0 + c0 / 16u; e < e1; e += slots) {
    std::uint32_t col, value, previous, unused;
    fixed_entry(tile, s, e, col, value);
    if (col >= w || fixed_escape_symbol(value, code.alphabet) >= code.alphabet) return false;
    if (e > e0) {
      fixed_entry(tile, s, e - 1, previous, unused);
      if (col <= previous) return false;
    }
    const std::uint32_t i = r * w + col;
    if (fixed_code_at(tile, code.bits, i) != 0) return false;  // an escaped position holds code 0
    if (code.alphabet == 512 && lossless16_raw(value) != raw7_unpack(raw_tile + raw7_group_bytes * (i / raw7_group), i % raw7_group))
      return false;  // the value's raw bits are the raw plane's
  }
  std::uint32_t lo = e0, hi = e1;  // first entry at column c0 or after
  while (lo < hi) {
    const std::uint32_t mid = (lo + hi) / 2;
    std::uint32_t col, value;
    fixed_entry(tile, s, mid, col, value);
    if (col < c0) lo = mid + 1;
    else hi = mid;
  }
  for (std::uint32_t e = lo; e < e1 && e < lo + 16u; ++e) {
    std::uint32_t col, value;
    fixed_entry(tile, s, e, col, value);
    const std::uint32_t j = col - c0;  // unsigned: wraps high below c0
    if (j >= 16u) break;
    const std::uint32_t symbol = fixed_escape_symbol(value, code.alphabet);
#pragma unroll
    for (std::uint32_t q = 0; q < 16; ++q)  // registers cannot be indexed at run time
      if (q == j) sym[q] = symbol;
  }
  return true;
}

// A lane's 16 symbols (sym[j] for j < cnt, the rest 0) as the writer takes them: bytes, or 16-bit
// symbols for the 512-symbol (lossless16) alphabet.
TILECODEC_DEV sym16 pack_symbols16(const std::uint32_t (&sym)[16], bool wide, std::uint32_t cnt = 16) {
  std::uint32_t h[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  if (wide) {
#pragma unroll
    for (int j = 0; j < 16; ++j) h[j / 2] |= (j < int(cnt) ? sym[j] : 0u) << (16 * (j & 1));
  } else {
#pragma unroll
    for (int j = 0; j < 16; ++j) h[j / 4] |= (j < int(cnt) ? sym[j] : 0u) << (8 * (j & 3));
  }
  return sym16{u32x4{h[0], h[1], h[2], h[3]}, u32x4{h[4], h[5], h[6], h[7]}};
}

// Lane t's 16 symbols of window symbols [i0, i0 + 16) (fewer at the tile's end; the rest 0).
// false: corrupt.
template <int K>
TILECODEC_DEV bool fixed_symbols16(const std::uint8_t* tile, const fixed_tile_shape& s, const fixed_code& code,
                                   std::uint32_t w, std::uint32_t n, std::uint32_t escapes, std::uint32_t i0,
                                   const std::uint8_t* raw_tile, sym16& out) {
  out = sym16{u32x4{0, 0, 0, 0}, u32x4{0, 0, 0, 0}};
  if (i0 >= n) return true;
  std::uint32_t c[16], sym[16];
  fixed_codes16<K>(tile, i0, c);
#pragma unroll
  for (int j = 0; j < 16; ++j) sym[j] = code.first + c[j];
  const std::uint32_t cnt = n - i0 < 16u ? n - i0 : 16u;
  if (code.has_escapes()) {
    if (w % 16u == 0) {  // the common shapes: one row's 16 columns
      if (!fixed_row_share(tile, s, code, w, i0 / w, i0 % w, escapes, sym, raw_tile)) return false;
    } else {
      for (std::uint32_t r = i0 / w; r <= (i0 + cnt - 1) / w; ++r)
        if (!fixed_row_escapes(tile, s, code, w, r, escapes, i0, cnt, c, sym, raw_tile)) return false;
    }
  }
  out = pack_symbols16(sym, code.alphabet == 512, cnt);
  return true;
}

// Windows ahead of the one decoding whose code-word lines are prefetched into L2 (tuning only,
// never changes the bits); the next window's lines go to L1.
#ifndef TILECODEC_FIXED_L2_AHEAD
#define TILECODEC_FIXED_L2_AHEAD 4
#endif

// Pulls the lines a warp reads for the window starting at tile symbol `first_symbol` into L1 (or
// L2) ahead of use (a prefetch holds no register): lanes 0..K-1 one code-word line each (word q
// of the 16 coder lanes the window uses), lane 31 the row_start line of the window's first row.
template <int K, bool L2>
TILECODEC_DEV void fixed_prefetch_window(const std::uint8_t* tile, const fixed_tile_shape& s, bool escapes,
                                         std::uint32_t w, std::uint32_t first_symbol) {
  const std::uint32_t t = lane_id();
  const std::uint8_t* p = t < std::uint32_t(K) ? tile + 128u * (K * (first_symbol >> 10) + t) + 64u * ((first_symbol >> 9) & 1u)
                          : escapes && t == 31 ? tile + s.code_bytes + 2u * (first_symbol / w)
                                               : nullptr;
  if (p == nullptr) return;
  if constexpr (L2) prefetch_l2(p);
  else prefetch_l1(p);
}

template <int K>
TILECODEC_DEV status fixed_windows(const device::tensor_ref& tensor, const fixed_code& code, const device::tile_ref& tile,
                                   tile_writer& writer, std::uint32_t first_window, std::uint32_t window_stride) {
  const std::uint32_t h = tile.box.height, w = tile.box.width, n = tile.size();
  const fixed_tile_shape s = fixed_shape(code, h, w);
  // tensor_ref::tile() checked that the tile holds its code words and row_start table.
  std::uint32_t escapes = 0;
  if (code.has_escapes()) {
    const std::uint16_t* row_start = reinterpret_cast<const std::uint16_t*>(tile.bytes + s.code_bytes);
    escapes = row_start[h];
    if (row_start[0] != 0) return status::corrupt_payload;
  }
  if (tile.byte_count != fixed_tile_bytes(s, escapes)) return status::corrupt_payload;
  const std::uint8_t* raw_tile = tensor.raw_plane() + tile.raw_start;
  const std::uint32_t step = window_stride * tile_writer::window;
  bool bad = false;
  for (std::uint32_t ws = first_window * tile_writer::window; ws < n; ws += step) {
    if (ws + TILECODEC_FIXED_L2_AHEAD * step < n)
      fixed_prefetch_window<K, true>(tile.bytes, s, code.has_escapes(), w, ws + TILECODEC_FIXED_L2_AHEAD * step);
    if (ws + step < n) fixed_prefetch_window<K, false>(tile.bytes, s, code.has_escapes(), w, ws + step);
    const std::uint32_t m = n - ws < tile_writer::window ? n - ws : tile_writer::window;
    sym16 sym;
    bad |= !fixed_symbols16<K>(tile.bytes, s, code, w, n, escapes, ws + tile_writer::per_lane * lane_id(), raw_tile, sym);
    if (code.alphabet == 512) writer.emit<true>(m, sym); else writer.emit<false>(m, sym);
  }
  return __any_sync(full_warp_mask, bad) ? status::corrupt_payload : status::success;
}

// Decodes windows first_window, first_window + window_stride, ... of a fixed-coded tile (code
// window `code`: tensor_ref::fixed()) into the writer, started there by the caller
// (tile_writer::begin_tile with the same first_window and window_stride). Every lane of the warp
// returns the same status.
TILECODEC_DEV status fixed_tile_to_writer(const device::tensor_ref& tensor, const fixed_code& code,
                                          const device::tile_ref& tile, tile_writer& writer,
                                          std::uint32_t first_window = 0, std::uint32_t window_stride = 1) {
  return with_code_width(code.bits, [&](auto k) {
    return fixed_windows<decltype(k)::value>(tensor, code, tile, writer, first_window, window_stride);
  });
}


// ---- the staged path (device::decode_async) ---------------------------------------------------
//
// The window path above waits on its own dependent loads window after window (codes, then the
// row's row_start, then its entries). The staged path keeps many bytes in flight per warp instead:
// a window's code words are K pieces of 64 contiguous bytes (word q of the window's 16 coder
// lanes: tile bytes 128 (K b + q) + 64 h for window 2 b + h), which the warp copies with one
// 16-byte cp.async per lane (two for K = 9) into a ring of D window slots, D - 1 windows ahead of
// the one it decodes; the tile's whole escape section (row_start and entries: tile bytes
// [code_bytes, byte_count), 16-byte aligned at both ends) is copied into shared memory once per
// tile, with the first windows. Then a window decodes from shared memory only: lane t reads its
// coder lane's K words from the slot, and finds its row's escapes by binary search in the staged
// entries. Checks: the row's entries are checked in shares as in fixed_row_share (bounds, order,
// symbol), and the lane that applies an entry checks that its code is 0 and (16-bit lossless)
// that its raw bits are the raw plane's: once a row is known sorted and inside the tile, every
// entry is applied by exactly one lane, so every entry is checked once. A section larger than the
// buffer is staged in part (row_start and the first entries; the others are read from the tile).
// Tiles whose width is not a multiple of 16, or whose row_start alone does not fit the buffer,
// take the window path (fixed_staged_fits tells the caller).

// Shared-memory bytes of the staged path per warp (tuning only, never changes the bits): the ring
// of code-word windows, and the buffer for a tile's escape section. 3 KB of ring keeps 4 (K = 9)
// to 11 (K = 4) windows in flight, 2.2-2.8 KB per warp (4 KB of ring with 5 KB of escapes measured
// no faster, H100); 6 KB of escapes holds a 256 x 256 tile's section up to about 1.4K escapes of
// 4 bytes (82% of the synthetic bf16 tiles of PERFORMANCE.md 3.4), larger ones are staged in part.
#ifndef TILECODEC_FIXED_RING_BYTES
#define TILECODEC_FIXED_RING_BYTES 3072
#endif
#ifndef TILECODEC_FIXED_ESCAPE_BYTES
#define TILECODEC_FIXED_ESCAPE_BYTES 6144
#endif
// Most window slots in the ring (tuning only).
#ifndef TILECODEC_FIXED_MAX_SLOTS
#define TILECODEC_FIXED_MAX_SLOTS 16
#endif

struct fixed_warp_storage {
  static constexpr std::uint32_t ring_bytes = TILECODEC_FIXED_RING_BYTES;
  static constexpr std::uint32_t escape_bytes = TILECODEC_FIXED_ESCAPE_BYTES;
  static_assert(ring_bytes % 16 == 0 && ring_bytes >= 2 * 64 * 9, "the ring holds two windows of 9-bit codes");
  static_assert(escape_bytes % 16 == 0, "16-byte copies");
  alignas(16) std::uint8_t ring[ring_bytes];
  alignas(16) std::uint8_t escapes[escape_bytes];
};

// Whether the staged path takes a tile of coding 2 (code window `code`): its width a multiple of
// 16 and its row_start table inside the escape buffer. Others take the window path
// (window_tile_decode).
TILECODEC_DEV bool fixed_staged_fits(const fixed_code& code, const device::tile_ref& tile) {
  const fixed_tile_shape s = fixed_shape(code, tile.box.height, tile.box.width);
  return tile.box.width % 16u == 0 && s.escapes_offset - s.code_bytes <= fixed_warp_storage::escape_bytes;
}

// Window slots of the ring for code width K (64 K bytes each).
template <int K>
inline constexpr int fixed_ring_slots =
    int(fixed_warp_storage::ring_bytes / (64u * K)) < TILECODEC_FIXED_MAX_SLOTS ? int(fixed_warp_storage::ring_bytes / (64u * K))
                                                                                 : TILECODEC_FIXED_MAX_SLOTS;

// Copies the code words of the window starting at tile symbol ws (a multiple of 512, inside the
// tile's code blocks) into `slot`: piece q (64 bytes) at slot + 64 q. All lanes call it.
template <int K>
TILECODEC_DEV void fixed_stage_window(saddr slot, const std::uint8_t* tile, std::uint32_t ws) {
  const std::uint8_t* src = tile + 128u * K * (ws >> 10) + 64u * ((ws >> 9) & 1u);
  const std::uint32_t t = lane_id();
#pragma unroll
  for (std::uint32_t c0 = 0; c0 < 4u * K; c0 += 32) {
    const std::uint32_t c = c0 + t;
    if (c0 + 32 <= 4u * K || c < 4u * K) cp_async16_to(slot + 16u * c, src + 128u * (c >> 2) + 16u * (c & 3u));
  }
}

// Where a tile's escape entries are: the first `staged` in shared memory (at `entries`, 4-byte
// aligned), the rest only in the tile (a section larger than the buffer).
struct fixed_staged_entries {
  saddr entries;
  std::uint32_t staged;
  const std::uint8_t* tile;
};

// Escape entry e (e below the tile's escape count, which the caller checked against its size).
TILECODEC_DEV void fixed_entry_staged(const fixed_staged_entries& at, const fixed_tile_shape& s, std::uint32_t e,
                                      std::uint32_t& col, std::uint32_t& value) {
  if (e >= at.staged) return fixed_entry(at.tile, s, e, col, value);
  const saddr p = at.entries + e * s.entry_bytes;
  std::uint64_t v;
  if (s.entry_bytes == 2) v = lds_u16(p);
  else if (s.entry_bytes == 4) v = lds_u32(p);
  else v = lds_u32(p) | (std::uint64_t(lds_u32(p + 4)) << 32);
  col = static_cast<std::uint32_t>(v >> s.value_bits);
  value = static_cast<std::uint32_t>(v & ((1u << s.value_bits) - 1u));
}

// Symbol j (< 16) of a lane's packed symbols (bytes, or 16-bit fields when `wide`) becomes
// `symbol`; returns the field it replaced. Registers cannot be indexed at run time: one select per
// word to read it and one to write it back (about 20 instructions, against 16 compares and 32
// selects for an array of 16 symbols, the form of fixed_row_share).
TILECODEC_DEV std::uint32_t swap_symbol16(sym16& out, std::uint32_t j, std::uint32_t symbol, bool wide) {
  const std::uint32_t word = wide ? j >> 1 : j >> 2;
  const std::uint32_t shift = wide ? 16u * (j & 1u) : 8u * (j & 3u);
  const std::uint32_t field = (wide ? 0xffffu : 0xffu) << shift;
  std::uint32_t h[8] = {out.a.x, out.a.y, out.a.z, out.a.w, out.b.x, out.b.y, out.b.z, out.b.w};
  std::uint32_t v = h[0];
#pragma unroll
  for (std::uint32_t q = 1; q < 8; ++q) v = q == word ? h[q] : v;
  const std::uint32_t replaced = (v & field) >> shift;
  v = (v & ~field) | (symbol << shift);
#pragma unroll
  for (std::uint32_t q = 0; q < 8; ++q) h[q] = q == word ? v : h[q];
  out = sym16{u32x4{h[0], h[1], h[2], h[3]}, u32x4{h[4], h[5], h[6], h[7]}};
  return replaced;
}

// fixed_row_share on the staged section: row r's escapes for this lane's 16 symbols, columns
// [c0, c0 + 16) (tile symbols [i0, i0 + 16)), already packed in `out` as code.first + code (so a
// field equal to code.first held code 0: the parse keeps first + 2^k within the alphabet).
// false: corrupt.
TILECODEC_DEV bool fixed_row_share_staged(saddr section, const fixed_staged_entries& entries, const fixed_tile_shape& s,
                                          const fixed_code& code,
                                          std::uint32_t w, std::uint32_t r, std::uint32_t c0, std::uint32_t i0,
                                          std::uint32_t escapes, sym16& out, const std::uint8_t* raw_tile) {
  const std::uint32_t e0 = lds_u16(section + 2u * r), e1 = lds_u16(section + 2u * r + 2u);
  if (e1 < e0 || e1 > escapes) return false;
  if (e0 == e1) return true;
  const std::uint32_t slots = w / 16u;
  for (std::uint32_t e = e0 + c0 / 16u; e < e1; e += slots) {  // this lane's share of the row's checks
    std::uint32_t col, value, previous, unused;
    fixed_entry_staged(entries, s, e, col, value);
    if (col >= w || fixed_escape_symbol(value, code.alphabet) >= code.alphabet) return false;
    if (e > e0) {
      fixed_entry_staged(entries, s, e - 1, previous, unused);
      if (col <= previous) return false;
    }
  }
  std::uint32_t lo = e0, hi = e1;  // first entry at column c0 or after
  while (lo < hi) {
    const std::uint32_t mid = (lo + hi) / 2;
    std::uint32_t col, value;
    fixed_entry_staged(entries, s, mid, col, value);
    if (col < c0) lo = mid + 1;
    else hi = mid;
  }
  bool ok = true;
  for (std::uint32_t e = lo; e < e1 && e < lo + 16u; ++e) {
    std::uint32_t col, value;
    fixed_entry_staged(entries, s, e, col, value);
    const std::uint32_t j = col - c0;  // unsigned: wraps high below c0
    if (j >= 16u) break;
    const std::uint32_t symbol = fixed_escape_symbol(value, code.alphabet);
    if (code.alphabet == 512 && lossless16_raw(value) != raw7_unpack(raw_tile + raw7_group_bytes * ((i0 + j) / raw7_group), (i0 + j) % raw7_group))
      ok = false;  // the value's raw bits are the raw plane's
    ok &= swap_symbol16(out, j, symbol, code.alphabet == 512) == code.first;  // an escaped position holds code 0
  }
  return ok;
}

template <int K>
TILECODEC_DEV status fixed_windows_staged(const device::tensor_ref& tensor, const fixed_code& code,
                                          const device::tile_ref& tile, tile_writer& writer, fixed_warp_storage& storage,
                                          std::uint32_t first_window, std::uint32_t window_stride) {
  constexpr int D = fixed_ring_slots<K>;
  static_assert(D >= 2, "the ring holds at least two windows");
  constexpr std::uint32_t slot_bytes = 64u * K;
  const std::uint32_t h = tile.box.height, w = tile.box.width, n = tile.size();
  const fixed_tile_shape s = fixed_shape(code, h, w);
  // tensor_ref::tile() checked code_bytes + row_start <= byte_count (both multiples of 16).
  const std::uint32_t section = tile.byte_count - static_cast<std::uint32_t>(s.code_bytes);
  const std::uint32_t entries_at = static_cast<std::uint32_t>(s.escapes_offset - s.code_bytes);  // row_start, padding
  if (w % 16u != 0 || entries_at > fixed_warp_storage::escape_bytes) return status::unsupported;  // fixed_staged_fits
  // As much of the section as the buffer holds: all of row_start, the first entries.
  const std::uint32_t copied = section < fixed_warp_storage::escape_bytes ? section : fixed_warp_storage::escape_bytes;
  const std::uint32_t t = lane_id();
  const saddr ring = to_saddr(storage.ring), sec = to_saddr(storage.escapes);
  const fixed_staged_entries entries{sec + entries_at, s.entry_bytes ? (copied - entries_at) / s.entry_bytes : 0u, tile.bytes};
  const std::uint8_t* raw_tile = tensor.raw_plane() + tile.raw_start;
  const bool lossless16 = code.alphabet == 512;
  const std::uint32_t step = window_stride * tile_writer::window;
  // Prologue: the escape section and the first D - 1 windows, one commit group per window (the
  // section rides in the first).
  for (std::uint32_t c = t; c < copied / 16u; c += 32)
    cp_async16_to(sec + 16u * c, tile.bytes + s.code_bytes + 16u * c);
  std::uint32_t fetch = first_window * tile_writer::window;
#pragma unroll
  for (int j = 0; j < D - 1; ++j) {
    if (fetch < n) fixed_stage_window<K>(ring + slot_bytes * j, tile.bytes, fetch);
    cp_async_commit();
    fetch += step;
  }
  cp_async_wait<D - 2>();  // the first group: the section and window 0
  __syncwarp();
  std::uint32_t escapes = 0;
  if (code.has_escapes()) {
    escapes = lds_u16(sec + 2u * h);
    if (lds_u16(sec) != 0) escapes = ~0u;  // row_start[0] must be 0
  }
  if (escapes == ~0u || tile.byte_count != fixed_tile_bytes(s, escapes)) {
    cp_async_wait<0>();
    __syncwarp();
    return status::corrupt_payload;
  }
  bool bad = false;
  std::uint32_t slot = 0, fslot = D - 1;
  // This lane's row and column, moved on by `step` symbols per window (no division in the loop).
  const std::uint32_t step_r = step / w, step_c = step % w;
  std::uint32_t row = (first_window * tile_writer::window + tile_writer::per_lane * t) / w;
  std::uint32_t col = (first_window * tile_writer::window + tile_writer::per_lane * t) % w;
  for (std::uint32_t ws = first_window * tile_writer::window; ws < n; ws += step) {
    __syncwarp();  // every lane is done with the slot decoded last (fslot)
    if (fetch < n) fixed_stage_window<K>(ring + slot_bytes * fslot, tile.bytes, fetch);
    cp_async_commit();
    fetch += step;
    fslot = fslot + 1 == D ? 0 : fslot + 1;
    cp_async_wait<D - 1>();  // this window's group
    __syncwarp();
    const std::uint32_t m = n - ws < tile_writer::window ? n - ws : tile_writer::window;
    const std::uint32_t i0 = ws + tile_writer::per_lane * t;
    sym16 out{u32x4{0, 0, 0, 0}, u32x4{0, 0, 0, 0}};
    if (i0 < n) {  // w % 16 == 0: all 16 symbols are the tile's, in one row
      std::uint32_t wv[K + 1], sym[16];
      const saddr a = ring + slot_bytes * slot + 4u * (t >> 1);
#pragma unroll
      for (int q = 0; q < K; ++q) wv[q] = lds_u32(a + 64u * q);
      wv[K] = 0;
      fixed_codes16_of_words<K>(wv, (t & 1u) != 0, sym);
#pragma unroll
      for (int j = 0; j < 16; ++j) sym[j] += code.first;
      out = pack_symbols16(sym, lossless16);
      if (code.has_escapes()) bad |= !fixed_row_share_staged(sec, entries, s, code, w, row, col, i0, escapes, out, raw_tile);
    }
    slot = slot + 1 == D ? 0 : slot + 1;
    row += step_r;
    col += step_c;
    if (col >= w) col -= w, ++row;
    if (lossless16) writer.emit<true>(m, out); else writer.emit<false>(m, out);
  }
  cp_async_wait<0>();  // nothing is left in flight into the storage
  __syncwarp();
  return __any_sync(full_warp_mask, bad) ? status::corrupt_payload : status::success;
}

// fixed_tile_to_writer through the staged path: `storage` is this warp's (shared memory). Tiles
// that fixed_staged_fits() refuses return status::unsupported (the caller takes the window path:
// inlined here, that fallback doubled the code of every caller).
TILECODEC_DEV status fixed_tile_to_writer_staged(const device::tensor_ref& tensor, const fixed_code& code,
                                                 const device::tile_ref& tile, tile_writer& writer, fixed_warp_storage& storage,
                                                 std::uint32_t first_window = 0, std::uint32_t window_stride = 1) {
  return with_code_width(code.bits, [&](auto k) {
    return fixed_windows_staged<decltype(k)::value>(tensor, code, tile, writer, storage, first_window, window_stride);
  });
}

}  // namespace detail
}  // namespace tilecodec
