"""`python -m gender ...` as a user runs it: JSON on stdout, one-line errors, exit codes."""

import collections
import csv
import json
import os
import re
import resource
import shutil
import stat
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from gender import artifact, db, serve, synth
from gender.config import load_settings
from gender.errors import GenderError
from tests.conftest import PROJECT, _mysql_database, write_pakdd


def run(*args, env=None, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "gender", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_import_count_and_predict(tmp_path, pakdd_sample, trained_demo):
    data, labels = pakdd_sample
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    imported = run("import-pakdd", data, "--labels", labels, "--db", url)
    assert "imported 3 sessions (6 views)" in imported.stderr

    assert json.loads(run("count", "u10003", "B00002", "--db", url).stdout) == {
        "SESSION_ID": "u10003",
        "CATEGORY": "B00002",
        "COUNT": 3,
    }
    assert json.loads(run("count", "u10003", "C00003", "--db", url).stdout)["COUNT"] == 1
    assert json.loads(run("count", "u10003", "B99999", "--db", url).stdout)["COUNT"] == 0
    assert json.loads(run("count", "u00000", "B00002", "--db", url).stdout)["COUNT"] == 0

    _, model_dir = trained_demo
    answer = json.loads(run("predict", "u10003", "--db", url, "--model-dir", model_dir).stdout)
    assert set(answer) == {"SESSION_ID", "PREDICTION", "P_MALE", "THRESHOLD", "MODEL", "GROUP"}
    assert answer["SESSION_ID"] == "u10003" and answer["PREDICTION"] in ("male", "female")
    unknown = json.loads(run("predict", "u00000", "--db", url, "--model-dir", model_dir).stdout)
    assert unknown == {"SESSION_ID": "u00000", "PREDICTION": "UNKNOWN_SESSION_ID"}


def test_a_user_who_may_only_read_and_insert_into_the_log_logs_each_prediction(trained_demo):
    """A shop's service user of least privilege on MariaDB: SELECT on the database, INSERT on
    prediction_log (which the import made). The CREATE TABLE IF NOT EXISTS run before every write
    needed the CREATE privilege even with the table there, so no prediction was ever logged, and
    each answer came with a warning. Without INSERT the answer still stands, with a warning."""
    databases = _mysql_database()
    url = next(databases)
    user = f"gl_reader_{uuid.uuid4().hex[:8]}"
    admin = db.connect(url)
    try:
        synth.create_demo(admin, sessions=50, seed=3)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'reader-pw'"))
            conn.execute(text(f"GRANT SELECT ON `{url.database}`.* TO '{user}'@'%'"))
            conn.execute(text(f"GRANT INSERT ON `{url.database}`.prediction_log TO '{user}'@'%'"))
        reader = url.set(username=user, password="reader-pw").render_as_string(hide_password=False)
        first, second = db.read_sessions(admin, "all")[0]["session_id"].tolist()[:2]
        _, model_dir = trained_demo

        served = run("predict", first, "--db", reader, "--model-dir", model_dir)
        assert json.loads(served.stdout)["SESSION_ID"] == first
        assert "prediction log not written" not in served.stderr
        assert db.served_predictions(admin)[["session_id", "served_via"]].values.tolist() == [[first, "cli"]]

        with admin.begin() as conn:
            conn.execute(text(f"REVOKE INSERT ON `{url.database}`.prediction_log FROM '{user}'@'%'"))
        refused = run("predict", second, "--db", reader, "--model-dir", model_dir)
        assert json.loads(refused.stdout)["SESSION_ID"] == second  # the answer stands
        assert "warning: prediction log not written: " in refused.stderr and "INSERT command denied" in refused.stderr
        assert db.served_predictions(admin)["session_id"].tolist() == [first]
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        admin.dispose()
        next(databases, None)  # drops the database


@pytest.mark.parametrize(
    "category, shown",
    [
        ("shop/1 ä", '"shop/1 ä"'),  # UTF-8, as the HTTP service answers
        ("性别 👩\u200d💻", '"性别 👩\\u200d💻"'),
        # what a terminal would act on or hide stays escaped: ESC, BEL, DEL, CSI, an RTL override
        ("\x1b[31mred\x07\x7f\x9b1m\u202e", '"\\u001b[31mred\\u0007\\u007f\\u009b1m\\u202e"'),
    ],
)
def test_answers_are_utf8_json_with_terminal_controls_escaped(tmp_path, pakdd_sample, category, shown):
    data, _ = pakdd_sample
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    run("import-pakdd", data, "--db", url)
    result = subprocess.run(
        [sys.executable, "-m", "gender", "count", "u10003", category, "--db", url], capture_output=True, cwd=PROJECT
    )
    assert result.returncode == 0, result.stderr
    expected = f'{{"SESSION_ID": "u10003", "CATEGORY": {shown}, "COUNT": 0}}\n'
    assert result.stdout == expected.encode("utf-8")
    assert json.loads(result.stdout)["CATEGORY"] == category


def test_settings_come_from_the_environment(tmp_path, pakdd_sample):
    data, _ = pakdd_sample
    url = f"sqlite:///{tmp_path / 'env.db'}"
    run("import-pakdd", data, env={"GENDER_DB_URL": url})
    assert db.table_counts(db.connect(url))["sessions"] == 3


@pytest.mark.parametrize("command", ["train", "setup"])
def test_training_reports_every_step_on_a_line_of_its_own(tmp_path, command):
    """Training's steps come faster than an import's one line a second: every fold's ROC-AUC and
    each final fit begun are still shown (on the real logs the logistic folds, and the final fits
    that take a minute or more, were once silent). `setup` trains as `train` does when there is
    no model, and says so without telling the user to run `train`."""
    from gender.train import CANDIDATES, FOLDS

    url = f"sqlite:///{tmp_path / 'small.db'}"
    run("demo", "--sessions", 300, "--db", url)
    lines = run(command, "--db", url, "--model-dir", tmp_path / "models").stderr.splitlines()
    assert lines[0] == (
        f"training on {url} into {tmp_path / 'models'}"
        if command == "train"
        else f"no model yet in {tmp_path / 'models'}; training one now"
    )
    steps = [line.split("] ", 1)[1] for line in lines if line.startswith("[")]
    chosen = next(line for line in lines if line.endswith("<- chosen")).split(":")[0].strip()
    expected = [  # the candidates in training's order
        r"reading the labelled sessions",
        r"training on \d+ labelled sessions \(\d+ male\)",
        *(rf"{c.name}: fold {k}/{FOLDS} ROC-AUC [01]\.\d{{4}}" for c in CANDIDATES for k in range(1, FOLDS + 1)),
        rf"fitting {chosen} on \d+ sessions as the treatment model",
        r"fitting original on \d+ sessions as the control model",
        rf"fitted {chosen} on all \d+ sessions as the treatment model",
        r"fitted original on all \d+ sessions as the control model",
    ]
    assert len(steps) == len(expected), steps
    for pattern, step in zip(expected, steps):
        assert re.fullmatch(pattern, step), (pattern, step)


def test_score_a_file_and_the_unlabelled_sessions(tmp_path, trained_demo):
    url, model_dir = trained_demo
    data = write_pakdd(
        tmp_path / "new.csv",
        [
            "n1,2014-11-20 10:00:00,2014-11-20 10:05:00,A00001/B00001/C00001/D00001/;A00001/B00001/C00001/D00002/",
            "n2,2014-11-21 21:00:00,2014-11-21 21:00:09,A00005/B00034/C00363/D00009/",
        ],
    )
    out = tmp_path / "scores.csv"
    run("score", "--pakdd", data, "--out", out, "--model-dir", model_dir)
    rows = list(csv.DictReader(out.open()))
    assert [row["session_id"] for row in rows] == ["n1", "n2"]
    assert all(0 <= float(row["p_male"]) <= 1 and row["prediction"] in ("male", "female") for row in rows)

    everyone = tmp_path / "unlabelled.csv"
    scored = run("score", "--unlabelled", "--out", everyone, "--db", url, "--model-dir", model_dir)
    rows = list(csv.DictReader(everyone.open()))
    engine = db.connect(url)
    assert len(rows) == db.table_counts(engine)["unknown"] > 0
    # Each session is answered as `predict` and the service answer it: its A/B group's model.
    models, settings = artifact.load(model_dir), load_settings()
    for row in rows:
        served = serve.serve(engine, models, row["session_id"], settings.ab_salt, settings.treatment_share, False)
        answer = served.prediction
        assert (row["prediction"], row["model_id"], row["ab_group"]) == (answer.prediction, answer.model, served.group)
        assert float(row["p_male"]) == pytest.approx(answer.p_male, abs=1e-6), row["session_id"]
    assert {row["ab_group"] for row in rows} == {"control", "treatment"}
    assert [row["session_id"] for row in rows] == sorted(row["session_id"] for row in rows)  # the database's order
    by_model = collections.Counter(row["model_id"] for row in rows)
    assert ", ".join(f"{n:,} by {model_id}" for model_id, n in sorted(by_model.items())) in scored.stderr


def test_the_model_files_take_the_umask_as_any_new_file(trained_demo):
    """Not owner-only: a service under another account than the one that trains must read them."""
    umask = os.umask(0o022)
    os.umask(umask)
    written = [path for path in Path(trained_demo[1]).rglob("*") if path.is_file()]
    assert {path.suffix for path in written} >= {".json", ".joblib", ".npz"}
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in written} == {
        path.name: 0o666 & ~umask for path in written
    }


