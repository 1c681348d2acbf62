"""Base class for an emulated vendor API, and the knob (runtime setting) machinery.

Each vendor emulator (Stellic today; Xporter, SkillsPass, WebAdMIT next) subclasses
`VendorApp`, declares its knobs and vendor-specific fault kinds, and implements `handle`.
Everything generic (sockets, faults, request log, control endpoints) lives in server.py so a
new vendor is only its own routes and data.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .faults import FaultBoard
from .http import Request, Response, json_response

if TYPE_CHECKING:
    from .server import SandboxServer

__all__ = ["Knob", "VendorApp", "nonneg_float", "nonneg_int"]


def nonneg_int(value: Any) -> int:
    if isinstance(value, bool) or int(value) != float(value) or int(value) < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return int(value)


def nonneg_float(value: Any) -> float:
    if isinstance(value, bool) or float(value) < 0:
        raise ValueError(f"expected a non-negative number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Knob:
    """A runtime setting: its default, how to parse a value given as text/JSON, and a help line."""

    default: Any
    parse: Callable[[Any], Any]
    help: str
    cli: bool = True  # offered as a `python -m edu_assets.sandbox` flag


class VendorApp:
    """One emulated vendor, mounted by the server under `/<name>/` (plus `extra_prefixes`).

    Knobs become instance attributes (`app.rows`), can be passed to the constructor, changed
    with `set_knobs` or `POST /_sandbox/knobs/<name>`, and are listed by `knobs()`.
    """

    name: ClassVar[str] = ""
    extra_prefixes: ClassVar[tuple[str, ...]] = ()
    FAULT_KINDS: ClassVar[frozenset[str]] = frozenset()
    ACTIONS: ClassVar[frozenset[str]] = frozenset()  # methods callable over POST /_sandbox/actions/<name>/<action>
    JOB_ACTIONS: ClassVar[frozenset[str]] = frozenset({"hold_jobs", "release_jobs"})  # for vendors with jobs
    KNOBS: ClassVar[dict[str, Knob]] = {
        "latency": Knob(0.0, nonneg_float, "seconds of delay added to every request"),
    }

    def __init__(self, **knobs: Any) -> None:
        self.server: SandboxServer | None = None
        self.board = FaultBoard()  # replaced by the server's shared board in bind()
        for knob_name, knob in self.KNOBS.items():
            setattr(self, knob_name, copy.deepcopy(knob.default))
        self.set_knobs(**knobs)

    # -- wiring -----------------------------------------------------------------------------

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Path prefixes routed to this app, e.g. ('/stellic', '/stellic-files')."""
        return (f"/{self.name}", *self.extra_prefixes)

    def bind(self, server: SandboxServer) -> None:
        self.server = server
        self.board = server.faults

    @property
    def server_url(self) -> str:
        if self.server is None:
            raise RuntimeError(f"{self.name} app is not mounted on a running SandboxServer")
        return self.server.url

    @property
    def base_url(self) -> str:
        return f"{self.server_url}/{self.name}"

    # -- knobs ------------------------------------------------------------------------------

    def knobs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.KNOBS}

    def set_knobs(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(self.KNOBS))
        if unknown:
            raise ValueError(f"unknown knob(s) for {self.name}: {unknown}; known: {sorted(self.KNOBS)}")
        parsed = {}
        for knob_name, value in values.items():
            try:
                parsed[knob_name] = self.KNOBS[knob_name].parse(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"bad value for knob {knob_name!r}: {exc}") from None
        for knob_name, value in parsed.items():
            setattr(self, knob_name, value)

    # -- behaviour subclasses provide ---------------------------------------------------------

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def error_response(self, status: int, message: str, request: Request) -> Response:
        """The vendor's own error shape, used by the server for injected 429/500 faults."""
        return json_response({"error": message}, status)

    def reset(self) -> None:
        """Forget per-run state (jobs, sessions). Knobs and cached files are kept."""

    # -- ordering controls for tests (vendors with asynchronous jobs) --------------------------

    def hold_jobs(self) -> dict[str, bool]:
        """Keep this vendor's export jobs from finishing until :meth:`release_jobs`, whatever their delay.

        Tests use it to order events ("the run gave up waiting, then the job finished") without a clock.
        """
        self._job_store().hold()
        return {"held": True}

    def release_jobs(self) -> dict[str, bool]:
        self._job_store().release()
        return {"held": False}

    def _job_store(self) -> Any:
        store = getattr(self, "jobs", None)
        if store is None:
            raise ValueError(f"{self.name} has no asynchronous jobs to hold")
        return store

    def close(self) -> None:
        """Release resources (threads, temp dirs) when the server stops."""

    def describe(self) -> str:
        """One human line for the CLI banner: how to reach and authenticate against this vendor."""
        return f"{self.name}: {self.base_url}"
