"""The explainer benchmarks' bookkeeping: how targets are judged, which images and models
they use, how the published models and results are checked."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
explainers = importlib.import_module("explainers_targets")  # benchmarks/explainers_targets.py
studies = importlib.import_module("explainers_studies")  # benchmarks/explainers_studies.py
images = importlib.import_module("explainers_images")  # benchmarks/explainers_images.py
option_rows = importlib.import_module("explainers_rows")  # benchmarks/explainers_rows.py


def _rows(nm_point: float, nm_del: float) -> dict:
    return {
        "neuromask": {"pointing_game": nm_point, "deletion_auc": nm_del, "seconds_per_image": 1.0},
        "gradcam": {"pointing_game": 0.90, "deletion_auc": 0.11, "seconds_per_image": 0.1},
        "occlusion": {"pointing_game": 0.95, "deletion_auc": 0.09, "seconds_per_image": 1.0},
    }


def test_peer_targets_are_strict_and_directional():
    """Pointing must be higher and deletion lower than EVERY peer; a tie is not a win."""
    assert explainers.peer_targets(_rows(0.96, 0.08)) == {
        "beats_gradcam_and_occlusion_pointing": True,
        "beats_gradcam_and_occlusion_deletion": True,
    }
    t = explainers.peer_targets(_rows(0.95, 0.10))  # ties occlusion, loses on deletion
    assert t == {
        "beats_gradcam_and_occlusion_pointing": False,
        "beats_gradcam_and_occlusion_deletion": False,
    }


def test_resolved_targets_need_every_interval_on_neuromasks_side():
    def iv(diff: float, resolved: bool) -> dict:
        return {"difference": diff, "resolved": resolved}

    intervals = {
        "pointing_game": {"gradcam": iv(0.05, True), "occlusion": iv(0.01, False)},
        "deletion_auc": {"gradcam": iv(-0.02, True), "occlusion": iv(-0.01, True)},
        "deletion_auc_mean_fill": {"gradcam": iv(0.02, True), "occlusion": iv(-0.01, True)},
    }
    assert explainers.resolved_targets(intervals) == {
        "beats_gradcam_and_occlusion_pointing": False,  # one interval contains 0
        "beats_gradcam_and_occlusion_deletion": True,
        "beats_gradcam_and_occlusion_deletion_mean_fill": False,  # resolved the wrong way
    }


def test_over_seeds_mean_sd_and_counts():
    per_seed = {}
    for seed, (p, d) in enumerate([(0.96, 0.08), (0.94, 0.10), (0.98, 0.06)]):
        rows = _rows(p, d)
        per_seed[str(seed)] = {
            "rows": rows,
            "targets": explainers.peer_targets(rows),
            "targets_resolved": {"beats_gradcam_and_occlusion_pointing": seed == 0},
        }
    out = studies.over_seeds(per_seed)
    nm = out["scores"]["neuromask"]["pointing_game"]
    assert nm["mean"] == pytest.approx(0.96) and nm["sd"] == pytest.approx(0.02)
    assert nm["values"] == [0.96, 0.94, 0.98]
    assert "seconds_per_image" not in out["scores"]["neuromask"]
    diff = out["differences"]["deletion_auc"]["occlusion"]
    assert diff["values"] == pytest.approx([-0.01, 0.01, -0.03])
    assert out["seeds_meeting"]["targets"]["beats_gradcam_and_occlusion_pointing"] == 2
    assert out["seeds_meeting"]["targets"]["beats_gradcam_and_occlusion_deletion"] == 2
    assert out["seeds_meeting"]["targets_resolved"]["beats_gradcam_and_occlusion_pointing"] == 1


sweeps = importlib.import_module("explainers_sweeps")  # benchmarks/explainers_sweeps.py
common = importlib.import_module("_common")  # benchmarks/_common.py


def test_model_sha256_tells_models_apart():
    import torch

    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert common.model_sha256(a) == common.model_sha256(b)
    with torch.no_grad():
        b.bias[0] += 1e-6  # one float's last bits
    assert common.model_sha256(a) != common.model_sha256(b)


def _entry(sha: str | None, configs: list[str], command: str = "old", peer: float = 0.5) -> dict:
    rows = [{"config": c, "pointing_game": peer if "peer" in c else 0.7} for c in configs]
    return {"model_sha256": sha, "rows": rows, "command": command, "model_accuracy": 0.9}


PEERS = ["Grad-CAM (peer)", "occlusion (peer)"]


def test_validation_merge_keeps_rows_of_the_same_model_only():
    old = _entry("aaa", [*PEERS, "pyramid 2", "default"])
    # same model, partial run: the rows not re-run are kept, in VALIDATION's order
    res = _entry("aaa", [*PEERS, "default"], "new")
    assert sweeps.merge_rows(res, old, partial=True) == []
    assert [r["config"] for r in res["rows"]] == [*PEERS, "pyramid 2", "default"]
    assert res["command"] == "old; new"
    # another model: nothing is mixed, the old rows go with their own peers to a block
    old["earlier_models"] = [_entry("zzz", [*PEERS, "area 0.1, l_sparse 10"])]
    res = _entry("bbb", [*PEERS, "default"], "new")
    blocks = sweeps.merge_rows(res, old, partial=True)
    assert [r["config"] for r in res["rows"]] == [*PEERS, "default"]
    assert [b["model_sha256"] for b in blocks] == ["aaa", "zzz"]
    assert [r["config"] for r in blocks[0]["rows"]] == [*PEERS, "pyramid 2", "default"]


def test_validation_merge_finds_an_earlier_block_of_the_same_model():
    """An entry without a fingerprint is the same model only if its peers' scores match."""
    stale = _entry(None, [*PEERS, "default"], "other machine", peer=0.6)
    stale["earlier_models"] = [_entry(None, [*PEERS, "pyramid 2"], "first")]
    res = _entry("ccc", [*PEERS, "refine 0.3"], "new")
    blocks = sweeps.merge_rows(res, stale, partial=True)
    assert [r["config"] for r in res["rows"]] == [*PEERS, "pyramid 2", "refine 0.3"]
    assert res["command"] == "first; new"
    assert [b["command"] for b in blocks] == ["other machine"]


