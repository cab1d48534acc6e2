"""Plotly figures for the dashboard: each takes plain data and returns a figure, nothing else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
import plotly.io as pio

from gender.answers import Prediction
from gender.card import CandidateResult
from gender.explain import Explanation, Group
from gender.features import WEEKDAY_NAMES

MALE, FEMALE, UNKNOWN = "#2b6cb0", "#d53f8c", "#a0aec0"
GENDER_COLOURS = {"male": MALE, "female": FEMALE, "unknown": UNKNOWN}
UP, DOWN = MALE, FEMALE  # towards male, towards female
AB_COLOURS = {"treatment": UP, "control": "#718096"}
INK = "black"  # a mark to read as the text is: a threshold, a mean
NEUTRAL = "#f7fafc"  # no lean either way: the middle of a diverging scale
BAND = "#edf2f7"  # a range shaded behind a bar
TOTAL, CONNECTOR = "#4a5568", "#cbd5e0"  # a waterfall's start and end bars, the lines between its bars
COHORT_COLOURS = ("#2c7a7b", "#dd6b20")  # cohort a, cohort b: neither male's blue nor female's pink
ONE_HOT = "#805ad5"  # hour and weekday as one-hot columns, beside their number
CANDIDATE_COLOURS = plotly.colors.qualitative.Plotly  # the n-th candidate's colour in the ROC and the PR chart alike
# Margins with room for the axis labels and a legend on top: plotly widens margins that are too
# small for what they hold, but only by drawing the chart twice (half of a chart's drawing time).
MARGIN = {"l": 90, "r": 30, "t": 65, "b": 85}
HIERARCHY_MARGIN = {"l": 10, "r": 130, "t": 50, "b": 10}  # no axes; room for the colour bar
# Which way is which, under an axis: short enough to stay inside a phone's chart, where a
# sentence ("right towards male, left towards female") centred under the plot ran off its edge.
TOWARDS = "← towards female · towards male →"
READABLE_TEXT = {"minsize": 12, "mode": "hide"}  # a slice too small for a readable label: none (hover tells)
LAYOUT = {"margin": MARGIN, "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0}}
# Every figure's template: set once as the default, it is applied without validation; set on each
# figure, it was validated and copied every time (25 ms of the server's time per chart).
pio.templates.default = "plotly_white"
# The figures are drawn for a light page. On a dark one the browser (chart.js) swaps each colour
# named here for its counterpart, where a name --st-… is the page's own colour of that name (the
# viewer switches theme in the browser, and no rerun tells Python): the template's background, text
# and grid become the page's; ours that would not read on a dark page, lighter or darker ones.
# Every other colour reads on both.
ON_DARK = {
    "white": "--st-background-color",  # plotly_white's background, and the outlines of its bars
    "#2a3f5f": "--st-text-color",  # plotly_white's text
    "#ebf0f8": "--st-dataframe-border-color",  # plotly_white's grid: as faint as a table's rules
    MALE: "--st-primary-color",  # the brand's blue, lightened by the dark theme to read there
    INK: "--st-text-color",
    NEUTRAL: "--st-secondary-background-color",  # as near the background as on a light page
    BAND: "--st-secondary-background-color",
    TOTAL: "#a0aec0",
    CONNECTOR: "#4a5568",
    COHORT_COLOURS[0]: "#38b2ac",
    ONE_HOT: "#9f7aea",
}


def _laid_out(figure: go.Figure, **layout) -> go.Figure:
    """The shared layout, then this figure's own."""
    return figure.update_layout(**{**LAYOUT, **layout})


