// bench/device/rans_step.cu: the bare rANS decode step on this GPU, outside any tile loop: the
// ceiling that the tile decoders (refills, windows, writers, tile set-up) are measured against.
//
//   bench_rans_step            (no arguments; prints one line per configuration)
//
// Every thread runs C independent chains for `steps` steps with the library's own step
// (detail::rans_decode_step: shared-memory table lookup, state update) and renormalisation (a
// predicated PRMT), over a 4096-slot table of an int8-like distribution (a discretised normal,
// sigma 20, over 256 symbols: ~6.3 bits per symbol, like int8 weights). What varies:
//   word    renormalisation words come from a register (no memory access besides the table)
//   ring    from a per-lane 128-byte ring in shared memory, lanes' rings 128 bytes apart (the
//           layout of warp_rans_lanes_engine; lanes start at random offsets, as real streams do)
//   ring-il the same ring words interleaved 4 bytes per lane (every lane's word in its own bank)
//   ring+st ring, plus each symbol stored to a per-warp window (the STS.U8 of the tile loops)
// Chains per thread C = 1, 2; warps per SM 8, 16, 32 (blocks of 8 warps). Symbols per second
// are states x steps / median time of 5 launches (CUDA events); no data leaves the SM but one
// word per thread, so memory bandwidth plays no part.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tilecodec/device/cuda_check.cuh>
#include <tilecodec/warp/warp_intrinsics.cuh>
#include <tilecodec/warp/warp_rans_engine.cuh>

namespace {

using namespace tilecodec;
using detail::saddr;

enum class words { reg, ring, ring_interleaved, ring_store };
constexpr int block_warps = 8;
constexpr int ring_bytes = 128;
constexpr std::uint32_t table_slots = 4096;

template <int C>
constexpr std::size_t smem_bytes() {
  return 4 * table_slots + std::size_t(block_warps) * 32 * C * ring_bytes + std::size_t(block_warps) * 512 * C;
}

template <int C, words W>
__global__ void __launch_bounds__(block_warps * 32) step_kernel(const std::uint32_t* table, std::uint32_t* out, int steps) {
  extern __shared__ __align__(128) std::uint8_t smem[];
  std::uint32_t* tab = reinterpret_cast<std::uint32_t*>(smem);
  std::uint8_t* rings = smem + 4 * table_slots;
  std::uint8_t* windows = rings + block_warps * 32 * C * ring_bytes;
  for (std::uint32_t i = threadIdx.x; i < table_slots; i += blockDim.x) tab[i] = table[i];
  for (std::uint32_t i = threadIdx.x; i < block_warps * 32 * C * ring_bytes / 4; i += blockDim.x)
    reinterpret_cast<std::uint32_t*>(rings)[i] = i * 2654435761u;
  __syncthreads();
  const std::uint32_t t = threadIdx.x % 32, warp = threadIdx.x / 32;
  const saddr tab_s = detail::to_saddr(tab);
  const saddr lane_ring = detail::to_saddr(rings) + threadIdx.x * C * ring_bytes;         // C rings of this lane
  const saddr warp_rings = detail::to_saddr(rings) + warp * 32 * C * ring_bytes;          // interleaved layout
  std::uint8_t* window = windows + warp * 512 * C;
  std::uint32_t x[C], rp[C], w[C];
#pragma unroll
  for (int k = 0; k < C; ++k) {
    const std::uint32_t h = (threadIdx.x + 977u * blockIdx.x) * 2654435761u + 40503u * k;
    x[k] = rans_state_lower + (h >> 4) % (0xffffffffu - rans_state_lower);
    rp[k] = (h >> 20) & (ring_bytes - 2);
    w[k] = h & 0xffffu;
  }
  std::uint32_t sum = 0;
  for (int s = 0; s < steps; ++s) {
#pragma unroll
    for (int k = 0; k < C; ++k) {
      const std::uint32_t e = detail::rans_decode_step<12, 8>(x[k], tab_s, table_slots - 1, 12, 8);
      if constexpr (W == words::ring_store) window[(s & 15) * 32 * C + 32 * k + t] = static_cast<std::uint8_t>(e);
      sum += e;
      if (x[k] < rans_state_lower) {
        x[k] = detail::byte_perm(w[k], x[k], 0x5410u);
        rp[k] += 2;
        if constexpr (W == words::reg) {
          w[k] = (x[k] >> 3) & 0xffffu;
        } else if constexpr (W == words::ring_interleaved) {
          w[k] = detail::lds_u16(warp_rings + k * 32 * ring_bytes + ((rp[k] & (ring_bytes - 4)) << 5) + 4 * t + (rp[k] & 2));
        } else {
          w[k] = detail::lds_u16(lane_ring + k * ring_bytes + (rp[k] & (ring_bytes - 1)));
        }
      }
    }
  }
#pragma unroll
  for (int k = 0; k < C; ++k) sum ^= x[k];
  if constexpr (W == words::ring_store) sum ^= window[t];
  out[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}

const char* name_of(words w) {
  switch (w) {
    case words::reg: return "word";
    case words::ring: return "ring";
    case words::ring_interleaved: return "ring-il";
    default: return "ring+st";
  }
}

template <int C, words W>
void run(const std::uint32_t* table, std::uint32_t* out, int sms, int blocks_per_sm, double clock_hz) {
  auto kernel = step_kernel<C, W>;
  constexpr int threads = block_warps * 32;
  constexpr int smem = static_cast<int>(smem_bytes<C>());
  TILECODEC_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  int fit = 0;
  TILECODEC_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, kernel, threads, smem));
  if (fit < blocks_per_sm) return;
  const int blocks = sms * blocks_per_sm;
  constexpr int steps = 4096;
  kernel<<<blocks, threads, smem>>>(table, out, 64);  // warm-up
  TILECODEC_CUDA_CHECK_LAUNCH();
  cudaEvent_t a, b;
  TILECODEC_CUDA_CHECK(cudaEventCreate(&a));
  TILECODEC_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int r = 0; r < 5; ++r) {
    TILECODEC_CUDA_CHECK(cudaEventRecord(a));
    kernel<<<blocks, threads, smem>>>(table, out, steps);
    TILECODEC_CUDA_CHECK_LAUNCH();
    TILECODEC_CUDA_CHECK(cudaEventRecord(b));
    TILECODEC_CUDA_CHECK(cudaEventSynchronize(b));
    float m = 0;
    TILECODEC_CUDA_CHECK(cudaEventElapsedTime(&m, a, b));
    ms.push_back(m);
  }
  TILECODEC_CUDA_CHECK(cudaEventDestroy(a));
  TILECODEC_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  const double symbols = double(blocks) * threads * C * steps;
  const double per_s = symbols / (ms[2] * 1e-3);
  std::printf("%-8s C=%d  warps/SM %2d  %7.1f G symbols/s  %5.2f symbols per SM cycle\n", name_of(W), C,
              blocks_per_sm * block_warps, per_s / 1e9, per_s / sms / clock_hz);
}

