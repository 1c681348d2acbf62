"""The code location of the fleet benchmark: Xporter alone, with the production definitions unchanged but
for one sensor.

The full location would also run the other vendors' sensors, whose runs would compete with the fleet's. The
fleet is the schools' daily snapshots, so Xporter's filter discovery sensor is left out too: for 500 new
schools it queues ~140 runs of the filter-partitioned endpoints (aspects, marksheets, UDFs...) into the same
``xporter`` pool, which are a different load (measure them on their own).
"""

from __future__ import annotations

import dagster as dg

from edu_assets.core.executor import EXECUTOR
from edu_assets.core.resources import LakeResource
from edu_assets.vendors import xporter

_xporter = xporter.definitions()
defs = dg.Definitions(
    assets=_xporter.assets,
    jobs=_xporter.jobs,
    sensors=[s for s in _xporter.sensors or () if s.name != "xporter_filter_discovery"],
    schedules=_xporter.schedules,
    resources={**(_xporter.resources or {}), "lake": LakeResource.from_env()},
    executor=EXECUTOR,
)
