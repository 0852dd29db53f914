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
paper does for signed gradient maps, whose sign may flip while their magnitude does not.
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
    "model_randomisation",
    "parameter_blocks",
    "randomised_copy",
    "spearman_rank_correlation",
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


# ------------------------------------------------------------------ randomisation check


def _correlations(trained: torch.Tensor, other: torch.Tensor) -> dict[str, Any]:
    corr = spearman_rank_correlation(trained, other)
    corr_abs = spearman_rank_correlation(trained.abs(), other.abs())
    return {
        "rank_correlation": corr,
        "mean": float(torch.nanmean(corr)),
        "rank_correlation_abs": corr_abs,
        "mean_abs": float(torch.nanmean(corr_abs)),
    }


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
        values. Lower is better: a faithful method's maps change when the weights are
        randomised.

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
        ``"mean_abs"``: list of L NaN-ignoring means. Lower is better.

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
            get_block(model, name)
        with restoring(model):
            trained = make_maps(model)
    rows, rows_abs = [], []
    for i, name in enumerate(order):
        step = order[: i + 1] if mode == "cascading" else [name]
        res = _correlations(trained, make_maps(randomised_copy(model, seed, layers=step)))
        rows.append(res["rank_correlation"])
        rows_abs.append(res["rank_correlation_abs"])
    corr, corr_abs = torch.stack(rows), torch.stack(rows_abs)
    return {
        "layers": order,
        "mode": mode,
        "trained": trained,
        "rank_correlation": corr,
        "mean": [float(v) for v in torch.nanmean(corr, dim=1)],
        "rank_correlation_abs": corr_abs,
        "mean_abs": [float(v) for v in torch.nanmean(corr_abs, dim=1)],
    }


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
