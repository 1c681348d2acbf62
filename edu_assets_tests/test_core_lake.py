"""The lake and catalog on their own: conversion, type drift, encodings, atomic replace, locked catalog."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edu_assets.core.catalog import Catalog, ViewSpec
from edu_assets.core.errors import LandingError, Where
from edu_assets.core.lake import DATA_FILE, Lake
from edu_assets.core.naming import normalise_columns, snake_case
from edu_assets.core.partition import PartitionId
from edu_assets.core.settings import LakeSettings
from edu_assets_tests.helpers import query

W = Where("testvendor", "things", "p1")


@pytest.fixture
def settings(tmp_path: Path) -> LakeSettings:
    return LakeSettings(tmp_path / "lake", tmp_path / "edu.duckdb", tmp_path / "work")


def _csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_snake_case_names():
    assert snake_case("Engagement Score") == "engagement_score"
    assert snake_case("StudentID") == "student_id"
    assert snake_case("Id- Number") == "id_number"
    assert snake_case(" ID") == "id"
    assert snake_case("Zoë's Mark (%)") == "zoe_s_mark"
    assert snake_case("2nd Choice") == "_2nd_choice"
    assert normalise_columns(["ID", "Id", "i d"]) == ["id", "id_2", "i_d"]


def test_type_drift_late_in_file_lands_everything_as_text(settings, tmp_path):
    rows = "".join(f"{i},x\n" for i in range(30000)) + "not-a-number,y\n"
    src = _csv(tmp_path / "in.csv", "Count,Label\n" + rows)
    landed = Lake(settings).land_csv(src, W, PartitionId.of("testvendor", "things", {"p": "1"}))
    assert landed.rows == 30001 and not landed.typed
    assert [c.type for c in landed.columns] == ["VARCHAR", "VARCHAR"]


def test_latin1_lands_as_utf8_when_declared(settings, tmp_path):
    src = _csv(tmp_path / "in.csv", "Name,Town\nJosé,Cádiz\nZoë,Köln\n", "latin-1")
    with pytest.raises(LandingError, match="not valid utf-8"):
        Lake(settings).land_csv(src, W, PartitionId.of("testvendor", "things", {"p": "1"}))
    assert src.exists()  # kept for inspection
    landed = Lake(settings).land_csv(src, W, PartitionId.of("testvendor", "things", {"p": "1"}), encoding="ISO-8859-1")
    assert [r["name"] for r in landed.preview] == ["José", "Zoë"]


def test_quoted_commas_newlines_and_original_names(settings, tmp_path):
    src = _csv(tmp_path / "in.csv", 'Student ID,Note\r\n1,"a, ""quoted""\nsecond line"\r\n2,\r\n')
    landed = Lake(settings).land_csv(src, W, PartitionId.of("testvendor", "things", {"p": "1"}))
    assert landed.preview[0]["note"] == 'a, "quoted"\nsecond line'
    assert {c.name: c.original for c in landed.columns} == {"student_id": "Student ID", "note": "Note"}
    assert not src.exists()  # raw removed once landed


def test_ragged_rows_are_refused(settings, tmp_path):
    src = _csv(tmp_path / "in.csv", "a,b,c\n" + "1,2,3\n" * 5 + "1,2\n")
    with pytest.raises(LandingError, match="could not be parsed"):
        Lake(settings).land_csv(src, W, PartitionId.of("testvendor", "things", {"p": "1"}))


def test_partition_values_with_spaces_and_slashes_round_trip(settings, tmp_path):
    lake = Lake(settings)
    lake.land_csv(_csv(tmp_path / "a.csv", "x\n1\n"), W, PartitionId.of("testvendor", "groups", {"group": "Engineering Students/A"}))
    lake.land_csv(_csv(tmp_path / "b.csv", "x\n2\n"), W, PartitionId.of("testvendor", "groups", {"group": "plain"}))
    Catalog(settings).ensure_view("testvendor", "groups")
    got = query(settings.catalog_path, 'SELECT "group", x FROM testvendor.groups ORDER BY x')
    assert got == [("Engineering Students/A", 1), ("plain", 2)]


def test_locked_catalog_does_not_lose_the_landing(settings, tmp_path):
    """A user's ``duckdb`` shell holding the catalog never costs a landing: a dataset whose view exists needs
    no catalog write at all (no wait, no warning), and a new dataset's view is skipped with a warning."""
    lake, catalog = Lake(settings), Catalog(settings)
    lake.land_csv(_csv(tmp_path / "a.csv", "x\n1\n"), W, PartitionId.of("testvendor", "things", {"p": "1"}))
    assert catalog.ensure_view("testvendor", "things")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, sys, time
            con = duckdb.connect({str(settings.catalog_path)!r})
            print("locked", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )

    class Log:
        def __init__(self):
            self.warnings: list[str] = []

        def warning(self, msg):
            self.warnings.append(msg)

    try:
        assert holder.stdout.readline().strip() == "locked"
        landed = lake.land_csv(_csv(tmp_path / "b.csv", "x\n2\n"), W, PartitionId.of("testvendor", "things", {"p": "2"}))
        assert landed.rows == 1
        log, opened, again = Log(), [], Catalog(settings)
        again._open = lambda retries=20, read_only=False, _o=again._open: opened.append(retries) or _o(retries, read_only)
        assert again.ensure_view("testvendor", "things", log=log) is True  # its view is there already
        assert log.warnings == [] and opened == []  # the locked file was not even tried (so no wait for it)

        lake.land_csv(_csv(tmp_path / "c.csv", "y\n5\n"), W, PartitionId.of("testvendor", "others", {"p": "1"}))
        log = Log()
        catalog_fast = Catalog(settings)
        catalog_fast._open = lambda retries=2, read_only=False, _o=catalog_fast._open: _o(retries=2, read_only=read_only)
        assert catalog_fast.ensure_view("testvendor", "others", log=log) is False
        assert "locked by another process" in log.warnings[0]
    finally:
        holder.communicate("")
    # the existing view reads the glob, so the new partition is visible without a catalog write
    assert query(settings.catalog_path, "SELECT sum(x) FROM testvendor.things") == [(3,)]
    assert len(list((settings.root / "testvendor" / "things").rglob(DATA_FILE))) == 2
    # the skipped view is written by the next landing once the catalog is free
    assert Catalog(settings).ensure_view("testvendor", "others")
    assert query(settings.catalog_path, "SELECT y FROM testvendor.others") == [(5,)]


