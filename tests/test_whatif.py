"""What if: an edited or built session, answered as a stored one is; its changes in words; its link.

The what-if's P(male) is checked against the model on the same session built by hand (a
`Session` constructed here, scored by `Model.p_male`), on the page too (AppTest).
"""

import base64
import json
import re
import time
import zlib
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, insert, select
from streamlit.testing.v1 import AppTest

from gender import answers, artifact, db, predict, serve, summary, whatif
from gender.config import load_settings
from gender.session import JOIN, Session
from gender.whatif import BadLink, Change, Draft
from tests.conftest import PROJECT
from tests.live import page_text, sqlite_copy

TIMEOUT = 120


# -- the draft and its link (no model) ------------------------------------------------------------

START = datetime(2014, 11, 14, 21, 0, 0)
PATHS = (
    ("A00001", "B00009", "C00021", "D12345"),
    ("A00002", "B00002", "C00002", "D00002"),
    ("A00002", "B00002", "C00003", "D00003"),
)


def draft(paths=PATHS, start=START, seconds=600) -> Draft:
    return Draft(paths, start, timedelta(seconds=seconds))


def test_edits_give_new_drafts():
    stored = draft()
    assert stored.without(1).paths == (PATHS[0], PATHS[2])
    assert stored.adding(("A9", "B9", "C9", "D9"), 0).paths == (("A9", "B9", "C9", "D9"), *PATHS)
    assert stored.adding(("A9", "B9", "C9", "D9")).paths[-1] == ("A9", "B9", "C9", "D9")
    assert stored.moving(0, 2).paths == (PATHS[1], PATHS[2], PATHS[0])
    assert stored.starting(START.replace(hour=9)).end_time == START.replace(hour=9, minute=10)
    assert stored.lasting(timedelta(seconds=5)).end_time == START + timedelta(seconds=5)
    assert stored.paths == PATHS  # unchanged
    with pytest.raises(IndexError):
        stored.without(3)


def test_the_draft_is_the_session_built_by_hand():
    edited = draft().without(0).starting(START.replace(hour=3))
    by_hand = Session("u1", START.replace(hour=3), START.replace(hour=3, minute=10), None, PATHS[1:])
    assert edited.session("u1") == by_hand
    assert Draft.of(by_hand) == edited


WEIRD = (
    ("Women/Shoes", "Boots;Booties", "C 1", "D:1"),
    ("ženy", "👠", "<b>x</b>", "[a](javascript:alert(1))"),
    ("A", "B"),  # a short path
    (":material/home:", "`tick`", "\\", "%20&x=1#y"),
)


@pytest.mark.parametrize("paths", [(), PATHS, WEIRD, PATHS * 100])
def test_a_link_round_trips_and_is_url_safe(paths):
    original = draft(paths, START.replace(second=41), 12_345)
    link = original.link()
    assert re.fullmatch(r"[0-9A-Za-z._-]+", link)
    assert Draft.from_link(link) == original


def test_a_link_is_compact():
    real_like = draft(tuple(("A00002", "B00002", f"C{n % 7:05d}", f"D{n:05d}") for n in range(12)))
    assert len(real_like.link()) < 250  # a 12-view session as u10003's: a link one can paste in a chat


def packed(payload, raw: bytes | None = None) -> str:
    data = raw if raw is not None else json.dumps(payload).encode()
    return "1." + base64.urlsafe_b64encode(zlib.compress(data)).rstrip(b"=").decode()


