"""Adversarial-sample detection from interpretable features, next to the plain baselines.

For each seed, four networks are trained on ``mnist`` or ``shapes`` (one worker process per
seed, 1 thread):

- a standard network and a CSG network with the CSG benchmark's recipe (``benchmarks/csg.py``:
  same data, model, seed and budget);
- a dense network, fine-tuned once as it is and once decoupled, with the decoupling
  benchmark's recipe (``benchmarks/decoupling.py``: "dense" below is its dense+ft network,
  trained for as many epochs as the decoupled one).

On the same ``--n`` test images (spread evenly; the correctly classified ones are attacked)
and with the same attacks (FGSM, PGD, C&W through torchattacks), clean-vs-adversarial
detection is scored by ROC-AUC (:mod:`pellucid.apps.adversarial`): a cross-validated logistic
regression and random forest on each feature kind, and the unsupervised distance to the
predicted class's prototype. The comparisons the papers make:

- CSG (csg.md): CSG's gate-grouped activations (and its plain activations) vs the standard
  network's activations at the same layer;
- decoupling (decoupling.md): the decoupled network's calculation path vs the dense network's
  activations at the same (gated) layers;

and every network's logits, the baseline any classifier has.

    python benchmarks/adversarial.py [--dataset mnist] [--seeds 0 1 2] [--n 500] [--workers 2]
    python benchmarks/adversarial.py --eps 0.1 --attacks fgsm pgd --result adversarial_eps01
    python benchmarks/adversarial.py --attacks cw --attack-option cw.search_steps=5 \
        --result adversarial_cw_search

Results: benchmarks/results/adversarial.json (mnist), adversarial_shapes.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from _common import cached_run, write_result
from pellucid.cli.arguments import parse_named_options
from pellucid.errors import ConfigError

# dataset -> attack -> options: L-inf 0.2 on the grey digits (the MNIST convention is
# 0.1-0.3), 8/255 on the colour shapes (the CIFAR convention)
ATTACKS: dict[str, dict[str, dict[str, Any]]] = {
    "mnist": {
        "fgsm": {"eps": 0.2},
        "pgd": {"eps": 0.2, "alpha": 0.02, "steps": 20},
        "cw": {"c": 1.0, "steps": 100, "lr": 0.05},
    },
    "shapes": {
        "fgsm": {"eps": 8 / 255},
        "pgd": {"eps": 8 / 255, "alpha": 1 / 255, "steps": 20},
        "cw": {"c": 1.0, "steps": 100, "lr": 0.05},
    },
}
# run only when named in --attacks (e.g. --attacks cw cw-search: C&W at a fixed c and with
# the paper's binary search over c, on the same images)
OPTIONAL_ATTACKS: dict[str, dict[str, Any]] = {
    "cw-search": {"c": 1.0, "steps": 100, "lr": 0.05, "search_steps": 5},
}
DETECTORS = ("logistic", "forest", "prototype", "mahalanobis", "lid")
# network -> the feature kinds measured on it
FEATURES = {
    "standard": ["activations", "logits"],
    "csg": ["gate-groups", "activations", "logits"],
    "dense": ["activations", "logits"],
    "decoupled": ["path", "activations", "logits"],
}


def run_seed(dataset: str, seed: int, n: int, attacks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Train the four networks of one seed and score detection on each."""
    import torch

    import csg
    import decoupling
    from pellucid.apps.adversarial import detect_adversarial_run
    from pellucid.methods.controllers import gated_layers
    from pellucid.training.run import load_method

    torch.set_num_threads(1)
    runs, acc = {}, {}  # the runs live in the shared run cache (_common.cached_run)
    for name, opts in (("standard", {}), ("csg", csg.DEFAULT_OPTIONS)):
        config = csg.make_config(dataset, seed, name, opts, csg.MAIN_OVERRIDES)
        runs[name], metrics = cached_run(config)
        acc[name] = metrics["test_accuracy"]
    recipe = decoupling.RECIPES[dataset]
    # the dense network both fine-tunings start from
    first, _ = cached_run(decoupling._config(recipe, seed, "standard", False))
    for name, method in (("dense", "standard"), ("decoupled", "decoupling")):
        config = decoupling._config(recipe, seed, method, True).replace(init=str(first))
        runs[name], metrics = cached_run(config)
        acc[name] = metrics["test_accuracy"]

    method, _ = load_method(runs["decoupled"])
    gated = list(gated_layers(method.inference_model()))  # the dense net has the same names
    csg_layer = load_method(runs["csg"])[0].layer
    layers = {"standard": [csg_layer], "csg": None, "dense": gated, "decoupled": None}
    out: dict[str, Any] = {"seed": seed, "networks": {}}
    for name, run in runs.items():
        start = time.perf_counter()
        res = detect_adversarial_run(
            str(run),
            attacks,
            FEATURES[name],
            layers[name],
            device="cpu",
            n=n,
            seed=seed,
        )
        out["networks"][name] = {
            "test_accuracy": acc[name],
            "seconds": round(time.perf_counter() - start, 1),
            **res.to_dict(),
        }
        print(f"seed {seed} {name}: {res.table()}", flush=True)
    return out


