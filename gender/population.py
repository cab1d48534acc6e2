"""The whole population: how the served model decides across sessions, not for one of them.

SHAP of the **treatment** model (the one training chose) over a fixed-size sample of the
database's sessions: a random sample stratified by recorded gender (male, female, unknown), with
a fixed seed. From the per-session SHAP matrix of the sample come

- global importance: mean |SHAP| of every feature over the sample (a session that lacks the
  feature counts with 0), summed by kind and level (views of A, B, C, D codes, a code's level
  read from the sampled sessions' own paths; paths; steps; time; session numbers), and the
  direction of each: its mean signed SHAP (> 0: towards male) and the correlation of the
  feature's value with its SHAP (> 0: the more of it, the more male);
- dependence: how the contribution of the start hour, weekday, views, duration and seconds per
  view changes with its value (the number feature's SHAP, and for hour and weekday the summed
  one-hot contributions too);
- cohorts: the mean contributions of two groups of sampled sessions side by side.

It is computed once per model and database (the fingerprint names the database as well as its
sessions: a copy elsewhere has its own) and kept beside the models as
``population-<model sha8>-<db fingerprint>.npz`` (numbers only: loaded without pickle), checked
against the current model and database when read (`load`), computed on first need (`current`)
or ahead (`python -m gender population`). Only the sample step reads the big tables: the ids and
genders of the sessions (one pass over the session table), then the sample's rows and views by
their ids (the primary key and the views' session index), never a scan of all views.

The page's charts come from the figure functions at the end (`groups_figure` ...), and `html`
puts the same figures into one standalone file (`python -m gender population --html`, the page's
download button) with the session report's pieces (gender/report.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sqlalchemy import Engine, func, select

from gender import db, files
from gender.config import redact, user_path
from gender.errors import DatabaseUnavailable, GenderError
from gender.features import session_frame, session_numbers
from gender.session import WEEKDAY_NAMES, Feature
from gender.trained import Model, Models

VERSION = 1  # bump when the stored file changes meaning: older files are recomputed
SAMPLE_SESSIONS = 2_000
SEED = 16
FILE_PREFIX = "population-"
READ_BATCH = 500  # ids per query when the sample's rows and views are read by id
SHAP_CELLS = 4_000_000  # dense cells per SHAP batch (rows × features): ~32 MB of float64
FINGERPRINT_TTL = 30.0  # seconds a database fingerprint is reused in this process

Progress = Callable[[float, str], None]

STRATA = ("female", "male", "unknown")  # the recorded gender; NULL is "unknown"
LEVELS = ("A", "B", "C", "D")
# A feature's kind and level, in the order the page lists them.
GROUPS = (
    "A views",
    "B views",
    "C views",
    "D views",
    "views, level unknown",
    "paths",
    "steps",
    "time",
    "session numbers",
    "words",
)
TIME_NUMBERS = ("start_hour", "start_weekday", "start_day")
NUMBER_LABELS = {
    "views": "number of views",
    "duration_s": "duration (s)",
    "seconds_per_view": "seconds per view",
    "start_hour": "start hour (number)",
    "start_weekday": "start weekday (number, Monday = 0)",
    "start_day": "start day of the month (number)",
}
# The session numbers whose dependence is drawn, and the one-hot kind that says the same.
DEPENDENCE = {
    "start_hour": "hour",
    "start_weekday": "weekday",
    "views": None,
    "duration_s": None,
    "seconds_per_view": None,
}
NUMBER_COLUMNS = ("views", "duration_s", "seconds_per_view", "start_hour", "start_weekday", "start_day")


class PopulationMismatch(GenderError):
    """A stored population that is not of this model, this database or this version."""


# -- the database's fingerprint -----------------------------------------------------------------


def _fingerprint_facts(engine: Engine) -> dict:
    """What changes when the sessions change: counts, the first and last ids and their rows. Each
    a count or an index lookup: no pass over the views' columns."""
    s, p = db.session, db.product
    with db.reporting(engine), engine.connect() as conn:
        facts = {
            "sessions": conn.execute(select(func.count()).select_from(s)).scalar_one(),
            "labelled": conn.execute(select(func.count(s.c.gender))).scalar_one(),
            "views": conn.execute(select(func.count()).select_from(p)).scalar_one(),
        }
        for end, pick in (("first", func.min), ("last", func.max)):  # one aggregate a query: each an index seek
            session_id = conn.execute(select(pick(s.c.session_id))).scalar()
            row = conn.execute(select(s).where(s.c.session_id == session_id)).first() if session_id else None
            facts[end] = [str(value) for value in row] if row else None
    return facts


def _database_identity(engine: Engine) -> list:
    """Which database it is: the backend and where (a SQLite file by its absolute path; a server's
    host, port and database), never the user or the password."""
    url = engine.url
    backend = url.get_backend_name()
    if backend == "sqlite":
        name = url.database or ""
        if name and name != ":memory:" and not name.startswith("file:"):
            name = str(user_path(name).resolve())
        return [backend, name]
    return [backend, url.host, url.port, url.database]


