"""The sentence-encoder example plugin, when it and a local model are installed."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

if importlib.util.find_spec("pyxfer_sentence_encoder") is None:
    pytest.skip(
        "the example plugin is not installed (pip install ./plugins/examples/"
        "pyxfer-sentence-encoder)",
        allow_module_level=True,
    )


def test_registered_and_refuses_missing_model(tmp_path) -> None:
    import pyxfer

    reg = pyxfer.get_registry("class_encoders")
    assert reg.get("sentence").plugin == "pyxfer-sentence-encoder"
    with pytest.raises(ValueError, match="model: expected a local model directory"):
        reg.create("sentence", model=str(tmp_path / "absent"))


@pytest.mark.skipif(
    not os.environ.get("PYXFER_SENTENCE_MODEL")
    or importlib.util.find_spec("sentence_transformers") is None,
    reason="needs sentence-transformers and a local model in PYXFER_SENTENCE_MODEL",
)
def test_similar_sentences_are_closer() -> None:
    import pyxfer

    enc = pyxfer.get_registry("class_encoders").create("sentence")
    e = enc.encode(["a small cat", "a little kitten", "a truck on the motorway"])
    assert e.shape[0] == 3 and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2]
