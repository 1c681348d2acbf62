"""The Stellic emulator over real HTTP: contract, data realism, async flow, faults, plumbing."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from edu_assets.sandbox import SandboxServer, start_sandbox
from edu_assets.sandbox.stellic import EXPORTS, KEYS, READONLY_TOKEN, SANDBOX_TOKEN, StellicApp
from edu_assets_tests.helpers import age_job, clean_sandbox

SECRET = "stellic-SECRET-abc123"
PARTNER = "/partnerapi/v1"  # the partner API's one base (partner API document L25-27)
STATUS = f"{PARTNER}/exports/get_export_url"  # in its Exports section (L2062)
AUTH = {"Authorization": f"Bearer {SECRET}"}
READY_AFTER = 0.3

REQUIRED_PARAMS: dict[str, dict[str, str | list[str]]] = {
    "requirement_units_taken": {"screen_names": ["Writing Requirement", "Science Requirement"]},
    "plan_courses": {"mode": "planned"},
    "plancourse_enrollment_by_term": {"years": ["2021", "2022"], "school_name": "Divinity School"},
    "registration_details": {"year": "2022", "semester": "fall"},
    "sections_counting_for_reqs": {"usem_ids": ["2434", "3435"]},
    "export_workflow_responses": {"workflow_id": "23"},
    "remaining_non_admin_requirements": {
        "expected_graduation_term": "2258",
        "exclude_requirement_names": ["Portfolio Review", "Milestone: Qualifying Exam"],
    },
    "tagged_notes": {"tag": "2023FANeverAttended"},
    "dynamic_group_entities": {"dynamic_group": "Engineering Students"},
}


@pytest.fixture(scope="module")
def sandbox():
    app = StellicApp(tokens={SANDBOX_TOKEN, SECRET}, rows=60, async_ready_after=READY_AFTER)
    with SandboxServer([app]) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(sandbox):
    with clean_sandbox(sandbox):
        yield


@pytest.fixture
def app(sandbox) -> StellicApp:
    return sandbox.app("stellic")


@pytest.fixture
def client(sandbox):
    with httpx.Client(base_url=sandbox.base_url("stellic"), headers=AUTH, timeout=30) as c:
        yield c


def export(
    client: httpx.Client, data_type: str, channel: str | None = "http_file", **params
) -> httpx.Response:
    query = {"output_format": "csv", **REQUIRED_PARAMS.get(data_type, {}), **params}
    if channel:
        query["delivery_channel"] = channel
    return client.get(f"/exports/export_data/{data_type}", params=query)


def parse_csv(body: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(body.decode("utf-8"), newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def poll(
    client: httpx.Client,
    file_name: str,
    timeout: float = 60,
    final: tuple[str, ...] = ("completed", "failed"),
) -> tuple[dict, list[str]]:
    """Poll get_export_url until a final status; returns the last body and every status seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(STATUS, params={"file_name": file_name}).json()
        seen.append(body["status"])
        if body["status"] in final:
            return body, seen
        time.sleep(0.03)
    raise AssertionError(f"export {file_name} not finished after {timeout}s; saw {seen[-3:]}")


def run_async(
    client: httpx.Client, data_type: str, final: tuple[str, ...] = ("completed", "failed"), **params
) -> tuple[str, dict]:
    response = export(client, data_type, channel="s3", **params)
    assert response.status_code == 200, response.text
    file_name = response.json()["data"]["file_name"]
    body, _ = poll(client, file_name, final=final)
    return file_name, body


# -- auth ---------------------------------------------------------------------------------------


def test_missing_token_is_401(sandbox):
    response = httpx.get(sandbox.base_url("stellic") + "/exports/export_data/audit_data?output_format=csv")
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "errors": [{"message": "API token was not provided or the provided API token was incorrect."}],
    }


