"""NeuroMask against TorchRay's extremal perturbations and RISE
(``benchmarks/explainers.py --peers``): the mask-based peers a reader of the NeuroMask paper
compares it with, run through TorchRay's own code (:mod:`torchray_peers`), with Grad-CAM,
occlusion and the two controls, on the same benchmark images (:func:`spread_images`) of the
published models, in one process per dataset. Paired bootstrap intervals give NeuroMask minus
each mask-based peer on pointing, both deletions and insertion
(``results/explainers_peers.json``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from _common import model_sha256, published_model_check, write_dataset_results
from explainers_images import spread_images
from explainers_runs import ensure_run
from explainers_targets import CONTROLS, PEERS
from pellucid.explain.evaluate import compare
from pellucid.explain.scoring import paired_difference

MASK_PEERS = ("extremal-perturbation", "rise")
PEER_SCORES = ("pointing_game", "deletion_auc", "deletion_auc_mean_fill", "insertion_auc")
PEER_EXPLAINERS = ("neuromask", *MASK_PEERS, *PEERS, *CONTROLS)
RESULT = "explainers_peers"


def peer_intervals(
    scores: dict[str, dict[str, torch.Tensor]], labels: torch.Tensor
) -> dict[str, dict[str, Any]]:
    """NeuroMask minus each mask-based peer on every score of PEER_SCORES, with the paired
    bootstrap 95 % interval over the images (higher is better for NeuroMask on pointing and
    insertion, lower on the deletions)."""
    return {
        key: {
            peer: paired_difference(scores["neuromask"], scores[peer], labels, key)
            for peer in MASK_PEERS
        }
        for key in PEER_SCORES
    }


def peers_study(datasets: list[str], runs: Path, n: int, sanity_n: int) -> None:
    """Per dataset: :data:`PEER_EXPLAINERS` on ``n`` benchmark images, the sanity check on
    the first ``sanity_n``; ``results/explainers_peers.json`` (datasets run in parallel keep
    each other's entries)."""
    import torchray_peers

    torchray_peers.register()  # this process only: compare() finds them by name

    out: dict[str, Any] = {}
    for ds in datasets:
        run = ensure_run(ds, runs)
        model, batch = spread_images(run, n)
        published_model_check(model, ds)
        with torch.no_grad():
            predicted = model(batch.image).argmax(1)
        res = compare(
            model, batch, list(PEER_EXPLAINERS), sanity=True, sanity_n=sanity_n, progress=False
        )
        rows = res["rows"]
        for name, row in rows.items():
            print(ds, name, row, flush=True)
        intervals = peer_intervals(res["scores"], batch.label)
        out[ds] = {
            "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(sys.argv),
            "run": str(run),
            "model_sha256": model_sha256(model),
            "torchray": torchray_peers.TORCHRAY,
            "n_images": len(batch),
            "sanity_n": min(sanity_n, len(batch)),
            "model_accuracy_on_these_images": round(
                float((predicted == batch.label).float().mean()), 4
            ),
            "rows": rows,
            "intervals": intervals,
        }
        print(ds, json.dumps(intervals), flush=True)
    # merged under a lock, so that datasets run in parallel keep each other's entries
    write_dataset_results(RESULT, out, {"n": n, "target": "true class"})
