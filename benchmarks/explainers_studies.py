"""ROAD deletion (``--road``) and the study over training seeds (``--seeds``) of
``benchmarks/explainers.py``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    model_sha256,
    published_model_check,
    write_dataset_results,
)
from explainers_images import spread_images
from explainers_runs import ensure_run
from explainers_targets import (
    PEERS,
    TARGET_SCORES,
    controls_check,
    peer_targets,
    resolved_targets,
    target_intervals,
)
from pellucid.explain import build_explainer, explainer_names
from pellucid.explain.evaluate import compare
from pellucid.explain.scoring import paired_difference, summarise


def road_benchmark(
    datasets: list[str], runs: Path, n: int, steps: int, names: list[str] | None = None
) -> None:
    """ROAD deletion (noisy linear imputation, Rong et al. 2022) of every explainer on the
    benchmark's images, next to black deletion of the same maps, with NeuroMask's paired
    intervals against the peers and the controls check; ``results/explainers_road.json``.
    A protocol under which the controls (centre point, random map) beat real explainers is
    not measuring faithfulness; ROAD's imputation hides the shape of what was removed."""
    from pellucid.metrics import deletion_auc

    names = names or [e for e in explainer_names() if e != "neuromask-reference"]
    out: dict[str, Any] = {}
    for ds in datasets:
        run = ensure_run(ds, runs)
        model, batch = spread_images(run, n)
        published_model_check(model, ds)
        images, labels = batch.image, batch.label
        rows, scores = {}, {}
        for name in names:
            start = time.perf_counter()
            maps = build_explainer(name, model).explain(images, labels)
            seconds = (time.perf_counter() - start) / len(labels)
            start = time.perf_counter()
            s = {
                "deletion_auc_road": deletion_auc(
                    model, images, maps, labels, steps=steps, fill="road"
                ).float(),
                "deletion_auc": deletion_auc(model, images, maps, labels).float(),
            }
            road_seconds = (time.perf_counter() - start) / len(labels)
            scores[name] = s
            rows[name] = {
                **summarise(s, labels),
                "seconds_per_image": round(seconds, 4),
                "scoring_seconds_per_image": round(road_seconds, 4),
            }
            print(ds, name, rows[name], flush=True)
        keys = ("deletion_auc_road", "deletion_auc")
        peers = [p for p in PEERS if p in rows]
        iv = (
            {
                key: {
                    p: paired_difference(scores["neuromask"], scores[p], labels, key) for p in peers
                }
                for key in keys
            }
            if "neuromask" in rows
            else {}
        )
        ctrl = controls_check(rows, keys)
        out[ds] = {
            "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(sys.argv),
            "n_images": len(labels),
            "model_sha256": model_sha256(model),
            "road_steps": steps,
            "rows": rows,
            "intervals": iv,
            "controls_worse_than_every_explainer": ctrl,
        }
        if "neuromask" in rows and peers:
            out[ds]["beats_peers_road"] = all(
                rows["neuromask"]["deletion_auc_road"] < rows[p]["deletion_auc_road"] for p in peers
            )
    write_dataset_results("explainers_road", out, {"n": n})  # the other datasets' kept


SEED_EXPLAINERS = ("neuromask", *PEERS)


def seeds_result_name(data_seed: int | None) -> str:
    """The results file (without ``.json``) of the seeds study: ``explainers_seeds``, or with
    one data draw for every seed ``explainers_seeds_data<data_seed>``."""
    return "explainers_seeds" if data_seed is None else f"explainers_seeds_data{data_seed}"


