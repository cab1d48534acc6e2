"""The logs summarised for exploring: one session's categories, the population's by gender."""

from __future__ import annotations

import pandas as pd

from gender.db import CATEGORY_NAMES, LEVELS
from gender.features import JOIN


def session_category_counts(views: pd.DataFrame) -> pd.DataFrame:
    """Views per category at each level of one session: level (A-D), category, views."""
    counts = [
        views[name].value_counts().rename_axis("category").reset_index(name="views").assign(level=level.upper())
        for level, name in zip(LEVELS, CATEGORY_NAMES)
    ]
    frame = pd.concat(counts, ignore_index=True)[["level", "category", "views"]]
    return frame.sort_values(["level", "views", "category"], ascending=[True, False, True], ignore_index=True)


def category_shares(counts: pd.DataFrame) -> pd.DataFrame:
    """Per category: views by gender, total, and the male share of the labelled views.

    `counts` has columns category, gender (female, male, unknown), views and sessions (those with
    a view in it); the result is indexed by category, busiest first.
    """
    wide = counts.pivot_table(index="category", columns="gender", values="views", aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=["female", "male", "unknown"], fill_value=0)
    wide.columns.name = None
    wide["total"] = wide.sum(axis=1)
    wide["sessions"] = counts.groupby("category")["sessions"].sum()  # a session has one gender: no double count
    labelled = wide["female"] + wide["male"]
    wide["male_share"] = (wide["male"] / labelled.where(labelled > 0)).round(4)
    return wide.sort_values(["total"], ascending=False)


def session_paths(views: pd.DataFrame) -> pd.DataFrame:
    """A session's views in order as readable paths: #, path (A › B › C › D)."""
    return pd.DataFrame(
        {
            "#": views["sequence_order"].to_numpy(),
            "path": views[CATEGORY_NAMES].agg(" › ".join, axis=1).to_numpy() if len(views) else [],
        }
    )


def catalogue_tree(branches: pd.DataFrame, within: str | None = None) -> pd.DataFrame:
    """The catalogue as treemap nodes from per-branch counts (category_a..c, views, female, male):
    id (A, A␟B, A␟B␟C: codes joined by JOIN), parent, label, views, male_share of the labelled views
    below the node.

    The whole catalogue down to level B, or one A category (`within`) down to level C: about a
    hundred nodes either way. All 540 nodes to level C took the browser four times as long to draw.
    """
    if within is not None:
        branches = branches[branches["category_a"] == within]
    levels = CATEGORY_NAMES[: 2 if within is None else 3]
    nodes = []
    for depth in range(1, len(levels) + 1):
        keys = levels[:depth]
        summed = branches.groupby(keys, as_index=False)[["views", "female", "male"]].sum()
        summed["id"] = _joined(summed, keys)
        summed["parent"] = _joined(summed, keys[:-1]) if depth > 1 else ""
        summed["label"] = summed[keys[-1]]
        nodes.append(summed[["id", "parent", "label", "views", "female", "male"]])
    tree = pd.concat(nodes, ignore_index=True)
    labelled = tree["female"] + tree["male"]
    tree["male_share"] = tree["male"] / labelled.where(labelled > 0)
    return tree.drop(columns=["female", "male"])


def male_view_share(branches: pd.DataFrame) -> float:
    """The male share of every labelled view in the catalogue: the treemap's white, in the same
    quantity as its colours (the male share of labelled sessions differs: men view fewer pages)."""
    labelled = branches["female"].sum() + branches["male"].sum()
    return float(branches["male"].sum() / labelled) if labelled else 0.5  # no labels: every node white


def _joined(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """The path of each row through the given category columns, its codes joined by JOIN (a
    code may hold "/")."""
    return frame[keys[0]].str.cat(frame[keys[1:]], sep=JOIN) if len(keys) > 1 else frame[keys[0]]
