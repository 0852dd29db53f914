"""Sparse execution, the engine (Li et al., "Interpretable Neural Network Decoupling",
ECCV 2020, Sec. 4.4; decoupling.md, "Acceleration").

A decoupled StagedNet is compiled into the ops of :mod:`pellucid.apps.sparse_ops`, which
:class:`SparseNet` runs on one image at a time, computing only the active channels, and
whose FLOPs per input it counts. :mod:`pellucid.apps.acceleration` re-exports it and measures
its latency.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pellucid.apps.sparse_ops import Gates, _ApplyOp, _BlockOp, _ConvOp, _HeadOp
from pellucid.errors import ConfigError, DataError
from pellucid.models.base import GlobalPool, Normalize, StagedNet
from pellucid.models.resnet import BasicBlock


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
        """FLOPs of one input with every channel on (:meth:`flops` without gates)."""
        return float(self.flops(None)[0])
