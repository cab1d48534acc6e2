"""Scoring on Spark (gender/spark.py) in local mode: the same answers as the single-machine
service for every session, and bad models and bad files refused on the driver with one line.

One SparkSession for the module (conftest's `spark`; a JVM start costs tens of seconds): the command
line, run in this process, scores on it. Without pyspark or Java the Spark tests skip, saying so; CI
(GENDER_TEST_REQUIRE_ALL=1) fails on a skip, and `make test` installs both (`make spark`).
"""

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gender import artifact, db, lake, serve
from gender import spark as gspark
from gender.cli import main
from gender.features import session_frame
from tests.conftest import PROJECT

SALT, SHARE = "spark-test", "0.3"  # not the defaults: the settings must reach the executors


def score_on_spark(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["score", "--spark", *map(str, args)])
    return status, capsys.readouterr().err


def jobs_run(spark) -> int:
    return len(spark.sparkContext.statusTracker().getJobIdsForGroup())


def test_spark_scores_are_the_single_machine_answers(spark, trained_demo, lake_dir, tmp_path, monkeypatch, capsys):
    url, model_dir = trained_demo
    monkeypatch.setenv("GENDER_AB_SALT", SALT)
    monkeypatch.setenv("GENDER_TREATMENT_SHARE", SHARE)
    monkeypatch.setattr(gspark, "PROGRESS_SECONDS", 0.05)  # a job of seconds still says how far it is
    out = tmp_path / "scores"
    status, err = score_on_spark(capsys, "--parquet", lake_dir, "--out", out, "--model-dir", model_dir)
    assert status == 0, err
    assert re.search(r"^scoring: [\d,]+ of [\d,]+ tasks of the running stages done$", err, re.MULTILINE), err
    assert "scored 3,000 sessions on Spark" in err and "30% of sessions in treatment" in err
    got = pd.read_parquet(out).set_index("session_id").sort_index()
    assert list(got.columns) == ["p_male", "prediction", "model_id", "ab_group"]

    # Every session as the service scores it: its group by serve.group_of, its group's model.
    from gender.score import score

    engine = db.connect(url)
    models = gspark.load_models(model_dir)
    assert models.control is not None
    frame = session_frame(*db.read_sessions(engine, "all"))
    groups = np.array([serve.group_of(session_id, SALT, float(SHARE)) for session_id in frame.index])
    expected = (
        pd.concat(
            score(models.of(group), frame[groups == group]).assign(model_id=models.of(group).model_id, ab_group=group)
            for group in serve.GROUPS
        )
        .set_index("session_id")
        .sort_index()
    )
    assert list(got.index) == list(expected.index) and len(got) == 3_000
    assert np.abs(got["p_male"].to_numpy() - expected["p_male"].to_numpy()).max() <= 1e-9
    for column in ("prediction", "model_id", "ab_group"):
        assert (got[column] == expected[column]).all(), column
    assert set(got["ab_group"]) == {"treatment", "control"}

    # The single-machine score command (the unlabelled sessions) agrees too, group and model included.
    csv_out = tmp_path / "unlabelled.csv"
    assert main(["score", "--unlabelled", "--out", str(csv_out), "--db", url, "--model-dir", str(model_dir)]) == 0
    rows = list(csv.DictReader(csv_out.open()))
    assert rows and {row["ab_group"] for row in rows} == {"treatment", "control"}
    for row in rows:
        assert abs(float(row["p_male"]) - got.at[row["session_id"], "p_male"]) <= 1e-9
        for column in ("prediction", "model_id", "ab_group"):
            assert row[column] == got.at[row["session_id"], column], (row["session_id"], column)

    # And the service itself, session by session, for a sample.
    for session_id in got.index[::150]:
        served = serve.serve(engine, models, session_id, SALT, float(SHARE), explain=False).as_json()
        assert (served["P_MALE"], served["PREDICTION"], served["MODEL"], served["GROUP"]) == (
            got.at[session_id, "p_male"],
            *got.loc[session_id, ["prediction", "model_id", "ab_group"]],
        )

    again, err = score_on_spark(capsys, "--parquet", lake_dir, "--out", out, "--model-dir", model_dir)
    assert again == 1 and "already exists" in err and err.count("\n") == 1


