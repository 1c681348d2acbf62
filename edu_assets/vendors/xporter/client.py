"""Xporter HTTP client: one per school (or the management token), paging, change sets, vendor errors.

Every request asks for real status codes (``httpstatuscodes=true``) and still treats a body whose
``ExceptionMessage`` is set as an error, because the vendor has answered errors with HTTP 200. Every
school-data request pages explicitly: unpaged results are silently capped by the server.

The document leaves much of the wire format open (``__pagination__`` fields, the key carrying the next
``changedRows`` token, the ``DBStatus`` shape, the ``meta`` fields). Where it is silent this client accepts
the plausible spellings, matched case-insensitively, records which one it saw (``FetchSummary``), and
fails loudly rather than land nothing: see ``parse_page``, ``find_change_token``, ``db_status_of`` and
``meta_last_updated``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edu_assets.core.errors import EduAssetsError, VendorAuthError, VendorHTTPError, Where
from edu_assets.core.http import Log, VendorHTTP
from edu_assets.core.paging import fetch_pages, fetch_until
from edu_assets.core.tokens import TokenCache

if TYPE_CHECKING:
    import httpx  # imported where used: it costs ~60 ms, and the code location loads without it

VENDOR = "xporter"


def norm(name: str) -> str:
    """``"__changed_rows__"`` -> ``"changedrows"``: how undocumented key spellings are compared."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


# Keys that carry the next change-set token (undocumented, L600): the 2018 public-client fixture's
# ``__changed_rows__[0].next_changed_rows`` and the plausible spellings of it.
TOKEN_KEYS = frozenset(
    {
        "changedrows",
        "nextchangedrows",
        "changedrowstoken",
        "nextchangedrowstoken",
        "changetoken",
        "nextchangetoken",
        "changesettoken",
        "nextchangesettoken",
    }
)
TOKEN_INNER_KEYS = TOKEN_KEYS | {"token", "nexttoken", "value"}
ENVELOPE = frozenset({"message", "exceptiontype", "exceptionmessage", "innerexception"})
DB_STATUS = "dbstatus"
# Not result sets: ``meta``, ``__pagination__``, the token, DBStatus and the error envelope.
NOT_RESULT_SETS = frozenset({"meta", "pagination", DB_STATUS}) | TOKEN_KEYS | ENVELOPE
PAGE_COUNT_KEYS = ("pagecount", "totalpages")
ROW_COUNT_KEYS = ("rowcount", "totalrows", "totalcount", "recordcount", "totalrecords")
# DBStatus words (the shape is undocumented): one of READY means the data can be fetched, one of NOT_READY
# means wait; any other word is reported as such (a probe loads anyway; a data call is not landed).
READY = frozenset(
    {
        "ready",
        "ok",
        "complete",
        "completed",
        "available",
        "done",
        "success",
        "succeeded",
        "uptodate",
        "current",
        "cached",
        "loaded",
    }
)
NOT_READY = frozenset(
    {
        "notready",
        "pending",
        "processing",
        "inprogress",
        "refreshing",
        "queued",
        "loading",
        "running",
        "requested",
        "waiting",
        "busy",
        "updating",
        "notavailable",
        "unavailable",
        "building",
        "started",
        "notstarted",
    }
)
_STATUS_KEYS = ("status", "dbstatus", "state", "datastatus")
_STATUS_MESSAGE_KEYS = ("message", "statusmessage", "description")
# meta's last-updated time (L5375; field names undocumented), most specific first
META_TIME_KEYS = (
    "lastupdated",
    "datalastupdated",
    "lastrefreshed",
    "lastrefresh",
    "refreshed",
    "lastcached",
    "cachedate",
    "cachedat",
    "datetime",
    "updated",
    "updatedat",
    "timestamp",
    "date",
)


class DataNotReady(EduAssetsError):
    """The vendor's cache for this school/endpoint is being refreshed (``DBStatus``): nothing may be landed."""

    default_hint = "nothing was landed; the step retries after a wait (config not_ready_retries / not_ready_wait_seconds)"


class ChangeTokenRejected(EduAssetsError):
    """The server no longer accepts the stored ``changedRows`` token: a full reload (``*``) is needed."""


class MissingResultSets(VendorHTTPError):
    """A response with none of the endpoint's documented result sets: landing it would replace every table
    of the partition with zero rows, so it is refused."""


