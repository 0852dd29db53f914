"""Does a detector that an adaptive attacker did not evade hold against a stronger attacker?

``benchmarks/adaptive.py`` attacks every detector with one budget (twice the oblivious PGD's
steps, the detector's weight 1). One detector held there on mnist: LID on the decoupled
network's activations (0.76 against 0.96 under the control). A detector that holds against
one attack may only face a weak attack (Carlini & Wagner, AISec 2017; Tramer et al.,
NeurIPS 2020), so this study gives the same attacker (:func:`pellucid.apps.adaptive.adaptive_pgd`,
same eps and step size) more steps and a larger weight on the detector's standardised score,
and measures, on the same ``--n`` test images of each seed's network,

- the control: the same steps with weight 0 (the margin and the selection of the least
  suspicious misclassified iterate alone);
- the adaptive attack at each ``--weights`` value,

for each ``--steps`` budget: the detector's ROC-AUC on the successful attacks, one-sided and
two-sided (:func:`pellucid.apps.detectors.two_sided_scores`), and the success rate. A
supervised ``--detector`` (``logistic``, ``forest``) is fitted and attacked as in
``adaptive.py``; its AUC is the fitted detector's, next to one retrained on the attack.

    python benchmarks/adaptive_strength.py [--dataset mnist] [--network decoupled]
        [--feature activations] [--detector lid] [--steps 40 200] [--weights 1 10]
        [--seeds 0 1 2] [--n 300] [--workers 2]

Results: ``benchmarks/results/adaptive_strength[_DATASET].json`` (or ``--result NAME``).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from _common import machine, write_result
from adaptive import DETECTORS, FEATURES, NETWORKS, SUPERVISED, _stats


def run_seed(
    dataset: str,
    seed: int,
    n: int,
    network: str,
    feature: str,
    detector: str,
    steps: list[int],
    weights: list[float],
    surrogate: str = "logistic",
) -> dict[str, Any]:
    """One seed's network; the control and each weight at each step budget."""
    import torch

    from adaptive import trained_networks
    from adversarial import ATTACKS
    from pellucid.apps.adversarial import ATTACKED, TWO_SIDED, detect_adversarial_run

    torch.set_num_threads(1)
    pgd = ATTACKS[dataset]["pgd"]
    runs, accuracy, gated = trained_networks(dataset, seed, (network,))
    layers = gated if network != "decoupled" else None  # decoupled: its gated layers
    rows = []
    for k in steps:
        for w in (0.0, *weights):
            start = time.perf_counter()
            res = detect_adversarial_run(
                str(runs[network]),
                {"pgd": pgd},
                [feature],
                layers,
                device="cpu",
                n=n,
                seed=seed,
                adaptive=[detector],
                adaptive_options={
                    "eps": pgd["eps"],
                    "alpha": pgd["alpha"],
                    "steps": k,
                    "weight": w,
                }
                | ({"surrogate": surrogate} if detector == "forest" else {}),  # fmt: skip
                two_sided=True,
            )
            (report,) = (r for r in res.attacks if r.attack == f"adaptive-{detector}")
            auc = report.auc[feature]
            row = {"steps": k, "weight": w, "success_rate": report.success_rate}
            row["pairs"] = report.pairs
            if detector in SUPERVISED:  # the fitted detector, and one retrained on the attack
                row |= {"auc": auc[f"{detector}{ATTACKED}"], "auc_retrained": auc[detector]}
            else:
                row |= {"auc": auc[detector], "auc_two_sided": auc[f"{detector}{TWO_SIDED}"]}
            rows.append(row)
            seconds = time.perf_counter() - start
            print(f"seed {seed} steps {k} weight {w}: {row['auc']} ({seconds:.0f} s)")
    return {"seed": seed, "test_accuracy": accuracy[network], "rows": rows}


def summarise(per_seed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds of each (steps, weight) cell."""
    cells: dict[tuple[int, float], dict[str, list[float]]] = {}
    for seed in per_seed:
        for row in seed["rows"]:
            cell = cells.setdefault((row["steps"], row["weight"]), {})
            for key in ("auc", "auc_two_sided", "auc_retrained", "success_rate"):
                if row.get(key) is not None:
                    cell.setdefault(key, []).append(row[key])
    return [
        {"steps": k, "weight": w, **{key: _stats(v) for key, v in cell.items()}}
        for (k, w), cell in sorted(cells.items())
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "shapes"])
    ap.add_argument("--network", default="decoupled", choices=NETWORKS)
    ap.add_argument("--feature", default="activations")
    ap.add_argument(
        "--detector",
        default="lid",
        choices=DETECTORS,
        help="logistic / forest: fitted on half the images' oblivious PGD, the other half "
        "attacked (the forest through the regression as a surrogate), as in adaptive.py",
    )
    ap.add_argument(
        "--surrogate",
        choices=["logistic", "votes"],
        default="logistic",
        help="--detector forest: what the attack descends (as in adaptive.py)",
    )
    ap.add_argument("--steps", type=int, nargs="+", default=[40, 200])
    ap.add_argument("--weights", type=float, nargs="+", default=[1.0, 10.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=300, help="test images per network")
    ap.add_argument("--workers", type=int, default=2, help="processes (1 thread each)")
    ap.add_argument("--result", help="result name (default: adaptive_strength[_DATASET])")
    args = ap.parse_args()
    if args.feature not in FEATURES[args.network]:
        ap.error(f"--feature: the {args.network} network has {', '.join(FEATURES[args.network])}")
    if min(args.steps) < 1 or min(args.weights) <= 0:
        ap.error("--steps must be >= 1 and --weights > 0 (weight 0, the control, always runs)")
    start = time.perf_counter()
    job = (args.network, args.feature, args.detector, args.steps, args.weights, args.surrogate)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(run_seed, args.dataset, s, args.n, *job) for s in args.seeds]
        per_seed = [f.result() for f in futures]
    from adversarial import ATTACKS

    pgd = ATTACKS[args.dataset]["pgd"]
    result = {
        "command": "adaptive_strength.py " + " ".join(sys.argv[1:]),
        "dataset": args.dataset,
        "network": args.network,
        "feature": args.feature,
        "detector": args.detector,
        **({"surrogate": args.surrogate} if args.detector == "forest" else {}),
        "seeds": args.seeds,
        "n": args.n,
        "attack": {"eps": pgd["eps"], "alpha": pgd["alpha"], "kappa": 0.0, "aim": "low"},
        "machine": machine(),
        "per_seed": per_seed,
        "summary": summarise(per_seed),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    suffix = "" if args.dataset == "mnist" else f"_{args.dataset}"
    path = write_result(args.result or f"adaptive_strength{suffix}", result)
    for cell in result["summary"]:
        auc = cell.get("auc", {})
        print(f"steps {cell['steps']:>4} weight {cell['weight']:>5}: AUC {auc.get('mean')} "
              f"± {auc.get('std')}")  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
