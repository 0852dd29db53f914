"""Regenerate the results tables in README.md and docs/*.md from benchmarks/results/*.json.

Each table sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` markers;
tables are never typed by hand.

    python benchmarks/readme_tables.py
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from readme_crosscheck import table_adaptive, table_adaptive_strength, table_crosscheck
from readme_explainers import (
    table_explainers,
    table_explainers_peers,
    table_explainers_pointing,
    table_explainers_road,
    table_explainers_seeds,
)
from readme_sanity import table_sanity
from readme_validation import (
    table_explainers_rest,
    table_explainers_validation,
    table_explainers_variants,
)
from readme_verdict import SOURCES as VERDICT_SOURCES
from readme_verdict import table_explainers_verdict

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def table_train_speed(r: dict) -> str:
    return "\n".join(
        [
            "| loop | images/s | overhead |",
            "| --- | ---: | ---: |",
            f"| hand-written PyTorch loop | {r['hand_images_per_second']} | - |",
            f"| `pellucid.training.fit` | {r['pellucid_images_per_second']} | "
            f"{r['overhead_percent']} % |",
            "",
            f"ResNet-8, MNIST sample, batch {r['batch_size']}, median of "
            f"{len(r['hand_epoch_seconds'])} alternating epochs; `{r['command']}` "
            f"({r['machine']['date']}, {r['machine']['threads']} threads, torch "
            f"{r['machine']['torch']}).",
        ]
    )


def table_distributed(r: dict) -> str:
    rows = [
        "| how | training s | images/s | speed-up | whole command, s | test accuracy |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, arm in r["arms"].items():
        acc = " / ".join(f"{a:.4f}" for a in arm["test_accuracy"])
        rows.append(
            f"| {name} | {arm['train_seconds']} | {arm['images_per_second']} | "
            f"{arm['speedup_vs_one_thread']}x | {arm['wall_seconds']} | {acc} |"
        )
    m = r["machine"]
    rows += [
        "",
        f"{r['model']} on {r['dataset']}, {r['epochs']} epochs, global batch {r['batch_size']} "
        f"({r['train_images_per_epoch']} images per epoch), seed 0; median of {r['repeats']} "
        "alternating repeats (test accuracy: each repeat). Training seconds are the loop's own "
        "epoch timings (rank 0's under torchrun); the whole command adds data generation, "
        f"start-up and evaluation. Speed-up is against one process on one thread. "
        f"`{r['command']}` ({m['date']}, {m['cpus']} CPUs: {m['cpu']}, torch {m['torch']}).",
    ]
    return "\n".join(rows)


def table_localisation(r: dict) -> str:
    def cell(d: dict, key: str) -> str:
        v = d.get(key)
        return f"{v['mean']:.3f} ± {v['std']:.3f}" if v else "-"

    names = {"standard": "standard", "csg": "CSG", "centre": "always-centre control"}
    q_cols = [(q, k) for q in r["qs"] for k in ("share_above", "mean_iou")]
    head = " | ".join(
        f"{'IoU > 0.3' if k == 'share_above' else 'mean IoU'}, top {q:.0%} ↑" for q, k in q_cols
    )
    rows = [
        f"| network | test accuracy | {head} | pointing game ↑ |",
        "| --- | ---: |" + " ---: |" * (len(q_cols) + 1),
    ]
    for key, label in names.items():
        d = r["summary"][key]
        cells = " | ".join(cell(d, f"{k}@{q}") for q, k in q_cols)
        rows.append(
            f"| {label} | {cell(d, 'test_accuracy')} | {cells} | {cell(d, 'pointing_game')} |"
        )
    m = r["machine"]
    rows += [
        "",
        f"{r['dataset']}, all {r['per_seed'][0]['standard']['n']} test images, mean ± std "
        f"over seeds {r['seeds']}; "
        f"{r['protocol']}. CSG options {r['csg_options']}, recipe as in the CSG benchmark. "
        f"`{r['command']}` ({m['date']}).",
    ]
    return "\n".join(rows)


def table_mnist_resnet8(r: dict) -> str:
    rows = [
        "| seed | test accuracy | training seconds |",
        "| ---: | ---: | ---: |",
    ]
    rows += [
        f"| {x['seed']} | {x['test_accuracy']:.4f} | {x['train_seconds']:.1f} |" for x in r["runs"]
    ]
    rows += [
        "",
        f"`{r['command_equivalent']}`, mean accuracy {r['test_accuracy_mean']:.4f}, mean "
        f"{r['train_seconds_mean']} s with {r['machine']['threads']} torch thread(s) on a "
        f"{r['machine']['cpus']}-core machine; `{r['command']}`.",
    ]
    return "\n".join(rows)


def table_shapes(r: dict) -> str:
    f = r["figures"]
    return "\n".join(
        [
            "| check | measured | target |",
            "| --- | ---: | ---: |",
            f"| small CNN test accuracy (`{f['cnn']['model']}`, {f['cnn']['epochs']} epochs) "
            f"| {f['cnn']['test_accuracy']:.3f} | >= 0.90 |",
            f"| linear classifier on raw pixels | {f['linear']['test_accuracy']:.3f} | < 0.60 |",
            f"| always-centre pointing baseline | {f['centre_pointing']['hit_rate']:.3f} "
            "| < 0.40 |",
            f"| seconds to generate 256 images of 64x64 | "
            f"{f['generation']['seconds_256']:.3f} | < 1 |",
            "",
            f"`{r['command']}` ({r['machine']['date']}).",
        ]
    )


def _cell_maker(summary: dict, side: str) -> Callable[..., str]:
    def cell(key: str, fmt: str = ".4f") -> str:
        m = summary.get(f"{side}_{key}_mean")
        sd = summary.get(f"{side}_{key}_std")
        return "-" if m is None else f"{m:{fmt}} ± {sd:{fmt}}"

    return cell


def table_csg(r: dict) -> str:
    rows = [
        "| dataset | method | test accuracy | MIS (nats) | top-class share | gate density "
        "| s/epoch |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for ds, res in r["results"].items():
        s = res["summary"]
        for side in ("standard", "csg"):
            cell = _cell_maker(s, side)
            rows.append(
                f"| {ds} | {side} | {cell('test_accuracy')} | {cell('mis')} | "
                f"{cell('class_share', '.3f')} | {cell('gate_density', '.3f')} | "
                f"{cell('seconds_per_epoch', '.1f')} |"
            )
    cost = _load("csg_cost_mnist")
    if cost is not None:
        rows += [
            "",
            f"Epoch cost, standard vs joint-mode CSG, one epoch each in alternation so that "
            f"machine load affects both alike, {cost['machine']['threads']} torch thread(s) "
            f"(`{cost['command']}`): {cost['median_seconds']['standard']:.2f} vs "
            f"{cost['median_seconds']['csg']:.2f} s/epoch, ratio {cost['cost_ratio']} "
            f"(target <= {cost['target_cost_ratio']}).",
        ]
    rows += [
        "",
        f"Mean ± std over seeds {r['seeds']}; CSG options {r['csg_options']}; "
        f"`{r['command']}` ({r['machine']['date']}).",
    ]
    return "\n".join(rows)


def table_icnn(r: dict) -> str:
    s = r["summary"]

    def cell(arm: str, key: str, fmt: str = ".4f") -> str:
        m, sd = s.get(f"{arm}_{key}_mean"), s.get(f"{arm}_{key}_std")
        return "-" if m is None else f"{m:{fmt}} ± {sd:{fmt}}"

    rows = [
        "| network | test accuracy ↑ | location instability ↓ | part interpretability ↑ "
        "| s/epoch |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    arms = [("plain", f"plain (extra conv layer), {r['epochs']} epochs")]
    if "plain_ft_test_accuracy_mean" in s:  # fine-tuning protocol (plain -> plain+ft / ICNN)
        ft = r.get("finetune_epochs")
        arms += [
            ("plain_ft", f"plain + {ft} epochs plain fine-tuning"),
            ("icnn", f"plain + {ft} epochs ICNN fine-tuning"),
        ]
    else:
        arms.append(("icnn", "ICNN"))
    for arm, label in arms:
        rows.append(
            f"| {label} | {cell(arm, 'test_accuracy')} | {cell(arm, 'location_instability')} | "
            f"{cell(arm, 'part_interpretability')} | {cell(arm, 'seconds_per_epoch', '.1f')} |"
        )
    met = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in s["targets_met"].items())
    ref = "plain+ft" if "plain_ft_test_accuracy_mean" in s else "plain"
    vs_plain = ""
    if "instability_ratio_vs_plain" in s:
        vs_plain = (
            f" (vs plain: {s['instability_ratio_vs_plain']} and "
            f"{s['interpretability_ratio_vs_plain']})"
        )
    rows += [
        "",
        f"Ratios ICNN / {ref}: location instability {s['instability_ratio']} (target <= 0.7), "
        f"part interpretability {s['interpretability_ratio']} (target >= 1.3){vs_plain}; "
        f"accuracy drop {s['accuracy_drop_points']} points vs the better plain arm of each seed "
        f"(target <= 1; negative = ICNN more accurate). Targets met: {met}. Mean ± std "
        f"over seeds {r['seeds']}, shapes 64x64, {r['n_train']} training images, "
        f"ICNN options {r['icnn_options']}; `{r['command']}` "
        f"({r['machine']['date']}, {r['torch_threads']} torch thread(s)).",
    ]
    return "\n".join(rows)


def table_decoupling(r: dict) -> str:
    def c(stat: dict, fmt: str = ".3f") -> str:
        return f"{stat['mean']:{fmt}} ± {stat['std']:{fmt}}"

    rows = [
        "| dataset | dense acc ↑ | dense + same fine-tune ↑ | decoupled acc ↑ | FLOPs ratio ↓ "
        "| batch-1 latency ratio ↓ | deep paths intra / inter (Jaccard) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for ds, res in r["results"].items():
        s = res["summary"]
        rows.append(
            f"| {ds} | {c(s['dense_accuracy'], '.4f')} | {c(s['dense_ft_accuracy'], '.4f')} | "
            f"{c(s['decoupled_accuracy'], '.4f')} | {c(s['flops_ratio'])} | "
            f"{c(s['latency_ratio'])} | {s['path_intra_similarity']['mean']:.3f} / "
            f"{s['path_inter_similarity']['mean']:.3f} |"
        )
        met = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in s["targets_met"].items())
        recipe = res.get("recipe") or r.get("recipes", {}).get(ds) or {}
        ft = recipe.get("finetune", {})
        data_opts = recipe.get("data", {}).get("options")
        how = (
            f" Recipe: {recipe['model'][0]}"
            + (f", data {data_opts}" if data_opts else "")
            + f", dense {recipe['train']['epochs']} epochs, then "
            f"{ft.get('epochs')} "
            f"fine-tuning epochs (dense+ft and decoupled), decoupling options "
            f"{recipe.get('options') or 'defaults'}; `{res.get('command', r['command'])}` "
            f"({res.get('date', r['machine']['date'])})."
            if recipe
            else ""
        )
        notes.append(
            f"- **{ds}**: accuracy drop {s['accuracy_drop_points']['mean']:.2f} points vs the "
            f"better dense run; sparse batch-1 latency {s['latency_ms_sparse']['mean']:.2f} ms "
            f"vs dense {s['latency_ms_dense_module']['mean']:.2f} ms (nn.Module) / "
            f"{s['latency_ms_dense_folded']['mean']:.2f} ms (same engine, all channels on). "
            f"Targets met: {met}.{how}"
        )
    rows += ["", *notes, ""]
    rows.append(f"Mean ± std over seeds {r['seeds']}; latency on one thread after training.")
    return "\n".join(rows)


ATTACK_LABELS = {"fgsm": "FGSM", "pgd": "PGD", "cw": "C&W", "cw-search": "C&W, c searched"}


def _mean_l2(r: dict, net: str, attack: str) -> float:
    """The mean over seeds of the successful perturbations' mean L2 norm."""
    vals = [
        a["l2"]
        for seed in r["per_seed"]
        for a in seed["networks"][net]["attacks"]
        if a["attack"] == attack and a.get("l2") is not None
    ]
    return sum(vals) / len(vals) if vals else float("nan")


