// tilecodec/format/container.hpp: the compressed-model container (spec: docs/format.md, "Container
// format, version 1"): many tensors in one file, each either an encoded tensor (TCET bytes, see
// encoded_tensor.hpp) or its plain bytes, with an index, per-tensor checksums and user metadata.
//
// Read me first. A container file is
//   [64 bytes]    preamble: magic "TCMC", version, data alignment, where the index is, its checksum,
//                 the file size, and a checksum of the preamble itself
//   [padding]     to the data alignment A (4096 by default: the page size and the O_DIRECT block)
//   [blobs]       each tensor's bytes, each starting at a multiple of A, in index order
//   [index]       at a multiple of A: a 64-byte header, one 160-byte record per tensor (name, dtype,
//                 shape, storage and policy parameters, offset, size, XXH3-64 of the blob and of the
//                 original tensor bytes), 32-byte metadata records, then a string table
//   [padding]     to a multiple of A: the file size is a multiple of A
// The index comes last so that a writer streams: it writes each tensor as soon as it is encoded,
// holds only the small records, and patches the preamble once at the end (container::writer).
// A reader needs the preamble and the index only (two reads); any tensor then loads alone.
//
// Checks (zstd's discipline: every size read from the file is checked before it is used as an
// offset or a count): the preamble's own checksum, its fields, the file size, the index checksum,
// every record (dtype, storage, policy ids and parameters, dims and their product, offsets
// aligned, increasing, inside the data region, sizes without 64-bit overflow), unique UTF-8 names
// and metadata keys. Blob checksums are checked when a blob is read (file::read, verify_blob), and
// an encoded blob's own header must agree with its record (open_encoded). Errors throw
// tilecodec::error with a status and a message naming the file, the tensor and the field.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../dtype.hpp"
#include "../policy/codec.hpp"
#include "../status.hpp"
#include "encoded_tensor.hpp"
#include "tile_layout.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define TILECODEC_CONTAINER_POSIX 1
#else
#include <fstream>
#define TILECODEC_CONTAINER_POSIX 0
#endif

// xxHash, header-only: XXH_INLINE_ALL makes every function static inline (no library to link).
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#define TILECODEC_CONTAINER_DEFINED_XXH_INLINE_ALL
#endif
#include <xxhash.h>
#ifdef TILECODEC_CONTAINER_DEFINED_XXH_INLINE_ALL
#undef XXH_INLINE_ALL
#undef TILECODEC_CONTAINER_DEFINED_XXH_INLINE_ALL
#endif

namespace tilecodec {
namespace container {

inline constexpr char magic[4] = {'T', 'C', 'M', 'C'};
inline constexpr char index_magic[4] = {'T', 'C', 'I', 'X'};
inline constexpr std::uint16_t format_version = 1;
inline constexpr std::uint64_t preamble_bytes = 64;
inline constexpr std::uint64_t index_header_bytes = 64;
inline constexpr std::uint64_t tensor_record_bytes = 160;
inline constexpr std::uint64_t metadata_record_bytes = 32;
// Blob alignment 2^k: 4096 by default (page size, O_DIRECT block size); at least 64 so every blob
// keeps the 16-byte alignment its encoded sections need, at most 2 MiB (a huge page).
inline constexpr unsigned default_alignment_log2 = 12;
inline constexpr unsigned min_alignment_log2 = 6;
inline constexpr unsigned max_alignment_log2 = 21;
// An index this large would describe millions of tensors: a larger length field is corrupt or
// hostile, and refusing it bounds what a reader allocates before checking the index checksum.
inline constexpr std::uint64_t max_index_bytes = std::uint64_t(1) << 30;
inline constexpr std::uint64_t max_name_bytes = std::uint64_t(1) << 16;

// How a tensor's bytes are kept. Values are stored in files: append only.
enum class storage : std::uint8_t {
  stored = 0,   // the tensor's bytes as they were (raw policy, or a dtype the codec cannot encode)
  encoded = 1,  // an encoded tensor (TCET, docs/format.md sections 1-6)
};

using metadata_map = std::map<std::string, std::string>;

// XXH3-64 (seed 0) of a byte range: the checksum of every blob and of every original tensor.
[[nodiscard]] inline std::uint64_t checksum(const void* data, std::uint64_t size) {
  return XXH3_64bits(data, static_cast<std::size_t>(size));
}

// One tensor as the index records it.
struct entry {
  std::string name;
  dtype type = dtype::f32;  // dtype of the original tensor; decoding reproduces it
  storage kind = storage::stored;
  std::vector<std::uint64_t> shape;  // [] is a scalar
  format_params params{};            // encoded only: as the encoded tensor's header records them
  std::uint64_t offset = 0;          // the blob: absolute file offset (a multiple of the alignment)
  std::uint64_t size = 0;            //           and byte count
  std::uint64_t checksum = 0;        // XXH3-64 of the blob
  std::uint64_t source_checksum = 0; // XXH3-64 of the original tensor bytes (= checksum when stored)

