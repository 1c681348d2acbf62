"""The Xporter emulator's schema, read from the vendor document and nothing else.

Source: `reference/xporter_endpoints.yaml`, a copy of the engineering notes' machine-readable
extraction of `xporter-school-data-api.txt` (see its header). The client's catalogue
(`edu_assets/vendors/xporter/catalog.yaml`) is never read: the emulator and the connector must be
two independent readings of the document, or a misreading on both sides goes unseen.

What comes from the file as is: the 87 read endpoints (`kind: read`, duplicates folded), their
paths (`path`, else `path_guess`), field tables and fields with consent scopes, the response
samples' result-set names (`response_keys`), date parameters, `updatedSince` support and options.

What the document only says in prose, or says inconsistently, is written down below as small
tables, each with the line of `xporter-school-data-api.txt` it comes from:
- SAMPLE_SPELLINGS: a sample spells a field table's result set differently (`Group` for `Groups`).
- COPIED_SAMPLE_KEYS: a sample copied from another endpoint that names none of its tables.
- OPTION_RESULT_SETS / OPTION_COLUMNS: result sets and columns an include* option adds.
- FILTER_RULES: the 14 endpoints with mandatory filters, and how each filter selects rows.
- UDF_NAMES / DOCUMENT_TYPES / KEY_STAGES: the values the lookups enumerate (the document gives
  one example each; the rest are the sandbox's own).
Where the document is silent the choice is the emulator's and says so (README / report).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .synth import seed_for
from .xporter_data import (
    ENUM,
    LINKED,
    ROW_DATE,
    ROW_HASH,
    ROW_ID,
    UPDATED,
    VALUE,
    Catalog,
    Column,
    Endpoint,
    Filter,
    FilterRule,
    Table,
    Window,
    split_scopes,
)

__all__ = [
    "COPIED_SAMPLE_KEYS",
    "DOCUMENT_TYPES",
    "DOMAINS",
    "FILTER_RULES",
    "GENERIC_FIELDS",
    "KEY_STAGES",
    "OPTION_COLUMNS",
    "OPTION_RESULT_SETS",
    "REFERENCE_PATH",
    "SAMPLE_SPELLINGS",
    "SOURCE_HINTS",
    "UDF_NAMES",
    "load_reference",
    "load_schema",
]

REFERENCE_PATH = Path(__file__).resolve().parent / "reference" / "xporter_endpoints.yaml"
ENVELOPE_KEYS = frozenset({"meta", "__pagination__"})
# A result set the document names but never lists fields for: the document's own conventions
# ("Ids" of rows in `<Table>_deleted`, LastUpdated/RowHash "for change comparison") and no more.
GENERIC_FIELDS = ("Id", "LastUpdated", "RowHash")
_M64 = (1 << 64) - 1

# A field table's result set as the response sample spells it, where the two differ by more than case.
SAMPLE_SPELLINGS: dict[str, dict[str, str]] = {
    "achievement_for_date_range": {"Achievements": "achievementfordaterange"},  # L633 sample
    "achievement_for_today": {"Achievements": "achievementfordaterange"},  # L775 sample
    "groups": {"Groups": "Group"},  # L5344 sample, L5125 prose "the Group result set"
    "group_history": {"Groups": "GroupHistory"},  # L5097 sample
    "staff": {"StaffMotorVehicles": "StaffVehicles"},
    "sen": {"SENEHCPlans": "SENEHCP", "SENEHCPlanDocuments": "SENEHCPDocuments"},
    "student_medical": {"StudentMedicalEventNotes": "MedicalEventNotes"},
    "post16_study": {"StudentPost16Study": "Post16Study"},  # L10669 sample
    "exam_structure": {"GradeSetHistory": "GradesetHistories"},  # L4297 sample
    "conduct_points": {"ConductPoints": "ConductTypes"},  # L7700 sample
    "student_exclusions": {"StudentExclusions": "StudentSchoolHistory"},  # sample of the section at L8716
    # L13889 sample (TT* keys); the section's field tables are copies of Timetable Model's
    "timetable_structure": {"TimetableDays": "TTDays", "TimetablePeriods": "TTPeriods", "Rooms": "TTRooms"},
}

# Sample keys copied from another endpoint that cannot stand for this endpoint's tables.
COPIED_SAMPLE_KEYS: dict[str, frozenset[str]] = {
    "detentions": frozenset({"counts"}),  # section at L9280: nine documented tables, sample of Counts
}

# Endpoints that take date parameters yet are snapshots: Groups is "active group definitions"
# (L5116) and its prose filters (L5130) have no dates; its parameter list is Group History's.
SNAPSHOTS = frozenset({"groups"})

# Optional windows the document gives a default for (L12959, L13207-13208, L13341-13342).
TIMETABLE_DEFAULT = frozenset({"timetable", "timetable_for_staff", "timetable_for_student"})

# Result sets an option adds, per (endpoint, result set): the option's description says so.
OPTION_RESULT_SETS: dict[tuple[str, str], str] = {
    ("groups", "StandardYearGroupLookup"): "includeStandardYeargroups",  # L5274
    ("group_history", "StandardYearGroupLookup"): "includeStandardYeargroups",
    ("students", "StudentSiblings"): "includeSiblingsResultset",
    ("school_info", "Sites"): "includeSites",
    ("attendance_summary", "MinutesLate"): "includeMinutesLate",
    ("attendance_summary", "AttendanceNotes"): "includeAttendanceNotes",
    ("attendance_summary", "StatutoryComments"): "includeStatutoryComments",
}

# Columns an option adds, per (endpoint, result set). Groups' includeMembersXIDs (L5259) adds
# member XIDs, whose columns the document lists only in Group History's Groups table (L4870
# section), documented there under the same option.
OPTION_COLUMNS: dict[tuple[str, str], dict[str, str]] = {
    ("groups", "Groups"): {"StudentXIDs": "includeMembersXIDs", "StaffXIDs": "includeMembersXIDs"},
    ("group_history", "Groups"): {"StudentXIDs": "includeMembersXIDs", "StaffXIDs": "includeMembersXIDs"},
}
_COLUMNS_FROM: dict[tuple[str, str], tuple[str, str]] = {("groups", "Groups"): ("group_history", "Groups")}

# Lookup values. The document shows one example of each ("Locker Number", "General Document");
# the others are the sandbox's. UDFType values follow the three UDF endpoints (Student, Contact, Staff).
UDF_NAMES: dict[str, tuple[str, ...]] = {
    "Student": ("Locker Number", "Bus Route", "Music Instrument", "Laptop Loan"),
    "Contact": ("Preferred Language", "Parking Permit", "Newsletter Opt In"),
    "Staff": ("Locker Number", "Car Registration", "First Aider", "Fire Marshal"),
}
DOCUMENT_TYPES: tuple[tuple[str, str], ...] = (  # (DocumentTypeName, Code)
    ("General Document", "GENERAL"),
    ("Medical Report", "MEDICAL"),
    ("Consent Form", "CONSENT"),
    ("Behaviour Report", "BEHAVIOUR"),
    ("EHC Plan", "EHCP"),
)
KEY_STAGES = ("KS4", "KS5")  # L9628 "Mandatory keystage, i.e. KS4 or KS5"
SCHOOL_YEARS = tuple(str(y) for y in range(2010, 2031))  # L2678 "Pass the start year of the academic year"

# Where a filter's values come from: ("ids", endpoint) = that endpoint's row Ids (the lookup the
# document tells clients to use), ("values", ...) = a fixed list its lookup endpoint enumerates.
DOMAINS: dict[str, tuple[str, Any]] = {
    "students": ("ids", "students"),
    "staff": ("ids", "staff"),
    "contacts": ("ids", "contacts"),
    "groups": ("ids", "groups"),
    "assessment_structure": ("ids", "assessment_structure"),  # Aspects, Templates, Marksheets, ResultSets
    "exam_structure": ("ids", "exam_structure"),  # Aspects, Resultsets, ExamSeasons, QANs, ...
    "udf:Student": ("values", UDF_NAMES["Student"]),
    "udf:Contact": ("values", UDF_NAMES["Contact"]),
    "udf:Staff": ("values", UDF_NAMES["Staff"]),
    "document_types": ("values", tuple(name for name, _ in DOCUMENT_TYPES)),
    "key_stages": ("values", KEY_STAGES),
    "school_years": ("values", SCHOOL_YEARS),
}

# Where a client finds a filter's values (named in the error a request without them gets).
SOURCE_HINTS: dict[str, str] = {
    "students": "Id values of Students",
    "staff": "Id values of Staff",
    "contacts": "Id values of Contacts",
    "groups": "Id values of Groups",
    "assessment_structure": "Id values of assessmentstructure",
    "exam_structure": "Id values of ExamsStructure",
    "udf:Student": "UDFName values of UserDefinedFields with UDFType Student",
    "udf:Contact": "UDFName values of UserDefinedFields with UDFType Contact",
    "udf:Staff": "UDFName values of UserDefinedFields with UDFType Staff",
    "document_types": "DocumentTypeName values of LinkedDocumentTypes",
    "key_stages": "KS4 or KS5",
    "school_years": "the start year of the academic year, yyyy",
}


def _csv(param: str, source: str, column: str | None = None, **kw: Any) -> Filter:
    return Filter(param, source, column, **kw)


def _one(param: str, source: str, column: str | None = None, **kw: Any) -> Filter:
    return Filter(param, source, column, csv=False, **kw)


_STUDENTS = _csv("Students", "students", "StudentId")
_DOCUMENT_TYPE = _one("DocumentTypeName", "document_types", "DocumentTypeName", aliases=("DocumentTypeId",))

# The mandatory filters (issue 14's table, read again from the document at the given lines).
# 'any': "At least one of ... must be populated ... the filter is additive" (a union).
FILTER_RULES: dict[str, FilterRule] = {
    "assessment_results": FilterRule(
        (
            _STUDENTS,
            _csv("Groups", "groups"),
            _csv("Aspects", "assessment_structure", "AspectId", pairs=True),
            _csv("Resultsets", "assessment_structure", "ResultSetId"),
            _csv("Templates", "assessment_structure"),
            _csv("Columns", "assessment_structure"),
            _csv("Marksheets", "assessment_structure"),
        ),
        "any",
        1131,
        overriding="Resultsets",
    ),
    "assessment_results_by_aspect": FilterRule(
        (_csv("Aspects", "assessment_structure", "AspectId", pairs=True),), "all", 1307
    ),
    "assessment_results_by_marksheet": FilterRule((_csv("Marksheets", "assessment_structure"),), "all", 1441),
    "assessment_results_by_student": FilterRule((_STUDENTS, _csv("Groups", "groups")), "any", 1575),
    "historical_attendance_summary": FilterRule(
        (_one("SchoolYear", "school_years", pattern=r"\d{4}"),), "all", 2678
    ),
    "exam_results": FilterRule(
        (
            _STUDENTS,
            _csv("Aspects", "exam_structure", "AspectId", pairs=True),
            _csv("Resultsets", "exam_structure", "ResultSetId"),
            _csv("Seasons", "exam_structure", "ExamSeasonId"),
            _csv("Qans", "exam_structure", "QanId"),
            _csv("SyllabusCodes", "exam_structure", "SyllabusCodeId"),
            _csv("OptionCodes", "exam_structure", "OptionCodeId"),
        ),
        "any",
        3952,
    ),
    "linked_documents": FilterRule(
        (_DOCUMENT_TYPE, _csv("StudentIds", "students", "StudentId")), "all", 5908
    ),
    "student_user_defined_fields": FilterRule((_csv("UDFName", "udf:Student", "UDFName"),), "all", 8254),
    "discount_codes": FilterRule((_one("KeyStage", "key_stages", choices=KEY_STAGES),), "all", 9628),
    "contact_user_defined_fields": FilterRule((_csv("UDFName", "udf:Contact", "UDFName"),), "all", 11383),
    "staff_linked_documents": FilterRule(
        (_DOCUMENT_TYPE, _csv("StaffIds", "staff", "StaffId")), "all", 12450
    ),
    "staff_user_defined_fields": FilterRule((_csv("UDFName", "udf:Staff", "UDFName"),), "all", 12846),
    "timetable_for_staff": FilterRule((_one("Id", "staff"),), "all", 13206),
    "timetable_for_student": FilterRule((_one("Id", "students"),), "all", 13340),
}

# Person Ids the document relates to their endpoints (relations tables) on filtered endpoints,
# drawn from those endpoints so a UDF value belongs to a real student (L8259 "StudentUDFs.StudentId
# -> Students.Id"), contact or member of staff.
_EXTRA_LINKS: dict[str, dict[str, str]] = {
    "student_user_defined_fields": {"StudentId": "students"},
    "contact_user_defined_fields": {"ContactId": "contacts"},
    "staff_user_defined_fields": {"StaffId": "staff"},
}

# Lookup endpoints whose rows enumerate a filter's values, column by column (row n = value n).
_UDF_PAIRS = tuple((kind, name) for kind, names in UDF_NAMES.items() for name in names)
_ENUMS: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("user_defined_fields", "UDFs"): {  # L7183: "Use UDFName values from this endpoint"
        "UDFType": tuple(k for k, _ in _UDF_PAIRS),
        "UDFName": tuple(n for _, n in _UDF_PAIRS),
    },
    (
        "linked_document_types",
        "DocumentTypes",
    ): {  # L5900 "can be retrieved from the LinkedDocumentTypes endpoint"
        "DocumentTypeName": tuple(n for n, _ in DOCUMENT_TYPES),
        "Code": tuple(c for _, c in DOCUMENT_TYPES),
    },
}


def _yaml_load(text: str) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~0.25 s instead of ~1.6 s
    return yaml.load(text, Loader=loader)


@functools.cache
def load_reference(path: Path = REFERENCE_PATH) -> dict[str, Any]:
    """The parsed reference file (once per process)."""
    return _yaml_load(Path(path).read_text(encoding="utf-8"))


def read_endpoints(reference: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The document's read endpoints, in document order, verbatim repeats left out (87)."""
    return [e for e in reference["endpoints"] if e.get("kind") == "read" and not e.get("duplicate_of")]


