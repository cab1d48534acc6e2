"""The population summaries the Categories page shows, computed ahead and kept in the database.

Views and sessions per category of every level and gender, views per branch A > B > C and gender
(the catalogue treemap), and sessions per start date, hour and gender (hour, weekday and day
charts), and views per path A > B > C > D (the what-if editor's catalogue): as many rows as there
are categories, paths and hours, not views, so the page never groups
the raw tables while it waits. `python -m gender summarize` computes them with SQL GROUP BYs on the
database, reading and replacing the stored set in one transaction; `summarize --spark --parquet
DIR` computes the same in Spark SQL from a Parquet lake (`gender.lake`) and writes the small
result into the database, also in one transaction. `summary_run` says when, from what and how.

Without stored summaries the page computes them live on a small database (`small_enough`) and
asks for the command on a large one. pyspark is imported only by `summarize_parquet`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine, case, delete, extract, func, insert, literal, select

from gender import db, lake
from gender.config import redact
from gender.errors import BadParquet

# The most product rows the page summarises live when none are stored: the GROUP BYs took 30 s
# on SQLite at a million views here (shared 2 cores), so about 6 s at this many.
LIVE_VIEWS = 200_000
INSERT_ROWS = 10_000  # rows a statement when storing

Say = Callable[[str], None]

CATEGORY_COLUMNS = ["level", "category", "gender", "views", "sessions"]
BRANCH_COLUMNS = ["category_a", "category_b", "category_c", "gender", "views"]
ACTIVITY_COLUMNS = ["date", "hour", "gender", "sessions"]
PATH_COLUMNS = [*db.CATEGORY_NAMES, "views"]


@dataclass(frozen=True)
class SummaryInfo:
    """When and from what a set of summaries was computed: a row of `summary_run`."""

    computed_at: datetime  # UTC, without a zone (as the database keeps it)
    source: str  # "database" or "parquet"
    location: str  # the database's URL (password hidden) or the lake's folder
    engine: str  # "sql" or "spark"
    sessions: int  # the rows they were computed from
    labelled: int
    male: int
    views: int
    seconds: float

    @property
    def male_share(self) -> float:
        """The male share of the labelled sessions (the treemap's white)."""
        return self.male / max(self.labelled, 1)

    def describe(self) -> str:
        how = "Spark SQL" if self.engine == "spark" else "SQL"
        where = "the Parquet lake" if self.source == "parquet" else "the database"
        return (
            f"Computed {self.computed_at:%Y-%m-%d %H:%M} UTC from {where} `{self.location}` with {how}: "
            f"{self.sessions:,} sessions, {self.views:,} views."
        )

    def stale_note(self, sessions_now: int) -> str | None:
        """What to say when the database no longer holds what the summaries counted."""
        if sessions_now == self.sessions:
            return None
        return (
            f"These summaries are older than the data: they count {self.sessions:,} sessions and the "
            f"database now holds {sessions_now:,}. `python -m gender summarize` brings them up to date."
        )


@dataclass
class Summaries:
    """A whole set: `categories` (level, category, gender, views, sessions), `branches`
    (category_a..c, gender, views), `activity` (date, hour, gender, sessions), `paths`
    (category_a..d, views; most viewed first). `stored` is False for a set computed live for the
    page and kept nowhere."""

    info: SummaryInfo
    categories: pd.DataFrame
    branches: pd.DataFrame
    activity: pd.DataFrame
    paths: pd.DataFrame
    stored: bool = True

    def category_counts(self, level: str) -> pd.DataFrame:
        """category, gender, views, sessions at one level (what `explore.category_shares` takes)."""
        return self.categories[self.categories["level"] == level].drop(columns="level").reset_index(drop=True)

    def tree_counts(self) -> pd.DataFrame:
        """category_a..c, views (every gender), female, male: what `explore.catalogue_tree` takes."""
        keys = db.CATEGORY_NAMES[:3]
        wide = self.branches.pivot_table(index=keys, columns="gender", values="views", aggfunc="sum", fill_value=0)
        wide = wide.reindex(columns=[*db.GENDERS, "unknown"], fill_value=0)
        wide["views"] = wide.sum(axis=1)
        return wide[["views", *db.GENDERS]].astype(int).reset_index().rename_axis(columns=None)

    def describe(self) -> str:
        if not self.stored:
            return (
                "Computed live from the database just now: no summaries are stored. "
                "`python -m gender summarize` stores them, and the page then reads them."
            )
        return self.info.describe()

    def __str__(self) -> str:
        i = self.info
        how = "Spark SQL" if i.engine == "spark" else "SQL"
        return (
            f"summarised {i.sessions:,} sessions ({i.views:,} views) with {how} "
            f"in {i.seconds:.1f} s: {len(self.categories):,} category rows, {len(self.branches):,} branch rows, "
            f"{len(self.activity):,} activity rows, {len(self.paths):,} paths"
        )


def _tidy(categories: pd.DataFrame, branches: pd.DataFrame, activity: pd.DataFrame, paths: pd.DataFrame) -> tuple:
    """The four frames with the same types and order whichever engine computed them."""
    categories = categories.astype({"views": "int64", "sessions": "int64"})
    branches = branches.astype({"views": "int64"})
    activity = activity.assign(date=pd.to_datetime(activity["date"]).astype("datetime64[ns]"))
    activity = activity.astype({"hour": "int64", "sessions": "int64"})
    return (
        categories[CATEGORY_COLUMNS].sort_values(CATEGORY_COLUMNS[:3], ignore_index=True),
        branches[BRANCH_COLUMNS].sort_values(BRANCH_COLUMNS[:4], ignore_index=True),
        activity[ACTIVITY_COLUMNS].sort_values(ACTIVITY_COLUMNS[:3], ignore_index=True),
        paths.astype({"views": "int64"})[PATH_COLUMNS].sort_values(
            ["views", *db.CATEGORY_NAMES], ascending=[False, True, True, True, True], ignore_index=True
        ),
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


# -- on the database -----------------------------------------------------------------------------


def _frame(conn: Connection, query, columns: list[str]) -> pd.DataFrame:
    rows = [tuple(row) for row in conn.execute(query)]  # tuples: pandas probes Row objects slowly
    return pd.DataFrame(rows, columns=columns)


def compute_sql(conn: Connection, location: str) -> Summaries:
    """The summaries from the database's tables, by SQL GROUP BYs on `conn` (its transaction)."""
    started = time.monotonic()
    s, p = db.session, db.product
    gender = func.coalesce(s.c.gender, "unknown")
    joined = p.join(s, s.c.session_id == p.c.session_id)
    levels = []
    for level, column in db.CATEGORY_COLUMNS.items():
        query = (
            select(column, gender, func.count(), func.count(p.c.session_id.distinct()))
            .select_from(joined)
            .group_by(column, gender)
        )
        levels.append(_frame(conn, query, CATEGORY_COLUMNS[1:]).assign(level=level))
    categories = pd.concat(levels, ignore_index=True)
    branch = [db.CATEGORY_COLUMNS[level] for level in "abc"]
    branches = _frame(
        conn, select(*branch, gender, func.count()).select_from(joined).group_by(*branch, gender), BRANCH_COLUMNS
    )
    day, hour = func.date(s.c.start_time), extract("hour", s.c.start_time)
    activity = _frame(conn, select(day, hour, gender, func.count()).group_by(day, hour, gender), ACTIVITY_COLUMNS)
    path = list(db.CATEGORY_COLUMNS.values())
    paths = _frame(conn, select(*path, func.count()).group_by(*path), PATH_COLUMNS)
    totals = conn.execute(
        select(
            func.count(), func.count(s.c.gender), func.coalesce(func.sum(case((s.c.gender == "male", 1), else_=0)), 0)
        )
    ).one()
    views = conn.execute(select(func.count()).select_from(p)).scalar_one()
    info = SummaryInfo(
        _now(), "database", location, "sql", *(int(n) for n in totals), int(views), round(time.monotonic() - started, 3)
    )
    return Summaries(info, *_tidy(categories, branches, activity, paths))


def _create_tables(engine: Engine) -> None:
    # Before the transaction: MariaDB commits on DDL, which would end it.
    with db.reporting(engine):
        db.metadata.create_all(engine, tables=list(db.SUMMARY_TABLES))


def _replace(conn: Connection, summaries: Summaries) -> None:
    """The stored set replaced by `summaries`, on `conn` (inside the caller's transaction)."""
    for table in db.SUMMARY_TABLES:
        conn.execute(delete(table))
    conn.execute(insert(db.summary_run), [{"id": 1, **asdict(summaries.info)}])
    for table, frame in (
        (db.summary_category, summaries.categories),
        (db.summary_branch, summaries.branches),
        (db.summary_activity, summaries.activity.assign(date=summaries.activity["date"].dt.date)),
        (db.summary_path, summaries.paths),
    ):
        records = frame.astype(object).to_dict("records")  # plain Python values for every driver
        for start in range(0, len(records), INSERT_ROWS):
            conn.execute(insert(table), records[start : start + INSERT_ROWS])


def summarize_database(engine: Engine, say: Say | None = None) -> Summaries:
    """Compute the summaries from the database and store them in its summary tables, reading and
    replacing in one transaction: a failure leaves the previous set as it was."""
    say = say or (lambda _text: None)
    db.check_schema(engine)
    _create_tables(engine)
    with db.reporting(engine), engine.begin() as conn:
        say(f"summarising the session and product tables of {redact(engine.url)} with SQL GROUP BYs")
        summaries = compute_sql(conn, redact(engine.url))
        say(f"computed in {summaries.info.seconds:.1f} s; replacing the stored summaries")
        _replace(conn, summaries)
    return summaries


def store(engine: Engine, summaries: Summaries) -> None:
    """Replace the stored set with `summaries` in one transaction."""
    _create_tables(engine)
    with db.reporting(engine), engine.begin() as conn:
        _replace(conn, summaries)


# -- reading them back (the page) --------------------------------------------------------------


def _complete(conn: Connection) -> bool:
    """Whether every summary table is there (a set stored before summary_path existed is not)."""
    return all(conn.dialect.has_table(conn, table.name) for table in db.SUMMARY_TABLES)


def stored_info(engine: Engine) -> SummaryInfo | None:
    """When and from what the stored summaries were computed; None when there are none."""
    with db.reporting(engine), engine.connect() as conn:
        if not _complete(conn):
            return None
        row = conn.execute(select(db.summary_run).where(db.summary_run.c.id == 1)).mappings().first()
    if row is None:
        return None
    return SummaryInfo(**{name: value for name, value in row.items() if name != "id"})


def load(engine: Engine) -> Summaries | None:
    """The stored summaries, read in one transaction (a set being replaced is not seen half)."""
    with db.reporting(engine), engine.connect() as conn, conn.begin():
        if not _complete(conn):
            return None
        row = conn.execute(select(db.summary_run).where(db.summary_run.c.id == 1)).mappings().first()
        if row is None:
            return None
        info = SummaryInfo(**{name: value for name, value in row.items() if name != "id"})
        frames = [
            _frame(conn, select(*(table.c[name] for name in columns)), columns)
            for table, columns in (
                (db.summary_category, CATEGORY_COLUMNS),
                (db.summary_branch, BRANCH_COLUMNS),
                (db.summary_activity, ACTIVITY_COLUMNS),
                (db.summary_path, PATH_COLUMNS),
            )
        ]
    return Summaries(info, *_tidy(*frames))


def small_enough(engine: Engine, limit: int | None = None) -> bool:
    """Whether the database has at most `limit` (LIVE_VIEWS) views: a count that stops at
    limit + 1 rows, so it costs the same on a billion views."""
    limit = LIVE_VIEWS if limit is None else limit
    bounded = select(literal(1)).select_from(db.product).limit(limit + 1).subquery()
    with db.reporting(engine), engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(bounded)).scalar_one() <= limit


def live(engine: Engine, limit: int | None = None) -> Summaries | None:
    """The summaries computed now and kept nowhere, on a database of at most `limit` (LIVE_VIEWS)
    views; None on a larger one (grouping it would hold the page for minutes)."""
    if not small_enough(engine, limit):
        return None
    with db.reporting(engine), engine.connect() as conn, conn.begin():
        return replace(compute_sql(conn, redact(engine.url)), stored=False)


def session_count(engine: Engine) -> int:
    """Sessions in the database now (to tell whether the summaries are older than the data)."""
    with db.reporting(engine), engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(db.session)).scalar_one())


