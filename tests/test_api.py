"""The HTTP service (gender/api.py) on SQLite and MariaDB: through a real `streamlit run` server and a
real HTTP client, and, for what needs a broken database or a retrain, FastAPI's TestClient.

The answers must be those of the CLI and the Predict page (the same builders), with ids of any
text (a "/" inside travels as %2F), every prediction logged with served_via "api", errors JSON,
and the hostile corpus answered in JSON without a traceback or a changed row.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import httpx
import pymysql
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, MetaData, Table, UniqueConstraint, insert, text
from starlette.routing import Match

from gender import api, artifact, db, predict, serve, synth
from gender.answers import UNKNOWN, Prediction
from gender.config import parse_url
from gender.errors import DatabaseUnavailable
from tests import live
from tests.conftest import PROJECT, _mysql_database
from tests.hostile_inputs import HOSTILE, VALID_CATEGORY, VALID_COUNT, VALID_ID, Hostile
from tests.test_api_server import samples
from tests.test_hostile import _load, row_counts
from tests.test_search import api_server

# Ids and a category code as a shop may have them, with URL syntax inside.
ODD_IDS = ["shop/1 ä?#", "a/../b", "50% off", "会话 2014", "x" * db.SESSION_ID_LENGTH, "./.", "C:foo"]
ODD_CATEGORY = "Boots/Booties"


def url_of(text_value: str) -> str:
    """A path segment for any text: every reserved character percent-encoded, "/" included, and
    "." too (clients drop a segment "." or ".." before sending). Text that is not UTF-8 (a lone
    surrogate) travels as the bytes Python makes of it."""
    return quote(text_value.encode("utf-8", "surrogateescape"), safe="").replace(".", "%2E")


@dataclass
class Data:
    backend: str
    url: str
    engine: Engine
    counts: tuple[int, int]


def _add_odd_sessions(engine: Engine) -> None:
    start = datetime(2014, 11, 20, 10, 0, 0)
    with engine.begin() as conn:
        conn.execute(
            insert(db.session),
            [{"session_id": sid, "start_time": start, "end_time": start, "gender": "male"} for sid in ODD_IDS],
        )
        conn.execute(
            insert(db.product),
            [
                {
                    "session_id": sid,
                    "sequence_order": order,
                    "category_a": "Women",
                    "category_b": ODD_CATEGORY,
                    "category_c": f"Ankle {order}",
                    "category_d": f"Item {order}",
                }
                for sid in ODD_IDS
                for order in (1, 2)
            ],
        )


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def data(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"api-{request.param}")
    urls = iter([parse_url(f"sqlite:///{tmp / 'api.db'}")]) if request.param == "sqlite" else _mysql_database()
    url = next(urls)
    _load(url, tmp)  # the hostile tests' data set: VALID_ID with VALID_CATEGORY, 300 demo sessions
    engine = db.connect(url)
    _add_odd_sessions(engine)
    yield Data(request.param, url.render_as_string(hide_password=False), engine, row_counts(engine))
    engine.dispose()
    next(urls, None)


@pytest.fixture(scope="module")
def server(data, trained_demo, tmp_path_factory):
    """`streamlit run streamlit_app.py` on this data set: the dashboard and the API on one port."""
    log = tmp_path_factory.mktemp("api-server") / "streamlit.log"
    env = {"GENDER_DB_URL": data.url, "GENDER_MODEL_DIR": str(trained_demo[1])}
    with live.streamlit_server(env, log) as (base, _):
        with httpx.Client(base_url=base, timeout=60) as client:
            yield client, log


@pytest.fixture(scope="module")
def models(trained_demo):
    return artifact.load(trained_demo[1])


def expected(data: Data, models, session_id: str) -> dict:
    """What the Predict page answers for an id (the default A/B salt and share): its path, the
    pipeline with the explanation, not the fast path the API takes (tests/test_fast.py)."""
    served = serve.serve(data.engine, models, session_id, "gender-lens", 0.5, explain=True)
    return served.as_json() if served else Prediction.unknown(session_id).as_json()


def assert_json(response: httpx.Response) -> dict | list:
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    assert "Traceback" not in response.text
    return response.json()


# -- the answers --------------------------------------------------------------------------------


def test_predict_and_count_answer_as_the_page_and_the_cli(data, server, models, trained_demo):
    client, _ = server
    for session_id in [VALID_ID, "u10001", "no-such-session", *ODD_IDS]:
        answer = assert_json(client.get(f"/predict/{url_of(session_id)}"))
        assert answer == expected(data, models, session_id)
    assert assert_json(client.get(f"/predict/{VALID_ID}"))["GROUP"] in serve.GROUPS
    for session_id, category in [(VALID_ID, VALID_CATEGORY), (VALID_ID, "nope"), ("nope", VALID_CATEGORY)]:
        answer = assert_json(client.get(f"/count/{url_of(session_id)}/{url_of(category)}"))
        assert answer == predict.count(data.engine, session_id, category).as_json()
    assert assert_json(client.get(f"/count/{VALID_ID}/{VALID_CATEGORY}"))["COUNT"] > 0
    assert client.get("/count/nope/B00002").json() == {"SESSION_ID": "nope", "CATEGORY": "B00002", "COUNT": 0}

    # the command line, run as a user would, gives the same JSON
    cli = subprocess.run(
        [sys.executable, "-m", "gender", "predict", VALID_ID, "--db", data.url, "--model-dir", str(trained_demo[1])],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == client.get(f"/predict/{VALID_ID}").json()


def test_ids_with_url_syntax_travel_encoded(data, server):
    client, _ = server
    for session_id in ODD_IDS:
        answer = assert_json(client.get(f"/predict/{url_of(session_id)}"))
        assert answer["SESSION_ID"] == session_id and answer["PREDICTION"] in ("male", "female"), session_id
        count = assert_json(client.get(f"/count/{url_of(session_id)}/{url_of(ODD_CATEGORY)}"))
        assert count == {"SESSION_ID": session_id, "CATEGORY": ODD_CATEGORY, "COUNT": 2}
    # /predict takes the rest of the path as the id, so an unencoded "/" still finds it
    assert client.get("/predict/shop/1%20%C3%A4%3F%23").json()["SESSION_ID"] == "shop/1 ä?#"
    # in /count a "/" must be encoded: unencoded, the path has a segment too many
    assert assert_json(client.get("/count/shop/1%20%C3%A4%3F%23/Women"))["STATUS"] == 404


def test_every_prediction_is_logged_as_served_by_the_api(data, server):
    client, _ = server
    ids = ["u10004", ODD_IDS[0]]
    client.post("/api/predict", json=ids)
    deadline, logged = time.monotonic() + 20, None
    while time.monotonic() < deadline:
        log = db.served_predictions(data.engine)
        logged = log[log["session_id"].isin(ids)]
        if len(logged) == len(ids):
            break
        time.sleep(0.2)
    assert sorted(logged["session_id"]) == sorted(ids)
    assert set(logged["served_via"]) == {"api"}


def test_a_head_request_is_answered_but_not_a_prediction_served(data, server):
    """HEAD (an uptime probe's) is answered as GET without the body, but delivers no prediction to
    anyone: it is neither logged nor counted, or probes would swell Monitoring's served counts."""
    client, _ = server

    def served_total() -> float:
        lines = client.get("/metrics").text.splitlines()
        return sum(float(line.split()[-1]) for line in lines if line.startswith("gender_predictions_served_total{"))

    with data.engine.connect() as conn:
        ids = conn.execute(text("SELECT session_id FROM session ORDER BY session_id")).scalars().all()
    logged_before = set(db.served_predictions(data.engine)["session_id"])
    probed, marker = [session_id for session_id in ids if session_id not in logged_before][-2:]
    before = served_total()
    head = client.head(f"/predict/{url_of(probed)}")
    assert (head.status_code, head.content) == (200, b"")
    assert served_total() == before
    client.get(f"/predict/{url_of(marker)}")  # logged after the HEAD would have been: the log keeps order
    deadline, logged = time.monotonic() + 20, set()
    while marker not in logged and time.monotonic() < deadline:
        time.sleep(0.2)
        logged = set(db.served_predictions(data.engine)["session_id"])
    assert marker in logged and probed not in logged
    assert served_total() == before + 1


def test_no_prediction_is_lost_when_the_server_stops(trained_demo, tmp_path):
    """The log is written off the request path, in batches: a server stopped (SIGTERM, as
    `make app`'s Ctrl-C or a supervisor stops it) right after answering still writes every row.
    On a SQLite copy of the demo (the batching is the same on MariaDB, whose log is covered above)."""
    import signal

    demo_url = trained_demo[0]
    source = db.connect(demo_url)
    with source.connect() as conn:
        ids = [row[0] for row in conn.exec_driver_sql("SELECT session_id FROM session LIMIT 120")]
    source.dispose()
    copy_url = live.sqlite_copy(demo_url, tmp_path / "stop.db", empty_log=True)  # other tests log to the demo database
    env = {"GENDER_DB_URL": copy_url, "GENDER_MODEL_DIR": str(trained_demo[1])}
    with live.streamlit_server(env, tmp_path / "streamlit.log") as (base, process):
        with httpx.Client(base_url=base, timeout=60) as client, ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda sid: client.get(f"/predict/{url_of(sid)}").json(), ids))
        os.killpg(process.pid, signal.SIGTERM)  # at once: rows may still be waiting in memory
        assert process.wait(timeout=60) is not None
    assert all(answer["PREDICTION"] in ("male", "female") for answer in answers)
    log = db.served_predictions(db.connect(copy_url))
    api_rows = log[log["served_via"] == "api"]
    assert len(log) == len(api_rows) == len(ids) and set(api_rows["session_id"]) == set(ids)
    assert "Traceback" not in (tmp_path / "streamlit.log").read_text()


