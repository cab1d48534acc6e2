"""The fast paths give the same answers as the straightforward ones, on the real logs.

The benchmarks (benchmarks/) compare our vectorised and indexed paths with re-creations of the
original's (tests/original_style.py); these tests pin that both give the same features and
counts, so the speed-ups change nothing:

- the batch session frame and `OriginalFeatures` equal the original-style per-session scan;
- `SessionFeatures` on the whole batch equals one session at a time through `predict.lookup`;
- `db.count_category` equals the original's UNION of four GROUP BYs, present and absent pairs;
- batch scoring (`predict.score`) equals one lookup at a time (`predict.predict`) and scoring
  in streamed chunks (`score.score_chunks`), and the original's forest predicts the same from
  our batch features as from its per-session scan.
"""

import random

import numpy as np
import pandas as pd
import pytest

from gender import db, predict, score, train
from gender.features import OriginalFeatures, SessionFeatures, session_frame
from gender.session import JOIN
from gender.trained import Models
from tests import original_style
from tests.models import wrap_model

pytestmark = pytest.mark.slow
SAMPLE = 300  # sessions compared one at a time


@pytest.fixture(scope="module")
def everyone(real_db):
    """Every session (labelled and not) as one batch session frame."""
    return session_frame(*db.read_sessions(real_db, "all"))


@pytest.fixture(scope="module")
def sample_ids(everyone):
    """Sessions of both kinds, the longest ones among them (most views, steps, repeats)."""
    rng = random.Random(4)
    ids = rng.sample(list(everyone.index), SAMPLE - 20)
    views = everyone["paths"].map(len)
    return sorted(set(ids) | set(views.nlargest(20).index))


def test_the_real_logs_are_all_there(real_db, everyone):
    counts = db.table_counts(real_db)
    assert (counts["sessions"], counts["labelled"], counts["views"]) == (27_000, 12_000, 59_824)
    assert len(everyone) == 27_000
    assert everyone["paths"].map(len).sum() == 59_824


# -- features ----------------------------------------------------------------------------------


def test_per_session_scan_gives_the_batch_session_frame(real_db, everyone):
    products = original_style.load_product_array(real_db)
    sessions = original_style.load_session_array(real_db, "all")
    assert len(products) == 59_824
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(len(sessions), 2_000, replace=False))
    scanned = original_style.scan_frame(products, sessions[chosen])
    batch = everyone.loc[scanned.index]
    assert len(scanned) == 2_000 and scanned["paths"].map(len).min() > 0
    pd.testing.assert_frame_equal(batch, scanned, check_dtype=False, check_index_type=False)


def test_per_session_scan_gives_original_features(real_db):
    """The original-style scan's word features are OriginalFeatures' batch matrix, column for column."""
    products = original_style.load_product_array(real_db)
    sessions = original_style.load_session_array(real_db, "labelled")
    rng = np.random.default_rng(1)
    chosen = np.sort(rng.choice(len(sessions), 3_000, replace=False))
    scanned = original_style.scan_features(products, sessions[chosen])

    all_sessions, views = db.read_sessions(real_db, "labelled")
    frame = session_frame(all_sessions, views).loc[list(sessions[chosen, 0])]
    features = OriginalFeatures().fit(frame)
    batch = features.transform(frame)
    assert scanned.shape == batch.shape and batch.shape[1] > 10_000
    assert (scanned != batch).nnz == 0
    names = features.get_feature_names_out()
    assert f"A00002{JOIN}B00002{JOIN}C00002" in set(names)  # 3-grams are there, in the same columns


def test_session_features_batch_equal_one_session_at_a_time(real_db, everyone, sample_ids):
    labelled_sessions, labelled_views = db.read_sessions(real_db, "labelled")
    features = SessionFeatures(min_df=1).fit(session_frame(labelled_sessions, labelled_views))
    batch = features.transform(everyone)
    position = everyone.index.get_indexer(sample_ids)
    unseen = 0
    for session_id, row in zip(sample_ids, position):
        single = features.transform(predict.lookup(real_db, session_id).frame)
        assert single.shape == (1, batch.shape[1])
        assert (single != batch[row]).nnz == 0, session_id
        unseen += session_id not in set(labelled_sessions["session_id"])
    assert 0 < unseen < len(sample_ids)  # both sessions seen in training and unseen ones


