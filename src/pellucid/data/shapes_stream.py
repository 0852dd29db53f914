"""The ``shapes`` image stream: class layouts, and the drawing of one image with its ground truth.

Item ``i`` of the stream is drawn from ``np.random.default_rng([seed, start + i])`` alone
(:func:`generate_shapes`). The classes, the ground truth and the splits are described in
:mod:`pellucid.data.shapes`, which also holds the dataset class and the registered loaders;
single parts and the background are rasterised by :mod:`pellucid.data.shapes_render`.
"""

from __future__ import annotations

import math

import numpy as np

from pellucid.data.shapes_render import (
    BAR,
    CROSS,
    DISC,
    RING,
    SQUARE,
    TRIANGLE,
    dilate,
    part_mask,
    textured_background,
)
from pellucid.errors import ConfigError

PART_NAMES: tuple[str, ...] = ("disc", "square", "triangle", "bar", "ring", "cross")
CLASS_NAMES: tuple[str, ...] = (
    "mouse",
    "dumbbell",
    "key",
    "house",
    "tree",
    "face",
    "sword",
    "windmill",
)

# Parts of each class in object units (the object fits in a radius of about 1 around its
# origin; x to the right, y down). A part is (kind, x, y, a, b, angle_degrees) with ``a``,
# ``b`` as in :mod:`pellucid.data.shapes_render` -- except that for rings ``b`` is the inner
# radius as a fraction of ``a``.
_LAYOUTS: tuple[tuple[tuple[int, float, float, float, float, float], ...], ...] = (
    # mouse
    ((DISC, 0.0, 0.2, 0.6, 0, 0), (DISC, -0.6, -0.5, 0.32, 0, 0), (DISC, 0.6, -0.5, 0.32, 0, 0)),
    # dumbbell
    ((DISC, -0.62, 0.0, 0.36, 0, 0), (BAR, 0.0, 0.0, 0.5, 0.12, 0), (DISC, 0.62, 0.0, 0.36, 0, 0)),
    # key
    (
        (RING, -0.5, 0.0, 0.4, 0.5, 0),
        (BAR, 0.3, 0.0, 0.5, 0.11, 0),
        (SQUARE, 0.62, 0.2, 0.14, 0, 0),
    ),
    # house
    (
        (SQUARE, 0.0, 0.34, 0.48, 0, 0),
        (TRIANGLE, 0.0, -0.36, 0.62, 0, 0),
        (BAR, 0.32, -0.62, 0.2, 0.1, 90),
    ),
    # tree
    (
        (BAR, 0.0, 0.66, 0.3, 0.12, 90),
        (TRIANGLE, 0.0, 0.08, 0.6, 0, 0),
        (TRIANGLE, 0.0, -0.5, 0.44, 0, 0),
    ),
    # face
    (
        (RING, 0.0, 0.0, 0.9, 0.76, 0),
        (DISC, -0.3, -0.22, 0.15, 0, 0),
        (DISC, 0.3, -0.22, 0.15, 0, 0),
        (BAR, 0.0, 0.34, 0.34, 0.1, 0),
    ),
    # sword
    (
        (BAR, 0.0, -0.3, 0.62, 0.11, 90),
        (CROSS, 0.0, 0.42, 0.34, 0.1, 0),
        (DISC, 0.0, 0.84, 0.16, 0, 0),
    ),
    # windmill
    (
        (SQUARE, 0.0, 0.52, 0.4, 0, 0),
        (TRIANGLE, 0.0, 0.0, 0.32, 0, 0),
        (CROSS, 0.0, -0.4, 0.6, 0.12, 45),
    ),
)
NUM_PARTS = max(len(layout) for layout in _LAYOUTS)  # P, the number of part slots

MIN_SIZE, MAX_SIZE = 24, 512

_BG_AMPLITUDE = 0.15  # background stays within tint +- this
_CONTRAST = 0.35  # object / distractor colour differs from the tint by this in some channel
_JITTER = 0.06  # per-part colour jitter (so contrast to the background stays >= 0.14)
_SCALE = (0.17, 0.24)  # object radius as a fraction of the image side
_N_DISTRACTORS = (2, 5)  # [low, high) distractor parts per image


