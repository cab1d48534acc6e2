"""Scoring many sessions at once: a session frame, or a stream of chunks from a database or a file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gender import db, ingest
from gender.answers import Contribution
from gender.features import session_frame
from gender.trained import Model

EXPLAIN_ROWS = 1_000  # the trees' SHAP values are dense (rows × their columns): explained this many rows at a time


def score(model: Model, frame: pd.DataFrame, explain: int = 0) -> pd.DataFrame:
    """session_id, p_male, prediction for every session of a session frame; with `explain` K,
    also top_contributions: each session's K largest SHAP contributions (`top_contributions`)."""
    return _scores(model, frame.index, model.features(frame) if len(frame) else None, explain)


def top_contributions(model: Model, matrix, k: int) -> list[list[Contribution]]:
    """Each feature row's k largest contributions (fewer when fewer are nonzero), from the
    explainer and in the order of the Predict page's explanation (`explain.explain_row`): nonzero
    SHAP values by |shap| descending, ties in feature order; labelled by `features.describe`."""
    from gender.explain import nonzero, shap_values  # shap is heavy; only explanations need it
    from gender.features import describe

    names = model.explainer.names
    explained = []
    for start in range(0, matrix.shape[0], EXPLAIN_ROWS):
        rows = sp.csr_matrix(matrix[start : start + EXPLAIN_ROWS])
        _, values = shap_values(model, rows)
        for i in range(rows.shape[0]):
            used, shap = nonzero(values, i)
            top = np.argsort(-np.abs(shap), kind="stable")[:k]
            columns = used[top]
            raw = np.asarray(rows[[i] * len(columns), columns]).ravel() if len(columns) else []
            top_shap = shap[top]
            explained.append([Contribution(describe(names[c], v), float(s)) for c, v, s in zip(columns, raw, top_shap)])
    return explained


def score_chunks(
    model: Model, chunks: Iterable[tuple[pd.DataFrame, pd.DataFrame]], explain: int = 0
) -> Iterator[pd.DataFrame]:
    """score() of each (sessions, views) chunk, in order, as `db.session_chunks` yields them
    (with `explain` K, top_contributions too).

    A second thread reads the next chunk and builds its features while the model scores this
    one: LightGBM's prediction, most of the time, releases the GIL to run on both cores.
    """

    def prepared() -> Iterator[tuple[pd.Index, object]]:
        for sessions, views in chunks:
            frame = session_frame(sessions, views)
            yield frame.index, model.features(frame) if len(frame) else None

    batches = prepared()
    with ThreadPoolExecutor(max_workers=1) as reader:
        upcoming = reader.submit(next, batches, None)
        while (batch := upcoming.result()) is not None:
            upcoming = reader.submit(next, batches, None)
            yield _scores(model, *batch, explain)


def _scores(model: Model, session_ids: pd.Index, matrix, explain: int) -> pd.DataFrame:
    """The sessions' scores from their feature rows (None: no sessions), explained with `explain` K."""
    p_male = model.p_male_of(matrix) if matrix is not None else np.array([])
    scores = pd.DataFrame(
        {
            "session_id": session_ids,
            "p_male": np.round(p_male, 6),
            "prediction": model.decide(p_male),
        }
    )
    if explain:
        scores["top_contributions"] = top_contributions(model, matrix, explain) if matrix is not None else []
    return scores


def pakdd_chunks(path: Path, progress=None) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """A PAKDD-format file as (sessions, views) chunks, checked line by line like an import."""
    for sessions, views in ingest.pakdd_chunks(Path(path), None, progress):
        yield pd.DataFrame(sessions), pd.DataFrame(views, columns=list(db.product.columns.keys()))
