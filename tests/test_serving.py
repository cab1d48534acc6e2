"""A/B serving, the prediction log, the run history and the monitoring figures."""

import contextlib
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sqlalchemy import event

from gender import api, artifact, db, monitor, predict, serve, synth
from tests import live
from tests.conftest import _mysql_database
from tests.test_app import make_app


@pytest.mark.parametrize("share", [0.5, 0.2])
def test_groups_are_stable_and_near_the_share(share):
    ids = [f"u{i}" for i in range(100_000)]
    groups = [serve.group_of(i, "salt-1", share) for i in ids]
    treated = groups.count("treatment") / len(ids)
    assert abs(treated - share) < 0.006  # 4 standard errors at 100,000 ids
    assert groups == [serve.group_of(i, "salt-1", share) for i in ids]  # the same id, the same group
    other_salt = [serve.group_of(i, "salt-2", share) for i in ids[:2_000]]
    assert other_salt != groups[:2_000]  # a new salt reshuffles
    assert {serve.group_of(i, "s", 0.0) for i in ids[:500]} == {"control"}
    assert {serve.group_of(i, "s", 1.0) for i in ids[:500]} == {"treatment"}


@pytest.fixture(scope="module")
def models(trained_demo):
    return artifact.load(trained_demo[1])


def test_monitoring_judges_the_current_models_on_sessions_they_were_not_fitted_on(trained_demo, models):
    """`train` records each model's training sessions; Monitoring leaves out their predictions
    (in-sample: the forest scores them perfectly) and those of models since replaced."""
    url, model_dir = trained_demo
    engine = db.connect(url)
    labelled = db.read_sessions(engine, "labelled")[0]["session_id"].tolist()
    unlabelled = db.read_sessions(engine, "unlabelled")[0]["session_id"].tolist()
    for model in (models.treatment, models.control):  # the demo's labelled sessions are fewer than 12,000: all fitted
        recorded = artifact.trained_on(model_dir, model.slot, model.model_id)
        np.testing.assert_array_equal(recorded, np.sort(artifact.session_hashes(labelled)))
        assert not np.isin(artifact.session_hashes(unlabelled), recorded).any()
    assert artifact.trained_on(model_dir, "control", models.treatment.model_id) is None  # another model's: not taken

    treatment, control = models.treatment.model_id, models.control.model_id
    rows = [  # (group, model, session)
        ("treatment", treatment, labelled[0]),
        ("treatment", treatment, unlabelled[0]),
        ("control", control, labelled[1]),
        ("control", control, unlabelled[1]),
        ("control", "original-0ld0ld00", unlabelled[2]),  # a model a retrain replaced
    ]
    log = pd.DataFrame(rows, columns=["ab_group", "model_id", "session_id"]).assign(p_male=0.3)
    trained_on = {
        m.model_id: artifact.trained_on(model_dir, m.slot, m.model_id) for m in (models.treatment, models.control)
    }
    judged = monitor.judged(log, models, trained_on)
    assert judged.log["session_id"].tolist() == [unlabelled[0], unlabelled[1]]
    assert (judged.by_earlier_models, judged.trained_on, judged.unrecorded) == (1, 2, [])
    assert judged.note == (
        "Below, the current models on sessions they were not fitted on. Left out: 1 prediction by models a retrain "
        "has since replaced; 2 predictions of sessions the serving model was fitted on (it scores them in-sample, "
        "better than new ones)."
    )
    unknown = monitor.judged(log, models, trained_on | {control: None})  # trained before they were recorded
    assert (unknown.trained_on, unknown.unrecorded, len(unknown.log)) == (1, [control], 3)


