"""Datasets: one registry, deterministic by seed, no downloads.

>>> from pellucid.data import load_dataset, make_loader
>>> test = load_dataset("mnist", "test", seed=0)
>>> batch = next(iter(make_loader(test, batch_size=64)))   # a Batch
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from pellucid.data import folder, mnist, shapes  # noqa: F401  (fill the registry)
from pellucid.data.base import Batch, DatasetInfo, PellucidDataset, collate
from pellucid.data.splits import SPLITS
from pellucid.registry import DATASETS

__all__ = [
    "Batch",
    "DatasetInfo",
    "PellucidDataset",
    "SPLITS",
    "collate",
    "dataset_names",
    "load_dataset",
    "make_loader",
    "spread_subset",
    "with_random_labels",
]


def dataset_names() -> list[str]:
    """Registered dataset names."""
    return DATASETS.names()


def load_dataset(name: str, split: str = "train", seed: int = 0, **options: Any) -> PellucidDataset:
    """Build the dataset ``name`` for ``split`` ("train", "val" or "test").

    Parameters
    ----------
    name : str
        A registered dataset (see ``pellucid datasets``).
    split : str
        "train", "val" or "test".
    seed : int
        Fixes the split and every random choice of synthetic data.
    **options
        Dataset-specific options (e.g. ``size=32`` for shapes, ``root=...`` for folder).
    """
    return DATASETS.build(name, split, seed=seed, fixed=("seed",), **options)


def make_loader(
    dataset: Dataset,
    batch_size: int = 128,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader yielding :class:`Batch`; shuffling is seeded (same order on every run)."""
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=gen if shuffle else None,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
    )


def spread_indices(size: int, n: int | None) -> list[int]:
    """``n`` indices spread evenly over ``range(size)`` (``round(linspace(0, size - 1, n))``:
    every class of a class-ordered split); all of them when ``n`` is None or >= ``size``."""
    import numpy as np

    if n is None or n >= size:
        return list(range(size))
    return sorted(set(np.linspace(0, size - 1, n).round().astype(int).tolist()))


def spread_subset(dataset: Dataset, n: int | None) -> Dataset:
    """``n`` images spread evenly over ``dataset`` (:func:`spread_indices`); the whole dataset
    when ``n`` is None or too large."""
    if n is None or n >= len(dataset):
        return dataset
    return torch.utils.data.Subset(dataset, spread_indices(len(dataset), n))


_LABEL_SALT = 0x1AB3_15ED  # with_random_labels: not the generator state the data used


def with_random_labels(dataset: PellucidDataset, seed: int) -> PellucidDataset:
    """``dataset`` with its labels randomly permuted: the training data of the data
    randomisation sanity check (Adebayo et al. 2018, §3.2).

    A permutation keeps every class's frequency, so a model can only fit it by memorising
    images. The images and every other field (masks, parts) stay as they are; the
    original dataset is not changed (a shallow copy gets the new label tensor).

    Parameters
    ----------
    dataset : PellucidDataset
        Usually a training split.
    seed : int
        Draws the permutation (from a private generator; the global RNG is untouched).
    """
    import copy

    from pellucid.errors import DataError

    if not isinstance(dataset, PellucidDataset):
        raise DataError(
            f"random labels need a pellucid dataset with a label tensor, got "
            f"{type(dataset).__name__}"
        )
    gen = torch.Generator().manual_seed((int(seed) ^ _LABEL_SALT) % (1 << 63))
    perm = torch.randperm(len(dataset), generator=gen)
    out = copy.copy(dataset)
    out.labels = dataset.labels[perm].clone()
    return out