GOOD = ["2014-11-14T21:00:00", 60, [["A", "B", "C", "D"]]]
HOSTILE = {
    "empty": "",
    "no version": "abc",
    "another version": "2." + packed(GOOD)[2:],
    "not base64": "1.<script>alert(1)</script>",
    "blanks": "1.eJ yr",
    "bad padding": "1.a",
    "not zlib": "1." + base64.urlsafe_b64encode(b"hello world").decode(),
    "cut short": packed(GOOD)[:-6],
    "more after it": "1."
    + base64.urlsafe_b64encode(zlib.compress(json.dumps(GOOD).encode()) + b"junk").rstrip(b"=").decode(),
    "too long": "1." + "A" * 10_000,
    "cut after the version": "1.",
    "a zip bomb": packed(None, b"[" + b" " * 50_000_000 + b"]"),
    "deep nesting": packed(None, b"[" * 100_000 + b"]" * 100_000),
    "not UTF-8": packed(None, b'["\xff\xfe"]'),
    "not JSON": packed(None, b"{nope"),
    "an object": packed({"start": "2014-11-14T21:00:00"}),
    "two fields": packed(GOOD[:2]),
    "a number for a start": packed([20141114, 60, []]),
    "a start without time": packed(["2014-11-14", 60, []]),
    "year 9999": packed(["9999-12-31T23:59:59", 60, []]),
    "year 1": packed(["0001-01-01T00:00:00", 60, []]),
    "negative duration": packed(["2014-11-14T21:00:00", -1, []]),
    "fractional duration": packed(["2014-11-14T21:00:00", 1.5, []]),
    "NaN duration": packed(None, b'["2014-11-14T21:00:00", NaN, []]'),
    "true as duration": packed(["2014-11-14T21:00:00", True, []]),
    "a year long": packed(["2014-11-14T21:00:00", 365 * 86_400, []]),
    "huge number": packed(None, b'["2014-11-14T21:00:00", 1' + b"0" * 4000 + b", []]"),
    "views not a list": packed(["2014-11-14T21:00:00", 60, "A/B/C/D"]),
    "a view of text": packed(["2014-11-14T21:00:00", 60, ["A/B/C/D"]]),
    "an empty path": packed(["2014-11-14T21:00:00", 60, [[]]]),
    "five levels": packed(["2014-11-14T21:00:00", 60, [["A", "B", "C", "D", "E"]]]),
    "an empty code": packed(["2014-11-14T21:00:00", 60, [["A", "", "C", "D"]]]),
    "a number for a code": packed(["2014-11-14T21:00:00", 60, [["A", 1, "C", "D"]]]),
    "a code too long": packed(["2014-11-14T21:00:00", 60, [["A", "B" * 256, "C", "D"]]]),
    "the unit separator": packed(["2014-11-14T21:00:00", 60, [["A", f"B{JOIN}C", "C", "D"]]]),
    "too many views": packed(["2014-11-14T21:00:00", 60, [["A", "B", "C", "D"]] * 501]),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_link_is_refused_in_words(name):
    started = time.perf_counter()
    with pytest.raises(BadLink) as refused:
        Draft.from_link(HOSTILE[name])
    assert time.perf_counter() - started < 1
    message = str(refused.value)
    assert message.startswith("the link") or message.startswith("a view in the link")
    assert "<script>" not in message and "Traceback" not in message


def test_a_link_cut_after_its_version_says_so():
    with pytest.raises(BadLink, match=re.escape("the link holds no session after its version (it was cut)")):
        Draft.from_link("1.")


def test_a_link_of_anything_but_text_is_refused():
    for value in (None, 3, ["1.abc"], b"1.abc"):
        with pytest.raises(BadLink):
            Draft.from_link(value)


def test_a_good_packed_link_reads():
    assert Draft.from_link(packed(GOOD)) == Draft((("A", "B", "C", "D"),), START, timedelta(seconds=60))


# -- the changes in words ------------------------------------------------------------------------


def test_the_issues_sentence():
    stored = draft(PATHS[1:])
    found = whatif.changes(stored, stored.adding(PATHS[0]))
    assert found == [Change("add", PATHS[0], after=3)]
    assert (
        whatif.in_words(found, 0.07, 0.31)
        == "Adding A00001 › B00009 › C00021 › D12345 moved P(male) from 0.07 to 0.31."
    )


def test_changes_name_removed_moved_added_views_and_the_times():
    stored = draft()
    assert whatif.changes(stored, stored) == []
    assert whatif.changes(stored, stored.without(1)) == [Change("remove", PATHS[1], before=2)]
    assert whatif.changes(stored, stored.moving(0, 2)) == [Change("move", PATHS[0], before=1, after=3)]
    later = stored.starting(START.replace(hour=23, minute=5)).lasting(timedelta(seconds=75))
    words = [change.words() for change in whatif.changes(stored, later)]
    assert words == ["starting at 23:05:00 instead of 21:00:00", "lasting 1 min 15 s instead of 10 min 00 s"]
    next_day = whatif.changes(stored, stored.starting(START + timedelta(days=1)))[0].words()
    assert next_day == "starting at 21:00:00 on Saturday 2014-11-15 instead of 21:00:00 on Friday 2014-11-14"
    # a repeated view removed: named once, in its place
    repeated = draft((PATHS[0], PATHS[1], PATHS[0]))
    assert whatif.changes(repeated, repeated.without(2)) == [Change("remove", PATHS[0], before=3)]
    many = whatif.changes(stored, draft(()))
    sentence = whatif.in_words(many, 0.5, 0.5, quote=lambda text: f"`{text}`")
    assert sentence.startswith("Removing `A00001 › B00009 › C00021 › D12345` (view 1), removing")
    assert sentence.endswith("left P(male) at 0.50.")
    assert whatif.in_words([], 0.2, 0.2) == "The stored session, unchanged: P(male) 0.20."


# -- the catalogue ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_engine(trained_demo):
    engine = db.connect(trained_demo[0])
    yield engine
    engine.dispose()


def test_the_catalogue_holds_every_path_once_with_its_views(demo_engine):
    paths = summary.live(demo_engine).paths  # what summarize stores and the page reads
    with demo_engine.connect() as conn:
        assert paths["views"].sum() == conn.execute(select(func.count()).select_from(db.product)).scalar()
    assert not paths.duplicated(db.CATEGORY_NAMES).any()
    assert paths["views"].is_monotonic_decreasing
    catalogue = whatif.Catalogue(paths)
    assert catalogue.search("")[0] == tuple(paths.iloc[0][db.CATEGORY_NAMES])
    a, b, _, d = paths.iloc[-1][db.CATEGORY_NAMES]
    found = catalogue.search(f"{b.lower()} {d}", limit=1000)
    assert found and all(path[1] == b or b.lower() in " ".join(path).lower() for path in found)
    assert all(d in "".join(path) for path in found)
    assert catalogue.search("no such code at all") == []
    assert len(catalogue.search("", limit=7)) == 7


# -- answered as a stored session is --------------------------------------------------------------


@pytest.fixture(scope="module")
def served_session(trained_demo, demo_engine):
    """A stored session of at least four views, its group's model (as serve.serve picks it) and its draft."""
    url, model_dir = trained_demo
    models = artifact.current(model_dir)
    settings = load_settings()
    with demo_engine.connect() as conn:
        query = select(db.product.c.session_id).group_by(db.product.c.session_id).having(func.count() >= 4)
        candidates = conn.execute(query.limit(200)).scalars().all()
    # its first four views all different, so that "view 1" is the only way to name the first
    session_id = next(s for s in candidates if len(set(Session.load(demo_engine, s).paths[:4])) == 4)
    served = serve.serve(demo_engine, models, session_id, settings.ab_salt, settings.treatment_share)
    return served, models.of(served.group), Draft.of(served.assessment.record)


def by_hand(model, session_id, start, end, paths) -> float:
    """P(male) of a session built here, field by field, scored by the model directly."""
    return float(model.p_male(Session(session_id, start, end, None, paths).frame)[0])


EDITS = {
    "remove": lambda d: (d.without(0), d.paths[1:], d.start_time, d.duration),
    "add": lambda d: (d.adding(d.paths[-1], 1), (d.paths[0], d.paths[-1], *d.paths[1:]), d.start_time, d.duration),
    "reorder": lambda d: (d.moving(0, 3), (*d.paths[1:4], d.paths[0], *d.paths[4:]), d.start_time, d.duration),
    "start": lambda d: (d.starting(START), d.paths, START, d.duration),
    "duration": lambda d: (d.lasting(timedelta(hours=1)), d.paths, d.start_time, timedelta(hours=1)),
}


@pytest.mark.parametrize("kind", EDITS)
def test_the_what_if_p_male_is_the_models_on_the_session_built_by_hand(served_session, kind):
    served, model, stored = served_session
    edited, paths, start, duration = EDITS[kind](stored)
    session_id = served.assessment.record.session_id
    assessment = predict.assess_record(model, edited.session(session_id))  # what the page computes
    expected = by_hand(model, session_id, start, start + duration, paths)
    assert assessment.prediction.p_male == pytest.approx(expected, abs=1e-12)
    assert assessment.prediction.prediction == model.decide(expected)
    assert assessment.explanation.p_male == pytest.approx(
        expected, abs=1e-6
    )  # the waterfall adds up to it (float32 trees)


# -- the page (AppTest) -----------------------------------------------------------------------------


@pytest.fixture
def app(trained_demo, monkeypatch):
    url, model_dir = trained_demo
    monkeypatch.setenv("GENDER_DB_URL", url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))

    def make(**query) -> AppTest:
        at = AppTest.from_file(str(PROJECT / "streamlit_app.py"), default_timeout=TIMEOUT)
        at.query_params.update(query)
        at.run()
        assert not at.exception
        return at

    return make


