"""The foundation's accuracy check: `pellucid train --dataset mnist --model resnet8
--epochs 5` over 3 seeds; test accuracy and wall-clock training time.

    python benchmarks/mnist_resnet8.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from _common import write_result
from pellucid.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig
from pellucid.training import train_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    runs = []
    for seed in args.seeds:
        cfg = RunConfig(
            data=DataConfig(name="mnist"),
            model=ModelConfig(name="resnet8"),
            method=MethodConfig(name="standard"),
            train=TrainConfig(epochs=args.epochs, seed=seed),
        )
        with tempfile.TemporaryDirectory() as tmp:
            m = train_run(cfg, tmp, progress=False)
        runs.append({k: m[k] for k in ("seed", "test_accuracy", "train_seconds")})
        print(runs[-1])
    accs = [r["test_accuracy"] for r in runs]
    secs = [r["train_seconds"] for r in runs]
    write_result(
        "mnist_resnet8",
        {
            "command_equivalent": f"pellucid train --dataset mnist --model resnet8 --epochs "
            f"{args.epochs} --seed S",
            "config": cfg.replace(info={}).to_dict(),
            "runs": runs,
            "test_accuracy_mean": round(statistics.mean(accs), 4),
            "test_accuracy_min": min(accs),
            "train_seconds_mean": round(statistics.mean(secs), 1),
            "targets": {"test_accuracy": 0.96, "train_seconds": 90},
        },
    )


if __name__ == "__main__":
    main()
