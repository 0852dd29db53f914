"""pellucid.state: a model's modes, requires_grad flags and device, restored on exit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pellucid.state import model_device, model_state, restoring


def _model() -> nn.Sequential:
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten())
    m[1].eval()  # a mixed state: the outer module training, the norm in eval mode
    m[0].bias.requires_grad_(False)
    return m


def _snapshot(m: nn.Module) -> tuple[list[bool], list[bool]]:
    return [x.training for x in m.modules()], [p.requires_grad for p in m.parameters()]


def test_restoring_puts_back_every_mode_and_flag_also_on_error() -> None:
    m = _model()
    before = _snapshot(m)
    with pytest.raises(RuntimeError, match="boom"), restoring(m):
        m.eval()
        for p in m.parameters():
            p.requires_grad_(True)
        assert _snapshot(m) != before
        raise RuntimeError("boom")
    assert _snapshot(m) == before


def test_model_state_freezes_inside_and_restores_after() -> None:
    m = _model()
    before = _snapshot(m)
    with model_state(m):
        assert not any(x.training for x in m.modules())
        assert not any(p.requires_grad for p in m.parameters())
    assert _snapshot(m) == before
    with model_state(m, train=True):
        assert all(x.training for x in m.modules())
    assert _snapshot(m) == before


def test_model_device_of_parameters_buffers_and_fallback() -> None:
    assert model_device(_model()) == torch.device("cpu")
    buffers_only = nn.Module()
    buffers_only.register_buffer("mean", torch.zeros(3))
    assert model_device(buffers_only) == torch.device("cpu")
    assert model_device(nn.Flatten(), fallback="meta") == torch.device("meta")


def test_evaluation_helpers_give_every_module_its_own_mode_back(tmp_path) -> None:
    """A model training with a frozen BatchNorm comes back from evaluation with that norm
    still in eval mode (its running statistics must not start updating)."""
    from pellucid.data.base import DatasetInfo, PellucidDataset
    from pellucid.methods.decoupling import insert_controllers
    from pellucid.metrics.activations import pooled_activations
    from pellucid.metrics.parts_maps import collect_maps
    from pellucid.metrics.paths import calculation_paths
    from pellucid.models import build_model, layer_table
    from pellucid.report.figures_csg import plot_class_filters
    from pellucid.training import evaluate

    torch.manual_seed(0)
    model = build_model("convnet", in_channels=1, num_classes=2, widths=[4, 8])
    info = DatasetInfo("tiny", 2, 1, (12, 12), ("a", "b"), (0.5,), (0.5,))
    data = PellucidDataset(info, torch.rand(6, 1, 12, 12), torch.arange(6) % 2)
    norm = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    layer = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][-1]
    decoupled = build_model("convnet", in_channels=1, num_classes=2, widths=[4, 8])
    insert_controllers(decoupled)
    calls = {
        "evaluate": lambda m: evaluate(m, data),
        "pooled_activations": lambda m: pooled_activations(m, layer, data),
        "collect_maps": lambda m: collect_maps(m, layer, data),
        "layer_table": lambda m: layer_table(m, (1, 12, 12)),
        "plot_class_filters": lambda m: plot_class_filters(
            m, layer, data.images[:2], [0], tmp_path / "f.png"
        ),
        "calculation_paths": lambda m: calculation_paths(m, data),
    }
    for name, call in calls.items():
        net = decoupled if name == "calculation_paths" else model
        bn = (
            norm
            if net is model
            else next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
        )
        net.train()
        bn.eval()
        stats = bn.running_mean.clone()
        call(net)
        assert net.training and not bn.training, name
        net(data.images)  # a training step's forward: the frozen norm keeps its statistics
        assert torch.equal(bn.running_mean, stats), name
