// tilecodec/format/planes.hpp: how one value becomes a coded symbol (+ raw-plane bits), and back.
// Shared by the host encoder, the host decoder and every device decoder, so they agree bit for bit.
#pragma once

#include <cstdint>

#include "../config.hpp"
#include "../dtype.hpp"

namespace tilecodec {

// ---- lossless 16-bit (bf16 and fp16 alike) ---------------------------------------------------
// symbol = bits 14..6, 9 bits (bf16: the exponent and the top mantissa bit; fp16: exponent and
// 4 mantissa bits); raw = sign << 6 | bits 5..0, 7 bits. The top mantissa bit of trained
// weights is skewed (a density falls across each binade), so coding it with the exponent saves
// about 0.05 bits per weight over coding the exponent alone (docs/PERFORMANCE.md).
TILECODEC_HD std::uint32_t lossless16_symbol(std::uint32_t v) { return (v >> 6) & 0x1ffu; }
TILECODEC_HD std::uint32_t lossless16_raw(std::uint32_t v) { return ((v >> 9) & 0x40u) | (v & 0x3fu); }
TILECODEC_HD std::uint16_t lossless16_join(std::uint32_t symbol, std::uint32_t raw7) {
  return static_cast<std::uint16_t>(((raw7 & 0x40u) << 9) | (symbol << 6) | (raw7 & 0x3fu));
}

// The byte split (alphabet 256; coding 2, the fixed-length codes the fused kernels read):
// symbol = bits 14..7 (bf16: the exponent; fp16: exponent and 3 mantissa bits), raw = sign << 7 |
// bits 6..0, one byte. A 4-bit code then spans 16 exponents instead of 8, so a bf16 tensor
// escapes about 0.01% of its weights instead of 1.4% (MiniLM), and a GPU joins a pair of weights
// in four instructions (one byte permutation that also copies each byte's sign bit into the byte
// above; fused/fragment.cuh): the raw byte costs one bit a weight more than the 7-bit plane, the
// entropy coders' 0.05 bits a weight of the top mantissa bit are not worth it to them.
TILECODEC_HD std::uint32_t lossless16_byte_symbol(std::uint32_t v) { return (v >> 7) & 0xffu; }
TILECODEC_HD std::uint32_t lossless16_byte_raw(std::uint32_t v) { return ((v >> 8) & 0x80u) | (v & 0x7fu); }
TILECODEC_HD std::uint16_t lossless16_byte_join(std::uint32_t symbol, std::uint32_t raw8) {
  return static_cast<std::uint16_t>(((raw8 & 0x80u) << 8) | (symbol << 7) | (raw8 & 0x7fu));
}

// The split of a 16-bit lossless tensor follows from its alphabet (the header records it).
TILECODEC_HD bool lossless16_bytes(std::uint32_t alphabet) { return alphabet == 256; }
TILECODEC_HD std::uint32_t lossless16_symbol(std::uint32_t v, std::uint32_t alphabet) {
  return lossless16_bytes(alphabet) ? lossless16_byte_symbol(v) : lossless16_symbol(v);
}
TILECODEC_HD std::uint16_t lossless16_join(std::uint32_t symbol, std::uint32_t raw, std::uint32_t alphabet) {
  return lossless16_bytes(alphabet) ? lossless16_byte_join(symbol, raw) : lossless16_join(symbol, raw);
}

// The 7-bit raw values of a tile are packed 8 to 7 bytes: within each group of 8 elements,
// byte j (j < 7) holds element j's 7 bits and, in its top bit, bit j of element 7. Elements
// 0..6 read one byte; element 7 gathers the 7 top bits (on a GPU: one ballot per warp step).
inline constexpr std::uint32_t raw7_group = 8;        // elements per group
inline constexpr std::uint32_t raw7_group_bytes = 7;  // bytes per group

TILECODEC_HD std::uint32_t raw7_unpack(const std::uint8_t* group, std::uint32_t j) {
  if (j < 7) return group[j] & 0x7fu;
  std::uint32_t v = 0;
  for (std::uint32_t k = 0; k < 7; ++k) v |= std::uint32_t(group[k] >> 7) << k;
  return v;
}

// Packs one group; `count` < 8 for a tile's last group (missing elements pack as 0).
inline void raw7_pack(const std::uint8_t* raw7, std::uint32_t count, std::uint8_t* group) {
  const std::uint32_t last = count > 7 ? raw7[7] : 0u;
  for (std::uint32_t j = 0; j < 7; ++j)
    group[j] = static_cast<std::uint8_t>((j < count ? raw7[j] : 0u) | (((last >> j) & 1u) << 7));
}

// ---- lossless fp32 -----------------------------------------------------------------------------
// symbol = exponent (bits 30..23), raw = sign << 23 | mantissa: 3 bytes, little-endian.
TILECODEC_HD std::uint32_t lossless32_symbol(std::uint32_t v) { return (v >> 23) & 0xffu; }
TILECODEC_HD std::uint32_t lossless32_raw(std::uint32_t v) { return ((v >> 8) & 0x800000u) | (v & 0x7fffffu); }
TILECODEC_HD std::uint32_t lossless32_join(std::uint32_t symbol, std::uint32_t raw) {
  return ((raw & 0x800000u) << 8) | (symbol << 23) | (raw & 0x7fffffu);
}

// Bytes of raw-plane scratch per element for a lossless source (7-bit values take a byte
// before packing; fp32 takes 3).
TILECODEC_HD std::uint32_t lossless_raw_bytes(dtype source) { return source == dtype::f32 ? 3u : 1u; }

// Where tile t's raw plane starts in a lossless tensor's: fp32 3 bytes an element, the byte
// split one, the 7-bit plane 7 bytes a group of 8 (element_start, groups8_before: format/tile_layout.hpp).
TILECODEC_HD std::uint64_t lossless_raw_start(dtype source, std::uint32_t alphabet, std::uint64_t element_start,
                                              std::uint64_t groups8_before) {
  if (source == dtype::f32) return 3 * element_start;
  return lossless16_bytes(alphabet) ? element_start : raw7_group_bytes * groups8_before;
}

// ---- stored (uncoded) symbols ----------------------------------------------------------------
// 16-symbol alphabets: two per byte, low nibble first. 256: one byte each. 512: groups of 8 in
// 9 bytes, bytes 0..7 the low 8 bits, byte 8 the ninth bits (bit j for symbol j), so a stored
// 16-bit lossless tile takes exactly 2 bytes per element with its raw plane: never more.
TILECODEC_HD std::uint64_t stored_tile_bytes(std::uint32_t alphabet, std::uint64_t n) {
  if (alphabet <= 16) return (n + 1) / 2;
  if (alphabet <= 256) return n;
  return (n + 7) / 8 * 9;
}

TILECODEC_HD std::uint32_t stored_symbol(const std::uint8_t* tile, std::uint32_t alphabet, std::uint32_t i) {
  if (alphabet <= 16) return (tile[i / 2] >> (4 * (i & 1))) & 0xfu;
  if (alphabet <= 256) return tile[i];
  const std::uint8_t* g = tile + (i / 8) * 9;
  return g[i & 7] | (std::uint32_t((g[8] >> (i & 7)) & 1u) << 8);
}

// ---- quantized -------------------------------------------------------------------------------
inline constexpr int int8_qmax = 127;
inline constexpr std::uint32_t int8_symbol_offset = 128;  // symbol = q + 128
inline constexpr int int4_qmax = 7;
inline constexpr std::uint32_t int4_symbol_offset = 8;    // symbol = q + 8

TILECODEC_HD int int8_code(std::uint32_t symbol) { return int(symbol) - int(int8_symbol_offset); }
TILECODEC_HD int int4_code(std::uint32_t symbol) { return int(symbol) - int(int4_symbol_offset); }

// Dequantization is one fp32 multiply, the same on host and device.
TILECODEC_HD float dequantize(int code, float scale) { return float(code) * scale; }

// Stores a float as the requested output dtype (f32, f16 or bf16; round to nearest even).
TILECODEC_HD void store_float_as(float v, dtype out, void* dst, std::uint64_t index) {
  if (out == dtype::f32) {
    static_cast<float*>(dst)[index] = v;
  } else if (out == dtype::f16) {
    static_cast<std::uint16_t*>(dst)[index] = float_to_f16(v);
  } else {
    static_cast<std::uint16_t*>(dst)[index] = float_to_bf16(v);
  }
}

}  // namespace tilecodec
