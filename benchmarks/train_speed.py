"""Throughput of pellucid's training loop against a minimal hand-written PyTorch loop.

Same model (ResNet-8), same data (the MNIST sample's training split), same batch size,
optimiser and schedule, no augmentation; epochs alternate between the two loops and the
median epoch time of each is compared. Target: overhead < 5 %.

    python benchmarks/train_speed.py [--epochs 3] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from _common import write_result
from pellucid.config import DataConfig, TrainConfig
from pellucid.data import load_dataset
from pellucid.methods import build_method
from pellucid.models import build_model
from pellucid.training import fit, seed_everything


def hand_loop_epoch(model, loader, opt, sched) -> float:
    start = time.perf_counter()
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per loop")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    ds = load_dataset("mnist", "train", seed=0)
    info = ds.info
    train_cfg = TrainConfig(epochs=1, optimizer="sgd", lr=0.05, schedule="onecycle", seed=0)
    data_cfg = DataConfig(name="mnist", batch_size=args.batch_size, augment="none")

    # hand loop: tensors in memory, the plainest DataLoader
    images = ds.images.float().div(255)
    hand_data = TensorDataset(images, ds.labels)
    ours, hand = [], []
    n_images = (len(ds) // args.batch_size) * args.batch_size
    for rep in range(args.epochs + 1):  # first pair is warm-up
        seed_everything(rep)
        model = build_model("resnet8", info.in_channels, info.num_classes, info.mean, info.std)
        method = build_method("standard", model, info.num_classes)
        with tempfile.TemporaryDirectory() as tmp:
            hist = fit(method, ds, None, train_cfg, data_cfg, out=tmp, progress=False)
        t_ours = hist.epochs[0]["seconds"]

        seed_everything(rep)
        model = build_model("resnet8", info.in_channels, info.num_classes, info.mean, info.std)
        gen = torch.Generator().manual_seed(rep)
        loader = DataLoader(hand_data, args.batch_size, shuffle=True, generator=gen, drop_last=True)
        opt = torch.optim.SGD(
            model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, 0.05, total_steps=len(loader), pct_start=0.25
        )
        t_hand = hand_loop_epoch(model, loader, opt, sched)
        if rep > 0:
            ours.append(t_ours)
            hand.append(t_hand)
        print(f"rep {rep}: pellucid {t_ours:.2f} s, hand loop {t_hand:.2f} s")
    m_ours, m_hand = statistics.median(ours), statistics.median(hand)
    result = {
        "model": "resnet8",
        "dataset": "mnist",
        "batch_size": args.batch_size,
        "images_per_epoch": n_images,
        "pellucid_epoch_seconds": ours,
        "hand_epoch_seconds": hand,
        "pellucid_images_per_second": round(n_images / m_ours, 1),
        "hand_images_per_second": round(n_images / m_hand, 1),
        "overhead_percent": round(100 * (m_ours / m_hand - 1), 2),
        "target_overhead_percent": 5.0,
    }
    print(
        f"pellucid {result['pellucid_images_per_second']} img/s, hand loop "
        f"{result['hand_images_per_second']} img/s, overhead {result['overhead_percent']} %"
    )
    write_result("train_speed", result)


if __name__ == "__main__":
    main()
