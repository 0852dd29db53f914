"""Figures of the HTML report, as PNG ``data:`` URIs.

Training curves are drawn here; the filter (MI, CSG), path (decoupling) and part (ICNN)
figures are drawn by the ``pellucid.report.figures_*`` modules from the runs' saved weights
and inlined here.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pellucid.report.draw import literal
from pellucid.report.html_runs import RunRecord, _file_uri, png_uri


def _fig_uri(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return png_uri(buf.getvalue())


# ------------------------------------------------------------------------------ figures
def training_curves(runs: list[RunRecord]) -> str | None:
    """One figure: training loss and validation accuracy per epoch of every run."""
    with_history = [r for r in runs if r.history]
    if not with_history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for r in with_history:
        ep = [h["epoch"] for h in r.history]
        loss = [h.get("train_loss", float("nan")) for h in r.history]
        a.plot(ep, loss, marker="o", label=literal(r.name))
        b.plot(ep, [h.get("val_accuracy", float("nan")) for h in r.history], marker="o")
    a.set(xlabel="epoch", ylabel="training loss", title="training loss (lower is better)")
    b.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy (higher is better)")
    a.legend(fontsize=7)
    return _fig_uri(fig)


def filter_figures(runs: list[RunRecord], tmp: Path) -> list[dict[str, str]]:
    """MI matrices of all runs; gate matrix and class filters of CSG runs."""
    from pellucid.report.figures_csg import run_figures

    paths = run_figures([r.path for r in runs], tmp / "filters")
    return [{"title": _title(p), "uri": _file_uri(p)} for p in paths]


def optional_figures(
    runs: list[RunRecord], tmp: Path, module: str, fn: str, method: str
) -> list[dict[str, str]]:
    """Figures of a method (``pellucid.report.<module>.<fn>(runs, out)``) for the runs that
    used it; empty when no run did or this version has no such figure module."""
    import importlib

    chosen = [r.path for r in runs if r.method.startswith(method)]
    if not chosen:
        return []
    try:
        make = getattr(importlib.import_module(f"pellucid.report.{module}"), fn)
    except (ImportError, AttributeError):
        return []
    if method == "icnn":  # ICNN figures compare against plain runs too
        chosen = [r.path for r in runs if r.method in ("icnn", "standard")]
    paths = make(chosen, tmp / module)
    return [{"title": _title(p), "uri": _file_uri(p), "path": str(p)} for p in paths]


def _title(path: Path) -> str:
    return Path(path).stem.replace("_", " ")
