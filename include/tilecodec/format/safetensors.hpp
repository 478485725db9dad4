// tilecodec/format/safetensors.hpp: reader and writer for safetensors files, and multi-file
// (sharded) models. Plain C++17 + nlohmann/json; POSIX mmap when available.
//
// Read me first. A safetensors file is three sections:
//   [8 bytes]  N: little-endian u64, the length of the header
//   [N bytes]  the header: a UTF-8 JSON object that begins with '{' and may end in padding spaces:
//                {"__metadata__": {"key": "value", ...},                      (optional, strings only)
//                 "name": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}
//   [rest]     the byte buffer. begin/end are byte offsets into it (end one past the last byte); tensor
//              bytes are little-endian, row-major. shape [] is a scalar (one element); a 0 dim makes
//              an empty tensor that occupies no bytes.
// What the reader enforces, following the spec and its reference implementation (each size read
// from the file is checked before it is used):
//   - N fits in the file and is at most max_header_size; the header is a JSON object, no key twice
//     (neither tensor names nor fields), valid UTF-8;
//   - every entry has exactly the fields dtype (a known name), shape (non-negative integers) and
//     data_offsets (two non-negative integers, begin <= end); the element count times the dtype size,
//     computed without 64-bit overflow, equals end - begin; end lies inside the byte buffer;
//   - tensors do not overlap and cover the byte buffer with no hole and no trailing bytes;
//   - "__metadata__", when present, is an object of string values.
// Errors throw tilecodec::error with a status and a message naming the file, the tensor and the field.
// Tensor order: tensors() lists tensors by data offset, which is the order of the bytes in the file
// (JSON object order carries no meaning); zero-size tensors at the same offset are ordered by name.
//
// The writer lays tensors out by element size, largest first (stable otherwise), so that every tensor
// starts at a multiple of its element size when the buffer is, and pads the header with spaces so the
// buffer starts at a multiple of 8: a mapped file can then be read in place. It writes to a temporary
// file and renames it, so a crash never leaves a partial file under the final name.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../dtype.hpp"
#include "../status.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define TILECODEC_SAFETENSORS_POSIX 1
#else
#define TILECODEC_SAFETENSORS_POSIX 0
#endif

namespace tilecodec {
namespace safetensors {

// The reference implementation refuses larger headers; a header this size would already describe
// about a million tensors, so anything beyond is a corrupt or hostile length field.
inline constexpr std::uint64_t max_header_size = 100'000'000;
// Deepest JSON nesting accepted. A header needs 3 levels (file object, tensor entry, shape array) and
// an index about as few; deeper input is invalid or hostile and would only cost memory to parse.
inline constexpr int max_json_depth = 64;
// Bytes of the header length field that opens every file.
inline constexpr std::size_t length_field_size = 8;
// The header key that holds string metadata instead of a tensor.
inline constexpr std::string_view metadata_key = "__metadata__";
// File names Hugging Face uses, looked up when a model is opened by directory.
inline constexpr std::string_view single_file_name = "model.safetensors";
inline constexpr std::string_view index_file_name = "model.safetensors.index.json";

// Read-only bytes owned by someone else (a file mapping, a caller's buffer).
struct byte_view {
  const std::byte* data = nullptr;
  std::size_t size = 0;
  [[nodiscard]] const std::byte* begin() const { return data; }
  [[nodiscard]] const std::byte* end() const { return data + size; }
};

using metadata_map = std::map<std::string, std::string>;

// One tensor as the header describes it.
struct tensor_info {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::uint64_t> shape;  // [] is a scalar
  std::uint64_t begin = 0;           // byte offsets into the byte buffer; end is one past the last byte
  std::uint64_t end = 0;

  [[nodiscard]] std::uint64_t element_count() const;
  [[nodiscard]] std::uint64_t byte_size() const { return end - begin; }
};

namespace detail {

[[noreturn]] inline void fail(status code, std::string_view source, const std::string& what) {
  throw error(code, std::string(source) + ": " + what);
}

inline std::string single_quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

// "what: <the system's reason for errno>".
inline std::string with_errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

[[noreturn]] inline void fail_no_tensor(std::string_view source, std::string_view name) {
  fail(status::invalid_argument, source, "no tensor named " + single_quoted(name));
}

// a * b, or false when the product does not fit in 64 bits.
[[nodiscard]] inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& product) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  product = a * b;
  return true;
}

// Element count of a shape, or false on overflow. A 0 dim makes the count 0 however large the other
// dims are, so [2^40, 2^40, 0] is a valid empty tensor, not an overflow.
[[nodiscard]] inline bool checked_element_count(const std::vector<std::uint64_t>& shape, std::uint64_t& count) {
  if (std::find(shape.begin(), shape.end(), std::uint64_t{0}) != shape.end()) {
    count = 0;
    return true;
  }
  count = 1;
  for (const std::uint64_t dim : shape) {
    if (!checked_mul(count, dim, count)) return false;
  }
  return true;
}

[[nodiscard]] inline bool checked_byte_size(const std::vector<std::uint64_t>& shape, dtype type, std::uint64_t& bytes) {
  std::uint64_t count = 0;
  return checked_element_count(shape, count) && checked_mul(count, dtype_size(type), bytes);
}

inline std::string shape_string(const std::vector<std::uint64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

// Byte by byte, so the result does not depend on the host's byte order.
[[nodiscard]] inline std::uint64_t load_u64_le(const std::byte* bytes) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | std::to_integer<std::uint64_t>(bytes[i]);
  return value;
}

inline void store_u64_le(std::uint64_t value, char* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xffu);
}

