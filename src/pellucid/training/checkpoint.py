"""Checkpoints: weights as safetensors, optimiser/scheduler state loadable with
``weights_only=True``, every file written atomically (temp file + rename)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pellucid.errors import PellucidError
from pellucid.io import load_state, load_tensors, save_state, save_tensors
from pellucid.methods.base import Method
from pellucid.state import model_device
from pellucid.training.setup import OptimizerSet

CKPT = "checkpoint"


def save_checkpoint(
    run: Path,
    method: Method,
    optimizer: OptimizerSet,
    scheduler: Any,
    epoch: int,
    history: list[dict[str, float]],
) -> None:
    """Write ``run/checkpoint/{weights.safetensors, state.pt}``; ``state.pt`` last, so a
    checkpoint whose state file exists is complete."""
    d = run / CKPT
    save_tensors(d / "weights.safetensors", method.state_dict())
    save_state(
        d / "state.pt",
        {
            "epoch": epoch,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "history": history,
            # the global generators: a method's own randomness (decoupling's gate noise)
            # draws from them, so a resumed run continues their streams where they were
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        },
    )


def load_checkpoint(
    run: Path, method: Method, optimizer: OptimizerSet, scheduler: Any
) -> tuple[int, list[dict[str, float]]]:
    """Restore method, optimiser and scheduler; returns (epochs done, history)."""
    d = run / CKPT
    if not (d / "state.pt").is_file():
        raise PellucidError(f"cannot resume: no checkpoint in {d}")
    state = load_state(d / "state.pt")
    device = model_device(method)
    weights = load_tensors(d / "weights.safetensors", device=device)
    try:
        method.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, KeyError, ValueError) as err:
        raise PellucidError(f"checkpoint in {d} does not match this run's config: {err}") from None
    if "rng" in state:  # checkpoints written before 2026-12-08 have none
        torch.set_rng_state(state["rng"])
        cuda = state.get("cuda_rng") or []
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    return int(state["epoch"]), list(state["history"])
