"""One browsing session as the domain sees it, and the one grammar of feature names.

`Session` is a session as stored: its row (id, start, end, gender) and its views in order, each
the path of its category codes A, B, C, D. Pages read it, features take its one-row `frame`.

`Feature` is a feature's name taken apart. Every name the models produce is built and parsed
here, so the two cannot drift: `session_tokens` builds the token texts `SessionFeatures` counts,
`token_name` puts the kind in front, `Feature.parse` reads any of them back. The grammar:

    view:CODE             a view of CODE at any level
    path:A␟B, path:A␟B␟C  a path prefix (␟ is `JOIN`, the ASCII unit separator)
    step:FROM␟TO          a step between the C (or D) codes of consecutive views
    hour:14, weekday:0, day:17
                          the start's hour, weekday (Monday = 0), day of month
    views, duration_s, …  a session number (`NUMBER_NAMES`)

A code is any text (":", "/", ">", blanks, quotes, non-ASCII; up to 255 characters) except
`JOIN`: a name is split at its first ":" and at `JOIN` only, so `view:a:b` is a view of "a:b".

`OriginalFeatures` (the original project's, re-created) names its columns its own way and
`Feature.parse` reads those too: a 1-3-gram of codes in a row, the codes joined by `JOIN` (kind
`words`, its codes as a path's), the one-hot start times "day_17", "weekday_0", "hour_14" (kinds day,
weekday, hour with `original` set), and the numbers "views" and "seconds_per_view". Given a name
alone, the session grammar is tried first: an original word that spells a session name (a code
called "view:X" or "duration_s") reads as that name; pass `scheme="original"` when the names are
known to be the original's. Even then the original's own names can coincide (a code called
"views" or "day_3" gives the same name as its number or its one-hot day): they read as the
number and the day. Every name reads back to itself: `Feature.parse(name).name == name`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

import numpy as np
import pandas as pd

from gender import db
from gender.db import CATEGORY_NAMES

# Joins the codes of a path or a step in a feature's name, and the codes of a node of a session's
# category tree: the ASCII unit separator, which no category name holds, where "/" or ">" may.
JOIN = "\x1f"
KIND_SEP = ":"  # between a token's kind and its text: the first ":" of a name

TOKEN_KINDS = ("view", "path", "step", "hour", "weekday", "day")
CODE_KINDS = ("view", "path", "step")
TIME_KINDS = ("hour", "weekday", "day")
NUMBER_NAMES = ("views", "duration_s", "seconds_per_view", "start_hour", "start_weekday", "start_day")
ORIGINAL_NUMBER_NAMES = ("views", "seconds_per_view")
KINDS = (*TOKEN_KINDS, "number", "words")
SCHEMES = (None, "session", "original")
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")  # weekday 0..6

VIEW_COLUMNS = ("sequence_order", *CATEGORY_NAMES)  # what db.get_views returns

View = tuple[str, ...]  # one view: its category codes A, B, C, D (shorter when deep levels are missing)

_TIME_RANGES = {"hour": range(24), "weekday": range(7), "day": range(1, 32)}
_ORIGINAL_TIME = re.compile(r"(day|weekday|hour)_(0|[1-9][0-9]*)", re.ASCII)


def _integer(text: str) -> int | None:
    """The integer a name's time part spells as Python writes it ("14", never "014" or "+1")."""
    if text.isascii() and text.isdigit() and str(int(text)) == text:
        return int(text)
    return None


