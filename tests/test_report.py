"""One session's story: contributions grouped the way an analyst reads them (explain.grouped), the
grouped waterfall on the Predict page, and the standalone HTML report and `explain` command."""

import html
import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from scipy.special import expit
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from gender import artifact, db, explain, ingest, plots, predict, report, serve, synth
from gender.answers import IN_SAMPLE, beyond_training
from gender.config import load_settings
from gender.explain import Explanation
from gender.session import JOIN, Feature, Session
from gender.trained import Model, Models
from tests import live
from tests.conftest import PROJECT, write_pakdd
from tests.live import charts

TIMEOUT = 120


# -- grouping, on a hand-made explanation --------------------------------------------------------

SESSION = Session(
    "s1",
    datetime(2014, 11, 14, 14, 2),
    datetime(2014, 11, 14, 14, 9),
    paths=(
        ("A00002", "B00009", "C00001", "D00001"),
        ("A00002", "B00009", "C00002", "D00002"),
        ("A 7", "B x y", "C00003", "D00003"),  # codes with blanks
    ),
)


def explanation_of(rows: list[tuple[str, float, float]], units: str = "log-odds") -> Explanation:
    frame = pd.DataFrame(rows, columns=["feature", "value", "shap"])
    frame["label"] = frame["feature"]
    return Explanation(-1.0, frame[["feature", "value", "label", "shap"]], units)


def test_each_contribution_goes_to_its_top_level_category_or_its_kind():
    session_rows = [
        (Feature.view("B00009").name, 2, 0.3),  # a view of a B under A00002
        (Feature.path("A00002", "B00009").name, 2, 0.2),
        (Feature.path("A00002", "B00009", "C00001").name, 1, 0.1),
        (Feature.step("C00001", "C00002").name, 1, -0.05),  # a step between two of its C codes
        (Feature.view("A00002").name, 2, 0.01),
        (Feature.view("C00003").name, 1, -0.4),  # under "A 7"
        (Feature.view("A00005").name, 0, -0.7),  # never viewed
        (Feature.path("A00005", "B00001").name, 0, -0.2),
        (Feature.path("A00002", "B00077").name, 0, 0.02),  # a path it did not take, under a viewed A
        (Feature.step("C00008", "C00009").name, 0, 0.03),
        (Feature.time("hour", 14).name, 1, 0.15),
        (Feature.time("weekday", 4).name, 1, -0.1),
        ("start_hour", 14, 0.05),
        ("views", 3, 0.4),
        ("duration_s", 420, -0.3),
        ("seconds_per_view", 140, 0.2),
    ]
    explanation = explanation_of(session_rows)
    assigned = explain.assign_groups(explanation, SESSION, "session").set_index("feature")["group"]
    a2, a7 = "A00002 and below", "A 7 and below"
    expected = [a2, a2, a2, a2, a2, a7, explain.NOT_VIEWED, explain.NOT_VIEWED, explain.NOT_VIEWED]
    expected += [explain.NOT_VIEWED, explain.WHEN, explain.WHEN, explain.WHEN]
    expected += [explain.SESSION_LENGTH] * 3
    assert assigned.tolist() == expected

    groups = explain.grouped(explanation, SESSION, "session")
    assert [abs(g.shap) for g in groups] == sorted((abs(g.shap) for g in groups), reverse=True)
    assert {g.name: g.kind for g in groups} == {
        a2: "category",
        a7: "category",
        explain.NOT_VIEWED: "not viewed",
        explain.WHEN: "when",
        explain.SESSION_LENGTH: "length",
    }
    assert {g.code for g in groups if g.kind == "category"} == {"A00002", "A 7"}
    by_name = {g.name: g for g in groups}
    assert by_name[a2].shap == pytest.approx(0.3 + 0.2 + 0.1 - 0.05 + 0.01)
    assert sorted(by_name[a2].parts["feature"]) == sorted(name for name, group in assigned.items() if group == a2)
    assert_partition(explanation, groups)


