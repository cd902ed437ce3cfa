"""Fault-injection soak on the real command line: SIGKILL, a full disk, torn logs, power loss.

1. **kills.** ``pyxfer pretrain`` is killed with SIGKILL at random moments (start-up, training,
   checkpoint and model writes) and resumed with ``--resume`` each time; a run that finishes
   starts the next round, until ``--kills`` kills. After every kill every checkpoint, the
   model and ``config.json`` that exist must load (nothing half-written). Between launches,
   at random, the newest checkpoint is damaged as a power loss before it reached the disk
   would leave it (emptied, zero-filled or cut short) and the last line of ``metrics.jsonl``
   is torn. Each round's final weights (``model/`` and the last checkpoint: model, optimiser)
   and its per-step losses must equal an uninterrupted run's bit for bit. The runs are limited
   by ``--max-steps``: a run limited by ``--max-time`` cannot be bit-identical (its schedules
   follow the elapsed time, which differs).
2. **a full disk.** ``pyxfer pack`` and ``pyxfer pretrain`` write onto a tmpfs of a random small
   size (in a private mount namespace, ``unshare -rm``; skipped where that is not allowed) and
   under a random ``RLIMIT_FSIZE``: each must either succeed or stop with a one-line error
   (exit 2, "the disk is full" / "the file-size limit", no traceback) and leave nothing
   half-written (no temporary, no partial store, every checkpoint and model left loads).

Usage::

    nice -n 10 python bench/soak.py --kills 50 --disk-cases 20      # the figures in the docs
    python bench/soak.py --kills 3 --disk-cases 2                    # a quick look

Prints a table of figures (``--json``: one JSON line) and exits 1 if any check failed. Run it
from anywhere but the repository root (Python would import the source tree there).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TEMP = re.compile(r"^\..+\.(tmp|old)-\d+-[0-9a-f]{8}$")


def pretrain_args(steps: int, checkpoint_every: int) -> list[str]:
    """A small SimCLR run on the embedded digits (LeNet, 8 px): seconds per launch on a CPU."""
    return [
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
        "64",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--max-steps",
        str(steps),
        "--checkpoint-every",
        str(checkpoint_every),
        "--keep-last",
        "3",
        "--log-every",
        "1",
        "--warmup-steps",
        "2",
    ]


def _pyxfer(args: list[Any], cwd: Path, log: Path) -> subprocess.Popen:
    """Start ``python -m pyxfer ARGS`` with its output appended to ``log``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "pyxfer", *map(str, args)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@dataclass
class Figures:
    """What the soak did and what it found."""

    kills: int = 0
    kill_moments: Counter = field(default_factory=Counter)
    rounds: int = 0
    rounds_bit_identical: int = 0
    launches: int = 0
    damaged_checkpoints: int = 0
    fallbacks_seen: int = 0
    torn_lines_made: int = 0
    torn_lines_left_by_kills: int = 0
    stale_temps_left_by_kills: int = 0
    disk_cases: Counter = field(default_factory=Counter)
    disk_outcomes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.failures.append(what)
        print(f"FAIL: {what}", file=sys.stderr, flush=True)


# -- checks ---------------------------------------------------------------------------------------
def temps(root: Path) -> list[Path]:
    """Temporaries of pyxfer's atomic writes anywhere under ``root``."""
    return [p for p in root.rglob(".*") if _TEMP.match(p.name)]


def check_nothing_half_written(
    run: Path, figures: Figures, where: str, damaged: set[tuple[str, int]] = frozenset()
) -> None:
    """Every checkpoint listed, the model and config.json that exist load (but the
    checkpoints that the soak itself ``damaged``, as (name, inode), until a resume sets them
    aside)."""
    from pyxfer.engine import checkpoint as ckpt
    from pyxfer.modelio import load_model

    for d in ckpt.list_checkpoints(run / "checkpoints"):
        if _identity(d) in damaged:
            continue
        try:
            ckpt.load_checkpoint(d)
        except Exception as exc:
            figures.fail(f"{where}: checkpoint {d.name} does not load: {exc}")
    if (run / "model").exists():
        try:
            load_model(run / "model")
        except Exception as exc:
            figures.fail(f"{where}: model/ does not load: {exc}")
    if (run / "config.json").exists():
        try:
            json.loads((run / "config.json").read_text())
        except ValueError as exc:
            figures.fail(f"{where}: config.json does not parse: {exc}")


