"""``pyxfer.finetune``: strategies learn, freeze what they say, splits stay apart, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pyxfer.backbone import WeightsError, create_backbone, save_weights
from pyxfer.cli import main
from pyxfer.data import ImageStore, load_dataset
from pyxfer.modelio import load_model, save_model
from pyxfer.transfer import finetune
from pyxfer.transfer.finetune import balanced, split_data

LENET = {"img_size": 8}
FAST = {"batch_size": 64, "threads": 1, "device": "cpu", "log_every": 0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models, shared CPU


@pytest.fixture(scope="module")
def digits() -> ImageStore:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A (randomly initialised) lenet saved as a pyxfer model directory: a stand-in source."""
    torch.manual_seed(1)
    bb = create_backbone("lenet", **LENET)
    path = tmp_path_factory.mktemp("src") / "model"
    save_model(path, bb, backbone_name="lenet", backbone_kwargs=LENET)
    return str(path)


def _body(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in sd.items() if not k.startswith("head.")}


def test_full_from_scratch_learns_and_writes_a_classifier(digits, tmp_path):
    run = tmp_path / "ft"
    r = finetune(
        data=digits,
        from_scratch=True,
        backbone="lenet",
        backbone_opts=LENET,
        strategy="full",
        max_steps=150,
        lr=3e-3,
        out=run,
        **FAST,
    )
    assert r.test["top1"] > 0.7  # chance is 0.1
    for name in ("config.json", "metrics.jsonl", "results.json", "predictions.npz"):
        assert (run / name).is_file(), name
    saved = load_model(run / "model")
    assert saved.task == "classifier" and saved.class_names == digits.class_names
    assert saved.input_spec.size == 8
    pred = np.load(run / "predictions.npz")
    test = digits.subset(r.splits["test"])
    assert np.array_equal(pred["y_true"], test.labels)
    # the saved model predicts what the run reported
    from pyxfer.transfer.common import classify

    _, logits = classify(saved.backbone, test, threads=1)
    assert np.array_equal(logits.argmax(1), pred["y_pred"])
    feats = np.load(run / "features.npz")
    assert feats["features"].shape == (len(test), 128)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["finetune"]["strategy"] == "full"
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_top1" in x for x in records)
    doc = json.loads((run / "results.json").read_text())
    assert doc["results"][0]["protocol"]["selected_by"] == "val_top1"


@pytest.mark.parametrize("fast_probe", [False, True])
def test_linear_probe_leaves_the_backbone_unchanged(digits, source, fast_probe):
    before = load_model(source).backbone.state_dict()
    r = finetune(
        source, digits, strategy="linear", max_steps=120, lr=3e-3, fast_probe=fast_probe, **FAST
    )
    after = r.backbone.state_dict()
    for k, v in _body(before).items():
        assert torch.equal(v, after[k]), k  # weights and BatchNorm statistics, exactly
    assert r.test["top1"] > 0.4  # a linear head on frozen random features still learns
    assert r.phases[0]["frozen_groups"] == ["stage1", "stage2", "stage3"]


def test_partial_freezes_exactly_the_first_k_groups(digits, source):
    start = load_model(source).backbone
    r = finetune(
        source, digits, strategy="partial", freeze_groups=2, max_steps=40, val_fraction=0, **FAST
    )
    groups = dict(start.param_groups())
    trained = dict(r.backbone.param_groups())
    for i, name in enumerate(["stage1", "stage2", "stage3"]):
        same = all(torch.equal(a, b) for a, b in zip(groups[name], trained[name], strict=True))
        assert same == (i < 2), name
    assert r.phases[0]["frozen_groups"] == ["stage1", "stage2"]
    assert r.test["top1"] > 0.4


def test_layer_decay_lrs_follow_the_formula(digits, source):
    r = finetune(
        source,
        digits,
        strategy="full",
        layer_decay=0.5,
        lr=1e-3,
        head_lr=1e-2,
        max_steps=2,
        val_fraction=0,
        **FAST,
    )
    lrs = r.phases[0]["lrs"]
    # G = 4 groups (stage1, stage2, stage3, head): lr * 0.5 ** (G - 1 - i); the head: head_lr
    assert lrs["stage1"] == pytest.approx(1e-3 * 0.5**3)
    assert lrs["stage2"] == pytest.approx(1e-3 * 0.5**2)
    assert lrs["stage3"] == pytest.approx(1e-3 * 0.5)
    assert lrs["head"] == pytest.approx(1e-2)


