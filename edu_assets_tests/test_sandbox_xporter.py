"""The Xporter on Demand emulator over real HTTP: STS, token scoping, management APIs, every catalogue
endpoint, consent scopes, paging, date windows, change sets, vendor quirks and injected faults."""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edu_assets.sandbox import SandboxServer, start_sandbox
from edu_assets.sandbox.xporter import MANAGEMENT_SECRET, RELYING_PARTY, XporterApp
from edu_assets.sandbox.xporter_data import RowFactory

CATALOG = yaml.safe_load(
    (Path(__file__).resolve().parent.parent / "edu_assets/vendors/xporter/catalog.yaml").read_text("utf-8")
)
ENDPOINTS = {e["name"]: e for e in CATALOG["endpoints"]}
ENVELOPE_KEYS = {"Message", "ExceptionType", "ExceptionMessage", "InnerException"}
STS_KEYS = {"token", "expires", *ENVELOPE_KEYS}
PRIMARY, ACADEMY, HIGH, INFANTS, COLLEGE = "3281101", "3281102", "3281104", "3281110", "3281103"
STRICT = {"httpstatuscodes": "true"}


def response_name(table: dict[str, Any]) -> str:
    return (table.get("aliases") or [table["name"]])[0]


def scopes_of(text: str | None) -> set[str]:
    return {p.strip() for p in re.split(r"[/,]", text or "") if p.strip()}


ALL_SCOPES = sorted(
    {
        s
        for e in CATALOG["endpoints"]
        for t in e["tables"]
        for v in (t.get("fields") or {}).values()
        for s in scopes_of(v)
    }
)


@pytest.fixture
def app(sandbox: SandboxServer) -> XporterApp:
    xporter = sandbox.app("xporter")
    assert isinstance(xporter, XporterApp)
    return xporter


@pytest.fixture
def base(sandbox: SandboxServer) -> str:
    return sandbox.base_url("xporter")


def sts(base: str, estab: str | None, password: str | None = None, **overrides: Any) -> httpx.Response:
    body: dict[str, Any] = {
        "estab": estab,
        "relyingParty": RELYING_PARTY,
        "password": password or (f"sandbox-secret-{estab}" if estab else MANAGEMENT_SECRET),
        "thirdpartyid": "XporterOnDemand",
        **overrides,
    }
    if estab is None:
        del body["estab"]
    return httpx.post(f"{base}/idaas/sts/STS/GetToken", json=body)


def auth(base: str, estab: str | None) -> dict[str, str]:
    body = sts(base, estab).json()
    assert body["token"], body
    return {"Authorization": f"Idaas {body['token']}"}


def data(
    base: str, estab: str, path: str, headers: dict[str, str] | None = None, **params: Any
) -> httpx.Response:
    return httpx.get(
        f"{base}/api/v1/School/{estab}/{path}/",
        params=params,
        headers=headers or auth(base, estab),
        timeout=30,
    )


def window_params(
    endpoint: dict[str, Any], first: str = "2025-01-01", last: str = "2025-02-28"
) -> dict[str, str]:
    window = endpoint.get("date_range") or {}
    if "between" in window:
        return {window["between"]: f"{first}|{last}"}
    return {window["from"]: first, window["to"]: last} if window else {}


# -- STS ----------------------------------------------------------------------------------------------


def test_sts_issues_unique_tokens_with_a_utc_expiry(base):
    first, second = sts(base, PRIMARY), sts(base, PRIMARY)
    assert first.status_code == second.status_code == 200
    body = first.json()
    assert set(body) == STS_KEYS
    assert body["ExceptionType"] is None and body["Message"] is None and body["InnerException"] is None
    assert body["token"] != second.json()["token"]
    assert body["expires"].endswith("Z")
    expires = datetime.fromisoformat(body["expires"].replace("Z", "+00:00"))
    assert abs((expires - datetime.now(UTC)).total_seconds() - 3600) < 60
    assert sts(base, None).json()["token"]  # management token: no estab
    assert sts(base, "").json()["token"]  # ... or an empty one


@pytest.mark.parametrize(
    ("estab", "overrides", "exception_type", "message"),
    [
        (PRIMARY, {"password": "wrong"}, "InvalidCredentials", "was not found for estab '3281101'"),
        (PRIMARY, {"relyingParty": "someone.else"}, "InvalidCredentials", "Relying party 'someone.else'"),
        ("9999999", {}, "InvalidCredentials", "or the password is wrong"),
        (PRIMARY, {"thirdpartyid": "Other"}, "InvalidCredentials", "or the password is wrong"),
        ("", {"password": "sandbox-secret-3281101"}, "InvalidCredentials", "or the password is wrong"),
        (INFANTS, {}, "AuthorisationPending", INFANTS),
        (COLLEGE, {}, "AuthorisationRevoked", COLLEGE),
    ],
)
def test_sts_failures_are_http_200_with_a_null_token(base, estab, overrides, exception_type, message):
    response = sts(base, estab, **overrides)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == STS_KEYS
    assert body["token"] is None and body["expires"] == "0001-01-01T00:00:00"
    assert body["ExceptionType"] == exception_type
    assert message in body["ExceptionMessage"]


