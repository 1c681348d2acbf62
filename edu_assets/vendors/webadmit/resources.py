"""The WebAdMIT resource: owns the base URL, the API key (never shown) and the key's hourly budget."""

from __future__ import annotations

from typing import Any

import dagster as dg

from edu_assets.core.configured import resource_for_mode
from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.http import Log, VendorHTTP
from edu_assets.core.ratebudget import HeaderBudget
from edu_assets.core.redact import register_secret
from edu_assets.core.settings import TEXT, URL, Setting, VendorMode, number, orphaned, set_vars, vendor_mode
from edu_assets.sandbox.credentials import WEBADMIT_API_KEY as SANDBOX_API_KEY
from edu_assets.vendors.webadmit.client import VENDOR, WebAdmitClient

DOMAIN = Setting("WEBADMIT_DOMAIN", TEXT, "api", "your WebAdMIT host: https://<domain>.webadmit.org")
BASE_URL: Setting[str | None] = Setting("WEBADMIT_BASE_URL", URL, None, "the WebAdMIT host, overriding WEBADMIT_DOMAIN")
RATE_WINDOW_SECONDS = Setting("WEBADMIT_RATE_WINDOW_SECONDS", number(0), 3600.0,
                              "the window of the key's request budget (documented: 5,000 an hour)")
RATE_RESERVE_FRACTION = Setting("WEBADMIT_RATE_RESERVE_FRACTION", number(0), 0.2,
                                "below this share of the budget left, requests are spread out")
RATE_PER_SECOND = Setting("WEBADMIT_RATE_PER_SECOND", number(0), 5.0, "requests per second")
SETTINGS: tuple[Setting[Any], ...] = (DOMAIN, BASE_URL, RATE_WINDOW_SECONDS, RATE_RESERVE_FRACTION, RATE_PER_SECOND)
"""WebAdMIT's non-secret settings (WEBADMIT_API_KEY is a secret, read through dg.EnvVar)."""


def webadmit_mode() -> VendorMode:
    """Live when WEBADMIT_API_KEY is set; the host is ``https://<WEBADMIT_DOMAIN or api>.webadmit.org``."""
    credentials = set_vars("WEBADMIT_API_KEY")
    problems = [] if credentials else orphaned(set_vars("WEBADMIT_DOMAIN", "WEBADMIT_BASE_URL"), ["WEBADMIT_API_KEY"])
    base = BASE_URL.get() or f"https://{DOMAIN.get()}.webadmit.org"
    return vendor_mode("webadmit", credentials, base, "WEBADMIT_API_KEY (and WEBADMIT_DOMAIN if yours is not api)",
                       problems)


class WebAdmitResource(dg.ConfigurableResource):
    """WebAdMIT API access. One key covers every user identity its owner has API Access on."""

    base_url: str
    api_key: str
    rate_window_seconds: float = 3600.0  # the documented 5,000 requests per key per hour
    rate_reserve_fraction: float = 0.2  # below this share of the budget left, requests are spread out
    rate_per_second: float = 5.0
    timeout_seconds: float = 60.0

    def client(self, log: Log | None = None) -> WebAdmitClient:
        if not self.base_url:  # not configured or half-configured: say what to set, before any request
            webadmit_mode().require()
        if not self.api_key or not self.base_url:
            raise ConfigError(Where(VENDOR), "WebAdMIT is not configured", hint="set WEBADMIT_API_KEY (and WEBADMIT_DOMAIN)")
        register_secret(self.api_key)
        http = VendorHTTP(
            VENDOR, self.base_url, auth_headers={"x-api-key": self.api_key}, timeout=self.timeout_seconds,
            rate_per_second=self.rate_per_second, log=log,
            budget=HeaderBudget.for_vendor(VENDOR, self.rate_window_seconds, self.rate_reserve_fraction),
        )
        return WebAdmitClient(http)


def webadmit_resource_from_env() -> WebAdmitResource:
    """Live when WEBADMIT_API_KEY is set (read through EnvVar, so the UI shows only its name), the sandbox
    when EDU_SANDBOX_URL selects it; otherwise a resource without a base URL (see ``stellic_resource_from_env``)."""
    mode = webadmit_mode()
    budget = {
        "rate_window_seconds": RATE_WINDOW_SECONDS.get(),
        "rate_reserve_fraction": RATE_RESERVE_FRACTION.get(),
        "rate_per_second": RATE_PER_SECOND.get(),
    }
    return resource_for_mode(WebAdmitResource, mode, live={"api_key": dg.EnvVar("WEBADMIT_API_KEY")},
                             sandbox={"api_key": SANDBOX_API_KEY}, unset={"api_key": ""}, **budget)
