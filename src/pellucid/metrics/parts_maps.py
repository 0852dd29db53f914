"""One pass over the data for the part-level filter metrics of Zhang et al., "Interpretable
Convolutional Neural Networks", CVPR 2018 (arXiv 1710.00935v4, Sec. 4; spec:
shared/methods/icnn.md, "Metrics"): :func:`collect_maps` keeps a layer's maps with the
labels, landmarks and part masks (:class:`LayerMaps`); :func:`filter_categories` and
:func:`peak_centres` read them. The metrics are in :mod:`pellucid.metrics.parts`, which
re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pellucid.errors import DataError
from pellucid.hooks import capture
from pellucid.metrics.parts_rf import ReceptiveField
from pellucid.state import eval_mode, model_device


# -- one pass over the data -------------------------------------------------------------------
@dataclass
class LayerMaps:
    """A layer's maps over (up to ``max_images``) images, with their ground truth (CPU)."""

    maps: torch.Tensor  # (N, K, h, w) float32
    labels: torch.Tensor  # (N,)
    image_size: tuple[int, int]  # (H, W)
    in_channels: int
    landmarks: torch.Tensor | None = None  # (N, P, 2) as (x, y), NaN where absent
    parts: torch.Tensor | None = None  # (N, P, H, W) bool


@torch.no_grad()
def collect_maps(
    model: nn.Module,
    layer: str,
    data: Any,
    device: torch.device | str | None = None,
    batch_size: int = 128,
    max_images: int | None = None,
) -> LayerMaps:
    """Run ``model`` (eval mode, restored afterwards) over ``data`` (a Dataset or an
    iterable of Batch) and keep ``layer``'s maps, labels, landmarks and part masks."""
    from pellucid.data import make_loader

    loader = make_loader(data, batch_size) if hasattr(data, "__getitem__") else data
    device = torch.device(device) if device else model_device(model)
    maps, labels, marks, parts, n, shape = [], [], [], [], 0, None
    with eval_mode(model):
        with capture(model, [layer], detach=True) as acts:
            for batch in loader:
                take = len(batch) if max_images is None else min(len(batch), max_images - n)
                model(batch.image[:take].to(device))
                a = acts[layer]
                if a.ndim != 4:
                    raise DataError(f"layer {layer!r} output is {tuple(a.shape)}, not 4-D")
                maps.append(a.float().cpu())
                labels.append(batch.label[:take].cpu())
                shape = tuple(batch.image.shape[1:])
                if batch.landmarks is not None:
                    marks.append(batch.landmarks[:take].float().cpu())
                if batch.parts is not None:
                    parts.append(batch.parts[:take].cpu() > 0.5)
                n += take
                if max_images is not None and n >= max_images:
                    break
    if n == 0:
        raise DataError("collect_maps: the data is empty")
    return LayerMaps(
        maps=torch.cat(maps),
        labels=torch.cat(labels),
        image_size=(shape[1], shape[2]),
        in_channels=shape[0],
        landmarks=torch.cat(marks) if len(marks) == len(maps) else None,
        parts=torch.cat(parts) if len(parts) == len(maps) else None,
    )


def filter_categories(maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K,) the class with the highest mean (spatially averaged) activation per filter."""
    pooled = maps.double().mean(dim=(2, 3))  # (N, K)
    classes = torch.unique(labels)
    means = torch.stack([pooled[labels == c].mean(0) for c in classes])  # (C', K)
    return classes[means.argmax(0)]


def peak_centres(maps: torch.Tensor, rf: ReceptiveField) -> tuple[torch.Tensor, torch.Tensor]:
    """(peak value (N, K), receptive-field centre (x, y) of the peak unit (N, K, 2))."""
    n, k, h, w = maps.shape
    flat = maps.flatten(2)  # (N, K, h w)
    idx = flat.argmax(-1)  # (N, K), the first maximum on ties
    value = flat.gather(-1, idx[..., None]).squeeze(-1)
    centres = rf.centres(h, w).reshape(h * w, 2)  # (h w, 2)
    return value, centres[idx]  # (N, K), (N, K, 2)
