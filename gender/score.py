"""Scoring many sessions at once: a session frame, or a stream of chunks from a database or a file.

Each session is answered as the service answers it (`serve.serve`): its A/B group from
`serve.group_of`, that group's model. `score` and Spark's `score --spark` write the same columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from gender import db, ingest, serve
from gender.answers import Contribution
from gender.features import session_frame
from gender.trained import Model, Models

EXPLAIN_ROWS = 1_000  # the trees' SHAP values are dense (rows × their columns): explained this many rows at a time
OUTPUT_COLUMNS = ("session_id", "p_male", "prediction", "model_id", "ab_group")
# With explain K: each session's top K contributions, |shap| descending (`top_contributions`).
EXPLAIN_COLUMN = "top_contributions"


def score(model: Model, frame: pd.DataFrame, explain: int = 0) -> pd.DataFrame:
    """session_id, p_male, prediction for every session of a session frame by one model; with
    `explain` K, also top_contributions: each session's K largest SHAP contributions."""
    return _scores(model, frame.index, model.features(frame) if len(frame) else None, explain)


def score_served(models: Models, frame: pd.DataFrame, salt: str, treatment_share: float, explain: int = 0):
    """OUTPUT_COLUMNS of every session of a session frame, in its order, as the service answers
    each: its A/B group's model; with `explain` K, top_contributions from that model's explainer."""
    return next(score_chunks(models, [frame], salt, treatment_share, explain))


def score_chunks(
    models: Models,
    frames: Iterable[pd.DataFrame],
    salt: str,
    treatment_share: float,
    explain: int = 0,
) -> Iterator[pd.DataFrame]:
    """score_served() of each session frame, in order (`frames_of` makes them of the
    (sessions, views) chunks `db.session_chunks` yields).

    A second thread builds the next frame's features while the models score this one: LightGBM's
    prediction, most of the time, releases the GIL to run on both cores.
    """

    def prepared() -> Iterator[list[tuple[str, Model, np.ndarray, pd.Index, object]]]:
        """Per frame, each group's (group, model, rows in the frame, session ids, feature matrix)."""
        for frame in frames:
            groups = np.array([serve.group_in(models, i, salt, treatment_share) for i in frame.index.tolist()])
            parts = []
            for group in serve.GROUPS:
                (rows,) = np.nonzero(groups == group)
                if len(rows):
                    model, part = models.of(group), frame.iloc[rows]
                    parts.append((group, model, rows, part.index, model.features(part)))
            yield parts

    batches = prepared()
    with ThreadPoolExecutor(max_workers=1) as reader:
        upcoming = reader.submit(next, batches, None)
        while (parts := upcoming.result()) is not None:
            upcoming = reader.submit(next, batches, None)
            scored = [
                (rows, _scores(model, ids, matrix, explain).assign(model_id=model.model_id, ab_group=group))
                for group, model, rows, ids, matrix in parts
            ]
            yield _in_order(scored, explain)


def frames_of(chunks: Iterable[tuple[pd.DataFrame, pd.DataFrame]]) -> Iterator[pd.DataFrame]:
    """The session frame of each (sessions, views) chunk."""
    return (session_frame(sessions, views) for sessions, views in chunks)


def _in_order(parts: list[tuple[np.ndarray, pd.DataFrame]], explain: int) -> pd.DataFrame:
    """The groups' scores put back in the frame's order of sessions."""
    columns = [*OUTPUT_COLUMNS, EXPLAIN_COLUMN] if explain else list(OUTPUT_COLUMNS)
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns}).astype({"p_male": float})
    rows = np.concatenate([rows for rows, _ in parts])
    scores = pd.concat([scores for _, scores in parts], ignore_index=True)
    return scores.iloc[np.argsort(rows, kind="stable")].reset_index(drop=True)[columns]


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
