// libFuzzer harness: any bytes given to the encoded-tensor parser and, when they parse, to the
// host decoder (whole tensor and one tile). Must never crash or touch memory out of bounds.
#include <tilecodec/tilecodec.hpp>

#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tilecodec;
  encoded_tensor_view view;
  if (encoded_tensor_view::parse(data, size, view) != status::success) return 0;
  const std::uint64_t n = view.elements();
  if (n > (1u << 22)) return 0;  // keep each run small
  const dtype out_type = view.header().params.quant == quant::kind::lossless ? view.header().source : dtype::f32;
  std::vector<std::uint8_t> out(n * dtype_size(out_type) + 1);
  host::tensor_decoder dec(view);
  (void)dec.decode(out.data(), out_type, out.size());
  if (view.header().tile_count > 0) {
    const tile_box b = view.layout().box(view.header().tile_count - 1);
    std::vector<std::uint8_t> tile(std::size_t(b.size()) * dtype_size(out_type));
    (void)dec.decode_tile(view.header().tile_count - 1, tile.data(), out_type, b.width, tile.size());
  }
  return 0;
}
