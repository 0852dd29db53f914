"""Standard vs Class-Specific Gates, side by side: same model, data, seed, epochs and recipe.

    python benchmarks/csg.py                      # main comparison: mnist + shapes, 3 seeds
    python benchmarks/csg.py --search             # the configuration search (mnist, seed 0)

Per run: test accuracy, MIS (sklearn kNN estimator, test split, gated layer), the
estimator-free top-class activation share, gate density, seconds per epoch. Results go to
benchmarks/results/csg.json (and csg_search.json); every configuration tried is recorded.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from _common import cached_run, result_lock, write_result
from pellucid.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig

KEYS = (
    "test_accuracy",
    "mis",
    "class_share",
    "gate_density",
    "seconds_per_epoch",
    "mis_layer",
    "run_reused",
)

# dataset -> (data config, model, model options, train config)
RECIPES: dict[str, dict[str, Any]] = {
    "mnist": {
        "data": {"name": "mnist"},
        "model": ("resnet8", {}),
        "train": {"epochs": 5, "lr": 0.1},
    },
    "shapes": {
        "data": {"name": "shapes", "batch_size": 128, "augment": "none", "options": {"n": 4000}},
        "model": ("convnet", {}),
        "train": {"epochs": 6, "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4},
    },
}


def make_config(
    dataset: str, seed: int, method: str, method_opts: dict, overrides: dict
) -> RunConfig:
    r = RECIPES[dataset]
    data = {**r["data"], **overrides.get("data", {})}
    model_name, model_opts = overrides.get("model", r["model"])
    train = {**r["train"], **overrides.get("train", {}), "seed": seed}
    return RunConfig(
        data=DataConfig(**data),
        model=ModelConfig(name=model_name, options=dict(model_opts)),
        method=MethodConfig(name=method, options=dict(method_opts)),
        train=TrainConfig(**train),
    )


def train(config: RunConfig, init: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The run of ``config`` (trained once, shared with the other benchmarks through
    :func:`_common.cached_run`) and its metrics of ``KEYS``."""
    if init is not None:
        config = config.replace(init=str(init))
    run, metrics = cached_run(config)
    return run, {k: metrics.get(k) for k in KEYS}


def pair(dataset: str, seed: int, csg_opts: dict, overrides: dict) -> dict[str, Any]:
    """One standard and one CSG run with the same recipe; ``overrides["finetune"]`` = CSG
    starts from the standard run and trains that many extra epochs, and the baseline is a
    standard run of the same total length."""
    std_cfg = make_config(dataset, seed, "standard", {}, overrides)
    ft = overrides.get("finetune")
    if ft:
        base, _ = train(std_cfg)
        total = std_cfg.train.epochs + ft
        long_cfg = std_cfg.replace(train=_with(std_cfg.train, epochs=total))
        _, std = train(long_cfg)
        csg_cfg = make_config(dataset, seed, "csg", csg_opts, overrides)
        csg_cfg = csg_cfg.replace(train=_with(csg_cfg.train, epochs=ft))
        _, csg = train(csg_cfg, init=base)
        csg["note"] = f"fine-tuned {ft} epochs from a {std_cfg.train.epochs}-epoch standard run"
    else:
        _, std = train(std_cfg)
        _, csg = train(make_config(dataset, seed, "csg", csg_opts, overrides))
    return {"standard": std, "csg": csg, "mis_ratio": _ratio(csg["mis"], std["mis"])}


