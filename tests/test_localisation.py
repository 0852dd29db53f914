"""Object localisation (pellucid.apps.localisation, ``pellucid localise``)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from pellucid.apps.localisation import localise, localise_run
from pellucid.data.base import DatasetInfo, PellucidDataset
from pellucid.errors import ConfigError, DataError
from pellucid.metrics.localisation import top_q_iou
from pellucid.report.html_runs import LOCALISATION_FILES


def _squares(n: int = 6, size: int = 16, centred: bool = True) -> PellucidDataset:
    """Images whose object mask is a 4x4 square at the centre (or in a corner)."""
    info = DatasetInfo("squares", 2, 1, (size, size), ("a", "b"), (0.5,), (0.25,), has_masks=True)
    masks = torch.zeros(n, 1, size, size)
    at = size // 2 - 2 if centred else 0
    masks[:, :, at : at + 4, at : at + 4] = 1
    images = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(n) % 2
    return PellucidDataset(info, images, labels, mask=masks)


def test_a_map_at_the_object_localises_and_one_elsewhere_does_not():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 2))
    # the centre control peaks at the image centre: inside the centred square, outside the
    # corner one
    inside = localise(model, _squares(), "centre", q=16 / 256, threshold=0.3)
    outside = localise(model, _squares(centred=False), "centre", q=16 / 256, threshold=0.3)
    assert inside.pointing_game == 1.0 and outside.pointing_game == 0.0
    assert inside.mean_iou > 0.3 and inside.share_above == 1.0
    assert outside.mean_iou == 0.0 and outside.share_above == 0.0
    assert inside.n == 6 and len(inside.iou) == 6 and len(inside.pointing) == 6


def test_scores_are_the_metrics_of_the_explainer_maps():
    from pellucid.explain import build_explainer

    data = _squares(n=5, size=16)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 256, 2),
    )
    res = localise(model, data, "saliency", q=0.25, threshold=0.1, n=4, batch_size=3)
    assert res.images == [0, 1, 3, 4]  # spread over the split, not its first 4
    pick = torch.tensor(res.images)
    maps = build_explainer("saliency", model).explain(data.images[pick], data.labels[pick])
    expected = top_q_iou(maps, data.extra["mask"][pick], q=0.25)
    assert res.n == 4
    assert res.iou == pytest.approx(expected.tolist(), abs=1e-5)
    assert res.share_above == pytest.approx(float((expected > 0.1).float().mean()))
    assert res.mean_iou == pytest.approx(float(expected.mean()), abs=1e-5)


def test_bad_input_is_named():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 2))
    with pytest.raises(ConfigError, match="q .* must lie in"):
        localise(model, _squares(), "centre", q=0)
    with pytest.raises(ConfigError, match="threshold"):
        localise(model, _squares(), "centre", threshold=1.5)
    with pytest.raises(ConfigError, match="target must be"):
        localise(model, _squares(), "centre", target="true")
    plain = _squares()
    plain.info = DatasetInfo("plain", 2, 1, (16, 16), ("a", "b"), (0.5,), (0.25,))
    with pytest.raises(DataError, match="'plain' has no object masks"):
        localise(model, plain, "centre")
    with pytest.warns(UserWarning, match="has 6 images: all 6 are scored, not the 50 asked"):
        assert localise(model, _squares(), "centre", n=50).n == 6
    some = torch.utils.data.Subset(_squares(), [1, 2, 3])  # a view of a dataset is one
    assert localise(model, some, "centre", q=16 / 256).pointing_game == 1.0
    with pytest.raises(DataError, match="expected a pellucid dataset .* got list"):
        localise(model, [_squares()[0]], "centre")


def test_localise_cli_compares_runs_and_writes_per_image_scores(capsys, tmp_path):
    from conftest import train_tiny_run
    from pellucid.cli.main import main

    run = train_tiny_run(tmp_path / "run")
    out = tmp_path / "loc.json"
    code = main(["localise", str(run), str(run), "--n", "12", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.count(str(run)) == 1  # one row per distinct run directory
    saved = json.loads(out.read_text())[str(run)]
    assert saved["n"] == 12 and len(saved["iou"]) == 12 and saved["layer"]
    direct = localise_run(str(run), n=12)
    assert direct.iou == saved["iou"]
    # a missing run is named before any work; a run that fails names itself and the runs
    # already finished, which --save has kept
    missing = tmp_path / "no-such-run"
    assert main(["localise", str(run), str(missing), "--n", "4", "--save"]) == 1
    assert f"{str(missing)!r} is not a run directory" in capsys.readouterr().err
    assert not (run / LOCALISATION_FILES["cam"]).exists()
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    argv = ["localise", str(run), str(broken), "--n", "4", "--save", "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{broken}: " in err and f"finished before it: {run}; saved as RUN/" in err
    assert (run / LOCALISATION_FILES["cam"]).is_file()
    assert json.loads(out.read_text())[str(run)]["n"] == 12  # --out: the earlier result
