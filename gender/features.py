"""From a session's views and times to a feature row: the only place features are defined.

A batch of sessions is a *session frame*: one row per session, indexed by session id, with
`start_time`, `end_time` and `paths` (the views in order, each the tuple of its category codes
A, B, C, D). One session is a frame of one row: batch and single lookups share one code path.
Codes are kept as tuples, never joined into text, so a code may hold any character ("Women's
shoes/boots"); where a feature's name needs several codes, they are joined by `JOIN`.

Every feature comes from the session's own views and times, never from other sessions' labels
or from the order of session ids. Tokens come from one pass over all views, linear in the views
(never a scan of the product table per session), and are counted in one sparse matrix; the
vocabulary is learnt in `fit`, so cross-validation never sees the held-out fold's tokens.
"""

from __future__ import annotations

from itertools import groupby
from operator import itemgetter

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.validation import check_is_fitted

from gender.db import CATEGORY_NAMES
from gender.session import (
    JOIN,
    NUMBER_NAMES,
    TOKEN_KINDS,
    WEEKDAY_NAMES,
    Feature,
    session_tokens,
    time_texts,
    token_name,
)

# Bump when the features change meaning: saved models record it and are refused when it differs.
FEATURE_VERSION = 3  # 2: codes in path and step names joined by JOIN, not "/" and ">"; 3: the original's n-grams too

# Feature names (the kinds, JOIN between the codes of a path or a step, the numbers) are built
# and parsed in gender.session: `session_tokens`, `token_name`, `Feature.parse`.


def session_frame(sessions: pd.DataFrame, views: pd.DataFrame) -> pd.DataFrame:
    """Join the `session` rows and their `product` rows into a session frame.

    One pass over the views in plain Python: pandas' per-call overhead would dominate a frame
    of one session (the Predict page), and its groupby calls a Python join per session anyway.
    """
    views = views.sort_values(["session_id", "sequence_order"], kind="stable")
    codes = map(tuple, views[list(CATEGORY_NAMES)].to_numpy(dtype=object).tolist())
    paths = {
        session_id: tuple(path for _, path in group)
        for session_id, group in groupby(zip(views["session_id"].tolist(), codes), key=itemgetter(0))
    }
    frame = sessions.set_index("session_id")[["start_time", "end_time"]].copy()
    frame["start_time"] = pd.to_datetime(frame["start_time"])
    frame["end_time"] = pd.to_datetime(frame["end_time"])
    frame["paths"] = pd.Series(
        [paths.get(session_id, ()) for session_id in frame.index], index=frame.index, dtype=object
    )
    return frame