# (label, network, feature) rows of the summary, grouped by the comparison they belong to
ROWS = (
    ("CSG", "csg", "gate-groups"),
    ("CSG", "csg", "activations"),
    ("CSG", "standard", "activations"),
    ("CSG", "csg", "logits"),
    ("CSG", "standard", "logits"),
    ("decoupling", "decoupled", "path"),
    ("decoupling", "decoupled", "activations"),
    ("decoupling", "dense", "activations"),
    ("decoupling", "decoupled", "logits"),
    ("decoupling", "dense", "logits"),
)


def _stats(values: list[float]) -> dict[str, float]:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.mean(values), 4), "std": round(spread, 4)}


def summarise(per_seed: list[dict[str, Any]], attacks: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"accuracy": {}, "success_rate": {}, "auc": []}
    for net in FEATURES:
        out["accuracy"][net] = _stats([s["networks"][net]["test_accuracy"] for s in per_seed])
        out["success_rate"][net] = {
            a: _stats([_report(s, net, a)["success_rate"] for s in per_seed]) for a in attacks
        }
    for group, net, feature in ROWS:
        row: dict[str, Any] = {"comparison": group, "network": net, "feature": feature}
        for a in attacks:
            for det in DETECTORS:
                values = [_report(s, net, a)["auc"][feature].get(det) for s in per_seed]
                if all(v is not None for v in values):
                    row[f"{a}/{det}"] = _stats(values)
        out["auc"].append(row)
    return out


def _report(seed_row: dict[str, Any], net: str, attack: str) -> dict[str, Any]:
    reports = seed_row["networks"][net]["attacks"]
    return next(r for r in reports if r["attack"] == attack)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="mnist", choices=sorted(ATTACKS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=500, help="test images per network")
    ap.add_argument("--workers", type=int, default=2, help="processes (1 thread each)")
    ap.add_argument(
        "--eps", type=float, help="another L-inf budget for FGSM and PGD (PGD steps of eps/10)"
    )
    ap.add_argument(
        "--attacks",
        nargs="+",
        help="a subset of the attacks (default: fgsm pgd cw), or cw-search too",
    )
    ap.add_argument(
        "--attack-option",
        action="append",
        metavar="ATTACK.K=V",
        help="change an attack's option, e.g. cw.search_steps=5 (C&W's binary search over c)",
    )
    ap.add_argument("--result", help="results name (default adversarial[_DATASET])")
    args = ap.parse_args()
    attacks = {a: dict(o) for a, o in ATTACKS[args.dataset].items()}
    if args.attacks:
        known = {**attacks, **{a: dict(o) for a, o in OPTIONAL_ATTACKS.items()}}
        unknown = [a for a in args.attacks if a not in known]
        if unknown:
            ap.error(f"--attacks: unknown attack {unknown[0]!r}; attacks: {', '.join(known)}")
        attacks = {a: known[a] for a in args.attacks}
    try:
        changed = parse_named_options(args.attack_option, "--attack-option", "ATTACK")
    except ConfigError as e:
        ap.error(str(e))
    for name, opts in changed.items():
        if name not in attacks:
            ap.error(f"--attack-option: attack {name!r} is not run; attacks: {', '.join(attacks)}")
        attacks[name].update(opts)
    if args.eps is not None:
        for name, opts in attacks.items():
            if "eps" in opts:
                opts["eps"] = args.eps
            if name == "pgd":
                opts["alpha"] = args.eps / 10
    start = time.perf_counter()
    jobs = [(args.dataset, s, args.n, attacks) for s in args.seeds]
    if args.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            per_seed = list(pool.map(run_seed, *zip(*jobs, strict=True)))
    else:
        per_seed = [run_seed(*job) for job in jobs]
    import csg
    import decoupling

    dataset = args.dataset
    write_result(
        args.result or ("adversarial" if dataset == "mnist" else f"adversarial_{dataset}"),
        {
            "dataset": dataset,
            "seeds": args.seeds,
            "n": args.n,
            "attacks": attacks,
            "features": FEATURES,
            "recipes": {
                "csg": {**csg.RECIPES[dataset], "overrides": csg.MAIN_OVERRIDES},
                "csg_options": csg.DEFAULT_OPTIONS,
                "decoupling": decoupling.RECIPES[dataset],
            },
            "protocol": "correctly classified test images attacked; successful attacks and "
            "their clean originals; logistic / forest: 5-fold grouped cross-validated ROC-AUC; "
            "prototype: ROC-AUC of the cosine distance to the predicted class's mean clean "
            "training features (unsupervised); mahalanobis: ROC-AUC of the Mahalanobis "
            "distance to the closest class mean, shared Ledoit-Wolf covariance of the same "
            "clean training features (unsupervised, Lee et al. 2018); lid: ROC-AUC of the "
            "local intrinsic dimensionality among the 20 nearest of the same clean training "
            "features (unsupervised, Ma et al. 2018, Eq. 3)",
            "wall_seconds": round(time.perf_counter() - start, 1),
            "per_seed": per_seed,
            "summary": summarise(per_seed, list(attacks)),
        },
    )


if __name__ == "__main__":
    main()
