"""Stellic's HTTP API: bulk exports (sync CSV or async job), ``get_export_url`` polling, partner API reads.

Two documented surfaces, two bases:

* bulk exports: ``https://{host}/exports/export_data/{data_type}`` (the bulk export guide's URL);
* the partner API: every call under one base, ``https://{institution}.stellic.com/partnerapi/v1``
  (partner API document L25-27), including ``exports/get_export_url`` (its Exports section, L2062),
  which is therefore polled there for every asynchronous export, bulk ones included.

Stellic decides per request whether an export runs synchronously (the CSV is the response body) or
asynchronously (a JSON body with a ``file_name`` to poll), and the guide says that decision can change
even for data types documented as sync. So the client never assumes: it streams the response to disk
and branches on its Content-Type. A sync export that hits Stellic's 2-minute timeout is retried once as
an async (``delivery_channel=s3``) export.

The parsers (:func:`parse_kickoff`, :func:`parse_export_status`, :func:`parse_student_read`) are pure
functions of a response body, so ``edu_assets_tests/test_contracts_stellic.py`` replays the document's own
examples through them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edu_assets.core.errors import VendorHTTPError, Where
from edu_assets.core.exports import ExportHandle, JobState, JobStatus, download_presigned, presigned_expiry
from edu_assets.core.http import Downloaded, VendorHTTP, vendor_message

if TYPE_CHECKING:
    import httpx  # imported where used: it costs ~60 ms, and the code location loads without it

VENDOR = "stellic"
PARTNER_BASE = "partnerapi/v1"  # partner API document L25-27
STATUS_PATH = "exports/get_export_url"  # under the partner base (L2062, L2103-2125)

# get_export_url's status vocabulary. The document shows only "not_started" (L2123); the bulk export guide's
# headings say "processing" and "completed" (their bodies were lost). The rest are plausible spellings.
_PENDING = {
    "not_started",
    "processing",
    "pending",
    "queued",
    "in_progress",
    "running",
    "started",
    "waiting",
    "scheduled",
    "generating",
}
_READY = {"completed", "complete", "success", "succeeded", "done", "finished", "ready"}
_FAILED = {"failed", "failure", "error", "errored", "cancelled", "canceled", "expired"}
ENVELOPE_KEYS = frozenset({"success", "errors", "message"})  # a partner read's envelope, not its data


class _SyncTimedOut(Exception):
    pass


def messages(body: Mapping[str, Any]) -> str:
    """The vendor's own words from a JSON body's ``errors`` list (or ``message``/``error``/``status``)."""
    errors = body.get("errors") or []
    if not isinstance(errors, list):
        errors = [errors]
    msgs = [e.get("message", str(e)) if isinstance(e, dict) else str(e) for e in errors]
    return "; ".join(msgs) or str(
        body.get("message") or body.get("error") or body.get("status") or "no message"
    )


def parse_kickoff(body: Any, where: Where) -> str:
    """The ``file_name`` to poll from an async export's first answer, ``{"success": true, "data": {...}}``
    (L2081-2085; the document collapses ``data``: ``file_name`` inside it, or at the top, is accepted)."""
    if not isinstance(body, dict):
        raise VendorHTTPError(where, f"unexpected JSON from Stellic: {str(body)[:200]}")
    if body.get("success") is False:
        raise VendorHTTPError(where, f"Stellic refused the export: {messages(body)}")
    data = body.get("data") if isinstance(body.get("data"), dict) else body
    file_name = data.get("file_name") or data.get("filename") or data.get("fileName")
    if not file_name:
        raise VendorHTTPError(
            where,
            f"Stellic answered with JSON but no file_name to poll: {json.dumps(body)[:200]}",
            hint="this response shape is unknown; report it with the partition",
        )
    return str(file_name)


def parse_export_status(body: Any) -> JobStatus:
    """``get_export_url``'s answer ``{"success", "status", "url"}`` as a lifecycle state.

    A status the client does not know counts as ready when it arrives with a download URL (a finished
    job is the only one with a file to fetch), so a new spelling such as ``generated`` lands at once
    instead of waiting out the export deadline; the status seen is kept (``vendor_status``).
    """
    if not isinstance(body, dict):
        return JobStatus(
            JobState.FAILED, "unreadable", message=f"unexpected JSON from Stellic: {str(body)[:200]}"
        )
    status = str(body.get("status") or "").strip()
    word = status.lower()
    url = body.get("url")
    if word in _FAILED or body.get("success") is False:
        return JobStatus(JobState.FAILED, status or "failed", message=messages(body))
    if url and word not in _PENDING:
        return JobStatus(
            JobState.READY,
            status or "completed",
            download_url=str(url),
            url_expires_at=presigned_expiry(str(url)),
        )
    if word in _READY:
        return JobStatus(JobState.PENDING, f"{status} (no URL yet)")
    return JobStatus(JobState.PENDING, status or "unknown")


@dataclass
class StudentRead:
    """One student's partner-API answer as rows, and which result sets carried them."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rows_by_set: dict[str, int] = field(default_factory=dict)
    unknown_sets: list[str] = field(default_factory=list)  # present but not documented for this property


