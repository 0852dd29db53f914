"""Plain vs ICNN (Zhang et al., CVPR 2018) on shapes 64x64: the same backbone with the same
extra 3x3 conv layer, with and without the template mask and filter loss; same data, seed
and total number of epochs.

    python benchmarks/icnn.py            # 3 seeds, ~16 min at one thread (2 shared cores)
    python benchmarks/icnn.py --smoke    # tiny data, 1 + 1 epochs, 1 seed (< 1 min)

Protocol (as in the paper, which fine-tunes ImageNet-trained networks with the filter loss,
and as benchmarks/decoupling.py), per seed:

1. plain: the plain architecture (``icnn`` with ``plain=True``) trained ``epochs`` epochs;
2. plain+ft: the plain run trained ``finetune epochs`` more with the fine-tuning schedule
   (the accuracy reference with the same total training as ICNN);
3. icnn: the plain run's weights (same architecture; the mask has no weights, the
   method's buffers -- running log Z, filter categories -- start fresh) fine-tuned with the
   mask and the filter loss, same schedule, data order and seed as plain+ft. The mask gain is
   calibrated on the first fine-tuning batch (``calibrate_gain``, see methods/icnn.py).

Per run: test accuracy, location instability and part interpretability of the interpretable
layer (``icnn``, after the mask; for the ICNN arm also before it, ``icnn.relu``), seconds
per epoch (noisy: the machine's 2 cores are shared with other jobs; accuracy and the filter
metrics are not affected). The accuracy drop is taken per seed against the better of plain
and plain+ft; the interpretability ratios are ICNN / plain+ft and ICNN / plain, and a target
counts as met only if it holds against both. Results: benchmarks/results/icnn.json
(--smoke writes nothing).

Result (2026-11-23, 3 seeds, benchmarks/results/icnn.json): accuracy plain 0.488, plain+ft
0.669, ICNN 0.686 (drop -1.6 points); location instability 0.0728 / 0.0624 / 0.0403 (ICNN
x0.65 of plain+ft, x0.55 of plain); part interpretability 0.112 / 0.155 / 0.225 (x1.45,
x2.0). Seconds per epoch ~27-29 for all three arms (noisy, shared machine).

Why this recipe (evidence; shapes, 2,500 training images, seed 0 unless said otherwise):

* From scratch (the earlier protocol: 6 epochs, AdamW lr 2e-3, onecycle, 3 seeds) ICNN met
  both interpretability targets (instability x0.61, part interpretability x1.61) but lost
  13.3 accuracy points (0.543 vs 0.677).
* The accuracy is lost to the mask, not to the loss. From a plain run of 4 epochs (acc
  0.444), 2 fine-tuning epochs at lr 1e-3 gave: plain+ft 0.575; ICNN 0.483; ICNN with
  lambda = 0 (mask only) 0.493; filter loss without the mask 0.572. With the mask the
  training CE rose to 1.72 (plain+ft 1.16); lr 3e-3 did not help (0.484, CE 1.58).
* Why: the mask keeps ~5 of the 8x8 units of each map, so the globally pooled features that
  reach the classifier shrink ~5x (per-filter ratio mean(x) / mean(mask(x)): quantiles
  10/50/90 % = 4.6 / 5.4 / 10.4). The plain weights still rank the classes nearly as well
  (accuracy with the mask and no training 0.419 vs 0.444), but the logits are ~5x too
  small, and in a few dozen AdamW steps (20 per epoch) the classifier cannot grow 5x.
  The same holds from scratch: 120 steps in all.
* Fix: a fixed per-filter gain after the mask that restores each filter's mean output,
  calibrated once on the first fine-tuning batch (like dropout's 1/(1-p)). With it the
  masked plain weights score 0.451 before any training and 0.581 after 2 epochs (plain+ft
  0.575). The gain is a positive per-filter constant, so the filter metrics (argmax
  locations, per-filter quantiles) do not see it directly.
* Loss weight (seed 0, plain 4 epochs: acc 0.444, instability 0.0753, part
  interpretability 0.120; then 3 fine-tuning epochs at lr 1e-3, onecycle; plain+ft: acc
  0.678, instability 0.0660, part interpretability 0.157). ICNN with the gain:

      lambda   accuracy   instability (/ plain+ft)   part interpretability (/ plain+ft)
      0.3      0.700      0.0508 (0.77)              0.213 (1.36)
      1        0.727      0.0493 (0.75)              0.207 (1.32)
      10       0.698      0.0441 (0.67)              0.232 (1.48)
      30       0.593      0.0392 (0.59)              0.256 (1.63)
      100      0.489      0.0375 (0.57)              0.220 (1.40)

  tau = 0.5 / n^2 keeps the loss in its quadratic regime (MI ~1e-3 nats per filter), so
  lambda has to be large to move the filters; lambda = 10 is the value that meets all three
  targets on seed 0, lambda >= 30 silences filters on too many classes (accuracy cliff).
  Epochs: 4 + 3 (x2 fine-tuning arms) per seed fits 3 seeds in ~16 min at one thread.
* From scratch with the gain (6 epochs, lambda 0.3, seed 0) ICNN is far more accurate than
  plain (0.841 vs 0.658 in the earlier benchmark's plain run, same data and recipe) but its
  filters are less constrained: instability 0.049 (x0.76), part interpretability 0.176
  (x1.11) -- hence the fine-tuning protocol.
"""

