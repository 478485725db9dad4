// Tests for tilecodec/format/safetensors.hpp: round trips through the writer and reader, one
// malformed input per rule the reader enforces, truncation and corruption at every byte, sharded
// models, and the real all-MiniLM-L6-v2 weights when scripts/fetch_weights.sh has fetched them.
#include <doctest/doctest.h>

#include "common/scratch_dir.hpp"

#include <tilecodec/format/safetensors.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#ifndef TILECODEC_DATA_DIR
#define TILECODEC_DATA_DIR "data"
#endif

namespace st = tilecodec::safetensors;
namespace fs = std::filesystem;
using tilecodec::dtype;
using tilecodec::status;

namespace {

using tilecodec_test::scratch_dir;


std::vector<std::byte> pattern_bytes(std::size_t size, unsigned seed) {
  std::vector<std::byte> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>((i * 131u + seed * 17u + 7u) & 0xffu);
  return bytes;
}

std::vector<std::byte> to_bytes(const std::string& text) {
  std::vector<std::byte> bytes;
  for (const char c : text) bytes.push_back(static_cast<std::byte>(c));
  return bytes;
}

// A file image from header text, its declared length and a zero-filled byte buffer.
std::vector<std::byte> image_with_length(std::uint64_t declared_length, const std::string& header,
                                         std::size_t buffer_size) {
  std::vector<std::byte> bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<std::byte>((declared_length >> (8 * i)) & 0xffu));
  const std::vector<std::byte> text = to_bytes(header);
  bytes.insert(bytes.end(), text.begin(), text.end());
  bytes.resize(bytes.size() + buffer_size, std::byte{0});
  return bytes;
}

std::vector<std::byte> image(const std::string& header, std::size_t buffer_size) {
  return image_with_length(header.size(), header, buffer_size);
}

// The status parse() reports for these bytes, or success.
status parse_status(const std::vector<std::byte>& bytes, std::string* message = nullptr) {
  try {
    (void)st::parse(bytes.data(), bytes.size(), "bad.safetensors");
    return status::success;
  } catch (const tilecodec::error& e) {
    if (message != nullptr) *message = e.what();
    return e.code();
  }
}

// A small valid file: two tensors of different dtypes, a scalar, an empty tensor and metadata.
std::vector<std::byte> small_valid_file() {
  static const std::vector<std::byte> weights = pattern_bytes(2 * 3 * 4, 1);
  static const std::vector<std::byte> bias = pattern_bytes(3 * 2, 2);
  static const std::vector<std::byte> scale = pattern_bytes(4, 3);
  st::writer out;
  out.add("weights", dtype::f32, {2, 3}, weights.data(), weights.size())
      .add("bias", dtype::bf16, {3}, bias.data(), bias.size())
      .add("scale", dtype::f32, {}, scale.data(), scale.size())
      .add("empty", dtype::f16, {0, 5}, nullptr, 0)
      .set_metadata("format", "pt");
  return out.serialize();
}

}  // namespace

