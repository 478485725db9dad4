// Fused decode-GEMV/GEMM (fused/): every quantization, coder, symbol order, batch 1..33,
// activation and output type, against a float64 reference computed from the host-decoded
// (dequantized) weights; odd shapes and edge tiles; determinism; real weights; corrupted
// weights (run under compute-sanitizer memcheck by scripts/gpu_fused.sh); the dense device
// decoder bit-exact with the host decoder.
//
// Error bound checked per output (fp32 accumulation, fused/gemm.cuh):
//   |y - y_ref| <= (K + 64) * 2^-22 * sum_k |w_k x_k| + u_out * |y_ref| + 2^-24 (f16 subnormals)
// with u_out = 2^-24 (f32), 2^-11 (f16), 2^-8 (bf16) the output rounding. Plus, for f32 output,
// a norm-wise relative error under 1e-5.
#include <tilecodec/tilecodec.hpp>
#include <tilecodec/format/safetensors.hpp>
#include <tilecodec/fused/dequantize.cuh>
#include <tilecodec/fused/gemm.cuh>
#include <tilecodec/fused/linear.cuh>
#include <tilecodec/host/synthetic.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "common/reference.hpp"
#include "common/seed.hpp"

#ifndef TILECODEC_DATA_DIR
#define TILECODEC_DATA_DIR "data"
#endif

using namespace tilecodec;

namespace {

#define TC_CUDA(call) REQUIRE((call) == cudaSuccess)

struct device_buffer {
  void* p = nullptr;
  std::size_t bytes = 0;
  explicit device_buffer(std::size_t n) : bytes(n) { TC_CUDA(cudaMalloc(&p, std::max<std::size_t>(n, 16))); }
  ~device_buffer() { cudaFree(p); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p); }
};

struct weights {
  std::vector<std::uint8_t> bytes;  // source values
  dtype type;
};

// Student-t(5) values (common/reference.hpp), or Llama-like rows (host/synthetic.hpp), or
// Gaussian rows with one outlier each (int8 codes then fit 6 bits with escapes), or (kind 3)
// Gaussian values with 4% outliers (6 bits, many escapes).
weights make_weights(std::mt19937_64& rng, dtype type, std::uint64_t n, std::uint64_t k, int kind) {
  std::vector<float> v(n * k);
  if (kind == 0) {
    const auto t = tilecodec_test::random_tensor(rng, dtype::f32, n * k, 0.01 + double(rng() % 100) / 100.0);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(t.values[i]);
  } else if (kind == 1) {
    host::synthetic_params sp;
    sp.seed = rng();
    v = host::synthetic_weights(n, k, sp, 1);
  } else if (kind == 3) {  // Gaussian with 4% outliers: int8 k = 6, several hundred escapes per 64-row strip
    std::normal_distribution<float> g(0.0f, 0.02f);
    std::uniform_real_distribution<float> u(0.15f, 0.25f);
    for (auto& e : v) e = g(rng);
    for (auto& e : v)
      if (rng() % 25 == 0) e = (rng() & 1 ? 1.0f : -1.0f) * u(rng);
  } else {
    std::normal_distribution<float> g(0.0f, 0.02f);
    for (auto& e : v) e = g(rng);
    for (std::uint64_t r = 0; r < n; ++r) v[r * k + rng() % k] = (rng() & 1 ? 0.2f : -0.2f);
  }
  weights w{std::vector<std::uint8_t>(n * k * dtype_size(type)), type};
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (type == dtype::f32) {
      std::memcpy(w.bytes.data() + 4 * i, &v[i], 4);
    } else {
      const std::uint16_t h = type == dtype::f16 ? float_to_f16(v[i]) : float_to_bf16(v[i]);
      std::memcpy(w.bytes.data() + 2 * i, &h, 2);
    }
  }
  return w;
}

// The weights the kernel multiplies by, as doubles: the host decoder's output.
std::vector<double> dequantized(const encoded_tensor& enc) {
  const auto& h = enc.header();
  const std::uint64_t n = enc.view().elements();
  std::vector<double> out(n);
  if (h.params.quant == quant::kind::lossless) {
    std::vector<std::uint16_t> bits(n);
    REQUIRE(host::decode(enc.view(), bits.data(), h.source, n * 2) == status::success);
    for (std::uint64_t i = 0; i < n; ++i) out[i] = h.source == dtype::f16 ? f16_to_float(bits[i]) : bf16_to_float(bits[i]);
  } else {
    std::vector<float> f(n);
    REQUIRE(host::decode(enc.view(), f.data(), dtype::f32, n * 4) == status::success);
    for (std::uint64_t i = 0; i < n; ++i) out[i] = f[i];
  }
  return out;
}

double out_unit(dtype t) { return t == dtype::f32 ? std::ldexp(1.0, -24) : (t == dtype::f16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8)); }

double read_out(const std::vector<std::uint8_t>& y, dtype t, std::uint64_t i) {
  if (t == dtype::f32) {
    float f;
    std::memcpy(&f, y.data() + 4 * i, 4);
    return f;
  }
  std::uint16_t h;
  std::memcpy(&h, y.data() + 2 * i, 2);
  return t == dtype::f16 ? f16_to_float(h) : bf16_to_float(h);
}

struct gemm_case {
  quant::kind quant = quant::kind::int8_rowwise;
  std::uint32_t group = 0;
  dtype source = dtype::bf16;
  coder::kind coder = coder::kind::fixed;
  symbol_order order = symbol_order::mma;
  std::uint32_t tile_rows = 256, tile_cols = 256;
  std::uint64_t n = 256, k = 256;
  std::uint32_t batch = 1;
  dtype x_type = dtype::bf16, y_type = dtype::f32;
  bool workspace = true;
  int data = 0;
  bool x_aligned = false;  // even ldx (32-bit pairs: the int8 stream path), else any padding
  std::uint32_t code_bits = 0;  // fixed coder: the pinned code width (format_params::prob_bits; 0: the encoder's choice)
};

std::string describe(const gemm_case& c) {
  return "quant " + std::to_string(int(c.quant)) + " g" + std::to_string(c.group) + " src " + dtype_name(c.source) +
         " coder " + std::to_string(int(c.coder)) + " order " + std::to_string(int(c.order)) + " tile " +
         std::to_string(c.tile_rows) + "x" + std::to_string(c.tile_cols) + " N " + std::to_string(c.n) + " K " +
         std::to_string(c.k) + " batch " + std::to_string(c.batch) + " x " + dtype_name(c.x_type) + " y " +
         dtype_name(c.y_type) + " ws " + std::to_string(int(c.workspace)) + " data " + std::to_string(c.data) +
         (c.x_aligned ? " x aligned" : "") + (c.code_bits ? " code bits " + std::to_string(c.code_bits) : "");
}

format_params params_of(const gemm_case& c) {
  format_params p;
  p.quant = c.quant;
  p.group_size = c.group;
  p.coder = c.coder;
  p.order = c.order;
  p.tile_rows = c.tile_rows;
  p.tile_cols = c.tile_cols;
  p.prob_bits = c.coder == coder::kind::rans ? 12 : (c.coder == coder::kind::fixed ? c.code_bits : 0);
  p.lanes = c.coder == coder::kind::raw ? 1 : 32;
  return p;
}

