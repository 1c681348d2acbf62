"""S3-style pre-signed download URLs: `?Expires=<epoch seconds>&Signature=<hmac>`.

Stellic (and WebAdMIT) hand out short-lived object-store URLs for finished exports. The
connector must download before `Expires` and re-poll for a fresh URL otherwise; the sandbox
checks both the signature and the expiry and answers with S3's XML errors, so that code path
is exercised for real. The secret is random per app instance and never leaves the process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import quote

from .http import Request, Response

__all__ = ["UrlSigner", "s3_error"]

_MISMATCH = "The request signature we calculated does not match the signature you provided."


def s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    return Response(status, {"Content-Type": "application/xml"}, body)


class UrlSigner:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def signature(self, path: str, expires: int) -> str:
        message = f"GET\n{path}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def url(self, server_url: str, path: str, ttl: float, now: float | None = None) -> str:
        """A URL for `path` valid for `ttl` seconds (negative ttl = already expired)."""
        expires = int((time.time() if now is None else now) + ttl)
        return f"{server_url}{quote(path)}?Expires={expires}&Signature={self.signature(path, expires)}"

    def check(self, request: Request, now: float | None = None) -> Response | None:
        """None if the request carries a valid, unexpired signature, else the S3 403 to send.
        Like S3, the signature is checked first: a tampered Expires is a signature mismatch."""
        expires, signature = request.arg("Expires", ""), request.arg("Signature", "")
        if not (expires and expires.isdigit() and signature):
            return s3_error(403, "SignatureDoesNotMatch", _MISMATCH)
        if not hmac.compare_digest(self.signature(request.path, int(expires)), signature):
            return s3_error(403, "SignatureDoesNotMatch", _MISMATCH)
        if (time.time() if now is None else now) > int(expires):
            return s3_error(403, "AccessDenied", "Request has expired")
        return None
