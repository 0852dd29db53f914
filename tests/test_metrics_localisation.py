"""Localisation metrics on hand-built maps whose answer is known: pointing game (TorchRay
tolerance, ties, class averaging, vectorised = brute force), energy pointing game, top-q IoU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metric_helpers import peaked, square_mask
from pellucid.metrics import (
    energy_pointing_game,
    pointing_game,
    pointing_tolerance,
    top_q_iou,
)

# ---------------------------------------------------------------------------- pointing game


def test_pointing_tolerance_scales_torchray_15_px_at_224():
    assert pointing_tolerance(224) == 15.0
    assert pointing_tolerance(64) == pytest.approx(15 * 64 / 224)


def test_pointing_game_inside_near_and_far():
    mask = square_mask().expand(5, 16, 16)  # rows/cols 4..7
    maps = torch.stack(
        [
            peaked(16, 5, 5),  # inside: hit
            peaked(16, 5, 8),  # 1 px right of the mask, tolerance 15*16/224 = 1.07: hit
            peaked(16, 8, 8),  # diagonal, sqrt(2) = 1.41 > 1.07: miss
            peaked(16, 5, 9),  # 2 px away: miss
            peaked(16, 15, 15),  # far: miss
        ]
    ).unsqueeze(1)
    out = pointing_game(maps, mask.unsqueeze(1))
    assert out["hits"].dtype == torch.bool
    assert out["hits"].tolist() == [True, True, False, False, False]
    assert out["accuracy"] == pytest.approx(0.4)
    # a wider tolerance turns the 2-px miss into a hit, (N, H, W) inputs accepted
    wide = pointing_game(maps[:, 0], mask, tolerance=2.0)
    assert wide["hits"].tolist() == [True, True, True, True, False]


def test_pointing_game_ties_take_first_pixel_in_raster_order():
    maps = torch.zeros(2, 1, 16, 16)  # constant: the point is (0, 0)
    masks = torch.zeros(2, 1, 16, 16)
    masks[0, 0, 0, 2] = 1  # 2 px right of (0, 0)
    masks[1, 0, 15, 15] = 1
    out = pointing_game(maps, masks, tolerance=2.0)
    assert out["hits"].tolist() == [True, False]


def test_pointing_game_class_averaged_accuracy():
    mask = square_mask().expand(5, 1, 16, 16)
    hit, miss = peaked(16, 6, 6), peaked(16, 0, 15)
    maps = torch.stack([hit, hit, miss, miss, hit]).unsqueeze(1)
    labels = torch.tensor([0, 0, 0, 1, 2])
    out = pointing_game(maps, mask, labels=labels)
    assert out["hits"].tolist() == [True, True, False, False, True]
    # class 0: 2/3, class 1: 0, class 2: 1 -> mean 5/9 (image mean would be 3/5)
    assert out["accuracy"] == pytest.approx(5 / 9)
    assert pointing_game(maps, mask)["accuracy"] == pytest.approx(3 / 5)


def test_pointing_game_vectorised_matches_brute_force_on_1000_images():
    g = torch.Generator().manual_seed(1)
    n, s = 1000, 64
    maps = torch.rand(n, 1, s, s, generator=g)
    masks = torch.zeros(n, 1, s, s)
    corners = torch.randint(0, s - 8, (n, 2), generator=g)
    for i, (r, c) in enumerate(corners.tolist()):
        masks[i, 0, r : r + 8, c : c + 8] = 1
    out = pointing_game(maps, masks)
    tol = pointing_tolerance(s)
    for i in range(0, n, 37):  # brute force on a subset
        idx = int(maps[i, 0].flatten().argmax())
        py, px = divmod(idx, s)
        pix = np.argwhere(masks[i, 0].numpy() > 0)
        d = np.sqrt(((pix - np.array([py, px])) ** 2).sum(axis=1)).min()
        assert bool(out["hits"][i]) == (d <= tol)
    assert 0.0 < out["accuracy"] < 0.5  # random maps rarely hit an 8x8 square


# ------------------------------------------------------------------- energy pointing game


def test_energy_pointing_game_hand_built():
    mask = torch.zeros(1, 4, 4)
    mask[0, :2, :2] = 1
    m = torch.zeros(1, 1, 4, 4)
    m[0, 0, 0, 0] = 2.0
    m[0, 0, 1, 1] = 1.0  # inside: 3
    m[0, 0, 3, 3] = 1.0  # outside: 1
    m[0, 0, 2, 3] = -5.0  # negative: ignored
    assert energy_pointing_game(m, mask).tolist() == pytest.approx([0.75])
    # zero map and all-negative map: no positive mass -> 0
    empty = torch.stack([torch.zeros(4, 4), -torch.ones(4, 4)])
    assert energy_pointing_game(empty, mask.expand(2, 4, 4)).tolist() == [0.0, 0.0]
    # bool masks are accepted
    assert energy_pointing_game(m, mask.bool()).tolist() == pytest.approx([0.75])


# -------------------------------------------------------------------------------- top-q IoU


def test_top_q_iou_perfect_partial_and_ties():
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 1:3, 1:3] = 1  # 4 of 16 pixels
    assert top_q_iou(mask.clone(), mask, q=0.25).tolist() == pytest.approx([1.0])
    # partial: the 4 largest values are 2 mask pixels and 2 outside -> 2 / (4 + 4 - 2)
    m = torch.zeros(1, 1, 4, 4)
    m[0, 0, 1, 1] = m[0, 0, 2, 2] = 5.0
    m[0, 0, 0, 0] = m[0, 0, 3, 3] = 4.0
    assert top_q_iou(m, mask, q=0.25).tolist() == pytest.approx([1 / 3])
    # q = 0.3: round(4.8) = 5 pixels; the 5th (value 1) is a mask pixel -> 3 / (5 + 4 - 3)
    m[0, 0, 1, 2] = 1.0
    assert top_q_iou(m, mask, q=0.3).tolist() == pytest.approx([0.5])
    # constant map: stable sort keeps raster order -> the first row
    row0 = torch.zeros(1, 4, 4)
    row0[0, 0] = 1
    assert top_q_iou(torch.ones(1, 4, 4), row0, q=0.25).tolist() == pytest.approx([1.0])
    assert top_q_iou(torch.ones(1, 4, 4), mask, q=0.25).tolist() == pytest.approx([0.0])
