// bench_decode: device-wide decode throughput and latency (device::decode_async), with the
// device-to-device cudaMemcpy baseline measured in the same run.
//
// Every timing is CUDA events around one stream-ordered decode call (its two kernels), manual
// time, median over all iterations of all repetitions (printed in a table at the end, below the
// same timing of an empty one-block kernel: the floor of a small call).
// Inputs rotate over several copies (each copy's compressed + decoded bytes, times the copies,
// exceed the 50 MB L2), outputs are poisoned before the first run and compared bit for bit with
// the host decoder after the last, and every status word is checked.
//
//   bench_decode [--benchmark_min_time=0.05s] [--quick] [--only=SUBSTRING] [--team=N]
//   (--quick: the 4096x14336 shape only; --only: just the workloads whose name contains one of
//   its comma-separated substrings; --team: decode_options::team_warps, 0 = automatic)
//
// Counters: out_GBps (decoded bytes written / s), traffic_GBps (compressed bytes read + decoded
// bytes written, / s), roofline = traffic / memcpy (memcpy counted read + write, as the roofline),
// out_vs_memcpy = out_GBps / memcpy (read + write) GB/s.
#include <benchmark/benchmark.h>

#include <tilecodec/device/cuda_check.cuh>
#include <tilecodec/device/decode.cuh>
#include <tilecodec/format/safetensors.hpp>
#include <tilecodec/host/synthetic.hpp>
#include <tilecodec/tilecodec.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#ifndef TILECODEC_DATA_DIR
#define TILECODEC_DATA_DIR "data"
#endif

namespace {

using namespace tilecodec;
namespace dv = tilecodec::device;

std::uint32_t g_team = 0;  // --team: decode_options::team_warps of every workload

constexpr std::uint64_t l2_bytes = 50ull << 20;

struct gpu_mem {
  void* p = nullptr;
  explicit gpu_mem(std::size_t n) { TILECODEC_CUDA_CHECK(cudaMalloc(&p, n ? n : 1)); }
  ~gpu_mem() { cudaFree(p); }
  gpu_mem(const gpu_mem&) = delete;
  gpu_mem& operator=(const gpu_mem&) = delete;
  template <class T = std::uint8_t>
  T* get() const { return static_cast<T*>(p); }
};

// One decode workload: a set of tasks (tensors and outputs), in `copies` rotated device copies.
struct workload {
  std::string name;
  std::vector<encoded_tensor> tensors;
  std::vector<dtype> out_types;
  std::uint64_t in_bytes = 0, out_bytes = 0, elements = 0;
  int copies = 1;
  std::vector<std::unique_ptr<gpu_mem>> inputs, outputs, task_arrays, statuses, temps;
  std::vector<std::vector<dv::decode_task>> tasks;
  std::size_t temp_bytes = 0;
  std::uint32_t max_blocks = 0;
  std::vector<double> ms;  // every timed iteration