def test_wrong_token_is_401_and_listed_tokens_work(sandbox):
    url = sandbox.base_url("stellic") + "/exports/export_data/audit_data?output_format=csv"
    assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": SECRET}).status_code == 401  # scheme missing
    assert httpx.get(url, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}).status_code == 200
    assert httpx.get(url, headers=AUTH).status_code == 200


def test_readonly_token_is_403(sandbox):
    url = sandbox.base_url("stellic") + STATUS + "?file_name=x.csv"
    response = httpx.get(url, headers={"Authorization": f"Bearer {READONLY_TOKEN}"})
    assert response.status_code == 403
    assert "priveleges" in response.json()["errors"][0]["message"]


# -- every data type ----------------------------------------------------------------------------


@pytest.mark.parametrize("data_type", sorted(EXPORTS))
def test_every_data_type_returns_parseable_csv_with_unique_keys(client, data_type):
    response = export(client, data_type)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.content.endswith(b"\r\n")
    header, rows = parse_csv(response.content)
    assert 3 <= len(header) <= 13
    assert set(KEYS[data_type]) <= set(header)
    assert rows, "expected data rows"
    assert all(None not in row and len(row) == len(header) for row in rows)
    keys = [tuple(row[k] for k in KEYS[data_type]) for row in rows]
    assert len(set(keys)) == len(keys)


def test_documented_columns(client):
    header, _ = parse_csv(export(client, "engagement_score").content)
    assert header == ["Username", "ID", "Engagement Score"]
    header, _ = parse_csv(export(client, "remaining_non_admin_requirements").content)
    assert header == [
        "Network ID", "Student ID", "First Name", "Last Name", "Primary Advisor", "Expected Graduation",
        "Applied for Graduation", "Active vs LOA", "Archived Status", "Remaining Requirements Count",
    ]  # fmt: skip


def test_data_is_messy_like_real_exports(client, app):
    app.rows = 400
    body = export(client, "all_appointments").content + export(client, "tagged_notes").content
    text = body.decode("utf-8")
    assert re.search(r"[^\x00-\x7f]", text), "non-ASCII names expected"
    assert '""' in text and ',"' in text, "quoted fields with embedded quotes/commas expected"
    assert ",," in text, "empty values expected"
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    _, notes = parse_csv(export(client, "tagged_notes").content)
    assert any("\n" in row["Note Body"] for row in notes), "multi-line quoted fields expected"
    _, students = parse_csv(export(client, "remaining_non_admin_requirements").content)
    assert {row["Applied for Graduation"] for row in students} == {"True", "False"}


def test_partner_engagement_score_is_the_bulk_export_in_the_documents_csv_shape(client):
    partner = client.get(f"{PARTNER}/exports/engagement_score")
    assert partner.status_code == 200
    assert partner.headers["content-type"].startswith("text/csv")
    lines = partner.text.split("\r\n")
    assert lines[0] == "Username, ID, Engagement Score"  # as the document samples it (L2097-2101)
    bulk = export(client, "engagement_score").text.split("\r\n")
    assert lines == [line.replace(",", ", ") for line in bulk]


# -- partner API: only the documented paths, in the document's shapes ------------------------------


def test_get_export_url_is_served_under_the_partner_base_only(client):
    file_name = export(client, "permissions", channel="s3").json()["data"]["file_name"]
    assert client.get(STATUS, params={"file_name": file_name}).status_code == 200
    root = client.get("/exports/get_export_url", params={"file_name": file_name})
    assert root.status_code == 404  # no alias at the host root: a client polling there must notice


def test_final_status_word_is_a_knob(client, app):
    app.set_knobs(final_status="generated")
    _, body = run_async(client, "permissions", final=("generated", "failed"))
    assert body["status"] == "generated" and body["url"].startswith("http")


def students(client) -> list[str]:
    response = client.get(
        f"{PARTNER}/student/bulk/engagement_score",
        params={"output_format": "csv", "delivery_channel": "http_file"},
    )
    assert response.status_code == 200, response.text
    return [line.split(", ")[0] for line in response.text.split("\r\n")[1:] if line]


