"""Precomputed scores (issue 17): `import-scores` loads what `score --spark` writes into the
database (SQLite and MariaDB), the Predict page shows a session's, the Find page filters on them.

The scores folders are written with pyarrow as Spark writes them (part files, `_SUCCESS`), and one
end to end through a real `score --spark` in local mode.
"""

from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from gender import artifact, db, scores, serve, synth
from gender.answers import Contribution
from gender.cli import main
from gender.config import load_settings
from tests import live
from tests.test_app import make_app
from tests.test_spark import score_on_spark

SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("p_male", pa.float64()),
        ("prediction", pa.string()),
        ("model_id", pa.string()),
        ("ab_group", pa.string()),
    ]
)
CONTRIBUTIONS = pa.field("top_contributions", pa.list_(pa.struct([("label", pa.string()), ("shap", pa.float64())])))
HOSTILE_LABEL = "viewed <b>C00007</b> ×3 [x](javascript:alert(1))"


def write_scores(folder, parts: list[list[dict]], explain: bool = False, schema: pa.Schema | None = None):
    """A scores folder as `score --spark` writes it: part files and a _SUCCESS marker."""
    folder.mkdir(parents=True)
    schema = schema or (SCHEMA.append(CONTRIBUTIONS) if explain else SCHEMA)
    for i, rows in enumerate(parts):
        table = pa.Table.from_pylist(rows, schema=schema)
        pq.write_table(table, folder / f"part-{i:05d}-c0ffee.snappy.parquet")
    (folder / "_SUCCESS").write_text("")
    return folder


def score_row(session_id, p_male, model_id="boosted-1111aaaa", group="treatment", top=None, explain=False):
    row = {
        "session_id": session_id,
        "p_male": p_male,
        "prediction": "male" if p_male >= 0.35 else "female",
        "model_id": model_id,
        "ab_group": group,
    }
    if explain:
        row["top_contributions"] = top
    return row


def contributions_of(i: int) -> list[dict]:
    return [
        {"label": HOSTILE_LABEL if i == 0 else f"viewed C{i:05d} ×{i}", "shap": 0.5 - i / 10},
        {"label": "4.2 s per view", "shap": -0.1},
    ]


