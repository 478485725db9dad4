// tilecodec/fused/linear.cuh: a drop-in linear layer (y = x W^T, no bias) whose weight stays
// compressed in GPU memory: it owns the encoded bytes and a split-K workspace, both allocated at
// construction; forward_async allocates nothing and only enqueues work on the given stream.
//
//   tilecodec::format_params p = tilecodec::fused::int8_codec::params();
//   p.prob_bits = 8;  // int8 codes of 8 bits: no escapes, faster at every batch; 0 for the smallest size
//   auto enc = tilecodec::host::encode(w.data(), dtype::bf16, {out, in}, p);
//   tilecodec::fused::linear layer(enc);                       // uploads (synchronous, at load time)
//   layer.forward_async(d_x, dtype::bf16, batch, d_y, dtype::bf16, stream);   // x [batch][in], y [batch][out]
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "../format/encoded_tensor.hpp"
#include "../status.hpp"
#include "gemm.cuh"
#include "matrix_ref.cuh"

namespace tilecodec {
namespace fused {

class linear {
 public:
  linear() = default;

  // Copies the encoded weight (out_features x in_features) to the current device. Throws
  // tilecodec::error when the tensor is not one the fused kernels serve, or CUDA fails.
  explicit linear(const encoded_tensor& weights, std::uint32_t max_batch = 16) : linear(weights.view(), max_batch) {}
  // The same from a view of bytes held elsewhere, e.g. a container's blob
  // (container::open_encoded; files written with the int8-fused or int4-fused preset).
  explicit linear(const encoded_tensor_view& weights, std::uint32_t max_batch = 16) {
    try {
      upload(weights, max_batch);
    } catch (...) {
      release();  // nothing allocated stays behind a failed construction
      throw;
    }
  }
  ~linear() { release(); }
  linear(const linear&) = delete;
  linear& operator=(const linear&) = delete;
  linear(linear&& o) noexcept { *this = std::move(o); }
  linear& operator=(linear&& o) noexcept {
    if (this != &o) {
      release();
      std::swap(bytes_, o.bytes_);
      std::swap(workspace_, o.workspace_);
      std::swap(workspace_bytes_, o.workspace_bytes_);
      std::swap(device_bytes_, o.device_bytes_);
      std::swap(ref_, o.ref_);
    }
    return *this;
  }

  // y (batch x out, rows ldy apart; 0: out) = x (batch x in, rows ldx apart; 0: in) W^T.
  // One stream per layer at a time (the workspace is the layer's).
  [[nodiscard]] status forward_async(const void* x, dtype x_type, std::uint32_t batch, void* y, dtype y_type,
                                     cudaStream_t stream, std::uint32_t* status_word = nullptr, std::uint64_t ldx = 0,
                                     std::uint64_t ldy = 0, const gemm_launch& launch = {}) const {
    return gemm_async(ref_, x, x_type, ldx ? ldx : in_features(), batch, y, y_type, ldy ? ldy : out_features(),
                      workspace_, workspace_bytes_, status_word, stream, launch);
  }

  [[nodiscard]] const matrix_ref& ref() const { return ref_; }
  [[nodiscard]] std::uint64_t in_features() const { return ref_.cols(); }
  [[nodiscard]] std::uint64_t out_features() const { return ref_.rows(); }
  // GPU memory held: the compressed weight plus the workspace.
  [[nodiscard]] std::size_t device_bytes() const { return device_bytes_ + workspace_bytes_; }

 private:
  void upload(const encoded_tensor_view& weights, std::uint32_t max_batch) {
    const std::uint64_t size = weights.size();
    check(cudaMalloc(&bytes_, size), "cudaMalloc (weights)");
    check(cudaMemcpy(bytes_, weights.data(), size, cudaMemcpyHostToDevice), "cudaMemcpy (weights)");
    std::string why;
    const status s = make_matrix_ref(weights, bytes_, ref_, &why);
    if (s != status::success) throw error(s, "fused::linear: " + why);
    device_bytes_ = size;
    workspace_bytes_ = gemm_workspace_bytes(ref_, max_batch);
    if (workspace_bytes_ != 0) {
      check(cudaMalloc(&workspace_, workspace_bytes_), "cudaMalloc (workspace)");
      check(cudaMemset(workspace_, 0, workspace_bytes_), "cudaMemset (workspace)");  // counters start at zero
    }
  }
  static void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw error(status::cuda_error, std::string("fused::linear: ") + what + ": " + cudaGetErrorString(e));
  }
  void release() {
    if (bytes_) cudaFree(bytes_);
    if (workspace_) cudaFree(workspace_);
    bytes_ = workspace_ = nullptr;
    workspace_bytes_ = device_bytes_ = 0;
  }

  void* bytes_ = nullptr;
  void* workspace_ = nullptr;
  std::size_t workspace_bytes_ = 0;
  std::size_t device_bytes_ = 0;
  matrix_ref ref_{};
};

}  // namespace fused
}  // namespace tilecodec
