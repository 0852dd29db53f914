"""The benchmarks' summaries over seeds, README tables, run cache and result files."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_adversarial_summary_averages_seeds_and_skips_missing_scores():
    adversarial = importlib.import_module("adversarial")  # benchmarks/adversarial.py

    def seed_row(auc: float, prototype: float | None) -> dict:
        scores = {"logistic": auc, "forest": auc, "prototype": prototype}
        report = {"attack": "fgsm", "success_rate": auc / 2, "auc": {}}
        nets = {}
        for net, feats in adversarial.FEATURES.items():
            nets[net] = {
                "test_accuracy": 0.9,
                "attacks": [{**report, "auc": dict.fromkeys(feats, scores)}],
            }
        return {"networks": nets}

    s = adversarial.summarise([seed_row(0.8, 0.6), seed_row(0.9, None)], ["fgsm"])
    row = next(r for r in s["auc"] if r["network"] == "decoupled" and r["feature"] == "path")
    assert row["fgsm/logistic"] == {"mean": 0.85, "std": pytest.approx(0.0707, abs=1e-4)}
    assert "fgsm/prototype" not in row  # one seed had no score: no mean of the others
    assert s["success_rate"]["csg"]["fgsm"]["mean"] == 0.425
    assert len(s["auc"]) == len(adversarial.ROWS)


def test_csg_summary_times_only_pairs_trained_in_this_process():
    csg = importlib.import_module("csg")  # benchmarks/csg.py

    def side(acc: float, sec: float, reused: bool) -> dict:
        return {"test_accuracy": acc, "mis": 0.2, "seconds_per_epoch": sec, "run_reused": reused}

    pairs = [
        {"standard": side(0.9, 1.0, False), "csg": side(0.8, 1.2, False)},
        {"standard": side(0.9, 9.0, True), "csg": side(0.8, 1.0, False)},  # a stale timing
    ]
    out = csg.summarise(pairs)
    assert out["epoch_cost_ratio"] == pytest.approx(1.2) and out["timed_pairs"] == 1
    assert out["standard_test_accuracy_mean"] == 0.9  # accuracies of every pair
    reused = csg.summarise([pairs[1]])
    assert reused["epoch_cost_ratio"] is None and reused["timed_pairs"] == 0


def test_adaptive_summary_keeps_one_and_two_sided_aucs_apart():
    adaptive = importlib.import_module("adaptive")  # benchmarks/adaptive.py

    def seed(v: float) -> dict:
        rows = {}
        for kinds in adaptive.FEATURES.values():
            for kind in kinds:
                rows[f"pgd/{kind}"] = {"success_rate": 1.0, "lid": v, "lid-two-sided": v + 0.1}
                for attack in ("margin", "adaptive", "median"):
                    rows[f"{attack}-lid/{kind}"] = {
                        "success_rate": 0.5, "lid": v - 0.2, "lid-two-sided": v + 0.2
                    }  # fmt: skip
        return {"networks": {n: {"rows": rows} for n in adaptive.FEATURES}}

    rows = adaptive.summarise([seed(0.6), seed(0.8)])
    lid = next(r for r in rows if r["detector"] == "lid" and r["feature"] == "logits")
    assert lid["pgd"]["mean"] == 0.7 and lid["pgd_two_sided"]["mean"] == 0.8
    assert lid["median"]["mean"] == 0.5 and lid["median_two_sided"]["mean"] == 0.9
    assert lid["median_success"]["mean"] == 0.5
    proto = next(r for r in rows if r["detector"] == "prototype")
    assert "pgd" not in proto  # no seed measured it: no row cell


def test_adaptive_strength_summary_averages_each_budget_over_seeds():
    strength = importlib.import_module("adaptive_strength")  # benchmarks/adaptive_strength.py

    def row(steps: int, weight: float, auc: float | None) -> dict:
        two = None if auc is None else auc + 0.1
        return {"steps": steps, "weight": weight, "success_rate": 1.0, "pairs": 9,
                "auc": auc, "auc_two_sided": two}  # fmt: skip

    seeds = [
        {"rows": [row(200, 1.0, 0.3), row(40, 0.0, 0.9), row(40, 1.0, 0.5)]},
        {"rows": [row(40, 0.0, 0.7), row(40, 1.0, None), row(200, 1.0, 0.5)]},
    ]
    cells = strength.summarise(seeds)
    assert [(c["steps"], c["weight"]) for c in cells] == [(40, 0.0), (40, 1.0), (200, 1.0)]
    assert cells[0]["auc"]["mean"] == 0.8 and cells[2]["auc_two_sided"]["mean"] == 0.5
    assert cells[1]["auc"] == {"mean": 0.5, "std": 0.0}  # the seed without pairs is left out
    assert cells[1]["success_rate"]["mean"] == 1.0
    crosscheck = importlib.import_module("readme_crosscheck")
    result = {"summary": cells, "attack": {"eps": 0.2, "alpha": 0.02, "kappa": 0.0},
              "machine": {"date": "d"}, "dataset": "mnist", "network": "decoupled",
              "feature": "activations", "detector": "lid", "n": 9, "seeds": [0, 1],
              "command": "adaptive_strength.py", "wall_seconds": 60}  # fmt: skip
    table = crosscheck.table_adaptive_strength(result).splitlines()
    assert table[2] == "| 40 | 0 (control) | 0.800 ± 0.141 | 0.900 ± 0.141 | 1.000 ± 0.000 |"
    assert table[4].startswith("| 200 | 1 | 0.400 ± 0.141 | 0.500 ± 0.141 |")
    # a fitted detector: its AUC next to the retrained one's, no two-sided score
    fitted = [{"rows": [{**r, "auc_two_sided": None, "auc_retrained": 0.9} for r in s["rows"]]}
              for s in seeds]  # fmt: skip
    result |= {"summary": strength.summarise(fitted), "detector": "forest"}
    table = crosscheck.table_adaptive_strength(result).splitlines()
    assert table[0].startswith("| steps | detector weight | AUC, fitted detector ↑ | AUC, detector")
    assert table[2] == "| 40 | 0 (control) | 0.800 ± 0.141 | 0.900 ± 0.000 | 1.000 ± 0.000 |"
    assert "through the logistic regression fitted on the same images" in table[-1]


def test_adaptive_table_splits_the_supervised_rows_and_names_every_run():
    tables = importlib.import_module("readme_crosscheck")
    cell = {"mean": 0.5, "std": 0.0}
    unsupervised = {"network": "decoupled", "feature": "path", "detector": "lid"}
    unsupervised |= {k: cell for k in ("pgd", "pgd_two_sided", "adaptive", "median")}
    supervised = {"network": "csg", "feature": "logits", "detector": "logistic"}
    supervised |= {k: cell for k in ("pgd", "adaptive", "adaptive_retrained")}
    history = [
        {"command": "adaptive.py", "networks": ["standard", "csg"], "date": "d1",
         "wall_seconds": 60},
        {"command": "adaptive.py --update", "networks": ["decoupled"], "date": "d2",
         "wall_seconds": 120},
    ]  # fmt: skip
    result = {
        "summary": [unsupervised, supervised], "dataset": "mnist", "n": 3, "seeds": [0],
        "adaptive": {"eps": 0.2, "steps": 40, "kappa": 0.0, "weight": 1.0},
        "pgd": {"alpha": 0.02, "steps": 20}, "machine": {"date": "d2"}, "command": "x",
        "wall_seconds": 180, "history": history,
    }  # fmt: skip
    table = tables.table_adaptive(result)
    assert "| decoupled | path | lid | 0.500 ± 0.000 / 0.500 ± 0.000 | - / - |" in table
    assert "| CSG | logits | 0.500 ± 0.000 | - | 0.500 ± 0.000 | 0.500 ± 0.000 | - |" in table
    assert "standard, csg: `adaptive.py` (d1, 1 min)" in table
    assert "decoupled: `adaptive.py --update` (d2, 2 min)" in table
    header = table.split("| CSG |")[0].splitlines()[-2]
    assert header.startswith("| network | feature | oblivious PGD, detector cross-validated")
    # a forest-only run: no unsupervised table; the supervised one names the detector
    forest = supervised | {"detector": "forest", "margin": cell, "median": cell}
    pgd_only = {"network": "csg", "feature": "logits", "detector": "forest", "pgd": cell}
    table = tables.table_adaptive(result | {"summary": [forest, pgd_only]})
    assert "| network | feature | detector | oblivious PGD, detector cross-validated" in table
    assert table.count("| CSG | logits | forest |") == 1  # the row without an attack: none
    assert "lowest score" not in table and "surrogate" in table and "d2, 2 min" in table
    assert "| surrogate aimed at the clean median, fitted detector ↑ |" in table
    assert "| CSG | logits | forest |" + " 0.500 ± 0.000 |" * 5 + " - |" in table


def test_sanity_summary_averages_seeds_and_keeps_undefined_controls():
    sanity = importlib.import_module("sanity")  # benchmarks/sanity.py
    tables = importlib.import_module("readme_sanity")

    def job(seed: int, value: float) -> dict:
        check = {"mean": value, "mean_abs": value}
        return {
            "dataset": "cluttered-mnist",
            "seed": seed,
            "test_accuracy": 0.95,
            "random_label_test_accuracy": 0.1,
            "random_label_train_accuracy": 0.99,
            "layers": ["fc", "layer1"],
            "rows": {
                "gradcam": {"full": check, "data": check,
                            "cascading": {"mean": [value, value / 2], "mean_abs": [0, 0]}},
                "centre": {"full": {"mean": float("nan"), "mean_abs": float("nan")},
                           "data": check, "cascading": {"mean": [float("nan")] * 2}},
            },
        }  # fmt: skip

    s = sanity.summarise([job(0, 0.2), job(1, 0.4)])["cluttered-mnist"]
    grad = s["rows"]["gradcam"]
    assert grad["full"] == {"mean": pytest.approx(0.3), "std": pytest.approx(0.1414, abs=1e-4),
                            "seeds": 2}  # fmt: skip
    assert grad["cascading"][1]["mean"] == pytest.approx(0.15)
    assert s["rows"]["centre"]["full"] is None  # constant maps: no correlation, not a 0
    result = {"summary": {"cluttered-mnist": s}, "seeds": [0, 1], "n": 4, "command": "x",
              "random_label_epochs": 30, "wall_seconds": 60, "machine": {"date": "d"}}  # fmt: skip
    table = tables.table_sanity(result)
    assert "| gradcam | 0.300 ± 0.141 | 0.300 ± 0.141 | 0.150 ± 0.071 | 0.300 ± 0.141 |" in table
    assert "| centre | undefined | undefined | undefined |" in table


def test_cached_run_trains_once_and_keys_by_config_and_source(
    tiny_config, tmp_path: Path, monkeypatch
) -> None:
    import pellucid.training as training

    common = importlib.import_module("_common")
    monkeypatch.delenv("PELLUCID_RUN_CACHE", raising=False)
    calls = []
    real = training.train_run
    monkeypatch.setattr(training, "train_run", lambda *a, **k: calls.append(a) or real(*a, **k))
    run, metrics = common.cached_run(tiny_config, tmp_path)
    assert (run / "metrics.json").is_file() and run.parent == tmp_path
    assert "run_reused" not in metrics and len(calls) == 1
    again, reused = common.cached_run(tiny_config, tmp_path)
    assert again == run and len(calls) == 1, "a finished run of the same config is reused"
    assert reused["run_reused"] is True
    assert reused["test_accuracy"] == metrics["test_accuracy"]
    assert [p.name for p in tmp_path.iterdir()] == [run.name], "no private dirs left behind"
    # another config, or the same config by other source code, is another run
    other = tiny_config.replace(train=dataclasses.replace(tiny_config.train, seed=1))
    assert common.run_key(other) != common.run_key(tiny_config)
    source = common.source_sha256
    monkeypatch.setattr(common, "source_sha256", lambda: "edited")
    assert common.run_key(tiny_config) != run.name
    monkeypatch.setattr(common, "source_sha256", source)
    assert common.run_key(tiny_config) == run.name
    # the same source on a CPU that runs other kernels (the same model name can): another run
    import torch

    capability = torch.backends.cpu.get_cpu_capability
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "another ISA")
    assert common.run_key(tiny_config) != run.name
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", capability)
    # PELLUCID_RUN_CACHE=0: a fresh temporary run every time
    monkeypatch.setenv("PELLUCID_RUN_CACHE", "0")
    fresh, _ = common.cached_run(tiny_config, tmp_path)
    assert fresh.parent.parent != tmp_path and len(calls) == 2


def test_the_run_cache_fingerprint_follows_the_code_training_runs(tmp_path: Path, monkeypatch):
    import shutil

    common = importlib.import_module("_common")
    names = {p.relative_to(common.SOURCE).as_posix() for p in common.training_sources()}
    assert {
        "training/loop.py", "methods/csg.py", "methods/decoupling.py", "methods/icnn_loss.py",
        "models/__init__.py", "data/shapes.py", "apps/acceleration.py", "__init__.py",
    } <= names  # fmt: skip
    assert not any(n.startswith(("cli/", "report/", "explain/")) for n in names)
    assert "apps/adversarial.py" not in names and "demo.py" not in names
    for path in common.training_sources():  # nothing the static closure could not follow
        text = path.read_text()
        assert "import_module" not in text and "__import__" not in text, path
    copy = tmp_path / "pellucid"
    shutil.copytree(common.SOURCE, copy)
    monkeypatch.setattr(common, "SOURCE", copy)
    before = common.source_sha256()
    with (copy / "apps" / "adversarial.py").open("a") as f:
        f.write("# an edit training never runs\n")
    assert common.source_sha256() == before
    csg = copy / "methods" / "csg.py"
    text = csg.read_text()
    assert '"""' in text and "\n\n\n" in text
    # comments, docstrings and formatting of a file training runs: the same code
    csg.write_text(text.replace('"""', '"""Reworded. ', 1).replace("\n\n\n", "\n\n") + "# x\n")
    assert common.source_sha256() == before
    csg.write_text(text + "LIMIT = 1\n")  # an edit of what it does
    assert common.source_sha256() != before


