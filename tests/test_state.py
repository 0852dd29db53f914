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
