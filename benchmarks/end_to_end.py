"""End to end at a million sessions, as a user runs it: `demo`, `train`, `score --unlabelled`.

    .venv/bin/python benchmarks/end_to_end.py [--sessions 1M] [--growth 10k,100k,300k] [--keep] [--mysql]

Each command runs as its own process, typed as a user types it, and is measured from the outside
(`os.wait4`'s resource usage of that child: wall time, user+sys CPU, peak RSS):

1. `python -m gender demo --sessions N --db URL` into a fresh database (data/bench/e2e.db, or
   gender_bench_e2e with --mysql);
2. `python -m gender train --db URL --model-dir DIR`: the candidates' cross-validation (on a
   stratified sample above train.COMPARE_SESSIONS labelled sessions), the final fits and their
   held-out measurement, the models saved;
3. `python -m gender score --unlabelled --out OUT.csv --db URL --model-dir DIR`.

Targets: at most 5 minutes for the three together and at most 4 GB peak RSS in each. Then the
growth of `train` alone: `demo` + `train` at each --growth size in a fresh database of its own
(only `train` is in the table; the main run gives the largest size's row). The original-style
baseline (a scan of the whole product table per session, tests/original_style.py) is not
run at this size: its cost per (session × product row) is measured on a small sample of the same
database and multiplied out for the feature build and the scoring.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import common
from common import gender, ms, run, table, uptime

from gender import artifact
from gender.card import ModelCard

TARGET_SECONDS = 300
TARGET_RSS_GB = 4.0
RESULT = "RESULT "  # the sample step's last stdout line: RESULT {json}
SAMPLE_TABLE = 100_000  # the first sessions of the database: the shop in which the scan is timed
SAMPLE_SCANS = 500  # labelled sessions of it whose rows are found by a scan each


def step_sample(engine) -> None:
    """The original-style scan in a shop of the first SAMPLE_TABLE sessions: SAMPLE_SCANS of its
    labelled sessions, each session's rows found by a scan of the shop's whole product table,
    then the original's word features: the cost per (session × product row)."""
    import numpy as np
    from sqlalchemy import text

    from tests import original_style

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
    facts = {"sessions": int(len(sessions)), "rows": int(len(products)), "seconds": seconds}
    print(RESULT + json.dumps(facts | {"unit": seconds / (len(sessions) * len(products))}), flush=True)


# -- the parent: runs the commands and reports -------------------------------------------------


def gb(megabytes: float) -> str:
    return f"{megabytes / 1024:.2f} GB"


def fresh_database(name: str, mysql: str | None):
    url = common.database_url(name, mysql)
    common._drop(url)  # a fresh database: `demo` writes into an empty one
    return url, url.render_as_string(hide_password=False)


def train_facts(model_dir: Path) -> ModelCard:
    """What `train` wrote: its model card."""
    return artifact.load_card(model_dir)


