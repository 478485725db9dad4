// Tests for the model container (format/container.hpp), policy rules (format/policy_rules.hpp) and
// whole-model I/O (host/model_io.hpp): round trips of every storage kind and dtype, hostile headers
// (each field that can lie, with the checksums fixed up so the check behind them is what fails),
// truncation at every section boundary and every byte, every single-bit flip, partial outputs, and
// the real all-MiniLM-L6-v2 weights safetensors -> container -> safetensors when they are present.
#include <doctest/doctest.h>

#include "common/scratch_dir.hpp"

#include <tilecodec/format/container.hpp>
#include <tilecodec/format/policy_rules.hpp>
#include <tilecodec/format/safetensors.hpp>
#include <tilecodec/host/encoder.hpp>
#include <tilecodec/host/model_io.hpp>
#include <tilecodec/host/synthetic.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/seed.hpp"

#ifndef TILECODEC_DATA_DIR
#define TILECODEC_DATA_DIR "data"
#endif

namespace fs = std::filesystem;
namespace ct = tilecodec::container;
namespace st = tilecodec::safetensors;
using tilecodec::dtype;
using tilecodec::status;

namespace {

using tilecodec_test::scratch_dir;


std::vector<std::uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void write_file(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

template <class T>
std::vector<std::uint8_t> as_bytes(const std::vector<T>& v) {
  std::vector<std::uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<std::uint8_t> half_bytes(const std::vector<float>& v, dtype t) { return as_bytes(tilecodec::host::to_half_bits(v, t)); }

// The tensors of the small test model: every storage kind and several dtypes.
struct source {
  std::string name;
  dtype type;
  std::vector<std::uint64_t> shape;
  std::vector<std::uint8_t> bytes;
};

std::vector<source> small_model(std::uint64_t seed) {
  tilecodec::host::synthetic_params p;
  p.seed = seed;
  std::vector<source> s;
  s.push_back({"w.lossless", dtype::f32, {40, 24}, as_bytes(tilecodec::host::synthetic_weights(40, 24, p))});
  p.seed = seed + 1;
  s.push_back({"w.int8", dtype::bf16, {32, 48}, half_bytes(tilecodec::host::synthetic_weights(32, 48, p), dtype::bf16)});
  p.seed = seed + 2;
  s.push_back({"w.int4", dtype::f16, {20, 64}, half_bytes(tilecodec::host::synthetic_weights(20, 64, p), dtype::f16)});
  std::vector<std::int64_t> ids{0, 1, 2, 3, -5, std::numeric_limits<std::int64_t>::max()};
  s.push_back({"ids", dtype::i64, {2, 3}, as_bytes(ids)});
  s.push_back({"mask", dtype::boolean, {5}, {1, 0, 1, 1, 0}});
  s.push_back({"scalar", dtype::f32, {}, as_bytes(std::vector<float>{3.25f})});
  s.push_back({"empty", dtype::f16, {0, 4}, {}});
  s.push_back({"f64", dtype::f64, {3}, as_bytes(std::vector<double>{1.0, -2.5, 1e300})});
  return s;
}

tilecodec::format_params small_tiles(tilecodec::format_params p) {
  p.tile_rows = 16;
  p.tile_cols = 16;
  return p;
}

// Writes the small model as a container: lossless, int8 and int4-g32 tensors with 16x16 tiles,
// the rest stored; metadata with a non-ASCII value.
void write_small_container(const std::string& path, const std::vector<source>& s, unsigned alignment_log2 = 6) {
  ct::writer_options o;
  o.alignment_log2 = alignment_log2;
  o.sync = false;
  ct::writer w(path, o);
  w.set_metadata("format", "pt").set_metadata("note", "ünïcode");
  using namespace tilecodec;
  const format_params params[] = {small_tiles(lossless_codec::params()), small_tiles(int8_codec::params()),
                                  small_tiles(codec<tile256, quant::int4_group<32>, coder::rans<12, 32>>::params())};
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i < 3) {
      const encoded_tensor enc = host::encode(s[i].bytes.data(), s[i].type, s[i].shape, params[i]);
      w.add_encoded(s[i].name, enc.view(), ct::checksum(s[i].bytes.data(), s[i].bytes.size()));
    } else {
      w.add_stored(s[i].name, s[i].type, s[i].shape, s[i].bytes.data(), s[i].bytes.size());
    }
  }
  w.finish();
}

// The status (and message) of parsing an image; success when it parses.
status parse_status(const std::vector<std::uint8_t>& img, std::string* message = nullptr, const ct::parse_options& o = {}) {
  try {
    (void)ct::parse(img.data(), img.size(), "bad.tcm", o);
    return status::success;
  } catch (const tilecodec::error& e) {
    if (message) *message = e.what();
    return e.code();
  }
}

// Everything a reader can check of an image: the index, every blob's checksum, every encoded
// header against its record, a full decode, and zero padding. Returns the first failure.
status full_check(const std::vector<std::uint8_t>& img) {
  try {
    const ct::catalog c = ct::parse(img.data(), img.size(), "x.tcm");
    std::uint64_t cursor = ct::preamble_bytes;
    auto zeros = [&](std::uint64_t a, std::uint64_t b) {
      for (std::uint64_t i = a; i < b; ++i)
        if (img[i] != 0) throw tilecodec::error(status::corrupt_header, "padding");
    };
    for (const ct::entry& e : c.tensors()) {
      zeros(cursor, e.offset);
      cursor = e.offset + e.size;
      ct::verify_blob(e, img.data() + e.offset, e.size, "x.tcm");
      std::vector<std::uint8_t> out(static_cast<std::size_t>(e.original_bytes()) + 1);
      tilecodec::host::decode_blob(e, img.data() + e.offset, e.size, out.data(), out.size(), e.type, 1, "x.tcm");
    }
    zeros(cursor, c.layout().index_offset);
    zeros(c.layout().index_offset + c.layout().index_bytes, c.layout().file_bytes);
    return status::success;
  } catch (const tilecodec::error& e) {
    return e.code();
  }
}

// Applies `edit` to the index of an image, then recomputes the index and preamble checksums, so
// the structural check behind them is what must fail.
std::vector<std::uint8_t> edit_index(std::vector<std::uint8_t> img, const std::function<void(std::uint8_t*)>& edit) {
  ct::preamble p = ct::parse_preamble(img.data(), img.size(), img.size(), "x");
  edit(img.data() + p.index_offset);
  p.index_checksum = ct::checksum(img.data() + p.index_offset, p.index_bytes);
  ct::writer::write_preamble(p, img.data());
  return img;
}
std::vector<std::uint8_t> edit_preamble(std::vector<std::uint8_t> img, const std::function<void(ct::preamble&)>& edit) {
  ct::preamble p = ct::parse_preamble(img.data(), img.size(), img.size(), "x");
  edit(p);
  ct::writer::write_preamble(p, img.data());
  return img;
}
std::uint8_t* record(std::uint8_t* index, std::size_t i) { return index + ct::index_header_bytes + i * ct::tensor_record_bytes; }
void put64(std::uint8_t* p, std::uint64_t v) { std::memcpy(p, &v, 8); }
std::uint64_t get64(const std::uint8_t* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// A small safetensors model on disk: matrices worth encoding and small/odd tensors.
void write_safetensors_model(const std::string& path, std::uint64_t seed, bool with_nan = false) {
  tilecodec::host::synthetic_params p;
  p.seed = seed;
  static std::vector<std::vector<std::uint8_t>> keep;  // the writer keeps pointers until write()
  keep.clear();
  auto add = [&](std::vector<std::uint8_t> b) -> const std::vector<std::uint8_t>& {
    keep.push_back(std::move(b));
    return keep.back();
  };
  keep.reserve(16);
  st::writer w;
  std::vector<float> attn = tilecodec::host::synthetic_weights(192, 160, p);
  if (with_nan) attn[77] = std::nanf("");
  const auto& a = add(half_bytes(attn, dtype::bf16));
  w.add("layers.0.attention.q_proj.weight", dtype::bf16, {192, 160}, a.data(), a.size());
  p.seed = seed + 1;
  const auto& m = add(as_bytes(tilecodec::host::synthetic_weights(256, 96, p)));
  w.add("layers.0.mlp.up_proj.weight", dtype::f32, {256, 96}, m.data(), m.size());
  p.seed = seed + 2;
  const auto& e = add(half_bytes(tilecodec::host::synthetic_weights(300, 64, p), dtype::f16));
  w.add("embed_tokens.weight", dtype::f16, {300, 64}, e.data(), e.size());
  const auto& n = add(as_bytes(std::vector<float>(64, 1.0f)));
  w.add("layers.0.input_layernorm.weight", dtype::f32, {64}, n.data(), n.size());
  const auto& ids = add(as_bytes(std::vector<std::int64_t>{7, 8, 9}));
  w.add("position_ids", dtype::i64, {1, 3}, ids.data(), ids.size());
  const auto& f8 = add({0x38, 0x40, 0xc0, 0x00});
  w.add("scale_f8", dtype::f8_e4m3, {4}, f8.data(), f8.size());
  w.add("empty", dtype::bf16, {0, 8}, nullptr, 0);
  w.set_metadata("format", "pt");
  w.write(path);
}

}  // namespace

// ---- container format ------------------------------------------------------------------------------

TEST_CASE("container: round trip of every storage kind, dtype and policy") {
  TILECODEC_SEEDED_RNG(rng);
  scratch_dir dir;
  const auto sources = small_model(rng());
  for (unsigned alignment : {6u, 12u}) {
    CAPTURE(alignment);
    const std::string path = dir.file("small-" + std::to_string(alignment) + ".tcm");
    write_small_container(path, sources, alignment);
    CHECK(dir.listing().size() == (alignment == 6 ? 1u : 2u));  // no temporary file left

    const tilecodec::host::model_reader model(path);
    REQUIRE(model.tensors().size() == sources.size());
    CHECK(model.metadata() == ct::metadata_map{{"format", "pt"}, {"note", "ünïcode"}});
    CHECK(model.file().size() % (1u << alignment) == 0);
    for (std::size_t i = 0; i < sources.size(); ++i) {
      const ct::entry& e = model.tensors()[i];  // file order is the order of add()
      CAPTURE(e.name);
      CHECK(e.name == sources[i].name);
      CHECK(e.type == sources[i].type);
      CHECK(e.shape == sources[i].shape);
      CHECK(e.offset % (1u << alignment) == 0);
      CHECK(e.kind == (i < 3 ? ct::storage::encoded : ct::storage::stored));
      CHECK(e.source_checksum == ct::checksum(sources[i].bytes.data(), sources[i].bytes.size()));
      CHECK(model.find(e.name) == &e);
      const std::vector<std::uint8_t> out = model.decode(e.name);
      REQUIRE(out.size() == sources[i].bytes.size());
      if (i == 1 || i == 2) {
        // Quantized: within half a step of the original, checked by verify below.
        CHECK(out != sources[i].bytes);
      } else {
        CHECK(out == sources[i].bytes);
      }
    }
    CHECK(model.at("w.int8").params.quant == tilecodec::quant::kind::int8_rowwise);
    CHECK(model.at("w.int4").params.group_size == 32);
    CHECK(model.find("missing") == nullptr);
    CHECK_THROWS_AS((void)model.at("missing"), tilecodec::error);

    // Quantized tensors decode to every float type and to their integer codes.
    std::vector<float> f32(32 * 48);
    model.decode(model.at("w.int8"), f32.data(), f32.size() * 4, dtype::f32);
    std::vector<std::int8_t> codes(32 * 48);
    model.decode(model.at("w.int8"), codes.data(), codes.size(), dtype::i8);
    CHECK(std::any_of(codes.begin(), codes.end(), [](std::int8_t c) { return c == 127 || c == -127; }));
    // A lossless or stored tensor only decodes to its own dtype; buffers must be large enough.
    std::vector<std::uint8_t> small(8);
    CHECK_THROWS_AS(model.decode(model.at("w.lossless"), f32.data(), f32.size() * 4, dtype::bf16), tilecodec::error);
    CHECK_THROWS_AS(model.decode(model.at("w.lossless"), small.data(), small.size(), dtype::f32), tilecodec::error);
    CHECK_THROWS_AS(model.decode(model.at("ids"), small.data(), small.size(), dtype::f32), tilecodec::error);

    // decode_all into caller buffers, one arena.
    std::vector<std::uint8_t> arena(model.original_bytes());
    std::uint64_t at = 0;
    std::vector<std::uint64_t> offsets;
    std::size_t calls = 0;
    model.decode_all(
        [&](const ct::entry& e) {
          offsets.push_back(at);
          const tilecodec::host::model_reader::destination d{arena.data() + at, e.original_bytes(), e.type};
          at += e.original_bytes();
          return d;
        },
        0, [&](const tilecodec::host::progress_event&) { ++calls; });
    CHECK(calls == sources.size() + 1);
    for (std::size_t i = 0; i < sources.size(); ++i)
      if (i != 1 && i != 2) CHECK(std::equal(sources[i].bytes.begin(), sources[i].bytes.end(), arena.begin() + std::ptrdiff_t(offsets[i])));

    // Self-verification passes: lossless and stored tensors match their recorded checksums.
    const auto report = tilecodec::host::verify_model(model);
    CHECK(report.ok());
    for (const auto& t : report.tensors) CHECK(t.exact == (t.policy.rfind("int", 0) != 0));
  }
}

TEST_CASE("container: writer refuses bad tensors and leaves nothing behind") {
  scratch_dir dir;
  const std::string path = dir.file("bad.tcm");
  const std::vector<float> v(16, 1.0f);
  {
    ct::writer w(path);
    w.add_stored("a", dtype::f32, {16}, v.data(), 64);
    CHECK_THROWS_AS(w.add_stored("a", dtype::f32, {16}, v.data(), 64), tilecodec::error);           // duplicate name
    CHECK_THROWS_AS(w.add_stored("b", dtype::f32, {15}, v.data(), 64), tilecodec::error);           // size mismatch
    CHECK_THROWS_AS(w.add_stored("c", dtype::f32, {1ull << 62, 8}, v.data(), 64), tilecodec::error);  // overflow
    CHECK_THROWS_AS(w.add_stored(std::string("\xff\xfe"), dtype::f32, {16}, v.data(), 64), tilecodec::error);  // not UTF-8
    CHECK_THROWS_AS(w.add_stored("d", dtype::f32, {1, 1, 1, 1, 1, 1, 1, 1, 16}, v.data(), 64), tilecodec::error);  // rank 9
    CHECK_THROWS_AS(w.set_metadata("k", std::string("\xc0\x80")), tilecodec::error);  // overlong UTF-8
    CHECK(dir.listing().size() == 1);  // the temporary file, never the final name
    CHECK(!fs::exists(path));
  }  // destroyed without finish()
  CHECK(dir.listing().empty());
  CHECK_THROWS_AS(ct::writer(path, ct::writer_options{3, false}), tilecodec::error);  // alignment 8: too small
  CHECK(dir.listing().empty());
  {
    ct::writer w(path);
    w.finish();
    CHECK_THROWS_AS(w.finish(), tilecodec::error);
  }
  const ct::file empty(path);  // a container with no tensors is valid
  CHECK(empty.tensors().empty());
  CHECK(empty.size() == 8192);
}

TEST_CASE("container: wrong magic, version, checksums and preamble fields") {
  TILECODEC_SEEDED_RNG(rng);
  scratch_dir dir;
  write_small_container(dir.file("s.tcm"), small_model(rng()));
  const std::vector<std::uint8_t> good = read_file(dir.file("s.tcm"));
  REQUIRE(parse_status(good) == status::success);
  REQUIRE(full_check(good) == status::success);
  std::string msg;

  auto img = good;
  img[0] = 'X';
  CHECK(parse_status(img, &msg) == status::corrupt_header);
  CHECK(msg.find("bad.tcm") != std::string::npos);
  CHECK(msg.find("magic") != std::string::npos);

  img = good;
  img[4] = 2;  // version 2
  CHECK(parse_status(img, &msg) == status::unsupported);
  CHECK(msg.find("version") != std::string::npos);

  img = good;
  img[40] ^= 1;  // file_bytes, preamble checksum now wrong
  CHECK(parse_status(img, &msg) == status::checksum_mismatch);
  CHECK(msg.find("preamble_checksum") != std::string::npos);

  // Preamble fields that lie, with a valid preamble checksum.
  auto expect = [&](const std::vector<std::uint8_t>& bad, status s, const char* field) {
    CAPTURE(field);
    CHECK(parse_status(bad, &msg) == s);
    CHECK(msg.find(field) != std::string::npos);
  };
  expect(edit_preamble(good, [](ct::preamble& p) { p.alignment_log2 = 3; }), status::corrupt_header, "alignment_log2");
  expect(edit_preamble(good, [](ct::preamble& p) { p.alignment_log2 = 30; }), status::corrupt_header, "alignment_log2");
  expect(edit_preamble(good, [](ct::preamble& p) { p.index_offset += 8; }), status::corrupt_header, "index_offset");
  expect(edit_preamble(good, [](ct::preamble& p) { p.index_offset = 0; }), status::corrupt_header, "index_offset");
  expect(edit_preamble(good, [](ct::preamble& p) { p.index_offset = ~std::uint64_t(63); }), status::corrupt_header, "index_offset");
  expect(edit_preamble(good, [](ct::preamble& p) { p.index_bytes = 1ull << 40; }), status::corrupt_header, "index_bytes");
  expect(edit_preamble(good, [](ct::preamble& p) { p.index_bytes = 8; }), status::corrupt_header, "index_bytes");
  expect(edit_preamble(good, [](ct::preamble& p) { p.index_bytes += 64; }), status::corrupt_header, "past the end");
  expect(edit_preamble(good, [](ct::preamble& p) { p.file_bytes += 64; }), status::truncated, "file_bytes");
  expect(edit_preamble(good, [](ct::preamble& p) { p.file_bytes -= 64; }), status::corrupt_header, "trailing bytes");
  expect(edit_preamble(good, [](ct::preamble& p) { p.index_checksum ^= 1; }), status::checksum_mismatch, "index_checksum");
  expect(edit_preamble(good, [](ct::preamble& p) { p.index_offset -= 64, p.index_bytes += 64; }), status::checksum_mismatch, "index_checksum");
  img = good;
  img[9] = 1;  // reserved byte, checksum fixed up
  put64(img.data() + 56, ct::checksum(img.data(), 56));
  expect(img, status::corrupt_header, "reserved");
  img = good;
  img[6] = 65;  // preamble size
  expect(img, status::corrupt_header, "preamble_bytes");
  // Trailing bytes after a valid file.
  img = good;
  img.resize(img.size() + 64, 0);
  expect(img, status::corrupt_header, "trailing");
}

TEST_CASE("container: index fields that lie are refused, naming the tensor and the field") {
  TILECODEC_SEEDED_RNG(rng);
  scratch_dir dir;
  write_small_container(dir.file("s.tcm"), small_model(rng()));
  const std::vector<std::uint8_t> good = read_file(dir.file("s.tcm"));
  std::string msg;
  auto expect = [&](const std::function<void(std::uint8_t*)>& edit, status s, const std::vector<std::string>& words) {
    const std::vector<std::uint8_t> bad = edit_index(good, edit);
    const status got = parse_status(bad, &msg);
    CAPTURE(msg);
    CHECK(got == s);
    for (const std::string& w : words) CHECK(msg.find(w) != std::string::npos);
    CHECK(msg.find("bad.tcm") != std::string::npos);
  };
  // Record 0 is "w.lossless" (encoded), 1 "w.int8", 3 "ids" (stored I64 [2,3]).
  expect([](std::uint8_t* x) { x[0] = 'X'; }, status::corrupt_header, {"index", "magic"});
  expect([](std::uint8_t* x) { x[4] = 161; }, status::corrupt_header, {"record_bytes"});
  expect([](std::uint8_t* x) { x[40] = 1; }, status::corrupt_header, {"reserved"});
  expect([](std::uint8_t* x) { put64(x + 8, get64(x + 8) + 1); }, status::corrupt_header, {"tensor_count"});
  expect([](std::uint8_t* x) { put64(x + 8, std::uint64_t(1) << 60); }, status::corrupt_header, {"tensor_count"});  // n*160 overflows
  expect([](std::uint8_t* x) { put64(x + 16, ~std::uint64_t(0)); }, status::corrupt_header, {"metadata_count"});
  expect([](std::uint8_t* x) { put64(x + 24, get64(x + 24) - 1); }, status::corrupt_header, {"strings_bytes"});
  // Names: outside the string table, not UTF-8, duplicated.
  expect([](std::uint8_t* x) { put64(record(x, 0), 1ull << 40); }, status::corrupt_header, {"record 0", "name", "string table"});
  expect([](std::uint8_t* x) { put64(record(x, 0) + 8, ~std::uint64_t(0)); }, status::corrupt_header, {"record 0", "name"});
  expect([](std::uint8_t* x) { put64(record(x, 0) + 8, 70000); }, status::corrupt_header, {"record 0", "name_bytes"});
  expect([](std::uint8_t* x) { std::memcpy(record(x, 1), record(x, 0), 16); }, status::corrupt_header, {"duplicate tensor name", "w.lossless"});
  {
    // Point record 0's name at a byte we make invalid UTF-8.
    const std::vector<std::uint8_t> bad = edit_index(good, [](std::uint8_t* x) {
      const std::uint64_t n = get64(x + 8), m = get64(x + 16);
      std::uint8_t* strings = x + ct::index_header_bytes + n * ct::tensor_record_bytes + m * ct::metadata_record_bytes;
      strings[get64(record(x, 0))] = 0xff;
    });
    CHECK(parse_status(bad, &msg) == status::corrupt_header);
    CHECK(msg.find("UTF-8") != std::string::npos);
  }
  // dtype, storage, rank, dims.
  expect([](std::uint8_t* x) { record(x, 3)[16] = 99; }, status::unsupported, {"'ids'", "dtype", "99"});
  expect([](std::uint8_t* x) { record(x, 0)[16] = static_cast<std::uint8_t>(dtype::i32); }, status::corrupt_header, {"'w.lossless'", "dtype"});
  expect([](std::uint8_t* x) { record(x, 3)[17] = 7; }, status::unsupported, {"'ids'", "storage"});
  expect([](std::uint8_t* x) { record(x, 3)[18] = 9; }, status::corrupt_header, {"'ids'", "rank"});
  expect([](std::uint8_t* x) { record(x, 3)[18] = 1; }, status::corrupt_header, {"'ids'", "dims"});  // dim 1 left beyond the rank
  expect([](std::uint8_t* x) { put64(record(x, 3) + 48, 4); }, status::corrupt_header, {"'ids'", "data_bytes", "needs 64"});  // shape product
  expect([](std::uint8_t* x) { put64(record(x, 3) + 40, 1ull << 40), put64(record(x, 3) + 48, 1ull << 40); }, status::overflow,
         {"'ids'", "dims", "overflows"});
  expect([](std::uint8_t* x) { put64(record(x, 0) + 40, 1ull << 30), put64(record(x, 0) + 48, 1ull << 30); }, status::overflow,
         {"'w.lossless'", "2^56"});
  // Policy ids and parameters.
  expect([](std::uint8_t* x) { record(x, 0)[19] = 9; }, status::unsupported, {"'w.lossless'", "policy", "quantization"});
  expect([](std::uint8_t* x) { record(x, 0)[20] = 5; }, status::unsupported, {"'w.lossless'", "policy", "coder"});
  expect([](std::uint8_t* x) { record(x, 0)[23] = 3; }, status::unsupported, {"'w.lossless'", "lanes"});
  expect([](std::uint8_t* x) { put64(record(x, 0) + 24, 0); }, status::unsupported, {"'w.lossless'", "tile"});
  expect([](std::uint8_t* x) { record(x, 3)[19] = 1; }, status::corrupt_header, {"'ids'", "policy"});  // policy on a stored tensor
  expect([](std::uint8_t* x) { record(x, 3)[140] = 1; }, status::corrupt_header, {"'ids'", "reserved"});
  expect([](std::uint8_t* x) { record(x, 3)[128] ^= 1; }, status::corrupt_header, {"'ids'", "source_checksum"});
  // Offsets and sizes: misaligned, overlapping, into the index, overflowing.
  expect([](std::uint8_t* x) { put64(record(x, 1) + 104, get64(record(x, 1) + 104) + 16); }, status::corrupt_header, {"'w.int8'", "data_offset", "alignment"});
  expect([](std::uint8_t* x) { put64(record(x, 1) + 104, get64(record(x, 0) + 104)); }, status::corrupt_header, {"'w.int8'", "data_offset", "overlaps"});
  expect([](std::uint8_t* x) { put64(record(x, 0) + 104, 0); }, status::corrupt_header, {"'w.lossless'", "data_offset"});
  expect([](std::uint8_t* x) { put64(record(x, 7) + 112, 1ull << 20); }, status::corrupt_header, {"'f64'", "data_bytes"});
  expect([](std::uint8_t* x) { put64(record(x, 0) + 112, get64(record(x, 0) + 112) + 4096); }, status::corrupt_header, {"'w.lossless'"});
  expect([](std::uint8_t* x) { put64(record(x, 2) + 112, ~std::uint64_t(0) - 8); }, status::overflow, {"'w.int4'", "overflows"});
  expect([](std::uint8_t* x) { put64(record(x, 2) + 104, ~std::uint64_t(63)); }, status::overflow, {"'w.int4'", "data_bytes"});
  expect([](std::uint8_t* x) { put64(record(x, 2) + 112, 100); }, status::corrupt_header, {"'w.int4'", "data_bytes", "smaller"});
  // Metadata records.
  expect([](std::uint8_t* x) {
    const std::uint64_t n = get64(x + 8);
    std::uint8_t* m = x + ct::index_header_bytes + n * ct::tensor_record_bytes;
    std::memcpy(m + ct::metadata_record_bytes, m, 16);  // second key = first key
  }, status::corrupt_header, {"duplicate metadata key"});
  expect([](std::uint8_t* x) {
    const std::uint64_t n = get64(x + 8);
    put64(x + ct::index_header_bytes + n * ct::tensor_record_bytes + 24, 1ull << 50);
  }, status::corrupt_header, {"metadata record 0", "value"});
}

TEST_CASE("container: a blob that disagrees with its record, or with its checksum") {
  TILECODEC_SEEDED_RNG(rng);
  scratch_dir dir;
  write_small_container(dir.file("s.tcm"), small_model(rng()));
  const std::vector<std::uint8_t> good = read_file(dir.file("s.tcm"));
  std::string msg;
  auto open_status = [&](const std::vector<std::uint8_t>& img, const char* name) {
    try {
      const ct::catalog c = ct::parse(img.data(), img.size(), "bad.tcm");
      const ct::entry& e = c.at(name);
      ct::verify_blob(e, img.data() + e.offset, e.size, "bad.tcm");
      (void)ct::open_encoded(e, img.data() + e.offset, e.size, "bad.tcm");
      return status::success;
    } catch (const tilecodec::error& err) {
      msg = err.what();
      return err.code();
    }
  };
  // The record's shape, dtype or policy edited: the index still parses, the blob's header disagrees.
  CHECK(open_status(edit_index(good, [](std::uint8_t* x) { put64(record(x, 0) + 40, 41); }), "w.lossless") == status::corrupt_header);
  CHECK(msg.find("'w.lossless'") != std::string::npos);
  CHECK(msg.find("dims") != std::string::npos);
  CHECK(open_status(edit_index(good, [](std::uint8_t* x) { record(x, 0)[16] = static_cast<std::uint8_t>(dtype::bf16); }), "w.lossless") ==
        status::corrupt_header);
  CHECK(msg.find("dtype") != std::string::npos);
  CHECK(open_status(edit_index(good, [](std::uint8_t* x) { put64(record(x, 1) + 24, (16ull << 32) | 32); }), "w.int8") == status::corrupt_header);
  CHECK(msg.find("policy") != std::string::npos);
  // A flipped blob bit: checksum mismatch naming the tensor and the field.
  const ct::catalog c = ct::parse(good.data(), good.size(), "s.tcm");
  auto img = good;
  img[c.at("w.int8").offset + 300] ^= 0x10;
  CHECK(open_status(img, "w.int8") == status::checksum_mismatch);
  CHECK(msg.find("'w.int8'") != std::string::npos);
  CHECK(msg.find("checksum") != std::string::npos);
  // Through the file API and verify_model.
  write_file(dir.file("flip.tcm"), img);
  const tilecodec::host::model_reader model(dir.file("flip.tcm"));
  CHECK_THROWS_AS((void)model.decode("w.int8"), tilecodec::error);
  const auto report = tilecodec::host::verify_model(model);
  CHECK(!report.ok());
  CHECK(report.failures() == 1);
  for (const auto& t : report.tensors) CHECK((t.name == "w.int8") == (t.code == status::checksum_mismatch));
}

TEST_CASE("container: truncation at every section boundary and every byte is refused") {
  TILECODEC_SEEDED_RNG(rng);
  scratch_dir dir;
  for (unsigned alignment : {6u, 12u}) {
    CAPTURE(alignment);
    const std::string path = dir.file("s" + std::to_string(alignment) + ".tcm");
    write_small_container(path, small_model(rng()), alignment);
    const std::vector<std::uint8_t> good = read_file(path);
    const ct::catalog c = ct::parse(good.data(), good.size(), "s.tcm");
    std::vector<std::uint64_t> cuts{0, 1, 8, 63, 64, 65, c.layout().data_offset(), c.layout().index_offset, c.layout().index_offset + 1,
                                    c.layout().index_offset + ct::index_header_bytes,
                                    c.layout().index_offset + ct::index_header_bytes + ct::tensor_record_bytes,
                                    c.layout().index_offset + c.layout().index_bytes, good.size() - 1};
    for (const ct::entry& e : c.tensors()) cuts.insert(cuts.end(), {e.offset, e.offset + 1, e.offset + e.size, e.offset + e.size + 1});
    if (alignment == 6)
      for (std::uint64_t n = 0; n < good.size(); ++n) cuts.push_back(n);  // every byte
    for (std::uint64_t n : cuts) {
      if (n >= good.size()) continue;
      CAPTURE(n);
      const std::vector<std::uint8_t> cut(good.begin(), good.begin() + std::ptrdiff_t(n));
      std::string msg;
      const status s = parse_status(cut, &msg);
      CHECK(s == status::truncated);
      // And through the file reader: a clear error naming the file.
      if (n % 97 == 0 || n < 70) {
        write_file(dir.file("cut.tcm"), cut);
        try {
          const ct::file f(dir.file("cut.tcm"));
          FAIL("a truncated file opened");
        } catch (const tilecodec::error& e) {
          CHECK(e.code() == status::truncated);
          CHECK(std::string(e.what()).find("cut.tcm") != std::string::npos);
        }
      }
    }
  }
}

TEST_CASE("container: every single-bit flip is detected") {
  TILECODEC_SEEDED_RNG(rng);
  scratch_dir dir;
  write_small_container(dir.file("s.tcm"), small_model(rng()), 6);
  const std::vector<std::uint8_t> good = read_file(dir.file("s.tcm"));
  REQUIRE(full_check(good) == status::success);
  std::vector<std::uint8_t> img = good;
  std::size_t detected = 0, checksum = 0;
  for (std::size_t byte = 0; byte < img.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      img[byte] ^= static_cast<std::uint8_t>(1u << bit);
      const status s = full_check(img);
      img[byte] ^= static_cast<std::uint8_t>(1u << bit);
      if (s == status::success) {
        FAIL_CHECK("undetected flip of bit " << bit << " of byte " << byte);
        continue;
      }
      ++detected;
      checksum += s == status::checksum_mismatch ? 1 : 0;
    }
  }
  CHECK(detected == img.size() * 8);
  CHECK(checksum > img.size() * 4);  // most by a checksum; padding by the zero check
  // With checksums off (fuzzing), parsing flipped images never crashes.
  ct::parse_options unchecked;
  unchecked.verify_checksums = false;
  for (std::size_t byte = 0; byte < img.size(); ++byte) {
    img[byte] ^= 0x5a;
    (void)parse_status(img, nullptr, unchecked);
    img[byte] ^= 0x5a;
  }
}

