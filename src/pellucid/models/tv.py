"""Any torchvision classification model by name (``tv:resnet18``), never downloading weights.

The torchvision network is wrapped as ``norm -> net`` so that it, too, takes pixel-space
input; its layers are addressed as ``net.<name>`` (e.g. ``net.layer4``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from pellucid.errors import ConfigError, DataError
from pellucid.models.base import Normalize


class TorchvisionNet(nn.Module):
    """``Normalize`` followed by a torchvision classifier."""

    def __init__(
        self,
        net: nn.Module,
        in_channels: int,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.norm = Normalize(mean, std)
        self.net = net
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.default_layer = "net." + last_conv_child(net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) of the torchvision net on normalised images (N, C, H, W)."""
        return self.net(self.norm(x))


def last_conv_child(net: nn.Module) -> str:
    """Name of the last top-level child that contains a convolution."""
    name = None
    for child_name, child in net.named_children():
        if any(isinstance(m, nn.Conv2d) for m in child.modules()):
            name = child_name
    if name is None:
        raise ConfigError(f"{type(net).__name__} has no convolutional layer")
    return name


def _replace_first_conv(net: nn.Module, in_channels: int) -> None:
    for parent in net.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels != in_channels:
                    new = nn.Conv2d(
                        in_channels,
                        child.out_channels,
                        child.kernel_size,
                        child.stride,
                        child.padding,
                        child.dilation,
                        child.groups,
                        child.bias is not None,
                    )
                    setattr(parent, child_name, new)
                return


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file safely: safetensors, or a tensor dict via ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"weights file {path} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt or unsafe file
        raise DataError(f"cannot load weights from {path}: {err}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(f"{path} does not hold a state dict")
    from pellucid.io import check_finite

    return check_finite(state, f"weights file {path}")


def torchvision_model(
    name: str,
    in_channels: int = 3,
    num_classes: int = 1000,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    weights: str | None = None,
    **kwargs,
) -> TorchvisionNet:
    """Build torchvision's ``name`` with random weights, or weights from a local file.

    A local file may hold the torchvision state dict (keys as in torchvision) or a
    pellucid state dict (keys prefixed ``net.``/``norm.``).
    """
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ConfigError(f"unknown torchvision model {name!r}; e.g. {', '.join(available[:8])}")
    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    _replace_first_conv(net, in_channels)
    model = TorchvisionNet(
        net, in_channels, num_classes, mean or [0.5] * in_channels, std or [0.25] * in_channels
    )
    if weights is not None:
        state = load_state_file(weights)
        try:
            load_weights(model, state)
        except RuntimeError as err:
            raise DataError(f"weights in {weights} do not fit {name}: {err}") from None
    return model


def load_weights(model: TorchvisionNet, state: Mapping[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model`` strictly, in either layout a weights file may have.

    Parameters
    ----------
    model : TorchvisionNet
        The wrapped network (``norm -> net``).
    state : mapping of str to Tensor
        Torchvision's state dict (keys as in torchvision, e.g. ``conv1.weight``), loaded into
        ``model.net`` with ``model``'s normalisation kept; or pellucid's (every key prefixed
        ``net.``, optionally with the ``norm.mean`` / ``norm.std`` buffers; without them
        ``model``'s normalisation is kept), loaded into ``model``.

    Raises
    ------
    RuntimeError
        From :meth:`torch.nn.Module.load_state_dict` when the keys or shapes do not fit
        (torch may have copied the tensors that fit before raising).
    """
    if not any(k.startswith("net.") for k in state):
        model.net.load_state_dict(state)
        return
    norm = {f"norm.{k}": v for k, v in model.norm.state_dict().items()}
    model.load_state_dict({**norm, **state})
