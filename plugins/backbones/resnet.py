"""ResNet-18/34/50 with torchvision's parameter names, so torchvision checkpoints load as is.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016. The layout (``conv1``,
``bn1``, ``layer1.0.conv1``, ..., ``downsample.0/1``, ``fc``) and the stride on the 3x3
convolution of the bottleneck (ResNet v1.5) follow torchvision, so that with
``num_classes=1000`` the state dict has torchvision's keys, shapes, dtypes and order.

Examples:
    >>> from pyxfer import create_backbone
    >>> bb = create_backbone("resnet18", stem="small", width=0.25)  # CIFAR-sized, CPU-friendly
    >>> bb(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 128])
"""

from __future__ import annotations

import torch
from torch import nn

from pyxfer._checks import check_choice, check_number
from pyxfer.backbone import Backbone, imagenet_spec

from ._common import check_in_chans, scaled


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = _shortcut(cin, cout, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a shortcut."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, cout)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, cout, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class ResNet(Backbone):
    """A ResNet backbone (torchvision layout).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        stem: ``"imagenet"`` (7x7 stride-2 convolution + max-pool, for 224 px inputs) or
            ``"small"`` (3x3 stride-1 convolution, no pool, for inputs up to 64 px as in
            SimCLR's CIFAR-10 set-up).
        width: multiplier of the stage widths (64, 128, 256, 512) * width.
        in_chans: 1 or 3 input channels.
        num_classes: classes of a linear head ``fc``; 0 (default) for none.
        zero_init_residual: start the last BN of every block at gamma = 0 (each block starts
            as the identity; helps large-batch training).

    Shapes:
        forward_features: (N, in_chans, H, W) -> (N, num_features, H/32, W/32) with the
        imagenet stem, (N, num_features, H/8, W/8) with the small one.
    """

    head_name = "fc"

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        stem: str = "imagenet",
        width: float = 1.0,
        in_chans: int = 3,
        num_classes: int = 0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        check_choice("stem", stem, ("imagenet", "small"))
        check_number("width", width, low_open=True)
        in_chans = check_in_chans(in_chans)
        widths = [scaled(64 * 2**i, width) for i in range(4)]
        self.stem = stem
        self.num_features = widths[-1] * block.expansion
        if stem == "imagenet":
            self.input_spec = imagenet_spec(in_chans, 224, min_size=32)
            self.conv1 = nn.Conv2d(in_chans, widths[0], 7, stride=2, padding=3, bias=False)
        else:
            self.input_spec = imagenet_spec(in_chans, 32, min_size=8)
            self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        cin = widths[0]
        for i, (planes, n) in enumerate(zip(widths, layers, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, stride=2 if i > 0 and j == 0 else 1))
                cin = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self._init_weights(zero_init_residual)
        self.reset_classifier(num_classes)  # registers fc last, as torchvision does

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def group_prefixes(self) -> list[tuple[str, tuple[str, ...]]]:
        return [("stem", ("conv1", "bn1"))] + [(f"layer{i}", (f"layer{i}",)) for i in range(1, 5)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> feature map (N, num_features, h, w)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def _create_resnet(
    block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int], **kwargs: object
) -> ResNet:
    return ResNet(block, layers, **kwargs)  # type: ignore[arg-type]


def resnet18(**kwargs: object) -> ResNet:
    """ResNet-18 (BasicBlock, 2-2-2-2), 512 features at width 1."""
    return _create_resnet(BasicBlock, (2, 2, 2, 2), **kwargs)


def resnet34(**kwargs: object) -> ResNet:
    """ResNet-34 (BasicBlock, 3-4-6-3), 512 features at width 1."""
    return _create_resnet(BasicBlock, (3, 4, 6, 3), **kwargs)


def resnet50(**kwargs: object) -> ResNet:
    """ResNet-50 (Bottleneck, 3-4-6-3), 2048 features at width 1."""
    return _create_resnet(Bottleneck, (3, 4, 6, 3), **kwargs)
