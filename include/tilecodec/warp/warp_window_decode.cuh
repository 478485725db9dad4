// tilecodec/warp/warp_window_decode.cuh: one warp decodes one whole tile into a tile_writer, window
// by window (512 symbols): the rANS engine stores each symbol into a per-warp shared-memory
// window (one 1- or 2-byte store per lane and step), then every lane reads 16 consecutive symbols
// back with 16-byte loads and writes them as values, coalesced. Stored (uncoded) tiles skip the
// window. Shared by warp_tile_decoder, block_tile_decoder and device::decode_async.
#pragma once

#include <cstdint>
#include <type_traits>

#include "../block/decode_table.cuh"
#include "../device/tensor_ref.hpp"
#include "../format/planes.hpp"
#include "../status.hpp"
#include "tile_writer.cuh"
#include "warp_intrinsics.cuh"
#include "warp_rans_engine.cuh"
#include "warp_rans_lanes_engine.cuh"

// Groups of a fast window unrolled (tuning only, never changes the bits): rolled measured 0-6%
// faster on H100 than fully unrolled (smaller loop).
#ifndef TILECODEC_WINDOW_UNROLL
#define TILECODEC_WINDOW_UNROLL 1
#endif

namespace tilecodec {
namespace detail {

inline constexpr int window_unroll = TILECODEC_WINDOW_UNROLL;

// Per-warp shared memory of a whole-tile decode: the stream ring and the symbol window.
struct warp_window_storage {
  rans_ring ring;
  alignas(16) std::uint8_t window[tile_writer::window * 2];  // 512 symbols of up to 16 bits
};

// Per-warp shared memory of a whole-tile decode with lane streams (coding 3): Lanes chain rings
// and the symbol window.
template <int Lanes>
struct warp_lanes_storage {
  rans_lane_rings<Lanes> rings;
  alignas(16) std::uint8_t window[tile_writer::window * 2];
};

// Lane t's 16 symbols of the window (bytes, or 16-bit symbols when SymBytes == 2).
template <int SymBytes>
TILECODEC_DEV sym16 load_window(const std::uint8_t* window) {
  const u32x4* p = reinterpret_cast<const u32x4*>(window + SymBytes * tile_writer::per_lane * lane_id());
  sym16 s;
  s.a = p[0];
  s.b = SymBytes == 2 ? p[1] : u32x4{0, 0, 0, 0};
  return s;
}

// SymBytes: 1 for alphabets up to 256 symbols, 2 for 512 (the window keeps the table entry's low
// 16 bits; the writer masks the 9-bit symbol out of them).
template <int K, bool Partial, int P, int SymBytes>
TILECODEC_DEV status rans_tile_to_writer(warp_window_storage& storage, const std::uint32_t* table,
                                         std::uint32_t prob_bits, std::uint32_t sym_bits, std::uint32_t lanes,
                                         const device::tile_ref& tile, tile_writer& writer) {
  using sym_t = typename std::conditional<SymBytes == 2, std::uint16_t, std::uint8_t>::type;
  rans_warp_engine<K, Partial, P, SymBytes == 2 ? 9 : 8> eng;
  if (eng.begin(storage.ring, table, prob_bits, sym_bits, tile.bytes, tile.byte_count, tile.size(), lanes) !=
      status::success)
    return eng.finish();
  const std::uint32_t n = tile.size();
  sym_t* const win = reinterpret_cast<sym_t*>(storage.window);
  constexpr std::uint32_t window = tile_writer::window;
  std::uint32_t ws = 0;
  while (ws < n) {
    bool done = false;
    if constexpr (!Partial) {
      // The common case: a whole window in four unchecked groups of 128 symbols.
      if (eng.fast_ok(4)) {
#pragma unroll(window_unroll)
        for (std::uint32_t g = 0; g < 4; ++g) {
          eng.advance_ring();
          eng.group([&](std::uint32_t j, std::uint32_t, std::uint32_t e) { win[128u * g + j] = static_cast<sym_t>(e); });
        }
        done = true;
      }
    }
    if (!done) {
      const std::uint32_t gs = eng.group_symbols();
      while (eng.decoded() < n && eng.decoded() - ws < window) {
        eng.advance_ring();
        sym_t* const w = win + (eng.decoded() - ws);
        auto sink = [&](std::uint32_t j, std::uint32_t, std::uint32_t e) { w[j] = static_cast<sym_t>(e); };
        if (eng.decoded() - ws + gs <= window && eng.fast_ok(1)) {
          eng.group(sink);
        } else if (!eng.step(sink)) {
          break;
        }
      }
      if (eng.failed()) break;
    }
    const std::uint32_t m = eng.decoded() - ws;
    __syncwarp();
    const sym16 sym = load_window<SymBytes>(storage.window);
    __syncwarp();
    writer.emit(ws, m, sym, SymBytes == 2);
    ws += m;
  }
  return eng.finish();
}

// The same for lane streams (coding 3): K chains per thread, 4 steps (4 * 32 K symbols) per
// unchecked group, so a window of 512 symbols is 4 / K groups; the tile's last window runs
// checked steps.
template <int K, int P, int SymBytes, class Storage>
TILECODEC_DEV status rans_lanes_tile_to_writer(Storage& storage, const std::uint32_t* table, std::uint32_t prob_bits,
                                               std::uint32_t sym_bits, const device::tile_ref& tile, tile_writer& writer) {
  using sym_t = typename std::conditional<SymBytes == 2, std::uint16_t, std::uint8_t>::type;
  using engine = rans_lanes_warp_engine<K, P, SymBytes == 2 ? 9 : 8>;
  static_assert(sizeof(storage.rings.data) >= engine::lanes * engine::ring_bytes, "rings too small for these lanes");
  engine eng;
  const std::uint32_t n = tile.size();
  if (eng.begin(storage.rings.data, table, prob_bits, sym_bits, tile.bytes, tile.byte_count, n) != status::success)
    return eng.finish();
  sym_t* const win = reinterpret_cast<sym_t*>(storage.window);
  constexpr std::uint32_t window = tile_writer::window;
  constexpr std::uint32_t group = 4u * engine::lanes;  // symbols of a 4-step group
  std::uint32_t ws = 0;
  while (ws < n) {
    if (eng.fast_ok(window / eng.group_symbols())) {
#pragma unroll(window_unroll)
      for (std::uint32_t g = 0; g < window / group; ++g) {
        eng.advance_ring();
        eng.template group<4>([&](std::uint32_t j, std::uint32_t, std::uint32_t e) { win[group * g + j] = static_cast<sym_t>(e); });
      }
    } else {
      while (eng.decoded() < n) {  // the tile's last window: Lanes divides the window
        eng.advance_ring();
        sym_t* const w = win + (eng.decoded() - ws);
        eng.step([&](std::uint32_t j, std::uint32_t, std::uint32_t e) { w[j] = static_cast<sym_t>(e); });
      }
    }
    const std::uint32_t m = eng.decoded() - ws;
    __syncwarp();
    const sym16 sym = load_window<SymBytes>(storage.window);
    __syncwarp();
    writer.emit(ws, m, sym, SymBytes == 2);
    ws += m;
  }
  return eng.finish();
}

// decode_lanes_tile_any for one symbol width: the lane count picks the engine's chains per thread
// (lanes this storage has no rings for are unsupported), P = 12 gets compile-time shifts.
template <int SymBytes, int MaxLanes, class Storage>
TILECODEC_DEV status lanes_tile_of_width(Storage& storage, const std::uint32_t* e, std::uint32_t p, std::uint32_t sb,
                                         std::uint32_t lanes, const device::tile_ref& tile, tile_writer& writer) {
  if (lanes == 32) return p == 12 ? rans_lanes_tile_to_writer<1, 12, SymBytes>(storage, e, p, sb, tile, writer)
                                  : rans_lanes_tile_to_writer<1, 0, SymBytes>(storage, e, p, sb, tile, writer);
  if constexpr (MaxLanes >= 64)
    if (lanes == 64) return p == 12 ? rans_lanes_tile_to_writer<2, 12, SymBytes>(storage, e, p, sb, tile, writer)
                                    : rans_lanes_tile_to_writer<2, 0, SymBytes>(storage, e, p, sb, tile, writer);
  if constexpr (MaxLanes >= 128)
    if (lanes == 128) return p == 12 ? rans_lanes_tile_to_writer<4, 12, SymBytes>(storage, e, p, sb, tile, writer)
                                     : rans_lanes_tile_to_writer<4, 0, SymBytes>(storage, e, p, sb, tile, writer);
  return status::unsupported;
}

// Decodes a lane-stream tile (coding 3) of any supported lanes and precision into the writer.
template <int MaxProbBits, int MaxAlphabet, class Storage>
TILECODEC_DEV status decode_lanes_tile_any(const device::tensor_ref& tensor, const device::tile_ref& tile,
                                           const decode_table<MaxProbBits, MaxAlphabet>& table, Storage& storage,
                                           tile_writer& writer) {
  const std::uint32_t p = tensor.prob_bits, sb = symbol_bits(tensor.alphabet), lanes = tensor.lanes;
  const std::uint32_t* e = table.entry;
  // The lanes whose rings fit this storage (the device kernel's holds any; a user's TempStorage its own).
  constexpr std::size_t ring_space = sizeof(storage.rings.data);
  constexpr int max_lanes = ring_space >= sizeof(rans_lane_rings<128>::data)  ? 128
                            : ring_space >= sizeof(rans_lane_rings<64>::data) ? 64
                                                                              : 32;
  if (sb == 8) return lanes_tile_of_width<1, max_lanes>(storage, e, p, sb, lanes, tile, writer);
  if constexpr (MaxAlphabet == 512) return lanes_tile_of_width<2, max_lanes>(storage, e, p, sb, lanes, tile, writer);
  return status::unsupported;
}

TILECODEC_DEV u32x4 expand_nibbles(std::uint32_t lo4, std::uint32_t hi4) {
  const std::uint32_t a = lo4 & 0x0f0f0f0fu, b = (lo4 >> 4) & 0x0f0f0f0fu;
  const std::uint32_t c = hi4 & 0x0f0f0f0fu, d = (hi4 >> 4) & 0x0f0f0f0fu;
  return u32x4{byte_perm(a, b, 0x5140), byte_perm(a, b, 0x7362), byte_perm(c, d, 0x5140), byte_perm(c, d, 0x7362)};
}

// Lane t's 16 symbols [i0, i0 + 16) of a stored tile of n symbols (beyond n: zero).
TILECODEC_DEV sym16 load_stored16(const std::uint8_t* bytes, std::uint32_t alphabet, std::uint32_t i0, std::uint32_t n) {
  sym16 s{u32x4{0, 0, 0, 0}, u32x4{0, 0, 0, 0}};
  if (i0 + 16 <= n && alphabet == 256) {
    s.a = ldg_stream16(bytes + i0);  // 16-byte aligned: tiles are, and i0 is a multiple of 16
  } else if (i0 + 16 <= n && alphabet == 16) {
    const std::uint32_t* p = reinterpret_cast<const std::uint32_t*>(bytes + i0 / 2);
    s.a = expand_nibbles(p[0], p[1]);
  } else if (alphabet == 512) {
    std::uint32_t h[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
    for (std::uint32_t k = 0; k < 16; ++k)
      if (i0 + k < n) h[k / 2] |= stored_symbol(bytes, alphabet, i0 + k) << (16 * (k & 1));
    s.a = u32x4{h[0], h[1], h[2], h[3]};
    s.b = u32x4{h[4], h[5], h[6], h[7]};
  } else {
    for (std::uint32_t k = 0; i0 + k < n && k < 16; ++k) or_byte(s.a, k, stored_symbol(bytes, alphabet, i0 + k));
  }
  return s;
}

TILECODEC_DEV status stored_tile_to_writer(const device::tile_ref& tile, std::uint32_t alphabet, tile_writer& writer,
                                           std::uint32_t first_window = 0, std::uint32_t window_stride = 1) {
  const std::uint32_t n = tile.size();
  for (std::uint32_t ws = first_window * tile_writer::window; ws < n; ws += window_stride * tile_writer::window) {
    const std::uint32_t m = n - ws < tile_writer::window ? n - ws : tile_writer::window;
    const std::uint32_t i0 = ws + tile_writer::per_lane * lane_id();
    const sym16 sym = i0 < n ? load_stored16(tile.bytes, alphabet, i0, n) : sym16{u32x4{0, 0, 0, 0}, u32x4{0, 0, 0, 0}};
    writer.emit(ws, m, sym, alphabet == 512);
  }
  return status::success;
}

// decode_tile_any for one symbol width: 32, 64 and 128 lanes get 1, 2 or 4 chains per thread,
// fewer than 32 lanes the partial-warp engine; P = 12 gets compile-time shifts.
template <int SymBytes>
TILECODEC_DEV status shared_tile_of_width(warp_window_storage& storage, const std::uint32_t* e, std::uint32_t p,
                                          std::uint32_t sb, std::uint32_t lanes, const device::tile_ref& tile,
                                          tile_writer& writer) {
  if (lanes == 32) return p == 12 ? rans_tile_to_writer<1, false, 12, SymBytes>(storage, e, p, sb, 32, tile, writer)
                                  : rans_tile_to_writer<1, false, 0, SymBytes>(storage, e, p, sb, 32, tile, writer);
  if (lanes == 64) return p == 12 ? rans_tile_to_writer<2, false, 12, SymBytes>(storage, e, p, sb, 64, tile, writer)
                                  : rans_tile_to_writer<2, false, 0, SymBytes>(storage, e, p, sb, 64, tile, writer);
  if (lanes == 128) return p == 12 ? rans_tile_to_writer<4, false, 12, SymBytes>(storage, e, p, sb, 128, tile, writer)
                                   : rans_tile_to_writer<4, false, 0, SymBytes>(storage, e, p, sb, 128, tile, writer);
  return rans_tile_to_writer<1, true, 0, SymBytes>(storage, e, p, sb, lanes, tile, writer);
}

// Decodes tile `tile` of `tensor` (any lanes and precision, rANS or stored) into the writer.
// `table` must hold the tensor's table when it is rANS-coded.
template <int MaxProbBits, int MaxAlphabet>
TILECODEC_DEV status decode_tile_any(const device::tensor_ref& tensor, const device::tile_ref& tile,
                                     const decode_table<MaxProbBits, MaxAlphabet>& table, warp_window_storage& storage,
                                     tile_writer& writer) {
  if (tensor.coding == plane_coding::rans_lanes) return status::unsupported;  // decode_lanes_tile_any
  if (tensor.coding != plane_coding::rans) return stored_tile_to_writer(tile, tensor.alphabet, writer);
  const std::uint32_t p = tensor.prob_bits, sb = symbol_bits(tensor.alphabet), lanes = tensor.lanes;
  const std::uint32_t* e = table.entry;
  return sb == 8 ? shared_tile_of_width<1>(storage, e, p, sb, lanes, tile, writer)
                 : shared_tile_of_width<2>(storage, e, p, sb, lanes, tile, writer);
}

}  // namespace detail
}  // namespace tilecodec
