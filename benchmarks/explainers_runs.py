"""The explainer benchmark's trained models: the training recipe per dataset
(:data:`RECIPES`), and the run directories every part of ``benchmarks/explainers.py`` reads
(:func:`ensure_run`).

The seed-0 models the README's tables were measured on ship with the repository
(``benchmarks/models/<dataset>.safetensors``, cluttered-mnist ``30e7b7c700a55179``, shapes
``93b1e63cad28953d``): the same recipe and seed train other weights on another CPU vendor
(README, "The same benchmark on another training"), so retraining cannot reproduce the
tables on every machine, and these files can. ``--retrain`` trains the recipe instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from _common import finished_run, remove_unfinished
from pellucid.config import DataConfig, MethodConfig, ModelConfig, RunConfig, TrainConfig
from pellucid.training import run_from_weights, train_run

SHIPPED = Path(__file__).resolve().parent / "models"

RECIPES: dict[str, RunConfig] = {
    "cluttered-mnist": RunConfig(
        data=DataConfig(name="cluttered-mnist", batch_size=128, augment="none"),
        model=ModelConfig(name="convnet"),
        method=MethodConfig(name="standard"),
        train=TrainConfig(epochs=6, optimizer="adamw", lr=2e-3, weight_decay=1e-4, seed=0),
    ),
    "shapes": RunConfig(
        data=DataConfig(name="shapes", batch_size=128, augment="none", options={"n": 6000}),
        model=ModelConfig(name="convnet"),
        method=MethodConfig(name="standard"),
        train=TrainConfig(epochs=8, optimizer="adamw", lr=2e-3, weight_decay=1e-4, seed=0),
    ),
}


def recipe(dataset: str, seed: int = 0, data_seed: int | None = None) -> RunConfig:
    """The benchmark's training recipe for ``dataset`` with the training seed ``seed``, which
    also draws the data (every split, test images included) unless ``data_seed`` is given
    and differs from it (``DataConfig.seed``)."""
    base = RECIPES[dataset]
    cfg = base.replace(train=dataclasses.replace(base.train, seed=seed))
    if data_seed is not None and data_seed != seed:
        cfg = cfg.replace(data=dataclasses.replace(base.data, seed=data_seed))
    return cfg


def shipped_weights(dataset: str) -> Path | None:
    """The published seed-0 model of ``dataset`` that ships with the repository, if any."""
    path = SHIPPED / f"{dataset}.safetensors"
    return path if path.is_file() else None


def ensure_run(
    dataset: str,
    runs: Path,
    seed: int = 0,
    data_seed: int | None = None,
    shipped: bool = True,
) -> Path:
    """The run of ``dataset`` (seed 0: ``runs/<dataset>``, else ``runs/<dataset>-seed<seed>``,
    with ``-data<data_seed>`` appended when the data seed differs from the training seed),
    made first if it is not there: from the shipped weights for seed 0 on its own data
    (unless ``shipped`` is False), else by training the recipe. An existing run is reused
    if it has the recipe's config (shipped weights or trained: the config does not say); one
    of another config stops the benchmark."""
    own = data_seed is None or data_seed == seed
    name = dataset if seed == 0 and own else f"{dataset}-seed{seed}"
    out = runs / (name if own else f"{name}-data{data_seed}")
    if finished_run(out, recipe(dataset, seed, data_seed)):
        return out
    weights = shipped_weights(dataset) if shipped and seed == 0 and own else None
    if weights is not None:
        print(f"{dataset}: the published model {weights} -> {out}", flush=True)
        run_from_weights(recipe(dataset), weights, out)
    else:
        print(f"training {dataset} (seed {seed}, data seed {data_seed}) -> {out}", flush=True)
        remove_unfinished(out)
        train_run(recipe(dataset, seed, data_seed), out, progress=False)
    return out
