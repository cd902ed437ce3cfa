"""The backbone contract, the backbone factory and weight files.

A backbone is an ``nn.Module`` that turns images into features (timm's interface):

- ``num_features``: width of the pooled feature vector;
- ``forward_features(x)``: images (N, C, H, W) -> feature map (N, num_features, h, w), or
  tokens (N, 1 + L, num_features) for a vision transformer;
- ``forward_head(features, pre_logits=False)``: pool (and classify when the backbone has a
  head);
- ``forward(x)``: ``forward_head(forward_features(x))``, i.e. pooled features
  (N, num_features) when ``num_classes == 0`` (the default), logits (N, num_classes) otherwise;
- ``input_spec``: the :class:`InputSpec` (channels, nominal size, normalisation);
- ``param_groups()``: parameters in named groups ordered stem -> last stage (-> head), each
  parameter exactly once, for freezing and layer-wise learning rates;
- ``reset_classifier(num_classes)``: replace the head (0 removes it).

Weights come from local files only: safetensors, or a torch state dict read with
``weights_only=True``. Nothing downloads. A weight file is only ever a path the caller passes:
options that name files (``weights`` and those a plugin marks, see :func:`path_options`) are
refused in options read from a data file (``model.json``), see :func:`check_stored_kwargs`.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pyxfer.fileio import default_file_mode
from pyxfer.pluginmanager import registry

log = logging.getLogger("pyxfer.backbone")

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: single-channel equivalents (mean of the three channels), for grey-scale inputs
IMAGENET_GRAY_MEAN: tuple[float] = (0.449,)
IMAGENET_GRAY_STD: tuple[float] = (0.226,)


@dataclass(frozen=True)
class InputSpec:
    """What a backbone expects as input.

    Attributes:
        channels: number of input channels (1 grey, 3 RGB).
        size: nominal (training) side length in pixels; inputs are square ``size x size``.
        mean: per-channel mean subtracted from images scaled to [0, 1].
        std: per-channel standard deviation images are divided by.
        min_size: smallest side the backbone accepts (smaller inputs fail or degenerate).
    """

    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    min_size: int = 1

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError(f"channels: expected >= 1, received {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean/std: expected {self.channels} values each (one per channel), received "
                f"{len(self.mean)} and {len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std: expected positive values, received {self.std}")
        if not 1 <= self.min_size <= self.size:
            raise ValueError(
                f"min_size: expected 1 <= min_size <= size={self.size}, received {self.min_size}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for configs and export bundles)."""
        return {
            "channels": self.channels,
            "size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "min_size": self.min_size,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            int(data["channels"]),
            int(data["size"]),
            tuple(float(v) for v in data["mean"]),
            tuple(float(v) for v in data["std"]),
            int(data.get("min_size", 1)),
        )


def imagenet_spec(in_chans: int, size: int, min_size: int = 1) -> InputSpec:
    """An :class:`InputSpec` with ImageNet normalisation for 1 or 3 channels."""
    if in_chans == 1:
        return InputSpec(1, size, IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD, min_size)
    return InputSpec(in_chans, size, IMAGENET_MEAN, IMAGENET_STD, min_size)


