// NEON helpers of the AArch64 kernel paths (augmentation, normalize, preprocess). AArch64 only:
// NEON is part of its base instruction set, so these need no target attribute.
#pragma once

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>

#include <cstdint>

namespace pyxfer::cpu::neon_ops {

// 16 levels as four float vectors (levels 0-3, 4-7, 8-11, 12-15).
inline void levels16(uint8x16_t b, float32x4_t out[4]) {
  const uint16x8_t lo = vmovl_u8(vget_low_u8(b)), hi = vmovl_high_u8(b);
  out[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo)));
  out[1] = vcvtq_f32_u32(vmovl_high_u16(lo));
  out[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi)));
  out[3] = vcvtq_f32_u32(vmovl_high_u16(hi));
}
inline void levels16(const uint8_t* p, float32x4_t out[4]) { levels16(vld1q_u8(p), out); }

// Four vectors of int32 lanes in [0, 255] as 16 bytes, in order.
inline uint8x16_t bytes16(const int32x4_t v[4]) {
  const uint16x8_t lo = vcombine_u16(vmovn_u32(vreinterpretq_u32_s32(v[0])),
                                     vmovn_u32(vreinterpretq_u32_s32(v[1])));
  const uint16x8_t hi = vcombine_u16(vmovn_u32(vreinterpretq_u32_s32(v[2])),
                                     vmovn_u32(vreinterpretq_u32_s32(v[3])));
  return vcombine_u8(vmovn_u16(lo), vmovn_u16(hi));
}

// 16 bytes in reverse order.
inline uint8x16_t reverse16(uint8x16_t v) {
  return vcombine_u8(vrev64_u8(vget_high_u8(v)), vrev64_u8(vget_low_u8(v)));
}

// x * scale + shift, the product and the sum each rounded (as the scalar loops).
inline float32x4_t affine4(float32x4_t x, float scale, float shift) {
  return vaddq_f32(vmulq_n_f32(x, scale), vdupq_n_f32(shift));
}

// Eight floats as half bits. FCVTN rounds to nearest even with IEEE overflow to infinity, as
// float_to_half_bits(_branchless) does for every value but NaN (whose payload it keeps): the
// paths that use it never convert a NaN (finite levels, scales and shifts; see checks.h).
inline uint16x8_t half8(float32x4_t lo, float32x4_t hi) {
  return vreinterpretq_u16_f16(vcombine_f16(vcvt_f16_f32(lo), vcvt_f16_f32(hi)));
}

}  // namespace pyxfer::cpu::neon_ops
#endif
