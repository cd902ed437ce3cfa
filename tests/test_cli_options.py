"""The command line's shared options: training flags generated from ``TrainConfig`` (one
declaration, the same in ``pretrain``, ``finetune`` and ``adapt``), ``KEY=VALUE`` values, the
TOML reader, ``--help`` listing the objectives each command can run, ``--backbone-opt``."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest

from pyxfer.cli import build_parser, main
from pyxfer.cli.options import (
    PRETRAIN_ONLY,
    TRAIN_FIELDS,
    collect,
    default_text,
    flag_of,
    parse_opts,
    train_fields,
)
from pyxfer.engine import TrainConfig

TRAINING = ("pretrain", "finetune", "adapt")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _actions(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """dest -> the first action with a long flag (hidden aliases come later)."""
    out: dict[str, argparse.Action] = {}
    for a in p._actions:
        if any(s.startswith("--") for s in a.option_strings):
            out.setdefault(a.dest, a)
    return out


def _parse(argv: list[str]) -> dict:
    return collect(build_parser().parse_args(argv))


def test_every_shared_training_flag_is_the_same_in_the_three_commands() -> None:
    parsers = _subparsers()
    shared = set(train_fields(without=(*PRETRAIN_ONLY, "data", "objective", "objective_opts")))
    assert {"max_steps", "max_time", "batch_size", "lr", "backbone_opts", "flip"} <= shared
    first = _actions(parsers["pretrain"])
    for command in TRAINING:
        actions = _actions(parsers[command])
        for name in shared:
            a, b = actions[name], first[name]
            got = (a.option_strings, a.help, a.type, a.nargs, a.choices, a.metavar, a.default)
            want = (b.option_strings, b.help, b.type, b.nargs, b.choices, b.metavar, b.default)
            assert got == want, f"{command} {name}"
            # a flag adds nothing to the settings unless given
            assert a.default is argparse.SUPPRESS
    # pretraining takes every field; the others what they can run
    assert set(TRAIN_FIELDS) <= set(first)
    assert not set(PRETRAIN_ONLY) & set(_actions(parsers["finetune"]))
    assert "objective" not in _actions(parsers["finetune"])
    assert "data" not in _actions(parsers["adapt"])


def test_help_shows_the_dataclass_defaults() -> None:
    actions = _actions(_subparsers()["pretrain"])
    for f in dataclasses.fields(TrainConfig):
        a = actions[f.name]
        assert flag_of(f.name) in a.option_strings and a.help.startswith(f.metadata["help"])
        shown = default_text(f.name)
        if shown is not None:
            assert a.help.endswith(f"(default: {shown})")
    defaults = TrainConfig()
    assert actions["batch_size"].help.endswith(f"(default: {defaults.batch_size})")
    assert actions["lr"].help.endswith(f"(default: {defaults.lr})")
    assert actions["betas"].help.endswith("(default: 0.9 0.999)")
    assert actions["flip"].help.endswith("(default: --flip)")
    assert actions["max_time"].help.endswith("(default: no limit)")
    assert actions["backbone_opts"].option_strings == ["-o", "--backbone-opt"]


def test_flags_parse_to_config_values() -> None:
    argv = ["pretrain", "--max-steps", "5", "-o", "img_size=8", "--backbone-opt", "stem=small"]
    argv += ["--no-flip", "--betas", "0.8", "0.99", "--nesterov", "--device", "cuda:1"]
    argv += ["--objective-opt", "temperature=0.2", "--max-time", "30"]
    got = _parse(argv)
    assert got == {
        "max_steps": 5,
        "backbone_opts": {"img_size": 8, "stem": "small"},
        "flip": False,
        "betas": [0.8, 0.99],
        "nesterov": True,
        "device": "cuda:1",
        "objective_opts": {"temperature": 0.2},
        "max_time": 30.0,
    }
    config = TrainConfig.from_dict(got)
    assert config.betas == (0.8, 0.99) and config.flip is False
    # the same flags, the same values in the other commands
    for command in ("finetune", "adapt"):
        assert _parse([command, "--max-steps", "5", "-o", "img_size=8", "--no-flip"]) == {
            "max_steps": 5,
            "backbone_opts": {"img_size": 8},
            "flip": False,
        }


def test_toml_keys_in_any_spelling_and_flags_over_them(tmp_path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(
        "max-steps = 3\nbatch_size = 16\nbackbone-opt = { img-size = 8 }\nflip = false\n"
        'objective_opts = ["weight=0.5"]\nbetas = [0.5, 0.6]\n'
    )
    got = _parse(["pretrain", "--config", str(toml), "--max-steps", "4"])
    assert got == {
        "max_steps": 4,
        "batch_size": 16,
        "backbone_opts": {"img_size": 8},
        "flip": False,
        "objective_opts": {"weight": 0.5},
        "betas": [0.5, 0.6],
    }
    adapt = tmp_path / "adapt.toml"
    adapt.write_text('from = "runs/x"\nsource-data = "digits"\nno-oracle = true\n')
    with pytest.raises(ValueError, match=r"unknown keys \['no-oracle'\]"):
        _parse(["adapt", "--config", str(adapt)])
    adapt.write_text('from = "runs/x"\nsource-data = "digits"\noracle = false\n')
    assert _parse(["adapt", "--config", str(adapt)]) == {
        "from_run": "runs/x",
        "source_data": "digits",
        "oracle": False,
    }
    # a pretraining-only setting is no key of finetune
    ft = tmp_path / "ft.toml"
    ft.write_text("knn_k = 5\n")
    with pytest.raises(ValueError, match=r"unknown keys \['knn_k'\]"):
        _parse(["finetune", "--config", str(ft)])
    bad = tmp_path / "bad.toml"
    bad.write_text("max_steps = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        _parse(["pretrain", "--config", str(bad)])
    with pytest.raises(FileNotFoundError, match="--config: expected a TOML file"):
        _parse(["pretrain", "--config", str(tmp_path / "missing.toml")])


def test_parse_opts() -> None:
    assert parse_opts(["a=1", "b=0.5", "c=true", "d=none", "e=[1, 2]", "f=x"], "--o") == {
        "a": 1,
        "b": 0.5,
        "c": True,
        "d": None,
        "e": [1, 2],
        "f": "x",
    }
    assert parse_opts({"img-size": 8}, "--o") == {"img_size": 8}
    assert parse_opts(None, "--o") == {}
    with pytest.raises(ValueError, match="--backbone-opt: expected KEY=VALUE, received 'img'"):
        _parse(["pretrain", "--backbone-opt", "img"])


def test_help_lists_the_objectives_each_command_can_run(capsys) -> None:
    def listed(command: str) -> set[str]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        block = out.split("objectives:\n", 1)[1].split("\n\n", 1)[0]
        return {line.split()[0] for line in block.splitlines()}

    pretraining, adaptation = listed("pretrain"), listed("adapt")
    assert {"simclr", "byol", "mae"} <= pretraining
    assert {"dann", "cdan", "fixmatch", "source_only"} <= adaptation
    assert not pretraining & adaptation


def test_pretrain_refuses_an_adaptation_objective(tmp_path, capsys) -> None:
    argv = ["pretrain", "--data", "digits", "--backbone", "lenet", "-o", "img_size=8"]
    argv += ["--objective", "dann", "--device", "cpu", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "adaptation objective 'dann'" in err and "pyxfer adapt" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", [["eval"], ["zeroshot", "fit"]])
def test_backbone_opt_is_one_name_and_option_still_works(command) -> None:
    base = [*command, "--backbone", "lenet", "--data", "digits"]
    for flag in ("-o", "--backbone-opt", "--option"):
        args = build_parser().parse_args([*base, flag, "img_size=8", flag, "width=0.5"])
        assert args.backbone_opts == ["img_size=8", "width=0.5"]
    parsers = _subparsers()
    name = command[0]
    help_text = parsers[name].format_help()
    assert "-o K=V, --backbone-opt K=V" in help_text and "--option" not in help_text


def test_building_the_parser_imports_no_torch(tmp_path) -> None:
    code = (
        "import sys\n"
        "from pyxfer.cli import build_parser\n"
        "build_parser().parse_args(['pretrain', '--max-steps', '3'])\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert out.stdout.strip() == "False"
