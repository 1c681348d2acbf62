"""Xporter's mandatory filters end to end (issue 14, item 1): real Dagster runs and sensors against the emulator.

The document marks filters mandatory on 14 endpoints. Each becomes a partition dimension (school year, key
stage, or values a sensor finds in the vendor's own lookup endpoints), a fan-out over the school's landed
people, or a typed run-config field; a run without its filter fails before any request, naming the filter
and where to set it; the emulator refuses such a request as the vendor would (test_sandbox_xporter.py).
"""

from __future__ import annotations

import threading

import dagster as dg
import pytest

from edu_assets.core.naming import snake_case
from edu_assets.vendors.xporter.catalog import Endpoint, load_catalog
from edu_assets.vendors.xporter.filters import FILTER_VALUES
from edu_assets.vendors.xporter.partitions import ESTAB_PARTITIONS, partitioning_for
from edu_assets_tests.helpers import failure_message, materializations, materialize, query, sensor_tick

A = "3281101"
MONTH = "2025-01-01"


def endpoint(name: str) -> Endpoint:
    return next(e for e in load_catalog()[0] if e.name == name)


def asset(name: str) -> str:
    """The endpoint's first table's asset key, as a string."""
    ep = endpoint(name)
    return f"xporter/{ep.asset_name(ep.tables[0])}"


def data_calls(sandbox, path: str) -> list[dict]:
    """Data requests to the endpoint ``path`` (exactly; readiness probes left out)."""
    return [r for r in sandbox.requests if r["path"].rstrip("/").lower().endswith(f"/{path.lower()}")
            and "onlyGetDBStatus" not in r.get("query", {})]


def any_calls(sandbox, path: str) -> list[dict]:
    """Every request to the endpoint ``path``, readiness probes included."""
    return [r for r in sandbox.requests if r["path"].rstrip("/").lower().endswith(f"/{path.lower()}")]


def lake_column(lake_env, table: str, column: str) -> list:
    return [r[0] for r in query(lake_env / "edu.duckdb", f"SELECT {column} FROM xporter.{table}")]