def fingerprint_of(engine: Engine) -> str:
    """A short fingerprint of the database's sessions and of the database itself (12 hex
    digits): a copy of the sessions elsewhere (a SQLite file copied into MariaDB) has a
    fingerprint, and so a population, of its own."""
    facts = {**_fingerprint_facts(engine), "database": _database_identity(engine)}
    text = json.dumps(facts, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


_fingerprints: dict[str, tuple[float, str]] = {}


def fingerprint(engine: Engine, ttl: float = FINGERPRINT_TTL) -> str:
    """`fingerprint_of`, reused for `ttl` seconds in this process (a page view needs it)."""
    key = engine.url.render_as_string(hide_password=False)
    held = _fingerprints.get(key)
    now = time.monotonic()
    if held is None or now - held[0] > ttl:
        held = _fingerprints[key] = (now, fingerprint_of(engine))
    return held[1]


# -- the sample ---------------------------------------------------------------------------------


def stratified_ids(ids: np.ndarray, strata: np.ndarray, size: int, seed: int = SEED) -> np.ndarray:
    """`size` of `ids` drawn at random without replacement, each stratum (any labels, best small
    integers) in its share (largest remainders), for a fixed seed; returned in the order of `ids`."""
    ids = np.asarray(ids, dtype=object)
    if size >= len(ids):
        return ids.copy()
    rng = np.random.default_rng(seed)
    names, codes, counts = np.unique(strata, return_inverse=True, return_counts=True)
    exact = counts * size / len(ids)
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take), kind="stable")[: size - take.sum()]:
        take[i] += 1
    by_stratum = np.argsort(codes, kind="stable")  # positions, stratum by stratum, each in order
    starts = np.concatenate([[0], np.cumsum(counts)])
    chosen = [rng.choice(by_stratum[starts[k] : starts[k + 1]], size=n, replace=False) for k, n in enumerate(take) if n]
    return ids[np.sort(np.concatenate(chosen))]


def _ids_and_genders(engine: Engine) -> list[tuple]:
    """Every session's id and recorded gender, in no particular order: one pass over the session
    table, fetched by the driver's own cursor (a million rows in about a second on SQLite, a
    third of the time SQLAlchemy's rows take)."""
    sql = str(select(db.session.c.session_id, db.session.c.gender).compile(dialect=engine.dialect))
    with db.reporting(engine), engine.connect() as conn:
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql)
            return cursor.fetchall()
        except engine.dialect.loaded_dbapi.Error as exc:
            reason = exc.args[-1] if exc.args else type(exc).__name__
            raise DatabaseUnavailable(f"database {redact(engine.url)} failed: {reason}") from None
        finally:
            cursor.close()


def sample_ids(engine: Engine, size: int = SAMPLE_SESSIONS, seed: int = SEED) -> tuple[np.ndarray, int]:
    """The sampled session ids (stratified by recorded gender, in id order) and the number of
    sessions in the database. Reads the session table's ids and genders only, never the views."""
    rows = _ids_and_genders(engine)
    if not rows:
        return np.array([], dtype=object), 0
    ids = np.empty(len(rows), dtype=object)
    ids[:] = [row[0] for row in rows]
    stratum = {gender: k for k, gender in enumerate(STRATA)}  # NULL and anything else: unknown
    strata = np.fromiter((stratum.get(row[1], 2) for row in rows), dtype=np.int8, count=len(rows))
    order = np.argsort(ids, kind="stable")  # id order, whatever order the database gave
    return stratified_ids(ids[order], strata[order], size, seed), len(ids)


def views_query(ids: list[str]):
    """The SELECT of the views of some sessions, by id: the views' session index, never a scan."""
    p = db.product
    return select(p).where(p.c.session_id.in_(ids)).order_by(p.c.session_id, p.c.sequence_order)


