"""Finding a session among many: ids suggested as one types (db.suggest_session_ids, the search
box of ui.session_search) and sessions listed by filters (db.find_sessions, the Find page).

On SQLite and MariaDB, with ids of every odd kind (LIKE wildcards, the escape character, quotes,
backslashes, control characters, non-ASCII, the last code point, 255 characters); the query plan
must be a range of the primary key on both. The box asks the route GET /_gender/suggest
(gender/suggest.py) as one types, with a token the page mints: the route is called through a real
server with a real HTTP client (no, a forged, an expired token: a JSON 401; the right one: exactly
db.suggest_session_ids' ids), the box is typed into in Chromium (its answers come from the route,
with no rerun; when the route fails or refuses the token, from Python), and its fallback, Python's
fragment, is driven in AppTest (its state sent as the browser sends it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta

import httpx
import pytest
import uvicorn
from streamlit import config as streamlit_config
from streamlit.components.v2.bidi_component.main import _make_trigger_id
from streamlit.proto.WidgetStates_pb2 import WidgetState

from gender import api, db, ingest, suggest, synth
from tests import live
from tests.hostile_inputs import HOSTILE
from tests.test_access import dashboard
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
    pasted = db.find_sessions(odd, db.SessionFilter(viewed=" B2\n"), limit=1_000)  # as the Count form takes it
    assert set(ids(pasted)) == {s for i, s in enumerate(ODD_IDS) if i % 3 == 1}


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


# -- the route the box asks as one types (gender/suggest.py) ---------------------------------------


def test_a_token_is_this_process_s_signed_expiry_and_nothing_else():
    now = time.time()
    token = suggest.mint(now)
    assert suggest.valid(token, now) and suggest.valid(token, now + suggest.TOKEN_SECONDS - 2)
    assert not suggest.valid(token, now + suggest.TOKEN_SECONDS + 1)  # expired
    expiry, signature = token.split(".")
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    forged = hmac.new(b"another process's key", f"gender-lens session search until {expiry}".encode(), hashlib.sha256)
    for wrong in (
        None,
        "",
        42,
        f"{expiry}.{flipped}",  # tampered
        f"{int(expiry) + 86_400}.{signature}",  # a later expiry under the old signature
        f"{expiry}.{forged.hexdigest()}",  # signed with another key
        f"{expiry}.{signature.upper()}",
        f" {token}",
        f"{token}\n",
        token + "0",
        "٣" * 10 + "." + signature,  # other digits
        "x" * 10_000,
    ):
        assert not suggest.valid(wrong, now), wrong


@contextmanager
def api_server(base_url_path: str = ""):
    """The HTTP service in front of a stand-in dashboard (`api.ApiFirst`), on a real uvicorn server
    in this process, so that the test can mint tokens with the server's key (and expired ones)."""

    async def dashboard(scope, receive, send):
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"the dashboard"})

    saved = streamlit_config.get_option("server.baseUrlPath")
    streamlit_config.set_option("server.baseUrlPath", base_url_path)
    try:
        app = api.ApiFirst(dashboard, api.create_app(api.Service()))
        # bound as Streamlit binds it (protocol number 0: asyncio's own loop would leave Nagle on),
        # on the loop uvicorn picks as under `streamlit run` (uvloop, which turns Nagle off)
        listening = socket.socket(socket.AF_INET)
        listening.bind(("127.0.0.1", 0))
        listening.listen(100)
        port = listening.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                yield client, server
        finally:
            server.should_exit = True
            thread.join(30)
            listening.close()
    finally:
        streamlit_config.set_option("server.baseUrlPath", saved)


def asked(client: httpx.Client, text: str, token: str | None, path: str = suggest.ROUTE) -> httpx.Response:
    headers = {suggest.HEADER: token} if token is not None else {}
    return client.get(path, params={"q": text}, headers=headers)


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"ERROR": suggest.REFUSED, "STATUS": 401}
    assert response.headers["cache-control"] == "no-store"


TYPED = ["a", "ab", "ab\t", "AB", "a%", "a_", "a!", "a\\", "O'", "O'Bri\"", "sesió", "会话", "🙂", "\U0010ffff", "lim"]


