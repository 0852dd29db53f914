"""NeuroMask's options and their presets (``shared/methods/neuromask.md``); their validation is
in :mod:`pellucid.explain.neuromask.validation`."""

from __future__ import annotations

from dataclasses import dataclass

FILLS = ("zero", "mean", "blur", "border")
SMOOTHNESS = ("laplacian", "tv")
SPARSITY = ("logits", "mask", "area")
DELETE_OBJECTIVES = ("log-prob", "not-class", "above-chance")
DELETE_MASKS = ("shared", "product", "mean")
REFINE_MODES = ("add", "product")
OPTIMIZERS = ("adam", "rmsprop", "sgd")


@dataclass(frozen=True)
class NeuroMaskOptions:
    """Every NeuroMask option; the values here are the default preset, chosen by the held-out
    sweep on both benchmark datasets (2026-12-01, see ``benchmarks/explainers.py`` and the
    studies in ``docs/explainer-benchmarks.md``).

    Attributes
    ----------
    mask_size : int, optional
        Side of the mask-logit grid, upsampled bilinearly to the image; ``None`` uses
        ``ceil(H / mask_scale)`` (full resolution when ``mask_scale`` is 1).
    mask_scale : int
        Default downsampling factor of the grid (8: an 8x8 grid for 64x64 images, the
        28 x 28 grid of Fong & Vedaldi 2017 at 224 px). On the held-out images a coarse
        grid removes the object with its surroundings as one blob, which is what lowers
        deletion AUC on textured images; a factor 2 or 4 keeps more detail.
    pyramid : int
        Number of logit grids (ours; default 1). With ``pyramid = k`` the logits are the
        sum of the mask grid and ``k - 1`` grids each twice as fine (capped at the image
        size), each upsampled bilinearly: the coarse grid carries the blob, the finer ones
        its detail, so the mask can follow a thin stroke without the full-resolution
        grid's speckle. The finer grids start at 0; the sparsity and smoothness terms act
        on the summed logits. The cost per step is unchanged (the model's forward dominates).
    fill : {"border", "zero", "mean", "blur"} or float
        What removed pixels become: each image's own background colour, the per-channel
        median of its border pixels (default, ours: :func:`border_fill`; on a black
        background it is 0, the paper's fill), 0 (paper), the dataset mean (read from the
        model's normalisation layer; the image's mean if it has none), a blurred copy of the
        image (Fong & Vedaldi 2017), or a constant. A blurred digit stays readable, so the
        blur fill lets the mask leave the object on strokes-on-black images (pointing 0.84 on
        held-out cluttered-mnist); ``border`` does not, and it keeps the deletion game's
        mask on the object of textured images (see ``l_delete``).
    blur_sigma : float, optional
        Blur for ``fill="blur"``; default 10 px at 224 px, scaled with the image.
    smoothness : {"laplacian", "tv"}
        Mean squared 3x3 Laplacian response of W (paper), or mean absolute difference of
        neighbouring logits (total variation).
    l_pred, l_sparse, l_smooth : float
        Loss weights (paper: 0.4, 0.35, 0.15 for 32x32 images; default 0.4, 0.2, 0: on a
        coarse grid the bilinear upsampling already smooths, and the Laplacian of logits that
        sit at +-L dominated the loss in our measurements).
    sparsity : {"logits", "mask"}
        What ``l_sparse`` weighs: ``mean|W + L|`` (paper) or the mask's area ``mean(M)``
        (ours, the L1 area term of Fong & Vedaldi 2017). With ``"mask"`` a pixel's pull to 0
        fades as its logit falls, so the order of the pixels outside the mask follows the
        model rather than a common march to -L; it did not help deletion in our sweep.
        ``"area"`` (ours, after Extremal Perturbations, Fong, Patrick & Vedaldi 2019, eq. 6):
        the mask's area is fixed at ``area`` by a ranking constraint, the mean squared
        difference between the sorted mask values and a template with a share ``1 - a`` of
        zeros followed by ones, instead of being traded against the class by tuned weights.
    area : float or tuple of float, optional
        The area(s) a of ``sparsity="area"``, each in (0, 1). With several areas each image
        is explained once per area (the batch grows by that factor, and so does the cost)
        and the returned map is the mean of its masks, so that the pixels of the smallest
        sufficient region rank first (Extremal Perturbations sum the masks of 2.5 to 20 %).
    l_delete : float
        Weight of the deletion game (ours, after Fong & Vedaldi 2017): the image with the
        mask's region removed, ``x * (1 - M) + delete_fill * M``, should lose class c.
        Default 0.1; 0 = off (as in ``reference``); when on, each step runs the model on 2N
        images. With a zero fill on textured images the deletion game spreads the mask over
        the background (held-out pointing on shapes 0.389 at ``l_delete=0.2``, quarter
        grid): zeroing the object leaves its black silhouette, which still reads as the
        class. With the ``border`` fill the same setting points at 0.908 (held-out sweep).
    delete_objective : {"log-prob", "not-class", "above-chance"}
        The deletion term: ``log p_c`` (minimised; unbounded below, held by the sparsity term),
        ``-log(1 - p_c)``, which saturates once p_c is near 0, or ``log(p_c + 1/K)`` (K
        classes), which behaves like ``log p_c`` above chance and is bounded below by
        ``log(1/K)``, so that the mask is not rewarded for pushing the class far below chance
        by removing more of the image. Neither bounded form helped in our sweep: on
        cluttered-mnist the unbounded push is what orders the supporting clutter (deletion
        0.081 vs 0.088 for ``above-chance`` on the same quarter grid), and on shapes the
        bounded form keeps the mask's peak on the object (pointing 1.000, where ``log p_c``
        falls to 0.389) but not its deletion AUC (0.200 vs Grad-CAM's 0.159).
    delete_fill : {"border", "zero", "mean", "blur"}, float or None
        What the deleted region becomes; ``None`` uses ``fill``.
    delete_mask : {"shared", "product", "mean"}
        Which mask the deletion game moves (ours). ``"shared"`` (default): the preservation
        mask itself (Fong & Vedaldi's single mask). ``"product"`` / ``"mean"``: a second mask
        of its own (same grids, initialisation and sparsity term), and the returned map is
        the two masks' product (a pixel ranks high only if it is both enough to keep the
        class and needed for it) or mean. On one shared mask the deletion game also marks
        clutter whose removal lowers p_c, and the map's maximum can land there (pointing
        game); the product keeps the maximum where the preservation mask is. The step costs
        the same 2N forwards as the shared game.
    smooth_map : float
        Gaussian sigma in pixels applied to the returned mask (ours; 0 = off). Outside the
        mask every logit sits near -L, so the order of those pixels is noise; smoothing
        orders them by nearness to the evidence. It helped deletion on textured images and
        hurt it on thin strokes on black in our sweep. ``last_info`` describes the unsmoothed
        mask.
    refine : float
        Weight of the full-resolution refinement of the returned map (ours; 0 = off, as in
        ``reference``; default 0.5). The optimised mask lives on a coarse grid, and within
        its kept region its values are nearly equal (Adam moves every logit whose gradient
        keeps its sign by about ``lr`` per step, whatever the gradient's size), so the order
        of those pixels, which the deletion curve and the pointing game's argmax read, says
        little. After the optimisation, the prediction and deletion terms of the loss are
        differentiated once with respect to the final mask M at each pixel, g = -dL/dM
        (the first-order gain of keeping that pixel: (x - fill) times the gradient at the
        masked image), and the map becomes ``(M + refine * rank(g)) / (1 + refine)`` with
        rank(g) in [0, 1] within the image. Two pixels whose mask values differ by more than
        ``refine`` keep their order; closer ones are ordered by g as well. One extra forward
        and backward per image. The weight was 0.1 at first (validation sweep,
        ``docs/explainer-benchmarks.md``: black deletion AUC 0.090 -> 0.069 on
        cluttered-mnist, 0.148 -> 0.113 on shapes); 0.5 was
        then chosen on the same 128 validation images among 0.1, 0.3, 0.5, 1 and 2. On the
        300 benchmark images 0.5 against 0.1 gives black deletion 0.068 / 0.068
        (cluttered-mnist) and 0.129 / 0.138 (shapes; occlusion 0.137), mean-fill deletion
        0.074 / 0.086 and 0.125 / 0.128, and pointing 0.993 / 0.997 and 0.955 / 0.962. The
        gradient's ranks alone (``refine=1e6``) delete best but lose the pointing game
        (validation 0.921 / 0.801), since the mask is what keeps the map's maximum on the
        object.
    refine_mode : {"add", "product"}
        How the refinement's rank enters the map (ours; default ``"add"``, the formula
        above). ``"product"`` returns ``M * (1 + refine * rank(g)) / (1 + refine)``: the
        rank reorders pixels only where the mask keeps something and a pixel the mask
        removes (M = 0) stays 0. The sum spreads ``refine / (1 + refine)`` of the range over
        every pixel, mask or not, which halves the energy pointing game (the map's mass
        inside the object's box); the product keeps the mask's support. On the 128
        validation images (2026-12-04, weight 0.5, ``docs/explainer-benchmarks.md``) the
        product doubled energy
        (cluttered-mnist 0.068 -> 0.141, shapes 0.122 -> 0.252), kept every pointing hit
        and deleted a little worse (black 0.069 -> 0.076 and 0.098 -> 0.113, mean fill
        0.087 -> 0.097 and 0.094 -> 0.106), still better than occlusion (0.089 / 0.100
        and 0.132 / 0.115) and Grad-CAM on the means. On the 300 benchmark images
        (``benchmarks/explainers.py --variants``) energy doubled as well (0.068 -> 0.135,
        0.116 -> 0.244), but shapes deletion fell behind occlusion's (black 0.145 vs
        0.137, mean fill 0.133 vs 0.114), so the sum stays the default.
    refine_steps : int
        Points of the refinement's gradient (ours; default 1: the gradient at the final
        mask). With k > 1 the gradient is integrated along the path from the intact image
        (kept mask 1, deleted mask 0) to the final mask, as integrated gradients do
        (Sundararajan et al. 2017): the gradient at the final mask alone reads the deletion
        term where the region is already removed and the class usually gone, while the
        deletion curve is decided by its first steps. Each point costs one forward and
        backward of 2N images. On the 128 validation images (2026-12-03) 8 points changed
        no pointing hit and lowered deletion a little (cluttered-mnist black 0.069 -> 0.067,
        mean fill 0.087 -> 0.084; shapes mean fill 0.094 -> 0.092, black 0.0978 -> 0.0983):
        too little to make it the default.
    refine_fills : tuple of fills
        Further fills under which the refinement's gradient is taken (ours; default none):
        the rank is the mean of the ranks under ``fill`` / ``delete_fill`` and under each of
        these in place of both, so that the order does not hang on one arbitrary fill.
        With ``("zero", "mean")``, the two deletion protocols' fills, cluttered-mnist
        mean-fill deletion fell from 0.087 to 0.066 on the validation images, but shapes
        lost pointing (0.964 -> 0.917) and both deletions rose: it tunes the map to the
        scoring fills, which helps only where they are not the image's own background.
    temperature : float
        T in ``M = sigmoid(W / T)``.
    logit_bound : float
        L: initial logits are uniform in [-L, L]; the sparsity term pulls them to -L.
    init : "uniform" or float
        Uniform in [-L, L] (paper; the same draw for every image, so that results do not
        depend on batch composition) or a constant logit (default 0: M = 0.5, where the
        sigmoid's gradient is largest; uniform logits start mostly saturated).
    optimizer : {"adam", "rmsprop", "sgd"}
    lr : float
        Learning rate (default 0.3 with Adam).
    iterations : int
        Maximum optimisation steps (default 50).
    patience, tol : int, float
        Stop an image once its loss has not improved by a relative ``tol`` for ``patience``
        steps (0 = never stop early).
    seed : int
        Seed of the initial logits.
    """

    mask_size: int | None = None
    mask_scale: int = 8
    pyramid: int = 1
    fill: str | float = "border"
    blur_sigma: float | None = None
    smoothness: str = "laplacian"
    l_pred: float = 0.4
    l_sparse: float = 0.2
    l_smooth: float = 0.0
    sparsity: str = "logits"
    area: float | tuple[float, ...] | None = None
    l_delete: float = 0.1
    delete_objective: str = "log-prob"
    delete_fill: str | float | None = None
    delete_mask: str = "shared"
    smooth_map: float = 0.0
    refine: float = 0.5
    refine_mode: str = "add"
    refine_steps: int = 1
    refine_fills: tuple[str | float, ...] = ()
    temperature: float = 1.0
    logit_bound: float = 10.0
    init: str | float = 0.0
    optimizer: str = "adam"
    lr: float = 0.3
    iterations: int = 50
    patience: int = 20
    tol: float = 1e-3
    seed: int = 0


PRESETS: dict[str, NeuroMaskOptions] = {
    # Paper setting (authors' small-image demo: T = 1, weights 0.4/0.35/0.15), one image at a
    # time, full-resolution logits, no early stopping.
    "reference": NeuroMaskOptions(
        mask_size=None,
        mask_scale=1,
        pyramid=1,
        blur_sigma=None,
        fill="zero",
        smoothness="laplacian",
        l_pred=0.4,
        l_sparse=0.35,
        l_smooth=0.15,
        sparsity="logits",
        area=None,
        l_delete=0.0,
        delete_objective="log-prob",
        delete_fill=None,
        delete_mask="shared",
        smooth_map=0.0,
        refine=0.0,
        refine_mode="add",
        refine_steps=1,
        refine_fills=(),
        temperature=1.0,
        logit_bound=10.0,
        init="uniform",
        optimizer="rmsprop",
        lr=0.03,
        iterations=2000,
        patience=0,
        tol=1e-3,
        seed=0,
    ),
    "default": NeuroMaskOptions(),
}
