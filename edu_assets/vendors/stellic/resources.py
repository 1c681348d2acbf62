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

import dagster as dg
from pydantic import PrivateAttr

from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.http import Log, VendorHTTP
from edu_assets.core.ratebudget import HeaderBudget
from edu_assets.core.redact import register_secret
from edu_assets.core.settings import env_float, stellic_mode
from edu_assets.vendors.stellic.client import PARTNER_BASE, VENDOR, StellicClient

SANDBOX_TOKEN = "stellic-sandbox-token"
LIVE_RATE_PER_SECOND = 2.0  # a polite default: Stellic publishes no number
SANDBOX_RATE_PER_SECOND = 20.0  # the emulator on loopback


class StellicResource(dg.ConfigurableResource):
    """Stellic API access. ``token`` is a Personal Access Token sent as ``Authorization: Bearer``."""

    base_url: str
    token: str
    partner_base: str = PARTNER_BASE
    rate_per_second: float = LIVE_RATE_PER_SECOND
    rate_window_seconds: float = 60.0
    timeout_seconds: float = 130.0  # Stellic ends requests at 120 s
    _registered: bool = PrivateAttr(default=False)

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
    if mode.error() is not None:
        return StellicResource(base_url="", token="")
    if mode.live:
        return StellicResource(
            base_url=mode.base_url,
            token=dg.EnvVar("STELLIC_TOKEN"),
            rate_per_second=env_float("STELLIC_RATE_PER_SECOND", LIVE_RATE_PER_SECOND),
        )
    return StellicResource(
        base_url=mode.base_url,
        token=SANDBOX_TOKEN,
        rate_per_second=env_float("STELLIC_RATE_PER_SECOND", SANDBOX_RATE_PER_SECOND),
    )
