"""Batch-1 CPU latency of the sparse execution of finished decoupling runs, against the
dense network (``pellucid.apps.acceleration.compare_latency``), on one thread.

    python benchmarks/sparse_latency.py RUN [RUN ...] [--images 16] [--repeats 20]

Prints one JSON line per run (nothing is written): the latency ratio against the faster
dense execution, the three medians in ms and the largest |sparse - masked dense| logit error.
Test images are spread evenly over the run's test split.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", nargs="+", help="decoupling run directories")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    import torch

    from pellucid.apps.acceleration import compare_latency
    from pellucid.data import load_dataset
    from pellucid.training.run import load_method

    torch.set_num_threads(1)
    for run in args.runs:
        method, cfg = load_method(run)
        test = load_dataset(cfg.data.name, "test", seed=cfg.train.seed, **cfg.data.options)
        step = max(1, len(test) // args.images)
        xs = [test[i]["image"][None] for i in range(0, len(test), step)][: args.images]
        res = compare_latency(method.inference_model(), xs, repeats=args.repeats, threads=1)
        print(json.dumps({"run": run, **res}))


if __name__ == "__main__":
    main()
