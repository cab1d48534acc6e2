"""Scoring on Spark: every session of a folder of Parquet tables (`gender.lake`), on a cluster or
in local mode, with the project's own features and models.

The driver checks the tables' files and loads the models through gender's own loader (each
file's sha256 and feature version checked) before any executor runs, so a corrupt or foreign
model file, or a malformed table, stops the command with one line. Spark then brings each
session's rows together: the session rows and the product rows as one table, repartitioned by
session id and sorted by it within each partition (`session_rows`: one shuffle of flat rows; an
earlier version grouped each session's views into arrays and joined them, which cost the JVM
half as much again). `mapInPandas` streams each partition's rows to the executors' Python workers,
which take them a whole session at a time (`whole_sessions`), build the session frame with
`features.session_frame` and score it as the single-machine service does (`score.score_served`,
as the single-machine `score` too): the A/B group from `serve.group_of` with the configured salt
and treatment share, the group's model from `Models.of(group)`. Each worker loads the models once
(a module-level cache) from the copy of the model folder Spark ships to it
(`SparkContext.addArchive`) and checks that they are the very models the driver loaded. The
output is Parquet: session_id, p_male, prediction, model_id, ab_group, and with `explain` K
top_contributions (`score.top_contributions`, from the model's explainer as the Predict page's
explanation).

pyspark is an optional extra (`requirements-spark.txt`, `make spark`, Java 17): nothing else in
the package imports this module, so the dashboard never needs it.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gender import db, lake, serve
from gender.config import Settings, user_path
from gender.errors import BadParquet, GenderError, ModelUnavailable
from gender.score import EXPLAIN_COLUMN, score_served

# score.OUTPUT_COLUMNS as Spark types them; with --explain K, score.EXPLAIN_COLUMN too.
OUTPUT_SCHEMA = "session_id string, p_male double, prediction string, model_id string, ab_group string"
EXPLAIN_SCHEMA = f"{EXPLAIN_COLUMN} array<struct<label:string,shap:double>>"
LOCAL_MASTER = "local[*]"  # without --master and outside spark-submit
# The master URLs Spark accepts (SparkContext.createTaskScheduler), checked before Java starts.
MASTER_URL = re.compile(r"local(\[(\*|\d+)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|(spark|k8s|mesos)://\S+|yarn")
# Rows an Arrow batch carries to a Python worker (Spark's default is 10,000): scoring has a cost
# per batch (the pipelines' calls), so fewer, larger batches; 100,000 rows are ~30,000 sessions.
ARROW_BATCH_ROWS = 100_000

# -- the models: the one place this module meets the model API -----------------------------------


def load_models(model_dir: Path):
    """The A/B pair of served models in `model_dir`, through gender's own loader (which refuses a
    file whose sha256 does not match its card, or a card of another feature version)."""
    from gender import artifact

    return artifact.load(Path(model_dir))


def model_ids(models) -> dict[str, str]:
    """slot -> model id of the loaded models: what the driver and every executor must agree on."""
    return {slot: model.model_id for slot in serve.GROUPS if (model := getattr(models, slot)) is not None}


# -- on the executors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What every task needs, pickled into it: small (the models travel by `addArchive`)."""

    models_name: str  # the name of the models' archive among the files Spark ships
    model_ids: tuple[tuple[str, str], ...]  # (slot, model id) the driver loaded
    salt: str
    treatment_share: float
    explain: int = 0  # top contributions a session (--explain K); 0: none


_models_cache: dict[Job, object] = {}  # per Python worker: the models are loaded once, then reused


def _worker_models(job: Job):
    models = _models_cache.get(job)
    if models is None:
        from pyspark import SparkFiles

        models = load_models(Path(SparkFiles.get(job.models_name)))
        if tuple(sorted(model_ids(models).items())) != job.model_ids:
            raise ModelUnavailable(f"the executor loaded {model_ids(models)}, not the driver's {dict(job.model_ids)}")
        _models_cache.clear()  # one job's models at a time
        _models_cache[job] = models
    return models