def test_a_code_viewed_under_several_top_categories_says_so():
    """A shop's names repeat across branches (Shoes under Women and under Men): the view feature
    names the code alone, so it stays in one group, the first path's, and its label names both."""
    session = Session(
        "s2",
        datetime(2014, 11, 14, 14, 2),
        datetime(2014, 11, 14, 14, 9),
        paths=(("Women", "Shoes", "Boots", "D1"), ("Men", "Shoes", "Boots", "D2"), ("Men", "Shirts", "Polo", "D3")),
    )
    rows = [
        (Feature.view("Shoes").name, 2, 0.3),
        (Feature.view("Shirts").name, 1, -0.2),
        (Feature.view("Boots").name, 2, 0.1),
    ]
    explanation = explanation_of(rows)
    assigned = explain.assign_groups(explanation, session, "session")
    assert assigned["group"].tolist() == ["Women and below", "Men and below", "Women and below"]
    shoes, shirts, boots = explanation.contributions["label"]
    assert assigned["label"].tolist() == [f"{shoes} (under Women and Men)", shirts, f"{boots} (under Women and Men)"]


def test_the_originals_words_go_to_the_category_of_their_first_code():
    rows = [
        (f"A00002{JOIN}B00009{JOIN}C00001", 1, 0.3),  # a 3-gram starting with a viewed A code
        (f"C00002{JOIN}D00002", 1, 0.1),  # starting with a viewed C code: its A is A00002
        (f"B x y{JOIN}C00003", 1, -0.2),  # the first code holds blanks; its A is "A 7"
        ("A00005", 0, -0.4),  # never viewed
        (f"A000022{JOIN}B1", 0, 0.05),  # starts like a viewed code, but is another one
        ("hour_14", 1, 0.1),
        ("day_14", 1, -0.02),
        ("views", 3, 0.2),
        ("seconds_per_view", 140, -0.1),
    ]
    explanation = explanation_of(rows, "probability")
    assigned = explain.assign_groups(explanation, SESSION, "original").set_index("feature")["group"]
    assert assigned.tolist() == [
        "A00002 and below",
        "A00002 and below",
        "A 7 and below",
        explain.NOT_VIEWED,  # as the treatment's views of codes never viewed
        explain.NOT_VIEWED,
        explain.WHEN,
        explain.WHEN,
        explain.SESSION_LENGTH,
        explain.SESSION_LENGTH,
    ]
    assert_partition(explanation, explain.grouped(explanation, SESSION, "original"))


def test_beyond_a_dozen_groups_the_smallest_fold_into_one_other():
    paths = tuple((f"A{i:05d}", f"B{i:05d}") for i in range(20))
    session = Session("many", datetime(2014, 11, 14, 14), datetime(2014, 11, 14, 15), paths=paths)
    rows = [(Feature.view(f"B{i:05d}").name, 1, (-1) ** i * (i + 1) / 10) for i in range(20)]
    rows += [("views", 20, 0.01), (Feature.view("A99999").name, 0, -0.02)]
    explanation = explanation_of(rows)
    groups = explain.grouped(explanation, session, "session", top=12)
    assert len(groups) == 13 and groups[-1].name == explain.OTHER and groups[-1].kind == "other"
    assert [g.code for g in groups[:12]] == [f"A{i:05d}" for i in range(19, 7, -1)]
    assert set(groups[-1].parts["group"]) >= {"A00000 and below", explain.SESSION_LENGTH, explain.NOT_VIEWED}
    assert_partition(explanation, groups)
    figure = plots.grouped_waterfall(explanation, groups)
    bars = figure.data[0]
    assert list(bars.y[1:-1]) == [g.name for g in groups] and len(set(bars.y)) == len(bars.y)
    assert sum(bars.x) == pytest.approx(explanation.output)