def test_bulk_students_by_property_needs_its_documented_query(client):
    url = f"{PARTNER}/student/bulk/engagement_score"
    assert "output_format" in client.get(url).json()["errors"][0]["message"]
    assert client.get(url, params={"output_format": "csv"}).status_code == 400  # delivery_channel too (L1220)
    assert client.get(url, params={"output_format": "csv", "delivery_channel": "s3"}).status_code == 400
    assert (
        client.get(
            f"{PARTNER}/student/bulk/gpa", params={"output_format": "csv", "delivery_channel": "http_file"}
        ).status_code
        == 400
    )
    assert len(students(client)) == 60


@pytest.mark.parametrize(
    ("path", "keys"),
    [
        ("{u}/engagement_score", {"engagement_score", "success"}),  # L1261-1265
        ("{u}/audit/planned/unmatched", {"unmatched_courses", "counts_for", "success"}),  # L1297-1303
        (
            "{u}/custom_audit/registered/all/unmatched",
            {"unmatched_courses", "counts_for", "success"},
        ),  # L1341
        ("{u}/planner/all/future", {"future_courses", "success"}),  # L1378-1382
    ],
)
def test_student_reads_answer_in_the_documents_shapes(client, path, keys):
    user = students(client)[3]
    body = client.get(f"{PARTNER}/student/" + path.format(u=user)).json()
    assert set(body) == keys and body["success"] is True
    again = client.get(f"{PARTNER}/student/" + path.format(u=user)).json()
    assert again == body  # a pure function of student and parameters


def test_student_reads_refuse_undocumented_values_and_unknown_students(client):
    user = students(client)[0]
    bad = client.get(
        f"{PARTNER}/student/{user}/audit/all/unmatched"
    )  # course_filter: planned|registered (L1282)
    assert bad.status_code == 400 and "course_filter" in bad.json()["errors"][0]["message"]
    assert client.get(f"{PARTNER}/student/{user}/planner/planned/past").status_code == 400
    missing = client.get(f"{PARTNER}/student/nobody-here/planner/planned/future")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["message"] == "Requested resource was not found."
    assert client.get(f"/student/{user}/engagement_score").status_code == 404  # not outside the partner base


def test_student_reads_over_the_in_flight_limit_get_429(client, app):
    user = students(client)[0]
    app.set_knobs(partner_max_in_flight=1)
    app.hold_partner_reads()  # the first read stays in flight until released
    with httpx.Client(base_url=str(client.base_url), headers=AUTH, timeout=30) as other:
        first = threading.Thread(target=lambda: other.get(f"{PARTNER}/student/{user}/engagement_score"))
        first.start()
        deadline = time.monotonic() + 30
        while app.partner_in_flight == 0:  # waits for a state, not for time
            assert time.monotonic() < deadline, "the first read never arrived"
            time.sleep(0.01)
        limited = client.get(f"{PARTNER}/student/{user}/engagement_score")
        app.release_partner_reads()
        first.join()
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "0"
    assert limited.json()["errors"][0]["message"] == "The API rate limit was reached."
    assert app.partner_peak_in_flight == 1


def test_renamed_result_sets_fault(client, sandbox):
    user = students(client)[0]
    sandbox.faults.add("renamed_result_sets", vendor="stellic", times=1)
    body = client.get(f"{PARTNER}/student/{user}/planner/planned/future").json()
    assert set(body) == {"future_courses_v2", "success"}


# -- determinism and parameters -----------------------------------------------------------------


def test_same_request_gives_identical_bytes_even_on_a_fresh_server(client):
    first = export(client, "bulk_exceptions_detailed", include_all="true")
    second = export(client, "bulk_exceptions_detailed", include_all="true")
    assert first.content == second.content
    with start_sandbox(stellic={"rows": 60, "tokens": {SECRET}}) as other:
        url = other.base_url("stellic") + "/exports/export_data/bulk_exceptions_detailed"
        third = httpx.get(url, params={"output_format": "csv", "include_all": "true"}, headers=AUTH)
    assert third.content == first.content


