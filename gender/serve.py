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
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from gender import db, fast
from gender.answers import Prediction, counted
from gender.config import redact
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


@dataclass
class _Outage:
    """A database whose last write of the prediction log failed: the rows it did not take, kept to
    be tried again, and what the server log is told when it takes them (or never does)."""

    since: float  # time.monotonic() of the first failure
    delay: float  # seconds from this failure to the next try
    retry_at: float = 0.0
    failures: int = 0
    dropped: int = 0  # rows not kept: KEEP were waiting already
    rows: dict[tuple[str, str], dict] = field(default_factory=dict)  # (session, model) -> its first row


class LogMeter:
    """What a LogWriter tells of its rows as it goes: this one keeps none of it, gender.api's counts
    it on /metrics. Called from the request threads and the writer's, mostly with the writer's lock
    held: quick, thread-safe, and never calling the writer back."""

    def written(self, rows: int) -> None:
        """Rows in a statement the database committed (a pair it had already adds nothing)."""

    def dropped(self, rows: int) -> None:
        """Rows that will never be written: beyond QUEUE or KEEP, not written at close, or a bug's."""

    def failed(self) -> None:
        """A write the database refused or failed (its rows kept, unless closing or a bug's)."""

    def waiting(self, rows: int) -> None:
        """The rows in memory now, not yet written: queued, being written, and kept."""


