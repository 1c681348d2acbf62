"""Stellic's partner API reads, as the emulator serves them: routes from the document, bodies in its shapes.

The routes (base path, path parameters and their allowed values, required query parameters, response
sample keys) come from ``reference/stellic/partner_api.yaml``, extracted from Stellic's partner API
document; the client's catalog is never read. What the document leaves out is the emulator's own and
kept here: the contents of the collapsed sample objects and arrays (``engagement_score: {…}``,
``unmatched_courses: […]``) and the body of the ``progress`` property, which has no sample.

Bodies are pure functions of (student, path parameters, seed), so a re-read gives the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .stellic_exports import COURSE_KINDS, REQUIREMENTS, TERMS
from .synth import PROGRAMS, SUBJECTS, rng_for

REFERENCE = Path(__file__).with_name("reference") / "stellic" / "partner_api.yaml"


@dataclass(frozen=True)
class PartnerRoute:
    """One documented operation: its (possibly assumed) path under the base, and what it accepts."""

    name: str
    lines: str
    path: str
    path_params: Mapping[str, tuple[str, ...]]
    query: tuple[Mapping[str, Any], ...]
    response: str
    sample_keys: tuple[str, ...]  # the result sets of the document's response sample (envelope excluded)


@dataclass(frozen=True)
class PartnerReference:
    base_path: str
    errors: Mapping[int, str]
    routes: Mapping[str, PartnerRoute]


def load_reference(path: Path = REFERENCE) -> PartnerReference:
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    routes = {}
    for r in raw["routes"]:
        sample = r.get("response_sample") or {}
        routes[r["name"]] = PartnerRoute(
            name=r["name"],
            lines=r["lines"],
            path=r["path"],
            path_params={k: tuple(v) for k, v in (r.get("path_params") or {}).items()},
            query=tuple(r.get("query") or ()),
            response=r["response"],
            sample_keys=tuple(k for k in sample if k not in ("success", "status", "url", "errors")),
        )
    return PartnerReference(raw["base_path"], {int(k): v for k, v in raw["errors"].items()}, routes)


PARTNER = load_reference()
STUDENT_READS = ("student_property", "audit_output", "custom_audit_output", "planner_data")


def bad_path_param(route: PartnerRoute, values: Mapping[str, str]) -> str | None:
    """The 400 message for a path parameter outside the document's supported values, or None."""
    for name, allowed in route.path_params.items():
        if values.get(name) not in allowed:
            return (
                f"Invalid value for parameter {name}: {values.get(name)!r}; supported: {', '.join(allowed)}"
            )
    return None


def missing_query(route: PartnerRoute, query: Mapping[str, list[str]]) -> str | None:
    """The 400 message for a missing or unsupported required query parameter, or None."""
    for q in route.query:
        values = [v for v in query.get(q["name"], []) if v.strip()]
        if q.get("required") and not values:
            return f"Missing required parameter: {q['name']}"
        allowed = q.get("allowed")
        if values and allowed and values[-1] not in allowed:
            return f"Invalid value for parameter {q['name']}: {values[-1]!r}; supported: {', '.join(allowed)}"
    return None


# -- bodies (the document collapses every object and array: their contents are the emulator's) -------


@dataclass(frozen=True)
class Student:
    username: str
    id: int
    score: int


def _course(rng: Any) -> dict[str, Any]:
    code, subject = rng.choice(SUBJECTS)
    return {
        "course": f"{code} {rng.randrange(100, 499)}",
        "title": f"{subject} {rng.choice(COURSE_KINDS)}",
        "term": rng.choice(TERMS),
        "units": rng.choice((1, 2, 3, 3, 4, 4, 4)),
    }


def student_body(route: str, student: Student, params: Mapping[str, str], seed: int) -> dict[str, Any]:
    """The JSON body of one student read, in the document's shape for ``route``."""
    rng = rng_for("stellic", "partner", route, student.username, sorted(params.items()), seed)
    prop = params.get("property")
    if route == "student_property":  # L1261-1265: {"engagement_score": {…}, "success": true}
        return {
            prop: {"username": student.username, "id": student.id, "score": student.score},
            "success": True,
        }
    if route == "planner_data":  # L1378-1382: {"future_courses": […], "success": true}
        courses = [
            _course(rng) | {"status": params["course_filter"]} for _ in range(rng.choice((0, 1, 2, 3, 4)))
        ]
        return {"future_courses": courses, "success": True}
    # L1297-1303 / L1341-1347: {"unmatched_courses": […], "counts_for": […], "success": true}
    if prop == "unmatched":
        unmatched = [_course(rng) for _ in range(rng.choice((0, 0, 1, 2, 3)))]
        counts_for = [
            {"course": c["course"], "requirement": rng.choice(REQUIREMENTS), "program": rng.choice(PROGRAMS)}
            for c in unmatched
            if rng.random() < 0.5
        ]
        return {"unmatched_courses": unmatched, "counts_for": counts_for, "success": True}
    # property "progress": the document has no sample (its "Example" shows unmatched only); one plausible shape
    progress = []
    for req in rng.sample(REQUIREMENTS, rng.randrange(1, 4)):
        required = rng.choice((3, 4, 6, 8, 12))
        done = rng.randrange(0, required + 1)
        progress.append(
            {
                "requirement": req,
                "program": rng.choice(PROGRAMS),
                "units_required": required,
                "units_completed": done,
                "complete": done >= required,
            }
        )
    return {"progress": progress, "success": True}
