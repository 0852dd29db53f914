"""Data of the HTML report: the saved results of each run, as template-ready tables.

:func:`read_run` reads one run directory into a :class:`RunRecord`; :func:`summary_table`
and :func:`explanation_sections` turn the records into the rows and cells the template of
:mod:`pellucid.report.html` renders (numbers formatted, best values marked); saved PNGs are
inlined as ``data:`` URIs (:func:`png_uri`).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pellucid.errors import DataError
from pellucid.io import read_json

EXPLANATIONS_DIR = "explanations"
ADVERSARIAL_FILE = "adversarial.json"  # ``pellucid detect-adversarial RUN --save``
LOCALISATION_FILE = "localisation.json"  # ``pellucid localise RUN --save``
LOCALISATION_PROTOCOLS = ("cam", "filters", "gradient")  # ``pellucid localise --protocol``
LOCALISATION_FILES = {p: LOCALISATION_FILE if p == "cam" else f"localisation_{p}.json"
                      for p in LOCALISATION_PROTOCOLS}  # fmt: skip
SANITY_FILE = "sanity/sanity.json"  # ``pellucid sanity-check RUN`` (default --out)


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
    adversarial: dict[str, Any] | None = None
    localisation: list[dict[str, Any]] = field(default_factory=list)  # one per protocol
    sanity: dict[str, Any] | None = None

    @property
    def method(self) -> str:
        """The method's name in the run's config (``?`` when it names none)."""
        return str((self.config.get("method") or {}).get("name", "?"))

    @property
    def class_names(self) -> list[str]:
        """The dataset's class names in the config's ``info`` (empty when not recorded)."""
        return [str(c) for c in (self.config.get("info") or {}).get("class_names") or []]


def read_run(path: str | Path) -> RunRecord:
    """Read a finished run directory (config.yaml and metrics.json are required)."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise DataError(f"{str(path)!r} is not a run directory (no config.yaml)")
    if not (path / "metrics.json").is_file():
        raise DataError(f"run {str(path)!r} has no metrics.json (unfinished? `pellucid evaluate`)")
    text = (path / "config.yaml").read_text()
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise DataError(f"run {str(path)!r}: config.yaml is not valid YAML ({e})") from None
    if not isinstance(config, dict):
        raise DataError(
            f"run {str(path)!r}: config.yaml holds a {type(config).__name__}, not a mapping"
        )
    metrics = read_json(path / "metrics.json")
    if not isinstance(metrics, dict):
        raise DataError(
            f"run {str(path)!r}: metrics.json holds a {type(metrics).__name__}, not an object"
        )
    history = read_json(path / "history.json") if (path / "history.json").is_file() else []
    exp_file = path / EXPLANATIONS_DIR / "compare.json"
    explanations = read_json(exp_file) if exp_file.is_file() else None
    saved = {f: read_json(path / f) if (path / f).is_file() else None
             for f in (ADVERSARIAL_FILE, *LOCALISATION_FILES.values(), SANITY_FILE)}  # fmt: skip
    localisation = [{"protocol": p, **saved[f]} for p, f in LOCALISATION_FILES.items()
                    if saved[f]]  # fmt: skip
    return RunRecord(path.name, path, config, text, metrics, history,
                     explanations, saved[ADVERSARIAL_FILE], localisation,
                     saved[SANITY_FILE])  # fmt: skip


