"""The adaptive attacks of :func:`pellucid.apps.adversarial.detect_adversarial`: attackers
who know the detector (Tramer, Carlini, Brendel & Madry, "On Adaptive Attacks to Adversarial
Example Defenses", NeurIPS 2020). Their options are checked here (:func:`adaptive_options`);
each runs :func:`pellucid.apps.adaptive.adaptive_pgd` against one detector on one feature
kind and reports as attack ``adaptive-DETECTOR``: an unsupervised detector standardised by
its clean training scores (:func:`adaptive_unsupervised`), or a supervised one fitted on half
the images against the first oblivious attack, the other half attacked
(:func:`adaptive_supervised`; the forest through a surrogate, judged by itself)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from pellucid.apps.adaptive import adaptive_pgd, detector_score
from pellucid.apps.adversarial_report import ATTACKED, MIN_PAIRS, AttackReport
from pellucid.apps.detectors import (
    LID_CAP,
    UNSUPERVISED,
    forest_score,
    forest_surrogate,
    logistic_score,
    roc_auc,
)
from pellucid.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pellucid.apps.adversarial import _Detection

__all__ = [
    "ADAPTIVE_DETECTORS",
    "ADAPTIVE_OPTIONS",
    "AIMS",
    "SUPERVISED_ADAPTIVE",
    "SURROGATES",
    "adaptive_options",
    "adaptive_supervised",
    "adaptive_unsupervised",
]

SUPERVISED_ADAPTIVE = ("logistic", "forest")  # fitted on half the images' first attack
ADAPTIVE_DETECTORS = (*UNSUPERVISED, *SUPERVISED_ADAPTIVE)  # what an adaptive attack can target
ADAPTIVE_OPTIONS = ("eps", "alpha", "steps", "weight", "kappa", "aim", "temperature", "surrogate")
SURROGATES = ("logistic", "votes")  # what an adaptive attack on the forest descends
AIMS = ("low", "median")  # what an adaptive attack does with the detector's score


def adaptive_options(
    adaptive: Sequence[str] | str, options: Mapping[str, Any] | None
) -> tuple[list[str], dict[str, Any], str, str]:
    """The detectors to attack adaptively, the attack's options (defaults filled in, without
    ``aim`` and ``surrogate``), its aim and the forest's surrogate, checked."""
    adaptive = [adaptive] if isinstance(adaptive, str) else list(adaptive)
    if options and not adaptive:
        raise ConfigError(
            f"adaptive options ({', '.join(options)}) given, but no detector to attack "
            f"adaptively; choose some from: {', '.join(ADAPTIVE_DETECTORS)}"
        )
    for det in adaptive:
        if det not in ADAPTIVE_DETECTORS:
            raise ConfigError(
                f"adaptive: unknown detector {det!r}; choose from: {', '.join(ADAPTIVE_DETECTORS)}"
            )
    options = {"eps": 0.2, "alpha": 0.02, "steps": 40, **(options or {})}
    unknown = sorted(set(options) - set(ADAPTIVE_OPTIONS))
    if unknown:
        raise ConfigError(
            f"adaptive: unknown option(s) {', '.join(unknown)}; choose from: "
            f"{', '.join(ADAPTIVE_OPTIONS)}"
        )
    aim = options.pop("aim", "low")
    if aim not in AIMS:
        raise ConfigError(f"adaptive: unknown aim {aim!r}; choose from: {', '.join(AIMS)}")
    surrogate = options.pop("surrogate", None)
    if surrogate is not None and "forest" not in adaptive:
        raise ConfigError("adaptive: the option surrogate is for the forest, which is not attacked")
    if (surrogate := surrogate or "logistic") not in SURROGATES:
        raise ConfigError(
            f"adaptive: unknown surrogate {surrogate!r}; choose from: {', '.join(SURROGATES)}"
        )
    return adaptive, options, aim, surrogate


