// The fixed-length coder with marked escapes (coder/fixed_marked.hpp, coding 4): tiles against an
// independent count of their escapes, round trips of every quantization against the raw coder on
// heavy-tailed random data, the escape fallback, corrupted tiles and headers, policy names, the
// ratio against coding 2 (the real weights: tests/host/test_fixed.cpp).
#include <tilecodec/tilecodec.hpp>
#include <tilecodec/coder/fixed.hpp>
#include <tilecodec/coder/fixed_marked.hpp>
#include <tilecodec/device/tensor_ref.hpp>
#include <tilecodec/format/policy_rules.hpp>
#include <tilecodec/host/synthetic.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include "common/decode_all.hpp"
#include "common/reference.hpp"
#include "common/seed.hpp"


using namespace tilecodec;
using tilecodec_test::host_tensor;

namespace {

format_params make_params(quant::kind q, std::uint32_t group, coder::kind c, symbol_order o, std::uint32_t tr,
                          std::uint32_t tc) {
  format_params p;
  p.quant = q;
  p.group_size = group;
  p.coder = c;
  p.order = o;
  p.tile_rows = tr;
  p.tile_cols = tc;
  p.prob_bits = c == coder::kind::rans ? 12 : 0;
  p.lanes = c == coder::kind::raw ? 1 : 32;
  return p;
}

// Student-t values with nu = 3 and a per-row scale: tails heavy enough that narrow codes escape.
host_tensor heavy_tensor(std::mt19937_64& rng, dtype type, std::uint64_t rows, std::uint64_t cols) {
  host_tensor t{type, std::vector<std::uint8_t>(rows * cols * dtype_size(type)), {}};
  std::student_t_distribution<double> tail(3.0);
  std::uniform_real_distribution<double> spread(0.5, 2.0);
  const double scale = 0.002 + double(rng() % 100) / 500.0;
  for (std::uint64_t r = 0; r < rows; ++r) {
    const double row_std = scale * spread(rng);
    for (std::uint64_t c = 0; c < cols; ++c) {
      const float v = static_cast<float>(tail(rng) * row_std);
      const std::uint64_t i = r * cols + c;
      if (type == dtype::f32) {
        std::memcpy(t.bytes.data() + 4 * i, &v, 4);
      } else {
        const std::uint16_t h = type == dtype::f16 ? float_to_f16(v) : float_to_bf16(v);
        std::memcpy(t.bytes.data() + 2 * i, &h, 2);
      }
    }
  }
  return t;
}

// The code of a tensor's table section.
fixed_code code_of(const encoded_tensor_view& v) {
  return fixed_code{v.header().params.prob_bits, detail::get_u16(v.table()), v.header().alphabet};
}

// Code-0 positions of a tile below n, read at random from its code words (escapes only below the symbol width).
std::uint32_t count_marks(const std::uint8_t* tile, const fixed_code& code, std::uint32_t n) {
  if (!fixed_marked_escapes(code)) return 0;
  std::uint32_t marks = 0;
  for (std::uint32_t i = 0; i < n; ++i) marks += fixed_code_at(tile, code.bits, i) == 0;
  return marks;
}

// Symbols of one tile with about `escape_share` of them outside the code's window.
std::vector<std::uint16_t> tile_symbols(std::mt19937_64& rng, const fixed_code& code, std::uint32_t n, double escape_share) {
  std::vector<std::uint16_t> s(n);
  const std::uint32_t count = fixed_marked_count(code);
  std::bernoulli_distribution escape(escape_share);
  for (auto& v : s) {
    if (fixed_marked_escapes(code) && escape(rng)) {
      std::uint32_t x;
      do x = std::uint32_t(rng() % code.alphabet); while (x >= code.first && x < code.first + count);
      v = static_cast<std::uint16_t>(x);
    } else {
      v = static_cast<std::uint16_t>(code.first + rng() % count);
    }
  }
  return s;
}

}  // namespace

