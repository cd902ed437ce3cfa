"""Heads shared by training objectives: projection / prediction MLPs and image decoders.

- :class:`ProjectionHead`: ``Linear -> [BN] -> ReLU`` repeated, then a last ``Linear`` (and an
  optional last BN), the projector of SimCLR, MoCo v2, BYOL, Barlow Twins and VICReg.
- :class:`PredictionHead`: BYOL's / SimSiam's predictor, ``Linear -> BN -> ReLU -> Linear``.
- :class:`DINOHead`: DINO's head, a 3-layer GELU MLP to a bottleneck, L2 normalisation, then a
  weight-normalised ``Linear`` without bias (:class:`WeightNormLinear`).
- :class:`ConvDecoder`: a DCGAN-style transposed-convolution decoder from a vector to an image
  of any size and channel count (denoising autoencoder, VAE, GAN generator).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from pyxfer._checks import check_int


class ProjectionHead(nn.Sequential):
    """Multi-layer perceptron projector.

    Args:
        in_dim: input width (the backbone's ``num_features``).
        hidden_dim: width of the hidden layers.
        out_dim: output width.
        num_layers: number of ``Linear`` layers (>= 1).
        batch_norm: batch norm after each hidden ``Linear`` (whose bias is then dropped).
        bias: bias of the last ``Linear``.
        last_batch_norm: batch norm without affine parameters after the last ``Linear``.

    Shapes:
        (N, in_dim) -> (N, out_dim)

    Examples:
        >>> head = ProjectionHead(512, 2048, 128)  # SimCLR
        >>> head(torch.randn(4, 512)).shape
        torch.Size([4, 128])
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        batch_norm: bool = True,
        bias: bool = True,
        last_batch_norm: bool = False,
    ) -> None:
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            if int(value) < 1:
                raise ValueError(f"{name}: expected a positive width, received {value}")
        if num_layers < 1:
            raise ValueError(f"num_layers: expected >= 1, received {num_layers}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=bias))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        super().__init__(*layers)


class PredictionHead(ProjectionHead):
    """BYOL / SimSiam predictor: ``Linear -> BN -> ReLU -> Linear``.

    Shapes:
        (N, in_dim) -> (N, out_dim)

    Examples:
        >>> PredictionHead(256, 4096, 256)(torch.randn(4, 256)).shape
        torch.Size([4, 256])
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(in_dim, hidden_dim, out_dim, num_layers=2, batch_norm=True)


class WeightNormLinear(nn.Module):
    """``Linear`` without bias whose weight is ``g * v / |v|`` row by row (Salimans & Kingma 2016,
    ``torch.nn.utils.weight_norm`` with ``dim=0``), the last layer of DINO's head.

    With ``learn_scale=False`` (DINO's ``norm_last_layer``) the scale ``g`` is fixed at 1: every
    output is the cosine between the input and one row of ``v`` times ``|x|``.

    Args:
        in_dim: input width.
        out_dim: output width.
        learn_scale: learn ``g`` (one per output, initialised to 1).

    Shapes:
        (N, in_dim) -> (N, out_dim)
    """

    def __init__(self, in_dim: int, out_dim: int, learn_scale: bool = False) -> None:
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.weight_v, std=0.02)
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1)) if learn_scale else None

    def weight(self) -> torch.Tensor:
        """The effective (out_dim, in_dim) weight."""
        w = nn.functional.normalize(self.weight_v, dim=1)
        return w if self.weight_g is None else self.weight_g * w

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """``frozen``: the parameters get a zero gradient (DINO's early "freeze last layer")."""
        w = self.weight()
        if frozen:
            w = w.detach() + 0.0 * w  # zero gradient, still used (DDP sees every parameter)
        return nn.functional.linear(x, w)


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al. 2021).

    ``Linear -> [BN] -> GELU -> Linear -> [BN] -> GELU -> Linear`` to ``bottleneck_dim``, L2
    normalisation, then a :class:`WeightNormLinear` to ``out_dim`` (no bias). Linear weights are
    initialised from a truncated normal (std 0.02) with zero biases, as in the authors' code.

    Args:
        in_dim: input width (the backbone's ``num_features``).
        out_dim: output width K (the number of "prototypes"; 65536 in the paper).
        hidden_dim: width of the two hidden layers.
        bottleneck_dim: width before the normalised last layer.
        batch_norm: batch norm after the hidden layers (the paper's choice for ResNets).
        norm_last_layer: fix the last layer's weight norm at 1 (the paper's default).

    Shapes:
        (N, in_dim) -> (N, out_dim)

    Examples:
        >>> DINOHead(192, 64, hidden_dim=32, bottleneck_dim=16)(torch.randn(4, 192)).shape
        torch.Size([4, 64])
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        batch_norm: bool = False,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_dim", in_dim),
            ("out_dim", out_dim),
            ("hidden_dim", hidden_dim),
            ("bottleneck_dim", bottleneck_dim),
        ):
            check_int(name, value, 1)
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(2):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, learn_scale=not norm_last_layer)

    def forward(self, x: torch.Tensor, freeze_last_layer: bool = False) -> torch.Tensor:
        x = nn.functional.normalize(self.mlp(x), dim=-1)  # (N, bottleneck_dim)
        return self.last_layer(x, frozen=freeze_last_layer)  # (N, out_dim)


def _as_hw(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        hw: tuple[int, ...] = (image_size, image_size)
    else:
        hw = tuple(int(v) for v in image_size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(
            f"image_size: expected a positive int or (height, width), received {image_size!r}"
        )
    return hw[0], hw[1]


def _upsamplings(side: int) -> int:
    """How many x2 upsamplings reach ``side`` from a seed of side >= 4 (halving while even)."""
    n = 0
    while side % 2 == 0 and side // 2 >= 4:
        side //= 2
        n += 1
    return n


class ConvDecoder(nn.Module):
    """Vector -> image decoder (DCGAN generator layout).

    ``Linear`` to a (width, h0, w0) seed, then ``ConvTranspose2d(4, stride 2) -> BN -> ReLU``
    stages that double the side (halving the width, not below ``base_width``), then a 3x3
    convolution to ``channels``. The number of stages is chosen so that the seed side is the
    smallest >= 4 reached by halving the image side (32 -> 4, 28 -> 7, 224 -> 7); sizes that
    do not halve evenly are reached by a final bilinear resize. The output is unbounded (apply
    ``tanh`` / ``sigmoid`` outside as the objective requires).

    Args:
        in_dim: input vector width.
        channels: output channels.
        image_size: output side, or (height, width).
        base_width: channels of the last stage; earlier stages double it (capped at 512).

    Shapes:
        (N, in_dim) -> (N, channels, height, width)

    Examples:
        >>> ConvDecoder(64, channels=1, image_size=28)(torch.randn(2, 64)).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(
        self,
        in_dim: int,
        channels: int,
        image_size: int | tuple[int, int],
        base_width: int = 64,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels: expected >= 1, received {channels}")
        if base_width < 1:
            raise ValueError(f"base_width: expected >= 1, received {base_width}")
        self.image_size = _as_hw(image_size)
        h, w = self.image_size
        n = min(_upsamplings(h), _upsamplings(w))
        self.seed_size = (max(1, h >> n), max(1, w >> n))
        widths = [min(512, base_width * 2 ** (n - i)) for i in range(n + 1)]
        self.seed_width = widths[0]
        self.fc = nn.Linear(in_dim, widths[0] * self.seed_size[0] * self.seed_size[1])
        layers: list[nn.Module] = [nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for cin, cout in itertools.pairwise(widths):
            layers += [
                nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(widths[-1], channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(z.shape[0], self.seed_width, *self.seed_size)  # (N, W0, h0, w0)
        x = self.net(x)  # (N, C, h0 * 2^n, w0 * 2^n)
        if tuple(x.shape[-2:]) != self.image_size:
            x = nn.functional.interpolate(
                x, size=self.image_size, mode="bilinear", align_corners=False
            )
        return x


def image_spec(backbone: nn.Module, **kwargs: Any) -> dict[str, Any]:
    """Channels, size, mean and std of a backbone's input: keyword arguments first, then
    ``backbone.input_spec`` (``channels``, ``size``, ``mean``, ``std``).

    Args:
        backbone: the backbone the objective wraps.
        **kwargs: ``channels``, ``image_size``, ``mean``, ``std``; ``None`` means "take it
            from the backbone".

    Returns:
        ``{"channels": int, "image_size": (h, w), "mean": tuple, "std": tuple}``; mean / std
        default to 0 / 1 per channel (images used as given) when neither source has them.
    """
    spec = getattr(backbone, "input_spec", None)
    channels = kwargs.get("channels") or getattr(spec, "channels", None)
    size = kwargs.get("image_size") or getattr(spec, "size", None)
    if channels is None or size is None:
        raise ValueError(
            "channels/image_size: expected them as keyword arguments or from the backbone's "
            f"input_spec, received channels={channels!r}, image_size={size!r} "
            f"({type(backbone).__name__} has no usable input_spec)"
        )
    mean = kwargs.get("mean") or getattr(spec, "mean", None) or (0.0,) * int(channels)
    std = kwargs.get("std") or getattr(spec, "std", None) or (1.0,) * int(channels)
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"mean/std: expected {channels} values each (one per channel), received "
            f"{len(mean)} and {len(std)}"
        )
    return {
        "channels": int(channels),
        "image_size": _as_hw(size),
        "mean": tuple(float(m) for m in mean),
        "std": tuple(float(s) for s in std),
    }


def check_image_shape(images: torch.Tensor, shape: tuple[int, int, int], who: str) -> None:
    """Raise a ``ValueError`` unless ``images`` is (N, *shape) (what a decoder produces)."""
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(
            f"views: expected images (N, {', '.join(map(str, shape))}) for {who} (its "
            f"decoder's channels and image_size), received {tuple(images.shape)}"
        )
