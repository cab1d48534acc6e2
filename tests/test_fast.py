"""gender.fast, the HTTP routes' path, against the pipeline the Predict page runs: the same session,
the same feature row and the same P(male) (to 1e-9; the forest's and the logistic part's bit for
bit), on every real session and on every demo session with the models `train()` saved."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from gender import artifact, db, fast, predict, serve, train
from gender.features import session_frame
from gender.metrics import Calibration
from gender.model import BoostedLogistic
from gender.session import Session
from gender.trained import Model, served_pipeline
from tests.models import fitted_model, wrap_model


def assert_same_rows(model: Model, frame, sessions: list[Session]) -> None:
    """Each session's fast row equals its row of the pipeline's matrix, column for column."""
    matrix = model.features(frame).tocsr()
    compiled = fast.FastModel.of(model)
    for i, session in enumerate(sessions):
        row, expected = compiled.row(session), matrix[i]
        expected.sort_indices()
        assert row.width == matrix.shape[1]
        kept = expected.data != 0
        assert row.columns.tolist() == expected.indices[kept].tolist(), session.session_id
        assert row.values.tolist() == expected.data[kept].tolist(), session.session_id


def assert_same_p_male(model: Model, frame, sessions: list[Session]) -> np.ndarray:
    """Each session's fast P(male) equals the pipeline's (to 1e-9) and decides the same."""
    expected = model.p_male(frame)
    got = np.array([fast.p_male(model, session) for session in sessions])
    assert np.abs(got - expected).max() <= 1e-9
    assert (model.decide(got) == model.decide(expected)).all()
    return got


# -- every real session ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(real_db):
    """Every real session (27,000) loaded by the fast path, and the batch frame of the same."""
    frame = session_frame(*db.read_sessions(real_db, "all"))
    sessions = [fast.load_session(real_db, session_id) for session_id in frame.index]
    return frame, sessions


def bare(model: Model) -> Pipeline:
    """A served model's fitted pipeline without its calibration and threshold: features, classifier."""
    return Pipeline(model.pipeline.steps[:-1] + [("model", model.classifier)])


@pytest.fixture(scope="module")
def real_models(real_db, real, real_trained):
    """The three candidates as `train()` builds them, fitted on the real labelled sessions with
    n_jobs=1 (no calibration, the threshold at the base rate), and one of them Platt-scaled.

    The original's forest and the chosen candidate are `train()`'s own final fits on the real logs
    (conftest's `real_trained`, shared with tests/test_real_data.py: fitting them again cost
    minutes); only the candidate it did not choose is fitted here."""
    frame, _ = real
    sessions = db.read_sessions(real_db, "labelled")[0]
    labelled = frame.loc[sessions["session_id"]]
    y = (sessions["gender"] == "male").to_numpy().astype(int)
    card, saved = real_trained.card, real_trained.models
    makers = {candidate.name: candidate.make for candidate in train.CANDIDATES}  # n_jobs -> pipeline
    # What these tests take train()'s models for: fitted on every labelled session, as makers[name](1).
    assert card.training.sessions == len(y) and card.training.male == y.sum()
    for slot, name in (("control", "original"), ("treatment", card.chosen)):
        assert card.slots[slot].candidate == name and card.slots[slot].fitted_sessions == len(y)
        assert getattr(saved, slot).classifier.get_params() == makers[name](1)[-1].get_params()
    base_rate = float(y.mean())
    models = {"original": wrap_model(bare(saved.control), base_rate, "control", "original")}
    for name in ("logistic", "boosted"):
        if name == card.chosen:
            models[name] = wrap_model(bare(saved.treatment), base_rate, "treatment", name)
        else:
            models[name] = fitted_model(makers[name](1), labelled, y, "treatment", name)
    boosted = models["boosted"]
    calibration = Calibration(slope=0.8, intercept=-0.3)
    pipeline = served_pipeline(bare(boosted), calibration, 0.4)
    models["boosted, calibrated"] = Model(pipeline, boosted.card, "treatment")
    return models


@pytest.mark.slow
def test_every_real_session_loads_as_the_page_loads_it(real_db, real):
    frame, sessions = real
    assert len(sessions) == 27_000
    for session, (session_id, paths) in zip(sessions, frame["paths"].items()):
        assert session.session_id == session_id and session.paths == paths
    for session_id in ("u10003", "u25001", frame.index[-1]):  # equal to Session.load, field by field
        assert fast.load_session(real_db, session_id) == Session.load(real_db, session_id)
    assert fast.load_session(real_db, " u10003\n") == Session.load(real_db, "u10003")  # as typed
    assert fast.load_session(real_db, "u99999999") is None and fast.load_session(real_db, 10003) is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["original", "logistic", "boosted", "boosted, calibrated"])
def test_every_real_session_gets_the_pipelines_row_and_p_male(real_models, real, name):
    frame, sessions = real
    model = real_models[name]
    assert fast.FastModel.of(model) is not None
    assert_same_rows(model, frame, sessions)
    got = assert_same_p_male(model, frame, sessions)
    if name == "original":  # the forest walked as arrays: bit for bit scikit-learn's (n_jobs=1)
        assert (got == model.classifier.set_params(n_jobs=1).predict_proba(model.features(frame))[:, 1]).all()