// Runs one case (twice: results must be identical) and checks it against the float64 reference.
// Returns the norm-wise relative error of the first run.
double run_case(const gemm_case& c, std::mt19937_64& rng, const weights* given = nullptr, std::uint32_t* k_used = nullptr) {
  INFO(describe(c));
  const weights w = given ? *given : make_weights(rng, c.source, c.n, c.k, c.data);
  const encoded_tensor enc = host::encode(w.bytes.data(), w.type, {c.n, c.k}, params_of(c));
  if (k_used) *k_used = enc.header().coding == plane_coding::fixed ? enc.header().params.prob_bits : 0;
  const std::vector<double> wd = dequantized(enc);
  // Activations, rows ldx apart (odd padding now and then: unaligned pairs).
  const std::uint64_t ldx = c.x_aligned ? c.k + (c.k & 1) + 2 * (rng() % 2) : c.k + rng() % 3, ldy = c.n + rng() % 3;
  std::vector<std::uint16_t> x(c.batch * ldx, 0x7e00);  // NaN in the padding: never read
  std::vector<double> xd(c.batch * c.k);
  std::normal_distribution<double> g(0.0, 1.0);
  for (std::uint32_t b = 0; b < c.batch; ++b)
    for (std::uint64_t i = 0; i < c.k; ++i) {
      const float v = static_cast<float>(g(rng));
      const std::uint16_t h = c.x_type == dtype::f16 ? float_to_f16(v) : float_to_bf16(v);
      x[b * ldx + i] = h;
      xd[b * c.k + i] = c.x_type == dtype::f16 ? f16_to_float(h) : bf16_to_float(h);
    }
  device_buffer dw(enc.size()), dx(x.size() * 2), dy(c.batch * ldy * dtype_size(c.y_type)), dst(4);
  TC_CUDA(cudaMemcpy(dw.p, enc.bytes().data(), enc.size(), cudaMemcpyHostToDevice));
  TC_CUDA(cudaMemcpy(dx.p, x.data(), x.size() * 2, cudaMemcpyHostToDevice));
  fused::matrix_ref ref;
  std::string why;
  REQUIRE_MESSAGE(fused::make_matrix_ref(enc.view(), dw.p, ref, &why) == status::success, why);
  const std::size_t ws_bytes = c.workspace ? fused::gemm_workspace_bytes(ref, c.batch) : 0;
  device_buffer dws(ws_bytes);
  TC_CUDA(cudaMemset(dws.p, 0, std::max<std::size_t>(ws_bytes, 16)));
  std::vector<std::uint8_t> first;
  for (int run = 0; run < 2; ++run) {
    TC_CUDA(cudaMemset(dy.p, 0xff, dy.bytes));  // poison: NaN in every output type
    TC_CUDA(cudaMemset(dst.p, 0, 4));
    REQUIRE(fused::gemm_async(ref, dx.p, c.x_type, ldx, c.batch, dy.p, c.y_type, ldy, c.workspace ? dws.p : nullptr,
                              ws_bytes, dst.as<std::uint32_t>(), 0) == status::success);
    TC_CUDA(cudaDeviceSynchronize());
    std::uint32_t st = 99;
    TC_CUDA(cudaMemcpy(&st, dst.p, 4, cudaMemcpyDeviceToHost));
    REQUIRE(st == 0);
    std::vector<std::uint8_t> y(dy.bytes);
    TC_CUDA(cudaMemcpy(y.data(), dy.p, y.size(), cudaMemcpyDeviceToHost));
    if (run == 0) {
      first = y;
    } else {
      REQUIRE(y == first);  // deterministic
    }
  }
  const double u = out_unit(c.y_type);
  const double gamma = double(c.k + 64) * std::ldexp(1.0, -22);
  double err2 = 0, ref2 = 0;
  for (std::uint32_t b = 0; b < c.batch; ++b) {
    for (std::uint64_t n = 0; n < c.n; ++n) {
      double exact = 0, mag = 0;
      const double* wr = wd.data() + n * c.k;
      const double* xr = xd.data() + std::uint64_t(b) * c.k;
      for (std::uint64_t i = 0; i < c.k; ++i) {
        exact += wr[i] * xr[i];
        mag += std::fabs(wr[i] * xr[i]);
      }
      const double got = read_out(first, c.y_type, b * ldy + n);
      const double tol = gamma * mag + u * std::fabs(exact) * 1.001 + std::ldexp(1.0, -24);
      INFO("b " << b << " n " << n << " got " << got << " exact " << exact << " sum|wx| " << mag);
      REQUIRE(std::isfinite(got));
      REQUIRE(std::fabs(got - exact) <= tol);
      err2 += (got - exact) * (got - exact);
      ref2 += exact * exact;
    }
    for (std::uint64_t n = c.n; n < ldy; ++n) REQUIRE(std::isnan(read_out(first, c.y_type, b * ldy + n)));  // untouched
  }
  const double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : 0.0;
  if (c.y_type == dtype::f32) CHECK(rel < 1e-5);
  return rel;
}

std::vector<std::pair<quant::kind, std::uint32_t>> quantizations() {
  return {{quant::kind::int8_rowwise, 0}, {quant::kind::int4_group, 32}, {quant::kind::int4_group, 64},
          {quant::kind::int4_group, 128}, {quant::kind::lossless, 0}};
}

}  // namespace

// ---- host model of the fragment decode (runs without a GPU) -------------------------------------

