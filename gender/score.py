"""Scoring many sessions at once: a session frame, or a stream of chunks from a database or a file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from gender import db, ingest
from gender.features import session_frame
from gender.trained import Model


def score(model: Model, frame: pd.DataFrame) -> pd.DataFrame:
    """session_id, p_male, prediction for every session of a session frame."""
    return _scores(model, frame.index, model.p_male(frame) if len(frame) else np.array([]))


def score_chunks(model: Model, chunks: Iterable[tuple[pd.DataFrame, pd.DataFrame]]) -> Iterator[pd.DataFrame]:
    """score() of each (sessions, views) chunk, in order, as `db.session_chunks` yields them.

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
            session_ids, matrix = batch
            yield _scores(model, session_ids, model.p_male_of(matrix) if matrix is not None else np.array([]))


def _scores(model: Model, session_ids: pd.Index, p_male: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "session_id": session_ids,
            "p_male": np.round(p_male, 6),
            "prediction": model.decide(p_male),
        }
    )


def pakdd_chunks(path: Path, progress=None) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """A PAKDD-format file as (sessions, views) chunks, checked line by line like an import."""
    for sessions, views in ingest.pakdd_chunks(Path(path), None, progress):
        yield pd.DataFrame(sessions), pd.DataFrame(views, columns=list(db.product.columns.keys()))
