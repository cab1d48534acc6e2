"""Charts show category codes as text: plotly reads <b>, <br> and <a href> in labels and ticks as
its own markup, and a shop's codes are whatever it logs."""

import json

import pandas as pd
import plotly.offline

from gender import plots

CODES = ["A<b>1<i>", "B<br>2", '<a href="http://x">C</a>', "D & E"]
SHOWN = ["A&lt;b&gt;1&lt;i&gt;", "B&lt;br&gt;2", '&lt;a href="http://x"&gt;C&lt;/a&gt;', "D &amp; E"]


def test_category_codes_are_escaped_in_every_chart_that_draws_them():
    tree = pd.DataFrame(
        {"id": CODES, "parent": [""] * 4, "label": CODES, "views": [4, 3, 2, 1], "male_share": [0.1, 0.5, 1.0, None]}
    )
    treemap = plots.category_treemap(tree, 0.23).data[0]
    assert list(treemap.labels) == ["", *SHOWN]  # under a white root of its own, at the base rate
    assert (treemap.ids[0], treemap.marker.colors[0], treemap.values[0]) == (plots.TREEMAP_ROOT, 0.23, 10)
    assert list(treemap.parents) == ["", *[plots.TREEMAP_ROOT] * 4]

    shares = pd.DataFrame(
        {"female": [3, 2, 0, 1], "male": [1, 1, 2, 0], "male_share": [0.25, 1 / 3, 1.0, 0.0]}, index=CODES
    )
    figure = plots.category_by_gender(shares, top=10)
    assert all(list(trace.x) == SHOWN for trace in figure.data)

    rows = pd.DataFrame(
        {"id": CODES, "label": CODES, "parent": [""] * 4, "weight": [1.0] * 4, "net": [0.1, -0.1, 0.2, 0], "own": 0.0}
    )
    assert list(plots.hierarchy_sunburst(rows).data[0].labels) == SHOWN
    assert list(plots.hierarchy_sunburst(rows).data[0].ids) == CODES  # ids are not shown: kept as stored


def test_a_slice_too_small_for_a_readable_label_shows_none():
    """Plotly shrinks a label to fit its slice, down to an unreadable speck; these charts hide it."""
    tree = pd.DataFrame({"id": ["A"], "parent": [""], "label": ["A"], "views": [1], "male_share": [0.5]})
    rows = pd.DataFrame({"id": ["A"], "label": ["A"], "parent": [""], "weight": [1.0], "net": [0.1], "own": 0.0})
    for figure in (plots.category_treemap(tree, 0.23), plots.hierarchy_sunburst(rows)):
        assert (figure.layout.uniformtext.mode, figure.layout.uniformtext.minsize) == ("hide", 12)


def test_each_candidate_has_one_colour_in_the_roc_and_the_pr_chart(trained_demo):
    from gender import artifact

    card = artifact.load_card(trained_demo[1])
    chosen = card.chosen
    roc = {t.name.split(":")[0]: t.line.color for t in plots.roc_curves(card.candidates, chosen).data if ":" in t.name}
    pr = {t.name: t.line.color for t in plots.pr_curves(card.candidates, chosen, 0.23).data}
    assert roc == pr and set(roc) == set(card.candidates) and len(set(roc.values())) == len(roc)


def test_waterfall_values_are_never_minus_zero():
    """A forest's P(male) of 0 is the base value plus contributions: -1e-17 in floats, not "-0.00"."""
    assert [plots.hundredths(v) for v in (-1e-17, 0.004, 0.327, -0.006)] == ["0.00", "0.00", "0.33", "-0.01"]
    assert [plots.hundredths(v, "+") for v in (-1e-17, -0.0, 0.006, -0.006)] == ["+0.00", "+0.00", "+0.01", "-0.01"]
    # A bar's push keeps its sign where two decimals would not: its colour says which way it goes.
    assert [plots.push(v) for v in (-0.004, 0.0012, 0.0001, -1e-17, 0.327)] == [
        "-0.004",
        "+0.001",
        "+0.00",
        "+0.00",
        "+0.33",
    ]


def test_axis_titles_fit_under_a_phones_chart():
    """Centred under a plot set right of long labels, a sentence of a title ran off a 390-pixel
    chart ("pink: fe"): every line of these titles is short, and the colour key starts at the left."""
    importance = pd.DataFrame(
        {"label": ["view of A1", "view of B2"], "group": ["A views", "B views"], "mean_abs": [0.2, 0.1]}
    ).assign(mean=[0.1, -0.1], corr=[0.5, None], sessions=[10, 5])
    figure = plots.population_importance(importance, "log-odds")
    assert "pink: towards female" in figure.layout.title.text and figure.layout.title.xref == "container"
    cohorts = pd.DataFrame({"label": ["view of A1"], "mean_a": [0.1], "mean_b": [-0.1], "difference": [0.2]})
    titles = [
        figure.layout.xaxis.title.text,
        plots.cohort_comparison(cohorts, "label", "a", "b", "log-odds").layout.xaxis.title.text,
    ]
    assert all(len(line) <= 36 for title in titles for line in title.split("<br>"))
    assert plots.TOWARDS in titles[1]


def test_predictions_per_day_are_counted_in_whole_numbers():
    daily = pd.DataFrame({"date": pd.to_datetime(["2014-12-07"]), "ab_group": ["treatment"], "predictions": [1]})
    axis = plots.predictions_per_day(daily).layout.yaxis
    assert (axis.dtick, axis.tickformat) == (1, ",d")  # not 0, 0.5, 1
    many = daily.assign(predictions=[4000])
    assert plots.predictions_per_day(many).layout.yaxis.dtick is None  # plotly's own steps, whole numbers


def test_codes_that_look_like_numbers_are_each_a_bar_of_their_own(browser):
    """Drawn by plotly.js in Chromium. Its own default reads "7", "07" and "7.0" as one number, 7, on
    an axis of numbers; plotly_white, every figure's template, says `autotypenumbers: strict`."""
    codes = ["7", "07", "7.0"]
    shares = pd.DataFrame({"female": [3, 2, 1], "male": [1, 1, 2], "male_share": [0.25, 1 / 3, 2 / 3]}, index=codes)
    figure = json.loads(plots.category_by_gender(shares, top=10).to_json())
    page = browser.new_page()
    try:
        page.set_content("<div id=chart></div>")
        page.add_script_tag(content=plotly.offline.get_plotlyjs())
        drawn = page.evaluate(
            """figure => Plotly.newPlot('chart', figure.data, {...figure.layout, width: 800}).then(chart => ({
                type: chart._fullLayout.xaxis.type,
                ticks: [...chart.querySelectorAll('.xtick text')].map(tick => tick.textContent),
            }))""",
            figure,
        )
    finally:
        page.close()
    assert drawn == {"type": "category", "ticks": codes}