def p_male_bar(prediction: Prediction, base_rate: float) -> go.Figure:
    """A served P(male) on a 0-1 scale, in its answer's colour, with the base rate and the threshold marked."""
    p_male, threshold = prediction.p_male, prediction.threshold
    figure = go.Figure(
        go.Indicator(
            mode="number+gauge",
            value=p_male,
            number={"valueformat": ".0%"},
            gauge={
                "shape": "bullet",
                "axis": {"range": [0, 1], "tickformat": ".0%"},
                "bar": {"color": MALE if prediction.prediction == "male" else FEMALE},
                "steps": [{"range": [0, base_rate], "color": BAND}],
                "threshold": {"line": {"color": INK, "width": 3}, "value": threshold},
            },
        )
    )
    figure.add_annotation(
        x=0,
        y=1.25,
        xref="paper",
        yref="paper",
        showarrow=False,
        xanchor="left",
        text=f"grey band: base rate {base_rate:.0%} · thick line: threshold {threshold:.0%}",  # black or white by theme
    )
    return _laid_out(figure, height=165, margin={"l": 15, "r": 15, "t": 40, "b": 35})  # room for the tick labels


def plotly_text(text: str, limit: int | None = None) -> str:
    """User text (a code, a label) as plotly shows it literally: cut to `limit` characters, and
    "&", "<", ">" as entities, so "<b>" or "<a href=…>" in a code is never read as plotly's markup."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


GROUP_BAR_LABEL = 48  # characters of a group's name on its bar (a code may have 255)
GROUP_HOVER_PARTS = 5  # a group's largest parts listed when hovering its bar
WATERFALL_TEXT_ROOM = 0.2  # of the bars' span, each side: room for a value written beyond its bar


def group_bar_labels(groups: list[Group]) -> list[str]:
    """Each group's bar label: its name cut short and escaped for plotly, made unique (plotly
    draws bars of the same label as one), never "typical session" or "this session"."""
    labels, taken = [], {"typical session", "this session"}
    for group in groups:
        label = plotly_text(group.name, GROUP_BAR_LABEL)
        while label in taken:  # two long codes cut to the same text
            label += "\u200b"  # an invisible zero-width space
        taken.add(label)
        labels.append(label)
    return labels


def hundredths(value: float, sign: str = "") -> str:
    """A value to two decimals, never "-0.00": a forest's P(male) of 0 sums to -1e-17 in floats."""
    return f"{round(value, 2) + 0.0:{sign}.2f}"  # -0.0 + 0.0 is 0.0


def push(value: float) -> str:
    """A waterfall bar's push, signed: to two decimals, or to three where two would read "+0.00"
    beside a bar coloured for its direction (-0.004, drawn pink, read "+0.00")."""
    return f"{value:+.3f}" if 0.0005 <= abs(value) < 0.005 else hundredths(value, "+")


def grouped_waterfall(explanation: Explanation, groups: list[Group]) -> go.Figure:
    """From the typical session's output, the session's story group by group (`explain.grouped`),
    to this session's: each bar a group, its largest parts named when hovered."""
    labels = ["typical session", *group_bar_labels(groups), "this session"]
    shaps = [group.shap for group in groups]
    hover = [f"typical session: {explanation.base_value:+.3f}"]
    for group in groups:
        parts = group.parts.head(GROUP_HOVER_PARTS)
        lines = [f"{plotly_text(label, 60)}: {shap:+.3f}" for label, shap in zip(parts["label"], parts["shap"])]
        if len(group.parts) > GROUP_HOVER_PARTS:
            lines.append(f"… and {len(group.parts) - GROUP_HOVER_PARTS} more")
        hover.append(f"<b>{plotly_text(group.name, 80)}</b>: {group.shap:+.3f}<br>" + "<br>".join(lines))
    hover.append(f"this session: {explanation.output:+.3f}")
    figure = go.Figure(
        go.Waterfall(
            orientation="h",
            y=labels,
            x=[explanation.base_value, *shaps, 0],
            measure=["absolute", *["relative"] * len(groups), "total"],
            text=[
                hundredths(explanation.base_value),
                *[push(v) for v in shaps],
                hundredths(explanation.output),
            ],
            textposition="outside",
            cliponaxis=False,
            hovertext=hover,
            hoverinfo="text",
            increasing={"marker": {"color": UP}},
            decreasing={"marker": {"color": DOWN}},
            totals={"marker": {"color": TOTAL}},
            connector={"line": {"color": CONNECTOR}},
        )
    )
    figure.update_yaxes(autorange="reversed")  # read top to bottom, like the sum
    figure.update_xaxes(
        title=f"{explanation.units} of male<br>{TOWARDS}", range=waterfall_range(explanation.base_value, shaps)
    )
    return _laid_out(figure, height=140 + 30 * len(labels), showlegend=False)


