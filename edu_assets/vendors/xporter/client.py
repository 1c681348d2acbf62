"""Xporter HTTP client: one per school (or the management token), paging, change sets, vendor errors.

Every request asks for real status codes (``httpstatuscodes=true``) and still treats a body whose
``ExceptionMessage`` is set as an error, because the vendor has answered errors with HTTP 200. Every
school-data request pages explicitly: unpaged results are silently capped by the server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from edu_assets.core.errors import EduAssetsError, VendorHTTPError, Where
from edu_assets.core.http import Log, VendorHTTP
from edu_assets.core.paging import fetch_pages
from edu_assets.core.tokens import TokenCache

META_SETS = frozenset({"meta", "__pagination__", "__changed_rows__"})
ENVELOPE = frozenset({"Message", "ExceptionType", "ExceptionMessage", "InnerException"})


class DataNotReady(EduAssetsError):
    """The vendor's cache for this school/endpoint is being refreshed (``DbStatus``): nothing may be landed."""

    default_hint = "nothing was landed; the step retries after a wait (config not_ready_retries / not_ready_wait_seconds)"


class ChangeTokenRejected(EduAssetsError):
    """The server no longer accepts the stored ``changedRows`` token: a full reload (``*``) is needed."""


@dataclass
class Page:
    sets: dict[str, list[dict[str, Any]]]
    deleted: dict[str, list[str]]
    pagination: dict[str, Any]
    next_token: str | None


@dataclass
class FetchSummary:
    pages: int = 0
    reported_rows: int | None = None
    received: dict[str, int] = field(default_factory=dict)  # result set -> rows
    deleted: dict[str, list[str]] = field(default_factory=dict)  # result set -> ids
    next_token: str | None = None
    meta: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the paging, first request to last page handled


def parse_page(body: Any, where: Where) -> Page:
    """Split a response into result sets, ``<Set>_deleted`` id lists, the pagination block and next token."""
    if not isinstance(body, dict):
        raise VendorHTTPError(where, f"expected a JSON object, got {type(body).__name__}")
    raise_for_envelope(body, where)
    sets: dict[str, list[dict[str, Any]]] = {}
    deleted: dict[str, list[str]] = {}
    for name, value in body.items():
        if name in META_SETS or name in ENVELOPE or not isinstance(value, list):
            continue
        if name.endswith("_deleted"):
            deleted[name[: -len("_deleted")]] = [str(r.get("Id", r.get("id"))) for r in value if isinstance(r, dict)]
        else:
            sets[name] = [r for r in value if isinstance(r, dict)]
    pagination = (body.get("__pagination__") or [{}])[0] or {}
    changed = body.get("__changed_rows__") or []
    token = None
    if changed and isinstance(changed[0], dict):
        token = changed[0].get("next_changed_rows") or changed[0].get("NextChangedRows")
    token = token or body.get("changedRows") or body.get("NextChangedRows")
    return Page(sets, deleted, pagination if isinstance(pagination, dict) else {}, str(token) if token else None)


def raise_for_envelope(body: Mapping[str, Any], where: Where) -> None:
    """Raise on the vendor's error shapes: ``DbStatus`` (data not ready) and a non-null ``ExceptionMessage``."""
    status = body.get("DbStatus")
    if status:
        first = status[0] if isinstance(status, list) and status else status
        message = first.get("Message") if isinstance(first, dict) else str(first)
        raise DataNotReady(where, f"Xporter says the data is not ready yet ({message or first})")
    message = body.get("ExceptionMessage")
    if message:
        kind = body.get("ExceptionType") or "error"
        if "changedrows" in f"{kind} {message}".lower():
            raise ChangeTokenRejected(where, f"Xporter rejected the change-set token ({kind}: {message})",
                                      hint="a full reload starts a new change set")
        raise VendorHTTPError(where, f"Xporter returned {kind}: {message}",
                              hint="check the endpoint's parameters and the school's scopes, then re-run the partition")


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
            reauth=lambda rejected: tokens.refresh(scope, stale=rejected.get("Authorization", "").removeprefix("Idaas ")),
            log=log,
            rate_per_second=rate_per_second,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, params: Mapping[str, Any], where: Where) -> Any:
        """One request; vendor errors raise (whatever the HTTP status)."""
        response = self.http.request(
            "GET", path, where, params={**params, "httpstatuscodes": "true"}, ok_statuses=(400, 503),
        )
        try:
            body = response.json()
        except ValueError:
            raise VendorHTTPError(where, f"expected JSON, got HTTP {response.status_code}: {response.text[:200]!r}") from None
        if isinstance(body, dict):
            raise_for_envelope(body, where)
        if response.status_code >= 400:
            raise self.http.error_for(response, where)
        return body

    def school_path(self, endpoint_path: str) -> str:
        return f"api/v1/School/{self.scope}/{endpoint_path}/"

    def fetch(
        self,
        endpoint_path: str,
        params: Mapping[str, Any],
        where: Where,
        on_rows: Callable[[str, list[dict[str, Any]]], None],
        *,
        page_size: int | None = None,
        concurrency: int | None = None,
    ) -> FetchSummary:
        """Fetch every page of a school-data request, handing each result set's rows to ``on_rows``.

        Page 1 tells how many pages there are; the rest are fetched with bounded concurrency. The rows
        received are checked against the count the server reports.
        """
        size = page_size or self.page_size
        path = self.school_path(endpoint_path)
        summary = FetchSummary()

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
                raise VendorHTTPError(where, "pages of one change-set call carried different next tokens",
                                      hint="re-run the partition; the change set restarts if it happens again")
            summary.next_token = summary.next_token or page.next_token

        started = time.monotonic()
        first = get_page(1)
        consume(1, first)
        count = int(first.pagination.get("PageCount") or 1)
        summary.reported_rows = _int_or_none(first.pagination.get("RowCount"))
        in_flight = concurrency or self.page_concurrency
        if count > 1:
            fetch_pages(range(2, count + 1), get_page, consume, concurrency=in_flight)
        summary.seconds = time.monotonic() - started
        if count > 1:
            self.http.log.info(f"{where}: fetched {count} pages of up to {size:,} rows in {summary.seconds:.1f}s "
                               f"({in_flight} in flight)")
        # RowCount counts the largest array of the call, deleted-id arrays of a change set included.
        largest = max([*summary.received.values(), *(len(ids) for ids in summary.deleted.values())], default=0)
        if summary.reported_rows is not None and largest != summary.reported_rows:
            raise VendorHTTPError(
                where,
                f"paging returned {largest:,} rows but the server reported {summary.reported_rows:,} "
                f"over {count} page(s) of {size}",
                hint="nothing was landed; re-run the partition (the data may have changed while paging)",
            )
        return summary


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
