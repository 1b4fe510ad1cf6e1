#!/usr/bin/env bash
# Benchmark: one-shot ingest from a local S3 server (moto, then SeaweedFS) into a local lake.
#
#   bash ingest/benches/s3.sh [COPIES] [CLOUTRAIL_RECORDS] [AUDIT_LINES]
#
# Starts the test servers (tests/servers.sh), generates the sample day, uploads COPIES copies of
# it under distinct prefixes (CloudTrail event ids repeat across copies and are dropped as
# duplicates after being read; audit lines are kept per copy), and runs
# `auditlake ingest s3://bucket` under GNU time against each server. Prints objects/s,
# records read/s (wall and per CPU-second of the auditlake process) and peak RSS. Server CPU is
# not counted; both servers share the two cores with auditlake.
set -euo pipefail
cd "$(dirname "$0")/../.."
COPIES=${1:-8}
CT=${2:-20000}
AUDIT=${3:-40000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/auditlake/target}"
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

# AUDITLAKE_PROFILE=measure builds without the long link (see Cargo.toml); figures: release.
PROFILE="${AUDITLAKE_PROFILE:-release}"
cargo build --profile "$PROFILE" --locked --bin auditlake
BIN="$CARGO_TARGET_DIR/$PROFILE/auditlake"
WORK=$(mktemp -d)
# shellcheck source=tests/servers.sh
source tests/servers.sh
trap 'servers_stop; rm -rf "$WORK"' EXIT
servers_start

"$BIN" sample generate --out "$WORK/data" --cloudtrail-records "$CT" --audit-lines "$AUDIT" > "$WORK/manifest.json"

upload() { # endpoint bucket
  "$SERVERS_VENV/bin/python" - "$1" "$2" "$WORK/data" "$COPIES" <<'PY'
import os, sys, boto3
from concurrent.futures import ThreadPoolExecutor
endpoint, bucket, root, copies = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
s3.create_bucket(Bucket=bucket)
files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
def put(job):
    copy, path = job
    key = f"copy{copy}/" + os.path.relpath(path, root)
    with open(path, "rb") as f:
        s3.put_object(Bucket=bucket, Key=key, Body=f.read())
with ThreadPoolExecutor(8) as pool:
    list(pool.map(put, [(c, p) for c in range(copies) for p in files]))
print(len(files) * copies)
PY
}

run() { # name endpoint
  local name=$1 endpoint=$2 objects
  objects=$(upload "$endpoint" "bench-$name")
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/time-$name" \
    env AWS_ENDPOINT_URL="$endpoint" "$BIN" ingest --lake "$WORK/lake-$name" "s3://bench-$name" \
    > "$WORK/out-$name" 2> "$WORK/err-$name" || { cat "$WORK/err-$name" >&2; exit 1; }
  read -r wall user sys rss_kb < "$WORK/time-$name"
  python3 - "$name" "$objects" "$wall" "$user" "$sys" "$rss_kb" "$WORK/manifest.json" "$COPIES" "$WORK/out-$name" <<'PY'
import json, sys
name, objects, wall, user, sys_, rss_kb, manifest, copies, out = sys.argv[1:]
m = json.load(open(manifest))
copies = int(copies)
records = copies * (m["cloudtrail_rows"] + m["cloudtrail_duplicates"] + m["mongodb_audit_rows"] + m["rejected_rows"])
objects, wall, cpu = int(objects), float(wall), float(user) + float(sys_)
print(f"{name:<9} {objects:>6} objects {records:>9} records  wall {wall:6.2f}s  cpu {cpu:6.2f}s  "
      f"{objects/wall:>7,.0f} objects/s  {records/wall:>9,.0f} rec/s  {records/cpu:>9,.0f} rec/cpu-s  "
      f"peak RSS {int(rss_kb)/1024:6.1f} MiB")
print("  " + open(out).read().strip())
PY
}
run moto "$AUDITLAKE_TEST_MOTO"
run seaweedfs "$AUDITLAKE_TEST_S3"
