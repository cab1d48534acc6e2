"""Predict: one session looked up, answered by its A/B group's model, and explained; or edited
(what if…) or built from nothing, and answered the same way without touching the database."""

from datetime import datetime
from urllib.parse import urlencode

import streamlit as st

import ui
from gender import explain, explore, plots, predict, report, serve, summary, whatif
from gender.answers import IN_SAMPLE, Prediction, beyond_training, counted, duration_text, in_words
from gender.trained import Model

WHATIF, BUILD = "whatif", "build"  # the query parameters of an edited and of a built session
DRAFT = "whatif_draft"  # (whose session: its id, or None when built, the draft)
EDITING = "whatif_on"  # the what-if switch
DURATION_NOTE = "whatif_duration_note"  # why a typed duration was not taken, said once under its box

st.title("Predict a visitor's gender")
st.caption("From the views and times of one browsing session: the answer, how sure, and why.")


# -- the what-if's state: one draft, of the session on the page ------------------------------------
def put(owner: str | None, draft: whatif.Draft) -> None:
    """Make `draft` the one edited (its start and duration boxes follow when drawn)."""
    st.session_state[DRAFT] = (owner, draft)


def boxes_from(draft: whatif.Draft) -> None:
    """The start and duration boxes in step with the draft, just before they are drawn (Streamlit
    forgets a box's value on a run that does not draw it)."""
    st.session_state["whatif_date"] = draft.start_time.date()
    st.session_state["whatif_time"] = draft.start_time.time().replace(second=0)  # the box shows minutes
    st.session_state["whatif_duration"] = duration_text(draft.duration)  # parse_duration reads it back


def edit(change) -> None:
    """A button's edit of the draft: `change` takes the draft and gives the edited one."""
    owner, draft = st.session_state[DRAFT]
    try:
        put(owner, change(draft))
    except IndexError:  # a second click on a view that the first one's edit has already removed
        pass


def retimed() -> None:
    owner, draft = st.session_state[DRAFT]
    day, time = st.session_state["whatif_date"], st.session_state["whatif_time"]
    if day is None or time is None:
        return  # a box emptied: keep the start as it was
    if time == draft.start_time.time().replace(second=0):
        time = draft.start_time.time()  # the minute unchanged: keep the second the logs gave
    start = datetime.combine(day, time)
    typed = st.session_state["whatif_duration"]
    try:
        duration = whatif.parse_duration(typed)
    except ValueError as exc:  # said under the box, which then shows the duration kept
        said = ui.shown(typed) if typed.strip() else "An empty box"
        st.session_state[DURATION_NOTE] = f"{said} is not a duration: {exc}. It stays {duration_text(draft.duration)}."
        duration = draft.duration
    put(owner, draft.starting(start).lasting(duration))


def add_view(at_key: str) -> None:
    path = st.session_state.get("whatif_pick")
    if path is not None:
        edit(lambda draft: draft.adding(path, int(st.session_state[at_key]) - 1))


def from_nothing() -> whatif.Draft:
    """The start of a session built from nothing: no views, tonight at 21:00."""
    return whatif.Draft.empty(datetime.now().replace(hour=21, minute=0, second=0, microsecond=0))


def start_building() -> None:
    draft = from_nothing()
    put(None, draft)
    st.query_params[BUILD] = draft.link()


def stop_building() -> None:
    st.query_params.pop(BUILD, None)
    st.session_state.pop(DRAFT, None)


def draft_for(owner: str | None, stored: whatif.Draft) -> whatif.Draft:
    """The draft of this session: on arrival the one a link holds, else the stored session."""
    arriving = DRAFT not in st.session_state  # a link is opened in a new tab: a new Streamlit session
    if arriving or st.session_state[DRAFT][0] != owner:
        put(owner, stored)
    name = BUILD if owner is None else WHATIF
    if arriving and (link := st.query_params.get(name)):
        try:
            put(owner, whatif.Draft.from_link(link))
            st.session_state[EDITING] = True
        except whatif.BadLink as exc:
            st.query_params.pop(name, None)
            instead = "Starting from nothing." if owner is None else "Showing the stored session."
            st.error(f"This what-if link cannot be opened: {exc}. {instead}", icon=":material/link_off:")
    return st.session_state[DRAFT][1]


def shareable(draft: whatif.Draft) -> str | None:
    try:
        return draft.link()
    except ValueError:
        return None  # too long to share


