"""Asset checks that read the landed Parquet partition itself (not the run's own claims about it).

They are standalone checks, so a run that deferred its export (and landed nothing) skips them instead
of failing.
"""


from collections.abc import Callable, Sequence
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from edu_assets.core.lake import DATA_FILE, original_columns
from edu_assets.core.naming import snake_case
from edu_assets.core.resources import LakeResource

PartitionDims = Callable[[str | None], dict[str, str]]


def _partition_key(context: dg.AssetCheckExecutionContext) -> str | None:
    return context.run.tags.get("dagster/partition")


def _missing(path: Path) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, metadata={"reason": f"no landed file at {path}"})


def build_dataset_checks(
    asset_key: dg.AssetKey,
    vendor: str,
    dataset: str,
    partition_dims: PartitionDims,
    *,
    keys: Sequence[str] = (),
    expect_rows: bool = False,
    expected_columns: Sequence[str] | None = None,
) -> list[dg.AssetChecksDefinition]:
    checks: list[dg.AssetChecksDefinition] = []
    name = asset_key.path[-1]

    def partition_path(key: str | None, lake: LakeResource) -> Path:
        return lake.lake().partition_dir(vendor, dataset, partition_dims(key)) / DATA_FILE

    if expect_rows:

        @dg.asset_check(asset=asset_key, name="non_empty", description="The landed partition has at least one row.")
        def non_empty(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
            path = partition_path(_partition_key(context), lake)
            if not path.exists():
                return _missing(path)
            rows = pq.ParquetFile(path).metadata.num_rows
            return dg.AssetCheckResult(passed=rows > 0, metadata={"rows": rows})

        checks.append(non_empty)

    if keys:
        cols = [snake_case(k) for k in keys]

        @dg.asset_check(
            asset=asset_key, name="unique_key", description=f"{', '.join(keys)} identify a row of {name} uniquely."
        )
        def unique_key(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
            path = partition_path(_partition_key(context), lake)
            if not path.exists():
                return _missing(path)
            groups, rows = lake.lake().duplicate_key_counts(path, cols)
            return dg.AssetCheckResult(
                passed=groups == 0, metadata={"duplicate_keys": groups, "rows_with_duplicate_keys": rows, "key": ", ".join(cols)}
            )

        checks.append(unique_key)

    if expected_columns:
        expected = [c.strip() for c in expected_columns]

        @dg.asset_check(
            asset=asset_key,
            name="schema_drift",
            description="The vendor's columns match the documented ones (missing or unexpected columns warn).",
        )
        def schema_drift(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
            path = partition_path(_partition_key(context), lake)
            if not path.exists():
                return _missing(path)
            # Compared by normalised name: "User ID" (CSV) and "userId" (JSONL) are the same column.
            got = {snake_case(o): o for o in original_columns(path).values()}
            want = {snake_case(e): e for e in expected}
            missing = sorted(want[k] for k in set(want) - set(got))
            unexpected = sorted(got[k] for k in set(got) - set(want))
            return dg.AssetCheckResult(
                passed=not missing and not unexpected,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"missing_columns": ", ".join(missing) or "-", "unexpected_columns": ", ".join(unexpected) or "-"},
            )

        checks.append(schema_drift)
    return checks
