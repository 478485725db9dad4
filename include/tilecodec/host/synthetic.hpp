// tilecodec/host/synthetic.hpp: seeded synthetic weights with the statistics of trained ones,
// for tests and benchmarks at Llama-8B shapes when real weights of that size are not at hand.
//
// Model (fitted to the all-MiniLM-L6-v2 matrices, see docs/PERFORMANCE.md): w[r][c] =
// std * row_scale[r] * t_nu / sqrt(nu / (nu - 2)), with t_nu Student-t (nu = 8: kurtosis 4.5,
// the real matrices span 3.2..8) and row_scale log-normal with coefficient of variation 0.2
// (real: 0.08..0.33). Each row has its own generator stream, so the result does not depend on
// the number of threads.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "../detail/parallel.hpp"
#include "../dtype.hpp"

namespace tilecodec {
namespace host {

struct synthetic_params {
  double std = 0.05;     // overall standard deviation (MiniLM matrices: 0.04..0.10)
  double nu = 8.0;       // Student-t degrees of freedom
  double row_cv = 0.2;   // spread of per-row scale
  std::uint64_t seed = 1;
};

namespace detail {
struct splitmix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform_pm1() { return double(next() >> 11) * (2.0 / 9007199254740992.0) - 1.0; }  // [-1, 1)
};
}  // namespace detail

// Fills rows x cols float values (row-major).
inline std::vector<float> synthetic_weights(std::uint64_t rows, std::uint64_t cols, const synthetic_params& p = {},
                                            unsigned threads = 0) {
  std::vector<float> out(rows * cols);
  const double unit = std::sqrt((p.nu - 2.0) / p.nu);  // makes t_nu unit variance
  const double sigma = std::sqrt(std::log(1.0 + p.row_cv * p.row_cv));
  ::tilecodec::detail::parallel_for(rows, threads, [&](std::uint64_t r, unsigned) {
    detail::splitmix64 g{p.seed * 0x2545f4914f6cdd1dull + r * 0x9e3779b97f4a7c15ull + 1};
    // Row scale: log-normal with mean 1 (Box-Muller normal).
    double u1 = (double(g.next() >> 11) + 1.0) / 9007199254740993.0, u2 = double(g.next() >> 11) / 9007199254740992.0;
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    const double scale = p.std * unit * std::exp(sigma * z - 0.5 * sigma * sigma);
    float* row = out.data() + r * cols;
    for (std::uint64_t c = 0; c < cols; ++c) {
      // Bailey's polar method: one Student-t sample per accepted point of the unit disc.
      double u, v, w;
      do {
        u = g.uniform_pm1();
        v = g.uniform_pm1();
        w = u * u + v * v;
      } while (w >= 1.0 || w == 0.0);
      const double t = u * std::sqrt(p.nu * (std::pow(w, -2.0 / p.nu) - 1.0) / w);
      row[c] = static_cast<float>(scale * t);
    }
  });
  return out;
}

// The same, rounded to bf16 or f16 bits.
inline std::vector<std::uint16_t> to_half_bits(const std::vector<float>& v, dtype type) {
  std::vector<std::uint16_t> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = type == dtype::f16 ? float_to_f16(v[i]) : float_to_bf16(v[i]);
  return out;
}

}  // namespace host
}  // namespace tilecodec
