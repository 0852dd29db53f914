"""Tests of the ``shapes`` synthetic dataset (generator, ground truth, loaders)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from pellucid.data import shapes
from pellucid.data.shapes import (
    CLASS_NAMES,
    NUM_PARTS,
    PART_NAMES,
    ShapesDataset,
    generate_shapes,
    load_shapes,
    load_shapes32,
)
from pellucid.errors import PellucidError
from pellucid.registry import DATASETS


@pytest.fixture(scope="module")
def data64() -> dict[str, np.ndarray]:
    return generate_shapes(160, size=64, seed=3)


@pytest.fixture(scope="module")
def data32() -> dict[str, np.ndarray]:
    return generate_shapes(160, size=32, seed=3)


def test_design_constants():
    assert len(CLASS_NAMES) >= 6 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    assert len(PART_NAMES) == len(set(PART_NAMES)) >= 3
    assert NUM_PARTS >= 3


def test_same_seed_same_data():
    a = generate_shapes(8, size=32, seed=5)
    b = generate_shapes(8, size=32, seed=5)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_different_seed_differs():
    a = generate_shapes(8, size=32, seed=5)
    b = generate_shapes(8, size=32, seed=6)
    assert not np.array_equal(a["images"], b["images"])


def test_slices_are_independent_of_n():
    whole = generate_shapes(12, size=32, seed=1)
    tail = generate_shapes(4, size=32, seed=1, start=8)
    head = generate_shapes(3, size=32, seed=1)
    for key in whole:
        np.testing.assert_array_equal(whole[key][8:], tail[key], err_msg=key)
        np.testing.assert_array_equal(whole[key][:3], head[key], err_msg=key)


@pytest.mark.parametrize("fixture", ["data64", "data32"])
def test_fields_shapes_dtypes_ranges(fixture, request):
    d = request.getfixturevalue(fixture)
    n, p = 160, NUM_PARTS
    s = 64 if fixture == "data64" else 32
    expected = {
        "images": ((n, 3, s, s), np.uint8),
        "labels": ((n,), np.int64),
        "mask": ((n, 1, s, s), np.uint8),
        "box": ((n, 4), np.float32),
        "parts": ((n, p, s, s), np.uint8),
        "landmarks": ((n, p, 2), np.float32),
        "part_ids": ((n, p), np.int64),
    }
    assert set(d) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert d[key].shape == shape, key
        assert d[key].dtype == dtype, key
    assert d["labels"].min() >= 0 and d["labels"].max() < len(CLASS_NAMES)
    assert set(np.unique(d["mask"])) <= {0, 1} and set(np.unique(d["parts"])) <= {0, 1}
    assert d["part_ids"].min() >= -1 and d["part_ids"].max() < len(PART_NAMES)
    present = d["part_ids"] >= 0
    assert present.sum(1).min() >= 3  # every object has at least 3 parts
    assert np.isfinite(d["landmarks"][present]).all()
    assert np.isnan(d["landmarks"][~present]).all()
    assert not d["parts"][~present].any()  # absent slots are empty
    x0, y0, x1, y1 = d["box"].T
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= s).all() and (y1 <= s).all()
    assert (x1 > x0).all() and (y1 > y0).all()


@pytest.mark.parametrize("fixture", ["data64", "data32"])
def test_mask_is_union_of_parts_and_box_is_tight(fixture, request):
    d = request.getfixturevalue(fixture)
    np.testing.assert_array_equal(d["parts"].max(axis=1), d["mask"][:, 0])
    assert d["parts"].sum(axis=1).max() <= 1  # part masks are disjoint (visible pixels)
    for i in range(len(d["labels"])):
        ys, xs = np.nonzero(d["mask"][i, 0])
        assert tuple(d["box"][i]) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


@pytest.mark.parametrize("fixture", ["data64", "data32"])
def test_landmarks_inside_their_part_masks(fixture, request):
    d = request.getfixturevalue(fixture)
    for i, k in zip(*np.nonzero(d["part_ids"] >= 0), strict=True):
        x, y = d["landmarks"][i, k]
        # integer pixel-index coordinates: floor and round agree
        assert x == int(x) and y == int(y)
        assert d["parts"][i, k, int(y), int(x)] == 1


def test_part_ids_are_fixed_per_class(data64):
    for c in range(len(CLASS_NAMES)):
        ids = data64["part_ids"][data64["labels"] == c]
        assert len(ids) > 0
        assert (ids == ids[0]).all(), CLASS_NAMES[c]


def test_object_pixels_differ_from_surroundings(data64):
    """The object is visible: its pixels differ from the background right next to it."""
    for i in range(len(data64["labels"])):
        img = data64["images"][i].astype(np.int16)
        m = data64["mask"][i, 0].astype(bool)
        ring = np.zeros_like(m)  # background pixels 4-adjacent to the object
        ring[1:] |= m[:-1]
        ring[:-1] |= m[1:]
        ring[:, 1:] |= m[:, :-1]
        ring[:, :-1] |= m[:, 1:]
        ring &= ~m
        inside = img[:, m].mean(axis=1)
        outside = img[:, ring].mean(axis=1)
        assert np.abs(inside - outside).max() > 20


def test_every_class_appears(data64):
    assert set(np.unique(data64["labels"])) == set(range(len(CLASS_NAMES)))


def test_object_position_varies(data64):
    box = data64["box"]
    centre = (box[:, :2] + box[:, 2:]) / 2
    assert centre.std(axis=0).min() > 64 / 10


def test_generation_speed():
    generate_shapes(8, size=64)  # warm caches
    # Best of three: the fastest repeat measures the generator, not a busy CI machine.
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        generate_shapes(256, size=64, seed=0)
        times.append(time.perf_counter() - t0)
    elapsed = min(times)
    assert elapsed < 2.0, f"256 images of 64x64 took {elapsed:.2f} s at best (target < 1 s)"


def test_dataset_items_and_info():
    ds = load_shapes("val", seed=0, size=32, n=10)
    assert isinstance(ds, ShapesDataset) and len(ds) == 10
    info = ds.info
    assert info.name == "shapes" and info.num_classes == len(CLASS_NAMES)
    assert info.in_channels == 3 and info.image_size == (32, 32)
    assert info.has_masks and info.has_parts and info.part_names == PART_NAMES
    assert len(info.mean) == len(info.std) == 3
    item = ds[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 32, 32)
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.float32
    assert item["parts"].shape == (NUM_PARTS, 32, 32)
    assert item["landmarks"].shape == (NUM_PARTS, 2) and item["part_ids"].shape == (NUM_PARTS,)
    assert item["box"].shape == (4,)


def test_splits_are_disjoint_and_deterministic():
    a = load_shapes("train", seed=0, size=32, n=4)
    b = load_shapes("test", seed=0, size=32, n=4)
    c = load_shapes("test", seed=0, size=32, n=4)
    assert not torch.equal(a.images, b.images)
    assert torch.equal(b.images, c.images)


def test_registered_names():
    assert "shapes" in DATASETS and "shapes32" in DATASETS
    ds = DATASETS.get("shapes32")("test", seed=0, n=3)
    assert ds.info.image_size == (32, 32)
    assert load_shapes32("test", n=3).images.shape == (3, 3, 32, 32)


def test_bad_split_is_a_clear_error():
    with pytest.raises(PellucidError, match="train, val, test"):
        load_shapes("training", n=2)


@pytest.mark.parametrize("size", [8, 16, 1000, 64.0, "64"])
def test_bad_size_is_a_clear_error(size):
    with pytest.raises(PellucidError, match="size"):
        load_shapes("test", size=size, n=2)


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": -3}, {"n": 2, "seed": -1}])
def test_bad_counts_are_clear_errors(kwargs):
    with pytest.raises(PellucidError):
        generate_shapes(**kwargs)


def test_import_does_no_work():
    # module-level state is constants only (no generated arrays held at import)
    arrays = [v for v in vars(shapes).values() if isinstance(v, (np.ndarray, torch.Tensor))]
    assert arrays == []
