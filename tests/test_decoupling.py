import copy
import itertools
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pellucid.apps.acceleration import SparseNet, compare_latency, split_paths
from pellucid.config import MethodConfig
from pellucid.data import collate, load_dataset
from pellucid.errors import ConfigError, PellucidError
from pellucid.hooks import count_hooks
from pellucid.methods import Decoupling, build_method
from pellucid.methods.decoupling import (
    ControlledConv2d,
    GatedBatchNorm2d,
    decoupled,
    gated_layers,
    insert_controllers,
    last_gates,
    recalibrate_batchnorm,
    remove_controllers,
    semantic_hash,
)
from pellucid.metrics import calculation_paths, class_similarity, jaccard_matrix, path_summary
from pellucid.models import build_model
from pellucid.training import evaluate_run, load_run, train_run
from pellucid.training.run import load_method


def _randomise(model: nn.Module, bias: float = 0.0, std: float = 1.0) -> None:
    """Give the controllers input-dependent gates, some of them closed."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for conv in gated_layers(model).values():
            c = conv.controller
            c.weight2.copy_(torch.randn(c.weight2.shape, generator=gen) * std)
            c.bias2.fill_(bias)


def test_gates_are_binary_in_eval_and_soft_in_training():
    model = build_model("convnet", 3, 4, widths=[8, 8, 16, 16])
    Decoupling(model, 4)
    _randomise(model)
    x = torch.rand(6, 3, 32, 32)
    model.eval()
    model(x)
    gates = torch.cat(list(last_gates(model).values()), 1)
    assert set(gates.unique().tolist()) == {0.0, 1.0}
    logits = torch.cat([c.controller.logits for c in gated_layers(model).values()], 1)
    assert torch.equal(gates, (logits > 0).float())
    model.train()
    with torch.no_grad():
        model(x)
    train_gates = torch.cat(list(last_gates(model).values()), 1)
    assert float(train_gates.min()) >= 0 and float(train_gates.max()) <= 1
    assert ((train_gates > 0) & (train_gates < 1)).any()  # soft values v1 in training
    assert count_hooks(model) == 0


def test_straight_through_gradient_equals_soft_gate_gradient():
    y = torch.randn(5, 12, requires_grad=True)
    w = torch.randn(5, 12)
    torch.manual_seed(3)
    a = semantic_hash(y, training=True)
    (a * w).sum().backward()
    y2 = y.detach().clone().requires_grad_(True)
    torch.manual_seed(3)
    g = y2 + torch.randn_like(y2)  # the same noise
    v1 = (1.2 * torch.sigmoid(g) - 0.1).clamp(0, 1)
    (v1 * w).sum().backward()
    assert torch.allclose(y.grad, y2.grad)
    v2 = (g > 0).float()
    # every forward value is the hard or the soft gate; about half are the hard one
    is_hard = torch.isclose(a, v2) & ~torch.isclose(v1, v2)
    is_soft = torch.isclose(a, v1.detach())
    assert bool((is_hard | is_soft).all()) and 0 < int(is_hard.sum()) < a.numel()


@pytest.mark.parametrize("name", ["convnet", "resnet8"])
def test_removing_controllers_restores_outputs_and_state_dict(name):
    model = build_model(name, 3, 5)
    x = torch.rand(3, 3, 32, 32)
    model.eval()
    before = model(x).detach()
    keys = list(model.state_dict())
    method = Decoupling(model, 5)
    assert all(k in method.model.state_dict() for k in keys)  # nothing renamed
    assert torch.allclose(model(x), before)  # gates start open
    _randomise(model)
    assert not torch.allclose(model(x), before)
    method.remove()
    assert list(model.state_dict()) == keys
    assert torch.equal(model(x), before)
    assert not any(isinstance(m, ControlledConv2d) for m in model.modules())
    assert not any(isinstance(m, GatedBatchNorm2d) for m in model.modules())
    with decoupled(model) as names:
        assert names == list(gated_layers(model))
    assert torch.equal(model(x), before) and count_hooks(model) == 0


def test_torchvision_resnet18_insertion_is_reversible():
    model = build_model("tv:resnet18", 3, 10).eval()
    x = torch.rand(2, 3, 32, 32)
    before = model(x).detach()
    keys = list(model.state_dict())
    names = insert_controllers(model)
    assert len(names) == 16 and not any("downsample" in n or n == "net.conv1" for n in names)
    assert torch.allclose(model(x), before, atol=1e-6)
    _randomise(model, bias=0.5)
    model(x)
    assert 0 < float(torch.cat(list(last_gates(model).values()), 1).mean()) < 1
    remove_controllers(model)
    assert list(model.state_dict()) == keys and torch.equal(model(x), before)


@pytest.mark.parametrize(
    "name,shape",
    [
        ("convnet", (3, 32, 32)),
        ("vgg", (3, 16, 16)),
        ("resnet8", (1, 28, 28)),
        ("resnet20", (3, 16, 16)),
    ],
)
def test_sparse_execution_equals_masked_dense(name, shape):
    model = build_model(name, shape[0], 7).eval()
    Decoupling(model, 7)
    _randomise(model)
    with torch.no_grad():  # non-trivial batch-norm statistics, to check the folding
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    x = torch.rand(5, *shape)
    with torch.no_grad():
        dense = model(x)
    gates = torch.cat(list(last_gates(model).values()), 1)
    assert 0.2 < float(gates.mean()) < 0.8
    net = SparseNet(model, x[:1])
    for i in range(len(x)):
        assert torch.allclose(net(x[i : i + 1]), dense[i : i + 1], atol=1e-4)
    with pytest.raises(PellucidError, match="one image"):
        net(x)
    with torch.no_grad():  # every gate closed in a layer: still well-defined
        next(iter(gated_layers(model).values())).controller.bias2.fill_(-100.0)
        assert torch.allclose(SparseNet(model, x[:1])(x[:1]), model(x[:1]), atol=1e-4)
        list(gated_layers(model).values())[-1].controller.bias2.fill_(100.0)  # all open
        assert torch.allclose(SparseNet(model, x[:1])(x[:1]), model(x[:1]), atol=1e-4)


def test_sparse_execution_leaves_its_input_alone_and_checks_it():
    model = build_model("resnet8", 1, 3).eval()
    Decoupling(model, 3)
    _randomise(model)
    x = torch.rand(1, 1, 12, 12, requires_grad=True)
    keep = x.detach().clone()
    net = SparseNet(model, x.detach())
    with torch.no_grad():
        want = model(keep)
    for given in (x, x.detach().double(), x.detach()[..., ::1]):
        assert torch.allclose(net(given), want, atol=1e-4)
    assert torch.equal(x.detach(), keep)  # the identity shortcuts add in place, not into x
    with pytest.raises(PellucidError, match="channels"):
        net(torch.rand(1, 3, 12, 12))


def test_flops_of_a_two_layer_net_match_a_hand_count():
    model = build_model("convnet", 1, 2, widths=[4, 6]).eval()
    Decoupling(model, 2)
    (conv,) = gated_layers(model).values()
    with torch.no_grad():
        conv.controller.bias2.copy_(torch.tensor([1.0, -1, 1, -1, 1, 1]))  # 4 of 6 filters on
        model(torch.rand(2, 1, 8, 8))
    net = SparseNet(model, torch.rand(1, 1, 8, 8))
    # conv 1->4 on 8x8; controller: GAP of 4 maps 4x4, FC 4->1, FC 1->6; conv 4->4 of 6 on
    # 4x4; classifier 4->2
    hand = 4 * 1 * 9 * 64 + (4 * 16 + 4 * 1 + 1 * 6) + 4 * 4 * 9 * 16 + 4 * 2
    assert net.flops(last_gates(model)).tolist() == [hand, hand]
    assert net.dense_flops() == 4 * 1 * 9 * 64 + 6 * 4 * 9 * 16 + 6 * 2


def test_flops_of_a_three_layer_net_count_skipped_input_channels():
    model = build_model("convnet", 1, 2, widths=[4, 6, 5]).eval()
    Decoupling(model, 2)
    ctrl2, ctrl3 = (c.controller for c in gated_layers(model).values())
    with torch.no_grad():
        ctrl2.bias2.copy_(torch.tensor([1.0, -1, 1, -1, 1, 1]))  # 4 of 6 filters on
        ctrl3.bias2.copy_(torch.tensor([1.0, 1, -1, -1, -1]))  # 2 of 5 on
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        model(x)
    net = SparseNet(model, x[:1])
    # conv 1->4 on 8x8 | ctrl2: GAP 4x4x4, FC 4->1, 1->6 | conv 4 active in -> 4 of 6 on 4x4
    # ctrl3: GAP of the 4 active 2x2 maps, FC 4->1, 1->5 | conv 4 in -> 2 of 5 on 2x2 | fc 2->2
    hand = (4 * 1 * 9 * 64) + (4 * 16 + 4 * 1 + 1 * 6) + (4 * 4 * 9 * 16)
    hand += (4 * 4 + 4 * 1 + 1 * 5) + (2 * 4 * 9 * 4) + 2 * 2
    dense = 4 * 1 * 9 * 64 + 6 * 4 * 9 * 16 + 5 * 6 * 9 * 4 + 5 * 2
    assert net.dense_flops() == dense
    assert net.flops(last_gates(model)).tolist() == [hand] * 3


def test_losses_are_literal_formulas():
    torch.manual_seed(0)
    method = Decoupling(build_model("convnet", 3, 3, widths=[4, 8, 4]), 3)
    gates = [torch.randint(0, 2, (5, 8)).float(), torch.randint(0, 2, (5, 4)).float()]
    pooled = [torch.randn(5, 8), torch.randn(5, 4)]
    y = torch.tensor([0, 1, 2, 1, 0])
    kl = 0.0
    for a, o in zip(gates, pooled, strict=True):
        p, q = torch.softmax(o, 1), torch.softmax(a, 1)
        kl += float((p * (p.log() - q.log())).sum(1).mean())
    assert float(method.align_loss(gates, pooled)) == pytest.approx(kl, rel=1e-5)
    expected_mi = 0.0
    for a, head in zip(gates, method.mi_heads, strict=True):  # -log q(y | a_l), batch mean
        z = a @ head.weight.detach().T  # (N, C), no bias
        expected_mi += float((z.exp().sum(1).log() - z[torch.arange(5), y]).mean())
    assert float(method.mi_loss(gates, y).detach()) == pytest.approx(expected_mi, rel=1e-5)
    ones = sum(float(a.sum()) for a in gates)
    assert float(method.sparsity_loss(gates)) == pytest.approx(ones / (5 * 12))
    weighted = (2 * float(gates[0].sum()) + 3 * float(gates[1].sum())) / (5 * (2 * 8 + 3 * 4))
    assert float(method.sparsity_loss(gates, [2.0, 3.0])) == pytest.approx(weighted)


def test_step_trains_controllers_and_mi_heads():
    data = load_dataset("shapes32", "train", seed=0, n=16)
    c = data.info.num_classes
    method = build_method("decoupling", build_model("convnet", 3, c, widths=[8, 8, 8]), c)
    method.train()
    res = method.step(collate([data[i] for i in range(16)]))
    res.loss.backward()
    assert set(res.terms) >= {"ce", "mi", "align", "gate_l1", "active"}
    ctrl = method._controllers[0]
    assert ctrl.bias2.grad is not None and float(ctrl.bias2.grad.abs().sum()) > 0
    assert method.mi_heads[0].weight.grad is not None
    groups = method.param_groups(0.1, 5e-4)
    assert groups[1]["optimizer"] == "adam" and groups[1]["weight_decay"] == 0.0
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len(list(method.parameters()))


@pytest.mark.parametrize("detach", [False, True])
def test_detach_features_keeps_gate_losses_out_of_the_backbone(detach):
    data = load_dataset("shapes32", "train", seed=0, n=16)
    c = data.info.num_classes
    torch.manual_seed(0)
    model = build_model("convnet", 3, c, widths=[8, 8, 8])
    method = build_method("decoupling", model, c, detach_features=detach, init_bias=0.0)
    method.train()
    res = method.step(collate([data[i] for i in range(16)]))
    gate_losses = res.terms["mi"] + res.terms["align"] + res.terms["gate_l1"]
    backbone = [model.layer1[0].conv.weight, model.layer2[0].conv.weight]
    ctrl = method._controllers[-1]
    grads = torch.autograd.grad(
        gate_losses, [*backbone, ctrl.weight2], allow_unused=True, retain_graph=True
    )
    backbone_grad = sum(float(g.abs().sum()) for g in grads[:-1] if g is not None)
    assert (backbone_grad == 0.0) == detach
    assert float(grads[-1].abs().sum()) > 0  # the controllers still learn from them
    (ce_grad,) = torch.autograd.grad(res.terms["ce"], [model.layer1[0].conv.weight])
    assert float(ce_grad.abs().sum()) > 0


def test_path_metrics_match_literal_loops():
    gen = torch.Generator().manual_seed(0)
    paths = torch.rand(9, 6, generator=gen) < 0.5
    paths[0] = False
    paths[1] = False
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 1])

    def jac(a, b):
        union = int((a | b).sum())
        return 1.0 if union == 0 else int((a & b).sum()) / union

    m = jaccard_matrix(paths, paths)
    for i, j in itertools.product(range(9), range(9)):
        assert float(m[i, j]) == pytest.approx(jac(paths[i], paths[j]))
    sim = class_similarity(paths, labels, 3)
    for ci, cj in itertools.product(range(3), range(3)):
        vals = [
            jac(paths[i], paths[j])
            for i, j in itertools.product(range(9), range(9))
            if labels[i] == ci and labels[j] == cj and i != j
        ]
        assert float(sim[ci, cj]) == pytest.approx(np.mean(vals))


def test_calculation_paths_concatenate_the_gates():
    data = load_dataset("shapes32", "test", seed=0, n=40)
    model = build_model("convnet", 3, data.info.num_classes, widths=[8, 8, 16, 16])
    Decoupling(model, data.info.num_classes)
    _randomise(model)
    cp = calculation_paths(model, data, max_images=30, batch_size=16)
    assert cp.paths.dtype == torch.bool and cp.paths.shape == (30, 8 + 16 + 16)
    assert [s.name for s in cp.layers] == list(gated_layers(model))
    assert cp.layers[-1].stop == 40 and model.training
    summary = path_summary(cp, data.info.num_classes)
    assert summary["active_fraction"] == pytest.approx(float(cp.paths.float().mean()), abs=1e-5)
    assert 0 <= summary["path_inter_similarity"] <= 1
    gates = split_paths(cp.paths, cp.layers)
    assert gates["layer2.0.conv"].shape == (30, 8)
    with pytest.raises(PellucidError, match="no controlling modules"):
        calculation_paths(build_model("convnet", 3, 8), data)


def test_latency_comparison_reports_ratios():
    model = build_model("convnet", 3, 4, widths=[8, 16, 16]).eval()
    Decoupling(model, 4)
    _randomise(model)
    res = compare_latency(model, [torch.rand(3, 32, 32) for _ in range(2)], repeats=2, threads=1)
    assert res["latency_ratio"] > 0 and res["sparse_max_abs_error"] < 1e-4
    assert res["latency_threads"] == 1
    assert any(isinstance(m, ControlledConv2d) for m in model.modules())  # model untouched


def test_run_trains_saves_loads_evaluates_and_fine_tunes(tiny_config, tmp_path):
    opts = {"latency_images": 2, "eval_images": 64}
    std = train_run(tiny_config, tmp_path / "std", progress=False)
    cfg = tiny_config.replace(
        method=MethodConfig(name="decoupling", options=opts), init=str(tmp_path / "std")
    )
    metrics = train_run(cfg, tmp_path / "dec", progress=False)
    for key in ("flops_ratio", "latency_ratio", "active_fraction", "path_intra_similarity"):
        assert key in metrics, key
    assert metrics["test_accuracy"] > 0 and std["test_accuracy"] > 0
    method, _ = load_method(tmp_path / "dec")
    assert isinstance(method, Decoupling) and not method.training
    again, _ = load_method(tmp_path / "dec")
    for a, b in zip(method.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    model, _ = load_run(tmp_path / "dec")
    x = torch.rand(2, 3, 32, 32)
    model(x)
    assert set(torch.cat(list(last_gates(model).values()), 1).unique().tolist()) <= {0.0, 1.0}
    (tmp_path / "dec" / "metrics.json").unlink()
    out = evaluate_run(tmp_path / "dec", device="cpu")
    assert {"flops_ratio", "latency_ratio", "active_fraction"} <= set(out)
    dense, _ = load_run(tmp_path / "std")  # the standard weights load into a decoupled model
    fresh = build_model("convnet", 3, 8, widths=[8, 8, 16, 16])
    Decoupling(fresh, 8)
    fresh.load_state_dict(dense.state_dict())
    assert torch.equal(fresh.layer2[0].conv.weight, dense.layer2[0].conv.weight)


def test_path_figures_are_written(tiny_config, tmp_path):
    from PIL import Image

    from pellucid.report.figures_paths import path_figures

    cfg = tiny_config.replace(
        method=MethodConfig(name="decoupling", options={"latency_images": 0}),
        train=tiny_config.train.__class__(epochs=1, lr=0.05, schedule="cosine", seed=0),
    )
    train_run(cfg, tmp_path / "dec", progress=False)
    train_run(tiny_config, tmp_path / "std", progress=False)
    paths = path_figures([tmp_path / "dec", tmp_path / "std"], tmp_path / "fig")
    assert sorted(p.name for p in paths) == ["dec_path_frequency.png", "dec_path_similarity.png"]
    for p in paths:
        assert Image.open(p).size[0] > 200


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
    _randomise(model, bias=0.2)
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
