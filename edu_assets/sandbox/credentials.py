"""Every credential the sandbox publishes: what its emulators accept and what the product sends to them.

The emulators check these values and the product's resources send them when a vendor runs against the
sandbox (no credentials set, ``EDU_SANDBOX_URL`` set). Spelled out once, here, so the two sides cannot
drift apart: a changed token is changed for both, and a test scans the code for stray copies
(``edu_assets_tests/test_sandbox_credentials.py``).

They are not secrets: the sandbox is a loopback emulator, and its banner prints them. This module imports
nothing, so the product can import it when its definitions load without loading the emulators (the package
``edu_assets.sandbox`` imports them lazily, on first use, for the same reason).
"""

from __future__ import annotations

__all__ = [
    "SKILLSPASS_KEY",
    "SKILLSPASS_SECRET",
    "SKILLSPASS_TOKEN",
    "STELLIC_READONLY_TOKEN",
    "STELLIC_TOKEN",
    "WEBADMIT_API_KEY",
    "XPORTER_MANAGEMENT_SECRET",
    "XPORTER_RELYING_PARTY",
    "xporter_school_secret",
]

# Stellic: a personal access token (``Authorization: Bearer``); the read-only one is answered 403.
STELLIC_TOKEN = "stellic-sandbox-token"
STELLIC_READONLY_TOKEN = "stellic-sandbox-readonly-token"

# Xporter on Demand: the relying party the application is registered with, the management secret,
# and one secret per school (see xporter_school_secret).
XPORTER_RELYING_PARTY = "edu-assets.sandbox"
XPORTER_MANAGEMENT_SECRET = "sandbox-management-secret"

# SkillsPass: the BLN scheme's key, token and secret.
SKILLSPASS_KEY = "skillspass-sandbox-key"
SKILLSPASS_TOKEN = "skillspass-sandbox-token"
SKILLSPASS_SECRET = "skillspass-sandbox-secret"

# WebAdMIT: the ``x-api-key`` header.
WEBADMIT_API_KEY = "webadmit-sandbox-key"


def xporter_school_secret(estab: str) -> str:
    """The schoolSecret the sandbox issues to a school (``estab``) when it authorises the application.

    A function rather than a table, so that any school the emulator is told to serve has a secret the
    product can derive without being told about that school.
    """
    return f"sandbox-secret-{estab}"
