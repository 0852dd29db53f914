"""``pellucid demo``: the main job on bundled data, in a few minutes on 2 CPU cores.

1. trains a standard ResNet-8 on the bundled MNIST sample and, next to it, every
   interpretable method this version has (CSG, decoupling, ICNN) on the same data and budget;
2. trains a small conv net on cluttered-mnist (digits placed on a 64x64 canvas with clutter,
   so that explanations can be checked against the digit's mask) and explains test images
   with NeuroMask and every baseline (``compare-explainers``), then runs the cascading
   randomisation sanity check of the fast explainers (``sanity-check``) and localises the
   digits with the network's own evidence: its class activation map and the blurred input
   gradient of each class's most active filters (``localise --protocol cam / gradient``);
3. detects adversarial examples (FGSM, PGD, C&W) from the standard network's activations, the
   CSG network's gate groups and the decoupled network's calculation paths
   (``detect-adversarial``; skipped with a note when torchattacks is not installed);
4. writes ``OUT/report.html`` from the saved results and prints a compact table.

Finished runs are reused unless ``fresh``; every step shows a progress bar.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pellucid.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig
from pellucid.io import read_json

EXPLAIN_RUN = "explain-cluttered"
ADVERSARIAL_RUNS = ("standard", "csg", "decoupling")
# the sanity check's explainers in the demo: the fast ones and the controls (NeuroMask's and
# occlusion's full randomisation is in the compare-explainers table)
SANITY_EXPLAINERS = ("gradcam", "saliency", "integrated-gradients", "centre", "random")
# the localisation protocols the demo runs on the explained run (the per-filter protocol needs
# filters assigned to classes, which the CSG comparison on shapes shows: README, Localisation)
LOCALISATION_PROTOCOLS = ("cam", "gradient")
# the share of pixels a map keeps: about a digit's area (its strokes cover 3 % of the canvas on
# average, so the paper's 30 % could not reach IoU 0.3: README, Localisation)
LOCALISATION_Q = 0.05


def demo_configs(
    epochs: int = 5, limit: int | None = None, out: Path | None = None
) -> dict[str, RunConfig]:
    """The runs the demo trains, by name, in training order (methods this version does not
    have are left out). ``limit`` uses about that many images per dataset (for tests);
    ``out`` is the demo directory (the decoupling run starts from ``out/standard``)."""
    from pellucid.registry import METHODS

    opts = {"n": limit} if limit else {}
    train = TrainConfig(epochs=epochs, optimizer="sgd", lr=0.1, schedule="onecycle", seed=0)
    mnist = DataConfig(name="mnist", augment="shift", options=opts)
    resnet = ModelConfig(name="resnet8")
    runs = {
        "standard": RunConfig(
            data=mnist, model=resnet, method=MethodConfig(name="standard"), train=train
        ),
        "csg": RunConfig(
            data=mnist, model=resnet, method=MethodConfig("csg", {"density": 0.1}), train=train
        ),
    }
    if "decoupling" in METHODS:
        # fine-tuned from the standard run, as the paper does (see benchmarks/decoupling.py)
        runs["decoupling"] = RunConfig(
            data=mnist,
            model=resnet,
            method=MethodConfig(name="decoupling"),
            train=dataclasses.replace(train, epochs=max(1, epochs - 1), lr=0.05),
            init=str(Path(out) / "standard") if out is not None else None,
        )
    if "icnn" in METHODS:
        runs["icnn"] = RunConfig(
            data=mnist, model=resnet, method=MethodConfig(name="icnn"), train=train
        )
    runs[EXPLAIN_RUN] = RunConfig(
        data=DataConfig(name="cluttered-mnist", batch_size=128, augment="none", options=opts),
        model=ModelConfig(name="convnet", options={"widths": [16, 32, 64, 64]}),
        method=MethodConfig(name="standard"),
        train=TrainConfig(epochs=epochs, optimizer="adamw", lr=3e-3, weight_decay=1e-4, seed=0),
    )
    return runs


COLUMNS = (
    ("test_accuracy", "test acc"),
    ("mis", "MIS"),
    ("class_share", "class share"),
    ("gate_density", "gate dens."),
    ("location_instability", "loc. instab."),
    ("flops_ratio", "FLOPs ratio"),
    ("train_seconds", "train s"),
)


def _train_or_reuse(name: str, config: RunConfig, run: Path, fresh: bool, quiet: bool) -> dict:
    """Train the demo's ``name`` run into ``run``, or reuse it when finished. A directory
    that is not this demo run (other files, or a run of another config) is refused, never
    removed or adopted; ``fresh`` removes only this demo's own run."""
    from pellucid.training import train_run

    if run.exists():
        _check_demo_dir(name, config, run)
    if fresh and run.exists():
        shutil.rmtree(run)
    if (run / "metrics.json").is_file():
        if not quiet:
            print(f"[{name}] reusing finished run {run} (--fresh to retrain)")
        return read_json(run / "metrics.json")
    if run.exists():
        shutil.rmtree(run)  # an unfinished run of this demo: start it again
    if not quiet:
        print(f"[{name}] training {config.model.name} on {config.data.name} ({config.method.name})")
    return train_run(config, run, progress=not quiet)