def _colour(rng: np.random.Generator, tint: np.ndarray) -> np.ndarray:
    """A random colour at L-infinity distance >= ``_CONTRAST`` from ``tint``."""
    cand = rng.random((16, 3))
    ok = np.abs(cand - tint).max(axis=1) >= _CONTRAST
    if ok.any():
        return cand[int(np.argmax(ok))]
    col = cand[0].copy()  # practically never reached: push one channel away from the tint
    ch = int(rng.integers(3))
    col[ch] = 0.0 if tint[ch] >= 0.5 else 1.0
    return col


def _landmark(mask: np.ndarray, cx: float, cy: float) -> tuple[float, float]:
    """The pixel of ``mask`` nearest to ``(cx, cy)``, as (x, y) index coordinates."""
    ys, xs = np.nonzero(mask)
    k = int(np.argmin((xs - cx) ** 2 + (ys - cy) ** 2))
    return float(xs[k]), float(ys[k])


def _bound(kind: int, a: float, b: float) -> float:
    """Radius of a circle around a part's centre that contains the whole part."""
    if kind == SQUARE:
        return a * math.sqrt(2.0)
    if kind in (BAR, CROSS):
        return math.hypot(a, b)
    return a  # disc, ring, triangle (circumradius)


def _render(rng: np.random.Generator, size: int, out: dict[str, np.ndarray], i: int) -> None:
    """Draw image ``i`` of ``out`` (and its ground truth) from ``rng``."""
    label = int(rng.integers(len(CLASS_NAMES)))
    tint = rng.uniform(0.2, 0.8, 3)
    img = textured_background(rng, size, tint, _BG_AMPLITUDE)

    # --- the object: random scale, rotation, mirroring, colour; then a position drawn
    # uniformly among those that keep the whole object inside the canvas
    scale = rng.uniform(*_SCALE) * size
    theta = rng.uniform(0.0, 2 * math.pi)
    flip = rng.random() < 0.5  # mirror image (keeps the class)
    base = _colour(rng, tint)
    cos, sin = math.cos(theta), math.sin(theta)
    layout = _LAYOUTS[label]
    jitter = rng.uniform(-1.0, 1.0, (len(layout), 4))  # size, dx, dy, shade
    geometry = []  # (kind, dx, dy, a_px, b_px, angle) relative to the object's origin
    for k, (kind, px, py, a, b, deg) in enumerate(layout):
        px, py = px + 0.03 * jitter[k, 1], py + 0.03 * jitter[k, 2]
        if flip:
            px, deg = -px, -deg
        a_px = max(a * scale * (1.0 + 0.08 * jitter[k, 0]), 1.0)
        b_px = min(b * a_px, a_px - 1.2) if kind == RING else max(b * scale, 0.9)
        dx, dy = scale * (px * cos - py * sin), scale * (px * sin + py * cos)
        geometry.append((kind, dx, dy, a_px, b_px, theta + math.radians(deg)))
    reach = np.array([_bound(g[0], g[3], g[4]) for g in geometry])
    offsets = np.array([(g[1], g[2]) for g in geometry])
    low = (reach[:, None] - offsets).max(axis=0)  # origin >= low keeps x, y >= 0
    high = size - 1 - (offsets + reach[:, None]).max(axis=0)
    ox, oy = rng.uniform(np.minimum(low, high), np.maximum(low, high))
    obj = np.zeros((size, size), dtype=bool)
    slots = np.zeros((NUM_PARTS, size, size), dtype=bool)
    centres = []
    for k, (kind, dx, dy, a_px, b_px, angle) in enumerate(geometry):
        cx, cy = ox + dx, oy + dy
        m = part_mask(kind, cx, cy, a_px, b_px, angle, size)
        slots[:, m] = False  # later parts are painted over earlier ones
        slots[k] = m
        obj |= m
        shade = np.clip(base + _JITTER * jitter[k, 3], 0.0, 1.0)
        img[:, m] = shade[:, None]
        centres.append((cx, cy))
    for k, (cx, cy) in enumerate(centres):
        if slots[k].any():
            out["landmarks"][i, k] = _landmark(slots[k], cx, cy)
            out["part_ids"][i, k] = layout[k][0]
    ys, xs = np.nonzero(obj)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1

    # --- distractors: single parts kept a gap outside the object's box and each other
    gap = max(2, size // 20)
    forbidden = np.zeros((size, size), dtype=bool)
    forbidden[max(0, y0 - gap) : y1 + gap, max(0, x0 - gap) : x1 + gap] = True
    for _ in range(int(rng.integers(*_N_DISTRACTORS))):
        kind = int(rng.integers(len(PART_NAMES)))
        a_px = max(rng.uniform(0.15, 0.42) * scale, 1.0)
        if kind == BAR:
            a_px *= 1.4
        b_px = {RING: a_px * 0.55, BAR: 0.11 * scale, CROSS: 0.11 * scale}.get(kind, 0.0)
        b_px = min(b_px, a_px - 1.2) if kind == RING else max(b_px, 0.9)
        colour = _colour(rng, tint)
        angle = rng.uniform(0.0, 2 * math.pi)
        for _try in range(6):
            cx, cy = rng.uniform(0, size - 1, 2)
            m = part_mask(kind, cx, cy, a_px, b_px, angle, size)
            if m.any() and not (m & forbidden).any():
                img[:, m] = colour[:, None]
                forbidden |= dilate(m, gap)
                break

    out["images"][i] = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    out["labels"][i] = label
    out["mask"][i, 0] = obj
    out["parts"][i] = slots
    out["box"][i] = (x0, y0, x1, y1)


def _check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ConfigError(f"shapes: image size must be an integer, got {size!r}")
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ConfigError(
            f"shapes: image size must be between {MIN_SIZE} and {MAX_SIZE} pixels "
            f"(32 and 64 are the tested ones), got {size}"
        )
    return int(size)


def generate_shapes(n: int, size: int = 64, seed: int = 0, start: int = 0) -> dict[str, np.ndarray]:
    """Generate ``n`` images of the shapes stream, items ``start`` to ``start + n - 1``.

    Item ``j`` is drawn from ``np.random.default_rng([seed, j])`` alone, so any slice is
    reproducible and independent of ``n``.

    Parameters
    ----------
    n : int
        Number of images (>= 1).
    size : int
        Image side in pixels (24-512; 32 and 64 are the supported presets).
    seed : int
        Non-negative stream seed.
    start : int
        Index of the first item in the stream (non-negative).

    Returns
    -------
    dict of ndarray
        ``images`` uint8 (n, 3, S, S); ``labels`` int64 (n,); ``mask`` uint8 (n, 1, S, S);
        ``box`` float32 (n, 4) as (x0, y0, x1, y1), end-exclusive; ``parts`` uint8
        (n, P, S, S); ``landmarks`` float32 (n, P, 2) as (x, y), NaN where absent;
        ``part_ids`` int64 (n, P), -1 where absent. P = :data:`NUM_PARTS`.
    """
    size = _check_size(size)
    for name, value, low in (("n", n, 1), ("seed", seed, 0), ("start", start, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"shapes: {name} must be an integer >= {low}, got {value!r}")
    n, p = int(n), NUM_PARTS
    out = {
        "images": np.zeros((n, 3, size, size), np.uint8),
        "labels": np.zeros(n, np.int64),
        "mask": np.zeros((n, 1, size, size), np.uint8),
        "box": np.zeros((n, 4), np.float32),
        "parts": np.zeros((n, p, size, size), np.uint8),
        "landmarks": np.full((n, p, 2), np.nan, np.float32),
        "part_ids": np.full((n, p), -1, np.int64),
    }
    for i in range(n):
        _render(np.random.default_rng([int(seed), int(start) + i]), size, out, i)
    return out
