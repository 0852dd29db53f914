"""Adaptive attacks on the adversarial detectors (Carlini & Wagner, AISec 2017).

``benchmarks/adversarial.py`` measures detection against an oblivious attacker, as both
papers do. Here the attacker knows the detector: for each seed, the standard and CSG
networks of the CSG benchmark's recipe (``benchmarks/csg.py``) and the decoupled network of
the decoupling benchmark's (``benchmarks/decoupling.py``, as in ``adversarial.py``) are
attacked on the same ``--n`` test images with

- ``pgd``: the adversarial benchmark's PGD (oblivious, cross-entropy);
- ``margin``: PGD on a C&W margin that stops pulling once the image is misclassified, then
  keeps the misclassified iterate the detector finds least suspicious -- the adaptive attack
  with the detector's weight at 0 (the control: what the margin and the selection alone do);
- ``adaptive``: the same with the detector's standardised score in the loss after half the
  steps (weight ``--weight``; :func:`pellucid.apps.adaptive.adaptive_pgd`), as low as
  possible;
- ``median``: the same, aiming at the clean training images' median score instead
  (``aim="median"``: the attacker a two-sided detector faces; unsupervised detectors, and
  the forest, whose surrogate's log-odds are aimed at their clean median),

each against each unsupervised detector (prototype, Mahalanobis, LID) and the supervised
logistic regression and random forest (fitted on the oblivious PGD of the images at even
positions; the odd ones are attacked, and the fitted detector is scored next to one
retrained by cross-validation on the adaptive attack itself; the forest, which has no
gradient, is attacked through the logistic regression fitted on the same images and judges
the kept iterates itself) on each feature kind
(CSG's gate groups, the decoupled network's calculation path -- attacked through its soft
gates --, the gated layer's activations, the logits). The score is the
attacked detector's ROC-AUC on the successful attacks (clean vs attacked), one-sided (high
score = attacked) and two-sided (:func:`pellucid.apps.detectors.two_sided_scores`: far from
the clean training median either way), next to the attack's success rate.

    python benchmarks/adaptive.py [--dataset mnist] [--seeds 0 1 2] [--n 300] [--workers 2]
        [--networks standard csg decoupled] [--detectors ...] [--result NAME]

Results: ``benchmarks/results/adaptive[_DATASET].json`` (or ``NAME.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from _common import RESULTS, cached_run, machine, result_lock, write_result

UNSUPERVISED = ("prototype", "mahalanobis", "lid")
SUPERVISED = ("logistic", "forest")  # fitted on half the images' PGD
DETECTORS = (*UNSUPERVISED, *SUPERVISED)
EARLIER_DETECTORS = (*UNSUPERVISED, "logistic")  # results written before the forest's attack
NETWORKS = ("standard", "csg", "decoupled")
FEATURES = {
    "standard": ["activations", "logits"],
    "csg": ["gate-groups", "activations", "logits"],
    "decoupled": ["path", "activations", "logits"],
}


def trained_networks(
    dataset: str, seed: int, networks: tuple[str, ...] = NETWORKS
) -> tuple[dict[str, Any], dict[str, float], list[str] | None]:
    """The named networks of one seed, trained or taken from the run cache (and those they
    need: CSG's gated layer names the standard network's activations): run directories,
    test accuracies, and the gated layer (None without a standard or CSG network)."""
    import csg
    import decoupling
    from pellucid.training.run import load_method

    runs, accuracy = {}, {}
    for name, opts in (("standard", {}), ("csg", csg.DEFAULT_OPTIONS)):
        if name in networks or (name == "csg" and "standard" in networks):
            config = csg.make_config(dataset, seed, name, opts, csg.MAIN_OVERRIDES)
            runs[name], metrics = cached_run(config)  # shared with the other benchmarks
            accuracy[name] = metrics["test_accuracy"]
    if "decoupled" in networks:  # adversarial.py's decoupled network
        recipe = decoupling.RECIPES[dataset]
        first, _ = cached_run(decoupling._config(recipe, seed, "standard", False))
        config = decoupling._config(recipe, seed, "decoupling", True).replace(init=str(first))
        runs["decoupled"], metrics = cached_run(config)
        accuracy["decoupled"] = metrics["test_accuracy"]
    # the standard network's activations: the layer CSG gates
    gated = [load_method(runs["csg"])[0].layer] if "csg" in runs else None
    return runs, accuracy, gated


def run_seed(
    dataset: str, seed: int, n: int, weight: float, networks: tuple[str, ...] = NETWORKS,
    detectors: tuple[str, ...] = DETECTORS, surrogate: str = "logistic",
) -> dict[str, Any]:  # fmt: skip
    """Train the named networks of one seed (and those they need); every attack on each of
    the named ``detectors``."""
    import torch

    from adversarial import ATTACKS
    from pellucid.apps.adversarial import ATTACKED, TWO_SIDED, detect_adversarial_run

    torch.set_num_threads(1)
    pgd = ATTACKS[dataset]["pgd"]
    options = {"eps": pgd["eps"], "alpha": pgd["alpha"], "steps": 2 * pgd["steps"]}
    out: dict[str, Any] = {"seed": seed, "networks": {}}
    runs, accuracy, gated = trained_networks(dataset, seed, networks)
    for name, run in runs.items():
        if name not in networks:
            continue
        rows = {}
        for label, w, aim in (("margin", 0.0, "low"), ("adaptive", weight, "low"),
                              ("median", weight, "median")):  # fmt: skip
            # aimed at the median: the unsupervised detectors (two-sided), and the forest,
            # whose surrogate's log-odds are aimed there (the forest still keeps the iterate)
            aimed = (*UNSUPERVISED, "forest")
            attacked = [d for d in detectors if label != "median" or d in aimed]
            if not attacked:
                continue
            start = time.perf_counter()
            res = detect_adversarial_run(
                str(run),
                {"pgd": pgd},  # the oblivious PGD; also what the logistic detector is fitted on
                FEATURES[name],
                gated if name != "decoupled" else None,  # decoupled: its gated layers
                device="cpu",
                n=n,
                seed=seed,
                adaptive=attacked,
                adaptive_options={**options, "weight": w, "aim": aim}
                | ({"surrogate": surrogate} if "forest" in attacked else {}),
                two_sided=True,
            )
            for r in res.attacks:
                if r.attack == "pgd":
                    for kind, scores in r.auc.items():
                        rows[f"pgd/{kind}"] = {"success_rate": r.success_rate, **scores}
                elif r.attack.startswith("adaptive-"):
                    det = r.attack.removeprefix("adaptive-")
                    kind = r.options["feature"]
                    auc = r.auc[kind]
                    row = {"success_rate": r.success_rate, "linf": r.linf}
                    if det in SUPERVISED:  # the fitted detector, and one retrained on these
                        row |= {det: auc[f"{det}{ATTACKED}"], f"{det}-retrained": auc[det]}
                    else:
                        row |= {det: auc[det], f"{det}{TWO_SIDED}": auc[f"{det}{TWO_SIDED}"]}
                    rows[f"{label}-{det}/{kind}"] = row
            print(f"seed {seed} {name} {label}: {time.perf_counter() - start:.0f} s", flush=True)
        out["networks"][name] = {
            "test_accuracy": accuracy[name],
            "layers": res.layers,
            "rows": rows,
        }
    return out


def _stats(values: list[float]) -> dict[str, float]:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.mean(values), 4), "std": round(spread, 4)}


def summarise(
    per_seed: list[dict[str, Any]], detectors: tuple[str, ...] = DETECTORS
) -> list[dict[str, Any]]:
    """One row per network, feature kind and detector: its AUC under each attack
    (``ATTACK``: one-sided, ``ATTACK_two_sided``: two-sided)."""
    rows = []
    for net, kinds in FEATURES.items():
        if not all(net in s["networks"] for s in per_seed):
            continue
        for kind in kinds:
            for det in detectors:
                row: dict[str, Any] = {"network": net, "feature": kind, "detector": det}
                for attack in ("pgd", "margin", "adaptive", "median"):
                    key = f"pgd/{kind}" if attack == "pgd" else f"{attack}-{det}/{kind}"
                    cells = [s["networks"][net]["rows"].get(key) for s in per_seed]
                    if not all(c is not None and c.get(det) is not None for c in cells):
                        continue
                    row[attack] = _stats([c[det] for c in cells])
                    row[f"{attack}_success"] = _stats([c["success_rate"] for c in cells])
                    for suffix in ("two-sided", "retrained"):
                        values = [c.get(f"{det}-{suffix}") for c in cells]
                        if all(v is not None for v in values):
                            row[f"{attack}_{suffix.replace('-', '_')}"] = _stats(values)
                rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "shapes"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=300, help="test images per network")
    ap.add_argument("--workers", type=int, default=2, help="processes (1 thread each)")
    ap.add_argument("--weight", type=float, default=1.0, help="the detector term's weight")
    ap.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    ap.add_argument(
        "--detectors",
        nargs="+",
        choices=DETECTORS,
        default=list(DETECTORS),
        help="the detectors attacked (default: all; the oblivious PGD scores every one)",
    )
    ap.add_argument(
        "--surrogate",
        choices=["logistic", "votes"],
        default="logistic",
        help="what the attack on the forest descends: the logistic regression fitted on the "
        "same images, or a network fitted to the forest's votes (forest_surrogate)",
    )
    ap.add_argument("--result", help="result name (default: adaptive[_DATASET])")
    ap.add_argument(
        "--update",
        action="store_true",
        help="replace only --networks in the existing result (same dataset, seeds, n and "
        "weight); the others keep the rows of the run that measured them",
    )
    args = ap.parse_args()
    name = args.result or ("adaptive" if args.dataset == "mnist" else f"adaptive_{args.dataset}")
    _updated(name, args)  # checked before the work; read again (under a lock) after it
    start = time.perf_counter()
    networks = tuple(args.networks)
    # one job per seed and network, so that the workers stay busy to the end
    detectors = tuple(args.detectors)
    jobs = [
        (args.dataset, s, args.n, args.weight, (net,), detectors, args.surrogate)
        for s in args.seeds
        for net in networks
    ]
    if args.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            parts = list(pool.map(run_seed, *zip(*jobs, strict=True)))
    else:
        parts = [run_seed(*job) for job in jobs]
    per_seed = []
    for seed in args.seeds:
        nets = {k: v for p in parts if p["seed"] == seed for k, v in p["networks"].items()}
        per_seed.append({"seed": seed, "networks": nets})
    from adversarial import ATTACKS

    pgd = ATTACKS[args.dataset]["pgd"]
    wall = round(time.perf_counter() - start, 1)
    with result_lock(name):  # another --update process may have written since
        old = _updated(name, args)
        history = {}
        if old is not None:  # the other networks' rows, and how they were measured
            for kept, new in zip(old["per_seed"], per_seed, strict=True):
                new["networks"] = {**kept["networks"], **new["networks"]}
            earlier = old.get("history") or [
                {k: old[k] for k in ("command", "networks", "wall_seconds")}
                | {"date": old["machine"]["date"]}
            ]
            this = {"command": " ".join(sys.argv), "networks": list(networks), "wall_seconds": wall}
            history = {"history": [*earlier, {**this, "date": machine()["date"]}]}
            networks = tuple(dict.fromkeys([*old["networks"], *networks]))
        write_result(
            name,
            {
                **history,
                "dataset": args.dataset,
                "networks": list(networks),
                "seeds": args.seeds,
                "n": args.n,
                "detectors": list(detectors),
                **({"surrogate": args.surrogate} if "forest" in detectors else {}),
                "pgd": pgd,
                "adaptive": {
                    "eps": pgd["eps"],
                    "alpha": pgd["alpha"],
                    "steps": 2 * pgd["steps"],
                    "weight": args.weight,
                    "kappa": 0.0,
                    "aims": ["low", "median"],
                },  # fmt: skip
                "per_seed": per_seed,
                "summary": summarise(per_seed, detectors),
                "wall_seconds": wall if old is None else round(old["wall_seconds"] + wall, 1),
            },
        )


def _updated(name: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """With ``--update``, the saved result ``name`` the run's networks replace rows of,
    checked to be of the same dataset, seeds, n, weight and detectors; else None."""
    if not args.update:
        return None
    old = json.loads((RESULTS / f"{name}.json").read_text())
    detectors = old.get("detectors", list(EARLIER_DETECTORS))
    same = (old["dataset"], old["seeds"], old["n"], old["adaptive"]["weight"], detectors)
    if same != (args.dataset, args.seeds, args.n, args.weight, args.detectors):
        raise SystemExit(f"--update: {name}.json measured {same}, not this run's settings")
    return old


if __name__ == "__main__":
    main()
