"""The same results on CUDA as on the CPU, where the two devices meet (skipped without a GPU:
the CI machines have none, so these run on a user's or a GPU runner's machine)."""

from __future__ import annotations

import pytest
import torch

from explain_nets import FAST
from pellucid.data import load_dataset
from pellucid.models import build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _net(classes: int = 8) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("convnet", 3, classes, widths=[4, 4, 4, 4]).eval()


def test_receptive_fields_and_part_metrics_of_a_model_on_cuda():
    from pellucid.metrics.parts import part_metrics, receptive_field

    cpu = _net()
    gpu = _net().cuda()
    a, b = receptive_field(cpu, "layer4", 3, (32, 32)), receptive_field(gpu, "layer4", 3, (32, 32))
    assert (a.start, a.jump, a.size) == (b.start, b.jump, b.size)
    data = load_dataset("shapes32", "test", n=64)
    on_cpu, on_gpu = part_metrics(cpu, "layer4", data), part_metrics(gpu, "layer4", data)
    assert "part_metrics_note" not in on_gpu, on_gpu.get("part_metrics_note")
    for key in ("location_instability", "part_interpretability"):
        assert on_gpu[key] == pytest.approx(on_cpu[key], abs=1e-3)


@pytest.mark.parametrize("name", ["neuromask", "gradcam", "occlusion", "saliency", "random"])
def test_explainers_give_cuda_maps_close_to_the_cpu_ones(name):
    from pellucid.explain import build_explainer

    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    cpu = build_explainer(name, _net(), **FAST.get(name, {})).explain(x, torch.arange(4))
    gpu = build_explainer(name, _net().cuda(), **FAST.get(name, {}))
    maps = gpu.explain(x.cuda(), torch.arange(4).cuda())
    assert maps.device.type == "cuda" and maps.shape == cpu.shape
    # float rounding differs between the devices (and grows through NeuroMask's optimisation)
    assert float((maps.cpu() - cpu).abs().mean()) < 0.02


def test_scores_summarised_with_labels_on_cuda():
    from pellucid.explain.scoring import summarise

    scores = {"pointing_game": torch.tensor([1.0, 0.0, 1.0, 1.0]), "deletion_auc": torch.ones(4)}
    labels = torch.tensor([0, 0, 1, 1])
    assert summarise(scores, labels.cuda()) == summarise(scores, labels)


def test_class_similarity_of_paths_on_cuda():
    from pellucid.metrics.paths import class_similarity

    paths = torch.rand(12, 20, generator=torch.Generator().manual_seed(0)) > 0.5
    labels = torch.arange(12) % 3
    cpu = class_similarity(paths, labels, 3)
    assert torch.allclose(class_similarity(paths.cuda(), labels.cuda(), 3).cpu(), cpu)


def test_adversarial_detection_of_a_model_on_cuda():
    pytest.importorskip("torchattacks")
    from pellucid.apps.adversarial import detect_adversarial
    from pellucid.data.base import DatasetInfo, PellucidDataset

    net = _net(2).cuda()
    images = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        labels = net(images.cuda()).argmax(1).cpu()  # every image correctly classified
    info = DatasetInfo("noise", 2, 3, (32, 32), ("a", "b"), (0.5,) * 3, (0.3,) * 3)
    data = PellucidDataset(info, images, labels)
    result = detect_adversarial(
        net, data, data, attacks=("pgd",), n=None, prototype_images=64, folds=2,
        adaptive=("prototype",), adaptive_options={"steps": 3},
    )  # fmt: skip
    assert (
        result.n == 64
        and [a.attack for a in result.attacks] == ["pgd"] + ["adaptive-prototype"] * 2
    )
