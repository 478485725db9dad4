// Example 01: compress a model's weights with the default policies, verify the round trip,
// and print a table of ratio and host speed per tensor.
//
//   example_01_compress_model [model.safetensors] [--synthetic] [--quick] [--per-tensor]
//
// With a safetensors file (default: data/minilm/model.safetensors, fetched by
// scripts/fetch_weights.sh) every floating-point matrix is compressed three ways: lossless
// bf16, int8 per row, int4 per group of 128. Without one it uses seeded synthetic weights with
// Llama-8B shapes (--quick: a quarter of each dimension, for CI).
#include <tilecodec/format/safetensors.hpp>
#include <tilecodec/host/synthetic.hpp>
#include <tilecodec/tilecodec.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace tilecodec;

namespace {

struct matrix {
  std::string name;
  std::vector<std::uint64_t> shape;
  std::vector<std::uint16_t> bf16;  // the weights as bf16 (real fp32 weights are rounded once)
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct totals {
  double elements = 0, bytes = 0, encode_s = 0, decode_s = 0, entropy_bits = 0;
};

// Encodes one matrix with one policy, decodes it, checks it, returns false on a mismatch.
bool run_one(const matrix& m, const char* label, const format_params& p, totals& sum, bool print) {
  host::encode_stats st;
  auto t0 = std::chrono::steady_clock::now();
  const encoded_tensor enc = host::encode(m.bf16.data(), dtype::bf16, m.shape, p, {}, &st);
  const double enc_s = seconds_since(t0);
  const std::uint64_t n = m.bf16.size();
  host::tensor_decoder dec(enc.view());
  bool ok = dec.state() == status::success;
  double dec_s = 0;
  if (p.quant == quant::kind::lossless) {
    std::vector<std::uint16_t> back(n);
    t0 = std::chrono::steady_clock::now();
    ok = ok && dec.decode(back.data(), dtype::bf16, n * 2, 0) == status::success;
    dec_s = seconds_since(t0);
    ok = ok && back == m.bf16;  // bit-exact
  } else {
    std::vector<float> back(n);
    t0 = std::chrono::steady_clock::now();
    ok = ok && dec.decode(back.data(), dtype::f32, n * 4, 0) == status::success;
    dec_s = seconds_since(t0);
    // Error bound: half a quantization step of the row (int8) or group (int4), checked via the
    // largest error relative to the row's absmax.
    const std::uint64_t cols = m.shape.back();
    const double levels = p.quant == quant::kind::int8_rowwise ? 127.0 : 7.0;
    for (std::uint64_t r = 0; ok && r < n / cols; ++r) {
      double absmax = 0, err = 0;
      for (std::uint64_t c = 0; c < cols; ++c) absmax = std::max(absmax, std::fabs(double(bf16_to_float(m.bf16[r * cols + c]))));
      for (std::uint64_t c = 0; c < cols; ++c)
        err = std::max(err, std::fabs(double(bf16_to_float(m.bf16[r * cols + c])) - double(back[r * cols + c])));
      ok = err <= 0.5 * absmax / levels * 1.001 + 1e-12;
    }
  }
  sum.elements += double(n);
  sum.bytes += double(enc.size());
  sum.encode_s += enc_s;
  sum.decode_s += dec_s;
  sum.entropy_bits += st.entropy_bits * double(n);
  if (print)
    std::printf("  %-44s %-9s %8.3f %8.3f %7.2f%% %8.0f %8.0f %s\n", m.name.c_str(), label, st.bits_per_weight(),
                st.entropy_bits + (p.quant == quant::kind::lossless ? 7.0 : 0.0), st.coding_overhead() * 100.0,
                double(n) * 2 / 1e6 / enc_s, double(n) * 2 / 1e6 / dec_s, ok ? "ok" : "MISMATCH");
  return ok;
}

std::vector<matrix> load_real(const std::string& path) {
  std::vector<matrix> out;
  safetensors::file file(path);
  for (const auto& t : file.tensors()) {
    if (t.shape.size() != 2 || (t.type != dtype::f32 && t.type != dtype::bf16 && t.type != dtype::f16)) continue;
    matrix m{t.name, t.shape, std::vector<std::uint16_t>(t.element_count())};
    const auto bytes = file.data(t);
    for (std::uint64_t i = 0; i < m.bf16.size(); ++i) {
      float v;
      if (t.type == dtype::f32) {
        std::memcpy(&v, bytes.data + 4 * i, 4);
      } else {
        std::uint16_t h;
        std::memcpy(&h, bytes.data + 2 * i, 2);
        v = t.type == dtype::bf16 ? bf16_to_float(h) : f16_to_float(h);
      }
      m.bf16[i] = float_to_bf16(v);
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<matrix> load_synthetic(bool quick) {
  const std::uint64_t d = quick ? 4 : 1;
  const std::pair<std::uint64_t, std::uint64_t> shapes[] = {{4096 / d, 4096 / d}, {14336 / d, 4096 / d}, {4096 / d, 14336 / d}};
  const char* names[] = {"synthetic.attn.q_proj (4096x4096)", "synthetic.mlp.up_proj (14336x4096)",
                         "synthetic.mlp.down_proj (4096x14336)"};
  std::vector<matrix> out;
  for (int i = 0; i < 3; ++i) {
    host::synthetic_params sp;
    sp.seed = std::uint64_t(i + 1);
    const auto f = host::synthetic_weights(shapes[i].first, shapes[i].second, sp);
    out.push_back({names[i], {shapes[i].first, shapes[i].second}, host::to_half_bits(f, dtype::bf16)});
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = std::string(TILECODEC_DATA_DIR) + "/minilm/model.safetensors";
  bool synthetic = false, quick = false, per_tensor_flag = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--synthetic")) synthetic = true;
    else if (!std::strcmp(argv[i], "--per-tensor")) per_tensor_flag = true;
    else if (!std::strcmp(argv[i], "--quick")) quick = true, synthetic = true;
    else path = argv[i];
  }
  std::vector<matrix> matrices;
  if (!synthetic) {
    try {
      matrices = load_real(path);
      std::printf("real weights: %s (%zu matrices, rounded to bf16)\n", path.c_str(), matrices.size());
    } catch (const error& e) {
      std::printf("no real weights (%s): using seeded synthetic Llama-shaped weights\n", e.what());
    }
  }
  if (matrices.empty()) {
    matrices = load_synthetic(quick);
    std::printf("synthetic weights, Llama-8B shapes%s\n", quick ? " / 4 (--quick)" : "");
  }

  struct policy { const char* label; format_params params; };
  const policy policies[] = {{"lossless", lossless_codec::params()}, {"int8", int8_codec::params()},
                             {"int4-g128", int4_codec::params()}};
  const bool per_tensor = per_tensor_flag || matrices.size() <= 12;
  std::printf("\n  %-44s %-9s %8s %8s %8s %8s %8s\n", "tensor", "policy", "bits/w", "entropy", "overhead",
              "enc MB/s", "dec MB/s");
  bool all_ok = true;
  totals sums[3];
  for (const auto& m : matrices)
    for (int p = 0; p < 3; ++p) all_ok &= run_one(m, policies[p].label, policies[p].params, sums[p], per_tensor);

  std::printf("\n  %-12s %10s %12s %10s %12s %12s   (bf16 is 16 bits/weight; speeds: MB/s of bf16, all cores)\n",
              "policy", "bits/w", "entropy", "ratio", "encode MB/s", "decode MB/s");
  for (int p = 0; p < 3; ++p) {
    const totals& s = sums[p];
    std::printf("  %-12s %10.3f %12.3f %9.1f%% %12.0f %12.0f\n", policies[p].label, s.bytes * 8 / s.elements,
                s.entropy_bits / s.elements + (p == 0 ? 7.0 : 0.0), 100.0 * s.bytes / (2 * s.elements),
                2 * s.elements / 1e6 / s.encode_s, 2 * s.elements / 1e6 / s.decode_s);
  }
  std::printf("\nround trip: %s\n", all_ok ? "all tensors verified (lossless bit-exact, quantized within half a step)"
                                           : "MISMATCH");
  return all_ok ? 0 : 1;
}
