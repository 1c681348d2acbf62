"""SkillsPass end to end: sandbox over HTTP → real Dagster runs and sensors → Parquet → DuckDB."""

from __future__ import annotations

import dagster as dg
import pytest

from edu_assets.sandbox.skillspass import SANDBOX_KEY, SANDBOX_SECRET, SANDBOX_TOKEN
from edu_assets.vendors.skillspass.partitions import ACTIVITIES
from edu_assets_tests.helpers import (
    export_observations,
    failure_message,
    materializations,
    materialize,
    query,
    requests_to,
    sensor_tick,
    wait_until_jobs_done,
)

DAY = "2026-11-02"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
COMPLETION = "skillspass_export_completion"


def creates(sandbox) -> list[dict]:
    return [r for r in requests_to(sandbox, "/skillspass/tp-api/exports") if r["method"] == "POST"]


def job_bodies(sandbox) -> list[dict]:
    app = sandbox.app("skillspass")
    return [app.job_request(j.id) for j in list(app.jobs._jobs.values())]


@pytest.fixture
def skillspass(sandbox):
    app = sandbox.app("skillspass")
    app.set_knobs(ready_after=0.3)
    return app


def test_daily_window_lands_csv_with_exact_bounds(defs, instance, sandbox, skillspass, lake_env):
    assert materialize(defs, instance, "skillspass/users", DAY).success
    (body,) = job_bodies(sandbox)
    assert body["startDate"] == f"{DAY}T00:00:00.000Z" and body["endDate"] == f"{DAY}T23:59:59.999Z"
    assert (body["exportType"], body["format"]) == ("USERS", "CSV")
    catalog = lake_env / "edu.duckdb"
    rows, first, last = query(catalog, "SELECT count(*), min(window_start), max(window_end) FROM skillspass.users")[0]
    assert (rows, str(first), str(last)) == (20, DAY, DAY)
    cols = [r[0] for r in query(catalog, "DESCRIBE skillspass.users")]
    assert cols[:4] == ["user_id", "firstname", "middlename", "lastname"] and "id_number" in cols
    # the change feed's current-state view keeps one row per user
    (n, distinct) = query(catalog, "SELECT count(*), count(DISTINCT user_id) FROM skillspass.users_current")[0]
    assert n == distinct > 0
    (mat,) = materializations(instance, "skillspass/users", DAY)
    assert mat.metadata["startDate"].value == f"{DAY}T00:00:00.000Z"
    assert mat.metadata["vendor_job_id"].value


def test_jsonl_is_selectable_and_lands_the_same_records(defs, instance, sandbox, skillspass, lake_env):
    assert materialize(defs, instance, "skillspass/learning_activities", DAY, config={"format": "JSONL"}).success
    assert job_bodies(sandbox)[0]["format"] == "JSONL"
    catalog = lake_env / "edu.duckdb"
    jsonl = query(catalog, "SELECT user_id, learning_activity_id, score FROM skillspass.learning_activities ORDER BY ALL")
    assert materialize(defs, instance, "skillspass/learning_activities", DAY, config={"format": "CSV"}).success
    csv_rows = query(catalog, "SELECT user_id, learning_activity_id, score FROM skillspass.learning_activities ORDER BY ALL")
    assert len(jsonl) == 20 and [tuple(map(str, r)) for r in jsonl] == [tuple(map(str, r)) for r in csv_rows]
    # an interactions-only format is refused for the other exports, clearly
    result = materialize(defs, instance, "skillspass/users", DAY, config={"format": "XML"})
    assert not result.success and "supports CSV, JSONL, not XML" in failure_message(result)


@pytest.mark.parametrize("shape", ["nested", "top"])
def test_both_documented_status_shapes(defs, instance, sandbox, skillspass, lake_env, shape):
    skillspass.set_knobs(status_shape=shape)
    assert materialize(defs, instance, "skillspass/networks", DAY).success
    assert query(lake_env / "edu.duckdb", "SELECT count(*) FROM skillspass.networks")[0][0] == 20


def test_failed_job_fails_with_the_vendors_errors(defs, instance, sandbox, skillspass, lake_env):
    sandbox.faults.add("job_fails", vendor="skillspass", message="report database timeout")
    result = materialize(defs, instance, "skillspass/users", DAY)
    assert not result.success
    message = failure_message(result)
    assert "EXPORT_FAILED: " in message and "report database timeout" in message and "[skillspass] users (partition 2026-11-02)" in message
    assert [o["edu/export_state"] for o in export_observations(instance, "skillspass/users")] == ["started", "failed"]
    assert not (lake_env / "lake" / "skillspass" / "users").exists()


