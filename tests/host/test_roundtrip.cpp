// Round trips of every policy combination on fresh random data and random shapes.
#include <tilecodec/tilecodec.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include "common/reference.hpp"
#include "common/seed.hpp"

using namespace tilecodec;
using tilecodec_test::host_tensor;
using tilecodec_test::random_tensor;

namespace {

std::vector<format_params> all_policies() {
  std::vector<format_params> out;
  const std::pair<std::uint32_t, std::uint32_t> tiles[] = {{128, 128}, {256, 256}, {512, 512}, {64, 256},
                                                           {256, 32}, {7, 5}};
  struct coder_choice { coder::kind kind; std::uint32_t bits, lanes; };
  const coder_choice coders[] = {{coder::kind::raw, 0, 1}, {coder::kind::rans, 12, 32}, {coder::kind::rans, 8, 4},
                                 {coder::kind::rans, 10, 64}, {coder::kind::rans, 11, 1},
                                 {coder::kind::rans, 12, 128}};
  const std::pair<quant::kind, std::uint32_t> quants[] = {{quant::kind::lossless, 0}, {quant::kind::int8_rowwise, 0},
                                                          {quant::kind::int4_group, 32}, {quant::kind::int4_group, 64},
                                                          {quant::kind::int4_group, 128}};
  for (auto t : tiles)
    for (auto c : coders)
      for (auto q : quants) {
        format_params p;
        p.tile_rows = t.first;
        p.tile_cols = t.second;
        p.coder = c.kind;
        p.prob_bits = c.bits ? c.bits : 12;
        p.lanes = c.lanes;
        p.quant = q.first;
        p.group_size = q.second;
        out.push_back(p);
      }
  return out;
}

std::vector<std::uint64_t> random_shape(std::mt19937_64& rng) {
  const int rank = int(rng() % 5);  // 0..4
  std::vector<std::uint64_t> shape(rank);
  for (auto& d : shape) d = 1 + rng() % (rank <= 1 ? 3000 : (rank == 2 ? 600 : 12));
  if (rng() % 16 == 0 && rank > 0) shape[rng() % rank] = 0;  // empty tensor now and then
  return shape;
}

std::uint64_t count(const std::vector<std::uint64_t>& shape) {
  std::uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// Checks a decoded quantized tensor against the float64 reference, within the stated bound:
// |x - q*s| <= s/2 (round to nearest) plus fp32 rounding of x/s and q*s.
void check_quantized(const encoded_tensor& enc, const host_tensor& src, const std::vector<float>& out) {
  const auto& h = enc.header();
  const auto& l = enc.view().layout();
  const bool int8 = h.params.quant == quant::kind::int8_rowwise;
  const std::uint64_t gpr = int8 ? 1 : (l.cols + h.params.group_size - 1) / h.params.group_size;
  for (std::uint64_t r = 0; r < l.rows; ++r)
    for (std::uint64_t c = 0; c < l.cols; ++c) {
      const std::uint64_t i = r * l.cols + c;
      double scale, absmax = 0;
      if (int8) {
        float s;
        std::memcpy(&s, enc.view().scales() + 4 * r, 4);
        scale = s;
        absmax = scale * 127.0;
      } else {
        std::uint16_t s;
        std::memcpy(&s, enc.view().scales() + 2 * (r * gpr + c / h.params.group_size), 2);
        scale = f16_to_float(s);
        absmax = scale * 7.0;
      }
      const double err = std::fabs(src.values[i] - double(out[i]));
      INFO("row " << r << " col " << c << " value " << src.values[i] << " decoded " << out[i] << " scale " << scale);
      REQUIRE(err <= 0.5 * scale * (1 + 1e-5) + absmax * 1e-6 + 1e-30);
    }
}

}  // namespace

TEST_CASE("every policy combination round trips on random data and random shapes") {
  TILECODEC_SEEDED_RNG(rng);
  const dtype sources[] = {dtype::f32, dtype::f16, dtype::bf16};
  for (const format_params& p : all_policies()) {
    for (dtype src_type : sources) {
      const auto shape = random_shape(rng);
      const std::uint64_t n = count(shape);
      host_tensor src = random_tensor(rng, src_type, n, 0.01 + double(rng() % 100) / 100.0);
      CAPTURE(int(p.quant));
      CAPTURE(int(p.coder));
      CAPTURE(p.tile_rows);
      CAPTURE(p.tile_cols);
      CAPTURE(p.lanes);
      CAPTURE(p.prob_bits);
      CAPTURE(p.group_size);
      CAPTURE(dtype_name(src_type));
      CAPTURE(shape.size());
      CAPTURE(n);
      host::encode_options opt;
      opt.threads = 1 + unsigned(rng() % 3);
      const encoded_tensor enc = host::encode(src.bytes.data(), src_type, shape, p, opt);
      REQUIRE(enc.header().params.quant == p.quant);
      host::tensor_decoder dec(enc.view());
      REQUIRE(dec.state() == status::success);
      if (p.quant == quant::kind::lossless) {
        std::vector<std::uint8_t> out(src.bytes.size() + 1, 0xCD);
        REQUIRE(dec.decode(out.data(), src_type, src.bytes.size(), 2) == status::success);
        CHECK(std::equal(src.bytes.begin(), src.bytes.end(), out.begin()));
        CHECK(out.back() == 0xCD);  // nothing written past the end
      } else {
        std::vector<float> out(n, std::nanf(""));
        REQUIRE(dec.decode(out.data(), dtype::f32, n * 4) == status::success);
        check_quantized(enc, src, out);
        std::vector<std::int8_t> codes(n);
        REQUIRE(dec.decode(codes.data(), dtype::i8, n) == status::success);
        std::vector<std::uint16_t> halves(n);
        REQUIRE(dec.decode(halves.data(), dtype::bf16, n * 2) == status::success);
        for (std::uint64_t i = 0; i < n; ++i) {
          REQUIRE(std::abs(int(codes[i])) <= (p.quant == quant::kind::int8_rowwise ? 127 : 7));
          REQUIRE(halves[i] == float_to_bf16(out[i]));
        }
      }
      // Any single tile decodes alone and matches the whole-tensor decode.
      if (enc.header().tile_count > 0) {
        const std::uint64_t t = rng() % enc.header().tile_count;
        const tile_box b = enc.view().layout().box(t);
        const dtype out_type = p.quant == quant::kind::lossless ? src_type : dtype::f32;
        const std::size_t es = dtype_size(out_type);
        std::vector<std::uint8_t> full(n * es), tile(std::size_t(b.height) * (b.width + 3) * es, 0xEE);
        REQUIRE(dec.decode(full.data(), out_type, full.size()) == status::success);
        REQUIRE(dec.decode_tile(t, tile.data(), out_type, b.width + 3, tile.size()) == status::success);
        const std::uint64_t cols = enc.view().layout().cols;
        for (std::uint32_t r = 0; r < b.height; ++r)
          REQUIRE(std::memcmp(tile.data() + std::size_t(r) * (b.width + 3) * es,
                              full.data() + ((b.row0 + r) * cols + b.col0) * es, std::size_t(b.width) * es) == 0);
      }
    }
  }
}

// Compile-time codecs instantiate and agree with their run-time params.
TEST_CASE_TEMPLATE("compile-time codecs encode through the same path", Codec, lossless_codec, int8_codec, int4_codec,
                   codec<tile128, quant::int4_group<32>, coder::raw>, codec<tile512, quant::int8_rowwise, coder::rans<10, 16>>,
                   codec<tile<64, 512>, quant::lossless, coder::rans<12, 64>>) {
  TILECODEC_SEEDED_RNG(rng);
  host_tensor src = random_tensor(rng, dtype::bf16, 300 * 700);
  const encoded_tensor enc = host::encode<Codec>(src.bytes.data(), dtype::bf16, {300, 700});
  format_params expect = Codec::params();
  if (expect.coder == coder::kind::raw) expect.prob_bits = 0, expect.lanes = 1;
  // prob_bits is a maximum: the encoder may record one bit less when that codes smaller.
  if (expect.coder == coder::kind::rans && enc.header().params.prob_bits + 1 == expect.prob_bits)
    expect.prob_bits -= 1;
  CHECK(enc.header().params == expect);
  std::vector<std::uint16_t> out(300 * 700);
  const dtype out_type = Codec::quant_type::id == quant::kind::lossless ? dtype::bf16 : dtype::bf16;
  CHECK(host::decode(enc.view(), out.data(), out_type, out.size() * 2) == status::success);
}

TEST_CASE("encoded bytes parse back from a copy") {
  TILECODEC_SEEDED_RNG(rng);
  host_tensor src = random_tensor(rng, dtype::f32, 1000 * 300);
  const encoded_tensor enc = host::encode<int8_codec>(src.bytes.data(), dtype::f32, {1000, 300});
  std::vector<std::uint8_t> copy = enc.bytes();
  encoded_tensor_view v;
  REQUIRE(encoded_tensor_view::parse(copy.data(), copy.size(), v) == status::success);
  std::vector<float> a(300000), b(300000);
  REQUIRE(host::decode(enc.view(), a.data(), dtype::f32, a.size() * 4) == status::success);
  REQUIRE(host::decode(v, b.data(), dtype::f32, b.size() * 4) == status::success);
  CHECK(a == b);
  const encoded_tensor again(copy);
  CHECK(again.size() == enc.size());
}

TEST_CASE("encoding is deterministic whatever the thread count") {
  TILECODEC_SEEDED_RNG(rng);
  host_tensor src = random_tensor(rng, dtype::bf16, 600 * 1100);
  host::encode_options one, two;
  one.threads = 1;
  two.threads = 2;
  const auto a = host::encode<lossless_codec>(src.bytes.data(), dtype::bf16, {600, 1100}, one);
  const auto b = host::encode<lossless_codec>(src.bytes.data(), dtype::bf16, {600, 1100}, two);
  CHECK(a.bytes() == b.bytes());
}

// The encoder's vectorised quantization and the decoder's per-run dequantization against a
// per-element reference: q = clamp(lrint(x / s)) (ties to even), then float(q) * s rounded to
// each output dtype. Quarter steps make many x / s exact ties; one row is all zeros (s = 0).
TEST_CASE("quantized encode and decode match the per-element reference, ties included") {
  TILECODEC_SEEDED_RNG(rng);
  const std::uint64_t rows = 37, cols = 700;
  std::vector<float> x(rows * cols);
  for (std::uint64_t i = 0; i < x.size(); ++i)
    x[i] = float(int(rng() % 509) - 254) * 0.25f * (rng() % 8 == 0 ? float(rng() % 1000) / 7.0f : 1.0f);
  for (std::uint64_t c = 0; c < cols; ++c) x[5 * cols + c] = 0.0f;
  const std::pair<quant::kind, std::uint32_t> quants[] = {
      {quant::kind::int8_rowwise, 0}, {quant::kind::int4_group, 32}, {quant::kind::int4_group, 128}};
  for (const auto& q : quants)
    for (dtype src_type : {dtype::f32, dtype::bf16, dtype::f16}) {
      std::vector<std::uint16_t> half(x.size());
      std::vector<float> v(x.size());  // the source values as the encoder reads them
      for (std::size_t i = 0; i < x.size(); ++i) {
        half[i] = src_type == dtype::f16 ? float_to_f16(x[i]) : float_to_bf16(x[i]);
        v[i] = src_type == dtype::f32 ? x[i] : (src_type == dtype::f16 ? f16_to_float(half[i]) : bf16_to_float(half[i]));
      }
      const void* data = src_type == dtype::f32 ? static_cast<const void*>(x.data()) : half.data();
      format_params p = int8_codec::params();
      p.quant = q.first;
      p.group_size = q.second;
      host::encode_options o;
      o.threads = 1;
      const encoded_tensor enc = host::encode(data, src_type, {rows, cols}, p, o);
      CAPTURE(int(q.first));
      CAPTURE(q.second);
      CAPTURE(dtype_name(src_type));
      const bool int8 = q.first == quant::kind::int8_rowwise;
      const std::uint64_t gpr = int8 ? 1 : (cols + q.second - 1) / q.second;
      std::vector<float> scale(x.size());
      std::vector<std::int8_t> code(x.size());
      for (std::uint64_t r = 0; r < rows; ++r)
        for (std::uint64_t c = 0; c < cols; ++c) {
          float s;
          if (int8) {
            std::memcpy(&s, enc.view().scales() + 4 * r, 4);
          } else {
            std::uint16_t bits;
            std::memcpy(&bits, enc.view().scales() + 2 * (r * gpr + c / q.second), 2);
            s = f16_to_float(bits);
          }
          const long qmax = int8 ? 127 : 7;
          const std::uint64_t i = r * cols + c;
          const long k = s > 0.0f ? std::lrint(v[i] / s) : 0;
          code[i] = static_cast<std::int8_t>(std::max(-qmax, std::min(qmax, k)));
          scale[i] = s;
        }
      std::vector<std::int8_t> got(x.size());
      REQUIRE(host::decode(enc.view(), got.data(), dtype::i8, got.size()) == status::success);
      CHECK(got == code);
      std::vector<float> f32(x.size());
      std::vector<std::uint16_t> bf16(x.size()), f16(x.size());
      REQUIRE(host::decode(enc.view(), f32.data(), dtype::f32, f32.size() * 4) == status::success);
      REQUIRE(host::decode(enc.view(), bf16.data(), dtype::bf16, bf16.size() * 2) == status::success);
      REQUIRE(host::decode(enc.view(), f16.data(), dtype::f16, f16.size() * 2) == status::success);
      std::uint64_t wrong = 0;
      for (std::size_t i = 0; i < x.size(); ++i) {
        const float expect = float(code[i]) * scale[i];
        wrong += f32[i] != expect || bf16[i] != float_to_bf16(expect) || f16[i] != float_to_f16(expect);
      }
      CHECK(wrong == 0);
    }
}

// SIMD paths (AVX2 rANS encoder) and the thread count never change the bytes.
// Groups so small that their fp16 scale is subnormal: s = f16(absmax / 7) can round down far
// enough that the largest value would clamp by more than half a step (seen: absmax 9.83e-7, s 2
// steps of 2^-24, 7 s = 8.34e-7). The encoder then takes the next fp16 up; every value stays within
// half a step of its decoded value.
TEST_CASE("int4: groups with subnormal scales decode within half a step") {
  const std::uint64_t rows = 400, cols = 32;
  std::vector<float> x(rows * cols);
  for (std::uint64_t r = 0; r < rows; ++r) {
    const float absmax = float(r + 1) * 1.25e-9f * float(r + 1);  // 1.25e-9 .. 2e-4: subnormal scales and the first normal ones
    for (std::uint64_t c = 0; c < cols; ++c) x[r * cols + c] = absmax * (float(c) / float(cols - 1) * 2.0f - 1.0f);
  }
  format_params p = int4_codec::params();
  p.group_size = 32;
  const encoded_tensor enc = host::encode(x.data(), dtype::f32, {rows, cols}, p);
  std::vector<float> out(x.size());
  REQUIRE(host::decode(enc.view(), out.data(), dtype::f32, out.size() * 4) == status::success);
  std::uint64_t bumped = 0;
  for (std::uint64_t r = 0; r < rows; ++r) {
    std::uint16_t bits;
    std::memcpy(&bits, enc.view().scales() + 2 * r, 2);
    const double s = f16_to_float(bits), absmax = std::fabs(double(x[r * cols]));
    bumped += absmax > 7.0 * s * (1 + 1e-6);  // scales that rounded below absmax / 7 (within 7.5: allowed)
    for (std::uint64_t c = 0; c < cols; ++c) {
      const std::uint64_t i = r * cols + c;
      INFO("row " << r << " col " << c << " value " << x[i] << " decoded " << out[i] << " scale " << s);
      REQUIRE(std::fabs(double(x[i]) - double(out[i])) <= 0.5 * s * (1 + 1e-6));
    }
  }
  MESSAGE("groups whose scale rounded below absmax / 7: " << bumped);
}

TEST_CASE("encoded bytes are the same with and without SIMD, on one thread or several") {
  TILECODEC_SEEDED_RNG(rng);
  const std::uint64_t rows = 300, cols = 1000;
  for (dtype type : {dtype::bf16, dtype::f32}) {
    host_tensor src = random_tensor(rng, type, rows * cols);
    format_params policies[] = {lossless_codec::params(), int8_codec::params(), int4_codec::params(),
                                codec<tile<64, 256>, quant::lossless, coder::rans<11, 16>>::params(),
                                codec<tile128, quant::int8_rowwise, coder::raw>::params()};
    policies[0].order = symbol_order::mma;
    for (const format_params& p : policies) {
      std::vector<std::uint8_t> first;
      for (bool simd : {true, false})
        for (unsigned threads : {1u, 3u}) {
          host::encode_options o;
          o.simd = simd;
          o.threads = threads;
          const encoded_tensor enc = host::encode(src.bytes.data(), type, {rows, cols}, p, o);
          if (first.empty()) first = enc.bytes();
          CAPTURE(simd);
          CAPTURE(threads);
          CHECK(enc.bytes() == first);
        }
    }
  }
}