namespace {

// Registers il in the interleaved k order against a, the same quad's registers in the usual order:
// register j, half h holds column 2t + (j >> 1) + 8h of row g + 8 (j & 1), i.e. the usual register
// 2h + (j & 1), half (j >> 1); interleave_b_fragment moves the B columns alike.
void check_interleaved(const std::uint32_t (&il)[4][4], const std::uint32_t (&a)[4][4]) {
  for (int r4 = 0; r4 < 4; ++r4)
    for (int j = 0; j < 4; ++j)
      for (int half = 0; half < 2; ++half) {
        const std::uint16_t got = static_cast<std::uint16_t>(il[r4][j] >> (16 * half));
        const std::uint16_t expect = static_cast<std::uint16_t>(a[r4][2 * half + (j & 1)] >> (16 * (j >> 1)));
        INFO("interleaved r4 " << r4 << " reg " << j << " half " << half);
        REQUIRE(got == expect);
      }
  // B: columns 2t, 2t + 1 | 2t + 8, 2t + 9 become 2t, 2t + 8 | 2t + 1, 2t + 9.
  std::uint32_t b0 = 0x11110000u, b1 = 0x99998888u;  // column c's value: c * 0x1111 (t = 0)
  fused::interleave_b_fragment(b0, b1);
  REQUIRE(b0 == 0x88880000u);
  REQUIRE(b1 == 0x99991111u);
}

// Checks every quad of every mma tile of a fixed-coded tensor: the A registers that
// fixed_quad_pairs + int_fragments / lossless_bytes_fragments produce for each lane hold exactly the
// values of the elements the mma layout puts there (escapes: the code-0 placeholder).
template <int K>
void check_quads(const encoded_tensor& enc, bool x_bf16) {
  const auto& h = enc.header();
  const auto& l = enc.view().layout();
  const std::uint64_t n = l.elements();
  const bool lossless = h.params.quant == quant::kind::lossless;
  std::vector<std::int8_t> codes(n);
  std::vector<std::uint16_t> bits(n);
  if (lossless) REQUIRE(host::decode(enc.view(), bits.data(), h.source, n * 2) == status::success);
  else REQUIRE(host::decode(enc.view(), codes.data(), dtype::i8, n) == status::success);
  const fixed_code code{h.params.prob_bits, detail::get_u16(enc.view().table()), h.alphabet};
  const int zero = h.params.quant == quant::kind::int4_group ? 8 : 128;
  const std::uint32_t sub = x_bf16 ? fused::int_pair_sub<true>(std::uint32_t(zero), code.first)
                                   : fused::int_pair_sub<false>(std::uint32_t(zero), code.first);
  for (std::uint64_t t = 0; t < h.tile_count; ++t) {
    const tile_box b = l.box(t);
    if (!tile_uses_mma_order(h.params.order, b.height, b.width)) continue;
    const std::uint8_t* tile = enc.view().tile_data(t);
    std::vector<char> escaped(std::size_t(b.height) * b.width, 0);
    if (code.has_escapes()) {
      const fixed_tile_shape sh = fixed_shape(code, b.height, b.width);
      for (std::uint32_t r = 0; r < b.height; ++r) {
        const std::uint32_t e0 = detail::get_u16(tile + sh.code_bytes + 2 * r), e1 = detail::get_u16(tile + sh.code_bytes + 2 * r + 2);
        for (std::uint32_t e = e0; e < e1; ++e) {
          std::uint32_t col, sym;
          fixed_escape_at(tile, sh, e, col, sym);
          escaped[std::size_t(r) * b.width + col] = 1;
        }
      }
    }
    const std::uint8_t* raw = lossless ? enc.view().raw_tile(t) : nullptr;
    const std::uint32_t quads = b.height * b.width / 1024;
    for (std::uint32_t q = 0; q < quads; ++q)
      for (std::uint32_t lane = 0; lane < 32; ++lane) {
        std::uint32_t w[K], pairs[4][4], a[4][4];
        for (int j = 0; j < K; ++j) w[j] = detail::get_u32(tile + 4 * (32 * (q * K + j) + lane));
        fused::fixed_quad_pairs<K>(w, pairs);
        if (lossless) {
          REQUIRE(h.alphabet == 256);  // fixed codes of 16-bit lossless: the byte split
          std::uint32_t rw[8];
          for (int j = 0; j < 8; ++j) rw[j] = detail::get_u32(raw + 1024 * q + 32 * lane + 4 * j);
          const std::uint32_t first7 = (code.first | (code.first << 16)) << 7;
          fused::lossless_bytes_fragments(pairs, first7, rw, a);
          if constexpr (K == 4) {  // lossless_bytes_interleaved_fragments
            std::uint32_t il[4][4];
            fused::lossless_bytes_interleaved_fragments(w, first7, rw, il);
            check_interleaved(il, a);
          }
        } else {
          std::uint32_t fused_a[4][4];  // the one-step decode of the kernels must give the same registers
          if (x_bf16) {
            fused::int_fragments<true, (K > 7)>(pairs, sub, a);
            fused::int_quad_fragments<K, true>(w, sub, fused_a);
          } else {
            fused::int_fragments<false, (K > 7)>(pairs, sub, a);
            fused::int_quad_fragments<K, false>(w, sub, fused_a);
          }
          for (int r4 = 0; r4 < 4; ++r4)
            for (int j = 0; j < 4; ++j) REQUIRE(fused_a[r4][j] == a[r4][j]);
          if constexpr (K == 4) {
            if (h.params.quant == quant::kind::int4_group) {  // int4_interleaved_fragments
              std::uint32_t il[4][4];
              if (x_bf16) fused::int4_interleaved_fragments<true>(w, sub, fused::int_pair_sub_high<true>(zero, code.first), il);
              else fused::int4_interleaved_fragments<false>(w, sub, fused::int_pair_sub_high<false>(zero, code.first), il);
              check_interleaved(il, a);
            }
          }
        }
        for (int r4 = 0; r4 < 4; ++r4)
          for (int j = 0; j < 4; ++j)
            for (int half = 0; half < 2; ++half) {
              const std::uint32_t e = 2 * j + half;
              const std::uint32_t i = 1024 * q + 32 * lane + 8 * r4 + e;
              std::uint32_t r, c;
              mma_symbol_position(i, b.width, r, c);
              // The PTX layout, independently: register j, element half.
              REQUIRE(r % 16 == (lane >> 2) + 8 * (j & 1));
              REQUIRE(c % 16 == 2 * (lane & 3) + half + 8 * (j >> 1));
              const std::uint64_t at = (b.row0 + r) * l.cols + b.col0 + c;
              const bool esc = escaped[std::size_t(r) * b.width + c] != 0;
              const std::uint16_t v = static_cast<std::uint16_t>(a[r4][j] >> (16 * half));
              INFO("tile " << t << " quad " << q << " lane " << lane << " r4 " << r4 << " reg " << j << " half " << half);
              if (lossless) {
                const std::uint16_t expect = esc ? lossless16_byte_join(code.first, lossless16_byte_raw(bits[at])) : bits[at];
                REQUIRE(v == expect);
              } else {
                const float got = x_bf16 ? bf16_to_float(v) : f16_to_float(v);
                const int expect = esc ? int(code.first) - zero : int(codes[at]);
                REQUIRE(got == float(expect));
              }
            }
      }
  }
}

void check_quads_any(const encoded_tensor& enc, bool x_bf16) {
  REQUIRE(enc.header().coding == plane_coding::fixed);
  switch (enc.header().params.prob_bits) {
    case 1: return check_quads<1>(enc, x_bf16);
    case 2: return check_quads<2>(enc, x_bf16);
    case 3: return check_quads<3>(enc, x_bf16);
    case 4: return check_quads<4>(enc, x_bf16);
    case 5: return check_quads<5>(enc, x_bf16);
    case 6: return check_quads<6>(enc, x_bf16);
    case 7: return check_quads<7>(enc, x_bf16);
    case 8: return check_quads<8>(enc, x_bf16);
    default: return check_quads<9>(enc, x_bf16);
  }
}

}  // namespace

TEST_CASE("fused fragments [host]: quads decode into the mma A layout, every quantization and code width") {
  TILECODEC_SEEDED_RNG(rng);
  std::string widths;
  for (auto q : quantizations())
    for (dtype src : {dtype::bf16, dtype::f16})
      for (int data = 0; data < 3; ++data) {
        gemm_case c;
        c.quant = q.first;
        c.group = q.second;
        c.source = src;
        c.tile_rows = 128;
        c.tile_cols = 192;
        c.n = 256;
        c.k = 384 + 16 * (rng() % 4);
        c.data = data;
        INFO(describe(c));
        const weights w = make_weights(rng, src, c.n, c.k, data);
        // int4 codes may be stored (4 bits a weight either way, whichever is smaller for the
        // seed): then the width is pinned at 4, which keeps the fixed coder.
        c.code_bits = q.first == quant::kind::int4_group &&
                              host::encode(w.bytes.data(), w.type, {c.n, c.k}, params_of(c)).header().coding != plane_coding::fixed
                          ? 4u
                          : 0u;
        const encoded_tensor enc = host::encode(w.bytes.data(), w.type, {c.n, c.k}, params_of(c));
        widths += std::to_string(enc.header().params.prob_bits) + (c.code_bits ? "p " : " ");
        const bool lossless = q.first == quant::kind::lossless;
        check_quads_any(enc, lossless ? src == dtype::bf16 : true);
        if (!lossless) check_quads_any(enc, false);
      }
  // Full-width int8 codes (k = 8): the wide bf16 conversion.
  std::vector<std::uint16_t> uniform(256 * 256);
  for (auto& v : uniform) v = float_to_bf16(float(int(rng() % 255) - 127));
  const auto enc = host::encode<fused::int8_codec>(uniform.data(), dtype::bf16, {256, 256});
  REQUIRE(enc.header().params.prob_bits == 8);
  check_quads_any(enc, true);
  check_quads_any(enc, false);
  MESSAGE("code widths exercised: " << widths);
}

TEST_CASE("fused fragments [host]: the rANS window swizzle hands each lane its own 32 symbols") {
  std::vector<std::uint32_t> win(1024, ~0u);
  for (std::uint32_t s = 0; s < 32; ++s)
    for (std::uint32_t r = 0; r < 32; ++r) win[32 * s + 8 * ((r >> 3) ^ ((s >> 1) & 3)) + (r & 7)] = 32 * s + r;
  for (std::uint32_t lane = 0; lane < 32; ++lane)
    for (std::uint32_t j = 0; j < 4; ++j)
      for (std::uint32_t e = 0; e < 8; ++e) REQUIRE(win[32 * lane + 8 * (j ^ ((lane >> 1) & 3)) + e] == 32 * lane + 8 * j + e);
}

