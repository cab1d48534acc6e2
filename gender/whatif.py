"""What if: a session edited without touching the database, its changes in words, and as a link.

A `Draft` is the edited session: its views in order (each a path A, B, C, D), its start and its
duration. It comes from a stored session (`Draft.of`) or from nothing (`Draft.empty`), every edit
gives a new one, and `Draft.session` turns it into the `Session` the model scores: the page answers
it with `predict.assess_record`, as it answers a stored session, so one place computes the answer.
What-if answers are not served predictions and never go to the prediction log.

`changes` says how a draft differs from the stored session (added, removed, moved views, another
start or duration), and `in_words` what that did to P(male). `Draft.link` writes a draft as one
compact, URL-safe query parameter (zlib-compressed JSON in base64url, after a version) and
`Draft.from_link` reads it back, refusing anything else with a `BadLink` that says why in words.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import pandas as pd

from gender.answers import duration_text
from gender.db import CATEGORY_LENGTH, CATEGORY_NAMES
from gender.session import JOIN, Session, View, as_path

BUILT_ID = "what-if"  # the session id of a session built from nothing (the database holds no such row)
LINK_VERSION = "1"  # the first part of a link: a new format gets a new version, old links keep working or say so
MAX_LINK = 8_000  # characters of a link parameter: far above a 100-view session, far below what hurts
MAX_LINK_JSON = 100_000  # bytes a link may decompress to: a small link can never inflate to a large one
MAX_VIEWS = 500  # views in a shared session
MAX_DURATION = timedelta(days=7)  # a longer "session" in a link is a mistake, not a what-if
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"  # a link's start: the second is the logs' resolution
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2100, 12, 31)  # the days a link's (and the editor's) start may be on


class BadLink(ValueError):
    """A what-if link that cannot be read; its message says why, in words, without echoing it."""


@dataclass(frozen=True)
class Draft:
    """An edited session: its views in order, its start and its duration."""

    paths: tuple[View, ...]
    start_time: datetime
    duration: timedelta

    def __post_init__(self):
        object.__setattr__(self, "paths", tuple(as_path(path) for path in self.paths))
        for path in self.paths:
            check_path(path)
        if self.start_time.tzinfo is not None:
            raise ValueError("a session starts at a wall time, without a time zone")
        if self.duration < timedelta(0):
            raise ValueError("a session cannot end before it starts")
        try:
            self.start_time + self.duration
        except OverflowError:
            raise ValueError("a session must end before the year 10000") from None

    @classmethod
    def of(cls, session: Session) -> Draft:
        return cls(session.paths, session.start_time, session.duration)

    @classmethod
    def empty(cls, start_time: datetime, duration: timedelta = timedelta(minutes=5)) -> Draft:
        """A session of no views yet: the start of one built from nothing."""
        return cls((), start_time, duration)

    @property
    def end_time(self) -> datetime:
        return self.start_time + self.duration

    def session(self, session_id: str = BUILT_ID, gender: str | None = None) -> Session:
        """The draft as the `Session` the model scores (its views numbered 1, 2, … in order)."""
        return Session(session_id, self.start_time, self.end_time, gender, self.paths)

    # -- edits: each gives a new draft ------------------------------------------------------------

    def without(self, index: int) -> Draft:
        """Without the view at `index` (0-based)."""
        self._check_index(index)
        return replace(self, paths=self.paths[:index] + self.paths[index + 1 :])

    def adding(self, path: View, at: int | None = None) -> Draft:
        """With a view of `path` inserted before `at` (0-based; at the end when None)."""
        at = len(self.paths) if at is None else max(0, min(int(at), len(self.paths)))
        return replace(self, paths=(*self.paths[:at], as_path(path), *self.paths[at:]))

    def moving(self, index: int, to: int) -> Draft:
        """With the view at `index` moved to place `to` (both 0-based; `to` kept in range)."""
        self._check_index(index)
        paths = list(self.paths)
        path = paths.pop(index)
        paths.insert(max(0, min(int(to), len(paths))), path)
        return replace(self, paths=tuple(paths))

    def starting(self, start_time: datetime) -> Draft:
        return replace(self, start_time=start_time)

    def lasting(self, duration: timedelta) -> Draft:
        return replace(self, duration=duration)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self.paths):
            raise IndexError(f"no view {index + 1}: the session has {len(self.paths)}")

    # -- as a link --------------------------------------------------------------------------------

    def link(self) -> str:
        """The draft as one URL-safe query parameter value (see the module's docstring)."""
        if len(self.paths) > MAX_VIEWS or self.duration > MAX_DURATION:
            raise ValueError(f"a session of more than {MAX_VIEWS} views or {MAX_DURATION.days} days cannot be shared")
        payload = [
            self.start_time.strftime(TIME_FORMAT),
            int(self.duration.total_seconds()),
            [list(p) for p in self.paths],
        ]
        packed = zlib.compress(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode(), 9)
        text = f"{LINK_VERSION}.{base64.urlsafe_b64encode(packed).rstrip(b'=').decode('ascii')}"
        if len(text) > MAX_LINK:
            raise ValueError("this session is too long to share as a link")
        return text

    @classmethod
    def from_link(cls, text: object) -> Draft:
        """The draft a link parameter holds; a `BadLink` saying why for anything else."""
        if not isinstance(text, str) or not text:
            raise BadLink("the link holds no session")
        if len(text) > MAX_LINK:
            raise BadLink(f"the link's session is longer than {MAX_LINK:,} characters")
        version, dot, body = text.partition(".")
        if not dot or version != LINK_VERSION:
            raise BadLink("the link is not a what-if link of this version")
        if not body:
            raise BadLink("the link holds no session after its version (it was cut)")
        if not body.isascii() or not body.replace("-", "").replace("_", "").isalnum():
            raise BadLink("the link's session is not in the link's alphabet (it was cut or altered)")
        try:
            packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            inflater = zlib.decompressobj()
            data = inflater.decompress(packed, MAX_LINK_JSON)
            if inflater.unconsumed_tail:
                raise BadLink("the link's session is too large")
            if not inflater.eof or inflater.unused_data:
                raise BadLink("the link's session is cut short or has more after it")
            payload = json.loads(data.decode("utf-8"))
        except BadLink:
            raise
        except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError, RecursionError):
            raise BadLink("the link's session cannot be read (it was cut or altered)") from None
        return cls._from_payload(payload)

    @classmethod
    def _from_payload(cls, payload: object) -> Draft:
        if not (isinstance(payload, list) and len(payload) == 3):
            raise BadLink("the link does not hold a session")
        start, seconds, paths = payload
        try:
            start_time = datetime.strptime(start, TIME_FORMAT) if isinstance(start, str) else None
        except ValueError:
            start_time = None
        if start_time is None or not FIRST_DAY <= start_time.date() <= LAST_DAY:
            raise BadLink(f"the link's start is not a date and time from {FIRST_DAY:%Y} to {LAST_DAY:%Y}")
        if type(seconds) is not int or not 0 <= seconds <= MAX_DURATION.total_seconds():
            raise BadLink(f"the link's duration is not a whole number of seconds up to {MAX_DURATION.days} days")
        if not isinstance(paths, list) or len(paths) > MAX_VIEWS:
            raise BadLink(f"the link's views are not a list of at most {MAX_VIEWS}")
        for path in paths:
            if not (isinstance(path, list) and all(isinstance(code, str) for code in path)):
                raise BadLink("a view in the link is not a path of category codes")
            try:
                check_path(tuple(path))
            except ValueError as exc:
                raise BadLink(f"a view in the link is not a path: {exc}") from None
        try:
            return cls(tuple(tuple(path) for path in paths), start_time, timedelta(seconds=seconds))
        except ValueError as exc:
            raise BadLink(f"the link's session cannot be: {exc}") from None


