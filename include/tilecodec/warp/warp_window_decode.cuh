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
#include "warp_fixed_decode.cuh"
#include "warp_fixed_marked_decode.cuh"
#include "warp_intrinsics.cuh"
#include "warp_rans_engine.cuh"
#include "warp_rans_lanes_engine.cuh"

// Groups of a fast window unrolled (tuning only, never changes the bits): rolled measured 0-6%
// faster on H100 than fully unrolled (smaller loop).
#ifndef TILECODEC_WINDOW_UNROLL
#define TILECODEC_WINDOW_UNROLL 1
#endif

// Lane-stream steps between two ring top-ups when a warp holds 32 or 64 chains (tuning only,
// never changes the bits): 8 or 4. 128 chains always take 4 (a window holds only 4 steps).
#ifndef TILECODEC_LANE_REFILL_STEPS
#define TILECODEC_LANE_REFILL_STEPS 8
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
    writer.template emit<SymBytes == 2>(m, sym);
    ws += m;
  }
  return eng.finish();
}

// The same for lane streams (coding 3), by warp `team_warp` of a team of Warps warps that decode
// the tile together (Warps = 1: the whole tile). A warp holds K chains per thread, 32 K of the
// tile's Lanes = 32 K Warps lanes, which decode tile symbols s Lanes + 32 K team_warp + [0, 32 K)
// at step s: a run of consecutive symbols. The warp's 512-symbol window holds 16 / K steps of its
// runs, lane t's 16 symbols (window[16 t, 16 t + 16)) are tile symbols
// lanes_window_first(Lanes, Warps, team_warp) + a multiple of the team window (Warps x 512), and
// the writer (started there by the caller, stride Warps x 512) writes them: no warp ever waits for
// another. The tile's last window runs checked steps.
template <int K, int Warps, int P, int SymBytes, class Storage>
TILECODEC_DEV status rans_lanes_tile_to_writer(Storage& storage, std::uint32_t team_warp, const std::uint32_t* table,
                                               std::uint32_t prob_bits, std::uint32_t sym_bits,
                                               const device::tile_ref& tile, tile_writer& writer) {
  using sym_t = typename std::conditional<SymBytes == 2, std::uint16_t, std::uint8_t>::type;
  // A window holds 16 / K steps of this warp: 8-step groups (one ring top-up per 8 steps) where
  // that is a whole number of groups, 4-step groups for K = 4.
  constexpr int steps = K <= 2 ? TILECODEC_LANE_REFILL_STEPS : 4;
  using engine = rans_lanes_warp_engine<K, P, SymBytes == 2 ? 9 : 8, Warps, steps>;
  static_assert(sizeof(storage.rings.data) >= 32 * K * engine::ring_bytes, "rings too small for these lanes");
  engine eng;
  const std::uint32_t n = tile.size();
  if (eng.begin(storage.rings.data, table, prob_bits, sym_bits, tile.bytes, tile.byte_count, n, team_warp) !=
      status::success)
    return eng.finish();
  sym_t* const win = reinterpret_cast<sym_t*>(storage.window);
  constexpr std::uint32_t team_window = Warps * tile_writer::window;  // tile symbols per window
  constexpr std::uint32_t group = steps * 32u * K;                    // this warp's symbols of a group
  std::uint32_t ws = 0;
  while (ws < n) {
    if (eng.fast_ok(team_window / eng.group_symbols())) {
#pragma unroll(window_unroll)
      for (std::uint32_t g = 0; g < tile_writer::window / group; ++g) {
        eng.advance_ring();
        eng.template group<steps>([&](std::uint32_t j, std::uint32_t, std::uint32_t e) { win[group * g + j] = static_cast<sym_t>(e); });
      }
    } else {
      while (eng.decoded() < n) {  // the tile's last window: this warp's steps so far, 32 K symbols each
        eng.advance_ring();
        sym_t* const w = win + (eng.decoded() - ws) / Warps;
        eng.step([&](std::uint32_t j, std::uint32_t, std::uint32_t e) { w[j] = static_cast<sym_t>(e); });
      }
    }
    __syncwarp();
    const sym16 sym = load_window<SymBytes>(storage.window);
    __syncwarp();
    writer.template emit_next<SymBytes == 2>(sym);
    ws += team_window;
  }
  return eng.finish();
}

// Where lane t of warp `team_warp` of a team of `team_warps` warps finds its first 16 symbols of
// a lane-stream tile of `lanes` lanes (see rans_lanes_tile_to_writer; 16 t for one warp).
TILECODEC_DEV std::uint32_t lanes_window_first(std::uint32_t lanes, std::uint32_t team_warps, std::uint32_t team_warp) {
  const std::uint32_t run = lanes / team_warps;  // 32 K symbols of a step per warp
  const std::uint32_t t = lane_id(), per_run = run / 16u;
  return lanes * (t / per_run) + run * team_warp + 16u * (t % per_run);
}

// One tile's share for compile-time lanes, team size and symbol width; P = 12 gets compile-time
// shifts.
template <int Lanes, int Warps, int SymBytes, class Storage>
TILECODEC_DEV status team_tile_of_width(Storage& storage, std::uint32_t team_warp, const std::uint32_t* e, std::uint32_t p,
                                        std::uint32_t sb, const device::tile_ref& tile, tile_writer& writer) {
  constexpr int K = Lanes / 32 / Warps;
  return p == 12 ? rans_lanes_tile_to_writer<K, Warps, 12, SymBytes>(storage, team_warp, e, p, sb, tile, writer)
                 : rans_lanes_tile_to_writer<K, Warps, 0, SymBytes>(storage, team_warp, e, p, sb, tile, writer);
}

