"""Short-lived access tokens, cached per scope (e.g. per school) with their expiry and refreshed ahead of it.

Vendors such as Xporter issue one token per school from that school's secret. The cache is keyed by
that scope and hands a token only to the scope it was minted for, so one school's token can never be
sent for another. Tokens are registered with the redactor as soon as they are minted.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass

from edu_assets.core.redact import register_secret


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: dt.datetime  # UTC
    issued_at: dt.datetime  # UTC, when we received it

    def seconds_left(self, now: dt.datetime | None = None) -> float:
        return (self.expires_at - (now or dt.datetime.now(dt.UTC))).total_seconds()


class TokenCache:
    """``get(scope)`` returns a valid token for ``scope``, minting one when missing or about to expire.

    ``refresh_margin`` is how long before expiry a token is replaced: a token is never handed out for a
    request that could outlive it. Thread-safe: concurrent page fetches share one token per scope.
    """

    def __init__(self, mint: Callable[[str], Token], refresh_margin_seconds: float = 300.0):
        self._mint = mint
        self._margin = refresh_margin_seconds
        self._tokens: dict[str, Token] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.minted = 0  # how many tokens this cache has fetched (visible in metadata and tests)

    def _lock(self, scope: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(scope, threading.Lock())

    def get(self, scope: str) -> str:
        with self._lock(scope):
            token = self._tokens.get(scope)
            # Refresh ahead of expiry: by the margin, or by half the lifetime for very short-lived tokens.
            if token is None or token.seconds_left() <= self._margin_for(token):
                token = self._fetch(scope)
            return token.value

    def refresh(self, scope: str, stale: str | None = None) -> str:
        """Mint a new token after the vendor rejected ``stale`` (401), unless another thread already
        replaced it: concurrent page requests that all see the same 401 share one refresh."""
        with self._lock(scope):
            current = self._tokens.get(scope)
            if current is not None and stale is not None and current.value != stale:
                return current.value
            return self._fetch(scope).value

    def forget(self, scope: str) -> None:
        with self._lock(scope):
            self._tokens.pop(scope, None)

    def _fetch(self, scope: str) -> Token:
        token = self._mint(scope)
        register_secret(token.value)
        self._tokens[scope] = token
        self.minted += 1
        return token

    def _margin_for(self, token: Token) -> float:
        lifetime = (token.expires_at - token.issued_at).total_seconds()
        return min(self._margin, max(lifetime, 0.0) / 2)