def what_if_json(at) -> dict:
    return next(json.loads(element.proto.body) for element in at.json if "P_MALE" in element.proto.body)


def info(at) -> str:
    return " ".join(str(element.value) for element in at.info)


def param(at, name):
    value = at.query_params.get(name)
    return value[0] if isinstance(value, list) else value


def test_a_duration_reads_as_seconds_a_clock_or_units():
    assert whatif.parse_duration("44") == timedelta(seconds=44)
    assert whatif.parse_duration(" 1e5 ") == timedelta(seconds=100_000)
    assert whatif.parse_duration("2 h 5 min") == whatif.parse_duration("2h5min") == timedelta(hours=2, minutes=5)
    assert whatif.parse_duration("1.5 days") == timedelta(days=1.5)
    for shown in (timedelta(seconds=44), timedelta(days=2, seconds=1)):  # the clock of str(duration)
        assert whatif.parse_duration(str(shown)) == shown
    for seconds in (0, 44, 600, 3_600, 3_661, 100_000):  # the units the box and every page show, read back
        assert whatif.parse_duration(answers.duration_text(timedelta(seconds=seconds))) == timedelta(seconds=seconds)
    assert answers.duration_text(timedelta(days=1, hours=3, minutes=46, seconds=40)) == "27 h 46 min 40 s"
    assert answers.duration_text(timedelta(hours=1, minutes=5)) == "1 h 05 min"
    for typed, why in [
        ("12 parsecs", "type seconds (90)"),
        ("3 min 20", "type seconds (90)"),
        ("", "type seconds (90)"),
        ("-5", "zero or more seconds"),
        ("nan", "type a number of seconds (90)"),
        ("1e9", "at most 365 days"),
        ("1e400", "at most 365 days"),  # infinite as a float: too long, not negative
        ("inf", "at most 365 days"),
        ("1" * 101, "at most 100 characters, this is 101"),
    ]:
        with pytest.raises(ValueError, match=re.escape(why)):
            whatif.parse_duration(typed)


