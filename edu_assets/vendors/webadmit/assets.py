"""WebAdMIT assets: the template register, and one dated snapshot per export template per run.

Templates are built by users in the WebAdMIT UI, so they cannot be known when the code location loads.
``webadmit/export_files`` is therefore one asset whose partitions are the templates (``<identity>-<export>``,
kept in step by the discovery sensor), and each template lands as its own dataset and DuckDB view
(``webadmit.export_<id>``, plus ``webadmit.export_<id>__<file>`` for each file of a multi-file CSV zip),
because every template has its own columns. ``webadmit/export_templates`` maps ids to names and formats.

Each materialization is a snapshot dated with the run's UTC day (``snapshot_date=…``); a re-run the same
day replaces it, and the ``_latest`` view holds the newest snapshot. Excel, fixed-width and HTML
templates are refused with a clear message before any vendor job is started.
"""

import json
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from edu_assets.core.catalog import ViewSpec
from edu_assets.core.errors import ConfigError, LandingError, Where
from edu_assets.core.export_asset import ExportRequest, LandedTable, Landing, materialize_export
from edu_assets.core.exports import ExportHandle
from edu_assets.core.lake import Lake
from edu_assets.core.naming import snake_case
from edu_assets.core.partition import PartitionId
from edu_assets.core.publish import Publication, publish
from edu_assets.core.resources import LakeResource
from edu_assets.vendors.webadmit.catalog import load_catalog
from edu_assets.vendors.webadmit.client import VENDOR, Template, status_key
from edu_assets.vendors.webadmit.partitions import TEMPLATES, parse_template_key
from edu_assets.vendors.webadmit.resources import WebAdmitResource

GROUP = POOL = VENDOR
EXPORT_FILES_KEY = dg.AssetKey([VENDOR, load_catalog().exports.name])
REGISTER_KEY = dg.AssetKey([VENDOR, load_catalog().templates.name])
WARNINGS_KEY = "vendor_warnings"


class WebAdmitExportConfig(dg.Config):
    inline_wait_seconds: float | None = None  # how long a run waits for the export file before deferring


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _land_template(template: Template):
    """CSV (ISO-8859-1 → UTF-8 Parquet), or a zip of CSVs as one dataset per file; an empty export lands an
    empty snapshot shaped like the previous one."""

    def land(landing: Landing) -> list[LandedTable]:
        r, lake, got = landing.request, landing.lake, landing.downloaded
        said_empty = landing.status is not None and status_key(landing.status.vendor_status) == "emptylist"
        if got is None or (said_empty and got.bytes == 0):  # only "Empty List" lands no rows
            if got is not None:
                got.path.unlink(missing_ok=True)
            datasets = _known_datasets(lake, template) or [template.dataset]
            return [
                LandedTable(d, lake.land_empty(r.where, r.pid.with_dataset(d), like=lake.latest_file(VENDOR, d)))
                for d in datasets
            ]
        if template.kind == "csv":
            return [
                LandedTable(
                    template.dataset,
                    lake.land_csv(got.path, r.where, r.pid, encoding=template.encoding),
                )
            ]
        return _land_zip(landing, template)

    return land


def _known_datasets(lake: Lake, template: Template) -> list[str]:
    root = lake.root / VENDOR
    if not root.exists():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and (p.name == template.dataset or p.name.startswith(template.dataset + "__"))
    )


def _land_zip(landing: Landing, template: Template) -> list[LandedTable]:
    r, lake, got = landing.request, landing.lake, landing.downloaded
    assert got is not None
    try:
        archive = zipfile.ZipFile(got.path)
    except zipfile.BadZipFile:
        raise LandingError(
            r.where,
            f"{template.name!r} should be a zip of CSV files but is not a zip",
            got.path,
            hint="re-run the partition; if it persists, check the template's format in WebAdMIT",
        ) from None
    tables: list[LandedTable] = []
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        csvs = [m for m in members if m.filename.lower().endswith(".csv")]
        if not csvs:
            raise LandingError(
                r.where,
                f"the zip holds no CSV files ({', '.join(m.filename for m in members) or 'empty'})",
                got.path,
                hint="check the template in WebAdMIT",
            )
        seen: set[str] = set()
        for member in csvs:
            name = f"{template.dataset}__{snake_case(Path(member.filename).stem)}"
            if name in seen:
                raise LandingError(r.where, f"two files in the zip map to the same table {name}", got.path)
            seen.add(name)
            pid = r.pid.with_dataset(name)
            staged = lake.work_path(pid, f"{uuid.uuid4().hex}.csv")
            with archive.open(member) as src, open(staged, "wb") as dst:  # streamed: memory stays flat
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            landed = lake.land_csv(staged, r.where, pid, encoding=template.encoding)
            tables.append(LandedTable(name, landed))
    got.path.unlink(missing_ok=True)
    return tables