@dataclass(frozen=True)
class Feature:
    """A feature's name taken apart (see the module's docstring for the grammar).

    kind     view, path, step, hour, weekday, day, number or words
    codes    view: (code,); path: (A, B) or (A, B, C); step: (from, to); words: 1-3 codes; otherwise ()
    value    hour (0-23), weekday (Monday = 0), day of month (1-31); otherwise None
    number   a number's name ("duration_s"); otherwise None
    original named as OriginalFeatures names it ("hour_14", words)
    """

    kind: str
    codes: tuple[str, ...] = ()
    value: int | None = None
    number: str | None = None
    original: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"no feature kind {self.kind!r}: one of {', '.join(KINDS)}")
        if not isinstance(self.codes, tuple):
            object.__setattr__(self, "codes", tuple(self.codes))

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def view(cls, code: str) -> Feature:
        return cls("view", (code,))

    @classmethod
    def path(cls, *codes: str) -> Feature:
        return cls("path", codes)

    @classmethod
    def step(cls, before: str, after: str) -> Feature:
        return cls("step", (before, after))

    @classmethod
    def time(cls, kind: str, value: int, original: bool = False) -> Feature:
        return cls(kind, value=int(value), original=original)

    @classmethod
    def of_number(cls, name: str) -> Feature:
        return cls("number", number=name)

    @property
    def name(self) -> str:
        """The name as the features give it; `Feature.parse(f.name) == f` for every parsed f."""
        kind = self.kind
        if kind in CODE_KINDS:
            return f"{kind}{KIND_SEP}{JOIN.join(self.codes)}"
        if kind == "words":
            return JOIN.join(self.codes)
        if kind in TIME_KINDS:
            return f"{kind}_{self.value}" if self.original else f"{kind}{KIND_SEP}{self.value}"
        return self.number

    def __str__(self) -> str:
        return self.name

    @property
    def text(self) -> str:
        """The codes as a path or step shows them in words: A › B › C, FROM → TO; an original
        n-gram's codes in a row as "A B", or "A · B" where a code holds a blank."""
        if self.kind == "words":
            return (" · " if any(" " in code for code in self.codes) else " ").join(self.codes)
        return (" → " if self.kind == "step" else " › ").join(self.codes)

    # -- parsing ------------------------------------------------------------------------------

    @classmethod
    def parse(cls, name: str, scheme: str | None = None) -> Feature:
        """The feature a name stands for.

        `scheme` says whose name it is: "session" (SessionFeatures: anything else is a
        ValueError), "original" (OriginalFeatures: anything but a one-hot time or one of its
        numbers is an n-gram of words), or None (either: the session grammar first).
        """
        if scheme not in SCHEMES:
            raise ValueError(f"no naming scheme {scheme!r}: session, original or None")
        if scheme != "original":
            feature = cls._parse_session(name)
            if feature is not None:
                return feature
            if scheme == "session":
                raise ValueError(f"not a SessionFeatures name: {name!r}")
        return cls._parse_original(name)

    @classmethod
    def _parse_session(cls, name: str) -> Feature | None:
        kind, sep, text = name.partition(KIND_SEP)
        if not sep:
            return cls("number", number=name) if name in NUMBER_NAMES else None
        if kind == "view":
            return cls("view", (text,))
        if kind == "path" or kind == "step":
            codes = tuple(text.split(JOIN))
            if len(codes) in ((2, 3) if kind == "path" else (2,)):
                return cls(kind, codes)
            return None
        if kind in TIME_KINDS:
            value = _integer(text)
            if value is not None and value in _TIME_RANGES[kind]:
                return cls(kind, value=value)
        return None

    @classmethod
    def _parse_original(cls, name: str) -> Feature:
        if name in ORIGINAL_NUMBER_NAMES:
            return cls("number", number=name)
        match = _ORIGINAL_TIME.fullmatch(name)
        if match and int(match[2]) in _TIME_RANGES[match[1]]:
            return cls(match[1], value=int(match[2]), original=True)
        return cls("words", tuple(name.split(JOIN)), original=True)


def token_name(kind: str, text: str) -> str:
    """A SessionFeatures column's name from its kind and its token text (as `session_tokens`
    and the start times give it): the grammar `Feature.parse` reads."""
    return f"{kind}{KIND_SEP}{text}"


def session_tokens(sessions: Iterable[Iterable[View]]) -> dict[str, tuple[list[int], list[str]]]:
    """The view, path and step tokens of each session's views as (rows, texts): the row (the
    session's place in `sessions`) of every occurrence and its text; repeats count.

    The hot loop of the features (a million sessions): one pass over the views in plain Python,
    the texts written with `JOIN` inline, as `Feature.name` writes them and `Feature.parse` reads
    them. A path shorter than four (deep levels missing) gives the tokens its levels allow.
    """
    kinds = {kind: ([], []) for kind in CODE_KINDS}
    (view_rows, views), (path_rows, paths), (step_rows, steps) = kinds.values()
    for row, session_paths in enumerate(sessions):
        before = None  # the session's previous view: (category_c, category_d)
        for path in session_paths:
            a, b, c, d = (*path, None, None, None)[:4]  # a short path lacks the deep levels
            for code in path:
                view_rows.append(row)
                views.append(code)
            if b is not None:
                path_rows.append(row)
                paths.append(f"{a}{JOIN}{b}")
                if c is not None:
                    path_rows.append(row)
                    paths.append(f"{a}{JOIN}{b}{JOIN}{c}")
            if before is not None:
                for previous, code in zip(before, (c, d)):
                    if previous is not None and code is not None:
                        step_rows.append(row)
                        steps.append(f"{previous}{JOIN}{code}")
            before = (c, d)
    return kinds