def waterfall_range(base_value: float, shaps: list[float]) -> list[float]:
    """The x range of a waterfall from `base_value` by `shaps`: every bar's end, and room beyond the
    outermost for its value written outside (plotly's own range ends at the bar, so a narrow
    chart wrote a leftmost value over the row names)."""
    ends = np.cumsum([base_value, *shaps])
    low, high = min(0.0, float(ends.min())), max(0.0, float(ends.max()))
    room = WATERFALL_TEXT_ROOM * ((high - low) or 1.0)
    return [low - room, high + room]


def hierarchy_sunburst(rows: pd.DataFrame) -> go.Figure:
    """The session's category tree: size = how much a branch moved the answer, colour = which way."""
    limit = float(rows["net"].abs().max() or 1.0)
    figure = go.Figure(
        go.Sunburst(
            ids=rows["id"],
            labels=rows["label"].map(plotly_text),  # codes as text, never plotly's markup
            parents=rows["parent"],
            values=rows["weight"],
            branchvalues="total",
            marker={
                "colors": rows["net"],
                "colorscale": [[0, DOWN], [0.5, NEUTRAL], [1, UP]],
                "cmin": -limit,
                "cmax": limit,
                "showscale": True,
                "colorbar": {"title": "towards<br>male"},
            },
            customdata=rows[["net", "own"]].to_numpy(),
            hovertemplate="%{label}<br>net %{customdata[0]:+.3f}<br>own %{customdata[1]:+.3f}<extra></extra>",
        )
    )
    return _laid_out(figure, height=460, margin=HIERARCHY_MARGIN, uniformtext=READABLE_TEXT)


def category_by_gender(shares: pd.DataFrame, top: int) -> go.Figure:
    """Views per category split by gender, with the male share of the labelled views as a line."""
    shares = shares.head(top)
    codes = [plotly_text(str(code)) for code in shares.index]  # as text, never plotly's markup
    figure = go.Figure()
    for gender in ("female", "male", "unknown"):
        if gender in shares:
            figure.add_bar(x=codes, y=shares[gender], name=gender, marker_color=GENDER_COLOURS[gender])
    figure.add_scatter(
        x=codes,
        y=shares["male_share"],
        name="male share (labelled)",
        yaxis="y2",
        mode="lines+markers",
        line={"color": INK},
    )
    return _laid_out(
        figure,
        barmode="stack",
        height=420,
        margin={**MARGIN, "r": 90},  # the second axis
        yaxis={"title": "views"},
        yaxis2={  # a little above 100 %, so that a category of men only keeps its whole marker
            "title": "male share",
            "overlaying": "y",
            "side": "right",
            "tickformat": ".0%",
            "range": [0, 1.05],
            "tickvals": [0, 0.25, 0.5, 0.75, 1],
        },
    )


TREEMAP_ROOT = "\x1e"  # the root's id: never a node's (codes joined by JOIN, \x1f)


