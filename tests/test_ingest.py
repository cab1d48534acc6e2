"""Getting data in: PAKDD files and other FTP databases, on SQLite and on MariaDB."""

import gzip
from datetime import datetime

import pandas as pd
import pytest
from sqlalchemy import text

from gender import db, events, ingest, synth
from gender.errors import GenderError, ImportFailed
from gender.features import session_frame
from tests import live
from tests.conftest import _mysql_database, write_pakdd


def row_counts(engine):
    counts = db.table_counts(engine)
    return counts["sessions"], counts["views"]


def test_pakdd_round_trip(engine, pakdd_sample):
    data, labels = pakdd_sample
    report = ingest.import_pakdd(engine, data, labels)
    assert (report.new_sessions, report.new_views, report.skipped_sessions) == (3, 6, 0)

    record = db.get_session(engine, "u10003")
    assert record["gender"] == "male"
    assert str(record["start_time"]) == "2014-11-14 00:02:41" and str(record["end_time"]) == "2014-11-14 00:16:40"
    views = db.get_views(engine, "u10003")
    assert views["sequence_order"].tolist() == [1, 2, 3]
    assert views["category_c"].tolist() == ["C00002", "C00003", "C00002"]
    assert str(db.get_session(engine, "u10004")["end_time"]) == "2014-11-20 00:00:00"  # a bare date

    # Read back in bulk, the paths are the file's own.
    sessions, all_views = db.read_sessions(engine, "all")
    frame = session_frame(sessions, all_views)
    original = pd.read_csv(data, header=None, names=["id", "start", "end", "products"]).set_index("id")
    expected = {
        session_id: tuple(tuple(view.split("/")) for view in products.rstrip("/").split("/;"))
        for session_id, products in original["products"].items()
    }
    assert frame["paths"].to_dict() == expected


def test_without_labels_gender_is_unknown(engine, pakdd_sample):
    data, _ = pakdd_sample
    ingest.import_pakdd(engine, data)
    counts = db.table_counts(engine)
    assert (counts["sessions"], counts["labelled"], counts["unknown"]) == (3, 0, 3)


def test_importing_again_changes_nothing(engine, pakdd_sample):
    data, labels = pakdd_sample
    ingest.import_pakdd(engine, data, labels)
    before = db.read_sessions(engine, "all")
    report = ingest.import_pakdd(engine, data, labels)
    assert (report.new_sessions, report.skipped_sessions) == (0, 3)
    after = db.read_sessions(engine, "all")
    pd.testing.assert_frame_equal(before[0], after[0])
    pd.testing.assert_frame_equal(before[1], after[1])


def test_the_report_says_one_session_left_unchanged_in_the_singular():
    report = ingest.ImportReport(new_sessions=2, new_views=3, skipped_sessions=1)
    assert str(report) == "imported 2 sessions (3 views); 1 already in the database was left unchanged"