def test_paused_school_cannot_get_a_token_but_stays_listed(base, app):
    app.set_school_status(ACADEMY, "paused")
    body = sts(base, ACADEMY).json()
    assert body["token"] is None and body["ExceptionType"] == "AuthorisationPaused"
    assert body["ExceptionMessage"].startswith("Authorisation is paused while the school finalises")
    schools = httpx.get(f"{base}/api/XporterOnDemand/GetXodSchools", headers=auth(base, None)).json()
    assert ACADEMY in {s["estab"] for s in schools["Authorised"]}


# -- tokens -------------------------------------------------------------------------------------------


def test_token_is_scoped_to_its_school(base):
    primary = auth(base, PRIMARY)
    strict = data(base, ACADEMY, "Students", headers=primary, **STRICT)
    assert strict.status_code == 403
    assert strict.json() == {
        "Message": "An error has occurred.",
        "ExceptionType": "Forbidden",
        "ExceptionMessage": "This token is for estab '3281101', not '3281102'",
        "InnerException": None,
    }
    legacy = data(base, ACADEMY, "Students", headers=primary)
    assert legacy.status_code == 200 and legacy.json() == strict.json()
    assert data(base, PRIMARY, "Students", headers=primary).json()["Students"]


def test_missing_and_unknown_tokens(base):
    url = f"{base}/api/v1/School/{PRIMARY}/Students/"
    for headers in ({}, {"Authorization": "Bearer x"}, {"Authorization": "Idaas not-a-token"}):
        strict = httpx.get(url, params=STRICT, headers=headers)
        assert strict.status_code == 401 and strict.json()["ExceptionType"] == "InvalidToken"
        legacy = httpx.get(url, headers=headers)
        assert legacy.status_code == 200 and set(legacy.json()) == ENVELOPE_KEYS


def test_token_ttl_knob_expires_tokens(base, app):
    headers = auth(base, PRIMARY)  # the default hour
    app.set_knobs(token_ttl=0)  # a token that has lapsed by the time it is first used, on any machine
    lapsed = auth(base, PRIMARY)
    response = data(base, PRIMARY, "Students", headers=lapsed, **STRICT)
    assert response.status_code == 401 and response.json()["ExceptionType"] == "TokenExpired"
    assert data(base, PRIMARY, "Students", headers=headers, **STRICT).json()["Students"]  # minted before: still good


def test_expire_tokens_by_school_management_or_all(base, app):
    primary, academy, management = auth(base, PRIMARY), auth(base, ACADEMY), auth(base, None)
    schools_url = f"{base}/api/XporterOnDemand/GetXodSchools"
    assert app.expire_tokens(PRIMARY) == 1
    assert (
        data(base, PRIMARY, "Students", headers=primary, **STRICT).json()["ExceptionType"] == "TokenExpired"
    )
    assert data(base, ACADEMY, "Students", headers=academy, **STRICT).status_code == 200
    assert httpx.get(schools_url, headers=management).status_code == 200
    app.expire_tokens("")
    assert httpx.get(schools_url, params=STRICT, headers=management).status_code == 401
    assert data(base, ACADEMY, "Students", headers=academy, **STRICT).status_code == 200
    app.expire_tokens()
    assert data(base, ACADEMY, "Students", headers=academy, **STRICT).status_code == 401
    assert data(base, PRIMARY, "Students", **STRICT).status_code == 200  # a fresh token works


def test_revoking_or_pausing_invalidates_tokens(base, app):
    headers = auth(base, HIGH)
    app.set_school_status(HIGH, "revoked")
    revoked = data(base, HIGH, "Students", headers=headers, **STRICT)
    assert revoked.status_code == 403 and revoked.json()["ExceptionType"] == "Forbidden"
    assert sts(base, HIGH).json()["ExceptionType"] == "AuthorisationRevoked"
    app.set_school_status(HIGH, "authorised")
    assert data(base, HIGH, "Students", headers=headers, **STRICT).status_code == 401  # old token stays dead
    headers = auth(base, HIGH)
    app.set_school_status(HIGH, "paused")
    assert data(base, HIGH, "Students", headers=headers, **STRICT).status_code == 403


def test_token_kinds_are_kept_apart(base):
    management, school = auth(base, None), auth(base, PRIMARY)
    denied = data(base, PRIMARY, "Students", headers=management, **STRICT)
    assert denied.status_code == 403 and "management token" in denied.json()["ExceptionMessage"]
    for path in ("api/XporterOnDemand/GetXodSchools", f"api/v1/Logs?estab={PRIMARY}"):
        response = httpx.get(f"{base}/{path}", params=STRICT, headers=school)
        assert response.status_code == 403 and response.json()["ExceptionType"] == "Forbidden"
        assert httpx.get(f"{base}/{path}", headers=school).status_code == 200  # legacy: 200 + envelope


