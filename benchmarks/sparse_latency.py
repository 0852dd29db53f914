"""Batch-1 CPU latency of the sparse execution (``pellucid.apps.acceleration``), on one thread.

    python benchmarks/sparse_latency.py RUN [RUN ...] [--images 16] [--repeats 20]
    python benchmarks/sparse_latency.py --synthetic [--models convnet resnet8]
                                        [--fractions 0.8 0.6 0.4] [--size 28]

With run directories: the latency ratio of each finished decoupling run against the dense
network (:func:`~pellucid.apps.acceleration.compare_latency`), the three medians in ms and
the largest |sparse - masked dense| logit error, one JSON line per run (nothing is written).
Test images are spread evenly over the run's test split.

``--synthetic``: how the ratio depends on the architecture and on the fraction of open gates,
without training. Each gated layer of an untrained network opens a fixed random subset of
its filters (the given fraction, the same for every image) and the sparse engine runs it
against the dense network on random single-channel images. Writes
results/sparse_latency_synthetic.json.
"""

from __future__ import annotations

import argparse
import json

from _common import write_result


def synthetic(models: list[str], fractions: list[float], size: int, repeats: int) -> None:
    import torch

    from pellucid.apps.acceleration import compare_latency
    from pellucid.methods.decoupling import Decoupling, gated_layers
    from pellucid.models import build_model

    rows = []
    for name in models:
        for frac in fractions:
            torch.manual_seed(0)
            model = build_model(name, 1, 10).eval()
            Decoupling(model, 10)
            with torch.no_grad():  # constant gates: a random subset of the filters is open
                for conv in gated_layers(model).values():
                    c = conv.controller
                    c.weight2.zero_()
                    k = len(c.bias2)
                    on = torch.randperm(k)[: max(1, round(frac * k))]
                    c.bias2.fill_(-1.0)
                    c.bias2[on] = 1.0
            xs = [torch.rand(1, 1, size, size) for _ in range(8)]
            res = compare_latency(model, xs, repeats=repeats, threads=1)
            row = {"model": name, "open_fraction": frac, "size": size, **res}
            print(json.dumps(row))
            rows.append(row)
    write_result("sparse_latency_synthetic", {"rows": rows})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", nargs="*", help="decoupling run directories")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--synthetic", action="store_true", help="random fixed gates, no training")
    ap.add_argument("--models", nargs="+", default=["convnet", "resnet8"])
    ap.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.8, 0.6, 0.4, 0.2])
    ap.add_argument("--size", type=int, default=28)
    args = ap.parse_args()
    import torch

    from pellucid.apps.acceleration import compare_latency
    from pellucid.data import load_dataset
    from pellucid.training.run import load_method

    torch.set_num_threads(1)
    if args.synthetic:
        synthetic(args.models, args.fractions, args.size, args.repeats)
    elif not args.runs:
        ap.error("give run directories or --synthetic")
    for run in args.runs:
        method, cfg = load_method(run)
        test = load_dataset(cfg.data.name, "test", seed=cfg.data_seed, **cfg.data.options)
        step = max(1, len(test) // args.images)
        xs = [test[i]["image"][None] for i in range(0, len(test), step)][: args.images]
        res = compare_latency(method.inference_model(), xs, repeats=args.repeats, threads=1)
        print(json.dumps({"run": run, **res}))


if __name__ == "__main__":
    main()
