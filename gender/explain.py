"""Why the model said what it said: SHAP contributions of one session's features.

Tree models are explained by shap's TreeExplainer (exact; for LightGBM in log-odds, for a
scikit-learn forest in probability), the logistic regression by LinearExplainer against the
training mean. Contributions add up from the base value to the model's output, so the
waterfall and the hierarchy view are exact, not approximations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import shap
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from gender.features import describe

OTHER_UP, OTHER_DOWN = "other (+)", "other (−)"


def make_explainer(pipeline: Pipeline):
    model = pipeline[-1]
    if isinstance(model, LogisticRegression):
        scale = pipeline.named_steps["scale"]
        background = (scale.mean_ / scale.scale_)[None, :]  # the average training session
        return shap.LinearExplainer(model, shap.maskers.Independent(background))
    return shap.TreeExplainer(model)


@dataclass(frozen=True)
class Explanation:
    base_value: float  # the model's output for an average training session
    contributions: pd.DataFrame  # feature, value, label, shap: sorted by |shap|, largest first
    units: str  # "log-odds" or "probability": what base_value and shap add up to

    @property
    def output(self) -> float:
        return self.base_value + float(self.contributions["shap"].sum())

    @property
    def p_male(self) -> float:
        if self.units == "probability":
            return self.output
        return float(1 / (1 + np.exp(-self.output)))


def explain(model, frame: pd.DataFrame) -> Explanation:
    """SHAP contributions for the one session in `frame`, labelled in words."""
    pipeline = model.pipeline
    features = pipeline.named_steps["features"]
    raw = features.transform(frame)
    transformed = pipeline[:-1].transform(frame)
    estimator = pipeline[-1]
    if isinstance(estimator, RandomForestClassifier):
        transformed = transformed.toarray()  # sklearn forests are explained on dense rows
    values = model.explainer.shap_values(transformed)
    base = np.ravel(model.explainer.expected_value)
    if isinstance(values, list) or (np.ndim(values) == 3):  # per class: keep "male"
        values = values[1] if isinstance(values, list) else values[..., 1]
        base = base[1:]
    values = values.toarray() if sp.issparse(values) else np.asarray(values)
    row = values.reshape(-1)[: raw.shape[1]]
    names = features.get_feature_names_out()
    raw_row = raw.toarray().reshape(-1)
    used = np.flatnonzero(row)
    contributions = pd.DataFrame({"feature": names[used], "value": raw_row[used], "shap": row[used]})
    contributions["label"] = [describe(name, value) for name, value in zip(contributions.feature, contributions.value)]
    contributions = contributions.reindex(contributions["shap"].abs().sort_values(ascending=False).index)
    units = "probability" if isinstance(estimator, RandomForestClassifier) else "log-odds"
    return Explanation(
        float(base[-1]), contributions.reset_index(drop=True)[["feature", "value", "label", "shap"]], units
    )


def top_contributions(explanation: Explanation, top: int = 10) -> pd.DataFrame:
    """The `top` largest contributions, the rest folded into "other (+)" and "other (−)": label, shap."""
    contributions = explanation.contributions
    head = contributions.head(top)[["label", "shap"]]
    rest = contributions["shap"].iloc[top:]
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
    parent_of: dict[str, str] = {}
    for path in views[["category_a", "category_b", "category_c", "category_d"]].itertuples(index=False):
        parent = ""
        for depth in range(len(path)):
            node = "/".join(path[: depth + 1])
            parent_of.setdefault(node, parent)
            parent = node
    node_of_code = {}
    for node in parent_of:  # a code's node in this session (the first path it appears on)
        node_of_code.setdefault(node.rsplit("/", 1)[-1], node)

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

    rows = pd.DataFrame({"id": list(parent_of), "parent": list(parent_of.values())})
    rows["label"] = rows["id"].str.rsplit("/", n=1).str[-1]
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
