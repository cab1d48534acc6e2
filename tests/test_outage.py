"""The dashboard through a database outage, on a MariaDB server this module starts and stops itself.

A private server (mariadb-install-db into a temporary folder, then mariadbd on a free loopback
port) holds a small demo database that a user with a password reads. With the server up every
page works; stopped (SIGTERM), every page that needs the database shows one clear error banner
within seconds, with no exception and without the password; started again on the same port,
the same sessions work again without restarting the app (its cached engine recovers). A wrong
password gets a clear banner too. Pages run through Streamlit's AppTest, and the Predict page
also in a real `streamlit run` driven by headless Chromium.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pymysql
import pytest
from streamlit.testing.v1 import AppTest

from gender import artifact, db, serve, synth
from tests import live
from tests.conftest import PROJECT

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
USER, PASSWORD = "analyst", "Pa55-w0rd-SECRET-9f3e"  # distinctive, so a leak is found by grep
WRONG_PASSWORD = "Wr0ng-pa55-OTHER-77ab"
PAGES = ("predict", "categories", "model", "monitoring")
NEEDS_DATABASE = ("predict", "categories", "monitoring")  # the Model page reads only the model folder
FAST = 15  # seconds: a page must answer within this while the database is down
TIMEOUT = 120  # an AppTest's first run loads the models and shap


class MariaDB:
    """A throwaway MariaDB server: its own data folder, socket and loopback port, kept across restarts."""

    def __init__(self, root: Path):
        self.root = root
        self.datadir = root / "data"
        self.log = root / "mariadbd.log"
        # A Unix socket path must stay under ~100 bytes: keep it short, outside pytest's deep tmp folders.
        self.socket = Path(tempfile.mkdtemp(prefix="mdb")) / "sock"
        self.port = live.free_port()
        self.process: subprocess.Popen | None = None
        as_root = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses to run as root otherwise
        self.install_command = [
            INSTALL_DB,
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",  # root@localhost without a password, for setup
            "--skip-test-db",
            "--skip-name-resolve",
            *as_root,
        ]
        self.command = [
            MARIADBD,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket}",
            f"--pid-file={root / 'mariadbd.pid'}",
            f"--log-error={self.log}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            *as_root,
        ]

    def install(self) -> None:
        done = subprocess.run(self.install_command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self, timeout: float = 60) -> None:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2).close()
                return
            except pymysql.err.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = self.log.read_text()[-2000:] if self.log.exists() else ""
                    self.stop()
                    pytest.fail(f"mariadbd did not start on port {self.port}:\n{log}")
                time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM, and wait for a clean shutdown."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case a test left it stopped
            self.process.terminate()
            self.process.wait(timeout=120)
        self.process = None

    def root_sql(self, *statements: str) -> None:
        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", autocommit=True)
        try:
            with conn.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            conn.close()

    def url(self, password: str = PASSWORD) -> str:
        return f"mysql+pymysql://{USER}:{password}@127.0.0.1:{self.port}/ftp"


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    """The private server, with database `ftp` (300 demo sessions) that the user `analyst` reads."""
    for binary in (MARIADBD, INSTALL_DB):
        if not os.access(binary, os.X_OK):
            pytest.skip(f"{binary} is not installed: no private MariaDB server to take down")
    server = MariaDB(tmp_path_factory.mktemp("outage"))
    server.install()
    server.start()
    try:
        server.root_sql(
            "CREATE DATABASE ftp CHARACTER SET utf8mb4",
            f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'",
            f"GRANT ALL PRIVILEGES ON ftp.* TO '{USER}'@'%'",
        )
        engine = db.connect(server.url())
        synth.create_demo(engine, sessions=300, seed=2)
        engine.dispose()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.socket.parent, ignore_errors=True)
        shutil.rmtree(server.datadir, ignore_errors=True)  # ~100 MB of InnoDB files


@pytest.fixture(scope="module")
def served_sessions(mariadb, trained_demo):
    """A labelled session id to look up, after serving (and logging) 30 sessions for the Monitoring page."""
    engine = db.connect(mariadb.url())
    models = artifact.load(trained_demo[1])
    sessions, _ = db.read_sessions(engine, "labelled")
    ids = sessions["session_id"].tolist()
    for session_id in ids[:30]:
        serve.write_log(engine, serve.serve(engine, models, session_id, "gender-lens", 0.5))
    engine.dispose()
    return ids[-1]


@pytest.fixture
def env(mariadb, trained_demo, monkeypatch):
    monkeypatch.setenv("GENDER_DB_URL", mariadb.url())
    monkeypatch.setenv("GENDER_MODEL_DIR", str(trained_demo[1]))
    for name in ("GENDER_TREATMENT_SHARE", "GENDER_AB_SALT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# -- reading a page ---------------------------------------------------------------------------------


def open_page(page: str, session_id: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT / "streamlit_app.py"), default_timeout=TIMEOUT)
    if page != "predict":  # the default page: run through the router, so its sidebar is rendered too
        at.switch_page(f"pages/{page}.py")
    at.query_params["session"] = session_id  # the Predict and Categories pages open this session
    return at


def timed_run(at: AppTest) -> float:
    started = time.monotonic()
    at.run()
    return time.monotonic() - started


def assert_no_secret(at: AppTest, *secrets: str) -> None:
    text = live.page_text(at)
    for secret in secrets:
        assert secret not in text


def assert_works(page: str, at: AppTest) -> None:
    """The page shows what it is for, with no banner and no exception."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    subheaders = [s.value for s in at.subheader]
    if page == "predict":
        assert metrics.get("Predicted gender") in ("male", "female"), metrics
    elif page == "categories":
        assert at.dataframe[0].value["views"].sum() > 0  # the session's categories
        assert len(live.charts(at)) >= 5
    elif page == "model":
        assert "Candidates" in subheaders and "Balanced accuracy" in metrics
    else:
        assert "Predictions per day" in subheaders, [i.value for i in at.info]


