#!/usr/bin/env bash
# Benchmark: five typical audit queries over the same Parquet lake, auditlake vs DuckDB, one run.
#
#   bash query/benches/duckdb.sh [ROWS]        (default 10000000)
#
# Builds the release binary, generates ROWS events (half CloudTrail records, half Atlas audit
# lines, one day per million) with `auditlake sample generate`, ingests them with
# `auditlake ingest` into a fresh lake, then runs each query against
#   - auditlake: `auditlake serve` on the lake, queries POSTed to /v1/sql (JSON result);
#   - DuckDB (from PyPI, pinned in ingest/benches/requirements.txt): read_parquet over the same
#     files with Hive partitioning, fetched into Python; two threads, like the service;
# each warm: one untimed run, then the best and median of three. The ingest's CPU time and peak
# RSS for the whole data set are printed too (the memory bound holds at this size). Results of the two engines are
# compared (row counts and the first row) so a fast wrong answer cannot pass.
# Set AUDITLAKE_BENCH_DIR to keep the generated data and lake between runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=${1:-10000000}
# shellcheck source=query/benches/lake.sh
source query/benches/lake.sh
bench_setup
# One day per million events.
bench_lake "$ROWS" $(( (ROWS + 999999) / 1000000 ))

"$BENCH_PYTHON" query/benches/compare.py "$BIN" "$WORK/lake"
