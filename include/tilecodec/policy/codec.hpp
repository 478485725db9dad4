// tilecodec/policy/codec.hpp: a codec is a tile shape, a quantization and a coder, composed as
// types because together they decide every bit of the format:
//
//   using my_codec = tilecodec::codec<tilecodec::tile256, quant::int8_rowwise, coder::rans<12, 32>>;
//
// format_params is the same choice as run-time values; it is what an encoded tensor's header
// stores, so a decoder needs no template argument to read any tensor.
#pragma once

#include <cstdint>

#include "coder.hpp"
#include "quant.hpp"
#include "tile.hpp"

namespace tilecodec {

struct format_params {
  quant::kind quant = quant::kind::lossless;
  coder::kind coder = coder::kind::rans;
  symbol_order order = symbol_order::row_major;
  std::uint32_t tile_rows = 256;
  std::uint32_t tile_cols = 256;
  std::uint32_t group_size = 0;  // int4_group only
  // rANS: probability bits, 8..12. Fixed coders: the code width k, 1..9, pinned (the symbol width
  // or more: full-width codes, no escapes); 0 = the encoder's choice. coder::fixed also leaves a
  // value above 9 (such as this rANS default in hand-written params) to the encoder.
  std::uint32_t prob_bits = 12;
  std::uint32_t lanes = 32;      // rans only

  friend bool operator==(const format_params& a, const format_params& b) {
    return a.quant == b.quant && a.coder == b.coder && a.order == b.order && a.tile_rows == b.tile_rows &&
           a.tile_cols == b.tile_cols && a.group_size == b.group_size && a.prob_bits == b.prob_bits &&
           a.lanes == b.lanes;
  }
  friend bool operator!=(const format_params& a, const format_params& b) { return !(a == b); }
};

template <class Tile = tile256, class Quant = quant::lossless, class Coder = coder::rans<>>
struct codec {
  using tile_type = Tile;
  using quant_type = Quant;
  using coder_type = Coder;

  static constexpr format_params params() {
    format_params p{};
    p.quant = Quant::id;
    p.coder = Coder::id;
    p.order = Tile::order;
    p.tile_rows = Tile::rows;
    p.tile_cols = Tile::cols;
    p.group_size = Quant::group_size;
    p.prob_bits = Coder::prob_bits;
    p.lanes = Coder::lanes;
    return p;
  }
};

// The defaults users reach for first.
using lossless_codec = codec<tile256, quant::lossless, coder::rans<12, 32>>;
using int8_codec = codec<tile256, quant::int8_rowwise, coder::rans<12, 32>>;
using int4_codec = codec<tile256, quant::int4_group<128>, coder::rans<12, 32>>;

// The same for tensors whose GPU decode time matters (mode-1 loading, decode-then-compute): one
// rANS word stream per lane decodes 1.5x (int8) / 1.4x (bf16) faster on an H100 for +0.4% /
// +0.25% bytes (docs/PERFORMANCE.md section 3). A streamed pass bound by the host link prefers
// the smaller defaults. The host decodes these too, without the AVX2 path.
using gpu_lossless_codec = codec<tile256, quant::lossless, coder::rans_lanes<12, 64>>;
using gpu_int8_codec = codec<tile256, quant::int8_rowwise, coder::rans_lanes<12, 64>>;
using gpu_int4_codec = codec<tile256, quant::int4_group<128>, coder::rans_lanes<12, 64>>;

namespace fused {
// Codecs for the fused kernels: the mma symbol order and the fixed coder (coder/fixed.hpp). The
// encoder takes the smallest code width (int8 Llama-like weights: 7 bits and 1.8% escapes); int8
// pinned at 8 bits (format_params::prob_bits = 8, rule option prob-bits=8: no escapes, ~10% more bytes)
// runs the fused GEMV/GEMM faster at every batch size (H200: 1-14% at batch 1, 14-27% at batch 4,
// 27-40% at batch 16; docs/PERFORMANCE.md 6.13). 16-bit lossless under these codecs is split in
// bytes (format/planes.hpp: exponent codes, at least 4 bits wide, and a raw byte a weight).
using int8_codec = codec<tile256_mma, quant::int8_rowwise, coder::fixed>;
using int4_codec = codec<tile256_mma, quant::int4_group<128>, coder::fixed>;
using lossless_codec = codec<tile256_mma, quant::lossless, coder::fixed>;
// rANS made consumable by the same kernels (one warp decodes a whole 64-row tile).
using int8_rans_codec = codec<tile<64, 256, symbol_order::mma>, quant::int8_rowwise, coder::rans<12, 32>>;
using int4_rans_codec = codec<tile<64, 256, symbol_order::mma>, quant::int4_group<128>, coder::rans<12, 32>>;
using lossless_rans_codec = codec<tile<64, 256, symbol_order::mma>, quant::lossless, coder::rans<12, 32>>;
}  // namespace fused

}  // namespace tilecodec
