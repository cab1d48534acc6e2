"""Why the model said what it said: SHAP contributions of one session's features.

Contributions are measured against a *typical session*: the training data's median, column by
column (no view of most categories, the median start hour, duration and so on). With that one
reference, SHAP values are exact and cheap for any model: the logistic part by shap's
LinearExplainer, trees of any depth by its interventional TreeExplainer, in milliseconds. They
add up from the model's output for the typical session to its output for this one, so the
waterfall and the hierarchy view hold no approximation. Features the session shares with the
typical session contribute nothing, which keeps explanations to what is particular about it.

`grouped` tells one session's story in a few groups, the way an analyst reads it: each top-level
category the session viewed with everything under it, the categories it did not view (for the
original's n-grams, those starting with no viewed code), when it started, its length; each group
keeps its parts, and the groups add up to the same output.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit

from gender.db import CATEGORY_NAMES
from gender.features import describe
from gender.model import BoostedLogistic
from gender.session import JOIN, Feature, Session, as_path, node_id


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
    """SHAP output for the male class (rows × features), whatever shape this shap version gives
    for a classifier."""
    base = np.ravel(base)
    if isinstance(values, list):
        values, base = values[-1], base[-1:]
    values = values.toarray() if sp.issparse(values) else np.asarray(values)
    if values.ndim == 3:  # (rows, features, classes)
        values, base = values[..., -1], base[-1:]
    return float(base[-1]), values.reshape(values.shape[0], -1)


def _p_male_trees(forest) -> dict:
    """A random forest's P(male) alone, as shap's tree model: each tree's nodes with their class
    fractions' male column, scaled by 1 / trees (what shap itself makes of a RandomForestClassifier,
    one output instead of two). Explaining one output costs less than half of explaining both and
    picking one (BENCHMARKS.md), and gives the same values to the bit (test_model.py)."""
    trees = []
    for estimator in forest.estimators_:
        tree = estimator.tree_
        fractions = tree.value[:, 0, :] / tree.value[:, 0, :].sum(axis=1, keepdims=True)
        trees.append(
            {
                "children_left": tree.children_left,
                "children_right": tree.children_right,
                "children_default": tree.children_left,  # as shap converts scikit-learn's trees
                "features": tree.feature,
                "thresholds": tree.threshold,
                "values": fractions[:, -1:] / len(forest.estimators_),
                "node_sample_weight": tree.weighted_n_node_samples,
            }
        )
    return {"trees": trees, "base_offset": 0.0}


class Explainer:
    """SHAP for one fitted classifier on its features: call it with one feature row, get
    (base value, contributions), in the classifier's raw output (before calibration).

    The base value is the classifier's output for the typical training session.
    """

    def __init__(self, features, estimator):
        import shap  # heavy (numba and more): loaded by the first explanation, not by every chart

        self.estimator = estimator
        features = features.named_steps["features"]
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
            trees, self.units = _p_male_trees(estimator), "probability"
        if trees is not None:
            self.trees = shap.TreeExplainer(
                trees, data=reference[:, self.tree_columns], feature_perturbation="interventional", model_output="raw"
            )

    def __call__(self, rows: sp.csr_matrix) -> tuple[float, sp.csr_matrix]:
        """The base value and each row's contributions (rows × features, sparse: a feature equal to
        the typical session's contributes 0), before calibration."""
        base, values = 0.0, sp.csr_matrix(rows.shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # shap's notes on output formats
            if self.linear is not None:
                base, values = float(np.ravel(self.linear.expected_value)[-1]), self._linear_part(rows)
            if self.trees is not None:
                tree_rows = rows[:, self.tree_columns].toarray()
                part_base, part = _male_part(
                    self.trees.shap_values(tree_rows, check_additivity=False), self.trees.expected_value
                )
                part = sp.csr_matrix(part)
                if isinstance(self.tree_columns, np.ndarray):  # back to the model's columns (sorted, as these)
                    part = sp.csr_matrix((part.data, self.tree_columns[part.indices], part.indptr), shape=rows.shape)
                base, values = base + part_base, values + part
        return base, sp.csr_matrix(values)

    def _linear_part(self, rows: sp.csr_matrix) -> sp.csr_matrix:
        """What shap's LinearExplainer answers (interventional, against the typical session):
        (x - typical) * coef, in the same arithmetic, computed only where it can be nonzero: the
        row's own features and the few the typical session has. Its dense answer costs rows ×
        features, and a model fitted on a million sessions has 400,000 features (14 ms a row)."""
        x = sp.csr_matrix(self.estimator.linear_input(rows))
        typical, coef = np.ravel(self.linear.mean), np.ravel(self.linear.coef)
        where = np.flatnonzero(typical)
        n = x.shape[0]
        typical_rows = sp.csr_matrix(
            (np.tile(typical[where], n), np.tile(where, n), np.arange(0, n * len(where) + 1, len(where))),
            shape=x.shape,
        )
        return sp.csr_matrix((x - typical_rows).multiply(coef))


def shap_values(model, rows: sp.csr_matrix) -> tuple[float, sp.csr_matrix]:
    """The base value and each feature row's contributions (rows × features, sparse), in the
    served model's calibrated log-odds (or the forest's probability): what explanations show."""
    base, values = model.explainer(rows)
    if model.calibration:  # Platt scaling is affine in log-odds: scale everything alike
        base, values = float(model.calibration.log_odds(base)), model.calibration.slope * values
    return base, values


def explain(model, frame: pd.DataFrame) -> Explanation:
    """SHAP contributions for the one session in `frame`, labelled in words."""
    return explain_row(model, model.features(frame))


def nonzero(values: sp.csr_matrix, row: int) -> tuple[np.ndarray, np.ndarray]:
    """A row's nonzero contributions: (feature columns ascending, their values)."""
    start, end = values.indptr[row], values.indptr[row + 1]
    columns, data = values.indices[start:end], values.data[start:end]
    order = np.argsort(columns, kind="stable")
    columns, data = columns[order], data[order]
    kept = data != 0
    return columns[kept], data[kept]


def explain_row(model, row: sp.csr_matrix) -> Explanation:
    """SHAP contributions for one feature row of `model`, labelled in words."""
    base, values = shap_values(model, row)
    used, shap = nonzero(values, 0)
    names = model.explainer.names[used]
    raw = np.asarray(row[[0] * len(used), used]).ravel() if len(used) else np.zeros(0)
    contributions = pd.DataFrame(
        {
            "feature": names,
            "value": raw,
            "label": [describe(name, value) for name, value in zip(names, raw)],
            "shap": shap,
        }
    )
    order = contributions["shap"].abs().sort_values(ascending=False, kind="stable").index
    return Explanation(base, contributions.loc[order].reset_index(drop=True), model.explainer.units)


TIME_AND_ACTIVITY = "time & activity"
STEPS = "steps between views"
NOT_VIEWED = "categories not viewed"


def hierarchy(explanation: Explanation, views: pd.DataFrame | Session) -> pd.DataFrame:
    """Contributions summed up the category hierarchy of the session (A → B → C → D).

    `views` is the session (a `Session`) or its views as `db.get_views` gives them. A category's
    own features (its views, the path prefix ending in it, the original's n-grams starting with it)
    sit on its node of the session's tree; steps between views, categories the session did not
    view, n-grams starting with none, and the session's times each get a group of their own.
    Returns id, parent, label, own, net (own plus all below) and weight (|own| plus all below, for
    sizing). A node's id is its path's codes joined by JOIN (`node_id`), as the path features name
    them. Feature names are read by `Feature.parse`.
    """
    if isinstance(views, Session):
        paths = views.paths
    else:
        paths = map(as_path, views[list(CATEGORY_NAMES)].itertuples(index=False, name=None))
    parent_of: dict[str, str] = {}  # node -> its parent ("" for a root)
    label_of: dict[str, str] = {}
    for path in paths:
        parent = ""
        for depth in range(len(path)):
            node = node_id(path[: depth + 1])
            parent_of.setdefault(node, parent)
            label_of[node] = path[depth]
            parent = node
    node_of_code = {}
    for node, code in label_of.items():  # a code's node in this session (the first path it appears on)
        node_of_code.setdefault(code, node)

    own: dict[str, float] = {}
    for feature, shap_value in zip(explanation.contributions["feature"], explanation.contributions["shap"]):
        parsed = Feature.parse(feature)
        kind = parsed.kind
        if kind == "view" and parsed.codes[0] in node_of_code:
            node = node_of_code[parsed.codes[0]]
        elif kind == "path" and node_id(parsed.codes) in parent_of:
            node = node_id(parsed.codes)
        elif kind in ("view", "path"):
            node = NOT_VIEWED
        elif kind == "step":
            node = STEPS
        elif kind == "words":  # the original's n-gram: on the node of its first code, if viewed
            node = node_of_code.get(parsed.codes[0], NOT_VIEWED)
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


# -- one story per session: contributions grouped the way an analyst reads them ---------------

WHEN = "when"  # the start's hour, weekday and day
SESSION_LENGTH = "session length"  # views, duration, seconds per view
OTHER = "other"  # the smallest groups, folded into one bar
# What a group gathers: one A category the session viewed and everything under it, or one of these.
GROUP_KINDS = ("category", "not viewed", "when", "length", "other")
_FIXED_NAMES = {"not viewed": NOT_VIEWED, "when": WHEN, "length": SESSION_LENGTH}
_WHEN_NUMBERS = ("start_hour", "start_weekday", "start_day")


@dataclass(frozen=True, eq=False)
class Group:
    """Contributions that tell one part of a session's story, summed.

    name   what its bar says: "A00002 and below" for a category (`code` "A00002"), else "when",
           "session length", "categories not viewed" or "other"
    shap   its parts' contributions summed, in the explanation's units
    parts  its contributions: feature, value, label, shap, group (the name of the group each part
           was assigned to: for "other", the folded groups'), largest |shap| first
    kind   one of GROUP_KINDS
    code   the A category's code for kind "category", else None
    """

    name: str
    shap: float
    parts: pd.DataFrame
    kind: str
    code: str | None = None


def scheme_of(model) -> str:
    """Whose feature names a served model's explanation holds: "original" for the original's
    re-created features (the control's forest), else "session" (see `Feature.parse`)."""
    from gender.features import OriginalFeatures

    features = model.pipeline[:-1].named_steps["features"]
    return "original" if isinstance(features, OriginalFeatures) else "session"


def unseen_codes(model, session: Session) -> list[str]:
    """The session's category codes (any level, in the order first viewed) that its model never
    saw in training: no feature holds them, so they take no part in its answer."""
    features = model.pipeline[:-1].named_steps["features"]
    codes = dict.fromkeys(code for path in session.paths for code in path)
    if scheme_of(model) == "original":  # its words: a code split where it holds the separator, as its vectorizer does
        known = features.words_.vocabulary_
        words = {code: [word for word in code.split(JOIN) if word] for code in codes}
        return [code for code in codes if not words[code] or not all(word in known for word in words[code])]
    return [code for code in codes if code not in features.vocabulary_["view"]]


def category_group_name(code: str) -> str:
    """The name of an A category's group: no fixed group's name ends like it, whatever the code."""
    return f"{code} and below"


def _paths_of(session: Session | pd.DataFrame) -> tuple[tuple[str, ...], ...]:
    if isinstance(session, Session):
        return session.paths
    return tuple(map(as_path, session[list(CATEGORY_NAMES)].itertuples(index=False, name=None)))


def assign_groups(explanation: Explanation, session: Session | pd.DataFrame, scheme: str | None = None) -> pd.DataFrame:
    """The explanation's contributions (feature, value, label, shap), each with its group:
    `group` (its name), `group_kind` and `group_code` (see `Group`).

    A code's A category is read from the session's own paths (the first path it appears on; a
    view of a code viewed under several says so in its label):
    a view of any code the session viewed, a path prefix it viewed, a step from (or else to) a
    code it viewed go to that A category's group; a view, path or step of codes it never viewed
    to "categories not viewed"; the start's hour, weekday and day (tokens, one-hot times or
    numbers) to "when"; views, duration and seconds per view to "session length". The original's
    n-grams go to the group of the A category of their first code when the session viewed it,
    else (the session has none of them) to "categories not viewed", as the treatment's views of
    codes it never viewed. Names are read by `Feature.parse` with `scheme` (`scheme_of`).
    """
    paths = _paths_of(session)
    branches: dict[str, dict[str, None]] = {}  # a code the session viewed -> the A codes above it, in order
    nodes: set[str] = set()  # the session's path prefixes, as path features name them
    for path in paths:
        for depth, code in enumerate(path):
            branches.setdefault(code, {})[path[0]] = None
            nodes.add(node_id(path[: depth + 1]))
    a_of = {code: next(iter(under)) for code, under in branches.items()}  # the first path's A code

    kinds, codes, notes = [], [], []
    for name in explanation.contributions["feature"]:
        feature = Feature.parse(name, scheme)
        kind, code, note = "not viewed", None, ""
        if feature.kind == "view":
            if feature.codes[0] in a_of:
                kind, code = "category", a_of[feature.codes[0]]
            # A view feature names its code alone: one viewed under several A categories (a shop's
            # "Shoes" under Women and under Men) is one feature, in the first one's group; it says so.
            if len(under := branches.get(feature.codes[0], ())) > 1:
                note = f" (under {' and '.join(under)})"
        elif feature.kind == "path":
            if node_id(feature.codes) in nodes:
                kind, code = "category", feature.codes[0]
        elif feature.kind == "step":
            viewed = [c for c in feature.codes if c in a_of]
            if viewed:
                kind, code = "category", a_of[viewed[0]]
        elif feature.kind in ("hour", "weekday", "day") or feature.number in _WHEN_NUMBERS:
            kind = "when"
        elif feature.kind == "number":
            kind = "length"
        elif feature.codes[0] in a_of:  # the original's words: under their first code's category
            kind, code = "category", a_of[feature.codes[0]]
        kinds.append(kind)
        codes.append(code)
        notes.append(note)
    assigned = explanation.contributions[["feature", "value", "label", "shap"]].copy()
    assigned["label"] += notes
    assigned["group"] = [category_group_name(c) if k == "category" else _FIXED_NAMES[k] for k, c in zip(kinds, codes)]
    assigned["group_kind"] = kinds
    assigned["group_code"] = codes
    return assigned


def grouped(
    explanation: Explanation, session: Session | pd.DataFrame, scheme: str | None = None, top: int = 12
) -> list[Group]:
    """The session's story: its contributions in groups (see `assign_groups`), the largest push
    first; beyond `top` groups the smallest are folded into one "other" group.

    Every contribution is in exactly one group, so the groups add up to the explanation's output
    from its base value (to floating-point rounding).
    """
    assigned = assign_groups(explanation, session, scheme)
    groups = []
    for (kind, code), parts in assigned.groupby(["group_kind", "group_code"], sort=False, dropna=False):
        code = None if pd.isna(code) else code
        parts = parts.drop(columns=["group_kind", "group_code"]).reset_index(drop=True)
        groups.append(Group(parts["group"].iat[0], float(parts["shap"].sum()), parts, kind, code))
    groups.sort(key=lambda group: abs(group.shap), reverse=True)
    if len(groups) > top:
        folded = pd.concat([group.parts for group in groups[top:]], ignore_index=True)
        order = folded["shap"].abs().sort_values(ascending=False, kind="stable").index
        folded = folded.loc[order].reset_index(drop=True)
        groups = [*groups[:top], Group(OTHER, float(folded["shap"].sum()), folded, "other")]
    return groups
