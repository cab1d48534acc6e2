"""End to end: `streamlit run` on a free port, driven by headless Chromium through Playwright.

Screenshots of every page land in tests/screenshots/ (gitignored).
"""

import shutil
import urllib.request

import plotly.offline
import pytest

from gender import artifact, db
from tests import live
from tests.conftest import PROJECT

pytestmark = pytest.mark.slow
SHOTS = PROJECT / "tests" / "screenshots"


@pytest.fixture(scope="module")
def server(trained_demo, tmp_path_factory):
    """A real Streamlit server on the trained demo database; yields its base URL. Its models are a
    copy: the Population page keeps what it computes beside them, and other modules expect the
    demo's model folder as trained."""
    url, model_dir = trained_demo
    folder = tmp_path_factory.mktemp("server")
    shutil.copytree(model_dir, folder / "models")
    env = {"GENDER_DB_URL": url, "GENDER_MODEL_DIR": str(folder / "models")}
    with live.streamlit_server(env, folder / "streamlit.log") as (base, _):
        yield base


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    yield page
    page.close()


# The P(male) bar (the page's first chart) shows its 0-100 % scale inside the chart, not cut off below.
TICKS_INSIDE_THE_P_MALE_BAR = """() => {
    const chart = document.querySelector('.js-plotly-plot');
    if (!chart?.querySelector('.main-svg')) return false;  // not drawn yet
    const bottom = chart.querySelector('.main-svg').getBoundingClientRect().bottom;
    const ticks = [...chart.querySelectorAll('.xbulletaxistick text')];
    return ticks.length === 6 && ticks.every(tick => tick.getBoundingClientRect().bottom <= bottom);
}"""


def settle(page):
    page.wait_for_selector(live.IDLE, timeout=120_000)
    page.wait_for_timeout(500)  # let plotly finish drawing
    page.wait_for_selector(live.IDLE, timeout=120_000)


def wait_for_charts(page, count):
    """Until `count` plotly charts are drawn: under CI's load they come one at a time."""
    page.wait_for_function(f"{live.CHARTS_DRAWN} >= {count}", timeout=60_000)


def shoot(page, name):
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def no_exceptions(page):
    assert page.locator('[data-testid="stException"]').count() == 0


def test_predict_page_typing_a_session(server, page, trained_demo):
    session_id = db.random_session_id(db.connect(trained_demo[0]), labelled=True)
    page.goto(server)
    settle(page)
    box = page.get_by_label("Session id")
    box.fill(session_id)
    box.press("Enter")
    settle(page)
    page.wait_for_selector(".js-plotly-plot .waterfalllayer .trace", timeout=60_000)
    # the answer's metric can be drawn after the waterfall under load (CI read the body without it)
    answered = "t => t.includes('Predicted gender') && t.includes('P(male)') && /→ (fe)?male/.test(t)"
    page.wait_for_function(f"({answered})(document.body.innerText)", timeout=60_000)
    assert page.locator(".js-plotly-plot .waterfalllayer .trace").count() >= 1
    assert f"session={session_id}" in page.url
    # the P(male) bar may be drawn after the waterfall under load: wait for its six ticks (a timeout
    # fails the test, as ticks drawn outside the bar would)
    page.wait_for_function(TICKS_INSIDE_THE_P_MALE_BAR, timeout=60_000)
    no_exceptions(page)
    shoot(page, "predict")


def test_deep_link_and_unknown_session(server, page):
    page.goto(f"{server}/?session=u00000")
    settle(page)
    assert "No session u00000 in this database." in page.inner_text("body")
    assert "UNKNOWN_SESSION_ID" in page.inner_text("body")
    no_exceptions(page)
    shoot(page, "predict-unknown")


def test_random_button(server, page):
    page.goto(server)
    settle(page)
    page.get_by_role("button", name="Labelled").click()
    settle(page)
    page.wait_for_selector(".js-plotly-plot .waterfalllayer .trace", timeout=60_000)
    # The truth, once the run that picked the session has drawn it (on a loaded machine the click's
    # rerun can still be drawing when the first waterfall shows): waited for, not read at once.
    truth = page.get_by_test_id("stMetricLabel").filter(has_text="True gender")
    truth.first.wait_for(state="visible", timeout=60_000)
    assert "session=" in page.url and "True gender" in page.inner_text("body")
    no_exceptions(page)


