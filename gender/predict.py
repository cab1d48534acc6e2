"""Using a trained model: one session looked up and predicted, or many scored at once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from gender import artifact, db, ingest
from gender.features import session_frame
from gender.metrics import calibrated

UNKNOWN = "UNKNOWN_SESSION_ID"  # the original service's answer for a session without data


class Model:
    """A loaded pipeline with what its metadata says about it (threshold, name, checksum)."""

    def __init__(self, pipeline, metadata: dict, slot: str = "treatment"):
        self.pipeline, self.metadata, self.slot = pipeline, metadata, slot
        entry = metadata["slots"][slot]
        self.candidate: str = entry["candidate"]
        self.label: str = entry["label"]
        self.threshold: float = float(entry["threshold"])
        self.calibration: dict | None = entry.get("calibration")
        self.model_id = f"{self.candidate}-{entry['sha256'][:8]}"
        self.cv_auc: float = metadata["candidates"][self.candidate]["auc_mean"]
        self.base_rate: float = metadata["training"]["male_share"]

    def features(self, frame: pd.DataFrame):
        """The session frame as this model's feature matrix (sparse, one row a session)."""
        return self.pipeline.named_steps["features"].transform(frame)

    def p_male_of(self, matrix) -> np.ndarray:
        """P(male) from feature rows, calibrated as trained."""
        return calibrated(self.pipeline[-1].predict_proba(matrix)[:, 1], self.calibration)

    def p_male(self, frame: pd.DataFrame) -> np.ndarray:
        return self.p_male_of(self.features(frame))

    def decide(self, p_male: float) -> str:
        return "male" if p_male >= self.threshold else "female"

    @cached_property
    def explainer(self):
        from gender.explain import Explainer  # shap is heavy; only explanations need it

        return Explainer(self.pipeline)


def load_model(model_dir: Path, slot: str = "treatment") -> Model:
    pipeline, metadata = artifact.load(model_dir, slot)
    return Model(pipeline, metadata, slot)


@dataclass(frozen=True)
class SessionRecord:
    """One session as stored: its row and its views in order."""

    session_id: str
    start_time: datetime
    end_time: datetime
    gender: str | None
    views: pd.DataFrame  # sequence_order, category_a..category_d

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The session as a one-row session frame, ready for the features."""
        row = pd.DataFrame([{"session_id": self.session_id, "start_time": self.start_time, "end_time": self.end_time}])
        return session_frame(row, self.views.assign(session_id=self.session_id))


def lookup(engine: Engine, session_id: object) -> SessionRecord | None:
    """The session of an id as typed (exactly, else without the blanks around it), or None;
    text no id column could hold is None without a query."""
    row = db.get_session(engine, session_id)
    if row is None:
        return None
    return SessionRecord(views=db.get_views(engine, row["session_id"]), **row)


def typed(text: object) -> str:
    """Typed text as an answer echoes it: without the blanks around it."""
    return text.strip() if isinstance(text, str) else str(text)


@dataclass(frozen=True)
class Prediction:
    session_id: str
    prediction: str  # male, female or UNKNOWN_SESSION_ID
    p_male: float | None = None
    threshold: float | None = None
    model: str | None = None

    @classmethod
    def unknown(cls, session_id: object) -> Prediction:
        """The answer for a session the database does not hold, echoing the id as typed."""
        return cls(typed(session_id), UNKNOWN)

    def as_json(self) -> dict:
        """The original service's keys, plus P_MALE, THRESHOLD and MODEL."""
        answer = {"SESSION_ID": self.session_id, "PREDICTION": self.prediction}
        if self.p_male is not None:
            answer |= {"P_MALE": round(self.p_male, 6), "THRESHOLD": self.threshold, "MODEL": self.model}
        return answer


def predict_record(model: Model, record: SessionRecord) -> Prediction:
    p_male = float(model.p_male(record.frame)[0])
    return Prediction(record.session_id, model.decide(p_male), p_male, model.threshold, model.model_id)


@dataclass(frozen=True)
class Assessment:
    """Everything the Predict page shows about one session: its data, the answer and why."""

    record: SessionRecord
    prediction: Prediction
    explanation: object  # gender.explain.Explanation; None when served without one


def assess(engine: Engine, model: Model, session_id: object) -> Assessment | None:
    """Look a session up, predict and explain it; None if unknown."""
    record = lookup(engine, session_id)
    return None if record is None else assess_record(model, record)