def test_the_batch_route(data, server, models):
    client, _ = server
    ids = [VALID_ID, "no-such-session", ODD_IDS[1], f"  {VALID_ID} "]
    answers = assert_json(client.post("/api/predict", json=ids))
    assert answers == [expected(data, models, session_id) for session_id in ids]
    assert assert_json(client.post("/api/predict", json=[])) == []
    for body, status in [
        (["u1"] * (api.MAX_BATCH + 1), 422),
        ([VALID_ID, 3], 422),
        ({"session_ids": [VALID_ID]}, 422),
    ]:
        response = client.post("/api/predict", json=body)
        assert response.status_code == status and assert_json(response)["STATUS"] == status
    # JSON may write a lone surrogate: no database holds it, and no answer could echo it (it was a 500)
    lone = client.post("/api/predict", content=r'["u1", "\ud800x"]', headers={"content-type": "application/json"})
    assert lone.status_code == 422 and assert_json(lone)["ERROR"] == (
        r"invalid request: body.1: Value error, a lone surrogate (\ud800-\udfff) is not text a database can hold"
    )
    broken = client.post("/api/predict", content=b"[not json", headers={"content-type": "application/json"})
    assert broken.status_code == 422 and assert_json(broken)["STATUS"] == 422
    untyped = client.post("/api/predict", content=json.dumps([VALID_ID]), headers={"content-type": ""})  # curl -d
    assert untyped.status_code == 422 and "Content-Type: application/json" in assert_json(untyped)["ERROR"]
    assert "Content-Type" not in client.post("/api/predict", json=[VALID_ID, 3]).text  # JSON: the hint only when not
    assert len(assert_json(client.post("/api/predict", json=["u1"] * api.MAX_BATCH))) == api.MAX_BATCH


