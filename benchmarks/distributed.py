"""Multi-process training with torchrun against one process, on the same machine.

The same ``pellucid train`` command (same config, seed and global batch) runs as
  - one process on one thread,
  - one process on all the threads of the group (``--nproc`` threads),
  - ``torchrun --standalone --nproc-per-node K``, one thread per process,
and each run's training seconds (the loop's own epoch timings, without data loading and
evaluation), throughput, wall-clock time of the whole command and test accuracy are written
to ``benchmarks/results/distributed.json``. Arms alternate, ``--repeats`` times, and the
median is reported. Nothing else should run on the machine meanwhile.

    python benchmarks/distributed.py [--dataset shapes] [--model convnet] [--epochs 5]
        [--batch-size 64] [--nproc 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import write_result

ARMS = ("1 process, 1 thread", "1 process, K threads", "torchrun, K processes x 1 thread")


def command(arm: int, nproc: int, train_args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command line and thread setting of one arm."""
    env = {**os.environ, "OMP_NUM_THREADS": str(nproc if arm == 1 else 1)}
    if arm == 2:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        return [*launch, "--nproc-per-node", str(nproc), "-m", "pellucid", *train_args], env
    return [sys.executable, "-m", "pellucid", *train_args], env


def run_arm(arm: int, nproc: int, train_args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd, env = command(arm, nproc, [*train_args, "--out", str(out), "--quiet"])
        start = time.perf_counter()
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if res.returncode != 0:
            raise SystemExit(f"{ARMS[arm]} failed:\n{res.stderr[-3000:]}")
        metrics = json.loads((out / "metrics.json").read_text())
        history = json.loads((out / "history.json").read_text())
    return {
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": round(wall, 2),
        "test_accuracy": metrics["test_accuracy"],
        "processes": metrics["processes"],
        "epoch_seconds": [round(e["seconds"], 3) for e in history],
    }


def summarise(runs: list[dict[str, Any]], images: int, epochs: int) -> dict[str, Any]:
    train = statistics.median(r["train_seconds"] for r in runs)
    return {
        "train_seconds": round(train, 2),
        "images_per_second": round(images * epochs / train, 1),
        "wall_seconds": round(statistics.median(r["wall_seconds"] for r in runs), 2),
        "test_accuracy": [r["test_accuracy"] for r in runs],
        "processes": runs[0]["processes"],
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--model", default="convnet")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--nproc", type=int, default=2, help="K: processes / threads")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from pellucid.data import load_dataset

    images = len(load_dataset(args.dataset, "train", seed=0))
    images -= images % args.batch_size  # the loop drops the incomplete last batch
    train_args = ["train", "--dataset", args.dataset, "--model", args.model]
    train_args += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    train_args += ["--seed", "0", "--device", "cpu"]
    runs: dict[int, list[dict[str, Any]]] = {arm: [] for arm in range(len(ARMS))}
    for rep in range(args.repeats):
        for arm in range(len(ARMS)):
            runs[arm].append(run_arm(arm, args.nproc, train_args))
            print(f"repeat {rep + 1} {ARMS[arm]}: {runs[arm][-1]['train_seconds']} s")
    arms = {
        ARMS[arm].replace("K", str(args.nproc)): summarise(r, images, args.epochs)
        for arm, r in runs.items()
    }
    base = arms[ARMS[0]]["train_seconds"]
    for summary in arms.values():
        summary["speedup_vs_one_thread"] = round(base / summary["train_seconds"], 2)
    write_result(
        "distributed",
        {
            "dataset": args.dataset,
            "model": args.model,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "train_images_per_epoch": images,
            "nproc": args.nproc,
            "repeats": args.repeats,
            "arms": arms,
        },
    )


if __name__ == "__main__":
    main()
