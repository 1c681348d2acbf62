"""The executor of every code location's jobs: chosen for I/O-bound assets, not left to Dagster's default."""

from __future__ import annotations

import dagster as dg

EXECUTOR = dg.in_process_executor
"""Every run executes its steps in one process, one after another.

The assets are I/O-bound (HTTP to a vendor, then a DuckDB conversion that uses every core by itself), so
a process per step buys nothing and costs a Python start, a definitions load and a fresh token cache per
step: a school's 59-endpoint snapshot job made 118 token and 59 register requests and took 19x as long
as in one process. In one process the token cache and the school register are shared by the run's steps.
Concurrency where it pays is inside a step: pages of an endpoint in flight together, the schools of a
batched run landed together, and a backfill's vendor jobs polled together."""
