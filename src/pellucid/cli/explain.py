"""The explanation sub-commands: ``pellucid explain`` (one explainer: overlays, maps and
per-image metrics) and ``pellucid compare-explainers`` (every explainer on the same images,
one table)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pellucid.cli.arguments import (
    Subparsers,
    common_output,
    explainer_choice,
    image_choice,
    parse_named_options,
    parse_options,
)

if TYPE_CHECKING:
    from pellucid.registry import Registry


def add_explain(sub: Subparsers, explainers: Registry[Any]) -> None:
    p = sub.add_parser("explain", help="explain test images of a run: overlays, maps, metrics")
    p.add_argument("run", help="run directory")
    p.add_argument("--explainer", default="neuromask", choices=explainers.names())
    p.add_argument("--option", action="append", metavar="K=V", help="explainer option")
    image_choice(p, 16)
    p.add_argument("--dataset", help="explain images of another dataset (default: the run's)")
    p.add_argument("--data-option", action="append", metavar="K=V")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument(
        "--target", default="predicted", choices=["predicted", "label"], help="class to explain"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="directory to write")
    common_output(p)
    p.set_defaults(func=cmd_explain)


# below this probability of the explained class the summary points the images out: on
# cluttered-mnist NeuroMask's pointing misses were on such images
# (docs/explainer-benchmarks.md, "On test images nobody looked at")
LOW_PROBABILITY = 0.05


def cmd_explain(args: argparse.Namespace) -> dict[str, Any]:
    from pellucid.explain.run import explain_run

    result = explain_run(
        args.run,
        Path(args.out),
        explainer=args.explainer,
        options=parse_options(args.option, "--option"),
        n=args.n,
        dataset=args.dataset,
        dataset_options=parse_options(args.data_option, "--data-option"),
        split=args.split,
        target=args.target,
        device=args.device,
        progress=not (args.quiet or args.json),
        images=args.images,
    )
    if not args.quiet and not args.json:
        for key, value in result["summary"].items():
            print(f"{key:>22}  {value}")
        low = [i for i, p in enumerate(result["target_probability"]) if p < LOW_PROBABILITY]
        if low:
            print(
                f"note: {len(low)} of {len(result['target_probability'])} images explain a class "
                f"the model gives < {LOW_PROBABILITY:.0%} (positions {low[:10]}"
                f"{', ...' if len(low) > 10 else ''}); their maps are the least reliable "
                "(target_probability in metrics.json)"
            )
        print(f"wrote {args.out}")
    return result["summary"]


def add_compare_explainers(sub: Subparsers, explainers: Registry[Any]) -> None:
    p = sub.add_parser(
        "compare-explainers", help="every explainer on the same images of a run: one table"
    )
    p.add_argument("run", help="run directory")
    explainer_choice(p, explainers, 32, "default: all except neuromask-reference (slow; add it)")
    p.add_argument("--dataset", help="images of another dataset (default: the run's)")
    p.add_argument("--data-option", action="append", metavar="K=V")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--target", default="label", choices=["label", "predicted"])
    p.add_argument("--sanity", action="store_true", help="add the model-randomisation check")
    p.add_argument(
        "--road",
        action="store_true",
        help="add ROAD deletion (pixels imputed from their neighbours; the slowest score)",
    )
    p.add_argument(
        "--against",
        metavar="EXPLAINER",
        help="add every other explainer's score minus this one's, with a paired bootstrap "
        "95%% interval over the images",
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--out",
        help="directory for compare.json, compare.md, gallery.png (default RUN/explanations, "
        "where `pellucid report` finds them)",
    )
    common_output(p)
    p.set_defaults(func=cmd_compare_explainers)


def cmd_compare_explainers(args: argparse.Namespace) -> dict[str, Any]:
    from pellucid.explain.run import compare_run

    per = parse_named_options(args.option, "--option")
    result = compare_run(
        args.run,
        explainers=args.explainers,
        options=per,
        n=args.n,
        dataset=args.dataset,
        dataset_options=parse_options(args.data_option, "--data-option"),
        split=args.split,
        target=args.target,
        sanity=args.sanity,
        against=args.against,
        images=args.images,
        road=args.road,
        out=Path(args.out) if args.out else Path(args.run) / "explanations",
        device=args.device,
        progress=not (args.quiet or args.json),
    )
    if not args.quiet and not args.json:
        print(result["table"])
        print(f"wrote {args.out or Path(args.run) / 'explanations'}")
    return result["rows"]


def add_sanity_check(sub: Subparsers, explainers: Registry[Any]) -> None:
    from pellucid.explain.sanity import CHECKS, SANITY_DIR

    p = sub.add_parser(
        "sanity-check",
        help="do the explainers' maps depend on the model? (Adebayo et al. 2018)",
        description="Explain the same test images with the trained model and with damaged "
        "copies: all weights re-initialised (full), the blocks re-initialised from the output "
        "towards the input (cascading) or one at a time (independent), and a model trained on "
        "permuted labels (data; give --random-label-run). Prints the mean Spearman rank "
        "correlation of each image's two maps per explainer and check (lower is better).",
    )
    p.add_argument("run", help="run directory")
    explainer_choice(p, explainers, 16, "default: all except neuromask-reference")
    p.add_argument(
        "--checks",
        nargs="+",
        choices=list(CHECKS),
        default=["full", "cascading"],
        help="default: full cascading (data is added with --random-label-run)",
    )
    p.add_argument(
        "--random-label-run",
        metavar="RUN",
        help="the same model and data trained with `pellucid train ... --random-labels`",
    )
    p.add_argument(
        "--layers",
        nargs="+",
        help="blocks in the order the cascade randomises them (default: every block with "
        "parameters, last to first; `pellucid models` lists the names)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the re-initialisation")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--target", default="label", choices=["label", "predicted"])
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--out",
        help=f"directory for sanity.json, sanity.md and the figures (default RUN/{SANITY_DIR}, "
        "where `pellucid report` finds them)",
    )
    common_output(p)
    p.set_defaults(func=cmd_sanity_check)


def cmd_sanity_check(args: argparse.Namespace) -> dict[str, Any]:
    from pellucid.explain.sanity import SANITY_DIR, sanity_run

    out = Path(args.out) if args.out else Path(args.run) / SANITY_DIR
    result = sanity_run(
        args.run,
        explainers=args.explainers,
        options=parse_named_options(args.option, "--option", "EXPLAINER"),
        n=args.n,
        checks=args.checks,
        random_label_run=args.random_label_run,
        layers=args.layers,
        seed=args.seed,
        split=args.split,
        target=args.target,
        images=args.images,
        out=out,
        device=args.device,
        progress=not (args.quiet or args.json),
    )
    if not args.quiet and not args.json:
        print(result["table"])
        print(f"wrote {out}")
    return {k: v for k, v in result.items() if k != "table"}
