// tilecodec/warp/warp_intrinsics.cuh: the few warp and memory primitives the device decoders use,
// in one place. On the device they are CUDA intrinsics and inline PTX (cp.async, lane masks); in
// a host compilation pass they fall back to portable code, which host-side reference models and
// tests call for the TILECODEC_HD ones (byte_perm, funnel; there is no CPU warp emulator for the
// lane-dependent ones). Users never need to name these.
#pragma once

#include <cstdint>
#include <cstring>

#include "../config.hpp"

#if defined(__CUDACC__)
#define TILECODEC_DEV __device__ __forceinline__
// Called, never inlined (`inline` for the linkage only: the headers' functions are in several
// translation units of one program). The front end builds such a function once per translation
// unit, but ptxas compiles it again for every kernel that calls it, so it saves compile time only
// where kernels would otherwise inline it many times (docs/design.md, "Compile time").
#define TILECODEC_DEV_NOINLINE inline __device__ __noinline__
#else
#define TILECODEC_DEV inline
#define TILECODEC_DEV_NOINLINE inline
#endif

namespace tilecodec {
namespace detail {

inline constexpr std::uint32_t full_warp_mask = 0xffffffffu;
inline constexpr std::uint32_t warp_threads = 32;

TILECODEC_DEV std::uint32_t lane_id() {
#if defined(__CUDA_ARCH__)
  std::uint32_t l;
  asm("mov.u32 %0, %%laneid;" : "=r"(l));
  return l;
#else
  return threadIdx.x & 31u;
#endif
}

// Bits of the lanes below this one.
TILECODEC_DEV std::uint32_t lanemask_lt() {
#if defined(__CUDA_ARCH__)
  std::uint32_t m;
  asm("mov.u32 %0, %%lanemask_lt;" : "=r"(m));
  return m;
#else
  return (1u << lane_id()) - 1u;
#endif
}

TILECODEC_DEV std::uint32_t popc(std::uint32_t v) {
#if defined(__CUDA_ARCH__)
  return static_cast<std::uint32_t>(__popc(v));
#else
  return static_cast<std::uint32_t>(__builtin_popcount(v));
#endif
}

// (hi16(b) << 16 | lo16(a)) style byte permutes: result byte k is byte sel_k of {b:a}.
// Host and device (TILECODEC_HD), like funnel(): the fused fragment code runs them in host tests.
TILECODEC_HD std::uint32_t byte_perm(std::uint32_t a, std::uint32_t b, std::uint32_t sel) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(a, b, sel);
#else
  const std::uint64_t v = (std::uint64_t(b) << 32) | a;
  std::uint32_t r = 0;
  for (int k = 0; k < 4; ++k) r |= std::uint32_t((v >> (8 * ((sel >> (4 * k)) & 7u))) & 0xffu) << (8 * k);
  return r;
#endif
}

// byte_perm whose selector nibbles may also set bit 3: that result byte is then the selected
// byte's top bit copied 8 times (PRMT's sign replication; __byte_perm keeps 3 bits a nibble).
// The byte-split lossless joins use it to put a raw byte's sign in bit 15 of its half.
TILECODEC_HD std::uint32_t byte_perm_msb(std::uint32_t a, std::uint32_t b, std::uint32_t sel) {
#if defined(__CUDA_ARCH__)
  std::uint32_t d;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
  return d;
#else
  const std::uint64_t v = (std::uint64_t(b) << 32) | a;
  std::uint32_t r = 0;
  for (int k = 0; k < 4; ++k) {
    const std::uint32_t nib = (sel >> (4 * k)) & 0xfu;
    std::uint32_t byte = std::uint32_t(v >> (8 * (nib & 7u))) & 0xffu;
    if (nib & 8u) byte = (byte & 0x80u) ? 0xffu : 0u;
    r |= byte << (8 * k);
  }
  return r;
#endif
}

// (hi:lo >> shift) for shift in 0..31: the 32 bits starting `shift` bits into the pair.
TILECODEC_HD std::uint32_t funnel(std::uint32_t lo, std::uint32_t hi, std::uint32_t shift) {
#if defined(__CUDA_ARCH__)
  return __funnelshift_r(lo, hi, shift);
#else
  return static_cast<std::uint32_t>(((std::uint64_t(hi) << 32) | lo) >> (shift & 31u));
#endif
}

#if defined(__CUDACC__)
// Sum of v over this lane (`lane`, the caller's lane id) and the lanes below it (all 32 lanes call
// it); T is a 32- or 64-bit unsigned integer.
template <class T>
TILECODEC_DEV T warp_inclusive_sum(T v, std::uint32_t lane) {
#pragma unroll
  for (std::uint32_t d = 1; d < 32; d <<= 1) {
    const T o = __shfl_up_sync(full_warp_mask, v, d);
    if (lane >= d) v += o;
  }
  return v;
}
TILECODEC_DEV std::uint32_t warp_inclusive_sum(std::uint32_t v) { return warp_inclusive_sum(v, lane_id()); }
#endif

// ---- shared-memory addresses ---------------------------------------------------------------------
// On the device a 32-bit shared-window address (so address arithmetic stays 32-bit and folds into
// the load); in the host pass a plain pointer value.
#if defined(__CUDA_ARCH__)
using saddr = std::uint32_t;
TILECODEC_DEV saddr to_saddr(const void* p) { return static_cast<saddr>(__cvta_generic_to_shared(p)); }
TILECODEC_DEV std::uint32_t lds_u8(saddr a) {
  std::uint32_t v;
  asm volatile("ld.shared.u8 %0, [%1];" : "=r"(v) : "r"(a));
  return v;
}
TILECODEC_DEV std::uint32_t lds_u16(saddr a) {
  std::uint32_t v;
  asm volatile("ld.shared.u16 %0, [%1];" : "=r"(v) : "r"(a));
  return v;
}
TILECODEC_DEV std::uint32_t lds_u32(saddr a) {
  std::uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(a));
  return v;
}
// A 16-bit load at a + Offset, the offset folded into the instruction.
template <int Offset>
TILECODEC_DEV std::uint32_t lds_u16_at(saddr a) {
  std::uint32_t v;
  asm volatile("ld.shared.u16 %0, [%1+%2];" : "=r"(v) : "r"(a), "n"(Offset));
  return v;
}
#else
using saddr = std::uintptr_t;
TILECODEC_DEV saddr to_saddr(const void* p) { return reinterpret_cast<saddr>(p); }
TILECODEC_DEV std::uint32_t lds_u8(saddr a) { return *reinterpret_cast<const std::uint8_t*>(a); }
TILECODEC_DEV std::uint32_t lds_u16(saddr a) { return *reinterpret_cast<const std::uint16_t*>(a); }
TILECODEC_DEV std::uint32_t lds_u32(saddr a) { return *reinterpret_cast<const std::uint32_t*>(a); }
template <int Offset>
TILECODEC_DEV std::uint32_t lds_u16_at(saddr a) { return *reinterpret_cast<const std::uint16_t*>(a + Offset); }
#endif

