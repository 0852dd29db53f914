"""Adaptive attacks on the detectors (pellucid.apps.adaptive, the adaptive reports of
``detect_adversarial`` in pellucid.apps.adversarial_adaptive)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adversarial_helpers import bars, trained_net
from pellucid.apps.adversarial import detect_adversarial, feature_vectors, prototype_scores
from pellucid.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def bars_and_net():
    data = bars()
    return data, trained_net(data)


def test_differentiable_detector_scores_equal_the_detectors():
    from pellucid.apps.adaptive import detector_score
    from pellucid.apps.detectors import (
        class_prototypes,
        fit_mahalanobis,
        lid_scores,
        mahalanobis_scores,
        prototype_scores,
    )

    gen = torch.Generator().manual_seed(0)
    feats, labels = torch.randn(200, 5, generator=gen), torch.arange(200) % 3
    probe, pred = torch.randn(20, 5, generator=gen), torch.arange(20) % 3
    protos = class_prototypes(feats, labels, 3)
    got = detector_score("prototype", protos)(probe, pred)
    assert torch.allclose(got, prototype_scores(protos, probe, pred), atol=1e-5)
    gauss = fit_mahalanobis(feats, labels, 3)
    got = detector_score("mahalanobis", gauss)(probe, pred)
    assert torch.allclose(got, mahalanobis_scores(gauss, probe), rtol=1e-4)
    got = detector_score("lid", (feats, 20))(probe, pred)
    assert torch.allclose(got, lid_scores(feats, probe, 20), rtol=1e-4)
    with pytest.raises(ConfigError, match="unknown detector 'forest'"):
        detector_score("forest", None)


def test_an_adaptive_attack_evades_the_detector_it_knows(bars_and_net):
    data, net = bars_and_net
    common = dict(
        train_data=bars(seed=1), features=["activations"], layers=["conv"], n=None, folds=3
    )
    options = {"eps": 0.3, "alpha": 0.02, "steps": 60}
    auc = {}
    for weight in (0.0, 1.0):  # 0: the same attack without the detector in its loss
        res = detect_adversarial(
            net, data, attacks=["fgsm"], adaptive=["mahalanobis"],
            adaptive_options={**options, "weight": weight}, two_sided=True, **common,
        )  # fmt: skip
        report = res.attacks[1]
        assert report.attack == "adaptive-mahalanobis" and report.pairs >= 10
        assert report.options["feature"] == "activations" and report.linf <= 0.3 + 1e-6
        assert report.options["aim"] == "low"
        auc[weight] = report.auc["activations"]["mahalanobis"]
        two = report.auc["activations"]["mahalanobis-two-sided"]
        assert 0 <= two <= 1 and two != auc[weight]
    assert auc[1.0] < auc[0.0] - 0.05  # knowing the detector lowers its score
    with pytest.raises(ConfigError, match="unknown option.s. stepz; choose from: eps"):
        detect_adversarial(
            net, data, attacks=["fgsm"], adaptive=["lid"], adaptive_options={"stepz": 3}, **common
        )
    with pytest.raises(ConfigError, match=r"adaptive options \(eps\) given, but no detector"):
        detect_adversarial(net, data, attacks=["fgsm"], adaptive_options={"eps": 5}, **common)
    with pytest.raises(ConfigError, match="two-sided scores need train_data"):
        detect_adversarial(net, data, None, ["fgsm"], ["logits"], n=None, two_sided=True)
    with pytest.raises(ConfigError, match="unknown detector 'svm'; choose from: .*forest"):
        detect_adversarial(net, data, attacks=["fgsm"], adaptive=["svm"], **common)
    with pytest.raises(ConfigError, match="need train_data"):
        detect_adversarial(net, data, None, ["fgsm"], ["logits"], n=None, adaptive=["lid"])


def test_an_adaptive_attack_with_an_aim_lands_its_score_there():
    from pellucid.apps.adaptive import adaptive_pgd

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(2, 16))
        net[1].bias.zero_()
    x = torch.rand(40, 1, 4, 4)
    y = net(x).argmax(1)

    def score(f, pred):  # a toy detector: the logits' norm
        return f.norm(dim=1)

    with torch.no_grad():
        base = score(net(x), y)
    mu, sd = float(base.mean()), float(base.std())
    got = {}
    for aim in (None, 0.0, 1.0):
        adv, hit = adaptive_pgd(
            net, x, y, "logits", score, (mu, sd), eps=0.5, alpha=0.02, steps=60, aim=aim
        )
        assert hit.all()
        with torch.no_grad():
            got[aim] = (score(net(adv), y) - mu) / sd
    assert got[None].max() < -1.0  # lowest possible: below the clean mean, an overshoot
    assert abs(float(got[0.0].median())) < 0.1  # aimed at the clean mean: lands there
    assert abs(float(got[1.0].median()) - 1.0) < 0.1
    with pytest.raises(ConfigError, match="aim must be a finite"):
        adaptive_pgd(net, x, y, "logits", score, (mu, sd), aim=float("nan"))
    # a judge (not differentiated) chooses the kept iterate: one that wants the norm *high*
    adv, hit = adaptive_pgd(
        net, x, y, "logits", score, (mu, sd), eps=0.5, alpha=0.02, steps=60,
        judge=lambda f, pred: -score(f, pred).detach(),
    )  # fmt: skip
    with torch.no_grad():
        judged = (score(net(adv), y) - mu) / sd
    assert hit.all() and float(judged.median()) > float(got[None].median()) + 1.0
    # with an aim, the loss follows the aim and the judge still picks the kept iterate
    adv, hit = adaptive_pgd(
        net, x, y, "logits", score, (mu, sd), eps=0.5, alpha=0.02, steps=60, aim=0.0,
        judge=lambda f, pred: -score(f, pred).detach(),
    )  # fmt: skip
    with torch.no_grad():
        aimed = (score(net(adv), y) - mu) / sd
    assert hit.all() and float(aimed.median()) > float(got[0.0].median()) + 0.03


def test_an_adaptive_attack_on_the_path_follows_the_soft_gates():
    from pellucid.apps.adaptive import adaptive_pgd, detector_score
    from pellucid.apps.detectors import class_prototypes
    from pellucid.methods.decoupling import gated_layers, insert_controllers
    from pellucid.models import build_model

    torch.manual_seed(0)
    model = build_model("convnet", in_channels=1, num_classes=2, widths=[8, 16])
    insert_controllers(model, init_bias=0.0)
    gen = torch.Generator().manual_seed(1)
    controllers = [conv.controller for conv in gated_layers(model).values()]
    with torch.no_grad():
        for c in controllers:  # gates that depend on the input
            c.weight2.copy_(torch.randn(c.weight2.shape, generator=gen) * 3)
    model.eval()

    def images(n: int) -> torch.Tensor:
        level = torch.rand(n, 1, 1, 1, generator=gen)
        return (level * 0.7 + torch.rand(n, 1, 12, 12, generator=gen) * 0.3).clamp(0, 1)

    train, test = images(300), images(60)
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        head.bias -= model(train).median(0).values  # both classes predicted
    tpred, tfeat = feature_vectors(model, train, ["path"])
    assert len(set(map(tuple, tfeat["path"].tolist()))) > 1  # paths differ between images
    protos = class_prototypes(tfeat["path"], tpred, 2)
    base = prototype_scores(protos, tfeat["path"], tpred)
    score = detector_score("prototype", protos)
    labels = feature_vectors(model, test, ["logits"])[0]
    for c in controllers:
        c.detach_input = True  # as trained with detach_features: restored after the attack
    mean_score = {}
    for weight in (0.0, 1.0):
        adv, hit = adaptive_pgd(
            model, test, labels, "path", score, (float(base.mean()), float(base.std())),
            eps=0.5, alpha=0.03, steps=40, weight=weight, temperature=0.3,
        )  # fmt: skip
        assert hit.float().mean() > 0.8
        apred, afeat = feature_vectors(model, adv[hit], ["path"])
        mean_score[weight] = float(prototype_scores(protos, afeat["path"], apred).mean())
    assert mean_score[1.0] < 0.8 * mean_score[0.0]  # the hard path's score, lowered
    assert all(c.detach_input for c in controllers)
    with pytest.raises(ConfigError, match="temperature must be a number > 0"):
        adaptive_pgd(model, test, labels, "path", score, (0.0, 1.0), temperature=0)
    plain = build_model("convnet", in_channels=1, num_classes=2, widths=[8, 16])
    with pytest.raises(ConfigError, match="needs a decoupled model"):
        adaptive_pgd(plain, test, labels, "path", score, (0.0, 1.0))


def test_an_adaptive_attack_evades_the_fitted_logistic_and_forest_detectors(bars_and_net):
    data, net = bars_and_net
    common = dict(features=["activations"], layers=["conv"], n=None, folds=3)
    common |= dict(detectors=["logistic"])  # and the adaptive attack's target
    options = {"eps": 0.3, "alpha": 0.02, "steps": 60}
    fixed = {"logistic": {}, "forest": {}}
    for weight in (0.0, 1.0):
        res = detect_adversarial(
            net, data, attacks=["fgsm"], adaptive=["logistic", "forest"],
            adaptive_options={**options, "weight": weight}, **common,
        )  # fmt: skip
        for report, det in zip(res.attacks[1:], ("logistic", "forest"), strict=True):
            assert report.attack == f"adaptive-{det}" and report.options["trained_on"] == "fgsm"
            assert report.attacked == res.attacks[0].attacked // 2  # the half not fitted on
            fixed[det][weight] = report.auc["activations"][f"{det}-attacked"]
            assert report.auc["activations"][det] is not None  # retrained on these attacks
        # the forest has no gradient: attacked through the logistic regression, judged by itself
        assert res.attacks[2].options["surrogate"] == "logistic"
    for det, auc in fixed.items():
        assert auc[0.0] > 0.8 and auc[1.0] < auc[0.0] - 0.2, det
    res = detect_adversarial(
        net, data, attacks=["fgsm"], adaptive=["forest"],
        adaptive_options={**options, "surrogate": "votes"}, **common,
    )  # fmt: skip
    assert res.attacks[1].options["surrogate"] == "votes"  # a network fitted to its votes
    assert res.attacks[1].auc["activations"]["forest-attacked"] < fixed["forest"][0.0] - 0.2
    for adaptive, message in (
        (["logistic"], "surrogate is for the forest"),
        (["forest"], "unknown surrogate 'svm'; choose from: logistic"),
    ):
        with pytest.raises(ConfigError, match=message):
            surrogate = {"surrogate": "svm" if adaptive == ["forest"] else "votes"}
            detect_adversarial(
                net, data, attacks=["fgsm"], adaptive=adaptive, adaptive_options=surrogate,
                **common,
            )  # fmt: skip
    with pytest.raises(DataError, match="only 0 successful 'fgsm' attacks"):
        detect_adversarial(
            net, data, attacks={"fgsm": {"eps": 1e-6}}, adaptive=["logistic"], **common
        )


def test_forest_surrogate_follows_the_forest_votes_and_has_a_gradient():
    from scipy.stats import spearmanr

    from pellucid.apps.detectors import forest_score, forest_surrogate

    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(60, 5, generator=gen)
    adversarial = clean + torch.tensor([1.5, -1.0, 0.0, 0.0, 0.0])  # attacks move two features
    forest = forest_score(clean, adversarial, seed=0)
    torch.manual_seed(7)
    expected_next = torch.rand(1)
    torch.manual_seed(7)
    score = forest_surrogate(forest, clean, adversarial, seed=0, steps=200)
    assert torch.equal(torch.rand(1), expected_next)  # the global RNG was not consumed
    probe = torch.cat([clean, adversarial, 0.5 * (clean + adversarial)]).requires_grad_(True)
    s = score(probe, torch.zeros(len(probe), dtype=torch.long))
    votes = forest(probe, torch.zeros(len(probe), dtype=torch.long))
    assert spearmanr(s.detach().numpy(), votes.numpy()).statistic > 0.8
    (grad,) = torch.autograd.grad(s.sum(), probe)
    assert grad[:, :2].abs().mean() > 2 * grad[:, 2:].abs().mean()  # where the forest looks
    assert grad[:, 0].mean() > 0 > grad[:, 1].mean()  # towards the attacks: more suspicious
    again = forest_surrogate(forest, clean, adversarial, seed=0, steps=200)
    assert torch.equal(again(probe, None), s)  # seeded
    with pytest.raises(DataError, match=r"paired \(N, D\) features, got \(60, 5\) and \(59, 5\)"):
        forest_surrogate(forest, clean, adversarial[1:])
    with pytest.raises(ConfigError, match="points must be an integer >= 1, got 0"):
        forest_surrogate(forest, clean, adversarial, points=0)
