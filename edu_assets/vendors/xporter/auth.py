"""Idaas tokens for Xporter: per-school secrets, the STS call, and the failure modes a school can be in.

Each school that authorises the application gets its own secret; a token minted from it opens that
school's data and nothing else. Secrets come from the environment (``XPORTER_SCHOOL_SECRETS``, a JSON
mapping ``{"<estab>": "<secret>"}``, and ``XPORTER_MANAGEMENT_SECRET``) and/or a secrets file
(``XPORTER_SECRETS_FILE``: ``{"management": "...", "schools": {"<estab>": "..."}}``) that must not be
readable by other users. With none of them set and EDU_SANDBOX_URL set, the sandbox's published secrets
are used.
"""

from __future__ import annotations

import datetime as dt
import json
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edu_assets.core.errors import ConfigError, EduAssetsError, VendorAuthError, Where
from edu_assets.core.http import VendorHTTP
from edu_assets.core.redact import register_secret
from edu_assets.core.settings import TEXT, Setting
from edu_assets.core.tokens import Token
from edu_assets.sandbox.credentials import XPORTER_MANAGEMENT_SECRET as SANDBOX_MANAGEMENT_SECRET
from edu_assets.sandbox.credentials import XPORTER_RELYING_PARTY as SANDBOX_RELYING_PARTY
from edu_assets.sandbox.credentials import xporter_school_secret as sandbox_school_secret
from edu_assets.vendors.xporter.client import parse_time

MANAGEMENT = ""  # the token-cache scope of the management token (it has no estab)
RELYING_PARTY: Setting[str | None] = Setting("XPORTER_RELYING_PARTY", TEXT, None,
                                             "the relying party your application was registered with")


class SchoolUnavailable(EduAssetsError):
    """The school cannot be read right now for a reason that is not a platform fault.

    ``reason`` is ``paused`` (the school is still choosing whom to share: retry later), ``pending`` (not
    yet authorised) or ``revoked``. Assets skip the school's partitions with this status rather than fail.
    """

    def __init__(self, where: Where, reason: str, message: str):
        self.reason = reason
        hints = {
            "paused": "nothing to fix here: the school is finalising whom to include; the partition is retried on the next schedule",
            "pending": "the school has not authorised the application yet; it is picked up once it does",
            "revoked": "the school revoked access; its landed data is kept, and it is no longer scheduled",
        }
        super().__init__(where, f"school authorisation is {reason}: {message}", hints.get(reason))


@dataclass
class Secrets:
    relying_party: str
    management: str | None
    schools: dict[str, str] = field(default_factory=dict)
    sandbox: bool = False

    def school(self, estab: str, where: Where) -> str:
        if self.sandbox:
            return sandbox_school_secret(estab)
        secret = self.schools.get(estab)
        if not secret:
            raise ConfigError(
                where,
                f"no secret is configured for school {estab}",
                hint="add it to XPORTER_SCHOOL_SECRETS or the XPORTER_SECRETS_FILE mapping (see README, Xporter)",
            )
        return secret


def load_secrets(relying_party: str, *, management: str = "", school_secrets: str = "", secrets_file: str = "",
                 sandbox: bool = False) -> Secrets:
    """The secrets a token is minted with, from the resource's fields (``XporterResource``: the environment's
    values as ``dg.EnvVar`` when the definitions loaded) and the secrets file; every value is registered
    for redaction. The sandbox's are its published ones."""
    where = Where("xporter", "secrets")
    if sandbox:
        return Secrets(SANDBOX_RELYING_PARTY, SANDBOX_MANAGEMENT_SECRET, sandbox=True)
    schools: dict[str, str] = {}
    manager: str | None = management or None
    if secrets_file:
        data = _read_secrets_file(Path(secrets_file).expanduser(), where)
        manager = manager or data.get("management")
        schools.update({str(k): str(v) for k, v in (data.get("schools") or {}).items()})
    if school_secrets:
        try:
            mapping = json.loads(school_secrets)
        except ValueError:
            raise ConfigError(
                where,
                "XPORTER_SCHOOL_SECRETS is not valid JSON",
                hint='set it to a JSON object such as {"3281101": "<school secret>"}',
            ) from None
        if not isinstance(mapping, dict):
            raise ConfigError(where, "XPORTER_SCHOOL_SECRETS must be a JSON object of estab -> secret")
        schools.update({str(k): str(v) for k, v in mapping.items()})
    if not relying_party:
        raise ConfigError(
            where,
            "XPORTER_RELYING_PARTY is not set",
            hint="set it to the relying party your application was registered with",
        )
    for value in [manager, *schools.values()]:
        register_secret(value)
    return Secrets(relying_party, manager, schools)


