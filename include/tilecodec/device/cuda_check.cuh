// tilecodec/device/cuda_check.cuh: checking CUDA calls in tests, benchmarks and examples.
//
//   TILECODEC_CUDA_CHECK(cudaMalloc(&p, bytes));   // throws tilecodec::error(status::cuda_error, ...)
//   kernel<<<g, b, 0, s>>>(...);
//   TILECODEC_CUDA_CHECK_LAUNCH();                  // cudaGetLastError() after a launch
//
// Library calls (device::decode_async) never throw: they return status::cuda_error instead.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "../status.hpp"

namespace tilecodec {
namespace device {
namespace detail {
[[noreturn]] inline void throw_cuda(cudaError_t e, const char* what, const char* file, int line) {
  throw error(status::cuda_error, std::string(what) + " failed at " + file + ":" + std::to_string(line) + ": " +
                                      cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}
}  // namespace detail
}  // namespace device
}  // namespace tilecodec

#define TILECODEC_CUDA_CHECK(call)                                                        \
  do {                                                                                    \
    const cudaError_t tilecodec_cuda_err_ = (call);                                       \
    if (tilecodec_cuda_err_ != cudaSuccess)                                               \
      ::tilecodec::device::detail::throw_cuda(tilecodec_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define TILECODEC_CUDA_CHECK_LAUNCH() TILECODEC_CUDA_CHECK(cudaGetLastError())