# -- counts ------------------------------------------------------------------------------------


def count_pairs(real_db, everyone, sample_ids) -> list[tuple[str, str]]:
    """Every category (all levels) of each sample session, and categories it never viewed."""
    rng = random.Random(2)
    pairs = []
    for session_id in sample_ids:
        views = db.get_views(real_db, session_id)
        own = sorted(set(views[db.CATEGORY_NAMES].to_numpy().ravel()))
        other = db.get_views(real_db, rng.choice(everyone.index))
        pairs += [(session_id, category) for category in own]
        pairs += [(session_id, rng.choice(list(other[name]))) for name in db.CATEGORY_NAMES]
        pairs += [(session_id, "A99999"), (session_id, "")]
    return pairs


def test_count_category_equals_the_union_query(real_db, everyone, sample_ids):
    pairs = count_pairs(real_db, everyone, sample_ids)
    with original_style.union_connection(real_db) as conn:
        union = original_style.union_table(conn)
        # the parameterised query picks the same as the whole table says, for a few pairs
        for session_id, category in pairs[:: len(pairs) // 25]:
            assert original_style.union_count(conn, session_id, category) == union.get((session_id, category), 0)
    present = absent = 0
    for session_id, category in pairs:
        expected = union.get((session_id, category), 0)
        assert db.count_category(real_db, session_id, category) == expected, (session_id, category)
        present, absent = present + (expected > 0), absent + (expected == 0)
    assert present > 500 and absent > 500
    assert db.count_category(real_db, "u10003", "B00002") == union["u10003", "B00002"] == 12


# -- predictions -------------------------------------------------------------------------------

FIT_SESSIONS = 3_000  # labelled sessions the models are fitted on: enough for real trees, quick


@pytest.fixture(scope="module")
def fitted(real_db):
    """(frame, y) of FIT_SESSIONS labelled real sessions, as training reads them."""
    frame, y = train.labelled_data(real_db)
    chosen = np.sort(np.random.default_rng(3).choice(len(frame), FIT_SESSIONS, replace=False))
    return frame.iloc[chosen], y[chosen]


@pytest.fixture(scope="module")
def boosted(fitted):
    frame, y = fitted
    return wrap_model(train.boosted_pipeline().fit(frame, y), base_rate=float(y.mean()))


def test_batch_scoring_equals_one_lookup_at_a_time(real_db, everyone, sample_ids, boosted):
    model = boosted
    scores = score.score(model, everyone).set_index("session_id")
    assert scores["prediction"].nunique() == 2
    for session_id in sample_ids:
        single = predict.predict(real_db, model, session_id)
        assert single.prediction == scores.at[session_id, "prediction"], session_id
        assert single.p_male == pytest.approx(scores.at[session_id, "p_male"], abs=1e-6), session_id


def test_scoring_in_chunks_equals_scoring_at_once(real_db, everyone, boosted):
    alone = Models(treatment=boosted, control=None)
    frames = score.frames_of(db.session_chunks(real_db, "all", size=4_000))
    in_chunks = pd.concat(score.score_chunks(alone, frames, "salt", 0.5), ignore_index=True)
    at_once = score.score(boosted, everyone).assign(model_id=boosted.model_id, ab_group="treatment")
    pd.testing.assert_frame_equal(in_chunks, at_once)


def test_original_forest_predicts_the_same_from_batch_features_as_from_the_scan(real_db, everyone, sample_ids, fitted):
    frame, y = fitted
    forest = train.original_pipeline().fit(frame, y)
    service = original_style.OriginalService(real_db, forest)
    batch = dict(zip(everyone.index, np.where(forest.predict(everyone) == 1, "male", "female")))
    answers = {session_id: service.predict(session_id) for session_id in sample_ids}
    assert answers == {session_id: batch[session_id] for session_id in sample_ids}
    assert set(answers.values()) == {"male", "female"}
    assert service.predict("u00000") == predict.predict(real_db, wrap_model(forest, 0.5), "u00000").prediction
