// tilecodec/stream/weight_streamer.cuh: mode 2, run a model whose weights do not fit in VRAM.
//
// The compressed tensors of every layer sit in one pinned host arena. A ring of device slots,
// each large enough for the largest layer's compressed bytes, receives layers on a copy stream;
// the compute stream waits for a layer's bytes (an event, never a device-wide sync), decodes
// them into one decode buffer, and the engine's own kernels run on them. release() records
// that the slot's bytes are no longer needed, so the copy stream may refill it.
//
//   tilecodec::stream::weight_streamer ws(layers, dtype::f16, opts, compute_stream);
//   for (int l = 0; l < n_layers; ++l) {
//     const auto& w = ws.acquire(l);        // enqueues: wait for bytes, decode; prefetches l+1..
//     my_layer_forward(w, compute_stream);  // device pointers, valid until release(l)
//     ws.release(l);
//   }
//
// Peak VRAM = (prefetch_depth + 1) slots + one decode buffer + decode workspace and task
// arrays; the constructor checks it against the budget before allocating anything.
// Layers are expected in cyclic order (0, 1, ..., L-1, 0, ...); any other order still works,
// with the copy of an unexpected layer issued at acquire() (no overlap for that layer).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "../device/cuda_check.cuh"
#include "../device/decode.cuh"
#include "../device/tensor_ref.hpp"
#include "../format/encoded_tensor.hpp"
#include "../status.hpp"

namespace tilecodec {
namespace stream {

struct streamer_options {
  std::uint64_t vram_budget = 0;  // bytes for everything the streamer allocates on the device; 0: no limit
  int prefetch_depth = 1;         // layers copied ahead of the one being computed
  bool pinned = true;             // false: pageable arena (for tests of the fallback)
  std::function<void(int layer)> before_layer;  // called at the start of acquire()
  std::function<void(int layer)> after_layer;   // called at the end of release()
};

// Per-layer figures from CUDA events, in milliseconds (read after the streams synchronised).
struct layer_stats {
  std::uint64_t bytes_copied = 0;
  float copy_ms = 0;    // host-to-device copy of the layer's compressed bytes
  float decode_ms = 0;  // decode kernel on the compute stream
  float stall_ms = 0;   // compute stream idle, waiting for this layer's bytes to arrive
};

class weight_streamer {
 public:
  // layers[l] holds layer l's encoded tensors; every tensor decodes to out_type (lossless
  // tensors to their source dtype, so out_type must match it for them).
  weight_streamer(const std::vector<std::vector<const encoded_tensor*>>& layers, dtype out_type,
                  const streamer_options& options, cudaStream_t compute)
      : options_(options), compute_(compute), out_type_(out_type) {
    if (layers.empty()) throw error(status::invalid_argument, "weight_streamer: no layers");
    if (options_.prefetch_depth < 0) throw error(status::invalid_argument, "weight_streamer: negative prefetch depth");
    slots_ = options_.prefetch_depth + 1;

    // Layout of the arena (one region per layer, tensors 16-byte aligned inside it) and of the
    // decode buffer (one region per tensor of the largest layer, 256-byte aligned).
    for (std::size_t l = 0; l < layers.size(); ++l) {
      layer_info info;
      info.arena_offset = arena_bytes_;
      std::uint64_t in_layer = 0, decoded = 0;
      for (const encoded_tensor* t : layers[l]) {
        if (t == nullptr) throw error(status::invalid_argument, "weight_streamer: null tensor in layer " + std::to_string(l));
        const dtype out = t->header().params.quant == quant::kind::lossless ? t->header().source : out_type;
        if (t->header().params.quant == quant::kind::lossless && out_type != t->header().source)
          throw error(status::unsupported, "weight_streamer: lossless tensor in layer " + std::to_string(l) +
                                               " decodes to " + dtype_name(t->header().source) + ", not " + dtype_name(out_type));
        info.tensor_offsets.push_back(in_layer);
        info.decoded_offsets.push_back(decoded);
        info.out_types.push_back(out);
        in_layer = align(in_layer + t->size(), 16);
        decoded = align(decoded + t->view().elements() * dtype_size(out), 256);
      }
      info.bytes = in_layer;
      info.decoded_bytes = decoded;
      arena_bytes_ += in_layer;
      slot_bytes_ = std::max(slot_bytes_, in_layer);
      decode_bytes_ = std::max(decode_bytes_, decoded);
      max_tensors_ = std::max<std::size_t>(max_tensors_, layers[l].size());
      layers_.push_back(std::move(info));
    }
    temp_bytes_ = device::decode_temp_bytes(static_cast<std::uint32_t>(max_tensors_));
    const std::uint64_t tasks_bytes = layers_.size() * slots_ * max_tensors_ * sizeof(device::decode_task);
    const std::uint64_t status_bytes = layers_.size() * max_tensors_ * sizeof(status);
    peak_vram_ = slot_bytes_ * slots_ + decode_bytes_ + temp_bytes_ + tasks_bytes + status_bytes;
    if (options_.vram_budget != 0 && peak_vram_ > options_.vram_budget)
      throw error(status::out_of_memory,
                  "weight_streamer: needs " + std::to_string(peak_vram_) + " bytes of VRAM (" + std::to_string(slots_) +
                      " slots of " + std::to_string(slot_bytes_) + ", decode buffer " + std::to_string(decode_bytes_) +
                      "), budget is " + std::to_string(options_.vram_budget));

    try {
      allocate(layers, tasks_bytes, status_bytes);
    } catch (...) {
      release_all();
      throw;
    }
  }

