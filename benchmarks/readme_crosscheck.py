"""README table of ``benchmarks/crosscheck.py``: pellucid next to Quantus and
pytorch-grad-cam on the same maps, masks, images and models."""

from __future__ import annotations


def _g(v: float) -> str:
    return "0" if v == 0 else f"{v:.1g}"


def table_crosscheck(r: dict) -> str:
    v = r["versions"]
    rows = [
        "| dataset | check (reference) | maps | pellucid | reference | agreement |",
        "| --- | --- | --- | ---: | ---: | --- |",
    ]
    for ds, d in r["results"].items():
        g = d["gradcam"]
        rows.append(
            f"| {ds} | Grad-CAM at {d['layer']} (pytorch-grad-cam `GradCAM`) | - | - | - | "
            f"Pearson r >= {g['pearson_r']['min']:.4f}, largest difference "
            f"{_g(g['max_abs_difference']['max'])} (maps in [0, 1]), same argmax on "
            f"{g['same_argmax']:.0%} of {g['images']} images |"
        )
        for maps, m in d["metrics"].items():
            tied = m["maps_with_tied_maximum"]
            rows.append(
                f"| {ds} | pointing game, no tolerance (Quantus `PointingGame`) | {maps} | "
                f"{m['pointing_ours']:.3f} | {m['pointing_quantus']:.3f} | same hit or miss "
                f"on {m['pointing_same_hit']:.1%} of images ({tied} "
                f"map{'' if tied == 1 else 's'} with a tied maximum) |"
            )
            rows.append(
                f"| {ds} | energy pointing game (Quantus `RelevanceMassAccuracy`) | {maps} | - "
                f"| - | largest difference {_g(m['energy_max_abs_difference'])} |"
            )
        for maps, dl in d["deletion"].items():
            rows.append(
                f"| {ds} | deletion curve, black, {dl['steps']} steps (Quantus `PixelFlipping`) "
                f"| {maps} | - | - | largest difference of a class probability "
                f"{_g(dl['curve_max_abs_difference']['max'])} |"
            )
    m = r["machine"]
    rows += [
        "",
        f"The first {r['n']} test images of each dataset, true class, the explainer "
        f"benchmark's shipped models; quantus {v['quantus']}, grad-cam {v['grad-cam']}, captum "
        f"{v['captum']}. `{r['command']}` ({m['date']}, {r['wall_seconds'] / 60:.0f} min).",
    ]
    return "\n".join(rows)


def _mean_std(row: dict, key: str) -> str:
    """A summary cell ``{"mean", "std"}`` as "0.123 ± 0.004"; ``-`` where none was measured."""
    v = row.get(key)
    return f"{v['mean']:.3f} ± {v['std']:.3f}" if v else "-"


SUPERVISED = ("logistic", "forest")  # benchmarks/adaptive.py's fitted detectors


def table_adaptive(r: dict) -> str:
    """``benchmarks/adaptive.py``: each unsupervised detector's ROC-AUC under the oblivious
    PGD, the margin attack without the detector (control) and the adaptive attack; where
    measured, also the attack aimed at the clean median, and every AUC one-sided / two-sided.
    Then the fitted supervised detectors (logistic regression, random forest) where measured.
    """
    unsupervised = [row for row in r["summary"] if row["detector"] not in SUPERVISED]
    rows = _table_unsupervised(r, unsupervised) if unsupervised else []
    supervised = [
        row for row in r["summary"] if row["detector"] in SUPERVISED and "adaptive" in row
    ]  # fmt: skip
    if supervised:
        rows += _table_supervised(r, supervised, caption=not unsupervised)
    return "\n".join(rows)


NAMES = {"standard": "standard", "csg": "CSG", "decoupled": "decoupled"}


def _commands(r: dict) -> str:
    m = r["machine"]
    if r.get("history"):
        return "; ".join(
            f"{', '.join(h['networks'])}: `{h['command']}` ({h['date']}, "
            f"{h['wall_seconds'] / 60:.0f} min)"
            for h in r["history"]
        )
    return f"`{r['command']}` ({m['date']}, {r['wall_seconds'] / 60:.0f} min)"


