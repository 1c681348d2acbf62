"""The main job: materialize every asset for a sensible default partition set, then summarise the lake.

Used by ``./edu demo``. Runs are recorded in the local Dagster instance (``.dagster/``), so ``./edu dev``
shows them afterwards. Exports that need a value only a user can choose (requirement names, a school)
get the catalog's example value when the vendor is sandboxed; against a live vendor they come from
``STELLIC_EXPORT_PARAMS`` and are skipped with a note when missing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg

from edu_assets.core.catalog import Catalog, format_summary
from edu_assets.core.months import last_months
from edu_assets.core.settings import LakeSettings, stellic_mode
from edu_assets.definitions import selection_for
from edu_assets.vendors.stellic.assets import asset_key
from edu_assets.vendors.stellic.catalog import ExportSpec, env_params, load_catalog
from edu_assets.vendors.stellic.partitions import PARTITIONINGS


@dataclass
class Outcome:
    key: str
    partition: str
    status: str
    rows: int | None = None
    detail: str = ""


def _demo_params(spec: ExportSpec, sandboxed: bool) -> dict | None:
    """Params for the demo run, or None when a required value is unknown (live vendor, not configured)."""
    params: dict = {}
    for p in spec.required_params:
        if p.name in env_params(spec.name):
            continue
        if not sandboxed:
            return None
        params[p.name] = p.example
    return params


def run_demo(instance: dg.DagsterInstance, defs: dg.Definitions, *, echo=print) -> list[Outcome]:
    """Every vendor, one after the other."""
    return (run_stellic_demo(instance, defs, echo=echo) + run_xporter_demo(instance, defs, echo=echo)
            + run_skillspass_demo(instance, defs, echo=echo) + run_webadmit_demo(instance, defs, echo=echo))


def run_stellic_demo(instance: dg.DagsterInstance, defs: dg.Definitions, *, echo=print) -> list[Outcome]:
    sandboxed = not stellic_mode().live
    specs = load_catalog()
    groups: dict[tuple[str, str], list[ExportSpec]] = defaultdict(list)
    for spec in specs:
        part = PARTITIONINGS[spec.partitioning]
        for key in part.demo_keys():
            groups[(spec.partitioning, key)].append(spec)
        if part.dynamic_name:
            instance.add_dynamic_partitions(part.dynamic_name, part.demo_keys())

    outcomes: list[Outcome] = []
    for (kind, partition), group in groups.items():
        selected: list[ExportSpec] = []
        config: dict = {}
        for spec in group:
            params = _demo_params(spec, sandboxed)
            if params is None:
                outcomes.append(Outcome(asset_key(spec).to_user_string(), partition, "skipped",
                                        detail="needs user-chosen params (STELLIC_EXPORT_PARAMS)"))
                continue
            selected.append(spec)
            if params:
                config[_op_for(defs, asset_key(spec))] = {"config": {"params": params}}
        if not selected:
            continue
        keys = [asset_key(s) for s in selected]
        started = time.monotonic()
        result = dg.materialize(
            selection_for(defs, keys),
            partition_key=partition,
            instance=instance,
            resources=defs.resources,
            run_config={"ops": config, "loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            tags={"edu/vendor": "stellic", "edu/trigger": "demo"},
            raise_on_error=False,
        )
        elapsed = time.monotonic() - started
        outcomes += _outcomes(result, keys, partition, defs)
        for o in outcomes[-len(keys):]:
            mark = {"landed": "ok  ", "deferred": "wait", "failed": "FAIL"}.get(o.status, o.status)
            rows = f"{o.rows:>8,} rows" if o.rows is not None else " " * 13
            echo(f"  {mark} {o.key:<45} {kind:>15}={partition:<22} {rows}  {o.detail}")
        echo(f"       ({len(keys)} asset(s) in {elapsed:.1f}s)")
    return outcomes + run_stellic_partner_demo(instance, defs, echo=echo)


def run_stellic_partner_demo(instance: dg.DagsterInstance, defs: dg.Definitions, *, echo=print,
                             max_students: int = 20) -> list[Outcome]:
    """The partner API reads, today: the student list first, then each per-student read's demo partitions
    (catalog ``demo``) over the list's first ``max_students`` students, one run each."""
    from edu_assets.vendors.stellic.catalog import load_partner_reads
    from edu_assets.vendors.stellic.partitions import today
    from edu_assets.vendors.stellic.partner import partition_key, read_key

    outcomes: list[Outcome] = []
    for spec in sorted(load_partner_reads()[0], key=lambda r: r.kind != "bulk"):  # the list before its readers
        config = {"max_students": max_students} if spec.kind == "per_student" else {}
        for view in spec.demo:
            key, partition = read_key(spec), str(partition_key(spec, view, today().isoformat()))
            started = time.monotonic()
            result = dg.materialize(
                selection_for(defs, [key]), partition_key=partition, instance=instance, resources=defs.resources,
                run_config={"ops": {_op_for(defs, key): {"config": config}},
                            "loggers": {"console": {"config": {"log_level": "ERROR"}}}},
                tags={"edu/vendor": "stellic", "edu/trigger": "demo"}, raise_on_error=False,
            )
            (o,) = _outcomes(result, [key], partition, defs)
            outcomes.append(o)
            mark = {"landed": "ok  ", "deferred": "wait", "failed": "FAIL"}.get(o.status, o.status)
            rows = f"{o.rows:>8,} rows" if o.rows is not None else " " * 13
            echo(f"  {mark} {o.key:<45} {spec.dim:>15}={partition:<22} {rows}  {o.detail}"
                 f"  ({time.monotonic() - started:.1f}s)")
    return outcomes


