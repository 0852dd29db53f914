"""Figures of unusual input: images of any channel count (2 and 4 channels crashed every
figure), user-supplied text with ``$`` (read as mathtext), a stale sanity figure of a check
that was not run, and the path ``show-data`` prints."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pellucid.data.base import DatasetInfo, PellucidDataset
from pellucid.report.draw import display_array, literal, literals, rgb_array

DOLLAR_NAMES = ("$5-$10", "price $^$", "a_b")  # "price $^$" is not even valid mathtext
SIZE = 16


def _images(channels: int, n: int = 6) -> torch.Tensor:
    return torch.rand(n, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def _dataset(channels: int) -> PellucidDataset:
    info = DatasetInfo(
        name="tiny $x$",
        num_classes=3,
        in_channels=channels,
        image_size=(SIZE, SIZE),
        class_names=DOLLAR_NAMES,
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        has_masks=True,
    )
    masks = torch.zeros(6, 1, SIZE, SIZE)
    masks[:, :, 4:12, 4:12] = 1
    return PellucidDataset(info, _images(channels), torch.arange(6) % 3, mask=masks)


def _is_png(path: Path) -> bool:
    return Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(path).stat().st_size > 500


# ---------------------------------------------------------------------------- the helpers
def test_display_array_of_every_channel_count():
    img = torch.rand(4, 5, 7)
    assert display_array(img[:1]).shape == (5, 7)
    assert np.allclose(display_array(img[:1]), img[0].numpy())
    assert display_array(img[:3]).shape == (5, 7, 3)
    for c in (2, 4):  # no colour meaning: the channel mean in grey
        assert np.allclose(display_array(img[:c]), img[:c].mean(0).numpy(), atol=1e-6)
    assert display_array(img[0]).shape == (5, 7)  # (H, W): one channel
    assert display_array(img[:2] * 3 - 1).min() >= 0.0  # clipped to pixel space
    for c in (1, 2, 3, 4):
        assert rgb_array(img[:c]).shape == (5, 7, 3)
    with pytest.raises(ValueError, match="expected a"):
        display_array(torch.rand(2, 3, 4, 5))


def test_literal_escapes_every_dollar():
    assert literal("price $^$") == r"price \$^\$"
    assert literal(3) == "3" and literals(["$a", 1]) == [r"\$a", "1"]


def test_text_with_dollars_renders_only_when_escaped(tmp_path):
    """The bug itself: matplotlib parses an unescaped pair of ``$`` as mathtext."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.set_title(DOLLAR_NAMES[1])
    with pytest.raises(ValueError):
        fig.savefig(io.BytesIO(), format="png")
    ax.set_title(literal(DOLLAR_NAMES[1]))
    fig.canvas.draw()
    assert ax.title.get_text() == r"price \$^\$"  # drawn as "price $^$"
    plt.close(fig)


# ----------------------------------------------------- figures of 2- and 4-channel images
@pytest.mark.parametrize("channels", [2, 4])
def test_data_grid_draws_any_channel_count_and_dollar_names(tmp_path, channels):
    from pellucid.report.data_grid import save_data_grid

    path = save_data_grid(_dataset(channels), tmp_path / "grid.png", n=6)
    assert path == tmp_path / "grid.png" and _is_png(path)


@pytest.mark.parametrize("channels", [2, 4])
def test_explanation_figures_draw_any_channel_count(tmp_path, channels):
    from pellucid.report.figures_explain import save_gallery, save_overlay
    from pellucid.report.figures_sanity import save_sanity_maps

    images = _images(channels, 3)
    maps = torch.rand(3, 1, SIZE, SIZE)
    mask = torch.zeros(3, 1, SIZE, SIZE)
    mask[:, :, 4:12, 4:12] = 1
    title = f"sal$ency: class {DOLLAR_NAMES[1]}, p=0.50 (label {DOLLAR_NAMES[0]})"
    assert _is_png(save_overlay(images[0], maps[0], tmp_path / "o.png", title, mask[0]))
    gallery = {"sal$": maps, "grad$^$": maps.flip(-1)}
    titles = list(DOLLAR_NAMES)
    assert _is_png(save_gallery(images, gallery, tmp_path / "g.png", titles, mask))
    shown = {"sal$": {"trained": maps[:1], "+fc $^$": -maps[:1]}}
    assert _is_png(save_sanity_maps(images[0], shown, tmp_path / "s.png"))


