"""Helpers shared by the benchmark scripts: machine facts and atomic JSON results."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SHIPPED_MODELS = Path(__file__).resolve().parent / "models"  # <dataset>.safetensors


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# The instruction sets that torch's own kernels (ATen), oneDNN (convolutions) and MKL may use.
# The same recipe and seed train other weights where these differ: on 2026-12-03 an AVX-512
# machine trained cluttered-mnist weights ac24718cf84f7a58 natively, ba192691cfe30bd5 with only
# ATen held to AVX2, and the published 30e7b7c700a55179 (trained on an AVX2 machine) with all
# three held to AVX2. The explainer benchmarks therefore run under these settings.
ISA_PIN = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


def pin_isa() -> None:
    """Re-run this script with :data:`ISA_PIN` set in its environment, unless it already is
    (or ``PELLUCID_NATIVE_ISA=1`` asks for the machine's own instruction sets). Call it first
    thing under ``if __name__ == "__main__"``: the libraries read these settings when they
    load."""
    if os.environ.get("PELLUCID_NATIVE_ISA") == "1":
        return
    if all(os.environ.get(k) == v for k, v in ISA_PIN.items()):
        return
    os.environ.update(ISA_PIN)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, *sys.argv])


def machine() -> dict[str, Any]:
    import torch

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        # the same recipe trained other weights on another machine (2026-12-02); the CPU and
        # its capability are recorded so that such a difference can be traced
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "isa_settings": {k: os.environ.get(k) for k in ISA_PIN},
        "cuda": torch.cuda.is_available(),
        "date": time.strftime("%Y-%m-%d"),
    }


@contextlib.contextmanager
def result_lock(name: str) -> Iterator[None]:
    """Hold an exclusive lock on ``results/NAME.json`` (an ``flock`` on
    ``results/.NAME.lock``) while a process reads, merges and writes it: two processes of one
    study (one per dataset) finishing at once would otherwise each keep only its own part."""
    import fcntl

    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_dataset_results(name: str, results: dict[str, Any], payload: dict[str, Any]) -> Path:
    """:func:`write_result` of ``{**payload, "results": results}`` (dataset -> entry),
    keeping the saved entries of the datasets this process did not measure; read and
    written under :func:`result_lock`, so studies run per dataset in parallel keep each
    other's entries."""
    with result_lock(name):
        path = RESULTS / f"{name}.json"
        merged = dict(results)
        if path.is_file():
            for ds, entry in json.loads(path.read_text()).get("results", {}).items():
                merged.setdefault(ds, entry)
        return write_result(name, {**payload, "results": merged})


def write_result(name: str, payload: dict[str, Any]) -> Path:
    from pellucid.io import write_json

    path = RESULTS / f"{name}.json"
    write_json(path, {"machine": machine(), "command": " ".join(sys.argv), **payload})
    print(f"wrote {path}")
    return path


def model_sha256(model: Any) -> str:
    """First 16 hex digits of the SHA-256 of a model's state dict (:func:`state_sha256`):
    which trained model a result was measured on. The same recipe trained other weights on
    another machine, so results of two sessions can be put side by side only where this
    matches."""
    return state_sha256(model.state_dict())


def state_sha256(state: Any) -> str:
    """:func:`model_sha256` of a state dict (keys in order, each tensor's bytes), e.g. of a
    safetensors file read with ``safetensors.torch.load_file``."""
    import hashlib

    h = hashlib.sha256()
    for key, value in sorted(state.items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def published_sha256(dataset: str, name: str = "explainers") -> tuple[str, str] | None:
    """``(fingerprint, source)`` of the model ``results/<name>.json`` was measured on for
    ``dataset``: the fingerprint that file records, else (files written before fingerprints
    were recorded) that of the model shipped in ``benchmarks/models``; None if neither."""
    try:
        sha = json.loads((RESULTS / f"{name}.json").read_text())["results"][dataset]
        return sha["model_sha256"], f"results/{name}.json"
    except (OSError, KeyError, TypeError, ValueError):
        pass
    shipped = SHIPPED_MODELS / f"{dataset}.safetensors"
    if not shipped.is_file():
        return None
    from safetensors.torch import load_file

    return state_sha256(load_file(shipped)), f"the shipped {shipped.name}"


def published_model_check(model: Any, dataset: str, name: str = "explainers") -> str | None:
    """Compare a model's :func:`model_sha256` with the published one
    (:func:`published_sha256`). Returns a warning (also printed) when they differ, so that
    a user does not compare another model's figures with the README's as if they were one
    model's; ``None`` when they match or nothing was published for ``dataset``."""
    published = published_sha256(dataset, name)
    if published is None:
        return None
    sha = model_sha256(model)
    if sha == published[0]:
        return None
    msg = (
        f"warning: the {dataset} model here ({sha}) is not the published one ({published[0]}, "
        f"{published[1]}). A model the recipe trained (--retrain, or a run an earlier version "
        "left in --runs) differs on another CPU vendor (README, 'The same benchmark on "
        "another training'), so these figures will not match the README's: remove the run to "
        "use the shipped model, or pass --result NAME to keep the published file."
    )
    print(msg, file=sys.stderr, flush=True)
    return msg


def remove_unfinished(out: Path) -> None:
    """Delete an interrupted training at ``out`` (no ``metrics.json``), so that the recipe
    trains again from the start there (``train_run`` refuses to overwrite one)."""
    import shutil

    if out.is_dir() and not (out / "metrics.json").is_file():
        shutil.rmtree(out)


def finished_run(out: Path, config: Any) -> bool:
    """Whether ``out`` holds a finished run (``metrics.json``) of ``config``; a finished run of
    another config stops the benchmark (a stale run would be measured as if it were this
    recipe's). The dataset facts (``info``) and the initial weights (``init``) recorded at
    training are not compared."""
    from pellucid.config import load_config

    if not (out / "metrics.json").is_file():
        return False
    saved = load_config(out / "config.yaml")
    if saved.replace(info={}, init=None) != config.replace(info={}, init=None):
        raise SystemExit(
            f"{out} holds a run of another config than this benchmark's recipe; remove it "
            "or point the benchmark at another runs directory"
        )
    return True


# ------------------------------------------------------------------ shared run cache
RUN_CACHE = Path(__file__).resolve().parent / ".run-cache"  # gitignored
SOURCE = Path(__file__).resolve().parents[1] / "src" / "pellucid"


def training_sources(root: str = "pellucid.training") -> list[Path]:
    """The ``.py`` files of pellucid that ``root`` can run: the static import closure of
    the module -- every ``import`` statement, at the top of a module or inside a function,
    followed transitively, with each module's parent packages. A superset of what training
    executes, as long as nothing in it imports by name at run time (a test checks that);
    the explainers, the applications that training does not use, the CLI and the report
    are outside it."""
    import ast

    def module_file(name: str) -> Path | None:
        parts = name.split(".")
        if parts[0] != "pellucid":
            return None
        base = SOURCE.joinpath(*parts[1:])
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path
        return None

    todo, seen = [root], {}
    while todo:
        name = todo.pop()
        path = None if name in seen else module_file(name)
        if path is None:
            continue
        seen[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                module = ".".join(x for x in (base, node.module) if x)
                todo += [module, *(f"{module}.{a.name}" for a in node.names)]
    return sorted(set(seen.values()))


def source_sha256() -> str:
    """A fingerprint of the pellucid source that training runs (:func:`training_sources`,
    committed or not): a cached run is reused only by the code that trained it, and an edit
    to an explainer, the adversarial detectors, the CLI or the report does not retrain.
    Each file counts by its syntax tree without docstrings (:func:`code_dump`), so that
    comments, docstrings and formatting do not retrain either."""
    import hashlib

    h = hashlib.sha256()
    for path in training_sources():
        h.update(path.relative_to(SOURCE).as_posix().encode() + b"\0" + code_dump(path) + b"\0")
    return h.hexdigest()


def code_dump(path: Path) -> bytes:
    """What of a module can change what it does: :func:`ast.dump` of its syntax tree with
    the docstrings of the module, its classes and its functions removed (comments and
    formatting are not in the tree). Annotations stay: dataclass fields are annotations."""
    import ast

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def run_key(config: Any) -> str:
    """The cache key of a training run: its config (without the dataset facts recorded at
    training), the source fingerprint, and what else changes the trained weights on one
    machine: torch's version and thread count, the CPU, the instruction set torch's kernels
    use and the instruction-set pins (:data:`ISA_PIN`). A fine-tuning run's ``init`` is the
    cached path of the run it starts from, so it is keyed by that run's own key."""
    import hashlib

    import torch

    raw = json.dumps(
        {
            "config": config.replace(info={}).to_dict(),
            "source": source_sha256(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": cpu_model(),
            # the same CPU model string can run AVX2 or AVX512 kernels (another VM, or a pin)
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "isa": {k: os.environ.get(k) for k in ISA_PIN},
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def cached_run(config: Any, cache: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Train ``config`` once and share the run between benchmarks: the run directory (under
    ``cache``, default ``benchmarks/.run-cache``; ``PELLUCID_RUN_CACHE=DIR`` moves it, ``=0``
    turns the cache off and trains into a fresh temporary directory every time) and its
    ``metrics.json`` (with ``run_reused: True`` when it was not trained now).

    Training is deterministic for a given machine, thread count and source (the CSG and the
    localisation benchmarks, 2 threads, trained networks of identical test accuracy from the
    same recipe, as did the adversarial and the adaptive benchmarks with 1 thread; the two
    thread counts give different networks), so a run of the same key is the run a benchmark
    would train. A run is trained into
    a private directory and renamed into place when finished, so an interrupted or a
    concurrent training never leaves a half-written run behind a key.
    """
    import shutil
    import tempfile

    from pellucid.training import train_run

    setting = os.environ.get("PELLUCID_RUN_CACHE", "")
    if setting == "0":
        out = Path(tempfile.mkdtemp(prefix="pellucid-run-")) / "run"
        return out, train_run(config, out, progress=False)
    root = Path(setting) if setting else (cache or RUN_CACHE)
    out = root / run_key(config)
    if finished_run(out, config):  # ``run_reused``: the timings are the first training's
        return out, {**json.loads((out / "metrics.json").read_text()), "run_reused": True}
    root.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=root))
    try:
        metrics = train_run(config, private / "run", progress=False)
        try:
            os.rename(private / "run", out)
        except OSError:  # another process finished the same run first: use theirs
            if not finished_run(out, config):
                raise
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return out, metrics
