"""Explainers: call shape, targets, batch independence, model state, options, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explain_nets import FAST, PLAIN, HalvesNet
from pellucid.errors import ConfigError, DataError
from pellucid.explain import NeuroMask, build_explainer, explainer_names
from pellucid.hooks import count_hooks


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
    assert set(info) == {"iterations", "probability", "target_probability", "area", "loss"}
    assert (info["iterations"] < 400).all(), "tol=0.5 must stop every image early"
    assert ((info["area"] >= 0) & (info["area"] <= 1)).all()


def test_neuromask_warns_about_a_class_the_model_rules_out() -> None:
    model = HalvesNet()
    x = torch.zeros(2, 1, 16, 16)
    x[..., :8] = 1.0  # left half bright: logits (40, 0, 10), class 1 has p ~ 1e-18
    nm = NeuroMask(model, iterations=5, **PLAIN)
    with pytest.warns(UserWarning, match=r"1 of 2 images.*\(images \[1\]\)"):
        nm.explain(x, target=torch.tensor([0, 1]))
    p = nm.last_info["target_probability"]
    assert p[0] > 0.99 and p[1] < 1e-10
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nm.explain(x)  # the predicted class is never ruled out


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
    # a command-line value that YAML reads as a string (--option lr=nan), a fractional count
    with pytest.raises(ConfigError, match="lr must be a number, got 'nan'"):
        NeuroMask(tiny_model, lr="nan")
    with pytest.raises(ConfigError, match="iterations must be an integer, got 2.5"):
        NeuroMask(tiny_model, iterations=2.5)
    assert NeuroMask(tiny_model, iterations=np.int64(3), lr=np.float32(0.1)).options.iterations == 3
    with pytest.raises(ConfigError, match="no option"):
        build_explainer("gradcam", tiny_model, window=3)
    # the options listed are every one the explainer takes (the first was left out before)
    with pytest.raises(ConfigError, match="options: window, stride, sign, batch_size$"):
        build_explainer("occlusion", tiny_model, n=3)
    with pytest.raises(ConfigError, match="options: steps, sign, batch_size$"):
        build_explainer("integrated-gradients", tiny_model, window=3)
    for name, opts, message in (
        ("occlusion", {"window": "abc"}, "window must be an integer or null, got 'abc'"),
        ("occlusion", {"stride": 0}, "stride must be an integer >= 1, got 0"),
        ("integrated-gradients", {"steps": 2.5}, "steps must be an integer, got 2.5"),
        ("random", {"seed": -1}, "seed must be an integer >= 0, got -1"),
        ("saliency", {"batch_size": "x"}, "batch_size must be an integer, got 'x'"),
        ("neuromask", {"tol": -1.0}, "tol=-1.0 is out of range"),
        ("neuromask", {"blur_sigma": -1.0}, "blur_sigma=-1.0 is out of range"),
        ("neuromask", {"fill": -7}, r"pixel value in \[0, 1\], got -7"),
    ):
        with pytest.raises(ConfigError, match=message):
            build_explainer(name, tiny_model, **opts)
    with pytest.raises(ConfigError, match="no layer"):
        build_explainer("gradcam", tiny_model, layer="layer9")
    with pytest.raises(DataError, match="occlusion window 99 exceeds the images' 16x16"):
        build_explainer("occlusion", tiny_model, window=99).explain(x)  # was cut to 16


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
        (torch.rand(2, 1, 1, 1), None, r"cannot run on inputs of shape \(2, 1, 1, 1\)"),
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


def test_inputs_outside_the_pixel_range_are_explained_with_a_warning(tiny_model) -> None:
    """Normalised images given to a model that normalises itself are explained wrongly."""
    x = torch.rand(2, 1, 16, 16)
    with pytest.warns(UserWarning, match=r"not in the pixel range \[0, 1\].*Normalize\(mean"):
        build_explainer("saliency", tiny_model).explain((x - 0.5) / 0.25)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pixel-space images: no warning
        build_explainer("saliency", tiny_model).explain(x)
    # the scores refuse normalised images; the fix both messages give works
    from pellucid.errors import DataError
    from pellucid.metrics import deletion_auc
    from pellucid.models import Normalize

    maps, target = torch.rand(2, 1, 16, 16), torch.tensor([0, 1])
    advice = r"nn\.Sequential\(pellucid\.models\.Normalize\(mean, std\), model\)"
    with pytest.raises(DataError, match=advice):
        deletion_auc(tiny_model, (x - 0.5) / 0.25, maps, target)
    wrapped = nn.Sequential(Normalize([0.5], [0.25]), tiny_model).eval()
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), tiny_model.eval()((x - 0.5) / 0.25))
    assert deletion_auc(wrapped, x, maps, target).shape == (2,)


def _plain_net() -> nn.Module:
    """A model without a normalisation buffer that would cast its input for it."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    ).eval()


