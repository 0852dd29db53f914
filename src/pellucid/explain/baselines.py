"""Baseline explainers: thin adapters over Captum, plus two controls (centre point, random).

Every adapter returns non-negative maps (N, 1, H, W), rescaled per image to a maximum of 1
(:class:`~pellucid.explain.base.Explainer` does the rescaling). How each reduces Captum's
(N, C, H, W) attributions to one channel is stated in its docstring; the reduction is an
option where the field uses more than one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pellucid.errors import ConfigError, DataError
from pellucid.explain.base import Explainer, check_count
from pellucid.registry import EXPLAINERS

_SIGNS = ("positive", "abs")


def _reduce(attr: torch.Tensor, sign: str, over: str = "sum") -> torch.Tensor:
    """(N, C, H, W) attributions -> (N, 1, H, W): ``positive`` = evidence for the class
    (sum over channels, then the positive part); ``abs`` = magnitude."""
    if sign == "abs":
        attr = attr.abs()
        return attr.amax(1, keepdim=True) if over == "max" else attr.sum(1, keepdim=True)
    return attr.sum(1, keepdim=True).clamp_min(0)


def _grad(inputs: torch.Tensor) -> torch.Tensor:
    """A leaf copy that requires grad (Captum warns when it has to switch it on itself)."""
    return inputs.detach().clone().requires_grad_(True)


def _check_sign(sign: str) -> str:
    if sign not in _SIGNS:
        raise ConfigError(f"sign must be one of {', '.join(_SIGNS)}, got {sign!r}")
    return sign


@EXPLAINERS.register("saliency", help="gradient magnitude (Simonyan et al. 2014), via Captum")
class SaliencyExplainer(Explainer):
    """Vanilla gradient (Simonyan et al. 2014): |d score / d pixel|, maximum over channels
    as in the paper (Captum ``Saliency``)."""

    name = "saliency"

    def __init__(self, model: nn.Module, batch_size: int = 64) -> None:
        super().__init__(model, batch_size)

    def _explain(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import Saliency

        attr = Saliency(self.model).attribute(_grad(inputs), target=target, abs=True)
        return attr.amax(1, keepdim=True)


@EXPLAINERS.register("integrated-gradients", help="integrated gradients, black baseline (Captum)")
class IntegratedGradientsExplainer(Explainer):
    """Integrated gradients (Sundararajan et al. 2017) from a black image, summed over
    channels; ``sign="positive"`` keeps evidence for the class, ``"abs"`` its magnitude.

    Parameters
    ----------
    steps : int
        Riemann/Gauss-Legendre steps along the path (Captum ``n_steps``).
    """

    name = "integrated-gradients"

    def __init__(
        self, model: nn.Module, steps: int = 32, sign: str = "positive", batch_size: int = 64
    ) -> None:
        super().__init__(model, batch_size)
        self.steps = check_count(steps, "steps")
        self.sign = _check_sign(sign)

    def _explain(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import IntegratedGradients

        attr = IntegratedGradients(self.model).attribute(
            _grad(inputs),
            baselines=0.0,
            target=target,
            n_steps=self.steps,
            internal_batch_size=max(self.batch_size, inputs.shape[0]),
        )
        return _reduce(attr, self.sign)


@EXPLAINERS.register("gradcam", help="Grad-CAM on the last conv stage, upsampled (Captum)")
class GradCAMExplainer(Explainer):
    """Grad-CAM (Selvaraju et al. 2017) with Captum's ``LayerGradCam`` on ``layer`` (default:
    the model's last convolutional stage), ReLU, bilinearly upsampled to the input size.

    Parameters
    ----------
    layer : str, optional
        A module name of the model (``pellucid models MODEL`` lists them). Default:
        :func:`pellucid.models.default_layer`, the last convolutional stage of pellucid's
        models but the last declared ``Conv2d`` of a model of your own (name the stage,
        e.g. ``layer="layer4"`` for a torchvision ResNet).
    """

    name = "gradcam"

    def __init__(self, model: nn.Module, layer: str | None = None, batch_size: int = 64) -> None:
        super().__init__(model, batch_size)
        from pellucid.models import default_layer, get_layer

        self.layer = layer or default_layer(model)
        self.module = get_layer(model, self.layer)

    def _explain(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import LayerGradCam

        cam = LayerGradCam(self.model, self.module).attribute(
            _grad(inputs), target=target, relu_attributions=True
        )
        if cam.dim() != 4:
            raise ConfigError(
                f"Grad-CAM needs a layer with a (N, K, h, w) output; {self.layer!r} gives "
                f"{tuple(cam.shape)}"
            )
        return F.interpolate(cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False)


@EXPLAINERS.register("occlusion", help="score drop when a sliding patch is blacked out (Captum)")
class OcclusionExplainer(Explainer):
    """Occlusion (Zeiler & Fergus 2014) with Captum: a black square slides over the image; a
    pixel's value is the mean drop of the class score over the patches covering it (positive
    part, summed over channels).

    Parameters
    ----------
    window : int, optional
        Patch side in pixels; default ``max(3, round(H / 8))`` (4 px at 28, 8 px at 64).
    stride : int, optional
        Default ``max(1, window // 2)``.
    """

    name = "occlusion"

    def __init__(
        self,
        model: nn.Module,
        window: int | None = None,
        stride: int | None = None,
        sign: str = "positive",
        batch_size: int = 64,
    ) -> None:
        super().__init__(model, batch_size)
        self.window = None if window is None else check_count(window, "window")
        self.stride = None if stride is None else check_count(stride, "stride")
        if self.window is not None and self.stride is not None and self.stride > self.window:
            raise ConfigError(f"occlusion stride {self.stride} exceeds its window {self.window}")
        self.sign = _check_sign(sign)

    def _explain(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from captum.attr import Occlusion

        c, h, w = inputs.shape[1:]
        if self.window is not None and self.window > min(h, w):
            raise DataError(f"occlusion window {self.window} exceeds the images' {h}x{w} pixels")
        window = min(self.window or max(3, round(h / 8)), h, w)
        stride = self.stride or max(1, window // 2)
        if stride > window:
            raise ConfigError(
                f"occlusion stride {stride} exceeds its window {window}: pixels between the "
                "windows would never be occluded"
            )
        attr = Occlusion(self.model).attribute(
            inputs,
            sliding_window_shapes=(c, window, window),
            strides=(c, stride, stride),
            baselines=0.0,
            target=target,
            perturbations_per_eval=max(1, 256 // inputs.shape[0]),
        )
        return _reduce(attr, self.sign)


@EXPLAINERS.register("centre", help="control: always points at the image centre")
class CentreExplainer(Explainer):
    """Control: a cone peaked at the image centre, whatever the image and model. Its pointing
    game is the centre-point baseline the protocol asks to report."""

    name = "centre"

    def __init__(self, model: nn.Module, batch_size: int = 64) -> None:
        super().__init__(model, batch_size)

    def _explain(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n, _, h, w = inputs.shape
        ys = torch.arange(h, device=inputs.device, dtype=torch.float32) - (h - 1) / 2
        xs = torch.arange(w, device=inputs.device, dtype=torch.float32) - (w - 1) / 2
        dist = (ys[:, None] ** 2 + xs[None, :] ** 2).sqrt()
        cone = 1 - dist / (dist.max() + 1)
        return cone.expand(n, 1, h, w).clone()


@EXPLAINERS.register("random", help="control: uniform noise (seeded)")
class RandomExplainer(Explainer):
    """Control: i.i.d. uniform noise, reproducible with ``seed``; it ignores image and model,
    so every metric of a real explainer should beat it."""

    name = "random"

    def __init__(self, model: nn.Module, seed: int = 0, batch_size: int = 64) -> None:
        super().__init__(model, batch_size)
        self.generator = torch.Generator().manual_seed(check_count(seed, "seed", minimum=0))

    def _explain(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n, _, h, w = inputs.shape
        noise = torch.rand(n, 1, h, w, generator=self.generator)
        return noise.to(inputs.device)


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with standard deviation ``sigma`` px (kernel ``2 * ceil(2 sigma) + 1``,
    clipped to the image), reflect padding."""
    from torchvision.transforms.functional import gaussian_blur

    if sigma <= 0:
        return images
    k = 2 * math.ceil(2 * sigma) + 1
    limit = min(images.shape[-2:])
    k = min(k, limit if limit % 2 else limit - 1)
    return gaussian_blur(images, [k, k], [sigma, sigma])
