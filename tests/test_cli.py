import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pellucid.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["models", "resnet9"], "unknown model 'resnet9'"),
        (["train", "--dataset", "mnist", "--model", "nope", "--out", "X"], "unknown model 'nope'"),
        (["train", "--method-option", "oops", "--out", "X"], "expects KEY=VALUE"),
        (
            ["train", "--model-option", "depth=3", "--out", "X"],
            "model 'resnet8' has no option 'depth'",
        ),
        # values of the wrong kind were internal errors (TypeError / ValueError) before
        (
            ["train", "--model", "convnet", "--model-option", "widths=abc", "--out", "X"],
            "model 'convnet': option widths must be a list of integers, got 'abc'",
        ),
        (
            ["train", "--model", "convnet", "--model-option", "widths=[4,0]", "--out", "X"],
            "convnet: widths must be a non-empty list of positive integers",
        ),
        (
            ["train", "--method-option", "label_smoothing=abc", "--out", "X"],
            "method 'standard': option label_smoothing must be a number, got 'abc'",
        ),
        (
            ["train", "--method", "csg", "--method-option", "gated_only=maybe", "--out", "X"],
            "method 'csg': option gated_only must be true or false, got 'maybe'",
        ),
        (
            ["train", "--method-option", "label_smoothing=1", "--out", "X"],
            "label_smoothing must lie in [0, 1), got 1",
        ),
        (["train", "--weight-decay", "-1", "--out", "X"], "weight_decay must be a finite number"),
        (["train", "--lr", "inf", "--out", "X"], "lr must be a finite number > 0, got inf"),
    ],
)
def test_errors_are_one_line_without_traceback(capsys, tmp_path, argv, needle):
    argv = [a.replace("X", str(tmp_path / "r")) for a in argv]
    code, _out, err = run(capsys, *argv)
    assert code != 0
    assert needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_dataset_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "imagenet", "--out", "x"])
    assert exc.value.code != 0
    assert "invalid choice: 'imagenet'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["detect-adversarial", "r", "--attacks", "fgsm"], "--attacks -> --attack?"),
        (["explain", "r", "--out", "o", "--explainer-option", "k=1"], "-option -> --option?"),
        (["explain", "r", "--out", "o", "--bogus"], None),
    ],
)
def test_an_unknown_argument_is_reported_by_its_command_with_a_hint(capsys, argv, hint):
    """argparse printed the top-level usage ("pellucid [-h] [--debug] COMMAND ...") for a
    command's misspelt option, without saying which option was meant."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert f"pellucid {argv[0]}: error: unrecognized arguments: " in err
    assert f"usage: pellucid {argv[0]}" in err
    assert (hint in err) if hint else "did you mean" not in err


def test_corrupt_image_folder_error(capsys, tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "a" / "3.png").write_bytes(b"\x89PNG garbage")
    code, _, err = run(
        capsys,
        "show-data",
        "--dataset",
        "folder",
        "--data-option",
        f"root={tmp_path}",
        "--split",
        "train",
        "--out",
        str(tmp_path / "g.png"),
    )
    assert code == 1 and "cannot read image" in err and "3.png" in err


def test_unknown_layer_error(capsys, tmp_path):
    code, _, err = run(
        capsys,
        "train",
        "--dataset",
        "shapes32",
        "--data-option",
        "n=64",
        "--model",
        "convnet",
        "--method-option",
        "x=1",
        "--out",
        str(tmp_path / "r"),
        "--quiet",
    )
    assert code == 1 and "method 'standard' has no option 'x'" in err


def test_models_lists_registry_and_layers(capsys):
    code, out, _ = run(capsys, "models", "--json")
    names = {r["name"] for r in json.loads(out)}
    assert {"convnet", "resnet8", "resnet20", "vgg", "tv:NAME"} <= names
    code, out, _ = run(
        capsys, "models", "vgg", "--in-channels", "1", "--image-size", "28", "--json"
    )
    rows = {r["layer"]: r["output"] for r in json.loads(out)}
    assert rows["layer3"] == [256, 7, 7]


def test_train_evaluate_and_show_data(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = run(
        capsys,
        "train",
        "--dataset",
        "shapes32",
        "--data-option",
        "n=96",
        "--model",
        "convnet",
        "--model-option",
        "widths=[8,8,8,8]",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--out",
        str(out),
        "--quiet",
        "--json",
    )
    assert code == 0, err
    metrics = json.loads(stdout)
    assert metrics["method"] == "standard" and 0 <= metrics["test_accuracy"] <= 1
    code, stdout, _ = run(capsys, "evaluate", str(out), "--json")
    assert code == 0 and json.loads(stdout)["test_accuracy"] == metrics["test_accuracy"]
    png = tmp_path / "grid.png"
    code, _, _ = run(
        capsys,
        "show-data",
        "--dataset",
        "shapes32",
        "--data-option",
        "n=16",
        "--n",
        "8",
        "--out",
        str(png),
        "--quiet",
    )
    assert code == 0 and png.stat().st_size > 5000
    assert Image.open(png).size[0] > 400


def test_python_dash_m_entry_point():
    res = subprocess.run(
        [sys.executable, "-m", "pellucid", "--help"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and "show-data" in res.stdout


@pytest.fixture
def tiny_run(tmp_path):
    from conftest import train_tiny_run

    return train_tiny_run(tmp_path / "run")


def test_an_out_path_of_the_wrong_kind_is_one_line(capsys, tiny_run, tmp_path):
    """An --out that is a directory where a file is written (and the reverse) was reported
    as an internal error."""
    (tmp_path / "a_file").write_text("mine")
    cases = [
        (["report", str(tiny_run), "--no-figures", "--out", str(tmp_path)], str(tmp_path)),
        (["explain", str(tiny_run), "--explainer", "centre", "--n", "1", "--out",
          str(tmp_path / "a_file")], "a_file"),
    ]  # fmt: skip
    for argv, where in cases:
        code, _, err = run(capsys, *argv, "--quiet")
        assert code == 1 and "pellucid: error: " in err and where in err, err
        assert "internal error" not in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "a_file").read_text() == "mine"


def test_explain_writes_overlays_maps_and_metrics(capsys, tiny_run, tmp_path):
    from pellucid.io import load_tensors

    out = tmp_path / "exp"
    code, stdout, err = run(
        capsys, "explain", str(tiny_run), "--n", "3", "--option", "iterations=5", "--out", str(out)
    )
    assert code == 0, err
    assert len(list((out / "overlays").glob("*.png"))) == 3
    maps = load_tensors(out / "maps.safetensors")
    assert maps["maps"].shape == (3, 1, 32, 32) and maps["targets"].shape == (3,)
    record = json.loads((out / "metrics.json").read_text())
    assert record["explainer"] == "neuromask" and record["options"]["iterations"] == 5
    assert len(record["per_image"]["pointing_game"]) == 3  # shapes32 has object masks
    assert 0 <= record["summary"]["deletion_auc"] <= 1
    # the default target is the predicted class: its probability is the largest, >= 1/K
    assert record["predicted"] == maps["targets"].tolist()
    assert all(1 / 8 <= p <= 1 for p in record["target_probability"])
    assert len(record["kept_probability"]) == 3  # NeuroMask's kept image
    code, _, err = run(
        capsys,
        "explain",
        str(tiny_run),
        "--n",
        "3",
        "--target",
        "label",
        "--explainer",
        "gradcam",
        "--out",
        str(tmp_path / "exp2"),
    )
    assert code == 0, err
    record = json.loads((tmp_path / "exp2" / "metrics.json").read_text())
    assert "kept_probability" not in record and len(record["target_probability"]) == 3

    code, _, err = run(capsys, "explain", str(tiny_run), "--option", "iters=5", "--out", str(out))
    assert code == 1 and "no option 'iters'" in err and "Traceback" not in err
    assert len(list((out / "overlays").glob("*.png"))) == 3  # a failed explain keeps them
    (out / "overlays" / "notes.png").write_bytes(b"the user's own file")
    argv = ["explain", str(tiny_run), "--n", "1", "--explainer", "centre", "--quiet"]
    assert run(capsys, *argv, "--out", str(out))[0] == 0
    # a second explain into the same folder replaces the overlays it wrote, not the user's
    assert sorted(p.name for p in (out / "overlays").glob("*.png"))[-1] == "notes.png"
    assert len(list((out / "overlays").glob("*.png"))) == 2


def test_explain_points_out_classes_the_model_all_but_rules_out(capsys, tiny_run, tmp_path):
    import pellucid.cli.explain as cli_explain

    argv = ["explain", str(tiny_run), "--n", "3", "--explainer", "centre", "--target", "label"]
    code, stdout, err = run(capsys, *argv, "--out", str(tmp_path / "a"))
    assert code == 0, err
    probs = json.loads((tmp_path / "a" / "metrics.json").read_text())["target_probability"]
    expected = sum(p < cli_explain.LOW_PROBABILITY for p in probs)
    assert ("note:" in stdout) == (expected > 0)
    cli_explain.LOW_PROBABILITY, old = 1.01, cli_explain.LOW_PROBABILITY  # every image
    try:
        code, stdout, err = run(capsys, *argv, "--out", str(tmp_path / "b"))
    finally:
        cli_explain.LOW_PROBABILITY = old
    assert code == 0 and "note: 3 of 3 images explain a class" in stdout


def test_asking_for_more_images_than_the_split_has_is_one_warning_line(capsys, tiny_run, tmp_path):
    """The split's images were used without a word; pellucid's warnings print like its
    errors, not in Python's format with the source line that warned."""
    argv = ["explain", str(tiny_run), "--n", "100000", "--explainer", "centre"]
    argv += ["--data-option", "n=5"]  # the run's data with 5 images per split
    code, _out, err = run(capsys, *argv, "--out", str(tmp_path / "a"))
    n = len(json.loads((tmp_path / "a" / "metrics.json").read_text())["indices"])
    assert code == 0 and n == 5
    said = f"pellucid: warning: the test split of 'shapes32' has {n} images: all {n} are used"
    assert said in err
    assert "UserWarning" not in err and "load_images(" not in err