# -- management APIs ----------------------------------------------------------------------------------


def test_get_xod_schools(base, app):
    management = auth(base, None)
    url = f"{base}/api/XporterOnDemand/GetXodSchools"
    body = httpx.get(url, params={"includePendingAuthorisation": "true"}, headers=management).json()
    assert set(body) == {"Authorised", "Revoked", "PendingAuthorisation"}
    assert [s["estab"] for s in body["Authorised"]] == [PRIMARY, ACADEMY, HIGH]
    primary = body["Authorised"][0]
    assert set(primary) == {
        "estab", "schoolName", "dateAuthorised", "scopesAuthorised", "installedStatus", "installMessage",
    }  # fmt: skip
    assert primary["schoolName"] == "Sandbox Primary"
    assert primary["scopesAuthorised"].split(",") == ALL_SCOPES
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", primary["dateAuthorised"])
    assert primary["installedStatus"] is True and primary["installMessage"] is None
    assert body["Revoked"] == [
        {"estab": COLLEGE, "schoolName": "Sandbox College", "dateRevoked": body["Revoked"][0]["dateRevoked"]}
    ]
    assert [(s["estab"], s["schoolName"]) for s in body["PendingAuthorisation"]] == [
        (INFANTS, "Sandbox Infants")
    ]
    assert set(body["PendingAuthorisation"][0]) == {
        "estab", "schoolName", "dateInvited", "installedStatus", "installMessage",
    }  # fmt: skip
    assert "PendingAuthorisation" not in httpx.get(url, headers=management).json()
    one = httpx.get(url, params={"estab": ACADEMY}, headers=management).json()
    assert [s["estab"] for s in one["Authorised"]] == [ACADEMY] and one["Revoked"] == []

    app.add_school("3281199", "Sandbox Nursery", scopes=["Student", "School"])
    app.set_school_status(PRIMARY, "revoked")
    body = httpx.get(url, headers=management).json()
    added = next(s for s in body["Authorised"] if s["estab"] == "3281199")
    assert added["scopesAuthorised"] == "School,Student"
    assert PRIMARY in {s["estab"] for s in body["Revoked"]}
    assert app.schools["3281199"].status == "authorised"


def test_token_details_scopes_queries(base, app):
    app.set_school_scopes(PRIMARY, ["Student", "Attendance"])
    school = httpx.get(f"{base}/api/v1/TokenDetails", headers=auth(base, PRIMARY)).json()
    assert set(school) == {"Estab", "Expires", "Name", "RelyingParty", "Scopes"}
    assert school["Estab"] == PRIMARY and school["Name"] == "Sandbox Primary"
    assert school["RelyingParty"] == RELYING_PARTY and school["Scopes"] == ["Attendance", "Student"]
    management = auth(base, None)
    details = httpx.get(f"{base}/api/v1/TokenDetails", headers=management).json()
    assert details["Estab"] is None and details["Expires"].endswith("Z")
    scopes = httpx.get(f"{base}/api/v1/Scopes", headers=management).json()
    assert set(scopes) > ENVELOPE_KEYS and scopes["ExceptionType"] is None
    assert [s["Name"] for s in scopes["Scopes"]] == ALL_SCOPES
    queries = httpx.get(f"{base}/api/v1/Queries", headers=management).json()
    assert {"Endpoints", "Queries", *ENVELOPE_KEYS} == set(queries)
    assert {e["Name"] for e in queries["Endpoints"]} == {e["path"] for e in CATALOG["endpoints"]}


@pytest.mark.parametrize(
    ("path", "key", "fields"),
    [
        ("Logs", "Logs", {"Id", "Estab", "DateTime", "Endpoint", "Status"}),
        ("Usage", "Usage", {"Date", "Estab", "Endpoint", "Calls", "Rows"}),
        ("GDPRIDs", "GDPR", {"Id", "IdaasId", "Type"}),
    ],
)
def test_per_school_management_endpoints(base, path, key, fields):
    management = auth(base, None)
    url = f"{base}/api/v1/{path}"
    first = httpx.get(url, params={"estab": PRIMARY}, headers=management)
    body = first.json()
    assert set(body) == {key, *ENVELOPE_KEYS} and body["ExceptionMessage"] is None
    assert 5 <= len(body[key]) <= 20 and all(set(row) == fields for row in body[key])
    assert httpx.get(url, params={"estab": PRIMARY}, headers=management).content == first.content
    assert httpx.get(url, params=STRICT, headers=management).status_code == 400  # estab is required


