"""Stellic emulator: bulk exports (sync CSV or async s3 job), export polling, pre-signed file
URLs, and the partner API's reads.

Routes (base URL `{server.url}/stellic`, all need `Authorization: Bearer <token>`), and only these:
  GET /stellic/exports/export_data/{data_type}?output_format=csv[&delivery_channel=http_file|s3]
      (the bulk export guide's URL, at the host root: reference/stellic/bulk_exports.yaml)
  under the partner API base /stellic/partnerapi/v1 (reference/stellic/partner_api.yaml):
  GET .../exports/get_export_url?file_name=...
  GET .../exports/engagement_score
  GET .../student/bulk/{property}?output_format=csv&delivery_channel=http_file
  GET .../student/{student_username}/{property}
  GET .../student/{student_username}/audit/{course_filter}/{property}
  GET .../student/{student_username}/custom_audit/{course_filter}/{program_filter}/{property}
  GET .../student/{student_username}/planner/{course_filter}/{property}
and, without bearer auth (S3-style pre-signed):
  GET /stellic-files/{file_name}?Expires=...&Signature=...

get_export_url is served under the partner base only: the document puts it in the partner API's
Exports section (L2062), and an alias at the host root would hide a client polling the wrong URL.
The contracts come from reference/ (the documents), never from the client's catalog; generators
live in stellic_exports.py and stellic_partner.py; this module is the HTTP behaviour: auth,
validation, sync/async choice, job progression and vendor-specific faults.
"""

from __future__ import annotations

import csv
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .app import Knob, VendorApp, nonneg_float, nonneg_int
from .credentials import STELLIC_READONLY_TOKEN as READONLY_TOKEN
from .credentials import STELLIC_TOKEN as SANDBOX_TOKEN
from .csvfaults import content_type_for, write_faulty
from .faults import CONTENT_KINDS, Fault
from .http import Request, Response, Router, json_response
from .jobs import JobStore, Outcome, Phase
from .presign import UrlSigner, s3_error
from .stellic_exports import (
    ASYNC_IF_LARGE_THRESHOLD,
    COMMON_PARAMS,
    EXPORTS,
    KEYS,
    ExportContext,
    ExportQuery,
    ExportType,
    ParamError,
)
from .stellic_partner import (
    PARTNER,
    STUDENT_READS,
    PartnerRoute,
    Student,
    bad_path_param,
    missing_query,
    student_body,
)
from .synth import FileCache, SqlRandom, TempFileCache, copy_to_csv, seed_for

__all__ = ["EXPORTS", "KEYS", "READONLY_TOKEN", "SANDBOX_TOKEN", "StellicApp"]

FILES_PREFIX = "/stellic-files"
JOB_FAILED_MESSAGE = "Export failed: audit cache rebuild error (sandbox-injected)"
UNAUTHORIZED = "API token was not provided or the provided API token was incorrect."
FORBIDDEN = "The provided API token does not have the necessary priveleges to perform this action."
TIMEOUT = "Export timed out after 120 seconds; use delivery_channel=s3 for large exports."


