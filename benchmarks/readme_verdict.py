"""The README's verdict on the issue's explainer target ("NeuroMask beats Grad-CAM and
occlusion on the pointing game and deletion AUC") over every image set it was measured on,
read from the results files of ``benchmarks/explainers.py`` (rendered by
``readme_tables.py``)."""

from __future__ import annotations

SOURCES = (
    "explainers",
    "explainers_intel",
    "explainers_seeds",
    "explainers_seeds_data0",
    "explainers_rest",
)
ROWS = {
    "explainers": "benchmark images, published models (main table)",
    "explainers_intel": "the same images, a second training (Intel CPU)",
    "explainers_seeds": "3 trainings, each on its own data draw",
    "explainers_seeds_data0": "3 trainings on one data draw",
    "explainers_rest": "test images no study had used",
}
TARGETS = {
    "beats_gradcam_and_occlusion_pointing": "pointing",
    "beats_gradcam_and_occlusion_deletion": "deletion, black",
    "beats_gradcam_and_occlusion_deletion_mean_fill": "deletion, mean fill",
}


def _cell(entry: dict, target: str) -> str:
    """ "yes" / "NO" on the means, "resolved" where the paired interval also excludes 0; a
    seeds study gives counts over its seeds."""
    if "seeds_meeting" in entry:
        met = entry["seeds_meeting"]
        n = len(entry["seeds"])
        return f"{met['targets'][target]}/{n} ({met['targets_resolved'][target]}/{n} resolved)"
    if not entry["targets"][target]:
        return "NO"
    return "yes, resolved" if entry["targets_resolved"][target] else "yes"


def table_explainers_verdict(results: dict[str, dict]) -> str:
    """One row per image set, one column per dataset and target."""
    datasets = list(results["explainers"]["results"])
    head = "| image set | images per model | " + " | ".join(
        f"{ds}: {label}" for ds in datasets for label in TARGETS.values()
    )
    rows = [head + " |", "| --- | ---: |" + " :---: |" * (len(datasets) * len(TARGETS))]
    for name in SOURCES:
        res = results[name]["results"]
        n = next(iter(res.values()))["n_images"]
        cells = [_cell(res[ds], t) if ds in res else "-" for ds in datasets for t in TARGETS]
        rows.append(f"| {ROWS[name]} (`{name}.json`) | {n} | " + " | ".join(cells) + " |")
    return "\n".join(
        [
            *rows,
            "",
            "yes / NO: NeuroMask's default beats both peers on the mean (a tie is NO); resolved: "
            "both paired bootstrap 95 % intervals exclude 0 as well; a seeds row counts the "
            "seeds. [docs/explainer-benchmarks.md](docs/explainer-benchmarks.md) gives each set's "
            "numbers and command.",
        ]
    )
