// Philox4x32-10 counter-based random numbers (Salmon et al., "Parallel random numbers: as easy
// as 1, 2, 3", SC'11), usable on host and device.
//
// A draw is a pure function of (key, counter): pyxfer keys it by the seed and counts by
// (block, view, sample index, epoch), so the random parameters of a view never depend on the
// thread count, batch composition, rank or device.
#pragma once

#include <cstdint>

#include "pyxfer/common.h"

namespace pyxfer {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1

PYXFER_HD void philox_round(uint32_t ctr[4], const uint32_t key[2]) {
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * ctr[0];
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * ctr[2];
  const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  const uint32_t c1 = ctr[1], c3 = ctr[3];
  ctr[0] = hi1 ^ c1 ^ key[0];
  ctr[1] = lo1;
  ctr[2] = hi0 ^ c3 ^ key[1];
  ctr[3] = lo0;
}

// Philox4x32 with 10 rounds: out = bijection_key(ctr).
PYXFER_HD void philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4]) {
  uint32_t ctr[4] = {ctr_in[0], ctr_in[1], ctr_in[2], ctr_in[3]};
  uint32_t key[2] = {key_in[0], key_in[1]};
  philox_round(ctr, key);
  for (int r = 1; r < 10; ++r) {
    key[0] += kPhiloxW0;
    key[1] += kPhiloxW1;
    philox_round(ctr, key);
  }
  for (int i = 0; i < 4; ++i) out[i] = ctr[i];
}

// 24 random bits -> float in [0, 1) (exactly representable, like torch's float uniform_).
PYXFER_HD double philox_unit(uint32_t x) {
  return static_cast<double>(x >> 8) * (1.0 / 16777216.0);
}

// Integer in [0, n) from 32 random bits (multiply-shift; bias below 2^-32 * n).
PYXFER_HD int64_t philox_below(uint32_t x, int64_t n) {
  return static_cast<int64_t>((static_cast<uint64_t>(x) * static_cast<uint64_t>(n)) >> 32);
}

// The random stream of one view: block b gives 4 words; key = seed, counter =
// (block, view, sample, epoch).
struct ViewRng {
  uint32_t key[2];
  uint32_t view, sample, epoch;

  PYXFER_HD void block(uint32_t b, uint32_t out[4]) const {
    const uint32_t ctr[4] = {b, view, sample, epoch};
    philox4x32_10(ctr, key, out);
  }
};

PYXFER_HD ViewRng make_view_rng(uint64_t seed, uint32_t epoch, uint32_t sample, uint32_t view) {
  ViewRng r{};
  r.key[0] = static_cast<uint32_t>(seed);
  r.key[1] = static_cast<uint32_t>(seed >> 32);
  r.view = view;
  r.sample = sample;
  r.epoch = epoch;
  return r;
}

}  // namespace pyxfer
