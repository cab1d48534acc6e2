"""Hostile inputs (tests/hostile_inputs.py) through the library, the CLI and the pages, on SQLite and MariaDB.

Every input must get the UNKNOWN_SESSION_ID answer, COUNT 0 or one clear message (only blanks
around a real id find that session), never a traceback, and must leave the `session` and
`product` tables exactly as they were. One small data set per backend is imported once and
shared read-only by the whole module; each test checks the row counts afterwards, and the last
test compares the content with what was imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

import ui
from gender import artifact, db, ingest, predict, synth
from gender.answers import UNKNOWN
from gender.config import parse_url
from gender.errors import GenderError
from tests import live, test_app
from tests.conftest import PROJECT, _mysql_database, write_pakdd
from tests.hostile_inputs import HOSTILE, VALID_CATEGORY, VALID_COUNT, VALID_ID, Hostile

TIMEOUT = 120  # an AppTest's first run loads the models and shap
BROWSER_SAFE = [h for h in HOSTILE if h.browser]
ON_ARGV = [h for h in HOSTILE if h.argv]  # a NUL cannot be passed in argv: those are library and page cases only
# Through the CLI on both databases: what MariaDB's dialect, charset or collation could read otherwise
# than SQLite (SQL, quotes and escapes, LIKE's wildcards, case, width and blanks, 4-byte and lone
# surrogate characters, a length past the column). The rest (markup, paths, numbers, controls) takes
# the CLI's path to the database as these do, so it runs on SQLite alone; every input goes through
# the library on both (test_library).
ON_BOTH = [
    h
    for h in ON_ARGV
    if h.name.startswith(("sql_", "valid_", "long_"))
    or h.name
    in {
        *("single_quote", "double_quote", "all_quotes", "backtick_table", "backslash", "backslashes_n"),
        *("percent", "percent_prefix", "underscore", "underscore_pattern", "upper_case", "category_lower_case"),
        *("emoji", "emoji_after_valid", "zero_width_space", "combining_marks", "fullwidth_digits", "homoglyph"),
        *("lone_surrogate", "empty", "whitespace", "tab"),
    }
]
ON_SQLITE = [h for h in ON_ARGV if h not in ON_BOTH]


@dataclass
class Data:
    """The hostile data set on one backend: its URL, an engine, and what was imported."""

    backend: str
    url: str  # with the password, to hand to the app and the CLI
    engine: Engine
    counts: tuple[int, int]  # sessions, views
    sessions: pd.DataFrame
    views: pd.DataFrame


def row_counts(engine: Engine) -> tuple[int, int]:
    counts = db.table_counts(engine)
    return counts["sessions"], counts["views"]


def _load(url, tmp: Path) -> None:
    """A few hand-written sessions (VALID_ID among them, with VALID_CATEGORY VALID_COUNT times) and 300 demo ones."""
    engine = db.connect(url)
    lines = [
        "u10001,2014-11-14 00:02:14,2014-11-14 00:02:20,A00001/B00001/C00001/D00001/",
        f"{VALID_ID},2014-11-14 00:02:41,2014-11-14 00:16:40,A00002/{VALID_CATEGORY}/C00002/D00002/;"
        f"A00002/{VALID_CATEGORY}/C00003/D00003/;A00002/{VALID_CATEGORY}/C00002/D00009/",
        "u10004,2014-11-19 23:59:41,2014-11-20,A00001/B00001/C00020/D08280/;A00001/B00001/C00020/D08281/",
    ]
    labels = ["female", "male", "female"]
    ingest.import_pakdd(engine, write_pakdd(tmp / "hostile.csv", lines), write_pakdd(tmp / "labels.csv", labels))
    synth.create_demo(engine, sessions=300, seed=2)  # the page's population charts need some people
    engine.dispose()


def _data(backend: str, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"hostile-{backend}")
    if backend == "sqlite":
        urls = iter([parse_url(f"sqlite:///{tmp / 'hostile.db'}")])
    else:
        urls = _mysql_database()  # skips without GENDER_TEST_MYSQL_URL; drops the database afterwards
    url = next(urls)
    _load(url, tmp)
    engine = db.connect(url)
    sessions, views = db.read_sessions(engine, "all")
    assert db.count_category(engine, VALID_ID, VALID_CATEGORY) == VALID_COUNT
    yield Data(backend, url.render_as_string(hide_password=False), engine, row_counts(engine), sessions, views)
    engine.dispose()
    next(urls, None)  # the MariaDB fixture's cleanup


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def data(request, tmp_path_factory):
    yield from _data(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def sqlite_data(tmp_path_factory):
    """The data set on SQLite for the CLI cases of SQLite alone (a copy of its own: seconds to import)."""
    yield from _data("sqlite", tmp_path_factory)


@pytest.fixture(scope="module")
def model_dir(trained_demo):
    return trained_demo[1]  # features come from the session alone: the demo's model serves any database


@pytest.fixture(scope="module")
def model(model_dir):
    return artifact.load(model_dir).treatment


def calm(call):
    """The call's answer, or the GenderError it raised (a clear message); anything else fails the test."""
    try:
        return call()
    except GenderError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message, message
        return exc


