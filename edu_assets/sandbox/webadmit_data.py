"""Data side of the WebAdMIT emulator: identities, export templates and the files a run produces.

What the files are like, and why:
- CSV exports are ISO-8859-1 (Latin-1), not UTF-8, as WebAdMIT's `text/csv;charset=iso-8859-1`
  says: a connector that decodes them as UTF-8 fails on the accented names every file carries
  (José, Zoë, Françoise, Núñez, Müller). Characters Latin-1 cannot hold become `?`, as they do
  in the real exports. CRLF line ends, quoting by the csv module, a header always.
- "Comma-Separated Values in Multiple Files" is a real zip of three Latin-1 CSVs.
- "Microsoft Excel" is an HTML table served as `application/vnd.ms-excel`, which is what the
  legacy WebAdMIT Excel export really is; "Fixed Width Report" is padded text lines.
- Every value is a pure function of (seed, applicant pool, row number, export id), so the same
  run gives byte-identical files (zip member timestamps are fixed too).
"""

from __future__ import annotations

import csv
import html
import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from .synth import FIRST_NAMES, LAST_NAMES, ascii_fold, date_between, rng_for, seed_for

__all__ = [
    "BUNDLE_MEMBERS",
    "DATA_VERSION",
    "DEFAULT_IDENTITIES",
    "DEFAULT_TEMPLATES",
    "ENCODING",
    "FORMATS",
    "IDENTITY_TYPES",
    "LIST_TYPES",
    "Applicant",
    "ExportTemplate",
    "applicant",
    "write_export",
]

DATA_VERSION = 1  # bump when a generator changes: cached files are keyed by it
ENCODING = "iso-8859-1"

CSV = "Comma-Separated Values"
CSV_ZIP = "Comma-Separated Values in Multiple Files"
EXCEL = "Microsoft Excel"
HTML = "Website HTML"
FIXED = "Fixed Width Report"

# format -> (mime_type, file extension); README section 6
FORMATS: dict[str, tuple[str, str]] = {
    CSV: ("text/csv;charset=iso-8859-1", ".csv"),
    EXCEL: ("application/vnd.ms-excel", ".xls"),
    HTML: ("text/html", ".html"),
    FIXED: ("text/plain", ".txt"),
    CSV_ZIP: ("application/zip", ".zip"),
}
LIST_TYPES: tuple[str | None, ...] = (None, "all", "clipboard", "search")
IDENTITY_TYPES = ("Admissions User", "Association User", "Institution User")
CYCLE_PATTERN = re.compile(r"^\d{4} - \d{4}$")


@dataclass(frozen=True)
class ExportTemplate:
    """An export template as built in the WebAdMIT UI, owned by one user identity."""

    id: int
    identity_id: int
    name: str
    format: str
    list_type: str | None = None
    layout: str = ""  # which generator; "" = derived from the format

    @property
    def mime_type(self) -> str:
        return FORMATS[self.format][0]

    @property
    def extension(self) -> str:
        return FORMATS[self.format][1]

    @property
    def filename(self) -> str:
        """'Applicants - Demographics' -> 'Applicants---Demographics.csv' (spaces become '-')."""
        stem = re.sub(r"[\s/\\]", "-", self.name.strip()) or f"export-{self.id}"
        return stem + self.extension

    @property
    def generator(self) -> str:
        if self.layout:
            return self.layout
        return {CSV: "generic", CSV_ZIP: "bundle", EXCEL: "table", HTML: "table", FIXED: "fixed_width"}[
            self.format
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "list_type": self.list_type,
            "format": self.format,
            "mime_type": self.mime_type,
        }


DEFAULT_IDENTITIES: tuple[dict[str, Any], ...] = (
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
)

