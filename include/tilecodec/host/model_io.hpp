// tilecodec/host/model_io.hpp: whole models on the host. safetensors in, container out
// (compress_model), container in, tensors out (model_reader), container back to safetensors
// (export_safetensors), and checks of a container against itself or its original (verify_model).
//
//   // compress, with per-tensor policies chosen by rules (format/policy_rules.hpp)
//   host::compress_options opt;
//   opt.rules = policy_rules::preset("int8");
//   host::compress_model("model.safetensors", "model.tcm", opt);
//
//   // load: list, decode one tensor, or every tensor into buffers the caller owns
//   host::model_reader model("model.tcm");
//   for (const container::entry& e : model.tensors()) ...;           // name, dtype, shape, policy
//   std::vector<std::uint8_t> w = model.decode("lm_head.weight");    // original dtype, row-major
//   model.decode_all([&](const container::entry& e) { return host::model_reader::destination{buf[e.name], bytes, e.type}; });
//
// Memory: every operation holds one or two tensors at a time, so peak memory follows the largest
// tensor, never the model. compress encodes tensor i while a background thread checksums and
// writes tensor i-1: the encoder's working set (about 2.5x an f32 / 3.5x a bf16 tensor's bytes)
// plus one encoded tensor; export decodes and writes one tensor at a time (about 2x); verify holds
// a tensor, its decode and, with an original, the original's bytes (about 3x). Inputs are read
// through read-only mappings whose pages are released (madvise) once a tensor is done, so the
// resident set does not grow with the file. Measured (docs/PERFORMANCE.container.md): compress
// peaks at 2.5-2.9x the largest tensor, the same for a 0.5 GB and a 1 GB model.
//
// Handing tensors to the GPU decoder (include/tilecodec/device/; this header does not need it):
// the container's blobs are the encoded tensors the device decoders read, byte for byte.
//   const container::entry& e = model.at("model.layers.0.mlp.up_proj.weight");
//   model.file().read(e, pinned, e.size);                       // into pinned memory; checksum checked
//   encoded_tensor_view view = container::open_encoded(e, pinned, e.size, model.path());  // parsed, matches its record
//   cudaMemcpyAsync(d_blob, pinned, e.size, cudaMemcpyHostToDevice, stream);             // d_blob 16-byte aligned
//   tasks.push_back(device::make_decode_task(device::make_tensor_ref(view, d_blob), d_out, e.type, e.original_bytes()));
//   // then device::decode_async(...) for all tasks at once (device/decode.cuh)
// Stored (raw) tensors (e.kind == container::storage::stored) are the original bytes: copy them as
// they are. Blobs start at multiples of 4096 in the file, so a run of consecutive tensors (a layer)
// can be read with one aligned (even O_DIRECT) read and copied with one cudaMemcpyAsync; each
// blob's offset within the run is e.offset - first.offset.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../dtype.hpp"
#include "../format/container.hpp"
#include "../format/encoded_tensor.hpp"
#include "../format/policy_rules.hpp"
#include "../format/safetensors.hpp"
#include "../status.hpp"
#include "decoder.hpp"
#include "encoder.hpp"

namespace tilecodec {
namespace host {

// Reported before each tensor starts and once at the end (tensor_index == tensor_count). A
// callback may throw to cancel: outputs are then removed, never left half-written.
struct progress_event {
  std::uint64_t done_bytes = 0;   // original (uncompressed) bytes finished so far
  std::uint64_t total_bytes = 0;
  std::size_t tensor_index = 0;
  std::size_t tensor_count = 0;
  std::string_view tensor;        // the tensor starting now ("" at the end)
};
using progress_callback = std::function<void(const progress_event&)>;

namespace detail {

// One background thread running jobs in order, for overlapping a file write (and its checksum)
// with the encode or decode of the next tensor. push() waits while `depth` jobs are in flight
// (queued or running), so with depth 1 a producer works on item i+1 while job i runs and holds at
// most two items. A job's exception stops the queue and is rethrown by the next push() or finish();
// the destructor drops queued jobs and waits for a running one.
class io_worker {
 public:
  explicit io_worker(std::size_t depth = 1) : depth_(depth), thread_([this] { loop(); }) {}
  io_worker(const io_worker&) = delete;
  io_worker& operator=(const io_worker&) = delete;
  ~io_worker() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      queue_.clear();
    }
    cv_.notify_all();
    thread_.join();
  }
  void push(std::function<void()> job) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return in_flight_ < depth_ || failure_; });
    if (failure_) std::rethrow_exception(failure_);
    queue_.push_back(std::move(job));
    ++in_flight_;
    cv_.notify_all();
  }
  void finish() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return in_flight_ == 0 || failure_; });
    if (failure_) std::rethrow_exception(failure_);
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      std::exception_ptr failed;
      try {
        job();
      } catch (...) {
        failed = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (failed && !failure_) failure_ = failed;
        if (failed) queue_.clear(), in_flight_ = 0;
        else --in_flight_;
      }
      cv_.notify_all();
    }
  }

  std::size_t depth_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::size_t in_flight_ = 0;
  std::exception_ptr failure_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once everything above exists
};

}  // namespace detail

