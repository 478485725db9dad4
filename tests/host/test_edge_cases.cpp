// Adversarial bit patterns, degenerate data, invalid arguments, corrupt and truncated input.
#include <tilecodec/tilecodec.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include "common/reference.hpp"
#include "common/seed.hpp"

using namespace tilecodec;

namespace {

template <class T>
std::vector<T> lossless_roundtrip(const std::vector<T>& v, dtype type, const std::vector<std::uint64_t>& shape,
                                  const format_params& p = lossless_codec::params()) {
  const auto enc = host::encode(v.data(), type, shape, p);
  std::vector<T> out(v.size());
  REQUIRE(host::decode(enc.view(), out.data(), type, out.size() * sizeof(T)) == status::success);
  return out;
}

}  // namespace

TEST_CASE("lossless is bit-exact for every 16-bit pattern (NaN payloads, Inf, subnormals, -0)") {
  std::vector<std::uint16_t> all(65536);
  for (std::uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
  CHECK(lossless_roundtrip(all, dtype::bf16, {256, 256}) == all);
  CHECK(lossless_roundtrip(all, dtype::f16, {65536}) == all);
  format_params raw = lossless_codec::params();
  raw.coder = coder::kind::raw;
  CHECK(lossless_roundtrip(all, dtype::bf16, {16, 4096}, raw) == all);
}

TEST_CASE("lossless fp32 keeps NaN payloads, infinities, subnormals and signed zeros") {
  TILECODEC_SEEDED_RNG(rng);
  std::vector<std::uint32_t> v = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u,
                                  0x7f800001u, 0x7fbfffffu, 0x00000001u, 0x807fffffu, 0x00800000u, 0x7f7fffffu};
  for (int i = 0; i < 100000; ++i) v.push_back(static_cast<std::uint32_t>(rng()));
  CHECK(lossless_roundtrip(v, dtype::f32, {v.size()}) == v);
  CHECK(lossless_roundtrip(v, dtype::f32, {4, v.size() / 4}) == v);
}

TEST_CASE("degenerate data: zeros, one repeated value, uniform random bytes") {
  TILECODEC_SEEDED_RNG(rng);
  const std::uint64_t rows = 512, cols = 512, n = rows * cols;
  std::vector<std::uint16_t> zeros(n, 0), same(n, 0x3f80), noise(n);
  for (auto& x : noise) x = static_cast<std::uint16_t>(rng());
  host::encode_stats st;
  auto enc = host::encode<lossless_codec>(zeros.data(), dtype::bf16, {rows, cols}, {}, &st);
  CHECK(st.coding == plane_coding::rans);
  CHECK(st.payload_bytes < n / 100);  // a constant plane costs next to nothing
  CHECK(lossless_roundtrip(same, dtype::bf16, {rows, cols}) == same);
  CHECK(lossless_roundtrip(noise, dtype::bf16, {rows, cols}) == noise);
  // Uniform random bytes: no expansion beyond header + table + index + padding (< 0.1% here).
  enc = host::encode<lossless_codec>(noise.data(), dtype::bf16, {rows, cols}, {}, &st);
  CHECK(double(enc.size()) <= double(n * 2) * 1.001 + 1024);
  std::vector<float> fzeros(n, 0.0f);
  auto enc8 = host::encode<int8_codec>(fzeros.data(), dtype::f32, {rows, cols});
  std::vector<float> back(n, 1.0f);
  REQUIRE(host::decode(enc8.view(), back.data(), dtype::f32, n * 4) == status::success);
  CHECK(back == fzeros);
  // Uniform random int8 codes: the raw fallback stores instead of expanding.
  std::vector<float> uni(n);
  for (auto& x : uni) x = float(int(rng() % 255) - 127);
  enc8 = host::encode<int8_codec>(uni.data(), dtype::f32, {rows, cols}, {}, &st);
  CHECK(st.payload_bytes <= n);
  CHECK(double(enc8.size()) <= double(n) * 1.001 + double(rows) * 4 + 1024);
}