from __future__ import annotations

import argparse
import copy
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
# no validation pass (the test split is evaluated once at the end of each run)
RECIPE: dict[str, Any] = {
    "data": {"name": "shapes", "batch_size": 128, "augment": "none"},
    "model": ("convnet", {}),
    "train": {"epochs": 4, "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4},
    "finetune": {"epochs": 3, "lr": 1e-3},  # plain+ft and ICNN
    "n_train": 2500,  # 3 seeds x (4 + 2 x 3) epochs ~ 16 min at ~28 s per epoch
    "n_test": 1000,  # the cap `pellucid evaluate` uses for the part metrics
}
SMOKE: dict[str, Any] = {"n_train": 256, "n_test": 128, "epochs": 1, "finetune_epochs": 1}
ICNN_OPTIONS: dict[str, Any] = {"lambda_": 10.0}  # see "Loss weight" in the docstring
TARGETS = {"instability_ratio_max": 0.7, "interpretability_ratio_min": 1.3, "drop_max": 1.0}
ARMS = ("plain", "plain_ft", "icnn")
KEYS = ("test_accuracy", "location_instability", "part_interpretability", "seconds_per_epoch")


def make_config(seed: int, plain: bool, epochs: int, lr: float, info: dict[str, Any]) -> RunConfig:
    """The RunConfig of one arm: ``icnn`` (plain or not) on the recipe's data and model."""
    name, model_opts = RECIPE["model"]
    opts = {"plain": True} if plain else dict(ICNN_OPTIONS)
    train = {**RECIPE["train"], "epochs": epochs, "lr": lr, "seed": seed}
    return RunConfig(
        data=DataConfig(**RECIPE["data"]),
        model=ModelConfig(name=name, options=dict(model_opts)),
        method=MethodConfig(name="icnn", options=opts),
        train=TrainConfig(**train),
        info=info,
    )


def run_arm(
    cfg: RunConfig, test: Any, train: Any, init: dict[str, torch.Tensor] | None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Train one arm (from ``init`` weights of the inference network if given); returns its
    figures and its trained weights."""
    seed_everything(cfg.train.seed)
    method = build_from_config(cfg)
    net = method.inference_model()
    if init is not None:  # a plain run's weights: no mask buffers, they stay uncalibrated
        net.load_state_dict(init)
    history = fit(method, train, None, cfg.train, cfg.data, progress=False)
    start = time.perf_counter()
    out: dict[str, Any] = {
        "test_accuracy": round(evaluate(net, test)["accuracy"], 5),
        "seconds_per_epoch": round(history.train_seconds / len(history.epochs), 3),
        "train_ce_last": round(history.epochs[-1]["train_ce"], 4),
    }
    out.update(part_metrics(net, method.analysis_layer(), test, max_images=None))
    if not cfg.method.options.get("plain"):
        pre = part_metrics(net, "icnn.relu", test, max_images=None)
        out["part_interpretability_premask"] = pre["part_interpretability"]
        out["location_instability_premask"] = pre["location_instability"]
        out["filter_mi_mean_last"] = round(history.epochs[-1]["train_filter_mi_mean"], 5)
        out["lambda"] = method.lambda_
        gain = method.icnn.mask.gain
        out["mask_gain_median"] = round(float(gain.median()), 3)
    out["eval_seconds"] = round(time.perf_counter() - start, 2)
    return out, copy.deepcopy(net.state_dict())


def run_seed(seed: int, n_train: int, n_test: int, epochs: int, ft_epochs: int) -> dict[str, Any]:
    """plain, then plain+ft and ICNN both fine-tuned from the plain run."""
    train = load_dataset("shapes", "train", seed=seed, n=n_train)
    test = load_dataset("shapes", "test", seed=seed, n=n_test)
    info = _info_dict(train)
    ft_lr = RECIPE["finetune"]["lr"]
    row: dict[str, Any] = {"seed": seed}
    row["plain"], plain_state = run_arm(
        make_config(seed, True, epochs, RECIPE["train"]["lr"], info), test, train, None
    )
    row["plain_ft"], _ = run_arm(
        make_config(seed, True, ft_epochs, ft_lr, info), test, train, plain_state
    )
    row["icnn"], _ = run_arm(
        make_config(seed, False, ft_epochs, ft_lr, info), test, train, plain_state
    )
    for arm in ARMS:
        print(
            f"seed {seed} {arm}: " + ", ".join(f"{k} {row[arm].get(k)}" for k in KEYS), flush=True
        )
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    extra = ("part_interpretability_premask", "location_instability_premask")
    for arm in ARMS:
        for key in (*KEYS, *extra):
            vals = [r[arm][key] for r in rows if r[arm].get(key) is not None]
            if vals:
                out[f"{arm}_{key}_mean"] = round(statistics.mean(vals), 5)
                out[f"{arm}_{key}_std"] = round(statistics.pstdev(vals), 5)

    def ratio(key: str, ref: str) -> float | None:
        a, b = out.get(f"icnn_{key}_mean"), out.get(f"{ref}_{key}_mean")
        return round(a / b, 3) if a is not None and b else None

    for ref, tag in (("plain_ft", ""), ("plain", "_vs_plain")):
        out[f"instability_ratio{tag}"] = ratio("location_instability", ref)
        out[f"interpretability_ratio{tag}"] = ratio("part_interpretability", ref)
    out["epoch_cost_ratio"] = ratio("seconds_per_epoch", "plain_ft")
    refs = [max(r["plain"]["test_accuracy"], r["plain_ft"]["test_accuracy"]) for r in rows]
    drops = [100 * (ref - r["icnn"]["test_accuracy"]) for ref, r in zip(refs, rows, strict=True)]
    out["reference_accuracy_mean"] = round(statistics.mean(refs), 5)
    out["accuracy_drop_points"] = round(statistics.mean(drops), 2)
    out["accuracy_drop_points_std"] = round(statistics.pstdev(drops), 2)
    li = [out["instability_ratio"], out["instability_ratio_vs_plain"]]
    pi = [out["interpretability_ratio"], out["interpretability_ratio_vs_plain"]]
    out["targets_met"] = {
        "location_instability": None not in li and max(li) <= TARGETS["instability_ratio_max"],
        "part_interpretability": None not in pi
        and min(pi) >= TARGETS["interpretability_ratio_min"],
        "accuracy": out["accuracy_drop_points"] <= TARGETS["drop_max"],
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny data, 1 + 1 epochs, 1 seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-train", type=int, default=RECIPE["n_train"], help="training images")
    ap.add_argument("--epochs", type=int, default=RECIPE["train"]["epochs"], help="plain run")
    ap.add_argument("--finetune-epochs", type=int, default=RECIPE["finetune"]["epochs"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    n_train, n_test, seeds = args.n_train, RECIPE["n_test"], args.seeds
    epochs, ft_epochs = args.epochs, args.finetune_epochs
    if args.smoke:
        n_train, n_test, seeds = SMOKE["n_train"], SMOKE["n_test"], [0]
        epochs, ft_epochs = SMOKE["epochs"], SMOKE["finetune_epochs"]
    start = time.perf_counter()
    rows = [run_seed(seed, n_train, n_test, epochs, ft_epochs) for seed in seeds]
    summary = summarise(rows)
    print({k: v for k, v in summary.items() if not k.endswith("_std")})
    if args.smoke:
        print("smoke run: results not written")
        return
    write_result(
        "icnn",
        {
            "protocol": "plain E epochs; plain+ft and icnn fine-tuned F epochs from it",
            "recipe": RECIPE,
            "n_train": n_train,
            "n_test": n_test,
            "epochs": epochs,
            "finetune_epochs": ft_epochs,
            "seeds": seeds,
            "icnn_options": ICNN_OPTIONS,
            "targets": TARGETS,
            "torch_threads": torch.get_num_threads(),
            "wall_seconds": round(time.perf_counter() - start, 1),
            "pairs": rows,
            "summary": summary,
        },
    )


if __name__ == "__main__":
    main()
