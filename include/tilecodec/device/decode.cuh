// tilecodec/device/decode.cuh: device-wide decode of many encoded tensors, or of any set of tile
// ranges of them, in one stream-ordered call that allocates nothing (CUB style).
//
//   // host: one task per tensor (or tile range); tasks live in device memory
//   std::vector<tilecodec::device::decode_task> tasks = ...;   // make_decode_task(ref, out, dtype, bytes)
//   cudaMemcpyAsync(d_tasks, tasks.data(), tasks.size() * sizeof(tasks[0]), cudaMemcpyHostToDevice, stream);
//   std::size_t temp_bytes = 0;
//   tilecodec::device::decode_async(nullptr, temp_bytes, d_tasks, n, d_status, stream);   // size query
//   cudaMalloc(&d_temp, temp_bytes);
//   tilecodec::device::decode_async(d_temp, temp_bytes, d_tasks, n, d_status, stream);
//   // after the stream reaches this point, d_status[i] says how task i went (enum status)
//
// What happens: the call is planned: every task is checked (its status word: success or
// invalid_argument/unsupported/overflow), the call picks how many warps share a lane-stream tile,
// and counts work groups (consecutive tiles of one task: 8, or 8 / W for lane-stream tensors
// decoded by teams of W warps) and the fixed-coded and stored tensors' work units (one warp's share
// of one tile). A call of up to 256 tasks is planned by every block of the decode kernel into its
// own shared memory, while a one-block reset kernel ahead of it zeroes the status words and the
// work counters (the decode kernel is launched to overlap it: device/dependent_launch.cuh); a
// larger call is planned once, into the workspace, by a one-block setup kernel. The decode kernel
// is a persistent grid (one wave: SMs x resident blocks of 256 threads, 97.7 KB of dynamic shared
// memory each) whose blocks claim groups from the first counter. A block
// loads a tensor's frequency table into shared memory once and keeps it while it claims groups of
// the same tensor; each warp decodes one tile of its group (warp/warp_window_decode.cuh):
// shared-stream rANS (coding 1) through warp_rans_engine; lane-stream rANS (coding 3,
// coder::rans_lanes, the faster one) through warp_rans_lanes_engine, by a team of W = 1, 2 or 4
// warps per tile (the largest that keeps the call in one wave of the grid), each decoding and
// writing its own lanes' symbols. When the groups run out, every warp claims work units of the
// fixed-coded tensors (coding 2, coder::fixed, or 4, coder::fixed_marked) and of the stored ones
// from the second counter on its own, with no block barrier: a unit is windows p, p + W, p + 2W,
// ... of one tile (W warps per tile, 8 to 32 windows each, chosen per call: fixed_team). Fixed
// codes are staged, code words and the tile's escape section, through the warp's shared memory with
// cp.async several windows ahead (warp/warp_fixed_decode.cuh, fixed_tile_to_writer_staged;
// warp/warp_fixed_marked_decode.cuh, marked_windows_staged); stored symbols are read directly. A
// tile that turns out corrupt raises its task's status word to the error (atomicMax: the largest
// status code wins, deterministically); its output values are then unspecified, every other tile is
// still decoded, and no read or write leaves the tile's bytes or the task's output range.
//
// Output placement: tensor element (r, c) goes to out[(r - row_begin) * ld + c] (ld defaults to
// the tensor's column count), so a task covering whole tensors writes a dense row-major array,
// and a task covering a range of grid rows can write a buffer of just those rows.
#pragma once

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#endif

#include <cstddef>
#include <cstdint>

#include "../block/decode_table.cuh"
#include "../status.hpp"
#include "../warp/tile_writer.cuh"
#include "../warp/warp_intrinsics.cuh"
#include "../warp/warp_window_decode.cuh"
#include "dependent_launch.cuh"
#include "kernel_setup.cuh"
#include "tensor_ref.hpp"

// Resident blocks per SM the decode kernel is compiled for (tuning only, never changes the bits).
// 2 lets it keep its ~96 registers: at 4 (64 registers) ptxas spills, the spill reloads land on the
// dependent chain of every step, and tile256 decode runs 1.8x slower (H100, docs/PERFORMANCE.device.md).
#ifndef TILECODEC_DECODE_MIN_BLOCKS
#define TILECODEC_DECODE_MIN_BLOCKS 2
#endif