  weight_streamer(const weight_streamer&) = delete;
  weight_streamer& operator=(const weight_streamer&) = delete;
  ~weight_streamer() { release_all(); }

 private:
  void allocate(const std::vector<std::vector<const encoded_tensor*>>& layers, std::uint64_t tasks_bytes,
                std::uint64_t status_bytes) {
    // Host arena: pinned when the driver allows, else pageable with a warning.
    if (options_.pinned && cudaHostAlloc(&arena_, arena_bytes_, cudaHostAllocDefault) == cudaSuccess) {
      pinned_ = true;
    } else {
      (void)cudaGetLastError();  // clear a refused pinned allocation
      if (options_.pinned)
        std::fprintf(stderr, "tilecodec: pinned host memory refused for %llu bytes; using pageable memory (slower copies)\n",
                   static_cast<unsigned long long>(arena_bytes_));
      pageable_.resize(arena_bytes_);
      arena_ = pageable_.data();
    }
    for (std::size_t l = 0; l < layers.size(); ++l)
      for (std::size_t i = 0; i < layers[l].size(); ++i)
        std::memcpy(static_cast<std::uint8_t*>(arena_) + layers_[l].arena_offset + layers_[l].tensor_offsets[i],
                    layers[l][i]->bytes().data(), layers[l][i]->size());

    TILECODEC_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
    TILECODEC_CUDA_CHECK(cudaMalloc(&slot_memory_, slot_bytes_ * slots_));
    TILECODEC_CUDA_CHECK(cudaMalloc(&decode_buffer_, decode_bytes_));
    TILECODEC_CUDA_CHECK(cudaMalloc(&temp_, temp_bytes_));
    TILECODEC_CUDA_CHECK(cudaMalloc(&tasks_, tasks_bytes));
    TILECODEC_CUDA_CHECK(cudaMalloc(&statuses_, status_bytes));
    TILECODEC_CUDA_CHECK(cudaMemset(statuses_, 0, status_bytes));

    // Decode tasks for every (layer, slot): the refs point into the slot the layer lands in.
    std::vector<device::decode_task> tasks(layers_.size() * slots_ * max_tensors_);
    for (std::size_t l = 0; l < layers.size(); ++l)
      for (int s = 0; s < slots_; ++s)
        for (std::size_t i = 0; i < layers[l].size(); ++i) {
          const std::uint8_t* bytes = slot(s) + layers_[l].tensor_offsets[i];
          const encoded_tensor& t = *layers[l][i];
          const dtype out = layers_[l].out_types[i];
          tasks[(l * slots_ + s) * max_tensors_ + i] = device::make_decode_task(
              device::make_tensor_ref(t.view(), bytes), decode_buffer_ + layers_[l].decoded_offsets[i], out,
              t.view().elements() * dtype_size(out));
        }
    TILECODEC_CUDA_CHECK(cudaMemcpy(tasks_, tasks.data(), tasks_bytes, cudaMemcpyHostToDevice));
    host_tasks_ = std::move(tasks);

    slot_free_.assign(slots_, nullptr);
    copy_done_.assign(slots_, nullptr);
    slot_recorded_.assign(slots_, false);
    for (int s = 0; s < slots_; ++s) {
      TILECODEC_CUDA_CHECK(cudaEventCreateWithFlags(&slot_free_[s], cudaEventDisableTiming));
      TILECODEC_CUDA_CHECK(cudaEventCreate(&copy_done_[s]));
    }
    stats_.resize(layers_.size());
    timing_.resize(layers_.size());
    for (auto& t : timing_) {
      for (cudaEvent_t* e : {&t.copy_start, &t.copy_end, &t.acquire_start, &t.decode_start, &t.decode_end})
        TILECODEC_CUDA_CHECK(cudaEventCreate(e));
    }
    views_.reserve(max_tensors_);
  }