def test_health_docs_metrics_and_the_dashboard_beside_them(data, server, models):
    client, _ = server
    health = assert_json(client.get("/api/health"))
    assert health["STATUS"] == "ok" and health["DATABASE"] == "reachable"
    assert health["MODEL"] == models.treatment.model_id and health["CONTROL_MODEL"] == models.control.model_id

    spec = assert_json(client.get("/api/openapi.json"))
    assert {
        "/predict/{session_id}",
        "/count/{session_id}/{category}",
        "/api/predict",
        "/api/health",
        "/metrics",
    } <= set(spec["paths"])
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and "/api/openapi.json" in docs.text

    client.get(f"/predict/{VALID_ID}")
    client.get(f"/predict/{url_of(ODD_IDS[0])}")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    body = metrics.text
    assert 'gender_http_requests_total{method="GET",route="/predict/{session_id:id_path}",status="200"}' in body
    assert "gender_http_request_seconds_bucket" in body
    served = serve.serve(data.engine, models, VALID_ID, "gender-lens", 0.5)
    assert (
        f'gender_predictions_served_total{{group="{served.group}",label="{served.prediction.prediction}",'
        f'model="{served.prediction.model}"}}' in body
    )
    assert f'model_id="{models.treatment.model_id}"' in body and 'slot="control"' in body
    assert "gender_model_trained_timestamp_seconds" in body and "gender_database_errors_total" in body
    for name in PREDICTION_LOG_METRICS.values():  # the server's writer, the pages' rows too
        assert samples(body, name), name
    assert "shop/1" not in body and VALID_ID not in body  # labelled by route template, never by id

    page = client.get("/")  # the dashboard is still there, on the same port
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert client.get("/_stcore/health").text == "ok"


def test_errors_are_json_with_a_status(server):
    client, _ = server
    for method, path, status in [
        ("GET", "/api/nothing-here", 404),
        ("GET", "/count/only-one-segment", 404),
        ("DELETE", f"/predict/{VALID_ID}", 405),
        ("POST", f"/count/{VALID_ID}/{VALID_CATEGORY}", 405),
        ("GET", "/api/predict", 405),
    ]:
        response = client.request(method, path)
        assert response.status_code == status, path
        assert assert_json(response) == {"ERROR": response.json()["ERROR"], "STATUS": status}


def test_the_original_answers_byte_for_byte_and_head_as_its_flask_did(server):
    """Keys sorted, as Flask's jsonify sent them; HEAD answered as GET without the body; no
    redirect for a trailing or a missing slash (Flask: 404), whose address the Host header set."""
    client, _ = server
    unknown = client.get("/predict/no-such-session")
    assert unknown.content == b'{"PREDICTION":"UNKNOWN_SESSION_ID","SESSION_ID":"no-such-session"}'
    count = client.get(f"/count/{VALID_ID}/{VALID_CATEGORY}")
    assert count.text == f'{{"CATEGORY":"{VALID_CATEGORY}","COUNT":{VALID_COUNT},"SESSION_ID":"{VALID_ID}"}}'
    assert list(client.get(f"/predict/{VALID_ID}").json()) == sorted(client.get(f"/predict/{VALID_ID}").json())
    for path in (f"/predict/{VALID_ID}", f"/count/{VALID_ID}/{VALID_CATEGORY}", "/api/health"):
        got, head = client.get(path), client.head(path)
        assert (head.status_code, head.content) == (200, b""), path
        assert head.headers["content-length"] == got.headers["content-length"], path
    for path in ("/predict", "/predict/", f"/count/{VALID_ID}/{VALID_CATEGORY}/"):  # no id: no route, as in Flask
        response = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
        assert response.status_code == 404 and "location" not in response.headers, path


# -- the hot routes' own path past FastAPI's router, and the server under them -----------------------


def test_the_routes_answer_under_the_dashboards_base_path_too(monkeypatch):
    """Behind a proxy that serves the dashboard under a path (server.baseUrlPath), the shop's
    systems reach the API only there: /lens/predict/u1 was the dashboard's page, status 200."""
    monkeypatch.setenv("GENDER_DB_URL", f"mysql+pymysql://gender:pw@127.0.0.1:{live.free_port()}/ftp")
    with api_server("/lens/") as (client, _):
        # A %2F stays inside its id (a 404 if it split the path), the base read however it is encoded.
        for path in (
            "/lens/predict/u1",
            "/lens/count/u1/A1",
            "/predict/u1",
            "/lens/count/a%2Fb/A1",
            "/l%65ns/count/a%2Fb/A1",
        ):
            response = client.get(path)
            assert response.status_code == 503 and assert_json(response)["STATUS"] == 503, path  # no database here
        assert assert_json(client.get("/lens/api/nothing-here"))["ERROR"].endswith("listed at /lens/api/docs")
        assert assert_json(client.get("/api/nothing-here"))["ERROR"].endswith("listed at /api/docs")
        assert "/predict/{session_id}" in assert_json(client.get("/lens/api/openapi.json"))["paths"]
        assert "'/lens/api/openapi.json'" in client.get("/lens/api/docs").text
        assert client.get("/lens/metrics").headers["content-type"].startswith("text/plain")
        assert client.get("/lensx/predict/u1").text == client.get("/lens/").text == "the dashboard"


