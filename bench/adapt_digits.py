"""Digit adaptation under a time budget, as a user runs it: ``pyxfer adapt`` on the command line.

For each target, objective and seed, runs ``pyxfer adapt`` in a subprocess with relative paths
from a temporary working directory, reads the run's ``results.json`` and prints a markdown table
of the target test top-1, mean ± std over the seeds, for each label-free selection criterion
(``source_accuracy``, ``target_entropy``, ``snd``, the last step) and for the oracle (``*``,
chosen with target labels: an upper bound, not an unsupervised result), with the steps reached.

Targets:

- ``digits``: MNIST test (10,000) -> scikit-learn digits framed as MNIST (``digits:mnist``).
- ``mnistm``: MNIST test half ``a`` (5,000, grey) -> MNIST-M-style half ``b`` (5,000 digits
  blended with CIFAR-10 test photo patches, RGB), written by ``bench/make_mnistm.py``
  (seed 0); the network takes RGB (``in_chans=3``), MNIST repeated on three channels.

Half of each target (stratified, seeded) is the labelled test set and never trained on.
Default budget: ``--max-time 240 --max-steps 100000`` (the time decides); ``--max-steps N``
sets a step limit and no time budget, for smoke runs::

    python bench/adapt_digits.py                                # the 240 s table
    python bench/adapt_digits.py --max-steps 20 --seeds 0 --objectives dann   # smoke run

Needs ``../shared/data`` next to the project (or ``$PYXFER_SHARED_DATA``): ``mnist-test/``
and ``cifar10-test/cifar10-test.tar.gz``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: selection criteria in table order; ``*`` uses target labels
CRITERIA = ("source_accuracy", "target_entropy", "snd", "last", "target_accuracy*")
TARGETS = {
    "digits": {
        "name": "MNIST -> digits:mnist",
        "source": "idx:data/mnist-test",
        "target": "digits:mnist",
        "opts": ["--backbone-opt", "img_size=28"],
    },
    "mnistm": {
        "name": "MNIST (half a) -> MNIST-M (half b)",
        "source": "packed:data/mnist-a",
        "target": "packed:data/mnistm-b",
        "opts": ["--backbone-opt", "img_size=28", "--backbone-opt", "in_chans=3"],
    },
}
NAMES = {"source_only": "source only", "dann": "DANN", "cdan": "CDAN"}


def _shared() -> Path:
    env = os.environ.get("PYXFER_SHARED_DATA")
    return Path(env) if env else HERE.parent.parent / "shared" / "data"


def _prepare(work: Path, shared: Path, targets: list[str]) -> None:
    """``work/data``: a link to the MNIST test files, and the MNIST-M pair when asked for."""
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    if not (shared / "mnist-test").is_dir():
        raise SystemExit(f"needs {shared / 'mnist-test'} (set PYXFER_SHARED_DATA)")
    if not (data / "mnist-test").exists():
        (data / "mnist-test").symlink_to(shared / "mnist-test")
    if "mnistm" in targets and not (data / "mnistm-b" / "meta.json").is_file():
        spec = importlib.util.spec_from_file_location("make_mnistm", HERE / "make_mnistm.py")
        mm = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mm)
        photos = shared / "cifar10-test" / "cifar10-test.tar.gz"
        mm.build(f"idx:{shared / 'mnist-test'}", f"tar:{photos}", data)


def command(target: str, objective: str, seed: int, args: argparse.Namespace) -> list[str]:
    """The ``pyxfer adapt`` command line of one run (relative paths)."""
    t = TARGETS[target]
    limit = (
        ["--max-steps", str(args.max_steps)]
        if args.max_steps is not None
        else ["--max-time", str(args.max_time), "--max-steps", "100000"]
    )
    return [
        "pyxfer", "adapt",
        "--source-data", t["source"], "--target-data", t["target"],
        "--target-test-fraction", "0.5",
        "--backbone", args.backbone, *t["opts"],
        *limit,
        "--batch-size", "64", "--no-flip",
        "--objective", objective, "--seed", str(seed),
        "--out", f"runs/{target}-{objective}-s{seed}",
    ]  # fmt: skip


def read_run(run: Path) -> dict[str, tuple[float, int]]:
    """``results.json`` of a run: criterion -> (target top-1, selected step)."""
    doc = json.loads((run / "results.json").read_text())
    out: dict[str, tuple[float, int]] = {}
    for r in doc["results"]:
        metric = r["metric"]
        if metric.startswith("adapt/target_top1@"):
            value = float("nan") if r["value"] is None else float(r["value"])
            out[metric.split("@", 1)[1]] = (value, int(r["protocol"]["selected_step"]))
    return out


def mean_std(xs: list[float]) -> str:
    """``m ± s %`` (sample std; ``m %`` for one value)."""
    xs = [100 * x for x in xs if not math.isnan(x)]
    if not xs:
        return "n/a"
    m = sum(xs) / len(xs)
    if len(xs) == 1:
        return f"{m:.1f} %"
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    return f"{m:.1f} ± {s:.1f} %"


def table(runs: dict[tuple[str, str, int], dict[str, tuple[float, int]]]) -> str:
    """The markdown table of every target and objective in ``runs``."""
    head = ["target", "objective", *[c.replace("_", " ") for c in CRITERIA], "steps", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = sorted({(t, o) for t, o, _ in runs}, key=lambda k: (k[0], list(NAMES).index(k[1])))
    for t, o in keys:
        seeds = sorted(s for tt, oo, s in runs if (tt, oo) == (t, o))
        rs = [runs[(t, o, s)] for s in seeds]
        cells = [mean_std([r[c][0] for r in rs if c in r]) for c in CRITERIA]
        steps = [r["last"][1] for r in rs if "last" in r]
        span = f"{min(steps)}–{max(steps)}" if steps and min(steps) != max(steps) else str(steps[0])
        lines.append(
            f"| {TARGETS[t]['name']} | {NAMES.get(o, o)} | " + " | ".join(cells)
            + f" | {span} | {','.join(map(str, seeds))} |"
        )  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="digits,mnistm", help="digits,mnistm")
    ap.add_argument("--objectives", default="source_only,dann,cdan")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--backbone", default="lenet5")
    ap.add_argument("--max-time", type=float, default=240.0, help="seconds per run")
    ap.add_argument("--max-steps", type=int, help="a step limit instead of the time budget")
    ap.add_argument("--work", help="working directory to keep (default: a temporary one)")
    ap.add_argument("--json", help="also write every run's numbers to this file")
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    bad = [t for t in targets if t not in TARGETS]
    if bad:
        raise SystemExit(f"--targets: expected names from {list(TARGETS)}, received {bad}")
    objectives = [o for o in args.objectives.split(",") if o]
    seeds = [int(s) for s in args.seeds.split(",") if s]

    with tempfile.TemporaryDirectory(prefix="adapt-digits-") as tmp:
        work = Path(args.work).resolve() if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        _prepare(work, _shared(), targets)
        runs: dict[tuple[str, str, int], dict[str, tuple[float, int]]] = {}
        for t in targets:
            for o in objectives:
                for s in seeds:
                    cmd = command(t, o, s, args)
                    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
                    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
                    if done.returncode != 0:
                        sys.stderr.write(done.stdout + done.stderr)
                        raise SystemExit(f"pyxfer adapt failed ({done.returncode})")
                    runs[(t, o, s)] = read_run(work / f"runs/{t}-{o}-s{s}")
        limit = (
            f"--max-steps {args.max_steps}"
            if args.max_steps is not None
            else f"--max-time {args.max_time:g} --max-steps 100000"
        )
        print(f"backbone {args.backbone}, {limit}; target test top-1, mean ± std over seeds")
        print(table(runs))
        if args.json:
            doc = {f"{t}/{o}/{s}": r for (t, o, s), r in runs.items()}
            Path(args.json).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