def test_an_interrupted_training_leaves_no_run_behind_its_key(
    tiny_config, tmp_path: Path, monkeypatch
) -> None:
    import pellucid.training as training

    common = importlib.import_module("_common")
    monkeypatch.delenv("PELLUCID_RUN_CACHE", raising=False)

    def crash(config, out, progress=False):
        Path(out).mkdir(parents=True)
        (Path(out) / "config.yaml").write_text("half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_run", crash)
    with pytest.raises(KeyboardInterrupt):
        common.cached_run(tiny_config, tmp_path)
    assert list(tmp_path.iterdir()) == [], "the private directory is removed"


def test_training_twice_gives_the_same_weights(tiny_config, tmp_path: Path) -> None:
    """What the run cache relies on: the same config, source and thread count train the same
    weights."""
    from safetensors.torch import load_file

    from pellucid.training import train_run

    common = importlib.import_module("_common")
    shas = []
    for name in ("a", "b"):
        train_run(tiny_config, tmp_path / name, progress=False)
        shas.append(common.state_sha256(load_file(str(tmp_path / name / "model.safetensors"))))
    assert shas[0] == shas[1]


def test_sanity_merge_joins_sessions_and_refuses_another_protocol(tmp_path, monkeypatch):
    """Seeds measured in two sessions become one result; each job keeps where it was
    measured, the summary covers every seed, and a result of another protocol or a seed
    measured twice is refused."""
    common = importlib.import_module("_common")
    sanity = importlib.import_module("sanity")
    monkeypatch.setattr(common, "RESULTS", tmp_path)

    def result(seeds: list[int], value: float, date: str, n: int = 24) -> dict:
        check = {"mean": value, "mean_abs": value}
        jobs = [
            {"dataset": "shapes", "seed": s, "test_accuracy": 0.9, "layers": ["fc"],
             "random_label_test_accuracy": 0.1, "random_label_train_accuracy": 0.8,
             "rows": {"gradcam": {"full": check, "data": check,
                                  "cascading": {"mean": [value], "mean_abs": [value]}}}}
            for s in seeds
        ]  # fmt: skip
        return {"machine": {"date": date, "cpu": "c", "cpu_capability": "AVX2"},
                "command": f"sanity.py --seeds {seeds}", "datasets": ["shapes"], "seeds": seeds,
                "n": n, "random_label_epochs": 30, "checks": ["full", "cascading", "data"],
                "protocol": "p", "recipes": {"shapes": {"r": 1}}, "wall_seconds": 60.0,
                "per_job": jobs}  # fmt: skip

    write = importlib.import_module("pellucid.io").write_json
    write(tmp_path / "a.json", result([0], 0.2, "d0"))
    write(tmp_path / "b.json", result([2, 1], 0.4, "d1"))
    merged = sanity.merge(["a", "b"])
    assert merged["seeds"] == [0, 1, 2] and [j["seed"] for j in merged["per_job"]] == [0, 1, 2]
    assert [j["measured"]["date"] for j in merged["per_job"]] == ["d0", "d1", "d1"]
    full = merged["summary"]["shapes"]["rows"]["gradcam"]["full"]
    assert full["seeds"] == 3 and full["mean"] == pytest.approx(1 / 3, abs=1e-4)
    assert merged["wall_seconds"] == 120.0 and len(merged["merged_from"]) == 2
    write(tmp_path / "c.json", result([3], 0.4, "d2", n=12))
    with pytest.raises(SystemExit, match="c differs from a in: n"):
        sanity.merge(["a", "c"])
    with pytest.raises(SystemExit, match=r"measures \('shapes', 0\) again"):
        sanity.merge(["a", "a"])


