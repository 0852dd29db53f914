"""Localisation of attribution maps against ground-truth object masks (evaluation.md,
"Localisation"): the pointing game, the energy-based pointing game and top-q IoU.

Conventions
-----------
maps
    Float tensors (N, 1, H, W) or (N, H, W); finite.
masks
    (N, 1, H, W) or (N, H, W), bool or float/int with values in {0, 1}; same N, H, W as
    the maps.

All functions are pure: they detach their inputs and never modify them. An image whose mask
is empty counts as a miss (pointing game) and scores 0 (energy, IoU).
"""

from __future__ import annotations

from typing import Any

import torch

from pellucid.errors import DataError
from pellucid.metrics.base import declare
from pellucid.metrics.checks import as_maps, as_masks

__all__ = [
    "energy_pointing_game",
    "pointing_game",
    "pointing_tolerance",
    "top_q_iou",
]

declare(
    "pointing_game",
    True,
    "share of images (class-averaged) whose map argmax lies within 15 px @ 224 of the mask",
)
declare(
    "energy_pointing_game",
    True,
    "share of the positive attribution mass that falls inside the object mask",
)
declare("top_q_iou", True, "IoU of the top-q (30 %) pixels of the map with the object mask")


# ------------------------------------------------------------------------------ pointing game


def pointing_tolerance(size: int) -> float:
    """TorchRay's pointing-game tolerance, 15 px at 224 px, scaled to ``size``.

    Parameters
    ----------
    size : int
        Image side in pixels (use ``max(H, W)`` for non-square images).

    Returns
    -------
    float
        ``15 * size / 224``.

    References
    ----------
    Fong, Patrick & Vedaldi, "Understanding Deep Networks via Extremal Perturbations and
    Smooth Masks", ICCV 2019 (the TorchRay benchmark of the pointing game).
    """
    if size < 1:
        raise DataError(f"pointing_tolerance: size must be >= 1, got {size}")
    return 15.0 * size / 224.0