def _outcomes(result: dg.ExecuteInProcessResult, keys: Iterable[dg.AssetKey], partition: str,
              defs: dg.Definitions, *, missing: str = "deferred",
              missing_detail: str = "vendor job still running: the sensor will land it") -> list[Outcome]:
    """One outcome per asset key: landed (rows summed over the run's partitions), failed, or ``missing``."""
    rows: dict[dg.AssetKey, int] = defaultdict(int)
    for event in result.get_asset_materialization_events():
        value = event.materialization.metadata.get("dagster/row_count")
        rows[event.asset_key] += int(value.value) if value is not None else 0
    failures = {e.step_key: e for e in result.all_events if e.is_step_failure}
    out = []
    for key in keys:
        name = key.to_user_string()
        op = _op_for(defs, key)
        if key in rows:
            out.append(Outcome(name, partition, "landed", rows[key]))
        elif op in failures:
            err = failures[op].step_failure_data.error
            while err is not None and err.cause is not None:  # the vendor's words are in the cause
                err = err.cause
            msg = err.message.strip().splitlines()[-1] if err else "failed"
            out.append(Outcome(name, partition, "failed", detail=msg[:300]))
        else:
            out.append(Outcome(name, partition, missing, detail=missing_detail))
    return out


def _op_for(defs: dg.Definitions, key: dg.AssetKey) -> str:
    return next(a.node_def.name for a in selection_for(defs, [key]) if isinstance(a, dg.AssetsDefinition))


