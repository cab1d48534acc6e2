"""End to end at a million sessions: generate + import, features, training, scoring.

    .venv/bin/python benchmarks/end_to_end.py [--sessions 1M] [--keep] [--mysql] [--chunk 100000]

Each step runs in its own process, so its wall time, CPU time and peak RSS are its own (read
from `os.wait4`'s resource usage of that child):

1. generate + import: `python -m gender demo --sessions N --db URL` into a fresh database
   (data/bench/e2e.db, or gender_bench_e2e with --mysql);
2. features: the labelled sessions read (`train.labelled_data`) and `SessionFeatures(min_df=1)`
   fitted on them, as `train.boosted_pipeline()` builds them;
3. training: the chosen family's model step (`BoostedLogistic`, boosted_pipeline()'s) fitted on
   step 2's matrix, no cross-validation: together with step 2 exactly
   `boosted_pipeline().fit(frame, y)`, whose first step is that feature build;
4. scoring: every session (labelled or not) streamed from the database in chunks of --chunk
   sessions (`db.session_chunks`) and scored by `predict.score_chunks`, which builds the next
   chunk's features while the model scores this one, written to one CSV file (as
   `python -m gender score` does).

Targets: at most 5 minutes in all and at most 4 GB peak RSS in any step. The original-style
baseline (a scan of the whole product table per session, benchmarks/original_style.py) is not
run at this size: its cost per (session × product row) is measured on a small sample of the same
database and multiplied out for the feature build and the scoring.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import common
from common import ms, table

STEPS = ("import", "features", "train", "score")
TARGET_SECONDS = 300
TARGET_RSS_GB = 4.0
RESULT = "RESULT "  # a step's last stdout line: RESULT {json}
SAMPLE_TABLE = 100_000  # the first sessions of the database: the shop in which the scan is timed
SAMPLE_SCANS = 500  # labelled sessions of it whose rows are found by a scan each


def emit(**facts) -> None:
    print(RESULT + json.dumps(facts), flush=True)


# -- the steps, each run as `end_to_end.py --step NAME` in a process of its own -----------------


def step_features(engine, work: Path) -> None:
    import joblib
    import numpy as np
    import scipy.sparse as sp

    from gender import db, train
    from gender.features import session_frame

    started = time.perf_counter()  # as train.labelled_data, timed part by part
    read_s, (sessions, views) = common.timed(db.read_sessions, engine, "labelled")
    frame_s, frame = common.timed(session_frame, sessions, views)
    y = (sessions.set_index("session_id")["gender"].reindex(frame.index) == "male").to_numpy(dtype=int)
    del sessions, views
    features = train.boosted_pipeline().named_steps["features"]
    build_s, matrix = common.timed(features.fit_transform, frame)
    save_started = time.perf_counter()
    sp.save_npz(work / "X.npz", matrix, compressed=False)
    np.save(work / "y.npy", y)
    joblib.dump(features, work / "features.joblib")
    emit(
        parts={
            "read the labelled sessions (db.read_sessions)": read_s,
            "session_frame": frame_s,
            "SessionFeatures(min_df=1).fit_transform": build_s,
            "save the matrix for step 3": time.perf_counter() - save_started,
        },
        sessions=int(matrix.shape[0]),
        columns=int(matrix.shape[1]),
        nnz=int(matrix.nnz),
        male=int(y.sum()),
        seconds=time.perf_counter() - started,
    )


def step_train(engine, work: Path) -> None:
    import joblib
    import numpy as np
    import scipy.sparse as sp
    from sklearn.pipeline import Pipeline

    from gender import train

    load_s, matrix = common.timed(sp.load_npz, work / "X.npz")
    y = np.load(work / "y.npy")
    features = joblib.load(work / "features.joblib")
    model = train.boosted_pipeline().named_steps["model"]
    fit_s, _ = common.timed(model.fit, matrix, y)
    pipeline = Pipeline([("features", features), ("model", model)])
    joblib.dump(pipeline, work / "pipeline.joblib")
    trees = model.trees_
    emit(
        parts={"load step 2's matrix": load_s, "BoostedLogistic.fit (logistic + trees)": fit_s},
        logistic_iterations=int(model.linear_.n_iter_[0]),
        trees=int(trees.booster_.num_trees()) if trees is not None else 0,
        tree_sessions=min(model.tree_sessions, int(matrix.shape[0])),
        tree_columns=int(len(model.tree_columns_)) if model.tree_columns_ is not None else int(matrix.shape[1]),
        base_rate=float(y.mean()),
    )


def step_score(engine, work: Path, chunk: int) -> None:
    import joblib

    from gender import db, predict

    pipeline = joblib.load(work / "pipeline.joblib")
    base_rate = json.loads((work / "train.json").read_text())["base_rate"]
    model = common.wrap_model(pipeline, base_rate)
    scored = male = 0
    with (work / "scores.csv").open("w") as f:  # as `python -m gender score` writes its file
        f.write("session_id,p_male,prediction\n")
        for scores in predict.score_chunks(model, db.session_chunks(engine, "all", chunk)):
            scores.to_csv(f, header=False, index=False)
            scored += len(scores)
            male += int((scores["prediction"] == "male").sum())
    emit(scored=scored, male=male)


def step_sample(engine, work: Path) -> None:
    """The original-style scan in a shop of the first SAMPLE_TABLE sessions: SAMPLE_SCANS of its
    labelled sessions, each session's rows found by a scan of the shop's whole product table,
    then the original's word features: the cost per (session × product row)."""
    import numpy as np
    import original_style
    from sqlalchemy import text

    with engine.connect() as conn:
        last = conn.execute(
            text("SELECT MAX(session_id) FROM (SELECT session_id FROM session ORDER BY session_id LIMIT :n) AS s"),
            {"n": SAMPLE_TABLE},
        ).scalar_one()
        rows = conn.execute(
            text(f"SELECT {original_style.PRODUCT_COLUMNS} FROM product WHERE session_id <= :last"), {"last": last}
        ).all()
    products = np.array([tuple(row) for row in rows], dtype=object).reshape(-1, 6)  # as load_product_array
    sessions = original_style.load_session_array(engine, "labelled")
    sessions = sessions[sessions[:, 0] <= last]
    sessions = sessions[np.sort(np.random.default_rng(0).choice(len(sessions), SAMPLE_SCANS, replace=False))]
    seconds, _ = common.timed(original_style.scan_features, products, sessions)
    emit(
        sessions=int(len(sessions)),
        rows=int(len(products)),
        seconds=seconds,
        unit=seconds / (len(sessions) * len(products)),
    )


