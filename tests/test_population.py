"""The whole population: SHAP of the treatment model over a sample, its aggregates, the kept file, the page."""

import errno
import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from gender import artifact, db, ingest, population, predict
from gender.cli import main
from gender.session import Feature, Session
from gender.trained import Models
from tests.conftest import PROJECT, _mysql_database
from tests.live import charts
from tests.test_app import array

SALT, SHARE = "gender-lens", 0.5


@pytest.fixture(scope="module")
def setting(trained_demo, tmp_path_factory):
    """(engine, models, model folder, population) on the demo database: the models copied into a
    folder of this module's own, the population computed there once."""
    url, model_dir = trained_demo
    folder = tmp_path_factory.mktemp("population") / "models"
    shutil.copytree(model_dir, folder)
    engine = db.connect(url)
    models = artifact.load(folder)
    result = population.current(engine, models, folder, SALT, SHARE)
    yield engine, models, folder, result
    engine.dispose()


@pytest.fixture(scope="module")
def stored(setting):
    """The population as read back from its file."""
    engine, models, folder, _ = setting
    return population.load(population.path_for(engine, models, folder))


def test_a_stratified_sample_of_2000_sessions_with_a_fixed_seed(setting):
    engine, models, _, result = setting
    counts = db.table_counts(engine)
    assert len(result.sample) == population.SAMPLE_SESSIONS == len(set(result.sample.session_ids))
    assert list(result.sample.session_ids) == sorted(result.sample.session_ids)
    assert result.info.db_sessions == counts["sessions"] and result.info.model_id == models.treatment.model_id
    # each recorded gender in its share of the database (largest remainders: within one session)
    for gender, in_db in (("male", counts["male"]), ("unknown", counts["unknown"])):
        expected = in_db * population.SAMPLE_SESSIONS / counts["sessions"]
        assert abs((result.sample.gender == gender).sum() - expected) <= 1
    again, _ = population.sample_ids(engine)
    assert tuple(again) == result.sample.session_ids  # the same seed, the same sample


def test_the_sample_reads_views_by_id_not_by_scanning_them(setting):
    engine = setting[0]
    query = population.views_query(["u10001", "u10002"]).compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {query}")))
    assert "SEARCH product USING INDEX" in plan and "SCAN product" not in plan


def test_aggregates_equal_a_hand_computation_on_the_stored_matrix(stored):
    shap, values = stored.shap.toarray(), stored.values.toarray()
    n = shap.shape[0]
    table = stored.importance.set_index("feature").loc[list(stored.features)]
    assert np.allclose(table["mean_abs"], np.abs(shap).sum(axis=0) / n)
    assert np.allclose(table["mean"], shap.sum(axis=0) / n)
    assert (table["sessions"].to_numpy() == (shap != 0).sum(axis=0)).all()
    for j in range(shap.shape[1]):
        if values[:, j].std() > 1e-9 and shap[:, j].std() > 1e-9:
            assert table["corr"].iat[j] == pytest.approx(np.corrcoef(values[:, j], shap[:, j])[0, 1], abs=1e-6)
        else:
            assert np.isnan(table["corr"].iat[j])
    assert stored.importance["mean_abs"].is_monotonic_decreasing


def test_sums_by_kind_and_level_equal_the_per_feature_sums(stored):
    per_feature = stored.importance.groupby("group")[["mean_abs", "mean"]].sum()
    groups = stored.groups.set_index("group")
    assert set(groups.index) <= set(population.GROUPS)
    assert np.allclose(groups.loc[per_feature.index, "mean_abs"], per_feature["mean_abs"])
    assert np.allclose(groups.loc[per_feature.index, "mean"], per_feature["mean"])
    assert groups["features"].sum() == len(stored.features)
    shap = stored.shap.toarray()
    for group, row in groups.iterrows():
        columns = np.flatnonzero(stored.group_of == group)
        assert row["net_abs"] == pytest.approx(np.abs(shap[:, columns].sum(axis=1)).mean())
    # a view's level is where its code sits in the sampled sessions' paths, read by Feature.parse
    views = stored.importance[stored.importance["group"].str.endswith(" views")]
    assert len(views) and set(views["group"]) <= {"A views", "B views", "C views", "D views"}
    for name, group in zip(views["feature"], views["group"]):
        code = Feature.parse(name).codes[0]
        assert stored.levels[code] == group[0]


