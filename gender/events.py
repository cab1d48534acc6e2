"""A shop's event log into the FTP tables.

An event log has one row a product view: the session id, the time, the category path (one column
`A/B/C/D`, or a column per level) and maybe the gender, when the visitor told it. It comes as CSV
or Parquet, in any order: a session's views may be anywhere in the file.

The file is streamed: each row is checked as it is read, with ingest's checks (so the rules and
messages are the PAKDD import's), and staged in a temporary table. Sessions (first and last view,
the label) and their views in time order are then built from that table in SQL, so no more than a
chunk of rows is ever in memory. It is all one transaction: an error anywhere, in any row, writes
nothing. Sessions already in the database are
left as they are, so importing the same log twice changes nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Table,
    case,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from gender import db, ingest
from gender.answers import counted
from gender.errors import GenderError, ImportFailed, one_line

CHUNK_EVENTS = 20_000  # rows checked and staged at a time: the memory an import needs
FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
UNKNOWN_GENDER = ("", "null", "unknown")  # what a gender column says when the visitor did not tell (any case)
# How shops' exports spell a gender the visitor told, in any case: `M`, `Female`, `MALE`.
GENDER_SPELLINGS = {"m": "male", "male": "male", "f": "female", "female": "female"}
EPOCH, SECOND = datetime(1970, 1, 1), timedelta(seconds=1)
# The times a datetime holds, from 1970 in microseconds: the year 1 to the year 9999.
EARLIEST, LATEST = ((end - EPOCH) // timedelta(microseconds=1) for end in (datetime.min, datetime.max))


@dataclass(frozen=True)
class TimeUnit:
    """A unit of times written as numbers since 1970-01-01 UTC (--time-unit)."""

    name: str
    microseconds: Decimal


# Exports key times so: Unix seconds, JavaScript's and Kafka's milliseconds, BigQuery's microseconds.
TIME_UNITS = {
    "s": TimeUnit("seconds", Decimal(1_000_000)),
    "ms": TimeUnit("milliseconds", Decimal(1_000)),
    "us": TimeUnit("microseconds", Decimal(1)),
    "ns": TimeUnit("nanoseconds", Decimal("0.001")),
}


@dataclass(frozen=True)
class EventColumns:
    """Which of the file's columns hold what: the category path in one column (`path`, split at
    `sep`, `/` unless given) or in one column a level (`levels`, top level first)."""

    session: str
    time: str
    path: str | None = None
    levels: tuple[str, ...] | None = None
    gender: str | None = None
    sep: str | None = None
    time_unit: str | None = None  # the time is a number of these since 1970 UTC (TIME_UNITS); else ISO 8601
    time_zone: str | None = None  # an IANA name: the wall time kept is this zone's (else as written, UTC for numbers)

    def __post_init__(self):
        if self.time_zone is not None:
            try:
                self.zone  # noqa: B018 (looked up now, so that a wrong name stops the import before it starts)
            except (KeyError, ValueError, OSError):  # `Europe` is a folder of zones: IsADirectoryError
                raise GenderError(
                    f"unknown time zone {self.time_zone!r}: expected an IANA name such as Europe/Prague or UTC"
                ) from None
        if self.time_unit is not None and self.time_unit not in TIME_UNITS:
            raise GenderError(f"unknown time unit {self.time_unit!r}: expected one of {', '.join(TIME_UNITS)}")
        if (self.path is None) == (self.levels is None):
            raise GenderError("name the category path column or the columns of its levels, not both or neither")
        if self.levels is not None:
            if len(self.levels) != len(db.LEVELS):
                raise GenderError(f"expected {len(db.LEVELS)} level columns (top level first), got {len(self.levels)}")
            if twice := next((name for name in self.levels if self.levels.count(name) > 1), None):
                raise GenderError(f"each level needs a column of its own: {twice!r} is named for two levels")
            if self.sep is not None:  # said, not ignored: the user thinks some column holds paths
                raise GenderError("a separator (--sep) splits a path column (--path-col): level columns have none")
        if self.sep == "":
            raise GenderError("the path separator cannot be empty")

    @cached_property
    def zone(self) -> ZoneInfo | None:
        return None if self.time_zone is None else ZoneInfo(self.time_zone)

    @property
    def categories(self) -> list[str]:
        return [self.path] if self.path is not None else list(self.levels)

    @property
    def names(self) -> list[str]:
        """The columns to read, in the order `_checked` takes their values."""
        return [self.session, self.time, *self.categories, *([self.gender] if self.gender else [])]


@dataclass
class EventReport(ingest.ImportReport):
    viewless_sessions: int = 0  # only other events (with --other-events): not a session of the FTP tables
    # The wall times of the new views, first and last: a time column read in the wrong unit or
    # zone shows here at once (January 1970 for milliseconds read as microseconds).
    first_view: datetime | None = None
    last_view: datetime | None = None
    duplicate_views: int = 0  # rows alike in session, moment and path beyond the first (with drop_duplicates)

    def imported(self) -> str:
        text = super().imported()
        return text if self.first_view is None else f"{text} from {self.first_view} to {self.last_view}"

    def notes(self) -> list[str]:
        notes = super().notes()
        if self.viewless_sessions:
            verb = "was" if self.viewless_sessions == 1 else "were"
            notes.append(f"{counted(self.viewless_sessions, 'session')} without a product view {verb} left out")
        if self.duplicate_views:
            verb = "was" if self.duplicate_views == 1 else "were"
            notes.append(f"{counted(self.duplicate_views, 'duplicate view')} {verb} dropped")
        return notes


# The staged events. Ids and codes have the FTP tables' own types, so that they compare (and group)
# exactly as the tables' keys do on every database. `time` is the wall time, `instant` and
# `microsecond` the moment (a time without an offset counts as UTC): times of one session logged
# with different offsets (across a change to summer time) are ordered by their moments.
# `position` is the line (CSV) or row (Parquet): file order, for views of the same moment and for
# naming the line of a disagreement.
_staging_metadata = MetaData()
staging = Table(
    "gender_staged_events",
    _staging_metadata,
    Column("session_id", db.SESSION_ID, primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("time", DateTime, nullable=False),  # to the second, like the FTP tables
    Column("instant", BigInteger, nullable=False),  # seconds since 1970 UTC
    Column("microsecond", Integer, nullable=False),  # Parquet times may be finer: they still order views
    *(Column(name, db.CATEGORY, nullable=True) for name in db.CATEGORY_NAMES),  # NULL: not a view
    Column("gender", db.session.c.gender.type, nullable=True),
    prefixes=["TEMPORARY"],
)


# -- reading -----------------------------------------------------------------------------------


@dataclass
class Batch:
    """Rows read from the file: `values[i]` holds the values of `EventColumns.names`, found at
    `positions[i]`; `done` is the share of the file read so far."""

    positions: list[int]
    values: list[tuple]
    done: float


class _Rows:
    """The file's CSV rows, its lines read through ingest's reader (UTF-8, gzipped or not, or a
    failure naming the line). `start` is the line the row being read starts on, `number` the last line read, `ended`
    whether the file has no more lines."""

    def __init__(self, path: Path, delimiter: str):
        self.lines = ingest.text_lines(path)
        self.start, self.number, self.done, self.ended, self.text = 1, 0, 0, False, ""
        self.reader = csv.reader(self._lines(), delimiter=delimiter, strict=True)

    def _lines(self) -> Iterator[str]:
        for number, text, done in self.lines:
            self.number, self.done, self.text = number, done, text
            yield text  # with its line break, which a quoted field keeps as written
        self.ended = True

    def __iter__(self) -> Iterator[list[str]]:
        for record in self.reader:
            if self.number > self.start or not ingest.is_blank(self.text):  # a quoted field keeps its empty lines
                yield record
            self.start = self.number + 1


def csv_batches(path: Path, columns: EventColumns, delimiter: str = ",") -> Iterator[Batch]:
    """The file's rows in batches, each with the number of the line it starts on (lines are the
    file's: the header's is 1, unless empty lines come before it)."""
    total = max(path.stat().st_size, 1)
    rows = _Rows(path, delimiter)
    records = iter(rows)
    try:
        header = next(records, None)
        if header is None:
            raise ImportFailed(path.name, "empty file: no header line")
        header = [name.strip() for name in header]
        header[0] = header[0].removeprefix("\ufeff")  # a byte-order mark, as spreadsheets write it
        at = _places(header, columns, path)
        batch = Batch([], [], 0.0)
        for record in records:
            if len(record) != len(header):
                raise ImportFailed(path.name, f"expected {len(header)} fields, found {len(record)}", rows.start)
            batch.positions.append(rows.start)
            batch.values.append(tuple(record[i] for i in at))
            if len(batch.positions) == CHUNK_EVENTS:
                batch.done = rows.done / total
                yield batch
                batch = Batch([], [], 0.0)
    except csv.Error as exc:
        raise _csv_error(exc, path, rows) from None
    batch.done = 1.0
    yield batch


def _csv_error(exc: csv.Error, path: Path, rows: _Rows) -> ImportFailed:
    """Where the csv module failed, and why. A quote never closed takes the rest of the file into
    its field, so the csv module fails at the end of the file or thousands of lines on, at the
    field limit: the line to name is then the one its row starts on."""
    if rows.ended:  # at the end of the file only an open quote leaves a row unfinished
        return ImportFailed(path.name, "a quote opened in this row is never closed", rows.start)
    if rows.number > rows.start and "field limit" in str(exc):  # a field of more than one line: quoted
        limit = csv.field_size_limit()
        return ImportFailed(
            path.name, f"a quote opened in this row is not closed within {limit:,} characters", rows.start
        )
    return ImportFailed(path.name, f"not valid CSV: {exc}", rows.number)


def _places(header: list[str], columns: EventColumns, path: Path) -> list[int]:
    """Where in the header each of `columns.names` is: each must be there once, for the values
    taken to be the ones meant."""
    for name in columns.names:
        if name not in header:
            raise ImportFailed(path.name, f"no column {name!r} (the columns are {', '.join(map(repr, header))})")
        if header.count(name) > 1:
            raise ImportFailed(path.name, f"{header.count(name)} columns are named {name!r}: rename all but one")
    return [header.index(name) for name in columns.names]


def parquet_batches(path: Path, columns: EventColumns) -> Iterator[Batch]:
    """The file's rows in batches, each with its row number (the first row is row 1)."""
    import pyarrow as pa  # only Parquet files need it
    import pyarrow.parquet as pq

    if path.name.lower().endswith(".gz"):  # pyarrow would say only that it is no Parquet file
        raise ImportFailed(path.name, "a gzipped Parquet file: decompress it first (Parquet compresses its own data)")
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ImportFailed(path.name, f"not a Parquet file: {exc}") from None
    _places(file.schema_arrow.names, columns, path)
    for name, what in [(columns.session, "session ids"), *((name, "categories") for name in columns.categories)]:
        kind = file.schema_arrow.field(name).type
        if not _textual(kind):  # said of the column: its values (123.0) would be refused one by one
            raise ImportFailed(path.name, f"{what} must be text or integers, and column {name!r} is of type {kind}")
    time_type = file.schema_arrow.field(columns.time).type
    if columns.time_unit is not None and pa.types.is_timestamp(time_type):
        raise ImportFailed(
            path.name, f"column {columns.time!r} holds timestamps, not numbers since 1970: drop --time-unit"
        )
    if pa.types.is_floating(time_type) and time_type.bit_width < 64:  # 1415959201 as float32 is 1415959168
        raise ImportFailed(
            path.name, f"column {columns.time!r} is of type {time_type}, too coarse for a time: write it as int64"
        )
    total, row = max(file.metadata.num_rows, 1), 0
    wanted = list(dict.fromkeys(columns.names))  # a column named twice (session and gender?) is read once
    try:
        for record_batch in file.iter_batches(batch_size=CHUNK_EVENTS, columns=wanted):
            values = {name: _python(record_batch.column(name)) for name in wanted}
            n = record_batch.num_rows
            positions = list(range(row + 1, row + n + 1))
            row += n
            yield Batch(positions, list(zip(*(values[c] for c in columns.names))), row / total)
    except (pa.ArrowException, OSError) as exc:
        raise ImportFailed(path.name, f"unreadable Parquet data after row {row}: {one_line(exc)}") from None
    except OverflowError:  # a timestamp Python's datetime cannot hold
        raise ImportFailed(path.name, f"a time after row {row} is outside the years 1 to 9999") from None
    yield Batch([], [], 1.0)


