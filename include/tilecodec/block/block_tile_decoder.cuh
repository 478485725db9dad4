// tilecodec/block/block_tile_decoder.cuh: decode tiles with a whole thread block, inside your own
// kernel. The block loads the tensor's frequency table into shared memory once; its warps reuse it
// for every tile they decode.
//
//   using Decoder = tilecodec::block_tile_decoder<tilecodec::lossless_codec, 256>;
//   __shared__ Decoder::TempStorage temp;                  // may be unioned with your own storage
//   Decoder dec(temp);
//   if (dec.load_table(tensor) != tilecodec::status::success) return;  // block-wide, once per tensor
//
//   // (a) throughput: warp w decodes tile first + w (one tile per warp, warps() tiles per call)
//   //     into a tensor-shaped array: element (r, c) of the tensor at out[r * ld + c]
//   status mine = dec.decode(tensor, first, out, tilecodec::dtype::bf16, ld);   // this warp's tile
//
//   // (b) one tile with the whole block, e.g. into shared memory: element (r, c) of the tile at
//   //     out[r * ld + c]; every thread returns the same status
//   status s = dec.decode_tile(tensor, tile, smem_out, tilecodec::dtype::bf16, ld);
//
// What the format allows: a shared-stream rANS tile (coding 1) is one warp's work, so (b) decodes
// it with warp 0 while the other warps wait; a lane-stream tile (coding::rans_lanes) of L lanes
// is shared by up to L / 32 warps (each decodes and writes its own lanes' symbols); stored and
// fixed-coded tiles (coder::fixed, coder::fixed_marked) are shared by all warps, window by window. For throughput
// decode many tiles at once with (a).
// All threads of the block must call every member (they contain __syncthreads()).
#pragma once

#include <cstdint>
#include <type_traits>

#include "../device/tensor_ref.hpp"
#include "../policy/codec.hpp"
#include "../status.hpp"
#include "../warp/tile_writer.cuh"
#include "../warp/warp_tile_decoder.cuh"
#include "../warp/warp_window_decode.cuh"
#include "decode_table.cuh"

namespace tilecodec {

namespace detail {
template <class Coder>
struct lane_stream_lanes : std::integral_constant<int, 0> {};
template <int P, int L>
struct lane_stream_lanes<coder::rans_lanes<P, L>> : std::integral_constant<int, L> {};

template <class Coder>
struct is_rans_coder : std::false_type {};
template <int P, int L>
struct is_rans_coder<coder::rans<P, L>> : std::true_type {};
template <int P, int L>
struct is_rans_coder<coder::rans_lanes<P, L>> : std::true_type {};
}  // namespace detail

template <class Codec, int BlockThreads>
class block_tile_decoder {
  static_assert(BlockThreads % 32 == 0 && BlockThreads >= 32 && BlockThreads <= 1024,
                "block_tile_decoder needs whole warps (32..1024 threads, 1-D block)");
  using warp_decoder = warp_tile_decoder<Codec>;
  static constexpr bool is_rans = detail::is_rans_coder<typename Codec::coder_type>::value;
  static constexpr bool is_fixed = std::is_same<typename Codec::coder_type, coder::fixed>::value ||
                                   std::is_same<typename Codec::coder_type, coder::fixed_marked>::value;
  static constexpr plane_coding fixed_coding =
      std::is_same<typename Codec::coder_type, coder::fixed_marked>::value ? plane_coding::fixed_marked : plane_coding::fixed;
  static constexpr int warp_count = BlockThreads / 32;
  // Warps that share one lane-stream tile in decode_tile(): one per 32 lanes, a power of two the
  // block has (1 for other coders).
  static constexpr int tile_team = [] {
    int w = detail::lane_stream_lanes<typename Codec::coder_type>::value / 32;
    while (w > warp_count) w /= 2;
    return w > 0 ? w : 1;
  }();


 public:
  using table_type = typename warp_decoder::table_type;

