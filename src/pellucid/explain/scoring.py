"""Scores of attribution maps and their comparison: per-image localisation and faithfulness
scores (``evaluation.md``), their means as the benchmarks report them, and the paired
bootstrap interval of the difference between two explainers on the same images."""

from __future__ import annotations

import math
import statistics
import warnings
from typing import Any

import torch
from torch import nn

from pellucid.errors import DataError
from pellucid.models.base import normalisation_mean

# Every per-image score, with its direction (also declared in pellucid.metrics.SPECS).
SCORES = {
    "pointing_game": True,
    "energy_pointing_game": True,
    "top_q_iou": True,
    "deletion_auc": False,
    "deletion_auc_mean_fill": False,
    "deletion_auc_road": False,
    "insertion_auc": True,
}


def score_maps(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    target: torch.Tensor,
    masks: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    steps: int = 64,
    road: bool = False,
    road_steps: int = 16,
) -> dict[str, torch.Tensor]:
    """Per-image scores of ``maps`` (each a tensor (N,)); localisation scores need ``masks``.

    ``pointing_game`` holds 0/1 hits; its class-averaged accuracy is :func:`summarise`'s job.
    ``deletion_auc`` deletes into black (pixel value 0, evaluation.md); where the model has a
    :class:`~pellucid.models.Normalize` layer, ``deletion_auc_mean_fill`` deletes into its
    mean colour, which is zero of the normalised input -- what the RISE authors' code does
    -- and is less confounded by the silhouette a black cut-out leaves on a textured image.
    With ``road``, ``deletion_auc_road`` imputes the deleted pixels from their neighbours
    (ROAD's noisy linear imputation, over ``road_steps`` steps: it is the slowest score).
    """
    from pellucid.metrics import (
        deletion_auc,
        energy_pointing_game,
        insertion_auc,
        pointing_game,
        top_q_iou,
    )

    out: dict[str, torch.Tensor] = {}
    if masks is not None:
        out["pointing_game"] = pointing_game(maps, masks)["hits"].float()
        out["energy_pointing_game"] = energy_pointing_game(maps, masks).float()
        out["top_q_iou"] = top_q_iou(maps, masks, q=0.3).float()
    out["deletion_auc"] = deletion_auc(model, images, maps, target, steps=steps).float()
    if normalisation_mean(model, images.shape[1]) is not None:
        out["deletion_auc_mean_fill"] = deletion_auc(
            model, images, maps, target, steps=steps, fill="mean"
        ).float()
    if road:
        out["deletion_auc_road"] = deletion_auc(
            model, images, maps, target, steps=road_steps, fill="road"
        ).float()
    out["insertion_auc"] = insertion_auc(model, images, maps, target, steps=steps).float()
    return {k: v.cpu() for k, v in out.items()}