def _start_parts(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Day of month, weekday (Monday = 0) and hour of each session's start, with NumPy."""
    return start_parts(frame["start_time"].to_numpy(dtype="datetime64[s]"))


def start_parts(start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Day of month, weekday (Monday = 0) and hour of start times (datetime64): for a frame, and
    for one session without one (gender.fast)."""
    start = start.astype("datetime64[s]")
    days = start.astype("datetime64[D]")
    day = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    hour = (start - days).astype("timedelta64[h]").astype(np.int64)
    return day, weekday, hour


def _tokens(frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each kind of token as (row of the session it occurs in, token text); repeats count.

    One pass over the views in plain Python (`gender.session.session_tokens`, beside the parser
    of the names): fast for one session and linear for a batch.
    """
    kinds = session_tokens(frame["paths"].tolist())
    tokens = {
        kind: (np.array(rows, dtype=np.int64), np.array(texts, dtype=object)) for kind, (rows, texts) in kinds.items()
    }
    sessions = np.arange(len(frame))
    day, weekday, hour = _start_parts(frame)
    for kind, values in (("hour", hour), ("weekday", weekday), ("day", day)):
        tokens[kind] = (sessions, time_texts(values))
    return tokens


def session_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """The per-session numbers: views, duration, seconds per view, start hour, weekday and day."""
    n_views = np.array([len(paths) for paths in frame["paths"].tolist()], dtype=np.float64)
    start, end = (frame[name].to_numpy(dtype="datetime64[ns]") for name in ("start_time", "end_time"))
    return pd.DataFrame(number_columns(n_views, start, end), index=frame.index).astype(np.float32)


def number_columns(n_views: np.ndarray, start: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
    """The session numbers (NUMBER_NAMES, in order; float64) from view counts and start and end
    times (datetime64): for a frame, and for one session without one (gender.fast)."""
    start, end = start.astype("datetime64[ns]"), end.astype("datetime64[ns]")
    duration = np.clip((end - start) / np.timedelta64(1, "s"), 0, None)
    day, weekday, hour = start_parts(start)
    return {
        "views": n_views,
        "duration_s": duration,
        "seconds_per_view": duration / np.clip(n_views, 1, None),
        "start_hour": hour,
        "start_weekday": weekday,
        "start_day": day,
    }


class SessionFeatures(TransformerMixin, BaseEstimator):
    """Counts of the session's categories at every level (`view:C00007`), of its path prefixes
    (`path:A00002␟B00002`) and of its steps from one view to the next (`step:C00002␟C00007`; ␟ is
    `JOIN`);
    its start hour, weekday and day of month one-hot (`hour:14`); then the session numbers.
    Tokens seen in fewer than `min_df` training sessions are dropped.
    """

    def __init__(self, min_df: int = 2):
        self.min_df = min_df

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # a session frame, not a numeric array (as text vectorizers declare)
        return tags

    def fit(self, X: pd.DataFrame, y=None):
        self.fit_transform(X)
        return self

    def fit_transform(self, X: pd.DataFrame, y=None) -> sp.csr_matrix:
        """Learn the vocabulary and the typical session, and return X's matrix: one token pass."""
        tokens = _tokens(X)
        self.vocabulary_ = {}
        for kind, (rows, texts) in tokens.items():
            codes, distinct = pd.factorize(texts)
            n = max(len(distinct), 1)
            pairs = pd.unique(rows * n + codes)  # each (session, token) once
            sessions_with = np.bincount(pairs % n, minlength=len(distinct))
            self.vocabulary_[kind] = pd.Index(sorted(distinct[sessions_with >= self.min_df]))
        self.n_features_out_ = sum(map(len, self.vocabulary_.values())) + len(NUMBER_NAMES)
        matrix = self._matrix(X, tokens)
        self.reference_ = column_medians(matrix)
        return matrix

    def transform(self, X: pd.DataFrame) -> sp.csr_matrix:
        check_is_fitted(self, "vocabulary_")
        return self._matrix(X, _tokens(X))

    def _matrix(self, X: pd.DataFrame, tokens: dict) -> sp.csr_matrix:
        all_rows, all_columns, offset = [], [], 0
        for kind, (rows, texts) in tokens.items():
            vocabulary = self.vocabulary_[kind]
            codes, distinct = pd.factorize(texts)  # each distinct token looked up once
            column = vocabulary.get_indexer(distinct)[codes]
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
        names = [token_name(kind, text) for kind in TOKEN_KINDS for text in self.vocabulary_[kind]]
        return np.array(names + list(NUMBER_NAMES), dtype=object)


class OriginalFeatures(TransformerMixin, BaseEstimator):
    """The original project's features, re-created faithfully for comparison: the category codes
    as words with 1-3-grams, one-hot day of month, weekday and hour, view count and seconds per view.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # a session frame, not a numeric array (as text vectorizers declare)
        return tags

    def fit(self, X: pd.DataFrame, y=None):
        self.fit_transform(X)
        return self

    def fit_transform(self, X: pd.DataFrame, y=None) -> sp.csr_matrix:
        """Learn the words and times, and return X's matrix: transformed once (a pipeline's fit)."""
        self.words_ = CountVectorizer(analyzer=original_ngrams, lowercase=False).fit(_words(X))
        self.times_ = OneHotEncoder(handle_unknown="ignore").fit(np.column_stack(_start_parts(X)))
        matrix = self.transform(X)
        self.reference_ = column_medians(matrix)
        return matrix

    def transform(self, X: pd.DataFrame) -> sp.csr_matrix:
        check_is_fitted(self, "words_")
        numbers = session_numbers(X)[["views", "seconds_per_view"]].to_numpy()
        return sp.hstack(
            [
                self.words_.transform(_words(X)),
                self.times_.transform(np.column_stack(_start_parts(X))),
                sp.csr_matrix(numbers),
            ],
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


def _words(X: pd.DataFrame) -> list[str]:
    return [session_words(paths) for paths in X["paths"].tolist()]


def session_words(paths) -> str:
    """A session's codes in order, as the original's text of words (joined by JOIN, as a code
    may hold blanks)."""
    return JOIN.join(code for path in paths for code in path)


def original_ngrams(words: str) -> list[str]:
    """The original's words: the 1-, 2- and 3-grams of a session's codes in a row (`session_words`),
    each joined by JOIN. CountVectorizer joins an n-gram's words with a blank, which made "Women"
    then "Shoes Boots" and "Women Shoes" then "Boots" one column; on codes without blanks the
    columns and their order are CountVectorizer's own (JOIN sorts just below the blank)."""
    codes = words.split(JOIN) if words else []
    return [JOIN.join(codes[i : i + n]) for n in (1, 2, 3) for i in range(len(codes) - n + 1)]


def describe(name: str, value: float) -> str:
    """A feature's value in words, for explanations: ``view:C00007`` = 3 is "viewed C00007 ×3".

    The name is read by `Feature.parse`. The original's one-hot times read as the session
    features' do, and its words as views where they are one code: both models' stories in the
    same words; an n-gram of codes in a row as its codes.
    """
    feature = Feature.parse(name)
    kind, count = feature.kind, int(value)
    if kind == "view" or (kind == "words" and len(feature.codes) == 1):
        code = feature.codes[0]
        return f"viewed {code} ×{count}" if count else f"no view of {code}"
    if kind == "words":  # codes in a row, across views too
        return f'"{feature.text}" in its codes ×{count}' if count else f'no "{feature.text}" in its codes'
    if kind == "path":
        return f"viewed {feature.text} ×{count}" if count else f"nothing in {feature.text}"
    if kind == "step":
        return f"went {feature.text} ×{count}" if count else f"never went {feature.text}"
    if kind == "hour":
        return f"started at {feature.value:02d}:00" if count else f"not started at {feature.value:02d}:00"
    if kind == "weekday":
        day = WEEKDAY_NAMES[feature.value]
        return f"started on a {day}" if count else f"not on a {day}"
    if kind == "day":
        return f"started on day {feature.value} of the month" if count else f"not on day {feature.value} of the month"
    number = feature.number  # None unless kind is "number"
    if number == "views":
        return f"{count} view" + ("s" if count != 1 else "")
    if number == "duration_s":
        return f"lasted {_duration(value)}"
    if number == "seconds_per_view":
        return f"{value:.1f} s per view" if value < 600 else f"{_duration(value)} per view"
    # The start as numbers: named apart from the one-hot "started at 03:00" the same session also has.
    if number == "start_hour":
        return f"start hour {count:02d} (as a number)"
    if number == "start_weekday":
        return f"start weekday {WEEKDAY_NAMES[count]} (as a number)"
    if number == "start_day":
        return f"start day {count} of the month (as a number)"
    return f"{name} = {value:g}"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
