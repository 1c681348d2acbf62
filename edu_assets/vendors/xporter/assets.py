"""Asset factory: every catalog endpoint becomes one multi-asset, one asset per result set (table).

One fetch serves all of an endpoint's tables. Snapshot endpoints are partitioned by school and kept up
to date with change sets (``changedRows``): the next token is stored inside each landed Parquet file, so
the token and the rows it covers are replaced together. Date-range endpoints are partitioned by school x
month and fetched in windows of whole months (one call per window, not per day).
"""

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
import pydantic
from dagster._core.execution.plan.compute_generator import construct_config_from_context

from edu_assets.core.catalog import Catalog, ViewSpec
from edu_assets.core.checks import DatasetChecks, landing_asset
from edu_assets.core.errors import ConfigError, EduAssetsError, Where
from edu_assets.core.http import Log, QuietLog
from edu_assets.core.lake import Lake, Landed, Stored
from edu_assets.core.months import month_end
from edu_assets.core.naming import safe_name, snake_case
from edu_assets.core.publish import LandedTable, Publication, publish
from edu_assets.core.resources import LakeResource
from edu_assets.core.staging import JsonStage, staging
from edu_assets.vendors.xporter.auth import SchoolUnavailable
from edu_assets.vendors.xporter.catalog import Endpoint, Table, load_catalog
from edu_assets.vendors.xporter.client import (
    VENDOR,
    ChangeTokenRejected,
    DataNotReady,
    FetchSummary,
    XporterClient,
)
from edu_assets.vendors.xporter.filters import (
    PERSON_COLUMN,
    MissingFilter,
    Slice,
    config_fields,
    config_values,
    fan_out,
    filter_values_metadata,
    lookups_from,
    people_ids,
    slices,
    with_people,
)
from edu_assets.vendors.xporter.monitoring import HEALTH, SCHOOL_DATA_FRESH
from edu_assets.vendors.xporter.partitions import (
    FILTER_PARTITIONS_PER_RUN,
    SCHOOLS_PER_RUN,
    consecutive_windows,
    month_of,
    partitioning_for,
)
from edu_assets.vendors.xporter.resources import XporterResource

GROUP = POOL = VENDOR
SKIP_TAG = "edu/skipped"
DETAIL_LOG = logging.getLogger("edu_assets.xporter")


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
    probe_db_status: bool = True  # once a school's data was not ready, ask onlyGetDBStatus=true (cheap) before
    # loading again, so that a retry downloads nothing while the vendor is still refreshing
    probe_before_every_load: bool = False  # probe before first attempts too (one more request per endpoint)
    school_concurrency: int = 8  # schools fetched and landed at once when a run covers several


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
    """Sends each arriving result set to its table's staging file (its name or any alias, in any case);
    remembers what it did not expect and which tables the response carried."""

    def __init__(self, endpoint: Endpoint, stage: JsonStage, month_for: Any = None):
        self.endpoint = endpoint
        self.stage = stage
        self.month_for = month_for  # (table, row) -> stage key suffix, for multi-month windows
        self.unexpected: dict[str, int] = defaultdict(int)
        self.arrived: set[str] = set()  # tables whose result set came, an explicit empty array included

    def table(self, name: str) -> Table | None:
        return self.endpoint.table_for(name)

    def __call__(self, name: str, rows: list[dict[str, Any]]) -> None:
        table = self.table(name)
        if table is None:
            self.unexpected[name] += len(rows)
            return
        self.arrived.add(table.name)
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

    def absent(self, summary: FetchSummary) -> list[Table]:
        """Tables the response did not carry at all (not even an empty array or a ``_deleted`` list)."""
        deleted = {t.name for t in map(self.table, summary.deleted) if t is not None}
        return [t for t in self.endpoint.tables if t.name not in self.arrived | deleted]

    def report(self, where: Where, summary: FetchSummary, log: Log, *, replaces: bool) -> None:
        """Log what the response held that the catalog does not route, and (when the landing replaces the
        partitions) the tables it did not carry, which land with zero rows: a warning when both happen (a
        renamed result set?), else a note (an option-gated table whose option is off)."""
        if self.unexpected:
            log.warning(f"{where}: result set(s) the catalog does not know, not landed: "
                        + ", ".join(f"{k} ({v} rows)" for k, v in sorted(self.unexpected.items())))
        absent = self.absent(summary)
        if replaces and absent:
            say = log.warning if self.unexpected else log.info
            say(f"{where}: the response did not carry {', '.join(t.name for t in absent)}: landed with "
                f"0 rows (the vendor sent: {', '.join(summary.sent_keys)})")


