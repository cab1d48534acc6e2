"""Training, the saved artefacts, predictions and their explanations, on a small synthetic shop."""

import errno
import json
import os
import re
import shutil

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from gender import answers, artifact, db, explain, files, metrics, predict
from gender.answers import UNKNOWN, Prediction, beyond_training, in_words
from gender.errors import ModelUnavailable
from gender.features import SessionFeatures
from gender.model import BoostedLogistic
from gender.session import Session
from gender.train import labelled_data
from tests.models import wrap_model


@pytest.fixture(scope="module")
def served(trained_demo):
    url, model_dir = trained_demo
    return db.connect(url), artifact.load(model_dir).treatment, model_dir


def test_the_card_records_the_comparison(trained_demo):
    _, model_dir = trained_demo
    card = artifact.load_card(model_dir)
    candidates = card.candidates
    assert {"original", "logistic", "boosted"} <= set(candidates)
    for result in candidates.values():
        assert len(result.auc_folds) == 5
        assert result.auc_mean == pytest.approx(np.mean(result.auc_folds), abs=1e-4)
        assert len(result.roc.fpr) == len(result.roc.tpr) == len(result.roc.threshold) > 10
        assert result.roc.fpr[0] == 0 and result.roc.tpr[-1] == 1
        assert len(result.pr.precision) == len(result.pr.recall) > 10
    chosen = card.chosen
    assert candidates[chosen].explainable
    assert candidates[chosen].auc_mean == max(r.auc_mean for r in candidates.values() if r.explainable)
    assert card.slots["control"].candidate == "original"

    training = card.training
    assert training.sessions == training.male + training.female
    assert 0.15 < training.male_share < 0.3
    assert len(training.fingerprint) == 64
    with db.connect(trained_demo[0]).connect() as conn:  # the longest labelled session, by SQL
        most_views, longest = conn.exec_driver_sql(
            "SELECT MAX(n), MAX(seconds) FROM (SELECT COUNT(*) AS n, "
            "(julianday(s.end_time) - julianday(s.start_time)) * 86400 AS seconds FROM session s "
            "JOIN product p ON p.session_id = s.session_id WHERE s.gender IS NOT NULL GROUP BY s.session_id)"
        ).one()
    assert (training.most_views, training.longest_seconds) == (most_views, pytest.approx(longest, abs=1e-3))
    assert {"scikit-learn", "lightgbm", "shap", "python"} <= set(card.versions)
    for slot in card.slots.values():
        assert slot.sha256 == artifact.sha256(model_dir / slot.file)
        confusion = slot.confusion
        assert confusion.tp + confusion.fn == training.male
        assert confusion.tn + confusion.fp == training.female
        assert 0 < slot.threshold < 1


def test_a_session_beyond_every_one_trained_on_is_said_to_be(served):
    engine, model, _ = served
    training = model.card.training
    session = predict.lookup(engine, db.random_session_id(engine, labelled=True))
    assert beyond_training(session, training) is None  # a session like those trained on
    fewer = training.model_copy(update={"most_views": session.n_views - 1})
    assert beyond_training(session, fewer) == (
        f"This session has {session.n_views:,} views (the most in training: {session.n_views - 1:,}): the model "
        "never saw a session like it, so its answer here extrapolates from shorter ones. Read it with care."
    )
    shorter = training.model_copy(update={"longest_seconds": session.duration.total_seconds() - 1})
    said = beyond_training(session, shorter)  # in units, as the what-if's changes say a duration
    assert f"a duration of {answers.duration_text(session.duration)} (the longest in training: " in said
    unknown = training.model_copy(update={"most_views": None, "longest_seconds": None})  # a card from before
    assert beyond_training(session, unknown) is None


def test_codes_never_seen_in_training_are_named(trained_demo):
    engine = db.connect(trained_demo[0])
    models = artifact.load(trained_demo[1])
    seen = predict.lookup(engine, db.random_session_id(engine, labelled=True))  # trained on: all its codes known
    a, b, c, d = seen.paths[0]
    new = Session("new", seen.start_time, seen.end_time, paths=((a, b, "C new", "D-1"), (a, "B\x1fnew", c, d)))
    for model in (models.treatment, models.control):
        assert explain.unseen_codes(model, seen) == []
        assert explain.unseen_codes(model, new) == ["C new", "D-1", "B\x1fnew"], explain.scheme_of(model)


