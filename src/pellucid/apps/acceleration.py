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
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pellucid.errors import ConfigError, DataError
from pellucid.metrics.base import declare
from pellucid.models.base import GlobalPool, Normalize, StagedNet
from pellucid.models.resnet import BasicBlock

declare("flops_ratio", False, "mean FLOPs per input of a decoupled net / FLOPs of the dense net")
declare(
    "latency_ratio",
    False,
    "median batch-1 CPU latency of the sparse execution / that of the faster dense execution",
)

Gates = Mapping[str, torch.Tensor]


class _ConvOp:
    """Conv (+ folded BatchNorm) (+ ReLU), optionally gated by a controller.

    Channel bookkeeping (which filters a controller opens, gathering their weights) runs in
    NumPy on the snapshot arrays: for a batch of one, each PyTorch call costs several
    microseconds of dispatch on tensors of a few dozen numbers, NumPy about one.
    """

    def __init__(self, name: str, conv: nn.Conv2d) -> None:
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ConfigError(f"sparse execution: conv {name!r} is grouped or not zero-padded")
        self.name, self.conv = name, conv
        self.controller = getattr(conv, "controller", None)
        w = conv.weight.detach().cpu().float()
        self.weight = w.clone()  # (K, C, kh, kw)
        self.bias = (
            conv.bias.detach().cpu().float().clone()
            if conv.bias is not None
            else w.new_zeros(len(w))
        )
        self.relu, self.folded = False, False
        self.hw_in = self.hw_out = (0, 0)
        c = self.controller
        if c is not None:  # snapshot, transposed: (C_in, hidden), (hidden, K)
            self.w1t = c.weight1.detach().cpu().float().t().numpy().copy()
            self.w2t = c.weight2.detach().cpu().float().t().numpy().copy()
            self.b1 = c.bias1.detach().cpu().float().numpy().copy()
            self.b2 = c.bias2.detach().cpu().float().numpy().copy()
            self._minus_b2 = -self.b2
        self._gap: np.ndarray | None = None
        self._arrays()

    def _arrays(self) -> None:
        self.w_np, self.b_np = self.weight.numpy(), self.bias.numpy()

    def fold(self, bn: nn.BatchNorm2d) -> None:
        """w' = w gamma / sigma, b' = beta + (b - mu) gamma / sigma (eval-mode BN)."""
        bn_w, bn_b = bn.weight.detach().cpu().float(), bn.bias.detach().cpu().float()
        mean, var = bn.running_mean.cpu().float(), bn.running_var.cpu().float()
        scale = bn_w / torch.sqrt(var + bn.eps)  # (K,)
        self.weight = (self.weight * scale[:, None, None, None]).contiguous()
        self.bias = (bn_b + (self.bias - mean) * scale).contiguous()
        self.folded = True
        self._arrays()

    def gates(self, x: torch.Tensor, idx: np.ndarray | None) -> np.ndarray:
        """Indices of the filters the controller opens for x (1, k_in, H, W): the hard gate
        ``W2 relu(W1 GAP(x) + b1) + b2 > 0``, GAP as a matrix-vector product."""
        k, hw = x.shape[1], x.shape[2] * x.shape[3]
        if self._gap is None or len(self._gap) != hw:
            self._gap = np.full(hw, 1.0 / hw, dtype=np.float32)
        s = x.numpy().reshape(k, hw) @ self._gap  # inactive channels add nothing
        h = np.maximum(s @ (self.w1t if idx is None else self.w1t.take(idx, 0)) + self.b1, 0.0)
        return (h @ self.w2t > self._minus_b2).nonzero()[0]

    def run(self, x: torch.Tensor, idx: np.ndarray | None, dense: bool):
        """x (1, k_in, H, W): active input channels ``idx`` (None = all) -> same for output."""
        self.hw_in = tuple(x.shape[2:])
        w, b, out_idx = self.weight, self.bias, None
        if self.controller is not None and not dense:
            out_idx = self.gates(x, idx)
            if out_idx.size == 0:  # keep one all-zero channel so that shapes stay valid
                out_idx = np.zeros(1, dtype=np.int64)
                k_in = x.shape[1]
                w, b = w.new_zeros(1, k_in, *w.shape[2:]), b.new_zeros(1)
            elif out_idx.size == len(self.b_np):  # every gate open: nothing to gather
                out_idx = None
                if idx is not None:
                    w = torch.from_numpy(self.w_np.take(idx, 1))
            else:
                wn = self.w_np.take(out_idx, 0)
                w = torch.from_numpy(wn if idx is None else wn.take(idx, 1))
                b = torch.from_numpy(self.b_np.take(out_idx))
        elif idx is not None:
            w = torch.from_numpy(self.w_np.take(idx, 1))
        c2 = self.conv
        out = F.conv2d(x, w, b, c2.stride, c2.padding, c2.dilation)
        self.hw_out = tuple(out.shape[2:])
        return (out.relu_() if self.relu else out), out_idx

    def count(self, k_in: torch.Tensor, gates: Gates | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(FLOPs, active output channels) per input, given active input channels k_in (N,)."""
        kh, kw = self.conv.kernel_size
        k_out = torch.full_like(k_in, self.conv.out_channels)
        cost = torch.zeros_like(k_in)
        if self.controller is not None and gates is not None:
            k_out = gates[self.name].flatten(1).sum(1).to(k_in.dtype)
            hidden = self.controller.hidden
            gap = k_in * self.hw_in[0] * self.hw_in[1]
            cost = gap + k_in * hidden + hidden * self.conv.out_channels
        hw = self.hw_out[0] * self.hw_out[1]
        return cost + k_out * k_in * kh * kw * hw, k_out


class _BlockOp:
    """A residual BasicBlock: gated branch convs, dense shortcut, add, ReLU."""

    def __init__(self, name: str, block: BasicBlock) -> None:
        self.conv1, self.conv2 = (
            _ConvOp(f"{name}.conv1", block.conv1),
            _ConvOp(f"{name}.conv2", block.conv2),
        )
        self.conv1.fold(block.bn1)
        self.conv1.relu = True
        self.conv2.fold(block.bn2)
        self.short = None
        self.first = False  # set by _compile when the block reads the caller's tensor
        self.channels = block.conv2.out_channels
        if isinstance(block.shortcut, nn.Sequential):
            self.short = _ConvOp(f"{name}.shortcut.0", block.shortcut[0])
            self.short.fold(block.shortcut[1])

    def run(self, x: torch.Tensor, idx: np.ndarray | None, dense: bool):
        if idx is not None:  # a block reads a full tensor: restore the skipped channels
            full = x.new_zeros(1, self.conv1.conv.in_channels, *x.shape[2:])
            x = full.index_copy_(1, torch.from_numpy(idx), x)
        h, i1 = self.conv1.run(x, None, dense)
        h, i2 = self.conv2.run(h, i1, dense)
        if self.short is not None:
            sc = self.short.run(x, None, dense)[0]
        else:  # the engine's own intermediate may be overwritten, the caller's input not
            sc = x.clone() if self.first else x
        out = sc.add_(h) if i2 is None else sc.index_add_(1, torch.from_numpy(i2), h)
        return out.relu_(), None

    def count(self, k_in: torch.Tensor, gates: Gates | None) -> tuple[torch.Tensor, torch.Tensor]:
        full = torch.full_like(k_in, self.conv1.conv.in_channels)
        c1, k1 = self.conv1.count(full, gates)
        c2, _ = self.conv2.count(k1, gates)
        cs = self.short.count(full, gates)[0] if self.short is not None else 0
        return c1 + c2 + cs, torch.full_like(k_in, self.channels)


class _HeadOp:
    """Global average pooling + linear classifier on the active channels."""

    def __init__(self, fc: nn.Linear) -> None:
        self.fc = fc
        self.w_np = fc.weight.detach().cpu().float().numpy().copy()  # (classes, C)
        b = fc.bias.detach().cpu().float() if fc.bias is not None else torch.zeros(len(self.w_np))
        self.b_np = b.numpy().copy()

    def run(self, x: torch.Tensor, idx: np.ndarray | None, dense: bool):
        w = self.w_np if idx is None else self.w_np[:, idx]
        s = x.numpy().reshape(x.shape[1], -1).mean(1)
        return torch.from_numpy(w @ s + self.b_np)[None], None

    def count(self, k_in: torch.Tensor, gates: Gates | None) -> tuple[torch.Tensor, torch.Tensor]:
        return k_in * self.fc.out_features, torch.full_like(k_in, self.fc.out_features)


def _max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` as two strided maxima (NumPy): the same values, and many times
    faster than PyTorch's CPU kernel for one image (it serves the dense and the sparse run
    alike)."""
    a = x.numpy()
    h, w = a.shape[2] // 2 * 2, a.shape[3] // 2 * 2
    rows = np.maximum(a[:, :, 0:h:2, :w], a[:, :, 1:h:2, :w])  # (N, C, H/2, W)
    return torch.from_numpy(np.maximum(rows[..., 0::2], rows[..., 1::2]))  # (N, C, H/2, W/2)


class _Normalise:
    """:class:`Normalize` on the snapshot of its statistics, in NumPy."""

    def __init__(self, module: Normalize) -> None:
        self.mean = module.mean.detach().cpu().float().numpy().copy()
        self.inv_std = 1.0 / module.std.detach().cpu().float().numpy()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy((x.numpy() - self.mean) * self.inv_std)


def _is_2x2(pool: nn.Module) -> bool:
    return (
        isinstance(pool, nn.MaxPool2d)
        and all(v in (2, (2, 2)) for v in (pool.kernel_size, pool.stride))
        and pool.padding in (0, (0, 0))
        and pool.dilation in (1, (1, 1))
        and not pool.ceil_mode
    )


class _ApplyOp:
    """A channel-wise module (normalisation of the image, pooling): run as it is."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.fn: Callable[[torch.Tensor], torch.Tensor] = module
        if _is_2x2(module):
            self.fn = _max_pool_2x2
        elif isinstance(module, Normalize):
            self.fn = _Normalise(module)

    def run(self, x: torch.Tensor, idx: np.ndarray | None, dense: bool):
        return self.fn(x), idx

    def count(self, k_in: torch.Tensor, gates: Gates | None) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros_like(k_in), k_in


def _compile(model: StagedNet) -> list[Any]:
    names = {id(m): n for n, m in model.named_modules()}
    ops: list[Any] = []

    def walk(module: nn.Module) -> None:
        for child in module.children():
            last = ops[-1] if ops else None
            if isinstance(child, nn.Sequential):
                walk(child)
            elif isinstance(child, nn.Conv2d):
                ops.append(_ConvOp(names[id(child)], child))
            elif isinstance(child, nn.BatchNorm2d) and isinstance(last, _ConvOp):
                if last.folded or last.relu:
                    raise ConfigError(f"sparse execution: unexpected norm after {last.name!r}")
                last.fold(child)
            elif isinstance(child, nn.ReLU) and isinstance(last, _ConvOp) and not last.relu:
                last.relu = True
            elif isinstance(child, BasicBlock):
                ops.append(_BlockOp(names[id(child)], child))
            elif isinstance(child, nn.Linear) and isinstance(last, _ApplyOp):
                if not isinstance(last.module, GlobalPool):
                    raise ConfigError("sparse execution: the classifier must follow GlobalPool")
                ops[-1] = _HeadOp(child)
            elif isinstance(child, Normalize | nn.MaxPool2d | GlobalPool | nn.ReLU | nn.Identity):
                ops.append(_ApplyOp(child))
            else:
                raise ConfigError(
                    f"sparse execution does not support {type(child).__name__} "
                    f"({names[id(child)]}); it runs pellucid's convnet, vgg and resnet8/20"
                )

    walk(model)
    for op in ops:  # until the first conv, tensors may be (views of) the caller's input
        if isinstance(op, _BlockOp):
            op.first = True
        if isinstance(op, _ConvOp | _BlockOp):
            break
    if not ops or not isinstance(ops[-1], _HeadOp):
        raise ConfigError("sparse execution: the model must end with GlobalPool and Linear")
    return ops


class SparseNet:
    """Batch-1 execution of a decoupled StagedNet that computes only the active channels.

    A CPU engine: the weights (batch norm folded in) and the controllers' weights are a
    float32 CPU snapshot taken at construction, and the per-image channel bookkeeping (gates,
    index lists, weight gathers) runs in NumPy, whose calls on arrays of a few dozen numbers
    cost about a microsecond against several for PyTorch's dispatch. ``net(x)`` equals the
    model's eval-mode output up to float error; ``net(x, dense=True)`` is the same engine with
    every channel on and no controllers.

    Parameters
    ----------
    model : StagedNet
        ``convnet``, ``vgg`` or ``resnet8/20``, with or without controllers.
    example : Tensor
        One input (1, C, H, W), run once to record the layers' spatial sizes for
        :meth:`flops`.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        if not isinstance(model, StagedNet):
            raise ConfigError(
                f"sparse execution supports pellucid's StagedNet backbones, not "
                f"{type(model).__name__}"
            )
        self.ops = _compile(model)
        self.in_channels = model.in_channels
        self(example[:1])

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, dense: bool = False) -> torch.Tensor:
        """(1, C, H, W) -> (1, classes) logits (float32, on the CPU)."""
        if x.ndim != 4 or x.shape[0] != 1:
            raise DataError(f"sparse execution runs one image at a time, got {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise DataError(f"the network takes {self.in_channels} channels, got {x.shape[1]}")
        x = x.detach().to("cpu", torch.float32)
        idx = None
        for op in self.ops:
            x, idx = op.run(x, idx, dense)
        return x

    def flops(self, gates: Gates | None = None) -> torch.Tensor:
        """(N,) FLOPs per input for gates name -> (N, K) in {0, 1}; ``None``: the dense net."""
        n = len(next(iter(gates.values()))) if gates else 1
        k = torch.full((n,), float(self.in_channels), dtype=torch.float64)
        total = torch.zeros(n, dtype=torch.float64)
        for op in self.ops:
            cost, k = op.count(k, gates)
            total = total + cost
        return total

    def dense_flops(self) -> float:
        return float(self.flops(None)[0])


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