def test_the_route_answers_a_token_s_holder_exactly_what_the_box_shows(odd, monkeypatch):
    monkeypatch.setenv("GENDER_DB_URL", odd.url.render_as_string(hide_password=False))
    with api_server() as (client, _):
        for token in (None, "", "garbage", suggest.mint(time.time() - suggest.TOKEN_SECONDS - 5)):  # ... expired
            assert_refused(asked(client, "lim", token))
        real = suggest.mint()
        expiry, signature = real.split(".")
        assert_refused(asked(client, "lim", f"{expiry}.{signature[::-1]}"))
        assert_refused(asked(client, "lim", f"{int(expiry) + 1}.{signature}"))
        assert_refused(client.get(suggest.ROUTE, params={"q": "lim"}, headers={"Authorization": f"Bearer {real}"}))

        for typed in TYPED:
            response = asked(client, typed, real)
            assert response.status_code == 200 and response.headers["content-type"] == "application/json"
            assert response.headers["cache-control"] == "no-store"
            body = response.json()
            assert [s["id"] for s in body["suggestions"]] == db.suggest_session_ids(odd, typed), typed
            assert body == suggest.answer(typed, lambda: odd)  # ids, labels and note: the fragment's
        assert [s["id"] for s in asked(client, "lim", real).json()["suggestions"]] == [
            f"lim{i:02d}" for i in range(db.SUGGESTIONS)
        ]
        labels = {s["id"]: s["label"] for s in asked(client, "ab", real).json()["suggestions"]}
        assert labels["ab\tx"] == "ab\\tx" and labels["ab\n2"] == "ab\\n2" and labels["ab x"] == "ab x"
        assert asked(client, "lim", real).json()["note"].startswith("The first 20 ids")
        assert asked(client, "zzz", real).json()["note"] == "No session id starts with this."
        assert asked(client, "", real).json() == {"query": "", "suggestions": [], "note": None}
        assert client.post(suggest.ROUTE, headers={suggest.HEADER: real}).json()["STATUS"] == 405


def test_the_route_answers_hostile_text_in_json(odd, monkeypatch):
    monkeypatch.setenv("GENDER_DB_URL", odd.url.render_as_string(hide_password=False))
    before = db.table_counts(odd)
    token = suggest.mint()
    texts = [h.text for h in HOSTILE if h.browser] + ["%2F", "..%2F..%2Fetc", "a/../b", "x" * 5_000, "<b>ab</b>"]
    with api_server() as (client, _):
        for text in texts:
            response = asked(client, text, token)
            assert response.status_code == 200, (text[:40], response.text[:300])
            assert response.headers["content-type"] == "application/json" and "Traceback" not in response.text
            body = response.json()
            assert body["query"] == text
            assert [s["id"] for s in body["suggestions"]] == db.suggest_session_ids(odd, text)
        assert asked(client, "x" * 5_000, token).json()["note"] == "A session id has at most 255 characters."
        # a raw query string as a browser may send it: %2F is a "/" of the text, bad UTF-8 replaced
        for raw, query in (("a%2F..%2Fb", "a/../b"), ("%ff%fe", "\ufffd\ufffd"), ("%", "%"), ("a+b", "a b")):
            response = client.get(f"{suggest.ROUTE}?q={raw}", headers={suggest.HEADER: token})
            assert response.status_code == 200 and response.json()["query"] == query
    assert db.table_counts(odd) == before


def test_the_route_follows_the_base_url_path_and_says_when_the_database_does_not_answer(monkeypatch):
    monkeypatch.setenv("GENDER_DB_URL", f"mysql+pymysql://gender:secret-pw@127.0.0.1:{live.free_port()}/ftp")
    with api_server("/lens/") as (client, _):
        token = suggest.mint()
        assert suggest.route_path() == "/lens/_gender/suggest"
        response = asked(client, "u1", token, "/lens/_gender/suggest")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "query": "u1",
            "suggestions": [],
            "note": "The database does not answer: no suggestions.",
        }
        assert "secret-pw" not in response.text
        assert_refused(asked(client, "u1", None, "/lens/_gender/suggest"))
        assert asked(client, "u1", token).text == "the dashboard"  # outside the base path: not the route
    assert suggest.route_path() == suggest.ROUTE


def test_the_route_s_answer_leaves_at_once_on_a_kept_alive_connection(odd, monkeypatch):
    """A server socket bound as Streamlit binds it keeps Nagle's algorithm on under asyncio's own
    loop: an answer's body would wait ~40 ms for the client's delayed acknowledgement of its head,
    on every request of a kept-alive connection. uvloop (requirements.txt, picked by uvicorn as
    under `streamlit run`) turns it off on every connection: TCP_NODELAY on the accepted socket.
    (Not timed here: benchmarks/search.py times suggestions in a browser; a bound would fail under load.)"""
    monkeypatch.setenv("GENDER_DB_URL", odd.url.render_as_string(hide_password=False))
    token = suggest.mint()
    with api_server() as (client, server), socket.create_connection((client.base_url.host, client.base_url.port)) as c:
        for i in range(2):  # the second on the same connection: kept alive
            c.sendall(f"GET {suggest.ROUTE}?q=lim{i} HTTP/1.1\r\nHost: x\r\n{suggest.HEADER}: {token}\r\n\r\n".encode())
            received = b""
            while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < length(received):
                received += c.recv(65536)
            assert received.startswith(b"HTTP/1.1 200")
        (accepted,) = server.server_state.connections
        nagle_off = accepted.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert nagle_off


