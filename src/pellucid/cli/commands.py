"""Sub-commands: each ``add_*`` declares arguments, each ``cmd_*`` calls the library (the
explanation commands are in :mod:`pellucid.cli.explain`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pellucid.cli.arguments import Subparsers, common_output, parse_options

if TYPE_CHECKING:
    from pellucid.config import RunConfig
    from pellucid.registry import Registry


def add_train(
    sub: Subparsers, datasets: Registry[Any], models: Registry[Any], methods: Registry[Any]
) -> None:
    p = sub.add_parser(
        "train",
        help="train a network and write a run directory",
        epilog="Several processes: torchrun --standalone --nproc-per-node K -m pellucid train "
        "... (--batch-size is then the global batch, split over the K processes; rank 0 "
        "writes the run).",
    )
    config_arguments(p, datasets, models, methods)
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="K",
        help="train with K processes on this machine (starts torchrun; --batch-size is the "
        "global batch)",
    )
    common_output(p)
    p.set_defaults(func=cmd_train)


def config_arguments(
    p: argparse.ArgumentParser,
    datasets: Registry[Any],
    models: Registry[Any],
    methods: Registry[Any],
) -> None:
    """The flags that make a RunConfig (:func:`config_from_args`): train's and import's."""
    p.add_argument("--config", help="a YAML config to start from (flags override it)")
    p.add_argument("--dataset", choices=datasets.names(), help="dataset (default mnist)")
    p.add_argument("--data-option", action="append", metavar="K=V", help="dataset option")
    p.add_argument("--model", help=f"backbone: {', '.join(models.names())} or tv:NAME")
    p.add_argument("--model-option", action="append", metavar="K=V", help="backbone option")
    p.add_argument("--weights", help="local weights file to initialise the backbone")
    p.add_argument("--init", metavar="RUN", help="initialise from a finished run directory")
    p.add_argument("--method", choices=methods.names(), help="training method")
    p.add_argument("--method-option", action="append", metavar="K=V", help="method option")
    p.add_argument("--layer", help="layer the method acts on (csg, icnn); default: last stage")
    p.add_argument("--density", type=float, help="csg: target gate density (default 0.2)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    p.add_argument("--schedule", choices=["onecycle", "cosine", "step", "constant"])
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--augment", choices=["none", "shift", "shift-flip"])
    p.add_argument("--seed", type=int, help="training seed (and the data's, unless --data-seed)")
    p.add_argument(
        "--data-seed", type=int, help="seed of the data split and synthetic images (default --seed)"
    )
    p.add_argument(
        "--random-labels",
        action="store_true",
        help="train on permuted labels (the data randomisation sanity check's model)",
    )
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--tensorboard", action="store_true", help="write TensorBoard logs to OUT/tb")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Merge a YAML config (if any) with command-line flags into a RunConfig."""
    import dataclasses

    from pellucid.config import RunConfig, load_config

    cfg = load_config(args.config) if args.config else RunConfig()
    data, model, method, train = cfg.data, cfg.model, cfg.method, cfg.train
    if args.dataset:
        data = dataclasses.replace(data, name=args.dataset)
    data_opts = parse_options(args.data_option, "--data-option")
    data = dataclasses.replace(data, options={**data.options, **data_opts})
    for flag, key in (("batch_size", "batch_size"), ("augment", "augment"), ("data_seed", "seed")):
        if getattr(args, flag) is not None:
            data = dataclasses.replace(data, **{key: getattr(args, flag)})
    if args.random_labels:
        data = dataclasses.replace(data, random_labels=True)
    if args.model:
        model = dataclasses.replace(model, name=args.model)
    model_opts = {**model.options, **parse_options(args.model_option, "--model-option")}
    model = dataclasses.replace(model, options=model_opts, weights=args.weights or model.weights)
    if args.method and args.method != method.name:
        method = dataclasses.replace(method, name=args.method, options={})
    method_opts = {**method.options, **parse_options(args.method_option, "--method-option")}
    for flag in ("layer", "density"):
        if getattr(args, flag) is not None:
            method_opts[flag] = getattr(args, flag)
    method = dataclasses.replace(method, options=method_opts)
    changes = {
        k: getattr(args, k)
        for k in ("epochs", "lr", "optimizer", "schedule", "weight_decay", "seed", "device")
        if getattr(args, k) is not None
    }
    if args.tensorboard:
        changes["tensorboard"] = True
    train = dataclasses.replace(train, **changes)
    return RunConfig(data=data, model=model, method=method, train=train, init=args.init or cfg.init)


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from pellucid.training import train_run
    from pellucid.training.distributed import is_main_process

    config = config_from_args(args)
    if args.nproc != 1:
        return _launch_torchrun(args, config)
    metrics = train_run(config, args.out, resume=args.resume, progress=not args.quiet)
    if not is_main_process():  # under torchrun, rank 0 reports for the group
        return metrics
    if not args.quiet and not args.json:
        print(
            f"{config.method.name} {config.model.name} on {config.data.name}: "
            f"test accuracy {metrics['test_accuracy']:.4f} "
            f"({metrics['train_seconds']:.1f} s training) -> {args.out}"
        )
    return metrics


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _launch_torchrun(args: argparse.Namespace, config: Any) -> None:
    """``pellucid train --nproc K``: the same command under ``torchrun --standalone`` with K
    processes (checked here first, so that a bad flag fails once, not K times)."""
    import os
    import subprocess
    import sys

    from pellucid.errors import ConfigError, PellucidError
    from pellucid.training.distributed import requested_world_size
    from pellucid.training.run import check_out, check_run_config

    k = args.nproc
    if k < 1:
        raise ConfigError(f"--nproc must be >= 1, got {k}")
    if requested_world_size() > 1:
        raise ConfigError("--nproc inside a torchrun launch: give one or the other")
    if config.data.batch_size % k:
        raise ConfigError(
            f"--batch-size {config.data.batch_size} is the global batch of the {k} processes "
            f"and must be divisible by {k}"
        )
    check_out(config, args.out, args.resume)  # once here, not in K processes
    check_run_config(config)  # method options, layer, --init, device: once, not K times
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // k)))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd = [*launch, "--nproc-per-node", str(k), "-m", "pellucid", *_without_nproc(args.argv)]
    code = subprocess.run(cmd, env=env).returncode  # the processes print for themselves
    if code != 0:
        raise PellucidError(f"torchrun with {k} processes exited with code {code}")