def _path(entry: Mapping[str, Any]) -> str:
    full = entry.get("path") or entry.get("path_guess") or ""
    match = re.fullmatch(r"/api/v1/School/\{estab\}/([^/]+)/?", str(full))
    if match is None:
        raise ValueError(f"xporter reference: endpoint {entry['key']} has no school path ({full!r})")
    return match.group(1)


def _fields(raw: Iterable[Mapping[str, Any]]) -> dict[str, str | None]:
    """Field name -> consent scope, first occurrence kept (a few tables list `Id` twice)."""
    out: dict[str, str | None] = {}
    for f in raw:
        out.setdefault(str(f["name"]), f.get("consent_scope"))
    return out


def _field_tables(entries: list[dict[str, Any]]) -> dict[str, list[tuple[str, dict[str, str | None]]]]:
    """Every endpoint's field tables, (heading, fields), in document order."""
    return {
        e["key"]: [(str(t["name"]), _fields(t["fields"])) for t in e.get("tables") or []] for e in entries
    }


def _suspect(entry: Mapping[str, Any]) -> bool:
    return str(entry.get("tables_reliability") or "").startswith("suspect")


def _borrowed(
    key: str, name: str, entries: list[dict[str, Any]], tables: Mapping[str, list[tuple[str, dict[str, Any]]]]
) -> tuple[dict[str, str | None], str | None]:
    """Fields for a result set its own section never lists: the first table of that name
    elsewhere in the document (LessonStaff from Timetable, StandardYearGroupLookup from Group
    History...), else GENERIC_FIELDS."""
    for other in entries:
        if other["key"] == key or _suspect(other):
            continue
        for heading, fields in tables[other["key"]]:
            if heading.lower() == name.lower():
                return dict(fields), f"{other['key']}.{heading} (L{other['doc_line']})"
    return dict.fromkeys(GENERIC_FIELDS), None


