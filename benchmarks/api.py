"""Load on the HTTP service, both ways we deploy it: our one server (`streamlit run
streamlit_app.py`: dashboard and API) and the API alone (`python -m gender api --workers N`, the
dashboard's server running beside it), against the original Flask service re-created
(benchmarks/flask_original.py), in the same run.

For each server and route (/predict/{id}, /count/{id}/{category}), --clients concurrent clients
(each one keep-alive connection, a request as soon as the last answer arrived) for --seconds
seconds, on the real PAKDD'15 logs: requests per second, p50/p99 latency, errors (a status other
than 200, a timeout or a broken connection) and the server's peak resident memory. Ids are drawn
at random from every session of the database (a tenth of them unknown ids); categories are one of
the session's own at a random level, or (a third of the time) one it never viewed.

While our /predict is under load (either way), a headless Chromium opens the dashboard's Predict page on a
session every few seconds: the dashboard must keep answering (time until "Predicted gender" shows).

    .venv/bin/python benchmarks/api.py                      # 50 clients, 60 s a route and server
    .venv/bin/python benchmarks/api.py --clients 10 --seconds 10
    .venv/bin/python benchmarks/api.py --no-browser            # nothing but the load on the cores
    .venv/bin/python benchmarks/api.py --server-cpu 3000 --clients 10   # our server's CPU per request

Loopback only; the database is a copy of the real logs in data/bench/api_pakdd.db, the models
those `python -m gender train` made in data/bench/models-api (trained first when missing).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from common import BENCH_DATA, PROJECT, header, load_average, ms, percentile, real_engine, table, uptime
from common import gender as gender_command

from gender import db
from tests import live

MAX_CLIENTS, MAX_SECONDS = 50, 300  # a load on this machine's loopback, not a stress tool
DB_FILE = BENCH_DATA / "api_pakdd.db"
MODEL_DIR = BENCH_DATA / "models-api"


# -- a small keep-alive HTTP/1.1 client: light enough that the clients leave the cores to the servers


class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def get(self, path: str, timeout: float = 30) -> int:
        """The status of GET path (the body read and dropped); reconnects when the server closed."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        request = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        self.writer.write(request)
        async with asyncio.timeout(timeout):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            if "content-length" in headers:
                await self.reader.readexactly(int(headers["content-length"]))
            else:
                await self.reader.read()  # until the server closes
                headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close" or lines[0].startswith("HTTP/1.0"):
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the server's CPU time (all its threads, user + system) during the load
    # The clients' connections held by each process of the server, 5 s in (or halfway). With keep-alive
    # they stay where the kernel put them: workers with 31 and 19 of 50 answer the 31's clients later.
    connections: list[int] = field(default_factory=list)


def cpu_seconds(pid: int) -> float:
    """CPU time a process and its children (a server's workers) have used so far, user and
    system, all their threads (from /proc)."""
    total = 0.0
    for proc in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{proc}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
        except OSError:  # a child that has just ended
            pass
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the server's own process here), in MB."""
    total = 0.0
    for proc in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def connections_by_process(port: int) -> list[int]:
    """How many established connections to `port` each process listening on it holds, most first (`ss`)."""
    listing = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True
    ).stdout
    holders = collections.Counter(line.partition("pid=")[2].partition(",")[0] for line in listing.splitlines())
    return sorted(holders.values(), reverse=True)


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