  // Element count (1 for a scalar); the index guarantees it fits (<= 2^56 when encoded).
  [[nodiscard]] std::uint64_t elements() const {
    std::uint64_t n = 1;
    for (std::uint64_t d : shape) n *= d;
    return n;
  }
  // Bytes of the tensor in its own dtype.
  [[nodiscard]] std::uint64_t original_bytes() const { return elements() * dtype_size(type); }
};

// The preamble's fields.
struct preamble {
  unsigned alignment_log2 = default_alignment_log2;
  std::uint64_t index_offset = 0;
  std::uint64_t index_bytes = 0;
  std::uint64_t index_checksum = 0;
  std::uint64_t file_bytes = 0;
  [[nodiscard]] std::uint64_t alignment() const { return std::uint64_t(1) << alignment_log2; }
  // Where the first blob may start.
  [[nodiscard]] std::uint64_t data_offset() const { return (preamble_bytes + alignment() - 1) / alignment() * alignment(); }
};

struct parse_options {
  // Off only for fuzzing and tests that reach the checks behind the checksums.
  bool verify_checksums = true;
};

namespace detail {

using ::tilecodec::detail::get_u16;
using ::tilecodec::detail::get_u32;
using ::tilecodec::detail::get_u64;
using ::tilecodec::detail::put_u16;
using ::tilecodec::detail::put_u32;
using ::tilecodec::detail::put_u64;

[[noreturn]] inline void fail(status code, std::string_view source, const std::string& what) {
  throw error(code, std::string(source) + ": " + what);
}

inline std::string in_quotes(std::string_view text) { return "'" + std::string(text) + "'"; }
inline std::string tensor_field(std::string_view name, const char* field) {
  return "tensor " + in_quotes(name) + ", field '" + field + "'";
}

[[nodiscard]] inline bool checked_add(std::uint64_t a, std::uint64_t b, std::uint64_t& sum) {
  if (b > std::numeric_limits<std::uint64_t>::max() - a) return false;
  sum = a + b;
  return true;
}
[[nodiscard]] inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& product) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  product = a * b;
  return true;
}
// Element count of a shape without overflow (a 0 dim makes it 0 whatever the others are).
[[nodiscard]] inline bool checked_elements(const std::vector<std::uint64_t>& shape, std::uint64_t& count) {
  if (std::find(shape.begin(), shape.end(), std::uint64_t{0}) != shape.end()) {
    count = 0;
    return true;
  }
  count = 1;
  for (std::uint64_t d : shape)
    if (!checked_mul(count, d, count)) return false;
  return true;
}

inline std::string shape_string(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF (names and metadata
// become JSON strings when a container is exported back to safetensors).
[[nodiscard]] inline bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const unsigned c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    unsigned len, cp;
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07;
    else return false;
    if (n - i < len) return false;
    for (unsigned k = 1; k < len; ++k) {
      const unsigned b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

// ---- files ------------------------------------------------------------------------------------

inline std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// A file opened for reading at offsets; read_at is safe to call from several threads.
class input_file {
 public:
  input_file() = default;
  explicit input_file(const std::string& path) : path_(path) {
#if TILECODEC_CONTAINER_POSIX
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail(status::io_error, path, errno_text("cannot open"));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      const std::string why = errno_text("cannot stat");
      close();
      fail(status::io_error, path, why);
    }
    if (!S_ISREG(st.st_mode)) {
      close();
      fail(status::io_error, path, "not a regular file");
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
#else
    in_.open(path, std::ios::binary);
    if (!in_) fail(status::io_error, path, "cannot open");
    in_.seekg(0, std::ios::end);
    const std::streamoff n = in_.tellg();
    if (n < 0) fail(status::io_error, path, "cannot determine the file size");
    size_ = static_cast<std::uint64_t>(n);
#endif
  }
  input_file(const input_file&) = delete;
  input_file& operator=(const input_file&) = delete;
  input_file(input_file&& o) noexcept { swap(o); }
  input_file& operator=(input_file&& o) noexcept {
    if (this != &o) {
      close();
      swap(o);
    }
    return *this;
  }
  ~input_file() { close(); }

  [[nodiscard]] std::uint64_t size() const { return size_; }
  [[nodiscard]] const std::string& path() const { return path_; }
#if TILECODEC_CONTAINER_POSIX
  [[nodiscard]] int descriptor() const { return fd_; }
#endif

  // Reads exactly `bytes` bytes at `offset`; a short file is status::truncated.
  void read_at(std::uint64_t offset, void* dst, std::uint64_t bytes) const {
    std::uint64_t end = 0;
    if (!checked_add(offset, bytes, end) || end > size_)
      fail(status::truncated, path_,
           "read of " + std::to_string(bytes) + " bytes at offset " + std::to_string(offset) + " runs past the end of the file (" +
               std::to_string(size_) + " bytes)");
#if TILECODEC_CONTAINER_POSIX
    auto* out = static_cast<char*>(dst);
    while (bytes > 0) {
      const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(bytes, std::uint64_t(1) << 30));
      const ssize_t got = ::pread(fd_, out, chunk, static_cast<off_t>(offset));
      if (got < 0) {
        if (errno == EINTR) continue;
        fail(status::io_error, path_, errno_text("read failed"));
      }
      if (got == 0) fail(status::truncated, path_, "file ended early (changed while being read?)");
      out += got;
      offset += static_cast<std::uint64_t>(got);
      bytes -= static_cast<std::uint64_t>(got);
    }
#else
    std::lock_guard<std::mutex> lock(mutex_);
    in_.clear();
    in_.seekg(static_cast<std::streamoff>(offset));
    if (bytes && !in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(bytes)))
      fail(status::io_error, path_, "read failed");
#endif
  }

 private:
  void close() noexcept {
#if TILECODEC_CONTAINER_POSIX
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
#endif
  }
  void swap(input_file& o) noexcept {
    std::swap(path_, o.path_);
    std::swap(size_, o.size_);
#if TILECODEC_CONTAINER_POSIX
    std::swap(fd_, o.fd_);
#else
    std::swap(in_, o.in_);
#endif
  }

  std::string path_;
  std::uint64_t size_ = 0;
#if TILECODEC_CONTAINER_POSIX
  int fd_ = -1;
#else
  mutable std::ifstream in_;
  mutable std::mutex mutex_;
#endif
};

// A new file written under a temporary name next to its final path and renamed into place by
// commit(); destroyed before commit(), it removes the temporary file. So a crash or an error never
// leaves a partial file under the final name.
class output_file {
 public:
  explicit output_file(std::string path) : path_(std::move(path)) {
    std::random_device entropy;
    for (int attempt = 0; attempt < 16; ++attempt) {
      char suffix[32];
      std::snprintf(suffix, sizeof suffix, ".partial-%08x", static_cast<unsigned>(entropy()));
      temp_ = path_ + suffix;
#if TILECODEC_CONTAINER_POSIX
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd_ >= 0) return;
      if (errno != EEXIST) break;
#else
      out_ = std::fopen(temp_.c_str(), "wbx");
      if (out_ != nullptr) return;
#endif
    }
    fail(status::io_error, path_, errno_text("cannot create a temporary file next to it"));
  }
  output_file(const output_file&) = delete;
  output_file& operator=(const output_file&) = delete;
  ~output_file() { abandon(); }

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] const std::string& temp_path() const { return temp_; }
  [[nodiscard]] std::uint64_t position() const { return position_; }