// ---- safetensors, written as a stream ------------------------------------------------------------

// Writes a safetensors file whose tensors are declared up front (the header lists every offset)
// and whose bytes then arrive one tensor at a time, in the declared order: memory holds one tensor,
// not the file. (safetensors::writer needs every tensor's bytes alive until it writes.) Written to a
// temporary name and renamed into place by finish().
class safetensors_stream_writer {
 public:
  struct tensor {
    std::string name;
    dtype type = dtype::f32;
    std::vector<std::uint64_t> shape;
  };

  safetensors_stream_writer(const std::string& path, std::vector<tensor> tensors, const std::map<std::string, std::string>& metadata)
      : out_(path), tensors_(std::move(tensors)) {
    using container::detail::fail;
    std::string header = "{";
    try {
      if (!metadata.empty()) header += "\"__metadata__\":" + nlohmann::json(metadata).dump();
      std::uint64_t offset = 0;
      for (const tensor& t : tensors_) {
        std::uint64_t elements = 0, bytes = 0;
        if (!container::detail::checked_elements(t.shape, elements) || !container::detail::checked_mul(elements, dtype_size(t.type), bytes) ||
            offset + bytes < offset)
          fail(status::overflow, path, "tensor '" + t.name + "': size overflows 64 bits");
        if (t.name == safetensors::metadata_key) fail(status::invalid_argument, path, "tensor name '__metadata__' is reserved");
        if (header.size() > 1) header += ',';
        header += nlohmann::json(t.name).dump() + R"(:{"dtype":")" + dtype_name(t.type) + R"(","shape":)" + nlohmann::json(t.shape).dump() +
                  R"(,"data_offsets":[)" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
        sizes_.push_back(bytes);
        offset += bytes;
      }
    } catch (const nlohmann::json::exception& e) {
      fail(status::invalid_argument, path, std::string("cannot encode the safetensors header: ") + e.what());
    }
    header += '}';
    header.append((8 - header.size() % 8) % 8, ' ');  // the byte buffer starts 8-byte aligned
    std::uint8_t length[8];
    container::detail::put_u64(length, header.size());
    out_.write(length, 8);
    out_.write(header.data(), header.size());
  }

  [[nodiscard]] const std::string& path() const { return out_.path(); }
  [[nodiscard]] std::size_t next_index() const { return next_; }
  [[nodiscard]] const std::vector<tensor>& tensors() const { return tensors_; }

  // The next tensor's bytes, all at once.
  void write_next(const void* data, std::uint64_t size) {
    using container::detail::fail;
    if (next_ >= tensors_.size()) fail(status::invalid_argument, path(), "more tensors written than declared");
    if (size != sizes_[next_])
      fail(status::invalid_argument, path(), "tensor '" + tensors_[next_].name + "': " + std::to_string(size) + " bytes, declared " + std::to_string(sizes_[next_]));
    out_.write(data, size);
    ++next_;
  }
  // Checks every tensor was written, closes the file, renames it into place.
  void finish(bool sync = true) {
    close(sync);
    publish();
  }
  void close(bool sync = true) {
    if (next_ != tensors_.size())
      container::detail::fail(status::invalid_argument, path(), std::to_string(tensors_.size() - next_) + " declared tensors were not written");
    out_.close_file(sync);
  }
  void publish() { out_.publish(); }

 private:
  container::detail::output_file out_;
  std::vector<tensor> tensors_;
  std::vector<std::uint64_t> sizes_;
  std::size_t next_ = 0;
};

// ---- reading a container -------------------------------------------------------------------------

// Can a container tensor be decoded to `out`? Its own dtype always; a quantized tensor also to
// F32, F16, BF16 (dequantized) or I8 (the integer codes).
[[nodiscard]] inline bool can_decode_to(const container::entry& e, dtype out) {
  if (out == e.type) return true;
  if (e.kind != container::storage::encoded || e.params.quant == quant::kind::lossless) return false;
  return out == dtype::f32 || out == dtype::f16 || out == dtype::bf16 || out == dtype::i8;
}