with ui.banners():
    session_id = ui.session_picker("session_id")  # first, so the box stays (and keeps its id) in an outage
    ui.session_search("session_id")  # suggests ids as one types; picking one fills the box above
    engine = ui.require_database()
    models = ui.require_models()
    if session_id:
        st.query_params.pop(BUILD, None)
    elif BUILD not in st.query_params:
        st.info("Type a session id, or pick a random one. Links like `/?session=u10003` open a session directly.")
        st.button("Build a session from nothing", key="build", on_click=start_building, icon=":material/add_circle:")
        st.stop()

    settings = ui.settings()
    if session_id:
        served = serve.serve(engine, models, session_id, settings.ab_salt, settings.treatment_share)
        if served is None:
            ui.no_session(session_id)
            st.json(Prediction.unknown(session_id).as_json())
            st.stop()
        ui.log_served(served)
        group, uneditable = served.group, None
        try:
            stored = whatif.Draft.of(served.assessment.record)
        except ValueError as exc:  # a database of one's own may hold what no edit could make: an end before the start…
            stored, uneditable = None, f"This session cannot be edited here: {exc}."
        if stored is None:
            draft, st.session_state[EDITING] = None, False  # the switch shown off and disabled, saying why
        else:
            draft = draft_for(served.assessment.record.session_id, stored)
        editing = st.toggle(
            "What if… edit this session (remove, add or move views, change its start or length)",
            key=EDITING,
            disabled=stored is None,
            help=uneditable,
        )
    else:  # built from nothing: no stored session, no A/B group; the treatment model answers
        served, group, stored = None, "treatment", None
        draft = draft_for(None, from_nothing())
        editing = True
    model = models.of(group)
    changed = editing and draft != stored
    if changed and not draft.paths:
        assessment = None  # nothing to answer yet
    elif changed:  # the edited session, scored and explained as a stored one is
        owner = served.assessment.record.session_id if served else whatif.BUILT_ID
        assessment = predict.assess_record(model, draft.session(owner))
    else:
        assessment = served.assessment
    # The link of what is on the page: the address bar shares it too.
    link_name = WHATIF if served else BUILD
    if changed and (link := shareable(draft)):
        st.query_params[link_name] = link
    elif served:
        st.query_params.pop(WHATIF, None)
    other = models.other(group)
    compare = (
        assessment is not None
        and other is not None
        and st.toggle(
            f"Compare with the {'control' if group == 'treatment' else 'treatment'} model ({other.model_id})",
            key="compare",
        )
    )
    if assessment is not None:
        record, explanation = assessment.record, assessment.explanation
        other_assessment = predict.assess_record(other, record) if compare else None
        groups = explain.grouped(explanation, record, explain.scheme_of(model))  # the story, one bar a group


def answer(model: Model, prediction: Prediction, group: str, served_here: bool) -> None:
    """The predicted gender, P(male) against the base rate and the threshold, and the truth (or,
    for a what-if, the stored session's answer)."""
    role = f"the **{group}** group's model" if served_here else f"the {group} model, for comparison"
    if served_here and not served:
        role = f"the **{group}** model (a session built from nothing has no A/B group)"
    st.markdown(f"Answered by {role}: `{model.model_id}` ({model.label})")
    answer_col, truth_col = ui.side_by_side(f"answer_row_{group}", (2, 1), min_width=200)
    with answer_col:
        st.metric("Predicted gender", prediction.prediction, help=f"model {model.model_id}")
        st.markdown(in_words(prediction, model.base_rate))
        beyond = beyond_training(record, model.card.training)
        if beyond:
            st.warning(beyond, icon=":material/warning:")
    with truth_col:
        if changed and served_here and served:
            st.metric("Stored session", served.prediction.prediction)
            st.markdown(f"P(male) {served.prediction.p_male:.2f} as stored, before the edits.")
        elif changed:
            st.metric("True gender", "none")
            st.markdown("An edited or built session: no visitor viewed it.")
        elif record.gender:
            right = record.gender == prediction.prediction
            st.metric("True gender", record.gender)
            st.markdown(
                ":green[:material/check_circle: the model got it right]"
                if right
                else ":red[:material/cancel: the model got it wrong]"
            )
            if ui.fitted_on(models, model, record.session_id):
                st.caption(IN_SAMPLE)
        else:
            st.metric("True gender", "unknown")
            st.markdown("Not recorded for this session.")
    ui.chart(
        plots.p_male_bar(prediction, model.base_rate),
        key=f"p_male_{group}",
        config={"displayModeBar": False},
    )


# -- what if: the change in words -----------------------------------------------------------------
if editing:
    st.caption(
        "What-if answers are computed on the spot and are not served predictions: they are not written "
        "to the prediction log, and the database is never changed."
    )
if assessment is None:
    st.info("Add a view below to see what the model says about this session.", icon=":material/add_circle:")
elif changed and served:
    found = whatif.changes(stored, draft)
    st.info(
        whatif.in_words(found, served.prediction.p_male, assessment.prediction.p_male, ui.shown), icon=":material/edit:"
    )
