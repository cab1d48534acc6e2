"""Getting logs into the FTP tables: PAKDD'15 CSV files and copies of other FTP databases.

Every import is one transaction: the first bad line stops it with the file, the line and the
reason, and nothing is written. Sessions already in the database are left as they are, so
importing the same data twice changes nothing.
"""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Column, Connection, Engine, MetaData, Table, bindparam, func, insert, select

from gender import db
from gender.answers import counted
from gender.errors import ImportFailed
from gender.session import JOIN

CHUNK_SESSIONS = 5_000
GZIP_MAGIC = b"\x1f\x8b"  # how every gzip file starts, whatever its name

Progress = Callable[[float, str], None]
T = TypeVar("T")


@dataclass
class ImportReport:
    new_sessions: int = 0
    new_views: int = 0
    skipped_sessions: int = 0  # already in the database, left unchanged
    orphan_views: int = 0  # import-db: product rows of no session in the source (nothing to hang them on)

    def __str__(self) -> str:
        return "; ".join([self.imported(), *self.notes()])

    def imported(self) -> str:
        return f"imported {counted(self.new_sessions, 'session')} ({counted(self.new_views, 'view')})"

    def notes(self) -> list[str]:
        """What else there is to say, each a clause after the first."""
        notes = []
        if self.skipped_sessions:
            verb = "was" if self.skipped_sessions == 1 else "were"
            notes.append(f"{self.skipped_sessions:,} already in the database {verb} left unchanged")
        if self.orphan_views:
            verb = "was" if self.orphan_views == 1 else "were"
            notes.append(f"{counted(self.orphan_views, 'view')} of no session in the source {verb} skipped")
        return notes


class Invalid(ValueError):
    """A reason a record is rejected; the caller adds where it was."""


# -- checking one record -----------------------------------------------------------------------


def _shown(value: object) -> str:
    """A value in a message: quoted as Python quotes it, cut inside its quotes when long."""
    text = repr(value)
    if len(text) <= 40:
        return text
    return repr(value[:34]) + "..." if isinstance(value, str) else text[:37] + "..."


def _text(value: object, what: str, length: int) -> str:
    """A session id or category code as stored: any text that fits its column (a number, as
    some shops key sessions, becomes its digits)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not db.fits(value, length):
        raise Invalid(f"bad {what} {_shown(value)}: expected text of 1 to {length} characters")
    if "\x00" in value:  # no one can type it to look the session or the category up
        raise Invalid(f"bad {what} {_shown(value)}: it holds a NUL byte")
    return value


def check_session_id(value: object) -> str:
    return _text(value, "session id", db.SESSION_ID_LENGTH)


def parse_moment(value: object, name: str) -> datetime:
    """An ISO 8601 time as written: `2014-11-14 00:02:41`, a bare date (one end_time in the real
    logs is one), `2014-11-14T00:02:41.5+01:00` (with its offset)."""
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise Invalid(f"bad {name} {_shown(value)}: expected YYYY-MM-DD HH:MM:SS (ISO 8601)") from None


def parse_time(value: object, name: str) -> datetime:
    """An ISO 8601 time (`parse_moment`) as the wall time it names, where it was logged: the hour
    of day is what a session's features read."""
    return parse_moment(value, name).replace(tzinfo=None)


def check_gender(value: object) -> str | None:
    if value is None or value in db.GENDERS:
        return value
    raise Invalid(f"bad gender {_shown(value)}: expected male, female or unknown")


def check_session(session_id, start_time, end_time, gender) -> dict:
    """A valid session row, or Invalid saying what is wrong with it."""
    row = {
        "session_id": check_session_id(session_id),
        "start_time": parse_time(start_time, "start_time"),
        "end_time": parse_time(end_time, "end_time"),
        "gender": check_gender(gender),
    }
    if row["end_time"] < row["start_time"]:
        raise Invalid(f"end_time {row['end_time']} is before start_time {row['start_time']}")
    return row


def check_order(value: object) -> int:
    """A view's sequence_order: an integer the tables' INTEGER column holds (32 bits on MariaDB)."""
    order = int(value)
    if not -(2**31) <= order < 2**31:
        raise Invalid(f"sequence_order {order} is beyond a 32-bit integer, the tables' INTEGER")
    return order


def check_path(codes: list, written: str | None = None) -> tuple[str, ...]:
    """Four category codes A→B→C→D, or Invalid (naming the path as `written` in the file, if given)."""
    if len(codes) != len(db.LEVELS):
        shown = _shown(written if written is not None else "/".join(map(str, codes)))
        raise Invalid(f"category path {shown} has {len(codes)} levels, expected 4")
    return tuple(_code(code) for code in codes)


