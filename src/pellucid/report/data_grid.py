"""A picture of the data: samples with object-mask outlines, part outlines and landmarks."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pellucid.data.base import PellucidDataset
from pellucid.errors import DataError
from pellucid.report.draw import draw_image, literal


def save_data_grid(dataset: PellucidDataset, out: Path, n: int = 16, cols: int = 8) -> Path:
    """Draw ``n`` samples (one per class first, then in order) and save a PNG at ``out``
    (``.png`` added when ``out`` has no image suffix, :func:`figure_path`); returns the path
    written.

    Object masks are outlined in white, each part slot in its own colour, landmarks as
    crosses; titles give the class name. Images of any channel count are drawn
    (:func:`pellucid.report.draw.display_array`).
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
        draw_image(ax, item["image"])
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
        ax.set_title(literal(name), fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(
        literal(f"{dataset.info.name}: white = object mask, colours = parts, x = landmarks"),
        fontsize=9,
    )
    fig.tight_layout()
    out = figure_path(Path(out), fig.canvas.get_supported_filetypes())
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out


def figure_path(out: Path, formats: Iterable[str] = ("png",)) -> Path:
    """The file a figure saved at ``out`` lands in: ``out`` itself when its suffix names
    one of ``formats`` (e.g. ``grid.png``, ``grid.pdf``), else ``out`` with ``.png`` added
    (``runs`` -> ``runs.png``, also when ``runs`` is a directory), as matplotlib would."""
    if out.suffix[1:].lower() in set(formats):
        return out
    return out.with_name(f"{out.name}.png")
