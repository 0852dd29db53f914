"""Every explainer on the same test images of a trained model, side by side.

    python benchmarks/explainers.py                       # cluttered-mnist + shapes
    python benchmarks/explainers.py --datasets shapes --n 64
    python benchmarks/explainers.py --sweep               # option sweep, 32 held-out images
    python benchmarks/explainers.py --road --n 100        # ROAD deletion of every explainer
    python benchmarks/explainers.py --seeds 0 1 2 --n 100 # NeuroMask and peers, 3 seeds
    python benchmarks/explainers.py --validation          # option rows, 128 other images
    python benchmarks/explainers.py --variants            # validation options, these images
    python benchmarks/explainers.py --result NAME         # results/NAME.json (another model)
    python benchmarks/explainers.py --pointing            # pointing hits, correct vs misclassified
    python benchmarks/explainers.py --rest --n 540        # the targets on test images never used
    python benchmarks/explainers.py --peers --n 60        # TorchRay's extremal perturbations, RISE
    python benchmarks/explainers.py --peers --n 60 --sanity-only --sanity-n 24  # their sanity check

Per dataset: the published convnet (shipped in ``benchmarks/models``; ``--retrain`` trains the
recipe instead, ``explainers_runs.py``) is written to --runs once and reused, then on --n evenly
spaced test images (:func:`spread_images`; target = true class) every registered explainer is run
and scored: pointing
game (class-averaged, TorchRay tolerance scaled to the image), energy pointing game,
deletion AUC (lower is better), insertion AUC, the model-randomisation sanity check (Spearman
rank correlation of maps from the trained and a re-initialised model, on --sanity-n images;
lower is better) and seconds per image. The paper's ``neuromask-reference`` preset runs on
the first --reference-n images only (2000 steps, one image at a time), and NeuroMask's default
is re-scored on exactly those images for the speed/pointing comparison. Peak memory of
explaining 64 images of 64x64 with NeuroMask is measured in a fresh process.

Images are every ``len / n``-th test image (:func:`spread_images`), skipping the sweep's
held-out images; until 2026-11-23 the first ``n`` were used, which on cluttered-mnist (test
split ordered by class) meant digit 0 only. Until 2026-12-01 n was 100; it is 300 since, and
every target that compares NeuroMask with a peer also gets the difference with a paired
bootstrap 95 % interval over the images (``target_intervals``; ``targets_resolved`` says
whether the interval excludes 0 in NeuroMask's favour): on 100 images the gaps the targets
judged were smaller than what changing the image set moved them by (shapes occlusion deletion
0.171 on the 32 held-out images, 0.118 on the benchmark's 100).

The option sweeps are in ``explainers_sweeps.py`` (their rows in ``explainers_rows.py``, the
evidence behind the NeuroMask default in ``docs/neuromask-sweeps.md``); the images each part
uses in ``explainers_images.py``, the targets in ``explainers_targets.py``; ROAD deletion,
the seeds study and the variants in ``explainers_studies.py``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from _common import (
    RESULTS,
    model_sha256,
    pin_isa,
    published_model_check,
    result_lock,
    write_result,
)
from explainers_images import spread_images
from explainers_runs import RECIPES, ensure_run
from explainers_targets import controls_check, peer_targets, resolved_targets, target_intervals
from pellucid.explain import build_explainer, explainer_names
from pellucid.explain.evaluate import compare
from pellucid.explain.scoring import score_maps, summarise

MEMORY_SNIPPET = """
import resource, sys, torch
from pellucid.explain import NeuroMask
from pellucid.explain.evaluate import load_images
model, batch, _ = load_images(sys.argv[1], 64)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
NeuroMask(model).explain(batch.image, batch.label)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before / 1024, after / 1024, tuple(batch.image.shape))
"""


def peak_memory(run: Path) -> dict[str, Any]:
    """Peak resident memory (MiB) of a fresh process explaining 64 images with NeuroMask."""
    res = subprocess.run(
        [sys.executable, "-c", MEMORY_SNIPPET, str(run)],
        capture_output=True,
        text=True,
        check=True,
    )
    before, after, shape = res.stdout.strip().split(" ", 2)
    return {
        "peak_rss_mib": round(float(after), 1),
        "rss_before_explaining_mib": round(float(before), 1),
        "batch_shape": shape,
    }


def reference_comparison(model: torch.nn.Module, batch: Any, k: int) -> dict[str, Any]:
    """NeuroMask default vs the paper's preset on the same ``k`` images (evenly spaced in the
    batch, so that every class is represented)."""
    k = min(k, len(batch.label))
    idx = torch.tensor([(i * len(batch.label)) // k for i in range(k)])
    images, labels = batch.image[idx], batch.label[idx]
    masks = batch.mask[idx] if batch.mask is not None else None
    out: dict[str, Any] = {"n": k}
    for name in ("neuromask", "neuromask-reference"):
        start = time.perf_counter()
        maps = build_explainer(name, model).explain(images, labels)
        seconds = (time.perf_counter() - start) / k
        s = summarise(score_maps(model, images, maps, labels, masks), labels)
        out[name] = {**s, "seconds_per_image": round(seconds, 4)}
    out["speedup"] = round(
        out["neuromask-reference"]["seconds_per_image"] / out["neuromask"]["seconds_per_image"], 1
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--n", type=int, default=300, help="test images per dataset")
    ap.add_argument("--sanity-n", type=int, default=16)
    ap.add_argument("--reference-n", type=int, default=16)
    ap.add_argument("--runs", type=Path, default=Path("runs/bench-explainers"))
    ap.add_argument(
        "--retrain",
        action="store_true",
        help="train the seed-0 models from the recipe instead of using the shipped ones",
    )
    ap.add_argument("--sweep", action="store_true", help="option sweep on held-out images")
    ap.add_argument("--sweep-n", type=int, default=32, help="held-out images per dataset")
    ap.add_argument(
        "--sweep-match", help="regex: run only the matching sweep rows (keeps the others' results)"
    )
    ap.add_argument(
        "--road",
        action="store_true",
        help="ROAD deletion (noisy linear imputation) of every explainer on the benchmark images",
    )
    ap.add_argument("--road-steps", type=int, default=10, help="ROAD reports 10 %% ... 90 %%")
    ap.add_argument(
        "--road-explainers", nargs="+", help="default: every explainer but neuromask-reference"
    )
    ap.add_argument(
        "--validation",
        action="store_true",
        help="VALIDATION sweep on images no benchmark used (results/explainers_validation.json)",
    )
    ap.add_argument("--validation-n", type=int, default=128)
    ap.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        help="NeuroMask and the peers for models trained with each seed "
        "(results/explainers_seeds.json)",
    )
    ap.add_argument(
        "--data-seed",
        type=int,
        help="with --seeds: draw every seed's data with this seed (one test set, the spread "
        "is the training's alone; results/explainers_seeds_data<D>.json)",
    )
    ap.add_argument(
        "--variants",
        nargs="*",
        metavar="LABEL",
        help="NeuroMask validation rows (by label; none given: the study's own) on the "
        "benchmark images, with the default and the peers (results/explainers_variants.json)",
    )
    ap.add_argument(
        "--pointing",
        action="store_true",
        help="pointing hits and misses on the benchmark images, apart for the images the "
        "model classifies correctly and those it misclassifies (results/explainers_pointing.json)",
    )
    ap.add_argument(
        "--explainers", nargs="+", help="with --pointing: default every explainer but the reference"
    )
    ap.add_argument(
        "--rest",
        action="store_true",
        help="NeuroMask and the peers on --n test images no other part used "
        "(results/explainers_rest.json)",
    )
    ap.add_argument(
        "--peers",
        action="store_true",
        help="NeuroMask against TorchRay's extremal perturbations and RISE, with Grad-CAM, "
        "occlusion and the controls (results/explainers_peers.json)",
    )
    ap.add_argument(
        "--sanity-only",
        action="store_true",
        help="with --peers: only the sanity check, on the first --sanity-n of the --n images, "
        "added to the saved --peers entry of the same model and images",
    )
    ap.add_argument(
        "--result",
        default="explainers",
        help="name of the results file (results/NAME.json); another name keeps the published "
        "file, e.g. for a model that the same recipe trained on another machine",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    from explainers_studies import road_benchmark, seeds_benchmark, variants_benchmark
    from explainers_sweeps import sweep, validation_sweep

    for ds in args.datasets if args.retrain else []:  # later calls reuse these runs
        ensure_run(ds, args.runs, shipped=False)
    if args.pointing:
        from explainers_pointing import pointing_study

        return pointing_study(args.datasets, args.runs, args.n, args.explainers)
    if args.peers:
        from explainers_peers import peers_sanity, peers_study

        if args.sanity_only:
            return peers_sanity(args.datasets, args.runs, args.n, args.sanity_n)
        return peers_study(args.datasets, args.runs, args.n, args.sanity_n)
    if args.rest:
        from explainers_rest import rest_study

        return rest_study(args.datasets, args.runs, args.n)
    if args.seeds:
        return seeds_benchmark(
            args.datasets, args.runs, args.n, args.seeds, args.sanity_n, args.data_seed
        )
    if args.variants is not None:
        return variants_benchmark(args.datasets, args.runs, args.n, args.variants)
    if args.road:
        return road_benchmark(
            args.datasets, args.runs, args.n, args.road_steps, args.road_explainers
        )
    if args.validation:
        return validation_sweep(args.datasets, args.runs, args.validation_n, args.sweep_match)
    if args.sweep:
        return sweep(args.datasets, args.runs, args.sweep_n, args.sweep_match)
    names = [e for e in explainer_names() if e != "neuromask-reference"]
    results: dict[str, Any] = {}
    for ds in args.datasets:
        run = ensure_run(ds, args.runs)
        model, batch = spread_images(run, args.n)
        published_model_check(model, ds)
        acc = float((model(batch.image).argmax(1) == batch.label).float().mean())
        res = compare(model, batch, names, sanity=True, sanity_n=args.sanity_n, progress=False)
        rows = res["rows"]
        for name, row in rows.items():
            print(ds, name, row, flush=True)
        ref = reference_comparison(model, batch, args.reference_n)
        print(ds, "reference", ref, flush=True)
        mem = peak_memory(run)
        print(ds, "memory", mem, flush=True)
        nm = rows["neuromask"]
        intervals = target_intervals(res["scores"], batch.label)
        results[ds] = {
            "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(sys.argv),
            "run": str(run),
            "model_sha256": model_sha256(model),
            "recipe": RECIPES[ds].to_dict(),
            "model_accuracy_on_these_images": round(acc, 4),
            "n_images": len(batch),
            "class_counts": torch.bincount(batch.label).tolist(),
            "rows": rows,
            "reference": ref,
            "memory": mem,
            "controls_worse_than_every_explainer": controls_check(rows),
            "targets": {
                **peer_targets(rows),
                "speedup_vs_reference_at_least_20": ref["speedup"] >= 20,
                "pointing_at_least_reference": ref["neuromask"]["pointing_game"]
                >= ref["neuromask-reference"]["pointing_game"],
                "sanity_at_most_0.5": nm["sanity_rank_correlation"] <= 0.5,
                "memory_under_2gb": mem["peak_rss_mib"] < 2048,
            },
            "target_intervals": intervals,
            "targets_resolved": resolved_targets(intervals),
        }
    with result_lock(args.result):  # datasets run in parallel keep each other's entries
        previous = RESULTS / f"{args.result}.json"
        if previous.is_file():  # keep the other datasets' entries (each has its own date)
            old = json.loads(previous.read_text())
            for ds, entry in old.get("results", {}).items():
                if ds not in args.datasets:
                    entry.setdefault("date", old["machine"]["date"])
                    entry.setdefault("command", old.get("command"))
                    results[ds] = entry
        write_result(
            args.result,
            {
                "n": args.n,
                "sanity_n": args.sanity_n,
                "reference_n": args.reference_n,
                "target": "true class",
                "max_rss_mib_this_process": round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
                ),
                "results": results,
            },
        )


if __name__ == "__main__":
    pin_isa()  # the published models were trained under these instruction sets
    main()