# -- every catalogue endpoint -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_every_catalog_endpoint_answers_with_its_tables(base, app, name):
    app.set_knobs(rows=3, rows_per_month=2)
    endpoint = ENDPOINTS[name]
    response = data(base, HIGH, endpoint["path"], **window_params(endpoint))
    assert response.status_code == 200, response.text
    body = response.json()
    if endpoint["path"].lower() == "testerror":
        assert body["ExceptionType"] == "TestError" and set(body) == ENVELOPE_KEYS
        return
    if endpoint["path"] == "Health":
        assert set(body["health"][0]) == {
            "SchoolDataStatus",
            "SchoolDataAgeDays",
            "XodStatus",
            "LastRefreshed",
        }
        return
    names = [response_name(t) for t in endpoint["tables"]]
    assert list(body) == [*names, "__pagination__", "meta"]
    assert body["meta"][0]["MIS"] == "sandbox"
    expected_rows = 3 if not endpoint.get("date_range") else body["__pagination__"][0]["RowCount"]
    assert 0 < expected_rows <= 4
    for table, key in zip(endpoint["tables"], names, strict=True):
        rows = body[key]
        assert len(rows) == expected_rows
        fields = list(table.get("fields") or {}) or ["Id", "Name", "LastUpdated", "RowHash"]
        if endpoint.get("date_range") and not any("Date" in f for f in fields):
            fields.append("Date")
        assert all(list(row) == fields for row in rows)


def test_response_names_follow_aliases(base):
    body = data(base, PRIMARY, "AchievementForDateRange", DateFrom="2025-01-01", DateTo="2025-01-31").json()
    assert "achievementfordaterange" in body and "Achievements" not in body
    staff = data(base, PRIMARY, "Staff").json()
    assert "StaffVehicles" in staff and "StaffMotorVehicles" not in staff
    sen = data(base, PRIMARY, "SEN").json()
    assert {"SENEHCP", "SENEHCPDocuments"} <= set(sen)


def test_paths_are_case_insensitive_and_slash_optional(base):
    headers = auth(base, PRIMARY)
    upper = httpx.get(f"{base}/api/v1/School/{PRIMARY}/STUDENTS", headers=headers)
    lower = httpx.get(f"{base}/api/v1/school/{PRIMARY}/students/", headers=headers)
    assert upper.status_code == lower.status_code == 200
    assert upper.json()["Students"] == lower.json()["Students"]


def test_unknown_endpoint_is_404(base):
    strict = data(base, PRIMARY, "NoSuchThing", **STRICT)
    assert strict.status_code == 404 and strict.json()["ExceptionType"] == "NotFound"
    assert data(base, PRIMARY, "NoSuchThing").status_code == 200


# -- consent scopes -----------------------------------------------------------------------------------


def test_columns_need_a_consented_scope(base, app):
    granted = {"StudentLite", "School"}
    app.set_school_scopes(PRIMARY, sorted(granted))
    rows = data(base, PRIMARY, "Students").json()["Students"]
    fields = ENDPOINTS["students"]["tables"][0]["fields"]
    expected = [f for f, scope in fields.items() if scope is None or scopes_of(scope) & granted]
    assert 0 < len(expected) < len(fields)
    assert all(list(row) == expected for row in rows)
    assert "Ethnicity" not in rows[0]  # StudentEthnicity was not authorised
    app.set_school_scopes(PRIMARY, [])
    attendance = data(base, PRIMARY, "AttendanceForDate").json()["AttendMarks"]
    assert all(set(row) == {"Id", "InstanceId", "MinsLate"} for row in attendance)  # the null-scope fields


# -- paging -------------------------------------------------------------------------------------------


def test_paging_block_and_windows(base, app):
    app.set_knobs(rows=25)
    headers = auth(base, PRIMARY)
    full = data(base, PRIMARY, "StudentMedical", headers=headers).json()
    pages = [
        data(base, PRIMARY, "StudentMedical", headers=headers, page=p, pagesize=10).json() for p in (1, 2, 3)
    ]
    assert pages[0]["__pagination__"] == [
        {"PageSize": 10, "PageNumber": 1, "PageCount": 3, "RowCount": 25, "NextPage": "?page=2&pageSize=10"}
    ]
    assert pages[2]["__pagination__"][0]["NextPage"] is None
    for table in ("StudentConditions", "MedicalEventNotes"):
        assert [len(p[table]) for p in pages] == [10, 10, 5]
        assert [row for p in pages for row in p[table]] == full[table]
    beyond = data(base, PRIMARY, "StudentMedical", headers=headers, page=4, pageSize=10).json()
    assert beyond["StudentConditions"] == [] and beyond["__pagination__"][0]["PageNumber"] == 4
    bad = data(base, PRIMARY, "StudentMedical", headers=headers, page=0, pagesize=10, **STRICT)
    assert bad.status_code == 400 and bad.json()["ExceptionType"] == "ArgumentException"


