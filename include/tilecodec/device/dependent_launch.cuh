// tilecodec/device/dependent_launch.cuh: programmatic dependent launch (sm_90), both sides.
//
// A kernel launched with launch_after_previous() may start while the kernel before it in the
// stream still runs: its blocks can do work that reads nothing that kernel writes (a decode
// call's task checks and work plan, a fused product's tile index and first code words) and then
// call wait_for_previous_grid() before anything that does. The kernel before it lets it start by
// calling allow_next_grid() (or by ending). Both device calls are no-ops in a kernel launched the
// ordinary way, and below sm_90.
//
// Why it is safe to read the stream's older data early: the earlier kernel itself started only
// after everything before it in the stream had finished, and the dependent kernel cannot start
// before the earlier one has started and allowed it.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace tilecodec {
namespace detail {

// Returns once the previous kernel in the stream has finished and its writes are visible to this
// thread; every thread that reads what that kernel writes, or writes what it reads, passes it first.
__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Lets the next kernel of the stream, if it was launched with launch_after_previous(), start.
__device__ __forceinline__ void allow_next_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...), allowed to start before the previous kernel in
// the stream has finished (the kernel must call wait_for_previous_grid() as described above).
template <class... Params, class... Args>
cudaError_t launch_after_previous(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream,
                                  Args&&... args) {
  cudaLaunchAttribute overlap[1];
  overlap[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = overlap;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, static_cast<Args&&>(args)...);
}

}  // namespace detail
}  // namespace tilecodec
