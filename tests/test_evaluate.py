"""Evaluation protocols: kNN vs a brute-force reference, linear probe, few-shot, feature cache,
plots, results JSON and the ``pyxfer eval`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pyxfer
from pyxfer.cli import main
from pyxfer.data import ImageStore, few_shot, load_dataset
from pyxfer.evaluate import (
    Evaluation,
    Result,
    evaluate,
    extract_features,
    few_shot_probe,
    fit_linear,
    format_table,
    knn_accuracy,
    linear_probe,
    load_results,
    mean_per_class_accuracy,
    nearest_centroid_predict,
    per_class_accuracy,
    plot_confusion,
    plot_feature_map,
    save_results,
    select_regularization,
)
from pyxfer.modelio import save_model
from pyxfer.ops import preprocess

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny problems: one torch and one BLAS thread avoid oversubscribing a shared CPU."""
    import sklearn.linear_model
    import sklearn.manifold  # noqa: F401  (load their BLAS before limiting it)
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


def blobs(n_per_class, num_classes, dim, spread, seed):
    """Gaussian classes around random unit centres: float32 (N, D), int64 (N,)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.repeat(np.arange(num_classes), n_per_class)
    x = centres[y] + spread * rng.normal(size=(y.size, dim))
    perm = rng.permutation(y.size)
    return x[perm].astype(np.float32), y[perm].astype(np.int64)


# -- kNN -----------------------------------------------------------------------------------------
def reference_knn(train, ytr, test, k, temperature, num_classes):
    """Brute force: full cosine matrix, top-k by a stable sort, exp(s/T) votes."""
    a = train / np.linalg.norm(train, axis=1, keepdims=True)
    q = test / np.linalg.norm(test, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ a.T.astype(np.float64)  # (M, N)
    nn = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # (M, k)
    scores = np.zeros((test.shape[0], num_classes))
    for i in range(test.shape[0]):
        for j in nn[i]:
            scores[i, ytr[j]] += np.exp(sims[i, j] / temperature)
    return scores


@pytest.mark.parametrize(("k", "temperature"), [(1, 0.07), (10, 0.07), (50, 0.5)])
def test_knn_accuracy_matches_brute_force(k, temperature) -> None:
    x, y = blobs(40, 7, 16, 0.9, seed=k)
    train, ytr, test, yte = x[:200], y[:200], x[200:], y[200:]
    res = knn_accuracy(train, ytr, test, yte, k=k, temperature=temperature)
    ref = reference_knn(train, ytr, test, k, temperature, 7)
    np.testing.assert_allclose(res.scores, ref, rtol=1e-4)
    pred = ref.argmax(1)
    np.testing.assert_array_equal(res.predictions, pred)
    assert res.top1 == pytest.approx((pred == yte).mean())
    top5 = np.argsort(-ref, axis=1, kind="stable")[:, :5]
    assert res.top5 == pytest.approx((top5 == yte[:, None]).any(1).mean())
    recalls = [(pred[yte == c] == c).mean() for c in range(7)]
    assert res.per_class_mean == pytest.approx(np.mean(recalls))
    assert 0.2 < res.top1 < 1.0 and res.top5 > res.top1  # the case is neither trivial nor hopeless
    assert res.k == k and res.temperature == temperature


def test_knn_k_is_clamped_to_the_bank() -> None:
    x, y = blobs(5, 3, 8, 0.3, seed=0)
    res = knn_accuracy(x, y, x, y, k=200)
    assert res.k == 15
    ref = reference_knn(x, y, x, 15, 0.07, 3)
    np.testing.assert_array_equal(res.predictions, ref.argmax(1))


def test_knn_bad_input() -> None:
    x, y = blobs(5, 3, 8, 0.3, seed=0)
    with pytest.raises(ValueError, match="test_feats: expected D = 8"):
        knn_accuracy(x, y, x[:, :4], y)
    with pytest.raises(ValueError, match="test_labels: expected class ids >= 0"):
        knn_accuracy(x, y, x, np.full_like(y, -1))
    with pytest.raises(ValueError, match="temperature"):
        knn_accuracy(x, y, x, y, temperature=0.0)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="train_feats: expected finite"):
        knn_accuracy(bad, y, x, y)
    with pytest.raises(ValueError, match="train_labels: expected shape"):
        knn_accuracy(x, y[:-1], x, y)


def test_per_class_mean_on_an_imbalanced_hand_case() -> None:
    # 8 images of class 0, 2 of class 1, everything predicted 0: top-1 0.8, per-class (1 + 0) / 2
    y_true = np.array([0] * 8 + [1] * 2)
    y_pred = np.zeros(10, np.int64)
    assert mean_per_class_accuracy(y_true, y_pred) == pytest.approx(0.5)
    # three classes present (3/3 not), recalls 2/3, 1/1, 1/2; class 3 absent is not averaged
    t = np.array([0, 0, 0, 1, 2, 2])
    p = np.array([0, 1, 0, 1, 2, 0])
    rec = per_class_accuracy(t, p, 4)
    np.testing.assert_allclose(rec[:3], [2 / 3, 1.0, 0.5])
    assert np.isnan(rec[3])
    assert mean_per_class_accuracy(t, p, 4) == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    # the same through knn_accuracy: every test image sits next to the class-0 bank row
    bank = np.eye(2, dtype=np.float32)
    test = np.tile(np.array([[1.0, 0.1]], np.float32), (10, 1))
    res = knn_accuracy(bank, [0, 1], test, y_true, k=1)
    assert res.top1 == pytest.approx(0.8)
    assert res.per_class_mean == pytest.approx(0.5)


# -- linear probe --------------------------------------------------------------------------------
def test_linear_probe_learns_separable_features() -> None:
    x, y = blobs(60, 4, 16, 0.35, seed=1)
    res = linear_probe(x[:160], y[:160], x[160:], y[160:], seed=0)
    assert res.top1 > 0.9  # chance is 0.25
    assert res.per_class_mean > 0.9
    assert res.C in res.val_accuracy and len(res.val_accuracy) == 7
    assert res.n_train + res.n_val == 160
    assert res.predictions.shape == (80,)


def test_linear_probe_choice_of_C_never_sees_the_test_split() -> None:
    x, y = blobs(40, 5, 12, 0.8, seed=2)
    train, ytr, test, yte = x[:150], y[:150], x[150:], y[150:]
    res = linear_probe(train, ytr, test, yte, seed=3)
    scrambled = np.random.default_rng(0).permutation(yte)
    scrambled = (scrambled + 1) % 5
    res2 = linear_probe(train, ytr, test, scrambled, seed=3)
    assert res2.C == res.C and res2.val_accuracy == res.val_accuracy
    np.testing.assert_array_equal(res2.predictions, res.predictions)
    assert res2.top1 != res.top1
    # the validation split is a stratified part of the training rows, disjoint from the fit rows
    choice = select_regularization(train, ytr, seed=3)
    assert choice.C == res.C and choice.val_accuracy == res.val_accuracy
    fit_idx, val_idx = choice.fit_idx, choice.val_idx
    assert np.intersect1d(fit_idx, val_idx).size == 0
    assert np.union1d(fit_idx, val_idx).size == 150
    per_class = np.bincount(ytr, minlength=5)
    assert (np.abs(np.bincount(ytr[val_idx], minlength=5) - 0.2 * per_class) < 1).all()


def test_linear_probe_sweep_prefers_regularisation_on_noise_dimensions() -> None:
    # 2 informative dimensions and 100 noise dimensions, few samples: a weak penalty overfits
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], 40)
    x = rng.normal(size=(80, 102)).astype(np.float32)
    x[:, :2] += 1.5 * (2 * y[:, None] - 1)
    choice = select_regularization(x, y, seed=0)
    acc = choice.val_accuracy
    assert acc[choice.C] >= acc[100.0]
    assert choice.C < 100.0


def test_ties_in_validation_accuracy_go_to_the_lower_validation_loss() -> None:
    # tiny validation split (one image per class): accuracies tie, the cross-entropy decides
    x, y = blobs(5, 4, 8, 0.3, seed=8)
    choice = select_regularization(x, y, val_fraction=0.2, seed=0)
    acc, loss = choice.val_accuracy, choice.val_loss
    tied = [c for c in acc if acc[c] == max(acc.values())]
    assert len(tied) > 1
    assert min(tied, key=lambda c: (loss[c], c)) == choice.C
    # the loss is the mean negative log-likelihood of the refitted classifier's softmax
    clf = fit_linear(x[choice.fit_idx], y[choice.fit_idx], choice.C)
    z = clf.decision_function(x[choice.val_idx]).astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    nll = -np.log(p[np.arange(len(choice.val_idx)), y[choice.val_idx]]).mean()
    assert loss[choice.C] == pytest.approx(nll, rel=1e-5)


def test_linear_backends_agree() -> None:
    x, y = blobs(50, 3, 10, 0.6, seed=5)
    a = fit_linear(x, y, 0.1, backend="sklearn")
    b = fit_linear(x, y, 0.1, backend="torch")
    np.testing.assert_allclose(a.decision_function(x).argmax(1), b.decision_function(x).argmax(1))
    # same objective, same optimum: logits agree up to a per-row constant (softmax invariance)
    la, lb = a.decision_function(x), b.decision_function(x)
    la, lb = la - la.mean(1, keepdims=True), lb - lb.mean(1, keepdims=True)
    np.testing.assert_allclose(la, lb, atol=2e-2)


def test_linear_probe_bad_input() -> None:
    x, y = blobs(10, 2, 4, 0.5, seed=0)
    with pytest.raises(ValueError, match="Cs"):
        linear_probe(x, y, x, y, Cs=[0.0])
    with pytest.raises(ValueError, match="val_fraction"):
        linear_probe(x, y, x, y, val_fraction=1.0)
    with pytest.raises(ValueError, match="backend"):
        linear_probe(x, y, x, y, backend="gpu")
    with pytest.raises(ValueError, match="too few"):
        linear_probe(x[:2], y[:2], x, y)


# -- few-shot ------------------------------------------------------------------------------------
def test_few_shot_mean_std_over_draws() -> None:
    x, y = blobs(30, 5, 12, 0.3, seed=6)
    train, ytr, test, yte = x[:100], y[:100], x[100:], y[100:]
    out = few_shot_probe(train, ytr, test, yte, shots=(1, 3), draws=4, seed=10)
    assert list(out) == [1, 3]
    one, three = out[1], out[3]
    assert one.method == "centroid" and three.method == "linear"
    for r, k in ((one, 1), (three, 3)):
        assert r.seeds == [10, 11, 12, 13]
        assert len(r.accuracies) == len(r.per_class) == 4
        assert r.n_train == 5 * k
        assert r.mean == pytest.approx(np.mean(r.accuracies))
        assert r.std == pytest.approx(np.std(r.accuracies, ddof=1))
        assert r.per_class_std == pytest.approx(np.std(r.per_class, ddof=1))
    assert len(three.chosen_C) == 4 and not one.chosen_C
    assert len(set(one.accuracies)) > 1  # the draws differ
    # draw 2 of the 1-shot probe, recomputed by hand
    idx = few_shot(ytr, 1, seed=12)
    pred = nearest_centroid_predict(train[idx], ytr[idx], test)
    assert one.accuracies[2] == pytest.approx((pred == yte).mean())
    assert three.mean > 0.7 and one.mean > 0.4  # chance is 0.2


def test_nearest_centroid_matches_reference() -> None:
    x, y = blobs(6, 4, 8, 0.9, seed=7)
    q = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    pred = nearest_centroid_predict(x, y, q)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    cents = np.stack([xn[y == c].mean(0) for c in range(4)])
    cents /= np.linalg.norm(cents, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    np.testing.assert_array_equal(pred, (qn @ cents.T).argmax(1))


def test_few_shot_errors() -> None:
    x, y = blobs(3, 2, 4, 0.5, seed=0)
    with pytest.raises(ValueError, match="class 0 has 3"):
        few_shot_probe(x, y, x, y, shots=(5,))
    with pytest.raises(ValueError, match="method"):
        few_shot_probe(x, y, x, y, shots=(1,), method="svm")
    with pytest.raises(ValueError, match="needs >= 2 shots"):
        few_shot_probe(x, y, x, y, shots=(1,), method="linear")


# -- feature extraction and cache ------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_small() -> ImageStore:
    store = load_dataset("digits")
    return store.subset(np.arange(200))


def counting(bb):
    """Count forward_features calls on one backbone instance."""
    calls = {"n": 0}
    inner = bb.forward_features

    def wrapped(x):
        calls["n"] += 1
        return inner(x)

    bb.forward_features = wrapped
    return calls


def test_extract_features_equals_manual_forward(digits_small) -> None:
    torch.manual_seed(0)
    bb = pyxfer.create_backbone("lenet", img_size=8)
    bb.train()
    feats = extract_features(bb, digits_small, batch_size=64, progress=False)
    assert feats.dtype == np.float32 and feats.shape == (200, 128)
    assert bb.training  # mode restored
    bb.eval()
    x = preprocess(digits_small.images[:5], 8, 8, (0.5,), (0.5,))
    with torch.no_grad():
        ref = bb(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(feats[:5], ref, rtol=1e-5, atol=1e-6)


def test_extract_features_ragged_and_channel_conversion() -> None:
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (h, w, 1), dtype=np.uint8) for h, w in [(8, 8), (12, 9), (7, 16)]
    ]
    store = ImageStore(images, [0, 1, 0])
    torch.manual_seed(0)
    bb = pyxfer.create_backbone("lenet", img_size=8, in_chans=3).eval()
    feats = extract_features(bb, store, batch_size=2, progress=False)
    for i, im in enumerate(images):
        x = preprocess(np.repeat(im, 3, axis=-1), 8, 8, bb.input_spec.mean, bb.input_spec.std)
        with torch.no_grad():
            ref = bb(torch.from_numpy(x)[None]).numpy()[0]
        np.testing.assert_allclose(feats[i], ref, rtol=1e-5, atol=1e-6)


def test_feature_cache_hit_miss_and_invalidation(digits_small, tmp_path) -> None:
    torch.manual_seed(0)
    bb = pyxfer.create_backbone("lenet", img_size=8)
    calls = counting(bb)
    kw = {"batch_size": 100, "progress": False, "cache_dir": tmp_path}
    first = extract_features(bb, digits_small, **kw)
    assert calls["n"] == 2  # two batches computed
    assert len(list(tmp_path.glob("*.npy"))) == 1 and len(list(tmp_path.glob("*.json"))) == 1
    second = extract_features(bb, digits_small, **kw)
    assert calls["n"] == 2  # loaded from disk
    np.testing.assert_array_equal(first, second)
    # other preprocessing, other data, other weights: each recomputes into a new entry
    extract_features(bb, digits_small, size=12, **kw)
    assert calls["n"] == 4
    extract_features(bb, digits_small.subset(np.arange(100)), **kw)
    assert calls["n"] == 5
    with torch.no_grad():
        bb.stage1[0][0].weight.add_(0.01)
    changed = extract_features(bb, digits_small, **kw)
    assert calls["n"] == 7
    assert not np.array_equal(changed, first)
    assert len(list(tmp_path.glob("*.npy"))) == 4
    # a different model of the same architecture also misses
    torch.manual_seed(1)
    other = pyxfer.create_backbone("lenet", img_size=8)
    other_calls = counting(other)
    extract_features(other, digits_small, **kw)
    assert other_calls["n"] == 2
    # a damaged entry is recomputed, not trusted
    for meta in tmp_path.glob("*.json"):
        doc = json.loads(meta.read_text())
        doc["data"]["count"] = -1
        meta.write_text(json.dumps(doc))
    again = extract_features(bb, digits_small, **kw)
    assert calls["n"] == 9
    np.testing.assert_array_equal(again, changed)


def test_extract_features_bad_input(digits_small) -> None:
    bb = pyxfer.create_backbone("lenet", img_size=8)
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(bb, digits_small, batch_size=0)
    with pytest.raises(ValueError, match="store"):
        extract_features(bb, np.zeros((2, 8, 8, 1), np.uint8))
    with pytest.raises(ValueError, match="crop_pct"):
        extract_features(bb, digits_small, crop_pct=0.0)
    with pytest.raises(ValueError, match="move the backbone"):
        extract_features(bb, digits_small, device="meta")


# -- plots and results -----------------------------------------------------------------------------
def test_plots_write_png(tmp_path) -> None:
    from PIL import Image

    x, y = blobs(20, 3, 6, 0.5, seed=0)
    pred = np.where(np.arange(y.size) % 7 == 0, (y + 1) % 3, y)
    names = ["cat", "dog", "bird"]
    for path in (
        plot_confusion(y, pred, names, tmp_path / "cm.png"),
        plot_feature_map(x, y, names, tmp_path / "pca.png"),
        plot_feature_map(x, y, names, tmp_path / "tsne.png", method="tsne", max_points=40),
    ):
        data = Path(path).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 2000
        with Image.open(path) as im:
            assert im.size[0] > 200 and im.size[1] > 200
    with pytest.raises(ValueError, match="class names"):
        plot_confusion(y, pred, names[:2], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="method"):
        plot_feature_map(x, y, names, tmp_path / "bad.png", method="umap")
    assert not (tmp_path / "bad.png").exists()


def test_results_json_round_trip_and_table(tmp_path) -> None:
    proto = {"protocol": "knn", "k": 200, "temperature": 0.07, "seeds": np.arange(2)}
    results = [
        Result("knn/top1", 0.75, proto),
        Result("fewshot-5/top1", 0.5, {"protocol": "fewshot", "shots": 5}, std=0.02),
        Result("linear/top1", float("nan"), {"protocol": "linear", "C": np.float64(0.1)}),
    ]
    save_results(tmp_path / "r.json", results, {"data": "digits"})
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["format"] == "pyxfer-eval" and doc["meta"] == {"data": "digits"}
    assert doc["results"][0]["protocol"]["seeds"] == [0, 1]
    assert doc["results"][2]["value"] is None
    back, _ = load_results(tmp_path / "r.json")
    assert back[0].protocol["k"] == 200 and back[1].std == 0.02 and np.isnan(back[2].value)
    table = format_table(results)
    assert "75.00%" in table and "50.00% ± 2.00" in table and "C=0.1" in table
    assert "n/a" in table


# -- evaluate(): the pipeline from Python ----------------------------------------------------------
def test_evaluate_a_backbone_matches_the_protocols_run_by_hand() -> None:
    from pyxfer.data import stratified_split

    torch.manual_seed(0)
    bb = pyxfer.create_backbone("lenet", img_size=8)
    ev = evaluate(bb, "digits", protocols="knn,linear", Cs=(1.0,), k=20, progress=False)
    assert isinstance(ev, Evaluation) and pyxfer.evaluate.evaluate is evaluate
    by_metric = {r.metric: r for r in ev.results}
    assert set(by_metric) == {
        "knn/top1",
        "knn/top5",
        "knn/per_class_mean",
        "linear/top1",
        "linear/per_class_mean",
    }
    # the same numbers as the protocols called on the same split by hand
    store = load_dataset("digits")
    feats = extract_features(bb, store, size=8, progress=False)
    tr, te = stratified_split(store.labels, (0.8, 0.2), seed=0)
    knn = knn_accuracy(feats[tr], store.labels[tr], feats[te], store.labels[te], 20, 0.07)
    lin = linear_probe(feats[tr], store.labels[tr], feats[te], store.labels[te], Cs=[1.0], seed=0)
    assert by_metric["knn/top1"].value == pytest.approx(knn.top1)
    assert by_metric["knn/top5"].value == pytest.approx(knn.top5)
    assert by_metric["linear/top1"].value == pytest.approx(lin.top1)
    proto = by_metric["knn/top1"].protocol
    assert proto["k"] == 20 and proto["data"] == "digits" and proto["n_test"] == len(te)
    assert proto["model"]["backbone"] == "LeNet" and len(proto["model"]["state_sha256"]) == 64
    assert ev.meta["protocols"] == ["knn", "linear"] and "files" not in ev.meta
    assert ev.to_json()["results"] == [r.to_dict() for r in ev.results]


def test_evaluate_a_run_directory_with_test_data_writes_results(tmp_path) -> None:
    torch.manual_seed(0)
    bb = pyxfer.create_backbone("lenet", img_size=8)
    save_model(
        tmp_path / "run" / "model", bb, backbone_name="lenet", backbone_kwargs={"img_size": 8}
    )
    digits = load_dataset("digits")
    train, test = digits.subset(np.arange(0, 1000)), digits.subset(np.arange(1000, 1300))
    ev = evaluate(
        tmp_path / "run",
        train,
        test_data=test,
        protocols=["knn"],
        progress=False,
        out=tmp_path / "eval",
    )
    proto = ev.results[0].protocol
    assert proto["n_train"] == 1000 and proto["n_test"] == 300
    assert proto["split"]["kind"] == "test-data"
    model = proto["model"]
    assert model["model_dir"] == str(tmp_path / "run" / "model") and model["backbone"] == "lenet"
    assert len(model["file_sha256"]) == 64
    back, meta = load_results(tmp_path / "eval" / "results.json")
    assert [r.metric for r in back] == [r.metric for r in ev.results]
    assert meta["files"] == ev.meta["files"] and (tmp_path / "eval" / "confusion.png").is_file()


def test_evaluate_errors_name_the_argument(tmp_path) -> None:
    bb = pyxfer.create_backbone("lenet", img_size=8)
    digits = load_dataset("digits")
    odd = ImageStore(digits.images[:20], digits.labels[:20] % 2, ["even", "odd"])
    with pytest.raises(ValueError, match="protocols: expected a non-empty subset of knn,linear"):
        evaluate(bb, "digits", protocols="knn,svm")
    with pytest.raises(ValueError, match="--protocol: expected"):
        evaluate(bb, "digits", protocols="", argument_names={"protocols": "--protocol"})
    with pytest.raises(ValueError, match=r"test_fraction: expected a fraction in \(0, 1\)"):
        evaluate(bb, "digits", test_fraction=1.0)
    with pytest.raises(ValueError, match="test_data: expected the classes of data"):
        evaluate(bb, digits, test_data=odd, protocols="knn", progress=False)
    unlabelled = ImageStore(digits.images[:5], np.full(5, -1), digits.class_names)
    with pytest.raises(ValueError, match=r"data: .* has no labelled images"):
        evaluate(bb, unlabelled)
    with pytest.raises(ValueError, match="model: expected a run or model directory"):
        evaluate(object(), "digits")


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_eval_digits_random_lenet(tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    argv = [
        "eval",
        "--backbone",
        "lenet",
        "-o",
        "img_size=8",
        "--data",
        "digits",
        "--shots",
        "1,5",
        "--draws",
        "2",
        "--Cs",
        "0.01,1",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        "--json",
    ]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    doc = json.loads((out / "results.json").read_text())
    assert printed["results"] == doc["results"]
    by_metric = {r["metric"]: r for r in doc["results"]}
    for m in (
        "knn/top1",
        "knn/top5",
        "knn/per_class_mean",
        "linear/top1",
        "linear/per_class_mean",
        "fewshot-1/top1",
        "fewshot-5/top1",
    ):
        assert m in by_metric
    knn = by_metric["knn/top1"]["protocol"]
    assert knn["k"] == 200 and knn["temperature"] == 0.07
    assert knn["image_size"] == 8 and knn["data"] == "digits"
    assert knn["split"] == {"kind": "stratified", "test_fraction": 0.2, "seed": 0}
    assert knn["n_train"] + knn["n_test"] == 1797
    assert len(knn["model"]["state_sha256"]) == 64
    lin = by_metric["linear/top1"]["protocol"]
    assert lin["C"] in (0.01, 1.0) and lin["Cs"] == [0.01, 1.0]
    assert by_metric["linear/top1"]["value"] > 0.5  # random conv features are far above chance
    fs = by_metric["fewshot-5/top1"]
    assert fs["protocol"]["seeds"] == [0, 1] and fs["std"] is not None
    for name in ("confusion.png", "features_map.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC


def test_cli_eval_run_directory_and_errors(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    bb = pyxfer.create_backbone("lenet", img_size=8)
    save_model(
        tmp_path / "run" / "model", bb, backbone_name="lenet", backbone_kwargs={"img_size": 8}
    )
    argv = ["eval", str(tmp_path / "run"), "--data", "digits", "--protocol", "knn", "--k", "20"]
    assert main([*argv, "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "knn/top1" in table and "k=20" in table and "linear" not in table
    assert main([*argv, "--backbone", "lenet"]) == 2
    assert "exactly one" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--data", "digits"]) == 2
    assert "model.json" in capsys.readouterr().err
    assert main(["eval", "--backbone", "lenet", "--data", "digits", "--protocol", "svm"]) == 2
    assert "--protocol" in capsys.readouterr().err


def test_knn_and_cli_help_do_not_import_torch(tmp_path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from pyxfer.evaluate import knn_accuracy, format_table\n"
        "x = np.eye(3, dtype=np.float32)\n"
        "assert knn_accuracy(x, [0, 1, 2], x, [0, 1, 2], k=1).top1 == 1.0\n"
        "from pyxfer.cli import build_parser\n"
        "build_parser().parse_args(['eval', '--data', 'digits'])\n"
        "print(sorted(m for m in ('torch', 'matplotlib', 'sklearn') if m in sys.modules))\n"
    )
    # run outside the checkout so the installed package (with _C) is imported
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert out.stdout.strip() == "[]"


def test_cli_eval_separate_test_data(tmp_path, capsys) -> None:
    digits = load_dataset("digits")
    digits.subset(np.arange(0, 1000)).save(tmp_path / "train")
    digits.subset(np.arange(1000, 1300)).save(tmp_path / "test")
    other = ImageStore(digits.images[:20], digits.labels[:20] % 2, ["even", "odd"])
    other.save(tmp_path / "other")
    common = ["eval", "--backbone", "lenet", "-o", "img_size=8", "--protocol", "knn,linear"]
    argv = [*common, "--data", f"packed:{tmp_path / 'train'}", "--Cs", "1", "--json"]
    assert main([*argv, "--test-data", f"packed:{tmp_path / 'test'}", "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    proto = doc["results"][0]["protocol"]
    assert proto["n_train"] == 1000 and proto["n_test"] == 300
    assert proto["split"] == {"kind": "test-data", "test_data": f"packed:{tmp_path / 'test'}"}
    assert {r["metric"] for r in doc["results"]} >= {"knn/top1", "linear/top1"}
    assert main([*argv, "--test-data", f"packed:{tmp_path / 'other'}"]) == 2
    assert "classes of --data" in capsys.readouterr().err
