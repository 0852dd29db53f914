"""Run directories: ``train_run`` writes one, ``load_run`` rebuilds the trained model from it,
``evaluate_run`` recomputes its metrics and ``run_from_weights`` writes one from weights
trained elsewhere.

A run directory holds::

    config.yaml          the resolved RunConfig (with the dataset's classes and statistics)
    model.safetensors    weights of the inference model
    method.safetensors   the method's own state (e.g. CSG's gate matrix), when it has any
    metrics.json         method, model, dataset, seed, data_seed, epochs, test_accuracy, ...
    history.json         per-epoch training records
    checkpoint/          the last epoch's full training state (for --resume)
"""

from __future__ import annotations

import copy
import dataclasses
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pellucid
from pellucid.config import RunConfig, load_config, save_config
from pellucid.data import load_dataset, with_random_labels
from pellucid.data.base import DatasetInfo
from pellucid.errors import DataError, PellucidError
from pellucid.io import check_finite, load_tensors, read_json, save_tensors, write_json
from pellucid.methods import Method, build_method
from pellucid.models import build_model
from pellucid.models.tv import TorchvisionNet, load_weights
from pellucid.training import distributed
from pellucid.training.loop import evaluate, fit
from pellucid.training.setup import resolve_device, seed_everything


def build_from_config(config: RunConfig) -> Method:
    """Backbone + method as the config describes (random weights; ``config.info`` filled)."""
    info = config.info
    model = build_model(
        config.model.name,
        in_channels=info["in_channels"],
        num_classes=info["num_classes"],
        mean=info["mean"],
        std=info["std"],
        weights=config.model.weights,
        **config.model.options,
    )
    return build_method(config.method.name, model, info["num_classes"], **config.method.options)


def _info_dict(dataset: Any) -> dict[str, Any]:
    info = dataclasses.asdict(dataset.info)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in info.items()}


