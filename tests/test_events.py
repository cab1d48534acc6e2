"""A shop's event log into the FTP tables (`python -m gender import-events`), on SQLite and MariaDB.

A generated log (shuffled, sessions interleaved, views of the same second, labels on some events
only, ids and codes of any text) in CSV and Parquet, with a path column or a column per level,
must give exactly the tables computed here without the package; the real PAKDD logs turned into
events must give the tables of the PAKDD import; a bad file stops with the file, the line and the
reason and writes nothing; importing again changes nothing.
"""

from __future__ import annotations

import csv
import gzip
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from gender import db, events, ingest
from gender.config import parse_url
from gender.errors import GenderError, ImportFailed
from tests.conftest import PAKDD, PROJECT
from tests.test_import_kill import assert_same, snapshot, wait_until_no_client

T0 = datetime(2014, 11, 14, 9, 30)


@dataclass(frozen=True)
class Event:
    session_id: str
    time: datetime
    codes: tuple[str, ...] | None  # None: an event other than a view
    gender: str | None


# -- a generated event log ------------------------------------------------------------------------


def generated_events(sessions: int = 400, seed: int = 3, slash_codes: bool = False) -> list[Event]:
    """Events of `sessions` sessions in file order: shuffled, so sessions interleave; 1-7 views each,
    several in the same second; about a third unlabelled; some labelled sessions carry their gender
    on a few events only. With `slash_codes`, codes contain "/" (only per-level columns can hold them)."""
    rng = random.Random(seed)
    names = ["Loja Ténis", "shop:", "名前 ", "Müller & Söhne #", "a b"]
    slash = "/" if slash_codes else "-"
    rows = []
    for i in range(sessions):
        session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if i % 2 else f"{names[i % 5]}{i}"
        gender = rng.choice(["female", "female", "male", None])
        start = T0 + timedelta(seconds=rng.randrange(30 * 86_400))
        time = start
        for view in range(rng.choice([1, 1, 2, 3, 5, 7])):
            time += timedelta(seconds=rng.choice([0, 0, 1, 7, 60]))  # ties in time, often
            codes = (
                f"Women{slash}{rng.randrange(3)}",
                f"Ténis {rng.randrange(5)}",
                f"C{rng.randrange(10)}",
                f"Produto {rng.randrange(1000):03d}{slash}ä",
            )
            told = gender if (view == 0 or rng.random() < 0.5) else None  # the label on some events
            rows.append(Event(session_id, time, codes, told))
    rng.shuffle(rows)  # file order: sessions interleaved, a session's views in any order
    return rows


