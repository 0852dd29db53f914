"""Figures of a CSG gate matrix G (C x K): density and class overlap (csg.md, "Metrics")."""

from __future__ import annotations

import torch

from pellucid.metrics.base import declare

declare("gate_density", False, "mean gate value of CSG's G (floor 1/C); lower = sparser")
declare("gate_overlap", False, "mean pairwise cosine similarity of G's class rows")


def gate_density(gates: torch.Tensor) -> float:
    """mean(G); the column-max constraint bounds it below by 1/C."""
    return float(gates.detach().float().mean())


def gate_overlap(gates: torch.Tensor, reduction: str = "mean") -> float:
    """Pairwise cosine similarity of G's rows (class gate vectors), over pairs c < c'.

    ``reduction="sum"`` gives the paper's sum; ``"mean"`` divides by the number of pairs,
    so the figure is comparable across class counts.
    """
    g = torch.nn.functional.normalize(gates.detach().float(), dim=1)  # (C, K)
    sim = g @ g.T  # (C, C)
    c = sim.shape[0]
    upper = sim[torch.triu(torch.ones(c, c, dtype=torch.bool), diagonal=1)]
    if upper.numel() == 0:
        return 0.0
    return float(upper.sum() if reduction == "sum" else upper.mean())


def assigned_class(gates: torch.Tensor) -> torch.Tensor:
    """(K,) the class whose gate is largest for each filter."""
    return gates.detach().argmax(dim=0)
