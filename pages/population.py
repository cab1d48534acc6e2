"""Population: how the chosen model decides across the database's sessions (SHAP over a sample)."""

from datetime import datetime, time, timedelta

import numpy as np
import pandas as pd
import streamlit as st

import ui
from gender import population

st.title("The whole population")

with ui.banners():
    engine = ui.require_database()
    models = ui.require_models()
    settings = ui.settings()
    working = st.empty()  # a progress bar, only while the sample is being computed
    result = population.current(
        engine,
        models,
        settings.model_dir,
        settings.ab_salt,
        settings.treatment_share,
        progress=lambda fraction, message: working.progress(min(max(fraction, 0.0), 1.0), text=message),
    )
    working.empty()

info, sample, units = result.info, result.sample, result.info.units
model = models.treatment
st.markdown(
    f"SHAP contributions of the **treatment model** (the one training chose): **{model.label}** "
    f"(`{info.model_id}`), over a random sample of **{len(sample):,}** of the database's "
    f"{info.db_sessions:,} sessions, stratified by recorded gender (seed {info.seed}), in {units} of male: "
    "positive pushes towards male, negative towards female. The control model is not shown here."
)
kept = (
    f"kept beside the models as `{population.file_name(info.model_sha256, info.db_fingerprint)}`"
    if population.is_kept(engine, models, settings.model_dir)
    else "held in this server's memory only (the model folder cannot be written here)"
)
st.caption(
    f"Computed {info.computed_at} UTC in {info.seconds:.1f} s ({info.sample_seconds:.1f} s of it reading the sample) "
    f"and {kept}; computed again when the model or the database changes (or ahead, with "
    "`python -m gender population`)."
)
export = st.container()  # the download button, filled once every choice below is made

# -- global importance --------------------------------------------------------------------------
st.subheader("What matters, over everyone")
st.caption(
    "Mean |SHAP| over the sampled sessions (a session without the feature counts 0): how much a feature moves "
    "answers, either way. A view's level (A-D) is where its code sits in the sampled sessions' own paths."
)
groups_col, features_col = ui.side_by_side("importance_row", (2, 3))
with groups_col:
    st.markdown("**By kind and level**")
    ui.chart(population.groups_figure(result), key="population_groups")
    st.caption(
        "Coloured bar: the features' mean |SHAP| summed (colour: the kind's mean push). Grey: the mean over "
        "sessions of |the kind's contributions summed|, where pushes of both ways cancel."
    )
with features_col:
    top = st.slider("Features shown", 5, 50, 20, key="population_top")
    ui.chart(population.importance_figure(result, top), key="population_features")

table = population.importance_table(result)
with st.expander(f"The {len(table):,} most important of {len(result.importance):,} features, as a table"):
    st.dataframe(
        table,
        hide_index=True,
        key="population_table",
        column_config={
            "label": "feature",
            "group": "kind and level",
            "mean_abs": st.column_config.NumberColumn("mean |SHAP|", format="%.4f"),
            "mean": st.column_config.NumberColumn("mean SHAP", format="%+.4f"),
            "corr": st.column_config.NumberColumn(
                "corr(value, SHAP)", format="%+.2f", help="> 0: the more of it, the more it pushes towards male"
            ),
            "sessions": st.column_config.NumberColumn("sessions it moves", format="%d"),
        },
    )

# -- dependence ---------------------------------------------------------------------------------
st.subheader("How a session's numbers push, value by value")
numbers = list(population.DEPENDENCE)
number = st.selectbox(
    "Session number", numbers, format_func=lambda name: population.NUMBER_LABELS[name], key="population_number"
)
ui.chart(population.dependence_figure(result, number), key="population_dependence")
if population.DEPENDENCE[number]:
    st.caption(
        "The model sees the start both as a number and as one-hot tokens (`hour:14`); each point is one sampled "
        "session: the number's contribution, its tokens' contributions summed; the line is both together (their "
        "sum), averaged per value."
    )
if number not in result.model_numbers:
    st.caption("This model has no such number among its features.")

