"""What the benchmarks share: the cached databases, timing, printed tables and the machine.

The databases are built once and cached: SQLite files under data/bench/ (gitignored, as all of
data/), MariaDB databases named gender_bench_* on the server given by --mysql. A database is
reused only when it holds exactly the sessions it should (imports are one transaction, so a
killed build leaves nothing half-written), otherwise it is rebuilt.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:  # run as `.venv/bin/python benchmarks/NAME.py` from anywhere
    sys.path.insert(0, str(PROJECT))

from sqlalchemy import text  # noqa: E402

from gender import artifact, db, ingest, synth  # noqa: E402
from gender.config import parse_url, redact  # noqa: E402

BENCH_DATA = PROJECT / "data" / "bench"
RESULTS = PROJECT / "benchmarks" / "results"
PAKDD = PROJECT.parent / "shared" / "data" / "pakdd15"
MYSQL_SERVER = "mysql+pymysql://root@127.0.0.1:3306"
REAL_SESSIONS = 27_000  # trainingData.csv (12,000 labelled) + testData.csv (15,000 of unknown gender)
SYNTH_SEED = 0


# -- options ------------------------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        "--mysql",
        nargs="?",
        const=MYSQL_SERVER,
        default=None,
        metavar="SERVER_URL",
        help=f"use MariaDB/MySQL instead of SQLite files (server URL without database; bare flag: {MYSQL_SERVER})",
    )
    return parser


def sizes(text_value: str) -> list[int]:
    """'12k,100k,1M' -> [12000, 100000, 1000000]."""
    out = []
    for part in text_value.split(","):
        part = part.strip().lower()
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
        out.append(int(float(part.rstrip("km")) * scale))
    return out


def size_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return f"{n:,}"


# -- databases ----------------------------------------------------------------------------------


def database_url(name: str, mysql: str | None):
    """The URL of the cached benchmark database `name`, creating an empty MariaDB database if needed."""
    if not mysql:
        BENCH_DATA.mkdir(parents=True, exist_ok=True)
        return parse_url(f"sqlite:///{BENCH_DATA / (name + '.db')}")
    server = parse_url(mysql)
    database = f"gender_bench_{name}"
    engine = db.connect(server.set(database=""))
    with engine.begin() as conn:
        conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4"))
    engine.dispose()
    return server.set(database=database)


def _drop(url) -> None:
    if url.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(url.database + suffix).unlink(missing_ok=True)
    else:
        engine = db.connect(url.set(database=""))
        with engine.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{url.database}`"))
            conn.execute(text(f"CREATE DATABASE `{url.database}` CHARACTER SET utf8mb4"))
        engine.dispose()


def _sessions_in(engine) -> int:
    db.create_schema(engine)
    return db.table_counts(engine)["sessions"]


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def real_engine(mysql: str | None = None):
    """The real PAKDD'15 logs (both files: 27,000 sessions, 12,000 labelled), imported once."""
    if not (PAKDD / "trainingData.csv").is_file():
        sys.exit(f"the real logs are not at {PAKDD}")
    url = database_url("pakdd", mysql)
    engine = db.connect(url)
    if _sessions_in(engine) != REAL_SESSIONS:
        engine.dispose()
        _drop(url)
        engine = db.connect(url)
        log(f"importing the PAKDD'15 logs into {redact(url)}")
        ingest.import_pakdd(engine, PAKDD / "trainingData.csv", PAKDD / "trainingLabels.csv")
        ingest.import_pakdd(engine, PAKDD / "testData.csv")
    return engine


def synthetic_url(sessions: int, mysql: str | None = None):
    return database_url(f"synth_{sessions}", mysql)


def synthetic_engine(sessions: int, mysql: str | None = None):
    """A synthetic database of `sessions` sessions (seed 0), built once: minutes at a million."""
    url = synthetic_url(sessions, mysql)
    engine = db.connect(url)
    if _sessions_in(engine) != sessions:
        engine.dispose()
        _drop(url)
        engine = db.connect(url)
        log(f"writing {sessions:,} synthetic sessions into {redact(url)} (cached for later runs)")
        started = time.perf_counter()
        synth.create_demo(engine, sessions=sessions, seed=SYNTH_SEED, progress=_progress())
        log(f"written in {time.perf_counter() - started:.0f} s")
    return engine


def _progress():
    last = [0.0]

    def report(fraction: float, message: str) -> None:
        now = time.monotonic()
        if fraction >= 1 or now - last[0] >= 15:
            last[0] = now
            log(message)

    return report


# -- timing -------------------------------------------------------------------------------------


def timed(fn: Callable, *args, **kwargs):
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def run(name: str, command: list[str]) -> dict:
    """Run one command as a child process: its wall time, CPU time and peak RSS (os.wait4's usage
    of that child alone), its stdout and stderr (through files: a pipe could fill and stall it)."""
    log(f"{name}: {' '.join(command[1:])}")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode != 0:
        sys.exit(f"{name} failed (exit {child.returncode}):\n{stderr[-3000:]}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "load": (load_before, os.getloadavg()[0]),
        "stdout": stdout,
        "stderr": stderr,
    }


def gender(*arguments: str) -> list[str]:
    """A `python -m gender` command line, as a user types it (with this project's Python)."""
    return [sys.executable, "-m", "gender", *arguments]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation, as numpy's default."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1e3:.3f} ms"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def ratio(baseline: float, ours: float) -> str:
    return f"{baseline / ours:,.0f}×" if baseline / ours >= 10 else f"{baseline / ours:.1f}×"


# -- output -------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, columns padded so it also reads as plain text."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row):
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |"

    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def header(title: str, engine=None) -> None:
    """The benchmark's title, the machine, the load and the database, before any figure."""
    print(f"# {title}\n")
    print(
        f"machine: {os.cpu_count()} cores (nproc), {cpu_model()}, {memory_gb():.1f} GB RAM; "
        f"Python {platform.python_version()}; load average at start {load_average()}"
    )
    if engine is not None:
        version = ""
        if engine.dialect.name != "sqlite":
            with engine.connect() as conn:
                version = " " + conn.execute(text("SELECT VERSION()")).scalar_one()
        print(f"database: {redact(engine.url)} ({engine.dialect.name}{version})")
    print(flush=True)


def footer() -> None:
    print(f"\nload average at end {load_average()} (above ~0.5 other work shared the 2 cores)", flush=True)


# -- models -------------------------------------------------------------------------------------


def model_dir_for(name: str) -> Path:
    return BENCH_DATA / f"models-{name}"


def load_or_fit_models(engine, model_dir: Path | None):
    """(treatment, control, where from): the models in `model_dir` when it holds a trained pair,
    otherwise the chosen family (boosted) and the original's forest fitted directly on `engine`."""
    from gender import train

    if model_dir is not None and (model_dir / "metadata.json").is_file():
        shown = model_dir.relative_to(PROJECT) if model_dir.is_relative_to(PROJECT) else model_dir
        treatment, control = artifact.load(model_dir).treatment, artifact.load(model_dir).control
        return treatment, control, f"trained by train() in {shown}"
    from tests import models

    log("no trained models: fitting the boosted pipeline and the original's forest directly (about a minute)")
    frame, y = train.labelled_data(engine)
    treatment = models.fitted_model(train.boosted_pipeline(), frame, y, "treatment", "boosted")
    control = models.fitted_model(train.original_pipeline(), frame, y, "control", "original")
    return treatment, control, "fitted directly on the labelled sessions (run training.py first for train()'s models)"
