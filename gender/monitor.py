"""Monitoring the served models from the prediction log: volume, drift, and accuracy per A/B group.

Intervals come from a stratified bootstrap: the men and the women of a group are resampled apart,
so every resample has both and ROC-AUC is always defined, and the 95 % bounds are the resamples'
2.5th and 97.5th percentiles. Unlike the normal approximations (±1.96 SE), this stays honest on
small samples, where they printed "1.000 [1.000, 1.000]" for two sessions; below
`MIN_PER_GENDER` sessions of either gender no interval is given at all: too few to say. Groups
are compared by the bootstrap distribution of their difference. Drift is the population
stability index over the deciles of the training scores; when those fall in fewer than two bins
there is nothing to compare against, and no PSI is given rather than a reassuring 0.

Only predictions that can judge the serving models are used (`judged`): those the current models
served, of sessions they were not fitted on. A model scores its own training sessions in-sample
(the original's forest, grown to purity, perfectly), so counting them reported a drift and a
"significant" A/B difference where nothing had changed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from gender.answers import counted
from gender.artifact import session_hashes

MIN_PER_GENDER = 10  # fewer sessions of a gender than this: a figure, but no interval
MIN_SERVED_FOR_DRIFT = 10
NULL_DRAWS = 200  # samples of the PSI chance gives (`Drift.chance_psi`)
RESAMPLES = 1_000
SEED = 0  # the same log gives the same intervals on every rerun
_CELLS_PER_CHUNK = 4_000_000  # resamples are drawn in chunks of at most this many index cells


@dataclass(frozen=True)
class Estimate:
    """A figure with its 95 % bootstrap interval; `draws` are the resampled values (for differences)."""

    value: float | None  # None: the sessions do not have both genders
    low: float | None = None  # None: too few sessions of a gender to say how sure
    high: float | None = None
    draws: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        if self.value is None:
            return "needs both genders"
        if self.low is None:
            return f"{self.value:.3f} (too few to say how sure)"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class Difference:
    """first − second, with the 95 % interval of its bootstrap distribution (None: too few to say)."""

    value: float | None
    low: float | None = None
    high: float | None = None

    @property
    def significant(self) -> bool | None:
        """Whether the interval excludes 0 (a difference at the 5 % level); None when unknown."""
        return None if self.low is None else not self.low <= 0 <= self.high


def _resamples(y: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stratified bootstrap resamples as index arrays (men, women), a chunk of resamples at a time."""
    rng = np.random.default_rng(SEED)
    men, women = np.flatnonzero(y), np.flatnonzero(~y)
    per_chunk = max(1, _CELLS_PER_CHUNK // len(y))
    for start in range(0, RESAMPLES, per_chunk):
        n = min(per_chunk, RESAMPLES - start)
        yield rng.choice(men, (n, len(men))), rng.choice(women, (n, len(women)))


def _auc_of(p_men: np.ndarray, p_women: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row (Mann-Whitney: the share of (man, woman) pairs ranked right, ties half)."""
    n_men, n_women = p_men.shape[1], p_women.shape[1]
    ranks = rankdata(np.concatenate([p_men, p_women], axis=1), axis=1)
    return (ranks[:, :n_men].sum(axis=1) - n_men * (n_men + 1) / 2) / (n_men * n_women)


def _estimate(value: float, y: np.ndarray, statistic) -> Estimate:
    if min(y.sum(), (~y).sum()) < MIN_PER_GENDER:
        return Estimate(value)
    draws = np.concatenate([statistic(men, women) for men, women in _resamples(y)])
    low, high = np.percentile(draws, [2.5, 97.5])
    return Estimate(value, float(low), float(high), draws)


def auc(y, p_male) -> Estimate:
    """ROC-AUC of P(male) against the known genders (y: True for male)."""
    y, p_male = np.asarray(y, dtype=bool), np.asarray(p_male, dtype=float)
    if y.all() or not y.any():
        return Estimate(None)
    return _estimate(float(roc_auc_score(y, p_male)), y, lambda men, women: _auc_of(p_male[men], p_male[women]))


def balanced_accuracy(y, called_male) -> Estimate:
    """The mean of the share of men called male and the share of women called female."""
    y, called = np.asarray(y, dtype=bool), np.asarray(called_male, dtype=bool)
    if y.all() or not y.any():
        return Estimate(None)
    value = float((called[y].mean() + (~called[~y]).mean()) / 2)
    return _estimate(value, y, lambda men, women: (called[men].mean(axis=1) + (~called[women]).mean(axis=1)) / 2)


def difference(first: Estimate, second: Estimate) -> Difference:
    """first − second of two independent groups; the interval only when both have draws."""
    if first.value is None or second.value is None:
        return Difference(None)
    value = first.value - second.value
    if first.draws is None or second.draws is None:
        return Difference(value)
    low, high = np.percentile(first.draws - second.draws, [2.5, 97.5])
    return Difference(value, float(low), float(high))


def psi(expected, actual, bins: int = 10) -> float | None:
    """Population stability index of `actual` against `expected`, over the quantiles of `expected`;
    None when `expected` falls in fewer than two bins (nothing to tell a shift by).

    Empty bins count as 0.01 % so that the logarithm stays finite.
    """
    expected, actual = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:
        return None
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.clip(np.histogram(expected, edges)[0] / len(expected), 1e-4, None)
    a = np.clip(np.histogram(actual, edges)[0] / len(actual), 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_verdict(value: float | None) -> str:
    """The usual reading of a PSI, in words."""
    if value is None:
        return "cannot say: the P(male) at training is (nearly) one value, so there is nothing to compare with"
    if value < 0.1:
        return "stable: the P(male) served looks like it did at training"
    if value < 0.25:
        return "a moderate shift: worth watching"
    return "a major shift: the sessions served differ from those trained on; consider retraining"


@dataclass(frozen=True)
class Drift:
    """P(male) served by one group's model against its out-of-fold P(male) at training."""

    group: str
    model_id: str
    trained: np.ndarray
    served: np.ndarray

    @property
    def psi(self) -> float | None:
        """None with too few served or a degenerate training distribution."""
        return psi(self.trained, self.served) if len(self.served) >= MIN_SERVED_FOR_DRIFT else None

    @functools.cached_property
    def chance_psi(self) -> float | None:
        """The PSI that chance alone exceeds one time in twenty for this many served drawn from
        the training distribution itself: a few dozen predictions with no shift at all often give
        a PSI above 0.25, as most deciles are then empty or doubled."""
        if self.psi is None:
            return None
        rng = np.random.default_rng(SEED)
        draws = [psi(self.trained, rng.choice(self.trained, len(self.served))) for _ in range(NULL_DRAWS)]
        return float(np.quantile(draws, 0.95))

    @property
    def verdict(self) -> str:
        if len(self.served) < MIN_SERVED_FOR_DRIFT:
            return f"too few predictions from this model yet to compare ({MIN_SERVED_FOR_DRIFT} needed)"
        if self.psi is not None and self.psi <= self.chance_psi:
            return (
                f"no shift that chance would not give: {len(self.served):,} predictions drawn from the "
                f"training distribution itself give a PSI up to {self.chance_psi:.3f} one time in twenty"
            )
        return psi_verdict(self.psi)


@dataclass(frozen=True)
class Judged:
    """The prediction log's rows that can judge the serving models, and what was left out."""

    log: pd.DataFrame  # served by a current model, of a session it was not fitted on
    by_earlier_models: int  # rows served by models a retrain has since replaced
    trained_on: int  # rows of sessions their model was fitted on
    unrecorded: list[str]  # current models whose training sessions were not recorded (an older version's)

    @property
    def note(self) -> str | None:
        """What was left out, in words; None when nothing was."""
        left_out = []
        if self.by_earlier_models:
            left_out.append(f"{counted(self.by_earlier_models, 'prediction')} by models a retrain has since replaced")
        if self.trained_on:
            left_out.append(
                f"{counted(self.trained_on, 'prediction')} of sessions the serving model was fitted on (it scores "
                "them in-sample, better than new ones)"
            )
        if not left_out:
            return None
        return "Below, the current models on sessions they were not fitted on. Left out: " + "; ".join(left_out) + "."


def judged(log: pd.DataFrame, models, trained_on: dict[str, np.ndarray | None]) -> Judged:
    """The rows of `log` served by the current models (per A/B group), less those of sessions the
    serving model was fitted on; `trained_on` maps a model id to its `artifact.trained_on` hashes."""
    keep = np.zeros(len(log), dtype=bool)
    fitted = np.zeros(len(log), dtype=bool)
    unrecorded = []
    for group in ("treatment", "control"):
        model_id = models.of(group).model_id
        rows = ((log["ab_group"] == group) & (log["model_id"] == model_id)).to_numpy()
        keep |= rows
        if not rows.any():
            continue
        hashes = trained_on.get(model_id)
        if hashes is not None:
            fitted[rows] = np.isin(session_hashes(log.loc[rows, "session_id"]), hashes)
        elif model_id not in unrecorded:  # without a control, the treatment answers both groups
            unrecorded.append(model_id)
    return Judged(log[keep & ~fitted], int((~keep).sum()), int((keep & fitted).sum()), unrecorded)


def drift(log: pd.DataFrame, models) -> list[Drift]:
    """Per A/B group, what its current model served against what it scored out of fold at training."""
    drifts = []
    for group in ("treatment", "control"):
        model = models.of(group)
        served = log[(log["ab_group"] == group) & (log["model_id"] == model.model_id)]["p_male"].to_numpy()
        trained = np.asarray(model.entry.oof_p_male, dtype=float)
        drifts.append(Drift(group, model.model_id, trained, served))
    return drifts


@dataclass(frozen=True)
class GroupFigures:
    """How one A/B group's answers fared on the served sessions whose gender is known."""

    group: str
    served: int
    known: int
    male: int
    models: list[str]
    auc: Estimate
    balanced_accuracy: Estimate


def group_metrics(log: pd.DataFrame) -> dict[str, GroupFigures]:
    """Per A/B group: predictions served, how many have a known gender, ROC-AUC and balanced accuracy."""
    figures = {}
    for group, rows in log.groupby("ab_group"):
        known = rows[rows["gender"].notna()]
        y = (known["gender"] == "male").to_numpy()
        figures[group] = GroupFigures(
            group=str(group),
            served=len(rows),
            known=len(known),
            male=int(y.sum()),
            models=sorted(rows["model_id"].unique()),
            auc=auc(y, known["p_male"].to_numpy()),
            balanced_accuracy=balanced_accuracy(y, (known["prediction"] == "male").to_numpy()),
        )
    return figures


def daily_counts(log: pd.DataFrame) -> pd.DataFrame:
    """Predictions served per day and group: date, ab_group, predictions."""
    days = pd.to_datetime(log["served_at"]).dt.floor("D")
    return log.assign(date=days).groupby(["date", "ab_group"]).size().reset_index(name="predictions")
