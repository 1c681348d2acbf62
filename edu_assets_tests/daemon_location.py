"""The code location the daemon test serves: Stellic and Xporter only.

The full location would also start the SkillsPass and WebAdMIT sensors, whose runs the daemon test does
not need; everything here is the production definitions, unchanged.
"""

from __future__ import annotations

import dagster as dg

from edu_assets.core.resources import LakeResource
from edu_assets.vendors import stellic, xporter

defs = dg.Definitions.merge(
    stellic.definitions(),
    xporter.definitions(),
    dg.Definitions(resources={"lake": LakeResource.from_env()}),
)