def apply_partition_requests(instance: dg.DagsterInstance, tick) -> dict[str, list[str]]:
    """Do what the daemon does with a tick's dynamic-partition requests; returns name -> keys added."""
    added: dict[str, list[str]] = {}
    for request in tick.dynamic_partitions_requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            added.setdefault(request.partitions_def_name, []).extend(request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return added


def land_filter_sources(defs, instance, estab: str) -> dict[str, list[str]]:
    """Land what mandatory filters take their values from (the people lists and the lookup endpoints) and
    run one tick of the filter-discovery sensor, as the daemon would: its new partitions are added."""
    for source in ("students", "staff", "user_defined_fields", "linked_document_types", "assessment_structure"):
        result = materialize(defs, instance, asset(source), estab)
        assert result.success, failure_message(result)
    tick = sensor_tick(defs, instance, "xporter_filter_discovery")
    return apply_partition_requests(instance, tick)


def partition_for(instance: dg.DagsterInstance, ep: Endpoint, estab: str, month: str = MONTH) -> str:
    """A partition key of ``ep`` for the school: its first lookup value, school year or key stage as needed."""
    partitioning = partitioning_for(ep)
    if partitioning.per_school_values:
        value = next(k for k in instance.get_dynamic_partitions(partitioning.dynamic_name)
                     if k.startswith(f"{estab}:"))
        if partitioning.monthly:
            return str(dg.MultiPartitionKey({str(partitioning.dimension): value, "month": month}))
        return value
    if partitioning.dimension:
        definition = partitioning.definition
        assert isinstance(definition, dg.MultiPartitionsDefinition)
        second = next(d.partitions_def for d in definition.partitions_defs if d.name == partitioning.dimension)
        return str(dg.MultiPartitionKey({"estab": estab, str(partitioning.dimension): second.get_partition_keys()[-1]}))
    return f"{estab}|{month}" if ep.partitioned_by_month else estab


def run_config_for(ep: Endpoint, student_ids: list[str]) -> dict | None:
    """The run config a filter chosen by a person needs (Assessment Results: some students)."""
    return {"students": student_ids[:3]} if ep.needs_run_config else None


@pytest.fixture
def xp(sandbox):
    app = sandbox.app("xporter")
    app.set_knobs(rows=6, rows_per_month=6)
    return app


@pytest.fixture
def schools(instance):
    instance.add_dynamic_partitions(ESTAB_PARTITIONS, [A])


def test_run_config_filter_missing_fails_before_any_request_then_is_sent(defs, instance, xp, schools, lake_env):
    tokens_before = sum("GetToken" in r["path"] for r in xp.server.requests)
    missing = materialize(defs, instance, asset("assessment_results"), f"{A}|{MONTH}")
    assert not missing.success
    message = failure_message(missing)
    assert "mandatory filters Students, Groups, Aspects" in message and "document line 1137" in message
    assert "nothing was requested" in message
    assert "ops: {xporter__assessment_results: {config: {students: ['<id>', ...]}}}" in message  # where to set it
    assert any_calls(xp.server, "assessmentresults") == []  # no probe, no data request...
    assert sum("GetToken" in r["path"] for r in xp.server.requests) == tokens_before  # ...not even a token
    # the field is typed and documented in the Launchpad
    fields = endpoint_config_fields("assessment_results")
    assert {"students", "groups", "aspects", "resultsets", "templates", "columns", "marksheets"} <= set(fields)

    assert materialize(defs, instance, asset("students"), A).success
    ids = sorted(lake_column(lake_env, "students", "id"))[:3]
    given = materialize(defs, instance, asset("assessment_results"), f"{A}|{MONTH}", config={"students": ids})
    assert given.success, failure_message(given)
    (call,) = data_calls(xp.server, "assessmentresults")
    assert call["query"]["Students"] == [",".join(ids)]
    assert set(lake_column(lake_env, "assessment_results", "student_id")) <= set(ids)
    # scheduled jobs leave it out: only a person can choose its filter
    job = defs.resolve_job_def("xporter_current_month")
    assert dg.AssetKey(["xporter", "assessment_results"]) not in job.asset_layer.executable_asset_keys


def endpoint_config_fields(name: str) -> dict:
    from edu_assets.vendors.xporter.assets import endpoint_config

    return endpoint_config(endpoint(name)).model_fields


def test_people_filters_fan_out_over_the_landed_people_list(defs, instance, xp, schools, lake_env):
    # without the landed list: fails before any request, naming the filter and what to land first
    early = materialize(defs, instance, asset("timetable_for_student"), f"{A}|{MONTH}")
    assert not early.success
    message = failure_message(early)
    assert "mandatory filter Id (document line 13340)" in message
    assert "materialize xporter/students for partition 3281101 first" in message
    assert any_calls(xp.server, "TimetableForStudent") == []

    assert materialize(defs, instance, asset("students"), A).success
    students = lake_column(lake_env, "students", "id")
    assert len(students) == 6
    # one person a call (Id): one call per student, in one run, each lesson tagged with its student
    result = materialize(defs, instance, asset("timetable_for_student"), f"{A}|{MONTH}",
                         config={"people_concurrency": 2})
    assert result.success, failure_message(result)
    firsts = [r for r in data_calls(xp.server, "TimetableForStudent") if r["query"].get("page") == ["1"]]
    assert sorted(r["query"]["Id"][0] for r in firsts) == sorted(students)
    assert all(len(r["query"]["Id"]) == 1 and "," not in r["query"]["Id"][0] for r in firsts)
    tagged = lake_column(lake_env, "timetable_for_student", "for_student_id")
    assert tagged and set(tagged) <= set(students)
    checks = [e.asset_check_evaluation_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert checks and all(c.passed for c in checks if c.check_name == "unique_key")

    # a CSV filter (Students): ids in batches of people_per_request, every student exactly once
    result = materialize(defs, instance, asset("exam_results"), f"{A}|{MONTH}", config={"people_per_request": 4})
    assert result.success, failure_message(result)
    firsts = [r for r in data_calls(xp.server, "ExamResults") if r["query"].get("page") == ["1"]]
    sent = [r["query"]["Students"][0].split(",") for r in firsts]
    assert sorted(len(s) for s in sent) == [2, 4] and sorted(i for s in sent for i in s) == sorted(students)


def test_lookup_values_become_partitions_found_by_the_discovery_sensor(defs, instance, xp, schools, lake_env):
    assert materialize(defs, instance, asset("user_defined_fields"), A).success
    (mat,) = materializations(instance, asset("user_defined_fields"), A)
    student_udfs = mat.metadata[FILTER_VALUES + "student_udf"].value
    assert "Locker Number" in student_udfs  # the document's example (L7190)
    tick = sensor_tick(defs, instance, "xporter_filter_discovery")
    added = apply_partition_requests(instance, tick)
    assert added["xporter_student_udf"] == [f"{A}:{v}" for v in student_udfs]
    assert set(added) == {"xporter_student_udf", "xporter_contact_udf", "xporter_staff_udf"}
    jobs = {r.job_name for r in tick.run_requests}
    assert jobs == {"xporter_student_udf", "xporter_contact_udf", "xporter_staff_udf"}  # loaded at once
    # one partition = one UDF name, sent as UDFName
    partition = f"{A}:Bus Route"
    result = materialize(defs, instance, asset("student_user_defined_fields"), partition)
    assert result.success, failure_message(result)
    (call,) = data_calls(xp.server, "studentuserdefinedfields")
    assert call["query"]["UDFName"] == ["Bus Route"]
    assert set(lake_column(lake_env, "student_user_defined_fields", "udf_name")) == {"Bus Route"}
    # a tick with nothing newly landed changes nothing
    again = sensor_tick(defs, instance, "xporter_filter_discovery", tick.cursor)
    assert again.run_requests == [] and again.dynamic_partitions_requests == []


def test_school_year_and_key_stage_are_partition_dimensions(defs, instance, xp, schools, lake_env):
    result = materialize(defs, instance, asset("historical_attendance_summary"), f"{A}|2024")
    assert result.success, failure_message(result)
    (call,) = data_calls(xp.server, "HistoricalAttendanceSummary")
    assert call["query"]["SchoolYear"] == ["2024"]  # "the start year of the academic year" (L2678)
    result = materialize(defs, instance, asset("discount_codes"), f"{A}|KS5")
    assert result.success, failure_message(result)
    (call,) = data_calls(xp.server, "discountcodes")
    assert call["query"]["KeyStage"] == ["KS5"]
    assert materializations(instance, asset("discount_codes"), f"{A}|KS5")


def test_document_types_cross_the_month_and_fan_out_over_people(defs, instance, xp, schools, lake_env):
    land_filter_sources(defs, instance, A)
    partition = str(dg.MultiPartitionKey({"document_type": f"{A}:Medical Report", "month": MONTH}))
    result = materialize(defs, instance, asset("linked_documents"), partition)
    assert result.success, failure_message(result)
    students = sorted(lake_column(lake_env, "students", "id"))
    (call,) = [r for r in data_calls(xp.server, "LinkedDocuments") if r["query"].get("page") == ["1"]]
    assert call["query"]["DocumentTypeName"] == ["Medical Report"]
    assert sorted(call["query"]["StudentIds"][0].split(",")) == students
    assert call["query"]["DateFrom"] == [MONTH] and call["query"]["DateTo"] == ["2025-01-31"]
    assert "DocumentTypeId" not in call["query"]  # the parameter list's misprint is not sent


def test_groups_is_a_snapshot_with_its_documented_options(defs, instance, xp, schools, lake_env):
    groups = endpoint("groups")
    assert not groups.partitioned_by_month  # "active group definitions" (L5116): no month windows
    assert {"includeMembersXIDs", "includeStandardYeargroups"} <= set(groups.options)  # L5259, L5274
    result = materialize(defs, instance, asset("groups"), A,
                         config={"options": ["includeMembersXIDs", "includeStandardYeargroups"]})
    assert result.success, failure_message(result)
    (call,) = data_calls(xp.server, "Groups")
    assert call["query"]["includeMembersXIDs"] == ["true"] and call["query"]["includeStandardYeargroups"] == ["true"]
    assert not {"DateFrom", "DateTo"} & set(call["query"])
    columns = {r[0] for r in query(lake_env / "edu.duckdb",
                                   "SELECT column_name FROM duckdb_columns() WHERE table_name = 'groups__groups'")}
    assert {snake_case("StudentXIDs"), snake_case("StaffXIDs")} <= columns  # the option's columns landed
    assert lake_column(lake_env, "groups__standard_year_group_lookup", "id")  # the option's result set too


def test_fan_out_keeps_at_most_people_concurrency_calls_in_flight():
    """The fan-out's bound: each call is held at the vendor until ``bound`` calls are in flight at once (or
    every remaining call is), so a client that never overlaps its calls fails the peak check, and then a
    moment longer, so one that overlaps more than the bound shows a higher peak. A correct client passes
    however slow the machine: its peak is exactly the bound."""
    from edu_assets.core.errors import Where
    from edu_assets.vendors.xporter.filters import fan_out
    from edu_assets_tests.test_contracts_xporter import DocVendor, client_for

    bound, people = 2, [f"S{i}" for i in range(1, 8)]
    ep = endpoint("timetable_for_student")
    state = {"in_flight": 0, "peak": 0, "served": 0}
    cond = threading.Condition()

    def respond(path: str, query: dict[str, str]) -> dict:
        with cond:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
            cond.notify_all()
            everyone_left = lambda: state["served"] + state["in_flight"] >= len(people)  # noqa: E731
            # until `bound` calls overlap (deterministic for a bounded client: it always sends that many)...
            cond.wait_for(lambda: state["in_flight"] >= bound or everyone_left(), timeout=20)
            # ...then a moment longer, in which an unbounded client's other calls would pile up (a correct
            # client passes however long this takes; it only bounds how slow a wrong one may be caught)
            cond.wait_for(lambda: state["in_flight"] > bound or everyone_left(), timeout=0.5)
            state["in_flight"] -= 1
            state["served"] += 1
        return {"Lessons": [{"Id": f"L-{query['Id']}", "Date": "2025-01-06"}], "LessonStaff": [], "LessonRooms": []}

    vendor = DocVendor()
    vendor.respond = respond
    client = client_for(vendor)
    landed: list[dict] = []
    try:
        summary = fan_out(client, ep, {"DateFrom": MONTH, "DateTo": "2025-01-31"},
                          Where("xporter", ep.name, A), lambda name, rows: landed.extend(rows), people,
                          per_request=1, concurrency=bound,
                          fetch_kwargs={"page_size": 100, "result_sets": ep.result_set_names})
    finally:
        client.close()
        vendor.close()
    assert state["peak"] == bound
    assert sorted(q["Id"] for q in vendor.data_calls("TimetableForStudent")) == people
    assert sorted((r["Id"], r["ForStudentId"]) for r in landed) == [(f"L-{p}", p) for p in people]
    assert summary.pages == len(people) and summary.next_token is None


def test_values_gone_from_a_lookup_lose_their_partitions_and_new_ones_are_loaded(defs, instance, xp, schools,
                                                                                  lake_env):
    structure = asset("assessment_structure").removeprefix("xporter/")  # the Aspects table is its first
    assert materialize(defs, instance, asset("assessment_structure"), A).success
    first = apply_partition_requests(instance, sensor_tick(defs, instance, "xporter_filter_discovery"))
    before = first["xporter_aspect"]
    assert before == [f"{A}:{v}" for v in lake_column(lake_env, structure, "id")]
    xp.set_knobs(rows=4)  # the school's assessment structure changes: different aspects
    assert materialize(defs, instance, asset("assessment_structure"), A, config={"full_refresh": True}).success
    now = [f"{A}:{v}" for v in lake_column(lake_env, structure, "id")]
    assert set(now) != set(before) and len(now) == 4
    tick = sensor_tick(defs, instance, "xporter_filter_discovery")  # no cursor: each school's last landing wins
    changes = {type(r).__name__: sorted(r.partition_keys)
               for r in tick.dynamic_partitions_requests if r.partitions_def_name == "xporter_aspect"}
    assert changes.get("AddDynamicPartitionsRequest", []) == sorted(set(now) - set(before))
    assert changes["DeleteDynamicPartitionsRequest"] == sorted(set(before) - set(now))
    if set(now) - set(before):  # the new ones load at once
        assert any(r.job_name == "xporter_aspect" for r in tick.run_requests)


def test_the_fourteen_endpoints_the_document_gives_mandatory_filters_all_have_them():
    """Issue 14's table of the document's mandatory filters (endpoint -> vendor parameters, document line of
    the first); test_every_endpoint_lands_for_one_school then proves each is sent (the emulator refuses a
    request without it)."""
    documented = {
        "assessment_results": ({"Students", "Groups", "Aspects", "Resultsets", "Templates", "Columns",
                                "Marksheets"}, 1137),
        "assessment_results_by_aspect": ({"Aspects"}, 1307),
        "assessment_results_by_marksheet": ({"Marksheets"}, 1441),
        "assessment_results_by_student": ({"Students"}, 1575),
        "historical_attendance_summary": ({"SchoolYear"}, 2678),
        "exam_results": ({"Students"}, 3961),
        "linked_documents": ({"DocumentTypeName", "StudentIds"}, 5908),
        "student_user_defined_fields": ({"UDFName"}, 8254),
        "discount_codes": ({"KeyStage"}, 9628),
        "contact_user_defined_fields": ({"UDFName"}, 11383),
        "staff_linked_documents": ({"DocumentTypeName", "StaffIds"}, 12450),
        "staff_user_defined_fields": ({"UDFName"}, 12846),
        "timetable_for_staff": ({"Id"}, 13206),
        "timetable_for_student": ({"Id"}, 13340),
    }
    found = {e.name: ({p for f in e.filters for p in f.params}, e.filters[0].doc_line)
             for e in load_catalog()[0] if e.filters}
    assert found == documented
    # each is set one way: a partition dimension, a fan-out over people, or run config
    for name in documented:
        ep = endpoint(name)
        ways = {"dimension" if f.kind in ("lookup", "school_year", "values") else f.kind for f in ep.filters}
        assert ways in ({"dimension"}, {"people"}, {"config"}, {"dimension", "people"}), (name, ways)
        assert (partitioning_for(ep).dimension is not None) == ("dimension" in ways)
