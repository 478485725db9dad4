// Tests of the `tilecodec` command-line tool (examples/cli/tilecodec.cpp), run as a process:
// exit codes, --json output, no partial outputs on failure, and a full round trip.
// The binary comes from TILECODEC_CLI (environment) or TILECODEC_CLI_PATH (set by CMake when the
// tool is built); without either, these cases say "skipped".
#include <doctest/doctest.h>

#include "common/scratch_dir.hpp"

#include <tilecodec/format/container.hpp>
#include <tilecodec/format/safetensors.hpp>
#include <tilecodec/host/synthetic.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/wait.h>
#define TC_TEST_POSIX 1
#else
#define TC_TEST_POSIX 0
#endif

#include "common/seed.hpp"

namespace fs = std::filesystem;
namespace st = tilecodec::safetensors;
using tilecodec::dtype;

namespace {

using tilecodec_test::scratch_dir;

std::string cli_path() {
  if (const char* env = std::getenv("TILECODEC_CLI")) return env;
#ifdef TILECODEC_CLI_PATH
  return TILECODEC_CLI_PATH;
#else
  return "";
#endif
}


struct run_result {
  int code = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs the tool with `args` (already shell-quoted where needed), capturing stdout and stderr.
run_result run(const scratch_dir& dir, const std::string& args) {
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  const std::string cmd = "'" + cli_path() + "' " + args + " >'" + out + "' 2>'" + err + "'";
  const int raw = std::system(cmd.c_str());
  run_result r;
#if TC_TEST_POSIX
  r.code = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
#else
  r.code = raw;
#endif
  r.out = slurp(out);
  r.err = slurp(err);
  fs::remove(out);
  fs::remove(err);
  return r;
}

std::string q(const std::string& s) { return "'" + s + "'"; }

void write_model(const std::string& path, std::uint64_t seed) {
  tilecodec::host::synthetic_params p;
  p.seed = seed;
  const std::vector<float> w = tilecodec::host::synthetic_weights(256, 128, p);
  const std::vector<std::uint16_t> a = tilecodec::host::to_half_bits(w, dtype::bf16);
  p.seed = seed + 1;
  const std::vector<float> m = tilecodec::host::synthetic_weights(128, 256, p);
  const std::vector<std::int64_t> ids{1, 2, 3, 4};
  const std::vector<float> norm(128, 1.0f);
  st::writer out;
  out.add("layers.0.self_attn.q_proj.weight", dtype::bf16, {256, 128}, a.data(), a.size() * 2)
      .add("layers.0.mlp.down_proj.weight", dtype::f32, {128, 256}, m.data(), m.size() * 4)
      .add("layers.0.input_layernorm.weight", dtype::f32, {128}, norm.data(), norm.size() * 4)
      .add("position_ids", dtype::i64, {1, 4}, ids.data(), ids.size() * 8)
      .set_metadata("format", "pt");
  out.write(path);
}

#define REQUIRE_CLI()                                                       \
  if (cli_path().empty() || !fs::exists(cli_path())) {                      \
    MESSAGE("skipped: the tilecodec binary was not built (needs CLI11)");  \
    return;                                                                 \
  }

}  // namespace

TEST_CASE("cli: help, usage errors and exit codes") {
  REQUIRE_CLI();
  scratch_dir dir;
  run_result r = run(dir, "--help");
  CHECK(r.code == 0);
  CHECK(r.out.find("Exit codes") != std::string::npos);
  CHECK(r.out.find("tilecodec compress model.safetensors model.tcm") != std::string::npos);
  r = run(dir, "compress --help");
  CHECK(r.code == 0);
  CHECK(r.out.find("Example") != std::string::npos);
  CHECK(run(dir, "").code == 2);                       // no subcommand
  CHECK(run(dir, "frobnicate").code == 2);             // unknown subcommand
  CHECK(run(dir, "compress only-one-arg").code == 2);  // missing output
  CHECK(run(dir, "--version").code == 0);

  write_model(dir.file("m.safetensors"), 7);
  r = run(dir, "compress --rule nonsense " + q(dir.file("m.safetensors")) + " " + q(dir.file("x.tcm")));
  CHECK(r.code == 2);
  CHECK(r.err.find("PATTERN=POLICY") != std::string::npos);
  CHECK(run(dir, "compress --rule '*=int9' " + q(dir.file("m.safetensors")) + " " + q(dir.file("x.tcm"))).code == 2);
  CHECK(run(dir, "compress --preset zstd " + q(dir.file("m.safetensors")) + " " + q(dir.file("x.tcm"))).code == 2);
  CHECK(run(dir, "compress --align 100 " + q(dir.file("m.safetensors")) + " " + q(dir.file("x.tcm"))).code == 2);
  std::ofstream(dir.file("bad.json")) << "{\"rules\": [{\"pattern\": \"*\", ";
  r = run(dir, "--json compress --config " + q(dir.file("bad.json")) + " " + q(dir.file("m.safetensors")) + " " + q(dir.file("x.tcm")));
  CHECK(r.code == 2);
  CHECK(r.err.find("not valid JSON") != std::string::npos);
  const nlohmann::json err = nlohmann::json::parse(r.out);
  CHECK(err["error"]["exit_code"] == 2);
  CHECK(run(dir, "compress " + q(dir.file("missing.safetensors")) + " " + q(dir.file("x.tcm"))).code == 3);
  std::ofstream(dir.file("junk.safetensors")) << "this is not a safetensors file";
  CHECK(run(dir, "compress " + q(dir.file("junk.safetensors")) + " " + q(dir.file("x.tcm"))).code == 4);
  CHECK(!fs::exists(dir.file("x.tcm")));
  CHECK(dir.listing() == (std::vector<std::string>{"bad.json", "junk.safetensors", "m.safetensors"}));
}

TEST_CASE("cli: compress, inspect, verify, decompress round trip with --json") {
  REQUIRE_CLI();
  TILECODEC_SEEDED_RNG(rng);
  scratch_dir dir;
  const std::string src = dir.file("m.safetensors"), tcm = dir.file("m.tcm"), back = dir.file("back.safetensors");
  write_model(src, rng());
  run_result r = run(dir, "--json --threads 2 compress --preset int8 --rule '*down_proj*=lossless' " + q(src) + " " + q(tcm));
  REQUIRE(r.code == 0);
  CHECK(r.err.empty());  // no progress bar when stderr is not a terminal
  nlohmann::json j = nlohmann::json::parse(r.out);
  CHECK(j["command"] == "compress");
  CHECK(j["tensors"].size() == 4);
  std::map<std::string, std::string> policy;
  for (const auto& t : j["tensors"]) policy[t["name"]] = t["policy"];
  CHECK(policy["layers.0.self_attn.q_proj.weight"] == "int8");
  CHECK(policy["layers.0.mlp.down_proj.weight"] == "lossless");  // the --rule wins over the preset
  CHECK(policy["layers.0.input_layernorm.weight"] == "raw");       // small: raw
  CHECK(policy["position_ids"] == "raw");
  CHECK(j["container_bytes"].get<std::uint64_t>() == fs::file_size(tcm));

  // Output exists: refused without --force, accepted with it; --progress draws on stderr.
  CHECK(run(dir, "compress " + q(src) + " " + q(tcm)).code == 2);
  r = run(dir, "compress --force --progress --preset int8 --rule '*down_proj*=lossless' " + q(src) + " " + q(tcm));
  CHECK(r.code == 0);
  CHECK(r.err.find("compress [") != std::string::npos);
  CHECK(r.out.find("int8") != std::string::npos);
  CHECK(run(dir, "compress -f " + q(src) + " " + q(src)).code == 2);  // output is the input

  r = run(dir, "inspect " + q(tcm));
  CHECK(r.code == 0);
  CHECK(r.out.find("bits/weight") != std::string::npos);
  CHECK(r.out.find("layers.0.self_attn.q_proj.weight") != std::string::npos);
  r = run(dir, "inspect --json " + q(tcm));
  j = nlohmann::json::parse(r.out);
  CHECK(j["tensors"].size() == 4);
  CHECK(j["metadata"]["format"] == "pt");
  r = run(dir, "inspect --preset int4 " + q(src));  // a dry run on the safetensors model
  CHECK(r.code == 0);
  CHECK(r.out.find("int4-g128") != std::string::npos);

  r = run(dir, "--json verify " + q(tcm) + " --against " + q(src));
  CHECK(r.code == 0);
  j = nlohmann::json::parse(r.out);
  CHECK(j["ok"] == true);
  CHECK(j["worst_error_to_bound"].get<double>() <= 1.0);
  CHECK(run(dir, "verify -v " + q(tcm)).code == 0);

  r = run(dir, "decompress " + q(tcm) + " " + q(back));
  CHECK(r.code == 0);
  const st::file a(src), b(back);
  CHECK(b.tensors().size() == 4);
  for (const char* name : {"position_ids", "layers.0.input_layernorm.weight"}) {
    const st::byte_view x = a.data(a.at(name)), y = b.data(b.at(name));
    CHECK(std::equal(x.begin(), x.end(), y.begin(), y.end()));
  }
  r = run(dir, "decompress --shard-size 100kB " + q(tcm) + " " + q(dir.file("shards")));
  CHECK(r.code == 0);
  CHECK(fs::exists(dir.file("shards/model.safetensors.index.json")));
  CHECK(st::model(dir.file("shards")).tensor_count() == 4);

  // Against a different original: exit 1 (differs), not 4 (corrupt).
  write_model(dir.file("other.safetensors"), rng() + 99);
  r = run(dir, "verify " + q(tcm) + " --against " + q(dir.file("other.safetensors")));
  CHECK(r.code == 1);
  CHECK(r.err.find("q_proj") != std::string::npos);
}

TEST_CASE("cli: corrupt and truncated containers give exit 4 and no output") {
  REQUIRE_CLI();
  TILECODEC_SEEDED_RNG(rng);
  scratch_dir dir;
  const std::string src = dir.file("m.safetensors"), tcm = dir.file("m.tcm");
  write_model(src, rng());
  REQUIRE(run(dir, "compress " + q(src) + " " + q(tcm)).code == 0);
  std::vector<char> good;
  {
    std::ifstream in(tcm, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const tilecodec::container::file f(tcm);
  auto write_image = [&](const std::vector<char>& bytes) {
    std::ofstream out(dir.file("bad.tcm"), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  };
  struct corruption {
    const char* what;
    std::vector<char> bytes;
  };
  std::vector<corruption> cases;
  cases.push_back({"truncated", std::vector<char>(good.begin(), good.begin() + std::ptrdiff_t(good.size() / 2))});
  cases.push_back({"truncated to the preamble", std::vector<char>(good.begin(), good.begin() + 64)});
  cases.push_back({"empty", {}});
  auto flipped = good;
  flipped[0] = 'Z';
  cases.push_back({"magic", flipped});
  flipped = good;
  flipped[std::size_t(f.at("layers.0.mlp.down_proj.weight").offset + 1000)] ^= 0x08;
  cases.push_back({"blob bit flip", flipped});
  flipped = good;
  flipped[std::size_t(f.contents().layout().index_offset + 70)] ^= 0x01;
  cases.push_back({"index bit flip", flipped});
  for (const auto& c : cases) {
    CAPTURE(c.what);
    write_image(c.bytes);
    run_result r = run(dir, "verify " + q(dir.file("bad.tcm")));
    CHECK(r.code == 4);
    CHECK(r.err.find("bad.tcm") != std::string::npos);
    r = run(dir, "decompress " + q(dir.file("bad.tcm")) + " " + q(dir.file("out.safetensors")));
    CHECK(r.code == 4);
    CHECK(!fs::exists(dir.file("out.safetensors")));
    r = run(dir, "--json inspect " + q(dir.file("bad.tcm")));
    if (std::string(c.what) != "blob bit flip") {  // inspect reads the index only
      CHECK(r.code == 4);
      CHECK(nlohmann::json::parse(r.out)["error"]["exit_code"] == 4);
    }
  }
  // A blob flip names the tensor.
  write_image(cases[4].bytes);
  const run_result r = run(dir, "verify " + q(dir.file("bad.tcm")));
  CHECK(r.err.find("layers.0.mlp.down_proj.weight") != std::string::npos);
  CHECK(r.err.find("checksum") != std::string::npos);
  // Version from the future: exit 5.
  auto future = good;
  future[4] = 9;
  write_image(future);
  CHECK(run(dir, "verify " + q(dir.file("bad.tcm"))).code == 5);
  CHECK(dir.listing() == (std::vector<std::string>{"bad.tcm", "m.safetensors", "m.tcm"}));
}

TEST_CASE("cli: synthetic model and bench") {
  REQUIRE_CLI();
  scratch_dir dir;
  run_result r = run(dir, "synthetic --size 3MB --hidden 128 --intermediate 256 --vocab 1000 " + q(dir.file("syn.safetensors")));
  REQUIRE(r.code == 0);
  const st::file syn(dir.file("syn.safetensors"));
  CHECK(syn.find("model.layers.0.self_attn.q_proj.weight") != nullptr);
  CHECK(syn.find("lm_head.weight") != nullptr);
  r = run(dir, "--json bench -n 1 --tmp " + q(dir.file("")) + " --preset int8 " + q(dir.file("syn.safetensors")));
  REQUIRE(r.code == 0);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  CHECK(j["codec_total"]["decode_mb_per_s"].get<double>() > 0);
  CHECK(j["files"]["load_container_seconds"].get<double>() > 0);
  CHECK(j["codec"].contains("int8"));
  CHECK(dir.listing() == std::vector<std::string>{"syn.safetensors"});  // bench cleans up
}

TEST_CASE("cli: index fields that lie (checksums fixed up) give clear errors and exit codes") {
  REQUIRE_CLI();
  TILECODEC_SEEDED_RNG(rng);
  namespace ct = tilecodec::container;
  scratch_dir dir;
  const std::string src = dir.file("m.safetensors"), tcm = dir.file("m.tcm");
  write_model(src, rng());
  REQUIRE(run(dir, "compress " + q(src) + " " + q(tcm)).code == 0);
  std::vector<std::uint8_t> good;
  {
    std::ifstream in(tcm, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // Edits record fields of the index, then recomputes the index and preamble checksums.
  auto edited = [&](int record, int offset, const void* value, std::size_t bytes) {
    std::vector<std::uint8_t> img = good;
    ct::preamble p = ct::parse_preamble(img.data(), img.size(), img.size(), "m.tcm");
    std::uint8_t* r = img.data() + p.index_offset + ct::index_header_bytes + std::size_t(record) * ct::tensor_record_bytes;
    std::memcpy(r + offset, value, bytes);
    p.index_checksum = ct::checksum(img.data() + p.index_offset, p.index_bytes);
    ct::writer::write_preamble(p, img.data());
    std::ofstream out(dir.file("bad.tcm"), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(img.data()), static_cast<std::streamsize>(img.size()));
  };
  const ct::file f(tcm);
  // Record 0 is the first tensor in file order.
  const std::string first = f.tensors()[0].name, second = f.tensors()[1].name;
  std::uint8_t name_field[16];
  {
    ct::preamble p = ct::parse_preamble(good.data(), good.size(), good.size(), "m.tcm");
    std::memcpy(name_field, good.data() + p.index_offset + ct::index_header_bytes, 16);
  }
  struct expectation {
    const char* what;
    int code;
    std::vector<std::string> words;
  };
  const std::uint8_t bad_dtype = 42;
  const std::uint64_t overlap = f.tensors()[0].offset, huge = ~std::uint64_t(0) - 100;
  const std::uint64_t wrong_dim = 3;
  std::vector<std::pair<expectation, std::function<void()>>> cases = {
      {{"duplicate name", 4, {"duplicate tensor name", first}}, [&] { edited(1, 0, name_field, 16); }},
      {{"unknown dtype", 5, {second, "dtype", "42"}}, [&] { edited(1, 16, &bad_dtype, 1); }},
      {{"overlapping offsets", 4, {second, "data_offset", "overlaps"}}, [&] { edited(1, 104, &overlap, 8); }},
      {{"size overflow", 4, {second, "overflows"}}, [&] { edited(1, 112, &huge, 8); }},
      {{"shape product", 4, {first, "data_bytes", "needs 24"}}, [&] { edited(0, 48, &wrong_dim, 8); }},  // [1, 4] I64 -> [1, 3]
  };
  for (auto& c : cases) {
    CAPTURE(c.first.what);
    c.second();
    for (const char* cmd : {"verify ", "inspect ", "decompress "}) {
      CAPTURE(cmd);
      const std::string extra = std::string(cmd) == "decompress " ? " " + q(dir.file("out.safetensors")) : "";
      const run_result r = run(dir, std::string(cmd) + q(dir.file("bad.tcm")) + extra);
      CHECK(r.code == c.first.code);
      CHECK(r.err.find("bad.tcm") != std::string::npos);
      for (const auto& w : c.first.words) CHECK(r.err.find(w) != std::string::npos);
      CHECK(!fs::exists(dir.file("out.safetensors")));
    }
  }
}
