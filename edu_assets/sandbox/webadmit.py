"""WebAdMIT (Liaison) emulator: user identities, export templates, export-file runs with in-flight
de-duplication, status polling with short-lived pre-signed download URLs, form-POST callbacks and
the per-key hourly request budget.

Routes (base URL `{server.url}/webadmit`, all need header `x-api-key`):
  GET  /webadmit/api/v1/user_identities
  GET  /webadmit/api/v1/user_identities/{uid}/exports
  GET  /webadmit/api/v1/exports
  POST /webadmit/api/v1/user_identities/{uid}/exports/{eid}/export_files[?callback=<url>]
  GET  /webadmit/api/v1/exports/{eid}/export_files/{fid}
  GET  /webadmit/api/v1/user_identities/{uid}/export_files
and, without the key (S3-style pre-signed, expires `url_ttl` seconds after issue):
  GET  /webadmit-files/{fid}/{filename}?Expires=...&Signature=...&response-content-disposition=...

Vendor behaviour worth knowing (see shared/reference/webadmit/README.md):
- a missing/unknown key is a 401 with an EMPTY body;
- every answer to a valid key carries X-RateLimit-Limit / X-RateLimit-Remaining; past the budget
  the emulator answers 429 + Retry-After (the real behaviour is undocumented, this is inferred);
- POSTing a run of an export that is still running returns the running instance's id;
- statuses are capitalised ("In Progress") or snake_case ("in_progress") per `status_style`;
- `export_files` is one object (today's schema) or a one-element array (the pre-May-2018 schema)
  per `export_files_shape`;
- what the documents leave open is switchable by fault params: `success_with_errors` comes with a
  download_url unless `download_url=false`; `empty_list` comes without one unless `download_url=true`
  (then the file is header-only); `odd_status` (param `status`, default "Archived") answers the next
  status call with a word outside the documented seven and no URL, `odd_status_with_url` does the
  same with a URL on the next status call of a finished run;
- CSV files are ISO-8859-1. The data generators live in webadmit_data.py.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from .app import Knob, VendorApp, nonneg_float, nonneg_int
from .credentials import WEBADMIT_API_KEY as SANDBOX_API_KEY
from .http import Request, Response, Router, json_response
from .jobs import Job, JobStore, Outcome, Phase
from .presign import UrlSigner, s3_error
from .synth import FileCache, TempFileCache
from .webadmit_data import (
    CYCLE_PATTERN,
    DATA_VERSION,
    DEFAULT_IDENTITIES,
    DEFAULT_TEMPLATES,
    FORMATS,
    IDENTITY_TYPES,
    LIST_TYPES,
    ExportTemplate,
    write_export,
)

__all__ = [
    "EXPORT_FILE_ID_START",
    "FILES_PREFIX",
    "JOB_FAILED_MESSAGE",
    "RATE_LIMIT_MESSAGE",
    "SANDBOX_API_KEY",
    "STATUS_STYLES",
    "SUCCESS_WITH_ERRORS_MESSAGE",
    "WebAdMitApp",
]

log = logging.getLogger(__name__)

FILES_PREFIX = "/webadmit-files"
API_PATH = "/api/v1"
EXPORT_FILE_ID_START = 74780
JOB_FAILED_MESSAGE = "Export failed: the export could not be generated (sandbox-injected)"
SUCCESS_WITH_ERRORS_MESSAGE = "3 applicants could not be exported: GPA calculation failed"
RATE_LIMIT_MESSAGE = "Rate limit exceeded. Try again later."
RUN_FAULTS = ("job_fails", "job_never_finishes", "success_with_errors", "empty_list")
ODD_STATUS_KINDS = ("odd_status", "odd_status_with_url")
ODD_STATUS = "Archived"
EXPORT_FILES_SHAPES = ("object", "array")
CALLBACK_POLL_SECONDS = 0.05
CALLBACK_TIMEOUT_SECONDS = 3.0

# snake_case word -> documented capitalised word (README section 5)
STATUS_WORDS = {
    "initializing": "Initializing",
    "queued": "Queued",
    "in_progress": "In Progress",
    "available": "Available",
    "success_with_errors": "Success With Errors",
    "empty_list": "Empty List",
    "failed": "Failed",
}
TERMINAL = frozenset({"available", "success_with_errors", "empty_list", "failed"})
WITH_FILE = frozenset({"available", "success_with_errors", "empty_list"})  # may bring a URL: see `_has_url`
STATUS_STYLES = ("capitalised", "snake", "mixed")


def _status_style(value: Any) -> str:
    if value not in STATUS_STYLES:
        raise ValueError(f"expected one of {list(STATUS_STYLES)}, got {value!r}")
    return str(value)


def _export_files_shape(value: Any) -> str:
    if value not in EXPORT_FILES_SHAPES:
        raise ValueError(f"expected one of {list(EXPORT_FILES_SHAPES)}, got {value!r}")
    return str(value)


def _flag(value: Any) -> bool:
    """A fault parameter as a boolean (JSON true/false, or "1"/"true"/"yes" from the CLI)."""
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


def _int_id(value: Any) -> int | None:
    """A path segment or JSON value as a resource id (None if it is not a plain integer)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value)
    return int(text) if text.isdigit() else None


