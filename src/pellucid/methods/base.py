"""The method abstraction: an interpretable-by-design training objective around a model.

A method wraps a backbone and implements one thing, :meth:`Method.step`, which turns a batch
into a :class:`StepResult` (loss, logits and named loss terms). Whatever it must do after an
optimiser step (e.g. projecting gates) goes in :meth:`Method.after_optimizer_step`, whatever
it must do once training is over in :meth:`Method.on_train_end`; the training loop calls
these hooks and knows nothing else about the method.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pellucid.data.base import Batch


@dataclass
class StepResult:
    """What a method returns for one batch.

    loss   : scalar tensor to back-propagate.
    logits : (N, C) logits of the inference path (used for accuracy).
    terms  : named scalar loss terms for logging (detached by the loop).
    """

    loss: torch.Tensor
    logits: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class Method(nn.Module):
    """Base class: holds ``self.model`` (the backbone) and any extra parameters/buffers.

    Subclasses implement :meth:`step`. ``state_dict`` entries outside ``model.`` are the
    method's own state (e.g. a gate matrix) and are saved with the run.
    """

    name: str = "base"
    #: Whether some parameters may get no gradient in a step (e.g. a path used only in some
    #: epochs); multi-process training then has DDP look for them after every backward.
    unused_parameters: bool = False

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes

    def step(self, batch: Batch) -> StepResult:  # pragma: no cover - abstract
        """Loss, inference-path logits (N, C) and named terms for one batch (subclasses)."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> StepResult:
        """:meth:`step`, so that ``method(batch)`` (and a DDP wrapper around it) runs it."""
        return self.step(batch)

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the loop before each training epoch (0-based)."""

    def after_optimizer_step(self) -> None:
        """Called by the loop after every optimiser step."""

    def on_train_end(self, batches: Iterable[Batch]) -> bool:
        """Called by the loop once after the last epoch, with the training loader (no
        augmentation), e.g. to re-estimate statistics under the inference path.

        Returns True when it changed the method's state (the loop then re-saves the
        checkpoint).
        """
        return False

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups; override to give method parameters their own lr."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def inference_model(self) -> nn.Module:
        """The network that predicts at test time (what ``load_run`` returns)."""
        return self.model

    def method_state(self) -> dict[str, torch.Tensor]:
        """The method's own tensors (everything in state_dict outside the model)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("model.")}

    def load_method_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load tensors saved by :meth:`method_state`, keeping the model's weights; a
        :class:`DataError` naming the method's own tensors that are missing and the unknown
        ones."""
        own = self.method_state()
        missing, extra = set(own) - set(state), set(state) - set(own)
        if missing or extra:
            from pellucid.errors import DataError

            what = [f"lacks {', '.join(sorted(missing))}"] if missing else []
            what += [f"has unknown {', '.join(sorted(extra))}"] if extra else []
            raise DataError(f"method state {' and '.join(what)}")
        self.load_state_dict({**self.state_dict(), **state})

    def analysis_layer(self) -> str:
        """The layer whose filters the run's filter metrics (MIS, ...) describe."""
        from pellucid.models import default_layer

        return default_layer(self.inference_model())

    def run_metrics(self, data: Any, device: torch.device) -> dict[str, float]:
        """Method-specific figures added to ``metrics.json`` by ``pellucid evaluate``."""
        return {}