@pytest.mark.parametrize("channels", [2, 4])
def test_csg_figures_draw_any_channel_count_and_dollar_names(tmp_path, channels):
    from pellucid.models import build_model
    from pellucid.report.figures_csg import plot_class_filters, plot_gate_matrix, plot_mi_matrices

    model = build_model("convnet", channels, 3, widths=[4, 4, 4, 4])
    title = f"run $a$: top filters of class {DOLLAR_NAMES[1]!r} at layer2"
    out = plot_class_filters(
        model, "layer2", _images(channels, 2), [0, 1], tmp_path / "f.png", title
    )
    assert _is_png(out)
    gates = torch.rand(3, 4)
    assert _is_png(plot_gate_matrix(gates, tmp_path / "gates.png", DOLLAR_NAMES))
    mi = {"run $1$ (csg)": np.random.default_rng(0).random((3, 4))}
    assert _is_png(plot_mi_matrices(mi, tmp_path / "mi.png", DOLLAR_NAMES))


@pytest.mark.parametrize("channels", [2, 4])
def test_icnn_windows_draw_any_channel_count(tmp_path, channels):
    from pellucid.report.figures_icnn import crop, plot_windows

    win = crop(_images(channels, 1)[0], 2.0, 3.0, 6)
    assert win.shape == (6, 6, 3)
    rows = [{"filter": 0, "category": 1, "instability": 0.1, "windows": [win, win]}]
    assert _is_png(plot_windows({"run $x$ (icnn)": rows}, tmp_path / "w.png", DOLLAR_NAMES))


# --------------------------------------------------------------- other text with dollars
def test_path_figures_and_training_curves_with_dollar_names(tmp_path):
    from pellucid.metrics.paths import CalculationPaths, LayerSpan
    from pellucid.report.figures_paths import plot_class_similarity, plot_path_frequency
    from pellucid.report.html_figures import training_curves
    from pellucid.report.html_runs import RunRecord

    g = torch.Generator().manual_seed(0)
    cp = CalculationPaths(
        torch.rand(12, 6, generator=g) > 0.5,
        [LayerSpan("l$1", 0, 3), LayerSpan("l2", 3, 6)],
        torch.arange(12) % 3,
    )
    assert _is_png(plot_path_frequency(cp, 3, tmp_path / "f.png", DOLLAR_NAMES, "run $a"))
    assert _is_png(plot_class_similarity(cp, 3, tmp_path / "s.png", DOLLAR_NAMES, "$^$"))
    history = [{"epoch": 1, "train_loss": 1.0, "val_accuracy": 0.4}]
    run = RunRecord("price $^$", tmp_path, {}, "", {}, history)
    assert training_curves([run]).startswith("data:image/png;base64,")


# ------------------------------------------------------------- a stale cascade figure
def _sanity_result(checks: list[str]) -> dict:
    row = {"full": {"mean": 0.2}}
    if "cascading" in checks:
        row["cascading"] = {"mean": [0.5, 0.1]}
    return {"checks": checks, "layers": ["fc", "layer1"], "rows": {"centre": row}, "table": "t"}


def test_sanity_check_without_cascade_removes_the_old_cascade_figure(tmp_path):
    from pellucid.explain.sanity import CASCADE_FIGURE, MAPS_FIGURE, _write

    image, maps = _images(2, 1)[0], torch.rand(1, 1, SIZE, SIZE)
    shown = {"centre": {"trained": maps, "all random": maps}}
    _write(tmp_path, _sanity_result(["full", "cascading"]), image, shown)
    assert _is_png(tmp_path / CASCADE_FIGURE) and _is_png(tmp_path / MAPS_FIGURE)
    _write(tmp_path, _sanity_result(["full"]), image, shown)
    assert not (tmp_path / CASCADE_FIGURE).exists() and _is_png(tmp_path / MAPS_FIGURE)
    assert json.loads((tmp_path / "sanity.json").read_text())["checks"] == ["full"]
    (tmp_path / "unrelated.png").write_bytes(b"x")
    _write(tmp_path, _sanity_result(["full"]), image, shown)
    assert (tmp_path / "unrelated.png").exists()  # only pellucid's own figure is removed


