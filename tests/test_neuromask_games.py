"""NeuroMask's games: the deletion game (shared and separate masks, its objectives), the checks
of its options, the paper's reference preset and the multi-resolution pyramid."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from explain_nets import PLAIN, HalvesNet, deleted_probability
from pellucid.errors import ConfigError
from pellucid.explain import NeuroMask


def test_neuromask_deletion_game_removes_the_class_under_the_inverse_mask() -> None:
    model = HalvesNet()
    x = torch.ones(1, 1, 16, 16)
    opts = {**PLAIN, "iterations": 60, "patience": 0}
    keep = NeuroMask(model, **opts).explain(x, target=0)
    both = NeuroMask(model, **{**opts, "l_delete": 0.4}).explain(x, target=0)
    only = NeuroMask(model, **{**opts, "l_pred": 0.0, "l_delete": 0.4})
    gone = only.explain(x, target=0)
    # deleting the mask's region kills class 0 (p ~ 1 on the intact image)
    assert deleted_probability(model, x, both, 0) < deleted_probability(model, x, keep, 0)
    assert deleted_probability(model, x, gone, 0) < 0.05
    # ... and the mask sits on the evidence (the left half), not on the right
    assert gone[..., :8].mean() > gone[..., 8:].mean() + 0.2
    for objective in ("not-class", "log-prob"):
        nm = NeuroMask(
            model, **{**PLAIN, "iterations": 30, "l_delete": 0.4}, delete_objective=objective
        )
        nm.explain(x, target=0)
        assert torch.isfinite(nm.last_info["loss"]).all()


def test_neuromask_above_chance_deletion_is_bounded_and_still_removes_the_class() -> None:
    """``delete_objective="above-chance"`` minimises log(p_c + 1/K): it never rewards pushing
    p_c below chance by more than log(1/K) per image, while log p_c does."""
    model = HalvesNet()  # K = 3 classes
    x = torch.ones(1, 1, 16, 16)
    opts = {**PLAIN, "iterations": 60, "patience": 0, "l_pred": 0.0, "l_delete": 0.4}
    bounded = NeuroMask(model, delete_objective="above-chance", **opts)
    gone = bounded.explain(x, target=0)
    unbounded = NeuroMask(model, delete_objective="log-prob", **opts)
    unbounded.explain(x, target=0)
    floor = 0.4 * math.log(1 / 3)  # the other terms are >= 0 (l_pred = 0)
    assert float(bounded.last_info["loss"].min()) >= floor - 1e-6
    assert float(unbounded.last_info["loss"].max()) < floor - 1.0
    # it still deletes the evidence (the left half) and kills class 0, with a smaller mask
    assert deleted_probability(model, x, gone, 0) < 0.05
    assert gone[..., :8].mean() > 10 * gone[..., 8:].mean()
    assert float(bounded.last_info["area"][0]) < float(unbounded.last_info["area"][0])


def test_neuromask_deletion_game_is_batch_independent(tiny_model: nn.Module) -> None:
    torch.manual_seed(2)
    x = torch.rand(3, 1, 16, 16)
    t = torch.tensor([0, 1, 2])
    opts = {"iterations": 25, "patience": 5, "l_delete": 0.2, "sparsity": "mask"}
    together = NeuroMask(tiny_model, **opts).explain(x, t)
    alone = torch.cat(
        [NeuroMask(tiny_model, **opts).explain(x[i : i + 1], int(t[i])) for i in range(3)]
    )
    assert torch.allclose(together, alone, atol=1e-4)


def test_neuromask_separate_deletion_mask_product_and_mean() -> None:
    """``delete_mask`` product / mean: the deletion game optimises its own mask; both runs
    optimise the same two masks (the loss does not depend on how they are combined), so
    the product never exceeds the squared mean (AM-GM), and both sit on the evidence."""
    model = HalvesNet()
    x = torch.ones(2, 1, 16, 16)
    x[1, ..., 8:] = 0.3  # image 1: a dimmer right half
    opts = {**PLAIN, "iterations": 60, "patience": 0, "l_delete": 0.4}
    product = NeuroMask(model, delete_mask="product", **opts).explain(x, target=0)
    mean = NeuroMask(model, delete_mask="mean", **opts).explain(x, target=0)
    assert product.shape == mean.shape == (2, 1, 16, 16)
    assert 0 <= product.min() and mean.max() <= 1
    assert (product <= mean.pow(2) + 1e-5).all()
    assert not torch.allclose(product, mean, atol=1e-3)
    for m in (product, mean):  # the evidence of class 0 is the left half
        assert (m[..., :8].mean((1, 2, 3)) > 20 * m[..., 8:].mean((1, 2, 3))).all()
    alone = torch.cat(
        [NeuroMask(model, delete_mask="product", **opts).explain(x[i : i + 1], 0) for i in (0, 1)]
    )
    assert torch.allclose(product, alone, atol=1e-4)
    # without the deletion game there is no second mask: the option changes nothing
    plain = {**opts, "l_delete": 0.0}
    assert torch.equal(
        NeuroMask(model, delete_mask="product", **plain).explain(x, 0),
        NeuroMask(model, **plain).explain(x, 0),
    )
    with pytest.raises(ConfigError, match="delete_mask"):
        NeuroMask(model, delete_mask="sum")


def test_neuromask_new_options_are_checked_and_reference_is_the_paper(
    tiny_model: nn.Module,
) -> None:
    ref = NeuroMask.reference(tiny_model).config()
    assert ref["l_delete"] == 0.0 and ref["sparsity"] == "logits" and ref["delete_fill"] is None
    x = torch.rand(2, 1, 16, 16)
    maps = NeuroMask(
        tiny_model, iterations=3, fill="blur", l_delete=0.1, delete_fill="zero", sparsity="mask"
    ).explain(x)
    assert maps.shape == (2, 1, 16, 16)
    nm = NeuroMask(tiny_model, iterations=5, patience=0)
    raw, smooth = (
        nm.explain(x, 0),
        NeuroMask(tiny_model, iterations=5, smooth_map=2.0).explain(x, 0),
    )
    assert smooth.min() >= 0 and smooth.max() <= 1
    assert (
        not torch.allclose(raw, smooth) and smooth.flatten(1).std(1).lt(raw.flatten(1).std(1)).all()
    )
    for bad, match in (
        ({"delete_objective": "kill"}, "delete_objective"),
        ({"sparsity": "l0"}, "sparsity"),
        ({"delete_fill": "grey"}, "delete_fill"),
        ({"l_delete": -1.0}, "l_delete"),
        ({"smooth_map": -1.0}, "smooth_map"),
    ):
        with pytest.raises(ConfigError, match=match):
            NeuroMask(tiny_model, **bad)


def test_neuromask_pyramid_grids_batch_independence_and_checks(tiny_model: nn.Module) -> None:
    nm = NeuroMask(tiny_model, mask_scale=8, pyramid=3, iterations=20, patience=0)
    assert nm._grids(64, 64) == [(8, 8), (16, 16), (32, 32)]
    assert nm._grids(20, 20) == [(3, 3), (6, 6), (12, 12)]
    assert NeuroMask(tiny_model, mask_scale=2, pyramid=4)._grids(8, 8) == [(4, 4), (8, 8)]
    torch.manual_seed(2)
    x = torch.rand(3, 1, 20, 20)
    together = nm.explain(x, target=torch.tensor([0, 1, 2]))
    assert together.shape == (3, 1, 20, 20) and 0 <= together.min() and together.max() <= 1
    alone = torch.cat([nm.explain(x[i : i + 1], target=t) for i, t in enumerate([0, 1, 2])])
    assert torch.allclose(together, alone, atol=1e-4)
    # the finer grids add detail the single coarse grid cannot hold
    single = NeuroMask(tiny_model, mask_scale=8, iterations=20, patience=0).explain(x, 0)
    assert not torch.allclose(single, nm.explain(x, 0), atol=1e-3)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="pyramid"):
            NeuroMask(tiny_model, pyramid=bad)
    assert NeuroMask.reference(tiny_model).config()["pyramid"] == 1
