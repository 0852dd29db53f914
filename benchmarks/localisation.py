"""Object localisation, standard vs Class-Specific Gates, side by side (CSG paper, Sec. 4.3).

For each seed, a standard and a CSG network are trained with the CSG benchmark's recipe
(``benchmarks/csg.py``: same data, model, seed and budget) on ``shapes``, the bundled
dataset with object masks. On every test image, the Grad-CAM (= CAM for this GAP + linear
head) of the true class at the gated layer is binarised at its top 30 % of pixels; the
scores are the mean IoU with the object mask, the share of images with IoU > 0.3 (the
paper's score) and the pointing game, next to the always-centre control on the same images.
The objects of ``shapes`` cover 1-11 % of the image (4.6 % on average), so the top 30 %
of a map can reach IoU 0.3 only on the largest; the scores are also given with the top 5 %
(about the mean object area).

The paper's two other protocols use the network's own filters
(:mod:`pellucid.apps.filter_localisation`), on the same images and networks: per-filter
activation maps above each filter's top-q quantile (filters given classes by their class
means -- both networks -- or by the CSG gates), and the blurred input gradient of each
class's 30 most active filters (share of images with IoU >= 0.2). Class means and quantiles
come from 1000 training images. The per-filter protocol is also run count-matched: every
class gets exactly its ``PER_CLASS`` best filters (256 filters / 8 classes = 32), since the
share of images localised by *some* filter grows with the number of filters a class has.

    python benchmarks/localisation.py [--seeds 0 1 2] [--dataset shapes]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from _common import cached_run, write_result
from csg import DEFAULT_OPTIONS, MAIN_OVERRIDES, RECIPES, make_config
from pellucid.apps.filter_localisation import filter_localise_run
from pellucid.apps.localisation import localise_run

QS = (0.3, 0.05)  # the paper's share of pixels kept, and about the objects' mean area
FILTER_KEYS = ("mean_iou", "share_above", "share_images")
GRADIENT_KEYS = ("mean_iou", "share_above", "pointing_game")
PER_CLASS = 32  # count-matched per-filter protocol: filters / classes on shapes' layer


def scores(run: Path, explainer: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for q in QS:
        res = localise_run(str(run), explainer, device="cpu", q=q).summary()
        out.update({f"mean_iou@{q}": res["mean_iou"], f"share_above@{q}": res["share_above"]})
        out.update(pointing_game=res["pointing_game"], n=res["n"], layer=res["layer"])
    return out


def own_filters(run: Path, method: str) -> dict[str, Any]:
    """The per-filter and class-gradient protocols, flat keys ``PROTOCOL:SCORE@q``."""
    out: dict[str, Any] = {}
    assigns = ("activation", "gates") if method == "csg" else ("activation",)
    for q in QS:
        for assign in assigns:
            for per_class, name in ((None, assign), (PER_CLASS, f"{assign}-k{PER_CLASS}")):
                res = filter_localise_run(
                    str(run), "filters", assign, device="cpu", q=q, per_class=per_class
                ).summary()
                out.update({f"filters-{name}:{k}@{q}": res[k] for k in FILTER_KEYS})
                out[f"filters-{name}:filters_per_class"] = res["filters_per_class"]
        res = filter_localise_run(str(run), "gradient", device="cpu", q=q).summary()
        out.update({f"gradient:{k}@{q}": res[k] for k in GRADIENT_KEYS})
        out["gradient:options"] = res["options"]
    return out


def one_seed(dataset: str, seed: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for method, opts in (("standard", {}), ("csg", DEFAULT_OPTIONS)):
        config = make_config(dataset, seed, method, opts, MAIN_OVERRIDES)
        run, metrics = cached_run(config)
        rows[method] = {**scores(run, "gradcam"), "test_accuracy": metrics["test_accuracy"]}
        rows[method].update(own_filters(run, method))
        if method == "standard":  # the control does not depend on the model
            rows["centre"] = scores(run, "centre")
        print(dataset, seed, method, rows[method])
    return rows


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in per_seed[0]:
        out[name] = {}
        numeric = [k for k, v in per_seed[0][name].items() if isinstance(v, float)]
        for key in numeric:
            values = [s[name][key] for s in per_seed if key in s[name]]
            if values:
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                mean = round(statistics.mean(values), 4)
                out[name][key] = {"mean": mean, "std": round(spread, 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="shapes", choices=["shapes"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    start = time.perf_counter()
    per_seed = [one_seed(args.dataset, seed) for seed in args.seeds]
    write_result(
        "localisation",
        {
            "dataset": args.dataset,
            "seeds": args.seeds,
            "recipe": RECIPES[args.dataset],
            "overrides": {"model": list(MAIN_OVERRIDES["model"])},
            "csg_options": DEFAULT_OPTIONS,
            "qs": list(QS),
            "protocol": "Grad-CAM of the true class at the gated layer, its top q of pixels, "
            "IoU with the object mask; share of images with IoU > 0.3",
            "filter_protocols": "filters: each filter of the true class (by class means, or "
            "CSG gates >= 0.5), its upsampled map above its top-q quantile over 1000 training "
            "images, IoU with the mask; share of (image, filter) pairs with IoU > 0.3 and of "
            f"images with one such filter; count-matched (-k{PER_CLASS}): each class's "
            f"{PER_CLASS} best filters (by gate, then class mean minus the filter's mean). "
            "gradient: |d/dx| of the pooled activation of the "
            "class's 30 most active filters, blurred (sigma 2 px), top q of pixels; share of "
            "images with IoU >= 0.2",
            "per_seed": per_seed,
            "summary": summarise(per_seed),
            "wall_seconds": round(time.perf_counter() - start, 1),
        },
    )


if __name__ == "__main__":
    main()
