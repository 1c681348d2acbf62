"""Asset factory: every catalog endpoint becomes one multi-asset, one asset per result set (table).

One fetch serves all of an endpoint's tables. Snapshot endpoints are partitioned by school and kept up
to date with change sets (``changedRows``): the next token is stored inside each landed Parquet file, so
the token and the rows it covers are replaced together. Date-range endpoints are partitioned by school x
month and fetched in windows of whole months (one call per window, not per day).
"""

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from edu_assets.core.checks import build_dataset_checks
from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.lake import DATA_FILE, Lake, Landed, original_columns, read_state
from edu_assets.core.metadata import landed_metadata
from edu_assets.core.months import month_end
from edu_assets.core.naming import safe_name, snake_case
from edu_assets.core.resources import LakeResource
from edu_assets.core.staging import JsonStage, staging
from edu_assets.vendors.xporter.auth import SchoolUnavailable
from edu_assets.vendors.xporter.catalog import Endpoint, Table, load_catalog
from edu_assets.vendors.xporter.client import ChangeTokenRejected, DataNotReady, FetchSummary, XporterClient
from edu_assets.vendors.xporter.partitions import (
    ESTAB,
    ESTAB_MONTH,
    consecutive_windows,
    dims,
    month_of,
)
from edu_assets.vendors.xporter.resources import XporterResource

VENDOR = "xporter"
GROUP = "xporter"
POOL = "xporter"
SKIP_TAG = "edu/skipped"


class XporterEndpointConfig(dg.Config):
    """Run config of every Xporter endpoint asset."""

    select: str | None = None  # vendor `select`: "Id,Forename,Surname" or "DisplayName as Name"
    options: list[str] = []  # the endpoint's documented include*/exclude* flags to switch on
    full_refresh: bool = False  # ignore the stored change-set token and reload everything
    updated_since: str | None = None  # yyyy-MM-dd: upsert rows updated since then (endpoints that offer it)
    window_months: int = 1  # date-range endpoints: months per vendor call in a backfill
    page_size: int | None = None
    page_concurrency: int | None = None
    not_ready_retries: int = 3  # "data not ready" (DbStatus): retry the step this many times...
    not_ready_wait_seconds: float = 300.0  # ...waiting this long in between


def asset_key(endpoint: Endpoint, table: Table) -> dg.AssetKey:
    return dg.AssetKey([VENDOR, endpoint.asset_name(table)])


def column_schema(table: Table) -> dg.TableSchema:
    """Documented columns with their consent scope, so the UI shows what each school must authorise."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                snake_case(name),
                "string",
                description=f"{name}; consent scope: {scope}" if scope else name,
                tags={"consent_scope": _tag_value(scope)} if scope else {},
            )
            for name, scope in table.fields.items()
        ]
    )


def _tag_value(scope: str) -> str:
    return safe_name(scope, 63).strip("_") or "unknown"  # Dagster tag values: 63 characters, no spaces


@dataclass
class _Outcome:
    table: Table
    partition_key: str
    landed: Landed
    extra: dict[str, Any] = field(default_factory=dict)


def _signature(endpoint: Endpoint, params: dict[str, Any]) -> str:
    """What identifies a change set: the parameters and options of its calls must never change."""
    return hashlib.sha256(json.dumps([endpoint.path, params], sort_keys=True).encode()).hexdigest()[:16]


def _selected_columns(select: str | None) -> list[str] | None:
    if not select or select.strip() == "*":
        return None
    return [part.split(" as ")[-1].split(" AS ")[-1].strip() for part in select.split(",") if part.strip()]


class _Router:
    """Sends each arriving result set to its table's staging file; remembers what it did not expect."""

    def __init__(self, endpoint: Endpoint, stage: JsonStage, month_for: Any = None):
        self.by_name = {n.lower(): t for t in endpoint.tables for n in t.response_names}
        self.stage = stage
        self.month_for = month_for  # (table, row) -> stage key suffix, for multi-month windows
        self.unexpected: dict[str, int] = defaultdict(int)

    def table(self, name: str) -> Table | None:
        return self.by_name.get(name.lower())

    def __call__(self, name: str, rows: list[dict[str, Any]]) -> None:
        table = self.table(name)
        if table is None:
            self.unexpected[name] += len(rows)
            return
        if self.month_for is None:
            self.stage.write(table.name, rows)
            return
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            grouped[self.month_for(table, row)].append(row)
        for month, group in grouped.items():
            self.stage.write(f"{table.name}|{month}", group)

    def deleted_for(self, summary: FetchSummary, table: Table) -> list[str]:
        return [i for name, ids in summary.deleted.items() if self.table(name) is table for i in ids]


