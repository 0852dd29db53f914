"""Helpers shared by the benchmark scripts: machine facts and atomic JSON results."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import torch

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
        "date": time.strftime("%Y-%m-%d"),
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    from pellucid.io import write_json

    path = RESULTS / f"{name}.json"
    write_json(path, {"machine": machine(), "command": " ".join(sys.argv), **payload})
    print(f"wrote {path}")
    return path