def _result_sets(
    entry: Mapping[str, Any],
    entries: list[dict[str, Any]],
    tables: Mapping[str, list[tuple[str, dict[str, Any]]]],
) -> list[tuple[str | None, str | None, dict[str, str | None], str | None]]:
    """(sample spelling, heading, fields, borrowed-from) per result set, in the sample's order."""
    key = entry["key"]
    own = list(tables[key])
    keys = [
        str(k)
        for k in entry.get("response_keys") or []
        if k not in ENVELOPE_KEYS and k not in COPIED_SAMPLE_KEYS.get(key, ())
    ]
    spelled = SAMPLE_SPELLINGS.get(key, {})
    by_sample = {v.lower(): h for h, v in spelled.items()}
    headings = {h.lower(): (h, f) for h, f in own}
    out: list[tuple[str | None, str | None, dict[str, str | None], str | None]] = []
    used: set[str] = set()
    for sample in keys:
        heading = by_sample.get(sample.lower()) or (sample if sample.lower() in headings else None)
        if heading is not None and heading.lower() in headings:
            h, fields = headings[heading.lower()]
            out.append((sample, h, dict(fields), None))
            used.add(h.lower())
        else:
            fields, source = _borrowed(key, sample, entries, tables)
            out.append((sample, None, fields, source))
    if not _suspect(entry) or not keys:  # copied field tables stand only where the sample names them
        out.extend((None, h, dict(f), None) for h, f in own if h.lower() not in used)
    return out


