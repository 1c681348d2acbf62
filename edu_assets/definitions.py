"""The Dagster code location: every vendor's definitions plus the shared lake resource.

``dagster dev`` (via ``workspace.yaml``) and the ``edu-assets`` CLI load ``defs`` from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from edu_assets.core.executor import EXECUTOR
from edu_assets.core.inputs import INPUT_MANAGER_KEY, LakeInputManager
from edu_assets.core.resources import LakeResource
from edu_assets.vendors import check_all_settings, skillspass, stellic, webadmit, xporter


def selection_for(defs: dg.Definitions, keys: Sequence[dg.AssetKey]) -> list[Any]:
    """The asset definitions for ``keys`` (with the checks they carry) plus any standalone checks of those
    assets, unbound, ready for ``dg.materialize``.

    ``dg.materialize`` binds ``defs.resources`` itself, so it needs the definitions as declared, not the
    repository's resource-bound copies.
    """
    wanted = set(keys)
    assets = [a for a in (defs.assets or []) if isinstance(a, dg.AssetsDefinition) and wanted & set(a.keys)]
    found = [c for c in (defs.asset_checks or []) if any(ck.asset_key in wanted for ck in c.check_keys)]
    return [*assets, *found]


def build_definitions() -> dg.Definitions:
    """Every vendor's definitions and the lake's, after validating every setting: a bad value fails the code
    location's load (``dagster dev`` and the daemon show it) with one error naming each bad variable, rather
    than a bare ValueError at some run's first request."""
    check_all_settings()
    return dg.Definitions.merge(
        stellic.definitions(),
        xporter.definitions(),
        skillspass.definitions(),
        webadmit.definitions(),
        # "lake_input" loads landed partitions into a user's own assets (core/inputs.py: landed(...))
        dg.Definitions(resources={"lake": LakeResource.from_env(), INPUT_MANAGER_KEY: LakeInputManager()},
                       executor=EXECUTOR),
    )


defs = build_definitions()
