"""How much the tie order of the deletion/insertion scores moves the benchmark's figures.

Until 2026-12-08 ``pellucid.metrics.deletion_insertion`` broke ties between equal map values
with one random permutation per *row of the batch*, and seeded ROAD's noise per (image,
step), so an image's score depended on the batch it was scored in. Now one seeded
permutation serves every image and ROAD's noise is seeded per step. This script re-scores
the explainer benchmark's maps both ways:

- black / mean-fill deletion and insertion (64 steps) on the benchmark's 300 images
  (``spread_images``) and shipped models, for ``--explainers``;
- ROAD deletion on the ROAD study's images and steps (``results/explainers_road.json``),
  for ``--road-explainers``; the old per-(image, step) seeds are reproduced by scoring each
  image alone with its old seed offsets (with today's tie order, so the old ROAD column is
  the old noise, not the old order).

    python benchmarks/tie_order.py [--datasets shapes] [--explainers occlusion gradcam]

Results: ``benchmarks/results/tie_order.json`` (per dataset and explainer: old mean, new
mean, largest per-image difference).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from _common import RESULTS, machine, write_result


def old_rank(maps: torch.Tensor, seed: int) -> torch.Tensor:
    """The removal ranks as computed until 2026-12-08: one permutation per batch row."""
    n, hw = maps.shape
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.rand(n, hw, generator=gen, dtype=torch.float64).argsort(dim=1, stable=True)
    vals = torch.gather(maps.cpu(), 1, perm)
    order = torch.gather(perm, 1, vals.argsort(dim=1, descending=True, stable=True))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(hw).expand(n, hw).contiguous())
    return rank


def _row(old: torch.Tensor, new: torch.Tensor) -> dict[str, float]:
    return {
        "old": round(float(old.mean()), 4),
        "new": round(float(new.mean()), 4),
        "max_abs_image": round(float((old - new).abs().max()), 4),
    }


def curves(model: Any, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor) -> dict:
    import pellucid.metrics.curves as curves_module
    import pellucid.metrics.faithfulness as faith

    new_rank, res = curves_module.removal_rank, {}
    try:
        for label, fn in (("old", old_rank), ("new", new_rank)):
            faith.removal_rank = fn
            res[label] = {
                "deletion_auc": faith.deletion_auc(model, x, maps, y, steps=64),
                "deletion_auc_mean_fill": faith.deletion_auc(
                    model, x, maps, y, steps=64, fill="mean"
                ),
                "insertion_auc": faith.insertion_auc(model, x, maps, y, steps=64),
            }
    finally:
        faith.removal_rank = new_rank
    return {k: _row(res["old"][k], res["new"][k]) for k in res["old"]}


def road(model: Any, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor, steps: int) -> dict:
    import pellucid.metrics.faithfulness as faith
    from pellucid.metrics.imputation import noisy_linear_imputation as nli

    new = faith.deletion_auc(model, x, maps, y, steps=steps, fill="road")
    old = []
    try:
        for i in range(len(y)):  # the old seed of (image i, step s): i * (steps + 1) + s

            def patched(imgs: Any, changed: Any, seed: list[int], _i: int = i, **kw: Any) -> Any:
                return nli(imgs, changed, seed=[sd + _i * (steps + 1) for sd in seed], **kw)

            faith.noisy_linear_imputation = patched
            one = slice(i, i + 1)
            old.append(
                faith.deletion_auc(model, x[one], maps[one], y[one], steps=steps, fill="road")
            )
    finally:
        faith.noisy_linear_imputation = nli
    return _row(torch.cat(old), new)


def main() -> None:
    from explainers_images import spread_images
    from explainers_runs import ensure_run
    from pellucid.explain import build_explainer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["cluttered-mnist", "shapes"])
    ap.add_argument("--explainers", nargs="+", default=["occlusion", "gradcam", "neuromask"])
    ap.add_argument("--road-explainers", nargs="+", default=["gradcam", "saliency"])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--runs", type=Path, default=Path("runs/bench-explainers"))
    args = ap.parse_args()
    saved = json.loads((RESULTS / "explainers_road.json").read_text())["results"]
    start, out = time.time(), {}
    for ds in args.datasets:
        run = ensure_run(ds, args.runs)
        model, batch = spread_images(run, args.n)
        for name in args.explainers:
            maps = build_explainer(name, model).explain(batch.image, batch.label)
            out.setdefault(ds, {})[name] = curves(model, batch.image, batch.label, maps)
            print(ds, name, out[ds][name], flush=True)
        _, rbatch = spread_images(run, saved[ds]["n_images"])
        for name in args.road_explainers:
            maps = build_explainer(name, model).explain(rbatch.image, rbatch.label)
            row = road(model, rbatch.image, rbatch.label, maps, saved[ds]["road_steps"])
            out[ds].setdefault(name, {})["deletion_auc_road"] = row
            print(ds, name, "road", row, flush=True)
    command = "python benchmarks/tie_order.py " + " ".join(
        ["--datasets", *args.datasets, "--explainers", *args.explainers, "--n", str(args.n)]
    )
    write_result(
        "tie_order",
        {
            "command": command,
            "machine": machine(),
            "n": args.n,
            "results": out,
            "wall_seconds": round(time.time() - start),
        },  # fmt: skip
    )


if __name__ == "__main__":
    main()
