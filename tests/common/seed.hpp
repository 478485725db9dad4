// Test seeds: fresh every run, printed so a failure can be replayed with TILECODEC_SEED=<n>.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <random>

#include <doctest/doctest.h>

namespace tilecodec_test {

inline std::uint64_t test_seed() {
  static const std::uint64_t seed = [] {
    if (const char* env = std::getenv("TILECODEC_SEED")) return std::uint64_t(std::strtoull(env, nullptr, 10));
    std::random_device rd;
    return (std::uint64_t(rd()) << 32) ^ rd();
  }();
  return seed;
}

// A generator for one test case; the seed shows up in the failure message.
#define TILECODEC_SEEDED_RNG(name)                                       \
  const std::uint64_t name##_seed = ::tilecodec_test::test_seed();       \
  INFO("seed: TILECODEC_SEED=" << name##_seed);                          \
  std::mt19937_64 name(name##_seed)

}  // namespace tilecodec_test
