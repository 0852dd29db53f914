"""Sanity checks of attribution maps (evaluation.md, "Sanity checks"; Adebayo et al. 2018).

A faithful explanation depends on what the model learnt, so its maps must change when that
is destroyed. Each check compares the maps of the trained model with those of a damaged one,
image by image, by their Spearman rank correlation (high = the method ignores the model):

* :func:`model_randomisation`: every weight re-initialised at once;
* :func:`cascading_randomisation`: the blocks re-initialised one after another from the
  output towards the input (``mode="cascading"``, the paper's Fig. 2), or each block alone
  (``mode="independent"``), one correlation per step;
* :func:`data_randomisation`: a model of the same architecture trained on permuted labels
  (``DataConfig(random_labels=True)``, ``pellucid train --random-labels``).

Every check also reports the correlation of the maps' absolute values (``abs``), as the
paper does for signed gradient maps, whose sign may flip while their magnitude does not, and
the paper's two other similarity measures (:func:`map_similarities`): the structural
similarity index (SSIM) and the Pearson correlation of the maps' histograms of oriented
gradients (HOG), both from scikit-image, on the maps' absolute values scaled to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from pellucid.errors import DataError
from pellucid.metrics.base import declare
from pellucid.metrics.checks import as_maps
from pellucid.metrics.randomise import (
    execution_order,
    get_block,
    parameter_blocks,
    randomised_copy,
)
from pellucid.state import restoring

__all__ = [
    "RANDOMISATION_MODES",
    "cascading_randomisation",
    "data_randomisation",
    "hog_similarity",
    "map_similarities",
    "model_randomisation",
    "parameter_blocks",
    "randomised_copy",
    "spearman_rank_correlation",
    "ssim_similarity",
]

#: How :func:`cascading_randomisation` re-initialises the blocks.
RANDOMISATION_MODES = ("cascading", "independent")

declare(
    "sanity_rank_correlation",
    False,
    "Spearman correlation of maps from the trained vs a re-initialised model (Adebayo et "
    "al. 2018); high = the method ignores the model",
)
declare(
    "data_randomisation_rank_correlation",
    False,
    "Spearman correlation of maps from the trained model vs one trained on permuted labels "
    "(Adebayo et al. 2018); high = the method ignores what the model learnt",
)


# ------------------------------------------------------------------------- rank correlation


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Row-wise ranks 1..D of (N, D) values, ties given their average rank (like
    ``scipy.stats.rankdata(method="average")``)."""
    n, d = v.shape
    sorted_v, idx = v.sort(dim=1, stable=True)
    new = torch.ones(n, d, dtype=torch.long, device=v.device)
    new[:, 1:] = (sorted_v[:, 1:] != sorted_v[:, :-1]).long()
    group = new.flatten().cumsum(0) - 1  # tie groups never span rows: new[:, 0] = 1
    pos = torch.arange(1, d + 1, dtype=torch.float64, device=v.device).repeat(n)
    size = int(group[-1]) + 1
    sums = torch.zeros(size, dtype=torch.float64, device=v.device).index_add_(0, group, pos)
    cnt = torch.bincount(group, minlength=size).double()
    ranks_sorted = (sums / cnt)[group].view(n, d)
    return torch.empty_like(ranks_sorted).scatter_(1, idx, ranks_sorted)


