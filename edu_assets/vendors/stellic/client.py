"""Stellic's HTTP API: start a bulk export (sync CSV or async job), poll ``get_export_url``, download.

Stellic decides per request whether an export runs synchronously (the CSV is the response body) or
asynchronously (a JSON body with a ``file_name`` to poll), and the guide says that decision can change
even for data types documented as sync. So the client never assumes: it streams the response to disk
and branches on its Content-Type. A sync export that hits Stellic's 2-minute timeout is retried once as
an async (``delivery_channel=s3``) export.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from edu_assets.core.errors import VendorHTTPError, Where
from edu_assets.core.exports import ExportHandle, JobState, JobStatus, download_presigned, presigned_expiry
from edu_assets.core.http import Downloaded, VendorHTTP, vendor_message

VENDOR = "stellic"
_READY = {"completed", "complete", "success", "succeeded", "done", "finished", "ready"}
_FAILED = {"failed", "failure", "error", "errored", "cancelled", "canceled"}


class _SyncTimedOut(Exception):
    pass


class StellicClient:
    """Implements :class:`~edu_assets.core.exports.AsyncExportAPI` for Stellic."""

    def __init__(self, http: VendorHTTP, status_path: str = "exports/get_export_url"):
        self.http = http
        self.status_path = status_path

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
        if body.get("success") is False:
            raise VendorHTTPError(where, f"Stellic refused the export: {_messages(body)}")
        data = body.get("data") if isinstance(body.get("data"), dict) else body
        file_name = data.get("file_name") or data.get("filename")
        if not file_name:
            raise VendorHTTPError(
                where, f"Stellic answered with JSON but no file_name to poll: {json.dumps(body)[:200]}",
                hint="this response shape is unknown; report it with the partition",
            )
        return ExportHandle(
            vendor=VENDOR, job_id=str(file_name), asset_key=asset_key, partition_key=partition_key,
            started_at=time.time(), details={"file_name": str(file_name), "path": path},
        )

    def _request_export(self, path: str, query: list[tuple[str, str]], dest: Path, where: Where) -> Downloaded:
        def on_status(response: httpx.Response) -> None:
            if response.status_code == 504 or (
                response.status_code >= 500 and "timed out" in vendor_message(response).lower()
            ):
                raise _SyncTimedOut

        return self.http.download(path, dest, where, params=query, on_status=on_status)

    # ------------------------------------------------------------------ AsyncExportAPI
    def poll(self, handle: ExportHandle, where: Where) -> JobStatus:
        body = self.http.get_json(self.status_path, where, params={"file_name": handle.details.get("file_name", handle.job_id)})
        status = str(body.get("status") or "").strip().lower()
        url = body.get("url")
        if status in _FAILED or (body.get("success") is False):
            return JobStatus(JobState.FAILED, status or "failed", message=_messages(body))
        if url and (status in _READY or not status):
            return JobStatus(JobState.READY, status or "completed", download_url=url, url_expires_at=presigned_expiry(url))
        if status in _READY and not url:
            return JobStatus(JobState.PENDING, f"{status} (no URL yet)")
        return JobStatus(JobState.PENDING, status or "unknown")

    def download(self, status: JobStatus, dest: Path, where: Where) -> Downloaded:
        return download_presigned(self.http, status, dest, where)


def _messages(body: dict) -> str:
    errors = body.get("errors") or []
    msgs = [e.get("message", str(e)) if isinstance(e, dict) else str(e) for e in errors]
    return "; ".join(msgs) or str(body.get("message") or body.get("status") or "no message")


def _read_json(path: Path, where: Where) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            body = json.load(f)
    except ValueError:
        raise VendorHTTPError(where, "Stellic answered with a JSON content type but the body is not JSON") from None
    if not isinstance(body, dict):
        raise VendorHTTPError(where, f"unexpected JSON from Stellic: {str(body)[:200]}")
    return body
