"""One session's answer and explanation as a standalone HTML file, to take to a meeting.

The report holds what the Predict page shows of the served answer (the session's A/B group's
model, as `serve.serve` gives it): the answer (the original JSON with P(male), the threshold, the
model and the group), the session's views, the grouped waterfall with each group's parts, the
category sunburst and every contribution. Its charts are the page's own figures, from the same
functions of `gender.plots`, and stay interactive: plotly.js is embedded in the file, so it opens
without a server or a network (a Content-Security-Policy forbids any request). Every text that
comes from the data (ids, codes, labels) is HTML-escaped.

`as_json` is the same explanation as data (`python -m gender explain SESSION_ID --json`).
"""

from __future__ import annotations

import html as _html
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import plotly.offline

from gender import explain, files, plots
from gender.answers import IN_SAMPLE, beyond_training, duration_text, in_words
from gender.errors import GenderError
from gender.serve import Served
from gender.trained import Model

# No request of any kind leaves the file: scripts and styles are inline, images data: URLs.
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:"
CHART_CONFIG = {"responsive": True, "displaylogo": False}
CONTRIBUTION_COLUMNS = ("feature", "label", "value", "shap", "group")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a202c;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #e2e8f0; }
.muted { color: #718096; } .male { color: #2b6cb0; } .female { color: #d53f8c; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border-bottom: 1px solid #edf2f7; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { overflow-wrap: anywhere; max-width: 40em; }
pre { background: #f7fafc; padding: 0.8em; overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
details { margin: 0.2em 0; } summary { cursor: pointer; }
.chart { margin: 0.5em 0; }
.warning { background: #fffbeb; border-left: 4px solid #d69e2e; padding: 0.5em 0.8em; }
"""


# C0 control characters (but tab, line feed and carriage return) and DEL are not allowed in HTML
# and draw as empty boxes: each is shown as its Unicode control picture instead (the unit
# separator that joins a path feature's codes, features.JOIN, as ␟).
CONTROL_PICTURES = {code: 0x2400 + code for code in range(0x20) if chr(code) not in "\t\n\r"} | {0x7F: 0x2421}


def escape(text: object) -> str:
    """Any text as HTML text and attribute values show it, never as markup, control characters
    as their pictures."""
    return _html.escape(str(text).translate(CONTROL_PICTURES), quote=True)


def file_name(session_id: str, prefix: str = "gender-report") -> str:
    """A safe file name for a session's report (or, with another prefix, another one's): its id's
    letters, digits, "-", "_" and "." kept."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", session_id).strip("._")[:80]
    return f"{prefix}-{safe or 'session'}.html"


@dataclass(frozen=True, eq=False)
class Report:
    """One served session's answer and explanation, as the Predict page shows them."""

    served: Served
    model: Model  # the model that answered: the session's A/B group's
    fitted: bool = False  # the model was fitted on this session (`artifact.fitted_on`): an in-sample answer
    generated_at: datetime | None = None

    @property
    def record(self):
        return self.served.assessment.record

    @property
    def explanation(self) -> explain.Explanation:
        explanation = self.served.assessment.explanation
        if explanation is None:
            raise GenderError("the answer was served without an explanation: serve it with explain=True")
        return explanation

    @cached_property
    def groups(self) -> list[explain.Group]:
        return explain.grouped(self.explanation, self.record, explain.scheme_of(self.model))

    @cached_property
    def contributions(self) -> pd.DataFrame:
        """Every contribution: feature, label, value, shap and the group it is in, largest first."""
        assigned = explain.assign_groups(self.explanation, self.record, explain.scheme_of(self.model))
        return assigned[list(CONTRIBUTION_COLUMNS)]

    def figures(self) -> dict[str, go.Figure]:
        """The page's charts: the P(male) bar, the grouped waterfall, the category sunburst."""
        prediction = self.served.prediction
        return {
            "p_male": plots.p_male_bar(prediction, self.model.base_rate),
            "waterfall": plots.grouped_waterfall(self.explanation, self.groups),
            "sunburst": plots.hierarchy_sunburst(explain.hierarchy(self.explanation, self.record)),
        }

    def as_json(self) -> dict:
        """The answer and its explanation as data: the contributions (feature, label, value,
        shap, group) add up from base_value to output, in `units`."""
        explanation = self.explanation
        contributions = [
            {key: _plain(value) for key, value in row.items()} for row in self.contributions.to_dict(orient="records")
        ]
        return {
            "answer": self.served.as_json(),
            "units": explanation.units,
            "base_value": float(explanation.base_value),
            "output": float(explanation.output),
            "groups": [
                {
                    "name": group.name,
                    "kind": group.kind,
                    "code": group.code,
                    "shap": group.shap,
                    "parts": len(group.parts),
                }
                for group in self.groups
            ],
            "contributions": contributions,
            # a sentence when the session has more views or lasts longer than any in training, else null
            "beyond_training": beyond_training(self.record, self.model.card.training),
        }

    def html(self) -> str:
        """The standalone report: one HTML file with plotly.js inside."""
        served, record, model, explanation = self.served, self.record, self.model, self.explanation
        prediction = served.prediction
        figures = self.figures()
        generated = (self.generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
        title = f"gender-lens: session {record.session_id}"
        answer_class = prediction.prediction if prediction.prediction in ("male", "female") else ""
        truth = ""
        if record.gender:
            right = "the model got it right" if record.gender == prediction.prediction else "the model got it wrong"
            truth = f"<p>True gender: <b>{escape(record.gender)}</b> ({right}).</p>"
            if self.fitted:
                truth += f'<p class="muted">{IN_SAMPLE}</p>'

        else:
            truth = '<p class="muted">True gender: unknown (not recorded for this session).</p>'
        facts = [
            ("Predicted gender", prediction.prediction),
            ("P(male)", f"{prediction.p_male:.4f}"),
            ("Threshold", f"{prediction.threshold:.4f}"),
            ("Base rate (male share at training)", f"{model.base_rate:.4f}"),
            ("A/B group", served.group),
            ("Model", f"{prediction.model} ({model.label})"),
        ]
        beyond = beyond_training(record, model.card.training)
        unseen = explain.unseen_codes(model, record)
        unseen_html = (
            '<p class="muted">Never seen in training, so no part of this answer: '
            + ", ".join(f"<code>{escape(code)}</code>" for code in unseen)
            + ".</p>"
            if unseen
            else ""
        )
        parts = [
            f'<h1>Session <code>{escape(record.session_id)}</code>: <span class="{answer_class}">'
            f"{escape(prediction.prediction)}</span></h1>",
            f'<p class="muted">gender-lens report, generated {escape(generated)}. Answered by the '
            f"<b>{escape(served.group)}</b> group's model <code>{escape(model.model_id)}</code>.</p>",
            "<h2>The answer</h2>",
            f"<p>{escape(in_words(prediction, model.base_rate))}</p>",
            f'<p class="warning">{escape(beyond)}</p>' if beyond else "",
            truth,
            html_table([(label, value) for label, value in facts], header=None, classes=("", "text")),
            chart_div(figures["p_male"], "chart-p-male", {**CHART_CONFIG, "displayModeBar": False}),
            "<details><summary>The answer as JSON (the original service's format, with the A/B group)</summary>",
            f"<pre>{escape(json.dumps(served.as_json(), indent=2, ensure_ascii=False))}</pre></details>",
            "<h2>The session</h2>",
            f"<p><b>Start</b> {record.start_time:%Y-%m-%d %H:%M:%S} ({record.start_time:%A}) · "
            f"<b>End</b> {record.end_time:%Y-%m-%d %H:%M:%S} · <b>Duration</b> {duration_text(record.duration)} · "
            f"<b>Views</b> {record.n_views}</p>",
            html_table(
                [(order, " › ".join(path)) for order, path in zip(record.orders, record.paths)],
                header=("#", "path"),
                classes=("num", "text"),
            ),
            "<h2>Why</h2>",
            f'<p class="muted">SHAP contributions in {escape(explanation.units)}, from a typical session '
            "(the base value) to this one, grouped: each top-level category the session viewed with "
            "everything under it, categories it did not view, when it started, and its length. Blue "
            "pushes towards male, pink towards female.</p>",
            unseen_html,
            chart_div(figures["waterfall"], "chart-waterfall"),
            "<h3>Each group's parts</h3>",
            *(_group_details(group) for group in self.groups),
            "<h3>Up the catalogue</h3>",
            '<p class="muted">Contributions summed over A → B → C → D (colour: net push).</p>',
            chart_div(figures["sunburst"], "chart-sunburst"),
            "<h3>Every contribution</h3>",
            html_table(
                [
                    (row.label, row.group, f"{row.value:g}", f"{row.shap:+.4f}")
                    for row in self.contributions.itertuples(index=False)
                ],  # the features' own names are for programs: `explain --json` gives them
                header=("contribution", "group", "value", "SHAP"),
                classes=("text", "text", "num", "num"),
            ),
            f'<p class="muted">Base value (typical session) {explanation.base_value:+.4f} + contributions '
            f"{explanation.contributions['shap'].sum():+.4f} = {explanation.output:+.4f} {escape(explanation.units)}"
            f" → P(male) {explanation.p_male:.4f}.</p>",
        ]
        return document(title, parts)


def build(served: Served, model: Model, fitted: bool = False) -> Report:
    """The report of a served answer; `model` is the model that answered it (its group's), `fitted`
    whether it was fitted on the session."""
    if served.prediction.model != model.model_id:
        raise GenderError(f"the answer came from {served.prediction.model}, not from {model.model_id}")
    return Report(served, model, fitted)


def html(served: Served, model: Model, fitted: bool = False) -> str:
    """The standalone HTML report of a served answer (see `Report.html`)."""
    return build(served, model, fitted).html()


def write_atomically(path: Path, text: str) -> None:
    """`text` into `path` (UTF-8), whole or not at all (`files.write_atomically`)."""
    path = Path(path)
    try:
        files.write_atomically(path, lambda f: f.write(text.encode("utf-8")))
    except OSError as exc:
        raise GenderError(f"cannot write {path}: {exc.strerror}") from None


# -- pieces (the population's report uses them too: gender/population.py) -----------------------


def document(title: str, body: list[str]) -> str:
    """A standalone HTML page: `body`'s parts (HTML) under `title`, plotly.js inside, and a
    Content-Security-Policy that forbids any request."""
    head = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>',
        "</head><body>",
    ]
    return "\n".join([*head, *body, "</body></html>"])


def _plain(value):
    """A value as JSON holds it: numpy scalars as Python numbers, NaN as null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def chart_div(figure: go.Figure, div_id: str, config: dict | None = None) -> str:
    """A figure as a div drawn by the plotly.js in the page's head (plotly escapes its JSON)."""
    body = pio.to_html(figure, include_plotlyjs=False, full_html=False, div_id=div_id, config=config or CHART_CONFIG)
    return f'<div class="chart">{body}</div>'


def html_table(rows, header: tuple[str, ...] | None, classes: tuple[str, ...]) -> str:
    """Rows of values as an HTML table, every cell escaped."""
    out = ["<table>"]
    if header:
        cells = "".join(f'<th class="{cls}">{escape(name)}</th>' for name, cls in zip(header, classes))
        out.append(f"<thead><tr>{cells}</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        cells = "".join(f'<td class="{cls}">{escape(value)}</td>' for value, cls in zip(row, classes))
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _group_details(group: explain.Group) -> str:
    """One group as a disclosure: its name and sum, opening into its parts."""
    columns = ("label", "shap", "group") if group.kind == "other" else ("label", "shap")
    header = ("contribution", "SHAP", "group")[: len(columns)]
    rows = [
        tuple(f"{value:+.4f}" if column == "shap" else value for column, value in zip(columns, row))
        for row in group.parts[list(columns)].itertuples(index=False, name=None)
    ]
    count = len(group.parts)
    summary = (
        f"<summary><b>{escape(group.name)}</b> {group.shap:+.3f} "
        f'<span class="muted">({count} contribution{"s" if count != 1 else ""})</span></summary>'
    )
    return f"<details>{summary}{html_table(rows, header, ('text', 'num', 'text'))}</details>"
