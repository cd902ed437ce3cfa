"""Adaptation objectives: losses against their formulas, gradient reversal, schedules, learning."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pyxfer.plugins.adaptation.cdan import (
    RandomizedMultilinearMap,
    entropy_weights,
    multilinear_map,
)
from pyxfer.plugins.adaptation.coral import coral_loss
from pyxfer.plugins.adaptation.fixmatch import fixmatch_loss
from pyxfer.plugins.adaptation.mcc import mcc_loss
from pyxfer.plugins.adaptation.mmd import mk_mmd
from pyxfer.plugins.adaptation.pseudo_label import pseudo_label_weight
from torch import nn

from pyxfer import create_objective
from pyxfer.objectives.adaptation import (
    AdaptationObjective,
    GradientReversal,
    adaptation_objective_names,
    dann_coefficient,
    grad_reverse,
)

EXPECTED = {
    "source_only",
    "entropy_min",
    "pseudo_label",
    "fixmatch",
    "dann",
    "cdan",
    "coral",
    "mmd",
    "mcc",
}


class TinyMLP(nn.Module):
    """(N, C, H, W) -> flatten -> Linear -> tanh -> (N, num_features); no BatchNorm."""

    def __init__(self, in_dim: int, num_features: int = 8, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.num_features = num_features
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_dim, 32), nn.ReLU(), nn.Linear(32, num_features), nn.Tanh()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models, shared CPU


def _batch(seed: int = 0, n_s: int = 12, n_t: int = 10, dim: int = 4, k: int = 3):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n_s, dim, 1, 1, generator=g)
    ys = torch.randint(0, k, (n_s,), generator=g)
    xt = torch.randn(n_t, dim, 1, 1, generator=g) + 1.0
    xt2 = xt + 0.3 * torch.randn(n_t, dim, 1, 1, generator=g)
    return xs, ys, [xt, xt2]


#: scaled-down domain discriminators keep the tests fast (the paper's 1024-1024 is the default)
SMALL: dict[str, dict[str, int]] = {"dann": {"hidden": 32}, "cdan": {"hidden": 32}}


def _obj(name: str, k: int = 3, dim: int = 4, **kw) -> AdaptationObjective:
    obj = create_objective(name, TinyMLP(dim), num_classes=k, **{**SMALL.get(name, {}), **kw})
    assert isinstance(obj, AdaptationObjective)
    return obj


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _ce(logits: np.ndarray, label: int) -> float:
    m = logits.max()
    return float(m + math.log(sum(math.exp(v - m) for v in logits)) - logits[label])


def _softmax(row: np.ndarray) -> np.ndarray:
    e = np.exp(row - row.max())
    return e / e.sum()


def _entropy(p: np.ndarray) -> float:
    return float(-sum(v * math.log(v) for v in p if v > 0))


# -- registration and protocol ---------------------------------------------------------------
def test_all_adaptation_objectives_registered_with_protocol_metadata():
    from pyxfer.pluginmanager import registry

    names = set(adaptation_objective_names())
    assert names >= EXPECTED
    for n in EXPECTED:
        entry = registry("objectives").get(n)
        assert entry.plugin == "pyxfer.adaptation"
        assert entry.metadata["consumes"] == "source_target"
        assert len(entry.metadata["target_augmentation"]) == entry.metadata["num_views"]
    assert registry("objectives").get("fixmatch").metadata["target_augmentation"] == (
        "fixmatch_weak",
        "fixmatch_strong",
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_output_keys_and_loss_decomposition(name):
    obj = _obj(name).eval()
    xs, ys, xts = _batch()
    out = obj([xs], ys, xts)
    assert {"loss", "loss_cls", "acc_source"} <= set(out)
    assert out["loss"].requires_grad and out["loss"].dim() == 0
    logits_s = obj.predict(xs)
    assert logits_s.shape == (12, 3)
    assert torch.allclose(out["loss_cls"], F.cross_entropy(logits_s, ys), atol=1e-6)
    for k, v in out.items():
        assert torch.isfinite(v).all(), k
        if k != "loss":
            assert not v.requires_grad, k
    assert obj.embed(xs).shape == (12, 8)


def test_source_only_never_touches_the_target():
    obj = _obj("source_only")
    xs, ys, _ = _batch()
    calls = []
    obj.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    out = obj([xs], ys, [torch.full((5, 7, 2, 2), float("nan"))])  # not even shape-checked
    assert calls == [12]
    assert torch.allclose(out["loss"], F.cross_entropy(obj.predict(xs), ys))


def test_bare_tensors_accepted_and_extra_views_ignored():
    obj = _obj("dann", hidden=16, dropout=0.0).eval()
    xs, ys, xts = _batch()
    a = obj([xs], ys, xts)
    b = obj(xs, ys, xts[0])
    assert torch.allclose(a["loss"], b["loss"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": torch.zeros(11, dtype=torch.long)}, "source_labels"),
        ({"labels": torch.zeros(12)}, "integer class indices"),
        ({"labels": torch.full((12,), 3)}, r"\[0, 3\)"),
        ({"target": []}, "target_views"),
        ({"target": [torch.zeros(0, 4, 1, 1)]}, "empty batch"),
        ({"target": [torch.zeros(10, 4)]}, r"target_views\[0\]"),
        ({"source": [torch.zeros(12, 4)]}, r"source_views\[0\]"),
    ],
)
def test_bad_batches_raise_value_errors(kwargs, match):
    obj = _obj("entropy_min")
    xs, ys, xts = _batch()
    with pytest.raises(ValueError, match=match):
        obj(kwargs.get("source", [xs]), kwargs.get("labels", ys), kwargs.get("target", xts))


def test_fixmatch_needs_two_target_views():
    obj = _obj("fixmatch")
    xs, ys, xts = _batch()
    with pytest.raises(ValueError, match="target_views: expected a list of 2"):
        obj([xs], ys, xts[:1])


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("dann", {"num_classes": 1}, "num_classes"),
        ("coral", {"layer": "fc7"}, "layer"),
        ("mmd", {"estimator": "biased"}, "estimator"),
        ("mmd", {"layers": ()}, "layers"),
        ("mcc", {"temperature": 0}, "temperature"),
        ("fixmatch", {"threshold": 1.5}, "threshold"),
        ("pseudo_label", {"ramp": (0.6, 0.1)}, "ramp"),
        ("entropy_min", {"weight": -1.0}, "weight"),
        ("dann", {"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_options_raise_value_errors(name, kwargs, match):
    kw = {"num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        create_objective(name, TinyMLP(4), **kw)


def test_num_classes_is_required():
    with pytest.raises(TypeError, match="num_classes"):
        create_objective("dann", TinyMLP(4))


def test_backbone_without_num_features_is_refused():
    with pytest.raises(ValueError, match="num_features"):
        create_objective("dann", nn.Flatten(), num_classes=3)


# -- gradient reversal and schedules ---------------------------------------------------------
def test_gradient_reversal_forward_identity_backward_negated():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, generator=g, requires_grad=True)
    upstream = torch.randn(5, 3, generator=g)
    y = grad_reverse(x, 0.37)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.allclose(x.grad, -0.37 * upstream)
    # through a module, composed with a function: d/dx sum(R(x)^2) = -lambda * 2x
    x2 = x.detach().clone().requires_grad_(True)
    layer = GradientReversal(2.0)
    layer(x2).pow(2).sum().backward()
    assert torch.allclose(x2.grad, -2.0 * 2 * x2.detach())


def test_dann_schedule_values():
    assert dann_coefficient(0.0) == 0.0
    assert dann_coefficient(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_coefficient(0.5) == pytest.approx(0.986614, abs=1e-6)
    assert dann_coefficient(1.0) == pytest.approx(0.9999092, abs=1e-7)
    assert dann_coefficient(0.1) == pytest.approx(0.462117, abs=1e-6)
    vals = [dann_coefficient(p / 10) for p in range(11)]
    assert all(a < b for a, b in itertools.pairwise(vals))
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError, match="progress"):
            dann_coefficient(bad)


@pytest.mark.parametrize("name", ["dann", "cdan"])
def test_on_step_end_drives_the_reversal_coefficient(name):
    obj = _obj(name, hidden=16)
    assert obj.grl.coeff == 0.0
    obj.on_step_end(10, 100)
    assert obj.progress == pytest.approx(0.1)
    assert obj.grl.coeff == pytest.approx(0.462117, abs=1e-6)
    obj.on_step_end(250, 100)  # past the end: clipped to p = 1
    assert obj.grl.coeff == pytest.approx(dann_coefficient(1.0))
    with pytest.raises(ValueError, match="max_steps"):
        obj.on_step_end(1, 0)


def test_pseudo_label_ramp():
    assert pseudo_label_weight(0.05, 0.1, 0.6, 3.0) == 0.0
    assert pseudo_label_weight(0.35, 0.1, 0.6, 3.0) == pytest.approx(1.5)
    assert pseudo_label_weight(0.6, 0.1, 0.6, 3.0) == 3.0
    assert pseudo_label_weight(0.9, 0.1, 0.6, 3.0) == 3.0


# -- losses against their formulas -----------------------------------------------------------
def test_dann_domain_loss_and_reversed_gradient():
    obj = _obj("dann", hidden=16, dropout=0.0)
    obj.grl.coeff = 0.5
    xs, ys, xts = _batch()
    out = obj([xs], ys, xts)
    fs, ft = obj.embed(xs), obj.embed(xts[0])
    ds = _np(obj.discriminator(fs)).ravel()
    dt = _np(obj.discriminator(ft)).ravel()
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    want = 0.5 * (
        np.mean([-math.log(sig(v)) for v in ds]) + np.mean([-math.log(1 - sig(v)) for v in dt])
    )
    assert float(out["loss_domain"]) == pytest.approx(want, rel=1e-5)
    acc = (np.sum(ds > 0) + np.sum(dt <= 0)) / (len(ds) + len(dt))
    assert float(out["domain_acc"]) == pytest.approx(acc)
    # gradients: discriminator descends the domain loss, the backbone ascends it x 0.5
    params = [*obj.backbone.parameters(), *obj.discriminator.parameters()]
    nb = len(list(obj.backbone.parameters()))
    g_total = torch.autograd.grad(out["loss"], params, allow_unused=True)
    g_ce = torch.autograd.grad(F.cross_entropy(obj.predict(xs), ys), params[:nb], allow_unused=True)
    g_backbone = [a - b for a, b in zip(g_total[:nb], g_ce, strict=True)]
    d = obj.discriminator(torch.cat([obj.embed(xs), obj.embed(xts[0])]))
    plain = 0.5 * (
        F.binary_cross_entropy_with_logits(d[:12], torch.ones(12, 1))
        + F.binary_cross_entropy_with_logits(d[12:], torch.zeros(10, 1))
    )
    g_plain = torch.autograd.grad(plain, params)
    for a, b in zip(g_backbone, g_plain[:nb], strict=True):
        assert torch.allclose(a, -0.5 * b, atol=1e-6)
    for a, b in zip(g_total[nb:], g_plain[nb:], strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert any(a.abs().sum() > 0 for a in g_backbone)


def test_cdan_multilinear_and_randomized_maps():
    g = torch.Generator().manual_seed(2)
    f, p = torch.randn(3, 4, generator=g), torch.rand(3, 5, generator=g)
    h = multilinear_map(f, p)
    assert h.shape == (3, 20)
    for n in range(3):
        for d in range(4):
            for k in range(5):
                assert h[n, d * 5 + k] == pytest.approx(float(f[n, d] * p[n, k]))
    rm = RandomizedMultilinearMap(4, 5, dim=7, seed=3)
    want = (f @ rm.r_f) * (p @ rm.r_g) / math.sqrt(7)
    assert torch.allclose(rm(f, p), want)
    assert torch.equal(RandomizedMultilinearMap(4, 5, 7, seed=3).r_f, rm.r_f)
    # randomised only when features x classes > 4096
    assert not _obj("cdan", k=3, hidden=16).randomized
    big = create_objective("cdan", TinyMLP(4, num_features=512), num_classes=10, hidden=16)
    assert big.randomized and big.discriminator[0].in_features == 1024


def test_cdan_entropy_weights_and_loss():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, 0.5]])
    w = entropy_weights(logits)
    for i in range(3):
        h = _entropy(_softmax(_np(logits[i])))
        assert float(w[i]) == pytest.approx(1 + math.exp(-h), rel=1e-6)
    assert float(w[1]) == pytest.approx(1 + 1 / 3, rel=1e-6)  # uniform: H = log 3
    obj = _obj("cdan", hidden=16, dropout=0.0)
    xs, ys, xts = _batch()
    out = obj([xs], ys, xts)
    fs, ft = obj.embed(xs), obj.embed(xts[0])
    ls, lt = obj.classifier(fs), obj.classifier(ft)
    outer = lambda f, lg: torch.einsum("nd,nk->ndk", f, F.softmax(lg, 1)).flatten(1)  # noqa: E731
    ds = _np(obj.discriminator(outer(fs, ls))).ravel()
    dt = _np(obj.discriminator(outer(ft, lt))).ravel()
    ws = [1 + math.exp(-_entropy(_softmax(r))) for r in _np(ls)]
    wt = [1 + math.exp(-_entropy(_softmax(r))) for r in _np(lt)]
    bce_s = [math.log1p(math.exp(-v)) for v in ds]  # -log sigmoid
    bce_t = [math.log1p(math.exp(v)) for v in dt]  # -log(1 - sigmoid)
    want = 0.5 * (np.dot(ws, bce_s) / sum(ws) + np.dot(wt, bce_t) / sum(wt))
    assert float(out["loss_domain"]) == pytest.approx(want, rel=1e-5)
    plain = _obj("cdan", hidden=16, dropout=0.0, entropy_conditioning=False)
    plain.load_state_dict(obj.state_dict())
    want_plain = 0.5 * (np.mean(bce_s) + np.mean(bce_t))
    assert float(plain([xs], ys, xts)["loss_domain"]) == pytest.approx(want_plain, rel=1e-5)


def _cov_loops(x: np.ndarray) -> np.ndarray:
    n, d = x.shape
    mean = [sum(x[i, a] for i in range(n)) / n for a in range(d)]
    c = np.zeros((d, d))
    for a in range(d):
        for b in range(d):
            c[a, b] = sum((x[i, a] - mean[a]) * (x[i, b] - mean[b]) for i in range(n)) / (n - 1)
    return c


def test_coral_against_explicit_covariances():
    g = torch.Generator().manual_seed(4)
    xs, xt = torch.randn(7, 3, generator=g), 2 * torch.randn(5, 3, generator=g) + 1
    cs, ct = _cov_loops(_np(xs)), _cov_loops(_np(xt))
    want = sum((cs[a, b] - ct[a, b]) ** 2 for a in range(3) for b in range(3)) / (4 * 3 * 3)
    assert float(coral_loss(xs, xt)) == pytest.approx(want, rel=1e-5)
    assert float(coral_loss(xs, xs + 5.0)) == pytest.approx(0.0, abs=1e-6)  # shift-invariant
    with pytest.raises(ValueError, match="at least 2 samples"):
        coral_loss(xs[:1], xt)
    # the objective aligns the logits by default, the features on request
    xs4, ys4, xts4 = _batch()
    obj = _obj("coral")
    out = obj([xs4], ys4, xts4)
    want_obj = coral_loss(obj.predict(xs4), obj.predict(xts4[0]))
    assert torch.allclose(out["loss_coral"], want_obj)
    obj_f = _obj("coral", layer="features")
    out_f = obj_f([xs4], ys4, xts4)
    assert torch.allclose(out_f["loss_coral"], coral_loss(obj_f.embed(xs4), obj_f.embed(xts4[0])))


def _k(a: np.ndarray, b: np.ndarray, bws: list[float]) -> float:
    d2 = float(np.sum((a - b) ** 2))
    return sum(math.exp(-d2 / bw) for bw in bws) / len(bws)


def test_mmd_unbiased_against_double_loops():
    g = torch.Generator().manual_seed(5)
    xs, xt = torch.randn(6, 2, generator=g), torch.randn(5, 2, generator=g) + 0.7
    s, t = _np(xs), _np(xt)
    bws = [0.5, 2.0, 8.0]
    n, m = len(s), len(t)
    kss = sum(_k(s[i], s[j], bws) for i in range(n) for j in range(n) if i != j)
    ktt = sum(_k(t[i], t[j], bws) for i in range(m) for j in range(m) if i != j)
    kst = sum(_k(s[i], t[j], bws) for i in range(n) for j in range(m))
    want = kss / (n * (n - 1)) + ktt / (m * (m - 1)) - 2 * kst / (n * m)
    assert float(mk_mmd(xs, xt, bandwidths=bws)) == pytest.approx(want, rel=1e-5)
    # default bandwidths: multiples of the mean squared distance of the joint batch
    z = np.concatenate([s, t])
    pairs = [float(np.sum((z[i] - z[j]) ** 2)) for i in range(11) for j in range(11) if i != j]
    base = sum(pairs) / len(pairs)
    auto = mk_mmd(xs, xt, multipliers=(0.5, 1.0, 2.0))
    assert float(auto) == pytest.approx(
        float(mk_mmd(xs, xt, bandwidths=[0.5 * base, base, 2 * base])), rel=1e-5
    )
    med = float(np.median(pairs))
    assert float(mk_mmd(xs, xt, base="median", multipliers=(1.0,))) == pytest.approx(
        float(mk_mmd(xs, xt, bandwidths=[med])), rel=1e-5
    )


def test_mmd_linear_against_quad_tuples():
    g = torch.Generator().manual_seed(6)
    xs, xt = torch.randn(7, 3, generator=g), torch.randn(9, 3, generator=g) - 0.5
    s, t = _np(xs), _np(xt)
    bws = [1.0, 4.0]
    hs = []
    for i in range(3):  # floor(min(7, 9) / 2) quad-tuples
        s1, s2, t1, t2 = s[2 * i], s[2 * i + 1], t[2 * i], t[2 * i + 1]
        hs.append(_k(s1, s2, bws) + _k(t1, t2, bws) - _k(s1, t2, bws) - _k(s2, t1, bws))
    want = sum(hs) / len(hs)
    got = mk_mmd(xs, xt, bandwidths=bws, estimator="linear")
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_mmd_grows_with_the_shift_and_objective_sums_layers():
    g = torch.Generator().manual_seed(7)
    xs = torch.randn(64, 2, generator=g)
    near, far = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g) + 3
    assert abs(float(mk_mmd(xs, near))) < 0.05 < float(mk_mmd(xs, far))
    obj = _obj("mmd")
    xs4, ys4, xts4 = _batch()
    out = obj([xs4], ys4, xts4)
    f = mk_mmd(obj.embed(xs4), obj.embed(xts4[0]))
    lg = mk_mmd(obj.predict(xs4), obj.predict(xts4[0]))
    assert torch.allclose(out["mmd_features"], f, atol=1e-6)
    assert torch.allclose(out["loss_mmd"], f + lg, atol=1e-6)


def test_mcc_against_explicit_confusion():
    logits = torch.tensor([[3.0, 0.5, -1.0], [0.2, 0.1, 0.0], [-1.0, 2.0, 2.5], [1.0, 1.5, 0.0]])
    b, k, temp = 4, 3, 2.5
    y = [_softmax(r / temp) for r in _np(logits)]
    h = [_entropy(p) for p in y]
    w_raw = [1 + math.exp(-v) for v in h]
    w = [b * v / sum(w_raw) for v in w_raw]
    c = np.zeros((k, k))
    for j in range(k):
        for jj in range(k):
            c[j, jj] = sum(y[i][j] * w[i] * y[i][jj] for i in range(b))
    ct = np.zeros((k, k))
    for j in range(k):
        for jj in range(k):
            ct[j, jj] = c[j, jj] / sum(c[r, jj] for r in range(k))
    want = sum(ct[j, jj] for j in range(k) for jj in range(k) if j != jj) / k
    assert float(mcc_loss(logits, temp)) == pytest.approx(want, rel=1e-5)
    assert float(mcc_loss(logits * 30)) < float(mcc_loss(logits))  # confident: less confusion
    obj = _obj("mcc")
    xs, ys, xts = _batch()
    assert torch.allclose(obj([xs], ys, xts)["loss_mcc"], mcc_loss(obj.predict(xts[0])))


def test_fixmatch_mask_and_loss_by_hand():
    weak = torch.tensor([[10.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 8.0], [0.0, 3.0, 0.0]])
    strong = torch.tensor([[0.5, 0.2, 0.1], [2.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 4.0]])
    # confidences: 0.99991, 0.576, 0.99933, 0.909
    loss, mask = fixmatch_loss(weak, strong, 0.95)
    assert mask.tolist() == [1.0, 0.0, 1.0, 0.0]
    want = (_ce(_np(strong[0]), 0) + _ce(_np(strong[2]), 2)) / 4  # mean over all 4
    assert float(loss) == pytest.approx(want, rel=1e-6)
    loss90, mask90 = fixmatch_loss(weak, strong, 0.9)
    assert mask90.tolist() == [1.0, 0.0, 1.0, 1.0]
    assert float(loss90) == pytest.approx(want + _ce(_np(strong[3]), 1) / 4, rel=1e-6)
    # no gradient through the pseudo-label (weak view)
    weak_g = weak.clone().requires_grad_(True)
    strong_g = strong.clone().requires_grad_(True)
    fixmatch_loss(weak_g, strong_g)[0].backward()
    assert weak_g.grad is None and strong_g.grad.abs().sum() > 0


def test_fixmatch_objective_uses_weak_for_labels_strong_for_loss():
    obj = _obj("fixmatch", threshold=0.0)  # every pseudo-label kept
    xs, ys, xts = _batch()
    out = obj([xs], ys, xts)
    pseudo = obj.predict(xts[0]).argmax(1)
    want = F.cross_entropy(obj.predict(xts[1]), pseudo)
    assert torch.allclose(out["loss_unlabelled"], want, atol=1e-6)
    assert float(out["mask_rate"]) == 1.0
    assert torch.allclose(out["loss"].detach(), out["loss_cls"] + want.detach(), atol=1e-6)


def test_pseudo_label_and_entropy_min_by_formula():
    xs, ys, xts = _batch()
    obj = _obj("pseudo_label", threshold=0.0)
    obj.on_step_end(35, 100)  # alpha = 3 * (0.35 - 0.1) / 0.5 = 1.5
    out = obj([xs], ys, xts)
    lt = obj.predict(xts[0])
    want = F.cross_entropy(lt, lt.argmax(1))
    assert torch.allclose(out["loss_pseudo"], want, atol=1e-6)
    assert float(out["alpha"]) == pytest.approx(1.5)
    assert torch.allclose(out["loss"].detach(), out["loss_cls"] + 1.5 * want.detach(), atol=1e-6)
    ent = _obj("entropy_min", weight=0.25)
    out = ent([xs], ys, xts)
    rows = _np(ent.predict(xts[0]))
    want_h = np.mean([_entropy(_softmax(r)) for r in rows])
    assert float(out["loss_entropy"]) == pytest.approx(want_h, rel=1e-5)
    total = float(out["loss"].detach())
    assert total == pytest.approx(float(out["loss_cls"]) + 0.25 * want_h, rel=1e-5)


# -- learning --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_few_steps_reduce_the_loss(name):
    torch.manual_seed(0)
    obj = _obj(name, dim=4)
    xs, ys, xts = _batch(seed=3, n_s=24, n_t=24)
    opt = torch.optim.Adam(obj.parameters(), lr=1e-2)

    def loss() -> float:
        obj.eval()
        with torch.no_grad():
            return float(obj([xs], ys, xts)["loss"])

    before = loss()
    for step in range(1, 31):
        obj.train()
        opt.zero_grad()
        obj([xs], ys, xts)["loss"].backward()
        opt.step()
        obj.on_step_end(step, 1000)
    after = loss()
    assert after < before - 0.1, (before, after)


def test_lenet_backbone_runs_every_objective():
    from pyxfer import create_backbone

    xs = torch.randn(4, 1, 12, 12)
    for name in sorted(EXPECTED):
        bb = create_backbone("lenet", img_size=12, width=0.25)
        obj = create_objective(name, bb, num_classes=10, **SMALL.get(name, {}))
        out = obj([xs], torch.tensor([0, 1, 2, 3]), [xs + 0.1, xs - 0.1])
        out["loss"].backward()
        assert torch.isfinite(out["loss"]), name


# -- a shifted-domain problem ------------------------------------------------------------------
def _moons(seed: int, angle_deg: float = 35.0, n: int = 200):
    """Two moons (source) and the same distribution rotated by ``angle_deg`` (target)."""
    from sklearn.datasets import make_moons

    xs, ys = make_moons(n, noise=0.1, random_state=seed)
    xt, yt = make_moons(n, noise=0.1, random_state=seed + 100)
    xs, xt = xs - xs.mean(0), xt - xt.mean(0)
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    xt = xt @ rot.T

    def t(v: np.ndarray) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.float32).view(-1, 2, 1, 1)

    return t(xs), torch.tensor(ys), t(xt), torch.tensor(yt)


def _target_accuracy(name: str, seed: int, steps: int = 200, **kw) -> tuple[float, float]:
    xs, ys, xt, yt = _moons(seed)
    torch.manual_seed(seed)
    backbone = nn.Sequential(
        nn.Flatten(), nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU()
    )
    backbone.num_features = 16
    obj = create_objective(name, backbone, num_classes=2, **kw)
    opt = torch.optim.Adam(obj.parameters(), lr=1e-2)
    for step in range(1, steps + 1):
        opt.zero_grad()
        obj([xs], ys, [xt])["loss"].backward()
        opt.step()
        obj.on_step_end(step, steps)
    obj.eval()
    with torch.no_grad():
        acc_t = float((obj.predict(xt).argmax(1) == yt).float().mean())
        acc_s = float((obj.predict(xs).argmax(1) == ys).float().mean())
    return acc_t, acc_s


def test_dann_beats_source_only_on_rotated_moons():
    """Inter-twinning moons, target rotated 35 degrees (Ganin et al. 2016, Sec. 5.1)."""
    so = [_target_accuracy("source_only", s) for s in (0, 1)]
    da = [_target_accuracy("dann", s, hidden=32, dropout=0.0) for s in (0, 1)]
    assert all(acc_s >= 0.97 for _, acc_s in so + da)  # both fit the source
    for (t_so, _), (t_da, _) in zip(so, da, strict=True):
        assert t_da > t_so + 0.05
    mean_so = sum(t for t, _ in so) / 2
    mean_da = sum(t for t, _ in da) / 2
    assert mean_da >= mean_so + 0.1, (so, da)
