"""Seeding, devices, optimisers and learning-rate schedules."""

from __future__ import annotations

import random

import numpy as np
import torch

from pellucid.config import TrainConfig
from pellucid.errors import ConfigError
from pellucid.methods.base import Method


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (legacy global RNG some libraries use)
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` = CUDA when available, else CPU; otherwise the named device, checked: a
    CUDA device (and its index) or MPS that this machine lacks is refused by name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"unknown device {name!r}: {err}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} requested but CUDA is not available (use cpu, or auto)"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"device {name!r} requested but this machine has {count} CUDA device"
                f"{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1})"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} requested but MPS is not available (use cpu, or auto)")
    if device.type == "meta":
        raise ConfigError("device 'meta' holds no data; choose cpu, cuda or auto")
    return device


class OptimizerSet:
    """The main optimiser plus optional extra ones for parameter groups that ask for a
    different algorithm (e.g. CSG's gates with Adam while the backbone uses SGD).

    Behaves like one optimiser for the loop: ``zero_grad``, ``step``, ``state_dict``,
    ``load_state_dict``; the learning-rate schedule drives ``main`` only.
    """

    def __init__(self, main: torch.optim.Optimizer, extras: list[torch.optim.Optimizer]):
        self.main, self.extras = main, extras

    @property
    def param_groups(self) -> list[dict]:
        """The parameter groups of ``main``, then of each extra optimiser."""
        return self.main.param_groups + [g for o in self.extras for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients of every optimiser (set to None by default)."""
        for opt in (self.main, *self.extras):
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        """Step ``main``, then each extra optimiser."""
        for opt in (self.main, *self.extras):
            opt.step()

    def state_dict(self) -> dict:
        """``{"main": ..., "extras": [...]}``: the state of every optimiser."""
        return {"main": self.main.state_dict(), "extras": [o.state_dict() for o in self.extras]}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; a ValueError when its number of extras differs."""
        if len(state["extras"]) != len(self.extras):  # checked first: nothing half-loaded
            raise ValueError("checkpoint has a different number of optimisers")
        self.main.load_state_dict(state["main"])
        for opt, st in zip(self.extras, state["extras"], strict=True):
            opt.load_state_dict(st)


def _make(kind: str, groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(
            groups,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.momentum > 0,
        )
    if kind == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown optimizer {kind!r}; choose from: sgd, adam, adamw")


def build_optimizer(method: Method, cfg: TrainConfig) -> OptimizerSet:
    """SGD (Nesterov momentum) or Adam/AdamW over the method's parameter groups.

    A group with an ``"optimizer"`` key naming another algorithm gets its own optimiser
    (constant learning rate); all other groups share the configured one.
    """
    by_kind: dict[str, list[dict]] = {}
    for group in method.param_groups(cfg.lr, cfg.weight_decay):
        group = dict(group)
        kind = group.pop("optimizer", cfg.optimizer)
        by_kind.setdefault(kind, []).append(group)
    main = _make(cfg.optimizer, by_kind.pop(cfg.optimizer, []) or [{"params": []}], cfg)
    extras = [_make(kind, groups, cfg) for kind, groups in by_kind.items()]
    return OptimizerSet(main, extras)


def build_scheduler(
    optimizers: OptimizerSet, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule of the main optimiser: one-cycle, cosine, step (x0.1 at 50 % and
    75 %) or constant. One-cycle falls back to cosine for runs of fewer than 8 steps."""
    optimizer = optimizers.main
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle" and total < 8:
        # OneCycleLR divides by the length of its warm-up phase, which is empty for a run
        # this short; a cosine decay from the peak is the closest well-defined schedule.
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if cfg.schedule == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=total, pct_start=0.25
        )
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if cfg.schedule == "step":
        milestones = [int(total * 0.5), int(total * 0.75)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)
