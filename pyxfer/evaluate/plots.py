"""Report figures: a row-normalised confusion matrix and a 2-D map of features (PNG).

Figures are drawn on matplotlib's Agg canvas directly (no ``pyplot``, no global backend
switch), so they work headless and leave the caller's matplotlib state alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyxfer.evaluate.metrics import check_features, check_labels, confusion_matrix
from pyxfer.fileio import atomic_write_bytes

PROJECTIONS = ("pca", "tsne")


def _save(fig: Any, path: str | os.PathLike[str], dpi: int) -> Path:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(path, buf.getvalue())


def plot_confusion(
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    dpi: int = 100,
) -> Path:
    """Write a confusion matrix PNG: rows = true class normalised to sum 1, columns = predicted.

    Cells are annotated with the row fraction when there are at most 20 classes; tick labels
    are the class names (every n-th name when there are many).

    Returns:
        the path written.
    """
    from matplotlib.figure import Figure

    names = [str(c) for c in class_names]
    c = len(names)
    if c == 0:
        raise ValueError("class_names: expected at least one class, received none")
    t = check_labels(y_true, len(np.asarray(y_true)), "y_true")
    p = check_labels(y_pred, t.size, "y_pred")
    if t.size and max(t.max(), p.max()) >= c:
        raise ValueError(
            f"y_true/y_pred: expected class ids < {c} (the number of class names), received "
            f"{int(max(t.max(), p.max()))}"
        )
    cm = confusion_matrix(t, p, c).astype(np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)  # (C, C)
    side = min(max(4.0, 0.45 * c + 2.0), 24.0)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    step = max(1, int(np.ceil(c / 40)))
    ticks = np.arange(0, c, step)
    long_names = max(len(n) for n in names) > 4
    rotation = 90 if c > 10 else (45 if long_names else 0)
    ax.set_xticks(
        ticks,
        [names[i] for i in ticks],
        rotation=rotation,
        ha="right" if rotation == 45 else "center",
    )
    ax.set_yticks(ticks, [names[i] for i in ticks])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if c <= 20:
        for i in range(c):
            for j in range(c):
                if cm[i, j]:
                    colour = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(
                        j,
                        i,
                        f"{norm[i, j]:.2f}",
                        ha="center",
                        va="center",
                        color=colour,
                        fontsize=7,
                    )
    acc = float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan")
    ax.set_title(title or f"confusion (rows normalised), top-1 {100 * acc:.1f}%")
    fig.tight_layout()
    return _save(fig, path, dpi)


def project_2d(
    feats: Any, method: str = "pca", *, seed: int = 0, perplexity: float = 30.0
) -> np.ndarray:
    """float32 (N, 2) projection of features (N, D) by PCA or t-SNE (scikit-learn)."""
    x = check_features(feats, "feats")
    if method not in PROJECTIONS:
        raise ValueError(f"method: expected one of {PROJECTIONS}, received {method!r}")
    if x.shape[0] < 2:
        raise ValueError(f"feats: expected at least 2 rows to project, received {x.shape[0]}")
    if method == "pca":
        from sklearn.decomposition import PCA

        n_comp = min(2, x.shape[1], x.shape[0])
        z = PCA(n_components=n_comp, random_state=seed).fit_transform(x)
    else:
        from sklearn.manifold import TSNE

        perp = float(min(perplexity, max(1.0, (x.shape[0] - 1) / 3)))
        z = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)
    if z.shape[1] < 2:
        z = np.concatenate([z, np.zeros((z.shape[0], 2 - z.shape[1]))], axis=1)
    return z.astype(np.float32)


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
    """Write a 2-D scatter PNG of the features, one colour per class, legend with class names.

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
    from matplotlib.figure import Figure

    x = check_features(feats, "feats")
    y = check_labels(labels, x.shape[0], "labels")
    names = [str(c) for c in class_names]
    if y.size and y.max() >= len(names):
        raise ValueError(
            f"labels: expected class ids < {len(names)} (the number of class names), received "
            f"{int(y.max())}"
        )
    if x.shape[0] > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_points, replace=False))
        x, y = x[keep], y[keep]
    z = project_2d(x, method, seed=seed)  # (n, 2)
    fig = Figure(figsize=(7.5, 6.0))
    ax = fig.add_subplot()
    classes = np.unique(y)
    cmap = _colours(len(names))
    for c in classes:
        m = y == c
        ax.scatter(z[m, 0], z[m, 1], s=6, alpha=0.7, color=cmap[int(c)], label=names[int(c)])
    if classes.size <= 20:
        ax.legend(markerscale=2.5, fontsize=7, loc="best", frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"features ({method.upper() if method == 'pca' else 't-SNE'})")
    fig.tight_layout()
    return _save(fig, path, dpi)


def _colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    if n <= 10:
        base = colormaps["tab10"]
    elif n <= 20:
        base = colormaps["tab20"]
    else:
        base = colormaps["turbo"]
        return [base(i / max(n - 1, 1)) for i in range(n)]
    return [base(i) for i in range(n)]
