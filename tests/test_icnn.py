import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pellucid
from pellucid.config import MethodConfig
from pellucid.data import collate, load_dataset
from pellucid.data.base import DatasetInfo, PellucidDataset
from pellucid.errors import ConfigError, DataError, PellucidError
from pellucid.hooks import count_hooks
from pellucid.methods import ICNN, build_method
from pellucid.methods.icnn import (
    FilterLoss,
    TemplateMask,
    filter_mutual_information,
    log_prior,
    mask_at_peak,
    templates,
)
from pellucid.metrics import location_instability, part_interpretability
from pellucid.metrics.base import SPECS
from pellucid.metrics.parts import (
    collect_maps,
    instability_from_maps,
    interpretability_from_maps,
    receptive_field,
)
from pellucid.models import build_model
from pellucid.training import train_run
from pellucid.training.run import evaluate_run, load_method


# -- templates and mask ---------------------------------------------------------------------
def test_template_values():
    n = 8
    t = templates(n, n)  # (n^2 + 1, n, n)
    tau = 0.5 / n**2
    assert t.shape == (n * n + 1, n, n)
    mu = 3 * n + 4  # template centred at (3, 4)
    assert float(t[mu, 3, 4]) == pytest.approx(tau)
    assert float(t[mu, 3, 5]) == pytest.approx(tau * (1 - 4 / n))  # L1 distance 1
    for i in range(n):
        for j in range(n):
            if abs(i - 3) + abs(j - 4) >= n / 2:
                assert float(t[mu, i, j]) == pytest.approx(-tau)
    assert torch.allclose(t[-1], torch.full((n, n), -tau))
    assert float(t.max()) == pytest.approx(tau) and float(t.min()) == pytest.approx(-tau)
    prior = log_prior(n, n).exp()
    assert float(prior.sum()) == pytest.approx(1.0)
    assert float(prior[-1]) == pytest.approx(1 - n * n / (1 + n * n))


def test_mask_is_unscaled_template_at_peak_without_argmax_gradient():
    x = torch.rand(2, 3, 6, 6, requires_grad=True)
    out = mask_at_peak(x)
    t = templates(6, 6) / (0.5 / 36)  # unscaled
    for a in range(2):
        for f in range(3):
            mu = int(x[a, f].argmax())
            expected = torch.relu(x[a, f] * t[mu])
            assert torch.allclose(out[a, f], expected)
            assert out[a, f].flatten()[mu] == x[a, f].flatten()[mu]  # the peak is kept
    out.sum().backward()  # gradient = relu'(.) * template, no term from the argmax
    assert torch.all((x.grad >= 0) & (x.grad <= 1))


# -- the loss -------------------------------------------------------------------------------
def literal_mi(x, tmpl, prior, z=None, target=None):
    """MI per filter with loops over filters, templates and maps (icnn.md, "Loss")."""
    n, k = x.shape[:2]
    m = tmpl.shape[0]
    out = []
    for f in range(k):
        e = [[math.exp(float((x[i, f] * tmpl[t]).sum())) for t in range(m)] for i in range(n)]
        zt = [sum(e[i][t] for i in range(n)) if z is None else z[f][t] for t in range(m)]
        p_x_t = [[e[i][t] / zt[t] for t in range(m)] for i in range(n)]
        p_x = [sum(prior[t] * p_x_t[i][t] for t in range(m)) for i in range(n)]
        total = 0.0
        for t in range(m):
            for i in range(n):
                if target is not None and int(target[i, f]) != t:
                    continue
                total += prior[t] * p_x_t[i][t] * math.log(p_x_t[i][t] / p_x[i])
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("approx", [False, True])
def test_loss_equals_literal_formula(approx):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 3, 3, generator=g, dtype=torch.float64) * 20
    tmpl = templates(3, 3, dtype=torch.float64)
    lp = log_prior(3, 3).double()
    target = torch.randint(0, 10, (6, 3), generator=g) if approx else None
    mi = filter_mutual_information(x, tmpl, lp, target=target)
    expected = literal_mi(x, tmpl, lp.exp().tolist(), target=target)
    assert torch.allclose(mi, expected, rtol=1e-9, atol=1e-12)
    assert float(expected.abs().max()) > 1e-3  # a non-trivial case
    # with a given running log Z (log mean exp): Z_T = N exp(log_z)
    log_z = torch.rand(3, 10, generator=g, dtype=torch.float64) + 2
    mi = filter_mutual_information(x, tmpl, lp, log_z=log_z, target=target)
    z = (6 * log_z.exp()).tolist()
    assert torch.allclose(mi, literal_mi(x, tmpl, lp.exp().tolist(), z, target), rtol=1e-9)


