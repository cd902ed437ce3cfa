"""Runs are never lost or mixed: one run per directory, ``--overwrite`` deletes only what pyxfer
wrote, crash-consistent writes (fsync, stale temporaries, checkpoint fallback, torn logs, a full
disk) and the resume state (objective schedules, world size, batch size)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _data_helpers import make_folder
from test_engine import Align, PlainNet, Supervised, _config, _digits, _free_port, _lenet

from pyxfer.cli import main
from pyxfer.engine import Trainer
from pyxfer.engine import checkpoint as ckpt
from pyxfer.fileio import atomic_directory

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models, shared CPU


class _Stop(Exception):
    pass


def _crash_at(at: int):
    def crash(trainer, step, out):
        if step == at:
            raise _Stop

    return crash


def _equal_states(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- 8. one run per directory ------------------------------------------------------------------
def test_a_directory_holding_a_run_is_refused_unless_resumed_or_overwritten(tmp_path) -> None:
    run = tmp_path / "run"
    data = _digits(128)
    Trainer(Align(_lenet()), data, _config(max_steps=4, checkpoint_every=2, out=str(run))).fit()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"already holds a run \(config.json, metrics.jsonl"):
        Trainer(Align(_lenet()), data, _config(max_steps=2, out=str(run))).fit()
    first = json.loads((run / "config.json").read_text())["run"]["id"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000002",
        "step-00000004",
    ]
    cfg = _config(max_steps=2, checkpoint_every=1, keep_last=5, out=str(run), overwrite=True)
    Trainer(Align(_lenet()), data, cfg).fit()
    second = json.loads((run / "config.json").read_text())["run"]["id"]
    assert second != first
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step-00000001", "step-00000002"]  # none of the old run's is left
    for name in names:
        assert ckpt.read_state(run / "checkpoints" / name)["run_id"] == second
    assert (run / "notes.txt").read_text() == "mine"  # not pyxfer's: kept
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 2  # the old run's records are gone


def test_overwrite_deletes_nothing_in_a_directory_that_is_not_a_run(tmp_path) -> None:
    folder = tmp_path / "mine"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text('{"my": "settings"}')
    (folder / "checkpoints" / "keep.txt").write_text("x")
    cfg = _config(max_steps=1, out=str(folder), overwrite=True)
    with pytest.raises(ValueError, match="not a run written by pyxfer"):
        Trainer(Align(_lenet()), _digits(64), cfg).fit()
    assert (folder / "checkpoints" / "keep.txt").is_file()
    assert (folder / "config.json").read_text() == '{"my": "settings"}'


def test_pruning_and_resuming_see_only_the_runs_own_checkpoints(tmp_path) -> None:
    """A checkpoint of another run with a higher step number is neither kept in place of this
    run's (pruning by step number) nor resumed from."""
    root = tmp_path / "checkpoints"
    ckpt.save_checkpoint(root, 100, {"a": torch.zeros(2)}, {"run_id": "old", "step": 100}, 1)
    for step in (2, 4):
        t = {"a": torch.full((2,), float(step))}
        ckpt.save_checkpoint(root, step, t, {"run_id": "new", "step": step}, keep_last=1)
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step-00000004", "step-00000100"]
    path, tensors, state = ckpt.load_latest(root, "new")
    assert path.name == "step-00000004" and state["step"] == 4
    assert torch.equal(tensors["a"], torch.full((2,), 4.0))


PRETRAIN = [
    "pretrain",
    "--data",
    "digits",
    "--backbone",
    "lenet",
    "--backbone-opt",
    "img_size=8",
    "--backbone-opt",
    "width=0.25",
    "--objective",
    "simclr",
    "--objective-opt",
    "hidden_dim=16",
    "--objective-opt",
    "proj_dim=8",
    "--batch-size",
    "32",
    "--threads",
    "1",
    "--device",
    "cpu",
    "--max-steps",
    "2",
]


