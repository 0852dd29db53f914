"""The NeuroMask explainer: per image, optimise mask logits W so that the masked image keeps
the class while the mask stays small (Alzantot et al. 2019; ``shared/methods/neuromask.md``).
The options and their evidence are documented in :class:`NeuroMaskOptions`."""

from __future__ import annotations

import warnings
from dataclasses import asdict, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pellucid.errors import ConfigError
from pellucid.explain.base import Explainer
from pellucid.explain.neuromask.objective import (
    EarlyStopping,
    add_prior,
    data_terms,
    make_optimizer,
    mask_grids,
    refine_masks,
    removal_fill,
)
from pellucid.explain.neuromask.options import PRESETS, NeuroMaskOptions
from pellucid.explain.neuromask.validation import areas, validate
from pellucid.registry import EXPLAINERS

RULED_OUT = 0.01  # target probability on the intact image below which explain() warns


@EXPLAINERS.register("neuromask", help="NeuroMask: learn the smallest smooth mask (ours)")
class NeuroMask(Explainer):
    """NeuroMask explainer (Alzantot et al. 2019).

    Parameters
    ----------
    model : nn.Module
        Classifier on pixel-space images in [0, 1].
    preset : {"default", "reference"}
        Starting values of the options; explicit options override them. ``reference`` is
        the paper's setting and also explains one image at a time (``batch_size=1``).
    batch_size : int, optional
        Images optimised together (default 64; 1 for ``reference``). An image's mask does
        not depend on its batch: the per-image losses are summed, never averaged, and the
        optimisers are element-wise.
    **options
        Any field of :class:`NeuroMaskOptions` (mask grid, fill, smoothness, loss weights,
        deletion game, temperature, optimiser, iterations, early stopping, seed), where each
        is documented with the measurements behind its default.

    Attributes
    ----------
    options : NeuroMaskOptions
        The resolved options.
    last_info : dict
        After :meth:`explain`: ``iterations`` (per image), ``probability`` of the target class
        on the masked image, ``target_probability`` on the intact image (a warning names the
        images where it is below ``RULED_OUT`` = 0.01: e.g. the true class of a misclassified
        image, where the maps are least reliable), ``area`` (mean mask value) and ``loss``;
        with several areas (``sparsity="area"``) the steps are summed over an image's areas
        and the rest averaged.
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
        if isinstance(self.options.refine_fills, list):  # e.g. from YAML on the command line
            self.options = replace(self.options, refine_fills=tuple(self.options.refine_fills))
        validate(self.options)
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
        """Masks (N, 1, H, W) in [0, 1] as :meth:`Explainer.explain`, not rescaled
        (``normalise = False``); also fills :attr:`last_info` and warns about the images whose
        target probability on the intact image is below ``RULED_OUT``."""
        self._info: list[dict[str, torch.Tensor]] = []
        masks = super().explain(inputs, target)
        self.last_info = {k: torch.cat([d[k] for d in self._info]) for k in self._info[0]}
        low = self.last_info["target_probability"] < RULED_OUT
        if bool(low.any()):
            idx = low.nonzero().squeeze(1).tolist()
            warnings.warn(
                f"NeuroMask: the model gives {len(idx)} of {len(low)} images' target class a "
                f"probability below {RULED_OUT} on the intact image (images {idx[:10]}"
                f"{' ...' if len(idx) > 10 else ''}); a mask that keeps evidence for a class "
                "the model all but rules out has little to find, so these maps are the least "
                "reliable (last_info['target_probability'] holds every image's value)",
                stacklevel=2,
            )
        return masks

    attribute = explain

    # ---------------------------------------------------------------- masks from logits
    def _grids(self, h: int, w: int) -> list[tuple[int, int]]:
        """The logit grids of an H x W image, coarsest first (:func:`mask_grids`)."""
        return mask_grids(self.options, h, w)

    def _fills(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What removed pixels become (N, C, H, W): for the kept image (``fill``) and for the
        deletion game (``delete_fill``, default the same)."""
        o = self.options
        fill = removal_fill(self.model, x, o.fill, o.blur_sigma)
        if o.delete_fill is None:
            return fill, fill
        return fill, removal_fill(self.model, x, o.delete_fill, o.blur_sigma)

    def _init_logits(self, n: int, gh: int, gw: int, device: torch.device) -> torch.Tensor:
        o = self.options
        if o.init == "uniform":
            g = torch.Generator().manual_seed(o.seed)
            w0 = (torch.rand(1, 1, gh, gw, generator=g) * 2 - 1) * o.logit_bound
        else:
            w0 = torch.full((1, 1, gh, gw), float(o.init))
        return w0.to(device).expand(n, 1, gh, gw).clone()

    def _parameters(
        self, n: int, grids: list[tuple[int, int]], device: torch.device
    ) -> list[torch.Tensor]:
        """The free logits: per mask, the coarsest grid holding the initial logits and the
        finer grids (a correction) starting at 0; the deletion game's own mask second."""
        logits = []
        for _ in range(2 if self._separate else 1):
            logits.append(self._init_logits(n, *grids[0], device).requires_grad_(True))
            logits += [
                torch.zeros(n, 1, gh, gw, device=device, requires_grad=True) for gh, gw in grids[1:]
            ]
        return logits

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

    # ------------------------------------------------------------------ the optimisation
    def _explain(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        maps = self._masks(inputs, target)
        if self.options.refine > 0:
            maps = self._refine(inputs, target, maps)
        return maps

    def _refine(self, x: torch.Tensor, target: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The masks refined at full resolution (``refine`` in :class:`NeuroMaskOptions`)."""
        fill, dfill = self._fills(x)
        return refine_masks(self.model, x, masks, target, fill, dfill, self.options)

    def _masks(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The optimised masks (N, 1, H, W), before the refinement: one optimisation, or
        with several areas the mean of one per area."""
        a = areas(self.options)
        if len(a) < 2:
            area = None if not a else torch.full((len(inputs),), a[0], device=inputs.device)
            return self._optimise(inputs, target, area)
        # one row per (image, area); an image's map is the mean of its masks
        k = len(a)
        rows = torch.tensor(a, device=inputs.device).repeat(len(inputs))  # (N * k,)
        maps = self._optimise(
            inputs.repeat_interleave(k, 0), target.repeat_interleave(k, 0), rows
        )  # (N * k, 1, H, W)
        info = self._info[-1]
        for key, v in info.items():  # per image: the sum of steps, the mean of the rest
            v = v.view(-1, k).to(torch.float64)
            info[key] = v.sum(1).long() if key == "iterations" else v.mean(1).float()
        return maps.view(len(inputs), k, *maps.shape[1:]).mean(1)

    def _optimise(
        self, inputs: torch.Tensor, target: torch.Tensor, area: torch.Tensor | None
    ) -> torch.Tensor:
        """The masks (N, 1, H, W) of one row each; ``area`` (N,): each row's area of the
        ranking constraint (``sparsity="area"``), else None."""
        o = self.options
        n, _, h, w = inputs.shape
        fill, dfill = self._fills(inputs)  # (N, C, H, W) each
        logits = self._parameters(n, self._grids(h, w), inputs.device)
        opt = make_optimizer(o.optimizer, logits, o.lr)
        stop = EarlyStopping(n, o.patience, o.tol, inputs.device)
        final = [g.detach().clone() for g in logits]  # each image's logits when it stopped
        for _ in range(o.iterations):
            idx = stop.active.nonzero().squeeze(1)
            with torch.enable_grad():
                per_image = self._loss(
                    [g[idx] for g in logits],
                    inputs[idx],
                    fill[idx],
                    dfill[idx],
                    target[idx],
                    None if area is None else area[idx],
                )
                opt.zero_grad(set_to_none=True)
                per_image.sum().backward()
            opt.step()
            with torch.no_grad():
                # frozen images keep their logits (the optimiser's momentum would move them)
                frozen = ~stop.active
                for g, f in zip(logits, final, strict=True):
                    g.data[frozen] = f[frozen]
                    f[idx] = g.data[idx]
                if not stop.update(idx, per_image.detach()):
                    break
        with torch.no_grad():
            masks = self._map(final, (h, w))  # (N, 1, H, W)
            probs = F.softmax(self.model(inputs * masks + fill * (1 - masks)), 1)  # (N, K)
            intact = F.softmax(self.model(inputs), 1)  # (N, K)
            self._info.append(
                {
                    "iterations": stop.steps.cpu(),
                    "probability": probs.gather(1, target[:, None])[:, 0].cpu(),
                    "target_probability": intact.gather(1, target[:, None])[:, 0].cpu(),
                    "area": masks.flatten(1).mean(1).cpu(),
                    "loss": self._loss(final, inputs, fill, dfill, target, area).cpu(),
                }
            )
        if o.smooth_map > 0:
            from pellucid.explain.baselines import blur

            # ranks the pixels outside the mask (logits all near -L) by their nearness to it
            masks = blur(masks, o.smooth_map)  # (N, 1, H, W)
        return masks

    def _loss(
        self,
        grids: list[torch.Tensor],
        x: torch.Tensor,
        fill: torch.Tensor,
        dfill: torch.Tensor,
        target: torch.Tensor,
        area: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-image loss (N,): l_pred CE(f(x~), c) + l_sparse mean|W + L| + l_smooth S(W)
        [+ l_delete * D(p_c(x * (1 - M) + dfill * M)), the deletion game, D = log p,
        -log(1 - p) or log(p + 1/K)]; with ``area`` (N,) the sparsity term is the ranking
        constraint at each row's area."""
        o = self.options
        k = len(grids) // 2 if self._separate else len(grids)
        logits = self._logit_map(grids[:k])  # W on the finest grid
        masks = self.masks_from_logits(logits, x.shape[-2:])  # (N, 1, H, W)
        dmasks = masks
        if self._separate:  # the deletion game's own mask, with its own sparsity term
            dlogits = self._logit_map(grids[k:])
            dmasks = self.masks_from_logits(dlogits, x.shape[-2:])
        ce, d = data_terms(self.model, x, masks, dmasks, fill, dfill, target, o)
        loss = add_prior(o, o.l_pred * ce, logits, masks, area)
        if self._separate:
            loss = add_prior(o, loss, dlogits, dmasks, area)
        if d is not None:
            loss = loss + o.l_delete * d
        return loss


@EXPLAINERS.register("neuromask-reference", help="NeuroMask with the paper's settings (slow)")
def neuromask_reference(model: nn.Module, **options: Any) -> NeuroMask:
    """NeuroMask with ``preset="reference"`` (2000 RMSprop steps, one image at a time)."""
    return NeuroMask(model, preset="reference", **options)
