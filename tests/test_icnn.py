"""ICNN (Zhang, Wu & Zhu, CVPR 2018): the templates, the mask and the filter loss against
literal implementations of the formulas."""

import math

import pytest
import torch

from pellucid.methods.icnn import (
    FilterLoss,
    filter_mutual_information,
    log_prior,
    mask_at_peak,
    templates,
)


# -- templates and mask ---------------------------------------------------------------------
def test_template_values():
    n = 8
    t = templates(n, n)  # (n^2 + 1, n, n)
    tau = 0.5 / n**2
    assert t.shape == (n * n + 1, n, n)
    mu = 3 * n + 4  # template centred at (3, 4)
    assert float(t[mu, 3, 4]) == pytest.approx(tau)
    assert float(t[mu, 3, 5]) == pytest.approx(tau * (1 - 4 / n))  # L1 distance 1
    for i in range(n):
        for j in range(n):
            if abs(i - 3) + abs(j - 4) >= n / 2:
                assert float(t[mu, i, j]) == pytest.approx(-tau)
    assert torch.allclose(t[-1], torch.full((n, n), -tau))
    assert float(t.max()) == pytest.approx(tau) and float(t.min()) == pytest.approx(-tau)
    prior = log_prior(n, n).exp()
    assert float(prior.sum()) == pytest.approx(1.0)
    assert float(prior[-1]) == pytest.approx(1 - n * n / (1 + n * n))


def test_mask_is_unscaled_template_at_peak_without_argmax_gradient():
    x = torch.rand(2, 3, 6, 6, requires_grad=True)
    out = mask_at_peak(x)
    t = templates(6, 6) / (0.5 / 36)  # unscaled
    for a in range(2):
        for f in range(3):
            mu = int(x[a, f].argmax())
            expected = torch.relu(x[a, f] * t[mu])
            assert torch.allclose(out[a, f], expected)
            assert out[a, f].flatten()[mu] == x[a, f].flatten()[mu]  # the peak is kept
    out.sum().backward()  # gradient = relu'(.) * template, no term from the argmax
    assert torch.all((x.grad >= 0) & (x.grad <= 1))


# -- the loss -------------------------------------------------------------------------------
def literal_mi(x, tmpl, prior, z=None, target=None):
    """MI per filter with loops over filters, templates and maps (icnn.md, "Loss")."""
    n, k = x.shape[:2]
    m = tmpl.shape[0]
    out = []
    for f in range(k):
        e = [[math.exp(float((x[i, f] * tmpl[t]).sum())) for t in range(m)] for i in range(n)]
        zt = [sum(e[i][t] for i in range(n)) if z is None else z[f][t] for t in range(m)]
        p_x_t = [[e[i][t] / zt[t] for t in range(m)] for i in range(n)]
        p_x = [sum(prior[t] * p_x_t[i][t] for t in range(m)) for i in range(n)]
        total = 0.0
        for t in range(m):
            for i in range(n):
                if target is not None and int(target[i, f]) != t:
                    continue
                total += prior[t] * p_x_t[i][t] * math.log(p_x_t[i][t] / p_x[i])
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("approx", [False, True])
def test_loss_equals_literal_formula(approx):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 3, 3, generator=g, dtype=torch.float64) * 20
    tmpl = templates(3, 3, dtype=torch.float64)
    lp = log_prior(3, 3).double()
    target = torch.randint(0, 10, (6, 3), generator=g) if approx else None
    mi = filter_mutual_information(x, tmpl, lp, target=target)
    expected = literal_mi(x, tmpl, lp.exp().tolist(), target=target)
    assert torch.allclose(mi, expected, rtol=1e-9, atol=1e-12)
    assert float(expected.abs().max()) > 1e-3  # a non-trivial case
    # with a given running log Z (log mean exp): Z_T = N exp(log_z)
    log_z = torch.rand(3, 10, generator=g, dtype=torch.float64) + 2
    mi = filter_mutual_information(x, tmpl, lp, log_z=log_z, target=target)
    z = (6 * log_z.exp()).tolist()
    assert torch.allclose(mi, literal_mi(x, tmpl, lp.exp().tolist(), z, target), rtol=1e-9)


def test_running_log_z_is_an_ema_of_z():
    torch.manual_seed(2)
    loss = FilterLoss(tau=None, beta=4.0, momentum=0.9).double()
    x1, x2 = torch.rand(5, 2, 4, 4).double() * 30, torch.rand(5, 2, 4, 4).double() * 30
    tmpl = templates(4, 4, dtype=torch.float64)

    def z(x):  # (K, M) batch mean of exp(tr(x . T))
        return torch.einsum("nkhw,mhw->nkm", x, tmpl).exp().mean(0)

    loss(x1, update=True)
    assert torch.allclose(loss.log_z.double(), z(x1).log(), rtol=1e-6)
    out = loss(x2, update=True)
    mixed = 0.9 * z(x1) + 0.1 * z(x2)
    assert torch.allclose(loss.log_z.double(), mixed.log(), rtol=1e-6)
    lp = log_prior(4, 4).double()
    expected = -filter_mutual_information(x2, tmpl, lp, log_z=mixed.log())
    assert torch.allclose(out, expected)
    assert int(loss.z_updates) == 2


@pytest.mark.parametrize("approx", [False, True])
def test_gradient_matches_finite_differences(approx):
    torch.manual_seed(3)
    x = (torch.rand(4, 2, 3, 3, dtype=torch.float64) * 10).requires_grad_()
    tmpl = templates(3, 3, dtype=torch.float64)
    lp = log_prior(3, 3).double()
    log_z = torch.rand(2, 10, dtype=torch.float64).requires_grad_()
    target = torch.randint(0, 10, (4, 2)) if approx else None
    assert torch.autograd.gradcheck(
        lambda a, b: filter_mutual_information(a, tmpl, lp, b, target), (x, log_z)
    )
    assert torch.autograd.gradcheck(lambda a: filter_mutual_information(a, tmpl, lp), (x,))


def test_no_overflow_with_large_activations():
    loss = FilterLoss(tau=None, beta=4.0, momentum=0.9)
    x = (torch.rand(8, 4, 8, 8) * 1e3).requires_grad_()
    for _ in range(3):
        out = loss(x, update=True)
        assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    tgt = torch.full((8, 4), 64)
    out = loss(x * 3, tgt)  # far above the running Z
    assert torch.isfinite(out).all()
