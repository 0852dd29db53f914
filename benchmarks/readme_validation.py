"""README tables of ``benchmarks/explainers.py --validation``, ``--variants`` and ``--rest``
(rendered by ``readme_tables.py``)."""

from __future__ import annotations


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


def table_explainers_rest(r: dict) -> str:
    """``results/explainers_rest.json``: NeuroMask's default and the peers on test images no
    other part used, with the pointing hits apart by prediction and the paired intervals."""
    from readme_explainers import _explainer_intervals

    keys = ("energy_pointing_game", "deletion_auc", "deletion_auc_mean_fill", "insertion_auc")
    rows = [
        "| dataset | explainer | pointing ↑ | hits, correctly classified | hits, misclassified "
        "| energy ↑ | deletion AUC, black ↓ | deletion AUC, mean fill ↓ | insertion AUC ↑ |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for ds, res in r["results"].items():
        for name, row in res["rows"].items():
            by = res["pointing_by_prediction"][name]
            hits = [f"{by[k].get('pointing_hits', 0)} / {by[k]['n']}" for k in by]
            cells = [f"{row['pointing_game']:.3f}", *hits, *(f"{row[k]:.3f}" for k in keys)]
            rows.append(f"| {ds} | {name} | " + " | ".join(cells) + " |")
        met = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in res["targets"].items())
        notes.append(
            f"- **{ds}**: {res['n_images']} of the {res['n_unused']} unused test images "
            f"(model {res['model_sha256']}, accuracy on them "
            f"{res['model_accuracy_on_these_images']:.3f}, {res['n_misclassified']} "
            f"misclassified), `{res['command']}` ({res['date']}). Targets met on the means: "
            f"{met}."
        )
    return "\n".join([*rows, "", *_explainer_intervals(r), *notes])
