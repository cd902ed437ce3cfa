// The quantized augmentation kernel compiled with NEON intrinsics (AArch64; chosen at run time
// unless PYXFER_SIMD=baseline|scalar, see augment.cpp). NEON is part of AArch64's base
// instruction set, so no target attribute is needed; contraction is off for the whole build
// there (cpp/CMakeLists.txt), so products and sums round separately as in the baseline and CUDA
// code, except the explicit fused multiply-adds of augment.h's torchvision formulas.
#include "augment_cpu.h"

#if defined(PYXFER_ARM_NEON)
#define PYXFER_AUG_NEON 1
#define PYXFER_AUG_NS neon
#include "augment_kernel.h"
#endif
