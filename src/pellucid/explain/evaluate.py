"""Explain a run's test images and score the maps: what ``pellucid explain`` and
``pellucid compare-explainers`` call.

Per image: pointing-game hit, energy pointing game and top-30 % IoU where the dataset has
object masks (``evaluation.md``), deletion and insertion AUC (RISE protocol) always. Across
explainers everything is computed on the same images with the same targets (the true class),
and seconds per image are measured around ``explain`` only.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pellucid.errors import DataError
from pellucid.explain.base import model_device
from pellucid.models.base import normalisation_mean
from pellucid.registry import EXPLAINERS

# Every per-image score, with its direction (also declared in pellucid.metrics.SPECS).
SCORES = {
    "pointing_game": True,
    "energy_pointing_game": True,
    "top_q_iou": True,
    "deletion_auc": False,
    "deletion_auc_mean_fill": False,
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
) -> dict[str, torch.Tensor]:
    """Per-image scores of ``maps`` (each a tensor (N,)); localisation scores need ``masks``.

    ``pointing_game`` holds 0/1 hits; its class-averaged accuracy is :func:`summarise`'s job.
    ``deletion_auc`` deletes into black (pixel value 0, evaluation.md); where the model has a
    :class:`~pellucid.models.Normalize` layer, ``deletion_auc_mean_fill`` deletes into its
    mean colour, which is zero of the normalised input -- what the RISE authors' code does
    -- and is less confounded by the silhouette a black cut-out leaves on a textured image.
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
    out["insertion_auc"] = insertion_auc(model, images, maps, target, steps=steps).float()
    return {k: v.cpu() for k, v in out.items()}


def summarise(scores: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """Means of per-image scores; the pointing game is averaged per class, then over classes
    (as the TorchRay benchmark does)."""
    out = {}
    for key, vals in scores.items():
        if key == "pointing_game":
            per_class = [float(vals[labels == c].mean()) for c in labels.unique()]
            out[key] = round(statistics.mean(per_class), 4)
        else:
            out[key] = round(float(vals.mean()), 4)
    return out


def load_images(
    run: str | Path,
    n: int,
    dataset: str | None = None,
    split: str = "test",
    dataset_options: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, Any, Any]:
    """The run's model and the first ``n`` images of ``split`` of its dataset (or of
    ``dataset``), checked against the model's channels and classes."""
    from pellucid.data import load_dataset
    from pellucid.data.base import collate
    from pellucid.training import load_run

    if n < 1:
        raise DataError(f"--n must be >= 1, got {n}")
    model, cfg = load_run(run, device=device)
    if dataset is None or dataset == cfg.data.name:
        name, options = cfg.data.name, {**cfg.data.options, **(dataset_options or {})}
    else:
        name, options = dataset, dict(dataset_options or {})
    ds = load_dataset(name, split, seed=cfg.train.seed, **options)
    info = ds.info
    classes = int(cfg.info.get("num_classes", info.num_classes)) if cfg.info else None
    if classes is not None and info.num_classes != classes:
        raise DataError(
            f"dataset {name!r} has {info.num_classes} classes but run {str(run)!r} was trained "
            f"on {classes}"
        )
    if len(ds) == 0:
        raise DataError(f"the {split} split of {name!r} is empty")
    batch = collate([ds[i] for i in range(min(n, len(ds)))])
    return model, batch, ds


def compare(
    model: nn.Module,
    batch: Any,
    explainers: list[str],
    options: dict[str, dict[str, Any]] | None = None,
    sanity: bool = False,
    sanity_n: int = 16,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every explainer on the same images (target = true class) and score them.

    Returns ``{"rows": {name: summary}, "scores": {name: per-image}, "maps": {name: maps}}``;
    each summary holds the mean scores, ``seconds_per_image`` and, with ``sanity``, the mean
    Spearman correlation between maps of the trained and a re-initialised model
    (``sanity_rank_correlation``, on the first ``sanity_n`` images).
    """
    from tqdm.auto import tqdm

    from pellucid.explain import build_explainer
    from pellucid.metrics import model_randomisation

    for name in explainers:
        EXPLAINERS.get(name)
    options = options or {}
    device = model_device(model)
    images, labels = batch.image.to(device), batch.label.to(device)
    masks = batch.mask.to(device) if batch.mask is not None else None
    rows, scores, all_maps = {}, {}, {}
    bar = tqdm(explainers, desc="explainers", disable=not progress, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        explainer = build_explainer(name, model, **options.get(name, {}))
        start = time.perf_counter()
        maps = explainer.explain(images, labels)
        seconds = (time.perf_counter() - start) / len(images)
        s = score_maps(model, images, maps, labels, masks)
        row: dict[str, Any] = {**summarise(s, labels.cpu()), "seconds_per_image": seconds}
        if sanity:
            k = min(sanity_n, len(images))
            res = model_randomisation(
                lambda m, n=name, k=k: build_explainer(n, m, **options.get(n, {})).explain(
                    images[:k], labels[:k]
                ),
                model,
            )
            row["sanity_rank_correlation"] = round(res["mean"], 4)
        rows[name], scores[name], all_maps[name] = row, s, maps.cpu()
    return {"rows": rows, "scores": scores, "maps": all_maps}


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of :func:`compare` rows with each column's direction."""
    from pellucid.metrics import SPECS

    keys: list[str] = []
    for row in rows.values():
        keys += [k for k in row if k not in keys]
    arrows = {k: ("↑" if SPECS[k].higher_is_better else "↓") if k in SPECS else "" for k in keys}
    arrows["seconds_per_image"] = "↓"
    head = "| explainer | " + " | ".join(f"{k} {arrows[k]}" for k in keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1)]
    for name, row in rows.items():
        cells = [_fmt(row.get(k)) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)