class Backbone(nn.Module):
    """Base class of pyxfer backbones (see the module docstring for the contract).

    Subclasses build their layers, set ``num_features`` and ``input_spec``, implement
    :meth:`forward_features`, call :meth:`reset_classifier` last in ``__init__`` (so that the
    head comes last in the state dict), and describe their parameter groups by overriding
    :meth:`group_prefixes`. Feature maps are pooled by global average; token backbones
    override :meth:`pool`.

    Attributes:
        num_features: width of the pooled features.
        num_classes: classes of the linear head, 0 when there is none.
        input_spec: what the backbone expects as input.
        head_name: attribute holding the classifier (``"fc"`` for torchvision ResNets).
    """

    num_features: int
    num_classes: int = 0
    input_spec: InputSpec
    head_name: str = "head"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Images (N, C, H, W) -> feature map (N, num_features, h, w)."""
        raise NotImplementedError

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map (N, D, h, w) -> pooled features (N, D) by global average."""
        return features.mean(dim=(-2, -1))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the output of :meth:`forward_features`, then apply the head unless ``pre_logits``.

        Returns:
            (N, num_features) if ``pre_logits`` or no head, else logits (N, num_classes).
        """
        x = self.pool(features)  # (N, D)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> pooled features (N, num_features), or logits with a head."""
        return self.forward_head(self.forward_features(x))

    # -- classifier ------------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        """The head module (``nn.Identity`` when ``num_classes == 0``)."""
        return getattr(self, self.head_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a fresh ``Linear(num_features, num_classes)``; 0 removes it."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes: expected an integer >= 0, received {num_classes!r}")
        self.num_classes = num_classes
        head: nn.Module = (
            nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        )
        ref = next(self.parameters(), None)
        if ref is not None:
            head = head.to(device=ref.device, dtype=ref.dtype)
        setattr(self, self.head_name, head)

    # -- parameter groups ------------------------------------------------------------------
    def group_prefixes(self) -> list[tuple[str, tuple[str, ...]]]:
        """Ordered ``(group name, parameter-name prefixes)`` from stem to last stage.

        The default makes one group per top-level attribute, in registration order. The head
        is added by :meth:`param_groups`; do not list it here.
        """
        names: list[str] = []
        for pname, _ in self.named_parameters():
            top = pname.split(".", 1)[0]
            if top != self.head_name and top not in names:
                names.append(top)
        return [(n, (n,)) for n in names]

    def param_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        """Parameters in named groups, ordered stem -> last stage -> ``"head"``.

        Every parameter appears in exactly one group; groups without parameters are left out.
        Used to freeze early stages and for layer-wise learning-rate decay.
        """
        spec = [*self.group_prefixes(), ("head", (self.head_name,))]
        groups: dict[str, list[nn.Parameter]] = {name: [] for name, _ in spec}
        for pname, p in self.named_parameters():
            owners = [
                g
                for g, prefixes in spec
                if any(pname == q or pname.startswith(q + ".") for q in prefixes)
            ]
            if len(owners) != 1:
                raise RuntimeError(
                    f"{type(self).__name__}.group_prefixes(): parameter {pname!r} belongs to "
                    f"{len(owners)} groups {owners}, expected exactly one"
                )
            groups[owners[0]].append(p)
        return [(name, params) for name, params in groups.items() if params]


def _bins(size: int, grid: int) -> torch.Tensor:
    """(grid, size) averaging matrix of adaptive average pooling: bin i covers
    ``floor(i * size / grid) .. ceil((i + 1) * size / grid)``, as ``adaptive_avg_pool2d``."""
    m = torch.zeros(grid, size)
    for i in range(grid):
        lo, hi = (i * size) // grid, -((-(i + 1) * size) // grid)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def grid_pool(features: torch.Tensor, grid: int) -> torch.Tensor:
    """Feature map (N, D, h, w) -> (N, D * grid * grid): average over a grid x grid layout.

    ``grid=1`` is global average pooling; larger grids keep where in the image a feature
    fired (what spatial class descriptions such as "a stroke along the top" need). The bins
    are those of ``adaptive_avg_pool2d``, written as two matrix products so that any map size
    exports to ONNX. Flattened channel-major: feature ``d`` of cell ``(i, j)`` is at
    ``d * grid * grid + i * grid + j``.
    """
    if features.ndim != 4:
        raise ValueError(
            f"features: grid pooling needs a feature map (N, D, h, w), received shape "
            f"{tuple(features.shape)} (token backbones have no spatial grid)"
        )
    h, w = int(features.shape[-2]), int(features.shape[-1])
    if isinstance(grid, bool) or not isinstance(grid, int) or not 1 <= grid <= min(h, w):
        raise ValueError(
            f"grid: expected an int in [1, {min(h, w)}] (the map is {h}x{w}), received {grid!r}"
        )
    rows = _bins(h, grid).to(features)  # (g, h)
    cols = _bins(w, grid).to(features)  # (g, w)
    pooled = rows @ features @ cols.t()  # (N, D, g, g)
    return pooled.flatten(1)  # (N, D * g * g)


