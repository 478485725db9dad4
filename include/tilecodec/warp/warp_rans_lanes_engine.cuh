// tilecodec/warp/warp_rans_lanes_engine.cuh: the warp-level decoding loop of rANS with one word
// stream per lane (plane coding 3, coder/rans_lanes.hpp). Users normally name the tile decoders.
//
// Read me first
// - Warps warps (a team: 1, 2 or 4) decode one tile of Lanes = 32 K Warps lanes. Thread t of
//   team warp w owns lanes 32 (w K + k) + t, k < K (K chains per thread). No chain ever waits for
//   another: there is no vote and no prefix count, and a chain's next word is loaded one step
//   before it is needed, so the dependent chain of a step is the table lookup, a multiply-add and
//   a byte permute. Team warps share nothing but reading the tile's head (states, word counts).
// - Each chain stages its own stream global -> shared through a private ring of R bytes (R = 128
//   for 32 and 64 chains per warp, 64 for 128: R / 16 cp.async chunks of 16 bytes, aligned in the
//   tile; the ring slot of tile byte p is p mod R). Every group of steps first waits for the
//   copies issued `ring_wait + 1` groups ago, then tops each chain's ring up by one chunk (when
//   fewer than R bytes lie ahead of its read position's chunk) and commits. A group of at most S
//   steps (S = RefillSteps, 4 or 8) takes at most 2 S bytes per chain, at most one chunk, so a
//   chunk issued with R - 16 bytes of data ahead of it is read no earlier than
//   ceil((R - 30) / 2 S) - 1 groups later (S = 4, R = 64: 4 groups, waiting for all but the 3
//   latest groups is enough; R = 128: 12 groups; S = 8, R = 128: 6 groups; see ring_wait). Eight
//   steps per top-up halve its instructions; they need 8 x 32 K symbols per window (K <= 2).
// - Reads never leave the ring and copies never leave the tile, whatever the tile holds: the
//   counts are checked against the tile's size at begin(), and a lane whose stream is corrupt
//   only reads stale ring bytes; finish() then finds it did not end exactly at its stream's end
//   in state L, like rans_lanes_decode_tile().
#pragma once

#include <cstdint>

#include "../coder/rans.hpp"
#include "../coder/rans_lanes.hpp"
#include "../status.hpp"
#include "warp_intrinsics.cuh"
#include "warp_rans_engine.cuh"

namespace tilecodec {
namespace detail {

// Bytes of each chain's ring (tuning only, never changes the bits): a power of two, 64 or more.
// `chains` = the chains one warp holds (32 K). 128 for 32 and 64 chains (4 or 8 KB per warp), 64
// for 128 (8 KB per warp): deeper rings hide more memory latency (H100, tile 256: 128-byte rings
// 1.2x faster than 64-byte ones).
#ifndef TILECODEC_LANE_RING_BYTES
#define TILECODEC_LANE_RING_BYTES(chains) ((chains) >= 128 ? 64u : 128u)
#endif

// Shared memory of one warp's Chains chains: a ring each, aligned to its size so a ring address
// is base | offset (one instruction).
template <int Chains>
struct rans_lane_rings {
  static constexpr std::uint32_t lane_bytes = TILECODEC_LANE_RING_BYTES(Chains);
  static_assert(lane_bytes >= 64 && lane_bytes <= 256 && (lane_bytes & (lane_bytes - 1)) == 0,
                "ring bytes: 64, 128 or 256");
  alignas(lane_bytes > 128 ? lane_bytes : 128) std::uint8_t data[Chains * lane_bytes];
};

// K: chains per thread; Warps: warps decoding the tile together (Lanes = 32 K Warps). P, B:
// probability and symbol bits when known at compile time (0: run-time), exactly as in
// rans_warp_engine. RefillSteps: the most steps between two advance_ring() calls (4 or 8).
template <int K, int P = 0, int B = 0, int Warps = 1, int RefillSteps = 4>
class rans_lanes_warp_engine {
  static_assert(K == 1 || K == 2 || K == 4, "1, 2 or 4 chains per thread");
  static_assert(rans_lanes_supported(32u * K * Warps), "rans_lanes: 32, 64 or 128 lanes");
  static_assert(P == 0 || (P >= 8 && P <= 12), "probability bits are 8..12");
  static_assert(B == 0 || B == 8 || B == 9, "symbols have 8 or 9 bits");
  static_assert(RefillSteps == 4 || RefillSteps == 8, "the ring is topped up every 4 or 8 steps");

 public:
  static constexpr std::uint32_t lanes = 32u * K * Warps;  // of the tile
  static constexpr std::uint32_t ring_bytes = rans_lane_rings<32 * K>::lane_bytes;  // per chain

