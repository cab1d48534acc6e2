"""The session as a domain object and the one grammar of feature names (gender.session).

Codes here are as odd as a shop's can be: ":", "/", ">", blanks, quotes, non-ASCII, 255
characters, and codes that spell other feature names ("view:C1", "hour_14", "views").
"""

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sqlalchemy import insert

from gender import db
from gender.explain import NOT_VIEWED, STEPS, TIME_AND_ACTIVITY, Explanation, hierarchy
from gender.features import OriginalFeatures, SessionFeatures, describe, session_frame
from gender.session import JOIN, NUMBER_NAMES, Feature, Session, node_id, session_tokens, token_name

ODD_CODES = [
    "a:b",
    ":",
    "::x::",
    "Women/Shoes",
    "x/y/",
    "p>q",
    "->",
    "Women's shoes",
    'say "hi"',
    " lead",
    "trail ",
    "two  blanks",
    "a b c",
    "Ünïcödé ✓ 日本語",
    "😀",
    "tab\there",
    "new\nline",
    "back\\slash",
    "%2F..",
    "x" * 255,
    "ä" * 255,
    "view:C1",
    "path:A",
    "step:",
    "hour:14",
    "hour_14",
    "day_3",
    "weekday_0",
    "views",
    "duration_s",
    "1",
]


def odd_paths(n_sessions=12, views=5):
    """Sessions whose views walk through ODD_CODES, four codes a view, so that every code shows
    up at several levels and in paths and steps."""
    k = len(ODD_CODES)
    return [
        tuple(tuple(ODD_CODES[(s * 7 + v * 3 + level) % k] for level in range(4)) for v in range(views))
        for s in range(n_sessions)
    ]


def odd_sessions():
    return [
        Session(
            f"s{s}:/{s}",
            datetime(2014, 11, 14 + s, s % 24, 5, 0),
            datetime(2014, 11, 14 + s, s % 24, 9, 30),
            None,
            paths,
        )
        for s, paths in enumerate(odd_paths())
    ]


def batch_frame(sessions):
    rows = pd.DataFrame(
        [{"session_id": s.session_id, "start_time": s.start_time, "end_time": s.end_time} for s in sessions]
    )
    views = pd.concat([s.views.assign(session_id=s.session_id) for s in sessions], ignore_index=True)
    return session_frame(rows, views)


@pytest.fixture(scope="module")
def odd_frame():
    return batch_frame(odd_sessions())


# -- the grammar: every name read back to itself ---------------------------------------------------


def test_every_session_feature_name_reads_back(odd_frame):
    features = SessionFeatures(min_df=1).fit(odd_frame)
    names = list(features.get_feature_names_out())
    paths = [path for session in odd_frame["paths"] for path in session]
    expected = (
        {("view", (code,)) for path in paths for code in path}
        | {("path", path[:depth]) for path in paths for depth in (2, 3)}
        | {
            ("step", (before[level], after[level]))
            for session in odd_frame["paths"]
            for before, after in zip(session, session[1:])
            for level in (2, 3)
        }
    )
    parsed = [Feature.parse(name) for name in names]
    for name, feature in zip(names, parsed):
        assert feature.name == name and str(feature) == name
        assert Feature.parse(name, scheme="session") == feature
        assert not feature.original
    assert {(f.kind, f.codes) for f in parsed if f.codes} == expected
    assert {f.codes[0] for f in parsed if f.kind == "view"} == set(ODD_CODES)
    assert [f.number for f in parsed if f.kind == "number"] == list(NUMBER_NAMES)
    times = {(f.kind, f.value) for f in parsed if f.kind in ("hour", "weekday", "day")}
    starts = pd.DatetimeIndex(odd_frame["start_time"])
    assert times == (
        {("hour", h) for h in starts.hour}
        | {("weekday", w) for w in starts.day_of_week}
        | {("day", d) for d in starts.day}
    )


