"""Output interpretation and error figures."""

from __future__ import annotations

import numpy as np
import pytest

from quant_core import metrics
from quant_core.inputs.models import OutputKind


def test_output_kinds_are_detected():
    assert metrics.detect_output_kind(np.array([[0.2, 0.8], [0.5, 0.5]])) is OutputKind.PROBABILITIES
    assert metrics.detect_output_kind(np.array([[2.0, -1.0], [0.1, 3.0]])) is OutputKind.LOGITS
    assert metrics.detect_output_kind(np.array([[0.9], [0.1]])) is OutputKind.SIGMOID


def test_sigmoid_head_is_a_binary_classifier():
    probs = metrics.to_probabilities(np.array([[0.9], [0.25]]), OutputKind.SIGMOID)
    np.testing.assert_allclose(probs, [[0.1, 0.9], [0.75, 0.25]])


def test_logits_get_a_stable_softmax():
    probs = metrics.to_probabilities(np.array([[1000.0, 0.0], [0.0, 0.0]]), OutputKind.LOGITS)
    np.testing.assert_allclose(probs, [[1.0, 0.0], [0.5, 0.5]], atol=1e-12)


def test_agreement_accuracy_and_errors():
    ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    var = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    assert metrics.top1_agreement(var, ref) == pytest.approx(2 / 3)
    assert metrics.accuracy(var, [0, 1, 1]) == 1.0
    assert metrics.mean_abs_diff(var, ref) == pytest.approx((0.1 + 0.1 + 0.2) / 3)
    assert metrics.kl_divergence(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert metrics.kl_divergence(var, ref) > 0


def test_top5_accuracy_and_agreement_count_the_true_or_float_class_among_the_top_five():
    probs = np.array([[0.1, 0.5, 0.2, 0.15, 0.05, 0.0, 0.0],  # top five: 1, 2, 3, 0, 4
                      [0.6, 0.1, 0.1, 0.1, 0.05, 0.05, 0.0]])  # top five: 0, 1, 2, 3, 4 (ties by class order)
    assert metrics.topk_accuracy(probs, [6, 1], 5) == 0.5
    assert metrics.topk_accuracy(probs, [4, 0], 1) == 0.5
    assert metrics.topk_accuracy(probs, [4, 5], 5) == 0.5  # 5 ties with 4 at 0.05 and loses on class order
    reference = np.eye(7)[[0, 6]]  # the float model's top-1: classes 0 and 6
    assert metrics.topk_agreement(probs, reference, 5) == 0.5
    assert metrics.topk_agreement(probs, probs, 5) == 1.0 and metrics.topk_agreement(probs, probs, 1) == 1.0


def test_a_class_scored_zero_is_never_a_top_k_hit():
    """An int8 softmax: one class at 1.0, the rest exactly 0; the label among the zeros came 'second' by class order."""
    from quant_core import metrics

    probs = np.zeros((2, 10), dtype=np.float32)
    probs[0, 3] = 1.0
    probs[1, [3, 7]] = [0.75, 0.25]
    assert metrics.top_classes(probs, 5).tolist() == [[3, -1, -1, -1, -1], [3, 7, -1, -1, -1]]
    assert metrics.topk_accuracy(probs, [0, 7], 5) == 0.5  # class 0 scored 0 on image 0: not a hit
    assert metrics.topk_agreement(probs, probs[[1, 0]], 5) == 1.0  # the reference's top-1 (3) is there both times
