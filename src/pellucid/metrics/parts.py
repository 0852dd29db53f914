"""Part-level filter metrics of Zhang et al., "Interpretable Convolutional Neural Networks",
CVPR 2018 (arXiv 1710.00935v4, Sec. 4; spec: shared/methods/icnn.md, "Metrics"): location
instability (lower is better) and part interpretability (higher is better). Both take any
model and layer, so standard, CSG and ICNN runs are measured on one scale.

* receptive fields are computed from the network (:func:`receptive_field`), never typed in;
* a filter's category is the class with the highest mean activation (for every run alike);
* :func:`collect_maps` runs the data once; the ``*_from_maps`` functions do the arithmetic.

Receptive fields are in :mod:`pellucid.metrics.parts_rf`, the pass over the data in
:mod:`pellucid.metrics.parts_maps` (both re-exported here).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pellucid.errors import DataError
from pellucid.metrics.base import declare
from pellucid.metrics.parts_maps import LayerMaps, collect_maps, filter_categories, peak_centres
from pellucid.metrics.parts_rf import ReceptiveField, receptive_field

declare(
    "location_instability",
    False,
    "mean over filters and landmarks of the std of (landmark - peak RF centre) distance / "
    "image diagonal, top-100 images of the filter's category (Zhang et al. 2018)",
)
declare(
    "part_interpretability",
    True,
    "mean over filters of max over parts of the share of images where the filter's top-0.5 % "
    "region has IoU > 0.2 with the part (Zhang et al. 2018; Bau et al. 2017)",
)


# -- location instability -------------------------------------------------------------------
def instability_from_maps(
    lm: LayerMaps, rf: ReceptiveField, top_k: int = 100
) -> tuple[float, np.ndarray]:
    """Location instability (Zhang et al. 2018, Sec. 4.2; icnn.md, "Metrics").

    For filter f, ``p_f(I)`` = receptive-field centre of its most active unit on image I;
    for landmark k, ``d_I(k, f) = ||p_k(I) - p_f(I)|| / image diagonal``. Over the top
    ``top_k`` images by the filter's maximum activation among the images of its category
    (:func:`filter_categories`) that have landmark k, take the (population) standard
    deviation of d; a filter's instability is the mean over landmarks, the layer's the mean
    over filters. Landmark slots present in fewer than 2 such images are skipped.

    Returns
    -------
    (score, per-filter values (K,), NaN for a filter without any usable landmark).
    """
    if lm.landmarks is None:
        raise DataError("location_instability: the data has no landmarks")
    value, centre = peak_centres(lm.maps, rf)  # (N, K), (N, K, 2)
    cats = filter_categories(lm.maps, lm.labels).numpy()
    value, centre = value.double().numpy(), centre.numpy()
    marks, labels = lm.landmarks.double().numpy(), lm.labels.numpy()  # (N, P, 2), (N,)
    diag = math.hypot(*lm.image_size)
    per_filter = np.full(value.shape[1], np.nan)
    for f in range(value.shape[1]):
        stds = []
        for k in range(marks.shape[1]):
            ids = np.flatnonzero((labels == cats[f]) & ~np.isnan(marks[:, k, 0]))
            if len(ids) < 2:
                continue
            top = ids[np.argsort(-value[ids, f], kind="stable")[:top_k]]
            d = np.linalg.norm(marks[top, k] - centre[top, f], axis=-1) / diag
            stds.append(d.std())
        if stds:
            per_filter[f] = float(np.mean(stds))
    if np.isnan(per_filter).all():
        raise DataError("location_instability: no filter category has 2 images with a landmark")
    return float(np.nanmean(per_filter)), per_filter


def location_instability(
    model: nn.Module,
    layer: str,
    data: Any,
    device: torch.device | str | None = None,
    top_k: int = 100,
    max_images: int | None = None,
    batch_size: int = 128,
) -> float:
    """Location instability of ``layer``'s filters on ``data`` (lower is better); see
    :func:`instability_from_maps`. ``max_images`` caps the images used (the first ones)."""
    lm = collect_maps(model, layer, data, device, batch_size, max_images)
    rf = receptive_field(model, layer, lm.in_channels, lm.image_size)
    return instability_from_maps(lm, rf, top_k)[0]


# -- part interpretability -------------------------------------------------------------------
def _upsample_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of 1-D linear upsampling as F.interpolate(mode="bilinear",
    align_corners=False) applies them along one axis (bilinear = rows, then columns)."""
    eye = torch.eye(n_in)[:, None, :, None]  # (n_in, 1, n_in, 1): one basis vector each
    out = F.interpolate(eye, size=(n_out, 1), mode="bilinear", align_corners=False)
    return out[:, 0, :, 0].T.contiguous()  # (n_out, n_in)


