"""Partner API reads as assets: every ``partner_reads`` entry of ``catalog.yaml`` becomes one asset.

Partitions: the snapshot date (these reads return Stellic's current state, as the bulk exports do) times
the documented values of the read's path parameters (``property``; or ``view``, a combination such as
``unmatched.planned`` for the audit reads), so each partition is exactly one kind of request.

* ``bulk`` reads (one CSV for every student) run through the shared export body, like the bulk exports.
* ``per_student`` reads are fanned out, in one run, over the usernames of the landed student list (the
  catalog's ``student_list``: the bulk read's partition of the same date, else its latest), with bounded
  concurrency. Every request goes through the one Stellic HTTP session, so the per-vendor pace and rate
  budget (see ``resources.py``) hold across threads; a 429 is retried after its ``Retry-After``.
  A student Stellic does not know (404) or refuses (``success: false``) is counted, logged and reported
  (metadata and the ``every_student_answered`` WARN check); when no student answers, or an answer has none
  of the documented result sets, the partition fails and its previous file is kept.
"""

import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from edu_assets.core.checks import DatasetChecks, FileCheck, landing_asset
from edu_assets.core.errors import ConfigError, VendorHTTPError, Where
from edu_assets.core.export_asset import land_and_close
from edu_assets.core.http import Log
from edu_assets.core.lake import Lake, read_state, read_table
from edu_assets.core.naming import snake_case
from edu_assets.core.partition import PartitionId
from edu_assets.core.publish import LandedTable, Publication, publish
from edu_assets.core.resources import LakeResource
from edu_assets.core.staging import JsonStage, staging
from edu_assets.vendors.stellic.assets import export_request, views
from edu_assets.vendors.stellic.catalog import PartnerReadSpec, StudentList, load_partner_reads
from edu_assets.vendors.stellic.client import VENDOR, StellicClient, messages, parse_student_read
from edu_assets.vendors.stellic.partitions import PARTITIONINGS, check_snapshot_date
from edu_assets.vendors.stellic.resources import StellicResource

GROUP = POOL = VENDOR
DATE = "snapshot_date"
MAX_CONCURRENCY = 16
EVERY_STUDENT = "every_student_answered"
SAMPLE = 20  # usernames shown in metadata and errors


class PartnerBulkConfig(dg.Config):
    """Run config of a bulk partner read."""

    inline_wait_seconds: float | None = None  # should Stellic answer asynchronously after all
    allow_past_snapshot: bool = False


class StudentReadConfig(dg.Config):
    """Run config of a per-student partner read."""

    usernames: list[str] = []  # read these students instead of the landed student list
    max_students: int | None = None  # the first N of the list (a trial run)
    concurrency: int = 4  # requests in flight at once (1-16); the per-vendor pace still applies
    allow_past_snapshot: bool = False


def read_key(spec: PartnerReadSpec) -> dg.AssetKey:
    return dg.AssetKey([VENDOR, spec.name])


def partitions_def(spec: PartnerReadSpec) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {DATE: PARTITIONINGS["snapshot"].definition, spec.dim: dg.StaticPartitionsDefinition(spec.views)}
    )


def partition_key(spec: PartnerReadSpec, view: str, day: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({spec.dim: view, DATE: day})


def partition_id(spec: PartnerReadSpec, view: str, day: str) -> PartitionId:
    """The lake partition of one view and day: ``<dim>=<view>/snapshot_date=<day>`` (the view first)."""
    return PartitionId.of(VENDOR, spec.name, {spec.dim: view, DATE: day}, label=str(partition_key(spec, view, day)))


def _pid(spec: PartnerReadSpec, key: str) -> PartitionId:
    """The lake partition of a Dagster partition key of the read (Dagster sorts the dimensions; the lake
    nests the view first)."""
    return PartitionId.from_key(VENDOR, spec.name, partitions_def(spec), key, order=(spec.dim, DATE))


def _asset_spec(spec: PartnerReadSpec, deps: Iterable[dg.AssetDep] = ()) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=read_key(spec),
        group_name=GROUP,
        partitions_def=partitions_def(spec),
        description=(
            f"{spec.description}\n\nStellic partner API ({spec.doc} of its document), "
            f"`/partnerapi/v1/{spec.path}` (path assumed: the document's text does not give it)."
        ),
        kinds={"stellic", "parquet"},
        skippable=True,
        deps=list(deps),
        tags={"edu/vendor": VENDOR, "edu/partitioning": f"{spec.dim}_snapshot"},
        metadata={
            "vendor_path": f"partnerapi/v1/{spec.path}",
            "partition_columns": f"{spec.dim}, {DATE}",
            "duckdb_view": f"{VENDOR}.{spec.name}",
            "category": spec.category,
            "read_kind": spec.kind,
        },
    )


