"""A trained model as it serves: the pipeline that answers, and the card that says what it is.

A saved pipeline answers on its own: its last step, `CalibratedDecision`, holds the fitted
classifier with its calibration and threshold, so `pipeline.predict(frame)` is the served answer
("male"/"female") and `pipeline.predict_proba(frame)` the served P(male). `Model` adds the card
(which slot, how it was measured) and the explainer; `Models` is the A/B pair every interface
serves from. `gender.artifact.load` is the one way to get them from disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from gender.card import ModelCard, Slot
from gender.metrics import Calibration, calibrated

LABELS = np.array(["female", "male"])


class CalibratedDecision(ClassifierMixin, BaseEstimator):
    """A fitted binary classifier (1 = male) whose P(male) is Platt-scaled and cut at `threshold`.

    Not scikit-learn's FixedThresholdClassifier: serving needs P(male) and the decision from one
    pass over the trees (the Predict page shows both), and `decide` is that one cut.
    """

    def __init__(self, estimator, calibration: Calibration | None = None, threshold: float = 0.5):
        self.estimator = estimator
        self.calibration = calibration
        self.threshold = threshold

    classes_ = LABELS

    def fit(self, X, y):
        raise TypeError("CalibratedDecision wraps a fitted classifier: fit the classifier, then wrap it")

    def __sklearn_is_fitted__(self) -> bool:
        try:
            check_is_fitted(self.estimator)
        except NotFittedError:
            return False
        return True

    def p_male(self, X) -> np.ndarray:
        return calibrated(self.estimator.predict_proba(X)[:, 1], self.calibration)

    def predict_proba(self, X) -> np.ndarray:
        p_male = self.p_male(X)
        return np.column_stack([1 - p_male, p_male])

    def decide(self, p_male) -> np.ndarray:
        """The answer for each P(male): male at or above the threshold."""
        return LABELS[(np.asarray(p_male) >= self.threshold).astype(int)]

    def predict(self, X) -> np.ndarray:
        return self.decide(self.p_male(X))


def served_pipeline(fitted: Pipeline, calibration: Calibration | None, threshold: float) -> Pipeline:
    """A fitted pipeline whose last step answers as served."""
    *features, (name, estimator) = fitted.steps
    return Pipeline([*features, (name, CalibratedDecision(estimator, calibration, threshold))])


class Model:
    """One served model: its pipeline (features, then the calibrated decision) and its card."""

    def __init__(self, pipeline: Pipeline, card: ModelCard, slot: str = "treatment"):
        self.pipeline, self.card, self.slot = pipeline, card, slot
        self.decision: CalibratedDecision = pipeline[-1]

    @property
    def entry(self) -> Slot:
        return self.card.slots[self.slot]

    @property
    def candidate(self) -> str:
        return self.entry.candidate

    @property
    def label(self) -> str:
        return self.entry.label

    @property
    def threshold(self) -> float:
        return self.decision.threshold

    @property
    def calibration(self) -> Calibration | None:
        return self.decision.calibration

    @property
    def classifier(self):
        """The fitted classifier under the calibration (what SHAP explains)."""
        return self.decision.estimator

    @property
    def model_id(self) -> str:
        return self.card.model_id(self.slot)

    @property
    def cv_auc(self) -> float:
        return self.card.candidates[self.candidate].auc_mean

    @property
    def base_rate(self) -> float:
        return self.card.training.male_share

    def features(self, frame: pd.DataFrame):
        """The session frame as this model's feature matrix (sparse, one row a session)."""
        return self.pipeline[:-1].transform(frame)

    def p_male_of(self, matrix) -> np.ndarray:
        """P(male) of feature rows, as served."""
        return self.decision.p_male(matrix)

    def p_male(self, frame: pd.DataFrame) -> np.ndarray:
        return self.p_male_of(self.features(frame))

    def decide(self, p_male):
        """The served answer for P(male): one value or an array of them."""
        answers = self.decision.decide(p_male)
        return str(answers) if answers.ndim == 0 else answers

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict(frame)

    @cached_property
    def explainer(self):
        from gender.explain import Explainer  # shap is heavy; only explanations need it

        return Explainer(self.pipeline[:-1], self.classifier)


@dataclass(frozen=True)
class Models:
    """The models of both slots (the control may be missing: then the treatment answers all)."""

    treatment: Model
    control: Model | None

    @property
    def card(self) -> ModelCard:
        return self.treatment.card

    def of(self, group: str) -> Model:
        return self.control if group == "control" and self.control else self.treatment

    def other(self, group: str) -> Model | None:
        """The model that did not answer this group, for side-by-side comparisons."""
        return self.treatment if group == "control" and self.control else self.control