TEST_CASE("fixed_marked tiles: codes, window_start, values and size exactly as specified, for every width") {
  TILECODEC_SEEDED_RNG(rng);
  for (int trial = 0; trial < 200; ++trial) {
    const std::uint32_t alphabet = trial % 3 == 0 ? 16u : (trial % 3 == 1 ? 256u : 512u);
    const std::uint32_t sb = fixed_symbol_bits(alphabet);
    const std::uint32_t k = 1 + std::uint32_t(rng() % sb);
    fixed_code code{k, 0, alphabet};
    code.first = std::uint32_t(rng() % (alphabet - fixed_marked_count(code) + 1));
    const std::uint32_t sizes[] = {1, 31, 511, 512, 513, 1023, 1024, 1025, 3000, 65536};
    const std::uint32_t n = trial % 4 == 0 ? sizes[rng() % 10] : 1 + std::uint32_t(rng() % 5000);
    CAPTURE(alphabet);
    CAPTURE(k);
    CAPTURE(code.first);
    CAPTURE(n);
    const std::vector<std::uint16_t> sym = tile_symbols(rng, code, n, double(rng() % 30) / 100.0);
    std::vector<std::uint8_t> tile = {1, 2, 3};  // appended after what is there
    REQUIRE(fixed_marked_encode_tile(code, n, sym.data(), tile));
    tile.erase(tile.begin(), tile.begin() + 3);
    const fixed_marked_shape shape = fixed_marked_shape_of(code, n);
    // Escapes counted here, window by window, in symbol order.
    std::vector<std::uint32_t> starts(shape.windows + 1, 0);
    std::vector<std::uint16_t> escaped;
    for (std::uint32_t i = 0; i < n; ++i) {
      const bool escape = fixed_marked_escapes(code) && (sym[i] < code.first || sym[i] - code.first >= fixed_marked_count(code));
      if (escape) escaped.push_back(sym[i]), ++starts[i / fixed_marked_window + 1];
      const std::uint32_t expect = escape ? 0u : (fixed_marked_escapes(code) ? sym[i] - code.first + 1u : sym[i]);
      REQUIRE(fixed_code_at(tile.data(), k, i) == expect);
    }
    for (std::uint32_t v = 0; v < shape.windows; ++v) starts[v + 1] += starts[v];
    REQUIRE(tile.size() == fixed_marked_tile_bytes(shape, escaped.size()));
    REQUIRE(tile.size() % 16 == 0);
    if (fixed_marked_escapes(code)) {
      CHECK(shape.values_offset == (shape.code_bytes + 2ull * (shape.windows + 1) + 3) / 4 * 4);
      for (std::uint32_t v = 0; v <= shape.windows; ++v)
        REQUIRE(detail::load_u16_le(tile.data() + shape.code_bytes + 2 * v) == starts[v]);
      for (std::size_t e = 0; e < escaped.size(); ++e)
        REQUIRE((alphabet == 512 ? detail::load_u16_le(tile.data() + shape.values_offset + 2 * e)
                                 : tile[shape.values_offset + e]) == escaped[e]);
    } else {
      CHECK(escaped.empty());
      CHECK(tile.size() == (shape.code_bytes + 15) / 16 * 16);
    }
    for (std::size_t b = shape.values_offset + escaped.size() * shape.value_bytes; b < tile.size(); ++b)
      REQUIRE(tile[b] == 0);  // padding
    std::vector<std::uint16_t> back(n + 1, 0xBEEF);
    REQUIRE(fixed_marked_decode_tile(code, n, tile.data(), tile.size(), back.data()) == status::success);
    CHECK(back[n] == 0xBEEF);
    back.pop_back();
    CHECK(back == sym);
  }
}

TEST_CASE("fixed_marked at full width is coding 2's tile with k = symbol bits, byte for byte") {
  TILECODEC_SEEDED_RNG(rng);
  for (std::uint32_t alphabet : {16u, 256u, 512u}) {
    const fixed_code code{fixed_symbol_bits(alphabet), 0, alphabet};
    CHECK(fixed_marked_count(code) == alphabet);
    const std::uint32_t h = 1 + std::uint32_t(rng() % 100), w = 1 + std::uint32_t(rng() % 100);
    std::vector<std::uint16_t> sym(std::size_t(h) * w);
    for (auto& s : sym) s = static_cast<std::uint16_t>(rng() % alphabet);
    std::vector<std::uint8_t> a, b;
    REQUIRE(fixed_marked_encode_tile(code, h * w, sym.data(), a));
    REQUIRE(fixed_encode_tile(code, symbol_order::row_major, h, w, sym.data(), nullptr, b));
    CHECK(a == b);
  }
}

