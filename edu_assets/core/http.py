"""One HTTP layer for every vendor: retries, backoff, rate limits, streaming downloads, redaction.

Vendors differ in auth and payloads, not in how a flaky network should be handled, so all of that
lives here once:

* 429 / 5xx / dropped connections are retried with capped exponential backoff and full jitter,
  honouring ``Retry-After`` (seconds or an HTTP date) when the vendor sends it;
* a per-vendor, per-process rate limit spaces requests out before the vendor has to say 429;
* downloads stream to disk in chunks (memory does not grow with file size), are checked against
  ``Content-Length``, resume (``Range``) or restart when the body is cut short, and are fingerprinted
  (sha256) on a background thread while the caller converts the file;
* auth headers are only ever sent to the vendor's own base URL (never to a pre-signed file host), and
  every logged URL and error passes through :func:`~edu_assets.core.redact.redact`.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import json
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edu_assets.core.errors import DownloadError, VendorAuthError, VendorHTTPError, Where
from edu_assets.core.ratebudget import HeaderBudget
from edu_assets.core.redact import guard_library_loggers, redact, redact_url
from edu_assets.core.settings import HTTP_BACKOFF_BASE, HTTP_BACKOFF_CAP, HTTP_MAX_ATTEMPTS

if TYPE_CHECKING:
    import httpx  # imported where used (see _httpx): the code location loads without it

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_SOCKET_READ_BYTES = 1 << 20
guard_library_loggers()  # httpx logs every request URL at INFO, signed query strings included


@functools.cache
def _httpx() -> Any:
    """httpx, imported when the first session opens rather than when the code location loads (~60 ms).

    httpcore reads a plain-HTTP socket 64 KiB at a time, and each read costs h11 two copies and ~40 us of
    Python: 16,000 rounds per GB. 1 MiB reads halve the CPU of a 1 GB download on loopback (1.8-2.4 s ->
    0.7-1.0 s measured on 2 cores; encode/httpcore#135 measured the same curve). There is no per-client
    option, so it is set once for the process; small responses are unaffected (recv returns what is there)."""
    import httpcore
    import httpx

    if getattr(httpcore.HTTP11Connection, "READ_NUM_BYTES", _SOCKET_READ_BYTES) < _SOCKET_READ_BYTES:
        httpcore.HTTP11Connection.READ_NUM_BYTES = _SOCKET_READ_BYTES  # only if httpcore still reads it
    return httpx
# One line per request goes to this Python logger, not to the run's event log: a paged backfill makes
# thousands of requests, and each event is a write to the instance's database that buries the lines that
# matter. Route it into Dagster with `python_logs: managed_python_loggers` when debugging; retries,
# re-auth and failures are still logged to the run.
_WIRE_LOG = logging.getLogger("edu_assets.http")


class Log(Protocol):
    """Anything with the logging methods we use (``logging.Logger`` or Dagster's ``context.log``)."""

    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...
    def debug(self, msg: str, *args: Any) -> Any: ...


class _NullLog:
    def info(self, msg: str, *args: Any) -> None: ...
    def warning(self, msg: str, *args: Any) -> None: ...
    def debug(self, msg: str, *args: Any) -> None: ...


class QuietLog:
    """Progress to a Python logger, warnings to the run's log: for work repeated many times in one step
    (a batch of schools), where a line per item would be thousands of event-log writes."""

    def __init__(self, run_log: Log, detail: logging.Logger):
        self.run_log, self.detail = run_log, detail

    def info(self, msg: str, *args: Any) -> None:
        self.detail.info(msg, *args)

    def debug(self, msg: str, *args: Any) -> None:
        self.detail.debug(msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self.run_log.warning(msg, *args)


class RateLimiter:
    """Spaces requests at least ``1/per_second`` apart; shared by all clients of one vendor in a process."""

    _registry: dict[str, RateLimiter] = {}
    _registry_lock = threading.Lock()

    def __init__(self, per_second: float):
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    @classmethod
    def for_vendor(cls, vendor: str, per_second: float) -> RateLimiter:
        with cls._registry_lock:
            limiter = cls._registry.get(vendor)
            if limiter is None or abs(limiter.interval - (1.0 / per_second if per_second > 0 else 0.0)) > 1e-9:
                limiter = cls._registry[vendor] = RateLimiter(per_second)
            return limiter

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            time.sleep(wait)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 300.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """The settings EDU_HTTP_MAX_ATTEMPTS / EDU_HTTP_BACKOFF_BASE / EDU_HTTP_BACKOFF_CAP (validated at load)."""
        return cls(
            max_attempts=HTTP_MAX_ATTEMPTS.get(),
            backoff_base=HTTP_BACKOFF_BASE.get(),
            backoff_cap=HTTP_BACKOFF_CAP.get(),
        )

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after) + random.uniform(0, 0.1)
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))


