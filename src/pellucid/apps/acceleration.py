"""Acceleration from calculation paths (Li et al., "Interpretable Neural Network Decoupling",
ECCV 2020, Sec. 4.4; decoupling.md, "Acceleration").

A gate at 0 lets a layer skip that output channel and the next layer the matching input
channel. Two figures:

- FLOPs per input, counting only active channels, plus the controlling modules' own cost,
  against the dense network (:meth:`SparseNet.flops`). FLOPs are multiply-accumulates of
  conv and linear layers, the convention of the pruning literature; batch norm (folded into
  the convs at inference), ReLU and pooling are not counted, in either network. A
  controller costs its GAP (one addition per active input value) and its two FC layers.
- Real batch-1 CPU latency of :class:`SparseNet`, which evaluates each controller, gathers
  the active filters' weights (rows) and the active input channels (columns) and runs
  ``F.conv2d`` on them, against the dense model (:func:`compare_latency`).

Supported: our ``convnet``, ``vgg`` and ``resnet8/20`` (in a residual block the add restores
all channels of the block output, so the next block reads a full tensor).

Where the time goes at batch size 1 (measured, 1 thread, 28x28 mnist): PyTorch's CPU conv
for one small image is im2col + GEMM, and its cost follows the number of *input* channels
much more than the number of output channels (a 16 -> 16 conv at 28x28 costs about as much as
16 -> 11). A chain of gated convs (``convnet``, ``vgg``) skips both; in a ResNet block the
first conv reads the full block input, so only its output side shrinks. With fixed random
gates (``python benchmarks/sparse_latency.py --synthetic``, 2026-12-01) the sparse/dense
ratio at 80 / 60 / 40 / 20 % open gates was 0.98 / 0.78 / 0.64 / 0.56 for ``convnet`` and
1.13 / 1.03 / 0.91 / 0.84 for ``resnet8``; with every gate open 1.01 and 1.11 (the
controllers' own cost).

The engine is split by concept: the per-layer operations are in
:mod:`pellucid.apps.sparse_ops`, the compiled network :class:`SparseNet` in
:mod:`pellucid.apps.sparse_net` (it and ``Gates`` are re-exported here); this module holds
the metric declarations and the measurements.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pellucid.apps.sparse_net import SparseNet
from pellucid.apps.sparse_ops import Gates  # noqa: F401  (re-exported)
from pellucid.errors import DataError
from pellucid.metrics.base import declare
from pellucid.models.base import StagedNet

declare("flops_ratio", False, "mean FLOPs per input of a decoupled net / FLOPs of the dense net")
declare(
    "latency_ratio",
    False,
    "median batch-1 CPU latency of the sparse execution / that of the faster dense execution",
)


def split_paths(paths: torch.Tensor, layers: Sequence[Any]) -> dict[str, torch.Tensor]:
    """Path matrix (N, F) and its layer spans (name, start, stop) -> name -> (N, K) gates."""
    return {s.name: paths[:, s.start : s.stop] for s in layers}


def measure_latency(
    fns: Mapping[str, Callable[[torch.Tensor], Any]],
    images: Sequence[torch.Tensor],
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> dict[str, float]:
    """Median seconds per call of each function on single images.

    Calls are interleaved (image by image, function by function) so that machine load hits
    all functions alike; ``warmup`` rounds are not timed. ``threads`` sets
    ``torch.set_num_threads`` for the measurement (default: the current setting).
    """
    if not images or repeats < 1:
        raise DataError("measure_latency needs at least one image and one repeat")
    old = torch.get_num_threads()
    times: dict[str, list[float]] = {name: [] for name in fns}
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        with torch.inference_mode():
            for r in range(warmup + repeats):
                for x in images:
                    for name, fn in fns.items():
                        start = time.perf_counter()
                        fn(x)
                        elapsed = time.perf_counter() - start
                        if r >= warmup:
                            times[name].append(elapsed)
    finally:
        torch.set_num_threads(old)
    return {name: statistics.median(t) for name, t in times.items()}


def compare_latency(
    model: nn.Module,
    images: Sequence[torch.Tensor],
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> dict[str, float]:
    """Batch-1 CPU latency of the sparse execution against the dense model.

    ``model`` is a decoupled StagedNet (not changed: a CPU copy is used). The dense model
    runs two ways: as an ordinary ``nn.Module`` (the copy with its controllers removed), and
    as :class:`SparseNet` with every channel on (batch norm folded, the same engine), and
    the sparse execution is compared with the faster of the two, so that the ratio credits
    skipping only, not the engine.

    Returns
    -------
    dict
        latency_ratio (sparse / faster dense), latency_ratio_module (sparse / nn.Module),
        the three medians in milliseconds, the largest |sparse - masked dense| logit
        difference over ``images``, and the number of threads used.
    """
    from pellucid.methods.decoupling import remove_controllers

    gated = copy.deepcopy(model).cpu().eval()
    dense = copy.deepcopy(gated)
    remove_controllers(dense)
    images = [x.detach().cpu().reshape(1, *x.shape[-3:]) for x in images]
    engine = SparseNet(gated, images[0])
    with torch.no_grad():
        err = max(float((engine(x) - gated(x)).abs().max()) for x in images)
    med = measure_latency(
        {"module": dense, "folded": lambda x: engine(x, dense=True), "sparse": engine},
        images,
        repeats,
        warmup,
        threads,
    )
    return {
        "latency_ratio": round(med["sparse"] / min(med["module"], med["folded"]), 4),
        "latency_ratio_module": round(med["sparse"] / med["module"], 4),
        "latency_ms_dense_module": round(1e3 * med["module"], 4),
        "latency_ms_dense_folded": round(1e3 * med["folded"], 4),
        "latency_ms_sparse": round(1e3 * med["sparse"], 4),
        "sparse_max_abs_error": err,
        "latency_threads": threads or torch.get_num_threads(),
    }


def acceleration_metrics(
    model: nn.Module, paths: Any, data: Any, latency_images: int = 16, repeats: int = 10
) -> dict[str, Any]:
    """FLOPs ratio of the given calculation paths (mean over their images) and, on
    ``latency_images`` evenly spaced images of ``data``, the batch-1 latency figures of
    :func:`compare_latency`. Empty for a model the sparse execution does not support."""
    if not isinstance(model, StagedNet):
        return {}
    n = len(data)
    example = data[0]["image"][None]
    cpu = copy.deepcopy(model).cpu().eval()
    engine = SparseNet(cpu, example)
    per_input = engine.flops(split_paths(paths.paths, paths.layers))
    dense = engine.dense_flops()
    out: dict[str, Any] = {
        "flops_ratio": round(float(per_input.mean()) / dense, 5),
        "flops_dense": dense,
        "flops_mean": round(float(per_input.mean()), 1),
    }
    if latency_images > 0:
        step = max(1, n // latency_images)
        images = [data[i]["image"][None] for i in range(0, n, step)][:latency_images]
        out.update(compare_latency(cpu, images, repeats=repeats))
    return out
