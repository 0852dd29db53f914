"""The terms of NeuroMask's loss and what they are computed on: the logit grids, the fill of
removed pixels, the sparsity and smoothness priors, the deletion game's objective, the
optimiser and per-image early stopping.

Alzantot et al. 2019 (``shared/methods/neuromask.md``): loss = l_pred CE(f(x~), c)
+ l_sparse mean|W + L| + l_smooth mean((Lap * W)^2); the deletion game is ours, after Fong &
Vedaldi 2017 (``l_delete`` in :class:`NeuroMaskOptions`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pellucid.explain.neuromask.options import NeuroMaskOptions
from pellucid.models.base import normalisation_mean


def border_fill(x: torch.Tensor) -> torch.Tensor:
    """Each image's own background estimate: the per-channel median of its border pixels
    (a frame ``max(1, min(H, W) // 32)`` pixels wide), broadcast to the image (N, C, H, W).

    Removing evidence by painting it with the background colour leaves no silhouette on a
    plain background (there it equals the zero fill of black-background digits) and a
    low-contrast one on a textured background, where a black fill leaves a dark cut-out
    that still shows the object's shape.
    """
    n, c, h, w = x.shape
    k = max(1, min(h, w) // 32)
    frame = torch.ones(h, w, dtype=torch.bool, device=x.device)
    frame[k : h - k, k : w - k] = False
    values = x.flatten(2)[:, :, frame.flatten()]  # (N, C, border pixels)
    return values.median(dim=2).values[:, :, None, None].expand_as(x)


def mask_grids(o: NeuroMaskOptions, h: int, w: int) -> list[tuple[int, int]]:
    """The logit grids of an ``h`` x ``w`` image, coarsest first: the mask grid (side
    ``mask_size``, capped at the image, or ``ceil(h / mask_scale)``) and ``pyramid - 1``
    grids each twice as fine (capped at the image size)."""
    if o.mask_size is not None:
        gh, gw = min(o.mask_size, h), min(o.mask_size, w)
    else:
        gh, gw = math.ceil(h / o.mask_scale), math.ceil(w / o.mask_scale)
    out = [(gh, gw)]
    for _ in range(o.pyramid - 1):
        gh, gw = min(2 * gh, h), min(2 * gw, w)
        if (gh, gw) == out[-1]:
            break
        out.append((gh, gw))
    return out


def removal_fill(
    model: nn.Module, x: torch.Tensor, kind: str | float, blur_sigma: float | None = None
) -> torch.Tensor:
    """What removed pixels of images ``x`` (N, C, H, W) become, ``fill`` in
    :class:`NeuroMaskOptions`: a constant, 0 (``"zero"``), each image's border colour
    (``"border"``, :func:`border_fill`), the dataset mean read from ``model``'s normalisation
    layer (``"mean"``; each image's own mean if it has none) or a blurred copy of the image
    (``"blur"``, Gaussian ``blur_sigma`` px; default 10 px at 224 px, scaled with the image)."""
    if isinstance(kind, (int, float)) and not isinstance(kind, bool):
        return torch.full_like(x, float(kind))
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "border":
        return border_fill(x)
    if kind == "mean":
        mean = normalisation_mean(model, x.shape[1])
        if mean is None:
            return x.mean((2, 3), keepdim=True).expand_as(x)
        return mean.to(x).view(1, -1, 1, 1).expand_as(x)
    from pellucid.explain.baselines import blur

    sigma = blur_sigma if blur_sigma is not None else 10 * max(x.shape[-2:]) / 224
    return blur(x, sigma)


def area_penalty(masks: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """Ranking constraint of Extremal Perturbations (Fong, Patrick & Vedaldi 2019, eq. 6) per
    image (N,): the mean squared difference between the sorted values of the masks
    (N, 1, H, W) and a template with a share ``1 - area`` (N,) of zeros, then ones. It is
    0 only for a binary mask of exactly that area, whatever its shape."""
    values = masks.flatten(1).sort(dim=1).values  # (N, H * W), ascending
    d = values.shape[1]
    position = (torch.arange(d, device=masks.device, dtype=masks.dtype) + 0.5) / d  # (H * W,)
    template = (position[None, :] >= 1 - area[:, None]).to(masks.dtype)  # (N, H * W)
    return (values - template).pow(2).mean(1)


def add_prior(
    o: NeuroMaskOptions,
    loss: torch.Tensor,
    logits: torch.Tensor,
    masks: torch.Tensor,
    area: torch.Tensor | None = None,
) -> torch.Tensor:
    """``loss`` (N,) + l_sparse * sparsity + l_smooth * S(W) of one mask, logits W
    (N, 1, h, w) and mask M (N, 1, H, W): the sparsity is mean|W + L| (paper), the area
    mean(M) (``sparsity="mask"``), or the ranking constraint at ``area`` (N,)
    (:func:`area_penalty`); S is skipped when its weight is 0."""
    if area is not None:
        sparse = area_penalty(masks, area)
    elif o.sparsity == "mask":
        sparse = masks.flatten(1).mean(1)  # the area of the mask
    else:
        sparse = (logits + o.logit_bound).abs().flatten(1).mean(1)
    loss = loss + o.l_sparse * sparse
    if o.l_smooth > 0:
        loss = loss + o.l_smooth * smoothness(logits, o.smoothness)
    return loss


def neg_log_not(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log(1 - softmax(logits)_c) per row, computed stably as
    logsumexp(all) - logsumexp(all but c)."""
    others = logits.scatter(1, target[:, None], -math.inf)  # (N, K)
    return torch.logsumexp(logits, 1) - torch.logsumexp(others, 1)


def deletion_term(logits: torch.Tensor, target: torch.Tensor, objective: str) -> torch.Tensor:
    """The deletion game's term (N,), minimised, of the logits (N, K) of the images with the
    mask's region removed: ``log p_c`` ("log-prob"), ``log(p_c + 1/K)`` ("above-chance":
    like log p_c above chance, flat once p_c is well below it) or ``-log(1 - p_c)``
    ("not-class": saturates once p_c ~ 0)."""
    if objective == "not-class":
        return neg_log_not(logits, target)
    log_p = -F.cross_entropy(logits, target, reduction="none")  # log p_c
    if objective == "above-chance":
        return torch.logaddexp(log_p, torch.full_like(log_p, -math.log(logits.shape[1])))
    return log_p


def smoothness(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image smoothness penalty (N,) of logits (N, 1, h, w): the mean squared response of
    the paper's 3x3 Laplacian (centre 8, neighbours -1; replicate padding), or ("tv") the
    mean absolute difference of neighbouring logits."""
    if kind == "tv":
        dx = (logits[..., :, 1:] - logits[..., :, :-1]).abs().flatten(1)
        dy = (logits[..., 1:, :] - logits[..., :-1, :]).abs().flatten(1)
        return (dx.sum(1) + dy.sum(1)) / max(1, dx.shape[1] + dy.shape[1])
    kernel = torch.full((1, 1, 3, 3), -1.0, device=logits.device, dtype=logits.dtype)
    kernel[0, 0, 1, 1] = 8.0
    lap = F.conv2d(F.pad(logits, (1, 1, 1, 1), mode="replicate"), kernel)  # (N, 1, h, w)
    return lap.pow(2).flatten(1).mean(1)


def make_optimizer(name: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """Adam, RMSprop (the paper's, lr 0.03) or plain SGD over the mask logits."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.SGD(params, lr=lr)


class EarlyStopping:
    """Per-image early stopping: an image stops once its loss has not improved by a relative
    ``tol`` (relative to |best|: the deletion game's loss can be negative) for ``patience``
    steps (0 = never)."""

    def __init__(self, n: int, patience: int, tol: float, device: torch.device) -> None:
        self.patience, self.tol = patience, tol
        self.best = torch.full((n,), math.inf, device=device)
        self.since = torch.zeros(n, dtype=torch.long, device=device)
        self.active = torch.ones(n, dtype=torch.bool, device=device)
        self.steps = torch.zeros(n, dtype=torch.long, device=device)

    def update(self, idx: torch.Tensor, loss: torch.Tensor) -> bool:
        """Record the losses (len(idx),) of the active images ``idx``; whether any image is
        still active."""
        self.steps[idx] += 1
        best = self.best[idx]
        improved = torch.isinf(best) | (loss < best - self.tol * best.abs() - 1e-12)
        self.best[idx] = torch.where(improved, loss.to(best.dtype), best)
        self.since[idx] = torch.where(improved, 0, self.since[idx] + 1)
        if self.patience > 0:
            self.active &= self.since < self.patience
        return bool(self.active.any())


def data_terms(
    model: nn.Module,
    x: torch.Tensor,
    keep: torch.Tensor,
    delete: torch.Tensor,
    fill: torch.Tensor,
    dfill: torch.Tensor,
    target: torch.Tensor,
    o: NeuroMaskOptions,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The terms of the loss that run the model, per image (N,): CE(f(x~), c) of the kept
    image ``x~ = x * keep + fill * (1 - keep)`` (paper) and, when ``l_delete > 0``, the
    deletion game's term D (:func:`deletion_term`) of the image with the region removed,
    ``x * (1 - delete) + dfill * delete`` (else None). Masks (N, 1, H, W), images and fills
    (N, C, H, W); both images go through the model as one batch of 2N (eval mode: per
    image)."""
    kept = x * keep + fill * (1 - keep)  # (N, C, H, W): paper's x~
    if o.l_delete <= 0:
        return F.cross_entropy(model(kept), target, reduction="none"), None
    n = len(x)
    out = model(torch.cat([kept, x * (1 - delete) + dfill * delete]))  # (2N, K)
    ce = F.cross_entropy(out[:n], target, reduction="none")
    return ce, deletion_term(out[n:], target, o.delete_objective)


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Per row of ``values`` (N, D), each value's rank scaled to [0, 1] (0 the smallest, 1
    the largest); tied values share the mean of their ranks, so a tie never falls back to
    raster order."""
    d = values.shape[1]
    ordered = values.sort(dim=1).values
    below = torch.searchsorted(ordered, values, right=False)  # values strictly smaller
    upto = torch.searchsorted(ordered, values, right=True)  # values smaller or equal
    return (below + upto - 1).to(values.dtype) / (2 * max(d - 1, 1))


def refine_masks(
    model: nn.Module,
    x: torch.Tensor,
    masks: torch.Tensor,
    target: torch.Tensor,
    fill: torch.Tensor,
    dfill: torch.Tensor,
    o: NeuroMaskOptions,
) -> torch.Tensor:
    """The full-resolution refinement (``refine`` in :class:`NeuroMaskOptions`):
    ``(M + refine * rank(g)) / (1 + refine)`` per image (``refine_mode="product"``:
    ``M * (1 + refine * rank(g)) / (1 + refine)``), g = -dL/dM at each pixel of the
    final masks M (N, 1, H, W) of images ``x`` (N, C, H, W), L the loss's prediction term
    ``l_pred CE(f(x * M + fill * (1 - M)), c)`` plus its deletion term ``l_delete
    D(f(x * (1 - M) + dfill * M))``.

    With ``refine_steps = k > 1`` g is integrated along the straight path from the intact
    image to the final masks (the Riemann sum of integrated gradients, Sundararajan et al.
    2017, eq. 3): at ``a = j / k``, j = 1..k, the kept image uses ``1 - a (1 - M)`` and the
    deleted one ``a M``, and g is the mean of their gradients with respect to M. With
    ``refine_fills`` the rank is the mean of the ranks of g under ``fill``/``dfill`` and
    under each listed fill in place of both. The losses are per image and summed, so an
    image's map does not depend on its batch."""
    fills = [(fill, dfill)]
    for kind in o.refine_fills:
        f = removal_fill(model, x, kind, o.blur_sigma)
        fills.append((f, f))
    k = o.refine_steps  # >= 1 (validated)
    rank = torch.zeros_like(masks)
    for fk, dk in fills:
        grad = torch.zeros_like(masks)
        for j in range(1, k + 1):
            a = j / k
            m = masks.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                # at a = 1 the final mask itself (bit for bit, so that ties rank alike)
                keep, delete = (m, m) if j == k else (1 - a * (1 - m), a * m)
                ce, d = data_terms(model, x, keep, delete, fk, dk, target, o)
                loss = o.l_pred * ce if d is None else o.l_pred * ce + o.l_delete * d
                (g,) = torch.autograd.grad(loss.sum(), m)
            grad += g / k
        rank += average_ranks(-grad.flatten(1)).view_as(masks) / len(fills)  # in [0, 1]
    if o.refine_mode == "product":  # validated: "add" or "product"
        return masks.detach() * (1 + o.refine * rank) / (1 + o.refine)
    return (masks.detach() + o.refine * rank) / (1 + o.refine)