def test_a_train_whose_save_dies_leaves_the_models_that_were_serving(tmp_path, trained_demo):
    """A retrain on a disk that fills while it saves (here: a file-size limit past the first model's
    file, so the second cannot be written): one line, and the old models still load (the new
    treatment file had replaced the old one, and the old card no longer matched it)."""
    models = tmp_path / "models"
    shutil.copytree(trained_demo[1], models)
    serving = artifact.load(models)
    small = tmp_path / "small.db"
    synth.create_demo(db.connect(f"sqlite:///{small}"), sessions=600, seed=3)  # its control's file is ~1.8 MB
    limit = 500_000  # bytes a file of the process may grow to: the treatment's file fits, the control's not

    def full_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes raise EFBIG

    result = subprocess.run(
        [sys.executable, "-m", "gender", "train", "--db", f"sqlite:///{small}", "--model-dir", str(models)],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=600,
        preexec_fn=full_disk,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1] == "error: [Errno 27] File too large"
    still = artifact.load(models)
    assert (still.treatment.model_id, still.control.model_id) == (serving.treatment.model_id, serving.control.model_id)


@pytest.mark.parametrize(
    "model_dir, message", [("{file}", "it is a file, not a folder"), ("{file}/models", "Not a directory")]
)
def test_train_refuses_a_model_folder_it_cannot_write_before_training(tmp_path, trained_demo, model_dir, message):
    """Said in one line at once, not as a traceback after every fold (minutes on the real logs)."""
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    model_dir = model_dir.format(file=taken)
    result = run("train", "--db", trained_demo[0], "--model-dir", model_dir, check=False)
    assert result.returncode == 1 and f"error: cannot write models into {model_dir}: {message}" in result.stderr
    assert "reading the labelled sessions" not in result.stderr and taken.read_text() == "not a folder"


