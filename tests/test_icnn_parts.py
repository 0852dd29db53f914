"""ICNN's part metrics: bad input, receptive fields against brute force, location instability
and part interpretability on known cases and against a literal implementation."""

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pellucid.data import load_dataset
from pellucid.data.base import DatasetInfo, PellucidDataset
from pellucid.errors import ConfigError, DataError, PellucidError
from pellucid.methods import ICNN, build_method
from pellucid.metrics import location_instability, part_interpretability
from pellucid.metrics.parts import (
    collect_maps,
    instability_from_maps,
    interpretability_from_maps,
    receptive_field,
)
from pellucid.models import build_model


def test_bad_input_gives_clear_errors():
    model = build_model("convnet", 3, 4)
    with pytest.raises(ConfigError, match="no layer 'layer9'"):
        ICNN(model, 4, layer="layer9")
    with pytest.raises(ConfigError, match="has no option 'lambda_f'"):
        build_method("icnn", model, 4, lambda_f=1.0)
    with pytest.raises(ConfigError, match="lambda_"):
        ICNN(model, 4, lambda_=-1)
    with pytest.raises(ConfigError, match="disagree"):
        ICNN(model, 4, lambda_=1.0, loss_weight=2.0)
    with pytest.raises(ConfigError, match="target_class"):
        ICNN(model, 4, target_class=4)
    with pytest.raises(ConfigError, match="beta"):
        ICNN(model, 4, beta=0)
    with pytest.raises(ConfigError, match="momentum"):
        ICNN(model, 4, z_momentum=1.0)
    assert ICNN(model, 4, loss_weight=0.5).lambda_ == 0.5
    no_parts = PellucidDataset(_info(1, 8), torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(DataError, match="no landmarks"):
        location_instability(_identity_model(1), "layer", no_parts)
    with pytest.raises(DataError, match="no part masks"):
        part_interpretability(_identity_model(1), "layer", no_parts)
    with pytest.raises(PellucidError, match="no layer"):
        location_instability(_identity_model(1), "layer7", no_parts)


# -- receptive fields -----------------------------------------------------------------------
@torch.no_grad()
def brute_force_boxes(model, layer, size, trials=2):
    """Per unit of ``layer``: bounding box (r0, r1, c0, c1) of the input pixels whose change
    (by +-5 in every channel, from ``trials`` random images) changes the unit."""
    from pellucid.hooks import capture

    model = model.double().eval()  # float64: batch size must not change the rounding
    with capture(model, [layer]) as acts:
        for _ in range(trials):
            x0 = torch.rand(1, 3, size, size, dtype=torch.float64)
            model(x0)
            base = acts[layer][0]  # (K, h, w)
            h, w = base.shape[1:]
            if _ == 0:
                depends = torch.zeros(size, size, h, w, dtype=torch.bool)
            for delta in (5.0, -5.0):
                for r in range(size):
                    xs = x0.repeat(size, 1, 1, 1)
                    xs[torch.arange(size), :, r, torch.arange(size)] += delta
                    model(xs)
                    depends[r] |= ((acts[layer] - base).abs() > 1e-9).any(1)  # (size, h, w)
    boxes = {}
    for i in range(h):
        for j in range(w):
            rows, cols = torch.nonzero(depends[:, :, i, j], as_tuple=True)
            boxes[(i, j)] = (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max()))
    return boxes


@pytest.mark.parametrize(
    ("name", "layer", "size"), [("convnet", "layer3", 32), ("resnet8", "layer2", 20)]
)
def test_receptive_field_centres_match_brute_force(name, layer, size):
    torch.manual_seed(0)
    model = build_model(name, 3, 4, widths=[4, 4, 4, 4] if name == "convnet" else [8, 8, 8])
    rf = receptive_field(model, layer, 3, (size, size))
    boxes = brute_force_boxes(model, layer, size)
    h = max(i for i, _ in boxes) + 1
    centres = rf.centres(h, h)
    interior = 0
    for (i, j), (r0, r1, c0, c1) in boxes.items():
        x0, y0, x1, y1 = rf.box(i, j)
        # the field clipped to the image is exactly what brute force finds
        assert (r0, r1, c0, c1) == (max(y0, 0), min(y1, size) - 1, max(x0, 0), min(x1, size) - 1)
        if r0 > 0 and c0 > 0 and r1 < size - 1 and c1 < size - 1:
            interior += 1
            assert centres[i, j].tolist() == [(c0 + c1) / 2, (r0 + r1) / 2]
    assert interior > 0