def test_appointments_follow_the_window(client):
    _, month = parse_csv(export(client, "all_appointments", start="2025-03-01", end="2025-03-30").content)
    _, two_months = parse_csv(
        export(client, "all_appointments", start="2025-03-01", end="2025-04-29").content
    )
    assert all("2025-03-01" <= row["Appointment Time"][:10] <= "2025-03-30" for row in month)
    assert 50 <= len(month) <= 70  # ~rows (60) per 30 days
    assert len(two_months) == 2 * len(month)
    # overlapping windows return the same appointments (stable IDs and values)
    by_id = {row["Appointment ID"]: row for row in two_months}
    assert all(by_id[row["Appointment ID"]] == row for row in month)
    assert all("13:00:00" <= row["Appointment Time"][11:19] < "22:00:00" for row in month)  # office hours
    # daily partitions add up exactly to the longer window
    days = [
        parse_csv(export(client, "all_appointments", start=d, end=d).content)[1]
        for d in ("2025-03-01", "2025-03-02")
    ]
    _, both = parse_csv(export(client, "all_appointments", start="2025-03-01", end="2025-03-02").content)
    assert days[0] + days[1] == both


def test_appointment_fields_selects_columns(client):
    header, rows = parse_csv(
        export(client, "all_appointments", fields="student_name,advisor_name,appointment_time").content
    )
    assert header == ["Student Name", "Advisor Name", "Appointment Time"]
    assert rows
    assert export(client, "all_appointments", fields="shoe_size").status_code == 400


def test_usem_ids_are_carried_and_change_the_data(client):
    _, one = parse_csv(export(client, "sections_counting_for_reqs", usem_ids=["2258"]).content)
    _, two = parse_csv(export(client, "sections_counting_for_reqs", usem_ids=["2258", "2262"]).content)
    _, other = parse_csv(export(client, "sections_counting_for_reqs", usem_ids=["2262"]).content)
    assert {row["Usem ID"] for row in one} == {"2258"}
    assert {row["Term Name"] for row in one} == {"Fall 2025"}
    assert {row["Usem ID"] for row in two} == {"2258", "2262"}
    assert len(two) == 2 * len(one)
    assert [r["Course Code"] for r in one] != [r["Course Code"] for r in other]


def test_parameters_show_up_in_rows(client):
    _, registrations = parse_csv(
        export(client, "registration_details", year="2023", semester="winter").content
    )
    assert {(r["Year"], r["Semester"]) for r in registrations} == {("2023", "winter")}
    _, notes = parse_csv(export(client, "tagged_notes", tag="Probation, Fall").content)
    assert {r["Tag"] for r in notes} == {"Probation, Fall"}
    _, group = parse_csv(export(client, "dynamic_group_entities", dynamic_group="Pre-Med Track").content)
    assert {r["Dynamic Group"] for r in group} == {"Pre-Med Track"}


def test_graduation_applications_updated_since(client):
    _, everything = parse_csv(export(client, "graduation_applications").content)
    since = "2025-06-10T02:11:37"
    _, recent = parse_csv(export(client, "graduation_applications", updated_since=since).content)
    assert 0 < len(recent) < len(everything)
    assert all(row["Updated At"] > since for row in recent)
    full = {row["Application ID"]: row for row in everything}
    assert all(full[row["Application ID"]] == row for row in recent)
    assert export(client, "graduation_applications", updated_since="not a date").status_code == 400


def test_registration_timestamp_cuts_off(client):
    cutoff = "2022-07-01 00:00"
    _, rows = parse_csv(export(client, "registration_details", timestamp=cutoff).content)
    assert rows and all(r["Registered At"] < "2022-07-01" for r in rows)