def test_running_log_z_is_an_ema_of_z():
    torch.manual_seed(2)
    loss = FilterLoss(tau=None, beta=4.0, momentum=0.9).double()
    x1, x2 = torch.rand(5, 2, 4, 4).double() * 30, torch.rand(5, 2, 4, 4).double() * 30
    tmpl = templates(4, 4, dtype=torch.float64)

    def z(x):  # (K, M) batch mean of exp(tr(x . T))
        return torch.einsum("nkhw,mhw->nkm", x, tmpl).exp().mean(0)

    loss(x1, update=True)
    assert torch.allclose(loss.log_z.double(), z(x1).log(), rtol=1e-6)
    out = loss(x2, update=True)
    mixed = 0.9 * z(x1) + 0.1 * z(x2)
    assert torch.allclose(loss.log_z.double(), mixed.log(), rtol=1e-6)
    lp = log_prior(4, 4).double()
    expected = -filter_mutual_information(x2, tmpl, lp, log_z=mixed.log())
    assert torch.allclose(out, expected)
    assert int(loss.z_updates) == 2


@pytest.mark.parametrize("approx", [False, True])
def test_gradient_matches_finite_differences(approx):
    torch.manual_seed(3)
    x = (torch.rand(4, 2, 3, 3, dtype=torch.float64) * 10).requires_grad_()
    tmpl = templates(3, 3, dtype=torch.float64)
    lp = log_prior(3, 3).double()
    log_z = torch.rand(2, 10, dtype=torch.float64).requires_grad_()
    target = torch.randint(0, 10, (4, 2)) if approx else None
    assert torch.autograd.gradcheck(
        lambda a, b: filter_mutual_information(a, tmpl, lp, b, target), (x, log_z)
    )
    assert torch.autograd.gradcheck(lambda a: filter_mutual_information(a, tmpl, lp), (x,))


def test_no_overflow_with_large_activations():
    loss = FilterLoss(tau=None, beta=4.0, momentum=0.9)
    x = (torch.rand(8, 4, 8, 8) * 1e3).requires_grad_()
    for _ in range(3):
        out = loss(x, update=True)
        assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    tgt = torch.full((8, 4), 64)
    out = loss(x * 3, tgt)  # far above the running Z
    assert torch.isfinite(out).all()


# -- the method -----------------------------------------------------------------------------
def _batch(n=16, size=32):
    data = load_dataset("shapes32" if size == 32 else "shapes", "train", seed=0, n=n)
    return collate([data[i] for i in range(n)]), data.info.num_classes


@pytest.mark.parametrize("layer", ["layer4", "layer3.0"])
def test_step_logits_equal_inference_network(layer):
    batch, c = _batch()
    backbone = build_model("convnet" if layer == "layer4" else "resnet8", 3, c)
    icnn = build_method("icnn", backbone, c, layer=layer).eval()
    assert icnn._net.staged == (layer == "layer4")
    res = icnn.step(batch)
    net = icnn.inference_model()
    assert not net.training
    assert torch.allclose(res.logits, net(batch.image), atol=1e-5)
    assert isinstance(net.icnn.mask, TemplateMask)
    assert count_hooks(net) == 0 and count_hooks(icnn) == 0
    icnn.train()
    res = icnn.step(batch)
    res.loss.backward()
    assert torch.isfinite(res.loss) and {"ce", "filter_loss"} <= set(res.terms)
    assert float(icnn.icnn.conv.weight.grad.abs().sum()) > 0


def test_categories_follow_ema_of_class_means():
    icnn = ICNN(build_model("convnet", 3, 3, widths=[4, 4, 4, 4]), 3, category_momentum=0.9)
    pre = torch.zeros(4, 4, 2, 2)
    y = torch.tensor([0, 0, 1, 2])
    pre[0:2, 0] = 1.0  # filter 0 fires on class 0
    pre[2, 1] = 2.0  # filter 1 on class 1
    pre[3, 2:] = 3.0  # filters 2, 3 on class 2
    icnn._update_categories(pre, y)
    assert icnn.category.tolist() == [0, 1, 2, 2]
    pre2 = torch.zeros(4, 4, 2, 2)
    pre2[2, 0] = 10.5  # filter 0 now on class 1: 0.1 * 10.5 = 1.05 > class 0's 0.9 * 1
    icnn._update_categories(pre2, y)
    assert torch.allclose(icnn.class_mean[:, 0], torch.tensor([0.9, 1.05, 0.0]))
    assert icnn.category.tolist() == [1, 1, 2, 2]
    binary = ICNN(build_model("convnet", 3, 2, widths=[4, 4, 4, 4]), 2)
    assert binary.category.tolist() == [1, 1, 1, 1]  # single target class