def stored(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(select(db.session_score).order_by(db.session_score.c.id), conn)


@pytest.fixture
def sessions(engine) -> list[str]:
    synth.create_demo(engine, sessions=60, seed=2)
    with engine.connect() as conn:
        return list(conn.execute(select(db.session.c.session_id).order_by(db.session.c.session_id)).scalars())


def test_scores_load_back_replace_their_own_and_keep_other_models(engine, sessions, tmp_path):
    ids = sessions[:40]
    rows = [
        score_row(
            sid,
            i / 40,
            *(("original-2222bbbb", "control") if i % 3 == 0 else ()),
            top=contributions_of(i),
            explain=True,
        )
        for i, sid in enumerate(ids)
    ]
    rows[5]["top_contributions"] = []  # scored with --explain, nothing contributed
    folder = write_scores(tmp_path / "scores", [rows[:25], rows[25:]], explain=True)
    report = scores.import_scores(engine, folder)
    assert (report.files, report.scores, report.with_contributions, report.replaced) == (2, 40, 40, 0)
    assert report.models == {"original-2222bbbb": 14, "boosted-1111aaaa": 26}
    table = stored(engine)
    assert len(table) == 40 and table["id"].is_unique
    success = datetime.fromtimestamp((folder / "_SUCCESS").stat().st_mtime, UTC).replace(tzinfo=None)
    for i, sid in enumerate(ids):
        [got] = scores.scores_of(engine, sid)
        expected = rows[i]
        assert (got.session_id, got.model_id, got.ab_group, got.prediction) == (
            sid,
            expected["model_id"],
            expected["ab_group"],
            expected["prediction"],
        )
        assert got.p_male == pytest.approx(expected["p_male"], abs=1e-12)
        want = tuple(Contribution(c["label"], c["shap"]) for c in expected["top_contributions"])
        assert got.contributions == want
        assert abs((got.scored_at - success).total_seconds()) < 1
        assert abs((datetime.now(UTC).replace(tzinfo=None) - got.imported_at).total_seconds()) < 120
    assert scores.scores_of(engine, f"  {ids[1]}\n")[0].session_id == ids[1]  # an id as typed
    assert scores.scores_of(engine, sessions[-1]) == []  # never scored ahead

    # the same folder again: every (session, model) row replaced, none added
    again = scores.import_scores(engine, folder)
    assert (again.scores, again.replaced) == (40, 40)
    assert len(stored(engine)) == 40

    # a retrained model's scores, without --explain: beside the older model's, newest first
    retrained = [score_row(sid, 0.9 if i % 2 else 0.01, "boosted-3333cccc") for i, sid in enumerate(ids[:6])]
    scores.import_scores(engine, write_scores(tmp_path / "retrained", [retrained]))
    newest, older = scores.scores_of(engine, ids[1])
    assert (newest.model_id, newest.prediction, newest.contributions) == ("boosted-3333cccc", "male", None)
    assert older.model_id == rows[1]["model_id"]
    assert len(stored(engine)) == 46

    # the Find filter: the newest imported score of each session says so
    newest_says = {row["session_id"]: row["prediction"] for row in rows} | {
        row["session_id"]: row["prediction"] for row in retrained
    }
    for gender in ("male", "female"):
        found = db.find_sessions(engine, db.SessionFilter(precomputed=gender), limit=1_000)
        assert list(found.sessions["session_id"]) == sorted(s for s, said in newest_says.items() if said == gender)
        assert set(found.sessions["precomputed"]) == {gender}
    listed = db.find_sessions(engine, db.SessionFilter(), limit=1_000).sessions.set_index("session_id")
    assert listed.loc[ids[1], "precomputed"] == "male" and pd.isna(listed.loc[sessions[-1], "precomputed"])
    male_not_female = db.SessionFilter(gender="female", precomputed="male")
    expected = sorted(
        s for s, said in newest_says.items() if said == "male" and db.get_session(engine, s)["gender"] == "female"
    )
    assert list(db.find_sessions(engine, male_not_female, limit=1_000).sessions["session_id"]) == expected


def test_without_any_import_nothing_is_precomputed(tmp_path):
    engine = db.connect(f"sqlite:///{tmp_path / 'old.db'}")
    synth.create_demo(engine, sessions=20, seed=3)
    with engine.begin() as conn:  # a database of an older version: no session_score table
        conn.exec_driver_sql("DROP TABLE session_score")
    assert scores.scores_of(engine, "u10001") == []
    assert db.find_sessions(engine, db.SessionFilter(precomputed="male")).total == 0
    assert db.find_sessions(engine, db.SessionFilter()).sessions["precomputed"].isna().all()


def test_a_bad_file_stops_the_import_naming_file_and_column_and_nothing_is_written(engine, sessions, tmp_path, capsys):
    ids = sessions[:20]
    first = write_scores(tmp_path / "first", [[score_row(sid, 0.2, "boosted-0000") for sid in ids]])
    scores.import_scores(engine, first)
    before = stored(engine)
    url = engine.url.render_as_string(hide_password=False)
    good = [score_row(sid, 0.1 * (i % 10)) for i, sid in enumerate(ids)]
    text_p = SCHEMA.set(1, pa.field("p_male", pa.string()))
    bad_list = SCHEMA.append(pa.field("top_contributions", pa.list_(pa.string())))
    wrong_value = [dict(row) for row in good]
    wrong_value[6]["prediction"] = "unknown"
    folders = {"missing": tmp_path / "missing"}
    folders["missing"].mkdir()  # one good part file, one without the A/B group
    pq.write_table(pa.Table.from_pylist(good[:10], schema=SCHEMA), folders["missing"] / "part-00000.parquet")
    no_group = SCHEMA.remove(SCHEMA.get_field_index("ab_group"))
    pq.write_table(
        pa.Table.from_pylist([{k: v for k, v in r.items() if k != "ab_group"} for r in good[10:]], schema=no_group),
        folders["missing"] / "part-00001.parquet",
    )
    folders["type"] = write_scores(
        tmp_path / "type", [[{**r, "p_male": str(r["p_male"])} for r in good]], schema=text_p
    )
    folders["contributions"] = write_scores(
        tmp_path / "contributions", [[{**r, "top_contributions": ["x"]} for r in good]], schema=bad_list
    )
    folders["value"] = write_scores(tmp_path / "value", [good[:2], wrong_value[2:]])
    folders["twice"] = write_scores(tmp_path / "twice", [good[:10], good[:3] + good[10:]])
    folders["repeat"] = write_scores(tmp_path / "repeat", [good[:3] + good[:1] + good[3:]])  # row 4 is row 1 again
    folders["damaged"] = write_scores(tmp_path / "damaged", [good])  # its footer intact, a data page not
    damaged = folders["damaged"] / "part-00000-c0ffee.snappy.parquet"
    data = bytearray(damaged.read_bytes())
    data[4:60] = bytes(56)
    damaged.write_bytes(bytes(data))
    expected = {
        "missing": f"{folders['missing'] / 'part-00001.parquet'}: no column 'ab_group', which the scores table needs",
        "type": f"{folders['type'] / 'part-00000-c0ffee.snappy.parquet'}: column 'p_male' is of type string, "
        "expected number",
        "contributions": f"{folders['contributions'] / 'part-00000-c0ffee.snappy.parquet'}: column "
        "'top_contributions' is of type list<element: string>, expected a list of (label text, shap number)",
        "value": f"{folders['value'] / 'part-00001-c0ffee.snappy.parquet'}, row 5: bad prediction 'unknown': "
        "expected female or male",
        "twice": f"{folders['twice'] / 'part-00001-c0ffee.snappy.parquet'}: session {ids[0]!r} is scored twice by "
        "model 'boosted-1111aaaa' (also in an earlier row or file)",
        "repeat": f"{folders['repeat'] / 'part-00000-c0ffee.snappy.parquet'}, row 4: session {ids[0]!r} is scored "
        "twice by model 'boosted-1111aaaa' (also on row 1)",
        "absent": f"{tmp_path / 'absent'}: no such file or folder",
        "damaged": f"{damaged}: unreadable Parquet data after row 0: ",
        "csv": f"{tmp_path / 'scores.csv'}: not a Parquet file: import-scores loads what `score --spark --out DIR` "
        "writes (the CSV of `score --unlabelled` or `--pakdd` is not loaded)",
    }
    folders["absent"] = tmp_path / "absent"
    folders["csv"] = tmp_path / "scores.csv"  # as score --unlabelled writes it
    folders["csv"].write_text(
        "session_id,p_male,prediction,model_id,ab_group\nu1,0.7,male,boosted-1111aaaa,treatment\n"
    )
    for case, folder in folders.items():
        capsys.readouterr()
        assert main(["import-scores", str(folder), "--db", url]) == 1, case
        err = capsys.readouterr().err
        assert err.splitlines()[-1].startswith(f"error: {expected[case]}"), (case, err)
        assert "Traceback" not in err
        pd.testing.assert_frame_equal(stored(engine), before)  # nothing written
    with pytest.raises(scores.BadParquet) as refused:
        scores.import_scores(engine, folders["type"])
    assert refused.value.column == "p_male"


def test_import_scores_through_the_command_line(engine, sessions, tmp_path, capsys):
    folder = write_scores(tmp_path / "scores", [[score_row(sid, 0.7) for sid in sessions[:30]]])
    url = engine.url.render_as_string(hide_password=False)
    assert main(["import-scores", str(folder), "--db", url]) == 0
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "imported 30 precomputed scores from 1 file (30 by boosted-1111aaaa)"
    assert main(["import-scores", str(folder), "--db", url]) == 0
    assert "30 replaced earlier scores of the same session and model" in capsys.readouterr().err


def test_scores_of_sessions_not_in_the_database_are_imported_and_counted(engine, sessions, tmp_path, capsys):
    """Scores may arrive before their sessions: they are kept, and the summary says how many
    scored sessions the database does not hold (each once, however many models scored it)."""
    ahead = ["later-1", "later-2", "later-3"]
    rows = [score_row(sid, 0.7) for sid in [*sessions[:5], *ahead]]
    rows += [score_row(ahead[0], 0.2, "original-2222bbbb", "control"), score_row(sessions[0], 0.2, "original-2222bbbb")]
    folder = write_scores(tmp_path / "scores", [rows[:4], rows[4:]])
    report = scores.import_scores(engine, folder)
    assert (report.scores, report.unknown_sessions) == (10, 3)
    assert str(report).endswith("; 3 of the scored sessions are not in the database (their scores are kept)")
    assert [s.model_id for s in scores.scores_of(engine, ahead[0])] == ["original-2222bbbb", "boosted-1111aaaa"]

    one = write_scores(tmp_path / "one", [[score_row("later-4", 0.5)]])
    assert main(["import-scores", str(one), "--db", engine.url.render_as_string(hide_password=False)]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "imported 1 precomputed score from 1 file (1 by boosted-1111aaaa); "
        "1 of the scored sessions is not in the database (their scores are kept)"
    )


# -- end to end: score --spark, then import-scores -----------------------------------------------


def test_score_on_spark_then_import_scores(spark, trained_demo, demo_db, lake_dir, tmp_path, capsys):  # noqa: F811
    _, model_dir = trained_demo
    out = tmp_path / "scores"
    status, err = score_on_spark(capsys, "--parquet", lake_dir, "--out", out, "--model-dir", model_dir)
    assert status == 0, err
    url = live.sqlite_copy(demo_db, tmp_path / "copy.db")
    assert main(["import-scores", str(out), "--db", url]) == 0
    assert "imported 3,000 precomputed scores" in capsys.readouterr().err
    engine = db.connect(url)
    written = pd.read_parquet(out).set_index("session_id").sort_index()
    table = stored(engine).set_index("session_id").sort_index()
    assert list(table.index) == list(written.index)
    assert (table["p_male"] - written["p_male"]).abs().max() <= 1e-12
    for column in ("prediction", "model_id", "ab_group"):
        assert (table[column] == written[column]).all(), column
    assert table["top_contributions"].isna().all() == ("top_contributions" not in written.columns)


def test_score_on_spark_with_explain_then_import_scores(spark, trained_demo, demo_db, lake_dir, tmp_path, capsys):  # noqa: F811
    _, model_dir = trained_demo
    out = tmp_path / "scores"
    status, err = score_on_spark(
        capsys, "--parquet", lake_dir, "--out", out, "--model-dir", model_dir, "--explain", "3"
    )
    assert status == 0, err
    url = live.sqlite_copy(demo_db, tmp_path / "copy.db")
    assert main(["import-scores", str(out), "--db", url]) == 0
    engine = db.connect(url)
    written = pd.read_parquet(out).set_index("session_id")
    for session_id in written.index[::300]:
        [got] = scores.scores_of(engine, session_id)
        top = written.at[session_id, "top_contributions"]
        assert [(c.label, c.shap) for c in got.contributions] == [(c["label"], c["shap"]) for c in top]


# -- the dashboard -----------------------------------------------------------------------------


@pytest.fixture
def scored_app(trained_demo, demo_db, tmp_path, monkeypatch):
    """The dashboard on a copy of the demo database with precomputed scores for a few sessions:
    the first by the model serving it now, with contributions; the second by a model long gone."""
    _, model_dir = trained_demo
    url = live.sqlite_copy(demo_db, tmp_path / "copy.db")
    engine = db.connect(url)
    ids = [db.random_session_id(engine, labelled=True) for _ in range(2)]
    while ids[1] == ids[0]:
        ids[1] = db.random_session_id(engine, labelled=True)
    settings = load_settings(db=url, model_dir=model_dir)
    models = artifact.load(model_dir)
    group = serve.group_of(ids[0], settings.ab_salt, settings.treatment_share) if models.control else "treatment"
    rows = [
        score_row(ids[0], 0.81, models.of(group).model_id, group, contributions_of(0), explain=True),
        score_row(ids[1], 0.12, "boosted-00000000", "control", None, explain=True),
    ]
    scores.import_scores(engine, write_scores(tmp_path / "scores", [rows], explain=True))
    monkeypatch.setenv("GENDER_DB_URL", url)
    monkeypatch.setenv("GENDER_MODEL_DIR", str(model_dir))
    return engine, ids, group, models


def test_the_predict_page_shows_the_precomputed_score(scored_app):
    engine, ids, group, models = scored_app
    at = make_app(session=ids[0])
    assert any(h.value == "Precomputed score" for h in at.subheader)
    text = " ".join(m.value for m in at.markdown)
    assert "**male** · P(male) **0.810**" in text and f"`{models.of(group).model_id}`" in text
    assert f"({group} group when scored)" in text
    captions = " ".join(c.value for c in at.caption)
    assert f"That model is the model serving this session now ({group} group)." in captions
    table = next(frame.value for frame in at.dataframe if "contribution" in frame.value.columns)
    assert list(table["contribution"]) == [HOSTILE_LABEL, "4.2 s per view"]  # as text, in a table
    assert list(table["shap"]) == pytest.approx([0.5, -0.1])
    assert list(table["pushes"]) == ["towards male", "towards female"]

    at = make_app(session=ids[1])
    text = " ".join(m.value for m in at.markdown)
    assert "**female** · P(male) **0.120** · model `boosted-00000000`" in text
    captions = " ".join(c.value for c in at.caption)
    assert "not a model serving now (retrained since?)" in captions and "no contributions" in captions

    others = db.find_sessions(engine, db.SessionFilter(), limit=3).sessions["session_id"]
    unscored = next(s for s in others if s not in ids)
    at = make_app(session=unscored)
    assert not any(h.value == "Precomputed score" for h in at.subheader)


def test_the_find_page_filters_on_the_precomputed_gender(scored_app):
    engine, ids, _, _ = scored_app
    at = make_app("find")
    at.selectbox(key="find_precomputed").set_value("female")
    at.button[0].click().run()
    assert not at.exception
    assert "predicted female (precomputed)" in " ".join(m.value for m in at.markdown)
    listed = at.dataframe[0].value
    assert list(listed["session_id"]) == [ids[1]] and list(listed["precomputed"]) == ["female"]
    at.selectbox(key="find_precomputed").set_value("male")
    at.button[0].click().run()
    assert list(at.dataframe[0].value["session_id"]) == [ids[0]]


def test_the_table_holds_the_newest_row_by_id(engine, sessions, tmp_path):
    """`id` only grows, on SQLite too (AUTOINCREMENT): a replaced row never takes an older number."""
    folder = write_scores(tmp_path / "s", [[score_row(sessions[0], 0.5)]])
    scores.import_scores(engine, folder)
    with engine.connect() as conn:
        first = conn.execute(select(func.max(db.session_score.c.id))).scalar_one()
    scores.import_scores(engine, folder)
    with engine.connect() as conn:
        assert conn.execute(select(func.max(db.session_score.c.id))).scalar_one() > first
