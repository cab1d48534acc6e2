"""The FTP tables as Parquet files (gender/lake.py): `export-parquet` from any database and
`demo --parquet` without one, through the command line as a user runs it."""

import os
import subprocess
import sys
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gender import db, ingest, lake, synth
from gender.errors import BadParquet
from tests.conftest import PROJECT
from tests.live import sqlite_copy


def run(*args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "gender", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env=dict(os.environ),
        timeout=600,
    )
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert result.returncode == 0, result.stderr
    return result


def database_tables(engine) -> dict[str, pd.DataFrame]:
    with engine.connect() as conn:
        tables = {
            name: pd.read_sql(table.select(), conn)
            for name, table in (("session", db.session), ("product", db.product))
        }
    return {name: _sorted(frame) for name, frame in tables.items()}


def parquet_tables(directory) -> dict[str, pd.DataFrame]:
    tables = {}
    for name in lake.TABLES:
        table = pq.read_table(directory / f"{name}.parquet")
        assert table.schema.equals(lake.SCHEMAS[name]), table.schema
        tables[name] = _sorted(table.to_pandas())
    return tables


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    keys = ["session_id", "sequence_order"] if "sequence_order" in frame else ["session_id"]
    frame = frame.sort_values(keys, ignore_index=True)
    for column in ("start_time", "end_time"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
    for column in frame.columns.difference(["start_time", "end_time", "sequence_order"]):  # text; None when null
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    if "sequence_order" in frame:
        frame["sequence_order"] = frame["sequence_order"].astype("int64")
    return frame


SHOP_SESSIONS = [  # ids and codes of the kinds shops use, beside the synthetic ones
    ("3f6c2a9e-8d1b-4c57-9a0e-5b7d2f1c04e1", ("Women's shoes", "Boots/Booties", "Größe 38", "D01169")),
    ("shop:12345 ä ✓", ("A00001", "B00001", "C00001", "D00001")),
    ("x" * db.SESSION_ID_LENGTH, ("A", "B", "C", "d" * db.CATEGORY_LENGTH)),
]


def test_export_parquet_round_trip_equals_the_database(engine, tmp_path, monkeypatch):
    synth.create_demo(engine, sessions=300, seed=4)
    shop_sessions = [
        {
            "session_id": session_id,
            "start_time": datetime(2014, 11, 20, 10, 0, 1),
            "end_time": datetime(2014, 11, 20, 10, 3, 0),
            "gender": "female",
        }
        for session_id, _ in SHOP_SESSIONS
    ]
    shop_views = [row for session_id, path in SHOP_SESSIONS for row in ingest.view_rows(session_id, [path, path])]
    ingest.write_all(engine, [(shop_sessions, shop_views)])
    monkeypatch.setattr(lake, "CHUNK_ROWS", 100)  # several row groups: the tables are streamed

    report = lake.export_parquet(engine, tmp_path / "lake")
    exported = parquet_tables(tmp_path / "lake")
    expected = database_tables(engine)
    for name in lake.TABLES:
        pd.testing.assert_frame_equal(exported[name], expected[name], check_dtype=False)
    assert (report.sessions, report.views) == (len(expected["session"]), len(expected["product"]))
    assert pq.ParquetFile(tmp_path / "lake" / "product.parquet").metadata.num_row_groups > 1
    assert not [path.name for path in (tmp_path / "lake").iterdir() if path.name.startswith(".")]  # no leftovers
    lake.check_tables(tmp_path / "lake")  # what score --spark reads first


def test_export_parquet_command(demo_db, tmp_path):
    result = run("export-parquet", tmp_path / "lake", "--db", f"sqlite:///{demo_db}")
    assert "wrote 3,000 sessions" in result.stderr
    assert parquet_tables(tmp_path / "lake")["session"].equals(
        database_tables(db.connect(f"sqlite:///{demo_db}"))["session"]
    )

    empty = run("export-parquet", tmp_path / "none", "--db", f"sqlite:///{tmp_path / 'empty.db'}", check=False)
    assert empty.returncode == 1 and empty.stderr.count("\n") == 1 and "no FTP tables" in empty.stderr

    # A database of one's own may hold what the lake's int32 cannot: one line, and no folder left (a traceback before)
    own = sqlite_copy(demo_db, tmp_path / "own.db")
    with db.connect(own).begin() as conn:
        conn.execute(db.product.update().where(db.product.c.sequence_order == 1).values(sequence_order=2**41))
    big = run("export-parquet", tmp_path / "big", "--db", own, check=False)
    assert big.returncode == 1 and "Traceback" not in big.stderr, big.stderr
    assert big.stderr.splitlines()[-1] == (
        "error: cannot write the Parquet tables: Value 2199023255552 too large to fit in C integer type"
    )
    assert not (tmp_path / "big").exists()


def test_demo_parquet_equals_the_demo_database(tmp_path):
    sessions = 2 * ingest.CHUNK_SESSIONS + 500  # three of the generator's chunks
    files = run("demo", "--sessions", sessions, "--seed", 5, "--parquet", tmp_path / "lake")
    assert f"wrote {sessions:,} sessions" in files.stderr
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    run("demo", "--sessions", sessions, "--seed", 5, "--db", url)
    exported, expected = parquet_tables(tmp_path / "lake"), database_tables(db.connect(url))
    for name in lake.TABLES:
        pd.testing.assert_frame_equal(exported[name], expected[name], check_dtype=False)

    both = run("demo", "--parquet", tmp_path / "x", "--db", url, check=False)
    assert both.returncode == 1 and "not both" in both.stderr and not (tmp_path / "x").exists()


def test_tables_as_folders_of_part_files_and_what_is_refused(tmp_path):
    """A table may be a folder of part files, as Spark writes one (markers and hidden files skipped)."""
    lake.demo_parquet(tmp_path / "files", 50, seed=1)
    folders = tmp_path / "folders"
    for name in lake.TABLES:
        table = pq.read_table(tmp_path / "files" / f"{name}.parquet")
        (folders / name).mkdir(parents=True)
        pq.write_table(table.slice(0, 20), folders / name / "part-00000.parquet")
        pq.write_table(table.slice(20), folders / name / "part-00001.parquet")
        (folders / name / "_SUCCESS").write_text("")
        (folders / name / ".part-00000.parquet.crc").write_bytes(b"\0\1")
    assert lake.check_tables(folders) == {name: str(folders / name) for name in lake.TABLES}

    with pytest.raises(BadParquet, match="no such folder"):
        lake.check_tables(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "session.parquet").write_bytes((tmp_path / "files" / "session.parquet").read_bytes())
    with pytest.raises(BadParquet, match="no product table"):
        lake.check_tables(tmp_path / "half")
    bad = pa.table({"session_id": ["u1"], "sequence_order": [1], **{c: [None] for c in db.CATEGORY_NAMES}})
    bad = bad.cast(
        pa.schema(
            [("session_id", pa.string()), ("sequence_order", pa.int64())]
            + [(c, pa.string()) for c in db.CATEGORY_NAMES]
        )
    )
    pq.write_table(bad, tmp_path / "half" / "product.parquet")
    with pytest.raises(BadParquet, match="'category_a' has empty"):
        lake.check_tables(tmp_path / "half")
