"""`python -m gender ...`: the package from a terminal.

Answers go to stdout (JSON or a CSV file), progress and errors to stderr, never a traceback: a
usage error is argparse's (the command's usage, exit status 2), any other error one line (status 1).
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import sys
import time
from pathlib import Path

# Only what every command needs loads here; the models' libraries (sklearn, LightGBM, numba) load in
# the commands that use a model, so `count` and the imports answer in a fraction of a second.
from gender import db, events, ingest, synth
from gender.answers import contributions_json, counted
from gender.config import CTU_URL, load_settings
from gender.errors import GenderError

DEMO_SESSIONS = 6_000  # the default demo: ready (data and models) in well under a minute


# Option types: a bad value is a usage error, said by argparse with the command's own usage line
# (a check after parsing could only use the top parser's, which names no command).
def _whole(text: str, least: int, most: int | None = None) -> int:
    """A whole number from `least` to `most` (no limit if None), or argparse's refusal."""
    try:
        number = int(text)
    except ValueError:
        number = None
    if number is None or number < least or (most is not None and number > most):
        wanted = f"from {least} to {most}" if most is not None else f"of at least {least}"
        raise argparse.ArgumentTypeError(f"expected a whole number {wanted}, not {text!r}")
    return number


def positive_int(text: str) -> int:
    return _whole(text, 1)


def seed(text: str) -> int:
    return _whole(text, 0)  # numpy's generators take no negative seed


def port(text: str) -> int:
    return _whole(text, 1, 65535)


