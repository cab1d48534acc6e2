"""Training: compare candidate models by cross-validated ROC-AUC, pick one, fit it, save it.

The candidates include a faithful re-creation of the original project (a balanced random
forest of 100 trees on its 1-3-gram word features) so that every run measures the new models
against it. Only a model SHAP explains exactly and fast may be chosen: the original's forest of
unlimited depth is neither, so it competes as the baseline and serves as the A/B control.

Above COMPARE_SESSIONS labelled sessions, five folds of every candidate on every session would
take hours (the original's forest alone grows with the data faster than linearly), so the
candidates are compared on a stratified sample of that many. The final models are then fitted on
all the others but a held-out set, which sets their calibration and threshold (one half) and
measures them (the other half): their quality is measured, not inferred from the sample's CV.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sqlalchemy import Engine

from gender import artifact, db
from gender.card import CrossValidation, ModelCard, Training
from gender.config import redact
from gender.errors import GenderError
from gender.features import FEATURE_VERSION, OriginalFeatures, SessionFeatures, session_frame
from gender.metrics import best_threshold, calibrated, confusion_at, curves, platt
from gender.model import BoostedLogistic
from gender.trained import served_pipeline

FOLDS = 5
SEED = 0
MIN_PER_CLASS = FOLDS  # stratified k-fold needs k sessions of each gender
WORKERS = os.cpu_count() or 1  # folds and final fits side by side, one thread each
# Above this many labelled sessions the candidates are compared on a stratified sample of this
# many: the real logs (12,000) are compared on every session, as before. The comparison's 15
# fits cost minutes at this size and grow faster than linearly (the forest, the trees).
COMPARE_SESSIONS = 12_000
# Above COMPARE_SESSIONS, this share of the labelled sessions (at most HOLDOUT_MAX) is held out
# of the final fits: half sets calibration and threshold, half measures the final models.
HOLDOUT_SHARE = 0.1
HOLDOUT_MAX = 20_000
# The original's forest (100 trees grown to purity on 78,000 word columns) costs 16 s a fit on
# 9,600 real sessions on 2 cores and grows faster than linearly (one thread, fold 1: 8 s CPU at
# 4,000, 19 s at 6,000, 43 s at 9,600). Where the comparison is sampled anyway (above
# COMPARE_SESSIONS), each of its fits, in the folds and the final one, sees a stratified sample of
# at most this many sessions; on data the size of the real logs it fits on every session, so the
# baseline stays the original's. It is the baseline and the A/B control, never the chosen model.
FOREST_SESSIONS = 6_000
LIBRARIES = ("scikit-learn", "lightgbm", "shap", "pandas", "numpy", "scipy", "sqlalchemy", "joblib")

Progress = Callable[[float, str], None]


# Each pipeline's n_jobs: train() fits with 1, running folds and final fits side by side, one per
# core. The trees' leaves hold one session or a few, so a thread's share of a leaf is tiny and
# LightGBM's threads wait on each other at every leaf, spinning at length when other work shares
# the cores (a boosted fold took minutes at a load of 8 on 2 cores); one thread per fit avoids
# that. The models are the same either way (n_jobs changes no result).


def original_pipeline(n_jobs: int = -1) -> Pipeline:
    forest = RandomForestClassifier(n_estimators=100, class_weight="balanced", n_jobs=n_jobs, random_state=SEED)
    return Pipeline([("features", OriginalFeatures()), ("model", forest)])


def logistic_pipeline(n_jobs: int = -1) -> Pipeline:  # nothing threaded: n_jobs for a common signature
    return Pipeline([("features", SessionFeatures(min_df=1)), ("model", BoostedLogistic(n_estimators=0))])


def boosted_pipeline(n_jobs: int = -1) -> Pipeline:
    return Pipeline([("features", SessionFeatures(min_df=1)), ("model", BoostedLogistic(n_jobs=n_jobs))])


@dataclass(frozen=True)
class Candidate:
    name: str
    label: str
    make: Callable[[int], Pipeline]  # n_jobs -> an unfitted pipeline
    explainable: bool  # SHAP explains it exactly in milliseconds
    fit_cap: int | None = None  # above this many sessions, each fit of it sees a stratified sample of this many


CANDIDATES = (
    Candidate(
        "original",
        "Original re-creation: random forest on 1-3-gram category words",
        original_pipeline,
        False,
        fit_cap=FOREST_SESSIONS,
    ),
    Candidate("logistic", "Logistic regression on session features", logistic_pipeline, True),
    Candidate("boosted", "Logistic regression corrected by LightGBM, on session features", boosted_pipeline, True),
)
CONTROL = "original"


@dataclass(frozen=True)
class Split:
    """Which labelled sessions (row numbers) each part of training uses."""

    compare: np.ndarray  # the candidates' cross-validation
    fit: np.ndarray  # the final fits (a candidate with a fit_cap: a stratified sample of them)
    calibrate: np.ndarray | None  # held out of the fits: calibration and threshold
    test: np.ndarray | None  # held out of the fits and the calibration: the final models' quality

    @property
    def sampled(self) -> bool:
        return self.test is not None


def stratified(rows: np.ndarray, y: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`size` of `rows` with the genders in the same shares, and the rest; both sorted."""
    taken, rest = train_test_split(rows, train_size=size, stratify=y[rows], random_state=SEED)
    return np.sort(taken), np.sort(rest)


