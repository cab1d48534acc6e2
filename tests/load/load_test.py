"""Load test: many headless Chromium users looking sessions up on the Predict page of one `streamlit run`.

Each user is its own browser context (its own Streamlit session) in one headless Chromium. In a
loop until time is up, it types a random session id of the database into the "Session id" box,
presses Enter, and waits until the rerun has finished (the URL carries ?session=ID, the script is
idle) and the "Predicted gender" metric shows. A lookup that ends in an error banner, an exception
or no answer within --lookup-timeout seconds is an error. At the end it prints lookups done,
errors, response times (p50, p95, max) and the server's resident memory (VmRSS from /proc) before
and after, as a Markdown table.

Run it from the project folder (loopback only; Chromium at /usr/bin/chromium):

    .venv/bin/python tests/load/load_test.py                    # own server on a new demo database, 20 users, 60 s
    .venv/bin/python tests/load/load_test.py --users 20 --seconds 60 \\
        --db sqlite:///data/gender.db --model-dir models         # own server on an existing database and model
    .venv/bin/python tests/load/load_test.py --url http://127.0.0.1:8501 --db sqlite:///data/gender.db
                                                                 # attach to a running app (same database)

Without --db it writes a demo database of --sessions sessions to a temporary folder; without a
model in --model-dir (default: models/) it trains one there first, which takes minutes.
It is not collected by pytest (no test functions); it exits 1 when a lookup failed or the server
logged a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))  # run as a script: the gender package and tests.live
from tests import live  # noqa: E402
from tests.live import IDLE  # noqa: E402

METRIC = '[data-testid="stMetric"]:has-text("Predicted gender")'
MAX_USERS, MAX_SECONDS = 50, 900  # bounds: this is a load test of one machine's loopback, not a stress tool


@dataclass
class Results:
    times: list[float] = field(default_factory=list)  # seconds per successful lookup
    errors: list[str] = field(default_factory=list)


# -- the server ---------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB (VmRSS in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listening_pid(port: int) -> int | None:
    """The process listening on a loopback TCP port, found through /proc (for --url)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def wait_healthy(base: str, process: subprocess.Popen | None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            if time.monotonic() > deadline or (process and process.poll() is not None):
                raise SystemExit(f"streamlit at {base} did not become healthy") from None
            time.sleep(0.5)


def prepare(args, workdir: Path) -> tuple[str, Path]:
    """The database URL and model folder to serve: given, or a demo database (and a model trained on it)."""
    from gender import db, synth
    from gender.artifact import METADATA_FILE

    db_url = args.db
    if not db_url:
        db_url = f"sqlite:///{workdir / 'demo.db'}"
        print(f"writing a demo database of {args.sessions:,} sessions to {workdir}", file=sys.stderr)
        synth.create_demo(db.connect(db_url), sessions=args.sessions, seed=1)
    model_dir = Path(args.model_dir).resolve()
    if args.url is None and not (model_dir / METADATA_FILE).is_file():
        from gender.train import train

        print(f"no model in {model_dir}: training one (minutes)", file=sys.stderr)
        train(db.connect(db_url), model_dir)
    return db_url, model_dir


def session_ids(db_url: str) -> list[str]:
    from gender import db

    sessions, _ = db.read_sessions(db.connect(db_url), "all")
    return sessions["session_id"].tolist()


# -- the users ----------------------------------------------------------------------------------------


async def problem_on(page) -> str | None:
    """The text of an exception or error banner on the page, if there is one."""
    for kind in ("stException", "stAlertContentError"):
        found = page.locator(f'[data-testid="{kind}"]')
        if await found.count():
            return f"{kind}: {(await found.first.inner_text())[:200]}"
    return None


async def lookup(page, session_id: str, timeout_ms: int) -> float:
    """One lookup; its seconds from Enter to the answer, or an exception saying what went wrong."""
    box = page.get_by_label("Session id")
    await box.fill(session_id)
    started = time.monotonic()
    await box.press("Enter")
    # The rerun with this id has started once the page has put it in the URL (a crashed run never does).
    pattern = re.compile(rf"[?&]session={re.escape(urllib.parse.quote(session_id))}(&|$)")
    while not pattern.search(page.url):
        if problem := await problem_on(page):
            raise RuntimeError(problem)
        if time.monotonic() - started > timeout_ms / 1000:
            raise TimeoutError(f"no rerun for {session_id} within {timeout_ms / 1000:.0f} s")
        await asyncio.sleep(0.1)
    await page.wait_for_selector(IDLE, timeout=timeout_ms)  # ... and finished
    if problem := await problem_on(page):
        raise RuntimeError(problem)
    await page.locator(METRIC).first.wait_for(timeout=timeout_ms)
    return time.monotonic() - started


class Start:
    """The users load their pages one after another, then all start looking up together."""

    def __init__(self, users: int, seconds: float):
        self.waiting, self.seconds = users, seconds
        self.event = asyncio.Event()
        self.began = self.deadline = 0.0

    def arrived(self) -> None:
        self.waiting -= 1
        if not self.waiting:
            self.began = time.monotonic()
            self.deadline = self.began + self.seconds
            self.event.set()


async def user(number: int, browser, base: str, ids: list[str], start: Start, args, results: Results) -> None:
    rng = random.Random(number)
    timeout = args.lookup_timeout * 1000
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    try:
        try:
            await asyncio.sleep(number * args.ramp / args.users)  # a ramp: 20 cold page loads at once swamp 2 cores
            await page.goto(base, wait_until="domcontentloaded", timeout=args.load_timeout * 1000)
            await page.get_by_label("Session id").wait_for(timeout=args.load_timeout * 1000)
            await page.wait_for_selector(IDLE, timeout=args.load_timeout * 1000)
        except Exception as exc:  # counted: a user that cannot even open the page is an error
            results.errors.append(f"user {number} could not open the page: {type(exc).__name__}: {str(exc)[:300]}")
            return
        finally:
            start.arrived()
        await start.event.wait()
        current = None
        while time.monotonic() < start.deadline:
            session_id = rng.choice([i for i in rng.sample(ids, 2) if i != current])
            try:
                results.times.append(await lookup(page, session_id, timeout))
                current = session_id
            except Exception as exc:  # every failure is a result to report
                results.errors.append(f"user {number}, {session_id}: {type(exc).__name__}: {str(exc)[:300]}")
                await page.goto(base, wait_until="domcontentloaded", timeout=timeout)  # start this user afresh
                await page.wait_for_selector(IDLE, timeout=timeout)
                current = None
    except Exception as exc:  # e.g. the page could not be reopened after an error
        results.errors.append(f"user {number} gave up: {type(exc).__name__}: {str(exc)[:300]}")
    finally:
        await context.close()


async def drive(base: str, ids: list[str], args, results: Results, on_start) -> float:
    """All users; returns the seconds from the common start to the last user's end."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await live.launch_chromium(playwright)
        try:
            start = Start(args.users, args.seconds)
            tasks = [user(n, browser, base, ids, start, args, results) for n in range(args.users)]

            async def measure_start():
                await start.event.wait()
                on_start()

            # Bounded in time: the ramp and page loads, the run, and one lookup's timeout to finish.
            bound = args.ramp + args.load_timeout + args.seconds + 2 * args.lookup_timeout + 60
            await asyncio.wait_for(asyncio.gather(measure_start(), *tasks), timeout=bound)
            return time.monotonic() - start.began
        finally:
            await browser.close()


async def warm_up(base: str, session_id: str, args) -> float:
    """One lookup before measuring, so the model and shap are loaded when the clock starts."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await live.launch_chromium(playwright)
        try:
            page = await browser.new_page()
            await page.goto(base)
            await page.wait_for_selector(IDLE, timeout=args.lookup_timeout * 1000)
            return await lookup(page, session_id, args.lookup_timeout * 1000)
        finally:
            await browser.close()


# -- the report ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def report(args, results: Results, elapsed: float, rss: dict, cpu: dict, server_log: str | None) -> str:
    times = results.times
    rows = [
        ("users", f"{args.users}"),
        ("duration", f"{elapsed:.0f} s (asked {args.seconds} s, after a {args.ramp:.0f} s ramp-up)"),
        ("lookups done", f"{len(times)}"),
        ("errors", f"{len(results.errors)}"),
        ("throughput", f"{len(times) / elapsed:.2f} lookups/s" if elapsed else "-"),
    ]
    if times:
        rows += [
            ("response p50", f"{statistics.median(times):.2f} s"),
            ("response p95", f"{percentile(times, 95):.2f} s"),
            ("response max", f"{max(times):.2f} s"),
            ("response mean", f"{statistics.fmean(times):.2f} s"),
        ]
    for label, kib in rss.items():
        rows.append((f"server RSS {label}", f"{kib / 1024:.0f} MiB"))
    if "before" in rss and "after" in rss:
        rows.append(("server RSS growth", f"{(rss['after'] - rss['before']) / 1024:+.0f} MiB"))
    if "after" in cpu:
        used = cpu["after"] - cpu["before"]
        rows.append(("server CPU during the run", f"{used:.0f} s ({used / elapsed:.0%} of one core)"))
    summaries: list[str] = []
    if server_log is not None:
        # The last line of each traceback says what was raised, e.g. "KeyError: 'ui'".
        summaries = [
            line for line in server_log.splitlines() if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b", line)
        ]
        rows.append(("server log tracebacks", f"{server_log.count('Traceback (most recent call last)')}"))
    width = max(len(label) for label, _ in rows)
    lines = [f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {label.ljust(width)} | {value} |" for label, value in rows]
    if results.errors:
        lines += ["", "Errors (first 10):", *[f"- {error}" for error in results.errors[:10]]]
    if summaries:
        counted = collections.Counter(summaries).most_common(10)
        lines += ["", "Raised on the server:", *[f"- {count} x {line[:200]}" for line, count in counted]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20, help=f"concurrent browser users (1-{MAX_USERS}, default 20)")
    parser.add_argument("--seconds", type=int, default=60, help=f"how long to drive them (1-{MAX_SECONDS}, default 60)")
    parser.add_argument("--url", help="attach to a running app on loopback instead of starting one")
    parser.add_argument("--db", help="the database URL served (default: a new demo database)")
    parser.add_argument("--model-dir", default=str(PROJECT / "models"), help="the models served (default models/)")
    parser.add_argument("--sessions", type=int, default=3_000, help="size of the demo database (default 3000)")
    parser.add_argument("--lookup-timeout", type=int, default=90, help="seconds before a lookup is an error")
    parser.add_argument("--load-timeout", type=int, default=180, help="seconds for a user to open the page")
    parser.add_argument(
        "--settle",
        type=int,
        default=10,
        help="seconds to wait before the last RSS reading (Streamlit drops "
        "a closed session after server.disconnectedSessionTTL, 120 s by default)",
    )
    parser.add_argument(
        "--no-file-watcher",
        action="store_true",
        help="start streamlit with server.fileWatcherType=none: an edit of the sources during the run then "
        "cannot reload modules under running sessions",
    )
    parser.add_argument("--ramp", type=float, default=20, help="seconds over which the users open the page")
    args = parser.parse_args(argv)
    if not 1 <= args.users <= MAX_USERS or not 1 <= args.seconds <= MAX_SECONDS:
        parser.error(f"--users must be 1-{MAX_USERS} and --seconds 1-{MAX_SECONDS}")
    if args.url and urllib.parse.urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--url must be on loopback (127.0.0.1 or localhost)")
    if args.url and not args.db:
        parser.error("--url needs --db: the database the app serves, to draw session ids from")

    with tempfile.TemporaryDirectory(prefix="gender-load-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        db_url, model_dir = prepare(args, workdir)
        ids = session_ids(db_url)
        process, log_path = None, workdir / "streamlit.log"
        if args.url:
            base = args.url.rstrip("/")
            wait_healthy(base, None, timeout=10)
            pid = listening_pid(urllib.parse.urlsplit(base).port or 80)
        else:
            env = {"GENDER_DB_URL": db_url, "GENDER_MODEL_DIR": str(model_dir)}
            options = ("--server.fileWatcherType", "none") if args.no_file_watcher else ()
            base, process = stack.enter_context(live.streamlit_server(env, log_path, options=options))
            pid = process.pid
        rss = {}
        if pid:
            rss["at start"] = rss_kib(pid)
        warm = asyncio.run(warm_up(base, random.Random(0).choice(ids), args))
        print(f"warm-up lookup: {warm:.1f} s; driving {args.users} users for {args.seconds} s", file=sys.stderr)
        results = Results()
        cpu = {}

        def on_start():  # every user has its page open: the measured run begins
            if pid:
                rss["before"] = rss_kib(pid)
                cpu["before"] = cpu_seconds(pid)

        elapsed = asyncio.run(drive(base, ids, args, results, on_start))
        if pid:
            rss["after"] = rss_kib(pid)
            cpu["after"] = cpu_seconds(pid)
            time.sleep(args.settle)  # the browsers are gone: let the server drop their sessions
            rss[f"{args.settle} s after the users left"] = rss_kib(pid)
        server_log = log_path.read_text() if process else None
        print(report(args, results, elapsed, rss, cpu, server_log))
        crashed = server_log is not None and "Traceback (most recent call last)" in server_log
        return 1 if results.errors or crashed else 0


if __name__ == "__main__":
    sys.exit(main())