def test_a_corrupt_or_foreign_model_is_refused_before_any_executor_runs(
    spark, trained_demo, lake_dir, tmp_path, capsys
):
    _, model_dir = trained_demo
    corrupt, foreign = tmp_path / "corrupt", tmp_path / "foreign"
    for copy in (corrupt, foreign):
        shutil.copytree(model_dir, copy)
    files = {slot: entry.file for slot, entry in artifact.load_card(model_dir).slots.items()}  # as the card names them
    data = bytearray((corrupt / files["treatment"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (corrupt / files["treatment"]).write_bytes(bytes(data))
    shutil.copy(model_dir / files["treatment"], foreign / files["control"])  # a readable model, not this card's

    before = jobs_run(spark)
    for folder, file in ((corrupt, files["treatment"]), (foreign, files["control"])):
        out = tmp_path / f"out-{folder.name}"
        status, err = score_on_spark(capsys, "--parquet", lake_dir, "--out", out, "--model-dir", folder)
        assert status == 1
        assert err.splitlines()[-1] == (
            f"error: model file {folder / file} does not match its recorded sha256; refusing to load it"
        )
        assert not out.exists()
    assert jobs_run(spark) == before  # refused on the driver: no job, so no executor ran


def test_a_master_url_spark_would_refuse_is_one_line_before_java_starts(trained_demo, lake_dir, tmp_path):
    """Spark's own answer to a mistyped --master is a page of Java stack trace and a wrong hint."""
    _, model_dir = trained_demo
    command = ["score", "--spark", "--parquet", lake_dir, "--out", tmp_path / "out", "--model-dir", model_dir]
    result = subprocess.run(
        [sys.executable, "-m", "gender", *map(str, command), "--master", "bogus://x"],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=300,
    )
    said = result.stderr.strip().splitlines()  # what was checked, then the error: no Java
    assert result.returncode == 1 and len(said) == 2 and "Exception" not in result.stderr, result.stderr
    assert said[-1].startswith("error: --master 'bogus://x' is not a Spark master URL: expected local[N]")
    assert not (tmp_path / "out").exists()


def test_ctrl_c_cancels_the_job_and_says_interrupted_in_one_line(trained_demo, tmp_path):
    """As a terminal's Ctrl+C, SIGINT to the command's process group while its job runs: pyspark's
    own handler made py4j log two tracebacks, then the session stopped under running tasks printed
    pages of Java's, and the job's empty output folder stayed."""
    _, model_dir = trained_demo
    lake.demo_parquet(tmp_path / "lake", 1_000_000, seed=5)  # a job of tens of seconds on 2 cores
    out = tmp_path / "out"
    command = ["score", "--spark", "--parquet", tmp_path / "lake", "--out", out, "--model-dir", model_dir]
    process = subprocess.Popen(
        [sys.executable, "-m", "gender", *map(str, command), "--master", "local[2]"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT,
        start_new_session=True,  # its own process group, as a terminal gives a command
    )
    said = []
    try:
        for line in process.stderr:  # the job's first progress line: it is running
            said.append(line)
            if line.startswith("scoring: "):
                break
        else:
            raise AssertionError("the job ended before it said how far it was:\n" + "".join(said))
        os.killpg(process.pid, signal.SIGINT)
        said.append(process.stderr.read())
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    text = "".join(said)
    assert process.returncode == 130, text
    assert text.strip().splitlines()[-1] == "interrupted; nothing was written"
    assert not [word for word in ("Traceback", "ERROR", "Exception") if word in text], text
    assert not out.exists()


def _broken(tmp_path, name, change):
    broken = tmp_path / "broken"
    lake.demo_parquet(broken, 200, seed=3)
    pq.write_table(change(pq.read_table(broken / f"{name}.parquet")), broken / f"{name}.parquet")
    return broken


def test_only_the_card_and_the_files_it_names_are_staged_for_the_executors(trained_demo, tmp_path):
    """Not the folder: a population file (tens of MB on a large database) or a replaced model's
    file went to every executor."""
    models = tmp_path / "models"
    shutil.copytree(trained_demo[1], models)
    (models / "population-0123abcd-456789abcdef.npz").write_bytes(b"x" * 1000)
    (models / "control-0000000000000000.joblib").write_bytes(b"a replaced model")
    card = artifact.load_card(models)
    expected = {"metadata.json", *(entry.file for entry in card.slots.values())}
    expected |= {artifact.TRAINED_ON_FILE.format(slot=slot) for slot in card.slots}
    staged, archive = gspark.stage_models(models)
    try:
        assert {path.name for path in staged.iterdir()} == expected
        with zipfile.ZipFile(archive) as packed:
            assert set(packed.namelist()) == expected
        assert gspark.load_models(staged).treatment.model_id == artifact.load(models).treatment.model_id
    finally:
        shutil.rmtree(staged.parent)


def test_a_damaged_data_page_is_one_line_from_score_and_summarize(spark, trained_demo, lake_dir, tmp_path, capsys):
    """The footers are checked before Spark runs; a damaged data page fails only in a task, which
    was a Py4JJavaError and its traceback."""
    damaged = tmp_path / "lake"
    shutil.copytree(lake_dir, damaged)
    product = damaged / "product.parquet"
    data = bytearray(product.read_bytes())
    data[4:200] = bytes(196)  # the first data page's header
    product.write_bytes(bytes(data))
    said = f"error: Spark could not read file://{product}: can not read class org.apache.parquet.format.PageHeader"
    status, err = score_on_spark(
        capsys, "--parquet", damaged, "--out", tmp_path / "out", "--model-dir", trained_demo[1]
    )
    assert status == 1 and err.splitlines()[-1].startswith(said) and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    capsys.readouterr()
    status = main(["summarize", "--spark", "--parquet", str(damaged), "--db", f"sqlite:///{tmp_path / 'sums.db'}"])
    err = capsys.readouterr().err
    assert status == 1 and err.splitlines()[-1].startswith(said) and "Traceback" not in err


@pytest.mark.parametrize(
    "name, change, column, says",
    [
        ("product", lambda t: t.drop_columns(["category_c"]), "category_c", "no column 'category_c'"),
        (
            "session",
            lambda t: t.set_column(1, "start_time", t["start_time"].cast(pa.string())),
            "start_time",
            "column 'start_time' is of type string, expected time",
        ),
        (
            "product",
            lambda t: t.set_column(1, "sequence_order", t["sequence_order"].cast(pa.float64())),
            "sequence_order",
            "column 'sequence_order' is of type double, expected whole number",
        ),
    ],
)
def test_a_malformed_parquet_file_is_one_clear_error(tmp_path, name, change, column, says):
    """Checked from the files' footers before the models and Spark: no pyspark needed to see it."""
    model_dir = tmp_path / "no-models"  # the files are refused before the models are looked at
    broken = _broken(tmp_path, name, change)
    result = subprocess.run(
        [sys.executable, "-m", "gender", "score", "--spark", "--parquet", str(broken), "--out", str(tmp_path / "o")]
        + ["--model-dir", str(model_dir)],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=600,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {broken / (name + '.parquet')}: {says}")
    assert column in result.stderr and not (tmp_path / "o").exists()


def test_sessions_cut_across_arrow_batches_come_out_whole():
    """Arrow cuts a partition's sorted rows at a row count: a session's rows may straddle batches."""
    ids = ["a", "b", "b", "b", "b", "c", "d", "d"]
    rows = pd.DataFrame({"session_id": ids, "n": range(len(ids))})
    batches = [rows.iloc[0:2], rows.iloc[2:3], rows.iloc[3:3], rows.iloc[3:6], rows.iloc[6:8]]
    whole = list(gspark.whole_sessions(iter(batches)))
    assert [list(batch["session_id"]) for batch in whole] == [["a"], ["b", "b", "b", "b"], ["c"], ["d", "d"]]
    assert pd.concat(whole)["n"].tolist() == list(range(len(ids)))


def test_spark_explains_as_the_predict_page_on_the_real_logs(spark, real_db, trained_demo, tmp_path, capsys):
    """--explain K: each session's top K contributions are the Predict page's (`predict.assess`)
    first K, labels equal and SHAP to 1e-9, from its A/B group's model; P(male) as served."""
    from gender import predict

    _, model_dir = trained_demo
    lake_dir = tmp_path / "real-lake"
    lake.export_parquet(real_db, lake_dir)
    out = tmp_path / "explained"
    status, err = score_on_spark(capsys, "--parquet", lake_dir, "--out", out, "--model-dir", model_dir, "--explain", 3)
    assert status == 0, err
    got = pd.read_parquet(out).set_index("session_id").sort_index()
    assert len(got) == 27_000 and list(got.columns) == [
        "p_male",
        "prediction",
        "model_id",
        "ab_group",
        "top_contributions",
    ]
    from pyspark.sql import types

    field = spark.read.parquet(str(out)).schema["top_contributions"]
    assert field.dataType.simpleString() == "array<struct<label:string,shap:double>>"
    assert isinstance(field.dataType, types.ArrayType)

    models = gspark.load_models(model_dir)
    for session_id in got.index[::900]:
        row = got.loc[session_id]
        assessment = predict.assess(real_db, models.of(row["ab_group"]), session_id)
        expected = assessment.explanation.contributions.head(3)
        top = list(row["top_contributions"])
        assert [item["label"] for item in top] == expected["label"].tolist(), session_id
        assert np.abs(np.array([item["shap"] for item in top]) - expected["shap"].to_numpy()).max() <= 1e-9
        assert abs(row["p_male"] - assessment.prediction.p_male) <= 5e-7  # written to 6 decimals, as `score`
        assert row["prediction"] == assessment.prediction.prediction
    assert set(got["ab_group"]) == {"treatment", "control"}
    assert all(len(top) <= 3 for top in got["top_contributions"])