def test_expired_download_url_is_reissued(defs, instance, sandbox, skillspass, lake_env):
    sandbox.faults.add("expire_url", vendor="skillspass")
    assert materialize(defs, instance, "skillspass/users", DAY).success
    polls = [r for r in requests_to(sandbox, "/skillspass/tp-api/exports") if r["method"] == "GET"]
    downloads = requests_to(sandbox, "/skillspass-files/")
    assert all(d["status"] == 200 for d in downloads) and len(downloads) == 1  # never tried the dead URL
    assert len(polls) >= 2 and len(creates(sandbox)) == 1


def test_urls_that_are_always_expired_fail_clearly(defs, instance, sandbox, skillspass, lake_env):
    skillspass.set_knobs(url_ttl=-60)
    result = materialize(defs, instance, "skillspass/users", DAY)
    assert not result.success and "expired 4 times in a row" in failure_message(result)
    assert len(creates(sandbox)) == 1


def test_empty_windows_land_empty_partitions(defs, instance, sandbox, skillspass, lake_env):
    skillspass.set_knobs(rows_per_day=0)
    assert materialize(defs, instance, "skillspass/users", DAY).success  # header-only CSV
    assert materialize(defs, instance, "skillspass/networks", DAY, config={"format": "JSONL"}).success  # 0 bytes
    catalog = lake_env / "edu.duckdb"
    assert query(catalog, "SELECT count(*) FROM skillspass.users")[0][0] == 0
    assert "user_id" in [r[0] for r in query(catalog, "DESCRIBE skillspass.users")]
    assert query(catalog, "SELECT count(*) FROM skillspass.networks")[0][0] == 0


def test_backfill_of_30_days_defers_and_the_sensor_lands_each_once(instance, sandbox, skillspass, lake_env, monkeypatch):
    monkeypatch.setenv("SKILLSPASS_RATE_PER_SECOND", "50")
    from edu_assets.definitions import build_definitions

    defs = build_definitions()
    skillspass.hold_jobs()  # the vendor's jobs stay PENDING until released, however slow the run is
    days = [f"2026-09-{d:02d}" for d in range(1, 31)]
    result = materialize(defs, instance, "skillspass/elearning_enrollments", None,
                         tags={RANGE_START: days[0], RANGE_END: days[-1]}, config={"inline_wait_seconds": 0.2})
    assert result.success  # one run for the whole range
    assert len(creates(sandbox)) == 30 and materializations(instance, "skillspass/elearning_enrollments") == []
    states = [o["edu/export_state"] for o in export_observations(instance, "skillspass/elearning_enrollments")]
    assert states.count("started") == 30 and states.count("deferred") == 30
    held = sensor_tick(defs, instance, COMPLETION)
    assert held.run_requests == []  # still running at the vendor: nothing to launch yet

    skillspass.release_jobs()
    wait_until_jobs_done(skillspass)
    tick = sensor_tick(defs, instance, COMPLETION, held.cursor)
    assert sorted(r.partition_key for r in tick.run_requests) == days
    assert len({r.run_key for r in tick.run_requests}) == 30
    for req in tick.run_requests:
        assert materialize(defs, instance, "skillspass/elearning_enrollments", req.partition_key, tags=req.tags).success
    assert len(creates(sandbox)) == 30  # every relaunch resumed its own job
    mats = materializations(instance, "skillspass/elearning_enrollments")
    assert sorted(m.partition for m in mats) == days  # each day landed exactly once
    again = sensor_tick(defs, instance, COMPLETION, tick.cursor)
    assert again.run_requests == []
    assert query(lake_env / "edu.duckdb", "SELECT count(DISTINCT window_start) FROM skillspass.elearning_enrollments")[0][0] == 30


