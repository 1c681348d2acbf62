"""SkillsPass's export-data API: create a job for a window, poll it, download its file.

``POST /tp-api/exports`` creates a job and answers ``{"job": {"id": <base64>}}``; ``GET /tp-api/exports?id=``
reports ``PENDING`` / ``COMPLETED`` / ``FAILED``. The documentation shows the download block in two places
(inside ``job`` in the guide, beside it in the API reference), so both are read. A URL whose
``downloadExpiresAt`` has passed is re-requested by polling again, which the shared lifecycle does.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from edu_assets.core.errors import VendorHTTPError, Where
from edu_assets.core.exports import (
    ExportHandle,
    JobState,
    JobStatus,
    download_presigned,
    presigned_expiry,
)
from edu_assets.core.http import Downloaded, VendorHTTP

VENDOR = "skillspass"
EXPORTS_PATH = "tp-api/exports"


def iso_instant(moment: datetime) -> str:
    """``2026-11-01T00:00:00.000Z``: the exact form the guide's examples use (UTC, milliseconds)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_instant(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def describe_job_id(job_id: str) -> str:
    """What the (undocumented) job id encodes, for logs: tenant, type, format and window; '' if opaque."""
    try:
        key = json.loads(base64.b64decode(job_id))[0]
        fields = dict(part.split(":", 1) for part in key.split("|")[1:])
    except Exception:
        return ""
    return ", ".join(f"{k}={fields[k]}" for k in ("tenantKey", "type", "format", "start", "end") if k in fields)


def _errors(body: dict[str, Any]) -> str:
    out = []
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            out.append(f"{err['key']}: {err.get('message', '')}" if err.get("key") else str(err.get("message", err)))
        else:
            out.append(str(err))
    return "; ".join(out)


class SkillsPassClient:
    """Implements :class:`~edu_assets.core.exports.AsyncExportAPI` for SkillsPass export jobs."""

    def __init__(self, http: VendorHTTP):
        self.http = http

    def start(
        self, body: dict[str, Any], where: Where, *, asset_key: str, partition_key: str | None,
        details: dict[str, Any] | None = None,
    ) -> ExportHandle:
        answer = self.http.request_json("POST", EXPORTS_PATH, where, json_body=body)
        try:
            job_id = answer["job"]["id"]
        except (KeyError, TypeError):
            raise VendorHTTPError(
                where, f"SkillsPass accepted the export but sent no job id: {str(answer)[:200]!r}",
                hint="this response shape is unknown; report it with the partition",
            ) from None
        self.http.log.info(f"{where}: SkillsPass job {describe_job_id(job_id) or job_id}")
        return ExportHandle(
            vendor=VENDOR, job_id=str(job_id), asset_key=asset_key, partition_key=partition_key,
            started_at=time.time(), details={"request": body, **(details or {})},
        )

    # ------------------------------------------------------------------ AsyncExportAPI
    def poll(self, handle: ExportHandle, where: Where) -> JobStatus:
        body = self.http.get_json(EXPORTS_PATH, where, params={"id": handle.job_id})
        if not isinstance(body, dict) or not isinstance(body.get("job"), dict):
            raise VendorHTTPError(where, f"unexpected job status from SkillsPass: {str(body)[:200]}")
        job = body["job"]
        status = str(job.get("status") or "").upper()
        # The guide nests exportData in job; the API reference puts it beside job. Read both.
        data = job.get("exportData") if isinstance(job.get("exportData"), dict) else body.get("exportData")
        data = data if isinstance(data, dict) else {}
        url = data.get("downloadUrl")
        if status == "FAILED":
            return JobStatus(JobState.FAILED, status, message=_errors(body) or "SkillsPass gave no reason")
        if status == "COMPLETED" and url:
            expires = _parse_instant(data.get("downloadExpiresAt")) or presigned_expiry(url)
            return JobStatus(JobState.READY, status, download_url=url, url_expires_at=expires)
        if status == "COMPLETED":
            return JobStatus(JobState.PENDING, "COMPLETED (no download URL yet)")
        return JobStatus(JobState.PENDING, status or "unknown")

    def download(self, status: JobStatus, dest: Path, where: Where) -> Downloaded:
        return download_presigned(self.http, status, dest, where)
