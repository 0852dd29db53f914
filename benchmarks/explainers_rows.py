"""The option rows of ``benchmarks/explainers.py --sweep`` (``SWEEP``) and ``--validation``
(``VALIDATION``): a label, an explainer name and its options. A row keeps the options it
ran with, so that re-running it reproduces its figures; what each sweep found is in
``docs/neuromask-sweeps.md`` and in the validation section of
``docs/explainer-benchmarks.md``."""

from __future__ import annotations

from typing import Any

# NeuroMask option sweep: how the defaults were chosen ("gradcam" and "occlusion" are the
# peers the target is set against). The rows up to 2026-12-01's second session override the
# default of that time, OLD_DEFAULT (half-resolution grid, zero fill, no deletion game, Adam
# lr 0.2, 100 steps); the rows of the third session override the current default.
OLD_DEFAULT = {"mask_scale": 2, "fill": "zero", "l_delete": 0.0, "iterations": 100, "lr": 0.2}
# The two settings the second session recommended (held-out images): strokes, textured.
FAST_DELETION = {"mask_scale": 4, "l_delete": 0.2, "iterations": 50, "lr": 0.3}
TEXTURED = {"fill": "blur", "mask_scale": 4, "smooth_map": 4.0}
_OLD_ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("previous default", "neuromask", {}),
    ("quarter-resolution grid", "neuromask", {"mask_scale": 4}),
    ("blur fill, quarter grid", "neuromask", {"fill": "blur", "mask_scale": 4}),
    ("area sparsity mean(M), l_sparse 1", "neuromask", {"sparsity": "mask", "l_sparse": 1.0}),
    ("deletion -log(1 - p_c) 0.4", "neuromask", {"l_delete": 0.4, "delete_objective": "not-class"}),
    ("deletion log p_c 0.1", "neuromask", {"l_delete": 0.1}),
    ("deletion log p_c 0.2", "neuromask", {"l_delete": 0.2}),
    ("deletion log p_c 0.2, quarter grid", "neuromask", {"l_delete": 0.2, "mask_scale": 4}),
    ("deletion log p_c 0.2, quarter grid, 50 steps lr 0.3", "neuromask", FAST_DELETION),
    ("default, map smoothed sigma 2", "neuromask", {"smooth_map": 2.0}),
    ("blur fill, quarter grid, map smoothed sigma 4", "neuromask", TEXTURED),
    (
        "blur fill, quarter grid + deletion log p_c 0.1 (zero fill)",
        "neuromask",
        {"fill": "blur", "mask_scale": 4, "l_delete": 0.1, "delete_fill": "zero"},
    ),
    # 2026-12-01, second session: one setting for both datasets?
    ("mean fill, quarter grid", "neuromask", {"fill": "mean", "mask_scale": 4}),
    (
        "mean fill, quarter grid + deletion log p_c 0.2 (mean fill)",
        "neuromask",
        {"fill": "mean", "mask_scale": 4, "l_delete": 0.2},
    ),
    (
        "zero fill, quarter grid + deletion log p_c 0.2 (blur fill)",
        "neuromask",
        {"mask_scale": 4, "l_delete": 0.2, "delete_fill": "blur"},
    ),
    (
        "blur fill, quarter grid + deletion log p_c 0.2 (blur fill), map smoothed 2",
        "neuromask",
        {"fill": "blur", "mask_scale": 4, "l_delete": 0.2, "smooth_map": 2.0},
    ),
    (
        "deletion game only (l_pred 0), log p_c 0.2, quarter grid",
        "neuromask",
        {"mask_scale": 4, "l_pred": 0.0, "l_delete": 0.2},
    ),
    ("FAST_DELETION with l_delete 0.02", "neuromask", {**FAST_DELETION, "l_delete": 0.02}),
    ("FAST_DELETION with l_delete 0.05", "neuromask", {**FAST_DELETION, "l_delete": 0.05}),
    ("FAST_DELETION with l_delete 0.1", "neuromask", {**FAST_DELETION, "l_delete": 0.1}),
    ("FAST_DELETION, map smoothed 1", "neuromask", {**FAST_DELETION, "smooth_map": 1.0}),
    ("FAST_DELETION, map smoothed 2", "neuromask", {**FAST_DELETION, "smooth_map": 2.0}),
    ("FAST_DELETION, l_pred 2", "neuromask", {**FAST_DELETION, "l_pred": 2.0}),
    (
        "deletion log(p_c + 1/K) 0.2",
        "neuromask",
        {"l_delete": 0.2, "delete_objective": "above-chance"},
    ),
    (
        "deletion log(p_c + 1/K) 0.5",
        "neuromask",
        {"l_delete": 0.5, "delete_objective": "above-chance"},
    ),
    (
        "deletion log(p_c + 1/K) 0.2, map smoothed 2",
        "neuromask",
        {"l_delete": 0.2, "delete_objective": "above-chance", "smooth_map": 2.0},
    ),
    (
        "deletion log(p_c + 1/K) 0.2, 50 steps lr 0.3",
        "neuromask",
        {"l_delete": 0.2, "delete_objective": "above-chance", "iterations": 50, "lr": 0.3},
    ),
    (
        "deletion log(p_c + 1/K) 0.2, quarter grid, 50 steps lr 0.3",
        "neuromask",
        {**FAST_DELETION, "delete_objective": "above-chance"},
    ),
]
# 2026-12-01, third session: the border fill (each image's background colour) in both games.
_SWEEP_UNREFINED: list[tuple[str, str, dict[str, Any]]] = [
    ("Grad-CAM (peer)", "gradcam", {}),
    ("occlusion (peer)", "occlusion", {}),
    *[(label, name, {**OLD_DEFAULT, **opts}) for label, name, opts in _OLD_ROWS],
    ("border fill, quarter grid", "neuromask", {**OLD_DEFAULT, "fill": "border", "mask_scale": 4}),
    ("FAST_DELETION, border fill", "neuromask", {**FAST_DELETION, "fill": "border"}),
    (
        "FAST_DELETION, border fill, l_delete 0.1",
        "neuromask",
        {**FAST_DELETION, "fill": "border", "l_delete": 0.1},
    ),
    (
        "FAST_DELETION, border fill, grid /8",
        "neuromask",
        {**FAST_DELETION, "fill": "border", "mask_scale": 8},
    ),
    (
        "FAST_DELETION, border fill, grid /6",
        "neuromask",
        {**FAST_DELETION, "fill": "border", "mask_scale": 6},
    ),
    ("default (border fill, grid /8, l_delete 0.1, 50 steps lr 0.3)", "neuromask", {}),
    ("default, l_delete 0.4", "neuromask", {"l_delete": 0.4}),
    ("default, grid /16", "neuromask", {"mask_scale": 16}),
    ("default, map smoothed 2", "neuromask", {"smooth_map": 2.0}),
    (
        "default, deletion log(p_c + 1/K) 0.5",
        "neuromask",
        {"l_delete": 0.5, "delete_objective": "above-chance"},
    ),
    ("default, zero fill", "neuromask", {"fill": "zero"}),
    ("default, deletion fill mean", "neuromask", {"delete_fill": "mean"}),
]
# every sweep row ran before the map refinement (``refine``, 2026-12-02) and keeps it off
SWEEP: list[tuple[str, str, dict[str, Any]]] = [
    (label, name, {**opts, "refine": 0.0} if name == "neuromask" else opts)
    for label, name, opts in _SWEEP_UNREFINED
]


