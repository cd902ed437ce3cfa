// Host stand-in for cuda_fp16.h (see cuda_runtime.h here).
#pragma once

#include "pyxfer/half.h"

struct __half {
  uint16_t bits;
};
inline __half __float2half_rn(float v) { return __half{pyxfer::float_to_half_bits(v)}; }
