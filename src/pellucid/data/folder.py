"""Users' own data: an image folder (one sub-folder per class), a local ``.npz`` file, and
CIFAR-10 from its binary distribution on disk. Nothing is downloaded."""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pellucid.data.base import DatasetInfo, PellucidDataset
from pellucid.data.splits import check_nonempty, check_split, stratified_split
from pellucid.errors import DataError
from pellucid.registry import DATASETS

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
FRACTIONS = (0.7, 0.1, 0.2)


#: PIL modes of more than 8 bits per pixel: 16-bit integers (scaled by 65535) and 32-bit
#: floats (taken as pixel values in [0, 1]); ``Image.convert`` would clip them to 0 or 255
WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0,
              "I": 65535.0, "F": 1.0}  # fmt: skip


def _read_image(
    path: Path, mode: str, size: tuple[int, int] | None, nearest: bool = False
) -> np.ndarray:
    """(C, H, W): uint8 for 8-bit files, float32 in [0, 1] for 16-bit and float files."""
    resample = Image.NEAREST if nearest else Image.BILINEAR
    try:
        with Image.open(path) as im:
            if im.mode in WIDE_MODES:
                arr = _wide_image(im, path, mode, size, resample)
            else:
                im = im.convert(mode)
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), resample)
                arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)


