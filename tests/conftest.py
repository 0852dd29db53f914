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


TINY_TRAIN_ARGS = (
    "train",
    "--dataset",
    "shapes32",
    "--data-option",
    "n=96",
    "--model",
    "convnet",
    "--model-option",
    "widths=[8,8,16,16]",
)


def train_tiny_run(out, method: str = "standard", epochs: int = 1):
    """Train a tiny shapes32 run through the CLI (seconds); returns its directory."""
    from pellucid.cli.main import main

    argv = [*TINY_TRAIN_ARGS, "--method", method, "--epochs", str(epochs), "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


@pytest.fixture
def tiny_model() -> torch.nn.Module:
    """A seeded small convnet on 1-channel images with 3 classes (the explainer tests)."""
    from pellucid.models import build_model

    torch.manual_seed(0)
    return build_model("convnet", in_channels=1, num_classes=3, widths=[8, 8, 16, 16])
