"""Pacing by a vendor's advertised request budget (``X-RateLimit-Limit`` / ``X-RateLimit-Remaining``).

Some vendors (WebAdMIT: 5,000 requests per API key per hour) publish a budget on every response but not
when it resets. Waiting for a 429 means the whole key is blocked for the rest of the hour, for every
process that shares it, so this pacer slows down *before* the budget runs out:

* while more than ``reserve_fraction`` of the budget is left, requests go at full speed;
* below that, requests are spread so the remainder lasts until the window is expected to reset;
* with nothing left, it waits for the reset.

The reset time is estimated conservatively: the window is assumed to have started no earlier than the
first response this process saw for it (a budget that goes *up* marks a new window). Every response
re-reads the vendor's own count, so several processes sharing one key each see the true remainder.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

LIMIT_HEADER = "X-RateLimit-Limit"
REMAINING_HEADER = "X-RateLimit-Remaining"


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@dataclass
class BudgetState:
    limit: int | None = None
    remaining: int | None = None
    window_started: float | None = None  # monotonic; our conservative estimate


class HeaderBudget:
    """Shared by every client of one vendor in a process (see :meth:`for_vendor`)."""

    _registry: dict[str, HeaderBudget] = {}
    _registry_lock = threading.Lock()

    def __init__(
        self,
        vendor: str,
        window_seconds: float,
        *,
        reserve_fraction: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.vendor = vendor
        self.window_seconds = window_seconds
        self.reserve_fraction = reserve_fraction
        self.state = BudgetState()
        self.slept_seconds = 0.0  # total pacing delay, for metadata and tests
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._announced = False

    @classmethod
    def for_vendor(cls, vendor: str, window_seconds: float, reserve_fraction: float = 0.2) -> HeaderBudget:
        with cls._registry_lock:
            budget = cls._registry.get(vendor)
            if budget is None or (budget.window_seconds, budget.reserve_fraction) != (window_seconds, reserve_fraction):
                budget = cls._registry[vendor] = HeaderBudget(vendor, window_seconds, reserve_fraction=reserve_fraction)
            return budget

    @classmethod
    def forget_all(cls) -> None:
        """Drop every vendor's budget state (a new process's view; used between tests)."""
        with cls._registry_lock:
            cls._registry.clear()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read the vendor's count from a response's headers (responses without them are ignored)."""
        limit, remaining = _int(headers, LIMIT_HEADER), _int(headers, REMAINING_HEADER)
        if remaining is None:
            return
        with self._lock:
            now = self._clock()
            s = self.state
            if s.remaining is None or remaining > s.remaining:  # first sight, or a new window began
                s.window_started = now
                if s.remaining is not None:
                    self._announced = False
            s.limit = limit if limit is not None else s.limit
            s.remaining = remaining

    def delay(self) -> tuple[float, str]:
        """How long the next request should wait, and why (empty when it need not)."""
        with self._lock:
            s = self.state
            if s.remaining is None or not s.limit:
                return 0.0, ""
            reserve = max(1.0, s.limit * self.reserve_fraction)
            if s.remaining > reserve:
                return 0.0, ""
            started = s.window_started if s.window_started is not None else self._clock()
            left = max(0.0, started + self.window_seconds - self._clock())
            if s.remaining <= 0:
                return left + 0.25, f"budget spent ({s.limit} requests per window); waiting {left:.0f}s for it to reset"
            return left / s.remaining, (
                f"{s.remaining} of {s.limit} requests left in this window; spacing requests to last until it resets"
            )

    def acquire(self, log: Any = None, where: object = "") -> None:
        wait, why = self.delay()
        if wait <= 0:
            return
        if log is not None and not self._announced:
            self._announced = True
            log.warning(f"{where}: {self.vendor} rate budget: {why} (slowing down instead of waiting for a 429)")
        self.slept_seconds += wait
        self._sleep(wait)
        with self._lock:  # count the request we are about to send until the vendor tells us better
            if self.state.remaining is not None:
                self.state.remaining -= 1