// Builds a JSON document from nlohmann's SAX events, refusing what nlohmann::json::parse accepts
// but a safetensors header must not hold: a key repeated within one object (parse keeps the last
// one silently) and nesting deeper than max_json_depth. Hand-built rather than parse() with a
// callback, because the callback parser rescans the parent object after every nested object ends,
// which is quadratic in the number of tensors.
class strict_json_builder {
 public:
  using json = nlohmann::json;

  // top_level_names_tensors words the duplicate-key message for a safetensors header, whose
  // top-level keys are tensor names.
  strict_json_builder(json& root, std::string_view source, bool top_level_names_tensors)
      : root_(root), source_(source), top_level_names_tensors_(top_level_names_tensors) {}

  bool null() { return put(nullptr) != nullptr; }
  bool boolean(bool value) { return put(value) != nullptr; }
  bool number_integer(json::number_integer_t value) { return put(value) != nullptr; }
  bool number_unsigned(json::number_unsigned_t value) { return put(value) != nullptr; }
  bool number_float(json::number_float_t value, const json::string_t& /*text*/) { return put(value) != nullptr; }
  bool string(json::string_t& value) { return put(std::move(value)) != nullptr; }
  bool binary(json::binary_t& value) { return put(json::binary(std::move(value))) != nullptr; }

