"""Adversarial attacks, through torchattacks (Kim, "Torchattacks: A PyTorch Repository for
Adversarial Attacks", 2020), behind one call shape.

``attack(model, images, labels, "pgd", eps=0.1)`` returns adversarial images in pixel space
([0, 1], like every pellucid dataset; our models normalise internally), computed in eval
mode with frozen parameters; the model's train/eval modes and ``requires_grad`` flags are
restored afterwards, also when the attack raises. Attacks are registered in
:data:`pellucid.registry.ATTACKS` (``pellucid attacks`` lists them):

- ``fgsm``: one signed-gradient step of size eps (Goodfellow et al., ICLR 2015);
- ``pgd``: projected gradient descent in the L-inf ball of radius eps, random start
  (Madry et al., ICLR 2018);
- ``cw``: Carlini & Wagner's L2 attack (IEEE S&P 2017): a fixed trade-off constant ``c``
  (torchattacks' ``CW``), or with ``search_steps=k`` the paper's binary search over ``c``
  for each image, which looks for the smallest successful perturbation (:class:`CWSearch`).

The defaults are the settings of ``benchmarks/adversarial.py`` on mnist: L-inf eps 0.2 (the
MNIST convention is 0.1-0.3; at 0.1 FGSM changed only 23 % of a convnet's correct
predictions), PGD 20 steps of 0.02, C&W c = 1 for 100 Adam steps at lr 0.05 (at lr 0.01 it
succeeded on 23 %, at 0.05 on 70 %). torchattacks' own defaults (eps 8/255) are the CIFAR
convention; for colour images such as ``shapes`` a smaller eps is the usual choice.

torchattacks 3.5.1 declares ``requests~=2.25.1`` without importing it; installing it with
``pip install --no-deps torchattacks==3.5.1`` keeps a newer ``requests`` (every module it
does import -- torch, torchvision, scipy, numpy, tqdm -- comes with pellucid). ``make``
installs it that way.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from pellucid.errors import ConfigError, DataError, PellucidError
from pellucid.registry import ATTACKS

__all__ = ["CWSearch", "attack", "check_images", "torchattacks_module"]

INSTALL_HINT = "pip install --no-deps torchattacks==3.5.1"


def torchattacks_module() -> Any:
    """The ``torchattacks`` module, or a clear error saying how to install it."""
    try:
        import torchattacks
    except ImportError:
        raise PellucidError(
            f"adversarial attacks need torchattacks, which is not installed: {INSTALL_HINT} "
            "(--no-deps: its pin requests~=2.25.1 is unused and would downgrade requests)"
        ) from None
    return torchattacks


def _positive(attack: str, name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"attack {attack!r}: {name} must be a number > 0, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"attack {attack!r}: {name} must be finite, got {value!r}")
    return float(value)


def _steps(attack: str, value: int, name: str = "steps", minimum: int = 1) -> int:
    """An integer option (``steps`` unless ``name`` says otherwise) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"attack {attack!r}: {name} must be an integer >= {minimum}, got {value!r}"
        )
    return value


@ATTACKS.register("fgsm", help="FGSM: one signed-gradient step of size eps (L-inf)")
def fgsm(model: nn.Module, eps: float = 0.2) -> Any:
    """Fast gradient sign method (Goodfellow et al., ICLR 2015)."""
    return torchattacks_module().FGSM(model, eps=_positive("fgsm", "eps", eps))


@ATTACKS.register("pgd", help="PGD: L-inf projected gradient descent, random start")
def pgd(model: nn.Module, eps: float = 0.2, alpha: float = 0.02, steps: int = 20) -> Any:
    """Projected gradient descent in the L-inf ball (Madry et al., ICLR 2018)."""
    return torchattacks_module().PGD(
        model,
        eps=_positive("pgd", "eps", eps),
        alpha=_positive("pgd", "alpha", alpha),
        steps=_steps("pgd", steps),
        random_start=True,
    )


@ATTACKS.register(
    "cw", help="Carlini-Wagner L2: Adam on a tanh-box, constant c (search_steps: binary search)"
)
def cw(
    model: nn.Module,
    c: float = 1.0,
    kappa: float = 0.0,
    steps: int = 100,
    lr: float = 0.05,
    search_steps: int = 0,
) -> Any:
    """Carlini & Wagner's L2 attack (IEEE S&P 2017); ``search_steps`` > 0 adds the paper's
    binary search over ``c``, starting at ``c`` (:class:`CWSearch`)."""
    if isinstance(kappa, bool) or not isinstance(kappa, int | float) or not kappa >= 0:
        raise ConfigError(f"attack 'cw': kappa must be a number >= 0, got {kappa!r}")
    search_steps = _steps("cw", search_steps, "search_steps", minimum=0)
    options = {
        "kappa": float(kappa),
        "steps": _steps("cw", steps),
        "lr": _positive("cw", "lr", lr),
    }
    c = _positive("cw", "c", c)
    if search_steps:
        return CWSearch(model, c, search_steps, **options)
    return torchattacks_module().CW(model, c=c, **options)


@ATTACKS.register(
    "cw-search", help="Carlini-Wagner L2 with the paper's binary search over c (5 steps)"
)
def cw_search(
    model: nn.Module,
    c: float = 1.0,
    kappa: float = 0.0,
    steps: int = 100,
    lr: float = 0.05,
    search_steps: int = 5,
) -> Any:
    """:func:`cw` with the binary search over ``c`` on by default (:class:`CWSearch`), under
    its own name, so that one run can measure C&W at a fixed ``c`` and searched side by
    side."""
    _steps("cw-search", search_steps, "search_steps")
    return cw(model, c=c, kappa=kappa, steps=steps, lr=lr, search_steps=search_steps)


