"""Part-level filter metrics of Zhang et al., "Interpretable Convolutional Neural Networks",
CVPR 2018 (arXiv 1710.00935v4, Sec. 4; spec: shared/methods/icnn.md, "Metrics"): location
instability (lower is better) and part interpretability (higher is better). Both take any
model and layer, so standard, CSG and ICNN runs are measured on one scale.

* receptive fields are computed from the network (:func:`receptive_field`), never typed in;
* a filter's category is the class with the highest mean activation (for every run alike);
* :func:`collect_maps` runs the data once; the ``*_from_maps`` functions do the arithmetic.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pellucid.errors import DataError
from pellucid.hooks import capture
from pellucid.metrics.base import declare
from pellucid.state import model_device

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


# -- receptive fields -----------------------------------------------------------------------
@dataclass(frozen=True)
class ReceptiveField:
    """Unit (i, j) of a layer sees input rows ``start[0] + i jump[0] + [0, size[0])`` and
    columns ``start[1] + j jump[1] + [0, size[1])`` (unclipped: may extend past the image)."""

    start: tuple[int, int]
    jump: tuple[int, int]
    size: tuple[int, int]

    def centres(self, h: int, w: int) -> torch.Tensor:
        """(h, w, 2) receptive-field centres as (x, y) = (column, row) pixel coordinates."""
        rows = self.start[0] + self.jump[0] * torch.arange(h) + (self.size[0] - 1) / 2
        cols = self.start[1] + self.jump[1] * torch.arange(w) + (self.size[1] - 1) / 2
        y, x = torch.meshgrid(rows.double(), cols.double(), indexing="ij")
        return torch.stack([x, y], dim=-1)  # (h, w, 2)

    def box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), end-exclusive, of unit (i, j)'s field (unclipped)."""
        y0, x0 = self.start[0] + self.jump[0] * i, self.start[1] + self.jump[1] * j
        return x0, y0, x0 + self.size[1], y0 + self.size[0]


def _probe_copy(model: nn.Module) -> nn.Module:
    """A float64 copy in which every unit depends on exactly its receptive field: positive
    conv weights (1 / fan-in), identity BN and input normalisation, max-pooling replaced by
    average pooling (same window), modules marked ``rf_transparent`` (the ICNN mask)
    replaced by the identity. With a positive input every activation is positive, so ReLUs
    pass everything and the input gradient of a unit is non-zero exactly on its field."""
    probe = copy.deepcopy(model).double().eval()
    for parent in list(probe.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MaxPool2d):
                pool = nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode)
                setattr(parent, name, pool)
            elif getattr(child, "rf_transparent", False):
                setattr(parent, name, nn.Identity())
    with torch.no_grad():
        for m in probe.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_parameters()  # mean 0, var 1, weight 1, bias 0
            elif type(m).__name__ == "Normalize" and hasattr(m, "mean"):
                m.mean.zero_()
                m.std.fill_(1.0)
    for p in probe.parameters():
        p.requires_grad_(False)
    return probe


def _support(grad: torch.Tensor) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1), inclusive, of the non-zero entries of a (H, W) map."""
    rows = torch.nonzero(grad.abs().sum(1) > 0).flatten()
    cols = torch.nonzero(grad.abs().sum(0) > 0).flatten()
    if len(rows) == 0:
        raise DataError("receptive_field: the unit does not depend on the input")
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def receptive_field(
    model: nn.Module,
    layer: str,
    in_channels: int,
    image_size: tuple[int, int],
    max_side: int = 4096,
) -> ReceptiveField:
    """Receptive fields of ``layer``'s units, measured on the network itself.

    The input gradient of a unit of a linearised copy (see :func:`_probe_copy`) is non-zero
    on exactly the pixels the unit sees. The centre unit and its neighbours are probed on an
    input large enough that their fields lie inside it (the side is doubled until they do),
    which gives start, jump (stride) and size per axis; these do not depend on the input
    size, so they hold for ``image_size``.

    Raises
    ------
    DataError
        If the fields are not those of a conv net (inconsistent strides), exceed
        ``max_side`` pixels, or the model cannot be copied or run on larger inputs.
    """
    try:
        probe = _probe_copy(model)
    except (RuntimeError, TypeError) as err:
        raise DataError(f"receptive_field: cannot copy the model to probe it: {err}") from None
    h, w = image_size
    while True:
        x = torch.ones(1, in_channels, h, w, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad(), capture(probe, [layer]) as acts:
            try:
                probe(x)
            except (RuntimeError, TypeError) as err:  # e.g. a head that needs one input size
                raise DataError(f"receptive_field: the model fails on {h}x{w}: {err}") from None
        a = acts[layer]  # (1, K, h', w')
        if a.ndim != 4:
            raise DataError(f"layer {layer!r} output is {tuple(a.shape)}, not (N, K, H, W)")
        hh, ww = a.shape[-2:]
        boxes = _probe_units(a, x, hh, ww) if min(hh, ww) >= 3 else None
        if boxes is not None:
            return _fit(boxes, hh // 2, ww // 2, layer)
        if max(h, w) * 2 > max_side:
            raise DataError(f"receptive_field: fields of {layer!r} exceed {max_side} pixels")
        h, w = h * 2, w * 2


def _probe_units(
    a: torch.Tensor, x: torch.Tensor, hh: int, ww: int
) -> dict[tuple[int, int], tuple[int, int, int, int]] | None:
    """Field boxes of the centre unit and its 4 neighbours; None if any touches the border."""
    ic, jc = hh // 2, ww // 2
    boxes = {}
    for i, j in ((ic, jc), (ic - 1, jc), (ic + 1, jc), (ic, jc - 1), (ic, jc + 1)):
        (g,) = torch.autograd.grad(a[0, :, i, j].sum(), x, retain_graph=True)
        r0, r1, c0, c1 = _support(g[0].abs().sum(0))  # (H, W)
        if r0 == 0 or c0 == 0 or r1 == x.shape[2] - 1 or c1 == x.shape[3] - 1:
            return None
        boxes[(i, j)] = (r0, r1, c0, c1)
    return boxes


def _fit(boxes: dict, ic: int, jc: int, layer: str) -> ReceptiveField:
    r0, r1, c0, c1 = boxes[(ic, jc)]
    jump_r = boxes[(ic + 1, jc)][0] - r0
    jump_c = boxes[(ic, jc + 1)][2] - c0
    consistent = (
        jump_r > 0
        and jump_c > 0
        and r0 - boxes[(ic - 1, jc)][0] == jump_r
        and c0 - boxes[(ic, jc - 1)][2] == jump_c
        and all(b[1] - b[0] == r1 - r0 and b[3] - b[2] == c1 - c0 for b in boxes.values())
    )
    if not consistent:
        raise DataError(f"receptive_field: {layer!r} has no regular grid of receptive fields")
    return ReceptiveField(
        (r0 - ic * jump_r, c0 - jc * jump_c), (jump_r, jump_c), (r1 - r0 + 1, c1 - c0 + 1)
    )


# -- one pass over the data -------------------------------------------------------------------
@dataclass
class LayerMaps:
    """A layer's maps over (up to ``max_images``) images, with their ground truth (CPU)."""

    maps: torch.Tensor  # (N, K, h, w) float32
    labels: torch.Tensor  # (N,)
    image_size: tuple[int, int]  # (H, W)
    in_channels: int
    landmarks: torch.Tensor | None = None  # (N, P, 2) as (x, y), NaN where absent
    parts: torch.Tensor | None = None  # (N, P, H, W) bool


