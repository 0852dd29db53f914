"""Object localisation from a network's own filters: the CSG paper's per-filter and
class-gradient maps.

Besides the class activation map (:mod:`pellucid.apps.localisation`), the CSG paper (Liang
et al., "Training Interpretable Convolutional Neural Networks by Differentiating
Class-specific Filters", ECCV 2020, Sec. 4.3; csg.md, "Applications") localises objects with
the filters themselves:

``filters`` -- per-filter activation maps.
    Every filter of the analysed layer is given a class: the class on whose images it is, on
    average, most active (``assign="activation"``, any network), or the classes whose CSG gate
    for it is at least ``gate_cut`` (``assign="gates"``, a CSG run). On a test image of class
    c, each filter of c has its activation map upsampled (bilinearly) to the image size and
    binarised at the filter's own top-q quantile -- the (1 - q) quantile of that filter's
    activations over reference images, so one threshold per filter, not per image -- and the
    IoU of that region with the object mask is measured. Scores: the mean IoU over
    (image, filter) pairs, the share of pairs with IoU > ``threshold`` (0.3), and the share of
    images on which at least one filter of their class does. A filter that stays below its
    threshold on an image scores IoU 0 there.

    The last score grows with the number of filters a class has, which differs between
    networks and assignments (CSG gates give a class tens of filters, the activation argmax
    of a standard network anywhere from one to a hundred). ``per_class=k`` compares them at
    an equal count: every class gets exactly its ``k`` best filters -- by gate value, then by
    the class mean minus the filter's mean over classes (``assign="gates"``), or by that
    difference alone (``assign="activation"``) -- see :func:`count_matched_assignment`.

``gradient`` -- class-gradient maps.
    The ``m`` (30) filters most active on the class's reference images -- the largest class
    mean minus the filter's mean over all classes -- are chosen; the map of an image is the
    absolute gradient of their summed activation with respect to the input (largest over
    colour channels), blurred with a Gaussian (``sigma`` px), and its top q of pixels is
    compared with the object mask. Score:
    the share of images with IoU >= ``threshold`` (0.2 in the paper), with the mean IoU and the
    pointing game of the same maps.

The reference images (class means, per-filter quantiles) are a separate split -- the
training split for a run -- so that nothing is fitted on the images scored. The exact
quantile and blur settings are not given in the paper's text we follow; ours are documented
above and are options.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from pellucid.apps.filter_assignment import (
    check_q,
    class_filter_table,
    count_matched_assignment,
    filter_assignment,
    finite,
    reference_statistics,
)
from pellucid.apps.filter_maps import FilterScores, filter_gradient_maps, layer_maps
from pellucid.data.base import dataset_info
from pellucid.errors import ConfigError

__all__ = [
    "ASSIGNMENTS",
    "PROTOCOLS",
    "FilterLocalisationResult",
    "class_filter_table",
    "count_matched_assignment",
    "filter_assignment",
    "filter_gradient_maps",
    "filter_localise",
    "filter_localise_run",
    "reference_statistics",
]

PROTOCOLS = ("filters", "gradient")
ASSIGNMENTS = ("activation", "gates")
DEFAULT_THRESHOLD = {"filters": 0.3, "gradient": 0.2}  # the paper's IoU thresholds


@dataclass
class FilterLocalisationResult:
    """Scores of one model; per-image values in ``iou`` (``filters``: the mean over the
    image's class filters, None for an image whose class has none) and ``pointing``
    (``gradient`` only)."""

    protocol: str
    layer: str
    assign: str
    q: float
    threshold: float
    target: str
    n: int
    filters_per_class: list[int]
    mean_iou: float
    share_above: float  # filters: share of (image, filter) pairs; gradient: share of images
    share_images: float | None  # filters: share of images localised by >= 1 of its filters
    pointing_game: float | None  # gradient: hits averaged per class, then over the classes
    options: dict[str, Any]
    iou: list[float | None]
    pointing: list[bool] | None
    images: list[int] = field(default_factory=list)  # the split's indices scored

    def summary(self) -> dict[str, Any]:
        """Everything but the per-image lists."""
        return {k: v for k, v in asdict(self).items() if k not in ("iou", "pointing", "images")}


# ------------------------------------------------------------------------------- protocols
def _check(protocol: str, threshold: float, target: str) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if not 0 <= threshold < 1:
        raise ConfigError(f"threshold (an IoU) must lie in [0, 1), got {threshold}")
    if target not in ("label", "predicted"):
        raise ConfigError(f"target must be 'label' or 'predicted', got {target!r}")


def filter_localise(
    model: nn.Module,
    data: Any,
    layer: str,
    reference: Any,
    protocol: str = "filters",
    assign: str = "activation",
    gates: torch.Tensor | None = None,
    gate_cut: float = 0.5,
    q: float = 0.3,
    threshold: float | None = None,
    m: int = 30,
    sigma: float | None = None,
    target: str = "label",
    n: int | None = None,
    batch_size: int = 64,
    per_class: int | None = None,
) -> FilterLocalisationResult:
    """Localisation scores of ``model``'s own filters on a dataset with object masks.

    Parameters
    ----------
    model : nn.Module
        A classifier of pixel-space images (its device is used; it is left as it was).
    data : Dataset
        Scored images with ``mask`` (cluttered-mnist, shapes, a folder with masks); the first
        ``n`` (all when None).
    layer : str
        The analysed layer (a CSG run's gated layer).
    reference : Dataset
        Images with labels for the class means and per-filter quantiles (not ``data``).
    protocol : {"filters", "gradient"}
        Per-filter activation maps or class-gradient maps (module docstring).
    assign : {"activation", "gates"}
        ``filters``: how filters get classes; ``gates`` needs the CSG matrix ``gates``.
    q : float
        ``filters``: share of a filter's reference activations above its threshold;
        ``gradient``: share of a map's pixels kept. 0.3 in the paper.
    threshold : float
        IoU above which a pair / image counts (``filters`` > 0.3, ``gradient`` >= 0.2 by
        default, as in the paper).
    m : int
        ``gradient``: filters per class.
    per_class : int, optional
        ``filters``: give every class exactly its ``per_class`` best filters
        (:func:`count_matched_assignment`) instead of all its assigned ones, so that networks
        and assignments are compared at the same filter count.
    sigma : float
        ``gradient``: blur in px (default: image side / 32).
    target : {"label", "predicted"}
        The class whose filters are used: the true class (the paper) or the prediction.

    Returns
    -------
    FilterLocalisationResult
        All scores: higher is better.
    """
    from pellucid.apps.localisation import predicted_class, scored_count
    from pellucid.data import make_loader, spread_indices
    from pellucid.state import model_device

    threshold = DEFAULT_THRESHOLD.get(protocol, 0.3) if threshold is None else float(threshold)
    _check(protocol, threshold, target)
    check_q(q)
    if assign not in ASSIGNMENTS:
        raise ConfigError(f"unknown assign {assign!r}; choose from {', '.join(ASSIGNMENTS)}")
    if assign == "gates" and gates is None:
        raise ConfigError("assign='gates' needs a CSG gate matrix (a CSG run)")
    if per_class is not None and protocol != "filters":
        raise ConfigError("per_class is an option of protocol 'filters'")
    count = scored_count(data, n, "filter localisation")
    classes = int(dataset_info(data).num_classes)
    means, thresholds = reference_statistics(model, layer, reference, classes, q)
    used_gates = gates if assign == "gates" else None
    members = _members(means, layer, used_gates, gate_cut, per_class)
    table = class_filter_table(means, m)
    size = tuple(dataset_info(data).image_size)
    sigma = size[0] / 32 if sigma is None else float(sigma)
    if sigma < 0:
        raise ConfigError(f"sigma (the blur in px) must be >= 0, got {sigma}")

    device = model_device(model)
    scores = FilterScores()
    # spread evenly over the split (a class-ordered split's first n would be its first classes)
    indices = spread_indices(len(data), count)
    subset = torch.utils.data.Subset(data, indices)
    for batch in make_loader(subset, batch_size=batch_size):
        images = finite(batch.image, "scored images").to(device)
        if target == "label":
            cls = batch.label.long()
        else:
            cls = predicted_class(model, images).cpu()
        masks = batch.mask.reshape(len(cls), *size).bool()
        if protocol == "gradient":
            scores.add_gradient(model, layer, images, cls, masks, table, sigma, q)
        else:
            acts = layer_maps(model, layer, images).cpu()  # (B, K, h, w)
            scores.add_filters(acts, cls, masks, members, thresholds, threshold)

    options: dict[str, Any] = {"reference_images": len(reference)}
    if protocol == "gradient":
        options.update(m=int(table.shape[1]), sigma=sigma)
        used = [int(table.shape[1])] * classes
    else:
        if assign == "gates" and per_class is None:
            options["gate_cut"] = gate_cut
        if per_class is not None:
            options["per_class"] = per_class
        used = [int(v) for v in members.sum(dim=1)]
    mean_iou, share, share_images, pointing = scores.summary(protocol, threshold)
    return FilterLocalisationResult(
        protocol=protocol,
        layer=layer,
        assign=assign if protocol == "filters" else "activation",
        q=q,
        threshold=threshold,
        target=target,
        n=count,
        filters_per_class=used,
        mean_iou=round(mean_iou, 5),
        share_above=round(share, 5),
        share_images=None if share_images is None else round(share_images, 5),
        pointing_game=pointing,
        options=options,
        iou=scores.per_image,
        pointing=None if protocol != "gradient" else [bool(v) for v in torch.cat(scores.hits)],
        images=indices,
    )


def _members(
    means: torch.Tensor,
    layer: str,
    gates: torch.Tensor | None,
    gate_cut: float,
    per_class: int | None,
) -> torch.Tensor:
    """(C, K) boolean filter assignment of the ``filters`` protocol: by ``gates`` when given
    (checked against the class means' shape), else by activation; every class's
    ``per_class`` best filters when set."""
    if gates is not None:
        if tuple(gates.shape) != tuple(means.shape):
            raise ConfigError(
                f"gate matrix {tuple(gates.shape)} does not match {means.shape[0]} classes x "
                f"{means.shape[1]} filters of layer {layer!r}"
            )
        members = filter_assignment(gates=gates, gate_cut=gate_cut)
    else:
        members = filter_assignment(class_means=means)
    if per_class is not None:
        members = count_matched_assignment(means, per_class, gates)
    return members


def filter_localise_run(
    run: str,
    protocol: str = "filters",
    assign: str = "activation",
    reference: int | None = 1000,
    split: str = "test",
    device: str = "auto",
    **kwargs: Any,
) -> FilterLocalisationResult:
    """:func:`filter_localise` on a run's model at its analysis layer (CSG: the gated layer),
    scored on ``split``, with ``reference`` training images spread over the training split
    (all when None). ``assign="gates"`` reads the gate matrix of a CSG run."""
    from pellucid.data import spread_subset
    from pellucid.training import load_method
    from pellucid.training.run import load_run_split
    from pellucid.training.setup import resolve_device

    if reference is not None and reference < 1:
        raise ConfigError(f"reference (training images) must be >= 1, got {reference}")
    method, config = load_method(run, resolve_device(device))
    gates = getattr(method, "gates", None)
    if assign == "gates" and gates is None:
        raise ConfigError(
            f"run {run!r} ({config.method.name}) has no CSG gates; use assign='activation'"
        )
    data = load_run_split(config, split, f"run {str(run)!r}")
    train = load_run_split(config, "train", f"run {str(run)!r}")
    return filter_localise(
        method.inference_model(),
        data,
        method.analysis_layer(),
        spread_subset(train, reference),
        protocol=protocol,
        assign=assign,
        gates=gates.detach() if (gates is not None and assign == "gates") else None,
        **kwargs,
    )