def share(text: str) -> float:
    """A share from 0 to 1 (NaN and infinities are none)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share from 0 to 1 (0.3 is 30 %), not {text!r}")
    return value


def percent(fraction: float) -> int:
    """Whole percent done, rounded down: 100,000 of 100,215 is 99 %, never 100 % before the end."""
    return int(fraction * 100 + 1e-9)  # + 1e-9: 0.29 * 100 is 28.999999999999996


class StderrProgress:
    """Progress lines on stderr, at most one every `interval` seconds (and the last one always)."""

    interval = 1.0

    def __init__(self):
        self.last = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if fraction >= 1.0 or now - self.last >= self.interval:
            self.last = now
            print(f"[{percent(fraction):3d}%] {message}", file=sys.stderr, flush=True)


class StepProgress(StderrProgress):
    """Every step on a line of its own: training's few steps each say something (a fold's ROC-AUC,
    which final fit has begun) and a minute may pass before the next."""

    interval = 0.0


def _engine(args):
    settings = load_settings(db=args.db)
    return settings, db.connect(settings.db_url)


def cmd_import_pakdd(args) -> None:
    settings, engine = _engine(args)
    print(f"importing {args.data} into {settings.db_label}", file=sys.stderr)
    report = ingest.import_pakdd(engine, args.data, args.labels, StderrProgress())
    print(report, file=sys.stderr)


def cmd_import_events(args) -> None:
    columns = events.EventColumns(
        session=args.session_col,
        time=args.time_col,
        path=args.path_col,
        levels=tuple(name.strip() for name in args.level_cols.split(",")) if args.level_cols else None,
        gender=args.gender_col,
        sep=args.sep,
        time_unit=args.time_unit,
        time_zone=args.time_zone,
    )
    settings, engine = _engine(args)
    print(f"importing {args.file} into {settings.db_label}", file=sys.stderr)
    report = events.import_events(
        engine,
        args.file,
        columns,
        args.format,
        args.csv_delimiter,
        args.other_events,
        StderrProgress(),
        drop_duplicates=args.drop_duplicates,
    )
    print(report, file=sys.stderr)


def cmd_import_db(args) -> None:
    settings, engine = _engine(args)
    print(f"copying {db.redact(args.source)} into {settings.db_label}", file=sys.stderr)
    report = ingest.import_db(engine, args.source, StderrProgress())
    print(report, file=sys.stderr)


def cmd_import_scores(args) -> None:
    from gender import scores

    settings, engine = _engine(args)
    print(f"importing the scores in {args.dir} into {settings.db_label}", file=sys.stderr)
    print(scores.import_scores(engine, args.dir, StderrProgress()), file=sys.stderr)


def cmd_demo(args) -> None:
    if args.parquet:  # no database: the synthetic rows go straight into Parquet files
        cmd_demo_parquet(args)
        return
    settings, engine = _engine(args)
    print(f"writing {args.sessions:,} synthetic sessions (seed {args.seed}) into {settings.db_label}", file=sys.stderr)
    report = synth.create_demo(engine, args.sessions, args.seed, args.unknown_share, StderrProgress())
    print(report, file=sys.stderr)


def cmd_train(args) -> None:
    from gender.train import train  # sklearn and lightgbm load only when needed

    settings = load_settings(db=args.db, model_dir=args.model_dir)
    engine = db.connect(settings.db_url)
    db.check_schema(engine)
    print(f"training on {settings.db_label} into {settings.model_dir}", file=sys.stderr)
    card = train(engine, settings.model_dir, StepProgress())
    print("\n".join(card.summary()), file=sys.stderr)


def cmd_setup(args) -> None:
    """What the dashboard needs on first run: demo data in the embedded database, a model."""
    from gender.artifact import METADATA_FILE, load_card
    from gender.errors import ModelUnavailable
    from gender.train import train

    settings = load_settings(db=args.db, model_dir=args.model_dir)
    engine = db.connect(settings.db_url)
    if settings.is_embedded_demo:
        db.create_schema(engine)
        if not db.table_counts(engine)["sessions"]:
            print(f"first run: writing {DEMO_SESSIONS:,} demo sessions into {settings.db_label}", file=sys.stderr)
            synth.create_demo(engine, DEMO_SESSIONS, progress=StderrProgress())
        from gender import summary

        info = summary.stored_info(engine)  # the Categories page reads them; seconds on a small database
        if (info is None or info.sessions != summary.session_count(engine)) and summary.small_enough(engine):
            print(f"for the Categories page: {summary.summarize_database(engine)}", file=sys.stderr)
    db.check_schema(engine)
    try:
        load_card(settings.model_dir)
        print(f"model ready in {settings.model_dir}", file=sys.stderr)
    except ModelUnavailable as unusable:
        # On a first run there is no model at all: no advice to run train, as setup does that now.
        first_run = not (settings.model_dir / METADATA_FILE).is_file()
        why = f"no model yet in {settings.model_dir}" if first_run else unusable
        print(f"{why}; training one now", file=sys.stderr)
        card = train(engine, settings.model_dir, StepProgress())
        print("\n".join(card.summary()), file=sys.stderr)


def print_json(answer) -> None:
    """An answer on stdout as one line of JSON in UTF-8, as the HTTP service writes it, except what a
    terminal would act on or hide: json.dumps escapes only U+0000-U+001F, so DEL, C1 controls such
    as U+009B (CSI), format characters (a right-to-left override) and a lone surrogate (non-UTF-8
    bytes in argv) are escaped here. A terminal that cannot show UTF-8 gets it all escaped."""
    text = json.dumps(answer, ensure_ascii=False)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)
    try:
        print(text)
    except UnicodeEncodeError:
        print(json.dumps(answer))


def _file_to_write(path: str, option: str, what: str) -> Path:
    """An output file's path, refused now if it cannot be written, not once the work is done (or
    another output is already written)."""
    out = Path(path)
    if out.is_dir():
        raise GenderError(f"{out} is a folder: {option} names the {what} to write")
    if not out.parent.is_dir():
        raise GenderError(f"cannot write {out}: there is no folder {out.parent}")
    if not os.access(out.parent, os.W_OK):
        raise GenderError(f"cannot write {out}: the folder {out.parent} is not writable")
    return out


def _served(args, explain: bool):
    """(engine, models, the served answer or None) for the session id of a command, as the
    Predict page (`explain`) and the API serve it; the UNKNOWN answer is printed when there is no
    such session."""
    from gender import artifact, serve
    from gender.answers import Prediction

    settings = load_settings(db=args.db, model_dir=args.model_dir)
    engine = db.connect(settings.db_url)
    db.check_schema(engine)
    models = artifact.load(settings.model_dir)
    served = serve.serve(engine, models, args.session_id, settings.ab_salt, settings.treatment_share, explain)
    if served is None:
        print_json(Prediction.unknown(args.session_id).as_json())
    return engine, models, served


def _log(engine, served) -> None:
    from gender import serve

    try:
        serve.write_log(engine, served)
    except GenderError as exc:  # the answer stands; say why it is not in the log
        print(f"warning: prediction log not written: {exc}", file=sys.stderr)


def _warn_if_beyond_training(models, served) -> None:
    """The Predict page's warning for a session unlike any in training (a bot's thousands of
    views), on stderr: the JSON on stdout stays the service's answer."""
    from gender.answers import beyond_training

    if beyond := beyond_training(served.assessment.record, models.of(served.group).card.training):
        print(f"warning: {beyond}", file=sys.stderr)


