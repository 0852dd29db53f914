"""The training step of ICNN: the forward pass that keeps the pre-mask maps (and calibrates
the mask gain), the filter categories, the target templates and the loss
``CE + lambda * sum_f Loss_f``.

Zhang, Wu, Zhu, "Interpretable Convolutional Neural Networks", CVPR 2018 (arXiv 1710.00935v4).
Specification: shared/methods/icnn.md, "Loss" and "Filter categories". These are methods of
:class:`pellucid.methods.icnn.ICNN`, which mixes :class:`ICNNStep` in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pellucid.data.base import Batch
from pellucid.errors import ConfigError
from pellucid.hooks import edit_output
from pellucid.methods.base import StepResult


class ICNNStep:
    """The per-batch methods of :class:`~pellucid.methods.icnn.ICNN` (a mixin: they use its
    attributes ``model``, ``layer``, ``icnn``, ``_net``, ``filter_loss``, the options and the
    category buffers)."""

    # -- forward ----------------------------------------------------------------------------
    def _forward(
        self, x: torch.Tensor, calibrate: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pre-mask maps (N, K, h, w), logits (N, C)) of the ICNN network; ``calibrate``
        sets the mask gain from this batch's pre-mask maps before they are masked."""
        m, layer = self.model, self.layer

        def mask(pre: torch.Tensor) -> torch.Tensor:
            if calibrate:
                self.icnn.mask.calibrate(pre.detach())
            return self.icnn.mask(pre)

        if self._net.staged:
            pre = self.icnn.features(m.forward_to(x, layer))  # (N, K, h, w)
            return pre, m.forward_from(mask(pre), layer)
        store: dict[str, torch.Tensor] = {}

        def edit(h: torch.Tensor) -> torch.Tensor:
            store["pre"] = self.icnn.features(h)
            return mask(store["pre"])

        with edit_output(m, layer, edit):
            logits = m(x)
        if "pre" not in store:
            raise ConfigError(f"icnn: layer {layer!r} is not used in the model's forward pass")
        return store["pre"], logits

    @torch.no_grad()
    def _update_categories(self, pre: torch.Tensor, y: torch.Tensor) -> None:
        """EMA of each filter's mean activation per class; category = argmax over classes.
        Under torchrun the means are the global batch's (every process gets the same)."""
        if self.target_class is not None:
            return
        from pellucid.training.distributed import group_sum

        pooled = pre.mean(dim=(2, 3)).float()  # (N, K)
        onehot = F.one_hot(y, self.num_classes).float()  # (N, C)
        counts = group_sum(onehot.sum(0))  # (C,), over every process's images under torchrun
        means = group_sum(onehot.T @ pooled) / counts.clamp_min(1)[:, None]  # (C, K)
        present = counts > 0
        first = present & (self.class_count == 0)
        again = present & (self.class_count > 0)
        m = self.category_momentum
        self.class_mean[first] = means[first]
        self.class_mean[again] = m * self.class_mean[again] + (1 - m) * means[again]
        self.class_count += present.long()
        seen = (self.class_count > 0)[:, None]  # (C, 1)
        self.category.copy_(self.class_mean.masked_fill(~seen, -torch.inf).argmax(0))

    def targets(self, pre: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N, K) index of each map's target template: its peak mu^ for images of the
        filter's category, the negative template (last) otherwise."""
        n, k, h, w = pre.shape
        peak = pre.detach().flatten(2).argmax(-1)  # (N, K)
        own = y[:, None] == self.category[None, :]  # (N, K)
        return torch.where(own, peak, torch.full_like(peak, h * w))

    def step(self, batch: Batch) -> StepResult:
        """``CE + lambda * sum_f Loss_f`` (icnn.md, "Loss") on one batch, with the target
        templates when ``approximation``; in training it also calibrates an uncalibrated mask
        gain (``calibrate_gain``), updates the filter categories and the running Z_T.
        ``plain``: CE alone."""
        x, y = batch.image, batch.label
        calibrate = (
            self.training
            and self.calibrate_gain
            and not self.plain
            and not bool(self.icnn.mask.calibrated)
        )
        pre, logits = self._forward(x, calibrate)
        ce = F.cross_entropy(logits, y)
        if self.plain:
            return StepResult(ce, logits, {"ce": ce})
        if self.training:
            self._update_categories(pre.detach(), y)
        target = self.targets(pre, y) if self.approximation else None
        loss_f = self.filter_loss(pre, target, update=self.training)  # (K,)
        total = loss_f.sum()
        terms = {"ce": ce, "filter_loss": total, "filter_mi_mean": -loss_f.detach().mean()}
        return StepResult(ce + self.lambda_ * total, logits, terms)
