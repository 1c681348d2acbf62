"""Xporter contract: the vendor document's examples, replayed through the client, and the vendor as the
document shows it, over real HTTP, under real Dagster runs.

The examples are copied verbatim into ``fixtures/xporter_examples`` (with their line numbers; see its
README), so these tests run where the document is not at hand. ``DocVendor`` is a small HTTP server that
answers the way the document does (the STS success example, the GetXodSchools example, school data in the
documented envelope) and lets a test vary what the document leaves open: ``__pagination__`` fields, the
change-token key, ``DBStatus``, ``meta``. The emulator (``edu_assets/sandbox``) is deliberately not used:
what the client accepts is decided by the document.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import dagster as dg
import pyarrow.parquet as pq
import pytest

from edu_assets.core.errors import VendorAuthError, VendorHTTPError, Where
from edu_assets.core.http import VendorHTTP
from edu_assets.core.lake import DATA_FILE, Lake, read_state
from edu_assets.core.partition import PartitionId
from edu_assets.core.settings import LakeSettings
from edu_assets.core.tokens import TokenCache
from edu_assets.vendors.xporter.auth import (
    SchoolUnavailable,
    Secrets,
    mint_token,
    parse_token_response,
    token_request,
)
from edu_assets.vendors.xporter.catalog import load_catalog
from edu_assets.vendors.xporter.client import (
    DataNotReady,
    MissingResultSets,
    XporterClient,
    db_status_of,
    find_change_token,
    meta_last_updated,
    parse_page,
    raise_for_envelope,
)
from edu_assets.vendors.xporter.monitoring import SCHOOL_DATA_FRESH, management_rows
from edu_assets.vendors.xporter.partitions import ESTAB_PARTITIONS
from edu_assets.vendors.xporter.resources import parse_school_register
from edu_assets_tests.helpers import failure_message, materializations, materialize

SHARED = Path("/work/shared")
FIXTURES = Path(__file__).with_name("fixtures") / "xporter_examples"
EXAMPLES: list[dict[str, Any]] = json.loads((FIXTURES / "examples.json").read_text(encoding="utf-8"))[
    "examples"
]
RESULT_SETS: dict[str, Any] = json.loads((FIXTURES / "result_sets.json").read_text(encoding="utf-8"))
ENDPOINTS = {e.name: e for e in load_catalog()[0]}
MANAGEMENT = {m.name: m for m in load_catalog()[1]}
WHERE = Where("xporter", "contract", "school 3281101")
A = "3281101"
NOT_RESULT_SETS = {"meta", "__pagination__"}


def body_of(example: dict[str, Any]) -> Any:
    """An example's JSON. ``redoc`` samples are as ReDoc renders them: the bullets and trailing commas are
    dropped, collapsed arrays/objects stay empty; nothing else changes."""
    text = example["verbatim"]
    if example["kind"] == "redoc":
        text = re.sub(r",(\s*[}\]])", r"\1", text.replace("\u2022", ""))
    return json.loads(text)


def at(line: int) -> dict[str, Any]:
    return next(e for e in EXAMPLES if e["lines"][0] == line)


def scope_of(example: dict[str, Any]) -> str:
    """Which test replays an example, or why none does (every example must land in one of these)."""
    kind, role, section = example["section_kind"], example["role"], example["section"]
    if kind == "auth":
        return "token"
    if kind == "management" and section == "get_xod_schools":
        return "register"
    if kind == "management" and role == "response_sample" and section in MANAGEMENT:
        return "management"
    if kind == "read" and role == "response_sample":
        return "data"
    if kind == "read" and role == "callback_sample":
        return "out of scope: callback payload (no callbackUrl is ever sent)"
    if kind == "management":
        return "out of scope: invite/revoke (the platform neither invites nor revokes schools)"
    if kind in ("writeback", "callback"):
        return "out of scope: writeback and webhook (the platform only reads)"
    return "unclassified"


# ---------------------------------------------------------------------------------------------- fixture
def test_fixture_is_a_faithful_copy_of_the_document():
    source = SHARED / "seeds" / "xporter-school-data-api.txt"
    if not source.exists():
        pytest.skip(f"{source} is not on this machine; the fixture copy is used as is")
    lines = source.read_text(encoding="utf-8").splitlines()
    for e in EXAMPLES:
        first, last = e["lines"]
        assert "\n".join(lines[first - 1 : last]) == e["verbatim"], e["name"]
    opening = [i + 1 for i, line in enumerate(lines) if line.startswith("{")]
    assert sorted(e["lines"][0] for e in EXAMPLES) == opening  # every example of the document is copied
    for endpoint, names in RESULT_SETS["endpoints"].items():
        for n in names:
            unnamed = "note" in n  # a field table printed under "Fields by Scope" with no heading of its own
            assert (
                lines[n["line"] - 1].startswith("Fields by Scope")
                if unnamed
                else n["name"] in lines[n["line"] - 1]
            ), (endpoint, n)


def test_every_example_is_replayed_or_declared_out_of_scope():
    scopes: dict[str, int] = {}
    for e in EXAMPLES:
        scopes[scope_of(e)] = scopes.get(scope_of(e), 0) + 1
    assert "unclassified" not in scopes
    assert scopes == {
        "token": 5,
        "register": 2,
        "management": 7,
        "data": 94,
        "out of scope: callback payload (no callbackUrl is ever sent)": 94,
        "out of scope: invite/revoke (the platform neither invites nor revokes schools)": 6,
        "out of scope: writeback and webhook (the platform only reads)": 50,
    }
    # a callback payload ("the DBStatus object", L611) is never mistaken for a DBStatus or a result set
    for e in EXAMPLES:
        if scope_of(e).startswith("out of scope: callback"):
            assert body_of(e) == {"result": []} and db_status_of(body_of(e)) is None


# ---------------------------------------------------------------------------------------------- auth
def test_sts_examples_token_failure_and_paused():
    token = parse_token_response(body_of(at(75)), WHERE)
    assert token.value == "JhS0X....esMbPoHUOY="
    assert token.expires_at == dt.datetime(2021, 4, 17, 9, 34, 46, 402555, tzinfo=dt.UTC)
    with pytest.raises(VendorAuthError, match="Relying Party not found for estab or secret not correct"):
        parse_token_response(body_of(at(88)), WHERE)
    with pytest.raises(SchoolUnavailable) as paused:
        parse_token_response(body_of(at(99)), WHERE)
    assert paused.value.reason == "paused" and "finalises the selection of people" in str(paused.value)
    with pytest.raises(VendorAuthError, match="the STS sent no token"):  # the schema sample: "token": {}
        parse_token_response(body_of(at(137)), WHERE)
    assert set(token_request(A, "app.example.dev", "s")) == set(body_of(at(126)))


# ---------------------------------------------------------------------------------------------- management
def test_get_xod_schools_example_and_sample():
    schools = {s.estab: s for s in parse_school_register(body_of(at(294)))}
    assert {e: s.status for e, s in schools.items()} == {
        "3281101": "authorised",
        "3281102": "authorised",
        "3281103": "revoked",
        "3281110": "pending",
    }
    assert schools["3281101"].scopes == {
        "Address",
        "AgencyAgent",
        "AssessmentResults",
        "Attendance",
        "Conduct",
        "Photos",
        "Staff",
    }
    assert (
        schools["3281103"].since == "2019-05-13T00:00:00"
        and schools["3281110"].since == "2018-06-26T10:25:37"
    )
    assert parse_school_register(body_of(at(349))) == []  # the schema sample: three empty arrays


def test_management_samples_their_envelope_and_data_arrays():
    samples = [e for e in EXAMPLES if scope_of(e) == "management"]
    assert {e["section"] for e in samples} == set(MANAGEMENT)
    for e in samples:
        m, body = MANAGEMENT[e["section"]], body_of(e)
        if m.result_set is None:  # TokenDetails: the object itself, no envelope
            raise_for_envelope(body, WHERE)
            continue
        # ReDoc fills every string with "string": a set ExceptionMessage is an error, whatever the status
        with pytest.raises(VendorHTTPError, match="Xporter returned string: string"):
            raise_for_envelope(body, WHERE)
        ok = {
            **body,
            "Message": None,
            "ExceptionType": None,
            "ExceptionMessage": None,
            "InnerException": None,
        }
        raise_for_envelope(ok, WHERE)
        assert management_rows(ok, m, WHERE) == []  # an explicit empty array: zero rows, not a failure
        with pytest.raises(
            MissingResultSets, match=rf"no {m.result_set} array; the vendor sent the keys: .*ExceptionMessage"
        ):
            management_rows({k: v for k, v in ok.items() if k != m.result_set}, m, WHERE)


def test_every_envelope_in_the_document_is_an_error_exactly_when_exception_message_is_set():
    checked = 0
    for e in EXAMPLES:
        body = body_of(e)
        if not isinstance(body, dict) or "ExceptionMessage" not in body or "token" in body:
            continue
        checked += 1
        if body["ExceptionMessage"]:
            with pytest.raises(VendorHTTPError):
                raise_for_envelope(body, WHERE)
        else:  # the writeback acknowledgements: "Message": "success"
            raise_for_envelope(body, WHERE)
    assert checked >= 10
    with pytest.raises(VendorHTTPError, match="string: string"):  # testerror's sample (L7166)
        raise_for_envelope(body_of(at(7166)), WHERE)


# ---------------------------------------------------------------------------------------------- result sets
def test_every_result_set_name_the_document_gives_routes_to_a_table():
    documented = RESULT_SETS["endpoints"]
    assert set(ENDPOINTS) - set(documented) == {"test_error"}  # its only sample is the error envelope
    unrouted = []
    for endpoint, names in documented.items():
        ep = ENDPOINTS[endpoint]
        for n in names:
            table = ep.table_for(n["name"])
            if table is None:
                unrouted.append(f"{endpoint}: {n['name']} ({n['from']} L{n['line']})")
            elif n["from"] == "fields":
                assert table.name.lower() == n["name"].lower(), n
            assert ep.table_for(n["name"].upper()) is table and ep.table_for(n["name"].lower()) is table
    assert unrouted == []
    # the issue's examples (L5344, L5097, L10669, L13889, L4297, L7700)
    pairs = {
        ("groups", "Group"): "Groups",
        ("group_history", "GroupHistory"): "Groups",
        ("post16_study", "Post16Study"): "StudentPost16Study",
        ("timetable_structure", "TTDays"): "TimetableDays",
        ("exam_structure", "GradesetHistories"): "GradeSetHistory",
        ("conduct_points", "ConductTypes"): "ConductPoints",
        ("student_exclusions", "StudentSchoolHistory"): "StudentExclusions",
        ("timetable_for_staff", "LessonStaff"): "LessonStaff",
    }
    for (endpoint, name), table in pairs.items():
        assert ENDPOINTS[endpoint].table_for(name).name == table
    # naming an extra result set never renamed an endpoint's main asset
    assert ENDPOINTS["students"].asset_name(ENDPOINTS["students"].tables[0]) == "students"


# ---------------------------------------------------------------------------------------------- vendor
class DocVendor:
    """The vendor as the document shows it, over real HTTP.

    The STS answers with the success example's shape (L75, a fresh expiry), GetXodSchools with its example
    (L294), and ``/api/v1/School/{estab}/{Endpoint}/`` with ``respond(endpoint, query) -> body``. Every
    request is recorded."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.respond: Callable[[str, dict[str, str]], Any] = lambda endpoint, query: {}
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:  # the STS
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expires = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
                self._answer(200, {**body_of(at(75)), "expires": expires})

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = dict(parse_qsl(url.query))
                vendor.requests.append({"path": url.path, "query": query})
                if url.path.endswith("/GetXodSchools"):
                    return self._answer(200, body_of(at(294)))
                m = re.fullmatch(r"/api/v1/School/(\d+)/([^/]+)/", url.path)
                if not m:
                    return self._answer(404, {"Message": "not found", "ExceptionMessage": "no such endpoint"})
                self._answer(200, vendor.respond(m.group(2), query))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def data_calls(self, endpoint: str) -> list[dict[str, str]]:
        return [
            r["query"]
            for r in self.requests
            if f"/{endpoint}/" in r["path"] and "onlyGetDBStatus" not in r["query"]
        ]

    def probes(self, endpoint: str) -> list[dict[str, str]]:
        return [
            r["query"]
            for r in self.requests
            if f"/{endpoint}/" in r["path"] and "onlyGetDBStatus" in r["query"]
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def vendor() -> Iterator[DocVendor]:
    v = DocVendor()
    try:
        yield v
    finally:
        v.close()


def client_for(vendor: DocVendor, page_size: int = 5) -> XporterClient:
    """A real client (real STS call, token cache, retries) against the document's vendor."""
    sts = VendorHTTP("xporter-sts", vendor.url)
    secrets = Secrets("app.example.dev", "management-secret", {A: "school-secret"})
    tokens = TokenCache(lambda scope: mint_token(sts, f"{vendor.url}/idaas/sts/STS/GetToken", secrets, scope))
    return XporterClient(vendor.url, tokens, A, page_size=page_size, page_concurrency=2)


def rows(n: int, prefix: str = "") -> list[dict[str, Any]]:
    return [{"Id": f"{prefix}{i}", "Name": f"row {i}"} for i in range(1, n + 1)]


def page_of(
    sets: dict[str, list[dict[str, Any]]],
    query: dict[str, str],
    *,
    pagination: str = "none",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One page of ``sets`` for ``query``'s page/pagesize; ``pagination``: none (the block is
    undocumented), rowcount (RowCount only) or full (PageCount and RowCount)."""
    number, size = int(query.get("page", 1)), int(query.get("pagesize", 100011))
    body: dict[str, Any] = {name: r[(number - 1) * size : number * size] for name, r in sets.items()}
    total = max((len(r) for r in sets.values()), default=0)
    if pagination == "rowcount":
        body["__pagination__"] = [{"RowCount": total}]
    elif pagination == "full":
        body["__pagination__"] = [
            {"PageSize": size, "PageNumber": number, "PageCount": -(-total // size), "RowCount": total}
        ]
    return {**body, **(extra or {})}


# ---------------------------------------------------------------------------------------------- data pages
def test_every_read_response_sample_replays_through_fetch(vendor):
    client = client_for(vendor)
    samples = [e for e in EXAMPLES if scope_of(e) == "data"]
    try:
        for e in samples:
            ep, body = ENDPOINTS[e["section"]], body_of(e)
            vendor.respond = lambda endpoint, query, _b=body: _b
            if ep.name == "test_error":
                with pytest.raises(VendorHTTPError, match="string: string"):
                    client.fetch(ep.path, {}, WHERE, lambda n, r: None, result_sets=ep.result_set_names)
                continue
            landed: dict[str, int] = {}
            summary = client.fetch(
                ep.path,
                {},
                WHERE,
                lambda n, r, _l=landed: _l.__setitem__(n, len(r)),
                result_sets=ep.result_set_names,
            )
            sent = [k for k in body if k not in NOT_RESULT_SETS]
            assert list(landed) == sent and set(landed.values()) <= {0}, e["name"]  # explicit empty arrays
            assert summary.pages == 1 and all(ep.table_for(n) is not None for n in sent), e["name"]
    finally:
        client.close()
    assert len(samples) == 94


def test_paging_without_page_count_keeps_going_until_a_short_or_empty_page(vendor):
    client = client_for(vendor, page_size=5)
    try:
        for total, pages in ((12, 3), (10, 3), (5, 2), (3, 1), (0, 1)):
            vendor.requests.clear()
            data = {"Staff": rows(total)}
            vendor.respond = lambda endpoint, query, _d=data: page_of(_d, query)
            got: list[dict] = []
            summary = client.fetch(
                "Staff", {}, WHERE, lambda n, r, _g=got: _g.extend(r), result_sets=["Staff"]
            )
            assert [q["page"] for q in vendor.data_calls("Staff")] == [str(p) for p in range(1, pages + 1)]
            assert len(got) == total and summary.pages == pages
            assert summary.paging == "until a short page (no PageCount)"
        # RowCount without PageCount: the end is still a short page, and the total is checked
        data = {"Staff": rows(12)}
        vendor.respond = lambda endpoint, query: page_of(data, query, pagination="rowcount")
        assert client.fetch("Staff", {}, WHERE, lambda n, r: None).reported_rows == 12
        vendor.respond = lambda endpoint, query: {
            **page_of(data, query),
            "__pagination__": [{"rowCount": 13}],
        }
        with pytest.raises(VendorHTTPError, match="paging returned 12 rows but the server reported 13"):
            client.fetch("Staff", {}, WHERE, lambda n, r: None)
        # a server that ignores page/pagesize and says nothing would loop for ever: it is caught instead
        vendor.respond = lambda endpoint, query: {"Staff": rows(7)}
        with pytest.raises(VendorHTTPError, match="page 2 repeated page 1"):
            client.fetch("Staff", {}, WHERE, lambda n, r: None)
        # with PageCount (any case), pages 2.. are fetched concurrently
        vendor.respond = lambda endpoint, query: page_of(data, query, pagination="full")
        summary = client.fetch("Staff", {}, WHERE, lambda n, r: None)
        assert summary.paging == "PageCount" and summary.pages == 3 and summary.reported_rows == 12
    finally:
        client.close()


def test_change_token_spellings_are_accepted_and_recorded(vendor):
    spellings = {
        "__changed_rows__[0].next_changed_rows": {"__changed_rows__": [{"next_changed_rows": "t1"}]},
        "__changed_rows__[0].NextChangedRows": {"__changed_rows__": [{"NextChangedRows": "t1"}]},
        "changedRows": {"changedRows": "t1"},
        "NextChangedRows": {"NextChangedRows": "t1"},
        "__ChangedRows__.token": {"__ChangedRows__": {"token": "t1"}},
        "ChangedRowsToken": {"ChangedRowsToken": "t1"},
        "meta[0].changedRows": {"meta": [{"Id": 1, "changedRows": "t1"}]},
    }
    for key, body in spellings.items():
        assert find_change_token({"Staff": [], **body}) == ("t1", key)
        assert parse_page({"Staff": [], **body}, WHERE).sets == {"Staff": []}  # the token is no result set
    assert find_change_token({"Staff": [], "meta": []}) == (None, None)
    client = client_for(vendor)
    try:
        vendor.respond = lambda endpoint, query: {"Staff": rows(2), "changedRows": "abc"}
        summary = client.fetch("Staff", {"changedRows": "*"}, WHERE, lambda n, r: None)
        assert (summary.next_token, summary.token_key, summary.change_set) == ("abc", "changedRows", True)
    finally:
        client.close()


def test_documented_dbstatus_in_any_case_and_the_onlyGetDBStatus_probe(vendor, caplog):
    for key in ("DBStatus", "DbStatus", "dbstatus", "DBSTATUS"):
        status = db_status_of({key: [{"Status": "NotReady", "Message": "refreshing"}]})
        assert (status.key, status.status, status.ready) == (key, "NotReady", False)
        with pytest.raises(DataNotReady, match=f"{key} 'NotReady': refreshing"):
            parse_page({key: [{"Status": "NotReady", "Message": "refreshing"}]}, WHERE)
    assert db_status_of({"DBStatus": "Ready"}).ready is True
    assert db_status_of({"DBStatus": {"State": "processing"}}).ready is False
    # a DBStatus in a data response is never taken for a result set, even with a status we do not know
    with pytest.raises(DataNotReady, match="does not know as ready"):
        parse_page({"DBStatus": [{"Status": "Rebuilding cache"}]}, WHERE)
    client = client_for(vendor)
    try:
        answers = iter(
            [
                {"DBStatus": [{"Status": "Pending"}]},
                {"DBStatus": [{"Status": "Ready"}]},
                {"DBStatus": [{"Status": "Rebuilding cache"}]},
                {"Staff": rows(1)},
            ]
        )
        vendor.respond = lambda endpoint, query: next(answers)
        with pytest.raises(DataNotReady, match="'Pending'"):
            client.probe("Staff", {"changedRows": "*", "select": "Id"}, WHERE)
        assert client.probe("Staff", {}, WHERE).ready is True
        with caplog.at_level(logging.WARNING):
            assert client.probe("Staff", {}, WHERE).ready is None  # unknown word: load anyway, say so
        assert client.probe("Staff", {}, WHERE) is None  # the vendor ignored the flag and sent data
        probes = vendor.probes("Staff")
        assert probes[0] == {
            "select": "Id",
            "onlyGetDBStatus": "true",
            "page": "1",
            "pagesize": "1",
            "httpstatuscodes": "true",
        }  # never changedRows: a probe moves no change set
    finally:
        client.close()


def test_meta_last_updated_in_its_plausible_spellings():
    assert meta_last_updated(
        [{"Id": 1, "MIS": "simsnet", "Version": "4", "DateTime": "2026-03-01T02:00:00"}]
    ) == ("2026-03-01T02:00:00+00:00", "DateTime")
    assert meta_last_updated([{"LastUpdated": "2026-03-01T02:00:00.1234567Z", "DateTime": "2020-01-01"}]) == (
        "2026-03-01T02:00:00.123456+00:00",
        "LastUpdated",
    )
    assert meta_last_updated([{"DataRefreshedOn": "/Date(1772330400000)/"}]) == (
        "2026-03-01T02:00:00+00:00",
        "DataRefreshedOn",
    )
    assert meta_last_updated([{"Id": 1, "MIS": "simsnet"}]) is None and meta_last_updated([]) is None


def test_zero_result_sets_fail_before_anything_is_handed_on(vendor):
    client = client_for(vendor)
    try:
        vendor.respond = lambda endpoint, query: {"Employees": rows(3), "meta": [], "__pagination__": []}
        handed: list[str] = []
        with pytest.raises(MissingResultSets) as missing:
            client.fetch(
                "Staff", {}, WHERE, lambda n, r: handed.append(n), result_sets=["Staff", "StaffVehicles"]
            )
        assert handed == []
        text = str(missing.value)
        assert "[xporter] contract (partition school 3281101)" in text
        assert "the vendor sent the keys: Employees, meta, __pagination__" in text
        assert (
            "previous data is kept" in text and "aliases in edu_assets/vendors/xporter/catalog.yaml" in text
        )
        vendor.respond = lambda endpoint, query: {}  # nothing at all
        with pytest.raises(MissingResultSets, match=r"sent the keys: none \(an empty object\)"):
            client.fetch("Staff", {}, WHERE, lambda n, r: None, result_sets=["Staff"])
        vendor.respond = lambda endpoint, query: {"STAFF": []}  # an explicit "no rows", in any case
        assert client.fetch("Staff", {}, WHERE, lambda n, r: None, result_sets=["Staff"]).received == {
            "STAFF": 0
        }
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture
def doc_defs(vendor, unconfigured, lake_env, instance, monkeypatch) -> dg.Definitions:
    """Definitions in live mode against ``DocVendor`` (school 3281101 of the GetXodSchools example)."""
    monkeypatch.setenv("XPORTER_BASE_URL", vendor.url)
    monkeypatch.setenv("XPORTER_STS_URL", f"{vendor.url}/idaas/sts/STS/GetToken")
    monkeypatch.setenv("XPORTER_RELYING_PARTY", "app.example.dev")
    monkeypatch.setenv("XPORTER_SCHOOL_SECRETS", json.dumps({A: "school-secret"}))
    monkeypatch.setenv("XPORTER_MANAGEMENT_SECRET", "management-secret")
    instance.add_dynamic_partitions(ESTAB_PARTITIONS, [A])
    from edu_assets.definitions import build_definitions

    return build_definitions()


def lake_file(lake_env: Path, asset: str) -> Path:
    return lake_env / "lake" / "xporter" / asset / f"estab={A}" / DATA_FILE


def staff_sets(n: int) -> dict[str, list[dict[str, Any]]]:
    """The Staff sample's result sets (L11965), ``StaffVehicles`` as the sample spells it."""
    return {
        "Staff": rows(n, "s"),
        "StaffHierarchy": rows(1, "h"),
        "StaffVehicles": rows(2, "v"),
        "StaffNextOfKin": [],
        "StaffSWAC": [],
    }


def test_a_response_without_documented_result_sets_fails_and_keeps_the_landed_data(
    vendor, doc_defs, instance, lake_env
):
    now = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None).isoformat()

    def answer(endpoint: str, query: dict[str, str]) -> Any:
        if query.get("onlyGetDBStatus"):
            return {"DBStatus": [{"Status": "Ready"}]}
        return page_of(
            staff_sets(7),
            query,
            extra={
                "meta": [{"Id": 1, "MIS": "simsnet", "DateTime": now}],
                "__changed_rows__": [{"next_changed_rows": "tok-1"}],
            },
        )

    vendor.respond = answer
    assert materialize(doc_defs, instance, "xporter/staff__staff", A).success
    assert pq.read_table(lake_file(lake_env, "staff__staff")).num_rows == 7
    # the sample's spelling StaffVehicles lands in the StaffMotorVehicles table
    assert pq.read_table(lake_file(lake_env, "staff__staff_motor_vehicles")).num_rows == 2
    md = materializations(instance, "xporter/staff__staff", A)[0].metadata
    assert (
        md["vendor_data_updated"].value == now + "+00:00"
        and md["vendor_data_updated_field"].value == "DateTime"
    )
    assert "db_status" not in md  # ready at the first attempt: no onlyGetDBStatus probe
    assert md["change_token_key"].value == "__changed_rows__[0].next_changed_rows"
    assert md["paging"].value == "until a short page (no PageCount)"
    assert read_state(lake_file(lake_env, "staff__staff"))["vendor_data_updated"] == now + "+00:00"

    vendor.respond = lambda endpoint, query: {"Employees": rows(3), "meta": []}
    failed = materialize(doc_defs, instance, "xporter/staff__staff", A, config={"full_refresh": True})
    assert not failed.success
    message = failure_message(failed)
    assert (
        "[xporter] staff (partition school 3281101)" in message
        and "sent the keys: Employees, meta" in message
    )
    assert pq.read_table(lake_file(lake_env, "staff__staff")).num_rows == 7  # the previous file is kept
    assert pq.read_table(lake_file(lake_env, "staff__staff_motor_vehicles")).num_rows == 2

    # explicit empty arrays under the documented names are "no rows"; an unknown extra set is reported,
    # and a table the response did not carry is flagged where it lands empty
    vendor.respond = lambda endpoint, query: {
        "Staff": [],
        "StaffHierarchy": [],
        "StaffVehicles": [],
        "StaffNextOfKin": [],
        "Contractors": rows(2),
    }
    assert materialize(doc_defs, instance, "xporter/staff__staff", A, config={"full_refresh": True}).success
    assert pq.read_table(lake_file(lake_env, "staff__staff")).num_rows == 0
    md = materializations(instance, "xporter/staff__staff", A)[0].metadata
    assert md["unexpected_result_sets"].value == "Contractors (2 rows)" and "result_set" not in md
    swac = materializations(instance, "xporter/staff__staff_swac", A)[0].metadata
    assert swac["result_set"].value == "absent from the vendor's response: landed with 0 rows"
    assert md["change_token_key"].value == "none returned: the next run reloads everything"
    vendor.respond = answer
    again = materialize(doc_defs, instance, "xporter/staff__staff", A)
    assert again.success and [q.get("changedRows") for q in vendor.data_calls("Staff")][-1] == "*"
    md = materializations(instance, "xporter/staff__staff", A)[0].metadata
    assert md["change_set_reason"].value == "the last change-set response carried no next changedRows token"