def adaptive_unsupervised(
    run: _Detection, det: str, kind: str, aim: str, options: dict[str, Any]
) -> AttackReport:
    """Adaptive PGD on every image against unsupervised detector ``det`` on ``kind``,
    standardised by (and, with aim ``median``, aimed at) its clean training scores."""
    fitted = run.fitted[kind]
    scored = {"prototype": fitted.prototypes, "mahalanobis": fitted.gaussians}.get(det)
    score = detector_score(det, (fitted.reference, fitted.lid_k) if det == "lid" else scored)
    if det not in fitted.train_scores:
        raise DataError("an adaptive attack on LID needs >= 3 correct training images")
    base = fitted.train_scores[det]  # clean training images' scores
    if det == "lid":  # a capped estimate flags a degenerate neighbourhood; a few would
        kept = base[base < 0.5 * LID_CAP]  # swamp the mean and std
        base = kept if len(kept) >= 2 else base
    everyone = torch.ones(len(run.images), dtype=torch.bool)
    return _adaptive_attack(run, det, kind, score, base, everyone, aim, options, {})[0]


def adaptive_supervised(
    run: _Detection, det: str, kind: str, first: dict[str, Any], aim: str,
    options: dict[str, Any], surrogate: str = "logistic",
) -> AttackReport:  # fmt: skip
    """Adaptive PGD against supervised detector ``det`` fitted on the images at even
    positions (clean vs the first attack), on the images at odd positions; the report adds
    the fixed detector's AUC (``DET-attacked``) to the retrained one's. ``logistic`` is
    differentiated itself; ``forest`` through a ``surrogate`` (``logistic``: the logistic
    regression, ``votes``: a network fitted to the forest's votes), the forest choosing the
    kept iterate."""
    clean, adversarial = run.clean[kind], first[kind]
    fit, attacked = _supervised_halves(first["hit"], first["attack"], det)
    judge = forest_score(clean[fit], adversarial[fit], run.seed) if det == "forest" else None
    if judge is not None and surrogate == "votes":
        score = forest_surrogate(judge, clean[fit], adversarial[fit], run.seed)
    else:
        score = logistic_score(clean[fit], adversarial[fit])
    with torch.no_grad():
        half = ~attacked  # the clean images of the fitting half standardise the score
        base = score(clean[half], torch.zeros(int(half.sum()), dtype=torch.long)).float()
    extra = {"trained_on": first["attack"]} | ({"surrogate": surrogate} if judge else {})
    report, hit, apred, afeat = _adaptive_attack(
        run, det, kind, score, base, attacked, aim, options, extra, judge
    )
    a, b = clean[attacked][hit], afeat[kind][hit]
    y, apred = run.labels[attacked][hit], apred[hit]
    fixed_score = judge or score
    with torch.no_grad():
        fixed = roc_auc(fixed_score(a, y), fixed_score(b, apred))
    report.auc[kind][f"{det}{ATTACKED}"] = round(fixed, 5) if report.pairs >= MIN_PAIRS else None
    return report


def _adaptive_attack(
    run: _Detection, det: str, kind: str, score: Any, base: torch.Tensor,
    attacked: torch.Tensor, aim: str, options: dict[str, Any], extra: dict[str, Any],
    judge: Any = None,
) -> tuple[AttackReport, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """Adaptive PGD on the ``attacked`` images against ``score`` on ``kind``, standardised
    by the clean scores ``base`` (the kept iterates chosen by ``judge`` when given):
    :meth:`_Detection.report`'s result (``kind`` scored)."""
    mu, sigma = float(base.mean()), float(base.std())
    target = None if aim == "low" else (float(base.median()) - mu) / max(sigma, 1e-12)
    x, y = run.images[attacked], run.labels[attacked]
    layers, gates = run.kw["layers"], run.kw["gates"]
    adv, _ = adaptive_pgd(
        run.model, x, y, kind, score, (mu, sigma), layers=layers, gates=gates, aim=target,
        seed=run.seed, batch_size=run.kw["batch_size"], judge=judge, **options,
    )  # fmt: skip
    name, reported = f"adaptive-{det}", {**options, "aim": aim, **extra, "feature": kind}
    return run.report(name, reported, attacked, adv, [kind], also=det)


def _supervised_halves(
    hit: torch.Tensor, attack: str, det: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which images a supervised detector an adaptive attacker faces is fitted on (even
    positions whose first attack ``attack`` succeeded: clean vs attacked) and which are left
    to attack (odd positions)."""
    half = torch.arange(len(hit)) % 2 == 0
    fit = half & hit
    if int(fit.sum()) < MIN_PAIRS:
        raise DataError(
            f"adaptive {det}: only {int(fit.sum())} successful {attack!r} attacks to fit "
            f"the detector on, at least {MIN_PAIRS} are needed"
        )
    return fit, ~half