def test_a_groups_bar_shows_its_code_as_text_and_bars_never_merge():
    long = "<b>bold</b>" + "x" * 100
    paths = ((long + "1", "B1"), (long + "2", "B2"), ("typical session", "B3"))
    session = Session("s", datetime(2014, 11, 14), datetime(2014, 11, 14, 1), paths=paths)
    rows = [(Feature.view("B1").name, 1, 0.5), (Feature.view("B2").name, 1, 0.4), (Feature.view("B3").name, 1, 0.3)]
    explanation = explanation_of(rows)
    figure = plots.grouped_waterfall(explanation, explain.grouped(explanation, session, "session"))
    labels = list(figure.data[0].y)
    assert len(set(labels)) == len(labels) == 5  # two long codes cut to the same text stay two bars
    assert labels[1].startswith("&lt;b&gt;bold&lt;/b&gt;xxx") and "<b>" not in labels[1]
    assert html.unescape(labels[3]) == "typical session and below"


def test_the_waterfall_leaves_room_beyond_its_outermost_bars_for_their_values():
    # From -1.0 down to -2.5 and back up to -2.1: a value written left of the lowest bar needs room
    # inside the plot, or it is drawn over the row names.
    paths = (("A1", "B1"), ("A2", "B2"))
    session = Session("s", datetime(2014, 11, 14), datetime(2014, 11, 14, 1), paths=paths)
    explanation = explanation_of([(Feature.view("B1").name, 1, -1.5), (Feature.view("B2").name, 1, 0.4)])
    figure = plots.grouped_waterfall(explanation, explain.grouped(explanation, session, "session"))
    low, high = figure.layout.xaxis.range
    span = 2.5  # from the lowest bar's end, -2.5, to 0, where the first bar and the total start
    assert low <= -2.5 - 0.15 * span and high >= 0.15 * span
    assert low >= -2.5 - span and high <= span  # room, not a chart of empty space


def assert_partition(explanation: Explanation, groups) -> None:
    """Every contribution in exactly one group, and the groups adding up to all of them."""
    parts = pd.concat([g.parts for g in groups], ignore_index=True)
    assert sorted(parts["feature"]) == sorted(explanation.contributions["feature"])
    for g in groups:
        assert g.shap == pytest.approx(float(g.parts["shap"].sum()), abs=1e-12)
    total = float(explanation.contributions["shap"].sum())
    assert sum(g.shap for g in groups) == pytest.approx(total, rel=1e-12, abs=1e-12)
    assert explanation.base_value + sum(g.shap for g in groups) == pytest.approx(explanation.output, abs=1e-12)


# -- on the trained demo models -----------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(trained_demo):
    url, model_dir = trained_demo
    return db.connect(url), artifact.load(model_dir)


def busiest_session(engine) -> str:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT session_id FROM product GROUP BY session_id ORDER BY COUNT(*) DESC, session_id LIMIT 1")
        ).scalar_one()


def test_both_served_models_tell_a_story_that_adds_up(demo):
    engine, models = demo
    ids = [busiest_session(engine)] + [db.random_session_id(engine, labelled=i % 2 == 0) for i in range(6)]
    for session_id in ids:
        for share, slot in ((1.0, "treatment"), (0.0, "control")):
            served = serve.serve(engine, models, session_id, "salt", share)
            assert served.group == slot
            model, record = models.of(slot), served.assessment.record
            explanation = served.assessment.explanation
            groups = explain.grouped(explanation, record, explain.scheme_of(model))
            assert len(groups) <= 13
            assert_partition(explanation, groups)
            viewed_a = {path[0] for path in record.paths}
            assert {g.code for g in groups if g.kind == "category"} <= viewed_a
            if slot == "control":
                assert explain.scheme_of(model) == "original"
                # Its words the session has none of are "not viewed", as the treatment's views are.
                for group in groups:
                    if group.kind == "not viewed":
                        assert (group.parts["value"] == 0).all()
                        assert group.parts["label"].str.match(r'no view of |no ".*" in its codes$').all()