def whole_sessions(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Batches of rows sorted by session_id (`session_rows`) as batches of whole sessions: Arrow
    cuts batches at a row count, so the rows of a batch's last session wait for the next batch,
    which may hold more of them."""
    held = None
    for batch in batches:
        if not len(batch):
            continue
        if held is not None:
            batch = pd.concat([held, batch], ignore_index=True)
        ids = batch["session_id"].to_numpy(dtype=object)
        others = np.flatnonzero(ids != ids[-1])
        cut = int(others[-1]) + 1 if len(others) else 0  # where the last session's rows start
        if cut:
            yield batch.iloc[:cut]
        held = batch.iloc[cut:]
    if held is not None and len(held):
        yield held


def batch_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Whole sessions' rows (`session_rows`: a session row, then its product rows) as a session
    frame, through the project's own `session_frame`."""
    from gender.features import session_frame

    views = rows["is_view"].to_numpy(dtype=bool)
    return session_frame(
        rows.loc[~views, ["session_id", "start_time", "end_time"]],
        rows.loc[views, ["session_id", "sequence_order", *db.CATEGORY_NAMES]],
    )


def score_batches(job: Job, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """mapInPandas' function: the sessions of a partition of `session_rows`, scored a batch at
    a time."""
    models = _worker_models(job)
    for rows in whole_sessions(batches):
        scores = score_served(models, batch_frame(rows), job.salt, job.treatment_share, job.explain)
        # pandas 3 keeps text in Arrow-backed columns, which pyspark's conversion of the batch
        # back to Arrow does not take ("Cannot convert ChunkedArray to Array"): plain objects do.
        yield scores.astype({name: object for name in scores.columns if name != "p_male"})


# -- on the driver --------------------------------------------------------------------------------


def _pyspark():
    # pyspark 4.3 warns on import and on mapInPandas that it "does not yet fully support pandas >=
    # 3.0.0". The path used here is tested against the single-machine scores (tests/test_spark.py),
    # and its one incompatibility is handled in score_batches: the warning would only be noise.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise GenderError(
            "scoring on Spark needs pyspark and Java 17: `make spark` installs them "
            "(or pip install -r requirements-spark.txt and apt-get install openjdk-17-jre-headless)"
        ) from None


def session(master: str | None = None):
    """The active SparkSession, else a new one: `master` if given; under spark-submit, what it
    says; else local mode on every core. Returns (session, whether this call created it)."""
    _pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    builder = SparkSession.builder.appName("gender-lens score")
    if not master and "PYSPARK_GATEWAY_PORT" not in os.environ:  # not launched by spark-submit: local mode
        master = LOCAL_MASTER
    if master and not MASTER_URL.fullmatch(master):  # else Java's own error, in pages of its stack trace
        raise GenderError(
            f"--master {master!r} is not a Spark master URL: expected local[N], local[*], spark://HOST:PORT, "
            "yarn or k8s://https://HOST:PORT"
        )
    if master:
        builder = builder.master(master)
    if master and master.startswith("local"):
        # Local workers run this Python, with gender's pinned packages. On a cluster the nodes'
        # Python is the deployment's choice (PYSPARK_PYTHON or spark.pyspark.python; README).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # A command of its own on this machine: the web UI costs seconds of CPU to start, unseen.
        builder = builder.config("spark.ui.enabled", "false")
    # Times without a zone (as the lake holds them) are read as they are; times with one as UTC.
    builder = builder.config("spark.sql.session.timeZone", "UTC").config("spark.ui.showConsoleProgress", "false")
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # no Java, a wrong master URL, ...: pyspark raises many kinds
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        java = (
            ""
            if shutil.which("java") or os.environ.get("JAVA_HOME")
            else "; it needs Java 17: `make spark` installs it"
        )
        raise GenderError(f"Spark did not start ({reason}){java}") from None
    spark.sparkContext.setLogLevel("ERROR")
    batch_rows = "spark.sql.execution.arrow.maxRecordsPerBatch"
    if not spark.sparkContext.getConf().contains(batch_rows):  # spark-submit --conf has the last word
        spark.conf.set(batch_rows, str(ARROW_BATCH_ROWS))
    return spark, True


_shipped: dict[str, str] = {}  # Spark application id -> the zip of the package its executors have


def ship_package(spark) -> None:
    """The gender package as a zip on the executors' Python path (once per SparkContext)."""
    context = spark.sparkContext
    package = Path(__file__).resolve().parent
    if context.applicationId in _shipped or not package.is_dir():  # not a folder: imported from a --py-files zip
        return
    target = Path(tempfile.mkdtemp(prefix="gender-package-")) / "gender.zip"
    atexit.register(shutil.rmtree, target.parent, True)  # needed while the SparkContext lives
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(package.glob("*.py")):
            archive.write(path, f"gender/{path.name}")
    context.addPyFile(str(target))
    _shipped[context.applicationId] = str(target)


def stage_models(model_dir: Path) -> tuple[Path, Path]:
    """A private copy of the models to load on the driver, and the same files as a zip of a name of
    its own to ship to the executors: a retrain while the job runs cannot mix two models. Only the
    card as read and the files it names go (no run history, no population, no replaced model's
    file). Returns (the copy, the zip); both are under one temporary folder. (A zip, as Spark ships
    a local folder only in local mode, and files by their bare names.)"""
    from gender import artifact

    model_dir = Path(model_dir)
    card_file = model_dir / artifact.METADATA_FILE
    try:
        card_text = card_file.read_bytes()
    except OSError:
        raise ModelUnavailable(f"no trained model in {model_dir}: run `python -m gender train`") from None
    workspace = Path(tempfile.mkdtemp(prefix="gender-models-"))
    staged, archive = workspace / "models", workspace / f"{workspace.name}.zip"
    staged.mkdir()
    (staged / card_file.name).write_bytes(card_text)
    try:
        card = artifact.load_card(staged)  # the card as read, checked as a load checks it
    except ModelUnavailable as exc:
        shutil.rmtree(workspace, ignore_errors=True)
        raise ModelUnavailable(str(exc).replace(str(staged), str(model_dir))) from None
    names = [Path(entry.file).name for entry in card.slots.values() if entry.file]
    names += [artifact.TRAINED_ON_FILE.format(slot=slot) for slot in card.slots]
    for name in names:  # one a save has removed meanwhile is missing: the load says so
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, staged / name)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as packed:
        for path in sorted(staged.iterdir()):
            packed.write(path, path.name)
    return staged, archive


