"""SkillsPass (Bluedrop) emulator: the Export Data API's create-job / poll-status / download flow.

Routes (base URL `{server.url}/skillspass`; every `/skillspass/...` request needs
`Authorization: bln type=api, version=1, entity=user, key=<k>, token=<t>, secret=<s>`):
  POST /skillspass/tp-api/exports             {"startDate", "endDate", "exportType", "format",
                                               "learningActivityId"?}  -> 201 {"job": {"id"}}
  GET  /skillspass/tp-api/exports?id=<job id>  -> PENDING | COMPLETED | FAILED (+ download URL)
and, without Authorization (S3-style pre-signed, fresh on every COMPLETED status answer):
  GET  /skillspass-files/<file name>?Expires=...&Signature=...

What the vendor leaves open (see /work/shared/reference/skillspass/README.md) is decided here
and made switchable where the connector has to cope with both answers:
- the create path and its 201 status are inferred;
- the status answer puts `exportData` inside `job` or beside it (knob `status_shape`: "nested",
  "top" or "mixed" = per job, chosen by a hash of its id, so a connector meets both);
- a tenant on the older API rejects ELEARNING_ENROLLMENTS / LEARNING_ACTIVITY_INTERACTIONS and
  takes ENROLLMENTS (knob `legacy_types`);
- the create guide's example answers `{"job": {"id"}}` (seed L45-49) while its prose says the answer
  "will include a jobId" (L41): fault `prose_job_id` makes the next create answer(s) `{"jobId"}`;
- only PENDING / COMPLETED / FAILED are documented: fault `odd_status` (param `status`, default
  "CANCELLED") answers the next status call with a word the documents do not list and no download
  URL; `odd_status_with_url` does the same, with the URL, on the next status call of a finished job;
- 400s come in the two documented shapes: `{statusCode, code, error, message}` for validation
  and `{error: {key, message}}` for an unknown learning activity.
The job id is Base64 of `["data-export|tenantKey:sandbox|type:..|format:..|start:..|end:..",
"<uuid4>"]` like the documented example, so every create is a new job. Data (what a window
returns, columns, JSONL keys, which NETWORKS columns are guessed) is in skillspass_data.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

from .app import Knob, VendorApp, nonneg_float, nonneg_int
from .credentials import SKILLSPASS_KEY as SANDBOX_KEY
from .credentials import SKILLSPASS_SECRET as SANDBOX_SECRET
from .credentials import SKILLSPASS_TOKEN as SANDBOX_TOKEN
from .csvfaults import content_type_for, write_faulty
from .faults import CONTENT_KINDS
from .http import Request, Response, Router, json_response
from .jobs import Job, JobStore, Outcome, Phase
from .presign import UrlSigner, s3_error
from .skillspass_data import (
    CURRENT_EXPORT_TYPES,
    FAMILIES,
    FIRST_ACTIVITY_ID,
    HEADERS,
    INTERACTIONS,
    LEGACY_EXPORT_TYPES,
    ExportSpec,
    parse_iso_ms,
    write_export,
)
from .synth import FileCache, TempFileCache

__all__ = [
    "CURRENT_EXPORT_TYPES",
    "HEADERS",
    "LEGACY_EXPORT_TYPES",
    "SANDBOX_KEY",
    "SANDBOX_SECRET",
    "SANDBOX_TOKEN",
    "SkillsPassApp",
    "decode_job_id",
]

TENANT_KEY = "sandbox"
FILES_PREFIX = "/skillspass-files"
EXPORTS_PATH = "/skillspass/tp-api/exports"
JOB_FAILED_MESSAGE = "Export failed: report database timeout (sandbox-injected)"
STATUS_SHAPES = ("nested", "top", "mixed")
ODD_STATUS = "CANCELLED"
ODD_STATUS_KINDS = ("odd_status", "odd_status_with_url")
FORMATS = ("CSV", "JSONL")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
REQUIRED_FIELDS = ("startDate", "endDate", "exportType", "format")
_AUTH_FIXED = {"type": "api", "version": "1", "entity": "user"}
_AUTH_PARAMS = ("type", "version", "entity", "key", "token", "secret")
_NO_SUCH_KEY = ("NoSuchKey", "The specified key does not exist.")


def _status_shape(value: Any) -> str:
    if value not in STATUS_SHAPES:
        raise ValueError(f"expected one of {list(STATUS_SHAPES)}, got {value!r}")
    return str(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def _error(status: int, message: str, code: str | None = None) -> Response:
    """The `{statusCode, code?, error, message}` error shape (validation, auth, not found)."""
    body: dict[str, Any] = {"statusCode": status}
    if code:
        body["code"] = code
    body.update({"error": HTTPStatus(status).phrase, "message": message})
    return json_response(body, status)


def _invalid(message: str) -> Response:
    return _error(400, message, "VALIDATION_ERROR")


def _iso_seconds(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def decode_job_id(job_id: str) -> list[str]:
    """The JSON array a job id encodes: [pipe-delimited key, uuid] (handy in tests and logs)."""
    return json.loads(base64.b64decode(job_id, validate=True).decode("utf-8"))


class _Invalid(ValueError):
    """A create request the vendor rejects; carries the response to send."""

    def __init__(self, response: Response) -> None:
        super().__init__("invalid export request")
        self.response = response


@dataclass(frozen=True)
class _ExportJob:
    """What a create request fixed: the request as received, the data spec and the file name."""

    request: dict[str, Any]
    spec: ExportSpec
    file_name: str


class SkillsPassApp(VendorApp):
    """The SkillsPass tenant `sandbox`. `credentials` is a mutable set of (key, token, secret)."""

    name = "skillspass"
    extra_prefixes = (FILES_PREFIX,)
    FAULT_KINDS = frozenset(
        {"job_fails", "job_never_finishes", "expire_url", "prose_job_id", *ODD_STATUS_KINDS, *CONTENT_KINDS}
    )
    ACTIONS = VendorApp.JOB_ACTIONS
    KNOBS = {
        **VendorApp.KNOBS,
        "rows_per_day": Knob(
            20, nonneg_int, "change records per export type per UTC day (interactions: per activity)"
        ),
        "activities": Knob(6, nonneg_int, "learning activities in the tenant: ids 40001 .. 40000+N"),
        "ready_after": Knob(1.0, nonneg_float, "seconds until an export job is COMPLETED"),
        "url_ttl": Knob(900.0, float, "lifetime in seconds of download URLs (negative = already expired)"),
        "status_shape": Knob(
            "mixed", _status_shape, "where status puts exportData: nested (in job), top, or mixed (per job)"
        ),
        "legacy_types": Knob(
            False, _boolean, "older API: ENROLLMENTS instead of ELEARNING_ENROLLMENTS, no interactions"
        ),
        "seed": Knob(0, int, "changes every generated value (same seed = same bytes)"),
    }

    def __init__(
        self,
        credentials: set[tuple[str, str, str]] | None = None,
        **knobs: Any,
    ) -> None:
        super().__init__(**knobs)
        self.credentials: set[tuple[str, str, str]] = set(
            credentials if credentials is not None else {(SANDBOX_KEY, SANDBOX_TOKEN, SANDBOX_SECRET)}
        )
        self.jobs = JobStore()
        self.signer = UrlSigner()
        self._files: dict[str, str] = {}  # file name -> job id
        self._lock = threading.Lock()
        self._files_cache = TempFileCache("edu-assets-skillspass-")
        self.router = Router()
        self.router.add("POST", EXPORTS_PATH, self.create_export)
        self.router.add("GET", EXPORTS_PATH, self.export_status)
        self.router.add("GET", f"{FILES_PREFIX}/{{file_name}}", self.download)

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def cache(self) -> FileCache:
        """Generated files, in a private temp dir (removed by close())."""
        return self._files_cache.get()

    def handle(self, request: Request) -> Response:
        is_file = request.path.startswith(FILES_PREFIX + "/") or request.path == FILES_PREFIX
        if not is_file:
            denied = self._authorize(request)
            if denied is not None:
                return denied
        response = self.router.dispatch(request)
        if response is not None and response.status == 405 and not is_file:
            return _error(405, f"Method {request.method} is not allowed on {request.path}")
        if response is not None:
            return response
        if is_file:
            return s3_error(404, *_NO_SUCH_KEY)
        return _error(404, f"No route for {request.method} {request.path}")

    def _authorize(self, request: Request) -> Response | None:
        """The BLN scheme: six comma-separated params in any order. Messages never echo values."""
        header = request.headers.get("Authorization", "").strip()
        if not header:
            return self._unauthorized("Missing Authorization header")
        scheme, _, rest = header.partition(" ")
        if scheme.lower() != "bln":
            return self._unauthorized("Unsupported authorization scheme; expected BLN")
        params: dict[str, str] = {}
        for part in rest.split(","):
            name, sep, value = part.strip().partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if not sep or not name or not value:
                return self._unauthorized("Malformed authorization parameters; expected name=value pairs")
            params[name] = value
        missing = [name for name in _AUTH_PARAMS if name not in params]
        if missing:
            return self._unauthorized(f"Missing authorization parameter(s): {', '.join(missing)}")
        for name, expected in _AUTH_FIXED.items():
            if params[name] != expected:
                return self._unauthorized(f"Unsupported authorization {name}; expected {name}={expected}")
        if (params["key"], params["token"], params["secret"]) not in self.credentials:
            known_key = any(key == params["key"] for key, _, _ in self.credentials)
            if not known_key:
                return self._unauthorized("Invalid API key")
            return self._unauthorized("Invalid token or secret for this API key")
        return None

    @staticmethod
    def _unauthorized(message: str) -> Response:
        response = _error(401, message)
        response.headers["WWW-Authenticate"] = "BLN"
        return response

    def error_response(self, status: int, message: str, request: Request) -> Response:
        if request.path.startswith(FILES_PREFIX + "/"):
            code = {429: "SlowDown", 503: "ServiceUnavailable"}.get(status, "InternalError")
            return s3_error(status, code, message)
        return _error(status, message)

    def reset(self) -> None:
        self.jobs.clear()
        with self._lock:
            self._files.clear()

    def close(self) -> None:
        self.jobs.close()
        self._files_cache.close()

    def describe(self) -> str:
        """The sandbox triple is printed (not a real secret); test-added triples are only counted."""
        sandbox = (SANDBOX_KEY, SANDBOX_TOKEN, SANDBOX_SECRET)
        if sandbox in self.credentials:
            auth = f"key={SANDBOX_KEY}, token={SANDBOX_TOKEN}, secret={SANDBOX_SECRET}"
        else:
            auth = f"key=<k>, token=<t>, secret=<s> ({len(self.credentials)} configured triple(s))"
        return (
            f"skillspass {self.base_url}   POST/GET {self.base_url}/tp-api/exports   "
            f"Authorization: bln type=api, version=1, entity=user, {auth}"
        )

    # -- Python API for tests -----------------------------------------------------------------

    def job_request(self, job_id: str) -> dict[str, Any] | None:
        """The create request of a job as received (startDate, endDate, exportType, format,
        learningActivityId - None when not sent), or None for an unknown job id."""
        job = self.jobs.get(job_id)
        return dict(job.meta["export"].request) if job is not None else None

    def allowed_types(self) -> tuple[str, ...]:
        return LEGACY_EXPORT_TYPES if self.legacy_types else CURRENT_EXPORT_TYPES

    # -- create -------------------------------------------------------------------------------

    def create_export(self, request: Request) -> Response:
        try:
            export = self._parse_create(request)
        except _Invalid as exc:
            return exc.response
        job_fault = self.board.take(self.name, ("job_fails", "job_never_finishes"), request.path)
        outcome = Outcome.SUCCEED
        if job_fault is not None:
            outcome = Outcome.FAIL if job_fault.kind == "job_fails" else Outcome.HANG
        error = str(job_fault.param("message", JOB_FAILED_MESSAGE)) if job_fault else ""
        body = export.request
        key = "|".join(
            (
                "data-export",
                f"tenantKey:{TENANT_KEY}",
                f"type:{body['exportType'].lower()}",
                f"format:{body['format'].lower()}",
                f"start:{body['startDate']}",
                f"end:{body['endDate']}",
            )
        )
        raw = json.dumps([key, str(uuid.uuid4())], separators=(",", ":"))
        job_id = base64.b64encode(raw.encode("utf-8")).decode("ascii")
        spec = export.spec
        self.jobs.create(
            job_id,
            lambda: self._produce(spec),
            self.ready_after,
            outcome,
            error,
            export=export,
        )
        with self._lock:
            self._files[export.file_name] = job_id
        if self.board.take(self.name, "prose_job_id", request.path) is not None:
            return json_response({"jobId": job_id}, 201)
        return json_response({"job": {"id": job_id}}, 201)

    def _parse_create(self, request: Request) -> _ExportJob:
        try:
            body = request.json()
        except (UnicodeDecodeError, ValueError):
            raise _Invalid(_invalid("Invalid request payload JSON format")) from None
        if not isinstance(body, dict):
            raise _Invalid(_invalid('"value" must be of type object'))
        for name in REQUIRED_FIELDS:
            if name not in body or body[name] is None:
                raise _Invalid(_invalid(f'"{name}" is required'))
            if not isinstance(body[name], str):
                raise _Invalid(_invalid(f'"{name}" must be a string'))
        instants = {}
        for name in ("startDate", "endDate"):
            try:
                instants[name] = parse_iso_ms(body[name])
            except ValueError:
                raise _Invalid(
                    _invalid(f'"{name}" must be in ISO 8601 date format (YYYY-MM-DDTHH:mm:ss.sssZ)')
                ) from None
        if instants["startDate"] > instants["endDate"]:
            raise _Invalid(_invalid('"endDate" must be greater than or equal to "ref:startDate"'))
        export_type, fmt = body["exportType"], body["format"]
        allowed = self.allowed_types()
        if export_type not in allowed:
            raise _Invalid(_invalid(f'"exportType" must be one of [{", ".join(allowed)}]'))
        if fmt not in FORMATS:
            raise _Invalid(_invalid(f'"format" must be one of [{", ".join(FORMATS)}]'))
        activity_id = body.get("learningActivityId")
        if export_type == INTERACTIONS:
            if fmt != "JSONL":
                raise _Invalid(_invalid(f'"format" must be [JSONL] when "exportType" is {INTERACTIONS}'))
            if activity_id is None:
                raise _Invalid(
                    _invalid(f'"learningActivityId" is required when "exportType" is {INTERACTIONS}')
                )
            if (
                isinstance(activity_id, bool)
                or not isinstance(activity_id, int | float)
                or activity_id != int(activity_id)
            ):
                raise _Invalid(_invalid('"learningActivityId" must be a number'))
            activity_id = int(activity_id)
            if not FIRST_ACTIVITY_ID <= activity_id < FIRST_ACTIVITY_ID + self.activities:
                raise _Invalid(
                    json_response(
                        {
                            "error": {
                                "key": "LEARNING_ACTIVITY_NOT_FOUND",
                                "message": f"Learning activity {activity_id} was not found",
                            }
                        },
                        400,
                    )
                )
        family = FAMILIES[export_type]
        spec = ExportSpec(
            family=family,
            fmt=fmt.lower(),
            start_ms=instants["startDate"],
            end_ms=instants["endDate"],
            rows_per_day=self.rows_per_day,
            activities=self.activities,
            seed=self.seed,
            activity_id=activity_id if export_type == INTERACTIONS else None,
        )
        stored = {name: body[name] for name in REQUIRED_FIELDS}
        stored["learningActivityId"] = body.get("learningActivityId")
        return _ExportJob(stored, spec, self._new_file_name(export_type.lower(), fmt.lower()))

    def _new_file_name(self, export_type: str, fmt: str) -> str:
        with self._lock:
            while True:
                file_name = f"{export_type}-{secrets.token_hex(4)}.{fmt}"
                if file_name not in self._files:
                    self._files[file_name] = ""  # reserved until the job is registered
                    return file_name

    def _produce(self, spec: ExportSpec) -> Path:
        """The export file (generated once per distinct content, then cached)."""
        return self.cache.get_or_create(
            spec.cache_key(), lambda tmp: write_export(spec, tmp), label=spec.family, suffix=f".{spec.fmt}"
        )

    # -- status -------------------------------------------------------------------------------

    def shape_for(self, job_id: str) -> str:
        """'nested' or 'top': the status shape a job is answered with under the current knob."""
        if self.status_shape != "mixed":
            return self.status_shape
        return ("nested", "top")[hashlib.sha256(job_id.encode("utf-8")).digest()[0] & 1]

    def export_status(self, request: Request) -> Response:
        job_id = request.arg("id")
        if not job_id:
            return _invalid('"id" is required')
        job = self.jobs.get(job_id)
        if job is None:
            return _error(404, "Export job not found")
        phase = job.phase()
        url = expires_at = None
        errors: list[dict[str, str]] = []
        if phase is Phase.DONE:
            status = "COMPLETED"
            url, expires_at = self._download_url(job, request)
        elif phase is Phase.FAILED:
            status = "FAILED"
            errors = [{"key": "EXPORT_FAILED", "message": job.error or "Export failed: internal error"}]
        else:
            status = "PENDING"
        # A status word the documents do not list: without a URL in any phase, or with one once the file is ready.
        odd = self.board.take(self.name, "odd_status", request.path)
        if odd is None and phase is Phase.DONE:
            odd = self.board.take(self.name, "odd_status_with_url", request.path)
        if odd is not None:
            status = str(odd.param("status", ODD_STATUS))
            if odd.kind == "odd_status":
                url = expires_at = None
        export_data = {"downloadUrl": url, "downloadExpiresAt": expires_at}
        if self.shape_for(job_id) == "nested":
            body = {"job": {"id": job_id, "status": status, "exportData": export_data}, "errors": errors}
        else:
            body = {"job": {"id": job_id, "status": status}, "exportData": export_data, "errors": errors}
        return json_response(body)

    def _download_url(self, job: Job, request: Request) -> tuple[str, str]:
        """A fresh pre-signed URL (and its expiry) for every COMPLETED status answer."""
        expired = self.board.take(self.name, "expire_url", request.path)
        ttl = -60.0 if expired else self.url_ttl
        now = time.time()
        url = self.signer.url(self.server_url, f"{FILES_PREFIX}/{job.meta['export'].file_name}", ttl, now)
        return url, _iso_seconds(int(now + ttl))  # the same arithmetic as the URL's Expires

    # -- download -----------------------------------------------------------------------------

    def download(self, request: Request, file_name: str) -> Response:
        denied = self.signer.check(request)
        if denied is not None:
            return denied
        with self._lock:
            job_id = self._files.get(file_name)
        job = self.jobs.get(job_id) if job_id else None
        if job is None or job.phase() is not Phase.DONE:
            return s3_error(404, *_NO_SUCH_KEY)
        path: Path = job.result
        fmt = job.meta["export"].spec.fmt
        content_type = CONTENT_TYPES[fmt]
        if fmt == "csv":
            fault = self.board.take(self.name, CONTENT_KINDS, request.path)
            if fault is not None:
                clean, variant = path, str(fault.param("variant", "fields"))
                key = {"vendor": self.name, "clean": clean.name, "fault": fault.kind, "variant": variant}
                path = self.cache.get_or_create(
                    key,
                    lambda tmp: write_faulty(fault.kind, clean, tmp, variant),
                    label=f"{clean.stem}-{fault.kind}",
                )
                content_type = content_type_for(fault.kind)
        headers = {"Content-Type": content_type}
        if not content_type.startswith("text/html"):
            headers["Content-Disposition"] = f'attachment; filename="{file_name}"'
        stat = path.stat()
        headers["ETag"] = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
        return Response(200, headers, path)
