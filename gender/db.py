"""The FTP database: its schema, the engine, and every query the project runs.

The schema is the CTU "ftp" database's, with the id and category columns wider than its char(6):
a shop keys sessions by UUIDs, long tokens, numbers or "shop:12345", and its category codes may
be names ("Women's shoes"). Any text that fits a column is a legal id or code: every query here
binds its parameters, so safety never depends on what the text holds. Column names chosen by
users are looked up in a fixed table, never spliced in.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    create_engine,
    event,
    func,
    insert,
    inspect,
    null,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, DisconnectionError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateTable

from gender.config import parse_url, redact, sqlite_file
from gender.errors import BadData, DatabaseUnavailable


class _ExactVarchar(mysql.VARCHAR):
    """A MySQL/MariaDB VARCHAR compared byte for byte (`_exact_varchar`)."""


@compiles(_ExactVarchar, "mysql")
@compiles(_ExactVarchar, "mariadb")
def _exact_varchar(type_, compiler, **kw) -> str:
    # A binary collation: MySQL/MariaDB compare text case-insensitively by default (u10003 =
    # U10003). A NO PAD one: utf8mb4_bin pads with spaces, so 'u1' = 'u1 ' and a shop's two ids
    # would be one (a duplicate key on import). MySQL 8's binary collation is its NO PAD one.
    return f"VARCHAR({type_.length}) CHARACTER SET utf8mb4 COLLATE {exact_collation(compiler.dialect)}"


def exact_collation(dialect) -> str:
    """The MySQL-family collation of the project's id and code columns (`_exact_varchar`)."""
    return "utf8mb4_nopad_bin" if dialect.is_mariadb else "utf8mb4_0900_bin"


def _exact(length: int):
    """A short code column compared exactly, as SQLite compares text: case and blanks included."""
    return String(length).with_variant(_ExactVarchar(length), "mysql", "mariadb")


# CTU uses char(6) ("u10003"); shops use UUIDs (36), long tokens and names. 255 characters keep
# MariaDB's keys within their 3,072 bytes in utf8mb4 and leave room for all of them.
SESSION_ID_LENGTH = CATEGORY_LENGTH = 255
SESSION_ID = _exact(SESSION_ID_LENGTH)
CATEGORY = _exact(CATEGORY_LENGTH)
LEVELS = ("a", "b", "c", "d")  # category_a is the top of the hierarchy, category_d the product
GENDERS = ("female", "male")

metadata = MetaData()


class SessionTime(TypeDecorator):
    """A session's start or end: DATETIME. SQLite stores it as text, which a shop's own software may
    have filled with anything ("yesterday"): such a value is a BadData naming it, where SQLAlchemy's
    parser raised a ValueError from deep inside every read of the row (a traceback in the CLI)."""

    impl = DateTime
    cache_ok = True

    def result_processor(self, dialect, coltype):
        parse = super().result_processor(dialect, coltype)
        if parse is None:
            return None

        def parsed(value):
            try:
                return parse(value)
            except ValueError:
                shown = repr(value if len(str(value)) <= 40 else f"{str(value)[:40]}…")
                raise BadData(
                    f"the database holds {shown} as a session's start or end time, which is no date and time "
                    "(YYYY-MM-DD HH:MM:SS): correct that row, or import the logs again"
                ) from None

        return parsed


session = Table(
    "session",
    metadata,
    Column("session_id", SESSION_ID, primary_key=True),
    Column("start_time", SessionTime, nullable=False),
    Column("end_time", SessionTime, nullable=False),
    Column("gender", String(6), nullable=True),  # NULL: unknown
)

product = Table(
    "product",
    metadata,
    Column("session_id", SESSION_ID, ForeignKey("session.session_id"), primary_key=True),
    Column("sequence_order", Integer, primary_key=True, autoincrement=False),
    *(Column(f"category_{level}", CATEGORY, nullable=False) for level in LEVELS),
    Index("ix_product_session_id", "session_id"),
)

CATEGORY_COLUMNS = {level: product.c[f"category_{level}"] for level in LEVELS}
CATEGORY_NAMES = [column.name for column in CATEGORY_COLUMNS.values()]