def test_dataset_results_written_in_parallel_keep_each_others_entries(tmp_path, monkeypatch):
    """Two processes of one study (one per dataset) read, merge and write the same result:
    the second waits for the first's lock and keeps its entry."""
    import json
    import subprocess
    import time

    common = importlib.import_module("_common")
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    child = (
        "import sys; sys.path.insert(0, sys.argv[1]); import _common; from pathlib import Path;"
        "_common.RESULTS = Path(sys.argv[2]);"
        "_common.write_dataset_results('study', {'shapes': {'v': 2}}, {'n': 1})"
    )
    bench = str(Path(__file__).resolve().parents[1] / "benchmarks")
    with common.result_lock("study"):
        proc = subprocess.Popen([sys.executable, "-c", child, bench, str(tmp_path)])
        time.sleep(1.0)
        assert proc.poll() is None and not (tmp_path / "study.json").exists()  # it waits
        common.write_result("study", {"n": 1, "results": {"mnist": {"v": 1}}})
    assert proc.wait(timeout=60) == 0
    saved = json.loads((tmp_path / "study.json").read_text())
    assert saved["results"] == {"mnist": {"v": 1}, "shapes": {"v": 2}}


def test_peers_table_takes_the_sanity_column_of_a_later_sanity_only_run():
    """``explainers.py --peers --sanity-only`` adds a sanity check on more images to a
    dataset's entry; the README table shows it in place of the 8-image column and says so."""
    from readme_explainers import table_explainers_peers

    scores = ("deletion_auc", "deletion_auc_mean_fill")
    row = {"pointing_game": 1.0, "energy_pointing_game": 0.1, **dict.fromkeys(scores, 0.1),
           "insertion_auc": 0.6, "seconds_per_image": 1.0}  # fmt: skip
    interval = {"difference": 0.0, "ci": [0.0, 0.0], "resolved": False}
    entry = {
        "n_images": 60, "model_sha256": "abc", "model_accuracy_on_these_images": 0.9,
        "torchray": "torchray==1.0.0.2", "command": "peers", "date": "2026-12-07", "sanity_n": 8,
        "rows": {"neuromask": {**row, "sanity_rank_correlation": 0.5},
                 "rise": {**row, "sanity_rank_correlation": 0.75}},
        "intervals": {k: {"extremal-perturbation": interval, "rise": interval} for k in (
            "pointing_game", "deletion_auc", "deletion_auc_mean_fill", "insertion_auc")},
    }  # fmt: skip
    before = table_explainers_peers({"results": {"shapes": entry}})
    assert "| shapes | rise | 1.000 | 0.100 | 0.100 | 0.100 | 0.600 | 0.750 |" in before
    assert "sanity check on the first 8." in before
    sanity = {"n": 24, "command": "more", "date": "2026-12-08",
              "rows": {"rise": {"mean": 0.25, "seconds": 1800.0}}}  # fmt: skip
    after = table_explainers_peers({"results": {"shapes": {**entry, "sanity": sanity}}})
    assert "| shapes | rise | 1.000 | 0.100 | 0.100 | 0.100 | 0.600 | 0.250 |" in after
    assert "| shapes | neuromask | 1.000 | 0.100 | 0.100 | 0.100 | 0.600 | 0.500 |" in after
    assert "sanity check on the first 24: `more` (2026-12-08, 30 min)." in after
