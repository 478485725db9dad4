// tilecodec/fused/rans_quad.cuh: one warp decodes a rANS tile stored in the mma order quad by quad
// (1024 symbols), handing each lane its four A fragments (coder/rans.hpp, format/mma_order.hpp).
//
//   __shared__ rans_table_storage table;              // per block: 16 KB at 12 probability bits
//   __shared__ rans_warp_storage storage[kWarps];     // per warp: 6 KB
//   build_rans_table<kThreads>(table, ...);           // all threads; __syncthreads() inside
//   rans_quad_decoder dec;
//   if (dec.begin(storage[warp], table, ...) == status::success)
//     for (q = 0; q < quads; ++q) if (!dec.quad(pairs)) break;   // pairs[r4][j]: symbols 2j, 2j+1
//   status s = dec.finish();
//
// Read me first
// - rANS lane l decodes symbols l, l+32, ... (coder/rans.hpp). In the mma order a quad's symbol
//   i = 32 L + 8 r4 + e belongs to mma lane L, so step s of a quad (symbols 32 s .. 32 s + 31)
//   decodes all 32 symbols of mma lane s. Each step stores its symbols into a per-warp window
//   (u16, one 64-byte row per mma lane, 16-byte vectors swizzled so the reads are conflict free);
//   after 32 steps every lane reads its row with four 16-byte loads.
// - The stream is staged global -> shared with cp.async through a 4 KB ring of four 1 KB chunks;
//   a quad reads at most 1024 words (2 chunks), so before each quad the chunks holding the next
//   1024 words are complete and the one after is in flight. Reads never leave the tile's bytes.
// - A quad runs unchecked when 1024 words remain; otherwise every step checks the stream bound.
//   finish() checks full consumption (at most 7 padding words) and that every lane ended at L.
#pragma once

#include <cstdint>

#include "../coder/frequency_table.hpp"
#include "../coder/rans.hpp"
#include "../status.hpp"

namespace tilecodec {
namespace fused {

struct alignas(16) rans_table_storage {  // 16-aligned size: per-warp storage follows it
  std::uint32_t entry[4096];  // host layout (coder/frequency_table.hpp): symbol | f << B | bias << (B + P)
  std::uint32_t cum[516];
  std::uint32_t partial[32];
  std::uint32_t state;  // a tilecodec::status value
};

struct rans_warp_storage {
  alignas(16) std::uint16_t ring[2048];    // 4 chunks of 512 stream words
  alignas(16) std::uint16_t window[1024];  // one quad's symbols
};

// Builds the decode table from the tensor's frequency table (section bytes at `table`: u16 first,
// u16 count, count x u16 frequencies; first and count come from the host parse). Checks every
// frequency against max_frequency() and the sum against 2^prob_bits, as build_decode_table().
// All Threads threads of the block call it; it ends with __syncthreads().
template <int Threads>
__device__ status build_rans_table(rans_table_storage& s, const std::uint8_t* table, std::uint32_t first,
                                   std::uint32_t count, std::uint32_t prob_bits, std::uint32_t alphabet) {
  static_assert(Threads % 32 == 0 && Threads * 2 >= 512, "two frequencies per thread cover 512 symbols");
  const std::uint32_t tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;
  const std::uint32_t maxf = max_frequency(alphabet, prob_bits);
  const std::uint16_t* freq = reinterpret_cast<const std::uint16_t*>(table + 4);
  const std::uint32_t s0 = 2 * tid;
  const std::uint32_t f0 = s0 < count ? freq[s0] : 0u, f1 = s0 + 1 < count ? freq[s0 + 1] : 0u;
  bool bad = f0 > maxf || f1 > maxf || prob_bits < 8 || prob_bits > 12 || count > 512;
  std::uint32_t v = f0 + f1;
#pragma unroll
  for (std::uint32_t d = 1; d < 32; d <<= 1) {
    const std::uint32_t o = __shfl_up_sync(0xffffffffu, v, d);
    if (lane >= d) v += o;
  }
  if (lane == 31) s.partial[warp] = v;
  __syncthreads();
  std::uint32_t before = 0, total = 0;
  for (std::uint32_t w = 0; w < Threads / 32; ++w) {
    before += w < warp ? s.partial[w] : 0u;
    total += s.partial[w];
  }
  const std::uint32_t excl = before + v - (f0 + f1);
  if (s0 <= 512) s.cum[s0] = excl;
  if (s0 + 1 <= 512) s.cum[s0 + 1] = excl + f0;
  bad = __syncthreads_or(bad) != 0 || total != (1u << prob_bits);
  if (bad) {
    if (tid == 0) s.state = static_cast<std::uint32_t>(status::corrupt_table);
    __syncthreads();
    return status::corrupt_table;
  }
  if (tid == 0) s.cum[count] = total;
  __syncthreads();
  const std::uint32_t slots = 1u << prob_bits, sb = symbol_bits(alphabet);
  for (std::uint32_t j = tid; j < slots; j += Threads) {
    std::uint32_t lo = 0, hi = count;  // the last symbol whose range starts at or before j
    while (hi - lo > 1) {
      const std::uint32_t mid = (lo + hi) >> 1;
      if (s.cum[mid] <= j) lo = mid; else hi = mid;
    }
    const std::uint32_t f = s.cum[lo + 1] - s.cum[lo];
    s.entry[j] = pack_decode_entry(first + lo, f, j - s.cum[lo], prob_bits, sb);
  }
  if (tid == 0) s.state = static_cast<std::uint32_t>(status::success);
  __syncthreads();
  return status::success;
}

class rans_quad_decoder {
 public:
  static constexpr std::uint32_t chunk_words = 512;
  static constexpr std::uint32_t ring_words = 2048;