def test_report_shows_no_cascade_figure_of_another_result(tmp_path):
    from pellucid.explain.sanity import CASCADE_FIGURE, MAPS_FIGURE
    from pellucid.report.html_runs import SANITY_FILE, RunRecord, sanity_sections

    folder = (tmp_path / SANITY_FILE).parent
    folder.mkdir()
    for name in (CASCADE_FIGURE, MAPS_FIGURE):  # e.g. a result written before this fix
        (folder / name).write_bytes(b"\x89PNG")
    for checks, n_figures in ((["full"], 1), (["full", "cascading"], 2)):
        run = RunRecord("r", tmp_path, {}, "", {}, sanity=_sanity_result(checks))
        (section,) = sanity_sections([run])
        assert len(section["figures"]) == n_figures
        assert section["figures"][-1]["caption"].startswith("One image's map")


# ----------------------------------------------------------------------- the commands
def test_show_data_prints_the_file_it_wrote(tmp_path, capsys):
    from pellucid.cli.main import main

    out = tmp_path / "runs"
    out.mkdir()  # an existing directory: matplotlib writes runs.png beside it
    argv = ["show-data", "--dataset", "shapes32", "--data-option", "n=16", "--n", "4"]
    assert main([*argv, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'runs.png'}"
    assert _is_png(tmp_path / "runs.png")
    assert main([*argv, "--out", str(tmp_path / "grid.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(tmp_path / "grid.png")


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-channel npz dataset with ``$`` in its class names, and a run trained on it."""
    from pellucid.cli.main import main

    root = tmp_path_factory.mktemp("npz2")
    rng = np.random.default_rng(0)
    data = root / "two.npz"
    np.savez(
        data,
        images=rng.random((30, 2, SIZE, SIZE)).astype(np.float32),
        labels=np.arange(30) % 3,
        class_names=np.array(DOLLAR_NAMES),
    )
    argv = ["train", "--dataset", "npz", "--data-option", f"path={data}", "--model", "convnet"]
    argv += ["--model-option", "widths=[4,4,4,4]", "--epochs", "1", "--batch-size", "8"]
    assert main([*argv, "--quiet", "--out", str(root / "run")]) == 0
    return data, root / "run"


def test_show_data_explain_and_compare_on_two_channels_and_dollar_names(npz_run, tmp_path):
    from pellucid.cli.main import main

    data, run = npz_run
    show = ["show-data", "--dataset", "npz", "--data-option", f"path={data}", "--quiet"]
    assert main([*show, "--out", str(tmp_path / "grid.png")]) == 0
    assert _is_png(tmp_path / "grid.png")
    explain = ["explain", str(run), "--explainer", "saliency", "--n", "2", "--quiet"]
    assert main([*explain, "--out", str(tmp_path / "ex")]) == 0
    assert len(list((tmp_path / "ex" / "overlays").glob("*.png"))) == 2
    compare = ["compare-explainers", str(run), "--explainers", "saliency", "centre"]
    assert main([*compare, "--n", "2", "--quiet", "--out", str(tmp_path / "cmp")]) == 0
    for name in ("gallery.png", "compare.json", "compare.md", "maps.safetensors"):
        assert (tmp_path / "cmp" / name).is_file()


def test_a_failed_figure_leaves_earlier_outputs_unmixed(npz_run, tmp_path, monkeypatch):
    from pellucid.explain.run import compare_run, explain_run
    from pellucid.report import figures_explain

    _, run = npz_run
    cmp, ex = tmp_path / "cmp", tmp_path / "ex"
    compare_run(run, ["centre"], n=2, out=cmp, progress=False)
    explain_run(run, ex, "centre", n=2, progress=False)
    before = {p: p.read_bytes() for p in [*cmp.iterdir(), *ex.rglob("*")] if p.is_file()}
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("drawing failed")
        return b"png"

    monkeypatch.setattr(figures_explain, "overlay_png", broken)
    monkeypatch.setattr(figures_explain, "save_gallery", lambda *a, **k: broken(), raising=True)
    with pytest.raises(RuntimeError, match="drawing failed"):
        explain_run(run, ex, "saliency", n=3, progress=False)
    with pytest.raises(RuntimeError, match="drawing failed"):
        compare_run(run, ["saliency"], n=3, out=cmp, progress=False)
    after = {p: p.read_bytes() for p in [*cmp.iterdir(), *ex.rglob("*")] if p.is_file()}
    assert after == before
    with pytest.raises(RuntimeError, match="drawing failed"):
        explain_run(run, tmp_path / "new", "saliency", n=3, progress=False)
    assert not (tmp_path / "new").exists()
