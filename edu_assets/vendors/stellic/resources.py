"""The Stellic resource: owns the base URL and the personal access token (never shown anywhere)."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.http import Log, VendorHTTP
from edu_assets.core.redact import register_secret
from edu_assets.core.settings import stellic_mode
from edu_assets.vendors.stellic.client import VENDOR, StellicClient

SANDBOX_TOKEN = "stellic-sandbox-token"


class StellicResource(dg.ConfigurableResource):
    """Stellic API access. ``token`` is a Personal Access Token sent as ``Authorization: Bearer``."""

    base_url: str
    token: str
    status_path: str = "exports/get_export_url"
    rate_per_second: float = 2.0
    timeout_seconds: float = 130.0  # Stellic ends requests at 120 s
    _registered: bool = PrivateAttr(default=False)

    def client(self, log: Log | None = None) -> StellicClient:
        if not self.base_url:  # not configured or half-configured: say what to set, before any request
            stellic_mode().require()
            raise ConfigError(Where(VENDOR), "the Stellic resource has no base URL",
                              hint="set STELLIC_INSTITUTION or STELLIC_BASE_URL, then reload the code location")
        register_secret(self.token)
        http = VendorHTTP(
            VENDOR,
            self.base_url,
            auth_headers={"Authorization": f"Bearer {self.token}"},
            timeout=self.timeout_seconds,
            rate_per_second=self.rate_per_second,
            log=log,
        )
        return StellicClient(http, self.status_path)


def stellic_resource_from_env() -> StellicResource:
    """Live when STELLIC_TOKEN is set (read through EnvVar, so the UI shows only its name), the sandbox when
    EDU_SANDBOX_URL selects it; otherwise a resource without a base URL, so that the definitions load
    before secrets exist and a run fails before any request, saying what to set."""
    mode = stellic_mode()
    if mode.error() is not None:
        return StellicResource(base_url="", token="")
    if mode.live:
        return StellicResource(base_url=mode.base_url, token=dg.EnvVar("STELLIC_TOKEN"))
    return StellicResource(base_url=mode.base_url, token=SANDBOX_TOKEN)