// Decodes a tensor from its blob (already read and checksum-checked) into out, row-major.
inline void decode_blob(const container::entry& e, const std::uint8_t* blob, std::uint64_t blob_bytes, void* out, std::uint64_t out_bytes,
                        dtype out_type, unsigned threads, const std::string& source) {
  using container::detail::fail;
  const std::string tensor = "tensor '" + e.name + "'";
  if (!can_decode_to(e, out_type))
    fail(status::unsupported, source, tensor + ": cannot decode " + dtype_name(e.type) + " (" + policy_name(e.kind == container::storage::stored ? tensor_policy::raw() : tensor_policy::encoded(e.params)) + ") to " + dtype_name(out_type));
  const std::uint64_t need = e.elements() * dtype_size(out_type);
  if (out_bytes < need || (out == nullptr && need != 0))
    fail(status::invalid_argument, source, tensor + ": output buffer of " + std::to_string(out_bytes) + " bytes, needs " + std::to_string(need));
  if (e.kind == container::storage::stored) {
    if (blob_bytes != e.size) fail(status::invalid_argument, source, tensor + ": blob size differs from the index");
    if (need) std::memcpy(out, blob, static_cast<std::size_t>(need));
    return;
  }
  const encoded_tensor_view view = container::open_encoded(e, blob, blob_bytes, source);
  tensor_decoder dec(view);
  if (dec.state() != status::success) fail(dec.state(), source, tensor + ": frequency table");
  const status s = dec.decode(out, out_type, out_bytes, threads);
  if (s != status::success) fail(s, source, tensor + ": payload does not decode");
}

// An open container: the index in memory, tensors read and decoded on demand.
class model_reader {
 public:
  explicit model_reader(const std::string& path, const container::parse_options& options = {}) : file_(path, options) {}

  [[nodiscard]] const container::file& file() const { return file_; }
  [[nodiscard]] const std::string& path() const { return file_.path(); }
  [[nodiscard]] const std::vector<container::entry>& tensors() const { return file_.tensors(); }
  [[nodiscard]] const container::entry* find(std::string_view name) const { return file_.find(name); }
  [[nodiscard]] const container::entry& at(std::string_view name) const { return file_.at(name); }
  [[nodiscard]] const container::metadata_map& metadata() const { return file_.metadata(); }
  [[nodiscard]] std::uint64_t original_bytes() const {
    std::uint64_t n = 0;
    for (const auto& e : tensors()) n += e.original_bytes();
    return n;
  }

  // Decodes one tensor into out (out_bytes >= elements * dtype_size(out_type)), row-major, on
  // `threads` threads (0: all). Throws tilecodec::error naming the file and the tensor.
  void decode(const container::entry& e, void* out, std::uint64_t out_bytes, dtype out_type, unsigned threads = 0) const {
    std::vector<std::uint8_t> scratch;
    decode_with(e, out, out_bytes, out_type, threads, scratch);
  }
  // The tensor in its original dtype, as bytes.
  [[nodiscard]] std::vector<std::uint8_t> decode(std::string_view name, unsigned threads = 0) const {
    const container::entry& e = at(name);
    std::vector<std::uint8_t> out(static_cast<std::size_t>(e.original_bytes()));
    decode(e, out.data(), out.size(), e.type, threads);
    return out;
  }

  // Where decode_all puts a tensor: a caller buffer and the dtype to decode to; data == nullptr skips it.
  struct destination {
    void* data = nullptr;
    std::uint64_t bytes = 0;
    dtype type = dtype::f32;
  };
  // Decodes every tensor into the buffers `where` hands out, in file order (one pass over the file;
  // each blob's pages are released once it is decoded).
  void decode_all(const std::function<destination(const container::entry&)>& where, unsigned threads = 0,
                  const progress_callback& on_progress = {}) const {
    std::vector<std::uint8_t> scratch;
    const std::uint64_t total = original_bytes();
    std::uint64_t done = 0;
    const auto& all = tensors();
    for (std::size_t i = 0; i < all.size(); ++i) {
      const container::entry& e = all[i];
      if (on_progress) on_progress({done, total, i, all.size(), e.name});
      const destination d = where(e);
      if (d.data != nullptr) {
        decode_with(e, d.data, d.bytes, d.type, threads, scratch);
        file_.release(e);
      }
      done += e.original_bytes();
    }
    if (on_progress) on_progress({done, total, all.size(), all.size(), {}});
  }

