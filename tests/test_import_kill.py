"""`python -m gender import-pakdd` killed halfway, and malformed files, through the CLI, on SQLite and MariaDB.

An import is one transaction: a SIGKILL after it has written several chunks must leave the
`session` and `product` tables exactly as they were; running it again then completes, and a third
run changes nothing. A malformed file stops the import with one line `error: FILE, line N: REASON`
and exit status 1, and nothing is written, even when the bad line comes after a full chunk.
(tests/test_ingest.py checks the same rules through the library; these go through the CLI.)
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from gender import db, ingest
from gender.config import parse_url
from tests.conftest import PROJECT, _mysql_database, write_pakdd

BIG_SESSIONS = 40_000  # 8 chunks of ingest.CHUNK_SESSIONS: an import of 1-20 s, by machine
PROGRESS = re.compile(r"^\[\s*(\d+)%\] (\S+): ([\d,]+) sessions read$")


def pakdd_lines(n: int, prefix: str = "k", seed: int = 5) -> list[str]:
    """n valid PAKDD lines with 1-8 views each, session ids prefix0000000, prefix0000001, ..."""
    rng = random.Random(seed)
    first = datetime(2014, 11, 14)
    lines = []
    for i in range(n):
        start = first + timedelta(seconds=rng.randrange(39 * 86_400))
        end = start + timedelta(seconds=rng.randrange(3_600))
        views = ";".join(
            f"A{rng.randrange(11):05d}/B{rng.randrange(90):05d}/C{rng.randrange(400):05d}/D{rng.randrange(30_000):05d}/"
            for _ in range(rng.choice([1, 1, 1, 2, 3, 5, 8]))
        )
        lines.append(f"{prefix}{i:07d},{start:%Y-%m-%d %H:%M:%S},{end:%Y-%m-%d %H:%M:%S},{views}")
    return lines


def snapshot(url) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every row of `session` and `product`, in key order, read through a fresh engine."""
    engine = db.connect(url)
    try:
        return db.read_sessions(engine, "all")
    finally:
        engine.dispose()


def assert_same(before, after) -> None:
    pd.testing.assert_frame_equal(before[0], after[0])
    pd.testing.assert_frame_equal(before[1], after[1])


def expected_rows(lines: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What importing these lines (no labels) must add, computed here without the package's parser."""
    sessions, views = [], []
    for line in lines:
        session_id, start, end, products = line.split(",")
        sessions.append((session_id, pd.Timestamp(start), pd.Timestamp(end), None))
        for order, path in enumerate(products.rstrip("/").split("/;"), start=1):
            views.append((session_id, order, *path.split("/")))
    return (
        pd.DataFrame(sessions, columns=["session_id", "start_time", "end_time", "gender"]),
        pd.DataFrame(views, columns=["session_id", "sequence_order", *db.CATEGORY_NAMES]),
    )


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "gender", *map(str, args)]


def run_cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, cwd=PROJECT, timeout=timeout)


# -- SIGKILL halfway --------------------------------------------------------------------------------


