"""Metrics: pure functions; each declares its name and direction in ``metrics.base.SPECS``."""

from pellucid.metrics.activations import pooled_activations
from pellucid.metrics.base import SPECS, MetricSpec
from pellucid.metrics.gates import assigned_class, gate_density, gate_overlap
from pellucid.metrics.mis import (
    class_share,
    mi_matrix,
    mis_from_activations,
    mutual_information_score,
)

__all__ = [
    "SPECS",
    "MetricSpec",
    "assigned_class",
    "class_share",
    "gate_density",
    "gate_overlap",
    "mi_matrix",
    "mis_from_activations",
    "mutual_information_score",
    "pooled_activations",
]