def category_treemap(tree: pd.DataFrame, base_rate: float) -> go.Figure:
    """The catalogue A → B → C sized by views, coloured by the male share of its labelled views
    (NEUTRAL at `base_rate`, the whole catalogue's: `explore.male_view_share`). Several top nodes
    hang from a root of their own, NEUTRAL: plotly's own root for them took no colour from the scale
    and framed the chart in dark grey."""
    top = tree["parent"] == ""
    if top.sum() > 1:
        root = {"id": TREEMAP_ROOT, "parent": "", "label": "", "views": tree.loc[top, "views"].sum()}
        tree = pd.concat(
            [
                pd.DataFrame([root | {"male_share": base_rate}]),
                tree.assign(parent=tree["parent"].mask(top, TREEMAP_ROOT)),
            ],
            ignore_index=True,
        )
    figure = go.Figure(
        go.Treemap(
            ids=tree["id"],
            parents=tree["parent"],
            labels=tree["label"].map(plotly_text),  # codes as text, never plotly's markup
            values=tree["views"],
            branchvalues="total",
            marker={
                "colors": tree["male_share"].fillna(base_rate),
                "colorscale": [[0, FEMALE], [base_rate, NEUTRAL], [1, MALE]],
                "cmin": 0,
                "cmax": 1,
                "showscale": True,
                "colorbar": {"title": "male share", "tickformat": ".0%"},
            },
            customdata=tree["male_share"],
            hovertemplate="%{label}<br>%{value:,} views<br>male share %{customdata:.0%}<extra></extra>",
        )
    )
    return _laid_out(figure, height=560, margin=HIERARCHY_MARGIN, uniformtext=READABLE_TEXT)


def activity_by_hour(activity: pd.DataFrame) -> go.Figure:
    """Share of each gender's sessions started in each hour of the day."""
    by_hour = _shares_of_gender(activity, "hour")
    figure = go.Figure()
    for gender, part in by_hour.groupby("gender"):
        figure.add_scatter(
            x=part["hour"], y=part["share"], name=gender, mode="lines+markers", line_color=GENDER_COLOURS[gender]
        )
    figure.update_xaxes(title="hour")
    figure.update_yaxes(tickformat=".0%", title="share of the gender's sessions")
    return _laid_out(figure, height=340)


def activity_by_weekday(activity: pd.DataFrame) -> go.Figure:
    """Share of each gender's sessions started on each day of the week."""
    by_day = _shares_of_gender(activity.assign(weekday=activity["date"].dt.day_of_week), "weekday")
    figure = go.Figure()
    for gender, part in by_day.groupby("gender"):
        names = [WEEKDAY_NAMES[i][:3] for i in part["weekday"]]
        figure.add_bar(x=names, y=part["share"], name=gender, marker_color=GENDER_COLOURS[gender])
    figure.update_xaxes(categoryorder="array", categoryarray=[w[:3] for w in WEEKDAY_NAMES])
    figure.update_yaxes(tickformat=".0%", title="share of the gender's sessions")
    return _laid_out(figure, height=340, barmode="group")


def _shares_of_gender(activity: pd.DataFrame, by: str) -> pd.DataFrame:
    """Sessions per gender and `by`, with each gender's share in each value of `by`."""
    counted = activity.groupby(["gender", by])["sessions"].sum().reset_index()
    counted["share"] = counted["sessions"] / counted.groupby("gender")["sessions"].transform("sum")
    return counted


def sessions_per_day(activity: pd.DataFrame) -> go.Figure:
    """Sessions started per day, stacked by gender."""
    per_day = activity.groupby(["gender", "date"])["sessions"].sum().reset_index()
    figure = go.Figure()
    for gender, part in per_day.groupby("gender"):
        figure.add_scatter(
            x=part["date"], y=part["sessions"], name=gender, stackgroup="all", line_color=GENDER_COLOURS[gender]
        )
    figure.update_xaxes(title="date")
    figure.update_yaxes(title="sessions")
    return _laid_out(figure, height=340)


