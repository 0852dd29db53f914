"""Checking a user's option values against the type hints of the function that takes them,
so that a value of the wrong kind (``--method-option lambda_csg=abc`` arrives as the string
``"abc"``) stops with an error naming the option instead of failing deep inside."""

from __future__ import annotations

import collections.abc
import numbers
import types
import typing
from collections.abc import Callable
from typing import Any

__all__ = ["describe", "fits", "option_hints"]


def option_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """The resolved type hints of ``factory``'s parameters (of ``__init__`` for a class);
    empty where they cannot be resolved."""
    target = factory.__init__ if isinstance(factory, type) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # a hint naming something not importable here: check nothing
        return {}


def fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the kind ``hint`` describes; ints fit ``float``, bools fit only
    ``bool``; a hint this does not know (``Any``, classes, callables) accepts anything."""
    if hint is Any or hint is object:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (list, tuple, collections.abc.Sequence):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return not args or all(fits(v, args[0]) for v in value)
    if origin in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return True


def describe(hint: Any) -> str:
    """A short description of ``hint`` for an error message."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin in (list, tuple, collections.abc.Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(args[0], describe(args[0]))}" if args else "a list"
    if origin in (dict, collections.abc.Mapping):
        return "a mapping of keys to values"
    return names.get(hint, getattr(hint, "__name__", str(hint)))