def length(response: bytes) -> int:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    return int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])


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
    # What the box's script asks as one types: the route and a pass to it (this process's key).
    assert box_data(at)["suggestUrl"] == suggest.ROUTE and suggest.valid(box_data(at)["token"])
    # Where no script runs (and wherever the route fails), the text goes to Python: the fallback.
    send(at, query="u1001")
    assert not at.exception
    data = box_data(at)
    assert data["query"] == "u1001"
    assert [s["id"] for s in data["suggestions"]] == [f"u1001{i}" for i in range(10)]
    assert {k: data[k] for k in ("query", "suggestions", "note")} == suggest.answer("u1001", lambda: db.connect(url))
    send(at, query="u1")
    assert len(box_data(at)["suggestions"]) == db.SUGGESTIONS and "type more" in box_data(at)["note"]
    send(at, query="<b>nope</b>")
    assert box_data(at)["suggestions"] == [] and box_data(at)["note"] == "No session id starts with this."
    send(at, query="u1001", picked="u10012")
    assert not at.exception
    assert at.text_input(key="session_id").value == "u10012"
    assert at.query_params["session"] in ("u10012", ["u10012"])
    assert any(m.label == "Predicted gender" for m in at.metric)


def search_boxes(at) -> list:
    return [element for element in at.get("bidi_component") if element.proto.component_name.endswith("session_search")]


def test_only_a_page_past_the_access_gate_gets_a_token(trained_demo, monkeypatch):
    url, model_dir = trained_demo
    monkeypatch.setenv("GENDER_DB_URL", url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("GENDER_ALLOWED_USERS", "ana@shop.example")
    monkeypatch.delenv("GENDER_API_TOKENS_SHA256", raising=False)
    for user in (None, {"is_logged_in": False}, {"is_logged_in": True, "email": "bob@shop.example"}):
        at = dashboard(user)
        assert not search_boxes(at) and "token" not in live.page_text(at), user
    at = dashboard({"is_logged_in": True, "email": "ana@shop.example"})
    assert suggest.valid(box_data(at)["token"])


def test_the_find_page_lists_sessions(trained_demo, monkeypatch):
    url, model_dir = trained_demo
    monkeypatch.setenv("GENDER_DB_URL", url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))
    at = make_app("find")
    assert "sessions** match (all sessions)" in " ".join(m.value for m in at.markdown)
    first, last = db.start_dates(db.connect(url))  # the calendars span the logs' days, not today's decade
    for box in ("find_from", "find_until"):
        assert (at.date_input(key=box).min, at.date_input(key=box).max) == (first, last)
    assert first.year == 2014
    at.selectbox(key="find_gender").set_value("male")
    at.text_input(key="find_viewed").set_value("A00001")
    at.button[0].click().run()  # the form's Find button
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "labelled male, viewed `A00001`" in text
    engine = db.connect(url)
    found = db.find_sessions(engine, db.SessionFilter(gender="male", viewed="A00001"))
    assert f"**{found.total:,} sessions** match" in text or f"**more than {found.total:,} sessions**" in text
    at.switch_page("pages/predict.py").run()  # as after opening a listed session, and back
    at.switch_page("pages/find.py").run()
    assert (at.selectbox(key="find_gender").value, at.text_input(key="find_viewed").value) == ("male", "A00001")
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    assert "labelled male, viewed `A00001`" in " ".join(m.value for m in at.markdown)
    at.text_input(key="find_viewed").set_value("[x](javascript:alert(1))")
    at.button[0].click().run()
    assert "No session matches: labelled male, viewed `[x](javascript:alert(1))`." in [w.value for w in at.warning]
    at.text_input(key="find_viewed").set_value("")
    at.date_input(key="find_from").set_value(last)
    at.date_input(key="find_until").set_value(first)
    at.button[0].click().run()
    assert (
        f"No session matches: labelled male, started {last} to {first} (the first date is after the last: swap them)."
        in [w.value for w in at.warning]
    )


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