def pointing_game(
    maps: torch.Tensor,
    masks: torch.Tensor,
    labels: torch.Tensor | None = None,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """The pointing game (Zhang et al. 2016), as the TorchRay benchmark runs it.

    The point of an image is the argmax of its map. It is a HIT if some mask pixel lies
    within Euclidean distance ``tolerance`` (inclusive, in pixel-index units) of the point.

    Parameters
    ----------
    maps : Tensor (N, 1, H, W) or (N, H, W)
        Attribution maps for the ground-truth class of each image.
    masks : Tensor (N, 1, H, W) or (N, H, W)
        Binary object masks of that class.
    labels : Tensor (N,), optional
        Class of each image. When given, accuracy is the mean over the classes present of
        the per-class hit rate (as TorchRay reports it); otherwise the mean over images.
    tolerance : float, optional
        Hit radius in pixels; default ``pointing_tolerance(max(H, W))`` (15 px at 224 px).

    Returns
    -------
    dict
        ``"hits"``: bool Tensor (N,); ``"accuracy"``: float (higher is better).

    Notes
    -----
    Ties for the maximum are broken by taking the first maximal pixel in raster order
    (row-major: smallest row, then smallest column), so a constant map points at the
    top-left pixel. An image with an empty mask is a miss. The distance from the point to
    every pixel is computed in chunks of images, so N = 1000 maps of 64 x 64 take a few
    milliseconds. evaluation.md asks for the always-centre baseline to be reported next to
    this figure.

    References
    ----------
    Zhang, Bargal, Lin, Brandt, Shen & Sclaroff, "Top-down Neural Attention by Excitation
    Backprop", ECCV 2016 (IJCV 2018). Fong, Patrick & Vedaldi, ICCV 2019 (TorchRay).
    """
    m = as_maps(maps)
    k = as_masks(masks, m)
    n, h, w = m.shape
    if tolerance is None:
        tolerance = pointing_tolerance(max(h, w))
    tolerance = float(tolerance)
    if not (tolerance >= 0 and tolerance < float("inf")):
        raise DataError(f"pointing_game: tolerance must be a finite number >= 0, got {tolerance}")
    y = None
    if labels is not None:
        y = torch.as_tensor(labels).detach()
        if y.ndim != 1 or y.shape[0] != n:
            raise DataError(
                f"pointing_game: labels must be (N,) = ({n},), got shape {tuple(y.shape)}"
            )
        if torch.is_floating_point(y) or y.dtype == torch.bool:
            raise DataError(f"pointing_game: labels must be integer class indices, got {y.dtype}")

    point = m.reshape(n, h * w).argmax(dim=1)  # first maximum in raster order
    py, px = point // w, point % w
    rows = torch.arange(h, device=m.device).view(1, h, 1)
    cols = torch.arange(w, device=m.device).view(1, 1, w)
    tol2 = tolerance**2
    hits = torch.empty(n, dtype=torch.bool, device=m.device)
    chunk = max(1, (1 << 22) // (h * w))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        d2 = (rows - py[s:e].view(-1, 1, 1)) ** 2 + (cols - px[s:e].view(-1, 1, 1)) ** 2
        hits[s:e] = ((d2 <= tol2) & k[s:e]).flatten(1).any(dim=1)

    rate = hits.float()
    if y is None:
        accuracy = float(rate.mean())
    else:
        accuracy = class_mean(rate, y.to(m.device))
    return {"hits": hits, "accuracy": accuracy}


def class_mean(values: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean of ``values`` (N,) within each class of ``labels`` (N,), then over the classes
    present: the pointing game's accuracy "averaged over classes" (TorchRay)."""
    rate = values.float()
    return float(torch.stack([rate[labels == c].mean() for c in torch.unique(labels)]).mean())


# ------------------------------------------------------------------- energy pointing game


def energy_pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Energy-based pointing game: share of the positive map mass inside the mask.

    ``sum(relu(map) * mask) / sum(relu(map))`` per image; negative values are ignored.

    Parameters
    ----------
    maps : Tensor (N, 1, H, W) or (N, H, W)
    masks : Tensor (N, 1, H, W) or (N, H, W), binary

    Returns
    -------
    Tensor (N,)
        In [0, 1], higher is better; 0.0 where a map has no positive mass.

    References
    ----------
    Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu, "Score-CAM: Score-Weighted Visual
    Explanations for Convolutional Neural Networks", CVPR Workshops 2020 (Sec. 4.2).
    """
    m = as_maps(maps)
    k = as_masks(masks, m)
    pos = m.clamp_min(0).flatten(1)
    total = pos.sum(dim=1)
    inside = (pos * k.flatten(1)).sum(dim=1)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, inside / safe, torch.zeros_like(total))


# ------------------------------------------------------------------------------- top-q IoU


def top_q_iou(maps: torch.Tensor, masks: torch.Tensor, q: float = 0.3) -> torch.Tensor:
    """IoU of each map's top-q fraction of pixels with the object mask.

    Each map is binarised at exactly ``round(q * H * W)`` pixels (Python's ``round``), the
    largest values; ties are broken by a stable sort, i.e. in raster order.

    Parameters
    ----------
    maps : Tensor (N, 1, H, W) or (N, H, W)
    masks : Tensor (N, 1, H, W) or (N, H, W), binary
    q : float
        Fraction of pixels kept, in (0, 1]; 0.3 in the CSG paper.

    Returns
    -------
    Tensor (N,)
        IoU in [0, 1], higher is better (0 for an empty mask). The share of images above a
        threshold ``t`` is ``(iou > t).float().mean()``.

    References
    ----------
    Liang, Wang, Zhou, Li, Zhang & Hu, "Training Interpretable Convolutional Neural Networks
    by Differentiating Class-specific Filters", ECCV 2020 (localisation evaluation).
    """
    q = float(q)
    if not (0.0 < q <= 1.0):
        raise DataError(f"top_q_iou: q must be in (0, 1], got {q}")
    m = as_maps(maps)
    k = as_masks(masks, m)
    n, h, w = m.shape
    count = round(q * h * w)
    if count < 1:
        raise DataError(
            f"top_q_iou: q = {q} keeps round(q * H * W) = 0 of the {h * w} pixels; use a larger q"
        )
    order = torch.sort(m.reshape(n, h * w), dim=1, descending=True, stable=True).indices
    top = torch.zeros(n, h * w, dtype=torch.bool, device=m.device)
    top.scatter_(1, order[:, :count], True)
    flat = k.reshape(n, h * w)
    inter = (top & flat).sum(dim=1).float()
    union = (top | flat).sum(dim=1).float()  # >= count >= 1
    return inter / union
