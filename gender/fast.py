"""One session answered in well under a millisecond: the HTTP routes' path (gender.serve).

The full path (the Predict page) reads a session into a one-row pandas frame, runs the pipeline
of transformers and then scikit-learn's or LightGBM's predict, each of which validates and
converts its one row: about 8 ms of CPU where the arithmetic is a few microseconds. Here the
same answer is computed from the session's views directly:

- `load_session`: the session and its views in one prepared query, no pandas;
- `SessionRow`, `OriginalRow`: the fitted transformer compiled once per model into lookups
  (token text → column), fed by the very functions that define the features (`session_tokens`,
  `number_columns`, the fitted vectorizer's own analyzer): nothing here says what a feature is;
- the fitted estimators evaluated directly: the logistic part as its dot product, LightGBM's
  trees through LightGBM's own single-row C function, the forest's trees as arrays walked in
  compiled code.

Only the pipelines `train` makes are compiled (SessionFeatures or OriginalFeatures, then
BoostedLogistic or a RandomForestClassifier); any other model answers through its pipeline
(`FastModel.of` is None). tests/test_fast.py checks the feature row and P(male) against the
pipeline on every real session.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sqlalchemy import Engine, bindparam, select

from gender import db
from gender.features import OriginalFeatures, SessionFeatures, number_columns, session_words
from gender.metrics import calibrated
from gender.model import BoostedLogistic
from gender.session import NUMBER_NAMES, ORIGINAL_NUMBER_NAMES, Session, session_tokens, time_texts
from gender.trained import CalibratedDecision, Model

# -- the session, in one query ------------------------------------------------------------------

_SESSION_COLUMNS = ("session_id", "start_time", "end_time", "gender")
# The session's row and its views (none: one row of NULLs), in sequence order. Built once: the
# compiled statement is cached by SQLAlchemy, so a lookup costs one execution, ~0.1 ms on SQLite.
_SESSION_AND_VIEWS = (
    select(
        *(db.session.c[name] for name in _SESSION_COLUMNS),
        db.product.c.sequence_order,
        *db.CATEGORY_COLUMNS.values(),
    )
    .select_from(db.session.outerjoin(db.product, db.product.c.session_id == db.session.c.session_id))
    .where(db.session.c.session_id == bindparam("session_id"))
    .order_by(db.product.c.sequence_order)
)


def load_session(engine: Engine, session_id: object) -> Session | None:
    """`Session.load` in one query: the session of an id as typed (exactly, else without the blanks
    around it, as `db.get_session` takes it), or None."""
    if not isinstance(session_id, str):
        return None
    with db.reporting(engine), engine.connect() as conn:
        for candidate in db.as_typed(session_id):
            if db.fits(candidate, db.SESSION_ID_LENGTH):
                rows = conn.execute(_SESSION_AND_VIEWS, {"session_id": candidate}).all()
                if rows:
                    first = rows[0]
                    views = [row for row in rows if row[4] is not None]  # an outer join's NULL view is none
                    return Session(
                        session_id=first[0],
                        start_time=first[1],
                        end_time=first[2],
                        gender=first[3],
                        paths=tuple(row[5:] for row in views),
                        orders=tuple(row[4] for row in views),
                    )
    return None


# -- feature rows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One session's feature row: its non-zero columns in increasing order and their values
    (float32, as the pipeline's matrix holds them), of a matrix `width` columns wide."""

    columns: np.ndarray  # int32
    values: np.ndarray  # float32
    width: int

    @classmethod
    def of(cls, counts: dict[int, float], width: int) -> Row:
        columns = sorted(column for column, value in counts.items() if value != 0)
        return cls(
            np.array(columns, dtype=np.int32),
            np.array([counts[column] for column in columns], dtype=np.float32),
            width,
        )

    def matrix(self) -> sp.csr_matrix:
        """The row as the pipeline's 1 × width matrix (for the explainer and for tests)."""
        indptr = np.array([0, len(self.columns)], dtype=np.int32)
        return sp.csr_matrix((self.values, self.columns, indptr), shape=(1, self.width), dtype=np.float32)


