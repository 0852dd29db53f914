"""Shared by the adversarial tests (a helper module, not a test file)."""

from __future__ import annotations

import torch
from torch import nn

from pellucid.data.base import DatasetInfo, PellucidDataset


def bars(n: int = 64, size: int = 12, seed: int = 0) -> PellucidDataset:
    """Two classes: a bright bar in the left or in the right half, on faint noise."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g) * 0.3
    labels = torch.arange(n) % 2
    half = size // 2
    images[labels == 0, :, 2:-2, 1 : half - 1] += 0.6
    images[labels == 1, :, 2:-2, half + 1 : -1] += 0.6
    info = DatasetInfo("bars", 2, 1, (size, size), ("left", "right"), (0.3,), (0.3,))
    return PellucidDataset(info, images.clamp(0, 1), labels)


def trained_net(data: PellucidDataset, classes: int = 2) -> nn.Module:
    """A small conv net (named layers ``conv``, ``head``) fitted to ``data`` in ~0.5 s."""
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("conv", nn.Conv2d(1, 6, 3, padding=1))
    net.add_module("relu", nn.ReLU())
    net.add_module("pool", nn.AdaptiveAvgPool2d(2))
    net.add_module("flat", nn.Flatten())
    net.add_module("head", nn.Linear(24, classes))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(net(data.images), data.labels).backward()
        opt.step()
    net.eval()
    assert (net(data.images).argmax(1) == data.labels).float().mean() > 0.95
    return net
