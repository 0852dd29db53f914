"""Explanation-evaluation metrics: localisation (pointing game, energy, top-q IoU) and
faithfulness (deletion/insertion, rank correlation, model randomisation). Tiny and seeded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pellucid.errors import DataError
from pellucid.metrics import (
    SPECS,
    deletion_auc,
    deletion_insertion,
    energy_pointing_game,
    insertion_auc,
    model_randomisation,
    pointing_game,
    pointing_tolerance,
    randomised_copy,
    spearman_rank_correlation,
    top_q_iou,
)
from pellucid.models import build_model


def square_mask(size: int = 16, r0: int = 4, r1: int = 8, c0: int = 4, c1: int = 8):
    m = torch.zeros(size, size)
    m[r0:r1, c0:c1] = 1
    return m


def peaked(size: int, row: int, col: int) -> torch.Tensor:
    m = torch.rand(size, size) * 0.5
    m[row, col] = 1.0
    return m


class PixelLinear(nn.Module):
    """Two classes: logit_0 = sum_p w_p x_p + b over the pixels of a one-channel image,
    logit_1 = 0; so p(class 0) = sigmoid(w . x + b). Records its mode at every call."""

    def __init__(self, weights: torch.Tensor, bias: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(weights.flatten().clone().float())
        self.b = bias
        self.drop = nn.Dropout(0.5)
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        z = self.drop(x.flatten(1)) @ self.w + self.b
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# ----------------------------------------------------------------------------- declarations


def test_metrics_declare_their_direction():
    expected = {
        "pointing_game": True,
        "energy_pointing_game": True,
        "top_q_iou": True,
        "deletion_auc": False,
        "insertion_auc": True,
        "sanity_rank_correlation": False,
    }
    for name, higher in expected.items():
        assert SPECS[name].higher_is_better is higher, name


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


# ------------------------------------------------------------------------ deletion/insertion


def test_deletion_auc_equals_hand_computed_trapezoid():
    w = torch.tensor([1.0, 0.5, 0.25, 0.0])
    model = PixelLinear(w)
    x = torch.ones(1, 1, 2, 2)
    out = deletion_insertion(model, x, w.view(1, 1, 2, 2), torch.tensor([0]), steps=4)
    logits = [1.75, 0.75, 0.25, 0.0, 0.0]  # remaining w . x after 0..4 deletions
    probs = [sigmoid(v) for v in logits]
    assert out["curves"][0].tolist() == pytest.approx(probs, abs=1e-6)
    auc = sum((a + b) / 2 * 0.25 for a, b in zip(probs[:-1], probs[1:], strict=True))
    assert float(out["auc"][0]) == pytest.approx(auc, abs=1e-6)
    assert out["fractions"].tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    # steps = 2 removes 2 pixels per step
    two = deletion_insertion(model, x, w.view(1, 1, 2, 2), torch.tensor([0]), steps=2)
    assert two["curves"][0].tolist() == pytest.approx([probs[0], probs[2], probs[4]], abs=1e-6)
    # target class 1 tracks 1 - p
    other = deletion_auc(model, x, w.view(1, 1, 2, 2), torch.tensor([1]), steps=4)
    assert float(other[0]) == pytest.approx(1 - auc, abs=1e-6)


def _important_pixel_setup(n: int = 3, size: int = 8):
    g = torch.Generator().manual_seed(3)
    w = torch.zeros(size * size)
    important = torch.randperm(size * size, generator=g)[:4]
    w[important] = 3.0
    model = PixelLinear(w, bias=-6.0)
    x = torch.rand(n, 1, size, size, generator=g) * 0.3
    x.view(n, -1)[:, important] = 1.0  # bright where it matters, dark elsewhere
    perfect = w.view(1, 1, size, size).expand(n, 1, size, size).clone()
    perfect += 0.01 * torch.rand(perfect.shape, generator=g)  # break the zero ties
    rand_map = torch.rand(n, 1, size, size, generator=g)
    target = torch.zeros(n, dtype=torch.long)
    return model, x, perfect, rand_map, target


def test_deletion_prefers_perfect_ordering_and_insertion_the_opposite():
    model, x, perfect, rand_map, target = _important_pixel_setup()
    d_perfect = deletion_auc(model, x, perfect, target, steps=16)
    d_reversed = deletion_auc(model, x, -perfect, target, steps=16)
    d_random = deletion_auc(model, x, rand_map, target, steps=16)
    assert (d_perfect < d_reversed).all() and (d_perfect < d_random).all()
    i_perfect = insertion_auc(model, x, perfect, target, steps=16)
    i_reversed = insertion_auc(model, x, -perfect, target, steps=16)
    i_random = insertion_auc(model, x, rand_map, target, steps=16)
    assert (i_perfect > i_reversed).all() and (i_perfect > i_random).all()


def test_curve_endpoints_and_batching():
    from torchvision.transforms.functional import gaussian_blur

    model, x, perfect, rand_map, target = _important_pixel_setup()
    target = torch.tensor([0, 1, 0])
    model.eval()

    def prob(images):
        with torch.no_grad():
            return torch.softmax(model(images), 1).gather(1, target.view(-1, 1)).squeeze(1)

    full, zero = prob(x), prob(torch.zeros_like(x))
    dele = deletion_insertion(model, x, rand_map, target, steps=10)
    assert dele["curves"].shape == (3, 11) and dele["auc"].shape == (3,)
    assert torch.allclose(dele["curves"][:, 0], full, atol=1e-6)
    assert torch.allclose(dele["curves"][:, -1], zero, atol=1e-6)
    ins = deletion_insertion(model, x, rand_map, target, mode="insertion", steps=10)
    blurred = prob(gaussian_blur(x, [7, 7], [5.0, 5.0]))  # kernel 11 clamped to 7 for 8 px
    assert torch.allclose(ins["curves"][:, 0], blurred, atol=1e-6)
    assert torch.allclose(ins["curves"][:, -1], full, atol=1e-6)
    assert not torch.allclose(blurred, full, atol=1e-3)
    # chunking does not change the result; the seed only matters for ties
    small = deletion_insertion(model, x, rand_map, target, steps=10, batch_size=4)
    assert torch.allclose(small["curves"], dele["curves"], atol=1e-6)
    other_seed = deletion_insertion(model, x, rand_map, target, steps=10, seed=5)
    assert torch.allclose(other_seed["curves"], dele["curves"], atol=1e-6)


def test_deletion_fill_mean_deletes_into_the_normalisation_mean_as_rise_code_does():
    from pellucid.models import Normalize

    w = torch.tensor([1.0, 0.5, 0.25, 0.0])
    model = nn.Sequential(Normalize([0.4], [1.0]), PixelLinear(w))
    x = torch.ones(1, 1, 2, 2)
    out = deletion_insertion(model, x, w.view(1, 1, 2, 2), torch.tensor([0]), steps=4, fill="mean")
    # a deleted pixel is 0.4 in pixel space = 0 after normalisation: it adds nothing
    logits = [0.6 * 1.75, 0.6 * 0.75, 0.6 * 0.25, 0.0, 0.0]
    assert out["curves"][0].tolist() == pytest.approx([sigmoid(v) for v in logits], abs=1e-6)
    zero = deletion_insertion(model, x, w.view(1, 1, 2, 2), torch.tensor([0]), steps=4)
    assert float(zero["curves"][0, -1]) == pytest.approx(sigmoid(-0.4 * 1.75), abs=1e-6)
    grey = deletion_insertion(model, x, w.view(1, 1, 2, 2), torch.tensor([0]), steps=4, fill=0.4)
    assert torch.allclose(grey["curves"], out["curves"], atol=1e-6)
    assert torch.allclose(
        deletion_auc(model, x, w.view(1, 1, 2, 2), torch.tensor([0]), steps=4, fill="mean"),
        out["auc"],
    )


def test_deletion_fill_errors_name_the_problem():
    model, x, perfect, _, target = _important_pixel_setup()
    with pytest.raises(DataError, match="Normalize"):  # PixelLinear has no normalisation
        deletion_auc(model, x, perfect, target, steps=4, fill="mean")
    with pytest.raises(DataError, match="fill"):
        deletion_auc(model, x, perfect, target, steps=4, fill="grey")
    with pytest.raises(DataError, match="finite"):
        deletion_auc(model, x, perfect, target, steps=4, fill=float("nan"))


def test_ties_broken_reproducibly_by_seed():
    model, x, _, _, target = _important_pixel_setup()
    flat = torch.zeros(3, 1, 8, 8)  # all tied: the order is the seeded permutation
    a = deletion_insertion(model, x, flat, target, steps=16, seed=0)["curves"]
    b = deletion_insertion(model, x, flat, target, steps=16, seed=0)["curves"]
    c = deletion_insertion(model, x, flat, target, steps=16, seed=1)["curves"]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_deletion_insertion_restores_modes_and_leaves_model_untouched():
    model, x, perfect, _, target = _important_pixel_setup()
    model.train()
    model.drop.eval()  # mixed flags must come back exactly
    before = model.w.detach().clone()
    deletion_insertion(model, x, perfect, target, steps=4, batch_size=5)
    assert model.modes and not any(model.modes)  # evaluated in eval mode
    assert model.training and not model.drop.training
    assert model.w.requires_grad and torch.equal(model.w.detach(), before)

    net = build_model("convnet", in_channels=1, num_classes=3, widths=[8, 8, 16, 16])
    net.train()
    bn = net.layer1[0].bn
    stats = bn.running_mean.clone()
    imgs = torch.rand(2, 1, 16, 16)
    out = deletion_insertion(net, imgs, torch.rand(2, 16, 16), torch.tensor([0, 2]), steps=8)
    assert out["curves"].shape == (2, 9)
    assert ((out["curves"] >= 0) & (out["curves"] <= 1)).all()
    assert all(m.training for m in net.modules())
    assert torch.equal(bn.running_mean, stats)  # no batch-norm update: eval mode was used


# ------------------------------------------------------------------------ rank correlation


def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 6, (5, 1, 6, 6), generator=g).float()  # many ties
    b = a + torch.randn(5, 1, 6, 6, generator=g) * 2
    b[0] = torch.round(b[0])
    ours = spearman_rank_correlation(a, b)
    for i in range(5):
        ref = spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert float(ours[i]) == pytest.approx(ref, abs=1e-6)
    assert float(spearman_rank_correlation(a, a)[0]) == pytest.approx(1.0)
    assert float(spearman_rank_correlation(a, -a)[0]) == pytest.approx(-1.0)
    const = spearman_rank_correlation(torch.ones(2, 4, 4), torch.rand(2, 1, 4, 4))
    assert torch.isnan(const).all()


# ------------------------------------------------------------------- randomisation check


def test_randomised_copy():
    torch.manual_seed(0)  # same seed as below: the copy must still not replay the init
    model = build_model("convnet", 1, 3, mean=[0.3], std=[0.2], widths=[8, 8, 16, 16])
    model.eval()
    model.layer1[0].bn.running_mean.fill_(0.7)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()

    rnd = randomised_copy(model, seed=0)
    assert torch.equal(torch.get_rng_state(), rng)  # global RNG untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, original[k]), k  # original unchanged
    conv = "layer1.0.conv.weight"
    assert not torch.allclose(rnd.state_dict()[conv], original[conv])
    assert not torch.allclose(rnd.fc.weight, model.fc.weight)
    assert torch.allclose(rnd.norm.mean, torch.tensor(0.3))  # Normalize buffers kept
    assert torch.allclose(rnd.norm.std, torch.tensor(0.2))
    assert torch.equal(rnd.layer1[0].bn.running_mean, torch.zeros(8))  # stats reset
    assert not rnd.training and rnd.fc.weight.requires_grad

    again = randomised_copy(model, seed=0).state_dict()
    other = randomised_copy(model, seed=1).state_dict()
    for k, v in rnd.state_dict().items():
        assert torch.equal(v, again[k]), k
    assert not torch.equal(rnd.state_dict()[conv], other[conv])


def test_randomised_copy_warns_about_parameters_it_cannot_reset():
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.gates = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return self.fc(x) * self.gates

    with pytest.warns(UserWarning, match="gates"):
        rnd = randomised_copy(Gated())
    assert torch.equal(rnd.gates.detach(), torch.ones(2))


def _input_gradient_maps(images: torch.Tensor):
    def make_maps(m: nn.Module) -> torch.Tensor:
        m.eval()
        x = images.clone().requires_grad_(True)
        m(x)[:, 0].sum().backward()
        return x.grad.abs().sum(dim=1, keepdim=True)

    return make_maps


def test_model_randomisation():
    fixed = torch.rand(3, 1, 8, 8)
    model = build_model("convnet", 1, 3, widths=[8, 8, 16, 16])
    ignores = model_randomisation(lambda m: fixed, model, seed=0)
    assert ignores["rank_correlation"].shape == (3,)
    assert torch.allclose(ignores["rank_correlation"], torch.ones(3))
    assert ignores["mean"] == pytest.approx(1.0)

    model.train()
    images = torch.rand(3, 1, 16, 16)
    dependent = model_randomisation(_input_gradient_maps(images), model, seed=0)
    assert dependent["mean"] < 0.9  # input gradients depend on the weights
    assert model.training  # restored after make_maps put it in eval


# ------------------------------------------------------------------------------- bad input


def test_bad_input_raises_data_error_naming_the_problem():
    maps, masks = torch.rand(2, 1, 8, 8), torch.ones(2, 1, 8, 8)
    nan_map = maps.clone()
    nan_map[0, 0, 0, 0] = float("nan")
    for fn in (pointing_game, energy_pointing_game, top_q_iou):
        with pytest.raises(DataError, match="NaN"):
            fn(nan_map, masks)
        with pytest.raises(DataError, match="mismatched N/H/W"):
            fn(maps, torch.ones(2, 1, 8, 7))
        with pytest.raises(DataError, match="mismatched N/H/W"):
            fn(maps, torch.ones(3, 8, 8))
        with pytest.raises(DataError, match="empty batch"):
            fn(torch.zeros(0, 1, 8, 8), torch.zeros(0, 1, 8, 8))
    with pytest.raises(DataError, match="binary"):
        energy_pointing_game(maps, masks * 0.5)
    with pytest.raises(DataError, match="one channel"):
        pointing_game(torch.rand(2, 3, 8, 8), masks)
    with pytest.raises(DataError, match="labels"):
        pointing_game(maps, masks, labels=torch.tensor([0, 1, 2]))
    for q in (0.0, 1.5, -0.1):
        with pytest.raises(DataError, match="q must be in"):
            top_q_iou(maps, masks, q=q)
    with pytest.raises(DataError, match="infinite"):
        spearman_rank_correlation(maps, maps.clone().fill_(float("inf")))

    model = PixelLinear(torch.ones(64))
    x, t = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(DataError, match="NaN"):
        deletion_insertion(model, x, nan_map, t)
    bad_x = x.clone()
    bad_x[1, 0, 2, 2] = float("inf")
    with pytest.raises(DataError, match="inputs contain NaN or infinite"):
        deletion_insertion(model, bad_x, maps, t)
    with pytest.raises(DataError, match="mismatched N/H/W"):
        deletion_insertion(model, x, torch.rand(2, 1, 8, 9), t)
    with pytest.raises(DataError, match="pixel space"):
        deletion_insertion(model, x * 4 - 2, maps, t)
    with pytest.raises(DataError, match="target"):
        deletion_insertion(model, x, maps, torch.tensor([0, 1, 0]))
    with pytest.raises(DataError, match="model has 2 classes"):
        deletion_insertion(model, x, maps, torch.tensor([0, 5]))
    with pytest.raises(DataError, match="mode"):
        deletion_insertion(model, x, maps, t, mode="delete")
    with pytest.raises(DataError, match="empty batch"):
        deletion_insertion(model, x[:0], maps[:0], t[:0])


def test_paired_difference_interval_shift_noise_and_no_difference():
    from pellucid.explain.scoring import paired_difference

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 4
    base = torch.rand(200, generator=g)
    # an exact shift has no spread: the interval is the point, and it is resolved
    shift = paired_difference({"d": base - 0.02}, {"d": base}, labels, "d")
    assert shift["difference"] == pytest.approx(-0.02, abs=1e-6)
    assert shift["ci"] == pytest.approx([-0.02, -0.02], abs=1e-6) and shift["resolved"]
    same = paired_difference({"d": base}, {"d": base}, labels, "d")
    assert same["difference"] == 0 and same["ci"] == [0, 0] and not same["resolved"]
    # a shift of -0.05 under noise of sd 0.05: the interval holds -0.05 and excludes 0
    noisy = base - 0.05 + 0.05 * torch.randn(200, generator=g)
    r = paired_difference({"d": noisy}, {"d": base}, labels, "d")
    assert r["ci"][0] < -0.05 < r["ci"][1] < 0 and r["resolved"]
    # pure noise (sd 0.2, mean 0): not resolved; paired, the spread both share (uniform,
    # sd 0.29) cancels, so the interval is as wide as the noise alone makes it (about
    # 2 * 1.96 * 0.2 / sqrt(200) = 0.055; unpaired it would be about 0.12)
    pure = paired_difference(
        {"d": base + 0.2 * torch.randn(200, generator=g)}, {"d": base}, labels, "d"
    )
    assert pure["ci"][0] < 0 < pure["ci"][1] and not pure["resolved"]
    assert pure["ci"][1] - pure["ci"][0] < 0.08
    assert pure["n_images"] == 200 and pure["confidence"] == 0.95


def test_paired_difference_averages_the_pointing_game_per_class():
    from pellucid.explain.scoring import paired_difference, summarise

    # 90 images of class 0, 10 of class 1; a hits every class-0 image and no class-1 one,
    # b the opposite: per image a is far ahead (0.9 vs 0.1), per class they tie (0.5 each)
    labels = torch.tensor([0] * 90 + [1] * 10)
    a = {"pointing_game": (labels == 0).float()}
    b = {"pointing_game": (labels == 1).float()}
    r = paired_difference(a, b, labels, "pointing_game")
    expected = summarise(a, labels)["pointing_game"] - summarise(b, labels)["pointing_game"]
    assert r["difference"] == pytest.approx(expected, abs=1e-9) == 0.0
    assert not r["resolved"]


def test_paired_difference_errors_name_the_problem():
    from pellucid.explain.scoring import paired_difference

    x, lab = torch.rand(8), torch.zeros(8, dtype=torch.long)
    with pytest.raises(DataError, match="no score 'deletion_auc'"):
        paired_difference({"insertion_auc": x}, {"deletion_auc": x}, lab, "deletion_auc")
    with pytest.raises(DataError, match="same images"):
        paired_difference({"d": x}, {"d": x[:5]}, lab, "d")
    with pytest.raises(DataError, match="NaN"):
        paired_difference({"d": x}, {"d": torch.full((8,), math.nan)}, lab, "d")
    with pytest.raises(DataError, match="at least 2"):
        paired_difference({"d": x[:1]}, {"d": x[:1]}, lab[:1], "d")


def test_image_indices_spread_covers_a_class_ordered_split():
    from pellucid.explain.evaluate import image_indices

    labels = torch.arange(10).repeat_interleave(100)  # class-ordered, like mnist's test split
    spread = image_indices(1000, 10)
    assert spread == list(range(0, 1000, 100))
    assert sorted(labels[spread].tolist()) == list(range(10))  # every class once
    assert labels[image_indices(1000, 10, "first")].tolist() == [0] * 10  # the pitfall
    assert image_indices(5, 8) == list(range(5)) == image_indices(5, 8, "first")
    with pytest.raises(DataError, match="unknown image choice 'random'"):
        image_indices(10, 2, "random")


def _laplace_reference(x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """ROAD's imputation by a direct sparse solve (SciPy), pixel by pixel from its definition."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spl

    weights = {(-1, 0): 1 / 6, (1, 0): 1 / 6, (0, -1): 1 / 6, (0, 1): 1 / 6}
    weights |= {(-1, -1): 1 / 12, (-1, 1): 1 / 12, (1, -1): 1 / 12, (1, 1): 1 / 12}
    n, c, h, w = x.shape
    out = x.clone().double()
    for i in range(n):
        r = removed[i, 0].numpy()
        pts = list(zip(*np.nonzero(r), strict=True))
        index = {p: k for k, p in enumerate(pts)}
        for ch in range(c):
            v = x[i, ch].double().numpy()
            a, b = sp.lil_matrix((len(pts), len(pts))), np.zeros(len(pts))
            for k, (row, col) in enumerate(pts):
                for (dr, dc), wt in weights.items():
                    q = (row + dr, col + dc)
                    if 0 <= q[0] < h and 0 <= q[1] < w:
                        a[k, k] += wt
                        if r[q]:
                            a[k, index[q]] -= wt
                        else:
                            b[k] += wt * v[q]
            out[i, ch][torch.from_numpy(r)] = torch.from_numpy(spl.spsolve(a.tocsr(), b))
    return out


