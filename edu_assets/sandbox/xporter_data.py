"""Data side of the Xporter on Demand emulator: the endpoint model, fast deterministic rows,
dataset states (for mutations and change sets) and the row "views" paging walks over.

Why it is built this way:
- The endpoint model is filled from the vendor document by xporter_schema.py (never from the
  client's catalogue), so the emulator and the connector are two independent readings of it.
- A row is a pure function of (seed, estab, endpoint, table, row identity, row version): the same
  request returns the same bytes, a page can be produced without generating the pages before it
  (200,000-row endpoints are paged at 5,000 rows with ~0.1 s latency in the benchmark), and a
  mutation only has to record which identities changed, not copy any data.
- Every table of an endpoint shares one list of row identities, so all tables have the same row
  count, page by the same window and filter (updatedSince, date range, documented filters) alike.
- Columns a filter can select on (StudentId of linked documents, UDFName of student UDFs...) draw
  their values from the lookup the document says to enumerate them from, so a client that reads
  the lookup and sends its values gets rows back.
"""

from __future__ import annotations

import bisect
import calendar
import functools
import hashlib
import itertools
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from .synth import FIRST_NAMES, LAST_NAMES, WORDS, ascii_fold, rng_for, seed_for

__all__ = [
    "ENUM",
    "LINKED",
    "RESULT_SET_STYLES",
    "ROW_DATE",
    "ROW_HASH",
    "ROW_ID",
    "UPDATED",
    "VALUE",
    "Catalog",
    "Column",
    "DataQuery",
    "DatasetState",
    "Endpoint",
    "Filter",
    "FilterRule",
    "ListView",
    "LiveView",
    "MonthView",
    "Projection",
    "RowFactory",
    "Table",
    "View",
    "Window",
    "projection",
    "result_view",
    "split_scopes",
    "value_pool",
]

_M64 = (1 << 64) - 1
_K_IDENT = 0x9E3779B97F4A7C15
_K_VERSION = 0xC2B2AE3D27D4EB4F
_K_FIELD = 0xD6E8FEB86659FD93
_MONTH_SHIFT = 32  # date-range identity = (year * 12 + month - 1) << 32 | index within the month

# Base rows were "last updated" during this window; mutated rows get the real current time, so an
# incremental `updatedSince=<today>` after a mutation finds exactly the mutated rows.
_BASE_UPDATED_FROM = datetime(2024, 9, 1, 6, 0, 0)
_BASE_UPDATED_SPAN = int((datetime(2025, 6, 30) - _BASE_UPDATED_FROM).total_seconds())
_DATE_FROM = date(2015, 9, 1).toordinal()
_DATE_SPAN = date(2025, 8, 31).toordinal() - _DATE_FROM
_BIRTH_FROM = date(2006, 9, 1).toordinal()
_BIRTH_SPAN = date(2020, 8, 31).toordinal() - _BIRTH_FROM


