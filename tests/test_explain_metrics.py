"""Explanation-evaluation metrics: declarations, rank correlation, the model-randomisation
check, bad input, paired bootstrap differences and image choice. Localisation and
faithfulness have their own test files. Tiny and seeded."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from metric_helpers import PixelLinear
from pellucid.errors import DataError
from pellucid.metrics import (
    SPECS,
    deletion_insertion,
    energy_pointing_game,
    model_randomisation,
    pointing_game,
    randomised_copy,
    spearman_rank_correlation,
    top_q_iou,
)
from pellucid.models import build_model

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
