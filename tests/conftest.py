"""Shared fixtures: real databases (a SQLite file, a fresh MariaDB database), small FTP data sets.

MariaDB tests run when GENDER_TEST_MYSQL_URL points at a server (e.g.
mysql+pymysql://root@127.0.0.1:3306/gender_test); each test gets its own database, named after
the URL's with a random suffix, dropped afterwards. With GENDER_TEST_REQUIRE_ALL=1 (as in CI) a
skipped test fails the run: CI must not pass by skipping.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest
from sqlalchemy import text

from gender import db, ingest, synth
from gender.config import parse_url
from tests import live

if TYPE_CHECKING:
    from gender.card import ModelCard
    from gender.trained import Models

PROJECT = Path(__file__).resolve().parents[1]
PAKDD = PROJECT.parent / "shared" / "data" / "pakdd15"
MYSQL_URL = os.environ.get("GENDER_TEST_MYSQL_URL")


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("GENDER_TEST_REQUIRE_ALL") == "1":
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        skipped = reporter.stats.get("skipped", []) if reporter else []
        if skipped:
            reporter.write_line(f"GENDER_TEST_REQUIRE_ALL=1 and {len(skipped)} tests were skipped: failing", red=True)
            session.exitstatus = 1


def _mysql_database():
    """A fresh database on the test server; yields its URL and drops it afterwards."""
    if not MYSQL_URL:
        pytest.skip("GENDER_TEST_MYSQL_URL is not set: no MariaDB server to test against")
    base = parse_url(MYSQL_URL)
    name = f"{base.database or 'gender_test'}_{uuid.uuid4().hex[:10]}"
    server = db.connect(base.set(database=""))
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield base.set(database=name)
    finally:
        with server.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request, tmp_path):
    """The URL of an empty database: a SQLite file, then a MariaDB database."""
    if request.param == "sqlite":
        yield parse_url(f"sqlite:///{tmp_path / 'ftp.db'}")
    else:
        yield from _mysql_database()


@pytest.fixture
def engine(db_url):
    engine = db.connect(db_url)
    db.create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory):
    """A SQLite file with 3,000 synthetic sessions (seed 1), shared by many tests: they leave its
    sessions as they are, while the dashboard's tests add to its prediction log."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    engine = db.connect(f"sqlite:///{path}")
    synth.create_demo(engine, sessions=3_000, seed=1)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def trained_demo(demo_db, tmp_path_factory):
    """(database URL, model folder) with the candidates trained on the demo database. The folder is
    shared by every module: one that writes beside the models (a population) uses a copy."""
    from gender.train import train

    model_dir = tmp_path_factory.mktemp("models")
    engine = db.connect(f"sqlite:///{demo_db}")
    train(engine, model_dir)
    engine.dispose()
    return f"sqlite:///{demo_db}", model_dir


@pytest.fixture(scope="session")
def lake_dir(trained_demo, tmp_path_factory):
    """The demo database exported as a Parquet lake (`python -m gender export-parquet`), read-only:
    the Spark tests, local and on a cluster, score and summarise it."""
    from gender import lake

    url, _ = trained_demo
    directory = tmp_path_factory.mktemp("lake")
    lake.export_parquet(db.connect(url), directory)
    return directory


def write_pakdd(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture
def pakdd_sample(tmp_path) -> tuple[Path, Path]:
    """A small PAKDD data file and its labels, with the shapes of the real one."""
    data = write_pakdd(
        tmp_path / "data.csv",
        [
            "u10001,2014-11-14 00:02:14,2014-11-14 00:02:20,A00001/B00001/C00001/D00001/",
            "u10003,2014-11-14 00:02:41,2014-11-14 00:16:40,A00002/B00002/C00002/D00002/;"
            "A00002/B00002/C00003/D00003/;A00002/B00002/C00002/D00009/",
            "u10004,2014-11-19 23:59:41,2014-11-20,A00001/B00001/C00020/D08280/;A00001/B00001/C00020/D08281/",
        ],
    )
    labels = write_pakdd(tmp_path / "labels.csv", ["female", "male", "female"])
    return data, labels


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for a module's browser tests."""
    if not os.path.exists(live.CHROMIUM):
        pytest.skip("Chromium is not installed (make test installs it: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = live.launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def real_db(tmp_path_factory):
    """The real PAKDD'15 logs (27,000 sessions, 12,000 labelled) in a SQLite file, imported once."""
    if not (PAKDD / "trainingData.csv").is_file():
        pytest.skip(f"the real logs are not at {PAKDD}")
    engine = db.connect(f"sqlite:///{tmp_path_factory.mktemp('real') / 'pakdd.db'}")
    ingest.import_pakdd(engine, PAKDD / "trainingData.csv", PAKDD / "trainingLabels.csv")
    ingest.import_pakdd(engine, PAKDD / "testData.csv")
    yield engine
    engine.dispose()


class RealTrained(NamedTuple):
    """`train()`'s run on the real logs: its card, its model folder and the models loaded from it."""

    card: ModelCard
    model_dir: Path
    models: Models


@pytest.fixture(scope="session")
def real_trained(real_db, tmp_path_factory) -> RealTrained:
    """`train(real_db, model_dir)` run once for every module that needs it (minutes: 15
    cross-validation fits and the two final ones on the 12,000 labelled sessions). Shared
    read-only: load from its folder, never train into it or change its models."""
    from gender import artifact
    from gender.train import train

    model_dir = tmp_path_factory.mktemp("real-models")
    card = train(real_db, model_dir)
    return RealTrained(card, model_dir, artifact.load(model_dir))


def spark_missing() -> str | None:
    """Why Spark cannot run here, or None."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (make spark installs it from requirements-spark.txt)"
    if shutil.which("java") is None:
        return "Java is not installed (make spark installs Debian's openjdk-17-jre-headless)"
    return None


@pytest.fixture(scope="module")
def spark():
    """A local-mode SparkSession for a module's Spark tests, stopped at the module's end.

    Module-scoped on purpose: a SparkSession left running between modules would be what another
    module's `SparkSession.builder...getOrCreate()` or `gender.spark.session()` gets back, whatever
    master it asks for, and one module stopping it would break the next. Little is lost: the JVM
    starts once per pytest process (tens of seconds), a later module's session on it in ~2 s.
    Without pyspark or Java the tests skip, saying so (CI fails on a skip)."""
    reason = spark_missing()
    if reason:
        pytest.skip(reason)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("gender-lens tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