def read_sample(engine: Engine, ids) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sessions of `ids` and their views, as `db.read_sessions` gives them, read by id."""
    s = db.session
    sessions, views = [], []
    with db.reporting(engine), engine.connect() as conn:
        for start in range(0, len(ids), READ_BATCH):
            batch = [str(i) for i in ids[start : start + READ_BATCH]]
            sessions.append(
                pd.read_sql(select(s).where(s.c.session_id.in_(batch)), conn, parse_dates=["start_time", "end_time"])
            )
            views.append(pd.read_sql(views_query(batch), conn))
    sessions = pd.concat(sessions, ignore_index=True) if sessions else pd.DataFrame(columns=[c.name for c in s.c])
    views = pd.concat(views, ignore_index=True) if views else pd.DataFrame(columns=[c.name for c in db.product.c])
    return sessions.sort_values("session_id", kind="stable").reset_index(drop=True), views


# -- SHAP of many rows, as explain_row gives it for one -----------------------------------------


def shap_rows(model: Model, matrix: sp.csr_matrix, progress: Progress | None = None) -> tuple[float, sp.csr_matrix]:
    """The base value and the SHAP values of every row of `matrix` (the model's features), as
    `explain.explain_row` gives them for one row: the same explainers, calibrated alike; in
    batches of rows, kept sparse (a feature equal to the typical session's contributes 0)."""
    from gender.explain import shap_values  # shap loads with gender.explain

    n, width = matrix.shape
    step = max(1, min(256, SHAP_CELLS // max(width, 1)))
    parts, base = [], 0.0
    for start in range(0, n, step):
        base, values = shap_values(model, matrix[start : start + step])
        parts.append(sp.csr_matrix(values))
        if progress:
            progress(min(n, start + step) / n, f"SHAP of {min(n, start + step):,} of {n:,} sampled sessions")
    shap_matrix = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, width))
    return float(base), shap_matrix


# -- features in words, kinds and levels --------------------------------------------------------


def scheme_of(model: Model) -> str:
    from gender.explain import scheme_of as explain_scheme  # shap loads with gender.explain

    return explain_scheme(model)


def feature_label(feature: Feature) -> str:
    """A feature in words, without a session's value: "view of C00007", "hour 14:00 (one-hot)"."""
    kind = feature.kind
    if kind == "view":
        return f"view of {feature.codes[0]}"
    if kind == "path":
        return f"path {feature.text}"
    if kind == "step":
        return f"step {feature.text}"
    if kind == "hour":
        return f"started at {feature.value:02d}:00 (one-hot)"
    if kind == "weekday":
        return f"started on a {WEEKDAY_NAMES[feature.value]} (one-hot)"
    if kind == "day":
        return f"started on day {feature.value} (one-hot)"
    if kind == "number":
        return NUMBER_LABELS.get(feature.number, feature.number)
    return f"words “{feature.text}”"


def group_of_feature(feature: Feature, levels: dict[str, str]) -> str:
    """A feature's kind and level (one of GROUPS); a view's level is its code's level in the
    sampled sessions' paths (`levels`)."""
    kind = feature.kind
    if kind == "view":
        level = levels.get(feature.codes[0])
        return f"{level} views" if level else "views, level unknown"
    if kind == "path":
        return "paths"
    if kind == "step":
        return "steps"
    if kind in ("hour", "weekday", "day") or feature.number in TIME_NUMBERS:
        return "time"
    if kind == "number":
        return "session numbers"
    return "words"


def code_levels(paths) -> dict[str, str]:
    """Each code's level (A-D) as the sessions' own paths place it: where it first appears, the
    shallowest level when it appears at several."""
    levels: dict[str, int] = {}
    for session_paths in paths:
        for path in session_paths:
            for depth, code in enumerate(path[:4]):
                if depth < levels.get(code, 4):
                    levels[code] = depth
    return {code: LEVELS[depth] for code, depth in levels.items()}


# -- the result ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Info:
    """What a population was computed from, and what it cost."""

    model_id: str
    model_sha256: str
    db_fingerprint: str
    db_sessions: int  # sessions in the database when sampled
    seed: int
    units: str  # "log-odds" (or "probability" for the original's forest)
    base_value: float  # the model's output for the typical session
    seconds: float  # computing it: sample, features, SHAP, aggregates
    sample_seconds: float  # of which reading the sample from the database
    computed_at: str  # UTC, ISO 8601
    salt: str = ""  # the A/B groups' salt and share the sample's groups were drawn with
    share: float = 1.0
    version: int = VERSION


@dataclass(frozen=True)
class Sample:
    """The sampled sessions, one row each in id order (the rows of the SHAP matrix)."""

    session_ids: tuple[str, ...]
    gender: np.ndarray  # "male", "female", "unknown" (recorded)
    p_male: np.ndarray  # as served by the model
    predicted: np.ndarray  # "male", "female"
    group: np.ndarray  # A/B group: "treatment", "control"
    start_time: np.ndarray  # datetime64[s]
    numbers: pd.DataFrame  # NUMBER_COLUMNS, one row a session
    codes: tuple[str, ...]  # every code the sampled sessions viewed
    viewed: sp.csr_matrix  # sessions × codes: 1 where the session viewed the code (any level)

    def __len__(self) -> int:
        return len(self.session_ids)


@dataclass(frozen=True)
class Population:
    """SHAP of the treatment model over a sample of the database's sessions, and its aggregates.

    `shap` and `values` are sessions × `features` (the features with a contribution anywhere in
    the sample, in the model's order): each session's contributions (in `info.units`) and its
    feature values. `importance` has one row per feature (feature, label, group, mean_abs, mean,
    corr, sessions), largest mean_abs first; `groups` one per kind and level (group, features,
    mean_abs, mean, net_abs).
    """

    info: Info
    sample: Sample
    features: tuple[str, ...]
    shap: sp.csr_matrix
    values: sp.csr_matrix
    levels: dict  # code -> level "A".."D", from the sampled sessions' paths
    importance: pd.DataFrame
    groups: pd.DataFrame
    scheme: str = "session"
    model_numbers: tuple[str, ...] = ()  # the session numbers the model has as features

    @cached_property
    def parsed(self) -> tuple[Feature, ...]:
        return tuple(Feature.parse(name, self.scheme) for name in self.features)

    @cached_property
    def group_of(self) -> np.ndarray:
        """Each stored feature's kind and level (one of GROUPS)."""
        return np.array([group_of_feature(f, self.levels) for f in self.parsed], dtype=object)

    @cached_property
    def labels(self) -> np.ndarray:
        return np.array([feature_label(f) for f in self.parsed], dtype=object)

    def columns_where(self, keep: Callable[[Feature], bool]) -> np.ndarray:
        return np.array([i for i, f in enumerate(self.parsed) if keep(f)], dtype=np.int64)

    def dependence(self, number: str) -> pd.DataFrame:
        """How a session number's contribution changes with its value, session by session:
        value, number (the number feature's SHAP; NaN when the model lacks it), one_hot (the
        summed one-hot contributions of its hour or weekday tokens; NaN for the others) and
        total (the two summed), with gender and predicted."""
        if number not in DEPENDENCE:
            raise ValueError(f"no dependence for {number!r}: one of {', '.join(DEPENDENCE)}")
        n = len(self.sample)
        column = self.columns_where(lambda f: f.kind == "number" and f.number == number)
        own = (
            np.asarray(self.shap[:, column].sum(axis=1)).ravel() if number in self.model_numbers else np.full(n, np.nan)
        )
        one_hot_kind = DEPENDENCE[number]
        one_hot = np.full(n, np.nan)
        if one_hot_kind:
            columns = self.columns_where(lambda f: f.kind == one_hot_kind)
            one_hot = np.asarray(self.shap[:, columns].sum(axis=1)).ravel() if len(columns) else np.zeros(n)
        return pd.DataFrame(
            {
                "value": self.sample.numbers[number].to_numpy(dtype=float),
                "number": own,
                "one_hot": one_hot,
                "total": np.nan_to_num(own) + np.nan_to_num(one_hot),
                "gender": self.sample.gender,
                "predicted": self.sample.predicted,
            }
        )

    def viewed_codes(self, min_sessions: int = 1) -> pd.DataFrame:
        """The codes the sampled sessions viewed: code, level, sessions (most viewed first)."""
        counts = np.asarray(self.sample.viewed.sum(axis=0)).ravel().astype(int)
        frame = pd.DataFrame({"code": self.sample.codes, "sessions": counts})
        frame["level"] = frame["code"].map(self.levels)
        frame = frame[frame["sessions"] >= min_sessions]
        return frame.sort_values(["sessions", "code"], ascending=[False, True], kind="stable").reset_index(drop=True)


# -- aggregates ---------------------------------------------------------------------------------


def _column_corr(values: sp.csr_matrix, shap: sp.csr_matrix) -> np.ndarray:
    """Pearson correlation of each column's values with its SHAP over all rows (zeros included);
    NaN where either is constant."""
    n = values.shape[0]
    if n == 0:
        return np.full(values.shape[1], np.nan)
    x, y = sp.csc_matrix(values, dtype=np.float64), sp.csc_matrix(shap, dtype=np.float64)
    mean_x, mean_y = np.asarray(x.mean(axis=0)).ravel(), np.asarray(y.mean(axis=0)).ravel()
    xy = np.asarray(x.multiply(y).sum(axis=0)).ravel() / n
    xx = np.asarray(x.multiply(x).sum(axis=0)).ravel() / n
    yy = np.asarray(y.multiply(y).sum(axis=0)).ravel() / n
    cov = xy - mean_x * mean_y
    var_x, var_y = xx - mean_x**2, yy - mean_y**2
    scale = np.sqrt(np.clip(var_x, 0, None) * np.clip(var_y, 0, None))
    tiny = 1e-12 * (np.abs(xx) + 1) * (np.abs(yy) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(scale > np.sqrt(tiny), cov / scale, np.nan)
    return np.clip(corr, -1.0, 1.0)


def feature_importance(shap: sp.csr_matrix, values: sp.csr_matrix, names, labels, groups) -> pd.DataFrame:
    """Per feature over all rows (a row without the feature counts 0): mean |SHAP|, mean SHAP,
    the correlation of value and SHAP, and the rows where it contributes; largest mean_abs first."""
    n = max(shap.shape[0], 1)
    table = pd.DataFrame(
        {
            "feature": list(names),
            "label": list(labels),
            "group": list(groups),
            "mean_abs": np.asarray(abs(shap).sum(axis=0)).ravel() / n,
            "mean": np.asarray(shap.sum(axis=0)).ravel() / n,
            "corr": _column_corr(values, shap),
            "sessions": np.diff(sp.csc_matrix(shap).indptr).astype(np.int64),  # as `load` reads it back
        }
    )
    order = np.lexsort((np.arange(len(table)), -table["mean_abs"].to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def group_importance(shap: sp.csr_matrix, groups: np.ndarray, importance: pd.DataFrame) -> pd.DataFrame:
    """Per kind and level: the features in it, their mean |SHAP| summed (mean_abs) and mean SHAP
    summed (mean), and net_abs: the mean over sessions of |the group's contributions summed|
    (what the kind moves in a session, pushes of both ways netted)."""
    n = max(shap.shape[0], 1)
    summed = importance.groupby("group", sort=False).agg(
        features=("feature", "size"), mean_abs=("mean_abs", "sum"), mean=("mean", "sum")
    )
    net = {}
    for group in summed.index:
        columns = np.flatnonzero(groups == group)
        net[group] = float(np.abs(np.asarray(shap[:, columns].sum(axis=1)).ravel()).sum() / n)
    summed["net_abs"] = pd.Series(net)
    order = [group for group in GROUPS if group in summed.index]
    return summed.loc[order].rename_axis("group").reset_index()


# -- computing it -------------------------------------------------------------------------------


def ab_groups(session_ids, salt: str, share: float) -> np.ndarray:
    """Each session's A/B group, as `serve.group_of` assigns it."""
    from gender.serve import group_of

    return np.array([group_of(session_id, salt, share) for session_id in session_ids], dtype=object)


def compute(
    engine: Engine,
    models: Models | Model,
    salt: str = "",
    share: float = 1.0,
    size: int = SAMPLE_SESSIONS,
    seed: int = SEED,
    progress: Progress | None = None,
    db_fingerprint: str | None = None,
) -> Population:
    """Sample the database's sessions and compute the treatment model's SHAP over them."""
    say = progress or (lambda fraction, message: None)
    model = models.treatment if isinstance(models, Models) else models
    if isinstance(models, Models) and models.control is None:
        share = 1.0  # serve gives every session the treatment model
    started = time.perf_counter()
    say(0.0, f"choosing {size:,} sessions at random (by recorded gender)…")
    db_fingerprint = db_fingerprint or fingerprint_of(engine)
    ids, total = sample_ids(engine, size, seed)
    if not len(ids):
        raise GenderError("the database holds no sessions: nothing to sample")
    say(0.05, f"reading the views of {len(ids):,} sampled sessions by id…")
    sessions, views = read_sample(engine, ids)
    sample_seconds = time.perf_counter() - started
    frame = session_frame(sessions, views)
    say(0.1, "computing their features and P(male)…")
    matrix = model.features(frame)
    p_male = model.p_male_of(matrix)
    base, shap_matrix = shap_rows(model, matrix, lambda f, m: say(0.12 + 0.83 * f, m))
    say(0.96, "summing up…")
    used = np.flatnonzero(shap_matrix.getnnz(axis=0))
    names = model.explainer.names[used]
    shap_used = sp.csr_matrix(shap_matrix[:, used])
    values_used = sp.csr_matrix(matrix[:, used], dtype=np.float64)

    paths = frame["paths"].tolist()
    levels = code_levels(paths)
    codes = tuple(sorted(levels))
    code_index = {code: i for i, code in enumerate(codes)}
    rows, columns = [], []
    for row, session_paths in enumerate(paths):
        for j in {code_index[code] for path in session_paths for code in path[:4]}:
            rows.append(row)
            columns.append(j)
    viewed = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.int8), (rows, columns)), shape=(len(frame), len(codes)), dtype=np.int8
    )
    genders = sessions.set_index("session_id")["gender"].reindex(frame.index)
    sample = Sample(
        session_ids=tuple(str(i) for i in frame.index),
        gender=np.array([g if g in ("male", "female") else "unknown" for g in genders], dtype=object),
        p_male=np.asarray(p_male, dtype=float),
        predicted=np.asarray(model.decide(p_male), dtype=object).reshape(-1),
        group=ab_groups(frame.index, salt, share),
        start_time=frame["start_time"].to_numpy(dtype="datetime64[s]"),
        numbers=session_numbers(frame).reset_index(drop=True)[list(NUMBER_COLUMNS)].astype(np.float64),
        codes=codes,
        viewed=viewed,
    )
    scheme = scheme_of(model)
    info = Info(
        model_id=model.model_id,
        model_sha256=model.entry.sha256,
        db_fingerprint=db_fingerprint,
        db_sessions=int(total),
        seed=int(seed),
        units=model.explainer.units,
        base_value=base,
        seconds=0.0,
        sample_seconds=round(sample_seconds, 3),
        computed_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        salt=salt,
        share=float(share),
    )
    model_numbers = tuple(
        f.number for f in (Feature.parse(name, scheme) for name in model.explainer.names[-8:]) if f.kind == "number"
    )  # the numbers come last in both feature sets
    features = tuple(str(name) for name in names)
    population = assemble(info, sample, features, shap_used, values_used, levels, scheme, model_numbers)
    population = replace(population, info=replace(info, seconds=round(time.perf_counter() - started, 3)))
    say(1.0, f"SHAP of {len(sample):,} sessions computed")
    return population


def assemble(info, sample, features, shap, values, levels, scheme, model_numbers=()) -> Population:
    """A Population with its aggregates computed from the matrix."""
    empty = pd.DataFrame()
    draft = Population(info, sample, features, shap, values, levels, empty, empty, scheme, tuple(model_numbers))
    importance = feature_importance(shap, values, features, draft.labels, draft.group_of)
    groups = group_importance(shap, draft.group_of, importance)
    return replace(draft, importance=importance, groups=groups)


# -- cohorts ------------------------------------------------------------------------------------

COHORT_KINDS = ("all", "predicted", "gender", "group", "viewed", "started")


@dataclass(frozen=True)
class Cohort:
    """Which sampled sessions: all; predicted or recorded gender ("male", "female"; recorded
    also "unknown"); A/B group ("treatment", "control"); a code viewed at any level; or a start
    time from `start` (inclusive) to `end` (exclusive)."""

    by: str = "all"
    value: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self):
        if self.by not in COHORT_KINDS:
            raise ValueError(f"no cohort by {self.by!r}: one of {', '.join(COHORT_KINDS)}")

    @property
    def label(self) -> str:
        if self.by == "all":
            return "all sampled sessions"
        if self.by == "predicted":
            return f"predicted {self.value}"
        if self.by == "gender":
            return f"recorded {self.value}" if self.value != "unknown" else "gender unknown"
        if self.by == "group":
            return f"A/B group {self.value}"
        if self.by == "viewed":
            return f"viewed {self.value}"
        start = f"{self.start:%Y-%m-%d %H:%M}" if self.start else "…"
        end = f"{self.end:%Y-%m-%d %H:%M}" if self.end else "…"
        return f"started {start} to {end}"

    def mask(self, population: Population) -> np.ndarray:
        sample = population.sample
        n = len(sample)
        if self.by == "all":
            return np.ones(n, dtype=bool)
        if self.by == "predicted":
            return sample.predicted == self.value
        if self.by == "gender":
            return sample.gender == self.value
        if self.by == "group":
            return sample.group == self.value
        if self.by == "viewed":
            try:
                j = sample.codes.index(self.value)
            except ValueError:
                return np.zeros(n, dtype=bool)
            return np.asarray(sample.viewed[:, j].toarray()).ravel() > 0
        keep = np.ones(n, dtype=bool)
        if self.start is not None:
            keep &= sample.start_time >= np.datetime64(self.start, "s")
        if self.end is not None:
            keep &= sample.start_time < np.datetime64(self.end, "s")
        return keep


@dataclass(frozen=True)
class Comparison:
    """Two cohorts' mean contributions side by side.

    features: feature, label, group, mean_a, mean_b, difference (a − b), largest |difference|
    first (the top ones); groups: the same per kind and level (all of them)."""

    a: Cohort
    b: Cohort
    sessions_a: int
    sessions_b: int
    p_male_a: float  # mean P(male) of its sampled sessions, as the model answers (NaN for an empty cohort)
    p_male_b: float
    features: pd.DataFrame
    groups: pd.DataFrame


def _mean_rows(shap: sp.csr_matrix, mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return np.zeros(shap.shape[1])
    return np.asarray(shap[np.flatnonzero(mask)].mean(axis=0)).ravel()


def compare(population: Population, a: Cohort, b: Cohort, top: int = 15) -> Comparison:
    """Mean SHAP per feature (a session without it counts 0) in cohort a and in cohort b."""
    mask_a, mask_b = a.mask(population), b.mask(population)
    mean_a, mean_b = _mean_rows(population.shap, mask_a), _mean_rows(population.shap, mask_b)
    table = pd.DataFrame(
        {
            "feature": list(population.features),
            "label": population.labels,
            "group": population.group_of,
            "mean_a": mean_a,
            "mean_b": mean_b,
        }
    )
    table["difference"] = table["mean_a"] - table["mean_b"]
    by_group = table.groupby("group", sort=False)[["mean_a", "mean_b", "difference"]].sum()
    by_group = by_group.loc[[g for g in GROUPS if g in by_group.index]].rename_axis("group").reset_index()
    order = np.lexsort((np.arange(len(table)), -table["difference"].abs().to_numpy()))
    top_rows = table.iloc[order[:top]]
    top_rows = top_rows[top_rows["difference"] != 0].reset_index(drop=True)
    p_male = population.sample.p_male
    return Comparison(
        a,
        b,
        int(mask_a.sum()),
        int(mask_b.sum()),
        float(p_male[mask_a].mean()) if mask_a.any() else float("nan"),
        float(p_male[mask_b].mean()) if mask_b.any() else float("nan"),
        top_rows,
        by_group,
    )


# -- the file beside the models -----------------------------------------------------------------


def file_name(model_sha256: str, db_fingerprint: str) -> str:
    return f"{FILE_PREFIX}{model_sha256[:8]}-{db_fingerprint}.npz"


def _csr_arrays(prefix: str, matrix: sp.csr_matrix) -> dict:
    matrix = sp.csr_matrix(matrix)
    return {
        f"{prefix}_data": matrix.data,
        f"{prefix}_indices": matrix.indices.astype(np.int64),
        f"{prefix}_indptr": matrix.indptr.astype(np.int64),
        f"{prefix}_shape": np.array(matrix.shape, dtype=np.int64),
    }


def _csr_from(arrays, prefix: str) -> sp.csr_matrix:
    shape = tuple(int(v) for v in arrays[f"{prefix}_shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=shape
    )


def save(population: Population, model_dir: Path) -> Path:
    """Write the population beside the models (atomically); returns its path."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    info, sample = population.info, population.sample
    meta = {
        "info": info.__dict__,
        "features": list(population.features),
        "levels": population.levels,
        "scheme": population.scheme,
        "model_numbers": list(population.model_numbers),
        "session_ids": list(sample.session_ids),
        "gender": sample.gender.tolist(),
        "predicted": sample.predicted.tolist(),
        "group": sample.group.tolist(),
        "codes": list(sample.codes),
    }
    importance = population.importance.set_index("feature").reindex(list(population.features))
    arrays = {
        "meta": np.array(json.dumps(meta, ensure_ascii=True)),
        "p_male": sample.p_male,
        "start_time": sample.start_time.astype("datetime64[s]").astype(np.int64),
        "numbers": sample.numbers[list(NUMBER_COLUMNS)].to_numpy(dtype=np.float64),
        "importance": importance[["mean_abs", "mean", "corr", "sessions"]].to_numpy(dtype=np.float64),
        **_csr_arrays("shap", population.shap),
        **_csr_arrays("values", population.values),
        **_csr_arrays("viewed", sample.viewed),
    }
    path = model_dir / file_name(info.model_sha256, info.db_fingerprint)
    files.write_atomically(path, lambda f: np.savez_compressed(f, **arrays))
    return path


def load(path: Path, model_sha256: str | None = None, db_fingerprint: str | None = None) -> Population:
    """A stored population, refused (PopulationMismatch) unless it is of this version and, when
    given, of this model (its file's sha256) and this database (its fingerprint)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        meta = json.loads(str(arrays["meta"]))
        info = Info(**meta["info"])
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:  # an empty or cut file too
        raise PopulationMismatch(f"{path} is not a stored population ({type(exc).__name__})") from None
    if info.version != VERSION:
        raise PopulationMismatch(f"{path} was written by version {info.version} of this computation, not {VERSION}")
    if model_sha256 is not None and info.model_sha256 != model_sha256:
        raise PopulationMismatch(f"{path} is of another model ({info.model_id}, sha256 {info.model_sha256[:8]})")
    if db_fingerprint is not None and info.db_fingerprint != db_fingerprint:
        raise PopulationMismatch(f"{path} is of another database (fingerprint {info.db_fingerprint})")
    try:
        features = tuple(meta["features"])
        sample = Sample(
            session_ids=tuple(meta["session_ids"]),
            gender=np.array(meta["gender"], dtype=object),
            p_male=arrays["p_male"].astype(float),
            predicted=np.array(meta["predicted"], dtype=object),
            group=np.array(meta["group"], dtype=object),
            start_time=arrays["start_time"].astype("datetime64[s]"),
            numbers=pd.DataFrame(arrays["numbers"], columns=list(NUMBER_COLUMNS)),
            codes=tuple(meta["codes"]),
            viewed=_csr_from(arrays, "viewed"),
        )
        draft = Population(
            info,
            sample,
            features,
            _csr_from(arrays, "shap"),
            _csr_from(arrays, "values"),
            dict(meta["levels"]),
            pd.DataFrame(),
            pd.DataFrame(),
            meta["scheme"],
            tuple(meta["model_numbers"]),
        )
        stats = arrays["importance"]
        importance = pd.DataFrame(
            {
                "feature": list(features),
                "label": draft.labels,
                "group": draft.group_of,
                "mean_abs": stats[:, 0],
                "mean": stats[:, 1],
                "corr": stats[:, 2],
                "sessions": stats[:, 3].astype(np.int64),
            }
        )
        order = np.lexsort((np.arange(len(importance)), -importance["mean_abs"].to_numpy()))
        importance = importance.iloc[order].reset_index(drop=True)
        groups = group_importance(draft.shap, draft.group_of, importance)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise PopulationMismatch(f"{path} is not a stored population ({type(exc).__name__})") from None
    return replace(draft, importance=importance, groups=groups)


def with_groups(population: Population, salt: str, share: float) -> Population:
    """The population with its sample's A/B groups drawn with this salt and share (cheap: no SHAP)."""
    if (population.info.salt, population.info.share) == (salt, float(share)):
        return population
    sample = replace(population.sample, group=ab_groups(population.sample.session_ids, salt, share))
    return replace(population, sample=sample, info=replace(population.info, salt=salt, share=float(share)))


def summary(population: Population, path: Path | None = None, top: int = 10) -> dict:
    """The population in brief, as plain data (the CLI prints it as JSON)."""
    info = population.info
    return {
        "file": str(path) if path else None,
        "model_id": info.model_id,
        "sampled_sessions": len(population.sample),
        "db_sessions": info.db_sessions,
        "db_fingerprint": info.db_fingerprint,
        "units": info.units,
        "base_value": info.base_value,
        "computed_at": info.computed_at,
        "seconds": info.seconds,
        "sample_seconds": info.sample_seconds,
        "groups": [
            {
                "group": row.group,
                "features": int(row.features),
                "mean_abs": float(row.mean_abs),
                "mean": float(row.mean),
                "net_abs": float(row.net_abs),
            }
            for row in population.groups.itertuples()
        ],
        "top_features": [
            {
                "feature": row.feature,
                "group": row.group,
                "mean_abs": float(row.mean_abs),
                "mean": float(row.mean),
                "corr": None if np.isnan(row.corr) else float(row.corr),
            }
            for row in population.importance.head(top).itertuples()
        ],
    }


def path_for(engine: Engine, models: Models, model_dir: Path) -> Path:
    """Where the population of the treatment model on this database is kept."""
    return Path(model_dir).resolve() / file_name(models.treatment.entry.sha256, fingerprint(engine))


log = logging.getLogger("gender.population")
_held: dict[Path, tuple[tuple | None, Population]] = {}  # by file: its (mtime, size), None if never written
_computing = threading.Lock()


def current(
    engine: Engine,
    models: Models,
    model_dir: Path,
    salt: str = "",
    share: float = 1.0,
    progress: Progress | None = None,
    recompute: bool = False,
    must_keep: bool = False,
) -> Population:
    """The population of the treatment model on this database: held in this process, else read
    from its file beside the models, else computed (with `progress`) and stored there. When the
    file cannot be written, the OSError is raised if `must_keep`, else the population is held in
    memory only (`is_kept` says which)."""
    model = models.treatment
    share = share if models.control is not None else 1.0
    fp = fingerprint(engine)
    path = path_for(engine, models, model_dir)
    population = None if recompute else _read(path, model.entry.sha256, fp)
    if population is None:
        with _computing:  # one computation at a time: pages opened together wait for the first
            population = None if recompute else _read(path, model.entry.sha256, fp)
            if population is None:
                computed = compute(engine, models, salt, share, progress=progress, db_fingerprint=fp)
                try:
                    stored = save(computed, path.parent)
                    _held[stored] = (_stamp(stored), computed)
                except OSError as exc:
                    if must_keep:
                        raise
                    # A model folder this process may not write (another account's): minutes of
                    # SHAP are not thrown away, but held here while the server runs.
                    log.warning("the population could not be kept beside the models (%s): held in memory", exc)
                    _held[path] = (None, computed)
                population = computed
    regrouped = with_groups(population, salt, share)
    if regrouped is not population and path in _held:  # held as the page shows it: regrouped once
        _held[path] = (_held[path][0], regrouped)
    return regrouped


def is_kept(engine: Engine, models: Models, model_dir: Path) -> bool:
    """Whether the population `current` gives is in its file beside the models (not in memory only)."""
    return path_for(engine, models, model_dir).is_file()


def _stamp(path: Path) -> tuple:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _read(path: Path, model_sha256: str, fp: str) -> Population | None:
    """The population stored at `path` (held in memory while its file is unchanged), or None when
    there is none or it does not fit (then it is computed again)."""
    try:
        stamp = _stamp(path)
    except OSError:
        stamp = None  # no file: held only if it could not be written
    held = _held.get(path)
    if held is not None and held[0] == stamp:
        return held[1]
    if stamp is None:
        return None
    try:
        population = load(path, model_sha256, fp)
    except PopulationMismatch:
        return None
    _held[path] = (stamp, population)
    return population


# -- the views as figures: on the Population page and in a file to take away ----------------------
# plotly (gender.plots) and the report's HTML pieces load only here, when a figure is asked for.

ONE_HOT_WORDS = {"hour": "start hour tokens", "weekday": "weekday tokens"}  # by DEPENDENCE's kinds
TABLE_ROWS = 500  # features in the importance table


@dataclass(frozen=True)
class View:
    """What the Population page shows of a population, as chosen there: the features in the
    importance chart, the two cohorts and the features in their comparison (defaults: the page's)."""

    top: int = 20
    cohort_a: Cohort = Cohort("predicted", "male")
    cohort_b: Cohort = Cohort("predicted", "female")
    cohort_top: int = 15

    def comparison(self, population: Population) -> Comparison:
        return compare(population, self.cohort_a, self.cohort_b, self.cohort_top)


def groups_figure(population: Population):
    from gender import plots

    return plots.population_groups(population.groups, population.info.units)


def importance_figure(population: Population, top: int):
    from gender import plots

    return plots.population_importance(population.importance, population.info.units, top)


def importance_table(population: Population) -> pd.DataFrame:
    """The most important features with the way each pushes in words (the page's table)."""
    table = population.importance.head(TABLE_ROWS).copy()
    table["direction"] = np.where(
        table["mean"] > 0, "towards male", np.where(table["mean"] < 0, "towards female", "none")
    )
    return table[["label", "group", "mean_abs", "mean", "direction", "corr", "sessions"]]


def dependence_figure(population: Population, number: str):
    from gender import plots

    one_hot = ONE_HOT_WORDS.get(DEPENDENCE[number])
    return plots.population_dependence(
        population.dependence(number), NUMBER_LABELS[number], population.info.units, one_hot
    )


def comparison_figures(population: Population, comparison: Comparison) -> tuple:
    """The two cohorts' mean contributions by kind and level, and by feature (None when no
    feature differs)."""
    from gender import plots

    a, b, units = f"a: {comparison.a.label}", f"b: {comparison.b.label}", population.info.units
    by_group = plots.cohort_comparison(comparison.groups, "group", a, b, units)
    by_feature = (
        None if comparison.features.empty else plots.cohort_comparison(comparison.features, "label", a, b, units)
    )
    return by_group, by_feature


def report_file_name(population: Population) -> str:
    from gender import report

    return report.file_name(population.info.model_id, "gender-population")


def html(population: Population, view: View = View(), generated_at: datetime | None = None) -> str:
    """The population views as one standalone HTML file (gender/report.py's pieces): the page's
    charts for `view`, every session number's dependence, interactive, opening with no network."""
    from gender.report import chart_div, document, escape, html_table

    info, sample = population.info, population.sample
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    comparison = view.comparison(population)
    by_group, by_feature = comparison_figures(population, comparison)
    table = importance_table(population)

    def p_male(value: float) -> str:
        return "none" if np.isnan(value) else f"{value:.1%}"

    body = [
        f"<h1>The whole population: how <code>{escape(info.model_id)}</code> decides</h1>",
        f'<p class="muted">gender-lens population report, generated {escape(generated)}. SHAP contributions of '
        f"the treatment model over a random sample of {len(sample):,} of the database's {info.db_sessions:,} "
        f"sessions, stratified by recorded gender (seed {info.seed}), in {escape(info.units)} of male: positive "
        f"pushes towards male, negative towards female. Computed {escape(info.computed_at)} UTC.</p>",
        "<h2>What matters, over everyone</h2>",
        '<p class="muted">Mean |SHAP| over the sampled sessions (a session without the feature counts 0). By kind '
        "and level: the coloured bar sums the features' mean |SHAP| (colour: the kind's mean push), the grey one "
        "is the mean over sessions of |the kind's contributions summed|.</p>",
        chart_div(groups_figure(population), "chart-groups"),
        chart_div(importance_figure(population, view.top), "chart-importance"),
        f"<details><summary>The {len(table):,} most important of {len(population.importance):,} features, "
        "as a table</summary>",
        html_table(
            [
                (row.label, row.group, f"{row.mean_abs:.4f}", f"{row.mean:+.4f}", row.direction)
                + ("n/a" if np.isnan(row.corr) else f"{row.corr:+.2f}", f"{row.sessions:,}")
                for row in table.itertuples(index=False)
            ],
            header=(
                "feature",
                "kind and level",
                "mean |SHAP|",
                "mean SHAP",
                "direction",
                "corr(value, SHAP)",
                "sessions",
            ),
            classes=("text", "text", "num", "num", "text", "num", "num"),
        ),
        "</details>",
        "<h2>How a session's numbers push, value by value</h2>",
        '<p class="muted">Each point is one sampled session. The start is seen both as a number and as one-hot '
        "tokens (<code>hour:14</code>): the number's contribution, its tokens' contributions summed, and the mean "
        "of both per value.</p>",
        *(
            f"<h3>{escape(NUMBER_LABELS[number])}</h3>"
            + chart_div(dependence_figure(population, number), f"chart-dependence-{number}")
            for number in DEPENDENCE
        ),
        "<h2>Two groups of sessions, side by side</h2>",
        html_table(
            [
                (
                    f"cohort {name}",
                    cohort.label,
                    f"{size:,} sampled sessions",
                    f"mean P(male) of its sampled sessions: {p_male(mean)}",
                )
                for name, cohort, size, mean in (
                    ("a", comparison.a, comparison.sessions_a, comparison.p_male_a),
                    ("b", comparison.b, comparison.sessions_b, comparison.p_male_b),
                )
            ],
            header=None,
            classes=("", "text", "num", "num"),
        ),
        chart_div(by_group, "chart-cohort-groups"),
        chart_div(by_feature, "chart-cohort-features") if by_feature is not None else "<p>No feature differs.</p>",
    ]
    return document(f"gender-lens: the population of {info.model_id}", body)