def test_synthetic_signal_is_real_but_imperfect(trained_demo):
    _, model_dir = trained_demo
    card = artifact.load_card(model_dir)
    assert 0.75 <= card.candidates[card.chosen].auc_mean <= 0.92


def test_fingerprint_follows_the_data(served, trained_demo):
    from gender.train import fingerprint

    engine, model, _ = served
    frame, y = labelled_data(engine)
    assert fingerprint(frame, y) == model.card.training.fingerprint
    y_changed = y.copy()
    y_changed[0] = 1 - y_changed[0]
    assert fingerprint(frame, y_changed) != model.card.training.fingerprint


def test_prediction_of_a_stored_session(served):
    engine, model, _ = served
    session_id = db.random_session_id(engine, labelled=True)
    answer = predict.predict(engine, model, f"  {session_id} ").as_json()
    assert answer["SESSION_ID"] == session_id
    assert answer["PREDICTION"] in ("male", "female")
    assert (answer["PREDICTION"] == "male") == (answer["P_MALE"] >= answer["THRESHOLD"])
    assert answer["MODEL"] == model.model_id


@pytest.mark.parametrize("session_id", ["u00000", "", "   ", "u1' OR '1'='1", "x" * 10_000])
def test_unknown_sessions_get_the_original_answer(served, session_id):
    engine, model, _ = served
    answer = predict.predict(engine, model, session_id).as_json()
    assert answer == {"SESSION_ID": session_id.strip(), "PREDICTION": UNKNOWN}


def test_explanation_adds_up_to_the_prediction(served):
    engine, model, _ = served
    for labelled in (True, False):
        record = predict.lookup(engine, db.random_session_id(engine, labelled))
        explanation = explain.explain(model, record.frame)
        assert explanation.p_male == pytest.approx(float(model.p_male(record.frame)[0]), abs=1e-6)
        groups = explain.grouped(explanation, record, explain.scheme_of(model), top=5)
        assert len(groups) <= 6 and sum(g.shap for g in groups) == pytest.approx(explanation.contributions.shap.sum())
        tree = explain.hierarchy(explanation, record.views)
        roots = tree[tree.parent == ""]
        assert roots.net.sum() == pytest.approx(explanation.contributions.shap.sum())
        first_a = record.views.category_a.iloc[0]
        assert first_a in set(roots.id) | {explain.TIME_AND_ACTIVITY}