def test_a_sample_row_is_the_predict_pages_explanation(setting, stored):
    engine, models, _, _ = setting
    model = models.treatment
    for i in (0, 777, len(stored.sample) - 1):
        record = Session.load(engine, stored.sample.session_ids[i])
        assessment = predict.assess_record(model, record)  # what the Predict page shows
        explanation = assessment.explanation
        mine = dict(zip(stored.features, stored.shap[i].toarray().ravel()))
        theirs = dict(zip(explanation.contributions["feature"], explanation.contributions["shap"]))
        assert {name for name, value in mine.items() if value} == set(theirs)
        assert all(mine[name] == pytest.approx(value, abs=1e-9) for name, value in theirs.items())
        assert stored.info.base_value == pytest.approx(explanation.base_value)
        assert stored.sample.p_male[i] == pytest.approx(assessment.prediction.p_male)
        assert stored.sample.predicted[i] == assessment.prediction.prediction


def test_dependence_of_hour_sums_its_one_hot_tokens(stored):
    hour = stored.dependence("start_hour")
    shap = stored.shap.toarray()
    tokens = [j for j, f in enumerate(stored.parsed) if f.kind == "hour"]
    assert np.allclose(hour["one_hot"], shap[:, tokens].sum(axis=1))
    assert np.allclose(hour["value"], stored.sample.numbers["start_hour"])
    number = [j for j, f in enumerate(stored.parsed) if f.number == "start_hour"]
    if "start_hour" in stored.model_numbers:
        assert np.allclose(hour["number"], shap[:, number].sum(axis=1))
    assert np.allclose(hour["total"], np.nan_to_num(hour["number"]) + hour["one_hot"])
    assert stored.dependence("views")["one_hot"].isna().all()
    # each trace named once: the number's label already says "(number)"
    names = [trace.name for trace in population.dependence_figure(stored, "start_hour").data]
    assert names[:2] == ["start hour (number)", "start hour tokens (one-hot, summed)"], names


def test_the_stored_file_is_reused_not_recomputed_and_refused_for_another_model(setting, monkeypatch):
    engine, models, folder, result = setting
    path = population.path_for(engine, models, folder)
    assert path.parent == folder.resolve() and path.name.startswith(f"population-{models.treatment.entry.sha256[:8]}-")

    def no_computing(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(population, "compute", no_computing)
    population._held.clear()  # not held in memory: read from the file
    again = population.current(engine, models, folder, SALT, SHARE)
    assert again.info == result.info and (again.shap != result.shap).nnz == 0
    assert again is population.current(engine, models, folder, SALT, SHARE)  # then held

    other = models.control
    with pytest.raises(population.PopulationMismatch, match="another model"):
        population.load(path, other.entry.sha256, result.info.db_fingerprint)
    with pytest.raises(population.PopulationMismatch, match="another database"):
        population.load(path, models.treatment.entry.sha256, "0" * 12)
    # another model's file name holding this model's population: read, found foreign, computed anew
    swapped = Models(other, None)
    monkeypatch.setattr(population, "compute", lambda *a, **k: (_ for _ in ()).throw(LookupError("computing")))
    shutil.copy(path, population.path_for(engine, swapped, folder))
    with pytest.raises(LookupError, match="computing"):
        population.current(engine, swapped, folder, SALT, SHARE)


def test_other_ab_settings_regroup_without_recomputing(setting):
    engine, models, folder, result = setting
    regrouped = population.current(engine, models, folder, "another salt", 0.2)
    assert (regrouped.shap != result.shap).nnz == 0 and regrouped.info.db_fingerprint == result.info.db_fingerprint
    share = (regrouped.sample.group == "treatment").mean()
    assert 0.15 < share < 0.25
    from gender.serve import group_of

    assert regrouped.sample.group[5] == group_of(result.sample.session_ids[5], "another salt", 0.2)


def hand_population() -> population.Population:
    """Four sessions, three features, SHAP and values chosen by hand."""
    features = ("view:A1", "hour:14", "views")
    shap = sp.csr_matrix(np.array([[0.4, 0.1, 0.0], [0.2, 0.0, -0.1], [-0.3, 0.0, 0.2], [0.0, 0.5, 0.0]]))
    values = sp.csr_matrix(np.array([[1, 1, 2], [2, 0, 3], [0, 0, 1], [0, 1, 5]], dtype=float))
    starts = np.array(["2014-11-14T10:00", "2014-11-15T10:00", "2014-11-16T10:00", "2014-11-17T10:00"], "datetime64[s]")
    sample = population.Sample(
        session_ids=("s1", "s2", "s3", "s4"),
        gender=np.array(["male", "female", "female", "unknown"], dtype=object),
        p_male=np.array([0.8, 0.6, 0.1, 0.3]),
        predicted=np.array(["male", "male", "female", "female"], dtype=object),
        group=np.array(["treatment", "control", "treatment", "control"], dtype=object),
        start_time=starts,
        numbers=pd.DataFrame(np.zeros((4, 6)), columns=list(population.NUMBER_COLUMNS)),
        codes=("A1", "B7"),
        viewed=sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=np.int8)),
    )
    info = population.Info("m", "0" * 64, "f" * 12, 4, 0, "log-odds", -1.0, 0.0, 0.0, "now")
    return population.assemble(info, sample, features, shap, values, {"A1": "A", "B7": "B"}, "session", ("views",))


