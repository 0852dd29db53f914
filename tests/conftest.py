"""Shared fixtures: tiny, seeded, offline."""

from __future__ import annotations

import pytest
import torch

from pellucid.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_config() -> RunConfig:
    """A run that trains a tiny conv net on a slice of shapes32 in a second or two."""
    return RunConfig(
        data=DataConfig(name="shapes32", options={"n": 128}, batch_size=32, augment="shift"),
        model=ModelConfig(name="convnet", options={"widths": [8, 8, 16, 16]}),
        method=MethodConfig(name="standard"),
        train=TrainConfig(epochs=2, lr=0.05, schedule="cosine", seed=0),
    )