def _mix(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash of an integer."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


# The document's consent-scope column has a few spellings that are not scope names: "Assessment
# results" (PriorAttainment) is the AssessmentResults scope, and "School GroupIds" / "School
# GroupIdaasIds" (Staff) are the School scope with the column name run into it.
_SCOPE_FIXES = {
    "Assessment results": "AssessmentResults",
    "School GroupIds": "School",
    "School GroupIdaasIds": "School",
}


def split_scopes(text: str | None) -> frozenset[str] | None:
    """'Student / StudentLite' -> {'Student', 'StudentLite'}; None (no scope) -> None = always visible.

    'Student/StudentLite + Contact' is read as any of the three (the document never says how '+'
    combines scopes).
    """
    if text is None:
        return None
    parts = (_SCOPE_FIXES.get(p.strip(), p.strip()) for p in re.split(r"[/,+]", str(text)))
    found = frozenset(p for p in parts if p)
    return found or None


# -- value synthesis by field name ------------------------------------------------------------------
# Every field draws from a pool (a tuple) chosen by its name; a row picks pool[x % len(pool)] with x
# a 64-bit number specific to (row, version, field). Indexing a tuple inside one dict comprehension
# per row, with no function call per value, is what makes ~600,000 values for a 5,000-row page of
# Students cheap. Pools are shared between fields of one kind (dates, ids) and cached by name.

Pool = tuple[Any, ...]

_BOOL_NAMES = frozenset(
    {
        "Active", "Boarder", "Confidential", "ReadOnly", "Verified", "Disabled", "Gifted", "PartTime",
        "EAL", "FsmEligible", "PupilPremium", "MainContact", "ParResp", "EverInCare", "InLeaCare", "Head",
        "OnReport", "EmergencyConsent", "FSMEver6", "PregnantPupil", "ServiceChild", "TranslatorRequired",
        "Traineeship", "SSPExclusion", "SubjectToTribunal", "UndergoingSENDMediation", "CoreAim",
        "StudentAssessedDisabled", "IndustrialInjury", "Governance",
    }
)  # fmt: skip
_INT_NAMES = frozenset(
    {
        "Count", "Points", "Rank", "Priority", "MinsLate", "Marks", "Sequence", "DisplayOrder",
        "DaysPerCycle", "PeriodsPerCycle", "SessionsPerWeek", "DefaultDayOfWeekNum", "ContractWeeksPerYear",
        "TeachingPeriodsPerCycle", "PeriodSequence", "ExclusionDays", "ExclusionSessions", "WorkingDaysLost",
    }
)  # fmt: skip
_FLOAT_NAMES = frozenset(
    {
        "Amount", "Salary", "SalaryFTE", "TotalPay", "FTE", "ContractFTE", "NumericValue", "MinValue",
        "MaxValue", "MinimumAmount", "MaximumAmount", "PayFactor", "AuthorisedPayRate", "ContractHoursPerWeek",
        "HoursLost", "UniformAllowance",
    }
)  # fmt: skip
_FULL_NAME_FIELDS = frozenset(
    {
        "FullName", "Fullname", "DisplayName", "PersonName", "SenCoordinatorName", "CertSignedBy",
        "RecordedBy", "AuthenticatedBy", "Staff",
    }
)  # fmt: skip
_FIRST_NAME_FIELDS = frozenset({"Forename", "LegalForename", "MiddleName", "FirstName"})
_LAST_NAME_FIELDS = frozenset({"Surname", "LegalSurname", "PreviousLegalSurname"})
_MARKS = ("/", "\\", "/", "\\", "L", "B", "C", "D", "E", "I", "M", "N", "O", "P", "R", "U", "V", "W", "#")
_TEXT_HINTS = ("Note", "Comment", "Description", "Summary", "Reason", "Message", "Outcome")
_IDAAS_PREFIX = (
    ("Student", "PL-"),
    ("Staff", "PWT-"),
    ("Contact", "PC-"),
    ("Group", "GR-"),
    ("Agent", "PA-"),
)


def _pool(name: str, size: int, make: Callable[[random.Random], Any]) -> Pool:
    rng = rng_for("xporter", "pool", name)
    return tuple(make(rng) for _ in range(size))


def _title_words(rng: random.Random) -> str:
    return " ".join(w.capitalize() for w in rng.sample(WORDS, 2))


def _sentence(rng: random.Random) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10)))
    return text[:1].upper() + text[1:] + "."


def _guid(rng: random.Random) -> str:
    return "-".join(f"{rng.getrandbits(bits):0{bits // 4}x}" for bits in (32, 16, 16, 16, 48))


def _email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    local = re.sub(r"[^a-z.]", "", ascii_fold(f"{first}.{last}").lower().replace(" ", ""))
    return f"{local}{rng.randint(1, 99)}@example.org"


def _postcode(rng: random.Random) -> str:
    letters = "ABDEFGHJLNPQRSTUWXY"
    area = rng.choice(("LS", "M", "B", "NE", "CF", "EH", "SW", "N"))
    return f"{area}{rng.randint(1, 29)} {rng.randint(1, 9)}{rng.choice(letters)}{rng.choice(letters)}"


def _code(rng: random.Random) -> str:
    return "".join(rng.choice("ABCDEFGHKLMNPRSTUVWXYZ") for _ in range(rng.randint(1, 3))) + str(
        rng.randint(0, 9)
    )


@functools.cache
def _shared(kind: str) -> Pool:
    """Pools several field names share (kept once in memory)."""
    if kind == "dates":
        return tuple(date.fromordinal(_DATE_FROM + d).isoformat() for d in range(_DATE_SPAN))
    if kind == "births":
        return tuple(date.fromordinal(_BIRTH_FROM + d).isoformat() for d in range(_BIRTH_SPAN))
    if kind == "timestamps":
        rng = rng_for("xporter", "pool", kind)
        return tuple(
            (_BASE_UPDATED_FROM + timedelta(seconds=rng.randrange(_BASE_UPDATED_SPAN))).isoformat()
            for _ in range(4096)
        )
    if kind == "ids":
        return tuple(str(v) for v in rng_for("xporter", "pool", kind).sample(range(1000, 100_000), 8192))
    if kind.startswith("idaas:"):
        prefix = kind.split(":", 1)[1]
        return tuple(
            f"{prefix}{v}" for v in rng_for("xporter", "pool", kind).sample(range(1000, 100_000), 8192)
        )
    if kind == "full_names":
        return _pool(kind, 2048, lambda r: f"{r.choice(FIRST_NAMES)} {r.choice(LAST_NAMES)}")
    if kind == "amounts":
        return _pool(kind, 4096, lambda r: round(r.randrange(9_000_000) / 100, 2))
    raise KeyError(kind)