def build_checks(spec: PartnerReadSpec) -> DatasetChecks:
    def locate(lake: Lake, key: str | None) -> Path | None:
        if key is None:
            return None
        return lake.data_file(_pid(spec, key))

    extra = (
        [
            FileCheck(
                EVERY_STUDENT,
                "Every student of the list answered (none unknown to Stellic or refused).",
                _every_student_answered,
            )
        ]
        if spec.kind == "per_student"
        else []
    )
    return DatasetChecks(
        read_key(spec),
        partitions_def(spec),
        keys=spec.keys,
        expect_rows=spec.expect_rows,
        expected_columns=spec.columns,
        locate=locate,
        extra=extra,
    )


def _every_student_answered(path: Path) -> tuple[bool, dict, str | None]:
    state = read_state(path)
    if "students_requested" not in state:
        return False, {"reason": "the landed file records no fan-out"}, None
    missing = int(state.get("students_not_found", 0)) + int(state.get("students_refused", 0))
    md = {
        k: state[k]
        for k in ("students_requested", "students_answered", "students_not_found", "students_refused")
    }
    if state.get("missing_sample"):
        md["missing_sample"] = ", ".join(state["missing_sample"])
    text = None if not missing else f"{missing} of {state['students_requested']} students gave no answer"
    return missing == 0, md, text


# ---------------------------------------------------------------------------------------------- bulk


def build_bulk_read_asset(spec: PartnerReadSpec) -> dg.AssetsDefinition:
    checks = build_checks(spec)

    @landing_asset(
        checks,
        name=f"{VENDOR}__{spec.name}",
        specs=[_asset_spec(spec)],
        partitions_def=partitions_def(spec),
        pool=POOL,
    )
    def _read(
        context: dg.AssetExecutionContext,
        config: PartnerBulkConfig,
        stellic: StellicResource,
        lake: LakeResource,
    ):
        key = str(context.partition_key)
        pid = _pid(spec, key)
        view, day, where = pid.value(spec.dim), pid.value(DATE), pid.where
        check_snapshot_date(day, where, config.allow_past_snapshot)
        client = stellic.client(context.log)
        path = client.partner_path(spec.request_path(view))
        request = export_request(context, client, pid, path, list(spec.query.items()), expected_columns=spec.columns,
                                 checks=checks)
        yield from land_and_close(context, [request], client.http, lake, config.inline_wait_seconds)

    return _read


# ---------------------------------------------------------------------------------------------- fan-out


def fan_out(items: Iterable[str], fetch: Callable[[str], Any], concurrency: int) -> Iterator[tuple[str, Any]]:
    """``(item, fetch(item))`` as each finishes (a raised exception is the value), with at most
    ``concurrency`` calls in flight and ``2 x concurrency`` queued: the list can be any length without the
    backlog growing. Leaving the loop early cancels what has not started."""
    pending: dict[Future[Any], str] = {}
    source = iter(items)
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="stellic-student")

    def submit() -> None:
        for item in source:
            pending[pool.submit(fetch, item)] = item
            if len(pending) >= 2 * concurrency:
                return

    try:
        submit()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = pending.pop(future)
                exc = future.exception()
                yield item, (exc if exc is not None else future.result())
            submit()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class FanOutReport:
    """What one fan-out saw, for metadata, the log and the ``every_student_answered`` check."""

    requested: int = 0
    answered: int = 0
    not_found: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # username -> Stellic's message
    rows_by_set: Counter[str] = field(default_factory=Counter)
    unknown_sets: Counter[str] = field(default_factory=Counter)

    @property
    def missing(self) -> list[str]:
        return self.not_found + list(self.refused)

    def state(self) -> dict[str, Any]:
        return {
            "students_requested": self.requested,
            "students_answered": self.answered,
            "students_not_found": len(self.not_found),
            "students_refused": len(self.refused),
            "missing_sample": self.missing[:SAMPLE],
        }


