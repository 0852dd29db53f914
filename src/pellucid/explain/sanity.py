"""Sanity checks of explainers on a saved run: the library side of ``pellucid sanity-check``.

Adebayo et al. (2018), "Sanity Checks for Saliency Maps" (evaluation.md, "Sanity checks"):
every explainer explains the same test images with the trained model and with damaged
versions of it, and the Spearman rank correlation of each image's two maps says how much
the maps depend on what the model learnt (lower is better):

* ``full``: every weight re-initialised (:func:`pellucid.metrics.model_randomisation`);
* ``cascading`` / ``independent``: the model's blocks re-initialised from the output towards
  the input, cumulatively or one at a time (:func:`pellucid.metrics.cascading_randomisation`);
* ``data``: a model of the same architecture trained on permuted labels
  (``pellucid train --random-labels``; :func:`pellucid.metrics.data_randomisation`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pellucid.errors import ConfigError, DataError

__all__ = [
    "CASCADE_FIGURE",
    "CHECKS",
    "MAPS_FIGURE",
    "SANITY_DIR",
    "load_random_label_model",
    "sanity_columns",
    "sanity_run",
    "sanity_table",
]

#: The checks :func:`sanity_run` can run (``data`` needs a random-label run).
CHECKS = ("full", "cascading", "independent", "data")
SANITY_DIR = "sanity"  # default output directory inside the run (read by pellucid report)


def load_random_label_model(run: str | Path, model: nn.Module, config: Any) -> nn.Module:
    """The model of ``run``, checked to be a random-label training of the same model on the
    same data as ``config``'s run (same parameter names and shapes)."""
    from pellucid.training import load_run

    other, other_cfg = load_run(run, device=next(iter(model.parameters())).device)
    if not other_cfg.data.random_labels:
        raise ConfigError(
            f"{str(run)!r} was not trained on random labels; train one with the same flags and "
            "--random-labels"
        )
    if other_cfg.data.name != config.data.name or other_cfg.model.name != config.model.name:
        raise ConfigError(
            f"{str(run)!r} is {other_cfg.model.name} on {other_cfg.data.name}, the explained run "
            f"is {config.model.name} on {config.data.name}"
        )
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in other.state_dict().items()}
    if mine != theirs:
        diff = sorted(set(mine.items()) ^ set(theirs.items()))[:3]
        raise ConfigError(f"{str(run)!r} has another architecture (differs in {diff})")
    return other


def _cached(make: Callable[[nn.Module], torch.Tensor], *models: nn.Module | None) -> Callable:
    """``make`` with the maps of ``models`` (the trained and the random-label model)
    computed once for all checks; the damaged copies are new models every time."""
    store: dict[int, torch.Tensor] = {}
    keep = {id(m) for m in models if m is not None}

    def maps(m: nn.Module) -> torch.Tensor:
        if id(m) not in keep:
            return make(m)
        if id(m) not in store:
            store[id(m)] = make(m)
        return store[id(m)]

    return maps


def _rounded(values: torch.Tensor) -> list[float | None]:
    return [None if v != v else round(float(v), 5) for v in values.flatten().tolist()]