# -- validation -----------------------------------------------------------------------------------


def test_unknown_data_type_is_404(client):
    response = client.get("/exports/export_data/shoe_sizes", params={"output_format": "csv"})
    assert response.status_code == 404
    assert response.json() == {"success": False, "errors": [{"message": "Unknown data type 'shoe_sizes'"}]}


def test_bad_requests_are_400(client):
    assert client.get("/exports/export_data/audit_data").status_code == 400
    assert client.get("/exports/export_data/audit_data", params={"output_format": "xlsx"}).status_code == 400
    missing = client.get("/exports/export_data/requirement_units_taken", params={"output_format": "csv"})
    assert missing.status_code == 400
    assert missing.json()["errors"] == [{"message": "Missing required parameter: screen_names"}]
    assert export(client, "bulk_pathways", include_placeholders="maybe").status_code == 400
    assert export(client, "plan_courses", mode="sideways").status_code == 400
    assert export(client, "audit_data", channel="ftp").status_code == 400
    assert client.get(STATUS).status_code == 400
    unknown = client.get(STATUS, params={"file_name": "nope.csv"})
    assert unknown.status_code == 404
    assert unknown.json()["errors"] == [{"message": "Unknown file_name"}]


def test_sync_export_over_the_row_limit_times_out(client, app):
    app.sync_row_limit = 10
    response = export(client, "audit_data")
    assert response.status_code == 504
    assert "timed out" in response.json()["errors"][0]["message"]


# -- async flow -----------------------------------------------------------------------------------


