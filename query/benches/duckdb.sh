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
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/auditlake/target}"

# AUDITLAKE_PROFILE=measure builds without the long link (see Cargo.toml); figures: release.
PROFILE="${AUDITLAKE_PROFILE:-release}"
cargo build --profile "$PROFILE" --locked --bin auditlake
BIN="$CARGO_TARGET_DIR/$PROFILE/auditlake"

# shellcheck source=ingest/benches/venv.sh
source ingest/benches/venv.sh
bench_venv

if [ -n "${AUDITLAKE_BENCH_DIR:-}" ]; then
  WORK="$AUDITLAKE_BENCH_DIR"
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi

if [ ! -f "$WORK/data-$ROWS.done" ]; then
  rm -rf "$WORK/data" "$WORK/lake" "$WORK"/lake-*.done
  per_day=1000000
  days=$(( (ROWS + per_day - 1) / per_day ))
  echo "generating $ROWS events over $days days..."
  # Two days at a time, one per core.
  for i in $(seq 0 $((days - 1))); do
    echo "$i $(( ROWS - i * per_day < per_day ? ROWS - i * per_day : per_day ))"
  done | xargs -P 2 -L 1 bash -c '
    set -e
    bin=$1 work=$2 i=$3 n=$4
    day=$(date -u -d "2026-10-01 + $i days" +%F)
    "$bin" sample generate --out "$work/data/$day" --day "$day" --seed "$((i + 1))" \
      --cloudtrail-records $((n / 2)) --audit-lines $((n - n / 2)) > /dev/null
    rm -f "$work/data/$day/MANIFEST.json"' generate "$BIN" "$WORK"
  touch "$WORK/data-$ROWS.done"
fi
if [ ! -f "$WORK/lake-$ROWS.done" ]; then
  rm -rf "$WORK/lake"
  echo "ingesting..."
  # The whole data set in one run: its CPU time and peak memory are the ingest's at this size.
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/ingest.time" \
    "$BIN" ingest --lake "$WORK/lake" "$WORK/data" > /dev/null
  read -r wall user sys rss_kb < "$WORK/ingest.time"
  python3 -c "
rows, wall, cpu, rss = $ROWS, $wall, $user + $sys, $rss_kb / 1024
print(f'ingest of {rows:,} events: {wall:.1f} s wall, {cpu:.1f} CPU-s, '
      f'{rows / cpu:,.0f} events per CPU-second, peak RSS {rss:.0f} MiB')" | tee "$WORK/ingest.txt"
  find "$WORK/lake" -name '*.parquet' | wc -l | xargs echo "lake files:" | tee -a "$WORK/ingest.txt"
  touch "$WORK/lake-$ROWS.done"
fi
cat "$WORK/ingest.txt"

"$BENCH_PYTHON" query/benches/compare.py "$BIN" "$WORK/lake"