 private:
  static constexpr std::uint32_t chain_stride = 32u * rans_lane_rings<32 * K>::lane_bytes;  // chain k: base + R t + 32 R k
  static constexpr std::uint32_t max_group_steps = RefillSteps;
  // Copies issued at group g have data at least ring_bytes - 30 bytes ahead of the read position;
  // a group takes at most 2 * max_group_steps bytes: the first group that can read them is
  // g + ceil((ring_bytes - 30) / (2 * max_group_steps)) - 1, and its wait must leave only the
  // later groups pending. (Calling advance_ring() more often only adds groups in between.)
  static constexpr int ring_wait = int((ring_bytes - 30 + 2 * max_group_steps - 1) / (2 * max_group_steps)) - 2;
  static_assert(ring_wait >= 0, "ring too small");

 public:
  // Steps of group(): 128 symbols, 4 register items per thread, as in rans_warp_engine.
  static constexpr std::uint32_t group_steps = 4u / K;

  // Starts decoding a tile: n symbols in `bytes` (byte_count, 16-byte aligned, global memory,
  // at least 6 * Lanes bytes: device::tensor_ref::tile() checks it) with `table` (decode_table
  // entries, shared memory). `rings`: this warp's rans_lane_rings<32 K> (shared memory);
  // `team_warp`: this warp's place in the team (0 when Warps = 1). All 32 lanes call it; the
  // result is the same in every warp of the team (each checks the whole head).
  TILECODEC_DEV status begin(std::uint8_t* rings, const std::uint32_t* table, std::uint32_t prob_bits,
                             std::uint32_t sym_bits, const std::uint8_t* bytes, std::uint32_t byte_count,
                             std::uint32_t n, std::uint32_t team_warp = 0) {
    t_ = lane_id();
    chain0_ = Warps == 1 ? 0u : team_warp * K;  // a compile-time 0 for one warp per tile
    ring_ = to_saddr(rings) + ring_bytes * t_;
    tab_ = to_saddr(table);
    pshift_ = prob_bits;
    pmask_ = __shfl_sync(full_warp_mask, (1u << prob_bits) - 1u, 0);  // see rans_warp_engine::begin
    sym_bits_ = sym_bits;
    src_ = bytes;
    n_ = n;
    i_ = 0;
    st_ = status::success;
    bool bad = false;
    std::uint32_t below = 0;  // words of the lanes of lower chains
#pragma unroll
    for (int c = 0; c < K * Warps; ++c) {  // every chain of the tile: the team agrees on `bad`
      const std::uint32_t l = 32u * std::uint32_t(c) + t_;
      const std::uint32_t x = *reinterpret_cast<const std::uint32_t*>(bytes + 4u * l);
      bad |= x < rans_state_lower;
      const std::uint32_t cnt = *reinterpret_cast<const std::uint16_t*>(bytes + 4u * lanes + 2u * l);
      const std::uint32_t incl = warp_inclusive_sum(cnt);
      const std::uint32_t rp = rans_lanes_head_bytes(lanes) + 2u * (below + incl - cnt);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        if (std::uint32_t(c) == chain0_ + std::uint32_t(k)) {
          x_[k] = x;
          rp_[k] = rp;
          fend_[k] = (rp + 2u * cnt + 15u) & ~15u;
        }
      }
      below += __shfl_sync(full_warp_mask, incl, 31);
    }
    // Every stream inside the tile, and nothing but padding after the last.
    if (rans_lanes_tile_bytes(lanes, below) != byte_count) bad = true;
    if (__any_sync(full_warp_mask, bad)) return st_ = status::corrupt_payload;
    // Prologue: fill every ring, wait for all of it, load each chain's first word.
#pragma unroll
    for (int k = 0; k < K; ++k) {
      fp_[k] = rp_[k] & ~15u;
      for (std::uint32_t c = 0; c < ring_bytes / 16u && fp_[k] < fend_[k]; ++c) {
        cp_async16_to(ring_ + chain_stride * k + (fp_[k] & (ring_bytes - 1u)), src_ + fp_[k]);
        fp_[k] += 16u;
      }
    }
    cp_async_commit();
    cp_async_wait<0>();
#pragma unroll
    for (int k = 0; k < K; ++k) w_[k] = word(k);
    return st_;
  }

  [[nodiscard]] TILECODEC_DEV std::uint32_t decoded() const { return i_; }
  [[nodiscard]] TILECODEC_DEV std::uint32_t size() const { return n_; }
  [[nodiscard]] TILECODEC_DEV std::uint32_t group_symbols() const { return group_steps * lanes; }
  [[nodiscard]] TILECODEC_DEV bool failed() const { return st_ != status::success; }

  // Can the next `groups` groups of group_symbols() run unchecked? (enough symbols: reads need no check)
  [[nodiscard]] TILECODEC_DEV bool fast_ok(std::uint32_t groups) const { return i_ + groups * group_symbols() <= n_; }

  // Waits for the copies a group may read and tops the rings up. Call before every group or step.
  TILECODEC_DEV void advance_ring() {
    cp_async_wait<ring_wait>();
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (fp_[k] < fend_[k] && fp_[k] - (rp_[k] & ~15u) < ring_bytes) {
        cp_async16_to(ring_ + chain_stride * k + (fp_[k] & (ring_bytes - 1u)), src_ + fp_[k]);
        fp_[k] += 16u;
      }
    }
    cp_async_commit();
  }