def spearman_rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Spearman rank correlation of two sets of maps.

    Pearson correlation of the average ranks (ties share their mean rank) of the flattened
    maps, as ``scipy.stats.spearmanr``.

    Parameters
    ----------
    a, b : Tensor (N, 1, H, W) or (N, H, W)
        Same N, H, W.

    Returns
    -------
    Tensor (N,)
        In [-1, 1]; NaN where either map is constant.
    """
    x = as_maps(a, "a")
    y = as_maps(b, "b")
    if tuple(x.shape) != tuple(y.shape):
        raise DataError(f"a and b have mismatched N/H/W: {tuple(x.shape)} vs {tuple(y.shape)}")
    n, device = x.shape[0], x.device
    rx = _average_ranks(x.reshape(n, -1).cpu().double())  # CPU: float64 everywhere
    ry = _average_ranks(y.reshape(n, -1).cpu().double())
    rx = rx - rx.mean(dim=1, keepdim=True)
    ry = ry - ry.mean(dim=1, keepdim=True)
    denom = (rx.square().sum(dim=1) * ry.square().sum(dim=1)).sqrt()
    num = (rx * ry).sum(dim=1)
    corr = torch.where(denom > 0, num / denom.clamp_min(1e-300), torch.full_like(num, math.nan))
    return corr.clamp(-1.0, 1.0).float().to(device)


# --------------------------------------------------------------------- SSIM and HOG


def _unit_maps(a: torch.Tensor, b: torch.Tensor) -> tuple[Any, Any]:
    """Both sets of maps as (N, H, W) float64 arrays of absolute values, each map min-max
    scaled to [0, 1] (a constant map becomes all zeros)."""
    x, y = as_maps(a, "a"), as_maps(b, "b")
    if tuple(x.shape) != tuple(y.shape):
        raise DataError(f"a and b have mismatched N/H/W: {tuple(x.shape)} vs {tuple(y.shape)}")

    def unit(m: torch.Tensor) -> Any:
        v = m.detach().abs().cpu().double().flatten(1)
        lo, hi = v.min(dim=1, keepdim=True).values, v.max(dim=1, keepdim=True).values
        return ((v - lo) / (hi - lo).clamp_min(1e-300)).reshape(m.shape).numpy()

    return unit(x), unit(y)


def ssim_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image structural similarity (SSIM; Wang et al. 2004) of two sets of maps, as in
    Adebayo et al. 2018.

    Each map's absolute values are min-max scaled to [0, 1]; scikit-image's
    ``structural_similarity`` (uniform 7 x 7 window, or the largest odd window the
    map allows, ``data_range=1``).

    Parameters
    ----------
    a, b : Tensor (N, 1, H, W) or (N, H, W)

    Returns
    -------
    Tensor (N,)
        At most 1 (identical maps); near 0 for unrelated ones. NaN for maps smaller than
        3 x 3.
    """
    from skimage.metrics import structural_similarity

    x, y = _unit_maps(a, b)
    side = min(x.shape[1:])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        return torch.full((x.shape[0],), math.nan)
    pairs = zip(x, y, strict=True)
    vals = [structural_similarity(u, v, win_size=win, data_range=1.0) for u, v in pairs]
    return torch.tensor(vals, dtype=torch.float32)


