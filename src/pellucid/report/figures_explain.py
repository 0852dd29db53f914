"""Explanation figures: one overlay per image (image | map | masked image) and a gallery of
the same images under several explainers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pellucid.io import atomic_write_bytes, save_figure
from pellucid.report.draw import literal, rgb_array

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure


def overlay_png(
    image: torch.Tensor,
    map_: torch.Tensor,
    title: str = "",
    mask: torch.Tensor | None = None,
) -> bytes:
    """The figure of :func:`save_overlay` as PNG bytes, drawn without writing a file (so
    that a caller can draw every figure before it writes any)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb, m = rgb_array(image), map_.detach().cpu().float()[0].numpy()  # (H, W, 3), (H, W)
    fig, axes = plt.subplots(1, 3, figsize=(6.6, 2.4))
    try:
        axes[0].imshow(rgb)
        if mask is not None:
            outline = mask.cpu().float()[0].numpy()
            axes[0].contour(outline, levels=[0.5], colors="lime", linewidths=0.8)
        axes[1].imshow(rgb)
        axes[1].imshow(m, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[2].imshow(rgb * m[..., None])
        for ax, label in zip(axes, ("image", "map", "image x map"), strict=True):
            ax.set_title(label, fontsize=8)
            ax.axis("off")
        if title:
            fig.suptitle(literal(title), fontsize=9)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, dpi=100, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def save_overlay(
    image: torch.Tensor,
    map_: torch.Tensor,
    path: Path,
    title: str = "",
    mask: torch.Tensor | None = None,
) -> Path:
    """PNG with three panels: the image (object outline if ``mask``), the map over the image,
    and the image multiplied by the map; ``title`` is drawn literally (``$`` is no
    mathtext), an image of any channel count as :func:`pellucid.report.draw.rgb_array`."""
    atomic_write_bytes(path, overlay_png(image, map_, title, mask))
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
    with its map over the image (``titles`` and explainer names drawn literally, images of
    any channel count as :func:`pellucid.report.draw.rgb_array`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(max_images, images.shape[0])
    cols = 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(1.3 * cols, 1.3 * n), squeeze=False)
    for i in range(n):
        rgb = rgb_array(images[i])
        axes[i, 0].imshow(rgb)
        if masks is not None:
            axes[i, 0].contour(masks[i, 0].cpu().numpy(), levels=[0.5], colors="lime")
        if titles:
            axes[i, 0].set_ylabel(literal(titles[i]), fontsize=7)
        for j, (name, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(rgb)
            axes[i, j].imshow(m[i, 0].cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if i == 0:
                axes[i, j].set_title(literal(name), fontsize=7)
    return save_grid(fig, axes, path)


def save_grid(fig: Figure, axes: np.ndarray, path: Path) -> Path:
    """Finish an image grid whose first column holds the images (no ticks, "image" over
    the first column), save it atomically and close the figure."""
    import matplotlib.pyplot as plt

    try:
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, 0].set_title("image", fontsize=7)
        fig.tight_layout()
        save_figure(fig, path)
    finally:
        plt.close(fig)
    return path