  bool start_object(std::size_t /*size_hint*/) { return open(json::object()); }
  bool start_array(std::size_t /*size_hint*/) { return open(json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(json::string_t& key) {
    open_container& object = open_.back();
    if (object.value->contains(key)) {
      if (open_.size() == 1) {
        fail(status::corrupt_header, source_,
             (top_level_names_tensors_ && key != metadata_key ? "duplicate tensor name " : "duplicate key ") +
                 single_quoted(key));
      }
      fail(status::corrupt_header, source_, single_quoted(object.key) + ": duplicate key " + single_quoted(key));
    }
    pending_key_ = std::move(key);
    return true;
  }

  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/, const nlohmann::json::exception& e) {
    fail(status::corrupt_header, source_, std::string("not valid JSON: ") + e.what());
  }

 private:
  struct open_container {
    json* value;
    std::string key;  // the key this container is stored under ("" at the top level or in an array)
  };

  // Stores a finished value where the parser is: the root, the end of the open array, or the open
  // object under the key just read. Pointers into open containers stay valid: a container only
  // grows while it is the innermost one open.
  json* put(json&& value) {
    if (open_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    json& parent = *open_.back().value;
    if (parent.is_array()) {
      parent.push_back(std::move(value));
      return &parent.back();
    }
    json& slot = parent[pending_key_];
    slot = std::move(value);
    return &slot;
  }
  bool open(json&& empty_container) {
    if (open_.size() >= static_cast<std::size_t>(max_json_depth)) {
      fail(status::corrupt_header, source_, "JSON nested deeper than " + std::to_string(max_json_depth) + " levels");
    }
    const bool in_object = !open_.empty() && open_.back().value->is_object();
    std::string key = in_object ? pending_key_ : std::string();
    json* container = put(std::move(empty_container));
    open_.push_back({container, std::move(key)});
    return true;
  }
  bool close() {
    open_.pop_back();
    return true;
  }

  json& root_;
  std::string_view source_;
  bool top_level_names_tensors_;
  std::vector<open_container> open_;
  std::string pending_key_;
};

inline nlohmann::json parse_json_strictly(const char* first, const char* last, std::string_view source,
                                          bool top_level_names_tensors) {
  // nlohmann's lexer takes a NUL byte for the end of input and would ignore whatever follows it; valid
  // JSON never holds a raw NUL (inside strings it must be escaped), so refuse it first.
  if (std::find(first, last, '\0') != last) fail(status::corrupt_header, source, "JSON text contains a NUL byte");
  nlohmann::json root;
  strict_json_builder builder(root, source, top_level_names_tensors);
  try {
    nlohmann::json::sax_parse(first, last, &builder);
  } catch (const nlohmann::json::exception& e) {  // the SAX reports parse errors itself; this is a backstop
    fail(status::corrupt_header, source, std::string("not valid JSON: ") + e.what());
  }
  return root;
}

inline std::uint64_t unsigned_field(const nlohmann::json& value, std::string_view source,
                                    const std::string& where, std::string_view what) {
  if (!value.is_number_unsigned()) {
    fail(status::corrupt_header, source, where + ": " + std::string(what) + " is not a non-negative integer");
  }
  return value.get<std::uint64_t>();
}

inline tensor_info parse_tensor_entry(const std::string& name, const nlohmann::json& entry,
                                      std::string_view source, std::uint64_t buffer_size) {
  const std::string tensor = "tensor " + single_quoted(name);
  if (!entry.is_object()) fail(status::corrupt_header, source, tensor + ": entry is not a JSON object");
  for (const auto& item : entry.items()) {
    const std::string& key = item.key();
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      fail(status::corrupt_header, source, tensor + ": unexpected field " + single_quoted(key));
    }
  }
  const auto field = [&](const char* key) -> const nlohmann::json& {
    const auto it = entry.find(key);
    if (it == entry.end()) fail(status::corrupt_header, source, tensor + ": missing field " + single_quoted(key));
    return *it;
  };

  tensor_info info;
  info.name = name;

  const auto& dtype_field = field("dtype");
  if (!dtype_field.is_string()) fail(status::corrupt_header, source, tensor + ", field 'dtype': not a string");
  const auto& dtype_text = dtype_field.get_ref<const std::string&>();
  if (!parse_dtype(dtype_text, info.type)) {
    fail(status::unsupported, source, tensor + ", field 'dtype': unknown dtype " + single_quoted(dtype_text));
  }

  const auto& shape_field = field("shape");
  const std::string shape_where = tensor + ", field 'shape'";
  if (!shape_field.is_array()) fail(status::corrupt_header, source, shape_where + ": not an array");
  info.shape.reserve(shape_field.size());
  for (std::size_t i = 0; i < shape_field.size(); ++i) {
    info.shape.push_back(unsigned_field(shape_field[i], source, shape_where, "dim " + std::to_string(i)));
  }

  const auto& offsets_field = field("data_offsets");
  const std::string offsets_where = tensor + ", field 'data_offsets'";
  if (!offsets_field.is_array() || offsets_field.size() != 2) {
    fail(status::corrupt_header, source, offsets_where + ": not an array of two offsets");
  }
  info.begin = unsigned_field(offsets_field[0], source, offsets_where, "begin");
  info.end = unsigned_field(offsets_field[1], source, offsets_where, "end");
  if (info.begin > info.end) {
    fail(status::corrupt_header, source,
         offsets_where + ": begin " + std::to_string(info.begin) + " is after end " + std::to_string(info.end));
  }

  std::uint64_t needed = 0;
  if (!checked_byte_size(info.shape, info.type, needed)) {
    fail(status::overflow, source,
         shape_where + ": " + shape_string(info.shape) + " of " + dtype_name(info.type) + " overflows 64 bits");
  }
  if (needed != info.end - info.begin) {
    fail(status::corrupt_header, source,
         offsets_where + ": spans " + std::to_string(info.end - info.begin) + " bytes but shape " +
             shape_string(info.shape) + " of " + dtype_name(info.type) + " needs " + std::to_string(needed));
  }
  if (info.end > buffer_size) {
    fail(status::truncated, source,
         offsets_where + ": end " + std::to_string(info.end) + " is past the end of the byte buffer (" +
             std::to_string(buffer_size) + " bytes)");
  }
  return info;
}

inline metadata_map parse_metadata(const nlohmann::json& value, std::string_view source) {
  const std::string where = single_quoted(metadata_key);
  if (!value.is_object()) fail(status::corrupt_header, source, where + ": not a JSON object");
  metadata_map metadata;
  for (const auto& item : value.items()) {
    if (!item.value().is_string()) {
      fail(status::corrupt_header, source, where + ", key " + single_quoted(item.key()) + ": value is not a string");
    }
    metadata.emplace(item.key(), item.value().get<std::string>());
  }
  return metadata;
}

// Reads a whole file with standard streams: the fallback when mmap is unavailable or refuses.
inline std::vector<std::byte> read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(status::io_error, path, "cannot open for reading");
  in.seekg(0, std::ios::end);
  const std::streamoff length = in.tellg();
  if (length < 0) fail(status::io_error, path, "cannot determine the file size");
  if (static_cast<std::uint64_t>(length) > std::numeric_limits<std::size_t>::max()) {
    fail(status::overflow, path, "file does not fit in memory");
  }
  std::vector<std::byte> bytes(static_cast<std::size_t>(length));
  in.seekg(0, std::ios::beg);
  if (!bytes.empty() && !in.read(reinterpret_cast<char*>(bytes.data()), length)) {
    fail(status::io_error, path, "read failed");
  }
  return bytes;
}