def with_session(trained_demo, tmp_path, session_id: str, paths, minutes: int = 5) -> str:
    """The URL of a copy of the demo database holding one more session, written as is (no import's checks)."""
    url = sqlite_copy(trained_demo[0], tmp_path / "own.db")
    start = datetime(2014, 11, 14, 10)
    with db.connect(url).begin() as conn:
        conn.execute(
            insert(db.session).values(
                session_id=session_id, start_time=start, end_time=start + timedelta(minutes=minutes)
            )
        )
        for number, path in enumerate(paths, start=1):
            row = dict(zip(db.CATEGORY_NAMES, path), session_id=session_id, sequence_order=number)
            conn.execute(insert(db.product).values(row))
    return url


@pytest.mark.parametrize(
    "minutes, codes, why",
    [
        (-60, ("A1", "B1", "C1", "D1"), "a session cannot end before it starts"),
        (5, ("A1", "", "C1", "D1"), "a category code is text of 1 to"),
        (5, ("A1", f"B{JOIN}1", "C1", "D1"), "no unit separator"),
    ],
)
def test_a_session_no_edit_could_make_is_answered_with_the_editor_off(
    app, trained_demo, monkeypatch, tmp_path, minutes, codes, why
):
    """A database of a shop's own may hold what no import writes and no edit makes: the page answered
    "Something went wrong" for these, the what-if draft built for every session refusing them."""
    monkeypatch.setenv("GENDER_DB_URL", with_session(trained_demo, tmp_path, "own-1", [codes], minutes))
    at = app(session="own-1")
    assert [metric.label for metric in at.metric][:1] == ["Predicted gender"]
    switch = at.toggle(key="whatif_on")
    assert switch.value is False and switch.proto.disabled
    assert switch.proto.help.startswith("This session cannot be edited here: ") and why in switch.proto.help
    assert "Why" in [header.value for header in at.subheader]


