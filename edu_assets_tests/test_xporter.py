"""Xporter end to end: the emulator over HTTP -> real Dagster runs and sensors -> Parquet -> DuckDB."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.lake import DATA_FILE
from edu_assets.definitions import build_definitions, selection_for
from edu_assets.sandbox.credentials import (
    XPORTER_MANAGEMENT_SECRET,
    XPORTER_RELYING_PARTY,
    xporter_school_secret,
)
from edu_assets.vendors.xporter.catalog import load_catalog
from edu_assets.vendors.xporter.partitions import ESTAB_PARTITIONS, partitioning_for
from edu_assets.vendors.xporter.resources import reset_caches as reset_xporter_caches
from edu_assets.vendors.xporter.resources import xporter_resource_from_env
from edu_assets_tests.helpers import (
    failure_message,
    materializations,
    materialize,
    query,
    sensor_tick,
)
from edu_assets_tests.test_xporter_filters import land_filter_sources, partition_for, run_config_for

A, B, C = "3281101", "3281102", "3281104"


def covered(request: dg.RunRequest) -> str | tuple[str, str] | None:
    """A run request's partition, or its (first, last) partition range."""
    tags = request.tags or {}
    if "dagster/asset_partition_range_start" in tags:
        return tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]
    return request.partition_key


def lake_rows(lake_env: Path, asset: str, partition: str) -> list[dict]:
    path = lake_env / "lake" / "xporter" / asset / partition / DATA_FILE
    with duckdb.connect() as con:
        cur = con.execute(f"SELECT * FROM read_parquet('{path}', hive_partitioning=false)")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def calls(sandbox, fragment: str) -> list[dict]:
    """Data requests to paths containing ``fragment`` (readiness probes, onlyGetDBStatus, left out)."""
    return [r for r in sandbox.requests if fragment.lower() in r["path"].lower()
            and "onlyGetDBStatus" not in r.get("query", {})]


def observations(instance, asset: str) -> list[dict]:
    recs = instance.fetch_observations(dg.AssetKey.from_user_string(asset), limit=100, ascending=True).records
    return [{k: v.value for k, v in r.asset_observation.metadata.items()} for r in recs]


@pytest.fixture
def xp(sandbox):
    app = sandbox.app("xporter")
    app.set_knobs(rows=30)
    return app


@pytest.fixture
def schools(instance):
    instance.add_dynamic_partitions(ESTAB_PARTITIONS, [A, B, C])


def test_discovery_sensor_keeps_school_partitions_in_step(defs, instance, xp, lake_env):
    tick = sensor_tick(defs, instance, "xporter_school_discovery")
    (add,) = tick.dynamic_partitions_requests
    assert sorted(add.partition_keys) == [A, B, C]  # pending 3281110 and revoked 3281103 are not added
    # one snapshot run for the batch of new schools: a range over the partitions in the order they are added
    jobs = sorted((r.job_name, covered(r)) for r in tick.run_requests)
    assert jobs == [("xporter_register", None), ("xporter_snapshots", (A, C))]
    assert list(add.partition_keys) == [A, B, C]
    instance.add_dynamic_partitions(ESTAB_PARTITIONS, list(add.partition_keys))
    assert materialize(defs, instance, "xporter/students", B).success  # land some data for B first

    xp.set_school_status(B, "revoked")
    xp.add_school("3281120", "New Primary")
    tick2 = sensor_tick(defs, instance, "xporter_school_discovery", tick.cursor)
    requests = {type(r).__name__: r.partition_keys for r in tick2.dynamic_partitions_requests}
    assert requests == {"AddDynamicPartitionsRequest": ["3281120"], "DeleteDynamicPartitionsRequest": [B]}
    assert ("xporter_snapshots", "3281120") in {(r.job_name, covered(r)) for r in tick2.run_requests}
    assert lake_rows(lake_env, "students", f"estab={B}")  # revoked: no longer scheduled, data kept
    # a register that did not change requests nothing new
    instance.add_dynamic_partitions(ESTAB_PARTITIONS, ["3281120"])
    instance.delete_dynamic_partition(ESTAB_PARTITIONS, B)
    tick3 = sensor_tick(defs, instance, "xporter_school_discovery", tick2.cursor)
    assert tick3.run_requests == [] and tick3.dynamic_partitions_requests == []


