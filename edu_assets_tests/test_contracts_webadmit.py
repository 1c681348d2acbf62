"""WebAdMIT contract: every example the documents give, replayed through the client's own parsers.

The examples are in ``fixtures/webadmit_examples`` (verbatim, with their line numbers in
``seeds/webadmit-export-files.txt``), with the vendor's JSON hyper-schemas for the export_files calls,
whose ``example`` values make up the documented status answer. Each of the seven statuses must land
in the right lifecycle state; the last tests drive the emulator over HTTP through the same client, one
status at a time, and check the emulator takes nothing from the client's code.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from edu_assets.core.errors import VendorAuthError, VendorHTTPError, Where
from edu_assets.core.exports import ExportHandle, JobState
from edu_assets.core.http import RetryPolicy, VendorHTTP
from edu_assets.sandbox import SandboxServer
from edu_assets.sandbox import webadmit as emulator
from edu_assets.sandbox.webadmit import SANDBOX_API_KEY, STATUS_WORDS, WebAdMitApp
from edu_assets.vendors.webadmit.client import (
    DOCUMENTED_STATUSES,
    STATUS_STATES,
    WebAdmitClient,
    parse_export_file,
    parse_status,
    status_key,
)
from edu_assets_tests import doc_examples
from edu_assets_tests.helpers import age_job, clean_sandbox

EXAMPLES = doc_examples.load("webadmit")
SCHEMATA = doc_examples.FIXTURES / "webadmit_examples" / "schemata"
WHERE = Where("webadmit", "contract", "1001-5001")
# status -> (lifecycle state, a file to download when the answer brings a download_url)
EXPECTED = {
    "Initializing": JobState.PENDING,
    "Queued": JobState.PENDING,
    "In Progress": JobState.PENDING,
    "Available": JobState.READY,
    "Success With Errors": JobState.READY,
    "Empty List": JobState.READY,
    "Failed": JobState.FAILED,
}


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMATA / f"{name}.json").read_text(encoding="utf-8"))


def example_of(properties: dict[str, Any]) -> dict[str, Any]:
    """An object made of each property's documented ``example``."""
    return {k: v["example"] for k, v in properties.items() if "example" in v}


def check_example(status: str | None = None, with_url: bool = True) -> dict[str, Any]:
    """The documented answer of the single-run status call (schemata/export_files_check.json)."""
    run = example_of(schema("export_files_check")["properties"]["export_files"]["properties"])
    if status is not None:
        run["status"] = status
    if not with_url:
        del run["download_url"]
    return run


# -- the copies are faithful ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_example_is_the_documents_text_at_its_lines(name):
    example = EXAMPLES[name]
    assert doc_examples.document_lines(example) == example["verbatim"]


@pytest.mark.parametrize(
    "name", ["export_files.json", "export_files_check.json", "export_files_check_batch.json"]
)
def test_schemata_are_the_vendors_unchanged(name):
    source = doc_examples.SHARED / "reference/webadmit/schemata" / name
    if not source.exists():
        pytest.skip(f"{source} is not on this machine")
    assert (SCHEMATA / name).read_bytes() == source.read_bytes()


def test_readings_of_prose_are_in_the_prose():
    for value in EXAMPLES["status_values"]["values"]:
        assert f'"{value}"' in EXAMPLES["status_values"]["verbatim"]
    assert EXAMPLES["callback_form"]["derived_body"] in EXAMPLES["callback_form"]["verbatim"]


# -- the seven statuses -----------------------------------------------------------------------------


def test_the_seven_statuses_are_the_same_in_the_page_every_schema_and_the_client():
    seven = EXAMPLES["status_values"]["values"]
    assert list(DOCUMENTED_STATUSES) == seven == list(EXPECTED)
    for name in ("export_files", "export_files_check", "export_files_check_batch"):
        text = json.dumps(schema(name))
        assert text.count(json.dumps(seven)) >= 2, f"{name} lists other statuses"
    assert {status_key(s) for s in seven} == set(STATUS_STATES)


@pytest.mark.parametrize("status", list(EXPECTED))
@pytest.mark.parametrize("spelling", ["documented", "snake_case", "upper"])
def test_each_status_with_a_download_url_maps_to_its_lifecycle_state(status, spelling):
    word = {"documented": status, "snake_case": status.lower().replace(" ", "_"), "upper": status.upper()}[
        spelling
    ]
    run = check_example(word)
    got = parse_status(run)
    assert got.state is EXPECTED[status] and got.vendor_status == word
    if got.state is JobState.READY:  # the documented URL: downloaded, its Expires read
        assert got.has_file and got.download_url == run["download_url"] and got.url_expires_at == 1425359248
    if status == "Success With Errors":
        assert got.warnings == ("WebAdMIT finished the export with errors but gave no details",)


