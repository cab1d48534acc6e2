"""The database password never shows: not on a page, in the browser, in a log, on a terminal or in a model file.

A MariaDB user with a distinctive password (created on the test server, dropped afterwards) reads a
small demo database. Every page is rendered through AppTest and in a real `streamlit run` driven by
headless Chromium (page HTML, every websocket frame, the server log), with the database reachable,
unreachable and with the account locked; the CLI runs predict, count, train, score, setup and
import-pakdd/import-db, and fails against an unreachable server; errors raised by the library are
read in full (message, repr, traceback, chained causes); the trained models' metadata and run files
are read too. The password, as typed or URL-encoded, must appear nowhere.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from sqlalchemy import URL, text
from streamlit.testing.v1 import AppTest

from gender import artifact, db, ingest, serve, synth
from gender.errors import GenderError
from tests import live
from tests.conftest import PROJECT, _mysql_database, write_pakdd

# '@' and '/' must be URL-encoded, so the password exists in two spellings; the tail is in both.
PASSWORD = "Leak@Check/7c1d-S3cret"
SPELLINGS = (PASSWORD, urllib.parse.quote(PASSWORD, safe=""), "7c1d-S3cret")
TIMEOUT = 120


def assert_clean(where: str, content: str | bytes) -> None:
    for spelling in SPELLINGS:
        needle = spelling.encode() if isinstance(content, bytes) else spelling
        assert needle not in content, f"the password ({spelling!r}) appears in {where}"


@dataclass
class Secret:
    """The demo database and the user that reads it with the password."""

    url: URL  # user and password
    root: URL  # the test server's administrator, for locking the account
    user: str
    session_id: str  # a labelled session

    def text(self, url: URL | None = None) -> str:
        return (url or self.url).render_as_string(hide_password=False)

    @property
    def unreachable(self) -> URL:
        return self.url.set(port=live.free_port())  # nothing listens there

    @property
    def redacted(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def lock(self, locked: bool) -> None:
        """Lock (or unlock) the account and end its open connections: every new connection is refused."""
        engine = db.connect(self.root)
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER USER '{self.user}'@'%' ACCOUNT {'LOCK' if locked else 'UNLOCK'}"))
                if locked:
                    ids = conn.execute(
                        text("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = :u"), {"u": self.user}
                    ).scalars()
                    for connection_id in list(ids):
                        conn.execute(text(f"KILL CONNECTION {int(connection_id)}"))
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def secret(trained_demo):
    """A fresh database on the test server (skips without GENDER_TEST_MYSQL_URL) read by a user with PASSWORD."""
    databases = _mysql_database()
    root = next(databases)
    user = f"gl_leak_{uuid.uuid4().hex[:8]}"
    admin = db.connect(root)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY :password"), {"password": PASSWORD})
            conn.execute(text(f"GRANT ALL PRIVILEGES ON `{root.database}`.* TO '{user}'@'%'"))
        url = root.set(username=user, password=PASSWORD)
        engine = db.connect(url)
        synth.create_demo(engine, sessions=300, seed=2)
        # Some served predictions, so the Monitoring page has something to show.
        models = artifact.load(trained_demo[1])
        ids = db.read_sessions(engine, "labelled")[0]["session_id"].tolist()
        for session_id in ids[:30]:
            serve.write_log(engine, serve.serve(engine, models, session_id, "gender-lens", 0.5))
        engine.dispose()
        yield Secret(url, root, user, ids[-1])
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        admin.dispose()
        next(databases, None)  # drops the database


# -- the pages, through AppTest -------------------------------------------------------------------


def render(page: str, session_id: str) -> tuple[AppTest, str]:
    """The page, run, then with its widgets used (the comparison switch, the count form); its text after
    each run (AppTest renders the router's sidebar only on the first run of the default page)."""
    at = AppTest.from_file(str(PROJECT / "streamlit_app.py"), default_timeout=TIMEOUT)
    if page != "predict":
        at.switch_page(f"pages/{page}.py")
    at.query_params["session"] = session_id
    at.run()
    texts = [live.page_text(at)]
    if page == "predict" and any(t.key == "compare" for t in at.toggle):
        at.toggle(key="compare").set_value(True).run()
        texts.append(live.page_text(at))
    if page == "categories" and any(t.key == "count_category" for t in at.text_input):
        at.text_input(key="count_category").set_value("B00001")
        next(b for b in at.button if b.label == "Count").click().run()
        texts.append(live.page_text(at))
    return at, "\n".join(texts)


@pytest.mark.parametrize("state", ["reachable", "unreachable", "locked"])
def test_pages_never_show_the_password(secret, trained_demo, monkeypatch, caplog, state):
    caplog.set_level(logging.DEBUG)
    url = secret.unreachable if state == "unreachable" else secret.url
    monkeypatch.setenv("GENDER_DB_URL", secret.text(url))
    monkeypatch.setenv("GENDER_MODEL_DIR", str(trained_demo[1]))
    if state == "locked":
        secret.lock(True)
    try:
        for page in ("predict", "categories", "model", "monitoring"):
            at, shown = render(page, secret.session_id)
            assert not at.exception, [e.value for e in at.exception]
            if state == "reachable":  # the pages really ran: this is not a page of banners
                assert not at.error, [e.value for e in at.error]
                if page == "predict":
                    assert secret.redacted in shown  # the sidebar's data source, password hidden
                    assert len(live.charts(at)) >= 4  # both models' answers and explanations
            elif page != "model":
                assert len(at.error) == 1 and f"{secret.user}:***@" in at.error[0].value, [e.value for e in at.error]
            assert_clean(f"the {page} page ({state})", shown)
    finally:
        if state == "locked":
            secret.lock(False)
    logged = "\n".join(logging.Formatter().format(record) for record in caplog.records)
    assert_clean("the log records", logged)


# -- the pages, in a browser, and the server's log ----------------------------------------------------


@pytest.fixture
def streamlit_server(secret, trained_demo, tmp_path):
    """`streamlit run` (debug logging) on the secret database; yields (base URL, log file)."""
    log_path = tmp_path / "streamlit.log"
    env = {"GENDER_DB_URL": secret.text(), "GENDER_MODEL_DIR": str(trained_demo[1])}
    with live.streamlit_server(env, log_path, options=("--logger.level", "debug")) as (base, _):
        yield base, log_path


@pytest.mark.slow
def test_the_browser_and_the_server_log_never_see_the_password(secret, streamlit_server, browser):
    base, log_path = streamlit_server
    frames: list[bytes] = []

    def record(websocket):
        for event in ("framereceived", "framesent"):
            websocket.on(
                event, lambda payload: frames.append(payload if isinstance(payload, bytes) else payload.encode())
            )

    pages = [f"?session={secret.session_id}", f"categories?session={secret.session_id}", "model", "monitoring"]
    seen = []
    for locked, paths in ((False, pages), (True, pages[:2])):
        if locked:
            secret.lock(True)  # the running app loses its database: error paths, pool invalidation
        try:
            for path in paths:
                page = browser.new_page()
                page.on("websocket", record)
                page.goto(f"{base}/{path}")
                page.wait_for_selector(live.IDLE, timeout=120_000)
                page.wait_for_timeout(500)
                page.wait_for_selector(live.IDLE, timeout=120_000)
                alerts = page.locator('[data-testid="stAlertContentError"]').count()
                seen.append((locked, path, alerts, page.locator('[data-testid="stException"]').count()))
                assert_clean(f"the HTML of /{path}", page.content())
                assert_clean(f"the text of /{path}", page.inner_text("body"))
                page.close()
        finally:
            if locked:
                secret.lock(False)
    # The pages did their work: no banner while the account was open, one where it was locked.
    assert [alerts for locked, _, alerts, _ in seen] == [0, 0, 0, 0, 1, 1], seen
    assert not any(exceptions for *_, exceptions in seen), seen
    assert len(frames) > 20
    for number, frame in enumerate(frames):
        assert_clean(f"websocket frame {number}", frame)
    server_log = log_path.read_text()
    assert "Runtime state:" in server_log  # a debug message: the log was written at debug level
    assert_clean("the streamlit server log", server_log)


# -- the command line and the model files ---------------------------------------------------------


def cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gender", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        timeout=900,
    )


