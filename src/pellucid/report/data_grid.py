"""A picture of the data: samples with object-mask outlines, part outlines and landmarks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pellucid.data.base import PellucidDataset
from pellucid.errors import DataError


def save_data_grid(dataset: PellucidDataset, out: Path, n: int = 16, cols: int = 8) -> Path:
    """Draw ``n`` samples (one per class first, then in order) and save a PNG at ``out``.

    Object masks are outlined in white, each part slot in its own colour, landmarks as
    crosses; titles give the class name.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if n < 1:
        raise DataError(f"show-data: --n must be >= 1, got {n}")
    n = min(n, len(dataset))
    labels = dataset.labels.numpy()
    first = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
    order = first + [i for i in range(len(dataset)) if i not in set(first)]
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.95 * rows), squeeze=False)
    part_colours = plt.cm.tab10.colors
    for ax, idx in zip(axes.flat, order[:n], strict=False):
        item = dataset[idx]
        img = item["image"].permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
        if "parts" in item:
            for k, part in enumerate(item["parts"].numpy()):
                if part.any():
                    ax.contour(part, levels=[0.5], colors=[part_colours[k % 10]], linewidths=0.8)
        if "mask" in item:
            ax.contour(item["mask"][0].numpy(), levels=[0.5], colors="white", linewidths=0.8)
        if "landmarks" in item:
            pts = item["landmarks"].numpy()
            ok = ~np.isnan(pts).any(1)
            ax.scatter(pts[ok, 0], pts[ok, 1], marker="x", s=18, c="red", linewidths=1)
        name = dataset.info.class_names[int(item["label"])]
        ax.set_title(name, fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(
        f"{dataset.info.name}: white = object mask, colours = parts, x = landmarks", fontsize=9
    )
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