def test_multi_table_endpoint_lands_one_asset_per_table(defs, instance, xp, schools, lake_env):
    result = materialize(defs, instance, "xporter/achievement_for_date_range__achievements", f"{A}|2025-03-01")
    assert result.success
    endpoint = next(e for e in load_catalog()[0] if e.name == "achievement_for_date_range")
    for table in endpoint.tables:
        asset = endpoint.asset_name(table)
        (mat,) = materializations(instance, f"xporter/{asset}", f"{A}|2025-03-01")
        rows = mat.metadata["dagster/row_count"].value
        assert rows == len(lake_rows(lake_env, asset, f"estab={A}/month=2025-03-01")) > 0
    # the response names its first array 'achievementfordaterange'; the alias maps it to Achievements
    dates = query(lake_env / "edu.duckdb",
                  "SELECT min(date)::VARCHAR, max(date)::VARCHAR FROM xporter.achievement_for_date_range__achievements")
    assert dates[0][0] >= "2025-03-01" and dates[0][1] <= "2025-03-31"
    schema = defs.get_assets_def(dg.AssetKey(["xporter", "students"])).specs_by_key[
        dg.AssetKey(["xporter", "students"])].metadata["dagster/column_schema"]
    upn = next(c for c in schema.columns if c.name == "upn")
    assert "consent scope: UPN" in upn.description and upn.tags == {"consent_scope": "UPN"}


@pytest.mark.timeout(900)  # ~200 tables' landings and checks: 231 s measured at load average 6 on 2 cores
def test_every_endpoint_lands_for_one_school(defs, instance, xp, schools, lake_env):
    """Every endpoint, its mandatory filters set the way a deployment sets them: the people lists and the
    lookup endpoints land first, the filter-discovery sensor turns the lookups' values into partitions, and
    the one filter a person chooses (Assessment Results) comes from run config. Endpoints sharing a partition
    land in one run (one run per endpoint would take minutes)."""
    xp.set_knobs(rows=3, rows_per_month=3)
    land_filter_sources(defs, instance, A)
    students = [r["id"] for r in lake_rows(lake_env, "students", f"estab={A}")]
    endpoints, _ = load_catalog()
    runs: dict[tuple[str, str], list] = {}
    for ep in endpoints:
        if ep.name != "test_error":
            runs.setdefault((partitioning_for(ep).name, partition_for(instance, ep, A)), []).append(ep)
    failed = []
    for (_, partition), group in runs.items():
        keys = [dg.AssetKey(["xporter", ep.asset_name(t)]) for ep in group for t in ep.tables]
        config = {f"xporter__{ep.name}": {"config": run_config_for(ep, students)}
                  for ep in group if run_config_for(ep, students)}
        result = dg.materialize(selection_for(defs, keys), partition_key=partition, instance=instance,
                                resources=defs.resources, run_config={"ops": config} if config else {},
                                raise_on_error=False)
        failed += [(e.step_key, e.step_failure_data.error.message[:200]) for e in result.all_events
                   if e.is_step_failure]
    assert failed == []
    assert len(runs) < 20
    views = query(lake_env / "edu.duckdb", "SELECT count(*) FROM duckdb_views() WHERE schema_name = 'xporter'")
    assert views[0][0] == sum(len(e.tables) for e in endpoints if e.name != "test_error")