def wait_for_rows(engine, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = db.served_predictions(engine)
        if len(log) >= n:
            return log
        time.sleep(0.05)
    return db.served_predictions(engine)


def test_each_served_prediction_is_logged_once(engine, models):
    synth.create_demo(engine, sessions=300, seed=1)
    session_ids = [f"u{10001 + i}" for i in range(40)]
    served = [serve.serve(engine, models, sid, "salt", 0.5) for sid in session_ids]
    assert {answer.group for answer in served} == {"control", "treatment"}
    for answer in served + served:  # serving a session again with the same model adds nothing
        serve.write_log(engine, answer)
    log = db.served_predictions(engine)
    assert len(log) == len(session_ids)
    row = log.set_index("session_id").loc[served[0].prediction.session_id]
    assert row["ab_group"] == served[0].group and row["model_id"] == served[0].prediction.model
    assert row["p_male"] == pytest.approx(served[0].prediction.p_male)
    for session_id, gender in log.set_index("session_id")["gender"].items():
        assert (gender if isinstance(gender, str) else None) == db.get_session(engine, session_id)["gender"]

    other = models.other(served[0].group)  # the same session from the other model is a new row
    serve.write_log(engine, serve.Served("comparison", predict.assess(engine, other, session_ids[0])))
    assert len(db.served_predictions(engine)) == len(session_ids) + 1

    serve.log_in_background(engine, serve.serve(engine, models, "u10100", "salt", 0.5))
    assert len(wait_for_rows(engine, len(session_ids) + 2)) == len(session_ids) + 2


def test_a_failing_log_never_breaks_serving(tmp_path, models, trained_demo, caplog, monkeypatch):
    source = db.connect(trained_demo[0])
    answer = serve.serve(source, models, "u10001", "salt", 0.5)
    read_only = db.connect(f"sqlite:///file:{tmp_path / 'absent.db'}?mode=ro&uri=true")
    # A writer of its own: the shared one would keep retrying this row into later tests' logs.
    monkeypatch.setattr(serve, "log_writer", serve.LogWriter())
    with caplog.at_level("WARNING", logger="gender.serve"):
        serve.log_in_background(read_only, answer)  # cannot even open: logged as a warning, not raised
        assert serve.log_writer.flush(timeout=10)  # the writer has run
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    assert caplog.records[0].getMessage().startswith("prediction log not written: database ")
    assert answer.prediction.prediction in ("male", "female")  # the answer stands
    serve.log_writer.close(timeout=10)  # one last try, then the row is counted as lost


def test_the_log_writer_batches_and_loses_nothing_on_close(models, trained_demo, tmp_path):
    """Rows from many threads at once are written in a few statements, `flush` waits for them,
    and `close` (what runs at exit) writes what still waits; a row added after it is written at
    once. A real SQLite file, read back with a connection of its own."""
    from concurrent.futures import ThreadPoolExecutor

    source = db.connect(trained_demo[0])
    answers = [serve.serve(source, models, f"u{10001 + i}", "salt", 0.5, explain=False) for i in range(300)]
    engine = db.connect(f"sqlite:///{tmp_path / 'log.db'}")
    db.create_schema(engine)
    statements = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    writer = serve.LogWriter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda answer: writer.add(engine, serve.log_row(answer, "api")), answers[:200]))
    assert writer.flush(timeout=30)
    assert len(db.served_predictions(engine)) == 200
    inserts = [statement for statement in statements if statement.lstrip().upper().startswith("INSERT")]
    assert 1 <= len(inserts) < 50  # batched: far fewer statements than rows

    for answer in answers[200:290]:  # waiting when the process ends
        writer.add(engine, serve.log_row(answer, "api"))
    writer.close()
    assert len(db.served_predictions(engine)) == 290
    for answer in answers[290:]:  # after close: written at once, nothing waits
        writer.add(engine, serve.log_row(answer, "api"))
    log = db.served_predictions(engine)
    assert len(log) == 300 and set(log["served_via"]) == {"api"}
    assert sorted(log["session_id"]) == sorted(a.prediction.session_id for a in answers)
    engine.dispose()


class Gate:
    """A TCP proxy to a database server, on a loopback port of its own. Shut, it drops every
    connection as it accepts it (a server restarting, a failover); open, it passes bytes both ways."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.open = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            if not self.open:
                client.close()
                continue
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        for end in self.sockets:
            end.close()


def logged(url) -> list[str]:
    """The session ids in a database's prediction log, read by a connection of its own."""
    engine = db.connect(url)
    try:
        return sorted(db.served_predictions(engine)["session_id"])
    finally:
        engine.dispose()


