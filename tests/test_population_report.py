"""The Population page's views as a standalone HTML file (issue 16): it opens in Chromium with the
network off and draws every chart, whose figures are the page's; the page's button and
`python -m gender population --html` give it."""

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from gender import artifact, db, population, report
from gender.cli import main
from gender.config import load_settings
from tests import live
from tests.conftest import PROJECT
from tests.live import charts
from tests.test_app import array
from tests.test_report import open_offline

TIMEOUT = 120
CHARTS = [
    "chart-groups",
    "chart-importance",
    *(f"chart-dependence-{number}" for number in population.DEPENDENCE),
    "chart-cohort-groups",
    "chart-cohort-features",
]

FIGURES_IN_THE_BROWSER = """() => [...document.querySelectorAll('.js-plotly-plot')].map(div => ({
    id: div.id,
    svg: div.querySelectorAll('svg.main-svg').length,
    drawn: div.querySelectorAll('.trace').length,
    traces: div.data.map(trace => ({  // numbers: plotly's typed arrays (dtype, bdata) as the file holds them
        type: trace.type,
        name: trace.name ?? null,
        x: trace.x && trace.x.bdata ? trace.x : trace.x ? Array.from(trace.x) : null,
        y: trace.y && trace.y.bdata ? trace.y : trace.y ? Array.from(trace.y) : null,
    })),
}))"""


@pytest.fixture(scope="module")
def setting(trained_demo, tmp_path_factory):
    """(database URL, model folder, population as the page shows it): the models copied into a
    folder of this module's own, the population computed there once, with the page's settings."""
    url, model_dir = trained_demo
    folder = tmp_path_factory.mktemp("population-report") / "models"
    shutil.copytree(model_dir, folder)
    settings = load_settings(db=url, model_dir=folder)
    engine = db.connect(url)
    result = population.current(engine, artifact.load(folder), folder, settings.ab_salt, settings.treatment_share)
    yield url, folder, result
    engine.dispose()


@pytest.fixture(scope="module")
def page(setting):
    url, folder, _ = setting
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENDER_DB_URL", url)
        patch.setenv("GENDER_MODEL_DIR", str(folder))
        at = AppTest.from_file(str(PROJECT / "streamlit_app.py"), default_timeout=TIMEOUT)
        at.switch_page("pages/population.py")
        at.run()
        assert not at.exception
        yield at


def traces_of(figure: dict) -> list[dict]:
    """A figure's traces as the page sent them: type, name, x and y as lists."""
    return [
        {
            "type": trace.get("type"),
            "name": trace.get("name"),
            "x": array(trace["x"]) if "x" in trace else None,
            "y": array(trace["y"]) if "y" in trace else None,
        }
        for trace in figure["data"]
    ]


def assert_same(shown: dict, sent: dict) -> None:
    """A chart drawn from the file equals the page's figure, trace by trace."""
    theirs = traces_of(sent)
    assert len(shown["traces"]) == len(theirs), shown["id"]
    for mine, page_trace in zip(shown["traces"], theirs):
        assert mine["type"] == page_trace["type"] and mine["name"] == page_trace["name"], shown["id"]
        for axis in ("x", "y"):
            if page_trace[axis] is None:
                continue
            values, drawn = page_trace[axis], array(mine[axis])  # typed arrays as plotly sends them
            if values and isinstance(values[0], str):
                assert drawn == values, (shown["id"], axis)
            else:
                assert drawn == pytest.approx(values, abs=1e-12, nan_ok=True), (shown["id"], axis)


def test_the_file_opens_offline_draws_every_chart_and_they_are_the_pages(setting, page, browser, tmp_path):
    _, _, result = setting
    at = page
    path = tmp_path / population.report_file_name(result)
    path.write_text(population.html(result), encoding="utf-8")  # the page's defaults
    context, tab, requests, errors = open_offline(browser, path)
    try:
        tab.wait_for_function(f"{live.CHARTS_DRAWN} >= {len(CHARTS)}")
        shown = {figure["id"]: figure for figure in tab.evaluate(FIGURES_IN_THE_BROWSER)}
        body = tab.inner_text("body")
    finally:
        context.close()
    assert requests == [path.as_uri()] and not errors  # nothing but the file itself
    assert list(shown) == CHARTS
    assert all(figure["svg"] >= 1 and figure["drawn"] >= 1 for figure in shown.values()), shown
    assert result.info.model_id in body and f"{len(result.sample):,}" in body
    assert result.importance["label"].iat[0] in body  # the table, as text

    on_page = charts(at)  # groups, importance, the chosen number's dependence, the cohorts' two
    assert len(on_page) == 5
    for name, sent in zip(("chart-groups", "chart-importance", "chart-dependence-start_hour"), on_page):
        assert_same(shown[name], sent)
    assert_same(shown["chart-cohort-groups"], on_page[3])
    assert_same(shown["chart-cohort-features"], on_page[4])
    for number in list(population.DEPENDENCE)[1:]:  # every other number, as the page draws it when chosen
        at.selectbox(key="population_number").set_value(number).run()
        assert not at.exception
        assert_same(shown[f"chart-dependence-{number}"], charts(at)[2])
    at.selectbox(key="population_number").set_value("start_hour").run()


