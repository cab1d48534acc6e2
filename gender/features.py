"""From a session's views and times to a feature row: the only place features are defined.

A batch of sessions is a *session frame*: one row per session, indexed by session id, with
`start_time`, `end_time` and `paths` (the views in order, ``A/B/C/D;A/B/C/D;...``, as in the
PAKDD files). One session is a frame of one row: batch and single lookups share one code path.

Every feature comes from the session's own views and times, never from other sessions' labels
or from the order of session ids. Token features are counted with one vectorised pass over all
views (no loop over sessions); the vocabulary is learnt in `fit`, so cross-validation never
sees the held-out fold's tokens.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.validation import check_is_fitted

from gender.db import CATEGORY_NAMES

# Bump when the features change meaning: saved models record it and are refused when it differs.
FEATURE_VERSION = 1

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def session_frame(sessions: pd.DataFrame, views: pd.DataFrame) -> pd.DataFrame:
    """Join the `session` rows and their `product` rows into a session frame (vectorised)."""
    views = views.sort_values(["session_id", "sequence_order"], kind="stable")
    path = views[CATEGORY_NAMES[0]].str.cat(views[CATEGORY_NAMES[1:]], sep="/")
    paths = path.groupby(views["session_id"].to_numpy(), sort=False).agg(";".join)
    frame = sessions.set_index("session_id")[["start_time", "end_time"]].copy()
    frame["start_time"] = pd.to_datetime(frame["start_time"])
    frame["end_time"] = pd.to_datetime(frame["end_time"])
    frame["paths"] = paths.reindex(frame.index).fillna("")
    return frame


def split_views(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per view, in order: `row` (the position of its session in the frame), category_a..d."""
    paths = frame["paths"].to_numpy(dtype=object)
    per_session = pd.Series(paths).str.split(";").explode()
    per_session = per_session[per_session.fillna("") != ""]
    codes = per_session.str.split("/", expand=True, n=3).reindex(columns=range(4)).astype(object)
    codes.columns = CATEGORY_NAMES
    codes.insert(0, "row", per_session.index.to_numpy())
    return codes.reset_index(drop=True)


def _tokens(frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, pd.Series]]:
    """Each kind of token as (row of the session it occurs in, token text); repeats count."""
    views = split_views(frame)
    rows = views["row"].to_numpy()
    a, b, c, d = (views[name] for name in CATEGORY_NAMES)
    same_session = np.zeros(len(rows), dtype=bool)  # a view that follows another of its session
    same_session[1:] = rows[1:] == rows[:-1]
    step_rows = rows[same_session]

    def step(level: pd.Series) -> pd.Series:
        values = level.to_numpy(dtype=object)
        return pd.Series(values[:-1][same_session[1:]]) + ">" + pd.Series(values[same_session])

    start = frame["start_time"].reset_index(drop=True)
    sessions = np.arange(len(frame))
    return {
        "view": (np.tile(rows, 4), pd.concat([a, b, c, d], ignore_index=True)),
        "path": (np.tile(rows, 2), pd.concat([a + "/" + b, a + "/" + b + "/" + c], ignore_index=True)),
        "step": (np.tile(step_rows, 2), pd.concat([step(c), step(d)], ignore_index=True)),
        "hour": (sessions, start.dt.hour.astype(str)),
        "weekday": (sessions, start.dt.day_of_week.astype(str)),
        "day": (sessions, start.dt.day.astype(str)),
    }


def session_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """The per-session numbers: views, duration, seconds per view, start hour, weekday and day."""
    n_views = frame["paths"].str.count(";").add(1).where(frame["paths"] != "", 0)
    start = frame["start_time"]
    duration = (frame["end_time"] - start).dt.total_seconds().clip(lower=0)
    return pd.DataFrame(
        {
            "views": n_views,
            "duration_s": duration,
            "seconds_per_view": duration / n_views.clip(lower=1),
            "start_hour": start.dt.hour,
            "start_weekday": start.dt.day_of_week,
            "start_day": start.dt.day,
        },
        index=frame.index,
    ).astype(np.float32)


NUMBER_NAMES = ("views", "duration_s", "seconds_per_view", "start_hour", "start_weekday", "start_day")
TOKEN_KINDS = ("view", "path", "step", "hour", "weekday", "day")


