"""Scoring on Spark against the single-machine scorer, as a user runs them.

    .venv/bin/python benchmarks/spark.py [--sizes 1M,10M] [--explain-sizes 1M] [--explain-all-treatment]
                                         [--model-dir DIR] [--keep]

For each size, synthetic Parquet logs (`python -m gender demo --parquet DIR --sessions N`, seed 0,
cached under data/bench/) scored by `python -m gender score --spark --master local[2]`, without
and (at --explain-sizes) with `--explain 5`; on the first size also with `GENDER_TREATMENT_SHARE=1` (every session by
the treatment model, the work `score --unlabelled` does) and the single-machine streamed
`python -m gender score --unlabelled` on the same sessions in a database (`demo --db`, same seed:
the same rows; its sessions of unknown gender are scored). With --explain-all-treatment the
--explain runs too score every session by the treatment model: the original's forest, the A/B
control, is what makes SHAP dear (about 1 ms a session against 0.13 for a logistic treatment).
Without --model-dir, a model is trained once on a small demo database (data/bench/models-spark).

Each command is its own process, measured from outside: wall time, and from its process tree
sampled every SAMPLE_SECONDS (Spark's JVM and its Python workers are children of the command) the
CPU time of all of it and the peak RSS of the driver (the command's Python), of the JVM and of
the Python workers together. CPU time is the measure of cost on a shared machine: sessions per CPU
second is the throughput per core, and the ratio Spark / single machine is the target's (≥ 0.7).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import common
from common import gender, table, uptime

SAMPLE_SECONDS = 0.1
MODEL_SESSIONS = 20_000  # the demo database the benchmark's model is trained on
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class Usage:
    """What one command cost, from its process tree."""

    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # part -> CPU seconds (driver, jvm, workers)
    peak_mb: dict[str, float] = field(default_factory=dict)  # part -> peak RSS, the part's processes summed
    stderr: str = ""

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu.values())


def _processes() -> dict[int, tuple[int, str, float, float]]:
    """pid -> (parent pid, name, CPU seconds, RSS MB) of every process now."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        head, rest = text.rsplit(")", 1)
        fields = rest.split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS
        found[int(entry)] = (int(fields[1]), head.split("(", 1)[1], cpu, int(fields[21]) * PAGE_MB)
    return found


def _part(pid: int, root: int, name: str) -> str:
    if pid == root:
        return "driver"
    return "jvm" if name == "java" else "workers"  # the JVM's children: Spark's Python daemon and workers


def run(name: str, command: list[str], env: dict[str, str] | None = None) -> Usage:
    """Run a command and sample its process tree until it ends (the CPU of a process is its last
    sample: a process that ends between two samples loses at most SAMPLE_SECONDS)."""
    common.log(f"{name}: {' '.join(command[1:])}")
    usage, cpu_of, part_of = Usage(), {}, {}
    err_path = common.BENCH_DATA / f".{os.getpid()}.stderr"
    started = time.perf_counter()
    with err_path.open("w") as err:
        child = subprocess.Popen(
            command,
            cwd=common.PROJECT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=os.environ | (env or {}),
        )
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                processes = _processes()
                tree, grown = {child.pid}, True
                while grown:
                    grown = False
                    for pid, (parent, *_) in processes.items():
                        if parent in tree and pid not in tree:
                            tree.add(pid)
                            grown = True
                now: dict[str, float] = {}
                for pid in tree & processes.keys():
                    _, process_name, cpu, rss = processes[pid]
                    part_of[pid] = _part(pid, child.pid, process_name)
                    cpu_of[pid] = max(cpu_of.get(pid, 0.0), cpu)
                    now[part_of[pid]] = now.get(part_of[pid], 0.0) + rss
                for part, rss in now.items():
                    usage.peak_mb[part] = max(usage.peak_mb.get(part, 0.0), rss)
                time.sleep(SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample)
        sampler.start()
        status = child.wait()
        usage.wall = time.perf_counter() - started
        done.set()
        sampler.join()
    usage.stderr = err_path.read_text()
    err_path.unlink()
    if status != 0:
        sys.exit(f"{name} failed (exit {status}):\n{usage.stderr[-3000:]}")
    for pid, cpu in cpu_of.items():
        usage.cpu[part_of[pid]] = usage.cpu.get(part_of[pid], 0.0) + cpu
    return usage


def lake_for(sessions: int) -> Path:
    """Synthetic Parquet logs of `sessions` sessions (seed 0), written once and reused."""
    import pyarrow.parquet as pq

    directory = common.BENCH_DATA / f"spark-lake-{common.size_label(sessions)}"
    try:
        if pq.ParquetFile(directory / "session.parquet").metadata.num_rows == sessions:
            return directory
    except OSError:
        pass
    shutil.rmtree(directory, ignore_errors=True)
    run(f"demo --parquet {sessions:,}", gender("demo", "--parquet", str(directory), "--sessions", str(sessions)))
    return directory


