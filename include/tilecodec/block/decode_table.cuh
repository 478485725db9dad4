// tilecodec/block/decode_table.cuh: a tensor's rANS decode table in shared memory, loaded once per
// block (or per warp) and shared by every tile decoder of that block.
//
//   __shared__ tilecodec::decode_table<> table;                   // 19 KB at 12 probability bits
//   status s = tilecodec::load_decode_table(table, tensor, tilecodec::block_group<256>{});
//   // a __syncthreads() ends it; every thread gets the same status
//
// Device entry layout (differs from the host's, same information): symbol | bias << B | freq << 20,
// B = symbol_bits(alphabet) (8, or 9 for a 512-symbol alphabet). The format caps frequencies at
// max_frequency(), so bias < 2^(20 - B) and freq < 2^12 always fit. A decoder updates a state as
// x = freq * ((x >> p) - 2^(20 - B)) + (e >> B)  (mod 2^32), which equals freq * (x >> p) + bias
// with one field extraction fewer on the dependent chain.
//
// Loading checks the stored table like the host does (first + count inside the alphabet and the
// table's bytes, each frequency at most max_frequency(), sum exactly 2^p) and reports
// corrupt_table otherwise. The slot fill is balanced: each thread writes 2^p / threads
// consecutive slots after one binary search over the used symbols.
#pragma once

#include <cstdint>

#include "../coder/frequency_table.hpp"
#include "../device/tensor_ref.hpp"
#include "../status.hpp"
#include "../warp/warp_intrinsics.cuh"

namespace tilecodec {

template <int MaxProbBits = 12, int MaxAlphabet = 512>
struct decode_table {
  static_assert(MaxProbBits >= 8 && MaxProbBits <= 12, "rANS probability precision must be 8..12 bits");
  static_assert(MaxAlphabet == 16 || MaxAlphabet == 256 || MaxAlphabet == 512, "alphabets have 16, 256 or 512 symbols");
  static constexpr std::uint32_t max_slots = 1u << MaxProbBits;
  static constexpr std::uint32_t max_alphabet = MaxAlphabet;

