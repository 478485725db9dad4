// libFuzzer harness for the safetensors reader (tilecodec/format/safetensors.hpp).
//
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//       tests/fuzz/fuzz_safetensors.cpp -o fuzz_safetensors
//   ./fuzz_safetensors -max_total_time=60 [corpus_dir]
//
// Any input may be refused with tilecodec::error; anything else (a crash, a sanitizer report,
// another exception, a failed invariant below) is a bug. An input the reader accepts must also
// survive a round trip: writing its tensors and metadata again gives a file that reads back the same.
#include <tilecodec/format/safetensors.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace {

namespace st = tilecodec::safetensors;

// abort() rather than assert(): the check must hold in release builds of the harness too.
void require(bool condition) {
  if (!condition) std::abort();
}

void check_accepted(const st::view& contents, const std::byte* input, std::size_t size) {
  const st::byte_view buffer = contents.buffer();
  require(buffer.data >= input && buffer.data + buffer.size == input + size);

  st::writer rewrite;
  std::uint64_t covered = 0;
  for (const st::tensor_info& tensor : contents.tensors()) {
    const st::byte_view bytes = contents.data(tensor);
    require(bytes.data >= buffer.data && bytes.data + bytes.size <= buffer.data + buffer.size);
    require(bytes.size == tensor.element_count() * tilecodec::dtype_size(tensor.type));
    require(contents.find(tensor.name) == &tensor);
    covered += bytes.size;
    rewrite.add(tensor.name, tensor.type, tensor.shape, bytes.data, bytes.size);
  }
  require(covered == buffer.size);
  for (const auto& [key, value] : contents.metadata()) rewrite.set_metadata(key, value);

  const std::vector<std::byte> image = rewrite.serialize();
  const st::view reread = st::parse(image.data(), image.size(), "rewritten");  // must not throw
  require(reread.tensors().size() == contents.tensors().size());
  require(reread.metadata() == contents.metadata());
  for (const st::tensor_info& tensor : contents.tensors()) {
    const st::tensor_info* copy = reread.find(tensor.name);
    require(copy != nullptr && copy->type == tensor.type && copy->shape == tensor.shape);
    const st::byte_view original = contents.data(tensor);
    const st::byte_view copied = reread.data(*copy);
    require(std::equal(original.begin(), original.end(), copied.begin(), copied.end()));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Copy into a buffer of exactly `size` bytes so AddressSanitizer flags any read past the end.
  const std::vector<std::byte> input(reinterpret_cast<const std::byte*>(data),
                                     reinterpret_cast<const std::byte*>(data) + size);
  st::view contents;
  try {
    contents = st::parse(input.data(), input.size(), "fuzz input");
  } catch (const tilecodec::error&) {
    return 0;  // refusing bad input with a typed error is the expected outcome
  }
  // Outside the try: once the reader accepts an input, nothing in the round trip may throw.
  check_accepted(contents, input.data(), input.size());
  return 0;
}
