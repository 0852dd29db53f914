"""CLI commands of the applications: ``pellucid localise``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pellucid.cli.arguments import common_output, parse_options


def add_localise(sub, explainers) -> None:
    p = sub.add_parser(
        "localise",
        help="object localisation of one or more runs (CSG paper: top-30 %% CAM IoU > 0.3)",
        description="For each run: the explainer's map of the true class on the test images, "
        "binarised at its top Q of pixels, IoU with the object mask; prints the mean IoU, the "
        "share of images with IoU > THRESHOLD (the CSG paper's score) and the pointing game. "
        "Give a standard and a CSG run to compare them on the same images.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    p.add_argument(
        "--explainer",
        default="gradcam",
        choices=explainers.names(),
        help="default gradcam (the CAM, at the run's analysis layer)",
    )
    p.add_argument("--option", action="append", metavar="K=V", help="explainer option")
    p.add_argument("--n", type=int, default=None, help="first N test images (default: all)")
    p.add_argument("--q", type=float, default=0.3, help="share of pixels kept (default 0.3)")
    p.add_argument("--threshold", type=float, default=0.3, help="IoU threshold (default 0.3)")
    p.add_argument("--target", choices=("label", "predicted"), default="label")
    p.add_argument("--split", default="test")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, help="write the scores (per image too) to this JSON")
    common_output(p)
    p.set_defaults(func=cmd_localise)


def cmd_localise(args: argparse.Namespace) -> dict[str, Any]:
    from pellucid.apps.localisation import localise_run
    from pellucid.io import write_json

    options = parse_options(args.option, "--option")
    results = {
        run: localise_run(
            run,
            args.explainer,
            options,
            split=args.split,
            device=args.device,
            q=args.q,
            threshold=args.threshold,
            target=args.target,
            n=args.n,
        )
        for run in args.runs
    }
    if args.out is not None:
        write_json(args.out, {run: vars(r) for run, r in results.items()})
    summaries = {run: r.summary() for run, r in results.items()}
    if not args.quiet and not args.json:
        print(f"| run | images | mean IoU | IoU > {args.threshold:g} | pointing game |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for run, s in summaries.items():
            print(
                f"| {run} | {s['n']} | {s['mean_iou']:.3f} | {s['share_above']:.3f} | "
                f"{s['pointing_game']:.3f} |"
            )
    return summaries