def test_the_hot_routes_take_the_paths_fastapis_templates_take():
    """GET /predict and /count are answered before FastAPI's router (api.Direct): exactly the
    requests FastAPI's templates would give those routes must reach them, with the same ids, and
    every other request must go on to FastAPI (its 404s, 405s and redirects)."""
    app = api.create_app(api.Service())
    direct = app.front.direct

    def fastapi(method: str, path: str) -> tuple | None:
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
        for route in app.router.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return route.path, tuple(api.path_text(value) for value in child["path_params"].values())
        return None

    paths = ["/predict/u1", "/predict/", "/predict", "/predict/a%2Fb/c", "/predict/%2E%2E", "/predict//x"]
    paths += ["/predict/%ff%fe", "/predict/..%2F..%2Fetc", "/count/a/b", "/count/a%2Fb/C%20D", "/count/a"]
    paths += ["/count/a/", "/count//b", "/count/a/b/", "/count/a/b/c", "/count", "/count/", "/api/predict"]
    paths += ["/api/health", "/metrics", "/predictx/u1", "/count/%E4%BC%9A/%2F"]
    for method in ("GET", "POST", "HEAD", "DELETE"):
        for path in paths:
            expected_route = fastapi(method, path)
            if expected_route is not None and expected_route[0] not in (api.PREDICT_ROUTE, api.COUNT_ROUTE):
                expected_route = None
            found = direct.route({"type": "http", "method": method, "path": path, "headers": []})
            answered = None if found is None else (found[0], found[2])
            assert answered == expected_route, (method, path)
            if found is not None and found[0] == api.PREDICT_ROUTE:  # HEAD: answered, not logged
                assert found[1] is (direct.predict if method == "GET" else direct.probe)
            else:
                assert found is None or found[1] is direct.count


def test_the_openapi_description_names_each_operation_once(recwarn):
    """An OpenAPI operationId is unique: the GET and the HEAD of one route shared one, which code
    generators refuse and FastAPI warned of in the server log at the first /api/docs."""
    spec = api.create_app(api.Service()).openapi()
    operations = [(path, method) for path, ops in spec["paths"].items() for method in ops]
    ids = [spec["paths"][path][method]["operationId"] for path, method in operations]
    assert len(set(ids)) == len(ids), ids
    for path in ("/predict/{session_id}", "/count/{session_id}/{category}", "/api/health"):
        assert {"get", "head"} <= set(spec["paths"][path]), path
    assert not [w for w in recwarn if "Duplicate Operation ID" in str(w.message)]


def test_the_server_parses_http_in_c_on_uvloop():
    """Streamlit leaves uvicorn to choose its HTTP parser and event loop, and uvicorn chooses
    httptools (C) and uvloop when they are installed (requirements.txt): pure-Python h11 on
    asyncio's loop cost the server about twice the CPU a request (`benchmarks/api.py --server-cpu`)."""
    import uvicorn
    from streamlit.web.server.starlette import starlette_server
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    options = starlette_server._get_uvicorn_config_kwargs()
    assert "http" not in options and "loop" not in options  # uvicorn's "auto" for both
    config = uvicorn.Config(app=api.create_app(api.Service()), **options)
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    loop = config.get_loop_factory()()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


# -- the hostile corpus through the routes ----------------------------------------------------------

PATH_TRICKS = [
    "/predict/..%2f..%2fetc%2fpasswd",
    "/predict/..%2F..%2F..%2Fstreamlit_app.py",
    "/predict/%2e%2e/%2e%2e/etc/passwd",
    "/predict/../../etc/passwd",
    "/predict/..\\..\\windows",
    "/predict/%00",
    "/predict/%ff%fe",
    "/predict/%",
    "/predict/%zz",
    "/count/..%2f..%2f/%2e%2e",
    "/count/u10003/..%2f..%2fetc",
    "/api/..%2fpredict%2fu10003",
    "/api/../predict/u10003",
    "/metrics/..%2f..%2f",
    "/predict/" + "a" * 65_000,  # long paths up to the HTTP parser's limit (TOO_LONG)
    "/count/" + "b" * 32_000 + "/" + "c" * 32_000,
    "/predict/" + "%2F" * 20_000,
]


