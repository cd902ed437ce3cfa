// Argument validation shared by the bindings. Every message names the argument, what was
// expected and what was received; nothing invalid reaches a kernel.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace pyxfer::bind {

namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  if (a.ndim() == 1) s << ",";
  s << ")";
  return s.str();
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

[[noreturn]] inline void fail(const std::string& msg) { throw py::value_error(msg); }

// Floats in the machine's byte order only: the kernels read and write native values.
inline bool is_native(const py::array& a) { return a.dtype().attr("isnative").cast<bool>(); }
inline bool is_float16(const py::array& a) {
  return a.dtype().kind() == 'f' && a.itemsize() == 2 && is_native(a);
}
inline bool is_float32(const py::array& a) {
  return a.dtype().kind() == 'f' && a.itemsize() == 4 && is_native(a);
}

inline void check_dtype(const py::array& a, const char* name, bool ok, const char* expected) {
  if (!ok) {
    fail(std::string(name) + ": expected dtype " + expected + ", received " + dtype_str(a));
  }
}

inline void check_uint8(const py::array& a, const char* name) {
  check_dtype(a, name, a.dtype().is(py::dtype::of<uint8_t>()), "uint8");
}

inline void check_ndim(const py::array& a, const char* name, py::ssize_t ndim,
                       const char* layout) {
  if (a.ndim() != ndim) {
    fail(std::string(name) + ": expected a " + std::to_string(ndim) + "-d array " + layout +
         ", received shape " + shape_str(a));
  }
}

inline void check_c_contiguous(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style)) {
    fail(std::string(name) + ": expected a C-contiguous array, received strides that are not "
                             "(call numpy.ascontiguousarray or tensor.contiguous() first)");
  }
}

inline void check_writeable(const py::array& a, const char* name) {
  if (!a.writeable()) fail(std::string(name) + ": expected a writeable array, received read-only");
}

inline void check_shape(const py::array& a, const char* name, const std::vector<py::ssize_t>& want) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(want.size());
  for (size_t i = 0; ok && i < want.size(); ++i) ok = a.shape(static_cast<py::ssize_t>(i)) == want[i];
  if (!ok) {
    std::ostringstream s;
    s << "(";
    for (size_t i = 0; i < want.size(); ++i) s << (i ? ", " : "") << want[i];
    if (want.size() == 1) s << ",";
    s << ")";
    fail(std::string(name) + ": expected shape " + s.str() + ", received " + shape_str(a));
  }
}

inline void check_channels(int64_t c, const char* name) {
  if (c != 1 && c != 3) {
    fail(std::string(name) + ": expected 1 or 3 channels (last axis), received " +
         std::to_string(c));
  }
}

inline void check_positive(int64_t v, const char* name) {
  if (v <= 0) fail(std::string(name) + ": expected a positive size, received " + std::to_string(v));
}

inline void check_threads(int threads) {
  if (threads < 0) {
    fail("threads: expected 0 (all cores) or a positive count, received " + std::to_string(threads));
  }
}

// Per-channel normalisation of every op that writes normalised floats: p.mean[i] = mean[i] and
// p.inv_std[i] = 1 / std[i] in float32, for the c channels. Each value must be finite in float32
// (and 1 / std too), so no kernel is handed an inf or NaN.
template <class Params>
void set_normalization(Params& p, const std::vector<double>& mean, const std::vector<double>& std,
                       int64_t c) {
  for (const auto* v : {&mean, &std}) {
    if (static_cast<int64_t>(v->size()) != c) {
      fail(std::string(v == &mean ? "mean" : "std") + ": expected " + std::to_string(c) +
           " values (one per channel), received " + std::to_string(v->size()));
    }
  }
  for (int64_t i = 0; i < c; ++i) {
    const auto k = static_cast<size_t>(i);
    const auto m = static_cast<float>(mean[k]);
    if (!std::isfinite(m)) {
      fail("mean: expected finite values (in float32), received " + std::to_string(mean[k]));
    }
    const auto s = static_cast<float>(std[k]);
    const float inv = 1.0f / s;
    if (!std::isfinite(s) || s == 0.0f || !std::isfinite(inv)) {
      fail("std: expected finite non-zero values whose inverse is finite in float32, received " +
           std::to_string(std[k]));
    }
    p.mean[i] = m;
    p.inv_std[i] = inv;
  }
}

