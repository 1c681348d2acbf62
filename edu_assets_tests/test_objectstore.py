"""The lake on S3-compatible storage (``EDU_LAKE_ROOT=s3://...``), against a real S3 server (moto) started here.

The same guarantees as the local lake: a partition is replaced atomically for readers, no partial object is
ever visible, a run killed with SIGKILL leaves the old data readable, and the DuckDB catalog's views read
the object-store lake (through ``register_filesystem``: no ``httpfs``).
"""

# ruff: noqa: F811
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import duckdb
import pytest

from edu_assets.core.catalog import Catalog
from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.lake import DATA_FILE, Lake, connect, parquet_file
from edu_assets.core.lakepath import ObjectPath, lake_root
from edu_assets.core.objectstore import POINTER, VERSIONS
from edu_assets.core.partition import PartitionId
from edu_assets_tests.helpers import materializations, materialize

# the S3 fixtures, shared by two modules (conftest.py is not this area's): test arguments shadow the names
from edu_assets_tests.s3server import s3, s3_lake  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
PART = {"day": "2026-01-01"}


def _csv(path: Path, rows: int, version: int) -> Path:
    """A CSV whose every row carries ``version``: a torn read would show two versions in one result."""
    duckdb.sql(f"COPY (SELECT range AS id, {version} AS v, md5(range::VARCHAR) AS payload FROM range({rows})) "
               f"TO '{path}' (HEADER)")
    return path


def _versions(lake: Lake, partition: ObjectPath) -> list[str]:
    return sorted(lake.store.find(f"{partition.parent.key}/{VERSIONS}"))


def _view(lake: Lake, sql: str) -> list[tuple]:
    with Catalog(lake.settings).connect() as con:
        return con.execute(sql).fetchall()


# ---------------------------------------------------------------------- configuration
def test_unsupported_scheme_fails_when_the_definitions_load(lake_env, unconfigured, monkeypatch, tmp_path):
    from edu_assets.definitions import build_definitions

    monkeypatch.chdir(tmp_path)
    for root, says in (("gs://bucket/lake", "scheme 'gs' is not supported"), ("s3:///lake", "names no bucket")):
        monkeypatch.setenv("EDU_LAKE_ROOT", root)
        with pytest.raises(ConfigError, match=says) as err:
            build_definitions()
        assert "EDU_LAKE_ROOT" in str(err.value) and "s3://" in str(err.value)
    assert not any(tmp_path.iterdir())  # no local folder named "gs:" or "s3:"
    assert lake_root("file:///srv/lake") == Path("/srv/lake")
    assert lake_root("relative/lake") == Path("relative/lake").absolute()


def test_s3_root_uses_the_standard_aws_variables(s3_lake, s3):
    lake = Lake()
    assert isinstance(lake.root, ObjectPath) and str(lake.root) == s3_lake
    assert lake.store.client_kwargs.get("region_name") == "us-east-1"
    assert lake.store.endpoint_url == s3.url


# ---------------------------------------------------------------------- replacing a partition
def test_landing_publishes_a_new_version_and_the_view_reads_it(s3_lake, tmp_path, monkeypatch):
    lake = Lake()
    for version, rows in ((1, 10), (2, 25), (3, 7)):
        landed = lake.land_csv(_csv(tmp_path / "a.csv", rows, version), Where("v"), PartitionId.of("v", "t", PART))
        assert Catalog(lake.settings).ensure_view("v", "t")
        assert _view(lake, "SELECT count(*), min(v), max(v) FROM v.t") == [(rows, version, version)]
    target = landed.path
    assert str(target) == f"{s3_lake}/v/t/day=2026-01-01/{DATA_FILE}"
    assert target.exists() and target.stat().st_size == landed.bytes
    assert lake.partitions("v", "t") == [target]
    assert len(_versions(lake, target)) == 3  # replaced versions are kept for the retention (default 1 h)
    assert not any(k.endswith(DATA_FILE) for k in lake.store.find(s3_lake))  # data.parquet is only virtual
    assert not (tmp_path / "data" / "lake").exists()  # nothing landed locally

    monkeypatch.setenv("EDU_LAKE_RETENTION_HOURS", "0")
    lake.land_csv(_csv(tmp_path / "a.csv", 4, 4), Where("v"), PartitionId.of("v", "t", PART))
    assert len(_versions(lake, target)) == 1  # the next landing collected what no reader can be using
    assert _view(lake, "SELECT count(*), max(v) FROM v.t") == [(4, 4)]
    assert _view(lake, "SELECT DISTINCT day FROM v.t")[0][0].isoformat() == "2026-01-01"  # hive column


def test_a_query_resolved_before_a_replacement_reads_the_old_version_whole(s3_lake, tmp_path):
    lake = Lake()
    old = lake.land_csv(_csv(tmp_path / "a.csv", 150_000, 1), Where("v"), PartitionId.of("v", "t", PART))
    pinned_sql = f"SELECT count(*), min(v), max(v) FROM {parquet_file(old.path)}"  # resolved now
    lake.land_csv(_csv(tmp_path / "b.csv", 20, 2), Where("v"), PartitionId.of("v", "t", PART))
    with connect(lake.root) as con:
        assert con.execute(pinned_sql).fetchall() == [(150_000, 1, 1)]
        assert con.execute(f"SELECT count(*), max(v) FROM {parquet_file(old.path)}").fetchall() == [(20, 2)]