def raw_get(base: str, path: str) -> tuple[int, str, bytes]:
    """GET a path exactly as written (no client normalising "../" away)."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("hostile", HOSTILE, ids=str)
def test_hostile_ids_through_the_routes(data, server, hostile: Hostile):
    client, _ = server
    encoded = url_of(hostile.text)
    answers = [
        client.get(f"/predict/{encoded}"),
        client.get(f"/count/{encoded}/{VALID_CATEGORY}"),
        client.get(f"/count/{VALID_ID}/{encoded}"),
        client.post("/api/predict", json=[hostile.text]) if hostile.browser else None,
    ]
    predicted, *counts, batch = answers
    for response in filter(None, answers):
        assert_json(response)
    if not hostile.text:  # an empty segment: /predict/ and /count//X are no routes, as in Flask
        assert predicted.status_code == counts[0].status_code == counts[1].status_code == 404
    else:
        assert predicted.status_code == 200
        assert (predicted.json()["SESSION_ID"] == VALID_ID) == hostile.resolves
        assert (predicted.json()["PREDICTION"] == UNKNOWN) != hostile.resolves
        assert counts[0].json()["COUNT"] == (VALID_COUNT if hostile.resolves else 0)
        assert counts[1].json()["COUNT"] == 0
    if batch is not None:
        assert batch.status_code == 200 and len(batch.json()) == 1
    assert row_counts(data.engine) == data.counts


# A URL over 65,535 bytes is refused by the server's HTTP parser (httptools) before any route
# sees it: uvicorn's plain-text 400, as for any request that is not valid HTTP.
TOO_LONG = ["/predict/" + "a" * 100_000, "/count/" + "b" * 50_000 + "/" + "c" * 50_000]


def test_path_tricks_and_very_long_paths(data, server):
    client, log = server
    base = str(client.base_url).rstrip("/")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda path: (path, *raw_get(base, path)), PATH_TRICKS))
        refused = list(pool.map(lambda path: raw_get(base, path), TOO_LONG))
    for status, _, body in refused:
        assert status == 400 and b"Traceback" not in body
    for path, status, content_type, body in answers:
        assert content_type.startswith("application/json"), (path[:80], status, body[:200])
        assert b"Traceback" not in body
        answer = json.loads(body)
        if status == 200:
            assert answer.get("PREDICTION", UNKNOWN) == UNKNOWN and answer.get("COUNT", 0) == 0
        else:
            assert status in (404, 405) and answer["STATUS"] == status, (path[:80], answer)
    assert row_counts(data.engine) == data.counts
    assert "Traceback" not in log.read_text()


# -- what needs a process of its own: a broken database, a retrain, an old log ------------------------


def test_a_time_that_is_no_date_is_said_by_the_cli_and_the_routes_without_a_traceback(
    trained_demo, tmp_path, monkeypatch
):
    """A shop's own SQLite file may hold any text in a time column: SQLAlchemy's parser raised a
    ValueError from deep inside every read of such a row (a traceback from `predict` and `count`)."""
    url = live.sqlite_copy(trained_demo[0], tmp_path / "odd.db")
    with db.connect(url).begin() as conn:
        conn.execute(text("INSERT INTO session VALUES ('odd-1', 'yesterday', '2014-11-26 22:22:19', NULL)"))
    said = "the database holds 'yesterday' as a session's start or end time"
    for command in (["predict", "odd-1", "--model-dir", trained_demo[1]], ["count", "odd-1", "A00001"]):
        result = subprocess.run(
            [sys.executable, "-m", "gender", *map(str, command), "--db", url],
            capture_output=True,
            text=True,
            cwd=PROJECT,
        )
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"error: {said}") and result.stderr.count("\n") == 1
    monkeypatch.setenv("GENDER_DB_URL", url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(trained_demo[1]))
    with TestClient(api.create_app()) as client:
        for path in ("/predict/odd-1", "/count/odd-1/A00001"):
            response = client.get(path)
            assert response.status_code == 500 and said in response.json()["ERROR"]
        assert client.get("/predict/u10003").status_code == 200  # the other rows answer as before


def test_a_sqlite_file_replaced_or_deleted_under_the_server_is_noticed(trained_demo, tmp_path, monkeypatch):
    """Pooled connections kept reading the file they had opened: after `mv other.db served.db` the
    server answered from the old file, and after `rm` it answered on while /api/health said 'no file'."""
    served = tmp_path / "served.db"
    live.sqlite_copy(trained_demo[0], served)
    other = db.connect(live.sqlite_copy(trained_demo[0], tmp_path / "other.db"))
    with other.begin() as conn:  # the same sessions but one, and one view fewer of another
        conn.execute(text("DELETE FROM product WHERE session_id = 'u10003'"))
        conn.execute(text("DELETE FROM session WHERE session_id = 'u10003'"))
    other.dispose()
    monkeypatch.setenv("GENDER_DB_URL", f"sqlite:///{served}")
    monkeypatch.setenv("GENDER_MODEL_DIR", str(trained_demo[1]))
    with TestClient(api.create_app()) as client:
        assert client.get("/predict/u10003").json()["PREDICTION"] != UNKNOWN
        os.replace(tmp_path / "other.db", served)
        assert client.get("/predict/u10003").json()["PREDICTION"] == UNKNOWN  # the new file's answer
        assert client.get("/count/u10003/A00005").json()["COUNT"] == 0
        served.unlink()
        for path in ("/predict/u10005", "/count/u10005/A00011"):
            response = client.get(path)
            assert response.status_code == 503 and "is gone" in response.json()["ERROR"], response.text
        assert not served.exists()  # no empty file made in its place


def test_a_database_outage_is_a_json_503_and_counted(trained_demo, monkeypatch):
    monkeypatch.setenv("GENDER_DB_URL", f"mysql+pymysql://gender:secret-pw@127.0.0.1:{live.free_port()}/ftp")
    monkeypatch.setenv("GENDER_MODEL_DIR", str(trained_demo[1]))
    with TestClient(api.create_app()) as client:
        for path in ("/predict/u10003", "/count/u10003/B00002"):
            response = client.get(path)
            assert response.status_code == 503 and response.json()["STATUS"] == 503
            assert "secret-pw" not in response.text and "127.0.0.1" in response.json()["ERROR"]
        health = client.get("/api/health")
        assert health.status_code == 503 and health.json()["MODEL"]  # the model is still loaded
        assert "gender_database_errors_total 3.0" in client.get("/metrics").text


PREDICTION_LOG_METRICS = {
    "written": "gender_prediction_log_rows_written_total",
    "dropped": "gender_prediction_log_rows_dropped_total",
    "failures": "gender_prediction_log_write_failures_total",
    "waiting": "gender_prediction_log_rows_waiting",
}


def prediction_log_metrics(client) -> dict[str, float]:
    """What /metrics says of the prediction log."""
    body = client.get("/metrics").text
    return {key: sum(s.value for s in samples(body, name)) for key, name in PREDICTION_LOG_METRICS.items()}


def test_metrics_count_the_rows_the_prediction_log_writes(trained_demo, tmp_path, monkeypatch):
    """/metrics says how many rows the process's prediction log wrote (its one writer: whichever
    app of the process served them, or the dashboard's pages), and that none wait."""
    monkeypatch.setenv("GENDER_DB_URL", live.sqlite_copy(trained_demo[0], tmp_path / "log.db", empty_log=True))
    monkeypatch.setenv("GENDER_MODEL_DIR", str(trained_demo[1]))
    ids = ["u10003", "u10004", "u10005"]
    with TestClient(api.create_app()) as client:
        assert serve.log_writer.flush(timeout=30)  # rows of earlier tests, written or kept, before counting
        before = prediction_log_metrics(client)  # the process's: other tests' rows too
        assert [answer["SESSION_ID"] for answer in client.post("/api/predict", json=ids).json()] == ids
        assert serve.log_writer.flush(timeout=30)
        after = prediction_log_metrics(client)
    assert {key: after[key] - before[key] for key in ("written", "dropped", "failures")} == {
        "written": 3,
        "dropped": 0,
        "failures": 0,
    }
    assert after["waiting"] == 0