TEST_CASE("fixed_marked_choose_code picks the code of the least size times decode work") {
  TILECODEC_SEEDED_RNG(rng);
  for (const double tail_nu : {4.0, 1.5}) {  // moderate and very heavy tails: the chosen widths differ
    std::student_t_distribution<double> tail(tail_nu);
    for (std::uint32_t alphabet : {16u, 256u, 512u}) {
      const double spread = alphabet == 16 ? 1.0 : (alphabet == 256 ? 12.0 : 25.0);
      const double raw_bits = alphabet == 512 ? 7.0 : 0.0;
      const std::uint32_t tiles = 5, n = 128 * 200;  // not a multiple of 1024
      std::vector<std::uint16_t> sym(std::size_t(tiles) * n);
      std::vector<std::uint64_t> counts(alphabet, 0);
      for (auto& v : sym) {
        const double x = std::round(tail(rng) * spread) + double(alphabet / 2);
        v = static_cast<std::uint16_t>(std::min(std::max(x, 0.0), double(alphabet - 1)));
        ++counts[v];
      }
      // The real tiles' size and their escapes (code-0 positions), whatever the chooser assumed.
      auto cost = [&](const fixed_code& code) {
        std::vector<std::uint8_t> out;
        std::uint64_t escapes = 0;
        for (std::uint32_t t = 0; t < tiles; ++t) {
          if (!fixed_marked_encode_tile(code, n, sym.data() + std::size_t(t) * n, out)) return 1e300;
          if (fixed_marked_escapes(code))
            for (std::uint32_t i = 0; i < n; ++i) escapes += sym[std::size_t(t) * n + i] - code.first >= fixed_marked_count(code);
        }
        const double bits = 8.0 * double(out.size()) + raw_bits * double(sym.size());
        return bits * (double(sym.size()) + fixed_marked_escape_work * double(escapes));
      };
      // Every width with its best window, found by brute force.
      double least = 1e300;
      std::uint32_t least_bits = 0;
      for (std::uint32_t k = 1; k <= fixed_symbol_bits(alphabet); ++k) {
        fixed_code code{k, 0, alphabet};
        const std::uint32_t count = fixed_marked_count(code);
        std::uint64_t best = 0;
        for (std::uint32_t first = 0; first + count <= alphabet; ++first) {
          std::uint64_t in = 0;
          for (std::uint32_t s = first; s < first + count; ++s) in += counts[s];
          if (in > best) best = in, code.first = first;
        }
        if (cost(code) < least) least = cost(code), least_bits = k;
      }
      const fixed_code chosen = fixed_marked_choose_code(counts.data(), alphabet, tiles, n, raw_bits);
      CAPTURE(tail_nu);
      CAPTURE(alphabet);
      CAPTURE(chosen.bits);
      CAPTURE(chosen.first);
      CAPTURE(least_bits);
      CHECK(chosen.first + fixed_marked_count(chosen) <= alphabet);
      CHECK(cost(chosen) <= 1.002 * least);
    }
  }
}

