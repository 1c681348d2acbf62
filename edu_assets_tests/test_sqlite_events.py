"""The local instance's event log (``edu_assets/core/sqlite_events.py``), loaded from the shipped ``dagster.yaml``.

It keeps SQLite connections open where Dagster's opens one per statement group, so these tests hold it to
what Dagster's guarantees besides: other processes' events are seen, a killed writer's committed events
survive, a long-lived process's open connections stay bounded, and a wipe leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from edu_assets.core.sqlite_events import PooledSqliteEventLogStorage

ROOT = Path(__file__).resolve().parents[1]
SCHOOLS = dg.StaticPartitionsDefinition([f"s{i:03d}" for i in range(200)])


@dg.asset(partitions_def=SCHOOLS)
def roster(context) -> dg.MaterializeResult:  # no hint: Dagster refuses a string one (future annotations)
    return dg.MaterializeResult(metadata={"school": context.partition_key})


# A writer in its own process: materializes the partitions named on the command line, one run each, and
# says so on stdout after each, then waits to be killed.
WRITER = r"""
import sys, dagster as dg
from edu_assets_tests.test_sqlite_events import roster
with dg.DagsterInstance.get() as instance:
    for key in sys.argv[1:]:
        assert dg.materialize([roster], instance=instance, partition_key=key).success
        print("landed", key, flush=True)
    print("waiting", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def instance(home: Path) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.get() as instance:
        yield instance


def _landed(instance: dg.DagsterInstance) -> set[str]:
    return set(instance.get_materialized_partitions(roster.key))


def _writer(home: Path, *keys: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, *keys], cwd=ROOT, text=True,
                            env={**os.environ, "DAGSTER_HOME": str(home)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _read_until_waiting(proc: subprocess.Popen[str]) -> list[str]:
    lines = []
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.strip() == "waiting":
            return lines
        lines.append(line.split()[1])
    raise AssertionError(f"the writer exited early (code {proc.wait()})")


def test_shipped_config_selects_it_in_dagsters_own_place(instance: dg.DagsterInstance, home: Path) -> None:
    storage = instance.event_log_storage
    assert isinstance(storage, PooledSqliteEventLogStorage)
    assert Path(storage._base_dir) == home / "history" / "runs"


def test_events_of_another_process_are_seen_while_connections_stay_open(
        instance: dg.DagsterInstance, home: Path) -> None:
    assert dg.materialize([roster], instance=instance, partition_key="s000").success
    assert instance.event_log_storage.open_shards  # this process now holds connections

    writer = _writer(home, "s001", "s002")
    try:
        assert _read_until_waiting(writer) == ["s001", "s002"]
        assert _landed(instance) == {"s000", "s001", "s002"}
        # and the other way: what this process writes next, a fresh process reads
        assert dg.materialize([roster], instance=instance, partition_key="s003").success
    finally:
        writer.kill()
        writer.wait()
    reader = subprocess.run(
        [sys.executable, "-c", "import dagster as dg\nfrom edu_assets_tests.test_sqlite_events import roster\n"
         "with dg.DagsterInstance.get() as i: print(sorted(i.get_materialized_partitions(roster.key)))"],
        cwd=ROOT, env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True, check=True)
    assert reader.stdout.strip() == "['s000', 's001', 's002', 's003']"


def test_a_killed_writer_keeps_every_event_it_committed(instance: dg.DagsterInstance, home: Path) -> None:
    writer = _writer(home, "s010", "s011", "s012")
    landed = _read_until_waiting(writer)
    writer.send_signal(signal.SIGKILL)  # its connections are open and never closed
    writer.wait()

    assert _landed(instance) == set(landed) == {"s010", "s011", "s012"}
    runs = instance.get_runs()
    assert len(runs) == 3 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # the databases it left are fully usable
    assert dg.materialize([roster], instance=instance, partition_key="s013").success
    assert "s013" in _landed(instance)


def test_a_long_lived_process_keeps_a_bounded_number_of_run_databases_open(home: Path) -> None:
    (home / "dagster.yaml").write_text((home / "dagster.yaml").read_text().replace(
        "  class: PooledSqliteEventLogStorage\n",
        "  class: PooledSqliteEventLogStorage\n  config:\n    max_open_shards: 3\n"))
    with dg.DagsterInstance.get() as instance:
        keys = [f"s{i:03d}" for i in range(20, 30)]
        for key in keys:
            assert dg.materialize([roster], instance=instance, partition_key=key).success
        open_shards = instance.event_log_storage.open_shards
        runs = instance.get_runs()
        assert len(open_shards) == 4 and "index" in open_shards  # 3 runs and the index
        assert set(open_shards) - {"index"} <= {r.run_id for r in runs[:3]}  # the most recent runs
        # every run's events are still there, whether its connection is open or not
        assert _landed(instance) == set(keys)
        assert all(len(instance.all_logs(r.run_id)) > 5 for r in runs)


def test_wipe_closes_connections_and_leaves_a_working_event_log(instance: dg.DagsterInstance, home: Path) -> None:
    assert dg.materialize([roster], instance=instance, partition_key="s040").success
    instance.wipe()
    assert instance.event_log_storage.open_shards == ["index"]  # the run's database is gone, and closed
    assert _landed(instance) == set()
    assert dg.materialize([roster], instance=instance, partition_key="s041").success
    assert _landed(instance) == {"s041"}


def test_it_opens_a_connection_per_shard_not_per_event(tmp_path: Path) -> None:
    """The point of it: Dagster's storage opens a SQLite connection per statement group (several per asset
    event); this one opens one per shard and process. Counted over the same 20-partition run on both."""
    opened: list[str] = []

    def count(_dbapi_connection: object, _record: object) -> None:
        opened.append("connect")

    def connects(storage: SqliteEventLogStorage) -> int:
        opened.clear()
        sa.event.listen(sa.pool.Pool, "connect", count)
        try:
            for key in SCHOOLS.get_partition_keys()[100:120]:
                storage.store_event(_materialization(key))
            assert len(storage.get_materialized_partitions(roster.key)) == 20
        finally:
            sa.event.remove(sa.pool.Pool, "connect", count)
        return len(opened)

    dagsters = connects(SqliteEventLogStorage(str(tmp_path / "dagster")))
    ours = connects(PooledSqliteEventLogStorage(str(tmp_path / "ours")))
    assert dagsters >= 40  # a run shard and the index shard per event, at least
    assert ours <= 3, f"{ours} connections for 20 events"


def _materialization(partition: str) -> dg.EventLogEntry:
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData

    event = DagsterEvent(
        DagsterEventType.ASSET_MATERIALIZATION.value, "job",
        event_specific_data=StepMaterializationData(dg.AssetMaterialization(roster.key, partition=partition)))
    return dg.EventLogEntry(error_info=None, level="debug", user_message="", run_id="run-a", timestamp=1.0,
                            dagster_event=event, job_name="job")
