"""SkillsPass contract: every example the documents give, replayed through the client's own parsers.

The examples are in ``fixtures/skillspass_examples`` (verbatim, with their line numbers in
``seeds/skillspass-export-request.txt`` and ``reference/skillspass/README.md``). The last tests drive the
emulator over HTTP through the same client, one documented status or shape at a time, and check the
emulator takes nothing from the client's code.
"""

from __future__ import annotations

import ast
import base64
import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from edu_assets.core.errors import VendorAuthError, VendorHTTPError, Where
from edu_assets.core.exports import ExportHandle, JobState
from edu_assets.core.http import RetryPolicy, VendorHTTP
from edu_assets.sandbox import SandboxServer
from edu_assets.sandbox import skillspass as emulator
from edu_assets.sandbox.skillspass import SANDBOX_KEY, SANDBOX_SECRET, SANDBOX_TOKEN, SkillsPassApp
from edu_assets.sandbox.skillspass_data import CURRENT_EXPORT_TYPES
from edu_assets.vendors.skillspass.assets import export_body
from edu_assets.vendors.skillspass.catalog import load_catalog
from edu_assets.vendors.skillspass.client import (
    DOCUMENTED_STATUSES,
    SkillsPassClient,
    describe_job_id,
    export_data,
    iso_instant,
    parse_created,
    parse_status,
)
from edu_assets.vendors.skillspass.resources import bln_header
from edu_assets_tests import doc_examples
from edu_assets_tests.helpers import age_job, clean_sandbox

EXAMPLES = doc_examples.load("skillspass")
WHERE = Where("skillspass", "contract", "2026-11-02")
URL = "https://files.example/users.csv?Expires=4102444800&Signature=abc"


def status_body(status: str, shape: str, url: str | None = None, errors: list | None = None) -> dict:
    """A status answer in the guide's (``job``) or the API reference's (``top``) shape."""
    data = {"downloadUrl": url, "downloadExpiresAt": "2099-12-31T00:00:00.000Z" if url else None}
    job: dict = {"id": "abc=", "status": status}
    if shape == "job":
        return {"job": {**job, "exportData": data}, "errors": errors or []}
    return {"job": job, "exportData": data, "errors": errors or []}


# -- the copies are faithful ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_example_is_the_documents_text_at_its_lines(name):
    example = EXAMPLES[name]
    assert doc_examples.document_lines(example) == example["verbatim"]


@pytest.mark.parametrize("name", sorted(n for n, e in EXAMPLES.items() if e["kind"] == "prose"))
def test_each_reading_of_prose_is_in_the_prose(name):
    example = EXAMPLES[name]
    for value in example.get("values", []):
        assert value in example["verbatim"]
    if name == "create_response_prose":
        assert "jobId" in example["verbatim"]


# -- create -------------------------------------------------------------------------------------------


def test_create_requests_are_built_field_for_field_as_the_examples():
    plain, interactions = (
        doc_examples.body(EXAMPLES[n]) for n in ("create_request", "create_request_interactions")
    )
    start = iso_instant(datetime(2012, 9, 5, 11, 12, 47, tzinfo=UTC))
    end = iso_instant(datetime(2015, 5, 28, 17, 39, 23, tzinfo=UTC))
    assert export_body(start, end, "ELEARNING_ENROLLMENTS", "CSV") == plain
    assert export_body(start, end, "LEARNING_ACTIVITY_INTERACTIONS", "JSONL", 12345) == interactions
    assert json.dumps(export_body(start, end, "X", "JSONL", 12345)).endswith('"learningActivityId": 12345}')


def test_catalog_offers_exactly_the_documented_types_and_formats():
    documented = EXAMPLES["export_types"]["values"]
    specs = {s.export_type: s for s in load_catalog()}
    assert sorted(specs) == sorted(documented)
    assert specs["LEARNING_ACTIVITY_INTERACTIONS"].formats == ("JSONL",)  # "only supports JSONL" (L10-11)
    assert specs["LEARNING_ACTIVITY_INTERACTIONS"].per_activity  # "requires learningActivityId" (L15)
    assert all(set(s.formats) <= {"CSV", "JSONL"} for s in specs.values())


def test_create_response_example_gives_its_job_id():
    body = doc_examples.body(EXAMPLES["create_response"])
    job_id, field = parse_created(body, WHERE)
    assert field == "job.id" and job_id == body["job"]["id"] and job_id.endswith("==")
    # the id decodes to learning_activities/jsonl although the example asked for ELEARNING_ENROLLMENTS/CSV:
    # the client treats it as opaque and only shows it in logs
    assert describe_job_id(job_id).startswith(
        "tenantKey=dreambuilder, type=learning_activities, format=jsonl"
    )


