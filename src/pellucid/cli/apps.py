"""CLI commands of the applications: ``pellucid localise``, ``pellucid detect-adversarial``."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pellucid.cli.arguments import Subparsers, common_output, parse_named_options, parse_options
from pellucid.errors import ConfigError, DataError, PellucidError
from pellucid.report.html_runs import (
    ADVERSARIAL_FILE,
    LOCALISATION_FILES,
    LOCALISATION_PROTOCOLS,
)

if TYPE_CHECKING:
    from pellucid.registry import Registry


def run_outputs(p: argparse.ArgumentParser, what: str, saved_as: str) -> None:
    """The flags every per-run application command shares: split, device, ``--out`` (one JSON
    for all runs) and ``--save`` (each run's result in ``RUN/saved_as``, for the report)."""
    p.add_argument("--split", default="test")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, help=f"write {what} to this JSON")
    p.add_argument(
        "--save",
        action="store_true",
        help=f"also write each run's result to RUN/{saved_as} (shown by pellucid report)",
    )
    common_output(p)


def each_run(
    args: argparse.Namespace,
    compute: Callable[[str], Any],
    as_dict: Callable[[Any], dict[str, Any]],
    saved_as: str,
) -> dict[str, Any]:
    """``compute(run)`` for every run of ``args.runs``, in order. With ``--save`` each
    result is written to ``RUN/saved_as`` as soon as it is done, so a later run's failure
    loses none of them; that failure names its run and the runs already finished. Every run
    directory is checked to exist before the first is computed."""
    from pellucid.io import write_json

    for run in args.runs:  # a typo in the last run name should not wait for the first
        if not (Path(run) / "config.yaml").is_file():
            raise DataError(f"{run!r} is not a run directory (no config.yaml)")
    results: dict[str, Any] = {}
    for run in args.runs:
        try:
            results[run] = compute(run)
        except PellucidError as err:
            done = ""
            if results:
                kept = f"; saved as RUN/{saved_as}" if args.save else ""
                done = f" (finished before it: {', '.join(results)}{kept})"
            raise type(err)(f"{run}: {err}{done}") from None
        if args.save:
            write_json(Path(run) / saved_as, as_dict(results[run]))
    if args.out is not None:
        write_json(args.out, {run: as_dict(r) for run, r in results.items()})
    return results


def add_localise(sub: Subparsers, explainers: Registry[Any]) -> None:
    from pellucid.apps.filter_localisation import ASSIGNMENTS

    p = sub.add_parser(
        "localise",
        help="object localisation of one or more runs (CSG paper: top-30 %% CAM IoU > 0.3)",
        description="For each run: the explainer's map of the true class on the test images, "
        "binarised at its top Q of pixels, IoU with the object mask; prints the mean IoU, the "
        "share of images with IoU > THRESHOLD (the CSG paper's score) and the pointing game. "
        "Give a standard and a CSG run to compare them on the same images. --protocol filters "
        "scores each filter of the true class instead (its activation map above its own top-Q "
        "quantile; share of (image, filter) pairs with IoU > 0.3), --protocol gradient the "
        "blurred input gradient of the class's M most active filters (share of images with "
        "IoU >= 0.2); both use REFERENCE training images for the class means and quantiles.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    p.add_argument(
        "--protocol",
        choices=LOCALISATION_PROTOCOLS,
        default="cam",
        help="cam (an explainer's map, default), filters (per-filter activation maps) or "
        "gradient (class-gradient maps)",
    )
    p.add_argument(
        "--explainer",
        default=None,
        choices=explainers.names(),
        help="--protocol cam: default gradcam (the CAM, at the run's analysis layer)",
    )
    p.add_argument("--option", action="append", metavar="K=V", help="explainer option")
    p.add_argument(
        "--n", type=int, default=None, help="N test images, spread evenly (default: all)"
    )
    p.add_argument(
        "--q",
        type=float,
        default=0.3,
        help="share of pixels kept; --protocol filters: share of each filter's reference "
        "activations above its threshold (default 0.3)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="IoU threshold (default 0.3; 0.2 for --protocol gradient, as in the paper)",
    )
    p.add_argument("--target", choices=("label", "predicted"), default="label")
    p.add_argument(
        "--assign",
        choices=ASSIGNMENTS,
        default="activation",
        help="--protocol filters: a filter's class is the one it is most active on "
        "(activation, default) or its CSG gates >= --gate-cut (gates, CSG runs)",
    )
    p.add_argument("--gate-cut", type=float, default=0.5, help="--assign gates (default 0.5)")
    p.add_argument(
        "--per-class",
        type=int,
        default=None,
        metavar="K",
        help="--protocol filters: every class gets exactly its K best filters (by gate, then "
        "by activation), so that runs are compared at the same filter count",
    )
    p.add_argument("--m", type=int, default=30, help="--protocol gradient: filters per class")
    p.add_argument(
        "--sigma", type=float, default=None, help="--protocol gradient: blur in px (side / 32)"
    )
    p.add_argument(
        "--reference",
        type=int,
        default=1000,
        help="training images for class means and quantiles (filters, gradient; default 1000)",
    )
    run_outputs(p, "the scores (per image too)", "localisation[_PROTOCOL].json")
    p.set_defaults(func=cmd_localise)