def check_columns(frame, location: str, name: str) -> None:
    """The table as Spark reads it has every column the table needs, of the right kind (the
    check for folders not on this machine, whose files the driver cannot open)."""
    from pyspark.sql import types

    kinds = {
        "text": (types.StringType,),
        "time": (types.TimestampType, types.TimestampNTZType),
        "whole number": (types.ByteType, types.ShortType, types.IntegerType, types.LongType),
    }
    fields = {f.name: f.dataType for f in frame.schema.fields}
    for column, kind in lake.REQUIRED[name].items():
        if column not in fields:
            raise BadParquet(location, f"no column {column!r}, which the {name} table needs", column)
        if not isinstance(fields[column], kinds[kind]):
            raise BadParquet(
                location, f"column {column!r} is of type {fields[column].simpleString()}, expected {kind}", column
            )


def session_rows(spark, locations: dict[str, str]):
    """The session table's rows and the product table's in one table, each session's rows
    together: repartitioned by session_id and sorted by it within each partition, so that an
    executor reads its sessions one after the other (`whole_sessions`). Columns: session_id,
    is_view, start_time, end_time (null on a view), sequence_order, category_a .. category_d
    (null on a session row). One shuffle of flat rows: no per-session arrays to assemble and
    no join (`session_frame` orders each session's views as on one machine)."""
    from pyspark.sql import functions as F

    frames = {name: spark.read.parquet(location) for name, location in locations.items()}
    for name, frame in frames.items():
        check_columns(frame, locations[name], name)
    session, product = frames["session"], frames["product"]

    def nothing(frame, column):
        return F.lit(None).cast(frame.schema[column].dataType).alias(column)

    sessions = session.select(
        "session_id",
        F.lit(False).alias("is_view"),
        "start_time",
        "end_time",
        nothing(product, "sequence_order"),
        *(nothing(product, name) for name in db.CATEGORY_NAMES),
    )
    views = product.select(
        "session_id",
        F.lit(True).alias("is_view"),
        nothing(session, "start_time"),
        nothing(session, "end_time"),
        "sequence_order",
        *db.CATEGORY_NAMES,
    )
    return sessions.unionByName(views).repartition("session_id").sortWithinPartitions("session_id")


@dataclass
class SparkReport:
    out: str
    sessions: int
    models: dict[str, str]  # slot -> model id
    treatment_share: float

    def __str__(self) -> str:
        used = ", ".join(f"{model_id} ({slot})" for slot, model_id in self.models.items())
        split = f", {self.treatment_share:.0%} of sessions in treatment" if "control" in self.models else ""
        return f"scored {self.sessions:,} sessions on Spark with {used}{split} into {self.out}"


PROGRESS_SECONDS = 5.0  # how often a long job says how far it is