@pytest.mark.parametrize("data_type", ["audit_requirements", "sections_counting_for_reqs", "permissions"])
def test_async_default_types_start_a_job_without_delivery_channel(client, data_type):
    response = export(client, data_type, channel=None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert re.fullmatch(
        rf"{data_type}-\d{{8}}T\d{{6}}-[0-9a-f]{{8}}\.csv", response.json()["data"]["file_name"]
    )


def test_all_appointments_goes_async_only_when_large(client, app):
    assert export(client, "all_appointments", channel=None).headers["content-type"].startswith("text/csv")
    app.rows = 6000  # 6000 appointments in the default 30-day window > 5000
    response = export(client, "all_appointments", channel=None)
    assert response.json()["success"] is True and "file_name" in response.json()["data"]


def test_async_progression_and_download(client, app):
    app.async_ready_after = 3600.0  # not_started for 20 min, then processing: stepped by its age, not a clock
    response = export(client, "audit_requirements", channel="s3")
    file_name = response.json()["data"]["file_name"]
    other = export(client, "audit_requirements", channel="s3").json()["data"]["file_name"]
    assert other != file_name  # every call is a new job

    def status() -> str:
        return client.get(STATUS, params={"file_name": file_name}).json()["status"]

    assert status() == "not_started"
    age_job(app, file_name, 1800)
    assert status() == "processing"
    age_job(app, file_name, 1800)
    body, seen = poll(client, file_name)
    assert set(seen) <= {"processing", "completed"}  # processing only while its file is still being written
    assert body["success"] is True and body["status"] == "completed"
    url = urlsplit(body["url"])
    assert url.path == f"/stellic-files/{file_name}"
    query = parse_qs(url.query)
    assert set(query) == {"Expires", "Signature"}
    assert int(query["Expires"][0]) > time.time() + 200
    download = httpx.get(body["url"])  # no bearer token: pre-signed
    assert download.status_code == 200
    assert download.content == export(client, "audit_requirements").content


def test_expired_url_is_403_and_repoll_gives_a_fresh_url(client, sandbox):
    sandbox.faults.add("expire_url", vendor="stellic", times=1)
    file_name, body = run_async(client, "permissions")
    expired = httpx.get(body["url"])
    assert expired.status_code == 403
    assert expired.headers["content-type"] == "application/xml"
    assert expired.text == (
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
        "<Message>Request has expired</Message></Error>"
    )
    fresh, _ = poll(client, file_name)
    assert fresh["url"] != body["url"]
    assert httpx.get(fresh["url"]).status_code == 200


def test_tampered_or_missing_signature_is_403(client):
    _, body = run_async(client, "permissions")
    url = body["url"]
    for bad in (re.sub(r"Signature=\w{4}", "Signature=0000", url), url.split("?")[0]):
        response = httpx.get(bad)
        assert response.status_code == 403
        assert "<Code>SignatureDoesNotMatch</Code>" in response.text
    longer = re.sub(r"Expires=(\d+)", lambda m: f"Expires={int(m.group(1)) + 999}", url)
    assert "SignatureDoesNotMatch" in httpx.get(longer).text


def test_job_fails(client, sandbox):
    sandbox.faults.add("job_fails", vendor="stellic", match="audit_requirements")
    _, body = run_async(client, "audit_requirements")
    assert body == {
        "success": False,
        "status": "failed",
        "url": None,
        "errors": [{"message": "Export failed: audit cache rebuild error (sandbox-injected)"}],
    }
    _, next_job = run_async(client, "audit_requirements")  # the fault was used up
    assert next_job["status"] == "completed"


def test_job_never_finishes(client, sandbox):
    sandbox.faults.add("job_never_finishes", vendor="stellic")
    file_name = export(client, "permissions", channel="s3").json()["data"]["file_name"]
    time.sleep(READY_AFTER * 2)
    body = client.get(STATUS, params={"file_name": file_name}).json()
    assert body == {"success": True, "status": "processing", "url": None}


def test_range_requests(client):
    _, body = run_async(client, "permissions")
    full = httpx.get(body["url"]).content
    tail = httpx.get(body["url"], headers={"Range": "bytes=100-"})
    assert tail.status_code == 206
    assert tail.headers["content-range"] == f"bytes 100-{len(full) - 1}/{len(full)}"
    assert tail.content == full[100:]
    head = httpx.get(body["url"], headers={"Range": "bytes=0-9"})
    assert head.status_code == 206 and head.content == full[:10]
    assert httpx.get(body["url"], headers={"Range": f"bytes={len(full) + 5}-"}).status_code == 416


# -- generic faults -----------------------------------------------------------------------------


def test_rate_limit_with_retry_after(client, sandbox):
    sandbox.faults.add("rate_limit", vendor="stellic", match="export_data", times=2, retry_after=3)
    statuses = [export(client, "audit_data") for _ in range(3)]
    assert [r.status_code for r in statuses] == [429, 429, 200]
    assert statuses[0].headers["retry-after"] == "3"
    assert statuses[0].json()["success"] is False


def test_server_error(client, sandbox):
    sandbox.faults.add("server_error", match="get_export_url")
    response = client.get(STATUS, params={"file_name": "x"})
    assert response.status_code == 500
    assert response.json()["success"] is False


def test_dropped_connection_raises_transport_error(client, sandbox):
    sandbox.faults.add("drop_connection", vendor="stellic")
    with pytest.raises(httpx.TransportError):
        export(client, "audit_data")
    assert export(client, "audit_data").status_code == 200


def test_truncated_body_is_shorter_than_content_length(client, sandbox):
    sandbox.faults.add("truncate_body", match="/stellic-files/")
    _, body = run_async(client, "permissions")
    received = b""
    with pytest.raises(httpx.TransportError), httpx.stream("GET", body["url"]) as response:
        expected = int(response.headers["content-length"])
        for chunk in response.iter_raw():
            received += chunk
    assert 0 < len(received) < expected


def test_latency(client, sandbox, app):
    sandbox.faults.add("latency", match="audit_data", seconds=0.3)
    started = time.monotonic()
    assert export(client, "audit_data").status_code == 200
    assert time.monotonic() - started >= 0.3
    app.latency = 0.2
    started = time.monotonic()
    export(client, "audit_data")
    assert time.monotonic() - started >= 0.2


# -- bad-input faults ---------------------------------------------------------------------------

STUDENTS = "remaining_non_admin_requirements"


def test_malformed_csv(client, sandbox):
    sandbox.faults.add("malformed_csv", vendor="stellic")
    body = export(client, STUDENTS).content
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    assert {len(row) for row in rows[1:]} != {len(rows[0])}
    assert body.index(b"broken") > len(body) // 3  # in the middle, not at the start


def test_bad_encoding(client, sandbox):
    clean = export(client, STUDENTS).content
    sandbox.faults.add("bad_encoding", vendor="stellic")
    response = export(client, STUDENTS)
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    with pytest.raises(UnicodeDecodeError):
        response.content.decode("utf-8")
    assert response.content.decode("latin-1") == clean.decode("utf-8").encode("latin-1", "replace").decode(
        "latin-1"
    )


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("empty_body", lambda r, clean: r.content == b""),
        ("header_only", lambda r, clean: r.content == clean.split(b"\r\n")[0] + b"\r\n"),
        ("extra_column", lambda r, clean: parse_csv(r.content)[0][-1] == "Unexpected Col"),
        (
            "html_error",
            lambda r, clean: (
                r.headers["content-type"].startswith("text/html")
                and r.text == "<html><body>Service unavailable</body></html>"
            ),
        ),
    ],
)
def test_content_faults(client, sandbox, kind, check):
    clean = export(client, STUDENTS).content
    sandbox.faults.add(kind, vendor="stellic", match=STUDENTS)
    response = export(client, STUDENTS)
    assert response.status_code == 200
    assert check(response, clean)
    assert export(client, STUDENTS).content == clean  # one use only


