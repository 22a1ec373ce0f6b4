"""The six learning-rate schedules and the classification metrics against closed forms / hand counts."""

import math

import numpy as np
import pytest

from ms_ptuning import metrics
from ms_ptuning.training.schedules import lr_factor_fn

WARMUP, TOTAL = 10, 110


@pytest.mark.parametrize("name, at_100, after_warmup_mid", [
    ("linear", 10 / 100, 0.5),
    ("cosine", 0.5 * (1 + math.cos(math.pi * 0.9)), 0.5),
    ("cosine_with_restarts", 0.5 * (1 + math.cos(math.pi * ((2 * 0.9) % 1.0))), 1.0),
    ("polynomial", (1e-3 - 1e-7) * 10 / 100 / 1e-3 + 1e-7 / 1e-3, 0.5 + 0.5e-4),
    ("constant_with_warmup", 1.0, 1.0),
])
def test_warmup_then_decay(name, at_100, after_warmup_mid):
    factor = lr_factor_fn(name, WARMUP, TOTAL, 1e-3, **({"num_cycles": 2} if name == "cosine_with_restarts" else {}))
    assert factor(0) == 0.0 and factor(5) == pytest.approx(0.5)
    assert factor(WARMUP) == pytest.approx(1.0)
    assert factor(100) == pytest.approx(at_100, rel=1e-6)
    assert factor(60) == pytest.approx(after_warmup_mid, rel=1e-3)


def test_constant_and_unknown():
    assert lr_factor_fn("constant", WARMUP, TOTAL, 1e-3)(0) == 1.0
    with pytest.raises(ValueError, match="unknown lr_scheduler_type 'step'"):
        lr_factor_fn("step", WARMUP, TOTAL, 1e-3)


def test_classification_metrics_by_hand():
    predicted = np.array([1, 0, 1, 1, 0, 1])
    labels = np.array([1, 0, 0, 1, 1, 1])
    # tp=3 fp=1 fn=1 tn=1
    assert metrics.accuracy(predicted, labels) == pytest.approx(4 / 6)
    assert metrics.f1_binary(predicted, labels) == pytest.approx(2 * 3 / (4 + 4))
    assert metrics.matthews_corrcoef(predicted, labels) == pytest.approx((3 * 1 - 1 * 1) / math.sqrt(4 * 4 * 2 * 2))
    assert metrics.f1_macro(predicted, labels) == pytest.approx((0.75 + 0.5) / 2)


def test_regression_and_multilabel_metrics():
    values = np.array([[0.1], [0.4], [0.35], [0.8]])
    labels = np.array([0.0, 0.3, 0.5, 1.0])
    result = metrics.classification_metrics(values, labels, "regression")
    assert result["pearson"] == pytest.approx(np.corrcoef(values[:, 0], labels)[0, 1])
    assert result["spearmanr"] == pytest.approx(1 - 6 * 2 / (4 * 15))  # ranks 1,3,2,4 vs 1,2,3,4
    multi = metrics.classification_metrics(np.array([[1.0, -1.0], [2.0, 3.0]]), np.array([[1, 0], [1, 0]]),
                                           "multi_label_classification")
    assert multi == {"exact_match": 0.5, "f1_micro": pytest.approx(2 * 2 / (3 + 2))}