class GridFeatures(nn.Module):
    """A backbone whose output is its feature map pooled on one or more grids, concatenated.

    Args:
        backbone: a backbone with ``forward_features`` giving a map (N, D, h, w).
        grids: a grid side, or several (their poolings are concatenated in this order).

    Shapes:
        forward: (N, C, H, W) -> (N, D * sum(g * g for g in grids)).
    """

    def __init__(self, backbone: nn.Module, grids: int | tuple[int, ...]) -> None:
        super().__init__()
        self.backbone: Any = backbone  # anything with forward_features
        self.grids = (grids,) if isinstance(grids, int) else tuple(grids)
        self.input_spec = getattr(backbone, "input_spec", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.backbone.forward_features(x)  # (N, D, h, w)
        return torch.cat([grid_pool(fmap, g) for g in self.grids], dim=1)


def check_backbone(model: Any, where: str = "backbone") -> None:
    """Raise ``TypeError`` if ``model`` does not satisfy the backbone contract.

    Checks the required attributes and methods (``num_features``, ``input_spec``,
    ``forward_features``, ``param_groups``; the classifier methods are optional) and that
    ``param_groups()`` covers every parameter exactly once. Output shapes are not checked (that
    needs a forward pass).
    """
    problems: list[str] = []
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: expected an nn.Module, received {type(model).__name__}")
    contract: Any = model  # its methods are what is being checked
    nf = getattr(model, "num_features", None)
    if isinstance(nf, bool) or not isinstance(nf, int) or nf < 1:
        problems.append(f"num_features must be a positive int (received {nf!r})")
    if not isinstance(getattr(model, "input_spec", None), InputSpec):
        problems.append("input_spec must be a pyxfer.backbone.InputSpec")
    for meth in ("forward_features", "param_groups"):
        if not callable(getattr(model, meth, None)):
            problems.append(f"missing method {meth}()")
    if not problems:
        seen: dict[int, str] = {}
        try:
            groups = contract.param_groups()
        except Exception as exc:
            groups = []
            problems.append(f"param_groups() raised {type(exc).__name__}: {exc}")
        for gname, params in groups:
            for p in params:
                if id(p) in seen:
                    problems.append(f"parameter in groups {seen[id(p)]!r} and {gname!r}")
                seen[id(p)] = gname
        if not problems:
            missing = [n for n, p in model.named_parameters() if id(p) not in seen]
            if missing:
                problems.append(f"param_groups() misses parameters {missing[:5]}")
            if not groups and any(True for _ in model.parameters()):
                problems.append("param_groups() is empty")
    if problems:
        raise TypeError(f"{where} does not satisfy the backbone contract: " + "; ".join(problems))


#: backbone options that name a file: never read from (nor written to) a data file
PATH_OPTIONS: frozenset[str] = frozenset({"weights"})
# option names that look like they name a file or location (refused as well)
_PATH_LIKE = re.compile(r"(?:^|_)(?:path|file|dir|url|uri|checkpoint|ckpt)s?$")
_SCALARS = (type(None), bool, int, float, str)


def path_options(name: str) -> frozenset[str]:
    """Options of backbone ``name`` that name files: ``weights`` and those its plugin marks.

    A plugin marks an option as path-valued when it registers the backbone:
    ``register("mynet", factory, path_options=("init_from",))``.
    """
    backbones = registry("backbones")
    if name not in backbones:  # unknown names fail where the backbone is built
        return PATH_OPTIONS
    marked = backbones.get(name).metadata.get("path_options", ())
    if isinstance(marked, str):
        marked = (marked,)
    return PATH_OPTIONS | frozenset(marked)


def check_stored_kwargs(
    name: Any, kwargs: Any, where: str, *, drop_paths: bool = False
) -> dict[str, Any]:
    """Backbone options as a data file may hold them, checked; returns a copy.

    A data file (a model directory's ``model.json``) may only hold plain JSON options: a
    mapping from names to ``None``, booleans, numbers, strings or lists of those. Options that
    name a file (``weights``, those in :func:`path_options`, and names such as ``*_path``,
    ``*_file``, ``*_dir``, ``*_url``, ``checkpoint``) are refused: a file is only read from a
    path the user passes, never from one a data file chooses. With ``drop_paths`` (when
    writing a data file) they are left out instead: they say where the starting weights came
    from, not how to rebuild the backbone.

    Raises:
        ValueError: naming ``where`` and the offending option.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: backbone.name: expected a registered name, received {name!r}")
    if not isinstance(kwargs, Mapping):
        raise ValueError(
            f"{where}: backbone.kwargs: expected a JSON object of options, received "
            f"{type(kwargs).__name__}"
        )
    named_files = path_options(name)
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if not isinstance(key, str):
            raise ValueError(f"{where}: backbone.kwargs: option names must be strings, got {key!r}")
        if key in named_files or _PATH_LIKE.search(key.lower()):
            if drop_paths:
                log.info("%s: %r names a file; not recorded in the model directory", where, key)
                continue
            raise ValueError(
                f"{where}: backbone.kwargs[{key!r}] names a file; a model directory never "
                "carries file paths (pass weights yourself: create_backbone(name, weights=PATH))"
            )
        plain = isinstance(value, _SCALARS) or (
            isinstance(value, (list, tuple)) and all(isinstance(v, _SCALARS) for v in value)
        )
        if not plain:
            raise ValueError(
                f"{where}: backbone.kwargs[{key!r}]: expected a JSON scalar or a list of "
                f"scalars, received {type(value).__name__}"
            )
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching a shell-style pattern (``"resnet*"``), sorted."""
    return registry("backbones").list(pattern)


def create_backbone(
    name: str, weights: str | os.PathLike[str] | None = None, **kwargs: Any
) -> Backbone:
    """Build the backbone registered as ``name`` and optionally load local weights.

    Args:
        name: a name from :func:`list_backbones`; an unknown name fails with close matches.
        weights: path of a local ``.safetensors`` file or torch state-dict file (a
            torchvision checkpoint for ``resnet*``); loaded with strict key checking.
        **kwargs: options of the backbone (``width``, ``in_chans``, ``num_classes``...).

    Examples:
        >>> bb = create_backbone("resnet18", width=0.25, stem="small")
        >>> bb(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 128])
    """
    entry = registry("backbones").get(name)
    where = f"backbone {name!r} (plugin {entry.plugin!r})"
    try:
        model = entry.factory(**kwargs)
    except TypeError as exc:
        raise TypeError(f"{where}: {exc}") from exc
    check_backbone(model, where)
    if weights is not None:
        load_weights(model, weights)
    return model


# -- weight files ------------------------------------------------------------------------------
class WeightsError(ValueError):
    """A weight file does not fit the model (missing/unexpected keys, shape mismatches)."""


@dataclass
class LoadResult:
    """What :func:`load_weights` did."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def _check_local(path: str | os.PathLike[str]) -> Path:
    text = os.fspath(path)
    if "://" in text:
        raise ValueError(
            f"weights: expected a local file path, received the URL {text!r}; pyxfer never "
            "downloads, fetch the file yourself and pass its path"
        )
    p = Path(text)
    if not p.is_file():
        raise FileNotFoundError(f"weights: no such file {text!r}")
    return p


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a local weight file (safetensors, or torch with ``weights_only=True``).

    A torch file may hold the state dict itself or a dict with a ``"state_dict"`` or
    ``"model"`` entry; a ``"module."`` prefix on every key (DDP) is removed.
    """
    p = _check_local(path)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p), device="cpu")
    obj = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise WeightsError(
            f"weights {str(p)!r}: expected a state dict (mapping name -> tensor), received "
            f"{type(obj).__name__}"
        )
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"weights {str(p)!r}: entries that are not tensors: {bad[:5]}")
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_weights(model: nn.Module, path: str | os.PathLike[str], strict: bool = True) -> LoadResult:
    """Load a local weight file into ``model``.

    Keys are checked strictly: a missing or unexpected key, or a shape mismatch, fails with a
    :class:`WeightsError` listing every offending key (shapes as expected vs received). When
    the model has no classifier head (``num_classes == 0``), head entries of the file (for
    example ``fc.weight``/``fc.bias`` of a torchvision ResNet) are dropped and logged. With
    ``strict=False`` missing and unexpected keys are logged and skipped; shape mismatches
    still fail.

    Returns:
        the keys that were missing, unexpected (skipped) and dropped (head).
    """
    sd = read_state_dict(path)
    own = model.state_dict()
    result = LoadResult()
    head = getattr(model, "head_name", None)
    if head is not None and getattr(model, "num_classes", None) == 0:
        result.dropped = [k for k in sd if k not in own and k.startswith(head + ".")]
        if result.dropped:
            log.info(
                "weights %s: dropping classifier entries %s (the model has no head, num_classes=0)",
                os.fspath(path),
                ", ".join(result.dropped),
            )
            sd = {k: v for k, v in sd.items() if k not in result.dropped}
    result.missing = [k for k in own if k not in sd]
    result.unexpected = [k for k in sd if k not in own]
    mismatched = [
        f"{k}: expected {tuple(own[k].shape)}, received {tuple(v.shape)}"
        for k, v in sd.items()
        if k in own and own[k].shape != v.shape
    ]
    problems: list[str] = []
    if mismatched:
        problems.append("shape mismatch: " + "; ".join(mismatched))
    if strict and result.missing:
        problems.append("missing keys: " + ", ".join(result.missing))
    if strict and result.unexpected:
        problems.append("unexpected keys: " + ", ".join(result.unexpected))
    if problems:
        hint = ""
        if head is not None and any(k.startswith(head + ".") for k in [*sd, *own]):
            hint = (
                f" (for a different number of classes, load with num_classes=0 or the file's "
                f"class count, then call reset_classifier(); head prefix {head!r})"
            )
        raise WeightsError(
            f"weights {os.fspath(path)!r} do not fit {type(model).__name__}: "
            + " | ".join(problems)
            + hint
        )
    if result.missing or result.unexpected:
        log.warning(
            "weights %s: skipped (strict=False) missing %s, unexpected %s",
            os.fspath(path),
            result.missing,
            result.unexpected,
        )
    sd = {k: v for k, v in sd.items() if k in own}
    model.load_state_dict(sd, strict=False)
    return result


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model.state_dict()`` to a safetensors file atomically (temp file + rename)."""
    from safetensors.torch import save_file

    dest = Path(os.fspath(path))
    if dest.suffix != ".safetensors":
        raise ValueError(f"path: expected a file name ending in .safetensors, received {dest}")
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()  # safetensors refuses tensors that share or slice storage
        seen.add((t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()))
        tensors[k] = t
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", "producer": "pyxfer"})
        os.chmod(tmp, default_file_mode())  # mkstemp creates 0600
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
