"""Explainers: call shape, targets, batch independence, model state, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pellucid.errors import ConfigError, DataError
from pellucid.explain import NeuroMask, build_explainer, explainer_names
from pellucid.hooks import count_hooks
from pellucid.models import build_model


class HalvesNet(nn.Module):
    """Class 0 = brightness of the left half, class 1 = of the right half, class 2 = a blank
    image (a known answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        w = h.shape[-1] // 2
        left, right = h[..., :w].mean((1, 2, 3)), h[..., w:].mean((1, 2, 3))
        return torch.stack([40 * left, 40 * right, torch.full_like(left, 10.0)], 1)


FAST = {"neuromask": {"iterations": 30}, "neuromask-reference": {"iterations": 10}}
# HalvesNet's images are uniform (their own border colour), so the NeuroMask tests on it
# remove pixels into black, on a fine grid, without the default's deletion game; they test
# the optimised mask itself, so without the refinement of the returned map (its own test)
PLAIN = {"fill": "zero", "mask_scale": 2, "lr": 0.2, "l_delete": 0.0, "refine": 0.0}


@pytest.fixture
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("convnet", in_channels=1, num_classes=3, widths=[8, 8, 16, 16])


@pytest.mark.parametrize("name", explainer_names())
def test_every_explainer_shape_range_and_state(name: str, tiny_model: nn.Module) -> None:
    tiny_model.train()
    flags = [p.requires_grad for p in tiny_model.parameters()]
    x = torch.rand(3, 1, 24, 24)
    maps = build_explainer(name, tiny_model, **FAST.get(name, {})).explain(x)
    assert maps.shape == (3, 1, 24, 24)
    assert maps.min() >= 0 and maps.max() <= 1 and torch.isfinite(maps).all()
    assert not maps.requires_grad
    assert tiny_model.training, "train mode must be restored"
    assert [p.requires_grad for p in tiny_model.parameters()] == flags
    assert count_hooks(tiny_model) == 0


def test_attribute_is_an_alias_and_results_are_deterministic(tiny_model: nn.Module) -> None:
    x = torch.rand(2, 1, 16, 16)
    nm = NeuroMask(tiny_model, iterations=15)
    assert torch.equal(nm.attribute(x, target=1), nm.explain(x, target=1))


def test_neuromask_follows_the_target() -> None:
    model = HalvesNet()
    x = torch.ones(2, 1, 16, 16)
    # a uniform image is its own border colour, so removal must fill with black here
    nm = NeuroMask(model, iterations=150, **PLAIN)
    masks = nm.explain(x, target=torch.tensor([0, 1]))
    left, right = masks[..., :8].mean((1, 2, 3)), masks[..., 8:].mean((1, 2, 3))
    assert left[0] > right[0] + 0.2, (left, right)
    assert right[1] > left[1] + 0.2, (left, right)
    # the int form of target means the same class for every image
    both_left = nm.explain(x, target=0)
    assert (both_left[..., :8].mean((1, 2, 3)) > both_left[..., 8:].mean((1, 2, 3))).all()


@pytest.mark.parametrize("name", ["saliency", "occlusion", "neuromask"])
def test_a_scalar_target_is_broadcast_to_the_batch(name: str) -> None:
    """A 0-dim tensor, a NumPy scalar and a Python int all mean one class for every image,
    also when the batch is explained in chunks (0-dim tensors raised IndexError)."""
    import numpy as np

    model = HalvesNet()
    torch.manual_seed(3)
    x = torch.rand(3, 1, 16, 16)
    opts = {"iterations": 20, **PLAIN} if name == "neuromask" else {}
    ex = build_explainer(name, model, batch_size=2, **opts)
    per_image = ex.explain(x, torch.tensor([1, 1, 1]))
    for target in (torch.tensor(1), np.int64(1), 1):
        assert torch.equal(ex.explain(x, target), per_image), type(target)
    # and it is really class 1, not the predicted class (0 or 1 depending on the image)
    assert (per_image[..., 8:].mean((1, 2, 3)) > per_image[..., :8].mean((1, 2, 3))).all()
    with pytest.raises(DataError, match="out of range"):
        ex.explain(x, torch.tensor(5))


def test_saliency_and_gradcam_follow_the_target() -> None:
    model = HalvesNet()
    x = torch.rand(1, 1, 16, 16)
    sal = build_explainer("saliency", model)
    m0, m1 = sal.explain(x, 0), sal.explain(x, 1)
    assert m0[..., :8].sum() > m0[..., 8:].sum() and m1[..., 8:].sum() > m1[..., :8].sum()


def test_neuromask_batch_independence(tiny_model: nn.Module) -> None:
    torch.manual_seed(1)
    x = torch.rand(4, 1, 20, 20)
    nm = NeuroMask(tiny_model, iterations=40, patience=5)
    together = nm.explain(x, target=torch.tensor([0, 1, 2, 0]))
    alone = torch.cat([nm.explain(x[i : i + 1], target=t) for i, t in enumerate([0, 1, 2, 0])])
    assert torch.allclose(together, alone, atol=1e-4)
    # a different batch size and order gives the same masks too
    nm_small = NeuroMask(tiny_model, iterations=40, patience=5, batch_size=3)
    perm = torch.tensor([3, 1, 0, 2])
    shuffled = nm_small.explain(x[perm], target=torch.tensor([0, 1, 2, 0])[perm])
    assert torch.allclose(shuffled, together[perm], atol=1e-4)


def test_neuromask_early_stopping_and_info(tiny_model: nn.Module) -> None:
    x = torch.rand(3, 1, 16, 16)
    nm = NeuroMask(tiny_model, iterations=400, patience=3, tol=0.5)
    nm.explain(x)
    info = nm.last_info
    assert set(info) == {"iterations", "probability", "area", "loss"}
    assert (info["iterations"] < 400).all(), "tol=0.5 must stop every image early"
    assert ((info["area"] >= 0) & (info["area"] <= 1)).all()


def test_border_fill_is_each_images_own_border_colour() -> None:
    from pellucid.explain.neuromask import border_fill

    x = torch.zeros(2, 3, 64, 64)
    x[0] = torch.tensor([0.2, 0.4, 0.6]).view(3, 1, 1)  # image 0: plain tinted background
    x[1] = 0.9  # image 1: light background ...
    x[1, :, 0, 5] = 0.0  # ... with one dark pixel on its border (the median ignores it)
    x[:, :, 20:40, 20:40] = 1.0  # an object in the middle of both
    fill = border_fill(x)
    assert fill.shape == x.shape
    assert torch.allclose(fill[0], torch.tensor([0.2, 0.4, 0.6]).view(3, 1, 1).expand(3, 64, 64))
    assert torch.allclose(fill[1], torch.full((3, 64, 64), 0.9))
    digit = torch.zeros(1, 1, 32, 32)
    digit[..., 8:24, 14:18] = 1.0
    assert torch.equal(border_fill(digit), torch.zeros_like(digit))  # black background: zero


def test_neuromask_options_and_presets(tiny_model: nn.Module) -> None:
    ref = build_explainer("neuromask-reference", tiny_model)
    assert ref.batch_size == 1
    cfg = ref.config()
    assert (cfg["optimizer"], cfg["lr"], cfg["iterations"]) == ("rmsprop", 0.03, 2000)
    assert cfg["fill"] == "zero" and cfg["smoothness"] == "laplacian" and cfg["mask_scale"] == 1
    x = torch.rand(2, 1, 16, 16)
    for opts in (
        {"fill": "blur", "smoothness": "tv"},
        {"fill": "mean", "mask_size": 4},
        {"fill": "border", "delete_fill": "border", "l_delete": 0.1},
    ):
        maps = NeuroMask(tiny_model, iterations=5, **opts).explain(x)
        assert maps.shape == (2, 1, 16, 16)
    with pytest.raises(ConfigError, match="no option 'iters'"):
        NeuroMask(tiny_model, iters=3)
    with pytest.raises(ConfigError, match="fill"):
        NeuroMask(tiny_model, fill="grey")
    with pytest.raises(ConfigError, match="preset"):
        NeuroMask(tiny_model, preset="paper")
    with pytest.raises(ConfigError, match="no option"):
        build_explainer("gradcam", tiny_model, window=3)
    with pytest.raises(ConfigError, match="no layer"):
        build_explainer("gradcam", tiny_model, layer="layer9")


def _deleted_probability(model: nn.Module, x: torch.Tensor, masks: torch.Tensor, c: int) -> float:
    """p_c of the image with the mask's region removed (zero fill), as the deletion game sees it."""
    with torch.no_grad():
        return float(torch.softmax(model(x * (1 - masks)), 1)[:, c].mean())


def test_neuromask_deletion_game_removes_the_class_under_the_inverse_mask() -> None:
    model = HalvesNet()
    x = torch.ones(1, 1, 16, 16)
    opts = {**PLAIN, "iterations": 60, "patience": 0}
    keep = NeuroMask(model, **opts).explain(x, target=0)
    both = NeuroMask(model, **{**opts, "l_delete": 0.4}).explain(x, target=0)
    only = NeuroMask(model, **{**opts, "l_pred": 0.0, "l_delete": 0.4})
    gone = only.explain(x, target=0)
    # deleting the mask's region kills class 0 (p ~ 1 on the intact image)
    assert _deleted_probability(model, x, both, 0) < _deleted_probability(model, x, keep, 0)
    assert _deleted_probability(model, x, gone, 0) < 0.05
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
    assert _deleted_probability(model, x, gone, 0) < 0.05
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


def test_neuromask_area_constraint_binds_and_several_areas_are_averaged() -> None:
    from pellucid.explain.neuromask.objective import area_penalty

    # the ranking constraint is 0 for a binary mask of exactly its area, whatever its shape
    m = torch.zeros(2, 1, 10, 10)
    m[0, :, :2] = 1  # 20 % as two rows
    m[1, :, :, ::5] = 1  # 20 % as two scattered columns
    assert torch.equal(area_penalty(m, torch.tensor([0.2, 0.2])), torch.zeros(2))
    assert area_penalty(m, torch.tensor([0.5, 0.1]))[0] == pytest.approx(0.3)
    model = HalvesNet()
    x = torch.ones(2, 1, 16, 16)
    opts = {**PLAIN, "sparsity": "area", "l_sparse": 5.0, "iterations": 100, "patience": 0}
    each, areas = [], []
    for a in (0.1, 0.3):
        nm = NeuroMask(model, area=a, **opts)
        masks = nm.explain(x, target=torch.tensor([0, 1]))
        each.append(masks)
        # a soft constraint: the upsampled coarse grid smears the mask's edge by a pixel or two
        assert nm.last_info["area"] == pytest.approx([a, a], abs=0.1), nm.last_info
        areas.append(nm.last_info["area"])
        # the area sits on the evidence: the left half for class 0, the right for class 1
        assert masks[0, :, :, :8].sum() > 3 * masks[0, :, :, 8:].sum()
        assert masks[1, :, :, 8:].sum() > 3 * masks[1, :, :, :8].sum()
    assert (areas[1] > areas[0] + 0.1).all()
    # several areas: one optimisation per (image, area), the map is their mean
    both = NeuroMask(model, area=(0.1, 0.3), **opts)
    mean = both.explain(x, target=torch.tensor([0, 1]))
    assert torch.allclose(mean, (each[0] + each[1]) / 2, atol=1e-5)
    assert torch.allclose(both.last_info["area"], (areas[0] + areas[1]) / 2, atol=1e-5)
    assert both.last_info["iterations"].tolist() == [200, 200]
    # a list, as ``--option area=[0.1,0.3]`` reads it, is the same as the tuple
    assert NeuroMask(model, sparsity="area", area=[0.1, 0.3]).config()["area"] == [0.1, 0.3]
    for bad, match in (
        ({"sparsity": "area"}, "go together"),
        ({"area": 0.1}, "go together"),
        ({"sparsity": "area", "area": 1.0}, "area must be"),
        ({"sparsity": "area", "area": (0.1, 0.0)}, "area must be"),
        ({"sparsity": "area", "area": ()}, "area must be"),
        ({"sparsity": "area", "area": True}, "area must be"),
    ):
        with pytest.raises(ConfigError, match=match):
            NeuroMask(model, **bad)


def test_neuromask_refinement_orders_the_masks_plateau_by_the_full_resolution_gradient() -> None:
    from pellucid.explain.neuromask.objective import average_ranks

    # tied values share their mean rank (no raster-order bias), and ranks span [0, 1]
    r = average_ranks(torch.tensor([[3.0, 1.0, 1.0, 2.0, 5.0]]))
    assert torch.allclose(r, torch.tensor([[0.75, 0.125, 0.125, 0.5, 1.0]]))
    model = HalvesNet()
    # class 0 reads the left half; inside it only the bright pixels carry evidence
    x = torch.zeros(1, 1, 16, 16)
    x[..., 4:12, 2:5] = 1.0
    opts = {**PLAIN, "mask_scale": 8, "iterations": 60, "patience": 0}
    mask = NeuroMask(model, **opts).explain(x, 0)
    refined_nm = NeuroMask(model, **{**opts, "refine": 0.1})
    refined = refined_nm.explain(x, 0)
    assert refined.shape == mask.shape and 0 <= refined.min() and refined.max() <= 1
    bright = x[0, 0] > 0
    # the coarse mask's argmax misses the bright pixels; the refined map's lands on them
    assert not bright.flatten()[mask.flatten().argmax()]
    assert bright.flatten()[refined.flatten().argmax()]
    # a pixel's order changes only against pixels within `refine` of its mask value
    i, j = torch.triu_indices(256, 256, 1)
    m, f = mask.flatten(), refined.flatten()
    far = (m[i] - m[j]).abs() > 0.1
    assert torch.equal((m[i] > m[j])[far], (f[i] > f[j])[far])
    # one refined image does not depend on its batch
    xs = torch.cat([x, torch.rand(2, 1, 16, 16)])
    together = refined_nm.explain(xs, torch.tensor([0, 1, 0]))
    assert torch.allclose(together[:1], refined, atol=1e-5)
    assert NeuroMask.reference(model).config()["refine"] == 0.0
    for bad, error in ((-0.1, ConfigError), (math.inf, DataError)):
        with pytest.raises(error, match="refine"):
            NeuroMask(model, refine=bad)


def test_neuromask_refinement_path_and_fills() -> None:
    from pellucid.explain.neuromask.objective import average_ranks, data_terms, refine_masks

    torch.manual_seed(0)
    model = build_model("convnet", in_channels=1, num_classes=3, widths=[4, 4, 8, 8]).eval()
    x, target = torch.rand(3, 1, 16, 16), torch.tensor([0, 1, 2])
    masks = torch.rand(3, 1, 16, 16)
    zero = torch.zeros_like(x)
    nm = NeuroMask(model, fill="zero", refine=0.5)
    o = nm.options
    # one step is the gradient at the final mask itself (the refinement before the option)
    m = masks.clone().requires_grad_(True)
    ce, d = data_terms(model, x, m, m, zero, zero, target, o)
    (g,) = torch.autograd.grad((o.l_pred * ce + o.l_delete * d).sum(), m)
    expected = (masks + 0.5 * average_ranks(-g.flatten(1)).view_as(masks)) / 1.5
    assert torch.equal(refine_masks(model, x, masks, target, zero, zero, o), expected)
    # k steps: the mean of the gradients along the path from the intact image
    o8 = NeuroMask(model, fill="zero", refine=0.5, refine_steps=8).options
    path = refine_masks(model, x, masks, target, zero, zero, o8)
    assert path.shape == masks.shape and 0 <= path.min() and path.max() <= 1
    assert not torch.allclose(path, expected)
    grads = []
    for a in (0.25, 0.5, 0.75, 1.0):
        m = masks.clone().requires_grad_(True)
        keep, delete = (m, m) if a == 1 else (1 - a * (1 - m), a * m)
        ce, d = data_terms(model, x, keep, delete, zero, zero, target, o)
        grads.append(torch.autograd.grad((o.l_pred * ce + o.l_delete * d).sum(), m)[0])
    g4 = torch.stack(grads).mean(0)
    o4 = NeuroMask(model, fill="zero", refine=0.5, refine_steps=4).options
    expected4 = (masks + 0.5 * average_ranks(-g4.flatten(1)).view_as(masks)) / 1.5
    assert torch.allclose(refine_masks(model, x, masks, target, zero, zero, o4), expected4)
    # a further fill equal to the configured one changes nothing; another fill does
    same = NeuroMask(model, fill="zero", refine=0.5, refine_fills=("zero",)).options
    assert torch.allclose(refine_masks(model, x, masks, target, zero, zero, same), expected)
    other = NeuroMask(model, fill="zero", refine=0.5, refine_fills=[0.7]).options
    assert other.refine_fills == (0.7,)  # a list (as YAML reads it) becomes a tuple
    assert not torch.allclose(refine_masks(model, x, masks, target, zero, zero, other), expected)
    # the whole explainer with both: in range, and an image's map does not depend on its batch
    both = NeuroMask(model, iterations=5, refine_steps=3, refine_fills=("zero", "mean"))
    alone, together = both.explain(x[:1], target[:1]), both.explain(x, target)
    assert 0 <= together.min() and together.max() <= 1
    assert torch.allclose(alone, together[:1], atol=1e-5)
    for bad, match in (
        ({"refine_steps": 0}, "refine_steps"),
        ({"refine_steps": 2.5}, "refine_steps"),
        ({"refine_steps": True}, "refine_steps"),
        ({"refine_fills": "zero"}, "refine_fills"),
        ({"refine_fills": ("purple",)}, "refine_fills"),
        ({"refine_fills": None}, "refine_fills"),
    ):
        with pytest.raises(ConfigError, match=match):
            NeuroMask(model, **bad)


def test_neuromask_refinement_product_keeps_the_map_inside_the_mask() -> None:
    from pellucid.explain.neuromask.objective import average_ranks, data_terms, refine_masks

    torch.manual_seed(0)
    model = build_model("convnet", in_channels=1, num_classes=3, widths=[4, 4, 8, 8]).eval()
    x, target = torch.rand(3, 1, 16, 16), torch.tensor([0, 1, 2])
    masks = torch.rand(3, 1, 16, 16)
    masks[..., :, :8] = 0.0  # the mask removes the left half of every image
    zero = torch.zeros_like(x)
    add = NeuroMask(model, fill="zero", refine=0.5).options
    prod = NeuroMask(model, fill="zero", refine=0.5, refine_mode="product").options
    assert add.refine_mode == "add"  # the default is the sum
    m = masks.clone().requires_grad_(True)
    ce, d = data_terms(model, x, m, m, zero, zero, target, prod)
    (g,) = torch.autograd.grad((prod.l_pred * ce + prod.l_delete * d).sum(), m)
    rank = average_ranks(-g.flatten(1)).view_as(masks)
    product = refine_masks(model, x, masks, target, zero, zero, prod)
    assert torch.allclose(product, masks * (1 + 0.5 * rank) / 1.5)
    assert 0 <= product.min() and product.max() <= 1
    # the product leaves what the mask removed at 0; the sum spreads the rank over it
    assert torch.equal(product[..., :8], torch.zeros_like(product[..., :8]))
    summed = refine_masks(model, x, masks, target, zero, zero, add)
    assert summed[..., :8].max() > 0.1
    # so the mass inside the mask is larger under the product
    inside = lambda a: (a[..., 8:].sum() / a.sum()).item()  # noqa: E731
    assert inside(product) > inside(summed)
    # mask values apart by more than the rank's reach keep their order
    a, b = masks[0].flatten(), product[0].flatten()
    far = a[:, None] / 1.5 > a[None, :]
    assert far.any() and torch.all((b[:, None] > b[None, :])[far])
    with pytest.raises(ConfigError, match="refine_mode must be one of add, product"):
        NeuroMask(model, refine_mode="sum")
    assert NeuroMask.reference(model).config()["refine_mode"] == "add"


@pytest.mark.parametrize(
    ("x", "target", "message"),
    [
        (torch.rand(2, 3, 16, 16), None, "expects 1 input channel"),
        (torch.rand(1, 16, 16), None, "add a batch dimension"),
        (torch.rand(0, 1, 16, 16), None, "empty"),
        (torch.full((2, 1, 16, 16), float("nan")), None, "NaN"),
        (torch.rand(2, 1, 16, 16), 3, "out of range"),
        (torch.rand(2, 1, 16, 16), torch.tensor([0, -1]), "out of range"),
        (torch.rand(2, 1, 16, 16), torch.tensor([0, 1, 2]), "shape"),
        (torch.rand(2, 1, 16, 16), torch.tensor([0.0, 1.0]), "integer"),
    ],
)
def test_bad_input_is_a_clear_error(tiny_model, x, target, message) -> None:
    for name in ("neuromask", "gradcam"):
        with pytest.raises(DataError, match=message):
            build_explainer(name, tiny_model).explain(x, target)


def test_model_state_restored_when_explain_raises(tiny_model: nn.Module) -> None:
    class Boom(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls > 1:  # the first call resolves the target
                raise RuntimeError("boom")
            return self.inner(x)

    model = Boom(tiny_model)
    model.train()
    tiny_model.layer1.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    for name in ("neuromask", "gradcam", "occlusion"):
        model.calls = 0
        with pytest.raises(RuntimeError, match="boom"):
            build_explainer(name, model).explain(torch.rand(2, 1, 16, 16))
        assert model.training and all(m.training for m in model.modules())
        assert [p.requires_grad for p in model.parameters()] == flags
        assert count_hooks(model) == 0
