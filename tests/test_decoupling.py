"""Interpretable network decoupling (Li et al., ECCV 2020): binary gates, reversible
controller insertion, sparse execution equal to the masked dense network, FLOP counts."""

import pytest
import torch
from torch import nn

from decoupling_helpers import randomise_gates
from pellucid.apps.acceleration import SparseNet
from pellucid.errors import PellucidError
from pellucid.hooks import count_hooks
from pellucid.methods import Decoupling
from pellucid.methods.decoupling import (
    ControlledConv2d,
    GatedBatchNorm2d,
    decoupled,
    gated_layers,
    insert_controllers,
    last_gates,
    remove_controllers,
    semantic_hash,
)
from pellucid.models import build_model


def test_gates_are_binary_in_eval_and_soft_in_training():
    model = build_model("convnet", 3, 4, widths=[8, 8, 16, 16])
    Decoupling(model, 4)
    randomise_gates(model)
    x = torch.rand(6, 3, 32, 32)
    model.eval()
    model(x)
    gates = torch.cat(list(last_gates(model).values()), 1)
    assert set(gates.unique().tolist()) == {0.0, 1.0}
    logits = torch.cat([c.controller.logits for c in gated_layers(model).values()], 1)
    assert torch.equal(gates, (logits > 0).float())
    model.train()
    with torch.no_grad():
        model(x)
    train_gates = torch.cat(list(last_gates(model).values()), 1)
    assert float(train_gates.min()) >= 0 and float(train_gates.max()) <= 1
    assert ((train_gates > 0) & (train_gates < 1)).any()  # soft values v1 in training
    assert count_hooks(model) == 0


def test_straight_through_gradient_equals_soft_gate_gradient():
    y = torch.randn(5, 12, requires_grad=True)
    w = torch.randn(5, 12)
    torch.manual_seed(3)
    a = semantic_hash(y, training=True)
    (a * w).sum().backward()
    y2 = y.detach().clone().requires_grad_(True)
    torch.manual_seed(3)
    g = y2 + torch.randn_like(y2)  # the same noise
    v1 = (1.2 * torch.sigmoid(g) - 0.1).clamp(0, 1)
    (v1 * w).sum().backward()
    assert torch.allclose(y.grad, y2.grad)
    v2 = (g > 0).float()
    # every forward value is the hard or the soft gate; about half are the hard one
    is_hard = torch.isclose(a, v2) & ~torch.isclose(v1, v2)
    is_soft = torch.isclose(a, v1.detach())
    assert bool((is_hard | is_soft).all()) and 0 < int(is_hard.sum()) < a.numel()


@pytest.mark.parametrize("name", ["convnet", "resnet8"])
def test_removing_controllers_restores_outputs_and_state_dict(name):
    model = build_model(name, 3, 5)
    x = torch.rand(3, 3, 32, 32)
    model.eval()
    before = model(x).detach()
    keys = list(model.state_dict())
    method = Decoupling(model, 5)
    assert all(k in method.model.state_dict() for k in keys)  # nothing renamed
    assert torch.allclose(model(x), before)  # gates start open
    randomise_gates(model)
    assert not torch.allclose(model(x), before)
    method.remove()
    assert list(model.state_dict()) == keys
    assert torch.equal(model(x), before)
    assert not any(isinstance(m, ControlledConv2d) for m in model.modules())
    assert not any(isinstance(m, GatedBatchNorm2d) for m in model.modules())
    with decoupled(model) as names:
        assert names == list(gated_layers(model))
    assert torch.equal(model(x), before) and count_hooks(model) == 0


def test_torchvision_resnet18_insertion_is_reversible():
    model = build_model("tv:resnet18", 3, 10).eval()
    x = torch.rand(2, 3, 32, 32)
    before = model(x).detach()
    keys = list(model.state_dict())
    names = insert_controllers(model)
    assert len(names) == 16 and not any("downsample" in n or n == "net.conv1" for n in names)
    assert torch.allclose(model(x), before, atol=1e-6)
    randomise_gates(model, bias=0.5)
    model(x)
    assert 0 < float(torch.cat(list(last_gates(model).values()), 1).mean()) < 1
    remove_controllers(model)
    assert list(model.state_dict()) == keys and torch.equal(model(x), before)