def test_change_set_full_delta_then_rejected_token(defs, instance, xp, schools, lake_env):
    def landed_ids() -> list[str]:
        return sorted(r["id"] for r in lake_rows(lake_env, "students", f"estab={A}"))

    def emulator_ids() -> list[str]:
        return sorted(str(r["Id"]) for r in xp.current_rows(A, "students"))

    assert materialize(defs, instance, "xporter/students", A).success
    assert landed_ids() == emulator_ids()
    xp.mutate(A, "students", inserts=3, updates=4, deletes=2)
    assert materialize(defs, instance, "xporter/students", A).success
    tokens = [r["query"].get("changedRows", [None])[0] for r in calls(xp.server, f"/School/{A}/Students")]
    assert tokens[0] == "*" and tokens[-1] not in ("*", None)  # the second run asked for changes only
    assert landed_ids() == emulator_ids()
    landed = {r["id"]: r for r in lake_rows(lake_env, "students", f"estab={A}")}
    for row in xp.current_rows(A, "students"):
        assert landed[str(row["Id"])]["row_hash"] == row["RowHash"]  # updates applied, not just ids
    md = materializations(instance, "xporter/students", A)[0].metadata
    assert md["change_set"].value == "delta: 7 upserted, 2 deleted"

    xp.expire_change_tokens(A)
    xp.mutate(A, "students", inserts=1, deletes=1)
    assert materialize(defs, instance, "xporter/students", A).success
    tokens = [r["query"].get("changedRows", [None])[0] for r in calls(xp.server, f"/School/{A}/Students")]
    assert tokens[-1] == "*"  # rejected token -> full reload
    assert landed_ids() == emulator_ids()
    # a re-run of the same partition with nothing changed is idempotent
    assert materialize(defs, instance, "xporter/students", A).success
    assert landed_ids() == emulator_ids() and len(landed_ids()) == len(set(landed_ids()))
    # a change set of deletions only
    xp.mutate(A, "students", deletes=3)
    assert materialize(defs, instance, "xporter/students", A).success
    assert landed_ids() == emulator_ids()


def test_changed_options_start_a_new_change_set(defs, instance, xp, schools, lake_env):
    assert materialize(defs, instance, "xporter/students", A).success
    assert materialize(defs, instance, "xporter/students", A, config={"options": ["includeLeavers"]}).success
    (last,) = calls(xp.server, f"/School/{A}/Students")[-1:]
    assert last["query"]["changedRows"] == ["*"] and last["query"]["includeLeavers"] == ["true"]
    bad = materialize(defs, instance, "xporter/students", A, config={"options": ["includeEverything"]})
    assert not bad.success and "unknown option(s) ['includeEverything']" in failure_message(bad)


def test_year_of_attendance_is_one_run_with_at_most_12_range_calls(defs, instance, xp, schools, lake_env):
    result = materialize(
        defs, instance, "xporter/attendance_for_date_range", None,
        tags={"dagster/asset_partition_range_start": f"{A}|2025-01-01",
              "dagster/asset_partition_range_end": f"{A}|2025-12-01"},
    )
    assert result.success
    first_pages = [r for r in calls(xp.server, "/AttendanceForDateRange") if r["query"].get("page") == ["1"]]
    assert len(first_pages) == 12
    assert {r["query"]["DateFrom"][0] for r in first_pages} == {f"2025-{m:02d}-01" for m in range(1, 13)}
    recs = instance.fetch_materializations(dg.AssetKey(["xporter", "attendance_for_date_range"]), limit=50).records
    assert sorted(r.partition_key for r in recs) == [f"{A}|2025-{m:02d}-01" for m in range(1, 13)]
    # a wider window: the same rows in fewer calls, split back into month partitions by date
    before = {m: lake_rows(lake_env, "attendance_for_date_range", f"estab={A}/month=2025-{m:02d}-01") for m in (1, 2, 3)}
    result = materialize(
        defs, instance, "xporter/attendance_for_date_range", None, config={"window_months": 3},
        tags={"dagster/asset_partition_range_start": f"{A}|2025-01-01",
              "dagster/asset_partition_range_end": f"{A}|2025-03-01"},
    )
    assert result.success
    wide = [r for r in calls(xp.server, "/AttendanceForDateRange") if r["query"].get("page") == ["1"]][12:]
    assert len(wide) == 1 and wide[0]["query"]["DateTo"] == ["2025-03-31"]
    for m, rows in before.items():
        after = lake_rows(lake_env, "attendance_for_date_range", f"estab={A}/month=2025-{m:02d}-01")
        assert sorted(r["id"] for r in after) == sorted(r["id"] for r in rows)


def test_paused_school_is_skipped_while_others_land(defs, instance, xp, schools, lake_env):
    xp.set_school_status(B, "paused")
    paused = materialize(defs, instance, "xporter/students", B)
    assert paused.success  # a backfill over many schools goes on
    assert materializations(instance, "xporter/students", B) == []
    obs = observations(instance, "xporter/students")
    assert obs[-1]["edu/skipped"] == "paused" and "paused" in obs[-1]["reason"]
    assert materialize(defs, instance, "xporter/students", A).success
    assert len(materializations(instance, "xporter/students", A)) == 1


