// Host-test helper shared by the coder tests: a tensor decoded to every output its policy has.
#pragma once

#include <tilecodec/host/decoder.hpp>

#include <cstdint>
#include <vector>

#include <doctest/doctest.h>

namespace tilecodec_test {

// Decodes to the dtype every policy supports (lossless: the source; quantized: f32, then i8), with
// a guard byte past the end. The coder tests compare two encodings of one tensor through it.
inline std::vector<std::uint8_t> decode_all(const tilecodec::encoded_tensor& enc, tilecodec::dtype source) {
  using namespace tilecodec;
  const auto& h = enc.header();
  const std::uint64_t n = enc.view().elements();
  const dtype out = h.params.quant == quant::kind::lossless ? source : dtype::f32;
  std::vector<std::uint8_t> bytes(n * dtype_size(out) + n + 1, 0xA5);
  host::tensor_decoder dec(enc.view());
  REQUIRE(dec.state() == status::success);
  REQUIRE(dec.decode(bytes.data(), out, n * dtype_size(out), 2) == status::success);
  if (h.params.quant != quant::kind::lossless)
    REQUIRE(dec.decode(bytes.data() + n * dtype_size(out), dtype::i8, n) == status::success);
  CHECK(bytes.back() == 0xA5);
  return bytes;
}

}  // namespace tilecodec_test