def lookup(mapping: Mapping[str, Any], *names: str) -> tuple[str | None, Any]:
    """The first of ``names`` present in ``mapping``, compared with ``norm``: ``(key as sent, value)``."""
    keys = {norm(k): k for k in mapping}
    for name in names:
        key = keys.get(norm(name))
        if key is not None:
            return key, mapping[key]
    return None, None


@dataclass(frozen=True)
class DbStatus:
    """A ``DBStatus`` answer (shape undocumented): the key as spelt, the status word and message."""

    key: str
    status: str | None
    message: str | None
    ready: bool | None  # None: a status word this client does not know

    def __str__(self) -> str:
        text = self.status if self.status is not None else "no status"
        return f"{self.key} {text!r}" + (f": {self.message}" if self.message else "")


def db_status_of(body: Mapping[str, Any]) -> DbStatus | None:
    """The ``DBStatus`` of a response (any case: ``DBStatus``, ``DbStatus``...), or None if it has none."""
    key, value = lookup(body, DB_STATUS)
    if key is None:
        return None
    first = value[0] if isinstance(value, list) and value else value
    status = message = None
    if isinstance(first, Mapping):
        status = lookup(first, *_STATUS_KEYS)[1]
        message = lookup(first, *_STATUS_MESSAGE_KEYS)[1]
    elif isinstance(first, bool):
        return DbStatus(key, str(first), None, first)
    elif first not in (None, "", []):
        status = first
    status = None if status is None else str(status)
    word = norm(status or "")
    ready = True if word in READY else False if word in NOT_READY else None
    return DbStatus(key, status, None if message is None else str(message), ready)