  void write(const void* data, std::uint64_t bytes) {
    const char* p = static_cast<const char*>(data);
#if TILECODEC_CONTAINER_POSIX
    while (bytes > 0) {
      const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(bytes, std::uint64_t(1) << 30));
      const ssize_t put = ::write(fd_, p, chunk);
      if (put < 0) {
        if (errno == EINTR) continue;
        fail(status::io_error, temp_, errno_text("write failed"));
      }
      p += put;
      position_ += static_cast<std::uint64_t>(put);
      bytes -= static_cast<std::uint64_t>(put);
    }
#else
    if (bytes && std::fwrite(p, 1, static_cast<std::size_t>(bytes), out_) != bytes)
      fail(status::io_error, temp_, errno_text("write failed"));
    position_ += bytes;
#endif
  }
  void write_zeros(std::uint64_t bytes) {
    static const char zeros[4096] = {};
    while (bytes > 0) {
      const std::uint64_t n = std::min<std::uint64_t>(bytes, sizeof zeros);
      write(zeros, n);
      bytes -= n;
    }
  }
  // Overwrites bytes already written (the preamble, at the end).
  void write_at(std::uint64_t offset, const void* data, std::uint64_t bytes) {
#if TILECODEC_CONTAINER_POSIX
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t put = ::pwrite(fd_, p, static_cast<std::size_t>(bytes), static_cast<off_t>(offset));
      if (put < 0) {
        if (errno == EINTR) continue;
        fail(status::io_error, temp_, errno_text("write failed"));
      }
      p += put;
      offset += static_cast<std::uint64_t>(put);
      bytes -= static_cast<std::uint64_t>(put);
    }
#else
    if (std::fseek(out_, static_cast<long>(offset), SEEK_SET) != 0 ||
        std::fwrite(data, 1, static_cast<std::size_t>(bytes), out_) != bytes || std::fseek(out_, 0, SEEK_END) != 0)
      fail(status::io_error, temp_, "write failed");
#endif
  }
  // Flushes (and, when sync is set, fsyncs) the data, then renames the file into place.
  void commit(bool sync) {
    close_file(sync);
    publish();
  }
  // The two halves of commit(), for outputs of several files that should appear together: close
  // every file first, then publish each (the temporary files stay removable until published).
  void close_file(bool sync) {
    if (closed_) return;
#if TILECODEC_CONTAINER_POSIX
    // Data on disk before the name: after a power loss the final name holds the old file or the new one.
    if (sync && ::fsync(fd_) != 0) fail(status::io_error, temp_, errno_text("fsync failed"));
    const int result = ::close(fd_);
    fd_ = -1;
    if (result != 0) fail(status::io_error, temp_, errno_text("close failed"));
#else
    (void)sync;
    const int result = std::fclose(out_);
    out_ = nullptr;
    if (result != 0) fail(status::io_error, temp_, "close failed");
#endif
    closed_ = true;
  }
  void publish() {
    if (!closed_) fail(status::invalid_argument, temp_, "published before it was closed");
    if (std::rename(temp_.c_str(), path_.c_str()) != 0)
      fail(status::io_error, path_, errno_text("cannot rename the temporary file into place"));
    committed_ = true;
  }
  // Closes and removes the temporary file (nothing once committed).
  void abandon() noexcept {
    if (committed_) return;
#if TILECODEC_CONTAINER_POSIX
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
#else
    if (out_ != nullptr) std::fclose(out_);
    out_ = nullptr;
#endif
    if (!temp_.empty()) std::remove(temp_.c_str());
    committed_ = true;
  }

 private:
  std::string path_, temp_;
  std::uint64_t position_ = 0;
  bool closed_ = false;
  bool committed_ = false;
#if TILECODEC_CONTAINER_POSIX
  int fd_ = -1;
#else
  std::FILE* out_ = nullptr;
#endif
};

}  // namespace detail

// ---- the parsed index ----------------------------------------------------------------------------

// A container's preamble, tensor index and metadata, validated. Tensors are listed in file order.
class catalog {
 public:
  catalog() = default;

  [[nodiscard]] const std::string& source() const { return source_; }
  [[nodiscard]] const preamble& layout() const { return preamble_; }
  [[nodiscard]] const std::vector<entry>& tensors() const { return tensors_; }
  [[nodiscard]] const metadata_map& metadata() const { return metadata_; }
  [[nodiscard]] const entry* find(std::string_view name) const {
    const auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &tensors_[it->second];
  }
  // Throws status::invalid_argument when there is no such tensor.
  [[nodiscard]] const entry& at(std::string_view name) const {
    const entry* e = find(name);
    if (e == nullptr) detail::fail(status::invalid_argument, source_, "no tensor named " + detail::in_quotes(name));
    return *e;
  }

 private:
  friend catalog parse_index(const std::uint8_t*, std::uint64_t, const preamble&, std::string, const parse_options&);
  std::string source_;
  preamble preamble_{};
  std::vector<entry> tensors_;
  metadata_map metadata_;
  std::map<std::string, std::size_t, std::less<>> by_name_;
};

