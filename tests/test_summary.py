"""The population summaries (gender/summary.py): computed by SQL on SQLite and MariaDB and by
Spark SQL from a Parquet lake, equal to one another and to the logs counted afresh; stored
atomically; read by the Categories page, which says when and from what they were computed.

Spark runs in local mode on one SparkSession for the module (conftest's `spark`); without pyspark
or Java those tests skip, saying so (CI fails on a skip).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import insert, text, update
from streamlit.testing.v1 import AppTest

from gender import config, db, ingest, lake, summary
from gender.cli import main
from tests import live
from tests.conftest import PAKDD, PROJECT, _mysql_database
from tests.live import charts

# -- helpers ---------------------------------------------------------------------------------------


def counted_afresh(engine) -> dict[str, pd.DataFrame]:
    """The summaries' numbers counted in pandas from the raw tables: what the Categories page
    grouped live before the summaries existed, by another route than SQL or Spark."""
    with engine.connect() as conn:
        sessions = pd.read_sql(db.session.select(), conn)
        views = pd.read_sql(db.product.select(), conn)
    sessions["gender"] = sessions["gender"].fillna("unknown")
    joined = views.merge(sessions[["session_id", "gender"]], on="session_id")
    levels = []
    for level, name in zip(db.LEVELS, db.CATEGORY_NAMES):
        grouped = joined.groupby([name, "gender"]).agg(views=("session_id", "size"), sessions=("session_id", "nunique"))
        levels.append(grouped.reset_index().rename(columns={name: "category"}).assign(level=level))
    branches = joined.groupby([*db.CATEGORY_NAMES[:3], "gender"]).size().reset_index(name="views")
    start = pd.to_datetime(sessions["start_time"])
    activity = (
        sessions.assign(date=start.dt.normalize(), hour=start.dt.hour)
        .groupby(["date", "hour", "gender"])
        .size()
        .reset_index(name="sessions")
    )
    paths = joined.groupby(db.CATEGORY_NAMES).size().reset_index(name="views")
    return dict(zip(SETS, summary._tidy(pd.concat(levels, ignore_index=True), branches, activity, paths)))


SETS = ("categories", "branches", "activity", "paths")


def assert_same(left: summary.Summaries, right: summary.Summaries | dict) -> None:
    for name in SETS:
        expected = right[name] if isinstance(right, dict) else getattr(right, name)
        pd.testing.assert_frame_equal(getattr(left, name), expected, check_dtype=False, obj=name)


def run(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    status = main(list(map(str, args)))
    return status, capsys.readouterr().err


@pytest.fixture
def real_copy(real_db, tmp_path):
    """A private copy of the real logs' database (summaries get written into it)."""
    engine = db.connect(live.sqlite_copy(real_db.url.database, tmp_path / "real.db"))
    yield engine
    engine.dispose()


# -- computing and storing -------------------------------------------------------------------------


def test_summarize_stores_the_real_logs_numbers(real_copy, capsys):
    status, err = run(capsys, "summarize", "--db", real_copy.url)
    assert status == 0, err
    assert "summarised 27,000 sessions" in err and "with SQL" in err
    stored = summary.load(real_copy)
    assert_same(stored, counted_afresh(real_copy))
    info = stored.info
    assert (info.source, info.engine, info.location) == ("database", "sql", str(real_copy.url))
    assert (info.sessions, info.labelled) == (27_000, 12_000)
    assert info.views == db.table_counts(real_copy)["views"] and info.male == db.table_counts(real_copy)["male"]
    assert abs((datetime.now(UTC).replace(tzinfo=None) - info.computed_at).total_seconds()) < 120
    # every view counts once at each level; a session once per category it viewed
    assert (stored.categories.groupby("level")["views"].sum() == info.views).all()
    assert stored.activity["sessions"].sum() == info.sessions


def test_spark_summaries_equal_the_database_queries_on_the_real_logs(spark, real_copy, tmp_path, capsys):
    lake.export_parquet(real_copy, tmp_path / "lake")
    summary.summarize_database(real_copy)
    by_sql = summary.load(real_copy)
    into = f"sqlite:///{tmp_path / 'from-spark.db'}"  # a database of its own: only the summaries go in
    status, err = run(
        capsys, "summarize", "--spark", "--parquet", tmp_path / "lake", "--master", "local[2]", "--db", into
    )
    assert status == 0, err
    assert "checked; summarising them in Spark SQL" in err and "with Spark SQL" in err
    by_spark = summary.load(db.connect(into))
    assert_same(by_spark, by_sql)
    sql_info, spark_info = by_sql.info, by_spark.info
    assert (spark_info.source, spark_info.engine, spark_info.location) == ("parquet", "spark", str(tmp_path / "lake"))
    assert by_spark.describe().endswith(
        f"from the Parquet lake `{tmp_path / 'lake'}` with Spark SQL: 27,000 sessions, {spark_info.views:,} views."
    )
    counts = ("sessions", "labelled", "male", "views")
    assert [getattr(spark_info, n) for n in counts] == [getattr(sql_info, n) for n in counts]


