"""The SkillsPass emulator over real HTTP: BLN auth, validation, the async export job, pre-signed
downloads, window semantics of the change feed, data shapes and faults."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from edu_assets.sandbox import SandboxServer
from edu_assets.sandbox.skillspass import (
    SANDBOX_KEY,
    SANDBOX_SECRET,
    SANDBOX_TOKEN,
    SkillsPassApp,
    decode_job_id,
)
from edu_assets_tests.helpers import clean_sandbox

READY_AFTER = 0.3
SECRET = "sp-SECRET-9f8e7d"
AUTH_VALUE = (
    f"bln type=api, version=1, entity=user, key={SANDBOX_KEY}, token={SANDBOX_TOKEN}, secret={SECRET}"
)
AUTH = {"Authorization": AUTH_VALUE}
DAY = "2026-11-03"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

USERS_HEADER = [
    "User ID", "Firstname", "Middlename", "Lastname", "Network ID", "Network Name", "Grouping",
    "Account Creation Date", "Account Confirmed Date", "Confirmed Status", "Locale", "Day Of Birth",
    "Month Of Birth", "Street Address", "City", "Region", "Postalcode", "Country Code", "Gender", "Library",
    "Id- Number", "Phone", "Department",
]  # fmt: skip
HEADERS = {
    "ELEARNING_ENROLLMENTS": [
        "User ID", "Registration Date", "Program Completion Date", "Product ID", "Program Name",
    ],
    "LEARNING_ACTIVITIES": [
        "User ID", "Product ID", "Program Name", "Learning Activity ID", "Learning Activity Name",
        "Learning Activity Date", "Timespent", "Status", "Score",
    ],
    "USERS": USERS_HEADER,
    "NETWORKS": ["Network ID", "Network Name", "Parent Network ID", "Created Date", "Modified Date"],
}  # fmt: skip
JSON_KEYS = {
    "ELEARNING_ENROLLMENTS": ["userId", "registrationDate", "programCompletionDate", "productId", "programName"],
    "LEARNING_ACTIVITIES": [
        "userId", "productId", "programName", "learningActivityId", "learningActivityName",
        "learningActivityDate", "timespent", "status", "score",
    ],
    "USERS": [
        "userId", "firstname", "middlename", "lastname", "networkId", "networkName", "grouping",
        "accountCreationDate", "accountConfirmedDate", "confirmedStatus", "locale", "dayOfBirth",
        "monthOfBirth", "streetAddress", "city", "region", "postalcode", "countryCode", "gender", "library",
        "idNumber", "phone", "department",
    ],
    "NETWORKS": ["networkId", "networkName", "parentNetworkId", "createdDate", "modifiedDate"],
}  # fmt: skip


@pytest.fixture(scope="module")
def sandbox():
    app = SkillsPassApp(
        credentials={(SANDBOX_KEY, SANDBOX_TOKEN, SANDBOX_SECRET), (SANDBOX_KEY, SANDBOX_TOKEN, SECRET)},
        ready_after=READY_AFTER,
    )
    with SandboxServer([app]) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(sandbox):
    app = sandbox.app("skillspass")
    credentials = set(app.credentials)
    with clean_sandbox(sandbox):
        yield
    app.credentials = credentials


@pytest.fixture
def app(sandbox) -> SkillsPassApp:
    return sandbox.app("skillspass")


@pytest.fixture
def fast(app) -> SkillsPassApp:
    """Jobs complete as soon as their file is written (for tests about data, not progression)."""
    app.ready_after = 0.0
    return app


@pytest.fixture
def client(sandbox):
    with httpx.Client(base_url=sandbox.base_url("skillspass"), headers=AUTH, timeout=30) as c:
        yield c


def window(first: str, last: str | None = None) -> tuple[str, str]:
    """The inclusive window covering whole UTC days `first` .. `last`."""
    return f"{first}T00:00:00.000Z", f"{last or first}T23:59:59.999Z"


def request_body(export_type: str, start: str, end: str, fmt: str = "CSV", **extra) -> dict:
    return {"startDate": start, "endDate": end, "exportType": export_type, "format": fmt, **extra}


def create(client: httpx.Client, export_type: str, start: str, end: str, fmt: str = "CSV", **extra) -> str:
    response = client.post("/tp-api/exports", json=request_body(export_type, start, end, fmt, **extra))
    assert response.status_code == 201, response.text
    assert set(response.json()) == {"job"} and set(response.json()["job"]) == {"id"}
    return response.json()["job"]["id"]


def status(client: httpx.Client, job_id: str) -> dict:
    response = client.get("/tp-api/exports", params={"id": job_id})
    assert response.status_code == 200, response.text
    return response.json()


def export_data(body: dict) -> dict:
    """exportData from either documented status shape (asserting it is in exactly one place)."""
    nested, top = body["job"].get("exportData"), body.get("exportData")
    assert (nested is None) != (top is None), body
    return nested if nested is not None else top


def poll(client: httpx.Client, job_id: str, timeout: float = 60) -> tuple[dict, list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = status(client, job_id)
        seen.append(body["job"]["status"])
        if seen[-1] in ("COMPLETED", "FAILED"):
            return body, seen
        time.sleep(0.02)
    raise AssertionError(f"job not finished after {timeout}s; saw {seen[-3:]}")


def fetch(client: httpx.Client, export_type: str, start: str, end: str, fmt: str = "CSV", **extra) -> bytes:
    body, _ = poll(client, create(client, export_type, start, end, fmt, **extra))
    assert body["job"]["status"] == "COMPLETED", body
    response = httpx.get(export_data(body)["downloadUrl"])  # no Authorization: pre-signed
    assert response.status_code == 200, response.text
    return response.content


def fetch_many(client: httpx.Client, requests: list[tuple]) -> list[bytes]:
    """Create every job first, then collect: the jobs run concurrently. A request is
    (export_type, start, end[, format][, {extra body fields}])."""
    job_ids = []
    for args in requests:
        extra = args[-1] if isinstance(args[-1], dict) else {}
        job_ids.append(create(client, *(args[:-1] if extra else args), **extra))
    out = []
    for job_id in job_ids:
        body, _ = poll(client, job_id)
        out.append(httpx.get(export_data(body)["downloadUrl"]).content)
    return out


def parse_csv(body: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(body.decode("utf-8"), newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def parse_jsonl(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.decode("utf-8").splitlines()]


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> str:
    body = response.json()
    expected = {"statusCode", "error", "message"} | ({"code"} if code else set())
    assert set(body) == expected, body
    assert body["statusCode"] == status == response.status_code
    assert body["error"] == {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(
        status, body["error"]
    )
    if code:
        assert body["code"] == code
    return body["message"]


# -- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        AUTH_VALUE,
        f"BLN secret={SECRET},token={SANDBOX_TOKEN},key={SANDBOX_KEY},entity=user,version=1,type=api",
        f"Bln  type = api ,version=1,  entity=user, key={SANDBOX_KEY}, token={SANDBOX_TOKEN}, secret={SECRET}",
    ],
)
def test_bln_auth_accepts_any_case_order_and_spacing(sandbox, header):
    url = sandbox.base_url("skillspass") + "/tp-api/exports"
    response = httpx.get(url, params={"id": "bm9wZQ=="}, headers={"Authorization": header})
    assert response.status_code == 404  # authorized, then the job is unknown
    assert assert_error(response, 404) == "Export job not found"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "Missing Authorization header"),
        (AUTH_VALUE.replace(SECRET, "wrong-secret-value"), "Invalid token or secret"),
        (AUTH_VALUE.replace(SANDBOX_KEY, "other-key"), "Invalid API key"),
        (AUTH_VALUE.replace("type=api", "type=client"), "type"),
        (AUTH_VALUE.replace("version=1", "version=2"), "version"),
        (AUTH_VALUE.replace("entity=user", "entity=provider"), "entity"),
        (AUTH_VALUE.replace("bln ", "Bearer "), "scheme"),
        (AUTH_VALUE.replace(f", token={SANDBOX_TOKEN}", ""), "token"),
        (AUTH_VALUE.replace("version=1", "version"), "Malformed"),
    ],
)
def test_auth_failures_are_401_without_echoing_credentials(sandbox, header, reason):
    url = sandbox.base_url("skillspass") + "/tp-api/exports"
    headers = {"Authorization": header} if header else {}
    response = httpx.post(url, json=request_body("USERS", *window(DAY)), headers=headers)
    message = assert_error(response, 401)
    assert reason in message
    assert response.headers["www-authenticate"] == "BLN"
    for value in (SECRET, "wrong-secret-value", SANDBOX_TOKEN, SANDBOX_KEY, "other-key"):
        assert value not in response.text


def test_credentials_are_a_mutable_set(sandbox, app):
    url = sandbox.base_url("skillspass") + "/tp-api/exports"
    header = {"Authorization": AUTH_VALUE.replace(SANDBOX_KEY, "k2").replace(SECRET, "s2")}
    assert httpx.get(url, params={"id": "x"}, headers=header).status_code == 401
    app.credentials.add(("k2", SANDBOX_TOKEN, "s2"))
    assert httpx.get(url, params={"id": "x"}, headers=header).status_code == 404


# -- validation -----------------------------------------------------------------------------------

START, END = window(DAY)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"endDate": END, "exportType": "USERS", "format": "CSV"}, "startDate"),
        ({"startDate": START, "exportType": "USERS", "format": "CSV"}, "endDate"),
        ({"startDate": START, "endDate": END, "format": "CSV"}, "exportType"),
        ({"startDate": START, "endDate": END, "exportType": "USERS"}, "format"),
        (request_body("USERS", "2026-11-03", END), "startDate"),
        (request_body("USERS", "2026-11-03T00:00:00+00:00", END), "startDate"),
        (request_body("USERS", "2026-11-03 00:00:00Z", END), "startDate"),
        (request_body("USERS", START, "2026-11-03T10:00:00.1234Z"), "endDate"),
        (request_body("USERS", START, "2026-02-30T00:00:00Z"), "endDate"),
        (request_body("USERS", START, 1762128000), "endDate"),
        (request_body("USERS", END, START), "endDate"),
        (request_body("USERZ", START, END), "exportType"),
        (request_body("users", START, END), "exportType"),
        (request_body("ENROLLMENTS", START, END), "exportType"),
        (request_body("USERS", START, END, "XLSX"), "format"),
        (request_body("USERS", START, END, "csv"), "format"),
        (
            request_body("LEARNING_ACTIVITY_INTERACTIONS", START, END, "CSV", learningActivityId=40001),
            "format",
        ),
        (request_body("LEARNING_ACTIVITY_INTERACTIONS", START, END, "JSONL"), "learningActivityId"),
        (
            request_body("LEARNING_ACTIVITY_INTERACTIONS", START, END, "JSONL", learningActivityId="40001"),
            "learningActivityId",
        ),
        (
            request_body("LEARNING_ACTIVITY_INTERACTIONS", START, END, "JSONL", learningActivityId=True),
            "learningActivityId",
        ),
        ([1, 2], "object"),
    ],
)
def test_validation_errors_are_400_with_the_validation_shape(client, app, body, field):
    response = client.post("/tp-api/exports", json=body)
    assert response.status_code == 400
    assert field in assert_error(response, 400, "VALIDATION_ERROR")
    assert len(app.jobs) == 0


def test_bad_json_and_status_without_id_are_validation_errors(client):
    response = client.post(
        "/tp-api/exports", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    missing = client.get("/tp-api/exports")
    assert "id" in assert_error(missing, 400, "VALIDATION_ERROR")
    unknown = client.get("/tp-api/exports", params={"id": "WyJub3BlIl0="})
    assert assert_error(unknown, 404) == "Export job not found"
    assert assert_error(client.get("/tp-api/nothing"), 404)
    assert assert_error(client.delete("/tp-api/exports"), 405)


def test_unknown_learning_activity_is_the_other_400_shape(client, app):
    response = client.post(
        "/tp-api/exports",
        json=request_body("LEARNING_ACTIVITY_INTERACTIONS", START, END, "JSONL", learningActivityId=123),
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {"key": "LEARNING_ACTIVITY_NOT_FOUND", "message": "Learning activity 123 was not found"}
    }
    beyond = request_body("LEARNING_ACTIVITY_INTERACTIONS", START, END, "JSONL", learningActivityId=40007)
    assert client.post("/tp-api/exports", json=beyond).json()["error"]["key"] == "LEARNING_ACTIVITY_NOT_FOUND"
    ok = request_body("LEARNING_ACTIVITY_INTERACTIONS", START, END, "JSONL", learningActivityId=40006)
    assert client.post("/tp-api/exports", json=ok).status_code == 201
    assert len(app.jobs) == 1


# -- the job flow ---------------------------------------------------------------------------------


def test_create_pending_completed_nested_shape_and_download(client, app):
    app.status_shape = "nested"
    app.hold_jobs()  # PENDING until released, however slow the machine
    job_id = create(client, "LEARNING_ACTIVITIES", *window(DAY))
    first = status(client, job_id)
    assert first == {
        "job": {
            "id": job_id,
            "status": "PENDING",
            "exportData": {"downloadUrl": None, "downloadExpiresAt": None},
        },
        "errors": [],
    }
    app.release_jobs()
    body, seen = poll(client, job_id)
    assert seen[-1] == "COMPLETED" and set(seen) <= {"PENDING", "COMPLETED"}
    assert set(body) == {"job", "errors"} and body["errors"] == []
    assert set(body["job"]) == {"id", "status", "exportData"}
    data = body["job"]["exportData"]
    url = urlsplit(data["downloadUrl"])
    assert re.fullmatch(r"/skillspass-files/learning_activities-[0-9a-f]{8}\.csv", url.path)
    query = parse_qs(url.query)
    assert set(query) == {"Expires", "Signature"}
    expires = int(query["Expires"][0])
    assert 880 < expires - time.time() <= 900
    assert ISO_MS.match(data["downloadExpiresAt"])
    assert data["downloadExpiresAt"] == datetime.fromtimestamp(expires, UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )
    download = httpx.get(data["downloadUrl"])
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    file_name = url.path.rsplit("/", 1)[1]
    assert download.headers["content-disposition"] == f'attachment; filename="{file_name}"'
    assert int(download.headers["content-length"]) == len(download.content)
    assert parse_csv(download.content)[0] == HEADERS["LEARNING_ACTIVITIES"]


def test_top_level_shape(client, fast):
    fast.status_shape = "top"
    job_id = create(client, "USERS", *window(DAY), "JSONL")
    body, _ = poll(client, job_id)
    assert set(body) == {"job", "exportData", "errors"}
    assert body["job"] == {"id": job_id, "status": "COMPLETED"}
    assert set(body["exportData"]) == {"downloadUrl", "downloadExpiresAt"}
    assert urlsplit(body["exportData"]["downloadUrl"]).path.endswith(".jsonl")
    download = httpx.get(body["exportData"]["downloadUrl"])
    assert download.headers["content-type"] == "application/x-ndjson"
    assert download.headers["content-disposition"].endswith('.jsonl"')


def test_mixed_shape_answers_both_and_is_stable_per_job(client, app):
    assert app.status_shape == "mixed"  # the default
    shapes: dict[str, str] = {}
    for _ in range(40):
        job_id = create(client, "NETWORKS", *window(DAY))
        shapes[job_id] = "nested" if "exportData" in status(client, job_id)["job"] else "top"
        if set(shapes.values()) == {"nested", "top"}:
            break
    assert set(shapes.values()) == {"nested", "top"}
    for job_id, shape in shapes.items():
        assert ("exportData" in status(client, job_id)["job"]) == (shape == "nested")


def test_every_completed_poll_issues_a_fresh_url(client, fast):
    job_id = create(client, "NETWORKS", *window(DAY))
    body, _ = poll(client, job_id)
    first = export_data(body)
    fast.url_ttl = 5000.0
    second = export_data(status(client, job_id))
    assert second["downloadUrl"] != first["downloadUrl"]
    assert int(parse_qs(urlsplit(second["downloadUrl"]).query)["Expires"][0]) > time.time() + 4900
    assert second["downloadExpiresAt"] > first["downloadExpiresAt"]
    assert httpx.get(first["downloadUrl"]).content == httpx.get(second["downloadUrl"]).content
    fast.url_ttl = -5.0  # a tenant handing out already-dead URLs
    dead = export_data(status(client, job_id))
    assert dead["downloadExpiresAt"] < datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert "<Code>AccessDenied</Code>" in httpx.get(dead["downloadUrl"]).text


def test_expire_url_fault_then_repoll_gives_a_working_url(client, sandbox, fast):
    job_id = create(client, "USERS", *window(DAY))
    poll(client, job_id)
    sandbox.faults.add("expire_url", vendor="skillspass")
    expired = export_data(status(client, job_id))
    expires = int(parse_qs(urlsplit(expired["downloadUrl"]).query)["Expires"][0])
    assert 55 <= time.time() - expires <= 62
    assert expired["downloadExpiresAt"] == datetime.fromtimestamp(expires, UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )
    response = httpx.get(expired["downloadUrl"])
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/xml"
    assert response.text == (
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
        "<Message>Request has expired</Message></Error>"
    )
    fresh = export_data(status(client, job_id))
    assert httpx.get(fresh["downloadUrl"]).status_code == 200


def test_tampered_or_missing_signature_is_403_and_unknown_file_404(client, sandbox, fast):
    body, _ = poll(client, create(client, "NETWORKS", *window(DAY)))
    url = export_data(body)["downloadUrl"]
    longer = re.sub(r"Expires=(\d+)", lambda m: f"Expires={int(m.group(1)) + 999}", url)
    for bad in (re.sub(r"Signature=\w{4}", "Signature=0000", url), url.split("?")[0], longer):
        response = httpx.get(bad)
        assert response.status_code == 403
        assert "<Code>SignatureDoesNotMatch</Code>" in response.text
    unknown = fast.signer.url(sandbox.url, "/skillspass-files/users-00000000.csv", 60)
    missing = httpx.get(unknown)
    assert missing.status_code == 404 and "<Code>NoSuchKey</Code>" in missing.text


def test_job_fails_with_default_and_custom_message(client, sandbox, app):
    app.status_shape = "top"
    sandbox.faults.add("job_fails", vendor="skillspass")
    sandbox.faults.add("job_fails", vendor="skillspass", message="Export failed: quota exceeded")
    bodies = [poll(client, create(client, "USERS", *window(DAY)))[0] for _ in range(2)]
    messages = []
    for body in bodies:
        assert body["job"]["status"] == "FAILED"
        assert body["exportData"] == {"downloadUrl": None, "downloadExpiresAt": None}
        assert [set(e) for e in body["errors"]] == [{"key", "message"}]
        assert body["errors"][0]["key"] == "EXPORT_FAILED"
        messages.append(body["errors"][0]["message"])
    assert messages == [
        "Export failed: report database timeout (sandbox-injected)",
        "Export failed: quota exceeded",
    ]
    assert poll(client, create(client, "USERS", *window(DAY)))[0]["job"]["status"] == "COMPLETED"


def test_job_never_finishes(client, sandbox):
    sandbox.faults.add("job_never_finishes", vendor="skillspass")
    job_id = create(client, "USERS", *window(DAY))
    time.sleep(READY_AFTER * 2)
    body = status(client, job_id)
    assert body["job"]["status"] == "PENDING" and body["errors"] == []
    assert export_data(body) == {"downloadUrl": None, "downloadExpiresAt": None}


def test_dates_are_stored_as_sent_and_the_job_id_layout(client, app):
    start, end = "2026-11-03T00:00:00Z", "2026-11-04T06:30:00.5Z"
    job_id = create(client, "LEARNING_ACTIVITIES", start, end, "JSONL")
    assert app.job_request(job_id) == {
        "startDate": start,
        "endDate": end,
        "exportType": "LEARNING_ACTIVITIES",
        "format": "JSONL",
        "learningActivityId": None,
    }
    assert len(job_id) % 4 == 0 and re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", job_id)
    assert json.loads(base64.b64decode(job_id)) == decode_job_id(job_id)
    key, job_uuid = decode_job_id(job_id)
    assert key == (
        "data-export|tenantKey:sandbox|type:learning_activities|format:jsonl"
        "|start:2026-11-03T00:00:00Z|end:2026-11-04T06:30:00.5Z"
    )
    assert uuid.UUID(job_uuid).version == 4
    again = create(client, "LEARNING_ACTIVITIES", start, end, "JSONL")
    assert again != job_id and decode_job_id(again)[0] == key  # no de-duplication
    interactions = create(
        client, "LEARNING_ACTIVITY_INTERACTIONS", start, end, "JSONL", learningActivityId=40002
    )
    assert app.job_request(interactions)["learningActivityId"] == 40002
    assert "type:learning_activity_interactions|format:jsonl" in decode_job_id(interactions)[0]
    assert app.job_request("nope") is None


# -- data -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("export_type", sorted(HEADERS))
def test_csv_headers_and_rows_per_day(client, fast, export_type):
    body = fetch(client, export_type, *window(DAY))
    header, rows = parse_csv(body)
    assert header == HEADERS[export_type]
    assert body.startswith((",".join(HEADERS[export_type]) + "\r\n").encode())
    assert len(rows) == 20
    assert all(None not in row and len(row) == len(header) for row in rows)
    dates = [v for row in rows for k, v in row.items() if k.endswith("Date") and v]
    assert dates and all(ISO_MS.match(v) for v in dates)


@pytest.mark.parametrize("export_type", sorted(JSON_KEYS))
def test_jsonl_keys(client, fast, export_type):
    body = fetch(client, export_type, *window(DAY), "JSONL")
    assert body.endswith(b"}\n") and body.count(b"\n") == 20 and b"\r" not in body
    records = parse_jsonl(body)
    assert len(records) == 20
    assert all(list(record) == JSON_KEYS[export_type] for record in records)
    if export_type == "LEARNING_ACTIVITIES":
        assert all(
            isinstance(r["learningActivityId"], int) and isinstance(r["timespent"], int) for r in records
        )
        assert all(r["score"] is None or 0 <= r["score"] <= 100 for r in records)
    if export_type == "USERS":
        assert any(r["middlename"] is None for r in records)
        assert all(re.fullmatch(r"U\d{6}", r["userId"]) for r in records)


def test_csv_and_jsonl_carry_the_same_records(client, fast):
    csv_body, jsonl_body = fetch_many(
        client, [("LEARNING_ACTIVITIES", *window(DAY)), ("LEARNING_ACTIVITIES", *window(DAY), "JSONL")]
    )
    _, rows = parse_csv(csv_body)
    records = parse_jsonl(jsonl_body)
    assert [r["User ID"] for r in rows] == [r["userId"] for r in records]
    assert [int(r["Learning Activity ID"]) for r in rows] == [r["learningActivityId"] for r in records]
    assert [r["Score"] or None for r in rows] == [
        None if r["score"] is None else str(r["score"]) for r in records
    ]


def test_data_is_realistic_and_messy(client, fast):
    fast.rows_per_day = 60
    users, activities, enrollments = fetch_many(
        client,
        [
            ("USERS", *window(DAY)),
            ("LEARNING_ACTIVITIES", *window(DAY)),
            ("ELEARNING_ENROLLMENTS", *window(DAY)),
        ],
    )
    text = users.decode("utf-8")
    assert re.search(r"[^\x00-\x7f]", text), "non-ASCII names expected"
    assert ',"' in text, "quoted fields expected"
    _, user_rows = parse_csv(users)
    assert {r["Middlename"] == "" for r in user_rows} == {True, False}
    assert {r["Confirmed Status"] for r in user_rows} <= {"CONFIRMED", "UNCONFIRMED"}
    assert all(r["Account Creation Date"] < DAY for r in user_rows)
    _, activity_rows = parse_csv(activities)
    assert {r["Status"] for r in activity_rows} == {"COMPLETED", "IN_PROGRESS", "NOT_STARTED"}
    scores = [int(r["Score"]) for r in activity_rows if r["Score"]]
    assert scores and all(0 <= s <= 100 for s in scores) and "" in {r["Score"] for r in activity_rows}
    assert all(r["Timespent"] == "0" for r in activity_rows if r["Status"] == "NOT_STARTED")
    _, enrollment_rows = parse_csv(enrollments)
    assert {r["Program Completion Date"] == "" for r in enrollment_rows} == {True, False}
    for row in enrollment_rows:  # the change is the registration or the completion
        assert max(row["Registration Date"], row["Program Completion Date"]).startswith(DAY)
        assert (
            row["Program Completion Date"] == "" or row["Registration Date"] <= row["Program Completion Date"]
        )


def test_daily_windows_partition_the_feed(client, fast):
    days = ["2026-11-02", "2026-11-03", "2026-11-04"]
    *daily, three_days, again = fetch_many(
        client,
        [("LEARNING_ACTIVITIES", *window(d)) for d in days]
        + [("LEARNING_ACTIVITIES", *window(days[0], days[-1])), ("LEARNING_ACTIVITIES", *window(days[1]))],
    )
    assert again == daily[1]  # the same request, the same bytes
    header = daily[0].split(b"\r\n", 1)[0] + b"\r\n"
    assert three_days == header + b"".join(d[len(header) :] for d in daily)
    for day, body in zip(days, daily, strict=True):
        _, rows = parse_csv(body)
        stamps = [r["Learning Activity Date"] for r in rows]
        assert len(rows) == 20 and all(s.startswith(day) for s in stamps)
        assert stamps == sorted(stamps) and f"{day}T00:00:00.000Z" in stamps


def test_window_bounds_are_inclusive_to_the_millisecond(client, fast):
    midnight = f"{DAY}T00:00:00.000Z"
    before, after, only_midnight, sub_day = fetch_many(
        client,
        [
            ("NETWORKS", "2026-11-02T00:00:00.000Z", midnight),
            ("NETWORKS", midnight, "2026-11-04T00:00:00.000Z"),
            ("NETWORKS", midnight, midnight),
            ("NETWORKS", "2026-11-03T06:00:00Z", "2026-11-03T17:59:59.999Z"),
        ],
    )
    _, before_rows = parse_csv(before)
    _, after_rows = parse_csv(after)
    _, boundary = parse_csv(only_midnight)
    assert [r["Modified Date"] for r in boundary] == [midnight]
    assert before_rows[-1] == after_rows[0] == boundary[0]  # shared by both adjacent windows
    assert len(before_rows) == len(after_rows) == 21
    _, part = parse_csv(sub_day)
    assert part and all(
        "2026-11-03T06:00:00.000Z" <= r["Modified Date"] <= "2026-11-03T17:59:59.999Z" for r in part
    )
    assert part == [r for r in after_rows if r in part] and len(part) < 20


def test_users_change_feed_partitions_and_repeats_users(client, fast):
    fast.rows_per_day = 120
    first, second, both = fetch_many(
        client,
        [
            ("USERS", *window("2026-11-03")),
            ("USERS", *window("2026-11-04")),
            ("USERS", *window("2026-11-03", "2026-11-04")),
        ],
    )
    _, rows_1 = parse_csv(first)
    _, rows_2 = parse_csv(second)
    _, rows_both = parse_csv(both)
    assert rows_both == rows_1 + rows_2
    ids = [r["User ID"] for r in rows_both]
    assert len(set(ids)) < len(ids)  # change records: a user can change more than once
    assert len({r["User ID"] for r in rows_both}) > 100  # a population of a few hundred


def test_years_long_window_is_fast_and_complete(client, fast):
    started = time.monotonic()
    records = parse_jsonl(fetch(client, "LEARNING_ACTIVITIES", *window("2024-01-01", "2026-12-31"), "JSONL"))
    assert time.monotonic() - started < 8
    assert len(records) == 20 * (366 + 365 + 365)
    stamps = [r["learningActivityDate"] for r in records]
    assert stamps[0] == "2024-01-01T00:00:00.000Z" and stamps[-1].startswith("2026-12-31")
    assert stamps == sorted(stamps)


def test_activity_population_knob(client, fast):
    _, rows = parse_csv(fetch(client, "LEARNING_ACTIVITIES", *window(DAY)))
    assert {int(r["Learning Activity ID"]) for r in rows} == set(range(40001, 40007))
    request = request_body("LEARNING_ACTIVITY_INTERACTIONS", *window(DAY), "JSONL", learningActivityId=40008)
    assert client.post("/tp-api/exports", json=request).status_code == 400
    fast.activities = 8
    for day in ("2026-11-03", "2019-05-20"):
        _, rows = parse_csv(fetch(client, "LEARNING_ACTIVITIES", *window(day)))
        assert {int(r["Learning Activity ID"]) for r in rows} == set(range(40001, 40009))
    assert client.post("/tp-api/exports", json=request).status_code == 201


def test_interactions_are_jsonl_for_one_activity(client, fast):
    one, other = fetch_many(
        client,
        [
            (
                "LEARNING_ACTIVITY_INTERACTIONS",
                *window("2026-11-03", "2026-11-04"),
                "JSONL",
                {"learningActivityId": 40003},
            ),
            (
                "LEARNING_ACTIVITY_INTERACTIONS",
                *window("2026-11-03", "2026-11-04"),
                "JSONL",
                {"learningActivityId": 40004},
            ),
        ],
    )
    records = parse_jsonl(one)
    assert len(records) == 2 * 20
    assert {r["learningActivityId"] for r in records} == {40003}
    assert {r["learningActivityId"] for r in parse_jsonl(other)} == {40004}
    assert one != other
    keys = ["interactionId", "learningActivityId", "userId", "interactionType", "timestamp", "response", "result",
            "durationSeconds"]  # fmt: skip
    for record in records:
        assert list(record) == keys
        assert uuid.UUID(record["interactionId"])
        assert record["interactionType"] in {"choice", "fill-in", "true-false"}
        assert "2026-11-03T00:00:00.000Z" <= record["timestamp"] <= "2026-11-04T23:59:59.999Z"
        assert set(record["result"]) == {"success", "score"} and 0 <= record["result"]["score"] <= 1
        assert isinstance(record["durationSeconds"], int)
    assert len({r["interactionId"] for r in records}) == len(records)


def test_legacy_types(client, fast):
    assert client.post("/tp-api/exports", json=request_body("ENROLLMENTS", *window(DAY))).status_code == 400
    fast.legacy_types = True
    for export_type, extra in (
        ("ELEARNING_ENROLLMENTS", {}),
        ("LEARNING_ACTIVITY_INTERACTIONS", {"learningActivityId": 40001}),
    ):
        response = client.post(
            "/tp-api/exports", json=request_body(export_type, *window(DAY), "JSONL", **extra)
        )
        message = assert_error(response, 400, "VALIDATION_ERROR")
        assert "ENROLLMENTS, LEARNING_ACTIVITIES, NETWORKS, USERS" in message
    legacy = fetch(client, "ENROLLMENTS", *window(DAY))
    assert parse_csv(legacy)[0] == HEADERS["ELEARNING_ENROLLMENTS"]
    fast.legacy_types = False
    assert fetch(client, "ELEARNING_ENROLLMENTS", *window(DAY)) == legacy  # same feed, renamed


def test_empty_windows_are_header_only_csv_and_empty_jsonl(client, fast):
    fast.rows_per_day = 0
    csv_body, jsonl_body = fetch_many(client, [("USERS", *window(DAY)), ("USERS", *window(DAY), "JSONL")])
    assert csv_body == (",".join(USERS_HEADER) + "\r\n").encode()
    assert jsonl_body == b""
    fast.rows_per_day = 20  # before the tenant's history: nothing either
    assert fetch(client, "NETWORKS", *window("2005-01-01", "2005-12-31")) == (
        b"Network ID,Network Name,Parent Network ID,Created Date,Modified Date\r\n"
    )


def test_same_knobs_same_bytes_on_a_fresh_server_and_seed_changes_them(client, fast):
    first = fetch(client, "USERS", *window(DAY), "JSONL")
    fresh_app = SkillsPassApp(credentials={(SANDBOX_KEY, SANDBOX_TOKEN, SECRET)}, ready_after=0.0)
    with SandboxServer([fresh_app]) as other:
        other_client = httpx.Client(base_url=other.base_url("skillspass"), headers=AUTH, timeout=30)
        assert fetch(other_client, "USERS", *window(DAY), "JSONL") == first
        fresh_app.seed = 7
        assert fetch(other_client, "USERS", *window(DAY), "JSONL") != first
        other_client.close()


# -- faults ---------------------------------------------------------------------------------------


def test_malformed_csv_content_fault_is_served_once(client, sandbox, fast):
    body, _ = poll(client, create(client, "USERS", *window(DAY)))
    url = export_data(body)["downloadUrl"]
    clean = httpx.get(url).content
    sandbox.faults.add("malformed_csv", vendor="skillspass", match="/skillspass-files/")
    broken = httpx.get(url)
    assert broken.status_code == 200 and broken.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(broken.content.decode("utf-8"), newline="")))
    assert {len(row) for row in rows[1:]} != {len(rows[0])}
    assert b"broken" in broken.content and b"broken" not in clean
    assert httpx.get(url).content == clean


def test_html_error_fault_and_jsonl_is_untouched_by_csv_faults(client, sandbox, fast):
    body, _ = poll(client, create(client, "NETWORKS", *window(DAY), "JSONL"))
    jsonl_url = export_data(body)["downloadUrl"]
    clean = httpx.get(jsonl_url).content
    sandbox.faults.add("html_error", vendor="skillspass")
    assert httpx.get(jsonl_url).content == clean  # content faults rewrite CSV payloads only
    assert len(sandbox.faults.active()) == 1
    body, _ = poll(client, create(client, "NETWORKS", *window(DAY)))
    response = httpx.get(export_data(body)["downloadUrl"])
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == "<html><body>Service unavailable</body></html>"


def test_truncated_download_resumes_with_range(client, sandbox, fast):
    fast.rows_per_day = 200
    body, _ = poll(client, create(client, "USERS", *window(DAY)))
    url = export_data(body)["downloadUrl"]
    full = httpx.get(url).content
    sandbox.faults.add("truncate_body", match="/skillspass-files/")
    received = b""
    with pytest.raises(httpx.TransportError), httpx.stream("GET", url) as response:
        assert int(response.headers["content-length"]) == len(full)
        for chunk in response.iter_raw():
            received += chunk
    assert 0 < len(received) < len(full)
    rest = httpx.get(url, headers={"Range": f"bytes={len(received)}-"})
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes {len(received)}-{len(full) - 1}/{len(full)}"
    assert received + rest.content == full


def test_injected_errors_use_the_vendor_shapes(client, sandbox, fast):
    sandbox.faults.add("rate_limit", vendor="skillspass", match="/tp-api/exports", retry_after=2)
    limited = client.post("/tp-api/exports", json=request_body("USERS", *window(DAY)))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.json() == {
        "statusCode": 429,
        "error": "Too Many Requests",
        "message": "The API rate limit was reached.",
    }
    body, _ = poll(client, create(client, "USERS", *window(DAY)))
    sandbox.faults.add("server_error", vendor="skillspass", match="/skillspass-files/")
    failed = httpx.get(export_data(body)["downloadUrl"])
    assert failed.status_code == 500 and "<Code>InternalError</Code>" in failed.text


# -- plumbing -------------------------------------------------------------------------------------


def test_knobs_over_http_and_reset(sandbox, client, app):
    control = f"{sandbox.url}/_sandbox/knobs/skillspass"
    response = httpx.post(control, json={"status_shape": "top", "legacy_types": "true", "rows_per_day": 3})
    assert response.status_code == 200
    knobs = response.json()["skillspass"]
    assert (knobs["status_shape"], knobs["legacy_types"], knobs["rows_per_day"]) == ("top", True, 3)
    assert httpx.post(control, json={"status_shape": "sideways"}).status_code == 400
    assert set(SkillsPassApp.KNOBS) == {
        "latency", "rows_per_day", "activities", "ready_after", "url_ttl", "status_shape", "legacy_types", "seed",
    }  # fmt: skip
    assert {"job_fails", "job_never_finishes", "expire_url", "malformed_csv"} <= SkillsPassApp.FAULT_KINDS
    job_id = create(client, "USERS", *window(DAY))
    assert httpx.post(f"{sandbox.url}/_sandbox/reset").json() == {"reset": True}
    assert client.get("/tp-api/exports", params={"id": job_id}).status_code == 404
    line = app.describe()
    assert sandbox.base_url("skillspass") in line and "bln type=api" in line and SANDBOX_KEY in line
