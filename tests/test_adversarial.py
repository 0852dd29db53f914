"""Adversarial attacks and detection (pellucid.apps.attacks / .adversarial,
``pellucid detect-adversarial``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from adversarial_helpers import bars, trained_net
from pellucid.apps.adversarial import (
    detect_adversarial,
    feature_vectors,
    prototype_scores,
    supervised_auc,
)
from pellucid.apps.attacks import attack
from pellucid.data.base import PellucidDataset
from pellucid.errors import ConfigError, DataError, PellucidError


def test_a_missing_torchattacks_says_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchattacks", None)  # import raises ImportError
    with pytest.raises(PellucidError, match="pip install --no-deps torchattacks==3.5.1"):
        attack(nn.Linear(4, 2), torch.rand(2, 1, 2, 2), torch.tensor([0, 1]), "fgsm")


@pytest.fixture(scope="module")
def bars_and_net():
    data = bars()
    return data, trained_net(data)


# -- attacks --------------------------------------------------------------------------------
def test_fgsm_stays_in_the_eps_ball_and_in_pixel_range(bars_and_net):
    data, net = bars_and_net
    adv = attack(net, data.images[:16], data.labels[:16], "fgsm", eps=0.05)
    assert adv.shape == (16, 1, 12, 12)
    assert float((adv - data.images[:16]).abs().max()) <= 0.05 + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert not torch.equal(adv, data.images[:16])


def test_pgd_lowers_accuracy_is_seeded_and_leaves_the_model_and_global_rng_alone(bars_and_net):
    data, net = bars_and_net
    net.train()
    net.conv.eval()  # a mixed state must come back exactly
    net.head.weight.requires_grad_(False)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = attack(net, data.images, data.labels, "pgd", eps=0.3, alpha=0.05, steps=10, seed=1)
    assert torch.equal(torch.rand(3), expected_next)  # the global RNG was not consumed
    b = attack(net, data.images, data.labels, "pgd", eps=0.3, alpha=0.05, steps=10, seed=1)
    assert torch.equal(a, b)
    assert net.training and not net.conv.training and net.relu.training
    assert not net.head.weight.requires_grad and net.conv.weight.requires_grad
    net.eval()
    net.head.weight.requires_grad_(True)
    with torch.no_grad():
        clean = (net(data.images).argmax(1) == data.labels).float().mean()
        attacked = (net(a).argmax(1) == data.labels).float().mean()
    assert attacked < clean - 0.3


def test_cw_binary_search_finds_smaller_or_new_successful_perturbations(bars_and_net):
    data, net = bars_and_net
    x, y = data.images[:24], data.labels[:24]
    opts = {"c": 1.0, "steps": 30, "lr": 0.05}
    plain = attack(net, x, y, "cw", **opts)
    searched = attack(net, x, y, "cw", search_steps=4, **opts)
    with torch.no_grad():
        hit_plain = net(plain).argmax(1) != y
        hit_search = net(searched).argmax(1) != y
    l2_plain = (plain - x).flatten(1).norm(dim=1)
    l2_search = (searched - x).flatten(1).norm(dim=1)
    assert 0 < hit_plain.sum() < 24  # c = 1 is too weak for some images ...
    assert hit_search.sum() > hit_plain.sum()  # ... which larger constants then fool
    assert bool(hit_search[hit_plain].all())  # the first step is the plain attack
    assert bool((l2_search[hit_plain] <= l2_plain[hit_plain] + 1e-6).all())
    assert torch.equal(searched[~hit_search], x[~hit_search])  # no success: the clean image
    with pytest.raises(ConfigError, match="search_steps must be an integer >= 0"):
        attack(net, x, y, "cw", search_steps=-1)
    # the same search under its own name, so that one run can hold both C&W variants
    named = attack(net, x, y, "cw-search", search_steps=4, **opts)
    assert torch.equal(named, searched)
    with pytest.raises(ConfigError, match="'cw-search': search_steps must be an integer >= 1"):
        attack(net, x, y, "cw-search", search_steps=0)


def test_bad_attack_input_is_named(bars_and_net):
    data, net = bars_and_net
    x, y = data.images[:4], data.labels[:4]
    with pytest.raises(DataError, match="NaN"):
        attack(net, torch.full_like(x, float("nan")), y, "fgsm")
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        attack(net, x * 255, y, "fgsm")
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        attack(net, x[0], y, "fgsm")
    with pytest.raises(DataError, match="out of range for a 2-class model"):
        attack(net, x, torch.tensor([0, 1, 2, 0]), "fgsm")
    with pytest.raises(DataError, match="labels must have shape"):
        attack(net, x, y[:3], "fgsm")
    with pytest.raises(PellucidError, match="unknown attack 'pdg'.*did you mean 'pgd'"):
        attack(net, x, y, "pdg")
    with pytest.raises(ConfigError, match="eps must be a number > 0"):
        attack(net, x, y, "fgsm", eps=-0.1)
    with pytest.raises(ConfigError, match="steps must be an integer"):
        attack(net, x, y, "pgd", steps=0)
    with pytest.raises(ConfigError, match="has no option 'epsilon'; options: eps"):
        attack(net, x, y, "fgsm", epsilon=0.1)
    # an int label is every image's; float64 images go in as the model's float32
    expected = attack(net, x, torch.zeros(4, dtype=torch.long), "fgsm", eps=0.1)
    assert torch.equal(attack(net, x, 0, "fgsm", eps=0.1), expected)
    double = attack(net, x.double(), [0, 0, 0, 0], "fgsm", eps=0.1)
    assert double.dtype == torch.float32 and torch.allclose(double, expected)


# -- features and detectors ---------------------------------------------------------------
def test_gate_groups_average_each_class_filter_group(bars_and_net):
    data, net = bars_and_net
    gates = torch.tensor([[1.0, 1, 0, 0, 0, 0], [0, 0, 0, 0.5, 1, 1]])  # (C=2, K=6)
    pred, feats = feature_vectors(
        net, data.images[:5], ["activations", "gate-groups", "logits"], ["conv"], gates
    )
    with torch.no_grad():
        act = net.conv(data.images[:5]).mean(dim=(2, 3))
        logits = net(data.images[:5])
    assert torch.allclose(feats["activations"], act, atol=1e-6)
    assert torch.allclose(feats["gate-groups"][:, 0], act[:, :2].mean(1), atol=1e-6)
    expected = (0.5 * act[:, 3] + act[:, 4] + act[:, 5]) / 2.5
    assert torch.allclose(feats["gate-groups"][:, 1], expected, atol=1e-6)
    assert torch.allclose(feats["logits"], logits, atol=1e-6)
    assert torch.equal(pred, logits.argmax(1))


def test_path_features_are_the_decoupled_gates():
    from pellucid.methods.decoupling import gated_layers, insert_controllers, last_gates
    from pellucid.models import build_model

    model = build_model("convnet", in_channels=1, num_classes=3, widths=[4, 8])
    insert_controllers(model, init_bias=0.0)
    torch.manual_seed(1)
    for conv in gated_layers(model).values():  # some gates shut, some open
        nn.init.normal_(conv.controller.weight2)
    images = torch.rand(6, 1, 12, 12)
    _, feats = feature_vectors(model, images, ["path"])
    model.eval()
    with torch.no_grad():
        model(images)
    expected = torch.cat([g.float() for g in last_gates(model).values()], 1)
    assert torch.equal(feats["path"], expected)
    assert 0 < float(expected.mean()) < 1
    plain = build_model("convnet", in_channels=1, num_classes=3, widths=[4, 8])
    with pytest.raises(ConfigError, match="needs a decoupled model"):
        feature_vectors(plain, images, ["path"])


def test_feature_errors_are_named(bars_and_net):
    data, net = bars_and_net
    x = data.images[:3]
    with pytest.raises(ConfigError, match="unknown feature kind 'paths'"):
        feature_vectors(net, x, ["paths"])
    with pytest.raises(ConfigError, match="needs the gate matrix"):
        feature_vectors(net, x, ["gate-groups"], ["conv"])
    with pytest.raises(ConfigError, match="need a layer name"):
        feature_vectors(net, x, ["activations"])
    with pytest.raises(ConfigError, match="does not match the layer's 6 channels"):
        feature_vectors(net, x, ["gate-groups"], ["conv"], torch.ones(2, 5))
    with pytest.raises(PellucidError, match="nope"):
        feature_vectors(net, x, ["activations"], ["nope"])


def test_supervised_auc_separates_separable_features_and_keeps_pairs_together():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(40, 3))
    assert supervised_auc(clean, clean + [4.0, 0, 0], "logistic") > 0.99
    assert supervised_auc(clean, clean + [4.0, 0, 0], "forest") > 0.99
    # an image and its attacked version with identical features: if a pair were split
    # between folds, two different models would score the two copies and break the ties
    for detector in ("logistic", "forest"):
        assert supervised_auc(clean, clean.copy(), detector) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="unknown detector"):
        supervised_auc(clean, clean, "svm")
    with pytest.raises(DataError, match="NaN"):
        supervised_auc(clean, np.full_like(clean, np.nan))
    with pytest.raises(ConfigError, match="folds"):
        supervised_auc(clean[:3], clean[:3], folds=5)


def test_prototype_score_is_the_cosine_distance_to_the_predicted_class():
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    feats = torch.tensor([[2.0, 0.0], [2.0, 0.0], [1.0, 1.0]])
    scores = prototype_scores(protos, feats, torch.tensor([0, 1, 2]))
    assert scores.tolist() == pytest.approx([0.0, 1.0, 1.0])  # no prototype: distance 1


def test_detection_end_to_end_on_a_small_model(bars_and_net):
    data, net = bars_and_net
    res = detect_adversarial(
        net,
        data,
        train_data=bars(seed=1),
        attacks={"pgd": {"eps": 0.4, "alpha": 0.05, "steps": 10}},
        features=["activations", "logits"],
        layers=["conv"],
        n=None,
        folds=3,
    )
    assert res.n == 64 and res.clean_accuracy > 0.95
    assert res.features == {"activations": 6, "logits": 2}
    (report,) = res.attacks
    assert report.attack == "pgd" and report.options["eps"] == 0.4
    assert 0 < report.success_rate <= 1 and report.pairs >= 10
    assert 0 < report.linf <= 0.4 + 1e-6
    for feature in ("activations", "logits"):
        for detector in ("logistic", "forest", "prototype", "mahalanobis", "lid"):
            assert 0 <= report.auc[feature][detector] <= 1
    rows = res.table()
    assert len(rows) == 2 and {r["feature"] for r in rows} == {"activations", "logits"}
    json.dumps(res.to_dict())  # serialisable as it is


def test_detection_scores_the_chosen_detectors_only_and_the_one_an_attack_targets(
    bars_and_net,
):
    data, net = bars_and_net
    kw = dict(attacks={"pgd": {"eps": 0.4, "alpha": 0.05, "steps": 10}}, features=["logits"])
    kw |= dict(n=None, folds=3)
    full = detect_adversarial(net, data, bars(seed=1), **kw).attacks[0].auc["logits"]
    some = detect_adversarial(net, data, bars(seed=1), **kw, detectors=["lid", "logistic"])
    assert some.attacks[0].auc["logits"] == {"logistic": full["logistic"], "lid": full["lid"]}
    assert list(some.attacks[0].auc["logits"]) == ["logistic", "lid"]  # the usual order
    supervised = detect_adversarial(net, data, bars(seed=1), **kw, detectors="logistic")
    assert supervised.lid_k == 0 and supervised.prototype_images == 0  # nothing fitted
    adaptive = detect_adversarial(
        net, data, bars(seed=1), **kw, detectors=["logistic"], adaptive=["prototype"],
        adaptive_options={"steps": 2},
    )  # fmt: skip
    oblivious, targeted = adaptive.attacks
    assert set(oblivious.auc["logits"]) == {"logistic"}
    assert targeted.attack == "adaptive-prototype"
    assert set(targeted.auc["logits"]) == {"logistic", "prototype"}
    for bad, message in (
        ({"detectors": ["svm"]}, "unknown detector 'svm'; choose from: logistic, forest"),
        ({"detectors": []}, "detectors: none given"),
        ({"detectors": ["forest"], "two_sided": True}, "none of them is in detectors"),
    ):
        with pytest.raises(ConfigError, match=message):
            detect_adversarial(net, data, bars(seed=1), **kw, **bad)


def test_prototypes_cover_classes_no_training_image_has():
    data = bars()
    net = trained_net(data, classes=3)  # class 2 never occurs: no prototype, distance 1
    with torch.no_grad():  # class 2 sits between the two: where every attack lands first
        net.head.weight[2] = (net.head.weight[0] + net.head.weight[1]) / 2
        net.head.bias[2] = 5.0
    res = detect_adversarial(net, data, bars(seed=1), ["pgd"], ["logits"], n=None, folds=2)
    assert res.clean_accuracy > 0.95 and res.attacks[0].pairs >= 10
    assert res.attacks[0].auc["logits"]["prototype"] > 0.5
    assert res.attacks[0].auc["logits"]["mahalanobis"] is not None  # empty classes left out
    assert res.attacks[0].auc["logits"]["lid"] is not None and res.lid_k == 20


def test_mahalanobis_score_is_the_distance_to_the_closest_class_under_a_shared_covariance():
    from pellucid.apps.detectors import fit_mahalanobis, mahalanobis_scores

    gen = torch.Generator().manual_seed(0)
    # two classes, elongated along x: a step along x is cheap, along y expensive
    noise = torch.randn(400, 2, generator=gen) * torch.tensor([3.0, 0.3])
    labels = torch.arange(400) % 2
    feats = noise + torch.tensor([[0.0, 0.0], [10.0, 0.0]])[labels]
    fitted = fit_mahalanobis(feats, labels, classes=3)  # class 2: no image, never closest
    means, precision, present = fitted
    assert present.tolist() == [True, True, False]
    assert torch.allclose(means[1].float(), torch.tensor([10.0, 0.0]), atol=0.5)
    probe = torch.tensor([[3.0, 0.0], [0.0, 1.0], [10.0, 0.0], [11.0, 0.0]])
    s = mahalanobis_scores(fitted, probe)
    assert s[0] < s[1]  # 3 along the long axis is nearer than 1 along the short one
    assert s[2] < s[3] and s[2] < 0.05  # at a class mean: ~0, whichever class it is
    with pytest.raises(DataError, match="at least 2"):
        fit_mahalanobis(feats[:1], labels[:1], 2)


def test_detection_defaults_to_the_last_conv_layer_and_takes_one_attack_name(bars_and_net):
    data, net = bars_and_net
    res = detect_adversarial(net, data, attacks="fgsm", n=40, folds=2)
    assert res.layers == ["conv"] and res.features == {"activations": 6, "logits": 2}
    assert [a.attack for a in res.attacks] == ["fgsm"]
    with pytest.warns(UserWarning, match="has 64 images: all 64 are attacked, not the 500"):
        detect_adversarial(net, data, attacks="fgsm", features=["logits"], folds=2)


def test_detection_rejects_bad_setups(bars_and_net):
    data, net = bars_and_net
    with pytest.raises(ConfigError, match="unknown attack"):
        detect_adversarial(net, data, attacks=["deepfool"], layers=["conv"])
    with pytest.raises(ConfigError, match="folds"):
        detect_adversarial(net, data, attacks=["fgsm"], layers=["conv"], folds=1)
    with pytest.raises(ConfigError, match="n must be >= 1"):
        detect_adversarial(net, data, attacks=["fgsm"], layers=["conv"], n=0)
    untrained = nn.Sequential(nn.Flatten(), nn.Linear(144, 2))
    nn.init.zeros_(untrained[1].weight)
    with torch.no_grad():
        untrained[1].bias.copy_(torch.tensor([5.0, 0.0]))  # always class 0
    few = PellucidDataset(data.info, data.images[:20], torch.ones(20, dtype=torch.long))
    with pytest.raises(DataError, match="only 0 of 20 images are classified correctly"):
        detect_adversarial(untrained, few, attacks=["fgsm"], features=["logits"])
    # an attack's options are checked before the images (they were hidden behind this)
    with pytest.raises(ConfigError, match="eps must be a number > 0"):
        detect_adversarial(untrained, few, attacks={"fgsm": {"eps": -1}}, features=["logits"])


# -- CLI ------------------------------------------------------------------------------------
def test_detect_adversarial_cli_writes_results(capsys, tmp_path):
    from conftest import train_tiny_run
    from pellucid.cli.main import main

    run = train_tiny_run(tmp_path / "run", epochs=3)
    out = tmp_path / "adv.json"
    argv = ["detect-adversarial", str(run), "--attack", "fgsm", "--n", "96", "--folds", "2"]
    code = main([*argv, "--attack-option", "fgsm.eps=0.3", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "| fgsm |" in printed.out and "| activations |" in printed.out
    short = ["detect-adversarial", str(run), "--attack", "fgsm", "--features", "logits"]
    assert main([*short, "--folds", "2", "--quiet", "--n", "5000"]) == 0
    assert "warning: detect_adversarial: the data has" in capsys.readouterr().err
    assert main([*short, "--folds", "2", "--quiet"]) == 0
    assert "asked for" not in capsys.readouterr().err  # the default 500 is "at most"
    saved = json.loads(out.read_text())[str(run)]
    assert saved["attacks"][0]["options"] == {"eps": 0.3}
    assert set(saved["features"]) == {"activations", "logits"}
    # 12 correct test images, 9 of them attacked successfully: too few pairs for an AUC
    assert "| 0.750 | 9 | activations | - | - |" in printed.out
    assert "- : no AUC: fewer than 10 pairs" in printed.out
    adaptive = ["--adaptive", "lid", "--adaptive-option", "steps=4", "--two-sided"]
    assert main([*argv, *adaptive, "--adaptive-option", "aim=median", "--json", "--quiet"]) == 0
    rows = json.loads(capsys.readouterr().out)[str(run)]
    attacked = {(r["attack"], r["feature"]) for r in rows}
    assert ("adaptive-lid", "activations") in attacked and ("adaptive-lid", "logits") in attacked
    assert all(0 <= r["lid-two-sided"] <= 1 for r in rows if r["pairs"] >= 10)
    assert main([*argv, *adaptive, "--adaptive-option", "aim=high"]) == 1
    assert "unknown aim 'high'; choose from: low, median" in capsys.readouterr().err
    assert main([*argv, "--detectors", "lid", "logistic", "--adaptive", "prototype",
                 "--adaptive-option", "steps=2"]) == 0  # fmt: skip
    head = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| run"))
    assert head.endswith("| feature | logistic | prototype | lid |")
    assert main([*argv, "--adaptive", "logistic"]) == 1  # 12 correct images: too few to fit
    assert "successful 'fgsm' attacks to fit the detector on" in capsys.readouterr().err

    for bad, message in (
        (["--attack-option", "eps=0.1"], "expects ATTACK.KEY=VALUE"),
        (["--attack-option", "pgd.eps=0.1"], "attack 'pgd' is not run"),
    ):
        assert main([*argv, *bad]) == 1
        assert message in capsys.readouterr().err


def test_lid_is_the_maximum_likelihood_estimate_of_ma_et_al():
    from pellucid.apps.detectors import lid_scores

    # neighbours at distances 1, 2, 4: -(mean(log(1/4), log(2/4), log(4/4)))^-1 = 1 / log 2
    ref = torch.tensor([[1.0, 0.0], [0.0, -2.0], [4.0, 0.0], [100.0, 0.0]])
    s = lid_scores(ref, torch.zeros(1, 2), k=3)
    assert s.item() == pytest.approx(1 / math.log(2), rel=1e-6)
    # on a 2-D plane in 10-D: about 2 in the plane, far higher just off it
    gen = torch.Generator().manual_seed(0)
    plane = torch.zeros(4000, 10)
    plane[:, :2] = torch.rand(4000, 2, generator=gen)
    probe = torch.zeros(40, 10)
    probe[:, :2] = 0.25 + 0.5 * torch.rand(40, 2, generator=gen)
    off = probe.clone()
    off[:, 5] = 0.2
    inside, outside = lid_scores(plane, probe), lid_scores(plane, off)
    assert 1.3 < inside.median() < 3.0
    assert outside.min() > 3 * inside.max()


def test_lid_degenerate_neighbourhoods_and_bad_input():
    from pellucid.apps.detectors import lid_scores

    ref = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    s = lid_scores(ref, torch.tensor([[0.0, 0.0], [0.0, 0.0]]), k=2)  # two duplicates: 0
    assert s.tolist() == [0.0, 0.0]
    s = lid_scores(ref[:3], torch.zeros(1, 2), k=3)  # three equidistant: the finite cap
    assert torch.isfinite(s).all() and s.item() >= 1e11
    with pytest.raises(ConfigError, match="k must lie in"):
        lid_scores(ref, torch.zeros(1, 2), k=6)
    with pytest.raises(DataError, match="same D"):
        lid_scores(ref, torch.zeros(1, 3), k=2)
    with pytest.raises(DataError, match="NaN"):
        lid_scores(ref, torch.tensor([[float("nan"), 0.0]]), k=2)


def test_two_sided_scores_rank_both_tails_of_the_clean_scores():
    from pellucid.apps.detectors import two_sided_scores

    ref = torch.arange(100.0)  # clean scores 0..99, median 49.5
    s = two_sided_scores(ref, torch.tensor([49.5, 30.0, 70.0, 0.0, 99.0, -10.0, 120.0, 200.0]))
    s = s.tolist()
    assert s[0] == pytest.approx(0.0)
    assert s[1] == pytest.approx(s[2], abs=0.011)  # as far into either tail
    assert s[0] < s[1] < s[3] < s[5]  # lower scores: further from the median, then past it
    assert s[0] < s[2] < s[4] < s[6] < s[7]
    assert s[5] == pytest.approx(0.5 + 10 / 99) and s[3] == pytest.approx(0.495)
    # a one-sided detector ranks an overshoot as the cleanest; the two-sided one catches it
    from pellucid.apps.detectors import roc_auc

    clean, low = ref[::2], torch.full((20,), -5.0)
    assert roc_auc(clean, low) == 0.0
    assert roc_auc(two_sided_scores(ref, clean), two_sided_scores(ref, low)) == 1.0
    with pytest.raises(DataError, match="at least 2"):
        two_sided_scores(ref[:1], ref)
    with pytest.raises(DataError, match="NaN"):
        two_sided_scores(ref, torch.tensor([float("nan")]))
    with pytest.raises(DataError, match="must be 1-D"):
        two_sided_scores(ref[:, None], ref)


def test_lid_exclude_self_is_the_leave_one_out_estimate():
    from pellucid.apps.detectors import lid_scores

    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(30, 4, generator=gen)
    ref[7] = ref[3]  # a duplicate still counts as a neighbour (at distance 0)
    loo = lid_scores(ref, ref, k=5, chunk=8, exclude_self=True)  # chunks: indices shift
    for i in (0, 3, 11, 29):
        rest = torch.cat([ref[:i], ref[i + 1 :]])
        assert loo[i] == pytest.approx(float(lid_scores(rest, ref[i : i + 1], k=5)), rel=1e-5)
    assert loo[3] == 0 or loo[3] > 0  # finite, with the duplicate at distance 0
    with pytest.raises(ConfigError, match=r"k must lie in \[2, 29\]"):
        lid_scores(ref, ref, k=30, exclude_self=True)
    with pytest.raises(DataError, match="exclude_self needs the reference itself"):
        lid_scores(ref, ref[:5], k=3, exclude_self=True)
