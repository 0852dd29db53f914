"""Rasterisation helpers for the ``shapes`` dataset: analytic parts and textured backgrounds.

Coordinates are pixel-index coordinates: the pixel in row ``i``, column ``j`` has its centre
at ``(x, y) = (j, i)``. Every part is a hard (non-anti-aliased) binary shape, so an object's
mask is exactly the set of pixels painted with its colours.

Part geometry in the part's own frame ``(u, v)`` (rotated by ``angle``), ``a`` and ``b`` in
pixels:

========  ==========================================  =============================
kind      inside when                                 ``b`` means
========  ==========================================  =============================
disc      ``u^2 + v^2 <= a^2``                        unused
square    ``|u| <= a and |v| <= a``                   unused
triangle  equilateral, circumradius ``a``, apex -v    unused
bar       ``|u| <= a and |v| <= b``                   half-width
ring      ``b^2 <= u^2 + v^2 <= a^2``                 inner radius
cross     bar of half-length ``a`` and its 90 deg     arm half-width
========  ==========================================  =============================
"""

from __future__ import annotations

import functools
import math

import numpy as np

DISC, SQUARE, TRIANGLE, BAR, RING, CROSS = range(6)

# Edge normals of the triangle: minus the apex directions at -90, 30 and 150 degrees.
_TRI_NORMALS = tuple(
    (-math.cos(math.radians(t)), -math.sin(math.radians(t))) for t in (-90.0, 30.0, 150.0)
)


def part_mask(
    kind: int, cx: float, cy: float, a: float, b: float, angle: float, size: int
) -> np.ndarray:
    """Rasterise one part on a ``size`` x ``size`` grid.

    Parameters
    ----------
    kind : int
        Part type (index into ``PART_NAMES``: disc, square, triangle, bar, ring, cross).
    cx, cy : float
        Centre in pixel-index coordinates.
    a, b : float
        Size parameters in pixels (see the module docstring).
    angle : float
        Rotation of the part in radians.
    size : int
        Canvas side.

    Returns
    -------
    ndarray of bool, shape (size, size)
    """
    out = np.zeros((size, size), dtype=bool)
    reach = a * 1.42 + 1.0  # bounding radius of every kind (square corners are a*sqrt(2) away)
    r0, r1 = max(0, math.floor(cy - reach)), min(size, math.ceil(cy + reach) + 1)
    c0, c1 = max(0, math.floor(cx - reach)), min(size, math.ceil(cx + reach) + 1)
    if r0 >= r1 or c0 >= c1:
        return out
    dy = np.arange(r0, r1, dtype=np.float32)[:, None] - np.float32(cy)
    dx = np.arange(c0, c1, dtype=np.float32)[None, :] - np.float32(cx)
    cos, sin = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    u = dx * cos + dy * sin
    v = dy * cos - dx * sin
    if kind == DISC:
        inside = u * u + v * v <= a * a
    elif kind == RING:
        r2 = u * u + v * v
        inside = (r2 <= a * a) & (r2 >= b * b)
    elif kind == SQUARE:
        inside = (np.abs(u) <= a) & (np.abs(v) <= a)
    elif kind == BAR:
        inside = (np.abs(u) <= a) & (np.abs(v) <= b)
    elif kind == CROSS:
        au, av = np.abs(u), np.abs(v)
        inside = ((au <= a) & (av <= b)) | ((au <= b) & (av <= a))
    elif kind == TRIANGLE:
        half = 0.5 * a
        inside = np.ones(u.shape, dtype=bool)
        for nx, ny in _TRI_NORMALS:
            inside &= u * nx + v * ny <= half
    else:
        raise ValueError(f"unknown part kind {kind}")
    out[r0:r1, c0:c1] = inside
    return out


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a 2-D bool mask by a (2 radius + 1) square (separable max filter)."""
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        out = grown
    return out


@functools.lru_cache(maxsize=16)
def _upsample_matrix(size: int, grid: int) -> np.ndarray:
    """(size, grid) matrix of linear interpolation from ``grid`` nodes to ``size`` pixels."""
    pos = np.linspace(0.0, grid - 1.0, size)
    lo = np.minimum(np.floor(pos).astype(int), grid - 2)
    frac = pos - lo
    mat = np.zeros((size, grid), dtype=np.float32)
    mat[np.arange(size), lo] = 1.0 - frac
    mat[np.arange(size), lo + 1] = frac
    return mat


def textured_background(
    rng: np.random.Generator, size: int, tint: np.ndarray, amplitude: float
) -> np.ndarray:
    """A smooth random texture around ``tint``: every value lies in ``tint +- amplitude``.

    The texture mixes, per channel, bilinear value noise (a random 5x5 grid), an oriented
    sinusoidal grating with 2-7 periods across the image, and a linear gradient.

    Parameters
    ----------
    rng : numpy.random.Generator
    size : int
        Image side.
    tint : ndarray (3,)
        Mean colour in [0, 1].
    amplitude : float
        Largest deviation from ``tint`` in any channel.

    Returns
    -------
    ndarray float32 (3, size, size)
    """
    up = _upsample_matrix(size, 5)
    coords = np.arange(size, dtype=np.float32) / size
    fields = []
    for _ in range(2):  # two independent smooth noise fields
        grid = rng.uniform(-1.0, 1.0, (5, 5)).astype(np.float32)
        fields.append(up @ grid @ up.T)
    theta, phase = rng.uniform(0.0, 2 * np.pi, 2)
    freq = rng.uniform(2.0, 7.0)
    proj = np.cos(theta) * coords[None, :] + np.sin(theta) * coords[:, None]
    fields.append(np.sin(2 * np.pi * freq * proj + phase).astype(np.float32))
    g_angle = rng.uniform(0.0, 2 * np.pi)
    fields.append(
        (2 * (np.cos(g_angle) * coords[None, :] + np.sin(g_angle) * coords[:, None]) - 1.0)
        .clip(-1, 1)
        .astype(np.float32)
    )
    stack = np.stack(fields)  # (4, S, S), each in [-1, 1]
    weights = rng.dirichlet(np.ones(len(fields)), size=3).astype(np.float32)  # (3, 4) rows sum 1
    signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=weights.shape)
    tex = np.tensordot(weights * signs, stack, axes=1)  # (3, S, S) in [-1, 1]
    return (tint.astype(np.float32)[:, None, None] + amplitude * tex).astype(np.float32)