@pytest.mark.slow
def test_the_command_line_and_the_model_files_never_show_the_password(secret, trained_demo, tmp_path):
    url, unreachable = secret.text(), secret.text(secret.unreachable)
    models, trained = tmp_path / "models", trained_demo[1]
    sample = write_pakdd(tmp_path / "new.csv", ["z1,2014-11-20 10:00:00,2014-11-20 10:05:00,A1/B1/C1/D1/"])
    bad = write_pakdd(tmp_path / "bad.csv", ["z2,2014-11-20 10:00:00,2014-11-19 10:05:00,A1/B1/C1/D1/"])
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    commands = {  # name: (arguments, environment, expected exit status)
        "predict": (["predict", secret.session_id, "--db", url, "--model-dir", trained], None, 0),
        "predict_env": (["predict", secret.session_id, "--model-dir", trained], {"GENDER_DB_URL": url}, 0),
        "count": (["count", secret.session_id, "B00001", "--db", url], None, 0),
        "train": (["train", "--db", url, "--model-dir", models], None, 0),
        "score": (["score", "--unlabelled", "--out", tmp_path / "s.csv", "--db", url, "--model-dir", trained], None, 0),
        "setup": (["setup", "--db", url, "--model-dir", trained], None, 0),
        "import_pakdd": (["import-pakdd", sample, "--db", url], None, 0),
        "bad_file": (["import-pakdd", bad, "--db", url], None, 1),
        "predict_down": (["predict", secret.session_id, "--db", unreachable, "--model-dir", trained], None, 1),
        "count_down": (["count", secret.session_id, "B00001"], {"GENDER_DB_URL": unreachable}, 1),
        "train_down": (["train", "--db", unreachable, "--model-dir", tmp_path / "none"], None, 1),
        "import_down": (["import-pakdd", sample, "--db", unreachable], None, 1),
        "import_db_down": (["import-db", unreachable, "--db", copy], None, 1),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(cli, *args, env=env) for name, (args, env, _) in commands.items()}
        results = {name: future.result() for name, future in futures.items()}
    commands["import_db"] = (["import-db", url, "--db", copy], None, 0)  # after import_pakdd: 301 sessions
    results["import_db"] = cli(*commands["import_db"][0])
    for name, result in results.items():
        expected = commands[name][2]
        assert result.returncode == expected, f"{name}: exit {result.returncode}\n{result.stderr}"
        assert "Traceback" not in result.stderr, f"{name}:\n{result.stderr}"
        assert_clean(f"the output of {name}", result.stdout + result.stderr)
        if expected == 1:
            last = result.stderr.strip().splitlines()[-1]
            assert last.startswith("error: "), f"{name}: {result.stderr}"
            if name != "bad_file":
                assert f"{secret.user}:***@" in last, last  # the database is named, its password hidden
    assert json.loads(results["predict"].stdout)["SESSION_ID"] == secret.session_id
    assert json.loads(results["count"].stdout)["SESSION_ID"] == secret.session_id
    assert db.table_counts(db.connect(copy))["sessions"] == 301  # the demo and z1

    # The model files: the metadata names the database with the password hidden, and so does each run.
    files = [models / "metadata.json", *sorted((models / "runs").glob("*.json"))]
    assert len(files) >= 2
    for path in files:
        assert_clean(str(path.relative_to(tmp_path)), path.read_text())
    assert json.loads(files[0].read_text())["database"] == secret.redacted
    for path in models.iterdir():  # the pickled pipelines too
        if path.is_file():
            assert_clean(path.name, path.read_bytes())


