// tilecodec/format/planes.hpp: how one value becomes a coded symbol (+ raw-plane bits), and back.
// Shared by the host encoder, the host decoder and every device decoder, so they agree bit for bit.
#pragma once

#include <cstdint>

#include "../config.hpp"
#include "../dtype.hpp"

namespace tilecodec {

// ---- lossless 16-bit (bf16 and fp16 alike) ---------------------------------------------------
// symbol = bits 14..7 (bf16: the whole exponent; fp16: exponent + 3 top mantissa bits),
// raw byte = sign << 7 | bits 6..0.
TILECODEC_HD std::uint32_t lossless16_symbol(std::uint32_t v) { return (v >> 7) & 0xffu; }
TILECODEC_HD std::uint32_t lossless16_raw(std::uint32_t v) { return ((v >> 8) & 0x80u) | (v & 0x7fu); }
TILECODEC_HD std::uint16_t lossless16_join(std::uint32_t symbol, std::uint32_t raw) {
  return static_cast<std::uint16_t>(((raw & 0x80u) << 8) | (symbol << 7) | (raw & 0x7fu));
}

// ---- lossless fp32 -----------------------------------------------------------------------------
// symbol = exponent (bits 30..23), raw = sign << 23 | mantissa: 3 bytes, little-endian.
TILECODEC_HD std::uint32_t lossless32_symbol(std::uint32_t v) { return (v >> 23) & 0xffu; }
TILECODEC_HD std::uint32_t lossless32_raw(std::uint32_t v) { return ((v >> 8) & 0x800000u) | (v & 0x7fffffu); }
TILECODEC_HD std::uint32_t lossless32_join(std::uint32_t symbol, std::uint32_t raw) {
  return ((raw & 0x800000u) << 8) | (symbol << 23) | (raw & 0x7fffffu);
}

// Raw-plane bytes per element for a lossless source dtype (0 for quantized policies).
TILECODEC_HD std::uint32_t lossless_raw_bytes(dtype source) { return source == dtype::f32 ? 3u : 1u; }

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
