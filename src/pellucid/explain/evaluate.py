"""Explain a run's test images and score the maps: what ``pellucid explain`` and
``pellucid compare-explainers`` call (the scores themselves: :mod:`pellucid.explain.scoring`).

Per image: pointing-game hit, energy pointing game and top-30 % IoU where the dataset has
object masks (``evaluation.md``), deletion and insertion AUC (RISE protocol) always. Across
explainers everything is computed on the same images with the same targets (the true class),
and seconds per image are measured around ``explain`` only.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pellucid.errors import ConfigError, DataError
from pellucid.explain.scoring import score_maps, summarise
from pellucid.registry import EXPLAINERS
from pellucid.state import model_device

IMAGE_PICKS = ("spread", "first")


def image_indices(size: int, n: int, images: str = "spread") -> list[int]:
    """Which ``n`` of a split's ``size`` images to explain: ``"spread"``, every
    ``size / n``-th (a systematic sample: it covers every class of a class-ordered split
    such as mnist's and cluttered-mnist's, whose first images are all zeros), or
    ``"first"``, the first ``n``."""
    if images not in IMAGE_PICKS:
        raise DataError(f"unknown image choice {images!r}; choose from {list(IMAGE_PICKS)}")
    n = min(n, size)
    if images == "first":
        return list(range(n))
    return [(i * size) // n for i in range(n)]


def load_images(
    run: str | Path,
    n: int,
    dataset: str | None = None,
    split: str = "test",
    dataset_options: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    images: str = "spread",
) -> tuple[nn.Module, Any, Any]:
    """The run's model and ``n`` images of ``split`` of its dataset (or of ``dataset``),
    checked against the model's channels and classes (their number, and for the run's own
    dataset their names and order: :func:`pellucid.training.run.check_run_classes`); which
    images: :func:`image_indices` (evenly spaced by default, the first ``n`` with
    ``images="first"``)."""
    from pellucid.data import load_dataset
    from pellucid.data.base import collate
    from pellucid.training import load_run
    from pellucid.training.run import check_run_classes

    if n < 1:
        raise DataError(f"--n must be >= 1, got {n}")
    if images not in IMAGE_PICKS:
        raise DataError(f"unknown image choice {images!r}; choose from {list(IMAGE_PICKS)}")
    model, cfg = load_run(run, device=device)
    if dataset is None or dataset == cfg.data.name:
        name, options = cfg.data.name, {**cfg.data.options, **(dataset_options or {})}
    else:
        name, options = dataset, dict(dataset_options or {})
    ds = load_dataset(name, split, seed=cfg.data_seed, **options)
    info = ds.info
    # the run's own dataset must have its classes in their order (a class folder added or
    # renamed since would shift the labels); another dataset only their number
    where, names = f"dataset {name!r}", name == cfg.data.name
    check_run_classes(cfg.info, info, where, f"run {str(run)!r}", names=names)
    channels = cfg.info.get("in_channels") if cfg.info else None
    if channels is not None and info.in_channels != channels:
        hint = f" (--data-option channels={channels})" if name == "folder" else ""
        raise DataError(
            f"dataset {name!r} has {info.in_channels}-channel images but run {str(run)!r} was "
            f"trained on {channels}-channel ones{hint}"
        )
    trained_size = cfg.info.get("image_size") if cfg.info else None
    if trained_size is not None and tuple(info.image_size) != tuple(trained_size):
        warnings.warn(
            f"dataset {name!r} has {tuple(info.image_size)} images but run {str(run)!r} was "
            f"trained on {tuple(trained_size)} ones: its explanations are of images of "
            "another scale" + (" (--data-option size=...)" if name == "folder" else ""),
            stacklevel=2,
        )
    if len(ds) == 0:
        raise DataError(f"the {split} split of {name!r} is empty")
    if n > len(ds):
        warnings.warn(
            f"the {split} split of {name!r} has {len(ds)} images: all {len(ds)} are used, "
            f"not the {n} asked for",
            stacklevel=2,
        )
    idx = image_indices(len(ds), n, images)
    batch = collate([ds[i] for i in idx])
    return model, batch, ds


def check_explainer_options(
    explainers: Sequence[str], options: dict[str, dict[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    """``options`` (explainer -> its options), or a ConfigError when it names an explainer
    that is not run (``--option nosuch.x=5`` was ignored without a word)."""
    options = dict(options or {})
    for name in options:
        if name not in explainers:
            raise ConfigError(
                f"--option: explainer {name!r} is not run here; explainers: {', '.join(explainers)}"
            )
    return options


def compare(
    model: nn.Module,
    batch: Any,
    explainers: list[str],
    options: dict[str, dict[str, Any]] | None = None,
    sanity: bool = False,
    sanity_n: int = 16,
    progress: bool = True,
    road: bool = False,
) -> dict[str, Any]:
    """Run every explainer on the same images (target = true class) and score them
    (:func:`score_maps`; ``road`` adds ROAD deletion, the slowest score).

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
    options = check_explainer_options(explainers, options)
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
        s = score_maps(model, images, maps, labels, masks, road=road)
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
