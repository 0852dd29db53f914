"""A model's train/eval modes, ``requires_grad`` flags and device, handled in one place.

Explainers and metrics run a user's model without leaving a trace on it: every module's mode
and every parameter's ``requires_grad`` flag are put back on exit, also when the body raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["eval_mode", "model_device", "model_state", "restoring"]


@contextmanager
def restoring(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the model may be changed at will; on exit (also on error) every
    module's train/eval mode and every parameter's ``requires_grad`` are as they were."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def model_state(model: nn.Module, train: bool = False) -> Iterator[nn.Module]:
    """Put ``model`` in eval (or train) mode with frozen parameters inside the block; restore
    every module's mode and every parameter's ``requires_grad`` on exit, also on error."""
    with restoring(model):
        model.train(train)
        for p in model.parameters():
            p.requires_grad_(False)
        yield model


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode inside the block and give every module its own mode back
    on exit, also on error: a model in train mode with frozen BatchNorm layers comes back
    with those layers still in eval mode (``model.train(was_training)`` would not)."""
    with restoring(model):
        model.eval()
        yield model


def model_device(model: nn.Module, fallback: torch.device | str = "cpu") -> torch.device:
    """The device of the model's first parameter or buffer; ``fallback`` for a model that
    has neither."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device(fallback)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (``torch.float32`` for a model
    without one)."""
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def input_channels(model: nn.Module) -> int | None:
    """Channels the model expects: those of its first ``Conv2d`` (None if it has none)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return None