def cmd_predict(args) -> None:
    engine, models, served = _served(args, explain=False)  # the API's fast path: the same P(male), no SHAP
    if served is not None:
        print_json(served.as_json())
        _warn_if_beyond_training(models, served)
        _log(engine, served)


def cmd_explain(args) -> None:
    """explain SESSION_ID [--html OUT.html] [--json OUT.json]: the served answer and why, as a
    standalone HTML report and/or the contributions as JSON (`-`, or neither option: stdout)."""
    from gender import artifact, report  # plotly and shap load only here

    # Both files checked before either is written: one written and the other refused is neither answer.
    html = _file_to_write(args.html, "--html", "report file") if args.html else None
    json_out = _file_to_write(args.json, "--json", "JSON file") if args.json not in (None, "-") else None
    engine, models, served = _served(args, explain=True)
    if served is None:
        print("no such session: no explanation written", file=sys.stderr)
        return
    model, settings = models.of(served.group), load_settings(db=args.db, model_dir=args.model_dir)
    fitted = artifact.fitted_on(settings.model_dir, model, served.prediction.session_id, settings.db_label)
    explained = report.build(served, model, fitted)
    to_stdout = args.json == "-" or not (args.json or args.html)
    if html:
        report.write_atomically(html, explained.html())
        print(f"wrote the report of {served.prediction.session_id!r} to {args.html}", file=sys.stderr)
    if json_out:
        report.write_atomically(json_out, json.dumps(explained.as_json(), ensure_ascii=False, indent=1) + "\n")
        print(f"wrote the contributions to {args.json}", file=sys.stderr)
    print_json(explained.as_json() if to_stdout else served.as_json())
    _warn_if_beyond_training(models, served)
    _log(engine, served)


def cmd_count(args) -> None:
    from gender import predict

    settings, engine = _engine(args)
    db.check_schema(engine)
    print_json(predict.count(engine, args.session_id, args.category).as_json())


def cmd_api(args) -> None:
    """The HTTP routes alone, without the dashboard, for the shop's systems: uvicorn running
    gender.api's app in --workers processes on one port (gender.server), each loading the models once."""
    from gender import artifact, server
    from gender.access import load_access

    settings = load_settings(db=args.db, model_dir=args.model_dir)
    # A clear error now, not a 503 on every request: the database, the models (each file checked
    # and read, as each worker will read them) and the access settings.
    db.check_schema(db.connect(settings.db_url))
    artifact.load(settings.model_dir)
    load_access()
    # The workers read the settings as the dashboard does; what was given here goes to them by name.
    os.environ["GENDER_DB_URL"] = settings.db_url.render_as_string(hide_password=False)
    os.environ["GENDER_MODEL_DIR"] = str(settings.model_dir)
    processes = f"{args.workers} processes" if args.workers > 1 else "one process"
    banner = (
        f"the API on http://{args.host}:{args.port} ({processes}, {settings.db_label}, models in "
        f"{settings.model_dir}); its routes at /api/docs; Ctrl+C stops it"
    )
    server.run(args.host, args.port, args.workers, banner)


