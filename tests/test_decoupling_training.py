"""Decoupling as a training method: the losses against literal formulas, the step, the path
metrics, latency, and runs that train, save, load, evaluate and fine-tune."""

import itertools

import numpy as np
import pytest
import torch

from decoupling_helpers import randomise_gates
from pellucid.apps.acceleration import compare_latency, split_paths
from pellucid.config import MethodConfig
from pellucid.data import collate, load_dataset
from pellucid.errors import PellucidError
from pellucid.methods import Decoupling, build_method
from pellucid.methods.decoupling import (
    ControlledConv2d,
    gated_layers,
    last_gates,
)
from pellucid.metrics import calculation_paths, class_similarity, jaccard_matrix, path_summary
from pellucid.models import build_model
from pellucid.training import evaluate_run, load_run, train_run
from pellucid.training.run import load_method


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
    randomise_gates(model)
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
    randomise_gates(model)
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
