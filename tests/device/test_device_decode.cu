// GPU decode tests: every policy combination on fresh random data and on real weights, decoded by
// device::decode_async and by the warp/block building blocks inside test kernels, compared bit for
// bit with the host decoder; edge tiles, single-tile tensors, many tensors and tile ranges in one
// call; corrupted input gives error statuses and never writes outside the output.
//
// Seeds: fresh every run, printed; TILECODEC_SEED=<n> reproduces a run. The test suite "sanitize"
// holds small cases for compute-sanitizer (memcheck, racecheck): -ts=sanitize.
#include <doctest/doctest.h>

#include <tilecodec/block/block_tile_decoder.cuh>
#include <tilecodec/device/cuda_check.cuh>
#include <tilecodec/device/decode.cuh>
#include <tilecodec/format/safetensors.hpp>
#include <tilecodec/host/synthetic.hpp>
#include <tilecodec/tilecodec.hpp>
#include <tilecodec/warp/warp_tile_decoder.cuh>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#ifndef TILECODEC_DATA_DIR
#define TILECODEC_DATA_DIR "data"
#endif

namespace {

using namespace tilecodec;
namespace dv = tilecodec::device;

constexpr std::uint8_t poison = 0xcd;
constexpr std::size_t guard_bytes = 256;

std::uint64_t run_seed() {
  static const std::uint64_t seed = [] {
    const char* env = std::getenv("TILECODEC_SEED");
    const std::uint64_t s = env ? std::strtoull(env, nullptr, 10) : std::random_device{}() * 0x9e3779b97f4a7c15ull;
    std::printf("tilecodec device tests: seed %llu (TILECODEC_SEED to reproduce)\n", static_cast<unsigned long long>(s));
    return s;
  }();
  return seed;
}

// Device memory, freed at scope exit.
class device_buffer {
 public:
  explicit device_buffer(std::size_t bytes) : bytes_(bytes) {
    TILECODEC_CUDA_CHECK(cudaMalloc(&ptr_, bytes ? bytes : 1));
  }
  ~device_buffer() { cudaFree(ptr_); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  [[nodiscard]] std::uint8_t* get() const { return static_cast<std::uint8_t*>(ptr_); }
  [[nodiscard]] std::size_t size() const { return bytes_; }
  void upload(const void* src, std::size_t n, std::size_t at = 0) {
    TILECODEC_CUDA_CHECK(cudaMemcpy(get() + at, src, n, cudaMemcpyHostToDevice));
  }
  [[nodiscard]] std::vector<std::uint8_t> download() const {
    std::vector<std::uint8_t> v(bytes_);
    TILECODEC_CUDA_CHECK(cudaMemcpy(v.data(), ptr_, bytes_, cudaMemcpyDeviceToHost));
    return v;
  }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_;
};

// An encoded tensor, its device copy and its view.
struct gpu_tensor {
  encoded_tensor enc;
  std::unique_ptr<device_buffer> bytes;
  dv::tensor_ref ref;
  explicit gpu_tensor(encoded_tensor e) : enc(std::move(e)) {
    bytes = std::make_unique<device_buffer>(enc.size());
    bytes->upload(enc.bytes().data(), enc.size());
    ref = dv::make_tensor_ref(enc.view(), bytes->get());
  }
};

// Values drawn like trained weights (Student-t, per-row scale) with a random spread, in `src`.
// nu: the Student-t degrees of freedom (0: drawn from 3 .. 22).
std::vector<std::uint8_t> random_values(std::uint64_t rows, std::uint64_t cols, dtype src, std::mt19937_64& rng,
                                        double nu = 0) {
  host::synthetic_params p;
  p.seed = rng();
  p.std = std::ldexp(1.0, -int(rng() % 12));  // 1 .. 2^-11
  p.nu = 3.0 + double(rng() % 20);
  if (nu > 0) p.nu = nu;
  std::vector<float> w = host::synthetic_weights(rows, cols, p, 1);
  if (rng() % 5 == 0 && rows > 1) std::fill(w.begin(), w.begin() + std::ptrdiff_t(cols), 0.0f);  // a zero row
  std::vector<std::uint8_t> bytes;
  if (src == dtype::f32) {
    bytes.resize(w.size() * 4);
    std::memcpy(bytes.data(), w.data(), bytes.size());
  } else {
    const std::vector<std::uint16_t> h = host::to_half_bits(w, src);
    bytes.resize(h.size() * 2);
    std::memcpy(bytes.data(), h.data(), bytes.size());
  }
  return bytes;
}

encoded_tensor encode_values(const std::vector<std::uint8_t>& values, dtype src, const std::vector<std::uint64_t>& shape,
                             const format_params& p) {
  host::encode_options o;
  o.threads = 0;
  return host::encode(values.data(), src, shape, p, o);
}

std::vector<std::uint8_t> host_reference(const encoded_tensor& e, dtype out) {
  std::vector<std::uint8_t> ref(e.view().elements() * dtype_size(out));
  const status s = host::decode(e.view(), ref.data(), out, ref.size(), 0);
  REQUIRE_MESSAGE(s == status::success, "host decode failed: " << to_string(s));
  return ref;
}

// One output of a decode call: the buffer carries guard bytes before and after.
struct output {
  std::unique_ptr<device_buffer> buf;
  std::size_t bytes;
  explicit output(std::size_t n) : bytes(n) {
    buf = std::make_unique<device_buffer>(n + 2 * guard_bytes);
    TILECODEC_CUDA_CHECK(cudaMemset(buf->get(), poison, buf->size()));
  }
  [[nodiscard]] std::uint8_t* data() const { return buf->get() + guard_bytes; }
  // The output bytes; fails the test if a guard byte changed.
  [[nodiscard]] std::vector<std::uint8_t> fetch() const {
    std::vector<std::uint8_t> all = buf->download();
    for (std::size_t i = 0; i < guard_bytes; ++i) {
      REQUIRE_MESSAGE(all[i] == poison, "write before the output buffer");
      REQUIRE_MESSAGE(all[guard_bytes + bytes + i] == poison, "write after the output buffer");
    }
    return std::vector<std::uint8_t>(all.begin() + std::ptrdiff_t(guard_bytes), all.begin() + std::ptrdiff_t(guard_bytes + bytes));
  }
};

// Runs decode_async on the tasks (copied to the device) and returns the status words.
std::vector<status> run_decode(const std::vector<dv::decode_task>& tasks, const dv::decode_options& options = {}) {
  const std::uint32_t n = static_cast<std::uint32_t>(tasks.size());
  device_buffer d_tasks(sizeof(dv::decode_task) * n), d_status(sizeof(status) * n);
  d_tasks.upload(tasks.data(), sizeof(dv::decode_task) * n);
  TILECODEC_CUDA_CHECK(cudaMemset(d_status.get(), 0xff, d_status.size()));
  std::size_t temp_bytes = 0;
  REQUIRE(dv::decode_async(nullptr, temp_bytes, nullptr, n, nullptr, nullptr) == status::success);
  device_buffer temp(temp_bytes);
  cudaStream_t stream;
  TILECODEC_CUDA_CHECK(cudaStreamCreate(&stream));
  const status call = dv::decode_async(temp.get(), temp_bytes, reinterpret_cast<const dv::decode_task*>(d_tasks.get()),
                                       n, reinterpret_cast<status*>(d_status.get()), stream, options);
  TILECODEC_CUDA_CHECK(cudaGetLastError());
  TILECODEC_CUDA_CHECK(cudaStreamSynchronize(stream));
  TILECODEC_CUDA_CHECK(cudaStreamDestroy(stream));
  REQUIRE(call == status::success);
  std::vector<status> st(n);
  TILECODEC_CUDA_CHECK(cudaMemcpy(st.data(), d_status.get(), sizeof(status) * n, cudaMemcpyDeviceToHost));
  return st;
}

std::string describe(const encoded_tensor& e, dtype out) {
  const tensor_header& h = e.header();
  std::string s = "quant " + std::to_string(int(h.params.quant)) + " coder " + std::to_string(int(h.params.coder)) +
                  " coding " + std::to_string(int(h.coding)) + " source " + dtype_name(h.source) + " out " +
                  dtype_name(out) + " tile " + std::to_string(h.params.tile_rows) + "x" +
                  std::to_string(h.params.tile_cols) + " lanes " + std::to_string(h.params.lanes) + " p " +
                  std::to_string(h.params.prob_bits) + " shape [";
  for (int i = 0; i < h.rank; ++i) s += (i ? "," : "") + std::to_string(h.dims[i]);
  return s + "]";
}

std::size_t first_difference(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

// Decodes a batch of (tensor, output dtype) pairs in one call and compares each with the host.
void check_batch(const std::vector<gpu_tensor*>& tensors, const std::vector<dtype>& outs, const dv::decode_options& options = {}) {
  std::vector<output> buffers;
  std::vector<dv::decode_task> tasks;
  buffers.reserve(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    buffers.emplace_back(tensors[i]->enc.view().elements() * dtype_size(outs[i]));
    tasks.push_back(dv::make_decode_task(tensors[i]->ref, buffers.back().data(), outs[i], buffers.back().bytes));
  }
  const std::vector<status> st = run_decode(tasks, options);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    INFO(describe(tensors[i]->enc, outs[i]) << " seed " << run_seed());
    CHECK(st[i] == status::success);
    const std::vector<std::uint8_t> got = buffers[i].fetch();
    const std::vector<std::uint8_t> want = host_reference(tensors[i]->enc, outs[i]);
    const std::size_t d = first_difference(got, want);
    CHECK_MESSAGE(d == want.size(), "first difference at byte " << d << " of " << want.size());
  }
}

std::vector<dtype> outputs_for(const tensor_header& h) {
  if (h.params.quant == quant::kind::lossless) return {h.source};
  return {dtype::i8, dtype::f32, dtype::f16, dtype::bf16};
}

// A random policy of the given quantization and coder, and a random shape with edge tiles.
struct combo {
  format_params params;
  dtype source;
  std::vector<std::uint64_t> shape;
};

combo random_combo(quant::kind q, dtype source, coder::kind c, std::uint32_t lanes, std::uint32_t prob_bits,
                   std::mt19937_64& rng) {
  combo k;
  k.source = source;
  k.params.quant = q;
  k.params.coder = c;
  k.params.lanes = lanes;
  k.params.prob_bits = prob_bits;
  k.params.group_size = q == quant::kind::int4_group ? 32u << (rng() % 3) : 0u;
  static const std::uint32_t sides[] = {1, 5, 16, 32, 48, 64, 100, 128, 256};
  k.params.tile_rows = sides[rng() % 9];
  k.params.tile_cols = sides[2 + rng() % 7];
  switch (rng() % 8) {
    case 0: k.shape = {}; break;
    case 1: k.shape = {1 + rng() % 5000}; break;
    case 2: k.shape = {1 + rng() % 6, 1 + rng() % 30, 1 + rng() % 300}; break;
    default: k.shape = {1 + rng() % 400, 1 + rng() % 400}; break;
  }
  return k;
}

std::uint64_t leading_rows(const std::vector<std::uint64_t>& shape) {
  std::uint64_t rows = 1;
  for (std::size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  return rows;
}

// ---- building-block kernels ------------------------------------------------------------------

template <class Codec, int Threads>
__global__ void __launch_bounds__(Threads) block_decode_kernel(dv::tensor_ref tensor, void* out, dtype out_type,
                                                               std::uint64_t ld, status* result) {
  using Decoder = block_tile_decoder<Codec, Threads>;
  __shared__ typename Decoder::TempStorage temp;
  Decoder dec(temp);
  const status loaded = dec.load_table(tensor);  // once per block, reused for every tile below
  for (std::uint64_t first = std::uint64_t(blockIdx.x) * Decoder::warps(); first < tensor.tile_count;
       first += std::uint64_t(gridDim.x) * Decoder::warps()) {
    const status s = loaded == status::success ? dec.decode(tensor, first, out, out_type, ld) : loaded;
    if (s != status::success && threadIdx.x % 32 == 0) atomicMax(reinterpret_cast<unsigned*>(result), unsigned(s));
  }
}

// decode_tile into shared memory, then copied out tile by tile (tile t at out + t * max_tile_bytes).
template <class Codec, int Threads, int MaxTileBytes>
__global__ void __launch_bounds__(Threads) block_tile_smem_kernel(dv::tensor_ref tensor, std::uint8_t* out,
                                                                  dtype out_type, status* result) {
  using Decoder = block_tile_decoder<Codec, Threads>;
  __shared__ typename Decoder::TempStorage temp;
  __shared__ alignas(16) std::uint8_t tile_smem[MaxTileBytes];
  Decoder dec(temp);
  const status loaded = dec.load_table(tensor);
  for (std::uint64_t t = blockIdx.x; t < tensor.tile_count; t += gridDim.x) {
    const tile_box b = tensor.layout.box(t);
    const std::size_t bytes = std::size_t(b.size()) * dtype_size(out_type);
    status s = loaded;
    if (s == status::success) s = bytes <= MaxTileBytes ? dec.decode_tile(tensor, t, tile_smem, out_type, b.width) : status::invalid_argument;
    if (s != status::success && threadIdx.x == 0) atomicMax(reinterpret_cast<unsigned*>(result), unsigned(s));
    for (std::size_t i = threadIdx.x; i < bytes && s == status::success; i += Threads) out[t * MaxTileBytes + i] = tile_smem[i];
    __syncthreads();
  }
}

// The register interface: each warp decodes whole tiles 32 * 8 symbols at a time and stores the
// symbols in tile order (tile t at out + t * max_tile), following the documented striping.
template <class Codec>
__global__ void __launch_bounds__(128) warp_symbols_kernel(dv::tensor_ref tensor, std::uint16_t* out,
                                                           std::uint32_t max_tile, status* result) {
  using Decoder = warp_tile_decoder<Codec>;
  __shared__ typename Decoder::table_type table;
  __shared__ typename Decoder::TempStorage temp[4];
  const status loaded = load_decode_table(table, tensor, block_group<128>{});
  const std::uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  Decoder dec(temp[warp], table);
  for (std::uint64_t t = std::uint64_t(blockIdx.x) * 4 + warp; t < tensor.tile_count; t += std::uint64_t(gridDim.x) * 4) {
    status s = loaded == status::success || tensor.coding != plane_coding::rans ? dec.begin(tensor, t) : loaded;
    const std::uint32_t n = tensor.layout.box(t).size();
    while (s == status::success && dec.remaining() > 0) {
      std::uint16_t sym[8];
      const std::uint32_t first = dec.next(sym);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const std::uint32_t i = first + std::uint32_t(k) * Decoder::lane_stride + lane;
        if (lane < Decoder::lane_stride && i < n) out[t * max_tile + i] = sym[k];
      }
    }
    const status e = dec.end();
    if (s == status::success) s = e;
    if (s != status::success && lane == 0) atomicMax(reinterpret_cast<unsigned*>(result), unsigned(s));
  }
}

std::uint32_t reference_symbol(const tensor_header& h, const std::vector<std::uint8_t>& values, const std::vector<std::uint8_t>& codes,
                               std::uint64_t index) {
  if (h.params.quant == quant::kind::lossless) {
    std::uint16_t v;
    std::memcpy(&v, values.data() + 2 * index, 2);
    return lossless16_symbol(v, h.alphabet);  // either split
  }
  const int code = static_cast<std::int8_t>(codes[index]);
  return std::uint32_t(code + (h.params.quant == quant::kind::int8_rowwise ? 128 : 8));
}

// code_bits: the fixed coders' code width, pinned (0: the encoder's choice).
template <class Codec, int Threads = 128>
void check_building_blocks(dtype source, std::vector<std::uint64_t> shape, dtype out_type, std::mt19937_64& rng,
                           std::uint32_t code_bits = 0) {
  constexpr int max_tile_bytes = 8192;
  const std::uint64_t rows = shape.size() > 1 ? shape[0] : 1;
  format_params params = Codec::params();
  if (code_bits != 0) params.prob_bits = code_bits;
  gpu_tensor g(encode_values(random_values(rows, shape.back(), source, rng), source, shape, params));
  INFO(describe(g.enc, out_type) << " seed " << run_seed());
  const tile_layout& l = g.enc.view().layout();
  const std::vector<std::uint8_t> want = host_reference(g.enc, out_type);
  const std::size_t os = dtype_size(out_type);
  device_buffer result(sizeof(status));
  auto reset = [&] { TILECODEC_CUDA_CHECK(cudaMemset(result.get(), 0, sizeof(status))); };
  auto result_status = [&] {
    status s;
    TILECODEC_CUDA_CHECK(cudaMemcpy(&s, result.get(), sizeof(s), cudaMemcpyDeviceToHost));
    return s;
  };
  {  // (a) one tile per warp into the tensor-shaped output
    output out(want.size());
    reset();
    block_decode_kernel<Codec, Threads><<<3, Threads>>>(g.ref, out.data(), out_type, l.cols, reinterpret_cast<status*>(result.get()));
    TILECODEC_CUDA_CHECK_LAUNCH();
    TILECODEC_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(result_status() == status::success);
    CHECK(out.fetch() == want);
    // A row stride below the tile's width is refused before anything is written.
    output untouched(want.size());
    reset();
    block_decode_kernel<Codec, Threads><<<3, Threads>>>(g.ref, untouched.data(), out_type, 0, reinterpret_cast<status*>(result.get()));
    TILECODEC_CUDA_CHECK_LAUNCH();
    TILECODEC_CUDA_CHECK(cudaDeviceSynchronize());
    if (l.tile_count() > 0) CHECK(result_status() == status::invalid_argument);
    CHECK(untouched.fetch() == std::vector<std::uint8_t>(want.size(), poison));
  }
  {  // (b) a whole tile with the whole block, into shared memory
    device_buffer out(l.tile_count() * max_tile_bytes);
    TILECODEC_CUDA_CHECK(cudaMemset(out.get(), poison, out.size()));
    reset();
    block_tile_smem_kernel<Codec, Threads, max_tile_bytes><<<2, Threads>>>(g.ref, out.get(), out_type, reinterpret_cast<status*>(result.get()));
    TILECODEC_CUDA_CHECK_LAUNCH();
    TILECODEC_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(result_status() == status::success);
    const std::vector<std::uint8_t> got = out.download();
    bool same = true;
    for (std::uint64_t t = 0; t < l.tile_count() && same; ++t) {
      const tile_box b = l.box(t);
      for (std::uint32_t r = 0; r < b.height && same; ++r)
        same = std::memcmp(got.data() + t * max_tile_bytes + std::size_t(r) * b.width * os,
                           want.data() + ((b.row0 + r) * l.cols + b.col0) * os, b.width * os) == 0;
    }
    CHECK(same);
  }
  {  // (c) symbols into registers
    const std::uint32_t max_tile = l.tile_rows * l.tile_cols;
    device_buffer out(l.tile_count() * max_tile * 2);
    reset();
    warp_symbols_kernel<Codec><<<2, 128>>>(g.ref, reinterpret_cast<std::uint16_t*>(out.get()), max_tile, reinterpret_cast<status*>(result.get()));
    TILECODEC_CUDA_CHECK_LAUNCH();
    TILECODEC_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(result_status() == status::success);
    const std::vector<std::uint8_t> got = out.download();
    std::vector<std::uint8_t> values, codes;
    if (g.enc.header().params.quant == quant::kind::lossless) values = host_reference(g.enc, source);
    else codes = host_reference(g.enc, dtype::i8);
    bool same = true;
    for (std::uint64_t t = 0; t < l.tile_count() && same; ++t) {
      const tile_box b = l.box(t);
      for (std::uint32_t i = 0; i < b.size() && same; ++i) {
        std::uint16_t s;
        std::memcpy(&s, got.data() + 2 * (t * max_tile + i), 2);
        const std::uint64_t idx = (b.row0 + i / b.width) * l.cols + b.col0 + i % b.width;
        same = s == reference_symbol(g.enc.header(), values, codes, idx);
        if (!same) MESSAGE("tile " << t << " symbol " << i << ": " << s);
      }
    }
    CHECK(same);
  }
}

}  // namespace

// ---- tests -------------------------------------------------------------------------------------

TEST_CASE("device decode: every policy combination on random data, all in one call") {
  std::mt19937_64 rng(run_seed());
  struct kind { quant::kind q; dtype source; };
  const kind kinds[] = {{quant::kind::lossless, dtype::bf16}, {quant::kind::lossless, dtype::f16},
                        {quant::kind::lossless, dtype::f32},  {quant::kind::int8_rowwise, dtype::bf16},
                        {quant::kind::int8_rowwise, dtype::f32}, {quant::kind::int4_group, dtype::f32}};
  std::vector<std::unique_ptr<gpu_tensor>> tensors;
  std::vector<gpu_tensor*> batch;
  std::vector<dtype> outs;
  for (const kind& k : kinds) {
    std::vector<combo> combos;
    combos.push_back(random_combo(k.q, k.source, coder::kind::raw, 1, 0, rng));
    for (std::uint32_t lanes : {1u, 2u, 4u, 8u, 16u, 32u, 64u, 128u})
      for (std::uint32_t p = 8; p <= 12; ++p) combos.push_back(random_combo(k.q, k.source, coder::kind::rans, lanes, p, rng));
    for (std::uint32_t lanes : {32u, 64u, 128u})  // lane streams (coding 3)
      for (std::uint32_t p = 8; p <= 12; ++p) combos.push_back(random_combo(k.q, k.source, coder::kind::rans_lanes, lanes, p, rng));
    for (int i = 0; i < 4; ++i) combos.push_back(random_combo(k.q, k.source, coder::kind::fixed, fixed_lanes, 0, rng));
    for (std::uint32_t bits : {0u, 3u, 5u, 7u})  // the chooser's width, and pinned ones that escape more
      combos.push_back(random_combo(k.q, k.source, coder::kind::fixed_marked, fixed_lanes, bits, rng));
    for (const combo& c : combos) {
      const std::uint64_t cols = c.shape.empty() ? 1 : c.shape.back();
      tensors.push_back(std::make_unique<gpu_tensor>(
          encode_values(random_values(leading_rows(c.shape), cols, c.source, rng), c.source, c.shape, c.params)));
      for (dtype o : outputs_for(tensors.back()->enc.header())) {
        batch.push_back(tensors.back().get());
        outs.push_back(o);
      }
    }
  }
  std::size_t coded = 0, lane_coded = 0, fixed_coded = 0, with_escapes = 0, marked_coded = 0, with_marks = 0;
  for (auto& t : tensors) {
    const tensor_header& h = t->enc.header();
    coded += h.coding == plane_coding::rans;
    lane_coded += h.coding == plane_coding::rans_lanes;
    fixed_coded += h.coding == plane_coding::fixed;
    with_escapes += h.coding == plane_coding::fixed && h.params.prob_bits < fixed_symbol_bits(h.alphabet);
    marked_coded += h.coding == plane_coding::fixed_marked;
    with_marks += h.coding == plane_coding::fixed_marked && h.params.prob_bits < fixed_symbol_bits(h.alphabet);
  }
  MESSAGE(tensors.size() << " tensors (" << coded << " rANS-coded, " << lane_coded << " with lane streams, " << fixed_coded
                         << " fixed-coded of which " << with_escapes << " with escapes, " << marked_coded
                         << " with marked escapes of which " << with_marks << " with escapes), " << batch.size()
                         << " decodes in one call");
  CHECK(lane_coded > 0);
  CHECK(with_escapes > 0);
  CHECK(with_marks > 0);
  check_batch(batch, outs);  // a large call: one warp per lane-stream tile
  for (std::uint32_t team : {2u, 4u}) {  // 2 or 4 warps share a 64- or 128-lane tile
    dv::decode_options options;
    options.team_warps = team;
    check_batch(batch, outs, options);
  }
}

TEST_CASE("device decode: shapes at the edges" * doctest::test_suite("sanitize")) {
  std::mt19937_64 rng(run_seed() + 1);
  const std::vector<std::vector<std::uint64_t>> shapes = {{}, {1}, {5}, {70000}, {1, 1}, {64, 64}, {65, 63},
                                                          {1, 300}, {300, 1}, {3, 5, 7}, {17, 64}, {64, 129}};
  std::vector<std::unique_ptr<gpu_tensor>> tensors;
  std::vector<gpu_tensor*> batch;
  std::vector<dtype> outs;
  for (const auto& shape : shapes) {
    for (int variant = 0; variant < 10; ++variant) {
      format_params p;
      p.tile_rows = 32;
      p.tile_cols = 64;
      dtype src = dtype::bf16;
      if (variant == 1) p.quant = quant::kind::int8_rowwise, src = dtype::f32;
      if (variant == 2) p.quant = quant::kind::int4_group, p.group_size = 32, p.lanes = 64, src = dtype::f16;
      if (variant == 3) p.coder = coder::kind::rans_lanes, p.lanes = 128;                          // lane streams, bf16
      if (variant == 4) p.quant = quant::kind::int8_rowwise, p.coder = coder::kind::rans_lanes, src = dtype::f32;  // 32 lanes
      if (variant == 5) p.coder = coder::kind::fixed;                                              // fixed codes, bf16
      if (variant == 6) p.quant = quant::kind::int8_rowwise, p.coder = coder::kind::fixed, src = dtype::f32;
      if (variant == 7) p.coder = coder::kind::fixed_marked, p.prob_bits = 4;                      // marked escapes, bf16
      if (variant == 8) p.quant = quant::kind::int8_rowwise, p.coder = coder::kind::fixed_marked, p.prob_bits = 6, src = dtype::f32;
      if (variant == 9) p.quant = quant::kind::int8_rowwise, p.coder = coder::kind::raw, src = dtype::f32;  // stored codes
      tensors.push_back(std::make_unique<gpu_tensor>(
          encode_values(random_values(leading_rows(shape), shape.empty() ? 1 : shape.back(), src, rng), src, shape, p)));
      batch.push_back(tensors.back().get());
      outs.push_back(variant == 0 || variant == 3 || variant == 5 || variant == 7
                         ? src
                         : (variant == 1 || variant == 6 || variant == 8 || variant == 9 ? dtype::i8 : dtype::bf16));
    }
  }
  // automatic, then 1, 2, 4 warps per lane-stream tile (and per fixed-coded or stored tile)
  for (std::uint32_t team : {0u, 1u, 2u, 4u}) {
    CAPTURE(team);
    dv::decode_options options;
    options.team_warps = team;
    check_batch(batch, outs, options);
  }
}

// decode_async stages fixed codes through a per-warp ring of code-word windows and the tile's
// escape section in shared memory (warp/warp_fixed_decode.cuh; a section larger than the buffer in
// part); coding-2 tiles whose width is not a multiple of 16 take the window path; every tile with
// marked escapes (coding 4, warp/warp_fixed_marked_decode.cuh) is staged. Tiles of one half
// window, one block, window counts that are not multiples of the ring depth (6 slots for 7-bit
// codes, 12 for 4-bit), edge tiles of both kinds, tiles of the window path, and teams of 1, 2 and
// 4 warps.
TEST_CASE("device decode: fixed codes through the staged ring" * doctest::test_suite("sanitize")) {
  std::mt19937_64 rng(run_seed() + 6);
  struct spec { quant::kind q; dtype src, out; std::uint32_t tile_rows, tile_cols; std::uint64_t rows, cols; };
  constexpr quant::kind lossless = quant::kind::lossless, int8 = quant::kind::int8_rowwise, int4 = quant::kind::int4_group;
  const spec specs[] = {
      {lossless, dtype::bf16, dtype::bf16, 16, 16, 40, 48},    // 256 symbols: half a window; edge tiles 8 x 16
      {int8, dtype::f32, dtype::i8, 32, 32, 70, 96},           // one block (two windows); edge tiles 6 x 32
      {lossless, dtype::bf16, dtype::bf16, 48, 64, 100, 176},  // 6 windows; edge tiles 48 wide, 4 high
      {int8, dtype::bf16, dtype::f32, 80, 64, 170, 200},       // 10 windows; edge tiles 8 wide (window path), 10 high
      {int8, dtype::f32, dtype::i8, 128, 128, 300, 272},       // 32 windows; edge tiles 16 wide, 44 high
      {lossless, dtype::f16, dtype::f16, 128, 128, 130, 256},  // 32 windows, 16-bit lossless
      {int4, dtype::f32, dtype::bf16, 64, 64, 130, 192},       // int4 groups of 32
      {lossless, dtype::f32, dtype::f32, 64, 64, 100, 128},    // fp32 lossless (byte symbols, three raw bytes)
      {lossless, dtype::bf16, dtype::bf16, 256, 512, 256, 528},  // large escape sections: staged in part
      {lossless, dtype::bf16, dtype::bf16, 32, 40, 70, 100},   // 40 wide: the window path
      {lossless, dtype::bf16, dtype::bf16, 36, 64, 100, 144},  // edge tiles 36 x 16: the next tiles' raw bytes
                                                               // are not 16-byte aligned (window path when marked)
  };
  std::vector<std::unique_ptr<gpu_tensor>> tensors;
  std::vector<gpu_tensor*> batch;
  std::vector<dtype> outs;
  std::uint64_t staged = 0, window_path = 0, partial = 0, with_escapes = 0, marked_staged = 0, marked_partial = 0,
                marked_tail = 0, marked_raw_staged = 0, marked_raw_unaligned = 0;
  for (const coder::kind cd : {coder::kind::fixed, coder::kind::fixed_marked})
  for (const spec& sp : specs) {
    format_params p;
    p.quant = sp.q;
    p.coder = cd;
    p.lanes = fixed_lanes;
    if (cd == coder::kind::fixed_marked) p.prob_bits = sp.q == int4 ? 3u : (sp.q == lossless ? 4u : 6u);  // narrow: escapes
    p.group_size = sp.q == int4 ? (cd == coder::kind::fixed ? 32u : 128u) : 0u;  // marked int4 g32: stored
    p.tile_rows = sp.tile_rows;
    p.tile_cols = sp.tile_cols;
    encoded_tensor e;
    for (int attempt = 0; attempt < 32; ++attempt) {  // wide, light-tailed draws may be stored
      e = encode_values(random_values(sp.rows, sp.cols, sp.src, rng), sp.src, {sp.rows, sp.cols}, p);
      if (is_fixed_coding(e.header().coding)) break;
    }
    tensors.push_back(std::make_unique<gpu_tensor>(std::move(e)));
    batch.push_back(tensors.back().get());
    outs.push_back(sp.out);
    const encoded_tensor& enc = tensors.back()->enc;
    if (!is_fixed_coding(enc.header().coding)) continue;  // stored after every draw: decoded all the same
    with_escapes += enc.header().params.prob_bits < fixed_symbol_bits(enc.header().alphabet);
    const bool marked = enc.header().coding == plane_coding::fixed_marked;
    const dv::tensor_ref host_ref = dv::make_tensor_ref(enc.view(), enc.bytes().data());  // tile() on the host
    for (std::uint64_t t = 0; t < host_ref.tile_count; ++t) {
      dv::tile_ref tr;
      REQUIRE(host_ref.tile(t, tr) == status::success);
      if (marked) {  // every width is staged; with escapes and 16-bit lossless values, the raw plane too
        const fixed_code f = host_ref.fixed();
        const std::uint64_t code_bytes = fixed_marked_shape_of(f, tr.size()).code_bytes;
        const bool escapes = fixed_marked_escapes(f), raw = escapes && f.alphabet == 512;
        const bool raw_aligned = (host_ref.raw_offset + tr.raw_start) % 16 == 0;
        const bool whole_window = tr.size() >= detail::tile_writer::window;
        if (raw && whole_window && tr.box.width % 16 == 0) ++(raw_aligned ? marked_raw_staged : marked_raw_unaligned);
        if (!raw || (tr.box.width % 16 == 0 && raw_aligned)) ++marked_staged;
        marked_partial += tr.byte_count - code_bytes > (raw ? detail::marked_raw_escape_bytes : detail::fixed_warp_storage::escape_bytes);
        // a last window of fewer than 512 symbols: the window path after the staged ones
        marked_tail += escapes && tr.size() % detail::tile_writer::window != 0;
        continue;
      }
      const std::uint64_t code_bytes = fixed_shape(host_ref.fixed(), tr.box.height, tr.box.width).code_bytes;
      (tr.box.width % 16 == 0 ? staged : window_path) += 1;
      partial += tr.box.width % 16 == 0 && tr.byte_count - code_bytes > detail::fixed_warp_storage::escape_bytes;
    }
  }
  MESSAGE(staged << " fixed-coded tiles staged, " << window_path << " by the window path, " << marked_staged
                 << " tiles with marked escapes staged; " << with_escapes << " of " << tensors.size()
                 << " tensors with escapes; escape sections larger than the buffer (staged in part) in " << partial
                 << " + " << marked_partial << " tiles; " << marked_tail << " marked tiles end in a partial window; "
                 << marked_raw_staged << " marked 16-bit lossless tiles with their raw plane staged, "
                 << marked_raw_unaligned << " with unaligned raw bytes (window path)");
  CHECK(staged > 0);
  CHECK(marked_staged > 0);
  CHECK(marked_tail > 0);
  CHECK(marked_raw_staged > 0);
  CHECK(marked_raw_unaligned > 0);
  WARN(window_path > 0);  // draws that the encoder stores leave no tile to the window path (the edge test has some)
  // Teams of 1, 2 and 4 warps, and the call's own choice of fixed-code units (8 to 32 windows, the
  // longest that give every warp of the grid three): the full grid takes 8-window units for these
  // tensors, a grid of one block 32, of four blocks 16 when every draw above is fixed-coded.
  struct call { std::uint32_t team, max_blocks; };
  for (const call c : {call{0, 0}, call{1, 0}, call{2, 0}, call{4, 0}, call{0, 1}, call{0, 4}}) {
    CAPTURE(c.team);
    CAPTURE(c.max_blocks);
    dv::decode_options options;
    options.team_warps = c.team;
    options.max_blocks = c.max_blocks;
    check_batch(batch, outs, options);
  }
}

TEST_CASE("device decode: tile ranges, row strides and row offsets" * doctest::test_suite("sanitize")) {
  std::mt19937_64 rng(run_seed() + 2);
  format_params p;
  p.quant = quant::kind::int8_rowwise;
  p.tile_rows = 16;
  p.tile_cols = 128;
  gpu_tensor g(encode_values(random_values(90, 300, dtype::f32, rng), dtype::f32, {90, 300}, p));
  const tile_layout& l = g.enc.view().layout();
  const std::vector<std::uint8_t> want = host_reference(g.enc, dtype::i8);
  // Task 0: grid rows 0..1 into a buffer with ld = 320; task 1: the rest into a buffer of its rows only.
  const std::uint64_t ld = 320, split = 2 * l.grid_cols, split_row = 2 * l.tile_rows;
  output a(split_row * ld), b((l.rows - split_row) * l.cols);
  dv::decode_task t0 = dv::make_decode_task(g.ref, a.data(), dtype::i8, a.bytes);
  t0.ld = ld;
  t0.tile_count = split;
  dv::decode_task t1 = dv::make_decode_task(g.ref, b.data(), dtype::i8, b.bytes);
  t1.first_tile = split;
  t1.row_begin = split_row;
  const std::vector<status> st = run_decode({t0, t1});
  CHECK(st[0] == status::success);
  CHECK(st[1] == status::success);
  const std::vector<std::uint8_t> ga = a.fetch(), gb = b.fetch();
  for (std::uint64_t r = 0; r < split_row; ++r) {
    CHECK(std::memcmp(ga.data() + r * ld, want.data() + r * l.cols, l.cols) == 0);
    for (std::uint64_t c = l.cols; c < ld; ++c) CHECK(ga[r * ld + c] == poison);
  }
  CHECK(std::memcmp(gb.data(), want.data() + split_row * l.cols, gb.size()) == 0);
}

TEST_CASE("device decode: invalid tasks and arguments" * doctest::test_suite("sanitize")) {
  std::mt19937_64 rng(run_seed() + 3);
  format_params p;
  p.tile_rows = p.tile_cols = 32;
  gpu_tensor g(encode_values(random_values(40, 50, dtype::bf16, rng), dtype::bf16, {40, 50}, p));
  output small(100), big(40 * 50 * 4);
  std::vector<dv::decode_task> tasks;
  tasks.push_back(dv::make_decode_task(g.ref, small.data(), dtype::bf16, small.bytes));  // too small
  tasks.push_back(dv::make_decode_task(g.ref, big.data(), dtype::f32, big.bytes));       // lossless bf16 -> f32
  dv::decode_task far = dv::make_decode_task(g.ref, big.data(), dtype::bf16, big.bytes);
  far.first_tile = 5;  // past the last tile
  tasks.push_back(far);
  tasks.push_back(dv::make_decode_task(g.ref, nullptr, dtype::bf16, big.bytes));
  dv::decode_task unaligned = dv::make_decode_task(g.ref, big.data() + 1, dtype::bf16, big.bytes - 1);
  tasks.push_back(unaligned);
  dv::decode_task empty = dv::make_decode_task(g.ref, nullptr, dtype::bf16, 0);
  empty.first_tile = g.ref.tile_count;  // nothing to decode: fine
  tasks.push_back(empty);
  const std::vector<status> st = run_decode(tasks);
  CHECK(st[0] == status::invalid_argument);
  CHECK(st[1] == status::unsupported);
  CHECK(st[2] == status::invalid_argument);
  CHECK(st[3] == status::invalid_argument);
  CHECK(st[4] == status::invalid_argument);
  CHECK(st[5] == status::success);
  CHECK(small.fetch() == std::vector<std::uint8_t>(small.bytes, poison));
  // The call itself: too little workspace, misaligned workspace.
  device_buffer temp(4096);
  std::size_t bytes = 8;
  CHECK(dv::decode_async(temp.get(), bytes, nullptr, 1, nullptr, nullptr) == status::invalid_argument);
  bytes = 4096;
  CHECK(dv::decode_async(temp.get() + 4, bytes, nullptr, 1, nullptr, nullptr) == status::invalid_argument);
  CHECK(dv::decode_async(temp.get(), bytes, nullptr, 0, nullptr, nullptr) == status::success);
  dv::decode_options three;
  three.team_warps = 3;  // teams are 1, 2 or 4 warps
  CHECK(dv::decode_async(temp.get(), bytes, nullptr, 0, nullptr, nullptr, three) == status::invalid_argument);
}

// A call of up to planned_in_block tasks is planned by every block of the decode kernel (the
// tasks staged in its shared memory), a larger one once by the setup kernel: both decode every
// valid task as the host does and give invalid ones their status, whichever coding they use.
TEST_CASE("device decode: calls planned in the block and by the setup kernel" * doctest::test_suite("sanitize")) {
  std::mt19937_64 rng(run_seed() + 9);
  std::vector<std::unique_ptr<gpu_tensor>> tensors;
  std::vector<dtype> outs;
  std::vector<std::vector<std::uint8_t>> want;
  for (int variant = 0; variant < 4; ++variant) {
    format_params p;
    p.tile_rows = 32;
    p.tile_cols = 64;
    dtype src = dtype::bf16, out = dtype::bf16;
    if (variant == 1) p.quant = quant::kind::int8_rowwise, p.coder = coder::kind::fixed_marked, p.prob_bits = 6;
    if (variant == 2) p.coder = coder::kind::rans_lanes, p.lanes = 64;
    if (variant == 3) p.quant = quant::kind::int8_rowwise, p.coder = coder::kind::raw;  // stored codes
    if (p.quant == quant::kind::int8_rowwise) src = dtype::f32, out = dtype::i8;
    const std::uint64_t rows = 40 + 7 * variant, cols = 70 + 13 * variant;
    tensors.push_back(std::make_unique<gpu_tensor>(encode_values(random_values(rows, cols, src, rng), src, {rows, cols}, p)));
    outs.push_back(out);
    want.push_back(host_reference(tensors.back()->enc, out));
  }
  const std::uint32_t in_block = dv::detail::planned_in_block;
  for (std::uint32_t n : {in_block, in_block + 1}) {
    CAPTURE(n);
    std::vector<output> buffers;
    buffers.reserve(n);
    std::vector<dv::decode_task> tasks;
    for (std::uint32_t i = 0; i < n; ++i) {
      const gpu_tensor& t = *tensors[i % tensors.size()];
      const dtype out = outs[i % tensors.size()];
      buffers.emplace_back(t.enc.view().elements() * dtype_size(out));
      tasks.push_back(dv::make_decode_task(t.ref, buffers.back().data(), out, buffers.back().bytes));
    }
    const std::uint32_t no_output = 5, past_end = n - 1;
    tasks[no_output].out = nullptr;
    tasks[past_end].first_tile = tasks[past_end].tensor.tile_count + 1;
    const std::vector<status> st = run_decode(tasks);
    for (std::uint32_t i = 0; i < n; ++i) {
      CAPTURE(i);
      if (i == no_output || i == past_end) {
        CHECK(st[i] == status::invalid_argument);
        CHECK(buffers[i].fetch() == std::vector<std::uint8_t>(buffers[i].bytes, poison));
        continue;
      }
      CHECK(st[i] == status::success);
      CHECK(buffers[i].fetch() == want[i % tensors.size()]);
    }
  }
}

TEST_CASE("device decode: corrupted input gives errors and stays inside its buffers" * doctest::test_suite("sanitize")) {
  std::mt19937_64 rng(run_seed() + 4);
  format_params pb;
  pb.tile_rows = 32;
  pb.tile_cols = 64;
  format_params pi;
  pi.quant = quant::kind::int8_rowwise;
  pi.tile_rows = 16;
  pi.tile_cols = 128;
  pi.lanes = 64;
  format_params pq = pi;  // 128 lanes: four chains per thread
  pq.tile_rows = pq.tile_cols = 256;  // 6 B per lane of head stays small against the tile
  pq.lanes = 128;
  format_params pl = pb;  // lane streams (coding 3), bf16, 64 lanes
  pl.tile_rows = pl.tile_cols = 64;
  pl.coder = coder::kind::rans_lanes;
  pl.lanes = 64;
  format_params pm = pq;  // lane streams, int8, 128 lanes
  pm.coder = coder::kind::rans_lanes;
  format_params pf = pi;  // fixed codes with escapes, int8 and bf16 (escape entries of 2 and 4 bytes)
  pf.coder = coder::kind::fixed;
  pf.lanes = fixed_lanes;
  format_params pg = pb;
  pg.coder = coder::kind::fixed;
  // Fixed codes: draws until the encoder picks a width with escapes (wide, light-tailed draws code
  // every symbol, or are stored). Heavy tails (nu = 2.5): about 65% of 200 x 300 int8 draws get
  // escapes, against 4% of random_values' usual draws (which failed 64 attempts in about 7% of seeds).
  auto with_escapes = [&](std::uint64_t rows, std::uint64_t cols, dtype src, const format_params& p) {
    encoded_tensor e;
    for (int attempt = 0; attempt < 64; ++attempt) {
      e = encode_values(random_values(rows, cols, src, rng, 2.5), src, {rows, cols}, p);
      const tensor_header& h = e.header();
      if (h.coding == plane_coding::fixed && h.params.prob_bits < fixed_symbol_bits(h.alphabet)) break;
    }
    return e;
  };
  const encoded_tensor originals[] = {encode_values(random_values(100, 130, dtype::bf16, rng), dtype::bf16, {100, 130}, pb),
                                      encode_values(random_values(70, 300, dtype::f32, rng), dtype::f32, {70, 300}, pi),
                                      encode_values(random_values(300, 520, dtype::f32, rng), dtype::f32, {300, 520}, pq),
                                      encode_values(random_values(150, 200, dtype::bf16, rng), dtype::bf16, {150, 200}, pl),
                                      encode_values(random_values(300, 520, dtype::f32, rng), dtype::f32, {300, 520}, pm),
                                      with_escapes(200, 300, dtype::f32, pf),
                                      with_escapes(100, 130, dtype::bf16, pg)};
  constexpr int kinds = 7;
  for (int i = 2; i < 5; ++i) {  // the 128-lane and lane-stream tensors must be coded (the first two may store)
    INFO(describe(originals[i], dtype::f32));
    REQUIRE(has_rans_table(originals[i].header().coding));
  }
  for (int i = 5; i < kinds; ++i) {  // the fixed-coded ones must have escapes to corrupt
    const tensor_header& h = originals[i].header();
    INFO(describe(originals[i], dtype::f32));
    REQUIRE(h.coding == plane_coding::fixed);
    REQUIRE(h.params.prob_bits < fixed_symbol_bits(h.alphabet));
  }
  int detected = 0, trials = 0;
  for (int trial = 0; trial < 84; ++trial) {
    const encoded_tensor& e = originals[trial % kinds];
    const tensor_header& h = e.header();
    std::vector<std::uint8_t> bytes = e.bytes();
    const int where = trial % 4;  // table, index, payload, truncated tile
    std::uint64_t lo = h.payload_offset, len = h.payload_bytes;
    // (A stored plane has no table; a fixed code's window is read by the host parse, which the
    // device view trusts like the header.)
    if (where == 0 && h.table_bytes > 0 && h.coding != plane_coding::fixed) lo = h.table_offset, len = h.table_bytes;
    if (where == 1) lo = h.index_offset + 8, len = h.index_bytes - 16;
    for (int k = 0; k < 1 + int(rng() % 3); ++k) bytes[lo + rng() % len] ^= std::uint8_t(1u << (rng() % 8));
    if (where == 3) {  // a tile that claims fewer bytes than it has: its stream runs out
      const std::uint64_t t = 1 + rng() % (h.tile_count - 1);
      std::uint64_t v;
      std::memcpy(&v, bytes.data() + h.index_offset + 8 * t, 8);
      v += 16 * (1 + rng() % 4);
      std::memcpy(bytes.data() + h.index_offset + 8 * t, &v, 8);
    }
    // The device view comes from the intact header (as after a host parse), the device bytes are corrupt.
    device_buffer d(bytes.size());
    d.upload(bytes.data(), bytes.size());
    const dv::tensor_ref ref = dv::make_tensor_ref(e.view(), d.get());
    const dtype out_type = e.header().params.quant == quant::kind::lossless ? dtype::bf16 : dtype::i8;
    output out(e.view().elements() * dtype_size(out_type));
    const status st = run_decode({dv::make_decode_task(ref, out.data(), out_type, out.bytes)})[0];
    (void)out.fetch();  // guards intact
    // The host decoder on the same bytes must agree on success or failure.
    encoded_tensor_view v;
    status hs = encoded_tensor_view::parse(bytes.data(), bytes.size(), v);
    std::vector<std::uint8_t> hout(out.bytes);
    if (hs == status::success) hs = host::decode(v, hout.data(), out_type, hout.size());
    INFO("trial " << trial << " where " << where << " host " << to_string(hs) << " device " << to_string(st) << " seed " << run_seed());
    CHECK((hs == status::success) == (st == status::success));
    ++trials;
    detected += st != status::success;
  }
  MESSAGE(detected << " of " << trials << " corruptions detected");
}

namespace {

// Decodes corrupted copies of one encoded tensor in one call, with teams of 1 and 4 warps: the
// device and the host decoder must agree on success or failure of every copy and, where both
// succeed, on every output byte; no copy may write outside its output (guard bytes).
void check_corrupt_copies(const encoded_tensor& e, const std::vector<std::vector<std::uint8_t>>& corrupt, dtype out_type) {
  const int copies = static_cast<int>(corrupt.size());
  std::vector<std::unique_ptr<device_buffer>> inputs;
  std::vector<output> outs;
  std::vector<dv::decode_task> tasks;
  outs.reserve(corrupt.size());
  for (const auto& bytes : corrupt) {
    inputs.push_back(std::make_unique<device_buffer>(bytes.size()));
    inputs.back()->upload(bytes.data(), bytes.size());
    outs.emplace_back(e.view().elements() * dtype_size(out_type));
    tasks.push_back(dv::make_decode_task(dv::make_tensor_ref(e.view(), inputs.back()->get()), outs.back().data(), out_type,
                                         outs.back().bytes));
  }
  for (std::uint32_t team : {1u, 4u}) {
    CAPTURE(team);
    dv::decode_options options;
    options.team_warps = team;
    const std::vector<status> st = run_decode(tasks, options);
    int detected = 0, equal = 0;
    for (int c = 0; c < copies; ++c) {
      encoded_tensor_view v;
      status hs = encoded_tensor_view::parse(corrupt[c].data(), corrupt[c].size(), v);
      std::vector<std::uint8_t> hout(outs[c].bytes);
      if (hs == status::success) hs = host::decode(v, hout.data(), out_type, hout.size());
      INFO("copy " << c << " kind " << c % 4 << " host " << to_string(hs) << " device " << to_string(st[c]));
      CHECK((hs == status::success) == (st[c] == status::success));
      const std::vector<std::uint8_t> got = outs[c].fetch();  // guards intact
      if (hs == status::success && st[c] == status::success) {
        CHECK(first_difference(got, hout) == hout.size());
        ++equal;
      }
      detected += st[c] != status::success;
    }
    MESSAGE(detected << " of " << copies << " corrupt copies detected, " << equal << " decoded alike");
  }
}

}  // namespace

// The staged fixed path's escape checks (warp/warp_fixed_decode.cuh) on escape sections corrupted
// in the ways that matter to them: a row_start entry, an entry's column or value, two neighbouring
// entries swapped; tiles 128, 256 and 64 wide. Many corrupt copies in one call, teams of 1 and 4
// warps; each must agree with the host decoder on success or failure and, where both succeed (a
// changed value that is still a valid escape), on every output byte.
TEST_CASE("device decode: corrupted fixed-code escape sections agree with the host" * doctest::test_suite("sanitize")) {
  std::mt19937_64 rng(run_seed() + 7);
  struct spec { dtype src; std::uint32_t tile_rows, tile_cols; std::uint64_t rows, cols; };
  const spec specs[] = {{dtype::f32, 64, 128, 150, 256}, {dtype::bf16, 32, 256, 70, 512}, {dtype::bf16, 48, 64, 100, 128}};
  for (const spec& sp : specs) {
    format_params p;
    p.quant = sp.src == dtype::f32 ? quant::kind::int8_rowwise : quant::kind::lossless;
    p.coder = coder::kind::fixed;
    p.lanes = fixed_lanes;
    p.tile_rows = sp.tile_rows;
    p.tile_cols = sp.tile_cols;
    // Tiles with two escapes or more (a tensor of the encoder's choice may have none: drawn again).
    auto escapes_of = [](const dv::tensor_ref& ref, const dv::tile_ref& tr) {
      std::uint16_t n;
      std::memcpy(&n, tr.bytes + fixed_shape(ref.fixed(), tr.box.height, tr.box.width).code_bytes + 2u * tr.box.height, 2);
      return std::uint32_t(n);
    };
    auto candidates_of = [&](const encoded_tensor& e) {
      std::vector<std::uint64_t> found;
      const tensor_header& h = e.header();
      if (h.coding != plane_coding::fixed || h.params.prob_bits >= fixed_symbol_bits(h.alphabet)) return found;
      const dv::tensor_ref ref = dv::make_tensor_ref(e.view(), e.bytes().data());
      for (std::uint64_t t = 0; t < ref.tile_count; ++t) {
        dv::tile_ref tr;
        if (ref.tile(t, tr) == status::success && escapes_of(ref, tr) >= 2) found.push_back(t);
      }
      return found;
    };
    encoded_tensor e;
    std::vector<std::uint64_t> candidates;
    for (int attempt = 0; attempt < 64 && candidates.empty(); ++attempt) {  // heavy tails (see the test above)
      e = encode_values(random_values(sp.rows, sp.cols, sp.src, rng, 2.5), sp.src, {sp.rows, sp.cols}, p);
      candidates = candidates_of(e);
    }
    INFO(describe(e, dtype::f32) << " seed " << run_seed());
    REQUIRE(!candidates.empty());
    const dtype out_type = p.quant == quant::kind::lossless ? dtype::bf16 : dtype::i8;
    const dv::tensor_ref host_ref = dv::make_tensor_ref(e.view(), e.bytes().data());
    const fixed_code code = host_ref.fixed();
    constexpr int copies = 48;
    std::vector<std::vector<std::uint8_t>> corrupt;
    for (int c = 0; c < copies; ++c) {
      std::vector<std::uint8_t> bytes = e.bytes();
      dv::tile_ref tr;
      REQUIRE(host_ref.tile(candidates[rng() % candidates.size()], tr) == status::success);
      const std::uint32_t escapes = escapes_of(host_ref, tr);
      const fixed_tile_shape fs = fixed_shape(code, tr.box.height, tr.box.width);
      const std::size_t at = static_cast<std::size_t>(tr.bytes - e.bytes().data());
      const std::size_t rows_at = at + fs.code_bytes, entries_at = at + fs.escapes_offset;
      const std::uint32_t e0 = static_cast<std::uint32_t>(rng() % (escapes - 1));
      switch (c % 4) {
        case 0:  // a row_start entry (not the count: that is checked against the tile's size)
          bytes[rows_at + 2u * (rng() % tr.box.height) + rng() % 2] ^= std::uint8_t(1u << (rng() % 8));
          break;
        case 1:  // a bit of an entry's column (high bits) or value (low bits)
        case 2:
          bytes[entries_at + std::size_t(e0) * fs.entry_bytes + rng() % fs.entry_bytes] ^= std::uint8_t(1u << (rng() % 8));
          break;
        default:  // two neighbouring entries swapped
          std::swap_ranges(bytes.begin() + std::ptrdiff_t(entries_at + std::size_t(e0) * fs.entry_bytes),
                           bytes.begin() + std::ptrdiff_t(entries_at + std::size_t(e0 + 1) * fs.entry_bytes),
                           bytes.begin() + std::ptrdiff_t(entries_at + std::size_t(e0 + 1) * fs.entry_bytes));
      }
      corrupt.push_back(std::move(bytes));
    }
    check_corrupt_copies(e, corrupt, out_type);
  }
}

// The same for marked escapes (coding 4, warp/warp_fixed_marked_decode.cuh): a window_start entry,
// a value, a code word (a code that becomes or stops being an escape mark) or two neighbouring
// values swapped; 128-, 256- and 48-wide tiles, teams of 1 and 4 warps.
TEST_CASE("device decode: corrupted marked escape sections agree with the host" * doctest::test_suite("sanitize")) {
  std::mt19937_64 rng(run_seed() + 8);
  struct spec { dtype src; quant::kind q; std::uint32_t tile_rows, tile_cols; std::uint64_t rows, cols; };
  const spec specs[] = {{dtype::f32, quant::kind::int8_rowwise, 64, 128, 150, 256},
                        {dtype::bf16, quant::kind::lossless, 32, 256, 70, 512},
                        {dtype::f32, quant::kind::int4_group, 48, 64, 100, 128}};
  for (const spec& sp : specs) {
    format_params p;
    p.quant = sp.q;
    p.group_size = sp.q == quant::kind::int4_group ? 128u : 0u;  // groups of 32 spread the codes: stored
    p.coder = coder::kind::fixed_marked;
    p.lanes = fixed_lanes;
    p.prob_bits = sp.q == quant::kind::int4_group ? 3u : (sp.q == quant::kind::lossless ? 4u : 6u);  // narrow: escapes
    p.tile_rows = sp.tile_rows;
    p.tile_cols = sp.tile_cols;
    auto escapes_of = [](const dv::tensor_ref& ref, const dv::tile_ref& tr) {
      const fixed_marked_shape s = fixed_marked_shape_of(ref.fixed(), tr.size());
      std::uint16_t n;
      std::memcpy(&n, tr.bytes + s.code_bytes + 2u * s.windows, 2);
      return std::uint32_t(n);
    };
    auto candidates_of = [&](const encoded_tensor& e) {
      std::vector<std::uint64_t> found;
      const tensor_header& h = e.header();
      if (h.coding != plane_coding::fixed_marked || h.params.prob_bits >= fixed_symbol_bits(h.alphabet)) return found;
      const dv::tensor_ref ref = dv::make_tensor_ref(e.view(), e.bytes().data());
      for (std::uint64_t t = 0; t < ref.tile_count; ++t) {
        dv::tile_ref tr;
        if (ref.tile(t, tr) == status::success && escapes_of(ref, tr) >= 2) found.push_back(t);
      }
      return found;
    };
    encoded_tensor e;
    std::vector<std::uint64_t> candidates;
    for (int attempt = 0; attempt < 64 && candidates.empty(); ++attempt) {  // heavy tails
      e = encode_values(random_values(sp.rows, sp.cols, sp.src, rng, 2.5), sp.src, {sp.rows, sp.cols}, p);
      candidates = candidates_of(e);
    }
    const dtype out_type = p.quant == quant::kind::lossless ? dtype::bf16 : dtype::i8;
    INFO(describe(e, out_type) << " seed " << run_seed());
    REQUIRE(!candidates.empty());
    const dv::tensor_ref host_ref = dv::make_tensor_ref(e.view(), e.bytes().data());
    const fixed_code code = host_ref.fixed();
    constexpr int copies = 48;
    std::vector<std::vector<std::uint8_t>> corrupt;
    for (int c = 0; c < copies; ++c) {
      std::vector<std::uint8_t> bytes = e.bytes();
      dv::tile_ref tr;
      REQUIRE(host_ref.tile(candidates[rng() % candidates.size()], tr) == status::success);
      const std::uint32_t escapes = escapes_of(host_ref, tr);
      const fixed_marked_shape fs = fixed_marked_shape_of(code, tr.size());
      const std::size_t at = static_cast<std::size_t>(tr.bytes - e.bytes().data());
      const std::size_t starts_at = at + fs.code_bytes, values_at = at + fs.values_offset;
      const std::uint32_t e0 = static_cast<std::uint32_t>(rng() % (escapes - 1));
      switch (c % 4) {
        case 0:  // a window_start entry
          bytes[starts_at + 2u * (rng() % (fs.windows + 1)) + rng() % 2] ^= std::uint8_t(1u << (rng() % 8));
          break;
        case 1:  // a bit of a value
          bytes[values_at + std::size_t(e0) * fs.value_bytes + rng() % fs.value_bytes] ^= std::uint8_t(1u << (rng() % 8));
          break;
        case 2:  // a bit of a code word
          bytes[at + rng() % fs.code_bytes] ^= std::uint8_t(1u << (rng() % 8));
          break;
        default:  // two neighbouring values swapped
          std::swap_ranges(bytes.begin() + std::ptrdiff_t(values_at + std::size_t(e0) * fs.value_bytes),
                           bytes.begin() + std::ptrdiff_t(values_at + std::size_t(e0 + 1) * fs.value_bytes),
                           bytes.begin() + std::ptrdiff_t(values_at + std::size_t(e0 + 1) * fs.value_bytes));
      }
      corrupt.push_back(std::move(bytes));
    }
    check_corrupt_copies(e, corrupt, out_type);
  }
}

TEST_CASE("device building blocks: warp and block tile decoders in user kernels" * doctest::test_suite("sanitize")) {
  std::mt19937_64 rng(run_seed() + 5);
  check_building_blocks<codec<tile<32, 64>, quant::lossless, coder::rans<12, 32>>>(dtype::bf16, {100, 150}, dtype::bf16, rng);
  check_building_blocks<codec<tile<32, 64>, quant::int8_rowwise, coder::rans<12, 64>>>(dtype::f32, {100, 200}, dtype::i8, rng);
  check_building_blocks<codec<tile<64, 64>, quant::lossless, coder::rans<12, 128>>>(dtype::bf16, {150, 130}, dtype::bf16, rng);
  check_building_blocks<codec<tile<32, 64>, quant::lossless, coder::rans_lanes<12, 32>>>(dtype::bf16, {100, 150}, dtype::bf16, rng);
  check_building_blocks<codec<tile<32, 64>, quant::int8_rowwise, coder::rans_lanes<11, 64>>>(dtype::f32, {100, 200}, dtype::i8, rng);
  // (Lane streams: block decode_tile() shares a 64-lane tile between 2 of the 4 warps, a 128-lane
  // tile between the 2 warps of the next block.)
  // 128 lane rings are 8 KB per warp: 2-warp blocks and an 11-bit table keep the kernels under 48 KB.
  check_building_blocks<codec<tile<64, 64>, quant::lossless, coder::rans_lanes<11, 128>>, 64>(dtype::bf16, {150, 130}, dtype::bf16, rng);
  check_building_blocks<codec<tile<16, 256>, quant::int4_group<32>, coder::rans<11, 8>>>(dtype::f32, {40, 600}, dtype::f16, rng);
  check_building_blocks<codec<tile<16, 64>, quant::lossless, coder::raw>>(dtype::bf16, {50, 100}, dtype::bf16, rng);
  // Fixed codes: no table; block decode_tile() shares each tile's windows between the 4 warps.
  check_building_blocks<codec<tile<32, 64>, quant::lossless, coder::fixed>>(dtype::bf16, {100, 150}, dtype::bf16, rng);
  check_building_blocks<codec<tile<32, 64>, quant::int8_rowwise, coder::fixed>>(dtype::f32, {100, 200}, dtype::f32, rng);
  check_building_blocks<codec<tile<16, 48>, quant::int4_group<32>, coder::fixed>>(dtype::f32, {40, 600}, dtype::f16, rng);
  // Marked escapes: the same, and the register interface's running escape count.
  check_building_blocks<codec<tile<32, 64>, quant::lossless, coder::fixed_marked>>(dtype::bf16, {100, 150}, dtype::bf16, rng, 4);
  check_building_blocks<codec<tile<32, 64>, quant::int8_rowwise, coder::fixed_marked>>(dtype::f32, {100, 200}, dtype::f32, rng, 6);
  check_building_blocks<codec<tile<16, 48>, quant::int4_group<128>, coder::fixed_marked>>(dtype::f32, {40, 600}, dtype::f16, rng, 3);
  check_building_blocks<codec<tile<32, 64>, quant::int8_rowwise, coder::fixed_marked>>(dtype::f32, {100, 200}, dtype::i8, rng);
}

TEST_CASE("device decode: real weights (all-MiniLM-L6-v2, bf16), lossless, int8 and int4") {
  const std::string path = std::string(TILECODEC_DATA_DIR) + "/minilm/model.bf16.safetensors";
  if (!std::filesystem::exists(path)) {
    MESSAGE("skipped: " << path << " not found (scripts/make_bf16_copy.py makes it)");
    return;
  }
  safetensors::file model(path);
  std::vector<std::unique_ptr<gpu_tensor>> tensors;
  std::vector<gpu_tensor*> batch;
  std::vector<dtype> outs;
  std::uint64_t weights = 0;
  for (const safetensors::tensor_info& info : model.tensors()) {
    if (info.type != dtype::bf16 && info.type != dtype::f16 && info.type != dtype::f32) continue;
    const safetensors::byte_view bytes = model.data(info);
    const std::vector<std::uint8_t> values(reinterpret_cast<const std::uint8_t*>(bytes.data),
                                           reinterpret_cast<const std::uint8_t*>(bytes.data) + bytes.size);
    weights += info.element_count();
    for (int policy = 0; policy < 3; ++policy) {
      format_params p = lossless_codec::params();
      if (policy == 1) p = int8_codec::params();
      if (policy == 2) p = int4_codec::params();
      tensors.push_back(std::make_unique<gpu_tensor>(encode_values(values, info.type, info.shape, p)));
      batch.push_back(tensors.back().get());
      outs.push_back(policy == 0 ? info.type : (policy == 1 ? dtype::i8 : dtype::bf16));
    }
  }
  MESSAGE((tensors.size() / 3) << " tensors, " << weights << " weights, 3 policies, one call");
  check_batch(batch, outs);
}
