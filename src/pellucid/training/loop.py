"""The training loop: ``fit`` and ``evaluate``. It knows nothing about any particular method:
a :class:`~pellucid.methods.base.Method` turns each batch into loss, logits and named terms."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from pellucid.config import DataConfig, TrainConfig
from pellucid.data import make_loader
from pellucid.data.base import Batch
from pellucid.errors import PellucidError
from pellucid.methods.base import Method
from pellucid.state import model_device
from pellucid.training.augment import random_shift
from pellucid.training.checkpoint import load_checkpoint, save_checkpoint
from pellucid.training.setup import (
    OptimizerSet,
    build_optimizer,
    build_scheduler,
    resolve_device,
)


@dataclass
class History:
    """Per-epoch records (train loss/accuracy, named terms, val accuracy, lr, seconds)."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    @property
    def train_seconds(self) -> float:
        return float(sum(e["seconds"] for e in self.epochs))


class NonFiniteLossError(PellucidError):
    """The loss became NaN or infinite."""


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Iterable[Batch] | Any,
    device: torch.device | str | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``data``.

    ``data`` is a Dataset or an iterable of :class:`Batch`. The model's train/eval mode is
    restored afterwards.
    """
    loader = data if isinstance(data, DataLoader) else None
    if loader is None:
        loader = make_loader(data, batch_size=batch_size) if hasattr(data, "__getitem__") else data
    device = torch.device(device) if device else model_device(model)
    was_training = model.training
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    try:
        for batch in loader:
            x, y = batch.image.to(device), batch.label.to(device)
            logits = model(x)  # (N, C)
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        raise PellucidError("evaluate: the data is empty")
    return {"accuracy": correct / n, "loss": loss_sum / n, "n": n}


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def fit(
    method: Method,
    train_data: Any,
    val_data: Any | None = None,
    train: TrainConfig | None = None,
    data: DataConfig | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> History:
    """Train ``method`` (and the model inside it) on ``train_data``.

    Parameters
    ----------
    method : Method
        The training objective wrapping the model.
    train_data, val_data : Dataset
        Yield samples as described in :mod:`pellucid.data.base`.
    train, data : TrainConfig, DataConfig
        Optimisation and batching/augmentation settings.
    out : path, optional
        Run directory: a checkpoint is written there atomically after every epoch, and
        TensorBoard logs under ``out/tb`` when ``train.tensorboard`` is set.
    resume : bool
        Continue from ``out/checkpoint`` (same config); finished epochs are not repeated.
    """
    train = train or TrainConfig()
    data = data or DataConfig()
    device = resolve_device(train.device)
    method.to(device)
    loader = make_loader(train_data, data.batch_size, True, train.seed, data.num_workers, True)
    if len(loader) == 0:
        raise PellucidError(f"training set has {len(train_data)} images, fewer than one batch")
    optimizer = build_optimizer(method, train)
    scheduler = build_scheduler(optimizer, train, len(loader))
    history, start = History(), 0
    if resume:
        if out is None:
            raise PellucidError("resume needs the run directory (out)")
        start, records = load_checkpoint(Path(out), method, optimizer, scheduler)
        history.epochs = records
    writer = _tensorboard(out) if train.tensorboard and out else None
    try:
        for epoch in range(start, train.epochs):
            record = _train_epoch(
                method, loader, optimizer, scheduler, train, data, epoch, progress
            )
            if val_data is not None:
                record["val_accuracy"] = evaluate(method.inference_model(), val_data, device)[
                    "accuracy"
                ]
            history.epochs.append(record)
            if writer is not None:
                for key, value in record.items():
                    writer.add_scalar(key, value, epoch + 1)
            if out is not None:
                save_checkpoint(Path(out), method, optimizer, scheduler, epoch + 1, history.epochs)
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)
        if method.on_train_end(loader) and out is not None:
            save_checkpoint(Path(out), method, optimizer, scheduler, train.epochs, history.epochs)
    finally:
        if writer is not None:
            writer.close()
    return history


def _train_epoch(
    method: Method,
    loader: DataLoader,
    optimizer: OptimizerSet,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    train: TrainConfig,
    data: DataConfig,
    epoch: int,
    progress: bool,
) -> dict[str, float]:
    device = model_device(method)
    loader.generator.manual_seed(train.seed * 1_000_003 + epoch)  # same order on resume
    aug_gen = _epoch_generator(train.seed, epoch)
    method.train()
    method.on_epoch_start(epoch)
    sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), device=device)
    n, start = 0, time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{train.epochs}", disable=not progress, leave=False)
    for i, batch in enumerate(bar):
        batch = batch.to(device, non_blocking=True)
        if data.augment != "none" and data.max_shift > 0:
            batch = random_shift(batch, data.max_shift, aug_gen, flip=data.augment == "shift-flip")
        result = method.step(batch)
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        if train.grad_clip:
            nn.utils.clip_grad_norm_(method.parameters(), train.grad_clip)
        optimizer.step()
        scheduler.step()
        method.after_optimizer_step()
        bs = len(batch)
        n += bs
        for key, value in {"loss": result.loss, **result.terms}.items():
            sums[key] = sums.get(key, 0.0) + value.detach() * bs
        correct += (result.logits.detach().argmax(1) == batch.label).sum()
        if progress and i % 20 == 0:
            bar.set_postfix(loss=f"{float(result.loss.detach()):.3f}")
    record = {f"train_{k}": float(v) / n for k, v in sums.items()}
    if not math.isfinite(record["train_loss"]):
        raise NonFiniteLossError(
            f"training loss is {record['train_loss']} in epoch {epoch + 1}; "
            "lower the learning rate or check the data for NaN"
        )
    record.update(
        epoch=epoch + 1,
        train_accuracy=float(correct) / n,
        lr=float(optimizer.param_groups[0]["lr"]),
        seconds=time.perf_counter() - start,
    )
    return record


def _tensorboard(out: str | Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise PellucidError("TensorBoard logging needs `pip install tensorboard`") from err
    return SummaryWriter(log_dir=str(Path(out) / "tb"))