def test_metrics_show_the_prediction_log_waiting_for_a_database_that_refuses_it(trained_demo, tmp_path, monkeypatch):
    """A database that answers but refuses the log's rows (here a trigger; a user without INSERT, a
    full disk): /metrics shows the failed writes and the rows waiting, and once it takes them, those
    rows written and none waiting. A process's writer and metrics of its own, as a fresh server's."""
    url = live.sqlite_copy(trained_demo[0], tmp_path / "log.db", empty_log=True)
    engine = db.connect(url)
    db.create_schema(engine)  # the prediction log, for the trigger
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON prediction_log BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    meter = api.PredictionLogMetrics()
    writer = serve.LogWriter(meter)
    writer.RETRY = 0.2
    monkeypatch.setattr(api, "LOG_METRICS", meter)
    monkeypatch.setattr(serve, "log_writer", writer)
    monkeypatch.setenv("GENDER_DB_URL", url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(trained_demo[1]))
    ids = ["u10003", "u10004", "u10005"]
    with TestClient(api.create_app()) as client:
        assert [answer["SESSION_ID"] for answer in client.post("/api/predict", json=ids).json()] == ids
        assert writer.flush(timeout=30)  # tried, and refused: kept
        down = prediction_log_metrics(client)
        assert (down["written"], down["dropped"], down["waiting"]) == (0, 0, 3) and down["failures"] >= 1
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse")
        until(lambda: sorted(db.served_predictions(engine)["session_id"]) == ids)  # its next try
        assert writer.flush(timeout=30)  # the counts are settled just after the commit
        back = prediction_log_metrics(client)
        assert (back["written"], back["dropped"], back["waiting"]) == (3, 0, 0)
    engine.dispose()


def test_health_says_when_to_ask_again_as_the_data_routes_do(trained_demo, tmp_path, monkeypatch):
    """/api/health's 503 came without Retry-After, which README's table promises with every 503 and
    the data routes send. Here with no model at all (the app starts all the same and says why, as
    before) and with a database that refuses connections."""
    monkeypatch.setenv("GENDER_DB_URL", trained_demo[0])
    monkeypatch.setenv("GENDER_MODEL_DIR", str(tmp_path / "no-models"))
    with TestClient(api.create_app()) as client:
        for method in ("GET", "HEAD"):
            health = client.request(method, "/api/health")
            assert health.status_code == 503 and health.headers["retry-after"] == str(api.BREAK_SECONDS), method
        assert health.headers["content-type"].startswith("application/json")
        assert "no trained model in" in client.get("/api/health").json()["MODEL_ERROR"]
        answer = client.get("/predict/u10003")
        assert answer.status_code == 503 and answer.headers["retry-after"] == str(api.BREAK_SECONDS)
        assert "no trained model in" in answer.json()["ERROR"]
    monkeypatch.setenv("GENDER_MODEL_DIR", str(trained_demo[1]))
    with TestClient(api.create_app()) as client:
        health = client.get("/api/health")
        assert health.status_code == 200 and "retry-after" not in health.headers
    monkeypatch.setenv("GENDER_DB_URL", f"mysql+pymysql://gender@127.0.0.1:{live.free_port()}/ftp")
    with TestClient(api.create_app()) as client:
        health = client.get("/api/health")
        assert health.status_code == 503 and health.json()["DATABASE"] != "reachable"
        assert health.headers["retry-after"] == str(api.BREAK_SECONDS)


def test_a_hanging_database_is_tried_by_one_request_while_the_others_get_503_at_once(trained_demo, monkeypatch):
    """A server that accepts connections and never answers: each request would wait its own
    timeouts, and the queue behind the API's threads longer. With the breaker open, one request
    tries the database and the others are answered 503 without connecting."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:  # closed
                return

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("GENDER_DB_URL", f"mysql+pymysql://root@127.0.0.1:{listener.getsockname()[1]}/ftp")
    monkeypatch.setenv("GENDER_MODEL_DIR", str(trained_demo[1]))
    paths = ("/predict/u10003", "/count/u10003/B00002", "/predict/u10005")
    try:
        for seconds, connections in ((60, 1), (0, len(paths))):  # open for a minute; never open
            service = api.Service()
            service.breaker = api.Breaker(seconds)
            accepted.clear()
            with TestClient(api.create_app(service)) as client:
                answers = [client.get(path) for path in paths]
            assert [answer.status_code for answer in answers] == [503] * len(paths)
            assert all(answer.headers["retry-after"] == str(api.BREAK_SECONDS) for answer in answers)
            assert len({answer.json()["ERROR"] for answer in answers}) == 1  # the same reason, said again
            assert len(accepted) == connections, seconds
    finally:
        listener.close()
        for connection in accepted:
            connection.close()


def test_the_server_log_says_once_when_the_database_fails_and_once_when_it_answers_again(trained_demo, caplog):
    """An operator reading the server's log saw nothing of an outage: the 503s went to the clients
    and to the metrics only. The breaker says when the database failed (its reason, the password
    hidden) and when it answers again, with the 503s meanwhile; not a line per request."""
    down = db.connect(f"mysql+pymysql://root:secret-pw@127.0.0.1:{live.free_port()}/ftp")  # refused
    up = db.connect(trained_demo[0])
    breaker = api.Breaker(seconds=0)  # the next request tries the database again at once
    with caplog.at_level("WARNING", logger="gender.api"):
        for _ in range(3):  # the first fails; the next two try again and fail
            with pytest.raises(DatabaseUnavailable):
                breaker.call(predict.count, down, "u10003", "B00002")
        breaker.seconds = 60
        with pytest.raises(DatabaseUnavailable):  # open: answered at once, the database not asked
            breaker.call(predict.count, up, "u10003", "B00002")
        breaker.seconds = 0
        for _ in range(2):  # back: said once
            assert breaker.call(predict.count, up, "u10003", "B00002").as_json()["SESSION_ID"] == "u10003"
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 2, said
    assert said[0].startswith("database mysql+pymysql://root:***@127.0.0.1:"), said[0]
    assert said[0].endswith(": requests are answered 503 until it answers again"), said[0]
    assert re.fullmatch(r"the database answers again after \d+\.\d s; 4 requests answered 503 meanwhile", said[1])
    down.dispose()
    up.dispose()


@pytest.fixture
def mariadb_demo():
    """The URL of a fresh MariaDB database of 300 demo sessions (dropped afterwards)."""
    urls = _mysql_database()
    url = next(urls)
    engine = db.connect(url)
    synth.create_demo(engine, sessions=300, seed=1)
    engine.dispose()
    yield url
    next(urls, None)


@contextmanager
def tables_locked(url, seconds: float) -> Iterator[threading.Event]:
    """`LOCK TABLES session WRITE, product WRITE` from a client of its own, as a long ALTER or a
    backup holds them: queries of the tables then wait in the server. Held until the event yielded
    is set or for `seconds`, whichever comes first (so a test that fails does not hang)."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        conn = pymysql.connect(
            host=url.host, port=url.port or 3306, user=url.username, password=url.password or "", database=url.database
        )
        try:
            with conn.cursor() as cursor:
                cursor.execute("LOCK TABLES session WRITE, product WRITE")
                held.set()
                release.wait(seconds)
                cursor.execute("UNLOCK TABLES")
        finally:
            conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert held.wait(30), "the tables were not locked"
    try:
        yield release
    finally:
        release.set()
        thread.join(60)


