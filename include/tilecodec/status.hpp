// tilecodec/status.hpp: the status word every fallible call returns, and the host exception
// that carries it with a message naming the tensor and field.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "config.hpp"

namespace tilecodec {

// Values are part of the device ABI (kernels write them into a status array): append only.
enum class status : std::uint32_t {
  success = 0,
  invalid_argument = 1,   // caller passed something unusable (null pointer, zero dimension, ...)
  unsupported = 2,        // valid request the format or build cannot serve (dtype, policy id)
  overflow = 3,           // a size or product does not fit the integer that must hold it
  truncated = 4,          // input ends before a section it declares
  corrupt_header = 5,     // a header field is out of range or inconsistent with another
  corrupt_table = 6,      // frequency table does not sum to its precision, or a frequency is out of range
  corrupt_payload = 7,    // coded stream overruns its tile, or ends in a state the encoder cannot produce
  checksum_mismatch = 8,  // stored checksum differs from the bytes
  io_error = 9,           // the operating system refused a read or write
  out_of_memory = 10,
  cuda_error = 11,
};

[[nodiscard]] TILECODEC_HD const char* to_string(status s) {
  switch (s) {
    case status::success: return "success";
    case status::invalid_argument: return "invalid argument";
    case status::unsupported: return "unsupported";
    case status::overflow: return "size overflow";
    case status::truncated: return "truncated input";
    case status::corrupt_header: return "corrupt header";
    case status::corrupt_table: return "corrupt frequency table";
    case status::corrupt_payload: return "corrupt payload";
    case status::checksum_mismatch: return "checksum mismatch";
    case status::io_error: return "I/O error";
    case status::out_of_memory: return "out of memory";
    case status::cuda_error: return "CUDA error";
  }
  return "unknown status";
}

// Host API error: the status plus a message that names what was wrong and where.
class error : public std::runtime_error {
 public:
  error(status code, const std::string& message)
      : std::runtime_error(std::string(to_string(code)) + ": " + message), code_(code) {}
  [[nodiscard]] status code() const noexcept { return code_; }

 private:
  status code_;
};

}  // namespace tilecodec