def _table_unsupervised(r: dict, summary: list[dict]) -> list[str]:
    one = _mean_std

    def cell(row: dict, key: str) -> str:
        if not two_sided:
            return one(row, key)
        return f"{one(row, key)} / {one(row, f'{key}_two_sided')}"

    two_sided = any("pgd_two_sided" in row for row in summary)
    median = any("median" in row for row in summary)
    lowest = "adaptive PGD, lowest score ↑" if median else "adaptive PGD ↑"
    head = ["oblivious PGD ↑", "margin PGD, detector not in the loss ↑", lowest]
    keys = ["pgd", "margin", "adaptive"]
    if median:
        head.append("adaptive PGD, aimed at the clean median ↑")
        keys.append("median")
    head.append("adaptive success rate")
    rows = [
        "| network | feature | detector | " + " | ".join(head) + " |",
        "| --- | --- | --- |" + " ---: |" * len(head),
    ]
    for row in summary:
        success = one(row, "adaptive_success")
        if median:
            success += f" / {one(row, 'median_success')}"
        rows.append(
            f"| {NAMES[row['network']]} | {row['feature']} | {row['detector']} | "
            + " | ".join(cell(row, k) for k in keys)
            + f" | {success} |"
        )
    a = r["adaptive"]
    rows += [
        "",
        f"{r['dataset']}, {r['n']} test images per network (the correctly classified ones "
        f"attacked), mean ± std over seeds {r['seeds']}; ROC-AUC of the named detector, clean vs "
        f"successfully attacked (0.5 = chance)"
        + (
            ", one-sided (a high score flags an attack) / two-sided (a score far from the "
            "clean training images' median, either way, flags it)"
            if two_sided
            else ""
        )
        + f". Oblivious PGD: eps={a['eps']:.4g}, "
        f"alpha={r['pgd']['alpha']:.4g}, {r['pgd']['steps']} steps. Margin / adaptive PGD: "
        f"the same eps and alpha, {a['steps']} steps, C&W margin (kappa {a['kappa']:g}), the "
        f"misclassified iterate with the lowest detector score kept; adaptive adds the "
        f"detector's standardised score at weight {a['weight']:g} after half the steps"
        + (
            "; aimed at the clean median: the distance of that score from the clean training "
            "images' median instead, and the iterate closest to it kept; success rate: lowest "
            "score / aimed at the median"
            if median
            else ""
        )
        + f". {_commands(r)}.",
    ]
    return rows