def _month_for(window: list[str]) -> Any:
    """Which month of a window a row belongs to: its table's date column (an extra table without
    documented columns: the row's first column named like a date), else the window's first month."""

    def month_for(table: Table, row: dict[str, Any]) -> str:
        if len(window) == 1:
            return window[0]
        column = table.date_field or next((k for k in row if "Date" in k), "")
        month = month_of(row.get(column))
        return month if month in window else window[0]

    return month_for


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
        self.partitioning = partitioning_for(endpoint)
        # a filter chosen in run config: checked here, before any request (MissingFilter names it)
        self.chosen = config_values(endpoint, config, Where(VENDOR, endpoint.name))
        # a school's progress lines: in the run's log for a one-school run; for a batch (25 schools x 60
        # endpoints), in the Python logger, with one summary line per endpoint in the run's log
        schools = {self.partitioning.parts(k)["estab"] for k in context.partition_keys}
        self.detail: Log = context.log if len(schools) <= 1 else QuietLog(context.log, DETAIL_LOG)
        self.expected = _selected_columns(config.select)
        self.publishes = bool(lookups_from(endpoint))  # a lookup endpoint: its landings carry filter values
        people = endpoint.filter_of("people")
        self.person = [PERSON_COLUMN[str(people.people)]] if people is not None and people.per_request == 1 else []

    def expected_columns(self, table: Table) -> list[str] | None:
        expected = self.expected or (list(table.fields) or None)
        return [*expected, *self.person] if expected else None

    def stage_dir(self, estab: str) -> Path:
        """A new staging directory for this run's fetch, ``work/xporter/<endpoint>/<estab>/<run id>.<token>``;
        earlier attempts' for the school are swept first (see core/workdir.py)."""
        return JsonStage.attempt_dir(self.lake.settings, self.context, VENDOR, self.endpoint.name, estab)

    def prepare(self, part: Slice, where: Where) -> Slice:
        """``part`` with its fanned-out people (the school's landed list); raises ``MissingFilter`` before
        any request when the list has not landed."""
        people = self.endpoint.filter_of("people")
        if people is None:
            return part
        ids = people_ids(self.lake, self.endpoint, people, part.estab, where)
        return with_people(part, people, ids, getattr(self.config, "people_per_request", people.per_request))

    def _fetch(self, client: XporterClient, part: Slice, params: dict[str, Any], where: Where, router: Any,
               **kwargs: Any) -> FetchSummary:
        """One paged fetch, or a fan-out over the slice's people (one partition, one run)."""
        if part.people is None:
            return client.fetch(self.endpoint.path, params, where, router, **kwargs)
        people = self.endpoint.filter_of("people")
        assert people is not None
        return fan_out(client, self.endpoint, params, where, router, part.people,
                       per_request=getattr(self.config, "people_per_request", people.per_request),
                       concurrency=getattr(self.config, "people_concurrency", 4), fetch_kwargs=kwargs)

    # ------------------------------------------------------------------ snapshot endpoints
    def snapshot(self, client: XporterClient, part: Slice, where: Where) -> list[_Outcome]:
        ep, config = self.endpoint, self.config
        params = {**_base_params(ep, config, where), **part.params, **self.chosen}
        signature = _signature(ep, params)
        # each table's landed file, from its footer (one read: state, vendor columns, rows)
        stored = [self.lake.stored(part.pid(ep.asset_name(t))) for t in ep.tables]
        states = [s.state if s is not None else {} for s in stored]
        tokens = {s.get("changed_rows") for s in states}
        if config.updated_since:
            if not ep.updated_since:
                raise ConfigError(where, f"{ep.title} does not offer updatedSince",
                                  hint="use change sets (the default) or full_refresh instead")
            return self._fetch_and_land(client, part, where, {**params, "updatedSince": config.updated_since},
                                        mode="updated_since", stored=stored)
        # an empty landed table needs no key column: a change set is landed into it as is
        keyed = all(s is not None and ((t.key or "Id") in s.original_columns.values() or not s.rows)
                    for t, s in zip(ep.tables, stored, strict=True))
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
                      else "the last change-set response carried no next changedRows token" if tokens == {None}
                      else "a table has no Id column to apply changes by" if not keyed
                      else "parameters changed or tables out of step: starting a new change set")
            return self._fetch_and_land(client, part, where, {**params, "changedRows": "*"}, mode="full",
                                        signature=signature, extra={"change_set_reason": reason})
        token = next(iter(tokens))
        try:
            return self._fetch_and_land(client, part, where, {**params, "changedRows": token}, mode="delta",
                                        signature=signature, stored=stored)
        except ChangeTokenRejected as exc:
            self.log.warning(f"{exc}; reloading everything with changedRows=*")
            return self._fetch_and_land(client, part, where, {**params, "changedRows": "*"}, mode="full",
                                        signature=signature, extra={"change_set_restarted": exc.what})

    def _fetch_and_land(self, client: XporterClient, part: Slice, where: Where, params: dict[str, Any], *,
                        mode: str, signature: str | None = None, stored: list[Stored | None] | None = None,
                        extra: dict[str, Any] | None = None) -> list[_Outcome]:
        """Fetch and land every table of the endpoint for one slice. ``stored``: each table's landed file as
        ``snapshot`` read it at the start of this run (what a delta is merged into)."""
        ep, estab = self.endpoint, part.estab
        before = stored or [None] * len(ep.tables)
        probe_md = self._probe(client, params, where) if mode == "full" else {}
        with staging(self.stage_dir(estab)) as stage:
            router = _Router(ep, stage)
            summary = client.fetch(ep.path, params, where, router, page_size=self.config.page_size,
                                   concurrency=self.config.page_concurrency, result_sets=ep.result_set_names)
            router.report(where, summary, self.detail, replaces=mode == "full")
            updated = {"vendor_data_updated": summary.data_updated[0]} if summary.data_updated else {}
            absent = {t.name for t in router.absent(summary)} if mode == "full" else set()
            outcomes = []
            for i, table in enumerate(ep.tables):
                staged = stage.finish(table.name)
                pid = part.pid(ep.asset_name(table))
                common = dict(where=where.at(partition=pid.key), pid=pid,
                              expected_columns=self.expected_columns(table))
                if mode == "full":
                    landed = self.lake.land_json(staged, state={"changed_rows": summary.next_token,
                                                                 "signature": signature, **updated}, **common)
                    detail = {"change_set": "full load (changedRows=*)"}
                else:
                    deleted = router.deleted_for(summary, table)
                    landed_now = before[i]
                    state = {**(landed_now.state if landed_now else {}), **updated} if mode == "updated_since" else {
                        "changed_rows": summary.next_token, "signature": signature, **updated}
                    if landed_now is not None and not landed_now.rows:  # nothing to merge into (maybe no key column)
                        landed = self.lake.land_json(staged, state=state, **common)
                    else:
                        landed = self.lake.merge_json(staged, deleted, table.key or "Id", state=state, **common)
                    detail = {"change_set": f"{mode}: {stage.counts.get(table.name, 0)} upserted, {len(deleted)} deleted"}
                md = {**detail, **self._fetch_md(summary, router), **probe_md, **(extra or {})}
                if table.name in absent:
                    md["result_set"] = "absent from the vendor's response: landed with 0 rows"
                outcomes.append(_Outcome(table, part.key, landed, md))
            return outcomes

    def _probe(self, client: XporterClient, params: dict[str, Any], where: Where) -> dict[str, Any]:
        """``onlyGetDBStatus=true`` before a full load (not for Health itself or the diagnostic endpoint):
        a not-ready school raises ``DataNotReady`` before any page is requested.

        Only on a retry, i.e. after a data response said the data was not ready: a data response carries
        ``DBStatus`` itself, so probing before every first attempt would double a run's requests (59 more per
        school's snapshot run) to learn what the data call says anyway."""
        ep = self.endpoint
        if ep.diagnostic or ep.path.lower() == "health" or not self.config.probe_db_status:
            return {}
        if self.context.retry_number == 0 and not self.config.probe_before_every_load:
            return {}
        status = client.probe(ep.path, params, where)
        return {"db_status": str(status) if status is not None else "not reported by the onlyGetDBStatus probe"}

    def _fetch_md(self, summary: FetchSummary, router: _Router) -> dict[str, Any]:
        md: dict[str, Any] = {"pages": summary.pages, "fetch_seconds": round(summary.seconds, 3)}
        if summary.reported_rows is not None:
            md["vendor_reported_rows"] = summary.reported_rows
        if router.unexpected:
            md["unexpected_result_sets"] = ", ".join(f"{k} ({v} rows)" for k, v in sorted(router.unexpected.items()))
        md["result_sets_received"] = ", ".join(f"{k} ({v} rows)" for k, v in summary.received.items()) or "none"
        md["paging"] = summary.paging
        if summary.data_updated:  # meta's last-updated time (L5375): when the vendor's data was refreshed
            md["vendor_data_updated"], md["vendor_data_updated_field"] = summary.data_updated
        if summary.change_set:
            md["change_token_key"] = summary.token_key or "none returned: the next run reloads everything"
        return md

    # ------------------------------------------------------------------ date-range endpoints
    def months(self, client: XporterClient, part: Slice, where: Where) -> list[_Outcome]:
        ep, config, estab, months = self.endpoint, self.config, part.estab, part.months
        params = {**_base_params(ep, config, where), **part.params, **self.chosen}
        size = max(1, config.window_months)
        if size > 1 and any(t.date_field is None for t in ep.tables if not t.seen_in):
            self.log.warning(f"{where}: not every table of {ep.title} has a date column to split a multi-month "
                             "window by; fetching one month per call")
            size = 1
        outcomes: list[_Outcome] = []
        windows = consecutive_windows(months, size)
        self.detail.info(f"{where}: {len(months)} month(s) in {len(windows)} call(s) of up to {size} month(s)")
        for window in windows:
            start, end = window[0], month_end(window[-1])
            call_where = where.at(partition=f"{part.label}, {start}..{end}")
            probe_md = self._probe(client, {**params, **ep.range_params(start, end)}, call_where)
            with staging(self.stage_dir(estab)) as stage:
                router = _Router(ep, stage, _month_for(window))
                summary = self._fetch(client, part, {**params, **ep.range_params(start, end)}, call_where, router,
                                      page_size=config.page_size, concurrency=config.page_concurrency,
                                      result_sets=ep.result_set_names)
                router.report(call_where, summary, self.detail, replaces=True)
                absent = {t.name for t in router.absent(summary)}
                for month in window:
                    for table in ep.tables:
                        key = f"{table.name}|{month}"
                        pid = part.pid(ep.asset_name(table), month)
                        landed = self.lake.land_json(
                            stage.finish(key), where.at(partition=pid.key), pid,
                            expected_columns=self.expected_columns(table),
                            state={"window": [start, end], "signature": _signature(ep, params),
                                   **({"vendor_data_updated": summary.data_updated[0]} if summary.data_updated else {})},
                        )
                        md = {"window": f"{start}..{end}", **self._fetch_md(summary, router), **probe_md}
                        if table.name in absent:
                            md["result_set"] = "absent from the vendor's response: landed with 0 rows"
                        outcomes.append(_Outcome(table, part.month_key(month), landed, md))
        return outcomes

    # ------------------------------------------------------------------ scopes
    def skip_reason(self, estab: str) -> str | None:
        """Why this school's data for this endpoint should not be requested (None: go ahead)."""
        try:
            register = {s.estab: s for s in self.xporter.schools(self.log, run_id=self.context.run_id)}
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


