#!/usr/bin/env bash
# Benchmark: CloudTrail and Atlas audit files to Parquet, auditlake vs DuckDB, in one run.
#
#   bash ingest/benches/ingest.sh [CLOUDTRAIL_RECORDS] [AUDIT_LINES] [RECORD_SIZE]
#
# (default 1000000 each; 0 leaves that half out; RECORD_SIZE: average bytes of JSON per
# CloudTrail record, e.g. 1400 for larger request parameters and response elements than the
# generator's natural ~0.94 KB). AUDITLAKE_BENCH_SKIP_DUCKDB=1 runs auditlake alone.
# Data sets of more than 1 M records of a kind are generated one day per million, the
# generator holding a day in memory.
#
# Builds the release binary, generates the data set (CloudTrail in the S3 layout, gzip objects;
# Atlas audit lines, half the objects gzip) into a temporary folder, then for each half runs
#   - `auditlake ingest` from the local folder into a fresh lake, and
#   - DuckDB (from PyPI, pinned in ingest/benches/requirements.txt) converting the same files to
#     one zstd Parquet file with a comparable flattened schema (ingest/benches/duckdb_convert.py;
#     DuckDB picks gzip by file name, so it reads the same bytes through `.gz`-named links),
# each under GNU time, and prints records per CPU-second, records per second, decompressed MB
# per CPU-second, CPU seconds and peak RSS side by side, with auditlake's ratio to DuckDB.
set -euo pipefail
cd "$(dirname "$0")/../.."
CT=${1:-1000000}
AUDIT=${2:-1000000}
SIZE=${3:-}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/auditlake/target}"
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

# AUDITLAKE_PROFILE=measure builds without the long link (see Cargo.toml); figures: release.
PROFILE="${AUDITLAKE_PROFILE:-release}"
cargo build --profile "$PROFILE" --locked --bin auditlake
BIN="$CARGO_TARGET_DIR/$PROFILE/auditlake"
# shellcheck source=ingest/benches/venv.sh
source ingest/benches/venv.sh
bench_venv

