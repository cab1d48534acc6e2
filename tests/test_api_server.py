"""`python -m gender api`: the HTTP routes served alone by uvicorn, in one process or several,
driven by a real HTTP client (urllib, a new connection a request, so the workers share them)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from gender import artifact, db, serve
from gender.answers import Prediction
from tests import live
from tests.conftest import PROJECT


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def samples(metrics_text: str, name: str) -> list:
    return [
        sample
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == name
    ]


@contextmanager
def api_process(
    url: str, model_dir, log_path: Path, workers: int, port: int | None = None, host: str = "127.0.0.1", prefix=()
) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, process) of `python -m gender api --workers N` (run by `prefix`, a command that
    execs it, if given), once /api/health answers 200; killed with its workers afterwards, and its
    output checked for tracebacks."""
    port = port or live.free_port()
    command = ["api", "--db", url, "--model-dir", model_dir, "--host", host, "--port", port, "--workers", workers]
    log = log_path.open("w")
    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", "gender", *map(str, command)],
        cwd=PROJECT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("GENDER_", "PROMETHEUS_"))},
        start_new_session=True,  # its own process group: the workers stop with it
    )
    base = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 120
        # Every worker serving: each listens once its models are loaded, and one killed before
        # that stops the command (a worker that never served), as it should.
        while get_or_none(f"{base}/api/health") != 200 or listening(host, port) < workers:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        yield base, process
    finally:
        if process.poll() is None:  # as a supervisor stops it: the command removes its metrics folder
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
        log.close()
    printed = log_path.read_text()
    assert "Traceback" not in printed and '"GET /' not in printed  # no access log: /metrics counts requests


@pytest.fixture(params=[1, 2], ids=["one process", "two workers"])
def api_server(request, trained_demo, tmp_path):
    """(base URL, database URL, model folder, process) of `python -m gender api --workers N` on a
    copy of the trained demo database (its prediction log is this test's own)."""
    source, model_dir = trained_demo
    url = live.sqlite_copy(source, tmp_path / "demo.db", empty_log=True)
    with api_process(url, model_dir, tmp_path / "api.log", request.param) as (base, process):
        yield base, url, model_dir, process


def get_or_none(url: str) -> int | None:
    try:
        return get(url)[0]
    except OSError:
        return None


def test_the_routes_answer_as_in_process_and_metrics_add_up_over_the_workers(api_server):
    base, url, model_dir, process = api_server
    engine, models = db.connect(url), artifact.current(model_dir)
    with engine.connect() as conn:
        ids = conn.execute(select(db.session.c.session_id).order_by(db.session.c.session_id).limit(50)).scalars().all()
    served = {}

    def predict(session_id: str) -> None:
        status, body = get(f"{base}/predict/{quote(session_id, safe='')}")
        assert status == 200
        expected = serve.serve(engine, models, session_id, "gender-lens", 0.5, explain=False)
        assert json.loads(body) == (expected.as_json() if expected else Prediction.unknown(session_id).as_json())
        if expected:
            served[session_id] = expected

    for session_id in [*ids[:40], "no-such-session"]:
        predict(session_id)
    status, body = get(f"{base}/count/{quote(ids[0], safe='')}/no-such-category")
    assert (status, json.loads(body)["COUNT"]) == (200, 0)

    status, body = get(f"{base}/metrics")  # one process answers, for all of them
    assert status == 200
    text = body.decode()
    requests = samples(text, "gender_http_requests_total")
    predict_ok = [s.value for s in requests if s.labels["route"].startswith("/predict") and s.labels["status"] == "200"]
    assert sum(predict_ok) == 41
    assert sum(s.value for s in samples(text, "gender_predictions_served_total")) == len(served)
    serving = {s.labels["model_id"] for s in samples(text, "gender_model_info") if s.value == 1}
    assert serving == {models.treatment.model_id, models.control.model_id}

    # The prediction log's rows, each worker's written a fifth of a second behind its answers: summed.
    def log_settled(text: str) -> bool:  # every row written and none waiting, in one scrape
        written = sum(s.value for s in samples(text, "gender_prediction_log_rows_written_total"))
        return written >= len(served) and sum(s.value for s in samples(text, "gender_prediction_log_rows_waiting")) == 0

    deadline = time.monotonic() + 60  # not a timing: the deadline only ends a hang
    while not log_settled(text):
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
        text = get(f"{base}/metrics")[1].decode()
    assert sum(s.value for s in samples(text, "gender_prediction_log_rows_written_total")) == len(served)
    for counter in ("gender_prediction_log_rows_dropped_total", "gender_prediction_log_write_failures_total"):
        assert sum(s.value for s in samples(text, counter)) == 0
    waiting = samples(text, "gender_prediction_log_rows_waiting")
    assert [(s.labels, s.value) for s in waiting] == [({}, 0)]  # one sum over the workers, not one per process

    for session_id in ids[40:]:
        predict(session_id)
    process.send_signal(signal.SIGTERM)  # at once: the last answers' log rows may still be waiting
    assert process.wait(60) == -signal.SIGTERM  # ended by it, one process or workers alike (was 0 for workers)
    with engine.connect() as conn:
        logged = conn.execute(select(db.prediction_log.c.session_id, db.prediction_log.c.model_id)).all()
    assert set(map(tuple, logged)) == {(session_id, answer.prediction.model) for session_id, answer in served.items()}


