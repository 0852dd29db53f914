"""Regenerate the results tables in README.md from benchmarks/results/*.json.

Each table sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` markers;
tables are never typed by hand.

    python benchmarks/readme_tables.py
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

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


def _f(v, fmt: str = ".3f") -> str:
    return "-" if v is None else f"{v:{fmt}}"


def _explainer_intervals(r: dict) -> list[str]:
    """NeuroMask minus each peer with its paired bootstrap interval, one row per target."""
    have = {
        ds: res["target_intervals"] for ds, res in r["results"].items() if "target_intervals" in res
    }
    if not have:
        return []
    labels = {
        "pointing_game": "pointing ↑",
        "deletion_auc": "deletion AUC, black ↓",
        "deletion_auc_mean_fill": "deletion AUC, mean fill ↓",
    }
    peers = {"gradcam": "Grad-CAM", "occlusion": "occlusion"}
    head = "| NeuroMask − peer, 95 % paired bootstrap interval | " + " | ".join(
        f"{ds}: vs {p}" for ds in have for p in peers.values()
    )
    out = [head + " |", "| --- |" + " ---: |" * (len(have) * len(peers))]
    for key, label in labels.items():
        cells = []
        for iv in have.values():
            for peer in peers:
                d = iv.get(key, {}).get(peer)
                if d is None:
                    cells.append("-")
                    continue
                lo, hi = d["ci"]
                cell = f"{d['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                cells.append(cell if d["resolved"] else f"{cell} (not resolved)")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    resolved = "; ".join(
        f"{ds}: "
        + ", ".join(
            f"{k}: {'yes' if v else 'NO'}"
            for k, v in r["results"][ds].get("targets_resolved", {}).items()
        )
        for ds in have
    )
    n = {ds: r["results"][ds]["n_images"] for ds in have}
    out += [
        "",
        "Differences are NeuroMask's score minus the peer's on the same images (pointing: higher "
        "is better for NeuroMask; deletion: lower); an interval that contains 0 means these "
        f"{'/'.join(str(v) for v in n.values())} images do not tell the two apart. Targets met "
        f"with an interval that excludes 0: {resolved}.",
        "",
    ]
    return out


def table_explainers(r: dict) -> str:
    keys = [
        ("pointing_game", "pointing ↑"),
        ("energy_pointing_game", "energy ↑"),
        ("deletion_auc", "deletion AUC, black ↓"),
        ("deletion_auc_mean_fill", "deletion AUC, mean fill ↓"),
        ("insertion_auc", "insertion AUC ↑"),
        ("sanity_rank_correlation", "sanity ρ ↓"),
        ("seconds_per_image", "s/image ↓"),
    ]
    rows = [
        "| dataset | explainer | " + " | ".join(label for _, label in keys) + " |",
        "| --- | --- |" + " ---: |" * len(keys),
    ]
    notes = []
    for ds, res in r["results"].items():
        for name, row in res["rows"].items():
            cells = [_f(row.get(k), ".4f" if k == "seconds_per_image" else ".3f") for k, _ in keys]
            rows.append(f"| {ds} | {name} | " + " | ".join(cells) + " |")
        ref = res["reference"]
        mem = res["memory"]
        hits = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in res["targets"].items())
        controls = res.get("controls_worse_than_every_explainer", {})
        ctrl = "; ".join(
            f"controls (centre, random) worse than every explainer under {k}: "
            f"{'yes' if v else 'NO'}"
            for k, v in controls.items()
        )
        notes.append(
            f"- **{ds}** ("
            + (f"model {res['model_sha256']}, " if res.get("model_sha256") else "")
            + f"model test accuracy on these images "
            f"{res['model_accuracy_on_these_images']:.3f}): on {ref['n']} of these images, "
            f"NeuroMask default {ref['neuromask']['seconds_per_image']:.3f} s/image, pointing "
            f"{ref['neuromask']['pointing_game']:.3f}, deletion "
            f"{ref['neuromask']['deletion_auc']:.3f} vs the paper's `reference` preset "
            f"{ref['neuromask-reference']['seconds_per_image']:.2f} s/image, pointing "
            f"{ref['neuromask-reference']['pointing_game']:.3f}, deletion "
            f"{ref['neuromask-reference']['deletion_auc']:.3f}: **{ref['speedup']}x faster**. "
            f"Peak memory of a fresh process explaining {mem['batch_shape']} with NeuroMask: "
            f"{mem['peak_rss_mib']:.0f} MiB ({mem['rss_before_explaining_mib']:.0f} MiB before "
            f"explaining). Targets met: {hits}." + (f" Metric check: {ctrl}." if ctrl else "")
        )
    rows += ["", *notes, ""]
    rows += _explainer_intervals(r)
    runs = sorted(
        {
            (res.get("command", r["command"]), res.get("date", r["machine"]["date"]))
            for res in r["results"].values()
        }
    )
    rows.append(
        f"{r['n']} test images per dataset, target = true class, sanity check on the first "
        f"{r['sanity_n']}; "
        + "; ".join(f"`{cmd}` ({date})" for cmd, date in runs)
        + f", {r['machine']['threads']} torch thread(s)"
        + (f", CPU {r['machine']['cpu']!r}" if r["machine"].get("cpu") else "")
        + (
            ", instruction sets pinned: "
            + " ".join(f"{k}={v}" for k, v in r["machine"]["isa_settings"].items())
            if r["machine"].get("isa_settings")
            else ""
        )
        + "."
    )
    return "\n".join(rows)


def table_explainers_road(r: dict) -> str:
    rows = [
        "| dataset | explainer | deletion AUC, ROAD ↓ | deletion AUC, black ↓ |",
        "| --- | --- | ---: | ---: |",
    ]
    notes = []
    for ds, res in r["results"].items():
        for name, row in res["rows"].items():
            rows.append(
                f"| {ds} | {name} | {row['deletion_auc_road']:.3f} | {row['deletion_auc']:.3f} |"
            )
        iv = res.get("intervals", {}).get("deletion_auc_road", {})
        diffs = ", ".join(
            f"vs {p} {d['difference']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]"
            + ("" if d["resolved"] else " (not resolved)")
            for p, d in iv.items()
        )
        ctrl = res.get("controls_worse_than_every_explainer", {})
        notes.append(
            f"- **{ds}** ({res['n_images']} images, ROAD over {res['road_steps']} steps"
            + (f", model {res['model_sha256']}" if res.get("model_sha256") else "")
            + f"; `{res['command']}`, {res['date']}): NeuroMask minus peer, ROAD deletion, 95 % "
            f"paired bootstrap: {diffs}. Controls worse than every explainer: ROAD "
            f"{'yes' if ctrl.get('deletion_auc_road') else 'NO'}, black "
            f"{'yes' if ctrl.get('deletion_auc') else 'NO'}."
        )
    return "\n".join([*rows, "", *notes])


def table_explainers_seeds(r: dict) -> str:
    keys = {
        "pointing_game": "pointing ↑",
        "deletion_auc": "deletion AUC, black ↓",
        "deletion_auc_mean_fill": "deletion AUC, mean fill ↓",
        "insertion_auc": "insertion AUC ↑",
        "sanity_rank_correlation": "sanity ρ ↓",
    }
    names = {"neuromask": "NeuroMask", "gradcam": "Grad-CAM", "occlusion": "occlusion"}
    peers = [p for p in names if p != "neuromask"]
    rows = [
        "| dataset | score | "
        + " | ".join(names.values())
        + " | "
        + " | ".join(f"NeuroMask − {names[p]}, per seed" for p in peers)
        + " |",
        "| --- | --- |" + " ---: |" * (len(names) + len(peers)),
    ]
    notes = []
    for ds, res in r["results"].items():
        sc, diff = res["scores"], res["differences"]
        for key, label in keys.items():
            if key not in sc["neuromask"]:
                continue
            cells = [f"{sc[n][key]['mean']:.3f} ± {sc[n][key]['sd']:.3f}" for n in names]
            for p in peers:
                d = diff.get(key, {}).get(p)
                cells.append(
                    "-"
                    if d is None
                    else f"{d['mean']:+.3f} ± {d['sd']:.3f} ("
                    + ", ".join(f"{v:+.3f}" for v in d["values"])
                    + ")"
                )
            rows.append(f"| {ds} | {label} | " + " | ".join(cells) + " |")
        k = len(res["seeds"])
        met = res["seeds_meeting"]
        acc = ", ".join(f"{e['test_accuracy']:.3f}" for e in res["seeds"].values())
        notes.append(
            f"- **{ds}** (`{res['command']}`, {res['date']}; test accuracy of the {k} models "
            f"{acc}): seeds in which NeuroMask beats both peers on the means / with every "
            "paired interval excluding 0: "
            + ", ".join(
                f"{t.removeprefix('beats_gradcam_and_occlusion_')} {met['targets'][t]}/{k} / "
                f"{met['targets_resolved'][t]}/{k}"
                for t in met["targets"]
            )
            + "."
        )
    rows += ["", *notes, ""]
    rows.append(
        f"Mean ± sample standard deviation over seeds {r['seeds']}; a seed sets both the "
        f"model's training and the synthetic data, so each seed has its own model and its own "
        f"{r['n']} evenly spaced test images (seed 0: the benchmark's images), shared by the "
        f"three explainers; sanity check on the first {r['sanity_n']}."
    )
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


def _validation_block(data: dict[str, dict], images: str = "validation images") -> list[str]:
    """One table of validation rows measured on one trained model per dataset: pointing /
    energy pointing / black deletion / mean-fill deletion, a mark where NeuroMask beats both
    peers (of the same block) on the mean (+) and with both paired intervals excluding 0
    (++; the targets' scores only, energy has no mark)."""
    keys = ("pointing_game", "energy_pointing_game", "deletion_auc", "deletion_auc_mean_fill")
    names = list(data)
    configs: list[str] = []
    for ds in names:
        configs += [row["config"] for row in data[ds]["rows"] if row["config"] not in configs]
    rows = [
        "| setting | "
        + " | ".join(
            f"{ds}: pointing ↑ / energy ↑ / deletion black ↓ / deletion mean fill ↓" for ds in names
        )
        + " |",
        "| --- |" + " --- |" * len(names),
    ]

    def mark(row: dict, key: str) -> str:
        d = row.get("minus_peers", {}).get(key)
        if not d:
            return ""
        better = [(v["difference"] > 0) == (key == "pointing_game") for v in d.values()]
        if all(better) and all(v["resolved"] for v in d.values()):
            return " ++"
        return " +" if all(better) else ""

    for config in configs:
        cells = []
        for ds in names:
            row = next((x for x in data[ds]["rows"] if x["config"] == config), None)
            cells.append(
                "-"
                if row is None
                else " / ".join(f"{row[k]:.3f}{mark(row, k)}" for k in keys if k in row)
            )
        rows.append(f"| {config} | " + " | ".join(cells) + " |")
    notes = []
    for ds, res in data.items():
        sha = res.get("model_sha256")
        model = f"model {sha}" if sha else "model not fingerprinted"
        note = f"; {res['note']}" if res.get("note") else ""
        acc = f", accuracy on them {res['model_accuracy']:.3f}" if "model_accuracy" in res else ""
        notes.append(
            f"- **{ds}**: {res['n_images']} {images} ({model}{acc}{note}), "
            f"`{res['command']}` ({res['date']})."
        )
    return [*rows, "", *notes]


def table_explainers_variants(r: dict) -> str:
    """NeuroMask options chosen on the validation images, tested on the benchmark's images
    next to the default and the peers (same marks as the validation table), with each
    option's paired intervals against both peers."""
    data = r["results"]
    out = _validation_block(data, "benchmark images")
    out += ["", "+ : beats both peers on the mean; ++ : and both paired intervals exclude 0.", ""]
    for ds, res in data.items():
        for row in res["rows"]:
            if "minus_peers" not in row:
                continue
            parts = [
                f"{key} vs {peer} {d['difference']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
                for key, per_peer in row["minus_peers"].items()
                for peer, d in per_peer.items()
            ]
            out.append(f"- {ds}, {row['config']}: " + "; ".join(parts) + ".")
    return "\n".join(out)


def table_explainers_validation(r: dict) -> str:
    """The validation rows of the current trained model per dataset, then those measured on
    earlier trainings of the same recipe (``earlier_models``: another CPU trains other
    weights), each block with its own peers: rows of different models are never compared."""
    data = r["datasets"]
    out = _validation_block(data)
    out += [
        "",
        "+ : beats both peers on the mean; ++ : and both paired bootstrap 95 % intervals "
        "exclude 0.",
    ]
    depth = max(len(res.get("earlier_models", [])) for res in data.values())
    for i in range(depth):
        block = {
            ds: res["earlier_models"][i]
            for ds, res in data.items()
            if len(res.get("earlier_models", [])) > i
        }
        out += [
            "",
            f"Other training {i + 1} of the same recipe (another model; its own peers):",
            "",
        ]
        out += _validation_block(block)
    return "\n".join(out)


TABLES: dict[str, Callable[[dict], str]] = {
    "decoupling": table_decoupling,
    "icnn": table_icnn,
    "explainers": table_explainers,
    "explainers_intel": table_explainers,
    "explainers_road": table_explainers_road,
    "explainers_seeds": table_explainers_seeds,
    "explainers_validation": table_explainers_validation,
    "explainers_variants": table_explainers_variants,
    "train_speed": table_train_speed,
    "mnist_resnet8": table_mnist_resnet8,
    "shapes_difficulty": table_shapes,
    "csg": table_csg,
}


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, render in TABLES.items():
        result = _load(name)
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
        if result is None or not pattern.search(text):
            continue
        text = pattern.sub(
            lambda m, r=result, f=render: m.group(1) + f(r) + "\n" + m.group(2), text
        )
    readme.write_text(text)
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
