"""What every metric declares: its name and which direction is better. The report and the
README tables read the direction from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name, whether higher is better, and a one-line description."""

    name: str
    higher_is_better: bool
    description: str


SPECS: dict[str, MetricSpec] = {}


def declare(name: str, higher_is_better: bool, description: str) -> MetricSpec:
    """Record a metric's direction (idempotent)."""
    spec = MetricSpec(name, higher_is_better, description)
    SPECS[name] = spec
    return spec


declare("test_accuracy", True, "top-1 accuracy on the test split")
declare("train_seconds", False, "wall-clock training time")
