"""LeNet-class convolutional networks for small digit images.

``lenet`` (8 to 32 px) is the default digit backbone. ``lenet5`` is the classic two-convolution
LeNet in the layout that domain-adaptation benchmarks use for digits (for instance TLlib's
``lenet``): 5x5 convolutions with 20 and 50 channels, 2x2 max-pooling, a 500-wide fully
connected layer and dropout. It costs about a tenth of ``lenet``'s multiply-adds at 28 px
(2.3 M against 22 M per image), so it is the one to compare step rates with those benchmarks.

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


class LeNet5(Backbone):
    """conv5x5(20) - maxpool - ReLU - conv5x5(50) - dropout2d - maxpool - ReLU - fc(500) - ReLU
    - dropout: the two-convolution LeNet of domain-adaptation digit benchmarks.

    The fully connected layer fixes the input side: images must be ``img_size`` square.

    Args:
        in_chans: 1 (default) or 3.
        img_size: the input side, >= 16 (28 by default, as MNIST).
        dropout: dropout rate after the second convolution and after the fc layer (0.5).
        num_classes: classes of a linear head; 0 (default) for none.

    Shapes:
        forward_features: (N, in_chans, img_size, img_size) -> (N, 500, 1, 1).
    """

    def __init__(
        self,
        *,
        in_chans: int = 1,
        img_size: int = 28,
        dropout: float = 0.5,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        in_chans = check_in_chans(in_chans)
        check_int("img_size", img_size, 1)
        if img_size < 16:
            raise ValueError(f"img_size: expected >= 16, received {img_size}")
        if check_number("dropout", dropout, 0.0, 1.0) == 1.0:
            raise ValueError(f"dropout: expected a number in [0, 1), received {dropout!r}")
        self.img_size = img_size
        side = ((img_size - 4) // 2 - 4) // 2
        self.num_features = 500
        self.input_spec = InputSpec(
            in_chans, img_size, (0.5,) * in_chans, (0.5,) * in_chans, img_size
        )
        self.conv = nn.Sequential(
            nn.Conv2d(in_chans, 20, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(20, 50, 5),
            nn.Dropout2d(dropout),
            nn.MaxPool2d(2),
            nn.ReLU(),
        )
        self.fc = nn.Sequential(nn.Linear(50 * side * side, 500), nn.ReLU(), nn.Dropout(dropout))
        self.reset_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, img_size, img_size) -> features (N, 500, 1, 1)."""
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(
                f"x: expected {self.img_size}x{self.img_size} images (the fc layer fixes the "
                f"side), received {tuple(x.shape[-2:])}"
            )
        return self.fc(self.conv(x).flatten(1))[:, :, None, None]


def lenet(**kwargs: object) -> LeNet:
    """LeNet-class digit network, 128 features at width 1."""
    return LeNet(**kwargs)  # type: ignore[arg-type]


def lenet5(**kwargs: object) -> LeNet5:
    """The two-convolution LeNet of digit adaptation benchmarks, 500 features, fixed side."""
    return LeNet5(**kwargs)  # type: ignore[arg-type]
