#include <tilecodec/coder/frequency_table.hpp>
#include <tilecodec/coder/rans.hpp>

#include <numeric>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include "common/seed.hpp"
#include "common/symbol_planes.hpp"

using namespace tilecodec;

namespace {

std::vector<std::uint64_t> histogram(const std::vector<std::uint16_t>& s, std::uint32_t alphabet) {
  std::vector<std::uint64_t> h(alphabet, 0);
  for (auto v : s) ++h[v];
  return h;
}

template <std::uint32_t Lanes>
void roundtrip(const std::vector<std::uint16_t>& symbols, std::uint32_t alphabet, std::uint32_t prob_bits) {
  const auto counts = histogram(symbols, alphabet);
  const auto freq = normalize_frequencies(counts.data(), alphabet, prob_bits);
  const auto enc = make_encode_symbols(freq.data(), alphabet, prob_bits);
  std::vector<std::uint16_t> words;
  std::vector<std::uint8_t> tile;
  rans_encode_tile<Lanes>(enc.data(), prob_bits, symbols.data(), std::uint32_t(symbols.size()), words, tile);
  CHECK(tile.size() % tile_alignment == 0);
  std::vector<rans_decode_entry> table(std::size_t(1) << prob_bits);
  REQUIRE(build_decode_table(freq.data(), alphabet, prob_bits, table.data()) == status::success);
  std::vector<std::uint16_t> back(symbols.size(), 0xAAAA);
  REQUIRE(rans_decode_tile<Lanes>(table.data(), prob_bits, symbol_bits(alphabet), tile.data(), tile.size(), back.data(),
                                  std::uint32_t(back.size())) == status::success);
  CHECK(back == symbols);
}

}  // namespace

TEST_CASE("normalized frequencies sum to 2^bits and keep every used symbol") {
  TILECODEC_SEEDED_RNG(rng);
  for (std::uint32_t bits = 8; bits <= 12; ++bits) {
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<std::uint64_t> counts(256, 0);
      const int used = 1 + int(rng() % 256);
      for (int i = 0; i < used; ++i) counts[rng() % 256] += 1 + (rng() % 3 == 0 ? rng() % 1000000 : rng() % 10);
      const auto freq = normalize_frequencies(counts.data(), 256, bits);
      std::uint64_t sum = 0;
      for (std::uint32_t s = 0; s < 256; ++s) {
        sum += freq[s];
        if (counts[s]) CHECK(freq[s] >= 1);
        CHECK(freq[s] <= max_frequency(256, bits));
      }
      CHECK(sum == (1u << bits));
    }
  }
}

namespace {
double coded_over_entropy(const std::vector<std::uint64_t>& counts, std::uint32_t bits) {
  const auto freq = normalize_frequencies(counts.data(), std::uint32_t(counts.size()), bits);
  double total = 0, coded = 0;
  for (std::size_t s = 0; s < counts.size(); ++s) total += double(counts[s]);
  for (std::size_t s = 0; s < counts.size(); ++s)
    if (counts[s]) coded += double(counts[s]) * (double(bits) - std::log2(double(freq[s])));
  return coded / (order0_entropy(counts.data(), std::uint32_t(counts.size())) * total);
}
}  // namespace

TEST_CASE("normalization costs little over the entropy") {
  // Gaussian int8 codes (std 20): ~100 tail symbols below 1/4096 each keep one slot; 12-bit
  // frequencies then cost about 0.6% over the entropy.
  std::vector<std::uint64_t> gauss(256);
  for (int s = 0; s < 256; ++s) gauss[s] = std::uint64_t(1e8 * std::exp(-0.5 * (s - 128) * (s - 128) / 400.0));
  CHECK(coded_over_entropy(gauss, 12) < 1.008);
  // A long geometric tail over all 256 symbols: ~150 symbols below 1/4096 must each keep a
  // slot, which costs about 0.7%; still inside the 1% ratio target.
  std::vector<std::uint64_t> tail(256);
  for (int s = 0; s < 256; ++s) tail[s] = std::uint64_t(1e7 * std::exp(-0.05 * s)) + 1;
  CHECK(coded_over_entropy(tail, 12) < 1.01);
  CHECK(coded_over_entropy(tail, 12) < coded_over_entropy(tail, 10));
}

