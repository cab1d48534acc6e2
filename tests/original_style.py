"""The original project's approach, re-created faithfully: the tests' oracle and the benchmarks' baseline.

The original built features with a scan of the whole product table per session, answered
`/count` with a UNION of four GROUP BYs over the whole product table, and predicted without an
explanation. Each piece below does exactly that. tests/test_fast_paths.py checks that the
library's fast paths give the same answers, and the benchmarks (benchmarks/) time them against
these, so they compare like with like. It lives with the tests because the tests must not import
the benchmarks; the benchmarks import it from here (`from tests import original_style`).

- `scan_frame` / `scan_features`: the product table loaded into a NumPy array, then for each
  session `array[array[:, 0] == session_id]` for its rows (a pass over the whole table per
  session: quadratic in sessions), and the original's word features built from them: the same
  matrix `gender.features.OriginalFeatures` builds in one vectorised pass.
- `union_count`: the session's views of a category at any level, picked out of the per-level
  counts of every session (four GROUP BYs over the whole table, UNIONed).
- `OriginalService`: the original's prediction without explanation: the tables held in arrays,
  a scan for the session's rows, its features, the original random forest's predict.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import OneHotEncoder
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

PRODUCT_COLUMNS = "session_id, sequence_order, category_a, category_b, category_c, category_d"

# -- (a) features by a per-session scan -------------------------------------------------------


def load_product_array(engine: Engine) -> np.ndarray:
    """The whole product table as an object array: session_id, sequence_order, category_a..d."""
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {PRODUCT_COLUMNS} FROM product")).all()
    return np.array([tuple(row) for row in rows], dtype=object).reshape(-1, 6)


def load_session_array(engine: Engine, which: str = "labelled") -> np.ndarray:
    """The session table (labelled, unlabelled or all) as an object array: session_id, start, end, gender."""
    where = {"labelled": "WHERE gender IS NOT NULL", "unlabelled": "WHERE gender IS NULL", "all": ""}[which]
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT session_id, start_time, end_time, gender FROM session {where} ORDER BY session_id")
        ).all()
    return np.array([tuple(row) for row in rows], dtype=object).reshape(-1, 4)


def _as_datetime(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def scan_session(products: np.ndarray, session_id: str) -> list[tuple[str, str, str, str]]:
    """One session's category paths in view order, found by a scan of the whole product array."""
    rows = products[products[:, 0] == session_id]
    rows = rows[np.argsort(rows[:, 1].astype(int), kind="stable")]
    return [tuple(row[2:6]) for row in rows]


def scan_frame(products: np.ndarray, sessions: np.ndarray) -> pd.DataFrame:
    """A session frame (start_time, end_time, paths) built one session at a time by scans."""
    records = []
    for session_id, start, end, *_ in sessions:
        paths = scan_session(products, session_id)
        records.append((session_id, _as_datetime(start), _as_datetime(end), tuple(paths)))
    frame = pd.DataFrame(records, columns=["session_id", "start_time", "end_time", "paths"]).set_index("session_id")
    frame["start_time"] = pd.to_datetime(frame["start_time"])
    frame["end_time"] = pd.to_datetime(frame["end_time"])
    return frame


def scan_features(products: np.ndarray, sessions: np.ndarray) -> sp.csr_matrix:
    """The original's features for every session, each session's rows found by a scan: its
    category codes as words with 1-3-grams, day of month / weekday / hour one-hot, number of
    views and seconds per view. Rows follow `sessions`; columns those of `OriginalFeatures`."""
    documents, starts, numbers = [], [], []
    for session_id, start, end, *_ in sessions:
        paths = scan_session(products, session_id)
        start, end = _as_datetime(start), _as_datetime(end)
        documents.append(" ".join(code for path in paths for code in path))
        starts.append((start.day, start.weekday(), start.hour))
        duration = max((end - start).total_seconds(), 0.0)
        numbers.append((len(paths), duration / max(len(paths), 1)))
    words = CountVectorizer(ngram_range=(1, 3), token_pattern=r"[^ ]+", lowercase=False).fit_transform(documents)
    times = OneHotEncoder(handle_unknown="ignore").fit_transform(np.array(starts))
    numbers = sp.csr_matrix(np.array(numbers, dtype=np.float64).astype(np.float32))
    return sp.hstack([words, times, numbers], format="csr", dtype=np.float32)


# -- (b) the count request by a UNION of four GROUP BYs ----------------------------------------

PER_LEVEL = (
    "SELECT session_id, category_{level} AS category, COUNT(*) AS views"
    " FROM product GROUP BY session_id, category_{level}"
)
PER_SESSION_AND_CATEGORY = " UNION ".join(PER_LEVEL.format(level=level) for level in "abcd")
UNION_COUNT = text(
    f"SELECT COALESCE(SUM(views), 0) FROM ({PER_SESSION_AND_CATEGORY}) AS counts"
    " WHERE session_id = :session_id AND category = :category"
)
# MariaDB (10.2+) and MySQL (8.0.22+) push the outer WHERE down into each GROUP BY, which turns
# the original's query into an index lookup; the servers of the original's time grouped the
# whole table first. Switching that rewrite off re-creates what the original actually ran.
PUSHDOWN_SWITCHES = ("condition_pushdown_for_derived", "derived_condition_pushdown")  # MariaDB, MySQL


@contextlib.contextmanager
def union_connection(engine: Engine, pushdown: bool = False) -> Iterator[Connection]:
    """A connection for `union_count`. On MariaDB/MySQL the derived-table condition pushdown is
    switched off (unless `pushdown`), so the UNION groups the whole table as the original's
    server did, and the server's setting is restored before the connection goes back to the pool."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            yield conn
            return
        state = "on" if pushdown else "off"
        for switch in PUSHDOWN_SWITCHES:
            try:
                conn.execute(text(f"SET SESSION optimizer_switch = '{switch}={state}'"))
                break
            except DBAPIError:
                conn.rollback()
        else:
            raise RuntimeError("this server has no derived-table condition pushdown switch")
        try:
            yield conn
        finally:
            conn.execute(text("SET SESSION optimizer_switch = @@GLOBAL.optimizer_switch"))


def union_count(conn, session_id: str, category: str) -> int:
    """The original's /count: views of `category` (any level) in the session, from the
    per-level counts of every session in the table."""
    return int(conn.execute(UNION_COUNT, {"session_id": session_id, "category": category}).scalar_one())


def union_table(conn) -> dict[tuple[str, str], int]:
    """The UNION's whole result, {(session_id, category): views}, as the original computed it
    before picking one pair (a pair absent from it counts 0)."""
    table: dict[tuple[str, str], int] = {}
    for session_id, category, views in conn.execute(text(PER_SESSION_AND_CATEGORY)):
        table[session_id, category] = table.get((session_id, category), 0) + int(views)
    return table


# -- (c) the original's prediction, without explanation ----------------------------------------


class OriginalService:
    """Predict as the original service did: tables held in arrays, a per-session scan for the
    session's rows, its features, the original random forest pipeline's predict. No SHAP."""

    def __init__(self, engine: Engine, pipeline):
        self.pipeline = pipeline  # gender.train.original_pipeline(), fitted
        self.products = load_product_array(engine)
        self.sessions = load_session_array(engine, "all")

    def predict(self, session_id: str) -> str:
        """male, female, or UNKNOWN_SESSION_ID when there is no such session."""
        session = self.sessions[self.sessions[:, 0] == session_id]
        if not len(session):
            return "UNKNOWN_SESSION_ID"
        frame = scan_frame(self.products, session)
        return "male" if self.pipeline.predict(frame)[0] == 1 else "female"