def _emit(context: dg.AssetExecutionContext, endpoint: Endpoint, outcomes: list[_Outcome],
          checks: Mapping[dg.AssetKey, DatasetChecks], lake: Lake, catalog: Catalog) -> list[Any]:
    """One school's landings, published: one materialization per table and partition (an output in a
    single-partition run, for downstream assets), each followed by that table partition's checks.

    Every table of the endpoint is landed by its one fetch, so a table the run did not select is still
    reported as materialized (as an event, not an output). The views are declared once per school (when
    they exist already that is the catalog ledger's check, ~0.6 ms, no catalog file opened)."""
    single = len(context.partition_keys) == 1
    publications = []
    for o in outcomes:
        extra = dict(o.extra)
        if o.landed.missing_columns:
            extra["missing_columns"] = ", ".join(o.landed.missing_columns) + " (absent: scope not authorised, or renamed)"
        key = asset_key(endpoint, o.table)
        publications.append(Publication(
            [LandedTable(endpoint.asset_name(o.table), o.landed)], [o.partition_key],
            output=single and key in context.selected_asset_keys, asset_key=key, extra=extra, checks=checks.get(key),
        ))
    return publish(context, lake, catalog, VENDOR, publications, views())


def _observe(endpoint: Endpoint, partition_keys: list[str], state: str, reason: str) -> Iterator[dg.AssetObservation]:
    for table in endpoint.tables:
        for key in partition_keys:
            yield dg.AssetObservation(asset_key=asset_key(endpoint, table), partition=key,
                                      metadata={SKIP_TAG: state, "reason": reason})