TEST_CASE("safetensors: round trip of every dtype, scalars, empty tensors and metadata") {
  struct source_tensor {
    std::string name;
    dtype type;
    std::vector<std::uint64_t> shape;
    std::vector<std::byte> bytes;
  };
  std::vector<source_tensor> sources;
  for (int i = 0; i < tilecodec::dtype_count; ++i) {
    const auto type = static_cast<dtype>(i);
    const std::vector<std::uint64_t> shape{3, 5};
    sources.push_back({std::string("t_") + tilecodec::dtype_name(type), type, shape,
                       pattern_bytes(15 * tilecodec::dtype_size(type), static_cast<unsigned>(i))});
    sources.push_back({std::string("scalar_") + tilecodec::dtype_name(type), type, {},
                       pattern_bytes(tilecodec::dtype_size(type), static_cast<unsigned>(i) + 100)});
  }
  sources.push_back({"empty_1d", dtype::bf16, {0}, {}});
  sources.push_back({"empty_3d", dtype::f32, {4, 0, 3}, {}});
  // A zero dim makes the tensor empty even when the other dims would overflow when multiplied.
  sources.push_back({"empty_huge", dtype::f64, {std::uint64_t{1} << 40, std::uint64_t{1} << 40, 0}, {}});
  sources.push_back({"unicode ñame ✓", dtype::u8, {2}, pattern_bytes(2, 9)});

  st::writer out;
  for (const auto& tensor : sources) {
    out.add(tensor.name, tensor.type, tensor.shape, tensor.bytes.data(), tensor.bytes.size());
  }
  out.set_metadata("format", "pt").set_metadata("note", "ünïcode \"quoted\"").set_metadata("empty", "");

  scratch_dir dir;
  const std::string path = dir.file("round_trip.safetensors");
  out.write(path);

  const st::file in(path);
  CHECK(in.path() == path);
  REQUIRE(in.tensors().size() == sources.size());
  CHECK(in.metadata() == st::metadata_map{{"format", "pt"}, {"note", "ünïcode \"quoted\""}, {"empty", ""}});
  // The writer pads the header so the byte buffer starts 8-byte aligned.
  CHECK((8 + in.contents().header_size()) % 8 == 0);

  for (const auto& source : sources) {
    CAPTURE(source.name);
    const st::tensor_info* info = in.find(source.name);
    REQUIRE(info != nullptr);
    CHECK(info->type == source.type);
    CHECK(info->shape == source.shape);
    CHECK(info->byte_size() == source.bytes.size());
    CHECK(info->begin % tilecodec::dtype_size(source.type) == 0);  // natural alignment from the layout order
    const st::byte_view bytes = in.data(*info);
    REQUIRE(bytes.size == source.bytes.size());
    CHECK(std::equal(bytes.begin(), bytes.end(), source.bytes.begin()));
  }
  CHECK(in.find("t_F32")->element_count() == 15);
  CHECK(in.find("scalar_I64")->element_count() == 1);
  CHECK(in.find("empty_huge")->element_count() == 0);
  CHECK(in.find("missing") == nullptr);
  CHECK_THROWS_AS((void)in.at("missing"), tilecodec::error);

  // File order is byte order, and the layout puts larger elements first.
  const auto& tensors = in.tensors();
  for (std::size_t i = 1; i < tensors.size(); ++i) {
    CHECK(tensors[i - 1].end == tensors[i].begin);
    CHECK(tilecodec::dtype_size(tensors[i - 1].type) >= tilecodec::dtype_size(tensors[i].type));
  }

  // serialize() and write() produce the same bytes.
  const std::vector<std::byte> in_memory = out.serialize();
  const st::byte_view on_disk{in.contents().buffer().data - 8 - in.contents().header_size(),
                              static_cast<std::size_t>(8 + in.contents().header_size()) + in.contents().buffer().size};
  CHECK(std::equal(in_memory.begin(), in_memory.end(), on_disk.begin(), on_disk.end()));
}

TEST_CASE("safetensors: minimal files") {
  SUBCASE("no tensors") {
    const st::writer empty;
    const std::vector<std::byte> bytes = empty.serialize();
    const st::view contents = st::parse(bytes.data(), bytes.size(), "empty");
    CHECK(contents.tensors().empty());
    CHECK(contents.metadata().empty());
    CHECK(contents.buffer().size == 0);
  }
  SUBCASE("only metadata") {
    const std::vector<std::byte> bytes = image(R"({"__metadata__":{"a":"b"}})", 0);
    const st::view contents = st::parse(bytes.data(), bytes.size(), "meta");
    CHECK(contents.tensors().empty());
    CHECK(contents.metadata().at("a") == "b");
  }
  SUBCASE("header padded with spaces, written by hand") {
    const std::vector<std::byte> bytes = image(R"({"x":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}})" "     ", 2);
    CHECK(parse_status(bytes) == status::success);
  }
  SUBCASE("tensors in byte order; empty tensors at the same offset in name order") {
    const std::vector<std::byte> bytes = image(
        R"({"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
        R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
        R"("b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
        4);
    const st::view contents = st::parse(bytes.data(), bytes.size(), "order");
    REQUIRE(contents.tensors().size() == 3);
    CHECK(contents.tensors()[0].name == "a");
    CHECK(contents.tensors()[1].name == "b");
    CHECK(contents.tensors()[2].name == "z");
  }
}