def build_export_files_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=EXPORT_FILES_KEY,
        group_name=GROUP,
        partitions_def=TEMPLATES,
        description=(
            "One dated snapshot of a WebAdMIT export template per run. Partitions are templates "
            "(`<user identity id>-<export id>`), added by the `webadmit_template_discovery` sensor. Each template "
            "lands as its own DuckDB view `webadmit.export_<export id>` (multi-file CSV: `…__<file>`)."
        ),
        kinds={"webadmit", "parquet"},
        pool=POOL,
        output_required=False,
        tags={"edu/vendor": VENDOR, "edu/partitioning": "template_snapshot"},
        metadata={"duckdb_views": "webadmit.export_<export id>[__<file>] and *_latest"},
    )
    def export_files(
        context: dg.AssetExecutionContext,
        config: WebAdmitExportConfig,
        webadmit: WebAdmitResource,
        lake: LakeResource,
    ) -> Iterator[dg.MaterializeResult]:
        key = context.partition_key
        where = Where(VENDOR, "export_files", key)
        identity_id, export_id = parse_template_key(key)
        client = webadmit.client(context.log)
        try:
            template = client.template(identity_id, export_id, where)
            where = Where(VENDOR, f"export_files ({template.name})", key)
            if template.refusal:
                raise ConfigError(
                    where,
                    template.refusal,
                    hint="change the template's format to 'Comma-Separated Values' (or 'in Multiple "
                    "Files') in WebAdMIT, or delete this partition",
                )
            # a template's partition key names the template; its lake partition is the day's snapshot
            pid = PartitionId.of(VENDOR, template.dataset, {load_catalog().exports.snapshot_dim: _today()}, label=key)

            def start(_dest: Path) -> ExportHandle:
                return client.start(
                    template, where, asset_key=EXPORT_FILES_KEY.to_user_string(), partition_key=key
                )

            request = ExportRequest(
                pid,
                where=where,
                partition_key=key,
                api=client,
                start=start,
                encoding=template.encoding,
                views=views(),
                land=_land_template(template),
                suffix=f".{template.kind}",
                extra_metadata={
                    "template": template.name,
                    "export_id": export_id,
                    "user_identity_id": identity_id,
                    "format": template.format,
                    "duckdb_view": f"{VENDOR}.{template.dataset}",
                },
            )
            yield from materialize_export(
                context,
                request,
                lake=lake.lake(),
                catalog=lake.catalog(),
                inline_wait_seconds=config.inline_wait_seconds,
            )
        finally:
            client.http.close()

    return export_files


@dg.asset_check(
    asset=EXPORT_FILES_KEY,
    name="vendor_reported_no_errors",
    description="WebAdMIT finished the export without errors (a 'Success With Errors' file lands, and warns here).",
)
def vendor_reported_no_errors(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    partition = context.run.tags.get("dagster/partition")
    filt = dg.AssetRecordsFilter(
        asset_key=EXPORT_FILES_KEY, asset_partitions=[partition] if partition else None
    )
    records = context.instance.fetch_materializations(filt, limit=1).records
    if not records or records[0].asset_materialization is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "nothing landed yet for this template"})
    md = records[0].asset_materialization.metadata
    warnings = str(md[WARNINGS_KEY].value) if WARNINGS_KEY in md else ""
    return dg.AssetCheckResult(
        passed=not warnings,
        severity=dg.AssetCheckSeverity.WARN,
        description=warnings or None,
        metadata={
            "vendor_status": "Success With Errors" if warnings else "Available",
            WARNINGS_KEY: warnings or "-",
        },
    )


def build_register_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=REGISTER_KEY,
        group_name=GROUP,
        description="Every user identity's export templates: name, format, whether edu-assets lands it (and why "
        "not), its partition key and its DuckDB view. Refreshed by the discovery sensor when templates change.",
        kinds={"webadmit", "parquet"},
        pool=POOL,
        tags={"edu/vendor": VENDOR},
    )
    def export_templates(context: dg.AssetExecutionContext, webadmit: WebAdmitResource, lake: LakeResource):
        pid = PartitionId(VENDOR, load_catalog().templates.name)  # replaced whole: no dimensions
        where = pid.where
        client = webadmit.client(context.log)
        the_lake = lake.lake()
        staged = the_lake.work_path(pid, f"{uuid.uuid4().hex}.jsonl")
        try:
            with open(staged, "w", encoding="utf-8") as out:
                for ident in client.identities(where):
                    for t in client.templates(int(ident["id"]), where):
                        out.write(
                            json.dumps(
                                {
                                    "user_identity_id": t.identity_id,
                                    "identity_type": ident.get("type"),
                                    "organization": ident.get("organization"),
                                    "institution": ident.get("institution"),
                                    "association": ident.get("association"),
                                    "cycle": ident.get("cycle"),
                                    "export_id": t.export_id,
                                    "name": t.name,
                                    "list_type": t.list_type,
                                    "format": t.format,
                                    "mime_type": t.mime_type,
                                    "landed": t.refusal is None,
                                    "not_landed_because": t.refusal,
                                    "partition_key": t.partition_key,
                                    "duckdb_view": f"{VENDOR}.{t.dataset}",
                                }
                            )
                            + "\n"
                        )
        finally:
            client.http.close()
        landed = the_lake.land_json(staged, where, pid)
        staged.unlink(missing_ok=True)
        [result] = publish(context, the_lake, lake.catalog(), VENDOR, [Publication([LandedTable(pid.dataset, landed)])],
                           views())
        return result

    return export_templates


def views() -> list[ViewSpec]:
    """WebAdMIT's DuckDB views, declared once for its landing and for ``edu catalog``. Templates are named
    only at run time, so every ``export_<id>`` dataset (and ``export_<id>__<file>`` of a zip) is declared by
    pattern, with ``_latest`` its newest snapshot; the register (its own name wins over the pattern) is
    replaced whole on each run, so a plain view."""
    catalog = load_catalog()
    return [ViewSpec(VENDOR, catalog.exports.dataset_for("*"), latest_by=catalog.exports.snapshot_dim),  # type: ignore[arg-type]
            ViewSpec(VENDOR, catalog.templates.name)]


def build_all() -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    return [build_export_files_asset(), build_register_asset()], [vendor_reported_no_errors]
