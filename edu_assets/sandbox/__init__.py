"""The edu-assets sandbox: realistic vendor API emulators over real HTTP on loopback.

Nobody has vendor credentials in development or CI, so connectors are exercised against
these emulators instead: same URLs shapes, auth, async job flows, pre-signed downloads and
CSV payloads as the vendors document, plus injectable faults (see faults.py).

    from edu_assets.sandbox import start_sandbox
    with start_sandbox(rows=500) as sandbox:
        base = sandbox.base_url("stellic")       # http://127.0.0.1:<port>/stellic

or from a shell: `python -m edu_assets.sandbox --port 8765`.
"""

from __future__ import annotations

from typing import Any

from .app import VendorApp
from .faults import FaultBoard
from .registry import ALL_APPS, build_apps
from .server import SandboxServer

__all__ = ["ALL_APPS", "FaultBoard", "SandboxServer", "VendorApp", "start_sandbox"]


def start_sandbox(port: int = 0, host: str = "127.0.0.1", **knobs: Any) -> SandboxServer:
    """Start a server with every vendor app (knobs as in `registry.build_apps`); stop() it when done."""
    return SandboxServer(build_apps(**knobs), host=host, port=port).start()