def split_for(y: np.ndarray, compare_sessions: int = COMPARE_SESSIONS) -> Split:
    """Every session for everything up to `compare_sessions`; above it, a held-out set and a
    stratified sample for the comparison, drawn from the sessions the final fits see."""
    everyone = np.arange(len(y))
    if len(y) <= compare_sessions:
        return Split(everyone, everyone, None, None)
    held_count = min(HOLDOUT_MAX, max(4 * MIN_PER_CLASS, round(len(y) * HOLDOUT_SHARE)))
    held, fit = stratified(everyone, y, held_count)
    calibrate, test = stratified(held, y, held_count // 2)
    compare = stratified(fit, y, compare_sessions)[0] if len(fit) > compare_sessions else fit
    return Split(compare, fit, calibrate, test)


def capped(rows: np.ndarray, y: np.ndarray, candidate: Candidate) -> np.ndarray:
    """The rows a fit of `candidate` sees: all of them, or a stratified sample of its fit_cap."""
    if candidate.fit_cap is None or len(rows) <= candidate.fit_cap:
        return rows
    return stratified(rows, y, candidate.fit_cap)[0]


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


def fit_fold(candidate: Candidate, frame: pd.DataFrame, y: np.ndarray, fit_rows, held_rows):
    """One fold of one candidate, on one thread: P(male) of the held-out rows, the sessions fitted, seconds."""
    started = time.perf_counter()
    fit_rows = capped(fit_rows, y, candidate)
    pipeline = candidate.make(1).fit(frame.iloc[fit_rows], y[fit_rows])
    return pipeline.predict_proba(frame.iloc[held_rows])[:, 1], len(fit_rows), time.perf_counter() - started


def fit_final(candidate: Candidate, frame: pd.DataFrame, y: np.ndarray, rows) -> tuple[Pipeline, float]:
    """A final model on one thread, and the seconds it took."""
    started = time.perf_counter()
    return candidate.make(1).fit(frame.iloc[rows], y[rows]), time.perf_counter() - started


def train(
    engine: Engine,
    model_dir: Path,
    progress: Progress | None = None,
    candidates=CANDIDATES,
    compare_sessions: int = COMPARE_SESSIONS,
) -> ModelCard:
    """Cross-validate the candidates, fit the best explainable one and the control, save both."""
    started = time.perf_counter()
    artifact.writable_folder(model_dir)
    steps = len(candidates) * FOLDS + 2  # a fold each, then a final fit each (the read is step 0)
    done = 0

    def report(message: str, finished: bool = True) -> None:
        """A step finished (or, with finished=False, one begun: a final fit at a million sessions takes a minute)."""
        nonlocal done
        done += finished
        if progress:
            progress(min(done / steps, 1.0), message)

    if progress:
        progress(0.0, "reading the labelled sessions")
    frame, y = labelled_data(engine)
    males = int(y.sum())
    if min(males, len(y) - males) < MIN_PER_CLASS:
        raise GenderError(
            f"need at least {MIN_PER_CLASS} labelled sessions of each gender to train; "
            f"{redact(engine.url)} has {males} male and {len(y) - males} female"
        )
    split = split_for(y, compare_sessions)
    if not split.sampled:  # fit caps apply only where the comparison is sampled anyway
        candidates = tuple(replace(candidate, fit_cap=None) for candidate in candidates)
    compared, y_compared = frame.iloc[split.compare], y[split.compare]
    if progress:
        sample = f": candidates compared on a stratified sample of {len(split.compare):,}" if split.sampled else ""
        progress(0.0, f"training on {len(y):,} labelled sessions ({males:,} male){sample}")

    # Every fold of every candidate is a task of its own on a pool of one thread per core (see
    # original_pipeline): no core waits for another's fold to finish.
    folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=SEED).split(compared, y_compared))
    results, oof_of = {}, {}
    with ThreadPoolExecutor(WORKERS) as pool:
        tasks = {
            candidate.name: [pool.submit(fit_fold, candidate, compared, y_compared, *fold) for fold in folds]
            for candidate in candidates
        }
        for candidate in candidates:
            oof, aucs, seconds = np.zeros(len(y_compared)), [], 0.0
            for number, ((_, held_rows), task) in enumerate(zip(folds, tasks[candidate.name]), start=1):
                oof[held_rows], fit_sessions, fold_seconds = task.result()
                aucs.append(roc_auc_score(y_compared[held_rows], oof[held_rows]))
                seconds += fold_seconds
                report(f"{candidate.name}: fold {number}/{FOLDS} ROC-AUC {aucs[-1]:.4f}")
            aucs = np.array(aucs)
            # Log-odds models get Platt scaling from their out-of-fold scores, so the P(male) they
            # serve reads against the base rate; the original's forest stays as it was.
            calibration = platt(y_compared, oof) if candidate.explainable else None
            oof = oof_of[candidate.name] = calibrated(oof, calibration)
            results[candidate.name] = {
                "label": candidate.label,
                "explainable": candidate.explainable,
                "calibration": calibration,
                "auc_mean": round(float(aucs.mean()), 5),
                "auc_std": round(float(aucs.std()), 5),
                "auc_folds": np.round(aucs, 5).tolist(),
                "cv_seconds": round(seconds, 1),  # its folds' time, each on one core of the pool
                "fold_fit_sessions": fit_sessions,  # each fold's model saw this many (fewer with a fit_cap)
                **dict(curves(y_compared, oof)),
            }

    by_name = {candidate.name: candidate for candidate in candidates}
    chosen = max((c for c in candidates if c.explainable), key=lambda c: results[c.name]["auc_mean"])
    slot_candidates = {"treatment": chosen}
    if CONTROL in by_name:
        slot_candidates["control"] = by_name[CONTROL]

    pipelines, slots = {}, {}
    rows_of = {slot: capped(split.fit, y, candidate) for slot, candidate in slot_candidates.items()}
    for slot, candidate in slot_candidates.items():
        report(f"fitting {candidate.name} on {len(rows_of[slot]):,} sessions as the {slot} model", finished=False)
    with ThreadPoolExecutor(WORKERS) as pool:  # the final fits side by side too
        tasks = {slot: pool.submit(fit_final, c, frame, y, rows_of[slot]) for slot, c in slot_candidates.items()}
        for slot, candidate in slot_candidates.items():
            pipelines[slot], fit_seconds = tasks[slot].result()
            rows = rows_of[slot]
            if split.sampled:
                slots[slot] = held_out_quality(candidate, pipelines[slot], frame, y, split)
            else:
                slots[slot] = out_of_fold_quality(y, oof_of[candidate.name], results[candidate.name]["calibration"])
            slots[slot] = {"candidate": candidate.name, "label": candidate.label, **slots[slot]}
            slots[slot] |= {"fitted_sessions": len(rows), "fit_seconds": round(fit_seconds, 1)}
            every = "all " if len(rows) == len(y) else ""
            report(f"fitted {candidate.name} on {every}{len(rows):,} sessions as the {slot} model")

    card = ModelCard(
        feature_version=FEATURE_VERSION,
        trained_at=datetime.now(UTC).replace(microsecond=0),
        seconds=0.0,  # set below, when all is done
        database=redact(engine.url),
        training=Training(
            sessions=len(y),
            male=males,
            female=len(y) - males,
            male_share=round(males / len(y), 5),
            fingerprint=fingerprint(frame, y),
            most_views=int(frame["paths"].map(len).max()),
            longest_seconds=float((frame["end_time"] - frame["start_time"]).dt.total_seconds().max()),
        ),
        cv=CrossValidation(
            folds=FOLDS,
            seed=SEED,
            scoring="roc_auc",
            sessions=len(split.compare),
            male=int(y_compared.sum()),
            sampled=split.sampled,
        ),
        candidates=results,
        chosen=chosen.name,
        slots=slots,
        versions={"python": platform.python_version()} | {name: importlib.metadata.version(name) for name in LIBRARIES},
    )
    served = {
        slot: served_pipeline(pipeline, card.slots[slot].calibration, card.slots[slot].threshold)
        for slot, pipeline in pipelines.items()
    }
    card = card.model_copy(update={"seconds": round(time.perf_counter() - started, 1)})
    card = artifact.save(model_dir, served, card, {slot: frame.index[rows] for slot, rows in rows_of.items()})
    artifact.record_run(model_dir, card, parameters(candidates))
    return card