def losses(run: Path) -> dict[int, float]:
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)  # every line must parse after a finished run
        if "loss" in rec:
            if rec["step"] in out:
                raise AssertionError(f"step {rec['step']} logged twice")
            out[rec["step"]] = rec["loss"]
    return out


def compare(run: Path, ref: Path, steps: int, figures: Figures, where: str) -> bool:
    """The finished ``run`` equals ``ref``: model, last checkpoint, per-step losses."""
    import torch
    from safetensors.torch import load_file

    ok = True
    pairs = [("model/model.safetensors",) * 2]
    last = f"checkpoints/step-{steps:08d}/tensors.safetensors"
    pairs.append((last, last))
    for a, b in pairs:
        ta, tb = load_file(str(run / a)), load_file(str(ref / b))
        if ta.keys() != tb.keys():
            figures.fail(f"{where}: {a} has other tensors than the reference")
            ok = False
            continue
        bad = [k for k in ta if not torch.equal(ta[k], tb[k])]
        if bad:
            figures.fail(f"{where}: {a} differs from the uninterrupted run in {bad[:3]}")
            ok = False
    try:
        la, lb = losses(run), losses(ref)
        if la != lb:
            figures.fail(f"{where}: the per-step losses differ from the uninterrupted run's")
            ok = False
    except (ValueError, AssertionError) as exc:
        figures.fail(f"{where}: metrics.jsonl: {exc}")
        ok = False
    return ok


# -- 1. kills -------------------------------------------------------------------------------------
def _identity(checkpoint: Path) -> tuple[str, int]:
    try:
        return checkpoint.name, (checkpoint / "tensors.safetensors").stat().st_ino
    except FileNotFoundError:
        return checkpoint.name, -1


