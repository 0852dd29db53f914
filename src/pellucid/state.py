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


def input_channels(model: nn.Module, inputs: torch.Tensor | None = None) -> int | None:
    """Channels the model expects: those of its first ``Conv2d`` (None if it has none).

    "First" is the first declared. When ``inputs`` (N, C, H, W) are given and C differs from
    that convolution's channels, the convolution that *runs* first on them decides: a model
    may declare its layers in another order than it runs them. The probe runs the forward
    pass on one image in eval mode without gradients and stops at the first convolution.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return None
    declared = int(convs[0].in_channels)
    if inputs is None or inputs.dim() != 4 or inputs.shape[1] == declared:
        return declared
    ran = _first_conv_run(model, convs, inputs[:1])
    return declared if ran is None else int(ran.in_channels)


class _ConvReached(Exception):
    """Raised by a forward pre-hook to stop the probe at the first convolution."""


def _first_conv_run(
    model: nn.Module, convs: list[nn.Conv2d], inputs: torch.Tensor
) -> nn.Conv2d | None:
    """The first of ``convs`` that ``model`` calls on ``inputs`` (None if the forward pass
    fails before, or calls none)."""

    def stop(module: nn.Module, args: object) -> None:
        raise _ConvReached(module)

    handles = [c.register_forward_pre_hook(stop) for c in convs]
    try:
        with eval_mode(model), torch.no_grad():
            model(inputs.to(model_device(model), model_dtype(model)))
    except _ConvReached as reached:
        return reached.args[0]
    except Exception:  # the model's own error is reported where the model is run
        return None
    finally:
        for h in handles:
            h.remove()
    return None
