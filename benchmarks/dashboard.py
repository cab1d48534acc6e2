"""The dashboard on a million sessions: each page from request to rendered page, cold and warm.

    .venv/bin/python benchmarks/dashboard.py [--db URL] [--model-dir DIR] [--warm 5] [--log-size 10000]

The database is data/bench/e2e.db when end_to_end.py --keep left one there (with --sessions
sessions), otherwise the cached synthetic database of that size (common.synthetic_engine). The
models come from --model-dir (default data/bench/models-synth_20000); when it holds no trained
pair, `benchmarks/training.py --synthetic 20k` trains one first (`python -m gender train` at a
million sessions takes hours). Features come from the session alone, never from other sessions,
so a model trained on any database serves any other.

The prediction log is seeded with --log-size served predictions of random sessions (both A/B
groups, spread over two weeks), as a dashboard in use would have one: the Monitoring page has
nothing to draw without it.

`streamlit run streamlit_app.py` starts on a free loopback port with GENDER_DB_URL and
GENDER_MODEL_DIR set, and headless Chromium (Playwright) opens each page in a new tab: Predict
(`/?session=<a labelled session>`), Categories, Model and Monitoring; each first once cold (right
after the server started: nothing imported, loaded or cached), then --warm times. A page counts as
rendered when the script is idle and its main charts are drawn, with no exception shown; the
time runs from `page.goto` to that moment. Target: warm ≤ 2 s per page.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import common
from common import median, table

from gender.config import parse_url

TARGET_WARM = 2.0
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DEFAULT_MODELS = common.model_dir_for("synth_20000")
# (page, path, main charts drawn: at least this many plotly charts, and these selectors)
PAGES = (
    ("Predict", "/?session={session}", 3, [".js-plotly-plot .waterfalllayer .trace"]),
    ("Categories", "/categories", 5, [".js-plotly-plot .treemaplayer"]),
    ("Model", "/model", 3, []),
    ("Monitoring", "/monitoring", 3, []),
)
RENDERED = """([idle, charts, selectors]) => {
    if (document.querySelector('[data-testid="stException"]')) return "exception";
    if (!document.querySelector(idle)) return false;
    const drawn = [...document.querySelectorAll('.js-plotly-plot')].filter(e => e.querySelector('.main-svg'));
    return drawn.length >= charts && selectors.every(s => document.querySelector(s)) ? "rendered" : false;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database(args):
    """(url, where from): --db, else end_to_end.py's kept database, else the cached synthetic one."""
    from gender import db

    if args.db:
        return parse_url(args.db), "given with --db"
    kept = common.BENCH_DATA / "e2e.db"
    if kept.is_file() and not args.mysql:
        engine = db.connect(f"sqlite:///{kept}")
        try:
            if db.table_counts(engine)["sessions"] == args.sessions:
                return engine.url, "kept by end_to_end.py --keep"
        except Exception:  # noqa: BLE001 - a half-written file: fall back to the cached one
            pass
        finally:
            engine.dispose()
    engine = common.synthetic_engine(args.sessions, args.mysql)
    url = engine.url
    engine.dispose()
    return url, "common.synthetic_engine (cached)"


def models(model_dir: Path) -> str:
    if (model_dir / "metadata.json").is_file():
        return "reused"
    common.log(f"no trained models in {model_dir}: training on a 20k synthetic database (benchmarks/training.py)")
    script = Path(__file__).with_name("training.py")
    subprocess.run(
        [sys.executable, str(script), "--synthetic", "20k", "--model-dir", str(model_dir)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return "trained now by benchmarks/training.py --synthetic 20k"


def seed_log(engine, model_dir: Path, size: int) -> int:
    """At least `size` served predictions in prediction_log, from random sessions: returns its rows."""
    import numpy as np
    import pandas as pd
    from sqlalchemy import func, select

    from gender import db, predict, serve
    from gender.config import load_settings
    from gender.features import session_frame

    db.prediction_log.create(engine, checkfirst=True)
    with engine.connect() as conn:
        have = conn.execute(select(func.count()).select_from(db.prediction_log)).scalar_one()
    if have >= size:
        return have
    settings = load_settings(model_dir=model_dir)
    served = serve.load_models(model_dir)
    with engine.connect() as conn:
        everyone = conn.execute(select(db.session.c.session_id)).scalars().all()
    ids = random.Random(1).sample(everyone, min(size - have, len(everyone)))
    sessions, views = [], []
    with engine.connect() as conn:
        for start in range(0, len(ids), 5_000):
            part = ids[start : start + 5_000]
            sessions.append(
                pd.read_sql(
                    select(db.session).where(db.session.c.session_id.in_(part)),
                    conn,
                    parse_dates=["start_time", "end_time"],
                )
            )
            views.append(pd.read_sql(select(db.product).where(db.product.c.session_id.in_(part)), conn))
    sessions, views = pd.concat(sessions, ignore_index=True), pd.concat(views, ignore_index=True)
    frame = session_frame(sessions, views)
    groups = np.array([serve.group_of(i, settings.ab_salt, settings.treatment_share) for i in frame.index])
    now = datetime.now(UTC).replace(tzinfo=None)
    rng = random.Random(2)
    rows = []
    for group in ("treatment", "control"):
        model = served.of(group)
        part = frame[groups == group]
        if part.empty:
            continue
        scores = predict.score(model, part)
        for session_id, p_male, prediction in scores.itertuples(index=False):
            rows.append(
                {
                    "session_id": session_id,
                    "ab_group": group,
                    "model_id": model.model_id,
                    "p_male": float(p_male),
                    "prediction": prediction,
                    "threshold": model.threshold,
                    "served_at": now - timedelta(seconds=rng.randrange(14 * 86_400)),
                }
            )
    db.log_predictions(engine, rows)
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(db.prediction_log)).scalar_one()


def start_server(url, model_dir: Path, log_path: Path):
    port = free_port()
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "streamlit_app.py",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
        ],
        cwd=common.PROJECT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "GENDER_DB_URL": url.render_as_string(hide_password=False),
            "GENDER_MODEL_DIR": str(model_dir),
        },
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                return process, base, log
        except OSError:
            time.sleep(0.3)
    process.kill()
    sys.exit(f"streamlit did not start within 120 s (log: {log_path})")