def _idaas_prefix(name: str) -> str:
    return next((prefix for key, prefix in _IDAAS_PREFIX if key in name), "PL-")


@functools.cache
def value_pool(name: str) -> Pool:
    """The values a field of this name takes (cached: every table with a `Surname` shares one)."""
    if re.match(r"(Is|Has|Include)[A-Z_]", name) or name in _BOOL_NAMES:
        return (False, True)
    if name in ("DOB", "DateOfBirth"):
        return _shared("births")
    if "DateTime" in name or name in ("RecordedOn", "LastModified"):
        return _shared("timestamps")
    if "Date" in name or name in ("EmploymentStart", "EmploymentEnd", "PlannedEnd", "LastPayReview"):
        return _shared("dates")
    if name.endswith("Time"):
        return tuple(f"{h:02d}:{m:02d}" for h in range(8, 17) for m in (0, 15, 30, 45))
    if "Email" in name:
        return _pool(name, 512, _email)
    if name.upper().endswith(("XID", "XIDS")) or name.endswith("ExternalId"):
        return _pool(name, 1024, _guid)
    if name.endswith(("Ids", "IDs")):
        prefix = _idaas_prefix(name) if "Idaas" in name else ""
        return _pool(
            name, 256, lambda r: ",".join(f"{prefix}{r.randint(1000, 99999)}" for _ in range(r.randint(1, 4)))
        )
    if "Idaas" in name:
        return _shared(f"idaas:{_idaas_prefix(name)}")
    if name.endswith(("Id", "ID", "_id")) or name == "Mis_Id":
        return _shared("ids")
    if name in _FIRST_NAME_FIELDS:
        return FIRST_NAMES
    if name in _LAST_NAME_FIELDS:
        return LAST_NAMES
    if name in _FULL_NAME_FIELDS:
        return _shared("full_names")
    if name == "Title":
        return ("Mr", "Mrs", "Ms", "Miss", "Dr", "Mx")
    if name == "Gender":
        return ("M", "F", "M", "F", "U")
    if "Phone" in name or name == "Telephone":
        return _pool(name, 256, lambda r: r.choice(("01632 960", "07700 900")) + f"{r.randint(0, 999):03d}")
    if "PostCode" in name:
        return _pool(name, 256, _postcode)
    if name in ("UPN", "FormerUPN"):
        return _pool(name, 2048, lambda r: r.choice("ABCDEFGHJKLMNPRTUVWXYZ") + f"{r.randrange(10**12):012d}")
    if name == "UniqueLearnerNumber":
        return _pool(name, 2048, lambda r: str(r.randrange(1_000_000_000, 9_999_999_999)))
    if name == "NINumber":
        return _pool(name, 256, lambda r: f"QQ{r.randrange(10**6):06d}{r.choice('ABCD')}")
    if name == "Mark":
        return _MARKS
    if name == "Session":
        return ("AM", "PM")
    if name == "Term":
        return ("Autumn", "Spring", "Summer")
    if name == "AcademicYear":
        return tuple(f"{y}/{y + 1}" for y in range(2015, 2026))
    if name in ("Photo", "Attachment"):
        return _pool(
            name,
            16,
            lambda r: "iVBORw0KGgo" + "".join(r.choice("ABCDEFabcdef0123456789+/") for _ in range(40)),
        )
    if name.startswith("MarkIs_"):
        return tuple(range(61))
    if name == "NCYear":
        return tuple(range(1, 14))
    if name in ("Year", "YearTaughtIn"):
        return tuple(range(2015, 2026))
    if name in _FLOAT_NAMES:
        return _shared("amounts")
    if (
        name in _INT_NAMES
        or name.startswith(("Num", "Total", "Weekly", "Term", "Week"))
        or name.endswith(("Points", "Count", "Hours", "Days", "Sessions", "Size", "Order", "Sequence"))
    ):
        return tuple(range(251))
    if any(hint in name for hint in _TEXT_HINTS):
        return _pool(name, 128, _sentence)
    if name.endswith(("Code", "Codes")):
        return _pool(name, 64, _code)
    return _pool(name, 256, _title_words)


# -- endpoint model ---------------------------------------------------------------------------------
# Built from the vendor document by xporter_schema.py; this module only knows the shapes.

