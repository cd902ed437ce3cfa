// Image batches accepted by the bindings: a dense uint8 (N, H, W, C) array or a list of
// (H, W, C) arrays of different sizes (same channel count).
#pragma once

#include <string>
#include <vector>

#include "checks.h"
#include "pyxfer/augment.h"

namespace pyxfer::bind {

// Validates and returns one ImageRef per image; `keep` holds the arrays alive; `c` receives the
// channel count (3 for an empty list).
inline std::vector<ImageRef> image_refs(const py::object& images, int64_t& c,
                                 std::vector<py::array>& keep) {
  std::vector<ImageRef> ims;
  if (py::isinstance<py::array>(images)) {
    const auto a = py::reinterpret_borrow<py::array>(images);
    check_uint8(a, "images");
    check_ndim(a, "images", 4, "(N, H, W, C)");
    check_c_contiguous(a, "images");
    c = a.shape(3);
    check_channels(c, "images");
    if (a.shape(1) <= 0 || a.shape(2) <= 0) {
      fail("images: expected non-empty images, received shape " + shape_str(a));
    }
    const int64_t n = a.shape(0), stride = a.shape(1) * a.shape(2) * c;
    const auto* base = static_cast<const uint8_t*>(a.data());
    for (int64_t i = 0; i < n; ++i) ims.push_back({base + i * stride, a.shape(1), a.shape(2)});
    keep.push_back(a);
    return ims;
  }
  if (!py::isinstance<py::list>(images) && !py::isinstance<py::tuple>(images)) {
    fail("images: expected a uint8 (N, H, W, C) array or a list of (H, W, C) arrays, received " +
         py::str(py::type::of(images)).cast<std::string>());
  }
  const auto seq = py::reinterpret_borrow<py::sequence>(images);
  c = -1;
  for (size_t i = 0; i < seq.size(); ++i) {
    const std::string name = "images[" + std::to_string(i) + "]";
    py::object item = seq[i];
    if (!py::isinstance<py::array>(item)) fail(name + ": expected a numpy array");
    const auto a = py::reinterpret_borrow<py::array>(item);
    check_uint8(a, name.c_str());
    check_ndim(a, name.c_str(), 3, "(H, W, C)");
    check_c_contiguous(a, name.c_str());
    check_channels(a.shape(2), name.c_str());
    if (c >= 0 && a.shape(2) != c) {
      fail(name + ": expected " + std::to_string(c) + " channels like images[0], received " +
           std::to_string(a.shape(2)));
    }
    c = a.shape(2);
    if (a.shape(0) <= 0 || a.shape(1) <= 0) {
      fail(name + ": expected a non-empty image, received shape " + shape_str(a));
    }
    ims.push_back({static_cast<const uint8_t*>(a.data()), a.shape(0), a.shape(1)});
    keep.push_back(a);
  }
  if (c < 0) c = 3;
  return ims;
}

}  // namespace pyxfer::bind
