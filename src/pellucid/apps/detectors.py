"""Clean-vs-adversarial detectors on feature vectors (:mod:`pellucid.apps.adversarial`).

Supervised (both papers' protocol; :func:`supervised_auc`): a logistic regression or a random
forest, cross-validated with each image and its attacked version in the same fold.

Unsupervised (fitted on clean training images only, no adversarial example needed):

- ``prototype`` (decoupling.md): the cosine distance to the predicted class's mean clean
  feature vector (:func:`prototype_scores`);
- ``mahalanobis`` (Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting
  Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018, Eq. 2): class-conditional
  Gaussians with one shared covariance, the score is the squared Mahalanobis distance to the
  closest class mean (:func:`fit_mahalanobis`, :func:`mahalanobis_scores`). The covariance is
  the Ledoit-Wolf shrinkage estimate (scikit-learn) of the class-centred features, which stays
  invertible when there are fewer images than dimensions; the paper's input preprocessing and
  its supervised ensemble over layers are not used, so that it is the strongest baseline that,
  like ``prototype``, sees no adversarial example;
- ``lid`` (Ma, Li, Wang, Erfani, Wijewickrema, Schoenebeck, Song, Houle & Bailey,
  "Characterizing Adversarial Subspaces Using Local Intrinsic Dimensionality", ICLR 2018,
  Eq. 3): the maximum-likelihood estimate of the local intrinsic dimensionality of a feature
  vector among its ``k`` nearest clean reference vectors (:func:`lid_scores`). Ma et al. feed
  the per-layer estimates of clean, noisy and attacked images to a logistic regression; with
  one feature kind the estimate is a single number, whose ROC-AUC is what that regression
  would reach, so here it is scored directly and needs no adversarial example either. The
  reference set is the clean training images' features (the paper takes each mini-batch's).

Each unsupervised score flags *high* values. :func:`two_sided_scores` turns one into a
two-sided score against the clean training images' scores, for attackers who push the
score below the clean range (:mod:`pellucid.apps.adaptive`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pellucid.errors import ConfigError, DataError

__all__ = [
    "DETECTORS",
    "LID_CAP",
    "UNSUPERVISED",
    "class_prototypes",
    "fit_mahalanobis",
    "forest_score",
    "forest_surrogate",
    "lid_scores",
    "logistic_score",
    "mahalanobis_scores",
    "prototype_scores",
    "reference_scores",
    "roc_auc",
    "supervised_auc",
    "two_sided_scores",
]

DETECTORS = ("logistic", "forest")  # supervised, cross-validated
UNSUPERVISED = ("prototype", "mahalanobis", "lid")  # fitted on clean training images
LID_K = 20  # neighbours of the LID estimate (Ma et al. 2018 use 20 on MNIST and CIFAR-10)
LID_CAP = 1e12  # lid_scores' finite stand-in for an infinite estimate


def supervised_auc(
    clean: torch.Tensor | np.ndarray,
    adversarial: torch.Tensor | np.ndarray,
    detector: str = "logistic",
    folds: int = 5,
    seed: int = 0,
) -> float:
    """Cross-validated ROC-AUC of a clean-vs-adversarial classifier.

    ``clean[i]`` and ``adversarial[i]`` are the features of one image and of its attacked
    version; the folds keep each pair together (``GroupKFold``), so no image is seen in
    training and scored in test. ``detector``: ``logistic`` (standardised logistic
    regression) or ``forest`` (random forest, 200 trees). Higher is better; 0.5 is chance.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    a, b = np.asarray(clean, dtype=np.float64), np.asarray(adversarial, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise DataError(f"clean {a.shape} and adversarial {b.shape} features must be (N, D) alike")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DataError("features contain NaN or infinite values")
    if not 2 <= folds <= len(a):
        raise ConfigError(f"folds must lie in [2, {len(a)}] (the pairs), got {folds}")
    est = _estimator(detector, seed)
    x = np.concatenate([a, b])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    groups = np.r_[np.arange(len(a)), np.arange(len(b))]
    cv = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(est, x, y, groups=groups, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba))


