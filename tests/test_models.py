import pytest
import torch
from safetensors.torch import save_file

from pellucid.errors import PellucidError
from pellucid.hooks import capture, count_hooks
from pellucid.models import build_model, default_layer, get_layer, layer_table


@pytest.mark.parametrize("name", ["convnet", "resnet8", "resnet20", "vgg"])
@pytest.mark.parametrize("channels,classes", [(1, 10), (3, 6), (5, 2)])
def test_our_models_any_channels_and_classes(name, channels, classes):
    model = build_model(name, channels, classes).eval()
    out = model(torch.rand(2, channels, 32, 32))
    assert out.shape == (2, classes)
    assert default_layer(model) in dict(model.named_modules())


def test_staged_net_split_equals_full_forward():
    model = build_model("resnet8", 3, 4).eval()
    x = torch.rand(3, 3, 32, 32)
    h = model.forward_to(x, "layer2")
    assert torch.allclose(model.forward_from(h, "layer2"), model(x), atol=1e-6)
    logits, feats = model.forward_features(x, ["layer3"])
    assert feats["layer3"].shape == (3, 64, 8, 8) and torch.allclose(logits, model(x))


def test_staged_net_needs_a_conv_stage_before_pool():
    from collections import OrderedDict

    from torch import nn

    from pellucid.models.base import GlobalPool, StagedNet

    def stages(last: nn.Module) -> OrderedDict:
        return OrderedDict(last=last, pool=GlobalPool(), fc=nn.Linear(3, 2))

    with pytest.raises(ValueError, match=r"convolutional stage .* \['last', 'pool', 'fc'\]"):
        StagedNet(stages(nn.ReLU()), 3, 2)
    net = StagedNet(stages(nn.Sequential(nn.Conv2d(3, 3, 3), nn.ReLU())), 3, 2)
    assert net.default_layer == "last"
    assert isinstance(get_layer(net, default_layer(net))[0], nn.Conv2d)


def test_normalisation_is_the_first_layer():
    model = build_model("convnet", 1, 10, mean=[0.5], std=[0.25]).eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(model.norm(x), (x - 0.5) / 0.25)


def test_torchvision_model_by_name_and_local_weights(tmp_path):
    model = build_model("tv:resnet18", 1, 3).eval()
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 3)
    assert default_layer(model) == "net.layer4"
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(path))
    again = build_model("tv:resnet18", 1, 3, weights=str(path)).eval()
    x = torch.rand(1, 1, 32, 32)
    assert torch.allclose(again(x), model(x), atol=1e-5)


def test_unknown_model_and_layer_errors():
    with pytest.raises(PellucidError, match="unknown model"):
        build_model("resnet1000")
    with pytest.raises(PellucidError, match="unknown torchvision model"):
        build_model("tv:nonexistent")
    model = build_model("resnet8", 3, 10)
    with pytest.raises(PellucidError, match="no layer 'layer9'"):
        get_layer(model, "layer9")


def test_layer_table_lists_shapes_and_removes_hooks():
    model = build_model("resnet8", 1, 10)
    rows = {n: s for n, _, s in layer_table(model, (1, 28, 28))}
    assert rows["layer3"] == (64, 7, 7) and rows["fc"] == (10,)
    assert count_hooks(model) == 0 and model.training


def test_capture_removes_hooks_after_exception():
    model = build_model("convnet", 3, 10)
    with pytest.raises(RuntimeError):
        with capture(model, ["layer2"]) as acts:
            model(torch.rand(1, 3, 32, 32))
            assert acts["layer2"].shape[1] == 64
            raise RuntimeError("boom")
    assert count_hooks(model) == 0