TEST_CASE("safetensors: each malformed input is refused with its status") {
  const std::string good_entry = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  struct bad_case {
    const char* what;
    std::vector<std::byte> bytes;
    status expected;
  };
  const std::vector<bad_case> cases = {
      {"empty input", {}, status::truncated},
      {"shorter than the length field", std::vector<std::byte>(7, std::byte{0}), status::truncated},
      {"header length past the end", image_with_length(100, "{}", 0), status::truncated},
      {"header length over the cap", image_with_length(st::max_header_size + 1, "{}", 0), status::corrupt_header},
      {"header length 2^64-1", image_with_length(~std::uint64_t{0}, "{}", 0), status::corrupt_header},
      {"zero header length", image_with_length(0, "", 0), status::corrupt_header},
      {"header not starting with {", image(" {}", 0), status::corrupt_header},
      {"header is an array", image("[]", 0), status::corrupt_header},
      {"invalid JSON", image(R"({"w": )", 0), status::corrupt_header},
      {"nested too deep", image(R"({"__metadata__":)" + std::string(100, '[') + std::string(100, ']') + "}", 0),
       status::corrupt_header},
      {"garbage after the JSON", image(R"({} x)", 0), status::corrupt_header},
      {"NUL padding", image(std::string("{}\0\0", 4), 0), status::corrupt_header},
      {"text after a NUL", image(std::string("{}\0 x", 5), 0), status::corrupt_header},
      {"invalid UTF-8 in a name", image("{\"\xff\xfe\":" + good_entry + "}", 8), status::corrupt_header},
      {"duplicate tensor name", image(R"({"w":)" + good_entry + R"(,"w":)" + good_entry + "}", 8), status::corrupt_header},
      {"duplicate field", image(R"({"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8), status::corrupt_header},
      {"duplicate __metadata__", image(R"({"__metadata__":{},"__metadata__":{}})", 0), status::corrupt_header},
      {"duplicate metadata key", image(R"({"__metadata__":{"k":"a","k":"b"}})", 0), status::corrupt_header},
      {"metadata not an object", image(R"({"__metadata__":"pt"})", 0), status::corrupt_header},
      {"metadata value not a string", image(R"({"__metadata__":{"total":12}})", 0), status::corrupt_header},
      {"metadata null", image(R"({"__metadata__":null})", 0), status::corrupt_header},
      {"entry not an object", image(R"({"w":[1,2]})", 0), status::corrupt_header},
      {"missing dtype", image(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", 8), status::corrupt_header},
      {"missing shape", image(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", 8), status::corrupt_header},
      {"missing data_offsets", image(R"({"w":{"dtype":"F32","shape":[2]}})", 8), status::corrupt_header},
      {"unexpected field", image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8), status::corrupt_header},
      {"dtype not a string", image(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8), status::corrupt_header},
      {"unknown dtype", image(R"({"w":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})", 8), status::unsupported},
      {"lower-case dtype", image(R"({"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", 8), status::unsupported},
      {"shape not an array", image(R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8), status::corrupt_header},
      {"negative dim", image(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), status::corrupt_header},
      {"fractional dim", image(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8), status::corrupt_header},
      {"dim past 2^64", image(R"({"w":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}})", 8), status::corrupt_header},
      {"string dim", image(R"({"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", 8), status::corrupt_header},
      {"element count overflows", image(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8), status::overflow},
      {"byte size overflows", image(R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8), status::overflow},
      {"data_offsets not an array", image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":8}})", 8), status::corrupt_header},
      {"one offset", image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8]}})", 8), status::corrupt_header},
      {"three offsets", image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", 8), status::corrupt_header},
      {"negative offset", image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8), status::corrupt_header},
      {"begin after end", image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), status::corrupt_header},
      {"size does not match shape", image(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), status::corrupt_header},
      {"end past the buffer", image(R"({"w":)" + good_entry + "}", 4), status::truncated},
      {"huge offsets", image(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551614,18446744073709551615]}})", 8), status::truncated},
      {"overlapping tensors",
       image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
       status::corrupt_header},
      {"same bytes twice",
       image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
       status::corrupt_header},
      {"empty tensor inside another",
       image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", 8),
       status::corrupt_header},
      {"hole at the start", image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), status::corrupt_header},
      {"hole between tensors",
       image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12),
       status::corrupt_header},
      {"trailing bytes", image(R"({"w":)" + good_entry + "}", 9), status::corrupt_header},
      {"bytes but no tensors", image("{}", 1), status::corrupt_header},
  };
  for (const bad_case& bad : cases) {
    const std::string what = bad.what;
    CAPTURE(what);
    std::string message;
    CHECK(parse_status(bad.bytes, &message) == bad.expected);
    CHECK(message.find("bad.safetensors") != std::string::npos);  // every message names the file
  }
}

