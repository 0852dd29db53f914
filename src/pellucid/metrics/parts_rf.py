"""Receptive fields for the part-level filter metrics of Zhang et al., "Interpretable
Convolutional Neural Networks", CVPR 2018 (arXiv 1710.00935v4, Sec. 4; spec:
shared/methods/icnn.md, "Metrics"): :class:`ReceptiveField` and :func:`receptive_field`,
which measures them on a linearised copy of the network, never typed in. The metrics are in
:mod:`pellucid.metrics.parts`, which re-exports these names.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from pellucid.errors import DataError
from pellucid.hooks import capture


# -- receptive fields -----------------------------------------------------------------------
@dataclass(frozen=True)
class ReceptiveField:
    """Unit (i, j) of a layer sees input rows ``start[0] + i jump[0] + [0, size[0])`` and
    columns ``start[1] + j jump[1] + [0, size[1])`` (unclipped: may extend past the image)."""

    start: tuple[int, int]
    jump: tuple[int, int]
    size: tuple[int, int]

    def centres(self, h: int, w: int) -> torch.Tensor:
        """(h, w, 2) receptive-field centres as (x, y) = (column, row) pixel coordinates."""
        rows = self.start[0] + self.jump[0] * torch.arange(h) + (self.size[0] - 1) / 2
        cols = self.start[1] + self.jump[1] * torch.arange(w) + (self.size[1] - 1) / 2
        y, x = torch.meshgrid(rows.double(), cols.double(), indexing="ij")
        return torch.stack([x, y], dim=-1)  # (h, w, 2)

    def box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), end-exclusive, of unit (i, j)'s field (unclipped)."""
        y0, x0 = self.start[0] + self.jump[0] * i, self.start[1] + self.jump[1] * j
        return x0, y0, x0 + self.size[1], y0 + self.size[0]


def _probe_copy(model: nn.Module) -> nn.Module:
    """A float64 copy in which every unit depends on exactly its receptive field: positive
    conv weights (1 / fan-in), identity BN and input normalisation, max-pooling replaced by
    average pooling (same window), modules marked ``rf_transparent`` (the ICNN mask)
    replaced by the identity. With a positive input every activation is positive, so ReLUs
    pass everything and the input gradient of a unit is non-zero exactly on its field. On
    the CPU whatever the model's device (float64 everywhere, and the probe can grow large)."""
    probe = copy.deepcopy(model).cpu().double().eval()  # the probe input is a CPU tensor
    for parent in list(probe.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MaxPool2d):
                pool = nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode)
                setattr(parent, name, pool)
            elif getattr(child, "rf_transparent", False):
                setattr(parent, name, nn.Identity())
    with torch.no_grad():
        for m in probe.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_parameters()  # mean 0, var 1, weight 1, bias 0
            elif type(m).__name__ == "Normalize" and hasattr(m, "mean"):
                m.mean.zero_()
                m.std.fill_(1.0)
    for p in probe.parameters():
        p.requires_grad_(False)
    return probe


def _support(grad: torch.Tensor) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1), inclusive, of the non-zero entries of a (H, W) map."""
    rows = torch.nonzero(grad.abs().sum(1) > 0).flatten()
    cols = torch.nonzero(grad.abs().sum(0) > 0).flatten()
    if len(rows) == 0:
        raise DataError("receptive_field: the unit does not depend on the input")
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def receptive_field(
    model: nn.Module,
    layer: str,
    in_channels: int,
    image_size: tuple[int, int],
    max_side: int = 4096,
) -> ReceptiveField:
    """Receptive fields of ``layer``'s units, measured on the network itself.

    The input gradient of a unit of a linearised copy (see :func:`_probe_copy`) is non-zero
    on exactly the pixels the unit sees. The centre unit and its neighbours are probed on an
    input large enough that their fields lie inside it (the side is doubled until they do),
    which gives start, jump (stride) and size per axis; these do not depend on the input
    size, so they hold for ``image_size``.

    Raises
    ------
    DataError
        If the fields are not those of a conv net (inconsistent strides), exceed
        ``max_side`` pixels, or the model cannot be copied or run on larger inputs.
    """
    try:
        probe = _probe_copy(model)
    except (RuntimeError, TypeError) as err:
        raise DataError(f"receptive_field: cannot copy the model to probe it: {err}") from None
    h, w = image_size
    while True:
        x = torch.ones(1, in_channels, h, w, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad(), capture(probe, [layer]) as acts:
            try:
                probe(x)
            except (RuntimeError, TypeError) as err:  # e.g. a head that needs one input size
                raise DataError(f"receptive_field: the model fails on {h}x{w}: {err}") from None
        a = acts[layer]  # (1, K, h', w')
        if a.ndim != 4:
            raise DataError(f"layer {layer!r} output is {tuple(a.shape)}, not (N, K, H, W)")
        hh, ww = a.shape[-2:]
        boxes = _probe_units(a, x, hh, ww) if min(hh, ww) >= 3 else None
        if boxes is not None:
            return _fit(boxes, hh // 2, ww // 2, layer)
        if max(h, w) * 2 > max_side:
            raise DataError(f"receptive_field: fields of {layer!r} exceed {max_side} pixels")
        h, w = h * 2, w * 2


def _probe_units(
    a: torch.Tensor, x: torch.Tensor, hh: int, ww: int
) -> dict[tuple[int, int], tuple[int, int, int, int]] | None:
    """Field boxes of the centre unit and its 4 neighbours; None if any touches the border."""
    ic, jc = hh // 2, ww // 2
    boxes = {}
    for i, j in ((ic, jc), (ic - 1, jc), (ic + 1, jc), (ic, jc - 1), (ic, jc + 1)):
        (g,) = torch.autograd.grad(a[0, :, i, j].sum(), x, retain_graph=True)
        r0, r1, c0, c1 = _support(g[0].abs().sum(0))  # (H, W)
        if r0 == 0 or c0 == 0 or r1 == x.shape[2] - 1 or c1 == x.shape[3] - 1:
            return None
        boxes[(i, j)] = (r0, r1, c0, c1)
    return boxes


def _fit(boxes: dict, ic: int, jc: int, layer: str) -> ReceptiveField:
    r0, r1, c0, c1 = boxes[(ic, jc)]
    jump_r = boxes[(ic + 1, jc)][0] - r0
    jump_c = boxes[(ic, jc + 1)][2] - c0
    consistent = (
        jump_r > 0
        and jump_c > 0
        and r0 - boxes[(ic - 1, jc)][0] == jump_r
        and c0 - boxes[(ic, jc - 1)][2] == jump_c
        and all(b[1] - b[0] == r1 - r0 and b[3] - b[2] == c1 - c0 for b in boxes.values())
    )
    if not consistent:
        raise DataError(f"receptive_field: {layer!r} has no regular grid of receptive fields")
    return ReceptiveField(
        (r0 - ic * jump_r, c0 - jc * jump_c), (jump_r, jump_c), (r1 - r0 + 1, c1 - c0 + 1)
    )
