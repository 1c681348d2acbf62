"""deploy/dagster.yaml against a real PostgreSQL: runs, observations, sensor cursor and relaunch all work."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from edu_assets_tests.helpers import (
    materializations,
    materialize,
    requests_to,
    sensor_tick,
    wait_until_jobs_done,
)
from edu_assets_tests.postgres import find_bin_dir, postgres_server

ROOT = Path(__file__).resolve().parents[1]
TODAY = dt.datetime.now(dt.UTC).date().isoformat()


@pytest.fixture(scope="module")
def pg():
    bin_dir = find_bin_dir()
    if bin_dir is None:
        if os.environ.get("EDU_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL binaries not found but EDU_REQUIRE_POSTGRES=1 (apt-get install postgresql)")
        pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql); CI installs them")
    with postgres_server(bin_dir) as server:
        yield server


def test_deploy_instance_on_postgres_runs_the_async_lifecycle(pg, tmp_path, monkeypatch, sandbox, lake_env):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    for k, v in {"EDU_PG_HOST": pg.host, "EDU_PG_PORT": str(pg.port), "EDU_PG_USER": pg.user,
                 "EDU_PG_PASSWORD": pg.password, "EDU_PG_DB": pg.db, "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(k, v)
    from edu_assets.definitions import build_definitions

    defs = build_definitions()
    stellic = sandbox.app("stellic")
    stellic.hold_jobs()  # the run must defer, however slow the machine
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert materialize(defs, instance, "permissions", TODAY, config={"inline_wait_seconds": 0}).success
        assert materializations(instance, "permissions") == []
        held = sensor_tick(defs, instance, "stellic_export_completion")
        assert held.run_requests == []
        stellic.release_jobs()
        wait_until_jobs_done(stellic)
        tick = sensor_tick(defs, instance, "stellic_export_completion", held.cursor)
        cursor = tick.cursor
        (request,) = tick.run_requests
        assert materialize(defs, instance, "permissions", TODAY, tags=request.tags).success
        assert len(materializations(instance, "permissions")) == 1
        assert len(requests_to(sandbox, "export_data/permissions")) == 1
        assert sensor_tick(defs, instance, "stellic_export_completion", cursor).run_requests == []


def test_runs_submitted_at_once_register_their_pool_once(pg, tmp_path, monkeypatch):
    """A sensor or a backfill submits runs concurrently; each registers its pools. On PostgreSQL the
    storage's check-then-insert races, and the loser's unique-key violation used to fail its launch."""
    import threading

    from edu_assets.core.run_queue import _register

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    for k, v in {"EDU_PG_HOST": pg.host, "EDU_PG_PORT": str(pg.port), "EDU_PG_USER": pg.user,
                 "EDU_PG_PASSWORD": pg.password, "EDU_PG_DB": pg.db}.items():
        monkeypatch.setenv(k, v)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        for attempt in range(5):  # a race: several rounds of 8 submitters on fresh pools
            pool, start, errors = f"race_{attempt}", threading.Barrier(8), []

            def submit(pool: str = pool, start: threading.Barrier = start, errors: list = errors) -> None:
                start.wait()
                try:
                    _register(storage, pool)
                except Exception as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=submit) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
            assert storage.get_concurrency_info(pool).slot_count == 2