# The project's own table: what was served, by which model, to which A/B group. One row per
# (session, model): serving the same session again with the same model adds nothing.
prediction_log = Table(
    "prediction_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", SESSION_ID, nullable=False),
    Column("ab_group", String(16), nullable=False),
    Column("model_id", String(64), nullable=False),
    Column("p_male", Float, nullable=False),
    Column("prediction", String(6), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("served_at", DateTime, nullable=False),
    # page, api or cli: where the (first) answer for this session and model went. NULL in rows
    # written before the column existed (`upgrade_prediction_log` adds it to older databases).
    Column("served_via", String(8), nullable=True),
    UniqueConstraint("session_id", "model_id", name="uq_prediction_log_session_model"),
)

# The population summaries the Categories page reads (`gender.summary`, `python -m gender
# summarize`): computed ahead from the database or a Parquet lake, small whatever the logs' size,
# and replaced together in one transaction. NULL gender is stored as "unknown".
GENDER_OR_UNKNOWN = String(16)
summary_run = Table(  # one row: when and from what the summaries below were computed
    "summary_run",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("computed_at", DateTime, nullable=False),  # UTC
    Column("source", String(8), nullable=False),  # database or parquet
    Column("location", String(1024), nullable=False),  # the database (password hidden) or the lake's folder
    Column("engine", String(8), nullable=False),  # sql or spark
    Column("sessions", BigInteger, nullable=False),  # the rows they were computed from
    Column("labelled", BigInteger, nullable=False),
    Column("male", BigInteger, nullable=False),
    Column("views", BigInteger, nullable=False),
    Column("seconds", Float, nullable=False),
)
summary_category = Table(  # views, and sessions with a view, per category of each level and gender
    "summary_category",
    metadata,
    Column("level", String(1), primary_key=True),
    Column("category", CATEGORY, primary_key=True),
    Column("gender", GENDER_OR_UNKNOWN, primary_key=True),
    Column("views", BigInteger, nullable=False),
    Column("sessions", BigInteger, nullable=False),
)
summary_branch = Table(  # views per branch A > B > C and gender (the treemap). No key: three
    "summary_branch",  # codes of 255 characters pass MariaDB's 3,072 bytes, and it is read whole
    metadata,
    *(Column(f"category_{level}", CATEGORY, nullable=False) for level in "abc"),
    Column("gender", GENDER_OR_UNKNOWN, nullable=False),
    Column("views", BigInteger, nullable=False),
)
summary_activity = Table(  # sessions per start date, start hour and gender
    "summary_activity",
    metadata,
    Column("date", Date, primary_key=True),
    Column("hour", Integer, primary_key=True, autoincrement=False),
    Column("gender", GENDER_OR_UNKNOWN, primary_key=True),
    Column("sessions", BigInteger, nullable=False),
)
summary_path = Table(  # views per path A > B > C > D (the what-if editor's catalogue); no key, as above
    "summary_path",
    metadata,
    *(Column(f"category_{level}", CATEGORY, nullable=False) for level in "abcd"),
    Column("views", BigInteger, nullable=False),
)
SUMMARY_TABLES = (summary_run, summary_category, summary_branch, summary_activity, summary_path)

# Scores computed ahead, off the dashboard (`score --spark`, loaded by `import-scores`, see
# gender/scores.py): one row per (session, model), a new import replacing the pair's row. `id`
# grows with every row written (AUTOINCREMENT on SQLite too): the newest row is the largest id.
session_score = Table(
    "session_score",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", SESSION_ID, nullable=False),
    Column("model_id", String(64), nullable=False),
    Column("ab_group", String(16), nullable=False),
    Column("p_male", Float, nullable=False),
    Column("prediction", String(6), nullable=False),
    # the top SHAP contributions as JSON, [{"label": ..., "shap": ...}], NULL when scored without --explain
    Column("top_contributions", Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=True),
    Column("scored_at", DateTime, nullable=True),  # when the scores folder was written (UTC)
    Column("imported_at", DateTime, nullable=False),  # UTC
    UniqueConstraint("session_id", "model_id", name="uq_session_score_session_model"),
    sqlite_autoincrement=True,
)


# -- engine -------------------------------------------------------------------------------------


