"""Scores computed ahead, off the dashboard: what `python -m gender score --spark` writes (a folder
of Parquet part files) loaded into the database's `session_score` table, and read back there for
one session (the Predict page) or many (the Find page's "predicted, precomputed").

The import follows the rules of the project's other imports (gender/ingest.py): every file's
columns and types are checked from its footer before anything is written, the rows are streamed
(a pyarrow dataset read a batch at a time, never the whole folder in memory) into one
transaction, and the first bad row stops it with the file, the row and the reason, nothing
written. A score replaces the row of the same session and model already there (an earlier import
of the same scores, or of an earlier run of the same model); other models' rows stay.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine, bindparam, delete, func, inspect, select

from gender import db, lake
from gender.answers import Contribution, contributions_json, counted
from gender.config import user_path
from gender.errors import BadParquet, ImportFailed, one_line
from gender.ingest import Invalid, Progress, _insert_many, _shown, check_session_id
from gender.serve import GROUPS

BATCH_ROWS = 5_000  # rows read, checked and written at a time
CONTRIBUTIONS = "top_contributions"  # the optional column `score --spark --explain K` adds
MODEL_ID_LENGTH = db.session_score.c.model_id.type.length


@dataclass(frozen=True)
class PrecomputedScore:
    """A session's score as `score --spark` computed it, and when."""

    session_id: str
    model_id: str
    ab_group: str
    p_male: float
    prediction: str
    contributions: tuple[Contribution, ...] | None  # None: scored without --explain
    scored_at: datetime | None  # when the scores folder was written (UTC)
    imported_at: datetime  # UTC


@dataclass
class ScoresReport:
    files: int = 0
    scores: int = 0
    with_contributions: int = 0
    replaced: int = 0  # rows of the same session and model that were there before
    models: dict[str, int] = field(default_factory=dict)  # model id -> scores
    unknown_sessions: int = 0  # scored sessions the session table does not hold (yet): kept all the same

    def __str__(self) -> str:
        models = ", ".join(f"{count:,} by {model_id}" for model_id, count in sorted(self.models.items()))
        text = (
            f"imported {counted(self.scores, 'precomputed score')} from {counted(self.files, 'file')} "
            f"({models or 'none'})"
        )
        if self.with_contributions:
            text += f"; {self.with_contributions:,} with their top contributions"
        if self.replaced:
            text += f"; {self.replaced:,} replaced earlier scores of the same session and model"
        if self.unknown_sessions:
            verb = "is" if self.unknown_sessions == 1 else "are"
            text += (
                f"; {self.unknown_sessions:,} of the scored sessions {verb} not in the database (their scores are kept)"
            )
        return text


# -- checking the files -------------------------------------------------------------------------


def _is_contributions(arrow_type: pa.DataType) -> bool:
    """A list of (label text, shap number) structs, as `score --spark --explain K` writes."""
    if not (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)):
        return False
    item = arrow_type.value_type
    if not pa.types.is_struct(item):
        return False
    fields = {item.field(i).name: item.field(i).type for i in range(item.num_fields)}
    return (
        "label" in fields
        and "shap" in fields
        and lake._is_kind("text", fields["label"])
        and lake._is_kind("number", fields["shap"])
    )


@dataclass(frozen=True)
class ScoresFile:
    path: Path
    rows: int
    contributions: bool  # has the top_contributions column


def check_file(path: Path) -> ScoresFile:
    """One part file checked from its footer: every column the scores need, of the right type,
    and top_contributions, when there, a list of (label, shap)."""
    with path.open("rb") as f:  # a Parquet file starts with PAR1; score's own CSV is the likely other file
        if f.read(4) != b"PAR1":
            raise BadParquet(
                path,
                "not a Parquet file: import-scores loads what `score --spark --out DIR` writes "
                "(the CSV of `score --unlabelled` or `--pakdd` is not loaded)",
            )
    rows = lake.check_file(path, "scores")
    schema = pq.read_schema(path)
    has_contributions = CONTRIBUTIONS in schema.names
    if has_contributions and not _is_contributions(schema.field(CONTRIBUTIONS).type):
        raise BadParquet(
            path,
            f"column {CONTRIBUTIONS!r} is of type {schema.field(CONTRIBUTIONS).type}, "
            "expected a list of (label text, shap number)",
            CONTRIBUTIONS,
        )
    return ScoresFile(path, rows, has_contributions)


