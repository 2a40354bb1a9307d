"""Comparing class-score outputs: probabilities, agreement, accuracy and output error."""

from __future__ import annotations

import numpy as np

from quant_core.inputs.models import OutputKind

_EPS = 1e-7


def detect_output_kind(raw: np.ndarray) -> OutputKind:
    """Probabilities if rows are in [0, 1] and sum to 1; sigmoid for one unit; else logits."""
    if raw.shape[-1] == 1:
        return OutputKind.SIGMOID
    if raw.size and raw.min() >= -1e-4 and raw.max() <= 1 + 1e-4 and np.allclose(raw.sum(-1), 1.0, atol=2e-2):
        return OutputKind.PROBABILITIES
    return OutputKind.LOGITS


def to_probabilities(raw: np.ndarray, kind: OutputKind) -> np.ndarray:
    """Class probabilities [N, classes] from raw outputs of the given kind."""
    raw = raw.reshape(len(raw), -1).astype(np.float64)
    if kind is OutputKind.SIGMOID:
        p = np.clip(raw[:, :1], 0.0, 1.0)
        return np.concatenate([1.0 - p, p], axis=1)
    if kind is OutputKind.LOGITS:
        shifted = raw - raw.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)
    return np.clip(raw, 0.0, None)


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of rows whose arg-max matches."""
    return float(np.mean(a.argmax(1) == b.argmax(1))) if len(a) else float("nan")


def accuracy(probs: np.ndarray, labels: list[int]) -> float:
    """Top-1 accuracy against integer labels."""
    return float(np.mean(probs.argmax(1) == np.asarray(labels))) if labels else float("nan")


def topk_accuracy(probs: np.ndarray, labels: list[int] | np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores (ties broken by class order)."""
    if not len(labels):
        return float("nan")
    return float(np.mean(np.any(top_classes(probs, k) == np.asarray(labels)[:, None], axis=1)))


def top_classes(probs: np.ndarray, k: int) -> np.ndarray:
    """The k highest-scoring classes per row, best first (ties broken by class order).

    A class scored exactly 0 is never among them (-1 in its place): an int8 softmax rounds
    most classes to 0, and the order among those says nothing.
    """
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return np.where(np.take_along_axis(probs, order, axis=1) > 0, order, -1)


def topk_agreement(probs: np.ndarray, ref: np.ndarray, k: int) -> float:
    """Fraction of rows where the reference's top-1 class is among this output's top k.

    Top-5 agreement is top-5 accuracy with the float model's predictions as labels:
    1.0 means no image lost the float model's answer from its top five.
    """
    return topk_accuracy(probs, ref.argmax(1), k) if len(probs) else float("nan")


def mean_abs_diff(p: np.ndarray, ref: np.ndarray) -> float:
    """Mean over images of the largest |Δp| across classes."""
    return float(np.mean(max_abs_diffs(p, ref))) if len(p) else float("nan")


def max_abs_diffs(p: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per image, the largest |Δp| across classes."""
    return np.abs(p - ref).max(axis=1)


def kl_divergence(p: np.ndarray, ref: np.ndarray) -> float:
    """Mean KL(ref || p) in nats."""
    return float(np.mean(kl_divergences(p, ref))) if len(p) else float("nan")


def kl_divergences(p: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per image, KL(ref || p) in nats."""
    p = np.clip(p, _EPS, 1.0)
    r = np.clip(ref, _EPS, 1.0)
    return np.sum(r * (np.log(r) - np.log(p)), axis=1)


def collapse_reason(probs: np.ndarray, ref: np.ndarray) -> str | None:
    """Why a variant's outputs are unusable (NaN, or the same for every image), else None."""
    if not np.all(np.isfinite(probs)):
        return "outputs contain NaN or infinity"
    if len(probs) >= 2 and np.ptp(ref, axis=0).max() > 1e-3 and np.ptp(probs, axis=0).max() < 1e-6:
        return "outputs collapsed: the same scores for every image"
    return None
