// tilecodec/warp/warp_rans_engine.cuh: the warp-level interleaved rANS decoding loop that every
// device decoder is built on (warp_tile_decoder, block_tile_decoder, device::decode_async).
// Users normally name the tile decoders instead.
//
// Read me first
// - One warp decodes one tile. Thread t owns rANS lanes t, t+32, ... (K = Lanes/32 states per
//   thread for Lanes >= 32; for Lanes < 32 threads t >= Lanes only take part in the votes).
// - A step decodes Lanes symbols (symbol i of the tile belongs to lane i % Lanes): every state
//   looks up its slot in the shared-memory table, then the lanes whose state fell below 2^16 take
//   the next stream words in lane order: a ballot, a population count of the lower lanes, and a
//   16-bit shared-memory load at base + rank. This is the serial chain of a tile; its latency
//   (two shared-memory loads, a vote and a dozen ALU operations) bounds the speed of one tile.
// - The tile's bytes are staged global -> shared with cp.async in 512-byte chunks (16 bytes per
//   lane) through a 4-slot ring (2 KB) with a 256-byte mirror of slot 0 behind it, so a group of
//   steps (at most 128 words) reads contiguously without wrapping. Chunks k and k+1 around the
//   read position are always complete; k+2 is in flight. Reads never leave the tile's bytes.
// - Fast groups (128 symbols, unchecked) run while the tile has at least a group of symbols and a
//   group's worth of words left; the tail runs checked steps that bound every word read. finish()
//   checks full consumption (at most 7 padding words left) and that every lane ended at 2^16,
//   exactly like rans_decode_tile().
#pragma once

#include <cstdint>

#include "../coder/rans.hpp"
#include "../status.hpp"
#include "warp_intrinsics.cuh"

namespace tilecodec {
namespace detail {

// One decode step of a lane from the shared-memory table at `tab` (decode_table entries:
// symbol | freq << 20 | bias << sym_bits): returns the entry, updates the state (not yet
// renormalised). P, B: compile-time probability and symbol bits, or 0 for the run-time ones.
// pmask = 2^prob_bits - 1 (callers pass it through a shuffle: see rans_warp_engine::begin).
template <int P, int B>
TILECODEC_DEV std::uint32_t rans_decode_step(std::uint32_t& x, saddr tab, std::uint32_t pmask, std::uint32_t prob_bits,
                                             std::uint32_t sym_bits) {
  const std::uint32_t shift = P != 0 ? std::uint32_t(P) : prob_bits;
  const std::uint32_t e = lds_u32(tab + ((x & pmask) << 2));
  const std::uint32_t sb = B != 0 ? std::uint32_t(B) : sym_bits;
  const std::uint32_t q = (x >> shift) - (1u << (20u - sb));
  x = (e >> 20) * q + (e >> sb);  // == freq * (x >> p) + bias (mod 2^32)
  return e;
}

struct rans_ring {
  static constexpr std::uint32_t chunk_bytes = 512;  // one 16-byte cp.async per lane
  static constexpr std::uint32_t slots = 4;
  static constexpr std::uint32_t bytes = chunk_bytes * slots;
  static constexpr std::uint32_t mirror_bytes = 256;  // a group reads at most 128 words
  static constexpr std::uint32_t group_read_bytes = 256;
  alignas(16) std::uint8_t data[bytes + mirror_bytes];
};

// K: states per thread (1 for Lanes <= 32, 2 for Lanes = 64, 4 for Lanes = 128). Partial: Lanes < 32 (run-time).
// P: probability bits when known at compile time (12 lets the compiler fold a shift and an add
// into one LEA.HI), 0 for run-time. B: symbol bits of the table entries (8 or 9) when known at
// compile time, 0 for run-time. Compile-time values never change the bits decoded.
template <int K, bool Partial, int P = 0, int B = 0>
class rans_warp_engine {
  static_assert(K == 1 || K == 2 || K == 4, "up to 128 rANS lanes per warp");
  static_assert(!(Partial && K != 1), "fewer than 32 lanes use one state per thread");
  static_assert(P == 0 || (P >= 8 && P <= 12), "probability bits are 8..12");
  static_assert(B == 0 || B == 8 || B == 9, "symbols have 8 or 9 bits");

 public:
  // Symbols per fast group: 4 steps of 32 lanes, 2 of 64, 1 of 128, or 4 steps of Lanes < 32.
  static constexpr std::uint32_t group_steps = Partial ? 4u : 4u / K;

