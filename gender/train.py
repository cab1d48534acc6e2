"""Training: compare candidate models by cross-validated ROC-AUC, pick one, fit it, save it.

The candidates include a faithful re-creation of the original project (a balanced random
forest of 100 trees on its 1-3-gram word features) so that every run measures the new models
against it. Only a model SHAP explains exactly and fast may be chosen: the original's forest of
unlimited depth is neither, so it competes as the baseline and serves as the A/B control.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sqlalchemy import Engine

from gender import artifact, db
from gender.config import redact
from gender.errors import GenderError
from gender.features import FEATURE_VERSION, OriginalFeatures, SessionFeatures, session_frame
from gender.metrics import best_threshold, calibrated, confusion_at, curves, platt
from gender.model import BoostedLogistic

FOLDS = 5
SEED = 0
MIN_PER_CLASS = FOLDS  # stratified k-fold needs k sessions of each gender
LIBRARIES = ("scikit-learn", "lightgbm", "shap", "pandas", "numpy", "scipy", "sqlalchemy", "joblib")

Progress = Callable[[float, str], None]


def original_pipeline() -> Pipeline:
    return Pipeline(
        [
            ("features", OriginalFeatures()),
            ("model", RandomForestClassifier(n_estimators=100, class_weight="balanced", n_jobs=-1, random_state=SEED)),
        ]
    )


def logistic_pipeline() -> Pipeline:
    return Pipeline([("features", SessionFeatures(min_df=1)), ("model", BoostedLogistic(n_estimators=0))])


def boosted_pipeline() -> Pipeline:
    return Pipeline([("features", SessionFeatures(min_df=1)), ("model", BoostedLogistic())])


@dataclass(frozen=True)
class Candidate:
    name: str
    label: str
    make: Callable[[], Pipeline]
    explainable: bool  # SHAP explains it exactly in milliseconds


CANDIDATES = (
    Candidate("original", "Original re-creation: random forest on 1-3-gram category words", original_pipeline, False),
    Candidate("logistic", "Logistic regression on session features", logistic_pipeline, True),
    Candidate("boosted", "Logistic regression corrected by LightGBM, on session features", boosted_pipeline, True),
)
CONTROL = "original"


def labelled_data(engine: Engine) -> tuple[pd.DataFrame, np.ndarray]:
    """The labelled sessions as a session frame and y (1 = male)."""
    sessions, views = db.read_sessions(engine, "labelled")
    frame = session_frame(sessions, views)
    y = (sessions.set_index("session_id")["gender"].reindex(frame.index) == "male").to_numpy(dtype=int)
    return frame, y


def fingerprint(frame: pd.DataFrame, y: np.ndarray) -> str:
    """A sha256 of exactly what was trained on: ids, times, views and labels."""
    hashed = pd.util.hash_pandas_object(frame.assign(male=y), index=True).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def cross_validate(candidate: Candidate, frame: pd.DataFrame, y: np.ndarray, report: Callable[[str], None]):
    """Per-fold ROC-AUC and out-of-fold P(male) of one candidate."""
    oof = np.zeros(len(y))
    aucs = []
    splits = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED).split(frame, y)
    for fold, (fit_rows, held_rows) in enumerate(splits, start=1):
        pipeline = candidate.make().fit(frame.iloc[fit_rows], y[fit_rows])
        oof[held_rows] = pipeline.predict_proba(frame.iloc[held_rows])[:, 1]
        aucs.append(roc_auc_score(y[held_rows], oof[held_rows]))
        report(f"{candidate.name}: fold {fold}/{FOLDS} ROC-AUC {aucs[-1]:.4f}")
    return np.array(aucs), oof


def train(engine: Engine, model_dir: Path, progress: Progress | None = None, candidates=CANDIDATES) -> dict:
    """Cross-validate the candidates, fit the best explainable one and the control, save both."""
    started = time.perf_counter()
    steps = len(candidates) * FOLDS + 2
    done = 0

    def report(message: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(min(done / steps, 1.0), message)

    frame, y = labelled_data(engine)
    males = int(y.sum())
    if min(males, len(y) - males) < MIN_PER_CLASS:
        raise GenderError(
            f"need at least {MIN_PER_CLASS} labelled sessions of each gender to train; "
            f"{redact(engine.url)} has {males} male and {len(y) - males} female"
        )
    if progress:
        progress(0.0, f"training on {len(y):,} labelled sessions ({males:,} male)")

    results, oof_of = {}, {}
    for candidate in candidates:
        fold_started = time.perf_counter()
        aucs, oof = cross_validate(candidate, frame, y, report)
        # Log-odds models get Platt scaling from their out-of-fold scores, so the P(male) they
        # serve reads against the base rate; the original's forest stays as it was.
        calibration = platt(y, oof) if candidate.explainable else None
        oof = oof_of[candidate.name] = calibrated(oof, calibration)
        results[candidate.name] = {
            "label": candidate.label,
            "explainable": candidate.explainable,
            "calibration": calibration,
            "auc_mean": round(float(aucs.mean()), 5),
            "auc_std": round(float(aucs.std()), 5),
            "auc_folds": np.round(aucs, 5).tolist(),
            "cv_seconds": round(time.perf_counter() - fold_started, 1),
            **curves(y, oof),
        }

    by_name = {candidate.name: candidate for candidate in candidates}
    chosen = max((c for c in candidates if c.explainable), key=lambda c: results[c.name]["auc_mean"])
    slot_candidates = {"treatment": chosen}
    if CONTROL in by_name:
        slot_candidates["control"] = by_name[CONTROL]

    pipelines, slots = {}, {}
    for slot, candidate in slot_candidates.items():
        pipelines[slot] = candidate.make().fit(frame, y)
        report(f"fitted {candidate.name} on all {len(y):,} sessions as the {slot} model")
        oof = oof_of[candidate.name]
        threshold = best_threshold(y, oof)
        slots[slot] = {
            "candidate": candidate.name,
            "label": candidate.label,
            "threshold": round(threshold, 6),
            "calibration": results[candidate.name]["calibration"],
            "confusion": confusion_at(y, oof, threshold),
            "oof_p_male": np.round(np.sort(oof), 4).tolist()[:: max(1, len(oof) // 1000)],
        }

    metadata = {
        "feature_version": FEATURE_VERSION,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": None,
        "database": redact(engine.url),
        "training": {
            "sessions": len(y),
            "male": males,
            "female": len(y) - males,
            "male_share": round(males / len(y), 5),
            "fingerprint": fingerprint(frame, y),
        },
        "cv": {"folds": FOLDS, "seed": SEED, "scoring": "roc_auc"},
        "candidates": results,
        "chosen": chosen.name,
        "slots": slots,
        "versions": {"python": platform.python_version()}
        | {name: importlib.metadata.version(name) for name in LIBRARIES},
    }
    metadata["seconds"] = round(time.perf_counter() - started, 1)
    artifact.save(model_dir, pipelines, metadata)
    artifact.record_run(model_dir, metadata, parameters(candidates))
    return metadata


def parameters(candidates) -> dict:
    """Each candidate's settings: its feature and model steps' parameters, as plain values."""

    def plain(params: dict) -> dict:
        return {
            key: value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
            for key, value in params.items()
        }

    return {
        candidate.name: {step: plain(estimator.get_params(deep=False)) for step, estimator in candidate.make().steps}
        for candidate in candidates
    }
