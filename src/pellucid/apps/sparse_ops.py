"""Sparse execution, per-layer ops (Li et al., "Interpretable Neural Network Decoupling",
ECCV 2020, Sec. 4.4; decoupling.md, "Acceleration").

Each op runs one layer on a batch of one, computing only the active channels (``run``), and
counts that layer's FLOPs per input (``count``): gated conv (+ folded BatchNorm, + ReLU),
residual BasicBlock, pooled linear head, and channel-wise modules (input normalisation,
pooling). :mod:`pellucid.apps.sparse_net` chains them into ``SparseNet``; the FLOPs
convention and the latency measurement are described in :mod:`pellucid.apps.acceleration`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pellucid.errors import ConfigError
from pellucid.models.base import Normalize
from pellucid.models.resnet import BasicBlock

Gates = Mapping[str, torch.Tensor]


class _ConvOp:
    """Conv (+ folded BatchNorm) (+ ReLU), optionally gated by a controller.

    Channel bookkeeping (which filters a controller opens, gathering their weights) runs in
    NumPy on the snapshot arrays: for a batch of one, each PyTorch call costs several
    microseconds of dispatch on tensors of a few dozen numbers, NumPy about one.
    """

    def __init__(self, name: str, conv: nn.Conv2d) -> None:
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ConfigError(f"sparse execution: conv {name!r} is grouped or not zero-padded")
        self.name, self.conv = name, conv
        self.controller = getattr(conv, "controller", None)
        w = conv.weight.detach().cpu().float()
        self.weight = w.clone()  # (K, C, kh, kw)
        self.bias = (
            conv.bias.detach().cpu().float().clone()
            if conv.bias is not None
            else w.new_zeros(len(w))
        )
        self.relu, self.folded = False, False
        self.hw_in = self.hw_out = (0, 0)
        c = self.controller
        if c is not None:  # snapshot, transposed: (C_in, hidden), (hidden, K)
            self.w1t = c.weight1.detach().cpu().float().t().numpy().copy()
            self.w2t = c.weight2.detach().cpu().float().t().numpy().copy()
            self.b1 = c.bias1.detach().cpu().float().numpy().copy()
            self.b2 = c.bias2.detach().cpu().float().numpy().copy()
            self._minus_b2 = -self.b2
        self._gap: np.ndarray | None = None
        self._arrays()

    def _arrays(self) -> None:
        self.w_np, self.b_np = self.weight.numpy(), self.bias.numpy()

    def fold(self, bn: nn.BatchNorm2d) -> None:
        """w' = w gamma / sigma, b' = beta + (b - mu) gamma / sigma (eval-mode BN)."""
        bn_w, bn_b = bn.weight.detach().cpu().float(), bn.bias.detach().cpu().float()
        mean, var = bn.running_mean.cpu().float(), bn.running_var.cpu().float()
        scale = bn_w / torch.sqrt(var + bn.eps)  # (K,)
        self.weight = (self.weight * scale[:, None, None, None]).contiguous()
        self.bias = (bn_b + (self.bias - mean) * scale).contiguous()
        self.folded = True
        self._arrays()

    def gates(self, x: torch.Tensor, idx: np.ndarray | None) -> np.ndarray:
        """Indices of the filters the controller opens for x (1, k_in, H, W): the hard gate
        ``W2 relu(W1 GAP(x) + b1) + b2 > 0``, GAP as a matrix-vector product."""
        k, hw = x.shape[1], x.shape[2] * x.shape[3]
        if self._gap is None or len(self._gap) != hw:
            self._gap = np.full(hw, 1.0 / hw, dtype=np.float32)
        s = x.numpy().reshape(k, hw) @ self._gap  # inactive channels add nothing
        h = np.maximum(s @ (self.w1t if idx is None else self.w1t.take(idx, 0)) + self.b1, 0.0)
        return (h @ self.w2t > self._minus_b2).nonzero()[0]

    def run(self, x: torch.Tensor, idx: np.ndarray | None, dense: bool):
        """x (1, k_in, H, W): active input channels ``idx`` (None = all) -> same for output."""
        self.hw_in = tuple(x.shape[2:])
        w, b, out_idx = self.weight, self.bias, None
        if self.controller is not None and not dense:
            out_idx = self.gates(x, idx)
            if out_idx.size == 0:  # keep one all-zero channel so that shapes stay valid
                out_idx = np.zeros(1, dtype=np.int64)
                k_in = x.shape[1]
                w, b = w.new_zeros(1, k_in, *w.shape[2:]), b.new_zeros(1)
            elif out_idx.size == len(self.b_np):  # every gate open: nothing to gather
                out_idx = None
                if idx is not None:
                    w = torch.from_numpy(self.w_np.take(idx, 1))
            else:
                wn = self.w_np.take(out_idx, 0)
                w = torch.from_numpy(wn if idx is None else wn.take(idx, 1))
                b = torch.from_numpy(self.b_np.take(out_idx))
        elif idx is not None:
            w = torch.from_numpy(self.w_np.take(idx, 1))
        c2 = self.conv
        out = F.conv2d(x, w, b, c2.stride, c2.padding, c2.dilation)
        self.hw_out = tuple(out.shape[2:])
        return (out.relu_() if self.relu else out), out_idx

    def count(self, k_in: torch.Tensor, gates: Gates | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(FLOPs, active output channels) per input, given active input channels k_in (N,)."""
        kh, kw = self.conv.kernel_size
        k_out = torch.full_like(k_in, self.conv.out_channels)
        cost = torch.zeros_like(k_in)
        if self.controller is not None and gates is not None:
            k_out = gates[self.name].flatten(1).sum(1).to(k_in)  # dtype and device
            hidden = self.controller.hidden
            gap = k_in * self.hw_in[0] * self.hw_in[1]
            cost = gap + k_in * hidden + hidden * self.conv.out_channels
        hw = self.hw_out[0] * self.hw_out[1]
        return cost + k_out * k_in * kh * kw * hw, k_out