def test_every_original_feature_name_reads_back(odd_frame):
    original = OriginalFeatures().fit(odd_frame)
    names = list(original.get_feature_names_out())
    words = list(original.words_.get_feature_names_out())
    times = list(original.times_.get_feature_names_out(["day", "weekday", "hour"]))
    assert names == words + times + ["views", "seconds_per_view"]
    for name in names:
        assert Feature.parse(name).name == name
        assert Feature.parse(name, scheme="original").name == name
    # Known to be the original's, its one-hot times and numbers are read as such ...
    for name in times:
        feature = Feature.parse(name, scheme="original")
        kind, _, value = name.partition("_")
        assert (feature.kind, feature.value, feature.original) == (kind, int(value), True)
    assert [Feature.parse(name, scheme="original").kind for name in names[-2:]] == ["number", "number"]
    # ... and its n-grams are words, kept whole (a code may hold blanks), even where a code
    # spells a session name; only its own coinciding names ("views", "day_3") cannot be told apart.
    coinciding = {"views", "seconds_per_view", "day_3", "weekday_0", "hour_14"}
    for name in words:
        feature = Feature.parse(name, scheme="original")
        if name not in coinciding:
            assert (feature.kind, JOIN.join(feature.codes), feature.original) == ("words", name, True)
    assert Feature.parse("view:C1", scheme="original").kind == "words"
    assert Feature.parse("view:C1").codes == ("C1",)  # given no scheme, the session grammar first


def test_the_originals_ngrams_tell_codes_with_blanks_apart():
    """CountVectorizer's n-grams join words by a blank: "Women" then "Shoes Boots" and "Women Shoes"
    then "Boots" were one column. On codes without blanks (PAKDD's), the columns are its own, in its order."""
    start = datetime(2014, 11, 14, 10)
    shop = [
        Session("s1", start, start, None, [("Women", "Shoes Boots", "C1", "D1")]),
        Session("s2", start, start, None, [("Women Shoes", "Boots", "C1", "D1")]),
    ]
    words = OriginalFeatures().fit(batch_frame(shop)).words_.get_feature_names_out().tolist()
    assert f"Women{JOIN}Shoes Boots" in words and f"Women Shoes{JOIN}Boots" in words
    assert len(words) == len({Feature.parse(w, "original").codes for w in words}) == 6 + 5 + 4  # C1, D1 shared

    plain = [s for s in odd_sessions() if all(code.split() == [code] for path in s.paths for code in path)]
    frame = batch_frame(plain)
    ours = OriginalFeatures().fit(frame).words_.get_feature_names_out().tolist()
    texts = [" ".join(code for path in paths for code in path) for paths in frame["paths"]]
    theirs = CountVectorizer(ngram_range=(1, 3), token_pattern=r"\S+", lowercase=False).fit(texts)
    assert plain
    assert [word.replace(JOIN, " ") for word in ours] == theirs.get_feature_names_out().tolist()


def test_odd_codes_split_at_the_first_colon_and_at_join_only():
    assert Feature.parse("view:a:b") == Feature.view("a:b")
    assert Feature.parse("view::") == Feature.view(":")
    assert Feature.parse("view:hour:14") == Feature("view", ("hour:14",))
    assert Feature.parse(f"path:Women/Shoes{JOIN}x/y/{JOIN}p>q").codes == ("Women/Shoes", "x/y/", "p>q")
    assert Feature.parse(f"step:a b{JOIN} :").codes == ("a b", " :")
    assert Feature.parse("hour:14") == Feature.time("hour", 14)
    assert Feature.parse("hour_14") == Feature.time("hour", 14, original=True)
    assert Feature.parse("duration_s") == Feature.of_number("duration_s")
    assert Feature.parse(f"A1{JOIN}B1{JOIN}C 1") == Feature("words", ("A1", "B1", "C 1"), original=True)
    for built in (Feature.view("ä" * 255), Feature.path("a:b", '"q"'), Feature.step("->", "😀")):
        assert Feature.parse(built.name) == built


@pytest.mark.parametrize(
    "name", ["path:A", f"step:a{JOIN}b{JOIN}c", "hour:24", "hour:014", "weekday:7", "day:0", "A1 B1"]
)
def test_names_no_session_features_give_are_refused_by_the_session_scheme(name):
    with pytest.raises(ValueError, match="not a SessionFeatures name"):
        Feature.parse(name, scheme="session")
    assert Feature.parse(name).name == name  # read as the original's words, and back


def test_tokens_are_built_where_they_are_parsed(odd_frame):
    tokens = session_tokens(odd_frame["paths"].tolist())
    for kind, (rows, texts) in tokens.items():
        assert len(rows) == len(texts)
        for text in texts:
            feature = Feature.parse(token_name(kind, text), scheme="session")
            assert feature.kind == kind and JOIN.join(feature.codes) == text
    session = odd_sessions()[0]
    first = [(f.kind, f.codes) for f in session.features()]
    view_tokens = [("view", (code,)) for path in session.paths for code in path]
    assert [item for item in first if item[0] == "view"] == view_tokens


