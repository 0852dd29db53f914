"""Decoupling's checks and its training details: bad options, batch-norm recalibration under
hard gates, the sparsity budget and the distillation teacher."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from decoupling_helpers import randomise_gates
from pellucid.apps.acceleration import SparseNet
from pellucid.config import MethodConfig
from pellucid.data import collate, load_dataset
from pellucid.errors import ConfigError
from pellucid.methods import Decoupling, build_method
from pellucid.methods.decoupling import (
    gated_layers,
    last_gates,
    recalibrate_batchnorm,
)
from pellucid.models import build_model
from pellucid.training import train_run
from pellucid.training.run import load_method


def test_bad_options_and_models_are_clear_errors():
    model = build_model("convnet", 3, 4)
    for opts, match in [
        ({"lambda_mi": -1}, "lambda_mi"),
        ({"lambda_sparse": float("nan")}, "lambda_sparse"),
        ({"reduction": 0}, "reduction"),
        ({"sparsity": "l2"}, "sparsity"),
        ({"controller_optimizer": "rmsprop"}, "controller_optimizer"),
        ({"layer": "layer3"}, "no option 'layer'"),
        ({"sparsity_target": 0}, "sparsity_target"),
        ({"sparsity_target": 1.5}, "sparsity_target"),
        ({"sparsity_target": "half"}, "sparsity_target"),
    ]:
        with pytest.raises(ConfigError, match=match):
            build_method("decoupling", model, 4, **opts)
    assert not gated_layers(model)  # a failed construction leaves the model alone
    Decoupling(model, 4)
    with pytest.raises(ConfigError, match="already"):
        Decoupling(model, 4)
    with pytest.raises(ConfigError, match="no conv layer"):
        Decoupling(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), 4)
    tv = build_model("tv:resnet18", 3, 4)
    with pytest.raises(ConfigError, match="StagedNet"):
        SparseNet(tv, torch.rand(1, 3, 32, 32))


def test_batchnorm_recalibration_uses_hard_gates_and_restores_modes():
    import copy

    model = build_model("convnet", 3, 4, widths=[8, 8, 16, 16])
    Decoupling(model, 4)
    randomise_gates(model, bias=0.2)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in norms:  # stale statistics
            m.running_mean.fill_(5.0)
            m.running_var.fill_(9.0)
    x = torch.rand(16, 3, 32, 32)
    # literal reference: every norm normalises with its batch statistics, gates are hard
    ref = copy.deepcopy(model).eval()
    seen = {}
    for name, m in ref.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
            m.register_forward_pre_hook(lambda mod, inp, n=name: seen.__setitem__(n, inp[0]))
    with torch.no_grad():
        ref(x)
    model.train()
    model.layer2[0].conv.controller.eval()  # a mixed state must come back as it was
    assert recalibrate_batchnorm(model, [x]) == 16
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            torch.testing.assert_close(m.running_mean, seen[name].mean((0, 2, 3)))
            torch.testing.assert_close(m.running_var, seen[name].var((0, 2, 3)))
            assert m.momentum == 0.1 and m.training
    assert not model.layer2[0].conv.controller.training and model.layer3[0].conv.training
    gates = torch.cat(list(last_gates(model).values()), 1)
    assert set(gates.unique().tolist()) == {0.0, 1.0}  # the calibration pass had hard gates
    with pytest.raises(ConfigError, match="no batch"):
        recalibrate_batchnorm(model, [])


def test_training_ends_with_recalibrated_norms_in_checkpoint_and_weights(tiny_config, tmp_path):
    from pellucid.io import load_tensors

    opts = {"latency_images": 0, "eval_images": 32}
    for tag, extra in (("cal", {"calibration_batches": 100}), ("nocal", {})):
        cfg = tiny_config.replace(method=MethodConfig(name="decoupling", options={**opts, **extra}))
        train_run(cfg, tmp_path / tag, progress=False)
    ckpt = load_tensors(tmp_path / "cal" / "checkpoint" / "weights.safetensors")
    cal, _ = load_method(tmp_path / "cal")
    nocal, _ = load_method(tmp_path / "nocal")
    key = "model.layer3.0.bn.running_mean"
    assert torch.equal(ckpt[key], cal.state_dict()[key])  # re-saved after the hook
    # same seed, same training: only the recalibrated statistics differ
    assert torch.equal(
        cal.state_dict()["model.layer3.0.conv.weight"],
        nocal.state_dict()["model.layer3.0.conv.weight"],
    )
    assert not torch.equal(cal.state_dict()[key], nocal.state_dict()[key])


def test_sparsity_target_penalises_only_over_budget():
    """With a budget the sparsity term is max(0, S - target): no pull on the gates below
    the budget, the plain penalty's gradient above it."""
    data = load_dataset("shapes32", "train", seed=0, n=16)
    batch = collate([data[i] for i in range(16)])
    c = data.info.num_classes

    def sparsity_grad(**opts):
        torch.manual_seed(0)
        model = build_model("convnet", 3, c, widths=[8, 8, 8])
        method = build_method("decoupling", model, c, lambda_mi=0, lambda_align=0, **opts)
        method.train()
        torch.manual_seed(1)  # same ISH noise for every call
        res = method.step(batch)
        ctrl = method._controllers[-1]
        (grad,) = torch.autograd.grad(res.loss - res.terms["ce"], [ctrl.bias2])
        return float(res.terms["gate_l1"].detach()), grad

    kept, plain = sparsity_grad()
    assert 0.5 < kept <= 1.0 and float(plain.abs().sum()) > 0  # gates open at init_bias 3
    _, under = sparsity_grad(sparsity_target=1.0)  # the budget is everything: no pull
    assert float(under.abs().sum()) == 0.0
    _, over = sparsity_grad(sparsity_target=0.1)
    torch.testing.assert_close(over, plain)