def connect(url, query_timeout: float | None = None) -> Engine:
    """An engine for any SQLAlchemy URL, tuned so a dead server fails in seconds, not minutes.

    `query_timeout`: how long a query may wait for the server (MySQL family; see ANSWER_TIMEOUT):
    QUERY_TIMEOUT when not given, for the CLI's and the dashboard's long work; the HTTP service
    passes ANSWER_TIMEOUT."""
    url = parse_url(url)
    if (path := sqlite_file(url)) is not None:
        url = url.set(database=str(path))  # ~ expanded: SQLite would open a folder named "~"
    # A server may drop an idle connection: each checkout pings first. A SQLite file cannot, and
    # the ping was a twentieth of an API answer's time.
    kwargs: dict = {"pool_pre_ping": url.get_backend_name() != "sqlite"}
    if url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 15}
    elif url.get_backend_name() in ("mysql", "mariadb"):
        kwargs["pool_recycle"] = 1800
        kwargs["connect_args"] = {"connect_timeout": 5, "read_timeout": ANSWER_TIMEOUT, "write_timeout": 60}
        if url.get_driver_name() == "pymysql":
            kwargs["connect_args"]["charset"] = "utf8mb4"
    try:
        engine = create_engine(url, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
        raise DatabaseUnavailable(f"no driver for {redact(url)}: {exc}") from None
    except (ValueError, TypeError) as exc:  # e.g. ?connect_timeout=abc
        raise DatabaseUnavailable(f"bad option in the database URL {redact(url)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if (path := sqlite_file(url)) is not None:
            event.listen(engine, "connect", lambda _connection, record: _remember_file(path, record))
            event.listen(engine, "checkout", lambda _connection, record, _proxy: _same_file(path, record))
    elif url.get_driver_name() == "pymysql":
        query_timeout = QUERY_TIMEOUT if query_timeout is None else query_timeout
        if query_timeout != ANSWER_TIMEOUT:  # else every read keeps connect_args' (and a checkout costs nothing)

            def patient_queries(dbapi_connection, _record, _proxy) -> None:
                dbapi_connection._read_timeout = query_timeout  # PyMySQL re-reads it before every read

            event.listen(engine, "checkout", patient_queries)
            event.listen(engine, "checkin", _quick_answers)
    return engine


# How long the MySQL family's server may keep us waiting, in one place. PyMySQL's connect_timeout
# (5 s, above) covers only the TCP connect: the server's greeting and the pool's pre-ping wait
# read_timeout, ANSWER_TIMEOUT, so a frozen server fails in seconds. A checked-out connection's
# queries wait as `connect(query_timeout=...)` says:
# - QUERY_TIMEOUT (the default): the CLI's and the dashboard's long work (imports, training's
#   reads, summaries), since a cold aggregate over a million sessions can take a while;
# - ANSWER_TIMEOUT: the HTTP service's engine (`gender.api.Service.engine`): its lookups of one
#   session (and /api/health's, the search box's, its prediction log's batches) take milliseconds,
#   so a server that stalls in the middle of one (a table locked, a network that froze once the
#   connection was made) is a 503 with Retry-After within seconds, not an answer minutes late.
ANSWER_TIMEOUT, QUERY_TIMEOUT = 4, 300


def _quick_answers(dbapi_connection, _record) -> None:
    if dbapi_connection is not None:
        dbapi_connection._read_timeout = ANSWER_TIMEOUT


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (the app) keep reading during an import
    cursor.close()


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _remember_file(path: Path, record) -> None:
    record.info["file"] = _file_identity(path)


def _same_file(path: Path, record) -> None:
    """A pooled SQLite connection keeps reading the file it opened, even once another file has
    taken its name (`mv new.db gender.db`) or it was deleted: a server went on answering from the
    old one. One stat a checkout (microseconds) tells; the connection is then opened again, or the
    request told the file is gone (never a new empty file made in its place)."""
    now = _file_identity(path)
    if now is None:
        raise DatabaseUnavailable(f"the database file {path} is gone (moved or deleted since it was opened)")
    if now != record.info.get("file"):
        raise DisconnectionError("the database file was replaced")  # the pool opens the new one


@contextlib.contextmanager
def reporting(engine: Engine) -> Iterator[None]:
    """Turn driver errors into one readable line that names the database, password hidden."""
    try:
        yield
    except DBAPIError as exc:
        reason = exc.orig.args[-1] if exc.orig is not None and exc.orig.args else type(exc).__name__
        raise DatabaseUnavailable(f"database {redact(engine.url)} failed: {reason}") from None
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"database {redact(engine.url)} failed: {type(exc).__name__}") from None


def _names_a_database(url: URL) -> None:
    """A server URL without a database (fine for creating one) holds no tables: say so, as
    SQLAlchemy's inspector fails on it with a traceback."""
    if url.get_backend_name() != "sqlite" and not url.database:
        raise DatabaseUnavailable(f"{redact(url)} names no database: add one, e.g. …:3306/ftp")


def create_schema(engine: Engine) -> None:
    """Create the FTP tables (and the project's own) where missing, and a SQLite file's folder."""
    _names_a_database(engine.url)
    if path := sqlite_file(engine.url):
        path.parent.mkdir(parents=True, exist_ok=True)
    with reporting(engine):
        metadata.create_all(engine)
    upgrade_prediction_log(engine)


def check_schema(engine: Engine) -> None:
    """Fail clearly unless the database is reachable and holds the FTP tables."""
    _names_a_database(engine.url)
    if (path := sqlite_file(engine.url)) and not path.is_file():  # a typo in the path: create nothing there
        missing = f"there is no file {path}"
    else:
        with reporting(engine):
            missing = ", ".join(sorted({"session", "product"} - set(inspect(engine).get_table_names())))
    if missing:
        raise DatabaseUnavailable(
            f"database {redact(engine.url)} has no FTP tables ({missing}): "
            "load data with `python -m gender demo`, `import-pakdd`, `import-events` or `import-db`"
        )


def check_reads(engine: Engine) -> None:
    """Fail clearly unless a row of `session` can be read: a server that lists its tables but
    gives no row (its tables locked, a query stalled) fails here once the engine's query timeout
    runs out (`/api/health`, on the HTTP service's engine: seconds)."""
    with reporting(engine), engine.connect() as conn:
        conn.execute(select(session.c.session_id).limit(1)).all()


# -- one session -------------------------------------------------------------------------------


def fits(text: object, length: int) -> bool:
    """Whether `text` could be stored in a text column of `length` characters. Anything else (too
    long, empty, not text, not encodable as UTF-8) matches no row: the caller need not ask."""
    if not isinstance(text, str) or not 0 < len(text) <= length:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: what Python makes of non-UTF-8 bytes in argv
        return False
    return True


def as_typed(text: str) -> list[str]:
    """What typed text may stand for, in the order to try: exactly as typed, then without the
    blanks around it (pasted text often brings a space or a newline; a stored id with blanks of
    its own is still found, as it is tried first)."""
    stripped = text.strip()
    return [text] if stripped == text or not stripped else [text, stripped]


def get_session(engine: Engine, session_id: object) -> dict | None:
    """The session row (session_id as stored, start_time, end_time, gender) of an id as typed,
    or None when there is none (see `as_typed`)."""
    if not isinstance(session_id, str):
        return None
    with reporting(engine), engine.connect() as conn:
        for candidate in as_typed(session_id):
            if fits(candidate, SESSION_ID_LENGTH):
                row = conn.execute(select(session).where(session.c.session_id == candidate)).mappings().first()
                if row:
                    return dict(row)
    return None


def get_views(engine: Engine, session_id: str) -> pd.DataFrame:
    """The session's product views in order: sequence_order, category_a..category_d."""
    query = (
        select(product.c.sequence_order, *CATEGORY_COLUMNS.values())
        .where(product.c.session_id == session_id)
        .order_by(product.c.sequence_order)
    )
    with reporting(engine), engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).all(), columns=["sequence_order", *CATEGORY_NAMES])