# AUDITLAKE_BENCH_DIR keeps the generated data between runs (lakes and outputs are redone).
if [ -n "${AUDITLAKE_BENCH_DIR:-}" ]; then
  WORK="$AUDITLAKE_BENCH_DIR/ingest-$CT-$AUDIT${SIZE:+-$SIZE}"
  mkdir -p "$WORK"
  rm -rf "$WORK/lake-ct" "$WORK/lake-audit" "$WORK/duckdb-in" "$WORK"/*.parquet "$WORK/results"
else
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi

if [ ! -f "$WORK/manifest.json" ]; then
  echo "generating $CT CloudTrail records and $AUDIT audit lines..."
  rm -rf "$WORK/data"
  days=$(( (CT > AUDIT ? CT : AUDIT) / 1000000 ))
  days=$(( days < 1 ? 1 : days ))
  for ((d = 0; d < days; d++)); do
    day=$(date -u -d "2026-11-01 + $d days" +%F)
    "$BIN" sample generate --out "$WORK/data" --day "$day" --seed $((20261101 + d)) \
      --cloudtrail-records $((CT / days)) --audit-lines $((AUDIT / days)) ${SIZE:+--record-size "$SIZE"} \
      > "$WORK/manifest-$d.json"
    rm "$WORK/data/MANIFEST.json"
  done
  python3 -c "
import json, sys
days = [json.load(open(f)) for f in sys.argv[1:]]
print(json.dumps({k: sum(d[k] for d in days) for k in days[0]}))
" "$WORK"/manifest-*.json > "$WORK/manifest.json"
fi

# The same files for DuckDB, gzip ones linked under a `.gz` name.
mkdir -p "$WORK/duckdb-in"
(cd "$WORK/data" && find . -type f) | while read -r f; do
  mkdir -p "$WORK/duckdb-in/$(dirname "$f")"
  if [ "$(head -c2 "$WORK/data/$f" | od -An -tx1 | tr -d ' ')" = "1f8b" ] && [[ "$f" != *.gz ]]; then
    ln -s "$WORK/data/$f" "$WORK/duckdb-in/$f.gz"
  else
    ln -s "$WORK/data/$f" "$WORK/duckdb-in/$f"
  fi
done

measure() { # name engine records raw_bytes command...
  local name=$1 engine=$2 records=$3 raw=$4
  shift 4
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$@" > "$WORK/out" 2> "$WORK/err" ||
    { cat "$WORK/err" >&2; exit 1; }
  read -r wall user sys rss_kb < "$WORK/time"
  echo "$name $engine $records $raw $wall $user $sys $rss_kb" >> "$WORK/results"
}

manifest() { python3 -c "import json;m=json.load(open('$WORK/manifest.json'));print($1)"; }
ct_rows=$(manifest "m['cloudtrail_rows']+m['cloudtrail_duplicates']")
audit_rows=$(manifest "m['mongodb_audit_rows']+m['rejected_rows']")
raw_bytes() { if [ -d "$1" ]; then find "$1" -type f -exec zcat -f {} + | wc -c; else echo 0; fi; }
ct_raw=$(raw_bytes "$WORK/data/cloudtrail")
audit_raw=$(raw_bytes "$WORK/data/atlas")

if [ "$CT" -gt 0 ]; then
  echo "cloudtrail: auditlake..."
  measure cloudtrail auditlake "$ct_rows" "$ct_raw" "$BIN" ingest --lake "$WORK/lake-ct" "$WORK/data/cloudtrail"
  if [ -z "${AUDITLAKE_BENCH_SKIP_DUCKDB:-}" ]; then
    echo "cloudtrail: duckdb..."
    measure cloudtrail duckdb "$ct_rows" "$ct_raw" "$BENCH_PYTHON" ingest/benches/duckdb_convert.py cloudtrail "$WORK/duckdb-in/cloudtrail" "$WORK/ct.parquet"
    echo "duckdb wrote $(cat "$WORK/out") cloudtrail rows (auditlake: $ct_rows records read)"
  fi
fi
if [ "$AUDIT" -gt 0 ]; then
  echo "atlas audit: auditlake..."
  measure atlas_audit auditlake "$audit_rows" "$audit_raw" "$BIN" ingest --lake "$WORK/lake-audit" "$WORK/data/atlas"
  if [ -z "${AUDITLAKE_BENCH_SKIP_DUCKDB:-}" ]; then
    echo "atlas audit: duckdb..."
    measure atlas_audit duckdb "$audit_rows" "$audit_raw" "$BENCH_PYTHON" ingest/benches/duckdb_convert.py atlas_audit "$WORK/duckdb-in/atlas" "$WORK/audit.parquet"
    echo "duckdb wrote $(cat "$WORK/out") mongodb_audit rows (auditlake: $audit_rows lines read)"
  fi
fi

python3 - "$WORK/results" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
print(f"\n{'data':<12} {'engine':<10} {'records':>10} {'wall s':>7} {'CPU s':>7} "
      f"{'rec/CPU-s':>10} {'rec/s':>10} {'MB/CPU-s':>9} {'peak RSS':>10}")
rate = {}
for name, engine, records, raw, wall, user, sys_, rss_kb in rows:
    records, wall, cpu = int(records), float(wall), float(user) + float(sys_)
    rate[(name, engine)] = records / cpu
    print(f"{name:<12} {engine:<10} {records:>10,} {wall:>7.2f} {cpu:>7.2f} "
          f"{records / cpu:>10,.0f} {records / wall:>10,.0f} {int(raw) / 1e6 / cpu:>9.1f} "
          f"{int(rss_kb) / 1024:>7.0f} MiB")
for name in ("cloudtrail", "atlas_audit"):
    if (name, "auditlake") in rate and (name, "duckdb") in rate:
        print(f"{name}: auditlake does {rate[(name, 'auditlake')] / rate[(name, 'duckdb')]:.1f}x "
              f"DuckDB's records per CPU-second")
PY
