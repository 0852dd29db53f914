"""Class-Specific Gates (CSG).

Liang et al., "Training Interpretable Convolutional Neural Networks by Differentiating
Class-specific Filters", ECCV 2020 (arXiv 2007.08194). Specification: shared/methods/csg.md.

A gate matrix G in [0, 1]^{C x K} assigns each of the K filters of one layer to classes. Two
paths share all weights: the STD path (the plain network, used at inference) and the CSG path,
in which the layer's maps are multiplied by the gates of the true class, A~_k = G[y, k] A_k.
Objective (csg.md, "Objective"):

    CE(y, STD logits) + lambda1 CE(y, CSG logits) + lambda2 max(0, ||G||_1 - g),
    g = density * C * K,   s.t. G in [0, 1], max_c G[c, k] = 1 (projection after each step).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pellucid.data.base import Batch
from pellucid.errors import ConfigError
from pellucid.hooks import edit_output
from pellucid.methods.base import Method, StepResult
from pellucid.models import default_layer, get_layer
from pellucid.models.base import GlobalPool, StagedNet
from pellucid.registry import METHODS

MODES = ("joint", "alternating")


def layer_channels(module: nn.Module, name: str | None = None) -> int:
    """Number of output channels of a conv layer or stage (its last BatchNorm2d / Conv2d);
    ``name`` (the layer's address in its model) names it in the error."""
    for m in reversed(list(module.modules())):
        if isinstance(m, nn.BatchNorm2d):
            return m.num_features
        if isinstance(m, nn.Conv2d):
            return m.out_channels
    what = f"{name!r} ({type(module).__name__})" if name else type(module).__name__
    raise ConfigError(
        f"layer {what} has no Conv2d/BatchNorm2d output to gate or to give templates: choose a "
        "convolution, a BatchNorm2d or a block that ends in one (`pellucid models MODEL` lists "
        "the layers)"
    )


@torch.no_grad()
def project_gates(gates: torch.Tensor, eps: float = 1e-8) -> None:
    """In place: scale each column so that its maximum is 1, then clamp to [0, 1]
    (csg.md: G[:, k] /= max(max_c G[c, k], eps))."""
    col_max = gates.max(dim=0, keepdim=True).values.clamp_min(eps)  # (1, K)
    gates.div_(col_max).clamp_(0.0, 1.0)


@METHODS.register("csg", help="Class-Specific Gates (Liang et al., ECCV 2020)")
class CSG(Method):
    """Class-Specific Gates around any model.

    Parameters
    ----------
    model : nn.Module
        The backbone; its predictions never use the gates.
    num_classes : int
    layer : str, optional
        Name of the gated layer; default the model's last conv stage (before pooling).
    density : float
        Target mean gate value; the hinge ``max(0, ||G||_1 - density C K)`` stops at it.
    lambda_csg : float
        Weight lambda1 of the CSG-path cross-entropy.
    lambda_sparse : float
        Weight lambda2 of the L1 hinge on G.
    mode : {"joint", "alternating"}
        joint: both losses every step. alternating: ``warmup_epochs`` of STD training, then
        whole epochs following ``pattern`` ("S" = STD epoch, "G" = gated epoch).
    gated_only : bool
        In alternating mode, gated epochs use only the CSG loss (+ sparsity), as the
        reference code does; otherwise they add the STD loss.
    gate_optimizer : {"adam", "sgd", "same"}
        Optimiser of G. "adam" (default) moves every gate at a rate set by ``gate_lr``
        whatever the gradient's scale, which the tiny L1 weight (1e-3) needs; "same" uses
        the backbone's optimiser and schedule. G never has weight decay.
    gate_lr : float
        Learning rate of G (constant).
    """

    name = "csg"

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        layer: str | None = None,
        density: float = 0.2,
        lambda_csg: float = 1.0,
        lambda_sparse: float = 1e-3,
        mode: str = "joint",
        warmup_epochs: int = 1,
        pattern: str = "SSG",
        gated_only: bool = True,
        gate_optimizer: str = "adam",
        gate_lr: float = 0.01,
    ) -> None:
        super().__init__(model, num_classes)
        if mode not in MODES:
            raise ConfigError(f"csg: unknown mode {mode!r}; choose from: {', '.join(MODES)}")
        if not 0 < density <= 1:
            raise ConfigError(f"csg: density must lie in (0, 1], got {density}")
        if not pattern or set(pattern) - {"S", "G"}:
            raise ConfigError(f"csg: pattern must be made of 'S' and 'G', got {pattern!r}")
        for key, value, low in (
            ("lambda_csg", lambda_csg, 0.0),
            ("lambda_sparse", lambda_sparse, 0.0),
            ("gate_lr", gate_lr, 0.0),
        ):
            bad = isinstance(value, bool) or not isinstance(value, (int, float))
            if bad or not low <= value < math.inf or (key == "gate_lr" and value == 0):
                what = "> 0" if key == "gate_lr" else ">= 0"
                raise ConfigError(f"csg: {key} must be a finite number {what}, got {value!r}")
        warmup = warmup_epochs
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ConfigError(f"csg: warmup_epochs must be an integer >= 0, got {warmup_epochs!r}")
        self.layer = layer or default_layer(model)
        k = layer_channels(get_layer(model, self.layer), self.layer)
        self.gates = nn.Parameter(torch.full((num_classes, k), 0.5))  # (C, K)
        self.density, self.lambda_csg, self.lambda_sparse = density, lambda_csg, lambda_sparse
        self.mode, self.warmup_epochs, self.pattern = mode, warmup_epochs, pattern
        if gate_optimizer not in ("adam", "sgd", "same"):
            raise ConfigError(f"csg: gate_optimizer must be adam, sgd or same: {gate_optimizer!r}")
        self.gated_only, self.gate_optimizer, self.gate_lr = gated_only, gate_optimizer, gate_lr
        self.phase = "joint" if mode == "joint" else "std"
        self._route = self._choose_route()

    # -- where the gate sits ------------------------------------------------------------
    def _choose_route(self) -> str:
        """``shared``: gate right before GAP + linear head, one forward serves both paths;
        ``split``: a top-level stage of a StagedNet, only the later stages run twice;
        ``hook``: any other layer, a second full forward with the output edited."""
        m = self.model
        if isinstance(m, StagedNet) and self.layer in m.stage_names:
            after = m.stage_names[m.stage_names.index(self.layer) + 1 :]
            if after == ["pool", "fc"] and isinstance(m.pool, GlobalPool):
                return "shared"
            return "split"
        return "hook"

    def _paths(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(STD logits, CSG logits), each (N, C)."""
        # index_select, not gates[y]: the backward of advanced indexing accumulates in a
        # nondeterministic order on CPU, and CSG training was then not reproducible
        g = self.gates.index_select(0, y)  # (N, K)
        m = self.model
        if self._route == "shared":
            h = m.forward_to(x, self.layer)  # (N, K, H, W)
            pooled = m.pool(h)  # (N, K)
            return m.fc(pooled), m.fc(g * pooled)  # GAP is linear: fc(GAP(G A)) = fc(G GAP(A))
        if self._route == "split":
            h = m.forward_to(x, self.layer)
            return m.forward_from(h, self.layer), m.forward_from(
                h * g[:, :, None, None], self.layer
            )
        std = m(x)
        with edit_output(m, self.layer, lambda out: out * g[:, :, None, None]):
            gated = m(x)
        return std, gated

    # -- Method API -------------------------------------------------------------------
    @property
    def unused_parameters(self) -> bool:  # type: ignore[override]
        """The STD epochs of alternating mode leave G without a gradient."""
        return self.mode == "alternating"

    def on_epoch_start(self, epoch: int) -> None:
        """Alternating mode: the epoch's phase, ``std`` for ``warmup_epochs``, then as
        ``pattern`` says ("G" = gated); joint mode stays ``joint``."""
        if self.mode == "alternating":
            if epoch < self.warmup_epochs:
                self.phase = "std"
            else:
                slot = self.pattern[(epoch - self.warmup_epochs) % len(self.pattern)]
                self.phase = "gated" if slot == "G" else "std"

    def sparsity(self) -> torch.Tensor:
        """lambda2-free hinge max(0, ||G||_1 - density C K)."""
        target = self.density * self.gates.numel()
        return torch.relu(self.gates.abs().sum() - target)

    def step(self, batch: Batch) -> StepResult:
        """The objective of csg.md, "Objective" (module docstring), on one batch; an ``std``
        phase is the STD cross-entropy alone, a ``gated`` one leaves out the STD term when
        ``gated_only``. The logits (N, C) are the STD path's."""
        x, y = batch.image, batch.label
        if self.phase == "std":
            logits = self.model(x)
            ce = F.cross_entropy(logits, y)
            return StepResult(ce, logits, {"ce_std": ce})
        std_logits, csg_logits = self._paths(x, y)
        ce_std = F.cross_entropy(std_logits, y)
        ce_csg = F.cross_entropy(csg_logits, y)
        sparse = self.sparsity()
        loss = self.lambda_csg * ce_csg + self.lambda_sparse * sparse
        if not (self.phase == "gated" and self.gated_only):
            loss = loss + ce_std
        terms = {
            "ce_std": ce_std,
            "ce_csg": ce_csg,
            "gate_l1": sparse,
            "gate_density": self.gates.detach().mean(),
        }
        return StepResult(loss, std_logits, terms)

    def after_optimizer_step(self) -> None:
        """Project G onto its constraints (:func:`project_gates`): column max 1, in [0, 1]."""
        project_gates(self.gates.data)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """The backbone's trainable parameters, then G alone without weight decay (with its
        own optimiser and ``gate_lr`` unless ``gate_optimizer="same"``)."""
        backbone = [p for p in self.model.parameters() if p.requires_grad]
        gate_group: dict[str, Any] = {"params": [self.gates], "weight_decay": 0.0}
        if self.gate_optimizer != "same":
            gate_group.update(optimizer=self.gate_optimizer, lr=self.gate_lr)
        return [{"params": backbone}, gate_group]

    def analysis_layer(self) -> str:
        """The gated layer (``layer``)."""
        return self.layer

    def run_metrics(self, data: Any, device: torch.device) -> dict[str, float]:
        """``gate_density`` and ``gate_overlap`` of G (:mod:`pellucid.metrics.gates`)."""
        from pellucid.metrics.gates import gate_density, gate_overlap

        return {"gate_density": gate_density(self.gates), "gate_overlap": gate_overlap(self.gates)}
