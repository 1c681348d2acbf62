"""WebAdMIT end to end: sandbox over HTTP → real Dagster runs and sensors → Parquet → DuckDB."""

from __future__ import annotations

import time

import dagster as dg
import httpx
import pytest

from edu_assets.core.errors import Where
from edu_assets.sandbox.credentials import WEBADMIT_API_KEY
from edu_assets.vendors.webadmit.partitions import TEMPLATES
from edu_assets.vendors.webadmit.resources import webadmit_resource_from_env
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

ASSET = "webadmit/export_files"
DISCOVERY, COMPLETION = "webadmit_template_discovery", "webadmit_export_completion"
LANDABLE = ["1001-5001", "1001-5002", "1001-5003", "1002-5101"]


@pytest.fixture
def webadmit(sandbox, instance):
    app = sandbox.app("webadmit")
    app.set_knobs(ready_after=0.3, rows=40)
    instance.add_dynamic_partitions(TEMPLATES.name, [*LANDABLE, "1001-5004"])
    return app


def checks(result: dg.ExecuteInProcessResult) -> dict[str, tuple[bool, str]]:
    return {e.asset_check_evaluation_data.check_name: (e.asset_check_evaluation_data.passed,
                                                        e.asset_check_evaluation_data.severity.value)
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def status_polls(sandbox) -> list[dict]:
    return [r for r in requests_to(sandbox, "/export_files/") if r["method"] == "GET"]


def test_discovery_sensor_keeps_template_partitions_in_step(defs, instance, sandbox):
    app = sandbox.app("webadmit")
    tick = sensor_tick(defs, instance, DISCOVERY)
    (add,) = tick.dynamic_partitions_requests
    assert sorted(add.partition_keys) == LANDABLE  # Excel and fixed-width templates are not partitions
    assert [r.asset_selection for r in tick.run_requests] == [[dg.AssetKey(["webadmit", "export_templates"])]]
    instance.add_dynamic_partitions(TEMPLATES.name, list(add.partition_keys))
    quiet = sensor_tick(defs, instance, DISCOVERY, tick.cursor)
    assert quiet.dynamic_partitions_requests == [] and quiet.run_requests == []

    app.add_identity(id=1003, type="Admissions User", organization="Demo School of Nursing", cycle="2026 - 2027")
    app.add_export(identity_id=1003, id=5201, name="Nursing Applicants", format="Comma-Separated Values")
    app.remove_export(identity_id=1001, id=5002)
    changed = sensor_tick(defs, instance, DISCOVERY, tick.cursor)
    kinds = {type(r).__name__: sorted(r.partition_keys) for r in changed.dynamic_partitions_requests}
    assert kinds == {"AddDynamicPartitionsRequest": ["1003-5201"], "DeleteDynamicPartitionsRequest": ["1001-5002"]}
    assert len(changed.run_requests) == 1  # the register is refreshed


def test_template_register_lists_every_template_and_why_some_are_not_landed(defs, instance, sandbox, lake_env):
    assert materialize(defs, instance, "webadmit/export_templates", None).success
    rows = query(lake_env / "edu.duckdb", "SELECT export_id, landed, not_landed_because, partition_key, duckdb_view "
                 "FROM webadmit.export_templates ORDER BY export_id")
    assert [r[0] for r in rows] == [5001, 5002, 5003, 5004, 5101, 5102]
    excel = rows[3]
    assert excel[1] is False and "Microsoft Excel" in excel[2] and excel[4] == "webadmit.export_5004"


def test_latin1_csv_lands_as_utf8_dated_snapshot(defs, instance, sandbox, webadmit, lake_env):
    result = materialize(defs, instance, ASSET, "1001-5001")
    assert result.success
    catalog = lake_env / "edu.duckdb"
    (rows, names) = query(catalog, "SELECT count(*), string_agg(first_name, ' ') FROM webadmit.export_5001")[0]
    assert rows == 40 and any(ch in names for ch in "éëñüçÉ")  # decoded from ISO-8859-1, not mangled
    cols = [r[0] for r in query(catalog, "DESCRIBE webadmit.export_5001")]
    assert cols[:3] == ["cas_id", "first_name", "last_name"] and "snapshot_date" in cols
    assert query(catalog, "SELECT count(*) FROM webadmit.export_5001_latest")[0][0] == 40
    (mat,) = materializations(instance, ASSET, "1001-5001")
    assert mat.metadata["template"].value == "Applicants - Demographics"
    assert mat.metadata["vendor_job_id"].value.startswith("webadmit-export-file-")
    assert checks(result) == {"vendor_reported_no_errors": (True, "WARN")}
    # a re-run the same day replaces the snapshot
    assert materialize(defs, instance, ASSET, "1001-5001").success
    assert query(catalog, "SELECT count(*) FROM webadmit.export_5001")[0][0] == 40


def test_multi_file_zip_lands_one_table_per_file(defs, instance, sandbox, webadmit, lake_env):
    assert materialize(defs, instance, ASSET, "1001-5003").success
    catalog = lake_env / "edu.duckdb"
    for table in ("applicants", "programs", "test_scores"):
        assert query(catalog, f"SELECT count(*) FROM webadmit.export_5003__{table}")[0][0] > 0
    (mat,) = materializations(instance, ASSET, "1001-5003")
    assert "webadmit.export_5003__test_scores" in mat.metadata["tables"].value


def test_excel_template_is_refused_before_any_job_starts(defs, instance, sandbox, webadmit, lake_env):
    result = materialize(defs, instance, ASSET, "1001-5004")
    assert not result.success
    message = failure_message(result)
    assert "'Microsoft Excel' format, which edu-assets does not land" in message and "Comma-Separated Values" in message
    assert webadmit.runs_started() == 0


def test_success_with_errors_lands_and_warns(defs, instance, sandbox, webadmit, lake_env):
    sandbox.faults.add("success_with_errors", vendor="webadmit", message="2 applicants lacked a GPA")
    result = materialize(defs, instance, ASSET, "1001-5002")
    assert result.success
    (mat,) = materializations(instance, ASSET, "1001-5002")
    assert "2 applicants lacked a GPA" in mat.metadata["vendor_warnings"].value
    assert checks(result) == {"vendor_reported_no_errors": (False, "WARN")}
    assert query(lake_env / "edu.duckdb", "SELECT count(*) FROM webadmit.export_5002")[0][0] == 40


def test_empty_list_lands_an_empty_snapshot_with_the_known_schema(defs, instance, sandbox, webadmit, lake_env):
    assert materialize(defs, instance, ASSET, "1001-5002").success
    catalog = lake_env / "edu.duckdb"
    before = query(catalog, "DESCRIBE webadmit.export_5002")
    snapshot = next((lake_env / "lake" / "webadmit" / "export_5002").rglob("data.parquet"))
    sandbox.faults.add("empty_list", vendor="webadmit")
    assert materialize(defs, instance, ASSET, "1001-5002").success
    assert query(catalog, "SELECT count(*) FROM webadmit.export_5002")[0][0] == 0
    assert query(catalog, "DESCRIBE webadmit.export_5002") == before  # same columns and types
    assert snapshot.exists()


def test_failed_export_fails_clearly(defs, instance, sandbox, webadmit, lake_env):
    sandbox.faults.add("job_fails", vendor="webadmit", message="Export query timed out")
    result = materialize(defs, instance, ASSET, "1002-5101")
    assert not result.success
    message = failure_message(result)
    assert "Export query timed out" in message and "University Applicants" in message and "1002-5101" in message


def test_snake_case_statuses_are_understood(defs, instance, sandbox, webadmit, lake_env):
    webadmit.set_knobs(status_style="snake")
    assert materialize(defs, instance, ASSET, "1001-5001").success


def test_expired_url_is_reissued_and_downloaded_at_once(defs, instance, sandbox, webadmit, lake_env):
    sandbox.faults.add("expire_url", vendor="webadmit")
    assert materialize(defs, instance, ASSET, "1001-5001").success
    downloads = requests_to(sandbox, "/webadmit-files/")
    assert [d["status"] for d in downloads] == [200]  # the expired URL was never tried; a fresh one was
    assert webadmit.runs_started() == 1


def test_in_flight_run_is_resumed_never_started_twice(defs, instance, sandbox, webadmit, lake_env):
    webadmit.hold_jobs()  # the file run stays In Progress until released, however slow the machine
    # someone starts the export in the WebAdMIT UI / another tool first
    started = httpx.post(f"{sandbox.base_url('webadmit')}/api/v1/user_identities/1001/exports/5001/export_files",
                         headers={"x-api-key": WEBADMIT_API_KEY}).json()["export_files"]["id"]
    result = materialize(defs, instance, ASSET, "1001-5001", config={"inline_wait_seconds": 0.1})
    assert result.success and materializations(instance, ASSET) == []
    (obs, deferred) = export_observations(instance, ASSET)
    assert obs["vendor_job_id"] == f"webadmit-export-file-{started}" and deferred["edu/export_state"] == "deferred"
    # a manual re-run while it is still going resumes the recorded file instead of asking again
    posts_before = len([r for r in requests_to(sandbox, "/export_files") if r["method"] == "POST"])
    assert materialize(defs, instance, ASSET, "1001-5001", config={"inline_wait_seconds": 0.1}).success
    assert len([r for r in requests_to(sandbox, "/export_files") if r["method"] == "POST"]) == posts_before
    assert materializations(instance, ASSET) == []
    held = sensor_tick(defs, instance, COMPLETION)
    assert held.run_requests == []  # still running at the vendor: nothing to launch yet
    webadmit.release_jobs()
    wait_until_jobs_done(webadmit)
    (req,) = sensor_tick(defs, instance, COMPLETION, held.cursor).run_requests
    assert req.run_key == f"webadmit-export-file-{started}" and req.partition_key == "1001-5001"
    assert materialize(defs, instance, ASSET, req.partition_key, tags=req.tags).success
    assert webadmit.runs_started() == 1
    assert len(materializations(instance, ASSET, "1001-5001")) == 1


def test_rate_budget_slows_down_before_a_429(sandbox, monkeypatch):
    app = sandbox.app("webadmit")
    # A small budget: its first 8 requests must fit in the 4 s window for the pacing to show (>1 s slept),
    # which holds unless a loopback request takes ~0.4 s.
    app.set_knobs(rate_limit=10, rate_window=4.0)
    monkeypatch.setenv("WEBADMIT_RATE_WINDOW_SECONDS", "4")
    monkeypatch.setenv("WEBADMIT_RATE_PER_SECOND", "200")  # fast enough to spend the budget inside one window
    client = webadmit_resource_from_env().client()
    started = time.monotonic()
    try:
        for _ in range(15):  # 1.5x the budget
            client.identities(Where("webadmit", "test"))
    finally:
        client.http.close()
    elapsed = time.monotonic() - started
    statuses = [r["status"] for r in requests_to(sandbox, "/webadmit/api/v1/user_identities")]
    assert len(statuses) == 15 and 429 not in statuses
    assert client.http.budget is not None and client.http.budget.slept_seconds > 1.0
    assert elapsed > 3.0  # it had to wait for the window to reset, instead of being refused


def test_without_pacing_the_same_burst_is_refused(sandbox):
    """The control for the test above: the emulator really does refuse past the budget."""
    app = sandbox.app("webadmit")
    app.set_knobs(rate_limit=10, rate_window=3600.0)  # one window for the whole burst, however slow the machine
    with httpx.Client() as http:
        codes = [http.get(f"{sandbox.base_url('webadmit')}/api/v1/user_identities",
                          headers={"x-api-key": WEBADMIT_API_KEY}).status_code for _ in range(15)]
    assert codes.count(429) == 5


def test_live_api_key_is_used_and_never_shown(instance, sandbox, lake_env, monkeypatch):
    key = "wa-LIVE-key-0123456789abcdef"
    app = sandbox.app("webadmit")
    app.set_knobs(ready_after=0.2)
    app.api_keys.add(key)
    monkeypatch.setenv("WEBADMIT_API_KEY", key)
    monkeypatch.setenv("WEBADMIT_BASE_URL", sandbox.base_url("webadmit"))
    from edu_assets.definitions import build_definitions

    defs = build_definitions()
    instance.add_dynamic_partitions(TEMPLATES.name, ["1001-5001"])
    assert materialize(defs, instance, ASSET, "1001-5001").success
    assert app.rate_state(key)["remaining"] < app.rate_state(key)["limit"]  # the live key was the one sent
    app.api_keys.discard(key)
    failed = materialize(defs, instance, ASSET, "1001-5001")  # key revoked: a clear 401
    assert not failed.success and "credentials were rejected" in failure_message(failed)
    text = "\n".join(str(e.message) + str(e.dagster_event) for run in instance.get_runs()
                     for e in instance.all_logs(run.run_id))
    assert key not in text


# -- issue 14: each documented status lands as the vendor meant; nothing lands empty unless it said so ------


def test_success_with_errors_without_a_file_fails_and_keeps_the_last_snapshot(defs, instance, sandbox, webadmit, lake_env):
    assert materialize(defs, instance, ASSET, "1001-5002").success
    sandbox.faults.add("success_with_errors", vendor="webadmit", message="GPA failed", download_url=False)
    result = materialize(defs, instance, ASSET, "1001-5002")
    assert not result.success
    message = failure_message(result)
    assert "Success With Errors" in message and "GPA failed" in message and "1001-5002" in message
    assert query(lake_env / "edu.duckdb", "SELECT count(*) FROM webadmit.export_5002")[0][0] == 40


def test_empty_list_with_a_file_lands_its_header(defs, instance, sandbox, webadmit, lake_env):
    sandbox.faults.add("empty_list", vendor="webadmit", download_url=True)
    assert materialize(defs, instance, ASSET, "1001-5001").success
    catalog = lake_env / "edu.duckdb"
    assert query(catalog, "SELECT count(*) FROM webadmit.export_5001")[0][0] == 0
    assert "first_name" in [r[0] for r in query(catalog, "DESCRIBE webadmit.export_5001")]
    (mat,) = materializations(instance, ASSET, "1001-5001")
    assert mat.metadata["vendor_status"].value == "Empty List"


def test_status_outside_the_seven_fails_at_once_naming_it(defs, instance, sandbox, webadmit, lake_env):
    sandbox.faults.add("odd_status", vendor="webadmit", status="Archived")
    result = materialize(defs, instance, ASSET, "1001-5001")
    assert not result.success
    assert "'Archived'" in failure_message(result) and "'Empty List'" in failure_message(result)
    assert [o["edu/export_state"] for o in export_observations(instance, ASSET)] == ["started", "failed"]


def test_pre_2018_array_answers_land(defs, instance, sandbox, webadmit, lake_env):
    webadmit.set_knobs(export_files_shape="array")
    assert materialize(defs, instance, ASSET, "1001-5001").success
    assert query(lake_env / "edu.duckdb", "SELECT count(*) FROM webadmit.export_5001")[0][0] == 40
