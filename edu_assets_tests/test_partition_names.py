"""Partition keys and columns in edge cases (#15): keys too long for a directory name, vendor columns named
like a partition dimension. Real files in tmp_path, read back through the catalog's view (real DuckDB)."""

# ruff: noqa: F811
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edu_assets.core.catalog import Catalog
from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.lake import (
    DATA_FILE,
    ORIGINALS_KEY,
    PARTITION_KEY,
    Lake,
    full_key_projection,
    original_columns,
    renamed_columns,
)
from edu_assets.core.metadata import landed_metadata
from edu_assets.core.naming import NAME_MAX, clear_of_dimensions, partition_component, path_value
from edu_assets.core.partition import PartitionId
from edu_assets.core.settings import LakeSettings
from edu_assets_tests.helpers import query
from edu_assets_tests.s3server import s3, s3_lake  # noqa: F401

W = Where("stellic", "notes")
LONG_A = "Tag " + "a" * 295 + "1"  # 300 characters
LONG_B = "Tag " + "a" * 295 + "2"  # differs from LONG_A only in its last character
ACCENTS = "é" * 90  # 180 bytes in UTF-8, 540 percent-encoded


@pytest.fixture
def settings(tmp_path: Path) -> LakeSettings:
    return LakeSettings(tmp_path / "lake", tmp_path / "edu.duckdb", tmp_path / "work")


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _component(lake: Lake, landed_path: Path, vendor: str, asset: str) -> str:
    return landed_path.parent.relative_to(lake.dataset_dir(vendor, asset)).parts[0]


# ---------------------------------------------------------------------- keys too long for a directory name
def test_long_keys_land_in_distinct_bounded_directories_and_the_view_shows_them_whole(settings, tmp_path):
    lake = Lake(settings)
    keys = [LONG_A, LONG_B, ACCENTS, "plain tag"]
    dirs = []
    for i, key in enumerate(keys):
        landed = lake.land_csv(_csv(tmp_path / f"{i}.csv", f"Student,Score\ns{i},{i}\n"), W, PartitionId.of("stellic", "notes",
                               {"note_tag": key}))
        dirs.append(_component(lake, landed.path, "stellic", "notes"))
    assert len(set(dirs)) == 4  # LONG_A and LONG_B differ only at their end, and still get their own
    assert all(len(d.encode()) <= 200 for d in dirs[:3])
    assert dirs[0].startswith("note_tag=Tag%20aaaa") and dirs[2].startswith("note_tag=%C3%A9%C3%A9")
    assert dirs[3] == "note_tag=plain%20tag"  # a key that fits keeps today's name

    catalog = Catalog(settings)
    assert catalog.ensure_view("stellic", "notes")
    # the view's note_tag is the full key (read from the file where the directory name is shortened)
    got = query(settings.catalog_path, "SELECT note_tag, student, score FROM stellic.notes ORDER BY score")
    assert got == [(LONG_A, "s0", 0), (LONG_B, "s1", 1), (ACCENTS, "s2", 2), ("plain tag", "s3", 3)]
    assert "note_tag__full" not in [r[0] for r in query(settings.catalog_path, "DESCRIBE stellic.notes")]
    # and so is a rebuilt catalog's
    settings.catalog_path.unlink()
    catalog.rebuild()
    assert query(settings.catalog_path, "SELECT note_tag FROM stellic.notes ORDER BY score")[0] == (LONG_A,)