def too_large_note() -> str:
    return (
        f"No population summaries are stored, and the database holds more than {LIVE_VIEWS:,} views: too many to "
        "summarise while the page waits. Run `python -m gender summarize` (SQL on the database) or "
        "`python -m gender summarize --spark --parquet DIR` (Spark on a Parquet lake of it), then reload."
    )


# -- on Spark --------------------------------------------------------------------------------------


def _check_gender(locations: dict[str, str]) -> None:
    """The session table's files have a text column `gender` (null: unknown), which scoring does
    not need and `lake.check_tables` therefore does not ask for. Local files only, from footers."""
    if not lake.is_local(locations["session"]):
        return
    for path in lake.part_files(Path(locations["session"])):
        schema = pq.ParquetFile(path).schema_arrow
        if "gender" not in schema.names:
            raise BadParquet(path, "no column 'gender', which the summaries need (null where unknown)", "gender")
        kind = schema.field("gender").type
        if not (pa.types.is_null(kind) or lake._is_kind("text", kind)):
            raise BadParquet(path, f"column 'gender' is of type {kind}, expected text", "gender")


def compute_spark(spark, locations: dict[str, str], location: str) -> Summaries:
    """The same summaries as `compute_sql`, in Spark SQL from the lake's tables."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from gender import spark as gspark

    started = time.monotonic()
    tables = {name: spark.read.parquet(where) for name, where in locations.items()}
    for name, frame in tables.items():
        gspark.check_columns(frame, locations[name], name)
    gender_type = dict((f.name, f.dataType) for f in tables["session"].schema.fields).get("gender")
    if not isinstance(gender_type, (T.StringType, T.NullType)):  # a remote lake, checked by its schema
        raise BadParquet(locations["session"], f"column 'gender' is missing or not text ({gender_type})", "gender")
    sessions = tables["session"].select(
        "session_id", "start_time", F.coalesce(F.col("gender").cast("string"), F.lit("unknown")).alias("gender")
    )
    views = tables["product"].join(sessions.select("session_id", "gender"), "session_id")
    at_every_level = F.explode(
        F.array(
            *(
                F.struct(F.lit(level).alias("level"), F.col(name).alias("category"))
                for level, name in zip(db.LEVELS, db.CATEGORY_NAMES)
            )
        )
    )
    categories = (
        views.select("session_id", "gender", at_every_level.alias("at"))
        .groupBy(F.col("at.level").alias("level"), F.col("at.category").alias("category"), "gender")
        .agg(F.count(F.lit(1)).alias("views"), F.countDistinct("session_id").alias("sessions"))
    )
    branches = views.groupBy(*db.CATEGORY_NAMES[:3], "gender").agg(F.count(F.lit(1)).alias("views"))
    paths = tables["product"].groupBy(*db.CATEGORY_NAMES).agg(F.count(F.lit(1)).alias("views"))
    activity = sessions.groupBy(
        F.to_date("start_time").alias("date"), F.hour("start_time").alias("hour"), "gender"
    ).agg(F.count(F.lit(1)).alias("sessions"))
    totals = (
        tables["session"]
        .agg(
            F.count(F.lit(1)),
            F.count("gender"),
            F.coalesce(F.sum(F.when(F.col("gender") == "male", 1).otherwise(0)), F.lit(0)),
        )
        .first()
    )
    # Small results: collected as rows (no pandas conversion in Spark, no version caveats there).
    frames = [
        pd.DataFrame([tuple(row) for row in f.collect()], columns=f.columns)
        for f in (categories, branches, activity, paths)
    ]
    view_count = tables["product"].count()
    info = SummaryInfo(
        _now(),
        "parquet",
        location,
        "spark",
        *(int(n) for n in totals),
        int(view_count),
        round(time.monotonic() - started, 3),
    )
    return Summaries(info, *_tidy(*frames))


def summarize_parquet(
    parquet_dir: str | Path, engine: Engine, master: str | None = None, spark=None, say: Say | None = None
) -> Summaries:
    """Compute the summaries in Spark SQL from the lake's tables and store them in the database
    (one transaction). The files and the database are checked before Spark starts."""
    say = say or (lambda _text: None)
    locations = lake.check_tables(parquet_dir)  # a missing column or a wrong type: one line, file and column
    _check_gender(locations)
    _create_tables(engine)  # a database we cannot write fails before minutes of Spark
    from gender import spark as gspark

    created = False
    if spark is None:
        spark, created = gspark.session(master)
    try:
        say(f"tables in {parquet_dir} checked; summarising them in Spark SQL")
        with gspark.spark_errors(), gspark.cancelled_by_ctrl_c(spark):
            summaries = compute_spark(spark, locations, str(parquet_dir))
    finally:
        if created:
            spark.stop()
    say(f"computed in {summaries.info.seconds:.1f} s; replacing the stored summaries in {redact(engine.url)}")
    store(engine, summaries)
    return summaries
