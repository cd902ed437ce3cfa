// Compares the CPU kernels with the CUDA kernels compiled for the host (cuda_runtime.h here)
// on random images, parameters, sizes, channel counts, layouts and rounding modes.
// Prints "mismatches N"; used by tests/test_cuda_emulation.py.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
#include "pyxfer/augment.h"
#include "pyxfer/preprocess.h"
using namespace pyxfer;
int main() {
  std::mt19937 rng(1);
  // fp16 output goes through the same store; float32 here keeps the comparison exact.
  int fails = 0;
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t H = 5 + rng() % 90, W = 5 + rng() % 90, C = (trial % 3 == 0) ? 1 : 3;
    const int64_t oh = 1 + rng() % 40, ow = 1 + rng() % 40;
    std::vector<uint8_t> img(H * W * C);
    for (auto& v : img) v = rng() % 256;
    ViewConfig cfg; cfg.jitter_p = 0.9; cfg.blur_p = 0.7; cfg.blur_kernel = 1 + 2 * (rng() % 6); cfg.solarize_p = 0.5; cfg.hue = 0.3;
    const int64_t n = 2, views = 1, rows = n * views;
    int64_t hs[2] = {H, H}, ws[2] = {W, W}, idx[2] = {trial, trial + 100};
    std::vector<float> prm(rows * kParamCount);
    sample_params_cpu(&cfg, views, hs, ws, idx, n, 7, 0, prm.data(), 1);
    ApplyParams p; p.c = C; p.views = views; p.out_h = oh; p.out_w = ow; p.quantize = trial % 2 == 0;
    p.layout = trial % 4 < 2 ? Layout::NCHW : Layout::NHWC;
    for (int k = 0; k < 3; ++k) { p.mean[k] = 0.4f; p.inv_std[k] = 4.f; }
    ImageRef ims[2] = {{img.data(), H, W}, {img.data(), H, W}};
    std::vector<float> a(rows * C * oh * ow), b(a.size());
    augment_apply_cpu(ims, n, prm.data(), rows, a.data(), p, 1);
    const uint8_t* ptrs[2] = {img.data(), img.data()};
    augment_apply_cuda(ptrs, hs, ws, n, prm.data(), rows, b.data(), p, nullptr);
    double m = 0; for (size_t i = 0; i < a.size(); ++i) m = std::fmax(m, std::fabs(a[i] - b[i]));
    if (m > 1e-5) { ++fails; std::printf("augment trial %d H%ld W%ld C%ld -> %ldx%ld q%d max diff %g\n", trial, H, W, C, oh, ow, p.quantize, m); }
    PreprocessParams pp; pp.c = C; pp.resize = rng() % 50; pp.crop_h = 1 + rng() % 50; pp.crop_w = pp.crop_h; pp.quantize = p.quantize; pp.layout = p.layout;
    std::vector<float> c(n * C * pp.crop_h * pp.crop_w), d(c.size());
    preprocess_cpu(ims, n, c.data(), pp, 1);
    preprocess_cuda(ptrs, hs, ws, n, d.data(), pp, nullptr);
    m = 0; for (size_t i = 0; i < c.size(); ++i) m = std::fmax(m, std::fabs(c[i] - d[i]));
    if (m > 1e-5) { ++fails; std::printf("preprocess trial %d diff %g\n", trial, m); }
  }
  std::printf("mismatches %d\n", fails);
}