@pytest.mark.parametrize(
    "out, message",
    [
        ("{tmp}", "is a folder: --out names the CSV file to write"),
        ("{tmp}/s.parquet", "score writes CSV"),
        ("{tmp}/missing/s.csv", "cannot write {tmp}/missing/s.csv: there is no folder {tmp}/missing"),
    ],
)
def test_score_refuses_an_out_it_cannot_write_before_scoring(tmp_path, trained_demo, out, message):
    url, model_dir = trained_demo
    result = run(
        "score", "--unlabelled", "--out", out.format(tmp=tmp_path), "--db", url, "--model-dir", model_dir, check=False
    )
    assert result.returncode == 1 and message.format(tmp=tmp_path) in result.stderr and "scored" not in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


def test_score_explain_writes_the_predict_pages_top_contributions(tmp_path, trained_demo):
    """score --unlabelled --explain K: each row's top K contributions are the Predict page's
    (`predict.assess`) first K, by the session's A/B group's model, as a JSON list in the CSV."""
    from gender import predict

    url, model_dir = trained_demo
    out = tmp_path / "explained.csv"
    run("score", "--unlabelled", "--explain", 3, "--out", out, "--db", url, "--model-dir", model_dir)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0]) == ["session_id", "p_male", "prediction", "model_id", "ab_group", "top_contributions"]
    engine, models = db.connect(url), artifact.load(model_dir)
    assert len(rows) == db.table_counts(engine)["unknown"]
    checked = rows[:: max(1, len(rows) // 25)]
    assert {row["ab_group"] for row in checked} == {"control", "treatment"}
    for row in checked:
        assessment = predict.assess(engine, models.of(row["ab_group"]), row["session_id"])
        expected = assessment.explanation.contributions.head(3)
        top = json.loads(row["top_contributions"])
        assert [item["label"] for item in top] == expected["label"].tolist(), row["session_id"]
        assert max(abs(item["shap"] - want) for item, want in zip(top, expected["shap"])) <= 1e-9
        assert row["prediction"] == assessment.prediction.prediction


def test_scored_ids_read_back_exactly_whatever_they_hold(tmp_path, trained_demo):
    """An id with a bare CR was written unquoted (the csv module quotes only its line terminator's
    characters, and pandas ended lines with LF): a reader split it into two rows."""
    from gender import ingest

    ids = ["cr\rret", "crlf\r\nx", "lf\nx", "00123", " padded ", "a,b", 'q"uote', "=1+2"]
    sessions = [
        {
            "session_id": i,
            "start_time": datetime(2024, 1, 1, 10),
            "end_time": datetime(2024, 1, 1, 10, 5),
            "gender": None,
        }
        for i in ids
    ]
    views = [view for i in ids for view in ingest.view_rows(i, [("A00001", "B00001", "C00001", "D00001")])]
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    ingest.write_all(db.connect(url), [(sessions, views)])
    out = tmp_path / "scores.csv"
    run("score", "--unlabelled", "--explain", 1, "--out", out, "--db", url, "--model-dir", trained_demo[1])
    with out.open(newline="", encoding="utf-8") as f:
        assert sorted(row["session_id"] for row in csv.DictReader(f)) == sorted(ids)


def test_scoring_a_file_with_a_bad_line_writes_nothing(tmp_path, trained_demo):
    _, model_dir = trained_demo
    good = [f"n{i},2014-11-20 10:00:00,2014-11-20 10:05:00,A00001/B00001/C00001/D{i:05d}/" for i in range(6_000)]
    data = write_pakdd(tmp_path / "new.csv", [*good, "n-bad,yesterday,x,A/B/C/D/"])  # after the first chunk
    out = tmp_path / "scores.csv"
    out.write_text("an earlier file\n")
    result = run("score", "--pakdd", data, "--out", out, "--model-dir", model_dir, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: new.csv, line 6001: bad start_time")
    assert out.read_text() == "an earlier file\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["new.csv", "scores.csv"]  # no temporary file left


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "u10003", "--db", "sqlite:///{tmp}/none.db", "--model-dir", "{tmp}"], "no FTP tables"),
        (["count", "u1", "B1", "--db", "sqlite:///{tmp}/typo/ftp.db"], "no FTP tables (there is no file"),
        (["count", "u1", "B1", "--db", "mysql+pymysql://root@127.0.0.1:3306/"], "names no database"),
        (["import-pakdd", "{tmp}/missing.csv", "--db", "sqlite:///{tmp}/new/x.db"], "missing.csv: no such file"),
        (["predict", "u10003", "--db", "not a url"], "not a database URL"),
        (["count", "u1", "B1", "--db", "mysql+pymysql://root:s3cret-pw@127.0.0.1:1/x"], "failed"),
        # a password holding a bare "@": its rest was printed as the host ("Can't connect to ... on 's3cret-pw@...'")
        (["count", "u1", "B1", "--db", "mysql+pymysql://root:a@s3cret-pw@127.0.0.1:1/x"], "write an '@' in the user"),
        (["import-pakdd", "{tmp}/missing.csv", "--db", "sqlite:///{tmp}/x.db"], "missing.csv: no such file"),
        (["import-pakdd", "{tmp}", "--db", "sqlite:///{tmp}/x.db"], "is a folder: expected a PAKDD'15 CSV file"),
        (
            ["import-events", "{tmp}", "--session-col", "s", "--time-col", "t", "--path-col", "p"],
            "is a folder: expected an event log (CSV or Parquet)",
        ),
        (["train", "--db", "sqlite:///{tmp}/empty.db"], "no FTP tables"),
        (["score", "--pakdd", "{tmp}/missing.csv", "--out", "{tmp}/o.csv", "--model-dir", "{tmp}"], "no trained model"),
        (
            ["score", "--pakdd", "{tmp}/missing.csv", "--out", "{tmp}/o.csv", "--db", "sqlite:///{tmp}/nonexist.db"],
            "score --pakdd scores its file and reads no database: drop --db",
        ),
        (
            ["score", "--spark", "--parquet", "{tmp}/lake", "--out", "{tmp}/s", "--db", "sqlite:///{tmp}/x.db"],
            "score --spark scores Parquet tables and reads no database: drop --db",
        ),
        (  # refused as summarize refuses it, not ignored: the user meant the scoring to run on Spark
            ["score", "--pakdd", "{tmp}/missing.csv", "--out", "{tmp}/o.csv", "--master", "local[2]"],
            "--master is for Spark: give --spark --parquet DIR with it",
        ),
        (
            ["score", "--unlabelled", "--out", "{tmp}/o.csv", "--master", "local[2]", "--db", "sqlite:///{tmp}/x.db"],
            "--master is for Spark: give --spark --parquet DIR with it",
        ),
        # ~user of no user here (a shell passes it on as typed): pathlib's RuntimeError was a traceback
        (["count", "u1", "B1", "--db", "sqlite:///~nosuchuser/x.db"], "cannot expand '~nosuchuser' in"),
        (["train", "--model-dir", "~nosuchuser/m", "--db", "sqlite:///{tmp}/x.db"], "no such user here"),
        (["import-scores", "~nosuchuser/s", "--db", "sqlite:///{tmp}/x.db"], "no such user here"),
    ],
)
def test_errors_are_one_line_and_exit_1(tmp_path, args, message):
    result = run(*[a.format(tmp=tmp_path) for a in args], check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []  # a mistyped --db or file creates no database, no folder


@pytest.mark.parametrize(
    "args, message",
    [
        (["demo", "--sessions", "0"], "argument --sessions: expected a whole number of at least 1, not '0'"),
        (["demo", "--seed", "-1"], "argument --seed: expected a whole number of at least 0, not '-1'"),
        (["demo", "--unknown-share", "1.5"], "argument --unknown-share: expected a share from 0 to 1"),
        (["demo", "--unknown-share", "nan", "--parquet", "{tmp}/lake"], "argument --unknown-share: expected a share"),
        (["demo", "--sessions", "12", "--colour", "red"], "unrecognized arguments: --colour red"),
        (["api", "--port", "99999"], "argument --port: expected a whole number from 1 to 65535, not '99999'"),
        (["api", "--workers", "0"], "argument --workers: expected a whole number of at least 1, not '0'"),
        (["score", "--unlabelled", "--out", "{tmp}/o.csv", "--explain", "0"], "argument --explain: expected a whole"),
        (["import-events", "{tmp}/ev.csv", "--time-col", "t", "--path-col", "p"], "required: --session-col"),
    ],
)
def test_a_bad_command_line_is_refused_with_its_commands_usage_and_exit_2(tmp_path, args, message):
    """argparse's convention for usage errors (exit status 2, the usage line first), but always
    the usage of the command given: a check after parsing printed the top parser's, which names none."""
    command = args[0]
    result = run(*[a.format(tmp=tmp_path) for a in args], "--db", f"sqlite:///{tmp_path / 'x.db'}", check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"usage: python -m gender {command} [-h]"), result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"python -m gender {command}: error: ") and message in last, last
    assert list(tmp_path.iterdir()) == []


