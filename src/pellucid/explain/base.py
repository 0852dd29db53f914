"""One call shape for every explainer: ``explain(inputs, target) -> (N, 1, H, W)``.

An explainer implements :meth:`Explainer._explain` on a validated chunk of inputs whose
targets are resolved; the base class does the rest:

- validation: a 4-D floating tensor with the model's channel count, finite values, a target
  per image inside ``[0, num_classes)`` (``None`` = the model's predicted class);
- devices: inputs are moved to the model's device, maps come back on the inputs' device;
- batching: inputs are processed in chunks of ``batch_size``;
- model state: the model is put in eval mode with ``requires_grad=False`` on its parameters
  while explaining, and every module's mode and every parameter's flag are restored
  afterwards, also when explaining raises (:func:`pellucid.state.model_state`).

``attribute`` is an alias of ``explain`` so that an explainer drops in where a Captum
attribution method is used (``attribute(inputs, target=...)``).
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import torch
from torch import nn

from pellucid.errors import ConfigError, DataError
from pellucid.state import input_channels, model_device, model_dtype, model_state

PIXEL_SLACK = 1e-3  # how far outside [0, 1] an input may lie before check_inputs warns


def check_inputs(model: nn.Module, inputs: Any) -> torch.Tensor:
    """Validate a batch of images for ``model``; return it as a floating tensor."""
    if not isinstance(inputs, torch.Tensor):
        raise DataError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.dim() != 4:
        hint = " (add a batch dimension: inputs[None])" if inputs.dim() == 3 else ""
        raise DataError(f"inputs must be (N, C, H, W), got shape {tuple(inputs.shape)}{hint}")
    if inputs.shape[0] == 0:
        raise DataError("inputs is an empty batch (N = 0)")
    if not inputs.is_floating_point():
        raise DataError(f"inputs must be floating point, got {inputs.dtype}")
    channels = input_channels(model, inputs)
    if channels is not None and inputs.shape[1] != channels:
        raise DataError(
            f"the model expects {channels} input channel(s), inputs have {inputs.shape[1]} "
            f"(shape {tuple(inputs.shape)})"
        )
    if not torch.isfinite(inputs).all():
        bad = int((~torch.isfinite(inputs)).flatten(1).any(1).nonzero()[0])
        raise DataError(f"inputs contain NaN or inf (first in image {bad})")
    low, high = float(inputs.detach().min()), float(inputs.detach().max())
    if low < -PIXEL_SLACK or high > 1 + PIXEL_SLACK:
        warnings.warn(
            f"inputs lie in [{low:.3g}, {high:.3g}], not in the pixel range [0, 1] that "
            "pellucid's models take (they normalise internally; the fills and baselines of "
            "the explainers are pixel values): pass unnormalised images, with a model of "
            "your own wrapped as nn.Sequential(pellucid.models.Normalize(mean, std), model) "
            "(the deletion and insertion scores refuse normalised images)",
            stacklevel=3,
        )
    return inputs


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int if it is a whole number >= ``minimum`` (an explainer option such
    as ``batch_size`` or occlusion's ``window``), else a :class:`ConfigError` naming it (a
    command-line value such as ``window=abc`` arrives as a string)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@torch.no_grad()
def resolve_target(model: nn.Module, inputs: torch.Tensor, target: Any) -> torch.Tensor:
    """A LongTensor (N,) of classes on the inputs' device: ``None`` = predicted class, an int
    = that class for every image, a sequence/tensor = one class per image."""
    n = inputs.shape[0]
    try:
        logits = model(inputs)
    except RuntimeError as err:  # e.g. images too small for the model's pooling
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(
            f"the model cannot run on inputs of shape {tuple(inputs.shape)}: {first}"
        ) from None
    if not isinstance(logits, torch.Tensor):
        raise DataError(
            f"the model must return a tensor of logits (N, classes), got "
            f"{type(logits).__name__}: wrap it in a module whose forward returns the logits"
        )
    if logits.dim() != 2:
        raise DataError(f"the model must return logits (N, classes), got {tuple(logits.shape)}")
    classes = logits.shape[1]
    if target is None:
        return logits.argmax(1)
    t = torch.as_tensor(target, device=inputs.device)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise DataError(f"target must hold integer class indices, got dtype {t.dtype}")
    t = t.long()
    if t.dim() == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise DataError(f"target must be an int or have shape ({n},), got {tuple(t.shape)}")
    if ((t < 0) | (t >= classes)).any():
        raise DataError(
            f"target {t[(t < 0) | (t >= classes)][0].item()} is out of range for a model "
            f"with {classes} classes"
        )
    return t


class Explainer:
    """Base class of every explainer (NeuroMask and the Captum adapters).

    Parameters
    ----------
    model : nn.Module
        A classifier taking pixel-space images (N, C, H, W) and returning logits.
    batch_size : int
        Images explained at once (memory bound; results do not depend on it).

    Subclasses implement :meth:`_explain`; ``normalise = True`` rescales each map by its
    maximum into [0, 1] (maps whose scale carries no meaning across images).
    """

    name = "explainer"
    normalise = True

    def __init__(self, model: nn.Module, batch_size: int = 64) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.batch_size = check_count(batch_size, "batch_size")

    def explain(self, inputs: torch.Tensor, target: Any = None) -> torch.Tensor:
        """Attribution maps for ``inputs``.

        Parameters
        ----------
        inputs : Tensor (N, C, H, W)
            Images in pixel space.
        target : None, int, 0-dim Tensor, sequence or Tensor (N,)
            Class to explain per image; an int or 0-dim tensor is that class for every
            image; ``None`` explains the predicted class.

        Returns
        -------
        Tensor (N, 1, H, W)
            Non-negative maps in [0, 1] on the inputs' device (detached).
        """
        x = check_inputs(self.model, inputs)
        device = model_device(self.model)
        dtype = model_dtype(self.model)
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(
                f"{self.name} explains float32 or float64 models, this one's weights are "
                f"{dtype}: explain a float32 copy (copy.deepcopy(model).float())"
            )
        out = []
        # inference_mode(False): explainers differentiate, also when called inside
        # torch.inference_mode(); an inference tensor is copied into a normal one
        with torch.inference_mode(False), model_state(self.model):
            xd = x.detach().to(device, dtype)
            if xd.is_inference():
                xd = xd.clone()
            target = _check_target_shape(target, xd.shape[0])
            for start in range(0, xd.shape[0], self.batch_size):
                sl = slice(start, start + self.batch_size)
                chunk_target = target[sl] if isinstance(target, torch.Tensor) else target
                t = resolve_target(self.model, xd[sl], _to(chunk_target, device))
                maps = self._explain(xd[sl], t).detach().float()
                out.append(self._finish(maps, xd[sl]))
        return torch.cat(out).to(inputs.device)

    attribute = explain

    def __call__(self, inputs: torch.Tensor, target: Any = None) -> torch.Tensor:
        """``explainer(inputs, target)`` is :meth:`explain`: maps (N, 1, H, W) in [0, 1]."""
        return self.explain(inputs, target)

    def _finish(self, maps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if maps.dim() == 3:
            maps = maps[:, None]
        if maps.shape != (n, 1, h, w):
            raise RuntimeError(f"{self.name} returned maps of shape {tuple(maps.shape)}")
        maps = torch.nan_to_num(maps, nan=0.0).clamp_min(0)
        if self.normalise:
            peak = maps.flatten(1).amax(1).clamp_min(1e-12).view(n, 1, 1, 1)
            maps = maps / peak
        return maps.clamp(0, 1)

    def _explain(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Maps (N, 1, H, W), >= 0, for a validated chunk; ``target`` is a LongTensor (N,)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _check_target_shape(target: Any, n: int) -> Any:
    """A per-image target as a tensor of shape (n,) (so that it can be sliced per chunk);
    None and a Python int pass through (:func:`resolve_target` broadcasts the int), and a
    0-dim tensor or NumPy scalar is broadcast to every image here."""
    if target is None or isinstance(target, int):
        return target
    t = torch.as_tensor(target)
    if t.dim() == 0:
        return t.expand(n)  # one class for the whole batch
    if t.shape != (n,):
        raise DataError(f"target must be an int or have shape ({n},), got {tuple(t.shape)}")
    return t


def _to(target: Any, device: torch.device) -> Any:
    return target.to(device) if isinstance(target, torch.Tensor) else target
