# Sourced by the query benchmarks: `bench_lake ROWS DAYS` generates ROWS events (half CloudTrail
# records, half Atlas audit lines) spread over DAYS days from 2026-10-01, one `auditlake sample
# generate` per day (each with the sample story: the database role assumed every five minutes
# and used with MONGODB-AWS, ...), and ingests them with `auditlake ingest` into a fresh lake,
# printing the ingest's CPU time and peak RSS. It sets WORK (AUDITLAKE_BENCH_DIR, kept between
# runs, or a temporary folder) and expects BIN, the binary. Data and lake are reused when the
# same ROWS and DAYS were made before.

# `bench_setup` builds the binary (AUDITLAKE_PROFILE=measure builds without the long link, see
# Cargo.toml; published figures come from release) and the Python peers: it sets BIN and
# BENCH_PYTHON.
bench_setup() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/auditlake/target}"
  local profile="${AUDITLAKE_PROFILE:-release}"
  cargo build --profile "$profile" --locked --bin auditlake
  BIN="$CARGO_TARGET_DIR/$profile/auditlake"
  # shellcheck source=ingest/benches/venv.sh
  source ingest/benches/venv.sh
  bench_venv
}

bench_lake() {
  local rows=$1 days=$2
  if [ -n "${AUDITLAKE_BENCH_DIR:-}" ]; then
    WORK="$AUDITLAKE_BENCH_DIR"
    mkdir -p "$WORK"
  else
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
  fi
  local tag="$rows-$days"
  if [ ! -f "$WORK/data-$tag.done" ]; then
    rm -rf "$WORK/data" "$WORK/lake" "$WORK"/lake-*.done "$WORK"/data-*.done
    local per_day=$(( (rows + days - 1) / days ))
    echo "generating $rows events over $days days..."
    # Two days at a time, one per core.
    for i in $(seq 0 $((days - 1))); do
      echo "$i $(( rows - i * per_day < per_day ? rows - i * per_day : per_day ))"
    done | xargs -P 2 -L 1 bash -c '
      set -e
      bin=$1 work=$2 i=$3 n=$4
      day=$(date -u -d "2026-10-01 + $i days" +%F)
      "$bin" sample generate --out "$work/data/$day" --day "$day" --seed "$((i + 1))" \
        --cloudtrail-records $((n / 2)) --audit-lines $((n - n / 2)) > /dev/null
      rm -f "$work/data/$day/MANIFEST.json"' generate "$BIN" "$WORK"
    touch "$WORK/data-$tag.done"
  fi
  if [ ! -f "$WORK/lake-$tag.done" ]; then
    rm -rf "$WORK/lake"
    echo "ingesting..."
    # The whole data set in one run: its CPU time and peak memory are the ingest's at this size.
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/ingest.time" \
      "$BIN" ingest --lake "$WORK/lake" "$WORK/data" > /dev/null
    local wall user sys rss_kb
    read -r wall user sys rss_kb < "$WORK/ingest.time"
    python3 -c "
rows, wall, cpu, rss = $rows, $wall, $user + $sys, $rss_kb / 1024
print(f'ingest of {rows:,} events: {wall:.1f} s wall, {cpu:.1f} CPU-s, '
      f'{rows / cpu:,.0f} events per CPU-second, peak RSS {rss:.0f} MiB')" | tee "$WORK/ingest.txt"
    find "$WORK/lake" -name '*.parquet' | wc -l | xargs echo "lake files:" | tee -a "$WORK/ingest.txt"
    touch "$WORK/lake-$tag.done"
  fi
  cat "$WORK/ingest.txt"
}
