"""The checks between a run and its data, on small image folders (``root/<class>/*.png``):
``pellucid import`` of a plain torchvision state dict, ``evaluate`` / ``explain`` refusing a
dataset whose classes are not the run's, a corrupt test image failing before training, and
the messages about method weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

from pellucid.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig
from pellucid.errors import DataError, PellucidError
from pellucid.training import evaluate_run, load_run, run_from_weights, train_run

COLOURS = {"a": (230, 40, 40), "b": (40, 230, 40), "c": (40, 40, 230)}
WIDTHS = [4, 4, 8, 8]


def _folder(root: Path, per_class: int = 10, side: int = 16) -> Path:
    """A seeded image folder of three classes told apart by colour: ``root/<class>/NNN.png``."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            noise = rng.integers(-20, 21, size=(side, side, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def _config(root: Path, model: str = "convnet", method: str = "standard") -> RunConfig:
    options = {"widths": WIDTHS} if model == "convnet" else {}
    return RunConfig(
        data=DataConfig(name="folder", options={"root": str(root)}, batch_size=7, augment="none"),
        model=ModelConfig(name=model, options=options),
        method=MethodConfig(name=method),
        train=TrainConfig(epochs=3, lr=0.05, schedule="cosine", seed=0, device="cpu"),
    )


def _save_file(state: dict[str, torch.Tensor], path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    return _folder(tmp_path / "imgs")


@pytest.fixture
def folder_run(folder, tmp_path) -> tuple[Path, Path]:
    """A finished convnet run on ``folder`` (the folder, the run)."""
    out = tmp_path / "run"
    train_run(_config(folder), out, progress=False)
    return folder, out


# 1. pellucid import takes the layouts --weights takes -----------------------------------


def _tv_state(num_classes: int = 3) -> dict[str, torch.Tensor]:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=num_classes).state_dict()


@pytest.mark.parametrize("layout", ["torchvision", "pellucid", "pellucid-without-norm"])
def test_import_takes_every_layout_that_train_weights_takes(folder, tmp_path, layout):
    from pellucid.models import build_model

    plain = _tv_state()
    state = dict(plain)
    if layout != "torchvision":
        state = {f"net.{k}": v for k, v in plain.items()}
    if layout == "pellucid":
        norm = {"mean": 0.5, "std": 0.25}
        state |= {f"norm.{k}": torch.full((1, 3, 1, 1), v) for k, v in norm.items()}
    path = _save_file(state, tmp_path / "tv.safetensors")
    # what train --weights builds from the file ...
    built = build_model("tv:resnet18", 3, 3, weights=str(path)).eval()
    # ... and what import writes from it
    out = tmp_path / "imported"
    metrics = run_from_weights(_config(folder, model="tv:resnet18"), path, out)
    assert metrics["train_seconds"] is None and 0 <= metrics["test_accuracy"] <= 1
    model, _ = load_run(out)
    written = load_file(out / "model.safetensors")
    for key, value in plain.items():
        assert torch.equal(written[f"net.{key}"], value), key
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), built(x), atol=1e-6)


