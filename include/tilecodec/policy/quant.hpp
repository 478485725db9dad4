// tilecodec/policy/quant.hpp: quantization policies, which turn values into coded symbols
// (one byte each) plus an optional raw plane and scales.
//
//   lossless      bf16/fp16: symbol = bits 14..7 (bf16: the exponent; fp16: exponent + top 3
//                 mantissa bits), raw byte = sign | low 7 mantissa bits. fp32: symbol = the
//                 exponent, raw = sign | 23 mantissa bits (3 bytes). Bit-exact for every pattern.
//   int8_rowwise  symmetric per row: scale = absmax / 127 (fp32), q = round(x / scale) in
//                 [-127, 127], symbol = q + 128.
//   int4_group<G> symmetric per group of G consecutive elements of a row: scale = absmax / 7
//                 rounded to fp16, q in [-7, 7], symbol = q + 8 (alphabet of 16).
#pragma once

#include <cstdint>

namespace tilecodec {
namespace quant {

// Values are stored in files: append only.
enum class kind : std::uint8_t { lossless = 0, int8_rowwise = 1, int4_group = 2 };

struct lossless {
  static constexpr kind id = kind::lossless;
  static constexpr std::uint32_t group_size = 0;
};

struct int8_rowwise {
  static constexpr kind id = kind::int8_rowwise;
  static constexpr std::uint32_t group_size = 0;
};

template <int GroupSize = 128>
struct int4_group {
  static_assert(GroupSize == 32 || GroupSize == 64 || GroupSize == 128,
                "int4 group size must be 32, 64 or 128");
  static constexpr kind id = kind::int4_group;
  static constexpr std::uint32_t group_size = GroupSize;
};

}  // namespace quant
}  // namespace tilecodec