def test_the_report_warns_of_a_session_beyond_every_one_trained_on(demo):
    engine, models = demo
    served = serve.serve(engine, models, db.random_session_id(engine, labelled=True), "salt", 1.0)
    model, record = models.of(served.group), served.assessment.record
    assert "never saw a session like it" not in report.html(served, model)  # one of those trained on
    training = model.card.training.model_copy(update={"most_views": record.n_views - 1})
    trained_on_fewer = Model(model.pipeline, model.card.model_copy(update={"training": training}), model.slot)
    warning = html.escape(beyond_training(record, training))
    assert f'<p class="warning">{warning}</p>' in report.html(served, trained_on_fewer)


def test_the_report_names_the_codes_never_seen_in_training(demo, tmp_path):
    engine, models = demo
    copy = db.connect(live.sqlite_copy(engine.url, tmp_path / "copy.db"))  # the demo's sessions and one with new codes
    line = "new-1,2014-11-14 10:00:00,2014-11-14 10:05:00,A00001/B00001/C <new>/D&1/"
    ingest.import_pakdd(copy, write_pakdd(tmp_path / "new.csv", [line]))
    served = serve.serve(copy, models, "new-1", "salt", 1.0)
    page = report.html(served, models.of(served.group))
    assert '<p class="muted">Never seen in training, so no part of this answer: <code>C &lt;new&gt;</code>, ' in page
    assert "<code>D&amp;1</code>.</p>" in page
    known = serve.serve(engine, models, db.random_session_id(engine, labelled=True), "salt", 1.0)
    assert "Never seen in training" not in report.html(known, models.of(known.group))


# -- the Predict page ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(trained_demo):
    """The Predict page on the demo's busiest session, and that session as served to it."""
    url, model_dir = trained_demo
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENDER_DB_URL", url)
        patch.setenv("GENDER_MODEL_DIR", str(model_dir))
        engine = db.connect(url)
        session_id = busiest_session(engine)
        at = AppTest.from_file(str(PROJECT / "streamlit_app.py"), default_timeout=TIMEOUT)
        at.query_params["session"] = session_id
        at.run()
        assert not at.exception
        settings = load_settings()
        models = artifact.load(settings.model_dir)
        served = serve.serve(engine, models, session_id, settings.ab_salt, settings.treatment_share)
        yield at, served, models.of(served.group)


def waterfall_of(figures: list[dict]) -> dict:
    return next(figure for figure in figures if figure["data"][0]["type"] == "waterfall")["data"][0]


def test_the_pages_waterfall_tells_the_story_in_a_dozen_named_bars(page):
    at, served, model = page
    explanation = served.assessment.explanation
    bars = waterfall_of(charts(at))
    labels, values = bars["y"], bars["x"]
    assert labels[0] == "typical session" and labels[-1] == "this session"
    named = [label for label in labels[1:-1] if label != explain.OTHER]
    assert len(named) <= 12 and labels.count(explain.OTHER) <= 1
    assert values[0] == pytest.approx(explanation.base_value)
    assert sum(values) == pytest.approx(explanation.output, abs=1e-9)  # the bars add up to the output
    assert sum(values[1:-1]) == pytest.approx(float(explanation.contributions["shap"].sum()), abs=1e-9)
    groups = explain.grouped(explanation, served.assessment.record, explain.scheme_of(model))
    assert [html.unescape(label) for label in labels[1:-1]] == [g.name for g in groups]
    # each bar opens into its parts
    expanders = [e for e in at.expander if "contribution" in e.label]
    assert len(expanders) == len(groups)
    for group, expander in zip(groups, expanders):
        table = expander.dataframe[0].value
        assert table["shap"].sum() == pytest.approx(group.shap)
        assert sorted(table["label"]) == sorted(group.parts["label"])
    assert at.get("download_button") and "report" in at.get("download_button")[0].proto.label


