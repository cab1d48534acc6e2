"""The dashboard on a million sessions: each page from request to rendered page, cold and warm.

    .venv/bin/python benchmarks/dashboard.py [--db URL] [--model-dir DIR] [--warm 5] [--log-size 10000] [--incognito]

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
(`/?session=<a labelled session>`), the same with the what-if editor open (a shared `&whatif=`
link adding a view), Categories, Model, Population and Monitoring; each first once cold (right
after the server started: nothing imported, loaded or cached), then --warm times. A page counts as
rendered when the script is idle and its main charts are drawn, with no exception shown; the
time runs from `page.goto` to that moment. Then, in one tab, the pages again by their links in the
sidebar, as an analyst moves between them. Target: warm ≤ 2 s per page.

The browser keeps its profile in a temporary directory, as a visitor's browser keeps one on disk:
Chromium's cache there holds the scripts already compiled, which a new tab reuses (Chromium keeps a
script compiled from its second load on, so the first warm load compiles plotly.js once more).
The pages draw their charts with the plotly.js the app serves from static/ (ui.chart), which that
cache keeps; Streamlit's own plotly chunk costs every new tab, cached or not (the last floor row).
--incognito measures with an in-memory profile instead (no such cache).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import common
from common import median, table

from gender.config import parse_url
from tests import live
from tests.live import CHROMIUM, IDLE

TARGET_WARM = 2.0
DEFAULT_MODELS = common.model_dir_for("synth_20000")
# (page, path, main charts drawn: at least this many plotly charts, and these selectors)
PAGES = (
    ("Predict", "/?session={session}", 3, [".js-plotly-plot .waterfalllayer .trace"]),
    # the what-if editor open on the same session with a view added (a shared link): its catalogue
    # of paths is read from the stored summaries (`python -m gender summarize`)
    ("What-if", "/?session={session}&whatif={whatif}", 3, [".js-plotly-plot .waterfalllayer .trace"]),
    ("Categories", "/categories", 5, [".js-plotly-plot .treemaplayer"]),
    ("Model", "/model", 3, []),
    # the SHAP sample of 2,000 sessions: computed ahead (`python -m gender population`) or on first need
    ("Population", "/population", 5, []),
    ("Monitoring", "/monitoring", 3, []),
)
SIDEBAR = ("Predict", "Categories", "Model", "Population", "Monitoring")  # the pages a sidebar link opens
HEADINGS = {  # each page's title, to tell it from the page before when moving inside the app
    "Predict": "Predict a visitor's gender",
    "What-if": "Predict a visitor's gender",
    "Categories": "Categories",
    "Model": "The model",
    "Population": "The whole population",
    "Monitoring": "Monitoring",
}
RENDERED = """([idle, charts, selectors, heading]) => {
    if (document.querySelector('[data-testid="stException"]')) return "exception";
    if (!document.querySelector(idle)) return false;
    if (heading && document.querySelector('h1')?.innerText.trim() !== heading) return false;
    const drawn = [...document.querySelectorAll('.js-plotly-plot')].filter(e => e.querySelector('.main-svg'));
    return drawn.length >= charts && selectors.every(s => document.querySelector(s)) ? "rendered" : false;
}"""


TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far) of every process, from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS)
    return found


def cpu_of(server_pid: int) -> tuple[dict[int, float], dict[int, float]]:
    """CPU seconds used so far by each process of the Streamlit server and of the browser (every
    other process started from here: Playwright's driver and Chromium's processes)."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)

    def tree(root: int) -> set[int]:
        found, todo = set(), [root]
        while todo:
            pid = todo.pop()
            found.add(pid)
            todo.extend(children.get(pid, []))
        return found

    server = tree(server_pid)
    browser = tree(os.getpid()) - server - {os.getpid()}
    return {pid: processes[pid][1] for pid in server}, {pid: processes[pid][1] for pid in browser}