  // Frees whatever was allocated (null-safe: also after a constructor that threw half-way).
  void release_all() noexcept {
    if (copy_) cudaStreamSynchronize(copy_);
    if (compute_) cudaStreamSynchronize(compute_);
    for (auto& t : timing_)
      for (cudaEvent_t e : {t.copy_start, t.copy_end, t.acquire_start, t.decode_start, t.decode_end})
        if (e) cudaEventDestroy(e);
    for (cudaEvent_t e : slot_free_)
      if (e) cudaEventDestroy(e);
    for (cudaEvent_t e : copy_done_)
      if (e) cudaEventDestroy(e);
    timing_.clear();
    slot_free_.clear();
    copy_done_.clear();
    cudaFree(statuses_);
    cudaFree(tasks_);
    cudaFree(temp_);
    cudaFree(decode_buffer_);
    cudaFree(slot_memory_);
    statuses_ = nullptr, tasks_ = nullptr, temp_ = nullptr, decode_buffer_ = nullptr, slot_memory_ = nullptr;
    if (copy_) cudaStreamDestroy(copy_);
    copy_ = nullptr;
    if (pinned_) cudaFreeHost(arena_);
    pinned_ = false;
    arena_ = nullptr;
  }

 public:
  // Enqueues on the compute stream: wait for layer l's bytes, decode them. Returns the device
  // pointers of the layer's decoded tensors (in the order given), valid until release(l).
  const std::vector<void*>& acquire(int l) {
    const int slot = wait_for_layer(l);
    TILECODEC_CUDA_CHECK(cudaEventRecord(timing_[l].decode_start, compute_));
    std::size_t temp = temp_bytes_;
    const auto count = static_cast<std::uint32_t>(layers_[l].tensor_offsets.size());
    const status s = device::decode_async(temp_, temp, tasks_ + (std::size_t(l) * slots_ + slot) * max_tensors_, count,
                                          statuses_ + std::size_t(l) * max_tensors_, compute_);
    if (s != status::success) throw error(s, "weight_streamer: decode of layer " + std::to_string(l));
    TILECODEC_CUDA_CHECK(cudaGetLastError());
    TILECODEC_CUDA_CHECK(cudaEventRecord(timing_[l].decode_end, compute_));
    views_.clear();
    for (std::size_t i = 0; i < count; ++i) views_.push_back(decode_buffer_ + layers_[l].decoded_offsets[i]);
    return views_;
  }

