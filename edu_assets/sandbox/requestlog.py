"""A bounded, credential-free log of the requests a sandbox server answered.

Tests assert on call counts ("exactly one export_data call per job") and people debug a
pipeline run with `GET /_sandbox/requests`. Headers are never recorded, and query values that
act as credentials (pre-signed URL signatures, tokens) are redacted before they are stored, so
the log can be printed or attached to a bug report safely.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

__all__ = ["REDACTED", "RequestLog", "redact_query"]

REDACTED = "***"
SECRET_QUERY_KEYS = frozenset(
    {
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "secret",
        "password",
    }
)


def redact_query(query: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: ([REDACTED] * len(v) if k.lower() in SECRET_QUERY_KEYS else list(v)) for k, v in query.items()}


class RequestLog:
    """The last `maxlen` requests: method, path, redacted query, status and a few timings."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def record(
        self,
        *,
        vendor: str | None,
        method: str,
        path: str,
        query: dict[str, list[str]],
        status: int,
        fault: str | None = None,
        bytes_sent: int = 0,
        started: float,
    ) -> dict[str, Any]:
        """Append an entry and return it (``update`` fills in what is known only after sending)."""
        entry = {
            "time": started,
            "vendor": vendor,
            "method": method,
            "path": path,
            "query": redact_query(query),
            "status": status,
            "fault": fault,
            "bytes": bytes_sent,
            "ms": round((time.time() - started) * 1000, 2),
        }
        with self._lock:
            self._entries.append(entry)
        return entry

    def update(self, entry: dict[str, Any], *, bytes_sent: int, started: float) -> None:
        with self._lock:
            entry["bytes"] = bytes_sent
            entry["ms"] = round((time.time() - started) * 1000, 2)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def count(
        self, path_contains: str | None = None, method: str | None = None, vendor: str | None = None
    ) -> int:
        """How many logged requests match all given filters (handy in tests)."""
        return sum(
            1
            for e in self.entries()
            if (path_contains is None or path_contains in e["path"])
            and (method is None or e["method"] == method)
            and (vendor is None or e["vendor"] == vendor)
        )
