"""Streamlit glue shared by every page: settings, cached engine, model and queries, charts, the
sidebar, the session picker and error banners. Pages call `gender/` through here and only display.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import logging
import os
import random
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import plotly.graph_objects as go
import plotly.offline
import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from gender import answers, artifact, db, plots, serve, suggest, summary, synth
from gender.config import Settings, load_settings
from gender.errors import DatabaseUnavailable, GenderError, ModelUnavailable
from gender.trained import Model, Models

QUERY_TTL = 300  # seconds a cached query result is reused; imports show up after this at the latest
HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"  # served at /app/static/ (server.enableStaticServing in .streamlit/config.toml)
log = logging.getLogger("gender.ui")


# Until some session has called st.navigation, Streamlit treats a pages/ folder as a legacy
# multipage app and runs a page's script without streamlit_app.py: the first visit after a start,
# if it is a deep link (/model), would get the page without the router's frame. Every page imports
# this module, and the first import in a process is in that first visit: end the legacy mode for
# all sessions and run the visit again, through the router.
if PagesManager.uses_pages_directory:
    PagesManager.uses_pages_directory = False
    st.rerun()


# -- settings, engine, model --------------------------------------------------------------------


def settings() -> Settings:
    return load_settings()


@st.cache_resource(show_spinner=False)
def _engine(url: str):
    return db.connect(url)


def engine():
    return _engine(settings().db_url.render_as_string(hide_password=False))


def _url_key() -> str:
    """The cache key of the current database (the URL itself; it never leaves the server)."""
    return settings().db_url.render_as_string(hide_password=False)


def models() -> Models:
    """The treatment and control models, reloaded after a retrain (`artifact.current`)."""
    return artifact.current(settings().model_dir)


def model() -> Model:
    """The treatment model: the one chosen by training."""
    return models().treatment


# -- cached queries (each keyed by the database URL) -------------------------------------------


@st.cache_data(ttl=QUERY_TTL, show_spinner=False)
def _counts(url_key: str) -> dict:
    return db.table_counts(engine())


def counts() -> dict:
    return _counts(_url_key())


@st.cache_data(ttl=QUERY_TTL, show_spinner=False)
def _start_dates(url_key: str):
    return db.start_dates(engine())


def start_dates():
    """The days the first and the last session started, or None (`db.start_dates`)."""
    return _start_dates(_url_key())


@st.cache_data(ttl=QUERY_TTL, show_spinner="Reading the population summaries…")
def _stored_summaries(url_key: str, computed_at):
    return summary.load(engine())


@st.cache_data(ttl=QUERY_TTL, show_spinner="Summarising the logs (no summaries are stored)…")
def _live_summaries(url_key: str):
    return summary.live(engine())


def summaries() -> summary.Summaries | None:
    """The population summaries (`gender.summary`): the stored set, read again as soon as a new
    one is stored; without one, computed live on a small database; None on a large one."""
    info = summary.stored_info(engine())  # one row a rerun: a new set shows at once
    if info is not None:
        return _stored_summaries(_url_key(), info.computed_at)
    return _live_summaries(_url_key())


@st.cache_data(ttl=QUERY_TTL, show_spinner=False)
def _session_count(url_key: str, computed_at) -> int:
    return summary.session_count(engine())


def stale_note(info: summary.SummaryInfo) -> str | None:
    """Whether the database has changed since the summaries (counted again for each new set)."""
    return info.stale_note(_session_count(_url_key(), info.computed_at))


def category_paths():
    """Every path A → B → C → D with its views, most viewed first (the what-if editor's catalogue),
    from the population summaries; None on a large database that has none stored."""
    found = summaries()
    return None if found is None else found.paths


@st.cache_data(ttl=30, show_spinner="Reading the prediction log…")
def _served(url_key: str):
    return db.served_predictions(engine())


def served():
    """The prediction log with each session's known gender (refreshed every 30 s)."""
    return _served(_url_key())


@st.cache_data(show_spinner=False, max_entries=8)
def _trained_on(model_dir: str, slot: str, model_id: str):
    return artifact.trained_on(Path(model_dir), slot, model_id)


def trained_elsewhere(models: Models) -> str | None:
    """The database the models were trained on, when it is not this one (the demo's model on real logs)."""
    return artifact.trained_elsewhere(models.treatment.card, settings().db_label)


def trained_on(models: Models) -> dict:
    """model id -> the hashes of the sessions it was fitted on (None: not recorded), for `monitor.judged`.
    None fitted here when the models were trained on another database: its ids name other sessions."""
    served_models = [model for model in (models.treatment, models.control) if model is not None]
    if trained_elsewhere(models):
        return {m.model_id: artifact.session_hashes([]) for m in served_models}
    return {m.model_id: _trained_on(str(settings().model_dir), m.slot, m.model_id) for m in served_models}


def fitted_on(models: Models, model: Model, session_id: str) -> bool:
    """Whether `model` was fitted on this session (as recorded; False when not recorded): its
    answer is then in-sample, right far more often than on a session it never saw."""
    return artifact.among(trained_on(models).get(model.model_id), session_id)


def log_served(answer: serve.Served) -> None:
    """Log a served prediction once per browser session and model; the database skips repeats too."""
    key = (answer.prediction.session_id, answer.prediction.model)
    logged = st.session_state.setdefault("logged_predictions", set())
    if key not in logged:
        logged.add(key)
        serve.log_in_background(engine(), answer)


# -- errors and requirements --------------------------------------------------------------------


@contextlib.contextmanager
def banners():
    """Show a problem as one clear banner instead of a traceback, and stop the page there."""
    try:
        yield
    except GenderError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    except Exception:  # a bug: log it on the server, keep the page calm
        log.exception("unexpected error on a page")
        st.error("Something went wrong on this page; the details are in the server log.", icon=":material/error:")
        st.stop()


def require_database():
    """The engine of a reachable FTP database, or a banner (and an offer of demo data) and stop."""
    current = engine()
    try:
        db.check_schema(current)
    except DatabaseUnavailable as exc:
        st.error(str(exc), icon=":material/error:")
        if settings().is_embedded_demo and st.button("Create the demo database", key="create_demo"):
            progress = st.progress(0.0, "writing synthetic sessions…")
            with banners():
                synth.create_demo(current, progress=lambda f, m: progress.progress(f, m))
            st.cache_data.clear()
            st.rerun()
        st.stop()
    return current


def require_models() -> Models:
    """The models, or a note saying there are none and a button to train them here."""
    try:
        return models()
    except ModelUnavailable as exc:
        st.warning(str(exc), icon=":material/model_training:")
        training_button("Train a model on this database", key="train_models", type="primary")
        st.stop()


# -- training from the dashboard ----------------------------------------------------------------


@dataclass
class TrainingRun:
    """A training run started from the dashboard. It runs in a server thread of its own, not in the
    page's script: leaving the page stops its script, and a run inside it went on computing for
    minutes only to be thrown away. Every page shows its progress in the sidebar while it runs."""

    started: float  # time.monotonic()
    fraction: float = 0.0
    message: str = "reading the labelled sessions"
    error: str | None = None  # why it failed, once it has
    done: threading.Event = field(default_factory=threading.Event)


@st.cache_resource(show_spinner=False)
def _trainings() -> dict[Path, TrainingRun]:
    """The newest training run of each model folder, for every session of this server."""
    return {}


_starting_training = threading.Lock()  # two analysts pressing Train at once start one run


def _start_training() -> TrainingRun:
    """The model folder's running training, or a new one on the current database."""
    folder, database = settings().model_dir, engine()
    with _starting_training:
        running = _trainings().get(folder)
        if running and not running.done.is_set():
            return running
        run = _trainings()[folder] = TrainingRun(started=time.monotonic())
    threading.Thread(target=_train, args=(run, database, folder), name="gender-train", daemon=True).start()
    return run


def _train(run: TrainingRun, database, folder: Path) -> None:
    from gender.train import train

    def progress(fraction: float, message: str) -> None:
        run.fraction, run.message = fraction, message

    try:
        train(database, folder, progress)
        st.cache_data.clear()  # every session's cached answers came from the models replaced
    except GenderError as exc:
        run.error = str(exc)
    except Exception:  # a bug: log it on the server, keep the page calm
        log.exception("training from the dashboard failed")
        run.error = "Training failed; the details are in the server log."
    finally:
        run.done.set()


def training_button(label: str, key: str, **button) -> None:
    """A button that trains on the current database; while a training runs, its progress instead."""
    run = _trainings().get(settings().model_dir)
    if run is None or run.done.is_set():
        if run is not None and run.error:
            st.error(f"The last training failed: {run.error}", icon=":material/error:")
        place = st.empty()
        if not place.button(label, key=key, **button):
            return
        place.empty()  # the progress takes the button's place while it runs
        run = _start_training()
    _follow(run)


@st.fragment(run_every=1.0)
def _follow(run: TrainingRun) -> None:
    """The training's progress, redrawn every second; the whole page again once it has finished."""
    if run.done.is_set():
        st.rerun()
    so_far = answers.duration_text(timedelta(seconds=round(time.monotonic() - run.started)))
    st.progress(run.fraction, f"{run.message} ({so_far} so far; it goes on if you leave this page)")


# -- charts -------------------------------------------------------------------------------------
# Drawn by the plotly.js that ships with the plotly package, copied into static/ and loaded as a
# plain script, which the browser keeps compiled from one tab to the next; Streamlit's own plotly
# chunk costs every new tab 0.7 s here, cached or not (BENCHMARKS.md). Streamlit serves static/
# without caching headers, so the browser judges freshness by the file's date: the copy is dated
# long ago (its name holds the version, so its content never changes) and is reused without asking
# the server; asked again, Chromium often compiled it anew.
_PLOTLY_JS_MTIME = 946_684_800  # 2000-01-01
_copying_plotly_js = threading.Lock()  # the first pages of several sessions may arrive at once

_draw_chart = st.components.v2.component("gender_lens.chart", js=(HERE / "chart.js").read_text(), isolate_styles=False)


@functools.cache
def _plotly_js_url() -> str | None:
    """Where the browser gets plotly.js, copied into static/ on the first call in this process;
    None when it cannot be served from there."""
    if not st.get_option("server.enableStaticServing"):
        return None
    name = f"plotly-{plotly.offline.get_plotlyjs_version()}.min.js"  # a new version, a new URL
    source, target = importlib.resources.files("plotly") / "package_data" / "plotly.min.js", STATIC / name
    try:
        with _copying_plotly_js:
            copied = target.stat() if target.is_file() else None
            if not copied or (copied.st_size, copied.st_mtime) != (source.stat().st_size, _PLOTLY_JS_MTIME):
                STATIC.mkdir(exist_ok=True)
                partial = target.with_name(f".{name}.{os.getpid()}")  # never a half-written script
                shutil.copyfile(source, partial)
                os.utime(partial, (_PLOTLY_JS_MTIME, _PLOTLY_JS_MTIME))
                os.replace(partial, target)
    except OSError as exc:
        log.warning("cannot copy plotly.js into %s (%s): charts use Streamlit's own plotly", STATIC, exc)
        return None
    base = st.get_option("server.baseUrlPath").strip("/")
    return f"/{base}/app/static/{name}" if base else f"/app/static/{name}"


def chart(figure: go.Figure, key: str, config: dict | None = None) -> None:
    """A plotly figure across its container, drawn with the cached plotly.js where it is served,
    in the page's theme (chart.js swaps the colours of `plots.ON_DARK` on a dark page; without
    static/, st.plotly_chart gives the figure the theme's background and text, and swaps none)."""
    url = _plotly_js_url()
    if url is None:
        st.plotly_chart(figure, key=key, config=config)
    else:
        _draw_chart(
            data={"figure": figure.to_json(), "plotlyUrl": url, "config": config or {}, "onDark": plots.ON_DARK},
            key=key,
        )


# -- shared widgets -----------------------------------------------------------------------------


def side_by_side(key: str, weights: tuple[float, ...], min_width: int = 380) -> list:
    """Containers in one row, as wide as `weights` say, where each gets `min_width` pixels; else
    each on a row of its own. st.columns stacks only in a window under 640 pixels, so beside the
    sidebar on an 800-pixel screen it squeezed two charts to 230 pixels each."""
    rules = "".join(  # the key is a CSS class on the row (Streamlit's st-key-…), its parts its children
        f".st-key-{key} > :nth-child({n}) {{ flex: {weight} 1 0; min-width: min({min_width}px, 100%); }}"
        for n, weight in enumerate(weights, start=1)
    )
    st.html(f"<style>{rules}</style>")
    row = st.container(horizontal=True, key=key)
    return [row.container(key=f"{key}_{n}") for n in range(1, len(weights) + 1)]


def sidebar() -> None:
    """What every page shows on the left: the data source, its sessions and the model."""
    with st.sidebar:
        st.markdown("### gender-lens")
        try:
            current = settings()
        except GenderError as exc:
            st.error(str(exc))
            return
        st.caption("Data source")
        # Inline code, not st.code: its syntax highlighter costs every new tab 0.6 s to load.
        st.markdown(shown(current.db_label, limit=200))
        try:
            n = counts()
            st.markdown(f"**{n['sessions']:,}** sessions: {n['labelled']:,} labelled · {n['unknown']:,} unknown gender")
        except GenderError:
            st.markdown("Database unreachable")
        st.caption("Model")
        run = _trainings().get(current.model_dir)
        if run is not None and not run.done.is_set():
            _follow(run)  # on every page: the models are about to change
        try:
            serving = models()
            treatment = serving.treatment
            st.markdown(
                f"**{treatment.model_id}**  \n{treatment.label}  \n"
                f"trained {treatment.card.trained} UTC  \n"
                f"CV ROC-AUC **{treatment.cv_auc:.3f}**"
            )
            if elsewhere := trained_elsewhere(serving):  # say so: e.g. the demo's model on real logs
                st.caption(f"trained on another database: {shown(elsewhere, limit=200)}")
            if serving.control:
                st.caption(
                    f"A/B: {current.treatment_share:.0%} of sessions get this model, "
                    f"the rest the control `{serving.control.model_id}`"
                )
        except GenderError:
            st.markdown("No model yet")


def _pick_random(key: str, labelled: bool) -> None:
    try:
        chosen = db.random_session_id(engine(), labelled, random.Random())
    except GenderError:
        return  # the page's own check of the database shows the banner
    if chosen is None:
        kind = "labelled sessions" if labelled else "sessions with unknown gender"
        st.session_state[f"{key}_note"] = f"There are no {kind} in this database."
    else:
        st.session_state[key] = chosen


CHOSEN_SESSION = "chosen_session"  # the session id last chosen on any page


RANDOM_PICKS = (  # the picker's buttons: (its key's suffix, its label, what it picks)
    ("labelled", "Labelled", "A random session whose gender is recorded: the answer can be checked"),
    ("unknown", "Unknown gender", "A random session whose gender is unknown, as the shop's visitors are"),
)


def session_picker(key: str) -> str:
    """A session id box (filled from ?session=… on arrival) with two random-pick buttons.

    Returns the id as typed ("" when blank; blanks around an id are dropped only when the database
    has no id with them, see `db.as_typed`); keeps ?session= in step for sharing and remembers it
    for the other pages (a widget's own state is dropped when its page is left).
    """
    if key not in st.session_state:
        st.session_state[key] = st.query_params.get("session", st.session_state.get(CHOSEN_SESSION, ""))
    # The box takes what the buttons leave: fixed columns cut "Unknown gender" beside the sidebar.
    row = st.container(horizontal=True, vertical_alignment="bottom")
    row.text_input("Session id", key=key, placeholder="e.g. u10003", max_chars=MAX_TYPED)
    # A die and the word that tells them apart: a narrow screen cut "Random labelled session"
    # and "Random unlabelled session" to the same "Random l…".
    for kind, label, picks in RANDOM_PICKS:
        row.button(
            label,
            icon=":material/casino:",
            key=f"{key}_{kind}",
            help=picks,
            on_click=_pick_random,
            args=(key, kind == "labelled"),
        )
    if note := st.session_state.pop(f"{key}_note", None):
        st.info(note)
    value = st.session_state[key] if st.session_state[key].strip() else ""
    st.session_state[CHOSEN_SESSION] = value
    if value and st.query_params.get("session") != value:
        st.query_params["session"] = value
    elif not value and "session" in st.query_params:
        del st.query_params["session"]
    return value


# A box holds more than an id column, so that a longer paste is told why it finds nothing.
MAX_TYPED = 4 * db.SESSION_ID_LENGTH

# -- finding a session id as one types (session_search.js) ----------------------------------------
_search_box = st.components.v2.component(
    "gender_lens.session_search",
    js=(HERE / "session_search.js").read_text(),
    css=(HERE / "session_search.css").read_text(),
    isolate_styles=False,
)


def session_search(key: str) -> None:
    """A box that suggests session ids as one types: at most db.SUGGESTIONS ids that start with the
    text, from a range of the primary key (milliseconds at a million sessions). Picking one (or
    Enter) puts it in `session_picker(key)`'s box and opens it, ?session= included.

    Each keystroke's suggestions come from the route GET /_gender/suggest (gender/suggest.py),
    asked by the box's script with a token minted here, after the access gate: no rerun. When the
    route cannot be used (a failed request, a refused token; or AppTest) the text goes to Python as
    the box's state "query" and this fragment answers it: a rerun of the box only, never the page
    under it. Both answer with `suggest.answer`."""
    _session_search(key)


suggestion_label = suggest.label  # an id as a suggestion shows it (the Population page uses it too)


def _open_picked(key: str, search_key: str) -> None:
    picked = (st.session_state.get(search_key) or {}).get("picked")
    if isinstance(picked, str) and picked.strip():
        st.session_state[key] = picked  # session_picker's box: it keeps ?session= and the other pages in step
        st.session_state[f"{search_key}_open"] = True


@st.fragment
def _session_search(key: str) -> None:
    search_key = f"{key}_search"
    query = (st.session_state.get(search_key) or {}).get("query") or ""
    _search_box(
        data={
            **suggest.answer(query, engine),
            "label": "Find a session: type the start of its id",
            "placeholder": "e.g. u100",
            "maxLength": MAX_TYPED,
            # The route the box's script asks as one types, and its pass: streamlit_app.py's access
            # gate has let this visitor in, or this would not run.
            "suggestUrl": suggest.route_path(),
            "token": suggest.mint(),
        },
        key=search_key,
        default={"query": ""},
        on_query_change=lambda: None,
        on_picked_change=functools.partial(_open_picked, key, search_key),
    )
    if st.session_state.pop(f"{search_key}_open", False):
        st.rerun()  # the whole page, with the picked session


@st.cache_data(ttl=30, show_spinner="Finding sessions…", max_entries=50)
def _found_sessions(url_key: str, filters: db.SessionFilter, limit: int) -> db.FoundSessions:
    return db.find_sessions(engine(), filters, limit)


def found_sessions(filters: db.SessionFilter, limit: int = 100) -> db.FoundSessions:
    """The first `limit` sessions matching `filters` and their count (the Find page; kept 30 s)."""
    return _found_sessions(_url_key(), filters, limit)


def no_session(session_id: str) -> None:
    """The warning for a session id the database does not hold, saying why when it cannot."""
    typed = session_id.strip()
    reason = too_long(typed, "session id", db.SESSION_ID_LENGTH) or " in this database"
    st.warning(f"No session {shown(typed)}{reason}.", icon=":material/search_off:")


def too_long(text: str | None, what: str, limit: int) -> str:
    """Why typed text finds nothing when it is longer than the tables hold ("" when it is not)."""
    length = len((text or "").strip())
    return f" (a {what} has at most {limit} characters, and this one has {length:,})" if length > limit else ""


def precomputed_score(engine, session_id: str) -> None:
    """The session's scores computed ahead (`score --spark`, loaded by `import-scores`): model,
    when, P(male), decision, top contributions in words, and whether that model serves it now.
    Nothing when none was imported; a problem is a note here, never the page's end."""
    from gender import scores

    try:
        found = scores.scores_of(engine, session_id)
        if not found:
            return
        serving, current = models(), settings()
        stored_id = found[0].session_id
        group = serve.group_of(stored_id, current.ab_salt, current.treatment_share) if serving.control else "treatment"
    except GenderError as exc:
        st.caption(f"Precomputed scores not shown: {exc}")
        return
    st.subheader("Precomputed score")
    st.caption("Scored ahead, off the dashboard (`score --spark`, loaded with `import-scores`); newest first.")
    for number, score in enumerate(found):
        scored = f"{score.scored_at:%Y-%m-%d %H:%M} UTC" if score.scored_at else "at an unknown time"
        st.markdown(
            f"**{score.prediction}** · P(male) **{score.p_male:.3f}** · model {shown(score.model_id, 64)} "
            f"({score.ab_group} group when scored) · scored {scored}, imported {score.imported_at:%Y-%m-%d %H:%M} UTC"
        )
        st.caption(f"That model is {scores.serving_now(score, serving, group)}.")
        if score.contributions is None:
            st.caption("Scored without `--explain`: no contributions.")
        elif score.contributions:
            rows = [
                {"contribution": c.label, "shap": c.shap, "pushes": "towards male" if c.shap > 0 else "towards female"}
                for c in score.contributions
            ]
            st.dataframe(
                rows,
                hide_index=True,
                key=f"precomputed_{number}",
                column_config={"shap": st.column_config.NumberColumn("SHAP", format="%+.3f")},
            )


WORD_JOINER = "\u2060"


def shown(text: str, limit: int = 40) -> str:
    """User text fit to echo in a Markdown message: cut short, control characters made visible,
    and set as inline code, where no link, HTML, LaTeX or :icon: is ever rendered."""
    if not text.isprintable():  # only what cannot be seen is escaped: "Müller\u200b", not "M\xfcller\u200b"
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    # Streamlit's frontend rewrites every ":material/" to ":material_" before parsing, code spans
    # included; an invisible word joiner keeps what is shown exactly what was typed.
    text = text.replace(":material/", f":{WORD_JOINER}material/")
    if not text:
        return ""
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"