def test_not_ready_probe_lands_nothing_until_ready_then_loads(vendor, doc_defs, instance, lake_env):
    probes = iter(["NotReady", "Ready"])
    data_calls = iter(range(100))

    def answer(endpoint: str, query: dict[str, str]) -> Any:
        if query.get("onlyGetDBStatus"):
            return {"DBStatus": [{"Status": next(probes), "Message": "School data is being refreshed"}]}
        if next(data_calls) == 0:  # the first attempt's data call: the vendor is refreshing
            return {"DBStatus": [{"Status": "NotReady", "Message": "School data is being refreshed"}]}
        return page_of(staff_sets(3), query)

    vendor.respond = answer
    result = materialize(
        doc_defs,
        instance,
        "xporter/staff__staff",
        A,
        config={"not_ready_retries": 2, "not_ready_wait_seconds": 0.05},
    )
    assert result.success
    assert len(vendor.probes("Staff")) == 2
    order = [
        "probe" if "onlyGetDBStatus" in r["query"] else "data"
        for r in vendor.requests
        if "/Staff/" in r["path"]
    ]
    # the data call said "not ready"; retries probe (cheap) and request data only once the probe says ready
    assert order == ["data", "probe", "probe", "data"]
    assert pq.read_table(lake_file(lake_env, "staff__staff")).num_rows == 3