def hog_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation of the maps' histograms of oriented gradients (HOG;
    Dalal & Triggs 2005), as in Adebayo et al. 2018.

    Each map's absolute values are min-max scaled to [0, 1]; scikit-image's ``hog`` with 9
    orientations, cells of ``max(2, side // 8)`` px (8 x 8 cells over the map) and 2 x 2
    blocks.

    Returns
    -------
    Tensor (N,)
        In [-1, 1]; NaN where either descriptor is constant (e.g. a constant map), and for
        maps smaller than 4 x 4 (one block of 2 x 2 cells of 2 px).
    """
    import numpy as np
    from skimage.feature import hog

    x, y = _unit_maps(a, b)
    if min(x.shape[1:]) < 4:
        return torch.full((x.shape[0],), math.nan)
    cell = max(2, min(x.shape[1:]) // 8)
    opts = {"orientations": 9, "pixels_per_cell": (cell, cell), "cells_per_block": (2, 2)}
    vals = []
    for u, v in zip(x, y, strict=True):
        hu, hv = hog(u, **opts), hog(v, **opts)
        hu, hv = hu - hu.mean(), hv - hv.mean()
        denom = float(np.sqrt((hu**2).sum() * (hv**2).sum()))
        vals.append(float((hu * hv).sum()) / denom if denom > 0 else math.nan)
    return torch.tensor(vals, dtype=torch.float32).clamp(-1.0, 1.0)


def map_similarities(a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every per-image similarity the sanity checks report: ``rank_correlation`` (Spearman),
    ``rank_correlation_abs`` (of absolute values), ``ssim`` and ``hog`` (Tensors (N,); lower
    = the maps changed more). ``a``, ``b``: (N, 1, H, W) or (N, H, W), tensors or arrays."""
    a, b = as_maps(a, "a"), as_maps(b, "b")
    return {
        "rank_correlation": spearman_rank_correlation(a, b),
        "rank_correlation_abs": spearman_rank_correlation(a.abs(), b.abs()),
        "ssim": ssim_similarity(a, b),
        "hog": hog_similarity(a, b),
    }


#: per-image similarity -> the key of its NaN-ignoring mean in a check's result
SIMILARITY_MEANS = {
    "rank_correlation": "mean",
    "rank_correlation_abs": "mean_abs",
    "ssim": "mean_ssim",
    "hog": "mean_hog",
}


# ------------------------------------------------------------------ randomisation check


def _correlations(trained: torch.Tensor, other: torch.Tensor) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, values in map_similarities(trained, other).items():
        out[key] = values
        out[SIMILARITY_MEANS[key]] = float(torch.nanmean(values))
    return out


def model_randomisation(
    make_maps: Callable[[nn.Module], torch.Tensor], model: nn.Module, seed: int = 0
) -> dict[str, Any]:
    """Model-parameter randomisation sanity check (Adebayo et al. 2018), full re-init.

    Parameters
    ----------
    make_maps : callable
        ``make_maps(m) -> Tensor (N, 1, H, W)`` explains the same images with model ``m``.
        Called with ``model`` and with ``randomised_copy(model, seed)``.
    model : nn.Module
        The trained model; its train/eval and requires_grad flags are restored afterwards.
    seed : int
        Seed of the re-initialisation.

    Returns
    -------
    dict
        ``"rank_correlation"``: Tensor (N,), Spearman correlation of each image's maps
        (NaN where a map is constant); ``"mean"``: float, the NaN-ignoring mean;
        ``"rank_correlation_abs"`` and ``"mean_abs"``: the same for the maps' absolute
        values; ``"ssim"`` / ``"mean_ssim"`` and ``"hog"`` / ``"mean_hog"``: SSIM and HOG
        correlation (:func:`map_similarities`). Lower is better: a faithful method's maps
        change when the weights are randomised.

    References
    ----------
    Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps",
    NeurIPS 2018.
    """
    with restoring(model):
        trained = make_maps(model)
    rnd = randomised_copy(model, seed)
    randomised = make_maps(rnd)
    return _correlations(trained, randomised)


def cascading_randomisation(
    make_maps: Callable[[nn.Module], torch.Tensor],
    model: nn.Module,
    layers: Sequence[str] | None = None,
    mode: str = "cascading",
    seed: int = 0,
) -> dict[str, Any]:
    """Cascading (or independent) model-parameter randomisation (Adebayo et al. 2018, §3.1).

    Step i re-initialises the blocks ``layers[: i + 1]`` (cascading: from the output
    towards the input, so the last step randomises every block) or ``layers[i]`` alone
    (independent), explains the same images with the damaged copy and correlates its maps
    with the trained model's. A faithful method's correlation falls as soon as the top
    block is randomised and stays low; one that keeps the trained maps while most blocks
    are random reads the input, not the model.

    Parameters
    ----------
    make_maps : callable
        ``make_maps(m) -> Tensor (N, 1, H, W)`` explains the same images (with the same
        targets) with model ``m``.
    model : nn.Module
        The trained model; never modified, its modes and flags restored afterwards.
    layers : sequence of str, optional
        Module names in the order they are randomised. Default: :func:`parameter_blocks`,
        from the last to run to the first (the order is taken from the trained model's
        ``make_maps`` call).
    mode : {"cascading", "independent"}
    seed : int
        Seed of the re-initialisation; a block draws the same weights in every step.

    Returns
    -------
    dict
        ``"layers"``: the block randomised at each step; ``"mode"``; ``"trained"``: the
        trained model's maps; ``"rank_correlation"`` and ``"rank_correlation_abs"``:
        Tensor (L, N), one row per step (NaN where a map is constant); ``"mean"`` and
        ``"mean_abs"``: list of L NaN-ignoring means; ``"ssim"``, ``"hog"`` (L, N) and
        ``"mean_ssim"``, ``"mean_hog"`` likewise (:func:`map_similarities`). Lower is
        better.

    Raises
    ------
    DataError
        Unknown mode, an unknown or repeated layer name, or a model without parameters.
    """
    if mode not in RANDOMISATION_MODES:
        raise DataError(f"unknown randomisation mode {mode!r}; choose from {RANDOMISATION_MODES}")
    if layers is None:
        names = parameter_blocks(model)
        if not names:
            raise DataError("the model has no parameters to randomise")
        with restoring(model):
            trained, order = execution_order(model, names, lambda: make_maps(model))
        order = order[::-1]
    else:
        order = list(layers)
        if not order:
            raise DataError("layers is empty: name at least one block to randomise")
        repeated = sorted({n for n in order if order.count(n) > 1})
        if repeated:
            raise DataError(f"layers names a block more than once: {repeated}")
        for name in order:
            block = get_block(model, name)
            if not any(True for _ in block.parameters()):  # nothing to re-initialise
                raise DataError(
                    f"block {name!r} has no parameters to randomise; blocks that have: "
                    f"{', '.join(parameter_blocks(model))}"
                )
        with restoring(model):
            trained = make_maps(model)
    rows: dict[str, list[torch.Tensor]] = {key: [] for key in SIMILARITY_MEANS}
    for i, name in enumerate(order):
        step = order[: i + 1] if mode == "cascading" else [name]
        res = map_similarities(trained, make_maps(randomised_copy(model, seed, layers=step)))
        for key in SIMILARITY_MEANS:
            rows[key].append(res[key])
    out: dict[str, Any] = {"layers": order, "mode": mode, "trained": trained}
    for key, mean_key in SIMILARITY_MEANS.items():
        values = torch.stack(rows[key])  # (L, N)
        out[key] = values
        out[mean_key] = [float(v) for v in torch.nanmean(values, dim=1)]
    return out


def data_randomisation(
    make_maps: Callable[[nn.Module], torch.Tensor],
    model: nn.Module,
    random_label_model: nn.Module,
) -> dict[str, Any]:
    """Data randomisation test (Adebayo et al. 2018, §3.2): the maps of the trained model
    vs those of the same architecture trained on randomly permuted labels.

    The second model has learnt no relation between images and classes (its test accuracy
    is at chance; with enough epochs it memorises its training labels), so a method whose
    maps stay the same describes the input or the architecture, not what was learnt.

    Parameters
    ----------
    make_maps : callable
        ``make_maps(m) -> Tensor (N, 1, H, W)`` explains the same images with the same
        targets with model ``m``.
    model, random_label_model : nn.Module
        Trained on the true and on permuted labels (``pellucid train --random-labels``);
        both are left as they were.

    Returns
    -------
    dict
        As :func:`model_randomisation`. Lower is better.
    """
    with restoring(model):
        trained = make_maps(model)
    with restoring(random_label_model):
        other = make_maps(random_label_model)
    if tuple(other.shape) != tuple(trained.shape):
        raise DataError(
            f"the random-label model's maps have shape {tuple(other.shape)}, the trained "
            f"model's {tuple(trained.shape)}: are they the same architecture and input?"
        )
    return _correlations(trained, other)