@pytest.mark.parametrize("which", ["all", "labelled", "unlabelled"])
def test_the_session_chunks_together_are_read_sessions(engine, which):
    synth.create_demo(engine, sessions=500, seed=5)
    sessions, views = db.read_sessions(engine, which)
    chunks = list(db.session_chunks(engine, which, size=64))
    assert len(chunks) == -(-len(sessions) // 64) > 1
    pd.testing.assert_frame_equal(pd.concat([part for part, _ in chunks], ignore_index=True), sessions)
    pd.testing.assert_frame_equal(pd.concat([part for _, part in chunks], ignore_index=True), views)


GOOD = "u20001,2014-11-14 00:02:14,2014-11-14 00:02:20,A00001/B00001/C00001/D00001/"


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ("u20002,2014-13-14 00:02:14,2014-11-14 00:02:20,A1/B1/C1/D1/", "bad start_time"),
        ("u20002,2014-11-14 00:02:14,2014-11-13 00:02:20,A1/B1/C1/D1/", "is before start_time"),
        ("u20002,2014-11-14 00:02:14,2014-11-14 00:02:20,A1/B1/C1/", "has 3 levels, expected 4"),
        ("u20002,2014-11-14 00:02:14,2014-11-14 00:02:20,A1/B1/C1/D1/E1/", "has 5 levels, expected 4"),
        ("u20002,2014-11-14 00:02:14,2014-11-14 00:02:20", "expected 4 fields"),
        ("u20002,2014-11-14 00:02:14,2014-11-14 00:02:20,", "no product views"),
        ("u" * 256 + ",2014-11-14 00:02:14,2014-11-14 00:02:20,A1/B1/C1/D1/", "bad session id"),  # too long
        (",2014-11-14 00:02:14,2014-11-14 00:02:20,A1/B1/C1/D1/", "bad session id"),  # empty
        ("u20002,2014-11-14 00:02:14,2014-11-14 00:02:20,A1//C1/D1/", "bad category code"),  # empty
        ("u20002,2014-11-14 00:02:14,2014-11-14 00:02:20,A1/" + "B" * 256 + "/C1/D1/", "bad category code"),
        (GOOD, "duplicate session id u20001 (first on line 1)"),
        ("u20002,2014-11-14 00:02:14,2014-11-14 00:02:20,A1/B\x001/C1/D1/", "bad category code 'B\\x001'"),
        ("u20002,2014-11-14 00:02:14,2014-11-14 00:02:20,A1/B1/C\x1f1/D1/", "'C\\x1f1': it holds the unit separator"),
    ],
)
def test_a_bad_line_fails_with_its_number_and_writes_nothing(engine, pakdd_sample, tmp_path, bad_line, reason):
    data, labels = pakdd_sample
    ingest.import_pakdd(engine, data, labels)
    before = row_counts(engine)
    lines = [GOOD] + [GOOD.replace("u20001", f"u2{i:04d}") for i in range(3, 7000)] + [bad_line]
    bad = write_pakdd(tmp_path / "bad.csv", lines)  # the bad line comes after a full chunk was written
    with pytest.raises(ImportFailed) as failure:
        ingest.import_pakdd(engine, bad)
    assert failure.value.line == len(lines)
    assert str(failure.value).startswith(f"bad.csv, line {len(lines)}: ")
    assert reason in str(failure.value)
    assert row_counts(engine) == before


def test_gzipped_files_are_read_as_they_are(engine, pakdd_sample, tmp_path):
    """A gzipped data or labels file (by its first bytes, whatever its name) gives the tables of
    the file itself; a broken one is refused with the line it broke in, and writes nothing."""
    data, labels = pakdd_sample
    gzipped = []
    for path, name in ((data, "data.csv.gz"), (labels, "labels.txt")):
        gzipped.append(tmp_path / name)
        gzipped[-1].write_bytes(gzip.compress(path.read_bytes()))
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzipped[0].read_bytes()[:-12])  # its last line and the end marker cut off
    with pytest.raises(ImportFailed, match=r"^broken.csv.gz, line \d: broken gzip data: Compressed file ended"):
        ingest.import_pakdd(engine, broken, gzipped[1])
    assert row_counts(engine) == (0, 0)
    ingest.import_pakdd(engine, *gzipped)
    expected = db.connect(f"sqlite:///{tmp_path / 'plain.db'}")
    db.create_schema(expected)
    ingest.import_pakdd(expected, data, labels)
    for ours, theirs in zip(db.read_sessions(engine, "all"), db.read_sessions(expected, "all")):
        pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)
    expected.dispose()