def test_plain_is_same_architecture_without_mask_and_loss():
    batch, c = _batch()
    torch.manual_seed(0)
    a = build_method("icnn", build_model("convnet", 3, c), c)
    torch.manual_seed(0)
    b = build_method("icnn", build_model("convnet", 3, c), c, plain=True)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    assert b.method_state() == {}
    res = b.step(batch)
    assert set(res.terms) == {"ce"} and torch.equal(res.loss, res.terms["ce"])
    assert isinstance(b.inference_model().icnn.mask, nn.Identity)


def test_mask_gain_is_calibrated_once_on_the_first_training_batch():
    batch, c = _batch()
    torch.manual_seed(0)
    icnn = build_method("icnn", build_model("convnet", 3, c, widths=[8, 8, 16, 16]), c)
    mask = icnn.icnn.mask
    assert torch.equal(mask.gain, torch.ones(16)) and not bool(mask.calibrated)
    icnn.eval().step(batch)  # no calibration outside training
    assert not bool(mask.calibrated)
    icnn.train()
    with torch.no_grad():
        pre = icnn.icnn.features(icnn.model.forward_to(batch.image, "layer4"))  # (N, K, h, w)
    res = icnn.step(batch)
    expected = pre.mean((0, 2, 3)) / mask_at_peak(pre).mean((0, 2, 3))
    expected = torch.where(mask_at_peak(pre).mean((0, 2, 3)) > 0, expected, torch.ones(16))
    assert bool(mask.calibrated) and torch.allclose(mask.gain, expected, rtol=1e-4)
    assert torch.all(mask.gain >= 1)  # relu(x * t) <= x: the mask only removes activation
    with torch.no_grad():  # the step's own logits already used the calibrated gain
        assert torch.allclose(icnn.inference_model()(batch.image), res.logits, atol=1e-5)
    x = torch.rand(2, 16, 4, 4)
    assert torch.allclose(mask(x), mask_at_peak(x) * expected[:, None, None], rtol=1e-4)
    gain = mask.gain.clone()
    icnn.step(collate([load_dataset("shapes32", "train", seed=1, n=4)[i] for i in range(4)]))
    assert torch.equal(mask.gain, gain)  # once only
    assert torch.isfinite(res.loss)
    off = build_method("icnn", build_model("convnet", 3, c), c, calibrate_gain=False).train()
    off.step(batch)
    assert torch.equal(off.icnn.mask.gain, torch.ones(128)) and not bool(off.icnn.mask.calibrated)


def test_finetune_from_plain_weights_starts_method_state_fresh():
    """A plain run's weights load into the ICNN network strictly (the mask has no weights);
    the gain, running log Z and categories start fresh and are set by the first step."""
    batch, c = _batch()
    torch.manual_seed(0)
    plain = build_method("icnn", build_model("convnet", 3, c, widths=[8, 8, 16, 16]), c, plain=True)
    plain.train().step(batch).loss.backward()
    state = plain.inference_model().state_dict()
    icnn = build_method("icnn", build_model("convnet", 3, c, widths=[8, 8, 16, 16]), c)
    icnn.inference_model().load_state_dict(state)  # strict
    x = batch.image[:4]
    plain.eval(), icnn.eval()
    with torch.no_grad():  # same weights: equal pre-mask maps
        a = plain.icnn.features(plain.model.forward_to(x, "layer4"))
        b = icnn.icnn.features(icnn.model.forward_to(x, "layer4"))
    assert torch.allclose(a, b)
    assert not bool(icnn.icnn.mask.calibrated) and torch.equal(icnn.icnn.mask.gain, torch.ones(16))
    assert icnn.filter_loss.log_z.numel() == 0 and int(icnn.filter_loss.z_updates) == 0
    assert int(icnn.class_count.sum()) == 0
    icnn.train().step(batch)
    assert bool(icnn.icnn.mask.calibrated) and int(icnn.filter_loss.z_updates) == 1
    # an ICNN network's state keeps its calibrated gain (no second calibration)
    trained = icnn.inference_model().state_dict()
    assert {"icnn.mask.gain", "icnn.mask.calibrated"} <= set(trained)
    again = build_method("icnn", build_model("convnet", 3, c, widths=[8, 8, 16, 16]), c)
    again.inference_model().load_state_dict(trained)
    assert bool(again.icnn.mask.calibrated)
    assert torch.equal(again.icnn.mask.gain, icnn.icnn.mask.gain)
    gain = again.icnn.mask.gain.clone()
    again.train().step(batch)
    assert torch.equal(again.icnn.mask.gain, gain)