def open_transactions(url) -> int:
    """Rows the InnoDB transactions of this database have modified so far (MariaDB only)."""
    engine = db.connect(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT COALESCE(SUM(t.trx_rows_modified), 0) FROM information_schema.INNODB_TRX t "
                        "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id WHERE p.DB = :db"
                    ),
                    {"db": parse_url(url).database},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def wait_until_no_client(url, timeout: float = 60) -> None:
    """Wait until the server has dropped the killed client's connection (and rolled its transaction back)."""
    name = parse_url(url).database
    engine = db.connect(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with engine.connect() as conn:
                others = conn.execute(
                    text(
                        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = :db AND ID <> CONNECTION_ID()"
                    ),
                    {"db": name},
                ).scalar_one()
            if not others:
                return
            assert time.monotonic() < deadline, f"the killed import's connection is still open after {timeout} s"
            time.sleep(0.2)
    finally:
        engine.dispose()


# `python -m gender import-pakdd` with a progress line after every chunk: at most one a second, a
# fast machine imports the big file between two lines.
EVERY_CHUNK = "import sys, gender.cli as cli; cli.StderrProgress.interval = 0; sys.exit(cli.main(sys.argv[1:]))"


def kill_halfway(url, data: Path, at_least: float = 0.4) -> int:
    """Start the import, SIGKILL it once its progress shows it has written `at_least` of the file.

    Returns the percentage reached. The progress line is printed after a chunk was inserted (inside
    the open transaction), so some rows are written, uncommitted; the import is stopped (SIGSTOP)
    there, so that it cannot go on to commit while the checks run, then killed.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", EVERY_CHUNK, "import-pakdd", str(data), "--db", url],
        cwd=PROJECT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines, reached = [], 0
    try:
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            match = PROGRESS.match(lines[-1])
            if match and int(match.group(1)) >= at_least * 100:
                process.send_signal(signal.SIGSTOP)
                reached = int(match.group(1))
                break
        assert process.poll() is None, f"the import ended before it could be killed: {lines}"
        assert reached < 100, lines
        if parse_url(url).get_backend_name() == "sqlite":
            wal = Path(parse_url(url).database + "-wal")
            assert wal.is_file() and wal.stat().st_size > 0, "no uncommitted pages in the WAL: nothing was written yet"
        else:
            assert open_transactions(url) >= ingest.CHUNK_SESSIONS, "no rows written in the open transaction yet"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert not any(line.startswith("imported ") for line in lines), lines
    return reached


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> tuple[Path, list[str]]:
    lines = pakdd_lines(BIG_SESSIONS)
    return write_pakdd(tmp_path_factory.mktemp("big") / "big.csv", lines), lines


def test_an_import_killed_halfway_leaves_the_database_as_it_was(db_url, pakdd_sample, big_file, tmp_path):
    url = db_url.render_as_string(hide_password=False)
    big, lines = big_file
    # Before: the small labelled sample and the first 1,000 sessions of the big file.
    data, labels = pakdd_sample
    assert run_cli("import-pakdd", data, "--labels", labels, "--db", url).returncode == 0
    head = write_pakdd(tmp_path / "head.csv", lines[:1_000])
    assert run_cli("import-pakdd", head, "--db", url).returncode == 0
    before = snapshot(url)
    assert len(before[0]) == 1_003

    reached = kill_halfway(url, big)
    assert reached >= 40
    if db_url.get_backend_name() != "sqlite":
        wait_until_no_client(url)
    assert_same(before, snapshot(url))

    # Again, to the end: the sessions the head already holds are left as they are.
    started = time.monotonic()
    finished = run_cli("import-pakdd", big, "--db", url)
    seconds = time.monotonic() - started
    assert finished.returncode == 0, finished.stderr
    assert "Traceback" not in finished.stderr
    added_sessions, added_views = expected_rows(lines[1_000:])
    assert finished.stderr.strip().splitlines()[-1] == (
        f"imported {len(added_sessions):,} sessions ({len(added_views):,} views); "
        "1,000 already in the database were left unchanged"
    )
    after = snapshot(url)
    new_sessions = after[0][~after[0]["session_id"].isin(before[0]["session_id"])].reset_index(drop=True)
    new_views = after[1][~after[1]["session_id"].isin(before[0]["session_id"])].reset_index(drop=True)
    assert new_sessions["gender"].isna().all()  # no labels: unknown gender
    pd.testing.assert_frame_equal(new_sessions.drop(columns="gender"), added_sessions.drop(columns="gender"))
    pd.testing.assert_frame_equal(new_views, added_views, check_dtype=False)
    old = after[0]["session_id"].isin(before[0]["session_id"])
    pd.testing.assert_frame_equal(after[0][old].reset_index(drop=True), before[0])

    # And once more: nothing changes.
    again = run_cli("import-pakdd", big, "--db", url)
    assert again.returncode == 0, again.stderr
    assert again.stderr.strip().splitlines()[-1] == (
        f"imported 0 sessions (0 views); {BIG_SESSIONS:,} already in the database were left unchanged"
    )
    assert_same(after, snapshot(url))
    print(f"{db_url.get_backend_name()}: killed at {reached} %, full import {seconds:.1f} s")


# -- malformed files --------------------------------------------------------------------------------

GOOD_LINES = 5_001  # more than a chunk: the bad line comes after rows were written in the transaction


@dataclass(frozen=True)
class Malformed:
    name: str
    bad: bytes | None  # the bad line (without its newline) after GOOD_LINES good ones; None: an empty file
    reason: str  # what the error must say after "FILE, line N: "
    line: int | None = GOOD_LINES + 1


def good(prefix: str) -> bytes:
    return "".join(line + "\n" for line in pakdd_lines(GOOD_LINES, prefix=prefix, seed=7)).encode()


T0, T1 = "2014-11-14 00:02:14", "2014-11-14 00:02:20"
PATH = "A00001/B00001/C00001/D00001/"
MALFORMED = [
    Malformed("february_30", f"x1,2014-02-30 10:00:00,{T1},{PATH}".encode(), "bad start_time '2014-02-30 10:00:00'"),
    Malformed("end_before_start", f"x1,{T1},{T0},{PATH}".encode(), f"end_time {T0} is before start_time {T1}"),
    Malformed("three_levels", f"x1,{T0},{T1},A00001/B00001/C00001/".encode(), "has 3 levels, expected 4"),
    Malformed("depth_in_second_view", f"x1,{T0},{T1},{PATH};A00001/B00001/".encode(), "has 2 levels, expected 4"),
    Malformed(
        "missing_end",
        f"x1,{T0},{PATH}".encode(),
        "expected 4 fields (session_id,start_time,end_time,products), found 3",
    ),
    Malformed(
        "latin1_byte",
        f"x1,{T0},{T1},A00001/B0000".encode() + b"\xe9/C00001/D00001/",
        f"not UTF-8 text (byte {len(f'x1,{T0},{T1},A00001/B0000') + 1})",
    ),
    Malformed("cp1252_quote", b"\x93x1\x94," + f"{T0},{T1},{PATH}".encode(), "not UTF-8 text (byte 1)"),
    Malformed("duplicate_id", None, "duplicate session id"),  # the first good line again, see `content`
    Malformed("empty_file", None, "no sessions in file", None),
]


def content(case: Malformed, prefix: str) -> bytes:
    if case.name == "empty_file":
        return b""
    body = good(prefix)
    if case.name == "duplicate_id":
        return body + body.split(b"\n", 1)[0]
    return body + case.bad + b"\n"


@dataclass
class Target:
    backend: str
    url_of: dict  # case name -> the database URL the case imports into
    before: tuple[pd.DataFrame, pd.DataFrame]  # what each of them holds before


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    """One labelled session: what every database holds before a malformed file comes."""
    tmp = tmp_path_factory.mktemp("malformed")
    data = write_pakdd(tmp / "sample.csv", ["s1,2014-11-14 00:02:14,2014-11-14 00:02:20,A1/B1/C1/D1/"])
    labels = write_pakdd(tmp / "sample_labels.csv", ["male"])
    return data, labels


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def target(request, sample_files):
    """Per backend, a database holding the small sample; SQLite: a copy per case, MariaDB: one shared."""
    tmp = sample_files[0].parent
    if request.param == "sqlite":
        urls = iter([parse_url(f"sqlite:///{tmp / 'base.db'}")])
    else:
        urls = _mysql_database()
    url = next(urls)
    engine = db.connect(url)
    ingest.import_pakdd(engine, *sample_files)
    engine.dispose()
    url_of = {}
    for case in MALFORMED:
        if request.param == "sqlite":
            copy = tmp / f"{case.name}.db"
            shutil.copy(tmp / "base.db", copy)
            url_of[case.name] = f"sqlite:///{copy}"
        else:
            url_of[case.name] = url.render_as_string(hide_password=False)
    yield Target(request.param, url_of, snapshot(url))
    next(urls, None)  # MariaDB: drop the database


@pytest.fixture(scope="module")
def results(target, tmp_path_factory) -> dict:
    """Every malformed file through the CLI, a few at a time; each case has its own session ids."""
    folder = tmp_path_factory.mktemp(f"files-{target.backend}")

    def attempt(index: int, case: Malformed):
        path = folder / f"{case.name}.csv"
        path.write_bytes(content(case, prefix=f"m{index:02d}_"))
        return run_cli("import-pakdd", path, "--db", target.url_of[case.name])

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {case.name: pool.submit(attempt, i, case) for i, case in enumerate(MALFORMED)}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", MALFORMED, ids=lambda case: case.name)
def test_a_malformed_file_is_refused_in_one_line_and_writes_nothing(target, results, case: Malformed):
    result = results[case.name]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1], result.stderr
    where = f"{case.name}.csv, line {case.line}: " if case.line else f"{case.name}.csv: "
    assert errors[0].startswith(f"error: {where}"), errors[0]
    assert case.reason in errors[0], errors[0]
    if case.name == "duplicate_id":
        assert errors[0].endswith("(first on line 1)"), errors[0]
    assert_same(target.before, snapshot(target.url_of[case.name]))


def test_the_tables_are_exactly_as_before_after_every_refusal(target, results):
    """Runs after the cases above: no row of any case's good lines reached any database."""
    for name, url in target.url_of.items():
        sessions, _ = snapshot(url)
        assert sessions["session_id"].tolist() == ["s1"], name
