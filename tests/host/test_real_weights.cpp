// The codec on real trained weights (all-MiniLM-L6-v2, fetched by scripts/fetch_weights.sh).
// Without the file every case says it is skipped and checks nothing.
#include <tilecodec/format/safetensors.hpp>
#include <tilecodec/tilecodec.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>

using namespace tilecodec;

namespace {

const safetensors::file* real_model() {
  static std::unique_ptr<safetensors::file> model = []() -> std::unique_ptr<safetensors::file> {
    const std::string path = std::string(TILECODEC_DATA_DIR) + "/minilm/model.safetensors";
    if (!std::ifstream(path).good()) return nullptr;
    return std::make_unique<safetensors::file>(path);
  }();
  return model.get();
}

#define REQUIRE_REAL_MODEL(model)                                                            \
  const safetensors::file* model = real_model();                                             \
  if (!model) {                                                                              \
    MESSAGE("skipped: data/minilm/model.safetensors missing (run scripts/fetch_weights.sh)"); \
    return;                                                                                  \
  }

std::vector<std::uint16_t> as_bf16(const safetensors::file& f, const safetensors::tensor_info& t) {
  std::vector<std::uint16_t> out(t.element_count());
  const auto bytes = f.data(t);
  for (std::size_t i = 0; i < out.size(); ++i) {
    float v;
    std::memcpy(&v, bytes.data + 4 * i, 4);
    out[i] = float_to_bf16(v);
  }
  return out;
}

}  // namespace

TEST_CASE("real weights: every float tensor round trips losslessly as fp32 and as bf16") {
  REQUIRE_REAL_MODEL(model);
  std::size_t checked = 0;
  for (const auto& t : model->tensors()) {
    if (t.type != dtype::f32) continue;
    CAPTURE(t.name);
    const auto bytes = model->data(t);
    const auto enc32 = host::encode<lossless_codec>(bytes.data, dtype::f32, t.shape);
    std::vector<std::uint8_t> back(bytes.size);
    REQUIRE(host::decode(enc32.view(), back.data(), dtype::f32, back.size()) == status::success);
    REQUIRE(std::memcmp(back.data(), bytes.data, bytes.size) == 0);
    const auto half = as_bf16(*model, t);
    const auto enc16 = host::encode<lossless_codec>(half.data(), dtype::bf16, t.shape);
    std::vector<std::uint16_t> back16(half.size());
    REQUIRE(host::decode(enc16.view(), back16.data(), dtype::bf16, back16.size() * 2) == status::success);
    REQUIRE(back16 == half);
    ++checked;
  }
  CHECK(checked == 103);
}

TEST_CASE("real weights: bf16 lossless ratio of the matrices is at most 10.6 bits/weight") {
  REQUIRE_REAL_MODEL(model);
  double elements = 0, bytes = 0;
  for (const auto& t : model->tensors()) {
    if (t.type != dtype::f32 || t.shape.size() != 2) continue;
    const auto half = as_bf16(*model, t);
    const auto enc = host::encode<lossless_codec>(half.data(), dtype::bf16, t.shape);
    elements += double(half.size());
    bytes += double(enc.size());
  }
  const double bits = bytes * 8 / elements;
  MESSAGE("all-MiniLM-L6-v2 matrices, bf16 lossless: " << bits << " bits/weight");
  CHECK(bits <= 10.6);
}

TEST_CASE("real weights: quantized ratio is within 1% of the entropy, error within half a step") {
  REQUIRE_REAL_MODEL(model);
  for (const auto& t : model->tensors()) {
    if (t.type != dtype::f32 || t.shape.size() != 2 || t.element_count() < 1000000) continue;
    CAPTURE(t.name);
    const auto bytes = model->data(t);
    const std::uint64_t rows = t.shape[0], cols = t.shape[1];
    for (const format_params& p : {int8_codec::params(), int4_codec::params()}) {
      host::encode_stats st;
      const auto enc = host::encode(bytes.data, dtype::f32, t.shape, p, {}, &st);
      CHECK(st.coding_overhead() < 0.01);  // coded payload vs order-0 entropy of the symbols
      CHECK(double(st.metadata_bytes) < 0.005 * double(st.payload_bytes));  // header, table, index
      std::vector<float> back(rows * cols);
      REQUIRE(host::decode(enc.view(), back.data(), dtype::f32, back.size() * 4) == status::success);
      const float* src = reinterpret_cast<const float*>(bytes.data);
      const bool int8 = p.quant == quant::kind::int8_rowwise;
      const std::uint64_t group = int8 ? cols : p.group_size;
      for (std::uint64_t r = 0; r < rows; ++r)
        for (std::uint64_t g0 = 0; g0 < cols; g0 += group) {
          double absmax = 0;
          const std::uint64_t g1 = std::min(cols, g0 + group);
          for (std::uint64_t c = g0; c < g1; ++c) absmax = std::max(absmax, std::fabs(double(src[r * cols + c])));
          const double step = absmax / (int8 ? 127.0 : 7.0);
          for (std::uint64_t c = g0; c < g1; ++c)
            REQUIRE(std::fabs(double(src[r * cols + c]) - double(back[r * cols + c])) <= 0.5 * step * 1.001 + 1e-12);
        }
    }
  }
}