def test_a_database_that_stalls_in_a_query_is_a_503_within_seconds(mariadb_demo, trained_demo, monkeypatch):
    """A server that accepts the connection and answers the pool's ping, then stalls in the query
    (its tables locked; a network that freezes mid-answer is the same to the client): each request
    waited out the stall (up to db.QUERY_TIMEOUT, 5 min) and answered 200 then, /api/health said
    reachable. The service's queries give up after db.ANSWER_TIMEOUT: a 503 with Retry-After, the
    breaker's at once for the next, /api/health unavailable. The CLI's and the dashboard's engine
    (`db.connect`'s default) still waits for its long queries."""
    stall = 30  # seconds the tables stay locked at most: longer than the service waits
    monkeypatch.setenv("GENDER_DB_URL", mariadb_demo.render_as_string(hide_password=False))
    monkeypatch.setenv("GENDER_MODEL_DIR", str(trained_demo[1]))
    service = api.Service()
    service.breaker = api.Breaker(2)
    patient = db.connect(mariadb_demo)
    with TestClient(api.create_app(service)) as client:
        assert client.get("/predict/u10003").status_code == 200  # connected: the pool holds a live connection
        with tables_locked(mariadb_demo, stall) as release:
            started = time.monotonic()
            response = client.get("/predict/u10005")
            seconds = time.monotonic() - started
            assert response.status_code == 503, f"{response.status_code} after {seconds:.1f} s: {response.text}"
            assert seconds < db.ANSWER_TIMEOUT + 3, seconds
            assert response.headers["retry-after"] == str(api.BREAK_SECONDS)
            assert "timed out" in response.json()["ERROR"], response.text
            started = time.monotonic()
            assert client.get("/count/u10005/A00001").status_code == 503  # the breaker: at once
            assert time.monotonic() - started < 1
            started = time.monotonic()
            health = client.get("/api/health")
            seconds = time.monotonic() - started
            assert health.status_code == 503 and health.json()["STATUS"] == "unavailable", health.text
            assert "timed out" in health.json()["DATABASE"] and seconds < db.ANSWER_TIMEOUT + 3, seconds

            # The long work's engine waits out a stall longer than the service's timeout.
            threading.Timer(db.ANSWER_TIMEOUT + 2, release.set).start()
            started = time.monotonic()
            assert db.get_session(patient, "u10005") is not None
            assert time.monotonic() - started > db.ANSWER_TIMEOUT + 1  # it did wait for the lock
        time.sleep(2)  # the breaker lets a request try again
        assert client.get("/predict/u10005").status_code == 200
        assert client.get("/api/health").json()["STATUS"] == "ok"
    patient.dispose()
    for engine in service._engines.values():
        engine.dispose()


def test_a_bug_in_a_route_is_a_json_500_logged_once(trained_demo, monkeypatch, caplog):
    """A bug (here: the models raise something unforeseen) behind the hot routes, which answer
    without FastAPI's middleware, and behind FastAPI's own routes: JSON 500, one log entry each."""
    monkeypatch.setenv("GENDER_DB_URL", trained_demo[0])
    monkeypatch.setenv("GENDER_MODEL_DIR", str(trained_demo[1]))
    service = api.Service()

    def broken(settings=None):
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "models", broken)
    with TestClient(api.create_app(service), raise_server_exceptions=False) as client:
        for method, path, body in (("GET", "/predict/u10003", None), ("POST", "/api/predict", ["u10003"])):
            caplog.clear()
            response = client.request(method, path, json=body)
            assert response.status_code == 500, (path, response.text)
            assert response.json() == {"ERROR": api.INTERNAL, "STATUS": 500}
            logged = [r for r in caplog.records if r.exc_info and "a bug" in str(r.exc_info[1])]
            assert len(logged) == 1, (path, [r.getMessage() for r in caplog.records])
        metrics = service.metrics.exposition().decode()  # not /metrics: it shows the (broken) models too
        assert 'route="/predict/{session_id:id_path}",status="500"' in metrics
        assert 'route="/api/predict",status="500"' in metrics