def test_the_duration_box_takes_what_one_types_and_says_why_not(app, served_session):
    """A text box: Streamlit's number box read "1e5" as 1, silently."""
    served, _, stored = served_session
    at = app(session=served.assessment.record.session_id)
    at.toggle(key="whatif_on").set_value(True).run()
    assert at.text_input(key="whatif_duration").value == answers.duration_text(stored.end_time - stored.start_time)
    for typed, seconds in (("1e5", 100_000), ("2 h 5 min", 7_500), ("0:01:30", 90)):
        at.text_input(key="whatif_duration").set_value(typed).run()
        assert not at.exception
        assert at.text_input(key="whatif_duration").value == answers.duration_text(timedelta(seconds=seconds))
        assert Draft.from_link(param(at, "whatif")).duration == timedelta(seconds=seconds)
    at.text_input(key="whatif_duration").set_value("12 parsecs").run()
    said = " ".join(warning.value for warning in at.warning)
    assert "`12 parsecs` is not a duration: type seconds (90)" in said and "It stays 1 min 30 s." in said
    assert at.text_input(key="whatif_duration").value == "1 min 30 s"
    assert Draft.from_link(param(at, "whatif")).duration == timedelta(seconds=90)
    # No max_chars (its "14/1020" counter meant nothing to a reader): a long paste is refused in words.
    assert not at.text_input(key="whatif_duration").proto.max_chars
    at.text_input(key="whatif_duration").set_value("9" * 2_000).run()
    assert "a duration is at most 100 characters, this is 2,000" in " ".join(warning.value for warning in at.warning)
    assert at.text_input(key="whatif_duration").value == "1 min 30 s"