def test_the_pages_compare_switch_groups_the_other_models_story_too(page, trained_demo):
    at, served, _ = page
    at.toggle(key="compare").set_value(True).run()
    assert not at.exception
    waterfalls = [figure["data"][0] for figure in charts(at) if figure["data"][0]["type"] == "waterfall"]
    assert len(waterfalls) == 2
    at.toggle(key="compare").set_value(False).run()


# -- the report ---------------------------------------------------------------------------------

FIGURES_IN_THE_BROWSER = """() => [...document.querySelectorAll('.js-plotly-plot')].map(div => ({
    id: div.id,
    svg: div.querySelectorAll('svg.main-svg').length,
    drawn: div.querySelectorAll('.trace, .indicator, .slice').length,
    type: div.data[0].type,
    x: div.data[0].x ? Array.from(div.data[0].x) : null,
    y: div.data[0].y ? Array.from(div.data[0].y) : null,
    value: div.data[0].value ?? null,
}))"""


def open_offline(browser, path: Path):
    """A page showing the file with the network off; and every request it made."""
    context = browser.new_context(offline=True, viewport={"width": 1200, "height": 1600})
    requests = []
    context.on("request", lambda request: requests.append(request.url))
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://") else route.abort())
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    page.wait_for_function(f"{live.CHARTS_DRAWN} >= 3")
    page.wait_for_timeout(300)
    return context, page, requests, errors


def test_the_report_opens_offline_and_shows_the_pages_figures(page, browser, tmp_path):
    at, served, model = page
    path = tmp_path / report.file_name(served.prediction.session_id)
    built = report.build(served, model)
    path.write_text(built.html(), encoding="utf-8")
    context, tab, requests, errors = open_offline(browser, path)
    try:
        shown = tab.evaluate(FIGURES_IN_THE_BROWSER)
        body = tab.inner_text("body")
        answer_shown = tab.text_content("details pre")  # the answer as JSON, closed until clicked
    finally:
        context.close()
    assert requests == [path.as_uri()] and not errors  # nothing but the file itself
    assert [figure["type"] for figure in shown] == ["indicator", "waterfall", "sunburst"]
    assert all(figure["svg"] >= 1 and figure["drawn"] >= 1 for figure in shown), shown

    on_page = charts(at)
    indicator = next(figure for figure in on_page if figure["data"][0]["type"] == "indicator")["data"][0]
    p_male = served.prediction.p_male
    assert shown[0]["value"] == indicator["value"] == pytest.approx(p_male)
    waterfall = waterfall_of(on_page)
    assert shown[1]["y"] == waterfall["y"]
    assert shown[1]["x"] == pytest.approx(waterfall["x"])
    sunburst = next(figure for figure in on_page if figure["data"][0]["type"] == "sunburst")["data"][0]
    assert built.figures()["sunburst"].data[0].ids.tolist() == sunburst["ids"]

    answer = served.as_json()
    assert f"{p_male:.4f}" in body and answer["MODEL"] in body and served.group in body
    assert f"{served.prediction.threshold:.4f}" in body
    assert json.loads(answer_shown) == answer  # the original JSON, P(male), threshold, model, group
    for _, path_codes in zip(range(5), served.assessment.record.paths):
        assert " › ".join(path_codes) in body  # the session's views
    for group in built.groups:
        assert group.name in body  # the groups' parts, opened by a click


# -- hostile ids and codes ------------------------------------------------------------------------