// Parses and checks the 64-byte preamble. `available` bytes are at `bytes` (at least 64 unless the
// file is shorter); file_bytes is the actual size of the file or image.
[[nodiscard]] inline preamble parse_preamble(const std::uint8_t* bytes, std::uint64_t available, std::uint64_t file_bytes,
                                             const std::string& source, const parse_options& options = {}) {
  using detail::fail;
  if (file_bytes < preamble_bytes || available < preamble_bytes)
    fail(status::truncated, source,
         "file is " + std::to_string(file_bytes) + " bytes, shorter than the 64-byte container preamble");
  if (std::memcmp(bytes, magic, 4) != 0) fail(status::corrupt_header, source, "preamble field 'magic': not a tilecodec container (expected \"TCMC\")");
  const std::uint16_t version = detail::get_u16(bytes + 4);
  if (version != format_version)
    fail(status::unsupported, source,
         "preamble field 'version': container format version " + std::to_string(version) + " (this build reads version " +
             std::to_string(format_version) + ")");
  if (detail::get_u16(bytes + 6) != preamble_bytes) fail(status::corrupt_header, source, "preamble field 'preamble_bytes' is not 64");
  if (options.verify_checksums && detail::get_u64(bytes + 56) != checksum(bytes, 56))
    fail(status::checksum_mismatch, source, "preamble field 'preamble_checksum' does not match the preamble bytes");
  preamble p;
  p.alignment_log2 = bytes[8];
  if (p.alignment_log2 < min_alignment_log2 || p.alignment_log2 > max_alignment_log2)
    fail(status::corrupt_header, source,
         "preamble field 'alignment_log2': " + std::to_string(p.alignment_log2) + " is outside " +
             std::to_string(min_alignment_log2) + ".." + std::to_string(max_alignment_log2));
  for (int i = 9; i < 16; ++i)
    if (bytes[i] != 0) fail(status::corrupt_header, source, "preamble reserved bytes 9..15 are not zero");
  if (detail::get_u64(bytes + 48) != 0) fail(status::corrupt_header, source, "preamble reserved bytes 48..55 are not zero");
  p.index_offset = detail::get_u64(bytes + 16);
  p.index_bytes = detail::get_u64(bytes + 24);
  p.index_checksum = detail::get_u64(bytes + 32);
  p.file_bytes = detail::get_u64(bytes + 40);
  if (file_bytes < p.file_bytes)
    fail(status::truncated, source,
         "file is " + std::to_string(file_bytes) + " bytes but preamble field 'file_bytes' says " + std::to_string(p.file_bytes) +
             " (truncated)");
  if (file_bytes > p.file_bytes)
    fail(status::corrupt_header, source,
         "file is " + std::to_string(file_bytes) + " bytes but preamble field 'file_bytes' says " + std::to_string(p.file_bytes) +
             " (trailing bytes)");
  const std::uint64_t a = p.alignment();
  if (p.index_offset % a != 0 || p.index_offset < p.data_offset())
    fail(status::corrupt_header, source,
         "preamble field 'index_offset': " + std::to_string(p.index_offset) + " is not a multiple of the alignment " +
             std::to_string(a) + " at or after the first data offset " + std::to_string(p.data_offset()));
  if (p.index_bytes < index_header_bytes || p.index_bytes > max_index_bytes)
    fail(status::corrupt_header, source,
         "preamble field 'index_bytes': " + std::to_string(p.index_bytes) + " is outside 64.." + std::to_string(max_index_bytes));
  std::uint64_t index_end = 0;
  if (!detail::checked_add(p.index_offset, p.index_bytes, index_end) || index_end > p.file_bytes)
    fail(status::corrupt_header, source,
         "preamble fields 'index_offset' + 'index_bytes' (" + std::to_string(p.index_offset) + " + " +
             std::to_string(p.index_bytes) + ") point past the end of the file (" + std::to_string(p.file_bytes) + " bytes)");
  if (p.file_bytes != (index_end + a - 1) / a * a)
    fail(status::corrupt_header, source,
         "preamble field 'file_bytes': " + std::to_string(p.file_bytes) + " is not the index end " + std::to_string(index_end) +
             " rounded up to the alignment " + std::to_string(a));
  return p;
}

