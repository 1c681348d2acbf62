"""Stellic's 22 bulk-export data types: parameters, default flow, columns, and data generators.

Each fact has one home. What the document says (which data types exist, each one's parameters:
name, required, type, default, allowed values; its default sync/async flow; its columns where
given; the parameters every export takes) is read from `reference/stellic/bulk_exports.yaml`, a
verbatim copy of the engineering notes extracted from Stellic's "Bulk export reference guide"
(see `reference/stellic/README.md`), never from the client's catalog: a misreading then shows as
a failing test instead of being shared by both sides. Its parameter types are used in its own
words (`PARSERS`). What the document does not say is the emulator's own, in one table (`OWN`):
natural keys, the generators, and which parameters do not reseed the data. The columns are the
generators': documented only for `engagement_score` and `remaining_non_admin_requirements` (the
others are plausible inventions in Stellic's Title Case style).

Every column is a DuckDB expression of the row number `i`, so any volume streams straight to
CSV (see synth.copy_to_csv). Two randomness sources are used:
- `world`: vendor-wide (students, staff, programs): student 17 has the same name, username
  and ID in every export, as in a real tenant;
- `r`: per export (data type + data-affecting parameters + rows + seed).
Parameters that are pure filters over a stable population (appointment windows,
`updated_since`) do not reseed, so overlapping windows return the same records.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from .synth import (
    PROGRAMS,
    SCHOOLS,
    SUBJECTS,
    SqlRandom,
    seed_for,
    sql_bool,
    sql_iso_date,
    sql_iso_ts,
    sql_list,
    sql_str,
)

__all__ = [
    "COMMON_PARAMS",
    "EXPORTS",
    "KEYS",
    "ExportContext",
    "ExportQuery",
    "ExportType",
    "Own",
    "Param",
    "ParamError",
    "term_name",
]

# -- parameters -------------------------------------------------------------------------------


class ParamError(ValueError):
    """A 400-worthy problem with the query string; the message is shown to the client."""


def _last(values: list[str]) -> str:
    return values[-1].strip()


def _boolean(values: list[str]) -> bool:
    word = _last(values).lower()
    if word not in ("true", "false", "1", "0"):
        raise ValueError(word)
    return word in ("true", "1")


def _datetime(values: list[str]) -> datetime:
    return datetime.fromisoformat(_last(values).replace("Z", "+00:00").replace(" ", "T", 1))


def _repeated(cast: Callable[[str], Any]) -> Callable[[list[str]], list[Any]]:
    """A list sent as repeated keys (`usem_ids=1&usem_ids=2`), duplicates dropped."""
    return lambda values: [cast(v) for v in dict.fromkeys(v.strip() for v in values)]


def _comma_separated(cast: Callable[[str], Any]) -> Callable[[list[str]], list[Any]]:
    """A list sent as one comma-separated value (`group_ids=9,12`), duplicates dropped."""

    def parse(values: list[str]) -> list[Any]:
        items = list(dict.fromkeys(p.strip() for v in values for p in v.split(",") if p.strip()))
        if not items:
            raise ValueError("empty list")
        return [cast(v) for v in items]

    return parse


# The document's parameter types, in its own words (bulk_exports.yaml `type`), and how each is read
# from the query string: the emulator has no type names of its own, so a type the document adds
# fails loading here instead of being parsed as something else.
PARSERS: dict[str, Callable[[list[str]], Any]] = {
    "boolean": _boolean,
    "integer": lambda values: int(_last(values)),
    "string": _last,
    "string (unique semester ID)": _last,
    "string (YYYY-MM-DD HH:MM)": _datetime,
    "datetime string": _datetime,
    "date (YYYY-MM-DD)": lambda values: date.fromisoformat(_last(values)),
    "list[string]": _repeated(str),
    "list[integer]": _repeated(int),
    "comma-separated string": _comma_separated(str),
    "comma-separated integers": _comma_separated(int),
}


@dataclass(frozen=True)
class Param:
    """One documented query parameter: every field but `affects_data` is the document's.

    type: the document's words for it (a key of PARSERS).
    affects_data: False for parameters that do not change the data (see Own.no_reseed).
    """

    name: str
    type: str = "string"
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    affects_data: bool = True

    def __post_init__(self) -> None:
        if self.type not in PARSERS:
            raise ValueError(f"parameter {self.name} has a type the emulator cannot parse: {self.type!r}")

    def parse(self, values: list[str]) -> Any:
        values = [v for v in values if v.strip() != ""]
        if not values:
            if self.required:
                raise ParamError(f"Missing required parameter: {self.name}")
            return self.default
        try:
            value = PARSERS[self.type](values)
        except ValueError:
            raise ParamError(f"Invalid value for parameter {self.name}: {', '.join(values)!r}") from None
        if self.choices and value not in self.choices:
            raise ParamError(
                f"Invalid value for parameter {self.name}: {value!r}; allowed: {', '.join(self.choices)}"
            )
        return value


# -- what a generator returns -------------------------------------------------------------------


@dataclass(frozen=True)
class ExportQuery:
    """Columns as SQL over `i` in [start, stop), optionally filtered. `rows` is exact, or an
    upper bound when `where` is set (used for the sync row limit and async_if_large)."""

    columns: list[tuple[str, str]]
    stop: int
    start: int = 0
    where: str | None = None

    @property
    def rows(self) -> int:
        return max(self.stop - self.start, 0)

    @property
    def header(self) -> list[str]:
        return [name for name, _ in self.columns]

    def sql(self) -> str:
        select = ",\n  ".join(f'{expr} AS "{name}"' for name, expr in self.columns)
        where = f"\nWHERE {self.where}" if self.where else ""
        return f"SELECT\n  {select}\nFROM range({self.start}, {max(self.stop, self.start)}) t(i){where}"


@dataclass
class ExportContext:
    """Everything a generator may use: parsed parameters (defaults applied) and randomness."""

    params: dict[str, Any]
    rows: int  # the rows knob for this data type
    population: int  # size of the vendor-wide student population (the global rows knob)
    r: SqlRandom  # per-export randomness
    world: SqlRandom  # vendor-wide randomness (people, staff, programs)


@dataclass(frozen=True)
class ExportType:
    name: str
    flow: str  # "sync" | "async" | "async_if_large"
    keys: tuple[str, ...]
    build: Callable[[ExportContext], ExportQuery]
    params: tuple[Param, ...] = field(default_factory=tuple)
    documented_columns: tuple[str, ...] = ()  # the document's column list, where it gives one

    def parse_params(self, query: dict[str, list[str]]) -> dict[str, Any]:
        return {p.name: p.parse(query.get(p.name, [])) for p in self.params}

    def data_seed_parts(self, params: dict[str, Any]) -> str:
        chosen = {p.name: params[p.name] for p in self.params if p.affects_data}
        return json.dumps(chosen, sort_keys=True, default=str)


# -- shared vocabulary and column helpers --------------------------------------------------------

STAFF_BASE = 1_000_000_000  # world keys >= this are staff, below are students
N_STAFF = 60
SCHOOL_SHORTNAMES = ("IA", "ENG", "BUS", "NUR", "LAW", "DIV", "EDU", "MUS")
REQUIREMENTS = (
    "Writing Requirement", "Science Requirement", "Quantitative Reasoning", "Foreign Language",
    "Senior Capstone", "Major Electives", "Core Seminar", "Diversity & Equity", "Ethics Requirement",
    "Lab Science", "Upper-Division Credits", "Residency Requirement", "Global Perspectives",
    "Arts & Humanities", "Social Sciences", "First-Year Seminar", "Physical Education",
    "Research Methods", "Statistics Requirement", "Milestone: Qualifying Exam",
)  # fmt: skip
GENEDS = ("Written Communication", "Quantitative Literacy", "Natural Sciences", "Humanities",
          "Social & Behavioral Sciences", "Global Cultures")  # fmt: skip
COURSE_KINDS = ("Foundations", "Seminar", "Methods", "Laboratory", "Topics", "Practicum", "Workshop",
                "Introduction", "Advanced Studies")  # fmt: skip
TERMS = ("Fall 2025", "Spring 2026", "Fall 2026", "Spring 2027")
GROUPS = ("First-Year Advisors", "Engineering Students", "Pre-Med Track", "Athletes, Varsity",
          "Honors College", "International Students", "Transfer Students", "Registrar Staff",
          "Career Coaches", "Veterans")  # fmt: skip
WORKFLOWS = ("Course Substitution Petition", "Late Add/Drop Request", "Credit Overload Request",
             "Graduation Clearance", "Study Abroad Approval", "Independent Study Proposal")  # fmt: skip
MESSY_TEXT = (
    'Discussed "study abroad" options, credits',
    "Add/drop questions",
    "Follow-up re: probation, midterm grades",
    "Plan review\nNeeds 2 more electives",
    'Student said: "I\'ll switch to part-time"',
    "Financial aid hold, cleared",
)
NOTE_BODIES = (
    'Student reports they "never attended" the first two weeks.\nReferred to Dean of Students.',
    "Called twice, no answer; left voicemail.",
    "Met in person. Plans to withdraw from CHEM 101, keep MATH 120.",
    "Zoë's advisor flagged attendance; see ticket #4411.",
    "Email sent:\n- registration hold\n- advising appointment link",
    "No concerns.",
)
DATA_START = datetime(2020, 1, 1)  # appointments exist from here on
DEFAULT_WINDOW = (date(2026, 10, 1), date(2026, 10, 30))  # 30 days when start/end are omitted
GRAD_SPAN = (datetime(2024, 7, 1), datetime(2027, 1, 1))  # graduation application updates
LOCAL_TZ = ZoneInfo("America/New_York")  # the institution's zone for use_local_timezone=true
DAY_US = 86_400_000_000


def term_name(usem_id: int | str) -> str:
    """Stellic unique-semester IDs look like PeopleSoft term codes: 2258 = 2|25|8 = Fall 2025."""
    text = str(usem_id)
    if len(text) == 4 and text.isdigit() and text[0] == "2" and int(text[1:3]) <= 35:
        season = {"0": "Winter", "1": "Spring", "2": "Spring", "3": "Spring", "4": "Summer", "5": "Summer",
                  "6": "Summer"}.get(text[3], "Fall")  # fmt: skip
        return f"{season} 20{text[1:3]}"
    return f"Term {text}"


def _student(ctx: ExportContext, key: str) -> list[tuple[str, str]]:
    w = ctx.world
    return [
        ("Student ID", w.student_id(key)),
        ("Username", w.username(key)),
        ("Student Name", w.full_name(key)),
    ]


def _staff_key(ctx: ExportContext, key: str, salt: str) -> str:
    return f"({STAFF_BASE} + {ctx.r.h(key, salt)} % {N_STAFF})"


def _staff_username(ctx: ExportContext, staff_key: str) -> str:
    return ctx.world.username(staff_key, number=f"({staff_key} - {STAFF_BASE})")


def _course_code(w: SqlRandom, key: str, number: str) -> str:
    codes = [code for code, _ in SUBJECTS]
    return f"({w.pick(codes, key, 'subject')} || ' ' || cast({number} as varchar))"


def _course_title(w: SqlRandom, key: str) -> str:
    titles = [title for _, title in SUBJECTS]
    return f"({w.pick(titles, key, 'subject')} || ' ' || {w.pick(COURSE_KINDS, key, 'kind')})"


def _ts(r: SqlRandom, key: str, salt: str, start: datetime, end: datetime) -> str:
    return sql_iso_ts(r.timestamp_between(key, salt, start, end))


def _nullable(condition: str, expr: str) -> str:
    return f"(CASE WHEN {condition} THEN NULL ELSE {expr} END)"


def _decimal(expr: str, scale: int = 1) -> str:
    return f"cast({expr} as decimal(9,{scale}))"


# -- Audit & Requirements -----------------------------------------------------------------------


def _audit_name(w: SqlRandom, key: str) -> str:
    return f"('EY' || cast({w.int_between(key, 'audit_year', 2018, 2025)} as varchar) || ' ' || {w.pick(PROGRAMS, key, 'audit_program')})"


def build_audit_data(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    return ExportQuery(
        [
            ("Audit ID", "5000 + i"),
            ("Audit Name", _audit_name(w, "i")),
            ("Program Name", w.pick(PROGRAMS, "i", "audit_program")),
            (
                "Catalog Year",
                f"(cast({w.int_between('i', 'audit_year', 2018, 2025)} as varchar) || '-' || cast({w.int_between('i', 'audit_year', 2018, 2025)} + 1 as varchar))",
            ),
            (
                "Degree Level",
                r.pick(["Undergraduate", "Undergraduate", "Graduate", "Professional"], "i", "level"),
            ),
            ("Status", r.pick(["Published", "Published", "Published", "Draft", "Archived"], "i", "status")),
            ("Requirement Count", r.int_between("i", "req_count", 8, 60)),
            ("Minimum Credits", r.pick(["120", "124", "128", "30", "36", "48"], "i", "credits")),
            (
                "Effective Date",
                sql_iso_date(
                    r.timestamp_between("i", "effective", datetime(2018, 8, 1), datetime(2025, 8, 1))
                ),
            ),
            ("Created At", _ts(r, "i", "created", datetime(2018, 1, 1), datetime(2024, 1, 1))),
            ("Last Updated", _ts(r, "i", "updated", datetime(2024, 1, 1), datetime(2026, 10, 31))),
        ],
        ctx.rows,
    )


def build_audit_requirements(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    columns = [
        ("Audit ID", "5000 + i // 25"),
        ("Audit Name", _audit_name(w, "(i // 25)")),
        ("Requirement ID", "100000 + i"),
        ("Requirement Name", r.pick(REQUIREMENTS, "i", "name")),
        ("Parent Requirement ID", "(CASE WHEN i % 5 = 0 THEN NULL ELSE 100000 + i - i % 5 END)"),
        (
            "Required Units",
            _nullable(r.chance("i", "no_units", 0.2), _decimal(r.int_between("i", "units", 1, 24) + " / 2")),
        ),
        ("Required Courses", r.int_between("i", "courses", 1, 4)),
    ]
    if ctx.params["for_ext_ids"]:
        columns.append(
            (
                "External IDs",
                f"('REQ-' || lpad(cast(i as varchar), 6, '0') || ';SIS-' || cast({r.int_between('i', 'sis', 10000, 99999)} as varchar))",
            )
        )
    else:
        constraints = ["Minimum grade C-", "Max 2 courses, level 300+", 'Must carry the "Writing Intensive" attribute',
                       "No pass/fail; max 1 transfer course", "Minimum GPA 2.5 in these courses"]  # fmt: skip
        columns.append(
            (
                "Constraints",
                _nullable(r.chance("i", "no_constraint", 0.3), r.pick(constraints, "i", "constraint")),
            )
        )
    columns.append(("Last Updated", _ts(r, "i", "updated", datetime(2024, 1, 1), datetime(2026, 10, 31))))
    return ExportQuery(columns, ctx.rows)


def build_incorrect_audit_applications(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    expected = r.int_between("i", "expected", 2019, 2025)
    applied = f"({expected} - (CASE WHEN {r.chance('i', 'mismatch', 0.3)} THEN 1 ELSE 0 END))"
    program = w.pick(PROGRAMS, "i", "program")
    manual = r.chance("i", "manual", 0.2)
    return ExportQuery(
        [
            *_student(ctx, "i"),
            ("Program Name", program),
            ("Applied Audit", f"('EY' || cast({applied} as varchar) || ' ' || {program})"),
            ("Expected Audit", f"('EY' || cast({expected} as varchar) || ' ' || {program})"),
            ("Audit Matches", sql_bool(f"{applied} = {expected}")),
            ("Manually Applied", sql_bool(manual)),
            (
                "Applied By",
                f"(CASE WHEN {manual} THEN {_staff_username(ctx, _staff_key(ctx, 'i', 'by'))} ELSE 'system' END)",
            ),
            ("Applied At", _ts(r, "i", "applied", datetime(2023, 8, 1), datetime(2026, 10, 31))),
        ],
        ctx.rows,
    )


def build_programs_without_audits(ctx: ExportContext) -> ExportQuery:
    r = ctx.r
    return ExportQuery(
        [
            ("Program ID", "300 + i"),
            (
                "Program Code",
                f"({r.pick([c for c, _ in SUBJECTS], 'i', 'code')} || '-' || {r.pick(['BS', 'BA', 'MIN', 'CERT', 'MS'], 'i', 'deg')} || '-' || cast(i as varchar))",
            ),
            (
                "Program Name",
                f"({r.pick(PROGRAMS, 'i', 'name')} || {r.pick(['', '', ' (Honors)', ' - Online', ' (Concentration: Data, Policy)'], 'i', 'suffix')})",
            ),
            ("Program Type", r.pick(["Major", "Minor", "Certificate", "Concentration"], "i", "type")),
            ("School", r.pick(SCHOOLS, "i", "school")),
            ("Catalog Year", r.pick(["2023-2024", "2024-2025", "2025-2026"], "i", "year")),
            ("Active", sql_bool(r.chance("i", "active", 0.85))),
            ("Created At", _ts(r, "i", "created", datetime(2019, 1, 1), datetime(2026, 9, 1))),
        ],
        ctx.rows,
    )


def build_requirement_units_taken(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    names = ctx.params["screen_names"]
    m = len(names)
    student = f"(i // {m})"
    archived = "FALSE" if ctx.params["exclude_archived"] else r.chance(student, "archived", 0.08)
    return ExportQuery(
        [
            *_student(ctx, student),
            ("Program Name", w.pick(PROGRAMS, student, "program")),
            ("Requirement Screen Name", f"{sql_list(names)}[1 + i % {m}]"),
            ("Units Taken", _decimal(r.int_between("i", "taken", 0, 24) + " / 2")),
            ("Units Required", r.pick(["3.0", "4.0", "6.0", "8.0", "12.0"], "i", "required")),
            ("Audit Mode", sql_str(ctx.params["audit_mode"])),
            ("Archived", sql_bool(archived)),
        ],
        ctx.rows,
    )


# -- Planning & Registration --------------------------------------------------------------------


def build_plan_courses(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    student, slot = "(i // 8)", "(i % 8)"
    registered = ctx.params["course_filter"] == "registered"
    statuses = (
        ["Registered", "Completed", "Completed"] if registered else ["Planned", "Planned", "Registered"]
    )
    status = r.pick(statuses, "i", "status")
    counts = "NULL" if ctx.params["mode"] == "unmatched" else r.pick(REQUIREMENTS, "i", "counts")
    grades = ["A", "A-", "B+", "B", "B-", "C+", "C", "P", "W"]
    return ExportQuery(
        [
            ("Student ID", w.student_id(student)),
            ("Username", w.username(student)),
            ("Term", f"{sql_list(TERMS)}[1 + {slot} // 2]"),
            ("Course Code", _course_code(w, "i", f"100 + {slot} * 100 + {r.h('i', 'num')} % 90")),
            ("Course Title", _course_title(w, "i")),
            ("Credits", r.pick(["1", "3", "3", "4"], "i", "credits")),
            ("Status", status),
            ("Counts Toward", counts),
            ("Grade", f"(CASE WHEN {status} = 'Completed' THEN {r.pick(grades, 'i', 'grade')} END)"),
        ],
        ctx.rows,
    )


def build_plancourse_enrollment_by_term(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    years = ctx.params["years"]
    terms = [f"{season} {year}" for year in years for season in ("Spring", "Summer", "Fall")]
    n_terms = len(terms)
    course = f"(i // {n_terms})"
    planned = r.int_between("i", "planned", 0, 180)
    return ExportQuery(
        [
            ("Year", f"{[int(y) for y in years]}[1 + (i % {n_terms}) // 3]"),
            ("Term", f"{sql_list(terms)}[1 + i % {n_terms}]"),
            ("School Name", sql_str(ctx.params["school_name"])),
            (
                "Course Code",
                f"({sql_list([c for c, _ in SUBJECTS])}[1 + {course} % {len(SUBJECTS)}] || ' ' || cast(100 + {course} // {len(SUBJECTS)} as varchar))",
            ),
            (
                "Course Title",
                f"({sql_list([t for _, t in SUBJECTS])}[1 + {course} % {len(SUBJECTS)}] || ' ' || {w.pick(COURSE_KINDS, course, 'kind')})",
            ),
            ("Planned Enrollment", planned),
            ("Registered Enrollment", f"cast({planned} * {r.unit('i', 'registered')} as bigint)"),
            ("Capacity", r.pick(["20", "30", "45", "60", "120", "200"], course, "capacity")),
        ],
        ctx.rows,
    )


SEMESTER_STARTS = {"fall": (8, 25), "spring": (1, 15), "winter": (1, 3), "summer": (5, 20)}


def build_registration_details(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    year, semester = ctx.params["year"], ctx.params["semester"]
    month, day = SEMESTER_STARTS.get(semester.lower(), (9, 1))
    term_start = datetime(year, month, day)
    student, slot = "(i // 4)", "(i % 4)"
    no_regs = r.chance(student, "no_registrations", 0.1)
    registered_at = r.timestamp_between(
        "i", "registered", term_start - timedelta(days=75), term_start - timedelta(days=5)
    )
    where = [f"(NOT {no_regs} OR {slot} = 0)" if ctx.params["all_students"] else f"NOT {no_regs}"]
    if ctx.params["timestamp"] is not None:
        cutoff = _naive_utc(ctx.params["timestamp"])
        where.append(f"({no_regs} OR {registered_at} < TIMESTAMP '{cutoff.isoformat(sep=' ')}')")
    return ExportQuery(
        [
            *_student(ctx, student),
            ("Year", str(int(year))),
            ("Semester", sql_str(semester)),
            (
                "Course Code",
                _nullable(no_regs, _course_code(w, "i", f"100 + {slot} * 200 + {r.h('i', 'num')} % 190")),
            ),
            (
                "Section",
                _nullable(no_regs, f"lpad(cast({r.int_between('i', 'section', 1, 12)} as varchar), 3, '0')"),
            ),
            (
                "Registration Status",
                f"(CASE WHEN {no_regs} THEN 'Not Registered' ELSE {r.pick(['Registered'] * 6 + ['Waitlisted', 'Dropped'], 'i', 'status')} END)",
            ),
            ("Registered At", _nullable(no_regs, sql_iso_ts(registered_at))),
            ("Credits", _nullable(no_regs, r.pick(["1", "3", "3", "4"], "i", "credits"))),
        ],
        ctx.rows,
        where=" AND ".join(where),
    )


def build_sections_counting_for_reqs(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    usems = ctx.params["usem_ids"]
    rows = max(ctx.rows, 1)
    term, j = f"(i // {rows})", f"(i % {rows})"
    section = f"({term} * 100000000 + {j} // 3)"
    usem = f"{[int(u) for u in usems]}[1 + {term}]"
    req = f"cast(({r.h(section, 'req')} + ({j} % 3) * 7) % {len(REQUIREMENTS)} as bigint)"
    return ExportQuery(
        [
            ("Usem ID", usem),
            ("Term Name", f"{sql_list([term_name(u) for u in usems])}[1 + {term}]"),
            ("Section ID", f"(cast({usem} as bigint) * 1000000 + {j} // 3)"),
            ("Course Code", _course_code(w, section, f"100 + {r.h(section, 'num')} % 400")),
            ("Section Number", f"lpad(cast({r.int_between(section, 'sec', 1, 9)} as varchar), 3, '0')"),
            ("Course Title", _course_title(w, section)),
            ("Requirement ID", f"(4000 + {req})"),
            ("Requirement Name", f"{sql_list(REQUIREMENTS)}[1 + {req}]"),
            ("Audit Name", _audit_name(w, f"({r.h(section, 'audit')} % 50)")),
            ("Credits", r.pick(["1.0", "3.0", "3.0", "4.0"], section, "credits")),
            ("Counts As", r.pick(["Full", "Full", "Partial", "Elective"], "i", "counts")),
        ],
        ctx.rows * len(usems),
    )


# -- Exceptions & Workflows -------------------------------------------------------------------


def _population_key(ctx: ExportContext, salt: str) -> str:
    return f"({ctx.r.h('i', salt)} % {max(ctx.population, 1)})"


def build_bulk_exceptions_detailed(ctx: ExportContext) -> ExportQuery:
    r = ctx.r
    p = ctx.params
    school = (
        sql_str(p["school_shortname"]) if p["school_shortname"] else r.pick(SCHOOL_SHORTNAMES, "i", "school")
    )
    status = (
        r.pick(["active", "pending", "inactive", "canceled", "denied"], "i", "status")
        if p["include_all"]
        else "'active'"
    )
    archived = "FALSE" if p["exclude_archived"] else r.chance("i", "archived", 0.1)
    return ExportQuery(
        [
            ("Exception ID", "20000 + i"),
            *_student(ctx, _population_key(ctx, "student")),
            ("School", school),
            (
                "Exception Type",
                r.pick(
                    ["Course Substitution", "Requirement Waiver", "Credit Override", "Transfer Equivalency"],
                    "i",
                    "type",
                ),
            ),
            ("Requirement Name", r.pick(REQUIREMENTS, "i", "requirement")),
            ("Status", status),
            ("Reason", _nullable(r.chance("i", "no_reason", 0.15), r.pick(MESSY_TEXT, "i", "reason"))),
            ("Created By", _staff_username(ctx, _staff_key(ctx, "i", "by"))),
            ("Created At", _ts(r, "i", "created", datetime(2022, 8, 1), datetime(2026, 10, 31))),
            (
                "Expires On",
                _nullable(
                    r.chance("i", "no_expiry", 0.6),
                    sql_iso_date(
                        r.timestamp_between("i", "expires", datetime(2026, 12, 1), datetime(2028, 6, 1))
                    ),
                ),
            ),
            ("Archived", sql_bool(archived)),
        ],
        ctx.rows,
    )


def build_export_workflow_responses(ctx: ExportContext) -> ExportQuery:
    r = ctx.r
    workflow_id = ctx.params["workflow_id"]
    summaries = [
        *MESSY_TEXT,
        'Requesting substitution of HIST 210 for "Global Perspectives".\nAdvisor approved; pending registrar.',
    ]
    return ExportQuery(
        [
            ("Response ID", f"{abs(workflow_id) % 100000 * 1000000} + i"),
            ("Workflow ID", str(workflow_id)),
            ("Workflow Name", sql_str(WORKFLOWS[workflow_id % len(WORKFLOWS)])),
            *_student(ctx, _population_key(ctx, "student")),
            ("Submitted At", _ts(r, "i", "submitted", datetime(2024, 1, 1), datetime(2026, 10, 31))),
            (
                "Status",
                r.pick(
                    ["Submitted", "In Review", "In Review", "Approved", "Denied", "Withdrawn"], "i", "status"
                ),
            ),
            (
                "Current Step",
                _nullable(
                    r.chance("i", "done", 0.3),
                    r.pick(["Advisor Review", "Department Chair", "Registrar", "Dean's Office"], "i", "step"),
                ),
            ),
            ("Response Summary", r.pick(summaries, "i", "summary")),
            ("Last Updated", _ts(r, "i", "updated", datetime(2026, 1, 1), datetime(2026, 10, 31))),
        ],
        ctx.rows,
    )


# -- Pathways & Programs ------------------------------------------------------------------------


def build_bulk_pathways(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    pathway, seq = "(i // 12)", "(i % 12)"
    extra = f"({str(ctx.params['include_extracurriculars']).upper()} AND {r.chance('i', 'extra', 0.1)})"
    placeholder = (
        f"({str(ctx.params['include_placeholders']).upper()} AND {r.chance('i', 'placeholder', 0.2)})"
    )
    item_type = (
        f"(CASE WHEN {extra} THEN 'Extracurricular' WHEN {placeholder} THEN 'Placeholder' ELSE 'Course' END)"
    )
    activities = [
        "Study Abroad, Semester in Madrid",
        "Undergraduate Research",
        "Internship",
        "Peer Mentoring",
    ]
    return ExportQuery(
        [
            ("Pathway ID", f"700 + {pathway}"),
            ("Pathway Name", f"({w.pick(PROGRAMS, pathway, 'pathway_program')} || ' Pathway')"),
            ("Program Name", w.pick(PROGRAMS, pathway, "pathway_program")),
            (
                "Term",
                f"('Year ' || cast({seq} // 3 + 1 as varchar) || ' ' || ['Fall', 'Spring', 'Summer'][1 + {seq} % 3])",
            ),
            ("Item Type", item_type),
            (
                "Item Code",
                f"(CASE WHEN {extra} THEN 'EXTRA-' || cast(i % 97 as varchar) WHEN {placeholder} THEN NULL ELSE {_course_code(w, 'i', f'100 + {seq} * 50 + i % 40')} END)",
            ),
            (
                "Item Title",
                f"(CASE WHEN {extra} THEN {r.pick(activities, 'i', 'activity')} WHEN {placeholder} THEN {r.pick(GENEDS, 'i', 'gened')} || ' Elective' ELSE {_course_title(w, 'i')} END)",
            ),
            (
                "Credits",
                f"(CASE WHEN {extra} THEN '0' ELSE {r.pick(['3', '3', '4', '1'], 'i', 'credits')} END)",
            ),
            ("Sequence", f"{seq} + 1"),
        ],
        ctx.rows,
    )


# -- Student Data -------------------------------------------------------------------------------


def build_student_geneds(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    student, slot = f"(i // {len(GENEDS)})", f"(i % {len(GENEDS)})"
    status = r.pick(["Completed", "Completed", "In Progress", "Planned", "Not Started"], "i", "status")
    not_started = f"({status} = 'Not Started')"
    return ExportQuery(
        [
            *_student(ctx, student),
            ("GenEd Category", f"{sql_list(GENEDS)}[1 + {slot}]"),
            ("Course Code", _nullable(not_started, _course_code(w, "i", f"100 + {r.h('i', 'num')} % 300"))),
            ("Term", _nullable(not_started, r.pick(TERMS, "i", "term"))),
            ("Units", _nullable(not_started, r.pick(["3", "3", "4"], "i", "units"))),
            ("Status", status),
        ],
        ctx.rows,
    )


def build_engagement_score(ctx: ExportContext) -> ExportQuery:
    # Documented columns (partner API sample: "sstanton, 11, 5"): Username, ID, Engagement Score.
    r, w = ctx.r, ctx.world
    return ExportQuery(
        [
            ("Username", w.username("i")),
            ("ID", "11 + i"),
            ("Engagement Score", f"cast(floor(pow({r.unit('i', 'score')}, 2) * 40) as bigint)"),
        ],
        ctx.rows,
    )


def _naive_utc(moment: datetime, local: bool = False) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LOCAL_TZ if local else UTC)
    return moment.astimezone(UTC).replace(tzinfo=None)


def build_graduation_applications(ctx: ExportContext) -> ExportQuery:
    """Application k was last updated at GRAD_SPAN[0] + k*interval (+jitter): `updated_since`
    selects a suffix of one stable population, so IDs and values do not depend on the cursor."""
    r, w = ctx.r, ctx.world
    rows = max(ctx.rows, 1)
    start_us = int((GRAD_SPAN[0] - datetime(1970, 1, 1)).total_seconds()) * 1_000_000
    interval = max(int((GRAD_SPAN[1] - GRAD_SPAN[0]).total_seconds() * 1_000_000) // rows, 1)
    updated = (
        f"make_timestamp(cast({start_us} + i * {interval} + {r.h('i', 'jitter')} % {interval} as bigint))"
    )
    first, where = 0, None
    since = ctx.params["updated_since"]
    if since is not None:
        cutoff = _naive_utc(since, local=ctx.params["use_local_timezone"])
        offset_us = int((cutoff - GRAD_SPAN[0]).total_seconds() * 1_000_000)
        first = min(max(offset_us // interval, 0), rows)
        where = f"{updated} > TIMESTAMP '{cutoff.isoformat(sep=' ')}'"
    student = "i"
    diploma = f"({w.first_name(student)} || {r.pick(['', '', ' A.', ' J.', ' María', ' Lê'], 'i', 'middle')} || ' ' || {w.last_name(student)})"
    return ExportQuery(
        [
            ("Application ID", "600000 + i"),
            *_student(ctx, student),
            ("Program Name", w.pick(PROGRAMS, student, "program")),
            (
                "Expected Graduation Term",
                r.pick(["Spring 2026", "Summer 2026", "Fall 2026", "Spring 2027"], "i", "term"),
            ),
            (
                "Application Status",
                r.pick(
                    ["Submitted", "Under Review", "Approved", "Approved", "Denied", "Withdrawn", "Conferred"],
                    "i",
                    "status",
                ),
            ),
            ("Diploma Name", diploma),
            (
                "Submitted At",
                sql_iso_ts(f"({updated} - to_days(cast({r.h('i', 'submitted')} % 60 as integer)))"),
            ),
            ("Updated At", sql_iso_ts(updated)),
            (
                "Attending Ceremony",
                _nullable(r.chance("i", "unknown", 0.2), sql_bool(r.chance("i", "ceremony", 0.8))),
            ),
        ],
        ctx.rows,
        start=first,
        where=where,
    )


def build_remaining_non_admin_requirements(ctx: ExportContext) -> ExportQuery:
    # Documented columns, in the documented order. "Active vs LOA" is documented as conditional;
    # the sandbox always includes it (filled from active_status when that filter is used).
    r, w = ctx.r, ctx.world
    p = ctx.params
    status = (
        sql_str(p["active_status"]) if p["active_status"] else r.pick(["Active"] * 9 + ["LOA"], "i", "status")
    )
    archived = "FALSE" if p["exclude_archived"] else r.chance("i", "archived", 0.07)
    most = 5 if p["mode"] == "planned" else 8
    return ExportQuery(
        [
            ("Network ID", w.username("i")),
            ("Student ID", w.student_id("i")),
            ("First Name", w.first_name("i")),
            ("Last Name", w.last_name("i")),
            (
                "Primary Advisor",
                _nullable(r.chance("i", "no_advisor", 0.1), w.sortable_name(_staff_key(ctx, "i", "advisor"))),
            ),
            ("Expected Graduation", sql_str(term_name(p["expected_graduation_term"]))),
            ("Applied for Graduation", sql_bool(r.chance("i", "applied", 0.6))),
            ("Active vs LOA", status),
            ("Archived Status", sql_bool(archived)),
            ("Remaining Requirements Count", r.int_between("i", "remaining", 1, most)),
        ],
        ctx.rows,
    )


# -- Advising & Care ----------------------------------------------------------------------------

APPOINTMENT_FIELDS = (
    "appointment_id", "student_id", "student_name", "student_email", "advisor_name", "appointment_time",
    "duration_minutes", "appointment_type", "location", "status", "reason", "created_at",
)  # fmt: skip


def appointment_header(field_name: str) -> str:
    return " ".join("ID" if part == "id" else part.capitalize() for part in field_name.split("_"))


def build_all_appointments(ctx: ExportContext) -> ExportQuery:
    """Appointments sit on one global calendar of business hours (13:00-22:00 UTC, i.e. 8-5
    Eastern), one every `30 days of business hours / rows`, so ~`rows` fall in any 30 days. A
    start/end window selects appointments by time, so IDs and values are stable across windows
    and adjacent daily windows add up exactly to the monthly one."""
    r, w = ctx.r, ctx.world
    p = ctx.params
    start, end = p["start"], p["end"]
    if start is None and end is None:
        start, end = DEFAULT_WINDOW
    elif start is None:
        start = end - timedelta(days=29)
    elif end is None:
        end = start + timedelta(days=29)
    if start > end:
        raise ParamError("Invalid value for parameter start: start must be on or before end")
    business_day_us = 9 * 3600 * 1_000_000
    interval = max(30 * business_day_us // max(ctx.rows, 1), 1)
    lo = max((start - DATA_START.date()).days, 0) * business_day_us  # window in business time
    hi = max((end - DATA_START.date()).days + 1, 0) * business_day_us
    business = f"(i * {interval} + {r.h('i', 'jitter')} % {interval})"
    t0 = int((DATA_START - datetime(1970, 1, 1)).total_seconds() + 13 * 3600) * 1_000_000
    appointment = f"make_timestamp(cast({t0} + ({business} // {business_day_us}) * {DAY_US} + {business} % {business_day_us} as bigint))"
    student = _population_key(ctx, "student")
    locations = ["Zoom", "Phone", "Library 204", "Student Center, Room 3", "Hall B-12"]
    expressions = {
        "appointment_id": "1000000 + i",
        "student_id": w.student_id(student),
        "student_name": w.full_name(student),
        "student_email": _nullable(
            r.chance("i", "no_email", 0.05), f"({w.username(student)} || '@students.example.edu')"
        ),
        "advisor_name": w.sortable_name(_staff_key(ctx, "i", "advisor")),
        "appointment_time": sql_iso_ts(appointment),
        "duration_minutes": r.pick(["15", "30", "30", "30", "45", "60"], "i", "duration"),
        "appointment_type": r.pick(
            [
                "Academic Advising",
                "Career Coaching",
                "Drop-in",
                "Degree Planning",
                "Financial Aid",
                "Tutoring",
            ],
            "i",
            "type",
        ),
        "location": _nullable(r.chance("i", "no_location", 0.1), r.pick(locations, "i", "location")),
        "status": r.pick(
            ["Completed", "Completed", "Completed", "Scheduled", "Cancelled", "No Show"], "i", "status"
        ),
        "reason": _nullable(r.chance("i", "no_reason", 0.25), r.pick(MESSY_TEXT, "i", "reason")),
        "created_at": sql_iso_ts(f"({appointment} - to_days(cast(1 + {r.h('i', 'lead')} % 20 as integer)))"),
    }
    fields = p["fields"] or list(APPOINTMENT_FIELDS)
    unknown = [f for f in fields if f not in expressions]
    if unknown:
        raise ParamError(
            f"Invalid value for parameter fields: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(APPOINTMENT_FIELDS)}"
        )
    return ExportQuery(
        [(appointment_header(f), expressions[f]) for f in fields],
        hi // interval + 1 if ctx.rows else 0,
        start=lo // interval,
        where=f"{business} >= {lo} AND {business} < {hi}",
    )


def build_appointments_admin_info(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    staff = f"({STAFF_BASE} + i)"
    status = r.pick(["Active", "Active", "Active", "Inactive", "No Timeblocks"], "i", "status")
    return ExportQuery(
        [
            ("Staff ID", "('E' || lpad(cast(40000 + i as varchar), 6, '0'))"),
            ("Username", _staff_username(ctx, staff)),
            ("Staff Name", w.full_name(staff)),
            (
                "Role",
                r.pick(
                    ["Academic Advisor", "Career Coach", "Tutor", "Success Coach", "Department Admin"],
                    "i",
                    "role",
                ),
            ),
            ("Department", r.pick(SCHOOLS, "i", "department")),
            ("Timeblock Status", status),
            (
                "Open Timeblocks",
                f"(CASE WHEN {status} = 'Active' THEN {r.int_between('i', 'open', 1, 40)} ELSE 0 END)",
            ),
            ("Appointments Scheduled (30 Days)", r.int_between("i", "scheduled", 0, 120)),
            (
                "Last Scheduled At",
                _nullable(
                    f"{status} = 'No Timeblocks'",
                    _ts(r, "i", "last", datetime(2026, 6, 1), datetime(2026, 10, 31)),
                ),
            ),
            ("Calendar Synced", sql_bool(r.chance("i", "synced", 0.7))),
        ],
        ctx.rows,
    )


def build_tagged_notes(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    tag = ctx.params["tag"]
    base = (seed_for("stellic-note-base", tag) % 90 + 10) * 10_000_000
    return ExportQuery(
        [
            ("Note ID", f"{base} + i"),
            ("Tag", sql_str(tag)),
            *_student(ctx, _population_key(ctx, "student")),
            (
                "Note Title",
                r.pick(
                    ["Outreach attempt", "Attendance concern", "Advising note", "Follow-up", "Early alert"],
                    "i",
                    "title",
                ),
            ),
            ("Note Body", r.pick(NOTE_BODIES, "i", "body")),
            ("Created By", w.sortable_name(_staff_key(ctx, "i", "by"))),
            ("Created At", _ts(r, "i", "created", datetime(2023, 8, 1), datetime(2026, 10, 31))),
            ("Visibility", r.pick(["Private", "Advisors", "All Staff"], "i", "visibility")),
            (
                "Follow-up Date",
                _nullable(
                    r.chance("i", "no_follow_up", 0.5),
                    sql_iso_date(
                        r.timestamp_between("i", "follow_up", datetime(2026, 11, 1), datetime(2027, 2, 1))
                    ),
                ),
            ),
        ],
        ctx.rows,
    )


# -- Groups & Permissions -----------------------------------------------------------------------


def build_dynamic_group_entities(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    is_group = "(i % 25 = 24)"
    return ExportQuery(
        [
            ("Dynamic Group", sql_str(ctx.params["dynamic_group"])),
            ("Entity Type", f"(CASE WHEN {is_group} THEN 'Group' ELSE 'User' END)"),
            ("Entity ID", f"(CASE WHEN {is_group} THEN 9000 + i ELSE 11 + i END)"),
            ("Username", _nullable(is_group, w.username("i"))),
            (
                "Display Name",
                f"(CASE WHEN {is_group} THEN {r.pick(GROUPS, 'i', 'group')} || ' ' || cast(i as varchar) ELSE {w.full_name('i')} END)",
            ),
            ("Added At", _ts(r, "i", "added", datetime(2024, 1, 1), datetime(2026, 10, 31))),
            ("Added By", r.pick(["rule", "rule", "rule", "manual"], "i", "by")),
        ],
        ctx.rows,
    )


def build_user_groups(ctx: ExportContext) -> ExportQuery:
    r = ctx.r
    descriptions = ["Advisors for first-year students", 'Students flagged "at risk", fall cohort', "Registrar office staff",
                    "Synced nightly from SIS; do not edit", ""]  # fmt: skip
    return ExportQuery(
        [
            ("Group ID", "9 + i"),
            (
                "Group Name",
                f"({r.pick(GROUPS, 'i', 'name')} || CASE WHEN i >= {len(GROUPS)} THEN ' ' || cast(i as varchar) ELSE '' END)",
            ),
            ("Group Type", r.pick(["Static", "Dynamic"], "i", "type")),
            ("Description", f"nullif({r.pick(descriptions, 'i', 'description')}, '')"),
            ("Member Count", r.int_between("i", "members", 0, 2500)),
            ("Created By", _staff_username(ctx, _staff_key(ctx, "i", "by"))),
            ("Created At", _ts(r, "i", "created", datetime(2019, 1, 1), datetime(2026, 10, 31))),
        ],
        ctx.rows,
    )


def build_permissions(ctx: ExportContext) -> ExportQuery:
    r, w = ctx.r, ctx.world
    usernames, group_ids = ctx.params["usernames"] or [], ctx.params["group_ids"] or []
    if usernames or group_ids:
        grantees = [("User", u) for u in usernames] + [("Group", str(g)) for g in group_ids]
        per = max(3, ctx.rows // 40)
        which = f"(i // {per})"
        grantee_type = f"{sql_list([t for t, _ in grantees])}[1 + {which}]"
        grantee = f"{sql_list([g for _, g in grantees])}[1 + {which}]"
        total = per * len(grantees)
    else:
        user = r.chance("i", "is_user", 0.7)
        grantee_type = f"(CASE WHEN {user} THEN 'User' ELSE 'Group' END)"
        grantee = f"(CASE WHEN {user} THEN {w.username(_population_key(ctx, 'user'))} ELSE cast(9 + {r.h('i', 'group')} % 40 as varchar) END)"
        total = ctx.rows
    object_type = r.pick(["Global", "School", "Program", "Student Group"], "i", "object_type")
    inherited = r.chance("i", "inherited", 0.4)
    return ExportQuery(
        [
            ("Permission ID", "1000000 + i"),
            ("Grantee Type", grantee_type),
            ("Grantee", grantee),
            (
                "Permission",
                r.pick(
                    [
                        "view_student_profile",
                        "edit_student_plan",
                        "manage_appointments",
                        "approve_exceptions",
                        "export_data",
                        "view_audit",
                        "manage_tags",
                    ],
                    "i",
                    "permission",
                ),
            ),
            ("Object Type", object_type),
            (
                "Object Name",
                f"(CASE {object_type} WHEN 'School' THEN {r.pick(SCHOOLS, 'i', 'o')} WHEN 'Program' THEN {r.pick(PROGRAMS, 'i', 'o')} WHEN 'Student Group' THEN {r.pick(GROUPS, 'i', 'o')} END)",
            ),
            ("Inherited", sql_bool(inherited)),
            (
                "Inherited From",
                f"(CASE WHEN {inherited} THEN 'Group: ' || {r.pick(GROUPS, 'i', 'from')} END)",
            ),
            ("Granted At", _ts(r, "i", "granted", datetime(2019, 1, 1), datetime(2026, 10, 31))),
        ],
        total,
    )


# -- the catalogue: the document's data types, bound to what the emulator adds ---------------------

REFERENCE = Path(__file__).with_name("reference") / "stellic" / "bulk_exports.yaml"


@dataclass(frozen=True)
class Own:
    """What the emulator decides for one data type where the document is silent.

    keys: the natural key (unique within one file).
    build: the generator of its rows.
    no_reseed: documented parameters that do not change the data (filters over one stable
      population, the cache switch), so they do not reseed it: overlapping windows must return the
      same records.
    """

    keys: tuple[str, ...]
    build: Callable[[ExportContext], ExportQuery]
    no_reseed: tuple[str, ...] = ()


# The emulator's own description of each documented data type: its only one (the rest is the YAML's).
OWN: dict[str, Own] = {
    "audit_data": Own(("Audit ID",), build_audit_data),
    "audit_requirements": Own(("Requirement ID",), build_audit_requirements, ("reset_cache",)),
    "incorrect_audit_applications": Own(("Student ID",), build_incorrect_audit_applications),
    "programs_without_audits": Own(("Program ID",), build_programs_without_audits),
    "requirement_units_taken": Own(("Student ID", "Requirement Screen Name"), build_requirement_units_taken),
    "plan_courses": Own(("Student ID", "Term", "Course Code"), build_plan_courses),
    "plancourse_enrollment_by_term": Own(("Term", "Course Code"), build_plancourse_enrollment_by_term),
    "registration_details": Own(("Student ID", "Course Code"), build_registration_details, ("timestamp",)),
    "sections_counting_for_reqs": Own(("Usem ID", "Section ID", "Requirement ID"), build_sections_counting_for_reqs),
    "bulk_exceptions_detailed": Own(("Exception ID",), build_bulk_exceptions_detailed),
    "export_workflow_responses": Own(("Response ID",), build_export_workflow_responses),
    "bulk_pathways": Own(("Pathway ID", "Sequence"), build_bulk_pathways),
    "student_geneds": Own(("Student ID", "GenEd Category"), build_student_geneds),
    "engagement_score": Own(("ID",), build_engagement_score),
    "graduation_applications": Own(("Application ID",), build_graduation_applications,
                                   ("updated_since", "use_local_timezone")),
    "remaining_non_admin_requirements": Own(("Student ID",), build_remaining_non_admin_requirements),
    "all_appointments": Own(("Appointment ID",), build_all_appointments, ("start", "end", "fields")),
    "appointments_admin_info": Own(("Staff ID",), build_appointments_admin_info),
    "tagged_notes": Own(("Note ID",), build_tagged_notes),
    "dynamic_group_entities": Own(("Entity Type", "Entity ID"), build_dynamic_group_entities),
    "user_groups": Own(("Group ID",), build_user_groups),
    "permissions": Own(("Permission ID",), build_permissions),
}  # fmt: skip


def _param(raw: dict[str, Any], no_reseed: tuple[str, ...] = ()) -> Param:
    return Param(
        raw["name"],
        str(raw.get("type")),
        required=bool(raw.get("required")),
        default=raw.get("default"),
        choices=tuple(raw.get("allowed_values") or ()),
        affects_data=raw["name"] not in no_reseed,
    )


def _export(documented: dict[str, Any], own: Own) -> ExportType:
    name = documented["name"]
    raw_params = documented.get("parameters") or []
    unknown = sorted(set(own.no_reseed) - {p["name"] for p in raw_params})
    if unknown:
        raise ValueError(f"{REFERENCE.name}: {name} documents no parameter {unknown} (named in OWN.no_reseed)")
    try:
        params = tuple(_param(p, own.no_reseed) for p in raw_params)
    except ValueError as exc:
        raise ValueError(f"{REFERENCE.name}: {name}: {exc}") from None
    columns = tuple(documented.get("export_columns") or ())
    return ExportType(name, documented["default_flow"], own.keys, own.build, params, columns)


def load_reference(path: Path = REFERENCE) -> tuple[dict[str, ExportType], dict[str, Any]]:
    """The documented data types as emulator export types, and the document's common endpoint facts."""
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    documented = {d["name"]: d for d in raw["data_types"]}
    if set(documented) != set(OWN):
        raise ValueError(
            f"{path.name} documents {sorted(set(documented) - set(OWN))} without a generator here, "
            f"and the emulator generates {sorted(set(OWN) - set(documented))} that it does not document"
        )
    return {name: _export(d, OWN[name]) for name, d in documented.items()}, raw["endpoint"]


EXPORTS, ENDPOINT = load_reference()

# The query parameters every export takes (output_format, delivery_channel), as the document lists them.
COMMON_PARAMS: tuple[Param, ...] = tuple(
    _param(p) for p in ENDPOINT["common_parameters"] if p.get("location") == "query"
)

# Natural-key columns per data type (unique within one export file).
KEYS: dict[str, list[str]] = {name: list(export.keys) for name, export in EXPORTS.items()}

ASYNC_IF_LARGE_THRESHOLD = 5000  # all_appointments goes async above this many rows (KB1 L106)
