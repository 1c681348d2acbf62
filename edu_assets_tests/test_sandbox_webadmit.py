"""The WebAdMIT emulator over real HTTP: auth, identities and templates, export-file runs (progression,
de-duplication, outcomes, status spellings), pre-signed downloads, Latin-1 files, the hourly request
budget, callbacks and the test actions."""

from __future__ import annotations

import csv
import io
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from edu_assets.sandbox import SandboxServer
from edu_assets.sandbox.webadmit import (
    JOB_FAILED_MESSAGE,
    SANDBOX_API_KEY,
    SUCCESS_WITH_ERRORS_MESSAGE,
    WebAdMitApp,
)
from edu_assets_tests.helpers import age_job, clean_sandbox

SECRET = "webadmit-SECRET-0123456789abcdef"
KEY = {"x-api-key": SECRET}
READY_AFTER = 0.15
TERMINAL = {"Available", "Success With Errors", "Empty List", "Failed"}
TERMINAL |= {s.lower().replace(" ", "_") for s in TERMINAL}
DEMOGRAPHICS = [
    "CAS ID", "First Name", "Last Name", "Email", "Date of Birth", "Home City",
    "Program", "Application Status", "Submitted Date", "GPA",
]  # fmt: skip


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    app = WebAdMitApp(api_keys={SANDBOX_API_KEY, SECRET}, rows=40, ready_after=READY_AFTER)
    with SandboxServer([app]) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(sandbox):
    with clean_sandbox(sandbox):
        yield


@pytest.fixture
def app(sandbox: SandboxServer) -> WebAdMitApp:
    webadmit = sandbox.app("webadmit")
    assert isinstance(webadmit, WebAdMitApp)
    return webadmit


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.base_url("webadmit") + "/api/v1", headers=KEY, timeout=30) as c:
        yield c


def start(client: httpx.Client, uid: int = 1001, eid: int = 5001, **kwargs: Any) -> dict[str, Any]:
    response = client.post(f"/user_identities/{uid}/exports/{eid}/export_files", **kwargs)
    assert response.status_code == 201, response.text
    return response.json()["export_files"]