def train_run(
    config: RunConfig, out: str | Path, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train as ``config`` says and write a complete run directory at ``out``.

    Returns the metrics written to ``metrics.json`` (``processes``: how many processes
    trained). Under ``torchrun`` every process calls this with the same arguments; they
    train together (:func:`~pellucid.training.fit`) and rank 0 alone writes and evaluates;
    every rank returns its metrics.
    """
    out = Path(out)
    if distributed.is_main_process():  # rank 0 alone: the others would see its config.yaml
        check_out(config, out, resume)
    _check_names(config)
    seed = config.train.seed
    opts = config.data.options
    train_set = load_dataset(config.data.name, "train", seed=config.data_seed, **opts)
    val_set = load_dataset(config.data.name, "val", seed=config.data_seed, **opts)
    config = config.replace(info=_info_dict(train_set))
    # the test split is read before training, not after the last epoch, so that a corrupt
    # image or classes other than the training split's fail in seconds; rank 0 alone
    # evaluates, so rank 0 alone reads it
    main = distributed.is_main_process()
    test_set = load_test_split(config, "this run", "is trained on") if main else None
    if config.data.random_labels:  # the data randomisation sanity check's model
        train_set = with_random_labels(train_set, config.data_seed)
    seed_everything(seed)
    method = build_from_config(config)
    if config.init:
        init_model, _ = load_run(config.init)
        load_init_weights(method, init_model.state_dict(), config.init)
    with distributed.session(resolve_device(config.train.device)) as ctx:
        created = not out.exists()
        if ctx.is_main:  # under torchrun, rank 0 alone writes the run directory
            out.mkdir(parents=True, exist_ok=True)
            save_config(config, out / "config.yaml")
        try:
            history = fit(
                method,
                train_set,
                val_set,
                config.train,
                config.data,
                out,
                resume=resume,
                progress=progress,
            )
        except BaseException:
            if ctx.is_main and not resume:
                _remove_unstarted(out, created)
            raise
        metrics = None
        if ctx.is_main:
            metrics = _finish_run(out, method, config, history, ctx, test_set)
        return distributed.broadcast_object(metrics, ctx)


def _remove_unstarted(out: Path, created: bool) -> None:
    """After a training that failed before its first checkpoint (e.g. a batch larger than
    the training set), remove the config.yaml it wrote, and ``out`` itself if this call
    created it and nothing else is in it: otherwise the directory would count as an
    unfinished run and refuse the corrected command."""
    from pellucid.training.checkpoint import CKPT

    if (out / CKPT / "state.pt").is_file():
        return  # an interrupted run: --resume continues it
    (out / "config.yaml").unlink(missing_ok=True)
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def check_run_config(config: RunConfig) -> None:
    """Everything :func:`train_run` checks before it trains, without training or writing:
    the names, the training split, the method with its options and layer, ``init`` (its
    weights must fit) and the device. ``pellucid train --nproc K`` calls it once before it
    starts K processes, so that a bad flag fails once rather than in every process.

    Raises
    ------
    PellucidError
        What :func:`train_run` would raise for the same config.
    """
    _check_names(config)
    opts = config.data.options
    train_set = load_dataset(config.data.name, "train", seed=config.data_seed, **opts)
    config = config.replace(info=_info_dict(train_set))
    method = build_from_config(config)
    if config.init:
        init_model, _ = load_run(config.init)
        load_init_weights(method, init_model.state_dict(), config.init)
    resolve_device(config.train.device)


def check_out(config: RunConfig, out: str | Path, resume: bool = False) -> None:
    """Refuse an ``out`` that training would damage, before anything is written: a finished
    run; an unfinished one (its checkpoint and config.yaml) unless ``resume``; and with
    ``resume``, a directory without a checkpoint or whose config.yaml differs from ``config``.

    Raises
    ------
    PellucidError
        Naming the run directory and what to do instead.
    """
    from pellucid.training.checkpoint import CKPT

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PellucidError(f"--out {out} is a file, not a run directory")
    if (out / "metrics.json").exists():
        if resume:
            raise PellucidError(f"--resume: {out} holds a finished run; nothing to continue")
        raise PellucidError(f"{out} already holds a finished run; choose another --out")
    checkpoint = (out / CKPT / "state.pt").is_file()
    if resume:
        if not checkpoint:
            raise PellucidError(f"--resume: {out} holds no checkpoint to continue")
        if (out / "config.yaml").is_file():
            saved = load_config(out / "config.yaml")
            if saved.replace(info={}) != config.replace(info={}):
                raise PellucidError(f"--resume: the config differs from the one saved in {out}")
    elif checkpoint or (out / "config.yaml").is_file():
        raise PellucidError(
            f"{out} holds an unfinished run; continue it with --resume and the same options, "
            "or remove it / choose another --out"
        )


def _finish_run(
    out: Path,
    method: Method,
    config: RunConfig,
    history: Any,
    ctx: distributed.Distributed,
    test_set: Any,
) -> dict[str, Any]:
    """Weights, history and metrics on ``test_set`` of a trained run, written to ``out``."""
    save_run_weights(out, method)
    write_json(out / "history.json", history.epochs)
    metrics = {
        **_run_identity(config),
        "train_seconds": round(history.train_seconds, 3),
        "seconds_per_epoch": round(history.train_seconds / max(1, len(history.epochs)), 3),
        "processes": ctx.world_size,
    }
    metrics.update(_evaluate(method, test_set, ctx.device))
    write_json(out / "metrics.json", metrics)
    return metrics


def run_from_weights(
    config: RunConfig,
    weights: str | Path,
    out: str | Path,
    method_weights: str | Path | None = None,
) -> dict[str, Any]:
    """Write a complete run directory at ``out`` from weights trained elsewhere, without
    training: ``config.yaml``, ``model.safetensors`` (and ``method.safetensors``) and
    ``metrics.json`` evaluated on the test split, so that every command that reads a run
    (``pellucid explain``, ``evaluate``, ``report``, ...) works on it.

    Parameters
    ----------
    config : RunConfig
        What the weights are: dataset, model and method. An empty ``config.info`` is filled
        from the training split (classes, channels, normalisation statistics), as
        :func:`train_run` does.
    weights : str or Path
        A safetensors file of the inference model's state dict (a run's
        ``model.safetensors``); for a ``tv:NAME`` model also the layouts ``--weights``
        takes (:func:`pellucid.models.tv.load_weights`): torchvision's own state dict, or
        keys prefixed ``net.`` with or without the ``norm.`` buffers. Never unpickled.
    out : str or Path
        The run directory; it must not hold a finished run.
    method_weights : str or Path, optional
        The method's own state (a run's ``method.safetensors``, e.g. CSG's gate matrix):
        required for a method that has one, refused for one that has none.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``; ``"weights"`` names the source file and
        ``"train_seconds"`` is None (nothing was trained here).

    Raises
    ------
    PellucidError
        ``out`` holds a finished run, the weights are missing, corrupt, hold NaN or do not
        fit the model, the method weights are missing or not wanted, or the test split's
        classes are not those of ``config.info``; nothing is written then.
    """
    out = Path(out)
    if (out / "metrics.json").exists():
        raise PellucidError(f"{out} already holds a finished run; choose another --out")
    _check_names(config)
    state = load_tensors(Path(weights))
    extra = load_tensors(Path(method_weights)) if method_weights is not None else None
    if not config.info:
        train_set = load_dataset(
            config.data.name, "train", seed=config.data_seed, **config.data.options
        )
        config = config.replace(info=_info_dict(train_set))
    for name, source in ((weights, state), (method_weights, extra or {})):
        check_finite(source, str(name))
    method = build_from_config(config)
    own = sorted(method.method_state())
    if own and extra is None:
        raise PellucidError(
            f"the {config.method.name} method has its own state ({', '.join(own)}); pass "
            "method_weights (--method-weights on the command line)"
        )
    if extra is not None and not own:
        raise PellucidError(
            f"the {config.method.name} method has no method state to load, but method "
            f"weights were given ({method_weights}); leave them out"
        )
    try:
        target = method.inference_model()
        if isinstance(target, TorchvisionNet):  # torchvision's layout too, as --weights
            load_weights(target, state)
        else:
            target.load_state_dict(state)
        if extra is not None:
            method.load_method_state(extra)
    except RuntimeError as err:
        raise PellucidError(f"the weights do not fit the config's model: {err}") from None
    device = resolve_device(config.train.device)
    metrics = {
        **_run_identity(config),
        "train_seconds": None,
        "weights": str(weights),
    }
    test_set = load_test_split(config, "the weights", "were trained on")
    metrics.update(_evaluate(method.to(device).eval(), test_set, device))
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    save_run_weights(out, method)
    write_json(out / "metrics.json", metrics)
    return metrics


def _run_identity(config: RunConfig) -> dict[str, Any]:
    """What every run's ``metrics.json`` starts with: method, model, dataset, seeds, epochs."""
    return {
        "method": config.method.name,
        "model": config.model.name,
        "dataset": config.data.name,
        "seed": config.train.seed,
        "data_seed": config.data_seed,
        "epochs": config.train.epochs,
        **({"random_labels": True} if config.data.random_labels else {}),
    }


