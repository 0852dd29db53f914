"""Interpretable Neural Network Decoupling.

Li, Ji, Lin, Zhang, Yan, Wu, Huang, Shao, "Interpretable Neural Network Decoupling", ECCV 2020
(arXiv 1906.01166). Specification: shared/methods/decoupling.md.

Before every convolution but the first, an *architecture controlling module* looks at the
layer's input and decides which of the layer's output channels are kept (decoupling.md,
"Architecture controlling module")::

    y_l = FC2(ReLU(FC1(GAP(x_l))))        FC1: C_in -> C_in / 4, FC2: -> C_out
    a_l = ISH(y_l) in {0, 1}^{C_out}      layer output = a_l * BN(conv(x_l)), channel-wise

The binary vectors of all layers, concatenated, are the input's *calculation path*. Training
(decoupling.md, "Objective")::

    L = CE(f(x), y) + lambda_mi sum_l CE(W_l a_l, y)            MI lower bound, bias-free W_l
                    + lambda_align sum_l KL(softmax(o_l) || softmax(a_l))   o_l = GAP(pre-gate)
                    + lambda_sparse mean_{l, n, k} a_l[n, k]                 L1 of the gates

The controllers, their reversible insertion and the gate readers live in
:mod:`pellucid.methods.controllers` (re-exported here); the losses and the step in
:mod:`pellucid.methods.decoupling_objective`; the budget check, BatchNorm re-estimation and
run metrics in :mod:`pellucid.methods.decoupling_eval`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pellucid.errors import ConfigError
from pellucid.methods.base import Method
from pellucid.methods.controllers import (
    SHORTCUT_NAMES,
    ArchitectureController,
    ControlledConv2d,
    GatedBatchNorm2d,
    decoupled,
    gated_layers,
    insert_controllers,
    last_gates,
    recalibrate_batchnorm,
    remove_controllers,
    semantic_hash,
)
from pellucid.methods.decoupling_eval import (
    BUDGET_TOLERANCE,
    DecouplingEvaluation,
    _fraction_or_none,
)
from pellucid.methods.decoupling_objective import DecouplingObjective
from pellucid.registry import METHODS

__all__ = [
    "BUDGET_TOLERANCE",
    "SHORTCUT_NAMES",
    "ArchitectureController",
    "ControlledConv2d",
    "Decoupling",
    "GatedBatchNorm2d",
    "decoupled",
    "gated_layers",
    "insert_controllers",
    "last_gates",
    "recalibrate_batchnorm",
    "remove_controllers",
    "semantic_hash",
]


def _check(name: str, value: float, low: float = 0.0) -> float:
    if not low <= value < math.inf:  # also rejects NaN
        raise ConfigError(f"decoupling: {name} must be a finite number >= {low}, got {value}")
    return float(value)


@METHODS.register(
    "decoupling", help="Interpretable Neural Network Decoupling (Li et al., ECCV 2020)"
)
class Decoupling(DecouplingObjective, DecouplingEvaluation, Method):
    """Network decoupling: per-input calculation paths chosen by architecture controlling
    modules, trained with the MI, alignment and sparsity losses of decoupling.md.

    The controllers are inserted into ``model`` in place (see :func:`insert_controllers`);
    :meth:`remove` restores the plain model. Backbone parameter names are unchanged, so
    ``--init RUN`` from a standard run loads into the decoupled model (controllers keep their
    open-gate initialisation).

    Parameters
    ----------
    model : nn.Module
        Our ``convnet``, ``vgg``, ``resnet8/20`` or a torchvision ResNet/VGG (``tv:NAME``);
        any model whose convs are plain ``Conv2d`` (each optionally followed by a
        ``BatchNorm2d``) can be gated, the sparse execution supports our own backbones.
    num_classes : int
    lambda_mi : float
        Weight of the MI lower bound sum_l CE(W_l a_l, y) (paper, ResNet-56: 0.005).
    lambda_align : float
        Weight of sum_l KL(softmax(o_l) || softmax(a_l)) (paper: 1).
    lambda_sparse : float
        Weight of the sparsity loss, a weighted mean of the gates over layers, images and
        filters (see ``sparsity``). With ``sparsity="l1"`` it is the paper's
        sum_l mean_n ||a_l||_1 divided by the number of gated filters, so that one weight
        suits networks of any width: the paper's 1e-4 on ResNet-56 (2,016 gated filters)
        is 0.2 here.
    reduction : int
        Controller hidden width C_in // reduction (paper: 4).
    init_bias : float
        Initial gate logit (> 0: gates start open, also under the training noise).
    exclude : sequence of str
        Module names whose convs are not gated (projection shortcuts).
    sparsity : {"l1", "flops"}
        "l1": every filter's gate counts alike (decoupling.md). "flops": each filter's gate
        is weighted by the filter's dense multiply-accumulates per image
        (C_in k_h k_w H_out W_out), so that the loss is the expected fraction of the gated
        convs' output-side FLOPs that is kept.
    controller_optimizer : {"adam", "sgd", "same"}
        Optimiser of the controllers and MI classifiers (constant ``controller_lr``, no
        weight decay); "same" uses the run's optimiser and schedule. Adam lets the gates
        move within a few fine-tuning epochs, whatever the scale of their gradients.
    controller_lr : float
    eval_images, latency_images : int
        Test images used by :meth:`run_metrics` for paths and FLOPs, and for the batch-1
        latency (0 skips the latency measurement).
    detach_features : bool
        Stop the gradients of the controllers and of the alignment loss at the backbone's
        features: the controllers read the layer inputs and the channel energies but do not
        reshape them, so the backbone learns from the classification loss alone.
    calibration_batches : int
        Training batches over which the BatchNorm statistics are re-estimated with hard
        gates once training ends (:func:`recalibrate_batchnorm`; 0, the default: not done,
        as it made no measurable difference, see Notes).
    sparsity_target : float, optional
        A budget instead of a price (ours, not the paper's): the sparsity term becomes
        ``max(0, S - sparsity_target)`` with S the batch's sparsity loss (with
        ``sparsity="flops"``, the kept fraction of the gated convs' output-side FLOPs), so
        that gates are pushed shut only while the batch is over budget and the
        classification loss decides freely below it. ``lambda_sparse`` then only needs to
        be large enough to hold the budget. The network's FLOPs ratio is lower than the
        target (a closed gate also removes the matching input channels of the next layer)
        and higher where dense layers (first conv, shortcuts, classifier) weigh much.
        While S is above the budget the term has the gradient of the plain penalty, so a
        budget only holds if ``lambda_sparse`` is strong enough to bring S down to it: with
        distillation on, lambda_sparse 3 never did on shapes (budgets 0.25-0.45 trained
        bit-identically), 30 did (see Notes); training ends with a warning when the budget
        was missed, and ``budget_reached`` goes to ``metrics.json`` (:meth:`budget_status`).
        None (default): the paper's plain penalty.
    lambda_distill : float
        Weight of KL(softmax(f_dense(x)) || softmax(f(x))), the dense network's predictions
        as soft targets (ours, not the paper's; a common remedy when pruning). The dense
        teacher is a frozen copy, taken at the first training step, of the network with
        its controllers removed -- with ``--init``, the dense run fine-tuned from. It is not
        saved: a resumed run takes it again from the resumed weights. 0: off.

    Notes
    -----
    The paper's weights (lambda_mi 0.005, lambda_align 1, lambda_s 1e-4, SGD 0.01) are for
    ResNet-56 fine-tuned for many epochs. Ours were chosen in short fine-tuning runs
    (3-4 epochs from a dense run) of resnet8 on mnist and convnet on shapes:

    - lambda_mi 0.5: the bound is a sum over 3-6 layers here, not 54; at 0.05 the deep
      layers' intra-class path similarity exceeded the inter-class one by ~0.05 Jaccard,
      at 0.3-1 by 0.2-0.37.
    - sparsity "flops", lambda_sparse 1.5: plain L1 prunes the many cheap filters of deep
      layers first; weighting by cost reached FLOPs ratio 0.37 where L1 stopped at 0.52,
      at the same accuracy (mnist). 1.5 gives 0.2-0.4 on both datasets.
    - init_bias 3: with the N(0, 1) training noise, a logit of 1 (the paper's example)
      switches ~16 % of the channels off at random and soft-scales most others; fine-tuning
      a dense mnist net that way lost 2 accuracy points before any gate learned anything.
    - Adam at 0.02 for the controllers: with SGD at the backbone's rate the gates did not
      move in 3 epochs (active fraction 1.0).
    - lambda_align 1 as in the paper (0 or 1 made no difference we could measure).

    Options added later, measured on seed 0 with ``benchmarks/decoupling_ablation.py``
    (results/decoupling_ablation.json; accuracy on 1,000 mnist test images, so about
    +-0.5 points is noise):

    - ``calibration_batches`` (off by default): re-estimating the BatchNorm statistics
      under hard gates after training changed nothing measurable (mnist 0.964 vs 0.970
      without, FLOPs ratio 0.33 both; shapes 0.701 vs 0.699).
    - ``detach_features``: at lambda_sparse 0.8 it pruned more (FLOPs 0.41 vs 0.64) and
      lost 1.9 more points (0.949 vs 0.968); kept as an option, not recommended.
    - ``sparsity_target``: a budget rather than a price, so the FLOPs land near a chosen
      value instead of moving with the loss weights (lambda_sparse 0.8 / 1.5 gave FLOPs
      0.64 / 0.33 on mnist). Target 0.6 gave FLOPs 0.43 (4 fine-tuning epochs) and 0.46
      (10 epochs).
    - ``lambda_distill`` (weight 1): with the 0.6 budget, 0.976 vs 0.965 at the same FLOPs
      (0.43); without a budget it kept more channels on (FLOPs 0.50 vs 0.33, 0.973 vs
      0.970) -- the soft targets pull against the sparsity price.
    - The largest effect was the fine-tuning length, with a budget: on mnist, with 4
      epochs the drop against dense fine-tuning for as long was 0.2-2.9 points across
      the variants; with 10 epochs, defaults 1.7 (FLOPs 0.40), budget 0.6 0.6-0.7 (FLOPs
      0.46-0.47) -- the mnist recipe of benchmarks/decoupling.py. On shapes the dense
      network is itself far from trained (0.69 after 6 epochs, 0.76 after 3 more), and
      3 decoupled epochs stay 5.8 points behind (FLOPs 0.23).
    - Since 2026-12-01 the mnist recipe fine-tunes a convnet, not resnet8, with budget
      0.45 (seed 0, 10 epochs: budgets 0.3 / 0.45 / 0.6 / 0.8 gave 0.977 / 0.980 / 0.982 /
      0.979 at FLOPs 0.18 / 0.27 / 0.45 / 0.51, dense+ft 0.986): the convnet's sparse
      execution is really faster at batch 1 (0.60-0.71x), resnet8's was not (see
      :mod:`pellucid.apps.acceleration`).
    - On shapes (seed 0, 10 fine-tuning epochs, dense+ft 0.871) the MI bound is both what
      makes paths input-dependent and what costs accuracy: without it (lambda_mi 0 or
      0.05, lambda_align 0) 0.846-0.848 at FLOPs 0.28, but every image takes the same
      path; lambda_mi 0.5 (default) 0.786 at 0.19 with a deep-layer gap of 0.24; lambda_mi
      0.1 0.836, gap 0.10.
    - Since 2026-12-01 the shapes recipe starts from a converged dense network (seed 0; 32x32,
      6,000 images, 15 epochs: 0.894; dense+ft 0.904), and there ``lambda_distill`` is
      what buys the accuracy back while the MI bound stays at 0.5: defaults 0.842 at FLOPs
      0.29 (gap 0.30); distill 1 0.881 at 0.45; distill 3 0.905 at 0.57 (gap 0.16);
      distill 5 with lambda_sparse 3 0.897 at 0.49 (gap 0.18), the recipe then (3 seeds:
      drop 0.53 points, FLOPs 0.58, gap 0.17). The soft targets keep more gates open, and
      more open gates mean more shared paths.
    - The shapes recipe since then fine-tunes for 15 epochs (dense+ft 0.916) with
      ``lambda_distill=10, sparsity_target=0.3, lambda_sparse=30, lambda_mi=3``: the
      budget binds (at lambda_sparse 3 it never did under distillation) and sets the FLOPs,
      the stronger MI bound keeps the paths class-specific (at the same budget lambda_mi 0.5
      gave a gap of 0.14, 2 gave 0.32). Seed 0: 0.909 at FLOPs 0.25, gap 0.29; 3 seeds
      (``benchmarks/decoupling.py --datasets shapes``): drop 0.53 points, FLOPs 0.247,
      batch-1 latency 0.68, gap 0.30 -- all targets met.
    """

    name = "decoupling"

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        lambda_mi: float = 0.5,
        lambda_align: float = 1.0,
        lambda_sparse: float = 1.5,
        reduction: int = 4,
        init_bias: float = 3.0,
        exclude: Sequence[str] = SHORTCUT_NAMES,
        sparsity: str = "flops",
        controller_optimizer: str = "adam",
        controller_lr: float = 0.02,
        eval_images: int = 1000,
        latency_images: int = 16,
        calibration_batches: int = 0,
        detach_features: bool = False,
        sparsity_target: float | None = None,
        lambda_distill: float = 0.0,
    ) -> None:
        super().__init__(model, num_classes)
        self.lambda_mi = _check("lambda_mi", lambda_mi)
        self.lambda_align = _check("lambda_align", lambda_align)
        self.lambda_sparse = _check("lambda_sparse", lambda_sparse)
        if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
            raise ConfigError(f"decoupling: reduction must be an integer >= 1, got {reduction!r}")
        if not -20 < init_bias < 20:
            raise ConfigError(f"decoupling: init_bias must lie in (-20, 20), got {init_bias}")
        if isinstance(exclude, str):
            exclude = [exclude]
        if controller_optimizer not in ("adam", "sgd", "same"):
            raise ConfigError(
                f"decoupling: controller_optimizer must be adam, sgd or same: "
                f"{controller_optimizer!r}"
            )
        self.controller_optimizer = controller_optimizer
        if sparsity not in ("l1", "flops"):
            raise ConfigError(f"decoupling: sparsity must be l1 or flops, got {sparsity!r}")
        self.sparsity = sparsity
        self.controller_lr = _check("controller_lr", controller_lr)
        self.eval_images = int(_check("eval_images", eval_images, 1))
        self.latency_images = int(_check("latency_images", latency_images))
        self.calibration_batches = int(_check("calibration_batches", calibration_batches))
        self.sparsity_target = _fraction_or_none("sparsity_target", sparsity_target)
        self.lambda_distill = _check("lambda_distill", lambda_distill)
        self.__dict__["_teacher"] = None  # not a submodule: not saved, not optimised
        self._sparse_ema: torch.Tensor | None = None  # batches' sparsity term (budget check)
        self.layers = insert_controllers(model, reduction, init_bias, tuple(exclude))
        convs = gated_layers(model)
        self._controllers = [convs[n].controller for n in self.layers]
        self.detach_features = bool(detach_features)
        for c in self._controllers:
            c.detach_input = self.detach_features
        self.mi_heads = nn.ModuleList(
            nn.Linear(convs[n].out_channels, num_classes, bias=False) for n in self.layers
        )

    def remove(self) -> nn.Module:
        """Remove the controllers; returns the plain model (this method is unusable after)."""
        remove_controllers(self.model)
        self._controllers = []
        return self.model

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Backbone with the run's optimiser; controllers and MI classifiers (no weight
        decay) with ``controller_optimizer`` at ``controller_lr`` unless it is "same"."""
        own = {id(p) for c in self._controllers for p in c.parameters()}
        backbone = [p for p in self.model.parameters() if p.requires_grad and id(p) not in own]
        extra = [p for c in self._controllers for p in c.parameters()]
        group: dict[str, Any] = {"params": extra + list(self.mi_heads.parameters())}
        group["weight_decay"] = 0.0
        if self.controller_optimizer != "same":
            group.update(optimizer=self.controller_optimizer, lr=self.controller_lr)
        return [{"params": backbone}, group]