def _code(value: object) -> str:
    code = _text(value, "category code", db.CATEGORY_LENGTH)
    if JOIN in code:  # "path:A␟B" would be a path of two codes and a view of one alike
        raise Invalid(
            f"bad category code {_shown(code)}: it holds the unit separator (\\x1f), which joins codes in features"
        )
    return code


# -- writing -----------------------------------------------------------------------------------


def twins(conn: Connection, ids, collation: str) -> str | None:
    """Why an import stops if two different ids of `ids` (a column of the import's own, compared
    exactly) are one session to the database's loose `collation` (`NEW` and `new` where it ignores
    case): which to keep, or whether they are one visitor, only the shop can say."""
    query = (
        select(func.min(ids), func.max(ids))
        .group_by(ids.collate(collation))
        .having(func.count(ids.distinct()) > 1)
        .limit(1)
    )
    pair = conn.execute(query).first()
    return None if pair is None else _one_session(*pair, collation)


def _one_session(first: str, second: str, collation: str) -> str:
    first, second = sorted([first, second])
    return f"session ids {_shown(first)} and {_shown(second)} are one session to the database's collation ({collation})"


# The ids of one chunk, as rows of the database's own (MySQL-family only: SQLite compares ids
# exactly), for comparing them by a loose collation in one join. A UNION of one literal SELECT an id
# took two thirds of such an import to build, send and parse.
_chunk_ids = Table(
    "gender_chunk_ids", MetaData(), Column("session_id", db.SESSION_ID, nullable=False), prefixes=["TEMPORARY"]
)


def _stored_as(conn: Connection, ids: list[str], collation: str | None) -> dict[str, str]:
    """Which of `ids` the database holds a session for, compared as it compares ids: each with its
    session's id as stored, which its loose `collation` may spell otherwise (`gap` for `GAP`).
    Under a loose collation two ids of `ids` that are one session stop the import (`twins`)."""
    column = db.session.c.session_id
    if collation is None:
        query = select(column).where(column.in_(bindparam("ids", expanding=True)))
        return {session_id: session_id for session_id in conn.execute(query, {"ids": ids}).scalars()}
    # TEMPORARY: created and dropped inside the import's transaction without committing it.
    _chunk_ids.create(conn)
    try:
        _insert_many(conn, _chunk_ids, [{"session_id": session_id} for session_id in ids])
        chunk = _chunk_ids.c.session_id
        if reason := twins(conn, chunk, collation):
            raise Invalid(reason)
        query = select(chunk, column).join(db.session, column == chunk.collate(collation))
        return dict(conn.execute(query).all())
    finally:
        conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {_chunk_ids.name}")  # a fixed name


def write_chunk(
    conn: Connection,
    sessions: list[dict],
    views: list[dict],
    report: ImportReport,
    collation: str | None,
    written: set,
) -> None:
    """Insert the sessions (and their views) that are not in the database yet, compared by its
    `loose_id_collation`. `written`: the ids this import wrote, kept where that is loose (an id it
    takes for one of them is not "already in the database": the import holds both)."""
    if not sessions:
        return
    stored = _stored_as(conn, [row["session_id"] for row in sessions], collation)
    for session_id, as_stored in stored.items():
        if as_stored != session_id and as_stored in written:
            raise Invalid(_one_session(session_id, as_stored, collation))
    if stored:
        sessions = [row for row in sessions if row["session_id"] not in stored]
        views = [row for row in views if row["session_id"] not in stored]
    _insert_many(conn, db.session, sessions)
    _insert_many(conn, db.product, views)
    if collation:
        written.update(row["session_id"] for row in sessions)
    report.skipped_sessions += len(stored)
    report.new_sessions += len(sessions)
    report.new_views += len(views)


def _insert_many(conn: Connection, table, rows: list[dict]) -> None:
    """INSERT every row, handed to the driver's executemany at once: the statement and the values
    of `conn.execute(insert(table), rows)`, whose per-row parameter handling took two thirds of a
    million-session import. The values are converted a column at a time (datetimes, on SQLite)."""
    if not rows:
        return
    dialect = conn.dialect
    statement = insert(table).compile(dialect=dialect)
    names = [column.name for column in table.columns]  # the statement's order
    columns = [list(map(itemgetter(name), rows)) for name in names]
    for i, name in enumerate(names):
        convert = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if convert:
            columns[i] = list(map(convert, columns[i]))
    values = list(zip(*columns))
    if not dialect.positional:  # named parameters, as pymysql takes them
        values = [dict(zip(names, row)) for row in values]
    conn.exec_driver_sql(str(statement), values)


def schema_after_first(engine: Engine, chunks: Iterator[T]) -> Iterator[T]:
    """The chunks, the first one read (and so checked) before the FTP tables are created: a missing
    file or column, or a bad first chunk, fails with no database file or table made."""
    first = next(chunks, None)
    db.create_schema(engine)
    return itertools.chain([] if first is None else [first], chunks)