TEST_CASE("empty and one-element tensors") {
  std::vector<std::uint16_t> one = {0xbeef};
  CHECK(lossless_roundtrip(one, dtype::bf16, {1}) == one);
  CHECK(lossless_roundtrip(one, dtype::bf16, {}) == one);  // rank 0
  CHECK(lossless_roundtrip(one, dtype::bf16, {1, 1, 1}) == one);
  for (const auto& shape : std::vector<std::vector<std::uint64_t>>{{0}, {0, 5}, {7, 0}, {3, 0, 2}}) {
    const auto enc = host::encode<int8_codec>(nullptr, dtype::f32, shape);
    CHECK(enc.header().tile_count == 0);
    CHECK(host::decode(enc.view(), nullptr, dtype::f32, 0) == status::success);
  }
  std::vector<float> f1 = {-3.5f};
  const auto enc = host::encode<int4_codec>(f1.data(), dtype::f32, {1});
  float back = 0;
  REQUIRE(host::decode(enc.view(), &back, dtype::f32, 4) == status::success);
  CHECK(back == doctest::Approx(-3.5).epsilon(1e-3));
}

TEST_CASE("invalid arguments give clear errors") {
  std::vector<float> v(16, 1.0f);
  auto code_of = [](auto&& fn) {
    try {
      fn();
    } catch (const error& e) {
      CHECK(std::string(e.what()).find("tensor") != std::string::npos);  // names the tensor
      return e.code();
    }
    return status::success;
  };
  CHECK(code_of([&] { (void)host::encode<lossless_codec>(nullptr, dtype::f32, {4, 4}); }) == status::invalid_argument);
  CHECK(code_of([&] { (void)host::encode<lossless_codec>(v.data(), dtype::i32, {4, 4}); }) == status::unsupported);
  CHECK(code_of([&] { (void)host::encode<lossless_codec>(v.data(), dtype::f32, {1ull << 40, 1ull << 30}); }) ==
        status::overflow);
  CHECK(code_of([&] { (void)host::encode<lossless_codec>(v.data(), dtype::f32, {~0ull, 2}); }) == status::overflow);
  CHECK(code_of([&] { (void)host::encode<lossless_codec>(v.data(), dtype::f32, std::vector<std::uint64_t>(9, 1)); }) ==
        status::unsupported);
  format_params bad = int8_codec::params();
  bad.prob_bits = 13;
  CHECK(code_of([&] { (void)host::encode(v.data(), dtype::f32, {4, 4}, bad); }) == status::unsupported);
  bad = int4_codec::params();
  bad.group_size = 48;
  CHECK(code_of([&] { (void)host::encode(v.data(), dtype::f32, {4, 4}, bad); }) == status::unsupported);
  bad = int8_codec::params();
  bad.tile_rows = 0;
  CHECK(code_of([&] { (void)host::encode(v.data(), dtype::f32, {4, 4}, bad); }) == status::unsupported);
  // Quantizing policies refuse non-finite values, naming the position.
  v[5] = std::numeric_limits<float>::quiet_NaN();
  CHECK(code_of([&] { (void)host::encode<int8_codec>(v.data(), dtype::f32, {4, 4}); }) == status::invalid_argument);
  v[5] = std::numeric_limits<float>::infinity();
  CHECK(code_of([&] { (void)host::encode<int4_codec>(v.data(), dtype::f32, {4, 4}); }) == status::invalid_argument);
  // ...while lossless keeps them.
  CHECK(code_of([&] { (void)host::encode<lossless_codec>(v.data(), dtype::f32, {4, 4}); }) == status::success);

  // Decoding: wrong output dtype, short buffers.
  v[5] = 1.0f;
  const auto enc = host::encode<lossless_codec>(v.data(), dtype::f32, {4, 4});
  std::vector<float> out(16);
  CHECK(host::decode(enc.view(), out.data(), dtype::bf16, 64) == status::unsupported);
  CHECK(host::decode(enc.view(), out.data(), dtype::f32, 63) == status::invalid_argument);
  CHECK(host::decode(enc.view(), nullptr, dtype::f32, 64) == status::invalid_argument);
  CHECK(host::decode_tile(enc.view(), 1, out.data(), dtype::f32, 4, 64) == status::invalid_argument);
  CHECK(host::decode_tile(enc.view(), 0, out.data(), dtype::f32, 3, 64) == status::invalid_argument);
}