async def drive(
    base: str, paths: list[str], clients: int, seconds: float, pid: int, requests: int | None = None
) -> Result:
    """`clients` keep-alive clients, each asking the next path as soon as its last answer came, for
    `seconds`, or (`requests`) until that many requests have been sent, whatever the time."""
    host, port = base.removeprefix("http://").split(":")
    result = Result()
    stop = time.monotonic() + seconds
    sent = 0

    def more() -> bool:
        nonlocal sent
        sent += 1
        return time.monotonic() < stop and (requests is None or sent <= requests)

    async def client(seed: int):
        rng, connection = random.Random(seed), Connection(host, int(port))
        while more():
            path = rng.choice(paths)
            started = time.perf_counter()
            try:
                status = await connection.get(path)
                if status != 200:
                    result.errors.append(f"status {status}")
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                result.errors.append(type(exc).__name__)
                connection.close()
            result.latencies.append(time.perf_counter() - started)
        connection.close()

    async def watch_server():
        """Its peak memory, each second; the connections each of its processes holds, 5 s in (or halfway)."""
        for second in itertools.count():
            result.peak_rss_mb = max(result.peak_rss_mb, rss_mb(pid))
            if second == min(5, int(seconds // 2)):
                result.connections = connections_by_process(int(port))
            await asyncio.sleep(1)

    started, cpu = time.monotonic(), cpu_seconds(pid)
    watch = asyncio.create_task(watch_server())
    await asyncio.gather(*(client(seed) for seed in range(clients)))
    result.seconds = time.monotonic() - started
    result.cpu_seconds = cpu_seconds(pid) - cpu
    watch.cancel()
    return result


async def dashboard_checks(base: str, session_id: str, seconds: float) -> list[float | str]:
    """Open the Predict page on a session in Chromium every few seconds while the load runs:
    seconds until "Predicted gender" shows, or the error."""
    from playwright.async_api import async_playwright

    times: list[float | str] = []
    stop = time.monotonic() + seconds
    async with async_playwright() as playwright:
        browser = await live.launch_chromium(playwright)
        await asyncio.sleep(3)  # let the load start first
        while time.monotonic() < stop - 5:
            page = await browser.new_page()
            started = time.perf_counter()
            try:
                await page.goto(f"{base}/?session={quote(session_id)}", timeout=60_000)
                await page.wait_for_selector('[data-testid="stMetric"]:has-text("Predicted gender")', timeout=60_000)
                times.append(time.perf_counter() - started)
            except Exception as exc:  # a timeout or a page error: the dashboard did not answer
                times.append(f"{type(exc).__name__}")
            await page.close()
            await asyncio.sleep(5)
        await browser.close()
    return times


# -- the servers ------------------------------------------------------------------------------------


def prepare(model_dir: Path) -> None:
    """The copy of the real logs and its models (trained here when missing)."""
    if not DB_FILE.is_file():
        source = real_engine()  # data/bench/pakdd.db, imported once
        path = source.url.database
        source.dispose()
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as src, sqlite3.connect(DB_FILE) as dst:
            src.backup(dst)
    if not (model_dir / "metadata.json").is_file():
        print("  .. training the models on the real logs (minutes)", file=sys.stderr, flush=True)
        command = [sys.executable, "-m", "gender", "train", "--db", f"sqlite:///{DB_FILE}", "--model-dir"]
        subprocess.run([*command, str(model_dir)], check=True, cwd=PROJECT)


def fresh_database(tmp: Path) -> str:
    """A copy of the database per run, so every run starts with an empty prediction log."""
    target = tmp / "api_pakdd.db"
    shutil.copyfile(DB_FILE, target)
    with sqlite3.connect(target) as conn:
        conn.execute("DROP TABLE IF EXISTS prediction_log")
    return f"sqlite:///{target}"


class Server:
    """A server process on a free loopback port, its output in `log`, its own process group."""

    def __init__(self, command: list[str], log: Path, ready_path: str, seconds: float, name: str):
        self.port = live.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [*command, str(self.port)], cwd=PROJECT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + seconds
        while True:
            try:
                urllib.request.urlopen(self.base + ready_path, timeout=60).read()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"{name} did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.5)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)  # the server and its workers
        self.process.wait(timeout=60)
        self.log.close()


def flask_server(url: str, model_dir: Path, log: Path) -> Server:
    """The original service re-created; it loads both tables into arrays first."""
    command = [sys.executable, str(PROJECT / "benchmarks" / "flask_original.py"), url, str(model_dir)]
    return Server(command, log, "/count/x/y", 300, "the Flask service")


def api_server(url: str, model_dir: Path, workers: int, log: Path) -> Server:
    """`python -m gender api --workers N`: the HTTP routes alone, as the README deploys them."""
    command = gender_command("api", "--db", url, "--model-dir", str(model_dir), "--workers", str(workers), "--port")
    return Server(command, log, "/api/health", 120, "the API")


def workload(url: str, rng: random.Random) -> dict[str, list[str]]:
    """Request paths for each route, ids and categories percent-encoded."""
    engine = db.connect(url)
    sessions, views = db.read_sessions(engine, "all")
    engine.dispose()
    ids = list(sessions["session_id"])
    by_session = views.groupby("session_id")
    predict = [f"/predict/{quote(rng.choice(ids), safe='')}" for _ in range(20_000)]
    predict += [f"/predict/u{rng.randrange(90_000, 99_999)}" for _ in range(2_000)]  # unknown ids
    count = []
    for _ in range(20_000):
        session_id = rng.choice(ids)
        own = by_session.get_group(session_id)
        if rng.random() < 2 / 3:
            category = own.iloc[rng.randrange(len(own))][f"category_{rng.choice('abcd')}"]
        else:
            category = f"C{rng.randrange(90_000, 99_999)}"
        count.append(f"/count/{quote(session_id, safe='')}/{quote(category, safe='')}")
    return {"predict": predict, "count": count}


# -- CPU per answer, in process ----------------------------------------------------------------------


def cpu_per_answer(url: str, model_dir: Path, n: int) -> None:
    """CPU time (time.process_time: this process, answering from one thread) per answer by part,
    over n real sessions drawn at random: the Predict page's path (pipeline) against the API's
    (gender.fast), and the largest difference of their P(male). Other work on the machine moves
    it far less than requests per second (it still inflates both paths alike on a busy machine)."""
    from gender import artifact, fast, serve
    from gender.session import Session

    engine, models = db.connect(url), artifact.load(model_dir)
    with engine.connect() as conn:
        ids = [row[0] for row in conn.exec_driver_sql("SELECT session_id FROM session").all()]
    ids = random.Random(1).sample(ids, min(n, len(ids)))
    groups = {sid: serve.group_of(sid, "gender-lens", 0.5) for sid in ids}
    for model in (models.treatment, models.control):  # compiled and warm before timing
        fast.FastModel.of(model).p_male(fast.load_session(engine, ids[0]))
        model.p_male(Session.load(engine, ids[0]).frame)

    def per_answer(step, inputs) -> tuple[float, list]:
        started, out = time.process_time(), [step(x) for x in inputs]
        return (time.process_time() - started) / max(len(inputs), 1) * 1e3, out

    rows = []
    for name, group in (("treatment", "treatment"), ("control", "control")):
        model, chosen = models.of(group), [sid for sid in ids if groups[sid] == group]
        compiled = fast.FastModel.of(model)
        # the page's path: Session.load (two queries, pandas), its one-row frame, the pipeline
        load_ms, records = per_answer(lambda sid: Session.load(engine, sid), chosen)
        frame_ms, frames = per_answer(lambda record: record.frame, records)
        features_ms, matrices = per_answer(model.features, frames)
        p_ms, slow = per_answer(lambda m, model=model: float(model.p_male_of(m)[0]), matrices)
        rows.append([f"{name} ({model.candidate}), page path", len(chosen), load_ms, frame_ms, features_ms, p_ms])
        # the API's path: one query, the compiled row, the estimators directly
        fresh = [Session.load(engine, sid) for sid in chosen]  # a new Session: no cached frame
        load_ms, _ = per_answer(lambda sid: fast.load_session(engine, sid), chosen)
        row_ms, feature_rows = per_answer(compiled.row, fresh)
        p_ms, quick = per_answer(compiled.p_male_of, feature_rows)
        rows.append([f"{name} ({model.candidate}), fast path", len(chosen), load_ms, 0.0, row_ms, p_ms])
        worst = max(abs(a - b) for a, b in zip(slow, quick))
        print(f"  {name}: largest |P(male) page - fast| over {len(chosen)} sessions: {worst:.2e}")
    headers = ["path", "sessions", "session rows", "session frame", "features", "P(male)", "total"]
    print(table(headers, [[*r[:2], *(f"{v:.3f} ms" for v in r[2:]), f"{sum(r[2:]):.3f} ms"] for r in rows]))
    engine.dispose()


# -- our server's CPU per request, from /proc ---------------------------------------------------------


def idle_cpu_rate(pid: int, seconds: float) -> float:
    """CPU seconds a second the server spends with no request (Streamlit's own timers and threads)."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def server_cpu(model_dir: Path, requests: int, clients: int, rounds: int) -> None:
    """Our server alone: `requests` requests a route from `clients` keep-alive clients, `rounds`
    times, the routes taking turns; the server process's CPU time per request (every thread, user
    and system, from /proc, less its idle rate over the same time). A fixed number of requests,
    not a fixed time: what an answer costs the server, which other work on the machine moves far
    less than requests per second or latency (both printed too, for short comparisons)."""
    from gender.serve import LogWriter

    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        url = fresh_database(tmp)
        paths = workload(url, rng)
        env = {"GENDER_DB_URL": url, "GENDER_MODEL_DIR": str(model_dir)}
        for name in ("GENDER_ALLOWED_USERS", "GENDER_API_TOKENS_SHA256"):
            os.environ.pop(name, None)  # the open demo: no token to send
        with live.streamlit_server(env, tmp / "streamlit.log") as (base, process):
            pid = process.pid
            for route in ("predict", "count"):  # models loaded, pools and caches warm
                asyncio.run(drive(base, paths[route], clients, MAX_SECONDS, pid, requests=min(requests, 500)))
            time.sleep(1)
            idle = idle_cpu_rate(pid, 3)
            print(f"server idle: {idle * 1e3:.1f} ms CPU a second; {load_average()} load\n", flush=True)
            rows, per_request = [], {"predict": [], "count": []}
            for turn in range(1, rounds + 1):
                for route in ("predict", "count"):
                    before, started = cpu_seconds(pid), time.monotonic()
                    result = asyncio.run(drive(base, paths[route], clients, MAX_SECONDS, pid, requests=requests))
                    time.sleep(LogWriter.LINGER + 0.3)  # the prediction log's last batch is written: its cost is theirs
                    used = cpu_seconds(pid) - before - idle * (time.monotonic() - started)
                    done = len(result.latencies)
                    per_request[route].append(used / max(done, 1))
                    rows.append(
                        [
                            f"/{route}",
                            turn,
                            f"{done:,}",
                            f"{used / max(done, 1) * 1e3:.2f} ms",
                            f"{done / result.seconds:,.1f}",
                            ms(percentile(result.latencies, 0.5)),
                            ms(percentile(result.latencies, 0.99)),
                            f"{len(result.errors):,}",
                        ]
                    )
            tracebacks = "Traceback" in (tmp / "streamlit.log").read_text()
    headers = ["route", "round", "requests", "server CPU/request", "req/s", "p50", "p99", "errors"]
    print(table(headers, rows))
    print()
    for route, values in per_request.items():
        print(f"/{route}: median server CPU {statistics.median(values) * 1e3:.2f} ms a request over {rounds} rounds")
    print(f"a traceback in the server's log: {tracebacks}; uptime at end: {uptime()}")


# -- the run ------------------------------------------------------------------------------------------


def row(server: str, route: str, result: Result) -> list[str]:
    done = len(result.latencies)
    return [
        server,
        f"/{route}",
        f"{done:,}",
        f"{done / result.seconds:,.1f}",
        ms(percentile(result.latencies, 0.5)) if done else "-",
        ms(percentile(result.latencies, 0.99)) if done else "-",
        f"{len(result.errors):,}" + (f" ({', '.join(sorted(set(result.errors))[:3])})" if result.errors else ""),
        f"{result.cpu_seconds / max(done, 1) * 1e3:.2f} ms",
        f"{result.peak_rss_mb:,.0f} MB",
    ]


def main() -> None:
    from common import parser

    options = parser("Load on the HTTP service against the original Flask service, on the real logs.")
    options.add_argument("--clients", type=int, default=50, help=f"concurrent clients (at most {MAX_CLIENTS})")
    options.add_argument("--seconds", type=float, default=60, help=f"seconds a route (at most {MAX_SECONDS})")
    options.add_argument("--model-dir", type=Path, default=MODEL_DIR, help="trained models (trained here when missing)")
    options.add_argument("--cpu", type=int, metavar="N", help="only the in-process CPU per answer over N real sessions")
    options.add_argument(
        "--server-cpu",
        type=int,
        metavar="N",
        help="only our server: its CPU per request (from /proc) over N requests a route from --clients clients",
    )
    options.add_argument("--rounds", type=int, default=3, help="--server-cpu: rounds, the routes taking turns")
    options.add_argument(
        "--no-browser",
        action="store_true",
        help="no Chromium on the dashboard during the load: the API alone on the cores",
    )
    options.add_argument("--api-workers", type=int, default=2, help="processes of `python -m gender api` (default 2)")
    args = options.parse_args()
    if args.mysql:
        sys.exit("this benchmark runs on the SQLite copy of the real logs only")
    if args.server_cpu:
        prepare(args.model_dir)
        clients = min(args.clients, MAX_CLIENTS)
        shape = f"{args.server_cpu:,} requests a route, {clients} clients, {args.rounds} rounds"
        header(f"Our server's CPU per request: {shape}")
        server_cpu(args.model_dir, args.server_cpu, clients, args.rounds)
        return
    if args.cpu:
        prepare(args.model_dir)
        header(f"CPU per /predict answer, in process, one thread: {args.cpu} real sessions")
        cpu_per_answer(f"sqlite:///{DB_FILE}", args.model_dir, args.cpu)
        return
    clients, seconds = min(args.clients, MAX_CLIENTS), min(args.seconds, MAX_SECONDS)
    prepare(args.model_dir)
    header(f"The HTTP service under load: {clients} clients, {seconds:.0f} s a route and server")
    print(f"uptime at start: {uptime()}\n", flush=True)
    rng = random.Random(0)
    results, dashboard = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ours_url, flask_url = fresh_database(tmp), fresh_database(Path(tempfile.mkdtemp(dir=tmp)))
        paths = workload(ours_url, rng)
        env = {"GENDER_DB_URL": ours_url, "GENDER_MODEL_DIR": str(args.model_dir)}
        for name in ("GENDER_ALLOWED_USERS", "GENDER_API_TOKENS_SHA256"):
            os.environ.pop(name, None)  # the open demo: no token to send
        with live.streamlit_server(env, tmp / "streamlit.log") as (base, process):
            for path in paths["predict"][:20] + paths["count"][:20]:  # models loaded, caches warm
                urllib.request.urlopen(base + path, timeout=120).read()
            idle_rss = rss_mb(process.pid)

            def load(server: str, api_base: str, pid: int) -> None:
                """Both routes on one server; the dashboard (`base`) checked in Chromium during /predict."""
                for route in ("predict", "count"):
                    print(f"  .. {server} /{route}: {load_average()}", file=sys.stderr, flush=True)

                    async def both(route=route):
                        checked = route == "predict" and not args.no_browser
                        checks = dashboard_checks(base, "u10003", seconds) if checked else asyncio.sleep(0)
                        return await asyncio.gather(drive(api_base, paths[route], clients, seconds, pid), checks)

                    result, checks = asyncio.run(both())
                    results.append((server, route, result))
                    if checks is not None:
                        dashboard.append((server, checks))

            load("ours (one server: dashboard + API)", base, process.pid)
            # The deployment for the shop's systems: the API in processes of its own, the dashboard beside.
            api = api_server(
                fresh_database(Path(tempfile.mkdtemp(dir=tmp))), args.model_dir, args.api_workers, tmp / "api.log"
            )
            try:
                for path in paths["predict"][:20] + paths["count"][:20]:
                    urllib.request.urlopen(api.base + path, timeout=120).read()
                load(f"ours (`gender api --workers {args.api_workers}`, dashboard beside)", api.base, api.process.pid)
            finally:
                api.stop()
            logged_tracebacks = any("Traceback" in (tmp / log).read_text() for log in ("streamlit.log", "api.log"))
        flask = flask_server(flask_url, args.model_dir, tmp / "flask.log")
        try:
            for path in paths["predict"][:5] + paths["count"][:5]:
                urllib.request.urlopen(flask.base + path, timeout=300).read()
            for route in ("predict", "count"):
                print(f"  .. Flask original /{route}: {load_average()}", file=sys.stderr, flush=True)
                result = asyncio.run(drive(flask.base, paths[route], clients, seconds, flask.process.pid))
                results.append(("original (Flask, scan and UNION)", route, result))
        finally:
            flask.stop()

    headers = ["server", "route", "requests", "req/s", "p50", "p99", "errors", "server CPU/request", "peak RSS"]
    print(table(headers, [row(server, route, result) for server, route, result in results]))
    print()
    original = {route: result for server, route, result in results if server.startswith("original")}
    for server, route, ours in results:
        if server.startswith("ours"):
            theirs = original[route]
            ratio = (len(ours.latencies) / ours.seconds) / max(len(theirs.latencies) / theirs.seconds, 1e-9)
            print(f"{server} /{route}: {ratio:,.1f}× the original's requests per second (target ≥ 10×)")
            if route == "predict":
                p99 = ms(percentile(ours.latencies, 0.99))
                split = "/".join(map(str, ours.connections)) or "not seen"
                print(f"{server} /predict p99 at {clients} clients: {p99} (target ≤ 50 ms); connections held: {split}")
    for server, checks in dashboard:
        shown = ", ".join(ms(t) if isinstance(t, float) else t for t in checks) or "none"
        print(f"dashboard during {server}'s /predict load (Predict page until the answer shows, Chromium): {shown}")
    print(f"our server's memory idle after warm-up: {idle_rss:,.0f} MB; a traceback in its log: {logged_tracebacks}")
    print(f"\nuptime at end: {uptime()}")


if __name__ == "__main__":
    main()
