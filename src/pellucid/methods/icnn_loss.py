"""Templates, forward mask and filter loss of interpretable CNNs (Zhang, Wu, Zhu,
"Interpretable Convolutional Neural Networks", CVPR 2018; icnn.md, "Templates", "Forward
mask" and "Loss"). The network and the method are in :mod:`pellucid.methods.icnn`, which
re-exports these names.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


# -- templates ----------------------------------------------------------------------------
def positive_templates(
    h: int,
    w: int,
    beta: float = 4.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The h*w UNSCALED positive templates ``max(1 - beta (|di| / h + |dj| / w), -1)``.

    Returns (h*w, h, w); template ``mu = mu_i * w + mu_j`` peaks (value 1) at (mu_i, mu_j).
    Multiply by tau for the loss templates of icnn.md, "Templates".
    """
    i = torch.arange(h, device=device, dtype=dtype or torch.float32)
    j = torch.arange(w, device=device, dtype=dtype or torch.float32)
    di = (i[:, None] - i[None, :]).abs() / h  # (mu_i, i)
    dj = (j[:, None] - j[None, :]).abs() / w  # (mu_j, j)
    dist = di[:, None, :, None] + dj[None, :, None, :]  # (mu_i, mu_j, i, j)
    return (1.0 - beta * dist).clamp_min(-1.0).reshape(h * w, h, w)