// Parses and checks the index (size bytes, as the preamble located them).
[[nodiscard]] inline catalog parse_index(const std::uint8_t* bytes, std::uint64_t size, const preamble& p, std::string source,
                                       const parse_options& options = {}) {
  using detail::fail;
  using detail::in_quotes;
  using detail::tensor_field;
  catalog out;
  out.source_ = std::move(source);
  out.preamble_ = p;
  const std::string& src = out.source_;
  if (size != p.index_bytes) fail(status::truncated, src, "index is " + std::to_string(size) + " bytes, the preamble says " + std::to_string(p.index_bytes));
  if (options.verify_checksums && checksum(bytes, size) != p.index_checksum)
    fail(status::checksum_mismatch, src, "index: checksum (preamble field 'index_checksum') does not match the index bytes");
  if (std::memcmp(bytes, index_magic, 4) != 0) fail(status::corrupt_header, src, "index field 'magic': expected \"TCIX\"");
  if (detail::get_u32(bytes + 4) != tensor_record_bytes) fail(status::corrupt_header, src, "index field 'record_bytes' is not 160");
  const std::uint64_t n = detail::get_u64(bytes + 8), m = detail::get_u64(bytes + 16), strings = detail::get_u64(bytes + 24);
  for (std::uint64_t i = 32; i < index_header_bytes; ++i)
    if (bytes[i] != 0) fail(status::corrupt_header, src, "index reserved bytes 32..63 are not zero");
  // 64 + n*160 + m*32 + strings == size, without overflow.
  std::uint64_t records = 0, meta = 0, total = 0;
  if (!detail::checked_mul(n, tensor_record_bytes, records) || !detail::checked_mul(m, metadata_record_bytes, meta) ||
      !detail::checked_add(index_header_bytes, records, total) || !detail::checked_add(total, meta, total) ||
      !detail::checked_add(total, strings, total) || total != size)
    fail(status::corrupt_header, src,
         "index fields 'tensor_count' (" + std::to_string(n) + "), 'metadata_count' (" + std::to_string(m) + ") and 'strings_bytes' (" +
             std::to_string(strings) + ") do not add up to the index size " + std::to_string(size));
  const std::uint8_t* string_table = bytes + index_header_bytes + records + meta;
  auto string_at = [&](const std::uint8_t* field, const std::string& what) {
    const std::uint64_t off = detail::get_u64(field), len = detail::get_u64(field + 8);
    std::uint64_t end = 0;
    if (!detail::checked_add(off, len, end) || end > strings)
      fail(status::corrupt_header, src, what + ": string [" + std::to_string(off) + ", +" + std::to_string(len) + ") lies outside the string table (" + std::to_string(strings) + " bytes)");
    std::string s(reinterpret_cast<const char*>(string_table + off), static_cast<std::size_t>(len));
    if (!detail::valid_utf8(s)) fail(status::corrupt_header, src, what + ": not valid UTF-8");
    return s;
  };

  out.tensors_.reserve(static_cast<std::size_t>(n));
  const std::uint64_t a = p.alignment();
  std::uint64_t cursor = p.data_offset();
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint8_t* r = bytes + index_header_bytes + i * tensor_record_bytes;
    entry e;
    const std::string which = "tensor record " + std::to_string(i);
    if (detail::get_u64(r + 8) > max_name_bytes) fail(status::corrupt_header, src, which + ", field 'name_bytes': longer than 65536 bytes");
    e.name = string_at(r, which + ", field 'name'");
    if (out.by_name_.count(e.name) != 0) fail(status::corrupt_header, src, "duplicate tensor name " + in_quotes(e.name) + " (record " + std::to_string(i) + ")");
    if (r[16] >= dtype_count) fail(status::unsupported, src, tensor_field(e.name, "dtype") + ": unknown dtype id " + std::to_string(r[16]));
    e.type = static_cast<dtype>(r[16]);
    if (r[17] > 1) fail(status::unsupported, src, tensor_field(e.name, "storage") + ": unknown storage id " + std::to_string(r[17]));
    e.kind = static_cast<storage>(r[17]);
    const unsigned rank = r[18];
    if (rank > unsigned(max_rank)) fail(status::corrupt_header, src, tensor_field(e.name, "rank") + ": " + std::to_string(rank) + " is above 8");
    for (unsigned d = 0; d < unsigned(max_rank); ++d) {
      const std::uint64_t v = detail::get_u64(r + 40 + 8 * d);
      if (d < rank) e.shape.push_back(v);
      else if (v != 0) fail(status::corrupt_header, src, tensor_field(e.name, "dims") + ": dims beyond the rank are not zero");
    }
    if (detail::get_u32(r + 36) != 0) fail(status::corrupt_header, src, tensor_field(e.name, "reserved") + ": bytes 36..39 are not zero");
    for (std::uint64_t k = 136; k < tensor_record_bytes; ++k)
      if (r[k] != 0) fail(status::corrupt_header, src, tensor_field(e.name, "reserved") + ": bytes 136..159 are not zero");
    e.offset = detail::get_u64(r + 104);
    e.size = detail::get_u64(r + 112);
    e.checksum = detail::get_u64(r + 120);
    e.source_checksum = detail::get_u64(r + 128);

    std::uint64_t elements = 0, original = 0;
    if (!detail::checked_elements(e.shape, elements) || !detail::checked_mul(elements, dtype_size(e.type), original))
      fail(status::overflow, src, tensor_field(e.name, "dims") + ": shape " + detail::shape_string(e.shape) + " of " + dtype_name(e.type) + " overflows 64 bits");
    if (e.kind == storage::stored) {
      for (int k = 19; k < 36; ++k)
        if (r[k] != 0) fail(status::corrupt_header, src, tensor_field(e.name, "policy") + ": policy fields of a stored tensor are not zero");
      if (e.size != original)
        fail(status::corrupt_header, src,
             tensor_field(e.name, "data_bytes") + ": " + std::to_string(e.size) + " bytes stored but shape " + detail::shape_string(e.shape) + " of " +
                 dtype_name(e.type) + " needs " + std::to_string(original));
      if (e.checksum != e.source_checksum)
        fail(status::corrupt_header, src, tensor_field(e.name, "source_checksum") + ": differs from the data checksum of a stored tensor");
    } else {
      if (e.type != dtype::f32 && e.type != dtype::f16 && e.type != dtype::bf16)
        fail(status::corrupt_header, src, tensor_field(e.name, "dtype") + ": an encoded tensor must be F32, F16 or BF16, not " + dtype_name(e.type));
      if (elements > max_tensor_elements) fail(status::overflow, src, tensor_field(e.name, "dims") + ": more than 2^56 elements");
      e.params.quant = static_cast<quant::kind>(r[19]);
      e.params.coder = static_cast<coder::kind>(r[20]);
      e.params.order = static_cast<symbol_order>(r[21]);
      e.params.prob_bits = r[22];
      e.params.lanes = r[23];
      e.params.tile_rows = detail::get_u32(r + 24);
      e.params.tile_cols = detail::get_u32(r + 28);
      e.params.group_size = detail::get_u32(r + 32);
      format_params check = e.params;
      if (check.coder == coder::kind::raw) {
        if (check.prob_bits != 0 || check.lanes != 1)
          fail(status::corrupt_header, src, tensor_field(e.name, "policy") + ": raw coder with rANS parameters");
        check.prob_bits = 12, check.lanes = 32;  // not used by the raw coder
      }
      std::string why;
      if (validate_params(check, &why) != status::success) fail(status::unsupported, src, tensor_field(e.name, "policy") + ": " + why);
      if (e.size < encoded_header_bytes)
        fail(status::corrupt_header, src, tensor_field(e.name, "data_bytes") + ": " + std::to_string(e.size) + " bytes, smaller than an encoded-tensor header");
    }
    std::uint64_t end = 0;
    if (e.offset % a != 0 || e.offset < cursor)
      fail(status::corrupt_header, src,
           tensor_field(e.name, "data_offset") + ": " + std::to_string(e.offset) +
               (e.offset % a != 0 ? " is not a multiple of the alignment " + std::to_string(a)
                                  : " overlaps the data before it (which ends at " + std::to_string(cursor) + ")"));
    if (!detail::checked_add(e.offset, e.size, end))
      fail(status::overflow, src, tensor_field(e.name, "data_bytes") + ": offset + size overflows 64 bits");
    if (end > p.index_offset)
      fail(status::corrupt_header, src,
           tensor_field(e.name, "data_bytes") + ": data [" + std::to_string(e.offset) + ", " + std::to_string(end) +
               ") runs into the index at " + std::to_string(p.index_offset));
    cursor = end;
    out.by_name_.emplace(e.name, out.tensors_.size());
    out.tensors_.push_back(std::move(e));
  }

  for (std::uint64_t i = 0; i < m; ++i) {
    const std::uint8_t* r = bytes + index_header_bytes + records + i * metadata_record_bytes;
    const std::string which = "metadata record " + std::to_string(i);
    std::string key = string_at(r, which + ", field 'key'");
    std::string value = string_at(r + 16, which + ", field 'value'");
    if (out.metadata_.count(key) != 0) fail(status::corrupt_header, src, "duplicate metadata key " + in_quotes(key));
    out.metadata_.emplace(std::move(key), std::move(value));
  }
  return out;
}

