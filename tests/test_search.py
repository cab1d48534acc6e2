"""Finding a session among many: ids suggested as one types (db.suggest_session_ids, the search
box of ui.session_search) and sessions listed by filters (db.find_sessions, the Find page).

On SQLite and MariaDB, with ids of every odd kind (LIKE wildcards, the escape character, quotes,
backslashes, control characters, non-ASCII, the last code point, 255 characters); the query plan
must be a range of the primary key on both. The box is driven in AppTest (its state sent as the
browser sends it) and typed into in Chromium.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from streamlit.components.v2.bidi_component.main import _make_trigger_id
from streamlit.proto.WidgetStates_pb2 import WidgetState

from gender import db, ingest, synth
from tests import live
from tests.test_app import make_app

ODD_IDS = [
    "ab",
    "ab\tx",  # sorts before "ab" in MariaDB's padding *_bin collations
    "ab\n2",
    "ab x",
    "abc",
    "AB1",  # case matters
    "a%b",
    "a%%",
    "a_b",
    "a!b",  # the LIKE escape character used
    "a!%",
    "a\\b",
    "a\\%",
    "O'Brien",
    "O'Bri\"en`",
    "sesión-ñandú",
    "sesion-plain",
    "会话-二〇一四",
    "会话-x",
    "🙂-emoji",
    "\U0010ffffz",  # the last code point: no "next" text above its prefix
    "\U0010ffff",
    "\ud7ff1",  # the character before the surrogates: the next one is U+E000
    "\ue000x",
    "x" * db.SESSION_ID_LENGTH,
    "x" * (db.SESSION_ID_LENGTH - 1) + "y",
    *(f"lim{i:02d}" for i in range(30)),
]

CATEGORIES = [
    ("A1", "B1", "C1", "D1"),
    ("A1", "B2", "C2", "D2"),
    ("A2", "B3", "C3", "50%_off'"),
]


def starting(prefix: str) -> set[str]:
    return {session_id for session_id in ODD_IDS if session_id.startswith(prefix)}


@pytest.fixture
def odd(engine):
    """The engine of a database holding ODD_IDS: gender by position, one view each of CATEGORIES[i % 3],
    a day apart from 2014-11-01 on."""
    sessions, views = [], []
    for i, session_id in enumerate(ODD_IDS):
        start = datetime(2014, 11, 1, 12) + timedelta(days=i)
        sessions.append(
            {
                "session_id": session_id,
                "start_time": start,
                "end_time": start + timedelta(minutes=5),
                "gender": ("male", "female", None)[i % 3],
            }
        )
        views.extend(ingest.view_rows(session_id, [CATEGORIES[i % 3]]))
    ingest.write_all(engine, [(sessions, views)])
    return engine


# -- suggestions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "a",
        "ab",
        "ab ",
        "ab\t",
        "AB",
        "a%",
        "a_",
        "a!",
        "a\\",
        "a\\%",
        "O'",
        "O'Bri\"",
        "sesi",
        "sesió",
        "会话",
        "🙂",
        "\U0010ffff",
        "\ud7ff",
        "x" * 200,
        "x" * db.SESSION_ID_LENGTH,
        "x" * (db.SESSION_ID_LENGTH - 1),
        "zzz",
        "%",
        "_",
    ],
    ids=repr,
)
def test_suggestions_are_the_ids_that_start_with_the_text(odd, typed):
    found = db.suggest_session_ids(odd, typed)
    assert set(found) == starting(typed)
    assert len(found) == len(set(found)) <= db.SUGGESTIONS


def test_suggestions_are_the_first_twenty_in_order(odd):
    assert db.suggest_session_ids(odd, "lim") == [f"lim{i:02d}" for i in range(db.SUGGESTIONS)]
    assert db.suggest_session_ids(odd, "lim", limit=3) == ["lim00", "lim01", "lim02"]
    assert db.suggest_session_ids(odd, "lim1") == [f"lim{i}" for i in range(10, 20)]
    if odd.dialect.name == "sqlite":  # code-point order (MariaDB pads with spaces: "ab\tx" < "ab")
        assert db.suggest_session_ids(odd, "a") == sorted(starting("a"))[: db.SUGGESTIONS]


def test_blank_long_or_odd_input_suggests_nothing_and_blanks_around_are_dropped(odd):
    for typed in ("", "   ", "\t", None, 42, "x" * (db.SESSION_ID_LENGTH + 1), "\udcff"):
        assert db.suggest_session_ids(odd, typed) == []
    assert set(db.suggest_session_ids(odd, "  lim0\n")) == {f"lim0{i}" for i in range(10)}
    assert set(db.suggest_session_ids(odd, "ab ")) == {"ab x"}  # a blank of its own is kept when it matches


def test_nothing_changes_the_database(odd):
    before = db.table_counts(odd)
    for typed in ("'; DROP TABLE session; --", "%' OR '1'='1", "\\'; DELETE FROM session; --"):
        assert db.suggest_session_ids(odd, typed) == []
    assert db.table_counts(odd) == before


def explain(engine, conn, query) -> list:
    """The database's plan of `query`, its parameters bound as the driver binds them."""
    compiled = query.compile(dialect=engine.dialect)
    if engine.dialect.name == "sqlite":
        args = tuple(compiled.params[name] for name in compiled.positiontup)
        return [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), args)]
    return [dict(row) for row in conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params).mappings()]