def _base_params(endpoint: Endpoint, config: XporterEndpointConfig, where: Where) -> dict[str, Any]:
    unknown = sorted(set(config.options) - set(endpoint.options))
    if unknown:
        raise ConfigError(
            where, f"unknown option(s) {unknown} for {endpoint.title}",
            hint=f"this endpoint documents: {', '.join(endpoint.options) or 'no options'}",
        )
    params: dict[str, Any] = {opt: "true" for opt in sorted(config.options)}
    if config.select:
        params["select"] = config.select
    return params


class EndpointRun:
    """One run of one endpoint for the schools (and months) of the run's partitions."""

    def __init__(self, context: dg.AssetExecutionContext, endpoint: Endpoint, config: XporterEndpointConfig,
                 xporter: XporterResource, lake: Lake):
        self.context = context
        self.endpoint = endpoint
        self.config = config
        self.xporter = xporter
        self.lake = lake
        self.log = context.log
        self.expected = _selected_columns(config.select)

    def expected_columns(self, table: Table) -> list[str] | None:
        return self.expected or (list(table.fields) or None)

    def stage_dir(self, estab: str) -> Path:
        return self.lake.settings.work_dir / VENDOR / self.endpoint.name / f"{estab}-{uuid.uuid4().hex[:8]}"

    # ------------------------------------------------------------------ snapshot endpoints
    def snapshot(self, client: XporterClient, estab: str, where: Where) -> list[_Outcome]:
        ep, config = self.endpoint, self.config
        params = _base_params(ep, config, where)
        signature = _signature(ep, params)
        part = {"estab": estab}
        paths = [self.lake.partition_dir(VENDOR, ep.asset_name(t), part) / DATA_FILE for t in ep.tables]
        states = [read_state(p) for p in paths]
        tokens = {s.get("changed_rows") for s in states}
        if config.updated_since:
            if not ep.updated_since:
                raise ConfigError(where, f"{ep.title} does not offer updatedSince",
                                  hint="use change sets (the default) or full_refresh instead")
            return self._fetch_and_land(client, estab, where, {**params, "updatedSince": config.updated_since},
                                        mode="updated_since", states=states)
        keyed = all(p.exists() and (t.key or "Id") in original_columns(p).values() for t, p in zip(ep.tables, paths, strict=True))
        resumable = (
            not config.full_refresh
            and len(tokens) == 1
            and None not in tokens
            and all(s.get("signature") == signature for s in states)
            and keyed
        )
        if not resumable:
            reason = ("full refresh requested" if config.full_refresh
                      else "no change set yet" if all(not s for s in states)
                      else "a table has no Id column to apply changes by" if not keyed
                      else "parameters changed or tables out of step: starting a new change set")
            self.log.info(f"{where}: full load with changedRows=* ({reason})")
            return self._fetch_and_land(client, estab, where, {**params, "changedRows": "*"}, mode="full",
                                        signature=signature)
        token = next(iter(tokens))
        try:
            return self._fetch_and_land(client, estab, where, {**params, "changedRows": token}, mode="delta",
                                        signature=signature)
        except ChangeTokenRejected as exc:
            self.log.warning(f"{exc}; reloading everything with changedRows=*")
            return self._fetch_and_land(client, estab, where, {**params, "changedRows": "*"}, mode="full",
                                        signature=signature, extra={"change_set_restarted": exc.what})

    def _fetch_and_land(self, client: XporterClient, estab: str, where: Where, params: dict[str, Any], *,
                        mode: str, signature: str | None = None, states: list[dict] | None = None,
                        extra: dict[str, Any] | None = None) -> list[_Outcome]:
        ep = self.endpoint
        with staging(self.stage_dir(estab)) as stage:
            router = _Router(ep, stage)
            summary = client.fetch(ep.path, params, where, router, page_size=self.config.page_size,
                                   concurrency=self.config.page_concurrency)
            outcomes = []
            for i, table in enumerate(ep.tables):
                staged = stage.finish(table.name)
                common = dict(where=where.at(partition=f"school {estab}"), vendor=VENDOR,
                              asset=ep.asset_name(table), partition={"estab": estab},
                              expected_columns=self.expected_columns(table))
                if mode == "full":
                    landed = self.lake.land_json(staged, state={"changed_rows": summary.next_token,
                                                                 "signature": signature}, **common)
                    detail = {"change_set": "full load (changedRows=*)"}
                else:
                    deleted = router.deleted_for(summary, table)
                    state = (states or [{}])[i] if mode == "updated_since" else {
                        "changed_rows": summary.next_token, "signature": signature}
                    landed = self.lake.merge_json(staged, deleted, table.key or "Id", state=state, **common)
                    detail = {"change_set": f"{mode}: {stage.counts.get(table.name, 0)} upserted, {len(deleted)} deleted"}
                outcomes.append(_Outcome(table, estab, landed, {**detail, **self._fetch_md(summary, router), **(extra or {})}))
            return outcomes

    def _fetch_md(self, summary: FetchSummary, router: _Router) -> dict[str, Any]:
        md: dict[str, Any] = {"pages": summary.pages, "fetch_seconds": round(summary.seconds, 3)}
        if summary.reported_rows is not None:
            md["vendor_reported_rows"] = summary.reported_rows
        if router.unexpected:
            md["unexpected_result_sets"] = ", ".join(f"{k} ({v} rows)" for k, v in sorted(router.unexpected.items()))
        return md

    # ------------------------------------------------------------------ date-range endpoints
    def months(self, client: XporterClient, estab: str, months: list[str], where: Where) -> list[_Outcome]:
        ep, config = self.endpoint, self.config
        params = _base_params(ep, config, where)
        size = max(1, config.window_months)
        if size > 1 and any(t.date_field is None for t in ep.tables):
            self.log.warning(f"{where}: not every table of {ep.title} has a date column to split a multi-month "
                             "window by; fetching one month per call")
            size = 1
        outcomes: list[_Outcome] = []
        windows = consecutive_windows(months, size)
        self.log.info(f"{where}: {len(months)} month(s) in {len(windows)} call(s) of up to {size} month(s)")
        for window in windows:
            start, end = window[0], month_end(window[-1])
            with staging(self.stage_dir(estab)) as stage:
                def month_for(table: Table, row: dict[str, Any], _w: list[str] = window) -> str:
                    if len(_w) == 1:
                        return _w[0]
                    month = month_of(row.get(table.date_field or ""))
                    return month if month in _w else _w[0]

                router = _Router(ep, stage, month_for)
                summary = client.fetch(ep.path, {**params, **ep.range_params(start, end)}, where, router,
                                       page_size=config.page_size, concurrency=config.page_concurrency)
                for month in window:
                    for table in ep.tables:
                        key = f"{table.name}|{month}"
                        landed = self.lake.land_json(
                            stage.finish(key), where.at(partition=f"school {estab}, month {month[:7]}"), VENDOR,
                            ep.asset_name(table), {"estab": estab, "month": month},
                            expected_columns=self.expected_columns(table),
                            state={"window": [start, end], "signature": _signature(ep, params)},
                        )
                        outcomes.append(_Outcome(table, f"{estab}|{month}", landed,
                                                 {"window": f"{start}..{end}", **self._fetch_md(summary, router)}))
        return outcomes

    # ------------------------------------------------------------------ scopes
    def skip_reason(self, estab: str) -> str | None:
        """Why this school's data for this endpoint should not be requested (None: go ahead)."""
        try:
            register = {s.estab: s for s in self.xporter.schools(self.log)}
        except Exception as exc:  # the register is advisory: without it, just try the endpoint
            self.log.warning(f"[xporter] could not read the school register ({exc}); not checking scopes")
            return None
        school = register.get(estab)
        if school is None:
            return None
        if school.status == "revoked":
            return f"school {estab} revoked access on {school.since}; its landed data is kept"
        if school.status == "pending":
            return f"school {estab} has not authorised the application yet"
        needed = self.endpoint.scopes
        if needed and school.scopes and not (needed & school.scopes):
            return (f"{self.endpoint.title} needs one of the consent scopes {sorted(needed)}, and school {estab} "
                    f"authorised only {sorted(school.scopes)}")
        return None