class CWSearch:
    """C&W L2 with the binary search over the constant ``c`` of Carlini & Wagner (IEEE S&P
    2017, Sec. V-A and their reference code), one ``c`` per image.

    Every image starts at ``c``. At each of ``search_steps`` steps the images are attacked
    with torchattacks' ``CW`` at their current constant (images sharing a constant in one
    call); an image whose attack succeeded (prediction changed) sets its upper bound to its
    ``c``, one that failed its lower bound; the next ``c`` is the midpoint of the bounds, or
    ten times ``c`` while no success bounds it from above. Each image keeps its successful
    adversarial version of smallest L2 norm over all steps (the clean image when none
    succeeded). The first step is the plain attack at ``c``, so the search never returns a
    larger successful perturbation than it, at ``search_steps`` times its cost.

    torchattacks' ``CW`` stops a call early when the summed loss of its batch rises, so an
    image's result depends on the images it shares a call with -- in the plain attack as
    here.
    """

    def __init__(self, model: nn.Module, c: float, search_steps: int, **options: Any) -> None:
        self.model, self.c, self.search_steps, self.options = model, c, search_steps, options

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Adversarial images (N, C, H, W) for ``images`` (N, C, H, W) and ``labels`` (N,):
        per image the successful one of smallest L2 norm over the search, else the clean image."""
        ta = torchattacks_module()
        n = len(images)
        c = torch.full((n,), self.c, dtype=torch.float64)
        low = torch.zeros(n, dtype=torch.float64)
        high = torch.full((n,), math.inf, dtype=torch.float64)
        best = images.clone().detach()
        best_l2 = torch.full((n,), math.inf, device=images.device)
        for _ in range(self.search_steps):
            success = torch.zeros(n, dtype=torch.bool)
            for value in torch.unique(c).tolist():
                idx = (c == value).nonzero().flatten()
                at = idx.to(images.device)
                adv = ta.CW(self.model, c=value, **self.options)(images[at], labels[at]).detach()
                with torch.no_grad():
                    hit = self.model(adv).argmax(1) != labels[at]
                l2 = (adv - images[at]).flatten(1).norm(dim=1)
                better = hit & (l2 < best_l2[at])
                best[at[better]] = adv[better]
                best_l2[at[better]] = l2[better]
                success[idx] = hit.cpu()
            high = torch.where(success, torch.minimum(high, c), high)
            low = torch.where(success, low, torch.maximum(low, c))
            c = torch.where(torch.isfinite(high), (low + high) / 2, c * 10)
        return best


def check_images(images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    """Pixel-space images (N, C, H, W) in [0, 1], finite; labels (N,) integers >= 0."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
        raise DataError(f"images must be a tensor (N, C, H, W), got {shape}")
    if images.shape[0] == 0:
        raise DataError("images: the batch is empty")
    if not images.is_floating_point():
        raise DataError(f"images must be floating point in [0, 1], got {images.dtype}")
    if not torch.isfinite(images).all():
        raise DataError("images contain NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise DataError(
            f"images must be pixel values in [0, 1] (models normalise internally), "
            f"got values in [{low:.3g}, {high:.3g}]"
        )
    if labels is not None:
        if labels.shape != (images.shape[0],):
            want, got = (images.shape[0],), tuple(labels.shape)
            raise DataError(f"labels must have shape {want}, got {got}")
        if labels.is_floating_point() or (labels.numel() and int(labels.min()) < 0):
            raise DataError("labels must be non-negative integers")


def attack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    name: str = "pgd",
    seed: int = 0,
    batch_size: int = 256,
    **options: Any,
) -> torch.Tensor:
    """Adversarial versions of ``images`` against ``model`` (untargeted, true ``labels``).

    Parameters
    ----------
    model : nn.Module
        A classifier of pixel-space images; left as it was (modes, ``requires_grad``).
    images : Tensor (N, C, H, W)
        In [0, 1], on any device (moved to the model's).
    labels : Tensor (N,), sequence or int
        The classes the attack moves away from (an int: the same for every image).
    name : str
        A registered attack (``fgsm``, ``pgd``, ``cw``); ``options`` are its options.
    seed : int
        Seeds the attack's randomness (PGD's random start); the global RNG is untouched.

    Returns
    -------
    Tensor (N, C, H, W)
        Adversarial images in [0, 1], on the model's device and in its dtype, detached.
    """
    from pellucid.state import model_device, model_dtype, model_state

    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if labels.dim() == 0 and isinstance(images, torch.Tensor) and images.dim() == 4:
        labels = labels.expand(images.shape[0])  # one class for every image
    check_images(images, labels)
    device = model_device(model)
    images = images.to(device, model_dtype(model))  # float64 images for a float32 model
    labels = labels.to(device).long()
    with model_state(model):
        atk = ATTACKS.build(name, model, fixed=("model",), **options)  # options checked first
        with torch.no_grad():
            classes = model(images[:1]).shape[1]
        if int(labels.max()) >= classes:
            raise DataError(f"label {int(labels.max())} out of range for a {classes}-class model")
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            out = [
                atk(images[i : i + batch_size], labels[i : i + batch_size]).detach()
                for i in range(0, len(images), batch_size)
            ]
    return torch.cat(out).clamp_(0.0, 1.0)