def _one_explainer(
    make: Callable[[nn.Module], torch.Tensor],
    model: nn.Module,
    checks: Sequence[str],
    layers: list[str],
    other: nn.Module | None,
    seed: int,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Every requested check of one explainer: scores, and the maps the figure shows."""
    from pellucid.metrics import cascading_randomisation, data_randomisation, model_randomisation
    from pellucid.metrics.sanity import SIMILARITY_MEANS

    def means(res: dict[str, Any]) -> dict[str, Any]:
        return {key: res[key] for key in SIMILARITY_MEANS.values()}

    row: dict[str, Any] = {}
    maps = {"trained": make(model)}
    if "full" in checks:
        res = model_randomisation(make, model, seed)
        row["full"] = {**means(res), "per_image": _rounded(res["rank_correlation"])}
    for mode in ("cascading", "independent"):
        if mode not in checks:
            continue
        kept: list[torch.Tensor] = []

        def recording(m: nn.Module, kept: list = kept) -> torch.Tensor:
            out = make(m)
            if m is not model:
                kept.append(out[:1])
            return out

        res = cascading_randomisation(recording, model, layers, mode=mode, seed=seed)
        row[mode] = {"layers": res["layers"], **means(res)}
        if mode == "cascading":
            maps.update({f"+{name}": m for name, m in zip(res["layers"], kept, strict=True)})
    if "data" in checks and other is not None:
        res = data_randomisation(make, model, other)
        row["data"] = {**means(res), "per_image": _rounded(res["rank_correlation"])}
        maps["random labels"] = make(other)[:1]
    maps["trained"] = maps["trained"][:1]
    return row, maps


def sanity_run(
    run: str | Path,
    explainers: Sequence[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    n: int = 16,
    checks: Sequence[str] = ("full", "cascading"),
    random_label_run: str | Path | None = None,
    layers: Sequence[str] | None = None,
    seed: int = 0,
    split: str = "test",
    target: str = "label",
    images: str = "spread",
    out: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Run the sanity checks of every explainer on ``n`` images of a run.

    Parameters
    ----------
    run : run directory
    explainers : names (default: every registered one but ``neuromask-reference``)
    options : explainer name -> options
    n, split, images : which images (:func:`pellucid.explain.evaluate.image_indices`)
    checks : any of :data:`CHECKS`; ``"data"`` needs ``random_label_run`` (and is added
        when one is given)
    random_label_run : a run of the same model and data trained with ``--random-labels``
    layers : blocks in the order the cascade randomises them (default: every block with
        parameters, from the last to run to the first)
    seed : seed of the re-initialisations
    target : explain the true class (``"label"``) or the trained model's prediction
    out : directory for ``sanity.json``, ``sanity.md``, ``sanity_cascade.png`` and
        ``sanity_maps.png`` (nothing written when None)

    Returns
    -------
    dict
        ``"rows"``: explainer -> check -> scores (``mean`` and ``mean_abs`` rank correlation;
        per step for the cascades, whose ``layers`` name the block each step adds), plus the
        images, setting and ``"table"`` (Markdown).
    """
    from tqdm.auto import tqdm

    from pellucid.config import load_config
    from pellucid.explain import build_explainer
    from pellucid.explain.evaluate import check_explainer_options, image_indices, load_images
    from pellucid.explain.run import DEFAULT_EXCLUDED, _targets
    from pellucid.metrics.randomise import execution_order, get_block, parameter_blocks
    from pellucid.registry import EXPLAINERS
    from pellucid.state import model_state
    from pellucid.training.setup import resolve_device

    checks = list(dict.fromkeys([*checks, *(["data"] if random_label_run else [])]))
    unknown = [c for c in checks if c not in CHECKS]
    if unknown or not checks:
        raise ConfigError(f"unknown or no checks {unknown}; choose from {list(CHECKS)}")
    if "data" in checks and random_label_run is None:
        raise ConfigError("the data randomisation check needs --random-label-run RUN")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise DataError(f"--out {out} exists and is not a directory")
    names = list(explainers or [e for e in EXPLAINERS.names() if e not in DEFAULT_EXCLUDED])
    for name in names:
        EXPLAINERS.get(name)
    options = check_explainer_options(names, options)
    model, batch, ds = load_images(run, n, None, split, None, resolve_device(device), images)
    config = load_config(Path(run) / "config.yaml")
    other = load_random_label_model(random_label_run, model, config) if random_label_run else None
    dev = next(iter(model.parameters())).device
    x = batch.image.to(dev)
    tgt = _targets(model, batch, target).to(dev)
    if layers is None:
        blocks = parameter_blocks(model)
        with model_state(model), torch.no_grad():
            _, order = execution_order(model, blocks, lambda: model(x[:1]))
        layers = order[::-1]
    else:
        layers = list(layers)
        for name in layers:
            get_block(model, name)
    rows, shown = {}, {}
    bar = tqdm(names, desc="sanity checks", disable=not progress, leave=False)
    for name in bar:
        bar.set_postfix_str(name)

        def make(m: nn.Module, name: str = name) -> torch.Tensor:
            return build_explainer(name, m, **options.get(name, {})).explain(x, tgt).detach()

        rows[name], shown[name] = _one_explainer(
            _cached(make, model, other), model, checks, layers, other, seed
        )
    result = {
        "run": str(run),
        "random_label_run": str(random_label_run) if random_label_run else None,
        "random_label_test_accuracy": _accuracy(random_label_run),
        "dataset": ds.info.name,
        "split": split,
        "n": len(x),
        "indices": image_indices(len(ds), n, images),
        "target": target,
        "seed": seed,
        "checks": checks,
        "layers": layers,
        "options": options,
        "rows": rows,
        "command": " ".join(["pellucid", *sys.argv[1:]]) if sys.argv else "",
    }
    result["table"] = sanity_table(result)
    if out is not None:
        _write(Path(out), result, batch.image[0], shown)
    return result


def _accuracy(run: str | Path | None) -> float | None:
    from pellucid.io import read_json

    if run is None or not (Path(run) / "metrics.json").is_file():
        return None
    return read_json(Path(run) / "metrics.json").get("test_accuracy")


#: the similarity measures of a sanity table: key of the mean in a check's scores -> name
SIMILARITIES = {
    "mean": "Spearman rank correlation",
    "mean_abs": "Spearman rank correlation of absolute values",
    "mean_ssim": "SSIM",
    "mean_hog": "HOG correlation",
}


def sanity_columns(
    result: dict[str, Any], similarity: str = "mean"
) -> list[tuple[str, Callable[[dict], Any]]]:
    """The columns of a :func:`sanity_run` result: (label, row -> the mean ``similarity``,
    a key of :data:`SIMILARITIES`; None where a result predates it), one per check and
    cascade step (labelled by the block each step adds)."""
    checks, layers = result["checks"], result["layers"]
    key = similarity
    cols: list[tuple[str, Callable[[dict], Any]]] = []
    if "full" in checks:
        cols.append(("all weights random", lambda r: r["full"].get(key)))
    for mode, word in (("cascading", "cascade +"), ("independent", "only ")):
        if mode in checks:
            for i, layer in enumerate(layers):
                cols.append(
                    (f"{word}{layer}", lambda r, i=i, m=mode: (r[m].get(key) or [None] * 99)[i])
                )
    if "data" in checks:
        cols.append(("random labels", lambda r: r["data"].get(key)))
    return cols


def sanity_table(result: dict[str, Any]) -> str:
    """Markdown: one table per similarity measure (Spearman, of absolute values, SSIM, HOG),
    one row per explainer, the mean of each check (cascade columns name the block each step
    adds; the last step has every block random)."""
    parts = []
    for similarity, label in SIMILARITIES.items():
        cols = sanity_columns(result, similarity)
        head = "| explainer | " + " | ".join(f"{c} ↓" for c, _ in cols) + " |"
        lines = [f"**{label}**", "", head, "|---|" + "---:|" * len(cols)]
        for name, row in result["rows"].items():
            cells = [_cell(get(row)) for _, get in cols]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    note = (
        f"\n\nSimilarity between the maps of the trained and the damaged model, mean over "
        f"{result['n']} {result['split']} images of {result['dataset']} (target = "
        f"{result['target']}; lower = the maps depend more on what the model learnt). SSIM and "
        f"HOG compare the maps' absolute values, each scaled to [0, 1] (Adebayo et al. 2018)."
    )
    if any(
        line.endswith("| – |") or "| – |" in line for part in parts for line in part.split("\n")
    ):
        note += (
            " – = undefined on every image: the trained or the damaged model's maps are "
            "constant there (all zero, e.g. Grad-CAM's ReLU once the layers above its target "
            "are random), so there is no ranking to correlate; means are over the images "
            "where the similarity is defined."
        )
    return "\n\n".join(parts) + note


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return f"{v:.3f}"


#: the figures :func:`sanity_run` writes next to ``sanity.json``
CASCADE_FIGURE, MAPS_FIGURE = "sanity_cascade.png", "sanity_maps.png"


def _write(out: Path, result: dict[str, Any], image: torch.Tensor, shown: dict) -> None:
    """Figures first (drawing is what fails on unusual data), then ``sanity.json`` and
    ``sanity.md``; the cascade figure of an earlier result is removed when this one has no
    cascading check, so that no figure sits next to results it does not belong to."""
    from pellucid.io import atomic_write_text, write_json
    from pellucid.report.figures_sanity import save_cascade_curves, save_sanity_maps

    save_sanity_maps(image, shown, out / MAPS_FIGURE)
    if "cascading" in result["checks"]:
        save_cascade_curves(result, out / CASCADE_FIGURE)
    else:
        (out / CASCADE_FIGURE).unlink(missing_ok=True)
    write_json(out / "sanity.json", result)
    atomic_write_text(out / "sanity.md", result["table"] + "\n")
