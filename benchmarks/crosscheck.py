"""Cross-check against the libraries users compare pellucid with: the same maps, masks,
images and model through pellucid and through Quantus (Hedström et al., JMLR 2023) and
pytorch-grad-cam (Gildenblat et al.).

On the explainer benchmark's shipped models (``benchmarks/models``, cluttered-mnist and
shapes) and the first ``--n`` test images, each with its true class:

- Grad-CAM: pellucid's (Captum's ``LayerGradCam``, ReLU, bilinear upsampling, divided by
  its maximum) vs pytorch-grad-cam's ``GradCAM`` (its own hooks, min-max scaled, OpenCV
  resize) at the same layer: Pearson r per image, largest absolute difference once both are
  min-max scaled, same argmax;
- pointing game with no tolerance (``tolerance=0``) vs ``quantus.PointingGame``: per-image
  hits, on the Grad-CAM and saliency maps. Quantus counts a hit when *any* maximal pixel is
  in the mask, pellucid looks at the first in raster order; the two differ only on ties;
- energy pointing game vs ``quantus.RelevanceMassAccuracy`` (no normalisation, maps >= 0);
- deletion curve (black fill, 64 steps) vs ``quantus.PixelFlipping`` (baseline 0, 64 pixels
  per step, softmax) on saliency maps: the largest absolute difference between the two
  curves' class probabilities. pellucid breaks ties between equal map values at random
  (seeded), Quantus by ``np.argsort``.

    make  # installs them: quantus==0.6.0 grad-cam==1.5.7 ttach cachetools
          # opencv-python-headless, --no-deps (see the Makefile)
    python benchmarks/crosscheck.py [--n 200] [--datasets cluttered-mnist shapes]

Results:
``benchmarks/results/crosscheck.json``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import write_result
from explainers_runs import ensure_run

STEPS = 64  # deletion steps


def _stats(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": round(float(np.mean(values)), 6),
        "min": round(float(np.min(values)), 6),
        "max": round(float(np.max(values)), 6),
    }


def gradcam_agreement(model, layer: str, images, labels) -> tuple[dict[str, Any], torch.Tensor]:
    """pellucid's Grad-CAM vs pytorch-grad-cam's on the same images and classes."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from pellucid.explain import build_explainer
    from pellucid.models import get_layer

    ours = build_explainer("gradcam", model, layer=layer).explain(images, labels)[:, 0]
    with GradCAM(model=model, target_layers=[get_layer(model, layer)]) as cam:
        theirs = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in labels])
    a, b = ours.detach().numpy().reshape(len(images), -1), theirs.reshape(len(images), -1)
    ok = (a.std(axis=1) > 0) & (b.std(axis=1) > 0)  # an all-zero CAM has no correlation
    # pellucid divides a map by its maximum, pytorch-grad-cam min-max scales it
    low = a.min(axis=1, keepdims=True)
    a = np.where(ok[:, None], (a - low) / np.maximum(a.max(axis=1, keepdims=True) - low, 1e-12), a)
    r = np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(a[ok], b[ok], strict=True)])
    return {
        "images": len(images),
        "constant_maps": int((~ok).sum()),
        "pearson_r": _stats(r),
        "max_abs_difference": _stats(np.abs(a - b).max(axis=1)),
        "same_argmax": round(float((a.argmax(1) == b.argmax(1)).mean()), 6),
    }, ours[:, None]


def metric_agreement(model, images, labels, masks, maps: torch.Tensor) -> dict[str, Any]:
    """pellucid's pointing game (no tolerance) and energy pointing game vs Quantus's."""
    import quantus

    from pellucid.metrics import energy_pointing_game, pointing_game

    x, y = images.numpy(), labels.numpy()
    a, s = maps.detach().numpy(), masks.float().numpy()
    ours = pointing_game(maps, masks, tolerance=0)["hits"].numpy()
    kw = {"model": model, "x_batch": x, "y_batch": y, "a_batch": a, "s_batch": s}
    kw.update(device="cpu", channel_first=True)
    theirs = np.array(quantus.PointingGame(disable_warnings=True)(**kw), dtype=bool)
    tied = (a.reshape(len(a), -1) == a.reshape(len(a), -1).max(1, keepdims=True)).sum(1) > 1
    energy = energy_pointing_game(maps, masks).numpy()
    rma = quantus.RelevanceMassAccuracy(normalise=False, abs=False, disable_warnings=True)
    mass = np.array(rma(**kw), dtype=float)
    return {
        "pointing_ours": round(float(ours.mean()), 6),
        "pointing_quantus": round(float(theirs.mean()), 6),
        "pointing_same_hit": round(float((ours == theirs).mean()), 6),
        "pointing_differ_untied": int(((ours != theirs) & ~tied).sum()),
        "maps_with_tied_maximum": int(tied.sum()),
        "energy_max_abs_difference": round(float(np.abs(energy - mass).max()), 9),
    }