def time_texts(values: np.ndarray) -> np.ndarray:
    """The token texts of hour, weekday and day values (ints): each as Python writes it ("14"),
    as `Feature.name` writes it and `Feature.parse` reads it."""
    return values.astype(np.int64, copy=False).astype(str).astype(object)


def node_id(codes: Iterable[str]) -> str:
    """The id of a node of a session's category tree: its path's codes joined by `JOIN`, as a
    path feature names them (the node of `path:A␟B` is "A␟B")."""
    return JOIN.join(codes)


# -- the session --------------------------------------------------------------------------------


def _missing(code: object) -> bool:
    return code is None or (isinstance(code, float) and math.isnan(code)) or code is pd.NA


def as_path(codes: Iterable[object]) -> View:
    """A view's codes as a path: up to the first missing level (None, NaN), each as text."""
    path = []
    for code in codes:
        if _missing(code):
            break
        path.append(code if isinstance(code, str) else str(code))
    return tuple(path)


@dataclass(frozen=True)
class Session:
    """One session as stored: its row and its views in order.

    `paths` holds each view's codes A..D in sequence order; `orders` each view's sequence_order
    as stored (1, 2, … when not given). Equal sessions compare equal; `views` (the views as
    `db.get_views` gives them) and `frame` (the one-row session frame the features take) are
    derived from the fields and built once.
    """

    session_id: str
    start_time: datetime
    end_time: datetime
    gender: str | None = None  # "female", "male"; None when unknown
    paths: tuple[View, ...] = ()
    orders: tuple[int, ...] = ()

    def __post_init__(self):
        paths = tuple(as_path(path) for path in self.paths)
        orders = tuple(int(order) for order in self.orders) if self.orders else tuple(range(1, len(paths) + 1))
        if len(orders) != len(paths):
            raise ValueError(f"session {self.session_id!r}: {len(paths)} views but {len(orders)} sequence orders")
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "orders", orders)

    @classmethod
    def from_db(cls, row: Mapping, views: pd.DataFrame) -> Session:
        """From what the database gives: `db.get_session`'s row and `db.get_views`' frame
        (sequence_order, category_a..category_d; put in sequence order here)."""
        if len(views):
            views = views.sort_values("sequence_order", kind="stable")
            paths = views[list(CATEGORY_NAMES)].itertuples(index=False, name=None)
            orders = views["sequence_order"].tolist()
        else:
            paths, orders = (), ()
        return cls(
            session_id=row["session_id"],
            start_time=row["start_time"],
            end_time=row["end_time"],
            gender=row.get("gender"),
            paths=tuple(paths),
            orders=tuple(orders),
        )

    @classmethod
    def load(cls, engine, session_id: object) -> Session | None:
        """The session of an id as typed (see `db.get_session`), or None."""
        row = db.get_session(engine, session_id)
        if row is None:
            return None
        return cls.from_db(row, db.get_views(engine, row["session_id"]))

    @property
    def duration(self) -> timedelta:
        return self.end_time - self.start_time

    @property
    def n_views(self) -> int:
        return len(self.paths)

    @cached_property
    def views(self) -> pd.DataFrame:
        """The views as `db.get_views` gives them: sequence_order, category_a..category_d (None
        where a short path has no code)."""
        rows = [(order, *path, *(None,) * (4 - len(path))) for order, path in zip(self.orders, self.paths)]
        return pd.DataFrame(rows, columns=list(VIEW_COLUMNS))

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The session as a one-row session frame (see `gender.features`), ready for the features."""
        paths = np.empty(1, dtype=object)
        paths[0] = self.paths
        index = pd.Index([self.session_id], name="session_id")
        return pd.DataFrame(
            {
                "start_time": pd.to_datetime(pd.Series([self.start_time], index=index)),
                "end_time": pd.to_datetime(pd.Series([self.end_time], index=index)),
                "paths": pd.Series(paths, index=index, dtype=object),
            }
        )

    def features(self) -> list[Feature]:
        """The session's view, path and step tokens as features, in the order they occur
        (repeats included): what SessionFeatures counts for it, the start times aside."""
        tokens = session_tokens([self.paths])
        return [Feature.parse(token_name(kind, text)) for kind, (_, texts) in tokens.items() for text in texts]