def roc_curves(candidates: dict[str, CandidateResult], chosen: str, threshold: float | None = None) -> go.Figure:
    """Out-of-fold ROC curve of every candidate, AUC ± std in the legend; the threshold marked."""
    figure = go.Figure()
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#a0aec0"}, name="chance")
    for (name, result), colour in zip(candidates.items(), CANDIDATE_COLOURS):
        figure.add_scatter(
            x=result.roc.fpr,
            y=result.roc.tpr,
            mode="lines",
            line={"width": 3 if name == chosen else 1.5, "color": colour},
            name=f"{name}: {result.auc_mean:.3f} ± {result.auc_std:.3f}" + (" (chosen)" if name == chosen else ""),
        )
    if threshold is not None:
        roc = candidates[chosen].roc
        index = roc.index(threshold)
        x, y = roc.fpr[index], roc.tpr[index]
        figure.add_scatter(
            x=[x],
            y=[y],
            mode="markers",
            marker={"size": 12, "color": INK, "symbol": "x"},
            name=f"threshold {threshold:.3f}",
        )
    figure.update_xaxes(title="false positive rate (women called men)", range=[0, 1])
    figure.update_yaxes(title="true positive rate (men found)", range=[0, 1.01])
    return _laid_out(figure, height=480, legend={"x": 0.45, "y": 0.05})


def pr_curves(candidates: dict[str, CandidateResult], chosen: str, base_rate: float) -> go.Figure:
    figure = go.Figure()
    figure.add_hline(
        y=base_rate,
        line_dash="dot",
        line_color="#a0aec0",
        annotation_text=f"base rate {base_rate:.0%}",
        # on the left, under the line: every curve ends on the right at the base rate, over a label there
        annotation_position="bottom left",
    )
    for (name, result), colour in zip(candidates.items(), CANDIDATE_COLOURS):
        figure.add_scatter(
            x=result.pr.recall,
            y=result.pr.precision,
            mode="lines",
            name=name,
            line={"width": 3 if name == chosen else 1.5, "color": colour},
        )
    figure.update_xaxes(title="recall (men found)", range=[0, 1])
    figure.update_yaxes(title="precision (men among those called men)", range=[0, 1.01])
    return _laid_out(figure, height=420)


def confusion_heatmap(tn: int, fp: int, fn: int, tp: int) -> go.Figure:
    z = [[tn, fp], [fn, tp]]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=["called female", "called male"],
            y=["female", "male"],
            text=[[f"{v:,}" for v in row] for row in z],
            texttemplate="%{text}",
            colorscale=[[0, NEUTRAL], [1, MALE]],  # few to many: "Blues" put white cells on a dark page
            showscale=False,
        )
    )
    figure.update_yaxes(autorange="reversed", title="true gender")
    return _laid_out(figure, height=300)


def predictions_per_day(daily: pd.DataFrame) -> go.Figure:
    """Predictions served per day, a bar per A/B group."""
    figure = go.Figure()
    for group, part in daily.groupby("ab_group"):
        figure.add_bar(x=part["date"], y=part["predictions"], name=group, marker_color=AB_COLOURS.get(group))
    figure.update_xaxes(tickformat="%b %d", dtick=86_400_000)  # one tick per day, no clock time
    # Whole predictions: with a few a day, plotly's own ticks read "0.5 predictions".
    few = daily.empty or daily["predictions"].max() <= 5
    figure.update_yaxes(title="predictions", tickformat=",d", dtick=1 if few else None)
    return _laid_out(figure, height=320, barmode="group", legend_title_text="group")


def score_distributions(trained, served) -> go.Figure:
    """P(male) out of fold at training against P(male) served, as overlaid densities."""
    figure = go.Figure()
    figure.add_histogram(
        x=trained,
        name="at training (out of fold)",
        histnorm="probability density",
        opacity=0.55,
        xbins={"start": 0, "end": 1, "size": 0.05},
        marker_color="#718096",
    )
    figure.add_histogram(
        x=served,
        name="served",
        histnorm="probability density",
        opacity=0.55,
        xbins={"start": 0, "end": 1, "size": 0.05},
        marker_color=UP,
    )
    figure.update_xaxes(title="P(male)", range=[0, 1])
    figure.update_yaxes(title="density (each area sums to 1)")
    return _laid_out(figure, barmode="overlay", height=300)