class SessionFeatures(TransformerMixin, BaseEstimator):
    """Counts of the session's categories at every level (`view:C00007`), of its path prefixes
    (`path:A00002/B00002`) and of its steps from one view to the next (`step:C00002>C00007`);
    its start hour, weekday and day of month one-hot (`hour:14`); then the session numbers.
    Tokens seen in fewer than `min_df` training sessions are dropped.
    """

    def __init__(self, min_df: int = 2):
        self.min_df = min_df

    def fit(self, X: pd.DataFrame, y=None):
        self.vocabulary_ = {}
        for kind, (rows, texts) in _tokens(X).items():
            sessions_with = pd.DataFrame({"row": rows, "text": texts.to_numpy()}).drop_duplicates()
            frequency = sessions_with["text"].value_counts()
            self.vocabulary_[kind] = pd.Index(sorted(frequency.index[frequency >= self.min_df]))
        self.n_features_out_ = sum(map(len, self.vocabulary_.values())) + len(NUMBER_NAMES)
        self.reference_ = column_medians(self.transform(X))
        return self

    def transform(self, X: pd.DataFrame) -> sp.csr_matrix:
        check_is_fitted(self, "vocabulary_")
        all_rows, all_columns, offset = [], [], 0
        for kind, (rows, texts) in _tokens(X).items():
            vocabulary = self.vocabulary_[kind]
            column = vocabulary.get_indexer(texts)
            known = column >= 0
            all_rows.append(rows[known])
            all_columns.append(column[known] + offset)
            offset += len(vocabulary)
        rows, columns = np.concatenate(all_rows), np.concatenate(all_columns)
        counts = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, columns)), shape=(len(X), offset), dtype=np.float32
        )  # duplicates are summed: a token seen three times counts 3
        numbers = sp.csr_matrix(session_numbers(X).to_numpy())
        return sp.hstack([counts, numbers], format="csr", dtype=np.float32)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "vocabulary_")
        names = [f"{kind}:{text}" for kind in TOKEN_KINDS for text in self.vocabulary_[kind]]
        return np.array(names + list(NUMBER_NAMES), dtype=object)


class OriginalFeatures(TransformerMixin, BaseEstimator):
    """The original project's features, re-created faithfully for comparison: the category codes
    as words with 1-3-grams, one-hot day of month, weekday and hour, view count and seconds per view.
    """

    def fit(self, X: pd.DataFrame, y=None):
        self.words_ = CountVectorizer(ngram_range=(1, 3), token_pattern=r"[^ ]+", lowercase=False).fit(_words(X))
        self.times_ = OneHotEncoder(handle_unknown="ignore").fit(_start_parts(X))
        self.reference_ = column_medians(self.transform(X))
        return self

    def transform(self, X: pd.DataFrame) -> sp.csr_matrix:
        check_is_fitted(self, "words_")
        numbers = session_numbers(X)[["views", "seconds_per_view"]].to_numpy()
        return sp.hstack(
            [self.words_.transform(_words(X)), self.times_.transform(_start_parts(X)), sp.csr_matrix(numbers)],
            format="csr",
            dtype=np.float32,
        )

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "words_")
        return np.concatenate(
            [
                self.words_.get_feature_names_out(),
                self.times_.get_feature_names_out(["day", "weekday", "hour"]),
                ["views", "seconds_per_view"],
            ]
        ).astype(object)


def column_medians(matrix: sp.spmatrix) -> np.ndarray:
    """The typical row, column by column: what explanations compare a session with (1 × n).

    A column that is zero in at least half the rows has median 0, so only the few busy columns
    (the numbers, the most common categories) need sorting.
    """
    columns = sp.csc_matrix(matrix)
    medians = np.zeros((1, columns.shape[1]))
    for j in np.flatnonzero(2 * np.diff(columns.indptr) >= columns.shape[0]):
        medians[0, j] = np.median(columns[:, [j]].toarray())
    return medians


def _words(X: pd.DataFrame) -> pd.Series:
    return X["paths"].str.replace("/", " ", regex=False).str.replace(";", " ", regex=False)


def _start_parts(X: pd.DataFrame) -> np.ndarray:
    start = X["start_time"]
    return np.c_[start.dt.day, start.dt.day_of_week, start.dt.hour]


def describe(name: str, value: float) -> str:
    """A feature's value in words, for explanations: ``view:C00007`` = 3 is "viewed C00007 ×3"."""
    kind, _, text = name.partition(":")
    count = int(value)
    if kind == "view":
        return f"viewed {text} ×{count}" if count else f"no view of {text}"
    if kind == "path":
        shown = text.replace("/", " › ")
        return f"viewed {shown} ×{count}" if count else f"nothing in {shown}"
    if kind == "step":
        shown = text.replace(">", " → ")
        return f"went {shown} ×{count}" if count else f"never went {shown}"
    if kind == "hour":
        return f"started at {int(text):02d}:00" if count else f"not started at {int(text):02d}:00"
    if kind == "weekday":
        return f"started on a {WEEKDAY_NAMES[int(text)]}" if count else f"not on a {WEEKDAY_NAMES[int(text)]}"
    if kind == "day":
        return f"started on day {text} of the month" if count else f"not on day {text} of the month"
    if name == "views":
        return f"{count} view" + ("s" if count != 1 else "")
    if name == "duration_s":
        return f"lasted {_duration(value)}"
    if name == "seconds_per_view":
        return f"{value:.1f} s per view" if value < 600 else f"{_duration(value)} per view"
    if name == "start_hour":
        return f"started at {count:02d}:00"
    if name == "start_weekday":
        return f"started on a {WEEKDAY_NAMES[count]}"
    if name == "start_day":
        return f"started on day {count} of the month"
    return f"{name} = {value:g}"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