def eventually(condition, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def briefly_unreachable(backend: str, tmp_path) -> Iterator[tuple[str, Callable[[], None]]]:
    """(the URL of a database that cannot be reached, the function that makes it reachable): a
    SQLite file whose folder comes into place later, or a MariaDB database behind a shut `Gate`.
    Its schema is there once it is reachable, its prediction log empty."""
    if backend == "sqlite":
        aside, folder = tmp_path / "aside", tmp_path / "later"
        aside.mkdir()
        engine = db.connect(f"sqlite:///{aside / 'log.db'}")
        db.create_schema(engine)
        engine.dispose()
        yield f"sqlite:///{folder / 'log.db'}", lambda: aside.rename(folder)
        return
    urls = _mysql_database()
    real = next(urls)
    engine = db.connect(real)
    db.create_schema(engine)
    engine.dispose()
    gate = Gate(real.host, real.port or 3306)

    def come_back() -> None:
        gate.open = True

    try:
        yield real.set(host="127.0.0.1", port=gate.port).render_as_string(hide_password=False), come_back
    finally:
        gate.close()
        next(urls, None)


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_a_batch_the_database_refused_is_written_once_it_is_back(backend, models, trained_demo, tmp_path, caplog):
    """The database blipped (a restart, a failover) just as a batch was written: the writer said
    'prediction log not written' and the served predictions were gone from the log for good. It
    keeps them and tries again; the insert skips pairs already there, so nothing is written twice."""
    source = db.connect(trained_demo[0])
    answers = [serve.serve(source, models, f"u{10001 + i}", "salt", 0.5, explain=False) for i in range(3)]
    writer = serve.LogWriter()
    writer.RETRY = 0.5
    with briefly_unreachable(backend, tmp_path) as (url, come_back), caplog.at_level("INFO", logger="gender.serve"):
        engine = db.connect(url)
        writer.add(engine, serve.log_row(answers[0], "api"))
        assert writer.flush(timeout=30)  # tried, and refused
        writer.add(engine, serve.log_row(answers[1], "api"))  # served during the outage
        come_back()
        wanted = sorted(a.prediction.session_id for a in answers[:2])
        assert eventually(lambda: logged(url) == wanted), logged(url)
        assert writer.flush(timeout=30)  # the thread says 'written again' just after its commit
        said = [(r.levelname, r.getMessage()) for r in caplog.records]
        assert [level for level, _ in said] == ["WARNING", "WARNING"], said  # once each, whatever the tries
        assert said[0][1].startswith("prediction log not written: database ")
        assert said[0][1].endswith("(1 row kept, tried again in 0.5 s)")
        assert said[1][1].startswith("prediction log written again after ") and said[1][1].endswith(": no row lost")
        writer.add(engine, serve.log_row(answers[0], "api"))  # again: the log has it already
        writer.add(engine, serve.log_row(answers[2], "api"))
        writer.close()
        assert logged(url) == sorted(a.prediction.session_id for a in answers)
        engine.dispose()


def test_rows_kept_for_a_database_that_stays_down_are_capped_and_counted(models, trained_demo, tmp_path, caplog):
    """A long outage cannot grow memory without limit: at most KEEP rows wait (a pair served again
    counts once), the newer are dropped and the server log says how many; at shutdown, the rows
    that still could not be written are counted as lost."""
    source = db.connect(trained_demo[0])
    answers = [serve.serve(source, models, f"u{10001 + i}", "salt", 0.5, explain=False) for i in range(7)]
    writer = serve.LogWriter()
    writer.KEEP, writer.RETRY = 3, 0.2
    with briefly_unreachable("sqlite", tmp_path) as (url, come_back), caplog.at_level("INFO", logger="gender.serve"):
        engine = db.connect(url)
        for answer in answers[:2]:
            writer.add(engine, serve.log_row(answer, "api"))
        assert writer.flush(timeout=30)
        for answer in [answers[0], *answers[2:6]]:  # the first served again, then 4 new: 1 kept, 3 dropped
            writer.add(engine, serve.log_row(answer, "api"))
        assert writer.flush(timeout=30)
        come_back()
        wanted = sorted(a.prediction.session_id for a in answers[:3])
        assert eventually(lambda: logged(url) == wanted), logged(url)
        assert writer.flush(timeout=30)  # the thread says 'written again' just after its commit
        messages = [r.getMessage() for r in caplog.records]
        assert sum("3 rows wait for sqlite:///" in m and "newer rows are dropped" in m for m in messages) == 1
        last = caplog.records[-1]
        assert last.levelname == "WARNING" and "; 3 rows dropped meanwhile (3 waited already)" in last.getMessage()
        engine.dispose()

    caplog.clear()
    down = db.connect(f"sqlite:///{tmp_path / 'gone' / 'log.db'}")  # never there
    with caplog.at_level("WARNING", logger="gender.serve"):
        writer.add(down, serve.log_row(answers[6], "api"))
        assert writer.flush(timeout=30)
        writer.close()  # one last try
    last = caplog.records[-1].getMessage()
    assert last.startswith("prediction log not written at shutdown: database ") and last.endswith("; 1 row lost")


def stalling_log_database(tmp_path) -> tuple:
    """A log database whose first statement waits (`stalled` is set) until `release` is set: a
    database that stalls, on an engine that waits minutes, as the dashboard's does."""
    engine = db.connect(f"sqlite:///{tmp_path / 'log.db'}")
    db.create_schema(engine)
    stalled, release = threading.Event(), threading.Event()

    def stall(*_args) -> None:
        if not stalled.is_set():
            stalled.set()
            release.wait(30)

    event.listen(engine, "before_cursor_execute", stall)
    return engine, stalled, release


def test_rows_waiting_behind_a_write_that_hangs_are_capped_and_counted(models, trained_demo, tmp_path, caplog):
    """While one write holds the writer's thread up (a database that stalls, on an engine that
    waits minutes, as the dashboard's does), the rows served meanwhile wait for it: QUEUE at most."""
    source = db.connect(trained_demo[0])
    answers = [serve.serve(source, models, f"u{10001 + i}", "salt", 0.5, explain=False) for i in range(5)]
    engine, stalled, release = stalling_log_database(tmp_path)
    writer = serve.LogWriter()
    writer.QUEUE = 2
    with caplog.at_level("WARNING", logger="gender.serve"):
        writer.add(engine, serve.log_row(answers[0], "api"))
        assert stalled.wait(30)  # the thread is in the write
        for answer in answers[1:]:  # 2 wait, 2 are dropped
            writer.add(engine, serve.log_row(answer, "api"))
        release.set()
        writer.close()
    assert sorted(db.served_predictions(engine)["session_id"]) == [f"u{10001 + i}" for i in range(3)]
    assert [r.getMessage() for r in caplog.records] == [
        "prediction log: 2 rows dropped while a write held the writer up (2 waited already)"
    ]
    engine.dispose()


LOG_METRICS = {
    "written": "gender_prediction_log_rows_written_total",
    "dropped": "gender_prediction_log_rows_dropped_total",
    "failures": "gender_prediction_log_write_failures_total",
    "waiting": "gender_prediction_log_rows_waiting",
}


def metered_writer() -> tuple[serve.LogWriter, Callable[[], dict[str, float]]]:
    """A writer of its own counting in the service's prediction log metrics (a set of its own, in
    a registry of its own), and what they say now."""
    meter, registry = api.PredictionLogMetrics(), CollectorRegistry()
    registry.register(meter)
    return serve.LogWriter(meter), lambda: {key: registry.get_sample_value(name) for key, name in LOG_METRICS.items()}


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_the_log_metrics_say_what_is_written_and_what_waits_through_an_outage(backend, models, trained_demo, tmp_path):
    """What /metrics shows of the prediction log: rows written; through an outage the failed
    writes and the rows kept (waiting), then, the database back, those rows written and none waiting."""
    source = db.connect(trained_demo[0])
    answers = [serve.serve(source, models, f"u{10001 + i}", "salt", 0.5, explain=False) for i in range(6)]
    writer, metrics = metered_writer()
    writer.RETRY = 0.5
    assert metrics() == {"written": 0, "dropped": 0, "failures": 0, "waiting": 0}
    up = db.connect(f"sqlite:///{tmp_path / 'up.db'}")
    for answer in answers[:3]:
        writer.add(up, serve.log_row(answer, "api"))
    assert writer.flush(timeout=30)
    assert metrics() == {"written": 3, "dropped": 0, "failures": 0, "waiting": 0}

    with briefly_unreachable(backend, tmp_path) as (url, come_back):
        engine = db.connect(url)
        for answer in answers[3:5]:
            writer.add(engine, serve.log_row(answer, "api"))
        assert writer.flush(timeout=30)  # tried, and refused: kept
        down = metrics()
        assert (down["written"], down["dropped"], down["waiting"]) == (3, 0, 2) and down["failures"] >= 1
        writer.add(engine, serve.log_row(answers[5], "api"))  # served during the outage: waits with them
        assert writer.flush(timeout=30)
        assert metrics()["waiting"] == 3
        come_back()
        wanted = sorted(a.prediction.session_id for a in answers[3:])
        assert eventually(lambda: logged(url) == wanted), logged(url)
        assert writer.flush(timeout=30)  # the counts are settled just after the commit
        back = metrics()
        assert (back["written"], back["dropped"], back["waiting"]) == (6, 0, 0)
        writer.close()
        engine.dispose()
    up.dispose()


def test_the_log_metrics_count_every_row_dropped(models, trained_demo, tmp_path):
    """Rows beyond QUEUE while a write holds the writer up, beyond KEEP for a database that stays
    down, and those it still cannot write at shutdown: dropped, and no longer waiting."""
    source = db.connect(trained_demo[0])
    answers = [serve.serve(source, models, f"u{10001 + i}", "salt", 0.5, explain=False) for i in range(9)]
    engine, stalled, release = stalling_log_database(tmp_path)
    writer, metrics = metered_writer()
    writer.QUEUE = 2
    writer.add(engine, serve.log_row(answers[0], "api"))
    assert stalled.wait(30)  # the thread is in the write
    for answer in answers[1:5]:  # 2 wait, 2 are dropped
        writer.add(engine, serve.log_row(answer, "api"))
    assert metrics() == {"written": 0, "dropped": 2, "failures": 0, "waiting": 3}  # 1 being written, 2 queued
    release.set()
    assert writer.flush(timeout=30)
    assert metrics() == {"written": 3, "dropped": 2, "failures": 0, "waiting": 0}

    writer.QUEUE, writer.KEEP = 100, 2
    down = db.connect(f"sqlite:///{tmp_path / 'gone' / 'log.db'}")  # never there
    for answer in answers[5:8]:  # 2 kept, 1 dropped
        writer.add(down, serve.log_row(answer, "api"))
    assert writer.flush(timeout=30)
    kept = metrics()
    assert (kept["written"], kept["dropped"], kept["waiting"]) == (3, 3, 2) and kept["failures"] >= 1
    writer.close()  # one last try, which fails: the kept rows are lost
    closed = metrics()
    assert (closed["written"], closed["dropped"], closed["waiting"]) == (3, 5, 0)
    assert closed["failures"] > kept["failures"]
    writer.add(engine, serve.log_row(answers[8], "api"))  # after close: written at once
    assert metrics()["written"] == 4
    engine.dispose()


def test_monitoring_figures_match_a_hand_computed_example():
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.4, 0.5, 0.2, 0.1])
    auc = monitor.auc(y, p)
    # 5 of the 6 (male, female) pairs are ordered right; 2 men and 3 women are too few for an interval
    assert auc.value == pytest.approx(5 / 6) and auc.low is None and auc.high is None
    assert str(auc) == "0.833 (too few to say how sure)"

    ba = monitor.balanced_accuracy(y, p >= 0.45)  # calls: male, female, male, female, female
    assert ba.value == pytest.approx(7 / 12) and ba.low is None  # TPR 1/2, TNR 2/3
    assert str(monitor.auc([1, 0], [0.9, 0.1])) == "1.000 (too few to say how sure)"  # was "1.000 [1.000, 1.000]"
    assert str(monitor.auc([1, 1], [0.9, 0.1])) == "needs both genders"

    expected = np.linspace(0, 1, 1_000, endpoint=False)  # deciles of width 0.1
    same = monitor.psi(expected, expected)
    shifted = monitor.psi(expected, np.full(100, 0.95))  # everything in the top decile
    assert same == pytest.approx(0.0)
    # top decile: (1 - 0.1)·ln(1/0.1); the other nine: (0.0001 - 0.1)·ln(0.0001/0.1)
    assert shifted == pytest.approx(0.9 * math.log(10) + 9 * (0.0001 - 0.1) * math.log(0.001), rel=1e-6)
    assert "stable" in monitor.psi_verdict(same) and "major" in monitor.psi_verdict(shifted)
    # Training scores all alike: one bin, nothing to tell a shift by; never "stable".
    assert monitor.psi(np.full(500, 0.3), np.full(100, 0.9)) is None
    assert "cannot say" in monitor.psi_verdict(None)
    # A few predictions from the training distribution itself: a large PSI, but one chance gives.
    rng = np.random.default_rng(7)
    trained = rng.beta(2, 6, 2_000)
    for n, alarmed in ((13, 30), (22, 25), (50, 5)):  # of 40, PSI alone says "a major shift" at least
        few = [monitor.Drift("treatment", "m1", trained, rng.choice(trained, n)) for _ in range(40)]
        assert sum(monitor.psi_verdict(drift.psi).startswith("a major shift") for drift in few) >= alarmed, n
        calm = sum(drift.verdict.startswith("no shift that chance would not give") for drift in few)
        assert calm >= 34, (n, calm)  # wrong one time in twenty, as it says: 38 of 40 expected
    moved = monitor.Drift("treatment", "m1", trained, np.full(100, 0.95))
    assert moved.psi > moved.chance_psi and "major" in moved.verdict
    log = pd.DataFrame(
        {
            "ab_group": ["treatment"] * 5 + ["control"],
            "model_id": ["m1"] * 5 + ["m0"],
            "p_male": list(p) + [0.3],
            "prediction": ["male" if v >= 0.45 else "female" for v in p] + ["female"],
            "gender": ["male", "male", "female", "female", "female", None],
            "served_at": pd.to_datetime(["2026-11-01"] * 3 + ["2026-11-02"] * 3),
        }
    )
    groups = monitor.group_metrics(log)
    assert groups["treatment"].auc.value == pytest.approx(5 / 6)
    assert (groups["control"].served, groups["control"].known) == (1, 0)
    assert groups["control"].auc.value is None
    daily = monitor.daily_counts(log)
    rows = {(str(day.date()), group): n for day, group, n in daily.itertuples(index=False)}
    assert rows == {("2026-11-01", "treatment"): 3, ("2026-11-02", "treatment"): 2, ("2026-11-02", "control"): 1}


