"""A LeNet-class convolutional network for small digit images (8 to 32 px).

In the spirit of LeCun et al., "Gradient-based learning applied to document recognition",
Proc. IEEE 1998 (two convolution stages with pooling, then a classifier), written with
today's parts: 3x3 conv-BN-ReLU blocks, max-pooling between stages and global average pooling
so that 8x8 (scikit-learn digits), 28x28 (MNIST) and 32x32 inputs all work.

Examples:
    >>> from pyxfer import create_backbone
    >>> bb = create_backbone("lenet", img_size=8)
    >>> bb(torch.zeros(4, 1, 8, 8)).shape
    torch.Size([4, 128])
"""

from __future__ import annotations

import torch
from torch import nn

from pyxfer._checks import check_int, check_number
from pyxfer.backbone import Backbone, InputSpec

from ._common import check_in_chans, scaled


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class LeNet(Backbone):
    """Three stages of conv-BN-ReLU (32, 64, 128 channels x width), 2x2 max-pool between.

    Args:
        in_chans: 1 (default) or 3.
        width: multiplier of the channel counts.
        img_size: nominal input side recorded in ``input_spec`` (28 by default; 8 for
            scikit-learn digits). Any side >= 4 works.
        num_classes: classes of a linear head; 0 (default) for none.

    Shapes:
        forward_features: (N, in_chans, H, W) -> (N, num_features, H/4, W/4).
    """

    def __init__(
        self, *, in_chans: int = 1, width: float = 1.0, img_size: int = 28, num_classes: int = 0
    ) -> None:
        super().__init__()
        in_chans = check_in_chans(in_chans)
        check_number("width", width, low_open=True)
        check_int("img_size", img_size, 1)
        if img_size < 4:
            raise ValueError(f"img_size: expected >= 4, received {img_size}")
        c1, c2, c3 = (scaled(c, width) for c in (32, 64, 128))
        self.num_features = c3
        # images scaled to [0, 1] are mapped to [-1, 1]
        self.input_spec = InputSpec(in_chans, img_size, (0.5,) * in_chans, (0.5,) * in_chans, 4)
        self.stage1 = nn.Sequential(_block(in_chans, c1), _block(c1, c1))
        self.pool1 = nn.MaxPool2d(2)
        self.stage2 = nn.Sequential(_block(c1, c2), _block(c2, c2))
        self.pool2 = nn.MaxPool2d(2)
        self.stage3 = _block(c2, c3)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.reset_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> feature map (N, num_features, H/4, W/4)."""
        x = self.pool1(self.stage1(x))  # (N, c1, H/2, W/2)
        x = self.pool2(self.stage2(x))  # (N, c2, H/4, W/4)
        return self.stage3(x)  # (N, c3, H/4, W/4)


def lenet(**kwargs: object) -> LeNet:
    """LeNet-class digit network, 128 features at width 1."""
    return LeNet(**kwargs)  # type: ignore[arg-type]
