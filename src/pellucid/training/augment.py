"""Batch augmentations applied on the training device, driven by an explicit generator so
that an epoch's augmentation is reproducible (and a resumed run sees the same)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pellucid.data.base import Batch

SPATIAL = ("image", "mask", "parts")


def random_shift(
    batch: Batch,
    max_shift: int,
    gen: torch.Generator,
    flip: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> Batch:
    """Translate each image by up to ``max_shift`` pixels (edge padding); optionally flip.

    Masks and part masks move with the image; landmarks and boxes are shifted too.
    ``shard = (rank, world_size)``: the batch is slice ``rank`` of a global batch of
    ``world_size`` equal slices (multi-process training); the draws are made for the global
    batch and this slice's are used, so the images get the shifts they get in one process.
    """
    n, _, h, w = batch.image.shape
    device = batch.image.device
    rank, world = shard
    total, rows_of = n * world, slice(rank * n, (rank + 1) * n)
    d = torch.randint(-max_shift, max_shift + 1, (total, 2), generator=gen)  # (N', 2) dy, dx
    flips = torch.rand(total, generator=gen) < 0.5 if flip else torch.zeros(total, dtype=torch.bool)
    d, flips = d[rows_of].to(device), flips[rows_of].to(device)  # (N, 2), (N,)
    rows = torch.arange(h, device=device)[None, :] - d[:, :1] + max_shift  # (N, H)
    cols = torch.arange(w, device=device)[None, :] - d[:, 1:] + max_shift  # (N, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    n_idx = torch.arange(n, device=device)[:, None, None]
    out = {}
    for key in SPATIAL:
        t = getattr(batch, key)
        if t is None:
            continue
        p = F.pad(t, (max_shift,) * 4, mode="replicate" if key == "image" else "constant")
        out[key] = p.permute(0, 2, 3, 1)[n_idx, rows[:, :, None], cols[:, None, :]].permute(
            0, 3, 1, 2
        )  # (N, C, H, W)
    landmarks, box = batch.landmarks, batch.box
    shift_xy = d.flip(1).to(torch.float32)  # (N, 2) dx, dy
    if landmarks is not None:
        landmarks = landmarks + shift_xy[:, None, :]
        fx = w - 1 - landmarks[..., 0]
        landmarks = torch.stack(
            [torch.where(flips[:, None], fx, landmarks[..., 0]), landmarks[..., 1]], -1
        )
    if box is not None:
        box = box + shift_xy.repeat(1, 2)
        flipped = torch.stack([w - box[:, 2], box[:, 1], w - box[:, 0], box[:, 3]], 1)
        box = torch.where(flips[:, None], flipped, box)
    return Batch(
        image=out["image"],
        label=batch.label,
        mask=out.get("mask"),
        box=box,
        parts=out.get("parts"),
        landmarks=landmarks,
        part_ids=batch.part_ids,
    )