elif changed:
    st.info(
        f"A session built from nothing: {counted(draft.session().n_views, 'view')} "
        f"from {draft.start_time:%A %Y-%m-%d %H:%M:%S}, "
        f"lasting {duration_text(draft.duration)}: P(male) {assessment.prediction.p_male:.2f}.",
        icon=":material/construction:",
    )

# -- the answer (and the other model's, side by side) --------------------------------------------
if assessment is not None and other_assessment is None:
    answer(model, assessment.prediction, group, served_here=True)
elif assessment is not None:
    other_group = "control" if group == "treatment" else "treatment"
    served_col, other_col = ui.side_by_side("compare_row", (1, 1))
    with served_col:
        answer(model, assessment.prediction, group, served_here=True)
        ui.chart(plots.grouped_waterfall(explanation, groups), key="waterfall")
    with other_col:
        answer(other, other_assessment.prediction, other_group, served_here=False)
        other_groups = explain.grouped(other_assessment.explanation, record, explain.scheme_of(other))
        ui.chart(plots.grouped_waterfall(other_assessment.explanation, other_groups), key="waterfall_other")
if served and not changed:
    fitted = ui.fitted_on(models, model, record.session_id)
    st.download_button(
        "Download this answer as a report (HTML)",
        data=lambda: report.html(served, model, fitted),  # built on click, in the background
        file_name=report.file_name(record.session_id),
        mime="text/html",
        on_click="ignore",
        icon=":material/download:",
        key="report",
        help="One HTML file: the answer, the session and why, with interactive charts; opens without a network.",
    )

if served:
    ui.precomputed_score(engine, session_id)  # scored ahead (score --spark, import-scores), when there is one

# -- the session --------------------------------------------------------------------------------
st.subheader("The session" if not editing else "The session, as edited" if served else "The session you build")
if not editing:
    st.markdown(
        f"**Start** {record.start_time:%Y-%m-%d %H:%M:%S} ({record.start_time:%A}) · "
        f"**End** {record.end_time:%Y-%m-%d %H:%M:%S} · **Duration** {duration_text(record.duration)} · "
        f"**Views** {record.n_views}"
    )
    st.dataframe(
        explore.session_paths(record.views), hide_index=True, key="paths", height=min(400, 40 + 35 * len(record.views))
    )
else:
    boxes_from(draft)
    start_date, start_time, duration = st.columns(3)
    start_date.date_input(
        "Start date", key="whatif_date", on_change=retimed, min_value=whatif.FIRST_DAY, max_value=whatif.LAST_DAY
    )
    start_time.time_input("Start time", key="whatif_time", on_change=retimed, step=60)
    # Text, not a number box: Streamlit's read "1e5" as 1, silently. No max_chars: its counter
    # ("14/1020") meant nothing to a reader; parse_duration refuses a long text and says so.
    duration.text_input(
        "Duration",
        key="whatif_duration",
        on_change=retimed,
        help="Seconds (90 or 1e5), hours:minutes:seconds (1:30:00) or units (2 h 5 min).",
    )
    if note := st.session_state.pop(DURATION_NOTE, None):
        st.warning(note, icon=":material/warning:")
    st.caption(
        f"Ends {draft.end_time:%Y-%m-%d %H:%M:%S} ({draft.start_time:%A} start) · {counted(len(draft.paths), 'view')}"
    )
    for number, path in enumerate(draft.paths):
        # A row of the buttons' own width: fixed columns cut their symbols on a narrow screen.
        row = st.container(horizontal=True, vertical_alignment="center", key=f"whatif_view_{number}")
        row.markdown(f"{number + 1}", width="content")
        row.markdown(ui.shown(whatif.path_text(path), limit=200), width="stretch")
        row.button(
            "↑",
            key=f"whatif_up_{number}",
            disabled=number == 0,
            help="Move this view up",
            on_click=edit,
            args=(lambda d, i=number: d.moving(i, i - 1),),
        )
        row.button(
            "↓",
            key=f"whatif_down_{number}",
            disabled=number == len(draft.paths) - 1,
            help="Move this view down",
            on_click=edit,
            args=(lambda d, i=number: d.moving(i, i + 1),),
        )
        row.button(
            "✕",
            key=f"whatif_remove_{number}",
            help="Remove this view",
            on_click=edit,
            args=(lambda d, i=number: d.without(i),),
        )

    st.markdown("**Add a view** from the catalogue: every path A › B › C › D the logs hold")
    search, pick, place = st.columns([2, 4, 1], vertical_alignment="bottom")
    typed = search.text_input(
        "Search the catalogue",
        key="whatif_search",
        placeholder="e.g. B00009 D12",
        help="Parts of codes at any level, blank-separated: every part must match.",
    )  # no max_chars, whose counter ("14/1020") meant nothing to a reader: the length is checked here
    if len(typed) > ui.MAX_TYPED:
        st.caption(f"Only the first {ui.MAX_TYPED:,} of the {len(typed):,} characters typed are searched.")
        typed = typed[: ui.MAX_TYPED]
    paths = ui.category_paths()
    if paths is None:  # a large database with no summaries stored: never grouped while the page waits
        st.info(summary.too_large_note(), icon=":material/summarize:")
    found = whatif.Catalogue(paths).search(typed) if paths is not None else []
    chosen = pick.selectbox(
        "Path",
        found,
        format_func=whatif.path_text,
        key="whatif_pick",
        placeholder="no path matches" if typed.strip() else "the catalogue is empty",
    )
    at_key = f"whatif_at_{len(draft.paths)}"  # a new box for each length: its range and default (the end) follow
    place.number_input(
        "At view", key=at_key, min_value=1, max_value=len(draft.paths) + 1, value=len(draft.paths) + 1, step=1
    )
    if typed.strip() and not found:
        st.caption(f"No path of the catalogue has {ui.shown(typed)} in its codes.")
    st.button(
        "Add this view",
        key="whatif_add",
        disabled=chosen is None,
        icon=":material/add:",
        on_click=add_view,
        args=(at_key,),
    )

    restart, share = st.columns([1, 3])
    if served:
        restart.button(
            "Reset to the stored session",
            key="whatif_reset",
            icon=":material/restart_alt:",
            disabled=not changed,
            on_click=put,
            args=(served.assessment.record.session_id, stored),
        )
    else:
        restart.button("Leave the builder", key="whatif_leave", icon=":material/close:", on_click=stop_building)
    link = shareable(draft)
    if not changed:
        share.caption("Edit the session to get a link that opens the edited one.")
    elif link is None:
        share.caption(
            f"This session is too long to share as a link (at most {whatif.MAX_VIEWS} views, "
            f"{whatif.MAX_DURATION.days} days)."
        )
    else:
        # Encoded: an id may hold "&", "#", "+" or "%", which would open another session or cut the link.
        query = urlencode({"session": served.assessment.record.session_id, WHATIF: link} if served else {BUILD: link})
        base = (st.context.url or "").split("?")[0]
        share.markdown(
            f"**Share this session**: the address bar holds it, or copy {ui.shown(f'{base}?{query}', limit=20_000)}"
        )

