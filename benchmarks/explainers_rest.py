"""The issue's targets on test images no earlier part of the benchmark used
(``benchmarks/explainers.py --rest``): NeuroMask's default and the two peers on
:func:`explainers_images.rest_indices`, with the targets on the means, the paired intervals,
and the pointing game apart for correctly classified and misclassified images.

The default was chosen on the sweep's and the validation images, and judged on the 300
benchmark images; this is a replication on images nobody looked at, with nothing chosen."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from _common import model_sha256, published_model_check, write_dataset_results
from explainers_images import rest_indices
from explainers_runs import ensure_run
from explainers_studies import SEED_EXPLAINERS
from explainers_targets import peer_targets, resolved_targets, target_intervals
from pellucid.explain.evaluate import compare, load_images
from pellucid.explain.scoring import summarise_by_prediction


def rest_study(datasets: list[str], runs: Path, n: int | None) -> None:
    """Per dataset: NeuroMask, Grad-CAM and occlusion on ``n`` of the unused test images
    (all of them when ``n`` is None); ``results/explainers_rest.json``."""
    from pellucid.data.base import collate

    out: dict[str, Any] = {}
    for ds in datasets:
        run = ensure_run(ds, runs)
        model, _, split = load_images(run, 1)
        published_model_check(model, ds)
        idx = rest_indices(len(split), n)
        batch = collate([split[j] for j in idx])
        with torch.no_grad():
            predicted = model(batch.image).argmax(1)
        res = compare(model, batch, list(SEED_EXPLAINERS), progress=False)
        rows, labels = res["rows"], batch.label
        intervals = target_intervals(res["scores"], labels)
        pointing = {
            name: summarise_by_prediction({"pointing_game": s["pointing_game"]}, labels, predicted)
            for name, s in res["scores"].items()
        }
        out[ds] = {
            "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(sys.argv),
            "run": str(run),
            "model_sha256": model_sha256(model),
            "n_images": len(idx),
            "n_unused": len(rest_indices(len(split))),
            "n_misclassified": int((predicted != labels).sum()),
            "model_accuracy_on_these_images": round(float((predicted == labels).float().mean()), 4),
            "rows": rows,
            "pointing_by_prediction": pointing,
            "targets": peer_targets(rows),
            "target_intervals": intervals,
            "targets_resolved": resolved_targets(intervals),
        }
        for name, row in rows.items():
            print(ds, name, row, pointing[name], flush=True)
        print(ds, out[ds]["targets"], out[ds]["targets_resolved"], flush=True)
    # merged under a lock, so that datasets run in parallel keep each other's entries
    write_dataset_results("explainers_rest", out, {"n": n, "target": "true class"})
