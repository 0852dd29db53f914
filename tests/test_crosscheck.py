"""pellucid's metrics and Grad-CAM agree with the libraries users compare them with --
Quantus (pointing game, relevance mass, pixel flipping, ROAD's noisy linear imputation) and
pytorch-grad-cam -- on the same
maps, masks, images and model (``benchmarks/crosscheck.py`` measures the same on the shipped
models)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from explain_nets import squares_case
from pellucid.explain import build_explainer
from pellucid.metrics import deletion_insertion, energy_pointing_game, pointing_game

quantus = pytest.importorskip("quantus")  # the dev extra installs it
pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")


@pytest.fixture(scope="module")
def case():
    model, images, labels, masks = squares_case(4, 32, 12, 128, 12, 0.75)
    maps = build_explainer("saliency", model).explain(images, labels)
    return model, images, labels, masks, maps


def _quantus_kw(model, images, labels, masks, maps) -> dict:
    return {
        "model": model,
        "x_batch": images.numpy(),
        "y_batch": labels.numpy(),
        "a_batch": maps.numpy(),
        "s_batch": masks.float().numpy(),
        "device": "cpu",
        "channel_first": True,
    }


def test_pointing_and_energy_pointing_game_equal_quantus(case):
    model, images, labels, masks, maps = case
    kw = _quantus_kw(*case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.array(quantus.PointingGame(disable_warnings=True)(**kw), dtype=bool)
        rma = quantus.RelevanceMassAccuracy(normalise=False, abs=False, disable_warnings=True)
        mass = np.array(rma(**kw), dtype=float)
    ours = pointing_game(maps, masks, tolerance=0)["hits"].numpy()
    assert 0 < ours.sum() < len(ours)  # some hits and some misses: the comparison can fail
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(energy_pointing_game(maps, masks).numpy(), mass, atol=1e-6)


def test_deletion_curve_equals_quantus_pixel_flipping(case):
    model, images, labels, masks, maps = case
    steps = 16
    ours = deletion_insertion(model, images, maps, labels, steps=steps, fill="zero")["curves"]
    kw = _quantus_kw(*case)
    kw.pop("s_batch")
    flip = quantus.PixelFlipping(
        features_in_step=32 * 32 // steps, perturb_baseline=0.0, normalise=False, abs=False,
        disable_warnings=True,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.array(flip(**kw, softmax=True))[:, 2::3]  # 3 channel entries per pixel
    assert theirs.shape == (12, steps)
    np.testing.assert_allclose(ours[:, 1:].numpy(), theirs, atol=1e-5)
    assert float(ours[:, 0].sub(ours[:, -1]).mean()) > 0.3  # deleting the square matters


def test_gradcam_equals_pytorch_grad_cam(case):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from pellucid.models import default_layer, get_layer

    model, images, labels, _, _ = case
    layer = default_layer(model)
    ours = build_explainer("gradcam", model, layer=layer).explain(images, labels)[:, 0]
    with GradCAM(model=model, target_layers=[get_layer(model, layer)]) as cam:
        theirs = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in labels])
    varying = theirs.reshape(12, -1).std(axis=1) > 0
    assert varying.sum() >= 6  # enough non-constant CAMs to compare
    # pellucid divides a map by its maximum, pytorch-grad-cam min-max scales it
    a = ours.numpy()[varying]
    low = a.min(axis=(1, 2), keepdims=True)
    a = (a - low) / (a.max(axis=(1, 2), keepdims=True) - low)
    np.testing.assert_allclose(a, theirs[varying], atol=5e-3)


def test_road_imputation_equals_quantus_noisy_linear_imputation():
    from quantus.functions.perturb_func import noisy_linear_imputation as theirs

    from pellucid.metrics.imputation import noisy_linear_imputation as ours

    gen = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 24, 20, generator=gen, dtype=torch.float64)
    removed = torch.zeros(1, 1, 24, 20, dtype=torch.bool)
    removed[0, 0, 5:15, 4:12] = True  # a block, with its inside far from any kept pixel
    removed |= torch.rand(1, 1, 24, 20, generator=gen) < 0.2  # and scattered pixels
    removed[0, 0, 0, :] = True  # a border row
    indices = removed[0, 0].flatten().nonzero().flatten().numpy()
    expected = theirs(image[0].numpy(), indices, noise=0.0)  # sparse direct solve
    # conjugate gradients to a tight tolerance: the exact solution, up to the solver's floor
    # (a residual of 1e-6 per unknown pixel)
    got = ours(image, removed, noise=0.0, tol=1e-8)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=5e-5)
    # the default stop (relative residual 1e-3) stays below ROAD's noise (0.01)
    default = ours(image, removed, noise=0.0)[0].numpy()
    assert np.abs(default - expected).max() < 0.01
    assert np.abs(expected - image[0].numpy()).max() > 0.1  # the imputation changed pixels
