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


def _read_image(
    path: Path, mode: str, size: tuple[int, int] | None, nearest: bool = False
) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.NEAREST if nearest else Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)


def _size(path: Path) -> tuple[int, int]:
    """An image file's (width, height), read from its header."""
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def _scan(root: Path) -> tuple[list[Path], list[int], list[str]]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"image folder {root} has no class sub-folders (expected root/<class>/*)")
    files, labels = [], []
    for c, name in enumerate(classes):
        for f in sorted((root / name).rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                files.append(f)
                labels.append(c)
    if not files:
        raise DataError(f"image folder {root} contains no images ({', '.join(IMAGE_SUFFIXES)})")
    return files, labels, classes


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
    (default: the first image's size) and converted to ``channels`` (1 or 3).
    """
    check_split(split, "folder")
    if root is None:
        raise DataError("the 'folder' dataset needs root=PATH (e.g. --data-option root=imgs)")
    if channels not in (1, 3):
        raise DataError(f"folder: channels must be 1 or 3, got {channels}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise DataError(f"folder: size (the side images are resized to) must be >= 1, got {size}")
    base = Path(root)
    presplit = (base / split).is_dir()
    files, labels, classes = _scan(base / split if presplit else base)
    if presplit:
        idx = np.arange(len(files))
    else:
        idx = stratified_split(np.asarray(labels), FRACTIONS, seed)[split]
        idx = check_nonempty(idx, split, f"image folder {base}", len(files))
    mode = "L" if channels == 1 else "RGB"
    hw = (size, size) if size else None
    if hw is None:
        first = _read_image(files[0], mode, None)
        hw = (first.shape[1], first.shape[2])
    images = np.stack([_read_image(files[i], mode, hw) for i in idx])
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
    if images.shape[1] not in (1, 3) and images.shape[3] in (1, 3):
        raise DataError(
            f"{path}: images of shape {images.shape} look channel-last (N, H, W, C); pellucid "
            "expects (N, C, H, W): save images.transpose(0, 3, 1, 2)"
        )
    if not np.issubdtype(images.dtype, np.integer) and not np.isfinite(images).all():
        raise DataError(f"{path}: images contain NaN or infinite values")
    labels = _npz_labels(arrays["labels"], len(images), path)
    if num_classes is not None and int(num_classes) < 1:
        raise DataError(f"npz: num_classes must be >= 1, got {num_classes}")
    n_cls = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    idx = stratified_split(labels, FRACTIONS, seed)[split]
    idx = check_nonempty(idx, split, f"npz file {path}", len(images))
    img = torch.from_numpy(images[idx])
    if img.dtype != torch.uint8:
        img = img.float()
        if float(img.min()) < 0 or float(img.max()) > 1:
            raise DataError(f"{path}: float images must lie in [0, 1] (pixel space)")
    names = tuple(str(s) for s in arrays.get("class_names", [str(c) for c in range(n_cls)]))
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
