"""A shop's own ids: session ids and category codes of every kind shops use, on SQLite and MariaDB,
through the library, the CLI, the pages (typed and as a URL-encoded deep link, in AppTest and in
Chromium), scoring, and an `import-db` round trip from a MariaDB database with its own column types.

The ids are generated (UUIDs, hex and base64 tokens, numbers, "shop:12345", paths, blanks and
non-ASCII letters inside, quotes, 255 characters) and so are the codes (names with blanks, "/",
">", ";", accents, markup). Every one must be found, counted, scored and shown exactly.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import random
import subprocess
import sys
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from gender import artifact, db, explain, ingest, predict
from gender.answers import UNKNOWN
from gender.config import parse_url
from tests import live
from tests.conftest import PROJECT, _mysql_database
from tests.test_app import count_form, make_app


def session_ids(rng: random.Random) -> list[str]:
    """One id of each kind a shop may key its sessions by, and a few more UUIDs."""
    token = base64.b64encode(rng.randbytes(48)).decode()  # holds "+", "/" and "=" too
    return [
        *(str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(4)),
        rng.randbytes(32).hex(),  # 64 hex digits
        token,
        base64.urlsafe_b64encode(rng.randbytes(24)).decode().rstrip("="),
        str(rng.randrange(10**15, 10**16)),  # a number
        "0042",  # a number that is not one: leading zeros kept
        "shop:12345",
        "/users/42/sessions/7?tab=1#top",  # a path, with URL syntax
        "session 42 of Ana",  # blanks inside
        "sesión-ñandú-Ölçü",  # non-ASCII letters
        "会话-二〇一四",
        'O\'Brien "quoted" `tick`',
        "a,b;c|d\\e",  # separators of CSV files and paths
        "x" * db.SESSION_ID_LENGTH,  # the longest an id may be
    ]


CATEGORIES = [  # (A, B, C, D) paths with codes as shops name them
    ("Women", "Women's shoes", "Ténis", "Nike Air 42½"),
    ("Women", "Women's shoes", "Boots/Booties", "D-1/2"),
    ("Men", "Shirts > Formal", "Slim; fit", "SKU 00017"),
    ("Men", "Shirts > Formal", "<b>bold</b> [link](x)", "Ω-" + "z" * (db.CATEGORY_LENGTH - 2)),
    ("Kids", "3–5 years", "Spielzeug: Bälle", "球"),
]


@dataclass
class Shop:
    url: str  # with the password, for the CLI and the app
    engine: object
    ids: list[str]
    paths: dict[str, list[tuple[str, ...]]]  # each session's views in order


def shop_rows(ids: list[str], rng: random.Random) -> tuple[list[dict], list[dict], dict]:
    """Sessions (half of them labelled) and 1-5 views each, drawn from CATEGORIES."""
    sessions, views, paths = [], [], {}
    start = datetime(2026, 11, 2, 8, 0, 0)
    for i, session_id in enumerate(ids):
        began = start + timedelta(minutes=97 * i)
        sessions.append(
            {
                "session_id": session_id,
                "start_time": began,
                "end_time": began + timedelta(seconds=rng.randrange(5, 900)),
                "gender": ("female", "male", None, None)[i % 4],
            }
        )
        paths[session_id] = [rng.choice(CATEGORIES) for _ in range(rng.randrange(1, 6))]
        views.extend(ingest.view_rows(session_id, paths[session_id]))
    return sessions, views, paths


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def shop(request, tmp_path_factory):
    rng = random.Random(14)
    if request.param == "sqlite":
        urls = iter([parse_url(f"sqlite:///{tmp_path_factory.mktemp('shop') / 'shop.db'}")])
    else:
        urls = _mysql_database()
    url = next(urls)
    engine = db.connect(url)
    ids = session_ids(rng)
    sessions, views, paths = shop_rows(ids, rng)
    report = ingest.write_all(engine, [(sessions, views)])
    assert report.new_sessions == len(ids)
    yield Shop(url.render_as_string(hide_password=False), engine, ids, paths)
    engine.dispose()
    next(urls, None)


@pytest.fixture(scope="module")
def model_dir(trained_demo):
    return trained_demo[1]  # features come from the session alone: the demo's model serves any database


def expected_count(paths: list[tuple[str, ...]], category: str) -> int:
    return sum(category in path for path in paths)


# -- the library ----------------------------------------------------------------------------------


def test_every_id_is_found_predicted_and_explained(shop, model_dir):
    model = artifact.load(model_dir).treatment
    for session_id in shop.ids:
        record = predict.lookup(shop.engine, session_id)
        assert record is not None and record.session_id == session_id, session_id
        assert [tuple(view) for view in record.views[db.CATEGORY_NAMES].itertuples(index=False)] == shop.paths[
            session_id
        ]
        answer = predict.predict(shop.engine, model, session_id)
        assert answer.session_id == session_id and answer.prediction in ("male", "female")
        assessment = predict.assess(shop.engine, model, session_id)
        tree = explain.hierarchy(assessment.explanation, record.views)
        viewed = {code for path in shop.paths[session_id] for code in path}
        assert set(tree["label"]) - {explain.TIME_AND_ACTIVITY, explain.STEPS, explain.NOT_VIEWED} <= viewed


def test_every_category_of_any_level_is_counted(shop):
    for session_id in shop.ids:
        for category in {code for path in CATEGORIES for code in path}:
            expected = expected_count(shop.paths[session_id], category)
            assert db.count_category(shop.engine, session_id, category) == expected, (session_id, category)
            assert predict.count(shop.engine, session_id, category).count == expected


def test_unknown_means_the_database_has_no_such_session(shop, model_dir):
    model = artifact.load(model_dir).treatment
    for missing in [str(uuid.UUID(int=1)), shop.ids[0].upper(), shop.ids[0][:-1], "x" * (db.SESSION_ID_LENGTH + 1)]:
        assert predict.predict(shop.engine, model, missing).as_json() == {
            "SESSION_ID": missing,
            "PREDICTION": UNKNOWN,
        }


def test_blanks_around_an_id_are_dropped_unless_the_database_holds_them(shop, tmp_path):
    """An id is tried exactly as typed first, then without the blanks around it."""
    assert predict.lookup(shop.engine, f"  {shop.ids[0]}\n").session_id == shop.ids[0]
    assert predict.count(shop.engine, f" {shop.ids[1]} ", " Women ").as_json() == {
        "SESSION_ID": shop.ids[1],
        "CATEGORY": "Women",
        "COUNT": expected_count(shop.paths[shop.ids[1]], "Women"),
    }
    own = db.connect(f"sqlite:///{tmp_path / 'blanks.db'}")
    sessions, views, _ = shop_rows([" lead", "lead"], random.Random(1))
    ingest.write_all(own, [(sessions, views)])
    assert predict.lookup(own, " lead").session_id == " lead"
    assert predict.lookup(own, "lead").session_id == "lead"
    own.dispose()


def test_ids_and_codes_that_differ_by_a_blank_are_different(db_url):
    """On both databases: MariaDB's utf8mb4_bin pads with spaces, so 'trail' and 'trail ' were one
    id there (a duplicate key on import) and 'Women ' counted as 'Women'."""
    engine = db.connect(db_url)
    ids = ["lead", " lead", "trail", "trail ", "tab\tx"]
    sessions, _, _ = shop_rows(ids, random.Random(1))
    codes = {"lead": "Women", " lead": " Women", "trail": "Women", "trail ": "Women ", "tab\tx": "Women\t"}
    views = [ingest.view_rows(i, [(codes[i], "B", "C", "D")])[0] for i in ids]
    assert ingest.write_all(engine, [(sessions, views)]).new_sessions == len(ids)
    for session_id in ids:
        assert predict.lookup(engine, session_id).session_id == session_id
        assert {code: db.count_category(engine, session_id, code) for code in set(codes.values())} == {
            code: int(code == codes[session_id]) for code in set(codes.values())
        }, session_id
    assert db.suggest_session_ids(engine, "trail") == ["trail", "trail "]
    assert db.suggest_session_ids(engine, "tab") == ["tab\tx"]
    engine.dispose()


# -- the command line -------------------------------------------------------------------------------


def run_cli(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "gender", *args], capture_output=True, text=True, cwd=PROJECT, timeout=300
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_the_cli_predicts_and_counts_every_id(shop, model_dir):
    jobs = {}
    for session_id in shop.ids:
        category = shop.paths[session_id][0][1]
        jobs[session_id] = (
            ("predict", session_id, "--db", shop.url, "--model-dir", str(model_dir)),
            ("count", session_id, category, "--db", shop.url),
        )
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) + 1) as pool:
        futures = {key: [pool.submit(run_cli, *args) for args in pair] for key, pair in jobs.items()}
        answers = {key: [future.result() for future in pair] for key, pair in futures.items()}
    for session_id, (predicted, counted) in answers.items():
        assert predicted["SESSION_ID"] == session_id and predicted["PREDICTION"] in ("male", "female")
        category = shop.paths[session_id][0][1]
        assert counted == {
            "SESSION_ID": session_id,
            "CATEGORY": category,
            "COUNT": expected_count(shop.paths[session_id], category),
        }


@pytest.mark.slow
def test_score_writes_every_unlabelled_id_as_it_is(shop, model_dir, tmp_path):
    out = tmp_path / "scores.csv"
    result = subprocess.run(
        [sys.executable, "-m", "gender", "score", "--unlabelled", "--out", str(out), "--db", shop.url]
        + ["--model-dir", str(model_dir)],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    with out.open(newline="") as f:
        scored = [row["session_id"] for row in csv.DictReader(f)]
    unlabelled = [session_id for i, session_id in enumerate(shop.ids) if i % 4 >= 2]
    assert sorted(scored) == sorted(unlabelled)


# -- import-db from a shop's own MariaDB database ---------------------------------------------------


@pytest.fixture(params=["text ids", "number ids"])
def foreign_mariadb(request):
    """A MariaDB FTP database the shop made itself: its own column types, no keys, no indexes."""
    numbers = request.param == "number ids"
    urls = _mysql_database()
    url = next(urls)
    engine = db.connect(url)
    id_type = "BIGINT" if numbers else "VARCHAR(300)"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE session (session_id {id_type}, start_time DATETIME, end_time TIMESTAMP NULL, "
                "gender TEXT)"
            )
        )
        conn.execute(
            text(
                f"CREATE TABLE product (session_id {id_type}, sequence_order SMALLINT, category_a TEXT, "
                "category_b VARCHAR(255), category_c TEXT, category_d TEXT)"
            )
        )
        rng = random.Random(3)
        ids = [str(rng.randrange(10**12)) for _ in range(12)] if numbers else session_ids(rng)
        sessions, views, _ = shop_rows(ids, rng)
        conn.execute(
            text("INSERT INTO session VALUES (:session_id, :start_time, :end_time, :gender)"),
            [{**row, "session_id": int(row["session_id"]) if numbers else row["session_id"]} for row in sessions],
        )
        conn.execute(
            text(
                "INSERT INTO product VALUES (:session_id, :sequence_order, :category_a, :category_b, :category_c, "
                ":category_d)"
            ),
            [{**row, "session_id": int(row["session_id"]) if numbers else row["session_id"]} for row in views],
        )
    yield url, pd.DataFrame(sessions), pd.DataFrame(views)
    engine.dispose()
    next(urls, None)


def test_import_db_copies_a_shops_own_database_exactly(foreign_mariadb, db_url):
    source, sessions, views = foreign_mariadb
    target = db.connect(db_url)
    report = ingest.import_db(target, source)
    assert (report.new_sessions, report.new_views) == (len(sessions), len(views))
    copied_sessions, copied_views = db.read_sessions(target, "all")
    expected = sessions.sort_values("session_id", ignore_index=True)
    pd.testing.assert_frame_equal(copied_sessions, expected, check_dtype=False)
    expected_views = views.sort_values(["session_id", "sequence_order"], ignore_index=True)
    pd.testing.assert_frame_equal(copied_views, expected_views[copied_views.columns], check_dtype=False)
    assert ingest.import_db(target, source).skipped_sessions == len(sessions)  # again: nothing changes
    target.dispose()


# -- the pages --------------------------------------------------------------------------------------


@pytest.fixture
def app(shop, model_dir, monkeypatch):
    """test_app's make_app, on the shop's database."""
    monkeypatch.setenv("GENDER_DB_URL", shop.url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))
    return make_app


def shown_answer(at: AppTest) -> dict:
    assert not at.exception and not at.error, [e.value for e in at.exception]
    return {m.label: m.value for m in at.metric}


@pytest.mark.slow
def test_the_predict_page_shows_every_id_typed_and_linked(shop, app):
    at = app()
    for session_id in shop.ids:
        at.text_input(key="session_id").set_value(session_id).run()
        assert shown_answer(at)["Predicted gender"] in ("male", "female"), session_id
        assert at.query_params["session"] in (session_id, [session_id])
    for session_id in shop.ids[::3]:
        linked = app(session=session_id)
        assert shown_answer(linked)["Predicted gender"] in ("male", "female"), session_id


def test_a_longer_id_is_told_why_it_finds_nothing(shop, app):
    too_long = "u" * (db.SESSION_ID_LENGTH + 45)
    at = app(session=too_long)
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and f"at most {db.SESSION_ID_LENGTH} characters" in warnings[0], warnings
    assert "this one has 300" in warnings[0]
    assert json.loads(at.json[0].value) == {"SESSION_ID": too_long, "PREDICTION": UNKNOWN}
    code = "c" * (db.CATEGORY_LENGTH + 1)  # and a code: on the Categories page and on the Find page
    at = app("categories")
    count_form(at, shop.ids[0], code)
    why = f"(a category code has at most {db.CATEGORY_LENGTH} characters, and this one has {len(code)})"
    assert any(why in caption.value for caption in at.caption), [c.value for c in at.caption]
    at = app("find")
    at.text_input(key="find_viewed").set_value(code)
    at.button[0].click().run()
    assert [w.value for w in at.warning][0].endswith(why + "."), [w.value for w in at.warning]


@pytest.mark.slow
def test_the_categories_page_counts_names_of_any_kind(shop, app):
    at = app("categories")
    for session_id in shop.ids[::2]:
        category = shop.paths[session_id][-1][2]  # a level-C name: "/", ";", ">", markup
        assert count_form(at, session_id, category) == {
            "SESSION_ID": session_id,
            "CATEGORY": category,
            "COUNT": expected_count(shop.paths[session_id], category),
        }


# -- a deep link in a real browser --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("shop", ["mariadb"], indirect=True)
def test_a_url_encoded_deep_link_opens_the_session_in_chromium(shop, model_dir, browser, tmp_path):
    env = {"GENDER_DB_URL": shop.url, "GENDER_MODEL_DIR": str(model_dir)}
    linked = [shop.ids[0], "/users/42/sessions/7?tab=1#top", "session 42 of Ana", "会话-二〇一四", shop.ids[5]]
    with live.streamlit_server(env, tmp_path / "streamlit.log") as (base, _):
        page = browser.new_page()
        try:
            for session_id in linked:
                page.goto(f"{base}/?session={urllib.parse.quote(session_id, safe='')}")
                page.wait_for_selector(live.IDLE, timeout=60_000)
                page.get_by_text("Predicted gender").first.wait_for(timeout=30_000)
                assert page.locator('[data-testid="stException"]').count() == 0
                assert page.locator('[data-testid="stAlertContentWarning"]').count() == 0, session_id
                box = page.get_by_label("Session id")
                assert box.input_value() == session_id
        finally:
            page.close()
