"""Deterministic, stratified train/val/test splits by seed."""

from __future__ import annotations

import numpy as np

from pellucid.errors import DataError

SPLITS = ("train", "val", "test")


def check_split(split: str, dataset: str) -> None:
    """Raise a clear error unless ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise DataError(f"{dataset}: unknown split {split!r}; choose from: {', '.join(SPLITS)}")


def stratified_split(
    labels: np.ndarray, fractions: tuple[float, float, float], seed: int
) -> dict[str, np.ndarray]:
    """Indices of a stratified train/val/test split.

    Parameters
    ----------
    labels : ndarray (N,)
        Class index per item.
    fractions : (train, val, test)
        Shares summing to 1; each class is split in these proportions.
    seed : int
        The same seed gives the same split on every machine.

    Returns
    -------
    dict
        ``{"train": idx, "val": idx, "test": idx}``, each sorted.
    """
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(f"split fractions must sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_val = int(round(fractions[1] * len(idx)))
        n_test = int(round(fractions[2] * len(idx)))
        out["test"].append(idx[:n_test])
        out["val"].append(idx[n_test : n_test + n_val])
        out["train"].append(idx[n_test + n_val :])
    return {s: np.sort(np.concatenate(v)) for s, v in out.items()}


def check_nonempty(idx: np.ndarray, split: str, dataset: str, total: int) -> np.ndarray:
    """``idx``, or a :class:`DataError` when the ``split`` drawn from ``total`` images of
    ``dataset`` holds none (a class needs about 5 images for a validation image, 3 for a
    test image under the 70/10/20 split)."""
    if len(idx) == 0:
        raise DataError(
            f"{dataset}: the {split!r} split is empty ({total} images in all, split 70/10/20 "
            "within each class); give more images per class"
        )
    return idx
