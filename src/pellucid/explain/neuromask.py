"""NeuroMask: explain a prediction by learning the smallest smooth mask that keeps it.

Alzantot, Widdicombe, Julier, Srivastava, "NeuroMask: Explaining Predictions of Deep Neural
Networks through Mask Learning", SMARTCOMP 2019 (arXiv:1908.04389); specification in
``shared/methods/neuromask.md``.

For an image x and class c, free mask logits W (one channel) give the mask
``M = sigmoid(W / T)`` and the masked image ``x~ = x * M + fill * (1 - M)`` (fill = 0 in the
paper). The loss, per image, is

    l_pred * CE(f(x~), c) + l_sparse * mean|W + L| + l_smooth * S(W)

with L the logit bound (10; W starts uniform in [-L, L]) and S the mean squared response of
a discrete Laplacian (3x3: centre 8, neighbours -1) — or total variation. The ``reference``
preset is the paper's setting (full-resolution logits, zero fill, Laplacian, RMSprop lr 0.03,
2000 iterations, one image at a time). The default preset adds what makes the method usable:
the masks of a whole batch are optimised together (each image's loss is summed, never
averaged, and the optimisers are element-wise, so an image's mask does not depend on its
batch), the logits live on a coarse grid upsampled bilinearly (no speckle, far fewer free
variables), Adam, and per-image early stopping.

Options that are ours, not the paper's (measured by ``benchmarks/explainers.py --sweep``):
a deletion-game term after Fong & Vedaldi 2017 on the same mask,
``l_delete * log p_c(x * (1 - M) + fill * M)`` (or the saturating ``-log(1 - p_c)``, or
``log(p_c + 1/K)``, which stops rewarding the deletion once p_c is below chance), so that
removing the mask's region must also remove the class; the ``border`` fill, each image's own
background colour (the median of its border pixels), so that a removed object leaves no
black silhouette on a textured image; and an area sparsity ``mean(M)`` (their L1 on the
mask) in place of the paper's L1 on the logits. The default preset uses the first two with
Fong & Vedaldi's grid (28 x 28 at 224 px, i.e. a factor 8); ``reference`` uses none. Two
more options of ours (2026-12-02, ``benchmarks/explainers.py --validation``): ``pyramid``,
logits as the sum of the coarse grid and finer grids, and ``delete_mask``, a deletion game
on a mask of its own whose product (or mean) with the preservation mask is returned.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pellucid.errors import ConfigError, DataError
from pellucid.explain.base import Explainer
from pellucid.models.base import normalisation_mean
from pellucid.registry import EXPLAINERS

FILLS = ("zero", "mean", "blur", "border")
SMOOTHNESS = ("laplacian", "tv")
SPARSITY = ("logits", "mask")
DELETE_OBJECTIVES = ("log-prob", "not-class", "above-chance")
DELETE_MASKS = ("shared", "product", "mean")
OPTIMIZERS = ("adam", "rmsprop", "sgd")


@dataclass(frozen=True)
class NeuroMaskOptions:
    """Every NeuroMask option (see :class:`NeuroMask`); the values here are the default
    preset, chosen by the held-out sweep on both benchmark datasets (2026-12-01, see
    ``benchmarks/explainers.py`` and the README)."""

    mask_size: int | None = None  # side of the logit grid; None = ceil(H / mask_scale)
    mask_scale: int = 8  # Fong & Vedaldi's 28 x 28 grid at 224 px
    pyramid: int = 1  # grids summed: the mask grid and pyramid - 1 finer ones (each 2x)
    fill: str | float = "border"
    blur_sigma: float | None = None  # fill="blur": default 10 px at 224 px, scaled
    smoothness: str = "laplacian"
    l_pred: float = 0.4
    l_sparse: float = 0.2
    l_smooth: float = 0.0  # the bilinearly upsampled coarse grid is the smoothness prior
    sparsity: str = "logits"  # "logits": mean|W + L| (paper); "mask": mean M (Fong & Vedaldi)
    l_delete: float = 0.1  # deletion game (ours, after Fong & Vedaldi 2017); 0 = off
    delete_objective: str = "log-prob"  # log p_c; "not-class": -log(1 - p_c); "above-chance"
    delete_fill: str | float | None = None  # fill of the deletion game; None = ``fill``
    delete_mask: str = "shared"  # one mask in both games, or its own: "product" / "mean"
    smooth_map: float = 0.0  # Gaussian sigma (px) applied to the returned map (ours); 0 = off
    temperature: float = 1.0
    logit_bound: float = 10.0
    init: str | float = 0.0  # a constant logit (0: M = 0.5), or "uniform" in [-L, L] (paper)
    optimizer: str = "adam"
    lr: float = 0.3
    iterations: int = 50
    patience: int = 20  # early stopping: steps without a relative improvement of tol
    tol: float = 1e-3
    seed: int = 0


PRESETS: dict[str, NeuroMaskOptions] = {
    # Paper setting (authors' small-image demo: T = 1, weights 0.4/0.35/0.15), one image at a
    # time, full-resolution logits, no early stopping.
    "reference": NeuroMaskOptions(
        mask_size=None,
        mask_scale=1,
        pyramid=1,
        blur_sigma=None,
        fill="zero",
        smoothness="laplacian",
        l_pred=0.4,
        l_sparse=0.35,
        l_smooth=0.15,
        sparsity="logits",
        l_delete=0.0,
        delete_objective="log-prob",
        delete_fill=None,
        delete_mask="shared",
        smooth_map=0.0,
        temperature=1.0,
        logit_bound=10.0,
        init="uniform",
        optimizer="rmsprop",
        lr=0.03,
        iterations=2000,
        patience=0,
        tol=1e-3,
        seed=0,
    ),
    "default": NeuroMaskOptions(),
}


@EXPLAINERS.register("neuromask", help="NeuroMask: learn the smallest smooth mask (ours)")
class NeuroMask(Explainer):
    """NeuroMask explainer (Alzantot et al. 2019).

    Parameters
    ----------
    model : nn.Module
        Classifier on pixel-space images in [0, 1].
    preset : {"default", "reference"}
        Starting values of the options below; explicit options override them. ``reference``
        also explains one image at a time (``batch_size=1``) as the paper does.
    mask_size : int, optional
        Side of the mask-logit grid, upsampled bilinearly to the image; ``None`` uses
        ``ceil(H / mask_scale)`` (full resolution when ``mask_scale`` is 1).
    mask_scale : int
        Default downsampling factor of the grid (8: an 8x8 grid for 64x64 images, the
        28 x 28 grid of Fong & Vedaldi 2017 at 224 px). On the held-out images a coarse
        grid removes the object with its surroundings as one blob, which is what lowers
        deletion AUC on textured images; a factor 2 or 4 keeps more detail.
    pyramid : int
        Number of logit grids (ours; default 1). With ``pyramid = k`` the logits are the
        sum of the mask grid and ``k - 1`` grids each twice as fine (capped at the image
        size), each upsampled bilinearly: the coarse grid carries the blob, the finer ones
        its detail, so the mask can follow a thin stroke without the full-resolution
        grid's speckle. The finer grids start at 0; the sparsity and smoothness terms act
        on the summed logits. The cost per step is unchanged (the model's forward dominates).
    fill : {"border", "zero", "mean", "blur"} or float
        What removed pixels become: each image's own background colour, the per-channel
        median of its border pixels (default, ours: :func:`border_fill`; on a black
        background it is 0, the paper's fill), 0 (paper), the dataset mean (read from the
        model's normalisation layer; the image's mean if it has none), a blurred copy of the
        image (Fong & Vedaldi 2017), or a constant. A blurred digit stays readable, so the
        blur fill lets the mask leave the object on strokes-on-black images (pointing 0.84 on
        held-out cluttered-mnist); ``border`` does not, and it keeps the deletion game's
        mask on the object of textured images (see ``l_delete``).
    blur_sigma : float, optional
        Blur for ``fill="blur"``; default 10 px at 224 px, scaled with the image.
    smoothness : {"laplacian", "tv"}
        Mean squared 3x3 Laplacian response of W (paper), or mean absolute difference of
        neighbouring logits (total variation).
    l_pred, l_sparse, l_smooth : float
        Loss weights (paper: 0.4, 0.35, 0.15 for 32x32 images; default 0.4, 0.2, 0: on a
        coarse grid the bilinear upsampling already smooths, and the Laplacian of logits that
        sit at +-L dominated the loss in our measurements).
    sparsity : {"logits", "mask"}
        What ``l_sparse`` weighs: ``mean|W + L|`` (paper) or the mask's area ``mean(M)``
        (ours, the L1 area term of Fong & Vedaldi 2017). With ``"mask"`` a pixel's pull to 0
        fades as its logit falls, so the order of the pixels outside the mask follows the
        model rather than a common march to -L; it did not help deletion in our sweep.
    l_delete : float
        Weight of the deletion game (ours, after Fong & Vedaldi 2017): the image with the
        mask's region removed, ``x * (1 - M) + delete_fill * M``, should lose class c.
        Default 0.1; 0 = off (as in ``reference``); when on, each step runs the model on 2N
        images. With a zero fill on textured images the deletion game spreads the mask over
        the background (held-out pointing on shapes 0.389 at ``l_delete=0.2``, quarter
        grid): zeroing the object leaves its black silhouette, which still reads as the
        class. With the ``border`` fill the same setting points at 0.908 (held-out sweep).
    delete_objective : {"log-prob", "not-class", "above-chance"}
        The deletion term: ``log p_c`` (minimised; unbounded below, held by the sparsity term),
        ``-log(1 - p_c)``, which saturates once p_c is near 0, or ``log(p_c + 1/K)`` (K
        classes), which behaves like ``log p_c`` above chance and is bounded below by
        ``log(1/K)``, so that the mask is not rewarded for pushing the class far below chance
        by removing more of the image. Neither bounded form helped in our sweep: on
        cluttered-mnist the unbounded push is what orders the supporting clutter (deletion
        0.081 vs 0.088 for ``above-chance`` on the same quarter grid), and on shapes the
        bounded form keeps the mask's peak on the object (pointing 1.000, where ``log p_c``
        falls to 0.389) but not its deletion AUC (0.200 vs Grad-CAM's 0.159).
    delete_fill : {"border", "zero", "mean", "blur"}, float or None
        What the deleted region becomes; ``None`` uses ``fill``.
    delete_mask : {"shared", "product", "mean"}
        Which mask the deletion game moves (ours). ``"shared"`` (default): the preservation
        mask itself (Fong & Vedaldi's single mask). ``"product"`` / ``"mean"``: a second mask
        of its own (same grids, initialisation and sparsity term), and the returned map is
        the two masks' product (a pixel ranks high only if it is both enough to keep the
        class and needed for it) or mean. On one shared mask the deletion game also marks
        clutter whose removal lowers p_c, and the map's maximum can land there (pointing
        game); the product keeps the maximum where the preservation mask is. The step costs
        the same 2N forwards as the shared game.
    smooth_map : float
        Gaussian sigma in pixels applied to the returned mask (ours; 0 = off). Outside the
        mask every logit sits near -L, so the order of those pixels is noise; smoothing
        orders them by nearness to the evidence. It helped deletion on textured images and
        hurt it on thin strokes on black in our sweep. ``last_info`` describes the unsmoothed
        mask.
    temperature : float
        T in ``M = sigmoid(W / T)``.
    logit_bound : float
        L: initial logits are uniform in [-L, L]; the sparsity term pulls them to -L.
    init : "uniform" or float
        Uniform in [-L, L] (paper; the same draw for every image, so that results do not
        depend on batch composition) or a constant logit (default 0: M = 0.5, where the
        sigmoid's gradient is largest; uniform logits start mostly saturated).
    optimizer : {"adam", "rmsprop", "sgd"}
    lr : float
        Learning rate (default 0.3 with Adam).
    iterations : int
        Maximum optimisation steps (default 50).
    patience, tol : int, float
        Stop an image once its loss has not improved by a relative ``tol`` for ``patience``
        steps (0 = never stop early).
    seed : int
        Seed of the initial logits.
    batch_size : int, optional
        Images optimised together (default 64; 1 for ``reference``).

    Attributes
    ----------
    last_info : dict
        After :meth:`explain`: ``iterations`` (per image), ``probability`` of the target class
        on the masked image, ``area`` (mean mask value) and ``loss``.
    """

    name = "neuromask"
    normalise = False

    def __init__(
        self,
        model: nn.Module,
        preset: str = "default",
        batch_size: int | None = None,
        **options: Any,
    ) -> None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown NeuroMask preset {preset!r}; choose from {list(PRESETS)}")
        valid = {f.name for f in fields(NeuroMaskOptions)}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ConfigError(
                f"NeuroMask has no option {unknown[0]!r}; options: preset, batch_size, "
                + ", ".join(sorted(valid))
            )
        self.preset = preset
        self.options = replace(PRESETS[preset], **options)
        _validate(self.options)
        if batch_size is None:
            batch_size = 1 if preset == "reference" else 64
        super().__init__(model, batch_size)
        self.last_info: dict[str, torch.Tensor] = {}

    @classmethod
    def reference(cls, model: nn.Module, **options: Any) -> NeuroMask:
        """The paper's setting (see ``PRESETS["reference"]``)."""
        return cls(model, preset="reference", **options)

    def config(self) -> dict[str, Any]:
        """Resolved options (for saving next to results)."""
        return {"preset": self.preset, "batch_size": self.batch_size, **asdict(self.options)}

    def explain(self, inputs: torch.Tensor, target: Any = None) -> torch.Tensor:
        self._info: list[dict[str, torch.Tensor]] = []
        masks = super().explain(inputs, target)
        self.last_info = {k: torch.cat([d[k] for d in self._info]) for k in self._info[0]}
        return masks

    attribute = explain

    # ------------------------------------------------------------------ the optimisation
    def _grid(self, h: int, w: int) -> tuple[int, int]:
        o = self.options
        if o.mask_size is not None:
            return min(o.mask_size, h), min(o.mask_size, w)
        return math.ceil(h / o.mask_scale), math.ceil(w / o.mask_scale)

    def _fill(self, x: torch.Tensor, kind: str | float) -> torch.Tensor:
        o = self.options
        if isinstance(kind, (int, float)) and not isinstance(kind, bool):
            return torch.full_like(x, float(kind))
        if kind == "zero":
            return torch.zeros_like(x)
        if kind == "border":
            return border_fill(x)
        if kind == "mean":
            mean = normalisation_mean(self.model, x.shape[1])
            if mean is None:
                return x.mean((2, 3), keepdim=True).expand_as(x)
            return mean.to(x).view(1, -1, 1, 1).expand_as(x)
        from pellucid.explain.baselines import blur

        sigma = o.blur_sigma if o.blur_sigma is not None else 10 * max(x.shape[-2:]) / 224
        return blur(x, sigma)

    def _grids(self, h: int, w: int) -> list[tuple[int, int]]:
        """The logit grids, coarsest first: the mask grid and ``pyramid - 1`` grids each
        twice as fine (capped at the image size)."""
        gh, gw = self._grid(h, w)
        out = [(gh, gw)]
        for _ in range(self.options.pyramid - 1):
            gh, gw = min(2 * gh, h), min(2 * gw, w)
            if (gh, gw) == out[-1]:
                break
            out.append((gh, gw))
        return out

    def _init_logits(self, n: int, gh: int, gw: int, device: torch.device) -> torch.Tensor:
        o = self.options
        if o.init == "uniform":
            g = torch.Generator().manual_seed(o.seed)
            w0 = (torch.rand(1, 1, gh, gw, generator=g) * 2 - 1) * o.logit_bound
        else:
            w0 = torch.full((1, 1, gh, gw), float(o.init))
        return w0.to(device).expand(n, 1, gh, gw).clone()

    def _logit_map(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """W: the single grid's logits, or (pyramid) the sum of every grid's logits
        upsampled bilinearly to the finest grid."""
        if len(logits) == 1:
            return logits[0]
        size = tuple(logits[-1].shape[-2:])
        out = logits[-1]
        for g in logits[:-1]:
            out = out + F.interpolate(g, size=size, mode="bilinear", align_corners=False)
        return out

    def masks_from_logits(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """M = sigmoid(W / T), upsampled bilinearly to ``size`` when the grid is coarser."""
        m = torch.sigmoid(logits / self.options.temperature)
        if tuple(m.shape[-2:]) != tuple(size):
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        return m

    @property
    def _separate(self) -> bool:
        """Whether the deletion game has its own mask (``delete_mask`` product or mean)."""
        return self.options.l_delete > 0 and self.options.delete_mask != "shared"

    def _map(self, grids: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """The returned map: the mask, or with its own deletion mask the two masks combined
        (product: a pixel ranks high only if it is both kept and deleted; or mean)."""
        if not self._separate:
            return self.masks_from_logits(self._logit_map(grids), size)
        k = len(grids) // 2
        keep = self.masks_from_logits(self._logit_map(grids[:k]), size)
        delete = self.masks_from_logits(self._logit_map(grids[k:]), size)
        return keep * delete if self.options.delete_mask == "product" else (keep + delete) / 2

    def _explain(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        o = self.options
        n, _, h, w = inputs.shape
        grids = self._grids(h, w)
        fill = self._fill(inputs, o.fill)  # (N, C, H, W)
        dfill = fill if o.delete_fill is None else self._fill(inputs, o.delete_fill)
        # the coarsest grid holds the initial logits; finer grids start at 0 (a correction)
        logits = []
        for _ in range(2 if self._separate else 1):  # the deletion game's own mask second
            logits.append(self._init_logits(n, *grids[0], inputs.device).requires_grad_(True))
            logits += [
                torch.zeros(n, 1, gh, gw, device=inputs.device, requires_grad=True)
                for gh, gw in grids[1:]
            ]
        opt = _optimizer(o.optimizer, logits, o.lr)
        best = torch.full((n,), math.inf, device=inputs.device)
        since = torch.zeros(n, dtype=torch.long, device=inputs.device)
        active = torch.ones(n, dtype=torch.bool, device=inputs.device)
        steps = torch.zeros(n, dtype=torch.long, device=inputs.device)
        final = [g.detach().clone() for g in logits]
        for _ in range(o.iterations):
            idx = active.nonzero().squeeze(1)
            with torch.enable_grad():
                per_image = self._loss(
                    [g[idx] for g in logits], inputs[idx], fill[idx], dfill[idx], target[idx]
                )
                opt.zero_grad(set_to_none=True)
                per_image.sum().backward()
            opt.step()
            with torch.no_grad():
                steps[idx] += 1
                loss = per_image.detach()
                # relative to |best|: the deletion game's loss can be negative
                first = torch.isinf(best[idx])
                improved = first | (loss < best[idx] - o.tol * best[idx].abs() - 1e-12)
                best[idx] = torch.where(improved, loss, best[idx])
                since[idx] = torch.where(improved, 0, since[idx] + 1)
                # frozen images keep their logits (the optimiser's momentum would move them)
                frozen = ~active
                for g, f in zip(logits, final, strict=True):
                    g.data[frozen] = f[frozen]
                    f[idx] = g.data[idx]
                if o.patience > 0:
                    active &= since < o.patience
                if not active.any():
                    break
        with torch.no_grad():
            masks = self._map(final, (h, w))
            probs = F.softmax(self.model(inputs * masks + fill * (1 - masks)), 1)
            self._info.append(
                {
                    "iterations": steps.cpu(),
                    "probability": probs.gather(1, target[:, None])[:, 0].cpu(),
                    "area": masks.flatten(1).mean(1).cpu(),
                    "loss": self._loss(final, inputs, fill, dfill, target).cpu(),
                }
            )
        if o.smooth_map > 0:
            from pellucid.explain.baselines import blur

            # ranks the pixels outside the mask (logits all near -L) by their nearness to it
            masks = blur(masks, o.smooth_map)  # (N, 1, H, W)
        return masks

    def _add_prior(
        self, loss: torch.Tensor, logits: torch.Tensor, masks: torch.Tensor
    ) -> torch.Tensor:
        """``loss`` (N,) + l_sparse * sparsity + l_smooth * S(W) of one mask: the sparsity is
        mean|W + L| (paper) or the area mean(M); S is skipped when its weight is 0."""
        o = self.options
        if o.sparsity == "mask":
            sparse = masks.flatten(1).mean(1)  # the area of the mask
        else:
            sparse = (logits + o.logit_bound).abs().flatten(1).mean(1)
        loss = loss + o.l_sparse * sparse
        if o.l_smooth > 0:
            loss = loss + o.l_smooth * _smoothness(logits, o.smoothness)
        return loss

    def _loss(
        self,
        grids: list[torch.Tensor],
        x: torch.Tensor,
        fill: torch.Tensor,
        dfill: torch.Tensor,
        target: torch.Tensor,
    ) -> torch.Tensor:
        """Per-image loss (N,): l_pred CE(f(x~), c) + l_sparse mean|W + L| + l_smooth S(W)
        [+ l_delete * D(p_c(x * (1 - M) + dfill * M)), the deletion game, D = log p,
        -log(1 - p) or log(p + 1/K)]."""
        o = self.options
        k = len(grids) // 2 if self._separate else len(grids)
        logits = self._logit_map(grids[:k])  # W on the finest grid
        masks = self.masks_from_logits(logits, x.shape[-2:])  # (N, 1, H, W)
        n = x.shape[0]
        kept = x * masks + fill * (1 - masks)  # (N, C, H, W): paper's x~
        dmasks = masks
        if self._separate:  # the deletion game's own mask, with its own sparsity term
            dlogits = self._logit_map(grids[k:])
            dmasks = self.masks_from_logits(dlogits, x.shape[-2:])
        if o.l_delete > 0:
            deleted = x * (1 - dmasks) + dfill * dmasks  # the mask's region removed
            out = self.model(torch.cat([kept, deleted]))  # (2N, K); eval mode: per image
            out, out_del = out[:n], out[n:]
        else:
            out = self.model(kept)
        ce = F.cross_entropy(out, target, reduction="none")
        loss = self._add_prior(o.l_pred * ce, logits, masks)
        if self._separate:
            loss = self._add_prior(loss, dlogits, dmasks)
        if o.l_delete > 0:
            if o.delete_objective == "log-prob":
                d = -F.cross_entropy(out_del, target, reduction="none")  # log p_c, minimised
            elif o.delete_objective == "above-chance":
                # log(p_c + 1/K): like log p_c above chance, flat once p_c is well below it
                log_p = -F.cross_entropy(out_del, target, reduction="none")
                d = torch.logaddexp(log_p, torch.full_like(log_p, -math.log(out_del.shape[1])))
            else:
                d = _neg_log_not(out_del, target)  # -log(1 - p_c): saturates once p_c ~ 0
            loss = loss + o.l_delete * d
        return loss


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


def _neg_log_not(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log(1 - softmax(logits)_c) per row, computed stably as
    logsumexp(all) - logsumexp(all but c)."""
    others = logits.scatter(1, target[:, None], -math.inf)  # (N, K)
    return torch.logsumexp(logits, 1) - torch.logsumexp(others, 1)


def _smoothness(logits: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "tv":
        dx = (logits[..., :, 1:] - logits[..., :, :-1]).abs().flatten(1)
        dy = (logits[..., 1:, :] - logits[..., :-1, :]).abs().flatten(1)
        return (dx.sum(1) + dy.sum(1)) / max(1, dx.shape[1] + dy.shape[1])
    kernel = torch.full((1, 1, 3, 3), -1.0, device=logits.device, dtype=logits.dtype)
    kernel[0, 0, 1, 1] = 8.0
    lap = F.conv2d(F.pad(logits, (1, 1, 1, 1), mode="replicate"), kernel)
    return lap.pow(2).flatten(1).mean(1)


def _optimizer(name: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.SGD(params, lr=lr)


def _is_fill(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or v in FILLS


def _validate(o: NeuroMaskOptions) -> None:
    if not (isinstance(o.fill, (int, float)) and not isinstance(o.fill, bool)) and (
        o.fill not in FILLS
    ):
        raise ConfigError(f"fill must be one of {', '.join(FILLS)} or a number, got {o.fill!r}")
    if o.delete_fill is not None and not _is_fill(o.delete_fill):
        raise ConfigError(
            f"delete_fill must be None, one of {', '.join(FILLS)} or a number, "
            f"got {o.delete_fill!r}"
        )
    if o.smoothness not in SMOOTHNESS:
        raise ConfigError(
            f"smoothness must be one of {', '.join(SMOOTHNESS)}, got {o.smoothness!r}"
        )
    if o.sparsity not in SPARSITY:
        raise ConfigError(f"sparsity must be one of {', '.join(SPARSITY)}, got {o.sparsity!r}")
    if o.delete_objective not in DELETE_OBJECTIVES:
        raise ConfigError(
            f"delete_objective must be one of {', '.join(DELETE_OBJECTIVES)}, "
            f"got {o.delete_objective!r}"
        )
    if o.delete_mask not in DELETE_MASKS:
        raise ConfigError(
            f"delete_mask must be one of {', '.join(DELETE_MASKS)}, got {o.delete_mask!r}"
        )
    if o.optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {o.optimizer!r}")
    if o.init != "uniform" and not isinstance(o.init, (int, float)):
        raise ConfigError(f"init must be 'uniform' or a number, got {o.init!r}")
    checks = {
        "temperature": o.temperature > 0,
        "lr": o.lr > 0,
        "iterations": o.iterations >= 1,
        "patience": o.patience >= 0,
        "logit_bound": o.logit_bound > 0,
        "mask_scale": o.mask_scale >= 1,
        "pyramid": isinstance(o.pyramid, int)
        and not isinstance(o.pyramid, bool)
        and o.pyramid >= 1,
        "mask_size": o.mask_size is None or o.mask_size >= 1,
        "l_pred": o.l_pred >= 0,
        "l_sparse": o.l_sparse >= 0,
        "l_smooth": o.l_smooth >= 0,
        "l_delete": o.l_delete >= 0,
        "smooth_map": o.smooth_map >= 0,
    }
    for key, ok in checks.items():
        if not ok:
            raise ConfigError(f"NeuroMask option {key}={getattr(o, key)!r} is out of range")
    for key in ("l_pred", "l_sparse", "l_smooth", "l_delete", "lr", "temperature"):
        if not math.isfinite(float(getattr(o, key))):
            raise DataError(f"NeuroMask option {key} must be finite")


@EXPLAINERS.register("neuromask-reference", help="NeuroMask with the paper's settings (slow)")
def neuromask_reference(model: nn.Module, **options: Any) -> NeuroMask:
    """NeuroMask with ``preset="reference"`` (2000 RMSprop steps, one image at a time)."""
    return NeuroMask(model, preset="reference", **options)
