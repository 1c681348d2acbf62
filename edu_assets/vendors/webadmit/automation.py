"""WebAdMIT sensors and schedule: template discovery, export-file completion, a daily snapshot of every template."""

from __future__ import annotations

import json
from collections.abc import Iterator

import dagster as dg

from edu_assets.core.configured import skip_unless_configured
from edu_assets.core.demo_plan import DemoContext, Run, Say, Step, Tick
from edu_assets.core.errors import EduAssetsError, Where
from edu_assets.core.export_sensor import build_export_completion_sensor
from edu_assets.vendors.webadmit.assets import EXPORT_FILES_KEY, REGISTER_KEY
from edu_assets.vendors.webadmit.client import VENDOR
from edu_assets.vendors.webadmit.partitions import TEMPLATES
from edu_assets.vendors.webadmit.resources import WebAdmitResource, webadmit_mode


def build_completion_sensor() -> dg.SensorDefinition:
    return build_export_completion_sensor(
        name="webadmit_export_completion",
        vendor=VENDOR,
        asset_keys=[EXPORT_FILES_KEY],
        resource_key="webadmit",
        mode=webadmit_mode,
    )


def build_discovery_sensor() -> dg.SensorDefinition:
    """Keeps the ``webadmit_export`` partitions equal to the landable templates of every identity the key
    can reach: new ones are added (a new academic cycle brings a new identity), deleted ones are removed
    (their landed snapshots stay), and the template register is refreshed when anything changed.
    Templates in formats edu-assets does not land are listed in the register, not added as partitions."""

    @dg.sensor(
        name="webadmit_template_discovery",
        minimum_interval_seconds=900,  # 1 + identities requests per tick, out of 5,000 an hour
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={"webadmit"},
        asset_selection=[REGISTER_KEY],
        description="Adds and removes webadmit/export_files partitions as export templates appear and disappear.",
    )
    @skip_unless_configured(webadmit_mode)
    def _sensor(context: dg.SensorEvaluationContext, **_resources: object) -> dg.SensorResult | dg.SkipReason:
        webadmit: WebAdmitResource = context.resources.webadmit
        client = webadmit.client(context.log)
        where = Where(VENDOR, "template discovery")
        try:
            identities = client.identities(where)
            templates = [t for ident in identities for t in client.templates(int(ident["id"]), where)]
        except EduAssetsError as exc:
            return dg.SkipReason(f"could not list WebAdMIT templates ({exc}); will retry next tick")
        finally:
            client.http.close()
        wanted = {t.partition_key for t in templates if t.refusal is None}
        refused = sorted(f"{t.name} ({t.format})" for t in templates if t.refusal)
        known = set(context.instance.get_dynamic_partitions(TEMPLATES.name))
        added, removed = sorted(wanted - known), sorted(known - wanted)
        fingerprint = json.dumps(sorted((t.partition_key, t.name, t.format) for t in templates))
        requests: list[dg.DynamicPartitionsRequest] = []
        if added:
            requests.append(TEMPLATES.build_add_request(added))
            context.log.info(f"[webadmit] new templates: {', '.join(added)}")
        if removed:
            requests.append(TEMPLATES.build_delete_request(removed))
            context.log.info(f"[webadmit] templates gone (landed snapshots kept): {', '.join(removed)}")
        if refused:
            context.log.info(f"[webadmit] not landed (format): {', '.join(refused)}")
        runs = []
        if fingerprint != context.cursor:
            runs.append(dg.RunRequest(run_key=f"templates-{abs(hash(fingerprint))}-{len(templates)}",
                                      asset_selection=[REGISTER_KEY]))
        return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=requests, cursor=fingerprint)

    return _sensor


def build_daily_schedule() -> dg.ScheduleDefinition:
    job = dg.define_asset_job(
        "webadmit_daily_snapshots", selection=dg.AssetSelection.assets(EXPORT_FILES_KEY), partitions_def=TEMPLATES,
        tags={"edu/vendor": VENDOR}, description="Today's snapshot of every landable WebAdMIT export template.",
    )

    @dg.schedule(cron_schedule="30 5 * * *", job=job, name="webadmit_daily_snapshots_schedule", execution_timezone="UTC")
    @skip_unless_configured(webadmit_mode)
    def _schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        day = context.scheduled_execution_time.date().isoformat()
        return [dg.RunRequest(run_key=f"{key}-{day}", partition_key=key)
                for key in context.instance.get_dynamic_partitions(TEMPLATES.name)]

    return _schedule


def demo_plan(ctx: DemoContext) -> Iterator[Step]:
    """Discover templates as the sensor would, land the register, then today's snapshot of every template."""
    yield Tick("webadmit_template_discovery")
    templates = ctx.instance.get_dynamic_partitions(TEMPLATES.name)
    yield Say(f"webadmit: {len(templates)} landable export template(s)")
    yield Run("webadmit template register", (REGISTER_KEY,), missing="deferred")
    for key in templates:
        yield Run(f"webadmit export template {key}", (EXPORT_FILES_KEY,), key, missing="deferred")
