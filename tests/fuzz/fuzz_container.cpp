// libFuzzer harness for the model container parser (format/container.hpp): any bytes as a whole
// container image. Parsed twice: as a reader would (checksums on), then with checksums off so the
// structural checks behind them and the blob checks are reached too; every tensor that parses is
// checked against its record and decoded (small ones). tilecodec::error is the expected outcome
// of bad input; anything else (a crash, an out-of-bounds access, another exception) is a bug.
#include <tilecodec/format/container.hpp>
#include <tilecodec/host/model_io.hpp>

#include <cstdint>
#include <vector>

namespace {

void exercise(const std::uint8_t* data, std::size_t size, bool checksums) {
  using namespace tilecodec;
  container::parse_options options;
  options.verify_checksums = checksums;
  container::catalog c;
  try {
    c = container::parse(data, size, "fuzz.tcm", options);
  } catch (const error&) {
    return;
  }
  for (const container::entry& e : c.tensors()) {
    (void)c.find(e.name);
    // The index promises every blob lies inside the image, before the index.
    if (e.offset > size || e.size > size - e.offset) __builtin_trap();
    const std::uint8_t* blob = data + e.offset;
    try {
      if (checksums) container::verify_blob(e, blob, e.size, "fuzz.tcm");
      if (e.elements() > (1u << 20)) continue;  // keep each run small
      std::vector<std::uint8_t> out(static_cast<std::size_t>(e.original_bytes()) + 1);
      host::decode_blob(e, blob, e.size, out.data(), out.size(), e.type, 1, "fuzz.tcm");
      if (e.kind == container::storage::encoded && e.params.quant != quant::kind::lossless) {
        std::vector<float> f(static_cast<std::size_t>(e.elements()) + 1);
        host::decode_blob(e, blob, e.size, f.data(), f.size() * 4, dtype::f32, 1, "fuzz.tcm");
      }
    } catch (const error&) {
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  exercise(data, size, true);
  exercise(data, size, false);
  return 0;
}