def test_unpaged_requests_are_silently_capped(base, app):
    app.set_knobs(rows=25, unpaged_cap=7)
    body = data(base, PRIMARY, "Contacts").json()
    assert len(body["Contacts"]) == 7
    assert body["__pagination__"] == [
        {"PageSize": 7, "PageNumber": 1, "PageCount": 4, "RowCount": 25, "NextPage": "?page=2&pageSize=7"}
    ]
    app.set_knobs(rows_by_endpoint={"contacts": 5})
    body = data(base, PRIMARY, "Contacts").json()
    assert len(body["Contacts"]) == 5 and body["__pagination__"][0]["NextPage"] is None


@pytest.fixture
def rendered(monkeypatch) -> list[int]:
    """Rows the emulator renders, per call: its main cost (~25 us a row), counted instead of timed, so a
    loaded machine cannot fail the tests that say a page costs its own rows and nothing more."""
    calls: list[int] = []
    rows = RowFactory.rows

    def counting(self: RowFactory, table: Any, idents: Any, proj: Any) -> Any:
        calls.append(len(idents))
        return rows(self, table, idents, proj)

    monkeypatch.setattr(RowFactory, "rows", counting)
    return calls


def test_a_200000_row_endpoint_pages_quickly(base, app, rendered):
    app.set_knobs(rows_by_endpoint={"students": 200_000}, page_latency=0.1)
    headers = auth(base, PRIMARY)
    for page in (1, 21, 40):
        rendered.clear()
        response = data(base, PRIMARY, "Students", headers=headers, page=page, pagesize=5000)
        assert response.status_code == 200 and sum(rendered) == 5000, rendered  # the page, never the endpoint
        body = response.json()
        assert body["__pagination__"][0]["RowCount"] == 200_000
        ids = [row["Id"] for row in body["Students"]]
        assert len(ids) == len(set(ids)) == 5000
        assert ids[0] == f"1101.{(page - 1) * 5000 + 1}"
    app.mutate(PRIMARY, "students", inserts=2, updates=3, deletes=4)
    token = data(base, PRIMARY, "Students", headers=headers, page=1, pagesize=1, changedRows="*").json()
    rendered.clear()
    delta = data(
        base,
        PRIMARY,
        "Students",
        headers=headers,
        changedRows=token["__changed_rows__"][0]["next_changed_rows"],
    )
    assert sum(rendered) <= 9  # at most the rows the mutations touched, never the 200,000
    assert delta.json()["Students"] == [] and delta.json()["Students_deleted"] == []


# -- date windows -------------------------------------------------------------------------------------


def test_date_range_rows_stay_inside_the_window_and_months_are_stable(base, app, sandbox):
    headers = auth(base, PRIMARY)

    def marks(first: str, last: str) -> list[dict[str, Any]]:
        response = data(base, PRIMARY, "AttendanceForDateRange", headers=headers, DateFrom=first, DateTo=last)
        return response.json()["AttendMarks"]

    window = marks("2025-01-15", "2025-03-10")
    assert window and all("2025-01-15" <= row["Date"] <= "2025-03-10" for row in window)
    february = marks("2025-02-01", "2025-02-28")
    assert len(february) == 12
    wide = marks("2024-12-01", "2025-04-30")
    assert [row for row in wide if row["Date"].startswith("2025-02")] == february
    assert len(wide) == 5 * 12 and len({row["Id"] for row in wide}) == 60
    months = [(2024, 12), (2025, 1), (2025, 2), (2025, 3), (2025, 4)]
    by_month = [
        row
        for y, m in months
        for row in marks(f"{y}-{m:02d}-01", f"{y}-{m:02d}-{calendar.monthrange(y, m)[1]}")
    ]
    assert by_month == wide
    assert app.range_calls(PRIMARY, "attendance_for_date_range") == 8
    logged = [e for e in sandbox.requests if e["path"].endswith("/AttendanceForDateRange/")]
    assert logged[0]["query"] == {"DateFrom": ["2025-01-15"], "DateTo": ["2025-03-10"]}
    exams = data(base, PRIMARY, "ExamResults", headers=headers, ResultDateBetween="2025-03-01|2025-03-31")
    assert len(exams.json()["ExamResults"]) == 12
    assert all(r["ResultDate"].startswith("2025-03") for r in exams.json()["ExamResults"])


def test_date_range_parameters_are_required(base):
    headers = auth(base, PRIMARY)
    missing = data(base, PRIMARY, "AttendanceForDateRange", headers=headers, DateFrom="2025-01-01", **STRICT)
    assert missing.status_code == 400 and "DateTo" in missing.json()["ExceptionMessage"]
    legacy = data(base, PRIMARY, "StaffAbsence", headers=headers)
    assert legacy.status_code == 200 and "FromDate and ToDate" in legacy.json()["ExceptionMessage"]
    between = data(base, PRIMARY, "ExamResults", headers=headers, **STRICT)
    assert between.status_code == 400 and "ResultDateBetween" in between.json()["ExceptionMessage"]
    bad = data(
        base, PRIMARY, "Timetable", headers=headers, DateFrom="01/02/2025", DateTo="2025-02-02", **STRICT
    )
    assert bad.status_code == 400