def find_change_token(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The next ``changedRows`` token and where it was found (``"__changed_rows__[0].next_changed_rows"``).

    The document says the response carries it but not under which key (L600): any key in ``TOKEN_KEYS``, at
    the top level or in a ``meta``/``__pagination__`` row, holding the token itself or a row (or list of
    rows) with it under a key in ``TOKEN_INNER_KEYS``."""
    for key, value in _token_candidates(body):
        if _scalar(value):
            return str(value), key
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            where = f"{key}[{i}]" if isinstance(value, list) else key
            if _scalar(item):
                return str(item), where
            if isinstance(item, Mapping):
                for inner, token in item.items():
                    if norm(inner) in TOKEN_INNER_KEYS and _scalar(token):
                        return str(token), f"{where}.{inner}"
    return None, None


def _token_candidates(body: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Top-level keys first, then the same keys inside a ``meta`` or ``__pagination__`` row (``meta[0].changedRows``)."""
    for key, value in body.items():
        if norm(key) in TOKEN_KEYS:
            yield key, value
    for block in ("meta", "pagination"):
        for key, value in body.items():
            if norm(key) == block and isinstance(value, list):
                for i, row in enumerate(value):
                    if isinstance(row, Mapping):
                        yield from ((f"{key}[{i}].{k}", v) for k, v in row.items() if norm(k) in TOKEN_KEYS)


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip() != ""


def meta_last_updated(meta: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """When the data behind the endpoint was last updated, from the ``meta`` result set (L5375): the
    oldest time its rows give (ISO 8601, UTC) and the field it came from, or None.

    The fields are undocumented: ``META_TIME_KEYS`` first, then any field named like a time. Times without
    a zone are taken as UTC (the document never gives a zone)."""
    found: list[tuple[dt.datetime, str]] = []
    for row in meta:
        if not isinstance(row, Mapping):
            continue
        named = {norm(k): k for k in row}
        candidates = [named[k] for k in META_TIME_KEYS if k in named]
        candidates += [
            k for k in row if k not in candidates and re.search(r"updat|refresh|date|time", k, re.I)
        ]
        for key in candidates:
            moment = parse_time(row[key])
            if moment is not None:
                found.append((moment, key))
                break
    if not found:
        return None
    moment, key = min(found)
    return moment.isoformat(), key


def parse_time(raw: Any) -> dt.datetime | None:
    """An ISO 8601 time (any number of fraction digits, ``Z`` or no zone) or a .NET ``/Date(ms)/``, in UTC."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    text = raw.strip()
    dotnet = re.fullmatch(r"/Date\((-?\d+)([+-]\d{4})?\)/", text)
    if dotnet:
        return dt.datetime.fromtimestamp(int(dotnet.group(1)) / 1000, dt.UTC)
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


@dataclass
class Page:
    sets: dict[str, list[dict[str, Any]]]  # result set (as the vendor spelt it) -> rows; empty arrays kept
    deleted: dict[str, list[str]]  # ``<Set>_deleted`` -> ids
    pagination: dict[str, Any]
    next_token: str | None
    token_key: str | None = None  # where the token was found (see find_change_token)
    meta: list[dict[str, Any]] = field(default_factory=list)
    keys: tuple[str, ...] = ()  # every top-level key, as sent (for errors)

    @property
    def largest(self) -> int:
        """Rows in the page's largest array (RowCount and page size count the largest array of a call)."""
        return max(
            [*(len(r) for r in self.sets.values()), *(len(i) for i in self.deleted.values())], default=0
        )


@dataclass
class FetchSummary:
    pages: int = 0
    reported_rows: int | None = None
    received: dict[str, int] = field(default_factory=dict)  # result set -> rows (0: an explicit empty array)
    deleted: dict[str, list[str]] = field(default_factory=dict)  # result set -> ids
    next_token: str | None = None
    token_key: str | None = None  # where the next token was found in the response
    change_set: bool = False  # the request carried changedRows (so a token was expected back)
    meta: list[dict[str, Any]] = field(default_factory=list)
    paging: str = ""  # how the end of the result was found (PageCount, or a short page)
    sent_keys: tuple[str, ...] = ()  # page 1's top-level keys, as sent
    seconds: float = 0.0  # wall time of the paging, first request to last page handled

    @property
    def data_updated(self) -> tuple[str, str] | None:
        """``meta``'s last-updated time and its field (see ``meta_last_updated``)."""
        return meta_last_updated(self.meta)


def parse_page(body: Any, where: Where) -> Page:
    """Split a response into result sets, ``<Set>_deleted`` id lists, the pagination block and next token.

    Every top-level array that is not ``meta``, ``__pagination__``, the token, ``DBStatus`` or the error
    envelope is a result set, whatever its name: routing names to tables is the caller's business."""
    if not isinstance(body, dict):
        raise VendorHTTPError(where, f"expected a JSON object, got {type(body).__name__}")
    raise_for_envelope(body, where)
    sets: dict[str, list[dict[str, Any]]] = {}
    deleted: dict[str, list[str]] = {}
    for name, value in body.items():
        if norm(name) in NOT_RESULT_SETS or not isinstance(value, list):
            continue
        if name.lower().endswith("_deleted"):
            deleted[name[: -len("_deleted")]] = [_row_id(r) for r in value]
        else:
            sets[name] = [r for r in value if isinstance(r, dict)]
    raw_pagination = lookup(body, "__pagination__")[1]
    first = raw_pagination[0] if isinstance(raw_pagination, list) and raw_pagination else raw_pagination
    meta = lookup(body, "meta")[1]
    token, token_key = find_change_token(body)
    return Page(
        sets,
        deleted,
        dict(first) if isinstance(first, Mapping) else {},
        token,
        token_key,
        [m for m in meta if isinstance(m, dict)] if isinstance(meta, list) else [],
        tuple(body),
    )


def _row_id(row: Any) -> str:
    if isinstance(row, Mapping):
        return str(lookup(row, "Id")[1])
    return str(row)


def raise_for_envelope(body: Mapping[str, Any], where: Where, *, db_status_probe: bool = False) -> None:
    """Raise on the vendor's error shapes: a ``DBStatus`` (any case) that is not a ready one, and a
    non-null ``ExceptionMessage``.

    In a data response any ``DBStatus`` but a known ready word means no data; for a ``db_status_probe``
    (``onlyGetDBStatus=true``) only a known not-ready word raises."""
    status = db_status_of(body)
    if status is not None and (status.ready is False or (status.ready is None and not db_status_probe)):
        known = "" if status.ready is False else " (a status this client does not know as ready)"
        raise DataNotReady(where, f"Xporter says the data is not ready yet ({status}){known}")
    message = lookup(body, "ExceptionMessage")[1]
    if message:
        kind = lookup(body, "ExceptionType")[1] or "error"
        if "changedrows" in f"{kind} {message}".lower():
            raise ChangeTokenRejected(
                where,
                f"Xporter rejected the change-set token ({kind}: {message})",
                hint="a full reload starts a new change set",
            )
        raise VendorHTTPError(
            where,
            f"Xporter returned {kind}: {message}",
            hint="check the endpoint's parameters and the school's scopes, then re-run the partition",
        )


class XporterClient:
    """Requests for one token scope: a school's estab, or ``""`` for the management token.

    The token is looked up per request from the shared cache (refreshed ahead of expiry, and once on a
    401), and only ever for this client's own scope.
    """

    def __init__(
        self,
        base_url: str,
        tokens: TokenCache,
        scope: str,
        *,
        log: Log | None = None,
        page_size: int = 5000,
        page_concurrency: int = 4,
        rate_per_second: float = 0.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.scope = scope
        self.page_size = page_size
        self.page_concurrency = page_concurrency
        self.http = VendorHTTP(
            "xporter",
            base_url,
            auth_headers=lambda: {"Authorization": f"Idaas {tokens.get(scope)}"},
            reauth=lambda rejected: tokens.refresh(
                scope, stale=rejected.get("Authorization", "").removeprefix("Idaas ")
            ),
            log=log,
            rate_per_second=rate_per_second,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def get(
        self,
        path: str,
        params: Mapping[str, Any],
        where: Where,
        *,
        db_status_probe: bool = False,
        status_codes: bool = True,
    ) -> Any:
        """One request; vendor errors raise (whatever the HTTP status). ``status_codes=False`` leaves out
        ``httpstatuscodes=true``, which the document lists for school-data endpoints only: management
        calls send only their documented parameters."""
        response = self.http.request(
            "GET",
            path,
            where,
            params={**params, "httpstatuscodes": "true"} if status_codes else dict(params),
            ok_statuses=(400, 503),
        )
        try:
            body = response.json()
        except ValueError:
            raise VendorHTTPError(
                where, f"expected JSON, got HTTP {response.status_code}: {response.text[:200]!r}"
            ) from None
        if isinstance(body, dict):
            raise_for_envelope(body, where, db_status_probe=db_status_probe)
        if response.status_code >= 400:
            raise self.http.error_for(response, where)
        return body

    def school_path(self, endpoint_path: str) -> str:
        return f"api/v1/School/{self.scope}/{endpoint_path}/"

    def probe(self, endpoint_path: str, params: Mapping[str, Any], where: Where) -> DbStatus | None:
        """The cheap readiness probe before a full load: the same request with ``onlyGetDBStatus=true``
        (Health, L5373), which answers the data's status instead of the data.

        Raises ``DataNotReady`` on a not-ready status. Returns the status, or None when the answer has no
        ``DBStatus`` (the vendor ignored the flag; paging is sent so that costs one row) or the probe itself
        failed (logged: the load goes ahead and reports its own errors). ``changedRows`` is never sent,
        so a probe cannot start or move a change set."""
        query = {k: v for k, v in params.items() if norm(k) != "changedrows"}
        try:
            body = self.get(
                self.school_path(endpoint_path),
                {**query, "onlyGetDBStatus": "true", "page": 1, "pagesize": 1},
                where,
                db_status_probe=True,
            )
        except (DataNotReady, VendorAuthError):
            raise
        except VendorHTTPError as exc:
            self.http.log.warning(f"{where}: the onlyGetDBStatus probe failed ({exc.what}); loading anyway")
            return None
        status = db_status_of(body) if isinstance(body, dict) else None
        if status is None:
            self.http.log.info(f"{where}: the onlyGetDBStatus probe answered no DBStatus; loading")
        elif status.ready is None:
            self.http.log.warning(
                f"{where}: the onlyGetDBStatus probe answered {status}, a status this client "
                "does not know; loading anyway"
            )
        return status

    def fetch(
        self,
        endpoint_path: str,
        params: Mapping[str, Any],
        where: Where,
        on_rows: Callable[[str, list[dict[str, Any]]], None],
        *,
        page_size: int | None = None,
        concurrency: int | None = None,
        result_sets: Sequence[str] | None = None,
    ) -> FetchSummary:
        """Fetch every page of a school-data request, handing each result set's rows to ``on_rows``.

        ``result_sets``: the endpoint's documented names; page 1 must carry at least one of them (an empty
        array counts: the vendor saying "no rows"), else ``MissingResultSets`` is raised before anything is
        handed on. When page 1 gives ``PageCount``, the other pages are fetched with bounded concurrency;
        without it (``__pagination__`` is undocumented, L635) pages are requested one by one until a short
        or empty page. Whenever the server reports ``RowCount``, the rows received are checked against it.
        """
        size = page_size or self.page_size
        path = self.school_path(endpoint_path)
        summary = FetchSummary(change_set=any(norm(k) == "changedrows" for k in params))
        last_fingerprint: list[str] = []

        def get_page(number: int) -> Page:
            return parse_page(self.get(path, {**params, "page": number, "pagesize": size}, where), where)

        def consume(number: int, page: Page) -> None:
            summary.pages += 1
            for name, rows in page.sets.items():
                summary.received[name] = summary.received.get(name, 0) + len(rows)
                on_rows(name, rows)
            for name, ids in page.deleted.items():
                summary.deleted.setdefault(name, []).extend(ids)
            if page.next_token and summary.next_token and page.next_token != summary.next_token:
                raise VendorHTTPError(
                    where,
                    "pages of one change-set call carried different next tokens",
                    hint="re-run the partition; the change set restarts if it happens again",
                )
            summary.next_token = summary.next_token or page.next_token
            summary.token_key = summary.token_key or page.token_key

        def consume_in_order(number: int, page: Page) -> None:
            fingerprint = _fingerprint(page)
            if page.largest and last_fingerprint and fingerprint == last_fingerprint[-1]:
                raise VendorHTTPError(
                    where,
                    f"page {number} repeated page {number - 1}: the server seems to ignore page/pagesize "
                    "and gives no PageCount",
                    hint="nothing was landed; report it to the vendor (paging is required above 100011 rows)",
                )
            last_fingerprint[:] = [fingerprint]
            consume(number, page)

        started = time.monotonic()
        first = get_page(1)
        summary.sent_keys = first.keys
        summary.meta = first.meta
        if result_sets is not None:
            _require_result_sets(first, result_sets, where)
        in_flight = concurrency or self.page_concurrency
        page_count = _int_or_none(lookup(first.pagination, *PAGE_COUNT_KEYS)[1])
        summary.reported_rows = _int_or_none(lookup(first.pagination, *ROW_COUNT_KEYS)[1])
        if page_count is not None:
            summary.paging = "PageCount"
            consume(1, first)
            if page_count > 1:
                fetch_pages(range(2, page_count + 1), get_page, consume, concurrency=in_flight)
        else:
            summary.paging = "until a short page (no PageCount)"
            in_flight = 1
            consume_in_order(1, first)
            if first.largest >= size:
                fetch_until(2, get_page, consume_in_order, lambda page: page.largest < size)
        summary.seconds = time.monotonic() - started
        if summary.pages > 1:
            self.http.log.info(
                f"{where}: fetched {summary.pages} pages of up to {size:,} rows in "
                f"{summary.seconds:.1f}s ({in_flight} in flight; {summary.paging})"
            )
        if summary.change_set and not summary.next_token:
            self.http.log.warning(
                f"{where}: the change-set request returned no next changedRows token (looked for "
                f"{', '.join(sorted(TOKEN_KEYS))}); the next run reloads everything"
            )
        # RowCount counts the largest array of the call, deleted-id arrays of a change set included.
        largest = max(
            [*summary.received.values(), *(len(ids) for ids in summary.deleted.values())], default=0
        )
        if summary.reported_rows is not None and largest != summary.reported_rows:
            raise VendorHTTPError(
                where,
                f"paging returned {largest:,} rows but the server reported {summary.reported_rows:,} "
                f"over {summary.pages} page(s) of {size}",
                hint="nothing was landed; re-run the partition (the data may have changed while paging)",
            )
        return summary


def _require_result_sets(page: Page, documented: Sequence[str], where: Where) -> None:
    known = {n.lower() for n in documented}
    if any(n.lower() in known for n in (*page.sets, *page.deleted)):
        return
    sent = ", ".join(page.keys) or "none (an empty object)"
    raise MissingResultSets(
        where,
        f"the response has none of the endpoint's documented result sets ({', '.join(documented)}); "
        f"the vendor sent the keys: {sent}",
        hint="nothing was landed and the previous data is kept. If the vendor renamed a result set, add the "
        "name to the table's aliases in edu_assets/vendors/xporter/catalog.yaml; otherwise re-run the "
        "partition, and report the response to Groupcall if it persists",
    )


def _fingerprint(page: Page) -> str:
    raw = json.dumps([page.sets, page.deleted], sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