  // For fused kernels that read compressed tiles themselves: enqueues only the wait for layer
  // l's bytes and returns device views of its encoded tensors in the slot, valid until
  // release(l). Nothing is decoded (the layer's decode time reads 0).
  const std::vector<device::tensor_ref>& acquire_encoded(int l) {
    const int slot = wait_for_layer(l);
    TILECODEC_CUDA_CHECK(cudaEventRecord(timing_[l].decode_start, compute_));
    TILECODEC_CUDA_CHECK(cudaEventRecord(timing_[l].decode_end, compute_));
    refs_.clear();
    for (std::size_t i = 0; i < layers_[l].tensor_offsets.size(); ++i)
      refs_.push_back(host_tasks_[(std::size_t(l) * slots_ + slot) * max_tensors_ + i].tensor);
    return refs_;
  }

  // Records (on the compute stream) that layer l's work is enqueued: its slot may be refilled
  // once the stream gets there.
  void release(int l) {
    check_layer(l);
    if (acquired_ != l) throw error(status::invalid_argument, "weight_streamer: release(" + std::to_string(l) + ") of a layer not acquired");
    acquired_ = -1;
    TILECODEC_CUDA_CHECK(cudaEventRecord(slot_free_[current_slot_], compute_));
    slot_recorded_[current_slot_] = true;
    in_flight_.pop_front();
    if (options_.after_layer) options_.after_layer(l);
  }

  // Device status words of layer l's tensors (success, or the error a corrupt tile raised),
  // read after the compute stream synchronised.
  [[nodiscard]] std::vector<status> layer_status(int l) const {
    check_layer(l);
    std::vector<status> out(layers_[l].tensor_offsets.size());
    TILECODEC_CUDA_CHECK(cudaMemcpy(out.data(), statuses_ + std::size_t(l) * max_tensors_, out.size() * sizeof(status),
                                    cudaMemcpyDeviceToHost));
    return out;
  }

  // Per-layer copy/decode times of the last pass (synchronises both streams).
  [[nodiscard]] const std::vector<layer_stats>& stats() {
    TILECODEC_CUDA_CHECK(cudaStreamSynchronize(copy_));
    TILECODEC_CUDA_CHECK(cudaStreamSynchronize(compute_));
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      layer_stats& s = stats_[l];
      s.bytes_copied = layers_[l].bytes;
      if (!timing_[l].used) continue;
      TILECODEC_CUDA_CHECK(cudaEventElapsedTime(&s.copy_ms, timing_[l].copy_start, timing_[l].copy_end));
      TILECODEC_CUDA_CHECK(cudaEventElapsedTime(&s.decode_ms, timing_[l].decode_start, timing_[l].decode_end));
      TILECODEC_CUDA_CHECK(cudaEventElapsedTime(&s.stall_ms, timing_[l].acquire_start, timing_[l].decode_start));
    }
    return stats_;
  }

  [[nodiscard]] std::uint64_t peak_vram() const { return peak_vram_; }
  [[nodiscard]] std::uint64_t slot_bytes() const { return slot_bytes_; }
  [[nodiscard]] std::uint64_t decode_buffer_bytes() const { return decode_bytes_; }
  [[nodiscard]] std::uint64_t arena_bytes() const { return arena_bytes_; }
  [[nodiscard]] std::uint64_t layer_bytes(int l) const { return layers_.at(std::size_t(l)).bytes; }
  [[nodiscard]] bool pinned() const { return pinned_; }
  [[nodiscard]] int layer_count() const { return static_cast<int>(layers_.size()); }
  [[nodiscard]] cudaStream_t copy_stream() const { return copy_; }

 private:
  struct layer_info {
    std::uint64_t arena_offset = 0, bytes = 0, decoded_bytes = 0;
    std::vector<std::uint64_t> tensor_offsets, decoded_offsets;
    std::vector<dtype> out_types;
  };
  struct flight {
    int layer;
    int slot;
  };
  struct layer_timing {
    cudaEvent_t copy_start{}, copy_end{}, acquire_start{}, decode_start{}, decode_end{};
    bool used = false;
  };

  static std::uint64_t align(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }
  std::uint8_t* slot(int s) const { return slot_memory_ + std::uint64_t(s) * slot_bytes_; }
  void check_layer(int l) const {
    if (l < 0 || std::size_t(l) >= layers_.size())
      throw error(status::invalid_argument, "weight_streamer: layer " + std::to_string(l) + " out of range");
  }