def _check_names(config: RunConfig) -> None:
    """Fail fast, before any data is loaded, on an unknown dataset, model or method."""
    from pellucid.registry import DATASETS, METHODS, MODELS

    DATASETS.get(config.data.name)
    if not config.model.name.startswith("tv:"):
        MODELS.get(config.model.name)
    METHODS.get(config.method.name)


def load_init_weights(method: Method, state: dict[str, torch.Tensor], source: str) -> None:
    """Initialise ``method`` from a finished run's inference-model ``state`` (``--init``).

    The state is loaded strictly into the method's inference network when it fits there
    (e.g. a plain ICNN run into an ICNN run: same layers, the mask has no weights), else into
    the backbone (e.g. a standard run into ICNN, CSG or decoupling). A target that does not
    fit is restored to what it was before the attempt.
    """
    targets = [method.inference_model(), method.model]
    if targets[0] is targets[1]:
        targets = targets[:1]
    errors = []
    for target in targets:
        before = copy.deepcopy(target.state_dict())
        try:
            target.load_state_dict(state)
            return
        except RuntimeError as err:
            target.load_state_dict(before)
            errors.append(str(err))
    raise PellucidError(f"--init {source}: weights do not fit this model: {errors[-1]}") from None


def save_run_weights(out: Path, method: Method) -> None:
    """Write ``model.safetensors`` (inference model) and ``method.safetensors`` (if any)."""
    save_tensors(out / "model.safetensors", method.inference_model().state_dict())
    extra = method.method_state()
    if extra:
        save_tensors(out / "method.safetensors", extra)