def _numbers(session: Session) -> dict[str, float]:
    """The session numbers as `number_columns` defines them, for one session."""
    start = np.array([session.start_time], dtype="datetime64[ns]")
    end = np.array([session.end_time], dtype="datetime64[ns]")
    columns = number_columns(np.array([session.n_views], dtype=np.float64), start, end)
    return {name: float(np.float32(values[0])) for name, values in columns.items()}  # float32, as the frame


class SessionRow:
    """A fitted `SessionFeatures`, compiled: each token kind's texts looked up in a dict."""

    def __init__(self, features: SessionFeatures):
        self.columns: dict[str, dict[str, int]] = {}
        offset = 0
        for kind, vocabulary in features.vocabulary_.items():  # the order `_matrix` stacks them in
            self.columns[kind] = {text: offset + i for i, text in enumerate(vocabulary)}
            offset += len(vocabulary)
        self.numbers_at = offset
        self.width = offset + len(NUMBER_NAMES)

    def __call__(self, session: Session) -> Row:
        counts: dict[int, float] = {}
        for kind, (_, texts) in session_tokens([session.paths]).items():
            known = self.columns[kind]
            for text in texts:
                column = known.get(text)
                if column is not None:
                    counts[column] = counts.get(column, 0.0) + 1.0
        numbers = _numbers(session)
        times = time_texts(np.array([numbers["start_hour"], numbers["start_weekday"], numbers["start_day"]]))
        for kind, text in zip(("hour", "weekday", "day"), times):
            column = self.columns[kind].get(text)
            if column is not None:
                counts[column] = counts.get(column, 0.0) + 1.0
        for i, name in enumerate(NUMBER_NAMES):
            counts[self.numbers_at + i] = numbers[name]
        return Row.of(counts, self.width)


class OriginalRow:
    """A fitted `OriginalFeatures`, compiled: the vectorizer's own analyzer and vocabulary, the
    one-hot start times' categories, then the two numbers."""

    def __init__(self, features: OriginalFeatures):
        words, times = features.words_, features.times_
        if words.binary or times.drop is not None or times.max_categories or times.min_frequency:
            raise TypeError("a vectorizer or encoder configured otherwise than OriginalFeatures makes them")
        self.analyze = words.build_analyzer()
        self.vocabulary: dict[str, int] = words.vocabulary_
        offset = len(self.vocabulary)
        self.times: list[dict[int, int]] = []  # day, weekday, hour: value -> column
        for categories in times.categories_:
            self.times.append({int(value): offset + i for i, value in enumerate(categories)})
            offset += len(categories)
        self.numbers_at = offset
        self.width = offset + len(ORIGINAL_NUMBER_NAMES)

    def __call__(self, session: Session) -> Row:
        counts: dict[int, float] = {}
        for word in self.analyze(session_words(session.paths)):
            column = self.vocabulary.get(word)
            if column is not None:
                counts[column] = counts.get(column, 0.0) + 1.0
        numbers = _numbers(session)
        for known, name in zip(self.times, ("start_day", "start_weekday", "start_hour")):
            column = known.get(int(numbers[name]))
            if column is not None:
                counts[column] = 1.0
        for i, name in enumerate(ORIGINAL_NUMBER_NAMES):
            counts[self.numbers_at + i] = numbers[name]
        return Row.of(counts, self.width)


# -- estimators ---------------------------------------------------------------------------------


