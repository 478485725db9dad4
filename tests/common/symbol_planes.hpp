// Symbol planes for coder round-trip tests: geometric 8-bit symbols, the same cut to 4 bits, and
// 9-bit symbols, at every length and precision a test names.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <vector>

#include <doctest/doctest.h>

namespace tilecodec_test {

// Calls test(symbols, alphabet, prob_bits) for alphabets 256, 16 and 512 (in that order) at each
// length and each of 8, 10 and 12 probability bits.
template <class Test>
void for_each_symbol_plane(std::mt19937_64& rng, std::initializer_list<std::uint32_t> lengths, Test&& test) {
  for (std::uint32_t n : lengths) {
    for (std::uint32_t bits : {8u, 10u, 12u}) {
      CAPTURE(n);
      CAPTURE(bits);
      std::vector<std::uint16_t> s(n);
      std::geometric_distribution<int> geo(0.1);
      for (auto& v : s) v = static_cast<std::uint16_t>(std::min(255, geo(rng)));
      test(s, 256u, bits);
      for (auto& v : s) v = static_cast<std::uint16_t>(v & 15);
      test(s, 16u, bits);
      for (auto& v : s) v = static_cast<std::uint16_t>(std::min(511, 200 + geo(rng) * 3));
      test(s, 512u, bits);
    }
  }
}

}  // namespace tilecodec_test