def used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two `cpu_of` readings by the processes alive at the second (a
    process that ended in between, such as the renderer of a closed tab, would count negative)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


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
    """At least `size` predictions in prediction_log served by the models of `model_dir` (the
    Monitoring page shows the served models' own), from random sessions: returns their rows."""
    import numpy as np
    import pandas as pd
    from sqlalchemy import func, select

    from gender import artifact, db, score, serve
    from gender.config import load_settings
    from gender.features import session_frame

    db.prediction_log.create(engine, checkfirst=True)
    settings = load_settings(model_dir=model_dir)
    served = artifact.load(model_dir)
    model_ids = [served.of(group).model_id for group in ("treatment", "control")]
    theirs = select(func.count()).where(db.prediction_log.c.model_id.in_(model_ids))
    with engine.connect() as conn:
        have = conn.execute(theirs).scalar_one()
    if have >= size:
        return have
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
        scores = score.score(model, part)
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
        return conn.execute(theirs).scalar_one()


def load(context, base: str, path: str, charts: int, selectors: list[str], timeout_s: float, server_pid: int):
    """(seconds, server CPU seconds, browser CPU seconds) from page.goto in a new tab to the page
    rendered (script idle, main charts drawn, no exception)."""
    page = context.new_page()
    try:
        server_before, browser_before = cpu_of(server_pid)
        started = time.perf_counter()
        page.goto(base + path)
        state = page.wait_for_function(
            RENDERED, arg=[IDLE, charts, selectors, None], timeout=timeout_s * 1000, polling=50
        ).json_value()
        seconds = time.perf_counter() - started
        server_after, browser_after = cpu_of(server_pid)
        if state == "exception":
            text = page.locator('[data-testid="stException"]').first.inner_text()[:300]
            sys.exit(f"{path}: the page shows an exception: {text}")
        return seconds, used(server_before, server_after), used(browser_before, browser_after)
    finally:
        page.close()


def navigate(context, base: str, session_id: str, rounds: int, timeout_s: float) -> dict[str, list[float]]:
    """Moving inside the app as a user does: one tab, a click on the page's link in the sidebar,
    to the new page rendered (Streamlit reruns the page's script; the frontend stays loaded)."""
    page = context.new_page()
    in_sidebar = [page_ for page_ in PAGES if page_[0] in SIDEBAR]
    times: dict[str, list[float]] = {name: [] for name, *_ in in_sidebar}
    try:
        page.goto(base + PAGES[0][1].format(session=session_id))
        page.wait_for_function(RENDERED, arg=[IDLE, PAGES[0][2], PAGES[0][3], None], timeout=timeout_s * 1000)
        for _ in range(rounds):
            for name, _, charts, selectors in (*in_sidebar[1:], in_sidebar[0]):
                link = page.locator('[data-testid="stSidebarNavLink"]', has_text=name).first
                started = time.perf_counter()
                link.click()
                state = page.wait_for_function(
                    RENDERED, arg=[IDLE, charts, selectors, HEADINGS[name]], timeout=timeout_s * 1000, polling=50
                ).json_value()
                times[name].append(time.perf_counter() - started)
                if state == "exception":
                    sys.exit(f"{name}: the page shows an exception after navigating to it")
    finally:
        page.close()
    return times


FLOOR_APP = """import sys
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

sys.path.insert(0, {project!r})
import ui  # noqa: E402
from gender import artifact, score

ui.STATIC = Path(__file__).parent / "static"  # this app's static/, the one its server serves
st.title("Floor")
for i in range(int(st.query_params.get("charts", "0"))):
    figure = go.Figure(go.Scatter(x=[1, 2, 3], y=[1, 3, 2]))
    if st.query_params.get("draw") == "streamlit":
        st.plotly_chart(figure, key=f"chart{{i}}")
    else:
        ui.chart(figure, key=f"chart{{i}}")
"""
FLOORS = (  # (what, query)
    ("a title only", "charts=0"),
    ("a title and 3 tiny charts, drawn as the pages draw them (ui.chart)", "charts=3"),
    ("a title and 3 tiny charts, drawn by Streamlit's own plotly (st.plotly_chart)", "charts=3&draw=streamlit"),
)