@contextlib.contextmanager
def _task_progress(spark, say: Callable[[str], None]) -> Iterator[None]:
    """Say every PROGRESS_SECONDS how many tasks of the running stages are done (a million
    sessions take minutes on two cores, and Spark's own progress bar is off)."""
    tracker, stop = spark.sparkContext.statusTracker(), threading.Event()

    def watch() -> None:
        said = None
        while not stop.wait(PROGRESS_SECONDS):
            stages = [info for info in map(tracker.getStageInfo, tracker.getActiveStageIds()) if info]
            done, total = sum(s.numCompletedTasks for s in stages), sum(s.numTasks for s in stages)
            text = f"scoring: {done:,} of {total:,} tasks of the running stages done" if total else None
            if text and text != said:
                say(text)
                said = text

    watcher = threading.Thread(target=watch, name="spark-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


@contextlib.contextmanager
def cancelled_by_ctrl_c(spark) -> Iterator[None]:
    """Ctrl+C cancels the running jobs and ends the command as interrupted (a second one stops the
    wait at once). pyspark's own handler calls the JVM from inside the signal handler, over the
    connection the interrupted call is still reading: py4j logged two tracebacks, and the session
    then stopped under running tasks printed pages of Java's."""
    if threading.current_thread() is not threading.main_thread():  # only it can take signals
        yield
        return
    context, interrupted = spark.sparkContext, threading.Event()

    def cancel() -> None:
        context.setLogLevel("OFF")  # what Spark says of the tasks it cancels is noise now
        context.cancelAllJobs()

    canceller = threading.Thread(target=cancel, name="spark-cancel", daemon=True)

    def on_interrupt(_signal, _frame) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        canceller.start()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    except Exception:
        if interrupted.is_set():  # the job failed because it was cancelled
            canceller.join(timeout=30)
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    # Interrupted just as the jobs ended: nothing was cancelled, so the command finishes its work.


@contextlib.contextmanager
def spark_errors() -> Iterator[None]:
    """A GenderError raised in an executor, or Spark's own word on a path, a schema or a file it
    could not read (a folder that is not there, an output that is, a damaged Parquet page), as one
    line; anything else goes on as the bug it is. Score and summarize run their jobs in it."""
    from pyspark.errors import AnalysisException

    try:
        yield
    except GenderError:
        raise
    except AnalysisException as exc:
        raise GenderError(f"Spark: {str(exc).strip().splitlines()[0]}") from None
    except Exception as exc:
        text = str(exc)
        for name in ("BadParquet", "ModelUnavailable", "GenderError"):
            marker = f"gender.errors.{name}: "
            if marker in text:
                raise GenderError(text.split(marker, 1)[1].strip().splitlines()[0]) from None
        # The footers were checked before: a damaged data page shows only when a task reads it.
        unread = re.search(r"\[FAILED_READ_FILE[^\]]*\] Encountered error while reading file (\S+?)\.?\s", text)
        if unread:
            cause = re.search(r"Caused by: [\w.$]+: (.*)", text)
            why = f": {cause.group(1).strip()}" if cause else ""
            raise GenderError(f"Spark could not read {unread.group(1)}{why}") from None
        raise


def score_parquet(
    parquet_dir: str | Path,
    out: str | Path,
    settings: Settings,
    master: str | None = None,
    spark=None,
    say: Callable[[str], None] | None = None,
    explain: int = 0,
) -> SparkReport:
    """Score every session of the folder's tables on Spark into Parquet at `out`
    (session_id, p_male, prediction, model_id, ab_group). Nothing runs on an executor before the
    tables' files and the models are checked on the driver. `say` hears what is being done."""
    say = say or (lambda _text: None)
    locations = lake.check_tables(parquet_dir)
    out_text, made_out = str(out), None  # made_out: a local folder this run creates
    if lake.is_local(out_text):
        out_path = user_path(out_text.removeprefix("file://")).resolve()
        if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
            raise GenderError(f"{out_path} already exists: give a new folder for the scores (or remove it)")
        out_text, made_out = str(out_path), None if out_path.exists() else out_path
    staged, archive = stage_models(settings.model_dir)
    try:
        try:
            models = load_models(staged)
        except ModelUnavailable as exc:  # name the folder the user gave, not the private copy
            raise ModelUnavailable(str(exc).replace(str(staged), str(settings.model_dir))) from None
        ids = model_ids(models)
        say(f"tables in {parquet_dir} and models {', '.join(ids.values())} checked; scoring on Spark")
        job = Job(archive.name, tuple(sorted(ids.items())), settings.ab_salt, settings.treatment_share, explain)
        schema = f"{OUTPUT_SCHEMA}, {EXPLAIN_SCHEMA}" if explain else OUTPUT_SCHEMA
        if spark is None:
            spark, created = session(master)
        else:
            created = False
        try:
            ship_package(spark)
            spark.sparkContext.addArchive(str(archive))  # unpacked on every node, as SparkFiles.get(its name)
            with spark_errors(), _task_progress(spark, say):
                scores = session_rows(spark, locations).mapInPandas(functools.partial(score_batches, job), schema)
                try:
                    with cancelled_by_ctrl_c(spark):
                        scores.write.mode("errorifexists").parquet(out_text)
                except BaseException:  # a failed or cancelled job leaves its folder behind, empty
                    if made_out is not None:
                        shutil.rmtree(made_out, ignore_errors=True)
                    raise
                scored = spark.read.parquet(out_text).count()  # from the files' footers
        finally:
            if created:
                spark.stop()
    finally:
        shutil.rmtree(staged.parent, ignore_errors=True)
    return SparkReport(out_text, scored, ids, settings.treatment_share)
