"""The FTP tables as Parquet files: written from any database or straight from the synthetic
generator, and checked before anything (Spark, `gender.spark`) reads them.

A folder of the tables holds `session.parquet` (session_id, start_time, end_time, gender) and
`product.parquet` (session_id, sequence_order, category_a .. category_d), the columns and types
of the database's tables: text, times without a time zone (the wall time of the logs, as the
database keeps it), whole numbers. Readers also take, instead of a file, a folder `session/` or
`product/` of Parquet part files, as Spark and other tools write a table.

Writing streams: rows go to `pyarrow.parquet.ParquetWriter` a chunk (a row group) at a time, so
memory follows the chunk, never the table; a demo of 10 million sessions needs no database. The
files are written under temporary names and renamed when complete: a reader never sees half a
table.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, select

from gender import db, synth
from gender.config import user_path
from gender.errors import BadParquet, GenderError, one_line
from gender.ingest import Progress

TABLES = ("session", "product")
CHUNK_ROWS = 100_000  # rows a row group: what writing holds in memory, per table

SCHEMAS = {
    "session": pa.schema(
        [
            pa.field("session_id", pa.string(), nullable=False),
            pa.field("start_time", pa.timestamp("us"), nullable=False),
            pa.field("end_time", pa.timestamp("us"), nullable=False),
            pa.field("gender", pa.string()),  # null: unknown
        ]
    ),
    "product": pa.schema(
        [
            pa.field("session_id", pa.string(), nullable=False),
            pa.field("sequence_order", pa.int32(), nullable=False),
            *(pa.field(name, pa.string(), nullable=False) for name in db.CATEGORY_NAMES),
        ]
    ),
}

# What a reader needs of each table, by kind of value. `gender` is not needed to score.
REQUIRED = {
    "session": {"session_id": "text", "start_time": "time", "end_time": "time"},
    "product": {"session_id": "text", "sequence_order": "whole number", **dict.fromkeys(db.CATEGORY_NAMES, "text")},
    # what `score --spark` writes, as `import-scores` reads it back (gender/scores.py)
    "scores": {"session_id": "text", "p_male": "number", "prediction": "text", "model_id": "text", "ab_group": "text"},
}


def _is_kind(kind: str, arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if kind == "text":
        return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    if kind == "time":
        return pa.types.is_timestamp(arrow_type)
    if kind == "number":
        return pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type)
    return pa.types.is_integer(arrow_type)  # a whole number


@dataclass
class LakeReport:
    directory: Path
    sessions: int = 0
    views: int = 0
    files: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        names = " and ".join(str(path) for path in self.files)
        return f"wrote {self.sessions:,} sessions ({self.views:,} views) to {names}"


# -- writing -----------------------------------------------------------------------------------


class _TableWriter:
    """One table's file, written a row group at a time under a temporary name."""

    def __init__(self, directory: Path, name: str):
        self.path = directory / f"{name}.parquet"
        self.tmp = directory / f".{name}.parquet.tmp"
        self.schema = SCHEMAS[name]
        self.rows = 0
        self.pending: dict[str, list] = {column: [] for column in self.schema.names}
        self.writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")

    def add(self, columns: dict[str, list]) -> None:
        """Rows given as columns (lists of Python values); written once a chunk is full."""
        for name in self.schema.names:
            self.pending[name].extend(columns[name])
        if len(self.pending["session_id"]) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.pending["session_id"]:
            table = pa.Table.from_pydict(self.pending, schema=self.schema)
            self.writer.write_table(table, row_group_size=len(table))
            self.rows += len(table)
            self.pending = {column: [] for column in self.schema.names}

    def close(self) -> None:
        self.flush()
        self.writer.close()

    def abandon(self) -> None:
        try:
            self.writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def _write(directory: Path, chunks: Iterable[tuple[dict[str, list], dict[str, list]]]) -> LakeReport:
    """Write (session columns, product columns) chunks into `directory`'s two files."""
    directory = Path(directory)
    writers: dict[str, _TableWriter] = {}
    created = not directory.exists()  # removed again if nothing could be written
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            writers[name] = _TableWriter(directory, name)
        for sessions, views in chunks:
            writers["session"].add(sessions)
            writers["product"].add(views)
        for writer in writers.values():
            writer.close()
        for writer in writers.values():
            os.replace(writer.tmp, writer.path)
    except OSError as exc:
        raise GenderError(f"cannot write to {directory}: {exc.strerror or exc}") from None
    except pa.ArrowException as exc:  # a value the lake's schema cannot hold (a sequence_order past 2^31)
        raise GenderError(f"cannot write the Parquet tables: {one_line(exc)}") from None
    finally:
        for writer in writers.values():
            if writer.tmp.exists():
                writer.abandon()
        if created and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return LakeReport(directory, writers["session"].rows, writers["product"].rows, [w.path for w in writers.values()])


def _columns(rows: list, names: list[str]) -> dict[str, list]:
    """Rows (tuples or dicts) as lists of values by column."""
    if rows and isinstance(rows[0], dict):
        return {name: [row[name] for row in rows] for name in names}
    values = list(zip(*rows)) if rows else [()] * len(names)
    return {name: list(column) for name, column in zip(names, values)}