class LogWriter:
    """Writes served predictions to `prediction_log` off the request path.

    `add` only appends the row to a list in memory; one thread writes every row waiting for a
    database in one statement (so under an API's load the log costs a statement per batch, not
    per answer). A batch the database does not take (it refuses connections, times out, cannot
    be written) is kept and tried again RETRY seconds later, then twice as long after each
    failure up to RETRY_MAX, with the rows served meanwhile: the insert skips (session, model)
    pairs already there, so a batch written twice (a commit whose answer was lost) adds nothing.
    At most KEEP rows wait per database (a pair served twice counts once, its first row kept),
    and QUEUE for the thread while a write holds it up (a stalled database, on an engine that
    waits minutes); rows beyond are dropped, and the server log says how many. Nothing is lost on
    shutdown while the database answers: `close` (run at exit) writes what is still waiting, the
    kept rows too, before returning (one try; rows it cannot write are counted in the log), and a
    row added after it is written at once. Serving never waits for any of it, nor fails: a
    failure is a warning. What becomes of the rows is told to `meter` as well (`LogMeter`).
    """

    BATCH = 2_000  # rows a statement at most: MariaDB's packets stay small
    # How long the thread lets rows gather after the first arrives: a commit per answer would
    # cost more than the answer (a transaction and an fsync); the log lags by this much at most.
    LINGER = 0.2
    RETRY, RETRY_MAX = 5.0, 30.0  # seconds from a failed write to the next try: the first, the longest
    KEEP = 100_000  # rows kept for a database that does not take them (about 50 MB): minutes of a busy API
    QUEUE = 100_000  # rows waiting for the thread while a write holds it up (it takes them every LINGER else)

    def __init__(self, meter: LogMeter | None = None):
        self.meter = meter or LogMeter()
        self._waiting: dict[Engine, list[dict]] = {}
        self._queued = 0  # rows in _waiting: QUEUE at most
        self._overflow = 0  # rows dropped since the thread last took _waiting
        self._outages: dict[Engine, _Outage] = {}  # databases whose last write failed
        self._changed = threading.Condition()
        self._writing = 0  # rows taken by the thread and not yet written, or their failure not yet said (flush)
        self._unsettled = 0  # of those, the rows neither written nor dropped nor kept yet (the meter's)
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, engine: Engine, row: dict) -> None:
        with self._changed:
            if not self._closed:
                first = not self._waiting
                if self._queued >= self.QUEUE:  # the thread is held up (a write waiting on a stalled database)
                    self._overflow += 1
                    self.meter.dropped(1)
                    return
                self._queued += 1
                self._waiting.setdefault(engine, []).append(row)
                self._meter_waiting()
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
        """Wait until every row added so far is written, or failed and kept to be tried again
        (or dropped); False on timeout."""
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
                while not self._waiting and not self._closed and not self._retry_due():
                    self._changed.wait(self._until_retry())
                if self._waiting and not self._closed:  # let the rows of the next moments join this batch
                    self._changed.wait_for(lambda: self._closed, self.LINGER)  # close ends the wait
                if not self._waiting and not self._outages:  # closed and drained
                    self._thread = None
                    self._changed.notify_all()
                    return
                batches, notes = self._take()
                self._writing = self._unsettled = sum(map(len, batches.values()))
                self._meter_waiting()
            _say(notes)
            failed = {engine: self._write_all(engine, rows) for engine, rows in batches.items()}
            with self._changed:
                notes = self._settle(failed)
                self._unsettled = 0  # the rows not written are kept now, or dropped: counted once
                self._meter_waiting()
            _say(notes)  # before `flush` returns: what it waited for is written or said
            with self._changed:
                self._writing = 0
                self._changed.notify_all()

    # The methods below run with self._changed held, and leave the logging to the caller (a slow
    # log handler must not hold up `add`, on the request path).

    def _meter_waiting(self) -> None:
        kept = sum(len(outage.rows) for outage in self._outages.values())
        self.meter.waiting(self._queued + self._unsettled + kept)

    def _retry_due(self) -> bool:
        now = time.monotonic()
        return any(outage.retry_at <= now for outage in self._outages.values())

    def _until_retry(self) -> float | None:
        if not self._outages:
            return None
        return max(0.0, min(outage.retry_at for outage in self._outages.values()) - time.monotonic())

    def _take(self) -> tuple[dict[Engine, list[dict]], list]:
        """The rows to write now: every database's new rows, and a failed one's kept rows (first:
        they were served earlier) when its next try has come or the writer closes. A failed
        database's new rows before that join its kept ones, untried."""
        now, batches, notes = time.monotonic(), {}, []
        if self._overflow:
            notes.append(
                (
                    logging.WARNING,
                    "prediction log: %s dropped while a write held the writer up (%s waited already)",
                    counted(self._overflow, "row"),
                    f"{self.QUEUE:,}",
                )
            )
        self._queued = self._overflow = 0
        for engine in [*self._outages, *(e for e in self._waiting if e not in self._outages)]:
            rows = self._waiting.pop(engine, [])
            outage = self._outages.get(engine)
            if outage is None:
                batches[engine] = rows
            elif self._closed or outage.retry_at <= now:
                batches[engine] = [*outage.rows.values(), *rows]
                outage.rows = {}
                outage.retry_at = float("inf")  # being tried
            else:
                notes += self._keep(engine, outage, rows)
        return batches, notes

    def _settle(self, failed: dict[Engine, tuple[GenderError, list[dict]] | None]) -> list:
        """After the writes: a failed database's rows kept for its next try, or counted as lost
        when the writer is closing; a database back after failures said so."""
        notes = []
        now = time.monotonic()
        for engine, failure in failed.items():
            outage = self._outages.get(engine)
            if failure is None:
                if outage is not None:
                    del self._outages[engine]
                    notes.append(
                        (
                            logging.WARNING,  # as the failure was: a server's log shows warnings
                            "prediction log written again after %s over %.0f s%s",
                            counted(outage.failures, "failed attempt"),
                            now - outage.since,
                            f"; {counted(outage.dropped, 'row')} dropped meanwhile ({self.KEEP:,} waited already)"
                            if outage.dropped
                            else ": no row lost",
                        )
                    )
                continue
            exc, rest = failure
            if self._closed:  # a last try at shutdown: what it did not write is lost
                self._outages.pop(engine, None)
                self.meter.dropped(len(rest))
                dropped = outage.dropped if outage else 0
                notes.append(
                    (
                        logging.WARNING,
                        "prediction log not written at shutdown: %s; %s lost%s",
                        exc,
                        counted(len(rest), "row"),
                        f" ({counted(dropped, 'row')} more dropped before, {self.KEEP:,} waiting already)"
                        if dropped
                        else "",
                    )
                )
                continue
            if outage is None:
                outage = self._outages[engine] = _Outage(since=now, delay=self.RETRY)
                first = True
            else:
                outage.delay = min(2 * outage.delay, self.RETRY_MAX)
                first = False
            outage.failures += 1
            outage.retry_at = now + outage.delay
            notes += self._keep(engine, outage, rest)
            if first:  # once an outage; the next tries' failures only at DEBUG
                notes.append(
                    (
                        logging.WARNING,
                        "prediction log not written: %s (%s kept, tried again in %g s)",
                        exc,
                        counted(len(outage.rows), "row"),
                        outage.delay,
                    )
                )
            else:
                notes.append(
                    (
                        logging.DEBUG,
                        "prediction log still not written (try %d): %s (%s kept, tried again in %g s)",
                        outage.failures,
                        exc,
                        counted(len(outage.rows), "row"),
                        outage.delay,
                    )
                )
        return notes

    def _keep(self, engine: Engine, outage: _Outage, rows: list[dict]) -> list:
        """Keep rows for a failed database's next try, KEEP at most: a (session, model) pair once."""
        dropped = outage.dropped
        kept = outage.rows
        for row in rows:
            key = (row["session_id"], row["model_id"])
            if key in kept:
                continue  # the insert would skip it anyway: the first row served stays
            if len(kept) < self.KEEP:
                kept[key] = row
            else:
                outage.dropped += 1
        if outage.dropped > dropped:
            self.meter.dropped(outage.dropped - dropped)
        if dropped or not outage.dropped:
            return []
        return [
            (
                logging.WARNING,
                "prediction log: %s rows wait for %s, the most kept; newer rows are dropped until it takes them",
                f"{self.KEEP:,}",
                redact(engine.url),
            )
        ]

    def _write_all(self, engine: Engine, rows: list[dict]) -> tuple[GenderError, list[dict]] | None:
        """Write rows in batches; None when written, else the failure and the rows not written."""
        for start in range(0, len(rows), self.BATCH):
            batch = rows[start : start + self.BATCH]
            try:
                db.log_predictions(engine, batch)
            except GenderError as exc:  # the database failed: the rest waits for the next try
                self.meter.failed()
                return exc, rows[start:]
            except Exception:  # a bug must not take a page down either (and trying again would repeat it)
                log.exception("prediction log not written")
                self._settled(len(batch))
                self.meter.failed()
                self.meter.dropped(len(batch))
            else:
                self._settled(len(batch))
                self.meter.written(len(batch))
        return None

    def _settled(self, rows: int) -> None:
        """`rows` of the batch being written are written or dropped: no longer waiting. Said to the
        meter before they are counted as such, so that a scrape (counters first) never sees a row as both."""
        with self._changed:
            self._unsettled -= rows
            self._meter_waiting()

    def _write(self, engine: Engine, rows: list[dict]) -> None:
        try:
            db.log_predictions(engine, rows)
        except GenderError as exc:  # e.g. a read-only database: serving goes on without the log
            log.warning("prediction log not written: %s", exc)
        except Exception:  # a bug must not take a page down either
            log.exception("prediction log not written")
        else:
            self.meter.written(len(rows))
            return
        self.meter.failed()
        self.meter.dropped(len(rows))


def _say(notes: list) -> None:
    for level, message, *args in notes:
        log.log(level, message, *args)


log_writer = LogWriter()
# At exit; a server closes it itself at its shutdown (gender.api.ApiFirst): uvicorn ends on SIGTERM
# by raising the signal again once shut down, and then no exit handler runs.
atexit.register(log_writer.close)


def log_in_background(engine: Engine, served: Served, via: str = "page") -> None:
    """Log a served prediction without making the page (or the API) wait; a failure is logged,
    never raised."""
    log_writer.add(engine, log_row(served, via))
