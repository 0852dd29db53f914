"""The one place where forward hooks are attached; every hook is removed on exit, also when
the body raises. Our own models expose features explicitly; hooks are for foreign models
and for nested layer names."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


def _modules(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    from pellucid.models import get_layer

    return {n: get_layer(model, n) for n in names}


@contextmanager
def capture(
    model: nn.Module,
    names: Sequence[str],
    detach: bool = False,
    allow_missing_output: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named layers during forward passes inside the block.

    Parameters
    ----------
    model : nn.Module
    names : sequence of str
        Module names as in ``model.named_modules()``.
    detach : bool
        Store detached outputs (no graph kept).
    allow_missing_output : bool
        Store non-tensor outputs as they are instead of raising.

    Yields
    ------
    dict
        name -> the layer's latest output.
    """
    modules = _modules(model, names)
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make(name: str) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if isinstance(output, torch.Tensor):
                store[name] = output.detach() if detach else output
            elif allow_missing_output:
                store[name] = output
            else:
                raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor")

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make(name)))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def edit_output(
    model: nn.Module, name: str, fn: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Replace the output ``h`` of layer ``name`` by ``fn(h)`` during the block."""
    module = _modules(model, [name])[name]
    handle = module.register_forward_hook(lambda _m, _i, out: fn(out))
    try:
        yield
    finally:
        handle.remove()


def count_hooks(model: nn.Module) -> int:
    """Number of forward/backward hooks attached anywhere in ``model`` (for tests)."""
    total = 0
    for m in model.modules():
        total += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
    return total