@dataclass
class _SchoolResult:
    """What one school's share of a run came to: landed tables, a reason it was skipped, or an error."""

    estab: str
    keys: list[str]
    outcomes: list[_Outcome] = field(default_factory=list)
    skipped: tuple[str, str] | None = None  # (state, reason) recorded as an observation
    error: Exception | None = None

    @property
    def rows(self) -> int:
        return sum(o.landed.rows for o in self.outcomes)


def _run_school(run: EndpointRun, part: Slice) -> _SchoolResult:
    """Fetch and land one school's partitions of the endpoint for one value of its filter dimension (runs on
    a worker thread)."""
    endpoint, log, estab = run.endpoint, run.log, part.estab
    result = _SchoolResult(estab, list(part.keys.values()))
    where = Where(VENDOR, endpoint.name, part.label)
    try:  # a mandatory filter without a value fails here, before any request (the register's included)
        part = run.prepare(part, where)
    except MissingFilter as exc:
        result.error = exc
        return result
    if part.people == ():
        people = endpoint.filter_of("people")
        reason = (f"no {people.people if people else 'people'} in the landed list of school {estab}: "
                  "nothing to request (the filter has no value)")
        log.warning(f"{where}: skipped: {reason}")
        result.skipped = ("no_people", reason)
        return result
    reason = run.skip_reason(estab)
    if reason:
        log.warning(f"{where}: skipped: {reason}")
        result.skipped = ("skipped", reason)
        return result
    client = run.xporter.client(estab, run.detail)
    try:
        result.outcomes = run.months(client, part, where) if endpoint.partitioned_by_month \
            else run.snapshot(client, part, where)
        if run.publishes:  # a lookup endpoint: its values, for the filter-discovery sensor
            for o in result.outcomes:
                o.extra.update(filter_values_metadata(endpoint, o.table.name, o.landed.path, log))
    except SchoolUnavailable as exc:
        log.warning(f"{exc}")
        result.skipped = (exc.reason, exc.what)
        return result
    except Exception as exc:  # handed to the run's thread, which reports every school's failure at the end
        result.error = exc
        return result
    finally:
        client.close()
    how = next((o.extra["change_set"] for o in result.outcomes if "change_set" in o.extra), "")
    why = next((o.extra["change_set_reason"] for o in result.outcomes if "change_set_reason" in o.extra), "")
    run.detail.info(f"{where}: landed {result.rows:,} rows in {len(result.outcomes)} table partition(s)"
                    + (f"; {how}" if how else "") + (f" ({why})" if why else ""))
    return result


