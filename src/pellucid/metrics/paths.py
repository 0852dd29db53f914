"""Calculation paths of a decoupled network (Li et al., "Interpretable Neural Network
Decoupling", ECCV 2020; decoupling.md, "Path-level interpretation").

A path is the concatenation of every gated layer's binary gate vector for one input. From a
set of paths: the per-class mean path (how often each filter is active for a class), the
fraction of active filters per layer, and the intra- versus inter-class path similarity per
layer, measured with the Jaccard index |a & b| / |a | b| (1 for two empty sets). The paper
expects shallow layers to be shared between classes and deep layers to be class-specific.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from pellucid.errors import ConfigError, DataError
from pellucid.metrics.base import declare
from pellucid.state import eval_mode, model_device

declare("active_fraction", False, "mean fraction of active (gated-on) filters of a decoupled net")
declare(
    "path_intra_similarity",
    True,
    "mean Jaccard similarity of the deep-layer paths of two images of the same class",
)
declare(
    "path_inter_similarity",
    False,
    "mean Jaccard similarity of the deep-layer paths of two images of different classes",
)


class LayerSpan(NamedTuple):
    """Columns ``start:stop`` of a path matrix belong to the gated layer ``name``."""

    name: str
    start: int
    stop: int


class CalculationPaths(NamedTuple):
    """paths (N, F) bool, one row per image; layers: the spans of F; labels (N,) int64."""

    paths: torch.Tensor
    layers: list[LayerSpan]
    labels: torch.Tensor


@torch.no_grad()
def calculation_paths(
    model: nn.Module,
    data: Any,
    device: torch.device | str | None = None,
    max_images: int | None = None,
    batch_size: int = 256,
) -> CalculationPaths:
    """Hard-gate paths of ``data`` through a decoupled ``model`` (eval mode, restored after).

    Parameters
    ----------
    model : nn.Module
        A model with controlling modules (:func:`pellucid.methods.decoupling.insert_controllers`).
    data : Dataset or iterable of Batch
    device : torch.device or str, optional
        Default: the model's device.
    max_images : int, optional
        Use this many images, evenly spaced over a dataset (all classes of a sorted set).
    """
    from pellucid.data import make_loader, spread_subset
    from pellucid.methods.decoupling import gated_layers, last_gates

    if not gated_layers(model):
        raise ConfigError("calculation_paths: the model has no controlling modules (decoupling)")
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        data = make_loader(spread_subset(data, max_images), batch_size=batch_size)
    device = torch.device(device) if device else model_device(model)
    rows, labels, layers = [], [], []
    with eval_mode(model):
        for batch in data:
            model(batch.image.to(device))
            gates = last_gates(model)
            rows.append(torch.cat([g.bool() for g in gates.values()], 1).cpu())  # (n, F)
            labels.append(batch.label.cpu())
            if not layers:
                start = 0
                for name, g in gates.items():
                    layers.append(LayerSpan(name, start, start + g.shape[1]))
                    start += g.shape[1]
    if not rows:
        raise DataError("calculation_paths: the data is empty")
    return CalculationPaths(torch.cat(rows), layers, torch.cat(labels).long())


def jaccard_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise Jaccard index of boolean rows: (Na, F), (Nb, F) -> (Na, Nb); 1 where both
    rows are empty (identical, empty paths)."""
    a, b = a.float(), b.float()
    inter = a @ b.T  # (Na, Nb)
    union = a.sum(1, keepdim=True) + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))


def class_mean_paths(paths: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, F): how often each filter is active on the images of each class (NaN: no image)."""
    onehot = torch.nn.functional.one_hot(labels, num_classes).float()  # (N, C)
    counts = onehot.sum(0)[:, None]  # (C, 1)
    freq = onehot.T @ paths.float()  # (C, F)
    return torch.where(counts > 0, freq / counts.clamp_min(1), torch.full_like(freq, math.nan))


def class_similarity(paths: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) mean Jaccard similarity of the paths of an image of class i and one of class j,
    over all such pairs (distinct images on the diagonal); NaN where there is no pair."""
    sim = jaccard_matrix(paths, paths)  # (N, N)
    onehot = torch.nn.functional.one_hot(labels, num_classes).float()  # (N, C)
    sums = onehot.T @ sim @ onehot  # (C, C)
    n = onehot.sum(0)
    pairs = n[:, None] * n[None, :]
    eye = torch.eye(num_classes, dtype=torch.bool, device=sums.device)
    sums = torch.where(eye, sums - (onehot.T @ torch.diag(sim)), sums)  # drop self-pairs
    pairs = torch.where(eye, pairs - n, pairs)
    return torch.where(pairs > 0, sums / pairs.clamp_min(1), torch.full_like(sums, math.nan))


def intra_inter(matrix: torch.Tensor) -> tuple[float, float]:
    """Class-averaged intra-class (diagonal) and inter-class (off-diagonal) similarity."""
    eye = torch.eye(matrix.shape[0], dtype=torch.bool)
    return float(matrix[eye].nanmean()), float(matrix[~eye].nanmean())


def layer_similarity(cp: CalculationPaths, num_classes: int) -> dict[str, tuple[float, float]]:
    """Layer name -> (intra-class, inter-class) Jaccard similarity of that layer's gates."""
    return {
        s.name: intra_inter(class_similarity(cp.paths[:, s.start : s.stop], cp.labels, num_classes))
        for s in cp.layers
    }


def active_fraction(cp: CalculationPaths) -> dict[str, float]:
    """Layer name -> mean fraction of its filters that are active."""
    return {s.name: float(cp.paths[:, s.start : s.stop].float().mean()) for s in cp.layers}


def deep_layers(layers: list[LayerSpan], fraction: float = 1 / 3) -> list[LayerSpan]:
    """The last ``fraction`` of the gated layers (at least one): the "deep" layers."""
    return layers[-max(1, math.ceil(len(layers) * fraction)) :]


def path_summary(cp: CalculationPaths, num_classes: int) -> dict[str, Any]:
    """The figures ``pellucid evaluate`` records for a decoupled run.

    active_fraction: fraction of all gated filters that are active, over images;
    path_intra_similarity / path_inter_similarity: means over the deep layers
    (:func:`deep_layers`) of the per-layer intra- and inter-class Jaccard similarity.
    """
    per_layer = layer_similarity(cp, num_classes)
    deep = [per_layer[s.name] for s in deep_layers(cp.layers)]
    return {
        "active_fraction": round(float(cp.paths.float().mean()), 5),
        "path_intra_similarity": round(float(np.mean([d[0] for d in deep])), 5),
        "path_inter_similarity": round(float(np.mean([d[1] for d in deep])), 5),
        "path_deep_layers": ",".join(s.name for s in deep_layers(cp.layers)),
    }
