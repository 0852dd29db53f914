"""Re-initialising a model's weights, all or block by block: the damaged copies of the
model-parameter randomisation checks in :mod:`pellucid.metrics.sanity` (Adebayo et al. 2018).
"""

from __future__ import annotations

import copy
import warnings
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from pellucid.errors import DataError

__all__ = ["execution_order", "get_block", "parameter_blocks", "randomised_copy"]

_SEED_SALT = 0x5EED_F00D  # randomised_copy: seed s must not replay torch.manual_seed(s)


def _reset(module: nn.Module) -> set[int]:
    """Re-initialise every sub-module of ``module`` that can (``reset_parameters()``) and
    reset normalisation statistics; the ids of the parameters that were reset."""
    covered: set[int] = set()
    with torch.no_grad():
        for mod in module.modules():
            reset = getattr(mod, "reset_parameters", None)
            if callable(reset):
                reset()
                covered.update(id(p) for p in mod.parameters(recurse=False))
            stats = getattr(mod, "reset_running_stats", None)
            if callable(stats):
                stats()
    return covered


def _block_seed(seed: int, name: str) -> int:
    """The generator seed of block ``name``: the same block gets the same weights in every
    step of a cascade, whatever else is re-initialised with it."""
    return ((int(seed) ^ _SEED_SALT) + zlib.crc32(name.encode())) % (1 << 63)


def get_block(model: nn.Module, name: str) -> nn.Module:
    """The sub-module ``name`` of ``model``; a clear error listing the blocks if unknown."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise DataError(
            f"unknown layer {name!r}; blocks with parameters: {parameter_blocks(model)}"
        ) from None


def randomised_copy(
    model: nn.Module, seed: int = 0, layers: Sequence[str] | None = None
) -> nn.Module:
    """A deep copy of ``model`` with its learnable weights (or those of ``layers``)
    re-initialised.

    Every sub-module with a ``reset_parameters()`` method (convolutions, linear and
    normalisation layers, ...) is reset to its default initialisation, and normalisation
    running statistics are reset (``reset_running_stats()``). Buffers that are not learnable
    statistics (e.g. the mean/std of :class:`pellucid.models.Normalize`) are kept. The
    re-initialisation draws from the CPU generator seeded with ``seed`` (mixed with a fixed
    salt, so that a model built right after ``torch.manual_seed(seed)`` is not re-drawn
    with its own initial weights) inside ``torch.random.fork_rng``, so it is reproducible,
    independent of the model's device, and leaves the global RNG state untouched. The
    original model is not modified; the copy keeps its train/eval flags, requires_grad
    flags and device.

    Parameters
    ----------
    model : nn.Module
        The trained model.
    seed : int
        Seed of the re-initialisation.
    layers : sequence of str, optional
        Module names (``model.get_submodule``) to re-initialise; the rest keeps its trained
        weights. Each named module draws from its own generator seeded by ``seed`` and its
        name, so a cascade's steps share the weights of the blocks they share. None (default)
        re-initialises the whole model from one generator.

    Raises
    ------
    DataError
        A name in ``layers`` is not a sub-module of ``model``.

    Warns
    -----
    UserWarning
        Names any learnable parameter of what is re-initialised that no
        ``reset_parameters()`` covers (for example a method's own ``nn.Parameter`` such as
        CSG gates): those keep their trained values.

    References
    ----------
    Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps",
    NeurIPS 2018 (model parameter randomisation test: full, cascading and independent
    re-initialisation).
    """
    if layers is not None:
        layers = list(layers)
        for name in layers:
            get_block(model, name)
    out = copy.deepcopy(model)
    on_cpu = all(t.device.type == "cpu" for t in [*out.parameters(), *out.buffers()])
    work = out if on_cpu else copy.deepcopy(out).cpu()
    covered: set[int] = set()
    with torch.random.fork_rng(devices=[]):
        if layers is None:
            torch.random.default_generator.manual_seed((int(seed) ^ _SEED_SALT) % (1 << 63))
            covered = _reset(work)
            targets = list(work.named_parameters())
        else:
            targets = []
            for name in layers:
                torch.random.default_generator.manual_seed(_block_seed(seed, name))
                block = work.get_submodule(name)
                covered |= _reset(block)
                prefix = f"{name}." if name else ""
                targets += [(prefix + n, p) for n, p in block.named_parameters()]
    left = [name for name, p in targets if id(p) not in covered]
    if left:
        warnings.warn(
            f"randomised_copy: {len(left)} parameter(s) have no reset_parameters() and keep "
            f"their trained values: {', '.join(left[:8])}{' ...' if len(left) > 8 else ''}",
            stacklevel=2,
        )
    if work is not out:
        out.load_state_dict(work.state_dict())
    return out


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def parameter_blocks(model: nn.Module) -> list[str]:
    """The model's top-level blocks that hold parameters, in registration order: the steps
    of :func:`cascading_randomisation`.

    The children of the model that hold parameters (``layer1`` ... ``fc`` of our models);
    a wrapper with a single such child and no parameters of its own (``net`` of a
    torchvision model loaded with ``tv:NAME``) is looked through, so its blocks are the
    wrapped model's (``net.layer1`` ...). A model that knows better lists its own with a
    ``parameter_blocks()`` method (the ICNN network: its backbone's blocks and ``icnn``).
    """
    own_list = getattr(model, "parameter_blocks", None)
    if callable(own_list):
        return list(own_list())
    mod, prefix = model, ""
    while True:
        kids = [(n, c) for n, c in mod.named_children() if _has_parameters(c)]
        own = any(True for _ in mod.parameters(recurse=False))
        if len(kids) == 1 and not own:
            prefix, mod = f"{prefix}{kids[0][0]}.", kids[0][1]
            continue
        return [prefix + n for n, _ in kids]


def execution_order(
    model: nn.Module, names: list[str], run: Callable[[], torch.Tensor]
) -> tuple[torch.Tensor, list[str]]:
    """``run()``'s result and ``names`` sorted by when their module first ran during it
    (blocks that never ran keep their order, after the others)."""
    seen: list[str] = []
    handles = []
    for name in names:

        def hook(_m: nn.Module, _inputs: Any, name: str = name) -> None:
            if name not in seen:
                seen.append(name)

        handles.append(model.get_submodule(name).register_forward_pre_hook(hook))
    try:
        out = run()
    finally:
        for h in handles:
            h.remove()
    return out, seen + [n for n in names if n not in seen]
