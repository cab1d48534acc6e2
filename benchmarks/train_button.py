"""The dashboard's own "Train" button at scale, as an analyst uses it, in a real Chromium.

    .venv/bin/python benchmarks/train_button.py [--sessions 1M] [--keep]

1. `python -m gender demo --sessions N` into a fresh SQLite file (data/bench/button.db);
2. `streamlit run streamlit_app.py` on it with an empty model folder;
3. headless Chromium opens the Model page, which offers "Train a model on this database", clicks
   it and waits until the page shows the trained model ("was chosen among").

Printed: the time from the click to the trained Model page (what the analyst waits), the progress
messages the page showed on the way (sampled every second), and the server's peak resident
memory (the Streamlit process and its children, polled). `python -m gender train` at the same size
is in benchmarks/end_to_end.py; this is the same training behind the button.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import common
from common import BENCH_DATA, gender, ms, run, table, uptime
from playwright.sync_api import sync_playwright

from gender import artifact
from tests import live

TRAINED = "was chosen among"  # the Model page's first sentence once a model is there
BUTTON = "Train a model on this database"


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


class PeakMemory(threading.Thread):
    """Polls the resident memory of a process and its children until stopped: the peak, in MB."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_mb, self.done = pid, 0.0, threading.Event()

    def run(self) -> None:
        from api import rss_mb  # the load benchmark's /proc reader (the process and its children)

        while not self.done.wait(0.5):
            self.peak_mb = max(self.peak_mb, rss_mb(self.pid))


def main() -> None:
    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1M", help="synthetic sessions (e.g. 100k, 1M)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the models afterwards")
    args = parser.parse_args()
    sessions = parse_size(args.sessions)

    BENCH_DATA.mkdir(parents=True, exist_ok=True)
    database = BENCH_DATA / "button.db"
    database.unlink(missing_ok=True)
    url = f"sqlite:///{database}"
    common.header(f"The dashboard's Train button at {sessions:,} sessions, in Chromium", None)
    print(f"uptime at start: {uptime()}\n", flush=True)
    demo = run("demo", gender("demo", "--sessions", str(sessions), "--db", url))
    print(f"demo: {ms(demo['wall'])}, {demo['stderr'].strip().splitlines()[-1]}\n", flush=True)

    work = Path(tempfile.mkdtemp(prefix="train-button-"))
    model_dir = work / "models"
    env = {"GENDER_DB_URL": url, "GENDER_MODEL_DIR": str(model_dir)}
    progress: list[tuple[float, str]] = []
    with live.streamlit_server(env, work / "server.log") as (base, server), sync_playwright() as playwright:
        browser = live.launch_chromium(playwright)
        page = browser.new_page()
        page.goto(f"{base}/model", timeout=120_000)
        button = page.get_by_role("button", name=BUTTON)
        button.wait_for(timeout=120_000)
        memory = PeakMemory(server.pid)
        memory.start()
        common.log(f"clicking {BUTTON!r}")
        clicked = time.perf_counter()
        button.click()
        while not page.get_by_text(TRAINED).count():
            bar = page.locator('[data-testid="stProgress"]')
            if bar.count():
                message = bar.first.inner_text().strip().rsplit(" (", 1)[0]  # less the "(N s so far; …)"
                if message and (not progress or progress[-1][1] != message):
                    progress.append((time.perf_counter() - clicked, message))
            if time.perf_counter() - clicked > 1_800:
                raise SystemExit(f"no trained model after 30 minutes; server log in {work / 'server.log'}")
            page.wait_for_timeout(1_000)
        waited = time.perf_counter() - clicked
        memory.done.set()
        memory.join()
        browser.close()

    card = artifact.load_card(model_dir)
    print(
        table(
            ["what", "figure"],
            [
                ["**click → trained Model page shown (wall)**", f"**{ms(waited)}**"],
                ["server peak RSS (Streamlit and children)", f"{memory.peak_mb / 1024:.2f} GB"],
                ["`train` inside, as it timed itself (a part)", f"{card.seconds:.1f} s"],
                ["labelled sessions; compared on", f"{card.training.sessions:,}; {card.cv.sessions:,}"],
                ["chosen", f"{card.chosen}: CV ROC-AUC {card.candidates[card.chosen].auc_mean:.4f}"],
            ],
        )
    )
    print("\nprogress shown on the page (seconds after the click):\n")
    for seconds, message in progress:
        print(f"    {seconds:6.1f}  {message}")
    print(f"\nuptime at end: {uptime()}")
    if args.keep:
        print(f"\nkept: {database} and {model_dir}")
    else:
        shutil.rmtree(work, ignore_errors=True)
        database.unlink(missing_ok=True)
    common.footer()


if __name__ == "__main__":
    main()