  struct TempStorage {
    table_type table;
    typename warp_decoder::TempStorage warp[warp_count];
    status team_status[tile_team];
    status window_status[is_fixed ? warp_count : 1];  // fixed-coded tiles: each warp's windows
  };

  TILECODEC_DEV explicit block_tile_decoder(TempStorage& temp) : temp_(temp) {}

  [[nodiscard]] static constexpr int warps() { return warp_count; }

  // Loads the tensor's table (rANS-coded tensors; nothing to do for stored ones). Block-wide.
  TILECODEC_DEV status load_table(const device::tensor_ref& tensor) {
    if constexpr (is_rans) {
      if (!warp_decoder::accepts(tensor)) return status::unsupported;
      if (has_rans_table(tensor.coding)) return load_decode_table(temp_.table, tensor, block_group<BlockThreads>{});
    }
    return status::success;
  }

  // Warp w decodes tile first + w (skipped past the tensor's last tile: success) into out, which
  // holds the whole tensor: element (r, c) at out[r * ld + c]. Returns this warp's status.
  TILECODEC_DEV status decode(const device::tensor_ref& tensor, std::uint64_t first_tile, void* out, dtype out_type,
                              std::uint64_t ld) {
    const std::uint64_t t = first_tile + threadIdx.x / 32;
    if (t >= tensor.tile_count) return status::success;
    const tile_box b = tensor.layout.box(t);
    std::uint8_t* o = static_cast<std::uint8_t*>(out) + (b.row0 * ld + b.col0) * dtype_size(out_type);
    return make_warp().decode(tensor, t, o, out_type, ld);
  }

  // The whole block decodes one tile into out (tile element (r, c) at out[r * ld + c]).
  TILECODEC_DEV status decode_tile(const device::tensor_ref& tensor, std::uint64_t tile, void* out, dtype out_type,
                                   std::uint64_t ld) {
    const std::uint32_t warp = threadIdx.x / 32;
    device::tile_ref tr;
    status s = warp_decoder::accepts(tensor) && device::can_decode_to(tensor, out_type)
                   ? tensor.output_tile(tile, out, ld, tr)
                   : status::unsupported;
    const bool coded = s == status::success && has_rans_table(tensor.coding);  // the same in every thread
    const bool fixed = s == status::success && is_fixed_coding(tensor.coding);
    if (s == status::success && !has_rans_table(tensor.coding)) {
      // Stored symbols and fixed codes: warp w writes windows w, w + warps, ...
      if constexpr (is_fixed) {
        const status mine = detail::window_tile_decode<fixed_coding>(tensor, tile, out, out_type, ld, warp, warp_count);
        if (fixed && detail::lane_id() == 0) temp_.window_status[warp] = mine;
      } else {
        detail::tile_writer writer;
        writer.set_tensor(tensor, out_type);
        writer.begin_tile(tr, out, ld, warp, warp_count);
        detail::stored_tile_to_writer(tr, tensor.alphabet, writer, warp, warp_count);
      }
    } else if constexpr (is_rans) {
      if (coded && warp < std::uint32_t(tile_team)) {
        const status mine = make_warp().template decode_share<tile_team>(tensor, tile, out, out_type, ld, warp);
        if (detail::lane_id() == 0) temp_.team_status[warp] = mine;
      }
    }
    __syncthreads();
    if (coded)
      for (int w = 0; w < tile_team; ++w)  // the largest status code, as device::decode_async reports
        if (static_cast<std::uint32_t>(temp_.team_status[w]) > static_cast<std::uint32_t>(s)) s = temp_.team_status[w];
    if constexpr (is_fixed) {
      if (fixed)
        for (int w = 0; w < warp_count; ++w)
          if (static_cast<std::uint32_t>(temp_.window_status[w]) > static_cast<std::uint32_t>(s)) s = temp_.window_status[w];
    }
    __syncthreads();
    return s;
  }

 private:
  TILECODEC_DEV warp_decoder make_warp() {
    return warp_decoder(temp_.warp[threadIdx.x / 32], temp_.table);
  }

  TempStorage& temp_;
};

}  // namespace tilecodec
