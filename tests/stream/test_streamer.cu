// Weight streaming (stream/weight_streamer.cuh) and the mode-1 loader (stream/resident_loader.cuh):
// streamed layers equal the host decoder, across passes, with delays on the copy stream, with a
// pageable arena; a too-small budget fails before any allocation; nothing leaks.
#include <tilecodec/device/cuda_check.cuh>
#include <tilecodec/stream/resident_loader.cuh>
#include <tilecodec/stream/weight_streamer.cuh>
#include <tilecodec/tilecodec.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <random>
#include <vector>

#include "common/seed.hpp"

using namespace tilecodec;

namespace {

struct small_model {
  std::vector<std::unique_ptr<encoded_tensor>> storage;
  std::vector<std::vector<const encoded_tensor*>> layers;
};

// `n_layers` layers of three odd-shaped tensors each; lossless bf16 or int8 per row.
small_model make_model(std::mt19937_64& rng, int n_layers, bool lossless) {
  small_model m;
  const std::pair<std::uint64_t, std::uint64_t> shapes[] = {{300, 200}, {64, 513}, {513, 129}};
  std::normal_distribution<float> dist(0.0f, 0.05f);
  format_params p = lossless ? lossless_codec::params() : int8_codec::params();
  p.tile_rows = p.tile_cols = 128;
  for (int l = 0; l < n_layers; ++l) {
    m.layers.emplace_back();
    for (auto s : shapes) {
      std::vector<std::uint16_t> w(s.first * s.second);
      for (auto& v : w) v = float_to_bf16(dist(rng));
      m.storage.push_back(std::make_unique<encoded_tensor>(host::encode(w.data(), dtype::bf16, {s.first, s.second}, p)));
      m.layers.back().push_back(m.storage.back().get());
    }
  }
  return m;
}

__global__ void spin(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}

// Runs `passes` passes; after each acquire copies the decoded tensors back and compares them
// with the host decoder's output.
void check_streamed(const small_model& m, dtype out, stream::streamer_options opt, int passes, cudaStream_t s,
                    bool delay_copies = false) {
  stream::weight_streamer ws(m.layers, out, opt, s);
  for (int p = 0; p < passes; ++p)
    for (int l = 0; l < ws.layer_count(); ++l) {
      if (delay_copies) {  // the copy stream falls ~1 ms behind every layer
        spin<<<1, 1, 0, ws.copy_stream()>>>(2000000);
        TILECODEC_CUDA_CHECK_LAUNCH();
      }
      const auto& views = ws.acquire(l);
      REQUIRE(views.size() == m.layers[l].size());
      for (std::size_t i = 0; i < views.size(); ++i) {
        const encoded_tensor& t = *m.layers[l][i];
        const std::size_t bytes = t.view().elements() * dtype_size(out);
        std::vector<std::uint8_t> got(bytes), want(bytes);
        TILECODEC_CUDA_CHECK(cudaMemcpyAsync(got.data(), views[i], bytes, cudaMemcpyDeviceToHost, s));
        TILECODEC_CUDA_CHECK(cudaStreamSynchronize(s));
        REQUIRE(host::decode(t.view(), want.data(), out, bytes) == status::success);
        CAPTURE(p);
        CAPTURE(l);
        CAPTURE(i);
        REQUIRE(got == want);
      }
      ws.release(l);
    }
  for (int l = 0; l < ws.layer_count(); ++l)
    for (status st : ws.layer_status(l)) CHECK(st == status::success);
}

// A non-blocking stream destroyed at scope exit (also when a REQUIRE fails).
struct scoped_stream {
  cudaStream_t s = nullptr;
  scoped_stream() { TILECODEC_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~scoped_stream() { cudaStreamDestroy(s); }
  scoped_stream(const scoped_stream&) = delete;
  scoped_stream& operator=(const scoped_stream&) = delete;
  operator cudaStream_t() const { return s; }
};

// Free device memory, card-wide: the leak checks below assume no other process allocates on the
// card meanwhile (scripts/gpu_verify.sh runs these tests after the other checks, not beside them).
std::size_t free_vram() {
  std::size_t free_bytes = 0, total = 0;
  TILECODEC_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
  return free_bytes;
}

}  // namespace

TEST_CASE("streamed layers equal the host decoder over several passes and prefetch depths") {
  TILECODEC_SEEDED_RNG(rng);
  const scoped_stream s;
  for (bool lossless : {true, false}) {
    const small_model m = make_model(rng, 5, lossless);
    for (int depth : {0, 1, 2, 4}) {
      stream::streamer_options opt;
      opt.prefetch_depth = depth;
      CAPTURE(depth);
      check_streamed(m, lossless ? dtype::bf16 : dtype::f16, opt, 3, s);
    }
  }
}

TEST_CASE("stream ordering holds when the copy stream is delayed") {
  TILECODEC_SEEDED_RNG(rng);
  const scoped_stream s;
  const small_model m = make_model(rng, 4, false);
  stream::streamer_options opt;
  opt.prefetch_depth = 1;
  check_streamed(m, dtype::f32, opt, 2, s, /*delay_copies=*/true);
}

TEST_CASE("a pageable arena works when pinning is off or refused") {
  TILECODEC_SEEDED_RNG(rng);
  const scoped_stream s;
  const small_model m = make_model(rng, 3, true);
  stream::streamer_options opt;
  opt.pinned = false;
  check_streamed(m, dtype::bf16, opt, 2, s);
}

TEST_CASE("a VRAM budget too small for one layer fails before any allocation") {
  TILECODEC_SEEDED_RNG(rng);
  const small_model m = make_model(rng, 2, true);
  stream::streamer_options opt;
  opt.vram_budget = 4096;
  const std::size_t before = free_vram();
  bool threw = false;
  try {
    stream::weight_streamer ws(m.layers, dtype::bf16, opt, nullptr);
  } catch (const error& e) {
    threw = true;
    CHECK(e.code() == status::out_of_memory);
    CHECK(std::string(e.what()).find("budget") != std::string::npos);
  }
  CHECK(threw);
  CHECK(free_vram() == before);
}

TEST_CASE("no device or pinned memory leaks after many streamers and passes") {
  TILECODEC_SEEDED_RNG(rng);
  const scoped_stream s;
  const small_model m = make_model(rng, 3, false);
  {  // warm up the context and the allocator once
    stream::weight_streamer ws(m.layers, dtype::f16, {}, s);
  }
  const std::size_t before = free_vram();
  for (int round = 0; round < 20; ++round) {
    stream::weight_streamer ws(m.layers, dtype::f16, {}, s);
    for (int p = 0; p < 3; ++p)
      for (int l = 0; l < ws.layer_count(); ++l) {
        (void)ws.acquire(l);
        ws.release(l);
      }
    CHECK_THROWS_AS(ws.release(0), error);  // not acquired
    (void)ws.acquire(0);
    CHECK_THROWS_AS(ws.acquire(1), error);  // acquire before release
    ws.release(0);
  }
  TILECODEC_CUDA_CHECK(cudaStreamSynchronize(s));
  CHECK(free_vram() == before);
}

TEST_CASE("mode 1: load_resident decodes a whole model into VRAM through a small staging buffer") {
  TILECODEC_SEEDED_RNG(rng);
  const scoped_stream s;
  const small_model m = make_model(rng, 4, false);
  std::vector<const encoded_tensor*> all;
  for (const auto& layer : m.layers) all.insert(all.end(), layer.begin(), layer.end());
  stream::resident_model model = stream::load_resident(all, dtype::bf16, s, /*staging_bytes=*/64 * 1024);
  REQUIRE(model.size() == all.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    const std::size_t bytes = all[i]->view().elements() * 2;
    std::vector<std::uint8_t> got(bytes), want(bytes);
    TILECODEC_CUDA_CHECK(cudaMemcpy(got.data(), model.tensor(i), bytes, cudaMemcpyDeviceToHost));
    REQUIRE(host::decode(all[i]->view(), want.data(), dtype::bf16, bytes) == status::success);
    CHECK(got == want);
  }
}

TEST_CASE("acquire_encoded hands fused kernels the layer's compressed bytes in its slot") {
  TILECODEC_SEEDED_RNG(rng);
  const scoped_stream s;
  const small_model m = make_model(rng, 3, false);
  {  // the streamer synchronises its streams on destruction: it must go before the stream does
  stream::weight_streamer ws(m.layers, dtype::f16, {}, s);
  for (int pass = 0; pass < 2; ++pass)
    for (int l = 0; l < ws.layer_count(); ++l) {
      const auto& refs = ws.acquire_encoded(l);
      REQUIRE(refs.size() == m.layers[l].size());
      for (std::size_t i = 0; i < refs.size(); ++i) {
        const encoded_tensor& t = *m.layers[l][i];
        std::vector<std::uint8_t> got(t.size());
        TILECODEC_CUDA_CHECK(cudaMemcpyAsync(got.data(), refs[i].data, t.size(), cudaMemcpyDeviceToHost, s));
        TILECODEC_CUDA_CHECK(cudaStreamSynchronize(s));
        CHECK(got == t.bytes());
        CHECK(refs[i].total_bytes == t.size());
      }
      ws.release(l);
    }
  }
}
