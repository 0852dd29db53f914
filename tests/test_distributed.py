"""Multi-process training with torchrun (pellucid.training.distributed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from pellucid.data import Batch
from pellucid.errors import ConfigError
from pellucid.io import load_tensors
from pellucid.methods import build_method
from pellucid.models import build_model
from pellucid.training import distributed
from pellucid.training.augment import random_shift

HERE = Path(__file__).parent


def _torchrun(*args: str, nproc: int = 2, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", str(nproc), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _why(res: subprocess.CompletedProcess) -> str:
    """A failed launch's stderr: the workers' own messages come first, torchrun's last."""
    err = res.stderr
    return err if len(err) < 6000 else err[:4000] + "\n...\n" + err[-2000:]


def _worker_dirs(tmp_path: Path) -> tuple[Path, Path, str]:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    return one, two, str(HERE / "ddp_worker.py")


def _one_process(worker: str, out: Path, *args: str) -> None:
    """The worker as a plain process (no torchrun); it must succeed."""
    cmd = [sys.executable, worker, str(out), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]


WORKER = str(HERE / "ddp_worker.py")


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory) -> Path:
    """The worker's plain and ICNN trainings as one plain process (``full/``, ``icnn/``),
    shared by the tests that compare a torchrun training with them (launches cost seconds)."""
    out = tmp_path_factory.mktemp("one")
    _one_process(WORKER, out, "full,icnn")
    return out


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    """The same two trainings under torchrun with two processes, in one launch."""
    out = tmp_path_factory.mktemp("two")
    res = _torchrun(WORKER, str(out), "full,icnn")
    assert res.returncode == 0, _why(res)
    return out


