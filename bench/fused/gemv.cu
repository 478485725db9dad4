// Fused decode-GEMV/GEMM (fused/gemm.cuh) against cuBLAS fp16 / bf16 on the dense weights and
// against decode-then-cuBLAS, in the same run. Llama-8B shapes (N x K = outputs x inputs), batch
// 1, 4, 16. Seeded Llama-like weights (host/synthetic.hpp).
//
// Timing: CUDA events around a CUDA graph of R back-to-back calls (launch gaps hidden), weights
// rotated over enough copies to exceed the 50 MB L2 several times, manual time per call. Counters:
// bits per weight of what the call reads, weight bytes per second, and the median of the
// baseline measured in this run when there is one.
//
//   bench_gemv --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//   bench_gemv --benchmark_filter='4096x14336/b1'
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <tilecodec/tilecodec.hpp>
#include <tilecodec/fused/dequantize.cuh>
#include <tilecodec/fused/gemm.cuh>
#include <tilecodec/host/synthetic.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace tilecodec;

namespace {

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench_gemv: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}
void cublas_ok(cublasStatus_t e, const char* what) {
  if (e != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "bench_gemv: %s: cuBLAS status %d\n", what, int(e));
    std::exit(1);
  }
}
#define CUDA_OK(x) cuda_ok((x), #x)
#define CUBLAS_OK(x) cublas_ok((x), #x)

struct shape {
  std::uint64_t n, k;
  std::string name() const { return std::to_string(n) + "x" + std::to_string(k); }
};

enum class variant {
  cublas_f16,
  cublas_bf16,
  fused_int8,           // fixed coder, mma order, x fp16
  fused_int8_k8,        // the same with the code width pinned at 8 bits: no escapes (format_params::prob_bits)
  fused_int4,           // fixed coder (4-bit codes), group 128, x fp16
  fused_lossless_bf16,  // fixed coder, the byte split (4-bit exponent codes + raw bytes), x bf16
  fused_int8_rans,      // rANS 64 x 256 tiles, mma order
  fused_lossless_rans,
  decode_cublas_int8,      // fused::dequantize_async to fp16, then cuBLAS
  decode_cublas_lossless,  // to bf16, then cuBLAS
  fused_int8_pdl,          // fused_int8 launched to overlap the call before (gemm_launch::overlap_previous)
  fused_lossless_pdl,
  fused_int8_k8_xbf16,     // fused_int8_k8 and fused_int4 with bf16 weights and activations (the usual LLM case)
  fused_int4_xbf16,
};

const char* name_of(variant v) {
  switch (v) {
    case variant::cublas_f16: return "cublas_f16";
    case variant::cublas_bf16: return "cublas_bf16";
    case variant::fused_int8: return "fused_int8_fixed";
    case variant::fused_int8_k8: return "fused_int8_fixed_k8";
    case variant::fused_int4: return "fused_int4_fixed";
    case variant::fused_lossless_bf16: return "fused_bf16_lossless_fixed";
    case variant::fused_int8_rans: return "fused_int8_rans";
    case variant::fused_lossless_rans: return "fused_bf16_lossless_rans";
    case variant::decode_cublas_int8: return "decode_then_cublas_int8";
    case variant::decode_cublas_lossless: return "decode_then_cublas_bf16_lossless";
    case variant::fused_int8_pdl: return "fused_int8_fixed_pdl";
    case variant::fused_lossless_pdl: return "fused_bf16_lossless_fixed_pdl";
    case variant::fused_int8_k8_xbf16: return "fused_int8_fixed_k8_xbf16";
    case variant::fused_int4_xbf16: return "fused_int4_fixed_xbf16";
  }
  return "?";
}

bool is_bf16_path(variant v) {
  return v == variant::cublas_bf16 || v == variant::fused_lossless_bf16 || v == variant::fused_lossless_rans ||
         v == variant::decode_cublas_lossless || v == variant::fused_lossless_pdl || v == variant::fused_int8_k8_xbf16 ||
         v == variant::fused_int4_xbf16;
}

