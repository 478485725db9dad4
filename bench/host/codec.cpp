// Host codec speed per core: encode and decode MB/s of uncompressed input at Llama-8B shapes
// (synthetic, seeded, statistics of trained weights), with memcpy of the same bytes measured in
// the same run as the baseline. Counters: input MB/s, bits/weight, entropy, coding overhead.
//
//   build/bench/bench_codec --benchmark_min_time=1x   (quick)
#include <tilecodec/host/synthetic.hpp>
#include <tilecodec/tilecodec.hpp>

#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <vector>

using namespace tilecodec;

namespace {

struct fixture {
  std::vector<std::uint16_t> bf16;
  std::vector<float> f32;
};

const fixture& weights(std::uint64_t rows, std::uint64_t cols) {
  static std::map<std::pair<std::uint64_t, std::uint64_t>, fixture> cache;
  auto it = cache.find({rows, cols});
  if (it == cache.end()) {
    fixture f;
    f.f32 = host::synthetic_weights(rows, cols, {});
    f.bf16 = host::to_half_bits(f.f32, dtype::bf16);
    it = cache.emplace(std::make_pair(rows, cols), std::move(f)).first;
  }
  return it->second;
}

void set_counters(benchmark::State& state, std::uint64_t input_bytes, const host::encode_stats& st) {
  state.SetBytesProcessed(std::int64_t(state.iterations() * input_bytes));
  state.counters["bits/weight"] = st.bits_per_weight();
  state.counters["entropy"] = st.entropy_bits;
  state.counters["overhead%"] = st.coding_overhead() * 100.0;
}

template <class Codec>
void encode_bench(benchmark::State& state) {
  const auto rows = std::uint64_t(state.range(0)), cols = std::uint64_t(state.range(1));
  const unsigned threads = unsigned(state.range(2));
  const fixture& w = weights(rows, cols);
  host::encode_options opt;
  opt.threads = threads;
  host::encode_stats st;
  for (auto _ : state) {
    auto enc = host::encode<Codec>(w.bf16.data(), dtype::bf16, {rows, cols}, opt, &st);
    benchmark::DoNotOptimize(enc.bytes().data());
  }
  set_counters(state, rows * cols * 2, st);
}

template <class Codec>
void decode_bench(benchmark::State& state) {
  const auto rows = std::uint64_t(state.range(0)), cols = std::uint64_t(state.range(1));
  const unsigned threads = unsigned(state.range(2));
  const fixture& w = weights(rows, cols);
  host::encode_stats st;
  const auto enc = host::encode<Codec>(w.bf16.data(), dtype::bf16, {rows, cols}, {}, &st);
  host::tensor_decoder dec(enc.view());
  std::vector<std::uint16_t> out(rows * cols);
  for (auto _ : state) {
    if (dec.decode(out.data(), dtype::bf16, out.size() * 2, threads) != status::success) {
      state.SkipWithError("decode failed");
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  if (Codec::quant_type::id == quant::kind::lossless && out != w.bf16) state.SkipWithError("round trip mismatch");
  set_counters(state, rows * cols * 2, st);
}

// Baseline: copying the same bytes once (read + write), one core.
void memcpy_bench(benchmark::State& state) {
  const auto rows = std::uint64_t(state.range(0)), cols = std::uint64_t(state.range(1));
  const fixture& w = weights(rows, cols);
  std::vector<std::uint16_t> out(rows * cols);
  for (auto _ : state) {
    std::memcpy(out.data(), w.bf16.data(), out.size() * 2);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(std::int64_t(state.iterations() * rows * cols * 2));
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) b->Args({4096, 14336, threads});
  b->Args({14336, 4096, 1});
  b->ArgNames({"rows", "cols", "threads"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(memcpy_bench)->Args({4096, 14336})->ArgNames({"rows", "cols"})->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(encode_bench, lossless_codec)->Apply(shapes);
BENCHMARK_TEMPLATE(decode_bench, lossless_codec)->Apply(shapes);
BENCHMARK_TEMPLATE(encode_bench, int8_codec)->Apply(shapes);
BENCHMARK_TEMPLATE(decode_bench, int8_codec)->Apply(shapes);
BENCHMARK_TEMPLATE(encode_bench, int4_codec)->Apply(shapes);
BENCHMARK_TEMPLATE(decode_bench, int4_codec)->Apply(shapes);
BENCHMARK_MAIN();
