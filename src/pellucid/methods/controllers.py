"""Architecture controlling modules of network decoupling: insertion into a model, removal,
and reading the gates (Li et al., "Interpretable Neural Network Decoupling", ECCV 2020;
decoupling.md, "Architecture controlling module" and "Binarisation").

Insertion is reversible and renames nothing: each gated ``nn.Conv2d`` becomes a
:class:`ControlledConv2d` (its controller is a new child, ``<conv>.controller``) and the
``nn.BatchNorm2d`` that follows it a :class:`GatedBatchNorm2d`, by swapping the instances'
classes as ``torch.nn.utils.parametrize`` does; :func:`remove_controllers` swaps them back.
The training objective and the method are in :mod:`pellucid.methods.decoupling`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pellucid.data.base import Batch
from pellucid.errors import ConfigError
from pellucid.state import model_device

SHORTCUT_NAMES = ("shortcut", "downsample")


def semantic_hash(logits: torch.Tensor, training: bool) -> torch.Tensor:
    """Improved Semantic Hashing (Kaiser & Bengio 2018; decoupling.md, "Binarisation").

    Training: g = y + eps, eps ~ N(0, 1); v1 = clamp(1.2 sigmoid(g) - 0.1, 0, 1) (soft),
    v2 = 1[g > 0] (hard); the forward value is v2 for a random half of the entries and v1 for
    the rest, the gradient is that of v1 everywhere (straight through). Inference: 1[y > 0].
    """
    if not training:
        return (logits > 0).to(logits.dtype)
    g = logits + torch.randn_like(logits)  # (N, K)
    soft = (1.2 * torch.sigmoid(g) - 0.1).clamp(0.0, 1.0)  # v1
    hard = (g > 0).to(logits.dtype)  # v2
    use_hard = torch.rand_like(logits) < 0.5
    return soft + (torch.where(use_hard, hard, soft) - soft).detach()  # value mix, grad dv1


class ArchitectureController(nn.Module):
    """GAP -> FC(C_in -> C_in / reduction) -> ReLU -> FC(-> C_out): gate logits of one layer.

    The second FC starts at zero weight and bias ``init_bias`` (> 0), so every gate starts
    open. After each forward, ``logits`` (N, C_out), ``gate`` (N, C_out) and, once the gate
    is applied, ``pre_gate`` (N, C_out, the GAP of the layer output before gating) hold the
    latest values: the calculation path of the last batch.
    """

    def __init__(
        self, in_channels: int, out_channels: int, reduction: int = 4, init_bias: float = 1.0
    ) -> None:
        super().__init__()
        hidden = max(1, in_channels // reduction)
        self.weight1 = nn.Parameter(torch.empty(hidden, in_channels))
        nn.init.kaiming_uniform_(self.weight1, a=5**0.5)  # nn.Linear's default
        self.bias1 = nn.Parameter(torch.zeros(hidden))
        self.weight2 = nn.Parameter(torch.zeros(out_channels, hidden))
        self.bias2 = nn.Parameter(torch.full((out_channels,), float(init_bias)))
        self.at_conv = False  # gate the conv's own output (no BatchNorm follows it)
        self.detach_input = False  # read the layer input without back-propagating into it
        self.filter_cost = 1  # multiply-accumulates of one output filter on the last input
        self.logits: torch.Tensor | None = None
        self.gate: torch.Tensor | None = None
        self.pre_gate: torch.Tensor | None = None

    @property
    def hidden(self) -> int:
        """Width of the controller's hidden layer, ``max(1, C_in // reduction)``."""
        return self.weight1.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) layer input -> (N, C_out) gates a_l (also stored)."""
        s = x.mean(dim=(2, 3))  # (N, C_in)
        if self.detach_input:
            s = s.detach()
        y = F.linear(F.relu(F.linear(s, self.weight1, self.bias1)), self.weight2, self.bias2)
        self.logits = y  # (N, C_out)
        self.gate = semantic_hash(y, self.training)
        return self.gate

    def gate_output(self, out: torch.Tensor) -> torch.Tensor:
        """a_l * out, channel-wise; remembers o_l = GAP(out) for the alignment loss."""
        if self.gate is None:
            raise RuntimeError("the controller has not seen the layer input yet")
        self.pre_gate = out.mean(dim=(2, 3))  # (N, C_out)
        return out * self.gate[:, :, None, None]

    def __getstate__(self) -> dict[str, Any]:
        # the last forward's tensors are transient (and may hold a graph): not copied/pickled
        return {**self.__dict__, "logits": None, "gate": None, "pre_gate": None}

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # A state dict without any entry of this controller (a dense model's, as with
        # ``--init RUN`` from a standard run) leaves it as it is; a partial one is an error.
        if any(k.startswith(prefix) for k in state_dict):
            super()._load_from_state_dict(state_dict, prefix, *args)


class ControlledConv2d(nn.Conv2d):
    """A ``Conv2d`` whose ``controller`` chooses its active output channels from its input."""

    controller: ArchitectureController

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, H', W'); runs the controller on the input first and
        records ``filter_cost``. The gates multiply the output here only when no BatchNorm follows
        (``at_conv``); otherwise :class:`GatedBatchNorm2d` applies them."""
        self.controller(x)  # (N, C_out) gates, stored on the controller
        out = super().forward(x)
        kh, kw = self.kernel_size
        self.controller.filter_cost = x.shape[1] * kh * kw * out.shape[2] * out.shape[3]
        return self.controller.gate_output(out) if self.controller.at_conv else out


