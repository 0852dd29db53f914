"""Building blocks of the deletion / insertion curves of :mod:`pellucid.metrics.faithfulness`
(Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
Models", BMVC 2018): the removal order of a map's pixels, the value deleted pixels take, the
curves' option checks and the batched class probabilities of the perturbed images."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import nn

from pellucid.errors import DataError
from pellucid.state import model_dtype, model_state

__all__ = [
    "check_curve_options",
    "deletion_fill",
    "odd_at_most",
    "removal_rank",
    "target_probabilities",
]


def odd_at_most(k: int, size: int) -> int:
    """The largest odd kernel size <= ``min(k, size)`` (a blur kernel that fits the image)."""
    k = min(k, size)
    return k if k % 2 == 1 else k - 1


def removal_rank(maps: torch.Tensor, seed: int) -> torch.Tensor:
    """rank[n, p] = position of pixel p in decreasing-map order (0 = first removed).

    Ties are broken by one seeded random permutation of the pixel positions, the same for
    every image: the pixels are put in that order, then stably sorted by decreasing value.
    An image's ranks therefore depend only on its map and ``seed``, not on the batch it is
    scored in or its place there.
    """
    n, hw = maps.shape
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.rand(hw, generator=gen, dtype=torch.float64).argsort(stable=True)
    perm = perm.expand(n, hw)
    vals = torch.gather(maps.cpu(), 1, perm)
    order = torch.gather(perm, 1, vals.argsort(dim=1, descending=True, stable=True))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(hw).expand(n, hw).contiguous())
    return rank


def _whole(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise DataError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_curve_options(
    mode: str, steps: int, batch_size: int, blur_kernel: int, blur_sigma: float
) -> tuple[int, int]:
    """Validate the deletion / insertion curve options; returns (steps, batch_size) as ints."""
    if mode not in ("deletion", "insertion"):
        raise DataError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    steps, batch_size = _whole(steps, "steps"), _whole(batch_size, "batch_size")
    if mode == "insertion":
        _whole(blur_kernel, "blur_kernel")
        if not (float(blur_sigma) > 0 and math.isfinite(float(blur_sigma))):
            raise DataError(f"blur_sigma must be a finite number > 0, got {blur_sigma}")
    return steps, batch_size


def target_probabilities(
    model: nn.Module,
    perturbed: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    target: torch.Tensor,
    total: int,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """p(target | image) (total,) of the ``total`` images ``perturbed(j)`` builds (with the
    index of the image each one was made from), ``batch_size`` at a time, in eval mode."""
    probs = torch.empty(total, dtype=torch.float32, device=device)
    dtype = model_dtype(model)  # a float16 / float64 model gets its own dtype
    with model_state(model), torch.no_grad():
        for start in range(0, total, batch_size):
            j = torch.arange(start, min(start + batch_size, total), device=device)
            batch, i = perturbed(j)
            logits = model(batch.to(dtype))
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else logits
                raise DataError(f"model must return logits (N, num_classes), got {shape}")
            if start == 0 and int(target.max()) >= logits.shape[1]:
                raise DataError(
                    f"target has class {int(target.max())} but the model has "
                    f"{logits.shape[1]} classes"
                )
            p = torch.softmax(logits.float(), dim=1)  # (B, K)
            probs[start : start + len(j)] = p.gather(1, target[i].view(-1, 1)).squeeze(1)
    return probs


def deletion_fill(model: nn.Module, fill: str | float, channels: int) -> torch.Tensor:
    """The value deleted pixels take: a 0-dim tensor, or (1, C, 1, 1) for ``"mean"``."""
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        if not 0 <= float(fill) <= 1:  # NaN fails too
            raise DataError(
                f"deletion fill must be a grey level in [0, 1] (pixel space), got {fill}"
            )
        return torch.tensor(float(fill))
    if fill == "zero":
        return torch.tensor(0.0)
    if fill == "mean":
        from pellucid.models.base import normalisation_mean

        mean = normalisation_mean(model, channels)
        if mean is None:
            raise DataError(
                f'deletion fill="mean" needs a Normalize layer with {channels} channel(s) in '
                'the model; pass fill="zero" or a number instead'
            )
        return mean.detach().float().view(1, channels, 1, 1)
    raise DataError(f"deletion fill must be 'zero', 'mean', 'road' or a number, got {fill!r}")
