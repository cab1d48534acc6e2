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
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from gender import db
from gender.answers import Prediction
from gender.errors import GenderError
from gender.predict import Assessment, assess_record, lookup
from gender.trained import Models

GROUPS = ("control", "treatment")
log = logging.getLogger("gender.serve")


def group_of(session_id: str, salt: str, treatment_share: float) -> str:
    """The A/B group of a session: a stable hash of salt and id, compared with the share."""
    digest = hashlib.sha256(f"{salt}:{session_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    return "treatment" if position < treatment_share else "control"


@dataclass(frozen=True)
class Served:
    group: str
    assessment: Assessment

    @property
    def prediction(self) -> Prediction:
        return self.assessment.prediction

    def as_json(self) -> dict:
        return self.prediction.as_json() | {"GROUP": self.group}


def serve(
    engine: Engine, models: Models, session_id: object, salt: str, treatment_share: float, explain: bool = True
) -> Served | None:
    """Answer one session with its group's model; None when there is no such session. Without
    `explain` the answer carries no explanation (the HTTP routes: SHAP would triple their time)."""
    record = lookup(engine, session_id)
    if record is None:
        return None
    group = group_of(record.session_id, salt, treatment_share) if models.control else "treatment"
    return Served(group, assess_record(models.of(group), record, explain))


SERVED_VIA = ("page", "api", "cli")  # where a prediction was served, as prediction_log.served_via says


def log_row(served: Served, via: str) -> dict:
    prediction = served.prediction
    return {
        "session_id": prediction.session_id,
        "ab_group": served.group,
        "model_id": prediction.model,
        "p_male": prediction.p_male,
        "prediction": prediction.prediction,
        "threshold": prediction.threshold,
        "served_at": datetime.now(UTC).replace(tzinfo=None),
        "served_via": via,
    }


def write_log(engine: Engine, served: Served, via: str = "cli") -> None:
    """Log a served prediction now (the CLI: it is about to exit anyway)."""
    db.log_predictions(engine, [log_row(served, via)])


_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prediction-log")
atexit.register(_writer.shutdown, wait=True)


# Rows waiting for the writer, by engine. Under an API's load a write per answer would queue
# without end; the writer takes every waiting row in one statement instead.
_waiting: dict[Engine, list[dict]] = {}
_waiting_lock = threading.Lock()


def log_in_background(engine: Engine, served: Served, via: str = "page") -> None:
    """Log a served prediction without making the page wait; a failure is logged, never raised."""
    with _waiting_lock:
        rows = _waiting.setdefault(engine, [])
        rows.append(log_row(served, via))
        if len(rows) > 1:
            return  # a write of this engine's rows is already scheduled and will take this one too

    def write() -> None:
        with _waiting_lock:
            rows = _waiting.pop(engine, [])
        try:
            db.log_predictions(engine, rows)
        except GenderError as exc:  # e.g. a read-only database: serving goes on without the log
            log.warning("prediction log not written: %s", exc)
        except Exception:  # a bug must not take a page down either
            log.exception("prediction log not written")

    _writer.submit(write)