def test_cli_pretrain_into_an_existing_run(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main([*PRETRAIN, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main([*PRETRAIN, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--overwrite" in err and str(run) in err
    assert main([*PRETRAIN, "--out", str(run), "--overwrite"]) == 0
    assert main(["pretrain", "--resume", str(run), "--max-steps", "3"]) == 0
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step-00000003"


def test_pack_overwrite_never_deletes_the_source_photos(tmp_path, capsys) -> None:
    photos = tmp_path / "photos"
    make_folder(photos, {"cat": 2, "dog": 2})
    before = sorted(p.relative_to(photos) for p in photos.rglob("*"))
    assert main(["pack", f"folder:{photos}", str(photos), "--size", "4", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "is not a packed store written by pyxfer" in err and str(photos) in err
    assert sorted(p.relative_to(photos) for p in photos.rglob("*")) == before
    store = tmp_path / "store"
    assert main(["pack", f"folder:{photos}", str(store), "--size", "4", "--no-progress"]) == 0
    args = ["pack", f"folder:{photos}", str(store), "--size", "5", "--overwrite", "--no-progress"]
    assert main(args) == 0  # a store pyxfer wrote is replaced
    assert json.loads((store / "meta.json").read_text())["shape"][1:3] == [5, 5]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_overwrite_never_deletes_a_folder_that_is_not_a_bundle(tmp_path, capsys) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    args = ["export", str(tmp_path / "model"), "--out", str(folder), "--overwrite"]
    assert main(args) == 2
    assert "is not a bundle written by pyxfer" in capsys.readouterr().err
    assert (folder / "thesis.tex").read_text() == "years of work"


# -- 9. crash consistency ----------------------------------------------------------------------
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name the fds")
def test_atomic_directory_flushes_the_files_the_directory_and_its_parent(
    tmp_path, monkeypatch
) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    dst = tmp_path / "out"
    with atomic_directory(dst) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.bin").write_bytes(b"abc")
        tmp_name = str(tmp)
    assert (dst / "sub" / "a.bin").read_bytes() == b"abc"
    assert synced.index(f"{tmp_name}/sub/a.bin") < synced.index(f"{tmp_name}/sub")
    assert synced.index(f"{tmp_name}/sub") < synced.index(tmp_name)
    assert synced[-1] == str(tmp_path)  # the rename itself reached the disk


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name the fds")
def test_the_log_reaches_the_disk_before_each_checkpoint(tmp_path, monkeypatch) -> None:
    """A power loss cannot keep a checkpoint and lose the log records before it (which a
    resume would not write again)."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    cfg = _config(max_steps=2, checkpoint_every=2, out=str(tmp_path / "run"))
    Trainer(Align(_lenet()), _digits(64), cfg).fit()
    assert "metrics.jsonl" in synced
    assert synced.index("metrics.jsonl") < synced.index(ckpt.TENSORS)


def test_stale_temporaries_of_killed_writes_are_cleaned(tmp_path) -> None:
    root = tmp_path / "checkpoints"
    dead, alive = _dead_pid(), os.getppid()
    (root / f".step-00000002.tmp-{dead}-0123abcd").mkdir(parents=True)
    (root / f".step-00000002.tmp-{dead}-0123abcd" / "tensors.safetensors").write_bytes(b"\0")
    (root / f".state.json.tmp-{dead}-89abcdef").write_bytes(b"{")
    (root / f".step-00000002.tmp-{alive}-0123abcd").mkdir()  # still being written
    ckpt.save_checkpoint(root, 3, {"a": torch.ones(1)}, {"step": 3}, keep_last=2)
    assert sorted(p.name for p in root.iterdir()) == [
        f".step-00000002.tmp-{alive}-0123abcd",
        "step-00000003",
    ]
    # a replacement killed between its two renames: the old version is restored
    from pyxfer.fileio import clean_stale_temps

    old = tmp_path / f".model.old-{dead}-00ff00ff"
    old.mkdir()
    (old / "model.json").write_text("{}")
    clean_stale_temps(tmp_path)
    assert (tmp_path / "model" / "model.json").read_text() == "{}" and not old.exists()


def _interrupted_run(tmp_path: Path, **kw) -> tuple[Align, Path]:
    """An uninterrupted 6-step run and a run stopped after step 5 (checkpoints at 2 and 4)."""
    data = _digits(128)
    kw = dict(max_steps=6, checkpoint_every=2, keep_last=3, warmup_steps=2, **kw)
    full = Align(_lenet())
    Trainer(full, data, _config(out=str(tmp_path / "a"), **kw)).fit()
    run = tmp_path / "b"
    with pytest.raises(_Stop):
        Trainer(Align(_lenet()), data, _config(out=str(run), **kw), callbacks=[_crash_at(5)]).fit()
    return full, run


def _resume(run: Path, **kw) -> Align:
    resumed = Align(_lenet())
    kw = dict(max_steps=6, checkpoint_every=2, keep_last=3, warmup_steps=2, **kw)
    Trainer(resumed, _digits(128), _config(out=str(run), resume=str(run), **kw)).fit()
    return resumed


@pytest.mark.parametrize("damage", ["empty", "zeroed", "torn", "no_state"])
def test_resume_falls_back_to_the_newest_checkpoint_that_loads(
    tmp_path, damage: str, caplog
) -> None:
    """A newest checkpoint that a power loss left empty, zero-filled or cut short: the run
    resumes from the one before it and still ends with the uninterrupted run's weights."""
    full, run = _interrupted_run(tmp_path)
    newest = run / "checkpoints" / "step-00000004"
    tensors = newest / ckpt.TENSORS
    size = tensors.stat().st_size
    if damage == "empty":
        tensors.write_bytes(b"")
    elif damage == "zeroed":
        tensors.write_bytes(bytes(size))
    elif damage == "torn":
        with open(tensors, "r+b") as f:
            f.truncate(size // 2)
    else:
        (newest / ckpt.STATE).write_text('{"step": 4, "rng": [')
    _equal_states(full, _resume(run))
    assert (run / "checkpoints" / "step-00000004.unreadable").is_dir()  # kept, set aside
    assert "using step-00000002 instead" in caplog.text


def test_resume_refuses_when_no_checkpoint_loads(tmp_path) -> None:
    _, run = _interrupted_run(tmp_path)
    for d in ckpt.list_checkpoints(run / "checkpoints"):
        (d / ckpt.TENSORS).write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint of the run loads"):
        _resume(run)
    assert len(ckpt.list_checkpoints(run / "checkpoints")) == 2  # nothing set aside


def test_resume_tolerates_a_torn_last_metrics_line(tmp_path) -> None:
    full, run = _interrupted_run(tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "epoch": 0, "loss": 0.12')  # killed mid-write
    _equal_states(full, _resume(run))
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_again(tmp_path) -> None:
    data = _digits(128)
    kw = dict(max_steps=3, checkpoint_every=2)
    full = Align(_lenet())
    Trainer(full, data, _config(out=str(tmp_path / "a"), **kw)).fit()
    run = tmp_path / "b"
    with pytest.raises(_Stop):
        Trainer(Align(_lenet()), data, _config(out=str(run), **kw), callbacks=[_crash_at(1)]).fit()
    resumed = Align(_lenet())
    Trainer(resumed, data, _config(out=str(run), resume=str(run), **kw)).fit()
    _equal_states(full, resumed)


def _unshare_ok() -> bool:
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k none /tmp"],
        capture_output=True,
    )
    return probe.returncode == 0


def _in_small_tmpfs(mnt: Path, size_kib: int, args: list[str], cwd: Path):
    """Run ``python -m pyxfer ARGS`` with ``mnt`` a tmpfs of ``size_kib`` KiB (in a private
    mount namespace); returns (the process, the names left in ``mnt``)."""
    mnt.mkdir(exist_ok=True)
    quoted = " ".join(f"'{a}'" for a in args)
    script = (
        f"mount -t tmpfs -o size={size_kib}k none '{mnt}' && "
        f"'{sys.executable}' -m pyxfer {quoted}; rc=$?; "
        f"echo LEFT; find '{mnt}' -mindepth 1 | sort; exit $rc"
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=cwd
    )
    left = proc.stdout.split("LEFT\n", 1)[1].split()
    return proc, [str(Path(p).relative_to(mnt)) for p in left]


def _limited(args: list[str], cwd: Path, fsize: int):
    """Run ``python -m pyxfer ARGS`` with the file-size limit ``fsize`` bytes."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-m", "pyxfer", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        preexec_fn=limit,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics")
def test_pack_past_the_file_size_limit_fails_clearly_and_leaves_nothing(tmp_path) -> None:
    proc = _limited(["pack", "digits", "store", "--size", "32", "--no-progress"], tmp_path, 1 << 19)
    assert proc.returncode == 2, proc.stderr
    assert "file-size limit" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not _unshare_ok(), reason="needs unshare -rm to mount a small tmpfs")
def test_pack_onto_a_full_disk_fails_clearly_and_leaves_nothing(tmp_path) -> None:
    """1,797 digits at 32×32 need 1.8 MB; the disk has 256 KiB. A memory-mapped write would
    die of SIGBUS and leave its temporary directory."""
    mnt = tmp_path / "mnt"
    args = ["pack", "digits", str(mnt / "store"), "--size", "32", "--no-progress"]
    proc, left = _in_small_tmpfs(mnt, 256, args, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "the disk is full" in proc.stderr and "Traceback" not in proc.stderr
    assert left == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics")
def test_checkpoint_past_the_file_size_limit_fails_clearly(tmp_path) -> None:
    """The checkpoint's tensors exceed the limit: a one-line error, no checkpoint and no
    temporary directory, no model."""
    args = [*PRETRAIN, "--checkpoint-every", "1", "--out", "run"]
    proc = _limited(args, tmp_path, 64 << 10)
    assert proc.returncode == 2, proc.stderr
    assert "file-size limit" in proc.stderr and "Traceback" not in proc.stderr
    assert {p.name for p in (tmp_path / "run").iterdir()} <= {
        "checkpoints",
        "config.json",
        "metrics.jsonl",
    }
    assert list((tmp_path / "run" / "checkpoints").iterdir()) == []


@pytest.mark.skipif(not _unshare_ok(), reason="needs unshare -rm to mount a small tmpfs")
def test_checkpoint_onto_a_full_disk_keeps_the_previous_one(tmp_path) -> None:
    """The first checkpoint fits, the second does not: a one-line error, the first intact,
    nothing half-written."""
    mnt = tmp_path / "mnt"
    args = [*PRETRAIN, "--max-steps", "4", "--checkpoint-every", "2", "--out", str(mnt / "run")]
    proc, left = _in_small_tmpfs(mnt, 256, args, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "the disk is full" in proc.stderr and "Traceback" not in proc.stderr
    assert not [name for name in left if re.search(r"/\.[^/]*\.tmp-", "/" + name)]
    assert "run/checkpoints/step-00000002/tensors.safetensors" in left
    assert not [name for name in left if "step-00000004" in name or name.startswith("run/model")]


# -- 10. resume state --------------------------------------------------------------------------
def _adaptation(name: str, **kw):
    from pyxfer.objective import create_objective

    return create_objective(name, _lenet(), num_classes=10, hidden=16, **kw)


@pytest.mark.parametrize("name", ["dann", "cdan"])
def test_gradient_reversal_schedule_survives_a_resume(tmp_path, name: str) -> None:
    """The first resumed step reverses the gradient with the coefficient the uninterrupted
    run used there, not 0 — the weights end equal."""
    digits = _digits(256)
    src, tgt = digits.subset(np.arange(128)), digits.subset(np.arange(128, 256))
    kw = dict(max_steps=6, checkpoint_every=3, batch_size=32)
    seen_full, seen_resumed = [], []
    full = _adaptation(name)
    Trainer(
        full,
        src,
        _config(out=str(tmp_path / "a"), **kw),
        target=tgt,
        callbacks=[lambda t, s, o: seen_full.append(float(o["grl_coeff"]))],
    ).fit()
    broken = _adaptation(name)
    with pytest.raises(_Stop):
        Trainer(
            broken,
            src,
            _config(out=str(tmp_path / "b"), **kw),
            target=tgt,
            callbacks=[_crash_at(4)],
        ).fit()
    resumed = _adaptation(name)
    cfg = _config(out=str(tmp_path / "b"), resume=str(tmp_path / "b"), **kw)
    Trainer(
        resumed,
        src,
        cfg,
        target=tgt,
        callbacks=[lambda t, s, o: seen_resumed.append(float(o["grl_coeff"]))],
    ).fit()
    assert seen_resumed == seen_full[3:] and seen_resumed[0] > 0
    _equal_states(full, resumed)


def test_a_changed_batch_size_is_refused_unless_allowed(tmp_path, caplog) -> None:
    data = _digits(256)
    run = tmp_path / "run"
    kw = dict(max_steps=6, checkpoint_every=2)
    with pytest.raises(_Stop):
        Trainer(Align(_lenet()), data, _config(out=str(run), **kw), callbacks=[_crash_at(3)]).fit()
    cfg = _config(out=str(run), resume=str(run), batch_size=24, **kw)
    with pytest.raises(ValueError, match="batch_size 32 per process and world size 1, this run"):
        Trainer(Align(_lenet()), data, cfg).fit()
    state = ckpt.read_state(run / "checkpoints" / "step-00000002")
    assert state["loader"]["batch_size"] == 32 and state["loader"]["world_size"] == 1
    positions = []
    Trainer(
        Align(_lenet()),
        data,
        cfg.replace(allow_layout_change=True),
        callbacks=[lambda t, s, o: positions.append((t.loader.epoch, t.loader.position))],
    ).fit()
    # 2 batches of 32 = 64 images were consumed: at 24 a batch, 2 batches (48), 16 seen again
    assert positions[0] == (0, 3)
    assert "16 images of epoch 0 are seen again" in caplog.text
    assert ckpt.read_state(run / "checkpoints" / "step-00000006")["loader"]["batch_size"] == 24


def _world_worker(rank: int, world: int, port: int, run: str, allow: bool) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    out = Path(run).parent / f"rank{rank}.json"
    try:
        draws = []
        cfg = _config(
            batch_size=8, max_steps=3, optimizer="sgd", backbone=None, out=run, resume=run
        )
        if allow:
            cfg = cfg.replace(allow_layout_change=True)
        try:
            Trainer(
                Supervised(PlainNet()),
                _digits(64),
                cfg,
                callbacks=[lambda t, s, o: draws.append(torch.rand(4).tolist())],
            ).fit()
            out.write_text(json.dumps({"draws": draws}))
        except ValueError as exc:
            out.write_text(json.dumps({"error": str(exc)}))
        dist.barrier()  # no rank tears gloo down while another's messages are still in flight
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("allow", [False, True])
def test_a_changed_world_size_is_refused_or_gives_every_rank_its_own_streams(
    tmp_path, allow: bool
) -> None:
    import torch.multiprocessing as mp

    run = tmp_path / "run"
    cfg = _config(batch_size=8, max_steps=1, optimizer="sgd", backbone=None, out=str(run))
    Trainer(Supervised(PlainNet()), _digits(64), cfg).fit()  # one process
    mp.start_processes(
        _world_worker, args=(2, _free_port(), str(run), allow), nprocs=2, start_method="fork"
    )
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    if not allow:
        assert "world size 1, this run has batch_size 8 and world size 2" in r0["error"]
        assert "error" in r1
        return
    assert len(r0["draws"]) == 2 and r0["draws"] != r1["draws"]  # not rank 0's stream twice


@pytest.mark.parametrize("fast_probe", [False, True])
def test_finetune_into_an_existing_run_is_refused_unless_overwritten(tmp_path, fast_probe) -> None:
    from pyxfer.transfer.finetune import finetune

    run = tmp_path / "ft"
    kw = dict(
        backbone="lenet",
        backbone_opts={"img_size": 8, "width": 0.25},
        from_scratch=True,
        strategy="linear",
        fast_probe=fast_probe,
        max_steps=3,
        test_fraction=0.0,
        batch_size=32,
        threads=1,
        device="cpu",
        out=run,
    )
    data = _digits(256)
    finetune(data=data, **kw)
    with pytest.raises(ValueError, match="already holds a run"):
        finetune(data=data, **kw)
    finetune(data=data, overwrite=True, **kw)
    assert (run / "model" / "model.json").is_file()
