import numpy as np
import pytest
import torch

import pellucid
from pellucid.config import MethodConfig
from pellucid.data import collate, load_dataset
from pellucid.errors import PellucidError
from pellucid.hooks import count_hooks
from pellucid.methods import CSG, build_method
from pellucid.methods.csg import project_gates
from pellucid.metrics import class_share, gate_density, gate_overlap, mis_from_activations
from pellucid.models import build_model
from pellucid.training import train_run
from pellucid.training.run import load_method


def test_projection_keeps_gates_in_unit_interval_with_column_max_one():
    g = torch.randn(6, 20) * 3
    g[:, 3] = -1.0  # a column with no positive entry
    project_gates(g)
    assert float(g.min()) >= 0 and float(g.max()) <= 1
    assert torch.allclose(g[:, [k for k in range(20) if k != 3]].max(0).values, torch.ones(19))
    ok = torch.rand(4, 5)
    expected = (ok / ok.max(0, keepdim=True).values).clamp(0, 1)
    project_gates(ok)
    assert torch.allclose(ok, expected)


@pytest.mark.parametrize("layer", ["layer3", "layer2", "layer3.0.conv2"])
def test_gated_logits_equal_explicit_second_pass(layer):
    model = build_model("resnet8", 1, 5).eval()
    csg = CSG(model, 5, layer=layer)
    assert csg._route == {"layer3": "shared", "layer2": "split", "layer3.0.conv2": "hook"}[layer]
    with torch.no_grad():
        csg.gates.copy_(torch.rand(5, csg.gates.shape[1]))
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 4, 2])
    std, gated = csg._paths(x, y)
    # explicit: run to the layer, multiply by G[y], run the rest
    from pellucid.hooks import edit_output

    g = csg.gates[y][:, :, None, None]
    with edit_output(model, layer, lambda h: h * g):
        explicit = model(x)
    assert torch.allclose(std, model(x), atol=1e-5)
    assert torch.allclose(gated, explicit, atol=1e-5)
    assert count_hooks(model) == 0


def test_gate_gradient_is_bitwise_reproducible():
    """Many images of few classes: G's gradient sums over the images of each class, and it
    must come out the same every time (it did not with ``gates[y]`` on CPU)."""
    from pellucid.data.base import Batch

    torch.manual_seed(0)
    csg = CSG(build_model("convnet", 1, 4, widths=[4, 4, 8, 256]), 4)
    batch = Batch(torch.rand(128, 1, 8, 8), torch.randint(0, 4, (128,)))
    grads = []
    for _ in range(20):
        csg.zero_grad()
        csg.step(batch).loss.backward()
        grads.append(csg.gates.grad.clone())
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def test_sparsity_hinge_is_literal_formula():
    csg = CSG(build_model("convnet", 3, 4), 4, density=0.2)
    with torch.no_grad():
        csg.gates.fill_(0.5)
    expected = max(0.0, 0.5 * csg.gates.numel() - 0.2 * csg.gates.numel())
    assert float(csg.sparsity().detach()) == pytest.approx(expected)
    with torch.no_grad():
        csg.gates.fill_(0.1)
    assert float(csg.sparsity().detach()) == 0.0


def test_alternating_schedule_phases():
    csg = CSG(build_model("convnet", 3, 4), 4, mode="alternating", warmup_epochs=2, pattern="SSG")
    phases = []
    for epoch in range(8):
        csg.on_epoch_start(epoch)
        phases.append(csg.phase)
    assert phases == ["std", "std", "std", "std", "gated", "std", "std", "gated"]


def test_step_loss_and_gradients_reach_gates():
    data = load_dataset("shapes32", "train", seed=0, n=16)
    model = build_model("convnet", 3, data.info.num_classes, widths=[8, 8, 8, 8])
    csg = build_method("csg", model, data.info.num_classes, density=0.1)
    batch = collate([data[i] for i in range(16)])
    res = csg.step(batch)
    res.loss.backward()
    assert set(res.terms) >= {"ce_std", "ce_csg", "gate_l1"}
    assert csg.gates.grad is not None and float(csg.gates.grad.abs().sum()) > 0
    assert torch.isfinite(res.loss)