def check_path(path: View) -> None:
    """A ValueError unless `path` is a view's path: 1 to 4 codes, each text of 1 to
    CATEGORY_LENGTH characters without `JOIN` (the one character no code holds)."""
    if not 1 <= len(path) <= len(CATEGORY_NAMES):
        raise ValueError(f"a path has 1 to {len(CATEGORY_NAMES)} category codes, not {len(path)}")
    for code in path:
        if not isinstance(code, str) or not 1 <= len(code) <= CATEGORY_LENGTH or JOIN in code:
            raise ValueError(f"a category code is text of 1 to {CATEGORY_LENGTH} characters, no unit separator (\\x1f)")


def path_text(path: View) -> str:
    """A path as the page shows it: A › B › C › D."""
    return " › ".join(path)


# -- changes from the stored session -----------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One way an edited session differs from the stored one.

    kind    "add", "remove" or "move" (a view: `path`, its 1-based place `before` in the stored
            session and/or `after` in the edited one), "start" or "duration" (`old`, `new`)
    """

    kind: str
    path: View = ()
    before: int | None = None
    after: int | None = None
    old: datetime | timedelta | None = None
    new: datetime | timedelta | None = None

    def words(self, quote=str) -> str:
        """The change in words; `quote` sets codes apart (the page's `ui.shown`)."""
        path = quote(path_text(self.path)) if self.path else ""
        if self.kind == "add":
            return f"adding {path}"
        if self.kind == "remove":
            return f"removing {path} (view {self.before})"
        if self.kind == "move":
            return f"moving {path} from view {self.before} to {self.after}"
        if self.kind == "start":
            when = (
                "%H:%M:%S" if self.old.date() == self.new.date() else "%H:%M:%S on %A %Y-%m-%d"
            )  # the day if it moved
            return f"starting at {self.new.strftime(when)} instead of {self.old.strftime(when)}"
        return f"lasting {duration_text(self.new)} instead of {duration_text(self.old)}"


MAX_TYPED_DURATION = timedelta(days=365)  # the editor's box: a longer "session" is a slip of the keyboard
MAX_DURATION_TEXT = 100  # characters: a paste beyond it is no duration (and the patterns below never see it)
_UNIT_SECONDS = {"d": 86_400, "day": 86_400, "days": 86_400, "h": 3_600, "hour": 3_600, "hours": 3_600}
_UNIT_SECONDS |= {"min": 60, "minute": 60, "minutes": 60, "s": 1, "sec": 1, "second": 1, "seconds": 1}
_CLOCK = re.compile(r"(?:(\d+) days?, )?(\d+):(\d\d):(\d\d)")  # as str(timedelta): "1 day, 2:05:00"
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")  # "2 h", "5min", "1.5 days"


def parse_duration(text: str) -> timedelta:
    """A session's length as typed: seconds ("90", "1e5"), a clock ("1:30:00", "1 day, 2:00:00")
    or units as the box shows them ("2 h 5 min", "90 s"), to the second; ValueError saying why."""
    typed = text.strip().lower()
    if len(typed) > MAX_DURATION_TEXT:
        raise ValueError(f"a duration is at most {MAX_DURATION_TEXT} characters, this is {len(typed):,}")
    try:
        seconds = float(typed)
    except ValueError:
        clock, parts = _CLOCK.fullmatch(typed), _PART.findall(typed)
        if clock:
            days, hours, minutes, rest = (int(part or 0) for part in clock.groups())
            seconds = days * 86_400 + hours * 3_600 + minutes * 60 + rest
        elif parts and not _PART.sub("", typed) and all(unit in _UNIT_SECONDS for _, unit in parts):
            seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
        else:
            raise ValueError("type seconds (90), hours:minutes:seconds (1:30:00) or units (2 h 5 min)") from None
    if math.isnan(seconds):
        raise ValueError("type a number of seconds (90), hours:minutes:seconds (1:30:00) or units (2 h 5 min)")
    if seconds < 0:
        raise ValueError("a duration is zero or more seconds")
    if seconds > MAX_TYPED_DURATION.total_seconds():  # inf and 1e400 too
        raise ValueError(f"a session lasts at most {MAX_TYPED_DURATION.days} days here")
    return timedelta(seconds=round(seconds))


def changes(stored: Draft, edited: Draft) -> list[Change]:
    """How `edited` differs from `stored`: views added, removed and moved (a view taken out in
    one place and put back in another is moved), then the start and the duration."""
    found: list[Change] = []
    taken, put = [], []  # (path, 1-based place) out of the stored views, into the edited ones
    matcher = difflib.SequenceMatcher(None, stored.paths, edited.paths, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("delete", "replace"):
            taken += [(stored.paths[i], i + 1) for i in range(i1, i2)]
        if tag in ("insert", "replace"):
            put += [(edited.paths[j], j + 1) for j in range(j1, j2)]
    moved = Counter(path for path, _ in taken) & Counter(path for path, _ in put)
    places_after: dict[View, list[int]] = {}
    for path, place in put:
        places_after.setdefault(path, []).append(place)
    for path, place in taken:
        if moved[path]:
            moved[path] -= 1
            found.append(Change("move", path, before=place, after=places_after[path].pop(0)))
        else:
            found.append(Change("remove", path, before=place))
    found += [Change("add", path, after=place) for path, places in places_after.items() for place in places]
    found.sort(key=lambda change: change.after if change.kind == "add" else change.before)
    if edited.start_time != stored.start_time:
        found.append(Change("start", old=stored.start_time, new=edited.start_time))
    if edited.duration != stored.duration:
        found.append(Change("duration", old=stored.duration, new=edited.duration))
    return found


SHOWN_CHANGES = 3  # changes named in the sentence; the rest are counted


def in_words(found: list[Change], before: float, after: float, quote=str) -> str:
    """What the changes did to P(male): "adding `A › B › C › D` moved P(male) from 0.07 to 0.31"."""
    if not found:
        return f"The stored session, unchanged: P(male) {after:.2f}."
    named = [change.words(quote) for change in found[:SHOWN_CHANGES]]
    if len(found) > SHOWN_CHANGES:
        rest = len(found) - SHOWN_CHANGES
        named.append(f"{rest} more change" + ("s" if rest > 1 else ""))
    said = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    effect = (
        f"left P(male) at {after:.2f}"
        if f"{before:.2f}" == f"{after:.2f}"
        else (f"moved P(male) from {before:.2f} to {after:.2f}")
    )
    return f"{said[0].upper()}{said[1:]} {effect}."


# -- the catalogue of paths --------------------------------------------------------------------


@dataclass(frozen=True)
class Catalogue:
    """Every path the logs hold (category_a..category_d, views), most viewed first."""

    paths: pd.DataFrame

    def search(self, text: str, limit: int = 50) -> list[View]:
        """Up to `limit` paths, most viewed first, with every blank-separated part of `text` in
        one of their codes (case ignored): "b00009 d12" finds A › B00009 › C › D12345. Blank text
        gives the most viewed paths."""
        found = self.paths
        for term in text.split():
            inside = [found[column].str.contains(term, case=False, regex=False) for column in CATEGORY_NAMES]
            found = found[inside[0] | inside[1] | inside[2] | inside[3]]
        return [as_path(row) for row in found[CATEGORY_NAMES].head(limit).itertuples(index=False, name=None)]
