"""Validation of :class:`~pellucid.explain.neuromask.options.NeuroMaskOptions`: every option
out of range or naming an unknown choice stops with an error that names it, before any
optimisation starts (NeuroMask: Alzantot, Widdicombe, Julier & Srivastava, "NeuroMask:
Explaining Predictions of Deep Neural Networks through Mask Learning", SMARTCOMP 2019)."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from pellucid.errors import ConfigError, DataError
from pellucid.explain.neuromask.options import (
    DELETE_MASKS,
    DELETE_OBJECTIVES,
    FILLS,
    OPTIMIZERS,
    REFINE_MODES,
    SMOOTHNESS,
    SPARSITY,
    NeuroMaskOptions,
)
from pellucid.option_types import describe, fits

__all__ = ["areas", "is_fill", "validate"]


def is_fill(v: Any) -> bool:
    """A fill: one of :data:`FILLS` or a pixel value in [0, 1] (a number, not a bool)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return 0 <= v <= 1
    return v in FILLS


def _choices(o: NeuroMaskOptions) -> None:
    """The options that name one of a fixed set of choices."""
    if not is_fill(o.fill):
        raise ConfigError(
            f"fill must be one of {', '.join(FILLS)} or a pixel value in [0, 1], got {o.fill!r}"
        )
    if o.delete_fill is not None and not is_fill(o.delete_fill):
        raise ConfigError(
            f"delete_fill must be None, one of {', '.join(FILLS)} or a pixel value in [0, 1], "
            f"got {o.delete_fill!r}"
        )
    for key, allowed in (
        ("smoothness", SMOOTHNESS),
        ("sparsity", SPARSITY),
        ("delete_objective", DELETE_OBJECTIVES),
        ("delete_mask", DELETE_MASKS),
        ("refine_mode", REFINE_MODES),
        ("optimizer", OPTIMIZERS),
    ):
        value = getattr(o, key)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    fills = o.refine_fills
    if not isinstance(fills, (list, tuple)) or not all(is_fill(f) for f in fills):
        raise ConfigError(
            f"refine_fills must be a sequence of fills ({', '.join(FILLS)} or pixel values "
            "in [0, 1]), "
            f"got {fills!r}"
        )
    if o.init != "uniform" and not isinstance(o.init, (int, float)):
        raise ConfigError(f"init must be 'uniform' or a number, got {o.init!r}")
    _check_area(o)


def areas(o: NeuroMaskOptions) -> tuple[float, ...]:
    """The areas of ``sparsity="area"`` as a tuple (empty without an area constraint)."""
    if o.area is None:
        return ()
    if isinstance(o.area, (int, float)) and not isinstance(o.area, bool):
        return (float(o.area),)
    return tuple(float(a) for a in o.area)


def _check_area(o: NeuroMaskOptions) -> None:
    if (o.sparsity == "area") != (o.area is not None):
        raise ConfigError(
            'sparsity="area" and the area option go together: set both or neither '
            f"(got sparsity={o.sparsity!r}, area={o.area!r})"
        )
    if o.area is None:
        return
    values = o.area if isinstance(o.area, (list, tuple)) else (o.area,)
    if not values or not all(
        isinstance(a, (int, float)) and not isinstance(a, bool) and 0 < a < 1 for a in values
    ):
        raise ConfigError(
            f"area must be a number or a sequence of numbers in (0, 1), got {o.area!r}"
        )


def _types(o: NeuroMaskOptions) -> None:
    """Every option holds a value of its annotated kind (:mod:`pellucid.option_types`), e.g.
    not the string a command-line value such as ``lr=nan`` reads as."""
    hints = typing.get_type_hints(NeuroMaskOptions)
    for f in dataclasses.fields(o):
        value = getattr(o, f.name)
        if not fits(value, hints[f.name]):
            raise ConfigError(
                f"NeuroMask option {f.name} must be {describe(hints[f.name])}, got {value!r}"
            )


def validate(o: NeuroMaskOptions) -> None:
    """Raise :class:`ConfigError` naming the first option of the wrong type or out of
    range (a :class:`DataError` for a non-finite weight)."""
    _types(o)
    _choices(o)
    checks = {
        "temperature": o.temperature > 0,
        "lr": o.lr > 0,
        "iterations": o.iterations >= 1,
        "patience": o.patience >= 0,
        "tol": o.tol >= 0,
        "blur_sigma": o.blur_sigma is None or o.blur_sigma > 0,
        "logit_bound": o.logit_bound > 0,
        "mask_scale": o.mask_scale >= 1,
        "pyramid": isinstance(o.pyramid, int)
        and not isinstance(o.pyramid, bool)
        and o.pyramid >= 1,
        "mask_size": o.mask_size is None or o.mask_size >= 1,
        "l_pred": o.l_pred >= 0,
        "l_sparse": o.l_sparse >= 0,
        "l_smooth": o.l_smooth >= 0,
        "l_delete": o.l_delete >= 0,
        "smooth_map": o.smooth_map >= 0,
        "refine": o.refine >= 0,
        "refine_steps": isinstance(o.refine_steps, int)
        and not isinstance(o.refine_steps, bool)
        and o.refine_steps >= 1,
    }
    for key, ok in checks.items():
        if not ok:
            raise ConfigError(f"NeuroMask option {key}={getattr(o, key)!r} is out of range")
    for key in ("l_pred", "l_sparse", "l_smooth", "l_delete", "lr", "temperature", "refine", "tol"):
        if not math.isfinite(float(getattr(o, key))):
            raise DataError(f"NeuroMask option {key} must be finite")