def run_endpoint(context: dg.AssetExecutionContext, endpoint: Endpoint, config: XporterEndpointConfig,
                 xporter: XporterResource, lake: LakeResource,
                 checks: Mapping[dg.AssetKey, DatasetChecks]) -> Iterator[Any]:
    """Every school of the run's partitions, ``school_concurrency`` at a time: a run covering a batch of
    schools (a scheduled batch, a backfill) waits on the vendor for several schools at once, and each
    school's tables are reported (and checked) as soon as that school has landed."""
    run = EndpointRun(context, endpoint, config, xporter, lake.lake())
    catalog = lake.catalog()
    parts = slices(endpoint, run.partitioning, context.partition_keys)
    workers = max(1, min(config.school_concurrency, len(parts)))
    failed: list[_SchoolResult] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"xporter-{endpoint.name}") as pool:
        futures = [pool.submit(_run_school, run, part) for part in parts]
        results: list[_SchoolResult] = []
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            if result.skipped is not None:
                yield from _observe(endpoint, result.keys, *result.skipped)
            elif result.error is not None:
                if isinstance(result.error, DataNotReady):
                    context.log.warning(f"{result.error}")
                    yield from _observe(endpoint, result.keys, "not_ready", result.error.what)
                failed.append(result)
            else:
                yield from _emit(context, endpoint, result.outcomes, checks, run.lake, catalog)
    if len(results) > 1:
        landed = [r for r in results if r.skipped is None and r.error is None]
        context.log.info(
            f"[xporter] {endpoint.name}: {len(landed)} of {len(results)} schools landed "
            f"({sum(r.rows for r in landed):,} rows), {sum(r.skipped is not None for r in results)} skipped, "
            f"{len(failed)} failed ({workers} at a time; each school's lines are in the edu_assets.xporter logger)")
    _raise_for(failed, endpoint, len(parts), config)