def test_short_paths_give_the_tokens_their_levels_allow():
    tokens = session_tokens([[("A", "B"), ("A",), ("A", "B", "C")]])
    assert tokens["view"][1] == ["A", "B", "A", "A", "B", "C"]
    assert tokens["path"][1] == [f"A{JOIN}B", f"A{JOIN}B", f"A{JOIN}B{JOIN}C"]
    assert tokens["step"][1] == []


# -- the session ----------------------------------------------------------------------------------


def test_session_built_from_the_database_equals_what_was_inserted(engine):
    start, end = datetime(2014, 11, 17, 14, 5, 0), datetime(2014, 11, 17, 14, 9, 41)
    stored = {
        "shop:1/ä 'x'": ("male", [(5, ODD_CODES[0:4]), (2, ODD_CODES[4:8]), (9, ODD_CODES[19:23])]),
        "u10002": (None, [(1, ODD_CODES[8:12])]),
        "empty": ("female", []),
    }
    with engine.begin() as conn:
        for session_id, (gender, views) in stored.items():
            conn.execute(
                insert(db.session), [dict(session_id=session_id, start_time=start, end_time=end, gender=gender)]
            )
            if views:
                conn.execute(
                    insert(db.product),
                    [
                        dict(zip(["session_id", "sequence_order", *db.CATEGORY_NAMES], (session_id, order, *codes)))
                        for order, codes in views
                    ],
                )
    for session_id, (gender, views) in stored.items():
        in_order = sorted(views)
        expected = Session(
            session_id, start, end, gender, [tuple(codes) for _, codes in in_order], [order for order, _ in in_order]
        )
        session = Session.load(engine, session_id)
        assert session == expected
        assert session.paths == tuple(tuple(codes) for _, codes in in_order)
        assert session.gender == gender and session.orders == tuple(order for order, _ in in_order)
        assert session.duration == end - start and session.n_views == len(views)
        pd.testing.assert_frame_equal(session.views, db.get_views(engine, session_id))
        row = pd.DataFrame([db.get_session(engine, session_id)])
        pd.testing.assert_frame_equal(
            session.frame, session_frame(row, db.get_views(engine, session_id).assign(session_id=session_id))
        )
        assert Session.from_db(db.get_session(engine, session_id), db.get_views(engine, session_id)) == session
    assert Session.load(engine, " u10002\n") == Session.load(engine, "u10002")  # an id as typed
    assert Session.load(engine, "no such session") is None


def test_one_session_frame_gives_the_batch_row(odd_frame):
    sessions = odd_sessions()
    features = SessionFeatures(min_df=1).fit(odd_frame)
    batch = features.transform(odd_frame).toarray()
    for i, session in enumerate(sessions):
        np.testing.assert_array_equal(features.transform(session.frame).toarray()[0], batch[i])


def test_a_session_is_a_value():
    a = Session("u1", datetime(2014, 11, 17), datetime(2014, 11, 17, 0, 1), None, [["A", "B", "C", "D"]])
    b = Session("u1", datetime(2014, 11, 17), datetime(2014, 11, 17, 0, 1), None, (("A", "B", "C", "D"),), (1,))
    assert a == b and hash(a) == hash(b) and a.paths == (("A", "B", "C", "D"),)
    with pytest.raises(ValueError, match="1 views but 2 sequence orders"):
        Session("u1", a.start_time, a.end_time, None, a.paths, (1, 2))
    short = Session("u2", a.start_time, a.end_time, "male", [("A", "B", None, None)])
    assert short.paths == (("A", "B"),)
    assert short.views["category_c"].isna().all() and list(short.views["category_b"]) == ["B"]


