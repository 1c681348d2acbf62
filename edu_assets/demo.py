"""The main job: every vendor's demo plan (what to materialize, in which order), then a summary of the lake.

Used by ``./edu demo``. Each vendor declares its plan (``demo_plan`` in its ``automation.py``, steps from
``core/demo_plan.py``); this module only carries plans out and reports them the same way for every vendor.
Runs are recorded in the local Dagster instance (``.dagster/``), so ``./edu dev`` shows them afterwards.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg

from edu_assets.core.catalog import Catalog, format_summary
from edu_assets.core.demo_plan import AddPartitions, DemoContext, DemoPlan, Run, Say, Skip, Step, Tick
from edu_assets.core.settings import LakeSettings
from edu_assets.definitions import selection_for
from edu_assets.vendors import skillspass, stellic, webadmit, xporter

PLANS: dict[str, DemoPlan] = {
    "stellic": stellic.demo_plan,
    "xporter": xporter.demo_plan,
    "skillspass": skillspass.demo_plan,
    "webadmit": webadmit.demo_plan,
}


@dataclass
class Outcome:
    key: str
    partition: str
    status: str
    rows: int | None = None
    detail: str = ""


def run_demo(instance: dg.DagsterInstance, defs: dg.Definitions, *, echo=print) -> list[Outcome]:
    """Every vendor's demo plan, one vendor after the other."""
    return [o for vendor in PLANS for o in run_vendor_demo(instance, defs, vendor, echo=echo)]


def run_vendor_demo(instance: dg.DagsterInstance, defs: dg.Definitions, vendor: str, *, echo=print) -> list[Outcome]:
    """Carry out one vendor's plan step by step (each step before the plan is asked for the next)."""
    ctx = DemoContext(instance, defs)
    outcomes: list[Outcome] = []
    echo("")
    for step in PLANS[vendor](ctx):
        outcomes += _carry_out(ctx, vendor, step, echo)
    return outcomes


def _carry_out(ctx: DemoContext, vendor: str, step: Step, echo) -> list[Outcome]:
    if isinstance(step, Run):
        return _run(ctx, vendor, step, echo)
    if isinstance(step, Tick):
        _tick(ctx.defs, ctx.instance, step.sensor)
    elif isinstance(step, AddPartitions):
        ctx.instance.add_dynamic_partitions(step.name, list(step.keys))
    elif isinstance(step, Skip):
        echo(f"  skip {step.key.to_user_string()} ({step.partition}): {step.detail}")
        return [Outcome(step.key.to_user_string(), step.partition, "skipped", detail=step.detail)]
    elif isinstance(step, Say):
        echo(step.text)
    else:
        raise TypeError(f"{vendor} demo plan yielded {step!r}, which is not a demo step")
    return []


def _run(ctx: DemoContext, vendor: str, step: Run, echo) -> list[Outcome]:
    """One run of the step's assets with their checks (evaluated as each partition lands), and a one-line
    account of it."""
    started = time.monotonic()
    ops = {_op_for(ctx.defs, key): {"config": dict(config)} for key, config in step.config.items()}
    result = dg.materialize(
        selection_for(ctx.defs, step.keys), partition_key=step.partition, instance=ctx.instance,
        resources=ctx.defs.resources,
        run_config={"ops": ops, "loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        tags={"edu/vendor": vendor, "edu/trigger": "demo", **step.tags}, raise_on_error=False,
    )
    got = _outcomes(result, step.keys, step.partition or "", ctx.defs, missing=step.missing,
                    missing_detail=step.missing_detail)
    landed = [o for o in got if o.status == "landed"]
    failed = [o for o in got if o.status == "failed"]
    checks = [e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    warned = sum(not c.passed for c in checks)
    echo(f"  {'ok  ' if not failed else 'FAIL'} {step.label:<58} {len(landed):>4} tables "
         f"{sum(o.rows or 0 for o in landed):>9,} rows  {len(got) - len(landed) - len(failed)} {step.missing}"
         f"  {len(checks)} checks{f' ({warned} not passed)' if warned else ''}  ({time.monotonic() - started:.1f}s)")
    for o in failed[:5]:
        echo(f"       {o.key}: {o.detail}")
    return got


def _outcomes(result: dg.ExecuteInProcessResult, keys: Iterable[dg.AssetKey], partition: str,
              defs: dg.Definitions, *, missing: str, missing_detail: str) -> list[Outcome]:
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


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, sensor: str) -> None:
    """Evaluate one sensor tick as the daemon would, and apply the partitions it asks for."""
    ctx = dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
    result = defs.resolve_sensor_def(sensor)(ctx)
    for req in getattr(result, "dynamic_partitions_requests", None) or []:
        if isinstance(req, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        else:
            for key in req.partition_keys:
                instance.delete_dynamic_partition(req.partitions_def_name, key)


def print_summary(echo=print) -> None:
    catalog = Catalog(LakeSettings.from_env())
    echo(f"\nDuckDB catalog {catalog.path} (query it with: duckdb {catalog.path})")
    echo(format_summary(catalog.summary()))
