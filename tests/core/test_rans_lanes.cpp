// Lane-stream rANS (plane coding 3, coder/rans_lanes.hpp): tile round trips, the byte layout the
// spec states, corruption detection, and whole tensors through the host encoder and decoder.
#include <tilecodec/coder/frequency_table.hpp>
#include <tilecodec/coder/rans.hpp>
#include <tilecodec/coder/rans_lanes.hpp>
#include <tilecodec/format/policy_rules.hpp>
#include <tilecodec/host/synthetic.hpp>
#include <tilecodec/tilecodec.hpp>

#include <cstring>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include "common/seed.hpp"
#include "common/symbol_planes.hpp"

using namespace tilecodec;

namespace {

struct coded_tile {
  std::vector<std::uint8_t> bytes;
  std::vector<rans_decode_entry> table;
};

template <std::uint32_t Lanes>
coded_tile encode_lanes(const std::vector<std::uint16_t>& symbols, std::uint32_t alphabet, std::uint32_t prob_bits) {
  std::vector<std::uint64_t> counts(alphabet, 0);
  for (auto v : symbols) ++counts[v];
  if (symbols.empty()) counts[0] = 1;
  const auto freq = normalize_frequencies(counts.data(), alphabet, prob_bits);
  const auto enc = make_encode_symbols(freq.data(), alphabet, prob_bits);
  coded_tile t;
  std::vector<std::uint16_t> words;
  rans_lanes_encode_tile<Lanes>(enc.data(), prob_bits, symbols.data(), std::uint32_t(symbols.size()), words, t.bytes);
  t.table.resize(std::size_t(1) << prob_bits);
  REQUIRE(build_decode_table(freq.data(), alphabet, prob_bits, t.table.data()) == status::success);
  return t;
}

template <std::uint32_t Lanes>
void roundtrip(const std::vector<std::uint16_t>& symbols, std::uint32_t alphabet, std::uint32_t prob_bits) {
  const coded_tile t = encode_lanes<Lanes>(symbols, alphabet, prob_bits);
  const auto n = std::uint32_t(symbols.size());
  CHECK(t.bytes.size() % tile_alignment == 0);
  // Layout: states, u16 counts, then exactly the counted words and < 16 bytes of zero padding.
  std::uint64_t words = 0;
  for (std::uint32_t l = 0; l < Lanes; ++l) {
    const std::uint32_t c = load_le16(t.bytes.data() + 4 * Lanes + 2 * l);
    CHECK(c <= (n + Lanes - 1 - l) / Lanes);  // at most one word per symbol of the lane
    words += c;
  }
  CHECK(t.bytes.size() == rans_lanes_tile_bytes(Lanes, words));
  for (std::size_t i = rans_lanes_head_bytes(Lanes) + 2 * words; i < t.bytes.size(); ++i) CHECK(t.bytes[i] == 0);
  std::vector<std::uint16_t> back(symbols.size(), 0xAAAA);
  REQUIRE(rans_lanes_decode_tile(Lanes, t.table.data(), prob_bits, symbol_bits(alphabet), t.bytes.data(), t.bytes.size(),
                                 back.data(), n) == status::success);
  CHECK(back == symbols);
}

}  // namespace

TEST_CASE("lane-stream rANS tiles round trip for every lane count, precision and length") {
  TILECODEC_SEEDED_RNG(rng);
  tilecodec_test::for_each_symbol_plane(rng, {0u, 1u, 31u, 32u, 33u, 127u, 129u, 1000u, 65536u},
                                        [](const std::vector<std::uint16_t>& s, std::uint32_t alphabet, std::uint32_t bits) {
                                          if (alphabet == 16) return roundtrip<64>(s, alphabet, bits);
                                          if (alphabet == 512) return roundtrip<128>(s, alphabet, bits);
                                          roundtrip<32>(s, alphabet, bits);
                                          roundtrip<64>(s, alphabet, bits);
                                          roundtrip<128>(s, alphabet, bits);
                                        });
}

