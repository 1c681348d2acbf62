"""Which vendor emulators exist, and how to build them from one set of knobs.

Adding a vendor is one line in `ALL_APPS`; the CLI flags, `start_sandbox` and the control
endpoints pick it up from there.
"""

from __future__ import annotations

from typing import Any

from .app import VendorApp
from .skillspass import SkillsPassApp
from .stellic import StellicApp
from .webadmit import WebAdMitApp
from .xporter import XporterApp

__all__ = ["ALL_APPS", "build_apps"]

ALL_APPS: dict[str, type[VendorApp]] = {
    "stellic": StellicApp,
    "xporter": XporterApp,
    "skillspass": SkillsPassApp,
    "webadmit": WebAdMitApp,
}


def build_apps(**knobs: Any) -> list[VendorApp]:
    """One instance of every vendor app.

    Plain knobs (`rows=1000`) go to every app that has that knob; a vendor-name keyword
    (`stellic={"rows": 10, "tokens": {...}}`) passes constructor arguments to that app only.
    """
    per_vendor: dict[str, dict[str, Any]] = {
        name: dict(knobs.pop(name)) for name in list(knobs) if name in ALL_APPS
    }
    known = {knob for cls in ALL_APPS.values() for knob in cls.KNOBS}
    unknown = sorted(set(knobs) - known)
    if unknown:
        raise TypeError(f"unknown sandbox knob(s): {unknown}; known: {sorted(known)}")
    apps = []
    for name, cls in ALL_APPS.items():
        kwargs = {k: v for k, v in knobs.items() if k in cls.KNOBS}
        kwargs.update(per_vendor.get(name, {}))
        apps.append(cls(**kwargs))
    return apps