if assessment is None:
    st.stop()

# -- why ----------------------------------------------------------------------------------------
st.subheader("Why")
st.caption(
    f"SHAP contributions in {explanation.units}, from a typical session (the base value) to this one, "
    "grouped: each top-level category the session viewed with everything under it, the categories it did "
    "not view, when it started, its length. Blue pushes towards male, pink towards female."
)
unseen = explain.unseen_codes(model, record)
if unseen:
    more = f" and {len(unseen) - 10:,} more" if len(unseen) > 10 else ""
    st.caption(f"Never seen in training, so no part of this answer: {', '.join(map(ui.shown, unseen[:10]))}{more}.")
if other_assessment is None:
    ui.chart(plots.grouped_waterfall(explanation, groups), key="waterfall")
st.markdown("**Each bar's parts**")
for number, bar in enumerate(groups):  # not `group`: that is the A/B group, in the JSON below
    name = f"{ui.shown(bar.code)} and below" if bar.code is not None else bar.name
    with st.expander(f"{name} · {bar.shap:+.3f} · {counted(len(bar.parts), 'contribution')}"):
        st.dataframe(
            bar.parts[["label", "shap", "group"] if bar.kind == "other" else ["label", "shap"]],
            hide_index=True,
            key=f"group_{number}",
            column_config={"label": "feature", "shap": st.column_config.NumberColumn("SHAP", format="%+.3f")},
        )
tree_col, table_col = ui.side_by_side("hierarchy_row", (3, 2))
with tree_col:
    st.markdown("**Up the catalogue**: contributions summed over A → B → C → D (colour: net push)")
    ui.chart(plots.hierarchy_sunburst(explain.hierarchy(explanation, record)), key="sunburst")
with table_col:
    st.markdown("**Every contribution**")
    st.dataframe(
        explanation.contributions[["shap", "label"]],  # the number first: a long label pushed it out of sight
        hide_index=True,
        key="contributions",
        height=440,
        column_config={"label": "feature", "shap": st.column_config.NumberColumn("SHAP", format="%+.3f")},
    )

if changed:
    with st.expander("The what-if answer as JSON (not served, not logged)"):
        st.json(assessment.prediction.as_json() | {"GROUP": group})
else:
    with st.expander("The answer as JSON (the original service's format, with the A/B group)"):
        st.json(served.as_json())
