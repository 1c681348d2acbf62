"""The Xporter on Demand emulator over real HTTP: STS, token scoping, management APIs, every read
endpoint of the vendor document, consent scopes, paging, date windows, mandatory filters, change sets,
vendor quirks and injected faults.

Expectations come from the document's extraction (the reference YAML the emulator ships), read here
on their own terms, never from the client's catalogue."""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edu_assets.sandbox import SandboxServer, start_sandbox
from edu_assets.sandbox.xporter import MANAGEMENT_SECRET, RELYING_PARTY, XporterApp, school_secret
from edu_assets.sandbox.xporter_data import RowFactory
from edu_assets.sandbox.xporter_schema import REFERENCE_PATH

REFERENCE = yaml.load(REFERENCE_PATH.read_text("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
READS = {e["key"]: e for e in REFERENCE["endpoints"] if e["kind"] == "read" and not e.get("duplicate_of")}
DOC_SCOPES = {c["scope"] for c in REFERENCE["consent_scopes"]}
ENVELOPE_KEYS = {"Message", "ExceptionType", "ExceptionMessage", "InnerException"}
STS_KEYS = {"token", "expires", *ENVELOPE_KEYS}
PRIMARY, ACADEMY, HIGH, INFANTS, COLLEGE = "3281101", "3281102", "3281104", "3281110", "3281103"
STRICT = {"httpstatuscodes": "true"}
GENERIC = ["Id", "LastUpdated", "RowHash"]  # a result set the document names but lists no fields for
# Result sets of a sample that are served only with an option (the option's own description says so)
OPTIONAL_RESULT_SETS = {
    ("groups", "StandardYearGroupLookup"), ("group_history", "StandardYearGroupLookup"),
    ("students", "StudentSiblings"), ("school_info", "Sites"), ("attendance_summary", "MinutesLate"),
    ("attendance_summary", "AttendanceNotes"), ("attendance_summary", "StatutoryComments"),
}  # fmt: skip
COPIED_SAMPLES = {("detentions", "counts")}  # the Detentions sample is Counts' (nine documented tables)
OPTIONAL_COLUMNS = {"StudentXIDs", "StaffXIDs"}  # Groups/Group History: only with includeMembersXIDs


def path_of(entry: dict[str, Any]) -> str:
    full = entry.get("path") or entry["path_guess"]
    return re.fullmatch(r"/api/v1/School/\{estab\}/([^/]+)/?", full).group(1)


def doc_fields(entry: dict[str, Any], heading: str) -> list[str]:
    table = next(t for t in entry["tables"] if t["name"] == heading)
    return list(dict.fromkeys(f["name"] for f in table["fields"]))


def fields_named(name: str) -> list[str] | None:
    """The fields of the first table of this name anywhere in the document (a borrowed definition)."""
    for entry in READS.values():
        if str(entry.get("tables_reliability") or "").startswith("suspect"):
            continue
        for table in entry.get("tables") or []:
            if table["name"].lower() == name.lower():
                return list(dict.fromkeys(f["name"] for f in table["fields"]))
    return None


def scopes_of(text: str | None) -> set[str]:
    return {p.strip() for p in re.split(r"[/,+]", text or "") if p.strip()}


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
        "password": password or (school_secret(estab) if estab else MANAGEMENT_SECRET),
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
    entry: dict[str, Any], first: str = "2025-01-01", last: str = "2025-02-28"
) -> dict[str, str]:
    """An explicit window in the document's own date parameters (first from/to pair)."""
    params = entry.get("date_range_params") or []
    if len(params) == 1:
        return {params[0]: f"{first}|{last}"}
    return {params[0]: first, params[1]: last} if params else {}


def ids(base: str, estab: str, path: str, key: str, headers: dict[str, str], **params: Any) -> list[str]:
    return [row["Id"] for row in data(base, estab, path, headers, select="Id", **params).json()[key]]


class Lookups:
    """The values a client enumerates mandatory filters from, read from the lookups the document names."""

    def __init__(self, base: str, estab: str) -> None:
        self.base, self.estab, self.headers = base, estab, auth(base, estab)

    @cached_property
    def students(self) -> list[str]:
        return ids(self.base, self.estab, "Students", "Students", self.headers)

    @cached_property
    def staff(self) -> list[str]:
        return ids(self.base, self.estab, "Staff", "Staff", self.headers)

    @cached_property
    def aspects(self) -> list[str]:  # L1430 "Using the information from ... school.assessmentstructure"
        return ids(self.base, self.estab, "assessmentstructure", "Aspects", self.headers)

    @cached_property
    def marksheets(self) -> list[str]:
        return ids(self.base, self.estab, "assessmentstructure", "Marksheets", self.headers)

    @cached_property
    def udfs(self) -> list[dict[str, str]]:
        return data(self.base, self.estab, "UserDefinedFields", self.headers).json()["UDFs"]

    def udf_names(self, kind: str) -> list[str]:
        return [row["UDFName"] for row in self.udfs if row["UDFType"] == kind]

    @cached_property
    def document_types(self) -> list[dict[str, str]]:
        return data(self.base, self.estab, "LinkedDocumentTypes", self.headers).json()["DocumentTypes"]

    def mandatory(self, key: str) -> dict[str, str]:
        """Issue 14's table of mandatory filters (lines of xporter-school-data-api.txt), with real values."""
        document_type = self.document_types[0]["DocumentTypeName"]
        return {
            "assessment_results": lambda: {"Aspects": ",".join(self.aspects[:5])},  # L1131-1137 (any of 7)
            "assessment_results_by_aspect": lambda: {"Aspects": self.aspects[0]},  # L1307
            "assessment_results_by_marksheet": lambda: {"Marksheets": self.marksheets[0]},  # L1441
            "assessment_results_by_student": lambda: {"Students": ",".join(self.students)},  # L1575
            "historical_attendance_summary": lambda: {"SchoolYear": "2024"},  # L2678
            "exam_results": lambda: {"Students": ",".join(self.students)},  # L3952-3961 (any of 7)
            "linked_documents": lambda: {
                "DocumentTypeName": document_type,
                "StudentIds": ",".join(self.students),
            },
            "student_user_defined_fields": lambda: {"UDFName": self.udf_names("Student")[0]},  # L8254
            "discount_codes": lambda: {"KeyStage": "KS4"},  # L9628
            "contact_user_defined_fields": lambda: {"UDFName": self.udf_names("Contact")[0]},  # L11383
            "staff_linked_documents": lambda: {
                "DocumentTypeName": document_type,
                "StaffIds": ",".join(self.staff),
            },
            "staff_user_defined_fields": lambda: {"UDFName": self.udf_names("Staff")[0]},  # L12846
            "timetable_for_staff": lambda: {"Id": self.staff[0]},  # L13206
            "timetable_for_student": lambda: {"Id": self.students[0]},  # L13340
        }.get(key, dict)()


MANDATORY = (
    "assessment_results", "assessment_results_by_aspect", "assessment_results_by_marksheet",
    "assessment_results_by_student", "historical_attendance_summary", "exam_results", "linked_documents",
    "student_user_defined_fields", "discount_codes", "contact_user_defined_fields", "staff_linked_documents",
    "staff_user_defined_fields", "timetable_for_staff", "timetable_for_student",
)  # fmt: skip


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
        ("", {"password": school_secret(PRIMARY)}, "InvalidCredentials", "or the password is wrong"),
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
    assert data(base, PRIMARY, "Students", headers=headers, **STRICT).json()[
        "Students"
    ]  # minted before: still good


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
    granted = primary["scopesAuthorised"].split(",")
    assert granted == sorted(app.catalog.scopes) and set(granted) <= DOC_SCOPES  # the document's scope names
    assert {"Student", "StudentLite", "School", "StudentMedical", "Attendance"} <= set(granted)
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
    assert [s["Name"] for s in scopes["Scopes"]] == sorted(app.catalog.scopes)
    queries = httpx.get(f"{base}/api/v1/Queries", headers=management).json()
    assert {"Endpoints", "Queries", *ENVELOPE_KEYS} == set(queries)
    assert {e["Name"] for e in queries["Endpoints"]} == {path_of(e) for e in READS.values()}
    assert len(queries["Endpoints"]) == 87


@pytest.mark.parametrize(
    ("path", "key", "fields"),
    [
        ("Logs", "Logs", {"Id", "Estab", "DateTime", "Endpoint", "Status"}),
        ("Usage", "Usage", {"Date", "Estab", "Endpoint", "Calls", "Rows"}),
        ("GDPRIDs", "GDPR", {"Id", "Estab", "IdaasId", "Type"}),
    ],
)
def test_management_wide_calls_take_no_estab_and_cover_every_school(base, path, key, fields):
    """The document lists no parameter for Logs, Usage or GDPRIDs (L186-270): one call, every school."""
    management = auth(base, None)
    url = f"{base}/api/v1/{path}"
    first = httpx.get(url, headers=management)
    body = first.json()
    assert set(body) == {key, *ENVELOPE_KEYS} and body["ExceptionMessage"] is None
    assert all(set(row) == fields for row in body[key])
    assert {row["Estab"] for row in body[key]} == {PRIMARY, ACADEMY, HIGH, COLLEGE}  # not the pending school
    assert httpx.get(url, headers=management).content == first.content


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("api/v1/Logs", {"estab": PRIMARY}),
        ("api/v1/Usage", {"estab": PRIMARY}),
        ("api/v1/GDPRIDs", {"estab": PRIMARY}),
        ("api/v1/TokenDetails", {"verbose": "true"}),
        ("api/v1/Scopes", {"estab": PRIMARY}),
        ("api/v1/Queries", {"page": "1"}),
        ("api/XporterOnDemand/GetXodSchools", {"includeRevoked": "true"}),
        ("api/XporterOnDemand/CheckEstab", {"Estab": PRIMARY, "scopes": "all"}),
    ],
)
def test_management_calls_refuse_undocumented_parameters(base, path, params):
    management = auth(base, None)
    strict = httpx.get(f"{base}/{path}", params={**params, **STRICT}, headers=management)
    assert strict.status_code == 400, strict.text
    body = strict.json()
    assert set(body) == ENVELOPE_KEYS and body["ExceptionType"] == "ArgumentException"
    assert "documented parameters" in body["ExceptionMessage"]
    legacy = httpx.get(f"{base}/{path}", params=params, headers=management)
    assert legacy.status_code == 200 and legacy.json()["ExceptionType"] == "ArgumentException"
    documented = httpx.get(
        f"{base}/api/XporterOnDemand/GetXodSchools",
        headers=management,
        params={"includePendingAuthorisation": "true", "estab": PRIMARY, **STRICT},
    )
    assert documented.status_code == 200