def test_bootstrap_intervals_agree_with_scikit_learn_on_every_resample():
    rng = np.random.default_rng(7)
    y = np.r_[np.ones(40, bool), np.zeros(60, bool)]
    p = np.clip(rng.normal(0.35 + 0.2 * y, 0.15), 0, 1).round(2)  # ties included
    called = p >= 0.45
    for men, women in monitor._resamples(y):
        for i in range(0, len(men), 97):
            rows = np.r_[men[i], women[i]]
            assert monitor._auc_of(p[men[i : i + 1]], p[women[i : i + 1]])[0] == pytest.approx(
                roc_auc_score(y[rows], p[rows])
            )
            assert balanced_accuracy_score(y[rows], called[rows]) == pytest.approx(
                (called[men[i]].mean() + (~called[women[i]]).mean()) / 2
            )
    auc = monitor.auc(y, p)
    assert auc.value == pytest.approx(roc_auc_score(y, p))
    assert 0 <= auc.low < auc.value < auc.high <= 1 and len(auc.draws) == monitor.RESAMPLES
    assert monitor.auc(y, p) == auc  # the same log, the same interval on every rerun
    ba = monitor.balanced_accuracy(y, called)
    assert ba.value == pytest.approx(balanced_accuracy_score(y, called)) and ba.low < ba.value < ba.high

    random_scores = monitor.auc(y, rng.permutation(p))
    better = monitor.difference(auc, random_scores)
    assert better.value == pytest.approx(auc.value - random_scores.value) and better.significant
    assert not monitor.difference(auc, monitor.auc(y, p)).significant  # the same figures: no difference
    assert monitor.difference(auc, monitor.auc([1, 0], [0.9, 0.1])).significant is None  # too few: unknown


