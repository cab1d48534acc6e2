"""Find sessions: filters (recorded gender, gender as last served or as precomputed, a category
viewed, start dates) listing the matching sessions, one click away from the Predict page."""

import functools
from datetime import datetime, time, timedelta

import streamlit as st

import ui
from gender import db
from gender.answers import counted

LIMIT = 100  # sessions listed; the count goes on to db.COUNT_LIMIT
ANY = "any"
FILTERS = ("find_gender", "find_predicted", "find_precomputed", "find_viewed", "find_from", "find_until")
KEPT = "find_kept"  # the filters' values: Streamlit drops a widget's own state on another page


def predicted_gender(column, source: str, key: str, help: str) -> str:
    """A selectbox in `column` for a predicted gender to match (any, male, female), saying which
    prediction (`source`: as last served, precomputed) it is matched against."""
    return column.selectbox(f"Predicted gender, {source}", [ANY, "male", "female"], key=key, help=help)


st.title("Find sessions")
st.caption(
    "List the sessions that match, e.g. labelled male, predicted female, viewed B00009, and open one. "
    "To find one by its id, type the start of it on the Predict page."
)

for key, value in st.session_state.get(KEPT, {}).items():  # back from a session opened here
    st.session_state.setdefault(key, value)

with ui.banners():
    engine = ui.require_database()
    with st.form("find_form", enter_to_submit=True):
        # The boxes on one line: a label wrapped to two lines (a narrow column) set its box lower.
        gender_col, predicted_col, precomputed_col, viewed_col = st.columns(4, vertical_alignment="bottom")
        gender = gender_col.selectbox("Recorded gender", [ANY, "male", "female", "unknown"], key="find_gender")
        predicted = predicted_gender(
            predicted_col,
            "as last served",
            "find_predicted",
            "The answer the dashboard, the API or the CLI last served for the session (the prediction "
            "log); sessions never served have none. Not a fresh prediction by the current model.",
        )
        precomputed = predicted_gender(
            precomputed_col,
            "precomputed",
            "find_precomputed",
            "The score computed ahead (`score --spark`, loaded with `import-scores`), the newest imported "
            "for the session; sessions never scored ahead have none.",
        )
        viewed = viewed_col.text_input(
            "Viewed category (any level)", key="find_viewed", placeholder="e.g. B00009", max_chars=ui.MAX_TYPED
        )
        from_col, until_col = st.columns(2)
        first, last = ui.start_dates() or (None, None)  # the calendars open on the logs' own days
        started_from = from_col.date_input(
            "Started on or after", value=None, min_value=first, max_value=last, key="find_from"
        )
        started_until = until_col.date_input(
            "Started on or before", value=None, min_value=first, max_value=last, key="find_until"
        )
        st.form_submit_button("Find", type="primary", icon=":material/filter_alt:")

    filters = db.SessionFilter(
        gender=None if gender == ANY else gender,
        predicted=None if predicted == ANY else predicted,
        precomputed=None if precomputed == ANY else precomputed,
        viewed=viewed or None,
        started_from=datetime.combine(started_from, time()) if started_from else None,
        started_before=datetime.combine(started_until + timedelta(days=1), time()) if started_until else None,
    )
    found = ui.found_sessions(filters, LIMIT)
    st.session_state[KEPT] = {key: st.session_state[key] for key in FILTERS}

words = []
if filters.gender:
    words.append("gender not recorded" if filters.gender == "unknown" else f"labelled {filters.gender}")
if filters.predicted:
    words.append(f"predicted {filters.predicted} (as last served)")
if filters.precomputed:
    words.append(f"predicted {filters.precomputed} (precomputed)")
if filters.viewed is not None:
    words.append(f"viewed {ui.shown(filters.viewed)}")
if started_from or started_until:
    words.append(f"started {started_from or '…'} to {started_until or '…'}")
matching = ", ".join(words) if words else "all sessions"
count = f"more than {found.total:,} sessions" if found.more else counted(found.total, "session")
if found.total == 0:
    why = ui.too_long(filters.viewed, "category code", db.CATEGORY_LENGTH)
    if started_from and started_until and started_from > started_until:
        why += " (the first date is after the last: swap them)"
    st.warning(f"No session matches: {matching}{why}.", icon=":material/search_off:")
    st.stop()
listed = f"the first {len(found.sessions):,} by id" if found.total > len(found.sessions) else "all of them"
verb = "matches" if found.total == 1 and not found.more else "match"
st.markdown(f"**{count}** {verb} ({matching}); {listed} below. Select a row to open it on the Predict page.")

table = found.sessions.assign(
    gender=found.sessions["gender"].fillna("unknown"),
    predicted=found.sessions["predicted"].fillna("never served"),
    precomputed=found.sessions["precomputed"].fillna("not scored ahead"),
)


def open_row(listed: list[str]) -> None:
    """A row was selected: open its session (a callback, so that coming back here opens nothing)."""
    rows = st.session_state["find_results"].selection.rows
    if rows:
        st.session_state["find_open"] = listed[rows[0]]


st.dataframe(
    table,
    hide_index=True,
    key="find_results",
    on_select=functools.partial(open_row, list(table["session_id"])),
    selection_mode="single-row",
    column_config={
        "session_id": "session id",
        "start_time": st.column_config.DatetimeColumn("start", format="YYYY-MM-DD HH:mm:ss"),
        "end_time": st.column_config.DatetimeColumn("end", format="YYYY-MM-DD HH:mm:ss"),
        "gender": "recorded gender",
        "predicted": "predicted (as last served)",
        "precomputed": "predicted (precomputed)",
    },
)
if chosen := st.session_state.pop("find_open", None):
    st.session_state[ui.CHOSEN_SESSION] = chosen
    st.switch_page("pages/predict.py", query_params={"session": chosen})