def test_check_estab(base, app):
    """L437: Check Estab answers Scopes plus the envelope (its path is not in the document: two homes)."""
    management = auth(base, None)
    app.set_school_scopes(PRIMARY, ["Student", "School"])
    for home in ("api/XporterOnDemand/CheckEstab", "api/v1/CheckEstab"):
        ok = httpx.get(f"{base}/{home}", params={"Estab": PRIMARY, **STRICT}, headers=management)
        assert ok.status_code == 200 and ok.json() == {
            "Scopes": [{"Name": "School"}, {"Name": "Student"}],
            "Message": None, "ExceptionType": None, "ExceptionMessage": None, "InnerException": None,
        }  # fmt: skip
    url = f"{base}/api/XporterOnDemand/CheckEstab"
    assert httpx.get(url, params={"estab": INFANTS}, headers=management).json()["Scopes"] == []  # pending
    unknown = httpx.get(url, params={"Estab": "9999999", **STRICT}, headers=management)
    assert unknown.status_code == 404 and unknown.json()["Scopes"] == []
    assert unknown.json()["ExceptionType"] == "NotFound"
    for bad in ({}, {"Estab": "12"}):
        assert httpx.get(url, params={**bad, **STRICT}, headers=management).status_code == 400
    school = httpx.get(url, params={"Estab": PRIMARY, **STRICT}, headers=auth(base, PRIMARY))
    assert school.status_code == 403