def png_uri(data: bytes) -> str:
    """PNG bytes as a ``data:`` URI, so that the report inlines its figures."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


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


# ------------------------------------------------------------------------- explanations
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


# ----------------------------------------------------------------- adversarial detection
def adversarial_sections(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """Per run with saved ``detect-adversarial`` results: one row per attack and feature
    kind, ROC-AUC of each detector (best of the run's rows marked per column).

    The columns are the detectors the run's results score: the supervised and unsupervised
    ones in :mod:`pellucid.apps.detectors` order, then what ``--two-sided`` and ``--adaptive``
    add (``DETECTOR-two-sided``, ``logistic-attacked``, ``forest-attacked``), then any other
    saved name; a detector no row scores gets no column."""
    from pellucid.apps.adversarial import FOREST_ATTACKED, LOGISTIC_ATTACKED, TWO_SIDED
    from pellucid.apps.detectors import DETECTORS, UNSUPERVISED

    # the saved file's keys are sorted: the columns follow the detectors' order instead
    known = (*DETECTORS, *UNSUPERVISED, *(f"{d}{TWO_SIDED}" for d in UNSUPERVISED),
             LOGISTIC_ATTACKED, FOREST_ATTACKED)  # fmt: skip
    out = []
    for r in runs:
        a = r.adversarial
        if not a:
            continue
        rows, seen = [], {}
        for report in a.get("attacks", []):
            for feature, scores in report.get("auc", {}).items():
                seen |= dict.fromkeys(d for d, v in scores.items() if _num(v) is not None)
                rows.append(
                    {
                        "attack": report.get("attack", "?"),
                        "success": _fmt(_num(report.get("success_rate"))),
                        "pairs": report.get("pairs", ""),
                        "feature": feature,
                        "scores": scores,
                    }
                )
        detectors = [d for d in known if d in seen] + [d for d in seen if d not in known]
        detectors = detectors or [*DETECTORS, *UNSUPERVISED]  # nothing scored: say so
        for row in rows:
            scores = row.pop("scores")
            row["values"] = [_num(scores.get(d)) for d in detectors]
        best = [max((v for row in rows if (v := row["values"][i]) is not None), default=None)
                for i in range(len(detectors))]  # fmt: skip
        for row in rows:
            row["cells"] = [
                {"text": _fmt(v), "best": v is not None and len(rows) > 1 and v == best[i]}
                for i, v in enumerate(row.pop("values"))
            ]
        out.append(
            {
                "run": r.name,
                "n": a.get("n", ""),
                "accuracy": _fmt(_num(a.get("clean_accuracy"))),
                "detectors": detectors,
                "rows": rows,
            }
        )
    return out


# -------------------------------------------------------------------------- localisation
LOCALISATION_SCORES = (("mean_iou", "mean IoU"), ("share_above", "IoU above threshold"),
                       ("share_images", "images with a filter above"),
                       ("pointing_game", "pointing game"))  # fmt: skip


def _localisation_setting(s: dict[str, Any]) -> str:
    q, t = _fmt(_num(s.get("q"))), _fmt(_num(s.get("threshold")))
    tail = f"target {s.get('target', '?')}, {s.get('n', '?')} images"
    protocol = s.get("protocol", "cam")
    if protocol == "filters":
        k = s.get("options", {}).get("per_class")
        by = f"{s.get('assign')}" + (f", {k} per class" if k else "")
        return (
            f"per-filter maps at {s.get('layer')}, filters by {by}, above each "
            f"filter's top-{q} quantile; (image, filter) pairs with IoU > {t}; {tail}"
        )
    if protocol == "gradient":
        m = s.get("options", {}).get("m", "?")
        return (
            f"gradient of the class's {m} most active filters at {s.get('layer')}, top {q}, "
            f"IoU >= {t}; {tail}"
        )
    return (f"{s.get('explainer', '?')} at {s.get('layer') or '-'}, top {q}, IoU > {t}, "
            f"{tail}")  # fmt: skip


def localisation_table(runs: list[RunRecord]) -> dict[str, Any] | None:
    """One row per run and saved ``localise`` protocol (all scores: higher is better; the
    best marked among rows of the same setting -- protocol, explainer, assignment, q and
    threshold -- i.e. comparable rows)."""
    saved = [(r, s) for r in runs for s in r.localisation]
    if not saved:
        return None
    keys = [k for k, _ in LOCALISATION_SCORES]

    def setting(s: dict[str, Any]) -> tuple:
        keys = ("protocol", "explainer", "assign", "q", "threshold")
        return (*(s.get(k) for k in keys), s.get("options", {}).get("per_class"))

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for _, s in saved:
        groups.setdefault(setting(s), []).append(s)
    rows = []
    for r, s in saved:
        peers = groups[setting(s)]
        cells = []
        for k in keys:
            v = _num(s.get(k))
            best = max((x for p in peers if (x := _num(p.get(k))) is not None), default=None)
            cells.append({"text": _fmt(v), "best": v is not None and len(peers) > 1 and v == best})
        rows.append({"run": r.name, "setting": _localisation_setting(s), "cells": cells})
    return {"columns": [label for _, label in LOCALISATION_SCORES], "rows": rows}


# ------------------------------------------------------------------------- sanity checks
def _sanity_tables(s: dict[str, Any]) -> list[dict[str, Any]]:
    """One table per similarity measure present in a saved result (Spearman first): rows of
    explainers, the lowest value of each column marked."""
    from pellucid.explain.sanity import SIMILARITIES, sanity_columns

    tables = []
    for similarity, label in SIMILARITIES.items():
        if similarity == "mean_abs":  # in sanity.json / sanity.md; the page keeps to three
            continue
        cols = sanity_columns(s, similarity)
        values = {name: [_num(get(row)) for _, get in cols] for name, row in s["rows"].items()}
        if all(v is None for vals in values.values() for v in vals):
            continue  # a result written before this measure existed
        best = [min((v[i] for v in values.values() if v[i] is not None), default=None)
                for i in range(len(cols))]  # fmt: skip
        rows = [
            {
                "name": name,
                "cells": [
                    {"text": _fmt(v), "best": v is not None and v == best[i]}
                    for i, v in enumerate(vals)
                ],
            }  # fmt: skip
            for name, vals in values.items()
        ]
        tables.append({"label": label, "columns": [c for c, _ in cols], "rows": rows})
    return tables


def sanity_sections(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """Per run with saved ``sanity-check`` results: one table per similarity measure (rows of
    explainers, the mean of each check; lower is better, the lowest of each column marked),
    and the cascade and maps figures saved next to them (the cascade only when the saved
    result has the cascading check)."""
    from pellucid.explain.sanity import CASCADE_FIGURE, MAPS_FIGURE

    out = []
    for r in runs:
        s = r.sanity
        if not s or not s.get("rows"):
            continue
        try:
            tables = _sanity_tables(s)
        except (KeyError, IndexError, TypeError):
            raise DataError(
                f"{r.path / SANITY_FILE} is not a pellucid sanity-check result"
            ) from None
        folder = (r.path / SANITY_FILE).parent
        figures = [
            (folder / f, caption)
            for f, caption, shown in (
                (CASCADE_FIGURE, "Mean rank correlation as the blocks are re-initialised "
                 "from the output towards the input (squares: the random-label model).",
                 "cascading" in (s.get("checks") or [])),  # else a stale file of another result
                (MAPS_FIGURE, "One image's map under the trained model and each damaged "
                 "one (each map scaled by its largest magnitude).", True),
            )
            if shown
        ]  # fmt: skip
        accuracy = _num(s.get("random_label_test_accuracy"))
        out.append(
            {
                "run": r.name,
                "setting": f"{s.get('n', '?')} {s.get('split', '?')} images of "
                f"{s.get('dataset', '?')}, target = {s.get('target', '?')}, seed "
                f"{s.get('seed', '?')}",
                "random_label_run": s.get("random_label_run"),
                "random_label_accuracy": _fmt(accuracy) if accuracy is not None else None,
                "tables": tables,
                "figures": [{"uri": _file_uri(f), "caption": c} for f, c in figures if f.is_file()],
            }
        )
    return out
