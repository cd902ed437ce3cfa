"""``pyxfer pretrain``: flags, TOML config, --resume, help listing the registries."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pyxfer import hookimpl
from pyxfer.cli import main
from pyxfer.objectives.base import Objective
from pyxfer.pluginmanager import get_host

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models, shared CPU


class MeanMatch(Objective):
    """Two views: squared distance of their pooled features + a variance hinge."""

    consumes = "views"
    augmentation = "simclr"
    num_views = 2

    def __init__(self, backbone: nn.Module, weight: float = 1.0) -> None:
        super().__init__(backbone)
        self.weight = weight

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        z1, z2 = (self.backbone(v) for v in views)  # (N, D) each
        match = (z1 - z2).pow(2).sum(1).mean()
        spread = F.relu(1.0 - torch.cat([z1, z2]).std(0)).mean()
        return {"loss": match + self.weight * spread, "match": match, "spread": spread}


class _Plugin:
    @hookimpl
    def pyxfer_register_objectives(self, register):
        register("test_meanmatch", MeanMatch, description="in-test two-view objective")


@pytest.fixture
def plugin():
    host = get_host()
    host.register(_Plugin(), name="test-pretrain-objectives")
    yield
    host.unregister("test-pretrain-objectives")


BASE = [
    "pretrain",
    "--data",
    "digits",
    "--backbone",
    "lenet",
    "--backbone-opt",
    "img_size=8",
    "--backbone-opt",
    "width=0.25",
    "--batch-size",
    "32",
    "--threads",
    "1",
    "--device",
    "cpu",
]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_pretrain_with_an_in_process_plugin_objective(plugin, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    argv = [
        *BASE,
        "--objective",
        "test_meanmatch",
        "--objective-opt",
        "weight=0.5",
        "--max-steps",
        "5",
        "--log-every",
        "1",
        "--knn-holdout",
        "0.1",
        "--out",
        str(run),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "stopped (max_steps) at step 5" in out and "kNN top-1" in out
    config = json.loads((run / "config.json").read_text())
    assert config["objective"] == "test_meanmatch" and config["objective_opts"] == {"weight": 0.5}
    assert config["backbone_opts"] == {"img_size": 8, "width": 0.25}
    # 10 % of the 1797 digits held out (class by class, ±1 each) as the kNN queries
    assert abs(config["run"]["images"] - 0.9 * 1797) <= 10
    assert config["run"]["knn"]["queries"] == 1797 - config["run"]["images"]
    records = _metrics(run)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5]
    assert {"match", "spread", "lr"} <= set(records[0])
    assert (run / "model" / "model.safetensors").is_file()


def test_pretrain_dino_with_its_defaults_then_resume(tmp_path: Path) -> None:
    """``pyxfer pretrain --objective dino`` with no objective options: the loader draws the
    preset's 2 global + 6 local views, the run records them (config.json, the report's views
    grid), logs DINO's schedules, and resumes with its centre and schedule state."""
    from pyxfer.report import write_report

    run = tmp_path / "run"
    argv = [*BASE, "--objective", "dino", "--max-steps", "2", "--log-every", "1"]
    assert main([*argv, "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["views"] == "dino" and config["run"]["preset_options"] == {"n_local": 6}
    records = [r for r in _metrics(run) if "loss" in r]
    assert [r["step"] for r in records] == [1, 2]
    assert {"teacher_temp", "tau", "entropy"} <= set(records[0])
    assert main(["pretrain", "--resume", str(run), "--max-steps", "3"]) == 0
    assert [r["step"] for r in _metrics(run) if "loss" in r] == [1, 2, 3]
    html = write_report(run).read_text(encoding="utf-8")
    assert "the 8 views that the dino preset draws" in html


def test_pretrain_example_plugin(tmp_path: Path) -> None:
    try:
        metadata.distribution("pyxfer-example")
    except metadata.PackageNotFoundError:
        pytest.skip("the example plugin is not installed (pip install plugins/examples/...)")
    run = tmp_path / "run"
    assert (
        main([*BASE, "--objective", "example_alignment", "--max-steps", "5", "--out", str(run)])
        == 0
    )
    assert _metrics(run)[-1]["step"] == 5


def test_toml_config_and_flag_override(plugin, tmp_path: Path) -> None:
    run = tmp_path / "run"
    toml = tmp_path / "run.toml"
    toml.write_text(
        'data = "digits"\nbackbone = "lenet"\nobjective = "test_meanmatch"\n'
        "backbone-opt = { img_size = 8, width = 0.25 }\nbatch-size = 32\nthreads = 1\n"
        f'max-steps = 3\noptimizer = "lars"\nlr = 0.2\nwarmup_steps = 1\nout = "{run}"\n'
    )
    assert main(["pretrain", "--config", str(toml), "--max-steps", "4", "--device", "cpu"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["max_steps"] == 4  # the flag wins over the file
    assert config["optimizer"] == "lars" and config["warmup_steps"] == 1 and config["lr"] == 0.2
    assert _metrics(run)[-1]["step"] == 4


def test_resume_continues_the_run(plugin, tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = [
        *BASE,
        "--objective",
        "test_meanmatch",
        "--max-steps",
        "3",
        "--log-every",
        "1",
        "--out",
        str(run),
    ]
    assert main(argv) == 0
    assert (run / "checkpoints" / "step-00000003").is_dir()
    assert main(["pretrain", "--resume", str(run), "--max-steps", "5"]) == 0
    steps = [r["step"] for r in _metrics(run) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5]
    config = json.loads((run / "config.json").read_text())
    assert config["max_steps"] == 5 and config["resume"] == str(run)
    assert config["objective"] == "test_meanmatch"  # everything else from the run


def test_help_lists_registered_objectives_and_backbones(plugin, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "objectives:" in out and "test_meanmatch" in out and "in-test two-view" in out
    assert "backbones:" in out and "lenet" in out and "resnet18" in out
    assert "torchrun" in out


def test_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert (
        main(["pretrain", "--data", "digits", "--backbone", "lenet", "--out", str(tmp_path / "r")])
        == 2
    )
    assert "--objective: required" in capsys.readouterr().err
    assert main([*BASE, "--objective", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["pretrain", "--resume", str(tmp_path / "missing")]) == 2
    assert "config.json" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rate = 1.0\n")
    assert main(["pretrain", "--config", str(bad)]) == 2
    assert "unknown keys" in capsys.readouterr().err


def test_resume_refuses_a_run_whose_config_names_a_weight_file(tmp_path: Path) -> None:
    """A run directory is data: ``--resume`` never loads a file its config.json names."""
    from pyxfer.engine import resume_config

    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "evil.pt").write_bytes(b"not a checkpoint")
    config = {"backbone": "lenet", "backbone_opts": {"img_size": 8, "weights": "../evil.pt"}}
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config\.json.*weights"):
        resume_config(run)