def _textual(kind) -> bool:
    """Whether a Parquet column's type holds what ids and category codes are: text, integers (as
    some shops key them) or nulls (no category: other events)."""
    import pyarrow as pa

    kind = kind.value_type if pa.types.is_dictionary(kind) else kind
    checks = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view, pa.types.is_integer)
    return pa.types.is_null(kind) or any(check(kind) for check in checks)


def _python(column) -> list:
    """A Parquet column's values as Python objects; times as datetimes (of microseconds: Python's
    datetime has no nanoseconds, and pyarrow would give pandas Timestamps for them)."""
    import pyarrow as pa

    if pa.types.is_timestamp(column.type) and column.type.unit == "ns":
        column = column.cast(pa.timestamp("us", column.type.tz), safe=False)
    return column.to_pylist()


# -- checking ----------------------------------------------------------------------------------


def _text(value: object) -> object:
    """A time's or a gender's cell with the blanks around it ignored; anything other than text (a
    number, a null from Parquet) as it is, for ingest's checks to take or refuse."""
    return value.strip() if isinstance(value, str) else value


def _exact(value: object) -> object:
    """An id's or a level's cell as written, blanks included (as CSV's RFC 4180 and Parquet have
    it: ` padded ` and `padded` are two sessions); a cell of blanks only is empty."""
    return "" if isinstance(value, str) and not value.strip() else value


