// Makes each failable CUDA runtime call of augment_apply_cuda and preprocess_cuda fail in turn
// (emu_fail_at in cuda_runtime.h here) and checks that the call throws and frees all the device
// memory it allocated. Prints one line per case and "raised R leaks L"; used by
// tests/test_cuda_emulation.py.
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <vector>

#include "cuda_runtime.h"
#include "pyxfer/augment.h"
#include "pyxfer/preprocess.h"
using namespace pyxfer;

int main() {
  const int64_t H = 12, W = 10, C = 3, n = 2;
  std::vector<uint8_t> img(H * W * C, 100);
  const uint8_t* ptrs[2] = {img.data(), img.data()};
  int64_t hs[2] = {H, H}, ws[2] = {W, W};

  ApplyParams p;
  p.c = C, p.views = 1, p.out_h = 6, p.out_w = 5;
  std::vector<float> prm(n * kParamCount, 0.f);
  for (int64_t r = 0; r < n; ++r) {
    float* row = prm.data() + r * kParamCount;
    row[kCropH] = static_cast<float>(H), row[kCropW] = static_cast<float>(W);
  }
  std::vector<float> out(n * C * p.out_h * p.out_w);
  PreprocessParams pp;
  pp.c = C, pp.resize = 8, pp.crop_h = 6, pp.crop_w = 6;
  std::vector<float> out2(n * C * pp.crop_h * pp.crop_w);

  const std::pair<const char*, std::function<void()>> calls[] = {
      {"augment_apply_cuda",
       [&] { augment_apply_cuda(ptrs, hs, ws, n, prm.data(), n, out.data(), p, nullptr); }},
      {"preprocess_cuda", [&] { preprocess_cuda(ptrs, hs, ws, n, out2.data(), pp, nullptr); }},
  };
  int raised = 0, leaks = 0;
  for (const auto& [name, call] : calls) {
    for (int at = 1;; ++at) {  // until a run passes every failable call
      emu_fail_at = at, emu_calls = 0, emu_live = 0;
      bool threw = false;
      try {
        call();
      } catch (const std::runtime_error& e) {
        threw = true;
        std::printf("%s, call %d fails: %s; live allocations %ld\n", name, at, e.what(), emu_live);
      }
      raised += threw;
      leaks += emu_live != 0;
      if (!threw) break;
    }
  }
  emu_fail_at = 0;
  std::printf("raised %d leaks %d\n", raised, leaks);
}
