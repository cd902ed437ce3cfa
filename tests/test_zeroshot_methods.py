"""Zero-shot methods learn unseen classes from descriptions; closed forms; bad input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from pyxfer.zeroshot import (
    DAP,
    ESZSL,
    BilinearZSL,
    CalibratedStacking,
    ClassDescriptions,
    PrototypeZSL,
    gzsl_accuracy,
    zsl_accuracy,
)
from pyxfer.zeroshot import mean_per_class_accuracy as per_class_accuracy
from pyxfer.zeroshot.eszsl import eszsl_solve

NUM_CLASSES, NUM_SEEN, NUM_ATTR, DIM = 25, 20, 12, 40


@dataclass
class Problem:
    S: np.ndarray  # (C, A) binary class attributes
    A: np.ndarray  # (A, D) attributes -> features
    X: np.ndarray  # training features, seen classes only
    y: np.ndarray
    Xs: np.ndarray  # test images of seen classes
    ys: np.ndarray
    Xu: np.ndarray  # test images of unseen classes
    yu: np.ndarray
    seen: np.ndarray
    unseen: np.ndarray


def make_problem(seed: int = 0, noise: float = 3.0, per_class: int = 30) -> Problem:
    """Features = attributes @ A + noise; unseen classes never appear in training."""
    rng = np.random.default_rng(seed)
    while True:
        S = (rng.uniform(size=(NUM_CLASSES, NUM_ATTR)) < 0.4).astype(float)
        dist = (S[:, None] != S[None]).sum(-1) + np.eye(NUM_CLASSES, dtype=int) * 99
        if dist.min() >= 2 and (S[:NUM_SEEN].std(0) > 0).all():
            break
    A = rng.normal(size=(NUM_ATTR, DIM))
    seen, unseen = np.arange(NUM_SEEN), np.arange(NUM_SEEN, NUM_CLASSES)

    def draw(classes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(classes, n)
        return S[y] @ A + noise * rng.normal(size=(y.size, DIM)), y

    X, y = draw(seen, per_class)
    Xs, ys = draw(seen, 10)
    Xu, yu = draw(unseen, 20)
    return Problem(S, A, X, y, Xs, ys, Xu, yu, seen, unseen)


@pytest.fixture(scope="module")
def problem() -> Problem:
    return make_problem()


CHANCE = 1 / (NUM_CLASSES - NUM_SEEN)  # 0.2

METHODS = {
    "eszsl": lambda: ESZSL(),
    "dap": lambda: DAP(),
    "prototype": lambda: PrototypeZSL(),
    "bilinear-sje": lambda: BilinearZSL(loss="sje", max_epochs=15, patience=3, seed=0),
    "bilinear-ale": lambda: BilinearZSL(loss="ale", max_epochs=15, patience=3, seed=0),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_recovers_unseen_classes_far_above_chance(problem: Problem, name: str) -> None:
    model = METHODS[name]().fit(problem.X, problem.y, problem.S)
    assert model.seen_classes_.tolist() == problem.seen.tolist()
    scores = model.decision_function(problem.Xu)
    assert scores.shape == (problem.Xu.shape[0], NUM_CLASSES)
    acc = zsl_accuracy(problem.yu, scores, np.arange(NUM_CLASSES), problem.unseen)
    assert acc >= CHANCE + 0.5, f"{name}: ZSL accuracy {acc:.3f}, chance {CHANCE}"
    # and seen classes are still recognised among all classes
    acc_seen = per_class_accuracy(problem.ys, model.predict(problem.Xs))
    assert acc_seen > 0.6, f"{name}: seen accuracy {acc_seen:.3f}"


def test_eszsl_closed_form_solves_its_objective() -> None:
    """V from the closed form = the solution of the objective's normal equations in vec(V)."""
    rng = np.random.default_rng(3)
    n, d, z, a = 9, 4, 3, 2
    X, S = rng.normal(size=(n, d)), rng.normal(size=(z, a))
    Y = np.where(rng.integers(0, z, n)[:, None] == np.arange(z), 1.0, -1.0)
    gamma, lam = 0.7, 2.5
    # ||X V S^T - Y||^2 + gamma ||V S^T||^2 + lam ||X V||^2 + gamma lam ||V||^2 is a linear
    # least-squares problem in vec(V) (column-major: vec(P V Q) = (Q^T kron P) vec(V))
    rows = [
        np.kron(S, X),
        np.sqrt(gamma) * np.kron(S, np.eye(d)),
        np.sqrt(lam) * np.kron(np.eye(a), X),
        np.sqrt(gamma * lam) * np.eye(d * a),
    ]
    M = np.vstack(rows)
    b = np.concatenate([Y.ravel(order="F"), np.zeros(M.shape[0] - Y.size)])
    v = np.linalg.solve(M.T @ M, M.T @ b)  # normal equations
    V_direct = v.reshape(d, a, order="F")
    np.testing.assert_allclose(eszsl_solve(X, Y, S, gamma, lam), V_direct, rtol=1e-9, atol=1e-12)
    # the estimator (without centring) computes the same V
    y = np.argmax(Y, axis=1)
    model = ESZSL(gamma=gamma, lam=lam, center=False).fit(X, y, S)
    Yt = np.where(y[:, None] == np.unique(y)[None], 1.0, -1.0)
    St = S[np.unique(y)]
    np.testing.assert_allclose(model.V_, eszsl_solve(X, Yt, St, gamma, lam), rtol=1e-12)