def test_lp_ft_second_phase_starts_from_the_probed_head(digits, source, tmp_path):
    run = tmp_path / "lpft"
    r = finetune(source, digits, strategy="lp-ft", max_steps=60, out=run, **FAST)
    assert [p["strategy"] for p in r.phases] == ["linear", "full"]
    probe = load_model(run / "probe" / "model").backbone.get_classifier().state_dict()
    start2 = r.phases[1]["start_head"]
    for k, v in probe.items():
        assert torch.equal(start2[k], v), k
    assert not torch.equal(r.phases[0]["start_head"]["weight"], start2["weight"])
    assert r.test["top1"] > 0.4


def test_bn_frozen_keeps_running_statistics(digits, source):
    before = load_model(source).backbone.state_dict()
    r = finetune(source, digits, strategy="full", bn="frozen", max_steps=5, val_fraction=0, **FAST)
    after = r.backbone.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var", "bn.weight"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    convs = [k for k in before if k.endswith("0.weight") and before[k].ndim == 4]
    assert any(not torch.equal(before[k], after[k]) for k in convs)


def test_label_budget_and_splits_stay_apart(digits):
    s = split_data(
        digits, test_store=None, test_fraction=0.2, labels_per_class=10, val_fraction=0.2, seed=3
    )
    lab = digits.labels
    budget = np.concatenate([s["train"], s["val"]])
    assert np.array_equal(np.bincount(lab[budget], minlength=10), np.full(10, 10))
    assert np.array_equal(np.bincount(lab[s["train"]], minlength=10), np.full(10, 8))
    test = set(s["test"].tolist())
    assert not test & set(budget.tolist())
    assert len(set(s["train"].tolist()) & set(s["val"].tolist())) == 0
    assert abs(len(test) - 0.2 * len(digits)) < 10
    again = split_data(
        digits, test_store=None, test_fraction=0.2, labels_per_class=10, val_fraction=0.2, seed=3
    )
    assert all(np.array_equal(s[k], again[k]) for k in s)


def test_validation_never_sees_test_images(digits, source, monkeypatch):
    import sys

    ft = sys.modules["pyxfer.transfer.finetune"]
    seen: list[ImageStore] = []
    real = ft.accuracy

    def spy(backbone, store, threads=0):
        seen.append(store)
        return real(backbone, store, threads=threads)

    monkeypatch.setattr(ft, "accuracy", spy)
    r = finetune(source, digits, strategy="linear", labels_per_class=20, max_steps=20, **FAST)
    assert seen  # validation ran
    val = digits.subset(r.splits["val"])
    for store in seen:
        assert len(store) == len(r.splits["val"]) == 40
        assert np.array_equal(store.images, val.images)
    assert not set(r.splits["val"].tolist()) & set(r.splits["test"].tolist())


def test_the_run_writer_writes_only_into_a_run_directory(tmp_path):
    from pyxfer.transfer.common import RunWriter, Source

    src = Source(None, "lenet", {}, {"kind": "scratch"})
    feats = np.zeros((3, 2), np.float32)
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]], np.float32)
    labels = np.array([0, 1, 1])
    nowhere = RunWriter(None, "finetune", src)
    assert nowhere.save_classifier(None, ["a", "b"], {}) is None
    metrics = nowhere.test_outputs(feats, logits, labels, ["a", "b"], seed=0)
    assert metrics == pytest.approx({"top1": 2 / 3, "per_class_mean": (1 + 0.5) / 2})
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"lr": 1}')
    writer = RunWriter(run, "finetune", src)
    writer.add_to_config("finetune", {"strategy": "linear"})
    assert json.loads((run / "config.json").read_text()) == {
        "lr": 1,
        "finetune": {"strategy": "linear"},
    }
    assert writer.test_outputs(feats, logits, labels, ["a", "b"], seed=0) == metrics
    with np.load(run / "predictions.npz") as pred:
        assert pred["y_pred"].tolist() == [0, 1, 0] and pred["y_true"].tolist() == [0, 1, 1]
    assert not list(tmp_path.glob("*.npz"))


def test_balanced_sampling_repeats_small_classes():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 3)
    idx = balanced(np.arange(11), labels, seed=0)
    assert np.array_equal(np.bincount(labels[idx]), [6, 6, 6])
    assert set(idx.tolist()) == set(range(11))


def test_torchvision_format_weights(digits, tmp_path):
    """A torchvision-style ResNet state dict (with a 1000-class fc) as the source."""
    torch.manual_seed(0)
    opts = {"width": 0.25, "stem": "small"}
    ref = create_backbone("resnet18", num_classes=1000, **opts)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    r = finetune(
        weights=path,
        backbone="resnet18",
        backbone_opts=opts,
        data=digits,  # grey 8x8: converted to RGB, resized by the loader
        strategy="linear",
        max_steps=2,
        val_fraction=0,
        size=16,
        **{**FAST, "batch_size": 32},
    )
    sd = r.backbone.state_dict()
    assert torch.equal(sd["conv1.weight"], ref.state_dict()["conv1.weight"])
    assert r.backbone.num_classes == 10