  // Starts decoding a tile: n symbols in `bytes` (byte_count, 16-byte aligned, in global memory),
  // `lanes` rANS lanes, with `table` (decode_table entries for prob_bits and sym_bits, shared
  // memory). All 32 lanes call it.
  TILECODEC_DEV status begin(rans_ring& ring, const std::uint32_t* table, std::uint32_t prob_bits,
                             std::uint32_t sym_bits, const std::uint8_t* bytes, std::uint32_t byte_count,
                             std::uint32_t n, std::uint32_t lanes) {
    ring_s_ = to_saddr(ring.data);
    tab_ = to_saddr(table);
    pshift_ = prob_bits;
    // The mask goes through a shuffle so the compiler cannot fold it into the table address (it
    // would then shift before masking and add the base separately: three operations, not two).
    pmask_ = __shfl_sync(full_warp_mask, (1u << prob_bits) - 1u, 0);
    sym_bits_ = sym_bits;
    src_ = bytes;
    end_ = byte_count;
    n_ = n;
    i_ = 0;
    t_ = lane_id();
    lt_ = lanemask_lt();
    lanes_ = lanes;
    lower_ = Partial && t_ >= lanes ? 0u : rans_state_lower;
    st_ = status::success;
    // Prologue: chunks 0..2 in flight, 0 and 1 complete.
    for (std::uint32_t c = 0; c + 1 < rans_ring::slots; ++c) issue(c);
    next_chunk_ = rans_ring::slots - 1;
    cp_async_wait<1>();
    __syncwarp();
    bound_ = rans_ring::chunk_bytes;
    bool bad = false;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const std::uint32_t l = std::uint32_t(k) * 32u + t_;
      if (l < this->lanes()) {
        x_[k] = lds_u32(ring_s_ + 4u * l);
        bad |= x_[k] < rans_state_lower;
      } else {
        x_[k] = rans_state_lower;
      }
    }
    pos_ = 4u * this->lanes();
    wa_ = ring_s_ + pos_;
    if (__any_sync(full_warp_mask, bad)) st_ = status::corrupt_payload;
    return st_;
  }

  [[nodiscard]] TILECODEC_DEV std::uint32_t decoded() const { return i_; }
  [[nodiscard]] TILECODEC_DEV std::uint32_t size() const { return n_; }
  [[nodiscard]] TILECODEC_DEV std::uint32_t lanes() const { return Partial ? lanes_ : 32u * K; }
  [[nodiscard]] TILECODEC_DEV std::uint32_t group_symbols() const { return group_steps * lanes(); }
  [[nodiscard]] TILECODEC_DEV bool failed() const { return st_ != status::success; }

  // Can the next `groups` groups run unchecked? (enough symbols, and words for any outcome)
  [[nodiscard]] TILECODEC_DEV bool fast_ok(std::uint32_t groups) const {
    return i_ + groups * group_symbols() <= n_ && pos_ + groups * rans_ring::group_read_bytes <= end_;
  }

  // Keeps chunks k, k+1 around the read position complete. Call before every group or checked step.
  TILECODEC_DEV void advance_ring() {
    if (pos_ >= bound_) {
      __syncwarp();  // every lane is done reading the slot that is refilled now
      issue(next_chunk_++);
      cp_async_wait<1>();
      __syncwarp();
      bound_ += rans_ring::chunk_bytes;
    }
  }

  // One unchecked group. sink(j, item, entry) receives each decoded symbol (the low byte of the
  // table entry): j is its index relative to the group's first symbol, item = step * K + k is a
  // compile-time register slot (item k of thread t is symbol 32 * k + t of the group, or
  // Lanes * k + t for Lanes < 32).
  template <class Sink>
  TILECODEC_DEV void group(Sink&& sink) {
    saddr wa = wa_;
#pragma unroll
    for (std::uint32_t s = 0; s < group_steps; ++s) {
      if constexpr (K == 1) {
        const std::uint32_t e = decode(x_[0]);
        if (!Partial || t_ < lanes_) sink(s * lanes() + t_, s, e);
        const bool need = x_[0] < (Partial ? lower_ : rans_state_lower);
        const std::uint32_t b = __ballot_sync(full_warp_mask, need);
        // Every lane loads (a word in the ring either way); the ones in need keep it.
        x_[0] = renorm(x_[0], need, lds_u16(wa + 2u * popc(b & lt_)));
        wa += 2u * popc(b);
      } else {
        // K independent chains per thread: all table loads first, then the votes; the word
        // positions of chain k follow the counts of chains 0..k-1 (adds only, no loads).
        std::uint32_t e[K], b[K];
        bool need[K];
#pragma unroll
        for (int k = 0; k < K; ++k) e[k] = decode(x_[k]);
#pragma unroll
        for (int k = 0; k < K; ++k) {
          sink(s * 32u * K + 32u * k + t_, K * s + k, e[k]);
          need[k] = x_[k] < rans_state_lower;
          b[k] = __ballot_sync(full_warp_mask, need[k]);
        }
#pragma unroll
        for (int k = 0; k < K; ++k) {
          x_[k] = renorm(x_[k], need[k], lds_u16(wa + 2u * popc(b[k] & lt_)));
          wa += 2u * popc(b[k]);
        }
      }
    }
    consumed(static_cast<std::uint32_t>(wa - wa_));
    i_ += group_symbols();
  }