def test_one_job_can_cover_a_wider_window(defs, instance, sandbox, skillspass, lake_env):
    week = [f"2026-10-{d:02d}" for d in range(5, 12)]
    tags = {RANGE_START: week[0], RANGE_END: week[-1]}
    assert materialize(defs, instance, "skillspass/learning_activities", None, tags=tags,
                       config={"days_per_job": 7}).success
    (body,) = job_bodies(sandbox)
    assert (body["startDate"], body["endDate"]) == ("2026-10-05T00:00:00.000Z", "2026-10-11T23:59:59.999Z")
    assert sorted(m.partition for m in materializations(instance, "skillspass/learning_activities")) == week
    catalog = lake_env / "edu.duckdb"
    assert query(catalog, "SELECT count(*) FROM skillspass.learning_activities")[0][0] == 7 * 20
    # re-running one day inside the window re-fetches the whole window: no partial overlap, no duplicates
    assert materialize(defs, instance, "skillspass/learning_activities", "2026-10-08").success
    assert job_bodies(sandbox)[-1]["startDate"] == "2026-10-05T00:00:00.000Z"
    assert query(catalog, "SELECT count(*) FROM skillspass.learning_activities")[0][0] == 7 * 20
    # a wider window that covers landed days replaces their files
    assert materialize(defs, instance, "skillspass/learning_activities", None,
                       tags={RANGE_START: "2026-10-01", RANGE_END: "2026-10-14"}, config={"days_per_job": 14}).success
    files = sorted((lake_env / "lake" / "skillspass" / "learning_activities").rglob("data.parquet"))
    assert [f.parent.parent.name + "/" + f.parent.name for f in files] == ["window_start=2026-10-01/window_end=2026-10-14"]
    assert query(catalog, "SELECT count(*) FROM skillspass.learning_activities")[0][0] == 14 * 20


def test_a_deferred_wide_window_is_relaunched_as_one_range(defs, instance, sandbox, skillspass, lake_env):
    skillspass.hold_jobs()  # the run must defer, whatever the machine's speed
    tags = {RANGE_START: "2026-10-05", RANGE_END: "2026-10-07"}
    assert materialize(defs, instance, "skillspass/users", None, tags=tags,
                       config={"days_per_job": 3, "inline_wait_seconds": 0.1}).success
    assert materializations(instance, "skillspass/users") == []
    skillspass.release_jobs()
    wait_until_jobs_done(skillspass)
    (req,) = sensor_tick(defs, instance, COMPLETION).run_requests
    assert req.partition_key is None and (req.tags[RANGE_START], req.tags[RANGE_END]) == ("2026-10-05", "2026-10-07")
    assert materialize(defs, instance, "skillspass/users", None, tags=req.tags).success  # no config: the handle says
    assert len(creates(sandbox)) == 1
    assert sorted(m.partition for m in materializations(instance, "skillspass/users")) == [
        "2026-10-05", "2026-10-06", "2026-10-07"]


def test_activity_discovery_sensor_and_interactions(defs, instance, sandbox, skillspass, lake_env):
    assert materialize(defs, instance, "skillspass/learning_activities", "2026-11-01").success
    tick = sensor_tick(defs, instance, "skillspass_activity_discovery")
    (add,) = tick.dynamic_partitions_requests
    assert sorted(add.partition_keys) == [str(40001 + i) for i in range(6)]
    for r in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions(ACTIVITIES.name, list(r.partition_keys))
    assert sensor_tick(defs, instance, "skillspass_activity_discovery", tick.cursor).dynamic_partitions_requests == []

    skillspass.set_knobs(activities=8)  # the organisation publishes two new activities
    assert materialize(defs, instance, "skillspass/learning_activities", "2026-11-02").success
    tick2 = sensor_tick(defs, instance, "skillspass_activity_discovery", tick.cursor)
    assert sorted(tick2.dynamic_partitions_requests[0].partition_keys) == ["40007", "40008"]
    instance.add_dynamic_partitions(ACTIVITIES.name, ["40007", "40008"])

    key = dg.MultiPartitionKey({"activity": "40007", "date": "2026-11-02"})
    assert materialize(defs, instance, "skillspass/learning_activity_interactions", key).success
    body = job_bodies(sandbox)[-1]
    assert (body["exportType"], body["format"], body["learningActivityId"]) == (
        "LEARNING_ACTIVITY_INTERACTIONS", "JSONL", 40007)
    rows = query(lake_env / "edu.duckdb", "SELECT DISTINCT learning_activity_id, activity FROM "
                 "skillspass.learning_activity_interactions")
    assert [(str(a), str(b)) for a, b in rows] == [("40007", "40007")]