@torch.no_grad()
def collect_maps(
    model: nn.Module,
    layer: str,
    data: Any,
    device: torch.device | str | None = None,
    batch_size: int = 128,
    max_images: int | None = None,
) -> LayerMaps:
    """Run ``model`` (eval mode, restored afterwards) over ``data`` (a Dataset or an
    iterable of Batch) and keep ``layer``'s maps, labels, landmarks and part masks."""
    from pellucid.data import make_loader

    loader = make_loader(data, batch_size) if hasattr(data, "__getitem__") else data
    device = torch.device(device) if device else model_device(model)
    was_training = model.training
    model.eval()
    maps, labels, marks, parts, n, shape = [], [], [], [], 0, None
    try:
        with capture(model, [layer], detach=True) as acts:
            for batch in loader:
                take = len(batch) if max_images is None else min(len(batch), max_images - n)
                model(batch.image[:take].to(device))
                a = acts[layer]
                if a.ndim != 4:
                    raise DataError(f"layer {layer!r} output is {tuple(a.shape)}, not 4-D")
                maps.append(a.float().cpu())
                labels.append(batch.label[:take])
                shape = tuple(batch.image.shape[1:])
                if batch.landmarks is not None:
                    marks.append(batch.landmarks[:take].float())
                if batch.parts is not None:
                    parts.append(batch.parts[:take] > 0.5)
                n += take
                if max_images is not None and n >= max_images:
                    break
    finally:
        model.train(was_training)
    if n == 0:
        raise DataError("collect_maps: the data is empty")
    return LayerMaps(
        maps=torch.cat(maps),
        labels=torch.cat(labels),
        image_size=(shape[1], shape[2]),
        in_channels=shape[0],
        landmarks=torch.cat(marks) if len(marks) == len(maps) else None,
        parts=torch.cat(parts) if len(parts) == len(maps) else None,
    )


def filter_categories(maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K,) the class with the highest mean (spatially averaged) activation per filter."""
    pooled = maps.double().mean(dim=(2, 3))  # (N, K)
    classes = torch.unique(labels)
    means = torch.stack([pooled[labels == c].mean(0) for c in classes])  # (C', K)
    return classes[means.argmax(0)]


def peak_centres(maps: torch.Tensor, rf: ReceptiveField) -> tuple[torch.Tensor, torch.Tensor]:
    """(peak value (N, K), receptive-field centre (x, y) of the peak unit (N, K, 2))."""
    n, k, h, w = maps.shape
    flat = maps.flatten(2)  # (N, K, h w)
    idx = flat.argmax(-1)  # (N, K), the first maximum on ties
    value = flat.gather(-1, idx[..., None]).squeeze(-1)
    centres = rf.centres(h, w).reshape(h * w, 2)  # (h w, 2)
    return value, centres[idx]  # (N, K), (N, K, 2)


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
    try:
        if lm.landmarks is not None:
            rf = receptive_field(model, layer, lm.in_channels, lm.image_size)
            out["location_instability"] = round(instability_from_maps(lm, rf)[0], 5)
        if lm.parts is not None:
            out["part_interpretability"] = round(interpretability_from_maps(lm)[0], 5)
    except DataError as err:
        out.setdefault("location_instability", None)
        out.setdefault("part_interpretability", None)
        out["part_metrics_note"] = str(err)
    return out
