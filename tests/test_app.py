"""Every page through Streamlit's AppTest, against a real SQLite database and trained models."""

import base64
import json
import random
import shutil
import time
from datetime import timedelta

import numpy as np
import pandas as pd
import plotly.offline
import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from gender import answers, artifact, db, ingest, metrics, synth
from gender.features import JOIN
from tests.conftest import PROJECT, write_pakdd
from tests.live import charts, sqlite_copy

TIMEOUT = 120  # the first run loads the model and shap
START = END = "2014-11-14 10:00:00"  # a session added to a copy of the demo: no longer than any


@pytest.fixture
def app(trained_demo, monkeypatch):
    """A fresh AppTest of the dashboard on the trained demo database, and a way to open a page."""
    url, model_dir = trained_demo
    monkeypatch.setenv("GENDER_DB_URL", url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))
    return make_app


def make_app(page: str | None = None, **query) -> AppTest:
    at = AppTest.from_file(str(PROJECT / "streamlit_app.py"), default_timeout=TIMEOUT)
    if page:
        at.switch_page(f"pages/{page}.py")
    at.query_params.update(query)
    at.run()
    assert not at.exception
    return at


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def texts(at):
    return " ".join(
        str(element.value) for kind in ("markdown", "warning", "info", "error") for element in getattr(at, kind)
    )


FITTED_ON = "The model was fitted on this session: an in-sample answer"


def captions(at) -> str:
    return " ".join(str(element.value) for element in at.caption)


def array(value):
    """A figure's array as sent: a list, or plotly's typed array of numbers (dtype, base64 bytes)."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return value


@pytest.fixture
def engine(trained_demo):
    return db.connect(trained_demo[0])


def test_predict_a_known_session(app, engine):
    session_id = db.random_session_id(engine, labelled=True)
    at = app()
    at.text_input(key="session_id").set_value(session_id).run()
    assert not at.exception
    predicted = metric(at, "Predicted gender")
    assert predicted in ("male", "female")
    assert f"→ {predicted}" in texts(at) and "P(male) " in texts(at)
    assert metric(at, "True gender") == db.get_session(engine, session_id)["gender"]
    assert "the model got it" in texts(at)
    assert FITTED_ON in captions(at)  # every labelled demo session is a training session
    kinds = [chart["data"][0]["type"] for chart in charts(at)]
    assert {"indicator", "waterfall", "sunburst"} <= set(kinds)
    waterfall = next(chart for chart in charts(at) if chart["data"][0]["type"] == "waterfall")
    assert waterfall["data"][0]["y"][0] == "typical session" and waterfall["data"][0]["y"][-1] == "this session"
    assert at.query_params["session"] in (session_id, [session_id])


def test_a_labelled_session_the_model_never_saw_is_not_called_in_sample(app, trained_demo, monkeypatch, tmp_path):
    copy = demo_copy(trained_demo[0], tmp_path, f"new-visitor,{START},{END},A00001/B00001/C00001/D00001/")
    with db.connect(copy).begin() as conn:  # labelled after training
        conn.execute(db.session.update().where(db.session.c.session_id == "new-visitor").values(gender="male"))
    monkeypatch.setenv("GENDER_DB_URL", copy)
    at = app(session="new-visitor")
    assert "the model got it" in texts(at) and FITTED_ON not in captions(at)


def test_the_chosen_session_follows_the_analyst_across_pages(app, engine):
    session_id = db.random_session_id(engine, labelled=True)
    at = app()
    at.text_input(key="session_id").set_value(session_id).run()
    for page, key in (("categories", "categories_session"), ("model", None), ("predict", "session_id")):
        at.switch_page(f"pages/{page}.py")
        at.query_params.clear()  # a browser drops ?session= when the page changes
        at.run()
        assert not at.exception
        if key:
            assert at.text_input(key=key).value == session_id
            assert at.query_params["session"] in (session_id, [session_id])  # shareable again
    assert metric(at, "Predicted gender") in ("male", "female")


def count_form(at: AppTest, session_id: str, category: str) -> dict:
    """The Categories page's Count form filled in and sent: its JSON answer."""
    at.text_input(key="count_session").set_value(session_id)
    at.text_input(key="count_category").set_value(category)
    next(button for button in at.button if button.label == "Count").click().run()
    assert not at.exception
    return json.loads(at.json[-1].value)


