"""Localisation from a network's own filters (pellucid.apps.filter_localisation): the CSG
paper's per-filter maps and class-gradient maps, on a hand-built network whose filters are
known: filter 0 fires exactly on the object, filter 1 exactly on the background."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pellucid.apps.filter_localisation import (
    class_filter_table,
    count_matched_assignment,
    filter_assignment,
    filter_gradient_maps,
    filter_localise,
    reference_statistics,
)
from pellucid.data.base import DatasetInfo, PellucidDataset
from pellucid.errors import ConfigError, DataError
from pellucid.hooks import count_hooks

SIZE = 16


def _objects(n: int = 8, seed: int = 0) -> PellucidDataset:
    """Binary images = their object mask: class 0 a 3x3 square, class 1 a 5x5 square, at
    random places."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, 1, SIZE, SIZE)
    labels = torch.arange(n) % 2
    for i in range(n):
        side = 3 if labels[i] == 0 else 5
        r, c = torch.randint(0, SIZE - side, (2,), generator=g).tolist()
        masks[i, :, r : r + side, c : c + side] = 1
    info = DatasetInfo("objects", 2, 1, (SIZE, SIZE), ("small", "big"), (0.1,), (0.3,), True)
    return PellucidDataset(info, masks.clone(), labels, mask=masks)