def cmd_api_token(args) -> None:
    """A new API token: the token for the client (stdout), its hash for the deployment (stderr)."""
    from gender.access import new_token

    token, digest = new_token()
    print(token)
    print(
        f"give the token above to the client, and store only its hash in the deployment:\n"
        f'  [gender] api_token_sha256 = ["{digest}"]   (.streamlit/secrets.toml)\n'
        f"  or GENDER_API_TOKENS_SHA256={digest}",
        file=sys.stderr,
    )


def cmd_population(args) -> None:
    """population: SHAP of the treatment model over a sample of the sessions, kept beside the models."""
    from gender import artifact, population  # shap loads only here

    html = _file_to_write(args.html, "--html", "report file") if args.html else None  # now, not after the SHAP
    settings = load_settings(db=args.db, model_dir=args.model_dir)
    engine = db.connect(settings.db_url)
    db.check_schema(engine)
    models = artifact.load(settings.model_dir)
    path = population.path_for(engine, models, settings.model_dir)
    kept = path.stat().st_mtime_ns if path.is_file() and not args.recompute else None
    result = population.current(
        engine,
        models,
        settings.model_dir,
        settings.ab_salt,
        settings.treatment_share,
        StderrProgress(),
        args.recompute,
        must_keep=True,  # this command's work is the file
    )
    info = result.info
    said = "reused" if kept is not None and kept == path.stat().st_mtime_ns else "computed"
    print(
        f"{said} {path}: {len(result.sample):,} of {info.db_sessions:,} sessions, model {info.model_id}, "
        f"computed in {info.seconds:.1f} s ({info.sample_seconds:.1f} s reading the sample)",
        file=sys.stderr,
    )
    if html:  # the page's views at its defaults, every session number's dependence
        from gender import report

        report.write_atomically(html, population.html(result))
        print(f"wrote the population report to {args.html}", file=sys.stderr)
    print_json(population.summary(result, path))


def cmd_score(args) -> None:
    if args.db and not args.unlabelled:  # said, not ignored: the user meant some database to count
        given = "--pakdd scores its file" if args.pakdd else "--spark scores Parquet tables"
        raise GenderError(f"score {given} and reads no database: drop --db (--unlabelled scores a database's)")
    if args.spark or args.parquet:
        cmd_score_spark(args)
        return
    if args.master:  # said, not ignored, as summarize says it: the user meant to score on Spark
        raise GenderError("--master is for Spark: give --spark --parquet DIR with it")
    from gender import artifact, score

    out = _file_to_write(args.out, "--out", "CSV file")
    if out.suffix.lower() == ".parquet":
        raise GenderError(f"{out}: score writes CSV; name it .csv, or score Parquet tables with --spark --parquet DIR")
    settings = load_settings(db=args.db, model_dir=args.model_dir)
    models = artifact.load(settings.model_dir)
    progress = StderrProgress()
    if args.pakdd:
        chunks, total = score.pakdd_chunks(args.pakdd, progress), None  # the file reports its own progress
    else:
        engine = db.connect(settings.db_url)
        db.check_schema(engine)
        chunks, total = db.session_chunks(engine, "unlabelled"), db.table_counts(engine)["unknown"]
    tmp = out.with_name(f".{out.name}.tmp")
    columns = [*score.OUTPUT_COLUMNS, *([score.EXPLAIN_COLUMN] if args.explain else [])]
    frames = score.frames_of(chunks)
    by_model: collections.Counter[str] = collections.Counter()
    try:
        # CSV as RFC 4180 writes it, lines ended by CR LF: the csv module quotes only a field that
        # holds a character of its line ending, and an id with a bare CR must read back as one field.
        with tmp.open("w", newline="", encoding="utf-8") as f:
            f.write(",".join(columns) + "\r\n")
            for scores in score.score_chunks(
                models, frames, settings.ab_salt, settings.treatment_share, args.explain or 0
            ):
                if args.explain:
                    scores[score.EXPLAIN_COLUMN] = scores[score.EXPLAIN_COLUMN].map(contributions_json)
                scores.to_csv(f, header=False, index=False, lineterminator="\r\n")
                by_model.update(scores["model_id"])
                scored = by_model.total()
                if total:
                    progress(scored / total, f"{scored:,} of {total:,} sessions scored")
        tmp.replace(out)  # a reader never sees half a file
    except OSError as exc:
        raise GenderError(f"cannot write {out}: {exc.strerror}") from None
    finally:
        if tmp.exists():  # False, not an error, when OUT's folder is a file
            tmp.unlink()
    used = ", ".join(f"{count:,} by {model_id}" for model_id, count in sorted(by_model.items())) or "none"
    print(f"scored {counted(by_model.total(), 'session')} into {out} ({used})", file=sys.stderr)