# -- the whole population (gender/population.py): SHAP over a sample of sessions ----------------

POPULATION_LABEL = 60  # characters of a feature's label on its bar


def _unique_plotly_labels(texts, limit: int = POPULATION_LABEL) -> list[str]:
    """Labels cut short and escaped for plotly, made unique (plotly draws bars of one label as one)."""
    labels, taken = [], set()
    for text in texts:
        label = plotly_text(str(text), limit)
        while label in taken:
            label += "\u200b"  # an invisible zero-width space
        taken.add(label)
        labels.append(label)
    return labels


def _label_margin(labels: list[str]) -> dict:
    """Margins with room on the left for horizontal bars' labels (about 7 px a character)."""
    longest = max((len(label.strip("\u200b")) for label in labels), default=10)
    return {**MARGIN, "l": min(440, 20 + 7 * longest)}


def population_importance(importance: pd.DataFrame, units: str, top: int = 20) -> go.Figure:
    """The `top` features by mean |SHAP| over the sample, largest on top, each bar coloured by
    the way it pushes on average (mean SHAP: blue towards male, pink towards female)."""
    rows = importance.head(top)
    labels = _unique_plotly_labels(rows["label"])
    hover = [
        f"<b>{label}</b><br>{plotly_text(str(group))}<br>mean |SHAP| {mean_abs:.4f}<br>mean SHAP {mean:+.4f}"
        f"<br>corr(value, SHAP) {'n/a' if pd.isna(corr) else f'{corr:+.2f}'}<br>contributes in {sessions:,} sessions"
        for label, group, mean_abs, mean, corr, sessions in zip(
            labels, rows["group"], rows["mean_abs"], rows["mean"], rows["corr"], rows["sessions"]
        )
    ]
    figure = go.Figure(
        go.Bar(
            x=rows["mean_abs"],
            y=labels,
            orientation="h",
            marker_color=[UP if mean > 0 else DOWN for mean in rows["mean"]],
            hovertext=hover,
            hoverinfo="text",
        )
    )
    figure.update_yaxes(autorange="reversed")
    figure.update_xaxes(title=f"mean |SHAP| ({units})")
    # The colour key from the chart's left edge: centred under a plot set right of long labels, as
    # the axis title, it ran off the chart ("pink: fe") even on two lines.
    title = dict(
        text="blue: towards male on average · pink: towards female",
        font={"size": 13},
        x=0,
        xref="container",
        xanchor="left",
        y=0.99,
        yref="container",
        yanchor="top",
    )
    return _laid_out(figure, height=120 + 24 * len(rows), showlegend=False, margin=_label_margin(labels), title=title)


def population_groups(groups: pd.DataFrame, units: str) -> go.Figure:
    """Per kind and level: the mean |SHAP| of its features summed (coloured by its mean SHAP's
    sign) and, beside it, the mean |kind's contributions summed| per session."""
    labels = _unique_plotly_labels(groups["group"])
    figure = go.Figure()
    figure.add_bar(
        x=groups["mean_abs"],
        y=labels,
        orientation="h",
        name="features' mean |SHAP| summed",
        marker_color=[UP if mean > 0 else DOWN for mean in groups["mean"]],
        customdata=groups[["mean", "features"]].to_numpy(),
        hovertemplate="%{y}<br>features' mean |SHAP| summed %{x:.4f}<br>mean SHAP summed %{customdata[0]:+.4f}"
        "<br>%{customdata[1]:,} features<extra></extra>",
    )
    figure.add_bar(
        x=groups["net_abs"],
        y=labels,
        orientation="h",
        name="mean |summed per session|",
        marker_color="#a0aec0",
        hovertemplate="%{y}<br>mean over sessions of |its contributions summed| %{x:.4f}<extra></extra>",
    )
    figure.update_yaxes(autorange="reversed")
    figure.update_xaxes(title=f"{units}")
    return _laid_out(figure, barmode="group", height=160 + 44 * len(groups), margin=_label_margin(labels))


