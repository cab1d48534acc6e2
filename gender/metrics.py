"""Measuring a model: curves, thresholds and confusion matrices, from scores or stored curves."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

CURVE_POINTS = 200  # ROC and PR curves are thinned to about this many points for the metadata


def _thin(*columns: np.ndarray) -> list[list[float]]:
    keep = np.unique(np.linspace(0, len(columns[0]) - 1, min(len(columns[0]), CURVE_POINTS)).astype(int))
    return [np.round(np.asarray(column, dtype=float)[keep], 5).tolist() for column in columns]


def curves(y: np.ndarray, p: np.ndarray) -> dict:
    """ROC (with thresholds, from which any confusion matrix follows) and PR curve points."""
    fpr, tpr, thresholds = roc_curve(y, p)
    thresholds = np.minimum(thresholds, 1.0)  # the first is +inf: "nobody is male"
    precision, recall, _ = precision_recall_curve(y, p)
    roc_fpr, roc_tpr, roc_thresholds = _thin(fpr, tpr, thresholds)
    pr_precision, pr_recall = _thin(precision, recall)
    return {
        "roc": {"fpr": roc_fpr, "tpr": roc_tpr, "threshold": roc_thresholds},
        "pr": {"precision": pr_precision, "recall": pr_recall},
    }


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The cut on P(male) that maximises balanced accuracy (= maximises TPR - FPR)."""
    fpr, tpr, thresholds = roc_curve(y, p)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def confusion_at(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """The confusion matrix and rates of the scores `p` cut at `threshold`."""
    tn, fp, fn, tp = confusion_matrix(y, (p >= threshold).astype(int), labels=[0, 1]).ravel()
    return rates(tn, fp, fn, tp)


def confusion_from_roc(roc: dict, threshold: float, positives: int, negatives: int) -> dict:
    """The confusion matrix at a threshold, read off stored ROC points (the nearest at or above it)."""
    index = roc_index(roc, threshold)
    tp = round(roc["tpr"][index] * positives)
    fp = round(roc["fpr"][index] * negatives)
    return rates(tn=negatives - fp, fp=fp, fn=positives - tp, tp=tp) | {"threshold": roc["threshold"][index]}


def roc_index(roc: dict, threshold: float) -> int:
    """The stored ROC point for a threshold: the last one whose threshold is at or above it."""
    at_or_above = np.flatnonzero(np.asarray(roc["threshold"]) >= threshold)
    return int(at_or_above[-1]) if len(at_or_above) else 0


def rates(tn: int, fp: int, fn: int, tp: int) -> dict:
    """The counts with precision, recall, specificity and balanced accuracy."""
    recall, specificity = tp / max(tp + fn, 1), tn / max(tn + fp, 1)
    return {
        "tn": int(tn),
        "fp": int(fp),
        "fn": int(fn),
        "tp": int(tp),
        "precision": round(tp / max(tp + fp, 1), 5),
        "recall": round(recall, 5),
        "specificity": round(specificity, 5),
        "balanced_accuracy": round((recall + specificity) / 2, 5),
    }


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def platt(y: np.ndarray, p: np.ndarray) -> dict:
    """An affine map of the log-odds that makes out-of-fold P(male) honest (Platt scaling).

    Being affine in log-odds, it keeps the ranking (ROC-AUC) and keeps SHAP exact: the base
    value and every contribution are simply scaled.
    """
    fit = LogisticRegression(C=1e6).fit(logit(p)[:, None], y)
    return {"slope": round(float(fit.coef_[0, 0]), 6), "intercept": round(float(fit.intercept_[0]), 6)}


def calibrated(p: np.ndarray, calibration: dict | None) -> np.ndarray:
    """P(male) after Platt scaling (unchanged when there is no calibration)."""
    if not calibration:
        return np.asarray(p, dtype=float)
    return 1 / (1 + np.exp(-(calibration["slope"] * logit(p) + calibration["intercept"])))