def test_unknown_share_takes_0_and_1(tmp_path):
    """Every session labelled, or none (a database to score, not to train on)."""
    for unknown_share, unknown in (("0", 0), ("1", 20)):
        url = f"sqlite:///{tmp_path / f'{unknown_share}.db'}"
        run("demo", "--sessions", 20, "--unknown-share", unknown_share, "--db", url)
        assert db.table_counts(db.connect(url))["unknown"] == unknown


def test_a_bad_import_names_the_line_and_writes_nothing(tmp_path, pakdd_sample):
    data, labels = pakdd_sample
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    run("import-pakdd", data, "--labels", labels, "--db", url)
    bad = write_pakdd(
        tmp_path / "bad.csv", ["u1,2014-11-14 00:00:00,2014-11-14 00:00:01,A/B/C/D/", "u2,yesterday,x,A/B/C/D/"]
    )
    result = run("import-pakdd", bad, "--db", url, check=False)
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: bad.csv, line 2: bad start_time 'yesterday': expected YYYY-MM-DD HH:MM:SS (ISO 8601)"
    )
    assert db.table_counts(db.connect(url))["sessions"] == 3


def test_a_relative_sqlite_path_in_the_secrets_file_is_the_projects_as_its_model_dir(monkeypatch, tmp_path):
    """Wherever the command runs: the secrets file belongs to the project, as the paths in it do.
    A URL typed or in the environment is taken from where the user is, as any path typed."""
    from gender import config

    monkeypatch.setattr(config, "_secrets", lambda: {"db_url": "sqlite:///data/shop.db", "model_dir": "shop-models"})
    monkeypatch.delenv("GENDER_DB_URL", raising=False)
    monkeypatch.delenv("GENDER_MODEL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.db_url.database == str(config.PROJECT_ROOT / "data" / "shop.db")
    assert settings.model_dir == config.PROJECT_ROOT / "shop-models"
    monkeypatch.setenv("GENDER_DB_URL", "sqlite:///data/mine.db")
    assert load_settings().db_url.database == "data/mine.db"
    assert load_settings(db="sqlite:///:memory:").db_url.database == ":memory:"


def test_a_sqlite_path_from_home_is_the_users_home_wherever_it_is_written(monkeypatch, tmp_path):
    """~ in a SQLite URL is the home folder, in the secrets file as typed: never a folder named "~"."""
    from gender import config

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config, "_secrets", lambda: {"db_url": "sqlite:///~/shop.db"})
    monkeypatch.delenv("GENDER_DB_URL", raising=False)
    engine = db.connect(load_settings().db_url)
    db.create_schema(engine)
    engine.dispose()
    assert (tmp_path / "home" / "shop.db").is_file()
    assert not (tmp_path / "~").exists() and not (config.PROJECT_ROOT / "~").exists()


def test_progress_says_100_percent_only_when_done():
    from gender.cli import percent

    assert [percent(f) for f in (0.0, 0.29, 0.3, 100_000 / 100_215, 0.99999, 1.0)] == [0, 29, 30, 99, 99, 100]


def test_a_secrets_file_that_is_not_utf8_is_one_line(tmp_path):
    """TOML is UTF-8; a password with "é" saved as Latin-1 raised UnicodeDecodeError in every command."""
    from gender import config

    secrets = tmp_path / "secrets.toml"
    secrets.write_bytes('[gender]\ndb_url = "mysql+pymysql://shop:caf\u00e9@db/shop"\n'.encode("latin-1"))
    with pytest.raises(GenderError, match=rf"^cannot read {re.escape(str(secrets))}: 'utf-8' codec can't decode"):
        config._secrets(secrets)