def cmd_localise(args: argparse.Namespace) -> dict[str, Any]:
    from pellucid.apps.filter_localisation import filter_localise_run
    from pellucid.apps.localisation import localise_run

    options = parse_options(args.option, "--option")
    if args.protocol != "cam" and (args.explainer is not None or options):
        raise ConfigError(f"--explainer and --option are for --protocol cam, not {args.protocol}")
    if args.per_class is not None and args.protocol != "filters":
        raise ConfigError(f"--per-class is for --protocol filters, not {args.protocol}")
    common = {"split": args.split, "device": args.device, "q": args.q, "n": args.n}
    common.update(target=args.target)

    def compute(run: str) -> Any:
        if args.protocol == "cam":
            threshold = 0.3 if args.threshold is None else args.threshold
            explainer = args.explainer or "gradcam"
            return localise_run(run, explainer, options, threshold=threshold, **common)
        return filter_localise_run(
            run,
            args.protocol,
            assign=args.assign,
            reference=args.reference,
            threshold=args.threshold,
            gate_cut=args.gate_cut,
            per_class=args.per_class,
            m=args.m,
            sigma=args.sigma,
            **common,
        )

    results = each_run(args, compute, vars, LOCALISATION_FILES[args.protocol])
    summaries = {run: r.summary() for run, r in results.items()}
    if not args.quiet and not args.json:
        _print_localisation(args.protocol, summaries)
    return summaries


