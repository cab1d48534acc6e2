"""Measuring a model: curves, thresholds, confusion matrices and calibration, as typed values
that the model card stores and the pages read."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

CURVE_POINTS = 200  # ROC and PR curves are thinned to about this many points for the model card


class Value(BaseModel):
    """A measured value: immutable, and exactly these fields (a file with others is not ours)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Roc(Value):
    fpr: list[float]
    tpr: list[float]
    threshold: list[float]  # the P(male) cut of each point, so any confusion matrix follows

    def index(self, threshold: float) -> int:
        """The stored point of a threshold: the last one whose threshold is at or above it."""
        at_or_above = np.flatnonzero(np.asarray(self.threshold) >= threshold)
        return int(at_or_above[-1]) if len(at_or_above) else 0


class PrecisionRecall(Value):
    precision: list[float]
    recall: list[float]


class Curves(Value):
    roc: Roc
    pr: PrecisionRecall


class Confusion(Value):
    tn: int
    fp: int
    fn: int
    tp: int
    precision: float
    recall: float
    specificity: float
    balanced_accuracy: float


class Calibration(Value):
    """An affine map of the log-odds that makes out-of-fold P(male) honest (Platt scaling).

    Being affine in log-odds, it keeps the ranking (ROC-AUC) and keeps SHAP exact: the base
    value and every contribution are simply scaled.
    """

    slope: float
    intercept: float

    def log_odds(self, margin):
        return self.slope * np.asarray(margin, dtype=float) + self.intercept

    def __call__(self, p) -> np.ndarray:
        """Calibrated P(male) of raw P(male)."""
        return expit(self.log_odds(logit(np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12))))


def _thin(*columns: np.ndarray) -> list[list[float]]:
    keep = np.unique(np.linspace(0, len(columns[0]) - 1, min(len(columns[0]), CURVE_POINTS)).astype(int))
    return [np.round(np.asarray(column, dtype=float)[keep], 5).tolist() for column in columns]


def curves(y: np.ndarray, p: np.ndarray) -> Curves:
    """ROC (with thresholds) and PR curve points, thinned."""
    fpr, tpr, thresholds = roc_curve(y, p)
    thresholds = np.minimum(thresholds, 1.0)  # the first is +inf: "nobody is male"
    precision, recall, _ = precision_recall_curve(y, p)
    roc_fpr, roc_tpr, roc_thresholds = _thin(fpr, tpr, thresholds)
    pr_precision, pr_recall = _thin(precision, recall)
    return Curves(
        roc=Roc(fpr=roc_fpr, tpr=roc_tpr, threshold=roc_thresholds),
        pr=PrecisionRecall(precision=pr_precision, recall=pr_recall),
    )


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The cut on P(male) that maximises balanced accuracy (= maximises TPR - FPR)."""
    fpr, tpr, thresholds = roc_curve(y, p)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def confusion_at(y: np.ndarray, p: np.ndarray, threshold: float) -> Confusion:
    """The confusion matrix and rates of the scores `p` cut at `threshold`."""
    tn, fp, fn, tp = confusion_matrix(y, (p >= threshold).astype(int), labels=[0, 1]).ravel()
    return rates(tn, fp, fn, tp)


def confusion_from_roc(roc: Roc, threshold: float, positives: int, negatives: int) -> tuple[Confusion, float]:
    """The confusion matrix at a threshold, read off stored ROC points, and the threshold of the
    point it was read at (the nearest at or above it)."""
    index = roc.index(threshold)
    tp = round(roc.tpr[index] * positives)
    fp = round(roc.fpr[index] * negatives)
    return rates(tn=negatives - fp, fp=fp, fn=positives - tp, tp=tp), roc.threshold[index]


def rates(tn: int, fp: int, fn: int, tp: int) -> Confusion:
    """The counts with precision, recall, specificity and balanced accuracy."""
    recall, specificity = tp / max(tp + fn, 1), tn / max(tn + fp, 1)
    return Confusion(
        tn=int(tn),
        fp=int(fp),
        fn=int(fn),
        tp=int(tp),
        precision=round(tp / max(tp + fp, 1), 5),
        recall=round(recall, 5),
        specificity=round(specificity, 5),
        balanced_accuracy=round((recall + specificity) / 2, 5),
    )


def platt(y: np.ndarray, p: np.ndarray) -> Calibration:
    """Platt scaling fitted on (out-of-fold or held-out) P(male) and the truth."""
    fit = LogisticRegression(C=1e6).fit(logit(np.clip(p, 1e-12, 1 - 1e-12))[:, None], y)
    return Calibration(slope=round(float(fit.coef_[0, 0]), 6), intercept=round(float(fit.intercept_[0]), 6))


def calibrated(p: np.ndarray, calibration: Calibration | None) -> np.ndarray:
    """P(male) after Platt scaling (unchanged when there is no calibration)."""
    return calibration(p) if calibration else np.asarray(p, dtype=float)
