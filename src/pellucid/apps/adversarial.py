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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from pellucid.apps import attacks as _attacks  # noqa: F401  (fills ATTACKS)
from pellucid.apps.adaptive import ADAPTIVE_FEATURES, adaptive_pgd, detector_score
from pellucid.apps.detectors import (  # noqa: F401  (prototype_scores, supervised_auc: public)
    DETECTORS,
    LID_CAP,
    LID_K,
    UNSUPERVISED,
    class_prototypes,
    fit_mahalanobis,
    lid_scores,
    logistic_score,
    mahalanobis_scores,
    prototype_scores,
    reference_scores,
    roc_auc,
    supervised_auc,
    two_sided_scores,
)
from pellucid.errors import ConfigError, DataError
from pellucid.registry import ATTACKS

__all__ = [
    "DEFAULT_ATTACKS",
    "FEATURES",
    "AttackReport",
    "DetectionResult",
    "detect_adversarial",
    "detect_adversarial_run",
    "feature_vectors",
    "lid_scores",
    "mahalanobis_scores",
    "prototype_scores",
    "supervised_auc",
]

FEATURES = ("activations", "gate-groups", "path", "logits")
ADAPTIVE_DETECTORS = (*UNSUPERVISED, "logistic")  # detectors an adaptive attack can target
ADAPTIVE_OPTIONS = ("eps", "alpha", "steps", "weight", "kappa", "aim", "temperature")
AIMS = ("low", "median")  # what an adaptive attack does with the detector's score
TWO_SIDED = "-two-sided"  # suffix of a two-sided unsupervised detector's AUC
LOGISTIC_ATTACKED = "logistic-attacked"  # the fitted logistic detector an attack knew
DEFAULT_ATTACKS: dict[str, dict[str, Any]] = {"fgsm": {}, "pgd": {}, "cw": {}}
MIN_PAIRS = 10  # fewer successful attacks than this: no AUC (None)


@dataclass
class AttackReport:
    """Detection of one attack: the attack's success and, per feature kind, the ROC-AUC of
    each detector (``logistic``, ``forest``: cross-validated; ``prototype``, ``mahalanobis``,
    ``lid``: unsupervised);
    None when fewer than ``MIN_PAIRS`` attacks succeeded."""

    attack: str
    options: dict[str, Any]
    attacked: int  # correctly classified clean images that were attacked
    success_rate: float  # share of them whose prediction the attack changed
    pairs: int  # successful attacks = clean / adversarial pairs used for detection
    linf: float  # mean L-inf norm of the successful perturbations (pixel units)
    l2: float  # mean L2 norm
    auc: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        attack: str,
        options: dict[str, Any],
        images: torch.Tensor,
        adversarial: torch.Tensor,
        hit: torch.Tensor,
    ) -> AttackReport:
        """The report's attack statistics from the images, their attacked versions and
        which attacks succeeded (``auc`` left to fill)."""
        delta = (adversarial - images)[hit].flatten(1)
        return cls(
            attack=attack,
            options=options,
            attacked=len(images),
            success_rate=round(float(hit.float().mean()), 5),
            pairs=int(hit.sum()),
            linf=round(float(delta.abs().amax(1).mean()), 5) if len(delta) else math.nan,
            l2=round(float(delta.norm(dim=1).mean()), 5) if len(delta) else math.nan,
        )


