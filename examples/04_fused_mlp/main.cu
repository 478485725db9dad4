// Example 04: a Llama-style MLP block, y = W_down (silu(W_gate x) * (W_up x)), whose three weight
// matrices stay compressed in GPU memory and are decoded inside the matrix products
// (tilecodec/fused). Checked against the same block computed from the uncompressed weights:
// in float64 on the host, and with cuBLAS on the dense bf16 weights.
//
//   example_04_fused_mlp [hidden=1024] [intermediate=2816] [batch=4]
//
// Four weight formats: lossless bf16 (bit-exact weights, ~11.5 bits each), int8 per-row (~7.3
// bits each, fixed-length codes with escapes), the same int8 with 8-bit codes (no escapes: the
// faster fused product) and int4 per group of 128 (4-bit codes, ~4.1 bits each). Each format also
// goes through a model file (mode 1 -> 3): the three matrices are written to a container, the file
// is opened (memory-mapped) and the layers are built from views of its blobs; the block must give
// the same bits. Exit code 0 when every check passes.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <tilecodec/tilecodec.hpp>
#include <tilecodec/format/container.hpp>
#include <tilecodec/fused/linear.cuh>
#include <tilecodec/host/synthetic.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

using namespace tilecodec;

#define CHECK_CUDA(x)                                                                     \
  do {                                                                                    \
    const cudaError_t e_ = (x);                                                           \
    if (e_ != cudaSuccess) {                                                              \
      std::fprintf(stderr, "%s failed: %s\n", #x, cudaGetErrorString(e_));                \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

// h = silu(g) * u, rounded to bf16 for the next projection.
__global__ void silu_mul(const float* g, const float* u, std::uint16_t* h, std::size_t n) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) h[i] = float_to_bf16(g[i] / (1.0f + expf(-g[i])) * u[i]);
}

struct mlp_weights {
  std::vector<std::uint16_t> gate, up, down;  // bf16 bits, row-major [out][in]
};

// Float64 reference from the weights the compressed model means (host-decoded).
std::vector<double> reference(const std::vector<double>& wg, const std::vector<double>& wu,
                              const std::vector<double>& wd, const std::vector<std::uint16_t>& x, int hidden,
                              int inter, int batch) {
  std::vector<double> y(std::size_t(batch) * hidden, 0.0);
  std::vector<double> h(inter);
  for (int b = 0; b < batch; ++b) {
    for (int i = 0; i < inter; ++i) {
      double g = 0, u = 0;
      for (int k = 0; k < hidden; ++k) {
        const double xv = bf16_to_float(x[std::size_t(b) * hidden + k]);
        g += wg[std::size_t(i) * hidden + k] * xv;
        u += wu[std::size_t(i) * hidden + k] * xv;
      }
      h[i] = bf16_to_float(float_to_bf16(float(g / (1.0 + std::exp(-g)) * u)));
    }
    for (int o = 0; o < hidden; ++o) {
      double s = 0;
      for (int i = 0; i < inter; ++i) s += wd[std::size_t(o) * inter + i] * h[i];
      y[std::size_t(b) * hidden + o] = s;
    }
  }
  return y;
}

std::vector<double> decoded(const encoded_tensor& enc) {
  std::vector<float> f(enc.view().elements());
  std::vector<double> d(f.size());
  if (enc.header().params.quant == quant::kind::lossless) {
    std::vector<std::uint16_t> bits(f.size());
    if (host::decode(enc.view(), bits.data(), dtype::bf16, bits.size() * 2) != status::success) std::exit(1);
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = bf16_to_float(bits[i]);
  } else {
    if (host::decode(enc.view(), f.data(), dtype::f32, f.size() * 4) != status::success) std::exit(1);
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = f[i];
  }
  return d;
}

double relative_error(const std::vector<float>& got, const std::vector<double>& want) {
  double e = 0, r = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    e += (got[i] - want[i]) * (got[i] - want[i]);
    r += want[i] * want[i];
  }
  return std::sqrt(e / r);
}