def test_the_editor_removes_moves_adds_and_resets(app, served_session, demo_engine):
    served, model, stored = served_session
    session_id = served.assessment.record.session_id
    at = app(session=session_id)
    at.toggle(key="whatif_on").set_value(True).run()
    assert "not written to the prediction log" in page_text(at)

    at.button(key="whatif_remove_0").click().run()
    assert not at.exception
    expected = by_hand(model, session_id, stored.start_time, stored.end_time, stored.paths[1:])
    assert what_if_json(at)["P_MALE"] == round(expected, 6)
    assert what_if_json(at)["GROUP"] == served.group  # the session's A/B group, as served
    said = info(at)
    assert said.startswith(f"Removing `{whatif.path_text(stored.paths[0])}` (view 1)")
    assert f"P(male) from {served.prediction.p_male:.2f} to {expected:.2f}" in said or "left P(male) at" in said
    assert Draft.from_link(param(at, "whatif")) == stored.without(0)  # the address bar holds the edit

    at.button(key="whatif_down_0").click().run()
    expected = by_hand(
        model, session_id, stored.start_time, stored.end_time, (stored.paths[2], stored.paths[1], *stored.paths[3:])
    )
    assert what_if_json(at)["P_MALE"] == round(expected, 6)

    path = stored.paths[0]
    at.text_input(key="whatif_search").set_value(f"{path[1].lower()} {path[3]}").run()
    assert (
        path in at.selectbox(key="whatif_pick").options
        or whatif.path_text(path) in at.selectbox(key="whatif_pick").options
    )
    at.selectbox(key="whatif_pick").set_value(path).run()
    at.button(key="whatif_add").click().run()
    edited = (stored.paths[2], stored.paths[1], *stored.paths[3:], path)
    expected = by_hand(model, session_id, stored.start_time, stored.end_time, edited)
    assert what_if_json(at)["P_MALE"] == round(expected, 6)

    at.time_input(key="whatif_time").set_value(START.time()).run()
    start = datetime.combine(stored.start_time.date(), START.time())
    expected = by_hand(model, session_id, start, start + stored.duration, edited)
    assert what_if_json(at)["P_MALE"] == round(expected, 6)
    assert "instead of" in info(at)

    at.button(key="whatif_reset").click().run()
    assert not at.exception
    assert param(at, "whatif") is None and "moved P(male)" not in info(at)
    assert "Download this answer as a report" in page_text(at)  # the served answer's report is back

    time.sleep(1)  # the log is written in the background: only the served answer is in it
    with demo_engine.connect() as conn:
        logged = (
            conn.execute(select(db.prediction_log.c.p_male).where(db.prediction_log.c.session_id == session_id))
            .scalars()
            .all()
        )
    assert logged == [pytest.approx(served.prediction.p_male)]


def test_a_shared_link_opens_the_edited_session(app, served_session):
    served, model, stored = served_session
    session_id = served.assessment.record.session_id
    edited = stored.moving(0, 2).lasting(timedelta(seconds=30))
    at = app(session=session_id, whatif=edited.link())
    assert at.toggle(key="whatif_on").value is True
    expected = by_hand(model, session_id, stored.start_time, stored.start_time + timedelta(seconds=30), edited.paths)
    assert what_if_json(at)["P_MALE"] == round(expected, 6)
    assert "Moving" in info(at) and "lasting 30 s instead of" in info(at)


def test_the_share_link_of_an_id_with_url_characters_opens_that_session(app, trained_demo, monkeypatch, tmp_path):
    """The link was written raw: "a&b" opened session "a", "#" cut the rest, "+" and "%20" changed the id."""
    session_id = "a&b #1+%20/é"
    paths = [("A00001", "B00001", "C00001", "D00001"), ("A00002", "B00002", "C00002", "D00002")]
    monkeypatch.setenv("GENDER_DB_URL", with_session(trained_demo, tmp_path, session_id, paths))
    at = app(session=session_id)
    at.toggle(key="whatif_on").set_value(True).run()
    at.button(key="whatif_remove_0").click().run()
    shared = next(str(m.value) for m in at.markdown if str(m.value).startswith("**Share this session**"))
    query = parse_qs(urlsplit(shared.split("copy ", 1)[1].strip("` ")).query)
    assert query["session"] == [session_id]
    assert Draft.from_link(query["whatif"][0]).paths == tuple(paths[1:])