def write_all(engine: Engine, chunks: Iterable[tuple[list[dict], list[dict]]], source: str = "data") -> ImportReport:
    """Write (sessions, views) chunks in one transaction: all of them, or on any error none.
    `source` names the data in an error."""
    chunks = iter(chunks)
    try:
        checked = schema_after_first(engine, chunks)
        report, written = ImportReport(), set()
        with db.reporting(engine), engine.begin() as conn:
            collation = db.loose_id_collation(conn)
            for sessions, views in checked:
                write_chunk(conn, sessions, views, report, collation, written)
        return report
    except Invalid as exc:
        raise ImportFailed(source, str(exc)) from None
    finally:  # on an error here, a generator's source (another database's connection, a file) ends now
        if close := getattr(chunks, "close", None):
            close()


def view_rows(session_id: str, paths: Iterable[tuple[str, ...]]) -> list[dict]:
    return [
        {"session_id": session_id, "sequence_order": order, **dict(zip(db.CATEGORY_NAMES, path))}
        for order, path in enumerate(paths, start=1)
    ]


# -- PAKDD'15 CSV ------------------------------------------------------------------------------


def check_is_file(path: Path, expected: str) -> None:
    """A file to import exists and is a file (a folder is named as one, with what was expected)."""
    if path.is_dir():
        raise ImportFailed(str(path), f"is a folder: expected {expected}")
    if not path.is_file():
        raise ImportFailed(str(path), "no such file")


def text_lines(path: Path) -> Iterator[tuple[int, str, int]]:
    """(line number, text, bytes of the file read so far) for each line of a UTF-8 text file,
    gzipped or not (decompressed as it is read). A line is split at LF and keeps its line break,
    as open(newline="") reads it: the csv module needs a quoted field's CR LF whole. A byte order
    mark before the first line (Excel writes one) is not part of it."""
    done = number = 0
    try:
        f = path.open("rb")
    except OSError as exc:
        raise ImportFailed(str(path), f"cannot read: {exc.strerror}") from None
    with f:
        gzipped = f.peek(len(GZIP_MAGIC)).startswith(GZIP_MAGIC)
        try:
            for number, raw in enumerate(gzip.GzipFile(fileobj=f) if gzipped else f, start=1):
                done = f.tell() if gzipped else done + len(raw)  # of the compressed file: its size is the total
                try:
                    text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise ImportFailed(path.name, f"not UTF-8 text (byte {exc.start + 1})", number) from None
                yield number, text, done
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:  # only gzip raises these
            raise ImportFailed(path.name, f"broken gzip data: {exc}", number + 1) from None


def is_blank(text: str) -> bool:
    """An empty line, or one of blanks only: no record (exports often end in one), in every import."""
    return not text.strip()


def parse_pakdd_line(text: str, gender: str | None) -> tuple[dict, list[tuple[str, ...]]]:
    """One line `session_id,start_time,end_time,A/B/C/D/;...` as a session row and its paths."""
    fields = text.split(",")
    if len(fields) != 4:
        raise Invalid(f"expected 4 fields (session_id,start_time,end_time,products), found {len(fields)}")
    session_id, start, end, products = (field.strip() for field in fields)
    row = check_session(session_id, start, end, gender)
    if not products:
        raise Invalid("no product views")
    paths = [check_path(view.strip().rstrip("/").split("/")) for view in products.split(";")]
    return row, paths


def _labels(path: Path) -> Iterator[str | None]:
    for number, text, _ in text_lines(path):
        if is_blank(text):
            continue
        label = text.strip()
        if label not in db.GENDERS:
            raise ImportFailed(path.name, f"bad label {_shown(label)}: expected male or female", number)
        yield label
    while True:  # running out of labels is reported against the data line that lacks one
        yield "missing"


def pakdd_chunks(data: Path, labels: Path | None = None, progress: Progress | None = None):
    """Check a PAKDD file (and its labels) line by line, yielding (sessions, views) chunks."""
    check_is_file(data, "a PAKDD'15 CSV file (session_id,start_time,end_time,A/B/C/D/;... lines)")
    if labels:
        check_is_file(labels, "a labels file (male or female, one a line)")
    total_bytes = max(data.stat().st_size, 1)
    label_of = _labels(labels) if labels else None
    seen: dict[str, int] = {}
    sessions: list[dict] = []
    views: list[dict] = []
    for number, text, done in text_lines(data):
        if is_blank(text):
            continue
        gender = next(label_of) if label_of else None
        try:
            if gender == "missing":
                raise Invalid(f"no label for this line in {labels.name}")
            row, paths = parse_pakdd_line(text, gender)
            first = seen.setdefault(row["session_id"], number)
            if first != number:
                raise Invalid(f"duplicate session id {row['session_id']} (first on line {first})")
        except Invalid as exc:
            raise ImportFailed(data.name, str(exc), number) from None
        sessions.append(row)
        views.extend(view_rows(row["session_id"], paths))
        if len(sessions) == CHUNK_SESSIONS:
            yield sessions, views
            sessions, views = [], []
            if progress:
                progress(done / total_bytes, f"{data.name}: {counted(len(seen), 'session')} read")
    if not seen:
        raise ImportFailed(data.name, "no sessions in file")
    if label_of and next(label_of) != "missing":
        raise ImportFailed(labels.name, f"more labels than the {counted(len(seen), 'session')} of {data.name}")
    if sessions:  # none left when the file's sessions are a multiple of the chunk (said above then)
        yield sessions, views
        if progress:
            progress(1.0, f"{data.name}: {counted(len(seen), 'session')} read")