HOSTILE_ID = '<script>window.pwned="id"</script>'
HOSTILE_A = "<img src=x onerror=\"window.pwned='a'\">"
HOSTILE_C = '</script><script>window.pwned="c"</script>'
HOSTILE_B = "<b>B</b> & \"quoted\" 'too'"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A small shop whose busiest top-level category, one of its C codes, one B code and one
    session's id are markup; both models fitted on it (no cross-validation: seconds)."""
    from gender import train
    from tests.models import fitted_model

    path = tmp_path_factory.mktemp("hostile") / "shop.db"
    engine = db.connect(f"sqlite:///{path}")
    synth.create_demo(engine, sessions=800, seed=4)
    with engine.begin() as conn:
        a = conn.execute(text("SELECT category_a FROM product GROUP BY 1 ORDER BY COUNT(*) DESC LIMIT 1")).scalar()
        c, b = conn.execute(
            text(
                "SELECT category_c, category_b FROM product WHERE category_a = :a GROUP BY 1, 2 ORDER BY COUNT(*) DESC"
            ),
            {"a": a},
        ).first()
        victim = conn.execute(
            text("SELECT session_id FROM product WHERE category_c = :c ORDER BY session_id LIMIT 1"), {"c": c}
        ).scalar()
        conn.execute(text("UPDATE product SET category_a = :new WHERE category_a = :old"), {"new": HOSTILE_A, "old": a})
        conn.execute(text("UPDATE product SET category_c = :new WHERE category_c = :old"), {"new": HOSTILE_C, "old": c})
        conn.execute(text("UPDATE product SET category_b = :new WHERE category_b = :old"), {"new": HOSTILE_B, "old": b})
        moved = {"new": HOSTILE_ID, "old": victim}
        conn.execute(
            text(
                "INSERT INTO session (session_id, start_time, end_time, gender) "
                "SELECT :new, start_time, end_time, gender FROM session WHERE session_id = :old"
            ),
            moved,
        )
        conn.execute(text("UPDATE product SET session_id = :new WHERE session_id = :old"), moved)
        conn.execute(text("DELETE FROM session WHERE session_id = :old"), moved)
    frame, y = train.labelled_data(engine)
    models = Models(
        fitted_model(train.logistic_pipeline(), frame, y, "treatment", "logistic"),
        fitted_model(train.original_pipeline(n_jobs=1), frame, y, "control", "original"),
    )
    yield engine, models
    engine.dispose()


@pytest.mark.parametrize("share, slot", [(1.0, "treatment"), (0.0, "control")])
def test_hostile_ids_and_codes_are_shown_as_text_never_run(hostile, browser, tmp_path, share, slot):
    engine, models = hostile
    served = serve.serve(engine, models, HOSTILE_ID, "salt", share)
    assert served.group == slot and served.prediction.session_id == HOSTILE_ID
    built = report.build(served, models.of(slot))
    assert any(group.code == HOSTILE_A for group in built.groups)  # the markup is in a bar's name
    path = tmp_path / report.file_name(HOSTILE_ID)
    assert path.name.startswith("gender-report-") and "<" not in path.name and "/" not in path.name
    page_html = built.html()
    for hostile_text in (HOSTILE_ID, HOSTILE_A, HOSTILE_C, HOSTILE_B):
        assert hostile_text not in page_html  # only ever escaped (in HTML or in the charts' JSON)
    path.write_text(page_html, encoding="utf-8")
    context, tab, requests, errors = open_offline(browser, path)
    try:
        assert tab.evaluate("() => window.pwned") is None and not errors
        assert tab.locator("img").count() == 0
        assert tab.locator("body script").count() == 3  # the three charts' own, nothing injected
        assert tab.title() == f"gender-lens: session {HOSTILE_ID}"
        body = tab.inner_text("body")
        for hostile_text in (HOSTILE_ID, HOSTILE_A, HOSTILE_C, HOSTILE_B):
            assert hostile_text in body
        ticks = tab.locator("#chart-waterfall .ytick text").all_text_contents()
        assert any(tick.startswith(HOSTILE_A[:40]) for tick in ticks), ticks  # as text, not as plotly markup
        assert tab.locator("#chart-waterfall .ytick text b, #chart-waterfall .ytick text a").count() == 0
    finally:
        context.close()
    assert requests == [path.as_uri()]