@dataclass
class DetectionResult:
    """Adversarial detection of one model on ``n`` test images."""

    n: int
    clean_accuracy: float
    features: dict[str, int]  # feature kind -> its dimension
    layers: list[str]
    folds: int
    prototype_images: int
    attacks: list[AttackReport]
    lid_k: int = 0  # neighbours of the LID detector (0: no unsupervised detector)

    def table(self) -> list[dict[str, Any]]:
        """One row per attack and feature kind."""
        return [
            {"attack": r.attack, "success_rate": r.success_rate, "pairs": r.pairs, "feature": f}
            | scores
            for r in self.attacks
            for f, scores in r.auc.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_kinds(features: Sequence[str], gates: torch.Tensor | None, layers: Sequence[str]):
    if isinstance(features, str):
        features = [features]
    if not features:
        raise ConfigError("detect_adversarial: no feature kind given")
    for kind in features:
        if kind not in FEATURES:
            raise ConfigError(f"unknown feature kind {kind!r}; choose from: {', '.join(FEATURES)}")
    if "gate-groups" in features:
        if gates is None:
            raise ConfigError("feature 'gate-groups' needs the gate matrix G (a CSG run)")
        if len(layers) != 1:
            raise ConfigError("feature 'gate-groups' needs exactly one layer (the gated one)")
    if "activations" in features or "gate-groups" in features:
        if not layers:
            raise ConfigError("features 'activations' / 'gate-groups' need a layer name")
    return list(features)


@torch.no_grad()
def feature_vectors(
    model: nn.Module,
    images: torch.Tensor,
    features: Sequence[str] = ("activations",),
    layers: Sequence[str] = (),
    gates: torch.Tensor | None = None,
    batch_size: int = 256,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Predictions and feature vectors of ``images`` in one forward pass per batch.

    Parameters
    ----------
    model : nn.Module
        The classifier (eval mode inside, restored after); for ``path`` a decoupled model.
    features : sequence of str
        ``activations``: GAP of each layer in ``layers``, concatenated; ``gate-groups``: the
        one layer's GAP averaged within each class's filter group of ``gates`` (C, K);
        ``path``: the binary calculation path; ``logits``: the model's output.

    Returns
    -------
    (Tensor (N,), dict)
        Predicted classes, and feature kind -> (N, D) float tensor, on the CPU.
    """
    from pellucid.apps.attacks import check_images
    from pellucid.hooks import capture
    from pellucid.state import model_device, model_state

    check_images(images)
    layers = list(layers)
    features = _check_kinds(features, gates, layers)
    names = layers if {"activations", "gate-groups"} & set(features) else []
    device = model_device(model)
    preds: list[torch.Tensor] = []
    out: dict[str, list[torch.Tensor]] = {k: [] for k in features}
    with model_state(model), capture(model, names, detach=True) as store:
        for i in range(0, len(images), batch_size):
            logits = model(images[i : i + batch_size].to(device))
            preds.append(logits.argmax(1).cpu())
            pooled = [_gap(store[n], n) for n in names]
            for kind in features:
                if kind == "activations":
                    out[kind].append(torch.cat(pooled, 1).cpu())
                elif kind == "gate-groups":
                    out[kind].append(_group(pooled[0], gates).cpu())
                elif kind == "path":
                    out[kind].append(_path(model).cpu())
                else:
                    out[kind].append(logits.float().cpu())
    return torch.cat(preds), {k: torch.cat(v) for k, v in out.items()}


def _gap(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.dim() == 4:
        return t.float().mean(dim=(2, 3))
    if t.dim() == 2:
        return t.float()
    raise ConfigError(f"layer {name!r} outputs shape {tuple(t.shape)}, not (N, C[, H, W])")


def _group(pooled: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    g = gates.detach().float().to(pooled.device)  # (C, K)
    if g.dim() != 2 or g.shape[1] != pooled.shape[1]:
        raise ConfigError(
            f"gate matrix of shape {tuple(g.shape)} does not match the layer's "
            f"{pooled.shape[1]} channels"
        )
    return pooled @ g.T / g.sum(1).clamp_min(1e-8)  # (N, C)


def _path(model: nn.Module) -> torch.Tensor:
    from pellucid.methods.controllers import gated_layers, last_gates

    if not gated_layers(model):
        raise ConfigError("feature 'path' needs a decoupled model (controlling modules)")
    return torch.cat([g.float() for g in last_gates(model).values()], 1)


def _images(data: Any, n: int | None, what: str) -> tuple[torch.Tensor, torch.Tensor]:
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
    two_sided : bool
        Also score each unsupervised detector two-sided
        (:func:`pellucid.apps.detectors.two_sided_scores` against the clean training images'
        scores; LID's leave-one-out), reported as ``DETECTOR-two-sided``.

    Returns
    -------
    DetectionResult
        Per attack: success rate, perturbation size, and per feature kind the ROC-AUC of the
        logistic, forest, prototype, Mahalanobis and LID detectors (higher is better, 0.5 =
        chance).
    """
    from pellucid.apps.attacks import attack

    if isinstance(attacks, str):
        attacks = [attacks]
    attacks = {a: {} for a in attacks} if not isinstance(attacks, Mapping) else dict(attacks)
    if not attacks:
        raise ConfigError("detect_adversarial: no attack given")
    for name in attacks:
        if name not in ATTACKS:
            raise ConfigError(ATTACKS.unknown_message(name))
    layers = list(layers)
    if not layers and {"activations", "gate-groups"} & set(features):
        from pellucid.models import default_layer

        layers = [default_layer(model)]  # the last conv stage
    features = _check_kinds(features, gates, layers)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, got {folds!r}")
    images, labels = _images(data, n, "detect_adversarial")
    kw = {"features": features, "layers": layers, "gates": gates, "batch_size": batch_size}
    pred, clean = feature_vectors(model, images, **kw)
    correct = pred == labels
    if int(correct.sum()) < MIN_PAIRS:
        raise DataError(
            f"detect_adversarial: only {int(correct.sum())} of {len(images)} images are "
            f"classified correctly; at least {MIN_PAIRS} are needed"
        )
    images, labels = images[correct], labels[correct]
    clean = {k: v[correct] for k, v in clean.items()}
    protos, gauss, refs, lid_k, calib = None, {}, {}, 0, {}
    if train_data is not None:
        tx, ty = _images(train_data, prototype_images, "prototype images")
        tpred, tfeat = feature_vectors(model, tx, **kw)
        ok = tpred == ty
        classes = _num_classes(model, images[:1])  # any class an attack may push towards
        if int(ty.max()) >= classes:
            raise DataError(f"prototype images: label {int(ty.max())} >= {classes} classes")
        protos = {k: class_prototypes(v[ok], ty[ok], classes) for k, v in tfeat.items()}
        gauss = {k: fit_mahalanobis(v[ok], ty[ok], classes) for k, v in tfeat.items()}
        refs = {k: v[ok] for k, v in tfeat.items()}
        lid_k = min(LID_K, int(ok.sum()))  # fit_mahalanobis has checked there are >= 2
        if two_sided or adaptive:  # their own scores: two-sided references, adaptive scales
            calib = {
                k: reference_scores(protos[k], gauss[k], refs[k], ty[ok], lid_k) for k in features
            }

    adaptive = [adaptive] if isinstance(adaptive, str) else list(adaptive)
    for det in adaptive:
        if det not in ADAPTIVE_DETECTORS:
            raise ConfigError(
                f"adaptive: unknown detector {det!r}; choose from: {', '.join(ADAPTIVE_DETECTORS)}"
            )
    if set(adaptive) & set(UNSUPERVISED) and protos is None:
        raise ConfigError("adaptive attacks need train_data (the detectors are fitted on it)")
    if two_sided and protos is None:
        raise ConfigError("two-sided scores need train_data (their reference is its scores)")
    adaptive_options = {"eps": 0.2, "alpha": 0.02, "steps": 40, **(adaptive_options or {})}
    unknown = sorted(set(adaptive_options) - set(ADAPTIVE_OPTIONS))
    if unknown:
        raise ConfigError(
            f"adaptive: unknown option(s) {', '.join(unknown)}; choose from: "
            f"{', '.join(ADAPTIVE_OPTIONS)}"
        )
    aim = adaptive_options.pop("aim", "low")
    if aim not in AIMS:
        raise ConfigError(f"adaptive: unknown aim {aim!r}; choose from: {', '.join(AIMS)}")
    fitted_for = {  # what _scores needs per feature kind
        k: (protos[k], gauss[k], refs[k], lid_k, calib[k] if two_sided else None)
        for k in (features if protos is not None else ())
    }

    reports = []
    oblivious: dict[str, torch.Tensor] | None = None  # the first attack's: logistic is fitted
    for name, options in attacks.items():
        adv = attack(model, images, labels, name, seed=seed, batch_size=batch_size, **options)
        adv = adv.cpu()
        apred, afeat = feature_vectors(model, adv, **kw)
        hit = apred != labels
        if oblivious is None:
            oblivious = {"hit": hit, **afeat}
        report = AttackReport.of(name, dict(options), images, adv, hit)
        for kind in features:
            a, b = clean[kind][hit], afeat[kind][hit]
            report.auc[kind] = _scores(
                a, b, labels[hit], apred[hit], report.pairs, folds, seed, fitted_for.get(kind)
            )
        reports.append(report)
    for det in adaptive:
        for kind in (k for k in features if k in ADAPTIVE_FEATURES):
            # who is attacked: every image, or (logistic) the half its detector did not see
            attacked = torch.ones(len(images), dtype=torch.bool)
            extra: dict[str, Any] = {}
            if det == "logistic":
                assert oblivious is not None  # at least one attack ran
                score, base, attacked = _fit_logistic(
                    clean[kind], oblivious[kind], oblivious["hit"], next(iter(attacks))
                )
                extra["trained_on"] = next(iter(attacks))
            else:
                fitted = {"prototype": protos[kind], "mahalanobis": gauss[kind]}.get(det)
                score = detector_score(det, (refs[kind], lid_k) if det == "lid" else fitted)
                if det not in calib[kind]:
                    raise DataError("an adaptive attack on LID needs >= 3 correct training images")
                base = calib[kind][det]  # clean training images' scores
                if det == "lid":  # a capped estimate flags a degenerate neighbourhood; a few
                    kept = base[base < 0.5 * LID_CAP]  # would swamp the mean and std
                    base = kept if len(kept) >= 2 else base
            mu, sigma = float(base.mean()), float(base.std())
            target = None if aim == "low" else (float(base.median()) - mu) / max(sigma, 1e-12)
            x, y = images[attacked], labels[attacked]
            adv, _ = adaptive_pgd(
                model, x, y, kind, score, (mu, sigma), layers=layers, gates=gates,
                aim=target, seed=seed, batch_size=batch_size, **adaptive_options,
            )  # fmt: skip
            options = {**adaptive_options, "aim": aim, **extra}
            apred, afeat = feature_vectors(model, adv, **kw)
            hit = apred != y
            report = AttackReport.of(f"adaptive-{det}", {**options, "feature": kind}, x, adv, hit)
            a, b = clean[kind][attacked][hit], afeat[kind][hit]
            report.auc[kind] = _scores(
                a, b, y[hit], apred[hit], report.pairs, folds, seed, fitted_for.get(kind)
            )
            if det == "logistic":  # the detector the attack knew, next to a retrained one
                with torch.no_grad():
                    fixed = roc_auc(score(a, y[hit]), score(b, apred[hit]))
                report.auc[kind][LOGISTIC_ATTACKED] = (
                    round(fixed, 5) if report.pairs >= MIN_PAIRS else None
                )
            reports.append(report)
    return DetectionResult(
        n=len(correct),
        clean_accuracy=round(float(correct.float().mean()), 5),
        features={k: int(v.shape[1]) for k, v in clean.items()},
        layers=list(layers),
        folds=folds,
        prototype_images=0 if protos is None else int(ok.sum()),
        attacks=reports,
        lid_k=lid_k,
    )


def _scores(
    a: torch.Tensor,
    b: torch.Tensor,
    labels: torch.Tensor,
    apred: torch.Tensor,
    pairs: int,
    folds: int,
    seed: int,
    fitted: tuple[torch.Tensor, Any, torch.Tensor, int, dict[str, torch.Tensor] | None] | None,
) -> dict[str, float | None]:
    """Every detector's ROC-AUC on clean features ``a`` and their attacked versions ``b``
    (None where too few attacks succeeded, or, unsupervised, without training images); with
    the clean training scores in ``fitted`` also the unsupervised ones' two-sided AUCs."""
    scores: dict[str, float | None] = dict.fromkeys((*DETECTORS, *UNSUPERVISED))
    if fitted is not None and fitted[4] is not None:
        scores |= dict.fromkeys(f"{d}{TWO_SIDED}" for d in UNSUPERVISED)
    if pairs < max(MIN_PAIRS, folds):
        return scores
    for det in DETECTORS:
        scores[det] = round(supervised_auc(a, b, det, folds, seed), 5)
    if fitted is not None:
        protos, gauss, ref, lid_k, reference = fitted
        pairs_of = {
            "prototype": (prototype_scores(protos, a, labels), prototype_scores(protos, b, apred)),
            "mahalanobis": (mahalanobis_scores(gauss, a), mahalanobis_scores(gauss, b)),
            "lid": (lid_scores(ref, a, lid_k), lid_scores(ref, b, lid_k)),
        }  # clean features: predicted = label
        for det, (s_clean, s_adv) in pairs_of.items():
            scores[det] = round(roc_auc(s_clean, s_adv), 5)
            if reference is not None and det in reference:
                two = [two_sided_scores(reference[det], s) for s in (s_clean, s_adv)]
                scores[f"{det}{TWO_SIDED}"] = round(roc_auc(*two), 5)
    return scores


def _fit_logistic(
    clean: torch.Tensor, adversarial: torch.Tensor, hit: torch.Tensor, attack: str
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """The supervised detector an adaptive attacker faces
    (:func:`~pellucid.apps.detectors.logistic_score`), fitted on the images at even
    positions (clean vs the first attack's successful versions). Returns its score, its
    scores of the clean fitting half, and which images are left to attack (odd positions)."""
    half = torch.arange(len(clean)) % 2 == 0
    fit = half & hit
    if int(fit.sum()) < MIN_PAIRS:
        raise DataError(
            f"adaptive logistic: only {int(fit.sum())} successful {attack!r} attacks to fit "
            f"the detector on, at least {MIN_PAIRS} are needed"
        )
    score = logistic_score(clean[fit], adversarial[fit])
    with torch.no_grad():
        base = score(clean[half], torch.zeros(int(half.sum()), dtype=torch.long)).float()
    return score, base, ~half


def default_features(method: Any) -> tuple[list[str], list[str], torch.Tensor | None]:
    """(features, layers, gates) of a run's method: CSG: gate groups and the gated layer's
    activations; decoupling: the path and the gated layers' activations; otherwise the
    analysis layer's activations; ``logits`` always."""
    from pellucid.methods.controllers import gated_layers

    model = method.inference_model()
    if method.name == "csg":
        return ["gate-groups", "activations", "logits"], [method.layer], method.gates
    if gated_layers(model):
        return ["path", "activations", "logits"], list(gated_layers(model)), None
    return ["activations", "logits"], [method.analysis_layer()], None


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
    from pellucid.data import load_dataset
    from pellucid.training import load_method
    from pellucid.training.setup import resolve_device

    method, config = load_method(run, resolve_device(device))
    kinds, default_layers, gates = default_features(method)
    features = list(features) if features is not None else kinds
    layers = list(layers) if layers is not None else default_layers
    opts = dict(seed=config.data_seed, **config.data.options)
    data = load_dataset(config.data.name, split, **opts)
    train = load_dataset(config.data.name, "train", **opts)
    model = method.inference_model()
    return detect_adversarial(model, data, train, attacks, features, layers, gates=gates, **kwargs)
