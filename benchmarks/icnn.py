"""Plain vs ICNN (Zhang et al., CVPR 2018) on shapes 64x64: the same backbone with the same
extra 3x3 conv layer, with and without the template mask and filter loss; same data, seed,
epochs and recipe.

    python benchmarks/icnn.py            # 3 seeds, ~15 min on 2 CPU cores
    python benchmarks/icnn.py --smoke    # tiny data, 1 epoch, 1 seed (< 1 min)

Per run: test accuracy, location instability and part interpretability of the interpretable
layer (``icnn``, after the mask; for the ICNN arm also before it, ``icnn.relu``), seconds per
epoch. Results go to benchmarks/results/icnn.json (--smoke writes nothing) with the
issue's targets and whether they are met: instability ICNN <= 0.7 x plain, part
interpretability ICNN >= 1.3 x plain, accuracy drop <= 1 point.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from _common import write_result
from pellucid.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig
from pellucid.data import load_dataset
from pellucid.metrics.parts import part_metrics
from pellucid.training import fit
from pellucid.training.loop import evaluate
from pellucid.training.run import _info_dict, build_from_config
from pellucid.training.setup import seed_everything

# benchmarks/csg.py's shapes recipe, with the training set cut to fit the time budget;
# no validation pass (the test split is evaluated once at the end)
RECIPE: dict[str, Any] = {
    "data": {"name": "shapes", "batch_size": 128, "augment": "none"},
    "model": ("convnet", {}),
    "train": {"epochs": 6, "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4},
    "n_train": 2500,  # 2 arms x 3 seeds x 6 epochs ~ 13 min at ~20 s per 2,800 images
    "n_test": 1000,  # the cap `pellucid evaluate` uses for the part metrics
}
SMOKE: dict[str, Any] = {"n_train": 256, "n_test": 128, "epochs": 1}
ICNN_OPTIONS: dict[str, Any] = {}  # the method's defaults (lambda_ etc., see methods/icnn.py)
TARGETS = {"instability_ratio_max": 0.7, "interpretability_ratio_min": 1.3, "drop_max": 1.0}
KEYS = ("test_accuracy", "location_instability", "part_interpretability", "seconds_per_epoch")


def make_config(seed: int, plain: bool, epochs: int, info: dict[str, Any]) -> RunConfig:
    name, model_opts = RECIPE["model"]
    opts = {"plain": True} if plain else dict(ICNN_OPTIONS)
    return RunConfig(
        data=DataConfig(**RECIPE["data"]),
        model=ModelConfig(name=name, options=dict(model_opts)),
        method=MethodConfig(name="icnn", options=opts),
        train=TrainConfig(**{**RECIPE["train"], "epochs": epochs, "seed": seed}),
        info=info,
    )


def run_one(seed: int, plain: bool, epochs: int, train: Any, test: Any) -> dict[str, Any]:
    cfg = make_config(seed, plain, epochs, _info_dict(train))
    seed_everything(seed)
    method = build_from_config(cfg)
    history = fit(method, train, None, cfg.train, cfg.data, progress=False)
    net = method.inference_model()
    start = time.perf_counter()
    out: dict[str, Any] = {
        "test_accuracy": round(evaluate(net, test)["accuracy"], 5),
        "seconds_per_epoch": round(history.train_seconds / len(history.epochs), 3),
        "train_ce_last": round(history.epochs[-1]["train_ce"], 4),
    }
    out.update(part_metrics(net, method.analysis_layer(), test, max_images=None))
    if not plain:
        pre = part_metrics(net, "icnn.relu", test, max_images=None)
        out["part_interpretability_premask"] = pre["part_interpretability"]
        out["filter_mi_mean_last"] = round(history.epochs[-1]["train_filter_mi_mean"], 5)
        out["lambda"] = method.lambda_
    out["eval_seconds"] = round(time.perf_counter() - start, 2)
    return out


def summarise(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arm in ("plain", "icnn"):
        for key in (*KEYS, "part_interpretability_premask"):
            vals = [p[arm][key] for p in pairs if p[arm].get(key) is not None]
            if vals:
                out[f"{arm}_{key}_mean"] = round(statistics.mean(vals), 5)
                out[f"{arm}_{key}_std"] = round(statistics.pstdev(vals), 5)

    def ratio(key: str) -> float | None:
        a, b = out.get(f"icnn_{key}_mean"), out.get(f"plain_{key}_mean")
        return round(a / b, 3) if a is not None and b else None

    out["instability_ratio"] = ratio("location_instability")
    out["interpretability_ratio"] = ratio("part_interpretability")
    out["epoch_cost_ratio"] = ratio("seconds_per_epoch")
    out["accuracy_drop_points"] = round(
        100 * (out["plain_test_accuracy_mean"] - out["icnn_test_accuracy_mean"]), 2
    )
    li, pi = out["instability_ratio"], out["interpretability_ratio"]
    out["targets_met"] = {
        "location_instability": li is not None and li <= TARGETS["instability_ratio_max"],
        "part_interpretability": pi is not None and pi >= TARGETS["interpretability_ratio_min"],
        "accuracy": out["accuracy_drop_points"] <= TARGETS["drop_max"],
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch, 1 seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-train", type=int, default=RECIPE["n_train"], help="training images")
    ap.add_argument("--epochs", type=int, default=RECIPE["train"]["epochs"])
    args = ap.parse_args()
    n_train, n_test, epochs, seeds = args.n_train, RECIPE["n_test"], args.epochs, args.seeds
    if args.smoke:
        n_train, n_test, epochs, seeds = SMOKE["n_train"], SMOKE["n_test"], SMOKE["epochs"], [0]
    start = time.perf_counter()
    pairs = []
    for seed in seeds:
        train = load_dataset("shapes", "train", seed=seed, n=n_train)
        test = load_dataset("shapes", "test", seed=seed, n=n_test)
        pair: dict[str, Any] = {"seed": seed}
        arms = ("plain", "icnn") if seed % 2 == 0 else ("icnn", "plain")  # share warm-up
        for arm in arms:
            pair[arm] = run_one(seed, arm == "plain", epochs, train, test)
            print(f"seed {seed} {arm}: " + ", ".join(f"{k} {pair[arm].get(k)}" for k in KEYS))
        pairs.append(pair)
    summary = summarise(pairs)
    print({k: v for k, v in summary.items() if not k.endswith("_std")})
    if args.smoke:
        print("smoke run: results not written")
        return
    write_result(
        "icnn",
        {
            "recipe": RECIPE,
            "n_train": n_train,
            "n_test": n_test,
            "epochs": epochs,
            "seeds": seeds,
            "icnn_options": ICNN_OPTIONS,
            "targets": TARGETS,
            "torch_threads": torch.get_num_threads(),
            "wall_seconds": round(time.perf_counter() - start, 1),
            "pairs": pairs,
            "summary": summary,
        },
    )


if __name__ == "__main__":
    main()