class ObjectNet(nn.Module):
    """``feat``: ReLU of a 1x1 conv whose filter 0 copies the image (the object) and filter 1
    is 1 - image (the background); then global pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            conv.bias.copy_(torch.tensor([0.0, 1.0]))
        self.feat = nn.Sequential(conv, nn.ReLU())
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feat(x).mean(dim=(2, 3)))


def test_reference_statistics_give_class_means_and_per_filter_quantiles():
    model, ref = ObjectNet(), _objects(10, seed=1)
    means, thresholds = reference_statistics(model, "feat", ref, num_classes=2, q=0.3)
    assert means.shape == (2, 2) and thresholds.shape == (2,)
    # filter 0 is the object's area share: larger on the big-square class
    assert means[0, 0] == pytest.approx(9 / 256) and means[1, 0] == pytest.approx(25 / 256)
    assert means[0, 1] == pytest.approx(1 - 9 / 256)
    # 70 % of filter 0's activations are 0 (objects cover < 10 %), of filter 1's are 1
    assert thresholds.tolist() == [0.0, 1.0]


def test_assignment_from_activations_and_from_gates():
    means = torch.tensor([[0.1, 0.9], [0.3, 0.5]])
    assert filter_assignment(class_means=means).tolist() == [[False, True], [True, False]]
    gates = torch.tensor([[1.0, 0.2], [0.6, 1.0]])
    assert filter_assignment(gates=gates).tolist() == [[True, False], [True, True]]
    assert filter_assignment(gates=gates, gate_cut=1.0).tolist() == [[True, False], [False, True]]
    # ranked by class mean minus the filter's mean over classes (0.2, 0.5, 0.5)
    means = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.1, 0.5], [float("nan")] * 3])
    table = class_filter_table(means, m=2)
    assert table.tolist() == [[1, 2], [0, 2], [-1, -1]]  # no reference images: no filters


def test_count_matched_assignment_gives_every_class_its_k_best_filters():
    # relative scores (class mean - filter mean): class 0: [-0.1, 0.4, 0.0], class 1: [0.1,
    # -0.4, 0.0]
    means = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.1, 0.5], [float("nan")] * 3])
    one = count_matched_assignment(means, 1)
    assert one.tolist() == [[False, True, False], [True, False, False], [False] * 3]
    two = count_matched_assignment(means, 2)
    assert two.sum(dim=1).tolist() == [2, 2, 0]  # a filter may serve two classes
    assert two[:, 2].tolist() == [True, True, False]
    # gates rank first; among equal gates the activation score decides
    gates = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    by_gate = count_matched_assignment(means, 1, gates)
    assert by_gate.tolist() == [[False, True, False], [True, False, False], [False] * 3]
    assert count_matched_assignment(means, 2, gates)[1].tolist() == [True, False, True]
    with pytest.raises(ConfigError, match="integer >= 1"):
        count_matched_assignment(means, 0)
    with pytest.raises(ConfigError, match="exceeds the layer's 3 filters"):
        count_matched_assignment(means, 4)
    with pytest.raises(ConfigError, match="do not match"):
        count_matched_assignment(means, 1, torch.ones(2, 3))


def test_the_filter_on_the_object_localises_and_the_one_on_the_background_does_not():
    model, data, ref = ObjectNet(), _objects(8), _objects(10, seed=1)
    # by activation, the big-square class owns filter 0 (object), the small one filter 1
    res = filter_localise(model, data, "feat", ref, protocol="filters")
    assert res.filters_per_class == [1, 1]
    big = [v for v, y in zip(res.iou, data.labels, strict=True) if y == 1]
    small = [v for v, y in zip(res.iou, data.labels, strict=True) if y == 0]
    assert big == [1.0] * 4  # object region exactly
    assert max(small) < 0.05  # the background region
    assert res.share_above == 0.5 and res.share_images == 0.5 and res.n == 8
    # gates that give filter 0 to both classes localise every image
    gates = torch.eye(2)
    gates[1] = torch.tensor([1.0, 0.0])
    both = filter_localise(model, data, "feat", ref, assign="gates", gates=gates)
    assert both.iou == [1.0] * 8 and both.share_above == 1.0 and both.share_images == 1.0
    assert both.filters_per_class == [1, 1] and both.options["gate_cut"] == 0.5
    # count-matched: each class its best 2 of 2 filters, so half of the pairs localise
    matched = filter_localise(model, data, "feat", ref, per_class=2)
    assert matched.filters_per_class == [2, 2] and matched.options["per_class"] == 2
    assert matched.share_above == 0.5 and matched.share_images == 1.0
    with pytest.raises(ConfigError, match="per_class is an option of protocol 'filters'"):
        filter_localise(model, data, "feat", ref, protocol="gradient", per_class=1)


def test_class_gradient_maps_point_at_the_object_of_the_class_owning_it():
    model, data, ref = ObjectNet(), _objects(8), _objects(10, seed=1)
    res = filter_localise(model, data, "feat", ref, protocol="gradient", m=1, sigma=0, q=25 / 256)
    assert res.threshold == 0.2 and res.options["m"] == 1
    big = [v for v, y in zip(res.iou, data.labels, strict=True) if y == 1]
    assert big == [1.0] * 4  # class 1's top filter is the object filter: its gradient map
    assert res.pointing is not None and all(
        hit for hit, y in zip(res.pointing, data.labels, strict=True) if y == 1
    )
    # the maps themselves: |gradient| is the object indicator, scaled to a peak of 1
    images = data.images[:2]
    maps = filter_gradient_maps(model, "feat", images, torch.tensor([[0], [0]]), sigma=0)
    assert torch.equal(maps, images)
    blurred = filter_gradient_maps(model, "feat", images, torch.tensor([[0], [0]]), sigma=1)
    assert blurred.amax() == pytest.approx(1.0) and (blurred > 0).sum() > (images > 0).sum()


def test_the_model_is_left_as_it_was():
    model, data, ref = ObjectNet(), _objects(4), _objects(4, seed=1)
    model.train()
    model.head.weight.requires_grad_(False)
    for protocol in ("filters", "gradient"):
        filter_localise(model, data, "feat", ref, protocol=protocol, sigma=0)
    assert model.training and not model.head.weight.requires_grad
    assert model.feat[0].weight.requires_grad and count_hooks(model) == 0
    with pytest.raises(ConfigError):
        filter_localise(model, data, "head", ref)  # fails inside the capture
    assert model.training and count_hooks(model) == 0


def test_bad_input_is_named():
    model, data, ref = ObjectNet(), _objects(4), _objects(4, seed=1)
    with pytest.raises(ConfigError, match="unknown protocol 'cam'"):
        filter_localise(model, data, "feat", ref, protocol="cam")
    with pytest.raises(ConfigError, match="q .* must lie in"):
        filter_localise(model, data, "feat", ref, q=1.0)
    with pytest.raises(ConfigError, match="needs a CSG gate matrix"):
        filter_localise(model, data, "feat", ref, assign="gates")
    with pytest.raises(ConfigError, match=r"gate matrix \(3, 2\) does not match"):
        filter_localise(model, data, "feat", ref, assign="gates", gates=torch.ones(3, 2))
    with pytest.raises(ConfigError, match="has no layer 'feet'"):
        filter_localise(model, data, "feet", ref)
    with pytest.raises(ConfigError, match="'head' gives"):
        filter_localise(model, data, "head", ref)
    with pytest.raises(ConfigError, match="m .* must be >= 1"):
        filter_localise(model, data, "feat", ref, protocol="gradient", m=0)
    with pytest.raises(DataError, match="reference images are empty"):
        filter_localise(model, data, "feat", torch.utils.data.Subset(ref, []))
    only_small = torch.utils.data.Subset(ref, [0, 2])  # class 0 only, as a sorted split starts
    with pytest.raises(DataError, match=r"class\(es\) \[1\] have no image among the reference"):
        filter_localise(model, data, "feat", only_small, protocol="gradient")
    broken = _objects(4)
    broken.images[1, 0, 3, 3] = float("nan")
    with pytest.raises(DataError, match="scored images contain NaN"):
        filter_localise(model, broken, "feat", ref, protocol="gradient")
    with pytest.raises(DataError, match="reference images contain NaN"):
        filter_localise(model, data, "feat", broken)
    plain = _objects(4)
    plain.info = DatasetInfo("plain", 2, 1, (SIZE, SIZE), ("a", "b"), (0.5,), (0.25,))
    with pytest.raises(DataError, match="'plain' has no object masks"):
        filter_localise(model, plain, "feat", ref)


def test_run_and_cli_protocols(tmp_path, capsys):
    import json

    from conftest import train_tiny_run
    from pellucid.apps.filter_localisation import filter_localise_run
    from pellucid.cli.main import main

    std = train_tiny_run(tmp_path / "std")
    with pytest.raises(ConfigError, match="has no CSG gates"):
        filter_localise_run(str(std), assign="gates")
    out = tmp_path / "loc.json"
    args = ["localise", str(std), "--protocol", "gradient", "--n", "6", "--reference", "40"]
    assert main([*args, "--out", str(out), "--save"]) == 0
    printed = capsys.readouterr().out
    assert "gradient" in printed and str(std) in printed
    saved = json.loads(out.read_text())[str(std)]
    assert saved["protocol"] == "gradient" and saved["threshold"] == 0.2 and saved["n"] == 6
    assert json.loads((std / "localisation_gradient.json").read_text()) == saved
    direct = filter_localise_run(str(std), "gradient", reference=40, n=6)
    assert direct.iou == saved["iou"]
    assert main(["localise", str(std), "--protocol", "filters", "--explainer", "occlusion"]) == 1
    assert "--explainer and --option are for --protocol cam" in capsys.readouterr().err
    assert main(["localise", str(std), "--per-class", "2"]) == 1
    assert "--per-class is for --protocol filters, not cam" in capsys.readouterr().err
    args = ["localise", str(std), "--protocol", "filters", "--per-class", "3", "--n", "6"]
    assert main([*args, "--reference", "40", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)[str(std)]
    assert set(printed["filters_per_class"]) == {3} and printed["options"]["per_class"] == 3