class _BlockOp:
    """A residual BasicBlock: gated branch convs, dense shortcut, add, ReLU."""

    def __init__(self, name: str, block: BasicBlock) -> None:
        self.conv1, self.conv2 = (
            _ConvOp(f"{name}.conv1", block.conv1),
            _ConvOp(f"{name}.conv2", block.conv2),
        )
        self.conv1.fold(block.bn1)
        self.conv1.relu = True
        self.conv2.fold(block.bn2)
        self.short = None
        self.first = False  # set by _compile when the block reads the caller's tensor
        self.channels = block.conv2.out_channels
        if isinstance(block.shortcut, nn.Sequential):
            self.short = _ConvOp(f"{name}.shortcut.0", block.shortcut[0])
            self.short.fold(block.shortcut[1])

    def run(self, x: torch.Tensor, idx: np.ndarray | None, dense: bool):
        if idx is not None:  # a block reads a full tensor: restore the skipped channels
            full = x.new_zeros(1, self.conv1.conv.in_channels, *x.shape[2:])
            x = full.index_copy_(1, torch.from_numpy(idx), x)
        h, i1 = self.conv1.run(x, None, dense)
        h, i2 = self.conv2.run(h, i1, dense)
        if self.short is not None:
            sc = self.short.run(x, None, dense)[0]
        else:  # the engine's own intermediate may be overwritten, the caller's input not
            sc = x.clone() if self.first else x
        out = sc.add_(h) if i2 is None else sc.index_add_(1, torch.from_numpy(i2), h)
        return out.relu_(), None

    def count(self, k_in: torch.Tensor, gates: Gates | None) -> tuple[torch.Tensor, torch.Tensor]:
        full = torch.full_like(k_in, self.conv1.conv.in_channels)
        c1, k1 = self.conv1.count(full, gates)
        c2, _ = self.conv2.count(k1, gates)
        cs = self.short.count(full, gates)[0] if self.short is not None else 0
        return c1 + c2 + cs, torch.full_like(k_in, self.channels)


class _HeadOp:
    """Global average pooling + linear classifier on the active channels."""

    def __init__(self, fc: nn.Linear) -> None:
        self.fc = fc
        self.w_np = fc.weight.detach().cpu().float().numpy().copy()  # (classes, C)
        b = fc.bias.detach().cpu().float() if fc.bias is not None else torch.zeros(len(self.w_np))
        self.b_np = b.numpy().copy()

    def run(self, x: torch.Tensor, idx: np.ndarray | None, dense: bool):
        w = self.w_np if idx is None else self.w_np[:, idx]
        s = x.numpy().reshape(x.shape[1], -1).mean(1)
        return torch.from_numpy(w @ s + self.b_np)[None], None

    def count(self, k_in: torch.Tensor, gates: Gates | None) -> tuple[torch.Tensor, torch.Tensor]:
        return k_in * self.fc.out_features, torch.full_like(k_in, self.fc.out_features)


def _max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` as two strided maxima (NumPy): the same values, and many times
    faster than PyTorch's CPU kernel for one image (it serves the dense and the sparse run
    alike)."""
    a = x.numpy()
    h, w = a.shape[2] // 2 * 2, a.shape[3] // 2 * 2
    rows = np.maximum(a[:, :, 0:h:2, :w], a[:, :, 1:h:2, :w])  # (N, C, H/2, W)
    return torch.from_numpy(np.maximum(rows[..., 0::2], rows[..., 1::2]))  # (N, C, H/2, W/2)


class _Normalise:
    """:class:`Normalize` on the snapshot of its statistics, in NumPy."""

    def __init__(self, module: Normalize) -> None:
        self.mean = module.mean.detach().cpu().float().numpy().copy()
        self.inv_std = 1.0 / module.std.detach().cpu().float().numpy()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy((x.numpy() - self.mean) * self.inv_std)


def _is_2x2(pool: nn.Module) -> bool:
    return (
        isinstance(pool, nn.MaxPool2d)
        and all(v in (2, (2, 2)) for v in (pool.kernel_size, pool.stride))
        and pool.padding in (0, (0, 0))
        and pool.dilation in (1, (1, 1))
        and not pool.ceil_mode
    )


class _ApplyOp:
    """A channel-wise module (normalisation of the image, pooling): run as it is."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.fn: Callable[[torch.Tensor], torch.Tensor] = module
        if _is_2x2(module):
            self.fn = _max_pool_2x2
        elif isinstance(module, Normalize):
            self.fn = _Normalise(module)

    def run(self, x: torch.Tensor, idx: np.ndarray | None, dense: bool):
        return self.fn(x), idx

    def count(self, k_in: torch.Tensor, gates: Gates | None) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros_like(k_in), k_in
