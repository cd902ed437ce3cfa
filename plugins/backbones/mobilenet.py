"""MobileNetV3-Small: inverted residuals, squeeze-excite and hard-swish.

Howard et al., "Searching for MobileNetV3", ICCV 2019 (the block table is Table 2 of the
paper). The ``features`` modules use torchvision's names (``features.N.block.M.0`` conv,
``.1`` BN, SE as ``fc1``/``fc2``), so the feature extractor of a torchvision
``mobilenet_v3_small`` checkpoint has the same keys; the head here is a single linear layer
(``classifier``) on the pooled 576-wide features.

Examples:
    >>> from pyxfer import create_backbone
    >>> bb = create_backbone("mobilenetv3_small", width=0.5)
    >>> bb(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 288])
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pyxfer._checks import check_number
from pyxfer.backbone import Backbone, imagenet_spec

from ._common import check_in_chans, scaled


class BlockConfig(NamedTuple):
    cin: int
    kernel: int
    expanded: int
    cout: int
    se: bool
    hswish: bool  # hard-swish, else ReLU
    stride: int


# Table 2 of the paper (MobileNetV3-Small), widths before the multiplier
SMALL: tuple[BlockConfig, ...] = (
    BlockConfig(16, 3, 16, 16, True, False, 2),
    BlockConfig(16, 3, 72, 24, False, False, 2),
    BlockConfig(24, 3, 88, 24, False, False, 1),
    BlockConfig(24, 5, 96, 40, True, True, 2),
    BlockConfig(40, 5, 240, 40, True, True, 1),
    BlockConfig(40, 5, 240, 40, True, True, 1),
    BlockConfig(40, 5, 120, 48, True, True, 1),
    BlockConfig(48, 5, 144, 48, True, True, 1),
    BlockConfig(48, 5, 288, 96, True, True, 2),
    BlockConfig(96, 5, 576, 96, True, True, 1),
    BlockConfig(96, 5, 576, 96, True, True, 1),
)


def _conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: type | None = None
) -> nn.Sequential:
    """Conv (no bias) -> BN -> optional activation, as indices 0, 1, 2."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=0.001, momentum=0.01),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Channel gating: x * hardsigmoid(fc2(relu(fc1(mean(x)))))."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(-2, -1), keepdim=True)  # (N, C, 1, 1)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise kxk -> SE -> 1x1 project, residual when shapes match."""

    def __init__(self, cfg: BlockConfig, width: float) -> None:
        super().__init__()
        cin, exp, cout = (scaled(c, width, 8) for c in (cfg.cin, cfg.expanded, cfg.cout))
        act = nn.Hardswish if cfg.hswish else nn.ReLU
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(_conv_bn(cin, exp, 1, act=act))
        layers.append(_conv_bn(exp, exp, cfg.kernel, cfg.stride, groups=exp, act=act))
        if cfg.se:
            layers.append(SqueezeExcitation(exp, scaled(exp // 4, 1.0, 8)))
        layers.append(_conv_bn(exp, cout, 1))
        self.block = nn.Sequential(*layers)
        self.use_res = cfg.stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_res else out


class MobileNetV3(Backbone):
    """MobileNetV3 backbone (the Small configuration).

    Args:
        width: channel multiplier (channels rounded to multiples of 8).
        in_chans: 1 or 3.
        num_classes: classes of a linear head ``classifier``; 0 (default) for none.

    Shapes:
        forward_features: (N, in_chans, H, W) -> (N, num_features, H/32, W/32).
    """

    head_name = "classifier"

    def __init__(self, *, width: float = 1.0, in_chans: int = 3, num_classes: int = 0) -> None:
        super().__init__()
        check_number("width", width, low_open=True)
        in_chans = check_in_chans(in_chans)
        last_in = scaled(SMALL[-1].cout, width, 8)
        self.num_features = 6 * last_in
        self.input_spec = imagenet_spec(in_chans, 224, min_size=32)
        layers: list[nn.Module] = [_conv_bn(in_chans, scaled(16, width, 8), 3, 2, act=nn.Hardswish)]
        layers += [InvertedResidual(cfg, width) for cfg in SMALL]
        layers.append(_conv_bn(last_in, self.num_features, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.reset_classifier(num_classes)

    def group_prefixes(self) -> list[tuple[str, tuple[str, ...]]]:
        # stages end where the resolution halves: strides 4, 8, 16, 32
        stages = {"stem": [0], "stage1": [1], "stage2": [2, 3], "stage3": [4, 5, 6, 7, 8]}
        stages["stage4"] = list(range(9, len(self.features)))
        return [(g, tuple(f"features.{i}" for i in idx)) for g, idx in stages.items()]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> feature map (N, num_features, H/32, W/32)."""
        return self.features(x)


def mobilenetv3_small(**kwargs: object) -> MobileNetV3:
    """MobileNetV3-Small, 576 features at width 1."""
    return MobileNetV3(**kwargs)  # type: ignore[arg-type]