def test_the_count_form_counts_in_the_session_picked_above(app, engine):
    first, second = (db.random_session_id(engine, labelled=True, rng=random.Random(seed)) for seed in (1, 2))
    assert first != second
    at = app("categories")
    at.text_input(key="categories_session").set_value(first).run()
    assert at.text_input(key="count_session").value == first
    at.text_input(key="categories_session").set_value(second).run()  # another session picked
    assert at.text_input(key="count_session").value == second
    category = db.get_views(engine, second)["category_b"].iloc[0]
    assert count_form(at, second, category) == {
        "SESSION_ID": second,
        "CATEGORY": category,
        "COUNT": db.count_category(engine, second, category),
    }
    assert count_form(at, first, category)["SESSION_ID"] == first  # the box still takes any other id
    assert not [w for w in at.warning if w.value.startswith("No session")]
    assert count_form(at, "nosuch", category)["COUNT"] == 0  # as the original answers, and why
    assert "No session `nosuch` in this database." in [w.value for w in at.warning]


def test_unknown_session_says_so_plainly(app):
    at = app()
    at.text_input(key="session_id").set_value("u00000").run()
    assert not at.exception
    assert "No session `u00000` in this database." in [w.value for w in at.warning]
    assert json.loads(at.json[0].value) == {"SESSION_ID": "u00000", "PREDICTION": "UNKNOWN_SESSION_ID"}


def demo_copy(url: str, tmp_path, *pakdd_lines: str) -> str:
    """The URL of a copy of the demo database (by SQLite's backup, see `sqlite_copy`) with these
    PAKDD lines imported into it."""
    copy = sqlite_copy(url, tmp_path / "copy.db")
    if pakdd_lines:
        ingest.import_pakdd(db.connect(copy), write_pakdd(tmp_path / "added.csv", list(pakdd_lines)))
    return copy


def test_the_sidebar_says_when_the_model_was_trained_on_another_database(app, trained_demo, monkeypatch, tmp_path):
    url, _ = trained_demo
    note = f"trained on another database: `{url}`"
    assert note not in [caption.value for caption in app().sidebar.caption]  # served where it was trained
    # the same sessions elsewhere: a model may serve another database, but say so
    monkeypatch.setenv("GENDER_DB_URL", demo_copy(url, tmp_path))
    assert note in [caption.value for caption in app().sidebar.caption]


def test_a_session_longer_than_any_trained_on_is_answered_with_a_warning(app, trained_demo, monkeypatch, tmp_path):
    url, model_dir = trained_demo
    most_views = artifact.load_card(model_dir).training.most_views
    # the demo's sessions and one with more views than any of them: a bot, say
    views = ";".join(f"A00001/B00001/C0000{n % 9 + 1}/D0000{n % 9 + 1}/" for n in range(most_views + 1))
    monkeypatch.setenv("GENDER_DB_URL", demo_copy(url, tmp_path, f"bot-1,{START},{END},{views}"))
    at = app(session="bot-1")
    warned = [w.value for w in at.warning if "the model never saw a session like it" in w.value]
    assert warned == [
        f"This session has {most_views + 1:,} views (the most in training: {most_views:,}): the model "
        "never saw a session like it, so its answer here extrapolates from shorter ones. Read it with care."
    ]
    at = app(session=db.random_session_id(db.connect(url), labelled=True))  # a session like those trained on
    assert not [w for w in at.warning if "never saw" in w.value]


def test_codes_never_seen_in_training_are_named_under_why(app, trained_demo, monkeypatch, tmp_path):
    url, _ = trained_demo
    # the demo's sessions and one viewing a new product of a new category
    path = "A00001/B00001/C new*/D-1/"  # ui.shown sets them as code: the * is never Markdown
    monkeypatch.setenv("GENDER_DB_URL", demo_copy(url, tmp_path, f"new-1,{START},{END},{path}"))
    captions = [caption.value for caption in app(session="new-1").caption]
    assert "Never seen in training, so no part of this answer: `C new*`, `D-1`." in captions
    at = app(session=db.random_session_id(db.connect(url), labelled=True))  # trained on: every code known
    assert not [caption for caption in at.caption if caption.value.startswith("Never seen")]