# -- cohorts ------------------------------------------------------------------------------------
st.subheader("Two groups of sessions, side by side")
st.caption("Mean contributions of two cohorts of the sampled sessions; the features where they differ most.")
KINDS = {
    "predicted": "predicted gender",
    "gender": "recorded gender",
    "group": "A/B group",
    "viewed": "a category viewed",
    "started": "a start time range",
    "all": "every sampled session",
}
codes = result.viewed_codes()
first_day = pd.Timestamp(sample.start_time.min()).date() if len(sample) else datetime.now().date()
last_day = pd.Timestamp(sample.start_time.max()).date() if len(sample) else first_day


def code_option(row) -> str:
    return f"{ui.suggestion_label(row.code)} (level {row.level}, {row.sessions:,} sessions)"


def cohort_picker(key: str, kind: str, value: str) -> population.Cohort:
    by = st.selectbox("Cohort by", list(KINDS), index=list(KINDS).index(kind), format_func=KINDS.get, key=f"{key}_by")
    if by == "predicted":
        return population.Cohort(
            by,
            st.radio(
                "Predicted",
                ["male", "female"],
                key=f"{key}_predicted",
                index=["male", "female"].index(value),
                horizontal=True,
            ),
        )
    if by == "gender":
        return population.Cohort(
            by, st.radio("Recorded", ["male", "female", "unknown"], key=f"{key}_gender", horizontal=True)
        )
    if by == "group":
        return population.Cohort(by, st.radio("Group", ["treatment", "control"], key=f"{key}_group", horizontal=True))
    if by == "viewed":
        options = codes.head(1_000)
        if options.empty:
            st.caption("The sampled sessions viewed nothing.")
            return population.Cohort("viewed", "")
        labels = [code_option(row) for row in options.itertuples()]
        picked = st.selectbox(
            "Viewed (any level; the 1,000 most viewed in the sample)",
            range(len(options)),
            format_func=labels.__getitem__,
            key=f"{key}_viewed",
        )
        return population.Cohort(by, options["code"].iat[picked])
    if by == "started":
        picked = st.date_input(
            "Started from … to … (inclusive)",
            (first_day, last_day),
            min_value=first_day,
            max_value=last_day,
            key=f"{key}_started",
        )
        start, end = (picked[0], picked[-1]) if isinstance(picked, (tuple, list)) and picked else (first_day, last_day)
        return population.Cohort(
            by, start=datetime.combine(start, time()), end=datetime.combine(end, time()) + timedelta(days=1)
        )
    return population.Cohort("all")


left, right = st.columns(2)
with left:
    st.markdown("**Cohort a**")
    cohort_a = cohort_picker("cohort_a", "predicted", "male")
with right:
    st.markdown("**Cohort b**")
    cohort_b = cohort_picker("cohort_b", "predicted", "female")
view = population.View(top, cohort_a, cohort_b, st.slider("Features shown", 5, 40, 15, key="cohort_top"))
comparison = view.comparison(result)
left, right = st.columns(2)
for column, name, cohort, size, p_male in (
    (left, "a", cohort_a, comparison.sessions_a, comparison.p_male_a),
    (right, "b", cohort_b, comparison.sessions_b, comparison.p_male_b),
):
    column.metric(f"Sampled sessions in cohort {name}", f"{size:,}")
    column.markdown(
        f"{ui.shown(cohort.label, limit=80)} · mean P(male) of its sampled sessions: "
        + ("none" if np.isnan(p_male) else f"**{p_male:.1%}**")
    )
if not (comparison.sessions_a and comparison.sessions_b):
    st.info("One of the cohorts holds no sampled session: pick another.")
else:
    by_group, by_feature = population.comparison_figures(result, comparison)
    ui.chart(by_group, key="cohort_groups")
    if by_feature is None:
        st.caption("No feature differs between the two cohorts.")
    else:
        ui.chart(by_feature, key="cohort_features")

export.download_button(
    "Download these views as a report (HTML)",
    data=lambda: population.html(result, view),  # built on click, in the background
    file_name=population.report_file_name(result),
    mime="text/html",
    on_click="ignore",
    icon=":material/download:",
    key="population_report",
    help="One HTML file: these charts (every session number's dependence) and the table, interactive; "
    "opens without a network.",
)