  // Calls fn(blob) with a tensor's checksum-checked bytes: in the mapping when the file is mapped
  // (no copy), else read into `scratch`.
  template <class Fn>
  void with_blob(const container::entry& e, std::vector<std::uint8_t>& scratch, Fn&& fn) const {
    if (file_.mapped()) {
      fn(file_.blob(e));
      return;
    }
    scratch.resize(static_cast<std::size_t>(e.size));
    file_.read(e, scratch.data(), scratch.size());
    fn(static_cast<const std::uint8_t*>(scratch.data()));
  }

 private:
  void decode_with(const container::entry& e, void* out, std::uint64_t out_bytes, dtype out_type, unsigned threads,
                   std::vector<std::uint8_t>& scratch) const {
    if (e.kind == container::storage::stored && can_decode_to(e, out_type) && out_bytes >= e.size && !file_.mapped()) {
      file_.read(e, out, out_bytes);  // straight into the caller's buffer
      return;
    }
    with_blob(e, scratch, [&](const std::uint8_t* blob) { decode_blob(e, blob, e.size, out, out_bytes, out_type, threads, path()); });
  }

 private:
  container::file file_;
};

// ---- compress: safetensors -> container ----------------------------------------------------------

struct compress_options {
  policy_rules rules = policy_rules::preset("lossless");
  unsigned threads = 0;  // encoder threads (0: all)
  unsigned alignment_log2 = container::default_alignment_log2;
  bool sync = true;      // fsync before renaming into place
  progress_callback on_progress;
};

// One tensor's outcome.
struct tensor_report {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::uint64_t> shape;
  std::string policy;       // policy_name() of what was stored
  std::string reason;       // which rule chose it, or why it fell back
  std::uint64_t original_bytes = 0;
  std::uint64_t stored_bytes = 0;
  double seconds = 0.0;
  [[nodiscard]] std::uint64_t elements() const {
    std::uint64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  [[nodiscard]] double bits_per_weight() const { return elements() ? 8.0 * double(stored_bytes) / double(elements()) : 0.0; }
};

struct compress_report {
  std::vector<tensor_report> tensors;
  std::vector<std::string> warnings;
  std::uint64_t original_bytes = 0;   // sum of the tensors' bytes
  std::uint64_t container_bytes = 0;  // the output file, index and padding included
  std::uint64_t source_file_bytes = 0;
  double seconds = 0.0;
};

// A source tensor: which shard, where its bytes are.
struct source_tensor {
  const safetensors::tensor_info* info = nullptr;
  std::size_t shard = 0;
  std::uint64_t file_offset = 0;  // absolute offset of its bytes in the shard file
};

// Every tensor of a safetensors model, in file order (shard by shard).
[[nodiscard]] inline std::vector<source_tensor> list_source_tensors(const safetensors::model& model) {
  std::vector<source_tensor> out;
  for (std::size_t s = 0; s < model.shards().size(); ++s) {
    const safetensors::file& shard = model.shards()[s];
    const std::uint64_t base = safetensors::length_field_size + shard.contents().header_size();
    for (const auto& info : shard.tensors()) out.push_back({&info, s, base + info.begin});
  }
  return out;
}

// What compress_model would choose for each tensor (a dry run).
[[nodiscard]] inline std::vector<policy_rules::choice> plan_compression(const safetensors::model& model, const policy_rules& rules) {
  std::vector<policy_rules::choice> out;
  for (const source_tensor& t : list_source_tensors(model)) {
    if (t.info->element_count() == 0) out.push_back({tensor_policy::raw(), "empty tensor: stored raw"});
    else out.push_back(rules.choose(t.info->name, t.info->type, t.info->shape));
  }
  return out;
}

// Compresses a safetensors model (a file, an index .json, or a directory holding either) into a
// container at `output`, one tensor at a time. The output appears only when complete.
inline compress_report compress_model(const std::string& input, const std::string& output, const compress_options& options = {}) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const safetensors::model model(input);
  compress_report report;
  for (const auto& shard : model.shards()) report.source_file_bytes += std::filesystem::file_size(shard.path());

  // Metadata of every shard; shards that disagree on a key keep the first shard's value.
  container::metadata_map metadata;
  for (const auto& shard : model.shards())
    for (const auto& kv : shard.metadata()) {
      const auto it = metadata.find(kv.first);
      if (it == metadata.end()) metadata.emplace(kv.first, kv.second);
      else if (it->second != kv.second)
        report.warnings.push_back("metadata key '" + kv.first + "' differs between shards: kept '" + it->second + "'");
    }