// Host weights of the shape being benchmarked (one shape kept at a time).
struct host_weights {
  shape s{0, 0};
  std::vector<std::uint16_t> f16, bf16;
};
host_weights& weights_for(const shape& s) {
  static host_weights w;
  if (w.s.n != s.n || w.s.k != s.k) {
    w = host_weights{};
    w.s = s;
    host::synthetic_params sp;
    sp.seed = 42;
    const std::vector<float> f = host::synthetic_weights(s.n, s.k, sp);
    w.f16 = host::to_half_bits(f, dtype::f16);
    w.bf16 = host::to_half_bits(f, dtype::bf16);
  }
  return w;
}

struct device_state {
  shape s{0, 0};
  variant v = variant::cublas_f16;
  std::vector<void*> copies;        // rotated weights (dense or encoded)
  std::vector<fused::matrix_ref> refs;
  std::uint64_t read_bytes = 0;     // bytes of one copy
  double bits_per_weight = 16;
  void* dense = nullptr;            // decode-then-cuBLAS: the decoded matrix
  void* x = nullptr;
  void* y = nullptr;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  std::uint32_t* status = nullptr;
  cublasHandle_t cublas = nullptr;
  void* cublas_workspace = nullptr;
  cudaStream_t stream = nullptr;

  ~device_state() {
    for (void* p : copies) cudaFree(p);
    cudaFree(dense);
    cudaFree(x);
    cudaFree(y);
    cudaFree(workspace);
    cudaFree(status);
    cudaFree(cublas_workspace);
    if (cublas) cublasDestroy(cublas);
    if (stream) cudaStreamDestroy(stream);
  }
};

constexpr std::uint32_t max_batch = 16;
std::map<std::string, double> baseline_ns;  // "cublas_f16/4096x4096/b1" -> median ns of the last run

device_state& state_for(const shape& s, variant v) {
  static std::unique_ptr<device_state> cur;
  if (cur && cur->s.n == s.n && cur->s.k == s.k && cur->v == v) return *cur;
  cur.reset();
  auto st = std::make_unique<device_state>();
  st->s = s;
  st->v = v;
  CUDA_OK(cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking));
  CUBLAS_OK(cublasCreate(&st->cublas));
  CUBLAS_OK(cublasSetStream(st->cublas, st->stream));
  const std::size_t cublas_ws = 32u << 20;
  CUDA_OK(cudaMalloc(&st->cublas_workspace, cublas_ws));
  CUBLAS_OK(cublasSetWorkspace(st->cublas, st->cublas_workspace, cublas_ws));
  host_weights& w = weights_for(s);
  const bool bf16 = is_bf16_path(v);
  std::vector<std::uint8_t> bytes;
  encoded_tensor enc;
  if (v == variant::cublas_f16 || v == variant::cublas_bf16) {
    const auto& src = bf16 ? w.bf16 : w.f16;
    bytes.assign(reinterpret_cast<const std::uint8_t*>(src.data()), reinterpret_cast<const std::uint8_t*>(src.data() + src.size()));
  } else {
    format_params p;
    switch (v) {
      case variant::fused_int8: case variant::fused_int8_k8: case variant::decode_cublas_int8: case variant::fused_int8_pdl:
      case variant::fused_int8_k8_xbf16:
        p = fused::int8_codec::params();
        break;
      case variant::fused_int4: case variant::fused_int4_xbf16: p = fused::int4_codec::params(); break;
      case variant::fused_lossless_bf16: case variant::decode_cublas_lossless: case variant::fused_lossless_pdl:
        p = fused::lossless_codec::params();
        break;
      case variant::fused_int8_rans: p = fused::int8_rans_codec::params(); break;
      default: p = fused::lossless_rans_codec::params(); break;
    }
    if (v == variant::fused_int8_k8 || v == variant::fused_int8_k8_xbf16) p.prob_bits = 8;
    enc = host::encode(bf16 ? static_cast<const void*>(w.bf16.data()) : static_cast<const void*>(w.f16.data()),
                       bf16 ? dtype::bf16 : dtype::f16, {s.n, s.k}, p);
    bytes = enc.bytes();
  }
  st->read_bytes = bytes.size();
  st->bits_per_weight = 8.0 * double(bytes.size()) / double(s.n * s.k);
  // Rotate over enough copies to read at least 200 MB (4x the L2) between two uses of one copy.
  const std::size_t copies = std::max<std::size_t>(2, (200u << 20) / bytes.size() + 1);
  for (std::size_t c = 0; c < copies; ++c) {
    void* p = nullptr;
    CUDA_OK(cudaMalloc(&p, bytes.size()));
    CUDA_OK(cudaMemcpy(p, bytes.data(), bytes.size(), cudaMemcpyHostToDevice));
    st->copies.push_back(p);
    if (!enc.bytes().empty()) {
      fused::matrix_ref r;
      std::string why;
      if (fused::make_matrix_ref(enc.view(), p, r, &why) != status::success) {
        std::fprintf(stderr, "bench_gemv: make_matrix_ref: %s\n", why.c_str());
        std::exit(1);
      }
      st->refs.push_back(r);
    }
  }
  if (v == variant::decode_cublas_int8 || v == variant::decode_cublas_lossless)
    CUDA_OK(cudaMalloc(&st->dense, s.n * s.k * 2));
  // Activations: normal values (never zeros), rounded to the path's type.
  std::vector<std::uint16_t> x(max_batch * s.k);
  std::mt19937_64 rng(7);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (auto& e : x) e = bf16 ? float_to_bf16(g(rng)) : float_to_f16(g(rng));
  CUDA_OK(cudaMalloc(&st->x, x.size() * 2));
  CUDA_OK(cudaMemcpy(st->x, x.data(), x.size() * 2, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMalloc(&st->y, max_batch * s.n * 4));
  CUDA_OK(cudaMalloc(&st->status, 4));
  CUDA_OK(cudaMemset(st->status, 0, 4));
  if (!st->refs.empty()) {
    st->workspace_bytes = fused::gemm_workspace_bytes(st->refs[0], max_batch);
    if (st->workspace_bytes) {
      CUDA_OK(cudaMalloc(&st->workspace, st->workspace_bytes));
      CUDA_OK(cudaMemset(st->workspace, 0, st->workspace_bytes));
    }
  }
  cur = std::move(st);
  return *cur;
}

