"""Sanity checks (Adebayo et al. 2018): block-wise re-initialisation, cascading and
independent randomisation, the data randomisation test with a random-label model, and
``pellucid sanity-check``."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from torch import nn

from pellucid.data import load_dataset, with_random_labels
from pellucid.errors import ConfigError, DataError
from pellucid.metrics import (
    cascading_randomisation,
    data_randomisation,
    hog_similarity,
    map_similarities,
    parameter_blocks,
    randomised_copy,
    ssim_similarity,
)
from pellucid.models import build_model

BLOCKS = ["layer1", "layer2", "layer3", "layer4", "fc"]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return build_model("convnet", 1, 3, widths=[8, 8, 16, 16])


def _gradient_maps(images: torch.Tensor):
    def make_maps(m: nn.Module) -> torch.Tensor:
        m.eval()
        x = images.clone().requires_grad_(True)
        m(x)[:, 0].sum().backward()
        return x.grad.sum(dim=1, keepdim=True)  # signed: abs correlations differ

    return make_maps


def _state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


def _changed(a: dict, b: dict) -> set[str]:
    return {k.split(".")[0] for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k])}


# ---------------------------------------------------------------- block re-initialisation


def test_parameter_blocks_and_wrappers():
    net = _net()
    assert parameter_blocks(net) == BLOCKS

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

    assert parameter_blocks(Wrapper()) == [f"net.{b}" for b in BLOCKS]


def test_randomised_copy_of_named_blocks_only():
    net = _net()
    before = _state(net)
    one = randomised_copy(net, seed=0, layers=["fc"])
    two = randomised_copy(net, seed=0, layers=["layer4", "fc"])
    assert _changed(before, _state(one)) == {"fc"}
    assert _changed(before, _state(two)) == {"layer4", "fc"}
    assert _changed(before, _state(net)) == set()  # the original is untouched
    # a block draws the same weights whatever is randomised with it (a cascade's steps agree)
    assert torch.equal(one.fc.weight, two.fc.weight)
    assert not torch.equal(randomised_copy(net, seed=1, layers=["fc"]).fc.weight, one.fc.weight)
    with pytest.raises(DataError, match="unknown layer 'layer9'.*layer1"):
        randomised_copy(net, layers=["layer9"])


# ----------------------------------------------------------------- cascading / independent


def test_cascading_randomisation_orders_blocks_from_the_output():
    net = _net()
    net.train()
    before = _state(net)
    images = torch.rand(4, 1, 16, 16)
    res = cascading_randomisation(_gradient_maps(images), net, seed=0)
    assert res["layers"] == BLOCKS[::-1]
    assert res["rank_correlation"].shape == (5, 4)
    assert len(res["mean"]) == len(res["mean_abs"]) == len(res["mean_ssim"]) == 5
    assert res["ssim"].shape == res["hog"].shape == (5, 4) and len(res["mean_hog"]) == 5
    assert all(m < 0.95 for m in res["mean"])  # gradients depend on the weights
    assert res["mean"] != res["mean_abs"]  # signed maps: both correlations are reported
    assert net.training and _changed(before, _state(net)) == set()

    ind = cascading_randomisation(_gradient_maps(images), net, mode="independent", seed=0)
    assert ind["mean"][0] == pytest.approx(res["mean"][0])  # step 1: only fc in both
    assert ind["mean"][1:] != pytest.approx(res["mean"][1:])

    fixed = torch.rand(4, 1, 16, 16)
    ignores = cascading_randomisation(lambda m: fixed, net)
    assert torch.allclose(ignores["rank_correlation"], torch.ones(5, 4))
    assert ignores["mean_ssim"] == pytest.approx([1.0] * 5)
    assert ignores["mean_hog"] == pytest.approx([1.0] * 5)


def test_cascade_order_follows_execution_not_registration():
    class Backwards(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(4, 2)  # registered first, runs last
            self.body = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            return self.head(self.body(x).mean(dim=(2, 3)))

    images = torch.rand(2, 1, 8, 8)
    res = cascading_randomisation(_gradient_maps(images), Backwards())
    assert res["layers"] == ["head", "body"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "sideways"}, "unknown randomisation mode"),
        ({"layers": []}, "layers is empty"),
        ({"layers": ["fc", "fc"]}, "more than once"),
        ({"layers": ["nope"]}, "unknown layer 'nope'"),
        ({"layers": ["pool"]}, "block 'pool' has no parameters to randomise"),  # was Spearman 1
    ],
)
def test_cascading_randomisation_bad_input(kwargs, message):
    with pytest.raises(DataError, match=message):
        cascading_randomisation(lambda m: torch.rand(1, 1, 4, 4), _net(), **kwargs)


# ---------------------------------------------------------------------- data randomisation


def test_ssim_and_hog_similarity_on_known_maps():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 1, 32, 32, generator=g), torch.rand(3, 1, 32, 32, generator=g)
    for measure in (ssim_similarity, hog_similarity):
        assert measure(a, a) == pytest.approx([1.0] * 3)
        # absolute values, min-max scaled: a sign flip or a positive rescaling is no change
        assert measure(a, -3 * a + 0) == pytest.approx([1.0] * 3, abs=1e-6)
        assert measure(a, b).abs().max() < 0.2  # unrelated noise
    # a blob nudged by one pixel stays more similar than one moved across the map
    blob = torch.zeros(1, 1, 32, 32)
    blob[..., 4:12, 4:12] = 1
    nudged = torch.roll(blob, shifts=(1, 1), dims=(2, 3))
    moved = torch.roll(blob, shifts=(16, 16), dims=(2, 3))
    for measure in (ssim_similarity, hog_similarity):
        assert 1 > float(measure(blob, nudged)) > float(measure(blob, moved))
    assert torch.isnan(hog_similarity(torch.ones(1, 1, 32, 32), blob)).all()  # constant map
    assert torch.isnan(ssim_similarity(torch.rand(2, 1, 2, 2), torch.rand(2, 1, 2, 2))).all()
    with pytest.raises(DataError, match="mismatched"):
        ssim_similarity(a, torch.rand(3, 1, 16, 16))
    assert set(map_similarities(a, b)) == {"rank_correlation", "rank_correlation_abs", "ssim",
                                           "hog"}  # fmt: skip
    from_arrays = map_similarities(a.numpy(), b[:, 0].numpy())  # arrays, (N, H, W) too
    assert torch.equal(from_arrays["hog"], hog_similarity(a, b))
    assert torch.isnan(hog_similarity(torch.rand(2, 1, 3, 3), torch.rand(2, 1, 3, 3))).all()


def test_data_randomisation():
    images = torch.rand(3, 1, 16, 16)
    net = _net()
    same = data_randomisation(_gradient_maps(images), net, net)
    assert torch.allclose(same["rank_correlation"], torch.ones(3))
    torch.manual_seed(5)
    other = build_model("convnet", 1, 3, widths=[8, 8, 16, 16])
    differs = data_randomisation(_gradient_maps(images), net, other)
    assert differs["mean"] < 0.9
    with pytest.raises(DataError, match="same architecture"):
        data_randomisation(lambda m: torch.rand(1, 1, 4, 4 if m is net else 5), net, other)


def test_with_random_labels_permutes_and_keeps_class_counts():
    ds = load_dataset("shapes32", "train", seed=0, n=96)
    labels = ds.labels.clone()
    a, b = with_random_labels(ds, 0), with_random_labels(ds, 0)
    c = with_random_labels(ds, 1)
    assert torch.equal(a.labels, b.labels) and not torch.equal(a.labels, c.labels)
    assert Counter(a.labels.tolist()) == Counter(labels.tolist())
    assert (a.labels != labels).float().mean() > 0.5
    assert torch.equal(ds.labels, labels)  # the original keeps its labels
    assert torch.equal(a[3]["image"], ds[3]["image"]) and int(a[3]["label"]) == int(a.labels[3])
    with pytest.raises(DataError, match="label tensor"):
        with_random_labels(torch.utils.data.TensorDataset(torch.zeros(2)), 0)


# ------------------------------------------------------------------------------- CLI / run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from conftest import TINY_TRAIN_ARGS, train_tiny_run
    from pellucid.cli.main import main

    root = tmp_path_factory.mktemp("sanity")
    trained = train_tiny_run(root / "trained", epochs=2)
    argv = [*TINY_TRAIN_ARGS, "--epochs", "2", "--random-labels", "--quiet"]
    assert main([*argv, "--out", str(root / "shuffled")]) == 0
    return trained, root / "shuffled"


def test_random_label_run_is_recorded(runs):
    from pellucid.training import load_run

    _, shuffled = runs
    metrics = json.loads((shuffled / "metrics.json").read_text())
    assert metrics["random_labels"] is True
    assert load_run(shuffled)[1].data.random_labels is True
    assert "random_labels" not in json.loads((runs[0] / "metrics.json").read_text())


def test_sanity_check_cli(runs, tmp_path, capsys):
    from pellucid.cli.main import main

    trained, shuffled = runs
    out = tmp_path / "sanity"
    argv = ["sanity-check", str(trained), "--n", "4", "--explainers", "gradcam", "random"]
    assert main([*argv, "--random-label-run", str(shuffled), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| gradcam |" in printed and "random labels" in printed
    result = json.loads((out / "sanity.json").read_text())
    assert result["checks"] == ["full", "cascading", "data"]
    assert result["layers"] == BLOCKS[::-1]
    rows = result["rows"]
    assert rows["random"]["full"]["mean"] == pytest.approx(1.0)  # the control ignores the model
    assert rows["random"]["data"]["mean"] == pytest.approx(1.0)
    assert rows["random"]["cascading"]["mean"] == pytest.approx([1.0] * 5)
    assert rows["gradcam"]["full"]["mean"] < 0.99
    assert rows["random"]["full"]["mean_ssim"] == pytest.approx(1.0)
    assert rows["random"]["data"]["mean_hog"] == pytest.approx(1.0)
    assert rows["gradcam"]["full"]["mean_ssim"] < 0.99
    assert "**SSIM**" in printed and "**HOG correlation**" in printed
    assert len(rows["gradcam"]["full"]["per_image"]) == 4
    for name in ("sanity.md", "sanity_cascade.png", "sanity_maps.png"):
        assert (out / name).stat().st_size > 0


def test_sanity_check_refuses_a_run_not_trained_on_random_labels(runs, tmp_path, capsys):
    from pellucid.cli.main import main

    trained, _ = runs
    argv = ["sanity-check", str(trained), "--explainers", "random", "--n", "2"]
    assert main([*argv, "--random-label-run", str(trained), "--out", str(tmp_path)]) == 1
    assert "not trained on random labels" in capsys.readouterr().err
    assert main([*argv, "--checks", "data", "--out", str(tmp_path)]) == 1
    assert "needs --random-label-run" in capsys.readouterr().err
    assert not (tmp_path / "sanity.json").exists()  # nothing written on error
    taken = tmp_path / "a-file"
    taken.write_text("keep me")
    assert main([*argv, "--out", str(taken)]) == 1
    assert "is not a directory" in capsys.readouterr().err and taken.read_text() == "keep me"


def test_sanity_run_default_output_in_the_run(runs):
    from pellucid.explain.sanity import SANITY_DIR, sanity_run

    trained, _ = runs
    res = sanity_run(
        trained, ["saliency"], n=2, checks=["independent"], layers=["fc"], progress=False,
        out=trained / SANITY_DIR,
    )  # fmt: skip
    assert res["rows"]["saliency"]["independent"]["layers"] == ["fc"]
    assert (trained / SANITY_DIR / "sanity.json").is_file()
    with pytest.raises(ConfigError, match="unknown or no checks"):
        sanity_run(trained, ["saliency"], checks=["nope"])


def test_cascade_of_an_icnn_network_puts_its_layer_between_the_backbones_blocks():
    from pellucid.methods import build_method

    net = build_method("icnn", _net(), 3).inference_model()
    res = cascading_randomisation(_gradient_maps(torch.rand(2, 1, 16, 16)), net)
    assert res["layers"] == ["backbone.fc", "icnn", *(f"backbone.{b}" for b in BLOCKS[3::-1])]


def test_sanity_table_says_what_a_dash_means():
    """A Grad-CAM whose maps are all zero once the layers above it are random has no rank
    correlation on any image: the cell is a dash and the table says why."""
    from pellucid.explain.sanity import sanity_table

    def row(v):
        return {"full": {k: v for k in ("mean", "mean_abs", "mean_ssim", "mean_hog")}}

    result = {"checks": ["full"], "layers": [], "n": 2, "split": "test", "dataset": "shapes",
              "target": "label", "rows": {"saliency": row(0.25), "gradcam": row(None)}}  # fmt: skip
    table = sanity_table(result)
    assert "| gradcam | – |" in table and "| saliency | 0.250 |" in table
    assert "– = undefined on every image" in table
    result["rows"]["gradcam"] = row(0.5)
    assert "undefined" not in sanity_table(result)