# -- every endpoint of the document ----------------------------------------------------------------


def test_the_schema_is_the_documents_not_the_client_catalogue():
    sandbox_dir = Path(REFERENCE_PATH).parent.parent
    for module in ("xporter.py", "xporter_data.py", "xporter_schema.py"):
        text = (sandbox_dir / module).read_text("utf-8")
        assert "vendors" not in re.sub(r'""".*?"""|#.*', "", text, flags=re.S), module  # no import, no path
    assert len(READS) == 87
    shared = Path("/work/shared/reference/xporter/endpoints.yaml")
    if shared.exists():  # the copy shipped with the package is the shared extraction, byte for byte
        copied = REFERENCE_PATH.read_text("utf-8")
        assert copied[copied.index("# Groupcall Xporter on Demand - endpoint catalog") :] == shared.read_text(
            "utf-8"
        )


@pytest.mark.parametrize("name", sorted(READS))
def test_every_document_endpoint_answers_as_documented(base, app, name):
    """Result sets spelled as the document spells them, columns only from its fields, `meta` always."""
    app.set_knobs(rows=3, rows_per_month=2)
    entry = READS[name]
    lookups = Lookups(base, HIGH)
    params = {**lookups.mandatory(name), **window_params(entry)}
    response = data(base, HIGH, path_of(entry), lookups.headers, **params)
    assert response.status_code == 200, response.text
    body = response.json()
    if name == "test_error":
        assert body["ExceptionType"] == "TestError" and set(body) == ENVELOPE_KEYS
        return
    if name == "health":
        assert set(body["health"][0]) == {
            "SchoolDataStatus",
            "SchoolDataAgeDays",
            "XodStatus",
            "LastRefreshed",
        }
        assert body["meta"][0]["DateTime"]
        return
    assert list(body)[-2:] == ["__pagination__", "meta"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", body["meta"][0]["DateTime"])
    served = [k for k in body if k not in ("__pagination__", "meta")]
    documented_names = {k.lower() for k in entry["response_keys"]} | {
        t["name"].lower() for t in entry.get("tables") or []
    }
    endpoint = app.catalog.endpoint(name)
    headings = set()
    for key in served:
        assert key.lower() in documented_names, f"{name}: {key} is not a name the document uses here"
        table = endpoint.table(key)
        if table.heading:
            headings.add(table.heading)
            fields = doc_fields(entry, table.heading)
        else:
            fields = fields_named(key) or GENERIC
        fields = [f for f in fields if f not in OPTIONAL_COLUMNS or name not in ("groups", "group_history")]
        assert all(list(row) == fields for row in body[key]), (name, key, body[key][:1], fields)
    sample_keys = [k for k in entry["response_keys"] if k not in ("meta", "__pagination__")]
    for key in sample_keys:  # every result set of the sample is served, by that spelling
        if (name, key) not in OPTIONAL_RESULT_SETS and (name, key) not in COPIED_SAMPLES:
            assert key in served, f"{name}: sample result set {key} missing from {served}"
    if not str(entry.get("tables_reliability") or "").startswith("suspect"):  # every field table too
        assert headings == {t["name"] for t in entry.get("tables") or []} - {
            table for endpoint_name, table in OPTIONAL_RESULT_SETS if endpoint_name == name
        }
    counts = {len(body[key]) for key in served}
    assert len(counts) == 1  # every result set of an endpoint has the same rows
    if name in ("user_defined_fields", "linked_document_types"):
        assert counts == {11 if name == "user_defined_fields" else 5}
    elif entry.get("date_range_params") and name != "groups":
        assert counts == {body["__pagination__"][0]["RowCount"]}
    elif name not in MANDATORY:
        assert counts == {3}


def test_result_sets_carry_the_documents_sample_names(base, app):
    """Issue 14 item 2: the samples' own spellings (L5344, L5097, L10669, L13889, L4297, L7700, ...)."""
    headers = auth(base, PRIMARY)
    expected = {
        "Groups": ("Group", "Groups"),
        "GroupHistory": ("GroupHistory", "Groups"),
        "Post16Study": ("Post16Study", "StudentPost16Study"),
        "TimetableStructure": ("TTDays", "TimetableDays"),
        "ExamsStructure": ("GradesetHistories", "GradeSetHistory"),
        "ConductPoints": ("ConductTypes", "ConductPoints"),
        "StudentExclusions": ("StudentSchoolHistory", "StudentExclusions"),
        "Staff": ("StaffVehicles", "StaffMotorVehicles"),
        "SEN": ("SENEHCP", "SENEHCPlans"),
        "AchievementForDateRange": ("achievementfordaterange", "Achievements"),
    }
    for path, (sample, heading) in expected.items():
        body = data(base, PRIMARY, path, headers).json()
        assert sample in body and heading not in body, (path, list(body))
    timetable = data(base, PRIMARY, "TimetableForStudent", headers, Id="1101.1").json()
    assert {"Lessons", "LessonStaff", "LessonRooms"} <= set(timetable)
    assert (
        "Interventions" in data(base, PRIMARY, "Interventions", headers).json()
    )  # not the copied exclusions
    assert "counts" not in data(base, PRIMARY, "Detentions", headers).json()  # a copied sample

    app.set_knobs(result_set_names="heading")
    body = data(base, PRIMARY, "Groups", headers).json()
    assert "Groups" in body and "Group" not in body
    app.set_knobs(result_set_names="per_school")  # even last digit: the sample's; odd: the heading's
    assert "Groups" in data(base, PRIMARY, "Groups", headers).json()
    assert "Group" in data(base, ACADEMY, "Groups").json()
    assert "GradesetHistories" in data(base, ACADEMY, "ExamsStructure").json()


def test_groups_options_add_what_the_document_says(base):
    """L5259 includeMembersXIDs: member XIDs (columns listed in Group History's Groups table);
    L5274 includeStandardYeargroups: the StandardYearGroupLookup result set."""
    headers = auth(base, PRIMARY)
    plain = data(base, PRIMARY, "Groups", headers).json()
    assert "StandardYearGroupLookup" not in plain
    assert not OPTIONAL_COLUMNS & set(plain["Group"][0])
    full = data(
        base, PRIMARY, "Groups", headers, includeMembersXIDs="true", includeStandardYeargroups="true"
    ).json()
    assert set(full["Group"][0]) >= OPTIONAL_COLUMNS
    assert list(full["StandardYearGroupLookup"][0]) == fields_named("StandardYearGroupLookup")
    listed = data(
        base, PRIMARY, "Groups", headers, options="includeMembersXIDs,includeStandardYeargroups"
    ).json()
    assert listed == full
    assert [r["Id"] for r in full["Group"]] == [r["Id"] for r in plain["Group"]]
    # a snapshot ("active group definitions", L5116): the date parameters copied from Group History are not read
    assert data(base, PRIMARY, "Groups", headers, DateFrom="bad-date", **STRICT).status_code == 200


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
    fields = {f["name"]: f.get("consent_scope") for f in READS["students"]["tables"][0]["fields"]}
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


def test_pagination_counts_can_be_left_out(base, app):
    """L635: `__pagination__` fields are not documented; a client must page until a short page."""
    app.set_knobs(rows=25, pagination="no_counts")
    headers = auth(base, PRIMARY)
    full = data(base, PRIMARY, "Contacts", headers=headers).json()["Contacts"]
    page = data(base, PRIMARY, "Contacts", headers=headers, page=1, pagesize=10).json()
    assert page["__pagination__"] == [{"PageSize": 10, "PageNumber": 1}]
    collected, number = [], 1
    while True:  # what a client must do without counts
        rows = data(base, PRIMARY, "Contacts", headers=headers, page=number, pagesize=10).json()["Contacts"]
        collected += rows
        if len(rows) < 10:
            break
        number += 1
    assert collected == full and number == 3
    app.set_knobs(pagination="none")
    body = data(base, PRIMARY, "Contacts", headers=headers, page=1, pagesize=10).json()
    assert "__pagination__" not in body and len(body["Contacts"]) == 10 and body["meta"]
    assert "__pagination__" not in data(base, PRIMARY, "Health", headers=headers).json()


@pytest.mark.parametrize("style", ["__changed_rows__", "changedRows", "meta", "none"])
def test_change_token_key_knob(base, app, style):
    """L600: the key carrying the next changedRows value is not documented."""
    app.set_knobs(change_token_key=style)
    headers = auth(base, PRIMARY)
    body = data(base, PRIMARY, "Contacts", headers=headers, changedRows="*").json()
    found = {
        "__changed_rows__": (body.get("__changed_rows__") or [{}])[0].get("next_changed_rows"),
        "changedRows": body.get("changedRows"),
        "meta": body["meta"][0].get("changedRows"),
    }
    if style == "none":
        assert not any(found.values())
        return
    assert [k for k, v in found.items() if v] == [style]
    app.mutate(PRIMARY, "contacts", updates=1)
    delta = data(base, PRIMARY, "Contacts", headers=headers, changedRows=found[style]).json()
    assert len(delta["Contacts"]) == 1 and delta["Contacts_deleted"] == []


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
    everyone = ",".join(ids(base, PRIMARY, "Students", "Students", headers))  # StudentId is always a student
    exams = data(
        base,
        PRIMARY,
        "ExamResults",
        headers=headers,
        Students=everyone,
        ResultDateBetween="2025-03-01|2025-03-31",
    )
    assert len(exams.json()["ExamResults"]) == 12
    assert all(r["ResultDate"].startswith("2025-03") for r in exams.json()["ExamResults"])


def test_date_windows_are_required_only_where_the_document_says(base, sandbox):
    headers = auth(base, PRIMARY)
    missing = data(base, PRIMARY, "AttendanceForDateRange", headers=headers, DateFrom="2025-01-01", **STRICT)
    assert missing.status_code == 400 and "DateTo" in missing.json()["ExceptionMessage"]  # L2241 mandatory
    legacy = data(base, PRIMARY, "BehaviourForDateRange", headers=headers)
    assert legacy.status_code == 200 and "DateFrom and DateTo" in legacy.json()["ExceptionMessage"]
    bad = data(
        base, PRIMARY, "Timetable", headers=headers, DateFrom="01/02/2025", DateTo="2025-02-02", **STRICT
    )
    assert bad.status_code == 400
    # optional windows (prose "Optional"): a missing one defaults instead of failing
    for path in ("StaffAbsence", "Calendar", "StudentExclusions"):
        assert data(base, PRIMARY, path, headers=headers, **STRICT).status_code == 200, path
    exams = data(base, PRIMARY, "ExamResults", headers=headers, Students="1101.1", **STRICT)
    assert exams.status_code == 200  # ResultDateBetween is optional (L3961)
    today = datetime.now(UTC).date()
    sandbox_app = sandbox.app("xporter")
    sandbox_app.range_requests.clear()
    data(base, PRIMARY, "TimetableForStaff", headers=headers, Id="1101.1")
    data(base, PRIMARY, "StaffAbsence", headers=headers)
    school_year = date(today.year if today.month >= 9 else today.year - 1, 9, 1)
    assert sandbox_app.range_requests == [
        (
            PRIMARY,
            "timetable_for_staff",
            str(today - timedelta(days=7)),
            str(today + timedelta(days=14)),
        ),  # L13207
        (PRIMARY, "staff_absence", str(school_year), str(today)),  # silent: the school year so far
    ]
    prose = data(
        base, PRIMARY, "TimetableForStaff", headers=headers, Id="1101.1", From="2025-03-03", To="2025-03-07"
    )
    assert all("2025-03-03" <= row["Date"][:10] <= "2025-03-07" for row in prose.json()["Lessons"])


def test_no_undocumented_columns_on_date_range_tables(base):
    """The emulator used to add a `Date` column to date-range tables without one: schema drift."""
    body = data(base, PRIMARY, "AchievementForDateRange", DateFrom="2025-01-01", DateTo="2025-03-31").json()
    for key, heading in (
        ("StudentAchievements", "StudentAchievements"),
        ("StaffAchievements", "StaffAchievements"),
    ):
        assert body[key] and list(body[key][0]) == doc_fields(READS["achievement_for_date_range"], heading)
        assert "Date" not in body[key][0]


# -- mandatory filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MANDATORY)
def test_mandatory_filters_are_refused_when_missing(base, name):
    entry = READS[name]
    lookups = Lookups(base, PRIMARY)
    window = window_params(entry) if name in ("linked_documents", "staff_linked_documents") else {}
    strict = data(base, PRIMARY, path_of(entry), lookups.headers, **window, **STRICT)
    assert strict.status_code == 400, strict.text
    body = strict.json()
    assert set(body) == ENVELOPE_KEYS and body["ExceptionType"] == "ArgumentException"
    wanted = lookups.mandatory(name)
    assert all(param in body["ExceptionMessage"] for param in list(wanted)[:1]), body
    legacy = data(base, PRIMARY, path_of(entry), lookups.headers, **window)
    assert legacy.status_code == 200 and legacy.json() == body
    given = data(base, PRIMARY, path_of(entry), lookups.headers, **window, **wanted, **STRICT)
    assert given.status_code == 200, given.text
    if len(wanted) > 1:  # every one of them is needed
        first = dict(list(wanted.items())[:1])
        assert (
            data(base, PRIMARY, path_of(entry), lookups.headers, **window, **first, **STRICT).status_code
            == 400
        )


def test_udf_filters_follow_the_user_defined_fields_lookup(base, app):
    app.set_knobs(rows=30)
    lookups = Lookups(base, PRIMARY)
    assert {row["UDFType"] for row in lookups.udfs} == {"Student", "Contact", "Staff"}
    assert "Locker Number" in lookups.udf_names("Student")  # the document's example (L7190)
    students = set(lookups.students)
    total = 0
    for udf in lookups.udf_names("Student"):
        rows = data(base, PRIMARY, "studentuserdefinedfields", lookups.headers, UDFName=udf).json()[
            "StudentUDFs"
        ]
        assert rows and {row["UDFName"] for row in rows} == {udf}
        assert {row["StudentId"] for row in rows} <= students  # real students (L8259)
        total += len(rows)
    assert total == 30  # every row belongs to exactly one of the lookup's names
    both = ",".join(lookups.udf_names("Student")[:2])
    two = data(base, PRIMARY, "studentuserdefinedfields", lookups.headers, UDFName=both).json()["StudentUDFs"]
    assert {row["UDFName"] for row in two} == set(lookups.udf_names("Student")[:2])
    nobody = data(base, PRIMARY, "studentuserdefinedfields", lookups.headers, UDFName="No Such UDF").json()
    assert nobody["StudentUDFs"] == []
    staff = data(
        base, PRIMARY, "staffuserdefinedfields", lookups.headers, UDFName=lookups.udf_names("Staff")[1]
    )
    assert {row["StaffId"] for row in staff.json()["StaffUDFs"]} <= set(lookups.staff)
    app.mutate(PRIMARY, "students", inserts=5)  # the lookup and the filtered endpoint move together
    grown = Lookups(base, PRIMARY)
    rows = data(base, PRIMARY, "studentuserdefinedfields", grown.headers, UDFName="Bus Route").json()[
        "StudentUDFs"
    ]
    assert {row["StudentId"] for row in rows} <= set(grown.students)


def test_linked_documents_filters(base, app):
    lookups = Lookups(base, PRIMARY)
    types = lookups.document_types
    assert types[0]["DocumentTypeName"] == "General Document" and len(types) == 5  # L6030 example
    window = {"DateFrom": "2024-09-01", "DateTo": "2025-08-31"}
    chosen = lookups.students[:10]
    medical = data(
        base,
        PRIMARY,
        "LinkedDocuments",
        lookups.headers,
        DocumentTypeName="Medical Report",
        StudentIds=",".join(chosen),
        **window,
    ).json()["DocumentAttachments"]
    assert medical and {row["DocumentTypeName"] for row in medical} == {"Medical Report"}
    assert {row["StudentId"] for row in medical} <= set(chosen)
    everyone = data(
        base,
        PRIMARY,
        "LinkedDocuments",
        lookups.headers,
        DocumentTypeName="Medical Report",
        StudentIds=",".join(lookups.students),
        **window,
    ).json()["DocumentAttachments"]
    assert [r for r in everyone if r["StudentId"] in chosen] == medical
    by_id = data(
        base,
        PRIMARY,
        "LinkedDocuments",
        lookups.headers,
        DocumentTypeId=types[1]["Id"],
        StudentIds=",".join(chosen),
        **window,
    ).json()["DocumentAttachments"]
    assert by_id == medical  # the parameter list's DocumentTypeId (an Id of the lookup) means the same type
    staff = data(
        base,
        PRIMARY,
        "StaffLinkedDocuments",
        lookups.headers,
        DocumentTypeName="General Document",
        StaffIds=",".join(lookups.staff),
        **window,
    ).json()["DocumentAttachments"]
    assert staff and {row["StaffId"] for row in staff} <= set(lookups.staff)


def test_assessment_and_exam_filters(base, app):
    lookups = Lookups(base, PRIMARY)
    window = {"ResultDateFrom": "2024-09-01", "ResultDateTo": "2025-07-31"}
    aspects = lookups.aspects[:3]
    by_aspect = data(
        base, PRIMARY, "AssessmentResultsByAspect", lookups.headers, Aspects=",".join(aspects), **window
    ).json()["assessmentresults"]
    assert by_aspect and {row["AspectId"] for row in by_aspect} <= set(aspects)
    one = by_aspect[0]
    paired = data(
        base,
        PRIMARY,
        "AssessmentResultsByAspect",
        lookups.headers,
        Aspects=f"{one['AspectId']}|{one['ResultSetId']}",
        **window,
    ).json()["assessmentresults"]
    assert one in paired and all(r["ResultSetId"] == one["ResultSetId"] for r in paired)
    marksheets = {
        m: data(
            base, PRIMARY, "AssessmentResultsByMarksheet", lookups.headers, Marksheets=m, **window
        ).json()["assessmentresults"]
        for m in lookups.marksheets[:4]
    }
    assert len({tuple(r["Id"] for r in rows) for rows in marksheets.values()}) > 1  # each marksheet its own
    nowhere = data(base, PRIMARY, "AssessmentResultsByMarksheet", lookups.headers, Marksheets="0.0", **window)
    assert nowhere.json()["assessmentresults"] == []
    # assessment results: filters are additive (a union), Resultsets overrides the others (L1137)
    students = lookups.students[:5]
    s_rows = data(
        base, PRIMARY, "assessmentresults", lookups.headers, Students=",".join(students), **window
    ).json()
    a_rows = data(base, PRIMARY, "assessmentresults", lookups.headers, Aspects=aspects[0], **window).json()
    union = data(
        base,
        PRIMARY,
        "assessmentresults",
        lookups.headers,
        Students=",".join(students),
        Aspects=aspects[0],
        **window,
    ).json()["assessmentresults"]
    assert {r["Id"] for r in union} == {
        r["Id"] for r in s_rows["assessmentresults"] + a_rows["assessmentresults"]
    }
    resultset = a_rows["assessmentresults"][0]["ResultSetId"]  # a resultset of this endpoint's results
    overridden = data(
        base,
        PRIMARY,
        "assessmentresults",
        lookups.headers,
        Students=",".join(students),
        Resultsets=resultset,
        **window,
    ).json()["assessmentresults"]
    assert overridden and {r["ResultSetId"] for r in overridden} == {resultset}
    exams = data(base, PRIMARY, "ExamResults", lookups.headers, Students=",".join(lookups.students)).json()
    assert {r["StudentId"] for r in exams["ExamResults"]} <= set(lookups.students)
    seasons = ids(base, PRIMARY, "ExamsStructure", "ExamSeasons", lookups.headers)
    by_season = data(
        base,
        PRIMARY,
        "ExamResults",
        lookups.headers,
        Seasons=seasons[0],
        ResultDateBetween="2015-01-01|2025-12-31",
    ).json()["ExamResults"]
    assert by_season and {r["ExamSeasonId"] for r in by_season} == {seasons[0]}


def test_per_person_and_per_year_filters(base, app):
    lookups = Lookups(base, PRIMARY)
    window = {"DateFrom": "2025-01-01", "DateTo": "2025-06-30"}
    timetables = {
        s: [
            r["Id"]
            for r in data(base, PRIMARY, "TimetableForStudent", lookups.headers, Id=s, **window).json()[
                "Lessons"
            ]
        ]
        for s in lookups.students[:3]
    }
    assert all(timetables.values()) and len({tuple(v) for v in timetables.values()}) == 3
    again = data(
        base, PRIMARY, "TimetableForStudent", lookups.headers, Id=lookups.students[0], **window
    ).json()
    assert [r["Id"] for r in again["Lessons"]] == timetables[lookups.students[0]]
    stranger = data(
        base, PRIMARY, "TimetableForStudent", lookups.headers, Id="not-a-student", **window
    ).json()
    assert stranger["Lessons"] == [] and stranger["LessonStaff"] == []
    staff = data(base, PRIMARY, "TimetableForStaff", lookups.headers, Id=lookups.staff[0], **window).json()[
        "Lessons"
    ]
    assert staff
    years = {
        y: data(base, PRIMARY, "HistoricalAttendanceSummary", lookups.headers, SchoolYear=y).json()[
            "HistoricalAttendanceSummary"
        ]
        for y in ("2022", "2023", "2024")
    }
    assert len({tuple(r["Id"] for r in rows) for rows in years.values()}) == 3
    assert (
        data(
            base, PRIMARY, "HistoricalAttendanceSummary", lookups.headers, SchoolYear="2023/24", **STRICT
        ).status_code
        == 400
    )
    ks4 = data(base, PRIMARY, "discountcodes", lookups.headers, KeyStage="KS4").json()["discountcodes"]
    ks5 = data(base, PRIMARY, "discountcodes", lookups.headers, KeyStage="KS5").json()["discountcodes"]
    assert ks4 and ks5 and ks4 != ks5
    assert list(ks4[0]) == fields_named("DiscountCodes")  # the KS4 section's fields (L5625)
    assert data(base, PRIMARY, "discountcodes", lookups.headers, KeyStage="KS3", **STRICT).status_code == 400


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


def test_not_ready_is_a_dbstatus_result_set_as_the_document_writes_it(base, app, sandbox):
    """L611: "we will call you back with the DBStatus object"; the emulator used to answer `DbStatus`."""
    headers = auth(base, PRIMARY)
    sandbox.faults.add("not_ready", vendor="xporter", match="Students", times=2)
    first = data(base, PRIMARY, "Students", headers=headers)
    assert first.status_code == 200
    assert first.json() == {
        "DBStatus": [
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
    assert "DBStatus" in data(base, ACADEMY, "Contacts").json()
    assert "Contacts" in data(base, PRIMARY, "Contacts", headers=headers).json()


def test_only_get_db_status_probes_without_the_data(base, app, sandbox):
    """L5373: "check the status of the data for any other request by passing onlyGetDBStatus=true";
    L5375: the meta result set tells when the data behind the endpoint was last updated."""
    app.set_knobs(data_age_days={PRIMARY: 2})
    headers = auth(base, PRIMARY)
    probe = data(base, PRIMARY, "Students", headers=headers, onlyGetDBStatus="true", **STRICT)
    assert probe.status_code == 200
    body = probe.json()
    assert set(body) == {"DBStatus", "meta"} and body["DBStatus"][0]["Status"] == "Ready"
    refreshed = datetime.fromisoformat(body["meta"][0]["DateTime"])
    assert 1 <= (datetime.now(UTC).replace(tzinfo=None) - refreshed).days <= 2
    assert data(base, PRIMARY, "Students", headers=headers).json()["meta"] == body["meta"]
    sandbox.faults.add("not_ready", vendor="xporter", match="Contacts", times=2)
    waiting = data(base, PRIMARY, "Contacts", headers=headers, onlyGetDBStatus="true", **STRICT)
    assert waiting.status_code == 200 and waiting.json()["DBStatus"][0]["Status"] == "NotReady"
    # a probe is a request: it used up one of the fault's two times, the data request the other
    assert "DBStatus" in data(base, PRIMARY, "Contacts", headers=headers).json()
    ready = data(base, PRIMARY, "Contacts", headers=headers, onlyGetDBStatus="true")
    assert ready.json()["DBStatus"][0]["Status"] == "Ready"
    assert "Contacts" in data(base, PRIMARY, "Contacts", headers=headers).json()
    no_filter = data(base, PRIMARY, "studentuserdefinedfields", headers=headers, onlyGetDBStatus="true")
    assert no_filter.json()["DBStatus"][0]["Status"] == "Ready"  # a status, not a data request


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