TEST_CASE("fixed_marked round trips every quantization, tile shape and order, bit-exact with the raw coder") {
  TILECODEC_SEEDED_RNG(rng);
  const std::pair<quant::kind, std::uint32_t> quants[] = {{quant::kind::lossless, 0},
                                                          {quant::kind::int8_rowwise, 0},
                                                          {quant::kind::int4_group, 32},
                                                          {quant::kind::int4_group, 128}};
  const std::pair<std::uint32_t, std::uint32_t> tiles[] = {{256, 256}, {64, 80}, {128, 48}, {33, 31}, {7, 5}};
  const dtype sources[] = {dtype::bf16, dtype::f16, dtype::f32};
  int with_escapes[4] = {}, coded = 0, tensors = 0;
  for (int qi = 0; qi < 4; ++qi)
    for (auto t : tiles)
      for (dtype src_type : sources)
        for (symbol_order o : {symbol_order::row_major, symbol_order::mma}) {
          const auto q = quants[qi];
          const std::uint64_t rows = 1 + rng() % 400, cols = 1 + rng() % 600;
          const std::vector<std::uint64_t> shape =
              rng() % 6 == 0 ? std::vector<std::uint64_t>{rows * cols} : std::vector<std::uint64_t>{rows, cols};
          const host_tensor src = heavy_tensor(rng, src_type, rows, cols);
          CAPTURE(int(q.first));
          CAPTURE(q.second);
          CAPTURE(t.first);
          CAPTURE(t.second);
          CAPTURE(dtype_name(src_type));
          CAPTURE(int(o));
          CAPTURE(shape.size());
          CAPTURE(rows);
          CAPTURE(cols);
          host::encode_options opt;
          opt.threads = 1 + unsigned(rng() % 3);
          host::encode_stats stats;
          // The chooser's width, or a pinned one (1..9, clamped to the symbol width): narrow codes
          // escape often, whatever the chooser would take for this data.
          format_params mp = make_params(q.first, q.second, coder::kind::fixed_marked, o, t.first, t.second);
          mp.prob_bits = rng() % 3 == 0 ? 0u : (q.first == quant::kind::int4_group ? 3u : 1u + std::uint32_t(rng() % 9));
          CAPTURE(mp.prob_bits);
          const auto marked = host::encode(src.bytes.data(), src_type, shape, mp, opt, &stats);
          const auto raw = host::encode(src.bytes.data(), src_type, shape,
                                        make_params(q.first, q.second, coder::kind::raw, symbol_order::row_major,
                                                    t.first, t.second), opt);
          const tensor_header& h = marked.header();
          REQUIRE(h.params.coder == coder::kind::fixed_marked);
          CHECK(h.params.order == o);
          CHECK(stats.coding == h.coding);
          CHECK(tilecodec_test::decode_all(marked, src_type) == tilecodec_test::decode_all(raw, src_type));
          if (q.first == quant::kind::lossless) {
            std::vector<std::uint8_t> out(src.bytes.size());
            REQUIRE(host::decode(marked.view(), out.data(), src_type, out.size()) == status::success);
            CHECK(out == src.bytes);
          }
          CHECK(h.payload_bytes <= raw.header().payload_bytes);  // never larger than storing
          ++tensors;
          if (h.coding == plane_coding::stored) {
            CHECK(h.params.prob_bits == 0);
            continue;
          }
          REQUIRE(h.coding == plane_coding::fixed_marked);
          ++coded;
          const fixed_code code = code_of(marked.view());
          CHECK(detail::get_u16(marked.view().table() + 2) == fixed_marked_count(code));
          if (fixed_marked_escapes(code)) ++with_escapes[qi];
          // Every tile is exactly the size its own marks give.
          for (std::uint64_t ti = 0; ti < h.tile_count; ++ti) {
            const std::uint32_t n = marked.view().layout().box(ti).size();
            const std::uint32_t marks = count_marks(marked.view().tile_data(ti), code, n);
            REQUIRE(marked.view().tile_bytes(ti) == fixed_marked_tile_bytes(fixed_marked_shape_of(code, n), marks));
          }
        }
  MESSAGE(coded << " of " << tensors << " tensors coded; with escapes: lossless " << with_escapes[0] << ", int8 "
                << with_escapes[1] << ", int4 g32 " << with_escapes[2] << ", int4 g128 " << with_escapes[3]);
  CHECK(with_escapes[0] > 0);
  CHECK(with_escapes[1] > 0);
  CHECK(with_escapes[2] + with_escapes[3] > 0);  // int4 g32 is often stored: its groups spread the codes wide
}

TEST_CASE("fixed_marked: device tile_ref bounds agree with the host parse") {
  TILECODEC_SEEDED_RNG(rng);
  const host_tensor src = heavy_tensor(rng, dtype::bf16, 300, 520);
  const auto enc = host::encode(src.bytes.data(), dtype::bf16, {300, 520},
                                make_params(quant::kind::int8_rowwise, 0, coder::kind::fixed_marked, symbol_order::row_major, 128, 256));
  REQUIRE(enc.header().coding == plane_coding::fixed_marked);
  std::vector<std::uint8_t> bytes = enc.bytes();
  const device::tensor_ref ref = device::make_tensor_ref(enc.view(), bytes.data());  // host memory: the checks are plain C++
  CHECK(ref.fixed_first == detail::get_u16(enc.view().table()));
  for (std::uint64_t t = 0; t < enc.header().tile_count; ++t) {
    device::tile_ref tile;
    REQUIRE(ref.tile(t, tile) == status::success);
    CHECK(tile.byte_count == enc.view().tile_bytes(t));
  }
  // Device bytes are not trusted: a tile index entry that leaves tile 0 too small for its codes.
  detail::put_u64(bytes.data() + enc.header().index_offset + 8, 16);
  device::tile_ref tile;
  CHECK(ref.tile(0, tile) == status::corrupt_payload);
}