@pytest.mark.parametrize(
    ("status", "state", "has_file"),
    [
        ("Initializing", JobState.PENDING, True),
        ("Queued", JobState.PENDING, True),
        ("In Progress", JobState.PENDING, True),
        ("Available", JobState.FAILED, True),  # ready says the docs, but there is no file to land
        ("Success With Errors", JobState.FAILED, True),  # not landed empty: WebAdMIT did not say "no rows"
        ("Empty List", JobState.READY, False),  # the one answer that lands an empty snapshot
        ("Failed", JobState.FAILED, True),
    ],
)
def test_each_status_without_a_download_url(status, state, has_file):
    got = parse_status(check_example(status, with_url=False))
    assert (got.state, got.has_file) == (state, has_file)
    if state is JobState.FAILED:
        assert got.message


def test_vendor_words_reach_the_failure_and_the_warnings():
    failed = parse_status({**check_example("Failed", with_url=False), "errors": ["GPA calculation failed"]})
    assert failed.message == "GPA calculation failed"
    warned = parse_status({**check_example("Success With Errors"), "errors": ["3 applicants skipped"]})
    assert warned.warnings == ("3 applicants skipped",)
    no_file = parse_status({**check_example("Success With Errors", with_url=False), "errors": ["3 skipped"]})
    assert no_file.state is JobState.FAILED and "3 skipped" in no_file.message


def test_a_status_outside_the_seven_fails_at_once_unless_it_brings_a_file():
    """Never polled until the 6-hour deadline: the first poll fails the partition and names the status."""
    odd = parse_status(check_example("Archived", with_url=False))
    assert odd.state is JobState.FAILED and "'Archived'" in odd.message and "'Empty List'" in odd.message
    ready = parse_status(check_example("Generated"))
    assert (ready.state, ready.vendor_status) == (JobState.READY, "Generated") and ready.download_url


def test_callback_form_status_is_a_documented_status():
    form = {k: v[0] for k, v in parse_qs(EXAMPLES["callback_form"]["derived_body"]).items()}
    assert form == {
        "export_file[id]": "99752",
        "export_file[export_id]": "123316",
        "export_file[status]": "Available",
    }
    assert STATUS_STATES[status_key(form["export_file[status]"])] is JobState.READY


# -- run answers ------------------------------------------------------------------------------------


def test_run_request_example_gives_the_export_file_handle():
    example = EXAMPLES["run_created"]
    assert doc_examples.http_status(example) == example["http_status"] == 201
    run = parse_export_file(doc_examples.body(example), WHERE)
    assert (run["id"], run["export_id"], run["status"]) == (74780, 86446, "Available")
    assert parse_status(run).state is JobState.FAILED  # no download_url in a run answer: polled, never landed
    documented = example_of(
        schema("export_files")["links"][0]["targetSchema"]["properties"]["export_files"]["properties"]
    )
    assert run == documented  # the page and the schema show the same answer


def test_pre_2018_array_answer_is_read_and_an_empty_one_fails():
    run = check_example()
    assert parse_export_file({"export_files": [run]}, WHERE) == run
    with pytest.raises(VendorHTTPError, match="unexpected export_files response"):
        parse_export_file({"export_files": []}, WHERE)


# -- error bodies ------------------------------------------------------------------------------------


def error_for(status: int, content: bytes) -> VendorHTTPError:
    request = httpx.Request("GET", "https://api.webadmit.org/api/v1/user_identities/999/exports")
    with VendorHTTP("webadmit", "https://api.webadmit.org") as http:
        return http.error_for(httpx.Response(status, content=content, request=request), WHERE)


@pytest.mark.parametrize("name", sorted(n for n in EXAMPLES if n.startswith("not_found")))
def test_not_found_bodies_give_the_vendors_message(name):
    example = EXAMPLES[name]
    body = doc_examples.body(example)
    assert set(body) == {"message"}
    error = error_for(example["http_status"], json.dumps(body).encode())
    assert error.status == 404 and body["message"] in str(error)


def test_unauthorized_is_an_auth_error_with_an_empty_body():
    example = EXAMPLES["unauthorized"]
    assert doc_examples.http_status(example) == 401 and doc_examples.body(example) is None
    error = error_for(401, b"")
    assert isinstance(error, VendorAuthError) and "credentials were rejected" in str(error)


# -- the same client against the emulator, one status at a time --------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer([WebAdMitApp(rows=5, ready_after=3600.0)]) as srv:
        yield srv


@pytest.fixture
def app(server) -> Iterator[WebAdMitApp]:
    with clean_sandbox(server):
        yield server.app("webadmit")