def _stamp(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _torn(run: Path) -> bool:
    """Whether ``run/metrics.jsonl`` ends in the middle of a line."""
    metrics = run / "metrics.jsonl"
    return metrics.exists() and metrics.read_bytes()[-1:] not in (b"", b"\n")


def _moment(run: Path, before: dict[str, Any]) -> str:
    """Where a kill landed, from what it left that was not there before the launch."""
    left = set(temps(run)) - before["temps"] if run.exists() else set()
    if any(p.parent.name == "checkpoints" for p in left):
        return "checkpoint write"
    if any(p.name.startswith(".model.") for p in left):
        return "model write"
    if left:
        return "other write"
    if _stamp(run / "config.json") == before["config"]:
        return "start-up"  # config.json is (re)written once everything is loaded
    if (run / "model").exists():
        return "after the model"
    metrics = run / "metrics.jsonl"
    n = len(metrics.read_bytes().splitlines()) if metrics.exists() else 0
    return "training" if n > before["lines"] else "before the first step"


def _damage_newest(
    run: Path, rng: random.Random, figures: Figures, damaged: set[tuple[str, int]]
) -> None:
    """What a power loss before these fixes could leave of the newest checkpoint."""
    from pyxfer.engine import checkpoint as ckpt

    found = ckpt.list_checkpoints(run / "checkpoints")
    if len(found) < 2 or (run / "model").exists() or _identity(found[-1]) in damaged:
        return
    damaged.add(_identity(found[-1]))
    tensors = found[-1] / ckpt.TENSORS
    size = tensors.stat().st_size
    mode = rng.choice(["empty", "zeroed", "cut short"])
    if mode == "empty":
        tensors.write_bytes(b"")
    elif mode == "zeroed":
        tensors.write_bytes(bytes(size))
    else:
        with open(tensors, "r+b") as f:
            f.truncate(rng.randrange(1, size))
    figures.damaged_checkpoints += 1


def _tear_log(run: Path, rng: random.Random, figures: Figures) -> None:
    """Tear the log as a kill or a power loss can: cut its last line in half when that line
    was written after the newest checkpoint (the engine flushes the log before each one),
    else leave half a line at its end."""
    from pyxfer.engine import checkpoint as ckpt

    metrics = run / "metrics.jsonl"
    if not metrics.exists():
        return
    data = metrics.read_bytes()
    newest = ckpt.latest_checkpoint(run / "checkpoints")
    done = int(newest.name.split("-")[1]) if newest else 0
    start = data.rfind(b"\n", 0, len(data) - 1) + 1
    try:
        last = json.loads(data[start:])
    except ValueError:
        last = None
    if isinstance(last, dict) and last.get("step", 0) > done and rng.random() < 0.5:
        metrics.write_bytes(data[: start + rng.randrange(1, max(2, len(data) - start - 1))])
    else:
        with open(metrics, "ab") as f:
            f.write(b'{"step": 99999, "loss": 0.')
    figures.torn_lines_made += 1


def _last_step(run: Path) -> int:
    """The step of the last complete record of ``run/metrics.jsonl`` (0: none)."""
    try:
        data = (run / "metrics.jsonl").read_bytes()
    except FileNotFoundError:
        return 0
    for line in reversed(data.split(b"\n")[:-1]):  # complete lines only
        try:
            return int(json.loads(line).get("step", 0))
        except (ValueError, AttributeError):
            continue
    return 0


def _wait_step(proc: subprocess.Popen, run: Path, step: int, stamp: int | None) -> None:
    """Wait until the launch has logged ``step`` (or has exited). A resumed launch first
    rewrites ``metrics.jsonl`` (``stamp`` before it) without the records after its checkpoint:
    until then the records seen are the previous launch's."""
    metrics = run / "metrics.jsonl"
    while proc.poll() is None and stamp is not None and _stamp(metrics) == stamp:
        time.sleep(0.01)
    while proc.poll() is None and _last_step(run) < step:
        time.sleep(0.01)


def kill_soak(
    work: Path,
    kills: int,
    *,
    steps: int = 40,
    checkpoint_every: int = 2,
    damage: float = 0.2,
    early: float = 0.15,
    jitter: float = 2.0,
    seed: int = 0,
    figures: Figures | None = None,
    verbose: bool = True,
) -> Figures:
    """Kill and resume ``pyxfer pretrain`` until ``kills`` kills (see the module docstring).

    A launch is killed during its start-up with chance ``early`` (0.05 to 2 s after it
    starts); otherwise at a random step still to train, up to ``jitter`` times the
    uninterrupted run's time per step (checkpoints included) after it logged that step — in
    the step's checkpoint write, the next step, or after the last step in the final
    checkpoint, the model write or the exit. The moments follow the run's
    progress, not the clock, so the machine's load does not shift them. ``damage`` is the
    chance, after each kill, of damaging the newest checkpoint and of tearing the log.
    """
    from pyxfer.engine import checkpoint as ckpt

    figures = figures or Figures()
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    args = pretrain_args(steps, checkpoint_every)
    ref = work / "reference"
    proc = _pyxfer([*args, "--out", ref], work, work / "reference.log")
    if proc.wait() != 0:
        figures.fail(f"the uninterrupted run failed (see {work / 'reference.log'})")
        return figures
    records = [json.loads(x) for x in (ref / "metrics.jsonl").read_text().splitlines()]
    times = [r["time"] for r in records if "loss" in r]
    per_step = max(0.01, (times[-1] - times[0]) / max(1, len(times) - 1))
    round_no = 0
    while figures.kills < kills:
        round_no += 1
        figures.rounds += 1
        run = work / f"round-{round_no}"
        log = work / f"round-{round_no}.log"
        finished = False
        damaged: set[tuple[str, int]] = set()  # checkpoints the soak damaged on purpose
        while not finished:
            before = {
                "temps": set(temps(run)) if run.exists() else set(),
                "config": _stamp(run / "config.json"),
                "metrics": _stamp(run / "metrics.jsonl"),
                "lines": len((run / "metrics.jsonl").read_bytes().splitlines())
                if (run / "metrics.jsonl").exists()
                else 0,
            }
            resume = (run / "config.json").exists()
            newest = ckpt.latest_checkpoint(run / "checkpoints")
            done = int(newest.name.split("-")[1]) if newest else 0
            launch = [*args, "--out", run] if not resume else ["pretrain", "--resume", run]
            proc = _pyxfer(launch, work, log)
            figures.launches += 1
            if figures.kills >= kills or (run / "model").exists():
                finished = True  # (a run with its model only has its end to write)
                rc = proc.wait()
            else:
                try:
                    if rng.random() < early:
                        delay = rng.uniform(0.05, 2.0)
                    else:
                        # a step still to train; the last one (final checkpoint, model,
                        # exit) no more often than any other
                        last = rng.random() < 1 / max(1, steps - done)
                        target = steps if last else rng.randint(done + 1, max(done + 1, steps - 1))
                        _wait_step(proc, run, target, before["metrics"])
                        delay = rng.uniform(0.0, jitter * per_step)
                    rc = proc.wait(timeout=delay)
                    finished = True
                except subprocess.TimeoutExpired:
                    proc.kill()  # SIGKILL
                    proc.wait()
                    figures.kills += 1
                    moment = _moment(run, before)
                    figures.kill_moments[moment] += 1
                    where = f"round {round_no}, kill {figures.kills} ({moment})"
                    if run.exists() and set(temps(run)) - before["temps"]:
                        figures.stale_temps_left_by_kills += 1
                    if _torn(run) and _stamp(run / "metrics.jsonl") != before["metrics"]:
                        figures.torn_lines_left_by_kills += 1
                    if run.exists():
                        check_nothing_half_written(run, figures, where, damaged)
                        if rng.random() < damage:
                            _damage_newest(run, rng, figures, damaged)
                        if rng.random() < damage:
                            _tear_log(run, rng, figures)
                    if verbose:
                        print(f"  {where}", flush=True)
                    continue
            if rc != 0:
                figures.fail(f"round {round_no}: pyxfer pretrain exited {rc} (see {log})")
                return figures
        figures.fallbacks_seen += len(list((run / "checkpoints").glob("*.unreadable")))
        if temps(run):
            figures.fail(f"round {round_no}: temporaries left after the run: {temps(run)}")
        if compare(run, ref, steps, figures, f"round {round_no}"):
            figures.rounds_bit_identical += 1
        if verbose:
            print(f"round {round_no} done: {figures.kills} kills so far", flush=True)
    return figures


# -- 2. a full disk -------------------------------------------------------------------------------
def unshare_available() -> bool:
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k none /tmp"],
        capture_output=True,
    )
    return probe.returncode == 0