# Validation sweep (2026-12-02): the multi-resolution logit pyramid (``pyramid``) with and
# without a stronger deletion game, on 128 images no benchmark or earlier sweep used.
_UNREFINED: list[tuple[str, str, dict[str, Any]]] = [
    ("Grad-CAM (peer)", "gradcam", {}),
    ("occlusion (peer)", "occlusion", {}),
    ("default until 2026-12-02 (refine 0)", "neuromask", {}),
    ("pyramid 2", "neuromask", {"pyramid": 2}),
    ("pyramid 3", "neuromask", {"pyramid": 3}),
    ("pyramid 2, l_delete 0.2", "neuromask", {"pyramid": 2, "l_delete": 0.2}),
    ("pyramid 3, l_delete 0.2", "neuromask", {"pyramid": 3, "l_delete": 0.2}),
    (
        "pyramid 3, l_delete 0.2, map smoothed 1",
        "neuromask",
        {"pyramid": 3, "l_delete": 0.2, "smooth_map": 1.0},
    ),
    (
        "pyramid 3, deletion log(p_c + 1/K) 0.5",
        "neuromask",
        {"pyramid": 3, "l_delete": 0.5, "delete_objective": "above-chance"},
    ),
    # the deletion game on its own mask, combined with the preservation mask
    ("own deletion mask, product", "neuromask", {"delete_mask": "product"}),
    (
        "pyramid 3, own deletion mask, product, l_delete 0.2",
        "neuromask",
        {"pyramid": 3, "l_delete": 0.2, "delete_mask": "product"},
    ),
    (
        "pyramid 3, own deletion mask, mean, l_delete 0.2",
        "neuromask",
        {"pyramid": 3, "l_delete": 0.2, "delete_mask": "mean"},
    ),
    (
        "pyramid 3, own deletion mask, product, l_delete 0.4",
        "neuromask",
        {"pyramid": 3, "l_delete": 0.4, "delete_mask": "product"},
    ),
    # the area fixed by Extremal Perturbations' ranking constraint instead of the L1 weight
    ("area 0.1, l_sparse 10", "neuromask", {"sparsity": "area", "area": 0.1, "l_sparse": 10.0}),
    (
        "areas 0.05, 0.1, 0.2, l_sparse 10",
        "neuromask",
        {"sparsity": "area", "area": (0.05, 0.1, 0.2), "l_sparse": 10.0},
    ),
]