def test_the_plan_is_a_range_of_the_primary_key(engine):
    synth.create_demo(engine, sessions=3_000, seed=3)
    for typed in ("u12", "a%_'\\!", "\U0010ffff", "é", "x" * db.SESSION_ID_LENGTH):
        with engine.connect() as conn:
            plan = explain(engine, conn, db.suggestion_query(engine, conn, typed))
        if engine.dialect.name == "sqlite":
            assert len(plan) == 1, plan
            assert plan[0].startswith("SEARCH session USING COVERING INDEX sqlite_autoindex_session_1 (session_id>?")
            assert "TEMP B-TREE" not in plan[0]  # read in index order: no sort
        else:
            [row] = plan
            assert (row["type"], row["key"]) == ("range", "PRIMARY"), row
            assert "filesort" not in (row["Extra"] or "")
            assert int(row["rows"]) <= 1_100  # the range (u12000..u12999 at most), not the 3,000 rows
    assert db.suggest_session_ids(engine, "u12")[:3] == ["u12000", "u12001", "u12002"]


# -- filters -------------------------------------------------------------------------------------


def log(engine, session_id: str, model_id: str, prediction: str, at: datetime) -> None:
    db.log_predictions(
        engine,
        [
            {
                "session_id": session_id,
                "ab_group": "treatment",
                "model_id": model_id,
                "p_male": 0.9 if prediction == "male" else 0.1,
                "prediction": prediction,
                "threshold": 0.5,
                "served_at": at,
                "served_via": "page",
            }
        ],
    )


def ids(found: db.FoundSessions) -> list[str]:
    return list(found.sessions["session_id"])


def expected(keep) -> list[str]:
    kept = [session_id for i, session_id in enumerate(ODD_IDS) if keep(i, session_id)]
    return sorted(kept)


def test_filters_by_recorded_gender_and_category_at_any_level(odd):
    male = db.find_sessions(odd, db.SessionFilter(gender="male"), limit=1_000)
    assert set(ids(male)) == {s for i, s in enumerate(ODD_IDS) if i % 3 == 0}
    assert male.total == len(male.sessions) and not male.more
    unknown = db.find_sessions(odd, db.SessionFilter(gender="unknown"), limit=1_000)
    assert set(ids(unknown)) == {s for i, s in enumerate(ODD_IDS) if i % 3 == 2}
    assert unknown.sessions["gender"].isna().all()
    for code, position in (("A1", {0, 1}), ("B2", {1}), ("C3", {2}), ("D1", {0}), ("50%_off'", {2})):
        found = db.find_sessions(odd, db.SessionFilter(viewed=code), limit=1_000)
        assert set(ids(found)) == {s for i, s in enumerate(ODD_IDS) if i % 3 in position}, code
    both = db.find_sessions(odd, db.SessionFilter(gender="female", viewed="A1"), limit=1_000)
    assert set(ids(both)) == {s for i, s in enumerate(ODD_IDS) if i % 3 == 1}
    for code in ("50%", "%", "_", "a1", "B", "x" * (db.CATEGORY_LENGTH + 1)):
        assert db.find_sessions(odd, db.SessionFilter(viewed=code)).total == 0, code


def test_filters_by_start_time_and_lists_the_first_in_id_order_with_a_count(odd):
    first = datetime(2014, 11, 1)
    week = db.find_sessions(
        odd, db.SessionFilter(started_from=first + timedelta(days=2), started_before=first + timedelta(days=9))
    )
    assert set(ids(week)) == set(ODD_IDS[2:9])
    assert week.total == 7
    everything = db.find_sessions(odd, db.SessionFilter(), limit=10)
    assert len(everything.sessions) == 10 and everything.total == len(ODD_IDS) and not everything.more
    assert set(ids(everything)) <= set(ODD_IDS)
    columns = ["session_id", "start_time", "end_time", "gender", "predicted", "precomputed"]
    assert list(everything.sessions.columns) == columns
    capped = db.find_sessions(odd, db.SessionFilter(), limit=5, count_limit=12)
    assert len(capped.sessions) == 5 and capped.total == 12 and capped.more


