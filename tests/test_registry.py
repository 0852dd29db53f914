from collections.abc import Callable, Sequence
from typing import Any

import pytest

from pellucid.errors import ConfigError, PellucidError
from pellucid.registry import DATASETS, METHODS, MODELS, Registry


def test_registries_list_builtin_entries():
    assert {"mnist", "cluttered-mnist", "shapes", "folder", "cifar10", "npz"} <= set(DATASETS)
    assert {"convnet", "resnet8", "resnet20", "vgg"} <= set(MODELS)
    assert "standard" in METHODS


def test_unknown_name_error_suggests_close_match():
    with pytest.raises(PellucidError, match=r"unknown model 'resnet9'.*did you mean 'resnet8'"):
        MODELS.get("resnet9")


def test_duplicate_registration_refused():
    reg = Registry("thing")
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError):
        reg.register("a")(lambda: 2)
    assert reg.names() == ["a"] and reg.get("a")() == 1


def test_option_values_are_checked_against_the_factory_type_hints():
    from pellucid.option_types import describe, fits

    assert fits(3, float) and fits(0.5, float) and not fits(True, float) and not fits("1", float)
    assert fits(3, int) and not fits(3.0, int) and not fits(False, int)
    assert fits(True, bool) and not fits("maybe", bool) and not fits(1, bool)
    assert fits(None, int | None) and fits(2, int | None) and not fits("x", int | None)
    assert fits([1, 2], Sequence[int]) and fits((1, 2), tuple[int, ...])
    assert not fits("ab", Sequence[int]) and not fits([1, "a"], list[int])
    assert fits(object(), Any) and fits(len, Callable[..., Any])  # unknown kinds: not checked
    assert describe(float | None) == "a number or null"
    assert describe(Sequence[int]) == "a list of integers"

    reg: Registry = Registry("thing")

    @reg.register("t")
    def make(x: int, rate: float = 0.1, names: Sequence[str] = ("a",), on: bool = True):
        return (x, rate, names, on)

    assert reg.build("t", 1, rate=1, names=["b"], on=False) == (1, 1, ["b"], False)
    with pytest.raises(ConfigError, match="thing 't': option rate must be a number, got 'abc'"):
        reg.build("t", 1, rate="abc")
    with pytest.raises(ConfigError, match="option names must be a list of strings, got 'b'"):
        reg.build("t", 1, names="b")