def test_cohorts_compare_on_a_hand_checked_case():
    pop = hand_population()
    compared = population.compare(pop, population.Cohort("predicted", "male"), population.Cohort("predicted", "female"))
    assert (compared.sessions_a, compared.sessions_b) == (2, 2)
    assert compared.p_male_a == pytest.approx(0.7) and compared.p_male_b == pytest.approx(0.2)
    rows = compared.features.set_index("feature")
    # view:A1: (0.4 + 0.2) / 2 = 0.3 against (-0.3 + 0) / 2 = -0.15; hour:14: 0.05 against 0.25;
    # views: -0.05 against 0.1
    assert rows.loc["view:A1", ["mean_a", "mean_b", "difference"]].tolist() == pytest.approx([0.3, -0.15, 0.45])
    assert rows.loc["hour:14", ["mean_a", "mean_b", "difference"]].tolist() == pytest.approx([0.05, 0.25, -0.2])
    assert rows.loc["views", ["mean_a", "mean_b", "difference"]].tolist() == pytest.approx([-0.05, 0.1, -0.15])
    assert list(compared.features["feature"]) == ["view:A1", "hour:14", "views"]  # by |difference|
    groups = compared.groups.set_index("group")
    assert groups.loc["A views", "difference"] == pytest.approx(0.45)
    assert groups.loc["time", "mean_b"] == pytest.approx(0.25)
    assert groups.loc["session numbers", "mean_a"] == pytest.approx(-0.05)

    def members(cohort):
        return [sid for sid, keep in zip(pop.sample.session_ids, cohort.mask(pop)) if keep]

    assert members(population.Cohort("gender", "female")) == ["s2", "s3"]
    assert members(population.Cohort("group", "control")) == ["s2", "s4"]
    assert members(population.Cohort("viewed", "B7")) == ["s2", "s3"]
    assert members(population.Cohort("viewed", "nowhere")) == []
    week = population.Cohort("started", start=datetime(2014, 11, 15), end=datetime(2014, 11, 17))
    assert members(week) == ["s2", "s3"]
    top1 = population.compare(pop, population.Cohort("gender", "male"), population.Cohort("all"), top=1)
    # view:A1 0.4 against 0.075: the largest difference of the three
    assert list(top1.features["feature"]) == ["view:A1"]
    assert top1.features["difference"].iat[0] == pytest.approx(0.4 - 0.075)


def test_hand_aggregates():
    pop = hand_population()
    table = pop.importance.set_index("feature")
    assert table.loc["view:A1", "mean_abs"] == pytest.approx(0.9 / 4)
    assert table.loc["view:A1", "mean"] == pytest.approx(0.3 / 4)
    assert table.loc["hour:14", "corr"] == pytest.approx(np.corrcoef([1, 0, 0, 1], [0.1, 0, 0, 0.5])[0, 1])
    assert list(pop.groups["group"]) == ["A views", "time", "session numbers"]
    assert pop.dependence("start_hour")["one_hot"].tolist() == pytest.approx([0.1, 0, 0, 0.5])
    assert pop.dependence("start_hour")["number"].isna().all()  # the model has no start_hour number


def test_the_cli_reuses_the_kept_file(setting, capsys):
    engine, models, folder, result = setting
    url = engine.url.render_as_string(hide_password=False)
    assert main(["population", "--db", url, "--model-dir", str(folder)]) == 0
    out, err = capsys.readouterr()
    answer = json.loads(out)
    assert answer["model_id"] == models.treatment.model_id and answer["sampled_sessions"] == len(result.sample)
    assert answer["computed_at"] == result.info.computed_at and err.startswith("reused ")
    assert [g["group"] for g in answer["groups"]] == list(result.groups["group"])


