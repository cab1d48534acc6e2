"""A real Streamlit server and headless Chromium: what the browser tests, the load script and the
dashboard benchmark share.

Debian's `chromium` is driven through Playwright's `executable_path` (Playwright's own browser
download is not available on these machines).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'  # the page's script has finished
# How many plotly charts a page has drawn (a div with its svg), for wait_for_function: charts are
# drawn one at a time, and a chart's svgs are several, so neither the first nor an svg count will do.
CHARTS_DRAWN = "[...document.querySelectorAll('.js-plotly-plot')].filter(e => e.querySelector('.main-svg')).length"


class ServerDidNotStart(RuntimeError):
    pass


def sqlite_copy(source, target, empty_log: bool = False) -> str:
    """The URL of a copy of a SQLite database (`source`: a URL or a path), its WAL included, made by
    SQLite's backup: never a file copy, whose closing of the file drops this process's locks on it
    and makes other tests' connections to the shared database fail ("disk I/O error").
    `empty_log`: without the prediction log other tests served into."""
    with closing(sqlite3.connect(str(source).removeprefix("sqlite:///"))) as original:
        with closing(sqlite3.connect(target)) as copy:
            original.backup(copy)
            if empty_log:
                copy.execute("DROP TABLE IF EXISTS prediction_log")
    return f"sqlite:///{target}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(
    env: Mapping[str, str],
    log_path: Path,
    app: Path = PROJECT / "streamlit_app.py",
    options: tuple[str, ...] = (),
    timeout: float = 90,
    port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamlit run APP` on a free loopback port (or `port`, when a test must know it beforehand),
    with `env` on top of this process's environment and its output in `log_path`; yields (base
    URL, process) once healthy, stops it and its children afterwards."""
    port = port or free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port)]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*command, "--server.address", "127.0.0.1", "--server.headless", "true", *options],
            cwd=app.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,  # its own process group, stopped as one
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise ServerDidNotStart(f"streamlit did not start:\n{log_path.read_text()[-2000:]}") from None
                    time.sleep(0.3)
            yield base, process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def launch_chromium(playwright, args: list[str] = CHROMIUM_ARGS):
    """Headless Chromium through a sync or an async Playwright (the async one returns an awaitable)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=args)


def page_text(at) -> str:
    """Everything an AppTest page and its sidebar show, as protobuf text (strings escaped)."""
    parts = []

    def walk(node):
        if getattr(node, "proto", None) is not None:
            parts.append(str(node.proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


def charts(at) -> list[dict]:
    """The plotly figures an AppTest page drew with ui.chart, in page order, as sent to the browser."""
    sent = [json.loads(element.proto.json) for element in at.get("bidi_component")]
    return [json.loads(data["figure"]) for data in sent if "figure" in data]  # other components are not charts
