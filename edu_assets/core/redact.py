"""Keep secrets out of everything a user can see.

Secrets reach us as tokens, API keys and pre-signed download URLs. Rather than trusting every log call
to remember which values are sensitive, secrets are *registered* once (by the resource that owns them)
and every string that leaves the platform through logs, metadata or exceptions goes through
:func:`redact`. Signed-URL query parameters are masked by name as well, because the signature is
minted by the vendor and never registered.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

_SENSITIVE_PARAMS = {
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "sig",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "password",
    "code",
}
_SENSITIVE_HEADERS = {"authorization", "x-api-key", "cookie", "set-cookie", "proxy-authorization"}

_lock = threading.Lock()
_secrets: set[str] = set()
_AUTH_HEADER_RE = re.compile(r"(?i)\b(bearer|basic|bln|token)\s+[^\s,'\"]+")


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` masks it wherever it appears."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact_url(url: str) -> str:
    """Mask sensitive query parameters of a URL (signed download URLs, keys in query strings)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if not parts.query:
        return url
    query = [
        (k, MASK if k.lower() in _SENSITIVE_PARAMS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: (MASK if k.lower() in _SENSITIVE_HEADERS else v) for k, v in headers.items()}


def redact(text: object) -> str:
    """Mask every registered secret, auth-header value and signed-URL parameter in ``text``."""
    s = str(text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in s:
            s = s.replace(secret, MASK)
    s = _AUTH_HEADER_RE.sub(lambda m: f"{m.group(1)} {MASK}", s)
    return re.sub(r"https?://[^\s'\"<>]+", lambda m: redact_url(m.group(0)), s)


class RedactingFilter(logging.Filter):
    """Rewrites a log record through :func:`redact` (third-party loggers log full request URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        record.msg, record.args = redact(message), None
        return True


def guard_library_loggers(
    names: tuple[str, ...] = ("httpx", "httpcore", "httpcore.http11", "httpcore.connection", "httpcore.proxy"),
) -> None:
    """Attach the redacting filter to libraries that log URLs (httpx logs every request at INFO)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
