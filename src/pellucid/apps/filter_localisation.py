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

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from pellucid.errors import ConfigError, DataError

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

    def summary(self) -> dict[str, Any]:
        """Everything but the per-image lists."""
        return {k: v for k, v in asdict(self).items() if k not in ("iou", "pointing")}


# ----------------------------------------------------------------------- reference statistics
def _finite(images: torch.Tensor, what: str) -> torch.Tensor:
    if not bool(torch.isfinite(images).all()):
        raise DataError(f"the {what} contain NaN or infinite pixels")
    return images


def _check_maps(a: Any, layer: str) -> torch.Tensor:
    if not isinstance(a, torch.Tensor) or a.ndim != 4:
        shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
        raise ConfigError(f"layer {layer!r} gives {shape}, not feature maps (N, K, H, W)")
    return a


@torch.no_grad()
def reference_statistics(
    model: nn.Module,
    layer: str,
    data: Any,
    num_classes: int,
    q: float = 0.3,
    batch_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means and per-filter quantiles of ``layer`` on reference images.

    Parameters
    ----------
    model : nn.Module
        The classifier (eval mode inside; its mode and parameters are restored).
    layer : str
        A layer with (N, K, H, W) output, e.g. the CSG gated layer.
    data : Dataset
        Reference images with labels (the training split for a run).
    num_classes : int
    q : float
        Share of each filter's activations above its threshold, in (0, 1).

    Returns
    -------
    class_means : Tensor (C, K)
        Mean spatially pooled activation of each filter on each class's images (NaN for a
        class absent from ``data``).
    thresholds : Tensor (K,)
        Each filter's (1 - q) quantile over all its activations (every image and position,
        at the layer's resolution).
    """
    from pellucid.data import make_loader
    from pellucid.hooks import capture
    from pellucid.state import model_device, model_state

    _check_q(q)
    if len(data) == 0:
        raise DataError("the reference images are empty")
    device = model_device(model)
    sums: torch.Tensor | None = None
    counts = torch.zeros(num_classes)
    values = []
    with model_state(model), capture(model, [layer], detach=True) as acts:
        for batch in make_loader(data, batch_size=batch_size):
            model(_finite(batch.image, "reference images").to(device))
            a = _check_maps(acts[layer], layer).float().cpu()  # (B, K, h, w)
            labels = batch.label.long()
            if int(labels.max()) >= num_classes or int(labels.min()) < 0:
                raise DataError(f"a reference label lies outside 0..{num_classes - 1}")
            pooled = a.mean(dim=(2, 3))
            if sums is None:
                sums = torch.zeros(num_classes, a.shape[1])
            sums.index_add_(0, labels, pooled)
            counts += torch.bincount(labels, minlength=num_classes).float()
            values.append(a.transpose(0, 1).reshape(a.shape[1], -1))
    assert sums is not None
    means = sums / counts[:, None]  # NaN rows for absent classes (0 / 0)
    flat = torch.cat(values, dim=1)  # (K, M)
    k = min(flat.shape[1], max(1, round((1 - q) * flat.shape[1])))
    thresholds = flat.kthvalue(k, dim=1).values
    return means, thresholds


def filter_assignment(
    class_means: torch.Tensor | None = None,
    gates: torch.Tensor | None = None,
    gate_cut: float = 0.5,
) -> torch.Tensor:
    """(C, K) boolean: which filters belong to which class.

    From ``gates`` (a CSG matrix G): filter k belongs to every class c with G[c, k] >=
    ``gate_cut`` (after CSG's projection each filter has at least one gate at 1). Otherwise
    from ``class_means``: each filter belongs to the one class whose images it is most active
    on.
    """
    if gates is not None:
        g = gates.detach().float().cpu()
        if g.ndim != 2:
            raise ConfigError(f"gates must be a (C, K) matrix, got shape {tuple(g.shape)}")
        if not 0 < gate_cut <= 1:
            raise ConfigError(f"gate_cut must lie in (0, 1], got {gate_cut}")
        return g >= gate_cut
    if class_means is None:
        raise ConfigError("filter_assignment needs class_means or gates")
    m = torch.nan_to_num(class_means.float(), nan=float("-inf"))
    out = torch.zeros_like(m, dtype=torch.bool)
    out[m.argmax(dim=0), torch.arange(m.shape[1])] = True
    return out


def class_filter_table(class_means: torch.Tensor, m: int = 30) -> torch.Tensor:
    """(C, min(m, K)) indices of each class's ``m`` most active filters; -1 for a class
    without reference images.

    "Most active for the class" is measured against the filter's own level: the class mean
    minus the filter's mean over the classes, so that a filter active on every image is not
    every class's filter.
    """
    if m < 1:
        raise ConfigError(f"m (filters per class) must be >= 1, got {m}")
    means = class_means.float()
    m = min(int(m), means.shape[1])
    score = means - means.nanmean(dim=0, keepdim=True)
    table = torch.nan_to_num(score, nan=float("-inf")).topk(m, dim=1).indices
    table[means.isnan().all(dim=1)] = -1
    return table


def count_matched_assignment(
    class_means: torch.Tensor, k: int, gates: torch.Tensor | None = None
) -> torch.Tensor:
    """(C, K) boolean: each class's ``k`` best filters, the same number for every class.

    Ranked by the CSG gate G[c, k] when ``gates`` is given (many gates are exactly 1 after
    CSG's projection), ties -- and, without gates, everything -- broken by the class mean
    minus the filter's mean over classes (:func:`class_filter_table`'s measure). A filter may
    serve several classes. A class without reference images gets no filter.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"per_class (filters per class) must be an integer >= 1, got {k!r}")
    means = class_means.float()
    if k > means.shape[1]:
        raise ConfigError(f"per_class {k} exceeds the layer's {means.shape[1]} filters")
    score = torch.nan_to_num(means - means.nanmean(dim=0, keepdim=True), nan=float("-inf"))
    order = score.argsort(dim=1, descending=True, stable=True)  # (C, K) by activation
    if gates is not None:
        g = gates.detach().float().cpu()
        if g.shape != means.shape:
            raise ConfigError(f"gates {tuple(g.shape)} do not match {tuple(means.shape)}")
        by_gate = g.gather(1, order).argsort(dim=1, descending=True, stable=True)
        order = order.gather(1, by_gate)  # gate first, activation among equal gates
    out = torch.zeros_like(means, dtype=torch.bool)
    out.scatter_(1, order[:, :k], True)
    out[means.isnan().all(dim=1)] = False
    return out


