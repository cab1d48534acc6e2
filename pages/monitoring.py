"""Monitoring: what was served, to which A/B group, and whether it is still right."""

import pandas as pd
import streamlit as st

import ui
from gender import monitor, plots

st.title("Monitoring")
st.caption("From the prediction log: every session served, once per model, with its A/B group.")

with ui.banners():
    ui.require_database()
    models = ui.require_models()
    log = ui.served()
if log.empty:
    st.info("No predictions served yet: look sessions up on the Predict page, or run `python -m gender predict`.")
    st.stop()

st.subheader("Predictions per day")
ui.chart(plots.predictions_per_day(monitor.daily_counts(log)), key="per_day")

judged = monitor.judged(log, models, ui.trained_on(models))
if elsewhere := ui.trained_elsewhere(models):
    st.caption(
        f"The models were trained on another database ({ui.shown(elsewhere, limit=200)}): no session served "
        "here is one they were fitted on, whatever its id."
    )
if judged.note:
    st.caption(judged.note)
for model_id in judged.unrecorded:
    st.warning(
        f"The sessions `{model_id}` was fitted on were not recorded (an older version trained it): they are "
        "counted below, scored in-sample, and flatter it. Retrain to leave them out."
    )

st.subheader("Is the P(male) served like the P(male) at training?")
for column, drift in zip(ui.side_by_side("drift_row", (1, 1)), monitor.drift(judged.log, models)):
    with column:
        st.markdown(f"**{drift.group}** · `{drift.model_id}` · {len(drift.served):,} served")
        if drift.psi is not None:
            st.metric("Population stability index", f"{drift.psi:.3f}")
        st.markdown(drift.verdict.capitalize() + ".")
        if len(drift.served) >= monitor.MIN_SERVED_FOR_DRIFT:  # a histogram of a few is noise drawn large
            ui.chart(plots.score_distributions(drift.trained, drift.served), key=f"drift_{drift.group}")

st.subheader("Right or wrong, per group")
st.caption(
    "On logged sessions whose gender is known, with 95 % bootstrap intervals (none below "
    f"{monitor.MIN_PER_GENDER} sessions of either gender: too few to say)."
)
groups = monitor.group_metrics(judged.log)
if not groups:
    st.info("Nothing served yet can judge the current models: no prediction of a session they were not fitted on.")
    st.stop()
st.dataframe(
    pd.DataFrame(
        [
            {
                "group": group,
                "ROC-AUC [95 % CI]": str(figures.auc),  # first: a narrow screen shows the first columns
                "balanced accuracy [95 % CI]": str(figures.balanced_accuracy),
                "served": figures.served,
                "known gender": figures.known,
                "of them male": figures.male,
                "models": ", ".join(figures.models),
            }
            for group, figures in groups.items()
        ]
    ),
    hide_index=True,
    key="group_metrics",
)
if {"treatment", "control"} <= set(groups):
    for name, key in (("ROC-AUC", "auc"), ("Balanced accuracy", "balanced_accuracy")):
        test = monitor.difference(getattr(groups["treatment"], key), getattr(groups["control"], key))
        if test.value is None:
            st.markdown(f"**{name}**: not enough labelled sessions of both genders in both groups yet.")
        elif test.significant is None:
            st.markdown(
                f"**{name}**: treatment − control = {test.value:+.3f}: too few sessions to say whether it is real."
            )
        else:
            verdict = "a significant difference" if test.significant else "no significant difference"
            st.markdown(
                f"**{name}**: treatment − control = {test.value:+.3f} "
                f"[{test.low:+.3f}, {test.high:+.3f}]: {verdict} at the 5 % level."
            )