def test_csg_run_predicts_without_gates_and_gates_round_trip(tiny_config, tmp_path):
    cfg = tiny_config.replace(method=MethodConfig(name="csg", options={"density": 0.1}))
    metrics = train_run(cfg, tmp_path / "csg", progress=False)
    assert "gate_density" in metrics and "mis" in metrics
    method, _ = load_method(tmp_path / "csg")
    saved = method.gates.detach().clone()
    assert float(saved.max(0).values.min()) == pytest.approx(1.0)
    again, _ = load_method(tmp_path / "csg")
    assert torch.equal(again.gates, saved)  # G survives save/load
    model, _ = pellucid.load_run(tmp_path / "csg")
    x = torch.rand(3, 3, 32, 32)
    before = model(x)
    with torch.no_grad():
        method.gates.uniform_()  # changing G must not change predictions
    assert torch.allclose(method.inference_model()(x), before, atol=1e-6)
    assert count_hooks(model) == 0


def test_mis_ranks_a_class_tied_filter_above_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 800)
    tied = (y == 2).astype(float) + 0.05 * rng.normal(size=800)
    noise = rng.normal(size=800)
    acts = np.stack([tied, noise], 1)
    score, m = mis_from_activations(acts, y, 4)
    assert m.shape == (4, 2)
    assert m[2, 0] > 0.4 and m[:, 1].max() < 0.05  # ~H(1[y=2]) = 0.56 nats vs ~0
    assert m[:, 0].argmax() == 2
    share, per = class_share(np.abs(acts), y, 4)
    assert per[0] == pytest.approx(1 / (1 + 3 * 0.05 * np.sqrt(2 / np.pi)), abs=0.02)
    assert per[1] < 0.4  # |noise| is the same on every class: share ~ 1/4


def test_gate_density_and_overlap():
    g = torch.eye(3).repeat(1, 2)  # each filter on one class, disjoint rows
    assert gate_density(g) == pytest.approx(1 / 3)
    assert gate_overlap(g) == pytest.approx(0.0)
    assert gate_overlap(torch.ones(3, 4)) == pytest.approx(1.0)
    assert gate_overlap(torch.ones(3, 4), reduction="sum") == pytest.approx(3.0)


def test_bad_options_are_clear_errors():
    model = build_model("convnet", 3, 4)
    with pytest.raises(PellucidError, match="no layer 'layer9'"):
        CSG(model, 4, layer="layer9")
    with pytest.raises(PellucidError, match="density"):
        CSG(model, 4, density=0)
    with pytest.raises(PellucidError, match="unknown mode"):
        CSG(model, 4, mode="both")
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    with pytest.raises(PellucidError, match=r"layer '1' \(ReLU\) has no Conv2d/BatchNorm2d"):
        CSG(plain, 4, layer="1")  # named by its address, not only its type


def test_gate_optimizer_is_separate_and_checkpointable(tmp_path):
    from pellucid.config import TrainConfig
    from pellucid.io import load_state, save_state
    from pellucid.training.setup import build_optimizer

    data = load_dataset("shapes32", "train", n=8)
    c = data.info.num_classes
    csg = CSG(build_model("convnet", 3, c, widths=[4, 4, 4, 4]), c, gate_lr=0.05)
    opt = build_optimizer(csg, TrainConfig(optimizer="sgd", lr=0.1))
    assert type(opt.main).__name__ == "SGD" and [type(o).__name__ for o in opt.extras] == ["Adam"]
    assert opt.extras[0].param_groups[0]["params"][0] is csg.gates
    assert opt.extras[0].param_groups[0]["lr"] == 0.05
    csg.step(collate([data[i] for i in range(8)])).loss.backward()
    opt.step()
    save_state(tmp_path / "s.pt", {"optimizer": opt.state_dict()})
    fresh = build_optimizer(csg, TrainConfig(optimizer="sgd", lr=0.1))
    fresh.load_state_dict(load_state(tmp_path / "s.pt")["optimizer"])
    assert torch.equal(
        fresh.extras[0].state_dict()["state"][0]["exp_avg"],
        opt.extras[0].state_dict()["state"][0]["exp_avg"],
    )