TEST_CASE("safetensors: error messages name the file, the tensor and the field") {
  std::string message;
  const std::string unknown_dtype = R"({"w":{"dtype":"Q3","shape":[1],"data_offsets":[0,1]}})";
  REQUIRE(parse_status(image(unknown_dtype, 1), &message) == status::unsupported);
  CHECK(message.find("bad.safetensors") != std::string::npos);
  CHECK(message.find("'w'") != std::string::npos);
  CHECK(message.find("'dtype'") != std::string::npos);
  CHECK(message.find("'Q3'") != std::string::npos);

  const std::string wrong_size = R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
  REQUIRE(parse_status(image(wrong_size, 8), &message) == status::corrupt_header);
  CHECK(message.find("'w'") != std::string::npos);
  CHECK(message.find("'data_offsets'") != std::string::npos);

  REQUIRE(parse_status(image(R"({"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8), &message) ==
          status::corrupt_header);
  CHECK(message.find("'w'") != std::string::npos);
  CHECK(message.find("duplicate key 'dtype'") != std::string::npos);

  const std::string overlap = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  REQUIRE(parse_status(image(overlap, 12), &message) == status::corrupt_header);
  CHECK(message.find("'a'") != std::string::npos);
  CHECK(message.find("'b'") != std::string::npos);
}

TEST_CASE("safetensors: every truncation throws and every one-byte corruption is handled") {
  const std::vector<std::byte> whole = small_valid_file();
  REQUIRE(parse_status(whole) == status::success);
  for (std::size_t length = 0; length < whole.size(); ++length) {
    CAPTURE(length);
    // A copy of exactly `length` bytes, so AddressSanitizer sees any read past the end.
    const std::vector<std::byte> prefix(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(length));
    CHECK(parse_status(prefix) != status::success);
  }
  // Each byte replaced by a few values: the parser may accept (a changed data byte) or refuse, but
  // never crash or read out of bounds (ASan/UBSan builds check that).
  std::size_t accepted = 0;
  for (std::size_t at = 0; at < whole.size(); ++at) {
    for (const unsigned value : {0x00u, 0x20u, 0x7bu, 0x7du, 0xffu, static_cast<unsigned>(whole[at]) ^ 1u}) {
      std::vector<std::byte> damaged = whole;
      damaged[at] = static_cast<std::byte>(value);
      if (parse_status(damaged) == status::success) ++accepted;
    }
  }
  CHECK(accepted > 0);  // data bytes are not checked (the spec has no checksum), so some changes pass
}

TEST_CASE("safetensors: file errors") {
  scratch_dir dir;
  SUBCASE("missing file") {
    try {
      st::file missing(dir.file("nope.safetensors"));
      FAIL("opened a missing file");
    } catch (const tilecodec::error& e) {
      CHECK(e.code() == status::io_error);
      CHECK(std::string(e.what()).find("nope.safetensors") != std::string::npos);
    }
  }
  SUBCASE("a directory") {
    CHECK_THROWS_AS(st::file(dir.path().string()), tilecodec::error);
  }
  SUBCASE("empty file") {
    std::ofstream(dir.file("empty.safetensors")).close();
    try {
      st::file empty(dir.file("empty.safetensors"));
      FAIL("opened an empty file");
    } catch (const tilecodec::error& e) {
      CHECK(e.code() == status::truncated);
    }
  }
  SUBCASE("truncated on disk") {
    const std::vector<std::byte> whole = small_valid_file();
    const std::string path = dir.file("cut.safetensors");
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(whole.data()), static_cast<std::streamsize>(whole.size() - 1));
    try {
      st::file cut(path);
      FAIL("opened a truncated file");
    } catch (const tilecodec::error& e) {
      CHECK(e.code() == status::truncated);
      CHECK(std::string(e.what()).find(path) != std::string::npos);
    }
  }
}