DEFAULT_TEMPLATES: tuple[ExportTemplate, ...] = (
    ExportTemplate(5001, 1001, "Applicants - Demographics", CSV, "all", "demographics"),
    ExportTemplate(5002, 1001, "Program Decisions", CSV, "search", "decisions"),
    ExportTemplate(5003, 1001, "Applicant Bundle", CSV_ZIP, "all", "bundle"),
    ExportTemplate(5004, 1001, "Board Report", EXCEL, None, "table"),
    ExportTemplate(5101, 1002, "University Applicants", CSV, "all", "university"),
    ExportTemplate(5102, 1002, "Fixed Width Extract", FIXED, "clipboard", "fixed_width"),
)

# -- vocabulary -----------------------------------------------------------------------------------


def _latin1(text: str) -> bool:
    try:
        text.encode(ENCODING)
    except UnicodeEncodeError:
        return False
    return True


# fmt: off
ACCENTED_FIRST = ("José", "Zoë", "Françoise", "Chloé", "Renée", "Sofía", "Björn", "Siobhán", "Inês", "Jürgen")
ACCENTED_LAST = ("Núñez", "Müller", "García", "Pérez", "Schäfer", "Ó Súilleabháin", "Gonçalves", "Løvås")
FIRST = tuple(dict.fromkeys((*ACCENTED_FIRST, *(n for n in FIRST_NAMES if _latin1(n)))))
# a few names Latin-1 cannot hold: they arrive as '?' like in real exports
LAST = tuple(dict.fromkeys((*ACCENTED_LAST, *LAST_NAMES)))
CITIES = (
    "Atlanta", "Washington, D.C.", "Winston-Salem", "São Paulo", "Montréal", "St. Louis",
    "Coeur d'Alene", "Chicago", "Zürich", "Boston", "San José", "Baltimore", "Ann Arbor", "Lagos",
)
DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "example.edu", "hotmail.com")
STATUSES = ("Complete", "Verified", "Received", "Undergoing Verification", "In Progress")
PROGRAMS = {
    "sophas": (
        "Master of Public Health - Epidemiology", "MPH, Global Health", "Doctor of Public Health (DrPH)",
        "MS Biostatistics", "PhD Environmental Health Sciences", "MPH - Health Policy & Management",
    ),
    "university": (
        "Nursing MSN", "Computer Science MS", "Education MEd, Curriculum & Instruction", "Public Health MPH",
        "Data Science MS", "Social Work MSW", "Business Administration MBA",
    ),
}
DEPARTMENTS = {
    "Nursing MSN": "School of Nursing", "Computer Science MS": "School of Engineering",
    "Education MEd, Curriculum & Instruction": "School of Education", "Public Health MPH": "School of Public Health",
    "Data Science MS": "School of Engineering", "Social Work MSW": "School of Social Work",
    "Business Administration MBA": "School of Business",
}
DECISIONS = ("Admitted", "Denied", "Waitlisted", "Deferred", "Admitted - Conditional", "Offer Accepted")
DECIDERS = ("Dana Whitfield", "Renée O'Connor", "Marcus Lê", "Admissions Committee", "Søren Jakobsen")
TERMS = ("Fall 2026", "Spring 2027", "Summer 2026")
TESTS = (("GRE Verbal", 130, 170), ("GRE Quantitative", 130, 170), ("GRE Analytical Writing", 0, 12),
         ("TOEFL iBT", 60, 120), ("MCAT", 472, 528))
# fmt: on

