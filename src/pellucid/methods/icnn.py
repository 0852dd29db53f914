"""Interpretable convolutional neural networks (ICNN).

Zhang, Wu, Zhu, "Interpretable Convolutional Neural Networks", CVPR 2018 (arXiv 1710.00935v4).
Specification: shared/methods/icnn.md.

A new 3x3 conv layer (same width, optional BN, ReLU) goes on top of a layer of the backbone.
Each of its K filters should fire on one part of one category at one location:

* **mask** (icnn.md, "Forward mask"): the map x of every filter is multiplied by the positive
  template centred at its own peak, ``x_masked = relu(x * T_mu^ / tau)`` (values in [-1, 1];
  no gradient through the argmax), and the masked maps go on to the rest of the network;
* **filter loss** (icnn.md, "Loss"): ``Loss_f = -MI(X; T)`` between the filter's (pre-mask)
  maps and its n^2 + 1 templates, ``Loss = CE + lambda * sum_f Loss_f``.

With a map of h x w units (n x n in the paper; here ``n^2 -> h w`` and ``|di| / n + |dj| / n
-> |di| / h + |dj| / w``)::

    t+_ij(mu) = tau * max(1 - beta (|i - mu_i| / h + |j - mu_j| / w), -1)   (n^2 templates)
    t-_ij     = -tau                                                          (1 template)
    p(T_mu) = alpha / (h w), p(T-) = 1 - alpha, alpha = h w / (1 + h w)
    p(x | T) = exp(tr(x . T)) / Z_T,  p(x) = sum_T p(T) p(x | T)
    MI = sum_T p(T) sum_x p(x | T) log(p(x | T) / p(x))

Everything is computed in log space. ``Z_T`` runs over all feature maps; one mini-batch is a
noisy sample, so a running estimate per filter and template is kept as a buffer: ``log_z``
holds ``log mean_x exp(tr(x . T))`` and each step uses ``Z = m Z_running + (1 - m) Z_batch``
(momentum m, an EMA of Z kept in log space with ``logaddexp``; the batch part keeps its
gradient), so p(x | T) of a batch map is ``exp(tr(x . T) - log_z) / N``.

**Approximation** (``approximation=True``, the paper's training rule): only each map's target
template T^ enters the sum -- T_mu^ (at the map's peak) for images of the filter's category,
T- otherwise -- so the loss also tells the filter to stay silent on other categories.
``approximation=False`` is the exact batch MI (no labels used).

**Filter categories** (icnn.md, "Filter categories"): with one target class (binary tasks,
``target_class``) every filter belongs to it; otherwise filter f belongs to
``argmax_c`` of an EMA (momentum 0.9) of its mean pre-mask activation on class-c images,
re-evaluated every training step. Both are buffers saved with the run.

**Constants on small maps.** beta = 4 is scale-free (the positive part of a template reaches a
quarter of the map side in L1 distance): on the 8x8 maps of ``convnet`` on 64x64 images the
mask keeps the peak unit (1) and its 4 neighbours (0.5), about one shapes part (8-15 px at
stride 8), so beta is kept. tau = 0.5 / n^2 is kept too, but what it means depends on the
activation scale: ``tr(x . T)`` is about half the map's mean activation, and with BN + ReLU
activations (mean ~0.5, peaks ~3) the scores of different maps differ by ~0.1, so MI(X; T) is
~1e-3 nats per filter -- the loss sits in its quadratic (high-temperature) regime, where only
lambda tau^2 matters. Raising tau 16x (0.125 on 8x8) gives MI of 0.4-1 nats, but the filters
then fall silent on most classes early and accuracy collapsed (0.35 and 0.19 vs 0.46 plain,
lambda 0.01 and 0.1); in a short run Adam cannot rescale BN gains fast enough to move between
the regimes. lambda = 0.3 (``DEFAULT_LAMBDA``) is the largest value of a sweep (shapes32, a
3-block convnet with 8x8 maps, 4,000 images, 4 epochs, seed 0) without an accuracy cost:
lambda 0 / 0.01 / 0.3 gave accuracy 0.426 / 0.427 / 0.425 (plain 0.456) and location
instability 0.044 / 0.045 / 0.044 (plain 0.075); lambda 1 gave 0.040 but cost 2.7 points,
lambda 100 cost 14. So at this budget the mask does most of the work; the loss needs a
longer training (or a pretrained backbone, as in the paper) to matter. That sweep predates
the mask gain below; with the gain, fine-tuning a trained plain network (benchmarks/icnn.py)
needs lambda ~10 for the loss to move the filters (seed 0: location instability 0.051 /
0.049 / 0.044 / 0.037 at lambda 0.3 / 1 / 10 / 100, accuracy 0.70 / 0.73 / 0.70 / 0.49).

**Mask gain** (not in the paper; ``calibrate_gain``, default on): the mask keeps ~5 of the
64 units of an 8x8 map, so whatever follows it (here global pooling and the classifier)
receives inputs ~5x smaller than without it (per-filter ratio ``mean(x) / mean(mask(x))``
of a trained plain network on shapes: 4.6 / 5.4 / 10.4 at the 10 / 50 / 90 % quantiles).
The classes stay nearly as well ranked (accuracy of a plain network with the mask switched
on: 0.42 vs 0.44), but the logits are ~5x too small and a short AdamW run cannot grow the
classifier that much: fine-tuning with the mask lost 9 points to plain fine-tuning, the loss
alone none, and from scratch ICNN lost 13 points. A fixed per-filter gain after the mask,
set once on the first training batch so each filter's mean output is what it was without
the mask (as dropout rescales its kept units), removes that: the masked plain network then
scores 0.45 before any training, and fine-tuned ICNN is as accurate as plain fine-tuning
(benchmarks/icnn.py: 0.686 vs 0.669 over 3 seeds). The gain is a positive constant per
filter, so where a filter peaks and its activation quantiles -- what the filter metrics
look at -- do not depend on it directly. It is a buffer of the mask (``icnn.mask.gain``,
saved with the inference network); a state dict without it (a plain run's, or one saved
before the gain existed) leaves it at 1 and uncalibrated, so fine-tuning from a plain run
calibrates it on its first step.

**Plain baseline**: ``plain=True`` builds the same architecture (extra conv layer, BN, ReLU)
without mask and loss, so ICNN and its baseline differ only in what the paper adds.

Templates, the mask function and the filter loss live in :mod:`pellucid.methods.icnn_loss`,
the mask module, the interpretable layer and the ICNN network in
:mod:`pellucid.methods.icnn_net` (all re-exported here); the training step (forward, filter
categories, target templates, loss) in :mod:`pellucid.methods.icnn_step`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pellucid.errors import ConfigError
from pellucid.methods.base import Method
from pellucid.methods.csg import layer_channels
from pellucid.methods.icnn_loss import (
    FilterLoss,
    filter_mutual_information,
    log_prior,
    mask_at_peak,
    mi_from_scores,
    positive_templates,
    template_scores,
    templates,
)
from pellucid.methods.icnn_net import ICNNNet, InterpretableLayer, TemplateMask
from pellucid.methods.icnn_step import ICNNStep
from pellucid.models import default_layer, get_layer
from pellucid.registry import METHODS

__all__ = [
    "DEFAULT_LAMBDA",
    "ICNN",
    "ICNNNet",
    "InterpretableLayer",
    "TemplateMask",
    "positive_templates",
    "templates",
    "log_prior",
    "mask_at_peak",
    "template_scores",
    "filter_mutual_information",
    "mi_from_scores",
    "FilterLoss",
]

DEFAULT_LAMBDA = 0.3  # chosen on shapes, see "Constants on small maps" above


# -- the method ---------------------------------------------------------------------------
@METHODS.register("icnn", help="interpretable filters: template mask + MI loss (Zhang, CVPR 2018)")
class ICNN(ICNNStep, Method):
    """Interpretable CNN around any backbone.

    Parameters
    ----------
    model : nn.Module
        The backbone (``self.model``); the inference network is :meth:`inference_model`.
    num_classes : int
    layer : str, optional
        Backbone layer the interpretable layer goes on; default the last conv stage.
    lambda_, loss_weight : float
        Weight lambda of ``sum_f Loss_f`` (two names for one option); default
        ``DEFAULT_LAMBDA`` = 0.3.
    approximation : bool
        True: the paper's target-template approximation (uses the filter categories);
        False: the exact batch MI.
    plain : bool
        The baseline: same architecture, no mask, no filter loss.
    bn : bool
        BatchNorm in the interpretable layer.
    beta, tau : float
        Template constants; ``tau`` None = 0.5 / (h w).
    z_momentum : float
        Momentum m of the running Z_T.
    category_momentum : float
        EMA momentum of the per-class mean activations that set filter categories.
    target_class : int, optional
        Give every filter this category (single-category tasks); default class 1 when
        ``num_classes == 2``, else categories are learnt.
    calibrate_gain : bool
        On the first training step whose mask gain is not yet calibrated, set each filter's
        mask gain to ``mean(x) / mean(mask(x))`` of that batch (see "Mask gain" above and
        :class:`TemplateMask`); False keeps the paper's gain of 1.
    """

    name = "icnn"

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        layer: str | None = None,
        lambda_: float | None = None,
        loss_weight: float | None = None,
        approximation: bool = True,
        plain: bool = False,
        bn: bool = True,
        beta: float = 4.0,
        tau: float | None = None,
        z_momentum: float = 0.9,
        category_momentum: float = 0.9,
        target_class: int | None = None,
        calibrate_gain: bool = True,
    ) -> None:
        super().__init__(model, num_classes)
        self.lambda_ = _loss_weight(lambda_, loss_weight)
        _check(0 < beta < math.inf, f"beta must be a finite number > 0, got {beta}")
        _check(tau is None or 0 < tau < math.inf, f"tau must be a finite number > 0, got {tau}")
        for label, value in (("z_momentum", z_momentum), ("category_momentum", category_momentum)):
            _check(0 <= value < 1, f"{label} must lie in [0, 1), got {value}")
        if target_class is None and num_classes == 2:
            target_class = 1
        if target_class is not None and not 0 <= int(target_class) < num_classes:
            raise ConfigError(f"icnn: target_class {target_class} not in [0, {num_classes})")
        self.layer = layer or default_layer(model)
        k = layer_channels(get_layer(model, self.layer), self.layer)
        self.plain, self.approximation = bool(plain), bool(approximation)
        self.target_class, self.category_momentum = target_class, category_momentum
        self.calibrate_gain = bool(calibrate_gain)
        self.icnn = InterpretableLayer(k, bn, mask=not self.plain, beta=beta)
        if not self.plain:
            self.filter_loss = FilterLoss(tau, beta, z_momentum)
            first = 0 if target_class is None else int(target_class)
            self.register_buffer("category", torch.full((k,), first, dtype=torch.long))
            self.register_buffer("class_mean", torch.zeros(num_classes, k))
            self.register_buffer("class_count", torch.zeros(num_classes, dtype=torch.long))
        # the inference network shares self.model and self.icnn; it is not a registered
        # child, so the state dict holds each weight once (model.*, icnn.*)
        self.__dict__["_net"] = ICNNNet(model, self.layer, self.icnn)

    # -- Method API -------------------------------------------------------------------------
    def train(self, mode: bool = True) -> ICNN:
        """Set the mode, also on the ICNN network, which is not a registered child."""
        super().train(mode)
        self._net.training = mode  # not a registered child; its modules are
        return self

    def inference_model(self) -> nn.Module:
        """The ICNN network (:class:`ICNNNet`), not the bare backbone."""
        return self._net

    def analysis_layer(self) -> str:
        """``icnn``: the interpretable layer's output (after the mask) in the ICNN network."""
        return "icnn"

    def method_state(self) -> dict[str, torch.Tensor]:
        """The buffers (log Z, categories); the layer's weights are in the inference model."""
        return {k: v for k, v in super().method_state().items() if not k.startswith("icnn.")}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(f"icnn: {message}")


def _loss_weight(lambda_: float | None, loss_weight: float | None) -> float:
    if lambda_ is not None and loss_weight is not None and lambda_ != loss_weight:
        raise ConfigError(f"icnn: lambda_={lambda_} and loss_weight={loss_weight} disagree")
    value = lambda_ if lambda_ is not None else loss_weight
    value = DEFAULT_LAMBDA if value is None else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ConfigError(
            f"icnn: lambda_ (loss_weight) must be a finite number >= 0, got {value!r}"
        )
    return float(value)
