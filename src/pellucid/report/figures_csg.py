"""CSG figures (csg.md, "Extra diagnostics"): the gate matrix with filters sorted by their
assigned class, MI matrices of two runs side by side, and one class's top filters'
activation maps on a few images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pellucid.io import save_figure
from pellucid.report.draw import draw_image, literal, literals


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sort_filters_by_class(matrix: np.ndarray) -> np.ndarray:
    """Column order: by argmax class, then by decreasing value within a class."""
    cls = matrix.argmax(0)
    peak = matrix.max(0)
    return np.lexsort((-peak, cls))


def plot_gate_matrix(
    gates: torch.Tensor | np.ndarray, out: Path, class_names: Sequence[str] | None = None
) -> Path:
    """Heat map of G (classes x filters), filters sorted by assigned class."""
    plt = _plt()
    g = np.asarray(gates.detach().cpu() if isinstance(gates, torch.Tensor) else gates)
    order = sort_filters_by_class(g)
    fig, ax = plt.subplots(figsize=(max(4, g.shape[1] / 12), 0.35 * g.shape[0] + 1.2))
    im = ax.imshow(
        g[:, order], aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest"
    )
    ax.set_yticks(range(g.shape[0]), literals(class_names or range(g.shape[0])))
    ax.set_xlabel("filter (sorted by assigned class)")
    ax.set_title(f"CSG gate matrix G (density {g.mean():.3f})")
    fig.colorbar(im, ax=ax, fraction=0.03)
    return _save(fig, out)


def plot_mi_matrices(
    matrices: dict[str, np.ndarray], out: Path, class_names: Sequence[str] | None = None
) -> Path:
    """MI matrices (classes x filters) of several runs side by side, same colour scale;
    one hot cell per column means class-specific filters."""
    plt = _plt()
    vmax = max(float(m.max()) for m in matrices.values()) or 1.0
    fig, axes = plt.subplots(1, len(matrices), figsize=(5 * len(matrices), 3.4), squeeze=False)
    for ax, (name, m) in zip(axes[0], matrices.items(), strict=True):
        im = ax.imshow(
            m[:, sort_filters_by_class(m)],
            aspect="auto",
            cmap="magma",
            vmin=0,
            vmax=vmax,
            interpolation="nearest",
        )
        ax.set_title(literal(f"{name}: MIS {m.max(0).mean():.3f}"))
        ax.set_xlabel("filter (sorted by top class)")
        ax.set_yticks(range(m.shape[0]), literals(class_names or range(m.shape[0])))
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.02, label="MI (nats)")
    return _save(fig, out, tight=False)


@torch.no_grad()
def plot_class_filters(
    model: nn.Module,
    layer: str,
    images: torch.Tensor,
    filters: Sequence[int],
    out: Path,
    title: str = "",
) -> Path:
    """Activation maps of ``filters`` (rows of the figure: images) for a few images."""
    from pellucid.hooks import capture
    from pellucid.state import eval_mode

    plt = _plt()
    with eval_mode(model):
        with capture(model, [layer], detach=True) as acts:
            model(images)
        maps = acts[layer][:, list(filters)].cpu().numpy()  # (N, F, H, W)
    n, f = maps.shape[:2]
    fig, axes = plt.subplots(n, f + 1, figsize=(1.4 * (f + 1), 1.4 * n), squeeze=False)
    vmax = float(maps.max()) or 1.0
    for i in range(n):
        draw_image(axes[i, 0], images[i])
        for j in range(f):
            axes[i, j + 1].imshow(maps[i, j], cmap="inferno", vmin=0, vmax=vmax)
            if i == 0:
                axes[i, j + 1].set_title(f"filter {filters[j]}", fontsize=7)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(literal(title), fontsize=9)
    return _save(fig, out)


def _save(fig: Any, out: Path, tight: bool = True) -> Path:
    plt = _plt()
    if tight:
        fig.tight_layout()
    save_figure(fig, Path(out), dpi=110)
    plt.close(fig)
    return out


def run_figures(runs: Sequence[str | Path], out: Path, n_images: int = 4) -> list[Path]:
    """All filter figures for saved runs: MI matrices side by side; for CSG runs, the gate
    matrix and the top filters of class 0 (by gate, then by MI) on ``n_images`` test images."""
    from pellucid.data import collate
    from pellucid.metrics import mi_matrix, pooled_activations
    from pellucid.training.run import load_method, load_run_split

    out = Path(out)
    written, matrices, class_names = [], {}, []
    for run in runs:
        method, cfg = load_method(run)
        # drawn from the data, labelled with the run's own class names (the count checked)
        data = load_run_split(cfg, "test", f"run {str(run)!r}", names=False)
        layer = method.analysis_layer()
        model = method.inference_model()
        acts, labels = pooled_activations(model, layer, data)
        m = mi_matrix(acts, labels, data.info.num_classes)
        label = f"{Path(run).name} ({cfg.method.name})"
        matrices[label] = m
        names = tuple((cfg.info or {}).get("class_names") or data.info.class_names)
        class_names.append(tuple(names))
        if hasattr(method, "gates"):
            written.append(
                plot_gate_matrix(method.gates, out / f"{Path(run).name}_gates.png", names)
            )
            score = method.gates.detach()[0].cpu().numpy() * 10 + m[0]
        else:
            score = m[0]
        top = [int(k) for k in np.argsort(-score)[:6]]
        idx = [i for i in range(len(data)) if int(data.labels[i]) == 0][:n_images]
        images = collate([data[i] for i in idx]).image
        written.append(
            plot_class_filters(
                model,
                layer,
                images,
                top,
                out / f"{Path(run).name}_class0_filters.png",
                title=f"{label}: top filters of class {names[0]!r} at {layer}",
            )
        )
    shared = class_names[0] if len(set(class_names)) == 1 else None  # rows named if one dataset
    written.append(plot_mi_matrices(matrices, out / "mi_matrices.png", shared))
    return written
