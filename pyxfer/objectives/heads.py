"""Heads shared by training objectives: projection / prediction MLPs and image decoders.

- :class:`ProjectionHead`: ``Linear -> [BN] -> ReLU`` repeated, then a last ``Linear`` (and an
  optional last BN), the projector of SimCLR, MoCo v2, BYOL, Barlow Twins and VICReg.
- :class:`PredictionHead`: BYOL's / SimSiam's predictor, ``Linear -> BN -> ReLU -> Linear``.
- :class:`ConvDecoder`: a DCGAN-style transposed-convolution decoder from a vector to an image
  of any size and channel count (denoising autoencoder, VAE, GAN generator).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn


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
