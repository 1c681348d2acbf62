"""The main job: materialize every asset for a sensible default partition set, then summarise the lake.

Used by ``./edu demo``. Runs are recorded in the local Dagster instance (``.dagster/``), so ``./edu dev``
shows them afterwards. Exports that need a value only a user can choose (requirement names, a school)
get the catalog's example value when the vendor is sandboxed; against a live vendor they come from
``STELLIC_EXPORT_PARAMS`` and are skipped with a note when missing.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg

from edu_assets.core.catalog import Catalog, format_summary
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


def _op_name(key: dg.AssetKey) -> str:
    return "__".join(key.path)


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
                config[_op_name(asset_key(spec))] = {"config": {"params": params}}
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
        outcomes += _outcomes(result, keys, partition)
        for o in outcomes[-len(keys):]:
            mark = {"landed": "ok  ", "deferred": "wait", "failed": "FAIL"}.get(o.status, o.status)
            rows = f"{o.rows:>8,} rows" if o.rows is not None else " " * 13
            echo(f"  {mark} {o.key:<45} {kind:>15}={partition:<22} {rows}  {o.detail}")
        echo(f"       ({len(keys)} asset(s) in {elapsed:.1f}s)")
    return outcomes


def _outcomes(result: dg.ExecuteInProcessResult, keys: Iterable[dg.AssetKey], partition: str) -> list[Outcome]:
    mats = {e.asset_key: e for e in result.get_asset_materialization_events()}
    failures = {e.step_key: e for e in result.all_events if e.is_step_failure}
    out = []
    for key in keys:
        name = key.to_user_string()
        if key in mats:
            md = mats[key].materialization.metadata
            rows = md.get("dagster/row_count")
            out.append(Outcome(name, partition, "landed", int(rows.value) if rows is not None else None))
        elif _op_name(key) in failures:
            err = failures[_op_name(key)].step_failure_data.error
            msg = err.message.strip().splitlines()[-1] if err else "failed"
            out.append(Outcome(name, partition, "failed", detail=msg[:200]))
        else:
            out.append(Outcome(name, partition, "deferred", detail="vendor job still running: the sensor will land it"))
    return out


def print_summary(echo=print) -> None:
    catalog = Catalog(LakeSettings.from_env())
    echo(f"\nDuckDB catalog {catalog.path} (query it with: duckdb {catalog.path})")
    echo(format_summary(catalog.summary()))