def test_non_utf8_and_empty_files_are_refused(engine, tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes(GOOD.encode() + b"\nu20002,2014-11-14 00:02:14,2014-11-14 00:02:20,A\xe91/B1/C1/D1/\n")
    with pytest.raises(ImportFailed, match=r"latin.csv, line 2: not UTF-8"):
        ingest.import_pakdd(engine, latin)
    with pytest.raises(ImportFailed, match="no sessions in file"):
        ingest.import_pakdd(engine, write_pakdd(tmp_path / "empty.csv", []))
    with pytest.raises(ImportFailed, match="no such file"):
        ingest.import_pakdd(engine, tmp_path / "missing.csv")
    assert row_counts(engine) == (0, 0)


def test_a_byte_order_mark_is_not_part_of_the_first_session_id(engine, tmp_path):
    """Excel saves CSV with a BOM: the first id is still `u20001`, and so is the first label."""
    data = tmp_path / "excel.csv"
    data.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\r\n")
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"\xef\xbb\xbfmale\r\n")
    ingest.import_pakdd(engine, data, labels)
    assert db.get_session(engine, "u20001")["gender"] == "male"
    assert db.count_category(engine, "u20001", "B00001") == 1


def test_empty_lines_are_skipped(engine, pakdd_sample, tmp_path):
    """Exports often end in an empty line, or hold one: it is no session, and no label (lines of
    blanks and CRLF ends too); a bad line is still named by its line in the file."""
    data, labels = pakdd_sample
    lines = data.read_text().splitlines()
    data.write_bytes("\r\n".join(["", lines[0], " ", lines[1], "\t", lines[2], "", ""]).encode())
    labels.write_bytes(("\n" + labels.read_text() + "\n\n").encode())
    report = ingest.import_pakdd(engine, data, labels)
    assert (report.new_sessions, report.new_views) == (3, 6)
    assert db.get_session(engine, "u10003")["gender"] == "male"
    bad = write_pakdd(tmp_path / "bad.csv", ["", GOOD, "", "u2,2014-13-14 00:02:14,2014-11-14 00:02:20,A/B/C/D/"])
    with pytest.raises(ImportFailed, match=r"^bad.csv, line 4: bad start_time"):
        ingest.import_pakdd(engine, bad)


def test_a_file_of_whole_chunks_ends_without_an_empty_one(tmp_path, monkeypatch):
    """A file whose sessions are a multiple of the chunk (the real testData.csv: 15,000) yields
    no empty last chunk: `score --pakdd` built its features from one and failed."""
    monkeypatch.setattr(ingest, "CHUNK_SESSIONS", 2)
    lines = [GOOD.replace("u20001", f"u2000{n}") for n in range(4)]
    chunks = list(ingest.pakdd_chunks(write_pakdd(tmp_path / "four.csv", lines)))
    assert [[row["session_id"] for row in sessions] for sessions, _ in chunks] == [
        ["u20000", "u20001"],
        ["u20002", "u20003"],
    ]


def test_labels_must_match_the_data(engine, pakdd_sample, tmp_path):
    data, _ = pakdd_sample
    with pytest.raises(ImportFailed, match=r"data.csv, line 3: no label"):
        ingest.import_pakdd(engine, data, write_pakdd(tmp_path / "short.csv", ["male", "female"]))
    with pytest.raises(ImportFailed, match="more labels than"):
        ingest.import_pakdd(engine, data, write_pakdd(tmp_path / "long.csv", ["male"] * 4))
    with pytest.raises(ImportFailed, match=r"bad.csv, line 2: bad label 'Male\?'"):
        ingest.import_pakdd(engine, data, write_pakdd(tmp_path / "bad.csv", ["male", "Male?", "female"]))
    assert row_counts(engine) == (0, 0)


def test_copy_from_another_ftp_database(engine, tmp_path):
    """import-db: the source here is a SQLite file (the CTU server cannot be reached from here)."""
    source = db.connect(f"sqlite:///{tmp_path / 'source.db'}")
    synth.create_demo(source, sessions=6_000, seed=3)  # more than one chunk
    report = ingest.import_db(engine, source.url)
    assert (report.new_sessions, report.new_views) == row_counts(source)
    for which in ("labelled", "unlabelled"):
        copied, original = db.read_sessions(engine, which), db.read_sessions(source, which)
        pd.testing.assert_frame_equal(copied[0], original[0])
        pd.testing.assert_frame_equal(copied[1], original[1])
    again = ingest.import_db(engine, source.url)
    assert (again.new_sessions, again.skipped_sessions) == (0, 6_000)