def _emit(context: dg.AssetExecutionContext, endpoint: Endpoint, outcomes: list[_Outcome]) -> Iterator[Any]:
    """One materialization per table and partition (a single-partition run uses outputs, so checks run)."""
    single = len(context.partition_keys) == 1
    for o in outcomes:
        md = landed_metadata(o.landed, extra=o.extra)
        if o.landed.missing_columns:
            md["missing_columns"] = ", ".join(o.landed.missing_columns) + " (absent: scope not authorised, or renamed)"
        key = asset_key(endpoint, o.table)
        if single:
            yield dg.MaterializeResult(asset_key=key, metadata=md)
        else:
            yield dg.AssetMaterialization(asset_key=key, partition=o.partition_key, metadata=md)


def _observe(endpoint: Endpoint, partition_keys: list[str], state: str, reason: str) -> Iterator[dg.AssetObservation]:
    for table in endpoint.tables:
        for key in partition_keys:
            yield dg.AssetObservation(asset_key=asset_key(endpoint, table), partition=key,
                                      metadata={SKIP_TAG: state, "reason": reason})


def run_endpoint(context: dg.AssetExecutionContext, endpoint: Endpoint, config: XporterEndpointConfig,
                 xporter: XporterResource, lake: LakeResource) -> Iterator[Any]:
    run = EndpointRun(context, endpoint, config, xporter, lake.lake())
    by_school: dict[str, list[str]] = defaultdict(list)
    for key in context.partition_keys:
        d = dims(key)
        by_school[d["estab"]].append(d.get("month", ""))
    catalog = lake.catalog()
    landed_any = False
    for estab, months in sorted(by_school.items()):
        keys = [f"{estab}|{m}" if m else estab for m in months]
        where = Where(VENDOR, endpoint.name, f"school {estab}")
        reason = run.skip_reason(estab)
        if reason:
            context.log.warning(f"{where}: skipped: {reason}")
            yield from _observe(endpoint, keys, "skipped", reason)
            continue
        client = xporter.client(estab, context.log)
        try:
            outcomes = run.months(client, estab, months, where) if endpoint.partitioned_by_month \
                else run.snapshot(client, estab, where)
        except SchoolUnavailable as exc:
            context.log.warning(f"{exc}")
            yield from _observe(endpoint, keys, exc.reason, exc.what)
            continue
        except DataNotReady as exc:
            context.log.warning(f"{exc}")
            yield from _observe(endpoint, keys, "not_ready", exc.what)
            raise dg.RetryRequested(max_retries=config.not_ready_retries,
                                    seconds_to_wait=config.not_ready_wait_seconds) from exc
        finally:
            client.close()
        landed_any = landed_any or bool(outcomes)
        context.log.info(f"{where}: landed {sum(o.landed.rows for o in outcomes):,} rows in "
                         f"{len(outcomes)} table partition(s)")
        yield from _emit(context, endpoint, outcomes)
    if landed_any:
        catalog.ensure_views(VENDOR, [endpoint.asset_name(t) for t in endpoint.tables], log=context.log)