namespace tilecodec {
namespace device {

inline constexpr std::uint64_t all_tiles = ~std::uint64_t(0);

// One tensor, or one range of its tiles, to decode.
struct decode_task {
  tensor_ref tensor;
  void* out = nullptr;                 // device memory, aligned to the output dtype
  std::uint64_t out_bytes = 0;         // bound on what may be written from `out` on
  dtype out_type = dtype::f32;         // see can_decode_to()
  std::uint64_t ld = 0;                // elements between output rows; 0: the tensor's column count
  std::uint64_t row_begin = 0;         // tensor row held by out's first row
  std::uint64_t first_tile = 0;
  std::uint64_t tile_count = all_tiles;  // all_tiles: to the tensor's end
};

// The whole tensor into a dense row-major buffer of out_bytes.
[[nodiscard]] inline decode_task make_decode_task(const tensor_ref& t, void* out, dtype out_type, std::uint64_t out_bytes) {
  decode_task task;
  task.tensor = t;
  task.out = out;
  task.out_type = out_type;
  task.out_bytes = out_bytes;
  return task;
}

struct decode_options {
  // Blocks of the persistent grid; 0: one full wave (SMs x resident blocks). Fewer blocks can
  // lower the launch cost of small decodes.
  std::uint32_t max_blocks = 0;
  // Warps that share one lane-stream tile (coding 3; each tensor takes at most one per 32 lanes)
  // or fixed-coded or stored tile (coding 2 or 4, or 0): 1, 2 or 4; 0: automatic, the most that
  // keep the whole call in one wave of the grid (fixed-coded and stored tiles: 1 to 16 warps,
  // units of 8 to 32 windows of 512 symbols by the call's size: fixed_team).
  std::uint32_t team_warps = 0;
};

namespace detail {

inline constexpr int decode_block_threads = 256;
inline constexpr int decode_block_warps = decode_block_threads / 32;
inline constexpr int setup_threads = 1024;
// Per-SM block counters of the decode kernel (indexed by SM id modulo this).
inline constexpr std::uint32_t sm_slots = 256;

// Blocks that find another block of this launch already on their SM wait this long before their
// first claim (tuning only, never changes the bits; 0: off). Without it the first groups tend to
// go to blocks that share an SM while other SMs idle: a tensor with fewer tile groups than blocks
// (a 4096 x 14336 tensor in 256 x 256 tiles has 112 groups of 8, the grid 264 blocks) then runs
// on half the SMs.
#ifndef TILECODEC_DECODE_SPREAD_NS
#define TILECODEC_DECODE_SPREAD_NS 1500
#endif

// Per warp: the shared-stream ring (coding 1) or its chains' rings (coding 3), and the window; or
// the fixed-code staging (codings 2 and 4).
union decode_warp_storage {
  ::tilecodec::detail::warp_window_storage shared_stream;
  ::tilecodec::detail::warp_lanes_storage<128> lanes;
  ::tilecodec::detail::fixed_warp_storage fixed;  // fixed codes: ring of code-word windows, escape section
};
static_assert(sizeof(::tilecodec::detail::fixed_warp_storage) <= sizeof(::tilecodec::detail::warp_lanes_storage<128>),
              "the fixed-code staging fits in the lane-stream rings: the block's shared memory does not grow");

// 97.7 KB (the table + 8 warps x 9.2 KB + the plan), above the 48 KB a kernel may declare statically: the kernel takes
// it as dynamic shared memory, which decode_async opts in to.
// Calls of at most this many tasks are planned by every block of the decode kernel itself, into
// its shared memory (decode_plan_storage): the call then costs one launch after a reset kernel
// that reads nothing. Larger calls are planned once by decode_setup_kernel, into the workspace.
inline constexpr std::uint32_t planned_in_block = 256;

// A call's plan made in the block: the prefix sums of the tasks' work groups and units.
struct decode_plan_storage {
  std::uint64_t group_prefix[planned_in_block + 1];
  std::uint64_t unit_prefix[planned_in_block + 1];
};

struct decode_block_storage {
  decode_table<12, 512> table;
  decode_warp_storage warp[decode_block_warps];
  decode_plan_storage plan;
  const std::uint64_t* group_prefix;  // the plan in use: `plan`, or the workspace's
  const std::uint64_t* unit_prefix;
  std::uint32_t call_team;
  unsigned long long group;  // the claimed group, counted within its task
  std::uint32_t task;
};

// Whether the tensor's tiles are decoded in units claimed per warp (windows decode alone: fixed
// codes, and stored symbols) rather than in groups claimed per block. Stored tiles were decoded
// one warp per tile in groups: a large stored tensor (the int8 word embeddings of
// all-MiniLM-L6-v2, half the model, 240 tiles of 256 x 256) then kept 240 of the grid's 2112
// warps busy (PERFORMANCE.md 3.11).
TILECODEC_HD bool decoded_in_units(const tensor_ref& t) {
  return is_fixed_coding(t.coding) || t.coding == plane_coding::stored;
}

// Most warps that can share one tile of the tensor in a team of the call's choosing (1, 2 or 4):
// one per 32 lanes of a lane-stream tile (each then keeps at least one chain per thread), 4 for
// tiles decoded in units (windows decode alone), else 1.
TILECODEC_HD std::uint32_t max_team_warps(const tensor_ref& t) {
  if (decoded_in_units(t)) return 4u;
  return t.coding == plane_coding::rans_lanes && rans_lanes_supported(t.lanes) ? t.lanes / 32u : 1u;
}

// Fixed-coded and stored tiles are decoded in units: windows p, p + W, p + 2W, ... of one tile,
// claimed by single warps. When the call chooses W, it picks the windows per unit, 8 << j (j =
// 0..2, the same for every tensor of the call), and each tensor's W is its tile's windows over
// that, 1 to 16: the longest units that still give every warp of the grid
// TILECODEC_FIXED_UNITS_PER_WARP of them (tuning only, never changes the bits). Longer units pay
// the per-unit set-up (tile lookup, escape-section copy, ring fill) over more windows; more units
// spread a small call over the grid and shorten the wait for the last ones. H100
// (PERFORMANCE.md 3.7): a MiniLM layer 1.9x faster in 8-window units than in 32; a 4096 x 14336
// int8 matrix in 128 x 128 tiles 7% faster in 16-window units than in 8; a Llama-3-8B layer 4-8%
// slower in 64-window units than in 32 (3.2 units per warp: the last ones leave warps idle).
#ifndef TILECODEC_FIXED_UNITS_PER_WARP
#define TILECODEC_FIXED_UNITS_PER_WARP 3
#endif
inline constexpr std::uint32_t max_fixed_team = 16;
inline constexpr std::uint32_t fixed_unit_choices = 3;

// W for a tensor decoded in units of `unit_windows` windows.
TILECODEC_HD std::uint32_t fixed_team(const tensor_ref& t, std::uint32_t unit_windows) {
  const std::uint64_t windows = (std::uint64_t(t.layout.tile_rows) * t.layout.tile_cols + 511) / 512;
  const std::uint64_t team = (windows + unit_windows - 1) / unit_windows;
  return team < 1 ? 1u : team > max_fixed_team ? max_fixed_team : static_cast<std::uint32_t>(team);
}

// The setup kernel's `call_warps`: the team size the call allows (1, 2 or 4) in bits 0-2; set when
// the call chose it (team_automatic), then also the choice j of fixed-code unit windows (8 << j)
// from bit fixed_unit_shift on.
inline constexpr std::uint32_t team_automatic = 8;
inline constexpr std::uint32_t fixed_unit_shift = 4;

// Warps that decode one tile of the tensor together under the call's `call_warps`.
TILECODEC_HD std::uint32_t team_warps(const tensor_ref& t, std::uint32_t call_warps) {
  if (decoded_in_units(t) && (call_warps & team_automatic) != 0)
    return fixed_team(t, 8u << (call_warps >> fixed_unit_shift));
  const std::uint32_t m = max_team_warps(t);
  call_warps &= team_automatic - 1;
  return call_warps < m ? call_warps : m;
}

// Checks one task; on success sets the number of tiles it decodes.
__device__ inline status check_task(const decode_task& task, std::uint64_t& tiles) {
  tiles = 0;
  const tensor_ref& t = task.tensor;
  if (t.data == nullptr || (reinterpret_cast<std::uintptr_t>(t.data) & 15u) != 0) return status::invalid_argument;
  // The header fields come from a host parse; these checks only guard against a hand-made ref.
  const bool lossless16 = t.quant == quant::kind::lossless && t.source != dtype::f32;
  const std::uint32_t alphabet = t.quant == quant::kind::int4_group ? 16u : lossless16 ? 512u : 256u;
  // 16-bit lossless split in bytes (alphabet 256): coder 2's tensors, fixed-coded or stored.
  const bool byte_split = lossless16 && t.alphabet == 256 && (t.coding == plane_coding::fixed || t.coding == plane_coding::stored);
  if ((t.alphabet != alphabet && !byte_split) || !device_decodable(t)) return status::unsupported;
  if (t.coding == plane_coding::rans &&
      (t.prob_bits < 8 || t.prob_bits > 12 || t.lanes == 0 || t.lanes > 128 || (t.lanes & (t.lanes - 1)) != 0))
    return status::unsupported;
  if (t.coding == plane_coding::rans_lanes && (t.prob_bits < 8 || t.prob_bits > 12 || !rans_lanes_supported(t.lanes)))
    return status::unsupported;
  if (task.first_tile > t.tile_count) return status::invalid_argument;
  const std::uint64_t left = t.tile_count - task.first_tile;
  const std::uint64_t count = task.tile_count == all_tiles ? left : task.tile_count;
  if (count > left) return status::invalid_argument;
  if (count == 0) return status::success;
  if (!can_decode_to(t, task.out_type)) return status::unsupported;
  const std::uint64_t osize = dtype_size(task.out_type);
  const std::uint64_t ld = task.ld == 0 ? t.layout.cols : task.ld;
  if (task.out == nullptr || reinterpret_cast<std::uintptr_t>(task.out) % osize != 0 || ld < t.layout.cols)
    return status::invalid_argument;
  const tile_box first = t.layout.box(task.first_tile);
  const tile_box last = t.layout.box(task.first_tile + count - 1);
  if (first.row0 < task.row_begin) return status::invalid_argument;
  // Largest element index written: the last tile's last row ends furthest.
  std::uint64_t rows_before = 0, need = 0;
  if (!::tilecodec::detail::mul_u64(last.row0 + last.height - 1 - task.row_begin, ld, rows_before) ||
      !::tilecodec::detail::mul_u64(rows_before + last.col0 + last.width, osize, need))
    return status::overflow;
  if (need > task.out_bytes) return status::invalid_argument;
  tiles = count;
  return status::success;
}

// The workspace (decode_temp_bytes): the group counter, the fixed-unit counter, the call's team
// size, then per task the prefix sums of its work groups and of its units (task_count +
// 1 each), then (256-byte aligned) the per-SM block counters.
struct decode_temp {
  unsigned long long* group_counter;
  unsigned long long* unit_counter;
  std::uint32_t* call_warps;
  std::uint64_t* group_prefix;
  std::uint64_t* unit_prefix;
  std::uint32_t* sm_blocks;
};

inline std::size_t align_temp(std::size_t v) { return (v + 255) / 256 * 256; }

inline std::size_t decode_temp_head_bytes(std::uint32_t task_count) {
  return align_temp(32 + 16 * (std::size_t(task_count) + 1));
}

inline decode_temp decode_temp_at(void* d_temp, std::uint32_t task_count) {
  auto* base = static_cast<std::uint8_t*>(d_temp);
  decode_temp t;
  t.group_counter = reinterpret_cast<unsigned long long*>(base);
  t.unit_counter = reinterpret_cast<unsigned long long*>(base + 8);
  t.call_warps = reinterpret_cast<std::uint32_t*>(base + 16);
  t.group_prefix = reinterpret_cast<std::uint64_t*>(base + 32);
  t.unit_prefix = t.group_prefix + (std::size_t(task_count) + 1);
  t.sm_blocks = reinterpret_cast<std::uint32_t*>(base + decode_temp_head_bytes(task_count));
  return t;
}

// The sum of a block's per-warp slots (Warps <= 32), in every lane of the calling warp.
template <int Warps>
__device__ std::uint64_t sum_warp_slots(const std::uint64_t* slots, std::uint32_t lane) {
  static_assert(Warps <= 32, "one slot per lane");
  std::uint64_t v = lane < Warps ? slots[lane] : 0;
#pragma unroll
  for (std::uint32_t d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
  return v;
}

// The sum of the slots before slot `warp` and of all of them, in every lane of the calling warp.
template <int Warps>
__device__ void scan_warp_slots(const std::uint64_t* slots, std::uint32_t lane, std::uint32_t warp,
                                std::uint64_t& before, std::uint64_t& total) {
  static_assert(Warps <= 32, "one slot per lane");
  const std::uint64_t v = ::tilecodec::detail::warp_inclusive_sum(lane < Warps ? slots[lane] : std::uint64_t(0), lane);
  total = __shfl_sync(0xffffffffu, v, 31);
  const std::uint64_t through = __shfl_sync(0xffffffffu, v, warp == 0 ? 0 : warp - 1);
  before = warp == 0 ? 0 : through;
}

// The plan of a decode call, made by one block of Threads threads: checks every task (checks[i]:
// success or why not), picks the call's team size, and prefix-sums the tasks' work groups and
// fixed-code units into group_prefix / unit_prefix[0, count] (shared or global memory). Returns the
// call's `call_warps` (team_warps), the same in every thread. Team size (`team`: 1, 2 or 4; 0:
// choose): lane-stream tiles are shared by up to 4 warps (one per 32 lanes); the call takes the
// largest of 4, 2, 1 whose warps (tiles x team warps over the tasks decoded in groups) fit the
// decode grid's `grid_warps` at once, so small calls get more warps per tile and large ones keep
// each warp's per-tile set-up (head, prefix of the word counts, ring fill) spread over more
// symbols (H100, 4096 x 14336, 256 x 256 tiles of 128 lanes: teams of 2 7-17% faster than teams
// of 4, which need 1.7 waves, and 15-21% faster than one warp; PERFORMANCE.md 3.1). Fixed-coded
// and stored tiles are not in groups: each takes `team_warps` units, claimed by single warps.
// Reads only the tasks (and writes only the three arrays), so a kernel may plan before
// wait_for_previous_grid(). Inlined: as a call from the decode kernel it made calls 1-8% slower
// (H200, PERFORMANCE.md 3.12).
template <int Threads>
__device__ __forceinline__ std::uint32_t plan_tasks(const decode_task* tasks, std::uint32_t count, status* checks,
                                                    std::uint64_t* group_prefix, std::uint64_t* unit_prefix,
                                                    std::uint64_t grid_warps, std::uint32_t team) {
  __shared__ std::uint64_t warp_sums[2][Threads / 32];
  __shared__ std::uint64_t warp_demand[3 + fixed_unit_choices][Threads / 32];
  const std::uint32_t tid = threadIdx.x, lane = tid & 31u, warp = tid / 32;
  // Pass 1: check every task; its tile count waits in group_prefix[i + 1] (the same thread reads it
  // back). demand[k]: the warps the call's groups need with teams of 2^k warps; demand[3 + j]: the
  // units (fixed-coded and stored tiles) of 8 << j windows.
  constexpr std::uint32_t demands = 3 + fixed_unit_choices;
  std::uint64_t demand[demands] = {};
  const bool automatic = team == 0;
  for (std::uint32_t i = tid; i < count; i += Threads) {
    std::uint64_t tiles = 0;
    checks[i] = check_task(tasks[i], tiles);
    group_prefix[i + 1] = tiles;
    const tensor_ref& t = tasks[i].tensor;
    if (decoded_in_units(t)) {  // claimed per warp, after the groups
#pragma unroll
      for (std::uint32_t j = 0; j < fixed_unit_choices; ++j) demand[3 + j] += tiles * fixed_team(t, 8u << j);
      continue;
    }
    const std::uint32_t most = max_team_warps(t);
#pragma unroll
    for (std::uint32_t k = 0; k < 3; ++k) demand[k] += tiles * ((1u << k) < most ? (1u << k) : most);
  }
  if (automatic) {  // block sum: shuffles, one slot per warp (shared 64-bit atomics: 27 us, 103 tasks)
#pragma unroll
    for (std::uint32_t k = 0; k < demands; ++k) {
#pragma unroll
      for (std::uint32_t d = 16; d > 0; d >>= 1) demand[k] += __shfl_down_sync(0xffffffffu, demand[k], d);
      if (lane == 0) warp_demand[k][warp] = demand[k];
    }
  }
  __syncthreads();
  if (automatic) {
    // Every warp sums the slots at once (shuffles: a loop over the 32 slots is a chain of shared loads).
    std::uint64_t sum[demands];
#pragma unroll
    for (std::uint32_t k = 0; k < demands; ++k) sum[k] = sum_warp_slots<Threads / 32>(warp_demand[k], lane);
    team = sum[2] <= grid_warps ? 4 : sum[1] <= grid_warps ? 2 : 1;
    std::uint32_t j = fixed_unit_choices - 1;  // the longest units that still give each warp enough
    while (j > 0 && sum[3 + j] < TILECODEC_FIXED_UNITS_PER_WARP * grid_warps) --j;
    team |= team_automatic | (j << fixed_unit_shift);
  }
  // Pass 2: work groups (8 / team warps tiles each) of the other tasks, units (tiles x team warps)
  // of those decoded in units, and their prefix sums.
  std::uint64_t carry[2] = {0, 0};
  for (std::uint32_t base = 0; base < count; base += Threads) {
    const std::uint32_t i = base + tid;
    std::uint64_t v[2] = {0, 0};  // groups, units
    if (i < count) {
      const tensor_ref& t = tasks[i].tensor;
      const std::uint64_t tiles = group_prefix[i + 1];
      if (decoded_in_units(t)) {
        v[1] = tiles * team_warps(t, team);
      } else {
        const std::uint64_t per_group = decode_block_warps / team_warps(t, team);
        v[0] = (tiles + per_group - 1) / per_group;
      }
    }
#pragma unroll
    for (std::uint32_t k = 0; k < 2; ++k) {
      v[k] = ::tilecodec::detail::warp_inclusive_sum(v[k], lane);
      if (lane == 31) warp_sums[k][warp] = v[k];
    }
    __syncthreads();
#pragma unroll
    for (std::uint32_t k = 0; k < 2; ++k) {
      std::uint64_t before, total;
      scan_warp_slots<Threads / 32>(warp_sums[k], lane, warp, before, total);
      if (i < count) (k == 0 ? group_prefix : unit_prefix)[i + 1] = carry[k] + before + v[k];
      carry[k] += total;
    }
    __syncthreads();
  }
  if (tid == 0) {
    group_prefix[0] = 0;
    unit_prefix[0] = 0;
  }
  __syncthreads();
  return team;
}

// Copies the call's tasks (at most planned_in_block) into `staging` (shared memory) with the whole
// block, and returns the copy. Read field by field from global memory, each task was a chain of
// dependent loads (the checks branch on one field before they read the next); here every thread
// issues its loads at once and the block waits for them once.
template <int Threads>
__device__ const decode_task* stage_tasks(const decode_task* tasks, std::uint32_t count, void* staging) {
  static_assert(sizeof(decode_task) % 8 == 0 && alignof(decode_task) >= 8, "tasks copy in 8-byte words");
  const auto* src = reinterpret_cast<const unsigned long long*>(tasks);
  auto* dst = static_cast<unsigned long long*>(staging);
  const std::uint32_t words = count * static_cast<std::uint32_t>(sizeof(decode_task) / 8);
  for (std::uint32_t i = threadIdx.x; i < words; i += Threads) dst[i] = src[i];
  __syncthreads();
  return static_cast<const decode_task*>(staging);
}

// Sets the work counters and the per-SM block counters of the workspace to zero.
__device__ inline void reset_counters(const decode_temp& temp) {
  if (threadIdx.x == 0) {
    *temp.group_counter = 0;
    *temp.unit_counter = 0;
  }
  for (std::uint32_t i = threadIdx.x; i < sm_slots; i += blockDim.x) temp.sm_blocks[i] = 0;
}

// Calls of more than planned_in_block tasks: one block plans the call into the workspace (the
// tasks' status words, the prefix sums, the call's team size) and resets the counters.
// (Kernels are templates so that the header can be included by many translation units.)
template <int Threads = setup_threads>
__global__ void __launch_bounds__(Threads) decode_setup_kernel(const decode_task* tasks, std::uint32_t count,
                                                                      status* statuses, decode_temp temp,
                                                                      std::uint64_t grid_warps, std::uint32_t team) {
  ::tilecodec::detail::allow_next_grid();  // the decode kernel's blocks may launch and wait
  team = plan_tasks<Threads>(tasks, count, statuses, temp.group_prefix, temp.unit_prefix, grid_warps, team);
  if (threadIdx.x == 0) *temp.call_warps = team;
  reset_counters(temp);
}

// Calls of at most planned_in_block tasks: the decode kernel's blocks plan the call themselves
// while this one block sets the status words to success and resets the counters.
template <int Threads = decode_block_threads>
__global__ void __launch_bounds__(Threads) decode_reset_kernel(std::uint32_t count, status* statuses, decode_temp temp) {
  ::tilecodec::detail::allow_next_grid();
  for (std::uint32_t i = threadIdx.x; i < count; i += Threads) statuses[i] = status::success;
  reset_counters(temp);
}

__device__ inline void raise_status(status* s, status value) {
  atomicMax(reinterpret_cast<unsigned int*>(s), static_cast<unsigned int>(value));
}

// One warp decodes one tile of a task into the task's output (lane streams: its share of the tile,
// as warp `team_warp` of the tile's team of `team_size`). Not inlined, one function per stream
// layout: each decode loop then gets the registers for itself (inlined together into the kernel
// they needed more than 128 and spilled).
#ifndef TILECODEC_DECODE_NOINLINE
#define TILECODEC_DECODE_NOINLINE 1
#endif
#if TILECODEC_DECODE_NOINLINE
#define TILECODEC_DECODE_TILE_FN TILECODEC_DEV_NOINLINE
#else
#define TILECODEC_DECODE_TILE_FN __device__ __forceinline__
#endif
template <bool LaneStreams>
TILECODEC_DECODE_TILE_FN status decode_task_tile(const decode_task& task, std::uint64_t tile, const decode_table<12, 512>& table,
                                                decode_warp_storage& storage, std::uint32_t team_size,
                                                std::uint32_t team_warp) {
  const tensor_ref& tensor = task.tensor;
  tile_ref tr;
  const status s = tensor.tile(tile, tr);
  if (s != status::success) return s;
  const std::uint64_t ld = task.ld == 0 ? tensor.layout.cols : task.ld;
  std::uint8_t* out = static_cast<std::uint8_t*>(task.out) +
                      ((tr.box.row0 - task.row_begin) * ld + tr.box.col0) * dtype_size(task.out_type);
  ::tilecodec::detail::tile_writer writer;
  writer.set_tensor(tensor, task.out_type);
  if constexpr (LaneStreams) {
    writer.begin_tile_at(tr, out, ld, ::tilecodec::detail::lanes_window_first(tensor.lanes, team_size, team_warp),
                         team_size * ::tilecodec::detail::tile_writer::window);
    return ::tilecodec::detail::decode_lanes_team_tile(tensor, tr, table, storage.lanes, team_size, team_warp, writer);
  } else {
    writer.begin_tile(tr, out, ld);
    return ::tilecodec::detail::decode_tile_any(tensor, tr, table, storage.shared_stream, writer);
  }
}

// The same for a tile decoded in units (decoded_in_units: coding 2 or 4, or stored): windows
// team_warp, team_warp + team_size, ... Fixed codes are staged through this warp's shared ring
// (fixed_tile_to_writer_staged, marked_windows_staged; for 16-bit lossless values with escapes the
// raw plane too); tiles the ring cannot take, and the partial last window of a coding-4 tile with
// escapes, go through the window path (window_tile_decode, not inlined: rare). Stored symbols are
// read straight from the tile.
TILECODEC_DECODE_TILE_FN status decode_fixed_task_tile(const decode_task& task, std::uint64_t tile,
                                                      ::tilecodec::detail::fixed_warp_storage& storage,
                                                      std::uint32_t team_size, std::uint32_t team_warp) {
  namespace td = ::tilecodec::detail;
  const tensor_ref& tensor = task.tensor;
  tile_ref tr;
  const status s = tensor.tile(tile, tr);
  if (s != status::success) return s;
  const std::uint64_t ld = task.ld == 0 ? tensor.layout.cols : task.ld;
  std::uint8_t* out = static_cast<std::uint8_t*>(task.out) +
                      ((tr.box.row0 - task.row_begin) * ld + tr.box.col0) * dtype_size(task.out_type);
  td::tile_writer writer;
  writer.set_tensor(tensor, task.out_type);
  writer.begin_tile(tr, out, ld, team_warp, team_size);
  if (tensor.coding == plane_coding::stored)
    return td::stored_tile_to_writer(tr, tensor.alphabet, writer, team_warp, team_size);
  const fixed_code code = tensor.fixed();
  if (tensor.coding == plane_coding::fixed) {
    if (!td::fixed_staged_fits(code, tr))
      return td::window_tile_decode<plane_coding::fixed>(tensor, tile, out, task.out_type, ld, team_warp, team_size);
    return td::fixed_tile_to_writer_staged(tensor, code, tr, writer, storage, team_warp, team_size);
  }
  if (!td::marked_staged_fits(code, tr, writer))
    return td::window_tile_decode<plane_coding::fixed_marked>(tensor, tile, out, task.out_type, ld, team_warp, team_size);
  constexpr std::uint32_t window = td::tile_writer::window;
  const bool escapes = fixed_marked_escapes(code);
  const std::uint32_t n = tr.size(), last = (n - 1) / window;
  status r = status::success;
  if (!escapes || (team_warp + 1) * window <= n)  // with escapes: this warp has a whole window
    r = td::fixed_marked_tile_to_writer_staged(code, tensor, tr, writer, storage, team_warp, team_size);
  if (escapes && n % window != 0 && last % team_size == team_warp) {
    const status t = td::window_tile_decode<plane_coding::fixed_marked>(tensor, tile, out, task.out_type, ld, last, 1);
    if (r == status::success) r = t;
  }
  return r;
}

// Units (fixed-coded and stored tiles), once the groups have run out: each warp claims units on
// its own (no block barrier) and decodes them one after another. A function of its own, not
// inlined, so that the group loop of the kernel keeps its registers.
TILECODEC_DECODE_TILE_FN void decode_fixed_units(const decode_task* tasks, std::uint32_t count, status* statuses,
                                                 const std::uint64_t* unit_prefix, unsigned long long* unit_counter,
                                                 std::uint32_t call_team, ::tilecodec::detail::fixed_warp_storage& storage) {
  const std::uint64_t units = unit_prefix[count];
  std::uint32_t unit_task = 0;  // this warp's cursor into unit_prefix (its claims only grow)
  while (units > 0) {
    unsigned long long u = 0;
    if (::tilecodec::detail::lane_id() == 0) u = atomicAdd(unit_counter, 1ull);
    u = __shfl_sync(::tilecodec::detail::full_warp_mask, u, 0);
    if (u >= units) break;
    while (unit_prefix[unit_task + 1] <= u) ++unit_task;
    const decode_task& task = tasks[unit_task];
    const std::uint32_t w = team_warps(task.tensor, call_team);
    const std::uint64_t local = u - unit_prefix[unit_task];
    const std::uint64_t tile = local >> 32 == 0 ? std::uint32_t(local) / w : local / w;  // 32-bit division when it fits
    const std::uint32_t team_warp = static_cast<std::uint32_t>(local - tile * w);
    const status s = decode_fixed_task_tile(task, task.first_tile + tile, storage, w, team_warp);
    if (s != status::success && ::tilecodec::detail::lane_id() == 0) raise_status(statuses + unit_task, s);
  }
}

template <int Threads = decode_block_threads>
__global__ void __launch_bounds__(Threads, TILECODEC_DECODE_MIN_BLOCKS)
    decode_kernel(const decode_task* tasks, std::uint32_t count, status* statuses, decode_temp temp, std::uint32_t team) {
  static_assert(Threads == decode_block_threads, "the decode kernel's tile groups assume 256 threads");
  extern __shared__ __align__(128) std::uint8_t smem_bytes[];
  decode_block_storage& smem = *reinterpret_cast<decode_block_storage*>(smem_bytes);
  const std::uint32_t warp = threadIdx.x / 32;
  // The plan: small calls make it here, in every block, while the reset kernel before this one
  // still runs (it reads only the tasks); larger ones read it from the workspace. Where it lives
  // is kept in shared memory and read at each claim, not held in registers across the loops.
  if (count <= planned_in_block) {
    // The warps' storage is free until the plan is made: the tasks, then their checks.
    static_assert(sizeof(decode_task) * planned_in_block + sizeof(status) * planned_in_block <= sizeof(smem.warp),
                  "the tasks and their checks fit the warps' storage");
    const decode_task* staged = stage_tasks<Threads>(tasks, count, smem.warp);
    status* checks = reinterpret_cast<status*>(reinterpret_cast<std::uint8_t*>(smem.warp) + sizeof(decode_task) * planned_in_block);
    const std::uint32_t call_team = plan_tasks<Threads>(staged, count, checks, smem.plan.group_prefix, smem.plan.unit_prefix,
                                                        std::uint64_t(gridDim.x) * decode_block_warps, team);
    ::tilecodec::detail::wait_for_previous_grid();
    if (blockIdx.x == 0)
      for (std::uint32_t i = threadIdx.x; i < count; i += Threads)
        if (checks[i] != status::success) raise_status(statuses + i, checks[i]);
    if (threadIdx.x == 0) {
      smem.group_prefix = smem.plan.group_prefix;
      smem.unit_prefix = smem.plan.unit_prefix;
      smem.call_team = call_team;
    }
  } else {
    ::tilecodec::detail::wait_for_previous_grid();
    if (threadIdx.x == 0) {
      smem.group_prefix = temp.group_prefix;
      smem.unit_prefix = temp.unit_prefix;
      smem.call_team = *temp.call_warps;
    }
  }
  if (TILECODEC_DECODE_SPREAD_NS > 0 && threadIdx.x == 0) {
    std::uint32_t sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    if (atomicAdd(temp.sm_blocks + sm % sm_slots, 1u) > 0) __nanosleep(TILECODEC_DECODE_SPREAD_NS);
  }
  __syncthreads();  // the plan's place, and the warps' storage free for decoding
  const std::uint32_t call_team = smem.call_team;
  // Groups: claimed by the block, one tile per warp (or per team of warps).
  constexpr std::uint32_t no_task = ~0u;
  std::uint32_t task_index = 0;  // thread 0's cursor into the group prefix
  const std::uint8_t* loaded = nullptr;  // table in shared memory: this tensor's
  status table_status = status::success;
  for (;;) {
    if (threadIdx.x == 0) {
      const std::uint64_t* group_prefix = smem.group_prefix;
      const unsigned long long g = atomicAdd(temp.group_counter, 1ull);
      if (g < group_prefix[count]) {
        while (group_prefix[task_index + 1] <= g) ++task_index;
        smem.group = g - group_prefix[task_index];
        smem.task = task_index;
      } else {
        smem.task = no_task;
      }
    }
    __syncthreads();
    const std::uint32_t ti = smem.task;
    if (ti == no_task) break;
    const std::uint64_t group = smem.group;  // within the task
    const decode_task& task = tasks[ti];
    const tensor_ref& tensor = task.tensor;
    const bool coded = has_rans_table(tensor.coding);
    if (coded && tensor.table() != loaded) {
      loaded = tensor.table();
      table_status = load_decode_table(smem.table, tensor, block_group<decode_block_threads>{});
    }
    if (coded && table_status != status::success) {
      if (threadIdx.x == 0) raise_status(statuses + ti, table_status);
    } else {
      const bool lanes = tensor.coding == plane_coding::rans_lanes;
      const std::uint32_t w = team_warps(tensor, call_team);
      const std::uint64_t tile = task.first_tile + group * (decode_block_warps / w) + warp / w;
      const std::uint64_t count_in_task =
          task.tile_count == all_tiles ? tensor.tile_count - task.first_tile : task.tile_count;
      if (tile < task.first_tile + count_in_task) {
        const status s = lanes ? decode_task_tile<true>(task, tile, smem.table, smem.warp[warp], w, warp % w)
                               : decode_task_tile<false>(task, tile, smem.table, smem.warp[warp], 1, 0);
        if (s != status::success && ::tilecodec::detail::lane_id() == 0) raise_status(statuses + ti, s);
      }
    }
    __syncthreads();
  }
  decode_fixed_units(tasks, count, statuses, smem.unit_prefix, temp.unit_counter, call_team, smem.warp[warp].fixed);
}

#if defined(__CUDACC__)
// The decode grid on `device` for `kernel` (the calling unit's decode_kernel<>): SMs x resident
// blocks, after opting the kernel in to its dynamic shared memory. Asked of the driver once per
// (kernel, device) and remembered (device/kernel_setup.cuh): those calls cost microseconds, which a
// small decode (one layer) would otherwise pay on every call. 0 on a CUDA error.
inline std::uint32_t decode_grid_blocks(int device, const void* kernel) {
  return ::tilecodec::detail::once_per_kernel(kernel, device, [&]() -> std::uint32_t {
    int sms = 0, per_sm = 0;
    constexpr int smem = static_cast<int>(sizeof(decode_block_storage));
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, decode_block_threads, smem) != cudaSuccess)
      return 0;
    return static_cast<std::uint32_t>(sms) * static_cast<std::uint32_t>(per_sm > 0 ? per_sm : 1);
  });
}
#endif  // __CUDACC__

}  // namespace detail

// Bytes of device workspace decode_async needs for task_count tasks.
[[nodiscard]] inline std::size_t decode_temp_bytes(std::uint32_t task_count) {
  return detail::decode_temp_head_bytes(task_count) + 4 * detail::sm_slots;
}

#if defined(__CUDACC__)

// Decodes the tasks d_tasks[0, task_count) (device memory) on `stream`. With d_temp == nullptr it
// only sets temp_bytes. Otherwise d_temp must hold temp_bytes >= decode_temp_bytes(task_count)
// bytes (device memory, 16-byte aligned) and d_status task_count status words (device memory),
// written by the device as the work runs. The returned status covers the call itself (arguments,
// launches); per-task results are in d_status once the stream reaches them. Never synchronizes.
[[nodiscard]] inline status decode_async(void* d_temp, std::size_t& temp_bytes, const decode_task* d_tasks,
                                         std::uint32_t task_count, status* d_status, cudaStream_t stream,
                                         const decode_options& options = {}) {
  const std::size_t need = decode_temp_bytes(task_count);
  if (d_temp == nullptr) {
    temp_bytes = need;
    return status::success;
  }
  if (temp_bytes < need || (reinterpret_cast<std::uintptr_t>(d_temp) & 15u) != 0) return status::invalid_argument;
  if (options.team_warps != 0 && options.team_warps != 1 && options.team_warps != 2 && options.team_warps != 4)
    return status::invalid_argument;
  if (task_count == 0) return status::success;
  if (d_tasks == nullptr || d_status == nullptr) return status::invalid_argument;
  const detail::decode_temp temp = detail::decode_temp_at(d_temp, task_count);

  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return status::cuda_error;
  // This unit's copy of the kernel: the one launched below is the one opted in.
  std::uint32_t blocks = detail::decode_grid_blocks(device, reinterpret_cast<const void*>(&detail::decode_kernel<>));
  if (blocks == 0) return status::cuda_error;
  if (options.max_blocks != 0 && options.max_blocks < blocks) blocks = options.max_blocks;
  constexpr int smem = static_cast<int>(sizeof(detail::decode_block_storage));

  // Small calls: a reset kernel that reads nothing, then the decode kernel, whose blocks plan the
  // call while the reset runs. Larger ones: the setup kernel plans it once. Either way the decode
  // kernel may launch before the kernel ahead of it has finished (device/dependent_launch.cuh).
  if (task_count <= detail::planned_in_block)
    detail::decode_reset_kernel<><<<1, detail::decode_block_threads, 0, stream>>>(task_count, d_status, temp);
  else
    detail::decode_setup_kernel<><<<1, detail::setup_threads, 0, stream>>>(
        d_tasks, task_count, d_status, temp, std::uint64_t(blocks) * detail::decode_block_warps, options.team_warps);
  if (cudaPeekAtLastError() != cudaSuccess) return status::cuda_error;
  if (::tilecodec::detail::launch_after_previous(detail::decode_kernel<>, dim3(blocks), dim3(detail::decode_block_threads), smem,
                                                 stream, d_tasks, task_count, d_status, temp, options.team_warps) != cudaSuccess)
    return status::cuda_error;
  return status::success;
}
#endif  // __CUDACC__

}  // namespace device
}  // namespace tilecodec