def test_token_refreshed_ahead_of_expiry_and_after_401_mid_paging(defs, instance, xp, schools, lake_env, monkeypatch):
    # A 4 s token is replaced 2 s before it lapses (half its life); 20 pages, 2 in flight, at least 250 ms
    # each, take at least 2.75 s, so the refresh must happen however fast the machine is, and a request
    # would have to stall for 2 s to reach the vendor with a lapsed token, however slow it is.
    xp.set_knobs(rows_by_endpoint={"students": 400}, token_ttl=4, page_latency=0.25)
    config = {"page_size": 20, "page_concurrency": 2}
    assert materialize(defs, instance, "xporter/students", A, config=config).success
    sts = [r for r in xp.server.requests if "GetToken" in r["path"]]
    assert len(sts) >= 2  # the token was replaced before it lapsed
    (mat,) = materializations(instance, "xporter/students", A)
    assert mat.metadata["pages"].value == 20
    assert mat.metadata["fetch_seconds"].value >= 20 / 2 * 0.25  # 2 in flight, 250 ms a page: paging is timed
    assert not any(r["status"] == 401 for r in calls(xp.server, f"/School/{A}/Students"))
    assert len(lake_rows(lake_env, "students", f"estab={A}")) == 400

    # the vendor revokes the token mid-paging: one 401, one refresh, and the run carries on. The revocation
    # follows the run's third page request (not a clock), so a slow run start cannot make it come too early.
    # The first run's 4 s token would be refreshed ahead of its expiry (a clock) at about the moment of the
    # revocation, and a token minted after it is valid: forget it, so the run mints one long-lived token.
    xp.set_knobs(token_ttl=3600)
    reset_xporter_caches()
    served_before = len(calls(xp.server, f"/School/{A}/Students"))
    stop = threading.Event()

    def revoke_mid_paging() -> None:
        while not stop.wait(0.005):
            if len(calls(xp.server, f"/School/{A}/Students")) >= served_before + 3:
                xp.expire_tokens(A)
                return

    watcher = threading.Thread(target=revoke_mid_paging)
    watcher.start()
    try:
        assert materialize(defs, instance, "xporter/students", A, config={**config, "full_refresh": True}).success
    finally:
        stop.set()
        watcher.join()
    statuses = [r["status"] for r in calls(xp.server, f"/School/{A}/Students")][served_before:]
    assert statuses[:3] == [200, 200, 200] and 401 in statuses and statuses[-1] == 200
    assert len(lake_rows(lake_env, "students", f"estab={A}")) == 400


def test_data_not_ready_lands_nothing_and_retries(defs, instance, xp, schools, lake_env):
    assert materialize(defs, instance, "xporter/staff__staff", A).success
    before = len(lake_rows(lake_env, "staff__staff", f"estab={A}"))
    xp.mutate(A, "staff", inserts=5)
    xp.server.faults.add("not_ready", vendor="xporter", match="/Staff/", times=1)
    retried = materialize(defs, instance, "xporter/staff__staff", A, config={"not_ready_wait_seconds": 0.1})
    assert retried.success
    assert len(lake_rows(lake_env, "staff__staff", f"estab={A}")) == before + 5
    assert "not_ready" in [o["edu/skipped"] for o in observations(instance, "xporter/staff__staff")]
    xp.server.faults.add("not_ready", vendor="xporter", match="/Staff/", times=10)
    xp.mutate(A, "staff", inserts=5)
    failed = materialize(defs, instance, "xporter/staff__staff", A,
                         config={"not_ready_wait_seconds": 0.05, "not_ready_retries": 1})
    assert not failed.success and "not ready" in failure_message(failed)
    assert len(lake_rows(lake_env, "staff__staff", f"estab={A}")) == before + 5  # nothing partial