TEST_CASE("container: file errors name the file") {
  scratch_dir dir;
  try {
    const ct::file f(dir.file("missing.tcm"));
    FAIL("opened a missing file");
  } catch (const tilecodec::error& e) {
    CHECK(e.code() == status::io_error);
    CHECK(std::string(e.what()).find("missing.tcm") != std::string::npos);
  }
  CHECK_THROWS_AS(ct::file{dir.file("")}, tilecodec::error);  // a directory
  write_file(dir.file("text.tcm"), std::vector<std::uint8_t>(100, 'x'));
  try {
    const ct::file f(dir.file("text.tcm"));
    FAIL("opened a non-container");
  } catch (const tilecodec::error& e) {
    CHECK(e.code() == status::corrupt_header);
    CHECK(std::string(e.what()).find("not a tilecodec container") != std::string::npos);
  }
  CHECK_THROWS_AS(ct::writer(dir.file("no/such/dir/x.tcm")), tilecodec::error);
}

// ---- policy rules ------------------------------------------------------------------------------------

TEST_CASE("policy rules: glob patterns") {
  using tilecodec::glob_match;
  CHECK(glob_match("*", ""));
  CHECK(glob_match("*", "anything"));
  CHECK(glob_match("*.bias", "layer.0.bias"));
  CHECK(!glob_match("*.bias", "layer.0.bias.x"));
  CHECK(glob_match("layer.?.weight", "layer.3.weight"));
  CHECK(!glob_match("layer.?.weight", "layer.10.weight"));
  CHECK(glob_match("*[Nn]orm*", "encoder.LayerNorm.weight"));
  CHECK(glob_match("*[Nn]orm*", "model.norm.weight"));
  CHECK(!glob_match("*[Nn]orm*", "model.NORM.weight"));
  CHECK(glob_match("layer.[0-2].*", "layer.1.w"));
  CHECK(!glob_match("layer.[0-2].*", "layer.5.w"));
  CHECK(glob_match("layer.[!0-2].*", "layer.5.w"));
  CHECK(glob_match("a[b", "a[b"));  // an unclosed class is a literal '['
  CHECK(glob_match("*a*b*c*", "xxaxxbxxcxx"));
  CHECK(!glob_match("*a*b*c*", "xxaxxcxxbxx"));
  // No exponential blow-up on many stars.
  CHECK(!glob_match("*a*a*a*a*a*a*a*a*a*a*b", std::string(200, 'a')));
}