template <words W>
void run_all(const std::uint32_t* table, std::uint32_t* out, int sms, double clock_hz) {
  for (int bps : {1, 2, 4}) {
    run<1, W>(table, out, sms, bps, clock_hz);
    run<2, W>(table, out, sms, bps, clock_hz);
  }
}

}  // namespace

int main() {
  try {
    cudaDeviceProp prop{};
    TILECODEC_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    int clock_khz = 0;
    TILECODEC_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
    // Frequencies of a discretised normal over 256 symbols, summing to 4096 (every symbol >= 1).
    std::vector<double> p(256);
    double total = 0;
    for (int i = 0; i < 256; ++i) total += p[i] = std::exp(-0.5 * std::pow((i - 128) / 20.0, 2));
    std::vector<std::uint32_t> freq(256);
    std::uint32_t used = 0;
    for (int i = 0; i < 256; ++i) used += freq[i] = std::max(1u, static_cast<std::uint32_t>(p[i] / total * 4000));
    freq[128] += table_slots - used;
    // Device entry layout of block/decode_table.cuh: symbol | bias << 8 | freq << 20.
    std::vector<std::uint32_t> table;
    for (std::uint32_t s = 0; s < 256; ++s)
      for (std::uint32_t b = 0; b < freq[s]; ++b) table.push_back(s | (b << 8) | (freq[s] << 20));
    std::uint32_t *d_table = nullptr, *d_out = nullptr;
    TILECODEC_CUDA_CHECK(cudaMalloc(&d_table, 4 * table_slots));
    TILECODEC_CUDA_CHECK(cudaMalloc(&d_out, std::size_t(4) * 32 * block_warps * 4 * prop.multiProcessorCount));
    TILECODEC_CUDA_CHECK(cudaMemcpy(d_table, table.data(), 4 * table_slots, cudaMemcpyHostToDevice));
    std::printf("%s, %d SMs, SM clock %d MHz (symbols per SM cycle use this clock)\n", prop.name,
                prop.multiProcessorCount, clock_khz / 1000);
    const double hz = clock_khz * 1e3;
    run_all<words::reg>(d_table, d_out, prop.multiProcessorCount, hz);
    run_all<words::ring>(d_table, d_out, prop.multiProcessorCount, hz);
    run_all<words::ring_interleaved>(d_table, d_out, prop.multiProcessorCount, hz);
    run_all<words::ring_store>(d_table, d_out, prop.multiProcessorCount, hz);
    TILECODEC_CUDA_CHECK(cudaFree(d_table));
    TILECODEC_CUDA_CHECK(cudaFree(d_out));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_rans_step: %s\n", e.what());
    return 1;
  }
  return 0;
}