def test_noisy_linear_imputation_solves_roads_system_and_hides_the_hole():
    from pellucid.metrics import noisy_linear_imputation

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 9, 11, generator=g)
    removed = torch.rand(3, 1, 9, 11, generator=g) < 0.6
    got = noisy_linear_imputation(x, removed, noise=0.0, tol=1e-7)
    assert torch.allclose(got.double(), _laplace_reference(x, removed), atol=1e-4)
    assert torch.equal(got[~removed.expand_as(x)], x[~removed.expand_as(x)])  # kept as they were
    # a square hole in a flat grey background is filled with that grey: no cut-out remains
    # (a constant fill would leave a square of another colour)
    flat = torch.full((1, 3, 16, 16), 0.4)
    hole = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    hole[..., 4:12, 5:13] = True
    assert torch.allclose(noisy_linear_imputation(flat, hole, noise=0.0), flat, atol=1e-4)
    # the noise: seeded, of the requested size, only on removed pixels
    noisy = noisy_linear_imputation(flat, hole, noise=0.05, seed=3)
    assert torch.equal(noisy, noisy_linear_imputation(flat, hole, noise=0.05, seed=3))
    assert 0.03 < float((noisy - flat)[hole.expand_as(flat)].std()) < 0.07
    # nothing kept: the image's mean colour
    everything = torch.ones(1, 1, 9, 11, dtype=torch.bool)
    mean = x[:1].mean((2, 3), keepdim=True).expand(1, 2, 9, 11)
    assert torch.allclose(noisy_linear_imputation(x[:1], everything, noise=0.0), mean, atol=1e-6)


