// A consumer of the installed / added tilecodec: encodes and decodes a small tensor.
#include <tilecodec/tilecodec.hpp>

#include <cstdio>
#include <vector>

int main() {
  std::vector<float> w(300);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = float(i % 17) * 0.25f - 2.0f;
  auto enc = tilecodec::host::encode<tilecodec::lossless_codec>(w.data(), tilecodec::dtype::f32, {10, 30});
  std::vector<float> back(w.size());
  if (tilecodec::host::decode(enc.view(), back.data(), tilecodec::dtype::f32, back.size() * 4) !=
      tilecodec::status::success)
    return 1;
  if (back != w) return 2;
  std::printf("consumer ok (%s)\n", tilecodec::version_string);
  return 0;
}