TEST_CASE("fused gemm [quick]: fixed coder, mma order, every quantization, edge tiles, batch 1..17") {
  TILECODEC_SEEDED_RNG(rng);
  const std::uint32_t batches[] = {1, 2, 3, 8, 9, 16, 17};
  int i = 0;
  for (auto q : quantizations())
    for (dtype src : {dtype::bf16, dtype::f16}) {
      gemm_case c;
      c.quant = q.first;
      c.group = q.second;
      c.source = src;
      c.n = 64 + rng() % 300;   // bottom edge tiles: row-major
      c.k = 16 + rng() % 700;   // right edge tiles: row-major, or mma when a multiple of 16
      c.batch = batches[i++ % 7];
      c.x_type = q.first == quant::kind::lossless ? src : (rng() & 1 ? dtype::bf16 : dtype::f16);
      c.y_type = i % 3 == 0 ? dtype::f32 : (i % 3 == 1 ? dtype::f16 : dtype::bf16);
      c.workspace = rng() & 1;
      run_case(c, rng);
    }
}

TEST_CASE("fused gemm [quick]: int8 with the code width pinned at 8 (no escapes), stream and edge tiles, batch 1..16") {
  TILECODEC_SEEDED_RNG(rng);
  const std::uint32_t batches[] = {1, 4, 9, 16};
  for (int i = 0; i < 8; ++i) {
    gemm_case c;
    c.code_bits = 8;
    c.data = 1;  // Llama-like: the encoder alone would take k = 6 or 7
    c.batch = batches[i % 4];
    c.x_type = rng() & 1 ? dtype::bf16 : dtype::f16;
    c.y_type = i % 2 ? dtype::f32 : dtype::bf16;
    if (i < 4) {  // whole-width tiles: the stream path
      c.n = 64 * (1 + rng() % 6);
      c.k = 256 * (1 + rng() % 4);
      c.x_aligned = true;
    } else {  // edge tiles both ways
      c.n = 64 + rng() % 300;
      c.k = 16 + rng() % 700;
    }
    std::uint32_t k_used = 0;
    run_case(c, rng, nullptr, &k_used);
    CHECK(k_used == 8);
  }
}

TEST_CASE("fused gemm: fast paths with escapes (int8 k = 6 and 7, int4 k = 4, lossless k = 4 and 5)") {
  TILECODEC_SEEDED_RNG(rng);
  std::vector<std::uint32_t> seen;
  for (int data : {1, 2}) {
    for (std::uint32_t batch : {1u, 4u, 16u}) {
      gemm_case c;
      c.n = 256;
      c.k = 2048;
      c.data = data;
      c.batch = batch;
      c.x_type = batch == 4 ? dtype::f16 : dtype::bf16;
      std::uint32_t k = 0;
      run_case(c, rng, nullptr, &k);
      seen.push_back(k);
      c.quant = quant::kind::lossless;
      c.source = data == 1 ? dtype::bf16 : dtype::f16;
      c.x_type = c.source;
      run_case(c, rng, nullptr, &k);
      seen.push_back(k);
      c.quant = quant::kind::int4_group;
      c.group = 128;
      c.x_type = dtype::bf16;
      run_case(c, rng, nullptr, &k);
      seen.push_back(k);
    }
  }
  std::string s;
  for (auto k : seen) s += std::to_string(k) + " ";
  MESSAGE("code widths chosen: " << s);
}

TEST_CASE("fused gemm [quick]: stream path (int8, int4, lossless), escapes per row (2- and 4-byte entries, past the copy), batch 1..16") {
  // Whole-width mma tiles, int8 fixed coder, even ldx: every warp takes the stream path
  // (warp_gemm::stream; batch 9-16 when ldx is a multiple of 8, half the cases, else the chunk
  // path) and corrects its tiles' escapes row by row (batch 9-16: patches them into the A
  // fragments, its escape data asked tiles ahead; 64-column tiles are too short for that and
  // wait); lossless weights on the 256-column shapes (stream path at batch <= 8). Few escapes
  // per strip (data 2: all entries in the shared-memory copy) and many (data 3: hundreds per
  // 64-row strip, past the copy, read from global memory); 2-byte entries (64- and 256-column
  // tiles) and 4-byte ones (512). int4 on every shape, at 4 bits and (per-element path) 3.
  TILECODEC_SEEDED_RNG(rng);
  std::string widths;
  int i = 0;
  for (int data : {2, 3})
    for (std::uint32_t tc : {64u, 256u, 512u})
      for (std::uint32_t batch : {1u, 3u, 4u, 8u, 12u, 16u}) {
        gemm_case c;
        c.tile_rows = tc == 512 ? 64 : 256;
        c.tile_cols = tc;
        c.n = 128 + 64 * (rng() % 3);
        c.k = tc == 64 ? 64 * (4 + rng() % 4) : tc * (1 + rng() % 3);  // enough columns for escapes to pay
        c.data = data;
        c.batch = batch;
        c.x_type = i % 2 ? dtype::f16 : dtype::bf16;
        c.y_type = i % 3 == 0 ? dtype::f32 : (i % 3 == 1 ? dtype::f16 : dtype::bf16);
        c.workspace = i % 4 != 3;
        c.x_aligned = true;
        ++i;
        std::uint32_t k = 0;
        run_case(c, rng, nullptr, &k);
        REQUIRE(k >= 6);  // a fast-path code width (6..8), with escapes
        REQUIRE(k <= 7);
        widths += std::to_string(k) + " ";
        // int4 on the same shapes, groups of 32, 64 and 128 columns: 4-bit codes (stream path at
        // any batch, the interleaved k order, no escapes) and codes pinned at 3 bits (a width
        // without a fast kernel: the per-element path, with escapes).
        gemm_case c4 = c;
        c4.quant = quant::kind::int4_group;
        c4.group = 32u << (i % 3);
        c4.code_bits = 4;
        run_case(c4, rng, nullptr, &k);
        REQUIRE(k == 4);
        c4.code_bits = 3;
        run_case(c4, rng, nullptr, &k);
        REQUIRE(k == 3);
        if (tc == 256 && batch != 3 && batch != 16) {  // lossless on the same shapes (stream path at batch <= 8)
          c.quant = quant::kind::lossless;
          c.source = i % 2 ? dtype::f16 : dtype::bf16;
          c.x_type = c.source;
          run_case(c, rng);
        }
      }
  MESSAGE("code widths chosen: " << widths);
}