# -- location instability and part interpretability ---------------------------------------------
def _info(channels, size, parts=True):
    return DatasetInfo(
        "fake", 2, channels, (size, size), ("a", "b"), (0.0,) * channels, (1.0,) * channels,
        has_parts=parts,
    )  # fmt: skip


def _identity_model(channels):
    """A "model" whose layer ``layer`` outputs the image itself (1x1 conv, weight 1)."""
    conv = nn.Conv2d(channels, channels, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels)[:, :, None, None])
    return nn.Sequential(OrderedDict(layer=conv))


def test_instability_is_zero_when_the_filter_peaks_at_the_landmark():
    g = torch.Generator().manual_seed(0)
    n, size = 40, 16
    xy = torch.randint(0, size, (n, 2), generator=g)
    images = torch.rand(n, 1, size, size, generator=g) * 0.5
    images[torch.arange(n), 0, xy[:, 1], xy[:, 0]] = 1.0  # peak at (x, y) = landmark
    labels = torch.randint(0, 2, (n,), generator=g)
    data = PellucidDataset(_info(1, size), images, labels, landmarks=xy[:, None].float())
    model = _identity_model(1)
    assert location_instability(model, "layer", data) == pytest.approx(0.0, abs=1e-12)


def test_instability_known_value_with_categories_and_top_k():
    g = torch.Generator().manual_seed(1)
    n, size = 30, 16
    labels = torch.arange(n) % 2
    marks = torch.rand(n, 2, 2, generator=g) * (size - 1)  # two landmark slots
    marks[::3, 1] = float("nan")  # slot 1 absent in some images
    strength = torch.rand(n, generator=g) + 1.0
    images = torch.zeros(n, 1, size, size)
    images[:, 0, 5, 9] = strength * torch.where(labels == 1, 1.0, 0.1)  # class 1's filter
    data = PellucidDataset(_info(1, size), images, labels, landmarks=marks)
    value = location_instability(_identity_model(1), "layer", data, top_k=6)
    # literal: class-1 images with the landmark, 6 strongest, distance to (x=9, y=5)
    diag, stds = math.hypot(size, size), []
    for k in range(2):
        ids = [i for i in range(n) if labels[i] == 1 and not torch.isnan(marks[i, k, 0])]
        ids = sorted(ids, key=lambda i: -float(strength[i]))[:6]
        d = [math.hypot(marks[i, k, 0] - 9, marks[i, k, 1] - 5) / diag for i in ids]
        stds.append(np.std(d))
    assert value == pytest.approx(np.mean(stds), rel=1e-9)


def test_part_interpretability_on_a_known_case():
    g = torch.Generator().manual_seed(2)
    n, size = 24, 16
    parts = torch.zeros(n, 1, size, size)
    images = torch.zeros(n, 2, size, size)
    for i in range(n):
        r, c = torch.randint(0, size - 4, (2,), generator=g).tolist()
        parts[i, 0, r : r + 4, c : c + 4] = 1
        noise = 1 + 0.01 * torch.rand(4, 4, generator=g)
        images[i, 0, r : r + 4, c : c + 4] = noise  # filter 0 covers the part
        images[i, 1, (r + 8) % 12 : (r + 8) % 12 + 4, c : c + 4] = noise  # filter 1 elsewhere
    labels = torch.zeros(n, dtype=torch.long)
    data = PellucidDataset(_info(2, size), images, labels, parts=parts)
    lm = collect_maps(_identity_model(2), "layer", data)
    score, per_filter = interpretability_from_maps(lm, quantile=0.05, min_part_images=1)
    assert per_filter.tolist() == [1.0, 0.0] and score == 0.5


