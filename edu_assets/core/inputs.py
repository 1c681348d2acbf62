"""Downstream use: a user's own asset takes a landed asset as input, as a pandas DataFrame or a DuckDB relation.

The vendor assets land their partitions themselves (they return metadata, not data), so nothing is stored
through an IO manager. :class:`LakeInputManager` only *loads*: for the upstream partitions the downstream
partition depends on (Dagster's partition mapping decides which), it finds each one's landed file from its
latest materialization (the ``path`` metadata every landing records) and reads them all in one DuckDB
query, with the hive partition columns (``snapshot_date``, ``month``, ...) as the catalog's views have them.

    from edu_assets.core.inputs import landed

    @dg.asset(partitions_def=MONTHLY, ins={"appointments": landed("stellic/all_appointments")})
    def appointments_per_advisor(appointments: pd.DataFrame) -> pd.DataFrame: ...

An input annotated ``duckdb.DuckDBPyRelation`` (or declared with ``landed(..., as_relation=True)``) gets a
lazy relation instead, for data larger than memory. A partition the input depends on that was never landed
fails the step with what to materialize (``landed(..., allow_missing=True)`` skips such partitions): a
summary silently missing a month is worse than no summary.

Both lakes work: an ``s3://`` partition is resolved to its current immutable version once, here, so the
input is one consistent version of each partition even while a landing replaces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from edu_assets.core.errors import ConfigError, Where
from edu_assets.core.lakepath import ObjectPath, lake_root, resolve
from edu_assets.core.naming import sql_str

if TYPE_CHECKING:
    import duckdb  # imported where used: it costs ~0.1 s, and the code location loads without it

INPUT_MANAGER_KEY = "lake_input"


def landed(
    asset: str | Sequence[str] | dg.AssetKey,
    *,
    partition_mapping: dg.PartitionMapping | None = None,
    as_relation: bool = False,
    allow_missing: bool = False,
) -> dg.AssetIn:
    """An ``AssetIn`` that loads landed partitions of ``asset`` (``"stellic/all_appointments"``)."""
    key = asset if isinstance(asset, dg.AssetKey) else (
        dg.AssetKey.from_user_string(asset) if isinstance(asset, str) else dg.AssetKey(list(asset)))
    return dg.AssetIn(key=key, input_manager_key=INPUT_MANAGER_KEY, partition_mapping=partition_mapping,
                      metadata={"as_relation": as_relation, "allow_missing": allow_missing})


class LakeInputManager(dg.ConfigurableIOManager):
    """Loads landed partitions for downstream assets; never stores anything (landings are the assets' own)."""

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        raise ConfigError(
            Where("lake"), f"{INPUT_MANAGER_KEY} only loads landed assets; it cannot store the output of "
            f"{context.asset_key.to_user_string() if context.has_asset_key else context.name}",
            hint="use it as an input manager (landed(...) / AssetIn(input_manager_key=...)), not as io_manager_key",
        )

    def load_input(self, context: dg.InputContext) -> Any:
        import duckdb
        upstream = context.asset_key
        partitions: list[str | None] = (
            list(context.asset_partition_keys) if context.has_asset_partitions else [None])
        meta = context.definition_metadata or {}
        found, missing = landed_paths(context.instance, upstream, partitions)
        name = upstream.to_user_string()
        if missing and not meta.get("allow_missing"):
            shown = ", ".join(str(p) for p in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ConfigError(
                Where(name.split("/", 1)[0], name, shown),
                f"{len(missing)} of the {len(partitions)} partition(s) this input depends on were never landed",
                hint=f"materialize {name} for those partitions first (or declare the input with allow_missing=True)",
            )
        relation = relation_of(found)
        typing_type = getattr(context.dagster_type, "typing_type", None)
        if meta.get("as_relation") or typing_type is duckdb.DuckDBPyRelation:
            return relation
        return relation.df()


def landed_paths(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Sequence[str | None],
) -> tuple[list[Path | ObjectPath], list[str | None]]:
    """(landed file of each partition that has one, partitions without) from the latest materializations."""
    paths: dict[str | None, Path | ObjectPath] = {}
    if partitions == [None]:
        event = instance.get_latest_materialization_event(key)
        mat = event.asset_materialization if event else None
        if mat is not None and "path" in mat.metadata:
            paths[None] = lake_root(str(mat.metadata["path"].value))
    else:
        wanted = {p for p in partitions if p is not None}
        cursor = None
        while wanted - set(paths):
            page = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=sorted(wanted - set(paths))),
                limit=1000, cursor=cursor, ascending=False)
            for record in page.records:  # newest first: the first seen of each partition is its latest
                mat = record.asset_materialization
                if mat is not None and mat.partition not in paths and "path" in mat.metadata:
                    paths[mat.partition] = lake_root(str(mat.metadata["path"].value))
            if not page.has_more:
                break
            cursor = page.cursor
    missing = [p for p in partitions if p not in paths]
    return [paths[p] for p in partitions if p in paths], missing


def relation_of(paths: Sequence[Path | ObjectPath]) -> duckdb.DuckDBPyRelation:
    """One lazy relation over landed partition files, with their hive partition columns.

    Each object-store partition is resolved to its current version now, so the relation reads one version
    of each; its connection has the lake's filesystem registered and lives as long as the relation."""
    import duckdb
    con = duckdb.connect()
    stores = {id(p.fs): p.fs for p in paths if isinstance(p, ObjectPath)}
    for fs in stores.values():
        con.register_filesystem(fs)
    files = [resolve(p) for p in paths]
    if not files:
        return con.sql("SELECT * FROM (SELECT NULL) WHERE false")
    listed = ", ".join(sql_str(f) for f in files)
    return con.sql(f"SELECT * FROM read_parquet([{listed}], hive_partitioning=true, union_by_name=true)")