# -- describe and hierarchy, worked by hand ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("view:a:b", 2, "viewed a:b ×2"),
        ("view:hour:14", 1, "viewed hour:14 ×1"),
        ("view:Ünïcödé ✓", 0, "no view of Ünïcödé ✓"),
        (f"path:Women/Shoes{JOIN}p>q{JOIN}Women's shoes", 1, "viewed Women/Shoes › p>q › Women's shoes ×1"),
        (f"path:a:b{JOIN}日本", 0, "nothing in a:b › 日本"),
        (f"step:C 1{JOIN}:", 3, "went C 1 → : ×3"),
        (f'step:say "hi"{JOIN}->', 0, 'never went say "hi" → ->'),
        ("hour:7", 0, "not started at 07:00"),
        ("weekday:6", 1, "started on a Sunday"),
        ("day:31", 0, "not on day 31 of the month"),
        ("views", 2, "2 views"),
        ("start_weekday", 2, "start weekday Wednesday (as a number)"),
        ("seconds_per_view", 900, "15.0 min per view"),
        ("hour_14", 1, "started at 14:00"),  # the original's one-hot times and words: as the session features'
        ("weekday_0", 0, "not on a Monday"),
        (f"A1{JOIN}B1{JOIN}C1", 2, '"A1 B1 C1" in its codes ×2'),  # codes in a row, across views too
        (f"A1{JOIN}B1", 0, 'no "A1 B1" in its codes'),
        (f"Women{JOIN}Shoes Boots", 1, '"Women · Shoes Boots" in its codes ×1'),  # which codes, where one has a blank
        ("Shoes Boots", 1, "viewed Shoes Boots ×1"),  # one code: a view, blank or not
        ("A00005", 0, "no view of A00005"),
    ],
)
def test_describe_by_hand(name, value, words):
    assert describe(name, value) == words


A1, B1, C1, C2, D1, D2 = "Women/Shoes", "Boots: ankle", "C>1", "C 2", "D'1", "ä" * 255
SESSION = Session(
    "s",
    datetime(2014, 11, 17, 14),
    datetime(2014, 11, 17, 14, 5),
    None,
    [(A1, B1, C1, D1), (A1, B1, C2, D2), ("A2", "B3", "C3", "D3")],
)


def test_hierarchy_by_hand():
    contributions = pd.DataFrame(
        [
            (f"view:{A1}", 0.5),
            (f"path:{A1}{JOIN}{B1}", 0.25),
            (f"path:{A1}{JOIN}{B1}{JOIN}{C2}", -0.125),
            (f"view:{D2}", 0.0625),
            ("view:C9", -0.5),  # not viewed
            (f"path:{A1}{JOIN}B9", 0.25),  # not viewed either
            (f"step:{C1}{JOIN}{C2}", 1.0),
            ("hour:14", -0.75),
            ("views", 0.5),
        ],
        columns=["feature", "shap"],
    )
    explanation = Explanation(0.0, contributions.assign(value=1.0, label=""), "log-odds")
    expected = pd.DataFrame(
        [
            (A1, "", A1, 0.5, 0.6875, 0.9375),
            (node_id([A1, B1]), A1, B1, 0.25, 0.1875, 0.4375),
            (node_id([A1, B1, C2]), node_id([A1, B1]), C2, -0.125, -0.0625, 0.1875),
            (node_id([A1, B1, C2, D2]), node_id([A1, B1, C2]), D2, 0.0625, 0.0625, 0.0625),
            (TIME_AND_ACTIVITY, "", TIME_AND_ACTIVITY, -0.25, -0.25, 0.25),
            (STEPS, "", STEPS, 1.0, 1.0, 1.0),
            (NOT_VIEWED, "", NOT_VIEWED, -0.25, -0.25, 0.25),
        ],
        columns=["id", "parent", "label", "own", "net", "weight"],
    )
    tree = hierarchy(explanation, SESSION)
    pd.testing.assert_frame_equal(tree, expected, check_dtype=False)
    pd.testing.assert_frame_equal(hierarchy(explanation, SESSION.views), tree)  # the views as db gives them
    assert f"{A1}{JOIN}{B1}" in set(tree["id"])  # a node's id is its path feature's codes


def test_hierarchy_puts_a_code_on_the_first_node_it_appears_on():
    session = Session("s", SESSION.start_time, SESSION.end_time, None, [("A", "B", "X", "D"), ("A", "B", "C", "X")])
    contributions = pd.DataFrame({"feature": ["view:X"], "shap": [0.5], "value": [2.0], "label": [""]})
    tree = hierarchy(Explanation(0.0, contributions, "log-odds"), session)
    assert list(tree["id"]) == ["A", node_id(["A", "B"]), node_id(["A", "B", "X"])]
    assert list(tree["net"]) == [0.5, 0.5, 0.5]