def assert_one_clear_banner(at: AppTest, port: int, reason: str) -> None:
    """One error banner naming the database (password hidden) and the reason; nothing else of the page."""
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"database mysql+pymysql://{USER}:***@127.0.0.1:{port}/ftp failed: "), errors[0]
    assert reason in errors[0], errors[0]
    assert "Traceback" not in live.page_text(at)
    assert not at.metric and not live.charts(at)


def assert_no_secret_logged(caplog, *secrets: str) -> None:
    formatter = logging.Formatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    for secret in secrets:
        assert secret not in logged


# -- the outage, through AppTest --------------------------------------------------------------------


def test_pages_through_an_outage(env, mariadb, served_sessions, caplog):
    caplog.set_level(logging.DEBUG)
    session_id = served_sessions
    refused = "Can't connect to"

    # (a) The server is up: every page works.
    apps = {page: open_page(page, session_id) for page in PAGES}
    for page, at in apps.items():
        at.run()
        assert_works(page, at)
        assert_no_secret(at, PASSWORD)

    # (b) The server is stopped: the same sessions, and fresh ones, get one banner within seconds.
    assert serve.log_writer.flush(timeout=30)  # the pages' log rows written before it goes
    mariadb.stop()
    try:
        for page, at in apps.items():
            fresh = open_page(page, session_id)
            for which, app in (("same", at), ("fresh", fresh)):
                seconds = timed_run(app)
                assert seconds < FAST, f"{page} ({which} session) took {seconds:.1f} s with the database down"
                if page in NEEDS_DATABASE:
                    assert_one_clear_banner(app, mariadb.port, refused)
                else:
                    assert_works(page, app)
                assert_no_secret(app, PASSWORD)
    finally:
        # (c) Started again on the same port and data: the same sessions work again.
        mariadb.start()
    for page, at in apps.items():
        at.run()
        assert_works(page, at)
        assert_no_secret(at, PASSWORD)
    assert_no_secret_logged(caplog, PASSWORD)


def test_a_wrong_password_gets_a_clear_banner(env, mariadb, served_sessions, caplog):
    caplog.set_level(logging.DEBUG)
    env.setenv("GENDER_DB_URL", mariadb.url(WRONG_PASSWORD))
    for page in NEEDS_DATABASE:
        at = open_page(page, served_sessions)
        seconds = timed_run(at)
        assert seconds < FAST, f"{page} took {seconds:.1f} s"
        assert_one_clear_banner(at, mariadb.port, f"Access denied for user '{USER}'")
        assert_no_secret(at, PASSWORD, WRONG_PASSWORD)
    assert_no_secret_logged(caplog, PASSWORD, WRONG_PASSWORD)


