"""NeuroMask's closest peers, run through TorchRay's own implementations: extremal
perturbations (Fong, Patrick & Vedaldi, ICCV 2019) and RISE (Petsiuk, Das & Saenko, BMVC 2018).

Both learn or sample masks over the image, as NeuroMask does, so they are the comparison a
reader of the NeuroMask paper asks for first. They live here, with the benchmarks, and not in
the library: TorchRay is licensed CC-BY-NC 4.0, so pellucid (MIT) does not depend on it;
``make`` installs ``torchray==1.0.0.2`` (without its dependencies, which pellucid already
brings) into the development environment, as it does Quantus and pytorch-grad-cam.

:func:`register` adds ``extremal-perturbation`` and ``rise`` to the explainers, so that
:func:`pellucid.explain.evaluate.compare` scores them on the same images as every other
explainer, through the same :class:`~pellucid.explain.base.Explainer` checks (input shape,
channels, NaN, targets) and model-state restoration (TorchRay's extremal perturbation turns
off the parameters' gradients and leaves them off; the base class restores them).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from pellucid.errors import ConfigError
from pellucid.explain.base import Explainer, check_count
from pellucid.registry import EXPLAINERS

TORCHRAY = "torchray==1.0.0.2"
EP_AREAS = (0.025, 0.05, 0.1, 0.2)  # TorchRay's pointing-game protocol on PASCAL VOC
EP_PERTURBATIONS = ("blur", "fade")
EP_REWARDS = ("simple", "contrastive")


def _torchray(module: str):
    try:
        import importlib

        return importlib.import_module(f"torchray.attribution.{module}")
    except ImportError as err:
        raise ConfigError(
            f"TorchRay is not installed ({err}); `pip install --no-deps {TORCHRAY}` "
            "(CC-BY-NC 4.0; `make` installs it into .venv)"
        ) from None


def _areas(areas: float | Sequence[float]) -> list[float]:
    values = [areas] if isinstance(areas, int | float) else list(areas)
    if not values or not all(isinstance(a, int | float) and 0 < a < 1 for a in values):
        raise ConfigError(f"areas must be fractions of the image in (0, 1), got {areas!r}")
    return [float(a) for a in values]


class ExtremalPerturbationExplainer(Explainer):
    """Extremal perturbations (Fong, Patrick & Vedaldi, ICCV 2019) through TorchRay.

    For each area ``a`` in ``areas``, a smooth mask that keeps ``a`` of the image is optimised
    to preserve the class score, the rest of the image being blurred (TorchRay's
    ``extremal_perturbation``, preserve variant); the map is the sum of the masks, as in
    TorchRay's pointing-game benchmark (areas 2.5, 5, 10 and 20 % on PASCAL VOC, 800 steps,
    final smoothing 0.09 of the image side). One image at a time, as TorchRay runs it.

    Parameters
    ----------
    areas : float or sequence of float
        Kept fractions of the image (default TorchRay's VOC protocol).
    iterations : int
        Optimisation steps per image (TorchRay: 800).
    step, sigma : int, float, optional
        The mask generator's grid step and smoothing in pixels; TorchRay uses 7 and 21 at
        224 px, and the defaults scale them with the image: ``step = max(1, round(7 * side /
        224))``, ``sigma = 3 * step``.
    smooth : float
        Gaussian smoothing of the final masks, a fraction of the image side.
    perturbation : {"blur", "fade"}
        What the masked-out region becomes (blurred, or faded to black).
    reward : {"simple", "contrastive"}
        The class score, or the score minus the best other class (TorchRay's two rewards).
    """

    name = "extremal-perturbation"

    def __init__(
        self,
        model: nn.Module,
        areas: float | Sequence[float] = EP_AREAS,
        iterations: int = 800,
        step: int | None = None,
        sigma: float | None = None,
        smooth: float = 0.09,
        perturbation: str = "blur",
        reward: str = "simple",
        batch_size: int = 64,
    ) -> None:
        super().__init__(model, batch_size)
        self.areas = _areas(areas)
        self.iterations = check_count(iterations, "iterations")
        self.step = None if step is None else check_count(step, "step")
        if sigma is not None and not (isinstance(sigma, int | float) and sigma > 0):
            raise ConfigError(f"sigma must be > 0 (pixels), got {sigma!r}")
        self.sigma = sigma
        if not (isinstance(smooth, int | float) and 0 <= smooth < 1):
            raise ConfigError(
                f"smooth must be a fraction of the image side in [0, 1), got {smooth!r}"
            )
        self.smooth = float(smooth)
        if perturbation not in EP_PERTURBATIONS:
            raise ConfigError(
                f"perturbation must be one of {', '.join(EP_PERTURBATIONS)}, got {perturbation!r}"
            )
        if reward not in EP_REWARDS:
            raise ConfigError(f"reward must be one of {', '.join(EP_REWARDS)}, got {reward!r}")
        self.perturbation, self.reward = perturbation, reward

    def _explain(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ep = _torchray("extremal_perturbation")
        side = min(inputs.shape[-2:])
        step = self.step or max(1, round(7 * side / 224))
        sigma = self.sigma or 3.0 * step
        reward = ep.contrastive_reward if self.reward == "contrastive" else ep.simple_reward
        maps = []
        for x, t in zip(inputs, target.tolist(), strict=True):
            with torch.enable_grad(), warnings.catch_warnings():
                # TorchRay calls torch.meshgrid without ``indexing`` (its default, "ij")
                warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
                masks, _ = ep.extremal_perturbation(
                    self.model,
                    x[None],
                    int(t),
                    areas=self.areas,
                    perturbation=self.perturbation,
                    max_iter=self.iterations,
                    num_levels=8,
                    step=step,
                    sigma=sigma,
                    jitter=True,
                    variant=ep.PRESERVE_VARIANT,
                    reward_func=reward,
                    resize=True,
                    smooth=self.smooth,
                )
            maps.append(masks.detach().sum(0, keepdim=True))
        return torch.cat(maps)


class _ProbabilityLogit(nn.Module):
    """``model`` with outputs log(p / (1 - p)) of its softmax probabilities p: TorchRay's RISE
    scores a mask by the sigmoid of the output (it was written for multi-label PASCAL), and
    the sigmoid of this is exactly p, the score of the RISE paper."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-odds of each class's softmax probability."""
        logp = torch.log_softmax(self.model(x), dim=1)
        return logp - torch.log(-torch.expm1(logp).clamp(max=-1e-12))


class RISEExplainer(Explainer):
    """RISE (Petsiuk, Das & Saenko, BMVC 2018) through TorchRay: the class probability
    averaged over ``masks`` random masks (a ``cells`` x ``cells`` grid of cells kept with
    probability ``keep``, bilinearly upsampled and randomly shifted), each pixel weighted by
    how much of it the mask kept. Seeded (TorchRay restores the global generator afterwards).

    Parameters
    ----------
    masks : int
        Random masks per image (TorchRay: 8000; the paper: 4000 for ResNet-50).
    cells : int
        Grid side of a mask (the paper: 7).
    keep : float
        Probability that a cell is kept (the paper: 0.5).
    seed : int
        Seed of the masks; every image sees the same masks.
    mask_batch : int
        Masked copies evaluated at once.
    """

    name = "rise"

    def __init__(
        self,
        model: nn.Module,
        masks: int = 8000,
        cells: int = 7,
        keep: float = 0.5,
        seed: int = 0,
        mask_batch: int = 256,
        batch_size: int = 64,
    ) -> None:
        super().__init__(model, batch_size)
        self.masks = check_count(masks, "masks")
        self.cells = check_count(cells, "cells")
        if not (isinstance(keep, int | float) and 0 < keep < 1):
            raise ConfigError(f"keep must be a probability in (0, 1), got {keep!r}")
        self.keep = float(keep)
        self.seed = check_count(seed, "seed", minimum=0)
        self.mask_batch = check_count(mask_batch, "mask_batch")

    def _explain(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        rise = _torchray("rise")
        # TorchRay's docstring calls p the probability that a cell is dropped; its code
        # (``rand < p`` is kept) makes it the probability that a cell is kept, as here
        sal = rise.rise(
            _ProbabilityLogit(self.model),
            inputs,
            seed=self.seed,
            num_masks=self.masks,
            num_cells=self.cells,
            batch_size=self.mask_batch,
            p=self.keep,
        )
        return sal[torch.arange(len(target), device=sal.device), target][:, None]


PEER_EXPLAINERS = {
    "extremal-perturbation": (
        ExtremalPerturbationExplainer,
        "extremal perturbations (Fong et al. 2019), TorchRay",
    ),
    "rise": (RISEExplainer, "RISE (Petsiuk et al. 2018), TorchRay"),
}


def register() -> None:
    """Register the two peers in pellucid's explainer registry (once; a process that calls
    this runs them wherever every registered explainer runs, e.g. ``compare_run``'s default,
    so only the peers study calls it)."""
    for name, (cls, help_) in PEER_EXPLAINERS.items():
        if name not in EXPLAINERS.names():
            EXPLAINERS.register(name, help=help_)(cls)
