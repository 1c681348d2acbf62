"""The sandbox HTTP server: real sockets on loopback, vendor apps mounted by path prefix.

Connectors talk to the sandbox exactly as they would to a vendor (httpx, keep-alive, TLS
aside), so the code under test is the production code path. The server owns everything that
is the same for every vendor: routing `/<vendor>/...` to an app, generic injected faults,
the request log, the `/_sandbox/...` control endpoints, and efficient file streaming
(`sendfile`, HTTP Range) so gigabyte exports download at disk/loopback speed.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .app import VendorApp
from .faults import GENERIC_KINDS, Fault, FaultBoard
from .http import Headers, Request, Response, json_response
from .requestlog import RequestLog

__all__ = ["CHUNK_SIZE", "SandboxServer"]

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024  # file bodies are streamed, never loaded: memory stays flat for any size
CONTROL_PREFIX = "/_sandbox"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class SandboxServer:
    """Serve vendor emulators on `http://host:port/<vendor>/...` from a background thread.

    >>> with SandboxServer([StellicApp()]) as server:        # doctest: +SKIP
    ...     httpx.get(server.base_url("stellic") + "/exports/...")
    """

    def __init__(
        self,
        apps: Iterable[VendorApp],
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultBoard | None = None,
        log_size: int = 10_000,
    ) -> None:
        self.apps: dict[str, VendorApp] = {}
        for app in apps:
            if not app.name or app.name in self.apps or app.name.startswith("_"):
                raise ValueError(f"vendor app names must be unique and not start with '_': {app.name!r}")
            self.apps[app.name] = app
        self._prefixes = sorted(
            ((prefix, app) for app in self.apps.values() for prefix in app.prefixes),
            key=lambda item: -len(item[0]),
        )
        self.faults = faults or FaultBoard()
        self.faults.register_kinds(GENERIC_KINDS)
        for app in self.apps.values():
            self.faults.register_kinds(app.FAULT_KINDS)
        self.log = RequestLog(log_size)
        self.host, self.port = host, port
        self._httpd: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> SandboxServer:
        if self._httpd is not None:
            return self
        httpd = _ThreadingServer((self.host, self.port), _Handler)
        httpd.sandbox = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        for app in self.apps.values():
            app.bind(self)
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._conn_lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:  # idle keep-alive connections would otherwise linger
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        for app in self.apps.values():
            app.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses and state ----------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("SandboxServer is not started")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def base_url(self, vendor_name: str) -> str:
        self.app(vendor_name)
        return f"{self.url}/{vendor_name}"

    def app(self, name: str) -> VendorApp:
        try:
            return self.apps[name]
        except KeyError:
            raise KeyError(f"no vendor app {name!r}; mounted: {sorted(self.apps)}") from None

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The request log (newest last): method, path, redacted query, status, fault, bytes, ms."""
        return self.log.entries()

    def reset(self) -> None:
        """Clear faults, the request log and every app's per-run state (jobs). Knobs are kept."""
        self.faults.clear()
        self.log.clear()
        for app in self.apps.values():
            app.reset()

    def app_for_path(self, path: str) -> VendorApp | None:
        for prefix, app in self._prefixes:
            if path == prefix or path.startswith(prefix + "/"):
                return app
        return None

    def _track(self, conn: socket.socket, open_: bool) -> None:
        with self._conn_lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- control endpoints (/_sandbox/...) ----------------------------------------------------

    def control(self, request: Request) -> Response:
        """Answer `/_sandbox/...`: faults, request log, knobs, reset. No auth: loopback only."""
        parts = request.path[len(CONTROL_PREFIX) :].strip("/").split("/")
        section, rest, method = parts[0], parts[1:], request.method
        try:
            if section == "" and method == "GET":
                return json_response({"vendors": {name: self.base_url(name) for name in self.apps}})
            if section == "faults":
                return self._control_faults(method, rest, request)
            if section == "requests" and method == "GET":
                return json_response({"requests": self.requests})
            if section == "requests" and method == "DELETE":
                self.log.clear()
                return json_response({"cleared": True})
            if section == "reset" and method == "POST":
                self.reset()
                return json_response({"reset": True})
            if section == "knobs":
                return self._control_knobs(method, rest, request)
            if section == "actions" and method == "POST" and len(rest) == 2:
                return self._control_action(rest[0], rest[1], request)
        except (ValueError, TypeError, KeyError) as exc:
            return json_response({"error": str(exc).strip("'\"")}, 400)
        return json_response({"error": f"no control endpoint {method} {request.path}"}, 404)

    def _control_faults(self, method: str, rest: list[str], request: Request) -> Response:
        if method == "GET" and not rest:
            return json_response({"faults": self.faults.active()})
        if method == "DELETE" and not rest:
            self.faults.clear()
            return json_response({"cleared": True})
        if method == "DELETE" and len(rest) == 1:
            removed = self.faults.remove(int(rest[0]))
            return json_response({"removed": removed}, 200 if removed else 404)
        if method == "POST" and not rest:
            spec = request.json()
            if not isinstance(spec, dict) or "kind" not in spec:
                raise ValueError('body must be a JSON object like {"kind": "rate_limit", "times": 2}')
            params = dict(spec.pop("params", None) or {})
            kind, vendor, match = spec.pop("kind"), spec.pop("vendor", None), spec.pop("match", None)
            times = spec.pop("times", 1)
            params.update(spec)
            fault_id = self.faults.add(kind, vendor=vendor, match=match, times=times, **params)
            return json_response({"id": fault_id, "faults": self.faults.active()}, 201)
        return json_response({"error": f"no control endpoint {method} {request.path}"}, 404)

    def _control_action(self, vendor: str, action: str, request: Request) -> Response:
        """``POST /_sandbox/actions/<vendor>/<action>`` with JSON keyword arguments: a vendor app's
        declared test action (e.g. Xporter's ``mutate``), for a sandbox running in another process."""
        app = self.app(vendor)
        if action not in app.ACTIONS:
            raise ValueError(f"{vendor} has no action {action!r}; actions: {sorted(app.ACTIONS)}")
        body = request.json() or {}
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object of keyword arguments")
        return json_response({"result": getattr(app, action)(**body)})

    def _control_knobs(self, method: str, rest: list[str], request: Request) -> Response:
        if method == "GET":
            if rest:
                return json_response(_jsonable(self.app(rest[0]).knobs()))
            return json_response({name: _jsonable(app.knobs()) for name, app in self.apps.items()})
        if method == "POST":
            body = request.json() or {}
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            per_vendor = {rest[0]: body} if rest else body
            for name, values in per_vendor.items():
                self.app(name).set_knobs(**values)
            return json_response({name: _jsonable(self.app(name).knobs()) for name in per_vendor})
        return json_response({"error": f"no control endpoint {method} {request.path}"}, 404)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    sandbox: SandboxServer