  std::vector<container::detail::input_file> inputs;
  for (const auto& shard : model.shards()) inputs.emplace_back(shard.path());
  const std::vector<source_tensor> sources = list_source_tensors(model);
  const std::vector<policy_rules::choice> plan = plan_compression(model, options.rules);
  std::uint64_t total = 0;
  for (const auto& t : sources) total += t.info->byte_size();

  container::writer_options wopt;
  wopt.alignment_log2 = options.alignment_log2;
  wopt.sync = options.sync;
  container::writer out(output, wopt);
  for (const auto& kv : metadata) out.set_metadata(kv.first, kv.second);

  // Tensor i is read and encoded here while a background thread checksums and writes tensor i-1.
  // Sources come straight from the shard's mapping when it is mapped and the tensor is aligned
  // for its dtype, else from one of two buffers (tensor i-2's job is done when i starts).
  std::vector<std::uint8_t> buffers[2];
  std::uint64_t done = 0;
  detail::io_worker io(1);  // declared after `out` and the buffers: joined before they go
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const safetensors::tensor_info& info = *sources[i].info;
    if (options.on_progress) options.on_progress({done, total, i, sources.size(), info.name});
    const auto t0 = clock::now();
    const std::uint64_t size = info.byte_size();
    const safetensors::file& shard = model.shards()[sources[i].shard];
    const std::uint8_t* data = nullptr;
    bool mapped = false;
    if (shard.memory_mapped()) {
      const safetensors::byte_view bytes = shard.data(info);
      data = reinterpret_cast<const std::uint8_t*>(bytes.data);
      mapped = reinterpret_cast<std::uintptr_t>(data) % dtype_size(info.type) == 0;
    }
    if (!mapped) {
      std::vector<std::uint8_t>& buffer = buffers[i % 2];
      buffer.resize(static_cast<std::size_t>(size));
      inputs[sources[i].shard].read_at(sources[i].file_offset, buffer.data(), size);
      data = buffer.data();
    }

    tensor_report r;
    r.name = info.name;
    r.type = info.type;
    r.shape = info.shape;
    r.original_bytes = size;
    tensor_policy policy = plan[i].policy;
    r.reason = plan[i].reason;
    std::shared_ptr<encoded_tensor> enc;
    if (!policy.stored) {
      encode_options eo;
      eo.threads = options.threads;
      eo.name = info.name;
      try {
        enc = std::make_shared<encoded_tensor>(encode(data, info.type, info.shape, policy.params, eo));
      } catch (const error& e) {
        if (!policy.quantized() || e.code() != status::invalid_argument) throw;
        // Non-finite values (or an fp16 scale overflow) cannot be quantized: keep the tensor exact.
        report.warnings.push_back(info.name + ": " + e.what() + "; stored lossless instead");
        r.reason += "; fell back to lossless (" + std::string(e.what()) + ")";
        policy = tensor_policy::encoded(lossless_codec::params());
        enc = std::make_shared<encoded_tensor>(encode(data, info.type, info.shape, policy.params, eo));
      }
      if (!policy.quantized() && enc->size() >= size) {
        r.reason += "; encoding did not make it smaller: stored raw";
        policy = tensor_policy::raw();
        enc.reset();
      }
    }
    r.policy = enc ? policy_name(tensor_policy::encoded(enc->header().params)) : "raw";
    r.stored_bytes = enc ? enc->size() : size;
    io.push([&out, &info, data, size, mapped, enc] {
      const std::uint64_t source_sum = container::checksum(data, size);
      if (enc) out.add_encoded(info.name, enc->view(), source_sum);
      else out.add_stored(info.name, info.type, info.shape, data, size);
      if (mapped) container::release_mapped(data, size);  // keep the resident set to a tensor or two
    });
    r.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    report.tensors.push_back(std::move(r));
    report.original_bytes += size;
    done += size;
  }
  io.finish();
  if (options.on_progress) options.on_progress({done, total, sources.size(), sources.size(), {}});
  out.finish();
  report.container_bytes = std::filesystem::file_size(output);
  report.seconds = std::chrono::duration<double>(clock::now() - start).count();
  return report;
}

// ---- export: container -> safetensors ------------------------------------------------------------

struct export_options {
  unsigned threads = 0;
  // 0: one file at `output`. Otherwise `output` is a directory that receives shards of at most
  // this many bytes (a larger tensor gets a shard of its own), named model-00001-of-0000N.safetensors,
  // and model.safetensors.index.json, as Hugging Face lays them out.
  std::uint64_t max_shard_bytes = 0;
  bool sync = true;
  progress_callback on_progress;
};

