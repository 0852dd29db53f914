"""The maps of the CSG paper's filter localisation protocols and their per-image scores
(:mod:`pellucid.apps.filter_localisation`): a layer's activation maps (``filters``), the
class-gradient maps of chosen filters (``gradient``, :func:`filter_gradient_maps`), and
:class:`FilterScores`, which scores them against object masks batch by batch."""

from __future__ import annotations

import torch
from torch import nn

from pellucid.apps.filter_assignment import check_maps
from pellucid.errors import ConfigError, DataError

__all__ = ["FilterScores", "filter_gradient_maps", "layer_maps"]


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
        a = check_maps(acts[layer], layer)  # (N, K, h, w)
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


@torch.no_grad()
def layer_maps(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """Layer ``layer``'s activation maps (N, K, h, w) of ``images``, as float (no gradient)."""
    from pellucid.hooks import capture
    from pellucid.state import model_state

    with model_state(model), capture(model, [layer], detach=True) as acts:
        model(images)
        return check_maps(acts[layer], layer).float()


class FilterScores:
    """The per-image scores of :func:`filter_localise`, batch by batch."""

    def __init__(self) -> None:
        self.per_image: list[float | None] = []  # an image's (mean) IoU
        self.pair_iou: list[torch.Tensor] = []  # filters: IoU of every (image, filter) pair
        self.any_hit: list[bool] = []  # filters: some filter of the class localises
        self.hits: list[torch.Tensor] = []  # gradient: pointing-game hits
        self.labels: list[torch.Tensor] = []  # gradient: the classes scored

    def add_gradient(
        self, model: nn.Module, layer: str, images: torch.Tensor, cls: torch.Tensor,
        masks: torch.Tensor, table: torch.Tensor, sigma: float, q: float,
    ) -> None:  # fmt: skip
        """Class-gradient maps of the images of classes ``cls`` from ``table``'s filters:
        their top-``q`` IoU with ``masks`` and their pointing game."""
        from pellucid.metrics.localisation import pointing_game, top_q_iou

        rows = table[cls]
        if bool((rows < 0).any()):
            missing = sorted({int(c) for c in cls[(rows < 0).flatten(1).any(1)].tolist()})
            raise DataError(
                f"class(es) {missing} have no image among the reference images that choose each "
                "class's filters: give reference images of every class (a class-ordered "
                "dataset's first images are all of one class)"
            )
        maps = filter_gradient_maps(model, layer, images, rows, sigma).cpu()
        iou = top_q_iou(maps, masks, q=q)
        self.per_image.extend(round(float(v), 5) for v in iou)
        self.hits.append(pointing_game(maps, masks)["hits"].cpu())
        self.labels.append(cls)

    def add_filters(
        self, acts: torch.Tensor, cls: torch.Tensor, masks: torch.Tensor,
        members: torch.Tensor, thresholds: torch.Tensor, threshold: float,
    ) -> None:  # fmt: skip
        """Per-filter maps: each filter of an image's class, upsampled from ``acts``
        (B, K, h, w) and cut at its reference quantile, against the image's mask."""
        size = tuple(masks.shape[-2:])
        for i in range(len(cls)):
            ks = members[int(cls[i])].nonzero().flatten()
            if len(ks) == 0:
                self.per_image.append(None)
                self.any_hit.append(False)
                continue
            region = _upsampled(acts[i : i + 1, ks], size)[0] > thresholds[ks, None, None]
            iou = _iou(region, masks[i])  # (len(ks),)
            self.pair_iou.append(iou)
            self.per_image.append(round(float(iou.mean()), 5))
            self.any_hit.append(bool((iou > threshold).any()))

    def summary(
        self, protocol: str, threshold: float
    ) -> tuple[float, float, float | None, float | None]:
        """(mean IoU, share above ``threshold``, share of images localised, pointing game):
        ``gradient`` counts images (IoU >= threshold) and has no image share; ``filters``
        counts (image, filter) pairs (IoU > threshold) and has no pointing game."""
        from pellucid.metrics.localisation import class_mean

        if protocol == "gradient":
            iou_all = torch.tensor([v for v in self.per_image if v is not None])
            share = float((iou_all >= threshold).float().mean())
            pointing = round(class_mean(torch.cat(self.hits), torch.cat(self.labels)), 5)
            return float(iou_all.mean()), share, None, pointing
        pairs = torch.cat(self.pair_iou) if self.pair_iou else torch.zeros(0)
        mean_iou = float(pairs.mean()) if len(pairs) else 0.0
        share = float((pairs > threshold).float().mean()) if len(pairs) else 0.0
        return mean_iou, share, float(sum(self.any_hit) / len(self.any_hit)), None