def read_students(
    client: StellicClient,
    spec: PartnerReadSpec,
    view: str,
    usernames: list[str],
    stage: JsonStage,
    where: Where,
    concurrency: int,
) -> FanOutReport:
    """Read ``view`` for every username, writing each answer's rows to ``stage`` as it arrives."""
    report = FanOutReport(requested=len(usernames))
    documented = spec.documented_sets(view)
    columns = spec.values(view) if len(spec.axes) > 1 else {}  # one axis: the partition column says it

    def fetch(username: str) -> Any:
        return client.read_json(spec.request_path(view, username), where)

    with closing(
        fan_out(usernames, fetch, concurrency)
    ) as answers:  # an error below cancels the rest at once
        for username, body in answers:
            _take(report, spec.name, username, body, stage, where, documented, columns)
    return report


def _take(
    report: FanOutReport,
    name: str,
    username: str,
    body: Any,
    stage: JsonStage,
    where: Where,
    documented: tuple[str, ...] | None,
    columns: dict[str, str],
) -> None:
    """Account for one student's answer: rows to the stage, or a 404/refusal counted, or the error raised."""
    if isinstance(body, VendorHTTPError) and body.status == 404:
        report.not_found.append(username)
        return
    if isinstance(body, BaseException):
        raise body
    if isinstance(body, dict) and body.get("success") is False:
        report.refused[username] = messages(body)
        return
    read = parse_student_read(body, where, username=username, documented=documented, columns=columns)
    stage.write(name, read.rows)
    report.answered += 1
    report.rows_by_set.update(read.rows_by_set)
    report.unknown_sets.update(read.unknown_sets)


def student_usernames(
    lake: Lake,
    students: StudentList,
    source: PartnerReadSpec,
    day: str,
    where: Where,
    log: Log,
) -> tuple[list[str], str]:
    """The usernames of the landed student list for ``day`` (else its latest partition), and which one."""
    listed = partition_id(source, students.view, day)
    path = lake.data_file(listed)
    label = f"{VENDOR}/{source.name} {listed.key}"
    if not path.exists():
        landed = lake.partitions(VENDOR, source.name, within={source.dim: students.view})
        if not landed:
            raise ConfigError(
                where,
                f"no student list is landed: per-student reads take their usernames from {VENDOR}/"
                f"{source.name} ({source.dim} {students.view})",
                hint=f"materialize {VENDOR}/{source.name} partition {partition_key(source, students.view, day)} "
                "first, or list the students in this asset's run config (usernames)",
            )
        path = landed[-1]
        label = f"{VENDOR}/{source.name} {students.view}, {path.parent.name} (latest landed; none for {day})"
        log.warning(f"{where}: no student list landed for {day}; using {label}")
    column = snake_case(students.column)
    try:
        values = read_table(path, columns=[column]).column(column).to_pylist()
    except (KeyError, ValueError) as exc:
        raise ConfigError(
            where,
            f"the student list {label} has no column {column!r} ({exc})",
            hint="re-materialize the student list; check student_list in the Stellic catalog",
        ) from None
    return list(dict.fromkeys(str(v).strip() for v in values if v is not None and str(v).strip())), label