TEST_CASE("fixed_marked at coding 2's width is no larger than coding 2 on Llama-like int8 weights, and decodes the same") {
  host::synthetic_params sp;
  sp.seed = tilecodec_test::test_seed();
  INFO("seed: TILECODEC_SEED=" << sp.seed);
  const std::uint64_t rows = 512, cols = 4096;
  const std::vector<float> w = host::synthetic_weights(rows, cols, sp);
  const auto fixed = host::encode<codec<tile256_mma, quant::int8_rowwise, coder::fixed>>(w.data(), dtype::f32, {rows, cols});
  REQUIRE(fixed.header().coding == plane_coding::fixed);
  const std::uint32_t k = fixed.header().params.prob_bits;
  // The format: escapes of one byte and a table per 512 symbols, against two-byte entries and a
  // table per row, for one symbol less in the window.
  format_params p = codec<tile256_mma, quant::int8_rowwise, coder::fixed_marked>::params();
  p.prob_bits = k;
  const auto pinned = host::encode(w.data(), dtype::f32, {rows, cols}, p);
  // The chooser's width (size times decode work): may be wider, never worse than storing.
  const auto chosen = host::encode<codec<tile256_mma, quant::int8_rowwise, coder::fixed_marked>>(w.data(), dtype::f32, {rows, cols});
  REQUIRE(pinned.header().coding == plane_coding::fixed_marked);
  CHECK(pinned.header().params.prob_bits == k);
  auto bits = [&](const encoded_tensor& e) { return 8.0 * double(e.header().payload_bytes) / double(rows * cols); };
  MESSAGE("int8 t8 512x4096 payload bits/weight: fixed k=" << k << " " << bits(fixed) << ", fixed_marked k=" << k << " "
                                                     << bits(pinned) << " (" << 100.0 * (bits(pinned) / bits(fixed) - 1.0)
                                                     << "%), chosen k=" << chosen.header().params.prob_bits << " " << bits(chosen));
  CHECK(double(pinned.header().payload_bytes) <= 1.01 * double(fixed.header().payload_bytes));
  CHECK(chosen.header().payload_bytes <= rows * cols);
  std::vector<float> a(rows * cols), b(rows * cols), c(rows * cols);
  REQUIRE(host::decode(fixed.view(), a.data(), dtype::f32, a.size() * 4) == status::success);
  REQUIRE(host::decode(pinned.view(), b.data(), dtype::f32, b.size() * 4) == status::success);
  REQUIRE(host::decode(chosen.view(), c.data(), dtype::f32, c.size() * 4) == status::success);
  CHECK(a == b);
  CHECK(a == c);
}

TEST_CASE("fixed_marked: more than 65535 escapes in a tile fall back to full-width codes") {
  // Tile level: exactly 65535 escapes fit, one more is refused and leaves the output alone.
  const fixed_code code{1, 5, 256};  // window: symbol 5 alone
  for (std::uint32_t escapes : {65535u, 65536u}) {
    std::vector<std::uint16_t> sym(70000, 5);
    for (std::uint32_t i = 0; i < escapes; ++i) sym[i] = 200;
    std::vector<std::uint8_t> tile = {7};
    const bool fits = fixed_marked_encode_tile(code, 70000, sym.data(), tile);
    CHECK(fits == (escapes == 65535));
    if (!fits) {
      CHECK(tile == std::vector<std::uint8_t>{7});
      continue;
    }
    std::vector<std::uint16_t> back(sym.size());
    REQUIRE(fixed_marked_decode_tile(code, 70000, tile.data() + 1, tile.size() - 1, back.data()) == status::success);
    CHECK(back == sym);
  }
  // Tensor level: 8 tiles of 512 x 512; seven hold one value, the last a far exponent everywhere,
  // so a one-symbol window (pinned: 1-bit codes) would leave 262144 escapes in that tile.
  const std::uint64_t rows = 512, cols = 8 * 512;
  std::vector<std::uint16_t> v(rows * cols, float_to_bf16(0.25f));
  for (std::uint64_t r = 0; r < rows; ++r)
    for (std::uint64_t c = 7 * 512; c < cols; ++c) v[r * cols + c] = float_to_bf16(-1e-30f);
  format_params one_bit = make_params(quant::kind::lossless, 0, coder::kind::fixed_marked, symbol_order::row_major, 512, 512);
  one_bit.prob_bits = 1;
  const auto enc = host::encode(v.data(), dtype::bf16, {rows, cols}, one_bit);
  CHECK(enc.header().params.prob_bits == (enc.header().coding == plane_coding::fixed_marked ? 9u : 0u));
  std::vector<std::uint16_t> out(v.size());
  REQUIRE(host::decode(enc.view(), out.data(), dtype::bf16, out.size() * 2) == status::success);
  CHECK(out == v);
}