def load_method(run: str | Path, device: str | torch.device = "cpu") -> tuple[Method, RunConfig]:
    """The trained method (model inside) of a run directory, in eval mode."""
    run = Path(run)
    if not run.is_dir():
        raise PellucidError(f"run directory {run} does not exist")
    config = load_config(run / "config.yaml")
    if not config.info:
        raise PellucidError(f"{run}/config.yaml lacks the dataset info; was the run finished?")
    if not (run / "model.safetensors").is_file():
        from pellucid.training.checkpoint import CKPT

        if (run / CKPT / "state.pt").is_file():
            raise PellucidError(
                f"run {run} is unfinished (a checkpoint, no model.safetensors); finish it with "
                f"pellucid train --resume --out {run} and the options it was started with"
            )
        raise PellucidError(f"run {run} has no model.safetensors; was the training finished?")
    method = build_from_config(config)
    if (run / "method.safetensors").is_file():
        extra = load_tensors(run / "method.safetensors")
        method.load_method_state(check_finite(extra, f"run {run}: method.safetensors"))
    elif method.method_state():  # e.g. CSG's gates: the defaults would pass for the trained ones
        raise PellucidError(
            f"run {run} has no method.safetensors, which its {config.method.name} method keeps "
            f"its own state in ({', '.join(sorted(method.method_state()))})"
        )
    state = check_finite(load_tensors(run / "model.safetensors"), f"run {run}: model.safetensors")
    try:
        method.inference_model().load_state_dict(state)
    except RuntimeError as err:
        raise PellucidError(f"{run}/model.safetensors does not fit the config: {err}") from None
    method.to(device).eval()
    return method, config


def load_run(run: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, RunConfig]:
    """``(model, config)`` of a run directory: the trained model in eval mode."""
    method, config = load_method(run, device)
    return method.inference_model(), config


def check_run_classes(
    info: dict[str, Any],
    data: DatasetInfo,
    where: str,
    run: str,
    names: bool = True,
    verb: str = "was trained on",
) -> None:
    """Refuse data whose classes are not those a run was trained on, whose labels would
    mean other classes (or lie out of the model's range).

    Parameters
    ----------
    info : dict
        The run's ``config.info``: ``num_classes`` and, for runs that recorded them,
        ``class_names`` (without them only the count is checked).
    data : DatasetInfo
        The data's info.
    where : str
        The data in the message, e.g. ``"the test split of 'folder'"``.
    run : str
        The run in the message, e.g. ``"run 'runs/x'"``.
    names : bool
        Also compare the class names and their order (not for another dataset, whose
        names may differ).
    verb : str
        What ``run`` did with its classes, in the message.

    Raises
    ------
    DataError
        The class count differs, or (with ``names``) the class names or their order.
    """
    classes = info.get("num_classes")
    if classes is not None and data.num_classes != int(classes):
        raise DataError(f"{where} has {data.num_classes} classes but {run} {verb} {classes}")
    recorded = info.get("class_names")
    if not names or recorded is None:
        return
    there, here = [str(c) for c in recorded], [str(c) for c in data.class_names]
    if here == there:
        return
    pairs = enumerate(zip(here, there, strict=False))
    i = next((i for i, (a, b) in pairs if a != b), min(len(here), len(there)))
    ours = repr(here[i]) if i < len(here) else "missing"
    theirs = repr(there[i]) if i < len(there) else "missing"
    raise DataError(
        f"the classes of {where} are not those {run} {verb}: class {i} is {ours} here "
        f"but {theirs} in the run (a class added, removed or renamed?), so the labels would "
        "name other classes"
    )