def _gender(value: object) -> str | None:
    value = _text(value)
    if not isinstance(value, str):  # a null from Parquet: not told; a number: refused by the check
        return ingest.check_gender(value)
    told = value.lower()
    if told in UNKNOWN_GENDER:
        return None
    if told not in GENDER_SPELLINGS:  # what this column takes, which ingest's own message does not list
        raise ingest.Invalid(
            f"bad gender {ingest._shown(value)}: expected male or female (m, f; any case), or blank, NULL or unknown"
        )
    return GENDER_SPELLINGS[told]


def _moment(value: object, columns: EventColumns) -> datetime:
    """A view's time: ISO 8601 as ingest reads it or, with a time unit, a number of that unit
    since 1970-01-01 UTC (whole or not, as text or a number), as the moment in UTC."""
    number = _number(value)
    if columns.time_unit is None:
        if number is not None:  # Unix time, most likely: fromisoformat would read 1710101212123 as 1710-10-12
            raise ingest.Invalid(
                f"bad {columns.time} {ingest._shown(value)}: expected YYYY-MM-DD HH:MM:SS (ISO 8601); "
                "for a number since 1970-01-01 UTC, give its unit: --time-unit s, ms, us or ns"
            )
        return ingest.parse_moment(value, columns.time)
    unit = TIME_UNITS[columns.time_unit]
    if number is None:
        raise ingest.Invalid(
            f"bad {columns.time} {ingest._shown(value)}: expected a number of {unit.name} "
            f"since 1970-01-01 UTC (--time-unit {columns.time_unit})"
        )
    # Its digits first: Decimal('1e999990') takes half a minute to scale and round.
    microseconds = (number * unit.microseconds).to_integral_value(ROUND_FLOOR) if number.adjusted() < 30 else number
    if not EARLIEST <= microseconds <= LATEST:
        end = "before the year 1" if microseconds < 0 else "beyond the year 9999"
        raise ingest.Invalid(
            f"bad {columns.time} {ingest._shown(value)}: {unit.name} since 1970 {end} "
            f"(is the unit {columns.time_unit} right?)"
        )
    return EPOCH.replace(tzinfo=UTC) + timedelta(microseconds=int(microseconds))


