"""Users' own files: pre-split image folders, 16-bit and float images, empty class folders,
npz pixel types and class names (pellucid.data.folder)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pellucid.data import load_dataset
from pellucid.errors import DataError


def _solid(path, value, size=(12, 12), mode=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8 if mode is None else np.uint16)).save(path)


def test_a_presplit_folder_keeps_each_class_label_in_a_split_that_lacks_it(tmp_path):
    """Was: the test split's classes were its own folders, so without 'banana' the class
    'cherry' got banana's label, silently."""
    values = {"apple": 30, "banana": 120, "cherry": 220}
    for split in ("train", "val"):
        for name, v in values.items():
            for i in range(3):
                _solid(tmp_path / split / name / f"{i}.png", v)
    for name in ("apple", "cherry"):
        _solid(tmp_path / "test" / name / "0.png", values[name], size=(20, 20))
    test = load_dataset("folder", "test", root=str(tmp_path), channels=1)
    assert test.info.class_names == ("apple", "banana", "cherry")
    assert test.labels.tolist() == [0, 2]
    assert test.info.image_size == (12, 12)  # the train split's size, not its own 20x20
    assert test.images.shape == (2, 1, 12, 12)
    train = load_dataset("folder", "train", root=str(tmp_path), channels=1)
    assert train.info.class_names == test.info.class_names and train.info.num_classes == 3
    (tmp_path / "test").rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="has split folders but no 'test' folder"):
        load_dataset("folder", "test", root=str(tmp_path))


def test_16_bit_and_float_images_keep_their_values(tmp_path):
    """Was: PIL's convert clipped them, so 16-bit files loaded as white and float files
    as black."""
    root = tmp_path / "wide"
    for c, v in (("dark", 1000), ("bright", 60000)):
        for i in range(5):
            _solid(root / c / f"{i}.png", v, mode="I;16")
    ds = load_dataset("folder", "train", root=str(root), channels=1)
    assert ds.images.dtype == torch.float32
    levels = sorted({round(float(x), 4) for x in ds.images.flatten()})
    assert levels == [round(1000 / 65535, 4), round(60000 / 65535, 4)]
    rgb = load_dataset("folder", "train", root=str(root), channels=3, size=6)
    assert rgb.images.shape[1:] == (3, 6, 6)
    assert torch.allclose(rgb.images[:, 0], rgb.images[:, 2])
    floats = tmp_path / "float"
    for c, v in (("a", 0.25), ("b", 0.75)):
        for i in range(5):
            (floats / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), v, np.float32), "F").save(floats / c / f"{i}.tif")
    values = load_dataset("folder", "train", root=str(floats), channels=1).images.unique()
    assert values.tolist() == [0.25, 0.75]
    Image.fromarray(np.full((8, 8), 3.0, np.float32), "F").save(floats / "a" / "0.tif")
    with pytest.raises(DataError, match=r"0\.tif: float images must hold values in \[0, 1\]"):
        load_dataset("folder", "train", root=str(floats), channels=1)


def test_an_empty_class_folder_and_a_missing_masks_folder_are_named(tmp_path):
    for c in ("a", "b"):
        for i in range(5):
            _solid(tmp_path / "img" / c / f"{i}.png", 100)
    with pytest.raises(DataError, match="masks folder .*nowhere does not exist"):
        load_dataset("folder", "train", root=str(tmp_path / "img"), masks=str(tmp_path / "nowhere"))
    (tmp_path / "img" / "zz").mkdir()
    with pytest.raises(DataError, match=r"class folder\(s\) zz hold no images"):
        load_dataset("folder", "train", root=str(tmp_path / "img"))


def test_npz_pixel_types_and_byte_class_names(tmp_path):
    labels = np.arange(40) % 2
    path = tmp_path / "d.npz"
    wide = np.full((40, 1, 6, 6), 200, np.int64)
    np.savez(path, images=wide, labels=labels, class_names=np.array([b"red", b"blue"]))
    ds = load_dataset("npz", "train", path=str(path))
    assert ds.info.class_names == ("red", "blue")
    assert ds.images.dtype == torch.uint8 and int(ds.images.max()) == 200
    np.savez(path, images=np.full((40, 1, 6, 6), 4000, np.uint16), labels=labels)
    with pytest.raises(DataError, match=r"8-bit values in \[0, 255\], got dtype uint16 .*4000"):
        load_dataset("npz", "train", path=str(path))
    np.savez(path, images=np.full((40, 6, 6, 4), 9, np.uint8), labels=labels)  # RGBA, last
    with pytest.raises(DataError, match="look channel-last"):
        load_dataset("npz", "train", path=str(path))
    np.savez(path, images=np.full((40, 1, 6, 6), 1.5, np.float32), labels=labels)
    with pytest.raises(DataError, match=r"float images must lie in \[0, 1\].*got \[1\.5, 1\.5\]"):
        load_dataset("npz", "train", path=str(path))