def _estimator(detector: str, seed: int):
    """A fresh supervised detector: ``logistic`` (standardised logistic regression) or
    ``forest`` (random forest, 200 trees)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if detector == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    if detector == "forest":
        return RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1)
    raise ConfigError(f"unknown detector {detector!r}; choose from: {', '.join(DETECTORS)}")


def _fit_once(detector: str, clean: torch.Tensor, adversarial: torch.Tensor, seed: int):
    """:func:`_estimator` fitted once on all of ``clean`` (label 0) vs ``adversarial`` (1)."""
    a, b = clean.double().cpu().numpy(), adversarial.double().cpu().numpy()
    return _estimator(detector, seed).fit(
        np.concatenate([a, b]), np.r_[np.zeros(len(a)), np.ones(len(b))]
    )


def logistic_score(
    clean: torch.Tensor, adversarial: torch.Tensor
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The logistic detector of :func:`supervised_auc`, fitted once on all of ``clean`` vs
    ``adversarial`` (N, D) features, as a differentiable score: (features, predicted) ->
    (N,) log-odds of "attacked" (the prediction is not used). What an adaptive attacker of
    the supervised detector differentiates (:mod:`pellucid.apps.adaptive`)."""
    est = _fit_once("logistic", clean, adversarial, 0)
    scaler, lr = est[0], est[-1]
    mean, scale = torch.from_numpy(scaler.mean_), torch.from_numpy(scaler.scale_)
    coef, bias = torch.from_numpy(lr.coef_[0]), float(lr.intercept_[0])

    def score(f: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        z = (f.double() - mean.to(f.device)) / scale.to(f.device)
        return z @ coef.to(f.device) + bias

    return score


def forest_score(
    clean: torch.Tensor, adversarial: torch.Tensor, seed: int = 0
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The random forest of :func:`supervised_auc`, fitted once on all of ``clean`` vs
    ``adversarial`` (N, D) features, as a score: (features, predicted) -> (N,) fraction of
    trees voting "attacked", on the features' device (the prediction is not used).

    A forest has no gradient, so an adaptive attacker cannot put it in the loss: it
    differentiates a surrogate (:func:`logistic_score` fitted on the same data, or
    :func:`forest_surrogate` fitted to this score's votes) and uses
    this score to choose, per image, the iterate the forest finds least suspicious
    (:func:`pellucid.apps.adaptive.adaptive_pgd`'s ``judge``; Tramer, Carlini, Brendel &
    Madry, "On Adaptive Attacks to Adversarial Example Defenses", NeurIPS 2020, Sec. 5).
    """
    est = _fit_once("forest", clean, adversarial, seed)

    def score(f: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        votes = est.predict_proba(f.detach().double().cpu().numpy())[:, 1]
        return torch.from_numpy(votes).to(f.device)

    return score


def forest_surrogate(
    forest: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    clean: torch.Tensor,
    adversarial: torch.Tensor,
    seed: int = 0,
    hidden: int = 128,
    points: int = 16,
    steps: int = 500,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A differentiable stand-in for a fitted forest (:func:`forest_score`): a one-hidden-layer
    network fitted to the forest's *votes*, whose log-odds an adaptive attacker descends
    (Tramer et al., NeurIPS 2020, Sec. 5: approximate a non-differentiable defence by a
    differentiable one trained to match it).

    The forest's votes are read where an attack goes: on each clean feature vector, its
    attacked version (the rows of ``clean`` and ``adversarial`` are pairs), ``points`` points
    on the segment from one to the other and beyond it to 1.5 times the perturbation, and
    as many with Gaussian noise of a tenth of each feature's spread. The network (standardised
    inputs, ``hidden`` ReLU units) is fitted by full-batch Adam on the soft votes
    (``steps`` steps, seeded; the global RNG is left alone). Returns (features, predicted)
    -> (N,) log-odds of "attacked" (the prediction is not used).
    """
    if clean.ndim != 2 or clean.shape != adversarial.shape or len(clean) == 0:
        raise DataError(
            "forest_surrogate: clean and adversarial must be paired (N, D) features, got "
            f"{tuple(clean.shape)} and {tuple(adversarial.shape)}"
        )
    for name, value in (("hidden", hidden), ("points", points), ("steps", steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"forest_surrogate: {name} must be an integer >= 1, got {value!r}")
    c, a = clean.double().cpu(), adversarial.double().cpu()
    gen = torch.Generator().manual_seed(seed)
    t = torch.linspace(0.0, 1.5, points, dtype=torch.float64)
    line = (c[:, None] + t[None, :, None] * (a - c)[:, None]).flatten(0, 1)
    spread = torch.cat([c, a]).std(0).clamp_min(1e-12)
    noisy = line + 0.1 * spread * torch.randn(line.shape, generator=gen, dtype=torch.float64)
    x = torch.cat([c, a, line, noisy])
    with torch.no_grad():
        votes = forest(x, torch.zeros(len(x), dtype=torch.long)).double().cpu()
    mean, scale = x.mean(0), x.std(0).clamp_min(1e-12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        ).double()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    z = (x - mean) / scale
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(z)[:, 0], votes)
            loss.backward()
            opt.step()
    net.requires_grad_(False)

    def score(f: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        device = f.device
        return net.to(device)((f.double() - mean.to(device)) / scale.to(device))[:, 0]

    return score


def reference_scores(
    protos: torch.Tensor, gauss: Any, ref: torch.Tensor, labels: torch.Tensor, lid_k: int
) -> dict[str, torch.Tensor]:
    """Each unsupervised detector's scores of its own clean training features ``ref``
    (correctly classified, so predicted = ``labels``): the reference of
    :func:`two_sided_scores` and of an adaptive attack's standardisation. LID's are
    leave-one-out, since every vector is in its own reference (none with < 3 vectors)."""
    with torch.no_grad():
        out = {
            "prototype": prototype_scores(protos, ref, labels),
            "mahalanobis": mahalanobis_scores(gauss, ref),
        }
        if len(ref) >= 3:  # LID needs 2 neighbours besides the vector itself
            out["lid"] = lid_scores(ref, ref, min(lid_k, len(ref) - 1), exclude_self=True)
    return out


def prototype_scores(
    prototypes: torch.Tensor, features: torch.Tensor, predicted: torch.Tensor
) -> torch.Tensor:
    """Unsupervised anomaly score: 1 - cos(features, prototype of the predicted class).

    ``prototypes`` (C, D): a class's mean feature vector on clean images (a row of zeros
    for a class without any, which scores 1). Higher = less like the class's clean images.
    """
    proto = prototypes[predicted.long()]  # (N, D)
    cos = torch.nn.functional.cosine_similarity(features.float(), proto.float(), dim=1, eps=1e-8)
    return 1.0 - cos


def class_prototypes(feats: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """(C, D) mean feature vector of each class (zeros for a class without images)."""
    onehot = torch.nn.functional.one_hot(labels.long(), classes).float()  # (N, C)
    counts = onehot.sum(0)[:, None]
    return onehot.T @ feats.float() / counts.clamp_min(1)  # zeros for an empty class


def roc_auc(clean: torch.Tensor, adv: torch.Tensor) -> float:
    """ROC-AUC of anomaly scores: clean images are the negatives, attacked ones the
    positives (higher score = more likely attacked)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(clean)), np.ones(len(adv))]
    return float(roc_auc_score(y, torch.cat([clean, adv]).numpy()))


def fit_mahalanobis(
    feats: torch.Tensor, labels: torch.Tensor, classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class means, the shared precision matrix and which classes have images, from clean
    features (Lee et al. 2018, Sec. 2: tied-covariance class-conditional Gaussians).

    Returns
    -------
    means : Tensor (C, D)
    precision : Tensor (D, D), the inverse of the Ledoit-Wolf covariance of the
        class-centred features
    present : Tensor (C,) bool, the classes with at least one image
    """
    from sklearn.covariance import LedoitWolf

    if feats.ndim != 2 or len(feats) != len(labels):
        raise DataError(f"features {tuple(feats.shape)} and {len(labels)} labels do not match")
    if len(feats) < 2:
        raise DataError("the Mahalanobis detector needs at least 2 clean images")
    x = feats.double()
    means = class_prototypes(x, labels, classes).double()  # (C, D)
    present = torch.bincount(labels.long(), minlength=classes) > 0
    centred = (x - means[labels.long()]).numpy()
    precision = torch.from_numpy(LedoitWolf().fit(centred).precision_)  # (D, D)
    return means, precision, present


def mahalanobis_scores(
    fitted: tuple[torch.Tensor, torch.Tensor, torch.Tensor], features: torch.Tensor
) -> torch.Tensor:
    """Unsupervised anomaly score (Lee et al. 2018, Eq. 2): the squared Mahalanobis distance
    of each feature vector to the closest class mean; higher = less like any class's clean
    images. ``fitted``: :func:`fit_mahalanobis`'s result."""
    means, precision, present = fitted
    diff = features.double()[:, None, :] - means[present][None]  # (N, C', D)
    dist = torch.einsum("ncd,de,nce->nc", diff, precision, diff)  # (N, C')
    return dist.min(dim=1).values.float()


def lid_scores(
    reference: torch.Tensor,
    features: torch.Tensor,
    k: int = LID_K,
    chunk: int = 512,
    exclude_self: bool = False,
) -> torch.Tensor:
    """Unsupervised anomaly score (Ma et al. 2018, Eq. 3): the maximum-likelihood estimate of
    the local intrinsic dimensionality of each feature vector among its ``k`` nearest
    neighbours in ``reference``,

        LID(x) = -( (1/k) sum_{i=1..k} log(r_i(x) / r_k(x)) )^(-1),

    with ``r_i`` the Euclidean distance to the i-th nearest reference vector. Higher = the
    vector lies in a higher-dimensional neighbourhood than clean data, which Ma et al. found
    of adversarial regions.

    Parameters
    ----------
    reference : Tensor (M, D)
        Clean feature vectors (the scored vectors must not be among them, unless
        ``exclude_self``).
    features : Tensor (N, D)
        The vectors to score.
    k : int
        Neighbours, 2 <= k <= M (<= M - 1 with ``exclude_self``).
    chunk : int
        Rows of ``features`` whose distances are computed at once (memory only).
    exclude_self : bool
        ``features`` is ``reference`` itself: row i is not its own neighbour (leave-one-out
        scores of the clean reference, e.g. to calibrate a threshold on them). Other rows
        equal to it still count.

    Returns
    -------
    Tensor (N,)
        Finite scores. Where the estimate is degenerate it is capped rather than infinite or
        undefined: ``k`` equidistant neighbours (common for binary features such as a
        calculation path) score the cap :data:`LID_CAP`; distances of zero are raised to
        ``1e-12 r_k``; a vector equal to ``k`` reference vectors scores 0.
    """
    if isinstance(k, bool) or not isinstance(k, int):
        raise ConfigError(f"lid_scores: k must be an integer, got {k!r}")
    if reference.ndim != 2 or features.ndim != 2 or reference.shape[1] != features.shape[1]:
        raise DataError(
            f"lid_scores: reference {tuple(reference.shape)} and features "
            f"{tuple(features.shape)} must be (M, D) and (N, D) with the same D"
        )
    if exclude_self and len(features) != len(reference):
        raise DataError(
            f"lid_scores: exclude_self needs the reference itself as features, got "
            f"{len(features)} rows for a reference of {len(reference)}"
        )
    top = len(reference) - int(exclude_self)
    if not 2 <= k <= top:
        raise ConfigError(
            f"lid_scores: k must lie in [2, {top}] (the reference"
            f"{' without the vector itself' if exclude_self else ''}), got {k}"
        )
    ref = reference.double()
    if not (torch.isfinite(ref).all() and torch.isfinite(features).all()):
        raise DataError("lid_scores: features contain NaN or infinite values")
    out = []
    for start in range(0, len(features), chunk):
        x = features[start : start + chunk].double()
        d = torch.cdist(x, ref)
        if exclude_self:  # row i of this chunk is reference row start + i
            rows = torch.arange(len(x))
            d[rows, rows + start] = math.inf
        r = d.topk(k, dim=1, largest=False).values  # (n, k) ascending
        rk = r[:, -1:]
        ratio = (r / rk.clamp_min(1e-300)).clamp_min(1e-12)
        mean_log = torch.log(ratio).mean(dim=1)  # <= 0
        lid = -1.0 / mean_log.clamp_max(-1e-12)
        lid[rk[:, 0] == 0] = 0.0  # equal to k reference vectors: on the clean data
        out.append(lid)
    return torch.cat(out).float() if out else torch.zeros(0)


def two_sided_scores(reference: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """An anomaly score made two-sided: how far into *either* tail of the clean reference
    scores each score lies.

    The detectors above flag high scores. An attacker who knows one can overshoot and give
    its images scores *lower* than clean images' (``pellucid.apps.adaptive``), which a
    one-sided score ranks as the cleanest of all. The two-sided score is
    ``|F(s) - 1/2|``, with ``F`` the mid-rank empirical distribution function of the clean
    ``reference`` scores (0 at the clean median, 1/2 - 1/(2M) at the extremes), plus, beyond
    the reference's range, the distance past its end divided by the range, so that the
    order continues into the tails. Only ranks of the reference matter, not its scale or
    skew. The price: extreme-but-high clean scores now share the ranking with low ones, so
    against an attacker who only raises the score it is somewhat weaker than the one-sided
    score (measured in ``benchmarks/adaptive.py``).

    Parameters
    ----------
    reference : Tensor (M,)
        The detector's scores of clean images (not the ones scored), M >= 2.
    scores : Tensor (N,)

    Returns
    -------
    Tensor (N,) float64
        Higher = further from the clean median.
    """
    if reference.ndim != 1 or scores.ndim != 1:
        raise DataError(
            f"two_sided_scores: reference {tuple(reference.shape)} and scores "
            f"{tuple(scores.shape)} must be 1-D"
        )
    if len(reference) < 2:
        raise DataError("two_sided_scores: the reference needs at least 2 clean scores")
    ref, s = reference.double().sort().values, scores.double()
    if not (torch.isfinite(ref).all() and torch.isfinite(s).all()):
        raise DataError("two_sided_scores: scores contain NaN or infinite values")
    below = torch.searchsorted(ref, s, right=False)
    upto = torch.searchsorted(ref, s, right=True)
    rank = (below + upto).double() / (2 * len(ref))  # mid-rank ECDF in [0, 1]
    span = (ref[-1] - ref[0]).clamp_min(1e-12)
    past = ((s - ref[-1]).clamp_min(0) + (ref[0] - s).clamp_min(0)) / span
    return (rank - 0.5).abs() + past