TEST_CASE("fixed_marked: corrupted tiles are reported, never read or written out of bounds") {
  TILECODEC_SEEDED_RNG(rng);
  for (std::uint32_t alphabet : {16u, 256u, 512u}) {
    const fixed_code code{alphabet == 16 ? 2u : 5u, alphabet == 16 ? 6u : 100u, alphabet};
    const std::uint32_t n = 2000 + std::uint32_t(rng() % 3000);
    CAPTURE(alphabet);
    CAPTURE(n);
    const std::vector<std::uint16_t> sym = tile_symbols(rng, code, n, 0.1);
    std::vector<std::uint8_t> good;
    REQUIRE(fixed_marked_encode_tile(code, n, sym.data(), good));
    const fixed_marked_shape shape = fixed_marked_shape_of(code, n);
    const std::uint32_t escapes = detail::load_u16_le(good.data() + shape.code_bytes + 2 * shape.windows);
    REQUIRE(escapes > 0);
    auto decode = [&](const std::vector<std::uint8_t>& tile, std::uint64_t bytes) {
      // Exact-size copies, so ASan sees any read past the tile; one guard symbol past n.
      std::vector<std::uint8_t> copy(tile.begin(), tile.begin() + std::ptrdiff_t(bytes));
      std::vector<std::uint16_t> out(n + 1, 0xBEEF);
      const status s = fixed_marked_decode_tile(code, n, copy.data(), bytes, out.data());
      CHECK(out[n] == 0xBEEF);
      return s;
    };
    REQUIRE(decode(good, good.size()) == status::success);
    // Truncated or extended by any multiple of 16 bytes, and any size below the minimum.
    for (std::uint64_t bytes = 0; bytes < good.size(); bytes += 16) CHECK(decode(good, bytes) == status::corrupt_payload);
    std::vector<std::uint8_t> longer = good;
    longer.resize(good.size() + 64, 0);
    for (std::uint64_t extra = 16; extra <= 64; extra += 16)
      CHECK(decode(longer, good.size() + extra) == status::corrupt_payload);
    // Any change to a window_start entry.
    for (std::uint32_t v = 0; v <= shape.windows; ++v) {
      std::vector<std::uint8_t> bad = good;
      const std::uint32_t old = detail::load_u16_le(bad.data() + shape.code_bytes + 2 * v);
      const std::uint32_t now = (old + 1 + std::uint32_t(rng() % 3)) & 0xffffu;
      bad[shape.code_bytes + 2 * v] = static_cast<std::uint8_t>(now);
      bad[shape.code_bytes + 2 * v + 1] = static_cast<std::uint8_t>(now >> 8);
      CHECK(decode(bad, bad.size()) == status::corrupt_payload);
    }
    // A code turned into a mark, or a mark into a code: the window's count no longer matches.
    for (int trial = 0; trial < 20; ++trial) {
      const std::uint32_t i = std::uint32_t(rng() % n);
      const std::uint32_t lane = fixed_lane_of(i), bit = fixed_code_number(i) * code.bits;
      std::vector<std::uint8_t> bad = good;
      const std::uint32_t c = fixed_code_at(bad.data(), code.bits, i), now = c == 0 ? 1u : 0u;
      const std::uint64_t mask = ((std::uint64_t(1) << code.bits) - 1) << (bit & 31);
      std::uint64_t pair = detail::load_u32_le(bad.data() + 4 * (32 * (bit >> 5) + lane));
      const bool two = (bit & 31) + code.bits > 32;
      if (two) pair |= std::uint64_t(detail::load_u32_le(bad.data() + 4 * (32 * ((bit >> 5) + 1) + lane))) << 32;
      pair = (pair & ~mask) | (std::uint64_t(now) << (bit & 31));
      for (int b = 0; b < 4; ++b) bad[4 * (32 * (bit >> 5) + lane) + b] = static_cast<std::uint8_t>(pair >> (8 * b));
      if (two)
        for (int b = 0; b < 4; ++b) bad[4 * (32 * ((bit >> 5) + 1) + lane) + b] = static_cast<std::uint8_t>(pair >> (32 + 8 * b));
      REQUIRE(fixed_code_at(bad.data(), code.bits, i) == now);
      CHECK(decode(bad, bad.size()) == status::corrupt_payload);
    }
    // A value outside the alphabet (every u8 is a symbol of the 256 alphabet).
    if (alphabet != 256) {
      std::vector<std::uint8_t> bad = good;
      const std::uint32_t e = std::uint32_t(rng() % escapes);
      if (alphabet == 16) bad[shape.values_offset + e] = static_cast<std::uint8_t>(16 + rng() % 240);
      else bad[shape.values_offset + 2 * e + 1] = static_cast<std::uint8_t>(2 + rng() % 254);
      CHECK(decode(bad, bad.size()) == status::corrupt_payload);
    }
    // Random bit flips anywhere: reported or decoded, always in bounds.
    int reported = 0;
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<std::uint8_t> bad = good;
      const int flips = 1 + int(rng() % 4);
      for (int f = 0; f < flips; ++f) bad[rng() % bad.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
      reported += decode(bad, bad.size()) != status::success;
    }
    MESSAGE("alphabet " << alphabet << ": " << reported << " of 200 tiles with flipped bits reported");
  }
}

