"""What network decoupling does once training ends and reports at evaluation: whether the
sparsity budget (``sparsity_target``, ours, not the paper's) held, the optional BatchNorm
re-estimation under the hard gates, and the run metrics (calculation paths, FLOPs, latency).

Li, Ji, Lin, Zhang, Yan, Wu, Huang, Shao, "Interpretable Neural Network Decoupling", ECCV 2020
(arXiv 1906.01166). Specification: shared/methods/decoupling.md. These are methods of
:class:`pellucid.methods.decoupling.Decoupling`, which mixes :class:`DecouplingEvaluation` in
and re-exports ``BUDGET_TOLERANCE``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch

from pellucid.data.base import Batch
from pellucid.errors import ConfigError
from pellucid.methods.controllers import recalibrate_batchnorm

BUDGET_TOLERANCE = 0.02  # sparsity term above sparsity_target at the end: the budget missed


def _fraction_or_none(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = float("nan")
    if isinstance(value, bool) or not 0.0 < out <= 1.0:
        raise ConfigError(f"decoupling: {name} must be a number in (0, 1] or None, got {value!r}")
    return out


class DecouplingEvaluation:
    """End of training and evaluation of :class:`~pellucid.methods.decoupling.Decoupling` (a
    mixin: they use its attributes ``model``, ``num_classes``, ``sparsity_target``,
    ``_sparse_ema``, ``lambda_sparse``, ``calibration_batches``, ``eval_images`` and
    ``latency_images``)."""

    def on_train_end(self, batches: Iterable[Batch]) -> bool:
        """Re-estimate the BatchNorm statistics under the hard (inference) gates.

        During training every layer sees inputs computed with the noisy ISH gates of the
        layers before it (and, while fine-tuning, with gates that keep changing), so the
        running means and variances describe neither the trained nor the inference path.

        With a ``sparsity_target``, warns when the training batches' sparsity term (a moving
        average over the last ~20 steps) ended above the budget: the budget did not bind,
        and the run trained as with the plain penalty (see ``sparsity_target``).
        """
        target = self.sparsity_target
        status = self.budget_status()
        ema = status.get("sparsity_term_end")
        if target is not None and ema is not None and not status["budget_reached"]:
            warnings.warn(
                f"decoupling: the sparsity term ended at {ema:.3f}, above sparsity_target "
                f"{target:g}: the budget did not bind, so the run trained as with the plain "
                f"penalty; raise lambda_sparse (now {self.lambda_sparse:g}) to hold it",
                stacklevel=2,
            )
        if self.calibration_batches == 0:
            return False
        recalibrate_batchnorm(self.model, batches, self.calibration_batches)
        return True

    def budget_status(self) -> dict[str, Any]:
        """With a ``sparsity_target`` and after training steps: ``sparsity_term_end``, the
        moving average of the batches' sparsity term over the last ~20 steps, and
        ``budget_reached``, whether it ended within ``BUDGET_TOLERANCE`` of the target.
        Empty otherwise (no budget, or a run loaded for evaluation only)."""
        if self.sparsity_target is None or self._sparse_ema is None:
            return {}
        ema = float(self._sparse_ema)
        return {
            "sparsity_term_end": round(ema, 4),
            "budget_reached": ema <= self.sparsity_target + BUDGET_TOLERANCE,
        }

    # -- evaluation -------------------------------------------------------------------
    def run_metrics(self, data: Any, device: torch.device) -> dict[str, Any]:
        """Path figures (active fraction, intra/inter-class Jaccard of the deep layers) on up
        to ``eval_images`` test images, mean FLOPs ratio, and batch-1 CPU latency ratio of
        the sparse execution on ``latency_images`` of them (our own backbones only)."""
        from pellucid.apps.acceleration import acceleration_metrics
        from pellucid.metrics.paths import calculation_paths, path_summary

        model = self.inference_model()
        paths = calculation_paths(model, data, device, max_images=self.eval_images)
        out = path_summary(paths, self.num_classes)
        out.update(acceleration_metrics(model, paths, data, self.latency_images))
        out.update(self.budget_status())  # budget_reached goes to metrics.json after training
        return out
