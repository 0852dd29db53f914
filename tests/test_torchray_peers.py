"""The benchmark's TorchRay peers (``benchmarks/torchray_peers.py``): extremal perturbations
and RISE behind pellucid's explainer interface."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

from explain_nets import squares_case
from pellucid.errors import ConfigError, DataError
from pellucid.metrics import pointing_game

pytest.importorskip("torchray")  # `make` installs it (CC-BY-NC; benchmarks only)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
peers = importlib.import_module("torchray_peers")  # benchmarks/torchray_peers.py


def build_explainer(name, model, **options):
    """The peer ``name`` for ``model``, without registering it: a registered peer would run
    wherever every registered explainer runs (the demo's comparison, in another test)."""
    return peers.PEER_EXPLAINERS[name][0](model, **options)


@pytest.fixture(scope="module")
def case():
    return squares_case(3, 28, 10, 96, 6, 0.8)


def test_both_peers_give_maps_that_find_the_square(case):
    model, images, labels, masks = case
    for name, options in (
        ("extremal-perturbation", {"iterations": 20, "areas": 0.1}),
        ("rise", {"masks": 1000, "cells": 4}),  # 7 px cells at 28 px
    ):
        maps = build_explainer(name, model, **options).explain(images, labels)
        assert maps.shape == (6, 1, 28, 28) and maps.min() >= 0 and maps.max() == 1, name
        assert pointing_game(maps, masks)["accuracy"] >= 0.8, name


def test_the_target_is_honoured_and_images_do_not_share_a_batch(case):
    model, images, labels, _ = case
    rise = build_explainer("rise", model, masks=500)
    own, other = rise.explain(images, labels), rise.explain(images, (labels + 1) % 3)
    assert (own - other).abs().amax() > 0.1
    alone = rise.explain(images[2:3], labels[2:3])
    torch.testing.assert_close(alone, own[2:3])
    ep = build_explainer("extremal-perturbation", model, iterations=10, areas=0.1)
    torch.testing.assert_close(
        ep.explain(images[1:2], labels[1:2]), ep.explain(images, labels)[1:2]
    )


def test_rise_scores_masks_by_the_softmax_probability(case):
    model, images, _, _ = case
    with torch.no_grad():
        p = torch.softmax(model(images), 1)
        torch.testing.assert_close(torch.sigmoid(peers._ProbabilityLogit(model)(images)), p)


def test_the_model_is_left_as_it_was(case):
    model, images, labels, _ = case
    model.train()
    next(model.parameters()).requires_grad_(False)  # one frozen parameter stays frozen
    try:
        build_explainer("extremal-perturbation", model, iterations=3).explain(
            images[:1], labels[:1]
        )
        assert model.training
        flags = [p.requires_grad for p in model.parameters()]
        assert flags[0] is False and all(flags[1:])  # TorchRay switches them all off
    finally:
        next(model.parameters()).requires_grad_(True)
        model.eval()


def test_bad_options_and_inputs_are_named(case, monkeypatch):
    model, images, labels, _ = case
    for name, options, message in (
        ("extremal-perturbation", {"areas": 1.5}, "areas must be fractions"),
        ("extremal-perturbation", {"areas": []}, "areas must be fractions"),
        ("extremal-perturbation", {"reward": "max"}, "reward must be one of simple, contrastive"),
        ("extremal-perturbation", {"perturbation": "noise"}, "perturbation must be one of"),
        ("extremal-perturbation", {"iterations": 0}, "iterations must be an integer >= 1"),
        ("rise", {"keep": 1.0}, "keep must be a probability"),
        ("rise", {"masks": "many"}, "masks must be an integer"),
    ):
        with pytest.raises(ConfigError, match=message):
            build_explainer(name, model, **options)
    with pytest.raises(DataError, match="input channel"):
        build_explainer("rise", model, masks=10).explain(images[:, :1], labels)
    with pytest.raises(DataError, match="out of range"):
        build_explainer("rise", model, masks=10).explain(images, torch.full_like(labels, 3))
    monkeypatch.setitem(sys.modules, "torchray.attribution.rise", None)  # as if not installed
    with pytest.raises(ConfigError, match="TorchRay is not installed"):
        build_explainer("rise", model, masks=10).explain(images, labels)


def test_the_study_reports_neuromask_minus_each_mask_peer_with_an_interval():
    study = importlib.import_module("explainers_peers")  # benchmarks/explainers_peers.py
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 4
    base = {k: torch.rand(40, generator=gen) for k in study.PEER_SCORES}
    scores = {
        "neuromask": {**base, "deletion_auc": base["deletion_auc"] - 0.2},
        "extremal-perturbation": base,
        "rise": {k: v.clone() for k, v in base.items()},
    }
    iv = study.peer_intervals(scores, labels)
    assert set(iv) == set(study.PEER_SCORES)
    d = iv["deletion_auc"]["extremal-perturbation"]
    assert d["difference"] == pytest.approx(-0.2) and d["resolved"] and d["ci"][1] < 0
    assert not iv["insertion_auc"]["rise"]["resolved"]  # identical scores: no difference


def test_importing_the_peers_registers_nothing():
    from pellucid.explain import explainer_names

    assert not set(peers.PEER_EXPLAINERS) & set(explainer_names())
