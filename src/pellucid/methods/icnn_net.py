"""The ICNN network: the forward mask as a module (with its per-filter gain), the
interpretable layer (conv 3x3, optional BN, ReLU, mask) and the backbone with that layer
inserted, which ``load_run`` returns for an ICNN run.

Zhang, Wu, Zhu, "Interpretable Convolutional Neural Networks", CVPR 2018 (arXiv 1710.00935v4).
Specification: shared/methods/icnn.md, "Forward mask". The mask gain is ours, not the
paper's (see "Mask gain" in :mod:`pellucid.methods.icnn`). The method is in
:mod:`pellucid.methods.icnn`, which re-exports these names.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pellucid.errors import ConfigError
from pellucid.hooks import edit_output
from pellucid.methods.icnn_loss import mask_at_peak
from pellucid.models.base import StagedNet


# -- the network ----------------------------------------------------------------------------
class TemplateMask(nn.Module):
    """The forward mask as a module (identity for the receptive-field probe), times a fixed
    per-filter ``gain`` (buffer, (K,); 1 = the paper's mask).

    :meth:`calibrate` sets ``gain_k = mean(x_k) / mean(mask(x_k))`` over a batch of pre-mask
    maps, so the layers after the mask see inputs of the same mean as without it (as dropout
    rescales its kept units). A state dict without these buffers (a plain run's, or one saved
    before they existed) leaves them as they are -- on a new network, gain 1, uncalibrated.
    """

    rf_transparent = True  # see pellucid.metrics.parts_rf.receptive_field

    def __init__(self, beta: float, channels: int) -> None:
        super().__init__()
        self.beta = beta
        self.register_buffer("gain", torch.ones(channels))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Set the gain from pre-mask maps x (N, K, h, w); filters silent on x keep gain 1.
        Under torchrun the means are over every process's maps (the same gain everywhere)."""
        from pellucid.training.distributed import group_sum, is_distributed

        masked = mask_at_peak(x, self.beta).float()
        if is_distributed():
            count = group_sum(torch.tensor(float(x[:, 0].numel()), device=x.device))
            before = group_sum(x.float().sum(dim=(0, 2, 3))) / count  # (K,)
            after = group_sum(masked.sum(dim=(0, 2, 3))) / count  # (K,), <= before
        else:
            before = x.float().mean(dim=(0, 2, 3))  # (K,)
            after = masked.mean(dim=(0, 2, 3))  # (K,), <= before
        ok = after > 1e-12
        self.gain.copy_(torch.where(ok, before / after.clamp_min(1e-12), torch.ones_like(after)))
        self.calibrated.fill_(True)

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing: list,
        *a: Any,
    ) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, *a)
        for key in ("gain", "calibrated"):  # absent: keep the current (uncalibrated) values
            if prefix + key not in state_dict and prefix + key in missing:
                missing.remove(prefix + key)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The mask (:func:`mask_at_peak`) times ``gain``: (N, K, h, w) -> (N, K, h, w)."""
        return mask_at_peak(x, self.beta) * self.gain.to(x.dtype)[:, None, None]  # (N, K, h, w)

    def extra_repr(self) -> str:
        """``beta`` and the number of filters, for the module's repr."""
        return f"beta={self.beta}, channels={self.gain.numel()}"


class InterpretableLayer(nn.Module):
    """conv 3x3 (same width) -> BN (optional) -> ReLU -> mask (identity when plain)."""

    def __init__(self, channels: int, bn: bool, mask: bool, beta: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=not bn)
        self.bn = nn.BatchNorm2d(channels) if bn else nn.Identity()
        self.relu = nn.ReLU()
        self.mask = TemplateMask(beta, channels) if mask else nn.Identity()

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """Pre-mask maps x (N, K, h, w): where the filter loss is computed."""
        if h.ndim != 4:
            raise ConfigError(f"icnn: the layer output is {tuple(h.shape)}, not (N, K, H, W)")
        return self.relu(self.bn(self.conv(h)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(N, K, H, W) layer output -> (N, K, H, W) masked maps: :meth:`features`, then
        the mask."""
        return self.mask(self.features(h))


class ICNNNet(nn.Module):
    """The backbone with the interpretable layer inserted after ``layer``: what ``load_run``
    returns for an ICNN run. Its layers: ``backbone.*`` and ``icnn`` (``icnn.relu`` is the
    pre-mask map). Our StagedNets are split with ``forward_to``/``forward_from``; other
    models and nested layers get the layer's output edited by a hook during the forward."""

    def __init__(self, backbone: nn.Module, layer: str, icnn: InterpretableLayer) -> None:
        super().__init__()
        self.backbone, self.icnn, self.layer = backbone, icnn, layer
        self.staged = isinstance(backbone, StagedNet) and layer in backbone.stage_names
        self.default_layer = "icnn"
        self.in_channels = getattr(backbone, "in_channels", None)
        self.num_classes = getattr(backbone, "num_classes", None)

    def parameter_blocks(self) -> list[str]:
        """The blocks a sanity check re-initialises one by one: the backbone's and the
        interpretable layer (:func:`pellucid.metrics.parameter_blocks`)."""
        from pellucid.metrics.randomise import parameter_blocks

        return [f"backbone.{name}" for name in parameter_blocks(self.backbone)] + ["icnn"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) of the backbone with the interpretable layer after ``layer``."""
        if self.staged:
            h = self.backbone.forward_to(x, self.layer)  # (N, K, H, W)
            return self.backbone.forward_from(self.icnn(h), self.layer)
        with edit_output(self.backbone, self.layer, self.icnn):
            return self.backbone(x)
