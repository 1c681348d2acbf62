"""The SkillsPass resource: owns the base URL and the BLN credentials (key, token, secret; never shown)."""

from __future__ import annotations

import dagster as dg

from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.http import Log, VendorHTTP
from edu_assets.core.redact import register_secret
from edu_assets.core.settings import env, env_float, skillspass_mode
from edu_assets.vendors.skillspass.client import VENDOR, SkillsPassClient

SANDBOX_KEY, SANDBOX_TOKEN, SANDBOX_SECRET = "skillspass-sandbox-key", "skillspass-sandbox-token", "skillspass-sandbox-secret"


def bln_header(key: str, token: str, secret: str) -> str:
    """The ``Authorization`` value of SkillsPass's BLN scheme (user-based API authorization, version 1)."""
    return f"bln type=api, version=1, entity=user, key={key}, token={token}, secret={secret}"


class SkillsPassResource(dg.ConfigurableResource):
    """SkillsPass Organization API access (the export-data APIs need no training-provider id)."""

    base_url: str
    key: str
    token: str
    secret: str
    legacy_types: bool = False  # the tenant runs the older API (ENROLLMENTS instead of ELEARNING_ENROLLMENTS)
    rate_per_second: float = 5.0  # no limit is documented: be polite (SKILLSPASS_RATE_PER_SECOND)
    timeout_seconds: float = 60.0  # the docs warn some calls take up to 4 s

    def client(self, log: Log | None = None) -> SkillsPassClient:
        missing = [n for n in ("key", "token", "secret") if not getattr(self, n)]
        if not self.base_url:  # not configured or half-configured: say what to set, before any request
            skillspass_mode().require()
        if missing or not self.base_url:
            raise ConfigError(
                Where(VENDOR), f"SkillsPass is not fully configured (missing: {', '.join(missing) or 'base URL'})",
                hint="set SKILLSPASS_KEY, SKILLSPASS_TOKEN and SKILLSPASS_SECRET (and SKILLSPASS_ENVIRONMENT)",
            )
        for value in (self.key, self.token, self.secret):
            register_secret(value)
        http = VendorHTTP(
            VENDOR, self.base_url,
            auth_headers={"Authorization": bln_header(self.key, self.token, self.secret)},
            timeout=self.timeout_seconds, rate_per_second=self.rate_per_second, log=log,
        )
        return SkillsPassClient(http)


def skillspass_resource_from_env() -> SkillsPassResource:
    """Live when the credentials are set (read through EnvVar, so the UI shows only their names), the sandbox
    when EDU_SANDBOX_URL selects it; otherwise a resource without a base URL (see ``stellic_resource_from_env``)."""
    mode = skillspass_mode()
    common = {
        "legacy_types": (env("SKILLSPASS_LEGACY_TYPES", "0") or "0").lower() in ("1", "true", "yes"),
        "rate_per_second": env_float("SKILLSPASS_RATE_PER_SECOND", 5.0),
    }
    if mode.error() is not None:
        return SkillsPassResource(base_url="", key="", token="", secret="", **common)
    if mode.live:
        return SkillsPassResource(
            base_url=mode.base_url, key=dg.EnvVar("SKILLSPASS_KEY"), token=dg.EnvVar("SKILLSPASS_TOKEN"),
            secret=dg.EnvVar("SKILLSPASS_SECRET"), **common,
        )
    return SkillsPassResource(base_url=mode.base_url, key=SANDBOX_KEY, token=SANDBOX_TOKEN, secret=SANDBOX_SECRET, **common)