def trained_what(card: ModelCard) -> str:
    cv, treatment = card.cv, card.slots["treatment"]
    chosen = card.chosen
    compared = f"sample of {cv.sessions:,}" if cv.sampled else f"all {cv.sessions:,}"
    held = treatment.holdout
    quality = (
        f"held-out ROC-AUC {held.auc:.4f} on {held.sessions:,}"
        if held
        else f"CV ROC-AUC {card.candidates[chosen].auc_mean:.4f}"
    )
    return f"CV on {compared}; {chosen} chosen, fitted on {treatment.fitted_sessions:,}: {quality}"


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1M", help="synthetic sessions of the main run (e.g. 100k, 1M)")
    parser.add_argument("--growth", default="10k,100k,300k", help="sizes of the train growth table besides --sessions")
    parser.add_argument("--keep", action="store_true", help="keep the main database and models (for dashboard.py)")
    parser.add_argument("--step", choices=("sample",), help=argparse.SUPPRESS)  # in a child
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from gender import db
    from gender.config import redact

    if args.step:  # a child: the original-style sample, then exit
        step_sample(db.connect(args.db))
        return

    sessions = common.sizes(args.sessions)[0]
    growth = [n for n in common.sizes(args.growth) if n != sessions] if args.growth else []
    work = common.BENCH_DATA / "e2e-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    models, scores = work / "models", work / "scores.csv"
    url, url_text = fresh_database("e2e", args.mysql)

    common.header(f"End to end at {common.size_label(sessions)} synthetic sessions: the user's commands")
    print(f"uptime at start: {uptime()}")
    print(f"database: {redact(url)} (fresh); models and scores: {work.relative_to(common.PROJECT)}\n", flush=True)

    results = {
        "demo": run("demo", gender("demo", "--sessions", str(sessions), "--db", url_text)),
        "train": run("train", gender("train", "--db", url_text, "--model-dir", str(models))),
        "score": run(
            "score",
            gender("score", "--unlabelled", "--out", str(scores), "--db", url_text, "--model-dir", str(models)),
        ),
    }
    engine = db.connect(url)
    counts = db.table_counts(engine)
    engine.dispose()
    card = train_facts(models)
    with scores.open() as f:
        scored_rows = sum(1 for _ in f) - 1
    commands = {
        "demo": f"`python -m gender demo --sessions {sessions}`",
        "train": "`python -m gender train`",
        "score": "`python -m gender score --unlabelled --out …`",
    }
    described = {
        "demo": f"{counts['sessions']:,} sessions ({counts['labelled']:,} labelled), {counts['views']:,} views",
        "train": trained_what(card),
        "score": f"{scored_rows:,} sessions of unknown gender scored",
    }
    rows = [
        [
            commands[name],
            ms(result["wall"]),
            f"{result['cpu']:.0f} s",
            gb(result["rss_mb"]),
            f"{result['load'][0]:.1f} → {result['load'][1]:.1f}",
            described[name],
        ]
        for name, result in results.items()
    ]
    total_wall = sum(result["wall"] for result in results.values())
    total_cpu = sum(result["cpu"] for result in results.values())
    peak = max(result["rss_mb"] for result in results.values())
    rows.append(["**total**", f"**{ms(total_wall)}**", f"{total_cpu:.0f} s", f"{gb(peak)} (max)", "", ""])
    print(f"## {counts['sessions']:,} sessions: the three commands, each its own process\n")
    print(table(["command", "wall", "CPU (user+sys)", "peak RSS", "load 1-min (start → end)", "what"], rows))
    wall_ok, rss_ok = total_wall <= TARGET_SECONDS, peak / 1024 <= TARGET_RSS_GB
    print(
        f"\ntargets: total ≤ {TARGET_SECONDS // 60} min: {'met' if wall_ok else 'MISSED'} ({ms(total_wall)}); "
        f"peak RSS ≤ {TARGET_RSS_GB:.0f} GB in every command: {'met' if rss_ok else 'MISSED'} ({gb(peak)})"
    )
    print(
        "CPU: the command's own user+sys seconds. With 2 cores, wall below CPU means it used both; wall above "
        "CPU means it waited (for the cores, shared with other work: see the load, or for the disk)."
    )
    print_train(card, results["train"]["stderr"])

    # the baseline: the original-style scan, estimated
    common.log("original-style scan on a sample, for the baseline estimate")
    sample_run = run("sample", [sys.executable, str(Path(__file__).resolve()), "--step", "sample", "--db", url_text])
    sample = json.loads(next(line for line in sample_run["stdout"].splitlines() if line.startswith(RESULT))[7:])
    unit = sample["unit"]
    labelled, unknown, views = counts["labelled"], counts["unknown"], counts["views"]
    scan_features, scan_scoring = unit * labelled * views, unit * unknown * views
    print("\n## Original-style baseline (estimated, not run)\n")
    print(
        f"measured: original_style.scan_features for {sample['sessions']:,} labelled sessions in a shop of the "
        f"first {SAMPLE_TABLE:,} sessions ({sample['rows']:,} product rows, each session's rows found by a scan "
        f"of them all): {ms(sample['seconds'])}, {unit * 1e9:.1f} ns per (session × product row)\n"
    )
    print(
        table(
            ["", "ours (measured)", "original-style scan (estimate)"],
            [
                [
                    "`train` (ours: read, features, CV, final fits) vs the scan's feature build of the labelled alone",
                    ms(results["train"]["wall"]),
                    f"~{hours(scan_features)} ({labelled:,} sessions × {views:,} rows)",
                ],
                [
                    "`score --unlabelled` vs the scan's features of the same sessions",
                    ms(results["score"]["wall"]),
                    f"~{hours(scan_scoring)} ({unknown:,} sessions × {views:,} rows)",
                ],
            ],
        )
    )
    print(
        "\nthe estimates: the measured cost per (session × product row) × sessions × the table's rows (the scan is "
        "quadratic); only the scan and the word features (the original's forest is not counted)"
    )

    # the growth of `train`: each row printed as soon as it is measured (a long run stopped early keeps its rows)
    print("\n## `python -m gender train` as the data grows (each in a fresh database of its own)\n")
    print("| sessions | labelled | wall | CPU | peak RSS | load (start → end) | what |\n|---|---|---|---|---|---|---|")
    print(growth_row(sessions, results["train"], card), flush=True)
    for n in growth:
        small_url, small_text = fresh_database(f"e2e_{common.size_label(n)}", args.mysql)
        small_models = work / f"models-{common.size_label(n)}"
        run(f"demo {n:,}", gender("demo", "--sessions", str(n), "--db", small_text))
        result = run(f"train {n:,}", gender("train", "--db", small_text, "--model-dir", str(small_models)))
        print(growth_row(n, result, train_facts(small_models)), flush=True)
        common._drop(small_url)

    if args.keep:
        print(f"\nkept: the database {redact(url)} and {work.relative_to(common.PROJECT)}")
    else:
        shutil.rmtree(work, ignore_errors=True)
        common._drop(url)
    print(f"\nuptime at end: {uptime()}")
    common.footer()


