// tilecodec/device/kernel_setup.cuh: once-per-kernel host set-up of launches (dynamic shared
// memory opt-in, occupancy), remembered per (kernel, device).
//
// Keyed by the kernel's host address, never kept in a static of the calling function: a program
// built from several translation units without relocatable device code has one copy of a kernel
// template per unit, each its own function to the driver, and an opt-in made for one copy does not
// cover the others. (With a function-local "done" flag, the second unit's decode_async launched an
// un-opted copy and failed with cudaErrorInvalidValue: the decode and streaming tests in one
// binary, 2026-11-27.)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <vector>

namespace tilecodec {
namespace detail {

// Runs compute() (returning 0 on failure) the first time for (kernel, device) and returns its
// value then and after; failures are not remembered.
template <class Compute>
std::uint32_t once_per_kernel(const void* kernel, int device, Compute&& compute) {
  struct entry {
    const void* kernel;
    int device;
    std::uint32_t value;
  };
  static std::mutex lock;  // one per Compute type: every call site keeps its own table
  static std::vector<entry> known;
  {
    const std::lock_guard<std::mutex> hold(lock);
    for (const entry& e : known)
      if (e.kernel == kernel && e.device == device) return e.value;
  }
  const std::uint32_t value = compute();
  if (value != 0) {
    const std::lock_guard<std::mutex> hold(lock);
    known.push_back(entry{kernel, device, value});
  }
  return value;
}

// Opts `kernel` in to `bytes` of dynamic shared memory on the current device, once.
inline cudaError_t opt_in_dynamic_smem(const void* kernel, int bytes) {
  int device = 0;
  const cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return e;
  const std::uint32_t ok = once_per_kernel(kernel, device, [&] {
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) == cudaSuccess ? 1u : 0u;
  });
  return ok ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace detail
}  // namespace tilecodec
