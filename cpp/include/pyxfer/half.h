// IEEE 754 binary16 conversion usable on host and device (round to nearest even).
#pragma once

#include <cstdint>
#include <cstring>

#include "pyxfer/common.h"

namespace pyxfer {

PYXFER_HD uint16_t float_to_half_bits(float value) {
  uint32_t x;
#if defined(__CUDA_ARCH__)
  x = __float_as_uint(value);
#else
  std::memcpy(&x, &value, sizeof x);
#endif
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mag = x & 0x7fffffffu;
  if (mag >= 0x7f800000u) {  // inf or nan
    return static_cast<uint16_t>(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0u));
  }
  if (mag >= 0x477ff000u) {  // rounds to >= 65520 -> inf
    return static_cast<uint16_t>(sign | 0x7c00u);
  }
  if (mag < 0x38800000u) {  // subnormal half or zero
    if (mag < 0x33000000u) return static_cast<uint16_t>(sign);
    // value = mant * 2^(e - 150); in units of the smallest half subnormal (2^-24) that is
    // mant >> (126 - e).
    const uint32_t shift = 126u - (mag >> 23);  // 14..24
    const uint32_t mant = (mag & 0x7fffffu) | 0x800000u;
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  // normal: rebias exponent, round mantissa to 10 bits (nearest even)
  uint32_t half = ((mag - 0x38000000u) >> 13);
  const uint32_t rem = mag & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

}  // namespace pyxfer

namespace pyxfer {

// binary16 bits -> float (exact: every half is representable as a float).
PYXFER_HD float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1fu) {  // inf or nan
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {  // normal
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {  // signed zero
    bits = sign;
  } else {  // subnormal: renormalise
    uint32_t e = 113u;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
  }
  float out;
#if defined(__CUDA_ARCH__)
  out = __uint_as_float(bits);
#else
  std::memcpy(&out, &bits, sizeof out);
#endif
  return out;
}

// Same result as float_to_half_bits (round to nearest even, overflow -> inf, NaN -> quiet NaN),
// written with selects only so that loops over it vectorise.
PYXFER_HD uint16_t float_to_half_bits_branchless(float value) {
  uint32_t x;
#if defined(__CUDA_ARCH__)
  x = __float_as_uint(value);
#else
  std::memcpy(&x, &value, sizeof x);
#endif
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t mag = x & 0x7fffffffu;
  // Subnormal halves: add 0.5 (as float) so the FPU rounds the mantissa to nearest even.
  const uint32_t magic_bits = 0x3f000000u;  // 0.5f: its ulp is 2^-24, a half subnormal step
#if defined(__CUDA_ARCH__)
  uint32_t sub = __float_as_uint(__uint_as_float(mag) + 0.5f);
#else
  float mf;
  std::memcpy(&mf, &mag, sizeof mf);
  const float sum = mf + 0.5f;
  uint32_t sub;
  std::memcpy(&sub, &sum, sizeof sub);
#endif
  sub -= magic_bits;
  // Normal halves: rebias the exponent and round the mantissa to 10 bits.
  const uint32_t odd = (mag >> 13) & 1u;
  const uint32_t norm = (mag + 0xc8000fffu + odd) >> 13;  // + ((15 - 127) << 23) + 0xfff
  const uint32_t nan = 0x7e00u, inf = 0x7c00u;
  uint32_t h = mag < 0x38800000u ? sub : norm;
  h = mag >= 0x477ff000u ? inf : h;
  h = mag > 0x7f800000u ? nan : h;
  return static_cast<uint16_t>(h | sign);
}

}  // namespace pyxfer