// The bytes of a file: a read-only private mapping where POSIX offers one, else a copy in memory.
// Moving keeps the bytes at the same address, so views into them stay valid.
// A mapped file that another process truncates meanwhile can raise SIGBUS on access, as with any mmap.
class file_bytes {
 public:
  file_bytes() = default;
  explicit file_bytes(const std::string& path) {
#if TILECODEC_SAFETENSORS_POSIX
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(status::io_error, path, with_errno("cannot open"));
    struct stat file_status {};
    if (::fstat(fd, &file_status) != 0) {
      const int saved = errno;
      ::close(fd);
      fail(status::io_error, path, std::string("cannot stat: ") + std::strerror(saved));
    }
    if (!S_ISREG(file_status.st_mode)) {
      ::close(fd);
      fail(status::io_error, path, "not a regular file");
    }
    if (static_cast<std::uint64_t>(file_status.st_size) > std::numeric_limits<std::size_t>::max()) {
      ::close(fd);
      fail(status::overflow, path, "file does not fit in the address space");
    }
    size_ = static_cast<std::size_t>(file_status.st_size);
    if (size_ == 0) {  // mmap refuses length 0; the parser reports the file as truncated
      ::close(fd);
      return;
    }
    void* mapping = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);  // the mapping keeps its own reference to the file
    if (mapping != MAP_FAILED) {
      data_ = static_cast<const std::byte*>(mapping);
      mapped_ = true;
      return;
    }
#endif
    owned_ = read_whole_file(path);
    data_ = owned_.data();
    size_ = owned_.size();
  }

  file_bytes(const file_bytes&) = delete;
  file_bytes& operator=(const file_bytes&) = delete;
  file_bytes(file_bytes&& other) noexcept { take(other); }
  file_bytes& operator=(file_bytes&& other) noexcept {
    if (this != &other) {
      release();
      take(other);
    }
    return *this;
  }
  ~file_bytes() { release(); }

  [[nodiscard]] const std::byte* data() const { return data_; }
  [[nodiscard]] std::size_t size() const { return size_; }
  [[nodiscard]] bool mapped() const { return mapped_; }

 private:
  void take(file_bytes& other) noexcept {
    owned_ = std::move(other.owned_);
    data_ = other.mapped_ ? other.data_ : owned_.data();
    size_ = other.size_;
    mapped_ = other.mapped_;
    other.data_ = nullptr;
    other.size_ = 0;
    other.mapped_ = false;
  }
  void release() noexcept {
#if TILECODEC_SAFETENSORS_POSIX
    if (mapped_) ::munmap(const_cast<std::byte*>(data_), size_);
#endif
    owned_.clear();
    data_ = nullptr;
    size_ = 0;
    mapped_ = false;
  }

  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool mapped_ = false;
  std::vector<std::byte> owned_;
};

}  // namespace detail

inline std::uint64_t tensor_info::element_count() const {
  std::uint64_t count = 0;
  if (!detail::checked_element_count(shape, count)) {
    detail::fail(status::overflow, "tensor " + detail::single_quoted(name), "element count overflows 64 bits");
  }
  return count;
}

// A validated safetensors file in memory that someone else owns: the bytes are neither copied nor
// freed and must outlive the view (like std::string_view).
class view {
 public:
  view() = default;
  // Parses and validates bytes[0, size). source names the bytes in error messages (a path).
  view(const std::byte* bytes, std::size_t size, std::string source);

  [[nodiscard]] const std::string& source() const { return source_; }
  // Tensors in the order of their bytes in the file.
  [[nodiscard]] const std::vector<tensor_info>& tensors() const { return tensors_; }
  // The tensor with this name, or nullptr.
  [[nodiscard]] const tensor_info* find(std::string_view name) const {
    const auto it = index_by_name_.find(name);
    return it == index_by_name_.end() ? nullptr : &tensors_[it->second];
  }
  // The tensor with this name; throws status::invalid_argument when there is none.
  [[nodiscard]] const tensor_info& at(std::string_view name) const {
    const tensor_info* info = find(name);
    if (info == nullptr) detail::fail_no_tensor(source_, name);
    return *info;
  }
  // The bytes of a tensor of this file.
  [[nodiscard]] byte_view data(const tensor_info& info) const {
    if (info.begin > info.end || info.end > buffer_size_) {
      detail::fail(status::invalid_argument, source_,
                   "tensor " + detail::single_quoted(info.name) + " lies outside this file's byte buffer");
    }
    return {buffer_ + info.begin, static_cast<std::size_t>(info.end - info.begin)};
  }
  [[nodiscard]] const metadata_map& metadata() const { return metadata_; }
  // N, the length of the JSON header including its padding.
  [[nodiscard]] std::uint64_t header_size() const { return header_size_; }
  // The byte buffer: everything after the header.
  [[nodiscard]] byte_view buffer() const { return {buffer_, buffer_size_}; }