  // One unchecked group of Steps steps (at most RefillSteps; Steps * Lanes symbols of the tile,
  // Steps * 32 K of this warp). sink(j, item, entry) receives each decoded symbol's table entry: j = 32 K s +
  // 32 k + t its index among this warp's symbols of the group (step s, chain k, thread t; with
  // one warp per tile that is its index in the tile from the group's first symbol), item = K s + k
  // a compile-time register slot.
  template <std::uint32_t Steps = group_steps, class Sink>
  TILECODEC_DEV void group(Sink&& sink) {
    static_assert(Steps >= 1 && Steps <= max_group_steps, "a group takes at most RefillSteps steps (ring_wait)");
#pragma unroll
    for (std::uint32_t s = 0; s < Steps; ++s) {
      std::uint32_t e[K];
#pragma unroll
      for (int k = 0; k < K; ++k) e[k] = decode(x_[k]);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        sink(32u * K * s + 32u * k + t_, K * s + k, e[k]);
        renorm(k);
      }
    }
    i_ += Steps * lanes;
  }

  // One checked step (Lanes symbols of the tile, fewer at its end; sink(j, k, entry) with item
  // k < K, j = 32 k + t as in group()). Never fails: reads cannot leave the ring, and finish() judges the streams.
  template <class Sink>
  TILECODEC_DEV bool step(Sink&& sink) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const std::uint32_t l = 32u * std::uint32_t(k) + t_;
      if (i_ + 32u * chain0_ + l < n_) {
        sink(l, std::uint32_t(k), decode(x_[k]));
        renorm(k);
      }
    }
    i_ = i_ + lanes < n_ ? i_ + lanes : n_;
    return true;
  }

  // Waits for the ring's copies (call once per tile, also after an error), then checks that
  // every lane took exactly its stream and is back at its initial state.
  TILECODEC_DEV status finish() {
    cp_async_wait<0>();
    __syncwarp();
    if (st_ != status::success) return st_;
    // Each stream's end again from the counts (not kept in registers during the tile).
    bool bad = false;
    std::uint32_t below = 0;
#pragma unroll
    for (int c = 0; c < K * Warps; ++c) {
      const std::uint32_t cnt = *reinterpret_cast<const std::uint16_t*>(src_ + 4u * lanes + 2u * (32u * c + t_));
      const std::uint32_t incl = warp_inclusive_sum(cnt);
#pragma unroll
      for (int k = 0; k < K; ++k)
        if (std::uint32_t(c) == chain0_ + std::uint32_t(k))
          bad |= rp_[k] != rans_lanes_head_bytes(lanes) + 2u * (below + incl) || x_[k] != rans_state_lower;
      below += __shfl_sync(full_warp_mask, incl, 31);
    }
    if (__any_sync(full_warp_mask, bad)) st_ = status::corrupt_payload;
    return st_;
  }

 private:
  TILECODEC_DEV std::uint32_t decode(std::uint32_t& x) const {
    return rans_decode_step<P, B>(x, tab_, pmask_, pshift_, sym_bits_);
  }
  // The word at chain k's read position (ring slot rp mod 64).
  TILECODEC_DEV std::uint32_t word(int k) const {
    return lds_u32_word(ring_ | (rp_[k] & (ring_bytes - 1u)), k);
  }
  static TILECODEC_DEV std::uint32_t lds_u32_word(saddr a, int k) {
    switch (k) {  // compile-time after unrolling: the chain's ring offset folds into the load
      case 0: return lds_u16_at<0>(a);
      case 1: return lds_u16_at<int(chain_stride)>(a);  // (a | offset) + chain_stride * k
      case 2: return lds_u16_at<int(2 * chain_stride)>(a);
      default: return lds_u16_at<int(3 * chain_stride)>(a);
    }
  }
  // x << 16 | word where the chain needs a word (then x < 2^16), then the next word. One compare
  // and four instructions predicated on it: a selector chosen by the compare (a branch-free
  // PRMT) would put a SEL on the dependent chain and cost two instructions more per symbol.
  TILECODEC_DEV void renorm(int k) {
    if (x_[k] < rans_state_lower) {
      x_[k] = byte_perm(w_[k], x_[k], 0x5410u);
      rp_[k] += 2u;
      w_[k] = word(k);
    }
  }

  saddr ring_;  // shared address of this thread's chain-0 ring
  saddr tab_;   // shared address of the decode table
  const std::uint8_t* src_;
  std::uint32_t pshift_, pmask_, sym_bits_;
  std::uint32_t n_, i_, t_;
  std::uint32_t chain0_;   // the tile chain of this warp's chain 0 (team_warp * K)
  std::uint32_t x_[K];     // states
  std::uint32_t w_[K];     // the word at rp (loaded one step ahead)
  std::uint32_t rp_[K];    // tile byte offset of the chain's next word
  std::uint32_t fp_[K];    // next chunk to copy into the ring
  std::uint32_t fend_[K];  // end of the chunks that hold the stream
  status st_;
};

}  // namespace detail
}  // namespace tilecodec