def test_compare_explainers_one_table(capsys, tiny_run, tmp_path):
    out = tmp_path / "cmp"
    code, stdout, err = run(
        capsys,
        "compare-explainers",
        str(tiny_run),
        "--explainers",
        "neuromask",
        "gradcam",
        "centre",
        "--option",
        "neuromask.iterations=5",
        "--n",
        "4",
        "--sanity",
        "--road",
        "--against",
        "gradcam",
        "--quiet",
        "--out",
        str(out),
    )
    assert code == 0, err
    table = (out / "compare.md").read_text()
    assert "| neuromask |" in table and "deletion_auc ↓" in table and "pointing_game ↑" in table
    saved = json.loads((out / "compare.json").read_text())
    rows = saved["rows"]
    assert set(rows) == {"neuromask", "gradcam", "centre"}
    # --against: every other explainer minus Grad-CAM, each score with its interval
    assert saved["against"] == "gradcam" and set(saved["differences"]) == {"neuromask", "centre"}
    d = saved["differences"]["centre"]["deletion_auc"]
    assert d["difference"] == pytest.approx(
        rows["centre"]["deletion_auc"] - rows["gradcam"]["deletion_auc"], abs=2e-4
    )
    assert d["ci"][0] <= d["difference"] <= d["ci"][1] and d["n_images"] == 4
    assert "| centre |" in table.split("explainer − gradcam")[1]
    assert all(0 <= r["deletion_auc_road"] <= 1 for r in rows.values())  # --road
    assert "deletion_auc_road" in saved["differences"]["neuromask"]
    # scores apart for correctly classified and misclassified images, the same split for all
    by = saved["by_prediction"]
    assert set(by) == set(rows)
    wrong = {name: d["misclassified"]["n"] for name, d in by.items()}
    assert len(set(wrong.values())) == 1 and all(
        d["correct"]["n"] + wrong[n] == 4 for n, d in by.items()
    )
    assert ("misclassifies" in table) == (wrong["centre"] > 0)
    assert saved["images"] == "spread" and len(saved["indices"]) == 4
    assert saved["indices"][0] == 0 and saved["indices"][1] > 1  # evenly spaced, not the first 4
    code, _, err = run(
        capsys,
        "compare-explainers",
        str(tiny_run),
        "--explainers",
        "centre",
        "--against",
        "gradcam",
        "--n",
        "2",
        "--quiet",
        "--out",
        str(tmp_path / "cmp2"),
    )
    assert code == 1 and "--against 'gradcam' is not among" in err
    assert not (tmp_path / "cmp2").exists()
    args = ["--explainers", "centre", "--option", "neuromask.iterations=5", "--n", "2"]
    code, _, err = run(capsys, "compare-explainers", str(tiny_run), *args, "--quiet")
    assert code == 1 and "--option: explainer 'neuromask' is not run here" in err  # was ignored
    assert rows["centre"]["sanity_rank_correlation"] == pytest.approx(1.0)  # ignores the model
    assert (out / "gallery.png").stat().st_size > 1000
    code, _, err = run(capsys, "compare-explainers", str(tiny_run), "--dataset", "mnist")
    assert code == 1 and "classes" in err