  // The common start of acquire(): ordering checks, prefetch, and the compute stream's wait for
  // the layer's bytes. Returns the layer's slot.
  int wait_for_layer(int l) {
    check_layer(l);
    if (acquired_ >= 0)
      throw error(status::invalid_argument, "weight_streamer: acquire(" + std::to_string(l) + ") before release(" +
                                                std::to_string(acquired_) + ")");
    if (options_.before_layer) options_.before_layer(l);
    if (in_flight_.empty() || in_flight_.front().layer != l) {
      // Not the predicted layer: drop the predictions (their slots are not in use) and copy it now.
      TILECODEC_CUDA_CHECK(cudaStreamSynchronize(copy_));
      in_flight_.clear();
      next_layer_ = l;
    }
    issue_copies();  // tops the ring up: l and up to prefetch_depth layers after it
    const flight f = in_flight_.front();
    TILECODEC_CUDA_CHECK(cudaEventRecord(timing_[l].acquire_start, compute_));
    TILECODEC_CUDA_CHECK(cudaStreamWaitEvent(compute_, copy_done_[f.slot], 0));
    current_slot_ = f.slot;
    acquired_ = l;
    return f.slot;
  }

  // Issues copies until the ring holds prefetch_depth + 1 layers (the current one included).
  void issue_copies() {
    while (static_cast<int>(in_flight_.size()) < slots_) {
      const int l = next_layer_;
      next_layer_ = (next_layer_ + 1) % static_cast<int>(layers_.size());
      const int s = next_slot_;
      next_slot_ = (next_slot_ + 1) % slots_;
      // The slot's previous layer must be done on the compute stream. Its release() recorded
      // slot_free_ before this wait is enqueued, because a slot is reused only after the
      // layer that held it was released (the ring holds at most slots_ layers).
      if (slot_recorded_[s]) TILECODEC_CUDA_CHECK(cudaStreamWaitEvent(copy_, slot_free_[s], 0));
      layer_timing& t = timing_[std::size_t(l)];
      TILECODEC_CUDA_CHECK(cudaEventRecord(t.copy_start, copy_));
      TILECODEC_CUDA_CHECK(cudaMemcpyAsync(slot(s), static_cast<const std::uint8_t*>(arena_) + layers_[l].arena_offset,
                                           layers_[l].bytes, cudaMemcpyHostToDevice, copy_));
      TILECODEC_CUDA_CHECK(cudaEventRecord(t.copy_end, copy_));
      TILECODEC_CUDA_CHECK(cudaEventRecord(copy_done_[s], copy_));
      t.used = true;
      in_flight_.push_back({l, s});
    }
  }

  streamer_options options_;
  cudaStream_t compute_;
  cudaStream_t copy_ = nullptr;
  dtype out_type_;
  int slots_ = 1;
  std::vector<layer_info> layers_;
  std::uint64_t arena_bytes_ = 0, slot_bytes_ = 0, decode_bytes_ = 0, temp_bytes_ = 0, peak_vram_ = 0;
  std::size_t max_tensors_ = 0;
  void* arena_ = nullptr;
  std::vector<std::uint8_t> pageable_;
  bool pinned_ = false;
  std::uint8_t* slot_memory_ = nullptr;
  std::uint8_t* decode_buffer_ = nullptr;
  void* temp_ = nullptr;
  device::decode_task* tasks_ = nullptr;
  status* statuses_ = nullptr;
  std::vector<cudaEvent_t> slot_free_, copy_done_;
  std::vector<bool> slot_recorded_;
  std::deque<flight> in_flight_;
  int next_layer_ = 0, next_slot_ = 0, current_slot_ = 0, acquired_ = -1;
  std::vector<layer_timing> timing_;
  std::vector<layer_stats> stats_;
  std::vector<void*> views_;
  std::vector<device::tensor_ref> refs_;
  std::vector<device::decode_task> host_tasks_;  // the device task array's host copy (refs for acquire_encoded)
};

}  // namespace stream
}  // namespace tilecodec