def _read_secrets_file(path: Path, where: Where) -> dict:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(where, f"XPORTER_SECRETS_FILE {path} does not exist") from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ConfigError(
            where,
            f"refusing to read {path}: other users can read it (mode {stat.filemode(mode)})",
            hint=f"restrict it: chmod 600 {path}",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ConfigError(
            where,
            f"{path} is not valid JSON",
            hint='expected {"management": "...", "schools": {"<estab>": "<secret>"}}',
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(where, f"{path} must hold a JSON object")
    return data


def mint_token(http: VendorHTTP, sts_url: str, secrets: Secrets, estab: str) -> Token:
    """Exchange a school's secret (or, for ``estab == ""``, the management secret) for an Idaas token."""
    where = Where("xporter", "sts", f"school {estab}" if estab else "management")
    if estab:
        password = secrets.school(estab, where)
    elif secrets.management:
        password = secrets.management
    else:
        raise ConfigError(
            where,
            "no management secret is configured",
            hint="set XPORTER_MANAGEMENT_SECRET (or 'management' in XPORTER_SECRETS_FILE)",
        )
    body = token_request(estab, secrets.relying_party, password)
    response = http.request("POST", sts_url, where, json_body=body, ok_statuses=(400, 401, 403))
    try:
        payload = response.json()
    except ValueError:
        payload = {"ExceptionMessage": f"HTTP {response.status_code}, not JSON: {response.text[:200]!r}"}
    return parse_token_response(payload, where)


def token_request(estab: str, relying_party: str, password: str) -> dict[str, str]:
    """The STS request body (L110-131): ``estab`` is ``""`` for the management token (L66)."""
    return {
        "estab": estab,
        "relyingParty": relying_party,
        "password": password,
        "thirdpartyid": "XporterOnDemand",
    }


def parse_token_response(payload: Any, where: Where) -> Token:
    """The STS answer (L73-105): a token with its expiry, or the reason there is none.

    Failure is ``token: null`` whatever the HTTP status (undocumented); a message saying the authorisation
    is paused, pending or revoked is the school's state (``SchoolUnavailable``), anything else a credential
    problem (``VendorAuthError``)."""
    payload = payload if isinstance(payload, dict) else {}
    token = payload.get("token")
    if token and isinstance(token, str | int):
        expires = _parse_expiry(payload.get("expires"))
        return Token(str(token), expires, dt.datetime.now(dt.UTC))
    kind = str(payload.get("ExceptionType") or "")
    message = str(payload.get("ExceptionMessage") or payload.get("Message") or "the STS sent no token")
    lowered = (kind + " " + message).lower()
    for reason in ("paused", "revoked", "pending"):
        if reason in lowered:
            raise SchoolUnavailable(where, reason, message)
    raise VendorAuthError(
        where,
        f"the STS refused the secret ({kind or 'error'}: {message})",
        hint="check XPORTER_RELYING_PARTY and this school's secret; a school that re-authorised has a new secret",
    )


def _parse_expiry(raw: object) -> dt.datetime:
    moment = parse_time(raw)
    if moment is None:
        return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)  # undocumented lifetime: be conservative
    return moment