def scores_files(location: str | Path) -> list[ScoresFile]:
    """The checked part files of a scores folder (or one file); Spark's _SUCCESS and hidden files skipped."""
    path = user_path(location)
    if not path.exists():
        raise BadParquet(path, "no such file or folder (python -m gender score --spark ... --out DIR writes one)")
    return [check_file(part) for part in lake.part_files(path)]


def written_at(location: str | Path) -> datetime:
    """When the scores were written (UTC): Spark's _SUCCESS marker, else the newest part file."""
    path = user_path(location)
    marker = path / "_SUCCESS"
    stamp = (marker if marker.is_file() else path).stat().st_mtime
    if path.is_dir() and not marker.is_file():
        stamp = max(part.stat().st_mtime for part in lake.part_files(path))
    return datetime.fromtimestamp(stamp, UTC).replace(tzinfo=None)


def _text(value: object, what: str, length: int) -> str:
    if not db.fits(value, length):
        raise Invalid(f"bad {what} {_shown(value)}: expected text of 1 to {length} characters")
    return value


def _one_of(value: object, what: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise Invalid(f"bad {what} {_shown(value)}: expected {' or '.join(allowed)}")
    return value


def _probability(value: object) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:  # NaN too
        raise Invalid(f"bad p_male {_shown(value)}: expected a number from 0 to 1")
    return float(value)


def _contributions_json(value: list | None) -> str | None:
    if value is None:
        return None
    contributions = []
    for item in value:
        label, shap = (item or {}).get("label"), (item or {}).get("shap")
        if not isinstance(label, str) or not isinstance(shap, (int, float)) or not math.isfinite(shap):
            raise Invalid(f"bad top contribution {_shown(item)}: expected a label and a finite shap")
        contributions.append(Contribution(label, float(shap)))
    return contributions_json(contributions)


def _rows(part: ScoresFile, columns: dict[str, list], start: int, stamps: dict) -> list[dict]:
    """A batch's rows checked and ready to insert; Invalid names the file and row."""
    rows = []
    for i, session_id in enumerate(columns["session_id"]):
        try:
            rows.append(
                {
                    "id": None,  # the database numbers the row (the insert names every column)
                    "session_id": check_session_id(session_id),
                    "model_id": _text(columns["model_id"][i], "model id", MODEL_ID_LENGTH),
                    "ab_group": _one_of(columns["ab_group"][i], "A/B group", GROUPS),
                    "p_male": _probability(columns["p_male"][i]),
                    "prediction": _one_of(columns["prediction"][i], "prediction", db.GENDERS),
                    CONTRIBUTIONS: _contributions_json(columns[CONTRIBUTIONS][i]) if CONTRIBUTIONS in columns else None,
                    **stamps,
                }
            )
        except Invalid as exc:
            raise ImportFailed(str(part.path), str(exc), start + i + 1, unit="row") from None
    return rows


def _batches(part: ScoresFile) -> Iterator[tuple[int, dict[str, list]]]:
    """(first row's index, columns as Python lists) a batch at a time, from a pyarrow dataset."""
    names = [*lake.REQUIRED["scores"], *([CONTRIBUTIONS] if part.contributions else [])]
    start = 0
    try:  # the footers were checked; a damaged page shows only now
        for batch in ds.dataset(part.path, format="parquet").to_batches(columns=names, batch_size=BATCH_ROWS):
            yield start, {name: batch.column(name).to_pylist() for name in names}
            start += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise ImportFailed(str(part.path), f"unreadable Parquet data after row {start}: {one_line(exc)}") from None


# -- writing ------------------------------------------------------------------------------------


def _write(conn: Connection, part: ScoresFile, start: int, rows: list[dict], first_new: int, report) -> None:
    """Replace the earlier rows of the batch's (session, model) pairs and insert the batch. A pair
    already written by this import (id above `first_new`) is a session scored twice: an error."""
    table = db.session_score
    by_model: dict[str, list[str]] = {}
    first_row: dict[tuple[str, str], int] = {}
    for position, row in enumerate(rows, start=start + 1):
        key = (row["model_id"], row["session_id"])
        if (earlier := first_row.setdefault(key, position)) != position:
            raise ImportFailed(
                str(part.path),
                f"session {_shown(key[1])} is scored twice by model {_shown(key[0])} (also on row {earlier})",
                position,
                "row",
            )
        by_model.setdefault(row["model_id"], []).append(row["session_id"])
    for model_id, ids in by_model.items():
        pair = (table.c.model_id == model_id, table.c.session_id.in_(bindparam("ids", expanding=True)))
        again = conn.execute(select(table.c.session_id).where(*pair, table.c.id > first_new).limit(1), {"ids": ids})
        if (twice := again.scalar()) is not None:
            raise ImportFailed(
                str(part.path),
                f"session {_shown(twice)} is scored twice by model {_shown(model_id)} (also in an earlier row or file)",
            )
        report.replaced += conn.execute(delete(table).where(*pair, table.c.id <= first_new), {"ids": ids}).rowcount
        report.models[model_id] = report.models.get(model_id, 0) + len(ids)
    _insert_many(conn, table, rows)
    report.scores += len(rows)
    report.with_contributions += sum(row[CONTRIBUTIONS] is not None for row in rows)


def import_scores(engine: Engine, location: str | Path, progress: Progress | None = None) -> ScoresReport:
    """Load a scores folder of `score --spark` (or one of its files) into `session_score`, in one
    transaction: all of it, or on any error nothing."""
    parts = scores_files(location)  # every footer checked before anything is written
    total = max(sum(part.rows for part in parts), 1)
    stamps = {"scored_at": written_at(location), "imported_at": datetime.now(UTC).replace(tzinfo=None)}
    report = ScoresReport(files=len(parts))
    table = db.session_score
    with db.reporting(engine):
        table.create(engine, checkfirst=True)
        with engine.begin() as conn:
            first_new = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
            for part in parts:
                for start, columns in _batches(part):
                    _write(conn, part, start, _rows(part, columns, start, stamps), first_new, report)
                    if progress:
                        progress(report.scores / total, f"{report.scores:,} of {total:,} scores imported")
            report.unknown_sessions = _unknown_sessions(conn, first_new)
    return report


def _unknown_sessions(conn: Connection, first_new: int) -> int:
    """How many sessions this import scored (rows above `first_new`) the session table does not
    hold: one query, each row's session looked up by the table's key."""
    table = db.session_score
    scored = select(func.count(table.c.session_id.distinct())).where(table.c.id > first_new)
    if inspect(conn).has_table(db.session.name):
        held = select(db.session.c.session_id).where(db.session.c.session_id == table.c.session_id)
        scored = scored.where(~held.exists())
    return conn.execute(scored).scalar_one()


# -- reading ------------------------------------------------------------------------------------


def scores_of(engine: Engine, session_id: object) -> list[PrecomputedScore]:
    """A session's precomputed scores, newest first (one a model); [] when there are none or no
    scores were ever imported. The id is taken as `db.as_typed` takes it."""
    if not isinstance(session_id, str):
        return []
    table = db.session_score
    with db.reporting(engine), engine.connect() as conn:
        if not inspect(conn).has_table(table.name):
            return []
        for candidate in db.as_typed(session_id):
            if db.fits(candidate, db.SESSION_ID_LENGTH):
                query = select(table).where(table.c.session_id == candidate).order_by(table.c.id.desc())
                rows = conn.execute(query).mappings().all()
                if rows:
                    return [_score(row) for row in rows]
    return []


def _score(row) -> PrecomputedScore:
    stored = row[CONTRIBUTIONS]
    contributions = (
        None if stored is None else tuple(Contribution(item["label"], item["shap"]) for item in json.loads(stored))
    )
    return PrecomputedScore(
        row["session_id"],
        row["model_id"],
        row["ab_group"],
        row["p_male"],
        row["prediction"],
        contributions,
        row["scored_at"],
        row["imported_at"],
    )


def serving_now(score: PrecomputedScore, models, group: str) -> str:
    """Whether the model of a precomputed score is the one serving the session now, in words:
    `models` are the served ones, `group` the session's A/B group now."""
    now = models.of(group).model_id
    if score.model_id == now:
        return f"the model serving this session now ({group} group)"
    served = {model.model_id for model in (models.treatment, models.control) if model is not None}
    if score.model_id in served:
        return f"a model serving now, but not this session: its {group} group is answered by {now}"
    return f"not a model serving now (retrained since?): this session is answered by {now} now"