class Watched:
    """What a page sends while one types: its requests to the route, and the messages it sends
    Streamlit over its websocket (a rerun, a widget's value: none while the route answers)."""

    def __init__(self, page):
        self.routed, self.statuses, self.frames = [], [], []
        page.on("request", lambda request: self.routed.append(request) if suggest.ROUTE in request.url else None)
        page.on(
            "response",
            lambda response: self.statuses.append(response.status) if suggest.ROUTE in response.url else None,
        )
        page.on("websocket", lambda ws: ws.on("framesent", lambda payload: self.frames.append(payload)))


def open_box(page, server: str):
    page.goto(server)
    page.wait_for_selector(live.IDLE, timeout=120_000)
    box = page.get_by_role("combobox", name="Find a session: type the start of its id")
    box.click()
    return box


@pytest.mark.slow
def test_typing_a_prefix_in_chromium_suggests_ids_and_picking_one_opens_it(server, browser, trained_demo):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    watched = Watched(page)
    try:
        box = open_box(page, server)
        page.wait_for_timeout(500)  # the page's own messages sent
        frames = len(watched.frames)
        box.press_sequentially("u1002", delay=60)
        answered(page, "u1002")
        options = page.get_by_role("option")
        assert options.all_inner_texts() == [f"u1002{i}" for i in range(10)]
        # from the route, one question at a time, the last for the text in the box; no rerun
        assert 1 <= len(watched.routed) <= len("u1002") and watched.routed[-1].url.endswith("?q=u1002")
        assert set(watched.statuses) == {200}
        assert len(watched.frames) == frames, watched.frames[frames:]

        # the page's token, as the script sent it: good for exactly these ids, and nothing else is
        token = watched.routed[-1].headers[suggest.HEADER.lower()]
        demo = db.connect(trained_demo[0])
        with httpx.Client(base_url=server, timeout=60) as client:
            body = asked(client, "u100", token).json()
            assert [s["id"] for s in body["suggestions"]] == db.suggest_session_ids(demo, "u100")
            assert len(body["suggestions"]) == db.SUGGESTIONS
            expiry, signature = token.split(".")
            for wrong in (None, f"{expiry}.{signature[::-1]}", f"{int(expiry) + 60}.{signature}", suggest.mint()):
                assert_refused(asked(client, "u100", wrong))  # the last: this process's key, not the server's
        demo.dispose()

        box.press("ArrowDown")
        box.press("ArrowDown")
        assert page.locator('[role="option"][aria-selected="true"]').inner_text() == "u10021"
        box.press("Backspace")  # "u100": more than twenty, the first twenty shown
        answered(page, "u100")
        assert options.count() == db.SUGGESTIONS
        assert "type more" in page.locator(".gl-search-status").inner_text()
        box.press_sequentially("3", delay=60)
        answered(page, "u1003")
        assert len(watched.frames) == frames  # still no rerun
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

        page.get_by_role("button", name="Labelled").click()  # the buttons still work
        page.wait_for_function("() => !location.search.includes('u10037')", timeout=60_000)
        page.wait_for_selector(live.IDLE, timeout=120_000)
        assert page.get_by_label("Session id").input_value() != "u10037"
    finally:
        page.close()


def routed(url: str) -> bool:
    return suggest.ROUTE in url


@pytest.mark.slow
def test_without_the_route_python_answers_in_chromium(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    watched = Watched(page)
    try:
        # the route unreachable: each text goes to Python, and its answer is shown
        page.route(routed, lambda route: route.abort())
        box = open_box(page, server)
        frames = len(watched.frames)
        box.press_sequentially("u1004", delay=60)
        answered(page, "u1004")
        assert page.get_by_role("option").all_inner_texts() == [f"u1004{i}" for i in range(10)]
        assert watched.routed and len(watched.frames) > frames  # asked the route, then Python (a rerun)

        # the token refused: Python answers, with the same ids and note
        page.unroute(routed)
        page.route(
            routed,
            lambda route: route.continue_(headers={**route.request.headers, suggest.HEADER.lower(): "forged"}),
        )
        watched.routed.clear()
        box = open_box(page, server)
        box.press_sequentially("u1005", delay=60)
        answered(page, "u1005")
        assert page.get_by_role("option").all_inner_texts() == [f"u1005{i}" for i in range(10)]
        assert 401 in watched.statuses
        box.press_sequentially("7", delay=60)
        answered(page, "u10057")
        assert page.get_by_role("option").all_inner_texts() == ["u10057"]
        assert page.locator('[data-testid="stException"]').count() == 0
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
