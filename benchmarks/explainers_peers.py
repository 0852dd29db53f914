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

from _common import (
    RESULTS,
    machine,
    model_sha256,
    published_model_check,
    result_lock,
    write_dataset_results,
    write_result,
)
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


def peers_sanity(datasets: list[str], runs: Path, n: int, sanity_n: int) -> None:
    """The model-randomisation sanity check of every explainer of :data:`PEER_EXPLAINERS`
    on the first ``sanity_n`` of the ``n`` images :func:`peers_study` scored (a superset of
    the images its own sanity column used), added to that dataset's entry of
    ``results/explainers_peers.json`` as ``"sanity"``: per explainer the mean and per-image
    rank correlations, with this run's command and date. Refused unless the saved entry is
    of the same model and ``n`` images. The mask peers need two maps an image, at 30-45 s
    each on a CPU core: this is the slow part of their sanity check, run on its own."""
    import torchray_peers

    torchray_peers.register()
    path = RESULTS / f"{RESULT}.json"
    for ds in datasets:
        saved = json.loads(path.read_text())["results"].get(ds) if path.is_file() else None
        run = ensure_run(ds, runs)
        model, batch = spread_images(run, n)
        published_model_check(model, ds)
        sha = model_sha256(model)
        if saved is None or saved["n_images"] != len(batch) or saved["model_sha256"] != sha:
            raise SystemExit(
                f"{ds}: {path.name} has no --peers entry of model {sha} on {len(batch)} images "
                "to add the sanity check to; run explainers.py --peers with this --n first"
            )
        k = min(sanity_n, len(batch))
        images, labels = batch.image[:k], batch.label[:k]
        rows: dict[str, Any] = {}
        for name in PEER_EXPLAINERS:
            rows[name] = _sanity_row(name, model, images, labels)
            print(ds, name, rows[name]["mean"], f"{rows[name]['seconds']} s", flush=True)
        entry = {"n": k, "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv)}
        entry["machine"] = machine()
        with result_lock(RESULT):  # read again: another dataset's process may have written
            result = json.loads(path.read_text())
            result["results"][ds]["sanity"] = {**entry, "rows": rows}
            write_result(RESULT, result)  # its own machine and command kept (payload wins)


def _sanity_row(
    name: str, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, Any]:
    """Explainer ``name``'s model-randomisation check on ``images`` (its default options, as
    :func:`peers_study` ran it): mean and per-image rank correlations (None where a map is
    constant), and the seconds both explanations took."""
    from pellucid.explain import build_explainer
    from pellucid.metrics import model_randomisation

    start = time.perf_counter()
    res = model_randomisation(lambda m: build_explainer(name, m).explain(images, labels), model)
    rho = [None if v != v else round(float(v), 4) for v in res["rank_correlation"].tolist()]
    return {
        "mean": round(res["mean"], 4),
        "rank_correlation": rho,
        "seconds": round(time.perf_counter() - start, 1),
    }