def load_run_split(
    config: RunConfig, split: str, run: str, verb: str = "was trained on", names: bool = True
) -> Any:
    """``split`` of a run's dataset, checked against ``config.info`` by
    :func:`check_run_classes` (``run`` and ``verb`` in its message; ``names=False`` checks
    the class count only)."""
    name = config.data.name
    data = load_dataset(name, split, seed=config.data_seed, **config.data.options)
    where = f"the {split} split of {name!r}"
    check_run_classes(config.info, data.info, where, run, names=names, verb=verb)
    return data


def load_test_split(config: RunConfig, run: str, verb: str = "was trained on") -> Any:
    """The test split of a run's dataset (:func:`load_run_split`)."""
    return load_run_split(config, "test", run, verb)


def _evaluate(method: Method, test_set: Any, device: torch.device) -> dict[str, Any]:
    """Test metrics of ``method`` on ``test_set`` (accuracy, loss, filter and method metrics)."""
    start = time.perf_counter()
    res = evaluate(method.inference_model(), test_set, device)
    metrics: dict[str, Any] = {
        "test_accuracy": round(res["accuracy"], 5),
        "test_loss": round(res["loss"], 5),
        "test_images": res["n"],
        "eval_seconds": round(time.perf_counter() - start, 3),
        "device": str(device),
        "pellucid_version": pellucid.__version__,
        "torch_version": torch.__version__,
        "host": platform.node(),
    }
    metrics.update(filter_metrics(method, test_set, device))
    metrics.update(method.run_metrics(test_set, device))
    return metrics


def filter_metrics(method: Method, data: Any, device: torch.device) -> dict[str, Any]:
    """Filter interpretability of the run's analysis layer: MIS and top-class share for every
    dataset; location instability and part interpretability (Zhang et al. 2018) where the
    dataset has landmarks / part masks, on its first 1,000 images (>= 100 per category for
    shapes' 8 classes)."""
    from pellucid.metrics import class_share, mis_from_activations, pooled_activations

    layer = method.analysis_layer()
    model = method.inference_model()
    acts, labels = pooled_activations(model, layer, data, device)
    n_cls = data.info.num_classes
    mis, _ = mis_from_activations(acts, labels, n_cls)
    share, _ = class_share(acts, labels, n_cls)
    out: dict[str, Any] = {"mis": round(mis, 5), "class_share": round(share, 5), "mis_layer": layer}
    if getattr(data.info, "has_parts", False):
        from pellucid.metrics.parts import part_metrics

        out.update(part_metrics(model, layer, data, device, max_images=1000))  # 1 forward pass
    return out


def evaluate_run(run: str | Path, device: str = "auto") -> dict[str, Any]:
    """Recompute a run's metrics from its saved weights; updates ``metrics.json``.

    Raises
    ------
    DataError
        The test split's classes are not those the run was trained on (another count, or
        other names or order where the run recorded them: a class folder added or renamed);
        ``metrics.json`` is left as it was.
    """
    run = Path(run)
    dev = resolve_device(device)
    method, config = load_method(run, dev)
    test_set = load_test_split(config, f"run {str(run)!r}")
    old = read_json(run / "metrics.json") if (run / "metrics.json").is_file() else {}
    metrics = {**old, **_evaluate(method, test_set, dev)}
    write_json(run / "metrics.json", metrics)
    return metrics