def table_adversarial(r: dict) -> str:
    s = r["summary"]
    order = ("fgsm", "pgd", "cw", "cw-search")
    attacks = sorted(r["attacks"], key=lambda a: order.index(a) if a in order else len(order))
    first = r["per_seed"][0]["networks"]
    names = {"csg": "CSG", "standard": "standard", "decoupled": "decoupled", "dense": "dense+ft"}
    short = {
        "logistic": "LR",
        "forest": "RF",
        "prototype": "proto",
        "mahalanobis": "maha",
        "lid": "LID",
    }
    dets = [d for d in short if any(f"{a}/{d}" in row for row in s["auc"] for a in attacks)]
    head = " | ".join(
        f"{ATTACK_LABELS.get(a, a)}: {' / '.join(short[d] for d in dets)} ↑" for a in attacks
    )
    rows = [
        f"| comparison | network | feature (dims) | {head} |",
        "| --- | --- | --- |" + " ---: |" * len(attacks),
    ]
    spreads = []
    for row in s["auc"]:
        cells = []
        for a in attacks:
            vals = [row.get(f"{a}/{d}") for d in dets]
            spreads += [v["std"] for v in vals if v]
            cells.append(" / ".join(f"{v['mean']:.3f}" if v else "-" for v in vals))
        dims = first[row["network"]]["features"][row["feature"]]
        rows.append(
            f"| {row['comparison']} | {names[row['network']]} | {row['feature']} ({dims}) | "
            + " | ".join(cells)
            + " |"
        )
    with_l2 = "cw-search" in attacks  # the search trades success against perturbation size
    what = "success rate / mean L2" if with_l2 else "success rate"
    rows += [
        "",
        "| network | test accuracy | "
        + " | ".join(f"{ATTACK_LABELS.get(a, a)} {what}" for a in attacks)
        + " |",
        "| --- | ---: |" + " ---: |" * len(attacks),
    ]
    for net, label in names.items():
        if net not in s["accuracy"]:
            continue
        acc = s["accuracy"][net]
        rates = " | ".join(
            f"{s['success_rate'][net][a]['mean']:.3f}"
            + (f" / {_mean_l2(r, net, a):.3f}" if with_l2 else "")
            for a in attacks
        )
        rows.append(f"| {label} | {acc['mean']:.4f} ± {acc['std']:.4f} | {rates} |")
    m = r["machine"]

    def fmt(options: dict) -> str:
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in sorted(options.items()))  # fmt: skip

    opts = "; ".join(f"{a} {fmt(r['attacks'][a])}" for a in attacks)
    rows += [
        "",
        f"{r['dataset']}, {r['n']} test images per network (the correctly classified ones "
        f"attacked), mean over seeds {r['seeds']} (largest std of an AUC: {max(spreads):.3f}). "
        f"LR: logistic regression, RF: random forest (5-fold cross-validated, an image and its "
        f"attacked version always in the same fold), proto: unsupervised cosine distance to "
        f"the predicted class's prototype"
        + (
            ", maha: unsupervised Mahalanobis distance to the closest class (Lee et al. 2018)"
            if "mahalanobis" in dets
            else ""
        )
        + (
            ", LID: unsupervised local intrinsic dimensionality among the 20 nearest clean "
            "training images' features (Ma et al. 2018)"
            if "lid" in dets
            else ""
        )
        + f". Attacks (torchattacks): {opts}. "
        f"`{r['command']}` ({m['date']}, {r['wall_seconds'] / 60:.0f} min).",
    ]
    return "\n".join(rows)