# -- the command --------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gender", *args], cwd=PROJECT, capture_output=True, text=True, timeout=300
    )


def test_predict_and_explain_warn_of_a_session_beyond_training_as_the_page_does(trained_demo, tmp_path):
    """A bot's session, with more views than any trained on: the Predict page warns, and so do the
    command line (stderr: the JSON stays the service's answer) and the explanation's data."""
    from tests.test_app import END, START, demo_copy

    url, model_dir = trained_demo
    most_views = artifact.load_card(model_dir).training.most_views
    views = ";".join(f"A00001/B00001/C0000{n % 9 + 1}/D0000{n % 9 + 1}/" for n in range(most_views + 1))
    copy = demo_copy(url, tmp_path, f"bot-1,{START},{END},{views}")
    where = ("--db", copy, "--model-dir", str(model_dir))
    predicted, explained = run_cli("predict", "bot-1", *where), run_cli("explain", "bot-1", "--json", "-", *where)
    expected = beyond_training(predict.lookup(db.connect(copy), "bot-1"), artifact.load_card(model_dir).training)
    assert expected and expected.startswith(f"This session has {most_views + 1:,} views")
    for result in (predicted, explained):
        assert result.returncode == 0 and result.stderr.splitlines()[0] == f"warning: {expected}", result.stderr
    assert json.loads(predicted.stdout)["PREDICTION"] in ("male", "female")
    assert json.loads(explained.stdout)["beyond_training"] == expected
    usual = run_cli("explain", "u10003", "--json", "-", *where)
    assert json.loads(usual.stdout)["beyond_training"] is None and "warning" not in usual.stderr


def test_explain_writes_the_report_and_contributions_that_add_up(trained_demo, demo, tmp_path):
    url, model_dir = trained_demo
    engine, models = demo
    session_id = busiest_session(engine)
    out_html, out_json = tmp_path / "report.html", tmp_path / "why.json"
    where = ("--db", url, "--model-dir", str(model_dir))
    result = run_cli("explain", session_id, "--html", str(out_html), "--json", str(out_json), *where)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    predicted = json.loads(run_cli("predict", session_id, *where).stdout)
    assert answer == predicted  # the served answer, as `predict` gives it
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.html", "why.json"]  # no temporary left

    written = json.loads(out_json.read_text())
    assert written["answer"] == answer
    contributions = pd.DataFrame(written["contributions"])
    assert list(contributions.columns) == ["feature", "label", "value", "shap", "group"]
    output = written["base_value"] + contributions["shap"].sum()
    assert output == pytest.approx(written["output"], abs=1e-9)
    p_male = expit(written["output"]) if written["units"] == "log-odds" else written["output"]
    assert p_male == pytest.approx(answer["P_MALE"], abs=1e-5)
    settings = load_settings(db=url, model_dir=model_dir)
    served = serve.serve(engine, models, session_id, settings.ab_salt, settings.treatment_share)
    explanation = served.assessment.explanation
    assert written["output"] == pytest.approx(explanation.output, abs=1e-9)
    assert written["base_value"] == pytest.approx(explanation.base_value)
    groups = contributions.groupby("group", sort=False)["shap"].sum()
    assert {g["name"]: g["shap"] for g in written["groups"]} == pytest.approx(groups.to_dict())
    page = out_html.read_text()
    assert page.startswith("<!doctype html>") and "Content-Security-Policy" in page
    assert page.count('class="plotly-graph-div"') == 3
    labelled = bool(db.get_session(engine, session_id)["gender"])  # every labelled demo session is trained on
    assert (html.escape(IN_SAMPLE) in page) == labelled
    # Every contribution is in the table in words; no control character (not valid in HTML: the
    # features' own names, with their code separator, drew an empty box) is outside the scripts.
    text = re.sub(r"<script\b.*?</script>", "", page, flags=re.DOTALL)  # plotly.js holds some
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text)
    for label in contributions["label"]:
        assert f'<td class="text">{html.escape(label)}</td>' in text, label
    assert "<th" in text and '<th class="text">feature</th>' not in text  # the names are the JSON's

    to_stdout = run_cli("explain", session_id, *where)
    assert to_stdout.returncode == 0 and json.loads(to_stdout.stdout)["output"] == pytest.approx(written["output"])


