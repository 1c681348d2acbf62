"""WebAdMIT partitions: one per export template, keyed ``<user identity id>-<export id>``.

Templates are dynamic partitions, added and removed by the discovery sensor (``automation.py``) from the
vendor's list of user identities and their exports. Both ids are the vendor's integers, written in ASCII
digits only: ``int()`` would also take other scripts' digits ("२३") and land them under another key.
"""

from __future__ import annotations

import re

import dagster as dg

from edu_assets.core.errors import ConfigError, Where
from edu_assets.vendors.webadmit.client import VENDOR

TEMPLATES = dg.DynamicPartitionsDefinition(name="webadmit_export")
_KEY = re.compile(r"([0-9]+)-([0-9]+)", re.ASCII)


def parse_template_key(key: str) -> tuple[int, int]:
    """``"12-3401"`` -> ``(12, 3401)``, the inverse of ``Template.partition_key``; anything else is a ConfigError naming the key and the expected form."""
    match = _KEY.fullmatch(key)
    if match is None:
        raise ConfigError(
            Where(VENDOR, "export_files", key),
            f"{key!r} is not a WebAdMIT template partition (<user identity id>-<export id>, ASCII digits)",
            hint="pick a partition the template discovery sensor added (webadmit_export), or add one in that form",
        )
    return int(match.group(1)), int(match.group(2))