def interpretability_from_maps(
    lm: LayerMaps,
    quantile: float = 0.005,
    iou_threshold: float = 0.2,
    per_class: bool = True,
    min_part_images: int = 10,
) -> tuple[float, np.ndarray]:
    """Part interpretability (Zhang et al. 2018, Sec. 4.2, with Network Dissection's
    binarisation, Bau et al., CVPR 2017, Sec. 2.2).

    Filter f's threshold T_f is its top-``quantile`` activation level over every unit of
    every map (P(a_f > T_f) = quantile); each map is upsampled bilinearly to the image and
    binarised at ``> T_f``; ``IoU_I(f, k)`` with the mask of part k. ``P(f, k)`` = share of
    the images having part k with IoU > ``iou_threshold``; a filter's score is
    ``max_k P(f, k)``, the layer's the mean over filters.

    A part is a (class, part slot) pair when ``per_class`` (slots are class-specific in
    shapes: "house roof"), else a slot. Parts seen in fewer than ``min_part_images`` images
    are left out (a max over parts seen once or twice would reward chance).

    Returns
    -------
    (score, per-filter scores (K,)).
    """
    if lm.parts is None:
        raise DataError("part_interpretability: the data has no part masks")
    maps, parts, labels = lm.maps, lm.parts, lm.labels
    n, k, h, w = maps.shape
    p = parts.shape[1]
    flat = maps.transpose(0, 1).reshape(k, -1)  # (K, N h w)
    rank = min(flat.shape[1] - 1, int(round(quantile * flat.shape[1])))
    thr = flat.topk(rank + 1, dim=1).values[:, -1]  # (K,): `rank` values lie above
    # bilinear upsampling (align_corners=False) is a convex combination of map values, so
    # only maps whose maximum exceeds T_f can have a non-empty region: upsample those only
    active = maps.amax(dim=(2, 3)) > thr  # (N, K)
    up_rows = _upsample_matrix(h, lm.image_size[0])  # (H, h)
    up_cols = _upsample_matrix(w, lm.image_size[1])  # (W, w)
    n_parts = p * (int(labels.max()) + 1) if per_class else p
    hits = torch.zeros(k, n_parts, dtype=torch.float64)
    seen = torch.zeros(n_parts, dtype=torch.float64)
    for i in range(n):
        gt = parts[i].flatten(1).float()  # (P, H W)
        present = gt.sum(1) > 0  # (P,)
        index = torch.arange(p) + (int(labels[i]) * p if per_class else 0)  # (P,)
        seen[index] += present.double()
        ks = torch.nonzero(active[i]).flatten()
        if len(ks) == 0:
            continue
        up = up_rows @ maps[i, ks] @ up_cols.T  # (m, H, W)
        region = (up > thr[ks, None, None]).flatten(1).float()  # (m, H W)
        inter = region @ gt.T  # (m, P)
        union = region.sum(1)[:, None] + gt.sum(1)[None, :] - inter
        hit = (inter / union.clamp_min(1.0) > iou_threshold) & present[None, :]  # (m, P)
        hits[ks[:, None], index[None, :]] += hit.double()
    usable = seen >= min_part_images
    if not bool(usable.any()):
        raise DataError(f"part_interpretability: no part is seen in {min_part_images} images")
    share = hits[:, usable] / seen[usable]  # (K, parts)
    per_filter = share.max(dim=1).values.numpy()
    return float(per_filter.mean()), per_filter


def part_interpretability(
    model: nn.Module,
    layer: str,
    data: Any,
    device: torch.device | str | None = None,
    quantile: float = 0.005,
    iou_threshold: float = 0.2,
    max_images: int | None = None,
    batch_size: int = 128,
    min_part_images: int = 10,
) -> float:
    """Part interpretability of ``layer``'s filters on ``data`` (higher is better); see
    :func:`interpretability_from_maps`. ``max_images`` caps the images used."""
    lm = collect_maps(model, layer, data, device, batch_size, max_images)
    return interpretability_from_maps(lm, quantile, iou_threshold, min_part_images=min_part_images)[
        0
    ]


def part_metrics(
    model: nn.Module,
    layer: str,
    data: Any,
    device: torch.device | str | None = None,
    max_images: int | None = 1000,
) -> dict[str, Any]:
    """``location_instability`` (where the data has landmarks) and ``part_interpretability``
    (where it has part masks) of ``layer`` from one pass over at most ``max_images`` images:
    what ``pellucid evaluate`` reports. Too little data for a metric gives None and a note."""
    lm = collect_maps(model, layer, data, device, max_images=max_images)
    out: dict[str, Any] = {"part_metric_images": len(lm.labels)}
    notes = []
    if lm.landmarks is not None:
        try:  # each metric on its own: one that cannot be computed does not hide the other
            rf = receptive_field(model, layer, lm.in_channels, lm.image_size)
            out["location_instability"] = round(instability_from_maps(lm, rf)[0], 5)
        except DataError as err:
            out["location_instability"] = None
            notes.append(f"location_instability: {err}")
    if lm.parts is not None:
        try:
            out["part_interpretability"] = round(interpretability_from_maps(lm)[0], 5)
        except DataError as err:
            out["part_interpretability"] = None
            notes.append(f"part_interpretability: {err}")
    if notes:
        out["part_metrics_note"] = "; ".join(notes)
    return out