# -- parameters ---------------------------------------------------------------------------------------


def test_updated_since(base, app):
    headers = auth(base, PRIMARY)
    everything = data(base, PRIMARY, "Students", headers=headers).json()["Students"]
    recent = data(base, PRIMARY, "Students", headers=headers, updatedSince="2025-02-01").json()["Students"]
    assert 0 < len(recent) < len(everything)
    assert recent == [row for row in everything if row["LastUpdated"] > "2025-02-01T00:00:00"]
    changed = app.mutate(PRIMARY, "students", inserts=1, updates=2)
    today = datetime.now(UTC).date().isoformat()
    fresh = data(base, PRIMARY, "Students", headers=headers, updatedSince=today).json()["Students"]
    assert sorted(row["Id"] for row in fresh) == sorted(changed["inserted"] + changed["updated"])
    bad = data(base, PRIMARY, "Students", headers=headers, updatedSince="yesterday", **STRICT)
    assert bad.status_code == 400


def test_select_with_aliases(base):
    headers = auth(base, PRIMARY)
    full = data(base, PRIMARY, "Students", headers=headers).json()["Students"]
    picked = data(
        base, PRIMARY, "Students", headers=headers, select="Id, forename AS Name,RegGroup as Form"
    ).json()
    assert picked["Students"] == [{"Id": r["Id"], "Name": r["Forename"], "Form": r["RegGroup"]} for r in full]
    star = data(base, PRIMARY, "Students", headers=headers, select="*").json()["Students"]
    assert star == full


def test_options_are_accepted_both_ways(base):
    headers = auth(base, PRIMARY)
    plain = data(base, PRIMARY, "Students", headers=headers).json()["Students"]
    flags = data(base, PRIMARY, "Students", headers=headers, includeLeavers="true", includePhotos="true")
    listed = data(
        base, PRIMARY, "Students", headers=headers, options="includeLeavers,includePhotos", foo="bar"
    )
    assert flags.json()["Students"] == listed.json()["Students"] == plain


def test_row_id_path_segment(base):
    headers = auth(base, PRIMARY)
    one = httpx.get(f"{base}/api/v1/School/{PRIMARY}/Students/1101.7", headers=headers).json()
    assert [row["Id"] for row in one["Students"]] == ["1101.7"]


# -- data realism and determinism ---------------------------------------------------------------------