def test_sqlite_and_mariadb_summaries_are_equal(real_copy):
    url = next(mariadb := _mysql_database())
    try:
        engine = db.connect(url)
        db.create_schema(engine)
        ingest.import_pakdd(engine, PAKDD / "trainingData.csv", PAKDD / "trainingLabels.csv")
        ingest.import_pakdd(engine, PAKDD / "testData.csv")
        on_mariadb = summary.summarize_database(engine)
        assert_same(summary.load(engine), on_mariadb)  # as stored and read back
        assert_same(on_mariadb, summary.summarize_database(real_copy))
        assert on_mariadb.info.sessions == 27_000
        engine.dispose()
    finally:
        next(mariadb, None)  # drops the database


def add_session(engine, session_id: str, gender: str | None = "male") -> None:
    with engine.begin() as conn:
        start = datetime(2014, 12, 1, 3, 4, 5)
        conn.execute(insert(db.session), [dict(session_id=session_id, start_time=start, end_time=start, gender=gender)])
        codes = {name: f"{name[-1].upper()}99999" for name in db.CATEGORY_NAMES}
        conn.execute(insert(db.product), [dict(session_id=session_id, sequence_order=1, **codes)])


FAILING_INSERT = {  # a real failure in the middle of the write: the last table refuses its rows
    "sqlite": "CREATE TRIGGER refuse BEFORE INSERT ON summary_activity BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    "mysql": "CREATE TRIGGER refuse BEFORE INSERT ON summary_activity FOR EACH ROW "
    "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'disk full'",
}


def test_a_failed_summarize_leaves_the_old_summaries(engine, pakdd_sample, capsys):
    ingest.import_pakdd(engine, *pakdd_sample)
    before = summary.summarize_database(engine)
    add_session(engine, "u20000")
    with engine.begin() as conn:
        conn.execute(text(FAILING_INSERT[engine.dialect.name]))
    status, err = run(capsys, "summarize", "--db", engine.url.render_as_string(hide_password=False))
    last = err.splitlines()[-1]
    assert status == 1 and "Traceback" not in err
    assert last.startswith("error: database ") and last.endswith("failed: disk full")
    kept = summary.load(engine)
    assert kept.info == before.info
    assert_same(kept, before)
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse"))
    after = summary.summarize_database(engine)
    assert after.info.sessions == before.info.sessions + 1
    assert_same(summary.load(engine), counted_afresh(engine))


# -- bad input -------------------------------------------------------------------------------------


@pytest.fixture
def small_lake(pakdd_sample, tmp_path):
    """A lake of the three sample sessions, and an empty database to write summaries into."""
    engine = db.connect(f"sqlite:///{tmp_path / 'sample.db'}")
    ingest.import_pakdd(engine, *pakdd_sample)
    lake.export_parquet(engine, tmp_path / "lake")
    into = f"sqlite:///{tmp_path / 'into.db'}"
    return tmp_path / "lake", into


@pytest.mark.parametrize(
    "table, change, column, reason",
    [
        ("product", lambda t: t.drop_columns(["category_b"]), "category_b", "no column 'category_b'"),
        (
            "product",
            lambda t: t.set_column(1, "sequence_order", pa.array([str(v) for v in t["sequence_order"].to_pylist()])),
            "sequence_order",
            "column 'sequence_order' is of type string, expected whole number",
        ),
        ("session", lambda t: t.drop_columns(["gender"]), "gender", "no column 'gender'"),
        (
            "session",
            lambda t: t.set_column(3, "gender", pa.array([1] * len(t), pa.int64())),
            "gender",
            "column 'gender' is of type int64, expected text",
        ),
    ],
)
def test_a_malformed_parquet_file_is_one_line_naming_file_and_column(small_lake, table, change, column, reason, capsys):
    directory, into = small_lake
    path = directory / f"{table}.parquet"
    pq.write_table(change(pq.read_table(path)), path)
    status, err = run(capsys, "summarize", "--spark", "--parquet", directory, "--db", into)
    assert status == 1
    assert err.startswith(f"error: {path}: {reason}")  # the file, then the column
    assert err.count("\n") == 1 and repr(column) in err
    assert summary.stored_info(db.connect(into)) is None  # nothing written, and Spark never started