namespace {
template <int K, bool BF16>
__global__ void quad_fragments_kernel(const std::uint32_t* words, std::uint32_t sub, std::uint32_t* out) {
  std::uint32_t w[K], a[4][4];
  for (int j = 0; j < K; ++j) w[j] = words[32 * j + threadIdx.x];
  fused::int_quad_fragments<K, BF16>(w, sub, a);
  for (int r4 = 0; r4 < 4; ++r4)
    for (int j = 0; j < 4; ++j) out[32 * (4 * r4 + j) + threadIdx.x] = a[r4][j];
}

// The device's one-step decode (PTX spelled out, byte permutations for k = 8) against the host
// model of the two-step decode, on random code words.
template <int K, bool BF16>
void check_device_quad_fragments(std::mt19937_64& rng) {
  INFO("K " << K << " bf16 " << BF16);
  const std::uint32_t zero = 128, first = K == 8 ? 0u : std::uint32_t(rng() % (257 - (1u << K)));
  const std::uint32_t sub = fused::int_pair_sub<BF16>(zero, first);
  std::vector<std::uint32_t> words(32 * K), out(32 * 16);
  for (auto& v : words) v = static_cast<std::uint32_t>(rng());
  device_buffer dwords(words.size() * 4), dout(out.size() * 4);
  TC_CUDA(cudaMemcpy(dwords.p, words.data(), words.size() * 4, cudaMemcpyHostToDevice));
  quad_fragments_kernel<K, BF16><<<1, 32>>>(dwords.as<std::uint32_t>(), sub, dout.as<std::uint32_t>());
  TC_CUDA(cudaGetLastError());
  TC_CUDA(cudaMemcpy(out.data(), dout.p, out.size() * 4, cudaMemcpyDeviceToHost));
  for (std::uint32_t lane = 0; lane < 32; ++lane) {
    std::uint32_t w[K], pairs[4][4], a[4][4];
    for (int j = 0; j < K; ++j) w[j] = words[32 * j + lane];
    fused::fixed_quad_pairs<K>(w, pairs);
    fused::int_fragments<BF16, (K > 7)>(pairs, sub, a);
    for (int r4 = 0; r4 < 4; ++r4)
      for (int j = 0; j < 4; ++j) {
        INFO("lane " << lane << " r4 " << r4 << " reg " << j);
        REQUIRE(out[32 * (4 * r4 + j) + lane] == a[r4][j]);
      }
  }
}
template <bool BF16>
__global__ void int4_interleaved_kernel(const std::uint32_t* words, std::uint32_t sub, std::uint32_t sub_hi, std::uint32_t* out) {
  std::uint32_t w[4], a[4][4];
  for (int j = 0; j < 4; ++j) w[j] = words[32 * j + threadIdx.x];
  fused::int4_interleaved_fragments<BF16>(w, sub, sub_hi, a);
  for (int r4 = 0; r4 < 4; ++r4)
    for (int j = 0; j < 4; ++j) out[32 * (4 * r4 + j) + threadIdx.x] = a[r4][j];
}

// The device's interleaved int4 decode (PTX) against its host model, random words, any first.
template <bool BF16>
void check_device_int4_interleaved(std::mt19937_64& rng) {
  INFO("int4 interleaved, bf16 " << BF16);
  const std::uint32_t zero = 8, first = std::uint32_t(rng() % 16);
  const std::uint32_t sub = fused::int_pair_sub<BF16>(zero, first), sub_hi = fused::int_pair_sub_high<BF16>(zero, first);
  std::vector<std::uint32_t> words(32 * 4), out(32 * 16);
  for (auto& v : words) v = static_cast<std::uint32_t>(rng());
  device_buffer dwords(words.size() * 4), dout(out.size() * 4);
  TC_CUDA(cudaMemcpy(dwords.p, words.data(), words.size() * 4, cudaMemcpyHostToDevice));
  int4_interleaved_kernel<BF16><<<1, 32>>>(dwords.as<std::uint32_t>(), sub, sub_hi, dout.as<std::uint32_t>());
  TC_CUDA(cudaGetLastError());
  TC_CUDA(cudaMemcpy(out.data(), dout.p, out.size() * 4, cudaMemcpyDeviceToHost));
  for (std::uint32_t lane = 0; lane < 32; ++lane) {
    std::uint32_t w[4], a[4][4];
    for (int j = 0; j < 4; ++j) w[j] = words[32 * j + lane];
    fused::int4_interleaved_fragments<BF16>(w, sub, sub_hi, a);
    for (int r4 = 0; r4 < 4; ++r4)
      for (int j = 0; j < 4; ++j) {
        INFO("lane " << lane << " r4 " << r4 << " reg " << j);
        REQUIRE(out[32 * (4 * r4 + j) + lane] == a[r4][j]);
      }
  }
}
__global__ void lossless_bytes_kernel(const std::uint32_t* words, std::uint32_t first7, std::uint32_t* out) {
  std::uint32_t w[4], rw[8], a[4][4], pairs[4][4], b[4][4];
  for (int j = 0; j < 4; ++j) w[j] = words[32 * j + threadIdx.x];
  for (int j = 0; j < 8; ++j) rw[j] = words[32 * (4 + j) + threadIdx.x];
  fused::lossless_bytes_interleaved_fragments(w, first7, rw, a);
  fused::fixed_quad_pairs<4>(w, pairs);
  fused::lossless_bytes_fragments(pairs, first7, rw, b);
  for (int r4 = 0; r4 < 4; ++r4)
    for (int j = 0; j < 4; ++j) {
      out[32 * (4 * r4 + j) + threadIdx.x] = a[r4][j];
      out[32 * (16 + 4 * r4 + j) + threadIdx.x] = b[r4][j];
    }
}

// The same for 16-bit lossless split in bytes, 4-bit codes, both orders (random codes and raw
// words: PRMT's sign replication against byte_perm_msb's host model).
void check_device_lossless_bytes(std::mt19937_64& rng) {
  const std::uint32_t first = std::uint32_t(rng() % (256 - 16)), first7 = (first | (first << 16)) << 7;
  std::vector<std::uint32_t> words(32 * 12), out(32 * 32);
  for (auto& v : words) v = static_cast<std::uint32_t>(rng());
  device_buffer dwords(words.size() * 4), dout(out.size() * 4);
  TC_CUDA(cudaMemcpy(dwords.p, words.data(), words.size() * 4, cudaMemcpyHostToDevice));
  lossless_bytes_kernel<<<1, 32>>>(dwords.as<std::uint32_t>(), first7, dout.as<std::uint32_t>());
  TC_CUDA(cudaGetLastError());
  TC_CUDA(cudaMemcpy(out.data(), dout.p, out.size() * 4, cudaMemcpyDeviceToHost));
  for (std::uint32_t lane = 0; lane < 32; ++lane) {
    std::uint32_t w[4], rw[8], a[4][4], pairs[4][4], b[4][4];
    for (int j = 0; j < 4; ++j) w[j] = words[32 * j + lane];
    for (int j = 0; j < 8; ++j) rw[j] = words[32 * (4 + j) + lane];
    fused::lossless_bytes_interleaved_fragments(w, first7, rw, a);
    fused::fixed_quad_pairs<4>(w, pairs);
    fused::lossless_bytes_fragments(pairs, first7, rw, b);
    for (int r4 = 0; r4 < 4; ++r4)
      for (int j = 0; j < 4; ++j) {
        INFO("lossless bytes, lane " << lane << " r4 " << r4 << " reg " << j);
        REQUIRE(out[32 * (4 * r4 + j) + lane] == a[r4][j]);
        REQUIRE(out[32 * (16 + 4 * r4 + j) + lane] == b[r4][j]);
      }
  }
}
}  // namespace

TEST_CASE("fused fragments [quick]: the device's one-step int8 and interleaved int4 / lossless decodes equal the host model") {
  TILECODEC_SEEDED_RNG(rng);
  for (int rep = 0; rep < 4; ++rep) {
    check_device_lossless_bytes(rng);
    check_device_int4_interleaved<false>(rng);
    check_device_int4_interleaved<true>(rng);
    check_device_quad_fragments<6, false>(rng);
    check_device_quad_fragments<6, true>(rng);
    check_device_quad_fragments<7, false>(rng);
    check_device_quad_fragments<7, true>(rng);
    check_device_quad_fragments<8, false>(rng);
    check_device_quad_fragments<8, true>(rng);
  }
}

TEST_CASE("fused gemm: random shapes, coders, orders, tiles, types and batches") {
  TILECODEC_SEEDED_RNG(rng);
  const auto qs = quantizations();
  for (int i = 0; i < 48; ++i) {
    gemm_case c;
    const auto q = qs[rng() % qs.size()];
    c.quant = q.first;
    c.group = q.second;
    c.source = rng() & 1 ? dtype::bf16 : dtype::f16;
    const int coder_pick = int(rng() % 4);
    c.coder = coder_pick == 0 ? coder::kind::raw : (coder_pick == 1 ? coder::kind::rans : coder::kind::fixed);
    c.order = rng() % 4 == 0 ? symbol_order::row_major : symbol_order::mma;
    const std::uint32_t tiles[][2] = {{256, 256}, {64, 256}, {128, 64}, {64, 16}, {192, 400}};
    const auto* t = tiles[rng() % 5];
    c.tile_rows = t[0];
    c.tile_cols = t[1];
    c.n = 1 + rng() % 600;
    c.k = 1 + rng() % 900;
    if (c.coder == coder::kind::rans) {  // the rANS path: mma order, 64-row tiles, whole tiles
      c.order = symbol_order::mma;
      c.tile_rows = 64;
      c.tile_cols = rng() & 1 ? 256 : 128;
      c.n = 64 * (1 + rng() % 8);
      c.k = 16 * (1 + rng() % 60);
    }
    c.batch = 1 + std::uint32_t(rng() % 33);
    c.x_type = c.quant == quant::kind::lossless ? c.source : (rng() & 1 ? dtype::bf16 : dtype::f16);
    const int y = int(rng() % 3);
    c.y_type = y == 0 ? dtype::f32 : (y == 1 ? dtype::f16 : dtype::bf16);
    c.workspace = rng() % 3 != 0;
    c.data = int(rng() % 3);
    run_case(c, rng);
  }
}