def test_training_runs_are_recorded(trained_demo):
    _, model_dir = trained_demo
    runs = artifact.load_runs(model_dir)
    card = artifact.load_card(model_dir)
    assert runs and runs[0].slots["treatment"].sha256 == card.slots["treatment"].sha256
    assert runs[0].training.fingerprint == card.training.fingerprint
    assert runs[0].parameters["boosted"]["model"]["num_leaves"] == 255
    assert set(runs[0].candidates) == set(card.candidates)


def test_cli_predict_names_group_and_model_and_logs_it(trained_demo, tmp_path):
    from tests.test_cli import run

    url, model_dir = trained_demo
    copy = live.sqlite_copy(url, tmp_path / "copy.db", empty_log=True)  # the dashboard's tests log to the demo's
    answer = json.loads(run("predict", "u10003", "--db", copy, "--model-dir", model_dir).stdout)
    assert answer["GROUP"] in ("control", "treatment")
    slot = artifact.load(model_dir).of(answer["GROUP"])
    assert answer["MODEL"] == slot.model_id
    log = db.served_predictions(db.connect(copy))
    assert log[["session_id", "ab_group", "model_id"]].values.tolist() == [["u10003", answer["GROUP"], answer["MODEL"]]]


def test_predict_page_says_who_answered_and_compares(app):
    at = app(session="u10003")
    assert "group's model" in " ".join(m.value for m in at.markdown)
    at.toggle(key="compare").set_value(True).run()
    assert not at.exception
    assert len([m for m in at.metric if m.label == "Predicted gender"]) == 2
    kinds = [chart["data"][0]["type"] for chart in live.charts(at)]
    assert kinds.count("waterfall") == 2