def test_trees_grown_on_a_sample_still_explain_exactly(served):
    """Above `tree_sessions` the trees grow on a sample and see only its columns: predictions and
    explanations must still add up, each contribution on a feature where the session differs
    from the typical one (SHAP against one reference gives nothing to the others)."""
    engine, _, _ = served
    frame, y = labelled_data(engine)
    model_step = BoostedLogistic(n_estimators=30, tree_sessions=300)
    pipeline = Pipeline([("features", SessionFeatures(min_df=1)), ("model", model_step)]).fit(frame, y)
    columns = pipeline.named_steps.features.n_features_out_
    assert 0 < len(model_step.tree_columns_) < columns and model_step.trees_ is not None
    model = wrap_model(pipeline, base_rate=float(y.mean()))
    reference = pipeline.named_steps.features.reference_.reshape(-1)
    for session_id in frame.index[:: len(frame) // 8]:
        row_frame = frame.loc[[session_id]]
        explanation = explain.explain(model, row_frame)
        assert explanation.p_male == pytest.approx(float(model.p_male(row_frame)[0]), abs=1e-6)
        row = model.features(row_frame).toarray().reshape(-1)
        used = np.flatnonzero(np.isin(model.explainer.names, explanation.contributions.feature))
        assert len(used) and (row[used] != reference[used]).all(), session_id


def test_the_explainers_sparse_answer_is_shaps_dense_one(served):
    """Explainer computes the logistic part sparsely and puts the trees' part back in the model's
    columns: equal, value for value, to what shap's own explainers answer on dense rows."""
    engine, _, _ = served
    frame, y = labelled_data(engine)
    model_step = BoostedLogistic(n_estimators=20, tree_sessions=300)
    pipeline = Pipeline([("features", SessionFeatures(min_df=1)), ("model", model_step)]).fit(frame, y)
    assert model_step.tree_columns_ is not None  # the trees see some columns only
    explainer = wrap_model(pipeline, base_rate=float(y.mean())).explainer
    rows = pipeline.named_steps.features.transform(frame.iloc[:50])
    base, values = explainer(rows)

    linear = explainer.linear
    expected = np.asarray(linear.shap_values(model_step.linear_input(rows).toarray()), dtype=float)
    expected_base = float(np.ravel(linear.expected_value)[-1])
    trees = np.asarray(explainer.trees.shap_values(rows[:, model_step.tree_columns_].toarray()), dtype=float)
    expected[:, model_step.tree_columns_] += trees
    expected_base += float(np.ravel(explainer.trees.expected_value)[-1])
    assert values.shape == expected.shape and np.array_equal(values.toarray(), expected)
    assert base == expected_base


def test_the_forests_explanation_is_shaps_own_for_the_male_class(served):
    """The original's forest is explained as one output, P(male): the values shap's own
    TreeExplainer of the RandomForestClassifier gives for that class, to the bit."""
    import shap

    engine, _, model_dir = served
    control = artifact.load(model_dir).control
    frame, _ = labelled_data(engine)
    rows = control.features(frame.iloc[:60])
    base, values = control.explainer(rows)

    forest = control.explainer.estimator
    assert type(forest).__name__ == "RandomForestClassifier"
    own = shap.TreeExplainer(
        forest, data=control.explainer.trees.data, feature_perturbation="interventional", model_output="raw"
    )
    expected = np.asarray(own.shap_values(rows.toarray(), check_additivity=False))[..., -1]
    assert values.shape == expected.shape and np.array_equal(values.toarray(), expected)
    assert base == pytest.approx(float(np.ravel(own.expected_value)[-1]), abs=1e-15)


def test_the_control_slot_serves_the_original(served):
    engine, _, model_dir = served
    control = artifact.load(model_dir).control
    assert control.candidate == "original"
    record = predict.lookup(engine, db.random_session_id(engine, labelled=True))
    assert 0 <= control.p_male(record.frame)[0] <= 1


def test_tampered_or_foreign_models_are_refused(trained_demo, tmp_path):
    _, model_dir = trained_demo
    copy = tmp_path / "models"
    shutil.copytree(model_dir, copy)
    artifact.load(copy)  # a faithful copy loads

    treatment = artifact.load_card(copy).slots["treatment"].file  # the file the card names
    with (copy / treatment).open("r+b") as f:  # one byte changed
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelUnavailable, match="does not match its recorded sha256"):
        artifact.load(copy)

    metadata = json.loads((copy / artifact.METADATA_FILE).read_text())
    metadata["slots"]["treatment"]["file"] = f"../../elsewhere/{treatment}"  # only the folder is trusted
    (copy / artifact.METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ModelUnavailable, match=re.escape(f"model file {copy / treatment} does not match")):
        artifact.load(copy)

    metadata["feature_version"] = -1
    (copy / artifact.METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ModelUnavailable, match="feature version"):
        artifact.load(copy)

    (copy / artifact.METADATA_FILE).write_text("{not json")
    with pytest.raises(ModelUnavailable, match="is not a model card"):
        artifact.load(copy)

    with pytest.raises(ModelUnavailable, match="no trained model"):
        artifact.load(tmp_path / "nothing-here")