def test_deep_link_opens_the_session(app, engine):
    session_id = db.random_session_id(engine, labelled=False)
    at = app(session=session_id)
    assert at.text_input(key="session_id").value == session_id
    assert metric(at, "Predicted gender") in ("male", "female")
    assert metric(at, "True gender") == "unknown"


@pytest.mark.parametrize(
    "button, truth", [("session_id_labelled", {"male", "female"}), ("session_id_unknown", {"unknown"})]
)
def test_random_buttons(app, button, truth):
    at = app()
    at.button(key=button).click().run()
    assert not at.exception
    assert at.text_input(key="session_id").value
    assert metric(at, "True gender") in truth


def test_categories_of_a_session_and_the_count_query(app, engine):
    session_id = db.random_session_id(engine, labelled=True)
    views = db.get_views(engine, session_id)
    at = app("categories", session=session_id)
    table = at.dataframe[0].value  # the session table comes first
    assert table["views"].sum() == 4 * len(views)  # every view counts once at each level
    category = views["category_b"].iloc[0]
    at.text_input(key="count_category").set_value(category)
    next(button for button in at.button if button.label == "Count").click().run()
    assert not at.exception
    expected = int((views[["category_a", "category_b", "category_c", "category_d"]] == category).any(axis=1).sum())
    assert json.loads(at.json[-1].value) == {"SESSION_ID": session_id, "CATEGORY": category, "COUNT": expected}
    kinds = {chart["data"][0]["type"] for chart in charts(at)}
    assert {"bar", "treemap", "scatter"} <= kinds


def test_population_level_switch(app):
    at = app("categories")
    at.radio(key="level").set_value("c").run()
    assert not at.exception
    bars = next(c for c in charts(at) if c["data"][0]["type"] == "bar" and c["data"][0].get("name") == "female")
    assert all(str(x).startswith("C") for x in bars["data"][0]["x"])
    shares = next(frame for frame in at.dataframe if "male_share" in frame.value.columns)
    shown = json.loads(shares.proto.columns)["male_share"]  # a header in words, not the column's name
    assert shown["label"] == "male share" and shown["type_config"]["format"] == "percent"


def test_the_catalogue_shows_a_to_b_and_opens_one_a_category_to_c(app, engine):
    def treemap(at):
        trace = next(c for c in charts(at) if c["data"][0]["type"] == "treemap")["data"][0]
        columns = (array(trace[key]) for key in ("parents", "values", "customdata"))
        nodes = dict(zip(array(trace["ids"]), zip(*columns, strict=True), strict=True))
        for node, (_, views, _) in nodes.items():  # every node's views are those of its children, summed
            children = [below for parent, below, _ in nodes.values() if parent == node]
            assert not children or sum(children) == views
        return nodes

    with engine.connect() as conn:
        views = pd.read_sql(
            "SELECT p.category_a, p.category_b, p.category_c, s.gender FROM product p "
            "JOIN session s ON s.session_id = p.session_id",
            conn,
        )
    at = app("categories")
    everything = treemap(at)
    white = next(c for c in charts(at) if c["data"][0]["type"] == "treemap")["data"][0]["marker"]["colorscale"][1][0]
    labelled_views = views["gender"].dropna()
    assert white == pytest.approx((labelled_views == "male").mean())  # the colours' own quantity, over everything
    assert max(node.count(JOIN) for node in everything) == 1  # A and A/B only
    assert sum(v for parent, v, _ in everything.values() if parent == "") == len(views)

    busiest = views["category_a"].value_counts().index[0]
    at.selectbox(key="catalogue_within").set_value(busiest).run()
    assert not at.exception
    branch = treemap(at)
    inside = views[views["category_a"] == busiest]
    assert branch[busiest][:2] == ("", len(inside))
    assert all(node.split(JOIN)[0] == busiest for node in branch)
    deepest = {node for node in branch if node.count(JOIN) == 2}
    assert deepest == {JOIN.join((busiest, b, c)) for b, c in zip(inside["category_b"], inside["category_c"])}
    labelled = inside["gender"].dropna()
    assert branch[busiest][2] == pytest.approx((labelled == "male").mean())  # male share of labelled views