def literal_interpretability(maps, parts, labels, quantile, thr_iou, min_images):
    """Network-Dissection binarisation and Zhang et al.'s P(f, k) with plain loops."""
    n, k = maps.shape[:2]
    p, size = parts.shape[1], parts.shape[2:]
    up = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    scores = []
    for f in range(k):
        values = np.sort(maps[:, f].flatten().numpy())[::-1]
        t = values[int(round(quantile * len(values)))]
        best = 0.0
        for c in range(int(labels.max()) + 1):
            for s in range(p):
                hits, count = 0, 0
                for i in range(n):
                    part = parts[i, s].bool()
                    if labels[i] != c or not part.any():
                        continue
                    region = up[i, f] > t
                    iou = (region & part).sum() / max(1, int((region | part).sum()))
                    hits, count = hits + int(iou > thr_iou), count + 1
                if count >= min_images:
                    best = max(best, hits / count)
        scores.append(best)
    return float(np.mean(scores)), scores


def test_part_interpretability_equals_literal_on_random_maps():
    g = torch.Generator().manual_seed(4)
    from pellucid.metrics.parts import LayerMaps

    maps = torch.rand(20, 3, 4, 4, generator=g) ** 4
    parts = torch.zeros(20, 2, 16, 16, dtype=torch.bool)
    for i in range(20):
        for s in range(2):  # random rectangles of 3-12 px a side
            r, c, hh, ww = torch.randint(0, 10, (4,), generator=g).tolist()
            parts[i, s, r : r + hh + 3, c : c + ww + 3] = True
    parts[3, 1] = False  # an absent part
    labels = torch.randint(0, 2, (20,), generator=g)
    lm = LayerMaps(maps, labels, (16, 16), 1, parts=parts)
    score, per = interpretability_from_maps(lm, quantile=0.1, iou_threshold=0.15, min_part_images=3)
    expected, exp_per = literal_interpretability(maps, parts, labels, 0.1, 0.15, 3)
    assert per.tolist() == pytest.approx(exp_per) and score == pytest.approx(expected)
    assert 0 < expected < 1


def test_instability_from_maps_uses_network_receptive_fields():
    model = build_model("convnet", 3, 8, widths=[4, 4, 4, 4])
    data = load_dataset("shapes32", "test", n=64)
    lm = collect_maps(model, "layer4", data, max_images=40)
    assert lm.maps.shape[0] == 40 and lm.landmarks.shape == (40, 4, 2)
    rf = receptive_field(model, "layer4", 3, (32, 32))
    assert rf.jump == (8, 8) and rf.size == (38, 38)  # 4 conv 3x3 + 3 max-pools of 2
    score, per = instability_from_maps(lm, rf)
    assert 0 < score < 1 and per.shape == (4,)


def test_filter_window_figure(tmp_path):
    from pellucid.report.figures_icnn import crop, filter_windows, plot_windows

    data = load_dataset("shapes32", "test", n=48)
    c = data.info.num_classes
    panels = {}
    for name, plain in (("icnn", False), ("plain", True)):
        method = ICNN(build_model("convnet", 3, c, widths=[4, 4, 4, 4]), c, plain=plain)
        rows = filter_windows(method.inference_model(), "icnn", data, n_filters=3, n_images=2)
        assert len(rows) == 3 and all(len(r["windows"]) == 2 for r in rows)
        assert rows[0]["windows"][0].shape == (24, 24, 3)  # max(3 * 8, min(54, 32 // 2))
        panels[name] = rows
    path = plot_windows(panels, tmp_path / "w.png", data.info.class_names)
    assert path.stat().st_size > 1000
    img = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4) / 32
    win = crop(img[:1], 0.0, 0.0, 3)  # centred on the corner: grey outside the image
    assert win.shape == (3, 3, 3) and win[0, 0, 0] == 0.5 and win[1, 1, 0] == 0.0


def test_a_part_metric_that_cannot_be_computed_does_not_hide_the_other(monkeypatch):
    from pellucid.metrics import parts

    def no_fields(*args, **kwargs):
        raise DataError("receptive_field: no fields here")

    monkeypatch.setattr(parts, "receptive_field", no_fields)
    model = build_model("convnet", 3, 8, widths=[4, 4, 4, 4])
    out = parts.part_metrics(model, "layer4", load_dataset("shapes32", "test", n=64))
    assert out["location_instability"] is None
    assert out["part_metrics_note"] == "location_instability: receptive_field: no fields here"
    assert 0 <= out["part_interpretability"] <= 1  # was None with the other one