def test_probe_before_every_load_asks_the_cheap_probe_first(vendor, doc_defs, instance, lake_env):
    def answer(endpoint: str, query: dict[str, str]) -> Any:
        if query.get("onlyGetDBStatus"):
            return {"DBStatus": [{"Status": "Ready"}]}
        return page_of(staff_sets(3), query)

    vendor.respond = answer
    config = {"probe_before_every_load": True}
    assert materialize(doc_defs, instance, "xporter/staff__staff", A, config=config).success
    order = ["probe" if "onlyGetDBStatus" in r["query"] else "data" for r in vendor.requests if "/Staff/" in r["path"]]
    assert order == ["probe", "data"]
    md = materializations(instance, "xporter/staff__staff", A)[0].metadata
    assert md["db_status"].value == "DBStatus 'Ready'"


def test_freshness_check_reads_the_meta_last_updated_time(tmp_path, monkeypatch):
    monkeypatch.setenv("EDU_DATA_DIR", str(tmp_path))
    lake = Lake(LakeSettings.from_env())
    staged = tmp_path / "health.jsonl"
    staged.write_text(
        json.dumps({"SchoolDataStatus": "ok", "SchoolDataAgeDays": 0, "XodStatus": "ok"}) + "\n"
    )
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=9)).isoformat()
    for updated, fresh in ((old, False), (dt.datetime.now(dt.UTC).isoformat(), True), (None, True)):
        state = {"vendor_data_updated": updated} if updated else {}
        landed = lake.land_json(staged, WHERE, PartitionId.of("xporter", "health", {"estab": A}), state=state)
        passed, md, why = SCHOOL_DATA_FRESH.run(landed.path)
        assert passed is fresh, (updated, md)
        if not fresh:
            assert md["meta_age_days"] >= 9 and "meta last updated" in why
