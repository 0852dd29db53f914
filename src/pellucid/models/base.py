"""What every pellucid backbone shares: pixel-space input with normalisation as the first
layer, named top-level stages, and explicit access to intermediate features.

A :class:`StagedNet` is an ``nn.Sequential`` of named stages::

    norm -> stem -> layer1 -> ... -> layerK -> pool -> fc

so a layer is addressed by its module name ("layer3", "layer3.0.conv1"), and the network can
be run up to, or onwards from, any top-level stage without hooks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from pellucid.errors import ConfigError


def check_widths(widths: object, model: str) -> tuple[int, ...]:
    """A backbone's stage widths as a tuple of ints, or a :class:`ConfigError` naming the
    model (``--model-option widths=...`` arrives as whatever YAML reads)."""
    ok = isinstance(widths, (list, tuple)) and len(widths) > 0
    if ok:
        ok = all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)
    if not ok:
        raise ConfigError(
            f"{model}: widths must be a non-empty list of positive integers, e.g. "
            f"[32, 64, 128, 128], got {widths!r}"
        )
    return tuple(widths)


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``: the first layer of every model we build or load,
    so that models take images in pixel space [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ConfigError(f"mean has {len(mean)} channels but std has {len(std)}")
        if any(s <= 0 for s in std):
            raise ConfigError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H, W)
        """``(x - mean) / std`` per channel."""
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        """The number of channels, for the module's repr."""
        return f"channels={self.mean.shape[1]}"


def normalisation_mean(model: nn.Module, channels: int) -> torch.Tensor | None:
    """The per-channel mean (C,) of the first :class:`Normalize` layer of ``model`` with
    ``channels`` channels, or None when it has none (the colour a normalised zero is)."""
    for m in model.modules():
        if isinstance(m, Normalize) and m.mean.numel() == channels:
            return m.mean.flatten()
    return None


class GlobalPool(nn.Module):
    """Global average pooling followed by flattening: (N, K, H, W) -> (N, K)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over H and W: (N, K, H, W) -> (N, K)."""
        return x.mean(dim=(2, 3))


class StagedNet(nn.Sequential):
    """A classifier built as a sequence of named stages ending in ``pool`` and ``fc``.

    Attributes
    ----------
    in_channels, num_classes : int
    default_layer : str
        The last convolutional stage (before global pooling): where CSG gates and ICNN
        filters go by default.
    """

    def __init__(
        self, stages: OrderedDict[str, nn.Module], in_channels: int, num_classes: int
    ) -> None:
        names = list(stages)
        if names[-2:] != ["pool", "fc"] or not isinstance(stages["fc"], nn.Linear):
            raise ValueError("a StagedNet must end with stages 'pool' and 'fc' (nn.Linear)")
        if len(names) < 3 or not any(isinstance(m, nn.Conv2d) for m in stages[names[-3]].modules()):
            raise ValueError(
                "a StagedNet needs a convolutional stage (one holding an nn.Conv2d) right "
                f"before 'pool'; got stages {names}"
            )
        super().__init__(stages)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.default_layer = names[-3]

    @property
    def stage_names(self) -> list[str]:
        """Names of the top-level stages in order (``norm``, ``stem``, ..., ``pool``, ``fc``)."""
        return [name for name, _ in self.named_children()]

    def _index(self, name: str) -> int:
        try:
            return self.stage_names.index(name)
        except ValueError:
            raise ConfigError(
                f"unknown stage {name!r}; stages: {', '.join(self.stage_names)}"
            ) from None

    def forward_to(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """Run from the input up to and including ``stage``; returns its output."""
        modules = list(self.children())
        for module in modules[: self._index(stage) + 1]:
            x = module(x)
        return x

    def forward_from(self, h: torch.Tensor, stage: str) -> torch.Tensor:
        """Run the stages *after* ``stage`` on its output ``h``; returns the logits."""
        modules = list(self.children())
        for module in modules[self._index(stage) + 1 :]:
            h = module(h)
        return h

    def forward_features(
        self, x: torch.Tensor, stages: Sequence[str]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the outputs of the named top-level ``stages`` from one forward pass."""
        wanted = set(stages)
        for s in wanted:
            self._index(s)
        feats: dict[str, torch.Tensor] = {}
        for name, module in self.named_children():
            x = module(x)
            if name in wanted:
                feats[name] = x
        return x, feats
