"""Sanity-check figures (Adebayo et al. 2018, Figs. 2 and 4): the rank correlation of each
explainer's maps as the model's blocks are randomised one after another, and one image's
maps under the trained and every damaged model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pellucid.io import save_figure
from pellucid.report.draw import literal, literals, rgb_array
from pellucid.report.figures_explain import save_grid


def save_cascade_curves(result: dict[str, Any], path: Path) -> Path:
    """Line plot: x = the blocks randomised so far (trained model first, correlation 1),
    y = mean Spearman rank correlation with the trained model's maps, one line per
    explainer; the random-label model's correlation as a marker at the right when known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = result["layers"]
    ticks = ["trained", *(f"+{name}" for name in layers)]
    fig, ax = plt.subplots(figsize=(max(4.5, 0.8 * len(ticks) + 2.5), 3.2))
    for i, (name, row) in enumerate(result["rows"].items()):
        if "cascading" not in row:
            continue
        color = f"C{i % 10}"
        ax.plot(range(len(ticks)), [1.0, *row["cascading"]["mean"]], "o-", color=color,
                label=literal(name), markersize=3)  # fmt: skip
        if "data" in row and row["data"]["mean"] == row["data"]["mean"]:
            ax.plot([len(ticks)], [row["data"]["mean"]], "s", color=color, markersize=5)
    if any("data" in row for row in result["rows"].values()):
        ticks.append("random\nlabels")
    ax.set_xticks(range(len(ticks)), literals(ticks), rotation=45, ha="right", fontsize=7)
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("rank correlation with\ntrained maps ↓", fontsize=8)
    ax.set_title("cascading randomisation (output → input)", fontsize=9)
    ax.legend(fontsize=6, loc="lower left", ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def save_sanity_maps(
    image: torch.Tensor, maps: dict[str, dict[str, torch.Tensor]], path: Path
) -> Path:
    """Grid: one row per explainer; the image, then its map of the first image under the
    trained model and each damaged model (each map scaled by its largest magnitude)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns: list[str] = []
    for row in maps.values():
        columns += [c for c in row if c not in columns]
    rows, cols = len(maps), 1 + len(columns)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.25 * rows), squeeze=False)
    rgb = rgb_array(image)
    for i, (name, row) in enumerate(maps.items()):
        axes[i, 0].imshow(rgb)
        axes[i, 0].set_ylabel(literal(name), fontsize=7)
        for j, col in enumerate(columns, start=1):
            if col in row:
                m = row[col][0, 0].detach().cpu().float()
                scale = float(m.abs().max()) or 1.0
                axes[i, j].imshow((m / scale).numpy(), cmap="bwr" if m.min() < 0 else "viridis",
                                  vmin=-1 if m.min() < 0 else 0, vmax=1)  # fmt: skip
            if i == 0:
                axes[i, j].set_title(literal(col), fontsize=7)
    return save_grid(fig, axes, path)