def test_model_page_threshold_slider(app, trained_demo):
    card = artifact.load_card(trained_demo[1])
    at = app("model")
    stored = card.slots["treatment"]
    chosen = card.candidates[card.chosen]
    assert at.slider(key="threshold").value == stored.threshold  # exactly, and as measured: the table's figure
    assert metric(at, "Balanced accuracy") == f"{stored.confusion.balanced_accuracy:.3f}"
    at.slider(key="threshold").set_value(0.3).run()  # elsewhere, read off the out-of-fold ROC curve
    expected, _ = metrics.confusion_from_roc(chosen.roc, 0.3, card.training.male, card.training.female)
    assert float(metric(at, "Balanced accuracy")) == pytest.approx(expected.balanced_accuracy, abs=1e-3)
    at.slider(key="threshold").set_value(0.9).run()
    assert not at.exception
    assert float(metric(at, "Recall (men found)")) < expected.recall
    at.slider(key="threshold").set_value(1.0).run()  # nobody called male: precision is 0/0, not 0
    assert metric(at, "Precision (men among those called men)") == "n/a"
    assert any("nobody is called male here" in caption.value for caption in at.caption)
    roc = next(c for c in charts(at) if any("chance" == t.get("name") for t in c["data"]))
    names = " ".join(t["name"] for t in roc["data"])
    assert "original" in names and "(chosen)" in names and "±" in names
    waits = at.button(key="retrain").help  # how long training will take, from the last one
    took = answers.duration_text(timedelta(seconds=round(card.seconds)))
    assert f"took {took} on {card.training.sessions:,} labelled sessions" in waits
    longest = answers.duration_text(timedelta(seconds=round(card.training.longest_seconds)))
    assert (
        f"The most views of a session trained on: {card.training.most_views:,}; the longest one lasted {longest}"
        in texts(at)
    )


def test_model_page_tables_name_each_count_and_say_why_nothing_was_held_out(app, trained_demo):
    card = artifact.load_card(trained_demo[1])
    at = app("model")
    candidates, slots, runs = (  # AppTest gives a table no key: each is found by a column of its own
        next(frame.value for frame in at.dataframe if column in frame.value.columns)
        for column in ("each fold fitted on", "final model fitted on", "held-out ROC-AUC")
    )
    # Two counts, two names: each fold's fit in the comparison, the served model's fit after it.
    chosen = card.candidates[card.chosen]
    assert (
        candidates.loc[candidates["candidate"] == card.chosen, "each fold fitted on"].item() == chosen.fold_fit_sessions
    )
    assert slots["final model fitted on"].tolist() == [entry.fitted_sessions for entry in card.slots.values()]
    assert card.slots["treatment"].holdout is None  # the demo is below train.COMPARE_SESSIONS
    assert runs["held-out ROC-AUC"].tolist()[0] == "— (CV only)"  # not "None"


def test_without_a_model_the_pages_offer_training(trained_demo, monkeypatch, tmp_path):
    path = tmp_path / "small.db"
    synth.create_demo(db.connect(f"sqlite:///{path}"), sessions=400, seed=5)
    monkeypatch.setenv("GENDER_DB_URL", f"sqlite:///{path}")
    monkeypatch.setenv("GENDER_MODEL_DIR", str(tmp_path / "models"))
    at = make_app()
    assert any("no trained model" in w.value for w in at.warning)
    at.button(key="train_models").click().run()
    assert not at.exception
    assert "so far; it goes on if you leave this page" in at.get("progress")[0].proto.text  # training on the server
    saved = tmp_path / "models" / artifact.METADATA_FILE
    deadline = time.monotonic() + 600
    while not saved.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    at.run()  # as the progress does once the training has finished
    assert not at.exception and not at.warning
    assert "Type a session id" in texts(at)  # the Predict page itself, its model there


def test_a_failed_training_says_why(trained_demo, monkeypatch, tmp_path):
    path = tmp_path / "unlabelled.db"
    engine = db.connect(f"sqlite:///{path}")
    synth.create_demo(engine, sessions=200, seed=5)
    with engine.begin() as connection:  # no labels: nothing to learn from
        connection.execute(db.session.update().values(gender=None))
    monkeypatch.setenv("GENDER_DB_URL", f"sqlite:///{path}")
    monkeypatch.setenv("GENDER_MODEL_DIR", str(tmp_path / "models"))
    at = make_app("model")
    at.button(key="train_models").click().run()
    deadline = time.monotonic() + 60
    while not at.error and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.exception
    assert [e.value for e in at.error][0].startswith("The last training failed: need at least 5 labelled sessions")
    assert at.button(key="train_models")  # and it can be tried again