# ------------------------------------------------------------------------------- the maps
def filter_gradient_maps(
    model: nn.Module,
    layer: str,
    images: torch.Tensor,
    filters: torch.Tensor,
    sigma: float = 2.0,
) -> torch.Tensor:
    """(N, 1, H, W) class-gradient maps: ``|d/dx sum_k in filters[i] pooled A_k(x_i)|``,
    largest over channels, blurred with a Gaussian of ``sigma`` px, each scaled to [0, 1].

    ``filters`` is (N, m) filter indices per image. The model is left as it was.
    """
    from pellucid.explain.baselines import blur
    from pellucid.hooks import capture
    from pellucid.state import model_state

    if filters.ndim != 2 or filters.shape[0] != images.shape[0]:
        raise ConfigError(
            f"filters must be (N, m) for {images.shape[0]} images, got {tuple(filters.shape)}"
        )
    x = images.detach().clone().requires_grad_(True)
    with model_state(model), torch.enable_grad(), capture(model, [layer]) as acts:
        model(x)
        a = _check_maps(acts[layer], layer)  # (N, K, h, w)
        if int(filters.max()) >= a.shape[1] or int(filters.min()) < 0:
            raise ConfigError(f"a filter index lies outside the layer's {a.shape[1]} filters")
        pooled = a.mean(dim=(2, 3))  # (N, K)
        score = pooled.gather(1, filters.to(a.device)).sum()
        (grad,) = torch.autograd.grad(score, x)
    g = blur(grad.abs().amax(dim=1, keepdim=True), float(sigma))
    peak = g.flatten(1).amax(dim=1).clamp_min(1e-12)
    return (g / peak[:, None, None, None]).detach()


