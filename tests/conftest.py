"""Shared fixtures and skips. Tests run against the *installed* package (plain `pytest`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The real data sets beside the project (``../shared/data``), or PYXFER_SHARED_DATA."""
    env = os.environ.get("PYXFER_SHARED_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("needs ../shared/data (real data sets); set PYXFER_SHARED_DATA to point at it")
    return path


@pytest.fixture
def one_torch_thread():
    """One torch intra-op thread for the test: the models are tiny and the CPU is shared, so
    more threads only add contention (results do not depend on it)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def cuda_available() -> bool:
    from pyxfer import _C

    info = _C.build_info()
    if not info["cuda_compiled"] or info["cuda_devices"] == 0:
        return False
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any("cuda" in item.keywords for item in items) and not cuda_available():
        from pyxfer import _C

        info = _C.build_info()
        reason = (
            "needs a CUDA device and pyxfer._C built with PYXFER_WITH_CUDA=ON "
            f"(cuda_compiled={info['cuda_compiled']}, devices={info['cuda_devices']})"
        )
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))