def _table_supervised(r: dict, summary: list[dict], caption: bool) -> list[str]:
    one = _mean_std
    forest = any(row["detector"] == "forest" for row in summary)
    median = any("median" in row for row in summary)
    detector = "| detector " if forest else ""
    aimed = " surrogate aimed at the clean median, fitted detector ↑ |" if median else ""
    rows = [
        "",
        f"| network | feature {detector}| oblivious PGD, detector cross-validated ↑ | margin "
        f"PGD, fitted detector ↑ | adaptive PGD, fitted detector ↑ |{aimed} adaptive PGD, "
        "detector retrained on it ↑ | adaptive success rate |",
        "| --- | --- |" + (" --- |" if forest else "") + " ---: |" * (5 + median),
    ]
    for row in summary:
        name = f"| {row['detector']} " if forest else ""
        cell = f" {one(row, 'median')} |" if median else ""
        rows.append(
            f"| {NAMES[row['network']]} | {row['feature']} {name}| {one(row, 'pgd')} | "
            f"{one(row, 'margin')} | {one(row, 'adaptive')} |{cell} "
            f"{one(row, 'adaptive_retrained')} | {one(row, 'adaptive_success')} |"
        )
    text = (
        "The logistic regression on standardised features (the papers' supervised "
        "detector): cross-validated on clean vs oblivious PGD as in the adversarial table; "
        "fitted on the oblivious PGD of the test images at even positions, then attacked "
        "on the images at odd positions by the margin PGD (control) and by the adaptive "
        "PGD with its log-odds in the loss; retrained: cross-validated on clean vs those "
        "adaptive attacks (a defender who trains on the attacker it faces)."
    )
    votes = r.get("surrogate") == "votes"
    surrogate = (
        "a network (one hidden layer of 128 units, `forest_surrogate`) fitted to the "
        "forest's votes on the fitting images' clean and attacked features and on points "
        "along and around each perturbation"
        if votes
        else "the logistic regression fitted on the same images"
    )
    if forest:
        text += (
            " The random forest (200 trees) is fitted on the same images; it has no "
            f"gradient, so the attack descends the log-odds of a differentiable surrogate, "
            f"{surrogate}, and keeps, per image, the misclassified iterate "
            "the fewest trees flag (the margin control keeps it by the forest too)"
            + (
                "; aimed at the clean median: the surrogate's log-odds are drawn to their "
                "median on the clean fitting images instead of as low as possible."
                if median
                else "."
            )
        )
    rows += ["", text]
    if caption:
        a = r["adaptive"]
        rows += [
            "",
            f"{r['dataset']}, {r['n']} test images per network (the correctly classified ones "
            f"attacked, odd positions by the adaptive attacks), mean ± std over seeds "
            f"{r['seeds']}; ROC-AUC, clean vs successfully attacked (0.5 = chance). Oblivious "
            f"PGD: eps={a['eps']:.4g}, alpha={r['pgd']['alpha']:.4g}, {r['pgd']['steps']} "
            f"steps; margin / adaptive PGD: the same eps and alpha, {a['steps']} steps, C&W "
            f"margin (kappa {a['kappa']:g}), the surrogate's standardised log-odds at weight "
            f"{a['weight']:g} after half the steps. {_commands(r)}.",
        ]
    return rows


def table_adaptive_strength(r: dict) -> str:
    """``benchmarks/adaptive_strength.py``: one detector's ROC-AUC against the adaptive
    attack at each step budget and detector weight, next to the weight-0 control."""
    one = _mean_std
    fitted = r["detector"] in SUPERVISED
    second = ("auc_retrained", "AUC, detector retrained on it") if fitted else (
        "auc_two_sided", "AUC, two-sided")  # fmt: skip
    first = "AUC, fitted detector" if fitted else "AUC, one-sided"
    rows = [
        f"| steps | detector weight | {first} ↑ | {second[1]} ↑ | success rate |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for cell in r["summary"]:
        weight = "0 (control)" if cell["weight"] == 0 else f"{cell['weight']:g}"
        rows.append(
            f"| {cell['steps']} | {weight} | {one(cell, 'auc')} | {one(cell, second[0])} | "
            f"{one(cell, 'success_rate')} |"
        )
    a, m = r["attack"], r["machine"]
    rows += [
        "",
        f"{r['dataset']}, the {r['network']} network's {r['feature']}, {r['detector']} "
        f"detector; {r['n']} test images per seed (the correctly classified ones attacked), "
        f"mean ± std over seeds {r['seeds']}. Adaptive PGD (`adaptive_pgd`, lowest score): "
        f"eps={a['eps']:.4g}, alpha={a['alpha']:.4g}, C&W margin (kappa {a['kappa']:g}), the "
        "detector's standardised score at the given weight after half the steps, the "
        "misclassified iterate with the lowest score kept; weight 0 is the control (the margin "
        "and the selection alone)"
        + (
            f". The {r['detector']} is fitted on the oblivious PGD of the images at even "
            "positions and those at odd positions are attacked"
            + (
                " (through "
                + (
                    "a network fitted to its votes"
                    if r.get("surrogate") == "votes"
                    else "the logistic regression fitted on the same images"
                )
                + ", the forest keeping the iterate with its lowest vote)"
                if r["detector"] == "forest"
                else ""
            )
            if fitted
            else ""
        )
        + f". `{r['command']}` ({m['date']}, "
        f"{r['wall_seconds'] / 60:.0f} min).",
    ]
    return "\n".join(rows)
