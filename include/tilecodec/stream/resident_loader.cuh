// tilecodec/stream/resident_loader.cuh: mode 1 on the streaming machinery: decode a whole model
// into VRAM once, at load time, through a bounded staging area.
//
//   tilecodec::stream::resident_model m = tilecodec::stream::load_resident(tensors, dtype::f16, stream);
//   // m.tensor(i): device pointer to tensor i, decoded (row-major); lives as long as m
//
// Tensors are staged in batches whose compressed bytes fit staging_bytes (a tensor larger than
// that gets a batch of its own): copy the batch's bytes to the device, decode them straight
// into their final buffers, next batch. Peak extra VRAM: the staging buffer plus the decode
// workspace; the decoded model itself is one allocation.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../device/cuda_check.cuh"
#include "../device/decode.cuh"
#include "../device/tensor_ref.hpp"
#include "../format/encoded_tensor.hpp"
#include "../status.hpp"

namespace tilecodec {
namespace stream {

class resident_model {
 public:
  resident_model() = default;
  resident_model(const resident_model&) = delete;
  resident_model& operator=(const resident_model&) = delete;
  resident_model(resident_model&& o) noexcept { *this = std::move(o); }
  resident_model& operator=(resident_model&& o) noexcept {
    std::swap(memory_, o.memory_);
    std::swap(offsets_, o.offsets_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~resident_model() { cudaFree(memory_); }

  [[nodiscard]] void* tensor(std::size_t i) const { return static_cast<std::uint8_t*>(memory_) + offsets_.at(i); }
  [[nodiscard]] std::size_t size() const { return offsets_.size(); }
  [[nodiscard]] std::uint64_t bytes() const { return bytes_; }

 private:
  friend resident_model load_resident(const std::vector<const encoded_tensor*>&, dtype, cudaStream_t, std::uint64_t);
  void* memory_ = nullptr;
  std::vector<std::uint64_t> offsets_;
  std::uint64_t bytes_ = 0;
};

// Decodes every tensor into one device allocation (lossless tensors to their source dtype,
// quantized ones to out_type). Throws tilecodec::error naming the tensor index on a decode error.
inline resident_model load_resident(const std::vector<const encoded_tensor*>& tensors, dtype out_type,
                                    cudaStream_t stream, std::uint64_t staging_bytes = std::uint64_t(256) << 20) {
  resident_model model;
  std::vector<dtype> types;
  for (const encoded_tensor* t : tensors) {
    const dtype out = t->header().params.quant == quant::kind::lossless ? t->header().source : out_type;
    types.push_back(out);
    model.offsets_.push_back(model.bytes_);
    model.bytes_ = (model.bytes_ + t->view().elements() * dtype_size(out) + 255) / 256 * 256;
  }
  TILECODEC_CUDA_CHECK(cudaMalloc(&model.memory_, model.bytes_ == 0 ? 1 : model.bytes_));

  std::uint64_t largest = 0;
  for (const encoded_tensor* t : tensors) largest = std::max<std::uint64_t>(largest, t->size());
  const std::uint64_t staging_size = std::max(staging_bytes, (largest + 15) / 16 * 16);
  std::uint8_t* staging = nullptr;
  device::decode_task* d_tasks = nullptr;
  status* d_status = nullptr;
  void* temp = nullptr;
  const std::size_t n = tensors.size();
  const std::size_t temp_bytes = device::decode_temp_bytes(static_cast<std::uint32_t>(n == 0 ? 1 : n));
  auto cleanup = [&] {
    cudaStreamSynchronize(stream);
    cudaFree(staging), cudaFree(d_tasks), cudaFree(d_status), cudaFree(temp);
  };
  try {
    TILECODEC_CUDA_CHECK(cudaMalloc(&staging, staging_size));
    TILECODEC_CUDA_CHECK(cudaMalloc(&d_tasks, sizeof(device::decode_task) * (n == 0 ? 1 : n)));
    TILECODEC_CUDA_CHECK(cudaMalloc(&d_status, sizeof(status) * (n == 0 ? 1 : n)));
    TILECODEC_CUDA_CHECK(cudaMalloc(&temp, temp_bytes));
    std::vector<device::decode_task> tasks;
    std::vector<status> statuses(n);
    for (std::size_t first = 0; first < n;) {
      // One batch: as many tensors as fit the staging buffer (at least one).
      std::uint64_t used = 0;
      std::size_t last = first;
      tasks.clear();
      while (last < n && (last == first || used + (tensors[last]->size() + 15) / 16 * 16 <= staging_size)) {
        const encoded_tensor& t = *tensors[last];
        TILECODEC_CUDA_CHECK(cudaMemcpyAsync(staging + used, t.bytes().data(), t.size(), cudaMemcpyHostToDevice, stream));
        tasks.push_back(device::make_decode_task(device::make_tensor_ref(t.view(), staging + used), model.tensor(last),
                                                 types[last], t.view().elements() * dtype_size(types[last])));
        used += (t.size() + 15) / 16 * 16;
        ++last;
      }
      TILECODEC_CUDA_CHECK(cudaMemcpyAsync(d_tasks, tasks.data(), tasks.size() * sizeof(tasks[0]), cudaMemcpyHostToDevice, stream));
      std::size_t tb = temp_bytes;
      const status s = device::decode_async(temp, tb, d_tasks, static_cast<std::uint32_t>(tasks.size()), d_status, stream);
      if (s != status::success) throw error(s, "load_resident: decode launch for tensors " + std::to_string(first) + "..");
      TILECODEC_CUDA_CHECK(cudaMemcpyAsync(statuses.data() + first, d_status, tasks.size() * sizeof(status),
                                           cudaMemcpyDeviceToHost, stream));
      // The staging buffer and task array are reused by the next batch: wait for this one.
      TILECODEC_CUDA_CHECK(cudaStreamSynchronize(stream));
      for (std::size_t i = first; i < last; ++i)
        if (statuses[i] != status::success) throw error(statuses[i], "load_resident: tensor " + std::to_string(i));
      first = last;
    }
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
  return model;
}

}  // namespace stream
}  // namespace tilecodec
