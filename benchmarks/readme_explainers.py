"""README tables of ``benchmarks/explainers.py``: the main benchmark, ROAD deletion and the seeds
study (rendered by ``readme_tables.py``)."""

from __future__ import annotations


def _f(v, fmt: str = ".3f") -> str:
    return "-" if v is None else f"{v:{fmt}}"


def _interval_rows(
    results: dict[str, dict], labels: dict[str, str], peers: dict[str, str], key: str
) -> list[str]:
    """A table of NeuroMask minus each peer with its paired bootstrap interval: one row per
    metric in ``labels``, one column per (dataset, peer); ``results[ds][key][metric][peer]``
    holds ``difference``, ``ci`` and ``resolved`` (a missing entry is ``-``)."""
    head = "| NeuroMask − peer, 95 % paired bootstrap interval | " + " | ".join(
        f"{ds}: vs {p}" for ds in results for p in peers.values()
    )
    out = [head + " |", "| --- |" + " ---: |" * (len(results) * len(peers))]
    for metric, label in labels.items():
        cells = []
        for res in results.values():
            for peer in peers:
                d = res.get(key, {}).get(metric, {}).get(peer)
                if d is None:
                    cells.append("-")
                    continue
                lo, hi = d["ci"]
                cell = f"{d['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                cells.append(cell if d["resolved"] else f"{cell} (not resolved)")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def _explainer_intervals(r: dict) -> list[str]:
    """NeuroMask minus Grad-CAM and occlusion with their paired bootstrap intervals, one row
    per target (issue #4)."""
    have = {ds: res for ds, res in r["results"].items() if "target_intervals" in res}
    if not have:
        return []
    labels = {
        "pointing_game": "pointing ↑",
        "deletion_auc": "deletion AUC, black ↓",
        "deletion_auc_mean_fill": "deletion AUC, mean fill ↓",
    }
    peers = {"gradcam": "Grad-CAM", "occlusion": "occlusion"}
    out = _interval_rows(have, labels, peers, "target_intervals")
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
    if r.get("data_seed") is None:
        data = (
            "a seed sets both the model's training and the synthetic data, so each seed has its "
            f"own model and its own {r['n']} evenly spaced test images (seed 0: the benchmark's "
            "images)"
        )
    else:
        data = (
            f"every model was trained and scored on the data drawn with seed {r['data_seed']} "
            f"(`--data-seed {r['data_seed']}`), so the seeds differ in the training alone; the "
            f"same {r['n']} evenly spaced test images for every seed"
        )
    rows.append(
        f"Mean ± sample standard deviation over seeds {r['seeds']}; {data}, shared by the "
        f"three explainers; sanity check on the first {r['sanity_n']}."
    )
    return "\n".join(rows)


def table_explainers_pointing(r: dict) -> str:
    """``results/explainers_pointing.json``: pointing hits apart for correctly classified and
    misclassified images, and NeuroMask's disagreements with each peer."""

    def part(row: dict, key: str) -> str:
        p = row[key]
        return f"{p.get('pointing_hits', 0)} / {p['n']}"

    rows = [
        "| dataset | explainer | pointing ↑ | hits, correctly classified | hits, misclassified |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    notes = []
    for ds, res in r["results"].items():
        for name, row in res["rows"].items():
            rows.append(
                f"| {ds} | {name} | {row['all']['pointing_game']:.3f} | "
                f"{part(row, 'correct')} | {part(row, 'misclassified')} |"
            )
        pairs = []
        for peer, d in res.get("neuromask_vs_peer", {}).items():
            a, b = d["only_a"], d["only_b"]
            pairs.append(
                f"NeuroMask hits where {peer} misses {len(a['correct'])} correctly classified "
                f"+ {len(a['misclassified'])} misclassified image(s), {peer} hits where "
                f"NeuroMask misses {len(b['correct'])} + {len(b['misclassified'])}"
            )
        notes.append(
            f"- **{ds}** ({res['n_images']} images, {res['n_misclassified']} misclassified, "
            f"model {res['model_sha256']}; `{res['command']}`, {res['date']}): "
            + "; ".join(pairs)
            + "."
        )
    return "\n".join([*rows, "", *notes])


def table_explainers_peers(r: dict) -> str:
    """``results/explainers_peers.json``: NeuroMask against TorchRay's extremal perturbations
    and RISE (with Grad-CAM, occlusion and the controls) on the same images, then NeuroMask
    minus each mask-based peer with its paired bootstrap interval."""
    keys = (
        "pointing_game",
        "energy_pointing_game",
        "deletion_auc",
        "deletion_auc_mean_fill",
        "insertion_auc",
        "sanity_rank_correlation",
    )
    rows = [
        "| dataset | explainer | pointing ↑ | energy ↑ | deletion AUC, black ↓ "
        "| deletion AUC, mean fill ↓ | insertion AUC ↑ | sanity ρ ↓ | s/image ↓ |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for ds, res in r["results"].items():
        sanity = res.get("sanity", {}).get("rows", {})  # --sanity-only: more images
        for name, row in res["rows"].items():
            if name in sanity:
                row = {**row, "sanity_rank_correlation": sanity[name]["mean"]}
            cells = [_f(row.get(k)) for k in keys] + [_f(row["seconds_per_image"], ".2f")]
            rows.append(f"| {ds} | {name} | " + " | ".join(cells) + " |")
    labels = {
        "pointing_game": "pointing ↑",
        "deletion_auc": "deletion AUC, black ↓",
        "deletion_auc_mean_fill": "deletion AUC, mean fill ↓",
        "insertion_auc": "insertion AUC ↑",
    }
    peers = {"extremal-perturbation": "extremal perturbation", "rise": "RISE"}
    results = r["results"]
    out = _interval_rows(results, labels, peers, "intervals")
    notes = [
        f"- **{ds}**: {res['n_images']} benchmark images (model {res['model_sha256']}, "
        f"accuracy on them {res['model_accuracy_on_these_images']:.3f}), {res['torchray']}; "
        f"`{res['command']}` ({res['date']}); "
        + (
            f"sanity check on the first {res['sanity']['n']}: `{res['sanity']['command']}` "
            f"({res['sanity']['date']}, {_minutes(res['sanity'])})."
            if "sanity" in res
            else f"sanity check on the first {res['sanity_n']}."
        )
        for ds, res in results.items()
    ]
    return "\n".join([*rows, "", *out, "", *notes])


def _minutes(sanity: dict) -> str:
    """The wall time of a ``--sanity-only`` entry: the sum of its explainers' seconds."""
    return f"{sum(row['seconds'] for row in sanity['rows'].values()) / 60:.0f} min"