// A positive scalar as the float32 the kernels compute with: finite, > 0, and with a finite
// inverse (1e300 is inf and 1e-300 is 0 in float32; 1 / 1e-40 is inf).
inline float positive_float(double v, const char* name) {
  const auto f = static_cast<float>(v);
  if (!(std::isfinite(f) && f > 0.0f && std::isfinite(1.0f / f))) {
    std::ostringstream s;
    s << name << ": expected a finite value > 0 with a finite inverse in float32, received " << v;
    fail(s.str());
  }
  return f;
}

// Product of sizes (element or byte counts) that every kernel may index with int64: fails, naming
// `name`, on a negative size or a product above 2^62.
inline int64_t checked_product(std::initializer_list<int64_t> sizes, const std::string& name) {
  constexpr int64_t kLimit = int64_t{1} << 62;
  int64_t r = 1;
  for (const int64_t s : sizes) {
    if (s < 0) fail(name + ": expected non-negative sizes, received " + std::to_string(s));
    if (s != 0 && r > kLimit / s) {
      fail(name + ": expected a buffer of at most 2^62 elements or bytes, received sizes whose "
                  "product exceeds it");
    }
    r *= s;
  }
  return r;
}

// ---- aliasing -----------------------------------------------------------------------------------
// The kernels read their inputs while they write their outputs, with the GIL released: an output
// that shares memory with an input would let the kernel's own writes change what it reads next
// (a crop box, a label) after it was validated. Every entry point therefore refuses an output
// that overlaps any input or another output, comparing the byte ranges the buffers span.

// Bytes [lo, hi) a buffer spans; empty (lo == hi) for no elements.
struct Span {
  uintptr_t lo = 0, hi = 0;
};

// The span of an array from its data pointer, shape and (possibly negative or zero) strides.
inline Span span_of(const py::array& a) {
  if (a.size() == 0) return {};
  auto lo = reinterpret_cast<intptr_t>(a.data());
  intptr_t hi = lo + a.itemsize();
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    const intptr_t reach = static_cast<intptr_t>(a.strides(i)) * (a.shape(i) - 1);
    (reach < 0 ? lo : hi) += reach;
  }
  return {static_cast<uintptr_t>(lo), static_cast<uintptr_t>(hi)};
}

// The span of `bytes` bytes at a raw (device) address; the range must fit the address space.
inline Span span_at(uintptr_t ptr, int64_t bytes, const std::string& name) {
  if (bytes <= 0) return {};
  if (ptr > UINTPTR_MAX - static_cast<uintptr_t>(bytes)) {
    fail(name + ": expected a pointer to " + std::to_string(bytes) +
         " bytes inside the address space, received " + std::to_string(ptr));
  }
  return {ptr, ptr + static_cast<uintptr_t>(bytes)};
}

struct Buffer {
  std::string name;
  Span span;
};

inline void check_disjoint(const Buffer& out, const Buffer& other) {
  if (out.span.lo < other.span.hi && other.span.lo < out.span.hi) {
    fail(out.name + ": expected memory that does not overlap " + other.name +
         ", received buffers that overlap (write into a separate array)");
  }
}

// Every output against every input and every other output.
inline void check_no_overlap(const std::vector<Buffer>& outputs,
                             const std::vector<Buffer>& inputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    for (const Buffer& in : inputs) check_disjoint(outputs[i], in);
    for (size_t j = i + 1; j < outputs.size(); ++j) check_disjoint(outputs[i], outputs[j]);
  }
}

// The answer of every *_cuda entry point in a build without CUDA, given after its argument
// checks (so those run, and are tested, in every build). Takes the arguments such a build leaves
// unused.
template <class... Unused>
[[noreturn]] void cuda_unavailable(const Unused&... /*unused*/) {
  throw std::runtime_error("pyxfer._C was built without CUDA: rebuild with PYXFER_WITH_CUDA=ON");
}

}  // namespace pyxfer::bind
