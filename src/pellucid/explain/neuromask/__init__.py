"""NeuroMask: explain a prediction by learning the smallest smooth mask that keeps it.

Alzantot, Widdicombe, Julier, Srivastava, "NeuroMask: Explaining Predictions of Deep Neural
Networks through Mask Learning", SMARTCOMP 2019 (arXiv:1908.04389); specification in
``shared/methods/neuromask.md``.

For an image x and class c, free mask logits W (one channel) give the mask
``M = sigmoid(W / T)`` and the masked image ``x~ = x * M + fill * (1 - M)`` (fill = 0 in the
paper). The loss, per image, is

    l_pred * CE(f(x~), c) + l_sparse * mean|W + L| + l_smooth * S(W)

with L the logit bound (10; W starts uniform in [-L, L]) and S the mean squared response of
a discrete Laplacian (3x3: centre 8, neighbours -1) — or total variation. The ``reference``
preset is the paper's setting (full-resolution logits, zero fill, Laplacian, RMSprop lr 0.03,
2000 iterations, one image at a time). The default preset adds what makes the method usable:
the masks of a whole batch are optimised together (each image's loss is summed, never
averaged, and the optimisers are element-wise, so an image's mask does not depend on its
batch), the logits live on a coarse grid upsampled bilinearly (no speckle, far fewer free
variables), Adam, and per-image early stopping.

Options that are ours, not the paper's (measured by ``benchmarks/explainers.py --sweep``):
a deletion-game term after Fong & Vedaldi 2017 on the same mask,
``l_delete * log p_c(x * (1 - M) + fill * M)`` (or the saturating ``-log(1 - p_c)``, or
``log(p_c + 1/K)``, which stops rewarding the deletion once p_c is below chance), so that
removing the mask's region must also remove the class; the ``border`` fill, each image's own
background colour (the median of its border pixels), so that a removed object leaves no
black silhouette on a textured image; and an area sparsity ``mean(M)`` (their L1 on the
mask) in place of the paper's L1 on the logits. The default preset uses the first two with
Fong & Vedaldi's grid (28 x 28 at 224 px, i.e. a factor 8); ``reference`` uses none. Two
more options of ours (2026-12-02, ``benchmarks/explainers.py --validation``): ``pyramid``,
logits as the sum of the coarse grid and finer grids, and ``delete_mask``, a deletion game
on a mask of its own whose product (or mean) with the preservation mask is returned; and
``sparsity="area"``, the mask's area fixed by the ranking constraint of Extremal
Perturbations (Fong, Patrick & Vedaldi 2019) at one or several areas. Since 2026-12-02 the
default also refines the returned map (``refine``, ours): the coarse mask's near-equal values
inside its kept region are ordered by the full-resolution gradient of the loss with respect
to the mask, ``(M + refine * rank(-dL/dM)) / (1 + refine)`` (weight 0.1 until the second
validation round of 2026-12-02, 0.5 since); ``refine_mode="product"`` multiplies instead,
``M * (1 + refine * rank) / (1 + refine)``, so that the map stays inside the mask.

Modules: :mod:`~pellucid.explain.neuromask.options` (every option, documented, with the
presets and their checks), :mod:`~pellucid.explain.neuromask.objective` (the loss terms,
fills and early stopping) and :mod:`~pellucid.explain.neuromask.explainer` (the optimisation).
"""

from pellucid.explain.neuromask.explainer import NeuroMask, neuromask_reference
from pellucid.explain.neuromask.objective import average_ranks, border_fill, refine_masks
from pellucid.explain.neuromask.options import (
    DELETE_MASKS,
    DELETE_OBJECTIVES,
    FILLS,
    OPTIMIZERS,
    PRESETS,
    REFINE_MODES,
    SMOOTHNESS,
    SPARSITY,
    NeuroMaskOptions,
)
from pellucid.explain.neuromask.validation import validate

__all__ = [
    "DELETE_MASKS",
    "DELETE_OBJECTIVES",
    "FILLS",
    "OPTIMIZERS",
    "PRESETS",
    "REFINE_MODES",
    "SMOOTHNESS",
    "SPARSITY",
    "NeuroMask",
    "NeuroMaskOptions",
    "average_ranks",
    "border_fill",
    "neuromask_reference",
    "refine_masks",
    "validate",
]