TEST_CASE("fixed_marked: corrupted tensors and headers are rejected or decode in bounds") {
  TILECODEC_SEEDED_RNG(rng);
  const host_tensor src = heavy_tensor(rng, dtype::bf16, 300, 520);
  const auto enc = host::encode(src.bytes.data(), dtype::bf16, {300, 520},
                                make_params(quant::kind::lossless, 0, coder::kind::fixed_marked, symbol_order::mma, 128, 256));
  const tensor_header& h = enc.header();
  REQUIRE(h.coding == plane_coding::fixed_marked);
  REQUIRE(h.params.prob_bits < 9);  // escapes present
  int reported = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<std::uint8_t> bytes = enc.bytes();
    if (trial % 3 == 0 && h.tile_count > 2) {  // a tile boundary moved: one tile longer, the next shorter
      const std::uint64_t t = 1 + rng() % (h.tile_count - 1);
      const std::uint64_t at = detail::get_u64(bytes.data() + h.index_offset + 8 * t);
      detail::put_u64(bytes.data() + h.index_offset + 8 * t, trial % 2 ? at + 16 : at - 16);
    } else {
      const int flips = 1 + int(rng() % 4);
      for (int f = 0; f < flips; ++f)
        bytes[h.payload_offset + rng() % h.payload_bytes] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
    }
    encoded_tensor_view view;
    if (encoded_tensor_view::parse(bytes.data(), bytes.size(), view) != status::success) {
      ++reported;
      continue;
    }
    std::vector<std::uint16_t> out(300 * 520 + 1, 0xBEEF);
    const status s = host::decode(view, out.data(), dtype::bf16, (out.size() - 1) * 2);
    CHECK(out.back() == 0xBEEF);
    if (trial % 3 == 0) CHECK(s != status::success);
    reported += s != status::success;
  }
  MESSAGE(reported << " of 300 corrupted tensors reported");
  CHECK(reported >= 100);
  // Header-level lies.
  encoded_tensor_view view;
  auto parse = [&](const std::vector<std::uint8_t>& b) { return encoded_tensor_view::parse(b.data(), b.size(), view); };
  std::vector<std::uint8_t> bytes = enc.bytes();
  detail::put_u16(bytes.data() + h.table_offset + 2, static_cast<std::uint16_t>(1u << h.params.prob_bits));  // coding 2's count
  CHECK(parse(bytes) == status::corrupt_table);
  bytes = enc.bytes();
  detail::put_u16(bytes.data() + h.table_offset, static_cast<std::uint16_t>(512 - fixed_marked_count(code_of(enc.view())) + 1));
  CHECK(parse(bytes) == status::corrupt_table);  // window past the alphabet
  bytes = enc.bytes();
  bytes[13] = 10;  // code width above the symbol width
  CHECK(parse(bytes) == status::corrupt_header);
  bytes[13] = 0;
  CHECK(parse(bytes) == status::corrupt_header);
  bytes = enc.bytes();
  bytes[10] = static_cast<std::uint8_t>(coder::kind::fixed);  // coding 4 under coder 2
  CHECK(parse(bytes) == status::corrupt_header);
  bytes = enc.bytes();
  bytes[12] = static_cast<std::uint8_t>(plane_coding::fixed);  // coding 2 under coder 4
  CHECK(parse(bytes) == status::corrupt_header);
  bytes = enc.bytes();
  bytes[12] = 5;  // no such coding
  CHECK(parse(bytes) == status::corrupt_header);
  bytes = enc.bytes();
  bytes[14] = 64;  // lanes
  CHECK(parse(bytes) == status::corrupt_header);
  // k = symbol width: the window is the alphabet, so count 2^k and first 0.
  std::vector<std::uint16_t> spread(64 * 64);
  for (std::size_t i = 0; i < spread.size(); ++i) spread[i] = static_cast<std::uint16_t>(i * 2654435761u >> 16);
  const auto full = host::encode(spread.data(), dtype::bf16, {64, 64},
                                 make_params(quant::kind::lossless, 0, coder::kind::fixed_marked, symbol_order::row_major, 64, 64));
  if (full.header().coding == plane_coding::fixed_marked) {
    REQUIRE(full.header().params.prob_bits == 9);
    CHECK(detail::get_u16(full.view().table() + 2) == 512);
    bytes = full.bytes();
    detail::put_u16(bytes.data() + full.header().table_offset, 1);
    CHECK(parse(bytes) == status::corrupt_table);
  }
}