template <int Lanes, int Warps, class Storage>
TILECODEC_DEV status team_tile(Storage& storage, std::uint32_t team_warp, const std::uint32_t* e, std::uint32_t p,
                               std::uint32_t sb, const device::tile_ref& tile, tile_writer& writer) {
  return sb == 8 ? team_tile_of_width<Lanes, Warps, 1>(storage, team_warp, e, p, sb, tile, writer)
                 : team_tile_of_width<Lanes, Warps, 2>(storage, team_warp, e, p, sb, tile, writer);
}

// Warp `team_warp` of the `team_warps` warps (1, 2 or 4; at most lanes / 32) that decode a
// lane-stream tile together; the writer must start at lanes_window_first(), stride team_warps x
// 512. `storage` has rings for up to 128 chains (warp_lanes_storage<128>).
template <int MaxProbBits, int MaxAlphabet, class Storage>
TILECODEC_DEV status decode_lanes_team_tile(const device::tensor_ref& tensor, const device::tile_ref& tile,
                                            const decode_table<MaxProbBits, MaxAlphabet>& table, Storage& storage,
                                            std::uint32_t team_warps, std::uint32_t team_warp, tile_writer& writer) {
  static_assert(sizeof(storage.rings.data) >= sizeof(rans_lane_rings<128>::data), "rings too small for 128 lanes");
  const std::uint32_t p = tensor.prob_bits, sb = symbol_bits(tensor.alphabet);
  const std::uint32_t* e = table.entry;
  if (sb != 8 && MaxAlphabet < 512) return status::unsupported;
  switch (tensor.lanes * 8u + team_warps) {
    case 32 * 8 + 1: return team_tile<32, 1>(storage, team_warp, e, p, sb, tile, writer);
    case 64 * 8 + 1: return team_tile<64, 1>(storage, team_warp, e, p, sb, tile, writer);
    case 64 * 8 + 2: return team_tile<64, 2>(storage, team_warp, e, p, sb, tile, writer);
    case 128 * 8 + 1: return team_tile<128, 1>(storage, team_warp, e, p, sb, tile, writer);
    case 128 * 8 + 2: return team_tile<128, 2>(storage, team_warp, e, p, sb, tile, writer);
    case 128 * 8 + 4: return team_tile<128, 4>(storage, team_warp, e, p, sb, tile, writer);
    default: return status::unsupported;
  }
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
    if (alphabet == 512) writer.emit<true>(m, sym); else writer.emit<false>(m, sym);
  }
  return status::success;
}

// One warp decodes windows first_window, first_window + window_stride, ... of tile `tile` of a
// tensor with coding C (plane_coding::fixed or fixed_marked), or of a stored tensor,
// through the window path, as out_type values into out (tile element (r, c) at out[r * ld + c]).
// Taken by the warp and block tile decoders and by decode_async for what its staged path leaves.
// Not inlined (TILECODEC_DEV_NOINLINE), and with scalar arguments only: nvcc builds its
// code-width loops once per translation unit instead of into every caller, and a call needs no
// stack (PERFORMANCE.md 3.9). One function per coding, so that a kernel embedding the decoder of
// one coder carries that coder's loops only (ptxas compiles a callee again for every kernel that
// calls it). A null out or an ld below the tile's width is invalid_argument; every lane returns
// the same status.
template <plane_coding C>
TILECODEC_DEV_NOINLINE status window_tile_decode(const device::tensor_ref& tensor, std::uint64_t tile, void* out,
                                                 dtype out_type, std::uint64_t ld, std::uint32_t first_window,
                                                 std::uint32_t window_stride) {
  static_assert(C == plane_coding::fixed || C == plane_coding::fixed_marked, "codings whose windows decode alone");
  device::tile_ref tr;
  const status s = tensor.output_tile(tile, out, ld, tr);
  if (s != status::success) return s;
  tile_writer writer;
  writer.set_tensor(tensor, out_type);
  writer.begin_tile(tr, out, ld, first_window, window_stride);
  if (tensor.coding == plane_coding::stored) return stored_tile_to_writer(tr, tensor.alphabet, writer, first_window, window_stride);
  if (tensor.coding != C) return status::unsupported;
  if constexpr (C == plane_coding::fixed) return fixed_tile_to_writer(tensor, tensor.fixed(), tr, writer, first_window, window_stride);
  else return fixed_marked_tile_to_writer(tensor.fixed(), tensor, tr, writer, first_window, window_stride);
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

// Decodes tile `tile` of `tensor` (rANS with any lanes and precision, or stored) into the writer.
// `table` must hold the tensor's table when it is rANS-coded. Lane-stream tiles take
// decode_lanes_team_tile, fixed-coded ones (codings 2 and 4) window_tile_decode or the staged
// path of device::decode_async.
template <int MaxProbBits, int MaxAlphabet>
TILECODEC_DEV status decode_tile_any(const device::tensor_ref& tensor, const device::tile_ref& tile,
                                     const decode_table<MaxProbBits, MaxAlphabet>& table, warp_window_storage& storage,
                                     tile_writer& writer) {
  if (tensor.coding == plane_coding::rans_lanes || is_fixed_coding(tensor.coding)) return status::unsupported;
  if (tensor.coding != plane_coding::rans) return stored_tile_to_writer(tile, tensor.alphabet, writer);
  const std::uint32_t p = tensor.prob_bits, sb = symbol_bits(tensor.alphabet), lanes = tensor.lanes;
  const std::uint32_t* e = table.entry;
  return sb == 8 ? shared_tile_of_width<1>(storage, e, p, sb, lanes, tile, writer)
                 : shared_tile_of_width<2>(storage, e, p, sb, lanes, tile, writer);
}

}  // namespace detail
}  // namespace tilecodec