def test_the_full_key_projection_makes_the_dimension_column_itself_show_the_full_key(settings, tmp_path):
    """What the catalog's view would select to show the full key under ``note_tag`` itself."""
    lake = Lake(settings)
    for i, key in enumerate([LONG_A, "short"]):
        lake.land_csv(_csv(tmp_path / f"{i}.csv", f"x\n{i}\n"), W, PartitionId.of("stellic", "notes", {"note_tag": key}))
    source = (f"read_parquet('{lake.dataset_dir('stellic', 'notes')}/**/{DATA_FILE}', "
              "hive_partitioning=true, union_by_name=true)")
    columns = [r[0] for r in duckdb.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    rows = duckdb.sql(f"SELECT {full_key_projection(columns)} FROM {source} ORDER BY x")
    assert rows.columns == ["x", "note_tag"]
    assert rows.fetchall() == [(0, LONG_A), (1, "short")]
    assert full_key_projection(["x", "note_tag"]) == "*"


def test_long_keys_in_json_merge_and_empty_landings_carry_one_full_key_column(settings, tmp_path):
    lake = Lake(settings)
    part = {"estab": "1", "tag": ACCENTS}
    lake.land_json(_jsonl(tmp_path / "a.jsonl", [{"Id": 1, "v": "a"}, {"Id": 2, "v": "b"}]), W, PartitionId.of("x", "t", part))
    merged = lake.merge_json(_jsonl(tmp_path / "b.jsonl", [{"Id": 2, "v": "B"}]), ["1"], "Id", W, PartitionId.of("x", "t", part))
    assert merged.full_key_columns == {"tag__full": ACCENTS}
    assert [c.name for c in merged.columns].count("tag__full") == 1
    empty = lake.land_empty(W, PartitionId.of("x", "t", {"estab": "2", "tag": LONG_A}), like=merged.path)
    assert empty.rows == 0 and "tag__full" in [c.name for c in empty.columns]
    assert json.loads(pq.read_schema(empty.path).metadata[PARTITION_KEY.encode()]) == {"estab": "2", "tag": LONG_A}
    lake.land_csv(_csv(tmp_path / "c.csv", "Id,v\n3,c\n"), W, PartitionId.of("x", "t", {"estab": "3", "tag": LONG_A}))
    assert Catalog(settings).ensure_view("x", "t")
    got = query(settings.catalog_path, "SELECT estab, tag, id, v FROM x.t ORDER BY estab, id")
    assert got == [(1, ACCENTS, 2, "B"), (3, LONG_A, 3, "c")]


def test_work_files_of_long_keys_get_bounded_distinct_directories(settings):
    lake = Lake(settings)
    a = lake.work_path(PartitionId.of("stellic", "notes", {"note_tag": LONG_A, "day": "2026-01-01"}), "run.csv")
    b = lake.work_path(PartitionId.of("stellic", "notes", {"note_tag": LONG_B, "day": "2026-01-01"}), "run.csv")
    accents = lake.work_path(PartitionId.of("stellic", "notes", {"a": ACCENTS, "b": ACCENTS[:40], "c": ACCENTS[:40]}), "run.csv")
    assert a.parent != b.parent and a.parent.is_dir() and b.parent.is_dir() and accents.parent.is_dir()
    assert all(len(p.parent.name.encode()) <= NAME_MAX for p in (a, b, accents))
    short = lake.work_dir(PartitionId.of("stellic", "notes", {"note_tag": "x y", "day": "2026-01-01"}))
    assert short.name == "note_tag=x%20y_day=2026-01-01"  # as before


def test_a_key_that_fits_keeps_its_name_up_to_the_file_systems_limit():
    """Keys up to 255 bytes worked before: they must not move (only names that failed are new)."""
    fits = "b" * (NAME_MAX - len("note_tag="))
    assert partition_component("note_tag", fits) == f"note_tag={fits}"
    assert partition_component("note_tag", fits + "b") != f"note_tag={fits}b"
    assert "!" in path_value(fits + "b", "note_tag") and "!" not in path_value("a!b", "note_tag")  # "%21"


def test_an_impossible_dimension_name_is_a_clear_error(settings):
    with pytest.raises(ConfigError, match=r"\[stellic\] notes .*dimension name .* too long"):
        Lake(settings).partition_dir("stellic", "notes", {"d" * 250: "a long enough value"})


# ---------------------------------------------------------------------- vendor columns named like a dimension
def test_a_column_named_like_the_partition_dimension_is_renamed_and_both_show(settings, tmp_path):
    lake = Lake(settings)
    src = _csv(tmp_path / "a.csv", "Student,Snapshot Date\ns1,2020-01-31\ns2,2021-06-30\n")
    landed = lake.land_csv(src, W, PartitionId.of("stellic", "notes", {"snapshot_date": "2026-12-02"}))
    assert landed.renamed_columns == {"snapshot_date_column": "snapshot_date"}
    assert {c.name: c.original for c in landed.columns} == {"student": "Student",
                                                           "snapshot_date_column": "Snapshot Date"}
    assert original_columns(landed.path)["snapshot_date_column"] == "Snapshot Date"
    assert renamed_columns(landed.path) == {"snapshot_date_column": "snapshot_date"}
    md = landed_metadata(landed)
    assert "snapshot_date -> snapshot_date_column" in md["renamed_columns"].value
    described = {c.name: c.description for c in md["dagster/column_schema"].columns}
    assert "renamed from snapshot_date" in described["snapshot_date_column"]

    assert Catalog(settings).ensure_view("stellic", "notes")
    got = query(settings.catalog_path,
                "SELECT student, CAST(snapshot_date AS VARCHAR), CAST(snapshot_date_column AS VARCHAR) "
                "FROM stellic.notes ORDER BY student")
    assert got == [("s1", "2026-12-02", "2020-01-31"), ("s2", "2026-12-02", "2021-06-30")]


def test_renaming_never_collides_again():
    names, renamed = clear_of_dimensions(["snapshot_date", "snapshot_date_column", "x"], ["snapshot_date"])
    assert names == ["snapshot_date_column_2", "snapshot_date_column", "x"]
    assert renamed == {"snapshot_date_column_2": "snapshot_date"}
    assert clear_of_dimensions(["Estab", "a"], ["estab"]) == (["Estab_column", "a"], {"Estab_column": "Estab"})
    assert clear_of_dimensions(["a", "b"], ["estab"]) == (["a", "b"], {})


def test_json_merge_and_empty_landings_rename_too(settings, tmp_path):
    lake = Lake(settings)
    part = {"estab": "1"}
    first = lake.land_json(_jsonl(tmp_path / "a.jsonl", [{"estab": 10, "Id": 1}, {"estab": 11, "Id": 2}]),
                           W, PartitionId.of("x", "t", part))
    assert first.renamed_columns == {"estab_column": "estab"}
    # merged by a key a dimension renamed: the key is found under its new name
    merged = lake.merge_json(_jsonl(tmp_path / "b.jsonl", [{"estab": 12, "Id": 2}]), [], "estab", W, PartitionId.of("x", "t", part))
    assert merged.renamed_columns == {"estab_column": "estab"} and merged.rows == 3
    assert lake.duplicate_key_counts(merged.path, ["estab"]) == (0, 0)  # the check's key, as the vendor names it
    empty = lake.land_empty(W, PartitionId.of("x", "t", {"estab": "2"}), ["estab", "Id"])
    assert empty.renamed_columns == {"estab_column": "estab"}
    assert [c.name for c in empty.columns] == ["estab_column", "id"]
    assert Catalog(settings).ensure_view("x", "t")
    got = query(settings.catalog_path,  # the empty partition's columns are text: so is the union's
                "SELECT estab, CAST(estab_column AS INT), CAST(id AS INT) FROM x.t ORDER BY estab_column")
    assert got == [(1, 10, 1), (1, 11, 2), (1, 12, 2)]


def test_a_partition_landed_before_renaming_is_fitted_when_merged_or_copied(settings, tmp_path):
    """Files landed by earlier versions hold the hidden column under its own name: they are fitted on read."""
    lake = Lake(settings)
    old = lake.partition_dir("x", "t", {"estab": "1"}) / DATA_FILE
    old.parent.mkdir(parents=True)
    table = pa.table({"id": [1, 2], "estab": [10, 11]}).replace_schema_metadata(
        {ORIGINALS_KEY: json.dumps({"id": "Id", "estab": "estab"})})
    pq.write_table(table, old)
    merged = lake.merge_json(_jsonl(tmp_path / "b.jsonl", [{"Id": 2, "estab": 12}]), [], "Id", W, PartitionId.of("x", "t",
                             {"estab": "1"}))
    assert merged.renamed_columns == {"estab_column": "estab"}
    assert sorted(r["estab_column"] for r in merged.preview) == [10, 12]
    empty = lake.land_empty(W, PartitionId.of("x", "t", {"estab": "2"}), like=old)
    assert [c.name for c in empty.columns] == ["id", "estab_column"]


# ---------------------------------------------------------------------- the object-store lake
def test_long_keys_and_renamed_columns_in_the_object_store_lake(s3_lake, tmp_path):
    lake = Lake()
    for i, key in enumerate([LONG_A, LONG_B, ACCENTS]):
        landed = lake.land_csv(_csv(tmp_path / f"{i}.csv", f"Snapshot Date,n\n2020-01-0{i + 1},{i}\n"), W,
                               PartitionId.of("stellic", "notes", {"snapshot_date": "2026-12-02", "note_tag": key}))
        assert landed.path.exists()
    assert Catalog(lake.settings).ensure_view("stellic", "notes")
    with Catalog(lake.settings).connect() as con:
        got = con.execute("SELECT note_tag, CAST(snapshot_date AS VARCHAR), "
                          "CAST(snapshot_date_column AS VARCHAR), n FROM stellic.notes ORDER BY n").fetchall()
    assert got == [(LONG_A, "2026-12-02", "2020-01-01", 0), (LONG_B, "2026-12-02", "2020-01-02", 1),
                   (ACCENTS, "2026-12-02", "2020-01-03", 2)]