class LightGBMRow:
    """A fitted LightGBM booster's raw score of one sparse row, through LightGBM's own single-row C
    function (`LGBM_BoosterPredictForCSRSingleRow`): the same trees and the same float32 input as
    `Booster.predict`, without its Python and thread start-up (~0.5 ms a call).

    Not the `...SingleRowFast` pair: its CSR set-up passes its arguments to the predictor in the
    wrong order (LightGBM 4.x, src/c_api.cpp), so asking it for raw scores gets something else;
    and the dense variant's scan of every column costs more than the parsing it saves.
    """

    def __init__(self, booster, n_columns: int):
        from lightgbm.basic import _LIB, _safe_call  # the library's own handle to its C API

        self._lib, self._check, self._booster = _LIB, _safe_call, booster
        self.n_columns = n_columns

    def __call__(self, columns: np.ndarray, values: np.ndarray) -> float:
        indptr = np.array([0, len(columns)], dtype=np.int32)
        columns = np.ascontiguousarray(columns, dtype=np.int32)
        values = np.ascontiguousarray(values, dtype=np.float32)
        out, out_len = np.zeros(1, dtype=np.float64), ctypes.c_int64()
        self._check(  # thread-safe: LightGBM locks the booster's single-row predictor for the call
            self._lib.LGBM_BoosterPredictForCSRSingleRow(
                self._booster._handle,
                indptr.ctypes.data_as(ctypes.c_void_p),
                ctypes.c_int(2),  # C_API_DTYPE_INT32
                columns.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                values.ctypes.data_as(ctypes.c_void_p),
                ctypes.c_int(0),  # C_API_DTYPE_FLOAT32
                ctypes.c_int64(2),
                ctypes.c_int64(len(columns)),
                ctypes.c_int64(self.n_columns),
                ctypes.c_int(1),  # C_API_PREDICT_RAW_SCORE
                ctypes.c_int(0),  # from the first iteration
                ctypes.c_int(-1),  # to the last
                ctypes.c_char_p(b"num_threads=1"),  # one row: threads would only wait on each other
                ctypes.byref(out_len),
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            )
        )
        return float(out[0])


class BoostedScore:
    """`BoostedLogistic.predict_proba(row)[:, 1]` for one row: the same operations in the same
    order (log1p, times 1/scale, the dot product summed in column order, the intercept, plus the
    trees' raw score on the columns they were grown on), without the sparse-matrix machinery."""

    def __init__(self, estimator: BoostedLogistic, width: int):
        self.inverse_scale = 1 / estimator.scale_.scale_  # what StandardScaler.transform multiplies by
        self.coef = estimator.linear_.coef_[0]
        self.intercept = float(estimator.linear_.intercept_[0])
        self.trees = None
        if estimator.trees_ is not None:
            tree_columns = estimator.tree_columns_
            self.tree_column = np.arange(width) if tree_columns is None else np.full(width, -1, dtype=np.int64)
            if tree_columns is not None:
                self.tree_column[tree_columns] = np.arange(len(tree_columns))
            n_tree_columns = width if tree_columns is None else len(tree_columns)
            self.trees = LightGBMRow(estimator.trees_.booster_, n_tree_columns)

    def __call__(self, row: Row) -> float:
        columns = row.columns
        terms = np.log1p(row.values.astype(np.float64)) * self.inverse_scale[columns] * self.coef[columns]
        margin = 0.0
        for term in terms.tolist():  # scipy's csr @ dense: one running sum, in column order
            margin += term
        margin += self.intercept
        if self.trees is not None:
            mapped = self.tree_column[columns]
            kept = mapped >= 0
            margin += self.trees(mapped[kept], row.values[kept])
        return float(expit(margin))


@numba.njit(cache=True, nogil=True)
def _forest_p1(roots, feature, threshold, left, right, p1, row, columns, values):  # pragma: no cover (compiled)
    """The mean over trees of the class-1 fraction of the leaf the row reaches: scikit-learn's
    walk (a value `<=` the threshold goes left) and its sum, in tree order. `row` is all zeros on
    entry and on return: the row's values are written into it for the walk (a feature's value is
    then one read, not a search among the row's columns) and cleared after."""
    for i in range(columns.shape[0]):
        row[columns[i]] = values[i]
    total = 0.0
    for root in roots:
        node = root
        while feature[node] >= 0:  # -1 at a leaf
            node = left[node] if row[feature[node]] <= threshold[node] else right[node]
        total += p1[node]
    for i in range(columns.shape[0]):
        row[columns[i]] = 0
    return total / roots.shape[0]


