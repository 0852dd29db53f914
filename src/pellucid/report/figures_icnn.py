"""ICNN figures (icnn.md, "Qualitative"; Zhang et al., CVPR 2018, Fig. 4-5): for a few filters
of each run, the image windows around their peak units on their top images, runs side by side
(an ICNN run next to its plain baseline shows whether a filter keeps to one part).

Filters are picked the same way in every run -- at evenly spaced ranks of their location
instability, from the most to the least stable -- so the figure shows each run's spread rather
than its best filters. A window is centred on the peak unit's receptive-field centre; its side
is ``max(3 jump, min(field, image / 2))`` pixels, because the theoretical field of a top
layer covers most of a small image (54 of 64 px for ``convnet`` + the ICNN layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pellucid.io import save_figure
from pellucid.report.draw import literal, rgb_array


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def crop(image: torch.Tensor, cx: float, cy: float, side: int) -> np.ndarray:
    """(side, side, 3) window of a (C, H, W) image centred at (cx, cy); grey outside; any
    channel count (:func:`pellucid.report.draw.rgb_array`)."""
    c, h, w = image.shape
    x0, y0 = int(round(cx - (side - 1) / 2)), int(round(cy - (side - 1) / 2))
    out = torch.full((c, side, side), 0.5)
    xs, ys = slice(max(x0, 0), min(x0 + side, w)), slice(max(y0, 0), min(y0 + side, h))
    if xs.start < xs.stop and ys.start < ys.stop:
        out[:, ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = image[:, ys, xs]
    return rgb_array(out)


def filter_windows(
    model: nn.Module,
    layer: str,
    data: Any,
    n_filters: int = 6,
    n_images: int = 5,
    max_images: int = 1000,
    device: torch.device | str | None = None,
) -> list[dict[str, Any]]:
    """For ``n_filters`` filters of ``layer``: their category, location instability and the
    windows around their peak units on their ``n_images`` top images of that category.

    Returns a list of ``{"filter", "category", "instability", "windows"}``.
    """
    from pellucid.metrics.parts import (
        collect_maps,
        filter_categories,
        instability_from_maps,
        peak_centres,
        receptive_field,
    )

    lm = collect_maps(model, layer, data, device, max_images=max_images)
    rf = receptive_field(model, layer, lm.in_channels, lm.image_size)
    value, centre = peak_centres(lm.maps, rf)  # (N, K), (N, K, 2)
    cats = filter_categories(lm.maps, lm.labels)
    k = lm.maps.shape[1]
    if lm.landmarks is not None:
        per_filter = instability_from_maps(lm, rf)[1]
        order = np.argsort(np.nan_to_num(per_filter, nan=np.inf), kind="stable")
    else:
        per_filter = np.full(k, np.nan)
        order = np.argsort(-value.mean(0).numpy(), kind="stable")
    picks = order[np.linspace(0, k - 1, min(n_filters, k)).round().astype(int)]
    side = max(3 * max(rf.jump), min(max(rf.size), min(lm.image_size) // 2))
    rows = []
    for f in picks.tolist():
        ids = torch.nonzero(lm.labels == cats[f]).flatten()
        top = ids[torch.argsort(-value[ids, f], stable=True)[:n_images]]
        windows = [crop(data[int(i)]["image"], *centre[i, f].tolist(), side) for i in top]
        rows.append(
            {
                "filter": f,
                "category": int(cats[f]),
                "instability": float(per_filter[f]),
                "windows": windows,
            }
        )
    return rows


def plot_windows(
    panels: dict[str, list[dict[str, Any]]], out: Path, class_names: Sequence[str] = ()
) -> Path:
    """One panel per run (title = key): rows = filters, columns = top images' windows."""
    plt = _plt()
    n_rows = max(len(rows) for rows in panels.values())
    n_cols = max(len(r["windows"]) for rows in panels.values() for r in rows)
    fig = plt.figure(figsize=(1.15 * n_cols * len(panels) + 0.6, 1.2 * n_rows + 0.6))
    subfigs = np.atleast_1d(fig.subfigures(1, len(panels), wspace=0.04))
    for sub, (title, rows) in zip(subfigs, panels.items(), strict=True):
        axes = sub.subplots(n_rows, n_cols, squeeze=False)
        for i, row in enumerate(rows):
            name = class_names[row["category"]] if class_names else str(row["category"])
            for j, ax in enumerate(axes[i]):
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(row["windows"]):
                    ax.imshow(row["windows"][j], interpolation="nearest")
                elif j > 0:
                    ax.set_axis_off()  # fewer top images than columns
            label = f"f{row['filter']} {name}\ninst {row['instability']:.3f}"
            axes[i, 0].set_ylabel(literal(label), fontsize=7)
        for ax in axes[len(rows) :].flat:
            ax.set_axis_off()
        sub.suptitle(literal(title), fontsize=9)
    save_figure(fig, Path(out), dpi=110)
    plt.close(fig)
    return Path(out)


def _kind(method: Any, name: str) -> str:
    """ "icnn", "icnn plain" or the run's method name."""
    if name == "icnn":
        return "icnn plain" if getattr(method, "plain", False) else "icnn"
    return name


def icnn_figures(runs: list[Path], out: Path, n_filters: int = 6, n_images: int = 5) -> list[Path]:
    """Peak-unit windows of a few filters per run, all runs side by side in one figure
    (``out/icnn_filter_windows.png``), ICNN runs first, then their plain baselines and
    any other runs. Works for any run (its analysis layer); uses the runs' test splits."""
    from pellucid.data import load_dataset
    from pellucid.training.run import load_method

    out = Path(out)
    loaded = []
    for run in runs:
        method, cfg = load_method(run)
        loaded.append((Path(run), method, cfg))
    rank = {"icnn": 0, "icnn plain": 1}
    loaded.sort(key=lambda t: rank.get(_kind(t[1], t[2].method.name), 2))
    panels: dict[str, list[dict[str, Any]]] = {}
    names: Sequence[str] = ()
    for run, method, cfg in loaded:
        data = load_dataset(cfg.data.name, "test", seed=cfg.data_seed, **cfg.data.options)
        names = data.info.class_names
        rows = filter_windows(
            method.inference_model(), method.analysis_layer(), data, n_filters, n_images
        )
        panels[f"{run.name} ({_kind(method, cfg.method.name)})"] = rows
    return [plot_windows(panels, out / "icnn_filter_windows.png", names)]