def population_page(url, model_dir, tmp_path, monkeypatch) -> tuple[AppTest, Path]:
    """The Population page run once on `url`, with a copy of the models where no population is
    kept yet (so the page computes it); the page and that model folder."""
    folder = tmp_path / "models"
    shutil.copytree(model_dir, folder)
    monkeypatch.setenv("GENDER_DB_URL", str(url))
    monkeypatch.setenv("GENDER_MODEL_DIR", str(folder))
    at = AppTest.from_file(str(PROJECT / "streamlit_app.py"), default_timeout=120)
    at.switch_page("pages/population.py")
    at.run()
    assert not at.exception
    return at, folder


def test_the_page_computes_on_first_need_then_shows_every_chart(setting, trained_demo, monkeypatch, tmp_path):
    url, model_dir = trained_demo
    at, folder = population_page(url, model_dir, tmp_path, monkeypatch)
    assert list(folder.glob("population-*.npz"))  # computed on the page, kept beside the models
    page = " ".join(m.value for m in at.markdown)
    assert "treatment model" in page and setting[1].treatment.model_id in page
    drawn = charts(at)
    kinds = [chart["data"][0]["type"] for chart in drawn]
    assert kinds.count("bar") == 4 and "scatter" in kinds  # importance ×2, dependence, cohorts ×2
    at.selectbox(key="population_number").set_value("start_weekday").run()
    assert not at.exception
    at.selectbox(key="cohort_a_by").set_value("viewed").run()
    at.selectbox(key="cohort_b_by").set_value("started").run()
    assert not at.exception
    assert [m.value for m in at.metric][1] == f"{len(setting[3].sample):,}"  # the whole range: every session


def boosted_model(models, engine):
    """The treatment's card around a small logistic + trees model fitted here (the demo's chosen
    model may be the logistic one alone): the trees' SHAP path too."""
    from sklearn.pipeline import Pipeline

    from gender.features import SessionFeatures
    from gender.model import BoostedLogistic
    from gender.train import labelled_data
    from gender.trained import Model, served_pipeline

    frame, y = labelled_data(engine)
    pipeline = Pipeline(
        [("features", SessionFeatures(min_df=1)), ("model", BoostedLogistic(n_estimators=15, num_leaves=15, n_jobs=1))]
    )
    pipeline.fit(frame.iloc[:800], y[:800])
    calibration = models.treatment.calibration
    return Model(served_pipeline(pipeline, calibration, 0.3), models.treatment.card, "treatment")


@pytest.mark.parametrize("which", ["boosted", "control"])
def test_shap_of_many_rows_is_explain_row_of_each(setting, which):
    from gender.explain import explain_row
    from gender.features import session_frame

    engine, models, _, result = setting
    model = boosted_model(models, engine) if which == "boosted" else models.control
    ids = list(result.sample.session_ids[:6])
    matrix = model.features(session_frame(*population.read_sample(engine, ids)))
    base, values = population.shap_rows(model, matrix)
    assert values.shape == matrix.shape
    for i in range(len(ids)):
        explanation = explain_row(model, matrix[i])
        row = values[i].toarray().ravel()
        assert base == pytest.approx(explanation.base_value)
        assert set(model.explainer.names[np.flatnonzero(row)]) == set(explanation.contributions["feature"])
        by_name = dict(zip(model.explainer.names, row))
        for name, value in zip(explanation.contributions["feature"], explanation.contributions["shap"]):
            assert by_name[name] == pytest.approx(value, abs=1e-9)


# -- on MariaDB: the demo database copied into a database of the test's own ---------------------


@pytest.fixture(scope="module")
def mariadb(setting):
    """(URL, engine, population) on a MariaDB copy of the demo database (`ingest.import_db`), the
    population computed in the same model folder as SQLite's; the database dropped afterwards."""
    engine, models, folder, _ = setting
    databases = _mysql_database()
    url = next(databases)
    try:
        maria = db.connect(url)
        report = ingest.import_db(maria, engine.url)
        assert report.new_sessions == db.table_counts(engine)["sessions"] and not report.skipped_sessions
        try:
            result = population.current(maria, models, folder, SALT, SHARE)
            yield url.render_as_string(hide_password=False), maria, result
        finally:
            maria.dispose()
    finally:
        next(databases, None)  # drops the database