def test_summarize_says_what_is_wrong_in_one_line(tmp_path, capsys):
    status, err = run(capsys, "summarize", "--parquet", tmp_path, "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert (status, err) == (1, "error: summarize --parquet DIR runs on Spark: give both --spark and --parquet DIR\n")
    status, err = run(capsys, "summarize", "--db", f"sqlite:///{tmp_path / 'empty.db'}")
    assert status == 1 and err.startswith("error: database sqlite:///") and "has no FTP tables" in err
    status, err = run(
        capsys, "summarize", "--spark", "--parquet", tmp_path / "none", "--db", f"sqlite:///{tmp_path}/y.db"
    )
    assert status == 1 and err.startswith(f"error: {tmp_path / 'none'}: no such folder") and err.count("\n") == 1


def test_setup_leaves_summaries_for_the_demo_database(trained_demo, tmp_path, monkeypatch, capsys):
    demo_url = f"sqlite:///{tmp_path / 'gender.db'}"
    monkeypatch.setattr(config, "DEFAULT_DB_URL", demo_url)  # as if it were data/gender.db
    status, err = run(capsys, "setup", "--db", demo_url, "--model-dir", trained_demo[1])
    assert status == 0, err
    assert "for the Categories page: summarised 6,000 sessions" in err
    engine = db.connect(demo_url)
    assert_same(summary.load(engine), counted_afresh(engine))
    status, err = run(capsys, "setup", "--db", demo_url, "--model-dir", trained_demo[1])
    assert status == 0 and "summarised" not in err  # present and current: nothing to do


# -- the Categories page ---------------------------------------------------------------------------


@pytest.fixture
def page_db(trained_demo, tmp_path, monkeypatch):
    """A private copy of the trained demo database, which the dashboard is pointed at."""
    url, model_dir = trained_demo
    copy = live.sqlite_copy(url, tmp_path / "page.db")
    monkeypatch.setenv("GENDER_DB_URL", copy)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))
    engine = db.connect(copy)
    yield engine
    engine.dispose()


def categories_page() -> AppTest:
    at = AppTest.from_file(str(PROJECT / "streamlit_app.py"), default_timeout=120)
    at.switch_page("pages/categories.py")
    at.run()
    assert not at.exception
    return at


def array(value):
    """A figure's array as sent: a list, or plotly's typed array of numbers (dtype, base64 bytes)."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return value


def bars(at, gender: str) -> dict:
    """Category -> views of `gender` in the page's views-per-category chart."""
    chart = next(c for c in charts(at) if c["data"][0]["type"] == "bar" and c["data"][0].get("name") == "female")
    trace = next(t for t in chart["data"] if t.get("name") == gender)
    return dict(zip(array(trace["x"]), array(trace["y"]), strict=True))


def test_the_page_shows_the_stored_summaries_and_when_they_were_computed(page_db):
    stored = summary.summarize_database(page_db)
    busiest = stored.category_counts("b").query("gender == 'female'").sort_values("views").iloc[-1]["category"]
    with page_db.begin() as conn:  # a number only the summary table holds: the page must show it
        conn.execute(
            update(db.summary_category)
            .where(db.summary_category.c.level == "b", db.summary_category.c.category == busiest)
            .where(db.summary_category.c.gender == "female")
            .values(views=987_654)
        )
    at = categories_page()
    captions = " ".join(c.value for c in at.caption)
    assert f"Computed {stored.info.computed_at:%Y-%m-%d %H:%M} UTC from the database" in captions
    assert "with SQL: 3,000 sessions" in captions
    assert bars(at, "female")[busiest] == 987_654
    assert not [w for w in at.warning if "older than the data" in w.value]


def test_the_page_says_when_the_summaries_are_older_than_the_data(page_db):
    summary.summarize_database(page_db)
    add_session(page_db, "u99999")
    at = categories_page()
    (warning,) = [w.value for w in at.warning if "older than the data" in w.value]
    assert "they count 3,000 sessions and the database now holds 3,001" in warning
    assert "python -m gender summarize" in warning


def test_without_summaries_a_small_database_is_summarised_live_and_says_so(page_db):
    at = categories_page()
    assert "Computed live from the database just now" in " ".join(c.value for c in at.caption)
    expected = counted_afresh(page_db)["categories"].query("level == 'b' and gender == 'female'")
    expected = expected.set_index("category")["views"]
    shown = bars(at, "female")
    assert shown and all(views == expected.get(category, 0) for category, views in shown.items())
    assert summary.stored_info(page_db) is None  # the page stores nothing


def test_without_summaries_a_large_database_gets_the_command(page_db, monkeypatch):
    monkeypatch.setattr(summary, "LIVE_VIEWS", 1_000)  # the demo's views are "many" now
    at = categories_page()
    note = " ".join(i.value for i in at.info)
    assert "No population summaries are stored" in note and "more than 1,000 views" in note
    assert "`python -m gender summarize`" in note and "--spark --parquet DIR" in note
    assert not [c for c in charts(at) if c["data"][0]["type"] == "treemap"]  # nothing grouped live
