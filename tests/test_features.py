"""Features of hand-made sessions whose answers are worked out by hand."""

import numpy as np
import pandas as pd
import pytest

from gender.features import OriginalFeatures, SessionFeatures, describe, session_frame
from gender.session import JOIN


def frame_of(rows):
    """A session frame from (session_id, start, end, [paths]) tuples."""
    sessions = pd.DataFrame([{"session_id": s, "start_time": a, "end_time": b} for s, a, b, _ in rows])
    views = pd.DataFrame(
        [
            {
                "session_id": s,
                "sequence_order": i,
                **dict(zip(["category_a", "category_b", "category_c", "category_d"], p.split("/"))),
            }
            for s, _, _, paths in rows
            for i, p in enumerate(paths, start=1)
        ]
    )
    return session_frame(sessions, views)


MONDAY = "2014-11-17 14:05:00"
SESSIONS = [
    ("s1", MONDAY, "2014-11-17 14:05:30", ["A1/B1/C1/D1", "A1/B1/C2/D2", "A1/B1/C1/D1"]),
    ("s2", "2014-11-22 09:00:00", "2014-11-22 09:00:00", ["A2/B3/C4/D5"]),
]


def as_dict(features, X, row):
    names = features.get_feature_names_out()
    values = features.transform(X).toarray()[row]
    return {name: value for name, value in zip(names, values) if value}


def test_session_frame_joins_views_in_order():
    sessions = pd.DataFrame([{"session_id": "s1", "start_time": MONDAY, "end_time": MONDAY}])
    views = pd.DataFrame(  # stored out of order: the frame must follow sequence_order
        [
            {
                "session_id": "s1",
                "sequence_order": 2,
                "category_a": "A1",
                "category_b": "B1",
                "category_c": "C2",
                "category_d": "D2",
            },
            {
                "session_id": "s1",
                "sequence_order": 1,
                "category_a": "A1",
                "category_b": "B1",
                "category_c": "C1",
                "category_d": "D1",
            },
        ]
    )
    frame = session_frame(sessions, views)
    assert frame.loc["s1", "paths"] == (("A1", "B1", "C1", "D1"), ("A1", "B1", "C2", "D2"))


def test_counts_of_a_hand_made_session():
    X = frame_of(SESSIONS)
    features = SessionFeatures(min_df=1).fit(X)
    assert as_dict(features, X, 0) == {
        "view:A1": 3,
        "view:B1": 3,
        "view:C1": 2,
        "view:C2": 1,
        "view:D1": 2,
        "view:D2": 1,
        "path:A1\x1fB1": 3,
        "path:A1\x1fB1\x1fC1": 2,
        "path:A1\x1fB1\x1fC2": 1,
        "step:C1\x1fC2": 1,
        "step:C2\x1fC1": 1,
        "step:D1\x1fD2": 1,
        "step:D2\x1fD1": 1,
        "hour:14": 1,
        "weekday:0": 1,
        "day:17": 1,
        "views": 3,
        "duration_s": 30,
        "seconds_per_view": 10,
        "start_hour": 14,
        "start_day": 17,  # start_weekday is 0 (Monday), so not listed
    }
    second = as_dict(features, X, 1)
    assert second["views"] == 1 and "duration_s" not in second  # zero seconds
    assert second["weekday:5"] == 1 and second["start_weekday"] == 5  # a Saturday
    assert not any(name.startswith("step:") for name in second)


def test_vocabulary_is_learnt_in_fit_only():
    X = frame_of(SESSIONS)
    features = SessionFeatures(min_df=1).fit(X.iloc[[1]])
    unseen = as_dict(features, X.iloc[[0]], 0)
    assert not any(name.startswith(("view:", "path:", "step:")) for name in unseen)
    assert unseen["views"] == 3  # the numbers need no vocabulary


def test_min_df_drops_tokens_of_a_single_session():
    X = frame_of(SESSIONS + [("s3", MONDAY, MONDAY, ["A1/B9/C9/D9"])])
    names = set(SessionFeatures(min_df=2).fit(X).get_feature_names_out())
    assert "view:A1" in names  # in s1 and s3
    assert "view:C1" not in names  # only in s1, however many times
    assert "hour:14" in names and "hour:9" not in names


def test_batch_equals_one_session_at_a_time():
    X = frame_of(SESSIONS)
    features = SessionFeatures(min_df=1).fit(X)
    batch = features.transform(X).toarray()
    singles = np.vstack([features.transform(X.iloc[[i]]).toarray() for i in range(len(X))])
    np.testing.assert_array_equal(batch, singles)


def test_session_without_views_has_only_times():
    X = frame_of(SESSIONS)
    empty = session_frame(
        pd.DataFrame([{"session_id": "e", "start_time": MONDAY, "end_time": MONDAY}]),
        pd.DataFrame(columns=["session_id", "sequence_order", "category_a", "category_b", "category_c", "category_d"]),
    )
    features = SessionFeatures(min_df=1).fit(X)
    values = as_dict(features, empty, 0)
    assert values == {"hour:14": 1, "weekday:0": 1, "day:17": 1, "start_hour": 14, "start_day": 17}


def test_original_features_are_words_with_one_to_three_grams():
    X = frame_of(SESSIONS)
    original = OriginalFeatures().fit(X)
    values = as_dict(original, X, 0)
    assert values["A1"] == 3 and values[f"A1{JOIN}B1"] == 3 and values[f"A1{JOIN}B1{JOIN}C1"] == 2
    assert values[f"D1{JOIN}A1{JOIN}B1"] == 1  # a trigram across two views, as the original's text made them
    assert values["day_17"] == 1 and values["weekday_0"] == 1 and values["hour_14"] == 1
    assert values["views"] == 3 and values["seconds_per_view"] == 10


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("view:C00007", 3, "viewed C00007 ×3"),
        ("view:C00007", 0, "no view of C00007"),
        ("path:A00002\x1fB00002", 2, "viewed A00002 › B00002 ×2"),
        ("step:C00002\x1fC00007", 1, "went C00002 → C00007 ×1"),
        ("hour:14", 1, "started at 14:00"),
        ("weekday:0", 1, "started on a Monday"),
        ("start_hour", 14, "start hour 14 (as a number)"),
        ("seconds_per_view", 4.2, "4.2 s per view"),
        ("views", 1, "1 view"),
        ("duration_s", 840, "lasted 14.0 min"),
    ],
)
def test_features_in_words(name, value, words):
    assert describe(name, value) == words


def test_no_two_contributions_of_a_session_read_the_same(trained_demo):
    """The start hour as a number and as its one-hot both read "started at 03:00" on the Predict
    page: two rows an analyst could not tell apart."""
    import random

    from gender import artifact, db, predict

    url, model_dir = trained_demo
    engine, model = db.connect(url), artifact.load(model_dir).treatment
    for seed in range(15):
        session_id = db.random_session_id(engine, labelled=bool(seed % 2), rng=random.Random(seed))
        labels = predict.assess(engine, model, session_id).explanation.contributions["label"]
        assert labels.is_unique, labels[labels.duplicated()].tolist()