def poll(client: httpx.Client, eid: int, fid: int, timeout: float = 60) -> tuple[dict[str, Any], list[str]]:
    """Poll one export file until a terminal status; returns the last body and every status seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/exports/{eid}/export_files/{fid}")
        assert response.status_code == 200, response.text
        body = response.json()["export_files"]
        seen.append(body["status"])
        if body["status"] in TERMINAL:
            return body, seen
        time.sleep(0.02)
    raise AssertionError(f"export file {fid} not finished after {timeout}s; saw {seen[-3:]}")


def status_of(client: httpx.Client, fid: int, eid: int = 5001) -> str:
    return client.get(f"/exports/{eid}/export_files/{fid}").json()["export_files"]["status"]


def run(client: httpx.Client, uid: int = 1001, eid: int = 5001) -> dict[str, Any]:
    started = start(client, uid, eid)
    body, _ = poll(client, eid, started["id"])
    return body


def wait_for(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def download(body: dict[str, Any]) -> httpx.Response:
    return httpx.get(body["download_url"], timeout=30)  # no x-api-key: the URL is pre-signed


def read_csv(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(data.decode("iso-8859-1"), newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


# -- auth -----------------------------------------------------------------------------------------


def test_missing_or_unknown_key_is_401_with_empty_body(sandbox, app):
    url = sandbox.base_url("webadmit") + "/api/v1/user_identities"
    for headers in ({}, {"x-api-key": "nope"}, {"Authorization": f"Bearer {SECRET}"}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401
        assert response.content == b""
        assert "x-ratelimit-limit" not in response.headers
    assert httpx.get(url, headers={"x-api-key": SANDBOX_API_KEY}).status_code == 200
    app.api_keys.discard(SANDBOX_API_KEY)  # keys are a mutable set (revocation)
    try:
        assert httpx.get(url, headers={"x-api-key": SANDBOX_API_KEY}).status_code == 401
    finally:
        app.api_keys.add(SANDBOX_API_KEY)


# -- identities and templates -----------------------------------------------------------------


def test_user_identities(client):
    assert client.get("/user_identities").json() == {
        "href": "/api/v1/user_identities",
        "user_identities": [
            {
                "id": 1001,
                "type": "Admissions User",
                "association": "SOPHAS",
                "institution": "Demo University",
                "organization": "Demo University School of Public Health",
                "cycle": "2025 - 2026",
            },
            {
                "id": 1002,
                "type": "Institution User",
                "association": None,
                "institution": "Demo University",
                "organization": None,
                "cycle": "2025 - 2026",
            },
        ],
    }


def test_export_templates_per_identity_and_across(client):
    csv_mime = "text/csv;charset=iso-8859-1"
    first = client.get("/user_identities/1001/exports").json()
    assert first["href"] == "/api/v1/user_identities/1001/exports"
    assert first["exports"] == [
        {"id": 5001, "name": "Applicants - Demographics", "list_type": "all",
         "format": "Comma-Separated Values", "mime_type": csv_mime},
        {"id": 5002, "name": "Program Decisions", "list_type": "search",
         "format": "Comma-Separated Values", "mime_type": csv_mime},
        {"id": 5003, "name": "Applicant Bundle", "list_type": "all",
         "format": "Comma-Separated Values in Multiple Files", "mime_type": "application/zip"},
        {"id": 5004, "name": "Board Report", "list_type": None,
         "format": "Microsoft Excel", "mime_type": "application/vnd.ms-excel"},
    ]  # fmt: skip
    second = client.get("/user_identities/1002/exports").json()["exports"]
    assert [(e["id"], e["list_type"], e["format"], e["mime_type"]) for e in second] == [
        (5101, "all", "Comma-Separated Values", csv_mime),
        (5102, "clipboard", "Fixed Width Report", "text/plain"),
    ]
    everything = client.get("/exports").json()
    assert everything["href"] == "/api/v1/exports"
    assert [e["id"] for e in everything["exports"]] == [5001, 5002, 5003, 5004, 5101, 5102]
    assert all(set(e) == {"id", "name", "list_type", "format", "mime_type"} for e in everything["exports"])


def test_not_found_messages(client):
    def message(response: httpx.Response) -> str:
        assert response.status_code == 404
        return response.json()["message"]

    assert message(client.get("/user_identities/999/exports")) == "User identity '999' not found."
    assert message(client.get("/user_identities/999/export_files")) == "User identity '999' not found."
    run_url = "/user_identities/{}/exports/{}/export_files"
    assert message(client.post(run_url.format(999, 5001))) == "User identity '999' not found."
    assert message(client.post(run_url.format(1001, 777))) == "Export '777' not found."
    assert message(client.post(run_url.format(1001, 5101))) == "Export '5101' not found."  # not its owner
    assert message(client.get("/exports/5001/export_files/123")) == "Export file '123' not found."
    assert message(client.get("/shoe_sizes")) == "Not Found"
    fid = start(client)["id"]
    assert message(client.get(f"/exports/5002/export_files/{fid}")) == f"Export file '{fid}' not found."


# -- a run, start to download -------------------------------------------------------------------


def test_run_progresses_to_available_and_downloads(client, app):
    app.ready_after = 3600.0  # Initializing / Queued / In Progress each last 20 min: stepped by age, not a clock
    started = start(client)
    fid = started["id"]
    assert fid >= 74780
    assert started == {
        "id": fid,
        "href": f"/api/v1/exports/5001/export_files/{fid}",
        "export_id": 5001,
        "status": "Initializing",
    }
    seen = [status_of(client, fid)]
    for _ in range(2):
        age_job(app, str(fid), 1500)
        seen.append(status_of(client, fid))
    age_job(app, str(fid), 1200)
    body, rest = poll(client, 5001, fid)
    assert seen == ["Initializing", "Queued", "In Progress"]
    assert set(rest) <= {"In Progress", "Available"} and rest[-1] == "Available"  # In Progress while its file is written
    assert "errors" not in body

    url = urlsplit(body["download_url"])
    assert f"{url.scheme}://{url.netloc}" == app.server_url
    assert url.path == f"/webadmit-files/{fid}/Applicants---Demographics.csv"
    query = parse_qs(url.query)
    assert list(query) == ["Expires", "Signature", "response-content-disposition", "response-content-type"]
    assert query["response-content-disposition"] == ["attachment; filename=Applicants---Demographics.csv"]
    assert query["response-content-type"] == ["text/csv;charset=iso-8859-1"]
    assert (
        "response-content-disposition=attachment%3B%20filename%3DApplicants---Demographics.csv" in url.query
    )
    assert time.time() + 20 <= int(query["Expires"][0]) <= time.time() + 26  # lives under 30 s

    response = download(body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv;charset=iso-8859-1"
    assert response.headers["content-disposition"] == 'attachment; filename="Applicants---Demographics.csv"'
    header, rows = read_csv(response.content)
    assert header == DEMOGRAPHICS
    assert len(rows) == 40
    assert len({row["CAS ID"] for row in rows}) == 40


def test_batch_listing_never_has_download_urls(client):
    first = run(client, 1001, 5001)
    second = start(client, 1001, 5002)
    other = start(client, 1002, 5101)
    listing = client.get("/user_identities/1001/export_files").json()
    assert listing["href"] == "/api/v1/user_identities/1001/export_files"
    assert [item["id"] for item in listing["export_files"]] == [second["id"], first["id"]]  # newest first
    assert all(set(item) == {"id", "href", "export_id", "status"} for item in listing["export_files"])
    assert listing["export_files"][1]["status"] == "Available"
    assert [i["id"] for i in client.get("/user_identities/1002/export_files").json()["export_files"]] == [
        other["id"]
    ]


def test_each_status_call_issues_a_fresh_url(client, app):
    app.url_ttl = 60.0  # the first URL must still work after the second is issued, on a slow machine too
    body = run(client)
    first = parse_qs(urlsplit(body["download_url"]).query)
    time.sleep(1.05)
    again = client.get(f"/exports/5001/export_files/{body['id']}").json()["export_files"]
    second = parse_qs(urlsplit(again["download_url"]).query)
    assert int(second["Expires"][0]) > int(first["Expires"][0])
    assert second["Signature"] != first["Signature"]
    assert download(body).status_code == 200 and download(again).status_code == 200


def test_expired_url_then_repoll_gives_a_working_one(client, app, sandbox):
    app.url_ttl = -5.0
    body = run(client)
    expired = download(body)
    assert expired.status_code == 403
    assert expired.headers["content-type"] == "application/xml"
    assert b"<Code>AccessDenied</Code><Message>Request has expired</Message>" in expired.content

    app.url_ttl = 25.0
    sandbox.faults.add("expire_url", vendor="webadmit")  # the next URL issued is already expired
    status_url = f"/exports/5001/export_files/{body['id']}"
    faulted = client.get(status_url).json()["export_files"]
    assert int(parse_qs(urlsplit(faulted["download_url"]).query)["Expires"][0]) <= time.time() - 55
    assert download(faulted).status_code == 403
    fresh = client.get(status_url).json()["export_files"]
    assert download(fresh).status_code == 200

    tampered = fresh["download_url"].replace("Signature=", "Signature=0")
    response = httpx.get(tampered)
    assert response.status_code == 403 and b"SignatureDoesNotMatch" in response.content
    unknown = app.signer.url(app.server_url, "/webadmit-files/99999/x.csv", 25)
    response = httpx.get(unknown)
    assert response.status_code == 404 and b"<Code>NoSuchKey</Code>" in response.content


# -- de-duplication ---------------------------------------------------------------------------------


def test_in_flight_runs_are_deduplicated(client, app, sandbox):
    app.ready_after = 3600.0  # runs stay in flight until the test ages them, however slow the machine
    first = start(client)
    again = start(client)
    assert again["id"] == first["id"]
    assert app.runs_started() == 1
    other = start(client, 1001, 5002)  # a different export runs in parallel
    assert other["id"] != first["id"]
    assert app.runs_started() == 2

    age_job(app, str(first["id"]), 3600)
    poll(client, 5001, first["id"])
    after = start(client)  # the first run finished: a new run, a new id
    assert after["id"] > other["id"] > first["id"]
    assert after["status"] == "Initializing"
    assert app.runs_started() == 3

    sandbox.faults.add("job_never_finishes", vendor="webadmit", match="/exports/5004/")
    hung = start(client, 1001, 5004)
    age_job(app, str(hung["id"]), 3600)  # past its time, a hung run is still In Progress
    assert status_of(client, hung["id"], 5004) == "In Progress"
    assert start(client, 1001, 5004)["id"] == hung["id"]  # still running: never a second run
    assert app.runs_started() == 4


# -- status spellings --------------------------------------------------------------------------------


def test_status_styles(client, app):
    app.status_style = "snake"
    app.ready_after = 3600.0  # "initializing" until the test ages the run, however slow the machine
    started = start(client)
    assert started["status"] == "initializing"
    age_job(app, str(started["id"]), 3600)
    body, seen = poll(client, 5001, started["id"])
    assert body["status"] == "available" and "download_url" in body
    assert set(seen) <= {"initializing", "queued", "in_progress", "available"}
    assert client.get("/user_identities/1001/export_files").json()["export_files"][0]["status"] == "available"

    app.status_style = "mixed"
    a, b = start(client, 1001, 5002), start(client, 1001, 5003)
    assert b["id"] == a["id"] + 1
    words = {a["id"] % 2: a["status"], b["id"] % 2: b["status"]}
    assert words == {0: "Initializing", 1: "initializing"}
    with pytest.raises(ValueError):
        app.set_knobs(status_style="SHOUTING")


# -- outcomes ----------------------------------------------------------------------------------------


def test_success_with_errors_has_errors_and_a_url(client, sandbox):
    sandbox.faults.add("success_with_errors", vendor="webadmit")
    body = run(client)
    assert body["status"] == "Success With Errors"
    assert body["errors"] == [SUCCESS_WITH_ERRORS_MESSAGE]
    assert download(body).status_code == 200
    sandbox.faults.add("success_with_errors", vendor="webadmit", message="1 applicant skipped: bad date")
    assert run(client, 1001, 5002)["errors"] == ["1 applicant skipped: bad date"]
    assert "errors" not in run(client)  # one use only


def test_empty_list_has_no_download_url(client, app, sandbox):
    sandbox.faults.add("empty_list", vendor="webadmit")
    body = run(client)
    assert body["status"] == "Empty List"
    assert "download_url" not in body and "errors" not in body
    forged = app.signer.url(app.server_url, f"/webadmit-files/{body['id']}/Applicants---Demographics.csv", 25)
    assert httpx.get(forged).status_code == 404  # there is no file to serve


def test_job_fails_reports_failed_with_errors(client, sandbox):
    sandbox.faults.add("job_fails", vendor="webadmit")
    body = run(client)
    assert body["status"] == "Failed"
    assert body["errors"] == [JOB_FAILED_MESSAGE]
    assert "download_url" not in body
    sandbox.faults.add("job_fails", vendor="webadmit", message="Export timed out")
    assert run(client)["errors"] == ["Export timed out"]  # a failed run is finished: a new run starts


# -- files ---------------------------------------------------------------------------------------------


def test_csv_files_are_latin1_not_utf8(client):
    for uid, eid in ((1001, 5001), (1002, 5101)):
        data = download(run(client, uid, eid)).content
        text = data.decode("iso-8859-1")
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
        assert any(name in text for name in ("José", "Zoë", "Françoise", "Núñez", "Müller"))
        assert data.endswith(b"\r\n") and data.count(b"\r\n") == data.count(b"\n")
    header, rows = read_csv(download(run(client, 1001, 5002)).content)
    assert header == ["CAS ID", "Program", "Decision", "Decision Date", "Decision By"]
    assert rows
    header, rows = read_csv(download(run(client, 1002, 5101)).content)
    assert header == [*DEMOGRAPHICS, "Department"]
    assert all(row["Department"] for row in rows)
    assert any("," in row["Program"] for row in rows) or any("," in row["Home City"] for row in rows)


def test_multi_file_csv_is_a_zip_of_three_latin1_csvs(client):
    body = run(client, 1001, 5003)
    assert urlsplit(body["download_url"]).path.endswith("/Applicant-Bundle.zip")
    response = download(body)
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist() == ["applicants.csv", "programs.csv", "test_scores.csv"]
        members = {name: read_csv(archive.read(name)) for name in archive.namelist()}
        with pytest.raises(UnicodeDecodeError):
            archive.read("applicants.csv").decode("utf-8")
    assert members["applicants.csv"][0] == ["CAS ID", "First Name", "Last Name", "Email"]
    assert members["programs.csv"][0] == ["CAS ID", "Program", "Program Start Term", "Application Status"]
    assert members["test_scores.csv"][0] == ["CAS ID", "Test", "Score", "Test Date"]
    applicants = {row["CAS ID"] for row in members["applicants.csv"][1]}
    assert len(applicants) == 40
    assert {row["CAS ID"] for row in members["programs.csv"][1]} == applicants
    assert {row["CAS ID"] for row in members["test_scores.csv"][1]} < applicants


def test_excel_and_fixed_width_files(client):
    excel = run(client, 1001, 5004)
    assert unquote(urlsplit(excel["download_url"]).path).endswith("/Board-Report.xls")
    response = download(excel)
    assert response.headers["content-type"] == "application/vnd.ms-excel"
    assert response.content.lstrip().lower().startswith(b"<html") and b"<table" in response.content

    fixed = download(run(client, 1002, 5102))
    assert fixed.headers["content-type"] == "text/plain"
    lines = fixed.content.decode("iso-8859-1").split("\r\n")
    assert lines[-1] == "" and len(lines[:-1]) == 40
    assert len({len(line) for line in lines[:-1]}) == 1  # every record the same width


def test_files_are_deterministic_and_follow_rows_and_seed(client, app):
    first = download(run(client)).content
    second = download(run(client)).content
    assert first == second
    fresh_app = WebAdMitApp(api_keys={SECRET}, rows=40, ready_after=0)  # a fresh file cache too
    with (
        SandboxServer([fresh_app]) as other,
        httpx.Client(base_url=other.base_url("webadmit") + "/api/v1", headers=KEY) as fresh,
    ):
        assert download(run(fresh)).content == first
    app.seed = 7
    reseeded = download(run(client)).content
    assert reseeded != first
    app.rows = 5
    assert len(read_csv(download(run(client)).content)[1]) == 5


# -- rate limit -----------------------------------------------------------------------------------------


def test_rate_limit_headers_429_and_window_reset(client, app, sandbox):
    app.set_knobs(rate_limit=3, rate_window=60.0)  # the window ends when the test says so (below), not by a clock
    first = client.get("/user_identities")
    assert first.headers["x-ratelimit-limit"] == "3" and first.headers["x-ratelimit-remaining"] == "2"
    missing = client.get("/user_identities/999/exports")  # 404s count too
    assert missing.status_code == 404 and missing.headers["x-ratelimit-remaining"] == "1"
    assert client.get("/exports").headers["x-ratelimit-remaining"] == "0"
    state = app.rate_state(SECRET)
    assert state["limit"] == 3 and state["remaining"] == 0 and 0 < state["window_resets_in"] <= 60.0

    refused = client.get("/exports")
    assert refused.status_code == 429
    assert refused.json() == {"message": "Rate limit exceeded. Try again later."}
    assert 0 < int(refused.headers["retry-after"]) <= 60  # whole seconds until the window resets
    assert refused.headers["x-ratelimit-limit"] == "3" and refused.headers["x-ratelimit-remaining"] == "0"
    assert client.get("/exports").status_code == 429  # a 429 does not consume budget, nor reset it

    other = httpx.get(
        sandbox.base_url("webadmit") + "/api/v1/exports", headers={"x-api-key": SANDBOX_API_KEY}
    )
    assert other.status_code == 200 and other.headers["x-ratelimit-remaining"] == "2"  # per key

    with app._lock:  # the window's time is up: set its state rather than wait for it
        app._rate[SECRET][0] -= app.rate_window
    again = client.get("/exports")
    assert again.status_code == 200 and again.headers["x-ratelimit-remaining"] == "2"
    sandbox.reset()
    assert app.rate_state(SECRET) == {"limit": 3, "remaining": 3, "window_resets_in": None}


def test_injected_faults_use_the_vendor_shapes(client, sandbox):
    sandbox.faults.add("server_error", vendor="webadmit", match="/user_identities")
    response = client.get("/user_identities")
    assert response.status_code == 500
    assert set(response.json()) == {"message"}
    assert response.headers["x-ratelimit-limit"] == "5000"
    body = run(client)
    sandbox.faults.add("rate_limit", vendor="webadmit", match="/webadmit-files/", retry_after=2)
    throttled = download(body)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "2"
    assert b"<Code>SlowDown</Code>" in throttled.content
    assert download(body).status_code == 200


# -- callbacks -------------------------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    arrived: threading.Event

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append({"path": self.path, "type": self.headers.get("Content-Type"), "body": body})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.arrived.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"received": [], "arrived": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_callback_is_posted_when_ready_without_polling(client, app, sandbox, receiver):
    url, handler = receiver
    started = start(client, params={"callback": f"{url}/hook?run=1"})
    assert handler.arrived.wait(30), "no callback arrived"
    (call,) = handler.received
    assert call["path"] == "/hook?run=1"
    assert call["type"] == "application/x-www-form-urlencoded"
    assert parse_qs(call["body"].decode()) == {
        "export_file[id]": [str(started["id"])],
        "export_file[export_id]": ["5001"],
        "export_file[status]": ["Available"],
    }
    wait_for(lambda: len(app.callbacks_sent()) == 1)  # recorded once the receiver has answered
    assert app.callbacks_sent()[0]["status"] == 200

    handler.arrived.clear()
    sandbox.faults.add("job_fails", vendor="webadmit")
    failed = start(client, json={"callback": f"{url}/json-body"})  # the curl example's form
    assert handler.arrived.wait(30), "no callback for the JSON-body form"
    last = parse_qs(handler.received[-1]["body"].decode())
    assert handler.received[-1]["path"] == "/json-body"
    assert last["export_file[id]"] == [str(failed["id"])] and last["export_file[status]"] == ["Failed"]

    bad = client.post("/user_identities/1001/exports/5002/export_files", params={"callback": "ftp://x"})
    assert bad.status_code == 422
    start(client, 1001, 5002, params={"callback": "http://127.0.0.1:9/nobody-listens"})
    wait_for(lambda: len(app.callbacks_sent()) == 3)
    assert app.callbacks_sent()[-1]["error"]  # logged, not raised; the sandbox keeps serving
    assert client.get("/user_identities").status_code == 200


# -- actions, knobs, reset -----------------------------------------------------------------------------


def test_actions_add_and_remove_identities_and_exports(client, sandbox):
    actions = f"{sandbox.url}/_sandbox/actions/webadmit"
    added = httpx.post(
        f"{actions}/add_identity",
        json={"id": 2001, "type": "Association User", "association": "PharmCAS", "cycle": "2026 - 2027"},
    )
    assert added.status_code == 200
    assert added.json()["result"]["user_identities"][-1] == {
        "id": 2001, "type": "Association User", "association": "PharmCAS",
        "institution": None, "organization": None, "cycle": "2026 - 2027",
    }  # fmt: skip
    assert [i["id"] for i in client.get("/user_identities").json()["user_identities"]] == [1001, 1002, 2001]

    created = httpx.post(
        f"{actions}/add_export",
        json={
            "identity_id": 2001,
            "id": 6001,
            "name": "Nightly Banner Export",
            "format": "Comma-Separated Values",
        },
    )
    assert created.status_code == 200
    assert client.get("/user_identities/2001/exports").json()["exports"] == [
        {"id": 6001, "name": "Nightly Banner Export", "list_type": None,
         "format": "Comma-Separated Values", "mime_type": "text/csv;charset=iso-8859-1"},
    ]  # fmt: skip
    body = run(client, 2001, 6001)
    assert urlsplit(body["download_url"]).path.endswith("/Nightly-Banner-Export.csv")
    header, rows = read_csv(download(body).content)
    assert header[:3] == ["CAS ID", "First Name", "Last Name"] and len(rows) == 40

    zipped = {
        "identity_id": 2001,
        "id": 6002,
        "name": "Bundle",
        "format": "Comma-Separated Values in Multiple Files",
    }
    assert httpx.post(f"{actions}/add_export", json=zipped).status_code == 200
    assert client.get("/exports").json()["exports"][-1]["mime_type"] == "application/zip"

    bad_format = {"identity_id": 2001, "id": 6003, "name": "X", "format": "PDF"}
    assert httpx.post(f"{actions}/add_export", json=bad_format).status_code == 400
    assert (
        httpx.post(f"{actions}/add_identity", json={"id": 2001, "type": "Admissions User"}).status_code == 400
    )
    assert httpx.post(f"{actions}/nope", json={}).status_code == 400

    removed = httpx.post(f"{actions}/remove_export", json={"identity_id": 2001, "id": 6001})
    assert [e["id"] for e in removed.json()["result"]["exports"]["2001"]] == [6002]
    assert httpx.post(f"{actions}/remove_identity", json={"id": 2001}).status_code == 200
    assert client.get("/user_identities/2001/exports").status_code == 404
    assert 6002 not in [e["id"] for e in client.get("/exports").json()["exports"]]

    httpx.post(f"{actions}/remove_identity", json={"id": 1002})
    sandbox.reset()  # back to the default identities and templates
    assert [i["id"] for i in client.get("/user_identities").json()["user_identities"]] == [1001, 1002]


def test_reset_forgets_runs_and_knobs_work_over_http(client, app, sandbox):
    fid = start(client)["id"]
    assert httpx.post(f"{sandbox.url}/_sandbox/reset").json() == {"reset": True}
    assert app.runs_started() == 0
    assert client.get(f"/exports/5001/export_files/{fid}").status_code == 404
    assert start(client)["id"] > fid  # ids are never reused
    knobs = httpx.post(f"{sandbox.url}/_sandbox/knobs/webadmit", json={"status_style": "snake", "rows": 3})
    assert knobs.status_code == 200 and knobs.json()["webadmit"]["status_style"] == "snake"
    assert httpx.post(f"{sandbox.url}/_sandbox/knobs/webadmit", json={"status_style": "x"}).status_code == 400
    line = app.describe()
    assert sandbox.base_url("webadmit") in line and f"x-api-key: {SANDBOX_API_KEY}" in line
