"""Serving: which model answers a session (A/B groups), and the log of what was served.

A session belongs to a group by a stable hash of its id with a salt: the same session always
gets the same group, and a share `treatment_share` of sessions gets the treatment model (the
chosen candidate), the rest the control (the original re-creation). Every answer says which
group and model gave it and is written to `prediction_log`, so metrics can be computed per group.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from gender import db
from gender.errors import GenderError, ModelUnavailable
from gender.predict import Assessment, Model, Prediction, assess, clean_session_id, load_model

GROUPS = ("control", "treatment")
log = logging.getLogger("gender.serve")


def group_of(session_id: str, salt: str, treatment_share: float) -> str:
    """The A/B group of a session: a stable hash of salt and id, compared with the share."""
    digest = hashlib.sha256(f"{salt}:{session_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    return "treatment" if position < treatment_share else "control"


@dataclass(frozen=True)
class Models:
    """The models of both slots (the control may be missing: then the treatment answers all)."""

    treatment: Model
    control: Model | None

    def of(self, group: str) -> Model:
        return self.control if group == "control" and self.control else self.treatment

    def other(self, group: str) -> Model | None:
        """The model that did not answer this group, for side-by-side comparisons."""
        return self.treatment if group == "control" and self.control else self.control


def load_models(model_dir: Path) -> Models:
    treatment = load_model(model_dir, "treatment")
    try:
        control = load_model(model_dir, "control")
    except ModelUnavailable:
        control = None
    return Models(treatment, control)


@dataclass(frozen=True)
class Served:
    group: str
    assessment: Assessment

    @property
    def prediction(self) -> Prediction:
        return self.assessment.prediction

    def as_json(self) -> dict:
        return self.prediction.as_json() | {"GROUP": self.group}


def serve(engine: Engine, models: Models, session_id: object, salt: str, treatment_share: float) -> Served | None:
    """Answer one session with its group's model; None when there is no such session."""
    cleaned = clean_session_id(session_id)
    if cleaned is None:
        return None
    group = group_of(cleaned, salt, treatment_share)
    if models.control is None:
        group = "treatment"
    assessment = assess(engine, models.of(group), cleaned)
    return Served(group, assessment) if assessment else None


def log_row(served: Served) -> dict:
    prediction = served.prediction
    return {
        "session_id": prediction.session_id,
        "ab_group": served.group,
        "model_id": prediction.model,
        "p_male": prediction.p_male,
        "prediction": prediction.prediction,
        "threshold": prediction.threshold,
        "served_at": datetime.now(UTC).replace(tzinfo=None),
    }


def write_log(engine: Engine, served: Served) -> None:
    """Log a served prediction now (the CLI: it is about to exit anyway)."""
    db.log_predictions(engine, [log_row(served)])


_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prediction-log")
atexit.register(_writer.shutdown, wait=True)


def log_in_background(engine: Engine, served: Served) -> None:
    """Log a served prediction without making the page wait; a failure is logged, never raised."""
    row = log_row(served)

    def write() -> None:
        try:
            db.log_predictions(engine, [row])
        except GenderError as exc:  # e.g. a read-only database: serving goes on without the log
            log.warning("prediction log not written: %s", exc)
        except Exception:  # a bug must not take a page down either
            log.exception("prediction log not written")

    _writer.submit(write)
