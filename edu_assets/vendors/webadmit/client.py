"""WebAdMIT's export API: identities, export templates, export-file runs, status and short-lived URLs.

* Every call sends ``x-api-key``; the key's budget (5,000 requests an hour) is read from the
  ``X-RateLimit-*`` headers and respected by :class:`~edu_assets.core.ratebudget.HeaderBudget`.
* Starting an export that is already running returns the running file's id (the vendor de-duplicates),
  so a start is logged as "resumed" when the file it names is already past ``Initializing``.
* Statuses come capitalised ("In Progress") in the v1 API and snake_case ("in_progress") in older docs:
  both are compared case- and separator-blind (:func:`status_key`). Each of the seven documented statuses
  maps to a lifecycle state in :data:`STATUS_STATES`; what the documents leave open is decided in
  :func:`parse_status` (a status outside the seven, a finished file without a ``download_url``).
* A download URL lives under 30 seconds: the shared lifecycle downloads as soon as a poll says
  ``Available`` and re-polls for a new URL when one has expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edu_assets.core.errors import VendorHTTPError, Where
from edu_assets.core.exports import ExportHandle, JobState, JobStatus, download_presigned, presigned_expiry
from edu_assets.core.http import Downloaded, VendorHTTP

VENDOR = "webadmit"
API = "api/v1"
# The seven statuses of the export_files schema (seed L16), keyed case- and separator-blind.
STATUS_STATES: dict[str, JobState] = {
    "initializing": JobState.PENDING,
    "queued": JobState.PENDING,
    "inprogress": JobState.PENDING,
    "available": JobState.READY,
    "successwitherrors": JobState.READY,
    "emptylist": JobState.READY,
    "failed": JobState.FAILED,
}
RUNNING = frozenset(k for k, state in STATUS_STATES.items() if state is JobState.PENDING)
DOCUMENTED_STATUSES = (
    "Initializing",
    "Queued",
    "In Progress",
    "Available",
    "Success With Errors",
    "Empty List",
    "Failed",
)


def status_key(status: Any) -> str:
    """``"In Progress"``, ``"in_progress"``, ``"IN-PROGRESS"``, ``"InProgress"`` → ``inprogress``."""
    return "".join(ch for ch in str(status or "").lower() if ch.isalnum())


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
        return f"{self.identity_id}-{self.export_id}"  # partitions.parse_template_key reads it back

    @property
    def dataset(self) -> str:
        return _catalog().exports.dataset_for(self.export_id)

    @property
    def kind(self) -> str | None:
        """``csv`` or ``zip`` when edu-assets lands this format, else None."""
        return _formats().kind(self.format)

    @property
    def refusal(self) -> str | None:
        if self.kind:
            return None
        why = _formats().refusal(self.format)
        return (
            f"export {self.name!r} ({self.export_id}) is in {self.format!r} format, which edu-assets does not "
            f"land ({why})"
        )

    @property
    def encoding(self) -> str:
        mime = self.mime_type.lower()
        return mime.split("charset=", 1)[1].split(";")[0].strip() if "charset=" in mime else "iso-8859-1"


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
            Template(
                identity_id,
                int(e["id"]),
                str(e.get("name") or e["id"]),
                str(e.get("format") or ""),
                str(e.get("mime_type") or ""),
                e.get("list_type"),
            )
            for e in items
            if isinstance(e, dict) and "id" in e
        ]

    def template(self, identity_id: int, export_id: int, where: Where) -> Template:
        for t in self.templates(identity_id, where):
            if t.export_id == export_id:
                return t
        raise VendorHTTPError(
            where,
            f"user identity {identity_id} has no export template {export_id}",
            hint="the template was deleted or moved in WebAdMIT; the discovery sensor removes its partition",
            status=404,
        )

    # ------------------------------------------------------------------ runs
    def start(self, template: Template, where: Where, *, asset_key: str, partition_key: str) -> ExportHandle:
        path = f"{API}/user_identities/{template.identity_id}/exports/{template.export_id}/export_files"
        body = self.http.request_json("POST", path, where)
        run = parse_export_file(body, where)
        raw = str(run.get("status") or "")
        key = status_key(raw)
        if key in RUNNING and key != "initializing":
            self.http.log.info(
                f"{where}: WebAdMIT answered with export file {run['id']}, already {raw!r}: a run of "
                "this export was in flight (WebAdMIT de-duplicates), so it is resumed rather than started again"
            )
        elif key and key not in RUNNING:
            # The documented answer (seed L42-47) shows "Available"; whether that file is a fresh run is not said.
            self.http.log.info(
                f"{where}: WebAdMIT answered the run request with export file {run['id']} "
                f"already {raw!r}; its status call decides what lands"
            )
        return ExportHandle(VENDOR, f"webadmit-export-file-{run['id']}", asset_key, partition_key, details={
            "export_id": template.export_id,
            "export_file_id": int(run["id"]),
            "identity_id": template.identity_id,
            "status_at_start": raw,
            "answer_shape": "array" if isinstance(body.get("export_files"), list) else "object",
        })

    # ------------------------------------------------------------------ AsyncExportAPI
    def poll(self, handle: ExportHandle, where: Where) -> JobStatus:
        eid, fid = handle.details["export_id"], handle.details["export_file_id"]
        run = parse_export_file(self.http.get_json(f"{API}/exports/{eid}/export_files/{fid}", where), where)
        status = parse_status(run)
        if status_key(run.get("status")) not in STATUS_STATES and status.state is JobState.READY:
            self.http.log.warning(
                f"{where}: WebAdMIT answered the undocumented status {run.get('status')!r} with "
                "a download URL; taken as ready"
            )
        return status

    def download(self, status: JobStatus, dest: Path, where: Where) -> Downloaded:
        return download_presigned(self.http, status, dest, where)


def parse_export_file(body: Any, where: Where) -> dict[str, Any]:
    """The ``export_files`` object of a run or status answer (an object today; a one-element array in the
    pre-May-2018 schema)."""
    run = body.get("export_files") if isinstance(body, dict) else None
    if isinstance(run, list):  # the pre-2018 schema returned a one-element array
        run = run[0] if run else None
    if not isinstance(run, dict) or "id" not in run:
        raise VendorHTTPError(
            where,
            f"unexpected export_files response from WebAdMIT: {str(body)[:200]}",
            hint="this response shape is unknown; report it with the partition",
        )
    return run


def parse_status(run: dict[str, Any]) -> JobStatus:
    """One export file's status in the lifecycle's terms (pure: the contract tests replay documented answers).

    What the documents leave open, decided so that nothing lands empty unless WebAdMIT said the list is empty:
    ``Available`` without a ``download_url`` and ``Success With Errors`` without one fail (there is no file to
    land, and the vendor did not say there are no rows); ``Empty List`` lands empty, or its file when it
    brings a URL; a status outside the documented seven counts as ready when it brings a URL and fails at
    once otherwise (never polled until the export deadline).
    """
    raw = str(run.get("status") or "")
    key = status_key(raw)
    state = STATUS_STATES.get(key)
    url = (
        run.get("download_url") if isinstance(run.get("download_url"), str) and run["download_url"] else None
    )
    expires = presigned_expiry(url) if url else None
    words = _messages(run)
    if state is JobState.PENDING:
        return JobStatus(JobState.PENDING, raw)
    if state is JobState.FAILED:
        return JobStatus(JobState.FAILED, raw, message="; ".join(words) or "WebAdMIT gave no reason")
    if key == "emptylist":
        return JobStatus(JobState.READY, raw, download_url=url, url_expires_at=expires, has_file=bool(url))
    if url:
        warnings: tuple[str, ...] = ()
        if key == "successwitherrors":
            warnings = tuple(words) or ("WebAdMIT finished the export with errors but gave no details",)
        return JobStatus(
            JobState.READY, raw or "(no status)", download_url=url, url_expires_at=expires, warnings=warnings
        )
    if key == "successwitherrors":
        return JobStatus(
            JobState.FAILED,
            raw,
            message=(
                f"WebAdMIT finished the export with errors and sent no file to download ({'; '.join(words) or 'no details'}); "
                "nothing is landed, since WebAdMIT did not say the list is empty. Fix the template in WebAdMIT, "
                "then re-run the partition"
            ),
        )
    if key == "available":
        return JobStatus(
            JobState.FAILED,
            raw,
            message=(
                "WebAdMIT says the export file is 'Available' but sent no download_url; re-run the partition "
                "(each status call should issue a new URL)"
            ),
        )
    documented = ", ".join(repr(w) for w in DOCUMENTED_STATUSES)
    return JobStatus(
        JobState.FAILED,
        raw or "(no status)",
        message=(
            f"WebAdMIT answered status {raw!r}, which its documentation does not list ({documented}), with no "
            f"download URL{': ' + '; '.join(words) if words else ''}; edu-assets stops rather than poll a status it "
            "cannot read until the export deadline. Report the status to the edu-assets maintainers "
            "(edu_assets/vendors/webadmit/client.py lists the known ones), then re-run the partition"
        ),
    )


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


def _catalog():  # -> catalog.WebAdmitCatalog
    """The vendor's catalog (imported here: the catalog takes ``VENDOR`` from this module)."""
    from edu_assets.vendors.webadmit.catalog import load_catalog

    return load_catalog()


def _formats():  # -> catalog.Formats
    return _catalog().formats