struct export_report {
  std::vector<std::string> files;  // written, the index last when sharded
  std::uint64_t bytes = 0;         // tensor bytes written
  double seconds = 0.0;
};

// Decodes every tensor back to its original dtype and writes safetensors (user metadata kept).
// Every output file appears at once, after all are complete.
inline export_report export_safetensors(const model_reader& model, const std::string& output, const export_options& options = {}) {
  namespace fs = std::filesystem;
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto& all = model.tensors();

  // Shards: consecutive tensors in file order, each shard up to max_shard_bytes.
  std::vector<std::vector<std::size_t>> shards(1);
  std::uint64_t in_shard = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const std::uint64_t b = all[i].original_bytes();
    if (options.max_shard_bytes && !shards.back().empty() && in_shard + b > options.max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(i);
    in_shard += b;
  }
  const bool sharded = options.max_shard_bytes != 0;
  std::vector<std::string> names;
  if (sharded) {
    std::error_code ec;
    fs::create_directories(output, ec);
    if (!fs::is_directory(output))
      container::detail::fail(status::io_error, output, "cannot create the output directory" + (ec ? ": " + ec.message() : std::string()));
    for (std::size_t s = 0; s < shards.size(); ++s) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
      names.push_back(name);
    }
  }

  export_report report;
  std::vector<std::unique_ptr<safetensors_stream_writer>> writers;
  // One tensor at a time: decode, write, release. (Overlapping the write with the next decode on a
  // background thread measured no faster on 2 cores and holds one more tensor.)
  std::vector<std::uint8_t> decoded, blob_scratch;  // blob_scratch: blobs of an unmapped file
  std::uint64_t done = 0, total = model.original_bytes();
  std::size_t count = 0;
  nlohmann::json weight_map = nlohmann::json::object();
  for (std::size_t s = 0; s < shards.size(); ++s) {
    std::vector<safetensors_stream_writer::tensor> decl;
    for (std::size_t i : shards[s]) decl.push_back({all[i].name, all[i].type, all[i].shape});
    const std::string path = sharded ? (fs::path(output) / names[s]).string() : output;
    writers.push_back(std::make_unique<safetensors_stream_writer>(path, std::move(decl), model.metadata()));
    safetensors_stream_writer& w = *writers.back();
    for (std::size_t i : shards[s]) {
      const container::entry& e = all[i];
      if (options.on_progress) options.on_progress({done, total, count, all.size(), e.name});
      model.with_blob(e, blob_scratch, [&](const std::uint8_t* blob) {
        if (e.kind == container::storage::stored) {
          w.write_next(blob, e.size);  // straight from the mapping when the file is mapped
        } else {
          decoded.resize(static_cast<std::size_t>(e.original_bytes()));
          decode_blob(e, blob, e.size, decoded.data(), decoded.size(), e.type, options.threads, model.path());
          w.write_next(decoded.data(), decoded.size());
        }
      });
      model.file().release(e);
      if (sharded) weight_map[e.name] = names[s];
      done += e.original_bytes();
      ++count;
    }
    w.close(options.sync);
  }
  std::unique_ptr<container::detail::output_file> index_file;
  if (sharded) {
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    const std::string text = index.dump(2) + "\n";
    index_file = std::make_unique<container::detail::output_file>((fs::path(output) / safetensors::index_file_name).string());
    index_file->write(text.data(), text.size());
    index_file->close_file(options.sync);
  }
  for (auto& w : writers) {
    w->publish();
    report.files.push_back(w->path());
  }
  if (index_file) {
    index_file->publish();
    report.files.push_back(index_file->path());
  }
  if (options.on_progress) options.on_progress({done, total, all.size(), all.size(), {}});
  report.bytes = done;
  report.seconds = std::chrono::duration<double>(clock::now() - start).count();
  return report;
}

// ---- verify --------------------------------------------------------------------------------------

// The error bound a quantized value is held to: half a quantization step, plus float rounding.
// |x - x_hat| <= scale/2 * (1 + 1e-5) + 2^-20 * (|x| + |x_hat|) + 2^-120.
[[nodiscard]] inline double quantization_bound(double scale, double x, double x_hat) {
  return 0.5 * scale * (1.0 + 1e-5) + std::ldexp(std::fabs(x) + std::fabs(x_hat), -20) + std::ldexp(1.0, -120);
}

