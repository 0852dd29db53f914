"""Interpretable-by-design training methods; each wraps a model and implements ``step``."""

from __future__ import annotations

from typing import Any

from torch import nn

from pellucid.methods import csg, standard  # noqa: F401  (fill the registry)
from pellucid.methods.base import Method, StepResult
from pellucid.methods.csg import CSG
from pellucid.methods.decoupling import Decoupling as Decoupling  # registers "decoupling"
from pellucid.methods.icnn import ICNN as ICNN  # registers "icnn"; pellucid.methods.ICNN
from pellucid.methods.standard import Standard
from pellucid.registry import METHODS

__all__ = [
    "CSG",
    "ICNN",
    "Decoupling",
    "Method",
    "Standard",
    "StepResult",
    "build_method",
    "method_names",
]


def method_names() -> list[str]:
    """The registered training methods' names (``pellucid train --method``)."""
    return METHODS.names()


def build_method(name: str, model: nn.Module, num_classes: int, **options: Any) -> Method:
    """Wrap ``model`` in the registered method ``name`` with ``options``."""
    return METHODS.build(name, model, num_classes, **options)
