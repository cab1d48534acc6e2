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

st.subheader("Is the P(male) served like the P(male) at training?")
drift_cols = st.columns(2)
for column, group in zip(drift_cols, ("treatment", "control")):
    model = models.of(group)
    current = log[(log["ab_group"] == group) & (log["model_id"] == model.model_id)]["p_male"].to_numpy()
    with column:
        st.markdown(f"**{group}** · `{model.model_id}` · {len(current):,} served")
        if len(current) < 10:
            st.info("Too few predictions from this model yet to compare distributions (10 needed).")
            continue
        trained = model.metadata["slots"][model.slot]["oof_p_male"]
        index = monitor.psi(trained, current)
        st.metric("Population stability index", f"{index:.3f}")
        st.markdown(monitor.psi_verdict(index).capitalize() + ".")
        ui.chart(plots.score_distributions(trained, current), key=f"drift_{group}")

st.subheader("Right or wrong, per group")
st.caption(
    "On logged sessions whose gender is known, with 95 % intervals. Sessions the models were trained "
    "on score better than new ones: read these figures on sessions labelled after training."
)
groups = monitor.group_metrics(log)


def shown(metric: dict) -> str:
    if metric["value"] is None:
        return "needs both genders"
    return f"{metric['value']:.3f} [{metric['low']:.3f}, {metric['high']:.3f}]"


st.dataframe(
    pd.DataFrame(
        [
            {
                "group": group,
                "models": ", ".join(figures["models"]),
                "served": figures["served"],
                "known gender": figures["known"],
                "of them male": figures["male"],
                "ROC-AUC [95 % CI]": shown(figures["auc"]),
                "balanced accuracy [95 % CI]": shown(figures["balanced_accuracy"]),
            }
            for group, figures in groups.items()
        ]
    ),
    hide_index=True,
    key="group_metrics",
)
if {"treatment", "control"} <= set(groups):
    for name, key in (("ROC-AUC", "auc"), ("Balanced accuracy", "balanced_accuracy")):
        test = monitor.difference(groups["treatment"][key], groups["control"][key])
        if test["difference"] is None:
            st.markdown(f"**{name}**: not enough labelled sessions of both genders in both groups yet.")
        else:
            verdict = "a significant difference" if test["significant"] else "no significant difference"
            st.markdown(
                f"**{name}**: treatment − control = {test['difference']:+.3f} "
                f"(z = {test['z']:.2f}, p = {test['p_value']:.3f}): {verdict} at the 5 % level."
            )
