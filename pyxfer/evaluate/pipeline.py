"""``evaluate``: the kNN, linear-probe and few-shot protocols on the frozen features of one model,
every number recorded with the protocol that produced it (what ``pyxfer eval`` runs)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyxfer.evaluate.linear import DEFAULT_CS
from pyxfer.evaluate.results import Result, results_to_json

#: the protocols :func:`evaluate` runs, in order
PROTOCOLS = ("knn", "linear", "fewshot")
#: the 2-D feature maps it can draw
FEATURE_MAPS = ("pca", "tsne")


@dataclass
class Evaluation:
    """What :func:`evaluate` measured.

    Attributes:
        results: one :class:`Result` per metric, each with its protocol.
        meta: the record shared by the protocols (data, split, counts, image size, model), the
            protocols run and, with ``out``, the files written (``files``).
    """

    results: list[Result]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``results.json`` document."""
        return results_to_json(self.results, self.meta)


def check_protocols(protocols: str | Iterable[str], argument: str = "protocols") -> list[str]:
    """``"knn,linear"`` or ``["knn", "linear"]`` -> a non-empty list of :data:`PROTOCOLS`."""
    given = protocols.split(",") if isinstance(protocols, str) else list(protocols)
    chosen = [str(p).strip() for p in given if str(p).strip()]
    if not chosen or any(p not in PROTOCOLS for p in chosen):
        raise ValueError(
            f"{argument}: expected a non-empty subset of {','.join(PROTOCOLS)}, received "
            f"{protocols!r}"
        )
    return chosen


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _model(model: Any, info: Mapping[str, Any] | None, name: str) -> tuple[Any, dict[str, Any]]:
    """(backbone, the record of where it came from)."""
    from torch import nn

    from pyxfer.modelio import SavedModel, load_model, locate_model

    if isinstance(model, (str, os.PathLike)):
        mdir = locate_model(model, argument=name).path
        model = load_model(mdir)
        record = {"model_dir": str(mdir), "file_sha256": file_sha256(mdir / "model.safetensors")}
    else:
        record = {}
    if isinstance(model, SavedModel):
        record = {"backbone": model.backbone_name, "task": model.task, **record}
        return model.backbone, {**record, **(info or {})}
    if isinstance(model, nn.Module):
        return model, dict(info) if info else {"backbone": type(model).__name__}
    raise ValueError(
        f"{name}: expected a run or model directory, a SavedModel or a backbone, received "
        f"{type(model).__name__}"
    )


def _labelled(data: Any, name: str) -> tuple[Any, str]:
    """(the labelled images of ``data``, its record: the spec or the store's source)."""
    from pyxfer.data import ImageStore, load_dataset

    store = load_dataset(data)
    spec = os.fspath(data) if not isinstance(data, ImageStore) else store.source or store.name
    store = store.subset(store.labels >= 0)
    if len(store) == 0:
        raise ValueError(f"{name}: {spec!r} has no labelled images")
    return store, spec