GRADIENT_SCORES = ("share_above", "mean_iou", "pointing_game")


def table_localisation_filters(sources: dict) -> str:
    """The CSG paper's per-filter and class-gradient protocols (from localisation.json)."""
    r = sources["localisation"]

    def cell(d: dict, key: str) -> str:
        v = d.get(key)
        return f"{v['mean']:.3f} ± {v['std']:.3f}" if v else "-"

    qs = r["qs"]
    rows = [
        "| network | filters of a class | q | pairs IoU > 0.3 ↑ | images, a filter IoU > 0.3 ↑ "
        "| mean IoU ↑ |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    settings = [("standard", "activation"), ("csg", "activation"), ("csg", "gates")]
    labels = {"standard": "standard", "csg": "CSG"}
    by = {"activation": "by class means", "gates": "by gates >= 0.5"}
    first = r["per_seed"][0]
    names = {a.split(":")[0].removeprefix("filters-") for a in first["csg"] if "filters-" in a}
    matched = sorted(names - set(by))
    for name in matched:  # count-matched settings, e.g. "activation-k32"
        assign, k = name.rsplit("-k", 1)
        by[name] = f"best {k} by " + ("class means" if assign == "activation" else "gates")
        settings += [(net, name) for net, a in settings[:3] if a == assign]
    for q in qs:
        for net, assign in settings:
            d, k = r["summary"][net], f"filters-{assign}"
            per_class = first[net][f"{k}:filters_per_class"]
            rows.append(
                f"| {labels[net]} | {by[assign]} ({min(per_class)}-{max(per_class)}) | {q:.0%} "
                f"| {cell(d, f'{k}:share_above@{q}')} | {cell(d, f'{k}:share_images@{q}')} "
                f"| {cell(d, f'{k}:mean_iou@{q}')} |"
            )
    rows += [
        "",
        "| network | class-gradient maps, top q | IoU >= 0.2 ↑ | mean IoU ↑ | pointing game ↑ |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for q in qs:
        for net in ("standard", "csg"):
            d = r["summary"][net]
            scores = [cell(d, f"gradient:{k}@{q}") for k in GRADIENT_SCORES]
            rows.append(f"| {labels[net]} | {q:.0%} | " + " | ".join(scores) + " |")
    m = r["machine"]
    rows += [
        "",
        f"{r['dataset']}, the same {r['per_seed'][0]['standard']['n']} test images and networks "
        f"as the table above, mean ± std over seeds {r['seeds']}; filters per class: range over "
        f"classes, seed {r['seeds'][0]}. {r['filter_protocols']}. `{r['command']}` "
        f"({m['date']}, {r['wall_seconds'] / 60:.0f} min for everything).",
    ]
    return "\n".join(rows)


TABLES: dict[str, Callable[[dict], str]] = {
    "decoupling": table_decoupling,
    "icnn": table_icnn,
    "explainers": table_explainers,
    "explainers_intel": table_explainers,
    "explainers_peers": table_explainers_peers,
    "explainers_pointing": table_explainers_pointing,
    "explainers_rest": table_explainers_rest,
    "explainers_road": table_explainers_road,
    "explainers_seeds": table_explainers_seeds,
    "explainers_seeds_data0": table_explainers_seeds,
    "explainers_validation": table_explainers_validation,
    "explainers_variants": table_explainers_variants,
    "train_speed": table_train_speed,
    "localisation": table_localisation,
    "distributed": table_distributed,
    "mnist_resnet8": table_mnist_resnet8,
    "shapes_difficulty": table_shapes,
    "csg": table_csg,
    "adversarial": table_adversarial,
    "adversarial_shapes": table_adversarial,
    "adversarial_eps01": table_adversarial,
    "adversarial_cw_search": table_adversarial,
    "sanity": table_sanity,
    "sanity_shapes": table_sanity,
}


# tables made of several results files: name -> the files (without .json)
SOURCES: dict[str, tuple[str, ...]] = {
    "explainers_verdict": VERDICT_SOURCES,
    "localisation_filters": ("localisation",),
}
TABLES["explainers_verdict"] = table_explainers_verdict
TABLES["localisation_filters"] = table_localisation_filters
TABLES["crosscheck"] = table_crosscheck
TABLES["adaptive"] = table_adaptive
TABLES["adaptive_shapes"] = table_adaptive
TABLES["adaptive_forest"] = table_adaptive
TABLES["adaptive_forest_votes"] = table_adaptive
TABLES["adaptive_strength_forest"] = table_adaptive_strength
TABLES["adaptive_strength_forest_votes"] = table_adaptive_strength
TABLES["adaptive_strength"] = table_adaptive_strength
TABLES["adaptive_strength_path"] = table_adaptive_strength


def _load_sources(name: str) -> dict | None:
    """The results a table renders: its own file, or each of its :data:`SOURCES` (None if
    one is missing)."""
    if name not in SOURCES:
        return _load(name)
    loaded = {n: _load(n) for n in SOURCES[name]}
    return None if any(v is None for v in loaded.values()) else loaded


def render(text: str) -> str:
    """``text`` (the README or a docs page) with every results table regenerated from its
    JSON file(s)."""
    for name, table in TABLES.items():
        result = _load_sources(name)
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
        if result is None or not pattern.search(text):
            continue
        text = pattern.sub(lambda m, r=result, f=table: m.group(1) + f(r) + "\n" + m.group(2), text)
    return text


def documents() -> list[Path]:
    """The files whose tables are rendered: the README and the pages under ``docs/``."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def main() -> None:
    for doc in documents():
        text = doc.read_text()
        new = render(text)
        if new != text:
            doc.write_text(new)
            print(f"updated {doc.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