def test_init_from_plain_or_standard_run(tiny_config, tmp_path):
    """``--init``: a plain ICNN run fills the whole ICNN network (the fine-tuning protocol of
    benchmarks/icnn.py); a standard run fills the backbone; a misfit is a clear error and
    leaves the network as it was."""
    from pellucid.training.run import build_from_config, load_init_weights

    plain_cfg = tiny_config.replace(method=MethodConfig(name="icnn", options={"plain": True}))
    train_run(plain_cfg, tmp_path / "plain", progress=False)
    train_run(tiny_config, tmp_path / "std", progress=False)
    plain_net, saved = pellucid.load_run(tmp_path / "plain")
    std_net, _ = pellucid.load_run(tmp_path / "std")
    icnn_cfg = saved.replace(method=MethodConfig(name="icnn"))  # with the dataset's info
    method = build_from_config(icnn_cfg)
    load_init_weights(method, plain_net.state_dict(), "plain")
    for key, value in plain_net.state_dict().items():
        assert torch.equal(method.inference_model().state_dict()[key], value), key
    assert not bool(method.icnn.mask.calibrated)  # the gain is set by the first step
    method = build_from_config(icnn_cfg)
    fresh = method.icnn.conv.weight.detach().clone()
    load_init_weights(method, std_net.state_dict(), "std")
    for key, value in std_net.state_dict().items():
        assert torch.equal(method.model.state_dict()[key], value), key
    assert torch.equal(method.icnn.conv.weight, fresh)  # the new layer keeps its init
    wide = build_from_config(
        icnn_cfg.replace(model=icnn_cfg.model.__class__(name="convnet", options={}))
    )
    before = {k: v.clone() for k, v in wide.inference_model().state_dict().items()}
    with pytest.raises(PellucidError, match="--init std: weights do not fit"):
        load_init_weights(wide, std_net.state_dict(), "std")
    for key, value in wide.inference_model().state_dict().items():
        assert torch.equal(value, before[key]), key
    # end to end: fine-tuning from the plain run through the run API (as the CLI's --init)
    ft_cfg = tiny_config.replace(method=MethodConfig(name="icnn"), init=str(tmp_path / "plain"))
    metrics = train_run(ft_cfg, tmp_path / "ft", progress=False)
    assert metrics["method"] == "icnn"


def test_icnn_run_round_trip_and_part_metrics(tiny_config, tmp_path):
    cfg = tiny_config.replace(method=MethodConfig(name="icnn"))
    metrics = train_run(cfg, tmp_path / "icnn", progress=False)
    for key in ("location_instability", "part_interpretability", "mis", "test_accuracy"):
        assert metrics[key] is not None, key
    method, _ = load_method(tmp_path / "icnn")
    state = method.state_dict()
    for key in ("filter_loss.log_z", "category", "class_mean", "filter_loss.z_updates"):
        assert key in state and key in method.method_state()
    assert method.filter_loss.log_z.shape == (16, 4 * 4 + 1)  # 32x32 input -> 4x4 maps
    assert int(method.filter_loss.z_updates) == 2 * (128 // 32)
    assert int(method.class_count.sum()) > 0
    again, _ = load_method(tmp_path / "icnn")
    for key in ("filter_loss.log_z", "category", "class_mean", "class_count"):
        assert torch.equal(again.state_dict()[key], state[key])
    model, _ = pellucid.load_run(tmp_path / "icnn")
    assert isinstance(model.icnn.mask, TemplateMask)  # load_run gives the ICNN network
    assert bool(model.icnn.mask.calibrated)  # the mask gain is saved with the network
    assert torch.equal(model.icnn.mask.gain, method.icnn.mask.gain)
    assert not torch.equal(model.icnn.mask.gain, torch.ones(16))
    x = torch.rand(3, 3, 32, 32)
    assert torch.allclose(model(x), method.inference_model()(x))
    (tmp_path / "icnn" / "metrics.json").write_text("{}")
    redone = evaluate_run(tmp_path / "icnn", device="cpu")
    assert redone["location_instability"] == pytest.approx(metrics["location_instability"])
    assert redone["part_interpretability"] == pytest.approx(metrics["part_interpretability"])
    assert SPECS["location_instability"].higher_is_better is False
    assert SPECS["part_interpretability"].higher_is_better is True


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
