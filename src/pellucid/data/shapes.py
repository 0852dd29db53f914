"""``shapes``: synthetic objects made of parts, with full ground truth.

Every image holds one *object* on a textured background among a few *distractor* parts.
An object is 3-4 analytic parts (disc, square, triangle, bar, ring, cross) in a fixed
arrangement; the class is told by which parts are combined and how they are arranged:

=========  ==========================================  ====================================
class      parts (slot order)                          arrangement
=========  ==========================================  ====================================
mouse      disc, disc, disc                            a big head with two ears on top
dumbbell   disc, bar, disc                             two discs joined by a bar
key        ring, bar, square                           ring, shaft, one tooth under the tip
house      square, triangle, bar                       body, roof on top, chimney
tree       bar, triangle, triangle                     trunk, two stacked triangles
face       ring, disc, disc, bar                       outline ring; eyes and mouth inside
sword      bar, cross, disc                            blade, cross-guard and grip, pommel
windmill   square, triangle, cross                     tower, roof, X-shaped sails above
=========  ==========================================  ====================================

What makes it non-trivial:

* Part types are shared between classes (discs: mouse, dumbbell, face, sword; squares: key,
  house, windmill; triangles: house, tree, windmill; bars: six classes), so no single part
  tells the class: house and windmill, or dumbbell and sword, differ by one part and by
  the arrangement.
* Distractors are isolated single parts of the same types and colour distribution, so
  "is there a triangle" is not enough either; they never touch the object (they are kept a
  few pixels outside its box), so the object mask stays exact.
* The whole object is randomly rotated (any angle), mirrored, scaled (radius 17-24 % of the
  side) and coloured; each part is slightly jittered in size, position and shade; the
  position is uniform over all placements that keep the object inside the canvas, so it
  is often far from the centre (pointing at the centre hits the object in about 1/3 of
  the images).
* The background is a tinted smooth texture (value noise + grating + gradient); object and
  distractor colours keep a contrast of at least ~0.14 (about 35 grey levels) from the
  background in some channel at every pixel.

Ground truth per image: the object mask (union of its part masks), one mask per part slot
(the *visible* pixels of that part: later slots are painted over earlier ones, so part masks
are disjoint), a landmark per slot (the part pixel nearest the part's geometric centre, in
pixel-index coordinates ``(x, y) = (column, row)``, so it always lies inside the part mask;
for a ring it is on the inner rim),
the global part type of each slot and the object's box. Image ``i`` depends only on
``(seed, start + i)``, so any slice of the stream can be regenerated alone.

The stream itself (layouts, drawing, :func:`generate_shapes`) is in
:mod:`pellucid.data.shapes_stream`; this module holds the dataset class and the registered
loaders.
"""

from __future__ import annotations

import numpy as np
import torch

from pellucid.data.base import DatasetInfo, PellucidDataset
from pellucid.data.shapes_stream import (  # noqa: F401  (re-exported)
    CLASS_NAMES,
    MAX_SIZE,
    MIN_SIZE,
    NUM_PARTS,
    PART_NAMES,
    _check_size,
    generate_shapes,
)
from pellucid.data.splits import check_split
from pellucid.errors import ConfigError
from pellucid.registry import DATASETS

SPLIT_START = {"train": 0, "val": 1_000_000_000, "test": 2_000_000_000}
SPLIT_SIZE = {"train": 10_000, "val": 1_000, "test": 2_000}

# Per-channel statistics of pixel values in [0, 1], measured once on 4,000 train images (64x64).
MEAN = (0.497, 0.500, 0.498)
STD = (0.197, 0.195, 0.194)


class ShapesDataset(PellucidDataset):
    """``n`` images of the shapes stream held in memory as tensors, with all ground truth.

    Parameters
    ----------
    n : int
        Number of images.
    size : int
        Image side in pixels.
    seed : int
        Stream seed.
    start : int
        First item of the stream (the splits use disjoint ranges, see :data:`SPLIT_START`).
    """

    def __init__(self, n: int, size: int = 64, seed: int = 0, start: int = 0) -> None:
        data = generate_shapes(n, size=size, seed=seed, start=start)
        info = DatasetInfo(
            name="shapes",
            num_classes=len(CLASS_NAMES),
            in_channels=3,
            image_size=(size, size),
            class_names=CLASS_NAMES,
            mean=MEAN,
            std=STD,
            has_masks=True,
            has_parts=True,
            part_names=PART_NAMES,
        )
        tensors = {k: torch.from_numpy(v) for k, v in data.items()}
        super().__init__(info, tensors.pop("images"), tensors.pop("labels"), **tensors)
        self.seed, self.start = seed, start


@DATASETS.register("shapes", help="objects made of 3-4 parts, 8 classes, 64x64; masks+parts")
def load_shapes(split: str, seed: int = 0, size: int = 64, n: int | None = None) -> ShapesDataset:
    """The shapes dataset: ``split`` is a disjoint slice of the stream fixed by ``seed``.

    Parameters
    ----------
    split : str
        "train" (10,000 images), "val" (1,000) or "test" (2,000).
    seed : int
        Stream seed.
    size : int
        Image side (32 or 64; any value in 24-512 is accepted).
    n : int, optional
        Number of images instead of the split's default.
    """
    check_split(split, "shapes")
    size = _check_size(size)
    count = SPLIT_SIZE[split] if n is None else n
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ConfigError(f"shapes: n must be a positive integer, got {count!r}")
    if count > SPLIT_START["val"]:
        raise ConfigError(f"shapes: n must be at most {SPLIT_START['val']:,}, got {count}")
    return ShapesDataset(int(count), size=size, seed=seed, start=SPLIT_START[split])


@DATASETS.register("shapes32", help="the shapes dataset at 32x32")
def load_shapes32(split: str, seed: int = 0, n: int | None = None) -> ShapesDataset:
    """The shapes dataset with 32x32 images (see :func:`load_shapes`)."""
    return load_shapes(split, seed=seed, size=32, n=n)
