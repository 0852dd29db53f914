"""Scores apart for correctly classified and misclassified images, and the images on which two
explainers' pointing hits differ (``benchmarks/explainers.py --pointing``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

from pellucid.errors import DataError
from pellucid.explain.scoring import summarise, summarise_by_prediction

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
pointing = importlib.import_module("explainers_pointing")  # benchmarks/explainers_pointing.py


def test_summarise_by_prediction_splits_the_images_and_averages_pointing_per_class():
    labels = torch.tensor([0, 0, 1, 1, 1])
    predicted = torch.tensor([0, 1, 1, 0, 1])  # images 1 and 3 misclassified
    scores = {
        "pointing_game": torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0]),
        "deletion_auc": torch.tensor([0.1, 0.5, 0.2, 0.4, 0.3]),
    }
    out = summarise_by_prediction(scores, labels, predicted)
    assert out["correct"]["n"] == 3 and out["misclassified"]["n"] == 2
    # correct: class 0 -> [1], class 1 -> [1, 0]; class-averaged (1 + 0.5) / 2
    assert out["correct"]["pointing_game"] == pytest.approx(0.75)
    assert out["correct"]["pointing_hits"] == 2
    assert out["correct"]["deletion_auc"] == pytest.approx(0.2)
    # misclassified: class 0 -> [0], class 1 -> [1]
    assert out["misclassified"]["pointing_game"] == pytest.approx(0.5)
    assert out["misclassified"]["pointing_hits"] == 1
    assert out["misclassified"]["deletion_auc"] == pytest.approx(0.45)
    # the parts are the whole: with every image correct the first part is summarise itself
    whole = summarise_by_prediction(scores, labels, labels)
    assert whole["misclassified"] == {"n": 0}
    assert {k: v for k, v in whole["correct"].items() if k not in ("n", "pointing_hits")} == (
        summarise(scores, labels)
    )


def test_summarise_by_prediction_names_a_shape_mismatch():
    labels = torch.tensor([0, 1, 1])
    with pytest.raises(DataError, match="labels and predicted"):
        summarise_by_prediction({}, labels, torch.tensor([0, 1]))
    with pytest.raises(DataError, match="'deletion_auc'"):
        summarise_by_prediction({"deletion_auc": torch.zeros(4)}, labels, labels)


def test_disagreements_are_the_images_where_exactly_one_explainer_hits():
    a = torch.tensor([1, 1, 0, 0, 1, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool)
    correct = torch.tensor([1, 1, 1, 1, 0, 0], dtype=torch.bool)
    out = pointing.disagreements(a, b, correct)
    assert out["only_a"] == {"correct": [1], "misclassified": [4]}
    assert out["only_b"] == {"correct": [2], "misclassified": [5]}
    # same hits: nothing to tell them apart
    same = pointing.disagreements(a, a, correct)
    assert same == {
        "only_a": {"correct": [], "misclassified": []},
        "only_b": {"correct": [], "misclassified": []},
    }
    with pytest.raises(ValueError, match="must be"):
        pointing.disagreements(a, b[:3], correct)
