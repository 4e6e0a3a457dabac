"""Classification and detection metrics in plain numpy (no scikit-learn at run time)."""

from __future__ import annotations

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n_classes = n_classes or int(max(y_true.max(initial=0), y_pred.max(initial=0)) + 1)
    f1s = []
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fp + fn == 0:
            continue  # class absent from both: not counted
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else float("nan")


def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) formula, ties averaged."""
    y_true = np.asarray(y_true).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(y_true.sum()), int((~y_true).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else float("nan")


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    y_pred = np.argmax(probs, axis=1)
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred, probs.shape[1]), "n": int(len(y_true))}


def stress_metrics(y_true: np.ndarray, p_stress: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    y_true = np.asarray(y_true).astype(int)
    return {
        "auroc": auroc(y_true, p_stress),
        "balanced_accuracy": balanced_accuracy(y_true, (np.asarray(p_stress) >= threshold).astype(int)),
        "n": int(len(y_true)),
    }


def beat_detection_scores(reference: np.ndarray, detected: np.ndarray, tolerance: int) -> dict[str, float]:
    """Sensitivity and positive predictivity of detected beats against reference sample indices.

    Each reference beat matches at most one detection within ``tolerance`` samples (greedy, in time order).
    """
    reference = np.sort(np.asarray(reference))
    detected = np.sort(np.asarray(detected))
    used = np.zeros(len(detected), dtype=bool)
    tp = 0
    j0 = 0
    for r in reference:
        while j0 < len(detected) and detected[j0] < r - tolerance:
            j0 += 1
        j = j0
        while j < len(detected) and detected[j] <= r + tolerance:
            if not used[j]:
                used[j] = True
                tp += 1
                break
            j += 1
    fn = len(reference) - tp
    fp = len(detected) - tp
    return {
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "positive_predictivity": tp / (tp + fp) if tp + fp else float("nan"),
        "tp": tp, "fp": fp, "fn": fn,
    }