def cmd_demo_parquet(args) -> None:
    from gender import lake

    if args.db:
        raise GenderError("demo --parquet writes files, no database: give --parquet DIR or --db URL, not both")
    print(f"writing {args.sessions:,} synthetic sessions (seed {args.seed}) into {args.parquet}", file=sys.stderr)
    report = lake.demo_parquet(args.parquet, args.sessions, args.seed, args.unknown_share, StderrProgress())
    print(report, file=sys.stderr)


def cmd_export_parquet(args) -> None:
    from gender import lake

    settings, engine = _engine(args)
    db.check_schema(engine)
    print(f"writing the session and product tables of {settings.db_label} into {args.dir}", file=sys.stderr)
    print(lake.export_parquet(engine, args.dir, StderrProgress()), file=sys.stderr)


def cmd_summarize(args) -> None:
    """summarize: the Categories page's population summaries, stored in the database."""
    from gender import summary

    settings, engine = _engine(args)
    say = functools.partial(print, file=sys.stderr, flush=True)
    if args.spark or args.parquet:
        if not (args.spark and args.parquet):
            raise GenderError("summarize --parquet DIR runs on Spark: give both --spark and --parquet DIR")
        summaries = summary.summarize_parquet(args.parquet, engine, args.master, say=say)
    else:
        if args.master:
            raise GenderError("--master is for Spark: give --spark --parquet DIR with it")
        summaries = summary.summarize_database(engine, say)
    print(f"{summaries}; stored in {settings.db_label}", file=sys.stderr)


