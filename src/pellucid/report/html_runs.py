"""Data of the HTML report: the saved results of each run, as template-ready tables.

:func:`read_run` reads one run directory into a :class:`RunRecord`; :func:`summary_table`
and :func:`explanation_sections` turn the records into the rows and cells the template of
:mod:`pellucid.report.html` renders (numbers formatted, best values marked); saved PNGs are
inlined as ``data:`` URIs (:func:`png_uri`).
"""

from __future__ import annotations

import base64
import json
import math
import shlex
from collections.abc import Callable
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

    @property
    def again(self) -> str:
        """A new directory to retrain the run into: ``RUN-again`` (``RUN-again2``, ... when
        that exists; ``pellucid train`` refuses a directory holding a finished run)."""
        base = self.path if self.path.name else self.path.resolve()
        for i in range(1, 1000):
            candidate = Path(f"{base}-again{i if i > 1 else ''}")
            if not candidate.exists():
                break
        return str(candidate)

    @property
    def reproduce(self) -> str:
        """The shell command that retrains the run from its config into :attr:`again`
        (every path shell-quoted)."""
        config = shlex.quote(str(self.path / "config.yaml"))
        return f"pellucid train --config {config} --out {shlex.quote(self.again)}"


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
    history = _read_saved(path / "history.json", _check_history)
    explanations = _read_saved(path / EXPLANATIONS_DIR / "compare.json", _check_explanations)
    adversarial = _read_saved(path / ADVERSARIAL_FILE, _check_adversarial)
    saved = {f: _read_saved(path / f, _check_localisation) for f in LOCALISATION_FILES.values()}
    sanity = _read_saved(path / SANITY_FILE, _check_object)
    localisation = [{"protocol": p, **saved[f]} for p, f in LOCALISATION_FILES.items()
                    if saved[f]]  # fmt: skip
    return RunRecord(path.name, path, config, text, metrics, history or [],
                     explanations, adversarial, localisation, sanity)  # fmt: skip


def unique_names(paths: list[Path]) -> list[str]:
    """A label per run directory: its name, or where names collide the shortest path suffix
    that tells the colliding runs apart (``runs/std`` and ``other/std``; the whole path
    when no suffix does)."""
    parts = [Path(p).parts or (str(p),) for p in paths]
    names = []
    for i, own in enumerate(parts):
        others = [q for j, q in enumerate(parts) if j != i and q[-1:] == own[-1:]]
        label = str(Path(*own))
        for k in range(1, len(own) + 1):
            if all(q[-k:] != own[-k:] for q in others):
                label = str(Path(*own[-k:]))
                break
        names.append(label)
    return names


def _read_saved(file: Path, check: Callable[[Any], str | None]) -> Any:
    """A saved result file's JSON, or None when there is none; a :class:`DataError` naming
    the file when ``check`` finds something wrong with it (``check`` returns the problem)."""
    if not file.is_file():
        return None
    data = read_json(file)
    problem = check(data)
    if problem:
        raise DataError(f"{file} is not a pellucid result this report can read: {problem}")
    return data


def _kind(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _check_object(data: Any) -> str | None:
    return None if isinstance(data, dict) else f"holds a {_kind(data)}, not an object"


def _check_history(data: Any) -> str | None:
    if not isinstance(data, list):
        return f"holds a {_kind(data)}, not a list of epochs"
    if not all(isinstance(h, dict) and "epoch" in h for h in data):
        return "every entry must be an object with an 'epoch'"
    return None


def _check_explanations(data: Any) -> str | None:
    if not isinstance(data, dict):
        return _check_object(data)
    rows = data.get("rows")
    if not isinstance(rows, dict):
        return f"'rows' is a {_kind(rows)}, not an object of explainers"
    for name, row in rows.items():
        if not isinstance(row, dict):
            return f"row {name!r} is a {_kind(row)}, not an object of scores"
    return None


def _check_adversarial(data: Any) -> str | None:
    if not isinstance(data, dict):
        return _check_object(data)
    attacks = data.get("attacks", [])
    if not isinstance(attacks, list):
        return f"'attacks' is a {_kind(attacks)}, not a list"
    for i, attack in enumerate(attacks):
        if not isinstance(attack, dict):
            return f"attack {i} is a {_kind(attack)}, not an object"
        auc = attack.get("auc", {})
        if not isinstance(auc, dict) or not all(isinstance(v, dict) for v in auc.values()):
            return f"attack {i}: 'auc' must map each feature kind to an object of scores"
    return None


def _check_localisation(data: Any) -> str | None:
    if not isinstance(data, dict):
        return _check_object(data)
    options = data.get("options", {})
    if not isinstance(options, dict):
        return f"'options' is a {_kind(options)}, not an object"
    return None


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
            vals = [x for v in e["rows"].values() if (x := _num(v.get(k))) is not None]
            if len(vals) > 1:  # one value is no comparison
                best[k] = max(vals) if arrows[k] == "↑" else min(vals)
        rows = [
            {
                "name": name,
                "cells": [
                    {"text": _fmt(v), "best": v is not None and v == best.get(k)}
                    for k in keys
                    for v in [_num(row.get(k))]
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
    best marked among rows of the same setting -- dataset (name and options), protocol,
    explainer, assignment, q, threshold, target, n and m -- i.e. comparable rows, when at
    least two of them have the score)."""
    saved = [(r, s) for r in runs for s in r.localisation]
    if not saved:
        return None
    keys = [k for k, _ in LOCALISATION_SCORES]

    def setting(r: RunRecord, s: dict[str, Any]) -> str:
        keys = ("protocol", "explainer", "assign", "q", "threshold", "target", "n")
        options = s.get("options", {})
        data = r.config.get("data") or {}
        dataset = s.get("dataset", (data.get("name"), data.get("options")))
        key = (dataset, *(s.get(k) for k in keys), options.get("per_class"), options.get("m"))
        return json.dumps(key, sort_keys=True, default=str)

    groups: dict[str, list[dict[str, Any]]] = {}
    for r, s in saved:
        groups.setdefault(setting(r, s), []).append(s)
    rows = []
    for r, s in saved:
        peers = groups[setting(r, s)]
        cells = []
        for k in keys:
            v = _num(s.get(k))
            present = [x for p in peers if (x := _num(p.get(k))) is not None]
            best = max(present) if len(present) > 1 else None  # one value is no comparison
            cells.append({"text": _fmt(v), "best": v is not None and v == best})
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
        present = [[v[i] for v in values.values() if v[i] is not None] for i in range(len(cols))]
        best = [min(p) if len(p) > 1 else None for p in present]  # one value: no comparison
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