def count_category(engine: Engine, session_id: str, category: str) -> int:
    """How many of the session's views have `category` at any level (the original's /count).

    Both are taken exactly as given (see `get_session` for ids as typed). The session's views are
    found through the primary key, so the cost follows the session, not the table. Text that no
    column could hold counts 0 without a query.
    """
    if not (fits(session_id, SESSION_ID_LENGTH) and fits(category, CATEGORY_LENGTH)):
        return 0
    matches = or_(*(column == category for column in CATEGORY_COLUMNS.values()))
    query = select(func.count()).select_from(product).where(and_(product.c.session_id == session_id, matches))
    with reporting(engine), engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


# -- many sessions -----------------------------------------------------------------------------

SESSION_FILTERS = {
    "labelled": session.c.gender.is_not(None),
    "unlabelled": session.c.gender.is_(None),
    "all": True,
}


def read_sessions(engine: Engine, which: str = "labelled") -> tuple[pd.DataFrame, pd.DataFrame]:
    """All sessions of a kind (labelled, unlabelled, all) and their views, as two frames."""
    where = SESSION_FILTERS[which]
    sessions_query = select(session).where(where).order_by(session.c.session_id)
    views_query = (
        select(product)
        .join(session, session.c.session_id == product.c.session_id)
        .where(where)
        .order_by(product.c.session_id, product.c.sequence_order)
    )
    with reporting(engine), engine.connect() as conn:
        sessions = pd.read_sql(sessions_query, conn, parse_dates=["start_time", "end_time"])
        views = pd.read_sql(views_query, conn)
    return sessions, views


