"""Where the pointing game is decided (``benchmarks/explainers.py --pointing``): every
explainer's hits on the benchmark's images apart for the images the model classifies
correctly and those it misclassifies (the map explains the true class in both, as the
TorchRay protocol does), the images each explainer misses, and the images on which NeuroMask
and a peer disagree (the only images a paired difference of the pointing game is made of).

Written for the issue's pointing target: on cluttered-mnist NeuroMask and occlusion both
score 0.993 on the 300 benchmark images, and this study shows which images those are.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from _common import (
    model_sha256,
    published_model_check,
    write_dataset_results,
)
from explainers_images import benchmark_indices
from explainers_runs import ensure_run
from explainers_targets import PEERS
from pellucid.explain import build_explainer, explainer_names
from pellucid.explain.evaluate import load_images
from pellucid.explain.scoring import summarise, summarise_by_prediction
from pellucid.metrics import pointing_game


def disagreements(
    hits_a: torch.Tensor, hits_b: torch.Tensor, correct: torch.Tensor
) -> dict[str, dict[str, list[int]]]:
    """The images on which two explainers' pointing hits differ (positions in the batch),
    split by whether the model classifies the image correctly: ``{"only_a": {"correct": [...],
    "misclassified": [...]}, "only_b": {...}}``. Every other image scores the same for both,
    so these are what a paired difference of the pointing game is made of."""
    a, b, ok = hits_a.bool().cpu(), hits_b.bool().cpu(), correct.bool().cpu()
    if not (a.shape == b.shape == ok.shape) or a.ndim != 1:
        raise ValueError(
            "disagreements: hits and correct must be (N,) each, got "
            f"{tuple(a.shape)}, {tuple(b.shape)}, {tuple(ok.shape)}"
        )

    def where(x: torch.Tensor) -> dict[str, list[int]]:
        return {
            "correct": (x & ok).nonzero().flatten().tolist(),
            "misclassified": (x & ~ok).nonzero().flatten().tolist(),
        }

    return {"only_a": where(a & ~b), "only_b": where(b & ~a)}


def pointing_study(datasets: list[str], runs: Path, n: int, names: list[str] | None) -> None:
    """Per dataset: each explainer's pointing game on all benchmark images, on the correctly
    classified and on the misclassified ones, its misses (benchmark position, test index,
    true and predicted class), and NeuroMask's disagreements with each peer;
    ``results/explainers_pointing.json``."""
    from pellucid.data.base import collate

    names = names or [e for e in explainer_names() if e != "neuromask-reference"]
    out: dict[str, Any] = {}
    for ds in datasets:
        run = ensure_run(ds, runs)
        model, _, split = load_images(run, 1)
        idx = benchmark_indices(len(split), n)  # the images of spread_images, same order
        batch = collate([split[j] for j in idx])
        published_model_check(model, ds)
        images, labels, masks = batch.image, batch.label, batch.mask
        with torch.no_grad():
            predicted = model(images).argmax(1)
        correct = predicted == labels
        rows: dict[str, Any] = {}
        hits: dict[str, torch.Tensor] = {}
        for name in names:
            start = time.perf_counter()
            maps = build_explainer(name, model).explain(images, labels)
            seconds = (time.perf_counter() - start) / len(labels)
            h = pointing_game(maps, masks)["hits"].cpu()
            hits[name] = h
            scores = {"pointing_game": h.float()}
            misses = (~h).nonzero().flatten().tolist()
            rows[name] = {
                "all": {"n": len(labels), **summarise(scores, labels)},
                **summarise_by_prediction(scores, labels, predicted),
                "misses": {  # one entry per missed image, in the same order
                    "position": misses,
                    "test_index": [idx[i] for i in misses],
                    "label": [int(labels[i]) for i in misses],
                    "predicted": [int(predicted[i]) for i in misses],
                },
                "seconds_per_image": round(seconds, 4),
            }
            print(ds, name, rows[name]["correct"], rows[name]["misclassified"], flush=True)
        versus = {
            peer: disagreements(hits["neuromask"], hits[peer], correct)
            for peer in PEERS
            if "neuromask" in hits and peer in hits
        }
        out[ds] = {
            "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(sys.argv),
            "run": str(run),
            "model_sha256": model_sha256(model),
            "n_images": len(labels),
            "n_misclassified": int((~correct).sum()),
            "rows": rows,
            "neuromask_vs_peer": versus,
        }
    # the other datasets' entries are kept (each has its own date)
    write_dataset_results("explainers_pointing", out, {"n": n, "target": "true class"})
