"""What a vendor's demo runs, as data: each vendor declares a plan, ``edu_assets/demo.py`` only runs plans.

A plan is a generator of steps. The runner carries out each step before asking for the next, so a plan can
read what earlier steps left behind (the schools a register listed, the partitions a sensor tick added)
through the :class:`DemoContext` it is given, as a user clicking through the UI would. A vendor never
calls ``dg.materialize`` or prints anything itself: how a run is launched, reported and counted is the
runner's, and the same for every vendor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

STILL_RUNNING = "vendor job still running: the sensor will land it"


@dataclass(frozen=True)
class DemoContext:
    """The instance and definitions the demo runs on (a plan reads state from them between steps)."""

    instance: dg.DagsterInstance
    defs: dg.Definitions

    def resource(self, key: str) -> Any:
        return self.defs.resources[key]


@dataclass(frozen=True)
class Run:
    """One run of ``keys`` (with their checks) for one partition, or a range given by ``tags``.

    ``config`` is run config per asset (the runner finds the op); an asset the run does not materialize
    counts as ``missing`` (``deferred``: its vendor job is still running; ``skipped``: nothing to land)."""

    label: str
    keys: tuple[dg.AssetKey, ...]
    partition: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[dg.AssetKey, Mapping[str, Any]] = field(default_factory=dict)
    missing: str = "skipped"
    missing_detail: str = STILL_RUNNING


@dataclass(frozen=True)
class Tick:
    """Evaluate one tick of a sensor as the daemon would, and apply the dynamic partitions it asks for."""

    sensor: str


@dataclass(frozen=True)
class AddPartitions:
    """Add dynamic partitions, as a discovery sensor or a user in the UI would."""

    name: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Skip:
    """An asset the demo leaves out, and why (it is counted and shown, never silently dropped)."""

    key: dg.AssetKey
    partition: str
    detail: str


@dataclass(frozen=True)
class Say:
    """A line for the demo's output (what the next steps cover)."""

    text: str


Step = Run | Tick | AddPartitions | Skip | Say
DemoPlan = Callable[[DemoContext], Iterator[Step]]


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run cover the partitions ``first``..``last`` (a single-run backfill)."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