TEST_CASE("safetensors: writer refuses bad tensors and never leaves a partial file") {
  const std::vector<std::byte> four = pattern_bytes(4, 0);
  st::writer out;
  out.add("a", dtype::f32, {1}, four.data(), four.size());
  const auto code_of = [&](auto&& action) {
    try {
      action();
      return status::success;
    } catch (const tilecodec::error& e) {
      return e.code();
    }
  };
  CHECK(code_of([&] { out.add("a", dtype::f32, {1}, four.data(), 4); }) == status::invalid_argument);
  CHECK(code_of([&] { out.add("__metadata__", dtype::f32, {1}, four.data(), 4); }) == status::invalid_argument);
  CHECK(code_of([&] { out.add("b", dtype::f32, {2}, four.data(), 4); }) == status::invalid_argument);
  CHECK(code_of([&] { out.add("c", dtype::f32, {1}, nullptr, 4); }) == status::invalid_argument);
  CHECK(code_of([&] { out.add("d", static_cast<dtype>(200), {1}, four.data(), 4); }) == status::invalid_argument);
  CHECK(code_of([&] { out.add("e", dtype::f64, {std::uint64_t{1} << 62}, four.data(), 4); }) == status::overflow);

  scratch_dir dir;
  const std::string path = dir.file("out.safetensors");
  SUBCASE("a name that is not UTF-8 fails before anything is written") {
    out.add("\xff", dtype::u8, {1}, four.data(), 1);
    CHECK(code_of([&] { out.write(path); }) == status::invalid_argument);
    CHECK(fs::is_empty(dir.path()));
  }
  SUBCASE("a directory that does not exist") {
    CHECK(code_of([&] { out.write(dir.file("no/such/dir.safetensors")); }) == status::io_error);
  }
  SUBCASE("rewriting replaces the old file and leaves no temporary file") {
    out.write(path);
    out.add("b", dtype::u8, {4}, four.data(), 4);
    out.write(path);
    const st::file in(path);
    CHECK(in.tensors().size() == 2);
    CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);
  }
}

TEST_CASE("safetensors: sharded model through model.safetensors.index.json") {
  scratch_dir dir;
  const std::vector<std::byte> a = pattern_bytes(16, 1), b = pattern_bytes(8, 2), c = pattern_bytes(6, 3);
  st::writer first;
  first.add("layer.0.weight", dtype::f32, {2, 2}, a.data(), a.size()).set_metadata("format", "pt");
  first.write(dir.file("model-00001-of-00002.safetensors"));
  st::writer second;
  second.add("layer.1.weight", dtype::bf16, {4}, b.data(), b.size())
      .add("layer.1.bias", dtype::f16, {3}, c.data(), c.size());
  second.write(dir.file("model-00002-of-00002.safetensors"));

  const auto write_index = [&](const std::string& text) {
    std::ofstream(dir.file("model.safetensors.index.json")) << text;
  };
  const std::string good_index = R"({"metadata":{"total_size":30},"weight_map":{
      "layer.1.bias":"model-00002-of-00002.safetensors",
      "layer.0.weight":"model-00001-of-00002.safetensors",
      "layer.1.weight":"model-00002-of-00002.safetensors"}})";

  SUBCASE("one lookup across shards, opened by directory or by index path") {
    write_index(good_index);
    for (const std::string& path : {dir.path().string(), dir.file("model.safetensors.index.json")}) {
      const st::model model(path);
      REQUIRE(model.shards().size() == 2);
      CHECK(model.shards()[0].path().find("00001") != std::string::npos);  // shards in name order
      CHECK(model.tensor_count() == 3);
      CHECK(model.index_metadata().at("total_size") == 30);
      const st::byte_view bias = model.data(model.at("layer.1.bias"));
      CHECK(std::equal(bias.begin(), bias.end(), c.begin(), c.end()));
      const st::byte_view weight = model.data(model.at("layer.0.weight"));
      CHECK(std::equal(weight.begin(), weight.end(), a.begin(), a.end()));
      CHECK(model.find("layer.2.weight") == nullptr);
      std::size_t visited = 0;
      for (const st::file& shard : model.shards()) visited += shard.tensors().size();
      CHECK(visited == 3);
    }
  }
  SUBCASE("single file opened by directory") {
    fs::copy_file(dir.file("model-00001-of-00002.safetensors"), dir.file("model.safetensors"));
    const st::model model(dir.path().string());
    CHECK(model.shards().size() == 1);
    CHECK(model.tensor_count() == 1);
    CHECK(model.index_metadata().is_null());
    CHECK(model.shards()[0].metadata().at("format") == "pt");
  }
  SUBCASE("inconsistent or hostile indexes are refused") {
    const auto status_of_index = [&](const std::string& text) {
      write_index(text);
      try {
        const st::model model(dir.path().string());
        return status::success;
      } catch (const tilecodec::error& e) {
        return e.code();
      }
    };
    CHECK(status_of_index(good_index) == status::success);
    CHECK(status_of_index("[]") == status::corrupt_header);
    CHECK(status_of_index("{") == status::corrupt_header);
    CHECK(status_of_index(R"({"metadata":{}})") == status::corrupt_header);  // no weight_map
    CHECK(status_of_index(R"({"weight_map":{"layer.0.weight":1}})") == status::corrupt_header);
    // A tensor the shard holds is missing from the index.
    CHECK(status_of_index(R"({"weight_map":{"layer.0.weight":"model-00001-of-00002.safetensors",
        "layer.1.weight":"model-00002-of-00002.safetensors"}})") == status::corrupt_header);
    // The index maps a tensor to a shard that does not hold it.
    CHECK(status_of_index(R"({"weight_map":{"layer.0.weight":"model-00001-of-00002.safetensors",
        "layer.1.weight":"model-00001-of-00002.safetensors",
        "layer.1.bias":"model-00002-of-00002.safetensors"}})") == status::corrupt_header);
    CHECK(status_of_index(R"({"weight_map":{"layer.0.weight":"a.safetensors","layer.0.weight":"a.safetensors"}})") ==
          status::corrupt_header);
    CHECK(status_of_index(R"({"weight_map":{"x":"../model-00001-of-00002.safetensors"}})") == status::corrupt_header);
    CHECK(status_of_index(R"({"weight_map":{"x":"/etc/passwd"}})") == status::corrupt_header);
    CHECK(status_of_index(R"({"weight_map":{"x":""}})") == status::corrupt_header);
    CHECK(status_of_index(R"({"weight_map":{"x":"missing.safetensors"}})") == status::io_error);
  }
}