def session_chunks(
    engine: Engine, which: str = "all", size: int = 100_000
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """read_sessions in chunks of at most `size` sessions, in session-id order: memory bounded
    by the chunk, not the table. Each chunk starts after the last id of the one before it."""
    where, last = SESSION_FILTERS[which], None
    while True:
        after = True if last is None else session.c.session_id > last
        sessions_query = select(session).where(where, after).order_by(session.c.session_id).limit(size)
        with reporting(engine), engine.connect() as conn:
            sessions = pd.read_sql(sessions_query, conn, parse_dates=["start_time", "end_time"])
            if sessions.empty:
                return
            first, last = sessions["session_id"].iloc[0], sessions["session_id"].iloc[-1]
            views_query = (
                select(product)
                .join(session, session.c.session_id == product.c.session_id)
                .where(where, product.c.session_id.between(first, last))
                .order_by(product.c.session_id, product.c.sequence_order)
            )
            views = pd.read_sql(views_query, conn)
        yield sessions, views


def table_counts(engine: Engine) -> dict:
    """Sessions (labelled, unknown gender) and views in the database."""
    query = select(
        func.count().label("sessions"),
        func.count(session.c.gender).label("labelled"),
        func.sum(func.coalesce((session.c.gender == "male").cast(Integer), 0)).label("male"),
    )
    with reporting(engine), engine.connect() as conn:
        row = conn.execute(query).mappings().one()
        views = conn.execute(select(func.count()).select_from(product)).scalar_one()
    counts = {key: int(value or 0) for key, value in row.items()}
    counts["unknown"] = counts["sessions"] - counts["labelled"]
    counts["views"] = int(views)
    return counts


def start_dates(engine: Engine) -> tuple[date, date] | None:
    """The days the first and the last session started (None with no sessions): the bounds of the
    Find page's date boxes, whose calendars would otherwise cover ten years around today."""
    with reporting(engine), engine.connect() as conn:
        first, last = conn.execute(select(func.min(session.c.start_time), func.max(session.c.start_time))).one()
    return None if first is None else (first.date(), last.date())


def random_session_id(engine: Engine, labelled: bool, rng: random.Random | None = None) -> str | None:
    """A session id drawn uniformly among labelled (or unknown-gender) sessions; None if there are none."""
    where = SESSION_FILTERS["labelled" if labelled else "unlabelled"]
    with reporting(engine), engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(session).where(where)).scalar_one()
        if not n:
            return None
        offset = (rng or random).randrange(n)
        query = select(session.c.session_id).where(where).order_by(session.c.session_id).limit(1).offset(offset)
        return conn.execute(query).scalar_one()


# -- the population ----------------------------------------------------------------------------


# -- the prediction log ------------------------------------------------------------------------


_upgraded: set[str] = set()  # databases whose prediction_log this process has seen up to date


def upgrade_prediction_log(engine: Engine) -> None:
    """Add the columns a prediction_log of an older version lacks (served_via). A nullable column
    added in place: old rows stay as they were, and nothing else is touched."""
    key = engine.url.render_as_string(hide_password=False)
    if key in _upgraded:
        return
    with reporting(engine):
        with engine.connect() as conn:
            if not inspect(conn).has_table("prediction_log"):
                return
            present = {column["name"] for column in inspect(conn).get_columns("prediction_log")}
        if "served_via" not in present:
            try:
                with engine.begin() as conn:  # a fixed statement: nothing typed by anyone in it
                    conn.execute(text("ALTER TABLE prediction_log ADD COLUMN served_via VARCHAR(8) NULL"))
            except DBAPIError:  # another process added it first (duplicate column): fine if it is there now
                with engine.connect() as conn:
                    if "served_via" not in {c["name"] for c in inspect(conn).get_columns("prediction_log")}:
                        raise
    _upgraded.add(key)


