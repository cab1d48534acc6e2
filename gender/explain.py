"""Why the model said what it said: SHAP contributions of one session's features.

Contributions are measured against a *typical session*: the training data's median, column by
column (no view of most categories, the median start hour, duration and so on). With that one
reference, SHAP values are exact and cheap for any model: the logistic part by shap's
LinearExplainer, trees of any depth by its interventional TreeExplainer, in milliseconds. They
add up from the model's output for the typical session to its output for this one, so the
waterfall and the hierarchy view hold no approximation. Features the session shares with the
typical session contribute nothing, which keeps explanations to what is particular about it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit

from gender.features import JOIN, describe
from gender.model import BoostedLogistic

OTHER_UP, OTHER_DOWN = "other (+)", "other (−)"


@dataclass(frozen=True)
class Explanation:
    base_value: float  # the model's output for the typical training session
    contributions: pd.DataFrame  # feature, value, label, shap: sorted by |shap|, largest first
    units: str  # "log-odds" or "probability": what base_value and shap add up to

    @property
    def output(self) -> float:
        return self.base_value + float(self.contributions["shap"].sum())

    @property
    def p_male(self) -> float:
        if self.units == "probability":
            return self.output
        return float(expit(self.output))


def _male_part(values, base) -> tuple[float, np.ndarray]:
    """SHAP output for the male class, whatever shape this shap version gives for a classifier."""
    base = np.ravel(base)
    if isinstance(values, list):
        values, base = values[-1], base[-1:]
    values = values.toarray() if sp.issparse(values) else np.asarray(values)
    if values.ndim == 3:  # (rows, features, classes)
        values, base = values[..., -1], base[-1:]
    return float(base[-1]), values.reshape(-1)


class Explainer:
    """SHAP for one fitted pipeline: call it with one feature row, get (base value, contributions).

    The base value is the model's output for the typical training session.
    """

    def __init__(self, pipeline):
        import shap  # heavy (numba and more): loaded by the first explanation, not by every chart

        self.estimator = estimator = pipeline[-1]
        features = pipeline.named_steps["features"]
        reference = features.reference_
        self.names = features.get_feature_names_out()  # tens of ms to build: once per model, not per row
        self.linear, self.trees = None, None
        self.tree_columns = slice(None)  # the feature columns the trees were grown on
        if isinstance(estimator, BoostedLogistic):
            typical = estimator.linear_input(reference).toarray()
            self.linear = shap.LinearExplainer(estimator.linear_, shap.maskers.Independent(typical))
            trees, self.units = estimator.trees_, "log-odds"
            if estimator.tree_columns_ is not None:
                self.tree_columns = estimator.tree_columns_
        else:  # the original's random forest: probabilities
            trees, self.units = estimator, "probability"
        if trees is not None:
            self.trees = shap.TreeExplainer(
                trees, data=reference[:, self.tree_columns], feature_perturbation="interventional", model_output="raw"
            )

    def __call__(self, row: sp.csr_matrix) -> tuple[float, np.ndarray]:
        base, values = 0.0, np.zeros(row.shape[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # shap's notes on output formats
            if self.linear is not None:
                linear_row = self.estimator.linear_input(row).toarray()
                part_base, part = _male_part(self.linear.shap_values(linear_row), self.linear.expected_value)
                base, values = base + part_base, values + part
            if self.trees is not None:
                tree_row = row[:, self.tree_columns].toarray()
                part_base, part = _male_part(
                    self.trees.shap_values(tree_row, check_additivity=False), self.trees.expected_value
                )
                base = base + part_base
                values[self.tree_columns] += part
        return base, values


def explain(model, frame: pd.DataFrame) -> Explanation:
    """SHAP contributions for the one session in `frame`, labelled in words."""
    return explain_row(model, model.features(frame))


def explain_row(model, row: sp.csr_matrix) -> Explanation:
    """SHAP contributions for one feature row of `model`, labelled in words."""
    base, values = model.explainer(row)
    if model.calibration:  # Platt scaling is affine in log-odds: scale everything alike
        slope = model.calibration["slope"]
        base, values = slope * base + model.calibration["intercept"], slope * values
    raw = row.toarray().reshape(-1)
    used = np.flatnonzero(values)
    names = model.explainer.names[used]
    contributions = pd.DataFrame(
        {
            "feature": names,
            "value": raw[used],
            "label": [describe(name, value) for name, value in zip(names, raw[used])],
            "shap": values[used],
        }
    )
    order = contributions["shap"].abs().sort_values(ascending=False, kind="stable").index
    return Explanation(base, contributions.loc[order].reset_index(drop=True), model.explainer.units)


def top_contributions(explanation: Explanation, top: int = 10) -> pd.DataFrame:
    """The `top` largest contributions, the rest folded into "other (+)" and "other (−)": label, shap.

    Features that read the same ("started at 14:00" as a token and as a number) are shown as one.
    """
    by_label = explanation.contributions.groupby("label", sort=False)["shap"].sum()
    by_label = by_label.reindex(by_label.abs().sort_values(ascending=False, kind="stable").index)
    rest = by_label.iloc[top:]
    head = by_label.iloc[:top].rename_axis("label").reset_index()
    folded = pd.DataFrame(
        [(OTHER_UP, rest[rest > 0].sum()), (OTHER_DOWN, rest[rest < 0].sum())], columns=["label", "shap"]
    )
    return pd.concat([head, folded[folded["shap"] != 0]], ignore_index=True)


TIME_AND_ACTIVITY = "time & activity"
STEPS = "steps between views"
NOT_VIEWED = "categories not viewed"


def hierarchy(explanation: Explanation, views: pd.DataFrame) -> pd.DataFrame:
    """Contributions summed up the category hierarchy of the session (A → B → C → D).

    A category's own features (its views, the path prefix ending in it) sit on its node of the
    session's tree; steps between views, categories the session did not view and the session's
    times each get a group of their own. Returns id, parent, label, own, net (own plus all below)
    and weight (|own| plus all below, for sizing).
    """
    parent_of: dict[str, str] = {}  # node (its path's codes joined by JOIN, as in feature names) -> parent
    label_of: dict[str, str] = {}
    for path in views[["category_a", "category_b", "category_c", "category_d"]].itertuples(index=False):
        parent = ""
        for depth in range(len(path)):
            node = JOIN.join(path[: depth + 1])
            parent_of.setdefault(node, parent)
            label_of[node] = path[depth]
            parent = node
    node_of_code = {}
    for node, code in label_of.items():  # a code's node in this session (the first path it appears on)
        node_of_code.setdefault(code, node)

    own: dict[str, float] = {}
    for feature, shap_value in zip(explanation.contributions["feature"], explanation.contributions["shap"]):
        kind, _, text = feature.partition(":")
        if kind == "view" and text in node_of_code:
            node = node_of_code[text]
        elif kind == "path" and text in parent_of:
            node = text
        elif kind in ("view", "path"):
            node = NOT_VIEWED
        elif kind == "step":
            node = STEPS
        else:
            node = TIME_AND_ACTIVITY
        own[node] = own.get(node, 0.0) + float(shap_value)
    for group in (TIME_AND_ACTIVITY, STEPS, NOT_VIEWED):
        if group in own:
            parent_of[group] = ""
            label_of[group] = group

    rows = pd.DataFrame({"id": list(parent_of), "parent": list(parent_of.values())})
    rows["label"] = rows["id"].map(label_of)
    rows["own"] = rows["id"].map(own).fillna(0.0)
    rows["net"], rows["weight"] = rows["own"], rows["own"].abs()
    # Children come after their parents, so one backward pass adds every subtree up.
    index = {node: i for i, node in enumerate(rows["id"])}
    net, weight = rows["net"].to_numpy().copy(), rows["weight"].to_numpy().copy()
    for i in range(len(rows) - 1, -1, -1):
        parent = rows["parent"].iat[i]
        if parent:
            net[index[parent]] += net[i]
            weight[index[parent]] += weight[i]
    rows["net"], rows["weight"] = net, weight
    return rows[rows["weight"] > 0].reset_index(drop=True)
