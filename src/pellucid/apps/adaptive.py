"""Adaptive attacks: PGD that knows the detector.

The detection scores of :mod:`pellucid.apps.adversarial` are measured against an oblivious
adversary, as in both papers. Carlini & Wagner ("Adversarial Examples Are Not Easily
Detected: Bypassing Ten Detection Methods", AISec 2017) showed that detectors which look
strong against oblivious attacks often fall to an attacker who includes the detector in the
loss. This module is that attacker for the unsupervised detectors (``prototype``,
``mahalanobis``, ``lid``; :mod:`pellucid.apps.detectors`), which are differentiable in the
features, and for any other differentiable score, such as the fitted logistic regression
:func:`pellucid.apps.adversarial.detect_adversarial` attacks with ``adaptive="logistic"``,
and, through such a differentiable surrogate, for a detector without a gradient (the
random forest: the attack descends the surrogate and keeps the iterates the forest itself
finds least suspicious, ``judge``; Tramer, Carlini, Brendel & Madry, NeurIPS 2020, Sec. 5),
on every feature kind: ``activations``, ``gate-groups`` and ``logits`` are
differentiable in the image; a decoupled network's calculation path (``path``) is binary,
``1[y > 0]`` of each controller's gate logits ``y``, so the attack differentiates the
detector at the soft path ``sigmoid(y / temperature)`` instead, while the network and the
kept iterate are judged on the hard path (BPDA: Athalye, Carlini & Wagner, "Obfuscated
Gradients Give a False Sense of Security", ICML 2018, Sec. 4.1).

L-inf PGD (Madry et al. 2018) from a random start minimises, per image,

    max(Z_y(x') - max_{j != y} Z_j(x'), -kappa) + weight * (s(x') - mu) / sigma,

a C&W margin (constant once the image is misclassified by ``kappa``, so that the class term
stops pulling and the detector term takes over) plus the detector's score ``s`` standardised
by its mean ``mu`` and standard deviation ``sigma`` on the clean training images. The first
half of the steps use the margin alone (from a clean image the detector term would hold the
image where it is), the second half both. Of the iterates that are misclassified, each image
keeps the one with the lowest detector score (the clean image if none was).

Driving the score as low as possible overshoots: the attacked images end up *more* typical
than clean ones, which a two-sided score (:func:`pellucid.apps.detectors.two_sided_scores`)
catches. With ``aim`` set, the attacker instead aims at a given standardised score (for
example the clean median): the detector term becomes ``weight * |(s(x') - mu) / sigma -
aim|`` and each image keeps the misclassified iterate closest to the aim -- the attacker a
two-sided detector has to face.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from pellucid.apps.adversarial_features import check_kinds, gap, group
from pellucid.errors import ConfigError

__all__ = ["ADAPTIVE_FEATURES", "adaptive_pgd", "detector_score"]

ADAPTIVE_FEATURES = ("activations", "gate-groups", "logits", "path")

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (features, predicted) -> (N,)


def detector_score(detector: str, fitted: Any) -> Score:
    """An unsupervised detector's score as a function PGD can differentiate.

    ``fitted``: ``prototype`` -- the (C, D) class prototypes; ``mahalanobis`` --
    :func:`pellucid.apps.detectors.fit_mahalanobis`'s result; ``lid`` -- ``(reference, k)``.
    The returned function maps features (N, D) and predicted classes (N,) to scores (N,)
    through the detectors' own :func:`~pellucid.apps.detectors.prototype_scores`,
    :func:`~pellucid.apps.detectors.mahalanobis_scores` and
    :func:`~pellucid.apps.detectors.lid_scores` (all differentiable in the features), with
    the fitted tensors moved to the features' device.
    """
    from pellucid.apps.detectors import lid_scores, mahalanobis_scores, prototype_scores

    if detector == "prototype":
        return lambda f, pred: prototype_scores(fitted.to(f.device), f, pred)
    if detector == "mahalanobis":
        return lambda f, pred: mahalanobis_scores(tuple(t.to(f.device) for t in fitted), f)
    if detector == "lid":
        reference, k = fitted
        return lambda f, pred: lid_scores(reference.to(f.device), f, k)
    raise ConfigError(
        f"unknown detector {detector!r} for an adaptive attack; choose from: prototype, "
        "mahalanobis, lid"
    )


def _features(
    kind: str, logits: torch.Tensor, store: dict[str, torch.Tensor], layers: Sequence[str],
    gates: torch.Tensor | None, controllers: Sequence[nn.Module], temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(features the detector judges, features the attack differentiates): the same tensor
    except for ``path`` (hard gates, soft surrogate)."""
    if kind == "path":
        hard = torch.cat([c.gate.float() for c in controllers], 1)
        soft = torch.cat([torch.sigmoid(c.logits.float() / temperature) for c in controllers], 1)
        return hard, soft
    if kind == "logits":
        feats = logits.float()
    else:
        pooled = [gap(store[n], n) for n in layers]
        feats = torch.cat(pooled, 1) if kind == "activations" else group(pooled[0], gates)
    return feats, feats


@contextmanager
def _differentiable_controllers(model: nn.Module) -> Iterator[list[nn.Module]]:
    """The model's architecture controllers, reading their inputs with gradient for the
    duration (a run trained with ``detach_features`` has them detached); restored after."""
    from pellucid.methods.controllers import gated_layers

    controllers = [conv.controller for conv in gated_layers(model).values()]
    if not controllers:
        raise ConfigError("feature 'path' needs a decoupled model (controlling modules)")
    detached = [c.detach_input for c in controllers]
    try:
        for c in controllers:
            c.detach_input = False
        yield controllers
    finally:
        for c, d in zip(controllers, detached, strict=True):
            c.detach_input = d


