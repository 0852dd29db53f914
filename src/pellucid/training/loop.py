"""The training loop: ``fit`` and ``evaluate``. It knows nothing about any particular method:
a :class:`~pellucid.methods.base.Method` turns each batch into loss, logits and named terms."""

from __future__ import annotations

import gc
import math
import time
import warnings
import weakref
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from pellucid.config import DataConfig, TrainConfig
from pellucid.data import make_loader
from pellucid.data.base import Batch, collate
from pellucid.errors import PellucidError
from pellucid.methods.base import Method
from pellucid.state import eval_mode, model_device
from pellucid.training import distributed
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
        """Sum of the epochs' ``seconds``: training only, no validation or checkpointing
        (after a resume, the earlier epochs too)."""
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
    correct, loss_sum, n = 0, 0.0, 0
    with eval_mode(model):
        for batch in loader:
            x, y = batch.image.to(device), batch.label.to(device)
            logits = model(x)  # (N, C)
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
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

    Notes
    -----
    Started by ``torchrun`` with K processes, every process calls ``fit`` with the same
    arguments: they train one model together (:mod:`pellucid.training.distributed`; the
    batch size is the global batch), and only rank 0 evaluates ``val_data``, writes the
    checkpoints and TensorBoard logs, and calls ``on_epoch_end``. The returned history's
    training figures are over all processes.
    """
    train = train or TrainConfig()
    data = data or DataConfig()
    with distributed.session(resolve_device(train.device)) as ctx:
        args = (out, resume, progress, on_epoch_end, ctx)
        return _fit(method, train_data, val_data, train, data, *args)


def _fit(
    method: Method,
    train_data: Any,
    val_data: Any | None,
    train: TrainConfig,
    data: DataConfig,
    out: str | Path | None,
    resume: bool,
    progress: bool,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None,
    ctx: distributed.Distributed,
) -> History:
    method.to(ctx.device)
    loader = _train_loader(train_data, data, train.seed, ctx)
    if len(loader) == 0:
        raise PellucidError(
            f"training set has {len(train_data)} images, fewer than one batch of "
            f"{data.batch_size} (incomplete batches are dropped): lower --batch-size"
        )
    optimizer = build_optimizer(method, train)
    scheduler = build_scheduler(optimizer, train, len(loader))
    history, start = History(), 0
    if resume:
        if out is None:
            raise PellucidError("resume needs the run directory (out)")
        start, records = load_checkpoint(Path(out), method, optimizer, scheduler)
        history.epochs = records
    # DDP averages the gradients over the processes during backward; the method is
    # stepped through it, everything else (hooks, saving) uses the method itself
    stepper = method
    if ctx.enabled:
        stepper = nn.parallel.DistributedDataParallel(
            method, find_unused_parameters=method.unused_parameters
        )
    main = ctx.is_main
    with ExitStack() as stack:
        if ctx.enabled:
            # DDP's advice when a conv weight with one input channel gets its gradient in
            # another (equivalent) memory layout than its bucket: a speed note, not an error
            stack.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
        writer = _tensorboard(out) if train.tensorboard and out and main else None
        if writer is not None:
            stack.callback(writer.close)
        for epoch in range(start, train.epochs):
            record = _train_epoch(
                method, stepper, loader, optimizer, scheduler, train, data, epoch, progress, ctx
            )
            if val_data is not None and main:
                model = method.inference_model()
                record["val_accuracy"] = evaluate(model, val_data, ctx.device)["accuracy"]
            history.epochs.append(record)
            if writer is not None:
                for key, value in record.items():
                    writer.add_scalar(key, value, epoch + 1)
            if out is not None and main:
                save_checkpoint(Path(out), method, optimizer, scheduler, epoch + 1, history.epochs)
            if on_epoch_end is not None and main:
                on_epoch_end(epoch, record)
        end_batches = loader
        if ctx.enabled:  # every process sees all of the data, so all end in the same state
            end_batches = make_loader(train_data, data.batch_size, True, train.seed, 0, True)
        if method.on_train_end(end_batches) and out is not None and main:
            save_checkpoint(Path(out), method, optimizer, scheduler, train.epochs, history.epochs)
    if ctx.enabled:
        # free the DDP wrapper, and with it the gradient hooks its reducer put on the
        # method's parameters, while the process group is still up: left to the
        # interpreter's exit, the reducer was torn down after the group and a process could
        # abort ("terminate called without an active exception", ~1 launch in 20)
        probe = weakref.ref(stepper)
        del stepper
        gc.collect()
        if probe() is not None:  # pragma: no cover - a reference we did not expect
            warnings.warn("the DistributedDataParallel wrapper outlived training", stacklevel=2)
    return history


def _train_loader(
    train_data: Any, data: DataConfig, seed: int, ctx: distributed.Distributed
) -> DataLoader:
    """Shuffled training batches; with several processes, this process's share of each
    global batch (:class:`~pellucid.training.distributed.ShardSampler`)."""
    if not ctx.enabled:
        return make_loader(train_data, data.batch_size, True, seed, data.num_workers, True)
    gen = torch.Generator().manual_seed(seed)
    sampler = distributed.ShardSampler(
        len(train_data), data.batch_size, ctx.world_size, ctx.rank, gen
    )
    return DataLoader(
        train_data,
        batch_size=sampler.per_rank,
        sampler=sampler,
        generator=gen,
        num_workers=data.num_workers,
        collate_fn=collate,
        drop_last=True,
        persistent_workers=data.num_workers > 0,
    )


def _train_epoch(
    method: Method,
    stepper: nn.Module,
    loader: DataLoader,
    optimizer: OptimizerSet,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    train: TrainConfig,
    data: DataConfig,
    epoch: int,
    progress: bool,
    ctx: distributed.Distributed,
) -> dict[str, float]:
    device = model_device(method)
    loader.generator.manual_seed(train.seed * 1_000_003 + epoch)  # same order on resume
    aug_gen = _epoch_generator(train.seed, epoch)
    method.train()
    method.on_epoch_start(epoch)
    sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), device=device)
    n, start = 0, time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"epoch {epoch + 1}/{train.epochs}",
        disable=not (progress and ctx.is_main),
        leave=False,
    )
    for i, batch in enumerate(bar):
        batch = batch.to(device, non_blocking=True)
        if data.augment != "none" and data.max_shift > 0:
            flip, shard = data.augment == "shift-flip", (ctx.rank, ctx.world_size)
            batch = random_shift(batch, data.max_shift, aug_gen, flip=flip, shard=shard)
        result = stepper(batch)  # Method.forward is its step
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
    keys = sorted(sums)
    totals = torch.stack([sums[k].float() for k in keys] + [correct.float()])
    totals = torch.cat([totals, totals.new_tensor([n])])
    totals = distributed.all_reduce_sum(totals, ctx).tolist()  # over the processes
    n_all = totals[-1]
    record = {f"train_{k}": v / n_all for k, v in zip(keys, totals, strict=False)}
    if not math.isfinite(record["train_loss"]):
        raise NonFiniteLossError(
            f"training loss is {record['train_loss']} in epoch {epoch + 1}; "
            "lower the learning rate or check the data for NaN"
        )
    record.update(
        epoch=epoch + 1,
        train_accuracy=totals[-2] / n_all,
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