// Parses a whole container image in memory (a received buffer, a fuzzer input). The blobs are
// not checked here: verify_blob() / open_encoded() check one when it is used.
[[nodiscard]] inline catalog parse(const std::uint8_t* image, std::uint64_t size, std::string source, const parse_options& options = {}) {
  if (image == nullptr && size != 0) detail::fail(status::invalid_argument, source, "null buffer");
  const preamble p = parse_preamble(image, size, size, source, options);
  return parse_index(image + p.index_offset, p.index_bytes, p, std::move(source), options);
}

// Checks a blob's checksum against its record.
inline void verify_blob(const entry& e, const void* blob, std::uint64_t size, const std::string& source) {
  if (size != e.size)
    detail::fail(status::invalid_argument, source, "tensor " + detail::in_quotes(e.name) + ": blob of " + std::to_string(size) + " bytes, the index says " + std::to_string(e.size));
  if (checksum(blob, size) != e.checksum)
    detail::fail(status::checksum_mismatch, source, detail::tensor_field(e.name, "checksum") + ": the tensor's bytes do not match their checksum");
}

// Parses an encoded blob and checks that its header agrees with the record (dtype, shape, policy).
[[nodiscard]] inline encoded_tensor_view open_encoded(const entry& e, const std::uint8_t* blob, std::uint64_t size, const std::string& source) {
  using detail::fail;
  if (e.kind != storage::encoded) fail(status::invalid_argument, source, "tensor " + detail::in_quotes(e.name) + " is stored, not encoded");
  encoded_tensor_view view;
  std::string why;
  const status s = encoded_tensor_view::parse(blob, size, view, &why);
  if (s != status::success) fail(s, source, "tensor " + detail::in_quotes(e.name) + ", encoded header field '" + why + "'");
  const tensor_header& h = view.header();
  if (h.source != e.type) fail(status::corrupt_header, source, detail::tensor_field(e.name, "dtype") + ": the encoded header says " + dtype_name(h.source));
  bool same_shape = h.rank == int(e.shape.size());
  for (std::size_t d = 0; same_shape && d < e.shape.size(); ++d) same_shape = h.dims[d] == e.shape[d];
  if (!same_shape) fail(status::corrupt_header, source, detail::tensor_field(e.name, "dims") + ": the encoded header has another shape");
  if (h.params != e.params) fail(status::corrupt_header, source, detail::tensor_field(e.name, "policy") + ": the encoded header has other policy parameters");
  return view;
}

// ---- reading a file ------------------------------------------------------------------------------

// Drops whole pages inside [p, p + bytes) of a read-only file mapping from this process's memory;
// the next access reads them again from the page cache. Keeps the resident set of a pass over a
// mapped model bounded by what it holds at once.
inline void release_mapped(const void* p, std::uint64_t bytes) {
#if TILECODEC_CONTAINER_POSIX
  static const std::uintptr_t page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE) > 0 ? ::sysconf(_SC_PAGESIZE) : 4096);
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p), b = a + static_cast<std::uintptr_t>(bytes);
  const std::uintptr_t first = (a + page - 1) / page * page, last = b / page * page;
  if (last > first) (void)::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
#else
  (void)p;
  (void)bytes;
#endif
}

// A container on disk: opening reads and checks the preamble and the index only (two reads);
// each tensor's bytes are then read on demand, from any thread. Where POSIX offers it the file is
// also mapped read-only, so blob() hands out tensors without copying them (a file that another
// process truncates meanwhile can then raise SIGBUS, as with any mapping).
class file {
 public:
  explicit file(const std::string& path, const parse_options& options = {}) : in_(path) {
    std::uint8_t head[preamble_bytes] = {};
    const std::uint64_t got = std::min<std::uint64_t>(in_.size(), preamble_bytes);
    in_.read_at(0, head, got);
    const preamble p = parse_preamble(head, got, in_.size(), path, options);
    std::vector<std::uint8_t> idx(static_cast<std::size_t>(p.index_bytes));
    in_.read_at(p.index_offset, idx.data(), p.index_bytes);
    index_ = parse_index(idx.data(), idx.size(), p, path, options);
#if TILECODEC_CONTAINER_POSIX
    if (in_.size() <= std::numeric_limits<std::size_t>::max()) {
      void* m = ::mmap(nullptr, static_cast<std::size_t>(in_.size()), PROT_READ, MAP_SHARED, in_.descriptor(), 0);
      if (m != MAP_FAILED) map_ = static_cast<const std::uint8_t*>(m);
    }
#endif
  }
  file(const file&) = delete;
  file& operator=(const file&) = delete;
  file(file&& o) noexcept : in_(std::move(o.in_)), index_(std::move(o.index_)), map_(o.map_) { o.map_ = nullptr; }
  file& operator=(file&& o) noexcept {
    if (this != &o) {
      unmap();
      in_ = std::move(o.in_);
      index_ = std::move(o.index_);
      map_ = o.map_;
      o.map_ = nullptr;
    }
    return *this;
  }
  ~file() { unmap(); }

  [[nodiscard]] const std::string& path() const { return in_.path(); }
  [[nodiscard]] std::uint64_t size() const { return in_.size(); }
  [[nodiscard]] const catalog& contents() const { return index_; }
  [[nodiscard]] const std::vector<entry>& tensors() const { return index_.tensors(); }
  [[nodiscard]] const entry* find(std::string_view name) const { return index_.find(name); }
  [[nodiscard]] const entry& at(std::string_view name) const { return index_.at(name); }
  [[nodiscard]] const metadata_map& metadata() const { return index_.metadata(); }