def test_legacy_tenants_get_a_hint_and_a_switch(defs, instance, sandbox, skillspass, lake_env, monkeypatch):
    skillspass.set_knobs(legacy_types=True)
    result = materialize(defs, instance, "skillspass/elearning_enrollments", DAY)
    assert not result.success and "SKILLSPASS_LEGACY_TYPES=1" in failure_message(result)
    monkeypatch.setenv("SKILLSPASS_LEGACY_TYPES", "1")
    from edu_assets.definitions import build_definitions

    assert materialize(build_definitions(), instance, "skillspass/elearning_enrollments", DAY).success
    assert job_bodies(sandbox)[-1]["exportType"] == "ENROLLMENTS"


def test_live_credentials_are_used_and_never_shown(instance, sandbox, skillspass, lake_env, monkeypatch):
    key, token, secret = "sp-key-LIVE-1", "sp-token-LIVE-2", "sp-secret-LIVE-3"
    skillspass.credentials.add((key, token, secret))
    monkeypatch.setenv("SKILLSPASS_KEY", key)
    monkeypatch.setenv("SKILLSPASS_TOKEN", token)
    monkeypatch.setenv("SKILLSPASS_SECRET", secret)
    monkeypatch.setenv("SKILLSPASS_BASE_URL", sandbox.base_url("skillspass"))
    from edu_assets.definitions import build_definitions

    defs = build_definitions()
    assert materialize(defs, instance, "skillspass/users", DAY).success
    skillspass.credentials.discard((key, token, secret))
    assert (SANDBOX_KEY, SANDBOX_TOKEN, SANDBOX_SECRET) in skillspass.credentials
    failed = materialize(defs, instance, "skillspass/users", "2026-11-03")  # credentials revoked: a clear 401
    assert not failed.success and "credentials were rejected" in failure_message(failed)
    text = "\n".join(str(e.message) + str(e.dagster_event) for run in instance.get_runs()
                     for e in instance.all_logs(run.run_id))
    for value in (key, token, secret):
        assert value not in text


# -- issue 14: where the documents are silent, nothing lands empty unless SkillsPass said "no rows" --------


def test_zero_byte_csv_is_refused_not_landed_empty(defs, instance, sandbox, skillspass, lake_env):
    """A header-only CSV is "no changes"; a CSV of 0 bytes has not even its header, so it fails the partition."""
    sandbox.faults.add("empty_body", vendor="skillspass")
    result = materialize(defs, instance, "skillspass/users", DAY)
    assert not result.success and "0 bytes" in failure_message(result)
    assert materializations(instance, "skillspass/users", DAY) == []


def test_undocumented_status_without_url_fails_at_once_naming_it(defs, instance, sandbox, skillspass, lake_env):
    """Not polled (and deferred, and polled again) until the 6-hour deadline: the first such answer fails."""
    sandbox.faults.add("odd_status", vendor="skillspass", status="ARCHIVED")
    result = materialize(defs, instance, "skillspass/users", DAY)
    assert not result.success
    message = failure_message(result)
    assert "'ARCHIVED'" in message and "PENDING, COMPLETED, FAILED" in message and "2026-11-02" in message
    assert [o["edu/export_state"] for o in export_observations(instance, "skillspass/users")] == ["started", "failed"]


def test_prose_job_id_and_an_undocumented_final_status_with_a_url_land(defs, instance, sandbox, skillspass, lake_env):
    sandbox.faults.add("prose_job_id", vendor="skillspass")  # {"jobId": ...}, as the guide's prose says (L41)
    sandbox.faults.add("odd_status_with_url", vendor="skillspass", status="GENERATED")
    assert materialize(defs, instance, "skillspass/users", DAY).success
    (mat,) = materializations(instance, "skillspass/users", DAY)
    assert mat.metadata["vendor_status"].value == "GENERATED" and mat.metadata["dagster/row_count"].value == 20
    (started, *_) = export_observations(instance, "skillspass/users")
    assert "jobId" in str(started)


@pytest.mark.parametrize("activity", ["२३", "12a"])
def test_an_activity_partition_not_in_ascii_digits_fails_before_any_request(defs, instance, sandbox, skillspass,
                                                                           lake_env, activity):
    """Learning-activity ids are the vendor's integers; "२३" passes ``str.isdigit`` but is no id of theirs."""
    instance.add_dynamic_partitions(ACTIVITIES.name, [activity])
    key = str(dg.MultiPartitionKey({"activity": activity, "date": DAY}))
    result = materialize(defs, instance, "skillspass/learning_activity_interactions", key)
    assert not result.success
    assert "learning activity ids are numbers" in failure_message(result) and activity in failure_message(result)
    assert creates(sandbox) == []
