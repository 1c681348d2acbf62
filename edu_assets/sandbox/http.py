"""The sandbox's tiny HTTP model: what an emulated vendor app receives and returns.

Apps never touch sockets. The server turns each HTTP request into a `Request`, asks the app
for a `Response`, and does the wire work (Content-Length, Range, streaming, injected faults).
Keeping this model small and framework-free lets every vendor emulator stay a plain class
that is easy to unit-test without a server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Body",
    "Headers",
    "Request",
    "Response",
    "Router",
    "csv_response",
    "json_response",
    "text_response",
]

Body = bytes | Path | None


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only view of HTTP headers (last value wins)."""

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, tuple[str, str]] = {k.lower(): (k, v) for k, v in pairs}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:  # never print values: they may hold credentials
        return f"Headers({sorted(self)})"


@dataclass
class Request:
    """One parsed HTTP request. `path` is percent-decoded and has no query string."""

    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def arg(self, name: str, default: str | None = None) -> str | None:
        """Last value of a query parameter (what most frameworks return for a scalar)."""
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        """All values of a repeated query parameter (`usem_ids=1&usem_ids=2`)."""
        return list(self.query.get(name, []))

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass
class Response:
    """What an app returns. `body` is bytes, a file `Path` (streamed by the server), or None."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Body = None

    @property
    def content_type(self) -> str:
        return next((v for k, v in self.headers.items() if k.lower() == "content-type"), "")


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return Response(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, data)


def csv_response(body: bytes | Path, status: int = 200, filename: str | None = None) -> Response:
    headers = {"Content-Type": "text/csv; charset=utf-8"}
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return Response(status, headers, body)


def text_response(text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(status, {"Content-Type": content_type}, text.encode("utf-8"))


Handler = Callable[..., Response]


class Router:
    """A path-pattern table: `router.add("GET", "/stellic/exports/{name}", fn)`.

    `{name}` matches one path segment and is passed to the handler as a keyword argument.
    HEAD is served by GET handlers (the server drops the body). `dispatch` returns None when
    no pattern matches so the app can answer with its own 404 shape.
    """

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(
            r"\{(\w+)\}", r"(?P<\1>[^/]+)", re.escape(pattern).replace(r"\{", "{").replace(r"\}", "}")
        )
        self._routes.append((method.upper(), re.compile(f"^{regex}$"), handler))

    def dispatch(self, request: Request, **extra: Any) -> Response | None:
        method = "GET" if request.method == "HEAD" else request.method
        path_matched = False
        for route_method, regex, handler in self._routes:
            match = regex.match(request.path)
            if not match:
                continue
            path_matched = True
            if route_method == method:
                return handler(request, **match.groupdict(), **extra)
        if path_matched:
            return json_response({"success": False, "errors": [{"message": "Method not allowed"}]}, 405)
        return None