  alignas(16) std::uint32_t entry[max_slots];  // the table itself
  std::uint32_t used_span[MaxAlphabet];        // scratch: start | freq << 16 of the used symbols, in order
  std::uint16_t used_symbol[MaxAlphabet];      // scratch: their symbols
  std::uint32_t partial[32];                   // scratch: per-warp sums
  std::uint32_t prob_bits;                     // of the loaded table
  std::uint32_t sym_bits;                      // B of the loaded table
  std::uint32_t state;                         // status of the last load (a tilecodec::status value)
};

// Cooperating threads: a whole block (BlockThreads = blockDim.x, 1-D) ...
template <int BlockThreads>
struct block_group {
  static_assert(BlockThreads % 32 == 0 && BlockThreads >= 32 && BlockThreads <= 1024,
                "block_group needs whole warps (32..1024 threads)");
  static constexpr std::uint32_t size = BlockThreads;
  TILECODEC_DEV std::uint32_t rank() const { return threadIdx.x; }
  TILECODEC_DEV void sync() const { __syncthreads(); }
  TILECODEC_DEV bool any(bool p) const { return __syncthreads_or(p) != 0; }
};

// ... or one warp (for warp-only kernels; slower, 32 threads fill the whole table).
struct warp_group {
  static constexpr std::uint32_t size = 32;
  TILECODEC_DEV std::uint32_t rank() const { return detail::lane_id(); }
  TILECODEC_DEV void sync() const { __syncwarp(); }
  TILECODEC_DEV bool any(bool p) const { return __any_sync(detail::full_warp_mask, p) != 0; }
};

namespace detail {

// Little-endian u16 from a 2-byte aligned address.
TILECODEC_DEV std::uint32_t load_u16(const std::uint8_t* p) { return *reinterpret_cast<const std::uint16_t*>(p); }

}  // namespace detail

// Loads the table stored at `table_bytes` bytes from `stored` (device memory, 2-byte aligned:
// u16 first, u16 count, count u16 frequencies) for a plane of `alphabet` symbols coded at
// `prob_bits`, and builds the decode table. All threads of `group` must call it; it ends with
// group.sync().
template <int MaxProbBits, int MaxAlphabet, class Group>
TILECODEC_DEV status load_decode_table(decode_table<MaxProbBits, MaxAlphabet>& table, const std::uint8_t* stored,
                                       std::uint64_t table_bytes, std::uint32_t alphabet, std::uint32_t prob_bits,
                                       Group group) {
  using namespace detail;
  constexpr std::uint32_t threads = Group::size;
  const std::uint32_t rank = group.rank();
  const std::uint32_t warp = rank / 32;
  std::uint32_t first = 0, count = 0;
  bool shape_ok = prob_bits >= 8 && prob_bits <= std::uint32_t(MaxProbBits) &&
                  (alphabet == 16 || alphabet == 256 || alphabet == 512) && alphabet <= std::uint32_t(MaxAlphabet) &&
                  table_bytes >= 4;
  if (shape_ok) {
    first = load_u16(stored);
    count = load_u16(stored + 2);
    shape_ok = first + count <= alphabet && 4ull + 2ull * count <= table_bytes;
  }
  if (!shape_ok) count = 0;
  const std::uint32_t slots = 1u << (shape_ok ? prob_bits : 8u);
  const std::uint32_t max_f = max_frequency(alphabet, shape_ok ? prob_bits : 8u);
  const std::uint32_t sym_bits = symbol_bits(alphabet);
  const std::uint8_t* freq = stored + 4;

  // 1. Each thread sums a run of consecutive stored frequencies: the frequency in bits 0..21
  //    (at most 512 * 4095 < 2^21 once each is checked against max_f), the used-symbol count
  //    from bit 22 (at most 512 < 2^10).
  const std::uint32_t run = (count + threads - 1) / threads;
  const std::uint32_t k0 = rank * run;
  std::uint32_t sum = 0;
  bool bad = !shape_ok;
  for (std::uint32_t k = 0; k < run && k0 + k < count; ++k) {
    const std::uint32_t f = load_u16(freq + 2 * (k0 + k));
    if (f > max_f) bad = true;
    sum += (f & 0xfffu) | (f != 0 ? 1u << 22 : 0u);
  }
  const std::uint32_t incl = warp_inclusive_sum(sum);
  if ((rank & 31u) == 31u) table.partial[warp] = incl;
  group.sync();
  std::uint32_t before = 0, total = 0;
  for (std::uint32_t w = 0; w < threads / 32; ++w) {
    const std::uint32_t p = table.partial[w];
    before += w < warp ? p : 0u;
    total += p;
  }
  bad = group.any(bad) || (total & 0x3fffffu) != slots;
  if (bad) {
    if (rank == 0) table.state = static_cast<std::uint32_t>(status::corrupt_table);
    group.sync();
    return status::corrupt_table;
  }
  // 2. The used symbols in order, with their first slot.
  std::uint32_t excl = before + incl - sum;
  for (std::uint32_t k = 0; k < run && k0 + k < count; ++k) {
    const std::uint32_t f = load_u16(freq + 2 * (k0 + k));
    if (f == 0) continue;
    table.used_span[excl >> 22] = (excl & 0x3fffffu) | (f << 16);
    table.used_symbol[excl >> 22] = static_cast<std::uint16_t>(first + k0 + k);
    excl += f | (1u << 22);
  }
  group.sync();
  // 3. Slots: each thread fills a run after one binary search for its first slot's symbol.
  const std::uint32_t used = total >> 22;
  const std::uint32_t per = slots >= threads ? slots / threads : 1u;
  const std::uint32_t j0 = rank * per;
  if (j0 < slots) {
    std::uint32_t lo = 0, hi = used;
    while (hi - lo > 1) {
      const std::uint32_t mid = (lo + hi) / 2;
      if ((table.used_span[mid] & 0xffffu) <= j0) lo = mid; else hi = mid;
    }
    std::uint32_t span = table.used_span[lo], symbol = table.used_symbol[lo];
    std::uint32_t next = lo + 1 < used ? table.used_span[lo + 1] & 0xffffu : slots;
    for (std::uint32_t k = 0; k < per; ++k) {
      const std::uint32_t j = j0 + k;
      if (j >= next) {  // used symbols own at least one slot each: one step is enough
        ++lo;
        span = table.used_span[lo];
        symbol = table.used_symbol[lo];
        next = lo + 1 < used ? table.used_span[lo + 1] & 0xffffu : slots;
      }
      table.entry[j] = symbol | ((j - (span & 0xffffu)) << sym_bits) | ((span >> 16) << 20);
    }
  }
  if (rank == 0) {
    table.prob_bits = prob_bits;
    table.sym_bits = sym_bits;
    table.state = static_cast<std::uint32_t>(status::success);
  }
  group.sync();
  return status::success;
}

// Convenience: the table of a device tensor view (rANS-coded tensors only).
template <int MaxProbBits, int MaxAlphabet, class Group>
TILECODEC_DEV status load_decode_table(decode_table<MaxProbBits, MaxAlphabet>& table, const device::tensor_ref& tensor,
                                       Group group) {
  if (!has_rans_table(tensor.coding)) {
    if (group.rank() == 0) table.state = static_cast<std::uint32_t>(status::invalid_argument);
    group.sync();
    return status::invalid_argument;
  }
  return load_decode_table(table, tensor.table(), tensor.table_bytes, tensor.alphabet, tensor.prob_bits, group);
}

namespace detail {
// The table of coders that need none (coder::raw): a stand-in, so kernels can be written once.
struct no_table {
  std::uint32_t state;
};
}  // namespace detail

template <class Group>
TILECODEC_DEV status load_decode_table(detail::no_table& table, const device::tensor_ref&, Group group) {
  if (group.rank() == 0) table.state = static_cast<std::uint32_t>(status::success);
  group.sync();
  return status::success;
}

}  // namespace tilecodec