  // Reads a tensor's blob (e.size bytes) into dst, e.g. a pinned buffer bound for the GPU, and
  // checks its checksum unless told not to.
  void read(const entry& e, void* dst, std::uint64_t dst_bytes, bool verify = true) const {
    if (dst_bytes < e.size || (dst == nullptr && e.size != 0))
      detail::fail(status::invalid_argument, path(), "tensor " + detail::in_quotes(e.name) + ": destination smaller than its " + std::to_string(e.size) + " bytes");
    if (map_ != nullptr) {
      if (e.size) std::memcpy(dst, map_ + e.offset, static_cast<std::size_t>(e.size));
    } else {
      in_.read_at(e.offset, dst, e.size);
    }
    if (verify) verify_blob(e, dst, e.size, path());
  }
  [[nodiscard]] std::vector<std::uint8_t> read(const entry& e, bool verify = true) const {
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(e.size));
    read(e, bytes.data(), bytes.size(), verify);
    return bytes;
  }

  // Is the file mapped (blob() available)?
  [[nodiscard]] bool mapped() const { return map_ != nullptr; }
  // A tensor's blob inside the mapping, its checksum checked unless told not to. No copy: valid
  // while this file lives. Throws status::unsupported when the file is not mapped.
  [[nodiscard]] const std::uint8_t* blob(const entry& e, bool verify = true) const {
    if (map_ == nullptr) detail::fail(status::unsupported, path(), "the file is not memory-mapped: use read()");
    if (verify) verify_blob(e, map_ + e.offset, e.size, path());
    return map_ + e.offset;
  }
  // Done with a tensor's blob: its pages leave this process's memory (a no-op when not mapped).
  void release(const entry& e) const {
    if (map_ != nullptr) release_mapped(map_ + e.offset, e.size);
  }

  // Any byte range of the file (padding checks, tools).
  void read_at(std::uint64_t offset, void* dst, std::uint64_t bytes) const { in_.read_at(offset, dst, bytes); }
#if TILECODEC_CONTAINER_POSIX
  [[nodiscard]] int descriptor() const { return in_.descriptor(); }
#endif

 private:
  void unmap() noexcept {
#if TILECODEC_CONTAINER_POSIX
    if (map_ != nullptr) ::munmap(const_cast<std::uint8_t*>(map_), static_cast<std::size_t>(in_.size()));
#endif
    map_ = nullptr;
  }

  detail::input_file in_;
  catalog index_;
  const std::uint8_t* map_ = nullptr;
};

// ---- writing a file ------------------------------------------------------------------------------

struct writer_options {
  unsigned alignment_log2 = default_alignment_log2;
  bool sync = true;  // fsync before the rename
};

// Streams a container to disk: each add() writes the tensor's bytes at once, so memory holds only
// the records; finish() writes the index and the preamble and renames the file into place.
// Destroyed without finish() (an error, an interruption), it leaves nothing under the final name.
//   container::writer out("model.tcm");
//   out.set_metadata("format", "pt");
//   out.add_encoded("w", enc.view(), container::checksum(w.data(), w_bytes));
//   out.add_stored("ids", dtype::i64, {1, 512}, ids, 4096);
//   out.finish();
class writer {
 public:
  explicit writer(const std::string& path, const writer_options& options = {}) : out_(path), options_(options) {
    if (options.alignment_log2 < min_alignment_log2 || options.alignment_log2 > max_alignment_log2)
      detail::fail(status::invalid_argument, path, "alignment must be 2^6 .. 2^21 bytes");
    preamble_.alignment_log2 = options.alignment_log2;
    out_.write_zeros(preamble_.data_offset());  // the preamble is written last, in place
  }

  [[nodiscard]] const std::string& path() const { return out_.path(); }
  [[nodiscard]] std::uint64_t bytes_written() const { return out_.position(); }
  [[nodiscard]] const std::vector<entry>& tensors() const { return entries_; }

  writer& set_metadata(std::string key, std::string value) {
    if (!detail::valid_utf8(key) || !detail::valid_utf8(value))
      detail::fail(status::invalid_argument, path(), "metadata key " + detail::in_quotes(key) + ": not valid UTF-8");
    metadata_[std::move(key)] = std::move(value);
    return *this;
  }

  // Adds a tensor's plain bytes (any dtype): size must be the element count times the dtype size.
  const entry& add_stored(std::string name, dtype type, std::vector<std::uint64_t> shape, const void* data, std::uint64_t size) {
    entry e;
    e.name = std::move(name);
    e.type = type;
    e.kind = storage::stored;
    e.shape = std::move(shape);
    check_new(e);
    std::uint64_t elements = 0, bytes = 0;
    if (!detail::checked_elements(e.shape, elements) || !detail::checked_mul(elements, dtype_size(type), bytes))
      detail::fail(status::overflow, path(), "tensor " + detail::in_quotes(e.name) + ": shape " + detail::shape_string(e.shape) + " overflows 64 bits");
    if (bytes != size)
      detail::fail(status::invalid_argument, path(),
                   "tensor " + detail::in_quotes(e.name) + ": " + std::to_string(size) + " bytes given but shape " +
                       detail::shape_string(e.shape) + " of " + dtype_name(type) + " needs " + std::to_string(bytes));
    if (data == nullptr && size != 0) detail::fail(status::invalid_argument, path(), "tensor " + detail::in_quotes(e.name) + ": null data");
    e.size = size;
    e.checksum = e.source_checksum = checksum(data, size);
    return append(std::move(e), data);
  }

  // Adds an encoded tensor (a parsed view: its header gives dtype, shape and policy).
  // source_checksum: checksum() of the original tensor bytes, so a reader can prove a lossless
  // decode bit-exact without the original file.
  const entry& add_encoded(std::string name, const encoded_tensor_view& view, std::uint64_t source_checksum) {
    entry e;
    e.name = std::move(name);
    const tensor_header& h = view.header();
    if (view.data() == nullptr) detail::fail(status::invalid_argument, path(), "tensor " + detail::in_quotes(e.name) + ": empty encoded tensor view");
    e.type = h.source;
    e.kind = storage::encoded;
    e.shape.assign(h.dims, h.dims + h.rank);
    e.params = h.params;
    e.size = view.size();
    check_new(e);
    e.checksum = checksum(view.data(), view.size());
    e.source_checksum = source_checksum;
    return append(std::move(e), view.data());
  }

