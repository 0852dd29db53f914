"""Adversarial-sample detection from what an interpretable network computes.

Both papers that propose it use the same idea: an adversarial input is classified as some
class c, but the network reaches c by an unusual route.

- Network decoupling (Li et al., ECCV 2020; decoupling.md, "Analyses and applications"): the
  *calculation path* (every gated layer's binary gates, concatenated) of an attacked image is
  unlike the paths of clean images of its predicted class. Features ``path``.
- Class-Specific Gates (Liang et al., ECCV 2020; csg.md, "Applications"): the filters that
  fire on an attacked image are not the predicted class's filters. Features ``gate-groups``:
  the gated layer's channel activations averaged within each class's filter group,
  ``g_c = sum_k G[c, k] a_k / sum_k G[c, k]`` (N, C).

Baselines on the same images: ``activations`` (the global-average-pooled channel activations
of the named layers: for a standard network, the features CSG's are compared with; for a
decoupled one, the continuous counterpart of its path) and ``logits``.

Protocol. The first ``n`` images of the split (spread evenly over it) that the model
classifies correctly are attacked; the attack's successful images (prediction changed) and
their clean originals form a balanced clean-vs-adversarial set. For every feature kind:

- supervised (the papers' protocol): a logistic regression (standardised features) and a
  random forest are trained on the features and scored by cross-validated ROC-AUC; the
  folds are grouped so that an image and its attacked version are never split between
  training and test;
- unsupervised (decoupling.md): the cosine distance of the features to the *prototype* of
  the predicted class, the mean feature vector of correctly classified clean training
  images of that class, scored by ROC-AUC -- no adversarial example is needed to fit it;
  next to it the *Mahalanobis* detector of Lee et al. (2018), the distance to the closest
  class under class Gaussians with a shared covariance fitted on the same clean images
  (:mod:`pellucid.apps.detectors`), and the *local intrinsic dimensionality* of Ma et al.
  (2018) among the ``k`` nearest of the same clean training features.

The attacks do not know about the detector (an oblivious, not adaptive, adversary), as in
both papers. ``adaptive`` adds attacks that do (:mod:`pellucid.apps.adaptive`), and
``two_sided`` scores each unsupervised detector two-sided as well
(:func:`pellucid.apps.detectors.two_sided_scores`), which an attacker who overshoots to
too-typical scores cannot pass.

Where things are: the feature vectors in :mod:`pellucid.apps.adversarial_features`, the
detectors in :mod:`pellucid.apps.detectors`, the reports and the scoring of one attack by
every detector in :mod:`pellucid.apps.adversarial_report`, the adaptive attack in
:mod:`pellucid.apps.adaptive` and its use here in :mod:`pellucid.apps.adversarial_adaptive`;
this module runs the protocol.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pellucid.apps import attacks as _attacks  # noqa: F401  (fills ATTACKS)
from pellucid.apps.adaptive import ADAPTIVE_FEATURES
from pellucid.apps.adversarial_adaptive import (
    ADAPTIVE_DETECTORS,
    SUPERVISED_ADAPTIVE,
    adaptive_supervised,
    adaptive_unsupervised,
)
from pellucid.apps.adversarial_adaptive import adaptive_options as check_adaptive
from pellucid.apps.adversarial_features import (
    FEATURES,
    check_kinds,
    default_features,
    feature_vectors,
)
from pellucid.apps.adversarial_report import (
    ATTACKED,
    FOREST_ATTACKED,
    LOGISTIC_ATTACKED,
    MIN_PAIRS,
    TWO_SIDED,
    AttackReport,
    DetectionResult,
    Unsupervised,
    detector_aucs,
)
from pellucid.apps.detectors import (  # noqa: F401  (the detectors' scores: public here too)
    DETECTORS,
    LID_CAP,
    LID_K,
    UNSUPERVISED,
    class_prototypes,
    fit_mahalanobis,
    forest_score,
    forest_surrogate,
    lid_scores,
    logistic_score,
    mahalanobis_scores,
    prototype_scores,
    reference_scores,
    roc_auc,
    supervised_auc,
)
from pellucid.errors import ConfigError, DataError
from pellucid.registry import ATTACKS

__all__ = [
    "ADAPTIVE_DETECTORS",
    "ATTACKED",
    "DEFAULT_ATTACKS",
    "FEATURES",
    "FOREST_ATTACKED",
    "LOGISTIC_ATTACKED",
    "MIN_PAIRS",
    "SUPERVISED_ADAPTIVE",
    "TWO_SIDED",
    "AttackReport",
    "DetectionResult",
    "default_features",
    "detect_adversarial",
    "detect_adversarial_run",
    "feature_vectors",
    "lid_scores",
    "mahalanobis_scores",
    "prototype_scores",
    "supervised_auc",
]

DEFAULT_ATTACKS: dict[str, dict[str, Any]] = {"fgsm": {}, "pgd": {}, "cw": {}}


def detect_adversarial(
    model: nn.Module,
    data: Any,
    train_data: Any | None = None,
    attacks: Mapping[str, Mapping[str, Any]] | Sequence[str] = ("fgsm", "pgd", "cw"),
    features: Sequence[str] = ("activations", "logits"),
    layers: Sequence[str] = (),
    gates: torch.Tensor | None = None,
    n: int | None = 500,
    prototype_images: int = 2000,
    folds: int = 5,
    seed: int = 0,
    batch_size: int = 256,
    adaptive: Sequence[str] = (),
    adaptive_options: Mapping[str, Any] | None = None,
    two_sided: bool = False,
    detectors: Sequence[str] | None = None,
) -> DetectionResult:
    """Clean-vs-adversarial detection ROC-AUC per attack and feature kind (module docstring).

    Parameters
    ----------
    model : nn.Module
        A classifier of pixel-space images (its device is used; left as it was).
    data : Dataset
        Test images; ``n`` of them, spread evenly, are used (all when None).
    train_data : Dataset, optional
        Clean images for the unsupervised prototypes (``prototype_images`` of them, spread
        evenly; only correctly classified ones count); None: no unsupervised score.
    attacks : mapping or sequence
        Attack name -> options (``{"pgd": {"eps": 0.05}}``), or names with default options.
    features : sequence of str
        Kinds from :data:`FEATURES`; ``layers`` names the layers of ``activations`` (and the
        one gated layer of ``gate-groups``, whose matrix is ``gates``); default: the model's
        last conv stage.
    folds : int
        Cross-validation folds of the supervised detectors.
    adaptive : sequence of str
        Detectors (``prototype``, ``mahalanobis``, ``lid``, ``logistic``) to attack
        adaptively as well: for each one and each feature kind, PGD that also lowers that
        detector's score (:func:`pellucid.apps.adaptive.adaptive_pgd`, options
        ``adaptive_options``: eps, alpha, steps, weight, kappa, ``temperature`` of the
        path's soft surrogate, and ``aim``: ``"low"`` -- as low a score as possible -- or
        ``"median"`` -- the clean training images' median score), reported as attack
        ``adaptive-DETECTOR`` with that feature kind only. The unsupervised ones need
        ``train_data``. ``logistic`` is the standardised logistic regression fitted on the
        images at even positions, clean vs the first attack of ``attacks`` (the defender
        trains on an oblivious attack); the images at odd positions are attacked, and the
        report adds ``logistic-attacked``, that fixed detector's AUC, next to the usual
        cross-validated ``logistic`` (a defender who retrains on the adaptive attack).
        ``forest`` is the random forest fitted on the same images; it has no gradient, so
        the attack descends the logistic regression fitted on the same data (a surrogate)
        and keeps, per image, the misclassified iterate with the fewest trees voting
        "attacked" (reported as ``forest-attacked``; with aim ``median`` the surrogate's
        log-odds are aimed at their clean median, and the forest still keeps the iterate).
        Option ``surrogate="votes"`` replaces the regression by a small network fitted to
        the forest's own votes (:func:`pellucid.apps.detectors.forest_surrogate`).
    two_sided : bool
        Also score each unsupervised detector two-sided
        (:func:`pellucid.apps.detectors.two_sided_scores` against the clean training images'
        scores; LID's leave-one-out), reported as ``DETECTOR-two-sided``.
    detectors : sequence of str, optional
        The detectors scored, of ``logistic``, ``forest`` (supervised) and ``prototype``,
        ``mahalanobis``, ``lid`` (unsupervised); default all. The others get no entry in the
        reports, and the unsupervised ones are not fitted when none is scored or attacked.
        An adaptive attack's report always scores the detector it attacks. The forest is
        the slowest (200 trees per fold): 1.6, 2.4 and 5.4 s per attack and feature kind
        for 60, 200 and 450 pairs on one CPU core (the logistic regression 0.05 s).

    Returns
    -------
    DetectionResult
        Per attack: success rate, perturbation size, and per feature kind the ROC-AUC of the
        ``detectors`` (higher is better, 0.5 = chance).
    """
    attacks = _attack_options(attacks)
    for name, options in attacks.items():  # each attack's options checked before any work
        ATTACKS.build(name, model, fixed=("model",), **options)
    layers = list(layers)
    if not layers and {"activations", "gate-groups"} & set(features):
        from pellucid.models import default_layer

        layers = [default_layer(model)]  # the last conv stage
    features = check_kinds(features, gates, layers)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, got {folds!r}")
    adaptive, adaptive_options, aim, surrogate = check_adaptive(adaptive, adaptive_options)
    detectors = _detectors(detectors)
    if set(adaptive) & set(UNSUPERVISED) and train_data is None:
        raise ConfigError("adaptive attacks need train_data (the detectors are fitted on it)")
    if two_sided and train_data is None:
        raise ConfigError("two-sided scores need train_data (their reference is its scores)")
    if two_sided and not set(detectors) & set(UNSUPERVISED):
        raise ConfigError(
            "two-sided scores are the unsupervised detectors' "
            f"({', '.join(UNSUPERVISED)}); none of them is in detectors"
        )

    if n is not None and len(data) < n:
        warnings.warn(
            f"detect_adversarial: the data has {len(data)} images: all {len(data)} are "
            f"attacked, not the {n} asked for",
            stacklevel=2,
        )
    images, labels = _images(data, n, "detect_adversarial")
    kw = {"features": features, "layers": layers, "gates": gates, "batch_size": batch_size}
    pred, clean = feature_vectors(model, images, **kw)
    correct = pred == labels
    if int(correct.sum()) < MIN_PAIRS:
        raise DataError(
            f"detect_adversarial: only {int(correct.sum())} of {len(images)} images are "
            f"classified correctly; at least {MIN_PAIRS} are needed"
        )
    fitted: dict[str, Unsupervised] = {}
    if train_data is not None and set(UNSUPERVISED) & {*detectors, *adaptive}:
        scores = two_sided or bool(adaptive)  # two-sided references, adaptive scales
        fitted = _fit_unsupervised(model, train_data, prototype_images, kw, images[:1], scores)
        for unsupervised in fitted.values():
            unsupervised.two_sided = two_sided
    run = _Detection(
        model, images[correct], labels[correct], {k: v[correct] for k, v in clean.items()},
        kw, folds, seed, fitted, detectors,
    )  # fmt: skip

    reports, first = _oblivious_reports(run, attacks)
    for det in adaptive:
        for kind in (k for k in features if k in ADAPTIVE_FEATURES):
            if det in SUPERVISED_ADAPTIVE:
                report = adaptive_supervised(
                    run, det, kind, first, aim, adaptive_options, surrogate
                )
                reports.append(report)
            else:
                reports.append(adaptive_unsupervised(run, det, kind, aim, adaptive_options))
    some = next(iter(fitted.values()), None)
    return DetectionResult(
        n=len(correct),
        clean_accuracy=round(float(correct.float().mean()), 5),
        features={k: int(v.shape[1]) for k, v in clean.items()},
        layers=list(layers),
        folds=folds,
        prototype_images=0 if some is None else len(some.reference),
        attacks=reports,
        lid_k=0 if some is None else some.lid_k,
    )


def _attack_options(
    attacks: Mapping[str, Mapping[str, Any]] | Sequence[str] | str,
) -> dict[str, dict[str, Any]]:
    """Attack name -> options, every name checked against the attack registry."""
    if isinstance(attacks, str):
        attacks = [attacks]
    if isinstance(attacks, Mapping):
        found = {a: dict(o) for a, o in attacks.items()}
    else:
        found = {a: {} for a in attacks}
    if not found:
        raise ConfigError("detect_adversarial: no attack given")
    for name in found:
        if name not in ATTACKS:
            raise ConfigError(ATTACKS.unknown_message(name))
    return found


def _detectors(detectors: Sequence[str] | str | None) -> tuple[str, ...]:
    """The detectors to score, checked, in :data:`DETECTORS` + :data:`UNSUPERVISED` order."""
    known = (*DETECTORS, *UNSUPERVISED)
    if detectors is None:
        return known
    chosen = [detectors] if isinstance(detectors, str) else list(detectors)
    if not chosen:
        raise ConfigError(f"detectors: none given; choose some from: {', '.join(known)}")
    for det in chosen:
        if det not in known:
            raise ConfigError(f"unknown detector {det!r}; choose from: {', '.join(known)}")
    return tuple(d for d in known if d in chosen)


def _images(data: Any, n: int | None, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of ``data`` spread evenly over it (all when None) and their labels."""
    from pellucid.data import make_loader, spread_subset

    if n is not None and n < 1:
        raise ConfigError(f"{what}: n must be >= 1, got {n}")
    subset = spread_subset(data, n)
    if len(subset) == 0:
        raise DataError(f"{what}: the dataset is empty")
    xs, ys = zip(*((b.image, b.label) for b in make_loader(subset, batch_size=512)), strict=True)
    return torch.cat(xs), torch.cat(ys).long()


@torch.no_grad()
def _num_classes(model: nn.Module, image: torch.Tensor) -> int:
    from pellucid.state import model_device, model_state

    with model_state(model):
        return int(model(image.to(model_device(model))).shape[1])


def _fit_unsupervised(
    model: nn.Module,
    train_data: Any,
    n: int,
    kw: dict[str, Any],
    probe: torch.Tensor,
    scores: bool,
) -> dict[str, Unsupervised]:
    """Feature kind -> the unsupervised detectors fitted on the correctly classified ones of
    ``n`` training images (with their own scores when ``scores``); ``probe``, one test
    image, tells the number of classes an attack may push towards."""
    tx, ty = _images(train_data, n, "prototype images")
    tpred, tfeat = feature_vectors(model, tx, **kw)
    ok = tpred == ty
    classes = _num_classes(model, probe)
    if int(ty.max()) >= classes:
        raise DataError(f"prototype images: label {int(ty.max())} >= {classes} classes")
    ty = ty[ok]
    protos = {k: class_prototypes(v[ok], ty, classes) for k, v in tfeat.items()}
    gaussians = {k: fit_mahalanobis(v[ok], ty, classes) for k, v in tfeat.items()}
    lid_k = min(LID_K, int(ok.sum()))  # fit_mahalanobis has checked there are >= 2
    fitted = {k: Unsupervised(protos[k], gaussians[k], v[ok], lid_k) for k, v in tfeat.items()}
    if scores:
        for u in fitted.values():
            u.train_scores = reference_scores(u.prototypes, u.gaussians, u.reference, ty, lid_k)
    return fitted


@dataclass
class _Detection:
    """The clean, correctly classified test images of one detection and what scores them."""

    model: nn.Module
    images: torch.Tensor  # (N, C, H, W)
    labels: torch.Tensor  # (N,)
    clean: dict[str, torch.Tensor]  # feature kind -> (N, D)
    kw: dict[str, Any]  # feature_vectors' options: features, layers, gates, batch_size
    folds: int
    seed: int
    fitted: dict[str, Unsupervised]  # feature kind -> unsupervised detectors (or empty)
    detectors: tuple[str, ...]  # the detectors scored

    def report(
        self, name: str, options: dict[str, Any], keep: torch.Tensor, adv: torch.Tensor,
        kinds: Sequence[str], also: str | None = None,
    ) -> tuple[AttackReport, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
        """The report of attack ``name`` on the images ``keep`` selects, attacked into
        ``adv``, scored on ``kinds`` by the detectors (and detector ``also``); with which
        attacks succeeded, the attacked images' predictions and their features."""
        detectors = _detectors([*self.detectors, *([also] if also else [])])
        x, y = self.images[keep], self.labels[keep]
        apred, afeat = feature_vectors(self.model, adv, **self.kw)
        hit = apred != y
        report = AttackReport.of(name, options, x, adv, hit)
        for kind in kinds:
            a, b = self.clean[kind][keep][hit], afeat[kind][hit]
            report.auc[kind] = detector_aucs(
                a, b, y[hit], apred[hit], report.pairs, self.folds, self.seed,
                self.fitted.get(kind), detectors,
            )  # fmt: skip
        return report, hit, apred, afeat


def _oblivious_reports(
    run: _Detection, attacks: dict[str, dict[str, Any]]
) -> tuple[list[AttackReport], dict[str, Any]]:
    """One report per attack, every feature kind scored; and the first attack's name, which
    attacks succeeded and features (the fitted logistic detector's training data)."""
    from pellucid.apps.attacks import attack

    everyone = torch.ones(len(run.images), dtype=torch.bool)
    batch_size, reports, first = run.kw["batch_size"], [], {}
    for name, options in attacks.items():
        adv = attack(
            run.model, run.images, run.labels, name, seed=run.seed, batch_size=batch_size,
            **options,
        ).cpu()  # fmt: skip
        report, hit, _, afeat = run.report(name, dict(options), everyone, adv, list(run.clean))
        first = first or {"attack": name, "hit": hit, **afeat}
        reports.append(report)
    return reports, first


def detect_adversarial_run(
    run: str,
    attacks: Mapping[str, Mapping[str, Any]] | Sequence[str] = ("fgsm", "pgd", "cw"),
    features: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    split: str = "test",
    device: str = "auto",
    **kwargs: Any,
) -> DetectionResult:
    """:func:`detect_adversarial` on a run directory's model and ``split``; prototypes from
    its training split. Features and layers default to the run's method
    (:func:`default_features`)."""
    from pellucid.training import load_method
    from pellucid.training.run import load_run_split
    from pellucid.training.setup import resolve_device

    method, config = load_method(run, resolve_device(device))
    kinds, default_layers, gates = default_features(method)
    chosen = features is not None
    features = list(features) if features is not None else kinds
    layers = list(layers) if layers is not None else default_layers
    if gates is not None and "gate-groups" in features and layers != default_layers:
        where = "" if chosen else " (a default feature of a CSG run)"
        raise ConfigError(
            f"feature 'gate-groups'{where} groups the filters of the gated layer "
            f"{default_layers[0]!r} by CSG's gate matrix; at {', '.join(layers)} the groups "
            "would mean nothing: leave --layer out, or choose --features activations logits"
        )
    data = load_run_split(config, split, f"run {str(run)!r}")
    train = load_run_split(config, "train", f"run {str(run)!r}")
    model = method.inference_model()
    return detect_adversarial(model, data, train, attacks, features, layers, gates=gates, **kwargs)
