"""Filter class-specificity: the mutual information score (MIS) of Liang et al., ECCV 2020
(csg.md, "Metrics"), and an estimator-free companion, the top-class activation share."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from pellucid.errors import DataError
from pellucid.metrics.activations import pooled_activations
from pellucid.metrics.base import declare

declare("mis", True, "mutual information score: mean over filters of max-class MI (nats)")
declare("class_share", True, "mean share of a filter's activation on its top class (1/C..1)")


def mi_matrix(
    acts: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    num_classes: int | None = None,
    n_neighbors: int = 3,
    seed: int = 0,
) -> np.ndarray:
    """M[c, k] = I(a_k ; 1[y = c]) in nats, scikit-learn's kNN estimator (3 neighbours).

    Parameters
    ----------
    acts : (N, K) pooled activations.
    labels : (N,) class indices.
    """
    from sklearn.feature_selection import mutual_info_classif

    a = np.asarray(acts, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    if a.ndim != 2 or len(a) != len(y) or len(a) == 0:
        raise DataError(
            f"mi_matrix: need (N, K) activations and N labels, got {a.shape}, {y.shape}"
        )
    if not np.isfinite(a).all():
        raise DataError("mi_matrix: activations contain NaN or infinite values")
    c_count = num_classes or int(y.max()) + 1
    out = np.zeros((c_count, a.shape[1]))
    for c in range(c_count):
        target = (y == c).astype(int)
        if target.min() == target.max():
            continue  # class absent (or alone): no information
        out[c] = mutual_info_classif(
            a, target, discrete_features=False, n_neighbors=n_neighbors, random_state=seed
        )
    return out


def mis_from_activations(
    acts: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    num_classes: int | None = None,
    seed: int = 0,
) -> tuple[float, np.ndarray]:
    """(MIS, C x K MI matrix); MIS = mean_k max_c M[c, k]. Higher = more class-specific,
    bounded by ln 2."""
    m = mi_matrix(acts, labels, num_classes, seed=seed)
    return float(m.max(axis=0).mean()), m


def class_share(
    acts: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, num_classes: int
) -> tuple[float, np.ndarray]:
    """Per filter, the share of its class-mean activation that falls on its top class.

    With m[c, k] the mean (ReLU-clamped) activation of filter k on class c,
    share_k = max_c m[c, k] / sum_c m[c, k]: 1/C = no specificity, 1 = one class only.
    Returns (mean over filters with any activation, per-filter shares (K,)).
    """
    a = torch.as_tensor(np.asarray(acts), dtype=torch.float64).clamp_min(0)  # (N, K)
    y = torch.as_tensor(np.asarray(labels)).long()
    means = torch.zeros(num_classes, a.shape[1], dtype=torch.float64)
    for c in range(num_classes):
        if bool((y == c).any()):
            means[c] = a[y == c].mean(0)
    total = means.sum(0)  # (K,)
    alive = total > 0
    share = torch.where(alive, means.max(0).values / total.clamp_min(1e-12), torch.nan)
    return float(share[alive].mean()) if bool(alive.any()) else float("nan"), share.numpy()


def mutual_information_score(
    model: nn.Module,
    layer: str,
    data: Any,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    max_images: int | None = None,
    seed: int = 0,
) -> tuple[float, np.ndarray]:
    """MIS of ``layer`` of ``model`` on ``data`` (held-out images, eval mode).

    Works for any run and any named conv layer. Returns (score, C x K matrix).
    """
    acts, labels = pooled_activations(model, layer, data, device, max_images=max_images)
    n_cls = num_classes or getattr(getattr(data, "info", None), "num_classes", None)
    return mis_from_activations(acts, labels, n_cls, seed=seed)
