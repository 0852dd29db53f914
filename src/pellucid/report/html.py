"""``pellucid report``: one self-contained HTML file built only from saved run results.

Everything is inlined: figures are PNG ``data:`` URIs, the style sheet is in the page, there
are no scripts, fonts or external resources, so the file opens offline and sends no request.
All user-supplied text (run names, paths, class names, configs) goes through Jinja2's
autoescaping.

Sections (each only when some run has what it needs):
summary (every run's metrics with the direction of each and the best value marked),
training curves, filters (MI matrices; CSG gate matrix and class filters), calculation paths
(decoupling), filter parts (ICNN), explanations (``pellucid compare-explainers`` results saved
in ``RUN/explanations``), localisation (``pellucid localise [--protocol P] --save``:
``RUN/localisation[_P].json``),
adversarial detection (``pellucid detect-adversarial --save``: ``RUN/adversarial.json``),
sanity checks (``pellucid sanity-check``: ``RUN/sanity/``), configs (the resolved config and
the command that reproduces a run).

Rendering is here (:func:`build_report` and its Jinja2 :data:`TEMPLATE`); the data of the
sections is collected by :mod:`pellucid.report.html_runs` and the figures are made by
:mod:`pellucid.report.html_figures` (their public names are re-exported here).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pellucid.errors import DataError
from pellucid.io import atomic_write_text
from pellucid.report.html_figures import filter_figures, optional_figures, training_curves
from pellucid.report.html_runs import (  # noqa: F401  (re-exported)
    ADVERSARIAL_FILE,
    EXPLANATIONS_DIR,
    LOCALISATION_FILE,
    LOCALISATION_FILES,
    RunRecord,
    adversarial_sections,
    explanation_sections,
    localisation_table,
    png_uri,
    read_run,
    sanity_sections,
    summary_table,
    unique_names,
)


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
    for record, name in zip(records, unique_names([r.path for r in records]), strict=True):
        record.name = name  # runs sharing a directory name told apart by their paths
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
    localisation = localisation_table(records)
    if localisation:
        sections["localisation"] = localisation
    adversarial = adversarial_sections(records)
    if adversarial:
        sections["adversarial"] = adversarial
    sanity = sanity_sections(records)
    if sanity:
        sections["sanity"] = sanity
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
{% if sections.localisation %}<a href="#localisation">localisation</a>{% endif %}
{% if sections.adversarial %}<a href="#adversarial">adversarial detection</a>{% endif %}
{% if sections.sanity %}<a href="#sanity">sanity checks</a>{% endif %}
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

{% if sections.localisation %}
<section id="localisation">
<h2>Localisation</h2>
<p class="muted">CSG paper, Sec. 4.3. <b>cam</b>: the explainer's map of each test image, its top
q of pixels compared with the object mask; the share is of images. <b>filters</b>: each filter
of the image's class, its activation map above the filter's own top-q quantile; the share is of
(image, filter) pairs, and of images with at least one such filter. <b>gradient</b>: the blurred
input gradient of the class's most active filters, its top q of pixels; the share is of images.
Pointing game: averaged over classes. ★ marks the best of the rows with the same setting.</p>
<div class="scroll"><table>
<thead><tr><th>run</th><th>setting</th>
{% for c in sections.localisation.columns %}<th>{{ c }} ↑</th>{% endfor %}</tr></thead>
<tbody>
{% for row in sections.localisation.rows %}<tr><td>{{ row.run }}</td><td>{{ row.setting }}</td>
{% for cell in row.cells %}<td{% if cell.best %} class="best"{% endif %}>{{ cell.text }}</td>
{% endfor %}</tr>
{% endfor %}
</tbody>
</table></div>
</section>
{% endif %}

{% if sections.adversarial %}
<section id="adversarial">
<h2>Adversarial detection</h2>
<p class="muted">ROC-AUC of telling clean test images from their successful attacks apart
(1 = perfect, 0.5 = chance, below 0.5 = the attacks look cleaner than clean images):
logistic regression and random forest cross-validated on the features; prototype,
Mahalanobis and LID fitted on clean training images only (distance to the predicted class's
mean features, class-conditional Gaussian, local intrinsic dimensionality).
<em>-two-sided</em>: the same score, far from the clean training median in either direction.
<em>adaptive-DETECTOR</em> rows: an attacker who knows that detector;
<em>logistic-attacked</em>: the logistic regression fitted before the attack, scored on it.</p>
{% for a in sections.adversarial %}
<h3>{{ a.run }}: {{ a.n }} test images, clean accuracy {{ a.accuracy }}</h3>
<div class="scroll"><table>
<thead><tr><th>attack</th><th>success rate</th><th>pairs</th><th>feature</th>
{% for d in a.detectors %}<th>{{ d }} ↑</th>{% endfor %}</tr></thead>
<tbody>
{% for row in a.rows %}<tr><td>{{ row.attack }}</td><td>{{ row.success }}</td>
<td>{{ row.pairs }}</td><td>{{ row.feature }}</td>
{% for cell in row.cells %}<td{% if cell.best %} class="best"{% endif %}>{{ cell.text }}</td>
{% endfor %}</tr>
{% endfor %}
</tbody>
</table></div>
{% endfor %}
</section>
{% endif %}

{% if sections.sanity %}
<section id="sanity">
<h2>Sanity checks</h2>
<p class="muted">Similarity between each explainer's maps of the trained model and of a
damaged one (Adebayo et al. 2018): Spearman rank correlation, and where saved SSIM and HOG
correlation of the maps' absolute values. Damaged: all weights re-initialised, the blocks
re-initialised from the output towards the input (cascade), a model trained on permuted
labels. Lower is better: a faithful explanation changes when what the model learnt is gone;
the random and centre controls ignore the model. A dash is a similarity undefined on every
image: the maps of one of the two models are constant there (all zero, for instance).</p>
{% for s in sections.sanity %}
<h3>{{ s.run }}: {{ s.setting }}</h3>
{% if s.random_label_run %}<p>Random-label model: <code>{{ s.random_label_run }}</code>
(test accuracy {{ s.random_label_accuracy or "?" }})</p>{% endif %}
{% for t in s.tables %}<h4>{{ t.label }}</h4>
<div class="scroll"><table>
<thead><tr><th>explainer</th>{% for c in t.columns %}<th>{{ c }} ↓</th>{% endfor %}</tr></thead>
<tbody>
{% for row in t.rows %}<tr><td>{{ row.name }}</td>
{% for cell in row.cells %}<td{% if cell.best %} class="best"{% endif %}>{{ cell.text }}</td>
{% endfor %}</tr>
{% endfor %}
</tbody>
</table></div>
{% endfor %}
{% for f in s.figures %}<figure><img alt="sanity check of {{ s.run }}" src="{{ f.uri }}">
<figcaption>{{ f.caption }}</figcaption></figure>{% endfor %}
{% endfor %}
</section>
{% endif %}

<section id="configs">
<h2>Configs</h2>
{% for r in runs %}
<h3>{{ r.name }}</h3>
<p>Reproduce (retrains into a new directory, <code>{{ r.again }}</code>):
<code>{{ r.reproduce }}</code>
{% if r.class_names %}<br>Classes: {{ r.class_names|join(', ') }}{% endif %}</p>
<pre>{{ r.config_text }}</pre>
{% endfor %}
</section>
</body>
</html>
"""