def load(browser, base: str, path: str, charts: int, selectors: list[str], timeout_s: float) -> float:
    """Seconds from page.goto to the page rendered (script idle, main charts drawn, no exception)."""
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    try:
        started = time.perf_counter()
        page.goto(base + path)
        state = page.wait_for_function(
            RENDERED, arg=[IDLE, charts, selectors], timeout=timeout_s * 1000, polling=50
        ).json_value()
        seconds = time.perf_counter() - started
        if state == "exception":
            text = page.locator('[data-testid="stException"]').first.inner_text()[:300]
            sys.exit(f"{path}: the page shows an exception: {text}")
        return seconds
    finally:
        page.close()


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="SQLAlchemy URL of the database (default: see above)")
    parser.add_argument("--sessions", type=int, default=1_000_000, help="sessions of the default database")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODELS, help="trained models")
    parser.add_argument("--warm", type=int, default=5, help="warm loads of each page")
    parser.add_argument("--log-size", type=int, default=10_000, help="served predictions in the log")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a page may take before failing")
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        sys.exit(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")

    from playwright.sync_api import sync_playwright

    from gender import db

    url, url_source = database(args)
    model_source = models(args.model_dir)
    engine = db.connect(url)
    common.header("The dashboard on a million sessions: request to rendered page, cold and warm", engine)
    counts = db.table_counts(engine)
    log_rows = seed_log(engine, args.model_dir, args.log_size)
    session_id = db.random_session_id(engine, labelled=True, rng=random.Random(0))
    engine.dispose()
    shown_dir = (
        args.model_dir.relative_to(common.PROJECT) if args.model_dir.is_relative_to(common.PROJECT) else args.model_dir
    )
    print(
        f"data: {counts['sessions']:,} sessions ({counts['labelled']:,} labelled), {counts['views']:,} views "
        f"({url_source}); prediction log: {log_rows:,} rows\n"
        f"models: {shown_dir} ({model_source}): trained on a 20k synthetic database; features come from the "
        "session alone, so any model serves any database\n"
        f"Predict page: /?session={session_id}; warm loads: {args.warm} per page, each in a new tab "
        "(a new Streamlit session: only the server's caches are warm)\n",
        flush=True,
    )

    log_path = common.BENCH_DATA / "dashboard-streamlit.log"
    process, base, log = start_server(url, args.model_dir, log_path)
    cold, warm = {}, {name: [] for name, *_ in PAGES}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
            )
            for name, path, charts, selectors in PAGES:
                common.log(f"cold: {name}")
                cold[name] = load(browser, base, path.format(session=session_id), charts, selectors, args.timeout)
            for round_ in range(args.warm):
                for name, path, charts, selectors in PAGES:
                    warm[name].append(
                        load(browser, base, path.format(session=session_id), charts, selectors, args.timeout)
                    )
                common.log(f"warm round {round_ + 1}/{args.warm} done")
            browser.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()

    rows = []
    for name, path, *_ in PAGES:
        times = warm[name]
        ok = max(times) <= TARGET_WARM
        rows.append(
            [
                name,
                path.format(session=session_id),
                f"{cold[name]:.2f} s",
                f"{median(times):.2f} s",
                f"{max(times):.2f} s",
                "met" if ok else "MISSED",
            ]
        )
    print(table(["page", "path", "cold", "warm median", "warm max", f"warm ≤ {TARGET_WARM:.0f} s"], rows))
    print(
        "\ncold: the first load of each page after the server started, in this order (the first one also "
        "imports the libraries and loads the models); warm: the same page again in a new tab"
    )
    print(f"server log: {log_path.relative_to(common.PROJECT)}")
    common.footer()


if __name__ == "__main__":
    main()