def build_endpoint_asset(endpoint: Endpoint) -> dg.AssetsDefinition:
    partitions = ESTAB_MONTH if endpoint.partitioned_by_month else ESTAB
    guessed = endpoint.path_confidence != "known_public_client"
    specs = [
        dg.AssetSpec(
            key=asset_key(endpoint, table),
            description=(f"{endpoint.description}\n\nResult set `{table.name}` of `GET /api/v1/School/{{estab}}/"
                         f"{endpoint.path}/`" + (" (path guessed from the vendor document: verify on a live tenant)"
                                                 if guessed else "")),
            group_name=GROUP,
            kinds={"xporter", "parquet"},
            skippable=True,
            partitions_def=partitions,
            metadata={"dagster/column_schema": column_schema(table), "vendor_path": endpoint.path,
                      **({"key": table.key} if table.key else {})},
            tags={"edu/vendor": VENDOR, "edu/partitioning": "estab_month" if endpoint.partitioned_by_month else "estab"},
        )
        for table in endpoint.tables
    ]

    @dg.multi_asset(
        name=f"xporter__{endpoint.name}",
        specs=specs,
        partitions_def=partitions,
        can_subset=False,  # one fetch lands every table of the endpoint
        pool=POOL,
        backfill_policy=dg.BackfillPolicy.single_run() if endpoint.partitioned_by_month else None,
    )
    def _endpoint(context: dg.AssetExecutionContext, config: XporterEndpointConfig, xporter: XporterResource,
                  lake: LakeResource) -> Iterator[Any]:
        yield from run_endpoint(context, endpoint, config, xporter, lake)

    return _endpoint


def build_checks(endpoint: Endpoint) -> list[dg.AssetChecksDefinition]:
    checks: list[dg.AssetChecksDefinition] = []
    for table in endpoint.tables:
        checks += build_dataset_checks(
            asset_key(endpoint, table), VENDOR, endpoint.asset_name(table), dims,
            keys=[table.key] if table.key else [], expected_columns=list(table.fields) or None,
        )
    return checks


def build_all() -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    endpoints, _ = load_catalog()
    return [build_endpoint_asset(e) for e in endpoints], [c for e in endpoints for c in build_checks(e)]
