"""CIFAR-style ResNets (He et al., "Deep Residual Learning", CVPR 2016, Sec. 4.2):
6n+2 layers in three stages of widths 16-32-64; ResNet-8 (n=1) and ResNet-20 (n=3)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from pellucid.models.base import GlobalPool, Normalize, StagedNet, check_widths
from pellucid.registry import MODELS


class BasicBlock(nn.Module):
    """Two 3x3 convs with a shortcut (1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``: (N, cin, H, W) ->
        (N, cout, H', W'), H' = ceil(H / stride)."""
        out = torch.relu(self.bn1(self.conv1(x)))  # (N, cout, H', W')
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def cifar_resnet(
    depth: int,
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    widths: Sequence[int] = (16, 32, 64),
) -> StagedNet:
    """A ResNet of ``depth`` = 6n + 2 layers."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    widths = check_widths(widths, f"resnet{depth}")
    n = (depth - 2) // 6
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["norm"] = Normalize(mean or [0.5] * in_channels, std or [0.25] * in_channels)
    stages["stem"] = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            bn=nn.BatchNorm2d(widths[0]),
            relu=nn.ReLU(inplace=True),
        )
    )
    cin = widths[0]
    for i, w in enumerate(widths):
        blocks = [
            BasicBlock(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1) for j in range(n)
        ]
        stages[f"layer{i + 1}"] = nn.Sequential(*blocks)
        cin = w
    stages["pool"] = GlobalPool()
    stages["fc"] = nn.Linear(cin, num_classes)
    net = StagedNet(stages, in_channels, num_classes)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


@MODELS.register("resnet8", help="CIFAR-style ResNet-8 (16-32-64)")
def resnet8(
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    widths: Sequence[int] = (16, 32, 64),
) -> StagedNet:
    """ResNet-8: one basic block per stage."""
    return cifar_resnet(8, in_channels, num_classes, mean, std, widths)


@MODELS.register("resnet20", help="CIFAR-style ResNet-20 (16-32-64)")
def resnet20(
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    widths: Sequence[int] = (16, 32, 64),
) -> StagedNet:
    """ResNet-20: three basic blocks per stage."""
    return cifar_resnet(20, in_channels, num_classes, mean, std, widths)