def test_readers_never_see_a_torn_partition_while_it_is_replaced(s3_lake, tmp_path):
    """A reader querying the view in a loop while another thread replaces the partition: every answer is one
    whole version (count and value agree), never a mix, never an error."""
    lake = Lake()
    sizes = {i: 70_000 + 10_000 * i for i in range(1, 6)}  # several row groups: DuckDB reads with threads
    csvs = {i: _csv(tmp_path / f"{i}.csv", n, i) for i, n in sizes.items()}
    lake.land_csv(csvs[1], Where("v"), PartitionId.of("v", "t", PART), keep_raw=True)
    assert Catalog(lake.settings).ensure_view("v", "t")
    done, failures = threading.Event(), []

    def writer() -> None:
        try:
            for i in range(2, 6):
                lake.land_csv(csvs[i], Where("v"), PartitionId.of("v", "t", PART), keep_raw=True)
        except Exception as exc:  # surfaced by the assertion below
            failures.append(exc)
        finally:
            done.set()

    seen = []
    thread = threading.Thread(target=writer)
    with Catalog(lake.settings).connect() as con:
        thread.start()
        while not done.is_set():
            seen.append(con.execute("SELECT count(*), min(v), max(v), sum(id) FROM v.t").fetchone())
        thread.join()
        seen.append(con.execute("SELECT count(*), min(v), max(v), sum(id) FROM v.t").fetchone())
    assert not failures
    for rows, lo, hi, ids in seen:
        assert lo == hi and rows == sizes[lo] and ids == rows * (rows - 1) // 2, (rows, lo, hi)
    assert seen[-1][1] == 5


# ---------------------------------------------------------------------- a run killed with SIGKILL
CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path

    import duckdb

    from edu_assets.core import objectstore
    from edu_assets.core.errors import Where
    from edu_assets.core.lake import Lake
    from edu_assets.core.partition import PartitionId

    stop_at, csv = sys.argv[1], Path(sys.argv[2])
    call = objectstore.LakeFileSystem._call_s3

    async def pause_point(self, method, *args, **kwargs):
        # the parent kills this process here: no sleep orders anything, the child waits on its stdin
        if (stop_at == "upload_part" and method == "upload_part" and kwargs.get("PartNumber") == 2) or (
                stop_at == "pointer" and method == "put_object" and kwargs["Key"].endswith("/CURRENT")):
            print("PAUSED", flush=True)
            sys.stdin.readline()
        return await call(self, method, *args, **kwargs)

    objectstore.LakeFileSystem._call_s3 = pause_point
    duckdb.sql(f"COPY (SELECT range AS id, 9 AS v, md5(range::VARCHAR) || md5((-range)::VARCHAR) AS payload "
               f"FROM range(400000)) TO '{csv}' (HEADER)")
    Lake().land_csv(csv, Where("v"), PartitionId.of("v", "t", {"day": "2026-01-01"}))
    print("LANDED", flush=True)
""")


@pytest.mark.parametrize("stop_at", ["upload_part", "pointer"])
def test_sigkill_mid_landing_leaves_the_old_version_readable(s3_lake, tmp_path, stop_at):
    """Killed mid multipart upload (no new object exists yet) or after the upload but before the pointer
    (the new object is an orphan no reader is pointed at): readers see the old partition, whole."""
    lake = Lake()
    old = lake.land_csv(_csv(tmp_path / "a.csv", 10, 1), Where("v"), PartitionId.of("v", "t", PART))
    assert Catalog(lake.settings).ensure_view("v", "t")
    before = _versions(lake, old.path)
    env = {**os.environ, "EDU_S3_PART_MB": "5", "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, stop_at, str(tmp_path / "big.csv")], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "PAUSED"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    assert old.path.stat().st_size == old.bytes
    assert _view(lake, "SELECT count(*), min(v), max(v) FROM v.t") == [(10, 1, 1)]
    directory = old.path.parent.key
    bucket, _, prefix = directory.partition("/")
    uploads = lake.store.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=f"{prefix}/{VERSIONS}/")
    after = _versions(lake, old.path)
    if stop_at == "upload_part":
        assert after == before  # the partial upload is no object at all...
        assert len(uploads.get("Uploads", [])) == 1  # ...only an incomplete multipart upload
    else:
        assert len(after) == len(before) + 1 and not uploads.get("Uploads")  # a complete orphan, unpublished
    assert lake.store.read_pointer(directory).version in {k[len(directory) + 1 :] for k in before}

    lake.store.collect(directory, retention=0)  # what the next landing does once the retention has passed
    assert _versions(lake, old.path) == before
    assert not lake.store.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix).get("Uploads")
    assert _view(lake, "SELECT count(*) FROM v.t") == [(10,)]
    assert {k.rsplit("/", 1)[-1] for k in lake.store.find(directory)} >= {POINTER}


# ---------------------------------------------------------------------- a real vendor asset, end to end
def test_stellic_partition_lands_in_s3_and_is_queried_through_the_catalog(s3_lake, defs, instance, sandbox,
                                                                          lake_env):
    import datetime as dt

    today = dt.datetime.now(dt.UTC).date().isoformat()
    result = materialize(defs, instance, "engagement_score", today)
    assert result.success
    evals = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
             for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert evals == {"non_empty": True, "unique_key": True, "schema_drift": True}
    (mat,) = materializations(instance, "engagement_score", today)
    assert mat.metadata["path"].value == f"{s3_lake}/stellic/engagement_score/snapshot_date={today}/{DATA_FILE}"
    with Catalog().connect() as con:
        assert con.execute("SELECT count(*), count(DISTINCT snapshot_date) FROM stellic.engagement_score"
                           ).fetchall() == [(200, 1)]
    assert not (lake_env / "lake").exists()
    # a rerun replaces the partition: still 200 rows, not 400
    assert materialize(defs, instance, "engagement_score", today).success
    with Catalog().connect() as con:
        assert con.execute("SELECT count(*) FROM stellic.engagement_score").fetchall() == [(200,)]
