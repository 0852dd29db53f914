"""``run_from_weights``: a run directory from weights trained elsewhere (what the explainer
benchmark does with the models it ships), and its errors on weights that do not fit."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import TINY_TRAIN_ARGS, train_tiny_run
from pellucid.config import MethodConfig
from pellucid.errors import PellucidError
from pellucid.explain.evaluate import load_images
from pellucid.training import load_run, run_from_weights, train_run


@pytest.fixture
def trained(tiny_config, tmp_path):
    out = tmp_path / "trained"
    metrics = train_run(tiny_config, out, progress=False)
    return out, metrics


def test_a_run_from_weights_predicts_and_scores_like_the_run_they_came_from(
    trained, tiny_config, tmp_path
):
    source, metrics = trained
    out = tmp_path / "imported"
    got = run_from_weights(tiny_config, source / "model.safetensors", out)  # info filled here
    assert got["test_accuracy"] == metrics["test_accuracy"]
    assert got["train_seconds"] is None and got["weights"].endswith("model.safetensors")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "metrics.json",
        "model.safetensors",
    ]
    a, cfg_a = load_run(source)
    b, cfg_b = load_run(out)
    assert cfg_a == cfg_b  # the dataset info (normalisation statistics) came out the same
    _, batch, _ = load_images(out, 8)
    with torch.no_grad():
        assert torch.equal(a(batch.image), b(batch.image))


def test_weights_that_do_not_fit_write_nothing(trained, tiny_config, tmp_path):
    source, _ = trained
    wider = tiny_config.replace(
        model=dataclasses.replace(tiny_config.model, options={"widths": [8, 8, 16, 32]})
    )
    out = tmp_path / "bad"
    with pytest.raises(PellucidError, match="do not fit the config's model"):
        run_from_weights(wider, source / "model.safetensors", out)
    assert not out.exists()

    state = load_file(source / "model.safetensors")
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone().fill_(float("nan"))
    save_file(state, tmp_path / "nan.safetensors")
    with pytest.raises(PellucidError, match=f"NaN or infinite values in {key}"):
        run_from_weights(tiny_config, tmp_path / "nan.safetensors", out)

    (tmp_path / "corrupt.safetensors").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(PellucidError, match="not a valid safetensors file"):
        run_from_weights(tiny_config, tmp_path / "corrupt.safetensors", out)
    assert not out.exists()


def test_a_finished_run_is_never_overwritten(trained, tiny_config):
    source, _ = trained
    before = (source / "metrics.json").read_text()
    with pytest.raises(PellucidError, match="already holds a finished run"):
        run_from_weights(tiny_config, source / "model.safetensors", source)
    assert (source / "metrics.json").read_text() == before


def test_a_method_with_state_of_its_own_needs_it(trained, tiny_config, tmp_path):
    source, _ = trained
    csg = tiny_config.replace(method=MethodConfig(name="csg"))
    with pytest.raises(PellucidError, match="csg method has its own state"):
        run_from_weights(csg, source / "model.safetensors", tmp_path / "csg")
    assert not (tmp_path / "csg").exists()


def test_pellucid_import_writes_a_run_that_explain_reads(tmp_path, capsys):
    from pellucid.cli.main import main

    source = train_tiny_run(tmp_path / "source")  # a finished CLI run of TINY_TRAIN_ARGS
    out = tmp_path / "imported"
    argv = [*TINY_TRAIN_ARGS, "--out", str(out), "--json"]
    argv[0] = "import"
    assert main([argv[0], str(source / "model.safetensors"), *argv[1:]]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (
        got["test_accuracy"] == json.loads((source / "metrics.json").read_text())["test_accuracy"]
    )
    explained = tmp_path / "ex"
    assert (
        main(["explain", str(out), "--explainer", "gradcam", "--n", "2", "--out", str(explained)])
        == 0
    )
    assert (explained / "maps.safetensors").is_file()
    # the positional file is not a model of this config: one line, nothing written
    bad = tmp_path / "bad"
    argv_bad = ["import", str(source / "model.safetensors"), "--dataset", "shapes32"]
    argv_bad += ["--data-option", "n=96", "--model", "convnet", "--out", str(bad)]
    assert main(argv_bad) == 1
    assert "do not fit the config's model" in capsys.readouterr().err
    assert not bad.exists()


def _npz_like_run(run, path, channels: int, side: int) -> dict:
    """An npz dataset with the run's classes (10 blank images each) of the given shape, as
    ``load_images`` dataset options."""
    import numpy as np

    labels = np.repeat(np.arange(load_run(run)[1].info["num_classes"]), 10)
    np.savez(path, images=np.zeros((len(labels), channels, side, side), np.uint8), labels=labels)
    return {"path": str(path)}


def test_images_of_another_channel_count_than_the_run_are_named(trained, tmp_path):
    """A grey npz (or folder) for an RGB run was a convolution error deep inside torch."""
    from pellucid.errors import DataError

    source, _ = trained
    grey = _npz_like_run(source, tmp_path / "grey.npz", 1, 32)
    with pytest.raises(DataError, match="has 1-channel images but run .* on 3-channel ones"):
        load_images(source, 2, dataset="npz", dataset_options=grey)


def test_images_of_another_size_than_the_run_are_explained_with_a_warning(trained, tmp_path):
    source, _ = trained
    small = _npz_like_run(source, tmp_path / "small.npz", 3, 16)
    with pytest.warns(UserWarning, match=r"has \(16, 16\) images but run .* on \(32, 32\)"):
        _, batch, _ = load_images(source, 2, dataset="npz", dataset_options=small)
    assert batch.image.shape == (2, 3, 16, 16)
