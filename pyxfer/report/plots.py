"""Every figure pyxfer draws, as PNG bytes (matplotlib's Agg canvas; no pyplot global state,
so it works headless and leaves the caller's matplotlib settings alone).

- run curves: :func:`loss_curves`, :func:`lr_curve`, :func:`accuracy_curves`;
- :func:`confusion_matrix` and :func:`feature_map` (PCA or t-SNE), drawn for the run report
  and, written to PNG files with their inputs checked, by :func:`plot_confusion` and
  :func:`plot_feature_map` (what ``pyxfer eval`` leaves in its output directory).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyxfer._checks import check_choice, check_class_indices, check_features
from pyxfer.fileio import atomic_write_bytes
from pyxfer.report.rundir import Metrics

PALETTE = (
    "#2f6fdf",
    "#e4572e",
    "#17a398",
    "#f3a712",
    "#8c5fbf",
    "#5b6770",
    "#d6458b",
    "#7fb800",
    "#00a6ed",
    "#a0522d",
)
_DPI = 110


#: the 2-D projections :func:`feature_map` offers
PROJECTIONS = ("pca", "tsne")


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, color="#e6e8eb", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        for side in ("left", "bottom"):
            ax.spines[side].set_color("#9aa3ab")
        ax.tick_params(colors="#4a545c", labelsize=8)
    return fig, axes


def _png(fig: Any, dpi: float | None = None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, facecolor="white", dpi=dpi)
    return buf.getvalue()


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (same length; the first values average what exists)."""
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def _line(ax: Any, x: np.ndarray, y: np.ndarray, color: str, label: str) -> None:
    if len(x) > 40:  # noisy: faint raw curve under a moving average
        ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(x, _smooth(y, max(5, len(y) // 40)), color=color, linewidth=1.6, label=label)
    else:
        ax.plot(
            x,
            y,
            color=color,
            linewidth=1.6,
            marker="o" if len(x) < 12 else None,
            markersize=3,
            label=label,
        )


def loss_curves(metrics: Metrics) -> bytes | None:
    """Total loss (left) and every other logged loss part (right) against the step."""
    keys = metrics.loss_keys()
    if not keys or not metrics.steps:
        return None
    parts = [k for k in keys if k != "loss"]
    fig, axes = _figure(9.0, 3.4, ncols=2 if parts and "loss" in keys else 1)
    groups = [["loss"], parts] if len(axes) == 2 else [keys]
    titles = ["total loss", "loss parts"] if len(axes) == 2 else ["loss"]
    color = iter(PALETTE * 4)
    for ax, group, title in zip(axes, groups, titles, strict=True):
        for key in group:
            x, y = metrics.series(key, metrics.steps)
            if len(x):
                _line(ax, x, y, next(color), key)
        ax.set_title(title, fontsize=10, color="#1d2730", loc="left")
        ax.set_xlabel("step", fontsize=9, color="#4a545c")
        if len(group) > 1:
            ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def lr_curve(metrics: Metrics) -> bytes | None:
    """The learning rate against the step."""
    x, y = metrics.series("lr", metrics.steps)
    if not len(x):
        return None
    fig, (ax,) = _figure(9.0, 2.4)
    ax.plot(x, y, color=PALETTE[2], linewidth=1.6)
    ax.set_title("learning rate", fontsize=10, color="#1d2730", loc="left")
    ax.set_xlabel("step", fontsize=9, color="#4a545c")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    return _png(fig)


def accuracy_curves(metrics: Metrics) -> bytes | None:
    """kNN / probe accuracy against the step (monitor records, then the end record)."""
    keys = metrics.accuracy_keys()
    records = [*metrics.monitors, *metrics.steps, *([metrics.end] if metrics.end else [])]
    records.sort(key=lambda r: r.get("step", 0) if isinstance(r.get("step"), (int, float)) else 0)
    fig, (ax,) = _figure(9.0, 3.0)
    drawn = 0
    for key, color in zip(keys, PALETTE, strict=False):
        x, y = metrics.series(key, [r for r in records if key in r])
        if len(x):
            ax.plot(x, y, color=color, linewidth=1.6, marker="o", markersize=3.5, label=key)
            drawn += 1
    if not drawn:
        return None
    ax.set_title("monitor accuracy", fontsize=10, color="#1d2730", loc="left")
    ax.set_xlabel("step", fontsize=9, color="#4a545c")
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def confusion_matrix(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str] | None,
    *,
    title: str | None = None,
    dpi: float | None = None,
) -> bytes:
    """Row-normalised confusion matrix (true class down, predicted across), counts annotated.

    Args:
        y_true: int (N,) true class ids (pairs with a negative id, unlabelled, are left out).
        y_pred: int (N,) predicted class ids.
        class_names: a name per class id (default: the ids).
        title: a title above the matrix (none by default).
        dpi: resolution of the PNG (default the figure's, 110).
    """
    y_true = np.asarray(y_true, np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, np.int64).reshape(-1)
    k = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    names = [str(c) for c in class_names] if class_names is not None else []
    k = max(k, len(names))
    names += [str(i) for i in range(len(names), k)]
    valid = (y_true >= 0) & (y_pred >= 0)
    counts = np.zeros((k, k), np.int64)
    np.add.at(counts, (y_true[valid], y_pred[valid]), 1)
    rows = counts.sum(1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros((k, k)), where=rows > 0)
    side = float(np.clip(0.42 * k + 1.6, 3.6, 9.0))
    fig, (ax,) = _figure(side + 0.9, side)
    ax.grid(False)
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
    if k <= 40:
        short = [n if len(n) <= 14 else n[:13] + "…" for n in names]
        ax.set_xticks(range(k), short, rotation=90 if k > 10 else 0, fontsize=7)
        ax.set_yticks(range(k), short, fontsize=7)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    ax.text(
                        j,
                        i,
                        str(counts[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "#1d2730",
                    )
    ax.set_xlabel("predicted", fontsize=9)
    ax.set_ylabel("true", fontsize=9)
    if title:
        ax.set_title(title, fontsize=10, color="#1d2730", loc="left")
    return _png(fig, dpi)


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, D) features on their two principal axes.

    Returns:
        ((N, 2) coordinates, (2,) fraction of the variance each axis explains).
    """
    x = np.asarray(features, np.float64).reshape(len(features), -1)
    x = x - x.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:  # D == 1: pad with a zero axis
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], x.shape[1]))])
    var = s**2
    explained = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return x @ comps.T, np.pad(explained, (0, 2 - len(explained)))


def project_2d(
    feats: Any, method: str = "pca", *, seed: int = 0, perplexity: float = 30.0
) -> np.ndarray:
    """float32 (N, 2) projection of features (N, D): PCA (:func:`pca_2d`) or t-SNE
    (scikit-learn, seeded)."""
    x = check_features(feats, "feats", dtype=np.float32)
    check_choice("method", method, PROJECTIONS)
    if x.shape[0] < 2:
        raise ValueError(f"feats: expected at least 2 rows to project, received {x.shape[0]}")
    if method == "pca":
        return pca_2d(x)[0].astype(np.float32)
    from sklearn.manifold import TSNE

    perp = float(min(perplexity, max(1.0, (x.shape[0] - 1) / 3)))
    z = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)
    return np.asarray(z, np.float32)


def _colours(n: int) -> list[Any]:
    """``n`` distinguishable colours (tab10, tab20, then evenly spaced along turbo)."""
    from matplotlib import colormaps

    if n <= 10:
        base = colormaps["tab10"]
    elif n <= 20:
        base = colormaps["tab20"]
    else:
        base = colormaps["turbo"]
        return [base(i / max(n - 1, 1)) for i in range(n)]
    return [base(i) for i in range(n)]


def feature_map(
    features: np.ndarray,
    labels: np.ndarray | None,
    class_names: Sequence[str] | None,
    *,
    method: str = "pca",
    max_points: int = 4000,
    seed: int = 0,
    title: str | None = None,
    dpi: float | None = None,
) -> bytes:
    """Scatter of the features' 2-D projection, coloured by class.

    Args:
        features: float (N, D).
        labels: int (N,) class ids (-1 or None: unlabelled, drawn grey).
        class_names: a name per class id.
        method: ``"pca"`` (the two principal axes, with the variance they explain) or
            ``"tsne"`` (slower, shows clusters).
        max_points: draw a random subset (fixed ``seed``) of at most this many points.
        seed: seed of the subset and of t-SNE.
        title: a title above the map (none by default).
        dpi: resolution of the PNG (default the figure's, 110).
    """
    check_choice("method", method, PROJECTIONS)
    n = len(features)
    labels = np.full(n, -1) if labels is None else np.asarray(labels).reshape(-1)
    keep = np.arange(n)
    if n > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    points = np.asarray(features)[keep]
    if method == "pca":
        xy, explained = pca_2d(points)
        axis_names = [f"PC {i + 1} ({explained[i]:.0%} of variance)" for i in range(2)]
    else:
        xy = project_2d(points, "tsne", seed=seed)
        axis_names = ["t-SNE 1", "t-SNE 2"]
    lab = labels[keep]
    fig, (ax,) = _figure(7.0, 5.2)
    classes = [int(c) for c in np.unique(lab) if c >= 0]
    colours = _colours(len(classes))
    size = float(np.clip(3000 / max(len(keep), 1), 4, 30))
    if (lab < 0).any():
        ax.scatter(*xy[lab < 0].T, s=size, color="#b8bec4", label="unlabelled", linewidths=0)
    for i, c in enumerate(classes):
        name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        ax.scatter(
            *xy[lab == c].T,
            s=size,
            color=colours[i],
            label=str(name),
            linewidths=0,
            alpha=0.85,
        )
    ax.set_xlabel(axis_names[0], fontsize=9)
    ax.set_ylabel(axis_names[1], fontsize=9)
    if method != "pca":
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10, color="#1d2730", loc="left")
    if 0 < len(classes) <= 20:
        ax.legend(
            fontsize=7, frameon=False, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5)
        )
    return _png(fig, dpi)


# -- the figures as files, inputs checked (``pyxfer eval``) ------------------------------------
def _names(class_names: Sequence[str]) -> list[str]:
    names = [str(c) for c in class_names]
    if not names:
        raise ValueError("class_names: expected at least one class, received none")
    return names


def _check_ids_below(name: str, ids: np.ndarray, count: int) -> None:
    if ids.size and int(ids.max()) >= count:
        raise ValueError(
            f"{name}: expected class ids < {count} (the number of class names), received "
            f"{int(ids.max())}"
        )


def plot_confusion(
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    dpi: int = 100,
) -> Path:
    """Write :func:`confusion_matrix` as a PNG (atomically): rows = true class normalised to
    sum 1, columns = predicted; the title defaults to the top-1 accuracy.

    Returns:
        the path written.
    """
    names = _names(class_names)
    t = check_class_indices(y_true, len(np.asarray(y_true)), "y_true")
    p = check_class_indices(y_pred, t.size, "y_pred")
    _check_ids_below("y_true/y_pred", np.concatenate([t, p]), len(names))
    if not title:
        acc = float(np.mean(t == p)) if t.size else float("nan")
        title = f"confusion (rows normalised), top-1 {100 * acc:.1f}%"
    return atomic_write_bytes(path, confusion_matrix(t, p, names, title=title, dpi=dpi))


def plot_feature_map(
    feats: Any,
    labels: Any,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    method: str = "pca",
    max_points: int = 5000,
    seed: int = 0,
    title: str = "",
    dpi: int = 100,
) -> Path:
    """Write :func:`feature_map` as a PNG (atomically), one colour per class.

    Args:
        feats: float (N, D); labels: int (N,) class ids.
        class_names: names of the class ids.
        path: the PNG to write.
        method: ``"pca"`` (fast, linear) or ``"tsne"`` (slower, shows clusters).
        max_points: a seeded random subset of at most this many points is drawn.
        seed: seed of the subset and of t-SNE.

    Returns:
        the path written.
    """
    check_choice("method", method, PROJECTIONS)
    x = check_features(feats, "feats", dtype=np.float32)
    y = check_class_indices(labels, x.shape[0], "labels")
    names = [str(c) for c in class_names]
    _check_ids_below("labels", y, len(names))
    if x.shape[0] < 2:
        raise ValueError(f"feats: expected at least 2 rows to project, received {x.shape[0]}")
    png = feature_map(
        x, y, names, method=method, max_points=max_points, seed=seed, title=title, dpi=dpi
    )
    return atomic_write_bytes(path, png)