@pytest.mark.parametrize("name", ["neuromask", "saliency", "gradcam", "occlusion"])
def test_a_float64_model_is_explained_like_its_float32_copy(name: str) -> None:
    """Was a dtype error from inside torch (float32 images into float64 weights), and for
    NeuroMask from its early-stopping bookkeeping."""
    model = _plain_net()
    x = torch.rand(2, 1, 12, 12)
    options = {"iterations": 20, "seed": 0} if name == "neuromask" else {}
    single = build_explainer(name, model, **options).explain(x, 1)
    double = build_explainer(name, model.double(), **options).explain(x, 1)
    assert double.dtype == torch.float32
    assert torch.allclose(single, double, atol=1e-4)
    assert next(model.parameters()).dtype == torch.float64  # left as it was


def test_a_half_precision_model_is_refused_by_name() -> None:
    model = _plain_net().half()
    with pytest.raises(ConfigError, match=r"weights are torch.float16.*float\(\)"):
        build_explainer("saliency", model).explain(torch.rand(2, 1, 12, 12))


def test_inputs_that_require_grad_are_explained_without_a_warning(tiny_model) -> None:
    import warnings

    x = torch.rand(2, 1, 16, 16, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # was torch's "converting a tensor that requires grad"
        maps = build_explainer("saliency", tiny_model).explain(x)
    assert maps.shape == (2, 1, 16, 16) and x.grad is None


class _DeclaredBackwards(nn.Module):
    """Declares its head before its stem: the first convolution to *run* takes 3 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(8, 3, 1)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.stem(x))).mean((2, 3))


def test_a_model_declaring_its_layers_out_of_order_is_checked_by_the_conv_that_runs_first():
    from pellucid.metrics import deletion_auc

    torch.manual_seed(0)
    model = _DeclaredBackwards().train()
    maps = build_explainer("saliency", model).explain(torch.rand(2, 3, 8, 8))
    assert maps.shape == (2, 1, 8, 8) and model.training  # the probe left the mode alone
    auc = deletion_auc(model, torch.rand(2, 3, 8, 8), maps, target=0, steps=4)
    assert auc.shape == (2,)
    with pytest.raises(DataError, match="expects 3 input channel.s., inputs have 1"):
        build_explainer("saliency", model).explain(torch.rand(2, 1, 8, 8))


def test_a_model_returning_a_tuple_is_named():
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
            return self.conv(x).mean((2, 3)), None

    with pytest.raises(DataError, match="must return a tensor of logits .N, classes., got tuple"):
        build_explainer("gradcam", Pair()).explain(torch.rand(2, 1, 8, 8))


@pytest.mark.parametrize("name", ["neuromask", "saliency", "gradcam", "integrated-gradients"])
def test_explainers_work_on_inference_tensors_and_inside_inference_mode(name: str) -> None:
    model = _plain_net()
    explainer = build_explainer(name, model, **({"iterations": 5} if name == "neuromask" else {}))
    x = torch.rand(2, 1, 12, 12)
    expected = explainer.explain(x, 1)
    with torch.inference_mode():
        frozen = x.clone()  # an inference tensor
        inside = explainer.explain(frozen, 1)
    assert torch.equal(inside, expected)
    assert torch.equal(explainer.explain(frozen, 1), expected)


def test_an_occlusion_stride_beyond_its_window_is_refused() -> None:
    with pytest.raises(ConfigError, match="occlusion stride 5 exceeds its window 3"):
        build_explainer("occlusion", _plain_net(), window=3, stride=5)
    with pytest.raises(ConfigError, match="stride 4 exceeds its window 3: pixels between"):
        build_explainer("occlusion", _plain_net(), stride=4).explain(torch.rand(1, 1, 12, 12))
