"""Command line for the sandbox: `./edu sandbox [--port 8765] [--rows N] ...` (or `python -m edu_assets.sandbox`).

Flags are generated from the vendor apps' knobs, so a new vendor's knobs appear here without
touching this file. Generated files are cached in ~/.cache/edu-assets/sandbox by default, so
restarting the sandbox does not regenerate large exports.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from edu_assets.core.settings import SANDBOX_PORT_DEFAULT

from .registry import ALL_APPS, build_apps
from .server import SandboxServer

DEFAULT_CACHE_DIR = Path("~/.cache/edu-assets/sandbox").expanduser()
PROG = "python -m edu_assets.sandbox"


def _knob_flags() -> dict[str, str]:
    """knob name -> help text, over all vendors (first help text wins)."""
    flags: dict[str, str] = {}
    for cls in ALL_APPS.values():
        for name, knob in cls.KNOBS.items():
            if knob.cli:
                flags.setdefault(name, knob.help)
    return flags


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve every edu-assets vendor emulator on loopback until Ctrl-C or SIGTERM. Vendors "
        "without credentials use it where EDU_SANDBOX_URL points at it (printed at start).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=SANDBOX_PORT_DEFAULT,
                        help=f"port (0 = any free port; default {SANDBOX_PORT_DEFAULT})")
    parser.add_argument("--request-log-size", type=int, default=10_000, metavar="N",
                        help="requests kept in GET /_sandbox/requests, newest last (default 10000)")
    for name, help_text in _knob_flags().items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, default=None, metavar="VALUE", help=help_text
        )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    knobs: dict[str, Any] = {
        name: getattr(args, name) for name in _knob_flags() if getattr(args, name) is not None
    }
    knobs.setdefault("cache_dir", str(DEFAULT_CACHE_DIR))
    try:
        if args.request_log_size < 1:
            raise ValueError(f"--request-log-size must be at least 1, not {args.request_log_size}")
        server = SandboxServer(build_apps(**knobs), host=args.host, port=args.port,
                               log_size=args.request_log_size).start()
    except (ValueError, TypeError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # explicit: SIGINT may be ignored when backgrounded
        signal.signal(signum, lambda *_: stop.set())
    print(f"edu-assets sandbox on {server.url}   (faults, requests, knobs: {server.url}/_sandbox/...)")
    print(f"to use it from Dagster or a run: export EDU_SANDBOX_URL={server.url}")
    for app in server.apps.values():
        print(app.describe())
    print("Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        print("sandbox stopped.", flush=True)
    return 0
