"""Faithfulness of attribution maps (evaluation.md, "Faithfulness" and "Sanity checks"):
deletion / insertion curves (RISE) and the model-parameter randomisation check.

Conventions
-----------
inputs
    Images (N, C, H, W) in pixel space [0, 1].
maps
    Float tensors (N, 1, H, W) or (N, H, W), same N, H, W as the images.
model
    Takes pixel-space images, returns logits (N, num_classes). The functions run it in eval
    mode under ``torch.no_grad`` on the device of its parameters and restore every
    sub-module's train/eval flag afterwards.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from pellucid.errors import DataError
from pellucid.metrics.base import declare
from pellucid.metrics.imputation import noisy_linear_imputation
from pellucid.metrics.localisation import _as_maps

__all__ = [
    "deletion_auc",
    "deletion_insertion",
    "insertion_auc",
    "model_randomisation",
    "randomised_copy",
    "spearman_rank_correlation",
]

declare(
    "deletion_auc",
    False,
    "RISE deletion: normalised AUC of the class probability as top-attributed pixels are zeroed",
)
declare(
    "deletion_auc_mean_fill",
    False,
    "RISE deletion as the RISE code runs it: top-attributed pixels take the model's "
    "normalisation mean (zero of the normalised input)",
)
declare(
    "deletion_auc_road",
    False,
    "ROAD deletion (Rong et al. 2022): top-attributed pixels are imputed from their "
    "neighbours (noisy linear imputation), so the removed region's shape does not leak",
)
declare(
    "insertion_auc",
    True,
    "RISE insertion: normalised AUC of the class probability as top-attributed pixels are "
    "restored into a blurred image",
)
declare(
    "sanity_rank_correlation",
    False,
    "Spearman correlation of maps from the trained vs a re-initialised model (Adebayo et "
    "al. 2018); high = the method ignores the model",
)

_RANGE_SLACK = 1e-4
_SEED_SALT = 0x5EED_F00D  # randomised_copy: seed s must not replay torch.manual_seed(s)


# ---------------------------------------------------------------------------------- helpers


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return fallback


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every sub-module in eval mode; restore each one's own flag afterwards."""
    modes = [(mod, mod.training) for mod in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for mod, was in modes:
            mod.training = was


def _as_images(inputs: Any) -> torch.Tensor:
    x = torch.as_tensor(inputs).detach()
    if x.ndim != 4:
        raise DataError(f"inputs must be images (N, C, H, W); got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise DataError("inputs is an empty batch (N = 0)")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise DataError(f"inputs have an empty spatial size {tuple(x.shape[2:])}")
    if not torch.is_floating_point(x):
        x = x.float()
    if not torch.isfinite(x).all():
        raise DataError("inputs contain NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        raise DataError(
            f"inputs must be images in pixel space [0, 1], got values in [{lo:.4g}, {hi:.4g}] "
            "(normalisation belongs inside the model)"
        )
    return x


def _as_target(target: Any, n: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(target).detach()
    if torch.is_floating_point(t) or t.dtype == torch.bool:
        raise DataError(f"target must be integer class indices, got dtype {t.dtype}")
    if t.ndim == 0:
        t = t.expand(n)
    if t.ndim != 1 or t.shape[0] != n:
        raise DataError(f"target must be (N,) = ({n},), got shape {tuple(t.shape)}")
    if bool((t < 0).any()):
        raise DataError(f"target has negative class indices (min {int(t.min())})")
    return t.to(device=device, dtype=torch.long)


def _odd_at_most(k: int, size: int) -> int:
    k = min(k, size)
    return k if k % 2 == 1 else k - 1


def _removal_rank(maps: torch.Tensor, seed: int) -> torch.Tensor:
    """rank[n, p] = position of pixel p in decreasing-map order (0 = first removed).

    Ties are broken by a seeded random permutation: the pixels are shuffled, then stably
    sorted by decreasing value.
    """
    n, hw = maps.shape
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.rand(n, hw, generator=gen, dtype=torch.float64).argsort(dim=1, stable=True)
    vals = torch.gather(maps.cpu(), 1, perm)
    order = torch.gather(perm, 1, vals.argsort(dim=1, descending=True, stable=True))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(hw).expand(n, hw).contiguous())
    return rank


# ------------------------------------------------------------------------ deletion/insertion


def deletion_insertion(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    target: torch.Tensor,
    mode: str = "deletion",
    steps: int = 64,
    batch_size: int = 256,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    seed: int = 0,
    fill: str | float = "zero",
) -> dict[str, torch.Tensor]:
    """Deletion or insertion curve and its normalised AUC (RISE protocol).

    Pixels are ranked by decreasing map value (ties broken randomly but reproducibly with
    ``seed``). After step ``s`` of ``steps`` the first ``floor(s * H * W / steps)`` pixels
    of that order have been changed, in all channels:

    * deletion: start from the image, set the pixels to ``fill`` (0 by default);
    * insertion: start from a Gaussian-blurred copy of the image (torchvision
      ``gaussian_blur``, kernel ``blur_kernel`` clamped to an odd number <= each image
      side, sigma ``blur_sigma``) and put the original pixels back.

    The softmax probability of ``target`` is recorded at the ``steps + 1`` points
    (0 changed ... all changed). The AUC is the trapezoid area under the curve with the
    x axis the fraction of pixels changed, in [0, 1].

    Parameters
    ----------
    model : nn.Module
        Pixel-space images -> logits (N, num_classes). Run in eval mode under no_grad on
        its parameters' device; its train/eval flags are restored afterwards.
    inputs : Tensor (N, C, H, W)
        Images in [0, 1].
    maps : Tensor (N, 1, H, W) or (N, H, W)
        Attribution maps for ``target``.
    target : LongTensor (N,)
        Class whose probability is tracked (an int is broadcast to all images).
    mode : {"deletion", "insertion"}
    steps : int
        Number of steps (curve has ``steps + 1`` points).
    batch_size : int
        The ``(steps + 1) * N`` perturbed images are evaluated in chunks of this size.
    blur_kernel : int
        Insertion only: Gaussian kernel size (11 in RISE).
    blur_sigma : float
        Insertion only: Gaussian sigma (5 in RISE).
    seed : int
        Seed of the tie-breaking permutation.
    fill : {"zero", "mean", "road"} or float
        Deletion only: what a deleted pixel becomes. ``"zero"`` is black in pixel space;
        ``"mean"`` is the mean colour of the model's :class:`~pellucid.models.Normalize`
        layer, i.e. zero in the *normalised* input, which is what the RISE authors' code
        deletes into (its images are normalised before ``torch.zeros_like`` substrates
        them); ``"road"`` imputes it from its neighbours (:func:`noisy_linear_imputation`,
        ROAD, Rong et al. 2022: the removed region's shape does not show; slower, use fewer
        ``steps``, ROAD itself reports 9); a number is a constant grey level.

    Returns
    -------
    dict
        ``"auc"``: Tensor (N,); ``"curves"``: Tensor (N, steps + 1); ``"fractions"``:
        Tensor (steps + 1,), the x axis. On the device of ``inputs``. Deletion AUC: lower
        is better; insertion AUC: higher is better.

    References
    ----------
    Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
    Models", BMVC 2018 (Sec. 4.1, causal metrics).
    """
    if mode not in ("deletion", "insertion"):
        raise DataError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if int(steps) < 1:
        raise DataError(f"steps must be >= 1, got {steps}")
    if int(batch_size) < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    steps, batch_size = int(steps), int(batch_size)
    x = _as_images(inputs)
    out_device = x.device
    n, c, h, w = x.shape
    m = _as_maps(maps)
    if tuple(m.shape) != (n, h, w):
        raise DataError(
            f"maps and inputs have mismatched N/H/W: maps {tuple(m.shape)} (N, H, W) vs "
            f"inputs {tuple(x.shape)} (N, C, H, W)"
        )
    device = _model_device(model, x.device)
    t = _as_target(target, n, device)
    x = x.to(device)

    hw = h * w
    small = torch.int32 if hw < 2**31 else torch.long  # the rank table is N x H x W
    rank = _removal_rank(m.reshape(n, hw).cpu().double(), seed).to(small)
    rank = rank.to(device).view(n, 1, h, w)
    counts = (torch.arange(steps + 1, dtype=torch.long) * hw) // steps
    fractions = counts.double() / hw  # CPU, float64 (not every device has it)
    counts = counts.to(device=device, dtype=small)

    if mode == "insertion":
        if int(blur_kernel) < 1:
            raise DataError(f"blur_kernel must be >= 1, got {blur_kernel}")
        if not (float(blur_sigma) > 0 and math.isfinite(float(blur_sigma))):
            raise DataError(f"blur_sigma must be a finite number > 0, got {blur_sigma}")
        from torchvision.transforms.functional import gaussian_blur

        kernel = [_odd_at_most(int(blur_kernel), w), _odd_at_most(int(blur_kernel), h)]
        base = gaussian_blur(x, kernel, [float(blur_sigma), float(blur_sigma)])
    elif fill == "road":
        base = None  # imputed per perturbed image
    else:
        base = _deletion_fill(model, fill, c).to(device=device, dtype=x.dtype)

    total = n * (steps + 1)
    probs = torch.empty(total, dtype=torch.float32, device=device)
    with _eval_mode(model), torch.no_grad():
        for start in range(0, total, batch_size):
            j = torch.arange(start, min(start + batch_size, total), device=device)
            i, s = j // (steps + 1), j % (steps + 1)
            changed = rank[i] < counts[s].view(-1, 1, 1, 1)  # (B, 1, H, W)
            if mode == "deletion" and base is None:  # ROAD: seeded per (image, step)
                batch = noisy_linear_imputation(x[i], changed, seed=(seed * 1_000_003 + j).tolist())
            elif mode == "deletion":
                batch = torch.where(changed, base, x[i])
            else:
                batch = torch.where(changed, x[i], base[i])
            logits = model(batch)
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else logits
                raise DataError(f"model must return logits (N, num_classes), got {shape}")
            if start == 0 and int(t.max()) >= logits.shape[1]:
                raise DataError(
                    f"target has class {int(t.max())} but the model has {logits.shape[1]} classes"
                )
            p = torch.softmax(logits.float(), dim=1)
            probs[start : start + len(j)] = p.gather(1, t[i].view(-1, 1)).squeeze(1)
    curves = probs.view(n, steps + 1).cpu()
    auc = torch.trapezoid(curves.double(), x=fractions, dim=1)
    return {
        "auc": auc.float().to(out_device),
        "curves": curves.to(out_device),
        "fractions": fractions.float().to(out_device),
    }


def _deletion_fill(model: nn.Module, fill: str | float, channels: int) -> torch.Tensor:
    """The value deleted pixels take: a 0-dim tensor, or (1, C, 1, 1) for ``"mean"``."""
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        if not math.isfinite(float(fill)):
            raise DataError(f"deletion fill must be finite, got {fill}")
        return torch.tensor(float(fill))
    if fill == "zero":
        return torch.tensor(0.0)
    if fill == "mean":
        from pellucid.models.base import normalisation_mean

        mean = normalisation_mean(model, channels)
        if mean is None:
            raise DataError(
                f'deletion fill="mean" needs a Normalize layer with {channels} channel(s) in '
                'the model; pass fill="zero" or a number instead'
            )
        return mean.detach().float().view(1, channels, 1, 1)
    raise DataError(f"deletion fill must be 'zero', 'mean', 'road' or a number, got {fill!r}")


def deletion_auc(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    target: torch.Tensor,
    steps: int = 64,
    batch_size: int = 256,
    seed: int = 0,
    fill: str | float = "zero",
) -> torch.Tensor:
    """Deletion AUC per image (N,), lower is better: see :func:`deletion_insertion`."""
    return deletion_insertion(
        model,
        inputs,
        maps,
        target,
        "deletion",
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        fill=fill,
    )["auc"]


def insertion_auc(
    model: nn.Module,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    target: torch.Tensor,
    steps: int = 64,
    batch_size: int = 256,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    seed: int = 0,
) -> torch.Tensor:
    """Insertion AUC per image (N,), higher is better: see :func:`deletion_insertion`."""
    return deletion_insertion(
        model,
        inputs,
        maps,
        target,
        "insertion",
        steps=steps,
        batch_size=batch_size,
        blur_kernel=blur_kernel,
        blur_sigma=blur_sigma,
        seed=seed,
    )["auc"]


# ------------------------------------------------------------------------- rank correlation


def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Row-wise ranks 1..D of (N, D) values, ties given their average rank (like
    ``scipy.stats.rankdata(method="average")``)."""
    n, d = v.shape
    sorted_v, idx = v.sort(dim=1, stable=True)
    new = torch.ones(n, d, dtype=torch.long, device=v.device)
    new[:, 1:] = (sorted_v[:, 1:] != sorted_v[:, :-1]).long()
    group = new.flatten().cumsum(0) - 1  # tie groups never span rows: new[:, 0] = 1
    pos = torch.arange(1, d + 1, dtype=torch.float64, device=v.device).repeat(n)
    size = int(group[-1]) + 1
    sums = torch.zeros(size, dtype=torch.float64, device=v.device).index_add_(0, group, pos)
    cnt = torch.bincount(group, minlength=size).double()
    ranks_sorted = (sums / cnt)[group].view(n, d)
    return torch.empty_like(ranks_sorted).scatter_(1, idx, ranks_sorted)


def spearman_rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Spearman rank correlation of two sets of maps.

    Pearson correlation of the average ranks (ties share their mean rank) of the flattened
    maps, as ``scipy.stats.spearmanr``.

    Parameters
    ----------
    a, b : Tensor (N, 1, H, W) or (N, H, W)
        Same N, H, W.

    Returns
    -------
    Tensor (N,)
        In [-1, 1]; NaN where either map is constant.
    """
    x = _as_maps(a, "a")
    y = _as_maps(b, "b")
    if tuple(x.shape) != tuple(y.shape):
        raise DataError(f"a and b have mismatched N/H/W: {tuple(x.shape)} vs {tuple(y.shape)}")
    n, device = x.shape[0], x.device
    rx = _average_ranks(x.reshape(n, -1).cpu().double())  # CPU: float64 everywhere
    ry = _average_ranks(y.reshape(n, -1).cpu().double())
    rx = rx - rx.mean(dim=1, keepdim=True)
    ry = ry - ry.mean(dim=1, keepdim=True)
    denom = (rx.square().sum(dim=1) * ry.square().sum(dim=1)).sqrt()
    num = (rx * ry).sum(dim=1)
    corr = torch.where(denom > 0, num / denom.clamp_min(1e-300), torch.full_like(num, math.nan))
    return corr.clamp(-1.0, 1.0).float().to(device)


# ------------------------------------------------------------------ randomisation check


def randomised_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with all learnable weights re-initialised.

    Every sub-module with a ``reset_parameters()`` method (convolutions, linear and
    normalisation layers, ...) is reset to its default initialisation, and normalisation
    running statistics are reset (``reset_running_stats()``). Buffers that are not learnable
    statistics (e.g. the mean/std of :class:`pellucid.models.Normalize`) are kept. The
    re-initialisation draws from the CPU generator seeded with ``seed`` (mixed with a fixed
    salt, so that a model built right after ``torch.manual_seed(seed)`` is not re-drawn
    with its own initial weights) inside ``torch.random.fork_rng``, so it is reproducible,
    independent of the model's device, and leaves the global RNG state untouched. The
    original model is not modified; the copy keeps its train/eval flags, requires_grad
    flags and device.

    A warning names any learnable parameter that no ``reset_parameters()`` covers (for
    example a method's own ``nn.Parameter`` such as CSG gates): those keep their trained
    values.

    References
    ----------
    Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps",
    NeurIPS 2018 (model parameter randomisation test, full re-initialisation).
    """
    out = copy.deepcopy(model)
    on_cpu = all(t.device.type == "cpu" for t in [*out.parameters(), *out.buffers()])
    work = out if on_cpu else copy.deepcopy(out).cpu()
    covered: set[int] = set()
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed((int(seed) ^ _SEED_SALT) % (1 << 63))
        with torch.no_grad():
            for mod in work.modules():
                reset = getattr(mod, "reset_parameters", None)
                if callable(reset):
                    reset()
                    covered.update(id(p) for p in mod.parameters(recurse=False))
                stats = getattr(mod, "reset_running_stats", None)
                if callable(stats):
                    stats()
    left = [name for name, p in work.named_parameters() if id(p) not in covered]
    if left:
        warnings.warn(
            f"randomised_copy: {len(left)} parameter(s) have no reset_parameters() and keep "
            f"their trained values: {', '.join(left[:8])}{' ...' if len(left) > 8 else ''}",
            stacklevel=2,
        )
    if work is not out:
        out.load_state_dict(work.state_dict())
    return out


def model_randomisation(
    make_maps: Callable[[nn.Module], torch.Tensor], model: nn.Module, seed: int = 0
) -> dict[str, Any]:
    """Model-parameter randomisation sanity check (Adebayo et al. 2018), full re-init.

    Parameters
    ----------
    make_maps : callable
        ``make_maps(m) -> Tensor (N, 1, H, W)`` explains the same images with model ``m``.
        Called with ``model`` and with ``randomised_copy(model, seed)``.
    model : nn.Module
        The trained model; its train/eval and requires_grad flags are restored afterwards.
    seed : int
        Seed of the re-initialisation.

    Returns
    -------
    dict
        ``"rank_correlation"``: Tensor (N,), Spearman correlation of each image's maps
        (NaN where a map is constant); ``"mean"``: float, the NaN-ignoring mean. Lower is
        better: a faithful method's maps change when the weights are randomised.

    References
    ----------
    Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps",
    NeurIPS 2018.
    """
    modes = [(mod, mod.training) for mod in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        trained = make_maps(model)
    finally:
        for mod, was in modes:
            mod.training = was
        for p, rg in grads:
            p.requires_grad_(rg)
    rnd = randomised_copy(model, seed)
    randomised = make_maps(rnd)
    corr = spearman_rank_correlation(trained, randomised)
    return {"rank_correlation": corr, "mean": float(torch.nanmean(corr))}