def _with(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(cfg, **changes)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


SEARCH: list[tuple[str, dict, dict]] = [
    ("resnet8 layer3 joint d0.1 (reference setting)", {"density": 0.1}, {}),
    ("resnet8 layer3 joint d0.1 lambda_csg=3", {"density": 0.1, "lambda_csg": 3.0}, {}),
    (
        "resnet8 layer3 alternating SSG gated-only d0.1, 6 epochs",
        {"density": 0.1, "mode": "alternating", "warmup_epochs": 1},
        {"train": {"epochs": 6}},
    ),
    (
        "convnet 32-64-128-256 (plain conv gated) joint d0.1",
        {"density": 0.1},
        {"model": ("convnet", {"widths": [32, 64, 128, 256]})},
    ),
    (
        "resnet8 fine-tune 3 epochs from standard, joint d0.1 lambda_csg=3",
        {"density": 0.1, "lambda_csg": 3.0},
        {"finetune": 3},
    ),
    (
        "convnet 32-64-128-512 (wide plain conv gated) joint d0.1 lambda_csg=3",
        {"density": 0.1, "lambda_csg": 3.0},
        {"model": ("convnet", {"widths": [32, 64, 128, 512]})},
    ),
    ("resnet8 layer3 joint d0.1 lambda_csg=10", {"density": 0.1, "lambda_csg": 10.0}, {}),
    (
        "convnet 32-64-128-512 alternating SG gated-only d0.1, 6 epochs",
        {"density": 0.1, "mode": "alternating", "warmup_epochs": 1, "pattern": "SG"},
        {"model": ("convnet", {"widths": [32, 64, 128, 512]}), "train": {"epochs": 6}},
    ),
]


def _merge(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of earlier search runs kept, rows of this run replacing same (config, dataset)."""
    import json

    from _common import RESULTS

    path = RESULTS / "csg_search.json"
    old = json.loads(path.read_text())["rows"] if path.is_file() else []
    new_keys = {(r["config"], r["dataset"]) for r in rows}
    return [r for r in old if (r["config"], r["dataset"]) not in new_keys] + rows


def measure_cost(dataset: str, reps: int = 4) -> None:
    """Seconds per epoch of standard and joint-mode CSG, alternating one epoch each so that
    machine load affects both alike; the first pair is a warm-up."""
    import dataclasses

    from pellucid.data import load_dataset
    from pellucid.training import fit
    from pellucid.training.run import _info_dict, build_from_config

    cfg = make_config(dataset, 0, "standard", {}, MAIN_OVERRIDES)
    train_set = load_dataset(cfg.data.name, "train", seed=0, **cfg.data.options)
    times: dict[str, list[float]] = {"standard": [], "csg": []}
    for rep in range(reps + 1):
        for name, opts in (("standard", {}), ("csg", DEFAULT_OPTIONS)):
            c = make_config(dataset, rep, name, opts, MAIN_OVERRIDES)
            c = c.replace(info=_info_dict(train_set), train=_with(c.train, epochs=1))
            method = build_from_config(c)
            sec = fit(method, train_set, None, c.train, c.data, progress=False).epochs[0]["seconds"]
            if rep:
                times[name].append(sec)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{dataset}: standard {med['standard']:.2f} s/epoch, csg {med['csg']:.2f} s/epoch")
    write_result(
        f"csg_cost_{dataset}",
        {
            "dataset": dataset,
            "config": dataclasses.asdict(cfg.model),
            "seconds": times,
            "median_seconds": med,
            "cost_ratio": round(med["csg"] / med["standard"], 3),
            "target_cost_ratio": 1.05,
        },
    )


def summarise(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # timings only of pairs trained in this process, both sides: a reused run's timings are
    # its first training's, under whatever else the machine was doing then
    fresh = [
        p for p in pairs if not (p["standard"].get("run_reused") or p["csg"].get("run_reused"))
    ]
    for side in ("standard", "csg"):
        for key in ("test_accuracy", "mis", "class_share", "gate_density", "seconds_per_epoch"):
            among = fresh if key == "seconds_per_epoch" else pairs
            vals = [p[side][key] for p in among if p[side].get(key) is not None]
            if vals:
                out[f"{side}_{key}_mean"] = round(statistics.mean(vals), 4)
                out[f"{side}_{key}_std"] = round(statistics.pstdev(vals), 4)
    if "csg_mis_mean" in out:
        out["mis_ratio"] = _ratio(out["csg_mis_mean"], out["standard_mis_mean"])
        out["accuracy_gap_points"] = round(
            100 * (out["csg_test_accuracy_mean"] - out["standard_test_accuracy_mean"]), 2
        )
        out["epoch_cost_ratio"] = (
            _ratio(out["csg_seconds_per_epoch_mean"], out["standard_seconds_per_epoch_mean"])
            if "csg_seconds_per_epoch_mean" in out
            else None  # every pair reused: see ``--cost`` for a measurement
        )
        out["timed_pairs"] = len(fresh)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--search", action="store_true", help="run the configuration search")
    ap.add_argument("--datasets", nargs="+", default=["mnist", "shapes"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", type=int, nargs="*", help="search entries to run (indices)")
    ap.add_argument("--cost", action="store_true", help="epoch time, standard vs CSG, alone")
    args = ap.parse_args()
    if args.cost:
        return measure_cost(args.datasets[0])
    if args.search:
        rows = []
        for i, (label, opts, over) in enumerate(SEARCH):
            if args.only and i not in args.only:
                continue
            for ds in args.datasets:
                res = pair(ds, 0, opts, over)
                rows.append({"config": label, "dataset": ds, "csg_options": opts, **res})
                print(
                    f"[{ds}] {label}: std MIS {res['standard']['mis']:.4f} acc "
                    f"{res['standard']['test_accuracy']:.4f} | csg MIS "
                    f"{res['csg']['mis']:.4f} acc {res['csg']['test_accuracy']:.4f} "
                    f"share {res['csg']['class_share']:.3f} vs "
                    f"{res['standard']['class_share']:.3f}"
                )
        with result_lock("csg_search"):  # _merge reads the saved rows
            write_result("csg_search", {"seed": 0, "recipes": RECIPES, "rows": _merge(rows)})
        return
    results = {}
    for ds in args.datasets:
        pairs = []
        for seed in args.seeds:
            pairs.append(pair(ds, seed, DEFAULT_OPTIONS, MAIN_OVERRIDES))
            print(ds, seed, pairs[-1])
        results[ds] = {"pairs": pairs, "summary": summarise(pairs)}
        print(ds, results[ds]["summary"])
    write_result(
        "csg",
        {
            "csg_options": DEFAULT_OPTIONS,
            "overrides": MAIN_OVERRIDES,
            "seeds": args.seeds,
            "recipes": RECIPES,
            "results": results,
        },
    )


# The main comparison uses the placement that did best in the search (a plain conv layer
# gated, no shortcut; see csg_search.json) with the recipe's data and training settings.
DEFAULT_OPTIONS: dict[str, Any] = {"density": 0.1}
MAIN_OVERRIDES: dict[str, Any] = {"model": ("convnet", {"widths": [32, 64, 128, 256]})}

if __name__ == "__main__":
    main()