def _number(value: object) -> Decimal | None:
    """A finite number, exactly as written (`1416000000.123`: a float as it prints, not its binary
    expansion; a Parquet decimal as it is), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None
    try:
        number = Decimal(value if isinstance(value, (int, Decimal)) else str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _on_clock(when: datetime, columns: EventColumns) -> datetime:
    """`when` on the zone's clock: a moment shown on it; a wall time taken as its, one in the hour
    skipped when summer time starts moved on by that hour, as the clock would read (02:30 is 03:30),
    and one in the hour repeated when it ends taken as the first pass."""
    try:
        moment = when if when.tzinfo else when.replace(tzinfo=columns.zone)
        return moment.astimezone(UTC).astimezone(columns.zone)  # by UTC: to its own zone, astimezone changes nothing
    except OverflowError:  # within hours of the year 1 or 9999
        raise ingest.Invalid(
            f"bad {columns.time} {ingest._shown(str(when))}: beyond the years a time can hold"
        ) from None


def _checked(values: tuple, position: int, columns: EventColumns, other_events: bool) -> dict:
    """One row as a staged event, or Invalid saying what is wrong with it."""
    session_id, time, *rest = values
    categories, gender = (rest[:-1], rest[-1]) if columns.gender else (rest, None)
    session_id = ingest.check_session_id(_exact(session_id))
    when = _moment(_text(time), columns)
    if columns.zone is not None:
        when = _on_clock(when, columns)
    since_epoch = when.replace(tzinfo=None) - EPOCH - (when.utcoffset() or timedelta(0))
    codes, written = [_exact(code) for code in categories], None
    if columns.path is not None and isinstance(codes[0], str) and codes[0]:
        # The blanks around each level's name are the path's layout ("Women > Shoes" with --sep
        # " > " or "/"); "A/B/C/D/", as PAKDD writes paths, and "/A/B/C/D", as a URL path, are "A/B/C/D".
        written = codes[0]
        codes = [code.strip() for code in written.split(columns.sep or "/")]
        if len(codes) > 1 and not codes[-1]:
            codes.pop()
        if len(codes) > 1 and not codes[0]:
            codes.pop(0)
    if all(code in ("", None) for code in codes):
        if not other_events:
            raise ingest.Invalid("no category path (with --other-events such a row is an event other than a view)")
        path = (None,) * len(db.LEVELS)
    else:
        if columns.levels is not None:  # name the column: "bad category code ''" said neither which nor why
            empty = next((name for name, code in zip(columns.levels, codes) if code in ("", None)), None)
            if empty is not None:
                raise ingest.Invalid(f"no category in column {empty!r}: a view has one at every level")
        path = ingest.check_path(codes, written)
    return {
        "session_id": session_id,
        "position": position,
        "time": when.replace(tzinfo=None, microsecond=0),
        "instant": since_epoch // SECOND,
        "microsecond": (since_epoch % SECOND).microseconds,
        **dict(zip(db.CATEGORY_NAMES, path)),
        "gender": _gender(gender),
    }


# -- building the tables -----------------------------------------------------------------------


def _events(batches, columns: EventColumns, other_events: bool, source: str, unit: str):
    """The file's rows checked, as staged events: (rows, share of the file read) a batch at a time."""
    events = 0
    for batch in batches:
        rows = []
        for position, values in zip(batch.positions, batch.values):
            try:
                rows.append(_checked(values, position, columns, other_events))
            except ingest.Invalid as exc:
                raise ImportFailed(source, str(exc), position, unit) from None
        if rows and not events and (disagreement := _disagreement_in(rows, unit)):
            raise ImportFailed(source, *disagreement, unit)  # before the first chunk creates the tables
        if rows:
            events += len(rows)
            yield rows, batch.done
    if not events:
        raise ImportFailed(source, "no events in file")


