"""Which filters of a layer belong to which class, from reference images: the class means and
per-filter quantiles of a layer's activations (:func:`reference_statistics`), and the
assignments of the CSG paper's per-filter localisation (Liang et al., ECCV 2020, Sec. 4.3;
csg.md, "Applications"; :mod:`pellucid.apps.filter_localisation`): by the class a filter is
most active on or by CSG's gates (:func:`filter_assignment`), every class's ``k`` best
filters (:func:`count_matched_assignment`), and the class-gradient protocol's ``m`` most
active filters per class (:func:`class_filter_table`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pellucid.errors import ConfigError, DataError

__all__ = [
    "class_filter_table",
    "count_matched_assignment",
    "filter_assignment",
    "reference_statistics",
]


def finite(images: torch.Tensor, what: str) -> torch.Tensor:
    """``images``, or a :class:`DataError` naming ``what`` when a pixel is NaN or infinite."""
    if not bool(torch.isfinite(images).all()):
        raise DataError(f"the {what} contain NaN or infinite pixels")
    return images


def check_maps(a: Any, layer: str) -> torch.Tensor:
    """``a``, or a :class:`ConfigError` when layer ``layer`` gave no (N, K, H, W) maps."""
    if not isinstance(a, torch.Tensor) or a.ndim != 4:
        shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
        raise ConfigError(f"layer {layer!r} gives {shape}, not feature maps (N, K, H, W)")
    return a


def check_q(q: float) -> None:
    """A :class:`ConfigError` unless the kept share ``q`` lies in (0, 1)."""
    if not 0 < q < 1:
        raise ConfigError(f"q (the share of activations kept) must lie in (0, 1), got {q}")


@torch.no_grad()
def reference_statistics(
    model: nn.Module,
    layer: str,
    data: Any,
    num_classes: int,
    q: float = 0.3,
    batch_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means and per-filter quantiles of ``layer`` on reference images.

    Parameters
    ----------
    model : nn.Module
        The classifier (eval mode inside; its mode and parameters are restored).
    layer : str
        A layer with (N, K, H, W) output, e.g. the CSG gated layer.
    data : Dataset
        Reference images with labels (the training split for a run).
    num_classes : int
    q : float
        Share of each filter's activations above its threshold, in (0, 1).

    Returns
    -------
    class_means : Tensor (C, K)
        Mean spatially pooled activation of each filter on each class's images (NaN for a
        class absent from ``data``).
    thresholds : Tensor (K,)
        Each filter's (1 - q) quantile over all its activations (every image and position,
        at the layer's resolution).
    """
    from pellucid.data import make_loader
    from pellucid.hooks import capture
    from pellucid.state import model_device, model_state

    check_q(q)
    if len(data) == 0:
        raise DataError("the reference images are empty")
    device = model_device(model)
    sums: torch.Tensor | None = None
    counts = torch.zeros(num_classes)
    values = []
    with model_state(model), capture(model, [layer], detach=True) as acts:
        for batch in make_loader(data, batch_size=batch_size):
            model(finite(batch.image, "reference images").to(device))
            a = check_maps(acts[layer], layer).float().cpu()  # (B, K, h, w)
            labels = batch.label.long()
            if int(labels.max()) >= num_classes or int(labels.min()) < 0:
                raise DataError(f"a reference label lies outside 0..{num_classes - 1}")
            pooled = a.mean(dim=(2, 3))
            if sums is None:
                sums = torch.zeros(num_classes, a.shape[1])
            sums.index_add_(0, labels, pooled)
            counts += torch.bincount(labels, minlength=num_classes).float()
            values.append(a.transpose(0, 1).reshape(a.shape[1], -1))
    assert sums is not None
    means = sums / counts[:, None]  # NaN rows for absent classes (0 / 0)
    flat = torch.cat(values, dim=1)  # (K, M)
    k = min(flat.shape[1], max(1, round((1 - q) * flat.shape[1])))
    thresholds = flat.kthvalue(k, dim=1).values
    return means, thresholds


def filter_assignment(
    class_means: torch.Tensor | None = None,
    gates: torch.Tensor | None = None,
    gate_cut: float = 0.5,
) -> torch.Tensor:
    """(C, K) boolean: which filters belong to which class.

    From ``gates`` (a CSG matrix G): filter k belongs to every class c with G[c, k] >=
    ``gate_cut`` (after CSG's projection each filter has at least one gate at 1). Otherwise
    from ``class_means``: each filter belongs to the one class whose images it is most active
    on.
    """
    if gates is not None:
        g = gates.detach().float().cpu()
        if g.ndim != 2:
            raise ConfigError(f"gates must be a (C, K) matrix, got shape {tuple(g.shape)}")
        if not 0 < gate_cut <= 1:
            raise ConfigError(f"gate_cut must lie in (0, 1], got {gate_cut}")
        return g >= gate_cut
    if class_means is None:
        raise ConfigError("filter_assignment needs class_means or gates")
    m = torch.nan_to_num(class_means.float(), nan=float("-inf"))
    out = torch.zeros_like(m, dtype=torch.bool)
    out[m.argmax(dim=0), torch.arange(m.shape[1])] = True
    return out


def class_filter_table(class_means: torch.Tensor, m: int = 30) -> torch.Tensor:
    """(C, min(m, K)) indices of each class's ``m`` most active filters; -1 for a class
    without reference images.

    "Most active for the class" is measured against the filter's own level: the class mean
    minus the filter's mean over the classes, so that a filter active on every image is not
    every class's filter.
    """
    if m < 1:
        raise ConfigError(f"m (filters per class) must be >= 1, got {m}")
    means = class_means.float()
    m = min(int(m), means.shape[1])
    score = means - means.nanmean(dim=0, keepdim=True)
    table = torch.nan_to_num(score, nan=float("-inf")).topk(m, dim=1).indices
    table[means.isnan().all(dim=1)] = -1
    return table


def count_matched_assignment(
    class_means: torch.Tensor, k: int, gates: torch.Tensor | None = None
) -> torch.Tensor:
    """(C, K) boolean: each class's ``k`` best filters, the same number for every class.

    Ranked by the CSG gate G[c, k] when ``gates`` is given (many gates are exactly 1 after
    CSG's projection), ties -- and, without gates, everything -- broken by the class mean
    minus the filter's mean over classes (:func:`class_filter_table`'s measure). A filter may
    serve several classes. A class without reference images gets no filter.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"per_class (filters per class) must be an integer >= 1, got {k!r}")
    means = class_means.float()
    if k > means.shape[1]:
        raise ConfigError(f"per_class {k} exceeds the layer's {means.shape[1]} filters")
    score = torch.nan_to_num(means - means.nanmean(dim=0, keepdim=True), nan=float("-inf"))
    order = score.argsort(dim=1, descending=True, stable=True)  # (C, K) by activation
    if gates is not None:
        g = gates.detach().float().cpu()
        if g.shape != means.shape:
            raise ConfigError(f"gates {tuple(g.shape)} do not match {tuple(means.shape)}")
        by_gate = g.gather(1, order).argsort(dim=1, descending=True, stable=True)
        order = order.gather(1, by_gate)  # gate first, activation among equal gates
    out = torch.zeros_like(means, dtype=torch.bool)
    out.scatter_(1, order[:, :k], True)
    out[means.isnan().all(dim=1)] = False
    return out