def deletion_agreement(model, images, labels, maps: torch.Tensor) -> dict[str, Any]:
    """pellucid's deletion curve (black fill) vs quantus.PixelFlipping (baseline 0)."""
    import quantus

    from pellucid.metrics import deletion_insertion

    ours = deletion_insertion(model, images, maps, labels, steps=STEPS, fill="zero")
    ours_curve = ours["curves"].numpy()[:, 1:]  # Quantus does not record the intact image
    n, c, h, w = images.shape
    # Quantus ranks every (channel, pixel) entry of the map broadcast to the image's
    # channels, a pixel's c entries next to each other (equal values); it flips h * w /
    # STEPS entries per step, so pellucid's step s (h * w / STEPS whole pixels) is its step
    # c * s.
    flip = quantus.PixelFlipping(
        features_in_step=h * w // STEPS,
        perturb_baseline=0.0,
        normalise=False,
        abs=False,
        disable_warnings=True,
    )
    theirs = np.array(
        flip(
            model=model,
            x_batch=images.numpy(),
            y_batch=labels.numpy(),
            a_batch=maps.detach().numpy(),
            device="cpu",
            channel_first=True,
            softmax=True,
        )
    )
    theirs = theirs[:, c - 1 :: c]
    diff = np.abs(ours_curve - theirs).max(axis=1)
    return {
        "steps": STEPS,
        "curve_max_abs_difference": _stats(diff),
        "auc_ours": round(float(ours["auc"].mean()), 6),
    }


def crosscheck(dataset: str, runs: Path, n: int) -> dict[str, Any]:
    from pellucid.data import load_dataset
    from pellucid.explain import build_explainer
    from pellucid.models import default_layer
    from pellucid.training import load_run

    run = ensure_run(dataset, runs)
    model, config = load_run(run)
    model.eval()
    data = load_dataset(config.data.name, "test", seed=config.data_seed, **config.data.options)
    items = [data[i] for i in range(min(n, len(data)))]
    images = torch.stack([it["image"] for it in items])
    labels = torch.tensor([int(it["label"]) for it in items])
    masks = torch.stack([it["mask"] for it in items]).reshape(len(items), 1, *images.shape[-2:])
    masks = masks > 0
    layer = default_layer(model)
    out: dict[str, Any] = {"run": str(run), "layer": layer}
    out["gradcam"], cam = gradcam_agreement(model, layer, images, labels)
    saliency = build_explainer("saliency", model).explain(images, labels)
    out["metrics"] = {
        "gradcam": metric_agreement(model, images, labels, masks, cam),
        "saliency": metric_agreement(model, images, labels, masks, saliency),
    }
    out["deletion"] = {"saliency": deletion_agreement(model, images, labels, saliency)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["cluttered-mnist", "shapes"])
    ap.add_argument("--n", type=int, default=200, help="test images per dataset")
    ap.add_argument("--runs", type=Path, default=Path("runs/bench-explainers"))
    args = ap.parse_args()
    import quantus  # noqa: F401  (fail early with the install hint below)

    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    results = {ds: crosscheck(ds, args.runs, args.n) for ds in args.datasets}
    versions = {}
    for name in ("quantus", "grad-cam", "captum", "torch"):
        from importlib.metadata import version

        versions[name] = version(name)
    write_result(
        "crosscheck",
        {
            "n": args.n,
            "versions": versions,
            "results": results,
            "wall_seconds": round(time.perf_counter() - start, 1),
        },
    )


if __name__ == "__main__":
    try:
        main()
    except ImportError as e:
        raise SystemExit(
            f"{e}: run `make` (installs quantus, grad-cam and their modules --no-deps), or "
            "pip install --no-deps quantus==0.6.0 grad-cam==1.5.7 ttach==0.0.3 "
            "cachetools==8.0.2 opencv-python-headless==5.1.0.95"
        ) from None