def test_a_failed_copy_leaves_no_connection_open_on_the_source():
    """import-db into a database that fails: the source's streaming read ends with the error, even
    while the error is kept (a test keeps it; so may a caller). Its open transaction held MariaDB's
    metadata locks, and dropping the source database waited for them (300 s in CI)."""
    databases = _mysql_database()
    source_url = next(databases)
    synth.create_demo(db.connect(source_url), sessions=300, seed=3)
    down = db.connect(f"mysql+pymysql://root@127.0.0.1:{live.free_port()}/nothing")
    with pytest.raises(GenderError) as kept:
        ingest.import_db(down, source_url)
    admin = db.connect(source_url)
    with admin.connect() as conn:
        conn.execute(text("SET SESSION lock_wait_timeout = 2"))
        conn.execute(text("DROP TABLE product"))  # waits, then fails, while a reader holds the table
    assert kept.value is not None
    next(databases, None)


def test_synthetic_data_is_deterministic_and_shaped_like_the_shop():
    first = list(synth.generate(6_000, seed=7))
    second = list(synth.generate(6_000, seed=7))
    assert first == second
    sessions = pd.DataFrame([row for chunk in first for row in chunk[0]])
    views = pd.DataFrame([row for chunk in first for row in chunk[1]])
    labelled = sessions["gender"].dropna()
    assert 0.19 < (labelled == "male").mean() < 0.25
    assert 0.25 < sessions["gender"].isna().mean() < 0.35
    per_session = views.groupby("session_id").size()
    assert per_session.median() == 1 and per_session.max() >= 20  # heavy-tailed
    assert views["category_a"].nunique() == 11 and views["category_b"].nunique() > 60
    assert (sessions["end_time"] >= sessions["start_time"]).all()
    assert list(synth.generate(10, seed=8))[0] != list(synth.generate(10, seed=7))[0]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2014-11-14 00:02:41", datetime(2014, 11, 14, 0, 2, 41)),
        ("2014-11-20", datetime(2014, 11, 20)),  # a bare date, as in the real logs
        ("2014-11-14T00:02:41", datetime(2014, 11, 14, 0, 2, 41)),
        ("2014-11-14T21:02:41.250+09:00", datetime(2014, 11, 14, 21, 2, 41, 250_000)),  # the wall time it names
        ("2014-11-14T00:02:41Z", datetime(2014, 11, 14, 0, 2, 41)),
    ],
)
def test_times_are_iso_8601_kept_as_the_wall_time_they_name(text, expected):
    assert ingest.parse_time(text, "start_time") == expected


@pytest.mark.parametrize("text", ["2014-13-14 00:00:00", "2014-11-14 24:00:00", "14/11/2014", "", "yesterday"])
def test_other_times_are_refused(text):
    with pytest.raises(ingest.Invalid, match="bad start_time"):
        ingest.parse_time(text, "start_time")


# -- import-db from a shop's own database: what the copy cannot keep is named in the source ----------

START, END = "2014-11-14 00:02:14", "2014-11-14 00:02:20"