def _rows_by_type(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object {data_type: rows}")
    unknown = sorted(set(value) - set(EXPORTS))
    if unknown:
        raise ValueError(f"unknown data type(s): {unknown}")
    return {str(k): nonneg_int(v) for k, v in value.items()}


def _optional_dir(value: Any) -> Path | None:
    return None if value in (None, "") else Path(str(value)).expanduser()


@dataclass(frozen=True)
class Payload:
    """A generated file and the Content-Type it is served with."""

    path: Path
    content_type: str


def _errors(message: str, status: int) -> Response:
    return json_response({"success": False, "errors": [{"message": message}]}, status)


class StellicApp(VendorApp):
    """The Stellic tenant. `tokens` / `readonly_tokens` are mutable sets (tests add secrets)."""

    name = "stellic"
    extra_prefixes = (FILES_PREFIX,)
    # renamed_result_sets: the next partner student read answers with its result sets under other names
    # (param "suffix", default "_v2"), as a vendor that changed its response shape would
    FAULT_KINDS = frozenset(
        {"job_fails", "job_never_finishes", "expire_url", "renamed_result_sets", *CONTENT_KINDS}
    )
    ACTIONS = VendorApp.JOB_ACTIONS | {"hold_partner_reads", "release_partner_reads"}
    KNOBS = {
        **VendorApp.KNOBS,
        "rows": Knob(200, nonneg_int, "rows per export (all_appointments: per 30 days of window)"),
        "rows_by_type": Knob(
            {}, _rows_by_type, 'per-data-type rows, e.g. {"permissions": 5000000}', cli=False
        ),
        "async_ready_after": Knob(1.0, nonneg_float, "seconds until an async export job completes"),
        "url_ttl": Knob(300.0, float, "lifetime in seconds of pre-signed download URLs"),
        "sync_row_limit": Knob(1_000_000, nonneg_int, "sync exports above this many rows fail with 504"),
        "cache_dir": Knob(None, _optional_dir, "where generated files are cached (default: a temp dir)"),
        "seed": Knob(0, int, "changes every generated value (same seed = same bytes)"),
        "final_status": Knob(
            "completed",
            str,
            "the status get_export_url gives a finished job (the document shows only not_started)",
        ),
        "partner_latency": Knob(
            0.0, nonneg_float, "seconds each partner student read takes (counted in flight)"
        ),
        "partner_max_in_flight": Knob(
            0, nonneg_int, "concurrent partner student reads before 429 'rate limit reached' (0: no limit)"
        ),
    }

    def __init__(
        self,
        tokens: tuple[str, ...] | set[str] = (SANDBOX_TOKEN,),
        readonly_tokens: tuple[str, ...] | set[str] = (READONLY_TOKEN,),
        **knobs: Any,
    ) -> None:
        super().__init__(**knobs)
        self.tokens: set[str] = set(tokens)
        self.readonly_tokens: set[str] = set(readonly_tokens)
        self.jobs = JobStore()
        self.signer = UrlSigner()
        self._files_cache = TempFileCache("edu-assets-sandbox-")
        self._in_flight_lock = threading.Lock()
        self.partner_in_flight = 0
        self.partner_peak_in_flight = 0  # the most partner student reads served at once (tests read it)
        self._partner_gate = threading.Event()  # cleared: student reads wait, in flight, until released
        self._partner_gate.set()
        self.router = Router()
        base = f"/{self.name}"
        self.router.add("GET", f"{base}/exports/export_data/{{data_type}}", self.export_data)
        partner = f"{base}{PARTNER.base_path}"
        routes = PARTNER.routes
        self.router.add("GET", partner + routes["get_export_url"].path, self.get_export_url)
        self.router.add(
            "GET", partner + routes["engagement_score_export"].path, self.partner_engagement_score
        )
        # the bulk read before the per-student ones: "bulk" would otherwise match {student_username}
        self.router.add(
            "GET", partner + routes["students_by_property"].path, self.partner_students_by_property
        )
        for name in STUDENT_READS:
            self.router.add("GET", partner + routes[name].path, self._student_read(routes[name]))
        self.router.add("GET", f"{FILES_PREFIX}/{{file_name}}", self.download)

    # -- plumbing -----------------------------------------------------------------------------

    @property
    def cache(self) -> FileCache:
        """The generated-file cache under the `cache_dir` knob (or a private temp dir)."""
        return self._files_cache.get(Path(self.cache_dir) if self.cache_dir is not None else None)

    def handle(self, request: Request) -> Response:
        if not request.path.startswith(FILES_PREFIX + "/"):
            denied = self._authorize(request)
            if denied is not None:
                return denied
        response = self.router.dispatch(request)
        if response is not None:
            return response
        if request.path.startswith(FILES_PREFIX):
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return _errors("Requested resource was not found.", 404)

    def _authorize(self, request: Request) -> Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token in self.readonly_tokens:
            return _errors(FORBIDDEN, 403)
        if scheme.lower() != "bearer" or token not in self.tokens:
            response = _errors(UNAUTHORIZED, 401)
            response.headers["WWW-Authenticate"] = 'Bearer realm="stellic"'
            return response
        return None

    def error_response(self, status: int, message: str, request: Request) -> Response:
        if request.path.startswith(FILES_PREFIX + "/"):
            code = {429: "SlowDown", 500: "InternalError", 503: "ServiceUnavailable"}.get(
                status, "InternalError"
            )
            return s3_error(status, code, message)
        return _errors(message, status)

    def reset(self) -> None:
        self.jobs.clear()
        with self._in_flight_lock:
            self.partner_in_flight = self.partner_peak_in_flight = 0
        self._partner_gate.set()

    def hold_partner_reads(self) -> dict[str, bool]:
        """Keep partner student reads in flight until :meth:`release_partner_reads` (tests order overlap
        with it instead of a clock)."""
        self._partner_gate.clear()
        return {"held": True}

    def release_partner_reads(self) -> dict[str, bool]:
        self._partner_gate.set()
        return {"held": False}

    def close(self) -> None:
        self.jobs.close()
        self._files_cache.close()

    def describe(self) -> str:
        return (
            f"stellic   {self.base_url}   Authorization: Bearer {sorted(self.tokens)[0] if self.tokens else '-'}"
            f"   (read-only, gets 403: {', '.join(sorted(self.readonly_tokens)) or '-'})"
        )

    # -- bulk export --------------------------------------------------------------------------

    def export_data(self, request: Request, data_type: str) -> Response:
        export = EXPORTS.get(data_type)
        if export is None:
            return _errors(f"Unknown data type '{data_type}'", 404)
        try:
            # output_format (csv only) and delivery_channel (http_file, s3 or none), as the document lists them
            common = {p.name: p.parse(request.query.get(p.name, [])) for p in COMMON_PARAMS}
            params = export.parse_params(request.query)
            query = self.build_query(export, params)
        except ParamError as exc:
            return _errors(str(exc), 400)

        channel = common["delivery_channel"]
        run_async = channel == "s3" or (
            channel is None
            and (
                export.flow == "async"
                or (export.flow == "async_if_large" and query.rows > ASYNC_IF_LARGE_THRESHOLD)
            )
        )
        if run_async:
            return self._start_job(export, params, query, request)
        if query.rows > self.sync_row_limit:
            return _errors(TIMEOUT, 504)
        fault = self.board.take(self.name, CONTENT_KINDS, request.path)
        return self._file_response(self.produce(export, params, query, fault), f"{export.name}.csv")

    def build_query(self, export: ExportType, params: dict[str, Any]) -> ExportQuery:
        rows = self.rows_for(export.name)
        context = ExportContext(
            params=params,
            rows=rows,
            population=max(self.rows, 1),
            r=SqlRandom(seed_for("stellic", export.name, export.data_seed_parts(params), rows, self.seed)),
            world=SqlRandom(seed_for("stellic", "world", self.seed)),
        )
        return export.build(context)

    def rows_for(self, data_type: str) -> int:
        return self.rows_by_type.get(data_type, self.rows)

    def produce(
        self, export: ExportType, params: dict[str, Any], query: ExportQuery, fault: Fault | None = None
    ) -> Payload:
        """The export's CSV file (generated once per distinct content, then cached)."""
        import duckdb

        sql = query.sql()
        key = {
            "vendor": self.name,
            "data_type": export.name,
            "params": params,
            "rows": self.rows_for(export.name),
            "seed": self.seed,
            "sql": hashlib.sha256(sql.encode()).hexdigest(),  # any generator change = new file
            "duckdb": duckdb.__version__,
        }
        clean = self.cache.get_or_create(key, lambda tmp: copy_to_csv(sql, tmp), label=export.name)
        return self._with_fault(clean, fault)

    def _with_fault(self, clean: Path, fault: Fault | None) -> Payload:
        if fault is None:
            return Payload(clean, content_type_for(None))
        variant = str(fault.param("variant", "fields"))
        key = {"vendor": self.name, "clean": clean.name, "fault": fault.kind, "variant": variant}
        path = self.cache.get_or_create(
            key, lambda tmp: write_faulty(fault.kind, clean, tmp, variant), label=f"{clean.stem}-{fault.kind}"
        )
        return Payload(path, content_type_for(fault.kind))

    @staticmethod
    def _file_response(payload: Payload, filename: str) -> Response:
        headers = {"Content-Type": payload.content_type}
        if payload.content_type.startswith("text/csv"):
            headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return Response(200, headers, payload.path)

    # -- async jobs ---------------------------------------------------------------------------

    def _start_job(
        self, export: ExportType, params: dict[str, Any], query: ExportQuery, request: Request
    ) -> Response:
        job_fault = self.board.take(self.name, ("job_fails", "job_never_finishes"), request.path)
        content_fault = self.board.take(self.name, CONTENT_KINDS, request.path)
        outcome = Outcome.SUCCEED
        if job_fault is not None:
            outcome = Outcome.FAIL if job_fault.kind == "job_fails" else Outcome.HANG
        error = str(job_fault.param("message", JOB_FAILED_MESSAGE)) if job_fault else ""
        while True:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            file_name = f"{export.name}-{stamp}-{secrets.token_hex(4)}.csv"
            if file_name not in self.jobs:
                break
        self.jobs.create(
            file_name,
            lambda: self.produce(export, params, query, content_fault),
            self.async_ready_after,
            outcome,
            error,
            data_type=export.name,
        )
        return json_response({"success": True, "data": {"file_name": file_name}})

    def get_export_url(self, request: Request) -> Response:
        file_name = request.arg("file_name")
        if not file_name:
            return _errors("Missing required parameter: file_name", 400)
        job = self.jobs.get(file_name)
        if job is None:
            return _errors("Unknown file_name", 404)
        phase = job.phase()
        if phase is Phase.QUEUED:
            return json_response({"success": True, "status": "not_started", "url": None})
        if phase is Phase.RUNNING:
            return json_response({"success": True, "status": "processing", "url": None})
        if phase is Phase.FAILED:
            message = job.error or "Export failed: internal error while generating the file"
            return json_response(
                {"success": False, "status": "failed", "url": None, "errors": [{"message": message}]}
            )
        expired = self.board.take(self.name, "expire_url", request.path)
        ttl = -60.0 if expired else self.url_ttl
        url = self.signer.url(self.server_url, f"{FILES_PREFIX}/{file_name}", ttl)
        return json_response({"success": True, "status": self.final_status, "url": url})

    def download(self, request: Request, file_name: str) -> Response:
        denied = self.signer.check(request)
        if denied is not None:
            return denied
        job = self.jobs.get(file_name)
        if job is None or job.phase() is not Phase.DONE:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        payload: Payload = job.result
        fault = self.board.take(self.name, CONTENT_KINDS, request.path)
        if fault is not None:
            payload = self._with_fault(payload.path, fault)
        response = self._file_response(payload, file_name)
        stat = payload.path.stat()
        response.headers["ETag"] = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
        return response

    # -- partner API --------------------------------------------------------------------------

    def _engagement_csv(self, request: Request) -> Response:
        """The student engagement scores as the document samples them (L1232-1236, L2097-2101): the CSV
        ``Username, ID, Engagement Score`` with a space after every comma."""
        export = EXPORTS["engagement_score"]
        params = export.parse_params({})
        query = self.build_query(export, params)
        if query.rows > self.sync_row_limit:
            return _errors(TIMEOUT, 504)
        clean = self.produce(export, params, query).path
        key = {"vendor": self.name, "clean": clean.name, "shape": "partner-csv"}
        spaced = self.cache.get_or_create(
            key, lambda tmp: _space_after_commas(clean, tmp), label="engagement-partner"
        )
        fault = self.board.take(self.name, CONTENT_KINDS, request.path)
        return self._file_response(self._with_fault(spaced, fault), "engagement_score.csv")

    def partner_engagement_score(self, request: Request) -> Response:
        return self._engagement_csv(request)

    def partner_students_by_property(self, request: Request, property: str) -> Response:
        route = PARTNER.routes["students_by_property"]
        problem = bad_path_param(route, {"property": property}) or missing_query(route, request.query)
        if problem:
            return _errors(problem, 400)
        return self._engagement_csv(request)  # engagement_score is the only documented property

    def roster(self) -> dict[str, Student]:
        """Every student the tenant knows (the engagement-score export's), by username."""
        export = EXPORTS["engagement_score"]
        params = export.parse_params({})
        path = self.produce(export, params, self.build_query(export, params)).path
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        return {r["Username"]: Student(r["Username"], int(r["ID"]), int(r["Engagement Score"])) for r in rows}

    def _student_read(self, route: PartnerRoute):
        def handler(request: Request, student_username: str, **path_params: str) -> Response:
            problem = bad_path_param(route, path_params)
            if problem:
                return _errors(problem, 400)
            with self._in_flight_lock:
                if self.partner_max_in_flight and self.partner_in_flight >= self.partner_max_in_flight:
                    response = _errors(PARTNER.errors[429], 429)
                    response.headers["Retry-After"] = "0"
                    return response
                self.partner_in_flight += 1
                self.partner_peak_in_flight = max(self.partner_peak_in_flight, self.partner_in_flight)
            try:
                if self.partner_latency:
                    time.sleep(self.partner_latency)
                self._partner_gate.wait(timeout=120)
                student = self.roster().get(student_username)
                if student is None:
                    return _errors(PARTNER.errors[404], 404)
                body = student_body(route.name, student, path_params, self.seed)
                renamed = self.board.take(self.name, "renamed_result_sets", request.path)
                if renamed is not None:
                    suffix = str(renamed.param("suffix", "_v2"))
                    body = {(k if k == "success" else f"{k}{suffix}"): v for k, v in body.items()}
                return json_response(body)
            finally:
                with self._in_flight_lock:
                    self.partner_in_flight -= 1

        return handler


def _space_after_commas(clean: Path, dest: Path) -> None:
    """Rewrite a CSV of plain fields (no quoting needed) with ", " between fields, as the document shows."""
    with (
        open(clean, encoding="utf-8", newline="") as src,
        open(dest, "w", encoding="utf-8", newline="") as out,
    ):
        for row in csv.reader(src):
            if any(ch in field for field in row for ch in ',"\r\n'):
                raise ValueError("the partner CSV shape is only emulated for plain fields")
            out.write(", ".join(row) + "\r\n")