def test_predicted_means_as_last_served(odd):
    t = datetime(2026, 12, 1, 10)
    assert db.find_sessions(odd, db.SessionFilter(predicted="female")).total == 0  # no log yet
    log(odd, "ab", "model-1", "male", t)
    log(odd, "ab", "model-2", "female", t + timedelta(hours=1))  # a retrained model answered later
    log(odd, "abc", "model-1", "female", t)
    log(odd, "a%b", "model-2", "male", t)
    female = db.find_sessions(odd, db.SessionFilter(predicted="female"))
    assert sorted(ids(female)) == sorted(["ab", "abc"])
    assert set(female.sessions["predicted"]) == {"female"}
    male = db.find_sessions(odd, db.SessionFilter(predicted="male"))
    assert ids(male) == ["a%b"]
    listed = db.find_sessions(odd, db.SessionFilter(), limit=1_000).sessions.set_index("session_id")["predicted"]
    assert listed["ab"] == "female" and listed["a%b"] == "male" and listed[["ab x", "lim00"]].isna().all()
    labelled_male_predicted_female = db.SessionFilter(gender="male", predicted="female")
    assert ids(db.find_sessions(odd, labelled_male_predicted_female)) == ["ab"]  # ODD_IDS[0]: male


def test_a_filter_says_what_is_wrong_with_it():
    with pytest.raises(ValueError):
        db.SessionFilter(gender="men")
    with pytest.raises(ValueError):
        db.SessionFilter(predicted="unknown")
    with pytest.raises(ValueError):
        db.SessionFilter(started_from="2014-11-01")
    assert db.SessionFilter().empty and not db.SessionFilter(gender="male").empty


# -- the search box in AppTest ---------------------------------------------------------------------


def search_box(at, key="session_id_search"):
    [box] = [element for element in at.get("bidi_component") if element.proto.component_name.endswith("session_search")]
    return box.proto


def send(at, query=None, picked=None):
    """What the browser sends when the box's text changes (state "query") or an id is picked
    (trigger "picked"): the page's widget states with the box's own."""
    box = search_box(at)
    states = at._tree.get_widget_states()
    if query is not None:
        states.widgets.append(WidgetState(id=box.id, json_value=json.dumps({"query": query})))
    if picked is not None:
        trigger = _make_trigger_id(box.id, "events")
        states.widgets.append(
            WidgetState(id=trigger, json_trigger_value=json.dumps([{"event": "picked", "value": picked}]))
        )
    return at._run(states)


def box_data(at) -> dict:
    return json.loads(search_box(at).json)


def test_the_search_box_suggests_and_opens_a_session(trained_demo, monkeypatch):
    url, model_dir = trained_demo
    monkeypatch.setenv("GENDER_DB_URL", url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))
    at = make_app()
    assert box_data(at)["suggestions"] == []
    send(at, query="u1001")
    assert not at.exception
    data = box_data(at)
    assert data["query"] == "u1001"
    assert [s["id"] for s in data["suggestions"]] == [f"u1001{i}" for i in range(10)]
    send(at, query="u1")
    assert len(box_data(at)["suggestions"]) == db.SUGGESTIONS and "type more" in box_data(at)["note"]
    send(at, query="<b>nope</b>")
    assert box_data(at)["suggestions"] == [] and box_data(at)["note"] == "No session id starts with this."
    send(at, query="u1001", picked="u10012")
    assert not at.exception
    assert at.text_input(key="session_id").value == "u10012"
    assert at.query_params["session"] in ("u10012", ["u10012"])
    assert any(m.label == "Predicted gender" for m in at.metric)


def test_the_find_page_lists_sessions(trained_demo, monkeypatch):
    url, model_dir = trained_demo
    monkeypatch.setenv("GENDER_DB_URL", url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))
    at = make_app("find")
    assert "sessions match (all sessions)" in " ".join(m.value for m in at.markdown)
    at.selectbox(key="find_gender").set_value("male")
    at.text_input(key="find_viewed").set_value("A00001")
    at.button[0].click().run()  # the form's Find button
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "labelled male, viewed `A00001`" in text
    engine = db.connect(url)
    found = db.find_sessions(engine, db.SessionFilter(gender="male", viewed="A00001"))
    assert f"**{found.total:,}** sessions match" in text or f"**more than {found.total:,}**" in text
    at.text_input(key="find_viewed").set_value("[x](javascript:alert(1))")
    at.button[0].click().run()
    assert "No session matches: labelled male, viewed `[x](javascript:alert(1))`." in [w.value for w in at.warning]