def test_pin_isa_reruns_the_script_under_the_pinned_instruction_sets(tmp_path: Path) -> None:
    import os
    import subprocess

    script = tmp_path / "probe.py"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(Path(common.__file__).parent)!r})\n"
        "from _common import ISA_PIN, pin_isa\n"
        "print('start', flush=True)\n"
        "pin_isa()\n"
        "print(sys.argv[1:], [os.environ.get(k) for k in ISA_PIN])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in common.ISA_PIN}
    env.pop("PELLUCID_NATIVE_ISA", None)
    out = subprocess.run(
        [sys.executable, str(script), "--x", "1"], env=env, capture_output=True, text=True
    )
    # the script ran twice (once natively, once pinned) and kept its arguments
    assert out.stdout.splitlines() == ["start", "start", "['--x', '1'] ['avx2', 'AVX2', 'AVX2']"]
    native = subprocess.run(
        [sys.executable, str(script)],
        env={**env, "PELLUCID_NATIVE_ISA": "1"},
        capture_output=True,
        text=True,
    )
    assert native.stdout.splitlines() == ["start", "[] [None, None, None]"]


def test_variants_are_validation_rows_and_an_unknown_label_stops_before_training(
    tmp_path: Path,
) -> None:
    known = {label for label, name, _ in option_rows.VALIDATION if name == "neuromask"}
    assert set(studies.VARIANTS) <= known
    with pytest.raises(SystemExit, match="unknown validation rows \\['refine 7'\\]"):
        studies.variants_benchmark(["cluttered-mnist"], tmp_path / "runs", 4, ["refine 7"])
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


@pytest.mark.parametrize("size", [1000, 1200, 2000])
def test_benchmark_sweep_and_validation_images_never_overlap(size: int) -> None:
    bench = images.spread_indices(size, 300, set(images.held_out_indices(size, 32)))
    old_bench = {(i * size) // 100 for i in range(100)}
    held = images.held_out_indices(size, 32)
    val = images.validation_indices(size, 128)
    for idx, n in ((bench, 300), (held, 32), (val, 128)):
        assert len(set(idx)) == n and all(0 <= j < size for j in idx)
    assert not set(bench) & set(held)
    assert not set(val) & (set(bench) | set(held) | old_bench)
    assert not set(held) & old_bench


def test_published_model_check_warns_only_for_another_model(tmp_path, monkeypatch, capsys) -> None:
    import json

    import torch

    model = torch.nn.Linear(2, 2)
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "SHIPPED_MODELS", tmp_path)
    assert common.published_model_check(model, "shapes") is None  # nothing published
    sha = common.model_sha256(model)
    (tmp_path / "explainers.json").write_text(
        json.dumps({"results": {"shapes": {"model_sha256": sha}}})
    )
    assert common.published_model_check(model, "shapes") is None  # the same model
    assert common.published_model_check(model, "cluttered-mnist") is None  # not published
    with torch.no_grad():
        model.weight.add_(1.0)
    msg = common.published_model_check(model, "shapes")
    assert msg is not None and sha in msg and common.model_sha256(model) in msg
    assert "--result NAME" in capsys.readouterr().err
    # a results file without fingerprints falls back to the shipped model's
    (tmp_path / "explainers.json").write_text(json.dumps({"results": {"shapes": {}}}))
    assert common.published_model_check(model, "shapes") is None  # nothing shipped either
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "shapes.safetensors"
    )
    assert common.published_model_check(model, "shapes") is None  # the shipped model
    with torch.no_grad():
        model.weight.add_(1.0)
    assert "the shipped shapes.safetensors" in common.published_model_check(model, "shapes")


