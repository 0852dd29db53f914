"""NeuroMask option sweeps of ``benchmarks/explainers.py`` (``--sweep``, ``--validation``):
rows of options scored on test images that the benchmark does not use.
The rows are in ``explainers_rows.py``; the evidence of the first three sweeps, which chose
the default before the validation sweep, is in ``docs/neuromask-sweeps.md``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, model_sha256, result_lock, write_result
from explainers_images import held_out_images, validation_images
from explainers_rows import PEER_CONFIGS, SWEEP, VALIDATION
from explainers_runs import ensure_run
from explainers_targets import TARGET_SCORES
from pellucid.explain import build_explainer
from pellucid.explain.scoring import paired_difference, score_maps, summarise


def sweep(datasets: list[str], runs: Path, n: int, match: str | None = None) -> None:
    """Every SWEEP row (or the NeuroMask rows whose label matches the regular expression
    ``match``, plus the peers; the file's other rows still in SWEEP are kept) on ``n``
    held-out images per dataset."""
    path = RESULTS / "explainers_sweep.json"
    out = {}
    for dataset in datasets:
        run = ensure_run(dataset, runs)
        model, batch = held_out_images(run, n)
        images, labels = batch.image, batch.label
        rows = []
        chosen = [
            r for r in SWEEP if match is None or re.search(match, r[0]) or r[1] != "neuromask"
        ]
        for label, name, opts in chosen:
            start = time.perf_counter()
            maps = build_explainer(name, model, **opts).explain(images, labels)
            seconds = (time.perf_counter() - start) / n
            s = summarise(score_maps(model, images, maps, labels, batch.mask), labels)
            row = {"config": label, "explainer": name, "options": opts, **s}
            rows.append({**row, "seconds_per_image": round(seconds, 4)})
            print(dataset, rows[-1], flush=True)
        out[dataset] = rows
    # read only now, under a lock, so that runs on different datasets in parallel keep each
    # other's rows
    with result_lock("explainers_sweep"):
        previous = json.loads(path.read_text())["rows"] if match and path.is_file() else {}
        known = {r[0] for r in SWEEP}
        for dataset, rows in previous.items():
            new = {r["config"] for r in out.get(dataset, [])}
            kept = [r for r in rows if r["config"] in known - new]
            out[dataset] = kept + out.get(dataset, [])
        write_result("explainers_sweep", {"images": "held_out_images", "n": n, "rows": out})


def measure_row(
    label: str,
    name: str,
    opts: dict[str, Any],
    model: Any,
    batch: Any,
    scores: dict[str, Any],
    peers: tuple[str, ...],
) -> dict[str, Any]:
    """One explainer configuration on ``batch``: its mean scores and seconds per image, and
    for NeuroMask its paired bootstrap difference from each of ``peers`` (labels already in
    ``scores``) on every target score. Its per-image scores are added to ``scores``."""
    images, labels = batch.image, batch.label
    start = time.perf_counter()
    maps = build_explainer(name, model, **opts).explain(images, labels)
    seconds = (time.perf_counter() - start) / len(labels)
    scores[label] = score_maps(model, images, maps, labels, batch.mask)
    row = {"config": label, "explainer": name, "options": opts}
    row |= summarise(scores[label], labels) | {"seconds_per_image": round(seconds, 4)}
    if name == "neuromask":
        row["minus_peers"] = {
            key: {
                peer: paired_difference(scores[label], scores[peer], labels, key) for peer in peers
            }
            for key in TARGET_SCORES
        }
    return row


def validation_sweep(datasets: list[str], runs: Path, n: int, match: str | None = None) -> None:
    """Every VALIDATION row (or those whose label matches ``match``, plus the peers) on the
    ``n`` :func:`validation_images` per dataset, with each NeuroMask row's paired bootstrap
    difference from both peers; ``results/explainers_validation.json`` (the rows of datasets
    not run, and with ``match`` the rows not re-run, are kept, so that datasets and row
    groups can run in parallel)."""
    path = RESULTS / "explainers_validation.json"
    out: dict[str, Any] = {}
    for dataset in datasets:
        run = ensure_run(dataset, runs)
        model, batch = validation_images(run, n)
        images, labels = batch.image, batch.label
        rows, scores = [], {}
        for label, name, opts in VALIDATION:
            if name == "neuromask" and match is not None and not re.search(match, label):
                continue
            row = measure_row(label, name, opts, model, batch, scores, PEER_CONFIGS)
            rows.append(row)
            print(dataset, {k: v for k, v in row.items() if k != "minus_peers"}, flush=True)
        acc = float((model(images).argmax(1) == labels).float().mean())
        out[dataset] = {
            "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(sys.argv),
            "n_images": len(labels),
            "model_accuracy": round(acc, 4),
            "model_sha256": model_sha256(model),
            "rows": rows,
        }
    # read only now, under a lock, so that runs in parallel keep each other's rows
    with result_lock("explainers_validation"):
        previous = json.loads(path.read_text())["datasets"] if path.is_file() else {}
        for dataset, res in out.items():
            res["earlier_models"] = merge_rows(res, previous.get(dataset), match is not None)
        write_result("explainers_validation", {"datasets": {**previous, **out}})


def same_model(res: dict[str, Any], old: dict[str, Any]) -> bool:
    """Was ``old`` measured on the model of ``res``? By ``model_sha256``; an entry from
    before the fingerprint (``None``) counts as the same model when both peers' rows give
    the same scores to the last digit (on another model they do not)."""
    if old.get("model_sha256") is not None:
        return old["model_sha256"] == res["model_sha256"]

    def peers(entry: dict[str, Any]) -> list[dict[str, Any]]:
        rows = [r for r in entry["rows"] if r["config"] in PEER_CONFIGS]
        drop = ("seconds_per_image",)
        return [{k: v for k, v in r.items() if k not in drop} for r in rows]

    return len(peers(old)) == len(PEER_CONFIGS) and peers(old) == peers(res)


def merge_rows(res: dict[str, Any], old: dict[str, Any] | None, partial: bool) -> list[Any]:
    """Merge a validation run ``res`` of one dataset with the entry ``old`` it replaces and
    return the entry's ``earlier_models``.

    ``old`` and each of its ``earlier_models`` blocks is one trained model's rows with the
    peers they were compared with. The block on ``res``'s model (:func:`same_model`), if
    any, is merged: with ``partial`` (a ``--sweep-match`` run) its rows not re-run are kept
    in ``res``, in VALIDATION's order. The others (the recipe trains other weights on
    another CPU) stay apart as ``earlier_models``, most recent first: rows of different
    models are never mixed."""
    if not old:
        return []
    blocks = [{k: v for k, v in old.items() if k != "earlier_models"}]
    blocks += list(old.get("earlier_models", []))
    match = next((b for b in blocks if same_model(res, b)), None)
    if match is not None and partial:
        order = [r[0] for r in VALIDATION]
        new = {r["config"] for r in res["rows"]}
        rows = [r for r in match["rows"] if r["config"] not in new] + res["rows"]
        res["rows"] = sorted(
            (r for r in rows if r["config"] in order), key=lambda r: order.index(r["config"])
        )
        res["command"] = match["command"] + "; " + res["command"]
    for b in blocks:
        b.setdefault("model_sha256", None)
    return [b for b in blocks if b is not match]
