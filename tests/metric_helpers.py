"""Hand-built masks, maps and a known-answer linear model shared by the metric tests (a
helper module, not a test file)."""

from __future__ import annotations

import math

import torch
from torch import nn


def square_mask(size: int = 16, r0: int = 4, r1: int = 8, c0: int = 4, c1: int = 8):
    m = torch.zeros(size, size)
    m[r0:r1, c0:c1] = 1
    return m


def peaked(size: int, row: int, col: int) -> torch.Tensor:
    m = torch.rand(size, size) * 0.5
    m[row, col] = 1.0
    return m


class PixelLinear(nn.Module):
    """Two classes: logit_0 = sum_p w_p x_p + b over the pixels of a one-channel image,
    logit_1 = 0; so p(class 0) = sigmoid(w . x + b). Records its mode at every call."""

    def __init__(self, weights: torch.Tensor, bias: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(weights.flatten().clone().float())
        self.b = bias
        self.drop = nn.Dropout(0.5)
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        z = self.drop(x.flatten(1)) @ self.w + self.b
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))
