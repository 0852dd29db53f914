"""NeuroMask's area constraint and the refinement of the returned map (sum and product
modes, integrated path, several fills)."""

from __future__ import annotations

import math

import pytest
import torch

from explain_nets import PLAIN, HalvesNet
from pellucid.errors import ConfigError, DataError
from pellucid.explain import NeuroMask
from pellucid.models import build_model


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
