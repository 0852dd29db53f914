"""Backbones: our own small networks, any torchvision classifier (``tv:NAME``), or any
user ``nn.Module``. Every model takes pixel-space images in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pellucid.errors import ConfigError
from pellucid.models import resnet, small  # noqa: F401  (fill the registry)
from pellucid.models.base import Normalize, StagedNet
from pellucid.models.tv import TorchvisionNet, load_state_file, torchvision_model
from pellucid.registry import MODELS
from pellucid.state import eval_mode, model_device

__all__ = [
    "Normalize",
    "StagedNet",
    "TorchvisionNet",
    "build_model",
    "default_layer",
    "get_layer",
    "layer_table",
    "load_state_file",
    "model_names",
]


def model_names() -> list[str]:
    """Our registered backbones; any torchvision classifier is also available as ``tv:NAME``."""
    return MODELS.names()


def build_model(
    name: str,
    in_channels: int = 3,
    num_classes: int = 10,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    weights: str | None = None,
    **options: Any,
) -> nn.Module:
    """Build a backbone by name.

    Parameters
    ----------
    name : str
        A registered name (``convnet``, ``resnet8``, ``resnet20``, ``vgg``) or ``tv:NAME``.
    in_channels, num_classes : int
        Any number of input channels and classes.
    mean, std : sequence of float, optional
        Per-channel statistics for the normalisation layer (pixel space).
    weights : str, optional
        A local weights file (safetensors, or a tensor dict readable with weights_only).
    """
    if in_channels < 1 or num_classes < 1:
        raise ConfigError(
            f"in_channels and num_classes must be >= 1 ({in_channels}, {num_classes})"
        )
    if name.startswith("tv:"):
        return torchvision_model(name[3:], in_channels, num_classes, mean, std, weights, **options)
    fixed = ("in_channels", "num_classes", "mean", "std")
    model = MODELS.build(
        name,
        fixed=fixed,
        in_channels=in_channels,
        num_classes=num_classes,
        mean=mean,
        std=std,
        **options,
    )
    if weights is not None:
        model.load_state_dict(load_state_file(weights))
    return model


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name``; a clear error listing close names otherwise."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        import difflib

        close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"model {type(model).__name__} has no layer {name!r}{hint} "
            "(`pellucid models MODEL` lists the layers)"
        )
    return modules[name]


def default_layer(model: nn.Module) -> str:
    """The layer that methods and explainers use when none is named: ``model.default_layer``
    (pellucid's models: the last convolutional stage), else the last ``Conv2d`` the model
    *declares*. For a model of your own, name the stage you mean: in a torchvision ResNet the
    last declared convolution is ``layer4.1.conv2``, before the last BatchNorm and the
    residual addition, where Grad-CAM is usually taken at ``layer4``."""
    name = getattr(model, "default_layer", None)
    if name:
        return name
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError(f"{type(model).__name__} has no Conv2d layer")
    return convs[-1]


@torch.no_grad()
def layer_table(
    model: nn.Module, input_shape: Sequence[int], max_depth: int | None = None
) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, module type, output shape) of each addressable layer for one input.

    ``input_shape`` is (C, H, W). Runs one forward pass in eval mode with hooks that are
    removed afterwards.
    """
    from pellucid.hooks import capture

    names = [
        n for n, _ in model.named_modules() if n and (max_depth is None or n.count(".") < max_depth)
    ]
    with eval_mode(model):
        device = model_device(model)
        x = torch.zeros(1, *input_shape, device=device)
        with capture(model, names, allow_missing_output=True) as acts:
            model(x)
    mods = dict(model.named_modules())
    rows = []
    for n in names:
        out = acts.get(n)
        shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()
        rows.append((n, type(mods[n]).__name__, shape))
    return rows
