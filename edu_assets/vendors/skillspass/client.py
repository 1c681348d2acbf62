"""SkillsPass's export-data API: create a job for a window, poll it, download its file.

``POST /tp-api/exports`` creates a job; ``GET /tp-api/exports?id=`` reports ``PENDING`` / ``COMPLETED`` /
``FAILED``; the file comes from a time-limited URL. Where the documents disagree or say nothing, every
plausible reading is accepted and the one seen is logged (see :func:`parse_created` and :func:`parse_status`):

* the create guide's prose says the answer "will include a jobId" (seed L41) while its example is
  ``{"job": {"id": ...}}`` (L45-49): both are read;
* the status guide nests ``exportData`` in ``job``, the API reference puts it beside ``job``: both are read;
* only PENDING / COMPLETED / FAILED are documented. Other spellings of those three are accepted; a status
  nobody documented counts as ready when it brings a download URL, and otherwise fails the partition at
  once, naming the status, rather than being polled until the export deadline.

A URL whose ``downloadExpiresAt`` has passed is re-requested by polling again, which the shared lifecycle does.
"""

from __future__ import annotations

import base64
import json
import re
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
DOCUMENTED_STATUSES = ("PENDING", "COMPLETED", "FAILED")
# Undocumented spellings a job API commonly uses for the three documented states (accepted, and logged).
PENDING_STATUSES = frozenset(
    {
        "PENDING",
        "QUEUED",
        "IN_PROGRESS",
        "INPROGRESS",
        "PROCESSING",
        "RUNNING",
        "STARTED",
        "CREATED",
        "SUBMITTED",
        "INITIALIZING",
    }
)
COMPLETED_STATUSES = frozenset({"COMPLETED", "COMPLETE", "SUCCEEDED", "SUCCESS", "DONE", "FINISHED", "READY"})
FAILED_STATUSES = frozenset(
    {"FAILED", "FAILURE", "ERROR", "ERRORED", "CANCELLED", "CANCELED", "ABORTED", "EXPIRED", "REJECTED"}
)
# Where the create answer may carry the job id: the guide's example first, then its prose ("a jobId").
JOB_ID_FIELDS = (("job", "id"), ("jobId",), ("job", "jobId"), ("id",))


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


_JOB_FIELD = re.compile(r"\|([^|:]+):([^|]*)")
"""One ``|name:value`` field of the vendor's job id (its first segment, before any ``|``, is not a field).
The vendor's own format, not a Dagster partition key."""


def describe_job_id(job_id: str) -> str:
    """What the (undocumented) job id encodes, for logs: tenant, type, format and window; '' if opaque."""
    try:
        key = json.loads(base64.b64decode(job_id))[0]
        fields = dict(_JOB_FIELD.findall(key))
    except Exception:
        return ""
    return ", ".join(
        f"{k}={fields[k]}" for k in ("tenantKey", "type", "format", "start", "end") if k in fields
    )


def status_word(status: Any) -> str:
    """``"in progress"`` / ``"In-Progress"`` / ``"IN_PROGRESS"`` → ``IN_PROGRESS`` (compared case-blind)."""
    return re.sub(r"[^A-Z0-9]+", "_", str(status or "").strip().upper()).strip("_")


def parse_created(body: Any, where: Where) -> tuple[str, str]:
    """The job id of a create answer and the field it was found in (``job.id`` per the example, ``jobId``
    per the prose). No id at all fails: polling nothing would never land anything."""
    for path in JOB_ID_FIELDS:
        value: Any = body
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value), ".".join(path)
    raise VendorHTTPError(
        where,
        f"SkillsPass accepted the export but sent no job id (looked for "
        f"{', '.join('.'.join(p) for p in JOB_ID_FIELDS)}): {str(body)[:200]!r}",
        hint="this response shape is unknown; report it with the partition",
    )