TEST_CASE("fused gemm: rANS (mma order, 64 x 256 tiles) on Llama-like weights, batch 1, 4, 16") {
  TILECODEC_SEEDED_RNG(rng);
  for (auto q : {std::make_pair(quant::kind::int8_rowwise, 0u), std::make_pair(quant::kind::int4_group, 128u),
                 std::make_pair(quant::kind::lossless, 0u)})
    for (std::uint32_t batch : {1u, 4u, 16u}) {
      gemm_case c;
      c.quant = q.first;
      c.group = q.second;
      c.coder = coder::kind::rans;
      c.tile_rows = 64;
      c.tile_cols = 256;
      c.n = 192;
      c.k = 1024;
      c.batch = batch;
      c.data = 1;
      run_case(c, rng);
    }
}

TEST_CASE("fused dequantize [quick]: bit-exact with the host decoder") {
  TILECODEC_SEEDED_RNG(rng);
  for (int i = 0; i < 16; ++i) {
    const auto qs = quantizations();
    const auto q = qs[rng() % qs.size()];
    gemm_case c;
    c.quant = q.first;
    c.group = q.second;
    c.source = rng() & 1 ? dtype::bf16 : dtype::f16;
    c.coder = rng() % 3 == 0 ? coder::kind::raw : coder::kind::fixed;
    c.order = rng() % 3 == 0 ? symbol_order::row_major : symbol_order::mma;
    c.n = 1 + rng() % 400;
    c.k = i % 2 ? 16 * (1 + rng() % 40) : 1 + rng() % 700;
    c.data = int(rng() % 3);
    INFO(describe(c));
    const weights w = make_weights(rng, c.source, c.n, c.k, c.data);
    const encoded_tensor enc = host::encode(w.bytes.data(), w.type, {c.n, c.k}, params_of(c));
    const dtype out = c.quant == quant::kind::lossless ? c.source : (rng() & 1 ? dtype::bf16 : dtype::f16);
    const std::uint64_t ld = c.k + (rng() & 1 ? 0 : 16 * (rng() % 3));
    std::vector<std::uint16_t> expect(c.n * c.k);
    REQUIRE(host::decode(enc.view(), expect.data(), out, expect.size() * 2) == status::success);
    device_buffer dw(enc.size()), dout(c.n * ld * 2), dst(4);
    TC_CUDA(cudaMemcpy(dw.p, enc.bytes().data(), enc.size(), cudaMemcpyHostToDevice));
    TC_CUDA(cudaMemset(dout.p, 0xff, dout.bytes));
    TC_CUDA(cudaMemset(dst.p, 0, 4));
    fused::matrix_ref ref;
    REQUIRE(fused::make_matrix_ref(enc.view(), dw.p, ref) == status::success);
    REQUIRE(fused::dequantize_async(ref, dout.p, out, ld, dst.as<std::uint32_t>(), 0) == status::success);
    TC_CUDA(cudaDeviceSynchronize());
    std::vector<std::uint16_t> got(c.n * ld);
    TC_CUDA(cudaMemcpy(got.data(), dout.p, got.size() * 2, cudaMemcpyDeviceToHost));
    std::uint32_t st = 99;
    TC_CUDA(cudaMemcpy(&st, dst.p, 4, cudaMemcpyDeviceToHost));
    CHECK(st == 0);
    for (std::uint64_t r = 0; r < c.n; ++r)
      for (std::uint64_t k = 0; k < c.k; ++k) {
        INFO("row " << r << " col " << k);
        REQUIRE(got[r * ld + k] == expect[r * c.k + k]);
      }
  }
}

TEST_CASE("fused gemm: real weights (all-MiniLM-L6-v2, bf16): lossless, int8, int4, fixed and rANS") {
  const std::string path = std::string(TILECODEC_DATA_DIR) + "/minilm/model.bf16.safetensors";
  if (!std::ifstream(path).good()) {
    MESSAGE("skipped: " << path << " not found");
    return;
  }
  TILECODEC_SEEDED_RNG(rng);
  const safetensors::file file(path);
  const std::string names[] = {"encoder.layer.0.attention.self.query.weight", "encoder.layer.3.intermediate.dense.weight",
                               "encoder.layer.5.output.dense.weight"};
  for (const std::string& name : names) {
    const auto& info = file.at(name);
    REQUIRE(info.type == dtype::bf16);
    const auto bytes = file.data(info);
    weights w{std::vector<std::uint8_t>(reinterpret_cast<const std::uint8_t*>(bytes.data),
                                        reinterpret_cast<const std::uint8_t*>(bytes.data) + bytes.size),
              dtype::bf16};
    for (auto q : {std::make_pair(quant::kind::lossless, 0u), std::make_pair(quant::kind::int8_rowwise, 0u),
                   std::make_pair(quant::kind::int4_group, 128u)})
      for (coder::kind cd : {coder::kind::fixed, coder::kind::rans})
        for (std::uint32_t batch : {1u, 4u}) {
          gemm_case c;
          c.quant = q.first;
          c.group = q.second;
          c.coder = cd;
          c.tile_rows = cd == coder::kind::rans ? 64 : 256;
          c.n = info.shape[0];
          c.k = info.shape[1];
          c.batch = batch;
          const double rel = run_case(c, rng, &w);
          MESSAGE(name << " quant " << int(c.quant) << " coder " << int(cd) << " batch " << batch << ": rel err " << rel);
        }
  }
}

TEST_CASE("fused gemm [quick]: corrupted weights stay in bounds and raise the status word") {
  TILECODEC_SEEDED_RNG(rng);
  int raised = 0, runs = 0;
  for (int trial = 0; trial < 24; ++trial) {
    gemm_case c;
    const auto qs = quantizations();
    const auto q = qs[rng() % qs.size()];
    c.quant = q.first;
    c.group = q.second;
    c.coder = trial % 3 == 0 ? coder::kind::rans : coder::kind::fixed;
    c.tile_rows = c.coder == coder::kind::rans ? 64 : 128;
    c.tile_cols = 128;
    c.n = c.coder == coder::kind::rans ? 128 : 200;
    c.k = c.coder == coder::kind::rans ? 384 : 300;
    c.batch = 1 + std::uint32_t(rng() % 9);
    c.x_type = c.quant == quant::kind::lossless ? c.source : dtype::bf16;
    c.data = 1;
    INFO(describe(c));
    const weights w = make_weights(rng, c.source, c.n, c.k, c.data);
    const encoded_tensor enc = host::encode(w.bytes.data(), w.type, {c.n, c.k}, params_of(c));
    fused::matrix_ref ref;
    device_buffer dw(enc.size()), dx(c.batch * c.k * 2), dy(c.batch * c.n * 4), dst(4);
    TC_CUDA(cudaMemset(dx.p, 0x3c, dx.bytes));
    const auto& h = enc.header();
    for (int flavor = 0; flavor < 4; ++flavor) {
      std::vector<std::uint8_t> bytes = enc.bytes();
      if (flavor == 0) {  // payload bits
        for (int f = 0; f < 16; ++f) bytes[h.payload_offset + rng() % h.payload_bytes] ^= std::uint8_t(1u << (rng() % 8));
      } else if (flavor == 1) {  // a lying tile index entry (in or out of the payload)
        const std::uint64_t t = 1 + rng() % h.tile_count;
        const std::uint64_t v = rng() % 2 ? rng() : (rng() % (h.payload_bytes + 64)) & ~std::uint64_t(15);
        std::memcpy(bytes.data() + h.index_offset + 8 * t, &v, 8);
      } else if (flavor == 2) {  // row tables and escape entries: large values everywhere in a tile
        for (int f = 0; f < 64; ++f) bytes[h.payload_offset + rng() % h.payload_bytes] = 0xff;
      } else {  // the frequency table (rANS) or scales and raw plane
        const std::uint64_t o = h.table_bytes ? h.table_offset : h.scales_offset;
        const std::uint64_t n = h.table_bytes ? h.table_bytes : std::max<std::uint64_t>(h.scales_bytes + h.raw_bytes, 1);
        for (int f = 0; f < 8; ++f) bytes[o + rng() % n] ^= 0x5a;
      }
      // The kernel trusts the header fields make_matrix_ref copies (from the original parse):
      // everything the device reads from the bytes is what is corrupted here.
      TC_CUDA(cudaMemcpy(dw.p, bytes.data(), bytes.size(), cudaMemcpyHostToDevice));
      REQUIRE(fused::make_matrix_ref(enc.view(), dw.p, ref) == status::success);
      TC_CUDA(cudaMemset(dst.p, 0, 4));
      REQUIRE(fused::gemm_async(ref, dx.p, c.x_type, c.k, c.batch, dy.p, dtype::f32, c.n, nullptr, 0,
                                dst.as<std::uint32_t>(), 0) == status::success);
      TC_CUDA(cudaDeviceSynchronize());
      std::uint32_t st = 0;
      TC_CUDA(cudaMemcpy(&st, dst.p, 4, cudaMemcpyDeviceToHost));
      raised += st != 0;
      ++runs;
    }
  }
  MESSAGE(raised << " of " << runs << " corrupted runs raised the status word");
  CHECK(raised > 0);
}