@pytest.mark.slow
def test_the_page_and_the_api_answer_the_same_one_session_at_a_time(real_db, real_models, real):
    """The Predict page's path (one session: its frame, the pipeline) against the API's."""
    frame, _ = real
    rng = np.random.default_rng(5)
    for name in ("original", "boosted, calibrated"):
        model = real_models[name]
        for session_id in rng.choice(frame.index, 200, replace=False):
            page = predict.assess_record(model, Session.load(real_db, session_id), explain=False).prediction
            api = serve.answer(model, fast.load_session(real_db, session_id))
            assert api.p_male == pytest.approx(page.p_male, abs=1e-9)
            assert (api.session_id, api.prediction, api.threshold, api.model) == (
                page.session_id,
                page.prediction,
                page.threshold,
                page.model,
            )


# -- the models train() saves, and odd sessions ---------------------------------------------------


def test_the_saved_models_on_every_demo_session(trained_demo):
    url, model_dir = trained_demo
    engine, models = db.connect(url), artifact.load(model_dir)
    frame = session_frame(*db.read_sessions(engine, "all"))
    sessions = [fast.load_session(engine, session_id) for session_id in frame.index]
    for model in (models.treatment, models.control):
        assert fast.FastModel.of(model) is not None and fast.FastModel.of(model) is fast.FastModel.of(model)
        assert_same_rows(model, frame, sessions)
        assert_same_p_male(model, frame, sessions)
    for session_id in frame.index[:50]:  # serve() without explanation is the page's answer
        page = serve.serve(engine, models, session_id, "salt", 0.5, explain=True)
        api = serve.serve(engine, models, session_id, "salt", 0.5, explain=False)
        assert api.group == page.group and api.assessment.record == page.assessment.record
        assert api.prediction.p_male == pytest.approx(page.prediction.p_male, abs=1e-9)
        assert api.prediction.prediction == page.prediction.prediction
    engine.dispose()


def test_sessions_without_views_short_paths_and_odd_codes(trained_demo, tmp_path):
    """No views at all, an empty code, codes with separators, unseen codes, a start with a fraction of a second."""
    from datetime import datetime

    from sqlalchemy import insert

    engine = db.connect(f"sqlite:///{tmp_path / 'odd.db'}")
    db.create_schema(engine)
    start = datetime(2014, 11, 20, 23, 59, 59, 500_000)
    sessions = {
        "empty": [],
        "empty code": [("A00001", "B00001", "C00001", "")],
        "odd": [("A00002", "B/00002", "C 00002", "D\x1f1"), ("A00002", "B/00002", "C 00002", "D\x1f1")],
        "unseen": [("Z1", "Z2", "Z3", "Z4"), ("A00001", "B00001", "C00003", "D00003")],
        "backwards": [],  # ends before it starts: a duration of 0
    }
    with engine.begin() as conn:
        for session_id, views in sessions.items():
            end = datetime(2014, 11, 20, 23, 0) if session_id == "backwards" else datetime(2014, 11, 21, 0, 12, 3)
            conn.execute(insert(db.session), [{"session_id": session_id, "start_time": start, "end_time": end}])
            for order, codes in enumerate(views, 1):
                row = dict(zip(db.CATEGORY_NAMES, codes))
                conn.execute(insert(db.product), [{"session_id": session_id, "sequence_order": order, **row}])
    models = artifact.load(trained_demo[1])
    loaded = [fast.load_session(engine, session_id) for session_id in sessions]
    assert loaded == [Session.load(engine, session_id) for session_id in sessions]
    frame = session_frame(*db.read_sessions(engine, "all")).loc[list(sessions)]
    for model in (models.treatment, models.control):
        assert_same_rows(model, frame, loaded)
        assert_same_p_male(model, frame, loaded)
    engine.dispose()


def test_a_model_without_a_fast_path_answers_through_its_pipeline(trained_demo):
    url, model_dir = trained_demo
    engine, saved = db.connect(url), artifact.load(model_dir).treatment

    class Wrapped(BoostedLogistic):  # a subclass: not what train() makes, so not compiled
        pass

    wrapped = Wrapped()
    wrapped.__dict__.update(saved.classifier.__dict__)
    pipeline = served_pipeline(Pipeline([("features", saved.pipeline[0]), ("model", wrapped)]), None, 0.5)
    model = Model(pipeline, saved.card, "treatment")
    assert fast.FastModel.of(model) is None
    session = fast.load_session(engine, "u10003")
    assert fast.p_male(model, session) == pytest.approx(float(model.p_male(session.frame)[0]), abs=1e-12)
    engine.dispose()


def test_a_threshold_narrowed_to_float32_splits_every_float32_value_as_before():
    """The forest's walk keeps its thresholds as float32: `v <= t` must not change for any float32
    v, whatever float64 t (scikit-learn's are midpoints of two float32 values)."""
    rng = np.random.default_rng(0)
    low = rng.uniform(-50, 50, 50_000).astype(np.float32)
    high = np.nextafter(low, np.float32(np.inf))  # the next float32: the hardest case
    midpoints = (low.astype(np.float64) + high) / 2
    anywhere = rng.uniform(-60, 60, 50_000)
    for thresholds in (midpoints, anywhere, low.astype(np.float64)):
        narrow = fast.below_or_at(thresholds)
        assert narrow.dtype == np.float32
        for values in (low, high, rng.permutation(low)):
            assert ((values.astype(np.float64) <= thresholds) == (values <= narrow)).all()