def export_parquet(engine: Engine, directory: Path, progress: Progress | None = None) -> LakeReport:
    """Write the database's `session` and `product` tables into `directory` as Parquet.

    Each table is streamed in primary-key order, a chunk at a time; both are read in one
    transaction, so a database that snapshots reads (InnoDB, SQLite) gives a consistent pair.
    """
    db.check_schema(engine)
    counts = db.table_counts(engine)
    total = max(counts["sessions"] + counts["views"], 1)

    def chunks() -> Iterator[tuple[dict, dict]]:
        done = 0
        empty = {name: {column: [] for column in SCHEMAS[name].names} for name in TABLES}
        with db.reporting(engine), engine.connect() as conn, conn.begin():
            for name, table in (("session", db.session), ("product", db.product)):
                columns = SCHEMAS[name].names
                query = select(*(table.c[column] for column in columns)).order_by(*table.primary_key.columns)
                stream = conn.execution_options(yield_per=CHUNK_ROWS).execute(query)
                for rows in stream.partitions():
                    part = _columns(rows, columns)
                    yield (part, empty["product"]) if name == "session" else (empty["session"], part)
                    done += len(rows)
                    if progress:
                        progress(done / total, f"{done:,} of {total:,} rows written ({name})")

    return _write(directory, chunks())


def demo_parquet(
    directory: Path,
    sessions: int,
    seed: int = 0,
    unknown_share: float = 0.3,
    progress: Progress | None = None,
) -> LakeReport:
    """The synthetic logs of `synth.generate` straight into Parquet: the same rows, for the same
    seed, as `python -m gender demo` writes into a database, with no database at all."""
    session_names, product_names = SCHEMAS["session"].names, SCHEMAS["product"].names

    def chunks() -> Iterator[tuple[dict, dict]]:
        done = 0
        for session_rows, view_rows in synth.generate(sessions, seed, unknown_share):
            yield _columns(session_rows, session_names), _columns(view_rows, product_names)
            done += len(session_rows)
            if progress:
                progress(done / sessions, f"{done:,} of {sessions:,} synthetic sessions written")

    return _write(directory, chunks())


# -- reading -----------------------------------------------------------------------------------


def is_local(location: str | Path) -> bool:
    """Whether a path is on this machine's file system (not hdfs://, s3a://, ...)."""
    text = str(location)
    return "://" not in text or text.startswith("file://")


def _local(location: str | Path) -> Path:
    text = str(location)
    return user_path(text.removeprefix("file://"))


def table_location(directory: str | Path, name: str) -> str:
    """Where a table of the folder is: `NAME.parquet`, else a folder `NAME/` of part files.
    Remote folders (hdfs://, s3a://) are taken as they are: Spark checks them."""
    if not is_local(directory):
        return f"{str(directory).rstrip('/')}/{name}"
    folder = _local(directory)
    for candidate in (folder / f"{name}.parquet", folder / name):
        if candidate.exists():
            return str(candidate)
    if not folder.is_dir():
        raise BadParquet(folder, "no such folder (python -m gender export-parquet DIR or demo --parquet DIR write one)")
    raise BadParquet(
        folder,
        f"no {name} table: expected {folder / (name + '.parquet')} or a folder {folder / name} of Parquet files "
        "(python -m gender export-parquet DIR writes them)",
    )


def part_files(location: Path) -> list[Path]:
    """The Parquet files of a table: the file itself, or a folder's files (Spark's markers such
    as _SUCCESS and hidden files skipped, as Spark skips them)."""
    if location.is_file():
        return [location]
    files = sorted(
        path
        for path in location.rglob("*")
        if path.is_file() and not any(part.startswith(("_", ".")) for part in path.relative_to(location).parts)
    )
    if not files:
        raise BadParquet(location, "holds no Parquet files")
    return files


def check_file(path: Path, name: str) -> int:
    """Check one Parquet file of table `name` from its footer (no data read): every column the
    table needs, each of the right type and without nulls. Returns its number of rows."""
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise BadParquet(path, f"not a Parquet file ({exc})") from None
    schema = file.schema_arrow
    for column, kind in REQUIRED[name].items():
        if column not in schema.names:
            raise BadParquet(
                path,
                f"no column {column!r}, which the {name} table needs (the columns are "
                f"{', '.join(map(repr, schema.names))})",
                column,
            )
        arrow_type = schema.field(column).type
        if not _is_kind(kind, arrow_type):
            raise BadParquet(path, f"column {column!r} is of type {arrow_type}, expected {kind}", column)
    metadata = file.metadata
    index = {metadata.schema.column(i).path: i for i in range(metadata.num_columns)}
    for column in REQUIRED[name]:
        for group in range(metadata.num_row_groups):
            statistics = metadata.row_group(group).column(index[column]).statistics
            if statistics is not None and statistics.has_null_count and statistics.null_count:
                raise BadParquet(path, f"column {column!r} has empty (null) values", column)
    return metadata.num_rows


def check_tables(directory: str | Path) -> dict[str, str]:
    """The locations of the folder's session and product tables, each file checked (local
    folders; a remote one is checked by Spark's schema when read, see `gender.spark`)."""
    locations = {name: table_location(directory, name) for name in TABLES}
    if is_local(directory):
        for name, location in locations.items():
            for path in part_files(Path(location)):
                check_file(path, name)
    return locations
