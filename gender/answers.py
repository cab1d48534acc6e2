"""The answers every interface gives (the CLI, the pages, the HTTP routes): built once, here.

`Prediction` and `Count` are the original service's two JSON answers (with the extra keys the
CLI and the API add); `Contribution` is one line of an explanation as scores carry it;
`in_words` reads a P(male) for a person; `beyond_training` says when a session lies beyond
every session the model learnt from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from gender.card import Training
    from gender.session import Session

UNKNOWN = "UNKNOWN_SESSION_ID"  # the original service's answer for a session without data


def typed(text: object) -> str:
    """Typed text as an answer echoes it: without the blanks around it."""
    return text.strip() if isinstance(text, str) else str(text)


@dataclass(frozen=True)
class Prediction:
    session_id: str
    prediction: str  # male, female or UNKNOWN_SESSION_ID
    p_male: float | None = None
    threshold: float | None = None
    model: str | None = None

    @classmethod
    def unknown(cls, session_id: object) -> Prediction:
        """The answer for a session the database does not hold, echoing the id as typed."""
        return cls(typed(session_id), UNKNOWN)

    def as_json(self) -> dict:
        """The original service's keys, plus P_MALE, THRESHOLD and MODEL."""
        answer = {"SESSION_ID": self.session_id, "PREDICTION": self.prediction}
        if self.p_male is not None:
            answer |= {"P_MALE": round(self.p_male, 6), "THRESHOLD": self.threshold, "MODEL": self.model}
        return answer


@dataclass(frozen=True)
class Count:
    """The original /count answer: how many of a session's views have a category at any level."""

    session_id: str
    category: str
    count: int
    session_known: bool = True  # False: COUNT 0 because the database has no such session (not in the JSON)

    def as_json(self) -> dict:
        return {"SESSION_ID": self.session_id, "CATEGORY": self.category, "COUNT": self.count}


class Contribution(NamedTuple):
    """One feature's part in a session's answer, as the Predict page lists it: what `score
    --explain` and `score --spark --explain` write for each session's top K, and what
    `import-scores` reads back. A tuple, so that Arrow writes it as a struct."""

    label: str  # the feature's value in words ("viewed C00007 ×3")
    shap: float  # in the explanation's units (`explain.shap_values`)


def contributions_json(contributions: Iterable[Contribution]) -> str:
    """Top contributions as text: the JSON list of {"label", "shap"} that `score --explain` writes
    into its CSV and `import-scores` stores."""
    return json.dumps([contribution._asdict() for contribution in contributions], ensure_ascii=False)


def counted(number: int, noun: str) -> str:
    """A count and its noun, in the singular for one: "1 session", "2 sessions", "12,000 sessions"."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def duration_text(duration: timedelta) -> str:
    """A duration as one says it, to the second: "45 s", "3 min 20 s", "1 h 05 min", "27 h 46 min 40 s".
    Every page shows a duration so (not "1 day, 3:46:40"), and `parse_duration` reads it back."""
    seconds = int(duration.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3_600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    hours = f"{seconds // 3_600} h {seconds % 3_600 // 60:02d} min"
    return f"{hours} {seconds % 60:02d} s" if seconds % 60 else hours


# Said beside "the model got it right" when the model was fitted on the session (`artifact.fitted_on`).
IN_SAMPLE = (
    "The model was fitted on this session: an in-sample answer, not a test of the model "
    "(the Model page gives its figures on sessions it did not see)."
)


def beyond_training(session: Session, training: Training) -> str | None:
    """A sentence when `session` has more views or lasts longer than any session the model was
    trained on (a bot's thousands of views, say): its answer there is an extrapolation."""
    beyond = []
    if training.most_views is not None and session.n_views > training.most_views:
        beyond.append(f"{session.n_views:,} views (the most in training: {training.most_views:,})")
    if training.longest_seconds is not None and session.duration.total_seconds() > training.longest_seconds:
        longest = duration_text(training.longest)
        beyond.append(f"a duration of {duration_text(session.duration)} (the longest in training: {longest})")
    if not beyond:
        return None
    return (
        f"This session has {' and '.join(beyond)}: the model never saw a session like it, so its answer "
        "here extrapolates from shorter ones. Read it with care."
    )


def in_words(prediction: Prediction, base_rate: float) -> str:
    """A served P(male) read against the prior and the threshold, e.g.
    "P(male) 0.41: well above the 22 % prior, above the threshold 0.35 → male"."""
    p_male, threshold = prediction.p_male, prediction.threshold
    ratio = p_male / base_rate if base_rate else 1.0
    if ratio >= 1.5:
        prior = "well above"
    elif ratio > 1.1:
        prior = "above"
    elif ratio >= 0.9:
        prior = "close to"
    elif ratio > 0.5:
        prior = "below"
    else:
        prior = "well below"
    side = "above" if prediction.prediction == "male" else "below"  # the model's own cut decided
    prior_text = f"{prior} the {base_rate * 100:.0f} % prior"
    return f"P(male) {p_male:.2f}: {prior_text}, {side} the threshold {threshold:.2f} → {prediction.prediction}"