 private:
  void check_coverage() const;

  std::string source_;
  std::vector<tensor_info> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_by_name_;
  metadata_map metadata_;
  std::uint64_t header_size_ = 0;
  const std::byte* buffer_ = nullptr;
  std::size_t buffer_size_ = 0;
};

inline view::view(const std::byte* bytes, std::size_t size, std::string source) : source_(std::move(source)) {
  using detail::fail;
  if (bytes == nullptr && size != 0) fail(status::invalid_argument, source_, "null buffer of nonzero size");
  if (size < length_field_size) {
    fail(status::truncated, source_,
         std::to_string(size) + " bytes, shorter than the 8-byte header length field");
  }
  const std::uint64_t header_size = detail::load_u64_le(bytes);
  if (header_size > max_header_size) {
    fail(status::corrupt_header, source_,
         "header length " + std::to_string(header_size) + " exceeds the limit of " +
             std::to_string(max_header_size) + " bytes");
  }
  if (header_size > size - length_field_size) {
    fail(status::truncated, source_,
         "header length " + std::to_string(header_size) + " runs past the end of the file (" +
             std::to_string(size) + " bytes)");
  }
  const char* header = reinterpret_cast<const char*>(bytes + length_field_size);
  if (header_size == 0 || header[0] != '{') fail(status::corrupt_header, source_, "header does not begin with '{'");

  const nlohmann::json root =
      detail::parse_json_strictly(header, header + header_size, source_, /*top_level_names_tensors=*/true);
  if (!root.is_object()) fail(status::corrupt_header, source_, "header is not a JSON object");

  header_size_ = header_size;
  buffer_ = bytes + length_field_size + header_size;
  buffer_size_ = size - length_field_size - static_cast<std::size_t>(header_size);

  tensors_.reserve(root.size());
  for (const auto& item : root.items()) {
    if (item.key() == metadata_key) {
      metadata_ = detail::parse_metadata(item.value(), source_);
    } else {
      tensors_.push_back(detail::parse_tensor_entry(item.key(), item.value(), source_, buffer_size_));
    }
  }
  // root iterates in name order, so the stable sort leaves ties (empty tensors) in name order.
  std::stable_sort(tensors_.begin(), tensors_.end(), [](const tensor_info& a, const tensor_info& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  check_coverage();
  for (std::size_t i = 0; i < tensors_.size(); ++i) index_by_name_.emplace(tensors_[i].name, i);
}

// The spec asks that the tensors index the whole byte buffer: no overlap, no hole, nothing trailing.
// tensors_ is sorted by offset, so each tensor must begin exactly where the previous one ended.
inline void view::check_coverage() const {
  using detail::fail;
  using detail::single_quoted;
  const auto byte_range = [](std::uint64_t begin, std::uint64_t end) {
    return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
  };
  std::uint64_t covered_to = 0;
  const tensor_info* last_nonempty = nullptr;
  for (const tensor_info& tensor : tensors_) {
    if (tensor.begin < covered_to) {
      fail(status::corrupt_header, source_,
           "tensor " + single_quoted(tensor.name) + ", field 'data_offsets': bytes " +
               byte_range(tensor.begin, tensor.end) + " overlap tensor " + single_quoted(last_nonempty->name) + " " +
               byte_range(last_nonempty->begin, last_nonempty->end));
    }
    if (tensor.begin > covered_to) {
      fail(status::corrupt_header, source_,
           "bytes " + byte_range(covered_to, tensor.begin) +
               " of the byte buffer belong to no tensor (a hole before tensor " + single_quoted(tensor.name) + ")");
    }
    if (tensor.end > tensor.begin) last_nonempty = &tensor;
    covered_to = tensor.end;
  }
  if (covered_to != buffer_size_) {
    fail(status::corrupt_header, source_,
         std::to_string(buffer_size_ - covered_to) + " trailing bytes after the last tensor belong to no tensor");
  }
}

// Parses an in-memory safetensors image (a received buffer, a fuzzer input). The bytes must outlive
// the returned view.
[[nodiscard]] inline view parse(const std::byte* bytes, std::size_t size, std::string source) {
  return view(bytes, size, std::move(source));
}

// A safetensors file on disk, mapped (or read) and validated when opened. Move-only.
class file {
 public:
  explicit file(const std::string& path) : bytes_(path), contents_(bytes_.data(), bytes_.size(), path) {}

  [[nodiscard]] const std::string& path() const { return contents_.source(); }
  [[nodiscard]] const std::vector<tensor_info>& tensors() const { return contents_.tensors(); }
  [[nodiscard]] const tensor_info* find(std::string_view name) const { return contents_.find(name); }
  [[nodiscard]] const tensor_info& at(std::string_view name) const { return contents_.at(name); }
  [[nodiscard]] byte_view data(const tensor_info& info) const { return contents_.data(info); }
  [[nodiscard]] const metadata_map& metadata() const { return contents_.metadata(); }
  [[nodiscard]] const view& contents() const { return contents_; }
  [[nodiscard]] bool memory_mapped() const { return bytes_.mapped(); }

 private:
  detail::file_bytes bytes_;  // declared before contents_: the view is built from these bytes
  view contents_;
};

// Builds a safetensors file from tensors the caller owns.
//   writer out;
//   out.add("w", dtype::bf16, {4096, 4096}, data, bytes).set_metadata("format", "pt");
//   out.write("model.safetensors");
class writer {
 public:
  // Adds a tensor. The bytes are not copied: they must stay valid until write() or serialize()
  // returns. size must equal the element count times the dtype size.
  writer& add(std::string name, dtype type, std::vector<std::uint64_t> shape, const void* data, std::size_t size);
  writer& set_metadata(std::string key, std::string value) {
    metadata_[std::move(key)] = std::move(value);
    return *this;
  }

  // The whole file in memory.
  [[nodiscard]] std::vector<std::byte> serialize() const;
  // Writes to a temporary file next to path, then renames it over path.
  void write(const std::string& path) const;

 private:
  struct pending_tensor {
    std::string name;
    dtype type;
    std::vector<std::uint64_t> shape;
    const std::byte* data;
    std::size_t size;
  };
  // The tensors in layout order and the padded header that describes them.
  struct layout {
    std::vector<const pending_tensor*> order;
    std::string header;
    std::uint64_t buffer_size = 0;
  };
  [[nodiscard]] layout plan() const;

  std::vector<pending_tensor> tensors_;
  std::set<std::string, std::less<>> names_;
  metadata_map metadata_;
};

inline writer& writer::add(std::string name, dtype type, std::vector<std::uint64_t> shape, const void* data,
                           std::size_t size) {
  using detail::fail;
  const std::string where = "safetensors writer";
  const std::string tensor = "tensor " + detail::single_quoted(name);
  if (name == metadata_key) fail(status::invalid_argument, where, tensor + ": the name is reserved for metadata");
  if (names_.count(name) != 0) fail(status::invalid_argument, where, tensor + ": added twice");
  if (!is_valid(type)) fail(status::invalid_argument, where, tensor + ": invalid dtype");
  std::uint64_t needed = 0;
  if (!detail::checked_byte_size(shape, type, needed)) {
    fail(status::overflow, where, tensor + ": shape " + detail::shape_string(shape) + " overflows 64 bits");
  }
  if (needed != size) {
    fail(status::invalid_argument, where,
         tensor + ": " + std::to_string(size) + " bytes given but shape " + detail::shape_string(shape) + " of " +
             dtype_name(type) + " needs " + std::to_string(needed));
  }
  if (data == nullptr && size != 0) fail(status::invalid_argument, where, tensor + ": null data");
  names_.insert(name);
  tensors_.push_back({std::move(name), type, std::move(shape), static_cast<const std::byte*>(data), size});
  return *this;
}

inline writer::layout writer::plan() const {
  layout result;
  result.order.reserve(tensors_.size());
  for (const pending_tensor& tensor : tensors_) result.order.push_back(&tensor);
  std::stable_sort(result.order.begin(), result.order.end(), [](const pending_tensor* a, const pending_tensor* b) {
    return dtype_size(a->type) > dtype_size(b->type);
  });

  // The header is assembled as text, entry by entry in layout order: linear in the tensor count,
  // where inserting into an order-keeping JSON object would cost a scan per key.
  std::string& header = result.header;
  try {
    header = "{";
    if (!metadata_.empty()) header += nlohmann::json(metadata_key).dump() + ":" + nlohmann::json(metadata_).dump();
    std::uint64_t offset = 0;
    for (const pending_tensor* tensor : result.order) {
      const std::uint64_t end = offset + tensor->size;
      if (end < offset) detail::fail(status::overflow, "safetensors writer", "total size overflows 64 bits");
      if (header.size() > 1) header += ',';
      header += nlohmann::json(tensor->name).dump();  // quoted and escaped
      header += R"(:{"dtype":")" + std::string(dtype_name(tensor->type)) + R"(","shape":)" +
                nlohmann::json(tensor->shape).dump() + R"(,"data_offsets":[)" + std::to_string(offset) + "," +
                std::to_string(end) + "]}";
      offset = end;
    }
    header += '}';
    result.buffer_size = offset;
  } catch (const nlohmann::json::exception& e) {  // a name or metadata string that is not UTF-8
    detail::fail(status::invalid_argument, "safetensors writer", std::string("cannot encode header: ") + e.what());
  }
  // Pad with spaces (allowed by the spec) so the byte buffer starts 8-byte aligned.
  result.header.append((length_field_size - result.header.size() % length_field_size) % length_field_size, ' ');
  if (result.header.size() > max_header_size) {  // readers, this one included, would refuse the file
    detail::fail(status::invalid_argument, "safetensors writer",
                 "header of " + std::to_string(result.header.size()) + " bytes exceeds the limit of " +
                     std::to_string(max_header_size) + " bytes");
  }
  return result;
}

inline std::vector<std::byte> writer::serialize() const {
  const layout planned = plan();
  const std::uint64_t total = length_field_size + planned.header.size() + planned.buffer_size;
  if (total < planned.buffer_size || total > std::numeric_limits<std::size_t>::max()) {
    detail::fail(status::overflow, "safetensors writer", "file does not fit in memory");
  }
  std::vector<std::byte> out(static_cast<std::size_t>(total));
  char* cursor = reinterpret_cast<char*>(out.data());
  detail::store_u64_le(planned.header.size(), cursor);
  cursor += length_field_size;
  std::memcpy(cursor, planned.header.data(), planned.header.size());
  cursor += planned.header.size();
  for (const pending_tensor* tensor : planned.order) {
    if (tensor->size != 0) std::memcpy(cursor, tensor->data, tensor->size);
    cursor += tensor->size;
  }
  return out;
}

inline void writer::write(const std::string& path) const {
  using detail::fail;
  const layout planned = plan();

  // A unique temporary name in the target's directory, so the final rename stays on one file system.
  // "x" (C11, exclusive create) refuses to reuse a name that somebody else holds.
  std::random_device entropy;
  std::string temp_path;
  std::FILE* out = nullptr;
  for (int attempt = 0; attempt < 16 && out == nullptr; ++attempt) {
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, ".partial-%08x", static_cast<unsigned>(entropy()));
    temp_path = path + suffix;
    out = std::fopen(temp_path.c_str(), "wbx");
  }
  if (out == nullptr) fail(status::io_error, path, detail::with_errno("cannot create a temporary file"));

  // Until the rename, any failure closes and removes the temporary file.
  struct temp_guard {
    std::FILE*& stream;
    const std::string& name;
    bool armed = true;
    ~temp_guard() {
      if (!armed) return;
      if (stream != nullptr) std::fclose(stream);
      std::remove(name.c_str());
    }
  } guard{out, temp_path};
  const auto put = [&](const void* bytes, std::size_t size) {
    if (size != 0 && std::fwrite(bytes, 1, size, out) != size) {
      fail(status::io_error, temp_path, detail::with_errno("write failed"));
    }
  };

  char length_field[length_field_size];
  detail::store_u64_le(planned.header.size(), length_field);
  put(length_field, sizeof length_field);
  put(planned.header.data(), planned.header.size());
  for (const pending_tensor* tensor : planned.order) put(tensor->data, tensor->size);
  if (std::fflush(out) != 0) fail(status::io_error, temp_path, detail::with_errno("flush failed"));
#if TILECODEC_SAFETENSORS_POSIX
  // Data on disk before the name: after a power loss the final name holds the old file or the new one.
  if (::fsync(::fileno(out)) != 0) fail(status::io_error, temp_path, detail::with_errno("fsync failed"));
#endif
  const int close_result = std::fclose(out);
  out = nullptr;
  if (close_result != 0) fail(status::io_error, temp_path, detail::with_errno("close failed"));
  if (std::rename(temp_path.c_str(), path.c_str()) != 0) {
    fail(status::io_error, path, detail::with_errno("cannot rename the temporary file into place"));
  }
  guard.armed = false;
}

// A model stored as one safetensors file or as shards listed by model.safetensors.index.json
// ({"metadata": {...}, "weight_map": {tensor: shard file name}}), with one tensor lookup across shards.
// Opening validates every shard and checks that the shards hold exactly the tensors the index maps
// to them: each tensor in one shard, the one the index names.
class model {
 public:
  // path: a .safetensors file, an index .json file, or a directory holding model.safetensors.index.json
  // or model.safetensors (the index wins when both are there).
  explicit model(const std::string& path);

  // Shards in file name order (one for a single-file model); iterate these to visit every tensor.
  [[nodiscard]] const std::vector<file>& shards() const { return shards_; }
  [[nodiscard]] std::size_t tensor_count() const { return locations_.size(); }
  [[nodiscard]] const tensor_info* find(std::string_view name) const {
    const auto it = locations_.find(name);
    return it == locations_.end() ? nullptr : it->second.info;
  }
  [[nodiscard]] const tensor_info& at(std::string_view name) const {
    const tensor_info* info = find(name);
    if (info == nullptr) detail::fail_no_tensor(source_, name);
    return *info;
  }
  // The bytes of the tensor with info's name, from whichever shard holds it.
  [[nodiscard]] byte_view data(const tensor_info& info) const {
    const auto it = locations_.find(info.name);
    if (it == locations_.end()) detail::fail_no_tensor(source_, info.name);
    return shards_[it->second.shard].data(*it->second.info);
  }
  // The index's "metadata" object (for example {"total_size": ...}); null for a single file, whose
  // string metadata is shards().front().metadata().
  [[nodiscard]] const nlohmann::json& index_metadata() const { return index_metadata_; }
  // The path the model was opened from.
  [[nodiscard]] const std::string& source() const { return source_; }

 private:
  struct location {
    std::size_t shard;
    const tensor_info* info;  // into shards_[shard].tensors(), whose storage never moves
  };
  void open_index(const std::filesystem::path& index_path);
  void index_tensors_of(std::size_t shard);

  std::string source_;
  std::vector<file> shards_;
  std::map<std::string, location, std::less<>> locations_;
  nlohmann::json index_metadata_;
};

inline model::model(const std::string& path) : source_(path) {
  namespace fs = std::filesystem;
  fs::path target(path);
  std::error_code ignored;
  if (fs::is_directory(target, ignored)) {
    if (fs::exists(target / index_file_name, ignored)) {
      target /= index_file_name;
    } else if (fs::exists(target / single_file_name, ignored)) {
      target /= single_file_name;
    } else {
      detail::fail(status::io_error, path,
                   "directory holds neither " + std::string(index_file_name) + " nor " + std::string(single_file_name));
    }
  }
  if (target.extension() == ".json") {
    open_index(target);
  } else {
    shards_.emplace_back(target.string());
    index_tensors_of(0);
  }
}

inline void model::open_index(const std::filesystem::path& index_path) {
  namespace fs = std::filesystem;
  using detail::fail;
  using detail::single_quoted;
  const std::string index_name = index_path.string();
  const std::vector<std::byte> text = detail::read_whole_file(index_name);
  if (text.size() > max_header_size) fail(status::corrupt_header, index_name, "index file is implausibly large");
  const char* first = reinterpret_cast<const char*>(text.data());
  const nlohmann::json index =
      detail::parse_json_strictly(first, first + text.size(), index_name, /*top_level_names_tensors=*/false);
  if (!index.is_object()) fail(status::corrupt_header, index_name, "not a JSON object");
  if (const auto it = index.find("metadata"); it != index.end()) {
    if (!it->is_object()) fail(status::corrupt_header, index_name, "'metadata' is not a JSON object");
    index_metadata_ = *it;
  }
  const auto weight_map = index.find("weight_map");
  if (weight_map == index.end() || !weight_map->is_object()) {
    fail(status::corrupt_header, index_name, "'weight_map' is missing or not a JSON object");
  }

  // Shard names must stay inside the index's directory: no absolute paths, no "..".
  std::map<std::string, std::set<std::string, std::less<>>> tensors_by_shard;  // sorted: shard order
  for (const auto& item : weight_map->items()) {
    const std::string where = "'weight_map', tensor " + single_quoted(item.key());
    if (!item.value().is_string()) fail(status::corrupt_header, index_name, where + ": shard name is not a string");
    const std::string& shard = item.value().get_ref<const std::string&>();
    const fs::path shard_path(shard);
    const auto is_parent = [](const fs::path& part) { return part == ".."; };
    if (shard.empty() || shard_path.has_root_path() || std::any_of(shard_path.begin(), shard_path.end(), is_parent)) {
      fail(status::corrupt_header, index_name,
           where + ": shard name " + single_quoted(shard) + " is not a relative path inside the model directory");
    }
    tensors_by_shard[shard].insert(item.key());
  }

  shards_.reserve(tensors_by_shard.size());
  for (const auto& [shard_name, expected] : tensors_by_shard) {
    shards_.emplace_back((index_path.parent_path() / shard_name).string());
    const file& shard = shards_.back();
    for (const tensor_info& tensor : shard.tensors()) {
      if (expected.count(tensor.name) == 0) {
        fail(status::corrupt_header, index_name,
             "shard " + single_quoted(shard_name) + " holds tensor " + single_quoted(tensor.name) +
                 ", which the index does not map to it");
      }
    }
    for (const std::string& name : expected) {
      if (shard.find(name) == nullptr) {
        fail(status::corrupt_header, index_name,
             "'weight_map' maps tensor " + single_quoted(name) + " to shard " + single_quoted(shard_name) +
                 ", which does not hold it");
      }
    }
  }
  for (std::size_t shard = 0; shard < shards_.size(); ++shard) index_tensors_of(shard);
}

inline void model::index_tensors_of(std::size_t shard) {
  for (const tensor_info& tensor : shards_[shard].tensors()) {
    // Two shards cannot both hold a name: the index maps each name to one shard, checked above.
    locations_.emplace(tensor.name, location{shard, &tensor});
  }
}

}  // namespace safetensors
}  // namespace tilecodec