TEST_CASE("policy rules: names, presets, rule strings and JSON files") {
  using namespace tilecodec;
  tensor_policy p;
  for (const char* name : {"raw", "lossless", "int8", "int4-g128", "int4-g64", "int4-g32", "int8:tile=128x64", "lossless:coder=raw",
                           "int8:lanes=16"}) {
    CAPTURE(name);
    REQUIRE(parse_policy(name, p));
    CHECK(policy_name(p) == name);
  }
  REQUIRE(parse_policy("INT4", p));
  CHECK(policy_name(p) == "int4-g128");
  // Coders and symbol orders newer than rANS/row-major, where this build's format knows them.
  for (const char* name : {"int8:coder=fixed", "int4-g128:order=mma", "lossless:order=mma"})
    if (parse_policy(name, p)) CHECK(policy_name(p) == name);
  std::string why;
  for (const char* bad : {"", "int5", "int8:tile=0x4", "int8:tile=5000x1", "int8:coder=zstd", "int8:lanes=3", "int8:prob-bits=13",
                          "raw:tile=8x8", "int8:foo=1", "int8:tile"}) {
    CAPTURE(bad);
    CHECK(!parse_policy(bad, p, &why));
    CHECK(!why.empty());
  }

  // The lossless preset: small tensors, norms and biases raw; non-encodable dtypes raw; the rest lossless.
  const policy_rules lossless = policy_rules::preset("lossless");
  CHECK(policy_name(lossless.choose("model.layers.0.mlp.up_proj.weight", dtype::bf16, {14336, 4096}).policy) == "lossless");
  CHECK(policy_name(lossless.choose("model.layers.0.input_layernorm.weight", dtype::bf16, {4096}).policy) == "raw");
  CHECK(policy_name(lossless.choose("big.LayerNorm.weight", dtype::f32, {100000}).policy) == "raw");
  CHECK(policy_name(lossless.choose("dense.bias", dtype::f32, {100000}).policy) == "raw");
  CHECK(policy_name(lossless.choose("x", dtype::f32, {100, 100}).policy) == "raw");  // 10000 < 16384 elements
  CHECK(policy_name(lossless.choose("ids", dtype::i64, {1, 100000}).policy) == "raw");
  CHECK(policy_name(lossless.choose("scalar", dtype::f32, {}).policy) == "raw");
  // int8: attention and MLP matrices only; embeddings and heads stay lossless.
  const policy_rules int8 = policy_rules::preset("int8");
  for (const char* name : {"model.layers.3.self_attn.q_proj.weight", "model.layers.3.mlp.down_proj.weight",
                           "encoder.layer.0.attention.self.query.weight", "encoder.layer.0.intermediate.dense.weight",
                           "encoder.layer.0.output.dense.weight", "transformer.h.0.attn.c_attn.weight", "transformer.h.0.mlp.c_fc.weight"}) {
    CAPTURE(name);
    CHECK(policy_name(int8.choose(name, dtype::bf16, {1024, 1024}).policy) == "int8");
  }
  for (const char* name : {"model.embed_tokens.weight", "lm_head.weight", "embeddings.word_embeddings.weight", "transformer.wte.weight"}) {
    CAPTURE(name);
    CHECK(policy_name(int8.choose(name, dtype::bf16, {32000, 4096}).policy) == "lossless");
  }
  CHECK(policy_name(int8.choose("model.layers.0.self_attn.q_proj.bias", dtype::bf16, {1024 * 1024}).policy) == "raw");
  CHECK(policy_name(int8.choose("model.layers.0.self_attn.q_proj.weight", dtype::i32, {1024, 1024}).policy) == "raw");
  CHECK(policy_name(policy_rules::preset("int4").choose("model.layers.0.mlp.gate_proj.weight", dtype::f16, {512, 512}).policy) == "int4-g128");
  CHECK(policy_name(policy_rules::preset("raw").choose("w", dtype::f16, {512, 512}).policy) == "raw");
  // The fused presets: matrices in the fused kernels' form (int8 codes pinned at 8 bits), the rest as int8.
  const policy_rules int8_fused = policy_rules::preset("int8-fused");
  const tensor_policy fused_q = int8_fused.choose("model.layers.0.mlp.up_proj.weight", dtype::bf16, {512, 512}).policy;
  CHECK(policy_name(fused_q) == "int8:coder=fixed:order=mma");
  CHECK(fused_q.params.prob_bits == 8);
  CHECK(policy_name(int8_fused.choose("lm_head.weight", dtype::bf16, {32000, 4096}).policy) == "lossless");
  CHECK(policy_name(policy_rules::preset("int4-fused").choose("model.layers.0.mlp.gate_proj.weight", dtype::f16, {512, 512}).policy) ==
        "int4-g128:coder=fixed:order=mma");
  tensor_policy from_name;
  REQUIRE(parse_policy("int8:coder=fixed:order=mma:prob-bits=8", from_name));
  CHECK(from_name == fused_q);
  CHECK_THROWS_AS(policy_rules::preset("zstd"), error);
  CHECK(policy_name(policy_rules().choose("anything", dtype::bf16, {2}).policy) == "lossless");  // no rules: lossless
  CHECK(policy_name(policy_rules().choose("anything", dtype::u8, {2}).policy) == "raw");

  // Rule strings: first '=' splits; user rules come before a preset.
  policy_rules r;
  r.add(policy_rules::parse_rule("*embed*=int8:tile=128x128", "--rule 1"));
  r.add(policy_rules::parse_rule("*.weight=raw", "--rule 2"));
  r.append(policy_rules::preset("lossless"));
  CHECK(policy_name(r.choose("model.embed_tokens.weight", dtype::bf16, {32000, 4096}).policy) == "int8:tile=128x128");
  CHECK(policy_name(r.choose("model.x.weight", dtype::bf16, {32000, 4096}).policy) == "raw");
  CHECK(r.choose("model.x.weight", dtype::bf16, {32000, 4096}).reason.find("--rule 2") != std::string::npos);
  const auto forced = r.choose("model.embed_ids", dtype::i64, {32000, 4096});  // the rule asks int8, the dtype cannot
  CHECK(forced.policy.stored);
  CHECK(forced.reason.find("I64") != std::string::npos);
  for (const char* bad : {"noequals", "=int8", "*=int9", "*=int8:tile=1"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(policy_rules::parse_rule(bad, "--rule"), error);
  }

  // JSON: filters, the preset, and errors that name the file, the rule and the field.
  const nlohmann::json doc = nlohmann::json::parse(R"({"preset": "int8", "rules": [
      {"pattern": "*mlp*", "dtype": ["bf16", "F16"], "min_rank": 2, "min_elements": 65536, "policy": "int4-g64"},
      {"pattern": "*", "rank": 1, "max_elements": 10, "policy": "lossless"}]})");
  std::string preset;
  policy_rules j = policy_rules::from_json(doc, "rules.json", &preset);
  CHECK(preset == "int8");
  j.append(policy_rules::preset(preset));
  CHECK(policy_name(j.choose("a.mlp.w", dtype::bf16, {512, 512}).policy) == "int4-g64");
  CHECK(policy_name(j.choose("a.mlp.w", dtype::f32, {512, 512}).policy) == "int8");       // dtype filter
  CHECK(policy_name(j.choose("a.mlp.w", dtype::bf16, {128, 128}).policy) == "int8");      // min_elements
  CHECK(policy_name(j.choose("tiny", dtype::bf16, {8}).policy) == "lossless");             // rank 1, <= 10 elements
  CHECK(j.choose("a.mlp.w", dtype::bf16, {512, 512}).reason.find("rules.json rule 0") != std::string::npos);
  auto json_error = [](const char* text) {
    try {
      (void)policy_rules::from_json(nlohmann::json::parse(text), "rules.json");
      return std::string();
    } catch (const error& e) {
      return std::string(e.what());
    }
  };
  CHECK(json_error(R"([])").find("not a JSON object") != std::string::npos);
  CHECK(json_error(R"({"rule": []})").find("unknown field 'rule'") != std::string::npos);
  CHECK(json_error(R"({"rules": {}})").find("'rules' is not an array") != std::string::npos);
  CHECK(json_error(R"({"rules": [{"pattern": "*"}]})").find("rule 0: missing field 'policy'") != std::string::npos);
  CHECK(json_error(R"({"rules": [{"policy": "int9"}]})").find("rule 0, field 'policy'") != std::string::npos);
  CHECK(json_error(R"({"rules": [{"policy": "raw", "dtype": "F33"}]})").find("unknown dtype 'F33'") != std::string::npos);
  CHECK(json_error(R"({"rules": [{"policy": "raw", "rank": -1}]})").find("field 'rank'") != std::string::npos);
  CHECK(json_error(R"({"rules": [{"policy": "raw", "colour": 1}]})").find("field 'colour'") != std::string::npos);
  CHECK(json_error(R"({"preset": 3})").find("'preset'") != std::string::npos);

  scratch_dir dir;
  std::ofstream(dir.file("bad.json")) << "{\"rules\": [";
  try {
    (void)policy_rules::from_file(dir.file("bad.json"));
    FAIL("invalid JSON accepted");
  } catch (const error& e) {
    CHECK(e.code() == status::invalid_argument);
    CHECK(std::string(e.what()).find("bad.json") != std::string::npos);
    CHECK(std::string(e.what()).find("not valid JSON") != std::string::npos);
  }
  CHECK_THROWS_AS(policy_rules::from_file(dir.file("none.json")), error);
}