def test_create_response_as_the_prose_says_it_jobId_is_read_too():
    body = doc_examples.body(EXAMPLES["create_response_prose"])
    assert parse_created(body, WHERE) == (body["jobId"], "jobId")


def test_create_response_without_any_id_fails_naming_where_it_looked():
    with pytest.raises(VendorHTTPError, match=r"job\.id, jobId, job\.jobId, id"):
        parse_created({"job": {}}, WHERE)


# -- status ---------------------------------------------------------------------------------------------


def test_guide_status_example_is_ready_with_its_url_and_expiry():
    body = doc_examples.body(EXAMPLES["status_guide_completed"])
    status = parse_status(body, WHERE)
    assert (status.state, status.vendor_status, status.download_url) == (
        JobState.READY,
        "COMPLETED",
        "https://…",
    )
    assert status.url_expires_at == datetime(2024, 9, 26, 16, 49, 35, 471000, tzinfo=UTC).timestamp()
    assert export_data(body)[1] == "job"


def test_api_reference_status_shape_is_ready_too():
    body = doc_examples.body(EXAMPLES["status_api_reference"])
    status = parse_status(body, WHERE)
    assert (status.state, status.download_url) == (JobState.READY, "https://…")
    assert export_data(body)[1] == "top"


@pytest.mark.parametrize("shape", ["job", "top"])
def test_each_documented_status_in_each_shape(shape):
    assert EXAMPLES["status_values"]["values"] == list(DOCUMENTED_STATUSES)
    pending = parse_status(status_body("PENDING", shape), WHERE)
    assert (pending.state, pending.vendor_status) == (JobState.PENDING, "PENDING")
    ready = parse_status(status_body("COMPLETED", shape, URL), WHERE)
    assert (ready.state, ready.download_url, ready.url_expires_at) == (
        JobState.READY, URL, datetime(2099, 12, 31, tzinfo=UTC).timestamp(),
    )  # fmt: skip
    lagging = parse_status(status_body("COMPLETED", shape), WHERE)  # members null until the URL exists
    assert (lagging.state, lagging.vendor_status) == (JobState.PENDING, "COMPLETED (no download URL yet)")
    errors = [{"key": "EXPORT_FAILED", "message": "report database timeout"}, {"message": "try later"}]
    failed = parse_status(status_body("FAILED", shape, errors=errors), WHERE)
    assert failed.state is JobState.FAILED
    assert failed.message == "EXPORT_FAILED: report database timeout; try later"


def test_errors_inside_job_are_read_as_well_as_beside_it():
    body = status_body("FAILED", "job")
    body["job"]["errors"] = [{"key": "EXPORT_FAILED", "message": "disk full"}]
    assert parse_status(body, WHERE).message == "EXPORT_FAILED: disk full"


def test_status_spelling_and_case_variants_are_read():
    for word in ("completed", "Completed", "COMPLETE", "SUCCEEDED"):
        assert parse_status(status_body(word, "top", URL), WHERE).state is JobState.READY
    for word in ("pending", "IN_PROGRESS", "In Progress", "processing", "QUEUED"):
        assert parse_status(status_body(word, "job"), WHERE).state is JobState.PENDING
    for word in ("failed", "ERROR", "Cancelled"):
        assert parse_status(status_body(word, "job"), WHERE).state is JobState.FAILED


def test_unknown_status_without_url_fails_at_once_naming_it():
    """Not polled until the 6-hour deadline: the first poll fails the partition and says why."""
    status = parse_status(status_body("ARCHIVED", "job"), WHERE)
    assert status.state is JobState.FAILED and status.vendor_status == "ARCHIVED"
    assert "'ARCHIVED'" in status.message and "PENDING, COMPLETED, FAILED" in status.message
    with_errors = parse_status(status_body("ARCHIVED", "top", errors=[{"message": "job purged"}]), WHERE)
    assert (with_errors.state, with_errors.message) == (JobState.FAILED, "job purged")


def test_unknown_status_with_a_url_is_ready():
    status = parse_status(status_body("GENERATED", "top", URL), WHERE)
    assert (status.state, status.vendor_status, status.download_url) == (JobState.READY, "GENERATED", URL)


def test_status_answer_without_job_fails_loudly():
    with pytest.raises(VendorHTTPError, match="unexpected job status"):
        parse_status({"status": "COMPLETED"}, WHERE)


# -- error bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(3))
def test_both_documented_400_shapes_give_the_vendors_words(index):
    body = EXAMPLES["error_400_shapes"]["derived_bodies"][index]
    request = httpx.Request("POST", "https://kube-prod.bluedrop360.com/tp-api/exports")
    with VendorHTTP("skillspass", "https://kube-prod.bluedrop360.com") as http:
        error = http.error_for(httpx.Response(400, json=body, request=request), WHERE)
    assert error.status == 400 and not isinstance(error, VendorAuthError)
    message = body["message"] if "statusCode" in body else body["error"]["message"]
    assert message in str(error)
    code = body.get("code") or (body["error"].get("key") if isinstance(body["error"], dict) else None)
    if code:  # the machine-readable code or key says which rule the vendor applied: it is kept
        assert f"{code}: {message}" in str(error)


