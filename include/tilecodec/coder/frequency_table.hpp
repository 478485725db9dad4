// tilecodec/coder/frequency_table.hpp: one frequency table per tensor plane, shared by its tiles.
//
// Counts are normalised to sum to 2^prob_bits. Every symbol that occurs keeps a frequency of at
// least 1 and at most 2^prob_bits - 1 (so frequency and slot bias fit the packed decode entry);
// the rounding error is then spread greedily where it costs the fewest bits. A plane with a
// single symbol gets one neighbour of frequency 1, which costs about 2^-prob_bits / ln 2 bits
// per symbol (0.0004 bits at 12 bits).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../config.hpp"
#include "../status.hpp"

namespace tilecodec {

// A decode-table entry packs, from the low bits up: the symbol (8 bits, or 9 for a 512-symbol
// alphabet), its frequency (prob_bits bits) and the slot's offset inside the symbol's range
// (the bits left). The offset is below the frequency, so frequencies are capped at
// 2^(bits left): at 12-bit precision a 9-bit alphabet keeps every frequency <= 2048 (p <= 1/2),
// which trained weights never reach; the encoder drops to 11 bits when that costs less.
using rans_decode_entry = std::uint32_t;

TILECODEC_HD constexpr std::uint32_t symbol_bits(std::uint32_t alphabet) { return alphabet > 256 ? 9u : 8u; }

TILECODEC_HD constexpr std::uint32_t max_frequency(std::uint32_t alphabet, std::uint32_t prob_bits) {
  const std::uint32_t by_precision = (1u << prob_bits) - 1u;
  const std::uint32_t by_offset_field = 1u << (32u - symbol_bits(alphabet) - prob_bits);
  return by_precision < by_offset_field ? by_precision : by_offset_field;
}

TILECODEC_HD rans_decode_entry pack_decode_entry(std::uint32_t symbol, std::uint32_t freq, std::uint32_t bias,
                                                 std::uint32_t prob_bits, std::uint32_t sym_bits) {
  return symbol | (freq << sym_bits) | (bias << (sym_bits + prob_bits));
}

// Order-0 entropy of a histogram, in bits per symbol.
[[nodiscard]] inline double order0_entropy(const std::uint64_t* counts, std::uint32_t alphabet) {
  std::uint64_t total = 0;
  for (std::uint32_t s = 0; s < alphabet; ++s) total += counts[s];
  if (total == 0) return 0.0;
  double bits = 0.0;
  for (std::uint32_t s = 0; s < alphabet; ++s) {
    if (counts[s] == 0) continue;
    const double p = double(counts[s]) / double(total);
    bits -= p * std::log2(p);
  }
  return bits;
}

// Normalises counts (alphabet entries) to frequencies summing to 2^prob_bits, none above
// max_frequency(). Requires alphabet >= 16. An all-zero histogram yields a valid table.
inline std::vector<std::uint16_t> normalize_frequencies(const std::uint64_t* counts, std::uint32_t alphabet,
                                                        std::uint32_t prob_bits) {
  const std::uint32_t total_slots = 1u << prob_bits;
  const std::uint32_t max_freq = max_frequency(alphabet, prob_bits);
  std::vector<std::uint16_t> freq(alphabet, 0);
  std::uint64_t total = 0;
  std::uint32_t used = 0;
  for (std::uint32_t s = 0; s < alphabet; ++s) {
    total += counts[s];
    used += counts[s] != 0;
  }
  // Slots the used symbols cannot take (every one at the cap) go to unused neighbours, which
  // costs no coded bits.
  auto spill = [&](std::int64_t left) {
    for (std::uint32_t s = 0; s < alphabet && left > 0; ++s) {
      if (counts[s] != 0) continue;
      const std::uint32_t give = static_cast<std::uint32_t>(std::min<std::int64_t>(left, max_freq - freq[s]));
      freq[s] = static_cast<std::uint16_t>(freq[s] + give);
      left -= give;
    }
  };
  if (used <= 1) {
    std::uint32_t only = 0;
    for (std::uint32_t s = 0; s < alphabet; ++s)
      if (counts[s] != 0) only = s;
    freq[only] = static_cast<std::uint16_t>(max_freq);
    spill(std::int64_t(total_slots) - max_freq);
    return freq;
  }
  // Proportional first guess, at least 1 for each symbol that occurs.
  std::int64_t sum = 0;
  for (std::uint32_t s = 0; s < alphabet; ++s) {
    if (counts[s] == 0) continue;
    double f = double(counts[s]) * double(total_slots) / double(total);
    std::uint32_t fi = static_cast<std::uint32_t>(f + 0.5);
    if (fi < 1) fi = 1;
    if (fi > max_freq) fi = max_freq;
    freq[s] = static_cast<std::uint16_t>(fi);
    sum += fi;
  }
  // Fix the sum one step at a time, each step where it costs the fewest coded bits:
  // adding a slot to s saves counts[s] * log2((f+1)/f); removing one costs counts[s] * log2(f/(f-1)).
  while (sum != std::int64_t(total_slots)) {
    int best = -1;
    double best_value = 0.0;
    const bool grow = sum < std::int64_t(total_slots);
    for (std::uint32_t s = 0; s < alphabet; ++s) {
      if (counts[s] == 0) continue;
      const double f = freq[s];
      double value;
      if (grow) {
        if (freq[s] >= max_freq) continue;
        value = double(counts[s]) * std::log2((f + 1.0) / f);  // bits saved: larger is better
      } else {
        if (freq[s] <= 1) continue;
        value = -double(counts[s]) * std::log2(f / (f - 1.0));  // minus bits lost: larger is better
      }
      if (best < 0 || value > best_value) {
        best = int(s);
        best_value = value;
      }
    }
    if (best < 0) break;  // every used symbol at the cap: the rest spills below
    freq[best] = static_cast<std::uint16_t>(grow ? freq[best] + 1 : freq[best] - 1);
    sum += grow ? 1 : -1;
  }
  if (sum < std::int64_t(total_slots)) spill(std::int64_t(total_slots) - sum);
  return freq;
}

// Checks a stored table and builds the 2^prob_bits-entry decode table. Returns corrupt_table
// if the frequencies do not sum to 2^prob_bits or one is above max_frequency().
[[nodiscard]] inline status build_decode_table(const std::uint16_t* freq, std::uint32_t alphabet,
                                               std::uint32_t prob_bits, rans_decode_entry* table) {
  const std::uint32_t total_slots = 1u << prob_bits;
  const std::uint32_t max_freq = max_frequency(alphabet, prob_bits), sym_bits = symbol_bits(alphabet);
  std::uint32_t cum = 0;
  for (std::uint32_t s = 0; s < alphabet; ++s) {
    const std::uint32_t f = freq[s];
    if (f > max_freq || cum + f > total_slots) return status::corrupt_table;
    for (std::uint32_t i = 0; i < f; ++i) table[cum + i] = pack_decode_entry(s, f, i, prob_bits, sym_bits);
    cum += f;
  }
  return cum == total_slots ? status::success : status::corrupt_table;
}

}  // namespace tilecodec
