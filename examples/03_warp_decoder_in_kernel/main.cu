// Example 03: the warp tile decoder inside your own kernel. Each warp decodes int8 + rANS tiles
// straight into registers and reduces them (here: the sum of dequantized weights of each tile),
// without the decoded tile ever touching global memory. Copy tile_sums() into your engine.
#include <tilecodec/block/decode_table.cuh>
#include <tilecodec/device/cuda_check.cuh>
#include <tilecodec/host/synthetic.hpp>
#include <tilecodec/tilecodec.hpp>
#include <tilecodec/warp/warp_tile_decoder.cuh>

#include <cmath>
#include <cstdio>
#include <vector>

using Codec = tilecodec::int8_codec;  // 256x256 tiles, int8 per row, rANS with 32 lanes
using Decoder = tilecodec::warp_tile_decoder<Codec>;
constexpr int kWarps = 4;

__global__ void __launch_bounds__(kWarps * 32) tile_sums(tilecodec::device::tensor_ref w, float* sums) {
  __shared__ Decoder::table_type table;             // the tensor's decode table: once per block
  __shared__ Decoder::TempStorage temp[kWarps];     // per warp; may be unioned with your own storage
  if (tilecodec::load_decode_table(table, w, tilecodec::block_group<kWarps * 32>{}) != tilecodec::status::success &&
      w.coding == tilecodec::plane_coding::rans)
    return;
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  Decoder dec(temp[warp], table);
  for (std::uint64_t t = blockIdx.x * kWarps + warp; t < w.tile_count; t += gridDim.x * kWarps) {
    const tilecodec::tile_box box = w.layout.box(t);
    float sum = 0.0f;
    if (dec.begin(w, t) == tilecodec::status::success) {
      while (dec.remaining() > 0) {
        std::uint16_t sym[8];
        const std::uint32_t first = dec.next(sym);  // item k of this lane: symbol first + 32k + lane
        for (int k = 0; k < 8; ++k) {
          const std::uint32_t i = first + 32u * k + lane;
          if (i >= box.size()) break;
          const std::uint64_t row = box.row0 + i / box.width;  // row-major inside the tile
          const float scale = reinterpret_cast<const float*>(w.scales())[row];
          sum += tilecodec::dequantize(tilecodec::int8_code(sym[k]), scale);
        }
      }
    }
    const bool ok = dec.end() == tilecodec::status::success;  // checks the stream like the host does
    for (int d = 16; d > 0; d /= 2) sum += __shfl_down_sync(0xffffffffu, sum, d);
    if (lane == 0) sums[t] = ok ? sum : NAN;
  }
}

int main() try {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("example 03: no CUDA device; nothing to do\n");
    return 0;
  }
  const std::uint64_t rows = 1024, cols = 1000;  // 4 x 4 tiles, the right column narrower
  const std::vector<float> weights = tilecodec::host::synthetic_weights(rows, cols);
  const tilecodec::encoded_tensor enc = tilecodec::host::encode<Codec>(weights.data(), tilecodec::dtype::f32, {rows, cols});

  std::uint8_t* d_bytes = nullptr;
  float* d_sums = nullptr;
  const std::uint64_t tiles = enc.header().tile_count;
  TILECODEC_CUDA_CHECK(cudaMalloc(&d_bytes, enc.size()));
  TILECODEC_CUDA_CHECK(cudaMalloc(&d_sums, tiles * sizeof(float)));
  TILECODEC_CUDA_CHECK(cudaMemcpy(d_bytes, enc.bytes().data(), enc.size(), cudaMemcpyHostToDevice));
  tile_sums<<<2, kWarps * 32>>>(tilecodec::device::make_tensor_ref(enc.view(), d_bytes), d_sums);
  TILECODEC_CUDA_CHECK_LAUNCH();
  std::vector<float> sums(tiles);
  TILECODEC_CUDA_CHECK(cudaMemcpy(sums.data(), d_sums, tiles * sizeof(float), cudaMemcpyDeviceToHost));

  // The same sums from the host decoder's dequantized values.
  std::vector<float> values(rows * cols);
  if (tilecodec::host::decode(enc.view(), values.data(), tilecodec::dtype::f32, values.size() * 4) != tilecodec::status::success)
    return 1;
  double worst = 0.0;  // float sums in a different order: compare relative to the sum of |w|
  for (std::uint64_t t = 0; t < tiles; ++t) {
    const tilecodec::tile_box b = enc.view().layout().box(t);
    double ref = 0.0, mag = 0.0;
    for (std::uint32_t r = 0; r < b.height; ++r)
      for (std::uint32_t c = 0; c < b.width; ++c) {
        ref += values[(b.row0 + r) * cols + b.col0 + c];
        mag += std::fabs(values[(b.row0 + r) * cols + b.col0 + c]);
      }
    const double err = std::fabs(sums[t] - ref) / mag;
    worst = err > worst || std::isnan(err) ? err : worst;
  }
  const bool ok = worst < 1e-4;  // also false for NaN (a tile the decoder rejected)
  std::printf("example 03: %llu tile sums decoded in registers; worst |gpu - host| / sum|w| = %.2e (%s)\n",
              static_cast<unsigned long long>(tiles), worst, ok ? "ok" : "MISMATCH");
  cudaFree(d_bytes);
  cudaFree(d_sums);
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::printf("example 03: %s\n", e.what());
  return 1;
}