def _stage(conn: Connection, chunks, source: str, progress) -> int:
    events = 0
    for rows, done in chunks:
        conn.execute(insert(staging), rows)
        events += len(rows)
        if progress and done < 1.0:
            progress(done, f"{source}: {events:,} events read")
    return events


def _disagreement(session_id: str, earlier: str, first: int, later: str, unit: str) -> str:
    return f"gender {later} of session {session_id!r}, which is {earlier} on {unit} {first}"


def _disagreement_in(rows: list[dict], unit: str) -> tuple[str, int] | None:
    """`_first_disagreement` within one chunk of rows in file order, without a database: the first
    chunk's own check, so that a new database file is not created for a file refused there."""
    told: dict[str, tuple[str, int]] = {}  # a session's first gender and where
    for row in rows:
        if row["gender"] is None:
            continue
        earlier, first = told.setdefault(row["session_id"], (row["gender"], row["position"]))
        if earlier != row["gender"]:
            return _disagreement(row["session_id"], earlier, first, row["gender"], unit), row["position"]
    return None


def _first_disagreement(conn: Connection, unit: str) -> tuple[str, int] | None:
    """Where a session's events first disagree on its gender, if anywhere: (what, line).

    From each session's first line of each gender: where it has both, the later one disagrees.
    (Each query names the temporary table once: MariaDB cannot open one twice in a query.)"""
    female, male = (func.min(case((staging.c.gender == g, staging.c.position))) for g in ("female", "male"))
    query = (
        select(staging.c.session_id, female.label("female"), male.label("male"))
        .group_by(staging.c.session_id)
        .having(female.is_not(None), male.is_not(None))
        .order_by(case((female > male, female), else_=male))
        .limit(1)
    )
    row = conn.execute(query).first()
    if row is None:
        return None
    (earlier, first), (later, line) = sorted([("female", row.female), ("male", row.male)], key=lambda pair: pair[1])
    return _disagreement(row.session_id, earlier, first, later, unit), line


