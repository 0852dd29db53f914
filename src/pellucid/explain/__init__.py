"""Explainers with one call shape: ``explain(inputs, target=None) -> (N, 1, H, W)`` in [0, 1].

NeuroMask is ours; the baselines are thin adapters over Captum; ``centre`` and ``random`` are
controls. Find them by name::

    from pellucid.explain import build_explainer
    maps = build_explainer("neuromask", model).explain(images)   # target None = predicted
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pellucid.explain.base import Explainer, check_inputs, model_state, resolve_target
from pellucid.explain.baselines import (
    CentreExplainer,
    GradCAMExplainer,
    IntegratedGradientsExplainer,
    OcclusionExplainer,
    RandomExplainer,
    SaliencyExplainer,
)
from pellucid.explain.neuromask import PRESETS, NeuroMask, NeuroMaskOptions
from pellucid.registry import EXPLAINERS


def explainer_names() -> list[str]:
    """Registered explainers."""
    return EXPLAINERS.names()


def build_explainer(name: str, model: nn.Module, **options: Any) -> Explainer:
    """The explainer registered as ``name`` for ``model``; unknown options are a clear error.
    ``neuromask-reference`` is NeuroMask with the paper's settings."""
    return EXPLAINERS.build(name, model, fixed=("model",), **options)


__all__ = [
    "PRESETS",
    "CentreExplainer",
    "Explainer",
    "GradCAMExplainer",
    "IntegratedGradientsExplainer",
    "NeuroMask",
    "NeuroMaskOptions",
    "OcclusionExplainer",
    "RandomExplainer",
    "SaliencyExplainer",
    "build_explainer",
    "check_inputs",
    "explainer_names",
    "model_state",
    "resolve_target",
]