TEST_CASE("lane-stream rANS decodes the same symbols as the shared-stream coder, with a head of 6 bytes per lane") {
  TILECODEC_SEEDED_RNG(rng);
  std::vector<std::uint16_t> s(65536);
  std::geometric_distribution<int> geo(0.05);
  for (auto& v : s) v = static_cast<std::uint16_t>(std::min(255, geo(rng)));
  std::vector<std::uint64_t> counts(256, 0);
  for (auto v : s) ++counts[v];
  const auto freq = normalize_frequencies(counts.data(), 256, 12);
  const auto enc = make_encode_symbols(freq.data(), 256, 12);
  std::vector<std::uint16_t> words;
  std::vector<std::uint8_t> shared, lanes;
  rans_encode_tile<64>(enc.data(), 12, s.data(), std::uint32_t(s.size()), words, shared);
  rans_lanes_encode_tile<64>(enc.data(), 12, s.data(), std::uint32_t(s.size()), words, lanes);
  // Same states and the same words, regrouped by lane: only the 2-byte counts are added.
  CHECK(std::memcmp(shared.data(), lanes.data(), 4 * 64) == 0);
  CHECK(lanes.size() - shared.size() <= 2 * 64 + 16);
  CHECK(lanes.size() + 16 >= shared.size() + 2 * 64);
}

TEST_CASE("lane-stream rANS: corrupt tiles are rejected, never read out of bounds") {
  TILECODEC_SEEDED_RNG(rng);
  std::vector<std::uint16_t> s(5000);
  std::geometric_distribution<int> geo(0.1);
  for (auto& v : s) v = static_cast<std::uint16_t>(std::min(255, geo(rng)));
  const coded_tile good = encode_lanes<32>(s, 256, 12);
  std::vector<std::uint16_t> back(s.size());
  auto decode = [&](const std::vector<std::uint8_t>& b) {
    // An exact-size copy, so that a sanitizer sees any read past the tile.
    std::vector<std::uint8_t> copy(b);
    return rans_lanes_decode_tile(32, good.table.data(), 12, 8, copy.data(), copy.size(), back.data(), std::uint32_t(s.size()));
  };
  REQUIRE(decode(good.bytes) == status::success);
  {  // a count that no longer matches the tile's size
    std::vector<std::uint8_t> b = good.bytes;
    b[4 * 32 + 2 * 5] ^= 0x10;
    CHECK(decode(b) == status::corrupt_payload);
  }
  {  // a word moved from one lane to the next: sizes match, the streams do not
    std::vector<std::uint8_t> b = good.bytes;
    std::uint16_t c0 = load_le16(b.data() + 4 * 32), c1 = load_le16(b.data() + 4 * 32 + 2);
    --c0, ++c1;
    std::memcpy(b.data() + 4 * 32, &c0, 2);
    std::memcpy(b.data() + 4 * 32 + 2, &c1, 2);
    CHECK(decode(b) == status::corrupt_payload);
  }
  {  // a state below L
    std::vector<std::uint8_t> b = good.bytes;
    std::memset(b.data() + 4 * 7, 0, 4);
    CHECK(decode(b) == status::corrupt_payload);
  }
  {  // a tile cut short, and one 16 bytes too long
    std::vector<std::uint8_t> b(good.bytes.begin(), good.bytes.end() - 16);
    CHECK(decode(b) == status::corrupt_payload);
    b = good.bytes;
    b.resize(b.size() + 16, 0);
    CHECK(decode(b) == status::corrupt_payload);
  }
  int detected = 0;
  for (int trial = 0; trial < 200; ++trial) {  // random bit flips: no crash, mostly detected
    std::vector<std::uint8_t> b = good.bytes;
    b[rng() % b.size()] ^= std::uint8_t(1u << (rng() % 8));
    detected += decode(b) != status::success;
  }
  MESSAGE(detected << " of 200 random bit flips detected");
  CHECK(detected > 100);
}