def log_predictions(engine: Engine, rows: list[dict]) -> None:
    """Add served predictions to `prediction_log`, skipping (session, model) pairs already there."""
    statement = insert(prediction_log).prefix_with("OR IGNORE", dialect="sqlite")
    statement = statement.prefix_with("IGNORE", dialect="mysql").prefix_with("IGNORE", dialect="mariadb")
    with reporting(engine):  # creating the table fails like the insert on a database we cannot write
        with engine.begin() as conn:
            # Only where missing: MariaDB wants the CREATE privilege for CREATE … IF NOT EXISTS even
            # of a table that is there, and a service's user may be allowed to INSERT into it alone.
            # IF NOT EXISTS still: two API workers' first rows raced a check-then-create.
            if not inspect(conn).has_table("prediction_log"):
                conn.execute(CreateTable(prediction_log, if_not_exists=True))
        upgrade_prediction_log(engine)
        with engine.begin() as conn:
            conn.execute(statement, rows)


def served_predictions(engine: Engine) -> pd.DataFrame:
    """Every logged prediction with the session's recorded gender (None when unknown)."""
    query = select(prediction_log, session.c.gender).select_from(
        prediction_log.outerjoin(session, session.c.session_id == prediction_log.c.session_id)
    )
    with reporting(engine), engine.connect() as conn:
        if not inspect(conn).has_table("prediction_log"):
            return pd.DataFrame(columns=[*prediction_log.c.keys(), "gender"])
        present = {column["name"] for column in inspect(conn).get_columns("prediction_log")}
        if "served_via" not in present:  # an older log, read as it is (a reader does not migrate)
            columns = [column for column in prediction_log.c if column.name != "served_via"]
            query = query.with_only_columns(*columns, session.c.gender)
            return pd.read_sql(query, conn, parse_dates=["served_at"]).assign(served_via=None)
        return pd.read_sql(query, conn, parse_dates=["served_at"])


# -- finding sessions --------------------------------------------------------------------------
# Typing the start of an id suggests ids (`suggest_session_ids`), and filters list sessions
# (`find_sessions`): both answer from indexes or bounded scans, at a million sessions too.

SUGGESTIONS = 20  # the most ids a search box suggests
_LAST_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)  # not characters: no UTF-8 text holds one


def _after_prefix(prefix: str) -> str | None:
    """The smallest text above every text that starts with `prefix` in code-point order (which is
    UTF-8 byte order, SQLite's BINARY and MariaDB's *_bin): the prefix with its last character
    moved one up. None when there is none (a prefix of U+10FFFF only)."""
    while prefix:
        code = ord(prefix[-1]) + 1
        if code in _SURROGATES:
            code = _SURROGATES.stop
        if code <= _LAST_CODE_POINT:
            return prefix[:-1] + chr(code)
        prefix = prefix[:-1]
    return None


def like_escaped(text_value: str, escape: str = "!") -> str:
    """`text_value` as a LIKE pattern that matches only itself (its %, _ and escape characters escaped)."""
    return "".join(escape + c if c in ("%", "_", escape) else c for c in text_value)


NO_PAD_BINARY = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin")  # the project's tables (`_exact_varchar`)
_id_collations: dict[str, str] = {}  # database URL -> the collation of session.session_id (MySQL family)


def _session_id_collation(engine: Engine, conn) -> str:
    """The collation of session.session_id on a MySQL/MariaDB database, kept for a search box's
    keystrokes: utf8mb4_nopad_bin on the project's own tables; a database of one's own (the CTU
    server's) may compare case-insensitively."""
    key = engine.url.render_as_string(hide_password=False)
    if key not in _id_collations:
        _id_collations[key] = _read_id_collation(conn)
    return _id_collations[key]


def _read_id_collation(conn) -> str:
    query = text(
        "SELECT collation_name FROM information_schema.columns "
        "WHERE table_schema = DATABASE() AND table_name = 'session' AND column_name = 'session_id'"
    )
    return conn.execute(query).scalar() or ""


def loose_id_collation(conn) -> str | None:
    """The collation of session.session_id where it is not exact: on a MySQL-family table of one's
    own, a case-insensitive one, say, to which `GAP` is the session `gap`. None on SQLite and on the
    project's tables, which compare ids exactly. Read afresh (once an import): an import must not
    act on a table since replaced."""
    if conn.dialect.name == "sqlite":
        return None
    collation = _read_id_collation(conn)
    return collation if collation and collation not in NO_PAD_BINARY else None