def _window(entry: Mapping[str, Any]) -> Window | None:
    params = [str(p) for p in entry.get("date_range_params") or []]
    if not params or entry["key"] in SNAPSHOTS:
        return None
    prose = {str(f["name"]).lower(): f.get("requirement") for f in entry.get("filters_in_prose") or []}
    listed = {str(p["name"]).lower(): bool(p.get("required")) for p in entry.get("query_params") or []}

    def mandatory(name: str) -> bool:  # the prose Filters table first; the parameter list only without one
        if name.lower() in prose:
            return prose[name.lower()] == "mandatory"
        return listed.get(name.lower(), False)

    default = "timetable" if entry["key"] in TIMETABLE_DEFAULT else "school_year"
    if len(params) == 1:
        return Window(between=params[0], mandatory=mandatory(params[0]), default=default)
    froms = [p for p in params if "from" in p.lower() or p == "startDate"]
    tos = [p for p in params if p.lower().endswith("to") or p.lower().startswith("to") or p == "endDate"]
    first, last = froms[0], tos[0]
    # 'From'/'To' (timetable prose) spell the same filter as 'DateFrom'/'DateTo'; 'CollectionDateFrom' is another one
    from_names = (first, *(p for p in froms[1:] if first.endswith(p)))
    to_names = (last, *(p for p in tos[1:] if last.endswith(p)))
    extra = tuple(p for p in params if p not in from_names and p not in to_names)
    return Window(from_names, to_names, None, mandatory(first) or mandatory(last), default, extra)


