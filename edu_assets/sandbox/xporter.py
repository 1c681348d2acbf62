"""Xporter on Demand (Groupcall) emulator: STS tokens, management APIs and the 87 school-data
read endpoints of the vendor document, with paging, change sets, mandatory filters and the
vendor's quirks.

Routes (base URL `{server.url}/xporter`):
  POST /xporter/idaas/sts/STS/GetToken                          (no auth; always HTTP 200)
  GET  /xporter/api/XporterOnDemand/GetXodSchools               (management token)
  GET  /xporter/api/XporterOnDemand/CheckEstab?Estab=X          (management token; also /api/v1/CheckEstab)
  GET  /xporter/api/v1/TokenDetails | Scopes | Queries          (school or management token)
  GET  /xporter/api/v1/Logs | Usage | GDPRIDs                   (management token; every school)
  GET  /xporter/api/v1/School/{estab}/{Path}/[{id}]             (school token of that estab)
every call but the STS with `Authorization: Idaas <token>`.

The schema (paths, result sets, fields, filters) is the document's, built by xporter_schema.py
from a copy of the reference extraction; nothing is read from the client's catalogue.

Quirks reproduced on purpose, because connectors break on exactly these:
- errors come back with HTTP 200 and an error envelope unless the query has `httpstatuscodes=true`;
- unpaged requests are silently capped at `unpaged_cap` rows (the pagination block tells, unless
  the `pagination` knob hides its counts or the block: the document never describes it, L635);
- result sets are spelled as the document's response samples spell them (`Group`, `GroupHistory`,
  `TTDays`...), or as its field-table headings, or one per school (knob `result_set_names`);
- a request without a mandatory filter is refused (14 endpoints, see xporter_schema.FILTER_RULES);
- a delta (`changedRows=<token>`) sent with other select/filters than the call that issued the
  token reports rows missing from the new result as deleted, like the real change tracking; the
  key carrying the next token is not documented (L600) and is chosen by `change_token_key`;
- not-ready data answers a `DBStatus` result set (L611), and `onlyGetDBStatus=true` (L5373) asks
  for that status alone; every data answer carries `meta` with the cache's refresh time (L5375);
- management calls refuse query parameters the document does not list for them;
- a school can be pending, revoked or paused (GDPR selection), and tokens expire.

Row synthesis, the endpoint model and dataset states live in xporter_data.py.
"""

from __future__ import annotations

import copy
import json
import math
import re
import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .app import Knob, VendorApp, nonneg_float, nonneg_int
from .credentials import XPORTER_MANAGEMENT_SECRET as MANAGEMENT_SECRET
from .credentials import XPORTER_RELYING_PARTY as RELYING_PARTY
from .credentials import xporter_school_secret as school_secret
from .http import Request, Response
from .synth import rng_for
from .xporter_data import (
    RESULT_SET_STYLES,
    DataQuery,
    DatasetState,
    Endpoint,
    Filter,
    ListView,
    Projection,
    RowFactory,
    View,
    Window,
    projection,
    result_view,
)
from .xporter_schema import DOMAINS, SOURCE_HINTS, load_schema

__all__ = [
    "DEFAULT_SCHOOLS",
    "MANAGEMENT_SECRET",
    "RELYING_PARTY",
    "STS_PATH",
    "THIRD_PARTY_ID",
    "School",
    "XporterApp",
    "school_secret",
]

THIRD_PARTY_ID = "XporterOnDemand"
STS_PATH = "/idaas/sts/STS/GetToken"
STATUSES = ("authorised", "pending", "revoked", "paused")
DEFAULT_SCHOOLS: tuple[tuple[str, str, str], ...] = (
    ("3281101", "Sandbox Primary", "authorised"),
    ("3281102", "Sandbox Academy", "authorised"),
    ("3281104", "Sandbox High", "authorised"),
    ("3281110", "Sandbox Infants", "pending"),
    ("3281103", "Sandbox College", "revoked"),
)
NULL_EXPIRES = "0001-01-01T00:00:00"
GENERIC_MESSAGE = "An error has occurred."
PAUSED_MESSAGE = "Authorisation is paused while the school finalises which people to include in the feed"
BAD_CHANGE_TOKEN = (
    "The changedRows value is not valid for this change set; send changedRows=* to start a new one"
)
NOT_READY_MESSAGE = "Data not ready yet. Request the data again later."
PAGE_CACHE_ENTRIES = 128  # rendered pages kept (a 2,000-row page of a narrow table is ~0.5 MB)
APP_NAME = "edu-assets sandbox application"
_CACHE_SIZE = 16  # filtered views / deltas kept (each up to one int per row)
_DOMAIN_CACHE = 64  # Id lists of lookup endpoints kept (students, staff, ... per school and state)

# The `__pagination__` item fields are not documented (L635): 'full' sends the fields a 2018 public
# client fixture showed, 'no_counts' leaves out PageCount/RowCount/NextPage, 'none' the whole block.
PAGINATION_STYLES = ("full", "no_counts", "none")
# The key carrying the next changedRows value is not documented (L600): '__changed_rows__' =
# {"__changed_rows__": [{"next_changed_rows": t}]} (the same fixture), 'changedRows' = a top-level
# string, 'meta' = meta[0].changedRows, 'none' = no token at all.
CHANGE_TOKEN_KEYS = ("__changed_rows__", "changedRows", "meta", "none")

# Query parameters the document lists for each management call (anything else is refused);
# `httpstatuscodes` is the document's switch for "your API calls" and allowed everywhere.
MANAGEMENT_PARAMS: dict[str, tuple[str, ...]] = {
    "GetXodSchools": ("includePendingAuthorisation", "estab"),  # L311-316
    "CheckEstab": ("Estab",),  # L437-446
    "TokenDetails": (),
    "Scopes": (),
    "Logs": (),
    "Queries": (),
    "Usage": (),
    "GDPRIDs": (),
}


def _json(obj: Any, status: int = 200) -> Response:
    """Compact JSON like the vendor's .NET serializer (UTF-8, no spaces: 5,000-row pages are big)."""
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(status, {"Content-Type": "application/json; charset=utf-8"}, data)


def _now() -> datetime:
    return datetime.now(UTC)


def _naive(moment: datetime) -> str:
    """Vendor timestamps outside the STS carry no zone: '2024-06-02T10:05:01'."""
    return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat()


def _utc_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "1", "yes")


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple | set | frozenset):
        raise ValueError("expected a list of estabs")
    return [str(v).strip() for v in value]


