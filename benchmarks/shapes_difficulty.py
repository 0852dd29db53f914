"""Is `shapes` learnable but not trivial? The three figures the dataset promises:

1. a standard small CNN (pellucid `convnet`) reaches >= 90 % test accuracy;
2. a linear classifier on raw pixels (scikit-learn logistic regression) stays below 60 %;
3. an always-centre pointing baseline hits the object in under 40 % of test images
   (hit = the image centre lies within 15 px * size / 224 of the object mask, TorchRay's
   tolerance scaled to the image size);

plus the time to generate 256 images of 64x64 (target < 1 s).

    python benchmarks/shapes_difficulty.py [--size 64] [--epochs 12]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from _common import write_result
from pellucid.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig
from pellucid.data import load_dataset
from pellucid.data.shapes import generate_shapes
from pellucid.training import train_run


def centre_hit_rate(masks: np.ndarray, size: int) -> float:
    """Share of images whose object mask lies within the pointing tolerance of the centre."""
    tol = 15.0 * size / 224.0
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2.0
    near = (yy - c) ** 2 + (xx - c) ** 2 <= tol**2  # (S, S) disc around the centre
    return float(np.mean([(m[0].astype(bool) & near).any() for m in masks]))


def linear_accuracy(size: int, n_train: int, n_test: int, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    tr = load_dataset("shapes", "train", seed=seed, size=size, n=n_train)
    te = load_dataset("shapes", "test", seed=seed, size=size, n=n_test)
    xtr = tr.images.reshape(len(tr), -1).float().numpy() / 255
    xte = te.images.reshape(len(te), -1).float().numpy() / 255
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(max_iter=300, C=0.01)
    clf.fit(scaler.transform(xtr), tr.labels.numpy())
    return float(clf.score(scaler.transform(xte), te.labels.numpy()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    times = []
    for rep in range(3):
        start = time.perf_counter()
        generate_shapes(256, size=64, seed=rep)
        times.append(time.perf_counter() - start)
    gen = {"seconds_256": round(min(times), 4), "all_seconds": [round(t, 4) for t in times]}
    print("generation of 256 64x64 images:", gen)

    test = load_dataset("shapes", "test", seed=args.seed, size=args.size)
    centre = {
        "hit_rate": centre_hit_rate(test.extra["mask"].numpy(), args.size),
        "tolerance_px": 15 * args.size / 224,
        "images": len(test),
    }
    print("centre pointing:", centre)

    lin = {
        "test_accuracy": linear_accuracy(args.size, 4000, 2000, args.seed),
        "n_train": 4000,
        "n_test": 2000,
        "model": "LogisticRegression(C=0.01), standardised",
    }
    print("linear:", lin)

    cfg = RunConfig(
        data=DataConfig(
            name="shapes",
            options={"size": args.size, "n": args.n_train},
            batch_size=64,
            augment="shift",
        ),
        model=ModelConfig(name="convnet"),
        method=MethodConfig(name="standard"),
        train=TrainConfig(
            epochs=args.epochs, optimizer="sgd", lr=0.05, schedule="onecycle", seed=args.seed
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        m = train_run(cfg, tmp, progress=False)
    cnn = {
        "model": "convnet",
        "epochs": args.epochs,
        "n_train": args.n_train,
        "test_accuracy": m["test_accuracy"],
        "train_seconds": m["train_seconds"],
        "config": cfg.to_dict(),
    }
    print("cnn:", {k: v for k, v in cnn.items() if k != "config"})
    write_result(
        "shapes_difficulty",
        {
            "size": args.size,
            "figures": {"cnn": cnn, "linear": lin, "centre_pointing": centre, "generation": gen},
        },
    )


if __name__ == "__main__":
    main()
