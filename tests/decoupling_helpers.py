"""Shared by the decoupling tests (a helper module, not a test file)."""

from __future__ import annotations

import torch
from torch import nn

from pellucid.methods.decoupling import gated_layers


def randomise_gates(model: nn.Module, bias: float = 0.0, std: float = 1.0) -> None:
    """Give the controllers input-dependent gates, some of them closed."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for conv in gated_layers(model).values():
            c = conv.controller
            c.weight2.copy_(torch.randn(c.weight2.shape, generator=gen) * std)
            c.bias2.fill_(bias)
