"""Sensors and schedules of a vendor that cannot be used skip, with one reason that says what to set.

In a deployment, a vendor without credentials is *not configured* (see ``core/settings.py``). Its
sensors and schedules must not make a request a tick, nor fail every tick: they skip, and the skip
reason names the vendor, the variables to set and ``EDU_SANDBOX_URL``. A half-configured vendor (a
token without its institution, secrets that are not JSON...) fails the tick instead, before any
request, with what to fix: that is a mistake to see in red, not a state to wait in.

The vendor is identified only by the mode function it passes in; this module names no vendor.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import dagster as dg

from edu_assets.core.settings import VendorMode

F = TypeVar("F", bound=Callable[..., Any])


def skip_unless_configured(mode: Callable[[], VendorMode]) -> Callable[[F], F]:
    """Decorate a sensor's or schedule's evaluation function (under ``@dg.sensor`` / ``@dg.schedule``).

    The mode is read at tick time, in the process that evaluates the tick. The wrapper keeps the
    function's signature (``functools.wraps``), so Dagster still sees its context and resource parameters.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def gated(*args: Any, **kwargs: Any) -> Any:
            current = mode()
            error = current.error()
            if error is None:
                return fn(*args, **kwargs)
            if current.problems:
                raise error  # half-configured: say what to fix, in red
            return dg.SkipReason(f"{error}. Until then its sensors and schedules skip.")

        return gated  # type: ignore[return-value]

    return decorate


def latest_partition_schedule(
    job: Any,  # what dg.define_asset_job returns
    partitions_def: dg.TimeWindowPartitionsDefinition,
    *,
    name: str,
    mode: Callable[[], VendorMode],
    hour_of_day: int,
    minute_of_hour: int = 0,
    description: str | None = None,
) -> dg.ScheduleDefinition:
    """``dg.build_schedule_from_partitioned_job`` for a time-partitioned job, gated by the vendor's mode:
    each tick requests the newest partition at the tick's time (run key = partition key), or skips."""

    @dg.schedule(
        name=name, job=job, description=description, execution_timezone=partitions_def.timezone,
        cron_schedule=partitions_def.get_cron_schedule(minute_of_hour=minute_of_hour, hour_of_day=hour_of_day),
    )
    @skip_unless_configured(mode)
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        key = partitions_def.get_last_partition_key(current_time=context.scheduled_execution_time)
        if key is None:
            return dg.SkipReason(f"{job.name}: no partition exists yet at {context.scheduled_execution_time}")
        return dg.RunRequest(run_key=key, partition_key=key)

    return _schedule


R = TypeVar("R")


def resource_for_mode(
    resource: Callable[..., R],
    mode: VendorMode,
    *,
    live: Mapping[str, Any],
    sandbox: Mapping[str, Any],
    unset: Mapping[str, Any],
    **common: Any,
) -> R:
    """A vendor's resource for how the vendor is reached now, the same way for every vendor.

    *live*: ``live`` holds its secrets as ``dg.EnvVar`` (the UI shows only their names); *sandbox*: the
    sandbox's published credentials; *not configured* or *half-configured*: no base URL and empty secrets
    (``unset``), so the definitions load before secrets exist and a run fails before any request, saying
    what to set. ``common`` are the vendor's settings, the same in every mode."""
    if mode.error() is not None:
        return resource(base_url="", **unset, **common)
    return resource(base_url=mode.base_url, **(live if mode.live else sandbox), **common)