TEST_CASE("fused gemm [quick]: arguments and unsupported tensors") {
  TILECODEC_SEEDED_RNG(rng);
  const weights w = make_weights(rng, dtype::bf16, 128, 64, 0);
  const encoded_tensor enc = host::encode<fused::lossless_codec>(w.bytes.data(), dtype::bf16, {128, 64});
  device_buffer dw(enc.size()), dx(64 * 2), dy(128 * 4);
  TC_CUDA(cudaMemcpy(dw.p, enc.bytes().data(), enc.size(), cudaMemcpyHostToDevice));
  fused::matrix_ref ref;
  REQUIRE(fused::make_matrix_ref(enc.view(), dw.p, ref) == status::success);
  CHECK(fused::gemm_async(ref, dx.p, dtype::f16, 64, 1, dy.p, dtype::f32, 128, nullptr, 0, nullptr, 0) == status::unsupported);
  CHECK(fused::gemm_async(ref, dx.p, dtype::bf16, 63, 1, dy.p, dtype::f32, 128, nullptr, 0, nullptr, 0) == status::invalid_argument);
  CHECK(fused::gemm_async(ref, nullptr, dtype::bf16, 64, 1, dy.p, dtype::f32, 128, nullptr, 0, nullptr, 0) == status::invalid_argument);
  CHECK(fused::gemm_async(ref, dx.p, dtype::bf16, 64, 0, dy.p, dtype::f32, 128, nullptr, 0, nullptr, 0) == status::success);
  CHECK(fused::gemm_async(ref, dx.p, dtype::bf16, 64, 1, dy.p, dtype::i8, 128, nullptr, 0, nullptr, 0) == status::unsupported);
  // Tensors the kernels do not serve.
  const auto vec = host::encode<fused::int8_codec>(w.bytes.data(), dtype::bf16, {128 * 64});
  CHECK(fused::make_matrix_ref(vec.view(), dw.p, ref) == status::unsupported);
  const auto f32 = host::encode<fused::lossless_codec>(make_weights(rng, dtype::f32, 64, 64, 0).bytes.data(), dtype::f32, {64, 64});
  CHECK(fused::make_matrix_ref(f32.view(), dw.p, ref) == status::unsupported);
  const auto rows32 = host::encode<codec<tile<32, 256>, quant::int8_rowwise, coder::fixed>>(w.bytes.data(), dtype::bf16, {128, 64});
  CHECK(fused::make_matrix_ref(rows32.view(), dw.p, ref) == status::unsupported);
  const auto rans_row = host::encode<codec<tile<64, 256>, quant::int8_rowwise, coder::rans<12, 32>>>(w.bytes.data(), dtype::bf16, {128, 64});
  CHECK(fused::make_matrix_ref(rans_row.view(), dw.p, ref) == status::unsupported);
  // A plane coding the kernels do not know (a newer coder's id) is refused, never decoded as stored.
  REQUIRE(fused::make_matrix_ref(enc.view(), dw.p, ref) == status::success);
  ref.coding = static_cast<plane_coding>(200);
  CHECK(fused::gemm_async(ref, dx.p, dtype::bf16, 64, 1, dy.p, dtype::f32, 128, nullptr, 0, nullptr, 0) == status::unsupported);
  CHECK(fused::dequantize_async(ref, dy.p, dtype::bf16, 64, nullptr, 0) == status::unsupported);
}