def test_vendor_error_body_fails_clearly_naming_school_and_endpoint(defs, instance, xp, schools, lake_env, monkeypatch):
    monkeypatch.setenv("EDU_HTTP_MAX_ATTEMPTS", "2")  # a 500 is retried; keep the test quick
    result = materialize(defs, instance, "xporter/test_error", A)
    assert not result.success
    msg = failure_message(result)
    assert "[xporter] test_error (partition school 3281101)" in msg and "TestError" in msg


def test_unauthorised_scopes_skip_or_flag_missing_columns(defs, instance, xp, schools, lake_env):
    xp.set_school_scopes(A, ["Student", "StudentLite", "School"])
    skipped = materialize(defs, instance, "xporter/student_medical__student_conditions", A)
    assert skipped.success and observations(instance, "xporter/student_medical__student_conditions")
    assert "needs one of the consent scopes" in observations(
        instance, "xporter/student_medical__student_conditions")[-1]["reason"]
    result = materialize(defs, instance, "xporter/students", A)
    assert result.success
    md = materializations(instance, "xporter/students", A)[0].metadata
    assert "UPN" in md["missing_columns"].value
    drift = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
             for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}["schema_drift"]
    assert drift.passed is False and drift.severity == dg.AssetCheckSeverity.WARN


def test_select_config_limits_and_renames_columns(defs, instance, xp, schools, lake_env):
    result = materialize(defs, instance, "xporter/students", A, config={"select": "Id,Forename as FirstName"})
    assert result.success
    assert set(lake_rows(lake_env, "students", f"estab={A}")[0]) == {"id", "first_name"}


def test_health_freshness_check_flags_stale_school(defs, instance, xp, schools, lake_env):
    xp.set_knobs(data_age_days={B: 9})
    results = {}
    for estab in (A, B):
        run = materialize(defs, instance, "xporter/health", estab)
        assert run.success
        (ev,) = [e.asset_check_evaluation_data for e in run.all_events
                 if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.asset_check_evaluation_data.check_name == "school_data_fresh"]
        results[estab] = ev.passed
    assert results == {A: True, B: False}


def test_management_assets_and_register(defs, instance, xp, schools, lake_env):
    assert materialize(defs, instance, "xporter/schools", None).success
    statuses = dict(query(lake_env / "edu.duckdb", "SELECT estab, status FROM xporter.schools"))
    assert statuses[A] == "authorised" and statuses["3281103"] == "revoked" and statuses["3281110"] == "pending"
    assert materialize(defs, instance, "xporter/management_token_details", None).success
    # Usage, Logs, GDPRIDs document no parameters (L236): one call, no estab, no httpstatuscodes
    assert materialize(defs, instance, "xporter/management_usage", None).success
    assert query(lake_env / "edu.duckdb", "SELECT count(*) FROM xporter.management_usage")[0][0] > 0
    # Check Estab (L437) is a read asset per school, sending only its documented Estab
    assert materialize(defs, instance, "xporter/management_check_estab", A).success
    assert query(lake_env / "edu.duckdb", "SELECT count(*) FROM xporter.management_check_estab")[0][0] > 0
    management = [r for r in xp.server.requests if "/School/" not in r["path"] and "GetToken" not in r["path"]]
    assert {r["path"].rsplit("/", 1)[-1]: sorted(r["query"]) for r in management} == {
        "GetXodSchools": ["includePendingAuthorisation"], "TokenDetails": [], "Usage": [], "CheckEstab": ["Estab"]}


def test_wrong_secret_fails_clearly_and_secrets_never_leak(defs, instance, xp, schools, lake_env, monkeypatch, capfd):
    secret = "wrong-secret-5c1d9e"
    monkeypatch.setenv("XPORTER_SCHOOL_SECRETS", json.dumps({A: secret, B: xporter_school_secret(B)}))
    monkeypatch.setenv("XPORTER_MANAGEMENT_SECRET", XPORTER_MANAGEMENT_SECRET)
    monkeypatch.setenv("XPORTER_RELYING_PARTY", XPORTER_RELYING_PARTY)
    monkeypatch.setenv("XPORTER_BASE_URL", xp.base_url)
    monkeypatch.setenv("XPORTER_STS_URL", f"{xp.base_url}/idaas/sts/STS/GetToken")
    defs = build_definitions()  # settings enter when the definitions load
    bad = materialize(defs, instance, "xporter/students", A)
    assert not bad.success and "STS refused the secret" in failure_message(bad)
    assert materialize(defs, instance, "xporter/students", B).success
    out, err = capfd.readouterr()
    visible = out + err + "".join(
        (e.user_message or "") + repr(e.dagster_event.event_specific_data if e.dagster_event else "")
        for run in instance.get_runs() for e in instance.all_logs(run.run_id))
    assert secret not in visible and xporter_school_secret(B) not in visible
    assert not re.search(r"Idaas (?!\*\*\*|\{)\S", visible)  # no token after the scheme (source lines aside)


