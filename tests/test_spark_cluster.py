"""Scoring and summarising on a real Spark cluster: Spark's standalone cluster manager (it ships
inside pyspark), a master and a worker of 2 cores started here on loopback, each a JVM of its own;
each command's executor is a JVM of its own with Python workers of their own. The commands run
as a user runs them, as subprocesses: `python -m gender score --spark --master spark://...` (the
driver ships `gender` with `addPyFile`; the executors' Python named by PYSPARK_PYTHON), the
README's `spark-submit --py-files gender.zip submit.py score --spark ...` (client mode, the Python
environment shipped with `--archives`), and `python -m gender summarize --spark --master
spark://...` (Spark SQL only). The two score runs are not one path twice: neither ships the
package nor names the executors' Python as the other does. Their answers must be the
single-machine ones; the master must list each job as a finished application and the worker's
folder must hold its executor's log, with the tasks it ran.

One worker, not several: what is proven (the application FINISHED on the master, run by an
executor the worker started) needs one, and each worker is one more JVM to start on CI's 2 cores.
The JVMs are the cost (the demo's 3,000 sessions take seconds), so the test's spark-defaults.conf
(SPARK_DEFAULTS) turns off what a test does not need; none of it is read by the commands' code.

The executors' Python is not the Python running the tests: it is an environment of its own
(`python -m venv`) that reaches this venv's packages (pandas, scikit-learn, LightGBM, pyspark) but
not the project's editable install, so `gender` reaches the executors only as Spark ships it, as
on a node that never saw the project (the README's packed environment, on one machine).

Everything started is torn down, also on failure, and no process of it may be left. Without
pyspark or Java these tests skip as tests/test_spark.py's do; CI (GENDER_TEST_REQUIRE_ALL=1)
fails on a skip, and `make test` installs both.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gender import db, serve, summary
from tests import live
from tests.conftest import PROJECT, spark_missing

pytestmark = pytest.mark.slow

SALT, SHARE = "cluster-test", "0.4"  # not the defaults: the settings must reach the executors
STARTUP_SECONDS = 120  # for the master to see the worker ALIVE (JVM starts on 2 shared cores)
JOB_SECONDS = 300  # one command, from its start to its exit
# The test's spark-defaults.conf, read by every driver (pyspark's and spark-submit's launcher) and
# not by the commands' code: what a small cluster's operator would set. No application web UI;
# few shuffle partitions for 3,000 sessions; a small executor on the worker's 2 cores. Short-lived
# JVMs compile with C1 only and collect with the serial collector (the daemons too, by
# SPARK_DAEMON_JAVA_OPTS): measured, a third of the run's CPU less.
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
SPARK_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.executor.cores": "2",
    "spark.executor.memory": "512m",
    "spark.driver.extraJavaOptions": JVM_OPTIONS,
    "spark.executor.extraJavaOptions": JVM_OPTIONS,
}


# -- processes: every one started in a process group of its own, all of them ended --------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _alive_in_group(pgid: int) -> list[str]:
    """The processes of a process group that have not ended (zombies count as ended)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if int(rest[2]) == pgid and rest[0] not in ("Z", "X"):
            alive.append(f"{stat.parent.name} ({name})")
    return alive


