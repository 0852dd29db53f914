import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

import pellucid
from pellucid.config import RunConfig, load_config
from pellucid.data import Batch, load_dataset
from pellucid.errors import PellucidError
from pellucid.io import load_state
from pellucid.methods import build_method
from pellucid.models import build_model
from pellucid.training import evaluate, fit, train_run
from pellucid.training.augment import random_shift


def test_fit_reduces_loss_on_tiny_model(tiny_config):
    cfg = tiny_config.replace(train=tiny_config.train.__class__(epochs=4, lr=0.05, seed=0))
    data = load_dataset("shapes32", "train", seed=0, n=128)
    model = build_model("convnet", 3, data.info.num_classes, widths=[8, 8, 16, 16])
    method = build_method("standard", model, data.info.num_classes)
    history = fit(method, data, None, cfg.train, cfg.data, progress=False)
    losses = [e["train_loss"] for e in history.epochs]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert all(0 <= e["train_accuracy"] <= 1 for e in history.epochs)


def test_train_run_writes_run_directory_and_load_run_round_trips(tiny_config, tmp_path):
    out = tmp_path / "run"
    metrics = train_run(tiny_config, out, progress=False)
    for name in ("config.yaml", "model.safetensors", "metrics.json", "history.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("method", "model", "dataset", "seed", "epochs", "test_accuracy", "train_seconds"):
        assert key in saved
    assert saved == json.loads(json.dumps(metrics))
    model, config = pellucid.load_run(out)
    assert not model.training and config.model.name == "convnet"
    test = load_dataset("shapes32", "test", seed=0, n=128)
    assert evaluate(model, test)["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-4)
    assert config.info["num_classes"] == test.info.num_classes
    # the state file is readable with weights_only=True
    state = load_state(out / "checkpoint" / "state.pt")
    assert state["epoch"] == 2
    with pytest.raises(PellucidError, match="already holds a finished run"):
        train_run(tiny_config, out, progress=False)


def test_resume_continues_and_matches_uninterrupted_run(tiny_config, tmp_path):
    full = tmp_path / "full"
    train_run(
        tiny_config.replace(train=tiny_config.train.__class__(epochs=3, seed=0)),
        full,
        progress=False,
    )
    part = tmp_path / "part"
    cfg3 = tiny_config.replace(train=tiny_config.train.__class__(epochs=3, seed=0))
    # simulate an interruption after epoch 2: train 3 epochs but stop the loop after 2
    data = load_dataset("shapes32", "train", seed=0, n=128)

    class Stop(Exception):
        pass

    def stop_after_two(epoch, _record):
        if epoch == 1:
            raise Stop

    from pellucid.config import save_config
    from pellucid.training.run import _info_dict, build_from_config

    cfg3i = cfg3.replace(info=_info_dict(data))
    pellucid.training.seed_everything(0)
    method = build_from_config(cfg3i)
    part.mkdir()
    save_config(cfg3i, part / "config.yaml")
    with pytest.raises(Stop):
        fit(
            method,
            data,
            None,
            cfg3.train,
            cfg3.data,
            part,
            progress=False,
            on_epoch_end=stop_after_two,
        )
    assert load_state(part / "checkpoint" / "state.pt")["epoch"] == 2
    saved = {p: p.read_bytes() for p in part.rglob("*") if p.is_file()}
    # the interrupted run is not overwritten: not by a fresh training, not by a resume with
    # another config (which wrote its config.yaml first and so made the run unresumable)
    with pytest.raises(PellucidError, match="holds an unfinished run; continue it with --resume"):
        train_run(cfg3, part, progress=False)
    lr = cfg3.replace(train=dataclasses.replace(cfg3.train, lr=1e12))
    with pytest.raises(PellucidError, match="config differs"):
        train_run(lr, part, resume=True, progress=False)
    assert {p: p.read_bytes() for p in part.rglob("*") if p.is_file()} == saved
    with pytest.raises(PellucidError, match="holds no checkpoint to continue"):
        train_run(cfg3, tmp_path / "never", resume=True, progress=False)
    assert not (tmp_path / "never").exists()
    with pytest.raises(PellucidError, match="is unfinished .* pellucid train --resume"):
        pellucid.load_run(part)  # was "model.safetensors not found"
    train_run(cfg3, part, resume=True, progress=False)
    a, b = load_file(str(full / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k
    hist = json.loads((part / "history.json").read_text())
    assert [e["epoch"] for e in hist] == [1, 2, 3]


def test_config_yaml_round_trip_and_unknown_keys(tmp_path):
    cfg = RunConfig()
    from pellucid.config import save_config

    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("train:\n  epoch: 3\n")
    with pytest.raises(PellucidError, match="unknown key.*epoch"):
        load_config(tmp_path / "bad.yaml")


def test_random_shift_moves_masks_and_landmarks_with_the_image():
    img = torch.zeros(2, 1, 10, 10)
    img[:, :, 4, 6] = 1.0
    mask = img.clone()
    lm = torch.tensor([[[6.0, 4.0]], [[6.0, 4.0]]])
    batch = Batch(image=img, label=torch.zeros(2, dtype=torch.long), mask=mask, landmarks=lm)
    out = random_shift(batch, 2, torch.Generator().manual_seed(1), flip=True)
    for i in range(2):
        y, x = torch.nonzero(out.image[i, 0], as_tuple=True)
        assert torch.equal(out.image[i], out.mask[i])
        assert out.landmarks[i, 0].tolist() == [float(x), float(y)]


def test_nan_loss_is_reported():
    data = load_dataset("shapes32", "train", seed=0, n=64)
    model = build_model("convnet", 3, data.info.num_classes, widths=[4, 4, 4, 4])
    method = build_method("standard", model, data.info.num_classes)
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    from pellucid.config import DataConfig, TrainConfig

    with pytest.raises(PellucidError, match="loss is nan"):
        fit(method, data, None, TrainConfig(epochs=1), DataConfig(batch_size=32), progress=False)


def test_onecycle_on_a_very_short_run_does_not_crash(tiny_config) -> None:
    import dataclasses

    from pellucid.training.setup import OptimizerSet, build_scheduler

    param = torch.nn.Parameter(torch.zeros(1))
    opt = OptimizerSet(torch.optim.SGD([param], lr=0.1), [])
    cfg = dataclasses.replace(tiny_config.train, epochs=1, schedule="onecycle")
    sched = build_scheduler(opt, cfg, steps_per_epoch=3)
    for _ in range(3):
        opt.main.step()
        sched.step()
    assert opt.main.param_groups[0]["lr"] < 0.1


def test_a_training_that_fails_before_its_first_checkpoint_leaves_no_run(tiny_config, tmp_path):
    """A batch larger than the training set failed after config.yaml was written, and the
    directory then refused the corrected command as "an unfinished run"."""
    big = tiny_config.replace(data=dataclasses.replace(tiny_config.data, batch_size=4096))
    out = tmp_path / "run"
    with pytest.raises(PellucidError, match="fewer than one batch of 4096.*lower --batch-size"):
        train_run(big, out, progress=False)
    assert not out.exists()
    kept = tmp_path / "mine"  # a directory the user made is kept, with what it held
    kept.mkdir()
    (kept / "notes.txt").write_text("x")
    with pytest.raises(PellucidError, match="fewer than one batch"):
        train_run(big, kept, progress=False)
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]
    assert train_run(tiny_config, out, progress=False)["epochs"] == 2  # the corrected run


def test_atomic_writes_get_normal_permissions(tmp_path) -> None:
    import os

    from pellucid.io import write_json

    write_json(tmp_path / "a.json", {"x": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_json_files_are_standard_json_with_null_for_nan(tmp_path) -> None:
    """An undefined correlation (NaN) was written as Python's ``NaN`` token, which ``jq``
    and ``JSON.parse`` reject; NumPy and 0-dim torch numbers keep their values."""
    import json

    import numpy as np

    from pellucid.io import strict_json, write_json

    data = {"r": float("nan"), "m": [np.float32(0.5), np.int64(3), torch.tensor(2.0)]}
    write_json(tmp_path / "a.json", {**data, "inf": -float("inf"), "ok": True, "n": None})

    def refuse(token):
        raise ValueError(token)

    back = json.loads((tmp_path / "a.json").read_text(), parse_constant=refuse)
    assert back == {"r": None, "m": [0.5, 3, 2.0], "inf": None, "ok": True, "n": None}
    with pytest.raises(TypeError, match="cannot write PosixPath"):
        write_json(tmp_path / "b.json", {"p": tmp_path})
    assert not (tmp_path / "b.json").exists()
    assert strict_json({"p": tmp_path}, str) == {"p": str(tmp_path)}


def test_save_tensors_copies_a_tensor_saved_under_two_names(tmp_path) -> None:
    """``pellucid explain --target label`` saved the labels as ``labels`` and ``targets``
    (one tensor): safetensors refuses shared memory, so the second one is copied."""
    from pellucid.io import load_tensors, save_tensors

    labels = torch.tensor([3, 1, 2])
    x = torch.arange(8.0)
    save_tensors(tmp_path / "t.safetensors", {"labels": labels, "targets": labels, "a": x[:4]})
    back = load_tensors(tmp_path / "t.safetensors")
    assert torch.equal(back["labels"], labels) and torch.equal(back["targets"], labels)
    assert torch.equal(back["a"], x[:4]) and labels.tolist() == [3, 1, 2]


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("data:\n  batch_size: abc\n", "data.batch_size must be an integer, got 'abc'"),
        ("train:\n  tensorboard: maybe\n", "train.tensorboard must be true or false"),
        ("model:\n  options: [1]\n", "model.options must be a mapping of keys to values"),
        ("model: 3\n", "config section 'model' must be a mapping of keys, got 3"),
        ("data:\n  num_workers: -2\n", "data.num_workers must be >= 0, got -2"),
        ("train:\n  momentum: 1.5\n", r"momentum must lie in \[0, 1\), got 1.5"),
        ("train:\n  weight_decay: -1\n", "weight_decay must be a finite number >= 0"),
        ("train:\n  lr: .inf\n", "lr must be a finite number > 0, got inf"),
    ],
)
def test_config_values_of_the_wrong_kind_are_named(tmp_path, yaml_text, message):
    """A YAML config's values are checked against the config's field types and ranges
    (several were internal TypeErrors, and tensorboard: maybe was taken as true)."""
    from pellucid.errors import ConfigError

    (tmp_path / "c.yaml").write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.yaml")


def test_a_data_config_checks_itself_not_only_inside_a_run_config():
    """``fit`` takes a bare DataConfig: an unknown augmentation was trained as ``shift``."""
    from pellucid.config import DataConfig
    from pellucid.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown augment 'bogus'"):
        DataConfig(augment="bogus")
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0"):
        DataConfig(batch_size=0)


def test_weights_holding_nan_are_named_where_they_are_read(tiny_config, tmp_path):
    """NaN in a run's weights was reported as NaN activations by the MI matrix, NaN in
    initial weights as a NaN training loss blaming the learning rate."""
    from safetensors.torch import save_file

    from pellucid.config import load_config
    from pellucid.errors import ConfigError
    from pellucid.models.tv import load_state_file

    run = tmp_path / "run"
    train_run(tiny_config, run, progress=False)
    state = load_file(str(run / "model.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone().fill_(float("nan"))
    save_file(state, str(run / "model.safetensors"))
    with pytest.raises(
        PellucidError, match=f"model.safetensors holds NaN or infinite values in {key}"
    ):
        pellucid.load_run(run)
    save_file(state, str(tmp_path / "nan.safetensors"))
    with pytest.raises(PellucidError, match=f"nan.safetensors holds NaN .* in {key}"):
        load_state_file(tmp_path / "nan.safetensors")
    (tmp_path / "c.yaml").write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="is not a text"):
        load_config(tmp_path / "c.yaml")


def test_a_device_this_machine_lacks_is_named_with_its_index(monkeypatch):
    from pellucid.errors import ConfigError
    from pellucid.training.setup import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ConfigError, match="'meta' holds no data"):
        resolve_device("meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="'cuda:3' requested but CUDA is not available"):
        resolve_device("cuda:3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match=r"'cuda:3' requested but this machine has 2 CUDA "
                       r"devices \(cuda:0 to cuda:1\)"):  # fmt: skip
        resolve_device("cuda:3")


def test_a_resumed_decoupling_run_equals_the_uninterrupted_one(tiny_config, tmp_path, monkeypatch):
    """Decoupling's gate noise draws from the global generator: the checkpoint keeps its
    state, so the resumed run continues the same stream (was: another stream, other weights)."""
    import pellucid.training.loop as loop
    from pellucid.config import MethodConfig

    cfg = tiny_config.replace(method=MethodConfig(name="decoupling"))
    cfg = cfg.replace(train=dataclasses.replace(cfg.train, epochs=2))
    train_run(cfg, tmp_path / "full", progress=False)
    real, calls = loop._train_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C in the second epoch, after the first checkpoint
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tmp_path / "part", progress=False)
    monkeypatch.setattr(loop, "_train_epoch", real)
    torch.manual_seed(1234)  # another process would start from another state
    train_run(cfg, tmp_path / "part", resume=True, progress=False)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