def test_world_readable_secrets_file_is_refused(defs, instance, xp, schools, lake_env, monkeypatch, tmp_path):
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"management": "m", "schools": {A: "s"}}))
    os.chmod(path, 0o644)
    monkeypatch.setenv("XPORTER_SECRETS_FILE", str(path))
    monkeypatch.setenv("XPORTER_RELYING_PARTY", XPORTER_RELYING_PARTY)
    defs = build_definitions()  # settings enter when the definitions load
    result = materialize(defs, instance, "xporter/students", A)
    assert not result.success and "other users can read it" in failure_message(result)


def test_updated_since_upserts_recent_rows_without_moving_the_change_set(defs, instance, xp, schools, lake_env):
    assert materialize(defs, instance, "xporter/students", A).success
    changed = xp.mutate(A, "students", updates=2)["updated"]
    today = dt.date.today().isoformat()
    assert materialize(defs, instance, "xporter/students", A, config={"updated_since": today}).success
    last = calls(xp.server, f"/School/{A}/Students")[-1]["query"]
    assert last["updatedSince"] == [today] and "changedRows" not in last
    landed = {r["id"]: r for r in lake_rows(lake_env, "students", f"estab={A}")}
    current = {str(r["Id"]): r for r in xp.current_rows(A, "students")}
    assert set(landed) == set(current)
    assert all(landed[str(i)]["row_hash"] == current[str(i)]["RowHash"] for i in changed)
    bad = materialize(defs, instance, "xporter/attendance_codes", A, config={"updated_since": today})
    assert not bad.success and "does not offer updatedSince" in failure_message(bad)


def test_daily_schedules_cover_every_school(defs, instance, xp, schools):
    from edu_assets.vendors.xporter.automation import xporter_current_month, xporter_daily_snapshots

    moment = dt.datetime(2026, 3, 9, 6, 0, tzinfo=dt.UTC)
    ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=moment)
    assert [covered(r) for r in xporter_daily_snapshots(ctx)] == [(A, C)]  # one run for the batch of schools
    assert sorted(r.partition_key for r in xporter_current_month(ctx)) == [f"{e}|2026-03-01" for e in (A, B, C)]
    many = [str(9000000 + i) for i in range(60)]
    instance.add_dynamic_partitions(ESTAB_PARTITIONS, many)
    batches = [covered(r) for r in xporter_daily_snapshots(ctx)]  # 63 schools: runs of at most 25, in order
    assert batches == [(A, many[21]), (many[22], many[46]), (many[47], many[59])]
    job = defs.resolve_job_def("xporter_snapshots")
    assert dg.AssetKey(["xporter", "students"]) in job.asset_layer.executable_asset_keys
    assert dg.AssetKey(["xporter", "test_error"]) not in job.asset_layer.executable_asset_keys


def test_rows_short_of_the_reported_count_fail_and_land_nothing(defs, instance, xp, schools, lake_env):
    xp.set_knobs(row_count_offset=5)  # the server reports 5 rows more than it serves
    result = materialize(defs, instance, "xporter/students", A)
    assert not result.success
    assert "paging returned 30 rows but the server reported 35" in failure_message(result)
    assert not (lake_env / "lake" / "xporter" / "students").exists()