def test_a_card_that_does_not_hold_or_match_its_models_is_refused(trained_demo, tmp_path):
    _, model_dir = trained_demo
    copy = tmp_path / "models"
    shutil.copytree(model_dir, copy)
    original = json.loads((copy / artifact.METADATA_FILE).read_text())

    missing = json.loads(json.dumps(original))
    del missing["slots"]["treatment"]["threshold"]
    (copy / artifact.METADATA_FILE).write_text(json.dumps(missing))
    with pytest.raises(ModelUnavailable, match=r"slots\.treatment\.threshold: Field required"):
        artifact.load(copy)

    wrong_type = json.loads(json.dumps(original))
    wrong_type["training"]["sessions"] = "many"
    (copy / artifact.METADATA_FILE).write_text(json.dumps(wrong_type))
    with pytest.raises(ModelUnavailable, match=r"training\.sessions"):
        artifact.load_card(copy)

    # A card whose threshold differs from the one the saved model decides with: the page would
    # show one threshold and the model answer with another.
    moved = json.loads(json.dumps(original))
    moved["slots"]["treatment"]["threshold"] = round(original["slots"]["treatment"]["threshold"] + 0.1, 6)
    (copy / artifact.METADATA_FILE).write_text(json.dumps(moved))
    with pytest.raises(ModelUnavailable, match="does not decide as its card says"):
        artifact.load(copy)

    (copy / artifact.METADATA_FILE).write_text(json.dumps(original))
    models = artifact.load(copy)
    assert models.treatment.threshold == original["slots"]["treatment"]["threshold"]


def test_a_saved_pipeline_answers_on_its_own_as_served(served):
    """The joblib file alone gives the served answer: calibration and threshold are inside it."""
    import joblib

    engine, model, model_dir = served
    pipeline = joblib.load(model_dir / artifact.load_card(model_dir).slots["treatment"].file)
    frame, _ = labelled_data(engine)
    rows = frame.iloc[:200]
    p_male = model.p_male(rows)
    assert np.allclose(pipeline.predict_proba(rows)[:, 1], p_male, rtol=0, atol=1e-12)
    assert list(pipeline.predict(rows)) == list(np.where(p_male >= model.threshold, "male", "female"))
    assert {"male", "female"} == set(pipeline.predict(rows))


def test_truncated_model_file_is_refused_even_with_matching_checksum(trained_demo, tmp_path):
    _, model_dir = trained_demo
    copy = tmp_path / "models"
    shutil.copytree(model_dir, copy)
    path = copy / artifact.load_card(copy).slots["treatment"].file
    path.write_bytes(path.read_bytes()[:1000])
    metadata = json.loads((copy / artifact.METADATA_FILE).read_text())
    metadata["slots"]["treatment"]["sha256"] = artifact.sha256(path)
    (copy / artifact.METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ModelUnavailable, match="cannot be read"):
        artifact.load(copy)


def test_a_save_that_dies_before_its_card_leaves_the_serving_models_loadable(trained_demo, tmp_path, monkeypatch):
    """A retrain whose save fails after a model file is written (the disk full at the card) leaves
    the models that were serving loadable by a fresh process; a complete save then serves the new
    ones and leaves no model file its card does not name (here an older training's fixed names)."""
    _, model_dir = trained_demo
    folder = tmp_path / "models"
    shutil.copytree(model_dir, folder)
    metadata = json.loads((folder / artifact.METADATA_FILE).read_text())
    for slot, entry in metadata["slots"].items():  # the fixed names an older training wrote
        (folder / entry["file"]).rename(folder / f"{slot}.joblib")
        entry["file"] = f"{slot}.joblib"
    (folder / artifact.METADATA_FILE).write_text(json.dumps(metadata))
    old = artifact.load(folder)
    old_ids = {"treatment": old.treatment.model_id, "control": old.control.model_id}
    # A retrain with other models: the two slots' models swapped, each with its card entry.
    card = artifact.load_card(folder)
    retrained = card.model_copy(
        update={"slots": {"treatment": card.slots["control"], "control": card.slots["treatment"]}}
    )
    pipelines = {"treatment": old.control.pipeline, "control": old.treatment.pipeline}

    write = files.write_atomically

    def disk_full_at_the_card(path, writer):
        if path.name == artifact.METADATA_FILE:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(path, writer)

    monkeypatch.setattr(files, "write_atomically", disk_full_at_the_card)
    with pytest.raises(OSError, match="No space left"):
        artifact.save(folder, pipelines, retrained)
    monkeypatch.undo()
    served = artifact.load(folder)  # what a restart loads: the old models, whole
    assert {"treatment": served.treatment.model_id, "control": served.control.model_id} == old_ids
    assert served.treatment.candidate == old.treatment.candidate

    saved = artifact.save(folder, pipelines, retrained)
    new = artifact.load(folder)
    assert new.treatment.candidate == old.control.candidate and new.control.candidate == old.treatment.candidate
    assert new.treatment.model_id == saved.model_id("treatment") and new.control.model_id == saved.model_id("control")
    assert {path.name for path in folder.glob("*.joblib")} == {entry.file for entry in saved.slots.values()}