def test_content_fault_attaches_to_async_job(client, sandbox):
    sandbox.faults.add("header_only", vendor="stellic", match="export_data/permissions")
    _, body = run_async(client, "permissions")
    assert httpx.get(body["url"]).content.count(b"\r\n") == 1


# -- plumbing: control endpoints, request log, knobs, caching ----------------------------------------


def test_fault_control_endpoint(sandbox, client):
    control = f"{sandbox.url}/_sandbox/faults"
    created = httpx.post(
        control, json={"kind": "rate_limit", "match": "audit_data", "times": 1, "retry_after": 7}
    )
    assert created.status_code == 201
    listed = httpx.get(control).json()["faults"]
    assert listed[0]["kind"] == "rate_limit" and listed[0]["params"] == {"retry_after": 7}
    assert export(client, "audit_data").headers["retry-after"] == "7"
    assert httpx.get(control).json()["faults"] == []
    assert httpx.post(control, json={"kind": "rate_limt"}).status_code == 400
    httpx.post(control, json={"kind": "server_error", "times": None})
    assert httpx.delete(control).json() == {"cleared": True}
    assert export(client, "audit_data").status_code == 200


def test_request_log_counts_calls_and_hides_secrets(sandbox, client):
    _, body = run_async(client, "permissions")
    httpx.get(body["url"])
    assert sandbox.log.count("/exports/export_data/permissions") == 1
    assert sandbox.log.count("/exports/get_export_url") >= 2
    logged = httpx.get(f"{sandbox.url}/_sandbox/requests").json()["requests"]
    assert len(logged) == len(sandbox.requests)
    download = next(e for e in logged if e["path"].startswith("/stellic-files/"))
    assert download["status"] == 200 and download["query"]["Signature"] == ["***"]
    dump = json.dumps(logged)
    assert SECRET not in dump and parse_qs(urlsplit(body["url"]).query)["Signature"][0] not in dump
    assert "authorization" not in dump.lower()