  __device__ status begin(rans_warp_storage& st, const rans_table_storage& table, std::uint32_t prob_bits,
                          std::uint32_t alphabet, const std::uint8_t* tile, std::uint64_t bytes) {
    ring_ = st.ring;
    window_ = st.window;
    table_ = table.entry;
    p_ = prob_bits;
    sb_ = symbol_bits(alphabet);
    tile_ = tile;
    lane_ = threadIdx.x & 31u;
    lt_ = (1u << lane_) - 1u;
    pos_ = 0;
    issued_ = 0;
    st_ = status::success;
    if (table.state != static_cast<std::uint32_t>(status::success)) return st_ = status::corrupt_table;
    if (bytes < 128 || bytes > 0x7fffffffull) {
      words_ = 0;
      return st_ = status::corrupt_payload;
    }
    words_ = static_cast<std::uint32_t>((bytes - 128) / 2);
    bytes_ = static_cast<std::uint32_t>(bytes);
    x_ = *reinterpret_cast<const std::uint32_t*>(tile + 4 * lane_);
    for (int c = 0; c < 4; ++c) issue();
    if (__any_sync(0xffffffffu, x_ < rans_state_lower)) st_ = status::corrupt_payload;
    return st_;
  }

  // Decodes the next quad into pairs[r4][j] (symbols 8 r4 + 2j and + 1 of this lane, low half
  // first). Returns false, marking the tile corrupt, when the stream runs out.
  __device__ bool quad(std::uint32_t (&pairs)[4][4]) {
    if (st_ != status::success) return false;
    // Chunks c0 .. c0 + 2 complete (the next 1024 words), c0 + 3 in flight.
    const std::uint32_t c0 = pos_ / chunk_words;
    __syncwarp();  // every lane is done with the slots refilled now
    while (issued_ < c0 + 4) issue();
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    __syncwarp();
    const std::uint32_t mask = (1u << p_) - 1u;
    const bool fast = pos_ + 1024u <= words_;
    const std::uint32_t swz_read = (lane_ >> 1) & 3u;
#pragma unroll 4
    for (std::uint32_t s = 0; s < 32; ++s) {
      const std::uint32_t e = table_[x_ & mask];
      const std::uint32_t sym = e & ((1u << sb_) - 1u);
      const std::uint32_t f = (e >> sb_) & mask;
      x_ = f * (x_ >> p_) + (e >> (sb_ + p_));
      window_[32u * s + 8u * ((lane_ >> 3) ^ ((s >> 1) & 3u)) + (lane_ & 7u)] = static_cast<std::uint16_t>(sym);
      const bool need = x_ < rans_state_lower;
      const std::uint32_t b = __ballot_sync(0xffffffffu, need);
      const std::uint32_t take = __popc(b);
      if (!fast && pos_ + take > words_) {
        st_ = status::corrupt_payload;
        break;
      }
      const std::uint32_t word = ring_[(pos_ + __popc(b & lt_)) & (ring_words - 1u)];
      if (need) x_ = (x_ << 16) | word;
      pos_ += take;
    }
    __syncwarp();
    if (st_ != status::success) return false;
    const std::uint16_t* row = window_ + 32u * lane_;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint4 v = *reinterpret_cast<const uint4*>(row + 8u * (std::uint32_t(j) ^ swz_read));
      pairs[j][0] = v.x;
      pairs[j][1] = v.y;
      pairs[j][2] = v.z;
      pairs[j][3] = v.w;
    }
    __syncwarp();
    return true;
  }

  // Waits for the ring's copies, then checks the stream like rans_decode_tile().
  __device__ status finish() {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    __syncwarp();
    if (st_ != status::success) return st_;
    if (words_ - pos_ > 7u) return st_ = status::corrupt_payload;
    if (__any_sync(0xffffffffu, x_ != rans_state_lower)) st_ = status::corrupt_payload;
    return st_;
  }

 private:
  // Chunk c (stream words [512 c, 512 c + 512), tile bytes from 128 + 1024 c) into ring slot c % 4,
  // 16 bytes per lane and copy; pieces past the tile are not copied.
  __device__ void issue() {
    const std::uint32_t c = issued_++;
#pragma unroll
    for (std::uint32_t h = 0; h < 2; ++h) {
      const std::uint32_t off = 1024u * c + 512u * h + 16u * lane_;  // byte offset in the stream
      if (128u + off + 16u <= bytes_) {
        const std::uint32_t dst = static_cast<std::uint32_t>(__cvta_generic_to_shared(
            reinterpret_cast<std::uint8_t*>(ring_) + (off & (2u * ring_words - 1u))));
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(tile_ + 128u + off) : "memory");
      }
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  }

  std::uint16_t* ring_;
  std::uint16_t* window_;
  const std::uint32_t* table_;
  const std::uint8_t* tile_;
  std::uint32_t p_, sb_, lane_, lt_;
  std::uint32_t words_, bytes_, pos_, issued_;
  std::uint32_t x_;
  status st_;
};

}  // namespace fused
}  // namespace tilecodec
