"""Name -> factory registries for datasets, models, methods, explainers, metrics and attacks.

Registries are filled by decorators where each object is defined; the CLI takes its choices
from them, never from a second list.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pellucid.errors import ConfigError, PellucidError
from pellucid.option_types import describe, fits, option_hints

T = TypeVar("T", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry:
    """One registered factory with its one-line description."""

    name: str
    factory: Callable[..., Any]
    help: str


class Registry(Generic[T]):
    """A mapping from names to factories, filled with :meth:`register`.

    Parameters
    ----------
    kind : str
        What the registry holds ("dataset", "model", ...); used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, help: str | None = None) -> Callable[[T], T]:
        """Decorator that registers ``factory`` under ``name``."""

        def decorator(factory: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = help or (factory.__doc__ or "").strip().splitlines()[0:1]
            text = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self._entries[name] = Entry(name, factory, text)
            return factory

        return decorator

    def get(self, name: str) -> T:
        """Return the factory registered as ``name``; a clear error when there is none."""
        try:
            return self._entries[name].factory  # type: ignore[return-value]
        except KeyError:
            raise PellucidError(self.unknown_message(name)) from None

    def build(self, name: str, *args: Any, fixed: tuple[str, ...] = (), **options: Any) -> Any:
        """Call the factory ``name`` with ``args`` and ``options``; an option the factory
        does not take is a clear error listing the ones it does (``fixed`` = arguments
        supplied by pellucid, not by the user, left out of that list)."""
        factory = self.get(name)
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = [k for k in options if k not in params]
        if unknown and not takes_any:
            named = [p for p, v in params.items() if v.kind is not v.VAR_POSITIONAL]
            allowed = [p for p in named[len(args) :] if p not in fixed]  # args fill the first
            raise ConfigError(
                f"{self.kind} {name!r} has no option {unknown[0]!r}; "
                f"options: {', '.join(allowed) or '-'}"
            )
        hints = option_hints(factory)
        for key, value in options.items():
            if key in hints and not fits(value, hints[key]):
                raise ConfigError(
                    f"{self.kind} {name!r}: option {key} must be {describe(hints[key])}, "
                    f"got {value!r}"
                )
        return factory(*args, **options)

    def unknown_message(self, name: str) -> str:
        """The error text for an unknown ``name``: the closest registered name, if any, and
        all of them."""
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; choose from: {', '.join(self.names())}"

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """The registered :class:`Entry` objects, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


DATASETS: Registry[Callable[..., Any]] = Registry("dataset")
MODELS: Registry[Callable[..., Any]] = Registry("model")
METHODS: Registry[Callable[..., Any]] = Registry("method")
EXPLAINERS: Registry[Callable[..., Any]] = Registry("explainer")
METRICS: Registry[Callable[..., Any]] = Registry("metric")
ATTACKS: Registry[Callable[..., Any]] = Registry("attack")
