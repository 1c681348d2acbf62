"""The edu-assets sandbox: realistic vendor API emulators over real HTTP on loopback.

Nobody has vendor credentials in development or CI, so connectors are exercised against
these emulators instead: same URLs shapes, auth, async job flows, pre-signed downloads and
CSV payloads as the vendors document, plus injectable faults (see faults.py).

    from edu_assets.sandbox import start_sandbox
    with start_sandbox(rows=500) as sandbox:
        base = sandbox.base_url("stellic")       # http://127.0.0.1:<port>/stellic

or from a shell: `python -m edu_assets.sandbox --port 8765`.

The names below are imported on first use (PEP 562), not with the package: the product imports
`edu_assets.sandbox.credentials` when its definitions load, and importing a submodule runs this
file first; loading every emulator (a quarter of a second) there would slow down every process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import VendorApp
    from .faults import FaultBoard
    from .registry import ALL_APPS
    from .server import SandboxServer

__all__ = ["ALL_APPS", "FaultBoard", "SandboxServer", "VendorApp", "start_sandbox"]

_LAZY = {"ALL_APPS": ".registry", "FaultBoard": ".faults", "SandboxServer": ".server", "VendorApp": ".app"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def start_sandbox(port: int = 0, host: str = "127.0.0.1", **knobs: Any) -> SandboxServer:
    """Start a server with every vendor app (knobs as in `registry.build_apps`); stop() it when done."""
    from .registry import build_apps
    from .server import SandboxServer

    return SandboxServer(build_apps(**knobs), host=host, port=port).start()