def test_a_load_that_meets_a_save_loads_the_saved_models(trained_demo, tmp_path, monkeypatch):
    """A process that read the card just before a retrain replaced it finds the files it names
    removed: it loads again, the new card and its files."""
    _, model_dir = trained_demo
    folder = tmp_path / "models"
    shutil.copytree(model_dir, folder)
    old, card = artifact.load(folder), artifact.load_card(folder)
    retrained = card.model_copy(
        update={"slots": {"treatment": card.slots["control"], "control": card.slots["treatment"]}}
    )
    load_pipeline, saved = artifact.load_pipeline, []

    def a_save_meanwhile(*args):
        if not saved:  # after the old card was read, before its files are opened
            saved.append(artifact.save(folder, {"treatment": old.control.pipeline}, retrained))
        return load_pipeline(*args)

    monkeypatch.setattr(artifact, "load_pipeline", a_save_meanwhile)
    models = artifact.load(folder)
    assert models.treatment.candidate == old.control.candidate
    assert models.treatment.model_id == saved[0].model_id("treatment")


def test_in_words():
    def served(p_male: float) -> Prediction:
        return Prediction("u1", "male" if p_male >= 0.35 else "female", p_male, 0.35, "m")

    assert in_words(served(0.41), 0.22) == "P(male) 0.41: well above the 22 % prior, above the threshold 0.35 → male"
    assert in_words(served(0.05), 0.22).endswith("well below the 22 % prior, below the threshold 0.35 → female")
    assert "close to" in in_words(served(0.22), 0.22)


@pytest.fixture(scope="module")
def sampled(demo_db, tmp_path_factory):
    """The demo database trained as a large one: the candidates compared on a sample of 600."""
    from gender.train import train

    model_dir = tmp_path_factory.mktemp("sampled-models")
    engine = db.connect(f"sqlite:///{demo_db}")
    messages = []
    card = train(
        engine, model_dir, lambda fraction, message: messages.append((fraction, message)), compare_sessions=600
    )
    yield engine, model_dir, card, messages
    engine.dispose()


def test_above_the_sample_size_the_metadata_says_what_was_compared_and_measured(sampled):
    from gender.train import split_for

    engine, model_dir, card, _ = sampled
    frame, y = labelled_data(engine)
    split = split_for(y, 600)
    cv, training = card.cv, card.training
    assert cv.sampled and cv.sessions == 600 and training.sessions == len(y) > 600
    assert abs(cv.male / 600 - training.male_share) < 0.01  # stratified
    # the held-out halves are disjoint from each other and from every fit
    held = np.concatenate([split.calibrate, split.test])
    assert len(np.unique(held)) == len(held)
    assert not set(held) & set(split.fit) and not set(held) & set(split.compare)
    assert set(split.compare) <= set(split.fit) and len(split.fit) + len(held) == len(y)

    for slot, entry in card.slots.items():
        holdout = entry.holdout
        assert entry.fitted_sessions == len(split.fit)  # below the forest's fit_cap: all of them
        assert holdout.sessions == len(split.test) and holdout.calibration_sessions == len(split.calibrate)
        assert holdout.male == int(y[split.test].sum()) and holdout.male + holdout.female == holdout.sessions
        confusion = entry.confusion  # at the threshold, on the test half
        assert confusion.tp + confusion.fn == holdout.male
        assert confusion.tn + confusion.fp == holdout.female
        # the recorded held-out ROC-AUC is the saved model's on the held-out sessions
        model = artifact.load(model_dir).of(slot)
        p_test = model.p_male(frame.iloc[split.test])
        assert holdout.auc == pytest.approx(roc_auc_score(y[split.test], p_test), abs=1e-4)
        assert confusion == metrics.confusion_at(y[split.test], p_test, entry.threshold)
        assert 0.6 < holdout.auc <= 1
        assert len(holdout.roc.fpr) == len(holdout.roc.threshold) > 10
    run = artifact.load_runs(model_dir)[0]
    assert run.cv.sessions == 600
    assert run.slots["treatment"].holdout_auc == card.slots["treatment"].holdout.auc