def _wide_image(
    im: Image.Image, path: Path, mode: str, size: tuple[int, int] | None, resample: int
) -> np.ndarray:
    """A single-channel 16-bit or float image as float32 in [0, 1], (H, W) or (H, W, 3)."""
    scale = WIDE_MODES[im.mode]
    arr = np.asarray(im, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise DataError(f"image {path} contains NaN or infinite values")
    low, high = float(arr.min()), float(arr.max())
    if low < 0 or high > scale:
        what = "float images must hold values in [0, 1]" if scale == 1 else (
            "16-bit images must hold values in [0, 65535]"
        )  # fmt: skip
        raise DataError(f"image {path}: {what}, got [{low:g}, {high:g}]")
    arr = arr / scale
    if size is not None and arr.shape != size:
        arr = np.asarray(Image.fromarray(arr, "F").resize((size[1], size[0]), resample))
    arr = np.clip(arr, 0.0, 1.0)
    return np.repeat(arr[..., None], 3, axis=2) if mode == "RGB" else arr


def _size(path: Path) -> tuple[int, int]:
    """An image file's (width, height), read from its header."""
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def _class_dirs(root: Path) -> list[str]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a directory")
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _scan(root: Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """Image files under ``root/<class>/`` and their labels. ``classes`` (a pre-split
    folder's classes over all its splits) fixes the label of each class name; a class may
    then have no folder, or an empty one, in this split."""
    own = _class_dirs(root)
    if classes is None:
        classes = own
    if not classes:
        raise DataError(f"image folder {root} has no class sub-folders (expected root/<class>/*)")
    files, labels, empty = [], [], []
    for c, name in enumerate(classes):
        found = [
            f
            for f in sorted((root / name).rglob("*"))
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
        ]
        files += found
        labels += [c] * len(found)
        if not found and name in own:
            empty.append(name)
    if not files:
        raise DataError(f"image folder {root} contains no images ({', '.join(IMAGE_SUFFIXES)})")
    if empty and classes is own:
        raise DataError(
            f"image folder {root}: class folder(s) {', '.join(empty)} hold no images; a class "
            "without images cannot be learnt (remove the folder or add its images)"
        )
    return files, labels, classes


def _presplit_classes(base: Path) -> list[str]:
    """The classes of a pre-split folder: every class folder of any split, sorted, so that a
    class has the same label in every split even where a split lacks it."""
    names = set()
    for split in ("train", "val", "test"):
        if (base / split).is_dir():
            names.update(_class_dirs(base / split))
    return sorted(names)


def warn_empty_masks(masks: torch.Tensor, where: str, split: str, names: list[str]) -> None:
    """Warn when some of ``masks`` (N, ...) have no object pixel, naming the first few by
    ``names``: the localisation scores count such an image as a miss (pointing game) or 0
    (energy pointing game, IoU), which lowers them without another sign."""
    empty = np.flatnonzero(~masks.flatten(1).bool().any(dim=1).numpy())
    if len(empty):
        shown = ", ".join(names[i] for i in empty[:3]) + (", ..." if len(empty) > 3 else "")
        warnings.warn(
            f"{where}: {len(empty)} of {len(masks)} {split} masks are empty ({shown}); the "
            "pointing game counts those images as misses and the energy pointing game and "
            "IoU score them 0",
            stacklevel=5,  # load_dataset's caller (through the loader and the registry)
        )


@DATASETS.register("folder", help="your images: root/<class>/*.png, optional masks folder")
def load_folder(
    split: str,
    seed: int = 0,
    root: str | None = None,
    masks: str | None = None,
    size: int | None = None,
    channels: int = 3,
) -> PellucidDataset:
    """An image folder with one sub-folder per class.

    If ``root`` has ``train``/``val``/``test`` sub-folders they are used as splits, otherwise a
    stratified 70/10/20 split is drawn by ``seed``. ``masks`` is an optional folder with the
    same relative file names (any image; non-zero = object). Images are resized to ``size``
    (default: the first image's size; in a pre-split folder, the first image of ``train``)
    and converted to ``channels`` (1 or 3). In a pre-split folder the classes are the class
    folders of all splits, so a class keeps its label in a split that lacks it. 8-bit files
    are read as they are; 16-bit files (PIL modes ``I;16``, ``I``) are scaled by 65535 and
    float files (mode ``F``) must hold values in [0, 1]: a folder with any of those is
    loaded as float images.
    """
    check_split(split, "folder")
    if root is None:
        raise DataError("the 'folder' dataset needs root=PATH (e.g. --data-option root=imgs)")
    if channels not in (1, 3):
        raise DataError(f"folder: channels must be 1 or 3, got {channels}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise DataError(f"folder: size (the side images are resized to) must be >= 1, got {size}")
    base = Path(root)
    presplit = any((base / s).is_dir() for s in ("train", "val", "test"))
    if presplit and not (base / split).is_dir():
        raise DataError(f"image folder {base} has split folders but no {split!r} folder")
    if masks is not None and not Path(masks).is_dir():
        raise DataError(f"masks folder {masks} does not exist or is not a directory")
    classes = _presplit_classes(base) if presplit else None
    files, labels, classes = _scan(base / split if presplit else base, classes)
    if presplit:
        idx = np.arange(len(files))
    else:
        idx = stratified_split(np.asarray(labels), FRACTIONS, seed)[split]
        idx = check_nonempty(idx, split, f"image folder {base}", len(files))
    mode = "L" if channels == 1 else "RGB"
    hw = (size, size) if size else None
    if hw is None:  # every split takes the size of the first image of the first split
        if presplit:
            first_split = next(s for s in ("train", "val", "test") if (base / s).is_dir())
            first_file = _scan(base / first_split, classes)[0][0]
        else:
            first_file = files[0]
        first = _read_image(first_file, mode, None)
        hw = (first.shape[1], first.shape[2])
    read = [_read_image(files[i], mode, hw) for i in idx]
    if any(a.dtype != np.uint8 for a in read):  # 16-bit or float files: all as float
        read = [a.astype(np.float32) / 255 if a.dtype == np.uint8 else a for a in read]
    images = np.stack(read)
    extra = {}
    if masks is not None:
        mroot = Path(masks) / split if presplit else Path(masks)
        rel_root = base / split if presplit else base
        mask_list = []
        for i in idx:
            mpath = mroot / files[i].relative_to(rel_root)
            if not mpath.exists():
                raise DataError(f"mask missing for {files[i]}: expected {mpath}")
            if _size(mpath) != _size(files[i]):
                raise DataError(
                    f"mask {mpath} is {_size(mpath)} (width, height) but its image "
                    f"{files[i]} is {_size(files[i])}"
                )
            mask_list.append(_read_image(mpath, "L", hw, nearest=True) > 0)
        extra["mask"] = torch.from_numpy(np.stack(mask_list).astype(np.uint8))
        names = [str(files[i].relative_to(rel_root)) for i in idx]
        warn_empty_masks(extra["mask"], f"folder {masks}", split, names)
    info = DatasetInfo(
        name="folder",
        num_classes=len(classes),
        in_channels=channels,
        image_size=hw,
        class_names=tuple(classes),
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        has_masks="mask" in extra,
    )
    labels_t = torch.as_tensor(np.asarray(labels)[idx], dtype=torch.long)
    return PellucidDataset(info, torch.from_numpy(images), labels_t, **extra)


@DATASETS.register("npz", help="a local .npz file with images (N,C,H,W or N,H,W) and labels")
def load_npz(
    split: str,
    seed: int = 0,
    path: str | None = None,
    num_classes: int | None = None,
) -> PellucidDataset:
    """Arrays from a local ``.npz`` file (read with ``allow_pickle=False``).

    Keys: ``images`` (uint8 in [0, 255] or float in [0, 1]; (N, C, H, W) or (N, H, W)),
    ``labels`` (N,), optional ``masks`` (N, H, W) or (N, 1, H, W), optional ``class_names``.
    """
    check_split(split, "npz")
    if path is None:
        raise DataError("the 'npz' dataset needs path=FILE.npz")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if magic == b"\x93NUMPY":
        raise DataError(
            f"{path} is a single .npy array; the 'npz' dataset reads an .npz archive with "
            "arrays 'images' and 'labels' (numpy.savez)"
        )
    if not magic.startswith(b"PK"):
        raise DataError(f"{path} is not an .npz archive (numpy.savez writes one)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    for key in ("images", "labels"):
        if key not in arrays:
            raise DataError(f"{path}: missing array {key!r} (found: {', '.join(arrays)})")
    images = arrays["images"]
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or len(images) == 0 or 0 in images.shape[2:]:
        raise DataError(
            f"{path}: images must be a non-empty (N, C, H, W) array, got {images.shape}"
        )
    if images.shape[1] not in (1, 3, 4) and images.shape[3] in (1, 3, 4):
        raise DataError(
            f"{path}: images of shape {images.shape} look channel-last (N, H, W, C); pellucid "
            "expects (N, C, H, W): save images.transpose(0, 3, 1, 2)"
        )
    if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
        raise DataError(f"{path}: images contain NaN or infinite values")
    labels = _npz_labels(arrays["labels"], len(images), path)
    if num_classes is not None and int(num_classes) < 1:
        raise DataError(f"npz: num_classes must be >= 1, got {num_classes}")
    n_cls = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    idx = stratified_split(labels, FRACTIONS, seed)[split]
    idx = check_nonempty(idx, split, f"npz file {path}", len(images))
    img = torch.from_numpy(_npz_pixels(images[idx], path))
    raw_names = arrays.get("class_names", [str(c) for c in range(n_cls)])
    names = tuple(s.decode() if isinstance(s, bytes) else str(s) for s in raw_names)
    if len(names) != n_cls:
        raise DataError(f"{path}: {len(names)} class_names for {n_cls} classes")
    extra = {}
    if "masks" in arrays:
        m = arrays["masks"]
        want = (len(images), images.shape[2], images.shape[3])
        ok = (m.ndim == 3 and m.shape == want) or (
            m.ndim == 4 and m.shape[1] == 1 and m.shape[:1] + m.shape[2:] == want
        )
        if not ok:
            raise DataError(
                f"{path}: masks must be (N, H, W) or (N, 1, H, W) matching the images "
                f"{want}, got {m.shape}"
            )
        if not np.issubdtype(m.dtype, np.number) and m.dtype != bool:
            raise DataError(f"{path}: masks must be numbers or booleans, got dtype {m.dtype}")
        if np.issubdtype(m.dtype, np.floating) and not np.isfinite(m).all():
            raise DataError(f"{path}: masks contain NaN or infinite values")
        extra["mask"] = torch.from_numpy((m[:, None] if m.ndim == 3 else m)[idx] > 0).to(
            torch.uint8
        )
        warn_empty_masks(extra["mask"], f"{path}", split, [f"index {i}" for i in idx])
    c = images.shape[1]
    info = DatasetInfo(
        name="npz",
        num_classes=n_cls,
        in_channels=c,
        image_size=(images.shape[2], images.shape[3]),
        class_names=names,
        mean=(0.5,) * c,
        std=(0.25,) * c,
        has_masks="mask" in extra,
    )
    return PellucidDataset(info, img, torch.from_numpy(labels[idx]), **extra)


def _npz_pixels(images: np.ndarray, path: str) -> np.ndarray:
    """An npz file's images as uint8 (0-255) or float32 in [0, 1], or a DataError saying
    what the values are: integers other than uint8 are taken as 8-bit values if they lie in
    [0, 255], booleans as 0 / 1."""
    if images.dtype == np.uint8:
        return images
    if images.dtype == bool:
        return images.astype(np.float32)
    if np.issubdtype(images.dtype, np.integer):
        low, high = int(images.min()), int(images.max())
        if low < 0 or high > 255:
            raise DataError(
                f"{path}: integer images must hold 8-bit values in [0, 255], got dtype "
                f"{images.dtype} with values in [{low}, {high}]; save float images in [0, 1] "
                "(e.g. images / 65535 for 16-bit data)"
            )
        return images.astype(np.uint8)
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"{path}: images must be numbers, got dtype {images.dtype}")
    out = images.astype(np.float32)
    low, high = float(out.min()), float(out.max())
    if low < 0 or high > 1:
        raise DataError(
            f"{path}: float images must lie in [0, 1] (pixel space), got [{low:.4g}, {high:.4g}]"
        )
    return out


def _npz_labels(raw: np.ndarray, n: int, path: str) -> np.ndarray:
    """The labels (N,) of an npz file as int64, or a DataError naming what is wrong: not
    one per image, or not whole numbers (their range is checked by the dataset)."""
    if raw.ndim != 1 or len(raw) != n:
        raise DataError(f"{path}: labels must be (N,) = ({n},), one per image, got {raw.shape}")
    if not np.issubdtype(raw.dtype, np.integer):
        whole = np.issubdtype(raw.dtype, np.floating) and np.isfinite(raw).all()
        if not whole or (raw != np.round(raw)).any():
            raise DataError(f"{path}: labels must be whole numbers, got dtype {raw.dtype}")
    labels = raw.astype(np.int64)
    if labels.min() < 0:
        raise DataError(f"{path}: labels must be >= 0, got {labels.min()}")
    return labels


CIFAR_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


@DATASETS.register("cifar10", help="CIFAR-10 from local binary files (cifar-10-batches-bin)")
def load_cifar10(split: str, seed: int = 0, root: str | None = None) -> PellucidDataset:
    """CIFAR-10 read from the *binary* distribution already on disk; never downloaded.

    ``root`` (default ``$PELLUCID_DATA/cifar10`` or ``data/cifar10``) must contain
    ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin`` (directly or in a
    ``cifar-10-batches-bin`` sub-folder). The pickled "python version" is refused on purpose:
    we never unpickle user files. ``val`` is 5,000 images held out of the training batches.
    """
    check_split(split, "cifar10")
    base = Path(root or Path(os.environ.get("PELLUCID_DATA", "data")) / "cifar10")
    if (base / "cifar-10-batches-bin").is_dir():
        base = base / "cifar-10-batches-bin"
    names = ["test_batch.bin"] if split == "test" else [f"data_batch_{i}.bin" for i in range(1, 6)]
    missing = [n for n in names if not (base / n).is_file()]
    if missing:
        raise DataError(
            f"cifar10: {', '.join(missing)} not found in {base}. pellucid never downloads data: "
            "put the CIFAR-10 binary version (cifar-10-binary.tar.gz, extracted) there, or pass "
            "root=PATH"
        )
    records = []
    for n in names:
        raw = np.fromfile(base / n, dtype=np.uint8)
        if raw.size % 3073:
            raise DataError(f"cifar10: {base / n} is corrupt (size not a multiple of 3073 bytes)")
        records.append(raw.reshape(-1, 3073))
    data = np.concatenate(records)
    labels, images = data[:, 0].astype(np.int64), data[:, 1:].reshape(-1, 3, 32, 32)
    if split != "test":
        parts = stratified_split(labels, (0.9, 0.1, 0.0), seed)
        idx = parts[split]
        labels, images = labels[idx], images[idx]
    info = DatasetInfo(
        name="cifar10",
        num_classes=10,
        in_channels=3,
        image_size=(32, 32),
        class_names=CIFAR_CLASSES,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
    )
    return PellucidDataset(info, torch.from_numpy(images.copy()), torch.from_numpy(labels))
