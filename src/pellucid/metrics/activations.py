"""Spatially pooled activations of a named layer over a dataset (the input of the
filter-level metrics)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pellucid.hooks import capture
from pellucid.state import eval_mode, model_device


@torch.no_grad()
def pooled_activations(
    model: nn.Module,
    layer: str,
    data: Any,
    device: torch.device | str | None = None,
    batch_size: int = 256,
    max_images: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) spatially averaged maps of ``layer`` and (N,) labels, model in eval mode.

    ``data`` is a Dataset or an iterable of Batch. The model's mode is restored and the
    capture hook removed afterwards.
    """
    from pellucid.data import make_loader

    loader = make_loader(data, batch_size) if hasattr(data, "__getitem__") else data
    device = torch.device(device) if device else model_device(model)
    feats, labels, n = [], [], 0
    with eval_mode(model):
        with capture(model, [layer], detach=True) as acts:
            for batch in loader:
                model(batch.image.to(device))
                a = acts[layer]
                if a.ndim != 4:
                    raise ValueError(f"layer {layer!r} output is {tuple(a.shape)}, not (N,K,H,W)")
                feats.append(a.mean(dim=(2, 3)).cpu())  # (B, K)
                labels.append(batch.label.cpu())  # batches may come on the model's device
                n += len(batch.label)
                if max_images is not None and n >= max_images:
                    break
    out_f, out_y = torch.cat(feats), torch.cat(labels)
    if max_images is not None:
        out_f, out_y = out_f[:max_images], out_y[:max_images]
    return out_f, out_y