def test_pellucid_import_of_a_torchvision_state_dict_from_the_command_line(
    folder, tmp_path, capsys
):
    from pellucid.cli.main import main

    path = _save_file(_tv_state(), tmp_path / "tv.safetensors")
    out = tmp_path / "imported"
    argv = ["import", str(path), "--model", "tv:resnet18", "--dataset", "folder"]
    argv += ["--data-option", f"root={folder}", "--device", "cpu", "--out", str(out), "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["model"] == "tv:resnet18"
    assert (out / "metrics.json").is_file()


def test_import_still_refuses_torchvision_weights_that_do_not_fit(folder, tmp_path):
    cfg = _config(folder, model="tv:resnet18")
    out = tmp_path / "imported"
    four = _save_file(_tv_state(num_classes=4), tmp_path / "four.safetensors")
    with pytest.raises(PellucidError, match="do not fit the config's model"):
        run_from_weights(cfg, four, out)
    half = {k: v for k, v in _tv_state().items() if not k.startswith("fc.")}
    with pytest.raises(PellucidError, match=r'(?s)do not fit the config.s model.*"fc.weight"'):
        run_from_weights(cfg, _save_file(half, tmp_path / "half.safetensors"), out)
    mixed = {f"net.{k}": v for k, v in _tv_state().items()} | {"conv1.weight": torch.zeros(1)}
    with pytest.raises(PellucidError, match="do not fit the config's model"):
        run_from_weights(cfg, _save_file(mixed, tmp_path / "mixed.safetensors"), out)
    nan = _tv_state()
    nan["fc.weight"] = torch.full_like(nan["fc.weight"], float("nan"))
    with pytest.raises(PellucidError, match="NaN or infinite values in fc.weight"):
        run_from_weights(cfg, _save_file(nan, tmp_path / "nan.safetensors"), out)
    torch.save(_tv_state(), tmp_path / "tv.pt")
    with pytest.raises(PellucidError, match="not a valid safetensors file"):
        run_from_weights(cfg, tmp_path / "tv.pt", out)
    assert not out.exists()


# 2. evaluate refuses data whose classes are not the run's -------------------------------


def test_evaluate_refuses_a_class_added_before_the_others(folder_run, capsys):
    from pellucid.cli.main import main

    root, run = folder_run
    before = (run / "metrics.json").read_text()
    shutil.copytree(root / "a", root / "_added")  # sorts first: every label moves by one
    with pytest.raises(DataError, match="4 classes but run .* was trained on 3"):
        evaluate_run(run, "cpu")
    assert main(["evaluate", str(run)]) == 1
    err = capsys.readouterr().err
    assert "4 classes but run" in err and "internal error" not in err
    assert len(err.strip().splitlines()) == 1
    assert (run / "metrics.json").read_text() == before


def test_evaluate_refuses_classes_renamed_into_another_order(folder_run, capsys):
    from pellucid.cli.main import main

    root, run = folder_run
    before = json.loads((run / "metrics.json").read_text())
    (root / "a").rename(root / "z")  # classes b, c, z: the labels of all three change
    with pytest.raises(DataError, match="class 0 is 'b' here but 'a' in the run"):
        evaluate_run(run, "cpu")
    assert main(["evaluate", str(run)]) == 1
    assert "class 0 is 'b' here but 'a'" in capsys.readouterr().err
    assert json.loads((run / "metrics.json").read_text()) == before
    # the same data under its old names evaluates to what training measured
    (root / "z").rename(root / "a")
    again = evaluate_run(run, "cpu")
    assert again["test_accuracy"] == before["test_accuracy"]


def test_explain_refuses_renamed_classes_through_the_same_check(folder_run):
    from pellucid.explain.evaluate import load_images

    root, run = folder_run
    (root / "b").rename(root / "d")  # a, c, d
    with pytest.raises(DataError, match="class 1 is 'c' here but 'b' in the run"):
        load_images(run, 2)


def test_localise_and_detect_adversarial_refuse_renamed_classes(folder_run):
    from pellucid.apps.adversarial import detect_adversarial_run
    from pellucid.apps.filter_localisation import filter_localise_run
    from pellucid.apps.localisation import localise_run

    root, run = folder_run
    (root / "b").rename(root / "d")  # a, c, d
    for call in (
        lambda: localise_run(str(run), "centre"),
        lambda: filter_localise_run(str(run)),
        lambda: detect_adversarial_run(str(run), ["fgsm"]),
    ):
        with pytest.raises(DataError, match="class 1 is 'c' here but 'b' in the run"):
            call()


def test_a_run_that_recorded_no_class_names_checks_the_count_only(folder_run):
    root, run = folder_run
    raw = yaml.safe_load((run / "config.yaml").read_text())
    del raw["info"]["class_names"]
    (run / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / "a").rename(root / "z")
    assert "test_accuracy" in evaluate_run(run, "cpu")  # names unknown: not refused
    shutil.copytree(root / "b", root / "y")
    with pytest.raises(DataError, match="4 classes but run"):
        evaluate_run(run, "cpu")


# 3. a corrupt test image fails before training -------------------------------------------


def test_a_corrupt_test_image_fails_before_any_epoch(folder, tmp_path, monkeypatch):
    import pellucid.training.run as run_module
    from pellucid.data.folder import FRACTIONS
    from pellucid.data.splits import stratified_split

    files = sorted(folder.rglob("*.png"))  # the folder loader's order: class, then name
    labels = np.array([sorted(COLOURS).index(f.parent.name) for f in files])
    bad = files[stratified_split(labels, FRACTIONS, 0)["test"][0]]
    bad.write_bytes(b"not a png")
    epochs = []
    monkeypatch.setattr(run_module, "fit", lambda *a, **k: epochs.append(1))
    out = tmp_path / "run"
    with pytest.raises(DataError, match=f"cannot read image {bad}"):
        train_run(_config(folder), out, progress=False)
    assert epochs == [] and not out.exists()


# 4. method weights: the messages name the flag and what is wrong -----------------------


def test_method_weights_messages_name_the_flag_and_the_method(folder, tmp_path, capsys):
    from pellucid.cli.main import main
    from pellucid.models import build_model

    model = build_model("convnet", 3, 3, widths=WIDTHS)
    weights = _save_file(model.state_dict(), tmp_path / "model.safetensors")
    argv = ["import", str(weights), "--model", "convnet", "--model-option", "widths=[4,4,8,8]"]
    argv += ["--dataset", "folder", "--data-option", f"root={folder}", "--device", "cpu"]
    out = tmp_path / "imported"
    assert main([*argv, "--method", "csg", "--out", str(out)]) == 1
    assert "--method-weights" in capsys.readouterr().err
    with pytest.raises(PellucidError, match=r"pass method_weights \(--method-weights"):
        run_from_weights(_config(folder, method="csg"), weights, out)
    gates = _save_file({"gates": torch.ones(3, 8)}, tmp_path / "method.safetensors")
    assert main([*argv, "--method-weights", str(gates), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "standard method has no method state to load" in err and "unknown" not in err
    assert not out.exists()


def test_check_run_classes_names_the_first_class_that_differs():
    from pellucid.data.base import DatasetInfo
    from pellucid.training.run import check_run_classes

    def info(*names: str) -> DatasetInfo:
        return DatasetInfo("folder", len(names), 3, (8, 8), names, (0.5,) * 3, (0.25,) * 3)

    run = {"num_classes": 3, "class_names": ["a", "b", "c"]}
    check_run_classes(run, info("a", "b", "c"), "here", "run 'r'")
    with pytest.raises(DataError, match="^here has 2 classes but run 'r' was trained on 3$"):
        check_run_classes(run, info("a", "b"), "here", "run 'r'")
    with pytest.raises(DataError, match="class 2 is 'd' here but 'c' in the run"):
        check_run_classes(run, info("a", "b", "d"), "here", "run 'r'")
    check_run_classes(run, info("x", "y", "z"), "here", "run 'r'", names=False)
    check_run_classes({"num_classes": 3}, info("x", "y", "z"), "here", "run 'r'")
    with pytest.raises(DataError, match="but this run is trained on 3"):
        check_run_classes(run, info("a"), "here", "this run", verb="is trained on")
