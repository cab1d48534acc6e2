"""Predict: one session looked up, predicted and explained."""

import streamlit as st

import ui
from gender import explain, explore, plots, predict

st.title("Predict a visitor's gender")
st.caption("From the views and times of one browsing session: the answer, how sure, and why.")

with ui.banners():
    engine = ui.require_database()
    model = ui.require_model()
    session_id = ui.session_picker("session_id")
    if not session_id:
        st.info("Type a session id, or pick a random one. Links like `/?session=u10003` open a session directly.")
        st.stop()

    assessment = predict.assess(engine, model, session_id)
    if assessment is None:
        answer = predict.Prediction(session_id, predict.UNKNOWN)
        st.warning(f"No session **{ui.shown(session_id)}** in this database.", icon=":material/search_off:")
        st.json(answer.as_json())
        st.stop()
    record, prediction, explanation = assessment.record, assessment.prediction, assessment.explanation

# -- the answer ---------------------------------------------------------------------------------
answer_col, truth_col = st.columns([2, 1])
with answer_col:
    st.metric("Predicted gender", prediction.prediction, help=f"model {model.model_id}")
    st.markdown(predict.in_words(prediction.p_male, model.base_rate, model.threshold))
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
st.plotly_chart(
    plots.p_male_bar(prediction.p_male, model.base_rate, model.threshold),
    key="p_male",
    config={"displayModeBar": False},
)

# -- the session --------------------------------------------------------------------------------
st.subheader("The session")
duration = record.end_time - record.start_time
st.markdown(
    f"**Start** {record.start_time:%Y-%m-%d %H:%M:%S} ({record.start_time:%A}) · "
    f"**End** {record.end_time:%Y-%m-%d %H:%M:%S} · **Duration** {duration} · **Views** {len(record.views)}"
)
st.dataframe(
    explore.session_paths(record.views), hide_index=True, key="paths", height=min(400, 40 + 35 * len(record.views))
)

# -- why ----------------------------------------------------------------------------------------
st.subheader("Why")
st.caption(
    f"SHAP contributions in {explanation.units}: from a typical session (the base value) to this one. "
    "Blue pushes towards male, pink towards female."
)
st.plotly_chart(plots.waterfall(explanation), key="waterfall")
tree_col, table_col = st.columns([3, 2])
with tree_col:
    st.markdown("**Up the catalogue**: contributions summed over A → B → C → D (colour: net push)")
    st.plotly_chart(plots.hierarchy_sunburst(explain.hierarchy(explanation, record.views)), key="sunburst")
with table_col:
    st.markdown("**Every contribution**")
    st.dataframe(
        explanation.contributions[["label", "shap"]],
        hide_index=True,
        key="contributions",
        height=440,
        column_config={"label": "feature", "shap": st.column_config.NumberColumn("SHAP", format="%+.3f")},
    )

with st.expander("The answer as JSON (the original service's format)"):
    st.json(prediction.as_json())