def test_without_a_database_a_clear_banner(monkeypatch, tmp_path):
    database = tmp_path / "absent.db"
    monkeypatch.setenv("GENDER_DB_URL", f"sqlite:///{database}")
    monkeypatch.setenv("GENDER_MODEL_DIR", str(tmp_path))
    for page in (None, "categories", "monitoring"):  # one error naming the database and what to do
        at = make_app(page)
        errors = [e.value for e in at.error]
        assert len(errors) == 1, (page, errors)
        assert errors[0].startswith(f"database sqlite:///{database} has no FTP tables"), (page, errors)
        assert "python -m gender demo" in errors[0], (page, errors)
        assert not at.exception
    at = make_app("model")  # the Model page asks for a model first
    warnings = [w.value for w in at.warning]
    assert not at.error and len(warnings) == 1, warnings
    assert warnings[0].startswith(f"no trained model in {tmp_path}") and "python -m gender train" in warnings[0]


def test_a_tampered_model_is_refused_on_every_page(trained_demo, monkeypatch, tmp_path):
    url, model_dir = trained_demo
    copy = tmp_path / "models"
    shutil.copytree(model_dir, copy)
    with (copy / artifact.load_card(copy).slots["treatment"].file).open(
        "ab"
    ) as f:  # one byte more: the sha256 no longer matches
        f.write(b"\0")
    monkeypatch.setenv("GENDER_DB_URL", url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(copy))
    for page in (None, "model", "monitoring"):
        at = make_app(page, session="u10001")
        assert any("does not match its recorded sha256" in w.value for w in at.warning), page
        assert not at.metric or page == "model" and not any(m.label == "Predicted gender" for m in at.metric)


# -- charts: plotly.js served from static/, Streamlit's own plotly where it cannot be ------------


@pytest.fixture
def plotly_js(monkeypatch, tmp_path):
    """ui's plotly.js copy pointed at a fresh static/ folder, static serving on, forgotten afterwards."""
    import ui

    monkeypatch.setattr(ui, "STATIC", tmp_path / "static")
    serving = config.get_option("server.enableStaticServing")
    config.set_option("server.enableStaticServing", True)
    ui._plotly_js_url.cache_clear()
    yield ui
    config.set_option("server.enableStaticServing", serving)
    ui._plotly_js_url.cache_clear()


def test_plotly_js_is_copied_whole_into_static_named_by_its_version(plotly_js):
    name = f"plotly-{plotly.offline.get_plotlyjs_version()}.min.js"
    assert plotly_js._plotly_js_url() == f"/app/static/{name}"
    assert [path.name for path in plotly_js.STATIC.iterdir()] == [name]  # no partial copy left behind
    assert (plotly_js.STATIC / name).read_text() == plotly.offline.get_plotlyjs()


def test_charts_fall_back_to_streamlits_plotly_when_static_cannot_be_written(plotly_js, tmp_path, caplog):
    (tmp_path / "a file").write_text("")
    plotly_js.STATIC = tmp_path / "a file" / "static"  # no folder can be made inside a file
    assert plotly_js._plotly_js_url() is None
    assert "cannot copy plotly.js" in caplog.text


def test_charts_fall_back_to_streamlits_plotly_without_static_serving(app, plotly_js):
    config.set_option("server.enableStaticServing", False)
    at = app("model")
    assert not at.get("bidi_component") and len(at.get("plotly_chart")) == 3  # confusion, ROC, PR
    assert not plotly_js.STATIC.exists()


def test_an_echoed_id_escapes_only_what_cannot_be_seen():
    import ui

    assert ui.shown("Müller\u200b") == "`Müller\\u200b`"  # was `M\xfcller\u200b`: every accent escaped too
    assert ui.shown("café\x07") == "`café\\x07`"
    assert ui.shown("sesión-ñandú") == "`sesión-ñandú`"