def add_import(
    sub: Subparsers, datasets: Registry[Any], models: Registry[Any], methods: Registry[Any]
) -> None:
    p = sub.add_parser(
        "import",
        help="a run directory from weights trained elsewhere (evaluated, not trained)",
        description="Write a run directory from a safetensors file of the model's weights, so "
        "that explain, evaluate and report work on it. The flags say what the weights are "
        "(as for train); the test split is evaluated, nothing is trained.",
    )
    p.add_argument("source", metavar="WEIGHTS", help="safetensors file of the model's state dict")
    p.add_argument("--method-weights", help="the method's own state (method.safetensors)")
    config_arguments(p, datasets, models, methods)
    p.add_argument("--out", required=True, help="run directory to write")
    common_output(p)
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> dict[str, Any]:
    from pellucid.training import run_from_weights

    config = config_from_args(args)
    metrics = run_from_weights(config, args.source, args.out, args.method_weights)
    if not args.quiet and not args.json:
        print(
            f"{config.model.name} on {config.data.name} from {args.source}: "
            f"test accuracy {metrics['test_accuracy']:.4f} -> {args.out}"
        )
    return metrics


def add_evaluate(sub: Subparsers) -> None:
    p = sub.add_parser("evaluate", help="recompute a run's metrics into its metrics.json")
    p.add_argument("run", help="run directory")
    p.add_argument("--device", default="auto")
    common_output(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from pellucid.training import evaluate_run

    metrics = evaluate_run(args.run, args.device)
    if not args.quiet and not args.json:
        for key in sorted(metrics):
            print(f"{key:>20}  {metrics[key]}")
    return metrics


def add_models(sub: Subparsers, models: Registry[Any]) -> None:
    p = sub.add_parser("models", help="list models, or one model's addressable layers")
    p.add_argument("model", nargs="?", help=f"{', '.join(models.names())} or tv:NAME")
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--depth", type=int, default=None, help="only names with < DEPTH dots")
    common_output(p)
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> Any:
    from pellucid.models import build_model, default_layer, layer_table
    from pellucid.registry import MODELS

    if not args.model:
        rows = [{"name": e.name, "help": e.help} for e in MODELS.entries()]
        rows.append({"name": "tv:NAME", "help": "any torchvision classifier (random weights)"})
        if not args.json and not args.quiet:
            for r in rows:
                print(f"{r['name']:<12} {r['help']}")
        return rows
    model = build_model(args.model, args.in_channels, args.num_classes)
    size = args.image_size
    table = layer_table(model, (args.in_channels, size, size), args.depth)
    rows = [{"layer": n, "type": t, "output": list(s)} for n, t, s in table]
    if not args.json and not args.quiet:
        print(
            f"{args.model}: input ({args.in_channels}, {size}, {size}); default layer "
            f"{default_layer(model)!r}"
        )
        for r in rows:
            print(f"  {r['layer']:<28} {r['type']:<18} {tuple(r['output'])}")
    return rows


def add_datasets(sub: Subparsers, datasets: Registry[Any]) -> None:
    p = sub.add_parser("datasets", help="list the datasets")
    common_output(p)
    p.set_defaults(func=cmd_datasets)


def cmd_datasets(args: argparse.Namespace) -> Any:
    from pellucid.registry import DATASETS

    rows = [
        {"name": e.name, "help": e.help, "options": _factory_options(e.factory, ("split", "seed"))}
        for e in DATASETS.entries()
    ]
    if not args.json and not args.quiet:
        for r in rows:
            print(f"{r['name']:<16} {r['help']}")
            shown = [k if v is None else f"{k}={v}" for k, v in r["options"].items()]
            if shown:
                print(f"{'':<16} --data-option {', '.join(shown)}")
    return rows


def _factory_options(factory: Any, fixed: tuple[str, ...]) -> dict[str, Any]:
    """A registered factory's keyword options and their defaults (None: no default)."""
    import inspect

    out = {}
    for name, p in inspect.signature(factory).parameters.items():
        if name in fixed or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[name] = None if p.default is p.empty else p.default
    return out


def add_show_data(sub: Subparsers, datasets: Registry[Any]) -> None:
    p = sub.add_parser("show-data", help="draw a grid of samples with masks and landmarks")
    p.add_argument("--dataset", required=True, choices=datasets.names())
    p.add_argument("--data-option", action="append", metavar="K=V")
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--n", type=int, default=16, help="number of images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="PNG file to write")
    common_output(p)
    p.set_defaults(func=cmd_show_data)


