// The quantized augmentation kernel compiled for AVX2 (chosen at run time, see augment.cpp).
#include "augment_cpu.h"

#if defined(PYXFER_X86_DISPATCH)
#pragma GCC target("avx2,f16c,bmi2")
// AVX-512F has fused multiply-add: keep products and sums separately rounded (bit-exact paths).
#pragma GCC optimize("fp-contract=off")
#define PYXFER_AUG_AVX2 1
#define PYXFER_AUG_NS avx2
#include "augment_kernel.h"
#endif