# -- bad input -------------------------------------------------------------------------------
def test_bad_input_fails_before_training(digits, tmp_path):
    out = tmp_path / "never"
    bb5 = create_backbone("lenet", num_classes=5, **LENET)
    five = tmp_path / "five"
    save_model(five, bb5, backbone_name="lenet", backbone_kwargs=LENET, task="classifier")
    with pytest.raises(ValueError, match="keep_head: the source's head has 5 classes"):
        finetune(five, digits, keep_head=True, out=out)
    other = tmp_path / "mobilenet.safetensors"
    save_weights(create_backbone("resnet18", width=0.25), other)
    with pytest.raises(WeightsError, match=r"missing keys.*unexpected keys"):
        finetune(other, digits, backbone="lenet", backbone_opts=LENET, out=out)
    with pytest.raises(ValueError, match=r"labels_per_class: class 0 has .* at least k=500"):
        finetune(five, digits, labels_per_class=500, out=out)
    empty = ImageStore(np.zeros((0, 8, 8, 1), np.uint8), np.zeros(0, np.int64), ["a"])
    with pytest.raises(ValueError, match=r"data: .* no labelled images"):
        finetune(five, empty, out=out)
    with pytest.raises(ValueError, match="strategy: expected one of"):
        finetune(five, digits, strategy="everything", out=out)
    with pytest.raises(ValueError, match=r"freeze_groups: expected an int in \[0, 3\]"):
        finetune(five, digits, strategy="partial", freeze_groups=4, out=out)
    with pytest.raises(ValueError, match="source: expected exactly one"):
        finetune(five, digits, from_scratch=True, backbone="lenet", out=out)
    assert not out.exists()


# -- command line ----------------------------------------------------------------------------
def test_cli_finetune(tmp_path, capsys, source):
    run = tmp_path / "cli"
    argv = ["finetune", source, "--data", "digits", "--labels-per-class", "15"]
    argv += ["--strategy", "lp-ft", "--max-steps", "40", "--batch-size", "64", "--threads", "1"]
    argv += ["--device", "cpu", "--out", str(run)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "finetune/top1" in text and "shots=15" in text
    assert load_model(run / "model").task == "classifier"
    assert (run / "results.json").is_file()


def test_cli_toml_and_errors(tmp_path, capsys):
    toml = tmp_path / "ft.toml"
    toml.write_text(
        'data = "digits"\nbackbone = "lenet"\nbackbone-opt = {img_size = 8}\n'
        'from-scratch = true\nstrategy = "full"\nmax-steps = 3\nthreads = 1\n'
        'device = "cpu"\nbatch-size = 32\nlabels-per-class = 5\nval-fraction = 0\n'
    )
    assert main(["finetune", "--config", str(toml), "--out", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "finetune",
                "--config",
                str(toml),
                "--labels-per-class",
                "999",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "labels_per_class" in capsys.readouterr().err
    assert main(["finetune", "--data", "digits", "--from-scratch", "--out", str(tmp_path)]) == 2
    assert "backbone" in capsys.readouterr().err


@pytest.mark.parametrize("fast_probe", [False, True])
def test_time_budget_alone_runs_both_phases_and_validates_at_their_ends(
    digits, source, tmp_path, fast_probe, monkeypatch
):
    """``max_time`` alone: the budget is shared by lp-ft's phases (no default epoch stops them
    first) and each phase's last step is validated, so selection always has a candidate."""
    import pyxfer.engine.clock as clock

    ticks = [0.0]

    def now() -> float:  # a deterministic clock: 10 ms per reading, whatever the machine's load
        ticks[0] += 0.01
        return ticks[0]

    monkeypatch.setattr(clock, "now", now)
    run = tmp_path / "lpft"
    r = finetune(
        source, digits, strategy="lp-ft", max_time=4.0, fast_probe=fast_probe, out=run, **FAST
    )
    assert [p["strategy"] for p in r.phases] == ["linear", "full"]
    per_epoch = len(r.splits["train"]) // FAST["batch_size"]
    assert r.phases[1]["steps"] > per_epoch  # the fine-tune was not cut at one epoch
    for phase, sub in zip(r.phases, ("probe", ""), strict=True):
        metrics = [json.loads(x) for x in (run / sub / "metrics.jsonl").read_text().splitlines()]
        val_steps = [m["step"] for m in metrics if "val_top1" in m]
        assert val_steps and val_steps[-1] == phase["steps"], (phase["strategy"], val_steps)
    assert r.test["top1"] > 0.4
