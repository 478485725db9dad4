// Example 02: compress a real model on the host, decode all of it on the GPU with one
// stream-ordered call, and check every tensor bit for bit against the host decoder.
//
//   example_02_gpu_decode_model [model.safetensors] [--int8]
//
// Default model: data/minilm/model.bf16.safetensors (scripts/make_bf16_copy.py), else
// data/minilm/model.safetensors. --int8 quantizes (per-row int8 + rANS) instead of coding the
// weights losslessly, and decodes to int8 codes.
#include <tilecodec/device/cuda_check.cuh>
#include <tilecodec/device/decode.cuh>
#include <tilecodec/format/safetensors.hpp>
#include <tilecodec/tilecodec.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#ifndef TILECODEC_DATA_DIR
#define TILECODEC_DATA_DIR "data"
#endif

namespace dv = tilecodec::device;
using tilecodec::dtype;
using tilecodec::status;

int main(int argc, char** argv) try {
  std::string path;
  bool int8 = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--int8") == 0) int8 = true;
    else path = argv[i];
  }
  if (path.empty()) {
    path = std::string(TILECODEC_DATA_DIR) + "/minilm/model.bf16.safetensors";
    if (!std::filesystem::exists(path)) path = std::string(TILECODEC_DATA_DIR) + "/minilm/model.safetensors";
  }
  if (!std::filesystem::exists(path)) {
    std::printf("example 02: no model at %s (scripts/fetch_weights.sh fetches one); nothing to do\n", path.c_str());
    return 0;
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("example 02: no CUDA device; nothing to do\n");
    return 0;
  }

  // 1. Compress every floating-point tensor on the host.
  tilecodec::safetensors::file model(path);
  const tilecodec::format_params policy = int8 ? tilecodec::int8_codec::params() : tilecodec::lossless_codec::params();
  std::vector<tilecodec::encoded_tensor> encoded;
  std::vector<dtype> out_types;
  std::uint64_t source_bytes = 0, compressed_bytes = 0, decoded_bytes = 0;
  for (const auto& info : model.tensors()) {
    if (info.type != dtype::bf16 && info.type != dtype::f16 && info.type != dtype::f32) continue;
    const auto bytes = model.data(info);
    encoded.push_back(tilecodec::host::encode(bytes.data, info.type, info.shape, policy));
    out_types.push_back(int8 ? dtype::i8 : info.type);
    source_bytes += bytes.size;
    compressed_bytes += (encoded.back().size() + 255) / 256 * 256;
    decoded_bytes += (info.element_count() * tilecodec::dtype_size(out_types.back()) + 255) / 256 * 256;
  }

  // 2. One device buffer of compressed tensors, one of outputs, and a task per tensor.
  cudaStream_t stream;
  TILECODEC_CUDA_CHECK(cudaStreamCreate(&stream));
  std::uint8_t *d_in = nullptr, *d_out = nullptr;
  TILECODEC_CUDA_CHECK(cudaMalloc(&d_in, compressed_bytes));
  TILECODEC_CUDA_CHECK(cudaMalloc(&d_out, decoded_bytes));
  TILECODEC_CUDA_CHECK(cudaMemset(d_out, 0xcd, decoded_bytes));  // poison: unwritten bytes would show
  std::vector<dv::decode_task> tasks;
  std::vector<std::uint64_t> out_offsets;
  std::uint64_t in_at = 0, out_at = 0;
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    TILECODEC_CUDA_CHECK(cudaMemcpyAsync(d_in + in_at, encoded[i].bytes().data(), encoded[i].size(),
                                         cudaMemcpyHostToDevice, stream));
    const std::uint64_t n = encoded[i].view().elements() * tilecodec::dtype_size(out_types[i]);
    tasks.push_back(dv::make_decode_task(dv::make_tensor_ref(encoded[i].view(), d_in + in_at), d_out + out_at, out_types[i], n));
    out_offsets.push_back(out_at);
    in_at += (encoded[i].size() + 255) / 256 * 256;
    out_at += (n + 255) / 256 * 256;
  }
  const auto count = static_cast<std::uint32_t>(tasks.size());
  dv::decode_task* d_tasks = nullptr;
  status* d_status = nullptr;
  void* d_temp = nullptr;
  std::size_t temp_bytes = 0;
  (void)dv::decode_async(nullptr, temp_bytes, nullptr, count, nullptr, stream);  // size query
  TILECODEC_CUDA_CHECK(cudaMalloc(&d_tasks, sizeof(dv::decode_task) * count));
  TILECODEC_CUDA_CHECK(cudaMalloc(&d_status, sizeof(status) * count));
  TILECODEC_CUDA_CHECK(cudaMalloc(&d_temp, temp_bytes));
  TILECODEC_CUDA_CHECK(cudaMemcpyAsync(d_tasks, tasks.data(), sizeof(dv::decode_task) * count, cudaMemcpyHostToDevice, stream));

  // 3. Decode everything in one call (a first call warms up), timed with events.
  cudaEvent_t start, stop;
  TILECODEC_CUDA_CHECK(cudaEventCreate(&start));
  TILECODEC_CUDA_CHECK(cudaEventCreate(&stop));
  float ms = 0;
  for (int run = 0; run < 2; ++run) {
    TILECODEC_CUDA_CHECK(cudaEventRecord(start, stream));
    if (dv::decode_async(d_temp, temp_bytes, d_tasks, count, d_status, stream) != status::success) {
      std::printf("decode_async failed to launch\n");
      return 1;
    }
    TILECODEC_CUDA_CHECK(cudaEventRecord(stop, stream));
    TILECODEC_CUDA_CHECK(cudaEventSynchronize(stop));
    TILECODEC_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  }

  // 4. Status words, and every tensor against the host decoder.
  std::vector<status> st(count);
  TILECODEC_CUDA_CHECK(cudaMemcpy(st.data(), d_status, sizeof(status) * count, cudaMemcpyDeviceToHost));
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    const std::uint64_t n = tasks[i].out_bytes;
    std::vector<std::uint8_t> gpu(n), ref(n);
    TILECODEC_CUDA_CHECK(cudaMemcpy(gpu.data(), d_out + out_offsets[i], n, cudaMemcpyDeviceToHost));
    const status hs = tilecodec::host::decode(encoded[i].view(), ref.data(), out_types[i], n, 0);
    if (st[i] != status::success || hs != status::success || gpu != ref) {
      ++mismatches;
      std::printf("tensor %zu: device %s, host %s, %s\n", i, tilecodec::to_string(st[i]), tilecodec::to_string(hs),
                  gpu == ref ? "same bytes" : "different bytes");
    }
  }
  std::printf("%s: %u tensors, %.1f MB -> %.1f MB (%.1f%%), GPU decode %.3f ms = %.0f GB/s of output; %s\n",
              path.c_str(), count, source_bytes / 1e6, compressed_bytes / 1e6, 100.0 * compressed_bytes / source_bytes, ms,
              decoded_bytes / (ms * 1e-3) / 1e9, mismatches ? "MISMATCH" : "bit-identical to the host decoder");
  cudaFree(d_in);
  cudaFree(d_out);
  cudaFree(d_tasks);
  cudaFree(d_status);
  cudaFree(d_temp);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  return mismatches ? 1 : 0;
} catch (const std::exception& e) {
  std::printf("example 02: %s\n", e.what());
  return 1;
}
