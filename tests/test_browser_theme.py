"""The dashboard in a dark and a light theme, in Chromium: the page, its charts and the session
search follow the theme the viewer's system asks for (Playwright's colour scheme), and the app
menu switches it.

Screenshots land in tests/screenshots/ (gitignored).
"""

import re

import pytest

from tests import live
from tests.test_browser import no_exceptions, shoot, wait_for_charts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(trained_demo, tmp_path_factory):
    url, model_dir = trained_demo
    env = {"GENDER_DB_URL": url, "GENDER_MODEL_DIR": str(model_dir)}
    with live.streamlit_server(env, tmp_path_factory.mktemp("server") / "streamlit.log") as (base, _):
        yield base


def rgb(css: str) -> tuple[int, int, int]:
    """A colour as the browser or plotly gives it: rgb(…), rgba(…) or #rrggbb."""
    if css.startswith("#"):
        return tuple(int(css[i : i + 2], 16) for i in (1, 3, 5))
    return tuple(int(float(part)) for part in re.findall(r"[\d.]+", css)[:3])


def luminance(css: str) -> float:
    """WCAG's relative luminance: 0 for black, 1 for white."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in rgb(css))]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """WCAG's contrast ratio: 4.5 is enough for text, 3 for a bar or a line."""
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


# What the page and its charts look like, read from the browser: the app's background and text,
# each drawn chart's background (plotly paints it on its svg) and the colour of its axis' labels (a
# colour bar's title on the sunburst),
# the waterfall's colours for a push towards male and towards female, and the session search box.
LOOKS = """() => {
    const style = (element, property) => getComputedStyle(element)[property];
    const app = document.querySelector('[data-testid=stApp]');
    const charts = [...document.querySelectorAll('.js-plotly-plot')];
    const waterfall = charts.find(chart => chart.querySelector('.waterfalllayer'))._fullData[0];
    const box = document.querySelector('.gl-search-input');
    const list = document.querySelector('.gl-search-list');
    return {
        page: style(app, 'backgroundColor'),
        text: style(app, 'color'),
        charts: charts.map(chart => ({
            background: style(chart.querySelector('.main-svg'), 'backgroundColor'),
            label: style(chart.querySelector('.xtick text, .xbulletaxistick text, .cbtitle text'), 'fill'),
        })),
        pushes: [waterfall.increasing.marker.color, waterfall.decreasing.marker.color],
        box: {text: style(box, 'color'), background: style(box, 'backgroundColor')},
        suggestion: {
            text: style(list.querySelector('.gl-search-option'), 'color'),
            background: style(list, 'backgroundColor'),
        },
    };
}"""


# Every drawn chart (of three or more) on white: plotly paints the background on its first svg.
CHARTS_ON_WHITE = """() => {
    const svgs = [...document.querySelectorAll('.js-plotly-plot .svg-container > .main-svg:first-child')];
    return svgs.length >= 3 && svgs.every(svg => getComputedStyle(svg).backgroundColor === 'rgb(255, 255, 255)');
}"""


def open_predict_page(browser, server, scheme: str):
    """The Predict page of a session, in a browser whose system asks for `scheme`, with its charts
    drawn and the session search showing suggestions."""
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1400, "height": 2400})
    page = context.new_page()
    page.goto(f"{server}/?session=u10003")
    page.wait_for_selector(live.IDLE, timeout=120_000)
    page.wait_for_selector(".js-plotly-plot .waterfalllayer .trace", timeout=60_000)
    wait_for_charts(page, 3)  # P(male), the waterfall, the sunburst
    page.locator(".gl-search-input").fill("u100")
    page.wait_for_selector(".gl-search-option", timeout=60_000)
    return context, page


def test_a_dark_system_gets_a_dark_dashboard_charts_and_search_included(server, browser):
    context, page = open_predict_page(browser, server, "dark")
    try:
        looks = page.evaluate(LOOKS)
        assert luminance(looks["page"]) < 0.05 and contrast(looks["text"], looks["page"]) >= 7
        assert len(looks["charts"]) >= 3
        for chart in looks["charts"]:  # on the page's own background, never a white box, text readable
            assert rgb(chart["background"]) == rgb(looks["page"])
            assert contrast(chart["label"], chart["background"]) >= 4.5
        towards_male, towards_female = looks["pushes"]  # each reads on dark, and they differ
        assert contrast(towards_male, looks["page"]) >= 3 and contrast(towards_female, looks["page"]) >= 3
        assert rgb(towards_male) != rgb(towards_female)
        for part in (looks["box"], looks["suggestion"]):
            assert luminance(part["background"]) < 0.05 and contrast(part["text"], part["background"]) >= 7
        no_exceptions(page)
        shoot(page, "predict-dark")

        # The app menu switches to the light theme, and the charts are drawn again in it.
        page.get_by_test_id("stMainMenuButton").click()
        page.get_by_test_id("stMainMenuItem-theme-Light").click()
        page.wait_for_function(CHARTS_ON_WHITE)
        assert rgb(page.evaluate(LOOKS)["page"]) == (255, 255, 255)
    finally:
        context.close()


def test_a_light_system_gets_the_light_dashboard_as_before(server, browser):
    context, page = open_predict_page(browser, server, "light")
    try:
        looks = page.evaluate(LOOKS)
        assert rgb(looks["page"]) == (255, 255, 255) and rgb(looks["text"]) == rgb("#1a202c")
        for chart in looks["charts"]:  # plotly_white, as drawn before there was a dark theme
            assert rgb(chart["background"]) == (255, 255, 255) and rgb(chart["label"]) == rgb("#2a3f5f")
        assert [rgb(colour) for colour in looks["pushes"]] == [rgb("#2b6cb0"), rgb("#d53f8c")]
        assert rgb(looks["box"]["background"]) == rgb("#f4f6fa") and rgb(looks["box"]["text"]) == rgb("#1a202c")
        no_exceptions(page)
        shoot(page, "predict-light")
    finally:
        context.close()