# -- exceptions raised by the library -----------------------------------------------------------------


def everything_about(exc: BaseException) -> str:
    """The message, repr and traceback of an exception and of every exception chained to it, shown or not."""
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts += [str(exc), repr(exc), *traceback.format_exception(exc), repr(getattr(exc, "args", ()))]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def test_library_errors_never_hold_the_password(secret, tmp_path):
    from gender.train import train

    unknown_db = secret.url.set(database="no_such_database_here")
    wrong = secret.url.set(password="Wrong-" + PASSWORD)
    no_driver = secret.url.set(drivername="mysql+nosuchdriver")
    calls = {
        "check_schema unreachable": lambda: db.check_schema(db.connect(secret.unreachable)),
        "check_schema wrong password": lambda: db.check_schema(db.connect(wrong)),
        "check_schema unknown database": lambda: db.check_schema(db.connect(unknown_db)),
        "no driver": lambda: db.connect(no_driver),
        "lookup unreachable": lambda: db.get_session(db.connect(secret.unreachable), secret.session_id),
        "import_db from unreachable": lambda: ingest.import_db(
            db.connect(f"sqlite:///{tmp_path}/c.db"), secret.unreachable
        ),
        "import_db into unreachable": lambda: ingest.import_db(db.connect(secret.unreachable), secret.url),
        "train unreachable": lambda: train(db.connect(secret.unreachable), tmp_path / "models"),
    }
    for name, call in calls.items():
        with pytest.raises(GenderError) as raised:
            call()
            pytest.fail(f"{name}: no error")
        assert f"{secret.user}:***@" in str(raised.value), f"{name}: {raised.value}"
        assert_clean(f"the error of {name}", everything_about(raised.value))
    for url in (secret.url, wrong):
        assert_clean("an engine's repr", repr(db.connect(url)))


def test_a_malformed_url_option_is_one_clear_line(secret):
    result = cli("count", "u1", "B1", "--db", secret.text() + "?connect_timeout=abc")
    assert_clean("the output of a bad URL option", result.stdout + result.stderr)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
