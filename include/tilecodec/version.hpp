// tilecodec/version.hpp: library version (the encoded-tensor format has its own, see docs/format.md).
#pragma once

#define TILECODEC_VERSION_MAJOR 0
#define TILECODEC_VERSION_MINOR 1
#define TILECODEC_VERSION_PATCH 0

namespace tilecodec {
inline constexpr int version_major = TILECODEC_VERSION_MAJOR;
inline constexpr int version_minor = TILECODEC_VERSION_MINOR;
inline constexpr int version_patch = TILECODEC_VERSION_PATCH;
inline constexpr const char* version_string = "0.1.0";
}  // namespace tilecodec