def slot_scores(y: np.ndarray, p_male: np.ndarray, threshold: float) -> dict:
    """What a slot records of its scores: the confusion at its threshold and P(male)'s distribution
    (pages/monitoring.py compares served P(male) against it)."""
    return {
        "threshold": round(threshold, 6),
        "confusion": confusion_at(y, p_male, threshold),
        "oof_p_male": np.round(np.sort(p_male), 4).tolist()[:: max(1, len(p_male) // 1000)],
    }


def out_of_fold_quality(y: np.ndarray, oof: np.ndarray, calibration: dict | None) -> dict:
    """Every session compared: the final model is judged by its candidate's out-of-fold scores
    (the same procedure on the same sessions), which also set its threshold."""
    return {"calibration": calibration, **slot_scores(y, oof, best_threshold(y, oof)), "holdout": None}


def held_out_quality(candidate: Candidate, pipeline: Pipeline, frame: pd.DataFrame, y, split: Split) -> dict:
    """A sample compared: the final model, fitted on many more sessions than the comparison's,
    scores on another scale, so the held-out set's calibration half sets its Platt scaling and
    threshold, and its test half, seen by neither, measures it."""
    raw_calibrate = pipeline.predict_proba(frame.iloc[split.calibrate])[:, 1]
    raw_test = pipeline.predict_proba(frame.iloc[split.test])[:, 1]
    y_calibrate, y_test = y[split.calibrate], y[split.test]
    calibration = platt(y_calibrate, raw_calibrate) if candidate.explainable else None
    threshold = best_threshold(y_calibrate, calibrated(raw_calibrate, calibration))
    p_test = calibrated(raw_test, calibration)
    males = int(y_test.sum())
    holdout = {
        "sessions": len(y_test),
        "male": males,
        "female": len(y_test) - males,
        "calibration_sessions": len(y_calibrate),
        "auc": round(float(roc_auc_score(y_test, p_test)), 5),
        **dict(curves(y_test, p_test)),
    }
    return {"calibration": calibration, **slot_scores(y_test, p_test, threshold), "holdout": holdout}


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
