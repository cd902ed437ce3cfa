#!/usr/bin/env bash
# On a GPU machine: build pyxfer with the CUDA kernels, run the CUDA tests (CUDA vs CPU output)
# and the GPU throughput benchmark. Needs a Python environment with a CUDA build of torch,
# numpy, pytest, hypothesis, scipy, scikit-build-core and pybind11; nvcc on PATH.
#
#   bash bench/gpu_check.sh            # architectures of the local GPU
#   PYXFER_CUDA_ARCHITECTURES=90 bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

arch="${PYXFER_CUDA_ARCHITECTURES:-native}"
echo "== build (CUDA architectures: ${arch})"
PYXFER_WITH_CUDA=ON PYXFER_WERROR=ON PYXFER_CUDA_ARCHITECTURES="${arch}" \
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-8}" \
  python -m pip install --no-build-isolation --no-deps -q .

# Import check from outside the source tree so the installed package (with _C) is used.
(cd /tmp && python - <<'PY'
from pyxfer import _C
info = _C.build_info()
print(f"== pyxfer._C: cuda_compiled={info['cuda_compiled']} devices={info['cuda_devices']} "
      f"cuda={info['cuda_version']} {info['cuda_error']}")
assert info["cuda_compiled"] and info["cuda_devices"] > 0, "no usable CUDA device"
PY
)
echo "== CUDA tests (plain pytest runs against the installed package)"
pytest -q tests/test_augment_cuda.py tests/test_augment.py tests/test_preprocess.py
echo "== GPU benchmark (views/s; ratio = fused / batched torch on the same device)"
python bench/augment.py --device cuda --repeats 5