def test_undocumented_paging_and_change_token_variants_are_followed_and_recorded(defs, instance, xp, schools,
                                                                                  lake_env):
    # no __pagination__ block (L635): pages are requested until a short one, never only page 1
    xp.set_knobs(pagination="none", rows_by_endpoint={"students": 23})
    assert materialize(defs, instance, "xporter/students", A, config={"page_size": 5}).success
    assert [r["query"]["page"] for r in calls(xp.server, f"/School/{A}/Students")] == [[str(p)] for p in range(1, 6)]
    assert len(lake_rows(lake_env, "students", f"estab={A}")) == 23
    md = materializations(instance, "xporter/students", A)[0].metadata
    assert md["paging"].value == "until a short page (no PageCount)"
    assert "db_status" not in md  # ready at the first attempt: no onlyGetDBStatus probe was needed
    # the key carrying the next changedRows token (L600): each spelling is followed and recorded
    xp.set_knobs(pagination="full")
    for knob, recorded in (("changedRows", "changedRows"), ("meta", "meta[0].changedRows")):
        xp.set_knobs(change_token_key=knob)
        assert materialize(defs, instance, "xporter/students", A, config={"full_refresh": True}).success
        xp.mutate(A, "students", inserts=2)
        assert materialize(defs, instance, "xporter/students", A).success
        assert calls(xp.server, f"/School/{A}/Students")[-1]["query"]["changedRows"] != ["*"]
        md = materializations(instance, "xporter/students", A)[0].metadata
        assert md["change_token_key"].value == recorded and md["change_set"].value.startswith("delta: 2 upserted")
    # no token at all: said in metadata, and the next run says why it reloads everything
    xp.set_knobs(change_token_key="none")
    assert materialize(defs, instance, "xporter/students", A, config={"full_refresh": True}).success
    md = materializations(instance, "xporter/students", A)[0].metadata
    assert md["change_token_key"].value == "none returned: the next run reloads everything"
    assert materialize(defs, instance, "xporter/students", A).success
    md = materializations(instance, "xporter/students", A)[0].metadata
    assert md["change_set_reason"].value == "the last change-set response carried no next changedRows token"


def test_result_sets_land_under_the_samples_and_the_headings_spellings(defs, instance, xp, schools, lake_env):
    for spelling in ("sample", "heading"):  # StaffVehicles (sample L11965) / StaffMotorVehicles (field table)
        xp.set_knobs(result_set_names=spelling)
        assert materialize(defs, instance, "xporter/staff__staff", A, config={"full_refresh": True}).success
        assert len(lake_rows(lake_env, "staff__staff_motor_vehicles", f"estab={A}")) > 0
        md = materializations(instance, "xporter/staff__staff_motor_vehicles", A)[0].metadata
        assert "unexpected_result_sets" not in md and "result_set" not in md
    md = materializations(instance, "xporter/staff__staff", A)[0].metadata
    assert md["vendor_data_updated_field"].value == "DateTime"  # meta's last refresh (L5375)


def test_the_live_resource_is_configured_at_load_with_its_secrets_as_environment_variables(unconfigured, monkeypatch):
    """Like every vendor's resource: decided when the definitions load, secrets held as ``dg.EnvVar`` (the UI
    and run config show the variables' names, never their values), resolved when a run initialises it."""
    secrets = {A: "school-a-secret-value"}
    monkeypatch.setenv("XPORTER_SCHOOL_SECRETS", json.dumps(secrets))
    monkeypatch.setenv("XPORTER_MANAGEMENT_SECRET", "management-secret-value")
    monkeypatch.setenv("XPORTER_RELYING_PARTY", "rp.example")
    resource = xporter_resource_from_env()
    assert isinstance(resource.school_secrets, dg.EnvVar) and resource.school_secrets == "XPORTER_SCHOOL_SECRETS"
    assert isinstance(resource.management_secret, dg.EnvVar) and not resource.sandbox
    assert resource.base_url == "https://xporter.groupcall.com" and resource.relying_party == "rp.example"
    resolved = resource.process_config_and_initialize().secrets()
    assert resolved.school(A, Where("xporter")) == "school-a-secret-value"
    assert resolved.management == "management-secret-value"
    with pytest.raises(ConfigError, match=f"no secret is configured for school {B}"):
        resolved.school(B, Where("xporter"))  # one school's secret is never used for another
    monkeypatch.delenv("XPORTER_SCHOOL_SECRETS")
    assert resource.base_url == "https://xporter.groupcall.com"  # the environment after the load changes nothing
