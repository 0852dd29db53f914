"""Safe, atomic file writing and reading of weights.

Every file is written to a temporary name in the same directory and renamed into place, so an
interrupted write never destroys the previous version. Weights are safetensors; other state
is loaded with ``torch.load(..., weights_only=True)`` only.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pellucid.errors import DataError


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write`` on a temp file beside it, renamed into place."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory; give a file name to write")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise DataError(f"cannot write {path}: {parent} is a file, not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp creates 0600 files; give the result the mode a plain open() would
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    _atomic(path, lambda p: p.write_text(text))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (e.g. a figure drawn earlier as PNG bytes)."""
    _atomic(path, lambda p: p.write_bytes(data))


def save_figure(fig: Any, path: Path, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically (temp file + rename)."""
    _atomic(Path(path), lambda p: fig.savefig(p, dpi=dpi, format="png"))
    return Path(path)


def strict_json(data: Any, fallback: Callable[[Any], Any] | None = None) -> Any:
    """``data`` with every NaN or infinite number (an undefined correlation, a mean over
    nothing) replaced by ``None``, and NumPy / 0-dim torch numbers as Python floats, so that
    it serialises to standard JSON (RFC 8259 has no NaN: ``jq`` and ``JSON.parse`` reject
    Python's ``NaN`` token). Another object goes through ``fallback`` (e.g. ``str`` for a
    path) when given, else is a TypeError."""
    if isinstance(data, dict):
        return {k: strict_json(v, fallback) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json(v, fallback) for v in data]
    if data is None or isinstance(data, (str, bool, int)):
        return data
    if isinstance(data, numbers.Integral):  # a NumPy integer
        return int(data)
    try:
        value = float(data)  # float, NumPy scalar, 0-dim tensor
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of many numbers
        if fallback is None:
            raise TypeError(f"cannot write {type(data).__name__} {data!r} as JSON") from None
        return strict_json(fallback(data))
    return value if math.isfinite(value) else None


def json_text(data: Any) -> str:
    """Standard JSON (indented, sorted keys; NaN / inf written as ``null``, see
    :func:`strict_json`)."""
    return json.dumps(strict_json(data), indent=2, sort_keys=True, allow_nan=False)


def write_json(path: Path, data: Any) -> None:
    """Write :func:`json_text` of ``data`` atomically."""
    atomic_write_text(Path(path), json_text(data) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file; a missing or malformed one is a :class:`DataError` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path} not found") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON: {err}") from None


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Save a tensor dict as safetensors, atomically (tensors made contiguous, on CPU; a
    tensor sharing memory with an earlier one, e.g. the same tensor under two names, is
    copied, which safetensors requires)."""
    from safetensors.torch import save_file

    flat: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in tensors.items():
        v = v.detach().to("cpu").contiguous()
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen and v.numel() > 0:
            v = v.clone()
        seen.add(v.untyped_storage().data_ptr())
        flat[k] = v
    _atomic(Path(path), lambda p: save_file(flat, str(p)))


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file; a clear error when it is missing or corrupt."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found")
    try:
        return load_file(str(path), device=str(device))
    except Exception as err:
        raise DataError(f"{path} is not a valid safetensors file: {err}") from None


def check_finite(tensors: dict[str, Any], what: str) -> dict[str, Any]:
    """``tensors``, or a :class:`DataError` naming ``what`` and its first floating tensors that
    hold NaN or inf (weights read from a file, before a model uses them)."""
    bad = [
        k
        for k, v in tensors.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not v.isfinite().all()
    ]
    if bad:
        raise DataError(f"{what} holds NaN or infinite values in {', '.join(bad[:3])}")
    return tensors


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Save optimiser/scheduler state (tensors, numbers, lists, dicts only), atomically."""
    _atomic(Path(path), lambda p: torch.save(state, p))


def load_state(path: Path) -> dict[str, Any]:
    """Load state saved by :func:`save_state` with ``weights_only=True`` (no unpickling of
    arbitrary objects)."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path} not found") from None
    except Exception as err:
        raise DataError(f"cannot load {path}: {err}") from None
