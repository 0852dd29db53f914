"""Calculation-path figures of decoupled runs (Li et al., "Interpretable Neural Network
Decoupling", ECCV 2020, Sec. 4.2-4.3; decoupling.md, "Path-level interpretation"):

- per class, how often each filter of each gated layer is active (layers x filters);
- class x class path similarity (mean Jaccard of two images' paths), shallow and deep layers
  side by side: the paper expects shallow layers shared and deep layers class-specific.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pellucid.io import save_figure
from pellucid.metrics.paths import (
    CalculationPaths,
    LayerSpan,
    calculation_paths,
    class_mean_paths,
    class_similarity,
    deep_layers,
)
from pellucid.report.draw import literal, literals


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _columns(spans: Sequence[LayerSpan]) -> torch.Tensor:
    return torch.cat([torch.arange(s.start, s.stop) for s in spans])


def plot_path_frequency(
    cp: CalculationPaths,
    num_classes: int,
    out: Path,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """One panel per class: gated layers (rows) x filters (columns), colour = fraction of
    the class's images on which the filter is active; blank where a layer is narrower."""
    plt = _plt()
    freq = class_mean_paths(cp.paths, cp.labels, num_classes).numpy()  # (C, F)
    width = max(s.stop - s.start for s in cp.layers)
    cols = min(num_classes, 5)
    rows = -(-num_classes // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 0.35 * len(cp.layers) * rows + 1.6))
    axes = np.atleast_1d(axes).reshape(rows, cols)
    for c, ax in enumerate(axes.flat):
        if c >= num_classes:
            ax.set_axis_off()
            continue
        grid = np.full((len(cp.layers), width), np.nan)
        for i, s in enumerate(cp.layers):
            grid[i, : s.stop - s.start] = freq[c, s.start : s.stop]
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(literal(class_names[c] if class_names else f"class {c}"), fontsize=9)
        ax.set_yticks(range(len(cp.layers)), literals(s.name for s in cp.layers), fontsize=6)
        ax.set_xlabel("filter", fontsize=7)
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, label="activation frequency")
    fig.suptitle(literal(title or "filter activation frequency per class"), fontsize=10)
    return _save(fig, out)


def plot_class_similarity(
    cp: CalculationPaths,
    num_classes: int,
    out: Path,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Class x class mean Jaccard similarity of paths, shallow vs deep layers (thirds)."""
    plt = _plt()
    n = len(cp.layers)
    groups = {
        "shallow layers": cp.layers[: max(1, -(-n // 3))],
        "deep layers": deep_layers(cp.layers),
    }
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    names = literals(class_names or range(num_classes))
    for ax, (label, spans) in zip(axes, groups.items(), strict=True):
        sub = cp.paths[:, _columns(spans)]
        m = class_similarity(sub, cp.labels, num_classes).numpy()
        im = ax.imshow(m, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        eye = np.eye(num_classes, dtype=bool)
        intra, inter = np.nanmean(m[eye]), np.nanmean(m[~eye])
        ax.set_title(f"{label}: intra {intra:.2f}, inter {inter:.2f}", fontsize=9)
        ax.set_xticks(range(num_classes), names, rotation=90, fontsize=7)
        ax.set_yticks(range(num_classes), names, fontsize=7)
    fig.colorbar(im, ax=axes.tolist(), fraction=0.03, label="mean Jaccard similarity")
    fig.suptitle(literal(title or "path similarity between classes"), fontsize=10)
    return _save(fig, out)


def _save(fig: Any, out: Path) -> Path:
    plt = _plt()
    save_figure(fig, Path(out), dpi=110)
    plt.close(fig)
    return Path(out)


def path_figures(runs: Sequence[str | Path], out: Path, max_images: int = 1000) -> list[Path]:
    """Both path figures for every decoupled run in ``runs`` (others are skipped), from the
    run's saved weights and up to ``max_images`` test images; returns the files written."""
    from pellucid.data import load_dataset
    from pellucid.methods.decoupling import gated_layers
    from pellucid.training.run import load_method

    out = Path(out)
    written: list[Path] = []
    for run in runs:
        method, cfg = load_method(run)
        model = method.inference_model()
        if not gated_layers(model):
            continue
        data = load_dataset(cfg.data.name, "test", seed=cfg.data_seed, **cfg.data.options)
        cp = calculation_paths(model, data, max_images=max_images)
        c, names, tag = data.info.num_classes, list(data.info.class_names), Path(run).name
        written.append(
            plot_path_frequency(
                cp,
                c,
                out / f"{tag}_path_frequency.png",
                names,
                f"{tag}: filter activation frequency per class",
            )
        )
        written.append(
            plot_class_similarity(
                cp, c, out / f"{tag}_path_similarity.png", names, f"{tag}: path similarity"
            )
        )
    return written
