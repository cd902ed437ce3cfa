// Image batches accepted by the bindings: a dense uint8 (N, H, W, C) array or a list of
// (H, W, C) arrays of different sizes (same channel count).
#pragma once

#include <string>
#include <vector>

#include "checks.h"
#include "pyxfer/augment.h"

namespace pyxfer::bind {

// Largest image side: the antialiased resampling counts filter taps (up to 2 * side + 1) in int.
constexpr int64_t kMaxImageSide = int64_t{1} << 29;

inline void check_image_size(int64_t h, int64_t w, const std::string& name) {
  if (h <= 0 || w <= 0 || h > kMaxImageSide || w > kMaxImageSide) {
    fail(name + ": expected a non-empty image with sides of at most 2^29, received " +
         std::to_string(h) + "x" + std::to_string(w));
  }
}

// The validated images of one call. `refs` (pointer, height, width) is owned by the call, so a
// list rebuilt by another thread changes nothing; `keep` holds the arrays alive; `spans` gives the
// memory each one spans, for the overlap checks. Pixel values are read in place: a pixel changed
// by another thread can change an output value, never where the kernel reads or writes.
struct ImageBatch {
  std::vector<ImageRef> refs;
  std::vector<py::array> keep;
  std::vector<Buffer> spans;
  int64_t c = 3;  // channels (3 for an empty list)
  int64_t size() const { return static_cast<int64_t>(refs.size()); }
};

inline ImageBatch image_batch(const py::object& images) {
  ImageBatch b;
  if (py::isinstance<py::array>(images)) {
    const auto a = py::reinterpret_borrow<py::array>(images);
    check_uint8(a, "images");
    check_ndim(a, "images", 4, "(N, H, W, C)");
    check_c_contiguous(a, "images");
    b.c = a.shape(3);
    check_channels(b.c, "images");
    check_image_size(a.shape(1), a.shape(2), "images");
    const int64_t n = a.shape(0), stride = a.shape(1) * a.shape(2) * b.c;
    const auto* base = static_cast<const uint8_t*>(a.data());
    for (int64_t i = 0; i < n; ++i) b.refs.push_back({base + i * stride, a.shape(1), a.shape(2)});
    b.keep.push_back(a);
    b.spans.push_back({"images", span_of(a)});
    return b;
  }
  if (!py::isinstance<py::list>(images) && !py::isinstance<py::tuple>(images)) {
    fail("images: expected a uint8 (N, H, W, C) array or a list of (H, W, C) arrays, received " +
         py::str(py::type::of(images)).cast<std::string>());
  }
  const auto seq = py::reinterpret_borrow<py::sequence>(images);
  int64_t c = -1;
  for (size_t i = 0; i < seq.size(); ++i) {
    const std::string name = "images[" + std::to_string(i) + "]";
    py::object item = seq[i];
    if (!py::isinstance<py::array>(item)) {
      fail(name + ": expected a numpy array, received " +
           py::str(py::type::of(item)).cast<std::string>());
    }
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
    check_image_size(a.shape(0), a.shape(1), name);
    b.refs.push_back({static_cast<const uint8_t*>(a.data()), a.shape(0), a.shape(1)});
    b.keep.push_back(a);
    b.spans.push_back({name, span_of(a)});
  }
  b.c = c < 0 ? 3 : c;
  return b;
}

// The (device) images of a *_cuda entry point: one pointer, height and width each, `c` channels.
inline std::vector<ImageRef> device_images(const std::vector<uintptr_t>& ptrs,
                                           const std::vector<int64_t>& hs,
                                           const std::vector<int64_t>& ws, int64_t c,
                                           std::vector<Buffer>& spans) {
  check_channels(c, "channels");
  if (ptrs.size() != hs.size() || ptrs.size() != ws.size()) {
    fail("heights/widths: expected one height and one width per image pointer (" +
         std::to_string(ptrs.size()) + "), received " + std::to_string(hs.size()) + " and " +
         std::to_string(ws.size()));
  }
  std::vector<ImageRef> ims;
  for (size_t i = 0; i < ptrs.size(); ++i) {
    const std::string name = "images[" + std::to_string(i) + "]";
    if (ptrs[i] == 0) fail(name + ": expected a device pointer, received 0");
    check_image_size(hs[i], ws[i], name);
    ims.push_back({nullptr, hs[i], ws[i]});
    spans.push_back({name, span_at(ptrs[i], hs[i] * ws[i] * c, name)});
  }
  return ims;
}

}  // namespace pyxfer::bind
