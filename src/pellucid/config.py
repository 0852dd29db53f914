"""Run configuration: frozen dataclasses, YAML load/save. The resolved config is saved with
every run (``config.yaml``), so a run directory says exactly how it was made."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from pellucid.errors import ConfigError


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no objects from tags) that also reads ``1e-3`` and ``2E5`` as
    numbers: YAML 1.1, which PyYAML implements, wants ``1.0e-3``, so ``lr: 1e-3`` would be
    the string "1e-3" (YAML 1.2 and every other tool read it as a float)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    """``text`` read as YAML with :class:`YamlLoader`."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506  (a SafeLoader)


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "constant")
AUGMENTS = ("none", "shift", "shift-flip")


def _check_types(obj: Any, section: str) -> None:
    """Every field of the config dataclass ``obj`` holds a value of its annotated kind (a
    YAML config can hold ``batch_size: abc``); a :class:`ConfigError` names the first that
    does not."""
    from pellucid.option_types import describe, fits

    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not fits(value, hints[f.name]):
            raise ConfigError(
                f"{section}.{f.name} must be {describe(hints[f.name])}, got {value!r}"
            )


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, with which options and batching.

    ``seed`` draws the data: the split of a bundled dataset and every synthetic image
    (cluttered-mnist's clutter, shapes). ``None`` (default) uses the training seed
    (``train.seed``), as every run did before this option existed; set it to train several
    seeds on the same data, so that their spread is the training's alone.

    ``random_labels`` trains on a permutation of the training split's labels (drawn from
    the data seed; class frequencies kept), for the data randomisation sanity check
    (Adebayo et al. 2018, :func:`pellucid.metrics.data_randomisation`). Validation and test
    keep their true labels, so their accuracy shows the model learnt nothing transferable.
    """

    name: str = "mnist"
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    augment: str = "shift"  # none | shift | shift-flip
    max_shift: int = 2
    num_workers: int = 0
    seed: int | None = None
    random_labels: bool = False

    def __post_init__(self) -> None:
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0
        ):
            raise ConfigError(f"data seed must be an integer >= 0 or None, got {self.seed!r}")
        _check_types(self, "data")
        for key in ("max_shift", "num_workers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"data.{key} must be >= 0, got {getattr(self, key)}")
        if self.augment not in AUGMENTS:
            raise ConfigError(f"unknown augment {self.augment!r}; choose from: {AUGMENTS}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class ModelConfig:
    """Which backbone; ``weights`` is an optional local file to start from."""

    name: str = "resnet8"
    options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None

    def __post_init__(self) -> None:
        _check_types(self, "model")


@dataclass(frozen=True)
class MethodConfig:
    """The training objective (``standard``, ``csg``, ...) and its options."""

    name: str = "standard"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_types(self, "method")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the loop itself knows nothing about methods."""

    epochs: int = 5
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    seed: int = 0
    device: str = "auto"
    tensorboard: bool = False
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        _check_types(self, "train")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose from: {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose from: {SCHEDULES}")
        for key in ("epochs", "seed"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{key} must be an integer, got {value!r}")
        for key in ("lr", "momentum", "weight_decay", "grad_clip"):
            value = getattr(self, key)
            if value is None and key == "grad_clip":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{key} must be a number, got {value!r}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be an integer in [0, 2**63), got {self.seed}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must lie in [0, 1), got {self.momentum}")
        if not 0 <= self.weight_decay < math.inf:
            raise ConfigError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and not 0 < self.grad_clip < math.inf:
            raise ConfigError(
                f"grad_clip must be None or a finite number > 0, got {self.grad_clip}"
            )


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. ``info`` is filled when the run starts (the dataset's
    classes, channels and statistics) so a saved run can be rebuilt without its data;
    ``init`` names a run directory whose weights initialise the model."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` to its fields (:func:`dataclasses.replace`; the checks
        run again)."""
        return dataclasses.replace(self, **changes)

    @property
    def data_seed(self) -> int:
        """The seed that draws the data: ``data.seed``, or the training seed when it is None."""
        return self.train.seed if self.data.seed is None else self.data.seed

    def to_dict(self) -> dict[str, Any]:
        """The config as nested plain dicts (:func:`dataclasses.asdict`), as ``config.yaml``
        holds it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """A config from nested dicts such as a loaded ``config.yaml``; an unknown section or
        key is a :class:`ConfigError`, ``init`` and ``info`` are taken as they are."""
        sections = {"data": DataConfig, "model": ModelConfig, "method": MethodConfig}
        sections["train"] = TrainConfig
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key in sections:
                kwargs[key] = _section(sections[key], value or {}, key)
            else:
                kwargs[key] = value
        return cls(**kwargs)


def _section(kind: type, raw: dict[str, Any], where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"config section {where!r} must be a mapping of keys, got {raw!r}")
    allowed = {f.name for f in fields(kind)}
    bad = set(raw) - allowed
    if bad:
        raise ConfigError(
            f"unknown key(s) in config section {where!r}: {', '.join(sorted(bad))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    return kind(**raw)


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the config as YAML, atomically."""
    from pellucid.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config.to_dict(), sort_keys=False))


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML config (:func:`yaml_load`: safe, no objects are constructed from tags)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        raw = yaml_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text (UTF-8 YAML) file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of config sections")
    return RunConfig.from_dict(raw)