def test_monitoring_page_after_some_lookups(app, trained_demo):
    source = db.connect(trained_demo[0])
    at = app()
    for button in ["session_id_labelled", "session_id_unknown"] * 6:
        at.button(key=button).click().run()
        assert not at.exception
    # Every row this process logged is written before the page reads the log (polling for a count
    # raced: earlier tests' rows made the count reached while these were still on their way).
    assert serve.log_writer.flush(timeout=30)
    monitoring = make_app("monitoring")
    served, models = db.served_predictions(source), artifact.load(trained_demo[1])
    trained_on = {
        m.model_id: artifact.trained_on(trained_demo[1], m.slot, m.model_id) for m in (models.treatment, models.control)
    }
    judged = monitor.judged(served, models, trained_on)
    # The labelled sessions looked up trained the models (the demo's every labelled one did): left out.
    assert judged.trained_on >= 6 and judged.note in [c.value for c in monitoring.caption]
    table = monitoring.dataframe[0].value
    assert set(table["group"]) <= {"treatment", "control"} and table["served"].sum() == len(judged.log) >= 6
    charts = [chart["data"][0]["type"] for chart in live.charts(monitoring)]
    assert charts[0] == "bar"  # predictions per day
    for group in table["group"]:
        rows = judged.log[judged.log["ab_group"] == group]
        assert table.set_index("group").loc[group, "known gender"] == rows["gender"].notna().sum() == 0
    shown = " ".join(m.value for m in monitoring.markdown)  # each group's drift verdict, chance weighed
    for drift in monitor.drift(judged.log, models):
        assert drift.verdict.capitalize() + "." in shown


