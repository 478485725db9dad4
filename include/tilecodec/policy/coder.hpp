// tilecodec/policy/coder.hpp: entropy coder policies.
//
//   raw                     symbols stored as bytes (nibbles for a 16-symbol alphabet): the baseline.
//   rans<ProbBits, Lanes>   interleaved rANS: symbol i of a tile belongs to lane i % Lanes, every
//                           lane has its own 32-bit state, and all lanes share one stream of
//                           16-bit words (see coder/rans.hpp). Lanes = 32 lets one warp decode
//                           a tile with one lane per thread.
//   fixed                   fixed-length codes of k bits (chosen per tensor) for a window of
//                           2^k symbols, the rest escaped into a per-tile list; each of 32 lanes
//                           owns its own bit stream, so any block of 1024 symbols decodes alone
//                           with compile-time shifts (see coder/fixed.hpp). Made for fused kernels.
//   rans_lanes<P, Lanes>    interleaved rANS with one word stream per lane (plane coding 3,
//                           coder/rans_lanes.hpp): the same states and table as rans, but no lane
//                           waits for another, so a GPU decodes 2-3x faster. Lanes = 32, 64, 128.
//                           Made for tensors decoded on the device.
//   fixed_marked            fixed-length codes as fixed, but code 0 marks an escape and a tile's
//                           escaped symbols are stored in symbol order, counted per window of
//                           512 symbols (plane coding 4, coder/fixed_marked.hpp). Made for
//                           device-wide decode: escapes are found from the codes, no search.
#pragma once

#include <cstdint>

namespace tilecodec {
namespace coder {

// Values are stored in files: append only.
enum class kind : std::uint8_t { raw = 0, rans = 1, fixed = 2, rans_lanes = 3, fixed_marked = 4 };

struct raw {
  static constexpr kind id = kind::raw;
  static constexpr std::uint32_t prob_bits = 0;
  static constexpr std::uint32_t lanes = 1;
};

template <int ProbBits = 12, int Lanes = 32>
struct rans {
  // A decode-table entry packs symbol, frequency and slot offset into 32 bits, so
  // ProbBits <= 12 (coder/frequency_table.hpp); below 8 the rounded frequencies cost too much
  // ratio. ProbBits is a maximum: the encoder may record one bit less when that codes smaller.
  static_assert(ProbBits >= 8 && ProbBits <= 12, "rANS probability precision must be 8..12 bits");
  static_assert(Lanes >= 1 && Lanes <= 128 && (Lanes & (Lanes - 1)) == 0,
                "rANS lanes must be a power of two in 1..128");
  static constexpr kind id = kind::rans;
  static constexpr std::uint32_t prob_bits = ProbBits;
  static constexpr std::uint32_t lanes = Lanes;
};

template <int ProbBits = 12, int Lanes = 64>
struct rans_lanes {
  static_assert(ProbBits >= 8 && ProbBits <= 12, "rANS probability precision must be 8..12 bits");
  static_assert(Lanes == 32 || Lanes == 64 || Lanes == 128, "rans_lanes: 32, 64 or 128 lanes (1, 2 or 4 per thread)");
  static constexpr kind id = kind::rans_lanes;
  static constexpr std::uint32_t prob_bits = ProbBits;
  static constexpr std::uint32_t lanes = Lanes;
};

// The encoder picks the code width k and the symbol window per tensor (header byte 13 records k).
struct fixed {
  static constexpr kind id = kind::fixed;
  static constexpr std::uint32_t prob_bits = 0;
  static constexpr std::uint32_t lanes = 32;
};

// The code width, window and 32 lanes of fixed, with code 0 reserved as the escape mark (header
// byte 13 records k). Made for device-wide decode: a lane finds its escapes from the codes and
// the tile's per-window counts, with no search. The fused kernels read coding 2 only.
struct fixed_marked {
  static constexpr kind id = kind::fixed_marked;
  static constexpr std::uint32_t prob_bits = 0;
  static constexpr std::uint32_t lanes = 32;
};

}  // namespace coder
}  // namespace tilecodec