# -- the search box in Chromium --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(trained_demo, tmp_path_factory):
    url, model_dir = trained_demo
    log_path = tmp_path_factory.mktemp("search-server") / "streamlit.log"
    with live.streamlit_server({"GENDER_DB_URL": url, "GENDER_MODEL_DIR": str(model_dir)}, log_path) as (base, _):
        yield base


def answered(page, typed: str) -> None:
    page.wait_for_function(
        """typed => {
            const box = document.querySelector('.gl-search-input');
            const status = document.querySelector('.gl-search-status');
            return box.value === typed && status.dataset.final === 'true';
        }""",
        arg=typed,
        timeout=30_000,
    )


@pytest.mark.slow
def test_typing_a_prefix_in_chromium_suggests_ids_and_picking_one_opens_it(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    try:
        page.goto(server)
        page.wait_for_selector(live.IDLE, timeout=120_000)
        box = page.get_by_role("combobox", name="Find a session: type the start of its id")
        box.click()
        box.press_sequentially("u1002", delay=60)
        answered(page, "u1002")
        options = page.get_by_role("option")
        assert options.all_inner_texts() == [f"u1002{i}" for i in range(10)]
        box.press("ArrowDown")
        box.press("ArrowDown")
        assert page.locator('[role="option"][aria-selected="true"]').inner_text() == "u10021"
        box.press("Backspace")  # "u100": more than twenty, the first twenty shown
        answered(page, "u100")
        assert options.count() == db.SUGGESTIONS
        assert "type more" in page.locator(".gl-search-status").inner_text()
        box.press_sequentially("3", delay=60)
        answered(page, "u1003")
        options.filter(has_text="u10037").click()
        page.wait_for_url("**/?session=u10037", timeout=60_000)
        page.wait_for_selector(live.IDLE, timeout=120_000)
        page.wait_for_selector(".js-plotly-plot .waterfalllayer .trace", timeout=60_000)
        assert page.get_by_label("Session id").input_value() == "u10037"
        page.wait_for_function("() => document.body.innerText.includes('Predicted gender')", timeout=60_000)

        box.fill("<img src=x onerror=alert(1)>")  # shown as typed, never parsed; nothing matches
        answered(page, "<img src=x onerror=alert(1)>")
        assert page.locator(".gl-search-status").inner_text() == "No session id starts with this."
        assert page.locator(".gl-search img").count() == 0
        assert page.locator('[data-testid="stException"]').count() == 0

        page.get_by_role("button", name="Random labelled session").click()  # the buttons still work
        page.wait_for_function("() => !location.search.includes('u10037')", timeout=60_000)
        page.wait_for_selector(live.IDLE, timeout=120_000)
        assert page.get_by_label("Session id").input_value() != "u10037"
    finally:
        page.close()


@pytest.mark.slow
def test_the_find_page_opens_a_session_in_chromium(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    try:
        page.goto(f"{server}/find")
        page.wait_for_selector(live.IDLE, timeout=120_000)
        page.get_by_label("Viewed category (any level)").fill("B00002")
        page.get_by_role("button", name="Find").click()
        page.wait_for_function("() => document.body.innerText.includes('viewed B00002')", timeout=60_000)
        page.wait_for_selector(live.IDLE, timeout=120_000)
        first = page.locator('[data-testid="stDataFrame"] canvas, [data-testid="stDataFrame"]').first
        first.wait_for(timeout=30_000)
        # the first row's selection box: the data grid draws on a canvas, so click where it sits
        grid = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
        page.mouse.click(grid["x"] + 15, grid["y"] + 35 + 18)
        page.wait_for_url("**/?session=*", timeout=60_000)
        page.wait_for_selector(live.IDLE, timeout=120_000)
        page.wait_for_selector(".js-plotly-plot .waterfalllayer .trace", timeout=60_000)
        opened = page.get_by_label("Session id").input_value()
        assert opened and f"session={opened}" in page.url
        page.wait_for_function("() => document.body.innerText.includes('Predicted gender')", timeout=60_000)
        page.locator('[data-testid="stSidebarNavLink"]', has_text="Find").click()  # back: it stays there
        page.wait_for_url("**/find*", timeout=60_000)
        page.wait_for_selector(live.IDLE, timeout=120_000)
        page.wait_for_timeout(1_000)
        assert "/find" in page.url and "Find sessions" in page.inner_text("body")
    finally:
        page.close()
