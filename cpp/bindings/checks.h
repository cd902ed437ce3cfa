// Argument validation shared by the bindings. Every message names the argument, what was
// expected and what was received; nothing invalid reaches a kernel.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <sstream>
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

inline bool is_float16(const py::array& a) { return a.dtype().kind() == 'f' && a.itemsize() == 2; }
inline bool is_float32(const py::array& a) { return a.dtype().kind() == 'f' && a.itemsize() == 4; }

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

// Per-channel float vector (mean/std) of length c; std must be finite and non-zero.
inline std::vector<float> channel_vector(const std::vector<double>& v, int64_t c, const char* name,
                                         bool nonzero) {
  if (static_cast<int64_t>(v.size()) != c) {
    fail(std::string(name) + ": expected " + std::to_string(c) + " values (one per channel), received " +
         std::to_string(v.size()));
  }
  std::vector<float> out;
  for (double x : v) {
    if (!std::isfinite(x) || (nonzero && x == 0.0)) {
      fail(std::string(name) + ": expected finite" + (nonzero ? " non-zero" : "") +
           " values, received " + std::to_string(x));
    }
    out.push_back(static_cast<float>(x));
  }
  return out;
}

}  // namespace pyxfer::bind
