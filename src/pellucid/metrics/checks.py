"""Input checks shared by the metrics: each validates one argument, names it in a clear
:class:`~pellucid.errors.DataError`, and returns it detached in the shape the metrics use."""

from __future__ import annotations

from typing import Any

import torch

from pellucid.errors import DataError

_RANGE_SLACK = 1e-4  # images: tolerated excursion outside [0, 1] (resampling round-off)


def _single_channel(x: Any, name: str) -> torch.Tensor:
    """``x`` detached as (N, H, W): from (N, 1, H, W) or (N, H, W)."""
    t = torch.as_tensor(x).detach()
    if t.ndim == 4:
        if t.shape[1] != 1:
            raise DataError(
                f"{name} must have one channel, (N, 1, H, W) or (N, H, W); got {tuple(t.shape)}"
            )
        return t[:, 0]
    if t.ndim != 3:
        raise DataError(
            f"{name} must be (N, 1, H, W) or (N, H, W) with a batch dimension; "
            f"got shape {tuple(t.shape)}"
        )
    return t


def as_maps(maps: Any, name: str = "maps") -> torch.Tensor:
    """Validate attribution maps and return them detached as (N, H, W) floating point."""
    m = _single_channel(maps, name)
    if m.shape[0] == 0:
        raise DataError(f"{name} is an empty batch (N = 0)")
    if m.shape[1] == 0 or m.shape[2] == 0:
        raise DataError(f"{name} has an empty spatial size {tuple(m.shape[1:])}")
    if m.dtype == torch.bool or not torch.is_floating_point(m):
        m = m.float()
    if not torch.isfinite(m).all():
        raise DataError(f"{name} contain NaN or infinite values")
    return m


def as_masks(masks: Any, like: torch.Tensor, name: str = "masks") -> torch.Tensor:
    """Validate binary masks against (N, H, W) maps ``like``; return them as bool (N, H, W)."""
    k = _single_channel(masks, name)
    if tuple(k.shape) != tuple(like.shape):
        raise DataError(
            f"{name} and maps have mismatched N/H/W: {name} {tuple(k.shape)} (N, H, W) vs "
            f"maps {tuple(like.shape)}"
        )
    k = k.to(like.device)
    if k.dtype != torch.bool:
        if not ((k == 0) | (k == 1)).all():
            raise DataError(f"{name} must be binary (values in {{0, 1}}, or bool)")
        k = k != 0
    return k


def as_images(inputs: Any, model: torch.nn.Module | None = None) -> torch.Tensor:
    """Validate images (N, C, H, W) in pixel space [0, 1], with the channels of ``model``'s
    first convolution when given; return them detached, floating."""
    x = torch.as_tensor(inputs).detach()
    if x.ndim != 4:
        raise DataError(f"inputs must be images (N, C, H, W); got shape {tuple(x.shape)}")
    from pellucid.state import input_channels

    channels = input_channels(model, x) if model is not None else None
    if channels is not None and x.shape[1] != channels:
        raise DataError(
            f"the model expects {channels} input channel(s), inputs have {x.shape[1]} "
            f"(shape {tuple(x.shape)})"
        )
    if x.shape[0] == 0:
        raise DataError("inputs is an empty batch (N = 0)")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise DataError(f"inputs have an empty spatial size {tuple(x.shape[2:])}")
    if not torch.is_floating_point(x):
        x = x.float()
    if not torch.isfinite(x).all():
        raise DataError("inputs contain NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        raise DataError(
            f"inputs must be images in pixel space [0, 1], got values in [{lo:.4g}, {hi:.4g}] "
            "(normalisation belongs inside the model: pass unnormalised images, with a model "
            "of your own wrapped as nn.Sequential(pellucid.models.Normalize(mean, std), model))"
        )
    return x


def as_target(target: Any, n: int, device: torch.device) -> torch.Tensor:
    """Validate class indices (an int or (N,)); return a LongTensor (N,) on ``device``."""
    t = torch.as_tensor(target).detach()
    if torch.is_floating_point(t) or t.dtype == torch.bool:
        raise DataError(f"target must be integer class indices, got dtype {t.dtype}")
    if t.ndim == 0:
        t = t.expand(n)
    if t.ndim != 1 or t.shape[0] != n:
        raise DataError(f"target must be (N,) = ({n},), got shape {tuple(t.shape)}")
    if bool((t < 0).any()):
        raise DataError(f"target has negative class indices (min {int(t.min())})")
    return t.to(device=device, dtype=torch.long)