@pytest.mark.parametrize(
    "broken, env, reason",
    [
        ("no model", {}, "no trained model in"),
        ("a model file cut short", {}, "does not match its recorded sha256"),
        ("a token where its hash belongs", {"GENDER_API_TOKENS_SHA256": "not-a-hash"}, "not a SHA-256 hex digest"),
        (
            "a flag that is neither",
            {"GENDER_METRICS_PUBLIC": "maybe"},
            "GENDER_METRICS_PUBLIC is 'maybe': expected 1 or 0",
        ),
    ],
)
def test_what_would_fail_every_request_stops_it_at_the_start(trained_demo, tmp_path, broken, env, reason):
    """It says why in one line and does not start, rather than answer 503 to every request."""
    url, model_dir = trained_demo
    if broken == "no model":
        model_dir = tmp_path / "none"
    elif broken == "a model file cut short":
        model_dir = shutil.copytree(model_dir, tmp_path / "models")
        control = model_dir / artifact.load_card(model_dir).slots["control"].file
        control.write_bytes(control.read_bytes()[:1000])
    result = subprocess.run(
        [sys.executable, "-m", "gender", "api", "--db", url, "--model-dir", str(model_dir), "--port", "1"],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("GENDER_")}, **env},
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert reason in result.stderr  # and it never reached the port, which it could not have bound


@pytest.mark.parametrize("api_server", [2], indirect=True, ids=["two workers"])
def test_a_worker_killed_while_serving_is_replaced_at_once(api_server, tmp_path):
    """Killed seconds after the start (an OOM kill soon after a deploy), a worker is started again
    and the other goes on answering: only a worker that never served stops the service."""
    base, _, _, process = api_server
    workers = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and parent_of(int(pid)) == process.pid]
    workers = [pid for pid in workers if "spawn" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 2, workers
    folder = Path(tempfile.gettempdir()) / f"gender-metrics-{base.rsplit(':', 1)[1]}"
    assert (folder / f"gauge_livesum_{workers[0]}.db").exists()  # its prediction log's rows waiting
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 120
    while "starting another" not in (tmp_path / "api.log").read_text():
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "api.log").read_text()
        time.sleep(0.2)
    assert "an API worker ended (killed by signal 9); starting another" in (tmp_path / "api.log").read_text()
    # The dead worker's gauges leave the sums (a killed worker's waiting rows would count forever), its counters stay.
    assert not list(folder.glob(f"gauge_*_{workers[0]}.db")) and (folder / f"counter_{workers[0]}.db").exists()
    for _ in range(20):  # new connections spread over both sockets again
        assert get(f"{base}/predict/u10003")[0] == 200
    assert process.poll() is None


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "two workers"])
def test_a_port_in_use_is_refused_in_one_line(trained_demo, tmp_path, workers):
    """A port another server listens on: one line and exit 1, never a second server sharing it (the
    workers' SO_REUSEPORT sockets must not join somebody else's)."""
    url, model_dir = trained_demo
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = ["api", "--db", url, "--model-dir", str(model_dir), "--port", str(port), "--workers", str(workers)]
        result = subprocess.run(
            [sys.executable, "-m", "gender", *command], capture_output=True, text=True, cwd=PROJECT, timeout=120
        )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: 127.0.0.1:{port} is already in use; choose another with --port"


def request_count(base: str) -> float:
    status, body = get(f"{base}/metrics")
    assert status == 200, body[:300]
    return sum(s.value for s in samples(body.decode(), "gender_http_requests_total"))