// ---- whole models ------------------------------------------------------------------------------------

TEST_CASE("model io: safetensors -> container -> safetensors, every policy") {
  TILECODEC_SEEDED_RNG(rng);
  scratch_dir dir;
  const std::string src = dir.file("model.safetensors");
  write_safetensors_model(src, rng());
  for (const char* preset : {"lossless", "int8", "int4", "int8-fused", "int4-fused", "raw"}) {
    CAPTURE(preset);
    tilecodec::host::compress_options opt;
    opt.rules = tilecodec::policy_rules::preset(preset);
    opt.threads = 2;
    opt.sync = false;
    std::size_t events = 0;
    opt.on_progress = [&](const tilecodec::host::progress_event& e) {
      ++events;
      CHECK(e.done_bytes <= e.total_bytes);
    };
    const std::string tcm = dir.file(std::string(preset) + ".tcm");
    const auto report = tilecodec::host::compress_model(src, tcm, opt);
    CHECK(events == report.tensors.size() + 1);
    REQUIRE(report.tensors.size() == 7);
    CHECK(report.container_bytes == fs::file_size(tcm));
    std::map<std::string, std::string> policy;
    for (const auto& t : report.tensors) policy[t.name] = t.policy;
    CHECK(policy["position_ids"] == "raw");
    CHECK(policy["scale_f8"] == "raw");
    CHECK(policy["empty"] == "raw");
    CHECK(policy["layers.0.input_layernorm.weight"] == "raw");
    const std::string p = preset;
    const std::string matrix = p == "int8" ? "int8" : p == "int4" ? "int4-g128" : p == "int8-fused" ? "int8:coder=fixed:order=mma"
                               : p == "int4-fused" ? "int4-g128:coder=fixed:order=mma" : p;
    CHECK(policy["layers.0.attention.q_proj.weight"] == matrix);
    CHECK(policy["layers.0.mlp.up_proj.weight"] == matrix);
    CHECK(policy["embed_tokens.weight"] == (std::string(preset) == "raw" ? "raw" : "lossless"));

    const tilecodec::host::model_reader model(tcm);
    CHECK(model.metadata() == ct::metadata_map{{"format", "pt"}});
    if (p == "int8-fused") {  // the pinned width reaches the stored tensor: 8-bit codes, no escapes
      const auto& e = model.at("layers.0.mlp.up_proj.weight");
      CHECK(e.params.coder == tilecodec::coder::kind::fixed);
      CHECK(e.params.prob_bits == 8);
    }
    tilecodec::host::verify_options vo;
    vo.original = src;
    const auto v = tilecodec::host::verify_model(model, vo);
    CHECK(v.ok());
    for (const auto& t : v.tensors) {
      CAPTURE(t.name);
      CHECK(t.compared);
      CHECK(t.max_error_to_bound <= 1.0);
      if (t.policy.rfind("int", 0) != 0) CHECK(t.exact);
    }

    const std::string back = dir.file(std::string(preset) + ".safetensors");
    tilecodec::host::export_options eo;
    eo.sync = false;
    const auto exported = tilecodec::host::export_safetensors(model, back, eo);
    CHECK(exported.files == std::vector<std::string>{back});
    const st::file orig(src), round(back);
    CHECK(round.metadata() == orig.metadata());
    REQUIRE(round.tensors().size() == orig.tensors().size());
    for (const auto& info : orig.tensors()) {
      CAPTURE(info.name);
      const st::tensor_info& r = round.at(info.name);
      CHECK(r.type == info.type);
      CHECK(r.shape == info.shape);
      const st::byte_view a = orig.data(info), b = round.data(r);
      REQUIRE(a.size == b.size);
      const bool quantized = policy[info.name].rfind("int", 0) == 0;
      if (!quantized) {
        CHECK(std::equal(a.begin(), a.end(), b.begin()));
      } else {
        // Exported values are the dequantized values rounded to the original dtype (half an ulp more).
        const auto& e = model.at(info.name);
        const std::vector<std::uint8_t> blob = model.file().read(e);
        const auto view = ct::open_encoded(e, blob.data(), blob.size(), tcm);
        const auto& l = view.layout();
        const bool is8 = e.params.quant == tilecodec::quant::kind::int8_rowwise;
        double worst = 0;
        for (std::uint64_t i = 0; i < l.elements(); ++i) {
          const std::uint64_t row = i / l.cols, col = i % l.cols;
          float s;
          if (is8) {
            std::uint32_t bits;
            std::memcpy(&bits, view.scales() + 4 * row, 4);
            s = tilecodec::bits_float(bits);
          } else {
            std::uint16_t bits;
            std::memcpy(&bits, view.scales() + 2 * (row * ((l.cols + 127) / 128) + col / 128), 2);
            s = tilecodec::f16_to_float(bits);
          }
          auto load = [&](const std::byte* p) {
            if (info.type == dtype::f32) {
              float f;
              std::memcpy(&f, p + 4 * i, 4);
              return double(f);
            }
            std::uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            return double(info.type == dtype::f16 ? tilecodec::f16_to_float(h) : tilecodec::bf16_to_float(h));
          };
          const double x = load(a.data), y = load(b.data);
          const double ulp_half = info.type == dtype::bf16 ? std::ldexp(std::fabs(y), -8) : info.type == dtype::f16 ? std::ldexp(std::fabs(y), -11) + 3e-8 : 0;
          worst = std::max(worst, std::fabs(x - y) / (tilecodec::host::quantization_bound(s, x, y) + ulp_half));
        }
        CHECK(worst <= 1.0);
      }
    }
  }
}

