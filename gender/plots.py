"""Plotly figures for the dashboard: each takes plain data and returns a figure, nothing else."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from gender.explain import Explanation, top_contributions
from gender.features import WEEKDAY_NAMES
from gender.metrics import roc_index

MALE, FEMALE, UNKNOWN = "#2b6cb0", "#d53f8c", "#a0aec0"
GENDER_COLOURS = {"male": MALE, "female": FEMALE, "unknown": UNKNOWN}
UP, DOWN = "#2b6cb0", "#d53f8c"  # towards male, towards female
AB_COLOURS = {"treatment": UP, "control": "#718096"}
# Margins with room for the axis labels and a legend on top: plotly widens margins that are too
# small for what they hold, but only by drawing the chart twice (half of a chart's drawing time).
MARGIN = {"l": 90, "r": 30, "t": 65, "b": 85}
HIERARCHY_MARGIN = {"l": 10, "r": 130, "t": 50, "b": 10}  # no axes; room for the colour bar
LAYOUT = {"margin": MARGIN, "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0}}
# Every figure's template: set once as the default, it is applied without validation; set on each
# figure, it was validated and copied every time (25 ms of the server's time per chart).
pio.templates.default = "plotly_white"


def _laid_out(figure: go.Figure, **layout) -> go.Figure:
    """The shared layout, then this figure's own."""
    return figure.update_layout(**{**LAYOUT, **layout})


