"""Stellic partner API reads end to end: sandbox over HTTP -> real Dagster runs -> Parquet -> DuckDB.

The bulk read lands the student list; the per-student reads fan out over it in one run, with bounded
concurrency, and never land silence: unknown students are reported, a run where nobody answers or where an
answer has none of the documented result sets fails and keeps the previous file.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from edu_assets.core.lake import DATA_FILE
from edu_assets_tests.helpers import failure_message, materializations, materialize, query, requests_to

TODAY = dt.datetime.now(dt.UTC).date().isoformat()
STUDENTS = 12
BULK = "stellic/partner_students_by_property"
AUDIT = "stellic/partner_audit_output"
PLANNER = "stellic/partner_planner_data"


def key(**dims: str) -> str:
    return str(dg.MultiPartitionKey({**dims, "snapshot_date": TODAY}))


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


@pytest.fixture
def stellic(sandbox):
    app = sandbox.app("stellic")
    app.set_knobs(rows=STUDENTS)  # the tenant's students (put back after the test)
    return app


@pytest.fixture
def student_list(defs, instance, sandbox, lake_env, stellic) -> list[str]:
    """The bulk read landed for today: the student list the per-student reads fan out over."""
    result = materialize(defs, instance, BULK, key(property="engagement_score"))
    assert result.success, failure_message(result)
    return [
        r[0]
        for r in query(lake_env / "edu.duckdb", "SELECT username FROM stellic.partner_students_by_property")
    ]


def test_bulk_read_lands_the_documents_csv(defs, instance, sandbox, lake_env, stellic):
    result = materialize(defs, instance, BULK, key(property="engagement_score"))
    assert result.success, failure_message(result)
    (call,) = requests_to(sandbox, "/student/bulk/")
    assert call["path"] == "/stellic/partnerapi/v1/student/bulk/engagement_score"  # under the partner base
    # both documented as required (L1213-1224)
    assert call["query"] == {"output_format": ["csv"], "delivery_channel": ["http_file"]}
    catalog = lake_env / "edu.duckdb"
    # the document's CSV has a space after each comma ("sstanton, 11, 5"): it lands as clean typed columns
    cols = {r[0]: r[1] for r in query(catalog, "DESCRIBE stellic.partner_students_by_property")}
    assert cols["username"] == "VARCHAR" and cols["id"] == "BIGINT" and cols["engagement_score"] == "BIGINT"
    assert query(
        catalog,
        "SELECT count(*), min(id) FROM stellic.partner_students_by_property "
        "WHERE property = 'engagement_score'",
    )[0] == (STUDENTS, 11)
    assert checks_of(result) == {"non_empty": True, "unique_key": True, "schema_drift": True}


def test_per_student_read_fans_out_over_the_landed_list_in_one_run(
    defs, instance, sandbox, lake_env, stellic, student_list
):
    stellic.set_knobs(partner_latency=0.02)
    partition = key(view="unmatched.planned")
    result = materialize(defs, instance, AUDIT, partition, config={"concurrency": 3})
    assert result.success, failure_message(result)
    calls = requests_to(sandbox, "/audit/planned/unmatched")
    assert sorted(c["path"].split("/")[5] for c in calls) == sorted(student_list)  # one request per student
    assert all(c["path"].startswith("/stellic/partnerapi/v1/student/") for c in calls)
    assert 1 <= stellic.partner_peak_in_flight <= 3  # bounded concurrency
    (mat,) = materializations(instance, AUDIT, partition)
    md = {k: v.value for k, v in mat.metadata.items()}
    assert md["students_requested"] == md["students_answered"] == STUDENTS and md["students_not_found"] == 0
    assert md["student_list"].startswith(f"{BULK} engagement_score|{TODAY}")
    catalog = lake_env / "edu.duckdb"
    sets = {r[0] for r in query(catalog, "SELECT DISTINCT result_set FROM stellic.partner_audit_output")}
    assert sets <= {"unmatched_courses", "counts_for"} and sets
    row = query(
        catalog,
        "SELECT property, course_filter, view, snapshot_date FROM stellic.partner_audit_output "
        "WHERE result_set = 'unmatched_courses' LIMIT 1",
    )[0]
    assert row[:3] == ("unmatched", "planned", "unmatched.planned") and str(row[3]) == TODAY
    assert checks_of(result) == {"unique_key": True, "every_student_answered": True}


def test_one_row_per_student_for_a_student_property(defs, instance, sandbox, lake_env, stellic, student_list):
    result = materialize(defs, instance, "stellic/partner_student_property", key(property="engagement_score"))
    assert result.success, failure_message(result)
    rows = query(
        lake_env / "edu.duckdb",
        "SELECT student_username, result_set, username, score "
        "FROM stellic.partner_student_property ORDER BY id",
    )
    assert [r[0] for r in rows] == student_list and {r[1] for r in rows} == {"engagement_score"}
    assert all(r[0] == r[2] for r in rows)
    scores = dict(
        query(
            lake_env / "edu.duckdb",
            "SELECT username, engagement_score FROM stellic.partner_students_by_property",
        )
    )
    assert all(scores[r[0]] == r[3] for r in rows)  # the same student, read two ways


def test_a_read_without_a_student_list_fails_before_any_request(defs, instance, sandbox, lake_env, stellic):
    result = materialize(defs, instance, AUDIT, key(view="unmatched.registered"))
    msg = failure_message(result)
    assert "no student list is landed" in msg and f"materialize {BULK}" in msg and "usernames" in msg
    assert requests_to(sandbox, "/student/") == []
    bad = materialize(
        defs, instance, AUDIT, key(view="unmatched.registered"), config={"usernames": ["x"], "concurrency": 0}
    )
    assert "concurrency must be 1-16" in failure_message(bad) and requests_to(sandbox, "/student/") == []


def test_unknown_students_are_reported_and_silence_fails(
    defs, instance, sandbox, lake_env, stellic, student_list
):
    partition = key(view="future.planned")
    some = [*student_list[:2], "ghost-student"]
    result = materialize(defs, instance, PLANNER, partition, config={"usernames": some})
    assert result.success, failure_message(result)
    (mat,) = materializations(instance, PLANNER, partition)
    assert mat.metadata["students_not_found"].value == 1
    assert mat.metadata["students_missing_sample"].value == "ghost-student"
    assert checks_of(result)["every_student_answered"] is False  # a WARN, the others landed
    landed = next((lake_env / "lake" / "stellic" / "partner_planner_data").rglob(DATA_FILE))
    before = landed.read_bytes()

    nobody = materialize(defs, instance, PLANNER, partition, config={"usernames": ["ghost-1", "ghost-2"]})
    msg = failure_message(nobody)
    assert "none of the 2 students answered: 2 not found (HTTP 404)" in msg
    assert "/partnerapi/v1/student/{student_username}/planner/planned/future is assumed" in msg
    assert landed.read_bytes() == before and len(materializations(instance, PLANNER, partition)) == 1


def test_an_answer_without_the_documented_result_sets_fails_naming_the_keys(
    defs, instance, sandbox, lake_env, stellic, student_list
):
    partition = key(view="future.registered")
    assert materialize(defs, instance, PLANNER, partition, config={"usernames": student_list[:3]}).success
    landed = next((lake_env / "lake" / "stellic" / "partner_planner_data").rglob(DATA_FILE))
    before = landed.read_bytes()
    sandbox.faults.add("renamed_result_sets", vendor="stellic", times=1)
    result = materialize(defs, instance, PLANNER, partition, config={"usernames": student_list[:3]})
    msg = failure_message(result)
    assert "none of the documented result sets ['future_courses']" in msg and "future_courses_v2" in msg
    assert landed.read_bytes() == before


def test_a_property_without_a_sample_lands_what_stellic_sends(
    defs, instance, sandbox, lake_env, stellic, student_list
):
    partition = key(view="progress.registered.all")
    result = materialize(
        defs, instance, "stellic/partner_custom_audit_output", partition, config={"max_students": 4}
    )
    assert result.success, failure_message(result)
    (mat,) = materializations(instance, "stellic/partner_custom_audit_output", partition)
    assert "no sample" in mat.metadata["result_sets_note"].value
    assert mat.metadata["students_requested"].value == 4
    sets = query(
        lake_env / "edu.duckdb",
        "SELECT DISTINCT result_set, program_filter FROM stellic.partner_custom_audit_output",
    )
    assert sets == [("progress", "all")]


def test_rate_limited_reads_are_retried_within_the_run(
    defs, instance, sandbox, lake_env, stellic, student_list
):
    sandbox.faults.add("rate_limit", vendor="stellic", match="/student/", times=3, retry_after=0)
    partition = key(view="future.all")
    result = materialize(defs, instance, PLANNER, partition, config={"concurrency": 4})
    assert result.success, failure_message(result)
    statuses = [c["status"] for c in requests_to(sandbox, "/planner/all/future")]
    assert statuses.count(429) == 3 and statuses.count(200) == STUDENTS
    assert materializations(instance, PLANNER, partition)[0].metadata["students_answered"].value == STUDENTS


def test_fan_out_bounds_its_backlog_and_an_error_stops_the_rest():
    import threading

    from edu_assets.vendors.stellic.partner import fan_out

    started: list[int] = []
    lock = threading.Lock()

    def fetch(n: int) -> int:
        with lock:
            started.append(n)
        if n == 3:
            raise RuntimeError("boom")
        return n * 10

    got = []
    with pytest.raises(RuntimeError, match="boom"):
        for item, value in fan_out(range(1000), fetch, concurrency=2):
            if isinstance(value, BaseException):
                raise value
            got.append((item, value))
    assert all(v == i * 10 for i, v in got)
    assert len(started) < 50  # the backlog is bounded (2 x concurrency queued): the rest never ran
