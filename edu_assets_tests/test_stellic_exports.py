"""Stellic exports end to end: sandbox over HTTP → real Dagster runs → Parquet → DuckDB."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pyarrow.parquet as pq
import pytest

from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.lake import DATA_FILE
from edu_assets.definitions import build_definitions
from edu_assets.demo import run_vendor_demo
from edu_assets.vendors.stellic.catalog import load_catalog, load_partner_reads
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

TODAY = dt.datetime.now(dt.UTC).date().isoformat()
SENSOR = "stellic_export_completion"


def test_every_export_lands_and_is_queryable(defs, instance, sandbox, lake_env):
    outcomes = run_vendor_demo(instance, defs, "stellic", echo=lambda *_: None)
    specs = load_catalog()
    reads = load_partner_reads()[0]
    landed = {o.key for o in outcomes if o.status == "landed"}
    expected = {f"stellic/{s.name}" for s in specs} | {f"stellic/{r.name}" for r in reads}
    assert landed == expected, [o for o in outcomes if o.status != "landed"]
    assert all(o.status == "landed" for o in outcomes), [o for o in outcomes if o.status != "landed"]
    catalog = lake_env / "edu.duckdb"
    for spec in specs:
        (rows,) = query(catalog, f"SELECT count(*) FROM stellic.{spec.name}")[0]
        assert rows > 0, spec.name
    # documented columns arrive snake_cased, with the partition as a hive column
    cols = [r[0] for r in query(catalog, "DESCRIBE stellic.engagement_score")]
    assert cols[:3] == ["username", "id", "engagement_score"] and "snapshot_date" in cols
    assert query(catalog, "SELECT count(DISTINCT month) FROM stellic.all_appointments")[0][0] == 3
    # snapshot assets also get a _latest view
    assert query(catalog, "SELECT count(*) FROM stellic.audit_data_latest")[0][0] > 0
    # the partner API export and the bulk export describe the same students
    assert (
        query(catalog, "SELECT count(*) FROM stellic.partner_engagement_score")[0][0]
        == query(catalog, "SELECT count(*) FROM stellic.engagement_score")[0][0]
    )
    # the per-student partner reads ran over the landed student list (the demo reads its first 20)
    assert (
        query(catalog, "SELECT count(DISTINCT student_username) FROM stellic.partner_student_property")[0][0]
        == 20
    )


def test_materialization_metadata_and_checks(defs, instance, sandbox, lake_env):
    result = materialize(defs, instance, "engagement_score", TODAY)
    assert result.success
    (mat,) = materializations(instance, "engagement_score", TODAY)
    md = mat.metadata
    assert md["dagster/row_count"].value == 200
    schema = md["dagster/column_schema"].value
    assert [c.name for c in schema.columns] == ["username", "id", "engagement_score"]
    assert "Engagement Score" in (schema.columns[2].description or "")
    assert md["download_sha256"].value and md["parquet_bytes"].value > 0
    assert "| username |" in md["preview"].value
    evals = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert evals == {"non_empty": True, "unique_key": True, "schema_drift": True}


def test_rerun_replaces_partition_idempotently(defs, instance, sandbox, lake_env):
    for _ in range(2):
        assert materialize(defs, instance, "audit_data", TODAY).success
    files = list((lake_env / "lake" / "stellic" / "audit_data").rglob("*"))
    assert [f.name for f in files if f.is_file()] == [DATA_FILE]
    assert query(lake_env / "edu.duckdb", "SELECT count(*) FROM stellic.audit_data")[0][0] == 200


def test_async_export_defers_then_sensor_lands_it_once(defs, instance, sandbox, lake_env):
    stellic = sandbox.app("stellic")
    stellic.hold_jobs()  # the vendor job stays "processing" until released, however slow the machine
    result = materialize(defs, instance, "audit_requirements", TODAY, config={"inline_wait_seconds": 0.2})
    assert result.success
    assert materializations(instance, "audit_requirements") == []
    states = [o["edu/export_state"] for o in export_observations(instance, "audit_requirements")]
    assert states == ["started", "deferred"]
    job_id = export_observations(instance, "audit_requirements")[-1]["vendor_job_id"]

    first = sensor_tick(defs, instance, SENSOR)
    assert first.run_requests == []  # still processing
    stellic.release_jobs()
    wait_until_jobs_done(stellic)
    second = sensor_tick(defs, instance, SENSOR, first.cursor)
    assert [r.run_key for r in second.run_requests] == [job_id]
    request = second.run_requests[0]
    assert request.partition_key == TODAY

    relaunch = materialize(defs, instance, "audit_requirements", request.partition_key, tags=request.tags)
    assert relaunch.success
    (mat,) = materializations(instance, "audit_requirements")
    assert mat.metadata["vendor_job_id"].value == job_id
    assert len(requests_to(sandbox, "/exports/export_data/audit_requirements")) == 1  # never a second job

    assert sensor_tick(defs, instance, SENSOR, second.cursor).run_requests == []


def test_manual_rerun_resumes_deferred_job_instead_of_starting_another(defs, instance, sandbox, lake_env):
    sandbox.app("stellic").hold_jobs()
    assert materialize(defs, instance, "permissions", TODAY, config={"inline_wait_seconds": 0.1}).success
    assert materializations(instance, "permissions") == []  # deferred
    # the re-run below waits inline for it (EDU_EXPORT_INLINE_WAIT_SECONDS)
    sandbox.app("stellic").release_jobs()
    assert materialize(defs, instance, "permissions", TODAY).success
    assert len(materializations(instance, "permissions")) == 1
    assert len(requests_to(sandbox, "/exports/export_data/permissions")) == 1


def test_sensor_tick_is_bounded_and_round_robin(defs, instance, sandbox, lake_env, monkeypatch):
    sandbox.app("stellic").set_knobs(async_ready_after=3600)
    for kind in ("2434", "3435", "9999"):
        instance.add_dynamic_partitions("stellic_usem_id", [kind])
        materialize(defs, instance, "sections_counting_for_reqs", kind, config={"inline_wait_seconds": 0})
    monkeypatch.setenv("EDU_SENSOR_MAX_POLLS_PER_TICK", "2")
    defs = build_definitions()  # settings enter when the definitions load
    before = len(requests_to(sandbox, "get_export_url"))
    r1 = sensor_tick(defs, instance, "stellic_export_completion")
    assert len(requests_to(sandbox, "get_export_url")) - before == 2
    polled_first = {r["query"]["file_name"][0] for r in requests_to(sandbox, "get_export_url")[before:]}
    sensor_tick(defs, instance, "stellic_export_completion", r1.cursor)
    polled = {r["query"]["file_name"][0] for r in requests_to(sandbox, "get_export_url")[before:]}
    assert len(polled) == 3 and polled != polled_first  # the third job got its turn


def test_sync_export_that_times_out_is_retried_async(defs, instance, sandbox, lake_env):
    sandbox.app("stellic").set_knobs(sync_row_limit=50, async_ready_after=0.3)
    assert materialize(defs, instance, "audit_data", TODAY).success
    calls = requests_to(sandbox, "/exports/export_data/audit_data")
    assert [c["status"] for c in calls] == [504, 200]
    assert calls[1]["query"]["delivery_channel"] == ["s3"]
    assert materializations(instance, "audit_data")[0].metadata["dagster/row_count"].value == 200


def test_forced_delivery_channels(defs, instance, sandbox, lake_env):
    sandbox.app("stellic").set_knobs(async_ready_after=0.2)
    assert materialize(defs, instance, "audit_data", TODAY, config={"delivery_channel": "s3"}).success
    assert materializations(instance, "audit_data")[0].metadata["vendor_job_id"].value
    assert materialize(defs, instance, "permissions", TODAY, config={"delivery_channel": "http_file"}).success
    assert "vendor_job_id" not in materializations(instance, "permissions")[0].metadata


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("rate_limit", "/exports/export_data/"),
        ("server_error", "/exports/export_data/"),
        ("drop_connection", "/exports/export_data/"),
        ("truncate_body", "/exports/export_data/"),
        ("rate_limit", "get_export_url"),
        ("server_error", "get_export_url"),
        ("drop_connection", "/stellic-files/"),
        ("truncate_body", "/stellic-files/"),
    ],
)
def test_transient_faults_are_survived(defs, instance, sandbox, lake_env, kind, match):
    sandbox.app("stellic").set_knobs(async_ready_after=0.2)
    name = "audit_data" if "export_data" in match else "audit_requirements"
    sandbox.faults.add(kind, vendor=None, match=match, times=2, retry_after=1)
    result = materialize(defs, instance, name, TODAY)
    assert result.success, failure_message(result)
    (mat,) = materializations(instance, name)
    assert mat.metadata["dagster/row_count"].value == 200
    statuses = [r["status"] for r in requests_to(sandbox, match)]
    assert len(statuses) >= 3  # the faults really happened and were retried


def test_expired_download_url_is_reissued(defs, instance, sandbox, lake_env):
    sandbox.app("stellic").set_knobs(async_ready_after=0.2)
    sandbox.faults.add("expire_url", vendor="stellic", times=2)
    result = materialize(defs, instance, "audit_requirements", TODAY)
    assert result.success, failure_message(result)
    assert len(requests_to(sandbox, "/exports/export_data/audit_requirements")) == 1


def test_failed_vendor_job_fails_partition_with_vendor_message(defs, instance, sandbox, lake_env):
    sandbox.app("stellic").set_knobs(async_ready_after=0.2)
    sandbox.faults.add("job_fails", vendor="stellic", times=1)
    result = materialize(defs, instance, "audit_requirements", TODAY)
    assert not result.success
    msg = failure_message(result)
    assert "[stellic] audit_requirements (partition" in msg and "sandbox-injected" in msg and "Next:" in msg
    assert [o["edu/export_state"] for o in export_observations(instance, "audit_requirements")] == [
        "started",
        "failed",
    ]
    assert not (lake_env / "lake" / "stellic" / "audit_requirements").exists()
    # the failed job is not resumed: the next run starts a new export and lands
    assert materialize(defs, instance, "audit_requirements", TODAY).success
    assert len(requests_to(sandbox, "/exports/export_data/audit_requirements")) == 2


def test_never_finishing_job_defers_then_is_given_up_past_deadline(
    defs, instance, sandbox, lake_env, monkeypatch
):
    sandbox.app("stellic").set_knobs(async_ready_after=0.1)
    sandbox.faults.add("job_never_finishes", vendor="stellic", times=1)
    assert materialize(
        defs, instance, "audit_requirements", TODAY, config={"inline_wait_seconds": 0.5}
    ).success
    assert materializations(instance, "audit_requirements") == []
    monkeypatch.setenv("EDU_EXPORT_DEADLINE_SECONDS", "0.01")
    defs = build_definitions()  # settings enter when the definitions load
    tick = sensor_tick(defs, instance, SENSOR)
    (request,) = tick.run_requests
    result = materialize(defs, instance, "audit_requirements", TODAY, tags=request.tags)
    assert not result.success
    assert "past the" in failure_message(result) and "deadline" in failure_message(result)
    assert export_observations(instance, "audit_requirements")[-1]["edu/export_state"] == "abandoned"


ASSET = "student_geneds"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("malformed_csv", "could not be parsed"),
        ("bad_encoding", "not valid utf-8"),
        ("empty_body", "empty"),
        ("html_error", "expected CSV but the vendor sent HTML"),
    ],
)
def test_bad_input_fails_clearly_and_keeps_previous_partition(
    defs, instance, sandbox, lake_env, fault, expected
):
    # student_geneds holds accented names, so the Latin-1 fault really changes its bytes
    assert materialize(defs, instance, ASSET, TODAY).success
    target = next((lake_env / "lake" / "stellic" / ASSET).rglob(DATA_FILE))
    before = target.read_bytes()
    sandbox.faults.add(fault, vendor="stellic", times=1)
    result = materialize(defs, instance, ASSET, TODAY)
    assert not result.success
    msg = failure_message(result)
    assert expected in msg and "[stellic] student_geneds (partition" in msg
    assert "raw download is kept at" in msg
    raw = msg.split("raw download is kept at ", 1)[1].split(". ", 1)[0].rstrip(".")
    assert (lake_env / "work").exists() and __import__("pathlib").Path(raw).exists()
    assert target.read_bytes() == before
    assert len(materializations(instance, ASSET)) == 1


def test_header_only_export_lands_empty_and_check_flags_it(defs, instance, sandbox, lake_env):
    sandbox.faults.add("header_only", vendor="stellic", times=1)
    result = materialize(defs, instance, "engagement_score", TODAY)
    assert result.success
    evals = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert evals["non_empty"] is False
    assert materializations(instance, "engagement_score")[0].metadata["dagster/row_count"].value == 0


def test_unexpected_column_lands_and_drift_check_warns(defs, instance, sandbox, lake_env):
    sandbox.faults.add("extra_column", vendor="stellic", times=1)
    result = materialize(defs, instance, "engagement_score", TODAY)
    assert result.success
    (mat,) = materializations(instance, "engagement_score")
    assert mat.metadata["unexpected_columns"].value == "Unexpected Col"
    drift = next(
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "schema_drift"
    )
    assert drift.passed is False and drift.severity == dg.AssetCheckSeverity.WARN


def test_killed_write_leaves_previous_partition_intact(defs, instance, sandbox, lake_env, monkeypatch):
    from edu_assets.core import lake as lake_mod

    assert materialize(defs, instance, "audit_data", TODAY).success
    target = next((lake_env / "lake" / "stellic" / "audit_data").rglob(DATA_FILE))
    before = target.read_bytes()
    real_copy = lake_mod.Lake._copy_csv

    def dying_copy(self, con, src, tmp, encoding, *, all_varchar):
        real_copy(self, con, src, tmp, encoding, all_varchar=all_varchar)
        with open(tmp, "r+b") as f:
            f.truncate(100)  # half-written file on disk ...
        raise KeyboardInterrupt("killed mid-write")  # ... and the process dies

    monkeypatch.setattr(lake_mod.Lake, "_copy_csv", dying_copy)
    with pytest.raises(KeyboardInterrupt):
        materialize(defs, instance, "audit_data", TODAY, raise_on_error=True)
    assert target.read_bytes() == before
    assert pq.ParquetFile(target).metadata.num_rows == 200
    assert query(lake_env / "edu.duckdb", "SELECT count(*) FROM stellic.audit_data")[0][0] == 200


def test_missing_user_value_fails_with_clear_message(defs, instance, sandbox, lake_env):
    result = materialize(defs, instance, "requirement_units_taken", TODAY)
    msg = failure_message(result)
    assert "needs the parameter 'screen_names'" in msg and "run config" in msg
    assert requests_to(sandbox, "requirement_units_taken") == []
    ok = materialize(
        defs,
        instance,
        "requirement_units_taken",
        TODAY,
        config={"params": {"screen_names": ["Writing Requirement", "Science Requirement"]}},
    )
    assert ok.success
    (call,) = requests_to(sandbox, "requirement_units_taken")
    assert call["query"]["screen_names"] == ["Writing Requirement", "Science Requirement"]


def test_params_from_environment_and_partition_binding(instance, sandbox, lake_env, monkeypatch):
    monkeypatch.setenv(
        "STELLIC_EXPORT_PARAMS", '{"plancourse_enrollment_by_term": {"school_name": "Divinity School"}}'
    )
    defs = build_definitions()  # settings enter when the definitions load (the Stellic resource holds them)
    assert materialize(defs, instance, "plancourse_enrollment_by_term", "2025").success
    (call,) = requests_to(sandbox, "plancourse_enrollment_by_term")
    assert call["query"]["years"] == ["2025"] and call["query"]["school_name"] == ["Divinity School"]
    instance.add_dynamic_partitions("stellic_term", ["2026-spring"])
    assert materialize(defs, instance, "registration_details", "2026-spring").success
    (call,) = requests_to(sandbox, "registration_details")
    assert call["query"]["year"] == ["2026"] and call["query"]["semester"] == ["spring"]
    assert materialize(defs, instance, "all_appointments", "2025-02-01").success
    (call,) = requests_to(sandbox, "all_appointments")
    assert call["query"]["start"] == ["2025-02-01"] and call["query"]["end"] == ["2025-02-28"]


def test_snapshot_of_a_past_date_is_refused(defs, instance, sandbox, lake_env):
    result = materialize(defs, instance, "audit_data", "2026-01-05")
    assert "cannot be captured for the past date 2026-01-05" in failure_message(result)
    assert requests_to(sandbox, "audit_data") == []


def test_bad_token_fails_clearly(defs, instance, sandbox, lake_env, monkeypatch):
    monkeypatch.setenv("STELLIC_TOKEN", "wrong-token-value-123")
    monkeypatch.setenv("STELLIC_BASE_URL", sandbox.base_url("stellic"))
    from edu_assets.definitions import build_definitions

    live = build_definitions()
    result = materialize(live, instance, "audit_data", TODAY)
    msg = failure_message(result)
    assert "credentials were rejected (HTTP 401" in msg and "wrong-token-value-123" not in msg


# -- issue 14: one partner API base, unknown final statuses, plan_courses' required mode ------------


def test_async_status_is_polled_under_the_partner_api_base(defs, instance, sandbox, lake_env):
    sandbox.app("stellic").set_knobs(async_ready_after=0.2)
    result = materialize(defs, instance, "audit_requirements", TODAY)
    assert result.success, failure_message(result)
    polls = requests_to(sandbox, "get_export_url")
    assert polls and {p["path"] for p in polls} == {"/stellic/partnerapi/v1/exports/get_export_url"}
    assert {p["status"] for p in polls} == {200}
    (export,) = requests_to(sandbox, "/exports/export_data/")
    assert export["path"] == "/stellic/exports/export_data/audit_requirements"  # bulk exports: the host root


def test_an_unknown_final_status_with_a_url_counts_as_ready(defs, instance, sandbox, lake_env):
    sandbox.app("stellic").set_knobs(async_ready_after=0.2, final_status="generated")
    result = materialize(defs, instance, "permissions", TODAY, config={"inline_wait_seconds": 30})
    assert result.success, failure_message(result)
    (mat,) = materializations(instance, "permissions")  # landed in this run, not deferred to the deadline
    assert mat.metadata["vendor_status"].value == "generated"  # the status seen is recorded
    assert requests_to(sandbox, "get_export_url")[-1]["status"] == 200


def test_plan_courses_mode_is_required_and_has_no_default(defs, instance, sandbox, lake_env):
    result = materialize(defs, instance, "plan_courses", TODAY)
    msg = failure_message(result)
    assert "plan_courses needs the parameter 'mode'" in msg
    assert "ops → plan_courses → config → params → mode" in msg and "STELLIC_EXPORT_PARAMS" in msg
    assert requests_to(sandbox, "plan_courses") == []  # failed before any request
    ok = materialize(defs, instance, "plan_courses", TODAY, config={"params": {"mode": "unmatched"}})
    assert ok.success, failure_message(ok)
    (call,) = requests_to(sandbox, "plan_courses")
    assert call["query"]["mode"] == ["unmatched"]


@pytest.mark.parametrize("kind, key", [("workflow", "२३"), ("usem_term", "١٢"), ("year_semester", "२०२६-fall")])
def test_partition_keys_take_ascii_digits_only(kind, key):
    from edu_assets.vendors.stellic.partitions import PARTITIONINGS

    where = Where("stellic", f"stellic/{kind}", key)
    with pytest.raises(ConfigError):  # str.isdigit() and \d accept these; Stellic would not
        PARTITIONINGS[kind].to_params(key, where)
    ascii_key = {"workflow": "23", "usem_term": "12", "year_semester": "2026-fall"}[kind]
    assert PARTITIONINGS[kind].to_params(ascii_key, where)


def test_a_note_tag_too_long_for_a_file_name_lands_and_the_view_shows_it_whole(defs, instance, sandbox, lake_env):
    """A 300-character note tag lands under a bounded directory name; the view's ``tag`` is the tag
    itself, though a short tag created the view before it (the catalog's ledger would otherwise skip it)."""
    long_tag = "Needs review " + "x" * 287
    instance.add_dynamic_partitions("stellic_note_tag", [long_tag, "short"])
    assert materialize(defs, instance, "tagged_notes", "short").success  # the views exist before the long tag
    assert materialize(defs, instance, "tagged_notes", long_tag).success
    assert [r["query"]["tag"] for r in requests_to(sandbox, "tagged_notes")] == [["short"], [long_tag]]
    catalog = lake_env / "edu.duckdb"
    tags = [r[0] for r in query(catalog, "SELECT DISTINCT tag FROM stellic.tagged_notes ORDER BY 1")]
    assert tags == sorted([long_tag, "short"])
    dirs = [p.name for p in (lake_env / "lake" / "stellic" / "tagged_notes").iterdir()]
    assert all(len(d.encode()) <= 255 for d in dirs) and "tag=short" in dirs
