"""Code locations the daemon tests serve: a few vendors each, with the production definitions unchanged.

The full location would also start every other vendor's sensors, whose runs these tests do not need. Each
attribute is built on first access (``python_module`` workspaces read it with ``getattr``), so a process
that loads one location does not import the others' assets.

* ``defs``: Stellic and Xporter (the completion sensor and school discovery, ``test_daemon.py``);
* ``exports``: Stellic and SkillsPass, the async-export vendors (backfills, pools, killed runs:
  ``test_daemon_runs.py``).
"""

from __future__ import annotations

from functools import cache
from types import ModuleType

import dagster as dg

from edu_assets.core.executor import EXECUTOR
from edu_assets.core.resources import LakeResource
from edu_assets.vendors import skillspass, stellic, xporter

VENDORS: dict[str, tuple[ModuleType, ...]] = {
    "defs": (stellic, xporter),
    "exports": (stellic, skillspass),
}


@cache
def _location(name: str) -> dg.Definitions:
    return dg.Definitions.merge(
        *(vendor.definitions() for vendor in VENDORS[name]),
        dg.Definitions(resources={"lake": LakeResource.from_env()}, executor=EXECUTOR),
    )


def __getattr__(name: str) -> dg.Definitions:
    if name in VENDORS:
        return _location(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
