"""Sanity checks of every explainer (Adebayo et al. 2018) on the explainer benchmark's models.

For each dataset and seed (one worker process per job, 1 thread):

- the explainer benchmark's model (``explainers_runs.ensure_run``: the published weights for
  seed 0, the recipe trained with the seed otherwise);
- a random-label model: the same recipe and seed on the same data with the training labels
  permuted (``DataConfig(random_labels=True)``), trained for ``--random-label-epochs``
  epochs, long enough to fit many of its random labels, as the paper's models did (its
  training accuracy is recorded);

then on the same ``--n`` test images (spread evenly, target = true class), for every explainer
(:func:`pellucid.explain.sanity.sanity_run`): the Spearman rank correlation (and the SSIM and
HOG correlation, Adebayo et al.'s other measures) between the maps of the trained model and
those of

- the fully re-initialised model (``full``),
- the model with its blocks re-initialised from the output towards the input, cumulatively
  (``cascading``: one value per step),
- the random-label model (``data``).

Lower is better: the maps of a faithful explainer change when what the model learnt is gone.
The ``random`` and ``centre`` controls ignore the model and must score 1 (or be undefined).

    python benchmarks/sanity.py [--datasets cluttered-mnist shapes] [--seeds 0 1 2] [--n 24]
    python benchmarks/sanity.py --merge sanity_shapes_seed0 sanity_shapes_seeds12 --result R

Result: benchmarks/results/sanity.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from _common import finished_run, write_result
from explainers_runs import RECIPES, ensure_run, recipe

CHECKS = ["full", "cascading", "data"]


def random_label_run(dataset: str, runs: Path, seed: int, epochs: int) -> Path:
    """The recipe's random-label model of ``dataset`` and ``seed`` (trained once, reused; an
    interrupted training is resumed from its checkpoint)."""
    from pellucid.training import train_run

    out = runs / f"{dataset}-seed{seed}-random-labels-{epochs}ep"
    base = recipe(dataset, seed)
    cfg = base.replace(
        data=dataclasses.replace(base.data, random_labels=True),
        train=dataclasses.replace(base.train, epochs=epochs),
    )
    if not finished_run(out, cfg):
        resume = (out / "checkpoint" / "state.pt").is_file()  # an interrupted training continues
        if not resume and out.exists():  # interrupted before its first checkpoint: start again
            shutil.rmtree(out)
        print(f"training {dataset} on random labels (seed {seed}, {epochs} epochs) -> {out}")
        train_run(cfg, out, resume=resume, progress=False)
    return out


def run_job(
    dataset: str, seed: int, n: int, runs: Path, epochs: int, explainers: list[str] | None
) -> dict[str, Any]:
    import torch

    from pellucid.explain.sanity import sanity_run
    from pellucid.io import read_json

    torch.set_num_threads(1)
    start = time.perf_counter()
    trained = ensure_run(dataset, runs, seed)
    shuffled = random_label_run(dataset, runs, seed, epochs)
    train_seconds = time.perf_counter() - start
    res = sanity_run(
        trained, explainers, n=n, checks=CHECKS, random_label_run=shuffled, seed=seed,
        progress=False,
    )  # fmt: skip
    history = read_json(shuffled / "history.json")
    print(f"{dataset} seed {seed}: done in {time.perf_counter() - start:.0f} s", flush=True)
    return {
        "dataset": dataset,
        "seed": seed,
        "test_accuracy": read_json(trained / "metrics.json")["test_accuracy"],
        "random_label_test_accuracy": res["random_label_test_accuracy"],
        "random_label_train_accuracy": round(history[-1]["train_accuracy"], 4),
        "layers": res["layers"],
        "n": res["n"],
        "rows": res["rows"],
        "train_seconds": round(train_seconds, 1),
        "check_seconds": round(time.perf_counter() - start - train_seconds, 1),
    }


def _stats(values: list[float | None]) -> dict[str, float] | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None
    spread = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": round(statistics.mean(vals), 4), "std": round(spread, 4), "seeds": len(vals)}


def summarise(per_job: list[dict[str, Any]]) -> dict[str, Any]:
    """dataset -> explainer -> check -> mean and std over the seeds (the cascade per step)."""
    out: dict[str, Any] = {}
    for dataset in dict.fromkeys(j["dataset"] for j in per_job):
        jobs = [j for j in per_job if j["dataset"] == dataset]
        layers = jobs[0]["layers"]
        rows: dict[str, Any] = {}
        for name in jobs[0]["rows"]:
            get = [j["rows"][name] for j in jobs]
            rows[name] = {
                "full": _stats([g["full"]["mean"] for g in get]),
                "full_abs": _stats([g["full"]["mean_abs"] for g in get]),
                "cascading": [
                    _stats([g["cascading"]["mean"][i] for g in get]) for i in range(len(layers))
                ],
                "data": _stats([g["data"]["mean"] for g in get]),
                "data_abs": _stats([g["data"]["mean_abs"] for g in get]),
            }
            for check in ("full", "data"):  # the paper's other similarity measures
                for key in ("ssim", "hog"):
                    values = [g[check].get(f"mean_{key}") for g in get]
                    rows[name][f"{check}_{key}"] = _stats(values)
        out[dataset] = {
            "layers": layers,
            "seeds": [j["seed"] for j in jobs],
            "test_accuracy": _stats([j["test_accuracy"] for j in jobs]),
            "random_label_train_accuracy": _stats([j["random_label_train_accuracy"] for j in jobs]),
            "random_label_test_accuracy": _stats([j["random_label_test_accuracy"] for j in jobs]),
            "rows": rows,
        }
    return out


def merge(names: list[str]) -> dict[str, Any]:
    """The payload of one result made of the saved results ``names`` (``results/NAME.json``,
    e.g. seed 0 measured in one session and seeds 1-2 in another): the same protocol,
    images per model, random-label epochs and explainers, no (dataset, seed) twice; each job
    keeps the command, date and CPU it was measured with, and the summary is recomputed."""
    from _common import RESULTS
    from pellucid.io import read_json

    parts = [read_json(RESULTS / f"{name}.json") for name in names]
    same = ("n", "random_label_epochs", "checks", "protocol")
    for name, part in zip(names[1:], parts[1:], strict=True):
        differ = [k for k in same if part[k] != parts[0][k]]
        differ += [
            f"recipe of {ds}"
            for ds, rec in part["recipes"].items()
            if ds in parts[0]["recipes"] and rec != parts[0]["recipes"][ds]
        ]
        rows = {tuple(j["rows"]) for p in (parts[0], part) for j in p["per_job"]}
        differ += ["explainers"] if len(rows) > 1 else []
        if differ:
            raise SystemExit(f"{name} differs from {names[0]} in: {', '.join(differ)}")
    per_job, seen = [], set()
    for name, part in zip(names, parts, strict=True):
        m = part["machine"]
        for job in part["per_job"]:
            key = (job["dataset"], job["seed"])
            if key in seen:
                raise SystemExit(f"{name} measures {key} again")
            seen.add(key)
            measured = {"command": part["command"], "date": m["date"], "cpu": m.get("cpu")}
            measured["cpu_capability"] = m.get("cpu_capability")
            per_job.append({**job, "measured": job.get("measured", measured)})
    per_job.sort(key=lambda j: (j["dataset"], j["seed"]))
    first = parts[0]
    return {
        "datasets": list(dict.fromkeys(ds for p in parts for ds in p["datasets"])),
        "seeds": sorted({j["seed"] for j in per_job}),
        **{k: first[k] for k in same},
        "recipes": {ds: rec for p in parts for ds, rec in p["recipes"].items()},
        "merged_from": [
            {
                "result": name,
                "command": p["command"],
                "date": p["machine"]["date"],
                "cpu": p["machine"].get("cpu"),
                "cpu_capability": p["machine"].get("cpu_capability"),
                "seeds": p["seeds"],
                "wall_seconds": p["wall_seconds"],
            }
            for name, p in zip(names, parts, strict=True)
        ],
        "wall_seconds": round(sum(p["wall_seconds"] for p in parts), 1),
        "per_job": per_job,
        "summary": summarise(per_job),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=24, help="test images per model")
    ap.add_argument("--random-label-epochs", type=int, default=30)
    ap.add_argument("--explainers", nargs="+", help="default: all but neuromask-reference")
    ap.add_argument("--runs", type=Path, default=Path("runs/bench-explainers"))
    ap.add_argument("--workers", type=int, default=2, help="processes (1 thread each)")
    ap.add_argument("--result", default="sanity")
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="RESULT",
        help="measure nothing: write --result as these saved results (results/RESULT.json) "
        "together, e.g. seeds measured in two sessions",
    )
    args = ap.parse_args()
    if args.merge:
        write_result(args.result, merge(args.merge))
        return
    start = time.perf_counter()
    jobs = [
        (ds, s, args.n, args.runs, args.random_label_epochs, args.explainers)
        for ds in args.datasets
        for s in args.seeds
    ]
    if args.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            per_job = list(pool.map(run_job, *zip(*jobs, strict=True)))
    else:
        per_job = [run_job(*job) for job in jobs]
    write_result(
        args.result,
        {
            "datasets": args.datasets,
            "seeds": args.seeds,
            "n": args.n,
            "random_label_epochs": args.random_label_epochs,
            "checks": CHECKS,
            "recipes": {ds: dataclasses.asdict(RECIPES[ds]) for ds in args.datasets},
            "protocol": "target = true class; Spearman rank correlation of each image's maps "
            "from the trained model and from the damaged one (lower is better), and SSIM and "
            "HOG correlation of their absolute values scaled to [0, 1]; full = every "
            "weight re-initialised, cascading = blocks re-initialised from the output to the "
            "input (cumulative), data = the recipe trained on permuted training labels",
            "wall_seconds": round(time.perf_counter() - start, 1),
            "per_job": per_job,
            "summary": summarise(per_job),
        },
    )


if __name__ == "__main__":
    main()