def _item_row(base: Mapping[str, Any], item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return {**base, **{(f"item_{k}" if k in base else k): v for k, v in item.items()}}
    return {**base, "value": item}


def parse_student_read(
    body: Any,
    where: Where,
    *,
    username: str,
    documented: Sequence[str] | None,
    columns: Mapping[str, str] | None = None,
) -> StudentRead:
    """Rows of one student read: one per element of each list result set (``unmatched_courses: [...]``), one
    per object or scalar result set (``engagement_score: {...}``), each with the student, the result set's
    name, the element's position, ``columns`` (the path parameters) and the element's own fields.

    ``documented``: the result sets the document shows for this property (None: it shows none). A body with
    none of them fails (the error names the keys Stellic sent): landing it would lose the student's data
    silently. Empty lists under documented names are an explicit "no rows". Other keys are landed and
    reported as unknown.
    """
    if not isinstance(body, dict):
        raise VendorHTTPError(where, f"student {username}: expected a JSON object, got {str(body)[:200]!r}")
    data = {k: v for k, v in body.items() if k not in ENVELOPE_KEYS}
    if documented is not None and not any(name in body for name in documented):
        raise VendorHTTPError(
            where,
            f"student {username}: Stellic sent none of the documented result sets {list(documented)}; "
            f"it sent the keys {sorted(body)}",
            hint="the response shape changed; report it to Stellic and add the new name to result_sets in "
            "edu_assets/vendors/stellic/catalog.yaml (the previous partition is kept)",
        )
    if not data:
        raise VendorHTTPError(
            where,
            f"student {username}: Stellic answered with no result set at all (keys {sorted(body)})",
            hint="the document shows no sample for this property; report the response to Stellic",
        )
    read = StudentRead(unknown_sets=[k for k in data if documented is not None and k not in documented])
    for name, value in data.items():
        base = {"student_username": username, **(columns or {}), "result_set": name}
        items = value if isinstance(value, list) else [value]
        for position, item in enumerate(items):
            read.rows.append(
                _item_row({**base, "position": position if isinstance(value, list) else None}, item)
            )
        read.rows_by_set[name] = len(items)
    return read


class StellicClient:
    """Implements :class:`~edu_assets.core.exports.AsyncExportAPI` for Stellic, plus the partner API reads."""

    def __init__(self, http: VendorHTTP, partner_base: str = PARTNER_BASE):
        self.http = http
        self.partner_base = partner_base.strip("/")

    def partner_path(self, path: str) -> str:
        """A partner API path (``exports/get_export_url``) under the one partner base."""
        return f"{self.partner_base}/{path.lstrip('/')}"

    def starter(
        self, path: str, query: list[tuple[str, str]], where: Where, *, asset_key: str, partition_key: str | None
    ) -> Callable[[Path], Downloaded | ExportHandle]:
        """``start`` bound to one request: what an ``ExportRequest`` calls with the file to download into."""

        def start(dest: Path) -> Downloaded | ExportHandle:
            return self.start(path, query, dest, where, asset_key=asset_key, partition_key=partition_key)

        return start

    def start(
        self,
        path: str,
        query: list[tuple[str, str]],
        dest: Path,
        where: Where,
        *,
        asset_key: str,
        partition_key: str | None,
    ) -> Downloaded | ExportHandle:
        """Request an export; return the downloaded CSV (sync) or the vendor job handle (async)."""
        try:
            got = self._request_export(path, query, dest, where)
        except _SyncTimedOut:
            self.http.log.warning(
                f"{where}: Stellic's synchronous export timed out (its 2-minute limit); retrying as an async export"
            )
            query = [(k, v) for k, v in query if k != "delivery_channel"] + [("delivery_channel", "s3")]
            got = self._request_export(path, query, dest, where)
        if "json" not in got.content_type.lower():
            return got
        body = _read_json(got.path, where)
        got.path.unlink(missing_ok=True)
        file_name = parse_kickoff(body, where)
        return ExportHandle(VENDOR, file_name, asset_key, partition_key,
                            details={"file_name": file_name, "path": path})

    def _request_export(
        self, path: str, query: list[tuple[str, str]], dest: Path, where: Where
    ) -> Downloaded:
        def on_status(response: httpx.Response) -> None:
            if response.status_code == 504 or (
                response.status_code >= 500 and "timed out" in vendor_message(response).lower()
            ):
                raise _SyncTimedOut

        return self.http.download(path, dest, where, params=query, on_status=on_status)

    def read_json(self, path: str, where: Where) -> Any:
        """GET a partner API read (``path`` under the partner base) and return its JSON body."""
        return self.http.get_json(self.partner_path(path), where)

    # ------------------------------------------------------------------ AsyncExportAPI
    def poll(self, handle: ExportHandle, where: Where) -> JobStatus:
        file_name = handle.details.get("file_name", handle.job_id)
        return parse_export_status(
            self.http.get_json(self.partner_path(STATUS_PATH), where, params={"file_name": file_name})
        )

    def download(self, status: JobStatus, dest: Path, where: Where) -> Downloaded:
        return download_presigned(self.http, status, dest, where)


def _read_json(path: Path, where: Where) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            body = json.load(f)
    except ValueError:
        raise VendorHTTPError(
            where, "Stellic answered with a JSON content type but the body is not JSON"
        ) from None
    if not isinstance(body, dict):
        raise VendorHTTPError(where, f"unexpected JSON from Stellic: {str(body)[:200]}")
    return body