// ---- asynchronous global -> shared copies (cp.async, 16 bytes, L1 bypassed) ----------------------

TILECODEC_DEV void cp_async16(void* smem_dst, const void* gmem_src) {
#if defined(__CUDA_ARCH__)
  const std::uint32_t s = static_cast<std::uint32_t>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem_src) : "memory");
#else
  std::memcpy(smem_dst, gmem_src, 16);
#endif
}

// The same with a shared-window destination address (saddr below).
TILECODEC_DEV void cp_async16_to(std::uintptr_t smem_addr, const void* gmem_src) {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(static_cast<std::uint32_t>(smem_addr)), "l"(gmem_src)
               : "memory");
#else
  std::memcpy(reinterpret_cast<void*>(smem_addr), gmem_src, 16);
#endif
}

TILECODEC_DEV void cp_async_commit() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits until at most N of this thread's most recent groups are still in flight.
template <int N>
TILECODEC_DEV void cp_async_wait() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

// ---- global loads that bypass L1 allocation (streamed once) --------------------------------------

struct alignas(16) u32x4 {
  std::uint32_t x, y, z, w;
};

TILECODEC_DEV u32x4 ldg_stream16(const void* p) {
#if defined(__CUDA_ARCH__)
  u32x4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
#else
  u32x4 v;
  std::memcpy(&v, p, 16);
  return v;
#endif
}

TILECODEC_DEV void stg16(void* p, const u32x4& v) {
#if defined(__CUDA_ARCH__)
  asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
               : "memory");
#else
  std::memcpy(p, &v, 16);
#endif
}

// Sets byte k (0..15, run-time) of a zero-initialised 16-byte vector to b (< 256).
TILECODEC_DEV void or_byte(u32x4& v, std::uint32_t k, std::uint32_t b) {
  const std::uint32_t bits = b << (8u * (k & 3u));
  if (k < 4) v.x |= bits;
  else if (k < 8) v.y |= bits;
  else if (k < 12) v.z |= bits;
  else v.w |= bits;
}

// Brings the 128-byte line holding p into L1 (and L2) without a destination register, so a later
// plain load hits L1 however long the wait between them.
TILECODEC_DEV void prefetch_l1(const void* p) {
#if defined(__CUDA_ARCH__)
  asm volatile("prefetch.global.L1 [%0];" ::"l"(p));
#else
  (void)p;
#endif
}
TILECODEC_DEV void prefetch_l2(const void* p) {
#if defined(__CUDA_ARCH__)
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#else
  (void)p;
#endif
}

// Generic 16-byte store (shared or global destination).
TILECODEC_DEV void st16(void* p, const u32x4& v) { *static_cast<u32x4*>(p) = v; }

// Per-byte a - b without carries between bytes.
TILECODEC_DEV std::uint32_t vsub4(std::uint32_t a, std::uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __vsub4(a, b);
#else
  std::uint32_t r = 0;
  for (int k = 0; k < 4; ++k) r |= (((a >> (8 * k)) - (b >> (8 * k))) & 0xffu) << (8 * k);
  return r;
#endif
}

// 64-bit a * b, or false when it overflows.
TILECODEC_DEV bool mul_u64(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
#if defined(__CUDA_ARCH__)
  if (__umul64hi(a, b) != 0) return false;
#else
  if (a != 0 && b > ~std::uint64_t(0) / a) return false;
#endif
  out = a * b;
  return true;
}

}  // namespace detail
}  // namespace tilecodec