def evaluate(
    model: Any,
    data: Any,
    *,
    test_data: Any = None,
    test_fraction: float = 0.2,
    protocols: str | Sequence[str] = PROTOCOLS,
    k: int = 200,
    temperature: float = 0.07,
    shots: Sequence[int] = (1, 5, 10),
    draws: int = 5,
    Cs: Sequence[float] = DEFAULT_CS,
    val_fraction: float = 0.2,
    size: int | None = None,
    resize: int | None = None,
    crop_pct: float = 1.0,
    batch_size: int = 256,
    device: str = "cpu",
    threads: int = 0,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    out: str | os.PathLike[str] | None = None,
    feature_map: str = "pca",
    model_info: Mapping[str, Any] | None = None,
    argument_names: Mapping[str, str] | None = None,
) -> Evaluation:
    """Measure the frozen features of ``model`` on labelled images.

    Features are extracted once (fused preprocessing: shorter side resized to ``resize``,
    centre crop ``size``; cached under ``cache_dir``), split into train and test, and measured
    by each protocol:

    - ``knn``: weighted kNN vote on L2-normalised features (k, temperature): top-1, top-5,
      per-class mean accuracy;
    - ``linear``: logistic regression on standardised features, ``C`` chosen among ``Cs`` on a
      validation split of the training features (never the test split), refitted on both;
    - ``fewshot``: ``shots`` images per class, ``draws`` seeded draws, mean ± std (nearest
      centroid for one shot, the linear probe otherwise).

    Args:
        model: a pyxfer run or model directory (see :func:`pyxfer.modelio.locate_model`), a
            :class:`~pyxfer.modelio.SavedModel` or a backbone (``nn.Module`` with
            ``input_spec``).
        data: labelled images (data-set spec or ``ImageStore``); unlabelled ones are dropped.
        test_data: a separate labelled test set with the classes of ``data``; else a stratified
            ``test_fraction`` of ``data`` (seeded by ``seed``) is the test split.
        protocols: a subset of :data:`PROTOCOLS` (list or comma-separated).
        k, temperature: the kNN protocol.
        shots, draws: the few-shot protocol.
        Cs: the linear-probe ``C`` grid.
        val_fraction: the linear probe's validation share of the training features.
        size: crop side (default: the backbone's input size).
        resize: shorter side before the crop (default ``size / crop_pct``).
        crop_pct: ``size / resize`` (0.875: the torchvision ImageNet protocol).
        batch_size, device, threads: feature extraction.
        seed: the split, the few-shot draws and the linear probe's validation split.
        cache_dir: cache the features here (keyed by model, data and preprocessing).
        progress: a progress bar while extracting.
        out: directory to write ``results.json``, ``confusion.png`` and ``features_map.png``.
        feature_map: ``"pca"`` or ``"tsne"`` (the map in ``features_map.png``).
        model_info: the record of where a backbone came from (with a backbone ``model``).
        argument_names: how the arguments are called in error messages (the command line
            passes its flags, e.g. ``{"test_data": "--test-data"}``).

    Returns:
        an :class:`Evaluation`: the results (each with its protocol) and the shared record.

    Examples:
        >>> from pyxfer import create_backbone
        >>> ev = evaluate(create_backbone("lenet", img_size=8), "digits",
        ...               protocols="knn,linear", progress=False)  # doctest: +SKIP
        >>> print(format_table(ev.results))  # doctest: +SKIP
    """
    from pyxfer.data import stratified_split
    from pyxfer.evaluate.features import checkpoint_fingerprint, extract_features
    from pyxfer.evaluate.fewshot import few_shot_probe
    from pyxfer.evaluate.knn import knn_accuracy
    from pyxfer.evaluate.linear import linear_probe

    names = dict(argument_names or {})

    def name(arg: str) -> str:
        return names.get(arg, arg)

    chosen = check_protocols(protocols, name("protocols"))
    if test_data is None and not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"{name('test_fraction')}: expected a fraction in (0, 1), received {test_fraction}"
        )
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"{name('crop_pct')}: expected a fraction in (0, 1], received {crop_pct}")
    if feature_map not in FEATURE_MAPS:
        raise ValueError(
            f"{name('feature_map')}: expected one of {FEATURE_MAPS}, received {feature_map!r}"
        )
    shots = [int(s) for s in shots]
    cs = [float(c) for c in Cs]
    if "fewshot" in chosen and (not shots or min(shots) < 1):
        raise ValueError(f"{name('shots')}: expected images per class >= 1, received {shots}")

    backbone, model_desc = _model(model, model_info, name("model"))
    backbone.to(device)
    model_desc["state_sha256"] = checkpoint_fingerprint(backbone)
    size = int(size or backbone.input_spec.size)
    resize = int(resize or round(size / crop_pct))
    extract = {
        "batch_size": batch_size,
        "size": size,
        "resize": resize,
        "device": device,
        "threads": threads,
        "progress": progress,
        "cache_dir": cache_dir,
        "model_id": model_desc["state_sha256"],
    }

    store, data_spec = _labelled(data, name("data"))
    class_names = store.class_names
    if test_data is not None:
        test_store, test_spec = _labelled(test_data, name("test_data"))
        if test_store.class_names != class_names:
            raise ValueError(
                f"{name('test_data')}: expected the classes of {name('data')} "
                f"({len(class_names)}: {class_names[:5]}...), received "
                f"{len(test_store.class_names)}: {test_store.class_names[:5]}..."
            )
        x_train = extract_features(backbone, store, **extract)
        x_test = extract_features(backbone, test_store, **extract)
        y_train, y_test = store.labels, test_store.labels
        split: dict[str, Any] = {"kind": "test-data", "test_data": test_spec}
    else:
        feats = extract_features(backbone, store, **extract)
        tr, te = stratified_split(store.labels, (1.0 - test_fraction, test_fraction), seed=seed)
        x_train, y_train, x_test, y_test = feats[tr], store.labels[tr], feats[te], store.labels[te]
        split = {"kind": "stratified", "test_fraction": test_fraction, "seed": seed}
    if len(y_test) == 0:
        raise ValueError(
            f"{name('test_fraction')}: the test split is empty; use a larger fraction or "
            f"{name('test_data')}"
        )
    num_classes = len(class_names)
    common = {
        "data": data_spec,
        "split": split,
        "n_train": len(y_train),
        "n_test": len(y_test),
        "num_classes": num_classes,
        "image_size": size,
        "resize": resize,
        "feature_dim": int(x_train.shape[1]),
        "model": model_desc,
    }

    results: list[Result] = []
    predictions = None
    if "knn" in chosen:
        r = knn_accuracy(
            x_train,
            y_train,
            x_test,
            y_test,
            k,
            temperature,
            num_classes=num_classes,
            threads=threads,
        )
        proto = {"protocol": "knn", "k": r.k, "temperature": r.temperature, "normalize": "l2"}
        proto.update(common)
        results += [
            Result("knn/top1", r.top1, proto),
            Result("knn/top5", r.top5, proto),
            Result("knn/per_class_mean", r.per_class_mean, proto),
        ]
        predictions = ("kNN", r.predictions)
    if "linear" in chosen:
        lin = linear_probe(
            x_train,
            y_train,
            x_test,
            y_test,
            Cs=cs,
            val_fraction=val_fraction,
            seed=seed,
            num_classes=num_classes,
        )
        proto = {
            "protocol": "linear",
            "C": lin.C,
            "Cs": cs,
            "val_fraction": val_fraction,
            "val_seed": seed,
            "val_accuracy": list(lin.val_accuracy.values()),
            "val_loss": list(lin.val_loss.values()),
            "n_fit": lin.n_train,
            "n_val": lin.n_val,
            "solver": f"lbfgs ({lin.backend})",
            "standardize": True,
            **common,
        }
        results += [
            Result("linear/top1", lin.top1, proto),
            Result("linear/per_class_mean", lin.per_class_mean, proto),
        ]
        predictions = ("linear probe", lin.predictions)
    if "fewshot" in chosen:
        fs = few_shot_probe(
            x_train,
            y_train,
            x_test,
            y_test,
            shots,
            draws=draws,
            seed=seed,
            Cs=cs,
            num_classes=num_classes,
        )
        for shot, f in fs.items():
            proto = {
                "protocol": "fewshot",
                "shots": shot,
                "draws": draws,
                "method": f.method,
                "seeds": f.seeds,
                "chosen_C": f.chosen_C,
                "n_shots_total": f.n_train,
                "accuracies": f.accuracies,
                **common,
            }
            results += [
                Result(f"fewshot-{shot}/top1", f.mean, proto, std=f.std),
                Result(
                    f"fewshot-{shot}/per_class_mean", f.per_class_mean, proto, std=f.per_class_std
                ),
            ]

    meta: dict[str, Any] = {"protocols": chosen, **common}
    if out is not None:
        meta["files"] = _write(
            Path(out), results, meta, x_test, y_test, class_names, predictions, feature_map, seed
        )
    return Evaluation(results, meta)


def _write(
    out: Path,
    results: list[Result],
    meta: dict[str, Any],
    x_test: Any,
    y_test: Any,
    class_names: list[str],
    predictions: tuple[str, Any] | None,
    feature_map: str,
    seed: int,
) -> dict[str, str]:
    """``results.json``, ``confusion.png`` and ``features_map.png`` in ``out``; their paths."""
    from pyxfer.evaluate.results import save_results
    from pyxfer.report.plots import plot_confusion, plot_feature_map

    out.mkdir(parents=True, exist_ok=True)
    files = {"results": str(out / "results.json")}
    if predictions is not None:
        title = f"{predictions[0]} confusion (rows normalised)"
        plot_confusion(y_test, predictions[1], class_names, out / "confusion.png", title=title)
        files["confusion"] = str(out / "confusion.png")
    if len(y_test) >= 2:
        plot_feature_map(
            x_test, y_test, class_names, out / "features_map.png", method=feature_map, seed=seed
        )
        files["features_map"] = str(out / "features_map.png")
    save_results(out / "results.json", results, {**meta, "files": files})
    return files