@pytest.fixture
def client(server, app) -> Iterator[WebAdmitClient]:
    http = VendorHTTP(
        "webadmit", server.base_url("webadmit"), auth_headers={"x-api-key": SANDBOX_API_KEY},
        retry=RetryPolicy(max_attempts=1),
    )  # fmt: skip
    with http:
        yield WebAdmitClient(http)


def start(client: WebAdmitClient, export_id: int = 5001) -> ExportHandle:
    template = client.template(1001, export_id, WHERE)
    return client.start(
        template, WHERE, asset_key="webadmit/export_files", partition_key=template.partition_key
    )


def finish(app: WebAdMitApp, handle: ExportHandle) -> None:
    """Age the run past its delay and wait for its file (if it has one) to be written."""
    age_job(app, str(handle.details["export_file_id"]), 3600)
    job = app.jobs.get(str(handle.details["export_file_id"]))
    if job.future is not None:
        job.future.result(timeout=30)


@pytest.mark.parametrize("style", ["capitalised", "snake"])
def test_client_follows_a_run_through_every_in_progress_status_to_available(client, app, style, tmp_path):
    app.set_knobs(status_style=style)
    handle = start(client)
    assert handle.details["status_at_start"] in ("Initializing", "initializing")
    seen = []
    for _ in range(3):
        status = client.poll(handle, WHERE)
        seen.append((status.state, status_key(status.vendor_status)))
        age_job(app, str(handle.details["export_file_id"]), 1500)
    assert seen == [
        (JobState.PENDING, "initializing"),
        (JobState.PENDING, "queued"),
        (JobState.PENDING, "inprogress"),
    ]
    finish(app, handle)
    ready = client.poll(handle, WHERE)
    assert (ready.state, status_key(ready.vendor_status), ready.has_file) == (
        JobState.READY,
        "available",
        True,
    )
    got = client.download(ready, tmp_path / "export.csv", WHERE)
    assert got.bytes > 0


@pytest.mark.parametrize(
    ("fault", "params", "state", "has_file", "key"),
    [
        ("success_with_errors", {}, JobState.READY, True, "successwitherrors"),
        ("success_with_errors", {"download_url": False}, JobState.FAILED, True, "successwitherrors"),
        ("empty_list", {}, JobState.READY, False, "emptylist"),
        ("empty_list", {"download_url": True}, JobState.READY, True, "emptylist"),
        ("job_fails", {}, JobState.FAILED, True, "failed"),
    ],
)
def test_client_on_each_finished_status_from_the_emulator(
    client, app, server, fault, params, state, has_file, key
):
    server.faults.add(fault, vendor="webadmit", **params)
    handle = start(client)
    finish(app, handle)
    status = client.poll(handle, WHERE)
    assert (status.state, status.has_file, status_key(status.vendor_status)) == (state, has_file, key)


def test_client_on_statuses_outside_the_seven_and_the_array_shape(client, app, server):
    app.set_knobs(export_files_shape="array")
    handle = start(client)
    assert handle.details["answer_shape"] == "array"
    finish(app, handle)
    server.faults.add("odd_status", vendor="webadmit")
    odd = client.poll(handle, WHERE)
    assert (odd.state, odd.vendor_status) == (JobState.FAILED, "Archived")
    server.faults.add("odd_status_with_url", vendor="webadmit", status="Generated")
    ready = client.poll(handle, WHERE)
    assert (ready.state, ready.vendor_status) == (JobState.READY, "Generated") and ready.download_url


# -- item 8: the emulator is an independent reading of the documents ----------------------------------


def test_emulator_does_not_import_or_read_the_clients_code():
    for path in sorted(Path(emulator.__file__).parent.glob("webadmit*.py")):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if "vendors" in m], f"{path.name} imports the client's code"
        assert "catalog.yaml" not in text, f"{path.name} reads the client's catalog"


def test_emulator_speaks_the_documented_words(client, app, server):
    assert list(STATUS_WORDS.values()) == EXAMPLES["status_values"]["values"]
    missing = httpx.get(f"{server.base_url('webadmit')}/api/v1/user_identities/999/exports",
                        headers={"x-api-key": SANDBOX_API_KEY})  # fmt: skip
    assert missing.json() == doc_examples.body(EXAMPLES["not_found_user_identity"])
    assert httpx.get(f"{server.base_url('webadmit')}/api/v1/user_identities").status_code == 401
    run = parse_export_file(httpx.post(
        f"{server.base_url('webadmit')}/api/v1/user_identities/1001/exports/5001/export_files",
        headers={"x-api-key": SANDBOX_API_KEY},
    ).json(), WHERE)  # fmt: skip
    assert set(run) == set(doc_examples.body(EXAMPLES["run_created"])["export_files"])