@contextmanager
def browser_profile(playwright, args) -> Iterator:
    """A browsing context as one visitor's browser: a profile on disk, with its HTTP cache and the
    compiled-script cache Chromium keeps beside it (--incognito: an in-memory profile, without)."""
    viewport = {"width": args.width, "height": args.height}
    if args.incognito:
        browser = live.launch_chromium(playwright)
        try:
            yield browser.new_context(viewport=viewport)
        finally:
            browser.close()
        return
    with tempfile.TemporaryDirectory(prefix="dashboard-profile-") as directory:
        context = playwright.chromium.launch_persistent_context(
            directory, executable_path=CHROMIUM, args=live.CHROMIUM_ARGS, viewport=viewport
        )
        try:
            yield context
        finally:
            context.close()


def floor(playwright, args) -> list[list[str]]:
    """The same measurement on a Streamlit page that does nothing: a title, then a title and three
    tiny plotly charts, drawn both ways. What any page costs in this browser on this machine."""
    app = common.BENCH_DATA / "dashboard-floor" / "floor.py"
    app.parent.mkdir(parents=True, exist_ok=True)
    app.write_text(FLOOR_APP.format(project=str(common.PROJECT)))
    rows = []
    with (
        live.streamlit_server(
            {}, app.parent / "streamlit.log", app=app, options=("--server.enableStaticServing", "true")
        ) as (base, process),
        browser_profile(playwright, args) as context,
    ):
        for label, query in FLOORS:
            path = f"/?{query}"
            charts = int(query.split("&")[0].removeprefix("charts="))
            load(context, base, path, charts, [], args.timeout, process.pid)  # the browser's cache warmed
            times = [load(context, base, path, charts, [], args.timeout, process.pid) for _ in range(args.warm)]
            rows.append(row(f"floor: {label}", path, None, times))
        context.close()
    return rows