# -- the parent: runs the steps and reports ----------------------------------------------------


def run_step(name: str, command: list[str]) -> dict:
    """Run one step as a child process; its wall time, CPU time, peak RSS and RESULT facts."""
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=common.PROJECT, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stdout.close()
    if child.returncode != 0:
        sys.exit(f"step {name} failed (exit {child.returncode}):\n{output}")
    facts = {}
    for line in output.splitlines():
        if line.startswith(RESULT):
            facts = json.loads(line[len(RESULT) :])
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "load": (load_before, os.getloadavg()[0]),
        **facts,
    }


def gb(megabytes: float) -> str:
    return f"{megabytes / 1024:.2f} GB"


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1M", help="synthetic sessions (e.g. 100k, 1M)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the work files (for dashboard.py)")
    parser.add_argument("--chunk", type=int, default=100_000, help="sessions per chunk when scoring")
    parser.add_argument("--step", choices=(*STEPS[1:], "sample"), help=argparse.SUPPRESS)  # in a child
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.step:  # a child: one step, then exit
        from gender import db

        engine = db.connect(args.db)
        if args.step == "score":
            step_score(engine, args.work, args.chunk)
        elif args.step == "sample":
            step_sample(engine, args.work)
        else:
            {"features": step_features, "train": step_train}[args.step](engine, args.work)
        return

    from gender import db
    from gender.config import redact

    sessions = common.sizes(args.sessions)[0]
    url = common.database_url("e2e", args.mysql)
    common._drop(url)  # a fresh database: the import is part of what is measured
    work = common.BENCH_DATA / "e2e-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    url_text = url.render_as_string(hide_password=False)
    me = [sys.executable, str(Path(__file__).resolve())]

    common.header(f"End to end at {common.size_label(sessions)} synthetic sessions, each step in its own process")
    print(f"database: {redact(url)} (fresh); work files: {work.relative_to(common.PROJECT)}\n", flush=True)

    results = {}
    common.log(f"step 1/4: generate + import {sessions:,} sessions")
    results["import"] = run_step(
        "import",
        [sys.executable, "-m", "gender", "demo", "--sessions", str(sessions), "--db", url_text],
    )
    engine = db.connect(url)
    counts = db.table_counts(engine)
    engine.dispose()
    for number, name in enumerate(STEPS[1:], start=2):
        common.log(f"step {number}/4: {name}")
        step = [*me, "--step", name, "--db", url_text, "--work", str(work), "--chunk", str(args.chunk)]
        results[name] = run_step(name, step)
        if name == "train":
            (work / "train.json").write_text(json.dumps(results[name]))
    common.log("original-style scan on a sample, for the baseline estimate")
    sample = run_step("sample", [*me, "--step", "sample", "--db", url_text, "--work", str(work)])

    rows = []
    described = {
        "import": f"`python -m gender demo`: {counts['sessions']:,} sessions, {counts['views']:,} views",
        "features": f"{results['features']['sessions']:,} labelled sessions → "
        f"{results['features']['columns']:,} columns, {results['features']['nnz']:,} non-zeros",
        "train": f"BoostedLogistic: logistic ({results['train']['logistic_iterations']} lbfgs iterations) "
        f"+ {results['train']['trees']} trees grown on {results['train']['tree_sessions']:,} sessions "
        f"({results['train']['tree_columns']:,} columns used)",
        "score": f"{results['score']['scored']:,} sessions scored ({results['score']['male']:,} called male)",
    }
    for number, name in enumerate(STEPS, start=1):
        result = results[name]
        rows.append(
            [
                f"{number}. {name}",
                ms(result["wall"]),
                f"{result['cpu']:.0f} s",
                gb(result["rss_mb"]),
                f"{result['load'][0]:.1f} → {result['load'][1]:.1f}",
                described[name],
            ]
        )
    total_wall = sum(result["wall"] for result in results.values())
    total_cpu = sum(result["cpu"] for result in results.values())
    peak = max(result["rss_mb"] for result in results.values())
    rows.append(["**total**", f"**{ms(total_wall)}**", f"{total_cpu:.0f} s", f"{gb(peak)} (max)", "", ""])
    print(f"## {counts['sessions']:,} sessions ({counts['labelled']:,} labelled), {counts['views']:,} views\n")
    print(table(["step", "wall", "CPU (user+sys)", "peak RSS", "load 1-min (start → end)", "what"], rows))

    print("\n## Inside the steps (wall time, timed in the step's process)\n")
    part_rows = []
    for name in STEPS[1:]:
        for part, seconds in results[name].get("parts", {}).items():
            part_rows.append([name, part, ms(seconds)])
    print(table(["step", "part", "wall"], part_rows))

    wall_ok, rss_ok = total_wall <= TARGET_SECONDS, peak / 1024 <= TARGET_RSS_GB
    print(
        f"\ntargets: total ≤ {TARGET_SECONDS // 60} min: {'met' if wall_ok else 'MISSED'} ({ms(total_wall)}); "
        f"peak RSS ≤ {TARGET_RSS_GB:.0f} GB in every step: {'met' if rss_ok else 'MISSED'} ({gb(peak)})"
    )
    print(
        "CPU: the step's own user+sys seconds. With 2 cores, wall below CPU means it used both; wall above "
        "CPU means it waited (for the cores, shared with other work: see the load, or for the disk)."
    )

    # the baseline: the original-style scan, estimated
    unit = sample["unit"]
    labelled, everyone, views = results["features"]["sessions"], counts["sessions"], counts["views"]
    scan_features = unit * labelled * views
    scan_scoring = unit * everyone * views
    print("\n## Original-style baseline (estimated, not run)\n")
    print(
        f"measured: original_style.scan_features for {sample['sessions']:,} labelled sessions in a shop of the "
        f"first {SAMPLE_TABLE:,} sessions ({sample['rows']:,} product rows, each session's rows found by a scan "
        f"of them all): {ms(sample['seconds'])}, {unit * 1e9:.1f} ns per (session × product row)\n"
    )
    print(
        table(
            ["step", "ours (measured)", "original-style scan (estimate)", "scan ÷ ours"],
            [
                [
                    "features of the labelled sessions",
                    ms(results["features"]["wall"]),
                    f"~{hours(scan_features)} ({labelled:,} sessions × {views:,} rows)",
                    common.ratio(scan_features, results["features"]["wall"]),
                ],
                [
                    "scoring every session",
                    ms(results["score"]["wall"]),
                    f"~{hours(scan_scoring)} ({everyone:,} sessions × {views:,} rows)",
                    common.ratio(scan_scoring, results["score"]["wall"]),
                ],
                ["generate + import", ms(results["import"]["wall"]), "no bulk path in the original", ""],
                ["training", ms(results["train"]["wall"]), "not comparable (another model)", ""],
            ],
        )
    )
    print(
        "\nthe estimates: the measured cost per (session × product row) × sessions × the table's rows (the scan is "
        "quadratic); for scoring, only the scan and the word features (the original's forest is not counted)"
    )

    if args.keep:
        print(
            f"\nkept: the database {redact(url)} and {work.relative_to(common.PROJECT)} (pipeline.joblib, scores.csv)"
        )
    else:
        shutil.rmtree(work, ignore_errors=True)
        common._drop(url)
    common.footer()


def hours(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:,.1f} days"
    if seconds >= 3_600:
        return f"{seconds / 3_600:,.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return ms(seconds)


if __name__ == "__main__":
    main()
