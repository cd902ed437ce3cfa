// The quantized augmentation kernel compiled for AVX2 (chosen at run time, see augment.cpp).
#include "augment_cpu.h"

#if defined(PYXFER_X86_DISPATCH)
#pragma GCC target("avx2,fma,f16c,bmi2")
// No contraction: products and sums round separately, as in the baseline and CUDA code, except
// the explicit fused multiply-adds of augment.h's torchvision formulas (bit-exact paths).
#pragma GCC optimize("fp-contract=off")
#define PYXFER_AUG_AVX2 1
#define PYXFER_AUG_NS avx2
#include "augment_kernel.h"
#endif