def templates(
    h: int,
    w: int,
    tau: float | None = None,
    beta: float = 4.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """All h*w + 1 loss templates, tau-scaled: (h*w + 1, h, w), the negative one last.

    ``tau`` defaults to the paper's 0.5 / n^2 (here 0.5 / (h w)).
    """
    tau = 0.5 / (h * w) if tau is None else tau
    pos = positive_templates(h, w, beta, device, dtype)  # (hw, h, w)
    neg = -torch.ones(1, h, w, device=device, dtype=pos.dtype)  # (1, h, w)
    return tau * torch.cat([pos, neg])


def log_prior(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """log p(T): log(alpha / (h w)) for each positive template, log(1 - alpha) for T-."""
    alpha = h * w / (1.0 + h * w)
    out = torch.full((h * w + 1,), math.log(alpha / (h * w)), device=device)
    out[-1] = math.log(1.0 - alpha)
    return out


def mask_at_peak(x: torch.Tensor, beta: float = 4.0) -> torch.Tensor:
    """``relu(x * T_mu^ / tau)``, mu^ = argmax of each map (icnn.md, "Forward mask").

    x : (N, K, h, w). The argmax is taken without gradient; the template is unscaled.
    """
    n, k, h, w = x.shape
    peak = x.detach().flatten(2).argmax(-1)  # (N, K)
    mu_i = (peak // w).to(x.dtype)[..., None, None]  # (N, K, 1, 1)
    mu_j = (peak % w).to(x.dtype)[..., None, None]
    i = torch.arange(h, device=x.device, dtype=x.dtype)[:, None]  # (h, 1)
    j = torch.arange(w, device=x.device, dtype=x.dtype)[None, :]  # (1, w)
    t = (1.0 - beta * ((i - mu_i).abs() / h + (j - mu_j).abs() / w)).clamp_min(-1.0)
    return F.relu(x * t)  # (N, K, h, w)


# -- the loss -----------------------------------------------------------------------------
def template_scores(x: torch.Tensor, tmpl: torch.Tensor) -> torch.Tensor:
    """tr(x . T) for every map and template: (N, K, h, w) x (M, h, w) -> (N, K, M)."""
    return torch.einsum("nkhw,mhw->nkm", x, tmpl)


def filter_mutual_information(
    x: torch.Tensor,
    tmpl: torch.Tensor,
    log_p_t: torch.Tensor,
    log_z: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """MI(X; T) of each filter over a batch of maps, in log space (icnn.md, "Loss").

    Parameters
    ----------
    x : (N, K, h, w) feature maps (pre-mask).
    tmpl : (M, h, w) tau-scaled templates (M = h w + 1, see :func:`templates`).
    log_p_t : (M,) log prior of the templates.
    log_z : (K, M), optional
        ``log mean_x exp(tr(x . T))`` per filter and template; default: this batch's.
    target : (N, K) long, optional
        Index of each map's target template T^: then only that template's term is summed
        (the paper's approximation).

    Returns
    -------
    (K,) MI in nats; the filter loss is its negative.
    """
    return mi_from_scores(template_scores(x, tmpl), log_p_t, log_z, target)


def mi_from_scores(
    s: torch.Tensor,
    log_p_t: torch.Tensor,
    log_z: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`filter_mutual_information` from the scores ``s = tr(x . T)`` (N, K, M)."""
    n = s.shape[0]
    if log_z is None:
        log_z = torch.logsumexp(s, dim=0) - math.log(n)  # (K, M)
    log_px_t = s - log_z - math.log(n)  # log p(x | T): (N, K, M)
    log_px = torch.logsumexp(log_px_t + log_p_t, dim=-1)  # log p(x): (N, K)
    if target is None:
        terms = log_p_t.exp() * log_px_t.exp() * (log_px_t - log_px[..., None])  # (N, K, M)
        return terms.sum(dim=(0, 2))
    lt = log_px_t.gather(-1, target[..., None]).squeeze(-1)  # log p(x | T^): (N, K)
    return (log_p_t[target].exp() * lt.exp() * (lt - log_px)).sum(dim=0)


def log_mean_exp(s: torch.Tensor, across_processes: bool = False) -> torch.Tensor:
    """``log mean_x exp(s)`` over the maps (dim 0) of the batch: (K, M) from (N, K, M).

    ``across_processes`` (training under torchrun): over the global batch, every process's
    maps, with the gradient flowing back to each process's own maps
    (:func:`pellucid.training.distributed.group_sum`), so K processes estimate Z_T as one
    process does."""
    lse = torch.logsumexp(s, dim=0)  # (K, M)
    if not across_processes:
        return lse - math.log(s.shape[0])
    from pellucid.training.distributed import group_max, group_sum

    top = group_max(lse)  # (K, M), a shift that keeps exp in range
    total = group_sum(torch.exp(lse - top), differentiable=True)
    count = group_sum(torch.tensor(float(s.shape[0]), device=s.device))
    return top + torch.log(total) - torch.log(count)


class FilterLoss(nn.Module):
    """-MI per filter with a running estimate of log Z_T (buffer ``log_z``, (K, M)).

    ``log_z`` takes its shape from the first maps it sees (the map size is unknown until
    then) and from a loaded state dict.
    """

    def __init__(self, tau: float | None, beta: float, momentum: float) -> None:
        super().__init__()
        self.tau, self.beta, self.momentum = tau, beta, momentum
        self.register_buffer("log_z", torch.zeros(0))
        self.register_buffer("z_updates", torch.zeros((), dtype=torch.long))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        saved = state_dict.get(prefix + "log_z")
        if saved is not None and saved.shape != self.log_z.shape:
            self.log_z = torch.zeros(saved.shape, device=self.log_z.device)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(
        self, x: torch.Tensor, target: torch.Tensor | None = None, update: bool = False
    ) -> torch.Tensor:
        """(K,) filter losses -MI of the maps x (N, K, h, w); ``update`` the running log Z."""
        n, k, h, w = x.shape
        tmpl = templates(h, w, self.tau, self.beta, x.device, x.dtype)  # (M, h, w)
        log_p_t = log_prior(h, w, x.device).to(x.dtype)  # (M,)
        s = template_scores(x, tmpl)  # (N, K, M)
        batch = log_mean_exp(s, across_processes=update)  # (K, M)
        if self.log_z.shape != batch.shape or int(self.z_updates) == 0:
            log_z = batch
        else:  # Z = m Z_run + (1 - m) Z_batch, in log space
            m = self.momentum
            log_z = torch.logaddexp(math.log(m) + self.log_z.to(x.dtype), math.log1p(-m) + batch)
        if update:
            self.log_z = log_z.detach().float()
            self.z_updates += 1
        return -mi_from_scores(s, log_p_t, log_z, target)
