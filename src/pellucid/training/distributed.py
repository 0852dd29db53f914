"""Multi-process data-parallel training, launched with ``torchrun``.

``torchrun --standalone --nproc-per-node K -m pellucid train ...`` starts K copies of the same
command; each reads its place from the environment torchrun sets (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``). :func:`session` joins them in one process group (gloo on CPU, NCCL on CUDA,
one GPU per process), the loop wraps the method in
:class:`~torch.nn.parallel.DistributedDataParallel`, which averages the gradients, and only
rank 0 writes (checkpoints, TensorBoard, the run directory) or prints.

The configured batch size is the *global* batch: each of the K processes takes a contiguous
K-th of every batch the single-process loop would draw (:class:`ShardSampler`), and DDP
averages the K gradients, so K processes take the same optimisation steps as one process,
up to the order of floating-point sums and BatchNorm statistics, which each process computes
over its own share of the batch (as DDP does by default). Statistics a method keeps over the
batch (ICNN's log Z_T, its filter categories and mask gain) are summed over the processes
(:func:`group_sum`), so they are the global batch's. The run is therefore resumable with
another number of processes.

Without ``WORLD_SIZE`` (or with 1) everything here is a no-op and the loop is the
single-process one.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from pellucid.errors import ConfigError, PellucidError

__all__ = [
    "Distributed",
    "ShardSampler",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "current",
    "group_max",
    "group_sum",
    "is_distributed",
    "is_main_process",
    "requested_world_size",
    "session",
]


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: ``world_size`` processes in all, this one is ``rank``
    (``local_rank`` on its machine), training on ``device``."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device | None = None

    @property
    def enabled(self) -> bool:
        """More than one process: the loop wraps the method in DDP."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes and prints."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None
    if value < 0:
        raise ConfigError(f"environment variable {name}={raw!r} must be >= 0")
    return value


def requested_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 without torchrun)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def current(device: torch.device | None = None) -> Distributed:
    """This process's place in the initialised process group (a single process when none
    is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Distributed(device=device)
    return Distributed(
        world_size=dist.get_world_size(),
        rank=dist.get_rank(),
        local_rank=_env_int("LOCAL_RANK", 0),
        device=device,
    )


def is_main_process() -> bool:
    """True in a single process and on rank 0 of a group: the process that writes and
    prints. Reads ``RANK`` when no group is initialised yet (before or after training)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return _env_int("RANK", 0) == 0


def _device(device: torch.device, local_rank: int) -> torch.device:
    """One device per process: CUDA device ``local_rank`` when training on CUDA."""
    if device.type != "cuda":
        return device
    if device.index is not None:
        raise ConfigError(
            f"device {device} names one GPU, but torchrun gives each process its own "
            "(cuda:LOCAL_RANK); use --device cuda or auto"
        )
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"LOCAL_RANK {local_rank} has no GPU: this machine has "
            f"{torch.cuda.device_count()}; start at most that many processes per node"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


@contextmanager
def session(device: torch.device) -> Iterator[Distributed]:
    """Join the process group torchrun prepared (if it is not joined yet) for the duration
    of the block, and leave it afterwards, also after an error.

    Parameters
    ----------
    device : torch.device
        The configured device (``resolve_device``); under torchrun a CUDA device becomes
        ``cuda:LOCAL_RANK``.

    Yields
    ------
    Distributed
        This process's rank, the group's size and the device to train on.
    """
    world = requested_world_size()
    if world == 1 or (dist.is_available() and dist.is_initialized()):
        ctx = current(device)
        if ctx.enabled and device.type == "cuda" and device.index is None:
            # a group the caller initialised: still one GPU per process
            ctx = current(torch.device("cuda", ctx.local_rank))
        yield ctx
        return
    if not dist.is_available():
        raise PellucidError("WORLD_SIZE > 1, but this torch build has no torch.distributed")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ConfigError(
                f"WORLD_SIZE={world} but {name} is not set: start multi-process training "
                "with torchrun (torchrun --standalone --nproc-per-node K -m pellucid train ...)"
            )
    local_rank = _env_int("LOCAL_RANK", 0)
    device = _device(device, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    try:
        yield Distributed(dist.get_world_size(), dist.get_rank(), local_rank, device)
        # leave together: a rank that tears its connections down while another still
        # reads the last collective's bytes makes that one abort (seen with gloo)
        dist.barrier()
    finally:
        dist.destroy_process_group()
        # free what still refers to the group's work while the interpreter is fully alive
        gc.collect()


def broadcast_object(obj: Any, ctx: Distributed) -> Any:
    """Rank 0's ``obj`` on every rank (a picklable object made by our own code, never data
    read from a user's file)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(values: torch.Tensor, ctx: Distributed) -> torch.Tensor:
    """The element-wise sum of ``values`` over the ranks (``values`` itself in one process)."""
    if not ctx.enabled:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def _group_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return _group_size() > 1


def group_sum(values: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
    """``values`` summed over the processes of the initialised group (``values`` itself
    when there is none), for statistics a method keeps over the *global* batch.

    Every rank must call it at the same point of its step (a collective). With
    ``differentiable`` the sum keeps its gradient and the backward pass sums the gradient
    over the ranks too (``torch.distributed.nn.functional.all_reduce``), so a loss that
    depends on the whole batch's statistic gets the single-process gradient once DDP has
    averaged the ranks' gradients.
    """
    if _group_size() == 1:
        return values
    if differentiable:
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(values, op=dist.ReduceOp.SUM)
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def group_max(values: torch.Tensor) -> torch.Tensor:
    """The element-wise maximum of ``values`` over the processes (no gradient)."""
    if _group_size() == 1:
        return values.detach()
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def barrier(ctx: Distributed) -> None:
    """Wait for every rank (no-op in one process)."""
    if ctx.enabled:
        dist.barrier()


class ShardSampler(Sampler[int]):
    """Rank ``rank``'s contiguous share of every global batch of a seeded shuffle.

    The permutation is the one a shuffled single-process ``DataLoader`` draws from the same
    ``generator`` (``torch.randperm(n, generator)`` after the loader's worker seed), cut into
    global batches of ``batch_size`` (the incomplete last batch dropped); each global batch
    is split into ``world_size`` slices of ``batch_size / world_size`` and this rank takes
    slice ``rank``. The ranks' slices of batch i together are exactly the single-process
    batch i. Use it with ``DataLoader(batch_size=batch_size // world_size, generator=
    generator, drop_last=True)``.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        world_size: int,
        rank: int,
        generator: torch.Generator,
    ) -> None:
        if batch_size % world_size:
            raise ConfigError(
                f"batch size {batch_size} is the global batch of all {world_size} processes "
                f"and must be divisible by their number; use e.g. "
                f"{max(world_size, batch_size - batch_size % world_size)}"
            )
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} outside 0..{world_size - 1}")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.world_size, self.rank, self.generator = world_size, rank, generator
        self.per_rank = batch_size // world_size

    def __len__(self) -> int:
        return (self.num_samples // self.batch_size) * self.per_rank

    def __iter__(self) -> Iterator[int]:
        # a generator: the permutation is drawn at the first index, after the DataLoader
        # has drawn its worker seed from the same generator, as RandomSampler does
        perm = torch.randperm(self.num_samples, generator=self.generator)  # (n,)
        batches = self.num_samples // self.batch_size
        perm = perm[: batches * self.batch_size].view(batches, self.world_size, self.per_rank)
        yield from perm[:, self.rank].reshape(-1).tolist()