@pytest.mark.parametrize("api_server", [2], indirect=True, ids=["two workers"])
def test_a_second_server_on_the_port_leaves_the_first_ones_metrics_alone(api_server, tmp_path):
    """The workers count in `gender-metrics-PORT`. A second start on the port, refused as it is
    taken, emptied and then removed that folder: the first server's /metrics was 500 from then on.
    A second server on the same port of another address must count in a folder of its own."""
    base, url, model_dir, _ = api_server
    port = int(base.rsplit(":", 1)[1])
    folder = Path(tempfile.gettempdir()) / f"gender-metrics-{port}"
    for _ in range(5):
        assert get(f"{base}/predict/u10003")[0] == 200
    counted = request_count(base)
    files = set(folder.iterdir())  # a worker that has not answered yet adds its own later
    assert files

    command = ["api", "--db", url, "--model-dir", str(model_dir), "--port", str(port), "--workers", "2"]
    refused = subprocess.run(
        [sys.executable, "-m", "gender", *command], capture_output=True, text=True, cwd=PROJECT, timeout=120
    )
    assert refused.returncode == 1 and "is already in use" in refused.stderr
    assert files <= set(folder.iterdir())
    assert request_count(base) == counted + 1  # the /metrics before, every worker's counts kept

    with api_process(url, model_dir, tmp_path / "beside.log", 2, port=port, host="127.0.0.2") as (beside, process):
        assert get(f"{beside}/predict/u10003")[0] == 200
        assert request_count(beside) < counted  # its own counts, not the first server's
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == -signal.SIGTERM
    assert files <= set(folder.iterdir())
    assert request_count(base) == counted + 2


def listening(host: str, port: int) -> int:
    """How many sockets listen on host:port, an IPv4 address (each serving worker has one of its own)."""
    address = f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}"  # as /proc/net/tcp writes it
    lines = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for fields in lines if fields[1] == address and fields[3] == "0A")  # 0A: LISTEN


def test_every_worker_loads_the_models_before_it_takes_a_request(trained_demo, tmp_path):
    """The models were loaded at each worker's first request: when the files were replaced by ones
    that do not load, a worker that had not answered yet loaded those and answered 503 to every
    request while the other served, and /api/health flipped between them. Each worker loads them
    at its start, and listens only then: the files that do not load leave the models serving."""
    source, trained = trained_demo
    url = live.sqlite_copy(source, tmp_path / "demo.db", empty_log=True)
    model_dir = shutil.copytree(trained, tmp_path / "models")
    port = live.free_port()
    with api_process(url, model_dir, tmp_path / "api.log", 2, port=port) as (base, process):  # both listening
        with (model_dir / artifact.load_card(model_dir).slots["treatment"].file).open(
            "ab"
        ) as model_file:  # a retrain's files that do not load
            model_file.write(b"garbage")
        metadata = model_dir / "metadata.json"
        os.utime(metadata, ns=(metadata.stat().st_atime_ns, metadata.stat().st_mtime_ns + 10**9))

        assert [get(f"{base}/predict/u10003")[0] for _ in range(30)] == [200] * 30  # new connections: both workers
        deadline = time.monotonic() + 120
        while True:  # each worker tries the new files on a thread of its own, and says so once it has
            answers = [get(f"{base}/api/health") for _ in range(20)]
            assert all(status == 200 for status, _ in answers), answers
            if all(json.loads(body)["STATUS"] == "degraded" for _, body in answers):
                break
            assert time.monotonic() < deadline, answers
            time.sleep(0.2)
        assert "does not match its recorded sha256" in json.loads(answers[0][1])["MODEL_WARNING"]


@pytest.mark.parametrize(
    "workers, sigint",
    [(1, "default"), (1, "ignored"), (2, "default")],
    ids=["one process", "one process started with SIGINT ignored", "two workers"],
)
def test_ctrl_c_says_interrupted_and_exits_130_once_every_answer_is_logged(trained_demo, tmp_path, workers, sigint):
    """README: Ctrl+C says `interrupted` and exits with 130. With two workers the command exited 0
    without a word, and so did one process started with SIGINT ignored (a background job of a
    script's shell): uvicorn stops on SIGINT all the same, then raised it again into the ignored
    disposition. The server's graceful shutdown still comes first: every answer is in the log."""
    source, model_dir = trained_demo
    url = live.sqlite_copy(source, tmp_path / "demo.db", empty_log=True)
    engine = db.connect(url)
    with engine.connect() as conn:
        ids = conn.execute(select(db.session.c.session_id).order_by(db.session.c.session_id).limit(30)).scalars().all()
    prefix = ("sh", "-c", 'trap "" INT; exec "$@"', "sh") if sigint == "ignored" else ()
    with api_process(url, model_dir, tmp_path / "api.log", workers, prefix=prefix) as (base, process):
        assert all(get(f"{base}/predict/{quote(session_id, safe='')}")[0] == 200 for session_id in ids)
        os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl+C: the whole foreground group, at once
        assert process.wait(60) == 130
    assert (tmp_path / "api.log").read_text().strip().splitlines()[-1] == "interrupted"
    with engine.connect() as conn:
        logged = conn.execute(select(db.prediction_log.c.session_id)).scalars().all()
    assert sorted(logged) == sorted(ids)