def own_source(url, sessions: list[str], views: list[tuple[str, int]], collation: str = "") -> str:
    """A source database made by the shop: its own `session` and `product` tables, no keys, ids
    compared by `collation` (e.g. SQLite's `COLLATE NOCASE`), holding the sessions and the views
    (session id, sequence_order), each view of the path A/B/C/D."""
    engine = db.connect(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE session (session_id VARCHAR(255) {collation}, start_time DATETIME, "
                "end_time DATETIME, gender VARCHAR(6))"
            )
        )
        conn.execute(
            text(
                f"CREATE TABLE product (session_id VARCHAR(255) {collation}, sequence_order BIGINT, "
                "category_a VARCHAR(9), category_b VARCHAR(9), category_c VARCHAR(9), category_d VARCHAR(9))"
            )
        )
        for session_id in sessions:
            conn.execute(
                text("INSERT INTO session VALUES (:id, :start, :end, NULL)"),
                {"id": session_id, "start": START, "end": END},
            )
        for session_id, order in views:
            conn.execute(
                text("INSERT INTO product VALUES (:id, :order, 'A', 'B', 'C', 'D')"), {"id": session_id, "order": order}
            )
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "mariadb"])
def source_url(request, tmp_path):
    """Where a source database goes: a SQLite file, then a MariaDB database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'source.db'}"
    else:
        yield from _mysql_database()


@pytest.mark.parametrize(
    "sessions, views, reason",
    [
        (["ok", "gap"], [("ok", 1), ("gap", 5), ("gap", 5)], "session 'gap': two views with sequence_order 5"),
        (["ok", "twice", "twice"], [("ok", 1)], "session 'twice' is in the session table twice"),
        (
            ["big"],
            [("big", 2**41)],
            "session 'big': sequence_order 2199023255552 is beyond a 32-bit integer, the tables' INTEGER",
        ),
    ],
)
def test_a_key_the_source_breaks_is_named_in_the_source(engine, source_url, sessions, views, reason):
    """A shop's own tables may have no keys: what the target's keys would refuse is named as the
    source holds it (the error blamed the target database)."""
    source = own_source(source_url, sessions, views)
    with pytest.raises(ImportFailed) as failure:
        ingest.import_db(engine, source)
    assert str(failure.value) == f"{db.redact(source)}: {reason}"
    assert row_counts(engine) == (0, 0)


def test_views_of_no_session_in_the_source_are_skipped_and_counted(engine, source_url):
    source = own_source(source_url, ["a", "b"], [("a", 1), ("b", 1), ("b", 2), ("gone", 1), ("gone", 2)])
    report = ingest.import_db(engine, source)
    assert (report.new_sessions, report.new_views, report.orphan_views) == (2, 3, 2)
    assert str(report) == "imported 2 sessions (3 views); 2 views of no session in the source were skipped"
    again = ingest.import_db(engine, source)
    assert (again.new_sessions, again.skipped_sessions, again.orphan_views) == (0, 2, 2)


@pytest.mark.parametrize(
    "source_kind, view_id", [("sqlite", "shop:1"), ("mariadb", "shop:1"), ("mariadb", "Shop:1 ")]
)  # SQLite's NOCASE keeps trailing blanks
def test_a_view_the_source_matches_to_another_spelling_of_its_session_is_named(engine, tmp_path, source_kind, view_id):
    """A source whose collation ignores case (and on MariaDB trailing blanks) takes the view of
    `shop:1` for one of session `Shop:1`: the copy keeps ids exact (the target's key refused it)."""
    if source_kind == "sqlite":
        databases, url = None, f"sqlite:///{tmp_path / 'source.db'}"
        collation = "COLLATE NOCASE"
    else:
        databases = _mysql_database()
        url, collation = next(databases), "COLLATE utf8mb4_general_ci"
    source = own_source(url, ["Shop:1"], [("Shop:1", 1), (view_id, 2)], collation)
    with pytest.raises(ImportFailed) as failure:
        ingest.import_db(engine, source)
    assert str(failure.value) == (
        f"{db.redact(source)}: session 'Shop:1': view 2 gives its session as {view_id!r}, which is 'Shop:1' "
        "only to the source's collation (the copy keeps ids exact)"
    )
    assert row_counts(engine) == (0, 0)
    if databases:
        next(databases, None)


# -- into tables of one's own whose collation is loose ------------------------------------------------

# A loose collation, and what it takes for `gap` and for `new`: case-insensitive, or padding with spaces.
LOOSE = {"utf8mb4_general_ci": ("GAP", "NEW"), "utf8mb4_bin": ("gap ", "new ")}


@pytest.fixture(params=list(LOOSE))
def own_loose(request):
    """(engine, collation, alike): a MariaDB database whose `session` and `product` tables the shop
    made itself, comparing ids by a loose collation, holding session `gap` with one view; `alike`
    is how that collation may also write `gap` and `new`."""
    databases = _mysql_database()
    engine = db.connect(next(databases))
    ids = f"VARCHAR(255) COLLATE {request.param}"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE session (session_id {ids} PRIMARY KEY, start_time DATETIME NOT NULL, "
                "end_time DATETIME NOT NULL, gender VARCHAR(6))"
            )
        )
        conn.execute(
            text(
                f"CREATE TABLE product (session_id {ids}, sequence_order INTEGER, category_a {ids} NOT NULL, "
                f"category_b {ids} NOT NULL, category_c {ids} NOT NULL, category_d {ids} NOT NULL, "
                "PRIMARY KEY (session_id, sequence_order), FOREIGN KEY (session_id) REFERENCES session (session_id))"
            )
        )
        conn.execute(text(f"INSERT INTO session VALUES ('gap', '{START}', '{END}', 'female')"))
        conn.execute(text("INSERT INTO product VALUES ('gap', 1, 'A', 'B', 'C', 'D')"))
    yield engine, request.param, LOOSE[request.param]
    engine.dispose()
    next(databases, None)