class _Later(FunctionElement):
    """A DATETIME plus a whole number of seconds: `_Later(time, seconds)`."""

    type = DateTime()
    name = "later"
    inherit_cache = True


@compiles(_Later)
def _later(element, compiler, **kw) -> str:
    time, seconds = (compiler.process(argument, **kw) for argument in element.clauses)
    return f"TIMESTAMPADD(SECOND, {seconds}, {time})"


@compiles(_Later, "sqlite")
def _later_sqlite(element, compiler, **kw) -> str:
    time, seconds = (compiler.process(argument, **kw) for argument in element.clauses)
    # as SQLAlchemy writes a DATETIME in SQLite, so that it compares with the others as text
    return f"strftime('%Y-%m-%d %H:%M:%S.000000', {time}, ({seconds}) || ' seconds')"


def _categories(table) -> list:
    """The four category columns of `table`, top level first."""
    return [table.c[name] for name in db.CATEGORY_NAMES]


def _build(conn: Connection, report: EventReport, collation: str | None, drop_duplicates: bool) -> None:
    """Sessions and views from the staged events, for the sessions not in the database yet (as its
    loose `collation`, if any, compares ids); with `drop_duplicates`, views alike in session,
    moment and path are one."""
    known = select(db.session.c.session_id)
    in_database = (staging.c.session_id.collate(collation) if collation else staging.c.session_id).in_(known)
    report.skipped_sessions = conn.execute(
        select(func.count(staging.c.session_id.distinct())).where(in_database)
    ).scalar_one()
    conn.execute(delete(staging).where(in_database))

    views = func.count(staging.c.category_a)  # other events have no category
    by_session = select(staging.c.session_id).group_by(staging.c.session_id).having(views == 0).subquery()
    report.viewless_sessions = conn.execute(select(func.count()).select_from(by_session)).scalar_one()

    # A session starts at the wall time of its first event and lasts until its last one: its end
    # is on its start's clock, even when the clocks changed in between (summer time ended).
    session = {"partition_by": staging.c.session_id}
    first_event = (staging.c.instant, staging.c.microsecond, staging.c.position)
    each = select(
        staging.c.session_id,
        staging.c.time,
        (func.max(staging.c.instant).over(**session) - staging.c.instant).label("seconds_to_last"),
        func.max(staging.c.gender).over(**session).label("told"),  # the one gender given, or NULL (checked)
        views.over(**session).label("views"),
        func.row_number().over(**session, order_by=first_event).label("place"),
    ).subquery()
    end = _Later(each.c.time, each.c.seconds_to_last)
    sessions = select(each.c.session_id, each.c.time, end, each.c.told).where(each.c.place == 1, each.c.views > 0)
    names = ["session_id", "start_time", "end_time", "gender"]
    report.new_sessions = conn.execute(insert(db.session).from_select(names, sessions)).rowcount

    is_view = staging.c.category_a.is_not(None)
    view = (staging.c.session_id, staging.c.instant, staging.c.microsecond, staging.c.position, *_categories(staging))
    viewed = select(*view).where(is_view)
    if drop_duplicates:  # the first row (in file order) of each (session, moment, path)
        alike = (staging.c.session_id, staging.c.instant, staging.c.microsecond, *_categories(staging))
        first = func.row_number().over(partition_by=alike, order_by=staging.c.position) == 1
        twins = viewed.add_columns(first.label("first")).subquery()
        viewed = select(*(twins.c[column.name] for column in view)).where(twins.c.first)
    viewed = viewed.subquery()
    order = func.row_number().over(
        partition_by=viewed.c.session_id, order_by=(viewed.c.instant, viewed.c.microsecond, viewed.c.position)
    )
    names = ["session_id", "sequence_order", *db.CATEGORY_NAMES]
    ordered = select(viewed.c.session_id, order, *_categories(viewed))
    report.new_views = conn.execute(insert(db.product).from_select(names, ordered)).rowcount
    staged = select(func.count(), func.min(staging.c.time), func.max(staging.c.time)).where(is_view)
    staged_views, report.first_view, report.last_view = conn.execute(staged).one()
    report.duplicate_views = staged_views - report.new_views