def test_seeds_study_with_one_data_draw_keeps_the_published_file():
    """--data-seed writes its own results file; without it the published one."""
    assert studies.seeds_result_name(None) == "explainers_seeds"
    assert studies.seeds_result_name(0) == "explainers_seeds_data0"
    bench = importlib.import_module("explainers_runs")  # benchmarks/explainers_runs.py
    assert bench.recipe("shapes", 1, 0).data_seed == 0  # seed 1 trained on data seed 0
    assert bench.recipe("shapes", 1).data.seed is None and bench.recipe("shapes", 1).data_seed == 1
    # the same seed twice is the run without a data seed (same config, same directory)
    assert bench.recipe("shapes", 2, 2) == bench.recipe("shapes", 2)


@pytest.mark.parametrize(
    ("dataset", "channels"), [("cluttered-mnist", 1), ("shapes", 3)], ids=["cm", "shapes"]
)
def test_the_shipped_models_are_the_published_ones(dataset, channels, tmp_path) -> None:
    """Each shipped seed-0 model loads into its recipe's network and is the model the
    published explainer table was measured on (same fingerprint); ensure_run reuses a run
    that is already there instead of making it again."""
    import json

    from safetensors.torch import load_file

    from pellucid.models import build_model

    runs = importlib.import_module("explainers_runs")  # benchmarks/explainers_runs.py
    path = runs.shipped_weights(dataset)
    assert path is not None and path.stat().st_size < 1_100_000
    recipe = runs.recipe(dataset)
    stats = {"mean": [0.0] * channels, "std": [1.0] * channels}  # replaced by the shipped ones
    classes = 10 if dataset == "cluttered-mnist" else 8
    model = build_model(recipe.model.name, in_channels=channels, num_classes=classes, **stats)
    model.load_state_dict(load_file(path))  # strict: every key and shape fits
    pointing = json.loads((common.RESULTS / "explainers_pointing.json").read_text())
    assert common.model_sha256(model) == pointing["results"][dataset]["model_sha256"]
    assert common.published_model_check(model, dataset) is None  # the main table's model
    from pellucid.config import save_config

    (tmp_path / dataset).mkdir()
    (tmp_path / dataset / "metrics.json").write_text("{}")
    save_config(recipe, tmp_path / dataset / "config.yaml")
    assert runs.ensure_run(dataset, tmp_path) == tmp_path / dataset  # reused, not rebuilt
    # a finished run of another config is not measured as if it were the recipe's
    save_config(runs.recipe(dataset, seed=5), tmp_path / dataset / "config.yaml")
    with pytest.raises(SystemExit, match="holds a run of another config"):
        runs.ensure_run(dataset, tmp_path)
    assert runs.shipped_weights("no-such-dataset") is None


def test_rest_images_are_the_ones_no_other_part_used() -> None:
    size = 1000
    used = set(images.benchmark_indices(size, 300)) | set(images.held_out_indices(size, 32))
    used |= set(images.validation_indices(size, 128)) | {(i * size) // 100 for i in range(100)}
    rest = images.rest_indices(size)
    assert sorted(set(rest) | used) == list(range(size)) and not set(rest) & used
    some = images.rest_indices(size, 100)
    assert len(set(some)) == 100 and set(some) <= set(rest)
    assert min(some) == rest[0] and max(some) > rest[-1] - 2 * len(rest) // 100  # spread out
    assert images.rest_indices(size, 10**6) == rest
