#!/usr/bin/env bash
# Benchmark: decode → Parquet for generated CloudTrail and Atlas audit data, one run each.
#
#   bash ingest/benches/ingest.sh [CLOUDTRAIL_RECORDS] [AUDIT_LINES]
#
# Builds the release binary, generates the data set into a temporary folder, and runs
# `auditlake ingest` on each half separately under GNU time. Prints records per CPU-second
# (per core), records per wall-second, input MB/s (decompressed JSON) and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
CT=${1:-1000000}
AUDIT=${2:-1000000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/auditlake/target}"
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

cargo build --release --locked --bin auditlake
BIN="$CARGO_TARGET_DIR/release/auditlake"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "generating $CT CloudTrail records and $AUDIT audit lines..."
"$BIN" sample generate --out "$WORK/data" --cloudtrail-records "$CT" --audit-lines "$AUDIT" > "$WORK/manifest.json"

run() { # name folder records
  local name=$1 folder=$2 records=$3
  local raw
  raw=$(find "$folder" -type f -exec zcat -f {} + | wc -c)
  rm -rf "$WORK/lake-$name"
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/time-$name" "$BIN" ingest --lake "$WORK/lake-$name" "$folder" > "$WORK/out-$name" 2>"$WORK/err-$name"
  read -r wall user sys rss_kb < "$WORK/time-$name"
  python3 - "$name" "$records" "$wall" "$user" "$sys" "$rss_kb" "$raw" <<'PY'
import sys
name, records, wall, user, sys_, rss_kb, raw = sys.argv[1:]
records, wall, cpu = int(records), float(wall), float(user) + float(sys_)
mb = int(raw) / 1e6
print(f"{name:<11} {records:>9} records  wall {wall:6.2f}s  cpu {cpu:6.2f}s  "
      f"{records/cpu:>9,.0f} rec/cpu-s  {records/wall:>9,.0f} rec/s  "
      f"{mb/cpu:6.1f} MB/cpu-s  peak RSS {int(rss_kb)/1024:6.1f} MiB")
PY
}
ct_rows=$(python3 -c "import json;m=json.load(open('$WORK/manifest.json'));print(m['cloudtrail_rows']+m['cloudtrail_duplicates'])")
audit_rows=$(python3 -c "import json;m=json.load(open('$WORK/manifest.json'));print(m['mongodb_audit_rows']+m['rejected_rows'])")
run cloudtrail "$WORK/data/cloudtrail" "$ct_rows"
run atlas_audit "$WORK/data/atlas" "$audit_rows"