# Column kinds (small ints: compared once per value on the hot path).
# VALUE: drawn from the field name's pool; ROW_ID/UPDATED/ROW_HASH/ROW_DATE: set per row;
# LINKED: drawn from another endpoint's Ids or a lookup's values (so a filter on it can be honoured);
# ENUM: the n-th value of a lookup list for row n (a lookup endpoint enumerating filter values).
VALUE, ROW_ID, UPDATED, ROW_HASH, ROW_DATE, LINKED, ENUM = range(7)
RESULT_SET_STYLES = ("sample", "heading", "per_school")


@dataclass(frozen=True)
class Column:
    """One field of a result set: who may see it (consent scopes) and how its value is made."""

    name: str
    scopes: frozenset[str] | None  # None = visible whatever the school authorised
    kind: int = VALUE
    salt: int = 0
    option: str | None = None  # lower-cased include* option the column needs, if any
    values: tuple[Any, ...] = ()  # ENUM values, in row order
    source: str | None = None  # LINKED: the domain its values come from (see xporter_schema.DOMAINS)

    def visible(self, granted: frozenset[str]) -> bool:
        return self.scopes is None or not self.scopes.isdisjoint(granted)


@dataclass(frozen=True)
class Table:
    """A result set of an endpoint.

    `sample` is the array key the document's response sample shows, `heading` the name of its
    "Fields by Scope" table; either may be missing, and they differ on several endpoints (`Group`
    vs `Groups`). `name` is the heading where there is one (how tests and the Python API name it).
    """

    name: str
    sample: str | None
    heading: str | None
    index: int
    columns: tuple[Column, ...]
    option: str | None = None  # lower-cased include* option the result set needs, if any
    fields_from: str | None = None  # where the columns were documented, when not in this section

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every name the document gives this result set (sample first)."""
        names = [n for n in (self.sample, self.heading) if n]
        return tuple(dict.fromkeys(names))

    def response_name(self, style: str, estab: str) -> str:
        """The array key to answer with: the sample's spelling, the heading's, or one per school."""
        if style == "per_school":
            style = "heading" if estab[-1:].isdigit() and int(estab[-1]) % 2 else "sample"
        first, second = (self.heading, self.sample) if style == "heading" else (self.sample, self.heading)
        return first or second or self.name

    @functools.cached_property
    def plan(self) -> tuple[tuple[str, int, Pool, int], ...]:
        """(name, kind, value pool, salt) per column: the precompiled recipe for one row.

        Special columns (Id, LastUpdated, RowHash, the row date) and LINKED ones get an empty pool:
        their value is set per row (or per request) by `RowFactory.rows`.
        """
        return tuple(
            (c.name, c.kind, value_pool(c.name) if c.kind == VALUE else c.values, c.salt)
            for c in self.columns
        )

    @property
    def has_row_hash(self) -> bool:
        return any(c.kind == ROW_HASH for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class Window:
    """The date filter of an endpoint: parameter names (the first of each is the document's
    parameter list spelling, the rest its prose spellings), whether the document makes it
    mandatory, and what an absent optional window means (`default`: 'timetable' = one week back
    to two weeks ahead, as the document states for timetables; 'school_year' otherwise)."""

    from_names: tuple[str, ...] = ()
    to_names: tuple[str, ...] = ()
    between: str | None = None
    mandatory: bool = False
    default: str = "school_year"
    extra: tuple[str, ...] = ()  # other documented date filters: validated, no row column to apply them to


@dataclass(frozen=True)
class Filter:
    """One documented filter the emulator honours (and may require).

    `column` set: a row passes when that column's value is among the requested ones (the column is
    LINKED to `source`, so its values are real Ids/names). `column` None: the document names no
    column for it (Groups, Marksheets, SchoolYear, timetable Id...), so each row belongs to a
    deterministic share of the domain's values.
    """

    param: str
    source: str
    column: str | None = None
    aliases: tuple[str, ...] = ()
    csv: bool = True
    pairs: bool = False  # Aspects=702|34 -> aspect 702 with resultset 34 ('702|' = no resultset)
    choices: tuple[str, ...] = ()  # a fixed set of accepted values (anything else is an error)
    pattern: str | None = None  # a regex every value must match (SchoolYear: yyyy)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.param, *self.aliases)


@dataclass(frozen=True)
class FilterRule:
    """The mandatory filters of an endpoint as the document states them (with its line)."""

    filters: tuple[Filter, ...]
    rule: str  # 'all' = every filter required; 'any' = at least one, results are the union (additive)
    line: int
    overriding: str | None = None  # 'any' rules: this filter, when present, replaces the others

    def by_param(self) -> dict[str, Filter]:
        return {name.lower(): f for f in self.filters for name in f.names}


@dataclass(frozen=True)
class Endpoint:
    """One read endpoint of the document (`/api/v1/School/{estab}/{path}/`)."""

    name: str
    title: str
    path: str
    tables: tuple[Table, ...]
    window: Window | None = None
    updated_since: bool = False
    options: tuple[str, ...] = ()
    filters: FilterRule | None = None
    fixed_rows: int | None = None  # lookup endpoints enumerating filter values have a fixed size
    doc_line: int = 0
    path_confidence: str = ""

    @property
    def date_range(self) -> bool:
        return self.window is not None

    @property
    def kind(self) -> str:
        """'health' and 'testerror' have their own fixed answers; everything else serves rows."""
        lowered = self.path.lower()
        return lowered if lowered in ("health", "testerror") else "data"

    def table(self, name: str | None) -> Table:
        if name is None:
            return self.tables[0]
        lowered = name.lower()
        for table in self.tables:
            if lowered in (n.lower() for n in (table.name, *table.spellings)):
                return table
        raise KeyError(
            f"endpoint {self.name!r} has no result set {name!r}; result sets: {[t.name for t in self.tables]}"
        )

    @functools.cached_property
    def links(self) -> tuple[tuple[str, str], ...]:
        """(column, domain) of every LINKED column of any result set."""
        found = {c.name: c.source for t in self.tables for c in t.columns if c.kind == LINKED and c.source}
        return tuple(sorted(found.items()))


@dataclass(frozen=True)
class Catalog:
    """Every read endpoint of the document, plus the consent scopes its fields name."""

    endpoints: tuple[Endpoint, ...]
    scopes: tuple[str, ...]  # every consent scope any field needs, sorted

    @functools.cached_property
    def by_path(self) -> dict[str, Endpoint]:
        return {e.path.lower(): e for e in self.endpoints}

    @functools.cached_property
    def by_name(self) -> dict[str, Endpoint]:
        return {e.name: e for e in self.endpoints}

    def endpoint(self, name_or_path: str) -> Endpoint:
        """Look an endpoint up by the document's key (`students`) or its path (`Students`, any case)."""
        found = self.by_name.get(name_or_path) or self.by_path.get(name_or_path.strip("/").lower())
        if found is None:
            raise KeyError(f"no xporter endpoint {name_or_path!r}")
        return found


