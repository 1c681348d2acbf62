"""The Stellic resource: owns the base URL, the personal access token (never shown anywhere) and the pace.

``base_url`` is the tenant host (``https://{institution}.stellic.com``): bulk exports live at its root
(``exports/export_data/...``), and every partner API call, ``get_export_url`` included, under the one
partner base ``partner_base`` (``/partnerapi/v1``, partner API document L25-27).

Pace: Stellic documents a rate limit (HTTP 429) but no numbers and no rate headers. Requests are spaced
at ``rate_per_second`` per process (shared by every thread, so a per-student fan-out stays under it
whatever its concurrency); should Stellic send ``X-RateLimit-Limit``/``-Remaining``, the shared
:class:`~edu_assets.core.ratebudget.HeaderBudget` slows down before the budget runs out (the window length,
undocumented, is assumed to be ``rate_window_seconds``); a 429 is retried after its ``Retry-After``.
"""

from __future__ import annotations

import json
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from edu_assets.core.configured import resource_for_mode
from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.http import Log, VendorHTTP
from edu_assets.core.ratebudget import HeaderBudget
from edu_assets.core.redact import register_secret
from edu_assets.core.settings import (
    DATE,
    TEXT,
    URL,
    Kind,
    Setting,
    VendorMode,
    number,
    orphaned,
    set_vars,
    vendor_mode,
)
from edu_assets.sandbox.credentials import STELLIC_TOKEN as SANDBOX_TOKEN
from edu_assets.vendors.stellic.client import PARTNER_BASE, VENDOR, StellicClient

LIVE_RATE_PER_SECOND = 2.0  # a polite default: Stellic publishes no number
SANDBOX_RATE_PER_SECOND = 20.0  # the emulator on loopback

BASE_URL: Setting[str | None] = Setting("STELLIC_BASE_URL", URL, None, "the Stellic host, when it is not "
                                        "https://<STELLIC_INSTITUTION>.stellic.com")
INSTITUTION: Setting[str | None] = Setting("STELLIC_INSTITUTION", TEXT, None,
                                           "your Stellic tenant: https://<institution>.stellic.com")
RATE_PER_SECOND: Setting[float | None] = Setting("STELLIC_RATE_PER_SECOND", number(0), None, "requests per second "
                                                 f"(default {LIVE_RATE_PER_SECOND:g} live, {SANDBOX_RATE_PER_SECOND:g} sandbox)")
SNAPSHOT_START_DATE = Setting("EDU_SNAPSHOT_START_DATE", DATE, "2026-01-01", "the first day of Stellic's snapshot partitions")
WINDOW_START_DATE = Setting("EDU_WINDOW_START_DATE", DATE, "2025-01-01",
                       "the first month/day of Stellic's time-window partitions (appointments, graduation applications)")
ENV_PARAMS = "STELLIC_EXPORT_PARAMS"
EXPORT_PARAMS_SHAPE = '{"<export>": {"<param>": value}}'


def parse_export_params(text: str) -> dict[str, dict[str, Any]]:
    """``STELLIC_EXPORT_PARAMS`` as {export: {param: value}}; any other shape is a ValueError saying the shape
    it needs (the settings check turns it into one ConfigError naming the variable, at definitions load)."""
    mapping = json.loads(text)  # a JSONDecodeError is a ValueError
    if not isinstance(mapping, dict) or any(not isinstance(v, dict) for v in mapping.values()):
        raise ValueError(text)
    return mapping


EXPORT_PARAMS: Setting[dict[str, dict[str, Any]] | None] = Setting(
    ENV_PARAMS, Kind(f"a JSON object of objects, {EXPORT_PARAMS_SHAPE}", parse_export_params), None,
    "per-export parameter values, e.g. {\"plancourse_enrollment_by_term\": {\"school_name\": \"Arts\"}}")