  void prepare() {
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      in_bytes += tensors[i].size();
      out_bytes += tensors[i].view().elements() * dtype_size(out_types[i]);
      elements += tensors[i].view().elements();
    }
    copies = int(std::max<std::uint64_t>(2, (3 * l2_bytes) / (in_bytes + out_bytes) + 1));
    if (copies > 16) copies = 16;
    const std::uint32_t n = static_cast<std::uint32_t>(tensors.size());
    temp_bytes = dv::decode_temp_bytes(n);
    for (int c = 0; c < copies; ++c) {
      inputs.push_back(std::make_unique<gpu_mem>(in_bytes + 256 * tensors.size()));
      outputs.push_back(std::make_unique<gpu_mem>(out_bytes + 256 * tensors.size()));
      TILECODEC_CUDA_CHECK(cudaMemset(outputs.back()->p, 0xcd, out_bytes + 256 * tensors.size()));
      std::vector<dv::decode_task> t;
      std::uint64_t in_off = 0, out_off = 0;
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        std::uint8_t* d = inputs.back()->get() + in_off;
        TILECODEC_CUDA_CHECK(cudaMemcpy(d, tensors[i].bytes().data(), tensors[i].size(), cudaMemcpyHostToDevice));
        const std::uint64_t ob = tensors[i].view().elements() * dtype_size(out_types[i]);
        t.push_back(dv::make_decode_task(dv::make_tensor_ref(tensors[i].view(), d), outputs.back()->get() + out_off,
                                         out_types[i], ob));
        in_off += (tensors[i].size() + 255) / 256 * 256;
        out_off += (ob + 255) / 256 * 256;
      }
      task_arrays.push_back(std::make_unique<gpu_mem>(sizeof(dv::decode_task) * n));
      TILECODEC_CUDA_CHECK(cudaMemcpy(task_arrays.back()->p, t.data(), sizeof(dv::decode_task) * n, cudaMemcpyHostToDevice));
      statuses.push_back(std::make_unique<gpu_mem>(sizeof(status) * n));
      temps.push_back(std::make_unique<gpu_mem>(temp_bytes));
      tasks.push_back(std::move(t));
    }
  }

  void launch(int c, cudaStream_t s) {
    dv::decode_options o;
    o.max_blocks = max_blocks;
    o.team_warps = g_team;
    std::size_t tb = temp_bytes;
    const status st = dv::decode_async(temps[c]->p, tb, task_arrays[c]->get<dv::decode_task>(),
                                       static_cast<std::uint32_t>(tensors.size()), statuses[c]->get<status>(), s, o);
    if (st != status::success) throw error(st, "decode_async: " + name);
  }

  // Status words of every copy, and copy 0's output bit for bit against the host decoder.
  void verify() {
    TILECODEC_CUDA_CHECK(cudaDeviceSynchronize());
    for (int c = 0; c < copies; ++c) {
      std::vector<status> st(tensors.size());
      TILECODEC_CUDA_CHECK(cudaMemcpy(st.data(), statuses[c]->p, sizeof(status) * st.size(), cudaMemcpyDeviceToHost));
      for (std::size_t i = 0; i < st.size(); ++i)
        if (st[i] != status::success) throw error(st[i], name + ": device status of task " + std::to_string(i));
    }
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const std::uint64_t ob = tasks[0][i].out_bytes;
      std::vector<std::uint8_t> got(ob), want(ob);
      TILECODEC_CUDA_CHECK(cudaMemcpy(got.data(), tasks[0][i].out, ob, cudaMemcpyDeviceToHost));
      const status s = host::decode(tensors[i].view(), want.data(), out_types[i], ob, 0);
      if (s != status::success || got != want) throw error(status::corrupt_payload, name + ": device output differs from the host decoder");
    }
  }
};

std::map<std::string, std::unique_ptr<workload>>& workloads() {
  static std::map<std::string, std::unique_ptr<workload>> w;
  return w;
}
std::vector<double> g_memcpy_ms;
std::uint64_t g_memcpy_bytes = 0;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

double memcpy_rw_gbps() {
  const double ms = median(g_memcpy_ms);
  return ms > 0 ? 2.0 * double(g_memcpy_bytes) / (ms * 1e-3) / 1e9 : 0.0;
}

struct timer {
  cudaEvent_t a, b;
  timer() {
    TILECODEC_CUDA_CHECK(cudaEventCreate(&a));
    TILECODEC_CUDA_CHECK(cudaEventCreate(&b));
  }
  ~timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
};

