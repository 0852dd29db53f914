"""The README's sanity-check table (``benchmarks/sanity.py`` results), rendered by
``readme_tables.py``."""

from __future__ import annotations

from typing import Any

CHANCE = {"cluttered-mnist": 1 / 10, "shapes": 1 / 8}  # 1 / classes


def _cell(v: dict[str, Any] | None) -> str:
    if v is None:
        return "undefined"
    if v.get("seeds", 2) == 1:  # one seed: no spread to show
        return f"{v['mean']:.3f}"
    return f"{v['mean']:.3f} ± {v['std']:.3f}"


def table_sanity(r: dict[str, Any]) -> str:
    """One table per dataset: explainers x checks (full re-initialisation, each cascade step,
    the random-label model), mean ± std over the seeds; then what the models reached."""
    out: list[str] = []
    for dataset, s in r["summary"].items():
        steps = [f"+{name}" for name in s["layers"]]
        out += [
            f"| {dataset} | all weights random ↓ | "
            + " | ".join(f"cascade {step} ↓" for step in steps)
            + " | random labels ↓ |",
            "| --- | ---: |" + " ---: |" * len(steps) + " ---: |",
        ]
        for name, row in s["rows"].items():
            cells = [_cell(row["full"]), *(_cell(c) for c in row["cascading"]), _cell(row["data"])]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        if any(row.get("full_ssim") for row in s["rows"].values()):
            out += [
                "",
                f"| {dataset} | SSIM, all weights random ↓ | HOG, all weights random ↓ "
                "| SSIM, random labels ↓ | HOG, random labels ↓ |",
                "| --- | ---: | ---: | ---: | ---: |",
            ]
            for name, row in s["rows"].items():
                keys = ("full_ssim", "full_hog", "data_ssim", "data_hog")
                out.append(f"| {name} | " + " | ".join(_cell(row.get(k)) for k in keys) + " |")
        acc, rl_train, rl_test = (
            s["test_accuracy"], s["random_label_train_accuracy"], s["random_label_test_accuracy"]
        )  # fmt: skip
        chance = f", chance {CHANCE[dataset]:.3f}" if dataset in CHANCE else ""
        out += [
            "",
            f"{dataset}: models' test accuracy {_cell(acc)}; the random-label models fit "
            f"{_cell(rl_train)} of their permuted training labels in "
            f"{r['random_label_epochs']} epochs (test accuracy {_cell(rl_test)}{chance}).",
            "",
        ]
    seeds = r["seeds"]
    over = f"mean ± std over seeds {seeds}" if len(seeds) > 1 else f"one seed ({seeds[0]})"
    undefined = " `undefined`: every map was constant." if "undefined" in "".join(out) else ""
    m = r["machine"]
    if r.get("merged_from"):  # seeds measured in separate sessions, then merged
        runs = (
            "; ".join(
                f"seeds {part['seeds']}: `{part['command']}` ({part['date']}, "
                f"{part['cpu_capability']} kernels, {part['wall_seconds'] / 60:.0f} min)"
                for part in r["merged_from"]
            )
            + f"; merged by `{r['command']}`."
        )
    else:
        runs = f"`{r['command']}` ({m['date']}, {r['wall_seconds'] / 60:.0f} min)."
    out.append(
        "Spearman rank correlation (second table, where measured: SSIM and HOG correlation of "
        "the maps' absolute values scaled to [0, 1]) of each image's maps from the trained and "
        f"the damaged model, {over} ({r['n']} evenly spaced test images per seed, target = "
        "true class); "
        "the cascade re-initialises the blocks from the output towards the input, so its last "
        f"column has every weight random.{undefined} {runs}"
    )
    return "\n".join(out)