def test_eszsl_grid_path_equals_the_closed_form(problem: Problem) -> None:
    """The eigendecomposition shortcut used by the search gives the closed-form V."""
    model = ESZSL(gamma=1.0, lam=1.0)
    model._select_hyperparameters(problem.X, problem.y, problem.S, np.arange(NUM_CLASSES))
    combos = [{"gamma": 0.01, "lam": 3.0}, {"gamma": 50.0, "lam": 0.2}]
    for params, clone in zip(
        combos,
        model._fit_grid(combos, problem.X, problem.y, problem.S, np.arange(NUM_CLASSES)),
        strict=True,
    ):
        direct = ESZSL(**params).fit(problem.X, problem.y, problem.S)
        np.testing.assert_allclose(clone.V_, direct.V_, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(clone.mean_, direct.mean_)


def test_eszsl_regularisers_are_chosen_on_validation_classes_only(problem: Problem) -> None:
    model = ESZSL(param_grid={"gamma": [0.1, 10.0], "lam": [0.1, 10.0]}).fit(
        problem.X, problem.y, problem.S
    )
    assert model.gamma_ in (0.1, 10.0) and model.lam_ in (0.1, 10.0)
    assert len(model.cv_results_) == 4
    best = max(model.cv_results_, key=lambda r: r["val_accuracy"])
    assert (best["gamma"], best["lam"]) == (model.gamma_, model.lam_)
    # the search only ever sees seen classes: unseen rows changing changes nothing
    S2 = problem.S.copy()
    S2[problem.unseen] = 0.0
    again = ESZSL(param_grid={"gamma": [0.1, 10.0], "lam": [0.1, 10.0]}).fit(
        problem.X, problem.y, S2
    )
    assert again.cv_results_ == model.cv_results_
    np.testing.assert_allclose(again.V_, model.V_)


def test_class_table_extends_at_predict_time_without_refitting(problem: Problem) -> None:
    names = [f"c{i}" for i in range(NUM_CLASSES)]
    seen_table = ClassDescriptions(problem.S[problem.seen], problem.seen, names[:NUM_SEEN])
    model = ESZSL(gamma=1.0, lam=1.0).fit(problem.X, problem.y, seen_table)
    assert model.classes_.tolist() == problem.seen.tolist()
    V = model.V_.copy()
    # deploy: add the five new classes' descriptions, nothing else
    new = ClassDescriptions(problem.S[problem.unseen], problem.unseen, names[NUM_SEEN:])
    full = seen_table.extend(new)
    pred = model.predict(problem.Xu, full)
    assert np.isin(pred, problem.unseen).mean() > 0.5
    assert per_class_accuracy(problem.yu, model.predict(problem.Xu, new)) > CHANCE + 0.5
    np.testing.assert_array_equal(model.V_, V)
    # ids that are not 0..C-1 work too
    ids = problem.unseen * 100 + 7
    pred = model.predict(problem.Xu, problem.S[problem.unseen], class_ids=ids)
    assert per_class_accuracy(problem.yu * 100 + 7, pred) > CHANCE + 0.5
    # subsetting the fit table by id
    assert set(model.predict(problem.Xs, class_ids=[0, 1])) <= {0, 1}


def test_calibrated_stacking_shifts_predictions_to_unseen(problem: Problem) -> None:
    Xall = np.vstack([problem.Xs, problem.Xu])
    yall = np.concatenate([problem.ys, problem.yu])
    model = ESZSL(gamma=1.0, lam=1.0)
    gz = CalibratedStacking(model).fit(problem.X, problem.y, problem.S)
    assert np.isfinite(gz.gamma_) and len(gz.fold_results_) >= 2
    raw = model.decision_function(Xall)
    cal = gz.decision_function(Xall)
    seen_cols = np.isin(np.arange(NUM_CLASSES), problem.seen)
    np.testing.assert_allclose(cal[:, seen_cols], raw[:, seen_cols] - gz.gamma_)
    np.testing.assert_allclose(cal[:, ~seen_cols], raw[:, ~seen_cols])
    # a large gamma sends everything to unseen classes, a very negative one to seen ones
    high = CalibratedStacking(ESZSL(gamma=1.0, lam=1.0), gamma=1e6).fit(
        problem.X, problem.y, problem.S
    )
    low = CalibratedStacking(ESZSL(gamma=1.0, lam=1.0), gamma=-1e6).fit(
        problem.X, problem.y, problem.S
    )
    assert np.isin(high.predict(Xall), problem.unseen).all()
    assert np.isin(low.predict(Xall), problem.seen).all()
    r = gzsl_accuracy(yall, gz.predict(Xall), problem.seen, problem.unseen)
    assert r.h > 0.5, r


def test_dap_predicts_attribute_probabilities(problem: Problem) -> None:
    model = DAP().fit(problem.X, problem.y, problem.S)
    assert model.binary_.all()
    P = model.predict_attributes(problem.Xu)
    assert P.shape == (problem.Xu.shape[0], NUM_ATTR) and ((P >= 0) & (P <= 1)).all()
    truth = problem.S[problem.yu]
    assert ((P > 0.5) == (truth > 0.5)).mean() > 0.8
    cont = DAP(attribute_type="continuous").fit(problem.X, problem.y, problem.S)
    assert not cont.binary_.any()
    acc = zsl_accuracy(
        problem.yu, cont.decision_function(problem.Xu), np.arange(NUM_CLASSES), problem.unseen
    )
    assert acc >= CHANCE + 0.5
    with pytest.raises(ValueError, match="class_descriptions: attribute_type='binary'"):
        DAP(attribute_type="binary").fit(problem.X, problem.y, problem.S + 0.5)


def test_bilinear_is_reproducible_and_early_stops(problem: Problem) -> None:
    a = BilinearZSL(seed=3, max_epochs=8, patience=2).fit(problem.X, problem.y, problem.S)
    b = BilinearZSL(seed=3, max_epochs=8, patience=2).fit(problem.X, problem.y, problem.S)
    np.testing.assert_array_equal(a.W_, b.W_)
    assert a.epochs_ in range(1, 9) and len(a.cv_results_) >= a.epochs_
    assert a.epochs_ == 1 + int(np.argmax([r["val_accuracy"] for r in a.cv_results_]))
    c = BilinearZSL(seed=4, epochs=2).fit(problem.X, problem.y, problem.S)
    assert c.epochs_ == 2 and not np.array_equal(c.W_, a.W_)


class TinyBackbone(torch.nn.Module):
    """Images (N, 1, 5, 8) -> features (N, 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(DIM, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x.flatten(1)))


def test_bilinear_fine_tunes_a_backbone() -> None:
    problem = make_problem(seed=1, noise=1.0)
    torch.manual_seed(0)
    backbone = TinyBackbone()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    images = problem.X.reshape(-1, 1, 5, 8).astype(np.float32)
    model = BilinearZSL(
        backbone=backbone, max_epochs=20, patience=5, lr=1e-2, backbone_lr=1e-3, seed=0
    )
    model.fit(images, problem.y, problem.S)
    assert any(not torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    test_images = torch.as_tensor(problem.Xu.reshape(-1, 1, 5, 8), dtype=torch.float32)
    acc = zsl_accuracy(
        problem.yu, model.decision_function(test_images), np.arange(NUM_CLASSES), problem.unseen
    )
    assert acc >= CHANCE + 0.3, acc
    with pytest.raises(ValueError, match="X: expected finite"):
        model.predict(test_images * float("nan"))


def test_prototype_without_mapping_is_plain_cosine() -> None:
    E = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])
    X = np.array([[2.0, 0.1, 0], [0, 3.0, 0.2]])
    model = PrototypeZSL(mapping=None).fit(X, [0, 1], E)
    q = np.array([[0.9, 1.1, 0.0], [0.0, 0.1, 5.0]])
    assert model.predict(q).tolist() == [3, 2]
    with pytest.raises(ValueError, match="X: mapping=None"):
        PrototypeZSL(mapping=None).fit(np.ones((2, 4)), [0, 1], E)


# -- bad input ---------------------------------------------------------------------------------


def test_description_table_missing_a_class(problem: Problem) -> None:
    with pytest.raises(ValueError, match=r"class_descriptions: .*missing class\(es\) \[19\]"):
        ESZSL(gamma=1, lam=1).fit(problem.X, problem.y, problem.S[:19])


def test_wrong_attribute_count_at_predict(problem: Problem) -> None:
    model = ESZSL(gamma=1, lam=1).fit(problem.X, problem.y, problem.S)
    with pytest.raises(ValueError, match=f"class_descriptions: expected {NUM_ATTR} attributes"):
        model.predict(problem.Xu, problem.S[:, :-1])


def test_nan_features_and_descriptions(problem: Problem) -> None:
    X = problem.X.copy()
    X[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"X: expected finite values.*row 5"):
        DAP().fit(X, problem.y, problem.S)
    S = problem.S.copy()
    S[0, 0] = np.inf
    with pytest.raises(ValueError, match="class_descriptions: expected finite"):
        ESZSL(gamma=1, lam=1).fit(problem.X, problem.y, S)


def test_other_bad_input(problem: Problem) -> None:
    with pytest.raises(ValueError, match="y: expected a 1-d array of"):
        ESZSL(gamma=1, lam=1).fit(problem.X, problem.y[:-1], problem.S)
    with pytest.raises(ValueError, match="class_ids: expected distinct ids"):
        ESZSL(gamma=1, lam=1).fit(problem.X, problem.y, problem.S[:3], class_ids=[0, 1, 1])
    with pytest.raises(ValueError, match="class_ids: expected one id per row"):
        ESZSL(gamma=1, lam=1).fit(problem.X, problem.y, problem.S, class_ids=[0, 1])
    with pytest.raises(ValueError, match="gamma: expected a positive"):
        ESZSL(gamma=-1.0)
    with pytest.raises(ValueError, match="y: expected images of at least 2 classes"):
        ESZSL(gamma=1, lam=1).fit(problem.X[:5], np.zeros(5, int), problem.S)
    with pytest.raises(ValueError, match=r"y: choosing hyper-parameters .* at least 4 seen"):
        ESZSL().fit(problem.X[:90], problem.y[:90], problem.S)
    with pytest.raises(ValueError, match="param_grid: unknown"):
        ESZSL(param_grid={"alpha": [1.0]}).fit(problem.X, problem.y, problem.S)
    with pytest.raises(ValueError, match="model: expected a zero-shot classifier"):
        CalibratedStacking(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="y: choosing gamma on validation classes"):
        CalibratedStacking(ESZSL(gamma=1, lam=1)).fit(problem.X[:90], problem.y[:90], problem.S)
    with pytest.raises(RuntimeError, match="not fitted"):
        ESZSL().predict(problem.X)


def test_dap_logistic_matches_scikit_learn_and_reads_graded_values_as_soft_labels() -> None:
    from sklearn.linear_model import LogisticRegression

    from pyxfer.zeroshot.dap import fit_logistic

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(200, 6))
    T = (Z @ rng.normal(size=(6, 3)) + rng.normal(size=(200, 3)) > 0).astype(float)
    T[:, 2] = np.where(rng.random(200) < 0.3, 0.5, T[:, 2])  # graded targets
    W, b = fit_logistic(Z, T, 0.5, tol=1e-8)
    for m in range(3):  # reference: a fractional target as two weighted copies of the image
        t = T[:, m]
        frac = (t > 0) & (t < 1)
        X = np.concatenate([Z, Z[frac]])
        labels = np.concatenate([(t >= 0.5).astype(int), np.zeros(frac.sum(), int)])
        labels[np.flatnonzero(frac)] = 1
        weight = np.concatenate([np.where(frac, t, 1.0), 1 - t[frac]])
        ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10000)
        ref.fit(X, labels, sample_weight=weight)
        np.testing.assert_allclose(W[:, m], ref.coef_[0], atol=1e-4)
        np.testing.assert_allclose(b[m], ref.intercept_[0], atol=1e-4)
    # a graded class table: DAP treats every [0, 1] column as binary (probabilities)
    S = np.array([[1, 0, 0.5], [0, 1, 0.5], [1, 1, 0], [0, 0, 1]], dtype=float)
    y = np.repeat(np.arange(3), 40)
    X = S[y] + 0.2 * rng.normal(size=(120, 3))
    model = DAP().fit(X, y, S)
    assert model.binary_.all()
    P = model.predict_attributes(X)
    assert abs(P[y == 0, 2].mean() - 0.5) < 0.15 and P[y == 2, 2].mean() < 0.2
    assert model.predict(np.array([[0.0, 0.0, 1.0]]), S[[2, 3]], class_ids=[2, 3]).tolist() == [3]
