"""The sandbox in its own process, as a vendor would be, for benchmarks.

In the benchmark's own process the emulators would compete with the client for the GIL, and the figures
would be of the emulators' JSON encoding.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def sandbox_process(request_log_size: int = 10_000) -> Iterator[str]:
    """Start ``python -m edu_assets.sandbox`` on a free port; yield its URL; stop it afterwards.

    ``request_log_size``: requests the sandbox keeps for :func:`request_log` (the oldest are dropped)."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "edu_assets.sandbox", "--port", str(port),
                               "--request-log-size", str(request_log_size)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def control(url: str, path: str, body: Any = None) -> Any:
    """POST to a ``/_sandbox/...`` control endpoint (knobs, actions) and return its JSON."""
    response = httpx.post(f"{url}/_sandbox/{path}", json=body if body is not None else {}, timeout=60)
    response.raise_for_status()
    return response.json()


def request_log(url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/_sandbox/requests", timeout=60)
    response.raise_for_status()
    return response.json()["requests"]


def clear_request_log(url: str) -> None:
    httpx.delete(f"{url}/_sandbox/requests", timeout=60).raise_for_status()


def xporter_requests_by_kind(requests: list[dict[str, Any]]) -> Counter[str]:
    """Xporter requests as token (STS), register (GetXodSchools) and data (a school's endpoint)."""
    kinds: Counter[str] = Counter()
    for r in requests:
        path = r["path"]
        if not path.startswith("/xporter"):
            continue
        kinds["token" if "/idaas/" in path else "register" if "GetXodSchools" in path else "data"] += 1
    return kinds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/_sandbox/", timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"the sandbox did not start at {url}")