def test_csg_figures_are_written(tiny_config, tmp_path):
    from PIL import Image

    from pellucid.report.figures_csg import run_figures

    train_run(tiny_config, tmp_path / "std", progress=False)
    cfg = tiny_config.replace(method=MethodConfig(name="csg"))
    train_run(cfg, tmp_path / "csg", progress=False)
    paths = run_figures([tmp_path / "std", tmp_path / "csg"], tmp_path / "fig", n_images=2)
    names = sorted(p.name for p in paths)
    assert names == sorted(
        ["csg_gates.png", "csg_class0_filters.png", "std_class0_filters.png", "mi_matrices.png"]
    )
    for p in paths:
        im = Image.open(p)
        assert im.size[0] > 200 and len(np.unique(np.asarray(im.convert("L")))) > 10  # not blank


def test_fast_mi_estimator_equals_sklearn() -> None:
    import numpy as np

    from pellucid.metrics.mis import mi_matrix

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 300)
    a = np.abs(rng.normal(size=(300, 6))) + (y[:, None] == np.arange(6)[None] % 4)
    a[:, 1] = np.round(a[:, 1], 1)  # ties
    a[:, 2] = 0.0  # a dead filter
    a[:, 3] = np.maximum(a[:, 3] - 1.2, 0)  # mostly zeros, as after ReLU
    fast = mi_matrix(a, y, 4, estimator="fast")
    ref = mi_matrix(a, y, 4, estimator="sklearn")
    assert np.allclose(fast, ref, atol=1e-10)
    assert fast.max() > 0.1  # the informative filters are found


@pytest.mark.parametrize(
    ("labels", "num_classes", "message"),
    [
        (3, None, r"N labels, got \(6, 2\), \(\)"),
        ([0, 1, 2, 0, 1.5, 2], None, "non-integer values"),
        ([0, 1, 2, 0, -1, 2], None, r"\[0, inf\), got values from -1 to 2"),
        ([0, 1, 2, 0, 1, 2], 2, r"\[0, 2\), got values from 0 to 2"),
        ([0, 1, 2, 0, 1, 2], 0, "num_classes must be a positive integer"),
        (["a"] * 6, None, "integer class indices, got dtype"),
    ],
)
def test_mi_matrix_names_bad_labels(labels, num_classes, message) -> None:
    import numpy as np

    from pellucid.errors import DataError
    from pellucid.metrics.mis import mi_matrix

    with pytest.raises(DataError, match=message):
        mi_matrix(np.random.default_rng(0).random((6, 2)), np.asarray(labels), num_classes)
    assert mi_matrix(np.random.default_rng(0).random((6, 2)), [0, 1, 2, 0, 1, 2]).shape == (3, 2)


def test_method_state_of_another_shape_of_method_names_missing_and_unknown_tensors():
    from pellucid.errors import DataError

    method = build_method("csg", build_model("convnet", 1, 10, widths=[4, 4, 8, 8]), 10)
    own = method.method_state()
    before = {k: v.clone() for k, v in own.items()}
    with pytest.raises(DataError, match=r"lacks gates and has unknown stray"):
        method.load_method_state({"stray": torch.zeros(1)})
    with pytest.raises(DataError, match=r"has unknown stray$"):
        method.load_method_state({**own, "stray": torch.zeros(1)})
    assert all(torch.equal(before[k], v) for k, v in method.method_state().items())
    method.load_method_state({k: v + 0.5 for k, v in before.items()})  # a right one loads
    assert all(torch.equal(before[k] + 0.5, v) for k, v in method.method_state().items())
