"""``example_tinynet``: the smallest backbone that satisfies pyxfer's contract."""

from __future__ import annotations

import torch
from torch import nn

from pyxfer.backbone import Backbone, imagenet_spec


class TinyNet(Backbone):
    """Two conv-BN-ReLU blocks; ``width`` channels out.

    Examples:
        >>> net = TinyNet(in_chans=1, width=16)
        >>> net(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 16])
    """

    def __init__(self, in_chans: int = 3, width: int = 32, num_classes: int = 0) -> None:
        super().__init__()
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans: expected 1 or 3, received {in_chans}")
        if width < 1:
            raise ValueError(f"width: expected a positive channel count, received {width}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.block = nn.Sequential(
            nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.num_features = width
        self.input_spec = imagenet_spec(in_chans, 32)
        self.reset_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.stem(x))  # (N, width, H/2, W/2)
