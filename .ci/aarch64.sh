#!/usr/bin/env bash
# CI step: pyxfer._C cross-compiled for aarch64 with Debian's g++-aarch64-linux-gnu, and the kernel
# tests run on it under qemu-user: an aarch64 CPython from Debian's packages (unpacked into a
# private sysroot; the machine's dpkg and apt state are not touched) with numpy, pytest and
# hypothesis wheels for aarch64 from PyPI. There is no torch for it, so the tests that compare
# against torch skip there (tests/_optional_torch.py); docs/kernels.md lists what runs.
#
#   bash .ci/aarch64.sh                 the subset below
#   bash .ci/aarch64.sh -k neon -x      other pytest arguments instead of the default ones
#
# Skips (exit 0, with the reason) where the tools cannot be had: not root and no toolchain, no
# apt-get, or an archive without arm64 packages. PYXFER_AARCH64_WORK keeps the build and sysroot
# in that directory (reused by the next run) instead of a temporary one.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
jobs="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

skip() {
  echo "aarch64 step skipped: $*" >&2
  exit 0
}

# The kernel test modules (their tests that need torch, a GPU or the shared data sets skip).
# Deselected: the forked-child test, whose fork() of a process with running threads aborts
# qemu-user 7.2 itself (an assertion in its plugin/TCG core; exit code 127 in the child), and
# the tests marked slow (the hue of all 2^24 colours on every path), too slow under emulation.
default_tests=(tests/test_augment.py tests/test_preprocess.py tests/test_normalize.py
               tests/test_parallel.py -m "not slow"
               --deselect tests/test_parallel.py::test_forked_child_gets_a_working_pool)

if [ -n "${PYXFER_AARCH64_WORK:-}" ]; then
  work="$PYXFER_AARCH64_WORK"
  mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
work="$(cd "$work" && pwd)"

# ---- tools: cross compiler and qemu-user -----------------------------------------------------
command -v apt-get >/dev/null 2>&1 || skip "needs apt-get (Debian) for the aarch64 packages"
missing=()
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || skip "needs ${missing[*]} (apt-get install as root)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") \
    >"$work/apt-install.log" 2>&1 || { tail -5 "$work/apt-install.log" >&2;
                                         skip "could not install ${missing[*]}"; }
fi

# ---- aarch64 CPython in a private sysroot ----------------------------------------------------
sys="$work/sysroot"
if [ ! -x "$sys/usr/bin/python3" ]; then
  apt_dir="$work/apt"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
  : >"$apt_dir/status"
  arm64=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64
         -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::State::Status=$apt_dir/status"
         -o "Dir::Cache=$apt_dir/cache")
  apt-get "${arm64[@]}" -qq update >"$work/apt-arm64.log" 2>&1 \
    || { tail -5 "$work/apt-arm64.log" >&2; skip "could not read the arm64 package lists"; }
  # The python3.X that this release's python3 stands for.
  py="$(apt-cache "${arm64[@]}" show python3-minimal 2>/dev/null |
        sed -n 's/^\(Pre-\)\{0,1\}Depends:.*\(python3\.[0-9][0-9]*\)-minimal.*/\2/p' | head -1)"
  [ -n "$py" ] || skip "no arm64 python3-minimal in the package lists"
  # What the interpreter, the C++ runtime and the standard library's extension modules load.
  pkgs=("$py-minimal" "lib$py-minimal" "lib$py-stdlib" "lib$py-dev" libc6 libstdc++6 libgcc-s1
        libexpat1 zlib1g libssl3 libbz2-1.0 libcrypt1 libffi8 liblzma5 libuuid1)
  (cd "$apt_dir/debs" && apt-get "${arm64[@]}" -qq download "${pkgs[@]}") \
    >>"$work/apt-arm64.log" 2>&1 \
    || { tail -5 "$work/apt-arm64.log" >&2; skip "could not download ${pkgs[*]} for arm64"; }
  for deb in "$apt_dir"/debs/*.deb; do dpkg-deb -x "$deb" "$sys"; done
  ln -sf "$py" "$sys/usr/bin/python3"
fi
run() { qemu-aarch64 -L "$sys" "$@"; }
pyver="$(run "$sys/usr/bin/python3" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
soabi="$(run "$sys/usr/bin/python3" -c \
  'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
echo "aarch64 CPython $pyver under $(qemu-aarch64 --version | head -1)"

# The test extra for that interpreter, less torch (wheels from PyPI; pure Python or aarch64).
# scipy is there for the sampler's distribution test, which runs when ../shared is present.
site="$work/site-packages"
if [ ! -d "$site/scipy" ]; then
  python3 -m pip install -q --target "$site" --platform manylinux2014_aarch64 \
    --python-version "$pyver" --implementation cp --only-binary=:all: \
    "numpy>=1.24" "pytest>=8" "hypothesis>=6.100" "scipy>=1.10"
fi

# ---- cross build of pyxfer._C (warnings are errors, as on x86) -------------------------------
python3 -m pip install -q "pybind11>=2.12"
build="$work/build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ -DPYXFER_WERROR=ON \
  -DPython_EXECUTABLE="$(command -v python3)" \
  -DPython_INCLUDE_DIR="$sys/usr/include/python$pyver" \
  -DCMAKE_CXX_FLAGS="-isystem $sys/usr/include" \
  -DPYTHON_MODULE_EXTENSION="$soabi" -DPYTHON_IS_DEBUG=OFF -DPYTHON_MODULE_DEBUG_POSTFIX= \
  -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >"$work/configure.log" 2>&1 \
  || { cat "$work/configure.log"; exit 1; }
cmake --build "$build" --target _C -j "$jobs"

# The package as installed: pyxfer/ with the cross-built extension beside it.
stage="$work/stage"
rm -rf "$stage" && mkdir -p "$stage"
cp -r pyxfer "$stage/pyxfer"
cp "$build"/cpp/_C*.so "$stage/pyxfer/"
file "$stage"/pyxfer/_C*.so 2>/dev/null || true

# ---- the kernel tests under qemu -------------------------------------------------------------
[ "$#" -gt 0 ] || set -- -q -p no:cacheprovider "${default_tests[@]}"
cd "$root"
PYTHONPATH="$stage:$site" run "$sys/usr/bin/python3" -P -c '
from pyxfer import _C
b = _C.build_info()
print("pyxfer._C", b["simd"], "- augmentation", b["augment_simd"], "- preprocessing",
      b["preprocess_simd"])
'
PYTHONPATH="$stage:$site" run "$sys/usr/bin/python3" -P -m pytest "$@"