def _age_days(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ValueError('expected a JSON object {estab: days}, e.g. {"3281101": 3}')
    return {str(k): nonneg_int(v) for k, v in value.items()}


def _choice(choices: tuple[str, ...]) -> Any:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {list(choices)}, got {value!r}")
        return str(value)

    return parse


def _rows_by_endpoint(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ValueError('expected a JSON object {endpoint: rows}, e.g. {"students": 200000}')
    catalog = load_schema()
    parsed = {}
    for key, rows in value.items():
        try:
            parsed[catalog.endpoint(str(key)).name] = nonneg_int(rows)
        except KeyError:
            raise ValueError(f"unknown xporter endpoint {key!r}") from None
    return parsed


def _positive_int(value: Any) -> int:
    parsed = nonneg_int(value)
    if parsed < 1:
        raise ValueError("expected a positive integer")
    return parsed


def envelope(exception_type: str | None = None, message: str | None = None) -> dict[str, Any]:
    """The vendor's error envelope; all None on successful management responses."""
    return {
        "Message": GENERIC_MESSAGE if exception_type else None,
        "ExceptionType": exception_type,
        "ExceptionMessage": message,
        "InnerException": None,
    }


class ParamError(ValueError):
    """A bad query parameter: 400 (or 200 + envelope without httpstatuscodes)."""

    def __init__(self, message: str, exception_type: str = "ArgumentException") -> None:
        super().__init__(message)
        self.exception_type = exception_type


@dataclass
class School:
    """One school that was invited to (or authorised) the sandbox application."""

    estab: str
    name: str
    status: str
    scopes: tuple[str, ...]
    secret: str
    date_invited: str
    date_authorised: str | None = None
    date_revoked: str | None = None


@dataclass
class IssuedToken:
    """An STS token. `invalid` is set by expire_tokens ('expired') or by revoking/pausing."""

    estab: str  # "" = management token
    expires: datetime
    invalid: str | None = None


@dataclass(frozen=True)
class ChangeToken:
    """What a `changedRows` token stands for: the result the caller was given when it was issued."""

    estab: str
    endpoint: str
    query: DataQuery
    state: DatasetState
    projections: tuple[Projection, ...]


@dataclass
class _Paging:
    number: int
    size: int
    explicit: bool

    @property
    def window(self) -> tuple[int, int]:
        start = (self.number - 1) * self.size
        return start, start + self.size


@dataclass
class _Caller:
    token: str
    record: IssuedToken
    school: School | None = field(default=None)


class XporterApp(VendorApp):
    """The Xporter on Demand tenant: schools, STS, management APIs and school data.

    Python API for tests: `add_school`, `set_school_status`, `set_school_scopes`, `schools`,
    `expire_tokens`, `expire_change_tokens`, `mutate`, `current_rows`, `range_calls`.
    """

    name = "xporter"
    FAULT_KINDS = frozenset({"not_ready"})
    ACTIONS = frozenset(
        {
            "mutate",
            "set_school_status",
            "set_school_scopes",
            "expire_tokens",
            "expire_change_tokens",
            "add_schools",
        }
    )
    KNOBS = {
        **VendorApp.KNOBS,
        "rows": Knob(40, nonneg_int, "rows per table of a snapshot endpoint"),
        "rows_by_endpoint": Knob(
            {}, _rows_by_endpoint, 'per-endpoint rows, e.g. {"students": 200000}', cli=False
        ),
        "rows_per_month": Knob(12, nonneg_int, "rows per table per month of a date-range endpoint"),
        "unpaged_cap": Knob(100_011, _positive_int, "rows per table returned when no paging is asked for"),
        "page_latency": Knob(0.0, nonneg_float, "seconds slept on every school-data request"),
        "token_ttl": Knob(3600.0, nonneg_float, "lifetime in seconds of STS tokens"),
        "not_ready_schools": Knob([], _str_list, "estabs whose data requests answer 'not ready'", cli=False),
        "data_age_days": Knob({}, _age_days, "per-estab age of the cached school data", cli=False),
        "seed": Knob(0, int, "changes every generated value (same seed = same bytes)"),
        "row_count_offset": Knob(
            0, int, "added to the RowCount the pagination block reports (a lying server)", cli=False
        ),
        "result_set_names": Knob(
            "sample",
            _choice(RESULT_SET_STYLES),
            "result-set spelling: sample (the document's response samples), heading (its field "
            "tables) or per_school (even last estab digit: sample, odd: heading)",
        ),
        "pagination": Knob(
            "full",
            _choice(PAGINATION_STYLES),
            "__pagination__ block: full | no_counts (no PageCount/RowCount/NextPage) | none",
        ),
        "change_token_key": Knob(
            "__changed_rows__",
            _choice(CHANGE_TOKEN_KEYS),
            "where the next changedRows value goes: __changed_rows__ | changedRows | meta | none",
        ),
    }

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.catalog = load_schema()
        self._lock = threading.RLock()
        self._schools: dict[str, School] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._datasets: dict[tuple[str, str], DatasetState] = {}
        self._change_tokens: dict[str, ChangeToken] = {}
        self._calls: dict[tuple[Any, ...], tuple[str, DatasetState]] = {}
        self._views: OrderedDict[tuple[Any, ...], View] = OrderedDict()
        self._deltas: OrderedDict[tuple[Any, ...], tuple[list[int], list[int]]] = OrderedDict()
        self._page_cache: dict[tuple[Any, ...], list[list[dict[str, Any]]]] = {}
        self._domain_cache: OrderedDict[tuple[Any, ...], tuple[str, ...]] = OrderedDict()
        self.range_call_counts: Counter[tuple[str, str]] = Counter()
        self.range_requests: list[tuple[str, str, str, str]] = []  # (estab, endpoint, from, to)
        self.reset()

    # -- state, reset and the Python API for tests ------------------------------------------------

    def reset(self) -> None:
        """Back to the default schools; forget tokens, mutations, change sets and counters."""
        with self._lock:
            self._schools = {}
            for offset, (estab, school_name, status) in enumerate(DEFAULT_SCHOOLS):
                invited = datetime(2024, 5, 20 + offset, 9, 14, 37, tzinfo=UTC)
                self._schools[estab] = School(
                    estab=estab,
                    name=school_name,
                    status=status,
                    scopes=self.catalog.scopes,
                    secret=school_secret(estab),
                    date_invited=_naive(invited),
                    date_authorised=_naive(invited + timedelta(days=13, hours=1, seconds=offset * 7))
                    if status != "pending"
                    else None,
                    date_revoked=_naive(invited + timedelta(days=200)) if status == "revoked" else None,
                )
            self._tokens.clear()
            self._datasets.clear()
            self._change_tokens.clear()
            self._calls.clear()
            self._views.clear()
            self._deltas.clear()
            self._page_cache.clear()
            self._domain_cache.clear()
            self.range_call_counts.clear()
            self.range_requests.clear()

    @property
    def schools(self) -> dict[str, School]:
        """The schools by estab (copies: change them with the methods below)."""
        with self._lock:
            return {estab: copy.copy(school) for estab, school in self._schools.items()}

    def add_school(
        self,
        estab: str,
        name: str,
        status: str = "authorised",
        scopes: Iterable[str] | None = None,
        secret: str | None = None,
    ) -> School:
        """Invite (and by default authorise) a school; scopes default to every catalogue scope."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        estab = str(estab)
        if not estab:
            raise ValueError("estab must not be empty")
        now = _naive(_now())
        school = School(
            estab=estab,
            name=name,
            status=status,
            scopes=tuple(self.catalog.scopes if scopes is None else scopes),
            secret=secret or school_secret(estab),
            date_invited=now,
            date_authorised=now if status != "pending" else None,
            date_revoked=now if status == "revoked" else None,
        )
        with self._lock:
            self._schools[estab] = school
        return copy.copy(school)

    def add_schools(self, count: int, first_estab: int = 9000001) -> list[str]:
        """Authorise ``count`` more schools with every scope (estabs ``first_estab`` on): a fleet, for
        benchmarks of a trust's or a local authority's daily loads."""
        estabs = [str(first_estab + i) for i in range(int(count))]
        for estab in estabs:
            self.add_school(estab, f"Fleet School {estab}")
        return estabs

    def set_school_status(self, estab: str, status: str) -> None:
        """authorised | pending | revoked | paused. Revoking or pausing invalidates its tokens."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        with self._lock:
            school = self._school(estab)
            school.status = status
            now = _naive(_now())
            if status == "authorised":
                school.date_authorised = now
                school.date_revoked = None
            elif status == "revoked":
                school.date_revoked = now
            if status in ("revoked", "paused"):
                for record in self._tokens.values():
                    if record.estab == estab and record.invalid is None:
                        record.invalid = status

    def set_school_scopes(self, estab: str, scopes: Iterable[str]) -> None:
        """Change what the school consents to (takes effect on the next request)."""
        with self._lock:
            self._school(estab).scopes = tuple(scopes)

    def expire_tokens(self, estab: str | None = None) -> int:
        """Expire issued tokens now: all (None), management ("") or one school's. Returns how many."""
        count = 0
        with self._lock:
            for record in self._tokens.values():
                if (estab is None or record.estab == estab) and record.invalid is None:
                    record.invalid = "expired"
                    count += 1
        return count

    def expire_change_tokens(self, estab: str | None = None) -> int:
        """Forget change-set tokens (all, or one school's): they then answer InvalidChangedRowsToken."""
        with self._lock:
            doomed = [t for t, rec in self._change_tokens.items() if estab is None or rec.estab == estab]
            for token in doomed:
                del self._change_tokens[token]
            self._calls = {k: v for k, v in self._calls.items() if estab is not None and k[0] != estab}
        return len(doomed)

    def range_calls(self, estab: str, endpoint: str) -> int:
        """How many data requests a date-range endpoint answered for a school (every page counts)."""
        return self.range_call_counts[(estab, self.catalog.endpoint(endpoint).name)]

    def mutate(
        self, estab: str, endpoint: str, inserts: int = 0, updates: int = 0, deletes: int = 0
    ) -> dict[str, list[str]]:
        """Change a snapshot endpoint's rows (every table alike): new Ids, new values, removed rows.

        Deterministic given the mutation sequence; LastUpdated of touched rows is the current
        time. Returns the affected Ids: {"inserted": [...], "updated": [...], "deleted": [...]}.
        """
        ep = self._data_endpoint(endpoint)
        if ep.date_range:
            raise ValueError(
                f"{ep.name} is a date-range endpoint; the sandbox mutates snapshot endpoints only"
            )
        for label, count in (("inserts", inserts), ("updates", updates), ("deletes", deletes)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"{label} must be a non-negative integer, got {count!r}")
        with self._lock:
            self._school(estab)
            state = self._state(estab, ep)
            live = state.live()
            if updates + deletes > len(live):
                raise ValueError(
                    f"{ep.name} has {len(live)} rows; cannot update {updates} and delete {deletes}"
                )
            rng = rng_for("xporter", "mutate", self.seed, estab, ep.name, state.seq)
            picked = [live.slice(p, p + 1)[0] for p in rng.sample(range(len(live)), updates + deletes)]
            updated, deleted = sorted(picked[:updates]), sorted(picked[updates:])
            stamp = _naive(_now())
            versions = dict(state.versions)
            touched = dict(state.touched)
            for ident in updated:
                versions[ident] = versions.get(ident, 0) + 1
                touched[ident] = stamp
            inserted = list(range(state.total, state.total + inserts))
            for ident in inserted:
                touched[ident] = stamp
            new_state = DatasetState(
                base=state.base,
                inserted=state.inserted + inserts,
                deleted=tuple(sorted((*state.deleted, *deleted))),
                versions=versions,
                touched=touched,
                seq=state.seq + 1,
            )
            self._datasets[(estab, ep.name)] = new_state
        factory = self._factory(estab, ep, new_state)
        return {
            "inserted": [factory.row_id(i) for i in inserted],
            "updated": [factory.row_id(i) for i in updated],
            "deleted": [factory.row_id(i) for i in deleted],
        }

    def current_rows(
        self,
        estab: str,
        endpoint: str,
        table: str | None = None,
        *,
        date_from: date | None = None,
        date_to: date | None = None,
        filters: dict[str, str] | None = None,
        options: Iterable[str] = (),
    ) -> list[dict[str, Any]]:
        """Exactly what a full, unpaged, uncapped fetch returns now for one result set (default:
        the first). Date windows default as on the wire; `filters` are query parameters
        ({"UDFName": "Bus Route"}), required where the document makes them mandatory."""
        ep = self._data_endpoint(endpoint)
        tbl = ep.table(table)
        params = {k.lower(): str(v) for k, v in (filters or {}).items()}
        window = ep.window
        if window is not None and date_from is not None and date_to is not None:
            if window.between:
                params[window.between.lower()] = f"{date_from}|{date_to}"
            else:
                params[window.from_names[0].lower()] = date_from.isoformat()
                params[window.to_names[0].lower()] = date_to.isoformat()
        params["options"] = ",".join(options)
        with self._lock:
            school = self._school(estab)
            granted = frozenset(school.scopes)
            state = self._state(estab, ep)
        try:
            query = self._parse_query(estab, ep, params, None)
        except ParamError as exc:
            raise ValueError(f"{ep.name}: {exc}") from None
        factory = self._factory(estab, ep, state)
        view = self._view(estab, factory, query)
        return factory.rows(tbl, view.slice(0, len(view)), projection(tbl, granted, None, query.options))

    def _school(self, estab: str) -> School:
        try:
            return self._schools[str(estab)]
        except KeyError:
            raise KeyError(f"no sandbox school {estab!r}; known: {sorted(self._schools)}") from None

    def _data_endpoint(self, endpoint: str) -> Endpoint:
        ep = self.catalog.endpoint(endpoint)
        if ep.kind != "data":
            raise ValueError(f"{ep.name} does not serve rows")
        return ep

    def _state(self, estab: str, ep: Endpoint) -> DatasetState:
        """The current rows of (estab, endpoint); a changed volume knob starts them afresh.

        Lookups that enumerate filter values (UserDefinedFields, LinkedDocumentTypes) have one row
        per value whatever the knobs say.
        """
        if ep.fixed_rows is not None:
            want = ep.fixed_rows
        elif ep.date_range:
            want = self.rows_per_month
        else:
            want = self.rows_by_endpoint.get(ep.name, self.rows)
        with self._lock:
            state = self._datasets.get((estab, ep.name))
            if state is None or state.base != want:
                state = DatasetState(base=want)
                self._datasets[(estab, ep.name)] = state
            return state

    def _view(self, estab: str, factory: RowFactory, query: DataQuery) -> View:
        """The result identities of a query; filtered (materialised) ones are cached per state."""
        key = (estab, factory.endpoint.name, factory.state.uid, query.filters, self.seed, factory.domains_key)
        with self._lock:
            view = self._views.get(key)
            if view is not None:
                self._views.move_to_end(key)
                return view
        view = result_view(factory, query)
        if isinstance(view, ListView):  # live and month views are cheap to rebuild: keep memory flat
            with self._lock:
                self._views[key] = view
                while len(self._views) > _CACHE_SIZE:
                    self._views.popitem(last=False)
        return view

    def _factory(self, estab: str, ep: Endpoint, state: DatasetState) -> RowFactory:
        """A row factory with the domains the endpoint's LINKED columns and filters draw from."""
        sources = {source for _, source in ep.links}
        if ep.filters is not None:
            sources.update(f.source for f in ep.filters.filters)
        domains: dict[str, tuple[str, ...]] = {}
        key: list[tuple[str, Any]] = []
        for source in sorted(sources):
            kind, what = DOMAINS[source]
            if kind == "values":
                domains[source] = what
            else:
                domains[source], uid = self._ids(estab, what)
                key.append((source, uid))
        return RowFactory(estab, ep, state, self.seed, domains, tuple(key))

    def _ids(self, estab: str, endpoint: str) -> tuple[tuple[str, ...], int]:
        """The row Ids an endpoint (a lookup: Students, Staff, assessmentstructure...) has now, and
        the state they belong to; cached per state, so a 200,000-student school pays once."""
        ep = self.catalog.by_name[endpoint]
        state = self._state(estab, ep)
        key = (estab, endpoint, state.uid, self.seed)
        with self._lock:
            cached = self._domain_cache.get(key)
        if cached is None:
            factory = RowFactory(estab, ep, state, self.seed)
            live = state.live()
            cached = tuple(factory.row_id(i) for i in live.slice(0, len(live)))
            with self._lock:
                self._domain_cache[key] = cached
                while len(self._domain_cache) > _DOMAIN_CACHE:
                    self._domain_cache.popitem(last=False)
        return cached, state.uid

    # -- plumbing -----------------------------------------------------------------------------------

    def describe(self) -> str:
        return (
            f"xporter   {self.base_url}   STS: POST {self.base_url}{STS_PATH} relyingParty={RELYING_PARTY} "
            f"password={school_secret('<estab>')} (management: {MANAGEMENT_SECRET}); "
            f"schools {', '.join(f'{s.estab}={s.status}' for s in self._schools.values())}"
        )

    def error_response(self, status: int, message: str, request: Request) -> Response:
        """Injected 429/500/503 faults in the vendor's envelope (the STS keeps its six keys)."""
        exception_type = {429: "TooManyRequests", 503: "ServiceUnavailable"}.get(
            status, "InternalServerError"
        )
        body = envelope(exception_type, message)
        if request.path.lower().rstrip("/") == f"/{self.name}{STS_PATH}".lower():
            body = {"token": None, "expires": NULL_EXPIRES, **body}
        return _json(body, status)

    def _fail(
        self, params: dict[str, str], status: int, exception_type: str, message: str, body: Any = None
    ) -> Response:
        """An error: the real status only with `httpstatuscodes=true`, else HTTP 200 (legacy)."""
        real = _true(params.get("httpstatuscodes"))
        response = _json(
            body if body is not None else envelope(exception_type, message), status if real else 200
        )
        if real and status == 401:
            response.headers["WWW-Authenticate"] = "Idaas"
        return response

    def handle(self, request: Request) -> Response:
        rel = request.path[len(self.name) + 1 :]
        params = {k.lower(): v[-1] for k, v in request.query.items() if v}  # ASP.NET binds any case
        parts = [p for p in rel.split("/") if p]
        lowered = [p.lower() for p in parts]
        if lowered == [p.lower() for p in STS_PATH.strip("/").split("/")]:
            return self.api_sts(request)
        caller, denied = self._authenticate(request, params)
        if denied is not None:
            return denied
        assert caller is not None
        if request.method not in ("GET", "HEAD"):
            return self._fail(
                params, 405, "MethodNotAllowed", f"{request.method} is not supported on {request.path}"
            )
        management = self._management_route(lowered)
        if management is not None:
            what, handler = management
            refused = self._undocumented_params(params, what)
            return refused if refused is not None else handler(params, caller)
        if len(lowered) in (5, 6) and lowered[:3] == ["api", "v1", "school"]:
            row_id = parts[5] if len(parts) == 6 else None
            return self.api_school_data(params, caller, parts[3], parts[4], row_id, request)
        return self._fail(params, 404, "NotFound", f"No endpoint matches {request.path}")

    def _management_route(self, lowered: list[str]) -> tuple[str, Any] | None:
        """(document name, handler) of a management call. GetXodSchools' path is the document's
        (L290); Check Estab has none in the document (L437), so both plausible homes answer."""
        if len(lowered) != 3 or lowered[0] != "api":
            return None
        if lowered[1] == "xporterondemand":
            what = {"getxodschools": "GetXodSchools", "checkestab": "CheckEstab"}.get(lowered[2])
        elif lowered[1] == "v1":
            what = next((name for name in MANAGEMENT_PARAMS if name.lower() == lowered[2]), None)
            what = None if what == "GetXodSchools" else what
        else:
            what = None
        if what is None:
            return None
        handlers = {
            "GetXodSchools": self.api_get_xod_schools,
            "CheckEstab": self.api_check_estab,
            "TokenDetails": self.api_token_details,
            "Scopes": self.api_scopes,
            "Queries": self.api_queries,
            "Logs": self.api_logs,
            "Usage": self.api_usage,
            "GDPRIDs": self.api_gdpr_ids,
        }
        return what, handlers[what]

    def _undocumented_params(self, params: dict[str, str], what: str) -> Response | None:
        """Management calls take only the query parameters the document lists for them."""
        allowed = {p.lower() for p in MANAGEMENT_PARAMS[what]} | {"httpstatuscodes"}
        extra = sorted(set(params) - allowed)
        if not extra:
            return None
        listed = ", ".join(MANAGEMENT_PARAMS[what]) or "none"
        return self._fail(
            params,
            400,
            "ArgumentException",
            f"{what} does not take the parameter(s) {', '.join(extra)}; its documented parameters: {listed}",
        )

    # -- STS ------------------------------------------------------------------------------------------

    def api_sts(self, request: Request) -> Response:
        """POST {estab, relyingParty, password, thirdpartyid} -> token; failures are HTTP 200 too."""
        if request.method != "POST":
            return self._sts_failure("InvalidRequest", "Request a token with POST and a JSON body")
        try:
            raw = request.json()
        except (ValueError, UnicodeDecodeError):
            raw = None
        if not isinstance(raw, dict):
            return self._sts_failure("InvalidRequest", "The request body must be a JSON object")
        body = {str(k).lower(): v for k, v in raw.items()}
        estab = str(body.get("estab") or "").strip()
        relying_party = str(body.get("relyingparty") or "")
        password = str(body.get("password") or "")
        wrong = f"Relying party '{relying_party}' was not found for estab '{estab}', or the password is wrong"
        if body.get("thirdpartyid") != THIRD_PARTY_ID:
            return self._sts_failure(
                "InvalidCredentials", f"Third party '{body.get('thirdpartyid')}' is not valid; {wrong}"
            )
        with self._lock:
            if not estab:
                if relying_party != RELYING_PARTY or password != MANAGEMENT_SECRET:
                    return self._sts_failure("InvalidCredentials", wrong)
                return self._issue("")
            school = self._schools.get(estab)
            if school is None or relying_party != RELYING_PARTY or password != school.secret:
                return self._sts_failure("InvalidCredentials", wrong)
            if school.status == "paused":
                return self._sts_failure("AuthorisationPaused", PAUSED_MESSAGE)
            if school.status == "revoked":
                return self._sts_failure(
                    "AuthorisationRevoked", f"Estab '{estab}' has revoked authorisation for '{relying_party}'"
                )
            if school.status == "pending":
                return self._sts_failure(
                    "AuthorisationPending", f"Estab '{estab}' has not yet authorised '{relying_party}'"
                )
            return self._issue(estab)

    def _issue(self, estab: str) -> Response:
        token = secrets.token_urlsafe(32)
        expires = _now() + timedelta(seconds=self.token_ttl)
        self._tokens[token] = IssuedToken(estab, expires)
        return _json({"token": token, "expires": _utc_z(expires), **envelope()})

    @staticmethod
    def _sts_failure(exception_type: str, message: str) -> Response:
        return _json({"token": None, "expires": NULL_EXPIRES, **envelope(exception_type, message)})

    def _authenticate(
        self, request: Request, params: dict[str, str]
    ) -> tuple[_Caller | None, Response | None]:
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "idaas" or not token:
            return None, self._fail(
                params,
                401,
                "InvalidToken",
                "Authorization header missing; expected 'Authorization: Idaas <token>'",
            )
        with self._lock:
            record = self._tokens.get(token)
            school = self._schools.get(record.estab) if record and record.estab else None
            if record is None:
                return None, self._fail(params, 401, "InvalidToken", "The token is not valid")
            if record.invalid == "expired" or _now() >= record.expires:
                return None, self._fail(
                    params, 401, "TokenExpired", "The token has expired; request a new one from the STS"
                )
            if record.estab:
                status = school.status if school else "revoked"
                if status != "authorised":
                    return None, self._fail(
                        params,
                        403,
                        "Forbidden",
                        f"Estab '{record.estab}' is {status}: its data cannot be read",
                    )
                if record.invalid is not None:  # revoked/paused earlier, authorised again since
                    return None, self._fail(params, 401, "InvalidToken", "The token is no longer valid")
            return _Caller(token, record, copy.copy(school) if school else None), None

    # -- management APIs ------------------------------------------------------------------------------

    def _management_only(self, params: dict[str, str], caller: _Caller, what: str) -> Response | None:
        if caller.record.estab:
            return self._fail(
                params, 403, "Forbidden", f"{what} needs a management token, not a school token"
            )
        return None

    def api_get_xod_schools(self, params: dict[str, str], caller: _Caller) -> Response:
        denied = self._management_only(params, caller, "GetXodSchools")
        if denied is not None:
            return denied
        wanted = params.get("estab") or None
        with self._lock:
            schools = sorted((copy.copy(s) for s in self._schools.values()), key=lambda s: s.estab)
        schools = [s for s in schools if wanted is None or s.estab == wanted]
        body: dict[str, Any] = {
            "Authorised": [
                {
                    "estab": s.estab,
                    "schoolName": s.name,
                    "dateAuthorised": s.date_authorised,
                    "scopesAuthorised": ",".join(sorted(s.scopes)),
                    "installedStatus": True,
                    "installMessage": None,
                }
                for s in schools
                if s.status in ("authorised", "paused")
            ],
            "Revoked": [
                {"estab": s.estab, "schoolName": s.name, "dateRevoked": s.date_revoked}
                for s in schools
                if s.status == "revoked"
            ],
        }
        if _true(params.get("includependingauthorisation")):
            body["PendingAuthorisation"] = [
                {
                    "estab": s.estab,
                    "schoolName": s.name,
                    "dateInvited": s.date_invited,
                    "installedStatus": True,
                    "installMessage": None,
                }
                for s in schools
                if s.status == "pending"
            ]
        return _json(body)

    def api_token_details(self, params: dict[str, str], caller: _Caller) -> Response:
        school = caller.school
        return _json(
            {
                "Estab": school.estab if school else None,
                "Expires": _utc_z(caller.record.expires),
                "Name": school.name if school else APP_NAME,
                "RelyingParty": RELYING_PARTY,
                "Scopes": sorted(school.scopes) if school else [],
            }
        )

    def api_scopes(self, params: dict[str, str], caller: _Caller) -> Response:
        names = sorted(caller.school.scopes) if caller.school else list(self.catalog.scopes)
        return _json({"Scopes": [{"Name": n} for n in names], **envelope()})

    def api_queries(self, params: dict[str, str], caller: _Caller) -> Response:
        endpoints = [
            {"Name": e.path, "Path": f"/api/v1/School/{{estab}}/{e.path}/"} for e in self.catalog.endpoints
        ]
        queries = [{"Name": e.name, "Title": e.title, "Endpoint": e.path} for e in self.catalog.endpoints]
        return _json({"Endpoints": endpoints, "Queries": queries, **envelope()})

    def _app_schools(
        self, params: dict[str, str], caller: _Caller, what: str
    ) -> tuple[list[str], Response | None]:
        """The estabs a management-wide call reports on: every school that authorised the
        application at some point. The document lists no parameter for Logs, Usage or GDPRIDs, so
        nothing selects one school; each row says which school it is about."""
        denied = self._management_only(params, caller, what)
        if denied is not None:
            return [], denied
        with self._lock:
            estabs = sorted(e for e, s in self._schools.items() if s.status != "pending")
        return estabs, None

    def _sample_endpoints(self, rng: Any, count: int) -> list[str]:
        return [rng.choice(self.catalog.endpoints).path for _ in range(count)]

    def api_check_estab(self, params: dict[str, str], caller: _Caller) -> Response:
        """L437: "Check if an estab has Xporter on Demand setup": `Scopes` plus the envelope.

        An authorised (or paused) school answers its granted scopes; a pending or revoked one an
        empty list; an estab the application never invited a NotFound envelope (the document shows
        no negative answer: this is the sandbox's reading).
        """
        denied = self._management_only(params, caller, "CheckEstab")
        if denied is not None:
            return denied
        estab = (params.get("estab") or "").strip()
        if not re.fullmatch(r"\d{7}", estab):
            return self._fail(
                params,
                400,
                "ArgumentException",
                f"CheckEstab needs Estab, the 7-digit estab code; got '{estab}'",
            )
        with self._lock:
            school = copy.copy(self._schools.get(estab))
        if school is None:
            body = {"Scopes": [], **envelope("NotFound", f"Estab '{estab}' has no Xporter on Demand set up")}
            return self._fail(params, 404, "NotFound", "", body=body)
        granted = sorted(school.scopes) if school.status in ("authorised", "paused") else []
        return _json({"Scopes": [{"Name": n} for n in granted], **envelope()})

    def api_logs(self, params: dict[str, str], caller: _Caller) -> Response:
        estabs, denied = self._app_schools(params, caller, "Logs")
        if denied is not None:
            return denied
        start = datetime(2025, 5, 1, 7, 30)
        rows = []
        for estab in estabs:
            rng = rng_for("xporter", "logs", estab, self.seed)
            rows += [
                {
                    "Id": len(rows) + i + 1,
                    "Estab": estab,
                    "DateTime": (start + timedelta(minutes=37 * i + rng.randrange(30))).isoformat(),
                    "Endpoint": endpoint,
                    "Status": rng.choice(("OK", "OK", "OK", "OK", "NotReady", "Error")),
                }
                for i, endpoint in enumerate(self._sample_endpoints(rng, 12))
            ]
        return _json({"Logs": rows, **envelope()})

    def api_usage(self, params: dict[str, str], caller: _Caller) -> Response:
        estabs, denied = self._app_schools(params, caller, "Usage")
        if denied is not None:
            return denied
        rows = []
        for estab in estabs:
            rng = rng_for("xporter", "usage", estab, self.seed)
            rows += [
                {
                    "Date": (date(2025, 5, 1) + timedelta(days=i // 2)).isoformat(),
                    "Estab": estab,
                    "Endpoint": endpoint,
                    "Calls": rng.randint(1, 40),
                    "Rows": rng.randint(0, 20_000),
                }
                for i, endpoint in enumerate(self._sample_endpoints(rng, 10))
            ]
        return _json({"Usage": rows, **envelope()})

    def api_gdpr_ids(self, params: dict[str, str], caller: _Caller) -> Response:
        estabs, denied = self._app_schools(params, caller, "GDPRIDs")
        if denied is not None:
            return denied
        kinds = (("Student", "PL-"), ("Staff", "PWT-"), ("Contact", "PC-"))
        rows = []
        for estab in estabs:
            rng = rng_for("xporter", "gdpr", estab, self.seed)
            for _ in range(8):
                kind, prefix = rng.choice(kinds)
                rows.append(
                    {
                        "Id": len(rows) + 1,
                        "Estab": estab,
                        "IdaasId": f"{prefix}{rng.randint(1000, 99999)}",
                        "Type": kind,
                    }
                )
        return _json({"GDPR": rows, **envelope()})

    # -- school data ----------------------------------------------------------------------------------

    def api_school_data(
        self,
        params: dict[str, str],
        caller: _Caller,
        estab: str,
        path: str,
        row_id: str | None,
        request: Request,
    ) -> Response:
        if not caller.record.estab:
            return self._fail(params, 403, "Forbidden", "A management token cannot read school data")
        if caller.record.estab != estab:
            return self._fail(
                params, 403, "Forbidden", f"This token is for estab '{caller.record.estab}', not '{estab}'"
            )
        school = caller.school
        assert school is not None
        ep = self.catalog.by_path.get(path.lower())
        if ep is None:
            return self._fail(params, 404, "NotFound", f"No endpoint '{path}' for estab '{estab}'")
        if self.page_latency:
            time.sleep(self.page_latency)
        if ep.kind == "testerror":
            return self._fail(
                params, 500, "TestError", "This is a test error raised on request (testerror endpoint)"
            )
        refreshed = self._refreshed(estab)
        if ep.kind == "health":
            return _json(self._health(estab, refreshed))
        meta = {"Id": 1, "MIS": "sandbox", "Version": "1", "DateTime": refreshed}
        if _true(params.get("onlygetdbstatus")):  # L5373: the data status instead of the data
            # a probe is a request like any other: it uses up one of a `not_ready` fault's times, so
            # "not ready for N requests" ends whether the client probes first or not
            waiting = estab in self.not_ready_schools or self.board.take(self.name, "not_ready", request.path) is not None
            return _json({"DBStatus": [self._db_status(estab, ep, ready=not waiting)], "meta": [meta]})
        not_ready = self.board.take(self.name, "not_ready", request.path)
        if not_ready is not None or estab in self.not_ready_schools:
            body = {"DBStatus": [self._db_status(estab, ep, ready=False)]}
            return self._fail(params, 503, "NotReady", NOT_READY_MESSAGE, body=body)
        try:
            query = self._parse_query(estab, ep, params, row_id)
            paging = self._parse_paging(params)
        except ParamError as exc:
            return self._fail(params, 400, exc.exception_type, str(exc))
        if ep.date_range:
            with self._lock:
                self.range_call_counts[(estab, ep.name)] += 1
                self.range_requests.append((estab, ep.name, str(query.date_from), str(query.date_to)))
        try:
            body, token = self._data_body(estab, school, ep, query, paging, params.get("changedrows"))
        except ParamError as exc:
            return self._fail(params, 400, exc.exception_type, str(exc))
        if token is not None and self.change_token_key == "meta":
            meta["changedRows"] = token
        body["meta"] = [meta]  # "the meta result set available on all endpoints" (L5375)
        return _json(body)

    @staticmethod
    def _db_status(estab: str, ep: Endpoint, *, ready: bool) -> dict[str, Any]:
        """One `DBStatus` row. The document names the object (L611, L5373) but never shows its
        fields; these are the sandbox's."""
        return {
            "Estab": estab,
            "Endpoint": ep.path,
            "Status": "Ready" if ready else "NotReady",
            "Message": "Data is ready." if ready else NOT_READY_MESSAGE,
        }

    def _refreshed(self, estab: str) -> str:
        """When the cached school data was refreshed: 02:00 UTC today minus the data_age_days knob."""
        today = _now().replace(hour=2, minute=0, second=0, microsecond=0)
        return _naive(today - timedelta(days=self.data_age_days.get(estab, 0)))

    def _health(self, estab: str, refreshed: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "health": [
                {
                    "SchoolDataStatus": "ok",
                    "SchoolDataAgeDays": self.data_age_days.get(estab, 0),
                    "XodStatus": "ok",
                    "LastRefreshed": refreshed,
                }
            ],
            "meta": [{"Id": 1, "MIS": "sandbox", "Version": "1", "DateTime": refreshed}],
        }
        pagination = self._pagination(_Paging(1, self.unpaged_cap, False), 1)
        if pagination is not None:
            body["__pagination__"] = pagination
        return body

    def _parse_query(self, estab: str, ep: Endpoint, params: dict[str, str], row_id: str | None) -> DataQuery:
        date_from, date_to = self._parse_window(ep.window, params) if ep.window else (None, None)
        since = None
        if ep.updated_since and params.get("updatedsince"):
            since = _date("updatedSince", params["updatedsince"]).isoformat() + "T00:00:00"
        options = {o.strip().lower() for o in (params.get("options") or "").split(",") if o.strip()}
        options.update(
            k for k, v in params.items() if k.startswith(("include", "exclude", "only")) and _true(v)
        )
        return DataQuery(
            date_from=date_from,
            date_to=date_to,
            updated_since=since,
            row_id=row_id,
            select=_parse_select(params.get("select")),
            options=frozenset(options),
            filter_values=self._parse_filters(estab, ep, params),
        )

    def _parse_window(self, window: Window, params: dict[str, str]) -> tuple[date, date]:
        """The date window asked for; where the document makes it optional, a missing side
        defaults (timetables: one week back to two weeks ahead, L12959; others: the document is
        silent, the sandbox takes the current school year up to today)."""
        first = last = None
        if window.between:
            raw = params.get(window.between.lower())
            if raw:
                low, sep, high = raw.partition("|")
                if not sep:
                    raise ParamError(f"{window.between} must look like yyyy-MM-dd|yyyy-MM-dd, got '{raw}'")
                first, last = _date(window.between, low), _date(window.between, high)
            elif window.mandatory:
                raise ParamError(f"The {window.between} parameter is required (yyyy-MM-dd|yyyy-MM-dd)")
        else:
            raw_from = next((params[n.lower()] for n in window.from_names if params.get(n.lower())), None)
            raw_to = next((params[n.lower()] for n in window.to_names if params.get(n.lower())), None)
            missing = [
                names[0]
                for names, raw in ((window.from_names, raw_from), (window.to_names, raw_to))
                if not raw
            ]
            if window.mandatory and missing:
                raise ParamError(f"The {' and '.join(missing)} parameter(s) are required (yyyy-MM-dd)")
            first = _date(window.from_names[0], raw_from) if raw_from else None
            last = _date(window.to_names[0], raw_to) if raw_to else None
        for name in window.extra:
            if params.get(name.lower()):
                _date(name, params[name.lower()])  # validated; no sandbox column to apply it to
        today = _now().date()
        if window.default == "timetable":
            default_from, default_to = today - timedelta(days=7), today + timedelta(days=14)
        else:
            default_from, default_to = date(today.year if today.month >= 9 else today.year - 1, 9, 1), today
        first, last = first or default_from, last or default_to
        if first > last:
            raise ParamError(f"The date window starts ({first}) after it ends ({last})")
        return first, last

    def _parse_filters(
        self, estab: str, ep: Endpoint, params: dict[str, str]
    ) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The endpoint's documented filters as sent; a missing mandatory one is refused, naming
        it and where its values come from."""
        rule = ep.filters
        if rule is None:
            return ()
        given: list[tuple[str, tuple[str, ...]]] = []
        for spec in rule.filters:
            sent = next(
                ((n, params[n.lower()]) for n in spec.names if (params.get(n.lower()) or "").strip()), None
            )
            if sent is None:
                continue
            name, raw = sent
            values = tuple(v.strip() for v in raw.split(",") if v.strip()) if spec.csv else (raw.strip(),)
            for value in values:
                if (spec.choices and value not in spec.choices) or (
                    spec.pattern and not re.fullmatch(spec.pattern, value)
                ):
                    raise ParamError(f"{spec.param} must be {SOURCE_HINTS[spec.source]}, got '{value}'")
            if name != spec.param and spec.source == "document_types":
                values = self._document_type_names(estab, values)
            given.append((spec.param, values))
        sent_names = {param for param, _ in given}
        if rule.rule == "all":
            missing = [f for f in rule.filters if f.param not in sent_names]
            if missing:
                raise ParamError(
                    f"{ep.path} needs the mandatory filter(s) "
                    + "; ".join(f"{_filter_name(f)} ({SOURCE_HINTS[f.source]})" for f in missing)
                    + f" (document line {rule.line})"
                )
        elif not given:
            raise ParamError(
                f"{ep.path} needs at least one of the filters "
                + ", ".join(f.param for f in rule.filters)
                + f" (document line {rule.line}); e.g. {rule.filters[0].param}: {SOURCE_HINTS[rule.filters[0].source]}"
            )
        return tuple(given)

    def _document_type_names(self, estab: str, values: tuple[str, ...]) -> tuple[str, ...]:
        """DocumentTypeId (the parameter list's name, L5896 section) given an Id of
        LinkedDocumentTypes means that type's DocumentTypeName (the prose's filter)."""
        ep = self.catalog.by_name["linked_document_types"]
        factory = self._factory(estab, ep, self._state(estab, ep))
        table = ep.tables[0]
        column = table.column("DocumentTypeName")
        live = factory.state.live()
        by_id = {factory.row_id(i): factory.value(table, column, i) for i in live.slice(0, len(live))}
        return tuple(by_id.get(v, v) for v in values)

    def _parse_paging(self, params: dict[str, str]) -> _Paging:
        page, size = params.get("page"), params.get("pagesize")
        if not page and not size:
            return _Paging(1, self.unpaged_cap, False)
        try:
            number = _positive_int(page) if page else 1
            per_page = _positive_int(size) if size else self.unpaged_cap
        except (TypeError, ValueError):
            raise ParamError(
                f"page and pagesize must be positive integers, got page={page!r} pagesize={size!r}"
            ) from None
        return _Paging(number, per_page, True)

    def _pagination(self, paging: _Paging, row_count: int) -> list[dict[str, Any]] | None:
        """The `__pagination__` block in the knob's style (None: no block at all)."""
        if self.pagination == "none":
            return None
        if self.pagination == "no_counts":
            return [{"PageSize": paging.size, "PageNumber": paging.number}]
        pages = math.ceil(row_count / paging.size)
        nxt = f"?page={paging.number + 1}&pageSize={paging.size}" if paging.number < pages else None
        return [
            {
                "PageSize": paging.size,
                "PageNumber": paging.number,
                "PageCount": pages,
                "RowCount": row_count,
                "NextPage": nxt,
            }
        ]

    def _data_body(
        self,
        estab: str,
        school: School,
        ep: Endpoint,
        query: DataQuery,
        paging: _Paging,
        changed_rows: str | None,
    ) -> tuple[dict[str, Any], str | None]:
        """The result sets of one page (and the next change token, if this was a change-set call)."""
        granted = frozenset(school.scopes)
        projections = tuple(projection(t, granted, query.select, query.options) for t in ep.tables)
        served = [t for t in ep.tables if t.option is None or t.option in query.options]
        state = self._state(estab, ep)
        token: str | None = None
        deleted: View | None = None
        if changed_rows is None:
            factory = self._factory(estab, ep, state)
            view = self._view(estab, factory, query)
        else:
            previous = None
            if changed_rows != "*":
                with self._lock:
                    previous = self._change_tokens.get(changed_rows)
                if previous is None or previous.estab != estab or previous.endpoint != ep.name:
                    raise ParamError(BAD_CHANGE_TOKEN, "InvalidChangedRowsToken")
            token, state = self._change_call(estab, ep, changed_rows, query, projections, paging, state)
            factory = self._factory(estab, ep, state)
            if previous is None:
                view = self._view(estab, factory, query)
            else:
                changed, gone = self._delta(estab, ep, changed_rows, previous, state, query, projections)
                view, deleted = ListView(changed), ListView(gone)
        row_count = max(len(view), len(deleted) if deleted is not None else 0)
        start, stop = paging.window
        idents = view.slice(start, stop)
        gone_ids = (
            [{"Id": factory.row_id(i)} for i in deleted.slice(start, stop)] if deleted is not None else None
        )
        body: dict[str, Any] = {}
        # Rendering rows is the emulator's main cost (~25 us a row); a full view of an immutable state is
        # deterministic, so its pages are cached: the emulator should cost what `page_latency` says.
        cache_key = (
            None
            if deleted is not None
            else (estab, ep.name, state.uid, self.seed, query, projections, start, stop, factory.domains_key)
        )
        cached = self._page_cache.get(cache_key) if cache_key else None
        rendered: list[list[dict[str, Any]]] = []
        for i, table in enumerate(served):
            rows = cached[i] if cached else factory.rows(table, idents, projections[table.index])
            rendered.append(rows)
            name = table.response_name(self.result_set_names, estab)
            body[name] = rows
            if gone_ids is not None:
                body[f"{name}_deleted"] = list(gone_ids)
        if cache_key and not cached:
            with self._lock:
                self._page_cache[cache_key] = rendered
                while len(self._page_cache) > PAGE_CACHE_ENTRIES:
                    self._page_cache.pop(next(iter(self._page_cache)))
        if token is not None and self.change_token_key == "__changed_rows__":
            body["__changed_rows__"] = [{"next_changed_rows": token}]
        elif token is not None and self.change_token_key == "changedRows":
            body["changedRows"] = token
        pagination = self._pagination(paging, row_count + self.row_count_offset)
        if pagination is not None:
            body["__pagination__"] = pagination
        return body, token

    def _change_call(
        self,
        estab: str,
        ep: Endpoint,
        changed_rows: str,
        query: DataQuery,
        projections: tuple[Projection, ...],
        paging: _Paging,
        state: DatasetState,
    ) -> tuple[str, DatasetState]:
        """The next token (and the state it pins) for a change-set call.

        Page 1 (or an unpaged call) starts a call: a new token pinned to the current state. Later
        pages of the same call (same starting value and query) get the same token and state, so
        the pages of one change set are consistent even if the data changes in between.
        """
        key = (estab, ep.name, changed_rows, query)
        with self._lock:
            if paging.number > 1 and key in self._calls:
                return self._calls[key]
            token = secrets.token_urlsafe(24)
            self._change_tokens[token] = ChangeToken(estab, ep.name, query, state, projections)
            self._calls[key] = (token, state)
            return token, state

    def _delta(
        self,
        estab: str,
        ep: Endpoint,
        since_token: str,
        previous: ChangeToken,
        state: DatasetState,
        query: DataQuery,
        projections: tuple[Projection, ...],
    ) -> tuple[list[int], list[int]]:
        """(changed identities, deleted identities) between the token's result and the current one."""
        key = (since_token, state.uid, query, projections, self.seed)
        with self._lock:
            cached = self._deltas.get(key)
        if cached is not None:
            return cached
        old, new = previous.state, state
        old_factory = self._factory(estab, ep, old)
        new_factory = self._factory(estab, ep, new)
        if (
            old.base == new.base
            and previous.query.filters == query.filters
            and previous.projections == projections
        ):
            # Same question as last time: only what the mutations touched can differ.
            gone_now, gone_before = set(new.deleted), set(old.deleted)
            touched = {i for i, v in new.versions.items() if v != old.versions.get(i, 0)}
            touched.update(range(old.total, new.total))
            changed = sorted(i for i in touched - gone_now if new_factory.matches(query, i))
            deleted = [
                i
                for i in new.deleted
                if i not in gone_before and i < old.total and old_factory.matches(previous.query, i)
            ]
        else:
            # Another question: compare whole results, as the vendor does (false deletions).
            before_view = self._view(estab, old_factory, previous.query)
            after_view = self._view(estab, new_factory, query)
            before = before_view.slice(0, len(before_view))
            after = after_view.slice(0, len(after_view))
            before_set, after_set = set(before), set(after)
            same_columns = previous.projections == projections
            changed = [
                i
                for i in after
                if i not in before_set
                or not same_columns
                or old.versions.get(i, 0) != new.versions.get(i, 0)
                or old.touched.get(i) != new.touched.get(i)
            ]
            deleted = [i for i in before if i not in after_set]
        with self._lock:
            self._deltas[key] = (changed, deleted)
            while len(self._deltas) > _CACHE_SIZE:
                self._deltas.popitem(last=False)
        return changed, deleted


def _filter_name(spec: Filter) -> str:
    return spec.param + (f" (or {', '.join(spec.aliases)})" if spec.aliases else "")


def _date(name: str, value: str) -> date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        raise ParamError(f"{name} must be a date in yyyy-MM-dd format, got '{value}'")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ParamError(f"{name} is not a valid date: '{value}'") from None


def _parse_select(raw: str | None) -> tuple[tuple[str, str], ...] | None:
    """'DisplayName as Name,RegGroup' -> (('displayname', 'Name'), ('reggroup', 'RegGroup')); '*' -> None."""
    if raw is None or not raw.strip() or raw.strip() == "*":
        return None
    items = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        pieces = re.split(r"\s+as\s+", item, maxsplit=1, flags=re.IGNORECASE)
        source = pieces[0].strip()
        alias = pieces[1].strip() if len(pieces) == 2 else source
        if not source or not alias or " " in source or " " in alias:
            raise ParamError(f"select items look like 'Column' or 'Column as Name', got '{item}'")
        items.append((source.lower(), alias))
    return tuple(items)