@pytest.mark.parametrize("path", ["model", "categories?session=u10003"])
def test_a_deep_link_as_the_first_visit_after_a_start_goes_through_the_router(trained_demo, tmp_path, browser, path):
    """Streamlit runs pages/*.py as a legacy multipage app, without streamlit_app.py, until some
    session has called st.navigation: the first visit after a start must still get the frame."""
    url, model_dir = trained_demo
    env = {"GENDER_DB_URL": url, "GENDER_MODEL_DIR": str(model_dir)}
    with live.streamlit_server(env, tmp_path / "streamlit.log") as (base, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        try:
            page.goto(f"{base}/{path}")
            settle(page)
            page.wait_for_selector(".js-plotly-plot", timeout=60_000)
            sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
            assert "gender-lens" in sidebar and "Data source" in sidebar  # ui.sidebar(), from the router
            links = page.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()
            assert [link.splitlines()[-1] for link in links] == [
                "Predict",
                "Find",
                "Categories",
                "Model",
                "Population",
                "Monitoring",
            ]
            assert page.url.startswith(f"{base}/{path.split('?')[0]}")
            no_exceptions(page)
        finally:
            page.close()


def test_training_goes_on_when_the_analyst_leaves_the_page(trained_demo, tmp_path, browser):
    """Training started on a page runs on the server: leaving the page while it runs (a page's
    script stops when one leaves it) neither stops nor wastes it: every page's sidebar shows its
    progress, and so does the Model page in the button's place."""
    url, _ = trained_demo
    model_dir = tmp_path / "models"
    env = {"GENDER_DB_URL": url, "GENDER_MODEL_DIR": str(model_dir)}
    running = "so far; it goes on if you leave this page"
    with live.streamlit_server(env, tmp_path / "streamlit.log") as (base, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        try:
            page.goto(f"{base}/model")
            page.get_by_role("button", name="Train a model on this database").click(timeout=120_000)
            page.get_by_test_id("stMain").get_by_text(running).wait_for(timeout=60_000)
            page.get_by_role("link", name="Categories", exact=True).click()
            page.get_by_text("Count one category").wait_for(timeout=60_000)
            page.get_by_test_id("stSidebar").get_by_text(running).wait_for(timeout=60_000)  # on every page
            page.get_by_role("link", name="Model", exact=True).click()
            page.get_by_test_id("stMain").get_by_text(running).wait_for(timeout=60_000)  # in the button's place
            assert page.get_by_role("button", name="Train a model on this database").count() == 0
            page.get_by_text("was chosen among").wait_for(timeout=600_000)  # the page, once trained
            assert (model_dir / artifact.METADATA_FILE).is_file()
            no_exceptions(page)
        finally:
            page.close()


@pytest.mark.parametrize(
    "path, expected", [("categories?session=u10003", "Count one category"), ("model", "Candidates")]
)
def test_other_pages_render(server, page, path, expected):
    page.goto(f"{server}/{path}")
    settle(page)
    wait_for_charts(page, 2)
    assert expected in page.inner_text("body")
    no_exceptions(page)
    shoot(page, path.split("?")[0])


def test_no_page_asks_anything_of_another_host(server, page):
    """A shop may run the dashboard with no internet, and its visitors' logs must not leak: every
    request of every page goes to the server itself (a material-icon favicon once came from Google)."""
    elsewhere = []

    def note(request):
        url = request.url.removeprefix("blob:")  # a blob of the page's own origin is local
        if not (url.startswith(server) or url.startswith("data:")):
            elsewhere.append(request.url)

    page.on("request", note)
    for path in ["?session=u10003", "find", "categories?session=u10003", "model", "population", "monitoring"]:
        page.goto(f"{server}/{path}")
        settle(page)
        no_exceptions(page)
    assert sorted(set(elsewhere)) == []


def test_monitoring_page_shows_what_was_served(server, page, trained_demo):
    session_id = db.random_session_id(db.connect(trained_demo[0]), labelled=False)
    page.goto(f"{server}/?session={session_id}")  # serving it writes the prediction log
    settle(page)
    page.wait_for_selector(".js-plotly-plot .waterfalllayer .trace", timeout=60_000)
    page.goto(f"{server}/monitoring")
    settle(page)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    body = page.inner_text("body")
    assert "Predictions per day" in body and "Right or wrong, per group" in body
    no_exceptions(page)
    shoot(page, "monitoring")


def test_charts_are_drawn_by_the_plotly_js_served_from_static(server, page):
    """ui.chart: the plotly.js of the plotly package from /app/static/ (kept compiled by the
    browser), never Streamlit's own plotly chunk; a chart follows its container's width and is
    drawn again when its figure changes."""
    responses = []
    page.on("response", lambda response: responses.append((response.url, response.status)))
    page.goto(f"{server}/model")
    settle(page)
    page.wait_for_selector(".js-plotly-plot .heatmaplayer", timeout=60_000)
    script = f"{server}/app/static/plotly-{plotly.offline.get_plotlyjs_version()}.min.js"
    assert (script, 200) in responses
    assert not [url for url, _ in responses if "PlotlyChart" in url]
    with urllib.request.urlopen(script) as served:  # dated long ago: browsers reuse it without asking
        assert served.headers["Last-Modified"] == "Sat, 01 Jan 2000 00:00:00 GMT"
        assert served.read().decode() == plotly.offline.get_plotlyjs()
    wait_for_charts(page, 3)  # confusion matrix, ROC, PR
    assert page.locator(".js-plotly-plot").count() == 3

    confusion = page.locator(".js-plotly-plot").first
    cells = confusion.locator(".heatmaplayer").text_content()
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(100):  # 0.1 in the slider's 0.001 steps
        slider.press("ArrowRight")
    settle(page)
    page.wait_for_function(
        "cells => document.querySelector('.js-plotly-plot .heatmaplayer').textContent !== cells", arg=cells
    )

    def svg_width():
        return confusion.locator(".main-svg").first.bounding_box()["width"]

    wide = svg_width()
    page.set_viewport_size({"width": 1000, "height": 2400})
    # Narrower, then the container's width exactly: the resize may come in steps (the columns,
    # then the chart), each redrawn; the timeout only ends a hang.
    page.wait_for_function(
        """wide => {
            const chart = document.querySelector('.js-plotly-plot');
            const width = chart.querySelector('.main-svg').getBoundingClientRect().width;
            return width < wide - 100 && width === chart.parentElement.getBoundingClientRect().width;
        }""",
        arg=wide,
        timeout=30_000,
    )
    assert svg_width() == confusion.locator("xpath=..").bounding_box()["width"]  # the container's, exactly
    no_exceptions(page)


# Whether any part of an element's text is cut off (Streamlit ends a cut label with an ellipsis).
CUT = "e => [e, ...e.querySelectorAll('*')].some(part => part.scrollWidth > part.clientWidth + 1)"
BOX = """selector => {
    const box = document.querySelector(selector).getBoundingClientRect();
    return [box.left, box.top, box.right, box.bottom];
}"""


@pytest.mark.parametrize("width", [800, 1400])
def test_beside_the_sidebar_of_a_narrow_screen_charts_stack_and_no_label_is_cut(server, browser, width):
    """An 800-pixel screen leaves ~470 pixels beside the open sidebar: two charts side by side got
    230 pixels each, and fixed columns cut buttons' labels and the training facts' values."""
    page = browser.new_page(viewport={"width": width, "height": 2400})
    try:
        page.goto(f"{server}/model")
        settle(page)
        wait_for_charts(page, 3)
        (roc_left, roc_top, roc_right, roc_bottom), (pr_left, pr_top, _, _) = (
            page.evaluate(BOX, f".st-key-curves_row_{n}") for n in (1, 2)
        )
        if width == 800:
            assert pr_top >= roc_bottom and roc_right - roc_left >= 380  # stacked, each full width
        else:
            assert pr_top == roc_top and pr_left >= roc_right  # side by side
        facts = page.locator(".st-key-training_facts [data-testid=stMetricValue]")
        assert facts.count() == 5
        assert not [facts.nth(n).inner_text() for n in range(5) if facts.nth(n).evaluate(CUT)]
        if width == 1400:  # every column of every table in sight: the per-fold ROC-AUCs and the runs' last were cut
            tables = page.locator("[data-testid=stDataFrame] .dvn-scroller")
            assert tables.count() == 4  # candidates, served models, library versions, training runs
            assert not [n for n in range(4) if tables.nth(n).evaluate(CUT)]

        page.goto(f"{server}/?session=u10003")
        settle(page)
        # .first: Streamlit 1.67 draws a button twice, the second hidden (it measures the label)
        assert not page.locator(".st-key-session_id_unknown button").first.evaluate(CUT)
        page.get_by_text("What if… edit this session").click()
        settle(page)
        for kind in ("up", "down", "remove"):
            assert not page.locator(f".st-key-whatif_{kind}_0 button").first.evaluate(CUT), kind
        no_exceptions(page)
        shoot(page, f"whatif-{width}")
    finally:
        page.close()


# Each drawn chart of horizontal bars: its width, its plot area's, its y labels and how many of
# them the chart's edge cuts.
BAR_CHARTS = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .filter(chart => chart._fullData?.some(trace => trace.type === 'bar' && trace.orientation === 'h'))
    .map(chart => {
        const left = chart.querySelector('.main-svg').getBoundingClientRect().left;
        const labels = [...chart.querySelectorAll('.ytick text')];
        return {
            width: chart._fullLayout.width,
            container: chart.clientWidth,
            bars: chart._fullLayout._size.w,
            labels: labels.map(label => label.textContent),
            cut: labels.filter(label => label.getBoundingClientRect().left < left - 1).length,
        };
    })"""


def test_on_a_phone_bars_keep_room_beside_long_labels(server, browser):
    """Population's feature charts on a 390-pixel phone: labels of ~7 px a character had a margin
    that took nearly the whole chart, leaving the bars a sliver. The labels are cut to fit, not the
    bars; a wider chart shows more of them."""
    page = browser.new_page(viewport={"width": 390, "height": 2400})
    try:
        page.goto(f"{server}/population")
        settle(page)
        wait_for_charts(page, 5)  # groups, features, dependence, the cohorts' two
        # Drawn at their containers' widths: a chart may first be drawn before its columns stack
        page.wait_for_function(f"({BAR_CHARTS})().every(chart => chart.width === chart.container)", timeout=30_000)
        charts = page.evaluate(BAR_CHARTS)
        assert len(charts) == 4  # every chart of the page but the dependence
        for chart in charts:
            assert chart["bars"] >= 0.4 * chart["width"], chart  # the margin's half, less the right margin
            assert chart["cut"] == 0, chart
        assert any(label.endswith("…") for chart in charts for label in chart["labels"])  # long ones were cut
        shoot(page, "population-390")

        page.set_viewport_size({"width": 1400, "height": 2400})  # the same charts, resized: longer labels
        page.wait_for_function(
            f"widths => ({BAR_CHARTS})().every((c, n) => c.width > widths[n] && c.width === c.container)",
            arg=[chart["width"] for chart in charts],
            timeout=30_000,
        )
        wide = page.evaluate(BAR_CHARTS)
        assert [chart["cut"] for chart in wide] == [0, 0, 0, 0]
        longest = [max(len(label) for chart in shown for label in chart["labels"]) for shown in (charts, wide)]
        assert longest[1] > longest[0]
        no_exceptions(page)
    finally:
        page.close()


def test_a_chart_whose_plotly_js_does_not_load_says_so(server, page):
    page.route("**/app/static/plotly-*", lambda route: route.abort())
    page.goto(f"{server}/model")
    settle(page)
    page.wait_for_selector(".gender-chart", timeout=60_000)
    page.wait_for_function("() => document.querySelector('.gender-chart').textContent.includes('could not be drawn')")
    message = page.locator(".gender-chart").first.inner_text()
    assert message.startswith("The chart could not be drawn: plotly.js did not load from /app/static/plotly-")
    assert "Candidates" in page.inner_text("body")  # the rest of the page is there
    no_exceptions(page)