@pytest.mark.parametrize("world", [2, 4])
def test_shards_of_each_batch_are_the_single_process_batch(world):
    n, batch = 70, 8  # 8 full batches, 6 images dropped
    single = DataLoader(
        range(n),
        batch_size=batch,
        shuffle=True,
        generator=torch.Generator().manual_seed(5),
        drop_last=True,
    )
    shards = []
    for rank in range(world):
        gen = torch.Generator().manual_seed(5)
        sampler = distributed.ShardSampler(n, batch, world, rank, gen)
        loader = DataLoader(range(n), batch_size=batch // world, sampler=sampler, generator=gen)
        assert len(loader) == len(single) == n // batch
        shards.append(list(loader))
    for i, expected in enumerate(single):
        got = torch.cat([shards[r][i] for r in range(world)])
        assert got.tolist() == expected.tolist()


def test_global_batch_must_split_evenly():
    with pytest.raises(ConfigError, match="divisible by their number; use e.g. 30"):
        distributed.ShardSampler(100, 31, 2, 0, torch.Generator())


def test_shifts_of_a_shard_are_those_of_the_whole_batch():
    images = torch.rand(6, 1, 8, 8)
    whole = random_shift(
        Batch(image=images, label=torch.zeros(6, dtype=torch.long)),
        2,
        torch.Generator().manual_seed(1),
        flip=True,
    )
    for rank in range(2):
        part = images[rank * 3 : rank * 3 + 3]
        shard = random_shift(
            Batch(image=part, label=torch.zeros(3, dtype=torch.long)),
            2,
            torch.Generator().manual_seed(1),
            flip=True,
            shard=(rank, 2),
        )
        assert torch.equal(shard.image, whole.image[rank * 3 : rank * 3 + 3])


def test_world_size_without_torchrun_names_the_launcher(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR is not set.*torchrun"):
        with distributed.session(torch.device("cpu")):
            pass
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two' is not an integer"):
        distributed.requested_world_size()


def test_single_process_session_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.session(torch.device("cpu")) as ctx:
        assert not ctx.enabled and ctx.is_main and ctx.device == torch.device("cpu")
    assert distributed.is_main_process()
    monkeypatch.setenv("RANK", "1")
    assert not distributed.is_main_process()


def test_csg_declares_unused_parameters_only_when_alternating():
    model = build_model("convnet", 1, 10, widths=[4, 4, 8, 8])
    assert not build_method("csg", model, 10).unused_parameters
    assert build_method("csg", model, 10, mode="alternating").unused_parameters
    assert not build_method("standard", model, 10).unused_parameters


def test_two_processes_train_the_same_weights_as_one(one_process_run, two_process_run):
    one, two = one_process_run / "full", two_process_run / "full"
    a = load_tensors(one / "weights.safetensors")
    b = load_tensors(two / "weights.safetensors")
    assert a.keys() == b.keys()
    moved = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert moved < 1e-5, f"weights differ by {moved}"
    ha = json.loads((one / "history.json").read_text())
    hb = json.loads((two / "history.json").read_text())
    for ea, eb in zip(ha, hb, strict=True):
        assert ea["train_accuracy"] == eb["train_accuracy"]
        assert ea["train_loss"] == pytest.approx(eb["train_loss"], rel=1e-5)


def test_icnn_statistics_are_the_global_batchs_under_torchrun(one_process_run, two_process_run):
    """ICNN's log Z_T, filter categories and mask gain are batch statistics: with them summed
    over the processes (and the gradient through Z_T too), two processes train what one does."""
    one, two = one_process_run / "icnn", two_process_run / "icnn"
    a = load_tensors(one / "weights.safetensors")
    b = load_tensors(two / "weights.safetensors")
    assert {"filter_loss.log_z", "category", "class_mean", "icnn.mask.gain"} <= set(a)
    assert a.keys() == b.keys()
    assert torch.equal(a["category"], b["category"])
    for key in a:
        if a[key].is_floating_point():
            diff = float((a[key] - b[key]).abs().max())
            assert diff < 1e-4 * (1 + float(a[key].abs().max())), f"{key} differs by {diff}"


def test_train_nproc_launches_torchrun_and_rank_0_alone_writes_and_prints(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pellucid",
            "train",
            "--nproc",
            "2",
            "--dataset",
            "mnist",
            "--data-option",
            "n=300",
            "--model",
            "convnet",
            "--model-option",
            "widths=[4,4,8,8]",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert res.returncode == 0, _why(res)
    metrics = json.loads(res.stdout)  # one JSON document: rank 1 printed nothing
    assert metrics["processes"] == 2
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["processes"] == 2 and saved["test_accuracy"] == metrics["test_accuracy"]
    assert (out / "checkpoint" / "state.pt").is_file()
    assert not list(out.rglob("*.tmp*"))

    import pellucid

    model, config = pellucid.load_run(out)
    assert config.data.batch_size == 16 and not model.training


def test_a_run_interrupted_under_torchrun_resumes_in_one_process(tmp_path, one_process_run):
    _, two, worker = _worker_dirs(tmp_path)
    one = one_process_run / "full"
    res = _torchrun(worker, str(two), "crash")
    assert res.returncode != 0  # stopped at the start of the second epoch
    from pellucid.io import load_state

    saved = load_state(two / "run" / "checkpoint" / "state.pt")
    assert saved["epoch"] == 1
    _one_process(worker, two, "resume")
    a = load_tensors(one / "weights.safetensors")
    b = load_tensors(two / "weights.safetensors")
    moved = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert moved < 1e-5, f"resumed weights differ by {moved}"
    # the first epoch was not trained again: its record (with its timing) is the checkpoint's
    history = json.loads((two / "history.json").read_text())
    assert len(history) == 2 and history[0] == saved["history"][0]


def test_train_nproc_checks_before_launching(capsys, tmp_path):
    from pellucid.cli.commands import _without_nproc
    from pellucid.cli.main import main

    out = tmp_path / "never"
    assert main(["train", "--batch-size", "15", "--nproc", "2", "--out", str(out)]) == 1
    assert "must be divisible by 2" in capsys.readouterr().err
    assert main(["train", "--nproc=0", "--out", str(out)]) == 1
    assert "--nproc must be >= 1" in capsys.readouterr().err
    assert not out.exists()
    argv = ["train", "--nproc", "2", "--epochs", "1", "--nproc=3", "--out", "x"]
    assert _without_nproc(argv) == ["train", "--epochs", "1", "--out", "x"]