struct verify_options {
  unsigned threads = 0;
  std::string original;      // a safetensors model to compare with; empty: self-checks only
  bool check_padding = true; // padding between blobs must be zero
  progress_callback on_progress;
};

struct tensor_check {
  std::string name;
  std::string policy;
  status code = status::success;  // checksum_mismatch, corrupt_*, ... when the container is at fault
  bool mismatch = false;          // decodes, but differs from the original (or exceeds its bound)
  bool compared = false;          // checked against the original
  bool exact = false;             // bit-identical to the original (or to its recorded checksum)
  double max_abs_error = 0.0;     // quantized, against the original
  double max_error_to_bound = 0.0;  // largest |x - x_hat| / bound: <= 1 passes
  std::string problem;
  [[nodiscard]] bool ok() const { return code == status::success && !mismatch; }
};

struct verify_report {
  std::vector<tensor_check> tensors;
  std::vector<std::string> problems;  // file-level: padding, tensors missing on either side
  status file_code = status::success; // worst file-level problem that is the container's fault
  bool file_mismatch = false;         // tensor sets or dtypes/shapes differ from the original
  double seconds = 0.0;
  std::uint64_t bytes = 0;            // original bytes decoded
  [[nodiscard]] std::size_t failures() const {
    std::size_t n = problems.size();
    for (const auto& t : tensors) n += t.ok() ? 0 : 1;
    return n;
  }
  [[nodiscard]] bool ok() const { return failures() == 0; }
};

namespace detail {

inline float load_f32(const std::uint8_t* p, dtype t, std::uint64_t i) {
  switch (t) {
    case dtype::f32: {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      return v;
    }
    case dtype::f16: return f16_to_float(::tilecodec::detail::get_u16(p + 2 * i));
    default: return bf16_to_float(::tilecodec::detail::get_u16(p + 2 * i));
  }
}

// Compares a quantized tensor's f32 decode with the original values; fills max error and ratio.
inline void compare_quantized(const encoded_tensor_view& view, const std::uint8_t* original, dtype type, const float* decoded,
                              tensor_check& c) {
  const tensor_header& h = view.header();
  const tile_layout& l = view.layout();
  const bool int8 = h.params.quant == quant::kind::int8_rowwise;
  const std::uint64_t gpr = int8 ? 1 : (l.cols + h.params.group_size - 1) / h.params.group_size;
  for (std::uint64_t r = 0; r < l.rows; ++r) {
    for (std::uint64_t col = 0; col < l.cols; ++col) {
      const std::uint64_t i = r * l.cols + col;
      const double scale = int8 ? double(bits_float(::tilecodec::detail::get_u32(view.scales() + 4 * r)))
                                : double(f16_to_float(::tilecodec::detail::get_u16(view.scales() + 2 * (r * gpr + col / h.params.group_size))));
      const double x = load_f32(original, type, i), y = decoded[i];
      const double err = std::fabs(x - y);
      const double ratio = err / quantization_bound(scale, x, y);
      if (!(err <= c.max_abs_error)) c.max_abs_error = std::isnan(err) ? INFINITY : err;
      if (!(ratio <= c.max_error_to_bound)) c.max_error_to_bound = std::isnan(ratio) ? INFINITY : ratio;
    }
  }
}

}  // namespace detail

