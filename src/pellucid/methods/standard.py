"""Standard training: plain cross-entropy on the backbone's logits (the baseline)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from pellucid.data.base import Batch
from pellucid.errors import ConfigError
from pellucid.methods.base import Method, StepResult
from pellucid.registry import METHODS


@METHODS.register("standard", help="plain cross-entropy training (the baseline)")
class Standard(Method):
    """Cross-entropy on the model's logits; ``label_smoothing`` optional."""

    name = "standard"

    def __init__(self, model: nn.Module, num_classes: int, label_smoothing: float = 0.0) -> None:
        super().__init__(model, num_classes)
        ok = isinstance(label_smoothing, (int, float)) and not isinstance(label_smoothing, bool)
        if not ok or not 0 <= label_smoothing < 1:
            raise ConfigError(f"label_smoothing must lie in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def step(self, batch: Batch) -> StepResult:
        """Cross-entropy (with ``label_smoothing``) on the model's logits (N, C)."""
        logits = self.model(batch.image)  # (N, C)
        loss = F.cross_entropy(logits, batch.label, label_smoothing=self.label_smoothing)
        return StepResult(loss, logits, {"ce": loss})