def test_noisy_linear_imputation_per_image_seeds_make_it_batch_independent():
    from pellucid.metrics import noisy_linear_imputation

    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 8, 8, generator=g)
    removed = torch.rand(4, 1, 8, 8, generator=g) < 0.5
    both = noisy_linear_imputation(x, removed, seed=[10, 11, 12, 13])
    alone = noisy_linear_imputation(x[2:3], removed[2:3], seed=[12])
    assert torch.allclose(both[2:3], alone, atol=1e-5)
    with pytest.raises(DataError, match="one per image"):
        noisy_linear_imputation(x, removed, seed=[1, 2])
    with pytest.raises(DataError, match="removed must be"):
        noisy_linear_imputation(x, removed[:, :, :4])
    with pytest.raises(DataError, match="noise"):
        noisy_linear_imputation(x, removed, noise=math.nan)


def test_road_deletion_prefers_the_perfect_ordering_and_ignores_batching():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[0, :8] = 4.0  # class 0 reads only the first row of the image
        model[1].bias[0] = -16.0
    x = torch.rand(3, 1, 8, 8) * 0.2
    x[:, :, 0] = 1.0  # a bright first row: class 0
    good = torch.zeros(3, 1, 8, 8)
    good[:, :, 0] = 1.0
    bad = 1.0 - good
    target = torch.zeros(3, dtype=torch.long)
    a_good = deletion_auc(model, x, good, target, steps=8, fill="road")
    a_bad = deletion_auc(model, x, bad, target, steps=8, fill="road")
    assert bool((a_good < a_bad).all())
    again = deletion_auc(model, x, good, target, steps=8, fill="road", batch_size=5)
    assert torch.allclose(a_good, again, atol=1e-5)