def test_values_look_like_school_data(base, app):
    app.set_knobs(rows=200)
    students = data(base, PRIMARY, "Students").json()["Students"]
    text = str(students)
    assert re.search(r"[^\x00-\x7f]", text), "accented names expected"
    row = students[0]
    assert re.fullmatch(r"1101\.1", row["Id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", row["LastUpdated"])
    assert re.fullmatch(r"[0-9a-f]{32}", row["RowHash"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", row["DateOfBirth"])
    assert {r["IsTraveller"] for r in students} == {True, False}
    assert isinstance(row["NumPossMarks"], int)
    assert row["IdaasId"].startswith("PL-") and "@" in row["HomeEmail"]
    assert len({r["Id"] for r in students}) == len({r["RowHash"] for r in students}) == 200


def test_same_request_same_bytes_even_on_a_fresh_server(base):
    params = {"page": 2, "pagesize": 5, "select": "Id,Surname,LastUpdated,RowHash"}
    first = data(base, PRIMARY, "Contacts", **params)
    assert data(base, PRIMARY, "Contacts", **params).content == first.content
    with start_sandbox(port=0) as other:
        again = data(other.base_url("xporter"), PRIMARY, "Contacts", **params)
    assert again.content == first.content
    assert data(base, ACADEMY, "Contacts", **params).json()["Contacts"] != first.json()["Contacts"]


def test_health_and_testerror(base, app):
    app.set_knobs(data_age_days={PRIMARY: 3})
    health = data(base, PRIMARY, "Health").json()["health"][0]
    assert health["SchoolDataAgeDays"] == 3 and health["SchoolDataStatus"] == health["XodStatus"] == "ok"
    refreshed = datetime.fromisoformat(health["LastRefreshed"])
    assert 2 <= (datetime.now(UTC).replace(tzinfo=None) - refreshed).days <= 3
    assert data(base, ACADEMY, "Health").json()["health"][0]["SchoolDataAgeDays"] == 0
    error = data(base, PRIMARY, "testerror", **STRICT)
    assert error.status_code == 500 and error.json()["ExceptionType"] == "TestError"
    assert data(base, PRIMARY, "testerror").status_code == 200


# -- change sets --------------------------------------------------------------------------------------


def apply_delta(rows: list[dict[str, Any]], delta: dict[str, Any], table: str) -> list[dict[str, Any]]:
    by_id = {row["Id"]: row for row in rows}
    for gone in delta[f"{table}_deleted"]:
        by_id.pop(gone["Id"])
    for row in delta[table]:
        by_id[row["Id"]] = row
    return list(by_id.values())


def test_change_set_full_then_delta(base, app):
    headers = auth(base, PRIMARY)
    pages = [
        data(base, PRIMARY, "Staff", headers=headers, changedRows="*", page=p, pagesize=15).json()
        for p in (1, 2, 3)
    ]
    tokens = {p["__changed_rows__"][0]["next_changed_rows"] for p in pages}
    assert len(tokens) == 1  # one change-set call, one token on every page
    assert "Staff_deleted" not in pages[0]
    staff = [row for p in pages for row in p["Staff"]]
    vehicles = [row for p in pages for row in p["StaffVehicles"]]
    assert len(staff) == 40

    changes = app.mutate(PRIMARY, "staff", inserts=3, updates=4, deletes=2)
    delta = data(base, PRIMARY, "Staff", headers=headers, changedRows=tokens.pop()).json()
    assert sorted(r["Id"] for r in delta["Staff"]) == sorted(changes["inserted"] + changes["updated"])
    assert sorted(r["Id"] for r in delta["Staff_deleted"]) == sorted(changes["deleted"])
    assert delta["StaffVehicles_deleted"] == delta["Staff_deleted"]
    assert delta["__pagination__"][0]["RowCount"] == 7
    updated = {r["Id"]: r for r in staff if r["Id"] in changes["updated"]}
    for row in delta["Staff"]:
        if row["Id"] in updated:
            assert row["LastUpdated"] > updated[row["Id"]]["LastUpdated"]
            assert row["RowHash"] != updated[row["Id"]]["RowHash"]
    assert apply_delta(staff, delta, "Staff") == app.current_rows(PRIMARY, "staff")
    assert len(delta["StaffVehicles"]) == 7 and len(vehicles) == 40  # keyless table: same identities
    full_now = data(base, PRIMARY, "Staff", headers=headers).json()["Staff"]
    assert full_now == app.current_rows(PRIMARY, "staff")

    quiet = data(
        base, PRIMARY, "Staff", headers=headers, changedRows=delta["__changed_rows__"][0]["next_changed_rows"]
    )
    assert quiet.json()["Staff"] == [] and quiet.json()["Staff_deleted"] == []
    assert (
        quiet.json()["__changed_rows__"][0]["next_changed_rows"]
        != delta["__changed_rows__"][0]["next_changed_rows"]
    )


def test_delta_with_other_filters_reports_false_deletions(base):
    headers = auth(base, PRIMARY)
    quarter = data(
        base,
        PRIMARY,
        "AttendanceForDateRange",
        headers=headers,
        DateFrom="2025-01-01",
        DateTo="2025-03-31",
        changedRows="*",
    ).json()
    token = quarter["__changed_rows__"][0]["next_changed_rows"]
    same = data(
        base,
        PRIMARY,
        "AttendanceForDateRange",
        headers=headers,
        DateFrom="2025-01-01",
        DateTo="2025-03-31",
        changedRows=token,
    ).json()
    assert same["AttendMarks"] == [] and same["AttendMarks_deleted"] == []
    february = data(
        base,
        PRIMARY,
        "AttendanceForDateRange",
        headers=headers,
        DateFrom="2025-02-01",
        DateTo="2025-02-28",
        changedRows=token,
    ).json()
    gone = {row["Id"] for row in february["AttendMarks_deleted"]}
    assert gone == {r["Id"] for r in quarter["AttendMarks"] if not r["Date"].startswith("2025-02")}
    assert february["AttendMarks"] == []


def test_invalid_change_tokens(base, app):
    headers = auth(base, PRIMARY)
    token = data(base, PRIMARY, "Contacts", headers=headers, changedRows="*").json()["__changed_rows__"][0][
        "next_changed_rows"
    ]
    expected = {
        "Message": "An error has occurred.",
        "ExceptionType": "InvalidChangedRowsToken",
        "ExceptionMessage": "The changedRows value is not valid for this change set; send changedRows=* to start a new one",
        "InnerException": None,
    }
    for estab, path, value in (
        (PRIMARY, "Contacts", "nonsense"),
        (PRIMARY, "Staff", token),
        (ACADEMY, "Contacts", token),
    ):
        response = data(base, estab, path, changedRows=value, **STRICT)
        assert response.status_code == 400 and response.json() == expected
    assert data(base, PRIMARY, "Contacts", headers=headers, changedRows=token, **STRICT).status_code == 200
    assert app.expire_change_tokens(PRIMARY) >= 1
    legacy = data(base, PRIMARY, "Contacts", headers=headers, changedRows=token)
    assert legacy.status_code == 200 and legacy.json() == expected


# -- faults -------------------------------------------------------------------------------------------


def test_not_ready_fault_and_knob(base, app, sandbox):
    headers = auth(base, PRIMARY)
    sandbox.faults.add("not_ready", vendor="xporter", match="Students", times=2)
    first = data(base, PRIMARY, "Students", headers=headers)
    assert first.status_code == 200
    assert first.json() == {
        "DbStatus": [
            {
                "Estab": PRIMARY,
                "Endpoint": "Students",
                "Status": "NotReady",
                "Message": "Data not ready yet. Request the data again later.",
            }
        ]
    }
    assert data(base, PRIMARY, "Students", headers=headers, **STRICT).status_code == 503
    assert data(base, PRIMARY, "Students", headers=headers).json()["Students"]
    app.set_knobs(not_ready_schools=[ACADEMY])
    assert "DbStatus" in data(base, ACADEMY, "Contacts").json()
    assert "Contacts" in data(base, PRIMARY, "Contacts", headers=headers).json()


def test_generic_faults_use_the_vendor_envelope(base, sandbox):
    headers = auth(base, PRIMARY)
    sandbox.faults.add("rate_limit", vendor="xporter", match="Students", times=1, retry_after=2)
    limited = data(base, PRIMARY, "Students", headers=headers)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert set(limited.json()) == ENVELOPE_KEYS
    sandbox.faults.add("server_error", vendor="xporter", match="GetToken")
    failed = sts(base, PRIMARY)
    assert failed.status_code == 500 and set(failed.json()) == STS_KEYS and failed.json()["token"] is None
    sandbox.faults.add("drop_connection", vendor="xporter", match="Contacts")
    with pytest.raises(httpx.TransportError):
        data(base, PRIMARY, "Contacts", headers=headers)
    sandbox.faults.add("truncate_body", vendor="xporter", match="Contacts")
    with pytest.raises(httpx.TransportError):
        data(base, PRIMARY, "Contacts", headers=headers)
    sandbox.faults.add("latency", vendor="xporter", match="Contacts", seconds=0.3)
    started = time.monotonic()
    assert data(base, PRIMARY, "Contacts", headers=headers).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert [e["fault"] for e in sandbox.requests if e["vendor"] == "xporter"].count("rate_limit") == 1


# -- control surface, reset and the Python API --------------------------------------------------------


def test_knobs_over_http(sandbox, base):
    url = f"{sandbox.url}/_sandbox/knobs/xporter"
    response = httpx.post(url, json={"rows": 6, "rows_by_endpoint": {"Contacts": 2}})
    assert response.status_code == 200
    assert response.json()["xporter"]["rows_by_endpoint"] == {"contacts": 2}
    assert len(data(base, PRIMARY, "Students").json()["Students"]) == 6
    assert len(data(base, PRIMARY, "Contacts").json()["Contacts"]) == 2
    assert httpx.post(url, json={"rows_by_endpoint": {"nope": 1}}).status_code == 400
    assert httpx.post(url, json={"unpaged_cap": 0}).status_code == 400


def test_reset_restores_schools_data_and_tokens(sandbox, base, app):
    headers = auth(base, PRIMARY)
    before = data(base, PRIMARY, "Contacts", headers=headers).content
    app.mutate(PRIMARY, "contacts", inserts=2, deletes=3)
    app.add_school("3281177", "Extra")
    app.set_school_status(PRIMARY, "paused")
    sandbox.reset()
    assert sorted(app.schools) == sorted([PRIMARY, ACADEMY, HIGH, INFANTS, COLLEGE])
    assert app.schools[PRIMARY].status == "authorised"
    assert data(base, PRIMARY, "Contacts", headers=headers, **STRICT).status_code == 401
    assert data(base, PRIMARY, "Contacts").content == before


def test_python_api_validates(app):
    with pytest.raises(ValueError):
        app.set_school_status(PRIMARY, "sleeping")
    with pytest.raises(KeyError):
        app.set_school_status("0000000", "revoked")
    with pytest.raises(ValueError):
        app.mutate(PRIMARY, "attendance_for_date_range", inserts=1)
    with pytest.raises(ValueError):
        app.mutate(PRIMARY, "students", deletes=41)
    with pytest.raises(KeyError):
        app.current_rows(PRIMARY, "no_such_endpoint")
    rows = app.current_rows(
        PRIMARY, "attendance_for_date_range", date_from=date(2025, 1, 1), date_to=date(2025, 1, 31)
    )
    assert len(rows) == 12
    assert app.current_rows(PRIMARY, "Students") == app.current_rows(PRIMARY, "students", "Students")