def export_data(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The download block and where it was: ``job`` (the guide's shape), ``top`` (the API reference's), or
    ``none``. A block with a URL wins over one without, whichever place it is in."""
    job = body.get("job") if isinstance(body.get("job"), dict) else {}
    found = [
        (d, place)
        for d, place in ((job.get("exportData"), "job"), (body.get("exportData"), "top"))
        if isinstance(d, dict)
    ]
    for d, place in found:
        if isinstance(d.get("downloadUrl"), str) and d["downloadUrl"]:
            return d, place
    return found[0] if found else ({}, "none")


def _errors(*holders: dict[str, Any]) -> str:
    """The vendor's ``errors`` (``[{key?, message}]``), wherever the answer put them."""
    out: list[str] = []
    for holder in holders:
        for err in holder.get("errors") or []:
            if isinstance(err, dict):
                msg = str(err.get("message", "") or "")
                out.append(f"{err['key']}: {msg}" if err.get("key") else msg or str(err))
            else:
                out.append(str(err))
    return "; ".join(dict.fromkeys(m for m in out if m))


def parse_status(body: Any, where: Where) -> JobStatus:
    """A status answer in the lifecycle's terms (pure: the contract tests replay documented answers here)."""
    if not isinstance(body, dict) or not isinstance(body.get("job"), dict):
        raise VendorHTTPError(
            where,
            f"unexpected job status from SkillsPass: {str(body)[:200]}",
            hint="this response shape is unknown; report it with the partition",
        )
    job = body["job"]
    raw = str(job.get("status") or "")
    word = status_word(raw)
    data, _place = export_data(body)
    url = (
        data.get("downloadUrl") if isinstance(data.get("downloadUrl"), str) and data["downloadUrl"] else None
    )
    errors = _errors(body, job)
    if word in FAILED_STATUSES:
        return JobStatus(JobState.FAILED, raw, message=errors or "SkillsPass gave no reason")
    if url and word not in PENDING_STATUSES:  # COMPLETED, or a status nobody documented that brought a file
        expires = _parse_instant(data.get("downloadExpiresAt")) or presigned_expiry(url)
        return JobStatus(JobState.READY, raw or "(no status)", download_url=url, url_expires_at=expires)
    if word in COMPLETED_STATUSES:  # the URL may lag the status; the export deadline bounds the wait
        return JobStatus(JobState.PENDING, f"{raw} (no download URL yet)")
    if word in PENDING_STATUSES:
        return JobStatus(JobState.PENDING, raw)
    if errors:
        return JobStatus(JobState.FAILED, raw or "(no status)", message=errors)
    return JobStatus(
        JobState.FAILED,
        raw or "(no status)",
        message=f"SkillsPass answered status {raw!r}, which its documentation does not list "
        f"({', '.join(DOCUMENTED_STATUSES)}), with no download URL and no errors; edu-assets stops rather than "
        "poll a status it cannot read until the export deadline. Report the status to the edu-assets "
        "maintainers (edu_assets/vendors/skillspass/client.py lists the known ones), then re-run the partition",
    )


class SkillsPassClient:
    """Implements :class:`~edu_assets.core.exports.AsyncExportAPI` for SkillsPass export jobs."""

    def __init__(self, http: VendorHTTP):
        self.http = http
        self._noted: set[tuple[str, str]] = set()  # (job id, what) already logged: say each variant once

    def _note(self, job_id: str, what: str, message: str) -> None:
        if (job_id, what) not in self._noted:
            self._noted.add((job_id, what))
            self.http.log.warning(message)

    def start(
        self,
        body: dict[str, Any],
        where: Where,
        *,
        asset_key: str,
        partition_key: str | None,
        details: dict[str, Any] | None = None,
    ) -> ExportHandle:
        answer = self.http.request_json("POST", EXPORTS_PATH, where, json_body=body)
        job_id, field = parse_created(answer, where)
        self.http.log.info(f"{where}: SkillsPass job {describe_job_id(job_id) or job_id} (id in {field!r})")
        return ExportHandle(VENDOR, job_id, asset_key, partition_key,
                            details={"request": body, "job_id_field": field, **(details or {})})

    # ------------------------------------------------------------------ AsyncExportAPI
    def poll(self, handle: ExportHandle, where: Where) -> JobStatus:
        body = self.http.get_json(EXPORTS_PATH, where, params={"id": handle.job_id})
        status = parse_status(body, where)
        word = status_word(body["job"].get("status"))
        if word not in DOCUMENTED_STATUSES and status.state is not JobState.FAILED:
            self._note(
                handle.job_id,
                f"status:{word}",
                f"{where}: SkillsPass answered the undocumented status {body['job'].get('status')!r}; "
                f"taken as {status.state.value}",
            )
        if status.state is JobState.READY:
            place = export_data(body)[1]
            self.http.log.info(
                f"{where}: SkillsPass download URL found in exportData "
                f"{'inside job (guide shape)' if place == 'job' else 'beside job (API reference shape)'}"
            )
        elif status.vendor_status.endswith("(no download URL yet)"):
            self._note(
                handle.job_id,
                "no-url",
                f"{where}: SkillsPass says job {handle.job_id} is {word} but sent no downloadUrl; "
                "polling until it does (or until the export deadline)",
            )
        return status

    def download(self, status: JobStatus, dest: Path, where: Where) -> Downloaded:
        return download_presigned(self.http, status, dest, where)