# -- the library ----------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE, ids=str)
def test_library(data, model, hostile: Hostile):
    engine = data.engine
    record = calm(lambda: predict.lookup(engine, hostile.text))
    answer = calm(lambda: predict.predict(engine, model, hostile.text))
    assessment = calm(lambda: predict.assess(engine, model, hostile.text))
    if hostile.resolves:
        assert record.session_id == VALID_ID
        assert answer.session_id == VALID_ID and answer.prediction in ("male", "female")
        assert assessment.prediction == answer
    else:
        assert record is None or isinstance(record, GenderError)
        if not isinstance(answer, GenderError):
            assert answer.prediction == UNKNOWN
            json.dumps(answer.as_json())  # the answer can be sent as it is
        assert assessment is None or isinstance(assessment, GenderError)

    # The data layer takes the text as it is: exact matches only, so every one of these counts 0.
    as_session = calm(lambda: db.count_category(engine, hostile.text, VALID_CATEGORY))
    as_category = calm(lambda: db.count_category(engine, VALID_ID, hostile.text))
    assert as_session == 0 or isinstance(as_session, GenderError), f"{hostile.name} as a session id: {as_session}"
    assert as_category == 0 or isinstance(as_category, GenderError), f"{hostile.name} as a category: {as_category}"
    assert row_counts(engine) == data.counts


@pytest.mark.parametrize(
    "value",
    [None, 0, -1, 10003, float("nan"), float("inf"), b"u10003", [VALID_ID], {"session_id": VALID_ID}, object()],
    ids=["none", "zero", "minus_one", "int_of_valid", "nan", "inf", "bytes", "list", "dict", "object"],
)
def test_library_with_values_that_are_not_text(data, model, value):
    """predict, assess and lookup take any object (a JSON body may hold anything): no text, no session."""
    assert predict.lookup(data.engine, value) is None
    assert predict.assess(data.engine, model, value) is None
    answer = predict.predict(data.engine, model, value)
    assert answer.prediction == UNKNOWN and isinstance(answer.session_id, str)
    json.dumps(answer.as_json())
    assert row_counts(data.engine) == data.counts


# -- the command line ---------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    # os.fsencode turns a lone surrogate back into the non-UTF-8 byte a shell would have passed.
    return subprocess.run(
        [os.fsencode(arg) for arg in (sys.executable, "-m", "gender", *args)],
        capture_output=True,
        cwd=PROJECT,
        timeout=300,
    )