def summarise(scores: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """Means of per-image scores; the pointing game is averaged per class, then over classes
    (as the TorchRay benchmark does)."""
    out = {}
    labels = torch.as_tensor(labels).cpu()  # scores are on the CPU; labels may not be
    for key, vals in scores.items():
        vals = vals.cpu()
        if key == "pointing_game":
            per_class = [float(vals[labels == c].mean()) for c in labels.unique()]
            out[key] = round(statistics.mean(per_class), 4)
        else:
            out[key] = round(float(vals.mean()), 4)
    return out


def summarise_by_prediction(
    scores: dict[str, torch.Tensor], labels: torch.Tensor, predicted: torch.Tensor
) -> dict[str, dict[str, Any]]:
    """:func:`summarise` apart for the images the model classifies correctly and for those it
    misclassifies (the maps explaining the true class ``labels`` in both).

    The pointing game is usually run for the ground-truth class whatever the model predicts
    (TorchRay). On a misclassified image the explained class is one the model does not
    choose, and what a faithful map should point at is not the object's evidence alone, so a
    pointing score near its ceiling can be decided by these few images only: this split shows
    where the hits and misses are.

    Parameters
    ----------
    scores : dict of Tensor (N,)
        Per-image scores (:func:`score_maps`).
    labels, predicted : Tensor (N,)
        True and predicted class of each image.

    Returns
    -------
    dict
        ``{"correct": {...}, "misclassified": {...}}``, each with ``n`` (images) and, where
        ``n > 0``, the summary of those images; the pointing game of each part also gets
        ``pointing_hits`` (a count, not class-averaged).
    """
    y = torch.as_tensor(labels).detach().cpu()
    p = torch.as_tensor(predicted).detach().cpu()
    if y.ndim != 1 or p.shape != y.shape:
        raise DataError(
            f"summarise_by_prediction: labels and predicted must both be (N,), got "
            f"{tuple(y.shape)} and {tuple(p.shape)}"
        )
    for key, vals in scores.items():
        if tuple(vals.shape) != tuple(y.shape):
            raise DataError(
                f"summarise_by_prediction: score {key!r} has shape {tuple(vals.shape)}, "
                f"expected ({len(y)},)"
            )
    out: dict[str, dict[str, Any]] = {}
    for part, keep in (("correct", p == y), ("misclassified", p != y)):
        entry: dict[str, Any] = {"n": int(keep.sum())}
        if entry["n"]:
            sub = {k: v.detach().cpu()[keep] for k, v in scores.items()}
            entry.update(summarise(sub, y[keep]))
            if "pointing_game" in sub:
                entry["pointing_hits"] = int(sub["pointing_game"].sum())
        out[part] = entry
    return out


def paired_difference(
    scores_a: dict[str, torch.Tensor],
    scores_b: dict[str, torch.Tensor],
    labels: torch.Tensor,
    key: str,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Difference ``a - b`` of one score between two explainers run on the same images, with
    a paired bootstrap confidence interval over the images.

    The statistic is what :func:`summarise` reports (the class-averaged pointing game, the
    mean of every other score), computed on the same resampled images for both explainers,
    so that what the images share (an easy image is easy for both) cancels. The interval is
    SciPy's bias-corrected and accelerated bootstrap (``scipy.stats.bootstrap``, ``paired``),
    or its percentile interval where BCa is undefined (e.g. every image scores the same).

    Parameters
    ----------
    scores_a, scores_b : dict of Tensor (N,)
        Per-image scores of :func:`score_maps` for the two explainers, same images in the
        same order.
    labels : Tensor (N,)
        Class of each image (the pointing game is averaged per class).
    key : str
        The score to compare, e.g. ``"deletion_auc"``.
    confidence : float
        Level of the interval (0.95).
    n_resamples, seed : int
        Bootstrap resamples and their seed.

    Returns
    -------
    dict
        ``difference`` (a - b on all images), ``ci`` ([low, high]), ``confidence``,
        ``n_images`` and ``resolved``: whether the interval excludes 0, i.e. whether these
        images tell the two explainers apart on this score.
    """
    import numpy as np
    from scipy.stats import bootstrap

    for name, scores in (("scores_a", scores_a), ("scores_b", scores_b)):
        if key not in scores:
            raise DataError(f"{name} has no score {key!r}; it has {sorted(scores)}")
    a = scores_a[key].detach().cpu().double().numpy()
    b = scores_b[key].detach().cpu().double().numpy()
    lab = torch.as_tensor(labels).cpu().numpy()
    if not (a.shape == b.shape == lab.shape) or a.ndim != 1:
        raise DataError(
            f"paired scores need the same images: {key!r} has shapes {a.shape} and {b.shape}, "
            f"labels {lab.shape}"
        )
    if len(a) < 2:
        raise DataError(f"a bootstrap interval needs at least 2 images, got {len(a)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DataError(f"score {key!r} has NaN or infinite values")
    if not 0 < confidence < 1:
        raise DataError(f"confidence must be in (0, 1), got {confidence}")

    def stat(x: Any, y: Any, c: Any) -> float:
        if key != "pointing_game":
            return float(np.mean(x - y))
        return float(np.mean([np.mean(x[c == k] - y[c == k]) for k in np.unique(c)]))

    diff = stat(a, b, lab)
    if np.all(a - b == a[0] - b[0]):
        low = high = diff  # no spread: every resample gives the same difference
    else:
        low, high = math.nan, math.nan
        for method in ("BCa", "percentile"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = bootstrap(
                    (a, b, lab),
                    stat,
                    paired=True,
                    vectorized=False,
                    confidence_level=confidence,
                    n_resamples=n_resamples,
                    method=method,
                    rng=np.random.default_rng(seed),
                )
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
            if math.isfinite(low) and math.isfinite(high):
                break
    return {
        "difference": round(diff, 5),
        "ci": [round(low, 5), round(high, 5)],
        "confidence": confidence,
        "n_images": len(a),
        "resolved": bool(low > 0 or high < 0),
    }


def differences_table(differences: dict[str, dict[str, dict[str, Any]]], against: str) -> str:
    """A Markdown table of :func:`paired_difference` results, ``{explainer: {score: result}}``
    (each explainer minus ``against``), with each score's direction."""
    from pellucid.metrics import SPECS

    keys: list[str] = []
    for row in differences.values():
        keys += [k for k in row if k not in keys]
    arrows = {k: ("↑" if SPECS[k].higher_is_better else "↓") if k in SPECS else "" for k in keys}
    lines = [
        f"| explainer − {against} (95 % paired bootstrap) | "
        + " | ".join(f"{k} {arrows[k]}" for k in keys)
        + " |",
        "|" + "---|" * (len(keys) + 1),
    ]
    for name, row in differences.items():
        cells = []
        for k in keys:
            d = row.get(k)
            if d is None:
                cells.append("")
                continue
            lo, hi = d["ci"]
            mark = "" if d["resolved"] else " ~"
            cells.append(f"{d['difference']:+.4f} [{lo:+.4f}, {hi:+.4f}]{mark}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("~: the interval contains 0 (these images do not tell the two apart).")
    return "\n".join(lines)
