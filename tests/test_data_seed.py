"""The data seed apart from the training seed (``DataConfig.seed``): validation, the default
(the training seed), YAML, and runs that share their data while their training differs."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_TRAIN_ARGS
from pellucid.cli.main import main
from pellucid.config import DataConfig, RunConfig, TrainConfig, load_config, save_config
from pellucid.data import load_dataset
from pellucid.errors import ConfigError
from pellucid.explain.evaluate import load_images
from pellucid.training import evaluate, train_run


def test_data_seed_defaults_to_the_training_seed_and_is_validated(tmp_path):
    assert RunConfig(train=TrainConfig(seed=3)).data_seed == 3
    assert RunConfig(data=DataConfig(seed=5), train=TrainConfig(seed=3)).data_seed == 5
    assert RunConfig(data=DataConfig(seed=0), train=TrainConfig(seed=3)).data_seed == 0
    for bad in (-1, True, "1", 1.5):
        with pytest.raises(ConfigError, match="data seed must be an integer >= 0"):
            DataConfig(seed=bad)
    cfg = RunConfig(data=DataConfig(name="shapes32", seed=5))
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    # a config written before the option existed reads as "the training seed"
    (tmp_path / "old.yaml").write_text("data:\n  name: shapes32\ntrain:\n  seed: 2\n")
    old = load_config(tmp_path / "old.yaml")
    assert old.data.seed is None and old.data_seed == 2


def test_runs_with_one_data_seed_share_their_data_and_differ_in_training(tiny_config, tmp_path):
    data = dataclasses.replace(tiny_config.data, seed=7)
    weights, accuracies = [], []
    for seed in (0, 1):
        cfg = tiny_config.replace(
            data=data, train=dataclasses.replace(tiny_config.train, seed=seed)
        )
        out = tmp_path / f"run{seed}"
        metrics = train_run(cfg, out, progress=False)
        assert metrics["seed"] == seed and metrics["data_seed"] == 7
        weights.append(load_file(out / "model.safetensors"))
        model, batch, _ = load_images(out, 4)
        accuracies.append(metrics["test_accuracy"])
        # the test split the run was scored on, and explained on, is the data seed's
        test7 = load_dataset("shapes32", "test", seed=7, n=128)
        assert evaluate(model, test7)["accuracy"] == pytest.approx(
            metrics["test_accuracy"], abs=1e-4
        )
        assert torch.equal(batch.image[0], test7[0]["image"])
    assert not torch.equal(
        load_dataset("shapes32", "test", seed=0, n=128)[0]["image"], test7[0]["image"]
    )
    # the training seed still matters: same data, other weights
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_cli_data_seed_reaches_the_run(tmp_path):
    out = tmp_path / "run"
    argv = [*TINY_TRAIN_ARGS, "--epochs", "1", "--seed", "1", "--data-seed", "4", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    cfg = load_config(out / "config.yaml")
    assert cfg.train.seed == 1 and cfg.data.seed == 4 and cfg.data_seed == 4
    assert json.loads((out / "metrics.json").read_text())["data_seed"] == 4
