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
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from gender import db, fast
from gender.answers import Prediction
from gender.errors import GenderError
from gender.predict import Assessment, assess_record
from gender.session import Session
from gender.trained import Model, Models

GROUPS = ("control", "treatment")
log = logging.getLogger("gender.serve")


def group_of(session_id: str, salt: str, treatment_share: float) -> str:
    """The A/B group of a session: a stable hash of salt and id, compared with the share."""
    digest = hashlib.sha256(f"{salt}:{session_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    return "treatment" if position < treatment_share else "control"


def group_in(models: Models, session_id: str, salt: str, treatment_share: float) -> str:
    """The group that answers a session: `group_of`, or the treatment when there is no control model."""
    return group_of(session_id, salt, treatment_share) if models.control else "treatment"


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
    """Answer one session with its group's model; None when there is no such session.

    With `explain` (the Predict page) the answer goes through the model's pipeline and SHAP.
    Without it (the HTTP routes) through `gender.fast`, which computes the same P(male) from the
    session's views in a fraction of the time (tests/test_fast.py holds the two equal).
    """
    record = fast.load_session(engine, session_id)
    if record is None:
        return None
    group = group_in(models, record.session_id, salt, treatment_share)
    model = models.of(group)
    if explain:
        return Served(group, assess_record(model, record, explain=True))
    return Served(group, Assessment(record, answer(model, record), None))


def answer(model: Model, record: Session) -> Prediction:
    """The prediction for a session, without explanation, by the fast path."""
    p_male = fast.p_male(model, record)
    return Prediction(record.session_id, model.decide(p_male), p_male, model.threshold, model.model_id)


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


class LogWriter:
    """Writes served predictions to `prediction_log` off the request path.

    `add` only appends the row to a list in memory; one thread writes every row waiting for a
    database in one statement (so under an API's load the log costs a statement per batch, not
    per answer). Nothing is lost on shutdown: `close` (run at exit) writes what is still waiting
    before returning, and a row added after it is written at once. A failed write (a read-only
    database) is logged as a warning and serving goes on.
    """

    BATCH = 2_000  # rows a statement at most: MariaDB's packets stay small
    # How long the thread lets rows gather after the first arrives: a commit per answer would
    # cost more than the answer (a transaction and an fsync); the log lags by this much at most.
    LINGER = 0.2

    def __init__(self):
        self._waiting: dict[Engine, list[dict]] = {}
        self._changed = threading.Condition()
        self._writing = 0  # rows taken by the thread and not yet written
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, engine: Engine, row: dict) -> None:
        with self._changed:
            if not self._closed:
                first = not self._waiting
                self._waiting.setdefault(engine, []).append(row)
                if self._thread is None:
                    # A daemon thread, so a process never hangs on it; `close` at exit drains it.
                    self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
                    self._thread.start()
                # Only the first row of a batch wakes the thread: a wake per row, under an API's
                # load, cost each answer a switch to the thread and back for nothing (it lingers).
                if first:
                    self._changed.notify_all()
                return
        self._write(engine, [row])  # closed: written now, as the CLI does

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every row added so far is written (or failed); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._waiting or self._writing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def close(self, timeout: float = 60.0) -> None:
        """Write what waits and stop the thread; rows added later are written at once."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._closed:
                    self._changed.wait()
                if not self._closed:  # let the rows of the next moments join this batch (close ends the wait)
                    self._changed.wait_for(lambda: self._closed, self.LINGER)
                if not self._waiting:  # closed and drained
                    self._thread = None
                    self._changed.notify_all()
                    return
                batches, self._waiting = self._waiting, {}
                self._writing = sum(map(len, batches.values()))
            for engine, rows in batches.items():
                for start in range(0, len(rows), self.BATCH):
                    self._write(engine, rows[start : start + self.BATCH])
            with self._changed:
                self._writing = 0
                self._changed.notify_all()

    @staticmethod
    def _write(engine: Engine, rows: list[dict]) -> None:
        try:
            db.log_predictions(engine, rows)
        except GenderError as exc:  # e.g. a read-only database: serving goes on without the log
            log.warning("prediction log not written: %s", exc)
        except Exception:  # a bug must not take a page down either
            log.exception("prediction log not written")


log_writer = LogWriter()
# At exit; a server closes it itself at its shutdown (gender.api.ApiFirst): uvicorn ends on SIGTERM
# by raising the signal again once shut down, and then no exit handler runs.
atexit.register(log_writer.close)


def log_in_background(engine: Engine, served: Served, via: str = "page") -> None:
    """Log a served prediction without making the page (or the API) wait; a failure is logged,
    never raised."""
    log_writer.add(engine, log_row(served, via))