TEST_CASE("truncated encoded tensors are rejected at every length") {
  TILECODEC_SEEDED_RNG(rng);
  auto src = tilecodec_test::random_tensor(rng, dtype::bf16, 40 * 300);
  for (const format_params& p : {lossless_codec::params(), int8_codec::params(), int4_codec::params()}) {
    format_params small = p;
    small.tile_rows = small.tile_cols = 16;
    const auto enc = host::encode(src.bytes.data(), dtype::bf16, {40, 300}, small);
    for (std::size_t len = 0; len < enc.size(); ++len) {
      std::vector<std::uint8_t> cut(enc.bytes().begin(), enc.bytes().begin() + std::ptrdiff_t(len));
      encoded_tensor_view v;
      REQUIRE(encoded_tensor_view::parse(cut.data(), cut.size(), v) != status::success);
    }
  }
}

TEST_CASE("corrupted encoded tensors give an error or wrong data, never out-of-bounds access") {
  TILECODEC_SEEDED_RNG(rng);
  auto src = tilecodec_test::random_tensor(rng, dtype::bf16, 64 * 200);
  int errors = 0, silent = 0;
  for (const format_params& p : {lossless_codec::params(), int8_codec::params(), int4_codec::params()}) {
    format_params small = p;
    small.tile_rows = small.tile_cols = 32;
    const auto enc = host::encode(src.bytes.data(), dtype::bf16, {64, 200}, small);
    for (int trial = 0; trial < 400; ++trial) {
      std::vector<std::uint8_t> bad = enc.bytes();
      const int flips = 1 + int(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        // Half of the flips aim at the header, table and index, where lies do the most harm.
        const std::size_t limit = trial % 2 ? bad.size() : std::min<std::size_t>(bad.size(), 1024);
        bad[rng() % limit] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
      }
      encoded_tensor_view v;
      if (encoded_tensor_view::parse(bad.data(), bad.size(), v) != status::success) {
        ++errors;
        continue;
      }
      std::vector<std::uint8_t> out(64 * 200 * 4);
      const dtype out_type = p.quant == quant::kind::lossless ? dtype::bf16 : dtype::f32;
      const status s = host::decode(v, out.data(), out_type, out.size());
      s == status::success ? ++silent : ++errors;
    }
  }
  MESSAGE("corruption: " << errors << " reported, " << silent << " decoded (raw-plane and scale flips decode to wrong values)");
  CHECK(errors > 0);
}

TEST_CASE("a precision with fewer slots than distinct symbols stores the plane instead") {
  // Uniform 16-bit patterns give ~512 distinct 9-bit symbols: 8-bit precision has 256 slots.
  TILECODEC_SEEDED_RNG(rng);
  std::vector<std::uint16_t> noise(64 * 256);
  for (auto& v : noise) v = static_cast<std::uint16_t>(rng());
  format_params p = lossless_codec::params();
  p.prob_bits = 8;
  host::encode_stats st;
  const auto enc = host::encode(noise.data(), dtype::bf16, {64, 256}, p, {}, &st);
  CHECK(st.coding == plane_coding::stored);
  std::vector<std::uint16_t> back(noise.size());
  REQUIRE(host::decode(enc.view(), back.data(), dtype::bf16, back.size() * 2) == status::success);
  CHECK(back == noise);
}