def suggestion_query(engine: Engine, conn, typed: str, limit: int = SUGGESTIONS):
    """The SELECT of up to `limit` session ids starting with `typed`, in id order: a range of the
    primary key, never a scan (`EXPLAIN` shows it; tests/test_search.py checks it).

    Ids compare as the lookup compares them: exactly, case and blanks included, on SQLite (BINARY)
    and on the project's MariaDB tables (utf8mb4_nopad_bin): there the range is `session_id >=
    typed AND session_id < next`. On an older table of utf8mb4_bin, which pads with spaces, the
    range is `session_id >= typed + NULs AND session_id < next` and LEFT(session_id, n) LIKE typed
    (escaped) keeps only true starts, as "ab\\tx" sorts before "ab" there and `LIKE 'ab%'` alone,
    whose range starts at "ab", misses it (MariaDB 10.11). On a MySQL-family table with another collation
    (a case-insensitive one of one's own) a plain `LIKE 'typed%'`, which MariaDB turns into a range
    of that collation, compares as that database's lookups do.
    """
    column = session.c.session_id
    query = select(column).order_by(column).limit(limit)
    collation = "" if engine.dialect.name == "sqlite" else _session_id_collation(engine, conn)
    after = _after_prefix(typed)
    if engine.dialect.name == "sqlite" or collation in NO_PAD_BINARY:  # bytes, as SQLite's BINARY
        return query.where(column >= typed, *([column < after] if after is not None else []))
    if not collation.endswith("_bin"):
        return query.where(column.like(like_escaped(typed) + "%", escape="!"))
    lowest = typed + "\x00" * (SESSION_ID_LENGTH - len(typed))  # below every id that starts with typed
    exact_start = func.left(column, len(typed)).like(like_escaped(typed), escape="!")
    return query.where(column >= lowest, *([column < after] if after is not None else []), exact_start)


def suggest_session_ids(engine: Engine, typed: object, limit: int = SUGGESTIONS) -> list[str]:
    """Up to `limit` session ids that start with `typed`, in id order, for a search box.

    Typed text is taken as `as_typed` takes it: as typed first and, only when no id starts with
    that, without the blanks around it. Blank, overlong or non-text input suggests nothing,
    without a query. Ids compare exactly, case included (see `suggestion_query`).
    """
    if not isinstance(typed, str) or not typed.strip():
        return []
    limit = max(0, min(int(limit), 1_000))
    with reporting(engine), engine.connect() as conn:
        for candidate in as_typed(typed):
            if fits(candidate, SESSION_ID_LENGTH):
                found = list(conn.execute(suggestion_query(engine, conn, candidate, limit)).scalars())
                if found:
                    return found
    return []


@dataclass(frozen=True)
class SessionFilter:
    """Which sessions to list: every condition given must hold (None: any).

    gender: the recorded gender, "male", "female" or "unknown" (not recorded).
    predicted: "male" or "female" as last served: the prediction_log row of the session written
        last (the newest model that answered for it); sessions never served have none.
    precomputed: "male" or "female" as precomputed: the session_score row of the session written
        last (`import-scores`); sessions never scored ahead have none.
    viewed: a category code at any level (A, B, C or D), as typed (see `as_typed`).
    started_from / started_before: the session's start time, from (inclusive) / before (exclusive).
    """

    gender: str | None = None
    predicted: str | None = None
    precomputed: str | None = None
    viewed: str | None = None
    started_from: datetime | None = None
    started_before: datetime | None = None

    def __post_init__(self):
        if self.gender not in (None, "male", "female", "unknown"):
            raise ValueError(f"gender must be male, female, unknown or None, not {self.gender!r}")
        for name in ("predicted", "precomputed"):
            if getattr(self, name) not in (None, "male", "female"):
                raise ValueError(f"{name} must be male, female or None, not {getattr(self, name)!r}")
        if self.viewed is not None and not isinstance(self.viewed, str):
            raise ValueError("viewed must be a category code (text) or None")
        for name in ("started_from", "started_before"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), datetime):
                raise ValueError(f"{name} must be a datetime or None")

    @property
    def empty(self) -> bool:
        return self == SessionFilter()


@dataclass(frozen=True)
class FoundSessions:
    """What `find_sessions` found: the first sessions in id order and how many match in all."""

    sessions: pd.DataFrame  # session_id, start_time, end_time, gender, predicted (as last served), precomputed
    total: int  # sessions matching; a lower bound when `more` is true
    more: bool  # more than `total` match: counting stopped there


