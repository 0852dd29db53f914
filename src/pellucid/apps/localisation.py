"""Object localisation from a classifier's attribution maps.

The protocol of the CSG paper (Liang et al., "Training Interpretable Convolutional Neural
Networks by Differentiating Class-specific Filters", ECCV 2020, Sec. 4.3): for every test
image, the class activation map of the true class (here Grad-CAM at the network's analysis
layer, which for a global-average-pooling + linear head is the CAM of Zhou et al. 2016 up to
a positive factor and the ReLU) is binarised at its top 30 % of pixels, and its IoU with the
object mask is measured; the score is the share of images whose IoU exceeds 0.3, reported
for a standard and a CSG-trained network side by side. Any registered explainer can stand in
for Grad-CAM (``explainer=``), and the pointing game (Zhang et al. 2016) is reported with it.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from pellucid.errors import ConfigError, DataError

__all__ = ["LocalisationResult", "localise", "localise_run", "predicted_class", "scored_count"]


@dataclass
class LocalisationResult:
    """Scores of one model on ``n`` images (per image in ``iou`` / ``pointing``)."""

    explainer: str
    layer: str | None
    q: float
    threshold: float
    target: str
    n: int
    mean_iou: float
    share_above: float  # share of images with IoU > threshold (the paper's score)
    pointing_game: float  # hits averaged per class, then over the classes
    iou: list[float]
    pointing: list[bool]
    images: list[int] = field(default_factory=list)  # the split's indices scored

    def summary(self) -> dict[str, Any]:
        """Everything but the per-image lists."""
        return {k: v for k, v in asdict(self).items() if k not in ("iou", "pointing", "images")}


def _check(q: float, threshold: float, target: str) -> None:
    if not 0 < q <= 1:
        raise ConfigError(f"q (the share of pixels kept) must lie in (0, 1], got {q}")
    if not 0 <= threshold < 1:
        raise ConfigError(f"threshold (an IoU) must lie in [0, 1), got {threshold}")
    if target not in ("label", "predicted"):
        raise ConfigError(f"target must be 'label' or 'predicted', got {target!r}")


def scored_count(data: Any, n: int | None, what: str) -> int:
    """How many of ``data``'s images a localisation scores (its first ``n``, all when None);
    a clear error for a dataset without object masks or nothing to score."""
    from pellucid.data.base import dataset_info

    info = dataset_info(data)
    if not getattr(info, "has_masks", False):
        raise DataError(
            f"dataset {info.name!r} has no object masks: localisation needs them "
            "(cluttered-mnist, shapes, or a folder dataset with a masks folder)"
        )
    count = len(data) if n is None else min(int(n), len(data))
    if n is not None and int(n) > len(data) > 0:
        warnings.warn(
            f"{what}: the data has {len(data)} images: all {len(data)} are scored, not the "
            f"{n} asked for",
            stacklevel=3,  # the caller of localise / filter_localise
        )
    if count < 1:
        raise DataError(f"{what}: no images to score (dataset of {len(data)}, n={n})")
    return count


@torch.no_grad()
def predicted_class(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's predicted class of each image (N,), its train/eval mode left as it was."""
    from pellucid.state import model_state

    with model_state(model):
        return model(images).argmax(1)


def localise(
    model: nn.Module,
    data: Any,
    explainer: str = "gradcam",
    options: dict[str, Any] | None = None,
    q: float = 0.3,
    threshold: float = 0.3,
    target: str = "label",
    n: int | None = None,
    batch_size: int = 64,
) -> LocalisationResult:
    """Localisation scores of ``model`` on a dataset with object masks.

    Parameters
    ----------
    model : nn.Module
        A classifier taking pixel-space images (its parameters' device is used).
    data : Dataset
        Yields samples with ``mask`` (e.g. ``cluttered-mnist``, ``shapes``, a folder with
        masks); the first ``n`` images are used (all when None).
    explainer : str
        A registered explainer (``pellucid explainers``); ``gradcam`` (default) is the CAM
        of the paper. ``options`` are its options (e.g. ``{"layer": "layer3"}``).
    q : float
        Share of each map's pixels kept (its largest values): 0.3 in the paper.
    threshold : float
        IoU above which an image counts as localised: 0.3 in the paper.
    target : {"label", "predicted"}
        The class explained: the true class (the paper) or the model's prediction.

    Returns
    -------
    LocalisationResult
        Mean IoU, ``share_above`` (the paper's score, higher is better), pointing game,
        and the per-image values.
    """
    from pellucid.data import make_loader, spread_indices
    from pellucid.explain import build_explainer
    from pellucid.metrics.localisation import class_mean, pointing_game, top_q_iou
    from pellucid.state import model_device

    _check(q, threshold, target)
    count = scored_count(data, n, "localise")
    device = model_device(model)
    exp = build_explainer(explainer, model, **(options or {}))
    ious, hits, labels = [], [], []
    # spread evenly over the split (a class-ordered split's first n would be its first classes)
    indices = spread_indices(len(data), count)
    subset = torch.utils.data.Subset(data, indices)
    for batch in make_loader(subset, batch_size=batch_size):
        images = batch.image.to(device)
        classes = batch.label.to(device) if target == "label" else predicted_class(model, images)
        maps = exp.explain(images, classes).cpu()  # (B, 1, H, W)
        ious.append(top_q_iou(maps, batch.mask, q=q))
        hits.append(pointing_game(maps, batch.mask)["hits"].cpu())
        labels.append(classes.cpu())
    iou, hit, y = torch.cat(ious), torch.cat(hits), torch.cat(labels)

    return LocalisationResult(
        explainer=explainer,
        layer=getattr(exp, "layer", None),
        q=q,
        threshold=threshold,
        target=target,
        n=count,
        mean_iou=round(float(iou.mean()), 5),
        share_above=round(float((iou > threshold).float().mean()), 5),
        pointing_game=round(class_mean(hit, y), 5),  # averaged over the explained classes
        iou=[round(float(v), 5) for v in iou],
        pointing=[bool(v) for v in hit],
        images=indices,
    )


def localise_run(
    run: str,
    explainer: str = "gradcam",
    options: dict[str, Any] | None = None,
    split: str = "test",
    device: str = "auto",
    **kwargs: Any,
) -> LocalisationResult:
    """:func:`localise` on a run directory's model and dataset split. Grad-CAM is taken at
    the run's analysis layer (CSG: the gated layer) unless ``options`` names a layer."""
    from pellucid.training import load_method
    from pellucid.training.run import load_run_split
    from pellucid.training.setup import resolve_device

    method, config = load_method(run, resolve_device(device))
    options = dict(options or {})
    if explainer == "gradcam":
        options.setdefault("layer", method.analysis_layer())
    data = load_run_split(config, split, f"run {str(run)!r}")
    return localise(method.inference_model(), data, explainer, options, **kwargs)
