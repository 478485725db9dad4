// tilecodec/dtype.hpp: element types, their sizes and names, and bit-exact float16/bfloat16
// conversions that run the same on host and device (no dependency on cuda_fp16.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "config.hpp"

namespace tilecodec {

// Values are stored in files: append only.
enum class dtype : std::uint8_t {
  f32 = 0,
  f16 = 1,
  bf16 = 2,
  i8 = 3,   // signed 8-bit codes (quantized output)
  u8 = 4,
  i16 = 5,
  u16 = 6,
  i32 = 7,
  u32 = 8,
  i64 = 9,
  u64 = 10,
  f64 = 11,
  boolean = 12,
  f8_e4m3 = 13,
  f8_e5m2 = 14,
};
inline constexpr int dtype_count = 15;

[[nodiscard]] TILECODEC_HD std::size_t dtype_size(dtype t) {
  switch (t) {
    case dtype::f32: case dtype::i32: case dtype::u32: return 4;
    case dtype::f16: case dtype::bf16: case dtype::i16: case dtype::u16: return 2;
    case dtype::i8: case dtype::u8: case dtype::boolean: case dtype::f8_e4m3: case dtype::f8_e5m2: return 1;
    case dtype::i64: case dtype::u64: case dtype::f64: return 8;
  }
  return 0;
}

[[nodiscard]] TILECODEC_HD bool is_valid(dtype t) { return static_cast<int>(t) < dtype_count; }

// Names as safetensors spells them.
[[nodiscard]] inline const char* dtype_name(dtype t) {
  switch (t) {
    case dtype::f32: return "F32";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::i8: return "I8";
    case dtype::u8: return "U8";
    case dtype::i16: return "I16";
    case dtype::u16: return "U16";
    case dtype::i32: return "I32";
    case dtype::u32: return "U32";
    case dtype::i64: return "I64";
    case dtype::u64: return "U64";
    case dtype::f64: return "F64";
    case dtype::boolean: return "BOOL";
    case dtype::f8_e4m3: return "F8_E4M3";
    case dtype::f8_e5m2: return "F8_E5M2";
  }
  return "?";
}

// Parses a safetensors dtype name; returns false for an unknown name.
[[nodiscard]] inline bool parse_dtype(std::string_view name, dtype& out) {
  for (int i = 0; i < dtype_count; ++i) {
    if (name == dtype_name(static_cast<dtype>(i))) {
      out = static_cast<dtype>(i);
      return true;
    }
  }
  return false;
}

[[nodiscard]] TILECODEC_HD bool is_float16_family(dtype t) { return t == dtype::f16 || t == dtype::bf16; }

// ---- bit-exact conversions ------------------------------------------------------------------

TILECODEC_HD std::uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

TILECODEC_HD float bits_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

TILECODEC_HD float bf16_to_float(std::uint16_t h) { return bits_float(std::uint32_t(h) << 16); }

// Round to nearest even; NaN stays NaN (quiet bit set so truncation cannot make it Inf).
TILECODEC_HD std::uint16_t float_to_bf16(float f) {
  std::uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

TILECODEC_HD float f16_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_float(sign | 0x7f800000u | (mant << 13));  // Inf / NaN
  if (exp != 0) return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return bits_float(sign);  // +-0
  // Subnormal: value = mant * 2^-24, exact in float32.
  return (h & 0x8000u) ? -float(mant) * 5.9604644775390625e-8f : float(mant) * 5.9604644775390625e-8f;
}

// Round to nearest even, overflow to Inf, NaN stays NaN.
TILECODEC_HD std::uint16_t float_to_f16(float f) {
  const std::uint32_t u = float_bits(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: Inf
  if (a >= 0x38800000u) {  // normal in f16
    std::uint32_t r = a - 0x38000000u;  // rebias exponent 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | (r >> 13));
  }
  if (a < 0x33000000u) return sign;  // below half the smallest subnormal: rounds to 0
  // Subnormal: shift the full mantissa right with round to nearest even.
  const std::uint32_t e = a >> 23;
  const std::uint32_t m = (a & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126u - e;  // 14..24
  std::uint32_t q = m >> shift;
  const std::uint32_t rem = m & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return static_cast<std::uint16_t>(sign | q);
}

}  // namespace tilecodec