def run_cli_cases(data: Data, model_dir: Path, hostiles: list[Hostile]) -> dict:
    """The inputs through `predict` and `count`, run a few at a time (each run is ~2 s of imports)."""
    jobs = {}
    for hostile in hostiles:
        jobs[("predict", hostile.name)] = ("predict", hostile.text, "--db", data.url, "--model-dir", str(model_dir))
        jobs[("count", hostile.name)] = ("count", VALID_ID, hostile.text, "--db", data.url)
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) + 1) as pool:
        futures = {key: pool.submit(run_cli, *args) for key, args in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


@pytest.fixture(scope="module")
def cli_results(data, model_dir):
    return run_cli_cases(data, model_dir, ON_BOTH)


@pytest.fixture(scope="module")
def sqlite_cli_results(sqlite_data, model_dir):
    return run_cli_cases(sqlite_data, model_dir, ON_SQLITE)


def answer_of(result: subprocess.CompletedProcess) -> dict | None:
    """The JSON answer (exit 0), or None after a one-line error (exit 1); fails on anything else."""
    stdout, stderr = result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr + stdout, stderr
    assert result.returncode in (0, 1), f"exit {result.returncode}: {stderr}"
    if result.returncode == 1:
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and stdout == "", stderr
        return None
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    # UTF-8 as typed, but nothing a terminal acts on or hides (ESC, CSI, an RTL override): escaped
    assert lines[0].isprintable(), ascii(lines[0])
    return json.loads(lines[0])


@pytest.mark.slow
@pytest.mark.parametrize("hostile", ON_BOTH, ids=str)
def test_cli(data, cli_results, hostile: Hostile):
    check_cli(data, cli_results, hostile)


@pytest.mark.slow
@pytest.mark.parametrize("hostile", ON_SQLITE, ids=str)
def test_cli_on_sqlite(sqlite_data, sqlite_cli_results, hostile: Hostile):
    check_cli(sqlite_data, sqlite_cli_results, hostile)


def check_cli(data: Data, cli_results: dict, hostile: Hostile) -> None:
    predicted = answer_of(cli_results[("predict", hostile.name)])
    if hostile.resolves:  # blanks around a real id: its answer, never an error
        assert predicted is not None, "a real id with blanks around it got an error"
        assert predicted["SESSION_ID"] == VALID_ID and predicted["PREDICTION"] in ("male", "female")
    elif predicted is not None:  # else UNKNOWN_SESSION_ID, or the one clear error answer_of checked
        assert predicted == {"SESSION_ID": hostile.text.strip(), "PREDICTION": UNKNOWN}
    counted = answer_of(cli_results[("count", hostile.name)])
    if counted is not None:
        assert counted == {"SESSION_ID": VALID_ID, "CATEGORY": hostile.text.strip(), "COUNT": 0}
    assert row_counts(data.engine) == data.counts


# -- the pages (AppTest) --------------------------------------------------------------------------


def assert_calm(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]  # includes the "something went wrong" banner of a hidden bug
    assert "Traceback" not in live.page_text(at)


@pytest.fixture(scope="module")
def apps():
    """One AppTest per backend and page, reused across inputs (a fresh one costs a full first run)."""
    return {}


@pytest.fixture
def app(data, model_dir, apps, monkeypatch):
    """The AppTest of a page on this backend's data, created on first use."""
    monkeypatch.setenv("GENDER_DB_URL", data.url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))

    def of(page: str) -> AppTest:
        key = (data.backend, page)
        if key not in apps:
            at = AppTest.from_file(str(PROJECT / "streamlit_app.py"), default_timeout=TIMEOUT)
            at.switch_page(f"pages/{page}.py")
            at.run()
            assert_calm(at)
            apps[key] = at
        return apps[key]

    return of


def typed_in(at: AppTest, key: str, hostile: Hostile) -> str:
    """What the box holds, without blanks: the input, cut to the box's ui.MAX_TYPED characters."""
    value = at.text_input(key=key).value
    assert hostile.text.startswith(value) and len(value) in (len(hostile.text), ui.MAX_TYPED), (len(value), value[:40])
    return value.strip()


def check_predict_page(at: AppTest, hostile: Hostile) -> None:
    assert_calm(at)
    typed = typed_in(at, "session_id", hostile)
    warnings = [w.value for w in at.warning]
    if not typed:
        assert any("Type a session id" in i.value for i in at.info)
        assert not warnings
    elif hostile.resolves:
        assert {m.label: m.value for m in at.metric}["Predicted gender"] in ("male", "female")
        assert not warnings
    else:
        assert len(warnings) == 1 and warnings[0].startswith("No session `"), warnings
        answer = json.loads(at.json[0].value)
        assert answer == {"SESSION_ID": typed, "PREDICTION": UNKNOWN}


# A lone surrogate cannot reach a page: protobuf (and so a browser) carries UTF-8 only.
@pytest.mark.parametrize("hostile", BROWSER_SAFE, ids=str)
def test_predict_page_typed(data, app, hostile: Hostile):
    at = app("predict")
    at.text_input(key="session_id").set_value(hostile.text).run()
    check_predict_page(at, hostile)
    assert row_counts(data.engine) == data.counts


