"""Explain a saved run: the library side of ``pellucid explain`` and
``pellucid compare-explainers``. Everything written goes through atomic writes."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from pellucid.errors import ConfigError, PellucidError
from pellucid.explain.evaluate import (
    compare,
    image_indices,
    load_images,
    markdown_table,
)
from pellucid.explain.scoring import (
    differences_table,
    paired_difference,
    score_maps,
    summarise,
    summarise_by_prediction,
)
from pellucid.io import atomic_write_bytes, atomic_write_text, save_tensors, write_json

DEFAULT_EXCLUDED = ("neuromask-reference",)


def _targets(model: torch.nn.Module, batch: Any, target: str) -> torch.Tensor:
    if target == "label":
        return batch.label
    return _probabilities(model, batch.image).argmax(1)


def _probabilities(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's softmax probabilities (N, K) of intact ``images``, on the CPU."""
    from pellucid.state import model_device, model_state

    with model_state(model), torch.no_grad():
        return torch.softmax(model(images.to(model_device(model))), 1).cpu()


def _by_prediction_table(by_prediction: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The scores of :func:`compare_run` apart for the images the model classifies correctly
    and those it misclassifies (the maps explain the true class in both)."""
    rows = {
        f"{name}, {part} ({d[part]['n']})": {
            k: v for k, v in d[part].items() if k not in ("n", "pointing_hits")
        }
        for name, d in by_prediction.items()
        for part in ("correct", "misclassified")
        if d[part]["n"]
    }
    head = "Scores apart for the images the model classifies correctly and those it misclassifies"
    return head + " (target = true class; images in brackets):\n\n" + markdown_table(rows)


def explain_run(
    run: str | Path,
    out: Path,
    explainer: str = "neuromask",
    options: dict[str, Any] | None = None,
    n: int = 16,
    dataset: str | None = None,
    dataset_options: dict[str, Any] | None = None,
    split: str = "test",
    target: str = "predicted",
    device: str = "auto",
    progress: bool = True,
    images: str = "spread",
) -> dict[str, Any]:
    """Explain ``n`` images of a run's ``split`` (evenly spaced, or the first ``n`` with
    ``images="first"``; :func:`~pellucid.explain.evaluate.image_indices`) and write to
    ``out``:

    - ``overlays/NNN_<class>.png``: image | map | image x map;
    - ``maps.safetensors``: ``maps`` (N, 1, H, W), ``images``, ``labels``, ``targets``;
    - ``metrics.json``: the images' ``indices`` in the split, per-image scores (pointing
      game etc. where the dataset has masks, deletion/insertion AUC always), their summary,
      the model's ``predicted`` class and ``target_probability`` (softmax probability of
      the explained class on the intact image; NeuroMask adds ``kept_probability``, on the
      image its mask keeps), the explainer's options and the command.

    A map of a class the model all but rules out (``target_probability`` near 0, e.g. the
    true class of a misclassified image) answers a question the model barely has evidence
    for: on cluttered-mnist such images are where NeuroMask's pointing misses are
    (``docs/explainer-benchmarks.md``, "On test images nobody looked at"). The overlay
    titles show the probability.
    """
    from tqdm.auto import tqdm

    from pellucid.explain import build_explainer
    from pellucid.report.figures_explain import overlay_png
    from pellucid.training.setup import resolve_device

    if (Path(out) / "config.yaml").is_file() and (Path(out) / "model.safetensors").is_file():
        raise PellucidError(
            f"--out {out} is a run directory: explain writes metrics.json, which would replace "
            f"the run's; write the explanations next to it, e.g. --out {Path(out) / 'explain'}"
        )
    model, batch, ds = load_images(
        run, n, dataset, split, dataset_options, resolve_device(device), images
    )
    indices = image_indices(len(ds), n, images)
    probs = _probabilities(model, batch.image)  # (N, K)
    targets = batch.label if target == "label" else probs.argmax(1)
    p_target = probs.gather(1, targets[:, None].long()).squeeze(1)  # (N,)
    exp = build_explainer(explainer, model, **(options or {}))
    dev = next(iter(model.parameters())).device
    with warnings.catch_warnings():  # target_probability is recorded (and the CLI notes it)
        warnings.filterwarnings("ignore", message="NeuroMask: the model gives")
        maps = exp.explain(batch.image.to(dev), targets.to(dev)).cpu()
    masks = batch.mask
    scores = score_maps(model, batch.image.to(dev), maps.to(dev), targets.to(dev), _dev(masks, dev))
    names = ds.info.class_names
    drawn: dict[str, bytes] = {}  # drawn before anything is written: a failure leaves no mix
    for i in tqdm(range(len(maps)), desc="overlays", disable=not progress, leave=False):
        label, tgt = int(batch.label[i]), int(targets[i])
        title = f"{explainer}: class {names[tgt]}, p={p_target[i]:.2f} (label {names[label]})"
        mask = masks[i] if masks is not None else None
        drawn[f"{i:03d}_{tgt}.png"] = overlay_png(batch.image[i], maps[i], title, mask)
    summary = summarise(scores, targets)
    info = getattr(exp, "config", lambda: {})()
    record = {
        "run": str(run),
        "explainer": explainer,
        "options": info or dict(options or {}),
        "target": target,
        "dataset": dataset or ds.info.name,
        "split": split,
        "images": images,
        "indices": indices,
        "summary": summary,
        "per_image": {k: [round(float(x), 5) for x in v] for k, v in scores.items()},
        "predicted": probs.argmax(1).tolist(),
        "target_probability": [round(float(x), 5) for x in p_target],
        "command": " ".join(["pellucid", *sys.argv[1:]]) if sys.argv else "",
    }
    kept = getattr(exp, "last_info", {}).get("probability")
    if kept is not None:
        record["kept_probability"] = [round(float(x), 5) for x in kept]
    tensors = {"maps": maps, "images": batch.image, "labels": batch.label, "targets": targets}
    _write_explanation(Path(out), drawn, tensors, record)
    return record


def _write_explanation(
    out: Path, overlays: dict[str, bytes], tensors: dict[str, torch.Tensor], record: dict
) -> None:
    """Write what :func:`explain_run` computed and drew: the overlays (an earlier explain's
    removed, not mixed with these), ``maps.safetensors`` and ``metrics.json`` last."""
    folder = out / "overlays"
    if folder.is_dir():
        for old in folder.glob("[0-9][0-9][0-9]_*.png"):
            old.unlink()
    for name, png in overlays.items():
        atomic_write_bytes(folder / name, png)
    save_tensors(out / "maps.safetensors", tensors)
    write_json(out / "metrics.json", record)


def compare_run(
    run: str | Path,
    explainers: list[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    n: int = 32,
    dataset: str | None = None,
    dataset_options: dict[str, Any] | None = None,
    split: str = "test",
    target: str = "label",
    sanity: bool = False,
    out: Path | None = None,
    device: str = "auto",
    progress: bool = True,
    against: str | None = None,
    images: str = "spread",
    road: bool = False,
) -> dict[str, Any]:
    """Every explainer (default: all registered but the slow ``neuromask-reference``) on the
    same ``n`` images (evenly spaced, or the first ``n`` with ``images="first"``); returns
    ``{"rows", "by_prediction", "table"}`` and, with ``out``, writes ``compare.json``,
    ``compare.md``, ``gallery.png`` and ``maps.safetensors``.

    ``by_prediction`` holds each explainer's scores apart for the images the model
    classifies correctly and those it misclassifies
    (:func:`~pellucid.explain.scoring.summarise_by_prediction`); with ``target="label"`` and
    at least one misclassified image, ``compare.md`` shows them as a second table. A
    pointing game near its ceiling is often decided by the misclassified images alone.

    With ``against`` (one of the explainers), every other explainer's score minus that one's
    is added with a paired bootstrap 95 % interval over the images
    (:func:`~pellucid.explain.scoring.paired_difference`): ``"differences"`` in the result
    and ``compare.json``, and a second table in ``compare.md``. ``road`` adds ROAD deletion
    (``deletion_auc_road``: deleted pixels imputed from their neighbours)."""
    from pellucid.registry import EXPLAINERS
    from pellucid.report.figures_explain import save_gallery
    from pellucid.training.setup import resolve_device

    names = explainers or [e for e in EXPLAINERS.names() if e not in DEFAULT_EXCLUDED]
    if against is not None and names == [against]:
        raise ConfigError(
            f"--against {against!r} needs other explainers to compare with it; it is the only "
            "one run"
        )
    if against is not None and against not in names:
        raise ConfigError(
            f"--against {against!r} is not among the explainers compared: {', '.join(names)}"
        )
    model, batch, ds = load_images(
        run, n, dataset, split, dataset_options, resolve_device(device), images
    )
    predicted = _targets(model, batch, "predicted")
    batch.label = predicted if target == "predicted" else batch.label
    res = compare(model, batch, names, options, sanity=sanity, progress=progress, road=road)
    table = markdown_table(res["rows"])
    by_prediction = {
        name: summarise_by_prediction(res["scores"][name], batch.label, predicted) for name in names
    }
    if target == "label" and bool((predicted != batch.label).any()):
        table += "\n\n" + _by_prediction_table(by_prediction)
    differences = None
    if against is not None:
        differences = {
            name: {
                key: paired_difference(
                    res["scores"][name], res["scores"][against], batch.label, key
                )
                for key in res["scores"][against]
            }
            for name in names
            if name != against
        }
        table += "\n\n" + differences_table(differences, against)
    result = {
        "run": str(run),
        "dataset": dataset or ds.info.name,
        "split": split,
        "n": len(batch),
        "images": images,
        "indices": image_indices(len(ds), n, images),
        "target": target,
        "rows": res["rows"],
        "by_prediction": by_prediction,
        "table": table,
    }
    if differences is not None:
        result["against"], result["differences"] = against, differences
    if out is not None:
        out = Path(out)
        class_names = ds.info.class_names
        titles = [class_names[int(t)] for t in batch.label]
        # the figure first: if drawing fails, the results of an earlier run stay unmixed
        save_gallery(batch.image, res["maps"], out / "gallery.png", titles, batch.mask)
        write_json(out / "compare.json", {**result, "options": options or {}})
        atomic_write_text(out / "compare.md", table + "\n")
        save_tensors(
            out / "maps.safetensors",
            {**{f"maps.{k}": v for k, v in res["maps"].items()}, "images": batch.image},
        )
    return result


def _dev(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return t.to(device) if t is not None else None