TEST_CASE("fixed_marked: policy names and parameters") {
  tensor_policy p;
  for (const char* name : {"int8:coder=fixed-marked", "lossless:coder=fixed-marked:order=mma", "int4-g64:tile=128x64:coder=fixed-marked"}) {
    CAPTURE(name);
    REQUIRE(parse_policy(name, p));
    CHECK(p.params.coder == coder::kind::fixed_marked);
    CHECK(p.params.lanes == 32);
    CHECK(policy_name(p) == name);
  }
  CHECK(!parse_policy("int8:coder=fixed-marked:lanes=16", p));
  format_params params = codec<tile256, quant::int8_rowwise, coder::fixed_marked>::params();
  CHECK(params.coder == coder::kind::fixed_marked);
  CHECK(validate_params(params) == status::success);
  params.lanes = 64;
  CHECK(validate_params(params) == status::unsupported);
}

TEST_CASE("fixed_marked: prob_bits pins the code width") {
  host::synthetic_params sp;  // Llama-like int8 (rows of 4096): the chooser takes 7-bit codes with escapes
  sp.seed = tilecodec_test::test_seed();
  INFO("seed: TILECODEC_SEED=" << sp.seed);
  const std::vector<float> w = host::synthetic_weights(96, 4096, sp);
  const host_tensor src{dtype::f32, std::vector<std::uint8_t>(reinterpret_cast<const std::uint8_t*>(w.data()),
                                                              reinterpret_cast<const std::uint8_t*>(w.data() + w.size())), {}};
  const auto raw = host::encode(src.bytes.data(), dtype::f32, {96, 4096},
                                make_params(quant::kind::int8_rowwise, 0, coder::kind::raw, symbol_order::row_major, 64, 64));
  std::uint32_t chosen = 0;
  for (std::uint32_t bits : {0u, 3u, 5u, 7u, 8u, 9u}) {
    CAPTURE(bits);
    format_params p = make_params(quant::kind::int8_rowwise, 0, coder::kind::fixed_marked, symbol_order::row_major, 64, 64);
    p.prob_bits = bits;
    const auto enc = host::encode(src.bytes.data(), dtype::f32, {96, 4096}, p);
    CHECK(tilecodec_test::decode_all(enc, dtype::f32) == tilecodec_test::decode_all(raw, dtype::f32));
    if (enc.header().coding == plane_coding::stored) continue;  // a pinned width that codes larger than storing
    REQUIRE(enc.header().coding == plane_coding::fixed_marked);
    if (bits == 0) chosen = enc.header().params.prob_bits;
    else CHECK(enc.header().params.prob_bits == std::min(bits, 8u));  // clamped to the symbol width
  }
  CHECK(chosen >= 1);
  format_params bad = make_params(quant::kind::int8_rowwise, 0, coder::kind::fixed_marked, symbol_order::row_major, 64, 64);
  bad.prob_bits = 10;
  CHECK(validate_params(bad) == status::unsupported);
}