def cmd_show_data(args: argparse.Namespace) -> dict[str, Any]:
    from pellucid.data import load_dataset
    from pellucid.report.data_grid import save_data_grid

    ds = load_dataset(
        args.dataset, args.split, seed=args.seed, **parse_options(args.data_option, "--data-option")
    )
    path = save_data_grid(ds, Path(args.out), n=args.n)
    if not args.quiet and not args.json:
        print(f"wrote {path}")
    return {"path": str(path)}


def add_demo(sub: Subparsers) -> None:
    p = sub.add_parser("demo", help="the main job on bundled data (what `make demo` runs)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--fresh", action="store_true", help="re-train runs that already exist")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--n-explain", type=int, default=16, help="test images to explain")
    p.add_argument(
        "--n-adversarial",
        type=int,
        default=200,
        help="test images attacked for adversarial detection (0: skip that step)",
    )
    p.add_argument(
        "--n-sanity",
        type=int,
        default=8,
        help="test images of the cascading randomisation sanity check (0: skip that step)",
    )
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    common_output(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from pellucid.demo import run_demo

    return run_demo(
        Path(args.out),
        fresh=args.fresh,
        epochs=args.epochs,
        quiet=args.quiet or args.json,
        n_explain=args.n_explain,
        report=not args.no_report,
        n_adversarial=args.n_adversarial,
        n_sanity=args.n_sanity,
    )


def add_figures(sub: Subparsers) -> None:
    p = sub.add_parser("figures", help="filter figures of runs: MI matrices, CSG gates, ...")
    p.add_argument("runs", nargs="+", help="run directories (e.g. a standard and a csg run)")
    p.add_argument("--out", required=True, help="directory for the PNG files")
    common_output(p)
    p.set_defaults(func=cmd_figures)


def cmd_figures(args: argparse.Namespace) -> dict[str, Any]:
    from pellucid.report.figures_csg import run_figures
    from pellucid.report.html import optional_figures, read_run

    paths = run_figures(args.runs, Path(args.out))
    records = [read_run(r) for r in args.runs]
    for module, fn, method in (
        ("figures_icnn", "icnn_figures", "icnn"),
        ("figures_paths", "path_figures", "decoupling"),
    ):
        paths += [
            Path(f["path"]) for f in optional_figures(records, Path(args.out), module, fn, method)
        ]
    if not args.quiet and not args.json:
        for p in paths:
            print(f"wrote {p}")
    return {"figures": [str(p) for p in paths]}


def add_report(sub: Subparsers) -> None:
    p = sub.add_parser("report", help="one self-contained HTML report from saved runs")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--title", default="pellucid report")
    p.add_argument(
        "--no-figures", action="store_true", help="skip figures that need the runs' datasets"
    )
    common_output(p)
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    from pellucid.report.html import build_report

    path = build_report(args.runs, Path(args.out), title=args.title, figures=not args.no_figures)
    if not args.quiet and not args.json:
        print(f"wrote {path}")
    return {"report": str(path)}
