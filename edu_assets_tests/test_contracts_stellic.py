"""Stellic's contract, from its own documents: every example in them replayed through the client's parsers.

The examples are copied, verbatim and with their line numbers, into ``fixtures/stellic_examples/`` (CI may
not have ``/work/shared``); where ``/work/shared`` exists, the copies are checked against the documents and
the documents are re-scanned, so an example added to them fails here until it is classified.

The partner API document is a text dump of a Redoc page: its samples print a bullet before each key and
collapse nested values (``"data": {`` / ``}`` on the next line). :func:`redoc_json` undoes exactly that
and nothing else. The bulk export guide's examples (kickoff, "processing", "completed") lost their bodies
in the dump: only their headings remain, so those answers are built from the headings' words on the
partner API's documented shape, and say so.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edu_assets.core.errors import VendorAuthError, VendorHTTPError, Where
from edu_assets.core.exports import JobState
from edu_assets.core.http import VendorHTTP
from edu_assets.core.lake import Lake
from edu_assets.core.partition import PartitionId
from edu_assets.core.redact import redact
from edu_assets.core.settings import LakeSettings
from edu_assets.vendors.stellic.catalog import load_catalog, load_partner_reads
from edu_assets.vendors.stellic.client import parse_export_status, parse_kickoff, parse_student_read

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "stellic_examples"
SHARED = Path("/work/shared")
SOURCES = {
    "partner_api": "seeds/stellic-partner-api.txt",
    "bulk_export_guide": "seeds/stellic-bulk-export-guide.txt",
}
WHERE = Where("stellic", "contract")
WRITE = "none: a write endpoint's sample (the client only reads)"

# The samples the client consumes, by their lines in the partner API document.
OPERATIONS = {
    (1232, 1236): "students_by_property (bulk CSV)",
    (1261, 1265): "student_property",
    (1297, 1303): "audit_output",
    (1341, 1347): "custom_audit_output",
    (1378, 1382): "planner_data",
    (2081, 2085): "async export kickoff",
    (2097, 2101): "engagement_score export (CSV)",
    (2121, 2125): "get_export_url",
}


@dataclass(frozen=True)
class Sample:
    lines: tuple[int, int]  # 1-based, inclusive
    kind: str  # request | response
    content_type: str
    verbatim: str


def extract_samples(text: str) -> list[Sample]:
    """Every "Content type" block of a Redoc text dump: its lines, request or response, and text."""
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() != "Content type":
            i += 1
            continue
        start = i + 2 + (lines[i + 2].strip() == "Example")
        end = start
        while end < len(lines) and lines[end].strip():
            end += 1
        heading = next(
            lines[h].strip()
            for h in range(i, -1, -1)
            if lines[h].strip() in ("Request samples", "Response samples")
        )
        out.append(
            Sample(
                (start + 1, end),
                heading.split()[0].lower(),
                lines[i + 1].strip(),
                "\n".join(lines[start:end]),
            )
        )
        i = end
    return out


def redoc_json(verbatim: str) -> Any:
    """A Redoc sample as JSON: drop the key bullets, close the collapsed ``{``/``}`` and ``[``/``]`` pairs."""
    text = verbatim.replace("•", "")
    text = re.sub(r"\{\s*\}", "{}", re.sub(r"\[\s*\]", "[]", text))
    return json.loads(text)


def examples() -> dict[str, list[dict[str, Any]]]:
    return json.loads((FIXTURES / "examples.json").read_text(encoding="utf-8"))["examples"]


def example(lines: tuple[int, int]) -> dict[str, Any]:
    return next(e for e in examples()["partner_api"] if tuple(e["lines"]) == lines)


needs_shared = pytest.mark.skipif(
    not (SHARED / "seeds").exists(), reason="/work/shared is not on this machine"
)


# -- the copies are the documents' ------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("doc", sorted(SOURCES))
def test_fixtures_hold_every_example_of_the_documents_verbatim(doc):
    text = (SHARED / SOURCES[doc]).read_text(encoding="utf-8")
    found = [(list(s.lines), s.kind, s.content_type, s.verbatim) for s in extract_samples(text)]
    copied = [
        (e["lines"], e["kind"], e["content_type"], e["verbatim"])
        for e in examples()[doc]
        if e["kind"] != "prose"
    ]
    assert copied == found
    lines = text.split("\n")
    for e in examples()[doc]:  # prose too
        start, end = e["lines"]
        assert "\n".join(lines[start - 1 : end]) == e["verbatim"], e["lines"]


@needs_shared
def test_the_emulators_reference_copy_is_the_shared_one():
    ours = ROOT / "edu_assets" / "sandbox" / "reference" / "stellic" / "bulk_exports.yaml"
    shared = SHARED / "reference" / "stellic" / "bulk_exports.yaml"
    assert hashlib.sha256(ours.read_bytes()).hexdigest() == hashlib.sha256(shared.read_bytes()).hexdigest()


def test_every_sample_is_json_or_csv_lines_and_is_classified():
    samples = [e for doc in examples().values() for e in doc if e["kind"] != "prose"]
    assert len(samples) == 50 and not [e for e in examples()["bulk_export_guide"] if e["kind"] != "prose"]
    for e in samples:
        body = redoc_json(e["verbatim"])
        consumed = OPERATIONS.get(tuple(e["lines"]))
        assert e["consumer"] == (consumed or WRITE), e["lines"]
        if e["content_type"] == "text/csv":
            assert all(isinstance(line, str) for line in body)
        elif consumed is None:  # a write: only a request body or its acknowledgement
            assert e["kind"] == "request" or isinstance(body, dict)


# -- the emulator's contract is the documents', not the client's ------------------------------------


def test_the_emulator_never_reads_the_clients_catalog():
    for path in (ROOT / "edu_assets" / "sandbox").glob("stellic*.py"):
        source = path.read_text(encoding="utf-8")
        assert "vendors" not in source and "catalog.yaml" not in source, path.name


def test_the_emulators_exports_are_the_documents():
    from edu_assets.sandbox.stellic_exports import EXPORTS

    ref = yaml.safe_load((ROOT / "edu_assets/sandbox/reference/stellic/bulk_exports.yaml").read_text())
    documented = {d["name"]: d for d in ref["data_types"]}
    assert set(EXPORTS) == set(documented)
    for name, export in EXPORTS.items():
        assert export.flow == documented[name]["default_flow"]
        want = [
            (p["name"], bool(p["required"]), p.get("default"), tuple(p.get("allowed_values") or ()))
            for p in documented[name]["parameters"] or []
        ]
        assert [(p.name, p.required, p.default, p.choices) for p in export.params] == want, name


def test_a_parameter_the_document_requires_has_no_client_default():
    ref = yaml.safe_load((ROOT / "edu_assets/sandbox/reference/stellic/bulk_exports.yaml").read_text())
    documented = {d["name"]: {p["name"]: p for p in d["parameters"] or []} for d in ref["data_types"]}
    for spec in load_catalog():
        if spec.api != "bulk":
            continue
        for p in spec.params:
            doc = documented[spec.name].get(p.name)
            assert doc is not None, f"{spec.name}.{p.name} is not a documented parameter"
            assert p.required == bool(doc["required"]), f"{spec.name}.{p.name}"
            if doc["required"]:
                assert p.default is None, f"{spec.name}.{p.name}: a silent default for a required parameter"
    plan = next(s for s in load_catalog() if s.name == "plan_courses")
    assert [p.name for p in plan.required_params] == ["mode"]  # guide L246-250


def test_the_catalogs_result_sets_are_the_documents_sample_keys():
    reads = {r.name: r for r in load_partner_reads()[0]}
    for name, lines, prop in [
        ("partner_student_property", (1261, 1265), "engagement_score"),
        ("partner_audit_output", (1297, 1303), "unmatched"),
        ("partner_custom_audit_output", (1341, 1347), "unmatched"),
        ("partner_planner_data", (1378, 1382), "future"),
    ]:
        sample = redoc_json(example(lines)["verbatim"])
        assert reads[name].result_sets[prop] == tuple(k for k in sample if k != "success"), name
    assert reads["partner_audit_output"].result_sets["progress"] is None  # the document shows no sample


# -- replayed through the client's parsers -----------------------------------------------------------


@pytest.mark.parametrize("lines", [(1232, 1236), (2097, 2101)])
def test_csv_samples_land_as_typed_rows(tmp_path, lines):
    csv_lines = redoc_json(example(lines)["verbatim"])
    src = tmp_path / "sample.csv"
    src.write_text("\r\n".join(csv_lines) + "\r\n", encoding="utf-8")
    lake = Lake(LakeSettings(tmp_path / "lake", tmp_path / "edu.duckdb", tmp_path / "work"))
    columns = next(r for r in load_partner_reads()[0] if r.name == "partner_students_by_property").columns
    landed = lake.land_csv(src, WHERE, PartitionId.of("stellic", "sample", {}), expected_columns=columns)
    assert [c.name for c in landed.columns] == ["username", "id", "engagement_score"]
    assert [c.type for c in landed.columns] == ["VARCHAR", "BIGINT", "BIGINT"]
    assert landed.rows == 2 and landed.preview == [
        {"username": "sstanton", "id": 11, "engagement_score": 5},
        {"username": "mabbott", "id": 12, "engagement_score": 3},
    ]
    assert landed.missing_columns == landed.unexpected_columns == []  # " ID" is the documented "ID"


@pytest.mark.parametrize(
    ("read", "lines", "view", "rows", "sets"),
    [
        ("partner_student_property", (1261, 1265), "engagement_score", 1, {"engagement_score": 1}),
        (
            "partner_audit_output",
            (1297, 1303),
            "unmatched.planned",
            0,
            {"unmatched_courses": 0, "counts_for": 0},
        ),
        (
            "partner_custom_audit_output",
            (1341, 1347),
            "unmatched.registered.all",
            0,
            {"unmatched_courses": 0, "counts_for": 0},
        ),
        ("partner_planner_data", (1378, 1382), "future.all", 0, {"future_courses": 0}),
    ],
)
def test_student_read_samples_parse(read, lines, view, rows, sets):
    spec = next(r for r in load_partner_reads()[0] if r.name == read)
    body = redoc_json(example(lines)["verbatim"])
    got = parse_student_read(body, WHERE, username="mabbott", documented=spec.documented_sets(view))
    assert len(got.rows) == rows and got.rows_by_set == sets and got.unknown_sets == []
    if rows:  # the collapsed object is one row of its own (its fields, once Stellic fills them in)
        assert got.rows == [
            {"student_username": "mabbott", "result_set": "engagement_score", "position": None}
        ]
    # the same shape with content: one row per element, the element's fields beside the student's
    filled = {
        k: ([{"course": "CS 101"}, {"course": "MATH 2"}] if isinstance(v, list) else v)
        for k, v in body.items()
    }
    again = parse_student_read(filled, WHERE, username="mabbott", documented=spec.documented_sets(view))
    assert all(r["student_username"] == "mabbott" for r in again.rows)


def test_a_student_answer_without_the_documented_sets_fails_naming_what_came():
    with pytest.raises(
        VendorHTTPError, match=r"none of the documented result sets \['future_courses'\].*'courses'"
    ):
        parse_student_read(
            {"courses": [], "success": True}, WHERE, username="u", documented=("future_courses",)
        )
    with pytest.raises(VendorHTTPError, match="no result set at all"):
        parse_student_read({"success": True}, WHERE, username="u", documented=None)
    extra = parse_student_read(
        {"future_courses": [], "notes": ["x"], "success": True},
        WHERE,
        username="u",
        documented=("future_courses",),
    )
    assert extra.unknown_sets == ["notes"] and extra.rows[0]["value"] == "x"


def test_kickoff_sample():
    body = redoc_json(example((2081, 2085))["verbatim"])
    assert body == {"success": True, "data": {}}
    # as printed, "data" is collapsed: the file_name the guide says to note (KB L128) is not visible
    with pytest.raises(VendorHTTPError, match="no file_name to poll"):
        parse_kickoff(body, WHERE)
    assert parse_kickoff({**body, "data": {"file_name": "permissions-1.csv"}}, WHERE) == "permissions-1.csv"
    assert parse_kickoff({"success": True, "file_name": "x.csv"}, WHERE) == "x.csv"  # at the top: accepted
    with pytest.raises(VendorHTTPError, match="refused the export: nope"):
        parse_kickoff({"success": False, "errors": [{"message": "nope"}]}, WHERE)


URL = "https://stellic-exports.s3.amazonaws.com/f.csv?Expires=1900000000&Signature=abc"


@pytest.mark.parametrize(
    ("source", "body", "state", "url"),
    [
        ("DEV L2121-2125 (verbatim)", None, JobState.PENDING, None),
        (
            "KB1 L138 'Initial Response (processing)'",
            {"success": True, "status": "processing", "url": None},
            JobState.PENDING,
            None,
        ),
        (
            "KB1 L140-142 'Final Response (completed)', copy the url",
            {"success": True, "status": "completed", "url": URL},
            JobState.READY,
            URL,
        ),
        (
            "completed before its URL",
            {"success": True, "status": "completed", "url": None},
            JobState.PENDING,
            None,
        ),
        (
            "a final status the client does not know, with a URL",
            {"success": True, "status": "generated", "url": URL},
            JobState.READY,
            URL,
        ),
        (
            "failure (undocumented)",
            {"success": False, "status": "failed", "url": None, "errors": [{"message": "boom"}]},
            JobState.FAILED,
            None,
        ),
    ],
)
def test_get_export_url_in_each_status(source, body, state, url):
    if body is None:
        body = redoc_json(example((2121, 2125))["verbatim"])
        assert body == {"success": True, "status": "not_started", "url": None}
    status = parse_export_status(body)
    assert status.state is state and status.download_url == url
    assert status.vendor_status.startswith(body["status"])
    if url:
        assert status.url_expires_at == 1900000000.0  # the guide: the URL expires at its Expires (KB1 L150)
    if state is JobState.FAILED:
        assert status.message == "boom"


def _table() -> dict[int, str]:
    """The partner API's response codes and messages (DEV L79-87), from the copied prose."""
    text = next(e for e in examples()["partner_api"] if e["kind"] == "prose" and e["lines"] == [79, 87])[
        "verbatim"
    ]
    definitions = (
        "Success",
        "Created",
        "Bad Request",
        "Unauthorized",
        "Forbidden",
        "Not Found",
        "Too Many Requests",
        "Internal Server Error",
    )
    codes = {}
    for line in text.splitlines()[1:]:  # "404 Not Found Requested resource was not found."
        code, rest = line.split(" ", 1)
        definition = next(d for d in definitions if rest.startswith(d + " "))
        codes[int(code)] = rest[len(definition) + 1 :]
    return codes


@pytest.mark.parametrize("code", [400, 401, 403, 404, 500])
@pytest.mark.parametrize("shape", ["errors", "message", "error", "text"])
def test_documented_error_messages_reach_the_error(code, shape):
    """The document gives each code's message, not the body's shape: every plausible envelope is read."""
    message = _table()[code]
    bodies = {
        "errors": {"success": False, "errors": [{"message": message}]},
        "message": {"message": message},
        "error": {"error": message},
        "text": message,
    }
    request = httpx.Request("GET", "https://x.stellic.com/partnerapi/v1/student/u/engagement_score")
    body = bodies[shape]
    response = (
        httpx.Response(code, json=body, request=request)
        if isinstance(body, dict)
        else httpx.Response(code, text=body, request=request)
    )
    with VendorHTTP("stellic", "https://x.stellic.com") as http:
        error = http.error_for(response, WHERE)
    assert redact(message) in str(error) and error.status == code  # as any message: secrets-like words masked
    assert isinstance(error, VendorAuthError) == (code in (401, 403))
