// Helpers shared by host tests: random tensors of every source dtype and a float64 view of them.
#pragma once

#include <tilecodec/dtype.hpp>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace tilecodec_test {

// A tensor's bytes plus its values widened to double.
struct host_tensor {
  tilecodec::dtype type;
  std::vector<std::uint8_t> bytes;
  std::vector<double> values;
};

inline host_tensor random_tensor(std::mt19937_64& rng, tilecodec::dtype type, std::uint64_t n, double std = 0.05) {
  using namespace tilecodec;
  host_tensor t{type, std::vector<std::uint8_t>(n * dtype_size(type)), std::vector<double>(n)};
  std::student_t_distribution<double> dist(5.0);
  for (std::uint64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>(dist(rng) * std);
    if (type == dtype::f32) {
      std::memcpy(t.bytes.data() + 4 * i, &v, 4);
      t.values[i] = v;
    } else {
      const std::uint16_t h = type == dtype::f16 ? float_to_f16(v) : float_to_bf16(v);
      std::memcpy(t.bytes.data() + 2 * i, &h, 2);
      t.values[i] = type == dtype::f16 ? f16_to_float(h) : bf16_to_float(h);
    }
  }
  return t;
}

}  // namespace tilecodec_test
