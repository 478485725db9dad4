// tilecodec/tilecodec.hpp: umbrella header for the host half (plain C++17, no CUDA needed).
// Device headers (.cuh) are included separately: <tilecodec/device/...>, <tilecodec/warp/...>.
#pragma once

#include "config.hpp"
#include "dtype.hpp"
#include "status.hpp"
#include "version.hpp"

#include "policy/codec.hpp"
#include "policy/coder.hpp"
#include "policy/quant.hpp"
#include "policy/tile.hpp"

#include "coder/frequency_table.hpp"
#include "coder/rans.hpp"

#include "format/encoded_tensor.hpp"
#include "format/planes.hpp"
#include "format/tile_layout.hpp"

#include "host/decoder.hpp"
#include "host/encoder.hpp"