void bm_memcpy(benchmark::State& state) {
  const std::size_t bytes = std::size_t(state.range(0)) << 20;
  gpu_mem src(bytes * 2), dst(bytes * 2);  // two halves: rotate
  TILECODEC_CUDA_CHECK(cudaMemset(src.p, 0x5a, bytes * 2));
  timer t;
  int k = 0;
  for (auto _ : state) {
    const std::size_t off = (k++ & 1) * bytes;
    TILECODEC_CUDA_CHECK(cudaEventRecord(t.a));
    TILECODEC_CUDA_CHECK(cudaMemcpyAsync(dst.get() + off, src.get() + off, bytes, cudaMemcpyDeviceToDevice));
    TILECODEC_CUDA_CHECK(cudaEventRecord(t.b));
    TILECODEC_CUDA_CHECK(cudaEventSynchronize(t.b));
    float ms = 0;
    TILECODEC_CUDA_CHECK(cudaEventElapsedTime(&ms, t.a, t.b));
    state.SetIterationTime(ms * 1e-3);
    g_memcpy_ms.push_back(ms);
  }
  g_memcpy_bytes = bytes;
  state.counters["rw_GBps"] = benchmark::Counter(2.0 * double(bytes), benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}

// Times each call of launch(): CUDA events around it and a synchronize after (manual time); every
// iteration's milliseconds also go to `ms`.
template <class Launch>
void time_each_call(benchmark::State& state, std::vector<double>& ms, Launch&& launch) {
  timer t;
  for (auto _ : state) {
    TILECODEC_CUDA_CHECK(cudaEventRecord(t.a));
    launch();
    TILECODEC_CUDA_CHECK(cudaEventRecord(t.b));
    TILECODEC_CUDA_CHECK(cudaEventSynchronize(t.b));
    TILECODEC_CUDA_CHECK(cudaGetLastError());
    float elapsed = 0;
    TILECODEC_CUDA_CHECK(cudaEventElapsedTime(&elapsed, t.a, t.b));
    state.SetIterationTime(elapsed * 1e-3);
    ms.push_back(elapsed);
  }
}

// The floor of a small call: an empty one-block kernel, timed like a decode call.
__global__ void empty_kernel() {}
std::vector<double> g_empty_ms;

void bm_empty_launch(benchmark::State& state) {
  empty_kernel<<<1, 32>>>();
  TILECODEC_CUDA_CHECK(cudaDeviceSynchronize());
  time_each_call(state, g_empty_ms, [] { empty_kernel<<<1, 32>>>(); });
}

void bm_decode(benchmark::State& state, workload* w) {
  w->launch(0, nullptr);  // warm-up (module load)
  TILECODEC_CUDA_CHECK(cudaDeviceSynchronize());
  int c = 0;
  time_each_call(state, w->ms, [&] {
    w->launch(c, nullptr);
    c = (c + 1) % w->copies;
  });
  using C = benchmark::Counter;
  state.counters["out_GBps"] = C(double(w->out_bytes), C::kIsIterationInvariantRate, C::kIs1000);
  state.counters["traffic_GBps"] = C(double(w->in_bytes + w->out_bytes), C::kIsIterationInvariantRate, C::kIs1000);
  state.counters["bits_per_weight"] = 8.0 * double(w->in_bytes) / double(w->elements);
}

// ---- workloads -----------------------------------------------------------------------------------

std::vector<float> weights_for(std::uint64_t rows, std::uint64_t cols) {
  static std::map<std::pair<std::uint64_t, std::uint64_t>, std::vector<float>> cache;
  auto& v = cache[{rows, cols}];
  if (v.empty()) {
    host::synthetic_params p;
    p.seed = rows * 31 + cols;
    v = host::synthetic_weights(rows, cols, p, 0);
  }
  return v;
}

encoded_tensor encode_synthetic(std::uint64_t rows, std::uint64_t cols, const format_params& p, dtype src) {
  const std::vector<float> w = weights_for(rows, cols);
  host::encode_options o;
  o.threads = 0;
  if (src == dtype::bf16) {
    const std::vector<std::uint16_t> h = host::to_half_bits(w, dtype::bf16);
    return host::encode(h.data(), dtype::bf16, {rows, cols}, p, o);
  }
  return host::encode(w.data(), dtype::f32, {rows, cols}, p, o);
}

std::string g_only;
// --only=A,B,...: workloads whose name contains any of the comma-separated substrings.
bool wanted(const std::string& name) {
  if (g_only.empty()) return true;
  for (std::size_t b = 0; b <= g_only.size();) {
    const std::size_t e = std::min(g_only.find(',', b), g_only.size());
    if (e > b && name.find(g_only.substr(b, e - b)) != std::string::npos) return true;
    b = e + 1;
  }
  return false;
}

void add_workload(std::unique_ptr<workload> w) {
  if (!wanted(w->name)) return;
  w->prepare();
  workload* raw = w.get();
  const std::string name = w->name;
  workloads()[name] = std::move(w);
  benchmark::RegisterBenchmark(name.c_str(), [raw](benchmark::State& s) { bm_decode(s, raw); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond)
      ->Repetitions(3)
      ->ReportAggregatesOnly(true);
}

// A policy's coder: rANS with a shared stream (coding 1), with lane streams (coding 3), or the
// fixed-length coder with escapes (coding 2, 32 lanes) or with marked escapes (coding 4).
enum class coding_kind { shared, lane_streams, fixed, marked };

// code_bits: the fixed coders' code width, pinned (0: the encoder's choice).
format_params policy_params(bool int8, std::uint32_t tile, std::uint32_t lanes, coding_kind c, std::uint32_t code_bits = 0) {
  format_params p = int8 ? int8_codec::params() : lossless_codec::params();
  p.tile_rows = p.tile_cols = tile;
  p.lanes = c == coding_kind::fixed || c == coding_kind::marked ? fixed_lanes : lanes;
  if (c == coding_kind::lane_streams) p.coder = coder::kind::rans_lanes;
  if (c == coding_kind::fixed) p.coder = coder::kind::fixed, p.prob_bits = 0;
  if (c == coding_kind::marked) p.coder = coder::kind::fixed_marked, p.prob_bits = code_bits;
  return p;
}

// Workload-name suffix of a model or layer policy (nothing for the default 32-lane shared stream).
std::string policy_suffix(std::uint32_t lanes, coding_kind c) {
  if (c == coding_kind::fixed) return "/fixed";
  if (c == coding_kind::marked) return "/marked";
  if (c == coding_kind::lane_streams) return "/streams" + std::to_string(lanes);
  return lanes == 32 ? std::string() : "/lanes" + std::to_string(lanes);
}

// "/lanesN": the shared-stream coder (coding 1) with N lanes; "/streamsN": lane streams (coding 3);
// "/fixed": fixed-length codes; "/marked": with marked escapes.
void add_synthetic(bool int8, std::uint64_t rows, std::uint64_t cols, std::uint32_t tile, std::uint32_t lanes,
                   coding_kind c = coding_kind::shared, std::uint32_t code_bits = 0) {
  const format_params p = policy_params(int8, tile, lanes, c, code_bits);
  auto w = std::make_unique<workload>();
  w->name = std::string(int8 ? "int8" : "bf16") + "/" + std::to_string(rows) + "x" + std::to_string(cols) + "/tile" +
            std::to_string(tile) +
            (c == coding_kind::fixed || c == coding_kind::marked
                 ? policy_suffix(lanes, c)
                 : (c == coding_kind::lane_streams ? "/streams" : "/lanes") + std::to_string(lanes)) +
            (code_bits != 0 ? "/k" + std::to_string(code_bits) : std::string());
  if (!wanted(w->name)) return;
  w->tensors.push_back(encode_synthetic(rows, cols, p, dtype::bf16));
  w->out_types.push_back(int8 ? dtype::i8 : dtype::bf16);
  add_workload(std::move(w));
}

// A Llama-3-8B decoder layer (q, k, v, o, gate, up, down), synthetic weights.
void add_llama_layer(bool int8, std::uint32_t tile = 256, std::uint32_t lanes = 32, coding_kind c = coding_kind::shared) {
  const std::uint64_t shapes[7][2] = {{4096, 4096}, {1024, 4096}, {1024, 4096}, {4096, 4096},
                                      {14336, 4096}, {14336, 4096}, {4096, 14336}};
  auto w = std::make_unique<workload>();
  w->name = std::string("layer/llama8b/") + (int8 ? "int8" : "bf16") + (tile == 256 ? "" : "/tile" + std::to_string(tile)) +
            policy_suffix(lanes, c);
  if (!wanted(w->name)) return;
  const format_params p = policy_params(int8, tile, lanes, c);
  for (const auto& s : shapes) {
    w->tensors.push_back(encode_synthetic(s[0], s[1], p, dtype::bf16));
    w->out_types.push_back(int8 ? dtype::i8 : dtype::bf16);
  }
  add_workload(std::move(w));
}

// The real model: every floating-point tensor, in one call; and its first layer alone.
void add_model(bool int8, std::uint32_t tile = 256, std::uint32_t lanes = 32, coding_kind c = coding_kind::shared) {
  const std::string path = std::string(TILECODEC_DATA_DIR) + "/minilm/model.bf16.safetensors";
  if (!std::filesystem::exists(path)) {
    std::printf("bench_decode: %s not found, model benchmarks skipped\n", path.c_str());
    return;
  }
  auto all = std::make_unique<workload>();
  auto layer = std::make_unique<workload>();
  const std::string suffix = (int8 ? "int8" : "bf16") + (tile == 256 ? std::string() : "/tile" + std::to_string(tile)) +
                             policy_suffix(lanes, c);
  all->name = "model/minilm/" + suffix;
  layer->name = "layer/minilm0/" + suffix;
  if (!wanted(all->name) && !wanted(layer->name)) return;
  safetensors::file model(path);
  const format_params p = policy_params(int8, tile, lanes, c);
  for (const safetensors::tensor_info& info : model.tensors()) {
    if (info.type != dtype::bf16) continue;
    const safetensors::byte_view b = model.data(info);
    host::encode_options o;
    o.threads = 0;
    encoded_tensor e = host::encode(b.data, info.type, info.shape, p, o);
    const dtype out = int8 ? dtype::i8 : dtype::bf16;
    if (info.name.rfind("encoder.layer.0.", 0) == 0) {
      layer->tensors.push_back(e);
      layer->out_types.push_back(out);
    }
    all->tensors.push_back(std::move(e));
    all->out_types.push_back(out);
  }
  add_workload(std::move(all));
  add_workload(std::move(layer));
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strncmp(argv[i], "--only=", 7) == 0) g_only = argv[i] + 7;
    else if (std::strncmp(argv[i], "--team=", 7) == 0) g_team = static_cast<std::uint32_t>(std::atoi(argv[i] + 7));
    else args.push_back(argv[i]);
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("bench_decode: no CUDA device, nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop;
  TILECODEC_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  namespace dd = tilecodec::device::detail;
  const std::uint32_t grid = dd::decode_grid_blocks(0, reinterpret_cast<const void*>(&dd::decode_kernel<>));
  std::printf("device: %s, %d SMs, L2 %d MB; decode grid %u blocks (%u per SM)\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20, grid, grid / std::uint32_t(prop.multiProcessorCount));

  benchmark::RegisterBenchmark("memcpy_d2d/256MiB", bm_memcpy)->Arg(256)->UseManualTime()->Unit(benchmark::kMicrosecond)
      ->Repetitions(3)->ReportAggregatesOnly(true);
  benchmark::RegisterBenchmark("launch/empty_kernel", bm_empty_launch)->UseManualTime()->Unit(benchmark::kMicrosecond)
      ->Repetitions(3)->ReportAggregatesOnly(true);
  const auto t0 = std::chrono::steady_clock::now();
  const std::uint64_t shapes[2][2] = {{4096, 14336}, {14336, 4096}};
  for (int s = 0; s < (quick ? 1 : 2); ++s) {
    for (bool int8 : {true, false}) {
      // Both codings at tiles 128 and 256; tile 512: the shared-stream default and 128 lane streams.
      for (std::uint32_t lanes : {32u, 64u, 128u})
        for (std::uint32_t tile : {128u, 256u, 512u}) {
          if (tile != 512 || lanes == 32) add_synthetic(int8, shapes[s][0], shapes[s][1], tile, lanes);
          if (tile != 512 || lanes == 128) add_synthetic(int8, shapes[s][0], shapes[s][1], tile, lanes, coding_kind::lane_streams);
        }
      for (std::uint32_t tile : {128u, 256u}) {
        add_synthetic(int8, shapes[s][0], shapes[s][1], tile, 32, coding_kind::fixed);
        add_synthetic(int8, shapes[s][0], shapes[s][1], tile, 32, coding_kind::marked);
      }
      // Marked escapes at pinned code widths: fewer escapes against fewer bits.
      const std::uint32_t widths[2] = {int8 ? 6u : 4u, int8 ? 7u : 5u};
      for (std::uint32_t bits : widths) add_synthetic(int8, shapes[s][0], shapes[s][1], 128, 32, coding_kind::marked, bits);
    }
  }
  // Whole models and layers: the default, the fastest shared-stream policy (tile 128, 128 lanes)
  // and the lane-stream policies.
  struct policy { std::uint32_t tile, lanes; coding_kind c; };
  constexpr coding_kind shared = coding_kind::shared, streams = coding_kind::lane_streams;
  for (const policy& q : {policy{256, 32, shared}, policy{128, 128, shared}, policy{256, 64, streams}, policy{256, 128, streams},
                          policy{128, 64, streams}, policy{128, 128, streams}, policy{256, 32, coding_kind::fixed},
                          policy{256, 32, coding_kind::marked}, policy{128, 32, coding_kind::marked}}) {
    add_model(false, q.tile, q.lanes, q.c);
    add_model(true, q.tile, q.lanes, q.c);
    add_llama_layer(true, q.tile, q.lanes, q.c);
    add_llama_layer(false, q.tile, q.lanes, q.c);
  }
  std::printf("workloads encoded in %.1f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  // Summary: medians of every timed iteration; outputs checked bit for bit.
  const double mc = memcpy_rw_gbps();
  std::printf("\n%-34s %9s %9s %8s %10s %10s %9s %9s\n", "workload", "MB out", "bits/w", "median", "out GB/s",
              "traffic", "roofline", "out/copy");
  std::printf("%-34s %9.1f %9s %7.1fus %10s %10.0f %9s %9s\n", "memcpy_d2d (read+write)", g_memcpy_bytes / 1e6, "-",
              median(g_memcpy_ms) * 1e3, "-", mc, "1.00", "-");
  std::printf("%-34s %9s %9s %7.1fus %10s %10s %9s %9s\n", "empty kernel (launch floor)", "-", "-", median(g_empty_ms) * 1e3, "-",
              "-", "-", "-");
  for (auto& [name, w] : workloads()) {
    if (w->ms.empty()) continue;
    w->verify();
    const double ms = median(w->ms);
    const double out = double(w->out_bytes) / (ms * 1e-3) / 1e9, traffic = double(w->in_bytes + w->out_bytes) / (ms * 1e-3) / 1e9;
    std::printf("%-34s %9.1f %9.3f %7.1fus %10.0f %10.0f %9.2f %9.2f\n", name.c_str(), w->out_bytes / 1e6,
                8.0 * double(w->in_bytes) / double(w->elements), ms * 1e3, out, traffic, mc > 0 ? traffic / mc : 0.0,
                mc > 0 ? out / mc : 0.0);
  }
  std::printf("(every output above was compared bit for bit with the host decoder)\n");
  return 0;
}
