"""Assemble ``report.html`` from a run directory (see :func:`write_report`)."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from pyxfer.fileio import atomic_write_bytes
from pyxfer.report import page, plots, rundir
from pyxfer.report.page import esc, fmt

log = logging.getLogger(__name__)

Section = tuple[str, str, str]  # (anchor, title, body HTML)

#: config keys shown as cards at the top of the summary, in order
_WHAT_KEYS = ("kind", "data", "backbone", "objective", "views", "size", "batch_size", "lr", "seed")
_N_VIEW_IMAGES = 6


def _safe(name: str, fn: Any, *args: Any) -> str:
    """Body of a section; an unexpected failure becomes a "not available" note, not a crash."""
    try:
        return fn(*args)
    except Exception as exc:  # a report must render whatever one part does
        log.warning("report: %s section failed: %s: %s", name, type(exc).__name__, exc)
        return page.not_available(f"could not draw this part ({type(exc).__name__}: {exc})")


def _utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _elapsed(metrics: rundir.Metrics | None) -> float | None:
    """Run time in seconds from the end record (elapsed seconds, or a Unix time stamp)."""
    if metrics is None:
        return None
    last = metrics.end or (metrics.steps[-1] if metrics.steps else None)
    t = last.get("time") if last else None
    if not isinstance(t, (int, float)):
        return None
    if t > 1e9:  # a wall-clock stamp: measure from the first record that has one
        first = next((r["time"] for r in metrics.steps if isinstance(r.get("time"), float)), t)
        return float(t - first)
    return float(t)


def _summary(run: Path, config: dict | None, metrics: rundir.Metrics | None) -> str:
    parts = []
    items: list[tuple[str, str]] = []
    if config:
        items += [(k.replace("_", " "), fmt(config[k])) for k in _WHAT_KEYS if k in config]
        where = (config.get("run") or {}).get("storage")
        if isinstance(where, dict) and where.get("storage"):
            from pyxfer.data.shards import storage_text

            items.append(("store", storage_text(where)))
    end = metrics.end if metrics else None
    if end:
        items.append(("stop reason", fmt(end.get("stop_reason"))))
    steps = metrics.steps if metrics else []
    last_step = (end or {}).get("step", steps[-1].get("step") if steps else None)
    if last_step is not None:
        items.append(("steps", fmt(last_step)))
    if steps and "epoch" in steps[-1]:
        items.append(("epochs", fmt(steps[-1]["epoch"])))
    elapsed = _elapsed(metrics)
    if elapsed is not None:
        items.append(("time", page.duration(elapsed)))
    if metrics:
        _, ips = metrics.series("images_per_s", steps)
        if len(ips):
            items.append(("throughput (median)", f"{np.median(ips):,.0f} images/s"))
        _, wait = metrics.series("loader_wait_frac", steps)
        if len(wait):
            items.append(("loader wait", f"{np.mean(wait):.0%} of step time"))
        _, loss = metrics.series("loss", steps)
        if len(loss):
            items.append(("final loss", fmt(loss[-1])))
        for key in metrics.accuracy_keys():
            _, acc = metrics.series(key, [*metrics.monitors, *steps, *([end] if end else [])])
            if len(acc):
                items.append((f"final {key}", fmt(acc[-1])))
    if not items:
        return page.not_available("no config.json or metrics.jsonl in this run directory")
    parts.append(page.cards(items))
    if config is None:
        parts.append(page.note("config.json is missing; the summary comes from the metrics."))
    if metrics is not None and end is None:
        parts.append(
            page.note(
                "No end record in metrics.jsonl: the run is still going or "
                "stopped without finishing its log."
            )
        )
    if metrics is not None and metrics.skipped:
        parts.append(page.note(f"{metrics.skipped} unreadable line(s) of metrics.jsonl skipped."))
    return "".join(parts)


def _curves(metrics: rundir.Metrics | None) -> str:
    if metrics is None or not metrics.steps:
        return page.not_available("no logged training steps (metrics.jsonl)")
    out = []
    loss = plots.loss_curves(metrics)
    if loss:
        out.append(
            page.img(
                loss,
                "loss curves",
                "Loss parts against the training step "
                "(faint: raw values; solid: moving average when there are many).",
            )
        )
    lr = plots.lr_curve(metrics)
    out.append(
        page.img(lr, "learning-rate curve")
        if lr
        else page.not_available("no learning rate was logged")
    )
    return "".join(out)


def _accuracy(metrics: rundir.Metrics | None) -> str:
    png = plots.accuracy_curves(metrics) if metrics else None
    if png is None:
        return page.not_available("no kNN or probe accuracy was logged during training")
    return page.img(png, "monitor accuracy", "kNN / probe accuracy measured during training.")


def _views(config: dict | None) -> str:
    if not config or "data" not in config or not config.get("views"):
        return page.not_available("the run's config names no data set and augmentation views")
    from pyxfer.data import load_dataset
    from pyxfer.report.views import sample_images, views_grid

    try:
        store = load_dataset(config["data"])
    except Exception as exc:  # the data may live on another machine
        return page.not_available(f"cannot load data set {config['data']!r}: {exc}")
    if len(store) == 0:
        return page.not_available(f"data set {config['data']!r} is empty")
    seed = int(config.get("seed", 0))
    size = int(config.get("size", 224))
    images, indices = sample_images(store, _N_VIEW_IMAGES, seed)
    run = config.get("run")
    stored = run.get("preset_options") if isinstance(run, dict) else None
    if not isinstance(stored, dict):
        stored = {}
    options = {k: int(stored[k]) for k in ("local_size", "n_local") if k in stored}
    png, n_views = views_grid(
        images, indices, config["views"], size=size, seed=seed, preset_options=options
    )
    name = config["views"] if isinstance(config["views"], str) else "custom"
    stored = ""
    if hasattr(store, "storage_info"):  # compressed or sharded: format, size, decode settings
        from pyxfer.data.shards import storage_text

        stored = f" Store: {storage_text(store.storage_info())}."
    return page.img(
        png,
        f"augmented views ({name})",
        f"Each row: an image of {config['data']} (left), then the {n_views} views that the "
        f"{name!s} preset draws from it at size {size} (seed {seed}, epoch 0).{stored}",
        pixels=True,
    )


def _confusion(run: Path) -> str:
    pred = rundir.find_npz(run, "predictions.npz", ("y_true", "y_pred"))
    if pred is not None and np.asarray(pred["y_true"]).size:
        names = [str(c) for c in pred["class_names"]] if "class_names" in pred else None
        y_true, y_pred = np.asarray(pred["y_true"]), np.asarray(pred["y_pred"])
        acc = float(np.mean(y_true.reshape(-1) == y_pred.reshape(-1)))
        png = plots.confusion_matrix(y_true, y_pred, names)
        return page.img(
            png,
            "confusion matrix",
            f"{y_true.size} predictions, accuracy {acc:.2%}; rows are the true "
            "class, normalised to 1.",
        )
    existing = rundir.find_png(run, "confusion.png")
    if existing:
        return page.img(existing, "confusion matrix")
    return page.not_available("no predictions.npz or confusion.png in this run")


def _feature_map(run: Path) -> str:
    feats = rundir.find_npz(run, "features.npz", ("features",))
    if feats is not None and len(feats["features"]) >= 2:
        names = [str(c) for c in feats["class_names"]] if "class_names" in feats else None
        if names is None:
            pred = rundir.find_npz(run, "predictions.npz", ("class_names",))
            names = [str(c) for c in pred["class_names"]] if pred else None
        png = plots.feature_map(feats["features"], feats.get("labels"), names)
        return page.img(
            png,
            "feature map",
            f"{len(feats['features'])} feature vectors "
            "projected on their two principal components, coloured by class.",
        )
    existing = rundir.find_png(run, "features_map.png")
    if existing:
        return page.img(existing, "feature map")
    return page.not_available("no features.npz or features_map.png in this run")


def _protocol(protocol: Any) -> str:
    if isinstance(protocol, dict) and protocol:
        chips = "".join(f"<span>{esc(k)}={esc(fmt(v))}</span>" for k, v in protocol.items())
        return f'<div class="proto">{chips}</div>'
    return esc(fmt(protocol)) if protocol else "—"


def _results(run: Path) -> str:
    rows = rundir.read_results(run)
    if not rows:
        return page.not_available("no results.json in this run")
    body = [
        (fmt(r.get("metric", "?")), fmt(r.get("value")), _protocol(r.get("protocol"))) for r in rows
    ]
    return page.table(
        ("metric", "value", "protocol"), body, cls="results", num_col=1, raw_cols=(2,)
    )


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += _flatten(f"{prefix}.{k}" if prefix else str(k), v)
        return out
    return [(prefix, value)]


def _environment(run: Path) -> str:
    recorded = rundir.read_json(run / "environment.json")
    if isinstance(recorded, dict):
        return page.kv_table(_flatten("", recorded)) + page.note(
            "Recorded by the run (environment.json)."
        )
    from pyxfer.info import environment

    return page.kv_table(_flatten("", environment())) + page.note(
        "Where this report was generated (the run recorded no environment.json)."
    )


def _config(config: dict | None) -> str:
    if config is None:
        return page.not_available("no readable config.json in this run")
    import json

    text = json.dumps(config, indent=2, sort_keys=True, default=str)
    return f"<pre>{esc(text)}</pre>"


def _started(run: Path, config: dict | None, metrics: rundir.Metrics | None) -> str | None:
    """When the run started: a config field, a wall-clock stamp in the metrics, or the time
    config.json was written."""
    for key in ("started", "started_at", "start_time", "created"):
        value = (config or {}).get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, (int, float)) and value > 1e9:
            return _utc(value)
    first = next((r.get("time") for r in (metrics.steps if metrics else [])), None)
    if isinstance(first, (int, float)) and first > 1e9:
        return _utc(first)
    path = run / "config.json"
    return _utc(path.stat().st_mtime) if path.is_file() else None


def _title(run: Path, config: dict | None, metrics: rundir.Metrics | None) -> tuple[str, str]:
    cfg = config or {}
    what = " · ".join(str(cfg[k]) for k in ("objective", "backbone", "data") if cfg.get(k))
    when = _started(run, config, metrics)
    subtitle = " — ".join(s for s in (what, f"started {when}" if when else "") if s)
    return f"pyxfer run: {run.name}", subtitle or str(run)


def render(run_dir: str | os.PathLike[str]) -> str:
    """The report of ``run_dir`` as an HTML string (nothing is written)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ValueError(f"run_dir: expected an existing run directory, received {str(run)!r}")
    config = rundir.read_config(run)
    metrics = rundir.read_metrics(run)
    sections: list[Section] = [
        ("summary", "Run summary", _safe("summary", _summary, run, config, metrics)),
        ("results", "Results", _safe("results", _results, run)),
        ("curves", "Loss and learning rate", _safe("curves", _curves, metrics)),
        ("accuracy", "Accuracy during training", _safe("accuracy", _accuracy, metrics)),
        ("views", "Augmented views", _safe("views", _views, config)),
        ("confusion", "Confusion matrix", _safe("confusion", _confusion, run)),
        ("features", "Feature map", _safe("features", _feature_map, run)),
        ("environment", "Environment", _safe("environment", _environment, run)),
        ("config", "Configuration", _safe("config", _config, config)),
    ]
    from pyxfer import __version__

    title, subtitle = _title(run, config, metrics)
    footer = f"Generated by pyxfer {__version__} on {_utc(dt.datetime.now().timestamp())}."
    return page.page(title, subtitle, sections, footer)


def write_report(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> Path:
    """Write the run's self-contained ``report.html`` (atomically) and return its path.

    Sections appear when their data exists (run summary, results with their protocols, loss
    and learning-rate curves, monitor accuracy, augmented views, confusion matrix, feature
    map, environment, configuration); a missing part becomes a short "not available" note.

    Args:
        run_dir: the run directory.
        out: where to write (default ``run_dir/report.html``).

    Raises:
        ValueError: ``run_dir`` is not a directory.
    """
    text = render(run_dir)
    dest = Path(out) if out is not None else Path(run_dir) / "report.html"
    atomic_write_bytes(dest, text.encode("utf-8"))
    dest.chmod(0o644)  # a page to share: readable like any other file of the run
    return dest
