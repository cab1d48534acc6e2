"""Categories: one session's categories and the original count query; the population by gender,
from the summary tables (`gender.summary`)."""

import streamlit as st

import ui
from gender import db, explore, plots, predict, summary

st.title("Categories")

with ui.banners():
    engine = ui.require_database()

    st.header("One session")
    session_id = ui.session_picker("categories_session")
    ui.session_search("categories_session")  # suggests ids as one types; picking one fills the box above
    record = predict.lookup(engine, session_id) if session_id else None
    if session_id and record is None:
        ui.no_session(session_id)
    if record is not None:
        st.dataframe(explore.session_category_counts(record.views), hide_index=True, key="session_counts", width=480)

    st.markdown("**Count one category** — the original `/count` query: views of the session in a category of any level")
    # The form's box follows the session picked above, unless one typed another id in it.
    followed = st.session_state.get("count_form_for", "")
    if (session_id or "") != followed and st.session_state.get("count_session", "") == followed:
        st.session_state["count_form_for"] = st.session_state["count_session"] = session_id or ""
    with st.form("count_form"):
        count_session, count_category = st.columns(2)
        count_session.text_input("Session id", key="count_session", max_chars=ui.MAX_TYPED)
        count_category.text_input(
            "Category (any level)", key="count_category", placeholder="e.g. B00002", max_chars=ui.MAX_TYPED
        )
        asked = st.form_submit_button("Count")
    if asked:
        answer = predict.count(engine, st.session_state["count_session"], st.session_state["count_category"])
        shown_session, shown_category = ui.shown(answer.session_id), ui.shown(answer.category)
        st.metric(f"Views of {shown_category or '(no category)'} in {shown_session or '(no session)'}", answer.count)
        if not answer.session_known and answer.session_id.strip():
            ui.no_session(answer.session_id)  # COUNT 0, as the original answers: say why
        elif why := ui.too_long(answer.category, "category code", db.CATEGORY_LENGTH):
            st.caption(f"Nothing can match it{why}.")
        st.json(answer.as_json())

    st.header("Everyone")
    # From the summary tables (`python -m gender summarize`): never a GROUP BY of the raw logs here.
    population = ui.summaries()
    if population is None:
        st.info(summary.too_large_note(), icon=":material/summarize:")
        st.stop()
    st.caption(population.describe())
    if population.stored and (stale := ui.stale_note(population.info)):
        st.warning(stale, icon=":material/update:")
    level_col, top_col = st.columns(2)
    level = level_col.radio(
        "Level", ["a", "b", "c", "d"], format_func=lambda lv: f"{lv.upper()}", horizontal=True, key="level", index=1
    )
    top = top_col.slider("Categories shown", 5, 60, 20, key="top")
    shares = explore.category_shares(population.category_counts(level))
    ui.chart(plots.category_by_gender(shares, top), key="category_by_gender")
    with st.expander(f"Male share per category at level {level.upper()}, with counts of views and sessions"):
        st.dataframe(
            shares,
            key="shares_table",
            column_config={
                **{count: st.column_config.NumberColumn(format="localized") for count in shares.columns},
                "male_share": st.column_config.NumberColumn(
                    "male share", format="percent", help="Male views among the labelled ones (unknown left out)"
                ),
            },
        )

    st.subheader("The catalogue")
    branches = population.tree_counts()
    within = st.selectbox(
        "Open an A category down to level C",
        sorted(branches["category_a"].unique()),
        index=None,
        placeholder="All of A → B",
        key="catalogue_within",
    )
    overall = explore.male_view_share(branches)
    st.caption(
        f"Sized by views, coloured by the male share of labelled views: neither pink nor blue is that share "
        f"over the whole catalogue ({overall:.1%})."
    )
    tree = explore.catalogue_tree(branches, within)
    ui.chart(plots.category_treemap(tree, overall), key="treemap")

    st.subheader("When people browse")
    activity = population.activity
    hour_col, weekday_col = ui.side_by_side("activity_row", (1, 1))
    with hour_col:
        ui.chart(plots.activity_by_hour(activity), key="by_hour")
    with weekday_col:
        ui.chart(plots.activity_by_weekday(activity), key="by_weekday")
    ui.chart(plots.sessions_per_day(activity), key="per_day")