# -- the same client against the emulator, one documented status or shape at a time -----------------


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer([SkillsPassApp(ready_after=3600.0)]) as srv:
        yield srv


@pytest.fixture
def app(server) -> Iterator[SkillsPassApp]:
    with clean_sandbox(server):
        yield server.app("skillspass")


@pytest.fixture
def client(server, app) -> Iterator[SkillsPassClient]:
    http = VendorHTTP(
        "skillspass", server.base_url("skillspass"),
        auth_headers={"Authorization": bln_header(SANDBOX_KEY, SANDBOX_TOKEN, SANDBOX_SECRET)},
        retry=RetryPolicy(max_attempts=1),
    )  # fmt: skip
    with http:
        yield SkillsPassClient(http)


def start(client: SkillsPassClient, export_type: str = "USERS", fmt: str = "CSV") -> ExportHandle:
    body = export_body("2026-11-02T00:00:00.000Z", "2026-11-02T23:59:59.999Z", export_type, fmt)
    return client.start(body, WHERE, asset_key="skillspass/users", partition_key="2026-11-02")


@pytest.mark.parametrize("shape", ["nested", "top"])
def test_client_follows_a_job_from_pending_to_download(client, app, shape, tmp_path):
    app.set_knobs(status_shape=shape, rows_per_day=3)
    handle = start(client)
    assert handle.details["job_id_field"] == "job.id"
    assert client.poll(handle, WHERE).state is JobState.PENDING
    age_job(app, handle.job_id, 3600)
    app.jobs.get(handle.job_id).future.result(timeout=30)  # its file is written
    status = client.poll(handle, WHERE)
    assert status.state is JobState.READY and status.url_expires_at
    got = client.download(status, tmp_path / "users.csv", WHERE)
    header = next(csv.reader(io.StringIO(Path(got.path).read_text(encoding="utf-8"))))
    users = next(s for s in load_catalog() if s.export_type == "USERS")
    assert header == list(users.columns)  # both the documented 23 columns, read independently


def test_client_reads_a_failed_job_and_the_prose_job_id(client, app, server):
    server.faults.add("prose_job_id", vendor="skillspass")
    server.faults.add("job_fails", vendor="skillspass", message="report database timeout")
    handle = start(client)
    assert handle.details["job_id_field"] == "jobId"
    age_job(app, handle.job_id, 3600)
    status = client.poll(handle, WHERE)
    assert (status.state, status.message) == (JobState.FAILED, "EXPORT_FAILED: report database timeout")


def test_client_on_undocumented_statuses_from_the_emulator(client, app, server):
    app.set_knobs(ready_after=0.0)
    handle = start(client)
    app.jobs.get(handle.job_id).future.result(timeout=30)
    server.faults.add("odd_status", vendor="skillspass", status="ARCHIVED")
    odd = client.poll(handle, WHERE)
    assert (odd.state, odd.vendor_status) == (JobState.FAILED, "ARCHIVED")
    server.faults.add("odd_status_with_url", vendor="skillspass", status="GENERATED")
    ready = client.poll(handle, WHERE)
    assert (ready.state, ready.vendor_status) == (JobState.READY, "GENERATED") and ready.download_url


# -- item 8: the emulator is an independent reading of the documents ----------------------------------


def test_emulator_does_not_import_or_read_the_clients_code():
    for path in sorted(Path(emulator.__file__).parent.glob("skillspass*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if "vendors" in m], f"{path.name} imports the client's code"
        assert "catalog.yaml" not in path.read_text(encoding="utf-8"), (
            f"{path.name} reads the client's catalog"
        )


def test_emulator_accepts_the_documented_types_and_answers_the_documented_shape(client, app):
    assert list(CURRENT_EXPORT_TYPES) == EXAMPLES["export_types"]["values"]
    documented = json.loads(base64.b64decode(doc_examples.body(EXAMPLES["create_response"])["job"]["id"]))
    ours = emulator.decode_job_id(start(client, "LEARNING_ACTIVITIES", "JSONL").job_id)

    def layout(decoded: list[str]) -> list[str]:
        return [part.split(":", 1)[0] for part in decoded[0].split("|")]

    assert (
        layout(ours) == layout(documented) == ["data-export", "tenantKey", "type", "format", "start", "end"]
    )
    assert ours[0].split("|")[2:4] == ["type:learning_activities", "format:jsonl"]  # as the documented id
