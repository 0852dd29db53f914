"""pellucid: interpretable convolutional networks — train them, explain them, measure them.

>>> import pellucid
>>> model, config = pellucid.load_run("runs/x")
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "PellucidError",
    "RunConfig",
    "__version__",
    "build_model",
    "evaluate",
    "evaluate_run",
    "fit",
    "load_dataset",
    "load_run",
    "run_from_weights",
    "train_run",
]

from pellucid.config import RunConfig
from pellucid.data import Batch, load_dataset
from pellucid.errors import PellucidError
from pellucid.models import build_model
from pellucid.training import (
    evaluate,
    evaluate_run,
    fit,
    load_run,
    run_from_weights,
    train_run,
)