def population_dependence(dependence: pd.DataFrame, title: str, units: str, one_hot: str | None = None) -> go.Figure:
    """A session number's contribution against its value, one point per sampled session: the
    number feature's SHAP and, for hour and weekday (`one_hot` names them), the summed one-hot
    contributions; integers are jittered a little so that the points of one value spread."""
    import numpy as np

    values = dependence["value"].to_numpy(dtype=float)
    discrete = one_hot is not None
    # integers: each trace's points spread over its own side of the value, so both stay visible
    jitter = np.random.default_rng(0).uniform(0.04, 0.3, len(values)) if discrete else np.zeros(len(values))
    figure = go.Figure()
    # The number's own label names it ("start hour (number)"): a suffix here read "(number) (number)".
    traces = [("number", title, UP, -1), ("one_hot", f"{one_hot} (one-hot, summed)", ONE_HOT, 1)]
    for column, name, colour, side in traces:
        if column == "one_hot" and not discrete:
            continue
        shap_values = dependence[column].to_numpy(dtype=float)
        if np.isnan(shap_values).all():
            continue
        figure.add_scatter(
            x=values + side * jitter,
            y=shap_values,
            mode="markers",
            name=name,
            marker={"color": colour, "size": 5, "opacity": 0.45},
            hovertemplate=f"{plotly_text(name)}<br>value %{{customdata:g}}<br>SHAP %{{y:+.3f}}<extra></extra>",
            customdata=values,
        )
    if discrete and len(values):
        means = dependence.groupby("value")["total"].mean()
        figure.add_scatter(
            x=means.index,
            y=means.to_numpy(),
            mode="lines+markers",
            name="both together, mean per value",  # their sum: the value's whole push
            line={"color": INK, "width": 2},
        )
    figure.add_hline(y=0, line_color="#a0aec0", line_dash="dot")
    figure.update_yaxes(title=f"SHAP ({units})<br>{TOWARDS}")  # turned a quarter, → points up
    figure.update_xaxes(title=plotly_text(title))
    if title.startswith("start weekday"):
        figure.update_xaxes(tickvals=list(range(7)), ticktext=[w[:3] for w in WEEKDAY_NAMES])
    elif not discrete and len(values) and np.nanmax(values) > 50 * max(np.nanmedian(values), 1e-9):
        figure.update_xaxes(type="log")  # heavy-tailed: durations, seconds per view
    return _laid_out(figure, height=420)


def cohort_comparison(table: pd.DataFrame, label_column: str, name_a: str, name_b: str, units: str) -> go.Figure:
    """Two cohorts' mean contributions side by side, a pair of bars per row of `table` (columns
    `label_column`, mean_a, mean_b, difference), in the table's order."""
    labels = _unique_plotly_labels(table[label_column])
    figure = go.Figure()
    for column, name, colour in (("mean_a", name_a, COHORT_COLOURS[0]), ("mean_b", name_b, COHORT_COLOURS[1])):
        figure.add_bar(
            x=table[column],
            y=labels,
            orientation="h",
            name=plotly_text(name, 80),
            marker_color=colour,
            customdata=table["difference"],
            hovertemplate="%{y}<br>mean SHAP %{x:+.4f}<br>difference a − b %{customdata:+.4f}<extra></extra>",
        )
    figure.add_vline(x=0, line_color="#a0aec0")
    figure.update_yaxes(autorange="reversed")
    figure.update_xaxes(title=f"mean SHAP ({units})<br>{TOWARDS}")
    return _laid_out(figure, barmode="group", height=160 + 40 * len(table), margin=_label_margin(labels))
