"""Known-answer models and option sets shared by the explainer tests (a helper module, not a
test file: pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import torch
from torch import nn


class HalvesNet(nn.Module):
    """Class 0 = brightness of the left half, class 1 = of the right half, class 2 = a blank
    image (a known answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        w = h.shape[-1] // 2
        left, right = h[..., :w].mean((1, 2, 3)), h[..., w:].mean((1, 2, 3))
        return torch.stack([40 * left, 40 * right, torch.full_like(left, 10.0)], 1)


FAST = {"neuromask": {"iterations": 30}, "neuromask-reference": {"iterations": 10}}
# HalvesNet's images are uniform (their own border colour), so the NeuroMask tests on it
# remove pixels into black, on a fine grid, without the default's deletion game; they test
# the optimised mask itself, so without the refinement of the returned map (its own test)
PLAIN = {"fill": "zero", "mask_scale": 2, "lr": 0.2, "l_delete": 0.0, "refine": 0.0}


def deleted_probability(model: nn.Module, x: torch.Tensor, masks: torch.Tensor, c: int) -> float:
    """p_c of the image with the mask's region removed (zero fill), as the deletion game sees it."""
    with torch.no_grad():
        return float(torch.softmax(model(x * (1 - masks)), 1)[:, c].mean())