def run_xporter_demo(instance: dg.DagsterInstance, defs: dg.Definitions, *, echo=print, months: int = 2) -> list[Outcome]:
    """Discover schools as the sensor would, then per school: every snapshot endpoint in one run and the last
    ``months`` months of every date-range endpoint in one run (the per-student and per-staff ones fan out over
    the people the snapshots landed); then, as the filter-discovery sensor would, the lookups' values become
    partitions and each filtered job lands one partition per school (its first value, the current school
    year, the key stages); plus the register and management assets. Assessment Results, whose filter a
    person chooses in run config, is left out (as the schedules leave it out)."""
    from edu_assets.vendors.xporter.assets import asset_key as xkey
    from edu_assets.vendors.xporter.automation import by_partitioning as scheduled
    from edu_assets.vendors.xporter.automation import current_value, xporter_filter_discovery
    from edu_assets.vendors.xporter.monitoring import SCHOOLS
    from edu_assets.vendors.xporter.partitions import ESTAB_PARTITIONS

    xporter = defs.resources["xporter"]
    schools = [s.estab for s in xporter.schools() if s.status == "authorised"]
    instance.add_dynamic_partitions(ESTAB_PARTITIONS, schools)
    by_partitioning = scheduled()  # scheduled endpoints only: no test endpoint, no run-config filter
    repo_keys = set(defs.get_repository_def().assets_defs_by_key)
    monitoring = [k for k in repo_keys if k.path[0] == "xporter" and (k == SCHOOLS or k.path[1].startswith("management_"))]
    unpartitioned = [k for k in monitoring if defs.get_assets_def(k).partitions_def is None]
    per_school = [k for k in monitoring if k not in unpartitioned]

    def keys_of(name: str) -> list[dg.AssetKey]:
        return [xkey(e, t) for e in by_partitioning.get(name, (None, []))[1] for t in e.tables]

    snapshot, monthly = keys_of("estab"), keys_of("estab_month")
    window = last_months(months)
    first, today = window[0], window[-1]
    echo(f"\nxporter: {len(schools)} authorised school(s): {', '.join(schools)}")

    outcomes: list[Outcome] = []

    def run(label: str, keys: list[dg.AssetKey], partition: str | None, tags: dict[str, str] | None = None) -> None:
        outcomes.extend(_run_group(instance, defs, "xporter", label, keys, partition, tags, echo=echo,
                                   missing_detail="not authorised for this school (see the asset's observations)"))

    run("xporter register and management endpoints", unpartitioned, None)
    for estab in schools:
        run(f"xporter snapshot endpoints, school {estab}", snapshot, estab)
        run(f"xporter management endpoints, school {estab}", per_school, estab)
        run(f"xporter date-range endpoints, school {estab}, {first:%Y-%m}..{today:%Y-%m}", monthly, None,
            {"dagster/asset_partition_range_start": f"{estab}|{first.isoformat()}",
             "dagster/asset_partition_range_end": f"{estab}|{today.isoformat()}"})
    # the filter-discovery sensor's tick: the lookups the snapshots landed become partitions
    tick = xporter_filter_discovery(dg.build_sensor_context(instance=instance, definitions=defs))
    for request in getattr(tick, "dynamic_partitions_requests", None) or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    moment = dt.datetime.now(dt.UTC)
    for name, (partitioning, _) in sorted(by_partitioning.items()):
        if name in ("estab", "estab_month"):
            continue
        for estab in schools:
            if partitioning.per_school_values:
                values = [k for k in instance.get_dynamic_partitions(partitioning.dynamic_name)
                          if k.startswith(f"{estab}:")]
                if not values:
                    echo(f"  skip xporter {name}, school {estab}: its lookup published no values")
                    continue
                partition = (str(dg.MultiPartitionKey({str(partitioning.dimension): values[0], "month": today.isoformat()}))
                             if partitioning.monthly else values[0])
            else:
                second = current_value(partitioning, moment)
                assert second is not None
                partition = str(dg.MultiPartitionKey({"estab": estab, str(partitioning.dimension): second[0]}))
            run(f"xporter endpoints by {name}, school {estab}", keys_of(name), partition)
    return outcomes