TEST_CASE("fused linear [quick]: built from a view of bytes held elsewhere (a container blob), the owning layer's bits") {
  TILECODEC_SEEDED_RNG(rng);
  constexpr std::uint64_t n = 320, k = 512;
  host::synthetic_params sp;
  sp.seed = rng();
  const std::vector<std::uint16_t> b = host::to_half_bits(host::synthetic_weights(n, k, sp), dtype::bf16);
  format_params p = fused::int8_codec::params();
  p.prob_bits = 8;  // what the int8-fused preset writes
  const encoded_tensor enc = host::encode(b.data(), dtype::bf16, {n, k}, p);
  // The bytes at an offset inside a larger buffer, as a container blob read from a file.
  std::vector<std::uint8_t> blob(4096 + enc.size(), 0xa5);
  std::copy(enc.bytes().begin(), enc.bytes().end(), blob.begin() + 4096);
  encoded_tensor_view view;
  std::string why;
  REQUIRE_MESSAGE(encoded_tensor_view::parse(blob.data() + 4096, enc.size(), view, &why) == status::success, why);
  const fused::linear owning(enc, 4), viewed(view, 4);
  CHECK(viewed.device_bytes() == owning.device_bytes());
  constexpr std::uint32_t batch = 4;
  device_buffer x(batch * k * 2), y(batch * n * 4);
  std::vector<std::uint16_t> xh(batch * k);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (auto& v : xh) v = float_to_bf16(g(rng));
  TC_CUDA(cudaMemcpy(x.p, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
  auto run = [&](const fused::linear& layer) {
    TC_CUDA(cudaMemset(y.p, 0xff, batch * n * 4));  // NaN poison
    REQUIRE(layer.forward_async(x.p, dtype::bf16, batch, y.p, dtype::f32, nullptr) == status::success);
    TC_CUDA(cudaDeviceSynchronize());
    TC_CUDA(cudaGetLastError());
    std::vector<std::uint32_t> out(batch * n);
    TC_CUDA(cudaMemcpy(out.data(), y.p, out.size() * 4, cudaMemcpyDeviceToHost));
    return out;
  };
  const std::vector<std::uint32_t> a = run(owning), c = run(viewed);
  CHECK(a == c);
  std::uint64_t finite = 0;
  for (std::uint32_t v : a) finite += (v & 0x7f800000u) != 0x7f800000u;
  CHECK(finite == a.size());
  // A tensor the fused kernels do not serve (one dimension) throws, from a view too.
  const encoded_tensor vec = host::encode<fused::int8_codec>(b.data(), dtype::bf16, {n * k});
  CHECK_THROWS_AS(fused::linear(vec.view()), error);
}

TEST_CASE("fused gemm [quick]: calls launched to overlap the previous one give the same bits") {
  // A chain of layers, each one's output the next one's input, run with ordinary launches and
  // with gemm_launch::overlap_previous (each call may start while the one before still runs and
  // must wait for it before reading x or writing y and the workspace). int8 and lossless layers
  // alternate (stream path at batch 1 and 4, batch 9-16 path at 16); three passes of the chain.
  TILECODEC_SEEDED_RNG(rng);
  constexpr std::uint64_t n = 768;
  constexpr int layers = 6, passes = 3;
  std::vector<encoded_tensor> encs;
  for (int l = 0; l < layers; ++l) {
    host::synthetic_params sp;
    sp.seed = rng();
    const std::vector<std::uint16_t> b = host::to_half_bits(host::synthetic_weights(n, n, sp), dtype::bf16);
    encs.push_back(l % 2 ? host::encode<fused::lossless_codec>(b.data(), dtype::bf16, {n, n})
                         : host::encode<fused::int8_codec>(b.data(), dtype::bf16, {n, n}));
  }
  for (std::uint32_t batch : {1u, 4u, 16u}) {
    CAPTURE(batch);
    std::vector<std::unique_ptr<fused::linear>> chain;
    for (const auto& e : encs) chain.push_back(std::make_unique<fused::linear>(e, batch));
    std::vector<std::unique_ptr<device_buffer>> acts;
    for (int l = 0; l <= layers; ++l) acts.push_back(std::make_unique<device_buffer>(batch * n * 2));
    std::vector<std::uint16_t> x(batch * n);
    std::normal_distribution<float> g(0.0f, 1.0f);
    for (auto& e : x) e = float_to_bf16(g(rng));
    TC_CUDA(cudaMemcpy(acts[0]->p, x.data(), x.size() * 2, cudaMemcpyHostToDevice));
    device_buffer status_word(4);
    cudaStream_t stream;
    TC_CUDA(cudaStreamCreate(&stream));
    auto run_chain = [&](bool overlap) {
      for (int l = 1; l <= layers; ++l) TC_CUDA(cudaMemsetAsync(acts[l]->p, 0xff, batch * n * 2, stream));  // NaN poison
      TC_CUDA(cudaMemsetAsync(status_word.p, 0, 4, stream));
      fused::gemm_launch launch;
      launch.overlap_previous = overlap;
      for (int p = 0; p < passes; ++p)
        for (int l = 0; l < layers; ++l)
          REQUIRE(chain[l]->forward_async(acts[l]->p, dtype::bf16, batch, acts[l + 1]->p, dtype::bf16, stream,
                                          static_cast<std::uint32_t*>(status_word.p), 0, 0, launch) == status::success);
      TC_CUDA(cudaStreamSynchronize(stream));
      TC_CUDA(cudaGetLastError());
      std::uint32_t s = 1;
      TC_CUDA(cudaMemcpy(&s, status_word.p, 4, cudaMemcpyDeviceToHost));
      CHECK(s == 0);
      std::vector<std::uint16_t> all(layers * batch * n);
      for (int l = 1; l <= layers; ++l)
        TC_CUDA(cudaMemcpy(all.data() + (l - 1) * batch * n, acts[l]->p, batch * n * 2, cudaMemcpyDeviceToHost));
      return all;
    };
    const std::vector<std::uint16_t> plain = run_chain(false), overlapped = run_chain(true);
    std::uint64_t differ = 0, nonzero = 0;
    for (std::size_t i = 0; i < plain.size(); ++i) {
      differ += plain[i] != overlapped[i];
      nonzero += (plain[i] & 0x7fffu) != 0 && (plain[i] & 0x7f80u) != 0x7f80u;  // finite, not zero
    }
    CHECK(differ == 0);
    CHECK(nonzero == plain.size());  // every output written (no poison left) and the chain stays away from 0
    TC_CUDA(cudaStreamDestroy(stream));
  }
}

TEST_CASE("fused plan [quick]: batch 9-16 kernels with the code-word ring get longer pieces") {
  // 4096 x 4096 on 132 multiprocessors: 64 strips of 256 units; two blocks per multiprocessor
  // are four splits a strip, one block two (PERFORMANCE.md 6.18).
  fused::matrix_ref w;
  w.layout.rows = 4096;
  w.layout.cols = 4096;
  w.coding = plane_coding::fixed;
  w.order = symbol_order::mma;
  w.quant = quant::kind::int8_rowwise;
  w.code_bits = 8;
  const bool ring = fused::detail::ring_words_codes(w.quant, w.code_bits);
  CHECK(fused::plan_gemm(w, 4, 132).splits == 4);
  CHECK(fused::plan_gemm(w, 16, 132).splits == (ring ? 2u : 4u));
  w.code_bits = 7;  // codes that escape: no word ring
  CHECK(fused::plan_gemm(w, 16, 132).splits == 4);
}

TEST_CASE("fused gemm [quick]: a strip split in two reduced in a cluster gives the workspace path's bits") {
  // 512 input columns give two splits per strip (32 units, at least 16 per block); with
  // gemm_launch::cluster_reduce the two blocks add their sums in distributed shared memory, without
  // it through the workspace. Same order of the same fp32 terms: the same bits. Stream path
  // (int8, lossless), batch 9-16 path and chunk path (int4); a strip of 8 rows at the edge.
  TILECODEC_SEEDED_RNG(rng);
  for (const std::uint64_t n : {256ull, 200ull}) {
    constexpr std::uint64_t k = 512;
    host::synthetic_params sp;
    sp.seed = rng();
    const std::vector<std::uint16_t> b = host::to_half_bits(host::synthetic_weights(n, k, sp), dtype::bf16);
    const encoded_tensor encs[] = {host::encode<fused::int8_codec>(b.data(), dtype::bf16, {n, k}),
                                   host::encode<fused::lossless_codec>(b.data(), dtype::bf16, {n, k}),
                                   host::encode<fused::int4_codec>(b.data(), dtype::bf16, {n, k})};
    for (const encoded_tensor& e : encs) {
      const fused::linear layer(e, 16);
      for (std::uint32_t batch : {1u, 4u, 16u}) {
        CAPTURE(n);
        CAPTURE(batch);
        CAPTURE(int(e.header().params.quant));
        REQUIRE(fused::plan_gemm(layer.ref(), batch).splits == 2);
        device_buffer x(batch * k * 2), y(batch * n * 4), status_word(4);
        std::vector<std::uint16_t> xh(batch * k);
        std::normal_distribution<float> g(0.0f, 1.0f);
        for (auto& v : xh) v = float_to_bf16(g(rng));
        TC_CUDA(cudaMemcpy(x.p, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
        auto run = [&](bool cluster) {
          TC_CUDA(cudaMemset(y.p, 0xff, batch * n * 4));  // NaN poison
          TC_CUDA(cudaMemset(status_word.p, 0, 4));
          fused::gemm_launch launch;
          launch.cluster_reduce = cluster;
          REQUIRE(layer.forward_async(x.p, dtype::bf16, batch, y.p, dtype::f32, nullptr,
                                      static_cast<std::uint32_t*>(status_word.p), 0, 0, launch) == status::success);
          TC_CUDA(cudaDeviceSynchronize());
          TC_CUDA(cudaGetLastError());
          std::uint32_t s = 1;
          TC_CUDA(cudaMemcpy(&s, status_word.p, 4, cudaMemcpyDeviceToHost));
          CHECK(s == 0);
          std::vector<std::uint32_t> out(batch * n);
          TC_CUDA(cudaMemcpy(out.data(), y.p, out.size() * 4, cudaMemcpyDeviceToHost));
          return out;
        };
        const std::vector<std::uint32_t> in_cluster = run(true), in_workspace = run(false);
        std::uint64_t differ = 0, finite = 0;
        for (std::size_t i = 0; i < in_cluster.size(); ++i) {
          differ += in_cluster[i] != in_workspace[i];
          finite += (in_cluster[i] & 0x7f800000u) != 0x7f800000u;
        }
        CHECK(differ == 0);
        CHECK(finite == in_cluster.size());  // every output written
      }
    }
  }
}
