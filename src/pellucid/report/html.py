"""``pellucid report``: one self-contained HTML file built only from saved run results.

Everything is inlined: figures are PNG ``data:`` URIs, the style sheet is in the page, there
are no scripts, fonts or external resources, so the file opens offline and sends no request.
All user-supplied text (run names, paths, class names, configs) goes through Jinja2's
autoescaping.

Sections (each only when some run has what it needs):
summary (every run's metrics with the direction of each and the best value marked),
training curves, filters (MI matrices; CSG gate matrix and class filters), calculation paths
(decoupling), filter parts (ICNN), explanations (``pellucid compare-explainers`` results saved
in ``RUN/explanations``), configs (the resolved config and the command that reproduces a run).
"""

from __future__ import annotations

import base64
import io
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pellucid.errors import DataError
from pellucid.io import atomic_write_text, read_json

EXPLANATIONS_DIR = "explanations"


@dataclass
class RunRecord:
    """What the report knows about one run directory."""

    name: str
    path: Path
    config: dict[str, Any]
    config_text: str
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    explanations: dict[str, Any] | None = None

    @property
    def method(self) -> str:
        return str(self.config.get("method", {}).get("name", "?"))

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.config.get("info", {}).get("class_names", [])]


def read_run(path: str | Path) -> RunRecord:
    """Read a finished run directory (config.yaml and metrics.json are required)."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise DataError(f"{str(path)!r} is not a run directory (no config.yaml)")
    if not (path / "metrics.json").is_file():
        raise DataError(f"run {str(path)!r} has no metrics.json (unfinished? `pellucid evaluate`)")
    text = (path / "config.yaml").read_text()
    config = yaml.safe_load(text) or {}
    history = read_json(path / "history.json") if (path / "history.json").is_file() else []
    exp_file = path / EXPLANATIONS_DIR / "compare.json"
    explanations = read_json(exp_file) if exp_file.is_file() else None
    return RunRecord(path.name, path, config, text, read_json(path / "metrics.json"), history,
                     explanations)  # fmt: skip


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _fig_uri(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return png_uri(buf.getvalue())


def _file_uri(path: Path) -> str:
    return png_uri(Path(path).read_bytes())


# ------------------------------------------------------------------------- summary table
def summary_table(runs: list[RunRecord]) -> dict[str, Any]:
    """Columns = declared metrics present in some run (direction from ``metrics.SPECS``);
    ``best`` marks, per column, the runs holding the best value."""
    import pellucid.apps.acceleration  # noqa: F401  (declares flops_ratio, latency_ratio)
    import pellucid.metrics  # noqa: F401  (declares the other metrics)
    from pellucid.metrics.base import SPECS

    keys = [k for k in SPECS if any(_num(r.metrics.get(k)) is not None for r in runs)]
    columns = []
    for key in keys:
        vals = [_num(r.metrics.get(key)) for r in runs]
        present = [v for v in vals if v is not None]
        best = (max if SPECS[key].higher_is_better else min)(present)
        columns.append(
            {
                "key": key,
                "arrow": "↑" if SPECS[key].higher_is_better else "↓",
                "direction": "higher is better"
                if SPECS[key].higher_is_better
                else "lower is better",
                "description": SPECS[key].description,
                "cells": [
                    {"text": _fmt(v), "best": v is not None and len(present) > 1 and v == best}
                    for v in vals
                ],
            }
        )
    return {"columns": columns}


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _fmt(v: float | None) -> str:
    if v is None:
        return "–"
    if v == int(v) and abs(v) >= 10:
        return f"{int(v)}"
    return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"


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
        a.plot(ep, [h.get("train_loss", float("nan")) for h in r.history], marker="o", label=r.name)
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


def explanation_sections(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """Per run with saved ``compare-explainers`` results: its table and gallery."""
    from pellucid.explain.scoring import SCORES

    out = []
    for r in runs:
        e = r.explanations
        if not e:
            continue
        keys: list[str] = []
        for row in e["rows"].values():
            keys += [k for k in row if k not in keys]
        arrows = {k: ("↑" if SCORES.get(k, False) else "↓") for k in keys}
        arrows["sanity_rank_correlation"] = "↓"
        best: dict[str, float] = {}
        for k in keys:
            vals = [v[k] for v in e["rows"].values() if isinstance(v.get(k), (int, float))]
            if vals:
                best[k] = max(vals) if arrows[k] == "↑" else min(vals)
        rows = [
            {
                "name": name,
                "cells": [
                    {"text": _fmt(_num(row.get(k))), "best": _num(row.get(k)) == best.get(k)}
                    for k in keys
                ],
            }
            for name, row in e["rows"].items()
        ]
        gallery = r.path / EXPLANATIONS_DIR / "gallery.png"
        out.append(
            {
                "run": r.name,
                "dataset": e.get("dataset", ""),
                "n": e.get("n", ""),
                "target": e.get("target", ""),
                "columns": [{"key": k, "arrow": arrows[k]} for k in keys],
                "rows": rows,
                "gallery": _file_uri(gallery) if gallery.is_file() else None,
            }
        )
    return out


# ------------------------------------------------------------------------------- report
def build_report(
    runs: list[str | Path],
    out: str | Path,
    title: str = "pellucid report",
    figures: bool = True,
) -> Path:
    """Write one self-contained HTML report about ``runs`` to ``out`` (atomically).

    Parameters
    ----------
    runs : list of run directories
    out : output HTML file
    title : page title (escaped)
    figures : compute the filter / path / part figures from the saved weights (needs the
        runs' datasets, which are bundled or local); ``False`` = tables, curves, explanation
        galleries and configs only.
    """
    from jinja2 import Environment, select_autoescape

    from pellucid import __version__

    if not runs:
        raise DataError("pellucid report needs at least one run directory")
    records = [read_run(r) for r in runs]
    sections: dict[str, Any] = {"summary": summary_table(records)}
    curves = training_curves(records)
    if curves:
        sections["curves"] = curves
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if figures:
            sections["filters"] = filter_figures(records, tmp)
            paths = optional_figures(records, tmp, "figures_paths", "path_figures", "decoupling")
            parts = optional_figures(records, tmp, "figures_icnn", "icnn_figures", "icnn")
            if paths:
                sections["paths"] = paths
            if parts:
                sections["parts"] = parts
    explanations = explanation_sections(records)
    if explanations:
        sections["explanations"] = explanations
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    html = env.from_string(TEMPLATE).render(
        title=title, runs=records, sections=sections, version=__version__
    )
    out = Path(out)
    atomic_write_text(out, html)
    return out


TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1150px; padding: 1rem 2rem; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem;
  margin-top: 2rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.best { background: #e3f6e5; font-weight: 600; }
td.best::after { content: " ★"; color: #2a8a3a; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9rem; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; font-size: 12px; }
code { background: #f3f3f3; padding: 0 .2rem; }
.muted { color: #666; }
.scroll { overflow-x: auto; max-width: 100%; }
th { font-size: 12px; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="muted">{{ runs|length }} run(s); pellucid {{ version }}. Every number below was read
from the runs' saved results. ↑ higher is better, ↓ lower is better, ★ best value.</p>
<nav>
<a href="#summary">summary</a>
{% if sections.curves %}<a href="#curves">training curves</a>{% endif %}
{% if sections.filters %}<a href="#filters">filters</a>{% endif %}
{% if sections.paths %}<a href="#paths">paths</a>{% endif %}
{% if sections.parts %}<a href="#parts">filter parts</a>{% endif %}
{% if sections.explanations %}<a href="#explanations">explanations</a>{% endif %}
<a href="#configs">configs</a>
</nav>

<section id="summary">
<h2>Summary</h2>
<div class="scroll"><table>
<thead><tr><th>run</th><th>method</th><th>dataset</th><th>model</th>
{% for c in sections.summary.columns %}<th title="{{ c.description }} ({{ c.direction }})">
{{ c.key }} {{ c.arrow }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r in runs %}{% set i = loop.index0 %}
<tr><td>{{ r.name }}</td><td>{{ r.method }}</td>
<td>{{ r.config.get('data', {}).get('name', '') }}</td>
<td>{{ r.config.get('model', {}).get('name', '') }}</td>
{% for c in sections.summary.columns %}{% set cell = c.cells[i] %}
<td{% if cell.best %} class="best"{% endif %}>{{ cell.text }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table></div>
<p class="muted">Columns: {% for c in sections.summary.columns %}<code>{{ c.key }}</code>
{{ c.description }} ({{ c.direction }}){% if not loop.last %}; {% endif %}{% endfor %}.</p>
</section>

{% if sections.curves %}
<section id="curves">
<h2>Training curves</h2>
<figure><img alt="training curves" src="{{ sections.curves }}"></figure>
</section>
{% endif %}

{% if sections.filters %}
<section id="filters">
<h2>Filters: class specificity</h2>
<p>Mutual information between each filter's pooled activation and each class (MIS); for CSG
runs the gate matrix (filters sorted by assigned class) and one class's top filters.</p>
{% for f in sections.filters %}
<figure><img alt="{{ f.title }}" src="{{ f.uri }}"><figcaption>{{ f.title }}</figcaption></figure>
{% endfor %}
</section>
{% endif %}

{% if sections.paths %}
<section id="paths">
<h2>Calculation paths</h2>
{% for f in sections.paths %}
<figure><img alt="{{ f.title }}" src="{{ f.uri }}"><figcaption>{{ f.title }}</figcaption></figure>
{% endfor %}
</section>
{% endif %}

{% if sections.parts %}
<section id="parts">
<h2>Filter parts</h2>
{% for f in sections.parts %}
<figure><img alt="{{ f.title }}" src="{{ f.uri }}"><figcaption>{{ f.title }}</figcaption></figure>
{% endfor %}
</section>
{% endif %}

{% if sections.explanations %}
<section id="explanations">
<h2>Explanations</h2>
{% for e in sections.explanations %}
<h3>{{ e.run }}: {{ e.n }} images of {{ e.dataset }}, target = {{ e.target }}</h3>
<div class="scroll"><table>
<thead><tr><th>explainer</th>{% for k in e.columns %}<th>{{ k.key }} {{ k.arrow }}</th>{% endfor %}
</tr></thead>
<tbody>
{% for row in e.rows %}<tr><td>{{ row.name }}</td>
{% for cell in row.cells %}<td{% if cell.best %} class="best"{% endif %}>{{ cell.text }}</td>
{% endfor %}</tr>
{% endfor %}
</tbody>
</table></div>
{% if e.gallery %}<figure><img alt="explanation gallery of {{ e.run }}" src="{{ e.gallery }}">
<figcaption>The same images under every explainer (object outline in green).</figcaption>
</figure>{% endif %}
{% endfor %}
</section>
{% endif %}

<section id="configs">
<h2>Configs</h2>
{% for r in runs %}
<h3>{{ r.name }}</h3>
<p>Reproduce: <code>pellucid train --config {{ r.path }}/config.yaml --out {{ r.path }}</code>
{% if r.class_names %}<br>Classes: {{ r.class_names|join(', ') }}{% endif %}</p>
<pre>{{ r.config_text }}</pre>
{% endfor %}
</section>
</body>
</html>
"""
