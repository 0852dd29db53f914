"""Faithfulness of attribution maps (evaluation.md, "Faithfulness"): deletion / insertion
curves and their AUC (RISE), with black, mean-colour or ROAD fill. The model-parameter
randomisation check is in :mod:`pellucid.metrics.sanity`.

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

import torch
from torch import nn

from pellucid.errors import DataError
from pellucid.metrics.base import declare
from pellucid.metrics.checks import as_images, as_maps, as_target
from pellucid.metrics.curves import (
    check_curve_options,
    deletion_fill,
    odd_at_most,
    removal_rank,
    target_probabilities,
)
from pellucid.metrics.imputation import noisy_linear_imputation
from pellucid.state import model_device

__all__ = ["deletion_auc", "deletion_insertion", "insertion_auc"]

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
    steps, batch_size = check_curve_options(mode, steps, batch_size, blur_kernel, blur_sigma)
    if mode == "insertion" and not (isinstance(fill, str) and fill == "zero"):
        raise DataError(
            f"fill={fill!r} is for deletion: insertion starts from the blurred image "
            "(blur_kernel, blur_sigma)"
        )
    if target is None:
        raise DataError(
            "target is required: the class each map explains (e.g. model(inputs).argmax(1) "
            "for the predicted class)"
        )
    x = as_images(inputs, model)
    out_device = x.device
    n, c, h, w = x.shape
    m = as_maps(maps)
    if tuple(m.shape) != (n, h, w):
        raise DataError(
            f"maps and inputs have mismatched N/H/W: maps {tuple(m.shape)} (N, H, W) vs "
            f"inputs {tuple(x.shape)} (N, C, H, W)"
        )
    device = model_device(model, fallback=x.device)
    t = as_target(target, n, device)
    x = x.to(device)

    hw = h * w
    small = torch.int32 if hw < 2**31 else torch.long  # the rank table is N x H x W
    rank = removal_rank(m.reshape(n, hw).cpu().double(), seed).to(small)
    rank = rank.to(device).view(n, 1, h, w)  # (N, 1, H, W)
    counts = (torch.arange(steps + 1, dtype=torch.long) * hw) // steps  # pixels changed
    fractions = counts.double() / hw  # CPU, float64 (not every device has it)
    counts = counts.to(device=device, dtype=small)

    if mode == "insertion":
        from torchvision.transforms.functional import gaussian_blur

        kernel = [odd_at_most(int(blur_kernel), w), odd_at_most(int(blur_kernel), h)]
        base = gaussian_blur(x, kernel, [float(blur_sigma), float(blur_sigma)])
    elif fill == "road":
        base = None  # imputed per perturbed image
    else:
        base = deletion_fill(model, fill, c).to(device=device, dtype=x.dtype)

    def perturbed(j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The perturbed images (B, C, H, W) number ``j = image * (steps + 1) + step``,
        and the index of the image each one was made from (B,)."""
        i, s = j // (steps + 1), j % (steps + 1)
        changed = rank[i] < counts[s].view(-1, 1, 1, 1)  # (B, 1, H, W)
        if mode == "deletion" and base is None:
            # ROAD, seeded per step (not per image: an image's curve must not depend on
            # the batch it is scored in)
            return noisy_linear_imputation(x[i], changed, seed=(seed * 1_000_003 + s).tolist()), i
        if mode == "deletion":
            return torch.where(changed, base, x[i]), i
        return torch.where(changed, x[i], base[i]), i

    probs = target_probabilities(model, perturbed, t, n * (steps + 1), batch_size, device)
    curves = probs.view(n, steps + 1).cpu()  # (N, steps + 1)
    auc = torch.trapezoid(curves.double(), x=fractions, dim=1)
    return {
        "auc": auc.float().to(out_device),
        "curves": curves.to(out_device),
        "fractions": fractions.float().to(out_device),
    }


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