def test_a_second_click_on_a_view_already_removed_changes_nothing(app, served_session):
    """A double click on ✕: the second click's view is gone by the time its edit runs (IndexError)."""
    served, _, stored = served_session
    at = app(session=served.assessment.record.session_id)
    at.toggle(key="whatif_on").set_value(True).run()
    last = len(stored.paths) - 1
    # The first click's edit is done; the second click comes from the page drawn before it.
    at.session_state["whatif_draft"] = (served.assessment.record.session_id, stored.without(last))
    at.button(key=f"whatif_remove_{last}").click().run()
    assert not at.exception
    assert Draft.from_link(param(at, "whatif")).paths == stored.paths[:last]


@pytest.mark.parametrize("name", ["not base64", "a zip bomb", "deep nesting", "the unit separator", "year 9999"])
def test_a_hostile_link_on_the_page_is_a_clear_message(app, served_session, name):
    session_id = served_session[0].assessment.record.session_id
    at = app(session=session_id, whatif=HOSTILE[name])
    errors = " ".join(str(element.value) for element in at.error)
    assert re.search(
        r"This what-if link cannot be opened: (a view in )?the link.*\. Showing the stored session\.", errors
    )
    assert "<script>" not in errors
    assert param(at, "whatif") is None
    assert at.metric  # the stored session's answer is there


def test_codes_in_a_link_are_shown_as_text(app, served_session):
    session_id = served_session[0].assessment.record.session_id
    at = app(session=session_id, whatif=draft(WEIRD).link())
    assert not at.exception
    shown = [str(element.value) for element in at.markdown]
    for path in WEIRD[:3]:  # each view's codes as inline code, where no link or HTML is rendered
        assert f"`{whatif.path_text(path)}`" in shown


def test_a_session_built_from_nothing(app, trained_demo, served_session):
    at = app()
    at.button(key="build").click().run()
    assert "Add a view below" in info(at)
    paths = served_session[2].paths[:5]
    at.query_params.clear()
    at = app(build=draft(paths, START, 300).link())
    model = artifact.current(trained_demo[1]).treatment  # no stored session, no A/B group: the chosen model
    expected = by_hand(model, whatif.BUILT_ID, START, START + timedelta(seconds=300), paths)
    assert what_if_json(at)["P_MALE"] == round(expected, 6)
    assert what_if_json(at)["GROUP"] == "treatment"  # no A/B group: the chosen model answers
    assert f"A session built from nothing: {len(paths)} views from Friday 2014-11-14 21:00:00" in info(at)
    at.button(key="whatif_remove_0").click().run()
    assert Draft.from_link(param(at, "build")).paths == paths[1:]
    at.button(key="whatif_leave").click().run()
    assert param(at, "build") is None and at.button(key="build")


def test_one_view_and_one_contribution_are_counted_in_the_singular(app, served_session):
    at = app(build=draft(served_session[2].paths[:1], START, 300).link())
    assert "A session built from nothing: 1 view from " in info(at)
    assert any(caption.value.endswith("(Friday start) · 1 view") for caption in at.caption)
    parts = [expander.label for expander in at.expander if "contribution" in expander.label]
    assert any(label.endswith("· 1 contribution") for label in parts), parts  # "categories not viewed", say


def test_the_catalogue_search_says_when_it_cuts_a_long_text(app, served_session):
    import ui

    at = app(build=draft(served_session[2].paths[:1], START, 300).link())
    assert not at.text_input(key="whatif_search").proto.max_chars  # its "14/1020" counter meant nothing to a reader
    at.text_input(key="whatif_search").set_value("b" * 2_000).run()
    assert not at.exception
    cut = f"Only the first {ui.MAX_TYPED:,} of the 2,000 characters typed are searched."
    assert cut in [caption.value for caption in at.caption]