def adaptive_pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    kind: str,
    score: Score,
    standardise: tuple[float, float],
    layers: Sequence[str] = (),
    gates: torch.Tensor | None = None,
    eps: float = 0.2,
    alpha: float = 0.02,
    steps: int = 40,
    weight: float = 1.0,
    kappa: float = 0.0,
    aim: float | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
    judge: Score | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD against the classifier and a detector at once (module docstring).

    Parameters
    ----------
    model : nn.Module
        The classifier (eval mode, frozen parameters inside; restored after).
    images, labels : Tensor (N, C, H, W) in [0, 1], Tensor (N,)
    kind : {"activations", "gate-groups", "logits", "path"}
        The features the detector reads (``layers``, ``gates`` as in
        :func:`pellucid.apps.adversarial_features.feature_vectors`; ``path``: a decoupled model's).
    score : callable
        :func:`detector_score`'s function.
    standardise : (float, float)
        Mean and standard deviation of the score on clean training images.
    eps, alpha, steps : float, float, int
        L-inf radius, step size and number of steps.
    weight : float
        Weight of the standardised detector score against the margin (0 = plain PGD with
        a margin loss).
    kappa : float
        Margin by which the image must be misclassified before only the detector counts.
    aim : float, optional
        None: lower the standardised score as far as possible. A number: bring it to this
        standardised value (e.g. the clean training images' median), from either side.
    temperature : float
        ``path`` only: the surrogate's soft gates are ``sigmoid(logits / temperature)``.
    judge : callable, optional
        A score of the same signature that is not differentiated (a random forest's vote,
        :func:`pellucid.apps.detectors.forest_score`): the attack descends ``score`` (the
        detector's differentiable surrogate; towards ``aim`` when set) and each image keeps
        the misclassified iterate with the lowest ``judge`` score.

    Returns
    -------
    (Tensor (N, C, H, W), Tensor (N,) bool)
        The adversarial images (on the CPU) and which of them are misclassified.
    """
    from pellucid.apps.attacks import _positive, _steps, check_images
    from pellucid.hooks import capture
    from pellucid.state import model_device, model_state

    check_images(images, labels)
    if kind not in ADAPTIVE_FEATURES:
        raise ConfigError(
            f"an adaptive attack works on the features {', '.join(ADAPTIVE_FEATURES)}, not {kind!r}"
        )
    check_kinds([kind], gates, list(layers))
    temperature = _positive("adaptive", "temperature", temperature)
    eps, alpha = _positive("adaptive", "eps", eps), _positive("adaptive", "alpha", alpha)
    steps = _steps("adaptive", steps)
    if not weight >= 0 or not kappa >= 0:
        raise ConfigError(f"weight and kappa must be >= 0, got {weight!r}, {kappa!r}")
    if aim is not None and not math.isfinite(aim):
        raise ConfigError(f"aim must be a finite standardised score or None, got {aim!r}")
    mu, sigma = float(standardise[0]), max(float(standardise[1]), 1e-12)
    names = list(layers) if kind in ("activations", "gate-groups") else []
    device = model_device(model)
    gen = torch.Generator().manual_seed(seed)
    out_x, out_hit = [], []
    paths = _differentiable_controllers(model) if kind == "path" else nullcontext([])
    with model_state(model), paths as controllers, capture(model, names, detach=False) as store:
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(device)
            y = labels[i : i + batch_size].to(device).long()
            start = (torch.rand(x.shape, generator=gen) * 2 - 1).to(device) * eps
            adv = (x + start).clamp(0, 1)
            best, best_score = x.clone(), torch.full((len(x),), float("inf"), device=device)
            hit = torch.zeros(len(x), dtype=torch.bool, device=device)
            for step in range(steps + 1):
                adv.requires_grad_(True)
                logits = model(adv)
                judged, surrogate = _features(
                    kind, logits, store, names, gates, controllers, temperature
                )
                pred = logits.argmax(1)
                s = (score(judged, pred).float() - mu) / sigma
                if surrogate is not judged:  # path: the loss follows the soft gates
                    s = s.detach()
                    loss_s = (score(surrogate, pred).float() - mu) / sigma
                else:
                    loss_s = s
                if aim is not None:
                    s, loss_s = (s - aim).abs(), (loss_s - aim).abs()  # distance to the aim
                if judge is not None:  # the kept iterate: judged by the detector itself
                    with torch.no_grad():
                        s = judge(judged.detach(), pred).float()
                wrong = pred != y
                with torch.no_grad():  # keep the least suspicious misclassified iterate
                    better = wrong & (s < best_score)
                    best[better], best_score[better] = adv[better].detach(), s[better]
                    hit |= wrong
                if step == steps:
                    break
                true = logits.gather(1, y[:, None])[:, 0]
                other = logits.masked_fill(nn.functional.one_hot(y, logits.shape[1]).bool(), -1e9)
                margin = (true - other.max(1).values).clamp_min(-kappa)
                w = weight if step >= steps // 2 else 0.0  # first misclassify, then hide
                loss = (margin + w * loss_s).sum()
                (grad,) = torch.autograd.grad(loss, adv)
                with torch.no_grad():
                    adv = adv - alpha * grad.sign()
                    adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
            out_x.append(best.detach().cpu())
            out_hit.append(hit.cpu())
    return torch.cat(out_x), torch.cat(out_hit)