def _run_group(
    instance: dg.DagsterInstance, defs: dg.Definitions, vendor: str, label: str, keys: list[dg.AssetKey],
    partition: str | None, tags: dict[str, str] | None = None, *, echo=print,
    missing_detail: str = "vendor job still running: the sensor will land it",
) -> list[Outcome]:
    """One demo run of ``keys`` with their checks (evaluated as each partition lands), and a one-line
    account of it."""
    started = time.monotonic()
    result = dg.materialize(
        selection_for(defs, keys), partition_key=partition, instance=instance, resources=defs.resources,
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        tags={"edu/vendor": vendor, "edu/trigger": "demo", **(tags or {})}, raise_on_error=False,
    )
    got = _outcomes(result, keys, partition or "", defs, missing="skipped", missing_detail=missing_detail)
    landed = [o for o in got if o.status == "landed"]
    failed = [o for o in got if o.status == "failed"]
    mark = "ok  " if not failed else "FAIL"
    checks = [e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    warned = sum(not c.passed for c in checks)
    echo(f"  {mark} {label:<58} {len(landed):>4} tables {sum(o.rows or 0 for o in landed):>9,} rows"
         f"  {len(got) - len(landed) - len(failed)} skipped  {len(checks)} checks"
         f"{f' ({warned} not passed)' if warned else ''}  ({time.monotonic() - started:.1f}s)")
    for o in failed[:5]:
        echo(f"       {o.key}: {o.detail}")
    return got


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, sensor: str) -> None:
    """Evaluate one sensor tick as the daemon would, and apply the partitions it asks for."""
    ctx = dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
    result = defs.get_sensor_def(sensor)(ctx)
    for req in getattr(result, "dynamic_partitions_requests", None) or []:
        if isinstance(req, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        else:
            for key in req.partition_keys:
                instance.delete_dynamic_partition(req.partitions_def_name, key)


def run_skillspass_demo(instance: dg.DagsterInstance, defs: dg.Definitions, *, echo=print, days: int = 7) -> list[Outcome]:
    """The last ``days`` daily windows of every window export in one run (one vendor job per day, polled
    together), then the activity-discovery sensor, then yesterday's interactions of every activity."""
    from edu_assets.vendors.skillspass.assets import asset_key as skey
    from edu_assets.vendors.skillspass.catalog import load_catalog as load_skillspass
    from edu_assets.vendors.skillspass.partitions import ACTIVITIES, DAILY

    specs = load_skillspass()
    window = DAILY.get_partition_keys()[-days:]
    echo(f"\nskillspass: {window[0]}..{window[-1]}")
    out = _run_group(instance, defs, "skillspass", f"skillspass window exports, {len(window)} days",
                     [skey(s) for s in specs if not s.per_activity], None,
                     {"dagster/asset_partition_range_start": window[0], "dagster/asset_partition_range_end": window[-1]},
                     echo=echo)
    _tick(defs, instance, "skillspass_activity_discovery")
    interactions = [skey(s) for s in specs if s.per_activity]
    for activity in instance.get_dynamic_partitions(ACTIVITIES.name):
        key = dg.MultiPartitionKey({"activity": activity, "date": window[-1]})
        out += _run_group(instance, defs, "skillspass", f"skillspass interactions, activity {activity}, {window[-1]}",
                          interactions, key, echo=echo)
    return out


def run_webadmit_demo(instance: dg.DagsterInstance, defs: dg.Definitions, *, echo=print) -> list[Outcome]:
    """Discover templates as the sensor would, land the register, then today's snapshot of every template."""
    from edu_assets.vendors.webadmit.assets import EXPORT_FILES_KEY, REGISTER_KEY
    from edu_assets.vendors.webadmit.partitions import TEMPLATES

    _tick(defs, instance, "webadmit_template_discovery")
    templates = instance.get_dynamic_partitions(TEMPLATES.name)
    echo(f"\nwebadmit: {len(templates)} landable export template(s)")
    out = _run_group(instance, defs, "webadmit", "webadmit template register", [REGISTER_KEY], None, echo=echo)
    for key in templates:
        out += _run_group(instance, defs, "webadmit", f"webadmit export template {key}", [EXPORT_FILES_KEY], key, echo=echo)
    return out


def print_summary(echo=print) -> None:
    catalog = Catalog(LakeSettings.from_env())
    echo(f"\nDuckDB catalog {catalog.path} (query it with: duckdb {catalog.path})")
    echo(format_summary(catalog.summary()))