def _print_localisation(protocol: str, summaries: dict[str, dict[str, Any]]) -> None:
    first = next(iter(summaries.values()))
    t = f"{first['threshold']:g}"
    if protocol == "filters":
        head = f"pairs IoU > {t} | images, any > {t}"
        print(f"| run | images | filters per class | mean IoU | {head} |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for run, s in summaries.items():
            per_class = s["filters_per_class"]
            print(
                f"| {run} | {s['n']} | {min(per_class)}-{max(per_class)} | {s['mean_iou']:.3f} "
                f"| {s['share_above']:.3f} | {s['share_images']:.3f} |"
            )
        return
    cmp = ">=" if protocol == "gradient" else ">"
    print(f"| run | protocol | images | mean IoU | IoU {cmp} {t} | pointing game |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for run, s in summaries.items():
        print(
            f"| {run} | {protocol} | {s['n']} | {s['mean_iou']:.3f} | {s['share_above']:.3f} | "
            f"{s['pointing_game']:.3f} |"
        )


def add_detect_adversarial(sub: Subparsers, attacks: Registry[Any]) -> None:
    from pellucid.apps.adversarial import ADAPTIVE_DETECTORS, FEATURES
    from pellucid.apps.detectors import DETECTORS, UNSUPERVISED

    p = sub.add_parser(
        "detect-adversarial",
        help="adversarial-sample detection from a run's paths / gate groups / activations",
        description="For each run: attack its correctly classified test images (torchattacks: "
        "FGSM, PGD, C&W), then score how well clean and successfully attacked images are told "
        "apart from the network's features -- the calculation path of a decoupled run, the "
        "gate-grouped activations of a CSG run, the layer activations and the logits of any "
        "run. ROC-AUC of a cross-validated logistic regression and random forest, and of the "
        "unsupervised distance to the predicted class's prototype, Mahalanobis distance to "
        "the closest class (Lee et al. 2018) and local intrinsic dimensionality among the 20 "
        "nearest clean training images (Ma et al. 2018) (1.0 = perfect, 0.5 = chance). Needs "
        "torchattacks (pip install --no-deps torchattacks==3.5.1).",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    p.add_argument(
        "--attack",
        action="append",
        choices=attacks.names(),
        help="attack (repeatable; default: all of " + ", ".join(attacks.names()) + ")",
    )
    p.add_argument(
        "--attack-option",
        action="append",
        metavar="ATTACK.K=V",
        help="an attack's option, e.g. pgd.eps=0.1, cw.c=5, or cw.search_steps=5 (C&W's "
        "binary search over c)",
    )
    p.add_argument(
        "--features",
        nargs="+",
        choices=FEATURES,
        help="feature kinds (default: the run's method: csg gate-groups, decoupling path; "
        "plus activations and logits)",
    )
    p.add_argument("--layer", action="append", help="layer(s) of the activations (repeatable)")
    p.add_argument(
        "--n",
        type=int,
        default=None,
        help="test images, spread evenly (default: 500, or all of a smaller split; a larger "
        "--n than the split has is warned about)",
    )
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument(
        "--detectors",
        nargs="+",
        choices=(*DETECTORS, *UNSUPERVISED),
        metavar="DETECTOR",
        help=f"the detectors scored, of {', '.join((*DETECTORS, *UNSUPERVISED))} (default: "
        "all; the forest is the slowest: 2-5 s per attack and feature kind on a CPU for "
        "60-450 successful attacks)",
    )
    p.add_argument(
        "--prototype-images",
        type=int,
        default=2000,
        help="clean training images the unsupervised detectors are fitted on (default 2000)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--adaptive",
        action="append",
        choices=ADAPTIVE_DETECTORS,
        help="also attack adaptively: PGD that lowers this detector's score too, on each "
        "feature kind (a path through its soft gates; repeatable; reported as "
        "adaptive-DETECTOR); logistic: the regression fitted on half the images against the "
        "first --attack, the other half attacked, its AUC reported as logistic-attacked; "
        "forest: the forest fitted so, attacked through that regression as a surrogate and "
        "judged by the forest (forest-attacked)",
    )
    p.add_argument(
        "--adaptive-option",
        action="append",
        metavar="K=V",
        help="adaptive attack option: eps (0.2), alpha (0.02), steps (40), weight (1), kappa "
        "(0), aim (low: as low a score as possible; median: the clean training median), "
        "temperature (1; the path's soft gates sigmoid(logit / temperature)), surrogate "
        "(--adaptive forest only: logistic, the default, or votes: a network fitted to the "
        "forest's votes)",
    )
    p.add_argument(
        "--two-sided",
        action="store_true",
        help="also score the unsupervised detectors two-sided (far from the clean training "
        "median in either direction), as DETECTOR-two-sided",
    )
    run_outputs(p, "the full results", ADVERSARIAL_FILE)
    p.set_defaults(func=cmd_detect_adversarial)


def attack_options(names: list[str], pairs: list[str] | None) -> dict[str, dict[str, Any]]:
    """``--attack-option ATTACK.K=V`` pairs -> attack name -> options, for ``names``."""
    from pellucid.errors import ConfigError

    given = parse_named_options(pairs, "--attack-option", "ATTACK")
    for attack in given:
        if attack not in names:
            raise ConfigError(
                f"--attack-option: attack {attack!r} is not run; attacks: {', '.join(names)}"
            )
    return {name: given.get(name, {}) for name in names}


def cmd_detect_adversarial(args: argparse.Namespace) -> dict[str, Any]:
    from pellucid.apps.adversarial import (
        ATTACKED,
        SUPERVISED_ADAPTIVE,
        TWO_SIDED,
        detect_adversarial_run,
    )
    from pellucid.apps.adversarial_report import MIN_PAIRS
    from pellucid.apps.detectors import DETECTORS, UNSUPERVISED
    from pellucid.registry import ATTACKS

    attacks = attack_options(args.attack or ATTACKS.names(), args.attack_option)
    adaptive_options = parse_options(args.adaptive_option, "--adaptive-option")

    def compute(run: str) -> Any:
        with warnings.catch_warnings():
            if args.n is None:  # the default 500 is "at most": a smaller split is no news
                warnings.filterwarnings("ignore", message=".* asked for$", category=UserWarning)
            return _detect(run)

    def _detect(run: str) -> Any:
        return detect_adversarial_run(
            run,
            attacks,
            args.features,
            args.layer,
            split=args.split,
            device=args.device,
            n=500 if args.n is None else args.n,
            folds=args.folds,
            prototype_images=args.prototype_images,
            seed=args.seed,
            adaptive=args.adaptive or (),
            adaptive_options=adaptive_options,
            two_sided=args.two_sided,
            detectors=args.detectors,
        )

    results = each_run(args, compute, lambda r: r.to_dict(), ADVERSARIAL_FILE)
    tables = {run: r.table() for run, r in results.items()}
    if not args.quiet and not args.json:
        chosen = {*(args.detectors or (*DETECTORS, *UNSUPERVISED)), *(args.adaptive or ())}
        detectors = tuple(d for d in (*DETECTORS, *UNSUPERVISED) if d in chosen)
        if args.two_sided:
            detectors += tuple(f"{d}{TWO_SIDED}" for d in UNSUPERVISED if d in chosen)
        detectors += tuple(
            f"{d}{ATTACKED}" for d in SUPERVISED_ADAPTIVE if d in (args.adaptive or ())
        )
        print(f"| run | attack | success | pairs | feature | {' | '.join(detectors)} |")
        print("| --- | --- | ---: | ---: | --- |" + " ---: |" * len(detectors))
        blank = False
        for run, rows in tables.items():
            for row in rows:
                aucs = " | ".join(_auc(row[k]) if k in row else "" for k in detectors)
                blank = blank or any(k in row and row[k] is None for k in detectors)
                print(
                    f"| {run} | {row['attack']} | {row['success_rate']:.3f} | {row['pairs']} | "
                    f"{row['feature']} | {aucs} |"
                )
        if blank:
            print(
                f"- : no AUC: fewer than {MIN_PAIRS} pairs (attacks that succeeded on correctly "
                f"classified images; supervised detectors: fewer than --folds {args.folds}), or "
                "no clean training images for that score; raise --n or the attack's strength, "
                "or lower --folds"
            )
    return tables


def _auc(value: float | None) -> str:
    """An AUC cell; ``-`` where there is none (too few pairs, or no clean training images)."""
    return "-" if value is None else f"{value:.3f}"