def _in_tmpfs(mnt: Path, size_kib: int, args: list[str], cwd: Path) -> tuple[int, str]:
    """``python -m pyxfer ARGS`` with ``mnt`` a fresh tmpfs of ``size_kib`` KiB; the files
    left are copied to ``mnt`` on the host so they can be checked. Returns (rc, stderr)."""
    mnt.mkdir(parents=True, exist_ok=True)
    keep = mnt.parent / (mnt.name + "-left")
    shutil.rmtree(keep, ignore_errors=True)
    quoted = " ".join(f"'{a}'" for a in args)
    script = (
        f"mount -t tmpfs -o size={size_kib}k none '{mnt}' && "
        f"OMP_NUM_THREADS=1 '{sys.executable}' -m pyxfer {quoted}; rc=$?; "
        f"cp -a '{mnt}' '{keep}'; exit $rc"
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=cwd
    )
    return proc.returncode, proc.stderr


def _limited(args: list[str], cwd: Path, fsize: int) -> tuple[int, str]:
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pyxfer", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        preexec_fn=limit,
    )
    return proc.returncode, proc.stderr


def _judge(
    rc: int, err: str, left: Path, kind: str, figures: Figures, where: str, message: str
) -> None:
    """Success, or a clear one-line error with nothing half-written under ``left``."""
    if temps(left):
        figures.fail(f"{where}: temporaries left: {[p.name for p in temps(left)]}")
    if rc == 0:
        figures.disk_outcomes["completed (it fitted)"] += 1
    elif rc == 2 and message in err and "Traceback" not in err:
        figures.disk_outcomes["one-line error, nothing half-written"] += 1
    else:
        figures.fail(f"{where}: exit {rc}, expected 0 or 2 with {message!r}: {err[-600:]}")
        return
    if kind == "pack":
        store = left / "store"
        if store.exists():
            from pyxfer.data import load_dataset

            try:
                load_dataset(f"packed:{store}")
            except Exception as exc:
                figures.fail(f"{where}: a store was left that does not load: {exc}")
            if rc != 0:
                figures.fail(f"{where}: the pack failed but left a store")
    else:
        check_nothing_half_written(left / "run", figures, where)