def cmd_score_spark(args) -> None:
    """score --spark --parquet DIR --out OUT_DIR: every session of the Parquet tables, on Spark."""
    if not (args.spark and args.parquet):
        given = "--spark" if args.spark else "--parquet DIR"
        raise GenderError(
            f"{given} scores the Parquet tables of a folder on Spark: give both --spark and --parquet DIR "
            "(--pakdd and --unlabelled score on this machine, without --spark)"
        )
    from gender import spark  # pyspark loads only here: nothing else needs it

    settings = load_settings(db=args.db, model_dir=args.model_dir)
    say = functools.partial(print, file=sys.stderr, flush=True)
    report = spark.score_parquet(args.parquet, args.out, settings, args.master, say=say, explain=args.explain or 0)
    print(report, file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m gender",
        description="Predict a web visitor's gender from one session of e-commerce logs (CTU FTP database).",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    db_help = "SQLAlchemy URL of the FTP database (default: GENDER_DB_URL, .streamlit/secrets.toml, data/gender.db)"
    dir_help = "folder of the trained models (default: GENDER_MODEL_DIR, .streamlit/secrets.toml, models/)"

    def command(name, function, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--db", metavar="URL", help=db_help)
        sub.set_defaults(function=function, command_parser=sub)
        return sub

    sub = command("import-pakdd", cmd_import_pakdd, "import a PAKDD'15 CSV file into the FTP tables")
    sub.add_argument("data", type=Path, help="session_id,start_time,end_time,A/B/C/D/;... lines")
    sub.add_argument("--labels", type=Path, help="male/female, one a line, aligned with DATA")

    sub = command("import-events", cmd_import_events, "import a shop's event log (CSV or Parquet) into the FTP tables")
    sub.add_argument("file", metavar="FILE", type=Path, help="one row a product view, in any order")
    sub.add_argument("--session-col", required=True, metavar="COLUMN", help="the session id")
    sub.add_argument(
        "--time-col",
        required=True,
        metavar="COLUMN",
        help="the time of the view: ISO 8601 (YYYY-MM-DD HH:MM:SS, or with T, a fraction, an offset), "
        "a Parquet timestamp, or a number since 1970 UTC with --time-unit",
    )
    sub.add_argument(
        "--time-unit",
        choices=list(events.TIME_UNITS),
        help="--time-col holds numbers of seconds, milliseconds, microseconds or nanoseconds since "
        "1970-01-01 UTC (Unix time), whole or not; their wall time is UTC's unless --time-zone",
    )
    sub.add_argument(
        "--time-zone",
        metavar="ZONE",
        help="keep the shop's wall time (the hour of day the features read): times with an offset and Unix "
        "times are shown on this IANA zone's clock (Europe/Prague), times without one are taken as its",
    )
    category = sub.add_mutually_exclusive_group(required=True)
    category.add_argument("--path-col", metavar="COLUMN", help="the category path, top level first: A/B/C/D")
    category.add_argument("--level-cols", metavar="A,B,C,D", help="the 4 columns of the category levels, top first")
    sub.add_argument("--sep", help="the separator in --path-col's paths (default /)")
    sub.add_argument("--gender-col", metavar="COLUMN", help="male or female; blank, NULL or unknown: not told")
    sub.add_argument("--format", choices=["csv", "parquet"], help="default: by the extension (.csv .tsv .parquet .pq)")
    sub.add_argument("--csv-delimiter", metavar="CHAR", help="between CSV fields (default , or a tab for .tsv)")
    sub.add_argument(
        "--other-events",
        action="store_true",
        help="rows without a category are events other than views: they count for the session's start, end "
        "and gender only (sessions without a view are left out); without this they are errors",
    )
    sub.add_argument(
        "--drop-duplicates",
        action="store_true",
        help="rows alike in session, time and category path are one view (an export that delivered some "
        "events twice); without this each row is a view",
    )

    sub = command("import-db", cmd_import_db, "copy session and product from another FTP database")
    sub.add_argument("source", metavar="SOURCE_URL", help=f"e.g. the public CTU server {db.redact(CTU_URL)}")

    sub = command("import-scores", cmd_import_scores, "load the Parquet scores of score --spark into the database")
    sub.add_argument("dir", metavar="SCORES_DIR", type=Path, help="score --spark's --out folder (or one of its files)")

    sub = command("demo", cmd_demo, "write a synthetic FTP-like database")
    sub.add_argument(
        "--sessions",
        type=positive_int,
        default=DEMO_SESSIONS,
        metavar="N",
        help=f"number of sessions (default {DEMO_SESSIONS})",
    )
    sub.add_argument("--seed", type=seed, default=0, metavar="S", help="random seed, 0 or more (default 0)")
    sub.add_argument(
        "--unknown-share", type=share, default=0.3, metavar="F", help="share with unknown gender, 0 to 1 (default 0.3)"
    )
    sub.add_argument(
        "--parquet", metavar="DIR", help="write session.parquet and product.parquet into DIR instead (no database)"
    )

    sub = command("export-parquet", cmd_export_parquet, "write the session and product tables as Parquet files")
    sub.add_argument("dir", metavar="DIR", type=Path, help="the folder for session.parquet and product.parquet")

    sub = command("train", cmd_train, "compare candidate models by 5-fold CV ROC-AUC, save the best")
    sub.add_argument("--model-dir", type=Path, help=dir_help)

    sub = command("setup", cmd_setup, "first run: demo data in the embedded database if empty, a model if missing")
    sub.add_argument("--model-dir", type=Path, help=dir_help)

    sub = command("predict", cmd_predict, "predict one session's gender with its A/B group's model (JSON)")
    sub.add_argument("session_id", metavar="SESSION_ID")
    sub.add_argument("--model-dir", type=Path, help=dir_help)

    sub = command("explain", cmd_explain, "one session's served answer and why: a standalone HTML report and/or JSON")
    sub.add_argument("session_id", metavar="SESSION_ID")
    sub.add_argument("--html", metavar="OUT.html", help="write the report (charts inside, opens without a network)")
    sub.add_argument(
        "--json",
        metavar="OUT.json",
        help="write the answer and every contribution (feature, label, value, shap, group); - for stdout, "
        "the default when neither --html nor --json is given",
    )
    sub.add_argument("--model-dir", type=Path, help=dir_help)

    sub = command(
        "population", cmd_population, "SHAP of the treatment model over a sample of 2,000 sessions, kept beside it"
    )
    sub.add_argument("--recompute", action="store_true", help="compute it again even when it is kept")
    sub.add_argument("--html", metavar="OUT.html", help="also write its views as a report (opens without a network)")
    sub.add_argument("--model-dir", type=Path, help=dir_help)

    sub = command(
        "summarize", cmd_summarize, "the Categories page's summaries (views per category, activity) into the database"
    )
    sub.add_argument("--spark", action="store_true", help="in Spark SQL from --parquet DIR (default: SQL on the db)")
    sub.add_argument("--parquet", metavar="DIR", help="the Parquet tables (export-parquet's) to read, with --spark")
    sub.add_argument("--master", help="Spark master URL (default: spark-submit's, else local[*])")

    sub = command("count", cmd_count, "count a session's views in a category of any level (JSON)")
    sub.add_argument("session_id", metavar="SESSION_ID")
    sub.add_argument("category", metavar="CATEGORY")

    sub = command(
        "api", cmd_api, "serve the HTTP routes alone (/predict, /count, /api, /metrics), without the dashboard"
    )
    sub.add_argument(
        "--host", default="127.0.0.1", help="the interface to listen on (default 127.0.0.1: this machine only)"
    )
    sub.add_argument("--port", type=port, default=8000, metavar="P", help="1 to 65535 (default 8000)")
    sub.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="processes answering side by side (default 1); more than one a core only take turns on them",
    )
    sub.add_argument("--model-dir", type=Path, help=dir_help)

    token_help = "make an API bearer token and print the hash a deployment stores (not the token)"
    sub = commands.add_parser("api-token", help=token_help, description=token_help)  # no --db: not command()
    sub.set_defaults(function=cmd_api_token, command_parser=sub)

    sub = command(
        "score",
        cmd_score,
        "score many sessions into a CSV file (with --spark, a Parquet folder): "
        "session_id,p_male,prediction,model_id,ab_group, each session by its A/B group's model, "
        "as predict and the service answer it",
    )
    source = sub.add_mutually_exclusive_group(required=True)
    source.add_argument("--pakdd", type=Path, metavar="DATA.csv", help="a PAKDD-format file (no database needed)")
    source.add_argument("--unlabelled", action="store_true", help="every session of the database with unknown gender")
    source.add_argument(
        "--parquet", metavar="DIR", help="every session of the Parquet tables in DIR (export-parquet's), with --spark"
    )
    sub.add_argument("--out", required=True, metavar="OUT", help="the CSV file; with --spark a new folder of Parquet")
    sub.add_argument(
        "--spark",
        action="store_true",
        help="score on Spark (make spark installs it) into a folder of Parquet, with the same columns",
    )
    sub.add_argument("--master", help="Spark master URL (default: spark-submit's, else local[*])")
    sub.add_argument(
        "--explain",
        type=positive_int,
        metavar="K",
        help="each session's top K SHAP contributions in words, largest |shap| first, as the column "
        "top_contributions: a JSON list of {label, shap} in the CSV, array<struct<label,shap>> with --spark",
    )
    sub.add_argument("--model-dir", type=Path, help=dir_help)
    return top


def main(argv: list[str] | None = None) -> int:
    args, unknown = parser().parse_known_args(argv)
    if unknown:  # argparse leaves them to the top parser, whose usage line names no command
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        args.function(args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below
    except GenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # an import or a score rolls back; a server has only stopped
        print("interrupted" if args.function is cmd_api else "interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`... | head`): no traceback, as Python's docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # the machine's, not the input's: a full disk, a file too large, a folder not ours
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