def _raise_for(failed: list[_SchoolResult], endpoint: Endpoint, schools: int, config: XporterEndpointConfig) -> None:
    """After every other school is landed: retry the step when the vendor's data was not ready, else fail
    naming each school that failed."""
    if not failed:
        return
    errors = [f.error for f in failed if f.error is not None]
    if all(isinstance(e, DataNotReady) for e in errors):
        raise dg.RetryRequested(max_retries=config.not_ready_retries,
                                seconds_to_wait=config.not_ready_wait_seconds) from errors[0]
    if len(errors) == 1:
        raise errors[0]
    raise EduAssetsError(
        Where(VENDOR, endpoint.name, f"{len(failed)} of {schools} schools"),
        "; ".join(f"school {f.estab}: {f.error}" for f in failed[:5]) + (" ..." if len(failed) > 5 else ""),
        hint="the other schools landed; re-run the failed schools' partitions",
    )


@cache
def _config_schema(config_class: type[XporterEndpointConfig]) -> Any:
    """The run-config schema of a config class, inferred once: most of the 87 endpoints share one class, and
    Dagster infers a typed ``config`` parameter's schema again for every op (~4 ms each, a third of the
    definitions' load). The UI's launchpad shows the same fields, defaults and descriptions."""
    return config_class.to_fields_dict()