def test_the_session_box_stays_during_an_outage(env, mariadb, served_sessions):
    at = open_page("predict", served_sessions)
    at.run()
    assert_works("predict", at)
    assert serve.log_writer.flush(timeout=30)  # the page's log row written before it goes
    mariadb.stop()
    try:
        at.run()
        assert_one_clear_banner(at, mariadb.port, "Can't connect to")
        assert at.text_input(key="session_id").value == served_sessions  # KeyError when the box is gone
    finally:
        mariadb.start()


def test_a_frozen_server_gets_a_banner_within_seconds(env, mariadb, served_sessions):
    """A server that accepts connections but never answers (SIGSTOP): the page must not hang for minutes."""
    at = open_page("predict", served_sessions)
    at.run()
    assert_works("predict", at)
    assert serve.log_writer.flush(timeout=30)  # the page's log row written before it freezes
    pid = mariadb.process.pid
    os.kill(pid, signal.SIGSTOP)
    # Wake the server soon after the deadline, so a hanging page fails in seconds, not minutes.
    thaw = threading.Timer(FAST + 2, os.kill, (pid, signal.SIGCONT))
    thaw.start()
    try:
        started = time.monotonic()
        at.run(timeout=FAST)  # raises RuntimeError when the script runs longer
        seconds = time.monotonic() - started
        assert seconds < FAST
        assert_one_clear_banner(at, mariadb.port, "timed out")
    finally:
        thaw.cancel()
        os.kill(pid, signal.SIGCONT)
        at.run()  # the server is back: the same session works again
        assert_works("predict", at)


# -- the outage, in a real browser ------------------------------------------------------------------


@pytest.fixture
def app_server(mariadb, trained_demo, tmp_path):
    """`streamlit run` on the private server's database; yields (base URL, its log file)."""
    log_path = tmp_path / "streamlit.log"
    env = {"GENDER_DB_URL": mariadb.url(), "GENDER_MODEL_DIR": str(trained_demo[1])}
    with live.streamlit_server(env, log_path) as (base, _):
        yield base, log_path


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    yield page
    page.close()


def look_up(page, session_id: str, outcome: str) -> float:
    """Type a session id into the Predict page's box and press Enter; seconds until `outcome` shows and
    the script is idle."""
    box = page.get_by_label("Session id")
    box.fill(session_id)
    started = time.monotonic()
    box.press("Enter")
    # The rerun for this id has begun once ?session= names it (set before any query): the outcome
    # of the previous lookup may still be on the page until then.
    page.wait_for_url(lambda url: f"session={session_id}" in url, timeout=120_000)
    page.locator(outcome).first.wait_for(timeout=120_000)
    page.wait_for_selector(live.IDLE, timeout=120_000)
    return time.monotonic() - started


def assert_page_clean(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    html = page.content()
    assert PASSWORD not in html and PASSWORD not in page.url


@pytest.mark.slow
def test_a_browser_session_through_an_outage(app_server, page, mariadb, served_sessions):
    base, log_path = app_server
    engine = db.connect(mariadb.url())
    first, second = db.read_sessions(engine, "all")[0]["session_id"].tolist()[:2]
    engine.dispose()
    page.goto(f"{base}/?session={served_sessions}")
    page.wait_for_selector(live.IDLE, timeout=120_000)
    page.get_by_text("Predicted gender").first.wait_for(timeout=60_000)
    assert_page_clean(page)

    error = '[data-testid="stAlertContentError"]'
    mariadb.stop()
    try:
        seconds = look_up(page, first, error)
        assert seconds < FAST, f"the page took {seconds:.1f} s with the database down"
        assert page.locator(error).count() == 1, page.inner_text("body")
        assert f"{USER}:***@127.0.0.1:{mariadb.port}/ftp failed" in page.locator(error).inner_text()
        assert page.get_by_text("Predicted gender").count() == 0
        assert_page_clean(page)
    finally:
        mariadb.start()

    # The same browser session and server process. The banner replaced the whole page (the session
    # box too), so the user reruns it: Streamlit's "R" shortcut, then the next lookup works again.
    metric = '[data-testid="stMetric"]:has-text("Predicted gender")'
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("r")
    page.locator(metric).first.wait_for(timeout=60_000)
    page.wait_for_selector(live.IDLE, timeout=120_000)
    look_up(page, second, metric)
    assert page.locator(error).count() == 0
    assert f"session={second}" in page.url
    assert_page_clean(page)
    assert PASSWORD not in log_path.read_text()