def _check_demo_dir(name: str, config: RunConfig, run: Path) -> None:
    """Refuse ``run`` unless it is empty or holds this demo's ``name`` run (its config.yaml
    is ``config``): the demo removes unfinished runs and reuses finished ones, so anything
    else there would be lost or passed off as the demo's."""
    from pellucid.config import load_config
    from pellucid.errors import PellucidError

    if not run.is_dir():
        raise PellucidError(f"demo: {run} is a file, not the {name} run directory")
    if not any(run.iterdir()):
        return
    what = None
    if not (run / "config.yaml").is_file():
        what = "files that are not a pellucid run"
    else:
        try:
            saved = load_config(run / "config.yaml")
        except PellucidError:
            saved = None
        if saved is None or saved.replace(info={}) != config.replace(info={}):
            what = "a run of another config"
    if what is not None:
        raise PellucidError(
            f"demo: {run} holds {what}, not this demo's {name} run; the demo would remove or "
            "reuse it: pass another --out, or move it away"
        )


def run_demo(
    out: Path,
    fresh: bool = False,
    epochs: int = 5,
    quiet: bool = False,
    n_explain: int = 16,
    explain_iterations: int | None = None,
    report: bool = True,
    limit: int | None = None,
    n_adversarial: int = 200,
    n_sanity: int = 8,
    n_localise: int = 500,
    adversarial_detectors: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train (or reuse) every demo run under ``out``, explain, write the report, print a table.

    Returns ``{run name: metrics}`` plus ``"explanations"`` (the compare-explainers rows),
    ``"sanity"`` (the sanity-check rows; ``n_sanity`` images, 0 skips the step),
    ``"localisation"`` (protocol -> summary; ``n_localise`` test images, 0 skips the step),
    ``"adversarial"`` and ``"report"`` (its path) when written. ``adversarial_detectors``:
    the detectors the adversarial step scores (default all; see
    :func:`pellucid.apps.adversarial.detect_adversarial`).
    """
    from pellucid.errors import ConfigError
    from pellucid.explain.run import compare_run

    if isinstance(n_explain, bool) or not isinstance(n_explain, int) or n_explain < 1:
        raise ConfigError(f"demo: n_explain (--n-explain) must be an integer >= 1, got {n_explain}")
    counts = {"n_sanity": n_sanity, "n_localise": n_localise, "n_adversarial": n_adversarial}
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"demo: {key} ({flag}) must be an integer >= 0 (0 skips the step)")
    out = Path(out)
    start = time.perf_counter()
    results: dict[str, Any] = {}
    configs = demo_configs(epochs, limit, out)
    for name, config in configs.items():  # every directory checked before any is touched
        if (out / name).exists():
            _check_demo_dir(name, config, out / name)
    for name, config in configs.items():
        results[name] = _train_or_reuse(name, config, out / name, fresh, quiet)

    explain_dir = out / EXPLAIN_RUN / "explanations"
    if fresh or not (explain_dir / "compare.json").is_file():
        if not quiet:
            print(f"[explain] NeuroMask and baselines on {n_explain} cluttered-mnist test images")
        options = {"neuromask": {"iterations": explain_iterations}} if explain_iterations else {}
        cmp = compare_run(
            out / EXPLAIN_RUN,
            n=n_explain,
            options=options,
            sanity=True,
            out=explain_dir,
            progress=not quiet,
        )
        rows = cmp["rows"]
    else:
        rows = read_json(explain_dir / "compare.json")["rows"]
        if not quiet:
            print(f"[explain] reusing {explain_dir}")
    results["explanations"] = rows
    if n_sanity > 0:
        results["sanity"] = _sanity(out / EXPLAIN_RUN, n_sanity, fresh, quiet)
    if n_localise > 0:
        results["localisation"] = _localisation(out / EXPLAIN_RUN, n_localise, fresh, quiet)
    if n_adversarial > 0:
        found = _adversarial(out, configs, n_adversarial, adversarial_detectors, fresh, quiet)
        results["adversarial"] = found

    if report:
        from pellucid.report.html import build_report

        if not quiet:
            print("[report] building the HTML report from the saved runs ...")
        runs = [out / name for name in configs]
        path = build_report(runs, out / "report.html", title="pellucid demo")
        results["report"] = str(path.resolve())
    if not quiet:
        _print_summary(results, out, time.perf_counter() - start)
    return results


def _sanity(run: Path, n: int, fresh: bool, quiet: bool) -> dict[str, Any]:
    """Cascading randomisation of the :data:`SANITY_EXPLAINERS` on ``n`` test images of the
    explained run (saved in RUN/sanity, reused unless ``fresh``): the per-explainer rows."""
    from pellucid.explain.sanity import SANITY_DIR, sanity_run

    saved = run / SANITY_DIR / "sanity.json"
    if saved.is_file() and not fresh:
        if not quiet:
            print(f"[sanity] reusing {saved.parent}")
        return read_json(saved)["rows"]
    if not quiet:
        print(f"[sanity] cascading randomisation of {len(SANITY_EXPLAINERS)} explainers")
    result = sanity_run(run, list(SANITY_EXPLAINERS), n=n, out=run / SANITY_DIR,
                        progress=not quiet)  # fmt: skip
    return result["rows"]


def _localisation(run: Path, n: int, fresh: bool, quiet: bool) -> dict[str, Any]:
    """The :data:`LOCALISATION_PROTOCOLS` on ``n`` test images of the explained run, saved as
    the report reads them (``pellucid localise --save``; reused unless ``fresh``): protocol
    -> summary."""
    from dataclasses import asdict

    from pellucid.apps.filter_localisation import filter_localise_run
    from pellucid.apps.localisation import localise_run
    from pellucid.io import write_json
    from pellucid.report.html_runs import LOCALISATION_FILES

    found: dict[str, Any] = {}
    for protocol in LOCALISATION_PROTOCOLS:
        path = run / LOCALISATION_FILES[protocol]
        if path.is_file() and not fresh:
            saved = read_json(path)
            per_image = ("iou", "pointing", "images")
            found[protocol] = {k: v for k, v in saved.items() if k not in per_image}
            continue
        if not quiet:
            print(f"[localise] {protocol} protocol on {n} cluttered-mnist test images")
        if protocol == "cam":
            result = localise_run(str(run), "gradcam", n=n, q=LOCALISATION_Q)
        else:
            result = filter_localise_run(str(run), protocol, n=n, q=LOCALISATION_Q)
        write_json(path, asdict(result))
        found[protocol] = result.summary()
    return found


def _adversarial(
    out: Path,
    configs: dict[str, RunConfig],
    n: int,
    detectors: Sequence[str] | None,
    fresh: bool,
    quiet: bool,
) -> dict[str, Any]:
    """Detection results of the :data:`ADVERSARIAL_RUNS` by ``detectors`` (saved as
    RUN/adversarial.json, reused unless ``fresh``); empty when torchattacks is missing."""
    from pellucid.apps.adversarial import detect_adversarial_run
    from pellucid.errors import PellucidError
    from pellucid.io import write_json
    from pellucid.report.html_runs import ADVERSARIAL_FILE

    try:
        from pellucid.apps.attacks import torchattacks_module

        torchattacks_module()
    except PellucidError as err:
        if not quiet:
            print(f"[adversarial] skipped: {err}")
        return {}
    found: dict[str, Any] = {}
    for name in (r for r in ADVERSARIAL_RUNS if r in configs):
        path = out / name / ADVERSARIAL_FILE
        if path.is_file() and not fresh:
            found[name] = read_json(path)
            continue
        if not quiet:
            print(f"[adversarial] FGSM, PGD and C&W on {n} test images of the {name} run")
        try:
            found[name] = detect_adversarial_run(
                str(out / name), n=n, folds=5, detectors=detectors
            ).to_dict()
        except PellucidError as err:  # e.g. too few correct predictions after a short run
            if not quiet:
                print(f"[adversarial] {name}: skipped: {err}")
            continue
        write_json(path, found[name])
    return found


def _print_summary(results: dict[str, Any], out: Path, seconds: float) -> None:
    skip = ("explanations", "report", "adversarial", "sanity", "localisation")
    runs = {k: v for k, v in results.items() if k not in skip}
    shown = [(k, label) for k, label in COLUMNS if any(k in m for m in runs.values())]
    head = f"{'run':<19}{'dataset':<17}" + "".join(f"{label:>13}" for _, label in shown)
    print("\n" + head)
    for name, m in runs.items():
        cells = "".join(f"{_cell(m.get(k)):>13}" for k, _ in shown)
        print(f"{name:<19}{m.get('dataset', ''):<17}{cells}")
    rows = results.get("explanations") or {}
    if rows:
        keys = ["pointing_game", "energy_pointing_game", "deletion_auc", "insertion_auc"]
        keys += ["sanity_rank_correlation", "seconds_per_image"]
        labels = ["pointing ↑", "energy ↑", "deletion ↓", "insertion ↑", "sanity ↓", "s/image ↓"]
        print("\n" + f"{'explainer':<22}" + "".join(f"{x:>13}" for x in labels))
        for name, row in rows.items():
            print(f"{name:<22}" + "".join(f"{_cell(row.get(k)):>13}" for k in keys))
    sanity = results.get("sanity") or {}
    if sanity:
        print("\nsanity check: rank correlation with the trained model's maps ↓ as the blocks")
        print("are re-initialised from the output (cascade; last step: every weight random)")
        layers = next(iter(sanity.values()))["cascading"]["layers"]
        print(f"{'explainer':<22}" + "".join(f"{'+' + name:>9}" for name in layers))
        for name, row in sanity.items():
            print(f"{name:<22}" + "".join(f"{_cell(v):>9}" for v in row["cascading"]["mean"]))
    localisation = results.get("localisation") or {}
    if localisation:
        print("\nlocalisation of the digit (explained run, test images; IoU of the map's top")
        print("pixels with the digit's mask, share of images above the threshold, pointing game)")
        print(f"{'protocol':<22}{'images':>9}{'top q':>9}{'mean IoU':>13}"
              f"{'IoU share':>18}{'pointing':>13}")  # fmt: skip
        for protocol, r in localisation.items():
            share = f"{_cell(r['share_above'])} (> {r['threshold']})"
            print(f"{protocol:<22}{r['n']:>9}{r['q']:>9}{_cell(r['mean_iou']):>13}"
                  f"{share:>18}{_cell(r['pointing_game']):>13}")  # fmt: skip
    adversarial = results.get("adversarial") or {}
    if adversarial:
        first = next(iter(adversarial.values()))["attacks"]
        scored = next(iter(first[0]["auc"].values()), {}) if first else {}
        det = "logistic" if "logistic" in scored else next(iter(scored), "logistic")
        how = " (cross-validated)" if det in ("logistic", "forest") else ""
        print(f"\nadversarial detection, ROC-AUC of the {det} detector{how}")
        attacks = [a["attack"] for a in first]
        print(f"{'run':<14}{'feature':<14}" + "".join(f"{a:>9}" for a in attacks))
        for name, res in adversarial.items():
            for feature in res["features"]:
                cells = [a["auc"][feature].get(det) for a in res["attacks"]]
                print(f"{name:<14}{feature:<14}" + "".join(f"{_cell(c):>9}" for c in cells))
    print(f"\nruns written to {out.resolve()} ({seconds:.0f} s)")
    if "report" in results:
        print(f"report: {results['report']}")


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)