# -- dataset state --------------------------------------------------------------------------------

_state_uids = itertools.count(1)


@dataclass(frozen=True)
class DatasetState:
    """The rows of one (estab, endpoint) at one moment, as identities plus what changed.

    Immutable: a mutation makes a new state, so a change token can keep the state it was issued
    at and the delta is just the difference of two states. Snapshot identities are 0..total-1
    (inserted rows get the next numbers); for date-range endpoints `base` is rows per month and
    the state never changes.
    """

    base: int
    inserted: int = 0
    deleted: tuple[int, ...] = ()  # sorted
    versions: Mapping[int, int] = field(default_factory=dict)  # identity -> number of updates
    touched: Mapping[int, str] = field(default_factory=dict)  # identity -> LastUpdated set by a mutation
    seq: int = 0
    uid: int = field(default_factory=lambda: next(_state_uids))

    @property
    def total(self) -> int:
        return self.base + self.inserted

    def live(self) -> LiveView:
        return LiveView(self.total, self.deleted)


# -- views: ordered identity sequences that can be sliced without materialising -------------------


class View(Protocol):
    def __len__(self) -> int: ...

    def slice(self, start: int, stop: int) -> list[int]: ...


class ListView:
    """A materialised identity list (filtered results, deltas)."""

    def __init__(self, idents: Sequence[int]) -> None:
        self.idents = idents

    def __len__(self) -> int:
        return len(self.idents)

    def slice(self, start: int, stop: int) -> list[int]:
        return list(self.idents[start:stop])


class LiveView:
    """0..total-1 minus the deleted identities, sliced in O(log + page) without a list of all rows."""

    def __init__(self, total: int, deleted: tuple[int, ...]) -> None:
        self.total, self.deleted = total, deleted

    def __len__(self) -> int:
        return self.total - len(self.deleted)

    def _ident_at(self, position: int) -> int:
        # smallest identity i with (live identities <= i) == position + 1
        lo, hi = position, min(position + len(self.deleted), self.total - 1)
        while lo < hi:
            mid = (lo + hi) // 2
            if mid + 1 - bisect.bisect_right(self.deleted, mid) >= position + 1:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def slice(self, start: int, stop: int) -> list[int]:
        stop = min(stop, len(self))
        if start >= stop:
            return []
        if not self.deleted:
            return list(range(start, stop))
        ident = self._ident_at(start)
        skip = bisect.bisect_left(self.deleted, ident)
        out: list[int] = []
        while len(out) < stop - start:
            if skip < len(self.deleted) and self.deleted[skip] == ident:
                skip += 1
            else:
                out.append(ident)
            ident += 1
        return out


