"""Downstream use: a user's own asset receives landed partitions as a pandas DataFrame or a DuckDB relation.

Real runs end to end, in the local lake and in the object-store lake: Stellic partitions land over HTTP
from the sandbox, then a user's asset (declared here, as a user would in their own code location) is
materialized on the same instance and reads them through ``lake_input`` (``edu_assets.core.inputs``).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pandas as pd
import pytest

from edu_assets.core.catalog import Catalog
from edu_assets.core.inputs import landed
from edu_assets.definitions import selection_for
from edu_assets.vendors.stellic.partitions import today
from edu_assets_tests.helpers import failure_message, key, materialize

# the S3 fixtures, shared by two modules (conftest.py is not this area's): test arguments shadow the names
from edu_assets_tests.s3server import s3, s3_lake  # noqa: F401

TODAY = today().isoformat()


@pytest.fixture(params=["local", "s3"])
def lake_defs(request, sandbox, lake_env, instance) -> dg.Definitions:
    """The project's definitions over a local lake or an ``s3://`` one (built once the environment says which)."""
    if request.param == "s3":
        request.getfixturevalue("s3_lake")
    from edu_assets.definitions import build_definitions

    return build_definitions()


def _months(n: int) -> list[str]:
    first = today().replace(day=1)
    out = []
    for _ in range(n):
        first = (first - dt.timedelta(days=1)).replace(day=1)
        out.append(first.isoformat())
    return sorted(out)


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, user_asset: dg.AssetsDefinition, upstream: str,
         partition: str | None) -> dg.ExecuteInProcessResult:
    """Materialize only the user's asset (the upstream is already landed), as a real run with the project's
    resources."""
    return dg.materialize([user_asset, *selection_for(defs, [key(upstream)])], selection=[user_asset.key],
                          partition_key=partition, instance=instance, resources=defs.resources,
                          raise_on_error=False)


def test_partition_mapped_input_arrives_as_a_dataframe(lake_defs, instance):
    """A monthly user asset over the last three months of appointments (a partition mapping): it receives
    exactly the three landed partitions, with their ``month`` column, as the catalog's view has them."""
    months = _months(3)
    for month in months:
        assert materialize(lake_defs, instance, "all_appointments", month).success
    monthly = lake_defs.get_assets_def(key("all_appointments")).partitions_def
    got: dict[str, pd.DataFrame] = {}

    @dg.asset(partitions_def=monthly, ins={"appointments": landed(
        "stellic/all_appointments", partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-2))})
    def appointments_last_quarter(appointments: pd.DataFrame) -> dg.MaterializeResult:
        got["df"] = appointments
        return dg.MaterializeResult(metadata={"rows": len(appointments)})

    assert _run(lake_defs, instance, appointments_last_quarter, "stellic/all_appointments", months[-1]).success
    df = got["df"]
    with Catalog().connect() as con:
        expected = con.execute("SELECT count(*), count(DISTINCT month) FROM stellic.all_appointments").fetchall()
    assert isinstance(df, pd.DataFrame) and expected == [(len(df), 3)]
    assert sorted(str(m)[:10] for m in df["month"].unique()) == months

    # one month earlier, the quarter reaches a month never landed: the step fails and says what to land
    missing = _months(4)[0]
    result = _run(lake_defs, instance, appointments_last_quarter, "stellic/all_appointments", months[1])
    assert not result.success
    message = failure_message(result)
    assert "never landed" in message and missing in message and "materialize stellic/all_appointments" in message


def test_input_arrives_as_a_duckdb_relation(lake_defs, instance):
    """An unpartitioned user asset over a daily snapshot asset gets a lazy DuckDB relation of the partitions
    that were landed (``allow_missing``: the snapshot days never captured are skipped)."""
    assert materialize(lake_defs, instance, "engagement_score", TODAY).success
    got: dict[str, object] = {}

    @dg.asset(ins={"scores": landed("stellic/engagement_score", allow_missing=True)})
    def engagement_bands(scores: duckdb.DuckDBPyRelation) -> dg.MaterializeResult:
        got["rel"] = scores
        bands = scores.aggregate("count(*) AS n, count(DISTINCT snapshot_date) AS days").fetchall()
        got["bands"] = bands
        return dg.MaterializeResult(metadata={"rows": bands[0][0]})

    assert _run(lake_defs, instance, engagement_bands, "stellic/engagement_score", None).success
    assert isinstance(got["rel"], duckdb.DuckDBPyRelation)
    assert got["bands"] == [(200, 1)]


def test_the_input_manager_refuses_to_store_outputs(defs, instance):
    @dg.asset(io_manager_key="lake_input")
    def misused() -> int:
        return 1

    result = dg.materialize([misused], instance=instance, resources=defs.resources, raise_on_error=False)
    assert not result.success and "only loads landed assets" in failure_message(result)