def assert_same_population(mine: population.Population, theirs: population.Population) -> None:
    """The same sample and the same numbers, to float tolerance."""
    a, b = mine.sample, theirs.sample
    assert a.session_ids == b.session_ids
    for name in ("gender", "predicted", "group"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    assert (a.start_time == b.start_time).all() and a.codes == b.codes and (a.viewed != b.viewed).nnz == 0
    assert np.allclose(a.p_male, b.p_male, rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(a.numbers, b.numbers, check_exact=False, rtol=0, atol=1e-9)
    assert mine.features == theirs.features and mine.levels == theirs.levels
    assert mine.info.base_value == pytest.approx(theirs.info.base_value, abs=1e-12)
    assert mine.info.db_sessions == theirs.info.db_sessions and mine.info.model_id == theirs.info.model_id
    assert (mine.values != theirs.values).nnz == 0
    assert np.allclose(mine.shap.toarray(), theirs.shap.toarray(), rtol=0, atol=1e-9)

    def by_feature(table):
        return table.set_index("feature").sort_index()

    close = dict(check_exact=False, rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(by_feature(mine.importance), by_feature(theirs.importance), **close)
    pd.testing.assert_frame_equal(mine.groups, theirs.groups, **close)
    for number in population.DEPENDENCE:
        pd.testing.assert_frame_equal(mine.dependence(number), theirs.dependence(number), **close)
    for cohorts in (
        (population.Cohort("predicted", "male"), population.Cohort("predicted", "female")),
        (population.Cohort("gender", "unknown"), population.Cohort("group", "control")),
    ):
        x, y = population.compare(mine, *cohorts), population.compare(theirs, *cohorts)
        assert (x.sessions_a, x.sessions_b) == (y.sessions_a, y.sessions_b)
        assert [x.p_male_a, x.p_male_b] == pytest.approx([y.p_male_a, y.p_male_b], abs=1e-12)
        pd.testing.assert_frame_equal(by_feature(x.features), by_feature(y.features), **close)
        pd.testing.assert_frame_equal(x.groups, y.groups, **close)


def test_mariadb_draws_the_same_sample_and_the_same_aggregates_as_sqlite(setting, mariadb):
    engine, _, _, on_sqlite = setting
    _, maria, on_mariadb = mariadb
    assert maria.dialect.name in ("mysql", "mariadb") and engine.dialect.name == "sqlite"
    ids, total = population.sample_ids(maria)
    assert tuple(ids) == on_sqlite.sample.session_ids and total == on_sqlite.info.db_sessions
    assert_same_population(on_mariadb, on_sqlite)
    # the sample's rows and views read by id are the same rows
    some = list(on_sqlite.sample.session_ids[::97])
    for mine, theirs in zip(population.read_sample(maria, some), population.read_sample(engine, some)):
        pd.testing.assert_frame_equal(mine, theirs)


def test_mariadb_reads_the_samples_views_by_id_not_by_scanning_them(mariadb):
    _, maria, _ = mariadb
    query = population.views_query(["u10001", "u10002"]).compile(maria, compile_kwargs={"literal_binds": True})
    with maria.connect() as conn:
        plan = conn.execute(text(f"EXPLAIN {query}")).mappings().all()
    assert [row["table"] for row in plan] == ["product"]
    assert plan[0]["type"] in ("range", "ref", "eq_ref") and plan[0]["key"], plan  # not "ALL": a scan


def test_the_stored_file_is_kept_per_database(setting, mariadb, monkeypatch):
    engine, models, folder, on_sqlite = setting
    _, maria, on_mariadb = mariadb
    sha = models.treatment.entry.sha256
    lite_path, maria_path = population.path_for(engine, models, folder), population.path_for(maria, models, folder)
    assert lite_path != maria_path and lite_path.parent == maria_path.parent == folder.resolve()
    assert on_mariadb.info.db_fingerprint == population.fingerprint(maria) != on_sqlite.info.db_fingerprint
    assert maria_path.name == population.file_name(sha, population.fingerprint(maria))
    assert lite_path.is_file() and maria_path.is_file()
    # each file is its own database's: the other one's is refused
    assert population.load(maria_path, sha, on_mariadb.info.db_fingerprint).info == on_mariadb.info
    assert population.load(lite_path, sha, on_sqlite.info.db_fingerprint).info == on_sqlite.info
    with pytest.raises(population.PopulationMismatch, match="another database"):
        population.load(lite_path, sha, on_mariadb.info.db_fingerprint)
    with pytest.raises(population.PopulationMismatch, match="another database"):
        population.load(maria_path, sha, on_sqlite.info.db_fingerprint)
    # both read back from their files, neither computed again nor overwritten by the other
    monkeypatch.setattr(population, "compute", lambda *a, **k: (_ for _ in ()).throw(AssertionError("computed")))
    population._held.clear()
    assert population.current(engine, models, folder, SALT, SHARE).info == on_sqlite.info
    assert population.current(maria, models, folder, SALT, SHARE).info == on_mariadb.info


def test_the_page_computes_and_draws_every_chart_on_mariadb(setting, mariadb, trained_demo, monkeypatch, tmp_path):
    _, model_dir = trained_demo
    _, models, _, on_sqlite = setting
    url, maria, on_mariadb = mariadb
    at, folder = population_page(url, model_dir, tmp_path, monkeypatch)  # computed on MariaDB
    kept = [path.name for path in folder.glob("population-*.npz")]
    assert kept == [population.file_name(models.treatment.entry.sha256, population.fingerprint(maria))]
    page = " ".join(m.value for m in at.markdown)
    assert "treatment model" in page and models.treatment.model_id in page
    assert f"{on_sqlite.info.db_sessions:,} sessions" in page
    drawn = charts(at)
    kinds = [chart["data"][0]["type"] for chart in drawn]
    assert kinds.count("bar") == 4 and "scatter" in kinds  # importance ×2, dependence, cohorts ×2
    # the page's groups chart holds MariaDB's numbers, which are SQLite's
    bars = drawn[0]["data"]
    assert array(bars[0]["x"]) == pytest.approx(on_mariadb.groups["mean_abs"].tolist(), abs=1e-12)
    assert array(bars[1]["x"]) == pytest.approx(on_sqlite.groups["net_abs"].tolist(), abs=1e-9)
    at.selectbox(key="population_number").set_value("duration_s").run()
    assert not at.exception and len(charts(at)) == len(drawn)
    at.selectbox(key="cohort_a_by").set_value("viewed").run()  # the most viewed code of the sample
    at.selectbox(key="cohort_b_by").set_value("gender").run()  # recorded male
    assert not at.exception
    most_viewed = on_mariadb.viewed_codes()["sessions"].iat[0]
    assert [m.value for m in at.metric] == [f"{most_viewed:,}", f"{(on_mariadb.sample.gender == 'male').sum():,}"]
    assert len(charts(at)) == len(drawn)


def test_a_population_that_cannot_be_kept_is_held_and_said_so(setting, monkeypatch, tmp_path):
    """A model folder the server may not write (another account's, a full disk): the page spent
    minutes of SHAP, then failed, and did it all again on the next visit."""
    engine, models, folder, result = setting
    monkeypatch.setattr(population, "compute", lambda *args, **kwargs: result)  # computed as in `setting`

    def no_room(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(population.files, "write_atomically", no_room)
    other = tmp_path / "models"
    shutil.copytree(folder, other, ignore=shutil.ignore_patterns("population-*"))
    assert population.current(engine, models, other, SALT, SHARE).info == result.info
    assert not population.is_kept(engine, models, other)
    monkeypatch.setattr(population, "compute", lambda *args, **kwargs: pytest.fail("computed again"))
    assert population.current(engine, models, other, SALT, SHARE).info == result.info  # held
    monkeypatch.setattr(population, "compute", lambda *args, **kwargs: result)
    with pytest.raises(OSError, match="No space left"):  # `python -m gender population`: the file is its work
        population.current(engine, models, other, SALT, SHARE, recompute=True, must_keep=True)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut short"])
def test_an_empty_or_cut_file_beside_the_models_is_not_read(setting, tmp_path, content):
    """numpy raises EOFError for an empty file and BadZipFile for a cut one: neither was caught."""
    engine, models, folder, result = setting
    path = tmp_path / population.path_for(engine, models, folder).name
    path.write_bytes(content)
    with pytest.raises(population.PopulationMismatch, match="is not a stored population"):
        population.load(path)
    shutil.copytree(folder, tmp_path / "models")
    trained_on = tmp_path / "models" / artifact.TRAINED_ON_FILE.format(slot="treatment")
    trained_on.write_bytes(content)
    assert artifact.trained_on(tmp_path / "models", "treatment", models.treatment.model_id) is None
