#!/usr/bin/env bash
# Benchmark: the access chain over a month of a busy account.
#
#   bash query/benches/access_chain.sh [ROWS] [DAYS]      (default 10000000 over 30 days)
#
# Builds the binary, makes the lake of query/benches/lake.sh (ROWS events over DAYS days, each
# day with the sample story's MONGODB-AWS logins, their GetCallerIdentity calls and
# assumptions), starts `auditlake serve` on it with the built-in rules' watched role, and times
# (one untimed run, then best and median of three) one role's access chain over the month, its
# unexplained sessions, and the whole chain. The row counts are checked against what the
# CloudTrail and audit tables hold, so a fast wrong answer cannot pass.
# Set AUDITLAKE_BENCH_DIR to keep the generated data and lake between runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=${1:-10000000}
DAYS=${2:-30}
# shellcheck source=query/benches/lake.sh
source query/benches/lake.sh
bench_setup
bench_lake "$ROWS" "$DAYS"

"$BENCH_PYTHON" query/benches/access_chain.py "$BIN" "$WORK/lake" "$DAYS"
