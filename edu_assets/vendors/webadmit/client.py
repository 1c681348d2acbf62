"""WebAdMIT's export API: identities, export templates, export-file runs, status and short-lived URLs.

* Every call sends ``x-api-key``; the key's budget (5,000 requests an hour) is read from the
  ``X-RateLimit-*`` headers and respected by :class:`~edu_assets.core.ratebudget.HeaderBudget`.
* Starting an export that is already running returns the running file's id (the vendor de-duplicates),
  so a start is logged as "resumed" when the file it names is already past ``Initializing``.
* Statuses come capitalised ("In Progress") in the v1 API and snake_case ("in_progress") in older docs:
  both are normalised before comparing.
* A download URL lives under 30 seconds: the shared lifecycle downloads as soon as a poll says
  ``Available`` and re-polls for a new URL when one has expired.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edu_assets.core.errors import VendorHTTPError, Where
from edu_assets.core.exports import ExportHandle, JobState, JobStatus, download_presigned, presigned_expiry
from edu_assets.core.http import Downloaded, VendorHTTP

VENDOR = "webadmit"
API = "api/v1"
RUNNING = {"initializing", "queued", "in_progress"}
CSV_FORMAT = "comma-separated values"
ZIP_FORMAT = "comma-separated values in multiple files"
SUPPORTED_FORMATS = {CSV_FORMAT: "csv", ZIP_FORMAT: "zip"}
REFUSED_FORMATS = {
    "microsoft excel": "WebAdMIT's Excel export is a legacy HTML-in-.xls file with no reliable types",
    "fixed width report": "a fixed-width report has no machine-readable column layout",
    "website html": "an HTML page is a report, not a table",
}


def normalise_status(status: str) -> str:
    """``"In Progress"`` and ``"in_progress"`` → ``in_progress``."""
    return "_".join(str(status).strip().lower().replace("-", " ").split())


@dataclass(frozen=True)
class Template:
    """An export template owned by one user identity: what a partition of ``webadmit/export_files`` runs."""

    identity_id: int
    export_id: int
    name: str
    format: str
    mime_type: str
    list_type: str | None = None

    @property
    def partition_key(self) -> str:
        return f"{self.identity_id}-{self.export_id}"

    @property
    def dataset(self) -> str:
        return f"export_{self.export_id}"

    @property
    def kind(self) -> str | None:
        """``csv`` or ``zip`` when edu-assets lands this format, else None."""
        return SUPPORTED_FORMATS.get(self.format.strip().lower())

    @property
    def refusal(self) -> str | None:
        if self.kind:
            return None
        why = REFUSED_FORMATS.get(self.format.strip().lower(), "edu-assets does not know this format")
        return (f"export {self.name!r} ({self.export_id}) is in {self.format!r} format, which edu-assets does not "
                f"land ({why})")

    @property
    def encoding(self) -> str:
        mime = self.mime_type.lower()
        return mime.split("charset=", 1)[1].split(";")[0].strip() if "charset=" in mime else "iso-8859-1"


def parse_partition_key(key: str) -> tuple[int, int]:
    identity, _, export = key.partition("-")
    return int(identity), int(export)


class WebAdmitClient:
    """Implements :class:`~edu_assets.core.exports.AsyncExportAPI` for WebAdMIT export files."""

    def __init__(self, http: VendorHTTP):
        self.http = http

    # ------------------------------------------------------------------ discovery
    def identities(self, where: Where) -> list[dict[str, Any]]:
        body = self.http.get_json(f"{API}/user_identities", where)
        return list(body.get("user_identities") or []) if isinstance(body, dict) else []

    def templates(self, identity_id: int, where: Where) -> list[Template]:
        body = self.http.get_json(f"{API}/user_identities/{identity_id}/exports", where)
        items = body.get("exports") or [] if isinstance(body, dict) else []
        return [
            Template(identity_id, int(e["id"]), str(e.get("name") or e["id"]), str(e.get("format") or ""),
                     str(e.get("mime_type") or ""), e.get("list_type"))
            for e in items if isinstance(e, dict) and "id" in e
        ]

    def template(self, identity_id: int, export_id: int, where: Where) -> Template:
        for t in self.templates(identity_id, where):
            if t.export_id == export_id:
                return t
        raise VendorHTTPError(
            where, f"user identity {identity_id} has no export template {export_id}",
            hint="the template was deleted or moved in WebAdMIT; the discovery sensor removes its partition",
            status=404,
        )

    # ------------------------------------------------------------------ runs
    def start(self, template: Template, where: Where, *, asset_key: str, partition_key: str) -> ExportHandle:
        path = f"{API}/user_identities/{template.identity_id}/exports/{template.export_id}/export_files"
        body = self.http.request_json("POST", path, where)
        run = _export_file(body, where)
        status = normalise_status(run.get("status", ""))
        if status and status != "initializing":
            self.http.log.info(
                f"{where}: WebAdMIT answered with export file {run['id']}, already {run.get('status')!r}: a run of "
                "this export was in flight (WebAdMIT de-duplicates), so it is resumed rather than started again"
            )
        return ExportHandle(
            vendor=VENDOR, job_id=f"webadmit-export-file-{run['id']}", asset_key=asset_key,
            partition_key=partition_key, started_at=time.time(),
            details={"export_id": template.export_id, "export_file_id": int(run["id"]),
                     "identity_id": template.identity_id},
        )

    # ------------------------------------------------------------------ AsyncExportAPI
    def poll(self, handle: ExportHandle, where: Where) -> JobStatus:
        eid, fid = handle.details["export_id"], handle.details["export_file_id"]
        run = _export_file(self.http.get_json(f"{API}/exports/{eid}/export_files/{fid}", where), where)
        raw = str(run.get("status") or "")
        status = normalise_status(raw)
        url = run.get("download_url") or None
        words = _messages(run)
        if status == "available":
            return JobStatus(JobState.READY, raw, download_url=url, url_expires_at=presigned_expiry(url) if url else None)
        if status == "success_with_errors":
            warnings = tuple(words) or ("WebAdMIT finished the export with errors but gave no details",)
            return JobStatus(JobState.READY, raw, download_url=url, has_file=bool(url),
                             url_expires_at=presigned_expiry(url) if url else None, warnings=warnings)
        if status == "empty_list":
            return JobStatus(JobState.READY, raw, has_file=False)
        if status == "failed":
            return JobStatus(JobState.FAILED, raw, message="; ".join(words) or "WebAdMIT gave no reason")
        return JobStatus(JobState.PENDING, raw or "unknown")  # in progress, or a status we do not know yet

    def download(self, status: JobStatus, dest: Path, where: Where) -> Downloaded:
        return download_presigned(self.http, status, dest, where)


def _export_file(body: Any, where: Where) -> dict[str, Any]:
    run = body.get("export_files") if isinstance(body, dict) else None
    if isinstance(run, list):  # the pre-2018 schema returned a one-element array
        run = run[0] if run else None
    if not isinstance(run, dict) or "id" not in run:
        raise VendorHTTPError(where, f"unexpected export_files response from WebAdMIT: {str(body)[:200]}")
    return run


def _messages(run: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key in ("errors", "warnings", "messages"):
        value = run.get(key)
        if isinstance(value, list):
            out += [str(v.get("message", v)) if isinstance(v, dict) else str(v) for v in value]
        elif isinstance(value, str) and value:
            out.append(value)
    if isinstance(run.get("message"), str) and run["message"]:
        out.append(run["message"])
    return out
