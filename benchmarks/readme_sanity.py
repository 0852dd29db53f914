"""The README's sanity-check table (``benchmarks/sanity.py`` results), rendered by
``readme_tables.py``."""

from __future__ import annotations

from typing import Any

CHANCE = {"cluttered-mnist": 1 / 10, "shapes": 1 / 8}  # 1 / classes


def _cell(v: dict[str, Any] | None) -> str:
    if v is None:
        return "undefined"
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
        acc, rl_train, rl_test = (
            s["test_accuracy"], s["random_label_train_accuracy"], s["random_label_test_accuracy"]
        )  # fmt: skip
        out += [
            "",
            f"{dataset}: models' test accuracy {acc['mean']:.3f} ± {acc['std']:.3f}; the "
            f"random-label models fit {rl_train['mean']:.3f} ± {rl_train['std']:.3f} of their "
            f"permuted training labels in {r['random_label_epochs']} epochs (test accuracy "
            f"{rl_test['mean']:.3f} ± {rl_test['std']:.3f}"
            + (f", chance {CHANCE[dataset]:.3f})." if dataset in CHANCE else ")."),
            "",
        ]
    m = r["machine"]
    out.append(
        f"Spearman rank correlation of each image's maps from the trained and the damaged "
        f"model, mean ± std over seeds {r['seeds']} ({r['n']} evenly spaced test images per "
        f"seed, target = true class); the cascade re-initialises the blocks from the output "
        f"towards the input, so its last column has every weight random."
        + (" `undefined`: every map was constant." if "undefined" in "".join(out) else "")
        + f" `{r['command']}` ({m['date']}, {r['wall_seconds'] / 60:.0f} min)."
    )
    return "\n".join(out)