TEST_CASE("lane-stream rANS tensors: policy, header, host round trip and ratio") {
  TILECODEC_SEEDED_RNG(rng);
  host::synthetic_params sp;
  sp.seed = rng();
  const std::vector<float> w = host::synthetic_weights(300, 520, sp, 1);
  const std::vector<std::uint16_t> bf = host::to_half_bits(w, dtype::bf16);
  using lanes_int8 = codec<tile<128, 128>, quant::int8_rowwise, coder::rans_lanes<12, 64>>;
  using lanes_bf16 = codec<tile<128, 128>, quant::lossless, coder::rans_lanes<12, 128>>;
  using shared_int8 = codec<tile<128, 128>, quant::int8_rowwise, coder::rans<12, 64>>;
  const encoded_tensor a = host::encode<lanes_int8>(w.data(), dtype::f32, {300, 520});
  const encoded_tensor b = host::encode<lanes_bf16>(bf.data(), dtype::bf16, {300, 520});
  const encoded_tensor c = host::encode<shared_int8>(w.data(), dtype::f32, {300, 520});
  CHECK(a.header().coding == plane_coding::rans_lanes);
  CHECK(a.header().params.coder == coder::kind::rans_lanes);
  CHECK(b.header().coding == plane_coding::rans_lanes);
  // Lane streams cost the u16 counts (and padding) over the shared stream: 128 bytes per tile here (15 tiles).
  CHECK(a.size() <= c.size() + 15 * (2 * 64 + 16));  // 3 x 5 tiles
  // Bytes survive a parse, and decode like the shared-stream tensor.
  encoded_tensor_view v;
  REQUIRE(encoded_tensor_view::parse(a.bytes().data(), a.size(), v) == status::success);
  std::vector<std::int8_t> qa(300 * 520), qc(300 * 520);
  REQUIRE(host::decode(v, qa.data(), dtype::i8, qa.size()) == status::success);
  REQUIRE(host::decode(c.view(), qc.data(), dtype::i8, qc.size()) == status::success);
  CHECK(qa == qc);
  std::vector<std::uint16_t> back(bf.size());
  REQUIRE(host::decode(b.view(), back.data(), dtype::bf16, back.size() * 2, 0) == status::success);
  CHECK(back == bf);
  // The named GPU codecs use lane streams and decode like their shared-stream twins.
  const encoded_tensor g4 = host::encode<gpu_int4_codec>(w.data(), dtype::f32, {300, 520});
  const encoded_tensor s4 = host::encode<int4_codec>(w.data(), dtype::f32, {300, 520});
  CHECK(g4.header().coding == plane_coding::rans_lanes);
  CHECK(gpu_lossless_codec::params().coder == coder::kind::rans_lanes);
  CHECK(gpu_int8_codec::params().lanes == 64);
  std::vector<std::uint16_t> g4_out(300 * 520), s4_out(300 * 520);
  REQUIRE(host::decode(g4.view(), g4_out.data(), dtype::bf16, g4_out.size() * 2) == status::success);
  REQUIRE(host::decode(s4.view(), s4_out.data(), dtype::bf16, s4_out.size() * 2) == status::success);
  CHECK(g4_out == s4_out);
  // Run-time policies: the name round trips; too many symbols per lane and unsupported lanes are refused.
  format_params p = lanes_int8::params();
  CHECK(validate_params(p) == status::success);
  p.lanes = 16;
  CHECK(validate_params(p) == status::unsupported);
  p.lanes = 32;
  p.tile_rows = p.tile_cols = 2048;  // 4M symbols, 131072 per lane
  CHECK(validate_params(p) == status::unsupported);
  // Policy names (CLI, rules files): coder=rans-lanes round trips; other lanes are refused.
  tensor_policy tp;
  for (const char* name : {"int8:coder=rans-lanes:lanes=64", "lossless:coder=rans-lanes:lanes=128", "int8:coder=rans-lanes"}) {
    CAPTURE(name);
    REQUIRE(parse_policy(name, tp));
    CHECK(tp.params.coder == coder::kind::rans_lanes);
    CHECK(policy_name(tp) == name);
  }
  CHECK(!parse_policy("int8:coder=rans-lanes:lanes=16", tp));
  // A header claiming coding 3 under the shared-stream coder is refused.
  std::vector<std::uint8_t> bytes = c.bytes();
  bytes[12] = 3;
  CHECK(encoded_tensor_view::parse(bytes.data(), bytes.size(), v) != status::success);
}