@dataclass(frozen=True)
class Downloaded:
    path: Path
    bytes: int
    seconds: float
    content_type: str
    attempts: int
    digest: Future[str]  # the file's sha256, computed on a background thread (see ``sha256_in_background``)

    @property
    def sha256(self) -> str:
        """The sha256 of the file as it is on disk; waits for the background hash if it is still running."""
        return self.digest.result()


def sha256_in_background(path: Path) -> Future[str]:
    """Hash a finished download on a thread of its own, from a handle opened now.

    Hashing while receiving made three busy threads on the download's critical path (reader, writer,
    sha256 at ~0.75 s of CPU per GB): on 2 cores, 1 GB took 1.5-2.0 s to download instead of ~0.9 s
    without the hash. Run beside the conversion that follows, the hash fits in the gaps DuckDB leaves and
    the landing does not wait for it (``bench/land_bench.py``). The handle is opened before returning, so
    the caller may delete the file (a landing drops the raw CSV) before the hash has read it.
    """
    future: Future[str] = Future()
    handle = open(path, "rb")  # noqa: SIM115 - closed by the hashing thread

    def run() -> None:
        with handle:
            try:
                future.set_result(hashlib.file_digest(handle, "sha256").hexdigest())
            except BaseException as exc:
                future.set_exception(exc)

    threading.Thread(target=run, name="download-sha256", daemon=True).start()
    return future


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def vendor_message(response: httpx.Response) -> str:
    """The vendor's own words from an error body (JSON ``errors``/``message`` shapes, XML, or text)."""
    try:
        text = response.text
    except Exception:
        return ""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    messages: list[str] = []
    if isinstance(body, dict):
        if body.get("ExceptionType") and body.get("ExceptionMessage"):  # the .NET error envelope (Xporter)
            messages.append(f"{body['ExceptionType']}: {body['ExceptionMessage']}")
        code = body.get("code")  # a machine-readable code beside the message ({statusCode, code?, error, message})
        for key in ("ExceptionMessage", "message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                messages.append(f"{code}: {value}" if key == "message" and isinstance(code, str) and code else value)
            elif isinstance(value, dict) and value.get("message"):
                messages.append(_keyed(value))
        for err in body.get("errors") or []:
            if isinstance(err, dict) and err.get("message"):
                messages.append(_keyed(err))
            elif isinstance(err, str):
                messages.append(err)
    if messages:
        return "; ".join(dict.fromkeys(messages))
    if "<Message>" in text:
        return text.split("<Message>", 1)[1].split("</Message>", 1)[0]
    return text.strip()[:300]


def _keyed(err: dict[str, Any]) -> str:
    """``{key, message}`` → ``key: message``: the key says which field or rule the vendor objects to."""
    key = err.get("key") or err.get("code")
    return f"{key}: {err['message']}" if isinstance(key, str) and key else str(err["message"])


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process: building one loads the CA bundle (~50 ms), and a run opens a session
    per school."""
    return _httpx().create_ssl_context()


class VendorHTTP:
    """A vendor's HTTP session: base URL, auth headers, retry policy and rate limit."""

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        auth_headers: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        reauth: Callable[[Mapping[str, str]], None] | None = None,
        timeout: float = 130.0,
        retry: RetryPolicy | None = None,
        rate_per_second: float = 0.0,
        log: Log | None = None,
        transport: httpx.BaseTransport | None = None,
        budget: HeaderBudget | None = None,
    ):
        self.vendor = vendor
        self.budget = budget  # paces requests to the vendor's API by its advertised X-RateLimit budget
        self.base_url = base_url.rstrip("/")
        # Auth headers may be a callable so short-lived tokens are fetched (and refreshed) per request;
        # ``reauth(rejected_headers)`` is called once when the vendor answers 401, then the request is retried.
        self._auth = auth_headers if callable(auth_headers) else dict(auth_headers or {})
        self._reauth = reauth
        self.retry = retry or RetryPolicy.from_env()
        self.limiter = RateLimiter.for_vendor(vendor, rate_per_second)
        self.log: Log = log or _NullLog()
        httpx = _httpx()
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=10.0),
            follow_redirects=True,
            transport=transport,
            headers={"User-Agent": "edu-assets/0.1"},
            verify=_tls_context(),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> VendorHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def _is_own(self, url: str) -> bool:
        """True for the vendor's API; False for e.g. a pre-signed file host (no auth, no API budget)."""
        return url.startswith(self.base_url + "/") or url == self.base_url

    def _headers_for(self, url: str, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self._is_own(url):
            headers.update(self._auth() if callable(self._auth) else self._auth)
        return headers

    def request(
        self,
        method: str,
        path_or_url: str,
        where: Where,
        *,
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
        ok_statuses: Iterable[int] = (),
        on_response: Callable[[httpx.Response], None] | None = None,
    ) -> httpx.Response:
        """Send a request with retries; return the (read) response or raise a clear vendor error."""
        url = self.url(path_or_url)
        ok = set(ok_statuses)
        last_problem = ""
        reauthed = False
        for attempt in range(self.retry.max_attempts):
            self.limiter.acquire()
            own_api = self._is_own(url)
            if self.budget is not None and own_api:
                self.budget.acquire(self.log, where)
            started = time.monotonic()
            sent = self._headers_for(url, headers)
            try:
                response = self._client.request(method, url, params=params, json=json_body, headers=sent)
            except _httpx().TransportError as exc:
                last_problem = f"{type(exc).__name__}: {redact(exc)}"
                delay = self.retry.delay(attempt, None)
                self.log.warning(
                    f"{where}: {method} {redact_url(url)} failed ({last_problem}); "
                    f"retry {attempt + 1}/{self.retry.max_attempts - 1} in {delay:.1f}s"
                )
                if attempt + 1 < self.retry.max_attempts:
                    time.sleep(delay)
                continue
            if self.budget is not None and own_api:
                self.budget.observe(response.headers)
            if on_response is not None:
                on_response(response)
            elapsed = time.monotonic() - started
            _WIRE_LOG.debug("%s: %s %s -> %s in %.2fs", where, method, redact_url(str(response.request.url)),
                            response.status_code, elapsed)
            if response.status_code < 400 or response.status_code in ok:
                return response
            if response.status_code == 401 and self._reauth is not None and not reauthed:
                reauthed = True
                self.log.info(f"{where}: HTTP 401 from {redact_url(url)}; refreshing the token once and retrying")
                self._reauth(sent)
                continue
            if response.status_code in retry_statuses and attempt + 1 < self.retry.max_attempts:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                delay = self.retry.delay(attempt, retry_after)
                last_problem = f"HTTP {response.status_code} {vendor_message(response)!r}"
                self.log.warning(
                    f"{where}: {method} {redact_url(url)} -> HTTP {response.status_code}"
                    + (f" (Retry-After {retry_after:.0f}s)" if retry_after is not None else "")
                    + f"; retry {attempt + 1}/{self.retry.max_attempts - 1} in {delay:.1f}s"
                )
                time.sleep(delay)
                continue
            raise self.error_for(response, where)
        raise VendorHTTPError(
            where,
            f"{method} {redact_url(url)} failed after {self.retry.max_attempts} attempts (last: {last_problem})",
            hint="the vendor or the network is unavailable; the partition can be re-run safely later",
        )

    def error_for(self, response: httpx.Response, where: Where) -> VendorHTTPError:
        status = response.status_code
        message = vendor_message(response) or response.reason_phrase
        url = redact_url(str(response.request.url))
        if status in (401, 403):
            what = "credentials were rejected" if status == 401 else "the credentials lack the privilege needed"
            return VendorAuthError(where, f"{what} (HTTP {status} from {url}: {message!r})", status=status)
        if status == 404:
            return VendorHTTPError(
                where, f"not found (HTTP 404 from {url}: {message!r})",
                hint="check the base URL and the partition's parameters", status=status,
            )
        if status == 400:
            return VendorHTTPError(
                where, f"the vendor rejected the request (HTTP 400: {message!r})",
                hint="check the asset's parameters in its run config", status=status,
            )
        return VendorHTTPError(where, f"HTTP {status} from {url}: {message!r}", status=status)

    def get_json(self, path_or_url: str, where: Where, **kwargs: Any) -> Any:
        return self.request_json("GET", path_or_url, where, **kwargs)

    def request_json(self, method: str, path_or_url: str, where: Where, **kwargs: Any) -> Any:
        response = self.request(method, path_or_url, where, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise VendorHTTPError(
                where,
                f"expected JSON but got {response.headers.get('content-type', '?')}: {response.text[:200]!r}",
            ) from None

    # ------------------------------------------------------------------ downloads
    def download(
        self,
        path_or_url: str,
        dest: Path,
        where: Where,
        *,
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        max_attempts: int | None = None,
        on_status: Callable[[httpx.Response], None] | None = None,
    ) -> Downloaded:
        """Stream a file to ``dest``, verifying its length; resume or restart on truncation.

        ``on_status`` sees error responses before they are raised (e.g. to turn an S3 "expired" 403 into
        a specific exception the caller can handle by asking the vendor for a fresh URL).
        """
        url = self.url(path_or_url)
        max_attempts = max_attempts or self.retry.max_attempts
        started = time.monotonic()
        have = 0
        expected: int | None = None
        content_type = ""
        problem = ""
        for attempt in range(1, max_attempts + 1):
            problem = ""
            extra = {"Accept-Encoding": "identity"}  # bytes on disk must be the file, not a gzip stream
            if have:
                extra["Range"] = f"bytes={have}-"
            headers = self._headers_for(url, extra)
            self.limiter.acquire()
            try:
                with self._client.stream("GET", url, params=params, headers=headers) as response:
                    if response.status_code >= 400:
                        response.read()
                        if on_status is not None:
                            on_status(response)
                        if response.status_code in RETRY_STATUSES and attempt < max_attempts:
                            delay = self.retry.delay(attempt, parse_retry_after(response.headers.get("Retry-After")))
                            self.log.warning(
                                f"{where}: GET {redact_url(url)} -> HTTP {response.status_code}; "
                                f"retry {attempt}/{max_attempts - 1} in {delay:.1f}s"
                            )
                            time.sleep(delay)
                            continue
                        raise self.error_for(response, where)
                    resumed = have > 0 and response.status_code == 206
                    if not resumed:  # a fresh start, or the server ignored our Range header
                        have = 0
                        length = response.headers.get("Content-Length")
                        expected = int(length) if length is not None else None
                        content_type = response.headers.get("Content-Type", "")
                    # Written as received, on this thread: a writer thread cost more in hand-overs than it
                    # saved (1 GB: 1.20 s against 0.85 s inline, medians of 6 on 2 cores).
                    # created here, not before the request: the work directory's sweep removes empty
                    # directories, and a vendor may take minutes to answer (see core/workdir.py)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with open(dest, "ab" if resumed else "wb") as out:
                        for chunk in response.iter_raw():
                            out.write(chunk)
                            have += len(chunk)
            except _httpx().TransportError as exc:
                problem = f"{type(exc).__name__} after {have:,} bytes"
            if expected is None or have == expected:
                if not problem or expected is not None:
                    seconds = time.monotonic() - started
                    return Downloaded(dest, have, seconds, content_type, attempt, sha256_in_background(dest))
            elif have > expected:
                problem = f"received {have:,} bytes but Content-Length said {expected:,}"
                have = 0
            else:
                problem = problem or f"truncated: {have:,} of {expected:,} bytes"
            self.log.warning(
                f"{where}: download {redact_url(url)} incomplete ({problem}); attempt {attempt}/{max_attempts}, "
                + ("resuming" if have else "restarting")
            )
            time.sleep(self.retry.delay(attempt - 1, None))
        raise DownloadError(where, f"download of {redact_url(url)} kept failing after {max_attempts} attempts")

