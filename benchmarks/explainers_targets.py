"""The issue's targets for ``benchmarks/explainers.py``: NeuroMask against the peers
(Grad-CAM, occlusion) on the means and by paired bootstrap intervals, and the controls check
of each deletion protocol."""

from __future__ import annotations

from typing import Any

import torch

from pellucid.explain.scoring import paired_difference

CONTROLS = ("centre", "random")
PEERS = ("gradcam", "occlusion")
TARGET_SCORES = {
    "pointing_game": "pointing",
    "deletion_auc": "deletion",
    "deletion_auc_mean_fill": "deletion_mean_fill",
}


def target_intervals(scores: dict[str, dict[str, Any]], labels: torch.Tensor) -> dict[str, Any]:
    """NeuroMask minus each peer on every score a target judges, with a paired bootstrap 95 %
    interval over the images (:func:`pellucid.explain.scoring.paired_difference`): a target
    met on the means but with an interval that contains 0 is a difference these images do
    not resolve."""
    out: dict[str, Any] = {}
    for key in TARGET_SCORES:
        if key in scores["neuromask"]:
            out[key] = {
                peer: paired_difference(scores["neuromask"], scores[peer], labels, key)
                for peer in PEERS
            }
    return out


def peer_targets(rows: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """The issue's target on the means: does NeuroMask beat every peer on each score of
    TARGET_SCORES (pointing higher, deletion lower)?"""
    nm = rows["neuromask"]
    return {
        f"beats_gradcam_and_occlusion_{short}": all(
            (nm[key] > rows[p][key]) if key == "pointing_game" else (nm[key] < rows[p][key])
            for p in PEERS
        )
        for key, short in TARGET_SCORES.items()
        if key in nm
    }


def resolved_targets(intervals: dict[str, Any]) -> dict[str, bool]:
    """The same targets judged by the paired intervals: met only where every interval
    excludes 0 on NeuroMask's side."""
    return {
        f"beats_gradcam_and_occlusion_{short}": all(
            intervals[key][peer]["resolved"]
            and (intervals[key][peer]["difference"] > 0) == (key == "pointing_game")
            for peer in PEERS
        )
        for key, short in TARGET_SCORES.items()
        if key in intervals
    }


def controls_check(
    rows: dict[str, dict[str, Any]],
    keys: tuple[str, ...] = ("deletion_auc", "deletion_auc_mean_fill"),
) -> dict[str, bool]:
    """Per deletion protocol: is each control (centre point, random map) worse than every
    real explainer? A protocol where a control beats explainers measures something other
    than faithfulness (on shapes, black holes in a textured image)."""
    out = {}
    for key in keys:
        real = [r[key] for n, r in rows.items() if n not in CONTROLS and key in r]
        ctrl = [r[key] for n, r in rows.items() if n in CONTROLS and key in r]
        if real and ctrl:
            out[key] = min(ctrl) > max(real)
    return out