def assess_record(model: Model, record: SessionRecord, explain: bool = True) -> Assessment:
    """Predict and explain a session with one pass over its features; without `explain` the
    explanation is None (an API answer needs none, and SHAP is most of the time a page costs)."""
    row = model.features(record.frame)
    p_male = float(model.p_male_of(row)[0])
    prediction = Prediction(record.session_id, model.decide(p_male), p_male, model.threshold, model.model_id)
    if not explain:
        return Assessment(record, prediction, None)
    from gender.explain import explain_row  # shap is heavy; only explanations need it

    return Assessment(record, prediction, explain_row(model, row))


def predict(engine: Engine, model: Model, session_id: object) -> Prediction:
    """The prediction for one session id, UNKNOWN_SESSION_ID when the database has no such session."""
    record = lookup(engine, session_id)
    if record is None:
        return Prediction.unknown(session_id)
    return predict_record(model, record)


@dataclass(frozen=True)
class Count:
    """The original /count answer: how many of a session's views have a category at any level."""

    session_id: str
    category: str
    count: int

    def as_json(self) -> dict:
        return {"SESSION_ID": self.session_id, "CATEGORY": self.category, "COUNT": self.count}


def count(engine: Engine, session_id: object, category: object) -> Count:
    """The session's views in a category of any level, ids and codes as typed (exactly, else
    without the blanks around them); COUNT 0 for a session or category the database lacks."""
    row = db.get_session(engine, session_id)
    if row is not None and isinstance(category, str):
        for code in db.as_typed(category):
            if found := db.count_category(engine, row["session_id"], code):
                return Count(row["session_id"], code, found)
    return Count(row["session_id"] if row else typed(session_id), typed(category), 0)


def score(model: Model, frame: pd.DataFrame) -> pd.DataFrame:
    """session_id, p_male, prediction for every session of a session frame."""
    return _scores(model, frame.index, model.p_male(frame) if len(frame) else np.array([]))


def score_chunks(model: Model, chunks: Iterable[tuple[pd.DataFrame, pd.DataFrame]]) -> Iterator[pd.DataFrame]:
    """score() of each (sessions, views) chunk, in order, as `db.session_chunks` yields them.

    A second thread reads the next chunk and builds its features while the model scores this
    one: LightGBM's prediction, most of the time, releases the GIL to run on both cores.
    """

    def prepared() -> Iterator[tuple[pd.Index, object]]:
        for sessions, views in chunks:
            frame = session_frame(sessions, views)
            yield frame.index, model.features(frame) if len(frame) else None

    batches = prepared()
    with ThreadPoolExecutor(max_workers=1) as reader:
        upcoming = reader.submit(next, batches, None)
        while (batch := upcoming.result()) is not None:
            upcoming = reader.submit(next, batches, None)
            session_ids, matrix = batch
            yield _scores(model, session_ids, model.p_male_of(matrix) if matrix is not None else np.array([]))


def _scores(model: Model, session_ids: pd.Index, p_male: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "session_id": session_ids,
            "p_male": np.round(p_male, 6),
            "prediction": np.where(p_male >= model.threshold, "male", "female"),
        }
    )


def pakdd_chunks(path: Path, progress=None) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """A PAKDD-format file as (sessions, views) chunks, checked line by line like an import."""
    for sessions, views in ingest.pakdd_chunks(Path(path), None, progress):
        yield pd.DataFrame(sessions), pd.DataFrame(views, columns=list(db.product.columns.keys()))


def in_words(p_male: float, base_rate: float, threshold: float) -> str:
    """P(male) read against the prior and the threshold, e.g.
    "P(male) 0.41: well above the 22 % prior, above the threshold 0.35 → male"."""
    ratio = p_male / base_rate if base_rate else 1.0
    if ratio >= 1.5:
        prior = "well above"
    elif ratio > 1.1:
        prior = "above"
    elif ratio >= 0.9:
        prior = "close to"
    elif ratio > 0.5:
        prior = "below"
    else:
        prior = "well below"
    side, answer = ("above", "male") if p_male >= threshold else ("below", "female")
    prior_text = f"{prior} the {base_rate * 100:.0f} % prior"
    return f"P(male) {p_male:.2f}: {prior_text}, {side} the threshold {threshold:.2f} → {answer}"