class MonthView:
    """Rows of every month overlapping [first, last], keeping only dates inside the window.

    Whole months in the middle are counted, not generated, so a page of a ten-year window costs
    the same as a page of one month.
    """

    def __init__(self, factory: RowFactory, per_month: int, first: date, last: date) -> None:
        self.per_month = per_month
        self.m0 = first.year * 12 + first.month - 1
        self.m1 = last.year * 12 + last.month - 1
        lo, hi = first.isoformat(), last.isoformat()
        self.head = self._month(factory, self.m0, lo, hi)
        self.tail = self._month(factory, self.m1, lo, hi) if self.m1 > self.m0 else []
        self.middle = max(self.m1 - self.m0 - 1, 0) * per_month

    def _month(self, factory: RowFactory, month: int, lo: str, hi: str) -> list[int]:
        idents = [(month << _MONTH_SHIFT) | j for j in range(self.per_month)]
        return [i for i in idents if lo <= factory.row_date(i) <= hi]

    def __len__(self) -> int:
        return len(self.head) + self.middle + len(self.tail)

    def slice(self, start: int, stop: int) -> list[int]:
        stop = min(stop, len(self))
        out: list[int] = []
        position = start
        while position < stop:
            if position < len(self.head):
                out.append(self.head[position])
            elif position < len(self.head) + self.middle:
                offset = position - len(self.head)
                month = self.m0 + 1 + offset // self.per_month
                out.append((month << _MONTH_SHIFT) | (offset % self.per_month))
            else:
                out.append(self.tail[position - len(self.head) - self.middle])
            position += 1
        return out