def build_student_read_asset(
    spec: PartnerReadSpec, students: StudentList, source: PartnerReadSpec
) -> dg.AssetsDefinition:
    checks = build_checks(spec)
    with warnings.catch_warnings():  # MultiPartitionMapping is a Dagster beta: deliberate here
        warnings.simplefilter("ignore", dg.BetaWarning)
        # a day's reads depend on that day's student list, whatever its property
        dep = dg.AssetDep(
            read_key(source),
            partition_mapping=dg.MultiPartitionMapping(
                {DATE: dg.DimensionPartitionMapping(DATE, dg.IdentityPartitionMapping())}
            ),
        )

    @landing_asset(
        checks,
        name=f"{VENDOR}__{spec.name}",
        specs=[_asset_spec(spec, [dep])],
        partitions_def=partitions_def(spec),
        pool=POOL,
    )
    def _read(
        context: dg.AssetExecutionContext,
        config: StudentReadConfig,
        stellic: StellicResource,
        lake: LakeResource,
    ):
        the_lake = lake.lake()
        key = str(context.partition_key)
        pid = _pid(spec, key)
        view, day, where = pid.value(spec.dim), pid.value(DATE), pid.where
        check_snapshot_date(day, where, config.allow_past_snapshot)
        if not 1 <= config.concurrency <= MAX_CONCURRENCY:
            raise ConfigError(where, f"concurrency must be 1-{MAX_CONCURRENCY}, got {config.concurrency}")
        if config.usernames:
            usernames, list_source = list(dict.fromkeys(config.usernames)), "run config usernames"
        else:
            usernames, list_source = student_usernames(the_lake, students, source, day, where, context.log)
        if config.max_students is not None:
            usernames = usernames[: max(config.max_students, 0)]
        if not usernames:
            raise ConfigError(
                where,
                f"the student list ({list_source}) has no usernames: nothing to read",
                hint="land a student list with students in it, or set usernames in the run config",
            )
        client = stellic.client(context.log)
        context.log.info(
            f"{where}: reading {len(usernames):,} students from {list_source}, {config.concurrency} at a time"
        )
        try:
            with staging(
                JsonStage.attempt_dir(the_lake.settings, context, VENDOR, spec.name), the_lake.settings
            ) as stage:
                report = read_students(client, spec, view, usernames, stage, where, config.concurrency)
                _refuse_silence(report, spec, view, where)
                landed = the_lake.land_json(stage.finish(spec.name), where, pid, state=report.state())
        finally:
            client.http.close()
        _log_report(context.log, report, where)
        yield from publish(context, the_lake, lake.catalog(), VENDOR, [Publication(
            [LandedTable(spec.name, landed)], [key], checks=checks,
            extra=_metadata(report, spec, view, list_source, config.concurrency),
        )], views())

    return _read


def _refuse_silence(report: FanOutReport, spec: PartnerReadSpec, view: str, where: Where) -> None:
    """No student answered: fail (keeping the previous file) rather than land an empty partition."""
    if report.answered:
        return
    refused = next(iter(report.refused.values()), "")
    raise VendorHTTPError(
        where,
        f"none of the {report.requested:,} students answered: {len(report.not_found):,} not found (HTTP 404)"
        + (f", {len(report.refused):,} refused (first: {refused!r})" if report.refused else "")
        + f"; first: {', '.join(report.missing[:5])}",
        hint=f"the path /partnerapi/v1/{spec.request_path(view)} is assumed (Stellic's "
        "document does not give it): confirm it with Stellic and correct `path` in "
        "edu_assets/vendors/stellic/catalog.yaml; or check that the student list is this tenant's",
        status=404 if report.not_found else None,
    )


def _log_report(log: Log, report: FanOutReport, where: Where) -> None:
    if report.not_found:
        log.warning(
            f"{where}: {len(report.not_found):,} of {report.requested:,} students are unknown to Stellic "
            f"(HTTP 404), e.g. {', '.join(report.not_found[:5])}; landed the others"
        )
    if report.refused:
        first = next(iter(report.refused.items()))
        log.warning(
            f"{where}: Stellic refused {len(report.refused):,} students (first: {first[0]}: {first[1]!r}); "
            "landed the others"
        )
    if report.unknown_sets:
        log.warning(
            f"{where}: result sets the document does not show for this property were landed: "
            f"{dict(report.unknown_sets)}"
        )


def _metadata(report: FanOutReport, spec: PartnerReadSpec, view: str, source: str, concurrency: int) -> dict:
    md: dict[str, Any] = {
        "student_list": source,
        "students_requested": report.requested,
        "students_answered": report.answered,
        "students_not_found": len(report.not_found),
        "students_refused": len(report.refused),
        "concurrency": concurrency,
        "request_path": f"partnerapi/v1/{spec.request_path(view)}",
        "result_sets": ", ".join(f"{k}={v}" for k, v in sorted(report.rows_by_set.items())) or "-",
    }
    if report.missing:
        md["students_missing_sample"] = ", ".join(report.missing[:SAMPLE])
    if report.unknown_sets:
        md["unknown_result_sets"] = ", ".join(sorted(report.unknown_sets))
    if spec.documented_sets(view) is None:
        md["result_sets_note"] = "the document shows no sample for this property: every result set was landed"
    return md


def build_partner_assets() -> list[dg.AssetsDefinition]:
    """Every partner read of the catalog as an asset (its checks are part of it)."""
    reads, students = load_partner_reads()
    source = next(r for r in reads if r.name == students.read)
    return [
        build_bulk_read_asset(r) if r.kind == "bulk" else build_student_read_asset(r, students, source)
        for r in reads
    ]