def test_monitoring_leaves_nothing_out_as_fitted_when_the_models_were_trained_on_another_database(
    trained_demo, models, tmp_path, monkeypatch
):
    """Ids name sessions of one database: a copy elsewhere (another shop's logs, the real logs
    with the demo's ids) holds none the models were fitted on, whatever their ids."""
    url, model_dir = trained_demo
    elsewhere = live.sqlite_copy(url, tmp_path / "elsewhere.db", empty_log=True)
    engine = db.connect(elsewhere)
    labelled = db.read_sessions(engine, "labelled")[0]["session_id"].tolist()[:8]
    for session_id in labelled:  # ids the models' own training sessions have too
        serve.write_log(engine, serve.serve(engine, models, session_id, "salt", 0.5))
    monkeypatch.setenv("GENDER_DB_URL", elsewhere)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))
    monitoring = make_app("monitoring")
    captions = " ".join(c.value for c in monitoring.caption)
    assert "The models were trained on another database" in captions
    assert "fitted on (it scores them in-sample" not in captions
    assert monitoring.dataframe[0].value["served"].sum() == len(labelled)


def test_models_trained_by_another_user_of_the_same_database_were_trained_here(models):
    """A least-privilege deployment trains as a loader and serves as a reader: one database, so
    its training sessions' answers are in-sample (the Predict page, Monitoring, `explain`), where
    comparing whole URLs called it another database and counted them as new sessions."""
    card = models.treatment.card.model_copy(update={"database": "mysql+pymysql://loader:***@db.shop:3306/ftp"})
    for same in (
        "mysql+pymysql://reader:***@db.shop:3306/ftp",
        "mysql+pymysql://db.shop:3306/ftp",
        "mysql+pymysql://reader:***@DB.shop/ftp",  # the default port, a host's name in any case
        "mariadb+pymysql://reader:***@db.shop:3306/ftp",
    ):
        assert artifact.trained_elsewhere(card, same) is None, same
    for other in (
        "mysql+pymysql://loader:***@db.shop:3306/ftp_copy",
        "mysql+pymysql://loader:***@db2.shop:3306/ftp",
        "mysql+pymysql://loader:***@db.shop:3307/ftp",
        "mysql+pymysql://loader:***@/ftp?unix_socket=/run/mysqld/b.sock",
    ):
        assert artifact.trained_elsewhere(card, other) == card.database, other
    on_a_socket = card.model_copy(update={"database": "mysql+pymysql://loader:***@/ftp?unix_socket=/run/a.sock"})
    assert artifact.trained_elsewhere(on_a_socket, "mysql+pymysql://reader:***@/ftp?unix_socket=/run/a.sock") is None
    assert artifact.trained_elsewhere(on_a_socket, "mysql+pymysql://reader:***@/ftp?unix_socket=/run/b.sock")


@pytest.fixture
def app(trained_demo, monkeypatch):
    url, model_dir = trained_demo
    monkeypatch.setenv("GENDER_DB_URL", url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))
    return make_app


def test_a_log_table_another_process_creates_first_is_written_to(trained_demo, tmp_path):
    """Two API workers' first answers both create the log table: a check, then a create, raced
    ("table prediction_log already exists") and one worker's rows were lost. Here the other worker
    wins every time: it creates the table just before this process's CREATE runs."""
    url = live.sqlite_copy(trained_demo[0], tmp_path / "race.db", empty_log=True)
    engine, other = db.connect(url), db.connect(url)

    def other_worker_first(_conn, _cursor, statement, *_):
        if statement.lstrip().upper().startswith("CREATE TABLE") and "prediction_log" in statement:
            db.prediction_log.create(other)

    event.listen(engine, "before_cursor_execute", other_worker_first)
    row = dict(session_id="u10001", ab_group="treatment", model_id="m", p_male=0.5, prediction="male")
    db.log_predictions(engine, [row | dict(threshold=0.5, served_at=datetime(2026, 1, 1), served_via="api")])
    assert db.served_predictions(engine)["session_id"].tolist() == ["u10001"]