def p_male_bar(p_male: float, base_rate: float, threshold: float) -> go.Figure:
    """P(male) on a 0-1 scale with the base rate and the threshold marked."""
    figure = go.Figure(
        go.Indicator(
            mode="number+gauge",
            value=p_male,
            number={"valueformat": ".0%"},
            gauge={
                "shape": "bullet",
                "axis": {"range": [0, 1], "tickformat": ".0%"},
                "bar": {"color": MALE if p_male >= threshold else FEMALE},
                "steps": [{"range": [0, base_rate], "color": "#edf2f7"}],
                "threshold": {"line": {"color": "black", "width": 3}, "value": threshold},
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
        text=f"grey band: base rate {base_rate:.0%} · black line: threshold {threshold:.0%}",
    )
    return _laid_out(figure, height=165, margin={"l": 15, "r": 15, "t": 40, "b": 35})  # room for the tick labels


def waterfall(explanation: Explanation, top: int = 12) -> go.Figure:
    """From the typical session's output, the largest contributions one by one, to this session's."""
    rows = top_contributions(explanation, top)
    labels = ["typical session", *rows["label"], "this session"]
    figure = go.Figure(
        go.Waterfall(
            orientation="h",
            y=labels,
            x=[explanation.base_value, *rows["shap"], 0],
            measure=["absolute", *["relative"] * len(rows), "total"],
            text=[f"{explanation.base_value:.2f}", *[f"{v:+.2f}" for v in rows["shap"]], f"{explanation.output:.2f}"],
            textposition="outside",
            cliponaxis=False,
            increasing={"marker": {"color": UP}},
            decreasing={"marker": {"color": DOWN}},
            totals={"marker": {"color": "#4a5568"}},
            connector={"line": {"color": "#cbd5e0"}},
        )
    )
    figure.update_yaxes(autorange="reversed")  # read top to bottom, like the sum
    figure.update_xaxes(title=f"{explanation.units} of male: right towards male, left towards female")
    return _laid_out(figure, height=140 + 26 * len(labels), showlegend=False)


def hierarchy_sunburst(rows: pd.DataFrame) -> go.Figure:
    """The session's category tree: size = how much a branch moved the answer, colour = which way."""
    limit = float(rows["net"].abs().max() or 1.0)
    figure = go.Figure(
        go.Sunburst(
            ids=rows["id"],
            labels=rows["label"],
            parents=rows["parent"],
            values=rows["weight"],
            branchvalues="total",
            marker={
                "colors": rows["net"],
                "colorscale": [[0, DOWN], [0.5, "#f7fafc"], [1, UP]],
                "cmin": -limit,
                "cmax": limit,
                "showscale": True,
                "colorbar": {"title": "towards<br>male"},
            },
            customdata=rows[["net", "own"]].to_numpy(),
            hovertemplate="%{label}<br>net %{customdata[0]:+.3f}<br>own %{customdata[1]:+.3f}<extra></extra>",
        )
    )
    return _laid_out(figure, height=460, margin=HIERARCHY_MARGIN)


def category_by_gender(shares: pd.DataFrame, top: int) -> go.Figure:
    """Views per category split by gender, with the male share of the labelled views as a line."""
    shares = shares.head(top)
    figure = go.Figure()
    for gender in ("female", "male", "unknown"):
        if gender in shares:
            figure.add_bar(x=shares.index, y=shares[gender], name=gender, marker_color=GENDER_COLOURS[gender])
    figure.add_scatter(
        x=shares.index,
        y=shares["male_share"],
        name="male share (labelled)",
        yaxis="y2",
        mode="lines+markers",
        line={"color": "black"},
    )
    return _laid_out(
        figure,
        barmode="stack",
        height=420,
        margin={**MARGIN, "r": 90},  # the second axis
        yaxis={"title": "views"},
        yaxis2={"title": "male share", "overlaying": "y", "side": "right", "tickformat": ".0%", "range": [0, 1]},
    )


def category_treemap(tree: pd.DataFrame, base_rate: float) -> go.Figure:
    """The catalogue A → B → C sized by views, coloured by the male share of its labelled views
    (white at the base rate)."""
    figure = go.Figure(
        go.Treemap(
            ids=tree["id"],
            parents=tree["parent"],
            labels=tree["label"],
            values=tree["views"],
            branchvalues="total",
            marker={
                "colors": tree["male_share"].fillna(base_rate),
                "colorscale": [[0, FEMALE], [base_rate, "#f7fafc"], [1, MALE]],
                "cmin": 0,
                "cmax": 1,
                "showscale": True,
                "colorbar": {"title": "male share", "tickformat": ".0%"},
            },
            customdata=tree["male_share"],
            hovertemplate="%{label}<br>%{value:,} views<br>male share %{customdata:.0%}<extra></extra>",
        )
    )
    return _laid_out(figure, height=560, margin=HIERARCHY_MARGIN)


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


def roc_curves(candidates: dict, chosen: str, threshold: float | None = None) -> go.Figure:
    """Out-of-fold ROC curve of every candidate, AUC ± std in the legend; the threshold marked."""
    figure = go.Figure()
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#a0aec0"}, name="chance")
    for name, result in candidates.items():
        roc = result["roc"]
        figure.add_scatter(
            x=roc["fpr"],
            y=roc["tpr"],
            mode="lines",
            line={"width": 3 if name == chosen else 1.5},
            name=f"{name}: {result['auc_mean']:.3f} ± {result['auc_std']:.3f}"
            + (" (chosen)" if name == chosen else ""),
        )
    if threshold is not None:
        roc = candidates[chosen]["roc"]
        index = roc_index(roc, threshold)
        x, y = roc["fpr"][index], roc["tpr"][index]
        figure.add_scatter(
            x=[x],
            y=[y],
            mode="markers",
            marker={"size": 12, "color": "black", "symbol": "x"},
            name=f"threshold {threshold:.3f}",
        )
    figure.update_xaxes(title="false positive rate (women called men)", range=[0, 1])
    figure.update_yaxes(title="true positive rate (men found)", range=[0, 1.01])
    return _laid_out(figure, height=480, legend={"x": 0.45, "y": 0.05})


def pr_curves(candidates: dict, chosen: str, base_rate: float) -> go.Figure:
    figure = go.Figure()
    figure.add_hline(y=base_rate, line_dash="dot", line_color="#a0aec0", annotation_text=f"base rate {base_rate:.0%}")
    for name, result in candidates.items():
        pr = result["pr"]
        figure.add_scatter(
            x=pr["recall"], y=pr["precision"], mode="lines", name=name, line={"width": 3 if name == chosen else 1.5}
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
            colorscale="Blues",
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
    figure.update_yaxes(title="predictions")
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
    return _laid_out(figure, barmode="overlay", height=300)
