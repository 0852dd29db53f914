"""ICNN as a training method: the step, the class-category EMA, the plain twin, the mask gain
calibration, fine-tuning and runs that save, load and evaluate."""

import pytest
import torch
from torch import nn

import pellucid
from pellucid.config import MethodConfig
from pellucid.data import collate, load_dataset
from pellucid.errors import PellucidError
from pellucid.hooks import count_hooks
from pellucid.methods import ICNN, build_method
from pellucid.methods.icnn import (
    TemplateMask,
    mask_at_peak,
)
from pellucid.metrics.base import SPECS
from pellucid.models import build_model
from pellucid.training import train_run
from pellucid.training.run import evaluate_run, load_method


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
