"""Small plain backbones: a conv net and a VGG-style net (Simonyan & Zisserman 2015)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from pellucid.errors import ConfigError
from pellucid.models.base import GlobalPool, Normalize, StagedNet, check_widths
from pellucid.registry import MODELS


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU (names: conv, bn, relu)."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            bn=nn.BatchNorm2d(cout),
            relu=nn.ReLU(inplace=True),
        )
    )


@MODELS.register("convnet", help="plain 4-block conv net (32-64-128-128), BN, max-pool")
def convnet(
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    widths: Sequence[int] = (32, 64, 128, 128),
) -> StagedNet:
    """A small plain conv net: blocks of conv-BN-ReLU, max-pooling between blocks.

    The last block has no pooling, so its maps keep spatial detail for interpretation.
    """
    widths = check_widths(widths, "convnet")
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["norm"] = Normalize(mean or [0.5] * in_channels, std or [0.25] * in_channels)
    cin = in_channels
    for i, w in enumerate(widths):
        block = [conv_bn_relu(cin, w)]
        if i < len(widths) - 1:
            block.append(nn.MaxPool2d(2))
        stages[f"layer{i + 1}"] = nn.Sequential(*block)
        cin = w
    stages["pool"] = GlobalPool()
    stages["fc"] = nn.Linear(cin, num_classes)
    return StagedNet(stages, in_channels, num_classes)


@MODELS.register("vgg", help="small VGG: 3 stages of 2 conv layers (64-128-256)")
def vgg(
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    widths: Sequence[int] = (64, 128, 256),
    convs_per_stage: int = 2,
) -> StagedNet:
    """A small VGG: stages of ``convs_per_stage`` conv-BN-ReLU, max-pool between stages."""
    widths = check_widths(widths, "vgg")
    if (
        isinstance(convs_per_stage, bool)
        or not isinstance(convs_per_stage, int)
        or convs_per_stage < 1
    ):
        raise ConfigError(f"vgg: convs_per_stage must be an integer >= 1, got {convs_per_stage!r}")
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["norm"] = Normalize(mean or [0.5] * in_channels, std or [0.25] * in_channels)
    cin = in_channels
    for i, w in enumerate(widths):
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if i > 0:
            layers["pool"] = nn.MaxPool2d(2)
        for j in range(convs_per_stage):
            layers[f"conv{j + 1}"] = conv_bn_relu(cin, w)
            cin = w
        stages[f"layer{i + 1}"] = nn.Sequential(layers)
    stages["pool"] = GlobalPool()
    stages["fc"] = nn.Linear(cin, num_classes)
    return StagedNet(stages, in_channels, num_classes)