def disk_soak(
    work: Path, cases: int, *, seed: int = 0, figures: Figures | None = None, verbose: bool = True
) -> Figures:
    """``cases`` random cases of each kind: pack and pretrain, tmpfs and RLIMIT_FSIZE."""
    figures = figures or Figures()
    rng = random.Random(seed + 1)
    work.mkdir(parents=True, exist_ok=True)
    tmpfs = unshare_available()
    if not tmpfs:
        print("unshare -rm not allowed here: the tmpfs cases are skipped", file=sys.stderr)
    train = pretrain_args(6, 2)
    for i in range(cases):
        # 1,797 digits at 32 px: 1.8 MB of images; the checkpoints of the run: ~160 KB each
        plan = [
            ("pack", "rlimit", rng.randrange(1 << 10, 1800 << 10)),
            ("pretrain", "rlimit", rng.randrange(1 << 10, 200 << 10)),
        ]
        if tmpfs:
            plan += [
                ("pack", "tmpfs", rng.randrange(8, 2000)),
                ("pretrain", "tmpfs", rng.randrange(8, 600)),
            ]
        for kind, how, size in plan:
            case = work / f"disk-{i}-{kind}-{how}"
            case.mkdir(parents=True)
            if how == "tmpfs":
                mnt = case / "mnt"
                dest = mnt / ("store" if kind == "pack" else "run")
                args = (
                    ["pack", "digits", dest, "--size", "32", "--no-progress"]
                    if kind == "pack"
                    else [*train, "--out", dest]
                )
                rc, err = _in_tmpfs(mnt, size, [str(a) for a in args], case)
                left, message = case / "mnt-left", "the disk is full"
            else:
                dest = case / ("store" if kind == "pack" else "run")
                args = (
                    ["pack", "digits", dest, "--size", "32", "--no-progress"]
                    if kind == "pack"
                    else [*train, "--out", dest]
                )
                rc, err = _limited([str(a) for a in args], case, size)
                left, message = case, "the file-size limit"
            figures.disk_cases[f"{kind}, {how}"] += 1
            where = f"disk case {i}: {kind} under {how} {size}"
            _judge(rc, err, left, kind, figures, where, message)
            if verbose:
                print(f"  {where}: exit {rc}", flush=True)
    return figures


def table(f: Figures) -> str:
    rows = [
        ("SIGKILLs survived (resumed each time)", f.kills),
        ("  landed in", ", ".join(f"{k} {v}" for k, v in f.kill_moments.most_common())),
        ("  temporaries left by a kill (cleaned later)", f.stale_temps_left_by_kills),
        ("  metrics lines torn by a kill", f.torn_lines_left_by_kills),
        ("launches of pyxfer pretrain", f.launches),
        ("newest checkpoints damaged (power loss)", f.damaged_checkpoints),
        ("  fallbacks to an older checkpoint", f.fallbacks_seen),
        ("metrics lines torn on purpose", f.torn_lines_made),
        ("rounds bit-identical to the uninterrupted run", f"{f.rounds_bit_identical}/{f.rounds}"),
        ("disk-full cases", ", ".join(f"{k} {v}" for k, v in sorted(f.disk_cases.items()))),
        ("  outcomes", ", ".join(f"{k} {v}" for k, v in f.disk_outcomes.most_common())),
        ("failures", len(f.failures)),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=50, help="SIGKILLs to survive (default 50)")
    p.add_argument("--steps", type=int, default=40, help="--max-steps of each run (default 40)")
    p.add_argument("--checkpoint-every", type=int, default=2)
    p.add_argument("--damage", type=float, default=0.2, help="chance per kill of each damage")
    p.add_argument("--early", type=float, default=0.15, help="share of kills in the start-up")
    p.add_argument("--disk-cases", type=int, default=10, help="random cases of each kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    a = p.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="pyxfer-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    figures = kill_soak(
        work / "kills",
        a.kills,
        steps=a.steps,
        checkpoint_every=a.checkpoint_every,
        damage=a.damage,
        early=a.early,
        seed=a.seed,
    )
    disk_soak(work / "disk", a.disk_cases, seed=a.seed, figures=figures)
    print(table(figures))
    print(f"({time.monotonic() - t0:.0f} s; work directory {work})")
    if a.json:
        d = {k: v for k, v in vars(figures).items()}
        print(json.dumps(d, default=dict))
    return 1 if figures.failures else 0


if __name__ == "__main__":
    sys.exit(main())