def test_help_lists_every_registry(capsys):
    from pellucid.registry import DATASETS, EXPLAINERS, METHODS, MODELS

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for registry in (DATASETS, MODELS, METHODS, EXPLAINERS):
        for name in registry.names():
            assert name in out, name
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in EXPLAINERS.names())


def test_named_options_group_by_name_and_name_the_flag():
    from pellucid.cli.arguments import parse_named_options
    from pellucid.errors import ConfigError

    pairs = ["integrated-gradients.n-steps=8", "neuromask.lr=0.1", "neuromask.iterations=5"]
    assert parse_named_options(pairs, "--option") == {
        "integrated-gradients": {"n_steps": 8},
        "neuromask": {"lr": 0.1, "iterations": 5},
    }
    with pytest.raises(ConfigError, match="--attack-option expects ATTACK.KEY=VALUE"):
        parse_named_options(["eps=0.1"], "--attack-option", "ATTACK")


def test_data_paths_are_taken_as_typed_and_made_absolute(capsys, tmp_path, monkeypatch):
    """A run trained on ``root=imgs #2`` from one directory is evaluated from another: the
    path is not read as YAML (``#`` would start a comment) and is stored absolute."""
    import yaml

    folder = tmp_path / "work" / "imgs #2"
    for c, v in (("a", 30), ("b", 220)):
        (folder / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((8, 8, 3), v, np.uint8)).save(folder / c / f"{i}.png")
    monkeypatch.chdir(tmp_path / "work")
    argv = ["train", "--dataset", "folder", "--data-option", "root=imgs #2", "--model"]
    argv += ["convnet", "--epochs", "1", "--batch-size", "4", "--out", "run", "--quiet"]
    assert run(capsys, *argv)[0] == 0
    saved = yaml.safe_load((tmp_path / "work" / "run" / "config.yaml").read_text())
    assert saved["data"]["options"]["root"] == str(folder)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "evaluate", "work/run", "--quiet")
    assert code == 0, err


def test_datasets_lists_each_datasets_options(capsys):
    code, out, _ = run(capsys, "datasets")
    assert code == 0
    assert "--data-option root, masks, size, channels=3" in out
    code, out, _ = run(capsys, "datasets", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["npz"]["options"] == {"path": None, "num_classes": None}
