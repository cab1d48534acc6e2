"""One session answered: looked up, predicted (and explained), or its views in a category counted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from gender import db
from gender.answers import Count, Prediction, typed
from gender.session import Session

if TYPE_CHECKING:  # sklearn loads only where a model does: `count` needs none
    from gender.trained import Model


def lookup(engine: Engine, session_id: object) -> Session | None:
    """The session of an id as typed (exactly, else without the blanks around it), or None;
    text no id column could hold is None without a query."""
    return Session.load(engine, session_id)


@dataclass(frozen=True)
class Assessment:
    """Everything the Predict page shows about one session: its data, the answer and why."""

    record: Session
    prediction: Prediction
    explanation: object  # gender.explain.Explanation; None when served without one


def assess(engine: Engine, model: Model, session_id: object) -> Assessment | None:
    """Look a session up, predict and explain it; None if unknown."""
    record = lookup(engine, session_id)
    return None if record is None else assess_record(model, record)


def assess_record(model: Model, record: Session, explain: bool = True) -> Assessment:
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
    return assess_record(model, record, explain=False).prediction


def count(engine: Engine, session_id: object, category: object) -> Count:
    """The session's views in a category of any level, ids and codes as typed (exactly, else
    without the blanks around them); COUNT 0 for a session or category the database lacks."""
    row = db.get_session(engine, session_id)
    if row is not None and isinstance(category, str):
        for code in db.as_typed(category):
            if found := db.count_category(engine, row["session_id"], code):
                return Count(row["session_id"], code, found)
    if row is None:
        return Count(typed(session_id), typed(category), 0, session_known=False)
    return Count(row["session_id"], typed(category), 0)