def _column(name: str, scope: str | None, *, date_field: str | None, option: str | None = None) -> Column:
    kind = {"Id": ROW_ID, "LastUpdated": UPDATED, "RowHash": ROW_HASH}.get(name, VALUE)
    if name == date_field:
        kind = ROW_DATE
    return Column(name, split_scopes(scope), kind, seed_for("xporter-field", name) & _M64, option)


def _build_endpoint(
    entry: Mapping[str, Any],
    entries: list[dict[str, Any]],
    tables: Mapping[str, list[tuple[str, dict[str, Any]]]],
) -> Endpoint:
    key = entry["key"]
    window = _window(entry)
    rule = FILTER_RULES.get(key)
    linked = {f.column: f.source for f in (rule.filters if rule else ()) if f.column}
    linked.update(_EXTRA_LINKS.get(key, {}))
    built: list[Table] = []
    fixed_rows = None
    for index, (sample, heading, fields, source) in enumerate(_result_sets(entry, entries, tables)):
        name = heading or sample or ""
        extra_columns = OPTION_COLUMNS.get((key, name), {})
        donor = _COLUMNS_FROM.get((key, name))
        if donor is not None:
            donor_fields = dict(next(f for h, f in tables[donor[0]] if h == donor[1]))
            fields.update({c: donor_fields[c] for c in extra_columns if c not in fields})
        date_field = next((f for f in fields if "Date" in f), None) if window else None
        enums = _ENUMS.get((key, name), {})
        columns = []
        for field_name, scope in fields.items():
            column = _column(
                field_name, scope, date_field=date_field, option=_lower(extra_columns.get(field_name))
            )
            if field_name in linked:
                column = Column(
                    column.name, column.scopes, LINKED, column.salt, column.option, source=linked[field_name]
                )
            elif field_name in enums:
                column = Column(
                    column.name, column.scopes, ENUM, column.salt, column.option, values=enums[field_name]
                )
                fixed_rows = len(enums[field_name])
            columns.append(column)
        built.append(
            Table(
                name=name,
                sample=sample,
                heading=heading,
                index=index,
                columns=tuple(columns),
                option=_lower(OPTION_RESULT_SETS.get((key, name))),
                fields_from=source,
            )
        )
    options = tuple(
        dict.fromkeys(
            [str(o["name"]) for o in entry.get("options") or []]
            + [
                str(p["name"])
                for p in entry.get("query_params") or []
                if p.get("type") == "boolean" and re.match(r"(include|exclude|only)[A-Z]", str(p["name"]))
            ]
        )
    )
    return Endpoint(
        name=key,
        title=str(entry.get("title") or key),
        path=_path(entry),
        tables=tuple(built),
        window=window,
        updated_since=bool((entry.get("supports") or {}).get("updated_since")),
        options=options,
        filters=rule,
        fixed_rows=fixed_rows,
        doc_line=int(entry.get("doc_line") or 0),
        path_confidence=str(entry.get("path_confidence") or ""),
    )


def _lower(value: str | None) -> str | None:
    return value.lower() if value else None


@functools.cache
def load_schema(path: Path = REFERENCE_PATH) -> Catalog:
    """Every read endpoint of the document, built once per process."""
    entries = read_endpoints(load_reference(path))
    tables = _field_tables(entries)
    endpoints = tuple(_build_endpoint(e, entries, tables) for e in entries)
    scopes = sorted({s for e in endpoints for t in e.tables for c in t.columns for s in c.scopes or ()})
    return Catalog(endpoints, tuple(scopes))