def test_knobs_over_http(sandbox, client, app):
    response = httpx.post(f"{sandbox.url}/_sandbox/knobs/stellic", json={"rows": 7})
    assert response.status_code == 200 and response.json()["stellic"]["rows"] == 7
    assert len(parse_csv(export(client, "audit_data").content)[1]) == 7
    assert httpx.post(f"{sandbox.url}/_sandbox/knobs/stellic", json={"rowz": 7}).status_code == 400
    app.set_knobs(rows_by_type={"audit_data": 3})
    assert len(parse_csv(export(client, "audit_data").content)[1]) == 3


def test_reset_clears_jobs_faults_and_log(sandbox, client):
    file_name = export(client, "permissions", channel="s3").json()["data"]["file_name"]
    sandbox.faults.add("server_error", times=None, match="nothing-matches")
    assert httpx.post(f"{sandbox.url}/_sandbox/reset").json() == {"reset": True}
    assert sandbox.faults.active() == [] and sandbox.requests == []
    assert client.get(STATUS, params={"file_name": file_name}).status_code == 404


def test_large_export_is_generated_once_and_streamed(client, app):
    app.set_knobs(rows_by_type={"sections_counting_for_reqs": 300_000}, async_ready_after=0.0)
    file_name, body = run_async(client, "sections_counting_for_reqs", usem_ids=["2258"])
    path = app.jobs.get(file_name).result.path
    size, mtime, misses = path.stat().st_size, path.stat().st_mtime_ns, app.cache.misses
    assert size > 30_000_000

    received = 0
    with httpx.stream("GET", body["url"]) as response:
        assert int(response.headers["content-length"]) == size
        for chunk in response.iter_raw(1 << 20):
            received += len(chunk)
    assert received == size

    second_name, _ = run_async(client, "sections_counting_for_reqs", usem_ids=["2258"])
    assert second_name != file_name
    assert app.jobs.get(second_name).result.path == path
    assert (
        app.cache.misses == misses
    )  # reused, not regenerated (counted, not timed: a loaded machine is slow)
    assert path.stat().st_mtime_ns == mtime


def test_server_basics(sandbox):
    assert sandbox.base_url("stellic") == f"{sandbox.url}/stellic"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sandbox.url)
    assert httpx.get(f"{sandbox.url}/_sandbox").json() == {
        "vendors": {"stellic": sandbox.base_url("stellic")}
    }
    assert httpx.get(f"{sandbox.url}/nobody/here").status_code == 404
    with pytest.raises(KeyError):
        sandbox.app("xporter")
    with httpx.Client() as keep_alive:  # two requests, one connection
        for _ in range(2):
            keep_alive.get(f"{sandbox.url}/_sandbox")
        assert keep_alive.get(f"{sandbox.url}/_sandbox").headers.get("connection") != "close"


def test_term_names():
    from edu_assets.sandbox.stellic_exports import term_name

    assert term_name(2258) == "Fall 2025"
    assert term_name(2262) == "Spring 2026"
    assert term_name(9999) == "Term 9999"


def test_python_side_synth_helpers(tmp_path):
    from edu_assets.sandbox import synth

    draws = [synth.rng_for("stellic", "x", 1).random() for _ in range(2)]
    assert draws[0] == draws[1] != synth.rng_for("stellic", "x", 2).random()
    first, last = synth.full_name(synth.rng_for("a"))
    assert (first, last) == synth.full_name(synth.rng_for("a"))
    assert synth.username("Zoë", "Nguyễn", 7) == "znguyen7"
    assert synth.ascii_fold("Øvergaard Siobhán") == "Overgaard Siobhan"
    path = tmp_path / "x.csv"
    rows = [["1", 'say "hi", then\nleave', None], ["2", "Zoë", "ok"]]
    assert synth.write_csv(path, ["ID", "Text", "Empty"], rows) == 2
    assert list(csv.reader(io.StringIO(path.read_text("utf-8"), newline=""))) == [
        ["ID", "Text", "Empty"],
        ["1", 'say "hi", then\nleave', ""],
        ["2", "Zoë", "ok"],
    ]