class GatedBatchNorm2d(nn.BatchNorm2d):
    """The ``BatchNorm2d`` after a controlled conv: multiplies its output by the conv's gates."""

    _gate_source: tuple[ArchitectureController]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """BatchNorm of (N, C, H, W), times the gates of the controlled conv before it."""
        return self._gate_source[0].gate_output(super().forward(x))


def _following_norm(model: nn.Module, name: str, conv: nn.Conv2d) -> nn.BatchNorm2d | None:
    """The BatchNorm2d registered right after ``conv`` in the same parent, if any."""
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    children = list(parent.children())
    i = next(j for j, c in enumerate(children) if c is conv)
    nxt = children[i + 1] if i + 1 < len(children) else None
    if isinstance(nxt, nn.BatchNorm2d):
        if type(nxt) is not nn.BatchNorm2d or nxt.num_features != conv.out_channels:
            raise ConfigError(f"decoupling: cannot gate the norm after {name!r} ({nxt})")
        return nxt
    return None


def insert_controllers(
    model: nn.Module,
    reduction: int = 4,
    init_bias: float = 1.0,
    exclude: Sequence[str] = SHORTCUT_NAMES,
) -> list[str]:
    """Insert an architecture controlling module before every conv layer but the first.

    Parameters
    ----------
    model : nn.Module
        Changed in place; :func:`remove_controllers` restores it exactly.
    reduction : int
        Hidden width of the controller is ``C_in // reduction`` (decoupling.md: 4).
    init_bias : float
        Initial logit of every gate (> 0: all gates start open).
    exclude : sequence of str
        Convs inside a module with one of these names are not gated (residual projection
        shortcuts: only the branch convs before the add are).

    Returns
    -------
    list of str
        Names of the gated convs, in module order (the order of the path's segments).
    """
    if gated_layers(model):
        raise ConfigError("decoupling: the model already has controlling modules")
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    targets = [(n, m) for n, m in convs[1:] if not set(n.split(".")) & set(exclude)]
    if not targets:
        raise ConfigError(f"decoupling: {type(model).__name__} has no conv layer to gate")
    plans = []
    for name, conv in targets:
        if type(conv) is not nn.Conv2d:
            raise ConfigError(f"decoupling: cannot gate {name!r} of type {type(conv).__name__}")
        plans.append((name, conv, _following_norm(model, name, conv)))
    for _name, conv, norm in plans:
        ctrl = ArchitectureController(conv.in_channels, conv.out_channels, reduction, init_bias)
        ctrl.to(device=conv.weight.device, dtype=conv.weight.dtype).train(conv.training)
        conv.__class__ = ControlledConv2d
        conv.controller = ctrl
        ctrl.at_conv = norm is None
        if norm is not None:
            norm.__class__ = GatedBatchNorm2d
            norm._gate_source = (ctrl,)
            ctrl._norm = (norm,)
    return [name for name, _, _ in plans]


def remove_controllers(model: nn.Module) -> list[str]:
    """Undo :func:`insert_controllers`: same modules, outputs and state_dict keys as before.

    Returns the names of the convs that were gated.
    """
    removed = []
    for name, conv in list(gated_layers(model).items()):
        ctrl = conv.controller
        for norm in getattr(ctrl, "_norm", ()):
            del norm.__dict__["_gate_source"]
            norm.__class__ = nn.BatchNorm2d
        del conv.controller
        conv.__class__ = nn.Conv2d
        removed.append(name)
    return removed


@contextmanager
def decoupled(model: nn.Module, **options: Any) -> Iterator[list[str]]:
    """Controllers inserted during the block (see :func:`insert_controllers`), then removed."""
    names = insert_controllers(model, **options)
    try:
        yield names
    finally:
        remove_controllers(model)


def gated_layers(model: nn.Module) -> dict[str, ControlledConv2d]:
    """Name -> controlled conv, in module order (empty for a model without controllers)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, ControlledConv2d)}


def last_gates(model: nn.Module) -> dict[str, torch.Tensor]:
    """Name -> (N, C_out) gates of the last forward pass (the calculation path, per layer)."""
    out = {}
    for name, conv in gated_layers(model).items():
        if conv.controller.gate is None:
            raise ConfigError("decoupling: run a forward pass before reading the gates")
        out[name] = conv.controller.gate
    return out


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable[Batch | torch.Tensor], max_batches: int | None = None
) -> int:
    """Recompute every BatchNorm's running mean and variance as the plain average over
    ``batches`` (up to ``max_batches``) of a forward pass with everything else in eval mode,
    i.e. with hard gates (as ``torch.optim.swa_utils.update_bn``, which runs the whole model
    in training mode). The model's modes and the norms' momenta are restored.

    Returns the number of images used.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    device = model_device(model)
    seen = 0
    try:
        model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: every batch weighs the same
            m.train()
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            x = batch.image if isinstance(batch, Batch) else batch
            model(x.to(device))
            seen += len(x)
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    if seen == 0:
        raise ConfigError("recalibrate_batchnorm: no batch to estimate the statistics from")
    return seen
