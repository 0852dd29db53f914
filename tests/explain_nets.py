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


# the first four of these are the class colours of `coloured_squares`
SQUARE_COLOURS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0))


def coloured_squares(
    n: int, gen: torch.Generator, classes: int, size: int, side: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Faint noise with one ``side`` x ``side`` square whose colour is the class: (images
    (n, 3, size, size), labels, object masks (n, 1, size, size) bool)."""
    colours = torch.tensor(SQUARE_COLOURS[:classes])
    images = torch.rand(n, 3, size, size, generator=gen) * 0.3
    labels = torch.arange(n) % classes
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    for i in range(n):
        r, c = torch.randint(0, size - side, (2,), generator=gen).tolist()
        masks[i, :, r : r + side, c : c + side] = True
        images[i, :, r : r + side, c : c + side] = colours[labels[i]].view(3, 1, 1)
    return images, labels, masks


def squares_case(
    classes: int, size: int, side: int, n_train: int, n_test: int, min_accuracy: float
) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A small convnet trained (seeded, ~1 s) on ``coloured_squares`` and ``n_test`` fresh
    images it classifies with at least ``min_accuracy``: (model in eval mode, images, labels,
    masks)."""
    from pellucid.models import build_model

    torch.manual_seed(0)
    model = build_model("convnet", in_channels=3, num_classes=classes, widths=[8, 8, 16, 16])
    gen = torch.Generator().manual_seed(1)
    x, y, _ = coloured_squares(n_train, gen, classes, size, side)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    images, labels, masks = coloured_squares(n_test, gen, classes, size, side)
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy >= min_accuracy, f"the squares model has not learnt ({accuracy:.2f})"
    return model, images, labels, masks