def _message(message: str, status: int) -> Response:
    return json_response({"message": message}, status)


@dataclass
class ExportRun:
    """One export_file: a run of a template (snapshotted at start) tracked by a JobStore job."""

    id: int
    identity_id: int
    template: ExportTemplate
    job: Job
    result: str  # the terminal word once the job is done: available / success_with_errors / empty_list
    errors: list[str] = field(default_factory=list)
    callback: str | None = None
    with_url: bool = True  # whether a finished run's status brings a download_url (see `_has_url`)

    @property
    def href(self) -> str:
        return f"{API_PATH}/exports/{self.template.id}/export_files/{self.id}"


class WebAdMitApp(VendorApp):
    """The WebAdMIT API for one user. `api_keys` is a mutable set (tests add or revoke keys)."""

    name = "webadmit"
    extra_prefixes = (FILES_PREFIX,)
    FAULT_KINDS = frozenset({*RUN_FAULTS, *ODD_STATUS_KINDS, "expire_url"})
    ACTIONS = frozenset(
        {"add_identity", "remove_identity", "add_export", "remove_export", *VendorApp.JOB_ACTIONS}
    )
    KNOBS = {
        **VendorApp.KNOBS,
        "rows": Knob(120, nonneg_int, "applicants per generated WebAdMIT export file"),
        "ready_after": Knob(
            1.0,
            nonneg_float,
            "seconds until an export file run finishes (Initializing/Queued/In Progress thirds)",
        ),
        "url_ttl": Knob(
            25.0, float, "lifetime in seconds of WebAdMIT download URLs (negative = already expired)"
        ),
        "status_style": Knob(
            "capitalised",
            _status_style,
            "export file status words: capitalised, snake or mixed (by id parity)",
        ),
        "export_files_shape": Knob(
            "object",
            _export_files_shape,
            "export_files as one object (current) or a 1-element array (pre-2018)",
        ),
        "rate_limit": Knob(5000, nonneg_int, "WebAdMIT requests allowed per API key per rate window"),
        "rate_window": Knob(3600.0, nonneg_float, "seconds of the WebAdMIT fixed rate-limit window"),
        "seed": Knob(0, int, "changes every generated value (same seed = same bytes)"),
    }

    def __init__(self, api_keys: set[str] | tuple[str, ...] = (SANDBOX_API_KEY,), **knobs: Any) -> None:
        super().__init__(**knobs)
        self.api_keys: set[str] = set(api_keys)
        self.jobs = JobStore()
        self.signer = UrlSigner()
        self._lock = threading.RLock()
        self._ids = itertools.count(EXPORT_FILE_ID_START)  # never rewound: ids are not reused
        self._runs: dict[int, ExportRun] = {}
        self._latest: dict[tuple[int, int], ExportRun] = {}  # (identity, export) -> newest run
        self._identities: dict[int, dict[str, Any]] = {}
        self._templates: dict[int, ExportTemplate] = {}
        self._rate: dict[str, list[float]] = {}  # key -> [window start (monotonic), requests counted]
        self._files_cache = TempFileCache("edu-assets-webadmit-")
        # callbacks: a poller thread runs while some run with a callback has not finished
        self._pending: dict[int, ExportRun] = {}
        self._callback_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._callbacks_sent: list[dict[str, Any]] = []
        self._restore_defaults()

        api = f"/{self.name}{API_PATH}"
        self.router = Router()
        self.router.add("GET", f"{api}/user_identities", self.list_identities)
        self.router.add("GET", f"{api}/user_identities/{{uid}}/exports", self.list_identity_exports)
        self.router.add("GET", f"{api}/exports", self.list_all_exports)
        self.router.add(
            "POST", f"{api}/user_identities/{{uid}}/exports/{{eid}}/export_files", self.run_export
        )
        self.router.add("GET", f"{api}/exports/{{eid}}/export_files/{{fid}}", self.export_file_status)
        self.router.add("GET", f"{api}/user_identities/{{uid}}/export_files", self.list_export_files)
        self.router.add("GET", f"{FILES_PREFIX}/{{fid}}/{{filename}}", self.download)

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def cache(self) -> FileCache:
        return self._files_cache.get()

    def handle(self, request: Request) -> Response:
        if request.path.startswith(FILES_PREFIX + "/") or request.path == FILES_PREFIX:
            response = self.router.dispatch(request)
            return response or s3_error(404, "NoSuchKey", "The specified key does not exist.")
        key = request.headers.get("x-api-key", "")
        if key not in self.api_keys:
            return Response(401, {}, None)  # WebAdMIT: 401 with an empty body
        allowed, remaining, resets_in = self._count(key)
        if not allowed:
            response = _message(RATE_LIMIT_MESSAGE, 429)
            response.headers["Retry-After"] = str(max(1, math.ceil(resets_in)))
        else:
            response = self.router.dispatch(request) or _message("Not Found", 404)
            if response.status == 405:
                response = _message("Method Not Allowed", 405)
        response.headers["X-RateLimit-Limit"] = str(self.rate_limit)
        response.headers["X-RateLimit-Remaining"] = str(remaining)
        return response

    def error_response(self, status: int, message: str, request: Request) -> Response:
        """Injected 429/500s: S3 XML for file downloads, `{"message": ...}` (+ budget headers) otherwise."""
        if request.path.startswith(FILES_PREFIX + "/"):
            code = {429: "SlowDown", 503: "ServiceUnavailable"}.get(status, "InternalError")
            return s3_error(status, code, message)
        response = _message(message, status)
        key = request.headers.get("x-api-key", "")
        if key in self.api_keys:
            state = self.rate_state(key)
            response.headers["X-RateLimit-Limit"] = str(state["limit"])
            response.headers["X-RateLimit-Remaining"] = str(state["remaining"])
        return response

    def reset(self) -> None:
        """Forget runs, callbacks and rate counters; back to the default identities and templates."""
        with self._lock:
            self._runs.clear()
            self._latest.clear()
            self._rate.clear()
            self.jobs.clear()
            self._restore_defaults()
        with self._callback_lock:
            self._pending.clear()
            self._callbacks_sent.clear()

    def close(self) -> None:
        self._stop.set()
        poller = self._poller
        if poller is not None:
            poller.join(timeout=5)
        self.jobs.close()
        self._files_cache.close()

    def describe(self) -> str:
        key = SANDBOX_API_KEY if SANDBOX_API_KEY in self.api_keys else min(self.api_keys, default="-")
        return f"webadmit  {self.base_url}   x-api-key: {key}"

    # -- helpers for tests --------------------------------------------------------------------

    def runs_started(self) -> int:
        """Export file runs actually created since the last reset (de-duplicated POSTs do not count)."""
        with self._lock:
            return len(self._runs)

    def rate_state(self, key: str = SANDBOX_API_KEY) -> dict[str, Any]:
        """The budget of one key: limit, remaining, and seconds until its window resets (None = no
        window open, the next request starts one)."""
        now = time.monotonic()
        with self._lock:
            window = self._rate.get(key)
            if window is None or now >= window[0] + self.rate_window:
                return {"limit": self.rate_limit, "remaining": self.rate_limit, "window_resets_in": None}
            return {
                "limit": self.rate_limit,
                "remaining": max(0, self.rate_limit - int(window[1])),
                "window_resets_in": window[0] + self.rate_window - now,
            }

    def callbacks_sent(self) -> list[dict[str, Any]]:
        """Callback deliveries since the last reset: url, body, and HTTP status or error."""
        with self._callback_lock:
            return [dict(entry) for entry in self._callbacks_sent]

    def catalog(self) -> dict[str, Any]:
        """Identities and their export templates (what the actions return)."""
        with self._lock:
            return {
                "user_identities": [dict(identity) for identity in self._identities.values()],
                "exports": {
                    str(uid): [t.to_json() for t in self._templates.values() if t.identity_id == uid]
                    for uid in self._identities
                },
            }

    # -- actions (POST /_sandbox/actions/webadmit/<action>) ------------------------------------

    def add_identity(
        self,
        id: int,
        type: str,
        association: str | None = None,
        institution: str | None = None,
        organization: str | None = None,
        cycle: str | None = None,
    ) -> dict[str, Any]:
        identity_id = _int_id(id)
        if identity_id is None or identity_id <= 0:
            raise ValueError(f"identity id must be a positive integer, got {id!r}")
        if type not in IDENTITY_TYPES:
            raise ValueError(f"identity type must be one of {list(IDENTITY_TYPES)}, got {type!r}")
        if cycle is not None and not CYCLE_PATTERN.match(str(cycle)):
            raise ValueError(f"cycle must look like '2025 - 2026', got {cycle!r}")
        for name, value in (
            ("association", association),
            ("institution", institution),
            ("organization", organization),
        ):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string or null")
        with self._lock:
            if identity_id in self._identities:
                raise ValueError(f"user identity {identity_id} already exists")
            self._identities[identity_id] = {
                "id": identity_id,
                "type": type,
                "association": association,
                "institution": institution,
                "organization": organization,
                "cycle": cycle,
            }
        return self.catalog()

    def remove_identity(self, id: int) -> dict[str, Any]:
        identity_id = _int_id(id)
        with self._lock:
            if identity_id not in self._identities:
                raise ValueError(f"no user identity {id!r}")
            del self._identities[identity_id]
            for export_id in [e for e, t in self._templates.items() if t.identity_id == identity_id]:
                del self._templates[export_id]
        return self.catalog()

    def add_export(
        self, identity_id: int, id: int, name: str, format: str, list_type: str | None = None
    ) -> dict[str, Any]:
        owner, export_id = _int_id(identity_id), _int_id(id)
        if export_id is None or export_id <= 0:
            raise ValueError(f"export id must be a positive integer, got {id!r}")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("export name must be a non-empty string")
        if format not in FORMATS:
            raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")
        if list_type not in LIST_TYPES:
            raise ValueError(f"list_type must be one of {list(LIST_TYPES)}, got {list_type!r}")
        with self._lock:
            if owner not in self._identities:
                raise ValueError(f"no user identity {identity_id!r}")
            if export_id in self._templates:
                raise ValueError(f"export {export_id} already exists")
            self._templates[export_id] = ExportTemplate(export_id, owner, name, format, list_type)
        return self.catalog()

    def remove_export(self, identity_id: int, id: int) -> dict[str, Any]:
        owner, export_id = _int_id(identity_id), _int_id(id)
        with self._lock:
            template = self._templates.get(export_id) if export_id is not None else None
            if template is None or template.identity_id != owner:
                raise ValueError(f"identity {identity_id!r} has no export {id!r}")
            del self._templates[export_id]
        return self.catalog()

    # -- identities and templates ---------------------------------------------------------------

    def _restore_defaults(self) -> None:
        with self._lock:
            self._identities = {i["id"]: dict(i) for i in DEFAULT_IDENTITIES}
            self._templates = {t.id: t for t in DEFAULT_TEMPLATES}

    def _identity(self, uid: str) -> int | None:
        identity_id = _int_id(uid)
        with self._lock:
            return identity_id if identity_id in self._identities else None

    def list_identities(self, request: Request) -> Response:
        with self._lock:
            identities = [dict(identity) for identity in self._identities.values()]
        return json_response({"href": f"{API_PATH}/user_identities", "user_identities": identities})

    def list_identity_exports(self, request: Request, uid: str) -> Response:
        identity_id = self._identity(uid)
        if identity_id is None:
            return _message(f"User identity '{uid}' not found.", 404)
        with self._lock:
            exports = [t.to_json() for t in self._templates.values() if t.identity_id == identity_id]
        return json_response(
            {"href": f"{API_PATH}/user_identities/{identity_id}/exports", "exports": exports}
        )

    def list_all_exports(self, request: Request) -> Response:
        with self._lock:
            exports = [t.to_json() for t in self._templates.values() if t.identity_id in self._identities]
        return json_response({"href": f"{API_PATH}/exports", "exports": exports})

    # -- export file runs -----------------------------------------------------------------------

    def run_export(self, request: Request, uid: str, eid: str) -> Response:
        identity_id = self._identity(uid)
        if identity_id is None:
            return _message(f"User identity '{uid}' not found.", 404)
        export_id = _int_id(eid)
        with self._lock:
            template = self._templates.get(export_id) if export_id is not None else None
        if template is None or template.identity_id != identity_id:
            return _message(f"Export '{eid}' not found.", 404)
        callback = self._callback_of(request)
        if callback is not None and not _is_http_url(callback):
            return json_response({"errors": {"callback": [f"'{callback}' is not a valid http(s) URI"]}}, 422)

        with self._lock:
            current = self._latest.get((identity_id, template.id))
            if current is not None and self._status(current) not in TERMINAL:
                # in-flight de-duplication: the running instance's id, nothing new is started
                if callback is not None and current.callback is None:
                    current.callback = callback
                    self._watch(current)
                return json_response(self._wrap(self._item(current)), 201)
            run = self._start_run(identity_id, template, callback, request)
        if callback is not None:
            self._watch(run)
        return json_response(self._wrap(self._item(run)), 201)

    def _start_run(
        self, identity_id: int, template: ExportTemplate, callback: str | None, request: Request
    ) -> ExportRun:
        outcome, result, errors, with_url = Outcome.SUCCEED, "available", [], True
        fault = self.board.take(self.name, RUN_FAULTS, request.path)
        if fault is not None and fault.kind == "job_fails":
            outcome = Outcome.FAIL
            errors = [str(fault.param("message", JOB_FAILED_MESSAGE))]
        elif fault is not None and fault.kind == "job_never_finishes":
            outcome = Outcome.HANG
        elif fault is not None and fault.kind == "success_with_errors":
            result = "success_with_errors"
            errors = [str(fault.param("message", SUCCESS_WITH_ERRORS_MESSAGE))]
            with_url = _flag(fault.param("download_url", True))
        elif fault is not None and fault.kind == "empty_list":
            result = "empty_list"
            with_url = _flag(fault.param("download_url", False))
        rows, seed = (0 if result == "empty_list" else self.rows), self.seed
        work = (lambda: self._produce(template, rows, seed)) if with_url else None
        fid = next(self._ids)
        job = self.jobs.create(str(fid), work, self.ready_after, outcome, "; ".join(errors))
        run = ExportRun(fid, identity_id, template, job, result, errors, callback, with_url)
        self._runs[fid] = run
        self._latest[(identity_id, template.id)] = run
        return run

    def _produce(self, template: ExportTemplate, rows: int, seed: int) -> Path:
        key = {
            "vendor": self.name,
            "export_id": template.id,
            "identity_id": template.identity_id,
            "name": template.name,
            "format": template.format,
            "list_type": template.list_type,
            "generator": template.generator,
            "rows": rows,
            "seed": seed,
            "version": DATA_VERSION,
        }
        return self.cache.get_or_create(
            key,
            lambda tmp: write_export(template, rows, seed, tmp),
            label=f"export-{template.id}",
            suffix=template.extension,
        )

    @staticmethod
    def _callback_of(request: Request) -> str | None:
        """`?callback=` (as the docs say) or a JSON / form body `callback` (as their curl example does)."""
        callback = request.arg("callback")
        if callback:
            return callback
        if not request.body:
            return None
        try:
            body = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            form = parse_qs(request.body.decode("latin-1"))
            return (form.get("callback") or [None])[-1]
        callback = body.get("callback") if isinstance(body, dict) else None
        return str(callback) if callback else None

    def _status(self, run: ExportRun) -> str:
        """The run's status as a snake_case word."""
        phase = run.job.phase()
        if phase is Phase.FAILED:
            return "failed"
        if phase is Phase.DONE:
            return run.result
        if phase is Phase.QUEUED:
            return "initializing"
        if time.monotonic() - run.job.created < 2 * run.job.ready_after / 3:
            return "queued"
        return "in_progress"

    def _word(self, status: str, fid: int) -> str:
        style = self.status_style
        if style == "mixed":
            style = "capitalised" if fid % 2 == 0 else "snake"
        return STATUS_WORDS[status] if style == "capitalised" else status

    def _item(self, run: ExportRun, status: str | None = None) -> dict[str, Any]:
        return {
            "id": run.id,
            "href": run.href,
            "export_id": run.template.id,
            "status": self._word(status or self._status(run), run.id),
        }

    def _wrap(self, item: dict[str, Any]) -> dict[str, Any]:
        """`{"export_files": {...}}`, or the pre-May-2018 one-element array (knob `export_files_shape`)."""
        return {"export_files": [item] if self.export_files_shape == "array" else item}

    @staticmethod
    def _has_url(run: ExportRun, status: str) -> bool:
        """Available always brings a URL; Success With Errors and Empty List as their run was set up."""
        return status in WITH_FILE and (status == "available" or run.with_url)

    def export_file_status(self, request: Request, eid: str, fid: str) -> Response:
        file_id, export_id = _int_id(fid), _int_id(eid)
        with self._lock:
            run = self._runs.get(file_id) if file_id is not None else None
        if run is None or run.template.id != export_id:
            return _message(f"Export file '{fid}' not found.", 404)
        status = self._status(run)
        body = self._item(run, status)
        if self._has_url(run, status):
            body["download_url"] = self._download_url(run, request)
        if status in ("success_with_errors", "failed"):
            body["errors"] = self._errors(run)
        odd = self.board.take(self.name, "odd_status", request.path)
        if odd is None and "download_url" in body:
            odd = self.board.take(self.name, "odd_status_with_url", request.path)
        if odd is not None:  # a word outside the documented seven
            body["status"] = str(odd.param("status", ODD_STATUS))
            if odd.kind == "odd_status":
                body.pop("download_url", None)
        return json_response(self._wrap(body))

    @staticmethod
    def _errors(run: ExportRun) -> list[str]:
        if run.errors:
            return list(run.errors)
        return ["Export failed: internal error while generating the file"]  # the generator raised

    def _download_url(self, run: ExportRun, request: Request) -> str:
        """A fresh pre-signed URL; the signature covers path + Expires, S3's response-* params follow."""
        expired = self.board.take(self.name, "expire_url", request.path)
        ttl = -60.0 if expired else self.url_ttl
        filename = run.template.filename
        url = self.signer.url(self.server_url, f"{FILES_PREFIX}/{run.id}/{filename}", ttl)
        disposition = quote(f"attachment; filename={filename}", safe="")
        content_type = quote(run.template.mime_type, safe="")
        return f"{url}&response-content-disposition={disposition}&response-content-type={content_type}"

    def list_export_files(self, request: Request, uid: str) -> Response:
        identity_id = self._identity(uid)
        if identity_id is None:
            return _message(f"User identity '{uid}' not found.", 404)
        with self._lock:
            runs = sorted(
                (r for r in self._runs.values() if r.identity_id == identity_id), key=lambda r: -r.id
            )
        return json_response(
            {
                "href": f"{API_PATH}/user_identities/{identity_id}/export_files",
                "export_files": [self._item(run) for run in runs],  # never a download_url
            }
        )

    def download(self, request: Request, fid: str, filename: str) -> Response:
        denied = self.signer.check(request)
        if denied is not None:
            return denied
        file_id = _int_id(fid)
        with self._lock:
            run = self._runs.get(file_id) if file_id is not None else None
        if run is None or run.template.filename != filename or not self._has_url(run, self._status(run)):
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        path: Path = run.job.result
        stat = path.stat()
        headers = {
            "Content-Type": run.template.mime_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
            "ETag": f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"',
        }
        return Response(200, headers, path)

    # -- rate limit -----------------------------------------------------------------------------

    def _count(self, key: str) -> tuple[bool, int, float]:
        """Count one request of `key` in its fixed window: (allowed, remaining after it, seconds to reset).
        A refused request (429) is not counted."""
        now = time.monotonic()
        with self._lock:
            window = self._rate.get(key)
            if window is None or now >= window[0] + self.rate_window:
                window = self._rate[key] = [now, 0]
            resets_in = window[0] + self.rate_window - now
            if window[1] >= self.rate_limit:
                return False, 0, resets_in
            window[1] += 1
            return True, max(0, self.rate_limit - int(window[1])), resets_in

    # -- callbacks ------------------------------------------------------------------------------

    def _watch(self, run: ExportRun) -> None:
        """Deliver `run`'s callback once it reaches a terminal status, whether or not anyone polls."""
        with self._callback_lock:
            self._pending[run.id] = run
            if self._poller is None and not self._stop.is_set():
                self._poller = threading.Thread(
                    target=self._poll_callbacks, name="webadmit-callbacks", daemon=True
                )
                self._poller.start()

    def _poll_callbacks(self) -> None:
        while not self._stop.wait(CALLBACK_POLL_SECONDS):
            due: list[tuple[ExportRun, str]] = []
            with self._callback_lock:
                for fid, run in list(self._pending.items()):
                    if self._runs.get(fid) is not run:  # forgotten by reset()
                        del self._pending[fid]
                        continue
                    status = self._status(run)
                    if status in TERMINAL:
                        del self._pending[fid]
                        due.append((run, status))
                if not self._pending and not due:
                    self._poller = None
                    return
            for run, status in due:
                threading.Thread(
                    target=self._deliver, args=(run, status), name=f"webadmit-callback-{run.id}", daemon=True
                ).start()
        with self._callback_lock:
            self._poller = None

    def _deliver(self, run: ExportRun, status: str) -> None:
        """POST the documented form fields; best effort (errors are logged, never raised)."""
        fields = [
            ("export_file[id]", str(run.id)),
            ("export_file[export_id]", str(run.template.id)),
            ("export_file[status]", self._word(status, run.id)),
        ]
        body = urlencode(fields, safe="[]")
        entry: dict[str, Any] = {"url": run.callback, "body": body, "status": None, "error": None}
        request = urllib.request.Request(
            str(run.callback),
            data=body.encode("ascii"),
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "WebAdMIT-sandbox"},
        )
        try:
            with urllib.request.urlopen(request, timeout=CALLBACK_TIMEOUT_SECONDS) as answer:
                entry["status"] = answer.status
        except urllib.error.HTTPError as exc:
            entry["status"] = exc.code
            log.warning("webadmit callback %s answered %s", run.callback, exc.code)
        except (OSError, ValueError) as exc:
            entry["error"] = str(exc)
            log.warning("webadmit callback %s failed: %s", run.callback, exc)
        with self._callback_lock:
            if self._runs.get(run.id) is run:
                self._callbacks_sent.append(entry)


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