@pytest.mark.parametrize("hostile", BROWSER_SAFE, ids=str)
def test_predict_page_deep_link(data, app, hostile: Hostile):
    app("predict")  # the environment, and the shared caches warm
    at = AppTest.from_file(str(PROJECT / "streamlit_app.py"), default_timeout=TIMEOUT)
    at.query_params["session"] = hostile.text
    at.run()
    check_predict_page(at, hostile)
    assert row_counts(data.engine) == data.counts


def count_form(at: AppTest, session_id: str, category: str) -> dict:
    answer = test_app.count_form(at, session_id, category)
    assert_calm(at)
    return answer


@pytest.mark.parametrize("hostile", BROWSER_SAFE, ids=str)
def test_categories_page(data, app, hostile: Hostile):
    at = app("categories")

    # The session box, and the count form with the input as the session id.
    at.text_input(key="categories_session").set_value(hostile.text)
    answer = count_form(at, hostile.text, VALID_CATEGORY)
    typed = typed_in(at, "categories_session", hostile)
    no_session = [w.value for w in at.warning if w.value.startswith("No session")]
    if hostile.resolves:
        assert not no_session and at.dataframe[0].value["views"].sum() == 4 * VALID_COUNT
    else:
        assert len(no_session) == (2 if typed else 0), no_session  # the picker's, and the count form's
    expected = VALID_COUNT if hostile.resolves else 0
    assert answer == {
        "SESSION_ID": typed_in(at, "count_session", hostile),
        "CATEGORY": VALID_CATEGORY,
        "COUNT": expected,
    }

    # The count form with the input as the category of a real session.
    answer = count_form(at, VALID_ID, hostile.text)
    assert answer == {"SESSION_ID": VALID_ID, "CATEGORY": typed_in(at, "count_category", hostile), "COUNT": 0}
    assert row_counts(data.engine) == data.counts


# -- markup in a shared link, in a real browser ---------------------------------------------------------


@pytest.fixture(scope="module")
def served(data, model_dir, tmp_path_factory):
    """`streamlit run` on this backend's data; yields the base URL."""
    log = tmp_path_factory.mktemp("hostile-server") / "streamlit.log"
    with live.streamlit_server({"GENDER_DB_URL": data.url, "GENDER_MODEL_DIR": str(model_dir)}, log) as (base, _):
        yield base


@pytest.mark.slow
@pytest.mark.parametrize("data", ["sqlite"], indirect=True)  # what a page renders does not depend on the backend
@pytest.mark.parametrize("hostile", [h for h in HOSTILE if h.markup], ids=str)
@pytest.mark.parametrize("path", ["", "categories"], ids=["predict", "categories"])
def test_markup_in_a_link_is_shown_as_typed(data, served, browser, path, hostile: Hostile):
    """`/?session=[click me](https://…)` is a link anyone can share: the page must echo it, not render it."""
    page = browser.new_page()
    try:
        page.goto(f"{served}/{path}?session={urllib.parse.quote(hostile.text, safe='')}")
        page.wait_for_selector(live.IDLE, timeout=60_000)
        warning = page.locator('[data-testid="stAlertContentWarning"]').first
        warning.wait_for(timeout=30_000)
        shown = warning.inner_text().replace(ui.WORD_JOINER, "")  # invisible: see ui.shown
        assert page.locator('[data-testid="stException"]').count() == 0
        assert hostile.text in shown, f"the warning reads {shown!r}: the input was rendered, not shown"
        main = page.locator('[data-testid="stMain"]')
        assert main.locator('a[href*="example.com"], img[src="x"], .katex').count() == 0
    finally:
        page.close()
    assert row_counts(data.engine) == data.counts


# -- last: the content, not only the counts -----------------------------------------------------------


def test_the_data_is_exactly_as_imported(data):
    """Runs after every other test of this backend (module order): the tables hold what was imported."""
    sessions, views = db.read_sessions(data.engine, "all")
    pd.testing.assert_frame_equal(sessions, data.sessions)
    pd.testing.assert_frame_equal(views, data.views)
    with data.engine.connect() as conn:  # the tables are still there and still tables
        assert conn.execute(text("SELECT COUNT(*) FROM session")).scalar_one() == data.counts[0]
        assert conn.execute(text("SELECT COUNT(*) FROM product")).scalar_one() == data.counts[1]