int main(int argc, char** argv) {
  const int hidden = argc > 1 ? std::atoi(argv[1]) : 1024;
  const int inter = argc > 2 ? std::atoi(argv[2]) : 2816;
  const int batch = argc > 3 ? std::atoi(argv[3]) : 4;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("example_04_fused_mlp: no CUDA device, nothing to run\n");
    return 0;
  }

  // Llama-like weights (seeded), activations.
  mlp_weights w;
  host::synthetic_params sp;
  sp.seed = 1;
  w.gate = host::to_half_bits(host::synthetic_weights(inter, hidden, sp), dtype::bf16);
  sp.seed = 2;
  w.up = host::to_half_bits(host::synthetic_weights(inter, hidden, sp), dtype::bf16);
  sp.seed = 3;
  w.down = host::to_half_bits(host::synthetic_weights(hidden, inter, sp), dtype::bf16);
  std::vector<std::uint16_t> x(std::size_t(batch) * hidden);
  std::mt19937_64 rng(4);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (auto& v : x) v = float_to_bf16(g(rng));

  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));
  std::uint16_t *d_x, *d_h;
  float *d_g, *d_u, *d_y;
  std::uint32_t* d_status;
  CHECK_CUDA(cudaMalloc(&d_x, x.size() * 2));
  CHECK_CUDA(cudaMalloc(&d_h, std::size_t(batch) * inter * 2));
  CHECK_CUDA(cudaMalloc(&d_g, std::size_t(batch) * inter * 4));
  CHECK_CUDA(cudaMalloc(&d_u, std::size_t(batch) * inter * 4));
  CHECK_CUDA(cudaMalloc(&d_y, std::size_t(batch) * hidden * 4));
  CHECK_CUDA(cudaMalloc(&d_status, 4));
  CHECK_CUDA(cudaMemset(d_status, 0, 4));
  CHECK_CUDA(cudaMemcpy(d_x, x.data(), x.size() * 2, cudaMemcpyHostToDevice));
  const std::size_t n_inter = std::size_t(batch) * inter;
  const unsigned blocks = unsigned((n_inter + 255) / 256);

  // The same block on the dense bf16 weights with cuBLAS: the uncompressed model on the GPU.
  std::vector<float> y_dense(std::size_t(batch) * hidden);
  {
    cublasHandle_t handle;
    cublasCreate(&handle);
    cublasSetStream(handle, stream);
    std::uint16_t *d_wg, *d_wu, *d_wd;
    CHECK_CUDA(cudaMalloc(&d_wg, w.gate.size() * 2));
    CHECK_CUDA(cudaMalloc(&d_wu, w.up.size() * 2));
    CHECK_CUDA(cudaMalloc(&d_wd, w.down.size() * 2));
    CHECK_CUDA(cudaMemcpy(d_wg, w.gate.data(), w.gate.size() * 2, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(d_wu, w.up.data(), w.up.size() * 2, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(d_wd, w.down.data(), w.down.size() * 2, cudaMemcpyHostToDevice));
    const float one = 1.0f, zero = 0.0f;
    auto dense = [&](const void* wt, int out, int in, const void* xin, float* yout) {
      // Row-major W [out][in] is column-major W^T: Y^T (out x batch) = op_T(W^T) X^T.
      cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, out, batch, in, &one, wt, CUDA_R_16BF, in, xin, CUDA_R_16BF, in,
                   &zero, yout, CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    };
    dense(d_wg, inter, hidden, d_x, d_g);
    dense(d_wu, inter, hidden, d_x, d_u);
    silu_mul<<<blocks, 256, 0, stream>>>(d_g, d_u, d_h, n_inter);
    dense(d_wd, hidden, inter, d_h, d_y);
    CHECK_CUDA(cudaStreamSynchronize(stream));
    CHECK_CUDA(cudaMemcpy(y_dense.data(), d_y, y_dense.size() * 4, cudaMemcpyDeviceToHost));
    cudaFree(d_wg);
    cudaFree(d_wu);
    cudaFree(d_wd);
    cublasDestroy(handle);
  }

  // The fused block: three compressed projections and the gating; y on the host.
  auto run_block = [&](const char* name, const fused::linear& gate, const fused::linear& up, const fused::linear& down,
                       std::vector<float>& y) {
    status s = gate.forward_async(d_x, dtype::bf16, batch, d_g, dtype::f32, stream, d_status);
    if (s == status::success) s = up.forward_async(d_x, dtype::bf16, batch, d_u, dtype::f32, stream, d_status);
    silu_mul<<<blocks, 256, 0, stream>>>(d_g, d_u, d_h, n_inter);
    CHECK_CUDA(cudaGetLastError());
    if (s == status::success) s = down.forward_async(d_h, dtype::bf16, batch, d_y, dtype::f32, stream, d_status);
    CHECK_CUDA(cudaStreamSynchronize(stream));
    std::uint32_t st = 0;
    CHECK_CUDA(cudaMemcpy(&st, d_status, 4, cudaMemcpyDeviceToHost));
    if (s != status::success || st != 0) {
      std::printf("%s: fused MLP failed (%s, status word %u)\n", name, to_string(s), st);
      std::exit(1);
    }
    y.resize(std::size_t(batch) * hidden);
    CHECK_CUDA(cudaMemcpy(y.data(), d_y, y.size() * 4, cudaMemcpyDeviceToHost));
  };
  const std::string file = (std::filesystem::temp_directory_path() / "tilecodec_example_04.tcm").string();

  bool ok = true;
  std::vector<double> y_lossless_ref;
  for (int format = 0; format < 4; ++format) {
    const char* names[] = {"lossless bf16", "int8 per-row", "int8, 8-bit", "int4 g128"};
    const char* name = names[format];
    format_params params = format == 0   ? fused::lossless_codec::params()
                           : format == 3 ? fused::int4_codec::params()
                                         : fused::int8_codec::params();
    // Format 2: int8 codes pinned at 8 bits (no escapes): about 10% more bytes than the smallest
    // width, faster fused products at every batch size (docs/PERFORMANCE.md 6.13).
    if (format == 2) params.prob_bits = 8;
    const encoded_tensor eg = host::encode(w.gate.data(), dtype::bf16, {std::uint64_t(inter), std::uint64_t(hidden)}, params);
    const encoded_tensor eu = host::encode(w.up.data(), dtype::bf16, {std::uint64_t(inter), std::uint64_t(hidden)}, params);
    const encoded_tensor ed = host::encode(w.down.data(), dtype::bf16, {std::uint64_t(hidden), std::uint64_t(inter)}, params);
    const fused::linear gate(eg, batch), up(eu, batch), down(ed, batch);
    std::vector<float> y;
    run_block(name, gate, up, down, y);

    // Mode 1 -> 3: the same matrices through a model file. The layers are built from views of the
    // mapped blobs (copied to the GPU; the file may close afterwards).
    bool same_bits = false;
    {
      container::writer out(file);
      out.add_encoded("mlp.gate_proj.weight", eg.view(), container::checksum(w.gate.data(), w.gate.size() * 2));
      out.add_encoded("mlp.up_proj.weight", eu.view(), container::checksum(w.up.data(), w.up.size() * 2));
      out.add_encoded("mlp.down_proj.weight", ed.view(), container::checksum(w.down.data(), w.down.size() * 2));
      out.finish();
      const container::file model(file);
      auto layer = [&](const char* tensor) {
        const container::entry& e = model.at(tensor);
        return fused::linear(container::open_encoded(e, model.blob(e), e.size, model.path()), batch);
      };
      const fused::linear fg = layer("mlp.gate_proj.weight"), fu = layer("mlp.up_proj.weight"), fd = layer("mlp.down_proj.weight");
      std::vector<float> y_file;
      run_block(name, fg, fu, fd, y_file);
      same_bits = std::memcmp(y_file.data(), y.data(), y.size() * 4) == 0;
    }
    std::filesystem::remove(file);

    const std::vector<double> ref = reference(decoded(eg), decoded(eu), decoded(ed), x, hidden, inter, batch);
    const double err = relative_error(y, ref);
    const double dense_bytes = 2.0 * (2.0 * inter * hidden + double(hidden) * inter);
    const double held = double(gate.device_bytes() + up.device_bytes() + down.device_bytes());
    std::printf("%-14s weights %.2f MB on the GPU (dense bf16 %.2f MB, %.1f%%); relative error vs float64 reference %.2e",
                name, held / 1e6, dense_bytes / 1e6, 100.0 * held / dense_bytes, err);
    bool pass = err < 2e-3 && same_bits;
    if (format == 0) {
      // Lossless: the reference is the uncompressed model itself; cuBLAS on the dense weights agrees.
      y_lossless_ref = ref;
      std::vector<double> dense(y_dense.begin(), y_dense.end());
      double d = 0, r = 0;
      for (std::size_t i = 0; i < y.size(); ++i) d += (y[i] - dense[i]) * (y[i] - dense[i]), r += dense[i] * dense[i];
      const double vs_dense = std::sqrt(d / r);
      std::printf(", vs cuBLAS on the dense weights %.2e", vs_dense);
      pass = pass && vs_dense < 2e-3;
    } else {
      std::printf(", quantization error vs the uncompressed model %.2e", relative_error(y, y_lossless_ref));
    }
    std::printf("; from a model file: %s  %s\n", same_bits ? "same bits" : "DIFFERENT", pass ? "OK" : "FAILED");
    ok = ok && pass;
  }
  cudaFree(d_x);
  cudaFree(d_h);
  cudaFree(d_g);
  cudaFree(d_u);
  cudaFree(d_y);
  cudaFree(d_status);
  cudaStreamDestroy(stream);
  return ok ? 0 : 1;
}