def test_below_the_sample_size_nothing_is_sampled_or_held_out(trained_demo):
    _, model_dir = trained_demo
    card = artifact.load_card(model_dir)
    assert not card.cv.sampled and card.cv.sessions == card.training.sessions
    for entry in card.slots.values():
        assert entry.holdout is None and entry.fitted_sessions == card.training.sessions


def test_progress_is_told_at_every_step(sampled):
    _, _, card, messages = sampled
    fractions = [fraction for fraction, _ in messages]
    assert fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] == 1
    assert "sample of 600" in messages[1][1]
    assert sum("fold" in message for _, message in messages) == 5 * len(card.candidates)
    assert any(
        message.startswith("fitting boosted") or message.startswith("fitting logistic") for _, message in messages
    )


def test_a_capped_candidate_fits_on_a_stratified_sample():
    from gender.train import Candidate, capped, original_pipeline

    y = np.array([1] * 300 + [0] * 1_200)
    rows = np.arange(len(y))
    forest = Candidate("original", "forest", original_pipeline, False, fit_cap=500)
    sample = capped(rows, y, forest)
    assert len(sample) == 500 and len(np.unique(sample)) == 500 and y[sample].sum() == 100
    assert capped(rows[:400], y, forest) is not None and len(capped(rows[:400], y, forest)) == 400


def test_the_model_page_states_the_sample_and_the_held_out_quality(sampled, demo_db, monkeypatch):
    from tests.test_app import make_app, metric, texts

    _, model_dir, card, _ = sampled
    monkeypatch.setenv("GENDER_DB_URL", f"sqlite:///{demo_db}")
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))
    at = make_app("model")
    slot = card.slots["treatment"]
    holdout = slot.holdout
    shown = texts(at)
    assert f"stratified sample of **600** of the {card.training.sessions:,}" in shown
    assert f"**{holdout.sessions:,} held-out sessions**" in shown and f"ROC-AUC {holdout.auc:.3f}" in shown
    assert metric(at, "Compared on") == "600"
    # at the stored threshold, the served model's measured confusion on the held-out sessions; at
    # another, the confusion read off its held-out curve
    assert metric(at, "Balanced accuracy") == f"{slot.confusion.balanced_accuracy:.3f}"
    at.slider(key="threshold").set_value(0.4).run()
    expected, _ = metrics.confusion_from_roc(holdout.roc, 0.4, holdout.male, holdout.female)
    assert float(metric(at, "Balanced accuracy")) == pytest.approx(expected.balanced_accuracy, abs=1e-3)


def test_train_says_when_the_chosen_model_is_hardly_better_than_chance(trained_demo):
    """A shop's logs may tell little about gender: `train` then says its answers are close to guesses."""
    card = artifact.load_card(trained_demo[1])
    assert not [line for line in card.summary() if line.startswith("warning:")]
    chosen = card.candidates[card.chosen]
    weak = card.model_copy(
        update={"candidates": card.candidates | {card.chosen: chosen.model_copy(update={"auc_mean": 0.4679})}}
    )
    assert weak.quality("treatment")[1] == 0.4679  # the demo's labelled sessions are all compared: none held out
    assert weak.summary()[-2] == (
        "warning: the treatment model's ROC-AUC is 0.4679, hardly better than chance (0.5): these sessions tell it "
        "little about gender, and its answers are close to guesses"
    )