SETTINGS: tuple[Setting[Any], ...] = (BASE_URL, INSTITUTION, RATE_PER_SECOND, SNAPSHOT_START_DATE, WINDOW_START_DATE,
                                      EXPORT_PARAMS)
"""Stellic's non-secret settings (STELLIC_TOKEN is a secret, read through dg.EnvVar)."""


def stellic_mode() -> VendorMode:
    """Live when STELLIC_TOKEN is set; where Stellic is comes from STELLIC_BASE_URL or STELLIC_INSTITUTION."""
    base, institution = BASE_URL.get(), INSTITUTION.get()
    if not base and institution:
        base = f"https://{institution}.stellic.com"
    problems: list[str] = []
    if set_vars("STELLIC_TOKEN"):
        if not base:
            problems.append("STELLIC_TOKEN is set but not where your Stellic is: set STELLIC_INSTITUTION "
                            "(https://<institution>.stellic.com) or STELLIC_BASE_URL")
    else:
        problems += orphaned(set_vars("STELLIC_INSTITUTION", "STELLIC_BASE_URL"), ["STELLIC_TOKEN"])
    return vendor_mode("stellic", set_vars("STELLIC_TOKEN"), base or "",
                       "STELLIC_TOKEN and STELLIC_INSTITUTION (or STELLIC_BASE_URL)", problems)


class StellicResource(dg.ConfigurableResource):
    """Stellic API access. ``token`` is a Personal Access Token sent as ``Authorization: Bearer``."""

    base_url: str
    token: str
    partner_base: str = PARTNER_BASE
    rate_per_second: float = LIVE_RATE_PER_SECOND
    rate_window_seconds: float = 60.0
    timeout_seconds: float = 130.0  # Stellic ends requests at 120 s
    export_params: str = "{}"  # STELLIC_EXPORT_PARAMS as JSON: {export: {param: value}}, run config wins
    _registered: bool = PrivateAttr(default=False)

    def params_for(self, export: str) -> dict[str, Any]:
        """The configured parameter values of one export (what the run config does not set)."""
        return dict(parse_export_params(self.export_params or "{}").get(export) or {})

    def client(self, log: Log | None = None) -> StellicClient:
        if not self.base_url:  # not configured or half-configured: say what to set, before any request
            stellic_mode().require()
            raise ConfigError(
                Where(VENDOR),
                "the Stellic resource has no base URL",
                hint="set STELLIC_INSTITUTION or STELLIC_BASE_URL, then reload the code location",
            )
        register_secret(self.token)
        http = VendorHTTP(
            VENDOR,
            self.base_url,
            auth_headers={"Authorization": f"Bearer {self.token}"},
            timeout=self.timeout_seconds,
            rate_per_second=self.rate_per_second,
            log=log,
            budget=HeaderBudget.for_vendor(VENDOR, self.rate_window_seconds),
        )
        return StellicClient(http, self.partner_base)


def stellic_resource_from_env() -> StellicResource:
    """Live when STELLIC_TOKEN is set (read through EnvVar, so the UI shows only its name), the sandbox when
    EDU_SANDBOX_URL selects it; otherwise a resource without a base URL, so that the definitions load
    before secrets exist and a run fails before any request, saying what to set.
    ``STELLIC_RATE_PER_SECOND`` overrides the pace."""
    mode = stellic_mode()
    params = json.dumps(EXPORT_PARAMS.get() or {})
    return resource_for_mode(
        StellicResource, mode,
        live={"token": dg.EnvVar("STELLIC_TOKEN"), "rate_per_second": _rate(LIVE_RATE_PER_SECOND)},
        sandbox={"token": SANDBOX_TOKEN, "rate_per_second": _rate(SANDBOX_RATE_PER_SECOND)},
        unset={"token": ""},
        export_params=params,
    )


def _rate(default: float) -> float:
    """STELLIC_RATE_PER_SECOND when set, else the mode's polite default."""
    rate = RATE_PER_SECOND.get()
    return default if rate is None else rate