def test_catalog_changed_behind_the_ledger_gets_its_views_again(settings, tmp_path):
    """The shortcut that skips writing existing views must notice a catalog deleted, or a view dropped, by hand."""
    import duckdb

    lake = Lake(settings)
    lake.land_csv(_csv(tmp_path / "a.csv", "x\n1\n"), W, PartitionId.of("testvendor", "things", {"p": "1"}))
    latest = [ViewSpec("testvendor", "things", latest_by="p")]
    assert Catalog(settings).ensure_view("testvendor", "things", latest)
    with duckdb.connect(str(settings.catalog_path)) as con:
        con.execute("DROP VIEW testvendor.things_latest")
    assert Catalog(settings).ensure_view("testvendor", "things", latest)
    assert query(settings.catalog_path, "SELECT x FROM testvendor.things_latest") == [(1,)]

    settings.catalog_path.unlink()
    assert Catalog(settings).ensure_view("testvendor", "things", latest)
    assert query(settings.catalog_path, "SELECT x FROM testvendor.things") == [(1,)]


def test_json_landing_keeps_values_that_do_not_fit_early_types(tmp_path, monkeypatch):
    """DuckDB infers JSON types from a sample by default and silently nulls what does not fit: not here."""
    import json

    from edu_assets.core.errors import Where
    from edu_assets.core.lake import Lake
    from edu_assets.core.settings import LakeSettings

    monkeypatch.setenv("EDU_DATA_DIR", str(tmp_path / "data"))
    staged = tmp_path / "rows.jsonl"
    rows = [{"Id": str(i), "Note": None, "Points": i} for i in range(30_000)] + [{"Id": "z", "Note": "late", "Points": "n/a"}]
    staged.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    landed = Lake(LakeSettings.from_env()).land_json(staged, Where("x"), PartitionId.of("x", "t", {"estab": "1"}))
    import duckdb

    got = duckdb.sql(f"SELECT note, points::VARCHAR FROM read_parquet('{landed.path}') WHERE id = 'z'").fetchall()
    assert landed.rows == 30_001 and got == [("late", "n/a")]



def test_many_json_landings_at_once_fit_the_process_memory_cap(settings, tmp_path, monkeypatch):
    """A run lands 8 schools at once (Xporter's school_concurrency); each JSON reader holds a 32 MiB buffer,
    and all share one process's DuckDB cap (200MB by default). In the 500-school fleet that ran out of
    memory; conversions now take turns, so every landing succeeds, under a cap set just above one's need."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("EDU_DUCKDB_MEMORY_LIMIT", "100MB")  # fits two readers' buffers, not eight
    lake = Lake(settings)
    staged = []
    for i in range(16):
        path = tmp_path / f"school{i}.jsonl"
        path.write_text("".join(json.dumps({"Id": n, "School": i, "Points": n * i}) + "\n" for n in range(120)))
        staged.append(path)

    def land(i: int):
        return lake.land_json(staged[i], Where("xporter", "conduct_points", str(i)), PartitionId.of("x", "points", {"estab": str(i)}))

    with ThreadPoolExecutor(max_workers=8) as pool:
        landed = list(pool.map(land, range(16)))
    assert [x.rows for x in landed] == [120] * 16