class _Handler(BaseHTTPRequestHandler):
    """Turns one HTTP exchange into Request -> (faults, app) -> Response on the wire."""

    protocol_version = "HTTP/1.1"  # keep-alive; every non-streamed body has a Content-Length
    server_version = "edu-assets-sandbox/1.0"
    timeout = 120  # idle keep-alive connections end after this many seconds
    server: _ThreadingServer

    def setup(self) -> None:
        super().setup()
        self.server.sandbox._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sandbox._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the RequestLog is the record
        pass

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    # -- one exchange -----------------------------------------------------------------------

    def _serve(self) -> None:
        started = time.time()
        sandbox = self.server.sandbox
        split = urlsplit(self.path)
        path = unquote(split.path) or "/"
        query = parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = Request(self.command, path, query, Headers(self.headers.items()), body)

        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            self._send(sandbox.control(request), request)
            return

        app = sandbox.app_for_path(path)
        vendor = app.name if app else None
        status, sent, fault_kind = 0, 0, None
        entry: dict[str, Any] | None = None

        def record(final_status: int) -> None:
            # Logged before the first byte of the response leaves: a client that has its answer (a test
            # counting requests right after a call) always finds the request in the log.
            nonlocal entry, status
            status = final_status
            entry = sandbox.log.record(vendor=vendor, method=request.method, path=path, query=query,
                                       status=final_status, fault=fault_kind, started=started)

        try:
            response, fault = self._answer(sandbox, app, request)
            fault_kind = fault.kind if fault else None
            if response is None:  # drop_connection: close without a single byte
                self.close_connection = True
                return
            truncate = None
            if isinstance(response.body, Path) or response.body:
                truncate = sandbox.faults.take(vendor, "truncate_body", path)
            fault_kind = "truncate_body" if truncate else fault_kind
            status = response.status
            status, sent = self._send(response, request, truncate=truncate is not None, before_headers=record)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        finally:
            if entry is None:
                record(status)
            assert entry is not None
            sandbox.log.update(entry, bytes_sent=sent, started=started)

    def _answer(
        self, sandbox: SandboxServer, app: VendorApp | None, request: Request
    ) -> tuple[Response | None, Fault | None]:
        vendor, path, board = (app.name if app else None), request.path, sandbox.faults
        delay = app.latency if app else 0.0
        slow = board.take(vendor, "latency", path)
        if slow:
            delay += float(slow.param("seconds", 1.0))
        if delay:
            time.sleep(delay)
        fault = board.take(vendor, ("drop_connection", "rate_limit", "server_error"), path) or slow
        if fault and fault.kind == "drop_connection":
            return None, fault
        if fault and fault.kind == "rate_limit":
            retry_after = fault.param("retry_after", 1)
            response = self._error(app, 429, "The API rate limit was reached.", request)
            response.headers["Retry-After"] = str(retry_after)
            return response, fault
        if fault and fault.kind == "server_error":
            message = fault.param("message", "Internal server error (sandbox-injected)")
            return self._error(app, 500, message, request), fault
        if app is None:
            mounted = {name: sandbox.base_url(name) for name in sandbox.apps}
            return json_response({"error": f"no sandbox vendor at {path}", "vendors": mounted}, 404), fault
        try:
            return app.handle(request), fault
        except Exception:
            log.exception("sandbox app %s failed on %s %s", app.name, request.method, path)
            return self._error(app, 500, "Sandbox internal error", request), fault

    @staticmethod
    def _error(app: VendorApp | None, status: int, message: str, request: Request) -> Response:
        if app is None:
            return json_response({"error": message}, status)
        return app.error_response(status, message, request)

    # -- writing ----------------------------------------------------------------------------

    def _send(
        self,
        response: Response,
        request: Request,
        truncate: bool = False,
        before_headers: Callable[[int], None] | None = None,
    ) -> tuple[int, int]:
        """Write status, headers and body. Returns (status, body bytes written).
        ``before_headers(status)`` is called with the final status before anything is written."""
        status, headers, body = response.status, dict(response.headers), response.body
        start, length, data = 0, 0, b""
        if isinstance(body, Path):
            size = body.stat().st_size
            headers.setdefault("Accept-Ranges", "bytes")
            length = size
            byte_range = request.headers.get("Range")
            if byte_range and status == 200:
                parsed = _parse_range(byte_range, size)
                if parsed is None:
                    status, body, length = 416, None, 0
                    headers = {"Content-Range": f"bytes */{size}"}
                elif parsed != (0, size):
                    start, length = parsed
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
        elif body:
            data = body
            length = len(data)

        if before_headers is not None:
            before_headers(status)
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

        if request.method == "HEAD" or length == 0:
            return status, 0
        count = length // 2 if truncate else length
        sent = 0
        if count and isinstance(body, Path):
            sent = self._send_file(body, start, count)
        elif count:
            self.wfile.write(data[:count])
            sent = count
        if truncate:
            self.wfile.flush()
            self.close_connection = True
        return status, sent

    def _send_file(self, path: Path, offset: int, count: int) -> int:
        with open(path, "rb") as fh:
            try:
                return self.connection.sendfile(fh, offset, count)  # zero-copy, no memory growth
            except (AttributeError, NotImplementedError):
                pass
            fh.seek(offset)
            sent = 0
            while sent < count:
                chunk = fh.read(min(CHUNK_SIZE, count - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
            return sent


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse one `bytes=` range into (start, length); None = unsatisfiable. Multi-ranges: whole file."""
    match = _RANGE.match(header.strip())
    if not match:
        return (0, size)
    first, last = match.groups()
    if first == "" and last == "":
        return (0, size)
    if first == "":  # suffix range: the last N bytes
        n = min(int(last), size)
        return (size - n, n) if n > 0 else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return (start, end - start + 1)
