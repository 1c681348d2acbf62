"""Injected failures, shared by every emulated vendor on one sandbox server.

Connectors are judged by how they behave when a vendor misbehaves, and real vendors cannot be
made to misbehave on demand. A test (or a person at the CLI, via `POST /_sandbox/faults`) puts
a fault on the board; the next matching request(s) suffer it. Generic kinds are applied by the
server itself; vendor-specific kinds are plain strings the vendor app looks up with `take`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CONTENT_KINDS", "GENERIC_KINDS", "Fault", "FaultBoard"]

# Applied by the server before (or, for truncate_body, while) answering; see server.py.
GENERIC_KINDS: frozenset[str] = frozenset(
    {"rate_limit", "server_error", "drop_connection", "truncate_body", "latency"}
)

# Bad-input kinds that rewrite a CSV payload (see csvfaults.py); vendor apps opt into them.
CONTENT_KINDS: tuple[str, ...] = (
    "malformed_csv",
    "bad_encoding",
    "empty_body",
    "header_only",
    "extra_column",
    "html_error",
)


@dataclass
class Fault:
    """One armed fault. `times` is the number of uses left (None = forever)."""

    id: int
    kind: str
    vendor: str | None = None
    match: str | None = None
    times: int | None = 1
    params: dict[str, Any] = field(default_factory=dict)
    used: int = 0
    created_at: float = field(default_factory=time.time)

    def applies_to(self, vendor: str | None, path: str) -> bool:
        if self.vendor is not None and self.vendor != vendor:
            return False
        return self.match is None or self.match in path

    def param(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "vendor": self.vendor,
            "match": self.match,
            "times": self.times,
            "used": self.used,
            "params": dict(self.params),
        }


class FaultBoard:
    """Thread-safe list of armed faults; the oldest matching fault is used first.

    `known_kinds`, once set (the server registers the generic kinds plus each app's
    `FAULT_KINDS`), makes `add` reject typos instead of arming a fault nothing will ever take.
    """

    def __init__(self, known_kinds: Iterable[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self.known_kinds: set[str] = set(known_kinds or ())

    def register_kinds(self, kinds: Iterable[str]) -> None:
        with self._lock:
            self.known_kinds.update(kinds)

    def add(
        self,
        kind: str,
        vendor: str | None = None,
        match: str | None = None,
        times: int | None = 1,
        **params: Any,
    ) -> int:
        if not isinstance(kind, str) or not kind:
            raise ValueError("fault kind must be a non-empty string")
        if self.known_kinds and kind not in self.known_kinds:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(self.known_kinds)}")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
            raise ValueError("times must be a positive integer or None (forever)")
        with self._lock:
            fault = Fault(next(self._ids), kind, vendor, match, times, dict(params))
            self._faults.append(fault)
            return fault.id

    def take(self, vendor: str | None, kind: str | Iterable[str], path: str) -> Fault | None:
        """Consume one use of the oldest fault of `kind` (or any of several kinds) matching the request."""
        kinds = {kind} if isinstance(kind, str) else set(kind)
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.applies_to(vendor, path):
                    fault.used += 1
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._faults]