def endpoint_config(endpoint: Endpoint) -> type[XporterEndpointConfig]:
    """The endpoint's run config: the common fields, plus those its mandatory filters add (typed fields for
    a filter chosen in run config; the fan-out's batch size and concurrency)."""
    extra = config_fields(endpoint)
    if not extra:
        return XporterEndpointConfig
    name = "".join(p.title() for p in endpoint.name.split("_")) + "Config"
    return pydantic.create_model(name, __base__=XporterEndpointConfig, **extra)


def _backfill_policy(endpoint: Endpoint) -> dg.BackfillPolicy:
    """A range of months, school years or key stages is one run; many schools (or many lookup values) run
    in batches, landed concurrently inside each step."""
    partitioning = partitioning_for(endpoint)
    if isinstance(partitioning.definition, dg.MultiPartitionsDefinition):
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(FILTER_PARTITIONS_PER_RUN if partitioning.per_school_values else SCHOOLS_PER_RUN)


def build_endpoint_asset(endpoint: Endpoint) -> dg.AssetsDefinition:
    partitioning = partitioning_for(endpoint)
    partitions = partitioning.definition
    config_class = endpoint_config(endpoint)
    guessed = endpoint.path_confidence != "known_public_client"
    checks = build_checks(endpoint)  # declared on the asset and evaluated by its runs: built once
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
            tags={"edu/vendor": VENDOR, "edu/partitioning": partitioning.name},
        )
        for table in endpoint.tables
    ]

    @landing_asset(
        checks,  # a run may select only checks (the UI's "Execute check"); a fetch lands every table
        name=f"xporter__{endpoint.name}",
        specs=specs,
        partitions_def=partitions,
        pool=POOL,
        backfill_policy=_backfill_policy(endpoint),
        config_schema=_config_schema(config_class),
    )
    def _endpoint(context: dg.AssetExecutionContext, xporter: XporterResource, lake: LakeResource) -> Iterator[Any]:
        config = construct_config_from_context(config_class, context.op_execution_context)  # as Dagster does
        yield from run_endpoint(context, endpoint, config, xporter, lake, checks)

    return _endpoint


def build_checks(endpoint: Endpoint) -> dict[dg.AssetKey, DatasetChecks]:
    """Each table's checks: its key is unique (where the document names one) and its columns are the
    documented ones (WARN: a missing consent scope hides columns)."""
    partitioning = partitioning_for(endpoint)
    people = endpoint.filter_of("people")
    # a one-person-a-call fan-out (timetables) lands the same lesson once per person
    person = [PERSON_COLUMN[str(people.people)]] if people is not None and people.per_request == 1 else []
    suites = {}
    for table in endpoint.tables:
        if not (table.key or table.fields or asset_key(endpoint, table) == HEALTH):
            continue

        def locate(lake: Lake, key: str | None, _table: Table = table) -> Path:
            return lake.data_file(partitioning.pid(endpoint.asset_name(_table), str(key)))

        key = asset_key(endpoint, table)
        suites[key] = DatasetChecks(
            key, partitioning.definition, keys=[table.key, *person] if table.key else [],
            expected_columns=[*table.fields, *person] if table.fields else None,
            locate=locate, extra=[SCHOOL_DATA_FRESH] if key == HEALTH else [],
        )
    return suites


def views() -> list[ViewSpec]:
    """Every Xporter dataset's DuckDB views, declared once for its landing and for ``edu catalog``: plain
    views only. A school's partition is kept current in place by change sets, and a month's is that month,
    so no partition is a newer version of another; the monitoring datasets are replaced whole."""
    endpoints, management = load_catalog()
    tables = [ViewSpec(VENDOR, e.asset_name(t)) for e in endpoints for t in e.tables]
    monitoring = [ViewSpec(VENDOR, "schools"), *(ViewSpec(VENDOR, f"management_{m.name}") for m in management)]
    return [*tables, *monitoring]


def build_all() -> list[dg.AssetsDefinition]:
    """Every catalog endpoint as a multi-asset (its tables' checks are part of it)."""
    endpoints, _ = load_catalog()
    return [build_endpoint_asset(e) for e in endpoints]
