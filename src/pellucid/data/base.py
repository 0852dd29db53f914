"""The one structure every dataset yields, and how items are batched.

A dataset item is a :class:`Sample` (a plain dict, so that ``torch.utils.data`` handles it);
:func:`collate` turns a list of them into a :class:`Batch`.

Item keys (always present: ``image``, ``label``; the rest only where the dataset knows them)
-------------------------------------------------------------------------------------------
image      float32 (C, H, W) in [0, 1], pixel space: models normalise internally.
label      int64 scalar, the class index in ``[0, num_classes)``.
mask       float32 (1, H, W) in {0, 1}: the object's pixels.
box        float32 (4,): the object's box ``(x0, y0, x1, y1)`` in pixels, end-exclusive.
parts      float32 (P, H, W) in {0, 1}: one mask per part slot of the object (zeros if absent).
landmarks  float32 (P, 2): ``(x, y)`` pixel centre of each part slot; NaN where absent.
part_ids   int64 (P,): global part-type index of each slot, -1 where absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch.utils.data import Dataset

from pellucid.errors import DataError

OPTIONAL_KEYS = ("mask", "box", "parts", "landmarks", "part_ids")


@dataclass
class Batch:
    """A batch of samples; optional fields are ``None`` when the dataset lacks them.

    Shapes are those of :mod:`pellucid.data.base` with a leading batch dimension N.
    """

    image: torch.Tensor  # (N, C, H, W)
    label: torch.Tensor  # (N,)
    mask: torch.Tensor | None = None  # (N, 1, H, W)
    box: torch.Tensor | None = None  # (N, 4)
    parts: torch.Tensor | None = None  # (N, P, H, W)
    landmarks: torch.Tensor | None = None  # (N, P, 2)
    part_ids: torch.Tensor | None = None  # (N, P)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Return a copy with every tensor moved to ``device``."""
        moved = {
            f.name: (v.to(device, non_blocking=non_blocking) if v is not None else None)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return Batch(**moved)

    def __len__(self) -> int:
        return int(self.label.shape[0])


def collate(items: Sequence[dict[str, Any]]) -> Batch:
    """Stack a list of samples into a :class:`Batch` (the ``collate_fn`` for DataLoader)."""
    if not items:
        raise DataError("cannot collate an empty list of samples")
    image = torch.stack([it["image"] for it in items])
    label = torch.as_tensor([int(it["label"]) for it in items], dtype=torch.long)
    extra = {}
    for key in OPTIONAL_KEYS:
        if all(key in it and it[key] is not None for it in items):
            extra[key] = torch.stack([torch.as_tensor(it[key]) for it in items])
    return Batch(image=image, label=label, **extra)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset.

    ``mean``/``std`` are per-channel statistics in pixel space, used by the model's first
    (normalisation) layer.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    has_masks: bool = False
    has_parts: bool = False
    part_names: tuple[str, ...] = field(default_factory=tuple)


def dataset_info(data: Any) -> DatasetInfo:
    """The :class:`DatasetInfo` of a pellucid dataset, also through (nested)
    ``torch.utils.data.Subset`` views of one; a clear error for other data."""
    inner = data
    while not hasattr(inner, "info") and isinstance(inner, torch.utils.data.Subset):
        inner = inner.dataset
    info = getattr(inner, "info", None)
    if not isinstance(info, DatasetInfo):
        raise DataError(
            f"expected a pellucid dataset (pellucid.load_dataset, PellucidDataset) or a Subset "
            f"of one, got {type(data).__name__}: its class count, image size and masks are read "
            "from its .info"
        )
    return info


class PellucidDataset(Dataset):
    """Base class for our datasets: tensors held in memory plus a :class:`DatasetInfo`.

    Subclasses fill ``self.images`` (uint8 or float (N, C, H, W)), ``self.labels`` (N,) and
    optionally the tensors named in :data:`OPTIONAL_KEYS`.
    """

    info: DatasetInfo

    def __init__(self, info: DatasetInfo, images: torch.Tensor, labels: torch.Tensor, **extra):
        if images.ndim != 4 or images.shape[0] == 0:
            raise DataError(f"{info.name}: expected a non-empty (N, C, H, W) image tensor")
        if labels.shape[0] != images.shape[0]:
            raise DataError(f"{info.name}: {images.shape[0]} images but {labels.shape[0]} labels")
        bad = (labels < 0) | (labels >= info.num_classes)
        if bool(bad.any()):
            raise DataError(
                f"{info.name}: label {int(labels[bad][0])} out of range [0, {info.num_classes})"
            )
        self.info = info
        self.images = images
        self.labels = labels.long()
        self.extra = {k: v for k, v in extra.items() if v is not None}

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        img = self.images[index]
        if img.dtype == torch.uint8:
            img = img.float().div_(255.0)
        item: dict[str, Any] = {"image": img, "label": self.labels[index]}
        for key, value in self.extra.items():
            v = value[index]
            item[key] = v.float() if key in ("mask", "parts") else v
        return item