def model_dir_for_benchmark() -> Path:
    """A model trained on a small demo database, once."""
    model_dir = common.model_dir_for("spark")
    if not (model_dir / "metadata.json").is_file():
        url = common.database_url(f"spark_models_{MODEL_SESSIONS}", None)
        common._drop(url)
        url_text = url.render_as_string(hide_password=False)
        run("demo (model)", gender("demo", "--sessions", str(MODEL_SESSIONS), "--db", url_text))
        run("train (model)", gender("train", "--db", url_text, "--model-dir", str(model_dir)))
    return model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1M,10M", help="synthetic sessions of each run (e.g. 100k,300k)")
    parser.add_argument("--model-dir", type=Path, help="trained models to score with (default: trained here)")
    parser.add_argument("--master", default="local[2]", help="Spark master of the runs")
    parser.add_argument("--keep", action="store_true", help="keep the scores written (data/bench/spark-out-*)")
    parser.add_argument(
        "--explain-sizes",
        default="1M",
        help="the sizes also run with --explain 5 (SHAP costs many times the scoring: 10M take most of an hour)",
    )
    parser.add_argument(
        "--explain-all-treatment",
        action="store_true",
        help="run --explain 5 with every session by the treatment model (no forest control, whose SHAP is the cost)",
    )
    args = parser.parse_args()
    sizes = common.sizes(args.sizes)
    explained = set(common.sizes(args.explain_sizes)) if args.explain_sizes else set()

    common.header(f"Scoring on Spark ({args.master}) and on one machine: {', '.join(map(common.size_label, sizes))}")
    print(f"uptime at start: {uptime()}\n", flush=True)
    model_dir = args.model_dir or model_dir_for_benchmark()
    rows, per_core = [], {}

    def row(what: str, sessions: int, usage: Usage) -> None:
        rate = sessions / usage.cpu_total
        per_core[what] = rate
        rows.append(
            [
                what,
                f"{sessions:,}",
                common.ms(usage.wall),
                f"{usage.cpu_total:.1f} s",
                " / ".join(f"{usage.cpu.get(part, 0):.0f}" for part in ("driver", "jvm", "workers")),
                " / ".join(f"{usage.peak_mb.get(part, 0):.0f}" for part in ("driver", "jvm", "workers")),
                f"{rate:,.0f}",
            ]
        )
        print(f"  {what}: {common.ms(usage.wall)} wall, {usage.cpu_total:.1f} s CPU", file=sys.stderr, flush=True)

    for index, sessions in enumerate(sizes):
        label = common.size_label(sessions)
        lake = lake_for(sessions)
        runs = [("", [], {})]
        all_treatment = {"GENDER_TREATMENT_SHARE": "1"}
        if sessions in explained:
            if args.explain_all_treatment:
                runs.append((" --explain 5 (all treatment)", ["--explain", "5"], all_treatment))
            else:
                runs.append((" --explain 5", ["--explain", "5"], {}))
        if index == 0:
            runs.append((" (all treatment)", [], all_treatment))
        for suffix, extra, env in runs:
            out = common.BENCH_DATA / f"spark-out-{label}"
            shutil.rmtree(out, ignore_errors=True)
            command = gender("score", "--spark", "--master", args.master, "--parquet", str(lake), "--out", str(out))
            usage = run(f"spark {label}{suffix}", [*command, "--model-dir", str(model_dir), *extra], env)
            row(f"{label}: `score --spark`{suffix}", sessions, usage)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
        if index == 0:  # the single machine on the same sessions, from a database
            from gender import db

            engine = common.synthetic_engine(sessions)
            unknown = db.table_counts(engine)["unknown"]
            url = engine.url.render_as_string(hide_password=False)
            engine.dispose()
            out = common.BENCH_DATA / f"single-{label}.csv"
            usage = run(
                f"single {label}",
                gender("score", "--unlabelled", "--db", url, "--out", str(out), "--model-dir", str(model_dir)),
            )
            row(f"{label}: `score --unlabelled` (one machine)", unknown, usage)
            single = per_core[rows[-1][0]]
            out.unlink(missing_ok=True)

    for cells in rows:
        cells.append(f"{per_core[cells[0]] / single:.2f}")
    print(
        table(
            [
                "command",
                "sessions",
                "wall",
                "CPU",
                "CPU s driver / JVM / workers",
                "peak RSS MB driver / JVM / workers",
                "sessions per CPU s",
                "per core ÷ one machine",
            ],
            rows,
        )
    )
    print(
        "\nsessions per CPU second: sessions ÷ the CPU time of the whole process tree (on a shared machine the "
        "measure of cost per core). `score --spark` scores each session by its A/B group's model (half by the "
        "original's forest); `(all treatment)` and `score --unlabelled` by the treatment model alone."
    )
    print(f"\nuptime at end: {uptime()}")
    common.footer()


if __name__ == "__main__":
    main()
