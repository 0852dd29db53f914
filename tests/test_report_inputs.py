"""``pellucid report`` on awkward inputs: the reproduce command, runs sharing a directory
name, best marks with nothing to compare, and malformed saved result files."""

from __future__ import annotations

import html
import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from pellucid.cli.main import main
from pellucid.report.html import build_report
from pellucid.report.html_runs import (
    explanation_sections,
    localisation_table,
    read_run,
    unique_names,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from conftest import train_tiny_run

    return train_tiny_run(tmp_path_factory.mktemp("inputs") / "run", "standard")


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def _report(runs: list[Path], out: Path) -> str:
    return build_report(runs, out, figures=False).read_text()


def _marked(cells: list[dict[str, Any]]) -> list[bool]:
    return [c["best"] for c in cells]


# ------------------------------------------------------------------------------ reproduce
def test_reproduce_command_retrains_into_a_new_quoted_directory(trained, tmp_path):
    run = _copy(trained, tmp_path / "runs" / '<b>x&y"')
    page = _report([run], tmp_path / "report.html")
    assert "<b>x" not in page  # escaped
    match = re.search(r"<code>(pellucid train [^<]*)</code>", page)
    assert match, "no reproduce command"
    command = html.unescape(match.group(1))
    again = f"{run}-again"
    assert command == (
        f"pellucid train --config {shlex.quote(str(run / 'config.yaml'))} "
        f"--out {shlex.quote(again)}"
    )
    assert "new directory" in page
    argv = shlex.split(command)  # the shell sees exactly the two paths
    assert argv[3] == str(run / "config.yaml") and argv[5] == again
    assert main([*argv[1:], "--quiet"]) == 0  # and the command works
    assert (Path(again) / "metrics.json").is_file()
    # the next report proposes a directory that does not exist yet
    assert shlex.quote(f"{run}-again2") in html.unescape(_report([run], tmp_path / "r2.html"))


# ------------------------------------------------------------------------ unique labels
def test_unique_names():
    assert unique_names([Path("runs/std"), Path("other/std"), Path("x/csg")]) == [
        "runs/std",
        "other/std",
        "csg",
    ]
    assert unique_names([Path("a/b/std"), Path("c/b/std")]) == ["a/b/std", "c/b/std"]
    assert unique_names([Path("std"), Path("x/std")]) == ["std", "x/std"]


def test_runs_sharing_a_name_are_told_apart(trained, tmp_path):
    a = _copy(trained, tmp_path / "runs" / "std")
    b = _copy(trained, tmp_path / "other" / "std")
    c = _copy(trained, tmp_path / "runs" / "csg")
    page = _report([a, b, c], tmp_path / "report.html")
    assert "<h3>runs/std</h3>" in page and "<h3>other/std</h3>" in page
    assert "<h3>csg</h3>" in page  # plain name when it is unique
    assert "<h3>std</h3>" not in page
    assert "<tr><td>runs/std</td>" in page and "<tr><td>other/std</td>" in page
    page = _report([a, c], tmp_path / "plain.html")
    assert "<h3>std</h3>" in page and "runs/std" not in page.replace(str(a), "")


# ---------------------------------------------------------------------------- best marks
def test_explanations_mark_best_only_among_present_values(trained, tmp_path):
    run = _copy(trained, tmp_path / "run")
    folder = run / "explanations"
    folder.mkdir(exist_ok=True)
    single = {"rows": {"gradcam": {"deletion": 0.3, "insertion": None}}}
    (folder / "compare.json").write_text(json.dumps(single))
    (section,) = explanation_sections([read_run(run)])
    assert _marked(section["rows"][0]["cells"]) == [False, False]
    two = {"rows": {"a": {"insertion": None, "deletion": 0.2}, "b": {"deletion": 0.4}}}
    two["rows"]["b"]["insertion"] = None
    (folder / "compare.json").write_text(json.dumps(two))
    (section,) = explanation_sections([read_run(run)])
    keys = [c["key"] for c in section["columns"]]
    marks = {r["name"]: dict(zip(keys, _marked(r["cells"]), strict=True)) for r in section["rows"]}
    assert marks["a"] == {"insertion": False, "deletion": True}  # deletion: lower is better
    assert marks["b"] == {"insertion": False, "deletion": False}


def _localisation(run: Path, n: int, mean_iou: float, m: int | None = None) -> None:
    saved = {"explainer": "gradcam", "layer": "layer4", "q": 0.5, "threshold": 0.5}
    saved |= {"target": "true", "n": n, "mean_iou": mean_iou, "share_above": None}
    name = "localisation.json"
    if m is not None:
        saved |= {"protocol": "gradient", "assign": "mi", "options": {"m": m}}
        name = "localisation_gradient.json"
    (run / name).write_text(json.dumps(saved))


def test_localisation_marks_best_only_among_comparable_rows(trained, tmp_path):
    a, b, c = (_copy(trained, tmp_path / name) for name in ("a", "b", "c"))
    _localisation(a, 8, 0.5)
    _localisation(b, 16, 0.6)  # more images: not comparable with a
    _localisation(c, 8, 0.4)
    cfg = yaml.safe_load((c / "config.yaml").read_text())
    cfg["data"]["name"] = "cluttered-mnist"  # another dataset: not comparable either
    (c / "config.yaml").write_text(yaml.safe_dump(cfg))
    table = localisation_table([read_run(r) for r in (a, b, c)])
    assert not any(cell["best"] for row in table["rows"] for cell in row["cells"])

    _localisation(b, 8, 0.6)  # now a and b compete, on mean IoU only (no share_above)
    _localisation(a, 8, 0.5, m=3)
    _localisation(b, 8, 0.7, m=5)  # gradient protocol with another m: not comparable
    table = localisation_table([read_run(r) for r in (a, b, c)])
    marks = {(row["run"], row["setting"][:8]): _marked(row["cells"]) for row in table["rows"]}
    assert marks[("a", "gradcam ")] == [False, False, False, False]
    assert marks[("b", "gradcam ")] == [True, False, False, False]
    assert not any(marks[(r, "gradient")][0] for r in ("a", "b"))
    assert marks[("c", "gradcam ")] == [False, False, False, False]


# ------------------------------------------------------------------ malformed result files
@pytest.mark.parametrize(
    ("file", "content"),
    [
        ("adversarial.json", {"attacks": 5}),
        ("adversarial.json", [1]),
        ("adversarial.json", {"attacks": [{"auc": [1]}]}),
        ("explanations/compare.json", {"rows": 5}),
        ("explanations/compare.json", {"rows": {"gradcam": 1}}),
        ("localisation.json", [1]),
        ("localisation_filters.json", {"options": 3}),
        ("sanity/sanity.json", [1]),
        ("history.json", {"epoch": 1}),
    ],
)
def test_malformed_result_file_is_a_one_line_error(trained, tmp_path, capsys, file, content):
    run = _copy(trained, tmp_path / "run")
    (run / file).parent.mkdir(exist_ok=True)
    (run / file).write_text(json.dumps(content))
    code = main(["report", str(run), "--out", str(tmp_path / "r.html"), "--no-figures"])
    err = capsys.readouterr().err
    assert code != 0
    assert str(run / file) in err
    assert "internal error" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