void dense_gemm(device_state& st, const void* w, bool bf16, std::uint32_t batch) {
  const float one = 1.0f, zero = 0.0f;
  const cudaDataType t = bf16 ? CUDA_R_16BF : CUDA_R_16F;
  // Row-major W (N x K) is column-major W^T (K x N): Y^T (N x B) = op_T(W^T) * X^T (K x B).
  CUBLAS_OK(cublasGemmEx(st.cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(st.s.n), int(batch), int(st.s.k), &one, w, t,
                         int(st.s.k), st.x, t, int(st.s.k), &zero, st.y, t, int(st.s.n), CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT));
}

void enqueue(device_state& st, std::size_t copy, std::uint32_t batch) {
  const bool bf16 = is_bf16_path(st.v);
  const dtype xt = bf16 ? dtype::bf16 : dtype::f16;
  switch (st.v) {
    case variant::cublas_f16:
    case variant::cublas_bf16: dense_gemm(st, st.copies[copy], bf16, batch); return;
    case variant::decode_cublas_int8:
    case variant::decode_cublas_lossless:
      if (fused::dequantize_async(st.refs[copy], st.dense, xt, st.s.k, st.status, st.stream) != status::success) {
        std::fprintf(stderr, "bench_gemv: dequantize_async failed\n");
        std::exit(1);
      }
      dense_gemm(st, st.dense, bf16, batch);
      return;
    default:
      fused::gemm_launch launch;
      launch.overlap_previous = st.v == variant::fused_int8_pdl || st.v == variant::fused_lossless_pdl;
      if (fused::gemm_async(st.refs[copy], st.x, xt, st.s.k, batch, st.y, xt, st.s.n, st.workspace, st.workspace_bytes,
                            st.status, st.stream, launch) != status::success) {
        std::fprintf(stderr, "bench_gemv: gemm_async failed\n");
        std::exit(1);
      }
  }
}

