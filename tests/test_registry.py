import pytest

from pellucid.errors import PellucidError
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
