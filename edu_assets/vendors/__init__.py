"""The vendors, gathered: their modes (``./edu status``) and every setting the code location validates.

core/ names no vendor, so the lists of vendors live here. Each vendor's ``resources.py`` declares its mode
function and its settings table; they are imported when asked for, not when this package is imported
(importing one vendor's module must not import the others').
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from edu_assets.core.settings import CORE_SETTINGS, Setting, VendorMode, load_settings, settings_problems

VENDORS = ("stellic", "xporter", "skillspass", "webadmit")


def _resources(vendor: str) -> Any:
    return import_module(f"edu_assets.vendors.{vendor}.resources")


def vendor_modes() -> list[VendorMode]:
    """Every vendor with whether it is live, sandboxed or not configured, and why (``./edu status``)."""
    return [getattr(_resources(v), f"{v}_mode")() for v in VENDORS]


def all_settings() -> tuple[Setting[Any], ...]:
    """The declarative table of every non-secret setting: the platform's, then each vendor's."""
    return CORE_SETTINGS + tuple(s for v in VENDORS for s in _resources(v).SETTINGS)


def setting_problems() -> list[str]:
    """Every invalid setting, each naming its variable and the type it expects (``./edu status``)."""
    return settings_problems(all_settings())


def check_all_settings() -> None:
    """One ConfigError naming every invalid setting, else every setting's value kept as loaded
    (``core/settings.load_settings``); the code location calls it before building anything."""
    load_settings(all_settings())
