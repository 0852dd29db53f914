"""What adversarial detection reports (:mod:`pellucid.apps.adversarial`): one attack's
success and every detector's ROC-AUC per feature kind (:class:`AttackReport`), a model's
detection on its test images (:class:`DetectionResult`), and the scoring of one attack's
clean / adversarial feature pairs by every detector (:func:`detector_aucs`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from pellucid.apps.detectors import (
    DETECTORS,
    UNSUPERVISED,
    lid_scores,
    mahalanobis_scores,
    prototype_scores,
    roc_auc,
    supervised_auc,
    two_sided_scores,
)

__all__ = [
    "ATTACKED",
    "FOREST_ATTACKED",
    "LOGISTIC_ATTACKED",
    "MIN_PAIRS",
    "TWO_SIDED",
    "AttackReport",
    "DetectionResult",
    "Unsupervised",
    "detector_aucs",
]

TWO_SIDED = "-two-sided"  # suffix of a two-sided unsupervised detector's AUC
ATTACKED = "-attacked"  # suffix of a fitted supervised detector that an attack knew
LOGISTIC_ATTACKED = f"logistic{ATTACKED}"  # the fitted logistic detector an attack knew
FOREST_ATTACKED = f"forest{ATTACKED}"  # the fitted forest (attacked through a surrogate)
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
        """The result as plain data (what ``RUN/adversarial.json`` holds)."""
        return asdict(self)


@dataclass
class Unsupervised:
    """The unsupervised detectors of one feature kind, fitted on correctly classified clean
    training images: class prototypes (C, D), the Mahalanobis class Gaussians, the LID
    reference features (M, D) with ``lid_k`` neighbours, and each detector's scores of those
    training images (``train_scores``; None: not computed), the reference of the two-sided
    scores (reported when ``two_sided``) and of an adaptive attack's standardisation."""

    prototypes: torch.Tensor
    gaussians: Any
    reference: torch.Tensor
    lid_k: int
    train_scores: dict[str, torch.Tensor] | None = None
    two_sided: bool = False


def detector_aucs(
    a: torch.Tensor,
    b: torch.Tensor,
    labels: torch.Tensor,
    apred: torch.Tensor,
    pairs: int,
    folds: int,
    seed: int,
    fitted: Unsupervised | None,
    detectors: Sequence[str] = (*DETECTORS, *UNSUPERVISED),
) -> dict[str, float | None]:
    """The ROC-AUC of each of ``detectors`` on clean features ``a`` (N, D) of images of
    class ``labels`` and their attacked versions ``b`` (N, D), predicted ``apred``: the
    supervised ones cross-validated in ``folds`` folds, the unsupervised ones with
    ``fitted`` (and their two-sided AUCs where it has the training scores). None where fewer
    than ``MIN_PAIRS`` attacks succeeded (supervised: also fewer than ``folds``), or,
    unsupervised, without ``fitted``; a detector not in ``detectors`` has no entry."""
    unsupervised = [d for d in UNSUPERVISED if d in detectors]
    scores: dict[str, float | None] = dict.fromkeys(
        d for d in (*DETECTORS, *UNSUPERVISED) if d in detectors
    )
    two_sided = fitted.train_scores if fitted is not None and fitted.two_sided else None
    if two_sided is not None:
        scores |= dict.fromkeys(f"{d}{TWO_SIDED}" for d in unsupervised)
    if pairs < MIN_PAIRS:
        return scores
    if pairs >= folds:  # the supervised detectors need a pair in every fold
        for det in (d for d in DETECTORS if d in detectors):
            scores[det] = round(supervised_auc(a, b, det, folds, seed), 5)
    if fitted is None or not unsupervised:
        return scores
    protos, gauss, ref, k = fitted.prototypes, fitted.gaussians, fitted.reference, fitted.lid_k
    pairs_of = {  # clean features: predicted = label
        "prototype": lambda: (
            prototype_scores(protos, a, labels),
            prototype_scores(protos, b, apred),
        ),
        "mahalanobis": lambda: (mahalanobis_scores(gauss, a), mahalanobis_scores(gauss, b)),
        "lid": lambda: (lid_scores(ref, a, k), lid_scores(ref, b, k)),
    }
    for det, (s_clean, s_adv) in ((d, pairs_of[d]()) for d in unsupervised):
        scores[det] = round(roc_auc(s_clean, s_adv), 5)
        if two_sided is not None and det in two_sided:
            two = [two_sided_scores(two_sided[det], s) for s in (s_clean, s_adv)]
            scores[f"{det}{TWO_SIDED}"] = round(roc_auc(*two), 5)
    return scores
