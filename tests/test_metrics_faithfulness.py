"""Faithfulness metrics: deletion / insertion AUC (RISE) against hand-computed curves, their
fills, ties and batching, and ROAD's noisy linear imputation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from metric_helpers import PixelLinear, sigmoid
from pellucid.errors import DataError
from pellucid.metrics import (
    deletion_auc,
    deletion_insertion,
    insertion_auc,
)
from pellucid.models import build_model

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
    for bad in (float("nan"), 5.0, -1.0):
        with pytest.raises(DataError, match=r"grey level in \[0, 1\] \(pixel space\)"):
            deletion_auc(model, x, perfect, target, steps=4, fill=bad)
    with pytest.raises(DataError, match="fill='mean' is for deletion"):
        deletion_insertion(model, x, perfect, target, mode="insertion", steps=4, fill="mean")
    with pytest.raises(DataError, match="steps must be an integer >= 1, got 2.5"):
        deletion_auc(model, x, perfect, target, steps=2.5)
    with pytest.raises(DataError, match="batch_size must be an integer >= 1, got 0"):
        deletion_auc(model, x, perfect, target, batch_size=0)
    with pytest.raises(DataError, match="target is required"):
        deletion_auc(model, x, perfect, None, steps=4)


def test_ties_broken_reproducibly_by_seed():
    model, x, _, _, target = _important_pixel_setup()
    flat = torch.zeros(3, 1, 8, 8)  # all tied: the order is the seeded permutation
    a = deletion_insertion(model, x, flat, target, steps=16, seed=0)["curves"]
    b = deletion_insertion(model, x, flat, target, steps=16, seed=0)["curves"]
    c = deletion_insertion(model, x, flat, target, steps=16, seed=1)["curves"]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("fill", ["zero", "road"])
def test_an_images_tied_curve_does_not_depend_on_its_batch(fill: str) -> None:
    """Was: the tie-breaking noise (and ROAD's) was drawn per row of the batch, so a map
    with ties scored differently alone, in another batch or at another place in it."""
    model, x, perfect, _, target = _important_pixel_setup(n=4)
    blocky = (perfect > 1).float()  # 4 tied important pixels, 60 tied others
    blocky[1] = (torch.arange(64).view(1, 8, 8) // 16).float()  # four tied bands
    together = deletion_auc(model, x, blocky, target, steps=8, fill=fill)
    for i in range(4):
        alone = deletion_auc(model, x[i : i + 1], blocky[i : i + 1], target[:1], steps=8, fill=fill)
        assert alone.item() == pytest.approx(together[i].item(), abs=1e-6), i
    rev = torch.arange(3, -1, -1)
    reversed_ = deletion_auc(model, x[rev], blocky[rev], target[rev], steps=8, fill=fill)
    assert torch.allclose(reversed_.flip(0), together, atol=1e-6)


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


def test_images_of_another_channel_count_than_the_model_are_named():
    """Was the convolution's own RuntimeError from deep inside torch."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x, maps = torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8)
    with pytest.raises(DataError, match=r"expects 1 input channel\(s\), inputs have 3"):
        deletion_auc(model, x, maps, torch.tensor([0, 1]), steps=4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_a_model_of_another_dtype_is_scored_like_its_float32_copy(dtype):
    """The perturbed images take the model's dtype (they were float32 and failed on a
    float16 or float64 model without a normalisation layer that casts them)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)
    ).eval()
    x, maps, target = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    single = deletion_auc(model, x, maps, target, steps=4)
    other = deletion_auc(model.to(dtype), x, maps, target, steps=4)
    assert other.dtype == torch.float32
    assert torch.allclose(single, other, atol=2e-3)
