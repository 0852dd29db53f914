"""Commands that would damage or misread what is already there refuse, before writing:
the demo's output directory, ``explain --out RUN``, gate groups at another layer;
detector and comparison corner cases."""

from __future__ import annotations

import pytest
import torch

from conftest import train_tiny_run
from pellucid.cli.main import main
from pellucid.errors import ConfigError, PellucidError


@pytest.fixture(scope="module")
def csg_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("runs") / "csg", method="csg", epochs=1)


def test_the_demo_refuses_directories_that_are_not_its_runs(tmp_path):
    from pellucid.demo import run_demo

    out = tmp_path / "demo"
    (out / "standard").mkdir(parents=True)
    (out / "standard" / "notes.txt").write_text("precious")
    for fresh in (False, True):
        with pytest.raises(PellucidError, match="holds files that are not a pellucid run"):
            run_demo(out, fresh=fresh, epochs=1, quiet=True, report=False)
    assert (out / "standard" / "notes.txt").read_text() == "precious"
    (out / "standard" / "notes.txt").unlink()
    train_tiny_run(out / "csg", method="csg")  # a run of the user's, not the demo's recipe
    before = (out / "csg" / "metrics.json").read_text()
    with pytest.raises(PellucidError, match="csg holds a run of another config"):
        run_demo(out, fresh=True, epochs=1, quiet=True, report=False)
    assert (out / "csg" / "metrics.json").read_text() == before
    for key, value in (("n_explain", 0), ("n_sanity", -1), ("n_adversarial", -5)):
        with pytest.raises(ConfigError, match=f"{key} .--{key.replace('_', '-')}. must be"):
            run_demo(tmp_path / "other", epochs=1, quiet=True, **{key: value})
    assert not (tmp_path / "other").exists()  # checked before anything is trained


def test_explain_refuses_to_write_into_a_run_directory(csg_run, capsys):
    before = (csg_run / "metrics.json").read_text()
    argv = ["explain", str(csg_run), "--explainer", "saliency", "--n", "2"]
    assert main([*argv, "--out", str(csg_run)]) == 1
    assert "is a run directory: explain writes metrics.json" in capsys.readouterr().err
    assert (csg_run / "metrics.json").read_text() == before
    assert main([*argv, "--out", str(csg_run / "explain"), "--quiet"]) == 0


def test_gate_groups_only_at_the_gated_layer(csg_run):
    from pellucid.apps.adversarial import detect_adversarial_run

    with pytest.raises(ConfigError, match=r"gate-groups' \(a default feature of a CSG run\)"):
        detect_adversarial_run(str(csg_run), ["fgsm"], layers=["layer2"], n=8)
    with pytest.raises(ConfigError, match="groups the filters of the gated layer"):
        detect_adversarial_run(str(csg_run), ["fgsm"], ["gate-groups"], ["layer2"], n=8)


def test_more_folds_than_pairs_still_scores_the_unsupervised_detectors():
    from pellucid.apps.adversarial_report import Unsupervised, detector_aucs
    from pellucid.apps.detectors import class_prototypes, fit_mahalanobis

    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(12, 4, generator=gen)
    attacked = clean + 3.0
    labels = torch.arange(12) % 2
    train = torch.randn(60, 4, generator=gen)
    fitted = Unsupervised(
        class_prototypes(train, torch.arange(60) % 2, 2),
        fit_mahalanobis(train, torch.arange(60) % 2, 2),
        train,
        5,
    )
    scores = detector_aucs(clean, attacked, labels, labels, 12, 20, 0, fitted)
    assert scores["logistic"] is None and scores["forest"] is None  # 12 pairs, 20 folds
    assert scores["mahalanobis"] is not None and scores["mahalanobis"] > 0.9


def test_against_the_only_explainer_is_refused(csg_run, capsys):
    argv = ["compare-explainers", str(csg_run), "--explainers", "saliency", "--n", "2"]
    assert main([*argv, "--against", "saliency"]) == 1
    assert "needs other explainers to compare with it" in capsys.readouterr().err


def test_numbers_like_1e_3_are_numbers_in_options_and_config_files(tmp_path):
    from pellucid.cli.arguments import parse_options
    from pellucid.config import load_config, save_config

    assert parse_options(["lambda_sparse=1e-3", "x=2E5", "name=e3"], "--method-option") == {
        "lambda_sparse": 0.001,
        "x": 200000.0,
        "name": "e3",
    }
    path = tmp_path / "c.yaml"
    (tmp_path / "c.yaml").write_text("train:\n  lr: 1e-3\n  epochs: 1\n")
    assert load_config(path).train.lr == 0.001
    save_config(load_config(path), tmp_path / "d.yaml")
    assert load_config(tmp_path / "d.yaml").train.lr == 0.001


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("lambda_csg=-1", "lambda_csg must be a finite number >= 0"),
        ("lambda_sparse=.inf", "lambda_sparse must be a finite number >= 0"),
        ("gate_lr=-0.5", "gate_lr must be a finite number > 0"),
        ("warmup_epochs=-3", "warmup_epochs must be an integer >= 0"),
    ],
)
def test_csg_options_out_of_range_are_named(option, message, tmp_path, capsys):
    from conftest import TINY_TRAIN_ARGS

    argv = [*TINY_TRAIN_ARGS, "--method", "csg", "--method-option", option]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_finished_run_is_not_resumed_and_a_run_without_its_method_state_not_loaded(
    csg_run, tmp_path, capsys
):
    import shutil

    from conftest import TINY_TRAIN_ARGS

    before = (csg_run / "metrics.json").read_text()
    argv = [*TINY_TRAIN_ARGS, "--method", "csg", "--epochs", "1", "--quiet", "--resume"]
    assert main([*argv, "--out", str(csg_run)]) == 1
    assert "holds a finished run; nothing to continue" in capsys.readouterr().err
    assert (csg_run / "metrics.json").read_text() == before
    copy = tmp_path / "copy"
    shutil.copytree(csg_run, copy)
    (copy / "method.safetensors").unlink()
    assert main(["evaluate", str(copy)]) == 1
    assert "has no method.safetensors, which its csg method keeps" in capsys.readouterr().err
    assert (copy / "metrics.json").read_text() == before
    assert main([*TINY_TRAIN_ARGS, "--seed", "-1", "--out", str(tmp_path / "s")]) == 1
    assert "seed must be an integer in [0, 2**63)" in capsys.readouterr().err


def test_nproc_checks_the_method_and_init_once_before_starting_processes(tmp_path, capsys):
    from conftest import TINY_TRAIN_ARGS

    argv = [*TINY_TRAIN_ARGS, "--nproc", "2", "--batch-size", "32"]
    for extra, message in (
        (["--method", "csg", "--method-option", "layer=nope"], "has no layer 'nope'"),
        (["--init", str(tmp_path / "nowhere")], "does not exist"),
    ):
        assert main([*argv, *extra, "--out", str(tmp_path / "r")]) == 1
        err = capsys.readouterr().err
        assert err.count(message) == 1 and "torchrun" not in err, err
        assert not (tmp_path / "r").exists()