  // Writes the index and the preamble, then renames the file into place.
  void finish() {
    if (finished_) detail::fail(status::invalid_argument, path(), "container already finished");
    const std::uint64_t a = preamble_.alignment();
    pad_to(a);
    preamble_.index_offset = out_.position();
    const std::vector<std::uint8_t> idx = serialize_index();
    preamble_.index_bytes = idx.size();
    preamble_.index_checksum = checksum(idx.data(), idx.size());
    out_.write(idx.data(), idx.size());
    pad_to(a);
    preamble_.file_bytes = out_.position();
    std::uint8_t head[preamble_bytes];
    write_preamble(preamble_, head);
    out_.write_at(0, head, preamble_bytes);
    out_.commit(options_.sync);
    finished_ = true;
  }
  // Drops the partial file now (the destructor does the same).
  void abandon() noexcept { out_.abandon(); }

  // The preamble bytes for given fields (tests use it to build hostile files).
  static void write_preamble(const preamble& p, std::uint8_t* out /* preamble_bytes */) {
    std::memset(out, 0, preamble_bytes);
    std::memcpy(out, magic, 4);
    detail::put_u16(out + 4, format_version);
    detail::put_u16(out + 6, static_cast<std::uint16_t>(preamble_bytes));
    out[8] = static_cast<std::uint8_t>(p.alignment_log2);
    detail::put_u64(out + 16, p.index_offset);
    detail::put_u64(out + 24, p.index_bytes);
    detail::put_u64(out + 32, p.index_checksum);
    detail::put_u64(out + 40, p.file_bytes);
    detail::put_u64(out + 56, checksum(out, 56));
  }

 private:
  void check_new(const entry& e) const {
    if (finished_) detail::fail(status::invalid_argument, path(), "container already finished");
    if (!detail::valid_utf8(e.name)) detail::fail(status::invalid_argument, path(), "tensor name " + detail::in_quotes(e.name) + " is not valid UTF-8");
    if (e.name.size() > max_name_bytes) detail::fail(status::invalid_argument, path(), "tensor name longer than 65536 bytes");
    if (e.shape.size() > std::size_t(max_rank)) detail::fail(status::unsupported, path(), "tensor " + detail::in_quotes(e.name) + ": rank above 8");
    if (names_.count(e.name) != 0) detail::fail(status::invalid_argument, path(), "duplicate tensor name " + detail::in_quotes(e.name));
  }
  const entry& append(entry&& e, const void* data) {
    pad_to(preamble_.alignment());
    e.offset = out_.position();
    out_.write(data, e.size);
    names_.insert(e.name);
    entries_.push_back(std::move(e));
    return entries_.back();
  }
  void pad_to(std::uint64_t a) { out_.write_zeros((a - out_.position() % a) % a); }

  std::vector<std::uint8_t> serialize_index() const {
    std::uint64_t strings = 0;
    for (const entry& e : entries_) strings += e.name.size();
    for (const auto& kv : metadata_) strings += kv.first.size() + kv.second.size();
    const std::uint64_t records = entries_.size() * tensor_record_bytes, meta = metadata_.size() * metadata_record_bytes;
    std::vector<std::uint8_t> out(static_cast<std::size_t>(index_header_bytes + records + meta + strings), 0);
    std::memcpy(out.data(), index_magic, 4);
    detail::put_u32(out.data() + 4, static_cast<std::uint32_t>(tensor_record_bytes));
    detail::put_u64(out.data() + 8, entries_.size());
    detail::put_u64(out.data() + 16, metadata_.size());
    detail::put_u64(out.data() + 24, strings);
    std::uint8_t* table = out.data() + index_header_bytes + records + meta;
    std::uint64_t cursor = 0;
    auto put_string = [&](std::uint8_t* field, const std::string& s) {
      detail::put_u64(field, cursor);
      detail::put_u64(field + 8, s.size());
      if (!s.empty()) std::memcpy(table + cursor, s.data(), s.size());
      cursor += s.size();
    };
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const entry& e = entries_[i];
      std::uint8_t* r = out.data() + index_header_bytes + i * tensor_record_bytes;
      put_string(r, e.name);
      r[16] = static_cast<std::uint8_t>(e.type);
      r[17] = static_cast<std::uint8_t>(e.kind);
      r[18] = static_cast<std::uint8_t>(e.shape.size());
      if (e.kind == storage::encoded) {
        r[19] = static_cast<std::uint8_t>(e.params.quant);
        r[20] = static_cast<std::uint8_t>(e.params.coder);
        r[21] = static_cast<std::uint8_t>(e.params.order);
        r[22] = static_cast<std::uint8_t>(e.params.prob_bits);
        r[23] = static_cast<std::uint8_t>(e.params.lanes);
        detail::put_u32(r + 24, e.params.tile_rows);
        detail::put_u32(r + 28, e.params.tile_cols);
        detail::put_u32(r + 32, e.params.group_size);
      }
      for (std::size_t d = 0; d < e.shape.size(); ++d) detail::put_u64(r + 40 + 8 * d, e.shape[d]);
      detail::put_u64(r + 104, e.offset);
      detail::put_u64(r + 112, e.size);
      detail::put_u64(r + 120, e.checksum);
      detail::put_u64(r + 128, e.source_checksum);
    }
    std::size_t i = 0;
    for (const auto& kv : metadata_) {
      std::uint8_t* r = out.data() + index_header_bytes + records + i++ * metadata_record_bytes;
      put_string(r, kv.first);
      put_string(r + 16, kv.second);
    }
    return out;
  }

  detail::output_file out_;
  writer_options options_;
  preamble preamble_{};
  std::vector<entry> entries_;
  std::set<std::string, std::less<>> names_;
  metadata_map metadata_;
  bool finished_ = false;
};

}  // namespace container
}  // namespace tilecodec
