"""The completion sensor relaunches a vendor job as often as runs defer it, and lands it once."""

from __future__ import annotations

import datetime as dt

from edu_assets_tests.helpers import (
    export_observations,
    materializations,
    materialize,
    sensor_tick,
    wait_until_jobs_done,
)

TODAY = dt.datetime.now(dt.UTC).date().isoformat()
SENSOR = "stellic_export_completion"
ASSET = "audit_requirements"


def test_a_job_deferred_again_by_its_relaunched_run_gets_a_new_run_key(defs, instance, sandbox, lake_env):
    stellic = sandbox.app("stellic")
    stellic.hold_jobs()
    assert materialize(defs, instance, ASSET, TODAY, config={"inline_wait_seconds": 0.2}).success
    job_id = export_observations(instance, ASSET)[-1]["vendor_job_id"]
    waiting = sensor_tick(defs, instance, SENSOR)
    assert waiting.run_requests == []
    stellic.release_jobs()
    wait_until_jobs_done(stellic)
    ready = sensor_tick(defs, instance, SENSOR, waiting.cursor)
    (first,) = ready.run_requests
    assert first.run_key == job_id

    # The vendor said "ready" to the sensor, then "running" again to the run it launched: the run defers.
    stellic.hold_jobs()
    assert materialize(defs, instance, ASSET, first.partition_key, tags=first.tags,
                       config={"inline_wait_seconds": 0.2}).success
    assert materializations(instance, ASSET) == []
    assert [o["edu/export_state"] for o in export_observations(instance, ASSET)][-2:] == ["started", "deferred"]

    stellic.release_jobs()
    again = sensor_tick(defs, instance, SENSOR, ready.cursor)
    (second,) = again.run_requests
    assert second.run_key != first.run_key  # Dagster launches a run key once: a repeat would be dropped
    assert second.run_key.startswith(job_id) and second.partition_key == TODAY
    assert materialize(defs, instance, ASSET, second.partition_key, tags=second.tags).success
    (mat,) = materializations(instance, ASSET)
    assert mat.metadata["vendor_job_id"].value == job_id
    assert sensor_tick(defs, instance, SENSOR, again.cursor).run_requests == []


def test_records_after_reads_every_page_oldest_first(instance):
    """A sensor's cursor is the last storage id it saw: a tick must read every record that arrived since,
    not just the first page of them."""
    import dagster as dg

    from edu_assets.core.export_records import records_after

    key = dg.AssetKey(["test", "paged"])
    for n in range(7):
        instance.report_runless_asset_event(dg.AssetMaterialization(key, metadata={"n": n}))
    seen = list(records_after(instance.fetch_materializations, key, None, page_size=2))
    assert [r.asset_materialization.metadata["n"].value for r in seen] == list(range(7))
    after_third = seen[2].storage_id
    rest = list(records_after(instance.fetch_materializations, key, after_third, page_size=3))
    assert [r.asset_materialization.metadata["n"].value for r in rest] == [3, 4, 5, 6]