def import_events_csv(engine, path, rows: list[str]):
    path.write_text("visit,viewed_at,category\n" + "".join(f'"{row}",{START},A/B/C/D\n' for row in rows))
    return events.import_events(engine, path, events.EventColumns(session="visit", time="viewed_at", path="category"))


def pakdd_lines(ids: list[str]) -> list[str]:
    return [f"{session_id},{START},{END},A/B/C/D/" for session_id in ids]


def test_an_id_the_collation_takes_for_one_in_the_database_is_already_there(own_loose, tmp_path):
    """`GAP` is `gap` to the database, as its lookups find it: left as it is, as an exact match is."""
    engine, _, (gap, _) = own_loose
    report = import_events_csv(engine, tmp_path / "ci.csv", [gap, gap, "new"])
    assert (report.new_sessions, report.new_views, report.skipped_sessions) == (1, 1, 1)
    report = ingest.import_pakdd(engine, write_pakdd(tmp_path / "ci.pakdd", pakdd_lines([gap, "other"])))
    assert (report.new_sessions, report.new_views, report.skipped_sessions) == (1, 1, 1)
    assert row_counts(engine) == (3, 3)
    assert db.get_session(engine, gap)["gender"] == "female"


@pytest.mark.parametrize("per_chunk", [3, 1])  # in one chunk, and across chunks
def test_two_ids_of_one_import_the_collation_takes_for_one_are_named(own_loose, tmp_path, per_chunk):
    engine, collation, (_, new) = own_loose
    first, second = sorted(["new", new])
    reason = f"session ids {first!r} and {second!r} are one session to the database's collation ({collation})"
    with pytest.raises(ImportFailed) as failure:
        import_events_csv(engine, tmp_path / "ci2.csv", [new, "x", "new"])
    assert str(failure.value) == f"ci2.csv: {reason}"
    sessions = [ingest.check_session(session_id, START, END, None) for session_id in [new, "x", "new"]]
    views = [
        {"session_id": row["session_id"], "sequence_order": 1, **dict.fromkeys(db.CATEGORY_NAMES, "A")}
        for row in sessions
    ]
    chunks = [(sessions[i : i + per_chunk], views[i : i + per_chunk]) for i in range(0, len(sessions), per_chunk)]
    with pytest.raises(ImportFailed) as failure:  # import-pakdd's and import-db's writing
        ingest.write_all(engine, chunks, "rows")
    assert str(failure.value) == f"rows: {reason}"
    assert row_counts(engine) == (1, 1)
