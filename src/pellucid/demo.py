"""``pellucid demo``: the main job on bundled data. At this stage: train a standard
ResNet-8 on the bundled MNIST sample and report its test accuracy; later stages add the
interpretable methods, explanations and the HTML report. Finished runs are reused unless
``fresh``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pellucid.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig
from pellucid.io import read_json


def demo_configs(epochs: int = 5) -> dict[str, RunConfig]:
    """The runs the demo trains, by name."""
    train = TrainConfig(epochs=epochs, optimizer="sgd", lr=0.1, schedule="onecycle", seed=0)
    return {
        "standard": RunConfig(
            data=DataConfig(name="mnist", augment="shift"),
            model=ModelConfig(name="resnet8"),
            method=MethodConfig(name="standard"),
            train=train,
        )
    }


def run_demo(
    out: Path, fresh: bool = False, epochs: int = 5, quiet: bool = False
) -> dict[str, Any]:
    """Train (or reuse) every demo run under ``out`` and print a results table."""
    from pellucid.training import train_run

    results: dict[str, Any] = {}
    for name, config in demo_configs(epochs).items():
        run = out / name
        if fresh and run.exists():
            shutil.rmtree(run)
        if (run / "metrics.json").is_file():
            metrics = read_json(run / "metrics.json")
            if not quiet:
                print(f"[{name}] reusing finished run {run} (--fresh to retrain)")
        else:
            if run.exists():
                shutil.rmtree(run)  # an unfinished run: start it again
            if not quiet:
                print(f"[{name}] training {config.model.name} on {config.data.name} ...")
            metrics = train_run(config, run, progress=not quiet)
        results[name] = metrics
    if not quiet:
        print(f"\n{'run':<12}{'dataset':<10}{'model':<10}{'test acc':>10}{'train s':>10}")
        for name, m in results.items():
            print(
                f"{name:<12}{m['dataset']:<10}{m['model']:<10}"
                f"{m['test_accuracy']:>10.4f}{m['train_seconds']:>10.1f}"
            )
        print(f"\nruns written to {out.resolve()}")
    return results
