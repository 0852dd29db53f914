"""Model-parameter randomisation sanity check (evaluation.md, "Sanity checks"): re-initialise
the model's weights and compare the maps of the trained and the randomised model by their
Spearman rank correlation (Adebayo et al. 2018).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pellucid.errors import DataError
from pellucid.metrics.base import declare
from pellucid.metrics.checks import as_maps
from pellucid.state import restoring

__all__ = ["model_randomisation", "randomised_copy", "spearman_rank_correlation"]

declare(
    "sanity_rank_correlation",
    False,
    "Spearman correlation of maps from the trained vs a re-initialised model (Adebayo et "
    "al. 2018); high = the method ignores the model",
)

_SEED_SALT = 0x5EED_F00D  # randomised_copy: seed s must not replay torch.manual_seed(s)


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


def randomised_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with all learnable weights re-initialised.

    Every sub-module with a ``reset_parameters()`` method (convolutions, linear and
    normalisation layers, ...) is reset to its default initialisation, and normalisation
    running statistics are reset (``reset_running_stats()``). Buffers that are not learnable
    statistics (e.g. the mean/std of :class:`pellucid.models.Normalize`) are kept. The
    re-initialisation draws from the CPU generator seeded with ``seed`` (mixed with a fixed
    salt, so that a model built right after ``torch.manual_seed(seed)`` is not re-drawn
    with its own initial weights) inside ``torch.random.fork_rng``, so it is reproducible,
    independent of the model's device, and leaves the global RNG state untouched. The
    original model is not modified; the copy keeps its train/eval flags, requires_grad
    flags and device.

    A warning names any learnable parameter that no ``reset_parameters()`` covers (for
    example a method's own ``nn.Parameter`` such as CSG gates): those keep their trained
    values.

    References
    ----------
    Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps",
    NeurIPS 2018 (model parameter randomisation test, full re-initialisation).
    """
    out = copy.deepcopy(model)
    on_cpu = all(t.device.type == "cpu" for t in [*out.parameters(), *out.buffers()])
    work = out if on_cpu else copy.deepcopy(out).cpu()
    covered: set[int] = set()
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed((int(seed) ^ _SEED_SALT) % (1 << 63))
        with torch.no_grad():
            for mod in work.modules():
                reset = getattr(mod, "reset_parameters", None)
                if callable(reset):
                    reset()
                    covered.update(id(p) for p in mod.parameters(recurse=False))
                stats = getattr(mod, "reset_running_stats", None)
                if callable(stats):
                    stats()
    left = [name for name, p in work.named_parameters() if id(p) not in covered]
    if left:
        warnings.warn(
            f"randomised_copy: {len(left)} parameter(s) have no reset_parameters() and keep "
            f"their trained values: {', '.join(left[:8])}{' ...' if len(left) > 8 else ''}",
            stacklevel=2,
        )
    if work is not out:
        out.load_state_dict(work.state_dict())
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
        (NaN where a map is constant); ``"mean"``: float, the NaN-ignoring mean. Lower is
        better: a faithful method's maps change when the weights are randomised.

    References
    ----------
    Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps",
    NeurIPS 2018.
    """
    with restoring(model):
        trained = make_maps(model)
    rnd = randomised_copy(model, seed)
    randomised = make_maps(rnd)
    corr = spearman_rank_correlation(trained, randomised)
    return {"rank_correlation": corr, "mean": float(torch.nanmean(corr))}