def test_every_request_is_counted_before_its_answer_has_gone(trained_demo, monkeypatch):
    """Requests were counted once their answer had gone: with two workers, a client that had its
    answer could read /metrics from the other worker before the count (off by one under load).
    Now each is counted before its last bytes are sent, on the hot routes and FastAPI's alike."""
    monkeypatch.setenv("GENDER_DB_URL", trained_demo[0])
    monkeypatch.setenv("GENDER_MODEL_DIR", str(trained_demo[1]))
    service = api.Service()
    app = api.create_app(service)
    counted_at_last_bytes = []

    def counted() -> float:
        body = service.metrics.exposition().decode()
        return sum(s.value for s in samples(body, "gender_http_requests_total"))

    async def watching(scope, receive, send):
        async def watched(message):
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                counted_at_last_bytes.append(counted())
            await send(message)

        await app(scope, receive, watched)

    paths = ("/predict/u10003", "/count/u10003/A00001", "/api/health", "/nowhere", "/metrics")
    with TestClient(watching) as client:
        for path in paths:
            client.get(path)
    assert counted_at_last_bytes == list(range(1, len(paths) + 1))


def until(condition, seconds: float = 120) -> None:
    """Wait for what a thread of the service does (not a timing: the deadline only ends a hang)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "did not happen"
        time.sleep(0.05)


def test_a_retrain_loads_aside_and_files_that_do_not_load_leave_the_models_serving(
    trained_demo, tmp_path, monkeypatch, caplog
):
    import shutil

    model_dir = tmp_path / "models"
    shutil.copytree(trained_demo[1], model_dir)
    monkeypatch.setenv("GENDER_DB_URL", trained_demo[0])
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))
    metadata = model_dir / "metadata.json"
    control = artifact.load_card(model_dir).slots["control"].file  # the file the card names

    def retrained() -> None:  # a new card, as a retrain writes it last
        os.utime(metadata, ns=(metadata.stat().st_atime_ns, metadata.stat().st_mtime_ns + 10**9))

    service = api.Service()
    with TestClient(api.create_app(service)) as client:
        client.get("/predict/u10001")
        first = service.models()
        client.get("/predict/u10002")
        assert service.models() is first  # loaded once

        (model_dir / control).write_bytes(b"not a model")  # a retrain's files that do not load
        retrained()
        assert client.get("/predict/u10001").status_code == 200  # the models before answer meanwhile
        until(lambda: artifact.refused(model_dir) is not None)
        assert all(client.get(f"/predict/u1000{i}").status_code == 200 for i in range(1, 8))
        assert service.models() is first
        # Tried again (at once here, every 30 s in service): said at DEBUG, not again as a warning.
        monkeypatch.setattr(artifact, "RETRY_SECONDS", 0)
        caplog.set_level("DEBUG", logger="gender.models")

        def retries() -> int:
            return sum(r.levelname == "DEBUG" for r in caplog.records if r.name == "gender.models")

        until(lambda: client.get("/predict/u10001").status_code == 200 and retries() >= 2)
        monkeypatch.setattr(artifact, "RETRY_SECONDS", 30)
        health = client.get("/api/health")
        assert health.status_code == 200 and health.json()["STATUS"] == "degraded"
        assert f"{control} does not match its recorded sha256" in health.json()["MODEL_WARNING"]

        shutil.copy(trained_demo[1] / control, model_dir / control)  # a good retrain
        retrained()
        until(lambda: client.get("/predict/u10001").status_code == 200 and service.models() is not first)
        assert client.get("/api/health").json()["STATUS"] == "ok"
    # The server log: once when the files were refused, once when they load again (it said nothing then).
    said = [r.getMessage() for r in caplog.records if r.name == "gender.models" and r.levelname == "WARNING"]
    assert len(said) == 2, said
    assert said[0].startswith(f"the model files in {model_dir} do not load (")
    assert said[1] == f"the model files in {model_dir} load again; {first.treatment.model_id} and its control serve"


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_an_older_prediction_log_gets_its_served_via_column(backend, tmp_path, models):
    urls = iter([parse_url(f"sqlite:///{tmp_path / 'old.db'}")]) if backend == "sqlite" else _mysql_database()
    url = next(urls)
    try:
        engine = db.connect(url)
        db.session.create(engine)  # the log is read joined to the sessions
        columns = [c for c in db.prediction_log.c if c.name != "served_via"]
        # the table as the previous version created it
        old = Table(
            "prediction_log",
            MetaData(),
            *(c._copy() for c in columns),
            UniqueConstraint("session_id", "model_id", name="uq_prediction_log_session_model"),
        )
        old.create(engine)
        row = {"session_id": "u1", "ab_group": "treatment", "model_id": "m-1", "p_male": 0.5}
        row |= {"prediction": "male", "threshold": 0.4, "served_at": datetime(2026, 1, 1)}
        with engine.begin() as conn:
            conn.execute(insert(old), [row])
        read = db.served_predictions(engine)  # a reader reads an old log as it is
        assert list(read["session_id"]) == ["u1"] and read["served_via"].isna().all()

        db.log_predictions(engine, [row | {"session_id": "u2", "served_via": "api"}])
        db.log_predictions(engine, [row | {"session_id": "u3", "served_via": "cli"}])
        log = db.served_predictions(engine).set_index("session_id")
        assert log.loc["u2", "served_via"] == "api" and log.loc["u3", "served_via"] == "cli"
        assert log["served_via"].isna().sum() == 1  # the old row kept as it was
        db.create_schema(engine)  # running the upgrade again changes nothing
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM prediction_log")).scalar_one() == 3
        engine.dispose()
    finally:
        next(urls, None)


def test_served_via_says_page_api_or_cli(trained_demo, models, tmp_path):
    engine = db.connect(f"sqlite:///{tmp_path / 'copy.db'}")
    source = db.connect(trained_demo[0])
    served = {via: serve.serve(source, models, f"u1000{i}", "s", 0.5) for i, via in enumerate(serve.SERVED_VIA, 1)}
    db.create_schema(engine)
    for via, answer in served.items():
        serve.write_log(engine, answer, via)
    log = db.served_predictions(engine).set_index("session_id")["served_via"]
    assert {via: log[answer.prediction.session_id] for via, answer in served.items()} == {
        v: v for v in serve.SERVED_VIA
    }