DEMOGRAPHICS_HEADER = (
    "CAS ID", "First Name", "Last Name", "Email", "Date of Birth", "Home City",
    "Program", "Application Status", "Submitted Date", "GPA",
)  # fmt: skip
DECISIONS_HEADER = ("CAS ID", "Program", "Decision", "Decision Date", "Decision By")
UNIVERSITY_HEADER = (*DEMOGRAPHICS_HEADER, "Department")
GENERIC_HEADER = (
    "CAS ID",
    "First Name",
    "Last Name",
    "Email",
    "Program",
    "Application Status",
    "Submitted Date",
)
TABLE_HEADER = ("CAS ID", "Last Name", "First Name", "Program", "Application Status", "GPA", "Submitted Date")
FIXED_WIDTHS = (
    ("CAS ID", 10),
    ("Last Name", 25),
    ("First Name", 20),
    ("Program", 45),
    ("Status", 24),
    ("GPA", 4),
)
BUNDLE_MEMBERS: dict[str, tuple[str, ...]] = {
    "applicants.csv": ("CAS ID", "First Name", "Last Name", "Email"),
    "programs.csv": ("CAS ID", "Program", "Program Start Term", "Application Status"),
    "test_scores.csv": ("CAS ID", "Test", "Score", "Test Date"),
}
_ZIP_TIME = (2025, 10, 1, 6, 0, 0)


# -- applicants -----------------------------------------------------------------------------------


def _us_date(day: date) -> str:
    return day.strftime("%m/%d/%Y")


@dataclass(frozen=True)
class Applicant:
    cas_id: str
    first: str
    last: str
    email: str
    birth_date: str
    city: str
    program: str
    status: str
    submitted: str
    gpa: str

    @property
    def department(self) -> str:
        return DEPARTMENTS.get(self.program, "Graduate School")


def applicant(seed: int, pool: str, n: int) -> Applicant:
    """Applicant `n` of an identity's pool: the same person in every export of that identity."""
    rng = rng_for("webadmit", "applicant", pool, seed, n)
    if n % 7 == 0:  # row 0 and every 7th: guaranteed accents, so every file is non-ASCII
        first, last = rng.choice(ACCENTED_FIRST), rng.choice(ACCENTED_LAST)
    else:
        first, last = rng.choice(FIRST), rng.choice(LAST)
    first_part, last_part = (re.sub(r"[^a-z0-9]", "", ascii_fold(part).lower()) for part in (first, last))
    email = f"{first_part}.{last_part}{rng.randrange(100)}@{rng.choice(DOMAINS)}"
    programs = PROGRAMS.get(pool, PROGRAMS["sophas"])
    gpa = "" if rng.random() < 0.05 else f"{rng.uniform(2.4, 4.0):.2f}"  # GPA not yet calculated
    return Applicant(
        # n -> CAS ID is a bijection (the factor is coprime to the modulus): unique, 10 digits, unordered
        cas_id=str(2_100_000_000 + (seed_for("webadmit", "cas", pool, seed) + n * 61_803_421) % 99_999_999),
        first=first,
        last=last,
        email=email,
        birth_date=_us_date(date_between(rng, date(1975, 1, 1), date(2004, 12, 31))),
        city=rng.choice(CITIES),
        program=rng.choice(programs),
        status=rng.choice(STATUSES),
        submitted=_us_date(date_between(rng, date(2025, 8, 1), date(2026, 2, 28))),
        gpa=gpa,
    )


def _pool(template: ExportTemplate) -> str:
    return {1001: "sophas", 1002: "university"}.get(template.identity_id, f"identity-{template.identity_id}")


def _applicants(template: ExportTemplate, rows: int, seed: int) -> list[Applicant]:
    pool = _pool(template)
    if template.list_type == "search":  # a saved search: a stable subset of the pool
        picked = [
            n for n in range(rows * 2) if rng_for("webadmit", "search", template.id, seed, n).random() < 0.5
        ]
        return [applicant(seed, pool, n) for n in picked[:rows]]
    return [applicant(seed, pool, n) for n in range(rows)]


# -- writers --------------------------------------------------------------------------------------


def _csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue().encode(ENCODING, errors="replace")


def _demographics(people: list[Applicant], department: bool = False) -> bytes:
    header = UNIVERSITY_HEADER if department else DEMOGRAPHICS_HEADER
    rows = (
        [p.cas_id, p.first, p.last, p.email, p.birth_date, p.city, p.program, p.status, p.submitted, p.gpa]
        + ([p.department] if department else [])
        for p in people
    )
    return _csv_bytes(header, rows)