def seeds_benchmark(
    datasets: list[str],
    runs: Path,
    n: int,
    seeds: list[int],
    sanity_n: int,
    data_seed: int | None = None,
) -> None:
    """NeuroMask and the peers of the targets on ``n`` evenly spaced test images, for runs
    trained with each of ``seeds`` (evaluation.md: mean and spread over >= 3 seeds where a figure
    drives a claim); ``results/explainers_seeds.json``.

    Per seed: the scores of :func:`compare` with the sanity check on ``sanity_n`` images, the
    targets on the means (:func:`peer_targets`) and by the paired intervals
    (:func:`resolved_targets`). Over seeds: each score's mean, sample standard deviation and
    values, NeuroMask minus each peer likewise, and in how many seeds each target holds.

    By default a run's seed also draws its synthetic data (``train_run`` generates every
    split with the training seed), so each seed has its own model AND its own test images:
    the spread covers both the training and the data draw. With ``data_seed`` every run is
    trained and scored on the data drawn with that seed (``DataConfig.seed``), so the spread
    is the training's alone, and the result goes to ``results/explainers_seeds_data<D>.json``.
    Within a seed every explainer is scored on the same images."""
    out: dict[str, Any] = {}
    for ds in datasets:
        per_seed: dict[str, Any] = {}
        for seed in seeds:
            run = ensure_run(ds, runs, seed, data_seed)
            model, batch = spread_images(run, n)  # the test split drawn with this seed
            acc = float((model(batch.image).argmax(1) == batch.label).float().mean())
            res = compare(
                model, batch, list(SEED_EXPLAINERS), sanity=True, sanity_n=sanity_n, progress=False
            )
            rows = res["rows"]
            intervals = target_intervals(res["scores"], batch.label)
            per_seed[str(seed)] = {
                "run": str(run),
                "model_sha256": model_sha256(model),
                "test_accuracy": json.loads((run / "metrics.json").read_text())["test_accuracy"],
                "model_accuracy_on_these_images": round(acc, 4),
                "rows": rows,
                "targets": peer_targets(rows),
                "target_intervals": intervals,
                "targets_resolved": resolved_targets(intervals),
            }
            print(ds, seed, {k: per_seed[str(seed)][k] for k in ("targets", "targets_resolved")})
            for name, row in rows.items():
                print(ds, seed, name, row, flush=True)
        out[ds] = {
            "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(sys.argv),
            "n_images": n,
            "seeds": per_seed,
            **over_seeds(per_seed),
        }
    write_dataset_results(  # the other datasets' entries kept
        seeds_result_name(data_seed),
        out,
        {
            "n": n,
            "seeds": seeds,
            "data_seed": data_seed,
            "sanity_n": sanity_n,
            "target": "true class",
        },
    )


def over_seeds(per_seed: dict[str, Any]) -> dict[str, Any]:
    """Mean, sample standard deviation (ddof 1) and values over seeds of every explainer's
    scores and of NeuroMask minus each peer; how many seeds meet each target."""
    import statistics

    def spread(values: list[float]) -> dict[str, Any]:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return {"mean": round(statistics.fmean(values), 4), "sd": round(sd, 4), "values": values}

    entries = list(per_seed.values())
    names = entries[0]["rows"]
    keys = [k for k in entries[0]["rows"]["neuromask"] if k != "seconds_per_image"]
    scores = {
        name: {k: spread([e["rows"][name][k] for e in entries]) for k in keys} for name in names
    }
    differences = {
        k: {
            peer: spread(
                [round(e["rows"]["neuromask"][k] - e["rows"][peer][k], 4) for e in entries]
            )
            for peer in PEERS
        }
        for k in TARGET_SCORES
        if k in keys
    }
    met = {
        kind: {t: sum(e[kind][t] for e in entries) for t in entries[0][kind]}
        for kind in ("targets", "targets_resolved")
    }
    return {"scores": scores, "differences": differences, "seeds_meeting": met}


VARIANTS = ("refine product 0.5", "own deletion mask, product, refine product 0.5")


def variants_benchmark(
    datasets: list[str], runs: Path, n: int, labels: list[str] | None = None
) -> None:
    """NeuroMask options chosen on the validation images (rows of ``VALIDATION`` named by
    their labels; default :data:`VARIANTS`) on the benchmark's own ``n`` images, next to
    the default and the two peers of the targets, with each NeuroMask row's paired
    intervals against both peers; ``results/explainers_variants.json``. The options were
    chosen on other images, so this is their test; the default is not changed by it. The
    default's row re-measures the main benchmark's and must match it to the last digit on
    the same model."""
    from explainers_rows import VALIDATION
    from explainers_sweeps import measure_row

    by_label = {label: opts for label, name, opts in VALIDATION if name == "neuromask"}
    labels = list(labels or VARIANTS)
    unknown = [label for label in labels if label not in by_label]
    if unknown:
        raise SystemExit(f"unknown validation rows {unknown}; known: {sorted(by_label)}")
    configs = [(p, p, {}) for p in PEERS] + [("default", "neuromask", {})]
    configs += [(label, "neuromask", by_label[label]) for label in labels]
    out: dict[str, Any] = {}
    for ds in datasets:
        run = ensure_run(ds, runs)
        model, batch = spread_images(run, n)
        published_model_check(model, ds)
        rows, scores = [], {}
        for label, name, opts in configs:
            rows.append(measure_row(label, name, opts, model, batch, scores, PEERS))
            print(ds, {k: v for k, v in rows[-1].items() if k != "minus_peers"}, flush=True)
        out[ds] = {
            "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(sys.argv),
            "n_images": len(batch.label),
            "model_sha256": model_sha256(model),
            "rows": rows,
        }
    # read only now, under a lock, so that datasets run in parallel keep each other's
    write_dataset_results("explainers_variants", out, {"n": n, "target": "true class"})