void run(benchmark::State& state, shape s, variant v, std::uint32_t batch) {
  device_state& st = state_for(s, v);
  const std::size_t copies = st.copies.size();
  // One call outside the capture: lazy initialisation (cuBLAS, kernel attributes) stays out of the graph.
  enqueue(st, 0, batch);
  CUDA_OK(cudaStreamSynchronize(st.stream));
  const std::size_t calls = std::max<std::size_t>(copies, 20);  // per graph
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_OK(cudaStreamBeginCapture(st.stream, cudaStreamCaptureModeThreadLocal));
  for (std::size_t i = 0; i < calls; ++i) enqueue(st, i % copies, batch);
  CUDA_OK(cudaStreamEndCapture(st.stream, &graph));
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t e0, e1;
  CUDA_OK(cudaEventCreate(&e0));
  CUDA_OK(cudaEventCreate(&e1));
  for (int warm = 0; warm < 2; ++warm) CUDA_OK(cudaGraphLaunch(exec, st.stream));
  CUDA_OK(cudaStreamSynchronize(st.stream));
  std::vector<double> times;
  for (auto _ : state) {
    CUDA_OK(cudaEventRecord(e0, st.stream));
    CUDA_OK(cudaGraphLaunch(exec, st.stream));
    CUDA_OK(cudaEventRecord(e1, st.stream));
    CUDA_OK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
    const double per_call = double(ms) * 1e-3 / double(calls);
    times.push_back(per_call);
    state.SetIterationTime(per_call);
  }
  std::uint32_t status_word = 0;
  CUDA_OK(cudaMemcpy(&status_word, st.status, 4, cudaMemcpyDeviceToHost));
  if (status_word != 0) state.SkipWithError("the kernel reported corrupt weights");
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  CUDA_OK(cudaEventDestroy(e0));
  CUDA_OK(cudaEventDestroy(e1));
  std::sort(times.begin(), times.end());
  const double median = times.empty() ? 0 : times[times.size() / 2];
  const std::string key = s.name() + "/b" + std::to_string(batch);
  if (v == variant::cublas_f16 || v == variant::cublas_bf16) baseline_ns[std::string(name_of(v)) + "/" + key] = median * 1e9;
  const std::string base = std::string(is_bf16_path(v) ? "cublas_bf16/" : "cublas_f16/") + key;
  state.SetBytesProcessed(std::int64_t(st.read_bytes) * state.iterations());
  state.counters["bits_per_weight"] = st.bits_per_weight;
  state.counters["median_us"] = median * 1e6;
  if (baseline_ns.count(base) && median > 0) state.counters["speedup_vs_cublas"] = baseline_ns[base] * 1e-9 / median;
}

}  // namespace

int main(int argc, char** argv) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("bench_gemv: no CUDA device, nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  benchmark::AddCustomContext("device", prop.name);
  benchmark::AddCustomContext("sms", std::to_string(prop.multiProcessorCount));
  benchmark::AddCustomContext("l2_bytes", std::to_string(prop.l2CacheSize));
  const shape shapes[] = {{4096, 4096}, {14336, 4096}, {4096, 14336}, {8192, 8192}, {28672, 8192}};
  const variant variants[] = {variant::cublas_f16,        variant::cublas_bf16,         variant::fused_int8,
                              variant::fused_int8_k8,
                              variant::fused_int4,        variant::fused_lossless_bf16, variant::fused_int8_rans,
                              variant::fused_lossless_rans, variant::decode_cublas_int8,  variant::decode_cublas_lossless,
                              variant::fused_int8_pdl,    variant::fused_lossless_pdl,  variant::fused_int8_k8_xbf16,
                              variant::fused_int4_xbf16};
  const std::uint32_t batches[] = {1, 4, 16};
  for (const shape& s : shapes)
    for (variant v : variants)
      for (std::uint32_t b : batches) {
        const std::string name = std::string(name_of(v)) + "/" + s.name() + "/b" + std::to_string(b);
        // A fixed count of graph replays (each of at least 20 calls) per repetition: the time per
        // call is what is reported, so min_time would ask for far too many replays.
        benchmark::RegisterBenchmark(name.c_str(), [s, v, b](benchmark::State& st) { run(st, s, v, b); })
            ->UseManualTime()
            ->Iterations(20)
            ->Unit(benchmark::kMicrosecond);
      }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