TEST_CASE("rANS tiles round trip for every lane count, precision and length") {
  TILECODEC_SEEDED_RNG(rng);
  tilecodec_test::for_each_symbol_plane(rng, {0u, 1u, 31u, 32u, 33u, 1000u, 65536u},
                                        [](const std::vector<std::uint16_t>& s, std::uint32_t alphabet, std::uint32_t bits) {
                                          roundtrip<32>(s, alphabet, bits);
                                          if (alphabet != 256) return;
                                          roundtrip<1>(s, alphabet, bits);
                                          roundtrip<4>(s, alphabet, bits);
                                          roundtrip<64>(s, alphabet, bits);
                                        });
}

TEST_CASE("single-symbol and uniform planes round trip") {
  std::vector<std::uint16_t> zeros(5000, 0), sevens(777, 7), uniform(70000), uniform9(70000);
  TILECODEC_SEEDED_RNG(rng);
  for (auto& v : uniform) v = static_cast<std::uint16_t>(rng() & 255);
  for (auto& v : uniform9) v = static_cast<std::uint16_t>(rng() & 511);
  roundtrip<32>(zeros, 256, 12);
  roundtrip<32>(sevens, 16, 12);
  roundtrip<32>(uniform, 256, 12);
  roundtrip<32>(uniform9, 512, 11);
}

