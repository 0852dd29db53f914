"""Explanation figures: one overlay per image (image | map | masked image) and a gallery of
the same images under several explainers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pellucid.io import save_figure

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure


def _rgb(img: torch.Tensor):
    import numpy as np

    a = img.detach().cpu().float().clamp(0, 1).numpy()
    return np.repeat(a, 3, 0).transpose(1, 2, 0) if a.shape[0] == 1 else a[:3].transpose(1, 2, 0)


def save_overlay(
    image: torch.Tensor,
    map_: torch.Tensor,
    path: Path,
    title: str = "",
    mask: torch.Tensor | None = None,
) -> Path:
    """PNG with three panels: the image (object outline if ``mask``), the map over the image,
    and the image multiplied by the map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb, m = _rgb(image), map_.detach().cpu().float()[0].numpy()
    fig, axes = plt.subplots(1, 3, figsize=(6.6, 2.4))
    axes[0].imshow(rgb)
    if mask is not None:
        axes[0].contour(mask.cpu().float()[0].numpy(), levels=[0.5], colors="lime", linewidths=0.8)
    axes[1].imshow(rgb)
    axes[1].imshow(m, cmap="jet", alpha=0.5, vmin=0, vmax=1)
    axes[2].imshow(rgb * m[..., None])
    for ax, label in zip(axes, ("image", "map", "image x map"), strict=True):
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def save_gallery(
    images: torch.Tensor,
    maps: dict[str, torch.Tensor],
    path: Path,
    titles: list[str] | None = None,
    masks: torch.Tensor | None = None,
    max_images: int = 8,
) -> Path:
    """PNG grid: one row per image, first column the image, then one column per explainer
    with its map over the image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(max_images, images.shape[0])
    cols = 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(1.3 * cols, 1.3 * n), squeeze=False)
    for i in range(n):
        rgb = _rgb(images[i])
        axes[i, 0].imshow(rgb)
        if masks is not None:
            axes[i, 0].contour(masks[i, 0].cpu().numpy(), levels=[0.5], colors="lime")
        if titles:
            axes[i, 0].set_ylabel(titles[i], fontsize=7)
        for j, (name, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(rgb)
            axes[i, j].imshow(m[i, 0].cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if i == 0:
                axes[i, j].set_title(name, fontsize=7)
    return save_grid(fig, axes, path)


def save_grid(fig: Figure, axes: np.ndarray, path: Path) -> Path:
    """Finish an image grid whose first column holds the images (no ticks, "image" over
    the first column), save it atomically and close the figure."""
    import matplotlib.pyplot as plt

    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path