def test_the_file_follows_the_pages_choices(setting, page):
    """Other features shown and other cohorts on the page: the file built for them has its figures."""
    _, _, result = setting
    at = page
    at.slider(key="population_top").set_value(8)
    at.selectbox(key="cohort_a_by").set_value("gender").run()
    at.selectbox(key="cohort_b_by").set_value("group").run()
    at.slider(key="cohort_top").set_value(6).run()
    assert not at.exception
    view = population.View(8, population.Cohort("gender", "male"), population.Cohort("group", "treatment"), 6)
    on_page = charts(at)
    built = population.html(result, view)
    assert all(f'id="{div_id}"' in built for div_id in CHARTS)
    assert len(on_page[1]["data"][0]["y"]) == 8
    mine = {
        "chart-importance": population.importance_figure(result, view.top),
        **dict(
            zip(
                ("chart-cohort-groups", "chart-cohort-features"),
                population.comparison_figures(result, view.comparison(result)),
            )
        ),
    }
    for name, sent in zip(mine, (on_page[1], on_page[3], on_page[4])):
        assert traces_of(json.loads(mine[name].to_json())) == traces_of(sent), name
    assert at.get("download_button") and "report" in at.get("download_button")[0].proto.label


def test_the_population_command_writes_the_report(setting, tmp_path, capsys):
    url, folder, result = setting
    out = tmp_path / "population.html"
    assert main(["population", "--html", str(out), "--db", url, "--model-dir", str(folder)]) == 0
    out_text, err = capsys.readouterr()
    assert err.startswith("reused ") and f"wrote the population report to {out}" in err
    assert json.loads(out_text)["model_id"] == result.info.model_id
    written = out.read_text(encoding="utf-8")
    assert written.startswith("<!doctype html>") and "Content-Security-Policy" in written
    assert written.count('class="plotly-graph-div"') == len(CHARTS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["population.html"]  # no temporary left

    missing = tmp_path / "missing" / "population.html"
    assert main(["population", "--html", str(missing), "--db", url, "--model-dir", str(folder)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: cannot write {missing}")
    assert report.file_name(result.info.model_id, "gender-population").startswith("gender-population-")


# The bars of the page's importance chart (known by its colour key): -1 until it is drawn.
IMPORTANCE_BARS = (
    "([...document.querySelectorAll('.js-plotly-plot')]"
    ".find(e => String(e.layout?.title?.text).startsWith('blue: towards male'))?.data[0].y.length ?? -1)"
)


@pytest.mark.slow
def test_the_pages_button_downloads_the_views_shown(setting, browser, tmp_path):
    """In a real browser: the Population page's button gives the file of the views as chosen
    there (here 8 features), which then opens with the network off."""
    from tests import live

    url, folder, result = setting
    env = {"GENDER_DB_URL": url, "GENDER_MODEL_DIR": str(folder)}
    with live.streamlit_server(env, tmp_path / "streamlit.log") as (base, _):
        tab = browser.new_page(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
        try:
            tab.goto(f"{base}/population")
            tab.wait_for_selector(live.IDLE, timeout=120_000)
            slider = tab.get_by_role("slider").first  # "Features shown" of the importance chart: 20
            slider.focus()
            for _ in range(12):
                slider.press("ArrowLeft")
            # The chart redrawn with 8 bars, then idle: idle alone can be the page before the
            # rerun began, its button holding the 20 features' views.
            tab.wait_for_function(IMPORTANCE_BARS + " === 8", timeout=60_000)
            tab.wait_for_selector(live.IDLE, timeout=60_000)
            with tab.expect_download(timeout=60_000) as download:
                tab.get_by_role("button", name="Download these views as a report (HTML)").click()
            assert download.value.suggested_filename == population.report_file_name(result)
            saved = tmp_path / download.value.suggested_filename
            download.value.save_as(saved)
        finally:
            tab.close()
    context, opened, requests, errors = open_offline(browser, saved)
    try:
        opened.wait_for_function(f"{live.CHARTS_DRAWN} >= {len(CHARTS)}")
        shown = {figure["id"]: figure for figure in opened.evaluate(FIGURES_IN_THE_BROWSER)}
    finally:
        context.close()
    assert requests == [saved.as_uri()] and not errors and list(shown) == CHARTS
    assert len(array(shown["chart-importance"]["traces"][0]["y"])) == 8