@pytest.mark.parametrize(
    "name,shape",
    [
        ("convnet", (3, 32, 32)),
        ("vgg", (3, 16, 16)),
        ("resnet8", (1, 28, 28)),
        ("resnet20", (3, 16, 16)),
    ],
)
def test_sparse_execution_equals_masked_dense(name, shape):
    model = build_model(name, shape[0], 7).eval()
    Decoupling(model, 7)
    randomise_gates(model)
    with torch.no_grad():  # non-trivial batch-norm statistics, to check the folding
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    x = torch.rand(5, *shape)
    with torch.no_grad():
        dense = model(x)
    gates = torch.cat(list(last_gates(model).values()), 1)
    assert 0.2 < float(gates.mean()) < 0.8
    net = SparseNet(model, x[:1])
    for i in range(len(x)):
        assert torch.allclose(net(x[i : i + 1]), dense[i : i + 1], atol=1e-4)
    with pytest.raises(PellucidError, match="one image"):
        net(x)
    with torch.no_grad():  # every gate closed in a layer: still well-defined
        next(iter(gated_layers(model).values())).controller.bias2.fill_(-100.0)
        assert torch.allclose(SparseNet(model, x[:1])(x[:1]), model(x[:1]), atol=1e-4)
        list(gated_layers(model).values())[-1].controller.bias2.fill_(100.0)  # all open
        assert torch.allclose(SparseNet(model, x[:1])(x[:1]), model(x[:1]), atol=1e-4)


def test_sparse_execution_leaves_its_input_alone_and_checks_it():
    model = build_model("resnet8", 1, 3).eval()
    Decoupling(model, 3)
    randomise_gates(model)
    x = torch.rand(1, 1, 12, 12, requires_grad=True)
    keep = x.detach().clone()
    net = SparseNet(model, x.detach())
    with torch.no_grad():
        want = model(keep)
    for given in (x, x.detach().double(), x.detach()[..., ::1]):
        assert torch.allclose(net(given), want, atol=1e-4)
    assert torch.equal(x.detach(), keep)  # the identity shortcuts add in place, not into x
    with pytest.raises(PellucidError, match="channels"):
        net(torch.rand(1, 3, 12, 12))


def test_flops_of_a_two_layer_net_match_a_hand_count():
    model = build_model("convnet", 1, 2, widths=[4, 6]).eval()
    Decoupling(model, 2)
    (conv,) = gated_layers(model).values()
    with torch.no_grad():
        conv.controller.bias2.copy_(torch.tensor([1.0, -1, 1, -1, 1, 1]))  # 4 of 6 filters on
        model(torch.rand(2, 1, 8, 8))
    net = SparseNet(model, torch.rand(1, 1, 8, 8))
    # conv 1->4 on 8x8; controller: GAP of 4 maps 4x4, FC 4->1, FC 1->6; conv 4->4 of 6 on
    # 4x4; classifier 4->2
    hand = 4 * 1 * 9 * 64 + (4 * 16 + 4 * 1 + 1 * 6) + 4 * 4 * 9 * 16 + 4 * 2
    assert net.flops(last_gates(model)).tolist() == [hand, hand]
    assert net.dense_flops() == 4 * 1 * 9 * 64 + 6 * 4 * 9 * 16 + 6 * 2


def test_flops_of_a_three_layer_net_count_skipped_input_channels():
    model = build_model("convnet", 1, 2, widths=[4, 6, 5]).eval()
    Decoupling(model, 2)
    ctrl2, ctrl3 = (c.controller for c in gated_layers(model).values())
    with torch.no_grad():
        ctrl2.bias2.copy_(torch.tensor([1.0, -1, 1, -1, 1, 1]))  # 4 of 6 filters on
        ctrl3.bias2.copy_(torch.tensor([1.0, 1, -1, -1, -1]))  # 2 of 5 on
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        model(x)
    net = SparseNet(model, x[:1])
    # conv 1->4 on 8x8 | ctrl2: GAP 4x4x4, FC 4->1, 1->6 | conv 4 active in -> 4 of 6 on 4x4
    # ctrl3: GAP of the 4 active 2x2 maps, FC 4->1, 1->5 | conv 4 in -> 2 of 5 on 2x2 | fc 2->2
    hand = (4 * 1 * 9 * 64) + (4 * 16 + 4 * 1 + 1 * 6) + (4 * 4 * 9 * 16)
    hand += (4 * 4 + 4 * 1 + 1 * 5) + (2 * 4 * 9 * 4) + 2 * 2
    dense = 4 * 1 * 9 * 64 + 6 * 4 * 9 * 16 + 5 * 6 * 9 * 4 + 5 * 2
    assert net.dense_flops() == dense
    assert net.flops(last_gates(model)).tolist() == [hand] * 3
