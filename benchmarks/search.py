"""Finding a session among a million: ids suggested per keystroke, and filters.

    .venv/bin/python benchmarks/search.py [--mysql] [--db URL ...] [--ids 300] [--browser-ids 30] [--no-browser]

On a synthetic database of 1,000,000 sessions (data/bench/synth_1000000.db, or gender_bench_* on
the MariaDB server with --mysql; built once, minutes), or on the databases given by --db (any
number; e.g. a `python -m gender demo --sessions 1000000` file you already have):

1. the library: `db.suggest_session_ids` for every prefix of random ids as they are typed
   ("u", "u4", "u48", ...), plus prefixes that match nothing, warm; p50 / p90 / p99 / max;
2. what counts, the browser: a real Streamlit server and headless Chromium, keys pressed one at a
   time on the Predict page's search box (Playwright), from the key's keydown to the suggestions
   for the new text in the page (the DOM, and the next painted frame); once waiting for each
   answer before the next key, once typing a whole id at 60 ms a key (a quick typist) and timing
   the last key;
3. for scale, `db.find_sessions` with a few filters (a form's submit, not a keystroke).

The explainerdashboard-style alternative, a dropdown holding every id, would send the browser a
million options; this one sends at most 20.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import common
from common import median, ms, percentile, table

from gender import db
from gender.config import parse_url, redact

SESSIONS = 1_000_000

# Set up before a key is pressed: resolves with (keydown -> suggestions for `typed` in the DOM,
# keydown -> the frame after that) once the box holds `typed` and shows Python's answer to it.
ARM = """typed => {
    const root = document.querySelector('.gl-search');
    const box = root.querySelector('.gl-search-input');
    window.searchTiming = new Promise(resolve => {
        let pressed = null;
        const onKey = event => { pressed = event.timeStamp; };
        box.addEventListener('keydown', onKey, { once: true, capture: true });
        const done = () => box.value === typed && root.querySelector('.gl-search-status').dataset.final === 'true';
        const observer = new MutationObserver(() => {
            if (pressed === null || !done()) return;
            const inDom = performance.now() - pressed;
            observer.disconnect();
            requestAnimationFrame(() => resolve([inDom, performance.now() - pressed]));
        });
        observer.observe(root, { attributes: true, childList: true, subtree: true, characterData: true });
    });
}"""


def library(engine, rng: random.Random, n_ids: int) -> tuple[list[float], list[str], int]:
    """Seconds per suggest_session_ids call over every prefix of n_ids random ids and of misses."""
    with engine.connect() as conn:  # every id, read from the primary key (random_session_id's OFFSET is slow here)
        every_id = list(conn.execute(db.select(db.session.c.session_id)).scalars())
    ids = rng.sample(every_id, n_ids)
    del every_id
    misses = ["".join(rng.choice("abcdefghijkmnpqrstvwxyz0123456789") for _ in range(6)) for _ in range(n_ids // 5)]
    prefixes = [text[:k] for text in ids + misses for k in range(1, len(text) + 1)]
    for prefix in prefixes[:50]:  # warm: the pool open, the pages cached
        db.suggest_session_ids(engine, prefix)
    times, found = [], 0
    for prefix in prefixes:
        started = time.perf_counter()
        found += len(db.suggest_session_ids(engine, prefix))
        times.append(time.perf_counter() - started)
    return times, ids, found


def filters(engine) -> list[list[str]]:
    cases = [
        ("labelled male", db.SessionFilter(gender="male")),
        (
            "gender unknown, started 2014-12-01",
            db.SessionFilter(
                gender="unknown", started_from=datetime(2014, 12, 1), started_before=datetime(2014, 12, 2)
            ),
        ),
        ("viewed B00009 (any level)", db.SessionFilter(viewed="B00009")),
        ("labelled male, viewed D00017 (a rare product)", db.SessionFilter(gender="male", viewed="D00017")),
        ("predicted female (as last served)", db.SessionFilter(predicted="female")),
    ]
    rows = []
    for name, session_filter in cases:
        seconds, found = common.timed(db.find_sessions, engine, session_filter, 100)
        count = f"more than {found.total:,}" if found.more else f"{found.total:,}"
        rows.append([name, f"{len(found.sessions):,}", count, ms(seconds)])
    return rows


def browser(url, ids: list[str], model_dir: str | None) -> dict[str, list[float]]:
    """Keystroke -> suggestions shown, in headless Chromium against a real Streamlit server."""
    from playwright.sync_api import sync_playwright

    from tests import live

    env = {"GENDER_DB_URL": url.render_as_string(hide_password=False)}
    with tempfile.TemporaryDirectory() as empty:
        env["GENDER_MODEL_DIR"] = model_dir or empty  # the box stands above the model's answer
        log_path = Path(empty) / "streamlit.log"
        timings: dict[str, list[float]] = {
            "each key, DOM": [],
            "each key, painted": [],
            "last of quick typing, DOM": [],
        }
        with live.streamlit_server(env, log_path, timeout=300) as (base, _), sync_playwright() as playwright:
            chromium = live.launch_chromium(playwright)
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(base, timeout=300_000)
            page.wait_for_selector(live.IDLE, timeout=300_000)
            box = page.locator(".gl-search-input")
            box.click()

            def clear():
                if not box.input_value():
                    return
                page.evaluate(ARM, "")
                box.press("Control+a")
                box.press("Backspace")
                page.evaluate("window.searchTiming")

            for session_id in ids[:3]:  # warm: the server's pool, the first fragment runs
                clear()
                box.press_sequentially(session_id)
            for session_id in ids:
                clear()
                for k, key in enumerate(session_id, start=1):  # one key at a time, each answer awaited
                    page.evaluate(ARM, session_id[:k])
                    box.press(key)
                    in_dom, painted = page.evaluate("window.searchTiming")
                    timings["each key, DOM"].append(in_dom / 1000)
                    timings["each key, painted"].append(painted / 1000)
                clear()
                box.press_sequentially(session_id[:-1], delay=60)  # a quick typist: keys 60 ms apart
                page.evaluate(ARM, session_id)
                box.press(session_id[-1], delay=0)
                timings["last of quick typing, DOM"].append(page.evaluate("window.searchTiming")[0] / 1000)
            chromium.close()
    return timings


def stats(times: list[float]) -> list[str]:
    return [
        f"{len(times):,}",
        ms(median(times)),
        ms(percentile(times, 0.9)),
        ms(percentile(times, 0.99)),
        ms(max(times)),
    ]


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--db", action="append", default=[], help="a database of about a million sessions (repeatable)")
    parser.add_argument("--ids", type=int, default=300, help="random ids whose every prefix is timed in the library")
    parser.add_argument("--browser-ids", type=int, default=30, help="random ids typed key by key in Chromium")
    parser.add_argument("--no-browser", action="store_true", help="the library figures only")
    parser.add_argument(
        "--model-dir", default=None, help="models for the page (default: none; the box does not need them)"
    )
    args = parser.parse_args()

    urls = [parse_url(url) for url in args.db] or [common.synthetic_url(SESSIONS, args.mysql)]
    if not args.db:
        common.synthetic_engine(SESSIONS, args.mysql).dispose()  # built once, cached
    common.header("Finding a session among a million: suggestions per keystroke, and filters")
    for url in urls:
        engine = db.connect(url)
        counts = db.table_counts(engine)
        version = ""
        if engine.dialect.name != "sqlite":
            with engine.connect() as conn:
                version = " " + conn.exec_driver_sql("SELECT VERSION()").scalar_one()
        print(f"## {redact(url)} ({engine.dialect.name}{version}): {counts['sessions']:,} sessions\n", flush=True)
        rng = random.Random(0)
        times, ids, found = library(engine, rng, args.ids)
        print("### db.suggest_session_ids, warm, every prefix of random ids as typed (and misses)\n")
        print(table(["calls", "p50", "p90", "p99", "max"], [stats(times)]))
        print(f"\n{found / len(times):.1f} suggestions per call on average (at most {db.SUGGESTIONS})\n", flush=True)
        if not args.no_browser:
            common.log(f"Chromium: typing {args.browser_ids} ids key by key against {redact(url)}")
            timings = browser(url, ids[: args.browser_ids], args.model_dir)
            print("### In Chromium: a key pressed in the Predict page's search box -> its suggestions shown\n")
            rows = [[name, *stats(values)] for name, values in timings.items()]
            print(table(["measured", "keys", "p50", "p90", "p99", "max"], rows))
            print(flush=True)
        print("### db.find_sessions (the Find page; first 100 listed, counted up to 10,000)\n")
        print(table(["filter", "listed", "matching", "time"], filters(engine)))
        print(flush=True)
        engine.dispose()
    common.footer()


if __name__ == "__main__":
    sys.exit(main())
