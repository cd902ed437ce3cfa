"""Class tables (CSV / NPY / att_splits.mat), the digit table, and the class-encoder plugins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyxfer import pluginmanager
from pyxfer.zeroshot import (
    ClassDescriptions,
    PrototypeZSL,
    digit_descriptions,
    load_att_splits,
    load_csv,
    load_descriptions,
    load_npy,
    zsl_accuracy,
)
from pyxfer.zeroshot.digits_attributes import ATTRIBUTE_NAMES, DIGIT_ATTRIBUTES, DIGIT_SENTENCES


def test_csv_table(tmp_path: Path) -> None:
    path = tmp_path / "classes.csv"
    path.write_text("class,has_loop,stripes,size\nzebra,0,1,0.8\n\ncat,1,0,0.3\n")
    table = load_csv(path)
    assert table.names == ["zebra", "cat"]
    assert table.attribute_names == ["has_loop", "stripes", "size"]
    np.testing.assert_array_equal(table.matrix, [[0, 1, 0.8], [1, 0, 0.3]])
    assert table.class_ids.tolist() == [0, 1]
    assert load_descriptions(path).names == ["zebra", "cat"]


def test_csv_with_id_column_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "classes.csv"
    path.write_text("a1,name,id\n0.5,seven,7\n1.5,three,3\n")
    table = load_csv(path, name_column="name")
    assert table.class_ids.tolist() == [7, 3] and table.attribute_names == ["a1"]
    assert table.id_of("three") == 3
    assert table.select([3]).matrix.tolist() == [[1.5]]
    with pytest.raises(ValueError, match=r"class_ids: .*missing class\(es\) \[5\]"):
        table.select([5])
    with pytest.raises(ValueError, match="name_column: 'label' is not a column"):
        load_csv(path, name_column="label")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,a\nx,1\ny,oops\n")
    with pytest.raises(ValueError, match=r"path: line 3 .* is not numeric"):
        load_csv(bad)
    bad.write_text("name,a\nx,1,2\n")
    with pytest.raises(ValueError, match=r"path: line 2 .* has 3 fields"):
        load_csv(bad)
    dup = tmp_path / "dup.csv"
    dup.write_text("name,id,a\nx,1,0\ny,1,1\n")
    with pytest.raises(ValueError, match="class_ids: expected distinct ids"):
        load_csv(dup)


def test_npy_table(tmp_path: Path) -> None:
    m = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "t.npy", m)
    table = load_npy(tmp_path / "t.npy", names=["a", "b", "c", "d"])
    np.testing.assert_array_equal(table.matrix, m)
    assert table.names == ["a", "b", "c", "d"] and table.num_attributes == 3
    assert load_descriptions(tmp_path / "t.npy").names == ["0", "1", "2", "3"]
    np.save(tmp_path / "v.npy", np.zeros(5))
    with pytest.raises(ValueError, match="path: expected a 2-d"):
        load_npy(tmp_path / "v.npy")
    with pytest.raises(ValueError, match=r"path: expected a \.csv, \.npy or \.mat"):
        load_descriptions(tmp_path / "t.json")


def test_att_splits_mat(tmp_path: Path) -> None:
    sio = pytest.importorskip("scipy.io")
    att = np.array([[0.1, 0.2, 0.3], [1.0, 0.0, 0.5]])  # 2 attributes x 3 classes
    names = np.empty((3, 1), dtype=object)
    names[:, 0] = ["antelope", "grizzly+bear", "killer+whale"]
    sio.savemat(
        tmp_path / "att_splits.mat",
        {
            "att": att,
            "allclasses_names": names,
            "trainval_loc": np.array([[1], [2], [5]]),
            "test_seen_loc": np.array([[3]]),
            "test_unseen_loc": np.array([[4], [6]]),
        },
    )
    split = load_att_splits(tmp_path / "att_splits.mat")
    table = split.descriptions
    assert table.names == ["antelope", "grizzly+bear", "killer+whale"]
    np.testing.assert_allclose(table.matrix, att.T)  # classes x attributes
    assert split.trainval_loc.tolist() == [0, 1, 4]  # 0-based
    assert split.test_seen_loc.tolist() == [2]
    assert split.test_unseen_loc.tolist() == [3, 5]
    assert load_descriptions(tmp_path / "att_splits.mat").num_classes == 3
    sio.savemat(tmp_path / "broken.mat", {"att": att})
    with pytest.raises(ValueError, match=r"lacks the att_splits.mat key"):
        load_att_splits(tmp_path / "broken.mat")


def test_class_descriptions_validation() -> None:
    with pytest.raises(ValueError, match="names: expected 2 class names"):
        ClassDescriptions(np.zeros((2, 3)), np.arange(2), ["a"])
    with pytest.raises(ValueError, match="class_descriptions: expected finite"):
        ClassDescriptions(np.array([[np.nan]]), np.arange(1), ["a"])
    a = ClassDescriptions(np.zeros((2, 3)), np.arange(2), ["a", "b"])
    with pytest.raises(ValueError, match="other: expected 3 attributes"):
        a.extend(ClassDescriptions(np.zeros((1, 2)), [5], ["c"]))
    with pytest.raises(ValueError, match="class_ids: expected distinct"):
        a.extend(ClassDescriptions(np.zeros((1, 3)), [1], ["c"]))


def test_digit_table_is_complete_and_distinct() -> None:
    table = digit_descriptions()
    assert table.matrix.shape == (10, len(ATTRIBUTE_NAMES)) and 15 <= table.num_attributes <= 20
    assert set(np.unique(DIGIT_ATTRIBUTES)) <= {0.0, 0.5, 1.0}
    assert table.class_ids.tolist() == list(range(10)) and len(DIGIT_SENTENCES) == 10
    dist = np.abs(DIGIT_ATTRIBUTES[:, None] - DIGIT_ATTRIBUTES[None]).sum(-1) + 99 * np.eye(10)
    assert dist.min() >= 2
    col = {n: DIGIT_ATTRIBUTES[:, i] for i, n in enumerate(ATTRIBUTE_NAMES)}
    # the seven segments of the standard seven-segment display (handwritten 1, 6, 7, 9 graded)
    segments = np.stack([col[n] for n in ATTRIBUTE_NAMES if n.startswith("seg_")], axis=1)
    assert segments.shape == (10, 7)
    assert segments[8].tolist() == [1.0] * 7 and segments[0].tolist() == [1.0] * 6 + [0.0]
    assert np.flatnonzero(col["seg_middle"] == 1).tolist() == [4, 5, 6, 8, 9]
    assert np.flatnonzero(col["closed_loop"]).tolist() == [0, 6, 8, 9]
    assert (DIGIT_ATTRIBUTES.std(axis=0) > 0).all()  # every attribute separates some digits


@pytest.fixture
def encoders():
    pluginmanager.reset_host()
    yield pluginmanager.registry("class_encoders")
    pluginmanager.reset_host()


def test_encoders_are_registered_through_the_entry_point(encoders) -> None:
    assert {"attributes", "hashed-text"} <= set(encoders.list())
    assert encoders.get("attributes").plugin == "pyxfer.encoders"
    assert pluginmanager.get_host().plugins["pyxfer.encoders"].builtin


def test_attribute_encoder(encoders) -> None:
    enc = encoders.create("attributes")
    E = enc.encode(digit_descriptions())
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0)
    np.testing.assert_allclose(
        E, DIGIT_ATTRIBUTES / np.linalg.norm(DIGIT_ATTRIBUTES, axis=1, keepdims=True)
    )
    centred = encoders.create("attributes", center=True).encode(DIGIT_ATTRIBUTES)
    np.testing.assert_allclose(np.linalg.norm(centred, axis=1), 1.0)
    assert abs(float(centred.sum())) > 0 and not np.allclose(centred, E)
    with pytest.raises(ValueError, match="descriptions: expected finite"):
        enc.encode(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="descriptions: expected a non-empty"):
        enc.encode(np.zeros(3))


def test_text_encoder_is_deterministic_normalised_and_lexical(encoders, tmp_path: Path) -> None:
    enc = encoders.create("hashed-text", dim=512)
    E = enc.encode(DIGIT_SENTENCES)
    assert E.shape == (10, 512)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0)
    np.testing.assert_array_equal(
        E, encoders.create("hashed-text", dim=512).encode(DIGIT_SENTENCES)
    )
    a, b, c = enc.encode(["two closed loops", "two closed loop", "a straight diagonal bar"])
    assert a @ b > 0.7 and a @ c < 0.3  # shared words and word pieces <-> similar vectors
    # the same in another process with another string-hash seed (no Python hash())
    code = (
        "from pyxfer.plugins.encoders.text import HashedTextEncoder as H; "
        "print(repr(H(dim=64).encode(['nine: a loop on a tail'])[0].round(12).tolist()))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": s},
            cwd=tmp_path,
            check=True,
        ).stdout
        for s in ("1", "2")
    }
    assert len(outs) == 1
    here = repr(enc.__class__(dim=64).encode(["nine: a loop on a tail"])[0].round(12).tolist())
    assert outs == {here + "\n"}
    with pytest.raises(ValueError, match="descriptions: expected a sequence of texts"):
        enc.encode("one string")


def test_prototype_with_text_encoder_recognises_unseen_classes(encoders) -> None:
    """Class embeddings from sentences; features are a linear image of them plus noise."""
    names = [
        "red circle",
        "red square",
        "blue circle",
        "blue square",
        "green circle",
        "green square",
        "red triangle",
        "blue triangle",
        "green triangle",
        "yellow circle",
        "yellow square",
        "yellow triangle",
    ]
    E = encoders.create("hashed-text", dim=256).encode(names)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(256, 48))
    seen, unseen = np.arange(9), np.arange(9, 12)

    def draw(classes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(classes, n)
        return E[y] @ A + 0.3 * rng.normal(size=(y.size, 48)), y

    X, y = draw(seen, 30)
    Xu, yu = draw(unseen, 20)
    model = PrototypeZSL(alpha=1.0).fit(X, y, E)
    acc = zsl_accuracy(yu, model.decision_function(Xu), np.arange(12), unseen)
    assert acc > 1 / 3 + 0.4, acc


def test_zeroshot_is_reachable_from_pyxfer_without_importing_torch(tmp_path: Path) -> None:
    code = (
        "import sys, pyxfer; assert 'pyxfer.zeroshot' not in sys.modules; "
        "z = pyxfer.zeroshot; assert z.ESZSL and z.BilinearZSL; "
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