def growth_row(sessions: int, result: dict, card: ModelCard) -> str:
    cells = [
        f"{sessions:,}",
        f"{card.training.sessions:,}",
        ms(result["wall"]),
        f"{result['cpu']:.0f} s",
        gb(result["rss_mb"]),
        f"{result['load'][0]:.1f} → {result['load'][1]:.1f}",
        trained_what(card),
    ]
    return "| " + " | ".join(cells) + " |"


def print_train(card: ModelCard, stderr: str) -> None:
    """Inside `train`, from its own output: the comparison, the final fits and their quality."""
    print("\n## Inside `train` (from its model card; a part, not a command of its own)\n")
    rows = [
        [
            f"5-fold CV: {name}",
            f"{result.cv_seconds:.1f} s",
            f"ROC-AUC {result.auc_mean:.4f} ± {result.auc_std:.4f}",
        ]
        for name, result in card.candidates.items()
    ]
    for slot, entry in card.slots.items():
        held = entry.holdout
        quality = (
            f"held-out ROC-AUC {held.auc:.4f}, balanced accuracy {entry.confusion.balanced_accuracy:.3f} "
            f"({held.sessions:,} sessions; {held.calibration_sessions:,} others set calibration and threshold)"
            if held
            else "judged by its CV"
        )
        rows.append(
            [
                f"final fit: {entry.candidate} ({slot}) on {entry.fitted_sessions:,}",
                f"{entry.fit_seconds:.1f} s",
                quality,
            ]
        )
    rows.append(["all of `train`, as it timed itself", f"{card.seconds:.1f} s", ""])
    print(table(["part", "wall", "result"], rows))
    print("\n`train`'s own report (stderr, last lines):\n")
    print("\n".join("    " + line for line in stderr.strip().splitlines()[-8:]))


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
