"""Trains a tiny network without BatchNorm with ``pellucid.training.fit`` and writes its
weights: run once as a plain process and once under torchrun by ``test_distributed.py``,
which compares the two (same global batches, averaged gradients -> the same weights).

``python ddp_worker.py OUT [MODE[,MODE...]]``; MODE ``full`` (default) trains 2 epochs;
``icnn`` trains 2 epochs with ICNN on the second conv (no BatchNorm; its statistics over the
global batch); ``crash`` checkpoints to OUT/run and stops with exit code 3 at the start of the
second epoch (an interrupted run); ``resume`` continues OUT/run with ``resume=True``. Several
modes (``full,icnn``) train one after the other in one launch (each freshly seeded, in one
process group), each into OUT/MODE: a launch costs seconds of imports and rendezvous."""

from __future__ import annotations

import json
import os
import sys

import torch
from torch import nn

from pellucid.config import DataConfig, TrainConfig
from pellucid.data import load_dataset
from pellucid.io import save_tensors
from pellucid.methods import build_method
from pellucid.training import distributed, fit, seed_everything
from pellucid.training.distributed import is_main_process


def main(out: str, modes: str = "full") -> None:
    torch.set_num_threads(1)
    names = modes.split(",")
    with distributed.session(torch.device("cpu")):  # one group for every mode's fit
        for mode in names:
            sub = out if len(names) == 1 else os.path.join(out, mode)
            os.makedirs(sub, exist_ok=True)
            train(sub, mode)


def train(out: str, mode: str) -> None:
    seed_everything(0)
    data = load_dataset("mnist", "train", seed=0, n=400)  # 280 training images
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(4),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
    if mode == "icnn":
        method = build_method("icnn", model, 10, layer="3", bn=False, lambda_=10.0)
    else:
        method = build_method("standard", model, 10)
    train = TrainConfig(epochs=2, lr=0.05, seed=3, device="cpu", schedule="cosine")
    run = f"{out}/run" if mode in ("crash", "resume") else None
    if mode == "crash":
        import pellucid.training.loop as loop

        original = loop._train_epoch

        def stop_at_second(*args, **kwargs):
            if args[7] == 1:  # epoch index
                raise SystemExit(3)
            return original(*args, **kwargs)

        loop._train_epoch = stop_at_second
    data_cfg = DataConfig(batch_size=32, max_shift=2)
    history = fit(
        method, data, None, train, data_cfg, out=run, resume=mode == "resume", progress=False
    )
    if is_main_process():
        save_tensors(f"{out}/weights.safetensors", method.state_dict())
        with open(f"{out}/history.json", "w") as fh:
            json.dump(history.epochs, fh)


if __name__ == "__main__":
    main(*sys.argv[1:])
