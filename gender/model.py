"""The classifier: a logistic regression on the session features, corrected by boosted trees.

The logistic regression gives every category, path and step a weight of its own, so a product
seen in only a few training sessions still counts (very often it is the same visitor again). The
trees then start from its log-odds and learn what it cannot: combinations, such as a category at
a certain hour or for a certain time per view. Both parts add up in log-odds, so SHAP explains
each exactly (LinearExplainer, TreeExplainer) and their sum explains the prediction.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from lightgbm import LGBMClassifier
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data


class BoostedLogistic(ClassifierMixin, BaseEstimator):
    """Logistic regression on log-scaled counts, then LightGBM boosting from its log-odds.

    With `n_estimators=0` it is the logistic regression alone. Above `tree_sessions` sessions
    the trees learn their correction from a stratified sample of that many: with leaves of a
    single session their cost grows faster than the data (≈9 min at 70,000 sessions on 2 cores),
    while the logistic part, which carries most of the signal, always sees every session.
    """

    tree_columns_ = None  # all columns: also what models saved before the sampling existed used

    def __init__(
        self,
        C: float = 3e-4,
        n_estimators: int = 300,
        learning_rate: float = 0.06,
        num_leaves: int = 255,
        tree_sessions: int = 24_000,
        random_state: int = 0,
        n_jobs: int = -1,
    ):
        self.C = C
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.tree_sessions = tree_sessions
        self.random_state = random_state
        self.n_jobs = n_jobs  # LightGBM's threads: 1 when training runs folds side by side

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # the session features are sparse counts
        tags.input_tags.positive_only = True  # counts, durations, hours: log1p wants X >= 0
        tags.classifier_tags.multi_class = False  # male or female: one log-odds
        return tags

    def linear_input(self, X) -> sp.csr_matrix:
        """What the logistic part sees: log1p of the counts, scaled to unit variance."""
        return self.scale_.transform(sp.csr_matrix(X, dtype=np.float64).log1p())

    def tree_input(self, X) -> sp.csr_matrix:
        """What the trees see: the columns they were grown on."""
        return X if self.tree_columns_ is None else X[:, self.tree_columns_]

    def fit(self, X, y):
        X, y = validate_data(self, X, y, accept_sparse=True)  # sets n_features_in_; values unchanged
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {y_type}.")
        check_non_negative(X, "BoostedLogistic.fit")
        X = sp.csr_matrix(X, dtype=np.float32)
        self.scale_ = StandardScaler(with_mean=False).fit(sp.csr_matrix(X, dtype=np.float64).log1p())
        self.linear_ = LogisticRegression(C=self.C, max_iter=5000).fit(self.linear_input(X), y)
        self.classes_ = self.linear_.classes_
        self.trees_, self.tree_columns_ = None, None
        if self.n_estimators:
            rows = np.arange(X.shape[0])
            if X.shape[0] > self.tree_sessions:
                rows, _ = train_test_split(
                    rows, train_size=self.tree_sessions, stratify=y, random_state=self.random_state
                )
                rows.sort()
            X_trees, y_trees = X[rows], np.asarray(y)[rows]
            init_score = self.linear_.decision_function(self.linear_input(X_trees))
            # The trees see only the columns their sessions use (others can never be split on):
            # at a million sessions, scoring over all 400,000 columns took three times as long.
            used = np.flatnonzero(X_trees.getnnz(axis=0))
            self.tree_columns_ = used if len(used) < X.shape[1] else None
            X_trees = self.tree_input(X_trees)
            # Leaves of a single session and no pre-filtering of rare features: a product seen
            # in one other session is often the same visitor, and that is much of the signal.
            self.trees_ = LGBMClassifier(
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                min_child_samples=1,
                min_child_weight=1e-3,
                min_data_in_bin=1,
                feature_pre_filter=False,
                colsample_bytree=0.3,
                subsample=0.8,
                subsample_freq=1,
                random_state=self.random_state,
                n_jobs=self.n_jobs,
                # Column-wise histograms: the same trees as LightGBM's own choice, without the
                # seconds it spends trying both ways on every fit.
                force_col_wise=True,
                verbose=-1,
            ).fit(X_trees, y_trees, init_score=init_score)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of male: the logistic part plus the trees' correction."""
        check_is_fitted(self, "linear_")
        # By hand, not validate_data: that costs ~0.5 ms a call, the serving path's one row. Values
        # (NaN, inf) are checked by the scaler and the logistic regression inside.
        if not sp.issparse(X):
            X = np.asarray(X)
            if X.ndim != 2:
                raise ValueError(f"Expected a 2D array, got {X.ndim}D: Reshape your data (one row: X.reshape(1, -1))")
        X = sp.csr_matrix(X, dtype=np.float32)
        expected = getattr(self, "n_features_in_", X.shape[1])  # unrecorded by models saved before
        if X.shape[1] != expected:
            raise ValueError(
                f"X has {X.shape[1]} features, but BoostedLogistic is expecting {expected} features as input"
            )
        margin = self.linear_.decision_function(self.linear_input(X))
        if self.trees_ is not None:
            margin = margin + self.trees_.predict(self.tree_input(X), raw_score=True)
        return margin

    def predict_proba(self, X) -> np.ndarray:
        p_male = expit(self.decision_function(X))
        return np.column_stack([1 - p_male, p_male])

    def predict(self, X) -> np.ndarray:
        margin = self.decision_function(X)  # first: unfitted, it raises NotFittedError
        return self.classes_[(margin >= 0).astype(int)]
