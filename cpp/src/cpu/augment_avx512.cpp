// The quantized augmentation kernel compiled for AVX-512 (chosen at run time, see augment.cpp).
// GCC 12's AVX-512 intrinsics (_mm512_undefined_* self-initialisation, GCC bug 105593) raise
// false -W(maybe-)uninitialized warnings when inlined; this file compiles only the kernel copy.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "augment_cpu.h"

#if defined(PYXFER_X86_DISPATCH)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi2")
// No contraction: products and sums round separately, as in the baseline and CUDA code, except
// the explicit fused multiply-adds of augment.h's torchvision formulas (bit-exact paths).
#pragma GCC optimize("fp-contract=off")
#define PYXFER_AUG_AVX2 1
#define PYXFER_AUG_AVX512 1
#define PYXFER_AUG_NS avx512
#include "augment_kernel.h"
#endif