def _end_group(pgid: int) -> None:
    """TERM (Spark's daemons stop their executors on it), then KILL what is left."""
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while _alive_in_group(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _alive_in_group(pgid):
            return


@dataclass
class Cluster:
    master: str  # spark://127.0.0.1:PORT
    ui: str  # the master's web UI: http://127.0.0.1:PORT
    work_dir: Path  # the worker's folder: app-*/EXECUTOR_ID/stderr
    env: dict[str, str]  # the environment the cluster's and the drivers' processes start from
    root: Path  # the cluster's folder: conf/, the daemons' logs, the executors' environment
    executor_env: Path | None = None  # the executors' Python environment (a folder, and a .tar.gz beside it)
    groups: list[int] = field(default_factory=list)  # every process group started
    daemons: dict[str, subprocess.Popen] = field(default_factory=dict)  # master, worker: their logs are ROOT/NAME.log

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=10) as answer:
            return json.load(answer)

    def finished_apps(self) -> dict[str, dict]:
        return {app["id"]: app for app in self.state()["completedapps"]}

    def run(self, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
        """A command as a user runs it; its process group (the driver's JVM too) is ended after."""
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        self.groups.append(process.pid)
        try:
            out, err = process.communicate(timeout=JOB_SECONDS)
        except subprocess.TimeoutExpired:
            _end_group(process.pid)
            out, err = process.communicate()
            pytest.fail(f"{args[:4]} ran over {JOB_SECONDS} s:\n{err[-3000:]}")
        finally:
            _end_group(process.pid)  # e.g. a driver JVM that outlived its Python
        return subprocess.CompletedProcess(args, process.returncode, out, err)


def _start(cluster: Cluster, name: str, args: list[str]) -> None:
    with (cluster.root / f"{name}.log").open("w") as output:
        process = subprocess.Popen(
            args, env=cluster.env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    cluster.groups.append(process.pid)
    cluster.daemons[name] = process


def _executor_environment(root: Path) -> Path:
    """A Python environment for the executors: a venv of this Python whose site-packages reach
    this venv's packages by a .pth line (so not the project's editable install, which lives in a
    .pth there that only a site folder's own .pth files run). Also packed as ROOT/gender-env.tar.gz,
    symlinks kept, as venv-pack packs one for nodes with the same Python."""
    env = root / "gender-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    packages = {sysconfig.get_paths()[kind] for kind in ("purelib", "platlib")}
    (site,) = env.glob("lib/python*/site-packages")
    (site / "gender-lens-packages.pth").write_text("".join(f"{path}\n" for path in sorted(packages)))
    with tarfile.open(root / "gender-env.tar.gz", "w:gz") as packed:
        for path in sorted(env.iterdir()):
            packed.add(path, path.name)
    python = env / "bin" / "python"
    probe = "import pandas, sklearn, lightgbm, pyarrow, pyspark; import gender"
    result = subprocess.run([python, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120)
    # the packages are there; the project is not: gender must come from Spark
    assert "No module named 'gender'" in result.stderr, result.stderr
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The master and a worker of 2 cores, once the master lists the worker ALIVE (their JVMs
    start while the executors' environment is built); all of it ended afterwards."""
    reason = spark_missing()
    if reason:
        pytest.skip(reason)
    import pyspark

    root = tmp_path_factory.mktemp("cluster")
    spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_")) and k != "PYTHONPATH"}
    conf_dir = root / "conf"  # no spark-defaults.conf but the test's
    conf_dir.mkdir()
    (conf_dir / "spark-defaults.conf").write_text("".join(f"{key} {value}\n" for key, value in SPARK_DEFAULTS.items()))
    env.update(SPARK_LOCAL_IP="127.0.0.1", SPARK_CONF_DIR=str(conf_dir), SPARK_DAEMON_MEMORY="512m")
    env["SPARK_DAEMON_JAVA_OPTS"] = JVM_OPTIONS
    env["SPARK_MASTER_OPTS"] = "-Dspark.master.rest.enabled=false"  # no REST server on the fixed port 6066
    port, ui = _free_port(), _free_port()
    cluster = Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}", root / "worker", env, root)
    cluster.work_dir.mkdir()
    try:
        _start(cluster, "master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
               + ["--port", str(port), "--webui-port", str(ui)])  # fmt: skip
        # at once: the worker retries until the master listens
        worker = ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "2", "--memory", "1g"]
        worker += ["--work-dir", str(cluster.work_dir), "--webui-port", str(_free_port()), cluster.master]
        _start(cluster, "worker", [spark_class, *worker])
        cluster.executor_env = _executor_environment(root)
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            for name, process in cluster.daemons.items():
                if process.poll() is not None:
                    pytest.fail(f"the {name} stopped:\n{(root / f'{name}.log').read_text()[-3000:]}")
            with contextlib.suppress(OSError):  # until the web UI is up
                if [each["state"] for each in cluster.state()["workers"]] == ["ALIVE"]:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"the worker is not ALIVE after {STARTUP_SECONDS} s")
            time.sleep(0.5)
        yield cluster
    finally:
        for pgid in reversed(cluster.groups):
            _end_group(pgid)
        for process in cluster.daemons.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        left = {pgid: who for pgid in cluster.groups if (who := _alive_in_group(pgid))}
        assert not left, f"processes left behind: {left}"


# -- what the answers must be ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def expected(trained_demo) -> pd.DataFrame:
    """Every session as the single-machine service scores it: its A/B group by `serve.group_of`
    with the test's salt and share, that group's model, P(male) from `score.score`."""
    from gender import spark as gspark
    from gender.features import session_frame
    from gender.score import score

    url, model_dir = trained_demo
    models = gspark.load_models(model_dir)
    assert models.control is not None
    frame = session_frame(*db.read_sessions(db.connect(url), "all"))
    groups = np.array([serve.group_of(session_id, SALT, float(SHARE)) for session_id in frame.index])
    return (
        pd.concat(
            score(models.of(group), frame[groups == group]).assign(model_id=models.of(group).model_id, ab_group=group)
            for group in serve.GROUPS
        )
        .set_index("session_id")
        .sort_index()
    )


def driver_env(cluster: Cluster, **extra: str) -> dict[str, str]:
    return {**cluster.env, "GENDER_AB_SALT": SALT, "GENDER_TREATMENT_SHARE": SHARE, **extra}


def assert_scores(out: Path, expected: pd.DataFrame) -> None:
    assert (out / "_SUCCESS").is_file()
    got = pd.read_parquet(out)
    assert list(got.columns) == ["session_id", "p_male", "prediction", "model_id", "ab_group"]
    assert got["session_id"].is_unique and len(got) == len(expected) == 3_000  # every session once
    got = got.set_index("session_id").sort_index()
    assert list(got.index) == list(expected.index)
    assert np.abs(got["p_male"].to_numpy() - expected["p_male"].to_numpy()).max() <= 1e-9
    for column in ("prediction", "model_id", "ab_group"):
        assert (got[column] == expected[column]).all(), column
    assert set(got["ab_group"]) == {"treatment", "control"}


def assert_ran_on_the_cluster(cluster: Cluster, before: set[str]) -> dict:
    """One new application, FINISHED on the master, with an executor on the worker (its folder in
    the worker's work dir) and tasks run by the executors (their logs say so)."""
    apps = cluster.finished_apps()
    new = set(apps) - before
    assert len(new) == 1, f"applications finished on the master: {sorted(apps)}, before: {sorted(before)}"
    app = apps[new.pop()]
    assert app["state"] == "FINISHED", app
    logs = list((cluster.work_dir / app["id"]).glob("*/stderr"))
    assert logs, f"no executor of {app['id']} in {cluster.work_dir}"
    assert any("Finished task" in path.read_text(errors="replace") for path in logs)
    return app


# -- the tests -------------------------------------------------------------------------------------


def test_score_with_master_url_runs_on_the_cluster(cluster, trained_demo, lake_dir, expected, tmp_path):
    """`python -m gender score --spark --master spark://...`: this process is the driver; the
    executors' Python is named by PYSPARK_PYTHON (an environment on the "nodes")."""
    _, model_dir = trained_demo
    before = set(cluster.finished_apps())
    env = driver_env(cluster, PYSPARK_PYTHON=str(cluster.executor_env / "bin" / "python"))
    out = tmp_path / "scores"
    result = cluster.run(
        [sys.executable, "-m", "gender", "score", "--spark", "--parquet", str(lake_dir), "--out", str(out)]
        + ["--master", cluster.master, "--model-dir", str(model_dir)],
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert "scored 3,000 sessions on Spark" in result.stderr and "40% of sessions in treatment" in result.stderr
    assert_scores(out, expected)
    assert_ran_on_the_cluster(cluster, before)


def test_the_readme_spark_submit_recipe_runs_on_the_cluster(cluster, trained_demo, lake_dir, expected, tmp_path):
    """README "On a cluster", client mode, as written there: gender.zip and submit.py made by the
    README's commands, `spark-submit --archives gender-env.tar.gz#environment --conf
    spark.pyspark.python=./environment/bin/python --py-files gender.zip submit.py score --spark
    ...`, with paths relative to the driver's folder."""
    _, model_dir = trained_demo
    job = tmp_path / "job"
    job.mkdir()
    shutil.copytree(model_dir, job / "models")
    shutil.copytree(lake_dir, job / "lake")
    shutil.copy(cluster.executor_env.parent / "gender-env.tar.gz", job)
    subprocess.run(
        [sys.executable, "-m", "zipfile", "-c", str(job / "gender.zip"), f"{PROJECT / 'gender'}/"], check=True
    )
    (job / "submit.py").write_text("import sys\nfrom gender.cli import main\nsys.exit(main())\n")
    before = set(cluster.finished_apps())
    spark_submit = Path(sys.executable).parent / "spark-submit"  # pyspark brings it into .venv/bin/
    result = cluster.run(
        [str(spark_submit), "--master", cluster.master, "--archives", "gender-env.tar.gz#environment"]
        + ["--conf", "spark.pyspark.python=./environment/bin/python"]
        + ["--conf", f"spark.pyspark.driver.python={sys.executable}", "--py-files", "gender.zip", "submit.py"]
        + ["score", "--spark", "--parquet", "lake", "--out", "scores", "--model-dir", "models"],
        cwd=job,
        # as in a shell with the venv active: spark-submit finds Spark through the python3 on PATH
        env=driver_env(cluster, PATH=f"{Path(sys.executable).parent}{os.pathsep}{cluster.env.get('PATH', '')}"),
    )
    said = result.stdout + result.stderr  # spark-submit passes the Python driver's stderr on as its stdout
    assert result.returncode == 0, said[-5000:]
    assert "scored 3,000 sessions on Spark" in said and "40% of sessions in treatment" in said, said[-5000:]
    assert_scores(job / "scores", expected)
    app = assert_ran_on_the_cluster(cluster, before)
    # the executors unpacked the environment and ran their Python from it
    unpacked = list((cluster.work_dir / app["id"]).glob("*/environment"))
    assert unpacked and all((path / "bin" / "python").exists() for path in unpacked)


def _load(url: str) -> summary.Summaries:
    engine = db.connect(url)
    try:
        return summary.load(engine)
    finally:
        engine.dispose()


def test_summarize_on_the_cluster_equals_the_database_queries(cluster, trained_demo, lake_dir, tmp_path):
    url, _ = trained_demo
    by_sql_url = live.sqlite_copy(url, tmp_path / "by-sql.db")  # the shared demo database stays as it is
    engine = db.connect(by_sql_url)
    summary.summarize_database(engine)
    engine.dispose()

    before = set(cluster.finished_apps())
    into = f"sqlite:///{tmp_path / 'by-spark.db'}"
    result = cluster.run(
        [sys.executable, "-m", "gender", "summarize", "--spark", "--parquet", str(lake_dir)]
        + ["--master", cluster.master, "--db", into],
        cwd=tmp_path,
        env=driver_env(cluster, PYSPARK_PYTHON=str(cluster.executor_env / "bin" / "python")),
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert "with Spark SQL" in result.stderr
    by_sql, by_spark = _load(by_sql_url), _load(into)
    for name in ("categories", "branches", "activity", "paths"):
        pd.testing.assert_frame_equal(getattr(by_spark, name), getattr(by_sql, name), check_dtype=False, obj=name)
    counts = ("sessions", "labelled", "male", "views")
    assert [getattr(by_spark.info, n) for n in counts] == [getattr(by_sql.info, n) for n in counts]
    assert (by_spark.info.engine, by_spark.info.sessions) == ("spark", 3_000)
    assert_ran_on_the_cluster(cluster, before)