def test_a_budget_that_never_binds_is_reported_at_the_end_of_training():
    """max(0, S - target) trains as the plain penalty while S stays above the target; the
    method says so when training ends, and is silent when the budget was reached."""
    data = load_dataset("shapes32", "train", seed=0, n=16)
    batch = collate([data[i] for i in range(16)])
    c = data.info.num_classes

    def finish(target: float) -> list[warnings.WarningMessage]:
        torch.manual_seed(0)
        model = build_model("convnet", 3, c, widths=[8, 8, 8])
        method = build_method("decoupling", model, c, sparsity_target=target, lambda_sparse=0.01)
        method.train()
        for _ in range(3):
            method.step(batch)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            method.on_train_end([])
        statuses.append(method.budget_status())
        return [w for w in caught if "budget did not bind" in str(w.message)]

    statuses: list[dict] = []
    missed = finish(0.1)  # gates open at init_bias 3: S ~ 0.95, far above 0.1
    assert len(missed) == 1 and "lambda_sparse (now 0.01)" in str(missed[0].message)
    assert finish(1.0) == []  # S <= 1 always: within budget
    # the same verdict goes to metrics.json (run_metrics) as budget_reached
    assert [s["budget_reached"] for s in statuses] == [False, True]
    assert 0.1 + 0.02 < statuses[0]["sparsity_term_end"] <= 1.0
    fresh = build_method("decoupling", build_model("convnet", 3, c, widths=[8, 8, 8]), c)
    assert fresh.budget_status() == {}  # no budget: nothing reported


def test_distillation_teacher_is_the_dense_network_at_the_first_step():
    data = load_dataset("shapes32", "train", seed=0, n=16)
    batch = collate([data[i] for i in range(16)])
    c = data.info.num_classes
    torch.manual_seed(0)
    model = build_model("convnet", 3, c, widths=[8, 8, 8])
    dense = copy.deepcopy(model).eval()
    method = build_method("decoupling", model, c, lambda_distill=2.0)
    method.train()
    res = method.step(batch)
    teacher = method._teacher
    assert teacher is not None and not gated_layers(teacher)  # controllers removed
    assert all(not p.requires_grad for p in teacher.parameters())
    assert "_teacher" not in dict(method.named_children())
    assert not any(k.startswith("_teacher") for k in method.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(teacher(batch.image), dense(batch.image))
        target = F.log_softmax(dense(batch.image), 1)
    literal = (target.exp() * (target - F.log_softmax(res.logits, 1))).sum(1).mean()
    torch.testing.assert_close(res.terms["distill"], literal)
    plain = ["ce", "mi", "align", "gate_l1"]
    weights = [1.0, method.lambda_mi, method.lambda_align, method.lambda_sparse]
    rest = sum(w * res.terms[k] for w, k in zip(weights, plain, strict=True))
    torch.testing.assert_close(res.loss, rest + 2.0 * literal)
    with torch.no_grad():  # the teacher stays frozen while the model trains
        model.layer1[0].conv.weight.add_(1.0)
    method.step(batch)
    assert method._teacher is teacher
    with torch.no_grad():
        torch.testing.assert_close(teacher(batch.image), dense(batch.image))