@pytest.mark.parametrize("session_id", ["u00000", "<script>alert(1)</script>"])
def test_explain_of_an_unknown_session_answers_unknown_and_writes_nothing(trained_demo, tmp_path, session_id):
    url, model_dir = trained_demo
    out = tmp_path / "report.html"
    result = run_cli(
        "explain", session_id, "--html", str(out), "--json", "-", "--db", url, "--model-dir", str(model_dir)
    )
    predicted = run_cli("predict", session_id, "--db", url, "--model-dir", str(model_dir))
    assert result.returncode == predicted.returncode == 0
    assert (
        json.loads(result.stdout)
        == json.loads(predicted.stdout)
        == {
            "SESSION_ID": session_id,
            "PREDICTION": "UNKNOWN_SESSION_ID",
        }
    )
    assert "no such session" in result.stderr and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "html, json_out, refused, reason",
    [
        ("missing/report.html", None, "missing/report.html", "cannot write {out}: there is no folder"),
        # the report could be written, the JSON not: neither is, not one without the other
        ("report.html", "missing/why.json", "missing/why.json", "cannot write {out}: there is no folder"),
        ("report.html", ".", ".", "{out} is a folder: --json names the JSON file to write"),
    ],
)
def test_explain_into_a_path_it_cannot_write_is_one_clear_error_and_writes_nothing(
    trained_demo, tmp_path, html, json_out, refused, reason
):
    url, model_dir = trained_demo
    outputs = ["--html", str(tmp_path / html), *(["--json", str(tmp_path / json_out)] if json_out else [])]
    result = run_cli("explain", "u10003", *outputs, "--db", url, "--model-dir", str(model_dir))
    lines = result.stderr.strip().splitlines()  # refused before the session is even read
    assert result.returncode == 1 and len(lines) == 1 and result.stdout == "", result.stderr
    assert lines[0].startswith("error: " + reason.format(out=tmp_path / refused)), lines
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_predict_pages_button_downloads_the_report(trained_demo, browser, tmp_path):
    """In a real browser: the button on the Predict page gives the served session's report, which
    then opens with the network off."""
    url, model_dir = trained_demo
    session_id = busiest_session(db.connect(url))
    env = {"GENDER_DB_URL": url, "GENDER_MODEL_DIR": str(model_dir)}
    with live.streamlit_server(env, tmp_path / "streamlit.log") as (base, _):
        tab = browser.new_page(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
        try:
            tab.goto(f"{base}/?session={session_id}")
            tab.wait_for_selector(live.IDLE, timeout=120_000)
            tab.wait_for_selector(".js-plotly-plot .waterfalllayer .trace", timeout=60_000)
            with tab.expect_download(timeout=60_000) as download:
                tab.get_by_role("button", name="Download this answer as a report (HTML)").click()
            assert download.value.suggested_filename == report.file_name(session_id)
            saved = tmp_path / download.value.suggested_filename
            download.value.save_as(saved)
        finally:
            tab.close()
    context, opened, requests, errors = open_offline(browser, saved)
    try:
        assert len(opened.evaluate(FIGURES_IN_THE_BROWSER)) == 3 and not errors
        answer = json.loads(opened.text_content("details pre"))
    finally:
        context.close()
    assert requests == [saved.as_uri()]
    assert answer["SESSION_ID"] == session_id and answer["GROUP"] in ("control", "treatment")