TEST_CASE("model io: non-finite values under a quantizing policy fall back to lossless") {
  TILECODEC_SEEDED_RNG(rng);
  scratch_dir dir;
  write_safetensors_model(dir.file("nan.safetensors"), rng(), /*with_nan=*/true);
  tilecodec::host::compress_options opt;
  opt.rules = tilecodec::policy_rules::preset("int8");
  opt.sync = false;
  const auto report = tilecodec::host::compress_model(dir.file("nan.safetensors"), dir.file("nan.tcm"), opt);
  REQUIRE(report.warnings.size() == 1);
  CHECK(report.warnings[0].find("layers.0.attention.q_proj.weight") != std::string::npos);
  CHECK(report.warnings[0].find("non-finite") != std::string::npos);
  for (const auto& t : report.tensors)
    if (t.name == "layers.0.attention.q_proj.weight") CHECK(t.policy == "lossless");
  const tilecodec::host::model_reader model(dir.file("nan.tcm"));
  tilecodec::host::verify_options vo;
  vo.original = dir.file("nan.safetensors");
  CHECK(tilecodec::host::verify_model(model, vo).ok());  // NaN payload kept bit for bit
}

TEST_CASE("model io: sharded models in and out; verify finds differences from the original") {
  TILECODEC_SEEDED_RNG(rng);
  scratch_dir dir;
  write_safetensors_model(dir.file("one.safetensors"), rng());
  const st::file one(dir.file("one.safetensors"));
  // Split into two shards with an index.
  fs::create_directories(dir.file("sharded"));
  {
    st::writer a, b;
    nlohmann::json weight_map;
    std::size_t i = 0;
    for (const auto& info : one.tensors()) {
      const st::byte_view bytes = one.data(info);
      const bool first = i++ % 2 == 0;
      (first ? a : b).add(info.name, info.type, info.shape, bytes.data, bytes.size);
      weight_map[info.name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    }
    a.set_metadata("format", "pt");
    b.set_metadata("format", "pt");
    a.write(dir.file("sharded/model-00001-of-00002.safetensors"));
    b.write(dir.file("sharded/model-00002-of-00002.safetensors"));
    std::ofstream(dir.file("sharded/model.safetensors.index.json")) << nlohmann::json{{"metadata", {{"total_size", 1}}}, {"weight_map", weight_map}}.dump();
  }
  tilecodec::host::compress_options opt;
  opt.rules = tilecodec::policy_rules::preset("int8");
  opt.sync = false;
  const auto report = tilecodec::host::compress_model(dir.file("sharded"), dir.file("s.tcm"), opt);
  CHECK(report.tensors.size() == one.tensors().size());
  const tilecodec::host::model_reader model(dir.file("s.tcm"));
  tilecodec::host::verify_options vo;
  vo.original = dir.file("sharded");
  CHECK(tilecodec::host::verify_model(model, vo).ok());
  vo.original = dir.file("one.safetensors");
  CHECK(tilecodec::host::verify_model(model, vo).ok());

  // Export in shards of at most 40 kB: several files, an index, and the same tensors.
  tilecodec::host::export_options eo;
  eo.max_shard_bytes = 40000;
  eo.sync = false;
  const auto exported = tilecodec::host::export_safetensors(model, dir.file("out"), eo);
  CHECK(exported.files.size() >= 3);
  CHECK(exported.files.back() == dir.file("out/model.safetensors.index.json"));
  const st::model back(dir.file("out"));
  CHECK(back.tensor_count() == one.tensors().size());
  CHECK(back.shards().size() == exported.files.size() - 1);
  for (const auto& info : one.tensors()) {
    const st::tensor_info& r = back.at(info.name);
    CHECK(r.shape == info.shape);
    if (model.at(info.name).kind == ct::storage::stored || model.at(info.name).params.quant == tilecodec::quant::kind::lossless) {
      const st::byte_view x = one.data(info), y = back.data(r);
      CHECK(std::equal(x.begin(), x.end(), y.begin(), y.end()));
    }
  }

  // A changed original: verify reports the tensor (mismatch, not corruption), and a missing tensor.
  {
    st::writer w;
    std::vector<std::vector<std::uint8_t>> keep;
    for (const auto& info : one.tensors()) {
      if (info.name == "position_ids") continue;  // missing from this "original"
      const st::byte_view bytes = one.data(info);
      keep.emplace_back(reinterpret_cast<const std::uint8_t*>(bytes.data), reinterpret_cast<const std::uint8_t*>(bytes.data) + bytes.size);
      if (info.name == "embed_tokens.weight") keep.back()[10] ^= 0x01;                          // lossless tensor, one bit
      if (info.name == "layers.0.mlp.up_proj.weight") {                                          // quantized tensor, far off
        float f = 0.5f;
        std::memcpy(keep.back().data() + 4 * 1000, &f, 4);
      }
    }
    std::size_t k = 0;
    for (const auto& info : one.tensors())
      if (info.name != "position_ids") w.add(info.name, info.type, info.shape, keep[k].data(), keep[k].size()), ++k;
    w.write(dir.file("changed.safetensors"));
  }
  vo.original = dir.file("changed.safetensors");
  const auto v = tilecodec::host::verify_model(model, vo);
  CHECK(!v.ok());
  CHECK(v.problems.empty());  // a tensor the original lacks is not counted as missing from the container
  for (const auto& t : v.tensors) {
    CAPTURE(t.name);
    CHECK(t.code == status::success);
    CHECK(t.mismatch == (t.name == "embed_tokens.weight" || t.name == "layers.0.mlp.up_proj.weight"));
  }
  // And the other way: the original has a tensor the container lacks.
  vo.original = dir.file("one.safetensors");
  ct::writer partial(dir.file("partial.tcm"), ct::writer_options{12, false});
  partial.finish();
  const auto w2 = tilecodec::host::verify_model(tilecodec::host::model_reader(dir.file("partial.tcm")), vo);
  CHECK(w2.problems.size() == one.tensors().size());
  CHECK(w2.file_mismatch);
}

TEST_CASE("model io: outputs appear only when complete") {
  TILECODEC_SEEDED_RNG(rng);
  scratch_dir dir;
  write_safetensors_model(dir.file("m.safetensors"), rng());
  tilecodec::host::compress_options opt;
  opt.sync = false;
  opt.on_progress = [](const tilecodec::host::progress_event& e) {
    if (e.tensor_index == 3) throw std::runtime_error("cancelled");
  };
  CHECK_THROWS_AS(tilecodec::host::compress_model(dir.file("m.safetensors"), dir.file("m.tcm"), opt), std::runtime_error);
  CHECK(dir.listing() == std::vector<std::string>{"m.safetensors"});
  opt.on_progress = {};
  (void)tilecodec::host::compress_model(dir.file("m.safetensors"), dir.file("m.tcm"), opt);
  const tilecodec::host::model_reader model(dir.file("m.tcm"));
  tilecodec::host::export_options eo;
  eo.sync = false;
  eo.on_progress = opt.on_progress = [](const tilecodec::host::progress_event& e) {
    if (e.tensor_index == 5) throw std::runtime_error("cancelled");
  };
  CHECK_THROWS_AS(tilecodec::host::export_safetensors(model, dir.file("out.safetensors"), eo), std::runtime_error);
  eo.max_shard_bytes = 20000;
  CHECK_THROWS_AS(tilecodec::host::export_safetensors(model, dir.file("out"), eo), std::runtime_error);
  CHECK(fs::is_empty(dir.file("out")));
  CHECK(dir.listing() == (std::vector<std::string>{"m.safetensors", "m.tcm", "out"}));
  // A corrupt tensor stops an export the same way.
  std::vector<std::uint8_t> img = read_file(dir.file("m.tcm"));
  const ct::entry& e = model.at("embed_tokens.weight");
  img[e.offset + e.size / 2] ^= 4;
  write_file(dir.file("bad.tcm"), img);
  try {
    (void)tilecodec::host::export_safetensors(tilecodec::host::model_reader(dir.file("bad.tcm")), dir.file("bad.safetensors"));
    FAIL("exported a corrupt container");
  } catch (const tilecodec::error& err) {
    CHECK(err.code() == status::checksum_mismatch);
    CHECK(std::string(err.what()).find("embed_tokens.weight") != std::string::npos);
  }
  CHECK(!fs::exists(dir.file("bad.safetensors")));
  // The streaming safetensors writer refuses wrong sizes and unfinished files.
  {
    tilecodec::host::safetensors_stream_writer w(dir.file("s.safetensors"), {{"a", dtype::f32, {2}}, {"b", dtype::u8, {3}}}, {});
    const float a[2] = {1, 2};
    CHECK_THROWS_AS(w.write_next(a, 4), tilecodec::error);
    w.write_next(a, 8);
    CHECK_THROWS_AS(w.finish(), tilecodec::error);
  }
  CHECK(!fs::exists(dir.file("s.safetensors")));
  CHECK(dir.listing() == (std::vector<std::string>{"bad.tcm", "m.safetensors", "m.tcm", "out"}));
}

TEST_CASE("model io: real weights (all-MiniLM-L6-v2) round trip, lossless and int8") {
  const std::string path = std::string(TILECODEC_DATA_DIR) + "/minilm/model.safetensors";
  if (!fs::exists(path)) {
    MESSAGE("skipped: " << path << " not found (run scripts/fetch_weights.sh)");
    return;
  }
  scratch_dir dir;
  for (const char* preset : {"lossless", "int8"}) {
    CAPTURE(preset);
    tilecodec::host::compress_options opt;
    opt.rules = tilecodec::policy_rules::preset(preset);
    opt.sync = false;
    const std::string tcm = dir.file(std::string(preset) + ".tcm"), back = dir.file(std::string(preset) + ".safetensors");
    const auto report = tilecodec::host::compress_model(path, tcm, opt);
    CHECK(report.tensors.size() == 104);
    std::size_t quantized = 0;
    for (const auto& t : report.tensors) {
      if (t.type == dtype::i64) CHECK(t.policy == "raw");
      quantized += t.policy == "int8";
    }
    CHECK(quantized == (std::string(preset) == "int8" ? 36u : 0u));  // 6 layers x (q, k, v, o, up, down)
    CHECK(double(report.container_bytes) < double(report.original_bytes) * (std::string(preset) == "int8" ? 0.6 : 0.86));
    const tilecodec::host::model_reader model(tcm);
    tilecodec::host::export_options eo;
    eo.sync = false;
    (void)tilecodec::host::export_safetensors(model, back, eo);
    const st::file orig(path), round(back);
    REQUIRE(round.tensors().size() == 104);
    for (const auto& info : orig.tensors()) {
      CAPTURE(info.name);
      const st::tensor_info& r = round.at(info.name);
      REQUIRE(r.type == info.type);
      REQUIRE(r.shape == info.shape);
      const st::byte_view a = orig.data(info), b = round.data(r);
      const ct::entry& e = model.at(info.name);
      if (e.kind == ct::storage::stored || e.params.quant == tilecodec::quant::kind::lossless) {
        CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));
      }
    }
    tilecodec::host::verify_options vo;
    vo.original = path;
    const auto v = tilecodec::host::verify_model(model, vo);
    CHECK(v.ok());
    for (const auto& t : v.tensors) {
      CAPTURE(t.name);
      CHECK(t.max_error_to_bound <= 1.0);  // |x - deq| <= scale/2 (1 + 1e-5) + 2^-20 (|x| + |deq|)
    }
  }
}

TEST_CASE("model io: the background writer runs jobs in order and passes on the first failure") {
  std::vector<int> order;
  {
    tilecodec::host::detail::io_worker io(1);
    for (int i = 0; i < 50; ++i) io.push([&order, i] { order.push_back(i); });
    io.finish();
    CHECK(order.size() == 50);
    for (int i = 0; i < 50; ++i) CHECK(order[std::size_t(i)] == i);
    io.push([] { throw tilecodec::error(status::io_error, "disk full"); });
    bool thrown = false;
    try {
      for (int i = 0; i < 10; ++i) io.push([&order] { order.push_back(-1); });
      io.finish();
    } catch (const tilecodec::error& e) {
      thrown = true;
      CHECK(e.code() == status::io_error);
    }
    CHECK(thrown);
    CHECK(std::count(order.begin(), order.end(), -1) == 0);  // nothing after the failure ran
  }
  {
    tilecodec::host::detail::io_worker io(4);  // destroyed with queued jobs: they are dropped, no hang
    for (int i = 0; i < 4; ++i) io.push([] { std::this_thread::sleep_for(std::chrono::milliseconds(5)); });
  }
}