def _decisions(template: ExportTemplate, people: list[Applicant], seed: int) -> bytes:
    rows = []
    for p in people:
        rng = rng_for("webadmit", "decision", template.id, seed, p.cas_id)
        decided = date_between(rng, date(2026, 1, 15), date(2026, 4, 30))
        rows.append([p.cas_id, p.program, rng.choice(DECISIONS), _us_date(decided), rng.choice(DECIDERS)])
    return _csv_bytes(DECISIONS_HEADER, rows)


def _bundle(template: ExportTemplate, people: list[Applicant], seed: int) -> bytes:
    programs, scores = [], []
    for p in people:
        rng = rng_for("webadmit", "bundle", template.id, seed, p.cas_id)
        programs.append([p.cas_id, p.program, rng.choice(TERMS), p.status])
        if rng.random() < 0.2:  # some applicants apply to a second program
            second = rng.choice(PROGRAMS.get(_pool(template), PROGRAMS["sophas"]))
            if second != p.program:
                programs.append([p.cas_id, second, rng.choice(TERMS), rng.choice(STATUSES)])
        for test, low, high in rng.sample(TESTS, rng.randrange(0, 3)):
            score = rng.randint(low, high)
            value = f"{score / 2:.1f}" if test == "GRE Analytical Writing" else str(score)
            taken = date_between(rng, date(2022, 1, 1), date(2025, 12, 31))
            scores.append([p.cas_id, test, value, _us_date(taken)])
    members = {
        "applicants.csv": _csv_bytes(
            BUNDLE_MEMBERS["applicants.csv"], ([p.cas_id, p.first, p.last, p.email] for p in people)
        ),
        "programs.csv": _csv_bytes(BUNDLE_MEMBERS["programs.csv"], programs),
        "test_scores.csv": _csv_bytes(BUNDLE_MEMBERS["test_scores.csv"], scores),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def _table(template: ExportTemplate, people: list[Applicant]) -> bytes:
    """WebAdMIT's legacy 'Excel' (and 'Website HTML') export: an HTML table, Latin-1."""
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in TABLE_HEADER)
    lines = [
        "<html>",
        '<head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">',
        f"<title>{html.escape(template.name)}</title></head>",
        '<body><table border="1">',
        f"<tr>{cells}</tr>",
    ]
    for p in people:
        values = (p.cas_id, p.last, p.first, p.program, p.status, p.gpa, p.submitted)
        lines.append("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in values) + "</tr>")
    lines.append("</table></body></html>")
    return ("\r\n".join(lines) + "\r\n").encode(ENCODING, errors="replace")


def _fixed_width(people: list[Applicant]) -> bytes:
    lines = []
    for p in people:
        values = (p.cas_id, p.last, p.first, p.program, p.status, p.gpa)
        lines.append(
            "".join(v[:width].ljust(width) for v, (_, width) in zip(values, FIXED_WIDTHS, strict=True))
        )
    return "".join(line + "\r\n" for line in lines).encode(ENCODING, errors="replace")


def write_export(template: ExportTemplate, rows: int, seed: int, dest: Path) -> None:
    """Write the file one run of `template` produces (`rows` applicants) to `dest`."""
    people = _applicants(template, rows, seed)
    kind = template.generator
    if kind == "demographics":
        data = _demographics(people)
    elif kind == "university":
        data = _demographics(people, department=True)
    elif kind == "decisions":
        data = _decisions(template, people, seed)
    elif kind == "bundle":
        data = _bundle(template, people, seed)
    elif kind == "table":
        data = _table(template, people)
    elif kind == "fixed_width":
        data = _fixed_width(people)
    else:  # "generic": what a CSV template added by a test looks like
        data = _csv_bytes(
            GENERIC_HEADER,
            ([p.cas_id, p.first, p.last, p.email, p.program, p.status, p.submitted] for p in people),
        )
    dest.write_bytes(data)
