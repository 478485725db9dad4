// tilecodec/config.hpp: macros shared by every header.
//
// TILECODEC_HD marks functions that run on both host and device. Under plain g++ it is
// just `inline`, so the host half of the library compiles without CUDA.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define TILECODEC_HD __host__ __device__ __forceinline__
#define TILECODEC_DEVICE __device__ __forceinline__
#define TILECODEC_HAS_CUDA 1
#else
#define TILECODEC_HD inline
#define TILECODEC_HAS_CUDA 0
#endif

#if defined(_MSC_VER)
#define TILECODEC_RESTRICT __restrict
#else
#define TILECODEC_RESTRICT __restrict__
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TILECODEC_LIKELY(x) __builtin_expect(!!(x), 1)
#define TILECODEC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define TILECODEC_LIKELY(x) (x)
#define TILECODEC_UNLIKELY(x) (x)
#endif

namespace tilecodec {
namespace detail {
// For static_assert in primary templates that must be specialised.
template <class...>
inline constexpr bool dependent_false = false;
}  // namespace detail
}  // namespace tilecodec
