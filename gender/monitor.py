"""Monitoring the served models from the prediction log: volume, drift, and accuracy per A/B group.

The statistics are the textbook ones, chosen so that a reader can check them by hand: ROC-AUC
with the Hanley & McNeil (1982) standard error, balanced accuracy with the binomial standard
errors of its two rates, 95 % intervals as ±1.96 SE, a two-sided z-test for the difference
between groups, and the population stability index over the deciles of the training scores.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

Z95 = 1.959964


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `actual` against `expected`, over the quantiles of `expected`.

    Empty bins count as 0.01 % so that the logarithm stays finite.
    """
    expected, actual = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.clip(np.histogram(expected, edges)[0] / len(expected), 1e-4, None)
    a = np.clip(np.histogram(actual, edges)[0] / len(actual), 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_verdict(value: float) -> str:
    """The usual reading of a PSI, in words."""
    if value < 0.1:
        return "stable: the P(male) served looks like it did at training"
    if value < 0.25:
        return "a moderate shift: worth watching"
    return "a major shift: the sessions served differ from those trained on; consider retraining"


def auc_with_ci(y: np.ndarray, p: np.ndarray) -> dict:
    """ROC-AUC with the Hanley & McNeil standard error and a 95 % interval (None with one class)."""
    y = np.asarray(y, dtype=int)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if not positives or not negatives:
        return {"value": None, "se": None, "low": None, "high": None}
    a = float(roc_auc_score(y, p))
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (positives * negatives)
    se = math.sqrt(max(variance, 0.0))
    return {"value": a, "se": se, "low": max(0.0, a - Z95 * se), "high": min(1.0, a + Z95 * se)}


def balanced_accuracy_with_ci(y: np.ndarray, called_male: np.ndarray) -> dict:
    """Balanced accuracy (mean of the true positive and true negative rates) with a 95 % interval."""
    y, called_male = np.asarray(y, dtype=bool), np.asarray(called_male, dtype=bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return {"value": None, "se": None, "low": None, "high": None}
    tpr, tnr = (called_male & y).sum() / positives, (~called_male & ~y).sum() / negatives
    value = float((tpr + tnr) / 2)
    se = 0.5 * math.sqrt(tpr * (1 - tpr) / positives + tnr * (1 - tnr) / negatives)
    return {"value": value, "se": se, "low": max(0.0, value - Z95 * se), "high": min(1.0, value + Z95 * se)}


def difference(first: dict, second: dict) -> dict:
    """first − second with a two-sided z-test (independent groups); None where a side is missing."""
    if first["value"] is None or second["value"] is None:
        return {"difference": None, "z": None, "p_value": None, "significant": None}
    diff = first["value"] - second["value"]
    se = math.sqrt(first["se"] ** 2 + second["se"] ** 2)
    z = diff / se if se > 0 else 0.0
    p_value = math.erfc(abs(z) / math.sqrt(2))
    return {"difference": diff, "z": z, "p_value": p_value, "significant": p_value < 0.05}


def group_metrics(log: pd.DataFrame) -> dict:
    """Per A/B group: predictions served, how many have a known gender, ROC-AUC and balanced accuracy."""
    metrics = {}
    for group, rows in log.groupby("ab_group"):
        known = rows[rows["gender"].notna()]
        y = (known["gender"] == "male").to_numpy()
        metrics[group] = {
            "served": len(rows),
            "known": len(known),
            "male": int(y.sum()),
            "models": sorted(rows["model_id"].unique()),
            "auc": auc_with_ci(y, known["p_male"].to_numpy()),
            "balanced_accuracy": balanced_accuracy_with_ci(y, (known["prediction"] == "male").to_numpy()),
        }
    return metrics


def daily_counts(log: pd.DataFrame) -> pd.DataFrame:
    """Predictions served per day and group: date, ab_group, predictions."""
    days = pd.to_datetime(log["served_at"]).dt.floor("D")
    return log.assign(date=days).groupby(["date", "ab_group"]).size().reset_index(name="predictions")
