"""Training: the method-agnostic loop, checkpoints, seeding and run directories."""

from pellucid.training.loop import History, evaluate, fit
from pellucid.training.run import (
    evaluate_run,
    load_method,
    load_run,
    run_from_weights,
    train_run,
)
from pellucid.training.setup import resolve_device, seed_everything

__all__ = [
    "History",
    "evaluate",
    "evaluate_run",
    "fit",
    "load_method",
    "load_run",
    "resolve_device",
    "run_from_weights",
    "seed_everything",
    "train_run",
]
