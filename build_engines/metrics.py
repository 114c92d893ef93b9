"""Quality metrics: classification summaries, calibration, threshold sweeps and entity-level span F1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from wire.bio import Span

__all__ = [
    "binary_at_threshold",
    "classification_summary",
    "expected_calibration_error",
    "span_scores",
    "threshold_sweep",
]


def expected_calibration_error(probs: NDArray[Any], y_true: NDArray[Any], bins: int = 15) -> float:
    """ECE of the top-1 confidence over equal-width bins."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def classification_summary(probs: NDArray[Any], y_true: NDArray[Any], labels: Sequence[str]) -> dict[str, Any]:
    y_pred = probs.argmax(axis=1)
    index = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=index, zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": float((y_pred == y_true).mean()),
        "macro_f1": float(f1_score(y_true, y_pred, labels=index, average="macro", zero_division=0)),
        "ece": expected_calibration_error(probs, y_true),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=index).tolist(),
    }


def binary_at_threshold(scores: NDArray[Any], y_true: NDArray[Any], threshold: float) -> dict[str, float]:
    """Precision/recall/F1 of the positive class and the false-positive rate on negatives at `threshold`."""
    pred = scores >= threshold
    tp = int((pred & (y_true == 1)).sum())
    fp = int((pred & (y_true == 0)).sum())
    fn = int((~pred & (y_true == 1)).sum())
    negatives = int((y_true == 0).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": threshold,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": fp / negatives if negatives else 0.0,
    }


def threshold_sweep(
    scores: NDArray[Any], y_true: NDArray[Any], thresholds: Iterable[float] | None = None
) -> list[dict[str, float]]:
    grid = thresholds if thresholds is not None else [round(t, 2) for t in np.arange(0.05, 1.0, 0.05)]
    return [binary_at_threshold(scores, y_true, t) for t in grid]


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}


def span_scores(
    gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]], types: Sequence[str] | None = None
) -> dict[str, Any]:
    """Entity-level scores: a prediction counts when type, start and end match exactly (after trimming spaces
    and trailing punctuation, which detectors attach differently). Also reports a lenient overlap match."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    overlap_tp = 0
    for g_row, p_row in zip(gold, predicted, strict=True):
        g_set = {s for s in g_row if types is None or s.entity_type in types}
        p_set = {s for s in p_row if types is None or s.entity_type in types}
        for s in g_set & p_set:
            tp[s.entity_type] += 1
        for s in p_set - g_set:
            fp[s.entity_type] += 1
        for s in g_set - p_set:
            fn[s.entity_type] += 1
        overlap_tp += sum(
            1
            for g in g_set
            if any(p.entity_type == g.entity_type and p.start < g.end and p.end > g.start for p in p_set)
        )
    all_types = sorted(set(tp) | set(fp) | set(fn))
    n_gold = sum(tp.values()) + sum(fn.values())
    n_pred = sum(tp.values()) + sum(fp.values())
    return {
        "micro": _prf(sum(tp.values()), sum(fp.values()), sum(fn.values())),
        "per_type": {t: _prf(tp[t], fp[t], fn[t]) for t in all_types},
        "overlap_recall": overlap_tp / n_gold if n_gold else 0.0,
        "n_gold": n_gold,
        "n_predicted": n_pred,
    }
