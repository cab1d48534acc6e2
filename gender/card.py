"""The model card: what was trained, on what, how well, and how each served model decides.

`train` writes it (models/metadata.json) beside the model files; loading validates it field by
field before any model file is opened, and pages, the CLI and the API read it as attributes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import ValidationError

from gender.errors import ModelUnavailable
from gender.metrics import Calibration, Confusion, PrecisionRecall, Roc, Value

CHANCE_AUC = 0.55  # a served model measured below this ROC-AUC is said to be hardly better than chance


class Training(Value):
    """The labelled sessions trained on."""

    sessions: int
    male: int
    female: int
    male_share: float
    fingerprint: str  # sha256 of exactly what was trained on: ids, times, views and labels
    # The longest session trained on, in views and in seconds: a session beyond them (a bot's
    # thousands of views) gets an answer the model extrapolates. None on cards from before.
    most_views: int | None = None
    longest_seconds: float | None = None

    @property
    def longest(self) -> timedelta | None:
        """The longest session trained on, to the second."""
        return None if self.longest_seconds is None else timedelta(seconds=round(self.longest_seconds))


class CrossValidation(Value):
    """How the candidates were compared."""

    folds: int
    seed: int
    scoring: str
    sessions: int  # below Training.sessions: a stratified sample
    male: int
    sampled: bool


class CandidateResult(Value):
    """One candidate's cross-validation: its scores, curves (out of fold) and cost."""

    label: str
    explainable: bool  # SHAP explains it exactly in milliseconds; only such a candidate is chosen
    calibration: Calibration | None
    auc_mean: float
    auc_std: float
    auc_folds: list[float]
    cv_seconds: float  # its folds' time, each on one core
    fold_fit_sessions: int  # each fold's model saw this many (fewer with a fit cap)
    roc: Roc
    pr: PrecisionRecall


class Holdout(Value):
    """The held-out sessions a final model was measured on (when the comparison was sampled)."""

    sessions: int
    male: int
    female: int
    calibration_sessions: int  # other held-out sessions, which set calibration and threshold
    auc: float
    roc: Roc
    pr: PrecisionRecall


class Slot(Value):
    """One served model: which candidate, how it turns scores into answers, how good it is."""

    candidate: str
    label: str
    calibration: Calibration | None
    threshold: float
    confusion: Confusion  # at the threshold, on the scores that judged it
    oof_p_male: list[float]  # a thinned sorted sample of those scores: the Monitoring page's drift reference
    holdout: Holdout | None  # None: judged by its candidate's out-of-fold scores
    fitted_sessions: int
    fit_seconds: float
    file: str = ""  # set by artifact.save with the file's checksum
    sha256: str = ""

    @property
    def auc(self) -> float | None:
        """ROC-AUC where it was measured: held out, or None when its candidate's CV judges it."""
        return self.holdout.auc if self.holdout else None


class ModelCard(Value):
    feature_version: int
    trained_at: datetime  # UTC
    seconds: float
    database: str  # the URL, password hidden
    training: Training
    cv: CrossValidation
    candidates: dict[str, CandidateResult]
    chosen: str
    slots: dict[str, Slot]
    versions: dict[str, str]  # python and each library's version at training

    def model_id(self, slot: str) -> str:
        entry = self.slots[slot]
        return f"{entry.candidate}-{entry.sha256[:8]}"

    def quality(self, slot: str) -> tuple[str, float]:
        """Where a served model was measured, and its ROC-AUC there."""
        entry = self.slots[slot]
        if entry.holdout:
            return f"{entry.holdout.sessions:,} held-out sessions", entry.holdout.auc
        return "out of fold (its candidate's CV)", self.candidates[entry.candidate].auc_mean

    @property
    def trained(self) -> str:
        """The training date as pages show it: "2026-12-02 18:04"."""
        return self.trained_at.strftime("%Y-%m-%d %H:%M")

    def summary(self) -> list[str]:
        """What `train` says when it is done: the comparison, then each served model's quality."""
        compared = f"a stratified sample of {self.cv.sessions:,} of the" if self.cv.sampled else "all"
        lines = [f"{self.cv.folds}-fold CV on {compared} {self.training.sessions:,} labelled sessions:"]
        for name, result in self.candidates.items():
            chosen = "  <- chosen" if name == self.chosen else ""
            lines.append(f"{name:>10}: ROC-AUC {result.auc_mean:.4f} ± {result.auc_std:.4f}{chosen}")
        for slot, entry in self.slots.items():
            balanced = f"balanced accuracy {entry.confusion.balanced_accuracy:.3f}"
            measured = (
                f"held-out ROC-AUC {entry.holdout.auc:.4f}, {balanced} on {entry.holdout.sessions:,} sessions "
                "used neither to fit nor to calibrate it"
                if entry.holdout
                else f"{balanced} out of fold (every labelled session was compared, none held out)"
            )
            lines.append(
                f"{slot} ({entry.candidate}, fitted on {entry.fitted_sessions:,} sessions): "
                f"threshold {entry.threshold:.3f}, {measured}"
            )
        _, auc = self.quality("treatment")
        if auc < CHANCE_AUC:
            lines.append(
                f"warning: the treatment model's ROC-AUC is {auc:.4f}, hardly better than chance (0.5): these "
                "sessions tell it little about gender, and its answers are close to guesses"
            )
        lines.append(f"{self.seconds} s")
        return lines

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=1).encode()

    @classmethod
    def parse(cls, text: str | bytes, where: str) -> ModelCard:
        """The card in `text`, or ModelUnavailable naming the first field that is wrong."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(map(str, error["loc"])) or "the file"
            raise ModelUnavailable(
                f"{where} is not a model card this version reads ({field}: {error['msg']}): "
                "retrain with `python -m gender train`"
            ) from None


class RunCandidate(Value):
    auc_mean: float
    auc_std: float
    auc_folds: list[float]
    calibration: Calibration | None


class RunSlot(Value):
    candidate: str
    sha256: str
    threshold: float
    fitted_sessions: int | None
    holdout_auc: float | None  # None: judged out of fold


class Run(Value):
    """A training run as kept in models/runs/: what was tried, how it scored, what was saved."""

    trained_at: datetime
    seconds: float
    database: str
    training: Training
    parameters: dict[str, dict[str, dict]]  # candidate -> step -> parameters
    cv: CrossValidation
    candidates: dict[str, RunCandidate]
    chosen: str
    slots: dict[str, RunSlot]

    @classmethod
    def of(cls, card: ModelCard, parameters: dict) -> Run:
        return cls(
            trained_at=card.trained_at,
            seconds=card.seconds,
            database=card.database,
            training=card.training,
            parameters=parameters,
            cv=card.cv,
            candidates={
                name: RunCandidate(
                    auc_mean=r.auc_mean, auc_std=r.auc_std, auc_folds=r.auc_folds, calibration=r.calibration
                )
                for name, r in card.candidates.items()
            },
            chosen=card.chosen,
            slots={
                slot: RunSlot(
                    candidate=entry.candidate,
                    sha256=entry.sha256,
                    threshold=entry.threshold,
                    fitted_sessions=entry.fitted_sessions,
                    holdout_auc=entry.auc,
                )
                for slot, entry in card.slots.items()
            },
        )
