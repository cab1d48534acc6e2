"""Predict: one session looked up, answered by its A/B group's model, and explained."""

import streamlit as st

import ui
from gender import explain, explore, plots, predict, report, serve
from gender.answers import Prediction, in_words
from gender.trained import Model

st.title("Predict a visitor's gender")
st.caption("From the views and times of one browsing session: the answer, how sure, and why.")

with ui.banners():
    session_id = ui.session_picker("session_id")  # first, so the box stays (and keeps its id) in an outage
    ui.session_search("session_id")  # suggests ids as one types; picking one fills the box above
    engine = ui.require_database()
    models = ui.require_models()
    if not session_id:
        st.info("Type a session id, or pick a random one. Links like `/?session=u10003` open a session directly.")
        st.stop()

    settings = ui.settings()
    served = serve.serve(engine, models, session_id, settings.ab_salt, settings.treatment_share)
    if served is None:
        ui.no_session(session_id)
        st.json(Prediction.unknown(session_id).as_json())
        st.stop()
    ui.log_served(served)
    record, explanation = served.assessment.record, served.assessment.explanation
    model = models.of(served.group)
    other = models.other(served.group)
    compare = other is not None and st.toggle(
        f"Compare with the {'control' if served.group == 'treatment' else 'treatment'} model ({other.model_id})",
        key="compare",
    )
    other_assessment = predict.assess_record(other, served.assessment.record) if compare else None
    groups = explain.grouped(explanation, record, explain.scheme_of(model))  # the story, one bar a group


def answer(model: Model, prediction: Prediction, group: str, served_here: bool) -> None:
    """The predicted gender, P(male) against the base rate and the threshold, and the truth."""
    role = f"the **{group}** group's model" if served_here else f"the {group} model, for comparison"
    st.markdown(f"Answered by {role}: `{model.model_id}` ({model.label})")
    answer_col, truth_col = st.columns([2, 1])
    with answer_col:
        st.metric("Predicted gender", prediction.prediction, help=f"model {model.model_id}")
        st.markdown(in_words(prediction, model.base_rate))
    with truth_col:
        if record.gender:
            right = record.gender == prediction.prediction
            st.metric("True gender", record.gender)
            st.markdown(
                ":green[:material/check_circle: the model got it right]"
                if right
                else ":red[:material/cancel: the model got it wrong]"
            )
        else:
            st.metric("True gender", "unknown")
            st.markdown("Not recorded for this session.")
    ui.chart(
        plots.p_male_bar(prediction, model.base_rate),
        key=f"p_male_{group}",
        config={"displayModeBar": False},
    )


# -- the answer (and the other model's, side by side) --------------------------------------------
if other_assessment is None:
    answer(model, served.prediction, served.group, served_here=True)
else:
    other_group = "control" if served.group == "treatment" else "treatment"
    served_col, other_col = st.columns(2)
    with served_col:
        answer(model, served.prediction, served.group, served_here=True)
        ui.chart(plots.grouped_waterfall(explanation, groups), key="waterfall")
    with other_col:
        answer(other, other_assessment.prediction, other_group, served_here=False)
        other_groups = explain.grouped(other_assessment.explanation, record, explain.scheme_of(other))
        ui.chart(plots.grouped_waterfall(other_assessment.explanation, other_groups), key="waterfall_other")
st.download_button(
    "Download this answer as a report (HTML)",
    data=lambda: report.html(served, model),  # built on click, in the background
    file_name=report.file_name(record.session_id),
    mime="text/html",
    on_click="ignore",
    icon=":material/download:",
    key="report",
    help="One HTML file: the answer, the session and why, with interactive charts; opens without a network.",
)

# -- the session --------------------------------------------------------------------------------
st.subheader("The session")
st.markdown(
    f"**Start** {record.start_time:%Y-%m-%d %H:%M:%S} ({record.start_time:%A}) · "
    f"**End** {record.end_time:%Y-%m-%d %H:%M:%S} · **Duration** {record.duration} · **Views** {record.n_views}"
)
st.dataframe(
    explore.session_paths(record.views), hide_index=True, key="paths", height=min(400, 40 + 35 * len(record.views))
)

# -- why ----------------------------------------------------------------------------------------
st.subheader("Why")
st.caption(
    f"SHAP contributions in {explanation.units}, from a typical session (the base value) to this one, "
    "grouped: each top-level category the session viewed with everything under it, the categories it did "
    "not view, when it started, its length. Blue pushes towards male, pink towards female."
)
if other_assessment is None:
    ui.chart(plots.grouped_waterfall(explanation, groups), key="waterfall")
st.markdown("**Each bar's parts**")
for number, group in enumerate(groups):
    name = f"{ui.shown(group.code)} and below" if group.code is not None else group.name
    with st.expander(f"{name} · {group.shap:+.3f} · {len(group.parts)} contributions"):
        st.dataframe(
            group.parts[["label", "shap", "group"] if group.kind == "other" else ["label", "shap"]],
            hide_index=True,
            key=f"group_{number}",
            column_config={"label": "feature", "shap": st.column_config.NumberColumn("SHAP", format="%+.3f")},
        )
tree_col, table_col = st.columns([3, 2])
with tree_col:
    st.markdown("**Up the catalogue**: contributions summed over A → B → C → D (colour: net push)")
    ui.chart(plots.hierarchy_sunburst(explain.hierarchy(explanation, record)), key="sunburst")
with table_col:
    st.markdown("**Every contribution**")
    st.dataframe(
        explanation.contributions[["label", "shap"]],
        hide_index=True,
        key="contributions",
        height=440,
        column_config={"label": "feature", "shap": st.column_config.NumberColumn("SHAP", format="%+.3f")},
    )

with st.expander("The answer as JSON (the original service's format, with the A/B group)"):
    st.json(served.as_json())