COUNT_LIMIT = 10_000  # matches counted at most: "more than 10,000" needs no count to a million


def _saying_last(table: Table, prediction: str):
    """The ids of the sessions whose newest row in `table` (prediction_log, session_score: the
    largest id) predicts `prediction`: read from that table, usually far smaller than the sessions."""
    last, newer = table.alias("last"), table.alias("newer")
    latest = select(func.max(newer.c.id)).where(newer.c.session_id == last.c.session_id).correlate(last)
    return select(last.c.session_id).where(last.c.prediction == prediction, last.c.id == latest.scalar_subquery())


def _said_last(table: Table):
    """The prediction of a listed session's newest row in `table`, as a column of the listing."""
    newest = select(table.c.prediction).where(table.c.session_id == session.c.session_id)
    return newest.order_by(table.c.id.desc()).limit(1).correlate(session).scalar_subquery()


def find_sessions(
    engine: Engine, filters: SessionFilter, limit: int = 100, count_limit: int = COUNT_LIMIT
) -> FoundSessions:
    """The first `limit` sessions (in id order) matching `filters`, and how many match (counted up
    to `count_limit`). Every value is a bound parameter; a category code no column could hold
    matches nothing, without a query."""
    if int(limit) > int(count_limit):
        raise ValueError("limit must not exceed count_limit")
    if filters.viewed is not None and len(codes := as_typed(filters.viewed)) > 1:  # exactly, else stripped
        exact = _find_sessions(engine, filters, limit, count_limit)
        return exact if exact.total else _find_sessions(engine, replace(filters, viewed=codes[1]), limit, count_limit)
    return _find_sessions(engine, filters, limit, count_limit)


def _find_sessions(engine: Engine, filters: SessionFilter, limit: int, count_limit: int) -> FoundSessions:
    columns = ["session_id", "start_time", "end_time", "gender", "predicted", "precomputed"]
    nothing = FoundSessions(pd.DataFrame(columns=columns), 0, False)
    if filters.viewed is not None and not fits(filters.viewed, CATEGORY_LENGTH):
        return nothing
    conditions = []
    if filters.gender == "unknown":
        conditions.append(session.c.gender.is_(None))
    elif filters.gender:
        conditions.append(session.c.gender == filters.gender)
    if filters.viewed is not None:
        # One pass over the views (no index on the category columns). SQLite reads a plain IN so;
        # MariaDB would probe each session's views instead (FirstMatch), twice as slow at a million
        # sessions when fewer than the count limit match, unless it is a derived table.
        viewed = or_(*(column == filters.viewed for column in CATEGORY_COLUMNS.values()))
        viewers = select(product.c.session_id).where(viewed)
        if engine.dialect.name != "sqlite":
            viewers = select(viewers.distinct().subquery("viewers").c.session_id)
        conditions.append(session.c.session_id.in_(viewers))
    if filters.started_from is not None:
        conditions.append(session.c.start_time >= filters.started_from)
    if filters.started_before is not None:
        conditions.append(session.c.start_time < filters.started_before)

    with reporting(engine), engine.connect() as conn:
        said_last = {}  # column -> the prediction its table's newest row for the session says
        for table, wanted, name in (
            (prediction_log, filters.predicted, "predicted"),
            (session_score, filters.precomputed, "precomputed"),
        ):
            held = inspect(conn).has_table(table.name)
            if wanted and not held:
                return nothing
            if wanted:
                conditions.append(session.c.session_id.in_(_saying_last(table, wanted)))
            said_last[name] = _said_last(table) if held else null()
        # One pass for the count and the ids (a category filter reads every view once), then the
        # listed sessions' rows by their primary key.
        matching = select(session.c.session_id).where(*conditions).order_by(session.c.session_id)
        found_ids = list(conn.execute(matching.limit(max(int(limit), int(count_limit) + 1))).scalars())
        total, more = min(len(found_ids), count_limit), len(found_ids) > count_limit
        listed = found_ids[: max(0, int(limit))]
        columns_listed = (session.c.session_id, session.c.start_time, session.c.end_time, session.c.gender)
        listing = (
            select(*columns_listed, *(said.label(name) for name, said in said_last.items()))
            .where(session.c.session_id.in_(listed))
            .order_by(session.c.session_id)
        )
        rows = conn.execute(listing).all() if listed else []
    frame = pd.DataFrame(rows, columns=columns)
    return FoundSessions(frame, total, more)
