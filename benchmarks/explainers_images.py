"""Which test images each part of ``benchmarks/explainers.py`` uses, kept apart so that
options chosen on one set are judged on another: the benchmark's evenly spaced images
(:func:`spread_images`), the 32 held-out images of the option sweep
(:func:`held_out_images`) and the 128 validation images (:func:`validation_images`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pellucid.explain.evaluate import image_indices, load_images


def spread_indices(size: int, n: int, exclude: set[int] = frozenset()) -> list[int]:
    """``n`` evenly spaced indices of a split of ``size`` images (every ``size / n``-th),
    each moved to the next index not in ``exclude`` (the sweep's held-out images)."""
    out = []
    for j in image_indices(size, n):
        while j in exclude:
            j += 1
        out.append(j % size)
    if len(set(out)) != len(out) or set(out) & set(exclude):
        raise RuntimeError(f"cannot take {n} benchmark images apart from the held-out ones")
    return out


def held_out_indices(size: int, n: int = 32, bench_n: int = 100) -> list[int]:
    """The sweep's images: ``n`` evenly spaced indices none of which is among the ``bench_n``
    evenly spaced ones of 2026-12-01's benchmark (index ``i * size / n`` shifted by half a
    benchmark step, and by one more where it still hits a benchmark image)."""
    bench = {(i * size) // bench_n for i in range(bench_n)}
    idx = [(i * size) // n + size // (2 * bench_n) for i in range(n)]
    idx = [j + 1 if j in bench else j for j in idx]
    if set(idx) & bench:
        raise RuntimeError("held-out images overlap the benchmark images")
    return idx


def benchmark_indices(size: int, n: int, held_out_n: int = 32) -> list[int]:
    """The test-split indices of the benchmark's ``n`` images in a split of ``size``
    (:func:`spread_indices` apart from the ``held_out_n`` sweep images), in
    :func:`spread_images`'s order."""
    return spread_indices(size, n, set(held_out_indices(size, held_out_n)))


def spread_images(run: Path, n: int, held_out_n: int = 32) -> tuple[torch.nn.Module, Any]:
    """The model and ``n`` test images taken at evenly spaced indices of the test split,
    none of them among the sweep's ``held_out_n`` images
    (:func:`held_out_images`), so that options chosen on those are judged on
    others.

    The first ``n`` images are not a sample: cluttered-mnist's test split is ordered by class,
    so its first 100 images are all zeros (the figures before 2026-11-23 were on digit 0 only).
    Every ``len / n``-th image covers every class of a class-ordered split and is an unbiased
    systematic sample of an unordered one. For ``n = 100`` these are the images of every
    benchmark run up to 2026-12-01 (the held-out images were chosen apart from them).
    """
    from pellucid.data.base import collate

    model, _, ds = load_images(run, 1)
    return model, collate([ds[j] for j in benchmark_indices(len(ds), n, held_out_n)])


def held_out_images(run: Path, n: int, bench_n: int = 100) -> tuple[torch.nn.Module, Any]:
    """The sweep's images (:func:`held_out_indices`): the sweep chooses options on these,
    the benchmark reports on others."""
    from pellucid.data.base import collate

    model, _, ds = load_images(run, 1)
    return model, collate([ds[j] for j in held_out_indices(len(ds), n, bench_n)])


def validation_indices(size: int, n: int = 128) -> list[int]:
    """The validation images: ``n`` evenly spaced test indices (offset by a third of a step)
    none of which any benchmark run of 2026-12-01/02 used (the 100 and the 300 benchmark
    images) or that the 32-image sweeps used (such an index moves to the next free one)."""
    used = set(spread_indices(size, 300, set(held_out_indices(size, 32))))
    used |= {(i * size) // 100 for i in range(100)} | set(held_out_indices(size, 32))
    step = size / n
    idx: list[int] = []
    for i in range(n):
        j = int(i * step + step / 3) % size
        while j in used or j in idx:
            j = (j + 1) % size
        idx.append(j)
    return idx


def validation_images(run: Path, n: int) -> tuple[torch.nn.Module, Any]:
    """The model and the :func:`validation_indices` test images of ``run``."""
    from pellucid.data.base import collate

    model, _, ds = load_images(run, 1)
    return model, collate([ds[j] for j in validation_indices(len(ds), n)])


def rest_indices(size: int, n: int | None = None) -> list[int]:
    """Test indices that no earlier part of the benchmark used: none of the 300 and the 100
    benchmark images, the 32 held-out sweep images or the 128 validation images
    (:func:`validation_indices`); ``n`` of them evenly spaced (all when ``n`` is None or at
    least their number). Options were never chosen, nor figures published, on these."""
    used = set(spread_indices(size, 300, set(held_out_indices(size, 32))))
    used |= {(i * size) // 100 for i in range(100)} | set(held_out_indices(size, 32))
    used |= set(validation_indices(size, 128))
    free = [j for j in range(size) if j not in used]
    if n is None or n >= len(free):
        return free
    return [free[(i * len(free)) // n] for i in range(n)]