class ForestScore:
    """`RandomForestClassifier.predict_proba(row)[:, 1]` for one row: every tree's nodes in flat
    arrays, walked in compiled code (numba, which shap brings). scikit-learn's own predict costs
    ~6 ms for one row (joblib, and validation per tree), its trees one by one ~0.6 ms; this walk
    (13,000 nodes a session on the real logs' forest) ~0.08 ms. Equal to scikit-learn's with
    n_jobs=1 bit for bit (tests/test_fast.py)."""

    def __init__(self, forest: RandomForestClassifier, width: int):
        if forest.n_outputs_ != 1 or len(forest.classes_) != 2:
            raise TypeError("only a binary, single-output forest is compiled")
        trees = [estimator.tree_ for estimator in forest.estimators_]
        starts = np.cumsum([0] + [tree.node_count for tree in trees])
        self.roots = starts[:-1].astype(np.int64)
        is_split = np.concatenate([t.children_left >= 0 for t in trees])
        self.feature = np.where(is_split, np.concatenate([t.feature for t in trees]), -1).astype(np.int32)
        self.left = np.concatenate([t.children_left + s for t, s in zip(trees, starts)]).astype(np.int32)
        self.right = np.concatenate([t.children_right + s for t, s in zip(trees, starts)]).astype(np.int32)
        self.threshold = below_or_at(np.concatenate([t.threshold for t in trees]))
        self.p1 = np.concatenate([t.value[:, 0, 1] for t in trees]).astype(np.float64)  # each leaf's class-1 share
        self.width = width
        self._rows = threading.local()  # each thread's zeroed row: the walk runs without the GIL

    def __call__(self, row: Row) -> float:
        dense = getattr(self._rows, "dense", None)
        if dense is None:
            dense = self._rows.dense = np.zeros(self.width, dtype=np.float32)
        columns = np.ascontiguousarray(row.columns, dtype=np.int64)
        values = np.ascontiguousarray(row.values, dtype=np.float32)
        return float(
            _forest_p1(self.roots, self.feature, self.threshold, self.left, self.right, self.p1, dense, columns, values)
        )


def below_or_at(thresholds: np.ndarray) -> np.ndarray:
    """float64 thresholds as the largest float32 at or below each: for a float32 value v,
    `v <= t` and `v <= below_or_at(t)` are the same test, in half the memory (the walk's cost is
    reading nodes)."""
    narrow = thresholds.astype(np.float32)
    above = narrow.astype(np.float64) > thresholds
    narrow[above] = np.nextafter(narrow[above], np.float32(-np.inf))
    return narrow


# -- the model ----------------------------------------------------------------------------------


class FastModel:
    """A served model's features and P(male) for one session, compiled from its fitted pipeline."""

    def __init__(self, model: Model):
        pipeline: Pipeline = model.pipeline
        if len(pipeline.steps) != 2 or not isinstance(pipeline[-1], CalibratedDecision):
            raise TypeError("not a pipeline train() makes")
        features, decision = pipeline[0], pipeline[-1]
        if type(features) is SessionFeatures:
            self.row = SessionRow(features)
        elif type(features) is OriginalFeatures:
            self.row = OriginalRow(features)
        else:
            raise TypeError(f"no fast path for {type(features).__name__}")
        estimator = decision.estimator
        if type(estimator) is BoostedLogistic:
            self.score = BoostedScore(estimator, self.row.width)
        elif type(estimator) is RandomForestClassifier:
            self.score = ForestScore(estimator, self.row.width)
        else:
            raise TypeError(f"no fast path for {type(estimator).__name__}")
        self.calibration = decision.calibration

    def p_male(self, session: Session) -> float:
        return self.p_male_of(self.row(session))

    def p_male_of(self, row: Row) -> float:
        """P(male) as served: the raw probability, Platt-scaled as `CalibratedDecision` does."""
        return float(calibrated(np.array([self.score(row)]), self.calibration)[0])

    _compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Model -> FastModel or None
    _compiling = threading.Lock()

    @classmethod
    def of(cls, model: Model) -> FastModel | None:
        """The model compiled (once per loaded model), or None when it has no fast path."""
        try:
            return cls._compiled[model]
        except KeyError:
            pass
        with cls._compiling:
            if model not in cls._compiled:
                try:
                    cls._compiled[model] = cls(model)
                except TypeError:
                    cls._compiled[model] = None
            return cls._compiled[model]


def p_male(model: Model, session: Session) -> float:
    """The served P(male) of a session: the fast path when the model has one, else the pipeline."""
    fast = FastModel.of(model)
    if fast is not None:
        return fast.p_male(session)
    return float(model.p_male_of(model.features(session.frame))[0])