def _drop_staging(conn: Connection) -> None:
    """Outside the transaction, so that MariaDB does not commit it; a temporary table that cannot
    be dropped goes with its connection."""
    temporary = "TEMPORARY " if conn.dialect.name in ("mysql", "mariadb") else ""
    try:
        conn.exec_driver_sql(f"DROP {temporary}TABLE IF EXISTS {staging.name}")  # a fixed name: nothing from the user
        conn.commit()
    except SQLAlchemyError:
        conn.invalidate()


def import_events(
    engine: Engine,
    path: str | Path,
    columns: EventColumns,
    file_format: str | None = None,
    csv_delimiter: str | None = None,
    other_events: bool = False,
    progress: ingest.Progress | None = None,
    drop_duplicates: bool = False,
) -> EventReport:
    """Import an event log (CSV or Parquet, by `file_format` or the file's extension) into the FTP tables.

    The CSV delimiter is a comma unless given (a tab for .tsv files).
    With `other_events`, rows with no category are events other than views (a page, a search):
    they count for the session's start, end and gender but are not views, and a session that has
    only such events is left out. Without it, such a row is an error.
    With `drop_duplicates`, rows alike in session id, time (to the microsecond) and category path
    are one view: an export that delivered some events twice. Without it each row
    is a view of its own (a page reloaded within its second is one more view).
    """
    path = Path(path)
    ingest.check_is_file(path, "an event log (CSV or Parquet)")
    suffix = Path(path.name.lower().removesuffix(".gz")).suffix  # of events.csv.gz: .csv
    file_format = file_format or FORMATS.get(suffix)
    if file_format == "csv":
        delimiter = csv_delimiter or ("\t" if suffix == ".tsv" else ",")
        delimiter = "\t" if delimiter in ("\\t", "tab") else delimiter  # a tab is hard to type in a shell
        if len(delimiter) != 1:
            raise GenderError(f"the CSV delimiter must be one character, not {delimiter!r}")
        batches, unit = csv_batches(path, columns, delimiter), "line"
    elif file_format == "parquet":
        if csv_delimiter is not None:  # said, not ignored: the user thinks the file is CSV
            raise GenderError(f"{path.name} is read as Parquet, which has no delimiter: drop --csv-delimiter")
        batches, unit = parquet_batches(path, columns), "row"
    else:
        raise ImportFailed(
            path.name,
            f"cannot tell the format from {suffix or 'no extension'!r}: give --format csv or --format parquet",
        )

    chunks = ingest.schema_after_first(engine, _events(batches, columns, other_events, path.name, unit))
    report = EventReport()
    with db.reporting(engine), engine.connect() as conn:
        try:
            with conn.begin():
                staging.create(conn)
                events = _stage(conn, chunks, path.name, progress)
                if progress:
                    progress(1.0, f"{path.name}: {events:,} events read; building sessions and views")
                disagreement = _first_disagreement(conn, unit)
                if disagreement:
                    raise ImportFailed(path.name, *disagreement, unit)
                collation = db.loose_id_collation(conn)  # a table of one's own may take `GAP` for `gap`
                if collation and (reason := ingest.twins(conn, staging.c.session_id, collation)):
                    raise ImportFailed(path.name, reason)
                _build(conn, report, collation, drop_duplicates)
        finally:
            _drop_staging(conn)
    return report
