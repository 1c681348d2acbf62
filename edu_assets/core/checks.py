"""Asset checks of a landed dataset, evaluated by the step that lands it, one evaluation per partition.

Why in the landing step and not as standalone ``@asset_check`` steps: a standalone check runs only in a
single-partition run (Dagster skips it in range backfills and single-run backfills, where the asset step
yields per-partition materializations instead of an output), and each one is a step of its own, with its
own events and its own read of the file. Declared as the asset's ``check_specs`` (partitioned like the
asset) and evaluated right after each partition lands, every landed partition is checked in the run that
lands it, whatever launched the run, and the UI shows the result per partition.

A run that selects only a check (the UI's *Execute check*) lands nothing: :func:`evaluate_selected` checks
the partition's file as it is in the lake. Checks read the landed Parquet file itself, never the run's own
claims about it.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation

from edu_assets.core.lake import Lake, original_columns, parquet_rows
from edu_assets.core.naming import snake_case

Locate = Callable[[Lake, str | None], Path | None]
"""Where a partition's landed file is (None: it has none), for runs that check without landing."""

NON_EMPTY, UNIQUE_KEY, SCHEMA_DRIFT = "non_empty", "unique_key", "schema_drift"


@dataclass(frozen=True)
class FileCheck:
    """A dataset-specific check of a landed file: ``run(path)`` gives (passed, metadata, description)."""

    name: str
    description: str
    run: Callable[[Path], tuple[bool, dict, str | None]]
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN


@dataclass(frozen=True)
class DatasetChecks:
    """The checks of one landed dataset: declared on its asset, evaluated on each landed partition."""

    asset_key: dg.AssetKey
    partitions_def: dg.PartitionsDefinition | None = None
    keys: Sequence[str] = ()
    expect_rows: bool = False
    expected_columns: Sequence[str] | None = None
    locate: Locate | None = None
    extra: Sequence[FileCheck] = ()

    @cached_property
    def described(self) -> dict[str, str]:
        """Check name -> description, for the checks this dataset has."""
        name = self.asset_key.path[-1]
        wanted = [
            (self.expect_rows, NON_EMPTY, "The landed partition has at least one row."),
            (bool(self.keys), UNIQUE_KEY, f"{', '.join(self.keys)} identify a row of {name} uniquely."),
            (bool(self.expected_columns), SCHEMA_DRIFT,
             "The vendor's columns match the documented ones (missing or unexpected columns warn)."),
        ]
        return {check: text for on, check, text in wanted if on} | {c.name: c.description for c in self.extra}

    def specs(self) -> list[dg.AssetCheckSpec]:
        with warnings.catch_warnings():  # partitioned check specs are a Dagster preview: deliberate here
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return [dg.AssetCheckSpec(check, asset=self.asset_key, description=text, partitions_def=self.partitions_def)
                    for check, text in self.described.items()]

    def check_keys(self) -> set[dg.AssetCheckKey]:
        return {dg.AssetCheckKey(self.asset_key, check) for check in self.described}

    def evaluate(
        self,
        lake: Lake,
        path: Path | None,
        partition: str | None,
        selected: Iterable[dg.AssetCheckKey] | None = None,
    ) -> Iterator[AssetCheckEvaluation]:
        """One evaluation per selected check of this dataset, on the partition's landed file at ``path``."""
        wanted = set(selected) if selected is not None else None
        for check in self.described:
            if wanted is not None and dg.AssetCheckKey(self.asset_key, check) not in wanted:
                continue
            passed, severity, metadata, description = self._run(check, lake, path)
            yield AssetCheckEvaluation(
                asset_key=self.asset_key, check_name=check, passed=passed, severity=severity, metadata=metadata,
                description=description, partition=partition if self.partitions_def is not None else None,
            )

    def _run(self, check: str, lake: Lake, path: Path | None) -> tuple[bool, dg.AssetCheckSeverity, dict, str | None]:
        error, warn = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
        custom = next((c for c in self.extra if c.name == check), None)
        if path is None or not path.exists():
            return (False, custom.severity if custom else error,
                    {"reason": f"no landed file{f' at {path}' if path else ''}: materialize the partition"}, None)
        if custom is not None:
            passed, metadata, description = custom.run(path)
            return passed, custom.severity, metadata, description
        if check == NON_EMPTY:
            rows = parquet_rows(path)  # local or object-store lake
            return rows > 0, error, {"rows": rows}, None
        if check == UNIQUE_KEY:
            cols = [snake_case(k) for k in self.keys]
            groups, rows = lake.duplicate_key_counts(path, cols)
            return groups == 0, error, {"duplicate_keys": groups, "rows_with_duplicate_keys": rows,
                                        "key": ", ".join(cols)}, None
        # Compared by normalised name: "User ID" (CSV) and "userId" (JSONL) are the same column.
        got = {snake_case(o): o for o in original_columns(path).values()}
        want = {snake_case(e): e for e in (self.expected_columns or [])}
        missing = sorted(want[k] for k in set(want) - set(got))
        unexpected = sorted(got[k] for k in set(got) - set(want))
        return not missing and not unexpected, warn, {"missing_columns": ", ".join(missing) or "-",
                                                      "unexpected_columns": ", ".join(unexpected) or "-"}, None


def evaluate_selected(
    context: dg.AssetExecutionContext, suites: Mapping[dg.AssetKey, DatasetChecks], lake: Lake,
) -> Iterator[AssetCheckEvaluation]:
    """A run that selected checks but none of the assets (*Execute check* in the UI): check every partition
    of the run against the files already in the lake."""
    selected = set(context.selected_asset_check_keys)
    partitioned = context.has_partition_key or context.has_partition_key_range
    partitions: list[str | None] = list(context.partition_keys) if partitioned else [None]
    for suite in suites.values():
        if not selected & suite.check_keys():
            continue
        for partition in partitions:
            path = suite.locate(lake, partition) if suite.locate is not None else None
            yield from suite.evaluate(lake, path, partition, selected)


def checks_only(context: dg.AssetExecutionContext) -> bool:
    """True when the run selected this step's checks but none of its assets."""
    return not context.selected_asset_keys and bool(context.selected_asset_check_keys)


def landing_asset(checks: DatasetChecks | Mapping[dg.AssetKey, DatasetChecks] | None = None,
                  **multi_asset_args: Any) -> Callable[[Callable[..., Iterator[Any]]], dg.AssetsDefinition]:
    """``dg.multi_asset`` for a step that lands data and carries its checks, the same for every vendor.

    The checks' specs are declared on the asset; a run may select only the checks (*Execute check* in the
    UI), and such a run checks the files already in the lake without calling the vendor, so the step's
    own function never sees it. The function takes the ``lake`` resource (Dagster passes resources by
    name); its signature is what Dagster reads (``functools.wraps``)."""
    suites: Mapping[dg.AssetKey, DatasetChecks] = (
        {} if checks is None else {checks.asset_key: checks} if isinstance(checks, DatasetChecks) else checks)

    def decorate(fn: Callable[..., Iterator[Any]]) -> dg.AssetsDefinition:
        @functools.wraps(fn)
        def step(context: dg.AssetExecutionContext, *args: Any, **kwargs: Any) -> Iterator[Any]:
            if suites and checks_only(context):
                yield from evaluate_selected(context, suites, kwargs["lake"].lake())
                return
            yield from fn(context, *args, **kwargs)

        specs = [spec for suite in suites.values() for spec in suite.specs()]
        return dg.multi_asset(check_specs=specs or None, can_subset=True, **multi_asset_args)(step)

    return decorate