  // One checked step (Lanes symbols, fewer at the tile's end; sink(j, k, entry) as above with
  // item k < K). Returns false, with the tile
  // marked corrupt, when the step would read past the tile's words.
  template <class Sink>
  TILECODEC_DEV bool step(Sink&& sink) {
    std::uint32_t b[K];
    std::uint32_t total = 0;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const std::uint32_t l = std::uint32_t(k) * 32u + t_;
      const bool active = l < lanes() && i_ + l < n_;
      bool need = false;
      if (active) {
        const std::uint32_t e = decode(x_[k]);
        sink(l, std::uint32_t(k), e);
        need = x_[k] < rans_state_lower;
      }
      b[k] = __ballot_sync(full_warp_mask, need);
      total += popc(b[k]);
    }
    if (pos_ + 2u * total > end_) {
      st_ = status::corrupt_payload;
      return false;
    }
    std::uint32_t before = 0;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (b[k] & (1u << t_)) x_[k] = renorm(x_[k], true, lds_u16(wa_ + 2u * (before + popc(b[k] & lt_))));
      before += popc(b[k]);
    }
    consumed(2u * total);
    i_ = i_ + lanes() < n_ ? i_ + lanes() : n_;
    return true;
  }

  // Waits for the ring's copies (call once per tile, also after an error), then checks that the
  // stream was consumed and every lane is back at its initial state.
  TILECODEC_DEV status finish() {
    cp_async_wait<0>();
    __syncwarp();
    if (st_ != status::success) return st_;
    if ((end_ - pos_) / 2u > (tile_alignment - 2u) / 2u) return st_ = status::corrupt_payload;
    bool bad = false;
#pragma unroll
    for (int k = 0; k < K; ++k) bad |= std::uint32_t(k) * 32u + t_ < lanes() && x_[k] != rans_state_lower;
    if (__any_sync(full_warp_mask, bad)) st_ = status::corrupt_payload;
    return st_;
  }

 private:
  TILECODEC_DEV std::uint32_t decode(std::uint32_t& x) const {
    return rans_decode_step<P, B>(x, tab_, pmask_, pshift_, sym_bits_);
  }
  // x << 16 | word where the lane needs a word (then x < 2^16), else x: a PRMT predicated on the
  // compare (a selector chosen by it costs a SEL more).
  static TILECODEC_DEV std::uint32_t renorm(std::uint32_t x, bool need, std::uint32_t word) {
    return need ? byte_perm(word, x, 0x5410u) : x;
  }
  TILECODEC_DEV void consumed(std::uint32_t bytes) {
    pos_ += bytes;
    wa_ += bytes;
    if (wa_ >= ring_s_ + rans_ring::bytes) wa_ -= rans_ring::bytes;
  }
  // Chunk c: tile bytes [512c, 512c + 512) into slot c % 4; slot 0's first 256 bytes also into the mirror.
  TILECODEC_DEV void issue(std::uint32_t c) {
    const std::uint32_t o = c * rans_ring::chunk_bytes + 16u * t_;
    if (o < end_) {
      cp_async16_to(ring_s_ + (o & (rans_ring::bytes - 1u)), src_ + o);
      if ((c & (rans_ring::slots - 1u)) == 0 && t_ < rans_ring::mirror_bytes / 16u)
        cp_async16_to(ring_s_ + rans_ring::bytes + 16u * t_, src_ + o);
    }
    cp_async_commit();
  }

  saddr ring_s_;         // shared address of the ring
  saddr wa_;             // shared address of the next word (in [ring, ring + 2 KB))
  saddr tab_;            // shared address of the decode table
  const std::uint8_t* src_;
  std::uint32_t pshift_, pmask_, sym_bits_;
  std::uint32_t end_;    // tile bytes: words end here
  std::uint32_t n_, i_;  // symbols in the tile, symbols decoded
  std::uint32_t t_, lt_, lanes_, lower_;
  std::uint32_t pos_;    // tile byte offset of the next word
  std::uint32_t bound_;  // pos_ at which the ring moves on by a chunk
  std::uint32_t next_chunk_;
  std::uint32_t x_[K];
  status st_;
};

}  // namespace detail
}  // namespace tilecodec