def _upsampled(a: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return nn.functional.interpolate(a, size=size, mode="bilinear", align_corners=False)


def _iou(region: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """IoU of boolean regions (..., H, W) with a boolean mask (H, W) broadcast."""
    inter = (region & mask).flatten(-2).sum(-1).float()
    union = (region | mask).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(union))


# ------------------------------------------------------------------------------- protocols
def _check_q(q: float) -> None:
    if not 0 < q < 1:
        raise ConfigError(f"q (the share of activations kept) must lie in (0, 1), got {q}")


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
    from pellucid.data import make_loader
    from pellucid.metrics.localisation import class_mean, pointing_game, top_q_iou
    from pellucid.state import model_device

    threshold = DEFAULT_THRESHOLD.get(protocol, 0.3) if threshold is None else float(threshold)
    _check(protocol, threshold, target)
    _check_q(q)
    if assign not in ASSIGNMENTS:
        raise ConfigError(f"unknown assign {assign!r}; choose from {', '.join(ASSIGNMENTS)}")
    if assign == "gates" and gates is None:
        raise ConfigError("assign='gates' needs a CSG gate matrix (a CSG run)")
    count = scored_count(data, n, "filter localisation")
    classes = int(data.info.num_classes)
    means, thresholds = reference_statistics(model, layer, reference, classes, q)
    if assign == "gates":
        assert gates is not None
        if tuple(gates.shape) != tuple(means.shape):
            raise ConfigError(
                f"gate matrix {tuple(gates.shape)} does not match {classes} classes x "
                f"{means.shape[1]} filters of layer {layer!r}"
            )
        members = filter_assignment(gates=gates, gate_cut=gate_cut)
    else:
        members = filter_assignment(class_means=means)
    if per_class is not None:
        if protocol != "filters":
            raise ConfigError("per_class is an option of protocol 'filters'")
        members = count_matched_assignment(means, per_class, gates if assign == "gates" else None)
    table = class_filter_table(means, m)
    size = tuple(data.info.image_size)
    sigma = size[0] / 32 if sigma is None else float(sigma)
    if sigma < 0:
        raise ConfigError(f"sigma (the blur in px) must be >= 0, got {sigma}")

    device = model_device(model)
    per_image: list[float | None] = []
    pair_iou: list[torch.Tensor] = []
    any_hit: list[bool] = []
    hits, labels = [], []
    subset = torch.utils.data.Subset(data, range(count))
    for batch in make_loader(subset, batch_size=batch_size):
        images = _finite(batch.image, "scored images").to(device)
        if target == "label":
            cls = batch.label.long()
        else:
            cls = predicted_class(model, images).cpu()
        masks = batch.mask.reshape(len(cls), *size).bool()
        if protocol == "gradient":
            rows = table[cls]
            if bool((rows < 0).any()):
                raise DataError("a scored class has no reference images; use more reference images")
            maps = filter_gradient_maps(model, layer, images, rows, sigma).cpu()
            iou = top_q_iou(maps, masks, q=q)
            per_image.extend(round(float(v), 5) for v in iou)
            hits.append(pointing_game(maps, masks)["hits"].cpu())
            labels.append(cls)
            continue
        acts = _layer_maps(model, layer, images).cpu()  # (B, K, h, w)
        for i in range(len(cls)):
            ks = members[int(cls[i])].nonzero().flatten()
            if len(ks) == 0:
                per_image.append(None)
                any_hit.append(False)
                continue
            region = _upsampled(acts[i : i + 1, ks], size)[0] > thresholds[ks, None, None]
            iou = _iou(region, masks[i])  # (len(ks),)
            pair_iou.append(iou)
            per_image.append(round(float(iou.mean()), 5))
            any_hit.append(bool((iou > threshold).any()))

    options: dict[str, Any] = {"reference_images": len(reference)}
    if protocol == "gradient":
        iou_all = torch.tensor([v for v in per_image if v is not None])
        hit = torch.cat(hits)
        mean_iou = float(iou_all.mean())
        share = float((iou_all >= threshold).float().mean())
        share_images, pointing = None, round(class_mean(hit, torch.cat(labels)), 5)
        options.update(m=int(table.shape[1]), sigma=sigma)
        used = [int(table.shape[1])] * classes
    else:
        pairs = torch.cat(pair_iou) if pair_iou else torch.zeros(0)
        mean_iou = float(pairs.mean()) if len(pairs) else 0.0
        share = float((pairs > threshold).float().mean()) if len(pairs) else 0.0
        share_images, pointing, hit = float(sum(any_hit) / len(any_hit)), None, None
        if assign == "gates" and per_class is None:
            options["gate_cut"] = gate_cut
        if per_class is not None:
            options["per_class"] = per_class
        used = [int(v) for v in members.sum(dim=1)]
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
        iou=per_image,
        pointing=None if hit is None else [bool(v) for v in hit],
    )


@torch.no_grad()
def _layer_maps(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    from pellucid.hooks import capture
    from pellucid.state import model_state

    with model_state(model), capture(model, [layer], detach=True) as acts:
        model(images)
        return _check_maps(acts[layer], layer).float()


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
    from pellucid.data import load_dataset, spread_subset
    from pellucid.training import load_method
    from pellucid.training.setup import resolve_device

    if reference is not None and reference < 1:
        raise ConfigError(f"reference (training images) must be >= 1, got {reference}")
    method, config = load_method(run, resolve_device(device))
    gates = getattr(method, "gates", None)
    if assign == "gates" and gates is None:
        raise ConfigError(
            f"run {run!r} ({config.method.name}) has no CSG gates; use assign='activation'"
        )
    opts = config.data.options
    data = load_dataset(config.data.name, split, seed=config.data_seed, **opts)
    train = load_dataset(config.data.name, "train", seed=config.data_seed, **opts)
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
