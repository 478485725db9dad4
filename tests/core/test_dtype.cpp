#include <tilecodec/dtype.hpp>

#include <cmath>
#include <cstring>
#include <random>

#include <doctest/doctest.h>

#include "common/seed.hpp"

using namespace tilecodec;

TEST_CASE("bf16 and f16 widen exactly and narrow back to the same bits") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float b = bf16_to_float(bits);
    const float f = f16_to_float(bits);
    if (std::isnan(b)) {
      CHECK(std::isnan(bf16_to_float(float_to_bf16(b))));
    } else {
      CHECK(float_to_bf16(b) == bits);
    }
    if (std::isnan(f)) {
      CHECK(std::isnan(f16_to_float(float_to_f16(f))));
    } else {
      REQUIRE(float_to_f16(f) == bits);
    }
  }
}

TEST_CASE("float to f16 rounds to nearest even like the compiler's _Float16") {
  TILECODEC_SEEDED_RNG(rng);
  std::uniform_int_distribution<std::uint32_t> any;
  for (int i = 0; i < 200000; ++i) {
    std::uint32_t u = any(rng);
    if (i % 2) u = (u & 0x807fffffu) | ((100u + u % 50u) << 23);  // focus near the f16 range
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isnan(f)) continue;
    const _Float16 ref = static_cast<_Float16>(f);
    std::uint16_t ref_bits;
    std::memcpy(&ref_bits, &ref, 2);
    INFO("input bits " << u);
    REQUIRE(float_to_f16(f) == ref_bits);
  }
}

TEST_CASE("float to bf16 rounds to nearest even") {
  CHECK(float_to_bf16(1.0f) == 0x3f80);
  float halfway;  // 1 + 2^-8 exactly halfway between two bf16 values: rounds to even (1.0)
  const std::uint32_t hw = 0x3f808000u;
  std::memcpy(&halfway, &hw, 4);
  CHECK(float_to_bf16(halfway) == 0x3f80);
  const std::uint32_t above = 0x3f808001u;
  std::memcpy(&halfway, &above, 4);
  CHECK(float_to_bf16(halfway) == 0x3f81);
  CHECK(float_to_bf16(std::numeric_limits<float>::infinity()) == 0x7f80);
  CHECK(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
}

TEST_CASE("dtype names parse back") {
  for (int i = 0; i < dtype_count; ++i) {
    dtype t{};
    REQUIRE(parse_dtype(dtype_name(static_cast<dtype>(i)), t));
    CHECK(t == static_cast<dtype>(i));
    CHECK(dtype_size(t) > 0);
  }
  dtype t{};
  CHECK_FALSE(parse_dtype("F128", t));
}