TEST_CASE("corrupt rANS tiles are reported, never overrun") {
  TILECODEC_SEEDED_RNG(rng);
  std::vector<std::uint16_t> s(4096);
  for (auto& v : s) v = static_cast<std::uint16_t>(rng() % 40);
  const auto counts = histogram(s, 256);
  const auto freq = normalize_frequencies(counts.data(), 256, 12);
  const auto enc = make_encode_symbols(freq.data(), 256, 12);
  std::vector<std::uint16_t> words;
  std::vector<std::uint8_t> tile;
  rans_encode_tile<32>(enc.data(), 12, s.data(), 4096, words, tile);
  std::vector<rans_decode_entry> table(4096);
  REQUIRE(build_decode_table(freq.data(), 256, 12, table.data()) == status::success);
  std::vector<std::uint16_t> out(4096);
  // Truncation: every shorter length is an error (the decoder sees only that many bytes).
  for (std::size_t len = 0; len + 16 <= tile.size(); len += 7) {
    std::vector<std::uint8_t> cut(tile.begin(), tile.begin() + std::ptrdiff_t(len));
    CHECK(rans_decode_tile<32>(table.data(), 12, 8, cut.data(), cut.size(), out.data(), 4096) != status::success);
  }
  // Bit flips: error or wrong data, never a crash (ASan checks the "never").
  int detected = 0;
  for (int trial = 0; trial < 200; ++trial) {
    auto bad = tile;
    bad[rng() % bad.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
    const status st = rans_decode_tile<32>(table.data(), 12, 8, bad.data(), bad.size(), out.data(), 4096);
    detected += st != status::success || out != s;
  }
  CHECK(detected >= 190);  // a flip in the zero padding can go unseen; almost all others are caught
}

TEST_CASE("stored tables with bad sums are rejected") {
  std::vector<std::uint16_t> freq(256, 0);
  std::vector<rans_decode_entry> table(4096);
  freq[0] = 4000;
  freq[1] = 95;
  CHECK(build_decode_table(freq.data(), 256, 12, table.data()) == status::corrupt_table);
  freq[1] = 96;
  CHECK(build_decode_table(freq.data(), 256, 12, table.data()) == status::success);
  freq[0] = 4096;
  freq[1] = 0;
  CHECK(build_decode_table(freq.data(), 256, 12, table.data()) == status::corrupt_table);
  std::vector<std::uint16_t> wide(512, 0);  // 9-bit alphabet at 12 bits: frequencies cap at 2048
  wide[0] = 2049;
  wide[1] = 2047;
  CHECK(build_decode_table(wide.data(), 512, 12, table.data()) == status::corrupt_table);
  wide[0] = 2048;
  wide[1] = 2048;
  CHECK(build_decode_table(wide.data(), 512, 12, table.data()) == status::success);
  freq[0] = 65535;
  freq[1] = 65535;
  CHECK(build_decode_table(freq.data(), 256, 12, table.data()) == status::corrupt_table);
}

TEST_CASE("the encoder's reciprocal division is exact for every frequency") {
  TILECODEC_SEEDED_RNG(rng);
  // One reciprocal per frequency 1..4095, as make_encode_symbols computes it.
  std::vector<rans_encode_symbol> enc(4096);
  for (std::uint32_t f = 1; f < 4096; ++f) enc[f].rcp = 1.0 / double(f);
  for (std::uint32_t f = 1; f < 4096; ++f) {
    const std::uint64_t kmax = 0xffffffffull / f;
    for (int trial = 0; trial < 200; ++trial) {
      const std::uint64_t k = trial < 4 ? (trial < 2 ? std::uint64_t(trial) : kmax - std::uint64_t(trial - 2)) : rng() % (kmax + 1);
      for (std::uint64_t s : {k * f, k * f + f - 1, k * f > 0 ? k * f - 1 : 0}) {
        if (s > 0xffffffffull) continue;
        const auto q = static_cast<std::uint32_t>(double(s) * enc[f].rcp + rans_rcp_bias);
        REQUIRE(q == s / f);
      }
    }
  }
}

#include <tilecodec/coder/rans_avx2.hpp>

#if TILECODEC_HAS_AVX2_DECODER
TEST_CASE("the AVX2 tile decoder matches the scalar reference, corrupt tiles included") {
  if (!detail::cpu_has_avx2()) {
    MESSAGE("skipped: this CPU has no AVX2");
    return;
  }
  TILECODEC_SEEDED_RNG(rng);
  for (std::uint32_t n : {0u, 1u, 33u, 4096u, 65536u}) {
    for (std::uint32_t alphabet : {16u, 256u, 512u}) {
      const std::uint32_t bits = alphabet == 512 ? 11u : 12u;
      std::vector<std::uint16_t> s(n);
      std::geometric_distribution<int> geo(0.05 + double(rng() % 50) / 100.0);
      for (auto& v : s) v = static_cast<std::uint16_t>(std::min<int>(int(alphabet) - 1, geo(rng)));
      const auto counts = histogram(s, alphabet);
      const auto freq = normalize_frequencies(counts.data(), alphabet, bits);
      const auto enc = make_encode_symbols(freq.data(), alphabet, bits);
      std::vector<std::uint16_t> words;
      std::vector<std::uint8_t> tile;
      rans_encode_tile<32>(enc.data(), bits, s.data(), n, words, tile);
      std::vector<rans_decode_entry> table(std::size_t(1) << bits);
      REQUIRE(build_decode_table(freq.data(), alphabet, bits, table.data()) == status::success);
      std::vector<std::uint16_t> a(n + 32, 0x11), b(n + 32, 0x11);
      auto avx2 = [&](const std::uint8_t* p, std::size_t len, std::uint16_t* out) {
        return rans_decode_tile_avx2(table.data(), bits, symbol_bits(alphabet), p, len, out, n);
      };
      auto scalar = [&](const std::uint8_t* p, std::size_t len, std::uint16_t* out) {
        return rans_decode_tile<32>(table.data(), bits, symbol_bits(alphabet), p, len, out, n);
      };
      REQUIRE(avx2(tile.data(), tile.size(), a.data()) == status::success);
      REQUIRE(scalar(tile.data(), tile.size(), b.data()) == status::success);
      CHECK(a == b);
      CHECK(std::equal(s.begin(), s.end(), a.begin()));
      for (int trial = 0; trial < 50 && n > 0; ++trial) {
        auto bad = tile;
        bad[rng() % bad.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
        const std::size_t len = trial % 3 == 0 ? rng() % bad.size() : bad.size();
        const status sa = avx2(bad.data(), len, a.data());
        const status sb = scalar(bad.data(), len, b.data());
        CHECK(sa == sb);
        if (sa == status::success) CHECK(a == b);
      }
    }
  }
}
#endif

// The pair decoder (two tiles side by side, what tensor_decoder::decode uses) gives each tile
// the same status and symbols as decoding it alone, whichever of the two is shorter or corrupt.
TEST_CASE("the AVX2 pair decoder matches the one-tile decoder, corrupt tiles included") {
  if (!detail::cpu_has_avx2()) {
    MESSAGE("skipped: this CPU has no AVX2");
    return;
  }
  TILECODEC_SEEDED_RNG(rng);
  const std::uint32_t alphabet = 512, bits = 12;
  const std::uint32_t lengths[] = {0u, 33u, 1000u, 4096u, 65536u};
  std::vector<std::uint16_t> all(65536 * 2);
  std::geometric_distribution<int> geo(0.08);
  for (auto& v : all) v = static_cast<std::uint16_t>(std::min<int>(int(alphabet) - 1, geo(rng)));
  const auto counts = histogram(all, alphabet);
  const auto freq = normalize_frequencies(counts.data(), alphabet, bits);
  const auto enc = make_encode_symbols(freq.data(), alphabet, bits);
  std::vector<rans_decode_entry> table(std::size_t(1) << bits);
  REQUIRE(build_decode_table(freq.data(), alphabet, bits, table.data()) == status::success);
  std::vector<std::uint16_t> words;
  for (std::uint32_t n0 : lengths)
    for (std::uint32_t n1 : lengths)
      for (int trial = 0; trial < 6; ++trial) {
        std::vector<std::uint8_t> t0, t1;
        rans_encode_tile<32>(enc.data(), bits, all.data(), n0, words, t0);
        rans_encode_tile<32>(enc.data(), bits, all.data() + 65536, n1, words, t1);
        std::size_t len0 = t0.size(), len1 = t1.size();
        if (trial > 0) {  // corrupt one tile (a flipped bit, or cut short), or both
          auto& bad = trial % 2 ? t0 : t1;
          bad[rng() % bad.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
          if (trial >= 4) (trial % 2 ? len0 : len1) = rng() % bad.size();
          if (trial == 5) t1[rng() % t1.size()] ^= 1u;
        }
        std::vector<std::uint16_t> p0(n0 + 32, 0x11), p1(n1 + 32, 0x11), a0(n0 + 32, 0x11), a1(n1 + 32, 0x11);
        status r0 = status::success, r1 = status::success;
        rans_decode_tile_pair_avx2(table.data(), bits, 9, t0.data(), len0, p0.data(), n0, r0, t1.data(), len1, p1.data(),
                                   n1, r1);
        const status s0 = rans_decode_tile_avx2(table.data(), bits, 9, t0.data(), len0, a0.data(), n0);
        const status s1 = rans_decode_tile_avx2(table.data(), bits, 9, t1.data(), len1, a1.data(), n1);
        CAPTURE(n0);
        CAPTURE(n1);
        CAPTURE(trial);
        CHECK(r0 == s0);
        CHECK(r1 == s1);
        if (s0 == status::success) CHECK(p0 == a0);
        if (s1 == status::success) CHECK(p1 == a1);
      }
}

TEST_CASE("frequency caps hold for every alphabet, degenerate planes included") {
  for (std::uint32_t alphabet : {16u, 256u, 512u})
    for (std::uint32_t bits = 8; bits <= 12; ++bits) {
      std::vector<std::uint64_t> one(alphabet, 0), two(alphabet, 0);
      one[alphabet - 1] = 1000;
      two[3] = 1000000;
      two[4] = 1;
      for (const auto* counts : {&one, &two}) {
        const auto freq = normalize_frequencies(counts->data(), alphabet, bits);
        std::vector<rans_decode_entry> table(std::size_t(1) << bits);
        CAPTURE(alphabet);
        CAPTURE(bits);
        CHECK(build_decode_table(freq.data(), alphabet, bits, table.data()) == status::success);
        for (std::uint32_t s = 0; s < alphabet; ++s)
          if ((*counts)[s]) CHECK(freq[s] >= 1);
      }
    }
}

#if TILECODEC_HAS_AVX2_DECODER
TEST_CASE("the AVX2 tile encoder writes the same bytes as the scalar one") {
  if (!detail::cpu_has_avx2()) {
    MESSAGE("skipped: this CPU has no AVX2");
    return;
  }
  TILECODEC_SEEDED_RNG(rng);
  // Lengths around the encoder's 1024-symbol staging blocks and partial last steps.
  for (std::uint32_t n : {0u, 5u, 32u, 100u, 1023u, 1024u, 1057u, 4096u, 40000u, 65536u})
    for (std::uint32_t alphabet : {16u, 256u, 512u})
      for (std::uint32_t bits : {8u, 9u, 10u, 11u, 12u}) {
        std::vector<std::uint16_t> s(n);
        std::geometric_distribution<int> geo(0.02 + double(rng() % 60) / 100.0);
        for (auto& v : s) v = static_cast<std::uint16_t>(std::min<int>(int(alphabet) - 1, geo(rng)));
        const auto counts = histogram(s, alphabet);
        const auto freq = normalize_frequencies(counts.data(), alphabet, bits);
        const auto enc = make_encode_symbols(freq.data(), alphabet, bits);
        std::vector<std::uint16_t> words;
        std::vector<std::uint8_t> scalar, simd;
        rans_encode_tile<32>(enc.data(), bits, s.data(), n, words, scalar);
        rans_encode_tile_avx2(rans_encode_tables(enc), bits, s.data(), n, words, simd);
        CAPTURE(n);
        CAPTURE(alphabet);
        CAPTURE(bits);
        CHECK(simd == scalar);
      }
}
#endif