// Checks every tensor: blob checksum, full decode, lossless and stored tensors bit-exact against
// the checksum recorded at compression; with an original, every tensor against it (lossless
// bit-identical, quantized within quantization_bound) and the tensor sets equal.
inline verify_report verify_model(const model_reader& model, const verify_options& options = {}) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  verify_report report;
  const container::file& f = model.file();

  std::unique_ptr<safetensors::model> original;
  std::vector<container::detail::input_file> inputs;
  std::map<std::string, source_tensor, std::less<>> by_name;
  if (!options.original.empty()) {
    original = std::make_unique<safetensors::model>(options.original);
    for (const auto& shard : original->shards()) inputs.emplace_back(shard.path());
    for (const source_tensor& t : list_source_tensors(*original)) by_name.emplace(t.info->name, t);
    for (const auto& kv : by_name)
      if (model.find(kv.first) == nullptr) {
        report.problems.push_back("tensor '" + kv.first + "' of the original is missing from the container");
        report.file_mismatch = true;
      }
  }

  if (options.check_padding) {
    // Every byte outside the preamble, the blobs and the index must be zero.
    const container::preamble& p = f.contents().layout();
    std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps;  // [begin, end)
    std::uint64_t cursor = container::preamble_bytes;
    for (const auto& e : model.tensors()) {
      gaps.emplace_back(cursor, e.offset);
      cursor = std::max(cursor, e.offset + e.size);
    }
    gaps.emplace_back(cursor, p.index_offset);
    gaps.emplace_back(p.index_offset + p.index_bytes, p.file_bytes);
    std::vector<std::uint8_t> pad;
    for (const auto& g : gaps) {
      if (g.second <= g.first) continue;
      pad.resize(static_cast<std::size_t>(g.second - g.first));
      f.read_at(g.first, pad.data(), pad.size());
      if (std::any_of(pad.begin(), pad.end(), [](std::uint8_t b) { return b != 0; })) {
        report.problems.push_back("padding bytes [" + std::to_string(g.first) + ", " + std::to_string(g.second) + ") are not zero");
        report.file_code = status::corrupt_header;
      }
    }
  }

  std::vector<std::uint8_t> blob, decoded, reference;
  std::vector<float> dequantized;
  const auto& all = model.tensors();
  const std::uint64_t total = model.original_bytes();
  for (std::size_t i = 0; i < all.size(); ++i) {
    const container::entry& e = all[i];
    if (options.on_progress) options.on_progress({report.bytes, total, i, all.size(), e.name});
    tensor_check c;
    c.name = e.name;
    c.policy = policy_name(e.kind == container::storage::stored ? tensor_policy::raw() : tensor_policy::encoded(e.params));
    try {
      model.with_blob(e, blob, [&](const std::uint8_t* bytes) {  // checks the blob checksum
        const std::uint64_t n = e.original_bytes();
        decoded.resize(static_cast<std::size_t>(n));
        decode_blob(e, bytes, e.size, decoded.data(), decoded.size(), e.type, options.threads, model.path());
        const bool lossless = e.kind == container::storage::stored || e.params.quant == quant::kind::lossless;
        if (lossless) {
          c.exact = container::checksum(decoded.data(), n) == e.source_checksum;
          if (!c.exact) {
            c.code = status::corrupt_payload;
            c.problem = "decoded bytes do not match the checksum of the original recorded at compression";
          }
        }
        const auto it = original ? by_name.find(e.name) : by_name.end();
        if (original && it != by_name.end()) {
          const safetensors::tensor_info& info = *it->second.info;
          c.compared = true;
          if (info.type != e.type || info.shape != e.shape) {
            c.mismatch = true;
            c.problem = std::string("the original is ") + dtype_name(info.type) + " " + container::detail::shape_string(info.shape) +
                        ", the container has " + dtype_name(e.type) + " " + container::detail::shape_string(e.shape);
          } else {
            reference.resize(static_cast<std::size_t>(n));
            inputs[it->second.shard].read_at(it->second.file_offset, reference.data(), n);
            if (lossless) {
              const auto diff = std::mismatch(decoded.begin(), decoded.end(), reference.begin());
              c.exact = diff.first == decoded.end();
              if (!c.exact) {
                c.mismatch = true;
                c.problem = "differs from the original at byte " + std::to_string(diff.first - decoded.begin()) +
                            " (element " + std::to_string((diff.first - decoded.begin()) / std::ptrdiff_t(dtype_size(e.type))) + ")";
              }
            } else {
              c.exact = std::memcmp(decoded.data(), reference.data(), static_cast<std::size_t>(n)) == 0;
              dequantized.resize(static_cast<std::size_t>(e.elements()));
              decode_blob(e, bytes, e.size, dequantized.data(), dequantized.size() * 4, dtype::f32, options.threads, model.path());
              const encoded_tensor_view view = container::open_encoded(e, bytes, e.size, model.path());
              detail::compare_quantized(view, reference.data(), e.type, dequantized.data(), c);
              if (!(c.max_error_to_bound <= 1.0)) {
                c.mismatch = true;
                c.problem = "quantization error " + std::to_string(c.max_abs_error) + " exceeds its bound (" +
                            std::to_string(c.max_error_to_bound) + "x)";
              }
            }
          }
        }
      });
      f.release(e);
    } catch (const error& err) {
      c.code = err.code() == status::success ? status::corrupt_payload : err.code();
      c.problem = err.what();
    }
    report.bytes += e.original_bytes();
    report.tensors.push_back(std::move(c));
  }
  if (options.on_progress) options.on_progress({report.bytes, total, all.size(), all.size(), {}});
  report.seconds = std::chrono::duration<double>(clock::now() - start).count();
  return report;
}

}  // namespace host
}  // namespace tilecodec