def row(name: str, path: str, cold: float | None, warm: list[tuple[float, float, float]]) -> list[str]:
    """A line of the new-tab table: cold, the warm loads' median, max and each, CPU, verdict."""
    times = [seconds for seconds, _, _ in warm]
    server, browser = median([cpu for _, cpu, _ in warm]), median([cpu for _, _, cpu in warm])
    return [
        name,
        path,
        "" if cold is None else f"{cold:.2f} s",
        f"{median(times):.2f} s",
        f"{max(times):.2f} s",
        " · ".join(f"{seconds:.2f}" for seconds in times),
        f"{server:.2f} s + {browser:.2f} s",
        "" if cold is None else "met" if max(times) <= TARGET_WARM else "MISSED",
    ]


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="SQLAlchemy URL of the database (default: see above)")
    parser.add_argument("--sessions", type=int, default=1_000_000, help="sessions of the default database")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODELS, help="trained models")
    parser.add_argument("--warm", type=int, default=5, help="warm loads of each page")
    parser.add_argument("--log-size", type=int, default=10_000, help="served predictions in the log")
    parser.add_argument("--width", type=int, default=1400, help="browser window width")
    parser.add_argument("--height", type=int, default=2400, help="browser window height")
    parser.add_argument(
        "--incognito", action="store_true", help="an in-memory browser profile (no compiled-script cache)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds a page may take before failing")
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        sys.exit(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")

    from playwright.sync_api import sync_playwright

    from gender import artifact, db, whatif
    from gender.session import Session

    url, url_source = database(args)
    model_source = models(args.model_dir)
    engine = db.connect(url)
    common.header("The dashboard on a million sessions: request to rendered page, cold and warm", engine)
    counts = db.table_counts(engine)
    log_rows = seed_log(engine, args.model_dir, args.log_size)
    session_id = db.random_session_id(engine, labelled=True, rng=random.Random(0))
    stored = whatif.Draft.of(Session.load(engine, session_id))
    fill = {"session": session_id, "whatif": stored.adding(stored.paths[0], len(stored.paths)).link()}
    engine.dispose()
    treatment = artifact.load(args.model_dir).treatment
    shown_dir = (
        args.model_dir.relative_to(common.PROJECT) if args.model_dir.is_relative_to(common.PROJECT) else args.model_dir
    )
    print(
        f"data: {counts['sessions']:,} sessions ({counts['labelled']:,} labelled), {counts['views']:,} views "
        f"({url_source}); prediction log: {log_rows:,} rows\n"
        f"models: {shown_dir} ({model_source}): treatment {treatment.model_id} ({treatment.label}), trained "
        f"{treatment.card.trained} UTC; features come from the session alone, so any model serves any database\n"
        f"Predict page: /?session={session_id}; warm loads: {args.warm} per page, each in a new tab "
        "(a new Streamlit session: only the server's caches are warm); browser profile: "
        f"{'in memory (--incognito)' if args.incognito else 'on disk, as a visitor has'}\n",
        flush=True,
    )

    log_path = common.BENCH_DATA / "dashboard-streamlit.log"
    env = {"GENDER_DB_URL": url.render_as_string(hide_password=False), "GENDER_MODEL_DIR": str(args.model_dir)}
    cold, warm = {}, {name: [] for name, *_ in PAGES}
    with live.streamlit_server(env, log_path, timeout=120) as (base, process), sync_playwright() as playwright:
        # One browser profile for all loads, as one visitor's browser: the first load of each
        # page is cold on the server and in the browser's cache, later ones warm in both.
        with browser_profile(playwright, args) as context:
            for name, path, charts, selectors in PAGES:
                common.log(f"cold: {name}")
                target = path.format(**fill)
                cold[name] = load(context, base, target, charts, selectors, args.timeout, process.pid)
            for round_ in range(args.warm):
                for name, path, charts, selectors in PAGES:
                    target = path.format(**fill)
                    warm[name].append(load(context, base, target, charts, selectors, args.timeout, process.pid))
                common.log(f"warm round {round_ + 1}/{args.warm} done")
            common.log("moving between the pages inside the app")
            moves = navigate(context, base, session_id, args.warm, args.timeout)
        common.log("the floor: a Streamlit page that does nothing")
        floor_rows = floor(playwright, args)

    rows = [row(name, path.format(**fill), cold[name][0], warm[name]) for name, path, *_ in PAGES]
    headers = [
        "page",
        "path",
        "cold",
        "warm median",
        "warm max",
        "each warm load",
        "warm CPU: server + browser",
        f"≤ {TARGET_WARM:.0f} s",
    ]
    print("## Each page in a new tab: page.goto to rendered\n")
    print(table(headers, rows + floor_rows))
    print(
        "\ncold: the first load of each page after the server started, in this order (the first one also imports "
        "the libraries and loads the models; the browser's cache is empty); warm: the same page again in a new tab "
        "of the same browser. CPU: seconds used during a warm load by the Streamlit server and by the browser "
        "(Chromium and Playwright's driver), medians. floor: a Streamlit app of one page that does nothing, "
        "measured the same way (its own server): what any page costs in this browser on this machine; its last "
        "row draws the charts as the pages did before ui.chart"
    )
    print("\n## Moving between the pages inside the app: a click on the sidebar link to rendered\n")
    print(
        table(
            ["page", "median", "max", "each round", f"≤ {TARGET_WARM:.0f} s"],
            [
                [
                    name,
                    f"{median(times):.2f} s",
                    f"{max(times):.2f} s",
                    " · ".join(f"{seconds:.2f}" for seconds in times),
                    "met" if max(times) <= TARGET_WARM else "MISSED",
                ]
                for name, times in moves.items()
            ],
        )
    )
    print(
        f"\none tab, {args.warm} rounds of Categories → Model → Monitoring → Predict (the session kept): the page's "
        "script reruns on the server, the frontend stays loaded"
    )
    print(f"server log: {log_path.relative_to(common.PROJECT)}")
    common.footer()


if __name__ == "__main__":
    main()
