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
