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
    estimator: str = "fast",
) -> np.ndarray:
    """M[c, k] = I(a_k ; 1[y = c]) in nats: the kNN estimator of Ross (2014) for a continuous
    and a discrete variable, as scikit-learn's ``mutual_info_classif`` computes it (3
    neighbours, features scaled to unit variance, 1e-10 noise with ``random_state=seed``).

    Parameters
    ----------
    acts : (N, K) pooled activations.
    labels : (N,) class indices.
    estimator : {"fast", "sklearn"}
        ``sklearn`` calls ``mutual_info_classif`` (the reference); ``fast`` is the same
        estimator vectorised over filters and exploiting that the activations are 1-D
        (sorted neighbours instead of a KD-tree per filter). They agree to float precision
        (``tests/test_csg.py``); ``fast`` is an order of magnitude faster
        (``benchmarks/mi_speed.py``), which makes MIS cheap enough for every run.
    """
    a = np.asarray(acts, dtype=np.float64)
    raw = np.asarray(labels)
    if a.ndim != 2 or raw.ndim != 1 or len(a) != len(raw) or len(a) == 0:
        raise DataError(
            f"mi_matrix: need (N, K) activations and N labels, got {a.shape}, {raw.shape}"
        )
    y = _class_indices(raw, num_classes)
    if not np.isfinite(a).all():
        raise DataError("mi_matrix: activations contain NaN or infinite values")
    if estimator not in ("fast", "sklearn"):
        raise DataError(f"mi_matrix: estimator must be 'fast' or 'sklearn', got {estimator!r}")
    c_count = int(y.max()) + 1 if num_classes is None else num_classes
    out = np.zeros((c_count, a.shape[1]))
    prepared = _prepare(a, seed) if estimator == "fast" else None
    for c in range(c_count):
        target = (y == c).astype(int)
        if target.min() == target.max():
            continue  # class absent (or alone): no information
        if prepared is None:
            from sklearn.feature_selection import mutual_info_classif

            out[c] = mutual_info_classif(
                a, target, discrete_features=False, n_neighbors=n_neighbors, random_state=seed
            )
        else:
            out[c] = _mi_cd_columns(prepared, target, n_neighbors)
    return out


def _class_indices(raw: np.ndarray, num_classes: int | None) -> np.ndarray:
    """Labels as int64 class indices in [0, num_classes); a named error otherwise (a float
    label such as 1.5, a negative one or one past ``num_classes`` used to be truncated or
    silently left out of every class row)."""
    if raw.dtype == bool or not np.issubdtype(raw.dtype, np.number):
        raise DataError(f"mi_matrix: labels must be integer class indices, got dtype {raw.dtype}")
    if np.issubdtype(raw.dtype, np.floating) and (
        not np.isfinite(raw).all() or (raw != np.round(raw)).any()
    ):
        raise DataError("mi_matrix: labels must be integer class indices, got non-integer values")
    y = raw.astype(np.int64)
    if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 1):
        raise DataError(f"mi_matrix: num_classes must be a positive integer, got {num_classes!r}")
    upper = "" if num_classes is None else f", {num_classes})"
    if y.min() < 0 or (num_classes is not None and y.max() >= num_classes):
        raise DataError(
            f"mi_matrix: labels must lie in [0{upper or ', inf)'}, got values from "
            f"{y.min()} to {y.max()}"
        )
    return y


def _prepare(a: np.ndarray, seed: int) -> np.ndarray:
    """scikit-learn's preprocessing of continuous features: unit variance (no centring),
    then noise of 1e-10 x max(1, mean |x|) drawn from RandomState(seed)."""
    std = a.std(axis=0)
    std[std == 0.0] = 1.0
    x = a / std
    means = np.maximum(1, np.mean(np.abs(x), axis=0))
    rng = np.random.RandomState(seed)
    return x + 1e-10 * means * rng.standard_normal(size=x.shape)


def _kth_neighbour_distance(sorted_x: np.ndarray, k: int) -> np.ndarray:
    """Per element of each sorted column (n, K), the distance to its k-th nearest other
    element: in 1-D the k nearest others fill a window of k+1 consecutive elements."""
    n = sorted_x.shape[0]
    best = np.full(sorted_x.shape, np.inf)
    j = np.arange(n)
    for t in range(k + 1):
        s = j - t
        ok = (s >= 0) & (s + k <= n - 1)
        if not ok.any():
            continue
        jj, ss = j[ok], s[ok]
        cand = np.maximum(sorted_x[jj] - sorted_x[ss], sorted_x[ss + k] - sorted_x[jj])
        best[jj] = np.minimum(best[jj], cand)
    return best


def _count_within(sorted_x: np.ndarray, x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per query x_i, the number of sorted_x with |sorted_x - x_i| <= r_i, the distance
    computed as a KD-tree computes it (x + r may round across a boundary, so the binary
    search's answer is corrected with the exact criterion)."""
    n = len(sorted_x)
    hi = np.searchsorted(sorted_x, x + r, side="right")
    lo = np.searchsorted(sorted_x, x - r, side="left")
    for _ in range(n):  # a few passes at most: only boundary ties move
        up = (hi < n) & (np.abs(sorted_x[np.minimum(hi, n - 1)] - x) <= r)
        down = (hi > 0) & (np.abs(sorted_x[np.maximum(hi - 1, 0)] - x) > r)
        left = (lo > 0) & (np.abs(sorted_x[np.maximum(lo - 1, 0)] - x) <= r)
        right = (lo < n) & (np.abs(sorted_x[np.minimum(lo, n - 1)] - x) > r)
        if not (up.any() or down.any() or left.any() or right.any()):
            break
        hi = hi + up - (down & ~up)
        lo = lo - left + (right & ~left)
    return hi - lo


def _mi_cd_columns(x: np.ndarray, d: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Ross's estimator (scikit-learn's ``_compute_mi_cd``) for every column of x at once."""
    from scipy.special import digamma

    n, k_cols = x.shape
    radius = np.zeros((n, k_cols))
    counts = np.zeros(n)
    k_all = np.zeros(n)
    for label in np.unique(d):
        idx = np.nonzero(d == label)[0]
        count = len(idx)
        counts[idx] = count
        if count > 1:
            k = min(n_neighbors, count - 1)
            xs = x[idx]
            order = np.argsort(xs, axis=0, kind="stable")
            dist_sorted = _kth_neighbour_distance(np.take_along_axis(xs, order, 0), k)
            dist = np.empty_like(dist_sorted)
            np.put_along_axis(dist, order, dist_sorted, 0)
            radius[idx] = np.nextafter(dist, 0)
            k_all[idx] = k
    keep = counts > 1
    x, radius, counts, k_all = x[keep], radius[keep], counts[keep], k_all[keep]
    m = x.shape[0]
    xs = np.sort(x, axis=0)
    m_all = np.empty((m, k_cols))
    for col in range(k_cols):  # points within the radius, the point itself included
        m_all[:, col] = _count_within(xs[:, col], x[:, col], radius[:, col])
    mi = (
        digamma(m)
        + np.mean(digamma(k_all))
        - np.mean(digamma(counts))
        - np.mean(digamma(m_all), axis=0)
    )
    return np.maximum(0.0, mi)


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
