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