# Every row above ran before the map refinement existed (2026-12-02); they keep ``refine=0``
# so that re-running one reproduces its figures. Then the refinement (``refine``): weight
# 0.1 (the default's mask with its plateau ordered by the full-resolution gradient; the
# default until the second round of 2026-12-02), 0.3, the default (weight 0.5, chosen among
# these), 1 and 2, and the gradient's ranks alone (a weight so large the mask only breaks ties).
VALIDATION: list[tuple[str, str, dict[str, Any]]] = [
    (label, name, {**opts, "refine": 0.0} if name == "neuromask" else opts)
    for label, name, opts in _UNREFINED
] + [
    ("refine 0.1 (the default before refine 0.5)", "neuromask", {"refine": 0.1}),
    ("refine 0.3", "neuromask", {"refine": 0.3}),
    ("default", "neuromask", {}),
    ("refine 1", "neuromask", {"refine": 1.0}),
    ("refine 2", "neuromask", {"refine": 2.0}),
    ("refine 1e6 (the gradient's ranks alone)", "neuromask", {"refine": 1e6}),
    # 2026-12-03: the refinement's gradient integrated along the path from the intact image
    # (``refine_steps``), and its rank averaged over fills (``refine_fills``)
    ("refine path 8", "neuromask", {"refine_steps": 8}),
    ("refine fills zero, mean", "neuromask", {"refine_fills": ("zero", "mean")}),
    (
        "refine path 8, fills zero, mean",
        "neuromask",
        {"refine_steps": 8, "refine_fills": ("zero", "mean")},
    ),
    # 2026-12-04: the rank multiplied into the mask (``refine_mode="product"``), which keeps
    # the map inside the mask (the sum spreads the rank over the whole image)
    ("refine product 0.5", "neuromask", {"refine_mode": "product"}),
    ("refine product 2", "neuromask", {"refine_mode": "product", "refine": 2.0}),
    # and both with a deletion mask of its own (returned as the two masks' product)
    ("own deletion mask, product, refine 0.5", "neuromask", {"delete_mask": "product"}),
    (
        "own deletion mask, product, refine product 0.5",
        "neuromask",
        {"delete_mask": "product", "refine_mode": "product"},
    ),
]


PEER_CONFIGS = ("Grad-CAM (peer)", "occlusion (peer)")