TEST_CASE("safetensors: real weights (all-MiniLM-L6-v2)") {
  const std::string path = std::string(TILECODEC_DATA_DIR) + "/minilm/model.safetensors";
  if (!fs::exists(path)) {
    MESSAGE("skipped: " << path << " is missing; run scripts/fetch_weights.sh");
    return;
  }
  const st::file model(path);
  MESSAGE(path << ": " << model.tensors().size() << " tensors, header " << model.contents().header_size()
               << " bytes, memory mapped: " << model.memory_mapped());
  CHECK(model.metadata().at("format") == "pt");

  std::uint64_t parameters = 0;
  std::set<std::string> dtypes;
  for (const st::tensor_info& tensor : model.tensors()) {
    parameters += tensor.element_count();
    dtypes.insert(tilecodec::dtype_name(tensor.type));
  }
  MESSAGE("parameters: " << parameters);
  CHECK(parameters > 22'500'000);
  CHECK(parameters < 23'000'000);
  CHECK(dtypes == std::set<std::string>{"F32", "I64"});  // I64: the embeddings.position_ids buffer

  const st::tensor_info& words = model.at("embeddings.word_embeddings.weight");
  CHECK(words.type == dtype::f32);
  CHECK(words.shape == std::vector<std::uint64_t>{30522, 384});
  for (int layer = 0; layer < 6; ++layer) {
    CHECK(model.find("encoder.layer." + std::to_string(layer) + ".attention.self.query.weight") != nullptr);
  }
  // position_ids holds 0, 1, ..., 511 as little-endian int64.
  const st::byte_view positions = model.data(model.at("embeddings.position_ids"));
  REQUIRE(positions.size == 512 * 8);
  std::int64_t last = 0;
  std::memcpy(&last, positions.data + 511 * 8, 8);
  CHECK(last == 511);

  // Rewriting keeps every tensor bit-exact.
  scratch_dir dir;
  st::writer out;
  for (const st::tensor_info& tensor : model.tensors()) {
    const st::byte_view bytes = model.data(tensor);
    out.add(tensor.name, tensor.type, tensor.shape, bytes.data, bytes.size);
  }
  for (const auto& [key, value] : model.metadata()) out.set_metadata(key, value);
  out.write(dir.file("copy.safetensors"));
  const st::file copy(dir.file("copy.safetensors"));
  REQUIRE(copy.tensors().size() == model.tensors().size());
  for (const st::tensor_info& tensor : model.tensors()) {
    const st::byte_view original = model.data(tensor);
    const st::byte_view rewritten = copy.data(copy.at(tensor.name));
    CHECK(std::equal(original.begin(), original.end(), rewritten.begin(), rewritten.end()));
  }
}
