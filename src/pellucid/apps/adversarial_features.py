"""The feature vectors adversarial detection reads (:mod:`pellucid.apps.adversarial`).

- ``path`` (network decoupling, Li et al., ECCV 2020; decoupling.md, "Analyses and
  applications"): every gated layer's binary gates of the image's calculation path,
  concatenated.
- ``gate-groups`` (Class-Specific Gates, Liang et al., ECCV 2020; csg.md, "Applications"):
  the gated layer's global-average-pooled channel activations averaged within each class's
  filter group, ``g_c = sum_k G[c, k] a_k / sum_k G[c, k]`` (N, C).
- ``activations``: the global-average-pooled channel activations of the named layers,
  concatenated (the baseline: for a decoupled network the continuous counterpart of its
  path).
- ``logits``: the model's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pellucid.errors import ConfigError

__all__ = ["FEATURES", "check_kinds", "default_features", "feature_vectors", "gap", "group"]

FEATURES = ("activations", "gate-groups", "path", "logits")


def check_kinds(
    features: Sequence[str] | str, gates: torch.Tensor | None, layers: Sequence[str]
) -> list[str]:
    """The feature kinds as a list, checked against what they need.

    Raises
    ------
    ConfigError
        No kind, an unknown kind, ``gate-groups`` without a gate matrix or with other than
        one layer, ``activations`` / ``gate-groups`` without a layer.
    """
    if isinstance(features, str):
        features = [features]
    if not features:
        raise ConfigError("detect_adversarial: no feature kind given")
    for kind in features:
        if kind not in FEATURES:
            raise ConfigError(f"unknown feature kind {kind!r}; choose from: {', '.join(FEATURES)}")
    if "gate-groups" in features:
        if gates is None:
            raise ConfigError("feature 'gate-groups' needs the gate matrix G (a CSG run)")
        if len(layers) != 1:
            raise ConfigError("feature 'gate-groups' needs exactly one layer (the gated one)")
    if "activations" in features or "gate-groups" in features:
        if not layers:
            raise ConfigError("features 'activations' / 'gate-groups' need a layer name")
    return list(features)


@torch.no_grad()
def feature_vectors(
    model: nn.Module,
    images: torch.Tensor,
    features: Sequence[str] = ("activations",),
    layers: Sequence[str] = (),
    gates: torch.Tensor | None = None,
    batch_size: int = 256,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Predictions and feature vectors of ``images`` in one forward pass per batch.

    Parameters
    ----------
    model : nn.Module
        The classifier (eval mode inside, restored after); for ``path`` a decoupled model.
    features : sequence of str
        ``activations``: GAP of each layer in ``layers``, concatenated; ``gate-groups``: the
        one layer's GAP averaged within each class's filter group of ``gates`` (C, K);
        ``path``: the binary calculation path; ``logits``: the model's output.

    Returns
    -------
    (Tensor (N,), dict)
        Predicted classes, and feature kind -> (N, D) float tensor, on the CPU.
    """
    from pellucid.apps.attacks import check_images
    from pellucid.hooks import capture
    from pellucid.state import model_device, model_state

    check_images(images)
    layers = list(layers)
    features = check_kinds(features, gates, layers)
    names = layers if {"activations", "gate-groups"} & set(features) else []
    device = model_device(model)
    preds: list[torch.Tensor] = []
    out: dict[str, list[torch.Tensor]] = {k: [] for k in features}
    with model_state(model), capture(model, names, detach=True) as store:
        for i in range(0, len(images), batch_size):
            logits = model(images[i : i + batch_size].to(device))
            preds.append(logits.argmax(1).cpu())
            pooled = [gap(store[n], n) for n in names]
            for kind in features:
                if kind == "activations":
                    out[kind].append(torch.cat(pooled, 1).cpu())
                elif kind == "gate-groups":
                    out[kind].append(group(pooled[0], gates).cpu())
                elif kind == "path":
                    out[kind].append(_path(model).cpu())
                else:
                    out[kind].append(logits.float().cpu())
    return torch.cat(preds), {k: torch.cat(v) for k, v in out.items()}


def gap(t: torch.Tensor, name: str) -> torch.Tensor:
    """Global average pooling of layer ``name``'s output (N, C, H, W) -> (N, C); a (N, C)
    output is kept as it is."""
    if t.dim() == 4:
        return t.float().mean(dim=(2, 3))
    if t.dim() == 2:
        return t.float()
    raise ConfigError(f"layer {name!r} outputs shape {tuple(t.shape)}, not (N, C[, H, W])")


def group(pooled: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """CSG's class filter groups: pooled channels (N, K) averaged with the gate matrix
    ``gates`` (C, K) as weights -> (N, C)."""
    g = gates.detach().float().to(pooled.device)  # (C, K)
    if g.dim() != 2 or g.shape[1] != pooled.shape[1]:
        raise ConfigError(
            f"gate matrix of shape {tuple(g.shape)} does not match the layer's "
            f"{pooled.shape[1]} channels"
        )
    return pooled @ g.T / g.sum(1).clamp_min(1e-8)  # (N, C)


def _path(model: nn.Module) -> torch.Tensor:
    """The binary calculation path of the last forward pass (N, sum of gated channels)."""
    from pellucid.methods.controllers import gated_layers, last_gates

    if not gated_layers(model):
        raise ConfigError("feature 'path' needs a decoupled model (controlling modules)")
    return torch.cat([g.float() for g in last_gates(model).values()], 1)


def default_features(method: Any) -> tuple[list[str], list[str], torch.Tensor | None]:
    """(features, layers, gates) of a run's method: CSG: gate groups and the gated layer's
    activations; decoupling: the path and the gated layers' activations; otherwise the
    analysis layer's activations; ``logits`` always."""
    from pellucid.methods.controllers import gated_layers

    model = method.inference_model()
    if method.name == "csg":
        return ["gate-groups", "activations", "logits"], [method.layer], method.gates
    if gated_layers(model):
        return ["path", "activations", "logits"], list(gated_layers(model)), None
    return ["activations", "logits"], [method.analysis_layer()], None