def expected_tables(rows: list[Event]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The FTP tables these events must give, computed here: sessions span their events, views in
    time order and, at the same time, file order (Python's sort is stable); other events are no views."""
    by_session: dict[str, list[Event]] = {}
    for row in rows:
        by_session.setdefault(row.session_id, []).append(row)
    sessions, views = [], []
    for session_id, own in by_session.items():
        told = {row.gender for row in own if row.gender}
        assert len(told) <= 1
        sessions.append((session_id, min(r.time for r in own), max(r.time for r in own), next(iter(told), None)))
        in_order = sorted((row for row in own if row.codes), key=lambda row: row.time)
        views.extend((session_id, order, *row.codes) for order, row in enumerate(in_order, start=1))
    return (
        pd.DataFrame(sorted(sessions), columns=["session_id", "start_time", "end_time", "gender"]),
        pd.DataFrame(sorted(views), columns=["session_id", "sequence_order", *db.CATEGORY_NAMES]),
    )


def span(rows: list[Event]) -> str:
    """What an import's report says of these new views' times."""
    times = [row.time for row in rows if row.codes]
    return f" from {min(times)} to {max(times)}"


def tables(engine) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both FTP tables, whole, in key order (sorted here: MariaDB and SQLite agree, but say so)."""
    sessions, views = db.read_sessions(engine, "all")
    sessions = sessions.sort_values("session_id", ignore_index=True)
    views = views.sort_values(["session_id", "sequence_order"], ignore_index=True)
    return sessions, views


def assert_tables(engine, expected: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    sessions, views = tables(engine)
    pd.testing.assert_frame_equal(sessions, expected[0], check_dtype=False)
    pd.testing.assert_frame_equal(views, expected[1], check_dtype=False)


def event_frame(rows: list[Event], layout: str, sep: str = "/") -> pd.DataFrame:
    """The events as a shop would export them: one column of paths, or one column a level."""
    frame = pd.DataFrame(
        {
            "visit": [row.session_id for row in rows],
            "ts": [row.time for row in rows],
            "sex": [row.gender or "" for row in rows],
        }
    )
    if layout == "path":
        frame["category path"] = [sep.join(row.codes) + sep if row.codes else "" for row in rows]
    else:
        for i, name in enumerate(("top", "second", "third", "item")):
            frame[name] = [row.codes[i] if row.codes else "" for row in rows]
    return frame


COLUMNS = {
    "path": events.EventColumns(session="visit", time="ts", path="category path", gender="sex"),
    "levels": events.EventColumns(session="visit", time="ts", levels=("top", "second", "third", "item"), gender="sex"),
}


def write_events(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)  # times as Parquet timestamps, blanks as ""
    else:
        frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("layout", ["path", "levels"])
def test_a_generated_log_gives_exactly_the_expected_tables(engine, tmp_path, suffix, layout):
    rows = generated_events(slash_codes=layout == "levels")
    file = write_events(event_frame(rows, layout), tmp_path / f"events{suffix}")
    report = events.import_events(engine, file, COLUMNS[layout])
    expected = expected_tables(rows)
    assert (report.new_sessions, report.new_views, report.skipped_sessions) == (400, len(rows), 0)
    assert str(report) == f"imported 400 sessions ({len(rows):,} views){span(rows)}"
    assert_tables(engine, expected)
    assert expected[0]["gender"].isna().any() and expected[0]["gender"].notna().any()
    assert any("/" in code for code in expected[1]["category_d"]) == (layout == "levels")

    again = events.import_events(engine, file, COLUMNS[layout])  # the same file again: nothing changes
    assert (again.new_sessions, again.new_views, again.skipped_sessions) == (0, 0, 400)
    assert_tables(engine, expected)


def test_more_events_of_known_sessions_leave_them_unchanged(engine, tmp_path):
    rows = generated_events(sessions=50)
    events.import_events(engine, write_events(event_frame(rows[:40], "path"), tmp_path / "first.csv"), COLUMNS["path"])
    before = tables(engine)
    known = set(before[0]["session_id"])
    report = events.import_events(
        engine, write_events(event_frame(rows, "path"), tmp_path / "all.csv"), COLUMNS["path"]
    )
    assert report.skipped_sessions == len(known) and report.new_sessions == 50 - len(known)
    sessions, views = tables(engine)
    old = sessions["session_id"].isin(known)
    pd.testing.assert_frame_equal(sessions[old].reset_index(drop=True), before[0])
    pd.testing.assert_frame_equal(views[views["session_id"].isin(known)].reset_index(drop=True), before[1])
    new_rows = [row for row in rows if row.session_id not in known]
    expected = expected_tables(new_rows)
    pd.testing.assert_frame_equal(sessions[~old].reset_index(drop=True), expected[0], check_dtype=False)


def test_other_events_count_for_the_session_but_are_no_views(engine, tmp_path):
    """With --other-events, a row without a category (a page, a search) stretches its session and
    may carry its gender; a session of only such events is left out."""
    t = [T0 + timedelta(seconds=s) for s in range(5)]
    rows = [
        Event("s 1", t[0], None, None),
        Event("s 1", t[1], ("A", "B", "C", "D"), None),
        Event("s 2", t[1], None, "male"),
        Event("s 1", t[4], None, "female"),
        Event("s 3", t[2], ("A", "B", "C", "E"), None),
    ]
    file = write_events(event_frame(rows, "path"), tmp_path / "other.csv")
    with pytest.raises(ImportFailed, match=r"^other.csv, line 2: no category path"):
        events.import_events(engine, file, COLUMNS["path"])
    report = events.import_events(engine, file, COLUMNS["path"], other_events=True)
    assert (report.new_sessions, report.new_views, report.viewless_sessions) == (2, 2, 1)
    assert str(report) == (
        "imported 2 sessions (2 views) from 2014-11-14 09:30:01 to 2014-11-14 09:30:02; "
        "1 session without a product view was left out"
    )
    assert_tables(engine, expected_tables([row for row in rows if row.session_id != "s 2"]))


def test_finer_times_and_numbers(engine, tmp_path):
    """Parquet may hold integer ids and sub-second times: ids become their digits, views keep the
    order of their fractions, and the tables keep seconds."""
    frame = pd.DataFrame(
        {
            "visit": [7, 7, 7, 8],
            "ts": pd.to_datetime(
                [
                    "2014-11-14 10:00:00.900",
                    "2014-11-14 10:00:00.100",
                    "2014-11-14 10:00:01.000",
                    "2014-11-14 11:00:00.000",
                ]
            ),
            "category path": ["a/b/c/first-late", "a/b/c/first", "a/b/c/last", "x/y/z/w"],
        }
    )
    frame.to_parquet(tmp_path / "numbers.parquet", index=False)
    columns = events.EventColumns(session="visit", time="ts", path="category path")
    events.import_events(engine, tmp_path / "numbers.parquet", columns)
    assert db.get_views(engine, "7")["category_d"].tolist() == ["first", "first-late", "last"]
    assert str(db.get_session(engine, "7")["start_time"]) == "2014-11-14 10:00:00"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_views_across_a_change_of_clocks_are_in_the_order_they_happened(engine, tmp_path, suffix):
    """When summer time ends, 02:50+02:00 comes 20 minutes before 02:10+01:00: views are ordered by
    the moment, and the session starts at its first view's wall time and lasts 20 minutes."""
    moments = pd.to_datetime(["2014-10-26T00:50:00Z", "2014-10-26T01:10:00Z"]).tz_convert("Europe/Prague")
    frame = pd.DataFrame({"visit": ["dst", "dst"], "ts": moments, "category path": ["A/B/C/first", "A/B/C/second"]})
    file = tmp_path / f"dst{suffix}"
    if suffix == ".csv":  # 2014-10-26T02:50:00+02:00, 2014-10-26T02:10:00+01:00
        frame.assign(ts=[moment.isoformat() for moment in moments]).to_csv(file, index=False)
    else:  # timestamp[tz=Europe/Prague]
        frame.to_parquet(file, index=False)
    events.import_events(engine, file, events.EventColumns(session="visit", time="ts", path="category path"))
    assert db.get_views(engine, "dst")["category_d"].tolist() == ["first", "second"]
    session = db.get_session(engine, "dst")
    assert (str(session["start_time"]), str(session["end_time"])) == ("2014-10-26 02:50:00", "2014-10-26 03:10:00")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_blanks_in_an_id_are_its_own_and_around_a_paths_levels_are_its_layout(engine, tmp_path, suffix):
    """` padded ` and `padded` are two sessions, as CSV (RFC 4180) and Parquet hold them; in a path
    the blanks around each level are layout, and a trailing separator is dropped even when it ends
    in a blank (it was read as part of the last level: `Air Max 90 >`), as is a leading one (as a
    URL path starts: `> Men > …`)."""
    frame = pd.DataFrame(
        {
            "visit": [" padded ", "padded", "padded", "padded"],
            "ts": pd.to_datetime(
                ["2014-11-14 10:00:00", "2014-11-15 11:00:00", "2014-11-15 11:00:09", "2014-11-15 11:00:10"]
            ),
            "category path": [
                "Women's shoes > Ténis > Nike Air > Air Max 90 > ",
                "Women's shoes >  Ténis  > Nike Air > Air Max 90",
                "Men > Ténis > Nike Air > Air Max 1",
                " > Men > Ténis > Nike Air > Air Max 2",
            ],
            "sex": ["male", "female", "", ""],
        }
    )
    file = write_events(frame, tmp_path / f"blanks{suffix}")
    columns = events.EventColumns(session="visit", time="ts", path="category path", gender="sex", sep=" > ")
    events.import_events(engine, file, columns)
    sessions, views = tables(engine)
    assert sessions[["session_id", "gender"]].values.tolist() == [[" padded ", "male"], ["padded", "female"]]
    assert views[db.CATEGORY_NAMES].values.tolist() == [
        ["Women's shoes", "Ténis", "Nike Air", "Air Max 90"],
        ["Women's shoes", "Ténis", "Nike Air", "Air Max 90"],
        ["Men", "Ténis", "Nike Air", "Air Max 1"],
        ["Men", "Ténis", "Nike Air", "Air Max 2"],
    ]


@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_empty_lines_are_no_rows(engine, tmp_path, end):
    """Exports often end in an empty line (or hold one): it is skipped, as a line of blanks is,
    while a quoted field keeps its empty lines."""
    lines = [HEADER, "", *GOOD[:2], "  ", 'q,2014-11-14 10:00:00,"A/B/C/D\n\n",', *GOOD[2:], "", ""]
    path = tmp_path / "trail.csv"
    path.write_bytes(end.join(lines).encode())
    report = events.import_events(engine, path, COLUMNS["path"])
    assert (report.new_sessions, report.new_views) == (31, 31)
    assert db.count_category(engine, "q", "D") == 1  # the path's trailing line break is a blank around "D"


def test_a_quoted_line_break_is_kept_as_written(engine, tmp_path):
    """As RFC 4180 holds it (and open(newline="") reads it): a quoted CR LF stays CR LF, a quoted LF
    stays LF, and lines are still the file's in errors."""
    rows = ['"s1\r\nx",2014-11-14 10:00:00,A/B/C/D,', '"s2\nx",2014-11-14 10:00:01,A/B/C/D,']
    bad = "x,2014-11-14 25:00:00,A/B/C/D,"
    (tmp_path / "bad.csv").write_bytes("\r\n".join([HEADER, *rows, bad, ""]).encode())
    with pytest.raises(ImportFailed, match=r"^bad.csv, line 6: bad ts '2014-11-14 25:00:00'"):
        events.import_events(engine, tmp_path / "bad.csv", COLUMNS["path"])
    (tmp_path / "good.csv").write_bytes("\r\n".join([HEADER, *rows]).encode())  # no line break at the end
    events.import_events(engine, tmp_path / "good.csv", COLUMNS["path"])
    assert tables(engine)[0]["session_id"].tolist() == ["s1\r\nx", "s2\nx"]


def test_a_gender_is_read_as_shops_spell_it(engine, tmp_path):
    """`M`, `f`, `Female`, `MALE`: what exports write for a gender the visitor told, in any case,
    and `NULL` or `Unknown` when not told. `Male?` is still refused (`BAD_FILES`)."""
    told = {"a": "M", "b": "f", "c": " Female ", "d": "MALE", "e": "Unknown", "g": "null"}
    rows = [f"{session},2014-11-14 10:00:0{n},A/B/C/D,{gender}" for n, (session, gender) in enumerate(told.items())]
    rows.append("a,2014-11-14 10:01:00,A/B/C/E,male")  # the same gender as `M`: no conflict
    (tmp_path / "told.csv").write_bytes(csv_bytes(HEADER, *rows))
    events.import_events(engine, tmp_path / "told.csv", COLUMNS["path"])
    sessions = tables(engine)[0]
    assert sessions["gender"].fillna("not told").tolist() == [
        "male",
        "female",
        "female",
        "male",
        "not told",
        "not told",
    ]


def test_a_level_column_is_taken_as_written(engine, tmp_path):
    frame = pd.DataFrame(
        {
            "visit": ["s", "s"],
            "ts": pd.to_datetime(["2014-11-14 10:00:00", "2014-11-14 10:00:01"]),
            "top": ["A", " A"],
            "second": ["B", "B"],
            "third": ["C", "C"],
            "item": ["D ", "D"],
            "sex": ["", "  "],  # blanks only: not told
        }
    )
    events.import_events(engine, write_events(frame, tmp_path / "levels.parquet"), COLUMNS["levels"])
    views = db.get_views(engine, "s")[db.CATEGORY_NAMES].values.tolist()
    assert views == [["A", "B", "C", "D "], [" A", "B", "C", "D"]]
    assert db.get_session(engine, "s")["gender"] is None


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_an_empty_level_column_is_named(engine, tmp_path, suffix):
    """It was "bad category code ''" (or None, a Parquet null): neither which column nor why."""
    frame = pd.DataFrame(
        {
            "visit": ["s", "t"],
            "ts": pd.to_datetime(["2014-11-14 10:00:00", "2014-11-14 10:00:01"]),
            "top": ["A", "A"],
            "second": ["B", "B"],
            "third": ["C", None],
            "item": ["D", "D"],
            "sex": ["", ""],
        }
    )
    file = write_events(frame, tmp_path / f"levels{suffix}")
    unit = "line 3" if suffix == ".csv" else "row 2"
    with pytest.raises(ImportFailed) as failure:
        events.import_events(engine, file, COLUMNS["levels"])
    assert str(failure.value) == f"levels{suffix}, {unit}: no category in column 'third': a view has one at every level"


def test_a_path_of_the_wrong_depth_is_named_as_the_file_writes_it(engine, tmp_path):
    file = tmp_path / "depth.csv"
    file.write_text("visit,ts,category path,sex\nx,2014-11-14 10:00:00,Beauté > Hair,\n")
    columns = events.EventColumns(session="visit", time="ts", path="category path", gender="sex", sep=" > ")
    with pytest.raises(ImportFailed, match="line 2: category path 'Beauté > Hair' has 2 levels, expected 4"):
        events.import_events(engine, file, columns)
    # a long one is cut inside its quotes
    long_path = "Women's shoes/Boots/Booties/Dr. Martens 1460/x"
    file.write_text(f"visit,ts,category path,sex\nx,2014-11-14 10:00:00,{long_path},\n")
    with pytest.raises(ImportFailed) as failure:
        events.import_events(engine, file, COLUMNS["path"])
    assert 'category path "Women\'s shoes/Boots/Booties/Dr. Ma"... has 5 levels' in str(failure.value)


# -- the real logs ------------------------------------------------------------------------------------


def pakdd_as_events(path: Path, seed: int = 1) -> int:
    """The real PAKDD logs (labelled and unknown-gender sessions) as one event log at `path`.

    View i of n is at start + floor(i·(end−start)/(n−1)) s: the first at the start, the last at the
    end. A session of one view (half of them) has its view at the start and an event other than a
    view at its end: with one event, its end would be lost. The label is on every event of a
    labelled session. Sessions interleave at random; a session's own events stay in order, as
    views of the same second keep file order."""
    rows = []
    labels = (PAKDD / "trainingLabels.csv").read_text().split()
    sources = [(PAKDD / "trainingData.csv", labels), (PAKDD / "testData.csv", None)]
    for data, genders in sources:
        for number, line in enumerate(data.read_text().splitlines()):
            session_id, start, end, products = line.split(",")
            start, end = ingest.parse_time(start, "start"), ingest.parse_time(end, "end")
            gender = genders[number] if genders else ""
            paths = products.split(";")
            seconds = int((end - start).total_seconds())
            n = len(paths)
            for i, category_path in enumerate(paths):
                offset = timedelta(seconds=seconds * i // (n - 1) if n > 1 else 0)
                rows.append((session_id, start + offset, category_path, gender))
            if n == 1:
                rows.append((session_id, end, "", gender))
    rng = random.Random(seed)
    keys = [rng.random() for _ in rows]
    # The same keys, sorted within each session: sessions interleave, each keeps its own order.
    by_session: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_session.setdefault(row[0], []).append(index)
    for indexes in by_session.values():
        for index, key in zip(indexes, sorted(keys[i] for i in indexes)):
            keys[index] = key
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["session_id", "time", "path", "gender"])
        for index in sorted(range(len(rows)), key=keys.__getitem__):
            session_id, time, category_path, gender = rows[index]
            writer.writerow([session_id, f"{time:%Y-%m-%d %H:%M:%S}", category_path, gender])
    return len(rows)


def test_the_real_logs_as_events_give_the_pakdd_import_tables(engine, real_db, tmp_path):
    file = tmp_path / "pakdd_events.csv"
    rows = pakdd_as_events(file)
    columns = events.EventColumns(session="session_id", time="time", path="path", gender="gender")
    report = events.import_events(engine, file, columns, other_events=True)
    assert (report.new_sessions, report.viewless_sessions) == (27_000, 0)
    assert report.new_views == 26_788 + 33_036 < rows
    expected = tables(real_db)  # ingest.import_pakdd of the same files (conftest), on SQLite
    assert_tables(engine, expected)


# -- bad files ------------------------------------------------------------------------------------------


def test_duplicate_rows_are_one_view_with_drop_duplicates(engine, tmp_path):
    """An export that delivered some events twice: with drop_duplicates, rows alike in session, time
    and path are one view (the first; a gender on the twin still counts), while a view of the same
    path at another moment, or another path at the same moment, stays; without it each row is a view."""
    rows = generated_events(sessions=60)
    twins = [replace(row, gender=None) for row in rows[::3]] + [replace(row, gender=row.gender) for row in rows[1::7]]
    later = replace(rows[2], time=rows[2].time + timedelta(seconds=1))  # a view again, a second later
    elsewhere = replace(rows[4], codes=(*rows[4].codes[:3], "another product"))
    with_twins = rows + twins + [later, elsewhere]
    random.Random(5).shuffle(with_twins)
    file = write_events(event_frame(with_twins, "path"), tmp_path / "twice.csv")
    report = events.import_events(engine, file, COLUMNS["path"], drop_duplicates=True)
    assert (report.new_views, report.duplicate_views) == (len(rows) + 2, len(twins))
    assert str(report).endswith(f"; {len(twins)} duplicate views were dropped")
    kept, seen = [], set()
    for row in with_twins:  # the first of each (session, time, path), in file order
        if (key := (row.session_id, row.time, row.codes)) not in seen:
            seen.add(key)
            kept.append(row)
    assert len(kept) == len(rows) + 2
    assert_tables(engine, (expected_tables(with_twins)[0], expected_tables(kept)[1]))  # in file order: the first

    every = events.import_events(db_of(tmp_path / "every.db"), file, COLUMNS["path"])
    assert (every.new_views, every.duplicate_views) == (len(with_twins), 0)


def db_of(path: Path):
    return db.connect(f"sqlite:///{path}")


def epoch_frame(rows: list[Event], unit: str) -> pd.DataFrame:
    """The events with their times as whole numbers of `unit` since 1970 UTC, as analytics exports key them."""
    frame = event_frame(rows, "path")
    since = frame["ts"] - datetime(1970, 1, 1)
    return frame.assign(ts=since // pd.Timedelta(1, unit))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_times_as_numbers_since_1970_in_each_unit(engine, tmp_path, suffix, unit):
    """Unix time in any unit (integers in Parquet, digits in CSV) gives the tables ISO times give:
    the wall time is UTC's."""
    rows = generated_events(sessions=100)
    file = tmp_path / f"epoch{suffix}"
    frame = epoch_frame(rows, unit)
    frame.to_parquet(file, index=False) if suffix == ".parquet" else frame.to_csv(file, index=False)
    assert pd.api.types.is_integer_dtype(frame["ts"])
    events.import_events(engine, file, replace(COLUMNS["path"], time_unit=unit))
    assert_tables(engine, expected_tables(rows))


def test_times_since_1970_with_a_fraction_order_the_views_and_keep_seconds(engine, tmp_path):
    """A fraction (of a second, or below a microsecond in ns) orders views within their second as
    ISO fractions do; a float column reads as it prints, not as its binary expansion."""
    frame = pd.DataFrame(
        {
            "visit": ["f"] * 3,
            "ts": [1415959200.9, 1415959200.1, 1415959201.0],  # 2014-11-14 10:00:00.9, .1 and 10:00:01 UTC
            "category path": ["a/b/c/late", "a/b/c/early", "a/b/c/last"],
        }
    )
    frame.to_parquet(tmp_path / "floats.parquet", index=False)
    columns = events.EventColumns(session="visit", time="ts", path="category path", time_unit="s")
    events.import_events(engine, tmp_path / "floats.parquet", columns)
    assert db.get_views(engine, "f")["category_d"].tolist() == ["early", "late", "last"]
    session = db.get_session(engine, "f")
    assert (str(session["start_time"]), str(session["end_time"])) == ("2014-11-14 10:00:00", "2014-11-14 10:00:01")
    assert events._moment("1415959200999999999", replace(columns, time_unit="ns")) == datetime(
        2014, 11, 14, 10, 0, 0, 999_999, tzinfo=UTC
    )
    assert events._moment(" -1.5 ", columns) == datetime(1969, 12, 31, 23, 59, 58, 500_000, tzinfo=UTC)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_time_zone_puts_unix_times_on_the_shops_clock(engine, tmp_path, suffix):
    """With Europe/Prague, Unix times 20 minutes apart as summer time ends are 02:50 and 02:10 on
    the shop's clock, ordered as they happened; a session lasts 20 minutes from 02:50."""
    moments = pd.to_datetime(["2014-10-26T00:50:00Z", "2014-10-26T01:10:00Z", "2014-11-14T09:00:00Z"])
    frame = pd.DataFrame(
        {
            "visit": ["dst", "dst", "winter"],
            "ts": (moments - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "s"),
            "category path": ["A/B/C/first", "A/B/C/second", "A/B/C/D"],
        }
    )
    file = tmp_path / f"unix{suffix}"
    frame.to_parquet(file, index=False) if suffix == ".parquet" else frame.to_csv(file, index=False)
    columns = events.EventColumns(
        session="visit", time="ts", path="category path", time_unit="s", time_zone="Europe/Prague"
    )
    report = events.import_events(engine, file, columns)
    assert db.get_views(engine, "dst")["category_d"].tolist() == ["first", "second"]
    session = db.get_session(engine, "dst")
    assert (str(session["start_time"]), str(session["end_time"])) == ("2014-10-26 02:50:00", "2014-10-26 03:10:00")
    assert str(db.get_session(engine, "winter")["start_time"]) == "2014-11-14 10:00:00"  # UTC+1 in November
    assert (str(report.first_view), str(report.last_view)) == ("2014-10-26 02:10:00", "2014-11-14 10:00:00")


def test_a_time_zone_takes_times_without_an_offset_as_its_own(engine, tmp_path):
    """ISO times: one with an offset is shown on the zone's clock, one without is that clock's already."""
    path = tmp_path / "iso.csv"
    path.write_bytes(
        csv_bytes("visit,ts,category path", "a,2014-11-14 10:00:00,A/B/C/D", "b,2014-11-14T10:00:00Z,A/B/C/D")
    )
    columns = events.EventColumns(session="visit", time="ts", path="category path", time_zone="America/New_York")
    events.import_events(engine, path, columns)
    assert str(db.get_session(engine, "a")["start_time"]) == "2014-11-14 10:00:00"
    assert str(db.get_session(engine, "b")["start_time"]) == "2014-11-14 05:00:00"


def test_a_time_zone_moves_a_skipped_wall_time_on_and_takes_a_repeated_one_as_its_first_pass(engine, tmp_path):
    """Europe/Prague: 02:30 on 2024-03-31 never was (the clock went from 02:00 to 03:00), so it is
    03:30 and comes after 03:15; 02:30 on 2024-10-27 was twice, and is the first (+02:00) unless an
    offset says the second."""
    path = tmp_path / "clocks.csv"
    path.write_bytes(
        csv_bytes(
            "visit,ts,category path",
            "spring,2024-03-31 02:30:00,A/B/C/skipped",
            "spring,2024-03-31 03:15:00,A/B/C/after",
            "autumn,2024-10-27T02:30:00+01:00,A/B/C/second pass",
            "autumn,2024-10-27 02:30:00,A/B/C/first pass",
        )
    )
    columns = events.EventColumns(session="visit", time="ts", path="category path", time_zone="Europe/Prague")
    events.import_events(engine, path, columns)
    assert db.get_views(engine, "spring")["category_d"].tolist() == ["after", "skipped"]
    spring = db.get_session(engine, "spring")
    assert (str(spring["start_time"]), str(spring["end_time"])) == ("2024-03-31 03:15:00", "2024-03-31 03:30:00")
    assert db.get_views(engine, "autumn")["category_d"].tolist() == ["first pass", "second pass"]
    autumn = db.get_session(engine, "autumn")
    assert (str(autumn["start_time"]), str(autumn["end_time"])) == ("2024-10-27 02:30:00", "2024-10-27 03:30:00")


def test_parquet_times_with_a_time_zone_and_numbers_of_every_kind(engine, tmp_path):
    """Parquet: a zoned timestamp is shown on the zone's clock and a naive one taken as its; a
    decimal column (BigQuery's NUMERIC) reads exactly; a float32 column, which cannot hold a Unix
    time to the second, is refused."""
    nine_utc = pd.Timestamp("2014-11-14 09:00:00", tz="UTC")
    pd.DataFrame({"visit": ["zoned"], "ts": [nine_utc], "category path": ["A/B/C/D"]}).to_parquet(
        tmp_path / "zoned.parquet"
    )
    pd.DataFrame({"visit": ["naive"], "ts": [nine_utc.tz_localize(None)], "category path": ["A/B/C/D"]}).to_parquet(
        tmp_path / "naive.parquet"
    )
    zone = events.EventColumns(session="visit", time="ts", path="category path", time_zone="Europe/Prague")
    events.import_events(engine, tmp_path / "zoned.parquet", zone)
    events.import_events(engine, tmp_path / "naive.parquet", zone)
    assert str(db.get_session(engine, "zoned")["start_time"]) == "2014-11-14 10:00:00"  # UTC+1 in November
    assert str(db.get_session(engine, "naive")["start_time"]) == "2014-11-14 09:00:00"

    numbers = pa.array([Decimal("1415959200.5")], pa.decimal128(15, 1))
    pq.write_table(pa.table({"visit": ["decimal"], "ts": numbers, "p": ["A/B/C/D"]}), tmp_path / "decimal.parquet")
    unix = events.EventColumns(session="visit", time="ts", path="p", time_unit="s")
    events.import_events(engine, tmp_path / "decimal.parquet", unix)
    assert str(db.get_session(engine, "decimal")["start_time"]) == "2014-11-14 10:00:00"

    coarse = pa.array([1415959201.0], pa.float64()).cast(pa.float32(), safe=False)
    pq.write_table(pa.table({"visit": ["coarse"], "ts": coarse, "p": ["A/B/C/D"]}), tmp_path / "coarse.parquet")
    with pytest.raises(ImportFailed, match=r"^coarse.parquet: column 'ts' is of type float, too coarse for a time"):
        events.import_events(engine, tmp_path / "coarse.parquet", unix)
    assert db.get_session(engine, "coarse") is None

    # a timestamp Python's datetime cannot hold (pyarrow's reach ±292,000 years): a traceback before
    beyond = pa.array([253_402_300_800_000_000], pa.timestamp("us"))  # 10000-01-01
    pq.write_table(pa.table({"visit": ["beyond"], "ts": beyond, "p": ["A/B/C/D"]}), tmp_path / "beyond.parquet")
    with pytest.raises(ImportFailed, match=r"^beyond.parquet: a time after row 0 is outside the years 1 to 9999$"):
        events.import_events(engine, tmp_path / "beyond.parquet", replace(unix, time_unit=None))
    assert db.get_session(engine, "beyond") is None


EPOCH_HINT = "expected YYYY-MM-DD HH:MM:SS (ISO 8601); for a number since 1970-01-01 UTC, give its unit: --time-unit"
BAD_EPOCH_FILES = [  # (time unit, the bad row's time, the reason)
    (None, "1415959200", f"bad ts '1415959200': {EPOCH_HINT}"),
    (None, "1415959200.5", f"bad ts '1415959200.5': {EPOCH_HINT}"),
    ("ms", "2014-11-14 10:00:00", "bad ts '2014-11-14 10:00:00': expected a number of milliseconds since 1970"),
    ("s", "NaN", "bad ts 'NaN': expected a number of seconds since 1970-01-01 UTC (--time-unit s)"),
    ("s", "", "bad ts '': expected a number of seconds"),
    ("s", "1415959200000", "bad ts '1415959200000': seconds since 1970 beyond the year 9999 (is the unit s right?)"),
    (None, "1710101212123", f"bad ts '1710101212123': {EPOCH_HINT}"),  # fromisoformat: 1710-10-12 21:23
    ("s", "-1e11", "bad ts '-1e11': seconds since 1970 before the year 1 (is the unit s right?)"),
    ("ns", "1E+999999", "bad ts '1E+999999': nanoseconds since 1970 beyond the year 9999"),
    ("s", "1e999990", "bad ts '1e999990': seconds since 1970 beyond the year 9999"),  # at once, not in 30 s
]


@pytest.mark.parametrize("unit, time, reason", BAD_EPOCH_FILES)
def test_a_time_that_is_not_what_its_unit_says_is_refused_with_its_line(loaded, tmp_path, unit, time, reason):
    engine, before = loaded
    good = [f"good {i},{1415959200 + i},A/B/C/D{i}/,female" for i in range(30)] if unit else GOOD
    path = tmp_path / "epoch.csv"
    path.write_bytes(csv_bytes(HEADER, *good, f"x,{time},A/B/C/D,"))
    with pytest.raises(ImportFailed) as failure:
        events.import_events(engine, path, replace(COLUMNS["path"], time_unit=unit))
    assert str(failure.value).startswith(f"epoch.csv, line 32: {reason}"), str(failure.value)
    assert tables(engine)[0].equals(before[0]) and tables(engine)[1].equals(before[1])


def test_the_time_and_duplicate_options_on_the_command_line(tmp_path):
    """`--time-unit ms` reads milliseconds (on a Parquet timestamp column it is refused, not
    ignored), `--time-zone` takes an IANA name, `--drop-duplicates` makes twin rows one view."""
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    rows = generated_events(sessions=20)
    epoch_frame(rows, "ms").to_parquet(tmp_path / "ms.parquet", index=False)
    event_frame(rows, "path").to_parquet(tmp_path / "stamps.parquet", index=False)
    options = ["--session-col", "visit", "--time-col", "ts", "--path-col", "category path", "--db", url]
    refused = run_cli(tmp_path / "stamps.parquet", *options, "--time-unit", "ms")
    assert refused.returncode == 1 and refused.stderr.splitlines()[-1] == (
        "error: stamps.parquet: column 'ts' holds timestamps, not numbers since 1970: drop --time-unit"
    ), refused.stderr
    assert not (tmp_path / "shop.db").exists()
    unknown = run_cli(tmp_path / "ms.parquet", *options, "--time-unit", "ms", "--time-zone", "Europe/Praha")
    assert unknown.returncode == 1 and unknown.stderr.splitlines()[-1] == (
        "error: unknown time zone 'Europe/Praha': expected an IANA name such as Europe/Prague or UTC"
    ), unknown.stderr
    done = run_cli(tmp_path / "ms.parquet", *options, "--time-unit", "ms", "--gender-col", "sex", "--time-zone", "UTC")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    engine = db.connect(url)
    try:
        assert_tables(engine, expected_tables(rows))
    finally:
        engine.dispose()
    (tmp_path / "twice.csv").write_bytes(csv_bytes(HEADER, GOOD[0], GOOD[0], GOOD[1]))
    twice = run_cli(tmp_path / "twice.csv", *options, "--drop-duplicates")
    assert twice.returncode == 0 and twice.stderr.splitlines()[-1] == (
        "imported 2 sessions (2 views) from 2014-11-14 10:00:00 to 2014-11-14 10:00:01; 1 duplicate view was dropped"
    ), twice.stderr


HEADER = "visit,ts,category path,sex"
GOOD = [f"good {i},2014-11-14 10:00:{i % 60:02d},A/B/C/D{i}/,female" for i in range(30)]


@dataclass(frozen=True)
class Bad:
    name: str
    body: bytes  # the whole file
    reason: str
    line: int | None


def csv_bytes(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


BAD_FILES = [
    Bad("bad_time", csv_bytes(HEADER, *GOOD, "x,2014-13-14 10:00:00,A/B/C/D,"), "bad ts '2014-13-14 10:00:00'", 32),
    Bad("three_levels", csv_bytes(HEADER, *GOOD, "x,2014-11-14 10:00:00,A/B/C/,"), "has 3 levels, expected 4", 32),
    Bad("five_levels", csv_bytes(HEADER, "x,2014-11-14 10:00:00,A/B/C/D/E,", *GOOD), "has 5 levels, expected 4", 2),
    Bad(
        "bad_gender",
        csv_bytes(HEADER, *GOOD, "x,2014-11-14 10:00:00,A/B/C/D,Male?"),
        "bad gender 'Male?': expected male or female (m, f; any case), or blank, NULL or unknown",
        32,
    ),
    Bad(
        "conflicting_genders",
        csv_bytes(HEADER, "x,2014-11-14 10:00:00,A/B/C/D,male", *GOOD, "good 3,2014-11-14 10:00:00,A/B/C/D,male"),
        "gender male of session 'good 3', which is female on line 6",
        33,
    ),
    Bad("no_path", csv_bytes(HEADER, *GOOD, "x,2014-11-14 10:00:00,,"), "no category path", 32),
    Bad("no_session_id", csv_bytes(HEADER, *GOOD, " ,2014-11-14 10:00:00,A/B/C/D,"), "bad session id ''", 32),
    Bad("missing_field", csv_bytes(HEADER, *GOOD, "x,2014-11-14 10:00:00,A/B/C/D"), "expected 4 fields, found 3", 32),
    Bad(  # empty lines are no rows, but lines of the file still: the bad row is on line 36
        "after_blank_lines",
        csv_bytes("", HEADER, *GOOD[:3], "", " \t", *GOOD[3:], "\r", "x,2014-11-14 10:00:00,A/B/C/D,Male?"),
        "bad gender 'Male?'",
        36,
    ),
    Bad(
        "nul_byte",
        csv_bytes(HEADER, *GOOD, "x,2014-11-14 10:00:00,A/Sh\x00oes/C/D,"),
        "bad category code 'Sh\\x00oes'",
        32,
    ),
    Bad("nul_in_id", csv_bytes(HEADER, "\x00,2014-11-14 10:00:00,A/B/C/D,", *GOOD), "bad session id '\\x00'", 2),
    Bad("missing_column", csv_bytes("visit,ts,path,sex", *GOOD), "no column 'category path'", None),
    Bad("empty_file", b"", "empty file: no header line", None),
    Bad("header_only", csv_bytes(HEADER), "no events in file", None),
    Bad(
        "latin1",
        csv_bytes(HEADER, *GOOD) + b"x,2014-11-14 10:00:00,A/B/T\xe9nis/D,\n",
        "not UTF-8 text (byte 28)",
        32,
    ),
    Bad(  # a quoted field may hold a line break: lines are the file's, not records
        "after_two_lines",
        csv_bytes(HEADER, *GOOD, 'y,2014-11-14 10:00:00,"A/B/C/D\nE",', "x,2014-11-14 25:00:00,A/B/C/D,"),
        "bad ts '2014-11-14 25:00:00'",
        34,
    ),
    Bad("two_line_time", csv_bytes(HEADER, *GOOD, 'x,"2014-11-14\n25:00:00",A/B/C/D,'), "bad ts", 32),
    Bad("unclosed_quote", csv_bytes(HEADER, *GOOD, 'x,2014-11-14 10:00:00,"A/B/C/D,'), "never closed", 32),
    Bad(  # the csv module meets the end of the file two lines on: the quote is where the row starts
        "unclosed_quote_inside",
        csv_bytes(HEADER, *GOOD[:1], 'x,2014-11-14 10:00:00,"A/B/C/D,', *GOOD[1:3]),
        "a quote opened in this row is never closed",
        3,
    ),
    Bad("unclosed_quote_in_header", csv_bytes('visit,"ts,category path,sex', *GOOD), "is never closed", 1),
    Bad(  # ... or the field limit (131,072 characters) thousands of lines on
        "unclosed_quote_long",
        csv_bytes(HEADER, *GOOD * 33, 'x,2014-11-14 10:00:00,"A/B/C/D,', *GOOD * 100),
        "a quote opened in this row is not closed within 131,072 characters",
        992,
    ),
    Bad(  # a quoted field of two lines, closed but not followed by a delimiter: the line where that is
        "after_a_closed_quote",
        csv_bytes(HEADER, *GOOD, 'x,2014-11-14 10:00:00,"A/B\nC/D"x,'),
        "not valid CSV: ',' expected after '\"'",
        33,
    ),
]


@pytest.fixture
def loaded(engine, tmp_path):
    """A database holding one session from an earlier event log, and its tables."""
    first = tmp_path / "first.csv"
    first.write_bytes(csv_bytes(HEADER, "earlier,2014-11-13 08:00:00,A/B/C/D/,male"))
    events.import_events(engine, first, COLUMNS["path"])
    return engine, tables(engine)


@pytest.mark.parametrize("case", BAD_FILES, ids=lambda case: case.name)
def test_a_bad_csv_file_is_refused_with_its_line_and_writes_nothing(loaded, tmp_path, case: Bad):
    engine, before = loaded
    path = tmp_path / f"{case.name}.csv"
    path.write_bytes(case.body)
    with pytest.raises(ImportFailed) as failure:
        events.import_events(engine, path, COLUMNS["path"])
    where = f"{case.name}.csv, line {case.line}: " if case.line else f"{case.name}.csv: "
    assert str(failure.value).startswith(where), str(failure.value)
    assert case.reason in str(failure.value), str(failure.value)
    assert failure.value.line == case.line
    sessions, views = tables(engine)
    pd.testing.assert_frame_equal(sessions, before[0])
    pd.testing.assert_frame_equal(views, before[1])


def test_a_file_refused_in_its_first_rows_creates_no_database(tmp_path):
    """The header and the first chunk of rows are checked before the tables are created: a wrong
    column name leaves no new SQLite file behind, as import-pakdd leaves none."""
    engine = db.connect(f"sqlite:///{tmp_path / 'new' / 'shop.db'}")
    files = {
        "wrong_column.csv": csv_bytes("session,ts,category path,sex", *GOOD),
        "header_only.csv": csv_bytes(HEADER),
        "bad_row.csv": csv_bytes(HEADER, *GOOD[:3], "x,2014-11-14 10:00:00,A/B/C/D,Male?", *GOOD[3:]),
        # found by the database once every row is staged, and so after the tables were created
        "two_genders.csv": csv_bytes(HEADER, *GOOD[:3], "good 1,2014-11-14 10:00:05,A/B/C/D,male", *GOOD[3:]),
    }
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
        with pytest.raises(ImportFailed, match=rf"^{name}"):
            events.import_events(engine, tmp_path / name, COLUMNS["path"])
    pd.DataFrame({"visit": ["a"], "ts": ["2014-11-14 10:00:00"]}).to_parquet(tmp_path / "few.parquet")
    with pytest.raises(ImportFailed, match=r"^few.parquet: no column 'category path'"):
        events.import_events(engine, tmp_path / "few.parquet", COLUMNS["path"])
    engine.dispose()
    assert not (tmp_path / "new").exists()


def test_two_genders_in_different_chunks_are_refused(loaded, tmp_path, monkeypatch):
    """The first chunk's own check sees that chunk; the database's, the whole file."""
    monkeypatch.setattr(events, "CHUNK_EVENTS", 10)
    engine, before = loaded
    (tmp_path / "late.csv").write_bytes(csv_bytes(HEADER, *GOOD, "good 3,2014-11-14 10:00:00,A/B/C/D,male"))
    with pytest.raises(
        ImportFailed, match=r"^late.csv, line 32: gender male of session 'good 3', which is female on line 5$"
    ):
        events.import_events(engine, tmp_path / "late.csv", COLUMNS["path"])
    assert tables(engine)[0].equals(before[0]) and tables(engine)[1].equals(before[1])


def test_a_bad_parquet_file_is_refused_with_its_row(loaded, tmp_path):
    engine, before = loaded
    rows = generated_events(sessions=30_000 // 4)  # more than a batch of rows before the bad one
    frame = event_frame(rows, "path")
    bad = frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    bad.loc[len(bad) - 1, "ts"] = "yesterday"
    bad.to_parquet(tmp_path / "bad.parquet", index=False)
    with pytest.raises(ImportFailed, match=rf"^bad.parquet, row {len(bad)}: bad ts 'yesterday'"):
        events.import_events(engine, tmp_path / "bad.parquet", COLUMNS["path"])
    frame.drop(columns="sex").to_parquet(tmp_path / "unlabelled.parquet", index=False)
    with pytest.raises(ImportFailed, match=r"^unlabelled.parquet: no column 'sex'"):
        events.import_events(engine, tmp_path / "unlabelled.parquet", COLUMNS["path"])
    (tmp_path / "not.parquet").write_bytes(csv_bytes(HEADER, *GOOD))
    with pytest.raises(ImportFailed, match=r"^not.parquet: not a Parquet file"):
        events.import_events(engine, tmp_path / "not.parquet", COLUMNS["path"])
    nul = frame.head(3).assign(**{"category path": ["A/B/C/D", "A/B/C/D", "A/Sh\x00oes/C/D"]})
    nul.to_parquet(tmp_path / "nul.parquet", index=False)
    with pytest.raises(ImportFailed, match=r"^nul.parquet, row 3: bad category code 'Sh\\x00oes': .*NUL"):
        events.import_events(engine, tmp_path / "nul.parquet", COLUMNS["path"])
    told = frame.head(3).assign(visit="x", sex=["", "female", "male"])
    told.to_parquet(tmp_path / "told.parquet", index=False)
    disagreement = r"^told.parquet, row 3: gender male of session 'x', which is female on row 2$"
    with pytest.raises(ImportFailed, match=disagreement):
        events.import_events(engine, tmp_path / "told.parquet", COLUMNS["path"])
    floats = frame.head(3).assign(visit=[123.0, 123.0, 7.0])  # as pandas writes ids once a cell was empty
    floats.to_parquet(tmp_path / "floats.parquet", index=False)
    with pytest.raises(
        ImportFailed,
        match=r"^floats.parquet: session ids must be text or integers, and column 'visit' is of type double$",
    ):
        events.import_events(engine, tmp_path / "floats.parquet", COLUMNS["path"])
    levels = event_frame(rows[:3], "levels").assign(second=[1.0, 2.0, 3.0])
    levels.to_parquet(tmp_path / "levels.parquet", index=False)
    with pytest.raises(
        ImportFailed,
        match=r"^levels.parquet: categories must be text or integers, and column .second. is of type double",
    ):
        events.import_events(engine, tmp_path / "levels.parquet", COLUMNS["levels"])
    (tmp_path / "events.json").write_text("{}")
    with pytest.raises(
        ImportFailed, match=r"^events.json: cannot tell the format from '.json': give --format csv or --format parquet$"
    ):
        events.import_events(engine, tmp_path / "events.json", COLUMNS["path"])
    assert tables(engine)[0].equals(before[0]) and tables(engine)[1].equals(before[1])


def test_progress_is_reported_as_the_file_is_read(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(events, "CHUNK_EVENTS", 100)
    rows = generated_events(sessions=200)
    file = write_events(event_frame(rows, "path"), tmp_path / "events.csv")
    reports = []
    events.import_events(engine, file, COLUMNS["path"], progress=lambda *report: reports.append(report))
    fractions = [fraction for fraction, _ in reports]
    assert len(reports) == len(rows) // 100 + 1 and fractions == sorted(fractions)
    assert 0 < fractions[0] < 1 and fractions[-1] == 1.0
    assert reports[0][1] == "events.csv: 100 events read"
    assert reports[-1][1] == f"events.csv: {len(rows):,} events read; building sessions and views"


def test_wrong_options_are_refused():
    with pytest.raises(GenderError, match="expected 4 level columns"):
        events.EventColumns(session="s", time="t", levels=("a", "b", "c"))
    with pytest.raises(GenderError, match="not both or neither"):
        events.EventColumns(session="s", time="t")
    with pytest.raises(GenderError, match="^each level needs a column of its own: 'a' is named for two levels$"):
        events.EventColumns(session="s", time="t", levels=("a", "b", "a", "d"))
    with pytest.raises(GenderError, match=r"^a separator \(--sep\) splits a path column"):
        events.EventColumns(session="s", time="t", levels=("a", "b", "c", "d"), sep="/")
    with pytest.raises(GenderError, match="cannot be empty"):
        events.EventColumns(session="s", time="t", path="p", sep="")
    with pytest.raises(GenderError, match="^unknown time unit 'sec': expected one of s, ms, us, ns$"):
        events.EventColumns(session="s", time="t", path="p", time_unit="sec")
    for zone in ("Mars/Base", "../etc", "", "Europe", "x" * 300):
        with pytest.raises(
            GenderError, match="^unknown time zone .*: expected an IANA name such as Europe/Prague or UTC$"
        ):
            events.EventColumns(session="s", time="t", path="p", time_zone=zone)


# -- the command line --------------------------------------------------------------------------------------


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gender", "import-events", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=300,
    )


def test_the_command_line(db_url, tmp_path):
    url = db_url.render_as_string(hide_password=False)
    rows = generated_events(sessions=100, slash_codes=True)
    frame = event_frame(rows, "levels")
    file = tmp_path / "shop events.tsv"
    frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(file, index=False, sep="\t")
    options = ["--session-col", "visit", "--time-col", "ts", "--level-cols", "top, second,third,item"]
    done = run_cli(file, *options, "--gender-col", "sex", "--db", url)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == f"imported 100 sessions ({len(rows):,} views){span(rows)}"
    engine = db.connect(url)
    try:
        expected = expected_tables(rows)
        assert_tables(engine, expected)

        again = run_cli(file, *options, "--gender-col", "sex", "--db", url)
        assert again.stderr.strip().splitlines()[-1] == (
            "imported 0 sessions (0 views); 100 already in the database were left unchanged"
        )
        failures = [
            (
                run_cli(file, *options, "--gender-col", "gender", "--db", url),
                "error: shop events.tsv: no column 'gender'",
            ),
            (run_cli(file, *options, "--format", "parquet", "--db", url), "error: shop events.tsv: not a Parquet file"),
            (run_cli(file, *options[:4], "--level-cols", "a,b", "--db", url), "error: expected 4 level columns"),
            (run_cli(tmp_path / "nowhere.csv", *options, "--db", url), f"error: {tmp_path / 'nowhere.csv'}: no such"),
            (run_cli(file, *options, "--csv-delimiter", ";;", "--db", url), "error: the CSV delimiter must be one"),
        ]
        for failed, start in failures:
            assert failed.returncode == 1, failed.stderr
            assert "Traceback" not in failed.stderr and failed.stdout == ""
            errors = [line for line in failed.stderr.splitlines() if line.startswith("error")]
            assert len(errors) == 1 and errors[0] == failed.stderr.strip().splitlines()[-1], failed.stderr
            assert errors[0].startswith(start), errors[0]
        assert_tables(engine, expected)
    finally:
        engine.dispose()


def test_what_the_import_would_ignore_is_refused(tmp_path):
    """An option or a column the file would not use is an error, not silently ignored: --sep with
    level columns, --csv-delimiter with Parquet, one column for two levels, a header naming the
    chosen column twice (the first was taken). Nothing is written: not even the database file."""
    database = tmp_path / "shop.db"
    levels = ["--session-col", "visit", "--time-col", "ts", "--db", f"sqlite:///{database}", "--level-cols"]
    frame = event_frame(generated_events(sessions=3), "levels")
    frame.to_parquet(tmp_path / "events.parquet", index=False)
    (tmp_path / "twice.csv").write_bytes(csv_bytes("visit,ts,category path,visit", "a,2014-11-14 10:00:00,A/B/C/D,b"))
    columns = [pa.array([value]) for value in ("a", "2014-11-14 10:00:00", "A/B/C/D", "b")]
    pq.write_table(pa.table(columns, names=["visit", "ts", "category path", "visit"]), tmp_path / "twice.parquet")
    failures = [
        (
            run_cli(tmp_path / "events.parquet", *levels, "top,second,third,item", "--sep", ">"),
            "error: a separator (--sep) splits a path column (--path-col): level columns have none",
        ),
        (
            run_cli(tmp_path / "events.parquet", *levels, "top,top,top,top"),
            "error: each level needs a column of its own: 'top' is named for two levels",
        ),
        (
            run_cli(tmp_path / "events.parquet", *levels, "top,second,third,item", "--csv-delimiter", ";"),
            "error: events.parquet is read as Parquet, which has no delimiter: drop --csv-delimiter",
        ),
        (
            run_cli(tmp_path / "twice.csv", *levels[:-1], "--path-col", "category path"),
            "error: twice.csv: 2 columns are named 'visit': rename all but one",
        ),
        (
            run_cli(tmp_path / "twice.parquet", *levels[:-1], "--path-col", "category path"),
            "error: twice.parquet: 2 columns are named 'visit': rename all but one",
        ),
    ]
    for failed, error in failures:
        assert failed.returncode == 1 and failed.stderr.splitlines()[-1] == error, failed.stderr
    assert not database.exists()


def test_a_gzipped_csv_file_is_read_as_it_is_decompressed(tmp_path):
    """`events.csv.gz` is CSV (gzipped CSV whatever its name with --format csv); a gzipped Parquet
    file is refused with what to do, and a broken gzip file with the line it broke in."""
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    body = csv_bytes(HEADER, *GOOD)
    (tmp_path / "events.csv.gz").write_bytes(gzip.compress(body))
    (tmp_path / "events.dat").write_bytes(gzip.compress(body))
    (tmp_path / "broken.csv.gz").write_bytes(gzip.compress(body)[:-12])
    pd.DataFrame({"visit": ["a"]}).to_parquet(tmp_path / "events.parquet.gz")
    options = ["--session-col", "visit", "--time-col", "ts", "--path-col", "category path", "--db", url]
    done = run_cli(tmp_path / "events.csv.gz", *options)
    span = " from 2014-11-14 10:00:00 to 2014-11-14 10:00:29"
    assert done.stderr.strip().splitlines()[-1] == f"imported 30 sessions (30 views){span}", done.stderr
    engine = db.connect(url)
    expected = tables(engine)
    done = run_cli(tmp_path / "events.dat", "--format", "csv", *options)
    assert done.stderr.strip().splitlines()[-1].endswith("30 already in the database were left unchanged")
    for name, error in [
        ("broken.csv.gz", "error: broken.csv.gz, line 31: broken gzip data: Compressed file ended before"),
        ("events.parquet.gz", "error: events.parquet.gz: a gzipped Parquet file: decompress it first"),
    ]:
        failed = run_cli(tmp_path / name, *options)
        assert failed.returncode == 1 and failed.stderr.splitlines()[-1].startswith(error), failed.stderr
    assert_tables(engine, expected)
    engine.dispose()


# -- killed while writing the tables ---------------------------------------------------------------------

KILL_SESSIONS = 20_000  # about 64,000 events: a build of half a second or more


class Uncommitted:
    """Whether an import has begun writing the FTP tables, uncommitted: on SQLite, pages of the
    database file in its WAL (the staged events are in a temporary file, not there); on MariaDB,
    rows in them that only a dirty read sees. Asked every few milliseconds."""

    QUERY = select(select(func.count()).select_from(db.session).scalar_subquery() + func.count()).select_from(
        db.product
    )

    def __init__(self, url):
        self.url = parse_url(url)
        self.engine = None
        if self.url.get_backend_name() != "sqlite":
            self.engine = db.connect(self.url).execution_options(isolation_level="READ UNCOMMITTED")
            self.rows = self.count()

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(self.QUERY).scalar_one()

    def __call__(self) -> bool:
        if self.engine is None:
            wal = Path(self.url.database + "-wal")
            return wal.is_file() and wal.stat().st_size > 0
        return self.count() > self.rows


def test_an_import_killed_while_writing_the_tables_leaves_them_as_they_were(db_url, tmp_path):
    url = db_url.render_as_string(hide_password=False)
    engine = db.connect(url)
    first = tmp_path / "first.csv"
    first.write_bytes(csv_bytes(HEADER, "earlier,2014-11-13 08:00:00,A/B/C/D/,male"))
    events.import_events(engine, first, COLUMNS["path"])
    engine.dispose()
    before = snapshot(url)
    if db_url.get_backend_name() == "sqlite":
        Path(db_url.database + "-wal").unlink(missing_ok=True)  # checkpointed when the engine closed

    rows = generated_events(sessions=KILL_SESSIONS, seed=9)
    file = write_events(event_frame(rows, "path"), tmp_path / "big.csv")
    options = ["--session-col", "visit", "--time-col", "ts", "--path-col", "category path", "--gender-col", "sex"]
    process = subprocess.Popen(
        [sys.executable, "-m", "gender", "import-events", str(file), *options, "--db", url],
        cwd=PROJECT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    uncommitted = Uncommitted(url)
    try:
        for line in process.stderr:
            if "building sessions and views" in line:
                break
        while process.poll() is None and not uncommitted():
            time.sleep(0.002)
        process.send_signal(signal.SIGSTOP)  # so that it cannot commit while the tables are read
        assert process.poll() is None, "the import finished before it could be killed"
        assert uncommitted()
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
        if uncommitted.engine is not None:
            uncommitted.engine.dispose()
    if db_url.get_backend_name() != "sqlite":
        wait_until_no_client(url)
    assert_same(before, snapshot(url))

    done = run_cli(file, *options, "--db", url)  # again, to the end; then once more: nothing changes
    assert done.returncode == 0, done.stderr
    assert (
        done.stderr.strip().splitlines()[-1] == f"imported {KILL_SESSIONS:,} sessions ({len(rows):,} views){span(rows)}"
    )
    after = snapshot(url)
    again = run_cli(file, *options, "--db", url)
    assert (
        again.stderr.strip().splitlines()[-1]
        == f"imported 0 sessions (0 views); {KILL_SESSIONS:,} already in the database were left unchanged"
    )
    assert_same(after, snapshot(url))