# -- queries and rows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DataQuery:
    """What a data request asked for, minus paging (hashable: change tokens remember it)."""

    date_from: date | None = None
    date_to: date | None = None
    updated_since: str | None = None  # 'yyyy-MM-ddT00:00:00': rows updated later than this
    row_id: str | None = None  # /School/{estab}/{Path}/{id}
    select: tuple[tuple[str, str], ...] | None = None  # (lower-cased source column, output name)
    options: frozenset[str] = frozenset()  # lower-cased include*/exclude*/only* options switched on
    filter_values: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (filter's document name, values)

    @property
    def filters(self) -> tuple[Any, ...]:
        """The parts that decide which rows are in the result (select/options only shape columns)."""
        return (self.date_from, self.date_to, self.updated_since, self.row_id, self.filter_values)


Projection = tuple[tuple[str, str], ...]


def projection(
    table: Table,
    granted: frozenset[str],
    select: tuple[tuple[str, str], ...] | None,
    options: frozenset[str] = frozenset(),
) -> Projection:
    """(source column, output name) pairs a response carries: consented columns whose option (if
    any) was asked for, then `select`."""
    visible = [
        c.name for c in table.columns if c.visible(granted) and (c.option is None or c.option in options)
    ]
    if select is None:
        return tuple((name, name) for name in visible)
    by_lower = {name.lower(): name for name in visible}
    return tuple((by_lower[src], alias) for src, alias in select if src in by_lower)


_NO_VALUES: tuple[Any, ...] = (None,)


class RowFactory:
    """Makes rows of one (estab, endpoint) at one dataset state; pure, cheap to construct.

    `domains` maps a domain name (`students`, `udf:Student`, ...) to its values: the Ids or names
    LINKED columns draw from and hidden filters select among (see xporter_schema.DOMAINS).
    """

    def __init__(
        self,
        estab: str,
        endpoint: Endpoint,
        state: DatasetState,
        seed: int = 0,
        domains: Mapping[str, tuple[str, ...]] | None = None,
        domains_key: tuple[Any, ...] = (),
    ) -> None:
        self.endpoint = endpoint
        self.state = state
        self.domains = domains or {}
        self.domains_key = domains_key  # identifies the domains' versions (part of cache keys)
        self.prefix = estab[-4:] or "0"
        self.salt = seed_for("xporter", seed, estab, endpoint.name) & _M64
        self.table_salts = [
            seed_for("xporter", seed, estab, endpoint.name, t.index, t.name) for t in endpoint.tables
        ]

    # identity-level values, shared by every table of the endpoint

    def row_id(self, ident: int) -> str:
        if self.endpoint.date_range:
            month, j = divmod(ident >> _MONTH_SHIFT, 12), ident & ((1 << _MONTH_SHIFT) - 1)
            return f"{self.prefix}.{month[0]}{month[1] + 1:02d}.{j + 1}"
        return f"{self.prefix}.{ident + 1}"

    def row_date(self, ident: int) -> str:
        """The date a date-range row belongs to (inside its month)."""
        year, month0 = divmod(ident >> _MONTH_SHIFT, 12)
        days = _days_in_month(year, month0 + 1)
        day = 1 + _mix(self.salt ^ ((ident * _K_IDENT) & _M64)) % days
        return f"{year:04d}-{month0 + 1:02d}-{day:02d}"

    def last_updated(self, ident: int) -> str:
        touched = self.state.touched.get(ident)
        if touched is not None:
            return touched
        noise = _mix(self.salt ^ ((ident * _K_VERSION) & _M64))
        if self.endpoint.date_range:
            moment = datetime.fromisoformat(self.row_date(ident)) + timedelta(
                seconds=6 * 3600 + noise % (3 * 86400)
            )
        else:
            moment = _BASE_UPDATED_FROM + timedelta(seconds=noise % _BASE_UPDATED_SPAN)
        return moment.isoformat()

    def _row_hash(self, table: Table, ident: int) -> int:
        return _mix(
            self.table_salts[table.index]
            ^ (((ident + 1) * _K_IDENT) & _M64)
            ^ ((self.state.versions.get(ident, 0) * _K_VERSION) & _M64)
        )

    def _pool(self, column: Column) -> tuple[Any, ...]:
        if column.kind == LINKED:
            return self.domains.get(column.source or "") or _NO_VALUES
        return column.values if column.kind == ENUM else value_pool(column.name)

    def value(self, table: Table, column: Column, ident: int) -> Any:
        """One VALUE/LINKED cell without rendering the row (what filters compare)."""
        pool = self._pool(column)
        if column.kind == ENUM:
            return pool[ident % len(pool)]
        return pool[(((self._row_hash(table, ident) ^ column.salt) * _K_FIELD) >> 64) % len(pool)]

    def matches(self, query: DataQuery, ident: int) -> bool:
        """Whether a row passes the query's row filters (the date window is applied by the view)."""
        return self.predicate(query)(ident)

    def predicate(self, query: DataQuery) -> Callable[[int], bool]:
        """`matches` as a function built once per query, so filtering 200,000 rows stays cheap.

        For untouched snapshot rows `LastUpdated > since` is decided on the integer seconds the
        timestamp is made from, without formatting it (same result as comparing the strings).
        """
        since, row_id = query.updated_since, query.row_id
        touched = self.state.touched
        threshold = (datetime.fromisoformat(since) - _BASE_UPDATED_FROM).total_seconds() if since else 0.0
        salt, span, date_range = self.salt, _BASE_UPDATED_SPAN, self.endpoint.date_range
        documented = self._filter_predicate(query)

        def updated_after(ident: int) -> bool:
            if since is None:
                return True
            stamp = touched.get(ident)
            if stamp is not None or date_range:
                return (stamp or self.last_updated(ident)) > since
            return _mix(salt ^ ((ident * _K_VERSION) & _M64)) % span > threshold

        def keep(ident: int) -> bool:
            return (
                (row_id is None or self.row_id(ident) == row_id)
                and (documented is None or documented(ident))
                and updated_after(ident)
            )

        return keep if (row_id is not None or documented is not None) else updated_after

    def _filter_predicate(self, query: DataQuery) -> Callable[[int], bool] | None:
        """The endpoint's documented filters: all of them ('all') or the union of those given ('any')."""
        rule = self.endpoint.filters
        if rule is None or not query.filter_values:
            return None
        given = dict(query.filter_values)
        if rule.rule == "any" and rule.overriding in given:
            # "If more than one are present, then the filter is additive, apart from Resultsets which
            # overrides any others" (assessment results, L1137)
            given = {rule.overriding: given[rule.overriding]}
        by_param = {f.param: f for f in rule.filters}
        tests = [self._filter_test(by_param[p], values) for p, values in given.items() if p in by_param]
        if not tests:
            return None
        if rule.rule == "all":
            return lambda ident: all(test(ident) for test in tests)
        return lambda ident: any(test(ident) for test in tests)

    def _filter_test(self, spec: Filter, values: tuple[str, ...]) -> Callable[[int], bool]:
        if spec.column is None:
            domain = frozenset(self.domains.get(spec.source, ()))
            keys = [seed_for("xporter-member", spec.param, v) & _M64 for v in values if v in domain]
            share = max(1, min(len(domain), 4))  # each row belongs to about a quarter of the values
            salt = self.salt
            return lambda ident: any(
                _mix(key ^ salt ^ (((ident + 1) * _K_IDENT) & _M64)) % share == 0 for key in keys
            )
        table = next(t for t in self.endpoint.tables if any(c.name == spec.column for c in t.columns))
        column = table.column(spec.column)
        if not spec.pairs:
            wanted = frozenset(values)
            return lambda ident: self.value(table, column, ident) in wanted
        by_aspect: dict[str, set[str | None]] = {}
        for value in values:
            aspect, sep, resultset = value.partition("|")
            by_aspect.setdefault(aspect.strip(), set()).add(resultset.strip() if sep else None)
        resultset_column = table.column("ResultSetId")

        def paired(ident: int) -> bool:
            wanted_sets = by_aspect.get(self.value(table, column, ident))
            if wanted_sets is None:
                return False
            # '702' = every resultset; '702|34' = resultset 34; '702|' = no resultset (every sandbox result has one)
            return None in wanted_sets or self.value(table, resultset_column, ident) in wanted_sets

        return paired

    # table rows

    def rows(self, table: Table, idents: Sequence[int], proj: Projection) -> list[dict[str, Any]]:
        """The rows of `table` for these identities, with the projected (consented/selected) columns.

        The hot path of the emulator: one uniform dict comprehension per row. A value column picks
        pool[x % len(pool)] with x the high 64 bits of (row hash ^ field salt) * odd constant; a
        special column (Id, LastUpdated, RowHash, the row date, ENUM) reads a one-slot box this call
        refills per row (boxes are per call, so concurrent requests never share them).
        """
        salt = self.table_salts[table.index]
        versions = self.state.versions
        boxes: dict[int, list[Any]] = {}
        enums: list[tuple[list[Any], tuple[Any, ...]]] = []
        plan = []
        for (name, kind, pool, field_salt), column in zip(table.plan, table.columns, strict=True):
            if kind == LINKED:
                pool = self._pool(column)
            elif kind == ENUM:
                box = [None]
                enums.append((box, pool))
                pool = box  # type: ignore[assignment]
            elif kind != VALUE:
                pool = boxes.setdefault(kind, [None])  # type: ignore[assignment]
            plan.append((name, pool, len(pool), field_salt))
        id_box, updated_box, date_box = boxes.get(ROW_ID), boxes.get(UPDATED), boxes.get(ROW_DATE)
        want_hash = ROW_HASH in boxes
        date_time = any(kind == ROW_DATE and "DateTime" in name for name, kind, _, _ in table.plan)
        as_is = proj == tuple((name, name) for name, _, _, _ in table.plan)  # nothing dropped or renamed
        out: list[dict[str, Any]] = []
        for ident in idents:
            h = _mix(
                salt ^ (((ident + 1) * _K_IDENT) & _M64) ^ ((versions.get(ident, 0) * _K_VERSION) & _M64)
            )
            if id_box is not None:
                id_box[0] = self.row_id(ident)
            if updated_box is not None:
                updated_box[0] = self.last_updated(ident)
            if date_box is not None:
                day = self.row_date(ident)
                date_box[0] = f"{day}T{8 + h % 9:02d}:{(h >> 8) % 4 * 15:02d}:00" if date_time else day
            for box, values in enums:
                box[0] = values[ident % len(values)]
            full = {
                name: pool[(((h ^ field_salt) * _K_FIELD) >> 64) % n] for name, pool, n, field_salt in plan
            }
            if want_hash:  # over every other value (the RowHash slot still holds None here)
                digest = "\x1f".join(map(str, full.values())).encode("utf-8")
                full["RowHash"] = hashlib.md5(digest, usedforsecurity=False).hexdigest()
            out.append(full if as_is else {alias: full[src] for src, alias in proj})
        return out


@functools.cache
def _days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def result_view(factory: RowFactory, query: DataQuery) -> View:
    """The ordered identities a full (non-delta) request returns, before paging."""
    endpoint, state = factory.endpoint, factory.state
    if endpoint.date_range:
        if query.date_from is None or query.date_to is None:
            raise ValueError(f"{endpoint.name} needs a date window")
        view: View = MonthView(factory, state.base, query.date_from, query.date_to)
    else:
        view = state.live()
    if query.updated_since is None and query.row_id is None and not query.filter_values:
        return view
    keep = factory.predicate(query)
    return ListView([i for i in view.slice(0, len(view)) if keep(i)])
