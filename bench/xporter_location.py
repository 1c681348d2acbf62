"""The code location of the fleet benchmark: Xporter alone, with the production definitions unchanged.

The full location would also run the other vendors' sensors, whose runs would compete with the fleet's.
"""

from __future__ import annotations

import dagster as dg

from edu_assets.core.executor import EXECUTOR
from edu_assets.core.resources import LakeResource
from edu_assets.vendors import xporter

defs = dg.Definitions.merge(
    xporter.definitions(), dg.Definitions(resources={"lake": LakeResource.from_env()}, executor=EXECUTOR)
)
