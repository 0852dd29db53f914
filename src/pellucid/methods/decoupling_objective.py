"""The training objective of network decoupling (decoupling.md, "Objective"): the MI lower
bound, the alignment and sparsity losses, the distillation from the dense network (ours, not
the paper's) and the step that adds them up.

Li, Ji, Lin, Zhang, Yan, Wu, Huang, Shao, "Interpretable Neural Network Decoupling", ECCV 2020
(arXiv 1906.01166). Specification: shared/methods/decoupling.md. These are methods of
:class:`pellucid.methods.decoupling.Decoupling`, which mixes :class:`DecouplingObjective` in.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from pellucid.data.base import Batch
from pellucid.methods.base import StepResult
from pellucid.methods.controllers import remove_controllers


class DecouplingObjective:
    """The losses and the step of :class:`~pellucid.methods.decoupling.Decoupling` (a mixin:
    they use its attributes ``model``, ``mi_heads``, ``_controllers``, ``_teacher``,
    ``_sparse_ema`` and the loss options)."""

    # -- losses (decoupling.md, "Objective") --------------------------------------------
    def mi_loss(self, gates: Sequence[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """sum_l CE(W_l a_l, y): a variational lower bound of I(a_l; y) up to constants."""
        return sum(F.cross_entropy(h(a), y) for h, a in zip(self.mi_heads, gates, strict=True))

    @staticmethod
    def align_loss(gates: Sequence[torch.Tensor], pooled: Sequence[torch.Tensor]) -> torch.Tensor:
        """sum_l KL(softmax(o_l) || softmax(a_l)), batch mean: gates follow channel energy."""
        return sum(
            F.kl_div(
                F.log_softmax(a, 1), F.log_softmax(o, 1), log_target=True, reduction="batchmean"
            )
            for a, o in zip(gates, pooled, strict=True)
        )

    @staticmethod
    def sparsity_loss(
        gates: Sequence[torch.Tensor], costs: Sequence[float] | None = None
    ) -> torch.Tensor:
        """sum_l c_l sum_{n,k} a_l[n, k] / (N sum_l c_l K_l): a weighted L1 norm of the
        gates; c_l = 1 (the mean gate) unless per-filter ``costs`` are given."""
        if costs is None:
            return torch.cat([a.flatten() for a in gates]).mean()
        total = sum(c * a.shape[1] for c, a in zip(costs, gates, strict=True))
        return sum(c * a.sum(1).mean() for c, a in zip(costs, gates, strict=True)) / total

    def step(self, batch: Batch) -> StepResult:
        """The loss of decoupling.md, "Objective", on one batch: CE + lambda_mi MI + lambda_align
        alignment + lambda_sparse sparsity (its hinge above ``sparsity_target`` when set), plus
        lambda_distill distillation in training. Logits (N, C) are the gated model's; the term
        ``active`` is the fraction of gate logits > 0 (the gates open at inference)."""
        x, y = batch.image, batch.label
        if self.lambda_distill > 0 and self.training and self._teacher is None:
            self._take_teacher()  # before this step's forward updates the norms' statistics
        logits = self.model(x)  # (N, C); the controllers now hold this batch's gates
        gates = [c.gate for c in self._controllers]  # each (N, K_l)
        pooled = [c.pre_gate for c in self._controllers]  # each (N, K_l)
        ce = F.cross_entropy(logits, y)
        mi = self.mi_loss(gates, y)
        if self.detach_features:
            pooled = [o.detach() for o in pooled]
        align = self.align_loss(gates, pooled)
        costs = [c.filter_cost for c in self._controllers] if self.sparsity == "flops" else None
        sparse = self.sparsity_loss(gates, costs)
        over = sparse if self.sparsity_target is None else F.relu(sparse - self.sparsity_target)
        if self.sparsity_target is not None and self.training:  # a tensor: no device sync
            value, ema = sparse.detach(), self._sparse_ema
            self._sparse_ema = value if ema is None else 0.95 * ema + 0.05 * value
        loss = ce + self.lambda_mi * mi + self.lambda_align * align + self.lambda_sparse * over
        if self.lambda_distill > 0 and self.training:
            distill = self.distill_loss(x, logits)
            loss = loss + self.lambda_distill * distill
        active = torch.cat([(c.logits.detach() > 0).flatten() for c in self._controllers])
        terms = {
            "ce": ce,
            "mi": mi,
            "align": align,
            "gate_l1": sparse,
            "active": active.float().mean(),
        }
        if self.lambda_distill > 0 and self.training:
            terms["distill"] = distill
        return StepResult(loss, logits, terms)

    def _take_teacher(self) -> None:
        """Freeze a copy of the model without its controllers: the dense network."""
        teacher = copy.deepcopy(self.model)
        remove_controllers(teacher)
        teacher.eval().requires_grad_(False)
        self.__dict__["_teacher"] = teacher

    def distill_loss(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """KL(softmax(teacher(x)) || softmax(logits)), batch mean; the teacher (the dense
        network) is copied from the model on the first call."""
        if self._teacher is None:
            self._take_teacher()
        with torch.no_grad():
            target = F.log_softmax(self._teacher(x), 1)
        return F.kl_div(F.log_softmax(logits, 1), target, log_target=True, reduction="batchmean")