def import_pakdd(
    engine: Engine, data: str | Path, labels: str | Path | None = None, progress: Progress | None = None
) -> ImportReport:
    """Import a PAKDD'15 data file (and its aligned labels file) into the FTP tables."""
    chunks = pakdd_chunks(Path(data), Path(labels) if labels else None, progress)
    return write_all(engine, chunks, Path(data).name)


# -- another FTP database ----------------------------------------------------------------------


_views_of = select(db.product).where(db.product.c.session_id.in_(bindparam("ids", expanding=True)))
# Product rows whose session the source lacks, matched as `_views_of` matches them (by the source's
# own collation); NOT IN over a subquery is one hashed pass, even on a shop's tables without indexes.
_orphan_views = (
    select(func.count())
    .select_from(db.product)
    .where(
        db.product.c.session_id.not_in(select(db.session.c.session_id).where(db.session.c.session_id.is_not(None)))
        | db.product.c.session_id.is_(None)
    )
)


def _source_views(conn: Connection, label: str, ids: set[str]) -> list[dict]:
    """The checked views of the sessions `ids`. One the copy could not keep as the source holds it
    is named here, in the source, where it must be corrected (the target's keys would refuse it)."""
    views, places = [], set()
    for view in conn.execute(_views_of, {"ids": list(ids)}).mappings():
        try:
            path = check_path([view[name] for name in db.CATEGORY_NAMES])
            row = {
                "session_id": check_session_id(view["session_id"]),  # numbers become text
                "sequence_order": check_order(view["sequence_order"]),
                **dict(zip(db.CATEGORY_NAMES, path)),
            }
        except (Invalid, TypeError, ValueError) as exc:
            raise ImportFailed(label, f"session {_shown(view['session_id'])}: {exc}") from None
        session_id, order = row["session_id"], row["sequence_order"]
        if session_id not in ids:  # matched to its session only by the source's collation (case, trailing blanks)
            named = select(db.session.c.session_id).where(db.session.c.session_id == session_id)
            stored = str(conn.execute(named).scalars().first())
            raise ImportFailed(
                label,
                f"session {_shown(stored)}: view {order} gives its session as {_shown(session_id)}, which is "
                f"{_shown(stored)} only to the source's collation (the copy keeps ids exact)",
            )
        if (session_id, order) in places:
            raise ImportFailed(label, f"session {_shown(session_id)}: two views with sequence_order {order}")
        places.add((session_id, order))
        views.append(row)
    return views


def _source_chunks(source: Engine, progress: Progress | None):
    label = db.redact(source.url)
    seen: set[str] = set()
    with db.reporting(source), source.connect() as conn:
        total = conn.execute(select(func.count()).select_from(db.session)).scalar_one() or 1
        stream = conn.execution_options(yield_per=CHUNK_SESSIONS).execute(select(db.session))
        for partition in stream.partitions():
            sessions = []
            for source_row in partition:
                try:
                    row = check_session(*source_row)
                except Invalid as exc:
                    raise ImportFailed(label, f"session {_shown(source_row[0])}: {exc}") from None
                if row["session_id"] in seen:  # a shop's own table may have no key
                    raise ImportFailed(label, f"session {_shown(row['session_id'])} is in the session table twice")
                seen.add(row["session_id"])
                sessions.append(row)
            with source.connect() as views_conn:  # the first connection is busy streaming
                views = _source_views(views_conn, label, {row["session_id"] for row in sessions})
            yield sessions, views
            if progress:
                progress(len(seen) / total, f"{len(seen):,} of {total:,} sessions copied")


def import_db(engine: Engine, source_url, progress: Progress | None = None) -> ImportReport:
    """Copy `session` and `product` from another FTP database (e.g. the public CTU server). Product
    rows of no session in the source are skipped, and counted: there is no session to add them to."""
    source = db.connect(source_url)
    db.check_schema(source)
    with db.reporting(source), source.connect() as conn:
        orphans = conn.execute(_orphan_views).scalar_one()
    report = write_all(engine, _source_chunks(source, progress), db.redact(source.url))
    report.orphan_views = orphans
    return report
